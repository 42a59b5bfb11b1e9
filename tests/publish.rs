//! Publisher against real redis-servers: the machine's, and ones these tests start and kill.

mod common;

use analytics_service::events::*;
use analytics_service::metrics::{DropReason, Metrics};
use analytics_service::pipeline::events_channel;
use analytics_service::pipeline::publish::{self, PublisherConfig, RedisTarget};
use analytics_service::stage::supervise::Supervisor;
use analytics_service::stage::StopSender;
use common::*;
use std::time::{Duration, SystemTime};

fn cfg(port: u16, stream: &str, buffer_max: usize) -> PublisherConfig {
    PublisherConfig {
        target: RedisTarget { host: redis_host(), port, db: 0, password: None },
        stream: stream.to_string(),
        instance_id: "test-instance".into(),
        maxlen: 100_000,
        batch_size: 50,
        buffer_max,
        io_timeout: Duration::from_secs(1),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        shutdown_flush: Duration::from_secs(5),
    }
}

/// Event number `n`, of a type that cycles through all three.
fn event(n: u64) -> Event {
    let common = EventCommon::new("cam-pub", SystemTime::now(), n, (640, 480));
    match n % 3 {
        0 => Event::Motion(MotionEvent {
            common,
            motion_intensity: 0.5,
            affected_area_percentage: 0.25,
            motion_boxes: vec![BoundingBox { x: 0.1, y: 0.2, width: 0.3, height: 0.4 }],
            zones: vec![],
        }),
        1 => Event::Detection(DetectionEvent {
            common,
            detections: vec![Detection {
                class_name: "person".into(),
                confidence: 0.9,
                bounding_box: BoundingBox { x: 0.1, y: 0.1, width: 0.2, height: 0.5 },
                zones: vec!["gate".into()],
                track_id: Some("cam/1-1".into()),
            }],
            model_info: ModelInfo {
                model_type: "yolov8n".into(),
                model: "yolov8n.onnx".into(),
                version: "sha256:0123456789abcdef".into(),
                runtime: "onnxruntime 1.31.1".into(),
                precision: "fp32".into(),
            },
        }),
        _ => Event::Anpr(AnprEvent {
            common,
            anpr_result: AnprResult::new("5AU5341".into(), 0.99, None),
            plate_box: BoundingBox::default(),
            vehicle_box: BoundingBox::default(),
            vehicle_class: "car".into(),
            track_id: None,
            plate_image_key: None,
        }),
    }
}

/// Frame numbers of the stream's entries, in stream order, after checking each entry's fields.
fn frame_numbers(port: u16, stream: &str) -> Vec<u64> {
    let mut conn = redis_conn_at(port);
    xrange(&mut conn, stream)
        .into_iter()
        .map(|(_, f)| {
            let ev: Event = serde_json::from_str(&f["payload"]).expect("payload parses back into Event");
            assert_eq!(f["event_type"], ev.event_type().as_str());
            assert_eq!(f["camera_id"], ev.common().camera_id);
            assert_eq!(f["timestamp"], ev.common().timestamp);
            assert_eq!(f.len(), 4, "exactly the four fields: {f:?}");
            ev.common().frame_number
        })
        .collect()
}

/// Events reach the stream with the four fields, a payload that parses back, in order.
#[test]
fn events_reach_the_stream_in_order_with_four_fields() {
    let stream = unique_stream("publish-order");
    let metrics = Metrics::new();
    let (tx, rx) = events_channel();
    let stop_tx = StopSender::new();
    let stop_rx = stop_tx.subscribe();
    let (h, _) = publish::spawn(cfg(redis_port(), &stream, 10_000), rx, stop_rx, metrics.clone(), &Supervisor::new()).unwrap();
    let sent: Vec<Event> = (0..1000).map(event).collect();
    for e in &sent {
        tx.send(e.clone()).unwrap();
    }
    drop(stop_tx);
    h.join();
    let mut conn = redis_conn();
    let entries = xrange(&mut conn, &stream);
    let back: Vec<Event> = entries.iter().map(|(_, f)| serde_json::from_str(&f["payload"]).unwrap()).collect();
    // the publisher stamps its INSTANCE_ID on every payload (docs/architecture.md, "Events")
    let stamped: Vec<Event> = sent
        .into_iter()
        .map(|mut e| {
            e.common_mut().instance_id = "test-instance".into();
            e
        })
        .collect();
    assert_eq!(back, stamped, "every event, identical (with instance_id) and in order");
    assert_eq!(frame_numbers(redis_port(), &stream), (0..1000).collect::<Vec<_>>());
    assert_eq!(metrics.publisher_snapshot().published, 1000);
    assert_eq!(metrics.published(EventType::Motion), 334);
    assert_eq!(metrics.publisher_snapshot().dropped, 0);
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}

/// `MAXLEN ~` keeps the stream near its cap.
#[test]
fn maxlen_trims_the_stream() {
    let stream = unique_stream("publish-maxlen");
    let mut c = cfg(redis_port(), &stream, 10_000);
    c.maxlen = 100;
    let (tx, rx) = events_channel();
    let stop_tx = StopSender::new();
    let stop_rx = stop_tx.subscribe();
    let (h, _) = publish::spawn(c, rx, stop_rx, Metrics::new(), &Supervisor::new()).unwrap();
    for n in 0..2000 {
        tx.send(event(n)).unwrap();
    }
    drop(stop_tx);
    h.join();
    let mut conn = redis_conn();
    let len: usize = redis::cmd("XLEN").arg(&stream).query(&mut conn).unwrap();
    assert!((100..400).contains(&len), "approximate trim keeps about 100 entries, got {len}");
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}

/// Redis killed and restarted mid-run: nothing is lost while the buffer has room, the order
/// holds, and retries are counted (not drops).
#[test]
fn redis_restart_loses_nothing_while_the_buffer_has_room() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let stream = unique_stream("publish-restart");
    let metrics = Metrics::new();
    let (tx, rx) = events_channel();
    let stop_tx = StopSender::new();
    let stop_rx = stop_tx.subscribe();
    let (h, _) = publish::spawn(cfg(port, &stream, 1000), rx, stop_rx, metrics.clone(), &Supervisor::new()).unwrap();
    for n in 0..100 {
        tx.send(event(n)).unwrap();
    }
    wait_for(Duration::from_secs(10), "first 100 published", || (metrics.publisher_snapshot().published == 100).then_some(()));
    redis.kill();
    for n in 100..400 {
        tx.send(event(n)).unwrap();
    }
    wait_for(Duration::from_secs(10), "300 events buffered while Redis is down", || {
        (metrics.publisher_snapshot().buffered == 300).then_some(())
    });
    assert!(!metrics.redis_up());
    let _redis = OwnRedis::start(port); // a fresh, empty server on the same port
    wait_for(Duration::from_secs(15), "buffer flushed after restart", || (metrics.publisher_snapshot().published == 400).then_some(()));
    assert_eq!(frame_numbers(port, &stream), (100..400).collect::<Vec<_>>(), "the buffered events, in order");
    let snap = metrics.publisher_snapshot();
    assert_eq!(snap.dropped, 0);
    assert!(snap.retries > 0, "failed attempts are counted as retries");
    assert!(metrics.redis_up());
    drop(stop_tx);
    h.join();
}

/// With Redis down and more events than the buffer holds, the oldest go, the drop counter is
/// exact, and the rest arrive in order once Redis is back.
#[test]
fn a_full_buffer_drops_the_oldest_and_counts_exactly() {
    let port = free_port();
    let stream = unique_stream("publish-full");
    let metrics = Metrics::new();
    let (tx, rx) = events_channel();
    let stop_tx = StopSender::new();
    let stop_rx = stop_tx.subscribe();
    let (h, _) = publish::spawn(cfg(port, &stream, 50), rx, stop_rx, metrics.clone(), &Supervisor::new()).unwrap();
    for n in 0..120 {
        tx.send(event(n)).unwrap();
    }
    wait_for(Duration::from_secs(10), "all 120 taken in", || {
        (tx.is_empty() && metrics.dropped(DropReason::BufferFull) == 70).then_some(())
    });
    assert_eq!(metrics.publisher_snapshot().buffered, 50);
    let _redis = OwnRedis::start(port);
    wait_for(Duration::from_secs(15), "50 published", || (metrics.publisher_snapshot().published == 50).then_some(()));
    assert_eq!(frame_numbers(port, &stream), (70..120).collect::<Vec<_>>());
    assert_eq!(metrics.dropped(DropReason::BufferFull), 70, "exactly the overflow");
    drop(stop_tx);
    h.join();
    assert_eq!(metrics.publisher_snapshot().dropped, 70);
}

/// Shutdown with Redis unreachable gives up after the flush deadline and counts what it left.
#[test]
fn shutdown_without_redis_counts_the_unsent() {
    let port = free_port();
    let metrics = Metrics::new();
    let (tx, rx) = events_channel();
    let stop_tx = StopSender::new();
    let stop_rx = stop_tx.subscribe();
    let mut c = cfg(port, &unique_stream("publish-shutdown"), 1000);
    c.shutdown_flush = Duration::from_millis(500);
    let (h, _) = publish::spawn(c, rx, stop_rx, metrics.clone(), &Supervisor::new()).unwrap();
    for n in 0..30 {
        tx.send(event(n)).unwrap();
    }
    drop(stop_tx);
    let t0 = std::time::Instant::now();
    h.join();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(metrics.dropped(DropReason::Shutdown), 30);
}
