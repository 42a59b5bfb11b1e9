//! The events the service publishes (docs/events.md), as serde types.
//!
//! `Event` is internally tagged by `event_type`, and every variant flattens [`EventCommon`], so the
//! JSON of an event is exactly the contract's flat object: `{"event_id", "event_type",
//! "camera_id", "timestamp", "frame_number", ...type fields}`. The same JSON is the `payload`
//! field of the Redis Stream entry and parses back into `Event`.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Fields every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventCommon {
    /// Unique id (UUID v4 form), so consumers can drop the rare duplicate of an at-least-once retry.
    pub event_id: String,
    pub camera_id: String,
    /// Capture time of the frame, RFC 3339 UTC with milliseconds and `Z`.
    pub timestamp: String,
    /// Decoded-frame counter of the camera's stream.
    pub frame_number: u64,
    /// The instance that processed the frame (`INSTANCE_ID`); the publisher stamps it.
    #[serde(default)]
    pub instance_id: String,
}

impl EventCommon {
    /// Common fields for an event about frame `frame_number` of `camera_id` captured at `captured`.
    pub fn new(camera_id: &str, captured: SystemTime, frame_number: u64) -> Self {
        EventCommon {
            event_id: new_event_id(),
            camera_id: camera_id.to_string(),
            timestamp: crate::time::rfc3339_millis(captured),
            frame_number,
            instance_id: String::new(),
        }
    }
}

/// A box in normalised image coordinates ([0, 1], top-left origin).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct BoundingBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// One object found by the detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class_name: String,
    pub confidence: f32,
    pub bounding_box: BoundingBox,
    /// Names of the camera's ROI zones that hold the box's bottom-centre (empty: no zones set).
    #[serde(default)]
    pub zones: Vec<String>,
    /// The object this box belongs to (docs/events.md): `<camera_id>/<start ms>-<n>`,
    /// unique across cameras, instances and restarts. Null for a box the tracker has not
    /// confirmed yet (its first frames).
    #[serde(default)]
    pub track_id: Option<String>,
}

/// Which model produced detections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model name from the file, e.g. `yolov8n`.
    pub model_type: String,
    /// Runtime version, e.g. `onnxruntime 1.31.1`.
    pub version: String,
    /// `fp32`, or `int8` for the quantised detector (`YOLO_PRECISION`, docs/int8.md).
    #[serde(default = "fp32")]
    pub precision: String,
}

fn fp32() -> String {
    "fp32".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionEvent {
    #[serde(flatten)]
    pub common: EventCommon,
    pub detections: Vec<Detection>,
    pub model_info: ModelInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionEvent {
    #[serde(flatten)]
    pub common: EventCommon,
    /// Mean brightness change of the changed pixels, 0..1.
    pub motion_intensity: f32,
    /// Fraction (0..1) of the frame, or of the zones when set, that changed.
    pub affected_area_percentage: f32,
    /// The moving regions, normalised.
    #[serde(default)]
    pub motion_boxes: Vec<BoundingBox>,
    /// Zones that saw motion (empty when the camera has none).
    #[serde(default)]
    pub zones: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnprResult {
    /// Normalised plate text: upper case, A-Z and 0-9 only.
    pub license_plate: String,
    /// Mean character probability of the read, 0..1.
    pub confidence: f32,
    /// Best guess of the plate's region, or null when unsure.
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnprEvent {
    #[serde(flatten)]
    pub common: EventCommon,
    pub anpr_result: AnprResult,
    pub plate_box: BoundingBox,
    pub vehicle_box: BoundingBox,
    pub vehicle_class: String,
    /// The vehicle's track; null for a plate of the whole-frame search (no vehicle detected).
    #[serde(default)]
    pub track_id: Option<String>,
}

/// Where an object is in its life (docs/events.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    Start,
    Update,
    End,
}

/// Why an `update` was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateReason {
    ZoneEnter,
    ZoneLeave,
    Stationary,
    Moving,
    Plate,
    Class,
}

/// The best sighting of an object so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestSighting {
    pub frame_number: u64,
    pub timestamp: String,
    pub confidence: f32,
    pub bounding_box: BoundingBox,
}

/// A plate read attached to a vehicle object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectPlate {
    pub text: String,
    pub confidence: f32,
    pub region: Option<String>,
}

/// An object's lifecycle event: published on `start` (track confirmed), on `update` (one of
/// the `update_reason`s happened) and once on `end`; never per frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectEvent {
    #[serde(flatten)]
    pub common: EventCommon,
    pub track_id: String,
    pub lifecycle: Lifecycle,
    pub class_name: String,
    /// Best confidence so far.
    pub confidence: f32,
    /// Latest box.
    pub bounding_box: BoundingBox,
    pub best: BestSighting,
    pub first_seen: String,
    pub last_seen: String,
    pub duration_s: f64,
    /// Zones the object is in now.
    pub zones: Vec<String>,
    /// Zones it has ever been in.
    pub entered_zones: Vec<String>,
    pub stationary: bool,
    pub license_plate: Option<ObjectPlate>,
    /// Only on `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_reason: Option<UpdateReason>,
}

/// Every event the service publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", rename_all = "lowercase")]
pub enum Event {
    Detection(DetectionEvent),
    Motion(MotionEvent),
    Anpr(AnprEvent),
    Object(ObjectEvent),
}

/// The four event types, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Detection,
    Motion,
    Anpr,
    Object,
}

impl EventType {
    pub const ALL: [EventType; 4] = [EventType::Detection, EventType::Motion, EventType::Anpr, EventType::Object];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Detection => "detection",
            EventType::Motion => "motion",
            EventType::Anpr => "anpr",
            EventType::Object => "object",
        }
    }
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::Detection(_) => EventType::Detection,
            Event::Motion(_) => EventType::Motion,
            Event::Anpr(_) => EventType::Anpr,
            Event::Object(_) => EventType::Object,
        }
    }

    pub fn common(&self) -> &EventCommon {
        match self {
            Event::Detection(e) => &e.common,
            Event::Motion(e) => &e.common,
            Event::Anpr(e) => &e.common,
            Event::Object(e) => &e.common,
        }
    }

    pub fn common_mut(&mut self) -> &mut EventCommon {
        match self {
            Event::Detection(e) => &mut e.common,
            Event::Motion(e) => &mut e.common,
            Event::Anpr(e) => &mut e.common,
            Event::Object(e) => &mut e.common,
        }
    }
}

/// A new unique id in UUID v4 form. Uniqueness comes from a per-process random seed (std's
/// randomly keyed hasher) mixed with a process-wide counter, so two ids of one process never
/// collide and two processes collide only by 128-bit chance.
pub fn new_event_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let seed = SEED.get_or_init(std::collections::hash_map::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h1 = seed.build_hasher();
    h1.write_u64(n);
    let mut h2 = seed.build_hasher();
    h2.write_u64(!n);
    let (hi, lo) = (h1.finish(), h2.finish());
    // version 4, variant 10xx
    let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48, lo & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn event_json_is_flat_with_event_type() {
        let e = Event::Motion(MotionEvent {
            common: EventCommon::new("cam-1", SystemTime::UNIX_EPOCH, 7),
            motion_intensity: 0.25,
            affected_area_percentage: 0.5,
            motion_boxes: vec![],
            zones: vec![],
        });
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event_type"], "motion");
        assert_eq!(v["camera_id"], "cam-1");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["frame_number"], 7);
        assert_eq!(v["affected_area_percentage"], 0.5);
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn event_ids_are_unique_and_uuid_shaped() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_event_id()).collect();
        assert_eq!(ids.len(), 10_000);
        let id = ids.iter().next().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
