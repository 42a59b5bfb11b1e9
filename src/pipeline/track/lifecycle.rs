//! An object's lifecycle, pure: given each sighting of a confirmed track (when, where, in which
//! zones, whether the camera reports it), decide the `object` events: `start` once it is
//! reportable, then `update`s only for a reason (zone enter / leave, stationary / moving, class),
//! never per frame. No threads, channels, cameras or clocks: the track stage feeds it and turns
//! its answers into events, so every rule here is unit-tested on plain values.

use crate::events::{Lifecycle, UpdateReason};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// An object whose box has moved less than [`STATIONARY_MOTION`] for this long is stationary.
pub const STATIONARY_AFTER: Duration = Duration::from_secs(5);
/// Movement, in box heights, below which an object counts as standing still.
pub const STATIONARY_MOTION: f32 = 0.15;

/// One sighting of an object, as the stage sees it.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Capture time of the frame.
    pub captured: Instant,
    /// x1, y1, x2, y2 in frame pixels.
    pub bbox: [f32; 4],
    /// The camera's zones that hold the box's bottom-centre now.
    pub zones: Vec<String>,
    /// Whether the camera reports this object (its classes, threshold and zones).
    pub reportable: bool,
    /// The tracker's class vote changed with this sighting.
    pub class_changed: bool,
}

/// Lifecycle state of one object (a confirmed track) beyond what the tracker keeps.
#[derive(Debug, Clone)]
pub struct ObjectState {
    pub track_id: String,
    pub started: bool,
    pub zones: Vec<String>,
    /// Every zone it has been in.
    pub entered: Vec<String>,
    pub stationary: bool,
    /// Recent sightings (capture time, box), for the stationary test.
    recent: VecDeque<(Instant, [f32; 4])>,
}

impl ObjectState {
    pub fn new(track_id: String) -> ObjectState {
        ObjectState { track_id, started: false, zones: Vec::new(), entered: Vec::new(), stationary: false, recent: VecDeque::new() }
    }

    /// Folds one sighting in; returns what to publish: nothing, a `start`, or one `update` per
    /// reason.
    pub fn observe(&mut self, s: &Observation) -> Vec<(Lifecycle, Option<UpdateReason>)> {
        let stationary_now = self.stationary_after(s.captured, s.bbox);
        if !self.started {
            if !s.reportable {
                return Vec::new();
            }
            self.started = true;
            self.zones = s.zones.clone();
            self.enter(&s.zones);
            self.stationary = stationary_now;
            return vec![(Lifecycle::Start, None)];
        }
        let mut reasons = Vec::new();
        if s.zones.iter().any(|z| !self.zones.contains(z)) {
            reasons.push(UpdateReason::ZoneEnter);
        }
        if self.zones.iter().any(|z| !s.zones.contains(z)) {
            reasons.push(UpdateReason::ZoneLeave);
        }
        self.zones = s.zones.clone();
        self.enter(&s.zones);
        if stationary_now != self.stationary {
            self.stationary = stationary_now;
            reasons.push(if stationary_now { UpdateReason::Stationary } else { UpdateReason::Moving });
        }
        if s.class_changed {
            reasons.push(UpdateReason::Class);
        }
        reasons.into_iter().map(|r| (Lifecycle::Update, Some(r))).collect()
    }

    fn enter(&mut self, zones: &[String]) {
        for z in zones {
            if !self.entered.contains(z) {
                self.entered.push(z.clone());
            }
        }
    }

    /// Records the sighting and says whether the object now stands still: its centre stayed
    /// within [`STATIONARY_MOTION`] box heights for [`STATIONARY_AFTER`] (twice that distance to
    /// count as moving again once stationary: hysteresis).
    fn stationary_after(&mut self, captured: Instant, bbox: [f32; 4]) -> bool {
        self.recent.push_back((captured, bbox));
        while self.recent.front().is_some_and(|(t, _)| captured.saturating_duration_since(*t) > STATIONARY_AFTER * 2) {
            self.recent.pop_front();
        }
        let covered = self.recent.front().is_some_and(|(t, _)| captured.saturating_duration_since(*t) >= STATIONARY_AFTER);
        let centre = |b: &[f32; 4]| ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        let (cx, cy) = centre(&bbox);
        let factor = if self.stationary { 2.0 } else { 1.0 };
        let limit = factor * STATIONARY_MOTION * (bbox[3] - bbox[1]).max(1.0);
        let still = self.recent.iter().filter(|(t, _)| captured.saturating_duration_since(*t) <= STATIONARY_AFTER).all(|(_, b)| {
            let (x, y) = centre(b);
            ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() <= limit
        });
        covered && still
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64, x: f32, zones: &[&str], reportable: bool) -> Observation {
        Observation {
            captured: t0 + Duration::from_millis(ms),
            bbox: [x, 100.0, x + 50.0, 200.0],
            zones: zones.iter().map(|z| z.to_string()).collect(),
            reportable,
            class_changed: false,
        }
    }

    /// Nothing until the camera reports the object; then one start, and no update without a reason.
    #[test]
    fn starts_once_reportable_and_is_quiet_without_a_reason() {
        let t0 = Instant::now();
        let mut o = ObjectState::new("c/1-1".into());
        assert!(o.observe(&at(t0, 0, 0.0, &[], false)).is_empty());
        assert_eq!(o.observe(&at(t0, 100, 10.0, &[], true)), [(Lifecycle::Start, None)]);
        assert!(o.observe(&at(t0, 200, 20.0, &[], true)).is_empty());
    }

    /// Entering and leaving zones are updates; `entered` remembers every zone.
    #[test]
    fn zone_enter_and_leave() {
        let t0 = Instant::now();
        let mut o = ObjectState::new("c/1-1".into());
        o.observe(&at(t0, 0, 0.0, &["a"], true));
        assert_eq!(o.observe(&at(t0, 100, 10.0, &["a", "b"], true)), [(Lifecycle::Update, Some(UpdateReason::ZoneEnter))]);
        assert_eq!(o.observe(&at(t0, 200, 20.0, &["b"], true)), [(Lifecycle::Update, Some(UpdateReason::ZoneLeave))]);
        assert_eq!(o.entered, ["a", "b"]);
    }

    /// Standing still for STATIONARY_AFTER makes it stationary once; moving clearly makes it
    /// moving again; a class change is its own reason.
    #[test]
    fn stationary_then_moving_then_class() {
        let t0 = Instant::now();
        let mut o = ObjectState::new("c/1-1".into());
        o.observe(&at(t0, 0, 0.0, &[], true));
        let mut said = Vec::new();
        for ms in (500..=6000).step_by(500) {
            said.extend(o.observe(&at(t0, ms, 1.0, &[], true)));
        }
        assert_eq!(said, [(Lifecycle::Update, Some(UpdateReason::Stationary))]);
        assert_eq!(o.observe(&at(t0, 6500, 300.0, &[], true)), [(Lifecycle::Update, Some(UpdateReason::Moving))]);
        let mut s = at(t0, 7000, 310.0, &[], true);
        s.class_changed = true;
        assert_eq!(o.observe(&s), [(Lifecycle::Update, Some(UpdateReason::Class))]);
    }
}
