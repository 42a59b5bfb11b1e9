//! Fair cross-camera batching: per-camera queues, taken round-robin.
//!
//! Frames from every camera arrive on one channel; the batcher sorts them into a short queue per
//! camera (`DETECT_PER_CAMERA_CAP`, newest wins, the evicted frame counted as dropped at the
//! detect stage) and builds each batch by taking one frame per camera in turn, starting after
//! the camera served first last time. A camera sending 30 fps therefore only ever displaces its
//! own older frames, and a camera sending 1 fps gets every frame into a batch.

use std::collections::VecDeque;

/// One queue per camera, served in rotation.
pub struct RoundRobin<T> {
    queues: Vec<(String, VecDeque<T>)>,
    /// Index of the queue to serve first in the next batch.
    next: usize,
    per_camera_cap: usize,
    len: usize,
}

impl<T> RoundRobin<T> {
    pub fn new(per_camera_cap: usize) -> Self {
        RoundRobin { queues: Vec::new(), next: 0, per_camera_cap: per_camera_cap.max(1), len: 0 }
    }

    /// Queues `item` for `camera`; returns the camera's oldest item if its queue was full.
    pub fn push(&mut self, camera: &str, item: T) -> Option<T> {
        let q = match self.queues.iter().position(|(c, _)| c == camera) {
            Some(i) => &mut self.queues[i].1,
            None => {
                self.queues.push((camera.to_string(), VecDeque::with_capacity(self.per_camera_cap)));
                &mut self.queues.last_mut().expect("invariant: just pushed").1
            }
        };
        let evicted = if q.len() >= self.per_camera_cap { q.pop_front() } else { None };
        q.push_back(item);
        if evicted.is_none() {
            self.len += 1;
        }
        evicted
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Cameras with at least one item queued.
    pub fn cameras_queued(&self) -> usize {
        self.queues.iter().filter(|(_, q)| !q.is_empty()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes up to `max` items, one per camera per round, oldest first within a camera.
    pub fn take_batch(&mut self, max: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(max.min(self.len));
        let n = self.queues.len();
        let mut served_first = None;
        while out.len() < max && self.len > 0 {
            for k in 0..n {
                if out.len() >= max {
                    break;
                }
                let i = (self.next + k) % n;
                if let Some(item) = self.queues[i].1.pop_front() {
                    served_first.get_or_insert(i);
                    self.len -= 1;
                    out.push(item);
                }
            }
        }
        if let Some(first) = served_first {
            self.next = (first + 1) % n.max(1);
        }
        // forget cameras with nothing queued (deleted ones disappear this way)
        let before = self.queues.len();
        self.queues.retain(|(_, q)| !q.is_empty());
        if self.queues.len() != before {
            self.next = 0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_busy_camera_cannot_starve_the_others() {
        let mut rr = RoundRobin::new(2);
        for i in 0..10 {
            rr.push("busy", ("busy", i));
        }
        rr.push("a", ("a", 0));
        rr.push("b", ("b", 0));
        assert_eq!(rr.len(), 4, "busy keeps only its 2 newest");
        let batch = rr.take_batch(3);
        let cams: Vec<&str> = batch.iter().map(|(c, _)| *c).collect();
        assert!(cams.contains(&"a") && cams.contains(&"b"), "{cams:?}");
        assert_eq!(batch.iter().find(|(c, _)| *c == "busy").unwrap().1, 8, "oldest of the newest two");
    }

    #[test]
    fn eviction_returns_the_oldest() {
        let mut rr = RoundRobin::new(1);
        assert!(rr.push("c", 1).is_none());
        assert_eq!(rr.push("c", 2), Some(1));
        assert_eq!(rr.take_batch(8), [2]);
        assert!(rr.is_empty());
    }

    #[test]
    fn rotation_moves_the_first_camera_each_batch() {
        let mut rr = RoundRobin::new(4);
        for cam in ["a", "b", "c"] {
            for i in 0..4 {
                rr.push(cam, (cam, i));
            }
        }
        let firsts: Vec<&str> = (0..3).map(|_| rr.take_batch(1)[0].0).collect();
        assert_eq!(firsts, ["a", "b", "c"]);
    }
}
