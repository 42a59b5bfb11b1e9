//! Stage supervision: every stage thread has a heartbeat, so `/api/health` can say which stage
//! died (its thread ended or panicked while the service runs) or stalled (alive but silent for
//! [`STALL_AFTER`]), instead of a service that looks alive while part of it is gone.
//!
//! A stage's loop calls [`beat`] on each turn; loops wait on their inputs with a timeout of at
//! most [`BEAT_EVERY`], so an idle stage still beats. [`StageThread::spawn`] registers the
//! thread and marks it ended (and whether by panic) however its body returns.
//!
//! [`StageThread::spawn`]: super::StageThread::spawn

use parking_lot::Mutex;
use serde::Serialize;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stage whose last beat is older than this is reported as stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(30);
/// The longest a stage loop may wait on its input before beating again.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// One stage thread's heartbeat.
pub struct Beat {
    name: String,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last beat.
    last_ms: AtomicU64,
    ended: AtomicBool,
    panicked: AtomicBool,
    /// Set by [`Supervisor::inject_panic`]: the next beat panics (tests of supervision).
    fault: AtomicBool,
}

impl Beat {
    fn touch(&self) {
        self.last_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Beat>>> = const { RefCell::new(None) };
}

/// Records that the calling stage thread is alive and making progress. No-op on a thread that
/// is not a stage (tests driving a stage's code directly).
pub fn beat() {
    CURRENT.with(|c| {
        if let Some(b) = &*c.borrow() {
            b.touch();
            if b.fault.swap(false, Ordering::SeqCst) {
                panic!("fault injected into stage {} (Supervisor::inject_panic)", b.name);
            }
        }
    });
}

/// Marks the beat ended when the stage body returns or unwinds.
pub(super) struct EndGuard(pub(super) Arc<Beat>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.panicked.store(std::thread::panicking(), Ordering::SeqCst);
        self.0.ended.store(true, Ordering::SeqCst);
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

/// What health says of one stage.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageReport {
    pub name: String,
    /// `ok`, `stalled` or `dead`.
    pub state: &'static str,
    /// Seconds since the stage last beat.
    pub last_beat_s: f64,
    /// Whether a dead stage ended by panic.
    pub panicked: bool,
}

/// The service's stages, for health. One per service (tests run several in one process).
pub struct Supervisor {
    epoch: Instant,
    stages: Mutex<Vec<Arc<Beat>>>,
    stopping: AtomicBool,
}

impl Supervisor {
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor { epoch: Instant::now(), stages: Mutex::new(Vec::new()), stopping: AtomicBool::new(false) })
    }

    /// Makes `beat` the calling thread's current one (at the start of a stage thread).
    pub(super) fn enter_current(beat: &Arc<Beat>) {
        beat.touch();
        CURRENT.with(|c| *c.borrow_mut() = Some(beat.clone()));
    }

    pub(super) fn register(&self, name: &str) -> Arc<Beat> {
        let b = Arc::new(Beat {
            name: name.to_string(),
            epoch: self.epoch,
            last_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            ended: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            fault: AtomicBool::new(false),
        });
        self.stages.lock().push(b.clone());
        b
    }

    /// Shutdown has begun: stages ending from now on are not failures.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Every stage, in start order.
    pub fn report(&self) -> Vec<StageReport> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let stopping = self.stopping.load(Ordering::SeqCst);
        self.stages
            .lock()
            .iter()
            .map(|b| {
                let age = now.saturating_sub(b.last_ms.load(Ordering::Relaxed));
                let state = if b.ended.load(Ordering::SeqCst) {
                    if stopping {
                        "stopped"
                    } else {
                        "dead"
                    }
                } else if age > STALL_AFTER.as_millis() as u64 {
                    "stalled"
                } else {
                    "ok"
                };
                StageReport { name: b.name.clone(), state, last_beat_s: age as f64 / 1000.0, panicked: b.panicked.load(Ordering::SeqCst) }
            })
            .collect()
    }

    /// Whether the stage named `name` is registered and has not ended.
    pub fn is_running(&self, name: &str) -> bool {
        self.stages.lock().iter().any(|b| b.name == name && !b.ended.load(Ordering::SeqCst))
    }

    /// Makes the named stage panic at its next beat; false if there is no such stage. For tests
    /// that prove a dead stage shows in health (nothing in the service calls it).
    pub fn inject_panic(&self, name: &str) -> bool {
        let stages = self.stages.lock();
        let found = stages.iter().find(|b| b.name == name && !b.ended.load(Ordering::SeqCst));
        found.map(|b| b.fault.store(true, Ordering::SeqCst)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::StageThread;

    #[test]
    fn a_panicking_stage_is_dead_and_a_stopped_one_is_not() {
        let sup = Supervisor::new();
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let t = StageThread::spawn("victim", &sup, move || loop {
            beat();
            if rx.recv_timeout(Duration::from_millis(10)).is_err() {
                continue;
            }
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(sup.report()[0].state, "ok");
        assert!(sup.inject_panic("victim"));
        t.join();
        let r = &sup.report()[0];
        assert_eq!((r.state, r.panicked), ("dead", true));
        drop(tx);
        let t = StageThread::spawn("quiet", &sup, || {}).unwrap();
        t.join();
        sup.begin_stop();
        assert_eq!(sup.report()[1].state, "stopped");
    }
}
