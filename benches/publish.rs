//! Publisher throughput against a real Redis (TEST_REDIS_HOST/TEST_REDIS_PORT, default
//! 127.0.0.1:6379): the whole publisher thread at several batch sizes, and single XADD round trips
//! for comparison. `cargo bench --bench publish`; criterion prints elements/s = events/s.

use analytics_service::events::{BoundingBox, Event, EventCommon, MotionEvent};
use analytics_service::{events_channel, publish, Metrics, PublisherConfig, RedisTarget, StopSender, Supervisor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, SystemTime};

fn target() -> RedisTarget {
    RedisTarget {
        host: std::env::var("TEST_REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into()),
        port: std::env::var("TEST_REDIS_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(6379),
        db: 0,
        password: None,
    }
}

fn motion(n: u64) -> Event {
    Event::Motion(MotionEvent {
        common: EventCommon::new("bench-cam", SystemTime::now(), n, (1920, 1080)),
        motion_intensity: 0.31,
        affected_area_percentage: 0.12,
        motion_boxes: vec![BoundingBox { x: 0.1, y: 0.2, width: 0.3, height: 0.4 }; 3],
        zones: vec![],
    })
}

const EVENTS: u64 = 10_000;

fn publisher(c: &mut Criterion) {
    let mut g = c.benchmark_group("publisher");
    g.throughput(Throughput::Elements(EVENTS)).sample_size(10).measurement_time(Duration::from_secs(8));
    let stream = "bench:publish";
    for batch in [1usize, 10, 100, 500] {
        g.bench_with_input(BenchmarkId::new("pipelined_xadd_batch", batch), &batch, |b, &batch| {
            let metrics = Metrics::new();
            let (tx, rx) = events_channel();
            let stop_tx = StopSender::new();
            let stop_rx = stop_tx.subscribe();
            let cfg = PublisherConfig {
                target: target(),
                stream: stream.into(),
                instance_id: "bench".into(),
                maxlen: 100_000,
                batch_size: batch,
                buffer_max: 100_000,
                io_timeout: Duration::from_secs(2),
                backoff_min: Duration::from_millis(50),
                backoff_max: Duration::from_secs(1),
                shutdown_flush: Duration::from_secs(5),
            };
            let (h, _) = publish::spawn(cfg, rx, stop_rx, metrics.clone(), &Supervisor::new()).expect("publisher starts");
            let events: Vec<Event> = (0..EVENTS).map(motion).collect();
            b.iter(|| {
                let start = metrics.publisher_snapshot().published;
                for e in &events {
                    tx.send(e.clone()).unwrap();
                }
                while metrics.publisher_snapshot().published < start + EVENTS {
                    std::thread::yield_now();
                }
            });
            drop(stop_tx);
            h.join();
        });
    }
    g.finish();
    let mut conn = target().connect(Duration::from_secs(2)).expect("redis for the bench");
    let _: () = redis::cmd("DEL").arg(stream).query(&mut conn).unwrap();
}

/// Event JSON encoding, the publisher's per-event CPU cost.
fn encode(c: &mut Criterion) {
    let e = motion(1);
    c.bench_function("encode_motion_event", |b| b.iter(|| serde_json::to_string(&e).unwrap()));
}

criterion_group!(benches, publisher, encode);
criterion_main!(benches);
