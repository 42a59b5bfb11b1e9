//! YOLOv8 detection with the real model: accuracy against an independent Python reference,
//! batching, fairness, and detection events end to end over RTSP into Redis.

mod common;

use analytics_service::infer::decode::{iou, RawDetection};
use analytics_service::infer::Device;
use analytics_service::infer::Yolo;
use common::*;
use opencv::core::Mat;
use opencv::imgcodecs;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn yolo(batch: usize) -> Yolo {
    Yolo::load(
        &model("yolov8n.onnx"),
        "yolov8n".into(),
        &Device::Cpu,
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).as_deref(),
        batch,
        0.45,
    )
    .expect("model loads")
}

/// The test images: two photos and three frames of the pedestrian video (written as PNG by
/// the reference script so both sides see the same pixels).
fn images() -> Vec<PathBuf> {
    let dir = fixtures_dir().join("detect-frames");
    std::fs::create_dir_all(&dir).unwrap();
    let frames = [100, 200, 400];
    if !frames.iter().all(|n| dir.join(format!("frame_{n}.png")).is_file()) {
        let video = media("vtest_pedestrians_768x576.mp4");
        let st = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference_detect.py"))
            .args(["--frames", video.to_str().unwrap(), "100,200,400", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let mut v = vec![media("bus.jpg"), media("car_plate_cz_5AU5341.png")];
    v.extend(frames.iter().map(|n| dir.join(format!("frame_{n}.png"))));
    v
}

fn read(path: &Path) -> Mat {
    let m = imgcodecs::imread(path.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    assert!(!opencv::prelude::MatTraitConst::empty(&m), "cannot read {}", path.display());
    m
}

/// The Rust detector matches the Python reference: every reference box >= 0.5 is found (same
/// class, IoU >= 0.9, confidence within 0.02), and the Rust side has no box >= 0.5 the
/// reference lacks.
#[test]
fn detections_match_the_python_reference() {
    let paths = images();
    let reference = reference_detections(&paths);
    let mut y = yolo(8);
    let mats: Vec<Mat> = paths.iter().map(|p| read(p)).collect();
    let refs: Vec<&Mat> = mats.iter().collect();
    let (results, _) = y.detect_batch(&refs, &vec![0.25; refs.len()]).unwrap();
    let mut checked = 0;
    for (path, (_, ours)) in paths.iter().zip(&results) {
        let theirs = &reference[path.to_str().unwrap()];
        let matches = |a: &RawDetection, b: &(usize, f32, [f32; 4])| {
            a.class_id == b.0 && iou(&a.bbox, &b.2) >= 0.9 && (a.confidence - b.1).abs() <= 0.02
        };
        for r in theirs.iter().filter(|r| r.1 >= 0.5) {
            assert!(ours.iter().any(|o| matches(o, r)), "{}: reference {r:?} not found in {ours:?}", path.display());
            checked += 1;
        }
        for o in ours.iter().filter(|o| o.confidence >= 0.5) {
            // the reference box may sit just under 0.5: compare against all of it
            assert!(theirs.iter().any(|r| matches(o, r)), "{}: extra box {o:?}; reference {theirs:?}", path.display());
        }
    }
    assert!(checked >= 20, "only {checked} reference boxes checked");
    // the media README's expectations, as a sanity check of the whole chain
    let bus = &results[0].1;
    assert_eq!(bus.iter().filter(|d| d.confidence >= 0.5 && d.class_id == 0).count(), 3, "{bus:?}");
    assert!(bus.iter().any(|d| d.class_id == 5 && d.confidence > 0.8), "bus found: {bus:?}");
}

/// A frame gives the same result alone and inside a batch of 8 with other cameras' frames.
#[test]
fn batching_does_not_change_results() {
    let paths = images();
    let mats: Vec<Mat> = paths.iter().map(|p| read(p)).collect();
    let mut y = yolo(8);
    let target = &mats[2];
    let (alone, _) = y.detect_batch(&[target], &[0.25]).unwrap();
    let mut batch: Vec<&Mat> = mats.iter().chain(mats.iter()).take(8).collect();
    batch[5] = target;
    let (together, _) = y.detect_batch(&batch, &[0.25; 8]).unwrap();
    let (a, b) = (&alone[0].1, &together[5].1);
    assert_eq!(a.len(), b.len(), "{a:?}\nvs\n{b:?}");
    for (x, z) in a.iter().zip(b) {
        assert_eq!(x.class_id, z.class_id);
        assert!((x.confidence - z.confidence).abs() < 1e-4, "{x:?} vs {z:?}");
        assert!(iou(&x.bbox, &z.bbox) > 0.999, "{x:?} vs {z:?}");
    }
    assert!(y.info.fixed_batch.is_none(), "the test model has a dynamic batch axis");
}

/// ONNX Runtime's I/O binding (buffers bound once; page-locked memory on a GPU) gives the same
/// detections as the plain run: the bound path proven on the CPU, at batch sizes 5, 1, 8, 3,
/// 5, 5 in a row, so the reused staging and output buffers are checked across changing
/// shapes, a size evicted (5 + 1 + 8 + 3 images exceed two batches of 8) and made again, and
/// a buffer reused at the same size.
#[test]
fn io_binding_gives_the_same_detections() {
    let paths = images();
    let mats: Vec<Mat> = paths.iter().map(|p| read(p)).collect();
    let mut plain = yolo(8);
    let mut bound = yolo(8);
    assert!(!bound.info.io_binding, "the CPU runs without binding by default");
    bound.use_io_binding().expect("I/O binding works on the CPU");
    assert!(bound.info.io_binding);
    let all: Vec<&Mat> = mats.iter().collect();
    let eight: Vec<&Mat> = mats.iter().cycle().take(8).collect();
    for batch in [&all[..], &all[2..3], &eight[..], &all[..3], &all[..], &all[..]] {
        let (a, _) = plain.detect_batch(batch, &vec![0.25; batch.len()]).unwrap();
        let (b, _) = bound.detect_batch(batch, &vec![0.25; batch.len()]).unwrap();
        assert_eq!(a.len(), b.len());
        for ((_, x), (_, z)) in a.iter().zip(&b) {
            assert_eq!(x.len(), z.len(), "{x:?}\nvs\n{z:?}");
            for (x, z) in x.iter().zip(z) {
                assert_eq!(x.class_id, z.class_id);
                assert!((x.confidence - z.confidence).abs() < 1e-5, "{x:?} vs {z:?}");
                assert!(iou(&x.bbox, &z.bbox) > 0.9999, "{x:?} vs {z:?}");
            }
        }
        assert!(b.iter().any(|(_, d)| !d.is_empty()), "the images have objects");
    }
}

/// A camera on RTSP (the pedestrian video) publishes detection events whose classes and boxes
/// are right: people, normalised boxes taller than wide, model info filled in.
#[test]
fn detection_events_over_rtsp_reach_redis() {
    let video = media("vtest_pedestrians_768x576.mp4");
    let rtsp = RtspServer::start(&[("walk", video.as_path())]);
    let cfg = test_config("detect-e2e");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let cam = json!({"camera_id": "walk", "stream_url": rtsp.url("walk"),
        "parameters": {"detection_classes": ["person", "car"], "enable_motion_detection": false, "max_fps": 2}});
    assert_eq!(post_json(addr, "/api/cameras", &cam).status, 201);
    let mut conn = redis_conn();
    let entries = wait_for(Duration::from_secs(60), "5 detection events", || {
        let e: Vec<_> = xrange(&mut conn, &stream).into_iter().filter(|(_, f)| f["event_type"] == "detection").collect();
        (e.len() >= 5).then_some(e)
    });
    let health = get(addr, "/api/health").json();
    assert_eq!(health["model"]["yolo"]["provider"], "cpu", "{health}");
    svc.shutdown();
    for (_, f) in &entries {
        assert_eq!(f["event_type"], "detection");
        let p: Value = serde_json::from_str(&f["payload"]).unwrap();
        assert_eq!(p["model_info"]["model_type"], "yolov8n");
        assert!(p["model_info"]["runtime"].as_str().unwrap().starts_with("onnxruntime 1."), "{p}");
        assert!(p["model_info"]["version"].as_str().unwrap().starts_with("sha256:"), "the weights' fingerprint: {p}");
        let dets = p["detections"].as_array().unwrap();
        let people = dets.iter().filter(|d| d["class_name"] == "person").count();
        assert!(people >= 3, "several people in every frame of this clip: {p}");
        for d in dets {
            assert!(d["class_name"] == "person" || d["class_name"] == "car", "class filter: {d}");
            assert!(d["confidence"].as_f64().unwrap() >= 0.5);
            let b = &d["bounding_box"];
            let (x, y, w, h) =
                (b["x"].as_f64().unwrap(), b["y"].as_f64().unwrap(), b["width"].as_f64().unwrap(), b["height"].as_f64().unwrap());
            assert!(x >= 0.0 && y >= 0.0 && x + w <= 1.0001 && y + h <= 1.0001, "{b}");
            if d["class_name"] == "person" {
                // normalised on a 4:3 frame: a standing person is taller than wide in pixels
                assert!(h * 576.0 > w * 768.0, "{d}");
            }
        }
    }
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}

/// Fairness: one camera pushing 30 fps cannot starve seven cameras at 1 fps; each slow camera
/// gets every frame it sends detected (or, on a machine too slow even for that, as many as the
/// busy camera), and the busy one absorbs the drops.
#[test]
fn busy_camera_cannot_starve_slow_ones() {
    let video = media("vtest_pedestrians_768x576.mp4");
    let mut cfg = test_config("detect-fair");
    cfg.batch_size = 8;
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let busy = clip_30fps();
    let mut cams = vec![json!({"camera_id": "busy", "stream_url": busy.to_str().unwrap(),
        "parameters": {"max_fps": 30, "loop_file": true, "enable_motion_detection": false}})];
    for i in 0..7 {
        cams.push(json!({"camera_id": format!("slow{i}"), "stream_url": video.to_str().unwrap(),
            "parameters": {"max_fps": 1, "enable_motion_detection": false}}));
    }
    assert_eq!(post_json(addr, "/api/cameras", &Value::Array(cams)).status, 201);
    std::thread::sleep(Duration::from_secs(20));
    let list = get(addr, "/api/cameras").json();
    svc.shutdown();
    let cams = list["cameras"].as_array().unwrap();
    let n = |c: &Value, k: &str| c[k].as_u64().unwrap();
    let busy = cams.iter().find(|c| c["camera_id"] == "busy").unwrap();
    let busy_detected = n(busy, "frames_detected");
    println!("busy camera: {} captured, {busy_detected} detected, {} dropped", n(busy, "frames_captured"), n(busy, "frames_dropped"));
    assert!(busy_detected > 0);
    for c in cams.iter().filter(|c| c["camera_id"] != "busy") {
        let sent = n(c, "frames_captured") - n(c, "frames_skipped");
        assert!(sent >= 15, "about 1 fps for 20 s: {c}");
        // Round-robin gives every waiting camera a slot before any camera a second one, so a
        // slow camera gets every frame it sends or, when the machine is too slow for that, as
        // many as the busy camera: never starved. (Machine speed sets the numbers, not the
        // property; 0.7 leaves room for the frames in flight when the counters are read.)
        let fair = sent.min(busy_detected) as f64;
        assert!(n(c, "frames_detected") as f64 >= 0.7 * fair, "slow camera starved ({busy_detected} detected for busy): {c}");
    }
    let mut conn = redis_conn();
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}

/// A `.pt` model is refused with the export command; a missing file names the variable.
#[test]
fn bad_model_paths_are_clear_errors() {
    let e = Yolo::load(std::path::Path::new("yolov8n.pt"), "x".into(), &Device::Cpu, None, 1, 0.45).err().unwrap();
    assert!(e.to_string().contains("format=onnx"), "{e}");
    let e = Yolo::load(std::path::Path::new("/no/model.onnx"), "x".into(), &Device::Cpu, None, 1, 0.45).err().unwrap();
    assert!(e.to_string().starts_with("YOLO_MODEL=\"/no/model.onnx\""), "{e}");
}

/// `detect_on: motion` runs YOLO on a static scene only for the keyframe every few seconds,
/// while `every_frame` runs it on every frame.
#[test]
fn detect_on_motion_skips_quiet_frames() {
    let still = static_clip();
    let svc = start_service(test_config("detect-on-motion"));
    let addr = svc.api_addr();
    let cams = json!([
        {"camera_id": "quiet", "stream_url": still.to_str().unwrap(), "parameters": {"detect_on": "motion", "loop_file": true}},
        {"camera_id": "every", "stream_url": still.to_str().unwrap(), "parameters": {"loop_file": true}},
    ]);
    assert_eq!(post_json(addr, "/api/cameras", &cams).status, 201);
    std::thread::sleep(Duration::from_secs(8));
    let quiet = get(addr, "/api/cameras/quiet").json();
    let every = get(addr, "/api/cameras/every").json();
    svc.shutdown();
    let d = |c: &Value| c["frames_detected"].as_u64().unwrap();
    assert!((1..=3).contains(&d(&quiet)), "a keyframe every 5 s in ~8 s: {quiet}");
    assert!(d(&every) >= 5 && d(&every) > d(&quiet), "every frame goes to detection: {every}");
    assert!(quiet["frames_processed"].as_u64().unwrap() >= 50, "motion still ran on every frame: {quiet}");
}

/// `INFERENCE_DEVICE=cuda` where CUDA cannot load is a start-up error that says so (never a
/// silent fall back to CPU); `auto` falls back and says CPU.
#[test]
fn cuda_is_reported_truthfully() {
    let dylib = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    match Yolo::load(&model("yolov8n.onnx"), "yolov8n".into(), &Device::Cuda, dylib.as_deref(), 1, 0.45) {
        Ok(y) => assert_eq!(y.info.provider, analytics_service::infer::Provider::Cuda),
        Err(e) => assert!(e.to_string().starts_with("INFERENCE_DEVICE=cuda but the CUDA execution provider did not load"), "{e}"),
    }
    let auto = Yolo::load(&model("yolov8n.onnx"), "yolov8n".into(), &Device::Auto, dylib.as_deref(), 1, 0.45).unwrap();
    println!("auto chose {:?}", auto.info.provider);
}

/// A frame the detector cannot take (empty, one channel, 1x1) is dropped alone: the other
/// cameras' frames of the same batch are detected as usual.
#[test]
fn a_bad_frame_costs_only_itself() {
    use analytics_service::camera::CameraParams;
    use analytics_service::metrics::{CameraCounters, Metrics};
    use analytics_service::pipeline::detect::{self, DetectSettings};
    use analytics_service::pipeline::frame::Frame;
    use analytics_service::stage::supervise::Supervisor;
    use std::sync::Arc;
    let good = read(&media("bus.jpg"));
    let bad = [Mat::default(), Mat::new_rows_cols_with_default(64, 64, opencv::core::CV_8UC1, 0.into()).unwrap()];
    let (tx, rx) = crossbeam_channel::bounded(16);
    let (out_tx, out_rx) = crossbeam_channel::bounded(16);
    let sup = Supervisor::new();
    let settings = DetectSettings { batch_size: 8, batch_timeout: Duration::from_millis(200) };
    let h = detect::spawn(vec![yolo(8), yolo(8)], settings, rx, out_tx, Metrics::new(), &sup).unwrap();
    let counters: Vec<Arc<CameraCounters>> = (0..4).map(|_| Arc::new(CameraCounters::default())).collect();
    let frames = [bad[0].clone(), good.clone(), bad[1].clone(), good.clone()];
    for (i, img) in frames.into_iter().enumerate() {
        tx.send(Frame::now(&format!("cam{i}"), CameraParams::default(), counters[i].clone(), 1, img)).unwrap();
    }
    drop(tx);
    h.join();
    let got: Vec<String> = out_rx.try_iter().map(|d| d.frame.camera_id.to_string()).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&"cam1".to_string()) && got.contains(&"cam3".to_string()), "{got:?}");
    assert_eq!(counters[0].snapshot().frames_dropped, 1);
    assert_eq!(counters[2].snapshot().frames_dropped, 1);
    assert_eq!(counters[1].snapshot().frames_detected, 1);
}

/// With two inference workers a camera's frames can finish out of order (the second worker's
/// frame first); the track stage must still get them in capture order, every one once.
#[test]
fn two_workers_keep_each_cameras_order() {
    use analytics_service::camera::CameraParams;
    use analytics_service::metrics::{CameraCounters, Metrics};
    use analytics_service::pipeline::detect::{self, DetectSettings};
    use analytics_service::pipeline::frame::Frame;
    use analytics_service::stage::supervise::Supervisor;
    use std::sync::Arc;
    let big = read(&media("bus.jpg"));
    // a tiny frame letterboxes and runs faster than the full photo: the other worker's
    // later frame often finishes first
    let mut small = Mat::default();
    opencv::imgproc::resize(&big, &mut small, opencv::core::Size::new(64, 48), 0.0, 0.0, opencv::imgproc::INTER_AREA).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(64);
    let (out_tx, out_rx) = crossbeam_channel::bounded(64);
    let settings = DetectSettings { batch_size: 1, batch_timeout: Duration::from_millis(1) };
    let h = detect::spawn(vec![yolo(1), yolo(1)], settings, rx, out_tx, Metrics::new(), &Supervisor::new()).unwrap();
    let counters: Vec<Arc<CameraCounters>> = (0..2).map(|_| Arc::new(CameraCounters::default())).collect();
    let sender = std::thread::spawn(move || {
        for n in 1..=24u64 {
            for (c, counters) in counters.iter().enumerate() {
                let img = if n % 2 == 0 { small.clone() } else { big.clone() };
                tx.send(Frame::now(&format!("cam{c}"), CameraParams::default(), counters.clone(), n, img)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    });
    sender.join().unwrap();
    h.join();
    let got: Vec<(String, u64)> = out_rx.try_iter().map(|d| (d.frame.camera_id.to_string(), d.frame.frame_number)).collect();
    for cam in ["cam0", "cam1"] {
        let order: Vec<u64> = got.iter().filter(|(c, _)| c == cam).map(|(_, n)| *n).collect();
        assert!(!order.is_empty());
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{cam} out of order: {order:?}");
    }
}

/// One camera alone, every worker idle: its frames run on the session shared by the workers
/// that uses every core (the light-load latency), and give the same boxes as on a worker's
/// own one-thread session. Once two cameras are live each frame stays on its worker's session.
#[test]
fn one_camera_alone_runs_on_every_core() {
    use analytics_service::camera::CameraParams;
    use analytics_service::metrics::{CameraCounters, Metrics};
    use analytics_service::pipeline::detect::{self, DetectSettings};
    use analytics_service::pipeline::frame::Frame;
    use analytics_service::stage::supervise::Supervisor;
    use std::sync::Arc;
    let image = read(&media("bus.jpg"));
    let workers = || {
        let (mut a, mut b) = (yolo(1), yolo(1));
        let wide = a.load_wide_session(std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).as_deref()).unwrap().expect("a CPU session");
        b.share_wide_session(wide.clone());
        a.share_wide_session(wide);
        vec![a, b]
    };
    let (reference, _) = yolo(1).detect_batch(&[&image], &[0.1]).unwrap();
    let settings = DetectSettings { batch_size: 1, batch_timeout: Duration::from_millis(1) };
    for cameras in [1usize, 2] {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let (out_tx, out_rx) = crossbeam_channel::bounded(64);
        let metrics = Metrics::new();
        let h = detect::spawn(workers(), settings.clone(), rx, out_tx, metrics.clone(), &Supervisor::new()).unwrap();
        let counters = Arc::new(CameraCounters::default());
        for n in 1..=4u64 {
            for c in 0..cameras {
                tx.send(Frame::now(&format!("cam{c}"), CameraParams::default(), counters.clone(), n, image.clone())).unwrap();
            }
            // one at a time: the previous frame is done before the next comes
            for _ in 0..cameras {
                let d = out_rx.recv_timeout(Duration::from_secs(30)).expect("a detection");
                assert_eq!(d.boxes.len(), reference[0].1.len(), "same boxes on either session");
                for (x, z) in d.boxes.iter().zip(&reference[0].1) {
                    assert_eq!(x.class_id, z.class_id);
                    assert!((x.confidence - z.confidence).abs() < 1e-4 && iou(&x.bbox, &z.bbox) > 0.999, "{x:?} vs {z:?}");
                }
            }
            // a camera's next frame comes a frame interval later: by then the worker that
            // passed the result on has said it is free again
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(tx);
        h.join();
        if cameras == 1 {
            assert!(metrics.wide_batches() >= 3, "one camera alone: {} of 4 frames on every core", metrics.wide_batches());
        } else {
            // the very first frame may come before the other camera has been seen
            assert!(metrics.wide_batches() <= 1, "two live cameras: {} frames on every core", metrics.wide_batches());
        }
    }
}
