//! [`SnapshotBook`]: per live object, the snapshot jobs still in the pool, the newest snapshot
//! the pool has *written*, and the one events last named. The track stage puts in an event
//! only what is written (so the consumer finds the key); the pool deletes a superseded
//! snapshot that no event named. An entry goes when its object ends.

use super::best::Quality;
use crate::events::Snapshot;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Entry {
    pending: u32,
    written: Option<(Snapshot, Quality)>,
    /// Frame number and quality of the snapshot events last named, and when.
    announced: Option<(u64, Quality, Instant)>,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct SnapshotBook {
    entries: Mutex<HashMap<String, Entry>>,
    done: Condvar,
}

impl SnapshotBook {
    /// A job for `track` was queued.
    pub fn submitted(&self, track: &str) {
        self.entries.lock().entry(track.to_string()).or_default().pending += 1;
    }

    /// A job for `track` is done (`Some`: written). Returns a superseded snapshot that no event
    /// named (its keys can go).
    pub fn finished(&self, track: &str, written: Option<(Snapshot, Quality)>) -> Option<Snapshot> {
        let mut m = self.entries.lock();
        let mut old = None;
        if let Some(e) = m.get_mut(track) {
            e.pending = e.pending.saturating_sub(1);
            if let Some(w) = written {
                if let Some((prev, _)) = e.written.replace(w) {
                    if e.announced.is_none_or(|(f, _, _)| f != prev.frame_number) {
                        old = Some(prev);
                    }
                }
            }
        }
        // else: the object ended while the job ran; its keys expire with the TTL
        drop(m);
        self.done.notify_all();
        old
    }

    /// The written snapshot of `track`, marked as named by an event now.
    pub fn announce(&self, track: &str) -> Option<Snapshot> {
        let mut m = self.entries.lock();
        let e = m.get_mut(track)?;
        let (s, q) = e.written.clone()?;
        if e.announced.is_none_or(|(f, _, _)| f != s.frame_number) {
            e.announced = Some((s.frame_number, q, Instant::now()));
        }
        Some(s)
    }

    /// Whether `track` has a written snapshot worth an `update` (reason `snapshot`): clearly
    /// better than the one announced last, and that at least `every` ago (or, with none
    /// announced yet, `every` after `since`).
    pub fn update_due(&self, track: &str, every: Duration, since: Instant) -> bool {
        let m = self.entries.lock();
        let Some(e) = m.get(track) else { return false };
        let Some((s, q)) = &e.written else { return false };
        match e.announced {
            Some((f, aq, at)) => f != s.frame_number && at.elapsed() >= every && q.clearly_better_than(&aq),
            None => since.elapsed() >= every,
        }
    }

    /// `track` ended: waits up to `wait` for its jobs still in the pool, then forgets it and
    /// returns its written snapshot (marked as named).
    pub fn end(&self, track: &str, wait: Duration) -> Option<Snapshot> {
        let deadline = Instant::now() + wait;
        let mut m = self.entries.lock();
        while m.get(track).is_some_and(|e| e.pending > 0) {
            if self.done.wait_until(&mut m, deadline).timed_out() {
                break;
            }
        }
        m.remove(track).and_then(|e| e.written.map(|(s, _)| s))
    }

    /// Live objects in the book (for tests and the sizing check).
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
