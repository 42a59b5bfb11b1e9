//! The per-camera OS thread and its lifecycle: spawn, signal stop, join.
//!
//! Stopping is by dropping the worker's stop sender: the thread sees its stop channel
//! disconnect at its next check, finishes the frame in hand and returns. `Drop` only signals;
//! the registry joins outside its lock so a slow stream never blocks the API.

use super::runtime::StatusWriter;
use super::url::StreamUrl;
use crate::pipeline::PipelineInputs;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::thread::JoinHandle;

/// A running camera thread.
pub struct CameraWorker {
    stop: Option<Sender<()>>,
    join: Option<JoinHandle<()>>,
}

/// What a worker thread receives: stop when this disconnects.
pub type StopSignal = Receiver<()>;

impl CameraWorker {
    /// Starts the camera's thread, named `cam-<id>` (truncated) for `top -H` and panics.
    pub fn spawn(status: StatusWriter, url: StreamUrl, inputs: PipelineInputs) -> std::io::Result<Self> {
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let id = &status.runtime().camera_id;
        let name: String = format!("cam-{id}").chars().take(15).collect();
        let join = std::thread::Builder::new().name(name).spawn(move || {
            let stall = inputs.stall_timeout;
            crate::pipeline::capture::run(status, url, inputs, stop_rx, stall)
        })?;
        Ok(CameraWorker { stop: Some(stop_tx), join: Some(join) })
    }

    /// Asks the thread to stop without waiting.
    pub fn signal_stop(&mut self) {
        self.stop.take();
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
