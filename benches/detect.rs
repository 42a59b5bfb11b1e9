//! Detection phases on fixed inputs: letterbox (one 768x576 frame into 640x640), decode + NMS
//! of a real model output, and `session.run` at batch 1 and 8 on CPU.
//! `cargo bench --bench detect` (needs scripts/setup.sh's model and ONNX Runtime).

// The test fixtures' `media()`: one way to find the sample media for tests, benches and tools.
#[path = "../tests/common/mod.rs"]
mod common;

use analytics_service::infer::decode::decode;
use analytics_service::infer::letterbox::{letterbox_into, Letterbox};
use analytics_service::infer::Device;
use analytics_service::infer::ModelSession;
use analytics_service::infer::Yolo;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{Array3, Axis, Ix2};
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio;

fn frames(n: usize) -> Vec<Mat> {
    let path = common::media("vtest_pedestrians_768x576.mp4");
    let mut cap = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    let mut out = Vec::new();
    let mut m = Mat::default();
    while out.len() < n && cap.read(&mut m).unwrap() {
        out.push(m.try_clone().unwrap());
    }
    assert_eq!(out.len(), n, "sample video {} is too short", path.display());
    out
}

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolov8n.onnx");

fn dylib() -> Option<std::path::PathBuf> {
    std::env::var_os("ORT_DYLIB_PATH").map(std::path::PathBuf::from)
}

fn yolo(batch: usize) -> Yolo {
    Yolo::load(MODEL.as_ref(), "yolov8n".into(), &Device::Cpu, dylib().as_deref(), batch, 0.45).expect("model (run scripts/setup.sh)")
}

fn detect(c: &mut Criterion) {
    let f = frames(8);
    let mut t = Array3::<f32>::zeros((3, 640, 640));
    c.bench_function("letterbox_768x576_to_640", |b| b.iter(|| letterbox_into(&f[0], t.view_mut()).unwrap()));

    // a real output to decode: the model's [84, 8400] for the first frame
    let (lb, _) = Letterbox::fit(768, 576, 640, 640);
    let mut session = ModelSession::load("YOLO_MODEL", MODEL.as_ref(), &Device::Cpu, dylib().as_deref()).unwrap();
    let mut input = ndarray::Array4::<f32>::zeros((1, 3, 640, 640));
    letterbox_into(&f[0], input.index_axis_mut(Axis(0), 0)).unwrap();
    let out = session.run_f32(input.view(), 0, |o| o.index_axis(Axis(0), 0).to_owned().into_dimensionality::<Ix2>().unwrap()).unwrap();
    c.bench_function("decode_nms_84x8400", |b| b.iter(|| decode(out.view(), 0.25, 0.45, &lb)));

    let mut y = yolo(8);
    let refs: Vec<&Mat> = f.iter().collect();
    let mut g = c.benchmark_group("session_run_cpu");
    g.sample_size(10);
    for n in [1usize, 8] {
        g.throughput(Throughput::Elements(n as u64));
        y.preprocess(&refs[..n]).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(format!("batch{n}")), &n, |b, &n| b.iter(|| y.run_preprocessed(n).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, detect);
criterion_main!(benches);
