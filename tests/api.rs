//! The REST API end to end over real HTTP, with the service on port 0 and a real Redis.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The customer's example payload, verbatim.
const CUSTOMER_PAYLOAD: &str = r#"[{"camera_id": "7e793c44-5960-4d40-903f-9c2cf0a17903", "status": "active",
 "stream_url": "rtsp://user:password@172.16.34.2:554/media/video1",
 "parameters": {"detection_classes": ["person", "car", "truck"], "confidence_threshold": 0.5,
   "roi_zones": [], "enable_motion_detection": true, "enable_object_detection": true,
   "enable_anpr": false, "motion_threshold": 0.1, "frame_skip": 1, "max_fps": 30}}]"#;

fn cam(id: &str) -> Value {
    json!({"camera_id": id, "stream_url": "rtsp://127.0.0.1:9/none"})
}

/// Asserts the error shape and returns its details.
fn error_of(r: &HttpReply, status: u16, code: &str) -> Vec<Value> {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"], code, "{}", r.body);
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    v["details"].as_array().expect("details is an array").clone()
}

/// The customer's payload is accepted exactly as written, and its password never comes back.
#[test]
fn customer_payload_is_accepted_and_masked() {
    let svc = start_service(test_config("api-customer"));
    let addr = svc.api_addr();
    let r = http(addr, "POST", "/api/cameras", Some("application/json"), CUSTOMER_PAYLOAD.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!r.body.contains("password"), "{}", r.body);
    let v = r.json();
    let c = &v["cameras"][0];
    assert_eq!(c["result"], "created");
    assert_eq!(c["camera_id"], "7e793c44-5960-4d40-903f-9c2cf0a17903");
    assert_eq!(c["stream_url"], "rtsp://user:***@172.16.34.2:554/media/video1");
    assert_eq!(c["parameters"]["detection_classes"], json!(["person", "car", "truck"]));
    assert_eq!(c["parameters"]["motion_threshold"], json!(0.1));
    assert_eq!(v["warnings"], json!([]));
    for path in ["/api/cameras", "/api/cameras/7e793c44-5960-4d40-903f-9c2cf0a17903"] {
        let r = get(addr, path);
        assert_eq!(r.status, 200);
        assert!(!r.body.contains("password"), "{path}: {}", r.body);
        assert!(r.body.contains("user:***@"), "{path}: {}", r.body);
    }
    let r = http(addr, "DELETE", "/api/cameras/7e793c44-5960-4d40-903f-9c2cf0a17903", None, b"");
    assert!(!r.body.contains("password"));
    svc.shutdown();
}

/// A single object (not an array) is accepted too.
#[test]
fn a_single_object_is_accepted() {
    let svc = start_service(test_config("api-single"));
    let r = post_json(svc.api_addr(), "/api/cameras", &cam("single"));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["cameras"].as_array().unwrap().len(), 1);
    svc.shutdown();
}

/// GET lists cameras with live state and counters; a camera's worker thread really runs.
#[test]
fn list_and_get_show_live_state() {
    let svc = start_service(test_config("api-list"));
    let addr = svc.api_addr();
    assert_eq!(get(addr, "/api/cameras").json()["cameras"], json!([]));
    post_json(addr, "/api/cameras", &json!([cam("a"), cam("b")]));
    let list = get(addr, "/api/cameras").json();
    let ids: Vec<&str> = list["cameras"].as_array().unwrap().iter().map(|c| c["camera_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    let one = get(addr, "/api/cameras/a").json();
    for key in
        ["state", "last_error", "input_fps", "processed_fps", "frames_captured", "frames_processed", "frames_dropped", "events_published"]
    {
        assert!(one.get(key).is_some(), "missing {key}: {one}");
    }
    assert!(["connecting", "running", "reconnecting"].contains(&one["state"].as_str().unwrap()), "{one}");
    svc.shutdown();
}

/// POSTing an existing id updates it in place (200): unchanged, changed parameters, inactive,
/// active again; a changed stream URL restarts the worker.
#[test]
fn update_in_place() {
    let svc = start_service(test_config("api-update"));
    let addr = svc.api_addr();
    assert_eq!(post_json(addr, "/api/cameras", &cam("u")).status, 201);
    let r = post_json(addr, "/api/cameras", &cam("u"));
    assert_eq!((r.status, r.json()["cameras"][0]["result"].clone()), (200, json!("unchanged")));

    let mut changed = cam("u");
    changed["parameters"] = json!({"max_fps": 5, "detection_classes": ["car"]});
    let r = post_json(addr, "/api/cameras", &changed);
    assert_eq!(r.status, 200, "{}", r.body);
    let c = &r.json()["cameras"][0];
    assert_eq!(c["result"], "updated");
    assert_eq!(c["parameters"]["max_fps"], json!(5.0));
    assert_eq!(get(addr, "/api/cameras/u").json()["parameters"]["detection_classes"], json!(["car"]));

    changed["status"] = json!("inactive");
    let r = post_json(addr, "/api/cameras", &changed);
    assert_eq!(r.json()["cameras"][0]["state"], "stopped", "{}", r.body);

    changed["status"] = json!("active");
    changed["stream_url"] = json!("rtsp://127.0.0.1:9/other");
    let r = post_json(addr, "/api/cameras", &changed);
    let c = &r.json()["cameras"][0];
    assert_eq!(c["stream_url"], "rtsp://127.0.0.1:9/other");
    assert_ne!(c["state"], "stopped", "{c}");

    // mixed: one existing, one new -> 201 with per-camera results
    let r = post_json(addr, "/api/cameras", &json!([changed, cam("v")]));
    assert_eq!(r.status, 201);
    let results: Vec<Value> = r.json()["cameras"].as_array().unwrap().iter().map(|c| c["result"].clone()).collect();
    assert_eq!(results, [json!("unchanged"), json!("created")]);
    svc.shutdown();
}

/// DELETE stops and removes a camera; an unknown id is a 404.
#[test]
fn delete_known_and_unknown() {
    let svc = start_service(test_config("api-delete"));
    let addr = svc.api_addr();
    post_json(addr, "/api/cameras", &cam("d"));
    let r = http(addr, "DELETE", "/api/cameras/d", None, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["camera_id"], "d");
    assert_eq!(r.json()["state"], "stopped");
    error_of(&get(addr, "/api/cameras/d"), 404, "not_found");
    error_of(&http(addr, "DELETE", "/api/cameras/d", None, b""), 404, "not_found");
    error_of(&http(addr, "DELETE", "/api/cameras/never-was", None, b""), 404, "not_found");
    svc.shutdown();
}

/// Malformed JSON is a 400 that says where.
#[test]
fn malformed_json_is_400() {
    let svc = start_service(test_config("api-malformed"));
    let r = http(svc.api_addr(), "POST", "/api/cameras", Some("application/json"), b"[{\"camera_id\": ");
    error_of(&r, 400, "malformed_json");
    assert!(r.json()["message"].as_str().unwrap().contains("line 1"), "{}", r.body);
    svc.shutdown();
}

/// A body over API_MAX_BODY_BYTES is a 413, whether announced by Content-Length or not.
#[test]
fn oversized_body_is_413() {
    let mut c = test_config("api-big");
    c.api_max_body_bytes = 4096;
    let svc = start_service(c);
    let big = format!("[{}]", vec![cam("x").to_string(); 200].join(","));
    assert!(big.len() > 4096);
    error_of(&http(svc.api_addr(), "POST", "/api/cameras", Some("application/json"), big.as_bytes()), 413, "payload_too_large");
    assert_eq!(get(svc.api_addr(), "/api/cameras").json()["cameras"], json!([]));
    svc.shutdown();
}

/// Wrong or missing content type is a 415.
#[test]
fn wrong_content_type_is_415() {
    let svc = start_service(test_config("api-ct"));
    let body = cam("x").to_string();
    error_of(&http(svc.api_addr(), "POST", "/api/cameras", Some("text/plain"), body.as_bytes()), 415, "unsupported_media_type");
    error_of(&http(svc.api_addr(), "POST", "/api/cameras", None, body.as_bytes()), 415, "unsupported_media_type");
    let ok = http(svc.api_addr(), "POST", "/api/cameras", Some("Application/JSON; charset=utf-8"), body.as_bytes());
    assert_eq!(ok.status, 201, "{}", ok.body);
    svc.shutdown();
}

/// Wrong methods are 405 with Allow; unknown routes are 404; a trailing slash is fine.
#[test]
fn methods_and_routes() {
    let svc = start_service(test_config("api-routes"));
    let addr = svc.api_addr();
    for (method, path, allow) in [
        ("PUT", "/api/cameras", "GET, POST"),
        ("DELETE", "/api/cameras", "GET, POST"),
        ("POST", "/api/cameras/x", "GET, DELETE"),
        ("POST", "/api/health", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("POST", "/", "GET"),
        ("POST", "/api/events", "GET"),
    ] {
        let r = http(addr, method, path, None, b"");
        error_of(&r, 405, "method_not_allowed");
        assert_eq!(r.headers["allow"], allow);
    }
    error_of(&get(addr, "/api/nothing"), 404, "not_found");
    error_of(&get(addr, "/nothing"), 404, "not_found");
    error_of(&get(addr, "/assets/other.js"), 404, "not_found");
    assert_eq!(get(addr, "/").status, 200, "the operator page (tests/page.rs)");
    error_of(&get(addr, "/api/cameras/a/b"), 404, "not_found");
    assert_eq!(get(addr, "/api/cameras/").status, 200);
    assert_eq!(get(addr, "/api/health?verbose=1").status, 200);
    svc.shutdown();
}

/// Every validation rule, one case each: the 422 names the field's path, and nothing changes.
#[test]
fn every_validation_rule_is_a_422_with_its_path() {
    let svc = start_service(test_config("api-validation"));
    let addr = svc.api_addr();
    let p = |params: Value| json!({"camera_id": "v", "stream_url": "rtsp://h/x", "parameters": params});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"stream_url": "rtsp://h/x"}), "camera_id"),
        (json!({"camera_id": "", "stream_url": "rtsp://h/x"}), "camera_id"),
        (json!({"camera_id": "has space", "stream_url": "rtsp://h/x"}), "camera_id"),
        (json!({"camera_id": "x".repeat(129), "stream_url": "rtsp://h/x"}), "camera_id"),
        (json!({"camera_id": 42, "stream_url": "rtsp://h/x"}), "camera_id"),
        (json!({"camera_id": "v", "stream_url": "rtsp://h/x", "status": "paused"}), "status"),
        (json!({"camera_id": "v"}), "stream_url"),
        (json!({"camera_id": "v", "stream_url": "ftp://h/x"}), "stream_url"),
        (json!({"camera_id": "v", "stream_url": "rtsp:///x"}), "stream_url"),
        (json!({"camera_id": "v", "stream_url": "rtsp://h/x", "parameters": []}), "parameters"),
        (p(json!({"detection_classes": ["unicorn"]})), "parameters.detection_classes[0]"),
        (p(json!({"detection_classes": "person"})), "parameters.detection_classes"),
        (p(json!({"confidence_threshold": 1.01})), "parameters.confidence_threshold"),
        (p(json!({"confidence_threshold": "0.5"})), "parameters.confidence_threshold"),
        (p(json!({"motion_threshold": -0.1})), "parameters.motion_threshold"),
        (p(json!({"frame_skip": 0})), "parameters.frame_skip"),
        (p(json!({"frame_skip": 1.5})), "parameters.frame_skip"),
        (p(json!({"max_fps": 0})), "parameters.max_fps"),
        (p(json!({"max_fps": 121})), "parameters.max_fps"),
        (p(json!({"enable_motion_detection": 1})), "parameters.enable_motion_detection"),
        (p(json!({"enable_object_detection": "true"})), "parameters.enable_object_detection"),
        (p(json!({"enable_anpr": null, "roi_zones": {}})), "parameters.roi_zones"),
        (p(json!({"roi_zones": [{"name": "a", "points": [[0, 0], [1, 0]]}]})), "parameters.roi_zones[0].points"),
        (p(json!({"roi_zones": [{"name": "a", "points": [[0, 0], [1, 0], [1, 1.5]]}]})), "parameters.roi_zones[0].points[2]"),
        (p(json!({"roi_zones": [{"points": [[0, 0], [1, 0], [1, 1]]}]})), "parameters.roi_zones[0].name"),
        (
            p(json!({"roi_zones": [{"name": "a", "points": [[0, 0], [1, 0], [1, 1]]}, {"name": "a", "points": [[0, 0], [1, 0], [1, 1]]}]})),
            "parameters.roi_zones[1].name",
        ),
    ];
    for (camera, field) in cases {
        let r = post_json(addr, "/api/cameras", &json!([cam("good"), camera]));
        let details = error_of(&r, 422, "validation_failed");
        let paths: Vec<&str> = details.iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert_eq!(paths, [format!("[1].{field}")], "{}", r.body);
        assert!(details[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // an unknown class lists the valid ones
    let r = post_json(addr, "/api/cameras", &p(json!({"detection_classes": ["unicorn"]})));
    assert!(r.body.contains("teddy bear"), "{}", r.body);
    // duplicate ids within one request
    let details = error_of(&post_json(addr, "/api/cameras", &json!([cam("d"), cam("d")])), 422, "validation_failed");
    assert_eq!(details[0]["path"], "[1].camera_id");
    // wrong top-level shapes
    for body in [json!([]), json!(3), json!([1])] {
        error_of(&post_json(addr, "/api/cameras", &body), 422, "validation_failed");
    }
    // none of the above changed anything (the valid "good" camera was never applied)
    assert_eq!(get(addr, "/api/cameras").json()["cameras"], json!([]));
    svc.shutdown();
}

/// Unknown fields are accepted, ignored and listed under warnings.
#[test]
fn unknown_fields_become_warnings() {
    let svc = start_service(test_config("api-warnings"));
    let mut c = cam("w");
    c["vendor"] = json!({"model": "x"});
    c["parameters"] = json!({"night_mode": true, "max_fps": 10});
    let r = post_json(svc.api_addr(), "/api/cameras", &c);
    assert_eq!(r.status, 201, "{}", r.body);
    let w: Vec<String> = r.json()["warnings"].as_array().unwrap().iter().map(|w| w["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(w, ["vendor", "parameters.night_mode"]);
    svc.shutdown();
}

/// MAX_CAMERAS bounds the registry: the request that would pass it is refused whole.
#[test]
fn max_cameras_is_enforced() {
    let mut c = test_config("api-max");
    c.max_cameras = 2;
    let svc = start_service(c);
    let addr = svc.api_addr();
    assert_eq!(post_json(addr, "/api/cameras", &json!([cam("1"), cam("2")])).status, 201);
    error_of(&post_json(addr, "/api/cameras", &json!([cam("1"), cam("3")])), 409, "too_many_cameras");
    assert_eq!(get(addr, "/api/cameras").json()["cameras"].as_array().unwrap().len(), 2);
    assert_eq!(post_json(addr, "/api/cameras", &cam("2")).status, 200, "updating existing ones still works");
    svc.shutdown();
}

/// Health reports Redis reachable (ok) and unreachable (degraded, still 200).
#[test]
fn health_reports_redis() {
    let svc = start_service(test_config("api-health"));
    let r = get(svc.api_addr(), "/api/health");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["redis"]["reachable"], true);
    assert!(v["uptime_s"].as_f64().is_some());
    assert_eq!(v["cameras"]["total"], 0);
    svc.shutdown();

    let mut c = test_config("api-health-down");
    c.redis_port = free_port();
    let svc = start_service(c);
    let v = get(svc.api_addr(), "/api/health").json();
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["redis"]["reachable"], false);
    assert!(v["redis"]["error"].as_str().is_some());
    svc.shutdown();
}

/// `/metrics` answers Prometheus text with the camera's series.
#[test]
fn metrics_are_prometheus_text() {
    let svc = start_service(test_config("api-metrics"));
    post_json(svc.api_addr(), "/api/cameras", &cam("m"));
    let r = get(svc.api_addr(), "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/plain"));
    assert!(r.body.contains("analytics_frames_captured_total{camera_id=\"m\"} "), "{}", r.body);
    assert!(r.body.contains("# TYPE analytics_events_published_total counter"));
    svc.shutdown();
}

/// The binary: SIGTERM stops it cleanly with exit 0; an invalid variable stops start-up with a
/// line naming it.
#[test]
fn binary_exits_cleanly_on_sigterm_and_names_bad_config() {
    let bin = env!("CARGO_BIN_EXE_analytics-service");
    let out = std::process::Command::new(bin).env("API_PORT", "eighty").current_dir(std::env::temp_dir()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("API_PORT=\"eighty\" is invalid"), "{err}");

    let port = free_port();
    let mut child = std::process::Command::new(bin)
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("REDIS_HOST", redis_host())
        .env("REDIS_PORT", redis_port().to_string())
        .env("REDIS_STREAM", unique_stream("api-bin"))
        .env("REDIS_KEY_PREFIX", format!("{}:", unique_stream("api-bin")))
        .env("YOLO_MODEL", concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolov8n.onnx"))
        .current_dir(std::env::temp_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(Duration::from_secs(10), "binary's API", || std::net::TcpStream::connect(addr).ok());
    let r = http(addr, "POST", "/api/cameras", Some("application/json"), CUSTOMER_PAYLOAD.as_bytes());
    assert_eq!(r.status, 201);
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = wait_for(Duration::from_secs(15), "exit after SIGTERM", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("shutdown: done"), "{log}");
    assert!(!log.contains("password"), "credentials leaked into the log: {log}");
}

/// The example payloads in `config/` are valid as shipped.
#[test]
fn config_examples_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let body: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let v = analytics_service::camera::validate::validate_cameras(&body, &analytics_service::camera::validate::Context::default())
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            assert!(v.warnings.is_empty(), "{}: {:?}", path.display(), v.warnings);
            n += 1;
        }
    }
    assert!(n >= 2);
}

/// `/livez` and `/readyz` need no token; `/readyz` is 503 with the reason while the registry
/// has never been read from Redis, and 200 once it has.
#[test]
fn probes_say_live_and_ready_with_reasons() {
    let mut c = test_config("api-probes");
    c.api_token = Some("probe-token-0123456789".into());
    let svc = start_service(c);
    assert_eq!(get(svc.api_addr(), "/livez").json()["status"], "ok");
    let r = get(svc.api_addr(), "/readyz");
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("ready")), "{}", r.body);
    assert_eq!(http(svc.api_addr(), "HEAD", "/readyz", None, b"").status, 200);
    svc.shutdown();

    let mut c = test_config("api-probes-down");
    c.redis_port = free_port();
    let svc = start_service(c);
    assert_eq!(get(svc.api_addr(), "/livez").status, 200, "live without Redis");
    let r = get(svc.api_addr(), "/readyz");
    let v = error_of(&r, 503, "not_ready");
    assert!(v.iter().any(|d| d.as_str().unwrap().contains("registry has not been loaded from Redis")), "{}", r.body);
    svc.shutdown();
}

/// `/api/health` reads Redis through one kept connection, at most one PING a second: 100 health
/// requests open at most a couple of Redis connections (a Redis of the test's own counts them).
#[test]
fn health_does_not_open_a_redis_connection_per_request() {
    let redis = OwnRedis::start(free_port());
    let mut c = test_config("api-health-cache");
    c.redis_port = redis.port;
    let svc = start_service(c);
    let received = || {
        let mut conn = redis_conn_at(redis.port);
        let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
        info.lines().find_map(|l| l.strip_prefix("total_connections_received:")).unwrap().trim().parse::<u64>().unwrap()
    };
    get(svc.api_addr(), "/api/health"); // the snapshot's connection
    let before = received();
    for _ in 0..100 {
        assert_eq!(get(svc.api_addr(), "/api/health").json()["redis"]["reachable"], true);
    }
    let opened = received() - before - 1; // less the counting connection itself
    eprintln!("100 health requests opened {opened} Redis connection(s)");
    assert!(opened <= 2, "health opened {opened} Redis connections for 100 requests");
    svc.shutdown();
}
