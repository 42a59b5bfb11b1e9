//! Zone analytics cost per frame (pipeline/track/analytics.rs): a camera with 4 lines and 4
//! zones (one with loitering, one calibrated for speed with a limit), 10 and 50 people walking
//! across the frame, every person observed once a frame, then the counts due check (what the
//! track stage does per frame). `cargo bench --bench analytics`; elements/s = frames/s on one core.

use analytics_service::camera::{CameraParams, CountLine, RoiZone};
use analytics_service::Analytics;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn params() -> CameraParams {
    let line = |name: &str, p1: [f32; 2], p2: [f32; 2]| CountLine { name: name.into(), points: [p1, p2], classes: vec![] };
    let zone = |name: &str, x0: f32, x1: f32| RoiZone {
        name: name.into(),
        points: vec![[x0, 0.0], [x1, 0.0], [x1, 1.0], [x0, 1.0]],
        ..Default::default()
    };
    let mut z = vec![zone("a", 0.0, 0.25), zone("b", 0.25, 0.5), zone("c", 0.5, 0.75), zone("d", 0.75, 1.0)];
    z[1].loitering_s = Some(30.0);
    z[2].distances_m = Some([10.0, 20.0, 10.0, 20.0]);
    z[2].speed_limit_kmh = Some(50.0);
    CameraParams {
        lines: vec![
            line("v1", [0.3, 1.0], [0.3, 0.0]),
            line("v2", [0.7, 1.0], [0.7, 0.0]),
            line("h1", [0.0, 0.3], [1.0, 0.3]),
            line("h2", [0.0, 0.7], [1.0, 0.7]),
        ],
        roi_zones: z,
        ..Default::default()
    }
}

/// Person `i`'s feet at frame `f`: walking a slow ellipse over the whole frame.
fn foot(i: usize, f: u64) -> [f32; 2] {
    let t = f as f32 * 0.01 + i as f32;
    [0.5 + 0.45 * t.cos(), 0.5 + 0.45 * (1.3 * t).sin()]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("analytics_per_frame");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 50] {
        g.bench_with_input(BenchmarkId::from_parameter(format!("{n}_people")), &n, |b, &n| {
            let mut a = Analytics::new(&params());
            let t0 = Instant::now();
            let mut f = 0u64;
            b.iter(|| {
                f += 1;
                let at = t0 + Duration::from_millis(100 * f);
                for i in 0..n {
                    black_box(a.observe(i as u64, if i % 3 == 0 { "car" } else { "person" }, foot(i, f), at, |_| true));
                }
                black_box(a.due_counts(at, false));
                black_box(a.counts());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
