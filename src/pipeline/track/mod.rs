//! Multi-object tracking per camera (docs/architecture.md, "Events"): ByteTrack (Zhang et al., 2022,
//! "ByteTrack: Multi-Object Tracking by Associating Every Detection Box") over the detector's
//! boxes, so that a camera's detections become objects with a lifetime.
//!
//! ```text
//! detections of one detected frame (down to low_thresh) + FrameStamp
//!   -> Tracker::update -> TrackOutput { assigned ids per detection, started, ended, class_changed }
//! tick -> Tracker::expire (ends tracks on time while nothing is detected)
//! camera stop -> Tracker::end_all
//! ```
//! No threads or channels: the owner (one tracker per camera) calls it inline.
//!
//! - `kalman.rs`: the 8-state constant-velocity Kalman filter, predicting by elapsed time.
//! - `assign.rs`: IoU costs and the thresholded linear assignment (Kuhn-Munkres).
//! - `tracker.rs`: the association passes, track states, lifecycle bookkeeping.
//! - `analytics.rs`: zone analytics over the tracks (lines, inertia, loitering, speed, counts).

pub mod analytics; // zone analytics: lines, inertia, loitering, speed, counts; pure
mod assign;
mod kalman;
pub mod lifecycle; // an object's start / update / end rules, pure
pub mod stage; // the track stage thread: detected frames -> detection and object events, plate requests
mod tracker;

#[cfg(test)]
mod tests;

pub use tracker::{ClassChange, EndReason, EndedTrack, FrameStamp, Sighting, Track, TrackInput, TrackOutput, Tracker, TrackerConfig};
