//! The camera registry of this instance: every registered camera's configuration (a cache of
//! the desired state in Redis, see `cluster`), and the worker threads of the cameras this
//! instance holds the lease on.
//!
//! Two things change it, and only through these methods: the cluster coordinator (a new
//! snapshot from Redis: [`Registry::sync`]; a lease taken or lost: [`Registry::take`],
//! [`Registry::drop_lease`]) and the API after a successful write ([`Registry::upsert`],
//! [`Registry::remove`]). Each camera carries the version Redis gave its configuration; an
//! older version never overwrites a newer one, so the order in which the API thread and the
//! coordinator deliver changes does not matter.
//!
//! Workers to stop are taken out under the lock and joined after it is released, so the API
//! stays responsive while a stream winds down.

use super::payload::{CameraConfig, DesiredStatus};
use super::runtime::{CameraRuntime, CameraState, RuntimeStatus};
use super::worker::{CameraWorker, CaptureLoop};
use crate::metrics::{CameraCountersSnapshot, Metrics};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a write did to one camera (the POST reply's `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Updated,
    Unchanged,
}

/// A camera's live state as its owner publishes it for the other instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteStatus {
    pub owner: String,
    #[serde(flatten)]
    pub status: RuntimeStatus,
    #[serde(flatten)]
    pub counters: CameraCountersSnapshot,
    /// Redis time (ms) of the owner's last publication: older than the lease TTL is stale.
    #[serde(default)]
    pub at_ms: u64,
    /// Zone analytics counts (`GET .../counts` on another instance), when the camera has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<serde_json::Value>,
}

/// What `POST .../counts/reset` found.
pub enum CountsReset {
    /// Done here: the counts with the line totals at zero.
    Done(serde_json::Value),
    /// Another instance runs the camera (its id).
    Elsewhere(String),
}

/// A camera as the API shows it: configuration (URL masked), which instance runs it, live state
/// and counters.
#[derive(Debug, Clone, Serialize)]
pub struct CameraView {
    #[serde(flatten)]
    pub config: CameraConfig,
    /// The revision of the registry that last changed this camera's configuration.
    pub version: u64,
    /// The instance processing the camera (`INSTANCE_ID`), or null when none is.
    pub owner: Option<String>,
    #[serde(flatten)]
    pub status: RuntimeStatus,
    #[serde(flatten)]
    pub counters: CameraCountersSnapshot,
}

struct Slot {
    config: CameraConfig,
    version: u64,
    runtime: Arc<CameraRuntime>,
    worker: Option<CameraWorker>,
    /// This instance holds the camera's lease.
    leased: bool,
    /// The owner's published state, when another instance runs the camera.
    remote: Option<RemoteStatus>,
}

pub struct Registry {
    slots: Mutex<Inner>,
    /// This instance's id, shown as `owner` of the cameras it runs.
    instance_id: String,
    /// What each camera's worker thread runs (the pipeline's capture stage).
    capture: Arc<dyn CaptureLoop>,
    metrics: Arc<Metrics>,
}

struct Inner {
    cameras: BTreeMap<String, Slot>,
    /// The newest revision of Redis's state this cache has seen.
    rev: u64,
    closed: bool,
}

impl Registry {
    pub fn new(instance_id: &str, capture: Arc<dyn CaptureLoop>, metrics: Arc<Metrics>) -> Self {
        Registry {
            slots: Mutex::new(Inner { cameras: BTreeMap::new(), rev: 0, closed: false }),
            instance_id: instance_id.to_string(),
            capture,
            metrics,
        }
    }

    /// The newest revision this cache holds.
    pub fn rev(&self) -> u64 {
        self.slots.lock().rev
    }

    /// Applies changes the API has just written to Redis (with the versions Redis gave them).
    /// Returns the cameras whose lease should be given up (set inactive here).
    pub fn upsert(&self, rev: u64, changes: Vec<(u64, CameraConfig)>) -> Vec<String> {
        let mut to_join = Vec::new();
        let mut release = Vec::new();
        {
            let mut inner = self.slots.lock();
            if inner.closed {
                return release;
            }
            inner.rev = inner.rev.max(rev);
            for (version, cfg) in changes {
                self.put(&mut inner, version, cfg, &mut to_join, &mut release);
            }
        }
        for w in to_join {
            w.join();
        }
        release
    }

    /// Makes the cache equal to a snapshot of Redis at revision `rev` (ignored when the cache
    /// is already newer). Returns the cameras whose lease should be given up (deleted or set
    /// inactive).
    pub fn sync(&self, rev: u64, cameras: BTreeMap<String, (u64, CameraConfig)>) -> Vec<String> {
        let mut to_join = Vec::new();
        let mut release = Vec::new();
        {
            let mut inner = self.slots.lock();
            if inner.closed || rev < inner.rev {
                return release;
            }
            inner.rev = rev;
            let gone: Vec<String> = inner.cameras.keys().filter(|id| !cameras.contains_key(*id)).cloned().collect();
            for id in gone {
                if let Some(slot) = inner.cameras.remove(&id) {
                    if slot.leased {
                        release.push(id.clone());
                    }
                    self.retire(slot, &mut to_join);
                    log::info!("camera {id}: deleted (by another instance)");
                }
            }
            for (_, (version, cfg)) in cameras {
                self.put(&mut inner, version, cfg, &mut to_join, &mut release);
            }
        }
        for w in to_join {
            w.join();
        }
        release
    }

    /// Creates or updates one camera in the cache if `version` is newer than what it holds.
    fn put(&self, inner: &mut Inner, version: u64, cfg: CameraConfig, to_join: &mut Vec<CameraWorker>, release: &mut Vec<String>) {
        let id = cfg.camera_id.clone();
        match inner.cameras.get_mut(&id) {
            Some(slot) if slot.version >= version => {}
            Some(slot) => {
                slot.version = version;
                if slot.config == cfg {
                    return;
                }
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
                        if slot.leased {
                            slot.leased = false;
                            release.push(id.clone());
                        }
                        slot.runtime.end_generation(CameraState::Stopped, None);
                    }
                    DesiredStatus::Active if slot.leased && (url_changed || slot.worker.is_none()) => {
                        if let Some(w) = slot.worker.take() {
                            to_join.push(w);
                        }
                        log::info!("camera {id}: (re)starting on {}", slot.config.stream_url);
                        self.start(slot);
                    }
                    DesiredStatus::Active => {}
                }
            }
            None => {
                let runtime = CameraRuntime::new(&id, cfg.parameters.clone(), self.metrics.camera(&id));
                log::info!("camera {id}: registered ({}, {:?}, version {version})", cfg.stream_url, cfg.status);
                inner.cameras.insert(id, Slot { config: cfg, version, runtime, worker: None, leased: false, remote: None });
            }
        }
    }

    /// Stops a slot that leaves the cache: its worker goes to `to_join`, its metrics go.
    fn retire(&self, mut slot: Slot, to_join: &mut Vec<CameraWorker>) {
        if let Some(w) = slot.worker.take() {
            to_join.push(w);
        }
        slot.runtime.end_generation(CameraState::Stopped, None);
        self.metrics.remove_camera(&slot.config.camera_id);
    }

    /// This instance now holds the camera's lease: start its worker. False if the camera is
    /// unknown, inactive, or the registry is closing (the caller gives the lease back).
    pub fn take(&self, camera_id: &str) -> bool {
        let mut inner = self.slots.lock();
        if inner.closed {
            return false;
        }
        let Some(slot) = inner.cameras.get_mut(camera_id) else { return false };
        if slot.config.status != DesiredStatus::Active {
            return false;
        }
        slot.leased = true;
        slot.remote = None;
        if slot.worker.is_none() {
            log::info!("camera {camera_id}: lease taken, starting on {}", slot.config.stream_url);
            self.start(slot);
        }
        true
    }

    /// The lease is gone (lost to another instance, or given up): stop the worker now.
    pub fn drop_lease(&self, camera_id: &str) {
        let worker = {
            let mut inner = self.slots.lock();
            let Some(slot) = inner.cameras.get_mut(camera_id) else { return };
            slot.leased = false;
            let w = slot.worker.take();
            slot.runtime.end_generation(CameraState::Stopped, None);
            w
        };
        if let Some(w) = worker {
            log::info!("camera {camera_id}: lease given up or lost, stopping");
            w.join();
        }
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

    /// Cameras whose lease this instance holds.
    pub fn leased(&self) -> Vec<String> {
        self.slots.lock().cameras.iter().filter(|(_, s)| s.leased).map(|(id, _)| id.clone()).collect()
    }

    /// Active cameras (leased here or not): the ones some instance should run.
    pub fn active(&self) -> Vec<String> {
        self.slots.lock().cameras.iter().filter(|(_, s)| s.config.status == DesiredStatus::Active).map(|(id, _)| id.clone()).collect()
    }

    /// The whole cache as (id, version, config), for writing back into a Redis that lost it.
    pub fn configs(&self) -> (u64, Vec<(String, u64, CameraConfig)>) {
        let inner = self.slots.lock();
        (inner.rev, inner.cameras.iter().map(|(id, s)| (id.clone(), s.version, s.config.clone())).collect())
    }

    /// Live state of the leased cameras, as published to the other instances.
    pub fn leased_status(&self) -> Vec<(String, RemoteStatus)> {
        let inner = self.slots.lock();
        inner
            .cameras
            .iter()
            .filter(|(_, s)| s.leased)
            .map(|(id, s)| {
                (
                    id.clone(),
                    RemoteStatus {
                        owner: self.instance_id.clone(),
                        status: s.runtime.status(),
                        counters: s.runtime.counters.snapshot(),
                        at_ms: 0,
                        counts: s.runtime.counters.counts().and_then(|c| serde_json::to_value(c).ok()),
                    },
                )
            })
            .collect()
    }

    /// Records (or, with `None`, forgets) what the owners of cameras run elsewhere publish.
    pub fn set_remote(&self, remote: Vec<(String, Option<RemoteStatus>)>) {
        let mut inner = self.slots.lock();
        for (id, r) in remote {
            if let Some(slot) = inner.cameras.get_mut(&id) {
                if !slot.leased {
                    slot.remote = r;
                }
            }
        }
    }

    pub fn list(&self) -> Vec<CameraView> {
        let inner = self.slots.lock();
        inner.cameras.values().map(|s| self.view(s)).collect()
    }

    /// A camera's zone analytics counts (docs/api.md, "Counts"): `{camera_id, owner, zones,
    /// lines}` from its worker here, else from what its owner last published in Redis (at most
    /// a status tick old), else zeros (no instance runs it: counts start when one does).
    pub fn counts(&self, camera_id: &str) -> Option<serde_json::Value> {
        let inner = self.slots.lock();
        let s = inner.cameras.get(camera_id)?;
        let (owner, counts) = if s.leased {
            (Some(self.instance_id.clone()), s.runtime.counters.counts().and_then(|c| serde_json::to_value(c).ok()))
        } else {
            match (&s.remote, s.config.status) {
                (Some(r), DesiredStatus::Active) => (Some(r.owner.clone()), r.counts.clone()),
                _ => (None, None),
            }
        };
        Some(counts_reply(camera_id, owner, counts, &s.config))
    }

    /// Resets the line totals of a camera this instance runs (its track stage does so at once).
    /// A camera no instance runs has nothing to reset (zeros); one another instance runs is
    /// that instance's to reset. `None` if unknown.
    pub fn reset_counts(&self, camera_id: &str) -> Option<CountsReset> {
        let inner = self.slots.lock();
        let s = inner.cameras.get(camera_id)?;
        if !s.leased {
            return Some(match s.remote.as_ref().filter(|_| s.config.status == DesiredStatus::Active) {
                Some(r) => CountsReset::Elsewhere(r.owner.clone()),
                // no instance runs it: its counts are zero already (they start when one does)
                None => CountsReset::Done(counts_reply(camera_id, None, None, &s.config)),
            });
        }
        let counters = &s.runtime.counters;
        counters.request_counts_reset();
        let mut counts = counters.counts();
        if let Some(c) = counts.as_mut() {
            c.lines.values_mut().for_each(|l| l.clear());
            counters.set_counts(Some(c.clone()));
        }
        let counts = counts.and_then(|c| serde_json::to_value(c).ok());
        Some(CountsReset::Done(counts_reply(camera_id, Some(self.instance_id.clone()), counts, &s.config)))
    }

    pub fn get(&self, camera_id: &str) -> Option<CameraView> {
        self.slots.lock().cameras.get(camera_id).map(|s| self.view(s))
    }

    fn view(&self, s: &Slot) -> CameraView {
        let (config, version) = (s.config.clone(), s.version);
        if s.leased {
            return CameraView {
                config,
                version,
                owner: Some(self.instance_id.clone()),
                status: s.runtime.status(),
                counters: s.runtime.counters.snapshot(),
            };
        }
        match (&s.remote, s.config.status) {
            (Some(r), DesiredStatus::Active) => {
                CameraView { config, version, owner: Some(r.owner.clone()), status: r.status.clone(), counters: r.counters }
            }
            (_, status) => {
                let mut st = s.runtime.status();
                if status == DesiredStatus::Active && st.state != CameraState::Error {
                    st.state = CameraState::Pending;
                }
                CameraView { config, version, owner: None, status: st, counters: s.runtime.counters.snapshot() }
            }
        }
    }

    /// Removes a camera the API has just deleted in Redis (at revision `rev`, so a snapshot
    /// older than the delete cannot bring it back); its worker stops. `None` if unknown. The
    /// bool says whether this instance held its lease.
    pub fn remove(&self, camera_id: &str, rev: u64) -> Option<(CameraView, bool)> {
        let slot = {
            let mut inner = self.slots.lock();
            inner.rev = inner.rev.max(rev);
            inner.cameras.remove(camera_id)?
        };
        let leased = slot.leased;
        let mut to_join = Vec::new();
        let view = self.view(&slot);
        self.retire(slot, &mut to_join);
        for w in to_join {
            w.join();
        }
        log::info!("camera {camera_id}: deleted");
        let mut view = view;
        view.status.state = CameraState::Stopped;
        view.owner = None;
        Some((view, leased))
    }

    /// Refuses further changes, stops every worker and waits for them (shutdown). Returns the
    /// cameras whose lease this instance held.
    pub fn shutdown(&self) -> Vec<String> {
        let (leased, mut workers): (Vec<String>, Vec<(Arc<CameraRuntime>, CameraWorker)>) = {
            let mut inner = self.slots.lock();
            inner.closed = true;
            let leased = inner.cameras.iter().filter(|(_, s)| s.leased).map(|(id, _)| id.clone()).collect();
            let workers = inner
                .cameras
                .values_mut()
                .filter_map(|s| {
                    s.leased = false;
                    s.worker.take().map(|w| (s.runtime.clone(), w))
                })
                .collect();
            (leased, workers)
        };
        // Signal all first so they wind down in parallel, then join one by one.
        for (_, w) in workers.iter_mut() {
            w.signal_stop();
        }
        for (rt, w) in workers {
            w.join();
            rt.end_generation(CameraState::Stopped, None);
        }
        leased
    }

    /// Number of cameras in each state in a listing, for `/api/health`.
    pub fn state_counts(views: &[CameraView]) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> = CameraState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for v in views {
            *counts.entry(v.status.state.as_str()).or_default() += 1;
        }
        counts
    }
}

/// The counts reply: `counts` when known, else every zone and line of the camera at zero.
fn counts_reply(camera_id: &str, owner: Option<String>, counts: Option<serde_json::Value>, cfg: &CameraConfig) -> serde_json::Value {
    let empty = |names: Vec<&String>| names.into_iter().map(|n| (n.clone(), serde_json::json!({}))).collect::<serde_json::Map<_, _>>();
    let counts = counts.unwrap_or_else(|| {
        let p = &cfg.parameters;
        serde_json::json!({"zones": empty(p.roi_zones.iter().map(|z| &z.name).collect()), "lines": empty(p.lines.iter().map(|l| &l.name).collect())})
    });
    serde_json::json!({"camera_id": camera_id, "owner": owner, "zones": counts["zones"], "lines": counts["lines"]})
}
