//! Capture: one OS thread per active camera.
//!
//! Video decoding arrives with the capture issue; until then the worker owns the camera's
//! lifecycle and state only: it reports `connecting`, then `running`, and waits for its stop
//! signal.

use crate::camera::runtime::{CameraState, StatusWriter};
use crate::camera::worker::StopSignal;
use crate::camera::StreamUrl;
use crate::pipeline::PipelineInputs;
use crossbeam_channel::RecvTimeoutError;
use std::time::Duration;

/// The camera thread's body. Returns when `stop` disconnects.
pub fn run(status: StatusWriter, url: StreamUrl, _inputs: PipelineInputs, stop: StopSignal) {
    let id = status.runtime().camera_id.clone();
    log::debug!("capture cam={id}: worker started for {url}");
    status.set_state(CameraState::Running);
    loop {
        match stop.recv_timeout(Duration::from_millis(200)) {
            Err(RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
    log::debug!("capture cam={id}: worker stopped");
}
