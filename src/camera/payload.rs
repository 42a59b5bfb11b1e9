//! The camera object of the REST API (docs/architecture.md, "REST API"), validated and with defaults filled.
//!
//! These types are the output of `validate`; they serialize back to the same shape for
//! responses, with the stream URL masked.

use super::url::StreamUrl;
use serde::Serialize;

/// Whether the camera should be processed (`status` in the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredStatus {
    Active,
    Inactive,
}

/// Which frames of a camera go to the object detector (`detect_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectOn {
    /// Every processed frame.
    EveryFrame,
    /// Frames where the motion stage saw motion, plus one every few seconds (saves most of the
    /// inference on quiet scenes). Needs motion detection on; without it, every frame goes.
    Motion,
}

/// Which frames of a camera's stream are decoded (`decode`, docs/decode.md;
/// docs/decode.md has the trade-offs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// Keyframes only when `max_fps` is at or below the stream's keyframe rate (and
    /// `frame_skip` is 1); otherwise every frame.
    Auto,
    /// Every frame (only the analysed ones are converted to BGR).
    All,
    /// Keyframes only: the analysed rate is at most the keyframe rate.
    Keyframes,
}

impl DecodeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeMode::Auto => "auto",
            DecodeMode::All => "all",
            DecodeMode::Keyframes => "keyframes",
        }
    }
}

/// A named polygon in normalised image coordinates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoiZone {
    pub name: String,
    /// At least 3 points, each `[x, y]` with 0 <= x, y <= 1.
    pub points: Vec<[f32; 2]>,
}

impl RoiZone {
    /// Whether point (`x`, `y`) (normalised) lies inside the polygon (even-odd rule).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let pts = &self.points;
        let mut inside = false;
        let mut j = pts.len() - 1;
        for i in 0..pts.len() {
            let ([xi, yi], [xj, yj]) = (pts[i], pts[j]);
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

/// Per-camera processing parameters. Every field is optional in the payload; defaults here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CameraParams {
    /// COCO class names to report; empty = all 80.
    pub detection_classes: Vec<String>,
    /// Minimum detection confidence, [0, 1]. Default 0.5.
    pub confidence_threshold: f32,
    /// Zones; empty = whole frame.
    pub roi_zones: Vec<RoiZone>,
    pub enable_motion_detection: bool,
    pub enable_object_detection: bool,
    pub enable_anpr: bool,
    /// `every_frame` (default) or `motion`.
    pub detect_on: DetectOn,
    /// The region ANPR events report for this camera's plates; none = guessed from the format.
    pub anpr_region: Option<String>,
    /// Minimum affected area (fraction 0..1) for a motion event. Default 0.1.
    pub motion_threshold: f32,
    /// Process every Nth decoded frame, >= 1. Default 1.
    pub frame_skip: u32,
    /// Cap on processed frames per second, (0, 120]. Default 30.
    pub max_fps: f32,
    /// File sources only: start over at the end instead of ending the stream. Default false.
    pub loop_file: bool,
    /// Per-frame `detection` events (default true); false publishes only `object` (and
    /// `motion`, `anpr`) events, for consumers that store objects rather than frames.
    pub frame_detections: bool,
    /// File sources only: play at the file's own frame rate, like a live camera (default true);
    /// false reads as fast as the file decodes (benchmarks).
    pub file_realtime: bool,
    /// Which frames are decoded: `auto` (default), `all` or `keyframes`.
    pub decode: DecodeMode,
    /// Keep a best-frame snapshot of each object in Redis (default true; DESIGN section 10);
    /// false: object events carry `snapshot: null` and nothing is encoded.
    pub snapshots: bool,
}

impl Default for CameraParams {
    fn default() -> Self {
        CameraParams {
            detection_classes: Vec::new(),
            confidence_threshold: 0.5,
            roi_zones: Vec::new(),
            enable_motion_detection: true,
            enable_object_detection: true,
            enable_anpr: false,
            detect_on: DetectOn::EveryFrame,
            anpr_region: None,
            motion_threshold: 0.1,
            frame_skip: 1,
            max_fps: 30.0,
            loop_file: false,
            file_realtime: true,
            frame_detections: true,
            decode: DecodeMode::Auto,
            snapshots: true,
        }
    }
}

/// One registered camera, as configured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CameraConfig {
    pub camera_id: String,
    pub status: DesiredStatus,
    /// Serialized masked.
    pub stream_url: StreamUrl,
    pub parameters: CameraParams,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_contains_uses_even_odd_rule() {
        let z = RoiZone { name: "z".into(), points: vec![[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]] };
        assert!(z.contains(0.25, 0.25));
        assert!(!z.contains(0.75, 0.25));
        let tri = RoiZone { name: "t".into(), points: vec![[0.0, 1.0], [1.0, 1.0], [0.5, 0.0]] };
        assert!(tri.contains(0.5, 0.9));
        assert!(!tri.contains(0.05, 0.1));
    }
}
