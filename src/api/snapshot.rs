//! Redis as `/api/health` and `/readyz` see it, cached: one kept connection and at most one
//! PING a second, however many clients ask (the old health opened a connection per request, so
//! an unauthenticated flood of `GET /api/health` was a flood of Redis connections).
//!
//! The refresh is lazy: the first request after the value is 1 s old pings (500 ms timeout) on
//! its handler thread while the others answer from the previous value.

use crate::redis_target::RedisTarget;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How old a cached PING may be.
pub const MAX_AGE: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// The last PING: its round trip or why it failed.
pub type Ping = Result<Duration, String>;

pub struct RedisSnapshot {
    target: RedisTarget,
    conn: Mutex<Option<redis::Connection>>,
    last: Mutex<Option<(Instant, Ping)>>,
    /// Latched once the cluster has read the registry from Redis (readiness).
    registry_loaded: AtomicBool,
}

impl RedisSnapshot {
    pub fn new(target: RedisTarget) -> RedisSnapshot {
        RedisSnapshot { target, conn: Mutex::new(None), last: Mutex::new(None), registry_loaded: AtomicBool::new(false) }
    }

    /// The PING at most [`MAX_AGE`] old (or the previous one while another thread refreshes).
    pub fn ping(&self) -> Ping {
        if let Some((at, p)) = &*self.last.lock() {
            if at.elapsed() <= MAX_AGE {
                return p.clone();
            }
        }
        let mut conn = match self.conn.try_lock() {
            Some(c) => c,
            None => {
                if let Some((_, p)) = &*self.last.lock() {
                    return p.clone();
                }
                self.conn.lock()
            }
        };
        // another thread may have refreshed while this one waited for the connection
        if let Some((at, p)) = &*self.last.lock() {
            if at.elapsed() <= MAX_AGE {
                return p.clone();
            }
        }
        let t0 = Instant::now();
        let result = (|| {
            if conn.is_none() {
                *conn = Some(self.target.connect(PING_TIMEOUT).map_err(|e| e.to_string())?);
            }
            let c = conn.as_mut().expect("connected above");
            redis::cmd("PING").query::<String>(c).map_err(|e| e.to_string())?;
            Ok(t0.elapsed())
        })();
        if result.is_err() {
            *conn = None; // reconnect next time
        }
        *self.last.lock() = Some((Instant::now(), result.clone()));
        result
    }

    /// Whether the registry has been loaded from Redis: latched the first time `redis_ok` is
    /// seen (the cluster's first tick runs before the API opens).
    pub fn registry_loaded(&self, cluster_redis_ok: bool) -> bool {
        if cluster_redis_ok {
            self.registry_loaded.store(true, Ordering::Relaxed);
        }
        self.registry_loaded.load(Ordering::Relaxed)
    }
}
