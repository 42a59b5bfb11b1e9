//! [`SnapshotBook`]: per live object, the snapshot jobs still in the pool, the newest snapshot
//! the pool has *written*, and the one events last named. The track stage puts in an event
//! only what is written (so the consumer finds the key); the pool deletes a superseded
//! snapshot that no event named. An entry goes when its object ends.
//!
//! While the pool cannot write to Redis ([`SnapshotBook::set_store_failing`]), an ending object
//! does not wait for its jobs: they would fail anyway, and the track stage must not slow down
//! because Redis is away.

use super::best::Quality;
use crate::events::Snapshot;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The pool's last Redis write failed (and none has succeeded since).
    store_failing: AtomicBool,
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

    /// The pool says whether its Redis writes fail now; waiters give up at once when they do.
    pub fn set_store_failing(&self, failing: bool) {
        if self.store_failing.swap(failing, Ordering::Relaxed) != failing && failing {
            // under the lock: a waiter checks the flag and starts waiting without letting go of
            // it, so this wake-up cannot fall between the two
            let _held = self.entries.lock();
            self.done.notify_all();
        }
    }

    /// `track` ended: waits up to `wait` for its jobs still in the pool (not at all while the
    /// pool's writes fail), then forgets it and returns its written snapshot (marked as named).
    pub fn end(&self, track: &str, wait: Duration) -> Option<Snapshot> {
        let deadline = Instant::now() + wait;
        let mut m = self.entries.lock();
        while m.get(track).is_some_and(|e| e.pending > 0) && !self.store_failing.load(Ordering::Relaxed) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::BoundingBox;

    fn snap(frame: u64) -> (Snapshot, Quality) {
        let s = Snapshot {
            key: format!("s:{frame}"),
            thumbnail_key: format!("t:{frame}"),
            frame_number: frame,
            timestamp: String::new(),
            bounding_box: BoundingBox::default(),
            width: 640,
            height: 480,
        };
        (s, Quality { confidence: 0.5 + frame as f32 / 100.0, area: 1000.0 * frame as f32, on_edge: false })
    }

    /// Events name only written snapshots; a superseded one no event named is handed back for
    /// deletion, a named one is kept; the end waits for a job still running and forgets the object.
    #[test]
    fn written_announced_superseded_and_ended() {
        let b = SnapshotBook::default();
        b.submitted("o");
        assert_eq!(b.announce("o"), None, "nothing written yet");
        assert_eq!(b.finished("o", Some(snap(1))), None);
        b.submitted("o");
        assert_eq!(b.finished("o", Some(snap(2))).map(|s| s.frame_number), Some(1), "1 was never named: delete it");
        assert_eq!(b.announce("o").map(|s| s.frame_number), Some(2));
        b.submitted("o");
        assert_eq!(b.finished("o", Some(snap(3))), None, "2 was named: kept until its TTL");
        assert!(!b.update_due("o", Duration::from_secs(10), Instant::now()), "not before SNAPSHOT_UPDATE_S");
        assert!(b.update_due("o", Duration::ZERO, Instant::now()), "3 is clearly better than 2");
        b.submitted("o");
        let t0 = Instant::now();
        assert_eq!(b.end("o", Duration::from_millis(50)).map(|s| s.frame_number), Some(3));
        assert!(t0.elapsed() >= Duration::from_millis(50), "the end waited for the running job");
        assert!(b.is_empty());
        assert_eq!(b.finished("o", Some(snap(4))), None, "a job finishing after the end adds nothing");
        assert!(b.is_empty());
    }

    /// While the pool's Redis writes fail, an end does not wait for the object's jobs, and one
    /// already waiting is let go when the failure is reported.
    #[test]
    fn an_end_does_not_wait_while_redis_writes_fail() {
        let b = std::sync::Arc::new(SnapshotBook::default());
        b.submitted("o");
        b.set_store_failing(true);
        let t0 = Instant::now();
        assert_eq!(b.end("o", Duration::from_secs(5)), None);
        assert!(t0.elapsed() < Duration::from_secs(1), "waited {:?}", t0.elapsed());
        b.set_store_failing(false);
        b.submitted("p");
        let b2 = b.clone();
        let fail = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            b2.set_store_failing(true);
        });
        let t0 = Instant::now();
        assert_eq!(b.end("p", Duration::from_secs(5)), None);
        assert!(t0.elapsed() < Duration::from_secs(2), "waited {:?}", t0.elapsed());
        fail.join().unwrap();
    }
}
