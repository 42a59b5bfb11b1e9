//! The per-camera OS thread and its lifecycle: spawn, signal stop, join.
//!
//! Stopping is the service's one stop signal ([`Stop`], `stage/stop.rs`): the worker holds the
//! [`StopSender`]; the thread sees it fire at its next check, finishes the frame in hand and
//! returns. `Drop` only signals;
//! the registry joins outside its lock so a slow stream never blocks the API.
//!
//! What the thread runs is the pipeline's business ([`CaptureLoop`], implemented by
//! `pipeline::PipelineInputs`): the camera module knows nothing of the stages, so there is no
//! module cycle between `camera/` and `pipeline/`.

use super::runtime::StatusWriter;
use super::url::StreamUrl;
use crate::stage::{Stop, StopSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The body of a camera's worker thread: read `url`, report through `status`, hand frames on,
/// return when `stop` fires.
pub trait CaptureLoop: Send + Sync {
    fn run(&self, status: StatusWriter, url: StreamUrl, stop: Stop);
}

/// A running camera thread.
pub struct CameraWorker {
    stop: StopSender,
    join: Option<JoinHandle<()>>,
}

impl CameraWorker {
    /// Starts the camera's thread, named `cam-<id>` (truncated) for `top -H` and panics.
    pub fn spawn(status: StatusWriter, url: StreamUrl, capture: Arc<dyn CaptureLoop>) -> std::io::Result<Self> {
        let stop = StopSender::new();
        let stop_rx = stop.subscribe();
        let id = &status.runtime().camera_id;
        let name: String = format!("cam-{id}").chars().take(15).collect();
        let join = std::thread::Builder::new().name(name).spawn(move || capture.run(status, url, stop_rx))?;
        Ok(CameraWorker { stop, join: Some(join) })
    }

    /// Asks the thread to stop without waiting.
    pub fn signal_stop(&mut self) {
        self.stop.fire();
    }

    /// Signals and waits for the thread to end. A panic in it is logged, not propagated.
    pub fn join(mut self) {
        self.signal_stop();
        if let Some(j) = self.join.take() {
            let name = j.thread().name().unwrap_or("cam").to_string();
            if j.join().is_err() {
                log::error!("camera worker {name}: thread panicked");
            }
        }
    }
}

impl Drop for CameraWorker {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
