//! `Frame`: one decoded picture of one camera, as it travels between stages.

use crate::camera::CameraRuntime;
use opencv::core::Mat;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub struct Frame {
    /// The camera's live state: parameters, counters.
    pub camera: Arc<CameraRuntime>,
    /// Decoded-frame counter of the camera's stream (counts skipped frames too; keeps counting
    /// across reconnects and file loops, so it is unique per camera worker).
    pub frame_number: u64,
    /// Wall-clock capture time: the event timestamp.
    pub captured_at: SystemTime,
    /// Monotonic capture time: for latency measurements.
    pub captured: Instant,
    /// BGR, 8 bits per channel, full resolution.
    pub image: Mat,
}
