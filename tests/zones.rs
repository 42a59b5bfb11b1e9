//! Zone analytics end to end (docs/events.md, "Zone analytics"): the real service, the real
//! YOLOv8 model and a real Redis, on clips made with a known truth. A person cut out of
//! `bus.jpg` (YOLOv8 finds it at about 0.8) is pasted onto a still background and moved along
//! known paths at known speeds, 10 fps, 640x480, encoded with ffmpeg (fixtures folder, made
//! once). Each test prints truth against measured.
//!
//! People move at most 8 px a frame (80 px/s): on a busy machine the pipeline analyses only 2
//! or 3 of the 10 frames a second (newest wins), and the tracker must still follow them.

mod common;

use common::*;
use opencv::core::{Mat, Rect, Scalar, Size, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const W: i32 = 640;
const H: i32 = 480;
const FPS: f32 = 10.0;
/// Feet of the two lanes people walk in (their boxes, 200 px tall, do not overlap).
const LANE_A: f32 = 220.0;
const LANE_B: f32 = 470.0;
/// Pixels a frame at walking pace: boxes three frames apart still overlap for the tracker.
const STEP: f32 = 8.0;
/// Frames of empty background after the action, so every track ends (TRACK_LOST_S) on
/// detected frames before the file ends.
const TAIL: usize = 40;
/// Frames of empty background before the action: the model's first runs are slow (warm-up),
/// and a stall then would break the first tracks.
const LEAD: usize = 20;

/// One person's feet (bottom-centre of the sprite, pixels) frame by frame; None: not in view.
#[derive(Clone)]
struct Path {
    x: f32,
    y: f32,
    pts: Vec<Option<(f32, f32)>>,
}

impl Path {
    /// Appears at (`x`, `y`) on frame `from`.
    fn at(from: usize, x: f32, y: f32) -> Path {
        let mut pts = vec![None; from];
        pts.push(Some((x, y)));
        Path { x, y, pts }
    }
    /// Walks to `to` at `step` pixels a frame.
    fn walk(mut self, to: f32, step: f32) -> Path {
        while (to - self.x).abs() > step {
            self.x += step.copysign(to - self.x);
            self.pts.push(Some((self.x, self.y)));
        }
        self.x = to;
        self.pts.push(Some((self.x, self.y)));
        self
    }
    /// Stands for `frames`, wiggling `wiggle` pixels either way (0, +w, 0, -w, ...).
    fn stay(mut self, frames: usize, wiggle: f32) -> Path {
        for i in 0..frames {
            let dx = [0.0, wiggle, 0.0, -wiggle][i % 4];
            self.pts.push(Some((self.x + dx, self.y)));
        }
        self
    }
    /// First frame whose feet are in `x0..=x1`.
    fn first_frame_in(&self, x0: f32, x1: f32) -> usize {
        self.pts.iter().position(|p| p.is_some_and(|(x, _)| (x0..=x1).contains(&x))).unwrap()
    }
}

/// The person: the middle pedestrian of bus.jpg (YOLOv8n: 0.88 there), scaled to 200 px tall.
fn sprite() -> Mat {
    let bus = imgcodecs::imread(media("bus.jpg").to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    let crop = Mat::roi(&bus, Rect::new(215, 400, 135, 462)).unwrap().try_clone().unwrap();
    let mut out = Mat::default();
    imgproc::resize(&crop, &mut out, Size::new(58, 200), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
    out
}

/// A still background: a smooth colour gradient (no objects of its own).
fn background() -> Mat {
    let mut bg = Mat::new_rows_cols_with_default(H, W, CV_8UC3, Scalar::all(0.0)).unwrap();
    for y in 0..H {
        for x in 0..W {
            *bg.at_2d_mut::<opencv::core::Vec3b>(y, x).unwrap() =
                opencv::core::Vec3b::from([(90 + y * 60 / H) as u8, (100 + x * 40 / W) as u8, 110]);
        }
    }
    bg
}

/// Encodes the people's paths (after [`LEAD`] and before [`TAIL`] empty frames) as `name` in the
/// fixtures folder, once; returns its path and the number of frames. Path frame `i` is clip
/// frame `LEAD + i`.
fn clip(name: &str, people: &[Path]) -> (PathBuf, usize) {
    let frames = LEAD + people.iter().map(|p| p.pts.len()).max().unwrap_or(0) + TAIL;
    let out = fixtures_dir().join(name);
    if out.is_file() {
        return (out, frames);
    }
    let (person, bg) = (sprite(), background());
    let tmp = fixtures_dir().join(format!("{name}.{}.tmp.mp4", std::process::id()));
    let size = format!("{W}x{H}");
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", &size, "-r", "10", "-i", "-"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "10", "-pix_fmt", "yuv420p"])
        .arg(&tmp)
        .stdin(Stdio::piped())
        .spawn()
        .expect("ffmpeg must be installed (scripts/setup.sh installs it)");
    let mut stdin = ffmpeg.stdin.take().unwrap();
    for f in 0..frames {
        let mut frame = bg.try_clone().unwrap();
        for p in people {
            if let Some(Some((x, y))) = f.checked_sub(LEAD).and_then(|i| p.pts.get(i)) {
                let r = Rect::new(
                    (x - person.cols() as f32 / 2.0).round() as i32,
                    (y - person.rows() as f32).round() as i32,
                    person.cols(),
                    person.rows(),
                );
                let mut roi = Mat::roi_mut(&mut frame, r).unwrap();
                person.copy_to(&mut roi).unwrap();
            }
        }
        stdin.write_all(frame.data_bytes().unwrap()).unwrap();
    }
    drop(stdin);
    assert!(ffmpeg.wait().unwrap().success(), "ffmpeg failed making {name}");
    std::fs::rename(&tmp, &out).unwrap();
    (out, frames)
}

/// Waits until each camera has played its file to the end (its state says "end of file"),
/// then at once (before capture starts the file over) runs `at_end` on it and deletes it.
fn delete_at_end(addr: SocketAddr, cameras: &[&str], timeout: Duration, mut at_end: impl FnMut(&str)) {
    let mut left: Vec<&str> = cameras.to_vec();
    wait_for(timeout, &format!("cameras {cameras:?} to reach the end of their files"), || {
        left.retain(|cam| {
            let v = get(addr, &format!("/api/cameras/{cam}")).json();
            if !v["last_error"].as_str().is_some_and(|e| e.contains("end of file")) {
                return true;
            }
            at_end(cam);
            assert_eq!(http(addr, "DELETE", &format!("/api/cameras/{cam}"), None, b"").status, 200);
            false
        });
        left.is_empty().then_some(())
    });
}

/// The payloads of the stream's events of `camera` (each checked against its schema).
fn events_of(stream: &str, camera: &str) -> Vec<Value> {
    let mut conn = redis_conn();
    xrange(&mut conn, stream)
        .into_iter()
        .filter(|(_, f)| f["camera_id"] == camera)
        .map(|(_, f)| serde_json::from_str(&f["payload"]).unwrap())
        .collect()
}

fn updates<'a>(events: &'a [Value], reason: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event_type"] == "object" && e["update_reason"] == reason).collect()
}

/// Feet (bottom of the box) of an object event, in pixels.
fn feet_y(e: &Value) -> f32 {
    let b = &e["bounding_box"];
    (b["y"].as_f64().unwrap() + b["height"].as_f64().unwrap()) as f32 * H as f32
}

/// Line crossing, occupancy and loitering, speed: three made clips on three cameras of one
/// service, at the same time.
///
/// - `door`: a vertical line drawn bottom to top in the middle; in two lanes, 3 people cross
///   left-to-right (`in`) and 2 right-to-left (`out`), some standing on the line, some
///   wiggling across it (4-6 px, under the 2 % band), and one walks up to the line, wiggles on
///   it and turns back (no crossing): in == 3, out == 2, in the events, the `counts` event and
///   `GET .../counts`, from the owner and from a second instance (the owner's status in
///   Redis); a reset sent to the second instance is refused (409 `not_owner`), the owner's
///   zeroes them.
/// - `gate`: a zone (x 0.35..0.65) with `loitering_s` 4: A stays 8 s (one `loitering`, 4 s after
///   entering, +-1 s), B walks through meanwhile in 2.4 s (nothing; occupancy 2); `counts`
///   shows 2, then 0.
/// - `road`: a calibrated zone (512 px = 80 m wide), limit 35 km/h: one person at 45 km/h
///   (`speeding`, `speed_kmh` within 10 %), one at 25 km/h (no `speeding`, `speed_kmh` on its
///   `end` within 10 %).
#[test]
fn lines_loitering_occupancy_and_speed_on_made_clips() {
    let mid = W as f32 / 2.0;
    // door: three rounds of 6 s, a person in each lane per round
    let round = |r: usize| r * 60;
    let (l, r) = (180.0, 460.0);
    let door = [
        Path::at(round(0), l, LANE_A).walk(mid, STEP).stay(10, 0.0).walk(r, STEP), // in, pauses on the line
        Path::at(round(0), r, LANE_B).walk(l, STEP),                               // out
        Path::at(round(1), l, LANE_A).walk(mid, STEP).stay(12, 6.0).walk(r, STEP), // in, wiggles on the line
        Path::at(round(1), r, LANE_B).walk(mid, STEP).stay(10, 0.0).walk(l, STEP), // out, pauses on the line
        Path::at(round(2), l, LANE_A).walk(mid - 2.0, STEP).stay(12, 4.0).walk(l, STEP), // turns back on the line
        Path::at(round(2), l, LANE_B).walk(r, STEP),                               // in
    ];
    let (door_clip, door_frames) = clip("zones_door_v3.mp4", &door);
    // gate: zone x 224..416 px
    let (z0, z1) = (0.35 * W as f32, 0.65 * W as f32);
    let a = Path::at(0, 130.0, LANE_A).walk(260.0, STEP);
    let a_in = a.first_frame_in(z0, z1);
    let stand = 80 - (a.pts.len() - 1 - a_in);
    let a = a.stay(stand, 1.0).walk(500.0, STEP); // 8 s inside
    let b = Path::at(30, 130.0, LANE_B).walk(500.0, STEP); // 2.4 s inside
    let b_inside = b.pts.iter().filter(|p| p.is_some_and(|(x, _)| (z0..=z1).contains(&x))).count();
    let (gate_clip, gate_frames) = clip("zones_gate_v3.mp4", &[a.clone(), b]);
    // road: zone x 64..576 px = 80 m, from y 0.4 down; 6.4 px a metre
    let px_per_frame = |kmh: f32| kmh / 3.6 * 6.4 / FPS;
    let fast = Path::at(5, 40.0, LANE_B).walk(600.0, px_per_frame(45.0));
    let slow = Path::at(0, 100.0, LANE_A).walk(500.0, px_per_frame(25.0));
    let (road_clip, road_frames) = clip("zones_road_v3.mp4", &[fast, slow]);

    let cfg = test_config("zones");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg.clone());
    let addr = svc.api_addr();
    // a second instance during the door phase: the counts of a camera it does not run come from
    // the owner's status in Redis, and a reset sent to it is refused (409 not_owner)
    let second = start_service(analytics_service::Config { instance_id: "test-instance-b".into(), ..cfg });
    let second_addr = second.api_addr();
    // 5 of the clips' 10 fps: CI's two cores keep up with it
    let common = json!({"detection_classes": ["person"], "max_fps": 5, "enable_motion_detection": false, "frame_detections": false});
    let params = |extra: Value| {
        let mut p = common.clone();
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let door_cam = json!([
        {"camera_id": "door", "stream_url": door_clip.to_str().unwrap(),
         "parameters": params(json!({"lines": [{"name": "door", "points": [[0.5, 1.0], [0.5, 0.0]], "classes": ["person"]}]}))}]);
    let cams = json!([
        {"camera_id": "gate", "stream_url": gate_clip.to_str().unwrap(),
         "parameters": params(json!({"roi_zones": [{"name": "gate", "points": [[0.35, 0], [0.65, 0], [0.65, 1], [0.35, 1]], "loitering_s": 4}]}))},
        {"camera_id": "road", "stream_url": road_clip.to_str().unwrap(),
         "parameters": params(json!({"roi_zones": [{"name": "road", "points": [[0.1, 0.4], [0.9, 0.4], [0.9, 1.0], [0.1, 1.0]],
                                                     "distances_m": [80, 10, 80, 10], "speed_limit_kmh": 35}]}))},
    ]);
    // the door first, alone (its crossings need the steadiest tracks), then gate and road
    let r = post_json(addr, "/api/cameras", &door_cam);
    assert_eq!(r.status, 201, "{}", r.body);
    // door: the live counts from both instances, then a reset (refused by the non-owner)
    let (mut live, mut remote, mut after, mut owner) = (Value::Null, Value::Null, Value::Null, String::new());
    delete_at_end(addr, &["door"], Duration::from_secs_f32(door_frames as f32 / FPS * 3.0 + 30.0), |_| {
        owner = get(addr, "/api/cameras/door").json()["owner"].as_str().unwrap_or_default().to_string();
        let (own, elsewhere) = if owner == "test-instance" { (addr, second_addr) } else { (second_addr, addr) };
        live = get(own, "/api/cameras/door/counts").json();
        remote = wait_for(Duration::from_secs(15), "the non-owner's counts to equal the owner's", || {
            let v = get(elsewhere, "/api/cameras/door/counts").json();
            (v["lines"] == live["lines"] && v["zones"] == live["zones"]).then_some(v)
        });
        let refused = http(elsewhere, "POST", "/api/cameras/door/counts/reset", None, b"");
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(refused.json()["error"], "not_owner", "{}", refused.body);
        assert!(refused.body.contains(&owner), "names the owner: {}", refused.body);
        let reset = http(own, "POST", "/api/cameras/door/counts/reset", None, b"");
        assert_eq!(reset.status, 200, "{}", reset.body);
        after = get(own, "/api/cameras/door/counts").json();
    });
    second.shutdown();
    let r = post_json(addr, "/api/cameras", &cams);
    assert_eq!(r.status, 201, "{}", r.body);
    let longest = gate_frames.max(road_frames) as f32 / FPS;
    delete_at_end(addr, &["gate", "road"], Duration::from_secs_f32(longest * 3.0 + 30.0), |_| {});
    assert_eq!(get(addr, "/api/cameras/nope/counts").status, 404);
    svc.shutdown();

    for cam in ["door", "gate", "road"] {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for e in events_of(&stream, cam) {
            *kinds.entry(format!("{} {} {}", e["event_type"], e["lifecycle"], e["update_reason"])).or_default() += 1;
        }
        println!("{cam}: {kinds:?}");
    }
    let ev = events_of(&stream, "door");
    let crossings: Vec<(&str, String)> = updates(&ev, "line_cross")
        .iter()
        .map(|e| (e["line"]["direction"].as_str().unwrap(), e["track_id"].as_str().unwrap().to_string()))
        .collect();
    let (n_in, n_out) = (crossings.iter().filter(|c| c.0 == "in").count(), crossings.iter().filter(|c| c.0 == "out").count());
    println!("door: truth in 3, out 2; measured in {n_in}, out {n_out}: {crossings:?}");
    let counts: Vec<&Value> = ev.iter().filter(|e| e["event_type"] == "counts").collect();
    println!("door: counts events {:?}", counts.iter().map(|c| &c["lines"]).collect::<Vec<_>>());
    println!("door: GET counts {live} (owner {owner}), from the other instance {remote}, after reset {after}");
    assert_eq!((n_in, n_out), (3, 2), "{crossings:?}");
    assert_eq!(counts.last().expect("a counts event")["lines"]["door"]["person"], json!({"in": 3, "out": 2}));
    assert_eq!(live["lines"]["door"]["person"], json!({"in": 3, "out": 2}), "{live}");
    assert_eq!(
        (live["owner"].as_str(), &remote["owner"], &after["lines"]["door"]),
        (Some(owner.as_str()), &live["owner"], &json!({})),
        "{after}"
    );

    let ev = events_of(&stream, "gate");
    let loiter = updates(&ev, "loitering");
    let expected_s = (LEAD + a_in) as f32 / FPS + 4.0;
    let measured: Vec<f32> = loiter.iter().map(|e| (e["frame_number"].as_u64().unwrap() - 1) as f32 / FPS).collect();
    println!(
        "gate: truth one loitering (A, entered at {:.1} s) at {expected_s:.1} s; B inside {:.1} s: none; measured at {measured:?} s",
        (LEAD + a_in) as f32 / FPS,
        b_inside as f32 / FPS,
    );
    assert_eq!(loiter.len(), 1, "{loiter:?}");
    assert!((feet_y(loiter[0]) - LANE_A).abs() < 20.0, "the loiterer is A: {}", loiter[0]);
    assert!((measured[0] - expected_s).abs() <= 1.0, "loitering at {} s, expected {expected_s} s +- 1", measured[0]);
    let occupancy: Vec<u64> = ev
        .iter()
        .filter(|e| e["event_type"] == "counts")
        .map(|e| e["zones"]["gate"].get("person").and_then(Value::as_u64).unwrap_or(0))
        .collect();
    println!("gate: truth occupancy 1, 2, 1, 0; counts events say {occupancy:?}");
    assert_eq!(occupancy.iter().max(), Some(&2), "{occupancy:?}");
    assert_eq!(occupancy.last(), Some(&0), "{occupancy:?}");

    let ev = events_of(&stream, "road");
    let speeding = updates(&ev, "speeding");
    let ends: BTreeMap<String, Option<f64>> = ev
        .iter()
        .filter(|e| e["event_type"] == "object" && e["lifecycle"] == "end")
        .map(|e| (format!("lane y {:.0}", feet_y(e)), e["speed_kmh"].as_f64()))
        .collect();
    let fast_kmh: Vec<f64> = speeding.iter().map(|e| e["speed_kmh"].as_f64().unwrap()).collect();
    println!("road: truth 45 km/h (speeding) and 25 km/h (not); speeding updates at {fast_kmh:?} km/h; ends {ends:?}");
    assert_eq!(speeding.len(), 1, "{speeding:?}");
    assert!((feet_y(speeding[0]) - LANE_B).abs() < 20.0, "the fast one speeds: {}", speeding[0]);
    assert!((fast_kmh[0] - 45.0).abs() <= 4.5, "{fast_kmh:?}");
    let slow_end = ev
        .iter()
        .find(|e| e["event_type"] == "object" && e["lifecycle"] == "end" && (feet_y(e) - LANE_A).abs() < 20.0)
        .expect("the slow person's end");
    let slow_kmh = slow_end["speed_kmh"].as_f64().expect("speed_kmh on the end inside the zone");
    assert!((slow_kmh - 25.0).abs() <= 2.5, "{slow_kmh}");
}

/// The real sample video (pedestrians on a square, 10 s, analysed at 5 fps) with a vertical and a
/// horizontal line through the middle: how often one track crossed the same line more than
/// once (back and forth: the 2 % band is all that stands against a jittering box) is printed
/// for the record, and the totals of the `counts` event equal the `line_cross` updates.
#[test]
fn the_sample_video_counts_each_crossing_once() {
    let src = media("vtest_pedestrians_768x576.mp4");
    let clip = ffmpeg_fixture(
        "events_walk_10s.mp4",
        &["-i", src.to_str().unwrap(), "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"],
    );
    let cfg = test_config("zones-sample");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let cam = json!({"camera_id": "square", "stream_url": clip.to_str().unwrap(),
        "parameters": {"detection_classes": ["person"], "max_fps": 5, "enable_motion_detection": false, "frame_detections": false,
                       "lines": [{"name": "vertical", "points": [[0.5, 1.0], [0.5, 0.0]]}, {"name": "horizontal", "points": [[0.0, 0.5], [1.0, 0.5]]}]}});
    assert_eq!(post_json(addr, "/api/cameras", &cam).status, 201);
    let mut live = Value::Null;
    delete_at_end(addr, &["square"], Duration::from_secs(60), |_| live = get(addr, "/api/cameras/square/counts").json());
    svc.shutdown();
    let ev = events_of(&stream, "square");
    let mut per_track: BTreeMap<(String, String), Vec<(String, u64)>> = BTreeMap::new();
    for e in updates(&ev, "line_cross") {
        per_track
            .entry((e["track_id"].as_str().unwrap().to_string(), e["line"]["name"].as_str().unwrap().to_string()))
            .or_default()
            .push((e["line"]["direction"].as_str().unwrap().to_string(), e["frame_number"].as_u64().unwrap()));
    }
    let total: usize = per_track.values().map(Vec::len).sum();
    let twice: Vec<_> = per_track.iter().filter(|(_, v)| v.len() > 1).collect();
    let tracks = ev.iter().filter(|e| e["event_type"] == "object" && e["lifecycle"] == "start").count();
    println!(
        "sample: {tracks} tracks, {total} crossings by {} (track, line) pairs; counted more than once for one track: {} {twice:?}",
        per_track.len(),
        twice.len()
    );
    println!("sample: GET counts {live}");
    // the counts agree with the updates
    for line in ["vertical", "horizontal"] {
        let (i, o) = per_track.iter().filter(|((_, l), _)| l == line).flat_map(|(_, v)| v).fold((0, 0), |(i, o), (d, _)| {
            if d == "in" {
                (i + 1, o)
            } else {
                (i, o + 1)
            }
        });
        let got = &live["lines"][line]["person"];
        let got = (got["in"].as_u64().unwrap_or(0), got["out"].as_u64().unwrap_or(0));
        assert_eq!(got, (i, o), "{line}: {live}");
    }
    // one crossing's direction alternates by construction: never twice the same way in a row
    for (k, v) in &per_track {
        assert!(v.windows(2).all(|w| w[0].0 != w[1].0), "{k:?}: {v:?}");
    }
}
