//! `bench --capacity`: the most cameras this machine sustains under an SLO, and cameras per core.
//!
//! The footage: a scene where people come and go, made once from the sample video: its empty
//! background (the per-pixel median of frames across the video, where walkers do not stay)
//! alternating with stretches of the video itself, 5 s each at 10 fps, so each clip loop holds
//! three *visits* starting at known frames. Every camera plays it in real time, looped, with
//! `detect_on: motion`, `motion_threshold: 0.01` (a walker far off covers ~1 % of the frame)
//! and `detection_classes: [person]` (an empty scene costs decode and motion only), started at
//! staggered moments so visits do not all coincide.
//!
//! For 2, 4, 6, ... cameras in turn: a fresh service, the cameras, a measured window. A visit
//! counts as tracked when a person `object` `start` event of that camera carries a frame within
//! 2 s (20 frames) of the visit's first frame. The SLO: no visit missed and p99
//! capture-to-stream latency (Redis entry time - capture time, over the per-frame `detection`
//! and `motion` events) within
//! `--slo-p99-ms` (1000). The search stops at the first count that misses it.

use super::common;
use analytics_service::config::Config;
use analytics_service::metrics::process_cpu_seconds;
use analytics_service::service::Service;
use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Frames per second of the visits clip, and frames per segment (5 s).
const FPS: u64 = 10;
const SEGMENT: u64 = 50;
/// The clip: empty, people, empty, people, empty, people.
const SEGMENTS: u64 = 6;
/// Where in the sample video each visit's footage starts (s).
const VISIT_SOURCES: [u64; 3] = [5, 30, 55];
/// A visit must be tracked within this many frames of its first (2 s).
const WITHIN: u64 = 2 * FPS;

pub struct CapacityArgs {
    pub seconds: f64,
    pub slo_p99_ms: f64,
    pub max_cameras: usize,
}

/// The empty scene: per-pixel median of frames sampled across the video.
fn background(video: &Path, out: &Path) -> anyhow::Result<()> {
    let mut cap = videoio::VideoCapture::from_file(video, videoio::CAP_FFMPEG)?;
    let total = cap.get(videoio::CAP_PROP_FRAME_COUNT)?.max(1.0) as i64;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let (mut cols, mut rows) = (0, 0);
    let mut m = Mat::default();
    for i in 0..41 {
        cap.set(videoio::CAP_PROP_POS_FRAMES, (i * total / 41) as f64)?;
        if cap.read(&mut m)? && !m.empty() {
            (cols, rows) = (m.cols(), m.rows());
            frames.push(m.data_bytes()?.to_vec());
        }
    }
    anyhow::ensure!(frames.len() >= 9, "{}: too few frames for a background", video.display());
    let n = frames[0].len();
    let mut median = vec![0u8; n];
    let mut column = vec![0u8; frames.len()];
    for (i, px) in median.iter_mut().enumerate() {
        for (c, f) in column.iter_mut().zip(&frames) {
            *c = f[i];
        }
        column.sort_unstable();
        *px = column[column.len() / 2];
    }
    let img = Mat::new_rows_cols_with_data(rows, cols * 3, &median)?.reshape(3, rows)?.try_clone()?;
    imgcodecs::imwrite(out, &img, &Vector::new())?;
    Ok(())
}

/// The visits clip (made once, kept in the fixtures folder) and its first frames of each visit
/// (0-based clip frame indices).
fn visits_clip(video: &Path) -> anyhow::Result<(PathBuf, Vec<u64>)> {
    let bg = common::fixtures_dir().join("visits_background.png");
    if !bg.is_file() {
        background(video, &bg)?;
    }
    let mut args: Vec<String> = Vec::new();
    let mut filter = String::new();
    for s in 0..SEGMENTS {
        if s % 2 == 0 {
            args.extend(["-loop", "1", "-framerate", "10", "-t", "5", "-i"].map(String::from));
            args.push(bg.to_string_lossy().into_owned());
        } else {
            let from = VISIT_SOURCES[(s / 2) as usize];
            args.extend(["-ss".to_string(), from.to_string(), "-t".into(), "5".into(), "-i".into(), video.to_string_lossy().into_owned()]);
        }
        filter.push_str(&format!(
            "[{s}:v]fps={FPS},scale=768:576,setsar=1,format=yuv420p,trim=end_frame={SEGMENT},setpts=PTS-STARTPTS[v{s}];"
        ));
    }
    for s in 0..SEGMENTS {
        filter.push_str(&format!("[v{s}]"));
    }
    filter.push_str(&format!("concat=n={SEGMENTS}:v=1:a=0[out]"));
    args.extend([
        "-filter_complex".to_string(),
        filter,
        "-map".into(),
        "[out]".into(),
        "-c:v".into(),
        "libx264".into(),
        "-g".into(),
        "10".into(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let clip = common::ffmpeg_fixture("visits_10fps_30s.mp4", &refs);
    let visits = (0..SEGMENTS).filter(|s| s % 2 == 1).map(|s| s * SEGMENT).collect();
    Ok((clip, visits))
}

fn clip_frames(clip: &Path) -> anyhow::Result<u64> {
    let mut cap = videoio::VideoCapture::from_file(clip, videoio::CAP_FFMPEG)?;
    let mut n = 0;
    while cap.grab()? {
        n += 1;
    }
    Ok(n)
}

/// One count of cameras: returns its figures and whether it met the SLO.
fn run_count(cfg: &Config, clip: &Path, visits: &[u64], frames_per_loop: u64, n: usize, a: &CapacityArgs) -> anyhow::Result<(Value, bool)> {
    let mut cfg = cfg.clone();
    cfg.redis_stream = format!("bench:capacity:{}:{n}", std::process::id());
    cfg.redis_key_prefix = format!("bench:capacity:{}:{n}:", std::process::id());
    cfg.max_cameras = cfg.max_cameras.max(n);
    cfg.stream_file_root = clip.parent().map(Into::into);
    let svc = Service::start(cfg.clone())?;
    let ctx = analytics_service::camera::validate::Context { file_root: cfg.stream_file_root.clone() };
    // staggered starts over one clip loop's worth of 10 s, so visits overlap the way they would
    let stagger = Duration::from_secs(10) / n as u32;
    for i in 0..n {
        let cam = json!({"camera_id": format!("room{i}"), "stream_url": clip.display().to_string(),
            "parameters": {"max_fps": FPS, "loop_file": true, "detect_on": "motion", "motion_threshold": 0.01, "detection_classes": ["person"]}});
        let v = analytics_service::camera::validate::validate_cameras(&cam, &ctx).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        svc.cluster().apply(v.cameras)?;
        std::thread::sleep(stagger);
    }
    std::thread::sleep(Duration::from_secs(2));
    let captured = |svc: &Service| -> HashMap<String, u64> {
        svc.registry().list().into_iter().map(|c| (c.config.camera_id.clone(), c.counters.frames_captured)).collect()
    };
    let (start, t0, cpu0) = (captured(&svc), Instant::now(), process_cpu_seconds());
    let wall0 = SystemTime::now();
    std::thread::sleep(Duration::from_secs_f64(a.seconds));
    let (end, secs, cpu) = (captured(&svc), t0.elapsed().as_secs_f64(), process_cpu_seconds() - cpu0);
    // the events of visits that began just before the end get 2 s to arrive
    std::thread::sleep(Duration::from_secs(3));
    let mut conn = analytics_service::redis_target::RedisTarget::from_config(&cfg).connect(Duration::from_secs(2))?;
    let entries = super::stream_since(&mut conn, &cfg.redis_stream, wall0)?;
    svc.shutdown();
    super::drop_service_keys(&mut conn, &cfg)?;

    let mut latencies = Vec::new();
    let mut starts: HashMap<String, Vec<u64>> = HashMap::new();
    for entry in &entries {
        let Some(payload) = entry.1.get("payload").and_then(|p| serde_json::from_str::<Value>(p).ok()) else { continue };
        // per-frame results only: an object's `end` is stamped with its last sighting and comes
        // TRACK_LOST_S later by design
        let per_frame = payload["event_type"] == "detection" || payload["event_type"] == "motion";
        if per_frame {
            latencies.extend(super::capture_to_stream_ms(entry));
        }
        if payload["event_type"] == "object" && payload["lifecycle"] == "start" && payload["class_name"] == "person" {
            let cam = payload["camera_id"].as_str().unwrap_or("").to_string();
            starts.entry(cam).or_default().push(payload["frame_number"].as_u64().unwrap_or(0));
        }
    }
    latencies.sort_by(f64::total_cmp);
    let p99 = super::percentile(&latencies, 0.99).unwrap_or(0.0);
    // every visit that began (first frame captured) inside the window, at least 2 s before its end
    let (mut expected, mut missed, mut worst) = (0u64, Vec::new(), 0u64);
    for (cam, &f_end) in &end {
        let f_start = start.get(cam).copied().unwrap_or(0);
        let got = starts.get(cam).cloned().unwrap_or_default();
        for lap in f_start / frames_per_loop..=f_end / frames_per_loop {
            for v in visits {
                let first = lap * frames_per_loop + v + 1; // frame numbers count from 1
                if first <= f_start || first + WITHIN > f_end {
                    continue;
                }
                expected += 1;
                match got.iter().filter(|&&f| f >= first && f < first + WITHIN).min() {
                    Some(&f) => worst = worst.max(f - first),
                    None => missed.push(format!("{cam}@{first}")),
                }
            }
        }
    }
    let ok = missed.is_empty() && expected > 0 && p99 <= a.slo_p99_ms;
    println!(
        "{n:>3} cameras: {expected:>3} visits, {:>2} missed, slowest tracked {:.1} s after its first frame, p99 capture-to-stream {p99:.0} ms, {:.2} cores -> {}",
        missed.len(),
        worst as f64 / FPS as f64,
        cpu / secs,
        if ok { "SLO met" } else { "SLO MISSED" }
    );
    if !missed.is_empty() {
        println!("      missed: {}", missed.iter().take(8).cloned().collect::<Vec<_>>().join(", "));
    }
    Ok((
        json!({"cameras": n, "visits": expected, "missed": missed.len(), "missed_list": missed, "slowest_tracked_s": worst as f64 / FPS as f64,
            "p99_capture_to_stream_ms": p99, "events": latencies.len(), "cpu_cores": cpu / secs, "seconds": secs, "slo_met": ok}),
        ok,
    ))
}

/// Runs 2, 4, 6, ... cameras until the SLO is missed (or `max_cameras`); prints the best.
pub fn run(cfg: &Config, video: &Path, a: &CapacityArgs) -> anyhow::Result<Value> {
    let (clip, visits) = visits_clip(video)?;
    let frames_per_loop = clip_frames(&clip)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "== capacity: visits clip {} ({frames_per_loop} frames, visits at frames {visits:?}), detect_on motion, SLO: no visit missed (tracked within 2 s), p99 <= {} ms ==",
        clip.display(),
        a.slo_p99_ms
    );
    let mut runs = Vec::new();
    let mut best = 0;
    let mut n = 2;
    while n <= a.max_cameras {
        let (v, ok) = run_count(cfg, &clip, &visits, frames_per_loop, n, a)?;
        runs.push(v);
        if !ok {
            break;
        }
        best = n;
        n += 2;
    }
    println!("capacity: {best} cameras under the SLO on {cores} cores = {:.1} cameras per core", best as f64 / cores as f64);
    Ok(json!({"cameras_sustained": best, "cores": cores, "cameras_per_core": best as f64 / cores as f64, "slo_p99_ms": a.slo_p99_ms,
        "window_s": a.seconds, "runs": runs, "clip": clip.display().to_string(), "visit_first_frames": visits, "frames_per_loop": frames_per_loop}))
}
