//! `Frame`: one decoded picture of one camera, as it travels between stages.
//!
//! A frame carries what the stages need of its camera as it was *at capture*: the id, a
//! snapshot of the parameters (an update applies from the next frame on, never half-way
//! through one) and the camera's counters. It never carries the live camera object, so no
//! stage can reach back into the registry.

use crate::camera::CameraParams;
use crate::metrics::CameraCounters;
use opencv::core::Mat;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub struct Frame {
    pub camera_id: Arc<str>,
    /// Which run of the camera's worker captured it (a restart, e.g. a new `stream_url`, is a
    /// new generation): tracks never span two generations.
    pub generation: u64,
    /// The camera's parameters when the frame was captured.
    pub params: Arc<CameraParams>,
    pub counters: Arc<CameraCounters>,
    /// Decoded-frame counter of the camera's stream (counts skipped frames too; keeps counting
    /// across reconnects and file loops, so it is unique per camera worker).
    pub frame_number: u64,
    /// Wall-clock capture time: the event timestamp.
    pub captured_at: SystemTime,
    /// Monotonic capture time: for latency measurements.
    pub captured: Instant,
    /// BGR, 8 bits per channel, full resolution.
    pub image: Mat,
    /// The camera's place in the pipeline this frame holds until it is handed to an inference
    /// worker (or dropped on the way): capture converts a new frame only while its camera holds
    /// fewer than `capture::MAX_IN_FLIGHT` (back-pressure to the source).
    pub in_flight: Option<InFlight>,
}

/// One of a camera's places between capture and the end of detection; given back on drop.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Takes a place on `count` (the camera's gauge).
    pub fn take(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Frame {
    /// A frame captured now, for code that drives a stage directly (tests, benches).
    pub fn now(camera_id: &str, params: CameraParams, counters: Arc<CameraCounters>, frame_number: u64, image: Mat) -> Frame {
        Frame {
            camera_id: Arc::from(camera_id),
            generation: 0,
            params: Arc::new(params),
            counters,
            frame_number,
            captured_at: SystemTime::now(),
            captured: Instant::now(),
            image,
            in_flight: None,
        }
    }
}

/// A camera's worker has stopped (deleted, updated with a new URL, made inactive, or the
/// service stops): the tracker ends that generation's tracks.
#[derive(Debug, Clone)]
pub struct CameraEnded {
    pub camera_id: Arc<str>,
    pub generation: u64,
}
