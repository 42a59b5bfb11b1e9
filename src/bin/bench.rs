//! Whole-service benchmark: N file cameras through capture, motion, detection and the Redis
//! publisher, then the bare inference loop (`session.run` on the same preprocessed frames) for
//! comparison. Prints frames/s, p50/p99 frame-to-event latency, drops, CPU and RSS.
//!
//!     cargo run --release --bin bench -- --cameras 4 --seconds 30
//!
//! Options: `--cameras N` (4), `--seconds S` (30), `--warmup S` (5), `--video PATH` (the
//! pedestrian sample), `--max-fps F` (per camera, 30), `--fast` (files decode as fast as they
//! can, capped by --max-fps, instead of playing at their own frame rate), `--batch B`
//! (BATCH_SIZE, 8), `--device auto|cpu|cuda|tensorrt`. Redis: REDIS_HOST/REDIS_PORT (127.0.0.1:6379),
//! stream `bench:<pid>` (deleted afterwards).

// The test fixtures' `media()`: one way to find the sample media for tests, benches and tools.
#[path = "../../tests/common/mod.rs"]
mod common;

use analytics_service::config::{Config, InferenceDevice};
use analytics_service::metrics::{process_cpu_seconds, process_rss_bytes};
use analytics_service::pipeline::detect::yolo::Yolo;
use analytics_service::service::Service;
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio;
use std::time::{Duration, Instant};

struct Args {
    cameras: usize,
    seconds: f64,
    warmup: f64,
    video: String,
    max_fps: f64,
    fast: bool,
    batch: usize,
    device: String,
}

fn args() -> Args {
    let mut a =
        Args { cameras: 4, seconds: 30.0, warmup: 5.0, video: String::new(), max_fps: 30.0, fast: false, batch: 8, device: "auto".into() };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--cameras" => a.cameras = v().parse().expect("--cameras N"),
            "--seconds" => a.seconds = v().parse().expect("--seconds S"),
            "--warmup" => a.warmup = v().parse().expect("--warmup S"),
            "--video" => a.video = v(),
            "--max-fps" => a.max_fps = v().parse().expect("--max-fps F"),
            "--fast" => a.fast = true,
            "--batch" => a.batch = v().parse().expect("--batch B"),
            "--device" => a.device = v(),
            other => panic!("unknown option {other}; see the doc comment of src/bin/bench.rs"),
        }
    }
    if a.video.is_empty() {
        a.video = common::media("vtest_pedestrians_768x576.mp4").to_string_lossy().into_owned();
    }
    a
}

fn rss_mib() -> f64 {
    process_rss_bytes() as f64 / (1024.0 * 1024.0)
}

#[derive(Default, Clone, Copy)]
struct Totals {
    captured: u64,
    skipped: u64,
    processed: u64,
    detected: u64,
    dropped: u64,
}

fn totals(svc: &Service) -> Totals {
    let mut t = Totals::default();
    for c in svc.registry().list() {
        t.captured += c.counters.frames_captured;
        t.skipped += c.counters.frames_skipped;
        t.processed += c.counters.frames_processed;
        t.detected += c.counters.frames_detected;
        t.dropped += c.counters.frames_dropped;
    }
    t
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let mut cfg = Config::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    analytics_service::logging::init(log::LevelFilter::Warn);
    cfg.api_host = "127.0.0.1".into();
    cfg.api_port = 0;
    if std::env::var("REDIS_HOST").is_err() {
        cfg.redis_host = "127.0.0.1".into();
    }
    cfg.redis_stream = format!("bench:{}", std::process::id());
    cfg.batch_size = a.batch;
    cfg.max_cameras = cfg.max_cameras.max(a.cameras);
    cfg.inference_device = match a.device.as_str() {
        "cpu" => InferenceDevice::Cpu,
        "cuda" => InferenceDevice::Cuda,
        "tensorrt" => InferenceDevice::TensorRt,
        _ => InferenceDevice::Auto,
    };
    let svc = Service::start(cfg.clone())?;
    // file sources must be absolute and inside a root: the video's own folder
    let video = std::path::Path::new(&a.video).canonicalize().map_err(|e| anyhow::anyhow!("{}: {e}", a.video))?;
    let ctx = analytics_service::camera::validate::Context { file_root: video.parent().map(Into::into) };
    let cams: Vec<serde_json::Value> = (0..a.cameras)
        .map(|i| {
            serde_json::json!({"camera_id": format!("bench{i}"), "stream_url": video.display().to_string(),
                "parameters": {"max_fps": a.max_fps, "loop_file": true, "file_realtime": !a.fast, "motion_threshold": 0.02}})
        })
        .collect();
    let validated = analytics_service::camera::validate::validate_cameras(&serde_json::Value::Array(cams), &ctx)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    svc.cluster().apply(validated.cameras)?;
    std::thread::sleep(Duration::from_secs_f64(a.warmup));

    let (t0, c0, cpu0, lat0) = (Instant::now(), totals(&svc), process_cpu_seconds(), svc.metrics.frame_to_event_seconds.counts());
    let pub0 = svc.metrics.publisher_snapshot();
    let mut rss_max = rss_mib();
    while t0.elapsed().as_secs_f64() < a.seconds {
        std::thread::sleep(Duration::from_millis(500));
        rss_max = rss_max.max(rss_mib());
    }
    let secs = t0.elapsed().as_secs_f64();
    let (c1, cpu1) = (totals(&svc), process_cpu_seconds());
    let window: Vec<u64> = svc.metrics.frame_to_event_seconds.counts().iter().zip(&lat0).map(|(b, a)| b - a).collect();
    let h = &svc.metrics.frame_to_event_seconds;
    let pub1 = svc.metrics.publisher_snapshot();
    let mean_batch = svc.metrics.batch_size.mean();
    let per = |x: u64, y: u64| (x - y) as f64 / secs;
    println!(
        "== service: {} file cameras ({}), {:.0} s measured after {:.0} s warm-up, BATCH_SIZE {} ==",
        a.cameras,
        if a.fast { "fast decode" } else { "real time" },
        secs,
        a.warmup,
        a.batch
    );
    println!("captured        {:8.1} frames/s", per(c1.captured, c0.captured));
    println!("skipped (pace)  {:8.1} frames/s", per(c1.skipped, c0.skipped));
    println!("processed       {:8.1} frames/s", per(c1.processed, c0.processed));
    println!("detected        {:8.1} frames/s  (mean batch {:.2})", per(c1.detected, c0.detected), mean_batch);
    println!("dropped         {:8.1} frames/s  ({} in window)", per(c1.dropped, c0.dropped), c1.dropped - c0.dropped);
    println!(
        "events          {:8.1} events/s published, {} publish drops",
        per(pub1.published, pub0.published),
        pub1.dropped - pub0.dropped
    );
    println!(
        "frame-to-event  p50 {:.1} ms, p99 {:.1} ms  (capture to detection result)",
        h.quantile_of(&window, 0.5) * 1e3,
        h.quantile_of(&window, 0.99) * 1e3
    );
    println!("cpu             {:.2} cores;  rss max {:.0} MiB", (cpu1 - cpu0) / secs, rss_max);
    let service_fps = per(c1.detected, c0.detected);
    svc.shutdown();

    // The bare loop: the same model and batch size, session.run on preprocessed frames.
    let mut cap = videoio::VideoCapture::from_file(&a.video, videoio::CAP_FFMPEG)?;
    let mut frames = Vec::new();
    let mut m = Mat::default();
    while frames.len() < a.batch && cap.read(&mut m)? {
        frames.push(m.try_clone()?);
    }
    let mut yolo =
        Yolo::load(&cfg.yolo_model, cfg.yolo_model_name(), cfg.inference_device, cfg.ort_dylib_path.as_deref(), a.batch, cfg.nms_iou)?;
    let refs: Vec<&Mat> = frames.iter().collect();
    let n = yolo.preprocess(&refs)?.len();
    yolo.run_preprocessed(n)?; // warm-up
    let (t, mut runs) = (Instant::now(), 0u64);
    while t.elapsed().as_secs_f64() < a.seconds.min(15.0) {
        yolo.run_preprocessed(n)?;
        runs += 1;
    }
    let bare_fps = (runs * n as u64) as f64 / t.elapsed().as_secs_f64();
    println!("== bare session.run loop, batch {n}, {:?} ==", yolo.info.provider);
    println!("inference       {:8.1} frames/s  ({:.1} ms per batch)", bare_fps, t.elapsed().as_secs_f64() * 1e3 / runs as f64);
    println!("ratio           service detected / bare = {:.2}", service_fps / bare_fps);
    let mut conn = analytics_service::pipeline::publish::RedisTarget::from_config(&cfg).connect(Duration::from_secs(2))?;
    let _: () = redis::cmd("DEL").arg(&cfg.redis_stream).query(&mut conn)?;
    Ok(())
}
