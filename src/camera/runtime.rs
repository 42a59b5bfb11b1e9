//! Live per-camera state shared by the registry (which reports it) and the camera's stages
//! (which write it): current parameters, lifecycle state, last error, rates and counters.
//!
//! Each worker start begins a new *generation*; a worker writes state through a
//! [`StatusWriter`] of its generation, so a worker that is still winding down after a restart
//! can never overwrite the state of its successor.

use super::payload::CameraParams;
use crate::metrics::CameraCounters;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Lifecycle state shown in `GET /api/cameras`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// Opening the stream for the first time.
    Connecting,
    /// Frames are flowing.
    Running,
    /// The stream failed or stalled; retrying with backoff.
    Reconnecting,
    /// Not processing: inactive, deleted or shutting down.
    Stopped,
    /// Cannot run without a change of configuration (e.g. the worker thread failed to start).
    Error,
    /// Active, but no instance runs it yet: waiting for a lease (every live instance is at its
    /// `MAX_CAMERAS`, or the hand-over after an instance died).
    Pending,
}

impl CameraState {
    pub const ALL: [CameraState; 6] = [
        CameraState::Connecting,
        CameraState::Running,
        CameraState::Reconnecting,
        CameraState::Stopped,
        CameraState::Error,
        CameraState::Pending,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Connecting => "connecting",
            CameraState::Running => "running",
            CameraState::Reconnecting => "reconnecting",
            CameraState::Stopped => "stopped",
            CameraState::Error => "error",
            CameraState::Pending => "pending",
        }
    }
}

/// The part of a camera's state that changes together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeStatus {
    pub state: CameraState,
    /// Last stream or processing error, kept after recovery so users can see what happened.
    pub last_error: Option<String>,
    /// When `state` last changed (RFC 3339).
    pub state_since: String,
    /// The same moment, for health's "reconnecting for more than a minute".
    #[serde(skip, default = "SystemTime::now")]
    pub state_since_at: SystemTime,
    /// Frames per second decoded from the stream over the last few seconds.
    pub input_fps: f32,
    /// Frames per second that went through the pipeline over the last few seconds.
    pub processed_fps: f32,
    /// The same two rates under the names of DESIGN.md section 14: frames decoded per second
    /// (every frame, or keyframes only) and frames analysed per second.
    #[serde(default)]
    pub decoded_fps: f32,
    #[serde(default)]
    pub analysed_fps: f32,
    /// Which frames the current connection decodes (`all` or `keyframes`); null when none is open.
    #[serde(default)]
    pub decoding: Option<super::payload::DecodeMode>,
    /// The stream's keyframe interval in seconds, as measured while decoding keyframes only.
    #[serde(default)]
    pub keyframe_interval_s: Option<f32>,
}

pub struct CameraRuntime {
    pub camera_id: String,
    /// Current parameters; stages take a cheap `Arc` clone per frame, so updates apply live.
    params: RwLock<Arc<CameraParams>>,
    pub counters: Arc<CameraCounters>,
    status: Mutex<RuntimeStatus>,
    generation: AtomicU64,
}

impl CameraRuntime {
    pub fn new(camera_id: &str, params: CameraParams, counters: Arc<CameraCounters>) -> Arc<Self> {
        Arc::new(CameraRuntime {
            camera_id: camera_id.to_string(),
            params: RwLock::new(Arc::new(params)),
            counters,
            status: Mutex::new(RuntimeStatus {
                state: CameraState::Stopped,
                last_error: None,
                state_since: crate::time::rfc3339_millis(SystemTime::now()),
                state_since_at: SystemTime::now(),
                input_fps: 0.0,
                processed_fps: 0.0,
                decoded_fps: 0.0,
                analysed_fps: 0.0,
                decoding: None,
                keyframe_interval_s: None,
            }),
            generation: AtomicU64::new(0),
        })
    }

    pub fn params(&self) -> Arc<CameraParams> {
        self.params.read().clone()
    }

    pub fn set_params(&self, p: CameraParams) {
        *self.params.write() = Arc::new(p);
    }

    pub fn status(&self) -> RuntimeStatus {
        self.status.lock().clone()
    }

    /// Starts a new worker generation and returns its writer; older writers go silent.
    pub fn begin_generation(self: &Arc<Self>) -> StatusWriter {
        let generation = next_generation();
        self.generation.store(generation, Ordering::SeqCst);
        StatusWriter { rt: self.clone(), generation }
    }

    /// Ends every generation (the registry stopped the worker) and records `state`.
    pub fn end_generation(&self, state: CameraState, error: Option<String>) {
        self.generation.store(next_generation(), Ordering::SeqCst);
        let mut s = self.status.lock();
        set_state(&mut s, state);
        s.input_fps = 0.0;
        s.processed_fps = 0.0;
        s.decoded_fps = 0.0;
        s.analysed_fps = 0.0;
        s.decoding = None;
        self.counters.set_rates(0.0, 0.0);
        if error.is_some() {
            s.last_error = error;
        }
    }
}

/// Generation numbers come from one process-wide counter, so they only grow, also across a
/// camera deleted and registered again under the same id: a downstream stage can tell a newer
/// worker's frames from a stopped one's by the number alone.
fn next_generation() -> u64 {
    static GENERATIONS: AtomicU64 = AtomicU64::new(0);
    GENERATIONS.fetch_add(1, Ordering::SeqCst) + 1
}

fn set_state(s: &mut RuntimeStatus, state: CameraState) {
    if s.state != state {
        s.state = state;
        s.state_since_at = SystemTime::now();
        s.state_since = crate::time::rfc3339_millis(s.state_since_at);
    }
}

/// A worker's handle on its camera's state, valid only for its own generation.
#[derive(Clone)]
pub struct StatusWriter {
    rt: Arc<CameraRuntime>,
    generation: u64,
}

impl StatusWriter {
    pub fn runtime(&self) -> &Arc<CameraRuntime> {
        &self.rt
    }

    /// This writer's generation number.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether this writer's generation is still the current one.
    pub fn is_current(&self) -> bool {
        self.rt.generation.load(Ordering::SeqCst) == self.generation
    }

    fn with(&self, f: impl FnOnce(&mut RuntimeStatus)) {
        let mut s = self.rt.status.lock();
        // checked under the lock, so it cannot race end_generation
        if self.is_current() {
            f(&mut s);
        }
    }

    pub fn set_state(&self, state: CameraState) {
        self.with(|s| set_state(s, state));
    }

    pub fn set_error(&self, state: CameraState, error: String) {
        self.with(|s| {
            set_state(s, state);
            s.last_error = Some(error);
        });
    }

    /// Decoded (input) and analysed (processed) frames per second, for the API and `/metrics`.
    pub fn set_rates(&self, input_fps: f32, processed_fps: f32) {
        self.with(|s| {
            s.input_fps = input_fps;
            s.processed_fps = processed_fps;
            s.decoded_fps = input_fps;
            s.analysed_fps = processed_fps;
            self.rt.counters.set_rates(input_fps, processed_fps);
        });
    }

    /// Which frames the open connection decodes, and the keyframe interval measured so far.
    pub fn set_decoding(&self, decoding: Option<super::payload::DecodeMode>, keyframe_interval_s: Option<f32>) {
        self.with(|s| {
            s.decoding = decoding;
            if keyframe_interval_s.is_some() {
                s.keyframe_interval_s = keyframe_interval_s;
            }
        });
    }
}
