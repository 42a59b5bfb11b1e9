//! [`LatestHub`]: per camera, whether someone looks at its latest frame (the watcher reads it
//! from Redis), when a frame was last handed over, and the newest tracked and motion boxes to
//! draw. A few small records per camera; cameras not seen for [`FORGET_AFTER`] are forgotten.

use crate::events::BoundingBox;
use crate::evidence::{OverlayBox, LATEST_EVERY};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A camera that offered no frame for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Camera {
    wanted: bool,
    seen: Instant,
    last_sent: Option<Instant>,
    boxes: Vec<OverlayBox>,
    boxes_frame_number: Option<u64>,
    motion: Vec<BoundingBox>,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct LatestHub {
    cameras: Mutex<HashMap<Arc<str>, Camera>>,
}

impl LatestHub {
    /// Whether `camera` is wanted now; notes that it offers frames (the watcher asks Redis
    /// about the cameras seen).
    pub fn wanted(&self, camera_id: &str) -> bool {
        let mut m = self.cameras.lock();
        match m.get_mut(camera_id) {
            Some(c) => {
                c.seen = Instant::now();
                c.wanted
            }
            None => {
                let c = Camera {
                    wanted: false,
                    seen: Instant::now(),
                    last_sent: None,
                    boxes: Vec::new(),
                    boxes_frame_number: None,
                    motion: Vec::new(),
                };
                m.insert(Arc::from(camera_id), c);
                false
            }
        }
    }

    pub fn set_wanted(&self, camera_id: &str, wanted: bool) {
        if let Some(c) = self.cameras.lock().get_mut(camera_id) {
            c.wanted = wanted;
        }
    }

    /// The cameras seen lately (older ones are forgotten here).
    pub fn cameras(&self) -> Vec<Arc<str>> {
        let mut m = self.cameras.lock();
        m.retain(|_, c| c.seen.elapsed() < FORGET_AFTER);
        m.keys().cloned().collect()
    }

    pub fn set_boxes(&self, camera_id: &str, frame_number: u64, boxes: Vec<OverlayBox>) {
        if let Some(c) = self.cameras.lock().get_mut(camera_id) {
            c.boxes = boxes;
            c.boxes_frame_number = Some(frame_number);
        }
    }

    pub fn set_motion(&self, camera_id: &str, boxes: &[BoundingBox]) {
        if let Some(c) = self.cameras.lock().get_mut(camera_id) {
            if c.wanted {
                c.motion = boxes.to_vec();
            }
        }
    }

    /// When `camera` is wanted and its last hand-over is at least `LATEST_EVERY` old: marks it
    /// handed over now and returns what to draw (boxes, their frame, motion boxes).
    pub fn take_due(&self, camera_id: &str) -> Option<(Vec<OverlayBox>, Option<u64>, Vec<BoundingBox>)> {
        let mut m = self.cameras.lock();
        let c = m.get_mut(camera_id)?;
        if !c.wanted || c.last_sent.is_some_and(|t| t.elapsed() < LATEST_EVERY) {
            return None;
        }
        c.last_sent = Some(Instant::now());
        Some((c.boxes.clone(), c.boxes_frame_number, c.motion.clone()))
    }
}
