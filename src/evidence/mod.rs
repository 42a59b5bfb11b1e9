//! Evidence: the images of what the service saw (docs/architecture.md, "Evidence"; the contract
//! is DESIGN section 10). Shared by the pipeline, which writes them, and the API, which reads
//! them, so neither imports the other: the Redis keys ([`Keys`]), the records stored beside the
//! JPEGs ([`LatestMeta`], [`SnapshotInfo`]) and the image helpers ([`image`], OpenCV's
//! `imencode` / `imdecode`, `rectangle`, `resize`).
//!
//! | key (after `REDIS_KEY_PREFIX`) | type | holds | lifetime |
//! | --- | --- | --- | --- |
//! | `latest_want:<camera>` | string | someone asked for the camera's latest frame | PX [`WANT_TTL`] |
//! | `latest:<camera>` | hash `meta`, `jpeg` | the newest frame (clean JPEG) and its overlay record | PX [`LATEST_TTL`] |
//! | `snapshot:<track_id>:<frame>` | string | an object's best frame, full and clean, JPEG | EX `SNAPSHOT_TTL_S` |
//! | `thumbnail:<track_id>:<frame>` | string | the square crop around its box, JPEG | EX `SNAPSHOT_TTL_S` |
//! | `object:<track_id>` | string | JSON [`SnapshotInfo`] of the object's newest snapshot (the API's lookup) | EX `SNAPSHOT_TTL_S` |
//! | `plate:<camera>:<event_id>` | string | the plate crop of an `anpr` event, JPEG | EX `SNAPSHOT_TTL_S` |

pub mod image; // JPEG encode / decode, overlays, scaling, the thumbnail crop

use crate::events::BoundingBox;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a "wanted" mark lives: a viewer that stops asking costs nothing after this.
pub const WANT_TTL: Duration = Duration::from_secs(5);
/// How long a handed-over latest frame lives: a camera that stops delivering frames answers
/// 503 after this.
pub const LATEST_TTL: Duration = Duration::from_secs(2);
/// How often at most the owner hands over a wanted camera's frame (2 per second).
pub const LATEST_EVERY: Duration = Duration::from_millis(500);
/// JPEG quality of the frames stored in Redis (the API re-encodes at the asked quality).
pub const STORE_QUALITY: i32 = 90;

/// The evidence keys under `REDIS_KEY_PREFIX`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_string() }
    }
    pub fn latest(&self, camera_id: &str) -> String {
        format!("{}latest:{camera_id}", self.prefix)
    }
    pub fn latest_want(&self, camera_id: &str) -> String {
        format!("{}latest_want:{camera_id}", self.prefix)
    }
    pub fn snapshot(&self, track_id: &str, frame_number: u64) -> String {
        format!("{}snapshot:{track_id}:{frame_number}", self.prefix)
    }
    pub fn thumbnail(&self, track_id: &str, frame_number: u64) -> String {
        format!("{}thumbnail:{track_id}:{frame_number}", self.prefix)
    }
    pub fn object(&self, track_id: &str) -> String {
        format!("{}object:{track_id}", self.prefix)
    }
    pub fn plate(&self, camera_id: &str, event_id: &str) -> String {
        format!("{}plate:{camera_id}:{event_id}", self.prefix)
    }
}

/// One tracked box drawn on the latest frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayBox {
    pub class_name: String,
    pub confidence: f32,
    /// The track's id (`<camera>/<ms>-<n>`), or null for a box not yet confirmed.
    pub track_id: Option<String>,
    pub bounding_box: BoundingBox,
}

/// A zone drawn on the latest frame (ROI polygons; lines when the camera has them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayZone {
    pub name: String,
    pub points: Vec<[f32; 2]>,
}

/// What is stored beside the latest frame's JPEG (`latest:<camera>`, field `meta`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestMeta {
    pub camera_id: String,
    pub frame_number: u64,
    /// Capture time, RFC 3339 with milliseconds.
    pub timestamp: String,
    pub width: u32,
    pub height: u32,
    /// The camera's tracked boxes, from the frame `boxes_frame_number` (this frame when it went
    /// through the detector, else the newest that did).
    pub boxes: Vec<OverlayBox>,
    pub boxes_frame_number: Option<u64>,
    /// The motion stage's boxes of the newest frame it analysed.
    pub motion_boxes: Vec<BoundingBox>,
    pub zones: Vec<OverlayZone>,
}

/// An object's snapshot as events carry it (`snapshot`) and as `object:<track_id>` stores it.
pub use crate::events::Snapshot as SnapshotInfo;
