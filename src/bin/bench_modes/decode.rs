//! `bench --decode-budget`: what keyframes-only decoding saves (docs/decode.md).
//!
//! The footage: the sample video scaled to 1920x1080 at 25 fps with one keyframe a second
//! (`-g 25`, no scene-cut keyframes), like an IP camera's main stream; made once into the
//! fixtures folder under $TMPDIR. `--cameras` cameras play it in real time, looped, at
//! `max_fps` 1, in four phases one after another on one service: motion only with
//! `decode: "all"`, then `"keyframes"` (the decode cost, which the ratio is about), then both
//! again with person detection on (that events still arrive, about one a second per camera),
//! and last a 640x360 *substream* of the same footage (same frame rate and keyframes, as IP
//! cameras' second stream), motion only, decoding everything and keyframes only: what
//! analysing a camera's substream instead of its main stream saves.
//! Each phase: the cameras, `--warmup` seconds, then a window of `--seconds` in which the
//! process's CPU time (user + system, /proc/self/stat) over wall time gives the cores used,
//! and the Redis stream gives each camera's events. CPU time is what the ratio is built on:
//! on a shared machine it is robust where wall-clock throughput is not. The idle service's
//! own cores (measured first) are subtracted for the per-camera figures.

use super::common;
use analytics_service::config::Config;
use analytics_service::metrics::process_cpu_seconds;
use analytics_service::service::Service;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The target: keyframes only at `max_fps` 1 on a 1 s keyframe interval uses at least
/// this many times fewer cores per camera than decoding everything.
const TARGET_RATIO: f64 = 3.0;

pub struct DecodeArgs {
    pub cameras: usize,
    pub seconds: f64,
    pub warmup: f64,
    /// `--phases a,b,...`: only these phases (names as printed); empty: all six.
    pub phases: Vec<String>,
}

/// The 1080p25 clip with a keyframe every second (30 s of the sample video, looped by the
/// cameras).
fn clip_1080p25(video: &Path) -> PathBuf {
    common::gop25_clip(video, 1920, 1080, 30)
}

/// The substream: the same footage at 640x360, 25 fps, a keyframe a second.
fn clip_360p25(video: &Path) -> PathBuf {
    common::gop25_clip(video, 640, 360, 30)
}

/// A phase's name, as printed and as `--phases` takes it: `[sub360p.]all|keyframes[.detect]`.
fn phase_name(decode: &str, detect: bool, sub: bool) -> String {
    format!("{}{decode}{}", if sub { "sub360p." } else { "" }, if detect { ".detect" } else { "" })
}

/// One phase's figures.
struct Phase {
    name: String,
    cores: f64,
    /// Per camera: (frames decoded/s, frames analysed/s, motion events/s, detection events/s).
    per_camera: Vec<(String, f64, f64, f64, f64)>,
}

fn phase(svc: &Service, stream: &str, clip: &Path, a: &DecodeArgs, decode: &str, detect: bool, sub: bool) -> anyhow::Result<Phase> {
    phase_of(svc, stream, clip, a.cameras, a, decode, detect, sub)
}

/// [`phase`] with `cameras` cameras instead of `--cameras`.
#[allow(clippy::too_many_arguments)]
fn phase_of(
    svc: &Service,
    stream: &str,
    clip: &Path,
    cameras: usize,
    a: &DecodeArgs,
    decode: &str,
    detect: bool,
    sub: bool,
) -> anyhow::Result<Phase> {
    let addr = svc.api_addr();
    let name = phase_name(decode, detect, sub);
    let ids: Vec<String> = (0..cameras).map(|i| format!("{name}-{i}")).collect();
    let cams: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"camera_id": id, "stream_url": clip.to_str().unwrap(), "parameters": {
                "decode": decode, "max_fps": 1, "loop_file": true, "motion_threshold": 0.001,
                "enable_object_detection": detect, "detection_classes": ["person"]}})
        })
        .collect();
    let r = common::post_json(addr, "/api/cameras", &Value::Array(cams));
    anyhow::ensure!(r.status == 201, "cameras refused: {}", r.body);
    std::thread::sleep(Duration::from_secs_f64(a.warmup));
    let mut conn = common::redis_conn();
    let last: Vec<(String, HashMap<String, String>)> =
        redis::cmd("XREVRANGE").arg(stream).arg("+").arg("-").arg("COUNT").arg(1).query(&mut conn)?;
    let from = last.first().map(|(id, _)| id.clone()).unwrap_or_else(|| "0-0".into());
    let snap = |id: &str| common::get(addr, &format!("/api/cameras/{id}")).json();
    let before: Vec<Value> = ids.iter().map(|id| snap(id)).collect();
    let (t0, c0) = (Instant::now(), process_cpu_seconds());
    std::thread::sleep(Duration::from_secs_f64(a.seconds));
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), process_cpu_seconds() - c0);
    let after: Vec<Value> = ids.iter().map(|id| snap(id)).collect();
    let entries: Vec<(String, HashMap<String, String>)> =
        redis::cmd("XRANGE").arg(stream).arg(format!("({from}")).arg("+").query(&mut conn)?;
    let mut events: HashMap<(String, String), f64> = HashMap::new();
    for (_, e) in &entries {
        *events.entry((e["camera_id"].clone(), e["event_type"].clone())).or_default() += 1.0;
    }
    let per_camera = ids
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(id, (b, c))| {
            let d = |k: &str| (c[k].as_u64().unwrap_or(0) - b[k].as_u64().unwrap_or(0)) as f64 / wall;
            let ev = |t: &str| events.get(&(id.clone(), t.to_string())).copied().unwrap_or(0.0) / wall;
            (id.clone(), d("frames_captured"), d("frames_processed"), ev("motion"), ev("detection"))
        })
        .collect();
    for id in &ids {
        common::http(addr, "DELETE", &format!("/api/cameras/{id}"), None, b"");
    }
    // let the deleted cameras' threads end before the next phase
    std::thread::sleep(Duration::from_secs(2));
    Ok(Phase { name, cores: cpu / wall, per_camera })
}

/// Runs the phases; prints them and the ratios; returns every figure.
pub fn run(cfg: &Config, video: &Path, a: &DecodeArgs) -> anyhow::Result<Value> {
    let clip = clip_1080p25(video);
    let sub = clip_360p25(video);
    let mut cfg = cfg.clone();
    cfg.stream_file_root = clip.parent().map(Into::into);
    cfg.max_cameras = cfg.max_cameras.max(a.cameras);
    let stream = cfg.redis_stream.clone();
    let svc = Service::start(cfg.clone())?;
    println!("decode budget: {} cameras of {} (1920x1080, 25 fps, keyframe every 1 s) at max_fps 1", a.cameras, clip.display());
    let (t0, c0) = (Instant::now(), process_cpu_seconds());
    std::thread::sleep(Duration::from_secs(5));
    let idle = (process_cpu_seconds() - c0) / t0.elapsed().as_secs_f64();
    println!("idle service: {idle:.3} cores");
    let per_cam = |p: &Phase| (p.cores - idle).max(0.0) / a.cameras as f64;
    let mut phases: Vec<Phase> = Vec::new();
    for (decode, detect, substream) in [
        ("all", false, false),
        ("keyframes", false, false),
        ("all", true, false),
        ("keyframes", true, false),
        ("all", false, true),
        ("keyframes", false, true),
    ] {
        if !a.phases.is_empty() && !a.phases.contains(&phase_name(decode, detect, substream)) {
            continue;
        }
        let p = phase(&svc, &stream, if substream { &sub } else { &clip }, a, decode, detect, substream)?;
        println!(
            "{:18} {:.3} cores in all, {:.4} cores per camera (idle subtracted): {:.0} cameras per core",
            p.name,
            p.cores,
            per_cam(&p),
            1.0 / per_cam(&p).max(1e-6)
        );
        for (id, dec, ana, mo, de) in &p.per_camera {
            println!("    {id:22} decoded {dec:5.1} fps, analysed {ana:4.2} fps, events/s: motion {mo:4.2}, detection {de:4.2}");
        }
        phases.push(p);
    }
    svc.shutdown();
    let _ = redis::cmd("DEL").arg(&stream).query::<()>(&mut common::redis_conn());
    let cores = |name: &str| phases.iter().find(|p| p.name == name).map(per_cam);
    let ratio = |a: &str, b: &str| Some(cores(a)? / cores(b)?.max(1e-6));
    let kf = ratio("all", "keyframes");
    if let Some(r) = kf {
        let met = if r >= TARGET_RATIO { "met" } else { "NOT met" };
        println!("keyframes only: {r:.1}x fewer cores per camera than decoding everything, motion only (target >= {TARGET_RATIO}x: {met})");
    }
    let detect = ratio("all.detect", "keyframes.detect");
    if let Some(r) = detect {
        println!("with person detection on: {r:.1}x");
    }
    let (sub_all, sub_kf) = (ratio("all", "sub360p.all"), ratio("all", "sub360p.keyframes"));
    if let (Some(s), Some(k)) = (sub_all, sub_kf) {
        println!("substream 640x360 instead of the 1080p main stream: {s:.1}x fewer cores per camera decoding everything, {k:.1}x with keyframes only");
    }
    Ok(json!({
        "cameras": a.cameras, "seconds": a.seconds, "clip": "1920x1080 25 fps, keyframe every 25 frames", "max_fps": 1,
        "idle_cores": idle,
        "phases": phases.iter().map(|p| json!({
            "phase": p.name, "cores": p.cores, "cores_per_camera": per_cam(p),
            "cameras": p.per_camera.iter().map(|(id, dec, ana, mo, de)| json!({"camera_id": id, "decoded_fps": dec,
                "analysed_fps": ana, "motion_events_per_s": mo, "detection_events_per_s": de})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "ratio_all_over_keyframes": kf, "ratio_with_detection": detect, "ratio_main_all_over_substream_all": sub_all,
        "ratio_main_all_over_substream_keyframes": sub_kf, "target_ratio": TARGET_RATIO,
    }))
}

/// `bench --capacity --low-fps`: the most 1080p25 cameras (keyframe every second) this machine
/// sustains at `max_fps` 1, motion only, with `decode: "all"` and with `"keyframes"`, in one run.
/// For 8, 16, 24, 32, 48, 64, 96, 128 cameras (up to `max_cameras`) in turn, one phase each on
/// one service (cameras deleted between): the SLO is that *every* camera analysed at least
/// [`LOW_FPS_SLO`] frames/s over the
/// window, and at least [`LOW_FPS_MOTION_SLO`] motion events/s (every camera reports; the motion
/// detector's background needs a few analysed frames after a start, and a frame whose walkers
/// barely moved in a second reports none). The search per
/// mode stops at the first count that misses it. Cameras per core = the most that met it / the
/// machine's cores.
pub fn capacity(cfg: &Config, video: &Path, a: &DecodeArgs, max_cameras: usize) -> anyhow::Result<Value> {
    let clip = clip_1080p25(video);
    let mut cfg = cfg.clone();
    cfg.stream_file_root = clip.parent().map(Into::into);
    cfg.max_cameras = cfg.max_cameras.max(max_cameras);
    let stream = cfg.redis_stream.clone();
    let cores_here = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let svc = Service::start(cfg.clone())?;
    println!("low-fps capacity: 1920x1080 25 fps cameras (keyframe every 1 s) at max_fps 1, motion only, on {cores_here} cores");
    let mut modes = Vec::new();
    for decode in ["all", "keyframes"] {
        let mut best: Option<(usize, f64)> = None;
        let mut steps = Vec::new();
        for n in LOW_FPS_COUNTS.iter().copied().filter(|&n| n <= max_cameras) {
            let p = phase_of(&svc, &stream, &clip, n, a, decode, false, false)?;
            let worst_analysed = p.per_camera.iter().map(|c| c.2).fold(f64::INFINITY, f64::min);
            let worst_motion = p.per_camera.iter().map(|c| c.3).fold(f64::INFINITY, f64::min);
            let met = worst_analysed >= LOW_FPS_SLO && worst_motion >= LOW_FPS_MOTION_SLO;
            println!(
                "  decode {decode:9} {n:3} cameras: {:.2} cores, slowest camera analysed {worst_analysed:.2} fps, motion {worst_motion:.2} events/s: {}",
                p.cores,
                if met { "met" } else { "MISSED" }
            );
            steps.push(json!({"cameras": n, "cores": p.cores, "min_analysed_fps": worst_analysed, "min_motion_events_per_s": worst_motion, "met": met}));
            if !met {
                break;
            }
            best = Some((n, p.cores));
        }
        let most = best.map(|b| b.0).unwrap_or(0);
        println!("  decode {decode}: {most} cameras = {:.1} cameras per core", most as f64 / cores_here);
        modes.push(json!({"decode": decode, "max_cameras_met": most, "cameras_per_core": most as f64 / cores_here,
            "cores_at_max": best.map(|b| b.1), "steps": steps}));
    }
    svc.shutdown();
    let _ = redis::cmd("DEL").arg(&stream).query::<()>(&mut common::redis_conn());
    Ok(
        json!({"clip": "1920x1080 25 fps, keyframe every 25 frames", "max_fps": 1, "slo_min_analysed_fps": LOW_FPS_SLO, "slo_min_motion_events_per_s": LOW_FPS_MOTION_SLO,
        "seconds": a.seconds, "warmup": a.warmup, "machine_cores": cores_here, "modes": modes}),
    )
}

/// The camera counts the low-fps search tries, in order.
const LOW_FPS_COUNTS: [usize; 8] = [8, 16, 24, 32, 48, 64, 96, 128];
/// Per camera, at least this many analysed frames a second (of `max_fps` 1).
const LOW_FPS_SLO: f64 = 0.8;
/// Per camera, at least this many motion events a second.
const LOW_FPS_MOTION_SLO: f64 = 0.5;
