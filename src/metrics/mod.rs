//! Counters shared by every stage, and their Prometheus text form (`GET /metrics`).
//!
//! Call sites use verbs (`frame_dropped(Stage::Capture)`, `events_dropped(DropReason::BufferFull,
//! n)`) and never touch atomics directly. Names follow `analytics_<name>_<unit>_total`. A retry is
//! never counted as a drop: an event that is retried and then published counts once, as published.

use crate::events::EventType;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

mod histogram; // Histogram: fixed buckets on atomics
mod process; // process_* figures from /proc
pub mod render; // the Prometheus text renderer

pub use histogram::{Histogram, BATCH_BUCKETS, SECONDS_BUCKETS};
pub use process::{process_cpu_seconds, process_rss_bytes};

/// The stage that dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Capture handed a frame on while the previous one was still queued (newest wins), or the
    /// camera already had `capture::MAX_IN_FLIGHT` frames waiting for the detector (back-pressure:
    /// such a frame is dropped before it is converted).
    Capture,
    /// The motion stage could not hand a frame to detection (its channel was full).
    Motion,
    /// The detection batcher shed a frame (newest wins per camera) or its batch failed.
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

/// What kind of evidence job the pool dropped (its queue was full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    /// A wanted camera's latest frame.
    Latest,
    /// An object's snapshot.
    Snapshot,
}

impl EvidenceKind {
    pub const ALL: [EvidenceKind; 2] = [EvidenceKind::Latest, EvidenceKind::Snapshot];
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Latest => "latest",
            EvidenceKind::Snapshot => "snapshot",
        }
    }
}

/// Phases of an inference batch, for `analytics_inference_seconds{phase}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Preprocess,
    Inference,
    Postprocess,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Preprocess, Phase::Inference, Phase::Postprocess];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preprocess => "preprocess",
            Phase::Inference => "inference",
            Phase::Postprocess => "postprocess",
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
    frames_detected: AtomicU64,
    plates_searched: AtomicU64,
    frames_dropped: [AtomicU64; 3],
    events_published: AtomicU64,
    /// Frames decoded / analysed per second over the last few seconds (`f32` bits; gauges).
    decoded_fps: AtomicU32,
    analysed_fps: AtomicU32,
}

/// A copy of a camera's counters, as `GET /api/cameras` shows them.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct CameraCountersSnapshot {
    pub frames_captured: u64,
    pub frames_processed: u64,
    /// Frames left out on purpose by `frame_skip` / `max_fps` (not drops).
    pub frames_skipped: u64,
    /// Frames the object detector ran on.
    pub frames_detected: u64,
    /// Vehicles the plate detector ran on (ANPR).
    pub plates_searched: u64,
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
    pub fn plate_searched(&self) {
        self.plates_searched.fetch_add(1, Relaxed);
    }
    pub fn frame_detected(&self) {
        self.frames_detected.fetch_add(1, Relaxed);
    }
    pub fn frame_dropped(&self, stage: Stage) {
        self.frames_dropped[stage as usize].fetch_add(1, Relaxed);
    }
    /// Capture's latest decoded and analysed frame rates (docs/decode.md).
    pub fn set_rates(&self, decoded_fps: f32, analysed_fps: f32) {
        self.decoded_fps.store(decoded_fps.to_bits(), Relaxed);
        self.analysed_fps.store(analysed_fps.to_bits(), Relaxed);
    }
    pub fn dropped_at(&self, stage: Stage) -> u64 {
        self.frames_dropped[stage as usize].load(Relaxed)
    }
    pub fn snapshot(&self) -> CameraCountersSnapshot {
        CameraCountersSnapshot {
            frames_captured: self.frames_captured.load(Relaxed),
            frames_processed: self.frames_processed.load(Relaxed),
            frames_skipped: self.frames_skipped.load(Relaxed),
            frames_detected: self.frames_detected.load(Relaxed),
            plates_searched: self.plates_searched.load(Relaxed),
            frames_dropped: self.frames_dropped.iter().map(|c| c.load(Relaxed)).sum(),
            events_published: self.events_published.load(Relaxed),
        }
    }
}

/// All counters of the service.
#[derive(Debug)]
pub struct Metrics {
    /// Seconds per inference batch phase.
    pub inference_seconds: [Histogram; 3],
    /// Frames per inference batch.
    pub batch_size: Histogram,
    /// Capture of a frame to its detection result (event ready), seconds.
    pub frame_to_event_seconds: Histogram,
    /// Detect queue depth (frames waiting for a batch), sampled per batch.
    detect_queue_depth: AtomicU64,
    /// Batches run on the shared session on every core (one camera alone, every worker idle).
    wide_batches: AtomicU64,
    /// Seconds per vehicle in ANPR (plate detector + OCR).
    pub anpr_seconds: Histogram,
    /// ANPR jobs dropped because the ANPR queue was full.
    anpr_jobs_dropped: AtomicU64,
    cameras: RwLock<BTreeMap<String, Arc<CameraCounters>>>,
    events_published: [AtomicU64; 4],
    publish_retries: AtomicU64,
    events_dropped: [AtomicU64; 3],
    publish_buffered: AtomicU64,
    redis_up: AtomicBool,
    /// Seconds to encode one snapshot (full frame + thumbnail).
    pub snapshot_encode_seconds: Histogram,
    latest_frame_encodes: AtomicU64,
    evidence_dropped: [AtomicU64; 2],
    snapshots_written: AtomicU64,
    snapshot_bytes: AtomicU64,
    plate_images_written: AtomicU64,
    plate_image_bytes: AtomicU64,
}

/// Publisher counters, as `/api/health` shows them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PublisherCountersSnapshot {
    pub published: u64,
    pub retries: u64,
    pub dropped: u64,
    pub buffered: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inference_seconds: [Histogram::new(SECONDS_BUCKETS), Histogram::new(SECONDS_BUCKETS), Histogram::new(SECONDS_BUCKETS)],
            batch_size: Histogram::new(BATCH_BUCKETS),
            frame_to_event_seconds: Histogram::new(SECONDS_BUCKETS),
            detect_queue_depth: AtomicU64::new(0),
            wide_batches: AtomicU64::new(0),
            anpr_seconds: Histogram::new(SECONDS_BUCKETS),
            anpr_jobs_dropped: AtomicU64::new(0),
            cameras: RwLock::default(),
            events_published: Default::default(),
            publish_retries: AtomicU64::new(0),
            events_dropped: Default::default(),
            publish_buffered: AtomicU64::new(0),
            redis_up: AtomicBool::new(false),
            snapshot_encode_seconds: Histogram::new(SECONDS_BUCKETS),
            latest_frame_encodes: AtomicU64::new(0),
            evidence_dropped: Default::default(),
            snapshots_written: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            plate_images_written: AtomicU64::new(0),
            plate_image_bytes: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// One phase of an inference batch took `seconds`.
    pub fn inference_phase(&self, phase: Phase, seconds: f64) {
        self.inference_seconds[phase as usize].observe(seconds);
    }

    /// A batch ran on the shared session on every core.
    pub fn wide_batch(&self) {
        self.wide_batches.fetch_add(1, Relaxed);
    }

    /// Batches run so far on the shared session on every core.
    pub fn wide_batches(&self) -> u64 {
        self.wide_batches.load(Relaxed)
    }

    /// ANPR's queue was full: a frame's vehicles were not read.
    pub fn anpr_job_dropped(&self) {
        self.anpr_jobs_dropped.fetch_add(1, Relaxed);
    }

    /// A latest frame was encoded as JPEG (only for a camera someone looks at).
    pub fn latest_frame_encoded(&self) {
        self.latest_frame_encodes.fetch_add(1, Relaxed);
    }

    pub fn latest_frame_encodes(&self) -> u64 {
        self.latest_frame_encodes.load(Relaxed)
    }

    /// The evidence pool's queue was full: a job of `kind` was dropped.
    pub fn evidence_dropped(&self, kind: EvidenceKind) {
        self.evidence_dropped[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn evidence_drops(&self, kind: EvidenceKind) -> u64 {
        self.evidence_dropped[kind as usize].load(Relaxed)
    }

    /// A snapshot (full frame + thumbnail, `bytes` together) was written to Redis.
    pub fn snapshot_written(&self, bytes: u64) {
        self.snapshots_written.fetch_add(1, Relaxed);
        self.snapshot_bytes.fetch_add(bytes, Relaxed);
    }

    /// Snapshots written and their bytes.
    pub fn snapshots(&self) -> (u64, u64) {
        (self.snapshots_written.load(Relaxed), self.snapshot_bytes.load(Relaxed))
    }

    /// A plate crop of `bytes` was written to Redis.
    pub fn plate_image_written(&self, bytes: u64) {
        self.plate_images_written.fetch_add(1, Relaxed);
        self.plate_image_bytes.fetch_add(bytes, Relaxed);
    }

    pub fn set_detect_queue_depth(&self, n: usize) {
        self.detect_queue_depth.store(n as u64, Relaxed);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_and_text() {
        let h = Histogram::new(SECONDS_BUCKETS);
        for i in 1..=100 {
            h.observe(i as f64 / 1000.0); // 1..100 ms
        }
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5);
        assert!((0.03..=0.075).contains(&p50), "{p50}");
        assert!(h.quantile(0.99) <= 0.1 + 1e-9);
        assert!((h.mean() - 0.0505).abs() < 1e-3);
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 100"), "{out}");
        assert!(out.contains("x_count 100"));
    }
}
