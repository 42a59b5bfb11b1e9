//! The best-frame rule of object snapshots (DESIGN section 10), pure: a sighting replaces the
//! kept one when its confidence is higher by more than [`CONFIDENCE_GAIN`] or its box is more
//! than [`AREA_GAIN`] larger, except that a box touching the frame's edge never replaces one
//! that does not (Frigate's `is_better_thumbnail`, in our words). At most one snapshot per
//! [`MIN_INTERVAL`] per object.

use std::time::{Duration, Instant};

/// Confidence gain that makes a sighting better.
pub const CONFIDENCE_GAIN: f32 = 0.05;
/// Box area gain (fraction) that makes a sighting better.
pub const AREA_GAIN: f32 = 0.10;
/// At most one snapshot a second per object.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// A kept snapshot is announced by an `update` (reason `snapshot`) only when it is *clearly*
/// better than the one announced last: this much more confident...
pub const CLEAR_CONFIDENCE_GAIN: f32 = 0.1;
/// ...or this much larger.
pub const CLEAR_AREA_GAIN: f32 = 0.25;

/// How good one sighting is as a picture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub confidence: f32,
    /// Box area in pixels.
    pub area: f32,
    /// The box touches the frame's edge (the object is cut off).
    pub on_edge: bool,
}

impl Quality {
    /// Whether `self` should replace `kept` as the best frame.
    pub fn better_than(&self, kept: &Quality) -> bool {
        if self.on_edge && !kept.on_edge {
            return false;
        }
        self.confidence > kept.confidence + CONFIDENCE_GAIN || self.area > kept.area * (1.0 + AREA_GAIN)
    }

    /// Whether `self` is clearly better than `announced` (worth an `update`).
    pub fn clearly_better_than(&self, announced: &Quality) -> bool {
        if self.on_edge && !announced.on_edge {
            return false;
        }
        (!self.on_edge && announced.on_edge)
            || self.confidence > announced.confidence + CLEAR_CONFIDENCE_GAIN
            || self.area > announced.area * (1.0 + CLEAR_AREA_GAIN)
    }
}

/// One object's best frame so far, as the track stage keeps it.
#[derive(Debug, Clone, Default)]
pub struct BestFrame {
    kept: Option<Quality>,
    last_job: Option<Instant>,
}

impl BestFrame {
    /// Whether a sighting of quality `q` at `now` should become a snapshot: better than the
    /// kept one and not within [`MIN_INTERVAL`] of the last. The caller [`accept`](Self::accept)s
    /// it once the job is queued.
    pub fn wants(&self, q: &Quality, now: Instant) -> bool {
        if self.last_job.is_some_and(|t| now.saturating_duration_since(t) < MIN_INTERVAL) {
            return false;
        }
        self.kept.is_none_or(|k| q.better_than(&k))
    }

    pub fn accept(&mut self, q: Quality, now: Instant) {
        self.kept = Some(q);
        self.last_job = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(confidence: f32, area: f32, on_edge: bool) -> Quality {
        Quality { confidence, area, on_edge }
    }

    /// Confidence by more than 0.05 or area by more than 10% wins; an edge box never replaces
    /// an inner one; at most one a second.
    #[test]
    fn the_rule() {
        let kept = q(0.6, 1000.0, false);
        assert!(q(0.66, 1000.0, false).better_than(&kept));
        assert!(!q(0.64, 1000.0, false).better_than(&kept));
        assert!(q(0.6, 1101.0, false).better_than(&kept));
        assert!(!q(0.6, 1099.0, false).better_than(&kept));
        assert!(!q(0.95, 5000.0, true).better_than(&kept), "edge never replaces inner");
        assert!(q(0.6, 1200.0, false).better_than(&q(0.6, 1000.0, true)));
        let t0 = Instant::now();
        let mut b = BestFrame::default();
        assert!(b.wants(&kept, t0));
        b.accept(kept, t0);
        assert!(!b.wants(&q(0.9, 2000.0, false), t0 + Duration::from_millis(500)), "once a second");
        assert!(b.wants(&q(0.9, 2000.0, false), t0 + Duration::from_millis(1000)));
        assert!(!b.wants(&q(0.62, 1050.0, false), t0 + Duration::from_secs(2)));
        assert!(q(0.6, 1300.0, false).clearly_better_than(&kept));
        assert!(!q(0.6, 1200.0, false).clearly_better_than(&kept));
    }
}
