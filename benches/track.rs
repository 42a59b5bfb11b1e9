//! Tracker cost per detected frame on synthetic scenes: 10 and 50 people (1080p), each circling
//! in its own cell with detector jitter, one detection in seven at a low score (ByteTrack's second pass),
//! plus a few one-frame blips. `cargo bench --bench track`; elements/s = frames/s on one core.

use analytics_service::{FrameStamp, TrackInput, Tracker, TrackerConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant, SystemTime};

/// Frames after which a scene repeats exactly (100 s at 10 fps).
const PERIOD: u64 = 1000;

/// A deterministic scene: `n` objects on a grid over 1920x1080, frame `f` at 10 fps.
fn scene(n: usize, f: u64) -> Vec<TrackInput> {
    let cols = (n as f32).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (cw, ch) = (1920.0 / cols as f32, 1080.0 / rows as f32);
    // periodic over PERIOD frames (whole turns), so cycling precomputed frames never jumps
    let f = f % PERIOD;
    let turn = std::f32::consts::TAU * f as f32 / PERIOD as f32;
    let mut rng = f.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut jitter = move || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((rng >> 33) % 5) as f32 - 2.0
    };
    let mut dets: Vec<TrackInput> = (0..n)
        .map(|i| {
            let (gx, gy) = ((i % cols) as f32 * cw + cw / 2.0, (i / cols) as f32 * ch + ch / 2.0);
            let phase = i as f32;
            let (cx, cy) = (gx + 0.25 * cw * (11.0 * turn + phase).cos(), gy + 0.2 * ch * (8.0 * turn + phase).sin());
            let (w, h) = (0.25 * cw.min(ch), 0.6 * cw.min(ch));
            let confidence = if (f as usize + i).is_multiple_of(7) { 0.3 } else { 0.6 + 0.3 * ((i * 13 % 10) as f32 / 10.0) };
            TrackInput { class_id: i % 3, confidence, bbox: [cx - w / 2.0 + jitter(), cy - h / 2.0 + jitter(), cx + w / 2.0, cy + h / 2.0] }
        })
        .collect();
    if f.is_multiple_of(4) {
        let x = (f * 37 % 1800) as f32;
        dets.push(TrackInput { class_id: 0, confidence: 0.7, bbox: [x, 10.0, x + 30.0, 60.0] });
    }
    dets
}

fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracker_update");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 50] {
        g.bench_with_input(BenchmarkId::new("objects", n), &n, |b, &n| {
            let mut tracker = Tracker::new(TrackerConfig::default());
            let (t0, wall0) = (Instant::now(), SystemTime::now());
            let frames: Vec<Vec<TrackInput>> = (0..PERIOD).map(|f| scene(n, f)).collect();
            let mut f = 0u64;
            b.iter(|| {
                let d = Duration::from_millis(100) * f as u32;
                let out = tracker
                    .update(&frames[f as usize % frames.len()], FrameStamp { frame_number: f, captured: t0 + d, captured_at: wall0 + d });
                f += 1;
                out
            });
            let confirmed = tracker.tracks().count();
            assert!(f < 10 || confirmed >= n * 9 / 10, "{confirmed} tracks for {n} objects: the scene is not being tracked");
        });
    }
    g.finish();
}

criterion_group!(benches, update);
criterion_main!(benches);
