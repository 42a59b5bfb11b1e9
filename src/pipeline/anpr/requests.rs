//! ANPR's policy of what to read, applied by the track stage (which sees the tracks) for one
//! camera: each vehicle track is read on a few of its best frames, spaced out, and then no
//! more; a frame with no vehicle at all gets a whole-frame plate search at most once per
//! [`FULL_FRAME_INTERVAL`] (a close-up gate camera where the car fills the picture).
//! Memory is one small entry per live vehicle track; [`Requests::forget`] drops it at the
//! track's end.

use super::{Vehicle, FULL_FRAME_INTERVAL, VEHICLE_CLASSES};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most reads asked for one vehicle track (ANPR votes over them; it stops early once
/// `VOTES_NEEDED` agree).
pub const MAX_READS_PER_TRACK: u32 = 6;
/// Least time between two reads of one track: consecutive frames look alike, later ones are
/// closer or sharper.
pub const READ_SPACING: Duration = Duration::from_millis(300);

/// A confirmed vehicle track as seen in this frame.
#[derive(Debug, Clone)]
pub struct VehicleSighting {
    pub track_id: String,
    pub class_name: String,
    pub confidence: f32,
    /// x1, y1, x2, y2 in frame pixels.
    pub bbox: [f32; 4],
}

struct Asked {
    count: u32,
    last: Instant,
    best_confidence: f32,
}

/// One camera's request state.
#[derive(Default)]
pub struct Requests {
    asked: HashMap<String, Asked>,
    full_frame_at: Option<Instant>,
}

impl Requests {
    /// The vehicles of this frame to read now, or `Some(empty)` for a whole-frame search, or
    /// `None` for nothing. `any_vehicle_box`: the detector saw a vehicle, confirmed or not (a
    /// tentative one will be read once its track is confirmed; no whole-frame search then).
    pub fn pick(&mut self, sightings: &[VehicleSighting], any_vehicle_box: bool, now: Instant) -> Option<Vec<Vehicle>> {
        let mut out = Vec::new();
        for s in sightings.iter().filter(|s| VEHICLE_CLASSES.contains(&s.class_name.as_str())) {
            let a = self.asked.entry(s.track_id.clone()).or_insert(Asked { count: 0, last: now, best_confidence: 0.0 });
            let due = a.count == 0
                || (a.count < MAX_READS_PER_TRACK
                    && now.saturating_duration_since(a.last) >= READ_SPACING
                    && s.confidence >= 0.9 * a.best_confidence);
            a.best_confidence = a.best_confidence.max(s.confidence);
            if due {
                a.count += 1;
                a.last = now;
                out.push(Vehicle {
                    class_name: s.class_name.clone(),
                    confidence: s.confidence,
                    bbox: s.bbox,
                    track_id: Some(s.track_id.clone()),
                });
            }
        }
        if !out.is_empty() {
            return Some(out);
        }
        if !any_vehicle_box && self.full_frame_at.is_none_or(|t| now.saturating_duration_since(t) >= FULL_FRAME_INTERVAL) {
            self.full_frame_at = Some(now);
            return Some(Vec::new());
        }
        None
    }

    /// The track ended; whether ANPR was ever asked to read it.
    pub fn forget(&mut self, track_id: &str) -> bool {
        self.asked.remove(track_id).is_some_and(|a| a.count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn car(id: &str, conf: f32) -> VehicleSighting {
        VehicleSighting { track_id: id.into(), class_name: "car".into(), confidence: conf, bbox: [0.0, 0.0, 100.0, 100.0] }
    }

    #[test]
    fn a_track_is_read_a_few_times_spaced_out_then_never() {
        let mut r = Requests::default();
        let t0 = Instant::now();
        let mut asked = 0;
        for i in 0..200 {
            let now = t0 + Duration::from_millis(i * 100);
            asked += r.pick(&[car("a", 0.8)], true, now).map_or(0, |v| v.len());
        }
        assert_eq!(asked, MAX_READS_PER_TRACK as usize);
        // a person is not a vehicle; a frame with a vehicle box but no confirmed track: nothing
        let person = VehicleSighting { class_name: "person".into(), ..car("p", 0.9) };
        assert!(r.pick(&[person], true, t0 + Duration::from_secs(100)).is_none());
    }

    #[test]
    fn whole_frame_search_only_without_vehicles_and_throttled() {
        let mut r = Requests::default();
        let t0 = Instant::now();
        let searches = (0..30).filter(|i| r.pick(&[], false, t0 + Duration::from_millis(i * 100)).is_some_and(|v| v.is_empty())).count();
        assert_eq!(searches, 3, "one per FULL_FRAME_INTERVAL over 3 s");
    }
}
