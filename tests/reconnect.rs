//! Fast reconnect over many outages (DESIGN.md section 14): the project's RTSP server killed
//! and restarted again and again under several cameras. Alone in its test binary, so the
//! threads and file descriptors it counts are the service's own.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CAMERAS: [&str; 3] = ["flap0", "flap1", "flap2"];
const OUTAGES: usize = 6;
const OUTAGE: Duration = Duration::from_secs(3);

/// Threads of this process (the service runs in it).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Open file descriptors of this process.
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Events in `stream` after entry `after` (exclusive), per camera, and the last entry id.
fn events_after(conn: &mut redis::Connection, stream: &str, after: &str) -> (HashMap<String, usize>, String) {
    let entries: Vec<(String, HashMap<String, String>)> =
        redis::cmd("XRANGE").arg(stream).arg(format!("({after}")).arg("+").query(conn).unwrap();
    let mut per = HashMap::new();
    for (_, f) in &entries {
        *per.entry(f["camera_id"].clone()).or_insert(0) += 1;
    }
    let last = entries.last().map(|(id, _)| id.clone()).unwrap_or_else(|| after.to_string());
    (per, last)
}

/// The stream's newest entry id ("0-0" when empty).
fn last_id(conn: &mut redis::Connection, stream: &str) -> String {
    let e: Vec<(String, HashMap<String, String>)> =
        redis::cmd("XREVRANGE").arg(stream).arg("+").arg("-").arg("COUNT").arg(1).query(conn).unwrap();
    e.first().map(|(id, _)| id.clone()).unwrap_or_else(|| "0-0".into())
}

/// Waits until every camera has published an event after entry `after`; returns the seconds
/// each one took, measured from `since`.
fn resume_times(conn: &mut redis::Connection, stream: &str, after: &str, since: Instant, bound: Duration) -> Vec<f64> {
    let mut took: HashMap<&str, f64> = HashMap::new();
    let mut cursor = after.to_string();
    wait_for(bound, "every camera's events after the outage", || {
        let (per, last) = events_after(conn, stream, &cursor);
        cursor = last;
        for cam in CAMERAS {
            if per.contains_key(cam) {
                took.entry(cam).or_insert_with(|| since.elapsed().as_secs_f64());
            }
        }
        (took.len() == CAMERAS.len()).then_some(())
    });
    CAMERAS.iter().map(|c| took[c]).collect()
}

/// Six outages of about 3 s each under three RTSP cameras: after every one, each camera's
/// events resume within `STREAM_STALL_TIMEOUT_S` + 10 s (the contract's bound; the figures
/// printed are the measurement), and the service's threads and file descriptors stay flat
/// across the flaps (a small slack for threads the runtime starts or ends on its own).
#[test]
fn cameras_come_back_after_every_outage() {
    // TEST_LOG=1: the service's debug log (every retry, every open) on stderr
    if std::env::var_os("TEST_LOG").is_some() {
        analytics_service::logging::init(log::LevelFilter::Debug);
    }
    let video = media("vtest_pedestrians_768x576.mp4");
    let mut rtsp = RtspServer::start(&[("cam", video.as_path())]);
    let cfg = test_config("reconnect-flaps");
    let stream = cfg.redis_stream.clone();
    let bound = cfg.stream_stall_timeout + Duration::from_secs(10);
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let cams: Vec<Value> = CAMERAS
        .iter()
        .map(|id| {
            json!({"camera_id": id, "stream_url": rtsp.url("cam"),
                   "parameters": {"motion_threshold": 0.001, "max_fps": 5, "enable_object_detection": false}})
        })
        .collect();
    assert_eq!(post_json(addr, "/api/cameras", &Value::Array(cams)).status, 201);
    let mut conn = redis_conn();
    resume_times(&mut conn, &stream, "0-0", Instant::now(), Duration::from_secs(60));

    let mut figures = Vec::new();
    let mut baseline = None;
    for outage in 1..=OUTAGES {
        // a few seconds of running between outages
        std::thread::sleep(Duration::from_secs(2));
        rtsp.kill();
        let down = Instant::now();
        std::thread::sleep(OUTAGE);
        rtsp.restart();
        let up = Instant::now();
        let after = last_id(&mut conn, &stream);
        let took = resume_times(&mut conn, &stream, &after, up, bound);
        println!(
            "outage {outage}: down {:.1} s; events again after {} s (from the server's restart)",
            up.duration_since(down).as_secs_f64(),
            took.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join(" / ")
        );
        figures.push(took.into_iter().fold(0.0, f64::max));
        // counted once the first reconnect has started whatever a reconnect starts lazily
        if outage == 1 {
            std::thread::sleep(Duration::from_secs(1));
            baseline = Some((threads(), fds()));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let (t0, f0) = baseline.unwrap();
    let (t1, f1) = (threads(), fds());
    println!(
        "worst resume {:.1} s (bound {:?}); threads {t0} -> {t1}, fds {f0} -> {f1} over {} more outages",
        figures.iter().cloned().fold(0.0, f64::max),
        bound,
        OUTAGES - 1
    );
    assert!(t1 <= t0 + 4, "threads grew over the flaps: {t0} -> {t1}");
    assert!(f1 <= f0 + 8, "file descriptors grew over the flaps: {f0} -> {f1}");
    for id in CAMERAS {
        let c = get(addr, &format!("/api/cameras/{id}")).json();
        assert_eq!(c["state"], "running", "{c}");
    }
    svc.shutdown();
}
