//! Whole-service benchmark with its two yardsticks, one phase after another (never at the same
//! time), all on the same model and footage:
//!
//! 1. the service: N file cameras through capture, motion, detection and the Redis publisher;
//! 2. the bare inference loop: `session.run` on already preprocessed frames of the video, at
//!    batch 1, batch 8 and `--batch` (preprocessing is excluded from its frames/s and reported
//!    separately, as ms per frame of the letterbox into the batch tensor);
//! 3. the seed design: `bench/baseline/seed_design.py` (Python: one thread per camera, OpenCV +
//!    onnxruntime batch 1 + redis-py XADD) with the same cameras, video, pacing and window.
//!
//! Prints each phase, then a summary table with the ratios service/bare (best batch) and
//! service/seed; `--json PATH` writes every figure, with the machine, model, settings and git
//! commit (`scripts/bench_compare.py A.json B.json` compares two such files).
//!
//!     cargo run --release --bin bench -- --cameras 4 --seconds 20 --json /tmp/bench.json
//!
//! Options: `--cameras N` (4), `--seconds S` (30, the measured window of the service and the
//! seed design), `--warmup S` (5), `--video PATH` (the pedestrian sample), `--max-fps F` (per
//! camera, 30), `--fast` (files decode as fast as they can, capped by --max-fps, instead of
//! playing at their own frame rate), `--batch B` (BATCH_SIZE, 0: the service's auto, 1 on the CPU), `--device auto|cpu|cuda|tensorrt`,
//! `--bare-seconds S` (per batch size, min(--seconds, 15)), `--skip-service`, `--skip-bare`,
//! `--skip-baseline` (the seed design), `--json PATH`. `--capacity` runs the capacity search
//! instead (`bench_modes/capacity.rs`: cameras of a scene where people come and go, 2, 4, 6, ...
//! until a visit is missed or p99 passes `--slo-p99-ms` (1000); `--seconds` per count, up to
//! `--max-cameras` (32)), and prints cameras per core; `--capacity --low-fps` searches instead
//! for the most 1080p25 cameras at `max_fps` 1, motion only, decoding everything and keyframes
//! only (`bench_modes/decode.rs`: 8, 16, 24, 32, 48, 64, ... cameras until one camera analyses
//! less than 0.8 frames a second or reports motion less than 0.5 times a second). `--decode-budget` measures keyframes-only
//! decoding instead (`bench_modes/decode.rs`: `--cameras` 1080p25 cameras at `max_fps` 1, cores
//! with `decode` `all` vs `keyframes`, and a substream; `--phases all,keyframes,...` runs some). The seed design runs with the setup's
//! venv Python (`ANALYTICS_PYTHON` overrides it). `--precision fp32,int8` runs the service with
//! each `YOLO_PRECISION` back to back instead (`bench_modes/precision.rs`: saturated frames/s
//! with `--cameras` fast cameras and light-load latency with one real-time camera, `--rounds R`
//! (2), order flipped every round); with `--capacity` it runs the capacity search per precision.
//! `--snapshots` runs the service with the cameras' `snapshots` parameter off and on back to
//! back instead (`--rounds R`, order flipped every round; use `--fast` to saturate), and prints
//! detected frames/s on over off (target >= 0.95), snapshots/s, bytes and encode time. Redis: REDIS_HOST/REDIS_PORT
//! (127.0.0.1:6379), streams `bench:<pid>` and `bench:seed:<pid>`, and the service's keys under
//! `bench:<pid>:` (its own cluster), all deleted afterwards.

// `--capacity`
#[path = "bench_modes/capacity.rs"]
mod capacity;
// `--decode-budget`
#[path = "bench_modes/decode.rs"]
mod decode;
// `--precision fp32,int8`
#[path = "bench_modes/precision.rs"]
mod precision;
// The test fixtures' `media()`: one way to find the sample media for tests, benches and tools.
#[path = "../../tests/common/mod.rs"]
mod common;

use analytics_service::config::{Config, InferenceDevice};
use analytics_service::infer::Yolo;
use analytics_service::metrics::{process_cpu_seconds, process_rss_bytes};
use analytics_service::service::Service;
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime};

/// The figures the issue asks of the service: service detected frames/s over the best bare
/// loop, and over the seed design, measured in one run.
const TARGET_OVER_BARE: f64 = 0.95;
const TARGET_OVER_SEED: f64 = 1.05;

#[derive(Clone)]
struct Args {
    cameras: usize,
    seconds: f64,
    warmup: f64,
    video: String,
    max_fps: f64,
    fast: bool,
    batch: usize,
    device: String,
    bare_seconds: Option<f64>,
    skip_service: bool,
    skip_bare: bool,
    skip_baseline: bool,
    json: Option<String>,
    capacity: bool,
    low_fps: bool,
    decode_budget: bool,
    phases: Vec<String>,
    slo_p99_ms: f64,
    max_cameras: usize,
    precisions: Vec<analytics_service::infer::PrecisionSetting>,
    rounds: usize,
    /// `--snapshots`: the service with the cameras' `snapshots` off and on, back to back.
    snapshots: bool,
    /// The cameras' `snapshots` parameter in [`run_service`] (default true).
    camera_snapshots: bool,
}

fn args() -> Args {
    let mut a = Args {
        cameras: 4,
        seconds: 30.0,
        warmup: 5.0,
        video: String::new(),
        max_fps: 30.0,
        fast: false,
        batch: 0,
        device: "auto".into(),
        bare_seconds: None,
        skip_service: false,
        skip_bare: false,
        skip_baseline: false,
        json: None,
        capacity: false,
        low_fps: false,
        decode_budget: false,
        phases: Vec::new(),
        slo_p99_ms: 1000.0,
        max_cameras: 32,
        precisions: Vec::new(),
        rounds: 2,
        snapshots: false,
        camera_snapshots: true,
    };
    if let Err(e) = parse_args(&mut a) {
        eprintln!("bench: {e}; --help lists the options");
        std::process::exit(2);
    }
    if a.video.is_empty() {
        a.video = common::media("vtest_pedestrians_768x576.mp4").to_string_lossy().into_owned();
    }
    a
}

/// The command line, read with `lexopt` (`--name value` and `--name=value`).
fn parse_args(a: &mut Args) -> Result<(), lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("cameras") => a.cameras = p.value()?.parse()?,
            Long("seconds") => a.seconds = p.value()?.parse()?,
            Long("warmup") => a.warmup = p.value()?.parse()?,
            Long("video") => a.video = p.value()?.string()?,
            Long("max-fps") => a.max_fps = p.value()?.parse()?,
            Long("fast") => a.fast = true,
            Long("batch") => a.batch = p.value()?.parse()?,
            Long("device") => a.device = p.value()?.string()?,
            Long("bare-seconds") => a.bare_seconds = Some(p.value()?.parse()?),
            Long("skip-service") => a.skip_service = true,
            Long("skip-bare") => a.skip_bare = true,
            Long("skip-baseline") => a.skip_baseline = true,
            Long("json") => a.json = Some(p.value()?.string()?),
            Long("capacity") => a.capacity = true,
            Long("low-fps") => a.low_fps = true,
            Long("decode-budget") => a.decode_budget = true,
            Long("phases") => a.phases = p.value()?.string()?.split(',').map(str::to_string).collect(),
            Long("precision") => a.precisions = precision::parse(&p.value()?.string()?),
            Long("rounds") => a.rounds = p.value()?.parse()?,
            Long("snapshots") => a.snapshots = true,
            Long("slo-p99-ms") => a.slo_p99_ms = p.value()?.parse()?,
            Long("max-cameras") => a.max_cameras = p.value()?.parse()?,
            Long("help") | Short('h') => {
                // the usage is this file's doc comment
                include_str!("bench.rs").lines().map_while(|l| l.strip_prefix("//!")).for_each(|l| println!("{}", l.trim_start()));
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(())
}

/// CPU seconds the whole machine spent busy (every process: all but idle and iowait), from
/// /proc/stat (USER_HZ, 100 on Linux); 0 where there is none.
fn system_busy_seconds() -> f64 {
    let line = std::fs::read_to_string("/proc/stat").ok().and_then(|s| s.lines().next().map(str::to_string)).unwrap_or_default();
    let v: Vec<f64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 8 {
        return 0.0;
    }
    (v.iter().sum::<f64>() - v[3] - v[4]) / 100.0
}

/// Cores the rest of the machine kept busy while this process used `own_cpu` seconds in `secs`.
fn other_cores(sys0: f64, sys1: f64, own_cpu: f64, secs: f64) -> f64 {
    ((sys1 - sys0 - own_cpu) / secs).max(0.0)
}

/// Above this many cores used by other processes during a phase, its figures are skewed.
const BUSY_MACHINE: f64 = 0.25;

/// A stream entry: its id and fields.
type Entry = (String, std::collections::HashMap<String, String>);

/// The entries of `stream` added since `since` (Redis's clock and ours are this machine's).
fn stream_since(conn: &mut redis::Connection, stream: &str, since: SystemTime) -> anyhow::Result<Vec<Entry>> {
    let start_ms = since.duration_since(SystemTime::UNIX_EPOCH)?.as_millis();
    Ok(redis::cmd("XRANGE").arg(stream).arg(start_ms.to_string()).arg("+").query(conn)?)
}

/// Capture-to-stream latency of one entry (ms): Redis's clock when the XADD landed (the entry
/// id) minus the event's capture `timestamp` field.
fn capture_to_stream_ms((id, fields): &Entry) -> Option<f64> {
    let added: u64 = id.split('-').next()?.parse().ok()?;
    let captured = analytics_service::time::parse_rfc3339_millis(fields.get("timestamp")?)?;
    let captured_ms = captured.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(added.saturating_sub(captured_ms) as f64)
}

/// The `q` quantile (nearest rank) of sorted values; `None` for none.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
    sorted.get(rank.min(sorted.len().saturating_sub(1))).copied()
}

/// Deletes what a service of the bench left in Redis: its keys and its stream.
fn drop_service_keys(conn: &mut redis::Connection, cfg: &Config) -> anyhow::Result<()> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", cfg.redis_key_prefix)).query(conn)?;
    keys.push(cfg.redis_stream.clone());
    let _: () = redis::cmd("DEL").arg(&keys).query(conn)?;
    Ok(())
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

/// Phase 1: the whole service on `a.cameras` file cameras. Returns its figures.
fn run_service(a: &Args, cfg: &Config, video: &std::path::Path) -> anyhow::Result<Value> {
    let svc = Service::start(cfg.clone())?;
    let ctx = analytics_service::camera::validate::Context { file_root: cfg.stream_file_root.clone() };
    let cams: Vec<Value> = (0..a.cameras)
        .map(|i| {
            json!({"camera_id": format!("bench{i}"), "stream_url": video.display().to_string(),
                "parameters": {"max_fps": a.max_fps, "loop_file": true, "file_realtime": !a.fast, "motion_threshold": 0.02,
                    "snapshots": a.camera_snapshots}})
        })
        .collect();
    let validated =
        analytics_service::camera::validate::validate_cameras(&Value::Array(cams), &ctx).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    svc.cluster().apply(validated.cameras)?;
    std::thread::sleep(Duration::from_secs_f64(a.warmup));

    let (t0, c0, cpu0, lat0) = (Instant::now(), totals(&svc), process_cpu_seconds(), svc.metrics.frame_to_event_seconds.counts());
    let (snaps0, snap_bytes0) = svc.metrics.snapshots();
    let sys0 = system_busy_seconds();
    let pub0 = svc.metrics.publisher_snapshot();
    let mut rss_max = rss_mib();
    while t0.elapsed().as_secs_f64() < a.seconds {
        std::thread::sleep(Duration::from_millis(500));
        rss_max = rss_max.max(rss_mib());
    }
    let secs = t0.elapsed().as_secs_f64();
    let (c1, cpu1, sys1) = (totals(&svc), process_cpu_seconds(), system_busy_seconds());
    let (snaps1, snap_bytes1) = svc.metrics.snapshots();
    let (snaps, snap_bytes) = (snaps1 - snaps0, snap_bytes1 - snap_bytes0);
    let snap_drops = svc.metrics.evidence_drops(analytics_service::metrics::EvidenceKind::Snapshot);
    let encode_ms = svc.metrics.snapshot_encode_seconds.mean() * 1e3;
    let other = other_cores(sys0, sys1, cpu1 - cpu0, secs);
    let window: Vec<u64> = svc.metrics.frame_to_event_seconds.counts().iter().zip(&lat0).map(|(b, a)| b - a).collect();
    let h = &svc.metrics.frame_to_event_seconds;
    let pub1 = svc.metrics.publisher_snapshot();
    let mean_batch = svc.metrics.batch_size.mean();
    let per = |x: u64, y: u64| (x - y) as f64 / secs;
    let (p50, p99) = (h.quantile_of(&window, 0.5) * 1e3, h.quantile_of(&window, 0.99) * 1e3);
    let cpu = (cpu1 - cpu0) / secs;
    println!(
        "== service: {} file cameras ({}), {:.0} s measured after {:.0} s warm-up, BATCH_SIZE {} ==",
        a.cameras,
        if a.fast { "fast decode" } else { "real time" },
        secs,
        a.warmup,
        svc.model().max_batch
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
    println!("frame-to-event  p50 {p50:.1} ms, p99 {p99:.1} ms  (capture to detection result)");
    println!("cpu             {cpu:.2} cores;  rss max {rss_max:.0} MiB;  other processes {other:.2} cores");
    println!(
        "snapshots       {:8.1} /s  ({} written, {} bytes each, encode mean {encode_ms:.1} ms, {snap_drops} dropped; cameras' snapshots {})",
        snaps as f64 / secs,
        snaps,
        snap_bytes / snaps.max(1),
        if a.camera_snapshots { "on" } else { "off" }
    );
    let mut conn = analytics_service::redis_target::RedisTarget::from_config(cfg).connect(Duration::from_secs(2))?;
    // exact capture-to-stream latency of the window's detection events: the entry id is Redis's
    // clock when the XADD landed, the payload's timestamp the capture (same machine, same clock)
    let entries = stream_since(&mut conn, &cfg.redis_stream, SystemTime::now() - Duration::from_secs_f64(secs))?;
    let mut stream_ms: Vec<f64> =
        entries.iter().filter(|(_, f)| f.get("event_type").is_some_and(|t| t == "detection")).filter_map(capture_to_stream_ms).collect();
    stream_ms.sort_by(f64::total_cmp);
    let (s50, s99) = (percentile(&stream_ms, 0.5), percentile(&stream_ms, 0.99));
    println!(
        "capture-to-stream p50 {} ms, p99 {} ms  (exact, {} detection events: Redis entry time - capture time)",
        s50.map_or("-".into(), |v| format!("{v:.0}")),
        s99.map_or("-".into(), |v| format!("{v:.0}")),
        stream_ms.len()
    );
    svc.shutdown();
    drop_service_keys(&mut conn, cfg)?;
    Ok(json!({
        "seconds": secs,
        "captured_fps": per(c1.captured, c0.captured),
        "skipped_fps": per(c1.skipped, c0.skipped),
        "processed_fps": per(c1.processed, c0.processed),
        "detected_fps": per(c1.detected, c0.detected),
        "dropped_fps": per(c1.dropped, c0.dropped),
        "dropped": c1.dropped - c0.dropped,
        "events_fps": per(pub1.published, pub0.published),
        "publish_drops": pub1.dropped - pub0.dropped,
        "mean_batch": mean_batch,
        // interpolated within the service's histogram buckets (~1.5x apart)
        "latency_ms": {"p50": p50, "p99": p99},
        // exact, per detection event: Redis entry time - capture time
        "capture_to_stream_ms": {"p50": s50, "p99": s99, "events": stream_ms.len()},
        "cpu_cores": cpu,
        "rss_max_mib": rss_max,
        "other_cpu_cores": other,
        "snapshots": {"on": a.camera_snapshots, "written": snaps, "per_s": snaps as f64 / secs,
            "bytes_each": snap_bytes / snaps.max(1), "encode_ms_mean": encode_ms, "dropped": snap_drops},
    }))
}

/// Phase 2: `session.run` in a loop on preprocessed frames, for each batch size. Returns
/// `{"b1": {...}, "b8": {...}, ...}` and the ONNX Runtime version and provider.
fn run_bare(a: &Args, cfg: &Config) -> anyhow::Result<(Value, String, String)> {
    let mut sizes = vec![1, 8, cfg.batch_size_to_load()];
    sizes.sort_unstable();
    sizes.dedup();
    let max = *sizes.last().unwrap();
    let mut cap = videoio::VideoCapture::from_file(&a.video, videoio::CAP_FFMPEG)?;
    let mut frames = Vec::new();
    let mut m = Mat::default();
    while frames.len() < max && cap.read(&mut m)? {
        frames.push(m.try_clone()?);
    }
    anyhow::ensure!(!frames.is_empty(), "{}: no frames", a.video);
    let mut yolo = Yolo::load(&cfg.yolo_model, cfg.yolo_model_name(), &cfg.device(), cfg.ort_dylib_path.as_deref(), max, cfg.nms_iou)?;
    if let Some(fixed) = yolo.info.fixed_batch {
        sizes = vec![fixed]; // the model takes only its own batch size
    }
    let seconds = a.bare_seconds.unwrap_or(a.seconds.min(15.0));
    let mut out = serde_json::Map::new();
    for n in sizes {
        let refs: Vec<&Mat> = frames.iter().cycle().take(n).collect();
        // preprocessing, reported apart: the letterbox of n frames into the batch tensor
        let tp = Instant::now();
        let mut reps = 0u32;
        while reps < 5 || tp.elapsed() < Duration::from_millis(200) {
            yolo.preprocess(&refs)?;
            reps += 1;
        }
        let pre_ms_per_frame = tp.elapsed().as_secs_f64() * 1e3 / (reps as f64 * n as f64);
        yolo.run_preprocessed(n)?; // warm-up
        let (t, mut runs, cpu0, sys0) = (Instant::now(), 0u64, process_cpu_seconds(), system_busy_seconds());
        while t.elapsed().as_secs_f64() < seconds {
            yolo.run_preprocessed(n)?;
            runs += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        let other = other_cores(sys0, system_busy_seconds(), process_cpu_seconds() - cpu0, secs);
        let fps = (runs * n as u64) as f64 / secs;
        let ms = secs * 1e3 / runs as f64;
        println!(
            "== bare session.run loop, batch {n}, {:?}, {secs:.0} s ==\ninference       {fps:8.1} frames/s  ({ms:.1} ms per run; preprocessing excluded: {pre_ms_per_frame:.2} ms/frame)\nother processes {other:8.2} cores",
            yolo.info.provider
        );
        out.insert(
            format!("b{n}"),
            json!({"batch": n, "fps": fps, "ms_per_run": ms, "runs": runs, "seconds": secs, "preprocess_ms_per_frame": pre_ms_per_frame,
                "other_cpu_cores": other}),
        );
    }
    // the service's own arrangement, bare: INFERENCE_WORKERS sessions side by side, each of
    // cores / workers threads, batch 1 (reported apart: the target compares with the one loop)
    let (workers, threads) = cfg.inference_worker_count();
    if workers > 1 {
        let mut yolos = Vec::with_capacity(workers);
        for _ in 0..workers {
            let mut y = Yolo::load_with_threads(
                &cfg.yolo_model,
                cfg.yolo_model_name(),
                &cfg.device(),
                cfg.ort_dylib_path.as_deref(),
                1,
                cfg.nms_iou,
                threads,
            )?;
            y.preprocess(&[&frames[0]])?;
            y.run_preprocessed(1)?; // warm-up
            yolos.push(y);
        }
        let (t, cpu0, sys0) = (Instant::now(), process_cpu_seconds(), system_busy_seconds());
        let runs: u64 = std::thread::scope(|sc| {
            let handles: Vec<_> = yolos
                .iter_mut()
                .map(|y| {
                    sc.spawn(move || {
                        let mut runs = 0u64;
                        while t.elapsed().as_secs_f64() < seconds && y.run_preprocessed(1).is_ok() {
                            runs += 1;
                        }
                        runs
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        let secs = t.elapsed().as_secs_f64();
        let other = other_cores(sys0, system_busy_seconds(), process_cpu_seconds() - cpu0, secs);
        let fps = runs as f64 / secs;
        println!(
            "== bare: {workers} session.run loops side by side ({threads} thread(s) each), batch 1, {secs:.0} s ==\ninference       {fps:8.1} frames/s\nother processes {other:8.2} cores"
        );
        out.insert(
            "parallel".into(),
            json!({"workers": workers, "threads_each": threads, "batch": 1, "fps": fps, "runs": runs, "seconds": secs, "other_cpu_cores": other}),
        );
    }
    let provider = serde_json::to_value(yolo.info.provider)?.as_str().unwrap_or("?").to_string();
    Ok((Value::Object(out), yolo.info.runtime.version.clone(), provider))
}

/// Phase 3: the seed design (bench/baseline/seed_design.py), its JSON from stdout.
fn run_seed(a: &Args, cfg: &Config, video: &std::path::Path) -> anyhow::Result<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/baseline/seed_design.py");
    let model = cfg.yolo_model.canonicalize().map_err(|e| anyhow::anyhow!("{}: {e}", cfg.yolo_model.display()))?;
    let mut cmd = std::process::Command::new(common::python());
    cmd.arg(&script)
        .arg("--model")
        .arg(&model)
        .arg("--video")
        .arg(video)
        .args(["--cameras", &a.cameras.to_string(), "--seconds", &a.seconds.to_string(), "--warmup", &a.warmup.to_string()])
        .args(["--max-fps", &a.max_fps.to_string(), "--redis-host", &cfg.redis_host, "--redis-port", &cfg.redis_port.to_string()])
        .args(["--stream", &format!("bench:seed:{}", std::process::id())])
        .stderr(std::process::Stdio::inherit());
    if a.fast {
        cmd.arg("--fast");
    }
    let out = cmd.output().map_err(|e| anyhow::anyhow!("{}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim())
        .map_err(|e| anyhow::anyhow!("seed_design.py printed no JSON ({e}; exit {}): {stdout}", out.status))?;
    anyhow::ensure!(out.status.success(), "seed_design.py failed ({}): {}", out.status, v["errors"]);
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "== seed design (Python, one thread per camera, onnxruntime {}), {} cameras, {:.0} s ==",
        v["versions"]["onnxruntime"].as_str().unwrap_or("?"),
        a.cameras,
        f("seconds")
    );
    println!("captured        {:8.1} frames/s", f("captured_fps"));
    println!("processed       {:8.1} frames/s", f("processed_fps"));
    println!("dropped         {:8.1} frames/s  (late while busy)", f("dropped_fps"));
    println!(
        "frame-to-event  p50 {:.1} ms, p99 {:.1} ms  (read to XADD acknowledged)",
        v["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
        v["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "cpu             {:.2} cores;  rss max {:.0} MiB;  other processes {:.2} cores",
        f("cpu_cores"),
        f("rss_max_mib"),
        f("other_cpu_cores")
    );
    Ok(v)
}

fn git_commit() -> (String, bool) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    (commit, dirty)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
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
    // a cluster of its own: the bench neither runs cameras stored by a service on the same Redis
    // nor leaves its own there (its keys are deleted afterwards)
    cfg.redis_key_prefix = format!("bench:{}:", std::process::id());
    cfg.batch_size = a.batch;
    cfg.max_cameras = cfg.max_cameras.max(a.cameras);
    cfg.inference_device = match a.device.as_str() {
        "cpu" => InferenceDevice::Cpu,
        "cuda" => InferenceDevice::Cuda,
        "tensorrt" => InferenceDevice::TensorRt,
        _ => InferenceDevice::Auto,
    };
    let video = std::path::Path::new(&a.video).canonicalize().map_err(|e| anyhow::anyhow!("{}: {e}", a.video))?;
    // file sources must be absolute and inside STREAM_FILE_ROOT: the video's own folder
    cfg.stream_file_root = video.parent().map(Into::into);

    if a.capacity && a.low_fps {
        let da = decode::DecodeArgs { cameras: a.cameras, seconds: a.seconds, warmup: a.warmup, phases: Vec::new() };
        let v = decode::capacity(&cfg, &video, &da, a.max_cameras)?;
        if let Some(path) = &a.json {
            let doc = json!({"bench": "analytics-service src/bin/bench.rs --capacity --low-fps", "low_fps_capacity": v});
            std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        }
        return Ok(());
    }
    if a.decode_budget {
        let v = decode::run(
            &cfg,
            &video,
            &decode::DecodeArgs { cameras: a.cameras, seconds: a.seconds, warmup: a.warmup, phases: a.phases.clone() },
        )?;
        if let Some(path) = &a.json {
            std::fs::write(
                path,
                serde_json::to_string_pretty(&json!({"bench": "analytics-service src/bin/bench.rs --decode-budget", "decode_budget": v}))?,
            )?;
        }
        return Ok(());
    }
    if a.capacity {
        let ca = capacity::CapacityArgs { seconds: a.seconds, slo_p99_ms: a.slo_p99_ms, max_cameras: a.max_cameras };
        let v = if a.precisions.is_empty() {
            capacity::run(&cfg, &video, &ca)?
        } else {
            let mut per = serde_json::Map::new();
            for &p in &a.precisions {
                println!("\n#### capacity with YOLO_PRECISION={p:?}");
                per.insert(format!("{p:?}").to_lowercase(), capacity::run(&Config { yolo_precision: p, ..cfg.clone() }, &video, &ca)?);
            }
            Value::Object(per)
        };
        if let Some(path) = &a.json {
            let (commit, dirty) = git_commit();
            let doc = json!({"bench": "analytics-service src/bin/bench.rs --capacity", "git_commit": commit, "git_dirty": dirty,
                "when": analytics_service::time::rfc3339_millis(SystemTime::now()), "machine": {"nproc": std::thread::available_parallelism().map_or(1, |n| n.get()), "cpu": cpu_model()},
                "capacity": v});
            std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
            println!("figures written to {path}");
        }
        return Ok(());
    }
    if a.snapshots {
        // off and on back to back, the order flipped every round (a busy machine drifts)
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..a.rounds.max(1) {
            let order = if round % 2 == 0 { [false, true] } else { [true, false] };
            for snapshots in order {
                println!("\n#### round {}: cameras' snapshots {}", round + 1, if snapshots { "on" } else { "off" });
                let v = run_service(&Args { camera_snapshots: snapshots, ..a.clone() }, &cfg, &video)?;
                if snapshots {
                    on.push(v)
                } else {
                    off.push(v)
                }
            }
        }
        let mean = |v: &[Value]| v.iter().map(|x| x["detected_fps"].as_f64().unwrap_or(0.0)).sum::<f64>() / v.len().max(1) as f64;
        let (f_off, f_on) = (mean(&off), mean(&on));
        let ratio = if f_off > 0.0 { f_on / f_off } else { 0.0 };
        println!(
            "\n== snapshots: detected {f_on:.1} frames/s on, {f_off:.1} off: {ratio:.3}x (target >= 0.95: {}) ==",
            if ratio >= 0.95 { "met" } else { "MISSED" }
        );
        if let Some(path) = &a.json {
            let (commit, dirty) = git_commit();
            let doc = json!({"bench": "analytics-service src/bin/bench.rs --snapshots", "git_commit": commit, "git_dirty": dirty,
                "when": analytics_service::time::rfc3339_millis(SystemTime::now()),
                "machine": {"nproc": std::thread::available_parallelism().map_or(1, |n| n.get()), "cpu": cpu_model()},
                "cameras": a.cameras, "seconds": a.seconds, "fast": a.fast, "ratio_on_over_off": ratio, "on": on, "off": off});
            std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
            println!("figures written to {path}");
        }
        return Ok(());
    }
    if !a.precisions.is_empty() {
        let v = precision::run(&a, &cfg, &video, &a.precisions, a.rounds.max(1))?;
        if let Some(path) = &a.json {
            let (commit, dirty) = git_commit();
            let doc = json!({"bench": "analytics-service src/bin/bench.rs --precision", "git_commit": commit, "git_dirty": dirty,
                "when": analytics_service::time::rfc3339_millis(SystemTime::now()),
                "machine": {"nproc": std::thread::available_parallelism().map_or(1, |n| n.get()), "cpu": cpu_model(),
                    "vnni": analytics_service::infer::CpuFeatures::detect().vnni},
                "cameras": a.cameras, "seconds": a.seconds, "warmup": a.warmup, "max_fps": a.max_fps, "precision": v});
            std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
            println!("figures written to {path}");
        }
        return Ok(());
    }
    let service = if a.skip_service { None } else { Some(run_service(&a, &cfg, &video)?) };
    let (bare, runtime, provider) = if a.skip_bare {
        (None, None, None)
    } else {
        let (b, r, p) = run_bare(&a, &cfg)?;
        (Some(b), Some(r), Some(p))
    };
    let seed = if a.skip_baseline { None } else { Some(run_seed(&a, &cfg, &video)?) };

    // The summary: every frames/s figure, and the service's over each yardstick.
    let service_fps = service.as_ref().map(|s| s["detected_fps"].as_f64().unwrap_or(0.0));
    // the best of batch 1 and 8 (the yardstick); a fixed-batch model has only its own
    let bare_best = bare.as_ref().and_then(|b| {
        // one loop only: the side-by-side sessions are the service's arrangement, not the yardstick
        let all: Vec<&Value> = b.as_object()?.values().filter(|v| v.get("workers").is_none()).collect();
        let one_or_eight: Vec<&Value> = all.iter().copied().filter(|v| matches!(v["batch"].as_u64(), Some(1 | 8))).collect();
        let pool = if one_or_eight.is_empty() { all } else { one_or_eight };
        pool.into_iter().max_by(|x, y| x["fps"].as_f64().unwrap_or(0.0).total_cmp(&y["fps"].as_f64().unwrap_or(0.0))).cloned()
    });
    let seed_fps = seed.as_ref().and_then(|s| s["processed_fps"].as_f64());
    let ratio = |x: Option<f64>| match (service_fps, x) {
        (Some(s), Some(x)) if x > 0.0 => Some(s / x),
        _ => None,
    };
    let fmt = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}"));
    let verdict = |r: Option<f64>, target: f64| r.map_or("", |r| if r >= target { "met" } else { "MISSED" });
    println!("\n== summary: {} cameras, {} s, {} ==", a.cameras, a.seconds, cfg.yolo_model.display());
    println!("{:<44} {:>10} {:>16} {:>14}", "", "frames/s", "service / this", "target");
    if let Some(s) = service_fps {
        println!("{:<44} {:>10.1}", "service, detected", s);
    }
    if let Some(b) = &bare {
        for v in b.as_object().unwrap().values() {
            let fps = v["fps"].as_f64();
            let label = match v.get("workers") {
                Some(w) => format!("bare, {w} sessions side by side, batch 1"),
                None => format!("bare session.run, batch {}", v["batch"]),
            };
            println!("{:<44} {:>10.1} {:>16}", label, fps.unwrap_or(0.0), fmt(ratio(fps)));
        }
    }
    let r_bare = ratio(bare_best.as_ref().and_then(|b| b["fps"].as_f64()));
    if let Some(b) = &bare_best {
        println!(
            "{:<44} {:>10.1} {:>16} {:>14}",
            format!("bare session.run, best (batch {})", b["batch"]),
            b["fps"].as_f64().unwrap_or(0.0),
            fmt(r_bare),
            format!(">= {TARGET_OVER_BARE} {}", verdict(r_bare, TARGET_OVER_BARE))
        );
    }
    let r_seed = ratio(seed_fps);
    if let Some(s) = seed_fps {
        println!(
            "{:<44} {:>10.1} {:>16} {:>14}",
            "seed design (Python), processed",
            s,
            fmt(r_seed),
            format!(">= {TARGET_OVER_SEED} {}", verdict(r_seed, TARGET_OVER_SEED))
        );
    }

    // other processes on the machine (builds, tests) take cores from whichever phase they overlap
    let mut busy = Vec::new();
    if let Some(o) = service.as_ref().and_then(|s| s["other_cpu_cores"].as_f64()) {
        busy.push(("service".to_string(), o));
    }
    for v in bare.iter().flat_map(|b| b.as_object().unwrap().values()) {
        let phase = if v.get("workers").is_some() { "bare side by side".to_string() } else { format!("bare batch {}", v["batch"]) };
        busy.push((phase, v["other_cpu_cores"].as_f64().unwrap_or(0.0)));
    }
    if let Some(o) = seed.as_ref().and_then(|s| s["other_cpu_cores"].as_f64()) {
        busy.push(("seed".to_string(), o));
    }
    let skewed: Vec<String> = busy.iter().filter(|(_, o)| *o > BUSY_MACHINE).map(|(p, o)| format!("{p} {o:.2}")).collect();
    if !skewed.is_empty() {
        println!(
            "NOTE: other processes kept cores busy during {}: those figures are skewed; run again on a quiet machine",
            skewed.join(", ")
        );
    }

    if let Some(path) = &a.json {
        let (commit, dirty) = git_commit();
        let doc = json!({
            "bench": "analytics-service src/bin/bench.rs",
            "when": analytics_service::time::rfc3339_millis(SystemTime::now()),
            "git_commit": commit,
            "git_dirty": dirty,
            "machine": {
                "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "cpu_model": cpu_model(),
                "onnxruntime": runtime,
                "provider": provider,
            },
            "model": cfg.yolo_model.display().to_string(),
            "model_name": cfg.yolo_model_name(),
            "video": video.display().to_string(),
            "cameras": a.cameras,
            "seconds": a.seconds,
            "warmup": a.warmup,
            "max_fps": a.max_fps,
            "realtime": !a.fast,
            "batch": a.batch,
            "service": service,
            "bare": bare.map(|b| json!({"preprocessing": "excluded from fps, reported as preprocess_ms_per_frame", "batches": b, "best": bare_best})),
            "seed": seed,
            "ratios": {"service_over_bare_best": r_bare, "service_over_seed": r_seed},
            // phases during which other processes used more than BUSY_MACHINE cores
            "skewed_phases": skewed,
            "targets": {"service_over_bare_best": TARGET_OVER_BARE, "service_over_seed": TARGET_OVER_SEED},
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n").map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        println!("figures written to {path}");
    }
    Ok(())
}
