//! Objects end to end (docs/architecture.md, "Events"): the real service, YOLOv8 and ByteTrack on clips
//! made with ffmpeg from the pedestrian sample, objects read back from a real Redis stream.
//! Every started object ends exactly once (lost, cut away, camera deleted, service shut down),
//! updates come only with a reason, people standing still keep one track each and turn
//! stationary after about five seconds, and `frame_detections: false` keeps the objects
//! while dropping the per-frame events.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The pedestrian sample: 768x576, 10 fps, people walking across a square.
fn walk() -> PathBuf {
    media("vtest_pedestrians_768x576.mp4")
}

/// Output flags of every fixture: H.264 that OpenCV's FFmpeg plays.
const H264: [&str; 7] = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"];

fn fixture(name: &str, args: &[&str]) -> PathBuf {
    let all: Vec<&str> = args.iter().chain(H264.iter()).copied().collect();
    ffmpeg_fixture(name, &all)
}

/// The first 20 s of the sample: people walk in, across and out.
fn walk_20s() -> PathBuf {
    let src = walk();
    fixture("objects_walk_20s.mp4", &["-i", src.to_str().unwrap(), "-t", "20"])
}

/// One frame of the sample (5 s in) held for 12 s at 10 fps: the same people, standing still.
fn still_12s() -> PathBuf {
    let src = walk();
    fixture("objects_still_12s.mp4", &["-ss", "5", "-i", src.to_str().unwrap(), "-vf", "trim=end_frame=1,tpad=stop_mode=clone:stop=119"])
}

/// Detected frames per second from which walkers in the sample are tracked (measured offline
/// with the library's tracker on the sample's detections: about half of the walkers' boxes get
/// a track at 2.5 fps, 97% at 10 fps, 17% at 1.25 fps).
const MIN_WALKER_FPS: f64 = 2.0;

/// Frames of [`cut_10s`] before the cut.
const CUT_AT_FRAME: u64 = 50;

/// 5 s of the sample, then a cut to 5 s of the bus photo (padded to 768x576): another scene,
/// with large people and a bus where the walkers were.
fn cut_10s() -> PathBuf {
    let (src, bus) = (walk(), media("bus.jpg"));
    fixture(
        "objects_cut_10s.mp4",
        &[
            "-i",
            src.to_str().unwrap(),
            "-loop",
            "1",
            "-framerate",
            "10",
            "-t",
            "5",
            "-i",
            bus.to_str().unwrap(),
            "-filter_complex",
            "[0:v]trim=end_frame=50,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[a];\
             [1:v]scale=768:576:force_original_aspect_ratio=decrease,pad=768:576:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=10,format=yuv420p[b];\
             [a][b]concat=n=2:v=1[v]",
            "-map",
            "[v]",
            "-r",
            "10",
        ],
    )
}

/// Every event of the stream, parsed, in stream order; `_published_ms` added: when Redis got it
/// (the entry id's milliseconds).
fn read_events(stream: &str) -> Vec<Value> {
    let mut conn = redis_conn();
    xrange(&mut conn, stream)
        .iter()
        .map(|(id, f)| {
            let mut e: Value = serde_json::from_str(&f["payload"]).unwrap();
            e["_published_ms"] = json!(id.split('-').next().unwrap().parse::<u64>().unwrap());
            e
        })
        .collect()
}

fn delete_stream(stream: &str) {
    let mut conn = redis_conn();
    let _: () = redis::cmd("DEL").arg(stream).query(&mut conn).unwrap();
}

fn of<'a>(events: &'a [Value], kind: &str, camera: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event_type"] == kind && e["camera_id"] == camera).collect()
}

/// Seconds since the epoch of an RFC 3339 UTC time with milliseconds (`...T03:04:05.123Z`).
fn secs(ts: &str) -> f64 {
    let p = |r: std::ops::Range<usize>| -> i64 { ts[r].parse().unwrap_or_else(|_| panic!("bad time {ts:?}")) };
    assert!(ts.len() == 24 && ts.ends_with('Z'), "bad time {ts:?}");
    let (y, m, d) = (p(0..4), p(5..7), p(8..10));
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (days * 86_400 + p(11..13) * 3600 + p(14..16) * 60 + p(17..19)) as f64 + p(20..23) as f64 / 1000.0
}

/// Checks a track id is `<camera>/<ms since the epoch, within the test>-<n >= 1>`.
fn check_track_id(id: &str, camera: &str, since_ms: u128) {
    let rest = id.strip_prefix(&format!("{camera}/")).unwrap_or_else(|| panic!("track_id {id:?} is not {camera}/..."));
    let (ms, n) = rest.split_once('-').unwrap_or_else(|| panic!("track_id {id:?} is not <camera>/<ms>-<n>"));
    let ms: u128 = ms.parse().unwrap_or_else(|_| panic!("track_id {id:?}: {ms:?} is not a number"));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("track_id {id:?}: {n:?} is not a number"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert!((since_ms..=now).contains(&ms), "track_id {id:?}: its start {ms} is not within the test ({since_ms}..{now})");
    assert!(n >= 1, "track_id {id:?}");
}

/// A camera's objects as the stream tells them: per track, its events in stream order.
struct Objects<'a> {
    tracks: BTreeMap<String, Vec<&'a Value>>,
}

impl<'a> Objects<'a> {
    fn of(events: &'a [Value], camera: &str) -> Self {
        let mut tracks: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for o in of(events, "object", camera) {
            tracks.entry(o["track_id"].as_str().expect("object events carry a track_id").to_string()).or_default().push(o);
        }
        Objects { tracks }
    }

    fn count(&self, lifecycle: &str) -> usize {
        self.tracks.values().flatten().filter(|o| o["lifecycle"] == lifecycle).count()
    }

    fn open(&self) -> usize {
        self.tracks.values().filter(|v| !v.iter().any(|o| o["lifecycle"] == "end")).count()
    }

    fn events(&self) -> usize {
        self.tracks.values().map(Vec::len).sum()
    }

    fn start(&self, id: &str) -> &'a Value {
        self.tracks[id].iter().find(|o| o["lifecycle"] == "start").unwrap()
    }

    fn end(&self, id: &str) -> Option<&'a Value> {
        self.tracks[id].iter().find(|o| o["lifecycle"] == "end").copied()
    }

    /// `stationary` and `moving` updates are changes of state: they alternate, starting with
    /// `stationary` (an object starts moving), and carry the new state.
    fn check_stationary_flips(&self) {
        for (id, evs) in &self.tracks {
            let mut stationary = false;
            for o in evs {
                match o["update_reason"].as_str() {
                    Some("stationary") => {
                        assert!(!stationary, "{id}: stationary twice without moving between: {o}");
                        stationary = true;
                    }
                    Some("moving") => {
                        assert!(stationary, "{id}: moving without having been stationary: {o}");
                        stationary = false;
                    }
                    _ if o["lifecycle"] == "start" => stationary = o["stationary"].as_bool().unwrap(),
                    _ => {}
                }
                assert_eq!(o["stationary"].as_bool(), Some(stationary), "{id}: the event carries the state: {o}");
            }
        }
    }

    /// The lifecycle contract, per track: one `start` first, one `end` last (when `ended`),
    /// `update`s between with a reason, the fields consistent.
    fn check(&self, camera: &str, since_ms: u128, ended: bool) {
        for (id, evs) in &self.tracks {
            check_track_id(id, camera, since_ms);
            let kinds: Vec<&str> = evs.iter().map(|o| o["lifecycle"].as_str().unwrap()).collect();
            assert_eq!(kinds[0], "start", "{id}: the first event is its start: {kinds:?}");
            assert_eq!(kinds.iter().filter(|k| **k == "start").count(), 1, "{id}: one start: {kinds:?}");
            let ends = kinds.iter().filter(|k| **k == "end").count();
            if ended {
                assert_eq!(ends, 1, "{id}: exactly one end: {kinds:?}");
                assert_eq!(*kinds.last().unwrap(), "end", "{id}: nothing after its end: {kinds:?}");
            } else {
                assert!(ends <= 1, "{id}: at most one end: {kinds:?}");
            }
            let mut last_seen = 0.0;
            for o in evs {
                let (first, last) = (secs(o["first_seen"].as_str().unwrap()), secs(o["last_seen"].as_str().unwrap()));
                assert!(first <= last, "{id}: first_seen <= last_seen: {o}");
                assert!(last >= last_seen, "{id}: last_seen never goes back: {o}");
                last_seen = last;
                assert!(o["duration_s"].as_f64().unwrap() >= 0.0, "{o}");
                assert!((o["duration_s"].as_f64().unwrap() - (last - first)).abs() < 0.01, "duration_s is last - first seen: {o}");
                assert_eq!(o["best"]["confidence"], o["confidence"], "confidence is the best sighting's: {o}");
                assert!(o["confidence"].as_f64().unwrap() >= 0.5, "a reported object reaches the camera's threshold: {o}");
                let reason = &o["update_reason"];
                if o["lifecycle"] == "update" {
                    let r = reason.as_str().unwrap_or_else(|| panic!("an update says why: {o}"));
                    assert!(["zone_enter", "zone_leave", "stationary", "moving", "plate", "class", "snapshot"].contains(&r), "{o}");
                } else {
                    assert!(reason.is_null(), "only updates carry a reason: {o}");
                }
                assert!(o["license_plate"].is_null(), "no ANPR here: {o}");
                let b = &o["bounding_box"];
                assert!(b["width"].as_f64().unwrap() > 0.0 && b["height"].as_f64().unwrap() > 0.0, "{o}");
            }
        }
    }
}

/// Track ids of a camera's detection events, with how many boxes carried each; and the boxes
/// without one (tentative tracks).
fn detection_track_ids(events: &[Value], camera: &str) -> (BTreeMap<String, usize>, usize) {
    let mut ids = BTreeMap::new();
    let mut none = 0;
    for e in of(events, "detection", camera) {
        for d in e["detections"].as_array().unwrap() {
            match d["track_id"].as_str() {
                Some(t) => *ids.entry(t.to_string()).or_insert(0) += 1,
                None => none += 1,
            }
        }
    }
    (ids, none)
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// Registers one file camera; `extra` parameters over motion off, 10 fps, no looping.
fn add_camera(addr: SocketAddr, id: &str, file: &std::path::Path, extra: Value) {
    let mut params = json!({"enable_motion_detection": false, "max_fps": 10, "loop_file": false, "file_realtime": true});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let cam = json!({"camera_id": id, "stream_url": file.to_str().unwrap(), "parameters": params});
    let r = post_json(addr, "/api/cameras", &cam);
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Waits until the camera's file has played to its end (the camera then waits to reconnect);
/// returns the camera as the API shows it.
fn wait_end_of_file(addr: SocketAddr, id: &str, timeout: Duration) -> Value {
    wait_for(timeout, &format!("camera {id} to reach the end of its file"), || {
        let c = get(addr, &format!("/api/cameras/{id}")).json();
        (c["state"] == "reconnecting" && c["last_error"].as_str().is_some_and(|e| e.contains("end of file"))).then_some(c)
    })
}

fn delete_camera(addr: SocketAddr, id: &str) {
    let r = http(addr, "DELETE", &format!("/api/cameras/{id}"), None, b"");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// 20 s of people walking in and out: every object starts once and ends once with the same
/// `track_id` (the ones that walk out while the camera runs, the rest when it is deleted);
/// updates only with a reason and on a change of state, so far fewer object events than tracked
/// boxes; every `track_id` well formed, each one on a detection box belongs to a started object
/// and each object is on detection boxes. (Walkers are asked for only when the detector manages
/// [`MIN_WALKER_FPS`]; the printed line says when it did not.)
#[test]
fn people_walking_start_and_end_once() {
    let clip = walk_20s();
    let since = now_ms();
    let cfg = test_config("objects-walk");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let t0 = Instant::now();
    add_camera(addr, "walk", &clip, json!({}));
    let cam = wait_end_of_file(addr, "walk", Duration::from_secs(60));
    let played = t0.elapsed();
    let before_delete = read_events(&stream);
    delete_camera(addr, "walk");
    svc.shutdown();
    let events = read_events(&stream);
    delete_stream(&stream);

    let objects = Objects::of(&events, "walk");
    objects.check("walk", since, true);
    let running = Objects::of(&before_delete, "walk");
    let detections = of(&events, "detection", "walk");
    let (det_ids, untracked) = detection_track_ids(&events, "walk");
    let boxes: usize = det_ids.values().sum();
    let updates: Vec<&str> = objects.tracks.values().flatten().filter_map(|o| o["update_reason"].as_str()).collect::<Vec<_>>();
    println!(
        "walk: played {played:?}, {} frames detected; {} detection events ({boxes} tracked boxes, {untracked} untracked); \
         {} objects: {} starts, {} updates {updates:?}, {} ends ({} while running); {} object events in all",
        cam["frames_detected"],
        detections.len(),
        objects.tracks.len(),
        objects.count("start"),
        objects.count("update"),
        objects.count("end"),
        running.count("end"),
        objects.events(),
    );
    let classes: BTreeSet<&str> = objects.tracks.values().map(|v| v[0]["class_name"].as_str().unwrap()).collect();
    println!("walk: classes {classes:?}");

    // Whatever the machine's speed: the two parked vehicles at the top and the person standing
    // mid-left are objects.
    assert!(objects.tracks.len() >= 3, "the parked vehicles and the standing person: {} objects", objects.tracks.len());
    assert!(running.open() >= 2, "objects still in view were open until the camera stopped: {}", running.open());
    // Walkers are tracked only when the detector sees the camera often enough: IoU association
    // loses a walker between detected frames much more than half a second apart (at 1 fps
    // only the still objects are tracked at all).
    let rate = cam["frames_detected"].as_f64().unwrap() / played.as_secs_f64();
    if rate >= MIN_WALKER_FPS {
        assert!(objects.tracks.len() >= 5, "people walk in and out of 20 s of this clip: {} objects", objects.tracks.len());
        assert!(running.count("end") >= 2, "people who walked out ended while the camera ran: {}", running.count("end"));
    } else {
        println!("walk: detector at {rate:.1} fps (< {MIN_WALKER_FPS}): too slow to track walkers, their checks skipped");
    }
    // Lifecycle, not per frame: an update is a change of state (checked below), so far fewer
    // than the boxes, which come every detected frame.
    assert!(
        objects.count("update") * 5 <= boxes && objects.events() < boxes,
        "objects are published on their lifecycle, not per frame: {} object events ({} updates) for {boxes} tracked boxes",
        objects.events(),
        objects.count("update"),
    );
    objects.check_stationary_flips();
    for (id, n) in &det_ids {
        check_track_id(id, "walk", since);
        assert!(objects.tracks.contains_key(id), "{id} is on {n} detection boxes but never started as an object");
    }
    for id in objects.tracks.keys() {
        assert!(det_ids.contains_key(id), "object {id} is on no detection box");
    }
}

/// Most boxes in one of a camera's detection events: the objects in view at once.
fn most_in_view(events: &[Value], camera: &str) -> usize {
    of(events, "detection", camera).iter().map(|e| e["detections"].as_array().unwrap().len()).max().unwrap_or(0)
}

/// One frame held for 12 s: the people standing in it keep one track each for the whole clip
/// (at most one object per box in view, no end and so no restart before the camera stops), and
/// each turns `stationary` with one `update` (reason `stationary`) about `STATIONARY_AFTER` (5 s)
/// after it was first seen, and never `moving`.
#[test]
fn standing_people_keep_one_track_and_turn_stationary() {
    let clip = still_12s();
    let since = now_ms();
    let cfg = test_config("objects-still");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    add_camera(addr, "still", &clip, json!({}));
    let cam = wait_end_of_file(addr, "still", Duration::from_secs(60));
    let before_delete = read_events(&stream);
    delete_camera(addr, "still");
    svc.shutdown();
    let events = read_events(&stream);
    delete_stream(&stream);

    let objects = Objects::of(&events, "still");
    objects.check("still", since, true);
    objects.check_stationary_flips();
    let running = Objects::of(&before_delete, "still");
    let in_view = most_in_view(&events, "still");
    let detections = of(&events, "detection", "still");
    let first_frame = secs(detections[0]["timestamp"].as_str().unwrap());
    let last_frame = secs(detections.last().unwrap()["timestamp"].as_str().unwrap());
    println!(
        "still: {} frames detected over {:.1} s, {in_view} boxes in view at most; {} objects, {} updates, {} ends while running",
        cam["frames_detected"],
        last_frame - first_frame,
        objects.tracks.len(),
        objects.count("update"),
        running.count("end")
    );
    // (on a loaded machine the first detections can come late; 7 s leave room for the flip)
    assert!(last_frame - first_frame >= 7.0, "the clip played about 12 s");
    assert!(objects.tracks.len() >= 4, "the frame shows several people: {} objects", objects.tracks.len());
    assert!(
        objects.tracks.len() <= in_view,
        "one track per object in view, no restarts: {} objects, {in_view} in view",
        objects.tracks.len()
    );
    assert_eq!(running.count("end"), 0, "nobody leaves a still scene: no end before the camera stops");
    let mut stationary_after = Vec::new();
    for (id, evs) in &objects.tracks {
        let first_seen = secs(evs[0]["first_seen"].as_str().unwrap());
        let confirmed = secs(evs[0]["last_seen"].as_str().unwrap());
        let flips: Vec<&&Value> = evs.iter().filter(|o| o["update_reason"] == "stationary").collect();
        assert!(evs.iter().all(|o| o["update_reason"] != "moving"), "{id}: a still picture never moves: {evs:?}");
        let end = objects.end(id).unwrap();
        assert!(secs(end["last_seen"].as_str().unwrap()) >= last_frame - 1.5, "{id}: seen until the clip's end: {end}");
        if confirmed - first_frame > 3.0 {
            continue; // confirmed late (a weak box): not enough clip left to be sure of the flip
        }
        assert_eq!(flips.len(), 1, "{id}: one flip to stationary: {evs:?}");
        let flipped = secs(flips[0]["last_seen"].as_str().unwrap());
        // The object is stationary once it has stood STATIONARY_AFTER (5 s) since its start
        // (the confirmed track's first frame): on the first detected frame from then on.
        let sightings: Vec<f64> = detections
            .iter()
            .filter(|e| e["detections"].as_array().unwrap().iter().any(|d| d["track_id"] == id.as_str()))
            .map(|e| secs(e["timestamp"].as_str().unwrap()))
            .collect();
        // (event times are wall-clock milliseconds, the service counts on the monotonic clock: a
        // sighting 5.000 s after the start may fall either side)
        let due: Vec<f64> = sightings.iter().copied().filter(|&t| t - confirmed >= 5.0 - 0.002).take(2).collect();
        assert!(flipped - confirmed >= 5.0 - 0.002, "{id}: stationary only after 5 s: {}", flips[0]);
        let first_chance = due.first() == Some(&flipped) || (due.get(1) == Some(&flipped) && due[0] - confirmed < 5.0 + 0.002);
        assert!(first_chance, "{id}: stationary on its first sighting 5 s after its start {sightings:?}: {}", flips[0]);
        stationary_after.push((flipped - first_seen, flipped - confirmed));
        assert_eq!(end["stationary"], true, "{id}: still stationary at its end: {end}");
    }
    println!("still: stationary after (first seen, start) {stationary_after:.2?} s");
    assert!(stationary_after.len() >= 2, "people present from the start: {stationary_after:?}");
}

/// 5 s of walkers, then a cut to the bus photo, with `TRACK_LOST_S` = 1 s: the walkers' objects
/// end while the camera still runs, about a second after the cut, their last sighting before
/// it; the new scene's objects start as new tracks, none carried over from the old scene.
#[test]
fn a_cut_ends_the_old_scene_and_starts_the_new() {
    let clip = cut_10s();
    let since = now_ms();
    let mut cfg = test_config("objects-cut");
    cfg.track_lost = Duration::from_secs(1);
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    add_camera(addr, "cut", &clip, json!({}));
    wait_end_of_file(addr, "cut", Duration::from_secs(60));
    let before_delete = read_events(&stream);
    delete_camera(addr, "cut");
    svc.shutdown();
    let events = read_events(&stream);
    delete_stream(&stream);

    let objects = Objects::of(&events, "cut");
    objects.check("cut", since, true);
    let running = Objects::of(&before_delete, "cut");
    let cut_time = of(&events, "detection", "cut")
        .iter()
        .find(|e| e["frame_number"].as_u64().unwrap() > CUT_AT_FRAME)
        .map(|e| secs(e["timestamp"].as_str().unwrap()))
        .expect("frames after the cut were detected");
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for id in objects.tracks.keys() {
        let start = objects.start(id);
        if start["frame_number"].as_u64().unwrap() <= CUT_AT_FRAME {
            old.push(id);
        } else {
            new.push(id);
        }
    }
    let detections = of(&events, "detection", "cut");
    let mut end_delays = Vec::new();
    for id in &old {
        let end = running.end(id).unwrap_or_else(|| panic!("{id} of the old scene ended while the camera ran"));
        assert!(end["frame_number"].as_u64().unwrap() <= CUT_AT_FRAME, "{id}: nothing after the cut is the old scene's: {end}");
        // It ends on the first detected frame TRACK_LOST_S after it was last seen: not before,
        // and published with that frame's detection event.
        let last_seen = secs(end["last_seen"].as_str().unwrap());
        let published = end["_published_ms"].as_u64().unwrap() as f64 / 1000.0;
        assert!(published - last_seen >= 1.0 - 0.01, "{id}: ended before TRACK_LOST_S (1 s) had passed: {end}");
        let due = detections
            .iter()
            .find(|e| secs(e["timestamp"].as_str().unwrap()) >= last_seen + 1.0 - 0.01)
            .unwrap_or_else(|| panic!("{id}: frames were detected a second after it was last seen"));
        let due_published = due["_published_ms"].as_u64().unwrap() as f64 / 1000.0;
        // (the frame that ends it is the first one detected *more* than TRACK_LOST_S later on
        // the monotonic clock: the next detected frame, which a loaded machine can delay)
        assert!(
            published <= due_published + 5.0,
            "{id}: ended {:.2} s after the first frame detected TRACK_LOST_S after its last sighting ({}): {end}",
            published - due_published,
            due["frame_number"]
        );
        end_delays.push(published - cut_time);
    }
    let new_classes: Vec<&str> = new.iter().map(|id| objects.start(id)["class_name"].as_str().unwrap()).collect();
    println!("cut: {} objects before the cut ended {end_delays:.2?} s after it; {} new after it: {new_classes:?}", old.len(), new.len());
    assert!(old.len() >= 2, "the walkers' scene has objects (the parked vehicles at least): {old:?}");
    assert!(new.len() >= 2, "the bus scene's people and bus start anew: {new_classes:?}");
    assert!(new_classes.contains(&"person"), "{new_classes:?}");
}

/// Two cameras on the looping walk: the deleted one's objects all end as it goes while the
/// other's stay open, and shutting the service down ends those; per camera and `track_id`,
/// one start and one end.
#[test]
fn objects_end_on_camera_delete_and_on_shutdown() {
    let clip = walk_20s();
    let since = now_ms();
    let cfg = test_config("objects-stop");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    for id in ["gone", "kept"] {
        add_camera(addr, id, &clip, json!({"loop_file": true, "max_fps": 5}));
    }
    wait_for(Duration::from_secs(60), "both cameras to have objects in view", || {
        let e = read_events(&stream);
        (Objects::of(&e, "gone").open() >= 2 && Objects::of(&e, "kept").open() >= 2).then_some(())
    });
    delete_camera(addr, "gone");
    let after_delete = wait_for(Duration::from_secs(20), "the deleted camera's objects to end", || {
        let e = read_events(&stream);
        (Objects::of(&e, "gone").open() == 0).then_some(e)
    });
    let kept_open = Objects::of(&after_delete, "kept").open();
    svc.shutdown();
    let events = read_events(&stream);
    delete_stream(&stream);

    let (gone, kept) = (Objects::of(&events, "gone"), Objects::of(&events, "kept"));
    println!(
        "stop: gone {} objects ({} ends); kept {} objects, {kept_open} open after the delete, {} ends after shutdown",
        gone.tracks.len(),
        gone.count("end"),
        kept.tracks.len(),
        kept.count("end")
    );
    assert!(kept_open >= 1, "the other camera's objects stay open after the delete");
    for (name, objects) in [("gone", &gone), ("kept", &kept)] {
        objects.check(name, since, true);
        assert_eq!(objects.count("start"), objects.count("end"), "{name}: every start has its end");
    }
    let after: usize = of(&events, "object", "gone").len();
    assert_eq!(after, of(&after_delete, "object", "gone").len(), "nothing of the deleted camera after its ends");
}

/// `frame_detections: false`: that camera publishes no `detection` event, yet its objects start
/// and end as on a camera with per-frame events playing the same clip.
#[test]
fn objects_flow_without_frame_detections() {
    let clip = walk_20s();
    let since = now_ms();
    let cfg = test_config("objects-no-frames");
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    add_camera(addr, "objects_only", &clip, json!({"frame_detections": false, "max_fps": 5}));
    add_camera(addr, "frames", &clip, json!({"max_fps": 5}));
    wait_for(Duration::from_secs(60), "objects of both cameras", || {
        let e = read_events(&stream);
        (Objects::of(&e, "objects_only").tracks.len() >= 2 && Objects::of(&e, "frames").tracks.len() >= 2).then_some(())
    });
    let cams = get(addr, "/api/cameras").json();
    svc.shutdown();
    let events = read_events(&stream);
    delete_stream(&stream);

    let (quiet, frames) = (Objects::of(&events, "objects_only"), Objects::of(&events, "frames"));
    quiet.check("objects_only", since, true);
    frames.check("frames", since, true);
    let detections = |c: &str| of(&events, "detection", c).len();
    println!(
        "frame_detections: objects_only {} objects, {} detection events; frames {} objects, {} detection events",
        quiet.tracks.len(),
        detections("objects_only"),
        frames.tracks.len(),
        detections("frames")
    );
    let quiet_cam = cams["cameras"].as_array().unwrap().iter().find(|c| c["camera_id"] == "objects_only").unwrap();
    assert!(quiet_cam["frames_detected"].as_u64().unwrap() > 0, "the detector still runs: {quiet_cam}");
    assert_eq!(detections("objects_only"), 0, "frame_detections false: no detection events");
    assert!(detections("frames") > 0);
}
