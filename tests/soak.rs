//! Soak: many cameras for a while, alone in its test binary so that the memory it measures is
//! its own (tests of one binary share a process and run in parallel).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn n(c: &Value, key: &str) -> u64 {
    c[key].as_u64().unwrap_or_else(|| panic!("{key} missing: {c}"))
}

/// Eight cameras on loopback RTSP for 30 s through capture and motion (detection off, so the
/// figures are the video path's own): no panic, memory stays bounded, every camera's counters
/// add up (captured = skipped + processed + dropped, give or take the frames in flight).
/// Prints CPU and RSS for the record.
#[test]
fn eight_rtsp_cameras_for_thirty_seconds() {
    let video = media("vtest_pedestrians_768x576.mp4");
    let names: Vec<String> = (0..8).map(|i| format!("cam{i}")).collect();
    let mounts: Vec<(&str, &std::path::Path)> = names.iter().map(|n| (n.as_str(), video.as_path())).collect();
    let rtsp = RtspServer::start(&mounts);
    let cfg = test_config("capture-eight");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let cams: Vec<Value> = names
        .iter()
        .map(|n| json!({"camera_id": n, "stream_url": rtsp.url(n), "parameters": {"motion_threshold": 0.02, "enable_object_detection": false}}))
        .collect();
    assert_eq!(post_json(addr, "/api/cameras", &Value::Array(cams)).status, 201);
    wait_for(Duration::from_secs(30), "all eight running", || {
        let list = get(addr, "/api/cameras").json();
        list["cameras"].as_array().unwrap().iter().all(|c| c["state"] == "running").then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let (rss_start, cpu_start, t_start) = (rss_kib(), cpu_seconds(), Instant::now());
    let mut rss_max = rss_start;
    while t_start.elapsed() < Duration::from_secs(25) {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(rss_kib());
    }
    let cpu = (cpu_seconds() - cpu_start) / t_start.elapsed().as_secs_f64();
    let list = get(addr, "/api/cameras").json();
    let mut total_processed = 0;
    for c in list["cameras"].as_array().unwrap() {
        assert_eq!(c["state"], "running", "{c}");
        let captured = n(c, "frames_captured");
        let accounted = n(c, "frames_skipped") + n(c, "frames_processed") + n(c, "frames_dropped");
        assert!(captured >= accounted && captured - accounted <= 3, "counters add up: {c}");
        assert!(captured >= 250, "about 10 fps for 30 s: {c}");
        total_processed += n(c, "frames_processed");
    }
    println!(
        "8 RTSP cameras (768x576 @ 10 fps): {total_processed} frames processed, CPU {:.0}% of one core, RSS {} MiB at start of window, {} MiB max",
        cpu * 100.0,
        rss_start / 1024,
        rss_max / 1024
    );
    assert!(rss_max < rss_start + 128 * 1024, "memory grew from {rss_start} KiB to {rss_max} KiB");
    svc.shutdown();
    let mut conn = redis_conn();
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}
