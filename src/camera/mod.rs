//! Cameras: the REST payload types, their validation, the registry that owns each camera's
//! worker thread, and the live state the API reports.

pub mod payload; // CameraConfig / CameraParams / RoiZone (validated, defaults filled)
pub mod registry; // the set of cameras; create / update in place / delete, worker lifecycle
pub mod runtime; // live per-camera state shared between the registry and the stages
pub mod url; // StreamUrl: masks credentials wherever it is printed
pub mod validate; // body -> Vec<CameraConfig> or per-field issues
pub mod worker; // the per-camera OS thread

pub use payload::{CameraConfig, CameraParams, CountLine, DesiredStatus, DetectOn, RoiZone};
pub use registry::{ApplyOutcome, CameraView, CountsReset, Registry};
pub use runtime::{CameraRuntime, CameraState};
pub use url::StreamUrl;
