//! Tracker scenarios on synthetic boxes: each test's doc says what it proves.

use super::*;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// A clock of detected frames at 10 fps (the default `frame_interval`).
struct Clock {
    t0: Instant,
    wall0: SystemTime,
}

impl Clock {
    fn new() -> Self {
        Clock { t0: Instant::now(), wall0: SystemTime::now() }
    }

    /// Frame `n` of a 10 fps stream.
    fn frame(&self, n: u64) -> FrameStamp {
        let d = Duration::from_millis(100) * n as u32;
        FrameStamp { frame_number: n, captured: self.t0 + d, captured_at: self.wall0 + d }
    }
}

fn person(cx: f32, cy: f32, confidence: f32) -> TrackInput {
    TrackInput { class_id: 0, confidence, bbox: [cx - 20.0, cy - 50.0, cx + 20.0, cy + 50.0] }
}

/// Every lifecycle event of a run, checked for consistency at the end.
#[derive(Default)]
struct Log {
    started: Vec<u64>,
    ended: Vec<(u64, EndReason)>,
    class_changed: Vec<ClassChange>,
}

impl Log {
    fn take(&mut self, out: &TrackOutput) {
        self.started.extend(&out.started);
        self.ended.extend(out.ended.iter().map(|e| (e.track.id(), e.reason)));
        self.class_changed.extend(&out.class_changed);
    }

    fn ended_ids(&self) -> Vec<u64> {
        self.ended.iter().map(|e| e.0).collect()
    }
}

/// Two people walking towards each other on nearly the same line cross with boxes
/// overlapping up to IoU 0.74 and each keeps its id: the Kalman prediction carries them through.
#[test]
fn crossing_objects_keep_ids() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut ids: HashMap<usize, Vec<u64>> = HashMap::new();
    let mut log = Log::default();
    for n in 0..60u64 {
        let x = n as f32 * 8.0;
        let dets = [person(100.0 + x, 200.0, 0.85), person(572.0 - x, 215.0, 0.8)];
        let out = tr.update(&dets, clock.frame(n));
        log.take(&out);
        for (k, a) in out.assigned.iter().enumerate() {
            if let Some(id) = a {
                ids.entry(k).or_default().push(*id);
            }
        }
    }
    assert_eq!(log.started, vec![1, 2], "two tracks, started once each");
    for (k, v) in &ids {
        assert_eq!(v.len(), 58, "person {k} assigned from the third frame on");
        assert!(v.iter().all(|id| *id == v[0]), "person {k} switched ids: {v:?}");
    }
    assert_ne!(ids[&0][0], ids[&1][0]);
    assert!(log.ended.is_empty());
}

/// A detection on one frame only (or two, with `min_hits` 3) never starts a track and is never
/// assigned an id; its tentative track ends silently.
#[test]
fn a_blip_never_starts() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    let out = tr.update(&[person(100.0, 100.0, 0.95)], clock.frame(0));
    assert_eq!(out.assigned, vec![None]);
    for n in 1..40 {
        let out = tr.update(&[], clock.frame(n));
        assert!(out.started.is_empty() && out.ended.is_empty());
    }
    // two consecutive frames, then gone
    tr.update(&[person(300.0, 100.0, 0.95)], clock.frame(40));
    let out = tr.update(&[person(301.0, 100.0, 0.95)], clock.frame(41));
    assert_eq!(out.assigned, vec![None], "not confirmed after 2 of 3 hits");
    for n in 42..80 {
        let out = tr.update(&[], clock.frame(n));
        assert!(out.started.is_empty() && out.ended.is_empty());
    }
    assert_eq!(tr.tracks().count(), 0);
    assert!(tr.end_all().is_empty());
    // a detection below new_track_thresh starts nothing either, however often it comes
    for n in 80..90 {
        let out = tr.update(&[person(300.0, 100.0, 0.55)], clock.frame(n));
        assert!(out.started.is_empty() && out.assigned == vec![None]);
    }
}

/// The third consecutive hit confirms: `started` then, the id on that frame's detection.
#[test]
fn third_hit_confirms() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    assert!(tr.update(&[person(100.0, 100.0, 0.9)], clock.frame(0)).started.is_empty());
    assert!(tr.update(&[person(102.0, 100.0, 0.9)], clock.frame(1)).started.is_empty());
    let out = tr.update(&[person(104.0, 100.0, 0.9)], clock.frame(2));
    assert_eq!(out.started, vec![1]);
    assert_eq!(out.assigned, vec![Some(1)]);
    let t = tr.track(1).unwrap();
    assert_eq!((t.hits(), t.first().stamp.frame_number, t.last().stamp.frame_number), (3, 0, 2));
    // min_hits 1: the first detection confirms
    let mut one = Tracker::new(TrackerConfig { min_hits: 1, ..TrackerConfig::default() });
    assert_eq!(one.update(&[person(100.0, 100.0, 0.9)], clock.frame(0)).assigned, vec![Some(1)]);
}

/// A track survives a gap of detected frames without it shorter than `lost_timeout`, and any
/// stretch of frames that were not detected at all; detected frames without it for longer than
/// `lost_timeout` end it exactly once (`Lost`), and the object then gets a new id.
#[test]
fn gap_shorter_than_timeout_survives_longer_ends() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut log = Log::default();
    let here = person(300.0, 200.0, 0.9);
    for n in 0..5 {
        log.take(&tr.update(&[here], clock.frame(n)));
    }
    // 2.9 s of detected frames with nothing found: lost, not ended
    for n in 5..34 {
        log.take(&tr.update(&[], clock.frame(n)));
        assert!(tr.track(1).unwrap().is_lost());
    }
    let out = tr.update(&[here], clock.frame(34));
    log.take(&out);
    assert_eq!(out.assigned, vec![Some(1)], "re-found after 2.9 s");
    // 2.9 s with no detected frame at all (no motion): still the same track
    let out = tr.update(&[here], clock.frame(63));
    log.take(&out);
    assert_eq!(out.assigned, vec![Some(1)], "same track after 2.9 s undetected");
    // 3.1 s with no detected frame at all: aging counts detected frames, so the same track
    let out = tr.update(&[here], clock.frame(94));
    log.take(&out);
    assert_eq!(out.assigned, vec![Some(1)], "same track after 3.1 s undetected");
    // 3.1 s of detected frames without it: ended exactly once, and the object starts anew
    for n in 95..126 {
        log.take(&tr.update(&[], clock.frame(n)));
    }
    for n in 126..129 {
        log.take(&tr.update(&[here], clock.frame(n)));
    }
    assert_eq!(log.started, vec![1, 2]);
    assert_eq!(log.ended, vec![(1, EndReason::Lost)]);
    // expire() on a tick ends a track on time while no frame is detected
    let ended = tr.expire(clock.frame(128).captured + Duration::from_millis(3000));
    assert!(ended.is_empty(), "exactly lost_timeout is not over it");
    let ended = tr.expire(clock.frame(128).captured + Duration::from_millis(3001));
    assert_eq!(ended.iter().map(|e| (e.track.id(), e.reason)).collect::<Vec<_>>(), vec![(2, EndReason::Lost)]);
    assert_eq!(ended[0].track.last().stamp.frame_number, 128);
    assert!(tr.end_all().is_empty(), "ended once, never again");
}

/// A person standing still (with detector jitter) while no frame is detected for 2.5 s at a
/// time keeps one track over 20 s.
#[test]
fn standing_still_through_undetected_stretches() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut log = Log::default();
    let jitter = |n: u64| ((n * 7919) % 11) as f32 - 5.0;
    let mut n = 0;
    while n < 200 {
        // five detected frames, then 25 frames (2.5 s) without detection
        for k in n..n + 5 {
            let out = tr.update(&[person(400.0 + jitter(k), 300.0 + jitter(k + 3) / 2.0, 0.7)], clock.frame(k));
            log.take(&out);
            if k >= 2 {
                assert_eq!(out.assigned, vec![Some(1)], "frame {k}");
            }
        }
        n += 30;
    }
    assert_eq!(log.started, vec![1]);
    assert!(log.ended.is_empty());
}

/// Prediction uses the real time between detected frames: an object moving 15 px per frame
/// (its box is 40 px wide) detected only every fifth frame keeps its track, because the
/// prediction moves it 75 px. Predicting one step per detected frame would lose it.
#[test]
fn prediction_uses_elapsed_time() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut log = Log::default();
    for n in 0..20u64 {
        log.take(&tr.update(&[person(50.0 + 15.0 * n as f32, 200.0, 0.9)], clock.frame(n)));
    }
    for n in (20..80u64).step_by(5) {
        let out = tr.update(&[person(50.0 + 15.0 * n as f32, 200.0, 0.9)], clock.frame(n));
        log.take(&out);
        assert_eq!(out.assigned, vec![Some(1)], "frame {n}");
    }
    assert_eq!(log.started, vec![1]);
    let t = tr.track(1).unwrap();
    let off = (t.bbox()[0] - t.last().bbox[0]).abs();
    assert!(off < 5.0, "filtered box close to the detection: {:?} vs {:?}", t.bbox(), t.last().bbox);
}

/// ByteTrack's point: when a person's score drops below `high_thresh` (occluded, blurred) the
/// low-score boxes keep the track alive through step 2. With those boxes ignored (low_thresh
/// raised above them) the same input ends the track and starts a new one.
#[test]
fn low_score_detections_keep_a_track_alive() {
    let run = |low_thresh: f32| {
        let clock = Clock::new();
        let mut tr = Tracker::new(TrackerConfig { low_thresh, ..TrackerConfig::default() });
        let mut log = Log::default();
        let mut assigned = Vec::new();
        for n in 0..80u64 {
            // confident for 5 frames, then 0.3 for 4 s (longer than lost_timeout), then confident
            let conf = if (5..45).contains(&n) { 0.3 } else { 0.9 };
            let out = tr.update(&[person(100.0 + 3.0 * n as f32, 200.0, conf)], clock.frame(n));
            log.take(&out);
            assigned.push(out.assigned[0]);
        }
        (log, assigned)
    };
    let (log, assigned) = run(0.1);
    assert_eq!(log.started, vec![1]);
    assert!(log.ended.is_empty());
    assert!(assigned[2..].iter().all(|a| *a == Some(1)), "{assigned:?}");
    let (log, _) = run(0.35);
    assert_eq!(log.started, vec![1, 2], "without low boxes the track is lost and restarts");
    assert_eq!(log.ended, vec![(1, EndReason::Lost)]);
}

/// Association is class-agnostic: a car the detector calls truck on some frames keeps one id.
/// The class is the highest summed confidence: occasional truck frames do not change it;
/// when truck takes over, one `class_changed` says so.
#[test]
fn class_flip_keeps_one_id() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut log = Log::default();
    let (car, truck) = (2, 7);
    let vehicle = |n: u64, class_id: usize, confidence: f32| TrackInput {
        class_id,
        confidence,
        bbox: [100.0 + 5.0 * n as f32, 300.0, 260.0 + 5.0 * n as f32, 400.0],
    };
    for n in 0..20u64 {
        let class_id = if n % 3 == 1 { truck } else { car };
        let out = tr.update(&[vehicle(n, class_id, 0.7)], clock.frame(n));
        log.take(&out);
        if n >= 2 {
            assert_eq!(out.assigned, vec![Some(1)], "frame {n}");
        }
    }
    assert_eq!(tr.track(1).unwrap().class_id(), car);
    assert!(log.class_changed.is_empty());
    for n in 20..40u64 {
        log.take(&tr.update(&[vehicle(n, truck, 0.9)], clock.frame(n)));
    }
    assert_eq!(log.started, vec![1]);
    assert_eq!(log.class_changed, vec![ClassChange { id: 1, from: car, to: truck }]);
    let t = tr.track(1).unwrap();
    assert_eq!((t.class_id(), t.best().confidence, t.best().stamp.frame_number), (truck, 0.9, 20));
}

/// `end_all` ends every confirmed track exactly once, tracked or lost; over a busy run with
/// objects coming and going every started track ends exactly once (by timeout or `end_all`)
/// and nothing that never started ends.
#[test]
fn every_started_track_ends_exactly_once() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut log = Log::default();
    for n in 0..300u64 {
        let mut dets = Vec::new();
        for k in 0..12u64 {
            // object k is present for a stretch depending on k, on its own row, moving right;
            // some only for a frame or two (blips)
            let start = k * 20;
            let len = [1, 2, 40, 70, 5, 120, 33, 2, 90, 15, 60, 4][k as usize];
            if n >= start && n < start + len {
                let x = 20.0 + 4.0 * (n - start) as f32;
                dets.push(person(x, 60.0 + 110.0 * (k % 5) as f32 + 8.0 * (k / 5) as f32, 0.5 + 0.04 * k as f32));
            }
        }
        let out = tr.update(&dets, clock.frame(n));
        log.take(&out);
    }
    let final_ended = tr.end_all();
    assert!(final_ended.iter().all(|e| e.reason == EndReason::Stopped));
    log.ended.extend(final_ended.iter().map(|e| (e.track.id(), e.reason)));
    let mut ended = log.ended_ids();
    ended.sort_unstable();
    let mut started = log.started.clone();
    started.sort_unstable();
    assert_eq!(started, ended, "each started track ends exactly once");
    assert!(started.len() >= 6, "started: {started:?}");
    assert!(tr.end_all().is_empty());
    assert_eq!(tr.tracks().count(), 0);
    // a tracked and a lost track both end on end_all
    let mut tr = Tracker::new(TrackerConfig::default());
    for n in 0..3 {
        tr.update(&[person(100.0, 100.0, 0.9), person(500.0, 100.0, 0.9)], clock.frame(n));
    }
    tr.update(&[person(100.0, 100.0, 0.9)], clock.frame(3));
    assert_eq!(tr.tracks().filter(|t| t.is_lost()).count(), 1);
    let mut ids: Vec<u64> = tr.end_all().iter().map(|e| e.track.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
}

/// Detections that are not boxes (no area, NaN) or under `low_thresh` are ignored.
#[test]
fn invalid_and_weak_detections_are_ignored() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig { min_hits: 1, ..TrackerConfig::default() });
    let dets = [
        TrackInput { class_id: 0, confidence: 0.9, bbox: [10.0, 10.0, 10.0, 50.0] },
        TrackInput { class_id: 0, confidence: 0.9, bbox: [10.0, 10.0, f32::NAN, 50.0] },
        TrackInput { class_id: 0, confidence: f32::NAN, bbox: [10.0, 10.0, 20.0, 50.0] },
        person(200.0, 200.0, 0.05),
        person(400.0, 200.0, 0.9),
    ];
    let out = tr.update(&dets, clock.frame(0));
    assert_eq!(out.assigned, vec![None, None, None, None, Some(1)]);
}

/// ByteTrack's duplicate removal: a lost track whose prediction coasts onto a tracked one
/// (IoU > 0.85) is the same object twice; the one seen for longer stays, the younger ends once
/// with `Duplicate` and its detection loses its id on that frame.
#[test]
fn duplicate_of_a_lost_track_ends_the_younger() {
    let clock = Clock::new();
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut log = Log::default();
    let mut dup_frame = None;
    for n in 0..40u64 {
        let mut dets = Vec::new();
        if n < 30 {
            dets.push(person(100.0 + 10.0 * n as f32, 200.0, 0.9)); // A walks right, then vanishes
        }
        if n >= 25 {
            dets.push(person(440.0, 200.0, 0.9)); // B stands where A's prediction will arrive
        }
        let out = tr.update(&dets, clock.frame(n));
        if out.ended.iter().any(|e| e.reason == EndReason::Duplicate) {
            dup_frame.get_or_insert(n);
            assert_eq!(out.assigned.last(), Some(&None), "the dropped track's detection has no id");
        }
        log.take(&out);
    }
    assert_eq!(log.started, vec![1, 2]);
    assert_eq!(log.ended, vec![(2, EndReason::Duplicate)], "B (younger) ends; A stays");
    assert_eq!(dup_frame, Some(34), "when A's prediction reaches B");
    assert!(tr.track(1).is_some());
}
