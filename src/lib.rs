//! analytics-service: cameras in over REST, motion / object / plate events out to a Redis Stream.
//!
//! Synchronous OS-thread stages joined by bounded crossbeam channels (see `pipeline`).
//! The binary (`src/main.rs`) only loads configuration, starts a [`service::Service`] and waits
//! for SIGINT/SIGTERM; everything else lives here so tests and benches can drive it.

pub mod api; // REST API: hardened HTTP/1.1 layer, routes, error shape
pub mod camera; // camera payload types, validation, registry and per-camera workers
pub mod cluster; // the registry's state in Redis, leases and fair share across instances
pub mod coco; // the 80 COCO class names (validation and the detector share them)
pub mod config; // environment / `.env` configuration (`Config`)
pub mod events; // the typed events (`detection`, `motion`, `anpr`, `object`) and their JSON form
pub mod evidence; // images: Redis keys, overlay records, JPEG helpers (pipeline writes, API reads)
pub mod infer; // ONNX Runtime sessions and providers, letterbox, YOLO decode, NMS, box geometry
pub mod logging; // simplelog set-up at `LOG_LEVEL`
pub mod metrics; // counters shared by every stage, Prometheus text rendering
pub mod pipeline; // the stages: capture, motion, detect, track, anpr, publish, and their wiring
pub mod redis_target; // where Redis is, and a connection with timeouts (RedisTarget)
pub mod service; // start / stop of the whole service (used by main, tests and benches)
pub mod stage; // stage threads: one stop signal (Stop), one handle (StageHandle), supervision
pub mod time; // RFC 3339 timestamps without a date-time crate

// The surface the benches, tests and the bench binary build with, so they need no deep paths:
// the service, its configuration and metrics, and each stage's building blocks driven alone.
pub use config::Config;
pub use infer::decode::decode;
pub use infer::letterbox::letterbox_into;
pub use infer::{Device, Letterbox, ModelSession, Yolo};
pub use metrics::{CameraCounters, Metrics};
pub use pipeline::anpr::dedupe::SystemClock;
pub use pipeline::anpr::{AnprJob, AnprModels, AnprSettings, AnprStage, Vehicle};
pub use pipeline::events_channel;
pub use pipeline::frame::Frame;
pub use pipeline::motion::{MotionDetector, MotionSettings};
pub use pipeline::publish::{self, PublisherConfig};
pub use pipeline::track::{FrameStamp, TrackInput, Tracker, TrackerConfig};
pub use redis_target::RedisTarget;
pub use service::Service;
pub use stage::supervise::Supervisor;
pub use stage::{Stop, StopSender};

/// The module graph has no cycle and only the wiring reaches into `pipeline`
/// (docs/architecture.md, "Modules and what each may import"): `scripts/module_graph.py` reads
/// every `crate::`/`super::` path under src/.
#[cfg(test)]
#[test]
fn module_graph_has_no_cycle() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/module_graph.py");
    let out = std::process::Command::new("python3").arg(script).output().expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
}
