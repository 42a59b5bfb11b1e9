//! The camera registry: which cameras exist, their configuration, their worker threads.
//!
//! `apply` creates, updates in place, or (for `status: inactive`) stops cameras; `remove`
//! deletes one. Workers to stop are taken out under the lock and joined after it is released,
//! so the API stays responsive while a stream winds down. The registry never holds more than
//! `MAX_CAMERAS` cameras, which keeps memory bounded.

use super::payload::{CameraConfig, DesiredStatus};
use super::runtime::{CameraRuntime, CameraState, RuntimeStatus};
use super::worker::{CameraWorker, CaptureLoop};
use crate::metrics::{CameraCountersSnapshot, Metrics};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("registering {requested} new camera(s) would exceed MAX_CAMERAS={max} ({current} registered); delete some first or raise MAX_CAMERAS")]
    TooManyCameras { requested: usize, current: usize, max: usize },
    #[error("the service is shutting down")]
    ShuttingDown,
}

/// What `apply` did with one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Updated,
    Unchanged,
}

/// A camera as the API shows it: configuration (URL masked), live state and counters.
#[derive(Debug, Clone, Serialize)]
pub struct CameraView {
    #[serde(flatten)]
    pub config: CameraConfig,
    #[serde(flatten)]
    pub status: RuntimeStatus,
    #[serde(flatten)]
    pub counters: CameraCountersSnapshot,
}

struct Slot {
    config: CameraConfig,
    runtime: Arc<CameraRuntime>,
    worker: Option<CameraWorker>,
}

impl Slot {
    fn view(&self) -> CameraView {
        CameraView { config: self.config.clone(), status: self.runtime.status(), counters: self.runtime.counters.snapshot() }
    }
}

pub struct Registry {
    slots: Mutex<Inner>,
    max_cameras: usize,
    /// What each camera's worker thread runs (the pipeline's capture stage).
    capture: Arc<dyn CaptureLoop>,
    metrics: Arc<Metrics>,
}

struct Inner {
    cameras: BTreeMap<String, Slot>,
    closed: bool,
}

impl Registry {
    pub fn new(max_cameras: usize, capture: Arc<dyn CaptureLoop>, metrics: Arc<Metrics>) -> Self {
        Registry { slots: Mutex::new(Inner { cameras: BTreeMap::new(), closed: false }), max_cameras, capture, metrics }
    }

    /// Creates or updates every camera of an already validated request, all or nothing.
    pub fn apply(&self, configs: Vec<CameraConfig>) -> Result<Vec<(ApplyOutcome, CameraView)>, RegistryError> {
        let mut to_join = Vec::new();
        let result = {
            let mut inner = self.slots.lock();
            if inner.closed {
                return Err(RegistryError::ShuttingDown);
            }
            let new = configs.iter().filter(|c| !inner.cameras.contains_key(&c.camera_id)).count();
            if inner.cameras.len() + new > self.max_cameras {
                return Err(RegistryError::TooManyCameras { requested: new, current: inner.cameras.len(), max: self.max_cameras });
            }
            let mut out = Vec::with_capacity(configs.len());
            for cfg in configs {
                let id = cfg.camera_id.clone();
                let outcome = match inner.cameras.get_mut(&id) {
                    Some(slot) => self.update(slot, cfg, &mut to_join),
                    None => {
                        let runtime = CameraRuntime::new(&id, cfg.parameters.clone(), self.metrics.camera(&id));
                        let mut slot = Slot { config: cfg, runtime, worker: None };
                        if slot.config.status == DesiredStatus::Active {
                            self.start(&mut slot);
                        }
                        log::info!("camera {id}: registered ({}, {:?})", slot.config.stream_url, slot.config.status);
                        inner.cameras.insert(id.clone(), slot);
                        ApplyOutcome::Created
                    }
                };
                out.push((outcome, id));
            }
            out
        };
        for w in to_join {
            w.join();
        }
        // Views are taken after the joins so they show the settled state.
        let inner = self.slots.lock();
        Ok(result.into_iter().filter_map(|(outcome, id)| inner.cameras.get(&id).map(|s| (outcome, s.view()))).collect())
    }

    /// Applies a new configuration to an existing camera; workers to stop go to `to_join`.
    fn update(&self, slot: &mut Slot, cfg: CameraConfig, to_join: &mut Vec<CameraWorker>) -> ApplyOutcome {
        if slot.config == cfg {
            return ApplyOutcome::Unchanged;
        }
        let id = cfg.camera_id.clone();
        if slot.config.parameters != cfg.parameters {
            slot.runtime.set_params(cfg.parameters.clone());
            log::info!("camera {id}: parameters updated live");
        }
        let url_changed = slot.config.stream_url != cfg.stream_url;
        slot.config = cfg;
        match slot.config.status {
            DesiredStatus::Inactive => {
                if let Some(w) = slot.worker.take() {
                    to_join.push(w);
                    log::info!("camera {id}: set inactive, stopping");
                }
                slot.runtime.end_generation(CameraState::Stopped, None);
            }
            DesiredStatus::Active if url_changed || slot.worker.is_none() => {
                if let Some(w) = slot.worker.take() {
                    to_join.push(w);
                }
                log::info!("camera {id}: (re)starting on {}", slot.config.stream_url);
                self.start(slot);
            }
            DesiredStatus::Active => {}
        }
        ApplyOutcome::Updated
    }

    /// Starts the slot's worker; a failure to spawn puts the camera in `error`.
    fn start(&self, slot: &mut Slot) {
        let status = slot.runtime.begin_generation();
        status.set_state(CameraState::Connecting);
        match CameraWorker::spawn(status, slot.config.stream_url.clone(), self.capture.clone()) {
            Ok(w) => slot.worker = Some(w),
            Err(e) => {
                log::error!("camera {}: cannot start its worker thread: {e}", slot.config.camera_id);
                slot.runtime.end_generation(CameraState::Error, Some(format!("cannot start worker thread: {e}")));
            }
        }
    }

    pub fn list(&self) -> Vec<CameraView> {
        self.slots.lock().cameras.values().map(Slot::view).collect()
    }

    pub fn get(&self, camera_id: &str) -> Option<CameraView> {
        self.slots.lock().cameras.get(camera_id).map(Slot::view)
    }

    /// Stops, joins and removes a camera; `None` if unknown.
    pub fn remove(&self, camera_id: &str) -> Option<CameraView> {
        let mut slot = self.slots.lock().cameras.remove(camera_id)?;
        if let Some(w) = slot.worker.take() {
            w.join();
        }
        slot.runtime.end_generation(CameraState::Stopped, None);
        self.metrics.remove_camera(camera_id);
        log::info!("camera {camera_id}: deleted");
        Some(slot.view())
    }

    /// Refuses further changes, stops every worker and waits for them (shutdown).
    pub fn shutdown(&self) {
        let mut workers: Vec<(Arc<CameraRuntime>, CameraWorker)> = {
            let mut inner = self.slots.lock();
            inner.closed = true;
            inner.cameras.values_mut().filter_map(|s| s.worker.take().map(|w| (s.runtime.clone(), w))).collect()
        };
        // Signal all first so they wind down in parallel, then join one by one.
        for (_, w) in workers.iter_mut() {
            w.signal_stop();
        }
        for (rt, w) in workers {
            w.join();
            rt.end_generation(CameraState::Stopped, None);
        }
    }

    /// Number of cameras in each state, for `/api/health`.
    pub fn state_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> = CameraState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for slot in self.slots.lock().cameras.values() {
            *counts.entry(slot.runtime.status().state.as_str()).or_default() += 1;
        }
        counts
    }
}
