//! Many instances, one service (docs/architecture.md, "The contract in one page"): the camera registry's desired state
//! lives in Redis, and each active camera is run by exactly one instance holding its lease.
//!
//! [`Cluster`] is what the API calls: writes go to Redis first (a Lua script: all or nothing,
//! versioned) and then into this instance's [`Registry`] cache; reads answer from the cache,
//! so they keep working while Redis is away; writes then answer 503. The [`Coordinator`]
//! thread does the rest (see its module): heartbeats, reloads, leases, fair share.
//!
//! Redis is the only coordination: no instance talks to another. The lease is the truth about
//! who runs a camera; an instance that cannot renew a lease because *Redis* is unreachable
//! keeps running its cameras (the contract: running cameras keep running), so during a network
//! partition that isolates one instance from Redis for longer than `LEASE_TTL_S`, another
//! instance may take its cameras and both run them until the isolated one reaches Redis again
//! and stops at its first renewal.

pub mod coordinator;
pub mod share;
pub mod store;

pub use coordinator::Coordinator;
use store::{stored_json, Store, StoreError, Written};

use crate::camera::validate;
use crate::camera::{ApplyOutcome, CameraConfig, CameraView, Registry};
use crate::redis_target::RedisTarget;
use crate::stage::supervise::{beat, Supervisor};
use crate::stage::{StageHandle, StageThread, Stop, StopSender};
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the cluster needs from the configuration.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `INSTANCE_ID`.
    pub instance_id: String,
    /// `REDIS_KEY_PREFIX`.
    pub prefix: String,
    /// `LEASE_TTL_S`.
    pub lease_ttl: Duration,
    /// `MAX_CAMERAS`: the most cameras this instance runs, and its share of the capacity.
    pub max_cameras: usize,
    /// Stored cameras are validated as if POSTed here.
    pub validate: validate::Context,
}

impl ClusterSettings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        ClusterSettings {
            instance_id: c.instance_id.clone(),
            prefix: c.redis_key_prefix.clone(),
            lease_ttl: c.lease_ttl,
            max_cameras: c.max_cameras,
            validate: validate::Context { file_root: c.stream_file_root.clone() },
        }
    }
}

/// What the coordinator last learnt, for health and for the API's capacity check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterState {
    /// Whether the last tick reached Redis.
    pub redis_ok: bool,
    pub last_error: Option<String>,
    /// Live instances and their `MAX_CAMERAS`.
    pub instances: BTreeMap<String, usize>,
    /// This instance's fair share, and how many it holds.
    pub target: usize,
    pub held: usize,
    /// Stored cameras this instance cannot run (invalid here).
    pub unusable: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the service is shutting down")]
    ShuttingDown,
}

/// Lets the API wait for the coordinator's next complete tick after a write.
struct Ticks {
    /// (ticks started, last tick completed)
    count: Mutex<(u64, u64)>,
    done: Condvar,
    wake: Sender<()>,
}

impl Ticks {
    /// Wakes the coordinator and waits (at most `limit`) until a tick that began after now ends.
    fn nudge_and_wait(&self, limit: Duration) {
        let mut c = self.count.lock();
        let after = c.0;
        let _ = self.wake.try_send(());
        let deadline = Instant::now() + limit;
        while c.1 <= after {
            if self.done.wait_until(&mut c, deadline).timed_out() {
                return;
            }
        }
    }
}

pub struct Cluster {
    settings: ClusterSettings,
    registry: Arc<Registry>,
    /// The API's own connection (the coordinator has another).
    store: Mutex<Store>,
    state: Arc<Mutex<ClusterState>>,
    ticks: Arc<Ticks>,
    thread: Mutex<Option<(StopSender, StageHandle)>>,
    coordinator: Arc<Mutex<Coordinator>>,
}

impl Cluster {
    /// Runs the first tick inline (so a restarted instance lists and resumes its cameras
    /// before the API opens), then starts the coordinator thread.
    pub fn start(
        settings: ClusterSettings,
        target: RedisTarget,
        registry: Arc<Registry>,
        supervisor: &Supervisor,
    ) -> std::io::Result<Arc<Cluster>> {
        let state = Arc::new(Mutex::new(ClusterState {
            instances: BTreeMap::from([(settings.instance_id.clone(), settings.max_cameras)]),
            ..Default::default()
        }));
        let coordinator = Arc::new(Mutex::new(Coordinator::new(
            settings.clone(),
            registry.clone(),
            Store::new(target.clone(), &settings.prefix),
            state.clone(),
        )));
        coordinator.lock().tick();
        let (wake_tx, wake_rx) = bounded::<()>(1);
        let ticks = Arc::new(Ticks { count: Mutex::new((0, 0)), done: Condvar::new(), wake: wake_tx });
        let stop_tx = StopSender::new();
        let period = Coordinator::period(settings.lease_ttl);
        let thread = {
            let (coordinator, ticks, stop) = (coordinator.clone(), ticks.clone(), stop_tx.subscribe());
            StageHandle::new(
                "cluster",
                vec![StageThread::spawn("cluster", supervisor, move || run(coordinator, ticks, period, wake_rx, stop))?],
            )
        };
        log::info!(
            "cluster: instance '{}' on prefix '{}', lease TTL {:?}, tick {:?}, MAX_CAMERAS {}",
            settings.instance_id,
            settings.prefix,
            settings.lease_ttl,
            period,
            settings.max_cameras
        );
        Ok(Arc::new(Cluster {
            store: Mutex::new(Store::new(target, &settings.prefix)),
            settings,
            registry,
            state,
            ticks,
            thread: Mutex::new(Some((stop_tx, thread))),
            coordinator,
        }))
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn instance_id(&self) -> &str {
        &self.settings.instance_id
    }

    pub fn state(&self) -> ClusterState {
        self.state.lock().clone()
    }

    /// Creates or updates cameras: in Redis first (all or nothing, refused past the live
    /// instances' capacity), then here; then waits briefly for the coordinator to take the
    /// leases this instance's share allows, so the reply shows who runs each camera.
    pub fn apply(&self, configs: Vec<CameraConfig>) -> Result<Vec<(ApplyOutcome, CameraView)>, ClusterError> {
        if self.thread.lock().is_none() {
            return Err(ClusterError::ShuttingDown);
        }
        let capacity: usize = self.state.lock().instances.values().sum::<usize>().max(self.settings.max_cameras);
        let rows: Vec<(String, String)> = configs.iter().map(|c| (c.camera_id.clone(), stored_json(c))).collect();
        let (rev, written) = self.store.lock().apply(&rows, capacity)?;
        let changes: Vec<(u64, CameraConfig)> = written.iter().map(|(_, v)| *v).zip(configs).collect();
        let release = self.registry.upsert(rev, changes.clone());
        if !release.is_empty() {
            if let Err(e) = self.store.lock().release(&self.settings.instance_id, &release) {
                log::warn!("cluster: could not give back the leases of {release:?} ({e}); they expire in {:?}", self.settings.lease_ttl);
            }
        }
        self.ticks.nudge_and_wait(Duration::from_secs(2));
        // The reply shows what this request wrote, with its version, even where a concurrent
        // writer has changed the camera since; owner and live state are the current ones.
        Ok(changes
            .into_iter()
            .zip(written)
            .filter_map(|((version, cfg), (w, _))| {
                let outcome = match w {
                    Written::Created => ApplyOutcome::Created,
                    Written::Updated => ApplyOutcome::Updated,
                    Written::Unchanged => ApplyOutcome::Unchanged,
                };
                let mut view = self.registry.get(&cfg.camera_id)?;
                view.config = cfg;
                view.version = version;
                Some((outcome, view))
            })
            .collect())
    }

    /// Deletes a camera everywhere: in Redis, here, and (through the revision) on its owner,
    /// which stops it at its next tick. `None` if it is not registered.
    pub fn delete(&self, camera_id: &str) -> Result<Option<CameraView>, ClusterError> {
        let deleted = self.store.lock().delete(camera_id)?;
        let local = self.registry.remove(camera_id, deleted.unwrap_or(0));
        if let Some((_, true)) = &local {
            if let Err(e) = self.store.lock().release(&self.settings.instance_id, &[camera_id.to_string()]) {
                log::warn!("cluster: could not give back the lease of {camera_id} ({e})");
            }
        }
        self.ticks.nudge_and_wait(Duration::from_millis(500));
        Ok(deleted.and(local.map(|(v, _)| v)))
    }

    /// Stops the coordinator and every camera, gives the leases back, leaves the live set.
    pub fn shutdown(&self) {
        let Some((mut stop, thread)) = self.thread.lock().take() else { return };
        stop.fire();
        thread.join();
        let leased = self.registry.shutdown();
        self.coordinator.lock().leave(&leased);
    }
}

impl Cluster {
    /// Stops this instance the way a crash (`kill -9`) would, for hand-over tests and the
    /// simulation: the coordinator and the workers stop, but no lease is given back and the
    /// instance stays in the live set until its heartbeat ages out.
    pub fn halt_as_if_crashed(&self) {
        let Some((mut stop, thread)) = self.thread.lock().take() else { return };
        stop.fire();
        thread.join();
        self.registry.shutdown();
    }
}

fn run(coordinator: Arc<Mutex<Coordinator>>, ticks: Arc<Ticks>, period: Duration, wake: Receiver<()>, stop: Stop) {
    let mut next = Instant::now() + period;
    loop {
        beat();
        crossbeam_channel::select! {
            recv(stop.receiver()) -> _ => return, // fired: shutdown
            recv(wake) -> r => if r.is_err() { return },
            default(next.saturating_duration_since(Instant::now())) => {}
        }
        let started = {
            let mut c = ticks.count.lock();
            c.0 += 1;
            c.0
        };
        coordinator.lock().tick();
        {
            let mut c = ticks.count.lock();
            c.1 = started;
        }
        ticks.done.notify_all();
        next = Instant::now() + period;
    }
}
