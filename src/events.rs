//! The events the service publishes, as serde types.
//!
//! `Event` is internally tagged by `event_type`, and every variant flattens [`EventCommon`], so the
//! JSON of an event is one flat object: `{"event_type", "schema_version", "event_id",
//! "camera_id", "timestamp", "frame_number", "width", "height", "instance_id", ...type fields}`.
//! The same JSON is the `payload` field of the Redis Stream entry and parses back into `Event`.
//!
//! The consumer's contract is `docs/events.md` with one JSON Schema per event type in
//! `docs/schema/`; the tests validate every event they read against those schemas, so a field
//! added here without its schema fails the suite.

use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// The version of the event contract (`docs/events.md`, `docs/schema/`). An integer that goes
/// up only on a breaking change (a field removed, renamed or retyped, a meaning changed);
/// additions (new fields, new event types, new `update_reason` values) keep it, so consumers
/// must ignore what they do not know.
pub const SCHEMA_VERSION: u32 = 1;

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

/// Fields every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventCommon {
    /// [`SCHEMA_VERSION`] of the service that published the event.
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    /// Unique id (UUID v4 form), so consumers can drop the rare duplicate of an at-least-once retry.
    pub event_id: String,
    pub camera_id: String,
    /// Capture time of the frame, RFC 3339 UTC with milliseconds and `Z`.
    pub timestamp: String,
    /// Decoded-frame counter of the camera's stream.
    pub frame_number: u64,
    /// The frame's size in pixels, so that normalised boxes can be turned into pixels
    /// (`x * width`, `y * height`).
    pub width: u32,
    pub height: u32,
    /// The instance that processed the frame (`INSTANCE_ID`); the publisher stamps it.
    #[serde(default)]
    pub instance_id: String,
}

impl EventCommon {
    /// Common fields for an event about frame `frame_number` of `camera_id` captured at
    /// `captured`, `(width, height)` pixels large.
    pub fn new(camera_id: &str, captured: SystemTime, frame_number: u64, (width, height): (u32, u32)) -> Self {
        EventCommon {
            schema_version: SCHEMA_VERSION,
            event_id: new_event_id(),
            camera_id: camera_id.to_string(),
            timestamp: crate::time::rfc3339_millis(captured),
            frame_number,
            width,
            height,
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
    /// The object this box belongs to: `<camera_id>/<start ms>-<n>`,
    /// unique across cameras, instances and restarts. Null for a box the tracker has not
    /// confirmed yet (its first frames).
    #[serde(default)]
    pub track_id: Option<String>,
}

/// Which model produced detections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model name: the file's stem, e.g. `yolov8n`.
    pub model_type: String,
    /// The model file's name, e.g. `yolov8n.onnx`.
    #[serde(default)]
    pub model: String,
    /// Which weights: `sha256:` and the first 16 hex digits of the file's SHA-256 (what
    /// `sha256sum` prints), so a consumer sees when the model changed.
    pub version: String,
    /// The inference runtime, e.g. `onnxruntime 1.31.1`.
    #[serde(default)]
    pub runtime: String,
    /// `fp32`, or `int8` for the quantised detector (`YOLO_PRECISION`, docs/int8.md).
    #[serde(default = "fp32")]
    pub precision: String,
}

fn fp32() -> String {
    "fp32".into()
}

impl ModelInfo {
    /// The info of the model file at `path`, named `model_type`, run by `runtime`. A file that
    /// cannot be read (it was loaded, so this is rare) gets `version` `unknown`, not an error:
    /// the events are more useful than a stop.
    pub fn of_file(path: &std::path::Path, model_type: &str, runtime: &str) -> ModelInfo {
        use sha2::Digest;
        let version = match std::fs::File::open(path).and_then(|mut f| {
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(h.finalize())
        }) {
            Ok(d) => format!("sha256:{}", d.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()),
            Err(e) => {
                log::warn!("model {}: cannot hash it for model_info.version: {e}", path.display());
                "unknown".to_string()
            }
        };
        ModelInfo {
            model_type: model_type.to_string(),
            model: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            version,
            runtime: runtime.to_string(),
            precision: fp32(),
        }
    }
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

/// A plate read: the `anpr` event's `anpr_result`. It has the same `text`, `confidence` and
/// `region` as an object's `license_plate` ([`ObjectPlate`]), so one piece of consumer code
/// reads both; `license_plate` repeats `text` under the name the first contract gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnprResult {
    /// Normalised plate text: upper case, A-Z and 0-9 only. Equal to `text`.
    pub license_plate: String,
    /// Normalised plate text, as in an object's `license_plate.text`.
    pub text: String,
    /// Mean character probability of the read, 0..1.
    pub confidence: f32,
    /// Best guess of the plate's region, or null when unsure.
    pub region: Option<String>,
}

impl AnprResult {
    pub fn new(text: String, confidence: f32, region: Option<String>) -> AnprResult {
        AnprResult { license_plate: text.clone(), text, confidence, region }
    }
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
    /// Redis key of the plate crop (JPEG, expires after `SNAPSHOT_TTL_S`); null when it could
    /// not be written (Redis away).
    #[serde(default)]
    pub plate_image_key: Option<String>,
}

/// Where an object is in its life.
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
    /// A clearly better snapshot of the object was kept (at most every `SNAPSHOT_UPDATE_S`).
    Snapshot,
}

/// The best sighting of an object so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestSighting {
    pub frame_number: u64,
    pub timestamp: String,
    pub confidence: f32,
    pub bounding_box: BoundingBox,
}

/// An object's best frame, kept in Redis (docs/events.md, "Snapshots"): the keys of the full
/// frame and of the square thumbnail (JPEG strings, EX `SNAPSHOT_TTL_S`), and which sighting
/// it shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Redis key of the full frame, clean JPEG.
    pub key: String,
    /// Redis key of the square crop around the box (1.2x, 160..320 px), JPEG.
    pub thumbnail_key: String,
    pub frame_number: u64,
    /// Capture time of that frame.
    pub timestamp: String,
    /// The object's box in that frame, normalised.
    pub bounding_box: BoundingBox,
    /// The frame's size in pixels.
    pub width: u32,
    pub height: u32,
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
    /// Why an `update` was published; null on `start` and `end`.
    #[serde(default)]
    pub update_reason: Option<UpdateReason>,
    /// The object's best frame kept so far (already in Redis when the event is published);
    /// null when the camera's `snapshots` is false or none could be kept yet.
    /// (Boxed: it keeps `Event`'s variants of similar size.)
    #[serde(default)]
    pub snapshot: Option<Box<Snapshot>>,
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

/// A new unique id: a UUID v7 (RFC 9562, the `uuid` crate): 48 bits of Unix milliseconds then
/// random bits, so ids sort by creation time, which suits a database key, and two ids collide
/// only by 74-bit chance.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn event_json_is_flat_with_event_type() {
        let e = Event::Motion(MotionEvent {
            common: EventCommon::new("cam-1", SystemTime::UNIX_EPOCH, 7, (640, 480)),
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
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(640), Some(480)));
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
        assert_eq!(&id[14..15], "7", "UUID v7: {id}");
    }
}
