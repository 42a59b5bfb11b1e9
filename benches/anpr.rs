//! ANPR latency per vehicle on CPU with the real models: plate detector on a vehicle crop, OCR
//! on the plate crop, and the whole stage for one vehicle (guards, crop, both models, dedupe).
//! `cargo bench --bench anpr`; vehicles/s = 1 / the `stage_one_vehicle` time. The plate
//! detector and the stage run once with the float plate model (FP16 file) and once with its
//! INT8 sibling (`ANPR_PLATE_PRECISION`, docs/int8.md), back to back.

// The test fixtures' `media()`: one way to find the sample media for tests, benches and tools.
#[path = "../tests/common/mod.rs"]
mod common;

use analytics_service::camera::{CameraParams, CameraRuntime};
use analytics_service::infer::PrecisionSetting;
use analytics_service::{AnprJob, AnprModels, AnprSettings, AnprStage, CameraCounters, Config, Frame, Metrics, SystemClock, Vehicle};
use criterion::{criterion_group, criterion_main, Criterion};
use opencv::core::{Mat, Rect};
use opencv::imgcodecs;
use opencv::prelude::*;
use std::sync::Arc;

fn config() -> Config {
    let mut c = Config::default();
    let root = env!("CARGO_MANIFEST_DIR");
    c.anpr_plate_model = format!("{root}/models/plate_detector_yolov8s_seg.onnx").into();
    c.anpr_ocr_model = format!("{root}/models/ch_PP-OCRv4_rec_infer.onnx").into();
    c.anpr_ocr_dict = format!("{root}/models/ppocr_v4_rec_dict.txt").into();
    c.ort_dylib_path = std::env::var_os("ORT_DYLIB_PATH").map(Into::into);
    c.inference_device = analytics_service::config::InferenceDevice::Cpu;
    c
}

fn anpr(c: &mut Criterion) {
    let path = common::media("car_plate_cz_5AU5341.png");
    let img = imgcodecs::imread(path.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    assert!(!img.empty(), "sample image {} does not decode", path.display());
    let mut cfg = config();
    // the hatchback with the plate (the media README's plate box is (307,188)-(387,209))
    let vehicle = [250.0f32, 100.0, 450.0, 260.0];
    let crop = Mat::roi(&img, Rect::new(250, 100, 200, 160)).unwrap().try_clone().unwrap();
    let plate = Mat::roi(&img, Rect::new(303, 186, 88, 25)).unwrap().try_clone().unwrap();
    let mut g = c.benchmark_group("anpr_cpu");
    g.sample_size(10);
    for setting in [PrecisionSetting::Fp32, PrecisionSetting::Int8] {
        cfg.anpr_plate_precision = setting;
        let mut models = AnprModels::load(&cfg).expect("ANPR models (scripts/setup.sh, which also makes the INT8 plate detector)");
        let p = models.plate.precision();
        g.bench_function(format!("plate_detector_on_vehicle_crop/{p}"), |b| b.iter(|| models.plate.detect(&crop, 0.4).unwrap()));
        if setting == PrecisionSetting::Fp32 {
            g.bench_function("ocr_on_plate_crop", |b| b.iter(|| models.reader.read(&plate).unwrap()));
        }
        stage_one_vehicle(
            &mut g,
            &format!("stage_one_vehicle/{p}"),
            AnprStage::new(models, AnprSettings::from_config(&cfg), SystemClock, Metrics::new()),
            &img,
            vehicle,
        );
    }
    g.finish();
}

/// The whole stage for one vehicle of `img` at `vehicle`.
fn stage_one_vehicle(
    g: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    name: &str,
    mut stage: AnprStage<SystemClock>,
    img: &Mat,
    vehicle: [f32; 4],
) {
    let params = CameraParams { enable_anpr: true, ..Default::default() };
    let cam = CameraRuntime::new("bench", params, Arc::new(CameraCounters::default()));
    let mut n = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            n += 1;
            // move the box left edge by 15 px steps over a 7-frame cycle (IoU < 0.95 between
            // steps), so the stationary guard never skips it; the plate stays inside
            let dx = -((n % 7) as f32) * 15.0;
            let job = AnprJob {
                frame: Frame::now("bench", cam.params().as_ref().clone(), cam.counters.clone(), n, img.clone()),
                vehicles: vec![Vehicle {
                    class_name: "car".into(),
                    confidence: 0.8,
                    bbox: [vehicle[0] + dx, vehicle[1], vehicle[2], vehicle[3]],
                    track_id: None,
                }],
            };
            stage.process(&job)
        })
    });
}

criterion_group!(benches, anpr);
criterion_main!(benches);
