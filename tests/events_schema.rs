//! The event contract (`docs/events.md`, `docs/schema/`) against the real service: a camera on
//! the pedestrian sample (motion, detection, tracking) and one on the plate video (ANPR) publish
//! into a real Redis, and every event read back must match its JSON Schema (closed: no
//! undocumented field) and every event type must be seen. The examples in `docs/events.md`
//! must match the schemas too, so the page cannot drift from the code.

mod common;

use common::schema::{check_event, EVENT_TYPES};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// 10 s of the pedestrian sample (768x576, 10 fps): people walking, so motion, detections and
/// objects that start and end.
fn walk_10s() -> PathBuf {
    let src = media("vtest_pedestrians_768x576.mp4");
    ffmpeg_fixture(
        "events_walk_10s.mp4",
        &["-i", src.to_str().unwrap(), "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"],
    )
}

/// Every event type is published by a real run and matches its schema. The first event of each
/// type (and an object `update` with its plate) is written to
/// `$TMPDIR/analytics-service-event-examples.jsonl`: the examples of docs/events.md come from it.
#[test]
fn every_event_type_of_a_real_run_matches_its_schema() {
    let cfg = test_config("events-schema");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let cams = json!([
        {"camera_id": "square", "stream_url": walk_10s().to_str().unwrap(),
         "parameters": {"detection_classes": ["person"], "confidence_threshold": 0.5, "max_fps": 5, "motion_threshold": 0.01,
                        "roi_zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
                        "lines": [{"name": "middle", "points": [[0.5, 1], [0.5, 0]]}]}},
        {"camera_id": "gate", "stream_url": plate_video().to_str().unwrap(),
         "parameters": {"enable_anpr": true, "enable_motion_detection": false, "max_fps": 5}},
    ]);
    let r = post_json(addr, "/api/cameras", &cams);
    assert_eq!(r.status, 201, "{}", r.body);
    let mut conn = redis_conn();
    // counts by type, and whether a person on the square has been tracked into its zone
    let seen = |conn: &mut redis::Connection| -> (BTreeMap<String, usize>, bool) {
        let mut n = BTreeMap::new();
        let mut square_object = false;
        for (_, f) in xrange(conn, &stream) {
            *n.entry(f["event_type"].clone()).or_insert(0) += 1;
            square_object |= f["event_type"] == "object" && f["camera_id"] == "square" && f["payload"].contains("\"left\"");
        }
        (n, square_object)
    };
    // wait for every type and a tracked person in the zone; deleting the cameras then ends
    // every object. A slow machine gets what it has after 90 s (the asserts below say what).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(Duration::from_secs(90), "every event type", || {
            let (n, square_object) = seen(&mut conn);
            (EVENT_TYPES.iter().all(|t| n.contains_key(*t)) && square_object).then_some(())
        })
    }));
    for cam in ["square", "gate"] {
        assert_eq!(http(addr, "DELETE", &format!("/api/cameras/{cam}"), None, b"").status, 200);
    }
    svc.shutdown();
    // xrange checks each entry against its schema
    let entries = xrange(&mut conn, &stream);
    let events: Vec<Value> = entries.iter().map(|(_, f)| serde_json::from_str(&f["payload"]).unwrap()).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        *counts.entry(e["event_type"].as_str().unwrap()).or_insert(0) += 1;
    }
    println!("{} events, all valid: {counts:?}", events.len());
    for t in EVENT_TYPES {
        assert!(counts.contains_key(t), "no {t} event in a run with motion, detection, tracking and ANPR: {counts:?}");
    }
    for e in &events {
        assert_eq!(e["instance_id"], "test-instance", "{e}");
        let (w, h) = if e["camera_id"] == "square" { (768, 576) } else { (1036, 662) };
        assert_eq!((e["width"].as_u64(), e["height"].as_u64()), (Some(w), Some(h)), "the frame's size: {e}");
        if e["event_type"] == "detection" {
            // YOLO_PRECISION auto runs the INT8 file on a CPU with VNNI (docs/int8.md)
            let file = if e["model_info"]["precision"] == "int8" { "yolov8n.int8.onnx" } else { "yolov8n.onnx" };
            assert_eq!(e["model_info"]["model"], file, "{e}");
            assert!(e["model_info"]["runtime"].as_str().unwrap().starts_with("onnxruntime 1."), "{e}");
        }
        if e["event_type"] == "anpr" {
            assert_eq!(e["anpr_result"]["text"], e["anpr_result"]["license_plate"], "one plate text: {e}");
        }
    }
    // the object that carries the plate agrees with the anpr event (when the vehicle was a
    // reported object: a vehicle below the camera's threshold is read but never started)
    let anpr = events.iter().find(|e| e["event_type"] == "anpr").unwrap();
    if let Some(track) = anpr["track_id"].as_str() {
        let objects: Vec<&Value> = events.iter().filter(|e| e["track_id"] == track && e["event_type"] == "object").collect();
        let with_plate: Vec<&Value> = objects.iter().copied().filter(|e| !e["license_plate"].is_null()).collect();
        assert!(objects.is_empty() || !with_plate.is_empty(), "the plate's vehicle object carries it: {anpr} {objects:?}");
        for o in with_plate {
            let (p, r) = (&o["license_plate"], &anpr["anpr_result"]);
            assert_eq!((&p["text"], &p["confidence"], &p["region"]), (&r["text"], &r["confidence"], &r["region"]), "{o} vs {anpr}");
        }
    }
    // payload sizes, for sizing buffers and the stream (docs/performance.md)
    for t in EVENT_TYPES {
        let sizes: Vec<usize> = entries.iter().filter(|(_, f)| f["event_type"] == t).map(|(_, f)| f["payload"].len()).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
        println!("{t}: {} events, payload bytes mean {mean:.0}, max {}", sizes.len(), sizes.iter().max().unwrap_or(&0));
    }
    // examples for docs/events.md, as published (field order kept): the first motion event, a
    // detection with tracked boxes, an object start, an anpr event, the object update with its
    // plate, an object end
    let first = |f: &dyn Fn(&Value) -> bool| events.iter().position(f);
    let picks = [
        first(&|e| e["event_type"] == "motion"),
        first(&|e| {
            e["event_type"] == "detection"
                && e["camera_id"] == "square"
                && e["detections"].as_array().unwrap().iter().any(|d| !d["track_id"].is_null())
        })
        .or_else(|| first(&|e| e["event_type"] == "detection")),
        first(&|e| e["event_type"] == "object" && e["lifecycle"] == "start"),
        first(&|e| e["event_type"] == "anpr"),
        first(&|e| e["event_type"] == "object" && !e["license_plate"].is_null()),
        first(&|e| e["event_type"] == "object" && e["lifecycle"] == "end" && e["camera_id"] == "square"),
    ];
    let examples: Vec<&str> = picks.into_iter().flatten().map(|i| entries[i].1["payload"].as_str()).collect();
    let out = std::env::temp_dir().join("analytics-service-event-examples.jsonl");
    std::fs::write(&out, examples.join("\n") + "\n").unwrap();
    println!("examples written to {}", out.display());
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}

/// The ```json blocks of a page of the repository.
fn json_blocks(page: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(page);
    let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```json") => current = Some(String::new()),
            (Some(b), l) if l.starts_with("```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// Every JSON block of docs/events.md that is an event matches its schema, and each event
/// type has at least one example there; so does the README's example.
#[test]
fn the_examples_in_the_docs_match_the_schemas() {
    let readme: Vec<Value> = json_blocks("README.md").iter().filter_map(|b| serde_json::from_str::<Value>(b).ok()).collect();
    let readme_events: Vec<&Value> = readme.iter().filter(|v| v.get("event_type").is_some()).collect();
    assert!(!readme_events.is_empty(), "the README shows an event");
    readme_events.into_iter().for_each(check_event);
    let mut typed: BTreeMap<String, usize> = BTreeMap::new();
    for b in &json_blocks("docs/events.md") {
        let v: Value = serde_json::from_str(b).unwrap_or_else(|e| panic!("a json block of docs/events.md is not JSON ({e}):\n{b}"));
        if v.get("event_type").is_some() {
            check_event(&v);
            *typed.entry(v["event_type"].as_str().unwrap().to_string()).or_insert(0) += 1;
        }
    }
    for t in EVENT_TYPES {
        assert!(typed.contains_key(t), "docs/events.md has no complete {t} example: {typed:?}");
    }
}

/// The schemas are valid draft 2020-12 documents with an `$id` each, and `event.json` names
/// every type.
#[test]
fn the_schemas_are_valid_draft_2020_12() {
    let meta_check = |name: &str| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(common::schema::schema_dir().join(name)).unwrap()).unwrap();
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
        assert!(v["$id"].as_str().is_some_and(|id| id.ends_with(&format!("/{name}"))), "{name}: $id");
        if let Err(e) = jsonschema::meta::validate(&v) {
            panic!("docs/schema/{name} is not a valid schema: {e}");
        }
        v
    };
    meta_check("common.json");
    for t in EVENT_TYPES {
        meta_check(&format!("{t}.json"));
    }
    let any = meta_check("event.json");
    let refs: Vec<&str> = any["oneOf"].as_array().unwrap().iter().map(|r| r["$ref"].as_str().unwrap()).collect();
    for t in EVENT_TYPES {
        assert!(refs.contains(&format!("{t}.json").as_str()), "event.json lacks {t}: {refs:?}");
    }
}
