//! Plate dedupe: the same plate (or one within edit distance 1: a misread character) on the
//! same camera is published once per window, unless a read with higher confidence arrives
//! that *corrects* it (a different text within distance 1): then the better read is published
//! too. The same text read again more confidently is not news and only raises the bar.
//! Time comes from an injected [`Clock`] so tests need no sleeping.

use super::text::edit_distance;
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
    /// When it was last published.
    at: Instant,
    best_confidence: f32,
}

/// Per-camera memory of recently published plates. Entries older than the window are pruned on
/// every call, so memory stays bounded by what a camera can read in one window.
pub struct Dedupe<C: Clock> {
    window: Duration,
    clock: C,
    seen: HashMap<String, Vec<Seen>>,
}

impl<C: Clock> Dedupe<C> {
    pub fn new(window: Duration, clock: C) -> Self {
        Dedupe { window, clock, seen: HashMap::new() }
    }

    /// Whether a read of `plate` at `confidence` on `camera` should be published; records it if so.
    pub fn should_publish(&mut self, camera: &str, plate: &str, confidence: f32) -> bool {
        let now = self.clock.now();
        let window = self.window;
        let list = self.seen.entry(camera.to_string()).or_default();
        list.retain(|s| now.duration_since(s.at) < window);
        match list.iter_mut().find(|s| edit_distance(&s.plate, plate) <= 1) {
            Some(s) if confidence > s.best_confidence => {
                let correction = s.plate != plate;
                s.best_confidence = confidence;
                s.plate = plate.to_string();
                correction
            }
            Some(_) => false,
            None => {
                list.push(Seen { plate: plate.to_string(), at: now, best_confidence: confidence });
                true
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
    fn once_per_window_unless_more_confident() {
        let clock = FakeClock(Arc::new(Mutex::new(Instant::now())));
        let mut d = Dedupe::new(Duration::from_secs(30), clock.clone());
        assert!(d.should_publish("cam", "5AU5341", 0.90));
        assert!(!d.should_publish("cam", "5AU5341", 0.85), "same plate, lower confidence");
        assert!(!d.should_publish("cam", "SAU5341", 0.89), "one misread character is the same plate");
        assert!(!d.should_publish("cam", "5AU5341", 0.93), "the same text, more confident: not news");
        assert!(d.should_publish("cam", "5AU5347", 0.95), "a more confident different read corrects it");
        assert!(!d.should_publish("cam", "5AU5341", 0.94), "below the new best");
        assert!(d.should_publish("other", "5AU5341", 0.5), "cameras are separate");
        assert!(d.should_publish("cam", "ABC1D23", 0.5), "a different plate");
        *clock.0.lock().unwrap() += Duration::from_secs(31);
        assert!(d.should_publish("cam", "5AU5341", 0.5), "a new window");
        assert_eq!(d.cameras(), 2);
        *clock.0.lock().unwrap() += Duration::from_secs(31);
        d.sweep();
        assert_eq!(d.cameras(), 0, "nothing remembered past the window");
    }
}
