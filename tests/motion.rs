//! The motion detector on synthetic frames (edge cases) and on real video (sample clips), and
//! motion events end to end into a real Redis.

mod common;

use analytics_service::camera::RoiZone;
use analytics_service::pipeline::motion::{MotionDetector, MotionSettings};
use common::*;
use opencv::core::{Mat, Rect, Scalar, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgproc, videoio};
use serde_json::json;
use std::time::Duration;

/// A grey 640x480 BGR frame with a bright block at `x`.
fn frame_with_block(x: i32, base: f64) -> Mat {
    let mut m = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(base)).unwrap();
    imgproc::rectangle(&mut m, Rect::new(x, 200, 80, 120), Scalar::all(230.0), imgproc::FILLED, imgproc::LINE_8, 0).unwrap();
    m
}

fn detector() -> MotionDetector {
    MotionDetector::new(MotionSettings::default()).unwrap()
}

fn zone(name: &str, x0: f32, x1: f32) -> RoiZone {
    RoiZone { name: name.into(), points: vec![[x0, 0.0], [x1, 0.0], [x1, 1.0], [x0, 1.0]], ..Default::default() }
}

/// The first frame only builds the background: no motion.
#[test]
fn first_frame_calibrates() {
    let r = detector().detect(&frame_with_block(100, 60.0), &[]).unwrap();
    assert!(r.calibrating);
    assert_eq!(r.area, 0.0);
}

/// Identical frames: no motion.
#[test]
fn static_frames_have_no_motion() {
    let mut d = detector();
    for _ in 0..5 {
        let r = d.detect(&frame_with_block(100, 60.0), &[]).unwrap();
        assert_eq!(r.area, 0.0);
        assert!(r.boxes.is_empty());
    }
}

/// A block that moves is seen where it moved, with an area of its order of size.
#[test]
fn a_moving_block_is_motion_with_a_box() {
    let mut d = detector();
    d.detect(&frame_with_block(100, 60.0), &[]).unwrap();
    let r = d.detect(&frame_with_block(300, 60.0), &[]).unwrap();
    // the block left x=100..180 and arrived at 300..380: ~2 * 80*120 / (640*480) = 6 %, plus dilation
    assert!((0.04..0.15).contains(&r.area), "area {}", r.area);
    assert!(r.intensity > 0.3, "bright block on grey: intensity {}", r.intensity);
    assert!(r.boxes.iter().any(|b| b.x < 0.3 && b.x + b.width > 0.15), "box at the old place: {:?}", r.boxes);
    assert!(r.boxes.iter().any(|b| b.x > 0.4 && b.x < 0.5), "box at the new place: {:?}", r.boxes);
}

/// A lighting jump across the whole scene is not motion, and the scene is quiet right after.
#[test]
fn lighting_change_is_not_motion() {
    let mut d = detector();
    d.detect(&frame_with_block(100, 60.0), &[]).unwrap();
    let r = d.detect(&frame_with_block(100, 160.0), &[]).unwrap();
    assert_eq!(r.area, 0.0, "{r:?}");
    let r = d.detect(&frame_with_block(100, 160.0), &[]).unwrap();
    assert_eq!(r.area, 0.0, "the new light level is the background now");
}

/// A resolution change mid-stream starts a new background instead of failing.
#[test]
fn size_change_mid_stream_restarts_the_background() {
    let mut d = detector();
    d.detect(&frame_with_block(100, 60.0), &[]).unwrap();
    let mut small = Mat::default();
    imgproc::resize(&frame_with_block(300, 60.0), &mut small, opencv::core::Size::new(320, 180), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    let r = d.detect(&small, &[]).unwrap();
    assert!(r.calibrating);
    assert_eq!(d.detect(&small, &[]).unwrap().area, 0.0);
}

/// Only motion inside the zones counts, and events name the zone.
#[test]
fn zones_exclude_motion_outside_them() {
    let mut d = detector();
    let right = [zone("right", 0.7, 1.0)];
    d.detect(&frame_with_block(100, 60.0), &right).unwrap();
    let r = d.detect(&frame_with_block(120, 60.0), &right).unwrap();
    assert_eq!(r.area, 0.0, "motion on the left, zone on the right: {r:?}");

    let mut d = detector();
    let zones = [zone("left", 0.0, 0.5), zone("right", 0.7, 1.0)];
    d.detect(&frame_with_block(100, 60.0), &zones).unwrap();
    let r = d.detect(&frame_with_block(120, 60.0), &zones).unwrap();
    assert!(r.area > 0.0);
    assert_eq!(r.zones, ["left"]);
    // the area is a fraction of the zones, not of the frame: bigger than the frame fraction
    let mut whole = detector();
    whole.detect(&frame_with_block(100, 60.0), &[]).unwrap();
    let w = whole.detect(&frame_with_block(120, 60.0), &[]).unwrap();
    assert!(r.area > w.area, "zone fraction {} vs frame fraction {}", r.area, w.area);
}

/// Grayscale input works as well as BGR.
#[test]
fn grayscale_frames_work() {
    let mut d = detector();
    let mut g = Mat::default();
    imgproc::cvt_color(&frame_with_block(100, 60.0), &mut g, imgproc::COLOR_BGR2GRAY, 0).unwrap();
    d.detect(&g, &[]).unwrap();
    let mut g2 = Mat::default();
    imgproc::cvt_color(&frame_with_block(300, 60.0), &mut g2, imgproc::COLOR_BGR2GRAY, 0).unwrap();
    assert!(d.detect(&g2, &[]).unwrap().area > 0.0);
}

/// Runs the detector over a whole file; returns each frame's area.
fn areas_of(path: &std::path::Path, max_frames: usize) -> Vec<f32> {
    let mut cap = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    assert!(cap.is_opened().unwrap(), "cannot open {}", path.display());
    let mut d = detector();
    let mut frame = Mat::default();
    let mut areas = Vec::new();
    while areas.len() < max_frames && cap.read(&mut frame).unwrap() {
        areas.push(d.detect(&frame, &[]).unwrap().area);
    }
    areas
}

/// A static real clip (H.264 noise included) gives no motion.
#[test]
fn static_clip_has_no_motion() {
    let areas = areas_of(&static_clip(), 100);
    assert!(areas.len() >= 90, "{} frames", areas.len());
    let moving = areas.iter().filter(|a| **a > 0.0).count();
    assert_eq!(moving, 0, "areas: {areas:?}");
}

/// The pedestrian clip has motion in most frames, with plausible areas (people are small).
#[test]
fn walking_people_are_motion_with_plausible_areas() {
    let areas = areas_of(&media("vtest_pedestrians_768x576.mp4"), 300);
    let moving: Vec<f32> = areas.iter().copied().filter(|a| *a > 0.0).collect();
    assert!(moving.len() > areas.len() * 8 / 10, "{} of {} frames with motion", moving.len(), areas.len());
    let mean = moving.iter().sum::<f32>() / moving.len() as f32;
    assert!((0.005..0.3).contains(&mean), "mean area {mean}");
    assert!(moving.iter().all(|a| *a < 0.6), "no frame is mostly motion");
}

/// A file camera through the whole service: motion events land in Redis with the contract's
/// fields; a static camera publishes none.
#[test]
fn motion_events_reach_redis() {
    let cfg = test_config("motion-e2e");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let body = json!([
        {"camera_id": "walk", "stream_url": media("vtest_pedestrians_768x576.mp4").to_str().unwrap(),
         "parameters": {"motion_threshold": 0.01, "enable_object_detection": false}},
        {"camera_id": "still", "stream_url": static_clip().to_str().unwrap(),
         "parameters": {"motion_threshold": 0.0, "loop_file": true, "enable_object_detection": false}},
    ]);
    assert_eq!(post_json(addr, "/api/cameras", &body).status, 201);
    let mut conn = redis_conn();
    let entries = wait_for(Duration::from_secs(30), "10 motion events", || {
        let e = xrange(&mut conn, &stream);
        (e.len() >= 10).then_some(e)
    });
    std::thread::sleep(Duration::from_secs(2));
    let still = get(addr, "/api/cameras/still").json();
    assert!(still["frames_processed"].as_u64().unwrap() >= 10, "{still}");
    for (_, f) in &entries {
        assert_eq!(f["event_type"], "motion");
        assert_eq!(f["camera_id"], "walk", "the static camera must publish nothing");
        let p: serde_json::Value = serde_json::from_str(&f["payload"]).unwrap();
        let area = p["affected_area_percentage"].as_f64().unwrap();
        assert!((0.01..=1.0).contains(&area), "{p}");
        assert!((0.0..=1.0).contains(&p["motion_intensity"].as_f64().unwrap()));
        assert!(p["frame_number"].as_u64().unwrap() >= 1);
        assert!(p["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    svc.shutdown();
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut conn).unwrap();
}

/// A real scene whose light level ramps up (auto-exposure, dawn, lights dimming up) is not
/// motion: every frame of a 40-frame ramp from 100 % to 160 % brightness gives no motion event
/// at the default threshold.
#[test]
fn gradual_lighting_ramp_is_not_motion() {
    let bus = opencv::imgcodecs::imread(media("bus.jpg").to_str().unwrap(), opencv::imgcodecs::IMREAD_COLOR).unwrap();
    let mut d = detector();
    let mut worst = 0.0f32;
    for i in 0..60 {
        let gain = 1.0 + 0.6 * (i.min(40) as f64 / 40.0);
        let mut f = Mat::default();
        bus.convert_to(&mut f, opencv::core::CV_8U, gain * 0.6, 0.0).unwrap();
        let r = d.detect(&f, &[]).unwrap();
        worst = worst.max(r.area);
    }
    assert!(worst < 0.1, "largest area reported during the ramp: {worst}");
}

// --- Lighting steps -----------------------------------------------------------------------------
// Test footage made with ffmpeg from the pedestrian sample (10 fps): either one still frame of it
// looped (nothing moves) or the video itself (people walk), with ffmpeg's `eq` filter changing the
// brightness: +0.235 lifts the scene's mean luma from about 120 to 177, like lights switched on.

/// Brightness lift of a lighting step (`eq=brightness`): mean luma ~120 -> ~177.
const STEP: &str = "0.235";

/// The pedestrian sample from t=20 s, `seconds` long at 10 fps, through `vf`; `still` loops its
/// first frame instead of playing it (a scene where nothing moves).
fn lighting_clip(name: &str, still: bool, seconds: u32, vf: &str) -> std::path::PathBuf {
    let src = media("vtest_pedestrians_768x576.mp4");
    let frames = (seconds * 10).to_string();
    let chain =
        if still { format!("select=eq(n\\,0),loop=loop={}:size=1:start=0,setpts=N/10/TB,{vf}", seconds * 10 - 1) } else { vf.to_string() };
    ffmpeg_fixture(
        &format!("lighting_v1_{name}.mp4"),
        &[
            "-ss",
            "20",
            "-i",
            src.to_str().unwrap(),
            "-vf",
            &chain,
            "-frames:v",
            &frames,
            "-r",
            "10",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ],
    )
}

/// Frames (index from 0) in which the detector saw any motion, with their areas; the first frame
/// (calibration) is never motion.
fn motion_frames(path: &std::path::Path) -> (usize, Vec<(usize, f32)>) {
    let areas = areas_of(path, 10_000);
    let moving = areas.iter().copied().enumerate().filter(|(_, a)| *a > 0.0).collect();
    (areas.len(), moving)
}

/// A brightness step on a still scene (lights switched on) is one motion event at most, not a
/// burst while the background catches up.
#[test]
fn brightness_step_is_one_event_at_most() {
    let clip = lighting_clip("step_up", true, 8, &format!("eq=brightness={STEP}:enable='gte(t,4)'"));
    let (n, moving) = motion_frames(&clip);
    eprintln!("step up: {n} frames, motion in {moving:?}");
    assert_eq!(n, 80);
    assert!(moving.len() <= 1, "a lighting step gave {} motion frames: {moving:?}", moving.len());
}

/// An exposure step (luma x1.5, the bright parts clipping at white, as when an IR cut filter or
/// auto-exposure jumps) is one motion event at most too.
#[test]
fn exposure_step_with_clipping_is_one_event_at_most() {
    let clip = lighting_clip("gain_up", true, 8, "eq=contrast=1.5:brightness=0.25:enable='gte(t,4)'");
    let (n, moving) = motion_frames(&clip);
    eprintln!("gain step: {n} frames, motion in {moving:?}");
    assert_eq!(n, 80);
    assert!(moving.len() <= 1, "an exposure step gave {} motion frames: {moving:?}", moving.len());
}

/// A slow ramp of the same size over 6 s (dawn, dimmers, auto-exposure) is never motion.
#[test]
fn slow_brightness_ramp_is_no_event() {
    let clip = lighting_clip("ramp", true, 10, &format!("eq=brightness='{STEP}*clip((t-2)/6\\,0\\,1)':eval=frame"));
    let (n, moving) = motion_frames(&clip);
    eprintln!("ramp: {n} frames, motion in {moving:?}");
    assert_eq!(n, 100);
    assert!(moving.is_empty(), "a slow ramp gave motion: {moving:?}");
}

/// Lights on, then off again 3 s later: at most one event for each step.
#[test]
fn brightness_step_and_back_is_one_event_each_at_most() {
    let clip = lighting_clip("step_back", true, 10, &format!("eq=brightness={STEP}:enable='between(t,3,6)'"));
    let (n, moving) = motion_frames(&clip);
    eprintln!("step and back: {n} frames, motion in {moving:?}");
    assert_eq!(n, 100);
    let up = moving.iter().filter(|(i, _)| *i < 60).count();
    let back = moving.iter().filter(|(i, _)| *i >= 60).count();
    assert!(up <= 1 && back <= 1, "step up gave {up} motion frames, step back {back}: {moving:?}");
}

/// People walking are motion from the first compared frame on (the detector needs no warm-up).
#[test]
fn walking_people_are_seen_at_once() {
    let clip = lighting_clip("walk", false, 4, "null");
    let areas = areas_of(&clip, 40);
    eprintln!("walking, first frames: {:?}", &areas[..6]);
    assert_eq!(areas[0], 0.0, "the first frame calibrates");
    assert!(areas[1..4].iter().all(|a| *a > 0.0), "people walk in every frame: {:?}", &areas[..6]);
}

/// People walking while the lights go up are still motion, on the step frame and after it, and
/// the step does not turn the whole frame into motion.
#[test]
fn walking_people_through_a_lighting_step_are_still_motion() {
    let plain = areas_of(&lighting_clip("walk_plain", false, 8, "null"), 80);
    let clip = lighting_clip("walk_step", false, 8, &format!("eq=brightness={STEP}:enable='gte(t,4)'"));
    let areas = areas_of(&clip, 80);
    eprintln!("walking through a step: frames 36..50 {:?}", &areas[36..50]);
    eprintln!("the same without the step:       {:?}", &plain[36..50]);
    assert_eq!(areas.len(), 80);
    let after = &areas[40..];
    let moving = after.iter().filter(|a| **a > 0.0).count();
    assert!(moving * 10 >= after.len() * 9, "people walk after the step: motion in {moving} of {} frames", after.len());
    assert!(areas[40..43].iter().all(|a| *a > 0.0), "motion on the step frame and the next ones: {:?}", &areas[38..45]);
    let worst = after.iter().copied().fold(0.0f32, f32::max);
    let worst_plain = plain[40..].iter().copied().fold(0.0f32, f32::max);
    assert!(worst < (2.0 * worst_plain).max(0.1), "the step inflates the area to {worst} (without it at most {worst_plain})");
}
