//! The coordinator thread: keeps this instance's registry equal to the desired state in Redis
//! and holds exactly its fair share of the camera leases.
//!
//! One tick, every `LEASE_TTL_S / 5` (at most 1 s) or at once when the API has just written:
//! 1. heartbeat, which returns the live instances and their `MAX_CAMERAS`;
//! 2. if Redis's revision moved, load the snapshot into the registry; if Redis is *behind* the
//!    cache (it restarted empty, or from an older save), write the cache back first;
//! 3. renew every lease held (re-taking any that vanished); a lease now held by another
//!    instance stops that camera's worker at once;
//! 4. compare the count held with this instance's fair share: give up the excess, or take free
//!    cameras in rendezvous order;
//! 5. publish the state of the cameras run here, and read the state of the others (every few
//!    ticks) so that any instance can list every camera.
//!
//! While Redis is unreachable the tick fails early and nothing is stopped: cameras keep running
//! on their owner, events buffer in the publisher. After Redis returns, this instance renews
//! (re-takes) its own leases at once but waits two ticks before taking free cameras, so every
//! other live instance has re-taken its own first.

use super::share::{fair_targets, preference};
use super::store::{Snapshot, Store};
use super::{ClusterSettings, ClusterState};
use crate::camera::registry::RemoteStatus;
use crate::camera::validate::validate_cameras;
use crate::camera::{CameraConfig, Registry};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Remote states are read every this many ticks (they only feed listings).
const READ_REMOTE_EVERY: u64 = 5;

pub struct Coordinator {
    settings: ClusterSettings,
    registry: Arc<Registry>,
    store: Store,
    state: Arc<Mutex<ClusterState>>,
    /// The revision last loaded from Redis.
    loaded_rev: Option<u64>,
    /// Free cameras are taken only after this (a grace after Redis came back).
    acquire_after: Instant,
    /// Whether the previous tick reached Redis.
    reachable: Option<bool>,
    ticks: u64,
}

impl Coordinator {
    pub fn new(settings: ClusterSettings, registry: Arc<Registry>, store: Store, state: Arc<Mutex<ClusterState>>) -> Self {
        Coordinator { settings, registry, store, state, loaded_rev: None, acquire_after: Instant::now(), reachable: None, ticks: 0 }
    }

    /// How often a tick runs: a fifth of the lease TTL, between 100 ms and 1 s.
    pub fn period(ttl: Duration) -> Duration {
        (ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// One tick; a Redis failure is recorded in the shared state and logged on change.
    pub fn tick(&mut self) {
        self.ticks += 1;
        match self.try_tick() {
            Ok(()) => {
                if self.reachable == Some(false) {
                    log::info!("cluster: Redis is reachable again; re-taking this instance's leases");
                }
                self.reachable = Some(true);
                let mut st = self.state.lock();
                st.redis_ok = true;
                st.last_error = None;
            }
            Err(e) => {
                if self.reachable != Some(false) {
                    log::warn!(
                        "cluster: Redis unreachable ({e}); cameras keep running here, the registry is served from the last known state"
                    );
                }
                if self.reachable == Some(true) || self.reachable.is_none() {
                    // when it returns, let the other instances re-take their own leases first
                    self.loaded_rev = None;
                }
                self.reachable = Some(false);
                let mut st = self.state.lock();
                st.redis_ok = false;
                st.last_error = Some(e.to_string());
            }
        }
    }

    fn try_tick(&mut self) -> redis::RedisResult<()> {
        let s = &self.settings;
        let ttl = s.lease_ttl;
        let info = serde_json::json!({"max_cameras": s.max_cameras, "version": env!("CARGO_PKG_VERSION")}).to_string();
        let (now_ms, live) = self.store.heartbeat(&s.instance_id, ttl, &info)?;
        if self.reachable == Some(false) {
            self.acquire_after = Instant::now() + Self::period(ttl) * 2 + Duration::from_millis(200);
        }
        let caps: BTreeMap<String, usize> = live
            .iter()
            .map(|(id, info)| {
                let cap = serde_json::from_str::<serde_json::Value>(info).ok().and_then(|v| v["max_cameras"].as_u64()).unwrap_or(0);
                (id.clone(), cap as usize)
            })
            .collect();

        // 2. desired state
        let mut rev = self.store.rev()?;
        if rev < self.registry.rev() {
            let (cached_rev, cached) = self.registry.configs();
            let snap = Snapshot {
                rev: cached_rev,
                cameras: cached.iter().map(|(id, v, cfg)| (id.clone(), (*v, super::store::stored_json(cfg)))).collect(),
            };
            if self.store.seed(&snap)? {
                log::warn!(
                    "cluster: Redis held revision {rev} of the camera registry, behind this instance's {cached_rev} (restarted without its data?); wrote the {} cameras back",
                    snap.cameras.len()
                );
            }
            rev = self.store.rev()?;
        }
        if self.loaded_rev != Some(rev) {
            let snap = self.store.snapshot()?;
            let cameras = self.parse(&snap);
            let release = self.registry.sync(snap.rev, cameras);
            self.store.release(&s.instance_id, &release)?;
            self.loaded_rev = Some(snap.rev);
        }

        // 3. renew
        let leased = self.registry.leased();
        let held = self.store.renew(&s.instance_id, &leased, ttl)?;
        let mut owned = Vec::with_capacity(leased.len());
        for (id, ok) in leased.into_iter().zip(held) {
            if ok {
                owned.push(id);
            } else {
                log::warn!("camera {id}: its lease is held by another instance now; stopping it here");
                self.registry.drop_lease(&id);
            }
        }

        // 4. fair share
        let active = self.registry.active();
        let targets = fair_targets(&caps, active.len());
        let target = targets.get(&s.instance_id).copied().unwrap_or(0);
        if owned.len() > target {
            // give up the cameras this instance likes least: other instances prefer them more
            owned.sort_by_key(|c| std::cmp::Reverse(preference(&s.instance_id, c)));
            let excess = owned.split_off(target);
            for id in &excess {
                self.registry.drop_lease(id);
            }
            self.store.release(&s.instance_id, &excess)?;
            log::info!(
                "cluster: holding {} cameras, fair share {target} of {} on {} instances; gave up {excess:?}",
                owned.len() + excess.len(),
                active.len(),
                caps.len()
            );
        } else if owned.len() < target && Instant::now() >= self.acquire_after {
            let mut candidates: Vec<String> = active.iter().filter(|c| !owned.contains(c)).cloned().collect();
            let owners = self.store.owners(&candidates)?;
            let mut free: Vec<String> = candidates.drain(..).zip(owners).filter(|(_, o)| o.is_none()).map(|(c, _)| c).collect();
            free.sort_by_key(|c| std::cmp::Reverse(preference(&s.instance_id, c)));
            free.truncate(target - owned.len());
            let taken = self.store.acquire(&s.instance_id, &free, ttl)?;
            let mut refused = Vec::new();
            for (id, ok) in free.into_iter().zip(taken) {
                if ok {
                    if self.registry.take(&id) {
                        owned.push(id);
                    } else {
                        refused.push(id);
                    }
                }
            }
            self.store.release(&s.instance_id, &refused)?;
        }

        // 5. live state for listings
        let mine: Vec<(String, String)> = self
            .registry
            .leased_status()
            .into_iter()
            .map(|(id, mut r)| {
                r.at_ms = now_ms;
                (id, serde_json::to_string(&r).unwrap_or_default())
            })
            .collect();
        self.store.publish_status(&mine)?;
        if self.ticks % READ_REMOTE_EVERY == 1 {
            let others: Vec<String> = active.into_iter().filter(|c| !owned.contains(c)).collect();
            let stale_ms = ttl.as_millis() as u64;
            let remote = self.store.statuses(&others)?;
            let remote = others
                .into_iter()
                .zip(remote)
                .map(|(id, json)| {
                    let r = json
                        .and_then(|j| serde_json::from_str::<RemoteStatus>(&j).ok())
                        .filter(|r| now_ms.saturating_sub(r.at_ms) <= stale_ms);
                    (id, r)
                })
                .collect();
            self.registry.set_remote(remote);
        }
        let mut st = self.state.lock();
        st.instances = caps;
        st.target = target;
        st.held = owned.len();
        Ok(())
    }

    /// Validates each stored camera as if it had been POSTed here: a configuration this
    /// instance cannot run (another `STREAM_FILE_ROOT`, say) is left out and logged, not fatal.
    fn parse(&self, snap: &Snapshot) -> BTreeMap<String, (u64, CameraConfig)> {
        let mut out = BTreeMap::new();
        let mut bad = Vec::new();
        for (id, (version, json)) in &snap.cameras {
            let parsed = serde_json::from_str::<serde_json::Value>(json).map_err(|e| e.to_string()).and_then(|v| {
                validate_cameras(&v, &self.settings.validate).map_err(|i| format!("{:?}", i.issues.first().map(|x| &x.message)))
            });
            match parsed {
                Ok(mut v) if v.cameras.len() == 1 && v.cameras[0].camera_id == *id => {
                    out.insert(id.clone(), (*version, v.cameras.remove(0)));
                }
                Ok(_) => bad.push(format!("{id}: the stored id does not match")),
                Err(e) => bad.push(format!("{id}: {e}")),
            }
        }
        if !bad.is_empty() {
            log::error!("cluster: {} stored camera(s) cannot run on this instance and are left out: {}", bad.len(), bad.join("; "));
        }
        self.state.lock().unusable = bad;
        out
    }

    /// Clean shutdown: give every lease back and leave the live set, so the other instances
    /// take the cameras at their next tick instead of after the TTL.
    pub fn leave(&mut self, leased: &[String]) {
        let me = self.settings.instance_id.clone();
        match self.store.release(&me, leased).and_then(|_| self.store.leave(&me)) {
            Ok(()) => log::info!("cluster: gave back {} lease(s) and left", leased.len()),
            Err(e) => log::warn!("cluster: could not give the leases back ({e}); they expire in {:?}", self.settings.lease_ttl),
        }
    }
}
