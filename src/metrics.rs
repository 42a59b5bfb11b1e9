//! Counters shared by every stage, and their Prometheus text form (`GET /metrics`).
//!
//! Call sites use verbs (`frame_dropped(Stage::Capture)`, `events_dropped(DropReason::BufferFull,
//! n)`) and never touch atomics directly. Names follow `analytics_<name>_<unit>_total`. A retry is
//! never counted as a drop: an event that is retried and then published counts once, as published.

use crate::events::EventType;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The stage that dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Capture handed a frame on while the previous one was still queued: newest wins.
    Capture,
    /// The motion stage could not hand a frame to detection in time.
    Motion,
    /// The detection batcher shed a frame.
    Detect,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Capture, Stage::Motion, Stage::Detect];
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Motion => "motion",
            Stage::Detect => "detect",
        }
    }
}

/// Why the publisher dropped events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Redis was unreachable long enough that the bounded buffer filled; the oldest went.
    BufferFull,
    /// Shutdown deadline passed with events still unsent (Redis unreachable).
    Shutdown,
    /// The event could not be encoded as JSON (a bug; logged).
    Encode,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [DropReason::BufferFull, DropReason::Shutdown, DropReason::Encode];
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::Shutdown => "shutdown",
            DropReason::Encode => "encode",
        }
    }
}

/// Per-camera counters, held by the camera's stages through an `Arc` so the hot path needs no
/// map lookup.
#[derive(Debug, Default)]
pub struct CameraCounters {
    frames_captured: AtomicU64,
    frames_processed: AtomicU64,
    frames_skipped: AtomicU64,
    frames_dropped: [AtomicU64; 3],
    events_published: AtomicU64,
}

/// A copy of a camera's counters, as `GET /api/cameras` shows them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct CameraCountersSnapshot {
    pub frames_captured: u64,
    pub frames_processed: u64,
    /// Frames left out on purpose by `frame_skip` / `max_fps` (not drops).
    pub frames_skipped: u64,
    /// Frames dropped by every stage together.
    pub frames_dropped: u64,
    pub events_published: u64,
}

impl CameraCounters {
    pub fn frame_captured(&self) {
        self.frames_captured.fetch_add(1, Relaxed);
    }
    pub fn frame_processed(&self) {
        self.frames_processed.fetch_add(1, Relaxed);
    }
    pub fn frame_skipped(&self) {
        self.frames_skipped.fetch_add(1, Relaxed);
    }
    pub fn frame_dropped(&self, stage: Stage) {
        self.frames_dropped[stage as usize].fetch_add(1, Relaxed);
    }
    pub fn dropped_at(&self, stage: Stage) -> u64 {
        self.frames_dropped[stage as usize].load(Relaxed)
    }
    pub fn snapshot(&self) -> CameraCountersSnapshot {
        CameraCountersSnapshot {
            frames_captured: self.frames_captured.load(Relaxed),
            frames_processed: self.frames_processed.load(Relaxed),
            frames_skipped: self.frames_skipped.load(Relaxed),
            frames_dropped: self.frames_dropped.iter().map(|c| c.load(Relaxed)).sum(),
            events_published: self.events_published.load(Relaxed),
        }
    }
}

/// All counters of the service.
#[derive(Debug, Default)]
pub struct Metrics {
    cameras: RwLock<BTreeMap<String, Arc<CameraCounters>>>,
    events_published: [AtomicU64; 3],
    publish_retries: AtomicU64,
    events_dropped: [AtomicU64; 3],
    publish_buffered: AtomicU64,
    redis_up: AtomicBool,
}

/// Publisher counters, as `/api/health` shows them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PublisherCountersSnapshot {
    pub published: u64,
    pub retries: u64,
    pub dropped: u64,
    pub buffered: u64,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of `camera_id`, created on first use.
    pub fn camera(&self, camera_id: &str) -> Arc<CameraCounters> {
        if let Some(c) = self.cameras.read().get(camera_id) {
            return c.clone();
        }
        self.cameras.write().entry(camera_id.to_string()).or_default().clone()
    }

    /// Forgets a deleted camera, so the map stays as small as the registry.
    pub fn remove_camera(&self, camera_id: &str) {
        self.cameras.write().remove(camera_id);
    }

    /// One event reached the stream.
    pub fn event_published(&self, ty: EventType, camera_id: &str) {
        self.events_published[ty as usize].fetch_add(1, Relaxed);
        if let Some(c) = self.cameras.read().get(camera_id) {
            c.events_published.fetch_add(1, Relaxed);
        }
    }

    /// One failed attempt to reach Redis (connect or write); the events stay buffered.
    pub fn publish_retried(&self) {
        self.publish_retries.fetch_add(1, Relaxed);
    }

    /// `n` events that will never reach Redis.
    pub fn events_dropped(&self, reason: DropReason, n: u64) {
        self.events_dropped[reason as usize].fetch_add(n, Relaxed);
    }

    pub fn set_publish_buffered(&self, n: usize) {
        self.publish_buffered.store(n as u64, Relaxed);
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(up, Relaxed);
    }

    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Relaxed)
    }

    pub fn published(&self, ty: EventType) -> u64 {
        self.events_published[ty as usize].load(Relaxed)
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.events_dropped[reason as usize].load(Relaxed)
    }

    pub fn publisher_snapshot(&self) -> PublisherCountersSnapshot {
        PublisherCountersSnapshot {
            published: self.events_published.iter().map(|c| c.load(Relaxed)).sum(),
            retries: self.publish_retries.load(Relaxed),
            dropped: self.events_dropped.iter().map(|c| c.load(Relaxed)).sum(),
            buffered: self.publish_buffered.load(Relaxed),
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let cams = self.cameras.read();
        let n = family_line(&mut out, "analytics_frames_captured_total", "counter", "Frames decoded from the camera stream.");
        for (id, c) in cams.iter() {
            let _ = writeln!(out, "{n}{{camera_id=\"{}\"}} {}", escape(id), c.frames_captured.load(Relaxed));
        }
        let n = family_line(&mut out, "analytics_frames_processed_total", "counter", "Frames that went through the pipeline.");
        for (id, c) in cams.iter() {
            let _ = writeln!(out, "{n}{{camera_id=\"{}\"}} {}", escape(id), c.frames_processed.load(Relaxed));
        }
        let n = family_line(&mut out, "analytics_frames_skipped_total", "counter", "Frames left out on purpose by frame_skip / max_fps.");
        for (id, c) in cams.iter() {
            let _ = writeln!(out, "{n}{{camera_id=\"{}\"}} {}", escape(id), c.frames_skipped.load(Relaxed));
        }
        let n = family_line(&mut out, "analytics_frames_dropped_total", "counter", "Frames dropped, by stage.");
        for (id, c) in cams.iter() {
            for s in Stage::ALL {
                let _ = writeln!(out, "{n}{{camera_id=\"{}\",stage=\"{}\"}} {}", escape(id), s.as_str(), c.dropped_at(s));
            }
        }
        let n = family_line(&mut out, "analytics_events_published_total", "counter", "Events written to the Redis Stream, by type.");
        for t in EventType::ALL {
            let _ = writeln!(out, "{n}{{event_type=\"{}\"}} {}", t.as_str(), self.published(t));
        }
        let n = family_line(&mut out, "analytics_publish_retries_total", "counter", "Failed attempts to reach Redis; the events stayed buffered.");
        let _ = writeln!(out, "{n} {}", self.publish_retries.load(Relaxed));
        let n = family_line(&mut out, "analytics_events_dropped_total", "counter", "Events that never reached Redis, by reason.");
        for r in DropReason::ALL {
            let _ = writeln!(out, "{n}{{reason=\"{}\"}} {}", r.as_str(), self.dropped(r));
        }
        let n = family_line(&mut out, "analytics_publish_buffered_events", "gauge", "Events waiting in the publisher's buffer.");
        let _ = writeln!(out, "{n} {}", self.publish_buffered.load(Relaxed));
        let n = family_line(&mut out, "analytics_redis_up", "gauge", "1 when the publisher's last Redis operation succeeded.");
        let _ = writeln!(out, "{n} {}", u8::from(self.redis_up()));
        out
    }
}

fn family_line(out: &mut String, name: &'static str, kind: &str, help: &str) -> &'static str {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name
}

/// Escapes a label value (backslash, quote, newline) per the exposition format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
