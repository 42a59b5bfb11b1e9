//! [`Tracker`]: ByteTrack's association (`BYTETracker.update`) over one camera's detections.
//!
//! Per detected frame: end the tracks not seen for `lost_timeout`, predict every confirmed
//! track (tentative ones keep their last box, as in ByteTrack), then
//! 1. high-score detections (`>= high_thresh`) vs tracked and lost tracks, fused IoU-score cost,
//!    threshold `match_thresh`;
//! 2. low-score detections (`>= low_thresh`) vs the tracks of step 1 that were tracked (not lost)
//!    and stayed unmatched, plain IoU cost, threshold 0.5: this is ByteTrack's point, a person
//!    half hidden behind another scores low but keeps its track instead of being lost;
//!    tracks still unmatched become lost;
//! 3. tentative tracks vs the high detections left, fused cost, threshold 0.7; a tentative
//!    track that misses a frame is dropped;
//! 4. high detections still left with `score >= new_track_thresh` start tentative tracks;
//! 5. a tracked track lying on a lost one (IoU > 0.85) is a duplicate: the younger goes.
//!
//! Differences from ByteTrack, all for a service that detects only some frames:
//! - Time, not frame counts: the Kalman predict uses the real time since the track's state was
//!   last moved, in units of `frame_interval` (motion extrapolated for at most `MAX_COAST`),
//!   and a track ends when it has not been seen for `lost_timeout`. Frames that were not
//!   detected do not age anything.
//! - A track is confirmed after `min_hits` consecutive detected frames (ByteTrack: 2;
//!   supervision's `minimum_consecutive_frames`), and only then gets an id, so ids count
//!   confirmed tracks only and a one-frame blip is never seen outside.
//! - Lifecycle bookkeeping ByteTrack leaves to the caller: every confirmed track ends exactly
//!   once ([`EndReason`]), the class is a confidence-weighted vote, and the first, last and best
//!   sightings are kept.
//!
//! Association is class-agnostic: a car the detector calls a truck on some frames keeps its
//! track (and its class is the one with the highest summed confidence).

use super::assign::{iou_cost, linear_assignment};
use super::kalman::{tlbr_to_xyah, KalmanBox};
use crate::infer::{iou, RawDetection};
use crate::pipeline::frame::Frame;
use std::time::{Duration, Instant, SystemTime};

/// Step 2's IoU cost threshold (ByteTrack hard-codes it too).
const LOW_MATCH_THRESH: f32 = 0.5;
/// Step 3's fused cost threshold (ByteTrack hard-codes it too).
const UNCONFIRMED_MATCH_THRESH: f32 = 0.7;
/// Step 5: a tracked and a lost track closer than this IoU cost are one object (ByteTrack's
/// `remove_duplicate_stracks`; supervision uses 0.05).
const DUPLICATE_COST: f32 = 0.15;

/// The longest stretch without a detected frame over which a track's velocity is extrapolated.
/// Long stretches are mostly a still scene the motion gate skipped, and a velocity learnt from
/// a few jittery boxes, run on for seconds, would carry a standing person's box away from them.
/// A track lost on detected frames (occluded) still coasts all the way, as in ByteTrack: each
/// of those predicts covers one frame interval.
const MAX_COAST: Duration = Duration::from_millis(500);

/// Tracker parameters. ByteTrack's defaults (MOT17), with `lost_timeout` = `TRACK_LOST_S`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this score take part in the first association and may start
    /// tracks (ByteTrack `track_thresh`). Default 0.5, the cameras' default confidence.
    pub high_thresh: f32,
    /// Detections below `high_thresh` but at or above this only keep existing tracks alive
    /// (step 2); below it they are ignored. Default 0.1.
    pub low_thresh: f32,
    /// An unmatched high detection starts a tentative track only from this score
    /// (ByteTrack `det_thresh = track_thresh + 0.1`). Default 0.6.
    pub new_track_thresh: f32,
    /// Step 1 pairs a track and a detection only when `1 - IoU * score` is below this
    /// (ByteTrack `match_thresh`). Default 0.8.
    pub match_thresh: f32,
    /// Consecutive detected frames a tentative track needs to be confirmed (and get an id).
    /// Default 3; 1 confirms on the first detection; 0 counts as 1.
    pub min_hits: u32,
    /// A confirmed track not seen for longer than this ends (`TRACK_LOST_S`). Default 3 s.
    pub lost_timeout: Duration,
    /// The time step that the Kalman velocities and ByteTrack's per-frame noise weights count
    /// in; a gap of `k` intervals between detected frames predicts `k` steps. Default 100 ms
    /// (10 fps); zero counts as the default.
    pub frame_interval: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            high_thresh: 0.5,
            low_thresh: 0.1,
            new_track_thresh: 0.6,
            match_thresh: 0.8,
            min_hits: 3,
            lost_timeout: Duration::from_secs(3),
            frame_interval: Duration::from_millis(100),
        }
    }
}

/// One detection handed to the tracker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackInput {
    pub class_id: usize,
    pub confidence: f32,
    /// `[x1, y1, x2, y2]` in pixels. Boxes with no area or non-finite numbers are ignored.
    pub bbox: [f32; 4],
}

impl From<&RawDetection> for TrackInput {
    fn from(d: &RawDetection) -> Self {
        TrackInput { class_id: d.class_id, confidence: d.confidence, bbox: d.bbox }
    }
}

/// Which frame an update is for: the monotonic time ages tracks; the number and wall-clock
/// time are only kept in [`Sighting`]s for the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStamp {
    pub frame_number: u64,
    /// Monotonic capture time: all aging and prediction use this.
    pub captured: Instant,
    /// Wall-clock capture time.
    pub captured_at: SystemTime,
}

impl From<&Frame> for FrameStamp {
    fn from(f: &Frame) -> Self {
        FrameStamp { frame_number: f.frame_number, captured: f.captured, captured_at: f.captured_at }
    }
}

/// One detection as it was assigned to a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sighting {
    pub stamp: FrameStamp,
    pub class_id: usize,
    pub confidence: f32,
    /// The detector's box, `[x1, y1, x2, y2]` pixels (not the filtered one).
    pub bbox: [f32; 4],
}

/// A confirmed track, as [`Tracker::tracks`] and [`EndedTrack`] show it.
#[derive(Debug, Clone)]
pub struct Track {
    /// 0 while tentative: tentative tracks are never handed out.
    id: u64,
    kf: KalmanBox,
    /// The instant `kf` describes.
    kf_at: Instant,
    lost: bool,
    hits: u32,
    class_id: usize,
    /// Summed confidence per class id: the vote behind `class_id`.
    class_votes: Vec<(usize, f32)>,
    first: Sighting,
    last: Sighting,
    best: Sighting,
}

impl Track {
    fn new(det: &TrackInput, stamp: FrameStamp) -> Self {
        let s = Sighting { stamp, class_id: det.class_id, confidence: det.confidence, bbox: det.bbox };
        Track {
            id: 0,
            kf: KalmanBox::initiate(tlbr_to_xyah(&det.bbox)),
            kf_at: stamp.captured,
            lost: false,
            hits: 1,
            class_id: det.class_id,
            class_votes: vec![(det.class_id, det.confidence)],
            first: s,
            last: s,
            best: s,
        }
    }

    /// Track id, unique within its tracker (counts from 1, never reused).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The class with the highest summed confidence over the track's detections.
    pub fn class_id(&self) -> usize {
        self.class_id
    }

    /// The Kalman box `[x1, y1, x2, y2]`: filtered while tracked, predicted while lost.
    pub fn bbox(&self) -> [f32; 4] {
        self.kf.tlbr()
    }

    /// Whether the last detected frame missed it (it may come back until `lost_timeout`).
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Detections assigned to it, in all.
    pub fn hits(&self) -> u32 {
        self.hits
    }

    /// Its first detection (`first_seen` is `first().stamp`).
    pub fn first(&self) -> &Sighting {
        &self.first
    }

    /// Its latest detection (`last_seen` is `last().stamp`).
    pub fn last(&self) -> &Sighting {
        &self.last
    }

    /// Its most confident detection (the first of equals).
    pub fn best(&self) -> &Sighting {
        &self.best
    }

    /// Time from the first to the last detection.
    pub fn duration(&self) -> Duration {
        self.last.stamp.captured.saturating_duration_since(self.first.stamp.captured)
    }

    /// Moves the state to `now` (ByteTrack zeroes a lost track's height velocity first). Motion
    /// is extrapolated for at most `MAX_COAST`; beyond it only the uncertainty grows.
    fn predict(&mut self, now: Instant, frame_interval: Duration) {
        if self.lost {
            self.kf.mean[7] = 0.0;
        }
        let elapsed = now.saturating_duration_since(self.kf_at);
        let steps = |d: Duration| d.as_secs_f64() / frame_interval.as_secs_f64();
        self.kf.predict(steps(elapsed.min(MAX_COAST)));
        self.kf.add_process_noise(steps(elapsed.saturating_sub(MAX_COAST)));
        self.kf_at = now;
    }

    /// Takes a detection; returns `(from, to)` when that changes the class.
    fn observe(&mut self, det: &TrackInput, stamp: FrameStamp) -> Option<(usize, usize)> {
        self.kf.update(tlbr_to_xyah(&det.bbox));
        self.kf_at = stamp.captured;
        self.lost = false;
        self.hits += 1;
        self.last = Sighting { stamp, class_id: det.class_id, confidence: det.confidence, bbox: det.bbox };
        if det.confidence > self.best.confidence {
            self.best = self.last;
        }
        let votes = match self.class_votes.iter_mut().find(|(c, _)| *c == det.class_id) {
            Some((_, v)) => {
                *v += det.confidence;
                *v
            }
            None => {
                self.class_votes.push((det.class_id, det.confidence));
                det.confidence
            }
        };
        let current = self.class_votes.iter().find(|(c, _)| *c == self.class_id).map_or(0.0, |(_, v)| *v);
        if det.class_id != self.class_id && votes > current {
            let from = std::mem::replace(&mut self.class_id, det.class_id);
            return Some((from, det.class_id));
        }
        None
    }
}

/// Why a confirmed track ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Not seen for longer than `lost_timeout`.
    Lost,
    /// ByteTrack's duplicate removal: it lay on an older track (the other keeps the object).
    Duplicate,
    /// [`Tracker::end_all`]: the camera stopped.
    Stopped,
}

/// A confirmed track that ended, with its final state.
#[derive(Debug, Clone)]
pub struct EndedTrack {
    pub track: Track,
    pub reason: EndReason,
}

/// A confirmed track whose voted class changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassChange {
    pub id: u64,
    pub from: usize,
    pub to: usize,
}

/// What one [`Tracker::update`] did.
#[derive(Debug, Clone, Default)]
pub struct TrackOutput {
    /// Per input detection, in input order: the confirmed track it belongs to after this
    /// update (`None`: unmatched, below `low_thresh`, invalid, or its track is tentative).
    pub assigned: Vec<Option<u64>>,
    /// Tracks confirmed by this update, in id order.
    pub started: Vec<u64>,
    /// Tracks that ended in this update (timeouts are checked before matching).
    pub ended: Vec<EndedTrack>,
    /// Confirmed tracks whose class changed (not ones started or ended in this update).
    pub class_changed: Vec<ClassChange>,
}

/// One camera's tracker. Feed it every frame that went through the detector, in capture order.
pub struct Tracker {
    cfg: TrackerConfig,
    /// Tentative, tracked and lost tracks, oldest first.
    tracks: Vec<Track>,
    /// The last id given out.
    last_id: u64,
}

impl Tracker {
    /// A tracker with no tracks. `min_hits` 0 counts as 1, a zero `frame_interval` as 100 ms.
    pub fn new(mut cfg: TrackerConfig) -> Self {
        cfg.min_hits = cfg.min_hits.max(1);
        if cfg.frame_interval.is_zero() {
            cfg.frame_interval = TrackerConfig::default().frame_interval;
        }
        Tracker { cfg, tracks: Vec::new(), last_id: 0 }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Confirmed tracks, tracked and lost, oldest first.
    pub fn tracks(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(|t| t.id != 0)
    }

    /// A confirmed track by id.
    pub fn track(&self, id: u64) -> Option<&Track> {
        if id == 0 {
            return None;
        }
        self.tracks.iter().find(|t| t.id == id)
    }

    /// Tracks one detected frame (see the module doc for the steps). `dets` are all of the
    /// frame's detections down to `low_thresh`, before any camera class or zone filter.
    pub fn update(&mut self, dets: &[TrackInput], stamp: FrameStamp) -> TrackOutput {
        let mut u = Update {
            dets,
            stamp,
            owner: vec![None; dets.len()],
            drop: vec![false; self.tracks.len()],
            out: TrackOutput { assigned: vec![None; dets.len()], ..Default::default() },
        };
        let valid = |d: &TrackInput| {
            d.confidence.is_finite() && d.bbox.iter().all(|v| v.is_finite()) && d.bbox[2] > d.bbox[0] && d.bbox[3] > d.bbox[1]
        };
        let (high_thresh, low_thresh) = (self.cfg.high_thresh, self.cfg.low_thresh);
        let high: Vec<usize> = (0..dets.len()).filter(|&i| valid(&dets[i]) && dets[i].confidence >= high_thresh).collect();
        let low: Vec<usize> =
            (0..dets.len()).filter(|&i| valid(&dets[i]) && dets[i].confidence < high_thresh && dets[i].confidence >= low_thresh).collect();

        let (pool_left, high_left) = self.associate_confirmed(&mut u, &high);
        self.associate_low(&mut u, &pool_left, &low);
        let high_left = self.associate_tentative(&mut u, &high_left);
        self.start_tentative(&mut u, &high_left);
        self.remove_duplicates(&mut u);
        self.finish(u)
    }

    /// Step 1: predicts the confirmed tracks (tracked ones first, then lost, as ByteTrack joins
    /// them) and pairs them with the high detections. Returns the tracks and the high
    /// detections left unpaired.
    fn associate_confirmed(&mut self, u: &mut Update, high: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let mut pool: Vec<usize> = (0..self.tracks.len()).filter(|&t| self.tracks[t].id != 0 && !self.tracks[t].lost).collect();
        pool.extend((0..self.tracks.len()).filter(|&t| self.tracks[t].lost));
        for &t in &pool {
            self.tracks[t].predict(u.stamp.captured, self.cfg.frame_interval);
        }
        let pairs = self.pair(&pool, u.dets, high, true, self.cfg.match_thresh);
        let (pool_left, high_left) = unpaired(&pairs, &pool, high);
        for (t, i) in pairs {
            self.observe(u, t, i, true);
        }
        (pool_left, high_left)
    }

    /// Step 2: the tracks left that were tracked (not lost) vs the low detections; the tracks
    /// still unpaired become lost.
    fn associate_low(&mut self, u: &mut Update, pool_left: &[usize], low: &[usize]) {
        let tracked: Vec<usize> = pool_left.iter().copied().filter(|&t| !self.tracks[t].lost).collect();
        let pairs = self.pair(&tracked, u.dets, low, false, LOW_MATCH_THRESH);
        let (missed, _) = unpaired(&pairs, &tracked, low);
        for (t, i) in pairs {
            self.observe(u, t, i, true);
        }
        for t in missed {
            self.tracks[t].lost = true;
        }
    }

    /// Step 3: tentative tracks vs the high detections left; a tentative track that gets none
    /// is dropped, one that reaches `min_hits` is confirmed. Returns the detections left.
    fn associate_tentative(&mut self, u: &mut Update, high_left: &[usize]) -> Vec<usize> {
        let tentative: Vec<usize> = (0..self.tracks.len()).filter(|&t| self.tracks[t].id == 0).collect();
        let pairs = self.pair(&tentative, u.dets, high_left, true, UNCONFIRMED_MATCH_THRESH);
        let (missed, left) = unpaired(&pairs, &tentative, high_left);
        for (t, i) in pairs {
            // class changes while tentative are not news: the start carries the class
            self.observe(u, t, i, false);
            if self.tracks[t].hits >= self.cfg.min_hits {
                self.confirm(u, t);
            }
        }
        for t in missed {
            u.drop[t] = true;
        }
        left
    }

    /// Step 4: tentative tracks from the high detections left that reach `new_track_thresh`.
    fn start_tentative(&mut self, u: &mut Update, high_left: &[usize]) {
        let thresh = self.cfg.new_track_thresh;
        for &i in high_left.iter().filter(|&&i| u.dets[i].confidence >= thresh) {
            self.tracks.push(Track::new(&u.dets[i], u.stamp));
            let t = self.tracks.len() - 1;
            u.drop.push(false);
            u.owner[i] = Some(t);
            if self.cfg.min_hits <= 1 {
                self.confirm(u, t);
            }
        }
    }

    /// Step 5: a tracked and a lost track with IoU > 0.85 are one object; the one seen for
    /// longer stays (the tracked one on a tie). All pairs are judged before any goes.
    fn remove_duplicates(&mut self, u: &mut Update) {
        let tracked: Vec<usize> = (0..self.tracks.len()).filter(|&a| !u.drop[a] && !self.tracks[a].lost).collect();
        let lost: Vec<usize> = (0..self.tracks.len()).filter(|&b| self.tracks[b].lost).collect();
        let mut duplicates = Vec::new();
        for &a in &tracked {
            for &b in &lost {
                if 1.0 - iou(&self.tracks[a].bbox(), &self.tracks[b].bbox()) < DUPLICATE_COST {
                    duplicates.push(if self.tracks[a].duration() > self.tracks[b].duration() { b } else { a });
                }
            }
        }
        for t in duplicates {
            u.drop[t] = true;
        }
    }

    /// Fills `assigned`, drops the tracks marked (a confirmed one ends as a duplicate), then
    /// ends the tracks this frame did not see either and that have not been seen for
    /// `lost_timeout`. Expiring *after* association is what makes aging count detected frames:
    /// a person standing still through a long stretch of undetected frames (a still scene
    /// with `detect_on: motion`) is matched again on the next detected frame and keeps its id.
    fn finish(&mut self, u: Update) -> TrackOutput {
        let Update { owner, drop, mut out, stamp, .. } = u;
        for (a, o) in out.assigned.iter_mut().zip(&owner) {
            *a = o.filter(|&t| !drop[t]).map(|t| self.tracks[t].id).filter(|&id| id != 0);
        }
        let mut t = 0;
        self.tracks.retain(|track| {
            let gone = drop[t];
            t += 1;
            if gone && track.id != 0 {
                out.ended.push(EndedTrack { track: track.clone(), reason: EndReason::Duplicate });
            }
            !gone
        });
        out.ended.extend(self.expire(stamp.captured));
        let ended: Vec<u64> = out.ended.iter().map(|e| e.track.id).collect();
        out.class_changed.retain(|c| !ended.contains(&c.id));
        out
    }

    /// The least-cost pairs `(track index, detection index)` of `tracks` x `dets[idx]`.
    fn pair(&self, tracks: &[usize], dets: &[TrackInput], idx: &[usize], fuse_score: bool, thresh: f32) -> Vec<(usize, usize)> {
        let track_boxes: Vec<[f32; 4]> = tracks.iter().map(|&t| self.tracks[t].bbox()).collect();
        let det_boxes: Vec<[f32; 4]> = idx.iter().map(|&i| dets[i].bbox).collect();
        let scores: Vec<f32> = idx.iter().map(|&i| dets[i].confidence).collect();
        let cost = iou_cost(&track_boxes, &det_boxes, fuse_score.then_some(&scores[..]));
        linear_assignment(&cost, tracks.len(), idx.len(), thresh).into_iter().map(|(r, c)| (tracks[r], idx[c])).collect()
    }

    /// Ends the tracks not seen for longer than `lost_timeout` at `now` (tentative ones go
    /// silently). `update` calls it after association; a caller may call it on a tick for a
    /// camera whose frames stopped reaching the detector altogether.
    pub fn expire(&mut self, now: Instant) -> Vec<EndedTrack> {
        let timeout = self.cfg.lost_timeout;
        let stale = |t: &Track| now.saturating_duration_since(t.last.stamp.captured) > timeout;
        let mut ended = Vec::new();
        self.tracks.retain(|t| {
            if !stale(t) {
                return true;
            }
            if t.id != 0 {
                ended.push(EndedTrack { track: t.clone(), reason: EndReason::Lost });
            }
            false
        });
        ended
    }

    /// Ends every confirmed track (camera stopped or deleted) and forgets the tentative ones.
    /// The tracker stays usable; ids keep counting.
    pub fn end_all(&mut self) -> Vec<EndedTrack> {
        self.tracks.drain(..).filter(|t| t.id != 0).map(|track| EndedTrack { track, reason: EndReason::Stopped }).collect()
    }

    /// Gives detection `i` to track `t`; a class change is news only if `report` (confirmed).
    fn observe(&mut self, u: &mut Update, t: usize, i: usize, report: bool) {
        u.owner[i] = Some(t);
        let track = &mut self.tracks[t];
        if let Some((from, to)) = track.observe(&u.dets[i], u.stamp) {
            if report {
                u.out.class_changed.push(ClassChange { id: track.id, from, to });
            }
        }
    }

    fn confirm(&mut self, u: &mut Update, t: usize) {
        self.last_id += 1;
        self.tracks[t].id = self.last_id;
        u.out.started.push(self.last_id);
    }
}

/// The working state of one [`Tracker::update`].
struct Update<'a> {
    dets: &'a [TrackInput],
    stamp: FrameStamp,
    /// Track index per detection.
    owner: Vec<Option<usize>>,
    /// Per track index: goes at the end of this update.
    drop: Vec<bool>,
    out: TrackOutput,
}

/// The tracks and detections (by index) that `pairs` leaves out, in their order.
fn unpaired(pairs: &[(usize, usize)], tracks: &[usize], dets: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let tracks_left = tracks.iter().copied().filter(|t| !pairs.iter().any(|p| p.0 == *t)).collect();
    let dets_left = dets.iter().copied().filter(|i| !pairs.iter().any(|p| p.1 == *i)).collect();
    (tracks_left, dets_left)
}
