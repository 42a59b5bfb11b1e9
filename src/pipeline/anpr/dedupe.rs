//! Plate dedupe: the same plate (or one within edit distance 1: a misread character) on the
//! same camera is published once per window, whatever the confidence of the later reads.
//! (A more confident read one character away was once published as a "correction": a still
//! plate read again and again, by the whole-frame search, with no vote to settle its
//! characters, came out twice within the window, the second time when its file was opened
//! again. A track's plate is voted over its reads before it gets here; a consumer that wants
//! the better read has it in the object's `license_plate`.)
//! Time comes from an injected [`Clock`] so tests need no sleeping.
//!
//! With several instances, a camera can move to another instance mid-window
//! (docs/architecture.md, "Redis keys"); [`SharedDedupe`] then keeps the window across them: before a new plate is
//! published, `SET <prefix>anpr:<camera>:<plate> <instance> NX EX <window>` must succeed. That
//! key is exact, so the edit-distance-1 tolerance stays per instance. If Redis cannot be
//! reached the read is published (at least once rather than lost) and Redis is not asked again
//! for 5 s.

use super::text::edit_distance;
use crate::redis_target::RedisTarget;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A source of "now".
pub trait Clock: Send {
    fn now(&self) -> Instant;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

struct Seen {
    plate: String,
    /// When it was published: the window runs from then.
    at: Instant,
}

/// Per-camera memory of recently published plates. Entries older than the window are pruned on
/// every call, so memory stays bounded by what a camera can read in one window.
pub struct Dedupe<C: Clock> {
    window: Duration,
    clock: C,
    seen: HashMap<String, Vec<Seen>>,
    shared: Option<SharedDedupe>,
}

impl<C: Clock> Dedupe<C> {
    pub fn new(window: Duration, clock: C) -> Self {
        Dedupe { window, clock, seen: HashMap::new(), shared: None }
    }

    /// Also keeps the window across instances, in Redis.
    pub fn with_shared(mut self, shared: SharedDedupe) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Whether a read of `plate` on `camera` should be published; records it if so.
    pub fn should_publish(&mut self, camera: &str, plate: &str) -> bool {
        let now = self.clock.now();
        let window = self.window;
        let list = self.seen.entry(camera.to_string()).or_default();
        list.retain(|s| now.duration_since(s.at) < window);
        match list.iter().find(|s| edit_distance(&s.plate, plate) <= 1) {
            Some(_) => false,
            None => {
                list.push(Seen { plate: plate.to_string(), at: now });
                self.shared.as_mut().is_none_or(|s| s.claim(camera, plate, window))
            }
        }
    }

    /// Drops every memory older than the window, and cameras left with none (deleted cameras
    /// disappear this way, so the map never outgrows the cameras active within one window).
    pub fn sweep(&mut self) {
        let (now, window) = (self.clock.now(), self.window);
        self.seen.retain(|_, list| {
            list.retain(|s| now.duration_since(s.at) < window);
            !list.is_empty()
        });
    }

    /// Cameras with something remembered.
    pub fn cameras(&self) -> usize {
        self.seen.len()
    }
}

/// The part of the dedupe window kept in Redis, for cameras that change instance.
pub struct SharedDedupe {
    target: RedisTarget,
    prefix: String,
    instance_id: String,
    conn: Option<redis::Connection>,
    /// After a failure Redis is left alone until then.
    retry_at: Option<Instant>,
}

impl SharedDedupe {
    pub fn new(target: RedisTarget, prefix: &str, instance_id: &str) -> Self {
        SharedDedupe { target, prefix: prefix.to_string(), instance_id: instance_id.to_string(), conn: None, retry_at: None }
    }

    /// Whether this instance may publish `plate` on `camera` now: true unless another instance
    /// (or this one before a restart) published it within `window`.
    pub fn claim(&mut self, camera: &str, plate: &str, window: Duration) -> bool {
        let secs = window.as_secs();
        if secs == 0 || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        let key = format!("{}anpr:{camera}:{plate}", self.prefix);
        let result = (|| -> redis::RedisResult<bool> {
            if self.conn.is_none() {
                self.conn = Some(self.target.connect(Duration::from_millis(500))?);
            }
            let conn = self.conn.as_mut().expect("invariant: connected above");
            let set: Option<String> = redis::cmd("SET").arg(&key).arg(&self.instance_id).arg("NX").arg("EX").arg(secs).query(conn)?;
            Ok(set.is_some())
        })();
        match result {
            Ok(true) => true,
            Ok(false) => {
                log::debug!("anpr cam={camera}: plate already published within the window (by this or another instance)");
                false
            }
            Err(e) => {
                log::warn!("anpr: Redis dedupe unavailable ({e}); publishing plates on this instance's memory alone for 5 s");
                self.conn = None;
                self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone)]
    struct FakeClock(Arc<Mutex<Instant>>);
    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn once_per_window_whatever_the_confidence() {
        let clock = FakeClock(Arc::new(Mutex::new(Instant::now())));
        let mut d = Dedupe::new(Duration::from_secs(30), clock.clone());
        assert!(d.should_publish("cam", "5AU5341"));
        assert!(!d.should_publish("cam", "5AU5341"), "the same plate");
        assert!(!d.should_publish("cam", "SAU5341"), "one misread character is the same plate");
        assert!(!d.should_publish("cam", "5AU5341"), "the same plate again, read more confidently: not news");
        assert!(
            !d.should_publish("cam", "5AU5347"),
            "one character away, read more confidently: the same plate, not a correction to publish"
        );
        *clock.0.lock().unwrap() += Duration::from_secs(12);
        assert!(!d.should_publish("cam", "5AU534I"), "12 s later (its file opened again): still the window");
        assert!(d.should_publish("other", "5AU5341"), "cameras are separate");
        assert!(d.should_publish("cam", "ABC1D23"), "a different plate");
        *clock.0.lock().unwrap() += Duration::from_secs(31);
        assert!(d.should_publish("cam", "5AU5341"), "a new window");
        assert_eq!(d.cameras(), 2);
        *clock.0.lock().unwrap() += Duration::from_secs(31);
        d.sweep();
        assert_eq!(d.cameras(), 0, "nothing remembered past the window");
    }
}
