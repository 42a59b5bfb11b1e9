//! The tracker on real detections: YOLOv8 (the library's detector, confidence down to 0.1) on
//! the first 300 frames of the pedestrian sample, tracked by `pipeline::track::Tracker`, and
//! compared with an independent ByteTrack (PyPI `supervision`, tests/reference_track.py).

mod common;

use analytics_service::infer::Device;
use analytics_service::infer::Yolo;
use analytics_service::pipeline::track::{FrameStamp, TrackInput, Tracker, TrackerConfig};
use common::*;
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Frames of the sample tracked (30 s at 10 fps).
const FRAMES: usize = 300;
/// The detector's threshold: low, so that the tracker gets ByteTrack's low-score boxes.
const DETECT_CONF: f32 = 0.1;
/// Agreement (IDF1 between the two trackers' identities) the test asks for.
const MIN_AGREEMENT: f64 = 0.95;

/// Detections of the first `FRAMES` frames of the pedestrian sample, frame by frame. Detecting
/// takes minutes on a busy CPU, so they are kept in the fixtures folder, under a name made of
/// the model's and the video's sizes and times, the frame count and the threshold.
fn detections() -> Vec<Vec<TrackInput>> {
    let model_path = model("yolov8n.onnx");
    let video = media("vtest_pedestrians_768x576.mp4");
    let fingerprint = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        let t = m.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
        format!("{}-{}", m.len(), t.as_nanos())
    };
    let cache = fixtures_dir().join(format!("track-dets-{}-{}-{FRAMES}-{DETECT_CONF}.json", fingerprint(&model_path), fingerprint(&video)));
    if let Ok(text) = std::fs::read_to_string(&cache) {
        return from_json(&serde_json::from_str(&text).unwrap());
    }
    let dets = detect(&model_path, &video);
    let tmp = cache.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, to_json(&dets).to_string()).unwrap();
    std::fs::rename(&tmp, &cache).unwrap();
    dets
}

/// Frames of detections as JSON, `[[[class, conf, x1, y1, x2, y2], ...], ...]` (what
/// tests/reference_track.py reads, too).
fn to_json(dets: &[Vec<TrackInput>]) -> Value {
    dets.iter()
        .map(|f| f.iter().map(|d| json!([d.class_id, d.confidence, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]])).collect::<Value>())
        .collect()
}

fn from_json(v: &Value) -> Vec<Vec<TrackInput>> {
    let frames: Vec<Vec<[f64; 6]>> = serde_json::from_value(v.clone()).unwrap();
    frames
        .into_iter()
        .map(|f| {
            f.into_iter()
                .map(|d| TrackInput {
                    class_id: d[0] as usize,
                    confidence: d[1] as f32,
                    bbox: [d[2] as f32, d[3] as f32, d[4] as f32, d[5] as f32],
                })
                .collect()
        })
        .collect()
}

/// Runs the library's YOLOv8 on the first `FRAMES` frames of `video`.
fn detect(model_path: &Path, video: &Path) -> Vec<Vec<TrackInput>> {
    let mut yolo =
        Yolo::load(model_path, "yolov8n".into(), &Device::Cpu, std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).as_deref(), 1, 0.45)
            .expect("model loads");
    let mut cap = videoio::VideoCapture::from_file(video.to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    assert!(cap.is_opened().unwrap(), "cannot open {}", video.display());
    let mut frame = Mat::default();
    let mut out = Vec::with_capacity(FRAMES);
    while out.len() < FRAMES && cap.read(&mut frame).unwrap() {
        let (mut res, _) = yolo.detect_batch(&[&frame], &[DETECT_CONF]).unwrap();
        out.push(res.remove(0).1.iter().map(TrackInput::from).collect());
    }
    assert_eq!(out.len(), FRAMES, "the sample has at least {FRAMES} frames");
    out
}

/// Runs the tracker at 10 fps (the sample's rate) and returns the track id of each detection.
fn track(cfg: &TrackerConfig, dets: &[Vec<TrackInput>]) -> Vec<Vec<Option<u64>>> {
    let mut tracker = Tracker::new(cfg.clone());
    let (t0, wall0) = (Instant::now(), SystemTime::now());
    let mut started = HashSet::new();
    let mut ended = HashSet::new();
    let mut ids = Vec::new();
    for (n, frame) in dets.iter().enumerate() {
        let d = Duration::from_millis(100) * n as u32;
        let out = tracker.update(frame, FrameStamp { frame_number: n as u64, captured: t0 + d, captured_at: wall0 + d });
        assert!(out.started.iter().all(|id| started.insert(*id)), "started twice");
        assert!(out.ended.iter().all(|e| ended.insert(e.track.id())), "ended twice");
        ids.push(out.assigned);
    }
    ended.extend(tracker.end_all().iter().map(|e| e.track.id()));
    assert_eq!(started, ended, "every started track ends exactly once");
    ids
}

/// The tracker agrees with supervision's ByteTrack on the identities of the boxes (IDF1 of one
/// against the other >= 0.95), with the service's defaults and with supervision's lower
/// thresholds (more boxes, more crowding).
#[test]
fn agrees_with_reference_bytetrack() {
    let dets = detections();
    let configs = [
        ("defaults", TrackerConfig::default()),
        ("supervision_defaults", TrackerConfig { high_thresh: 0.25, new_track_thresh: 0.35, ..TrackerConfig::default() }),
    ];
    let runs: Vec<Value> = configs
        .iter()
        .map(|(name, cfg)| {
            let ids = track(cfg, &dets);
            json!({
                "name": name,
                "config": {
                    "high_thresh": cfg.high_thresh, "low_thresh": cfg.low_thresh, "new_track_thresh": cfg.new_track_thresh,
                    "match_thresh": cfg.match_thresh, "min_hits": cfg.min_hits,
                    "lost_timeout_s": cfg.lost_timeout.as_secs_f64(), "frame_interval_s": cfg.frame_interval.as_secs_f64(),
                },
                "ids": ids,
            })
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("analytics-track-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("tracks.json");
    let result = dir.join("agreement.json");
    std::fs::write(&input, json!({"fps": 10, "frames": to_json(&dets), "runs": runs}).to_string()).unwrap();
    let st = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference_track.py"))
        .arg(&input)
        .arg(&result)
        .status()
        .unwrap();
    assert!(st.success(), "reference script failed (input kept in {})", dir.display());
    let res: Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    for run in res["runs"].as_array().unwrap() {
        let idf1 = run["idf1"].as_f64().unwrap();
        println!("{}: agreement IDF1 {idf1:.4}: {run}", run["name"]);
        assert!(run["boxes_both"].as_u64().unwrap() >= 1000, "too few tracked boxes to judge: {run}");
        assert!(idf1 >= MIN_AGREEMENT, "agreement {idf1:.4} < {MIN_AGREEMENT} for {run} (input kept in {})", dir.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
