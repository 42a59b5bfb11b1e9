//! Motion-stage cost per frame on real footage (the pedestrian sample, upscaled to 720p and
//! 1080p): `cargo bench --bench motion`. Criterion's elements/s is frames/s on one core.

// The test fixtures' `media()`: one way to find the sample media for tests, benches and tools.
#[path = "../tests/common/mod.rs"]
mod common;

use analytics_service::{MotionDetector, MotionSettings};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use opencv::core::{Mat, Size};
use opencv::prelude::*;
use opencv::{imgproc, videoio};

fn frames(size: Size, n: usize) -> Vec<Mat> {
    let path = common::media("vtest_pedestrians_768x576.mp4");
    let mut cap = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_FFMPEG).expect("open sample video");
    assert!(cap.is_opened().unwrap(), "sample video {} does not open", path.display());
    let mut out = Vec::with_capacity(n);
    let mut f = Mat::default();
    while out.len() < n && cap.read(&mut f).unwrap() {
        let mut big = Mat::default();
        imgproc::resize(&f, &mut big, size, 0.0, 0.0, imgproc::INTER_LINEAR).unwrap();
        out.push(big);
    }
    out
}

fn motion(c: &mut Criterion) {
    // one core: OpenCV's own worker threads off, as in a motion pool of one thread per core
    opencv::core::set_num_threads(1).unwrap();
    let mut g = c.benchmark_group("motion_detect");
    g.throughput(Throughput::Elements(1));
    for (name, size) in [("720p", Size::new(1280, 720)), ("1080p", Size::new(1920, 1080))] {
        let frames = frames(size, 50);
        g.bench_with_input(BenchmarkId::from_parameter(name), &frames, |b, frames| {
            let mut d = MotionDetector::new(MotionSettings::default()).unwrap();
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % frames.len();
                d.detect(&frames[i], &[]).unwrap()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, motion);
criterion_main!(benches);
