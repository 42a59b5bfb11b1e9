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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

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

/// A fixed-bucket histogram (Prometheus semantics: cumulative `le` buckets, sum, count).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in micro-units, so it fits an atomic integer.
    sum_micros: AtomicU64,
}

/// Seconds, 1 ms to ~60 s in steps of about 1.5x: latency and phase timings.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
    5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
];
/// Batch sizes.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 128.0, 256.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_micros: AtomicU64::new(0) }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v.max(0.0) * 1e6) as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn mean(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum_micros.load(Relaxed) as f64 / 1e6 / n as f64
        }
    }

    /// The bucket counts now; two of them subtract into a window (see [`Histogram::quantile_of`]).
    pub fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// The `q` quantile (0..1), interpolated within its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        self.quantile_of(&self.counts(), q)
    }

    /// The `q` quantile of bucket counts taken from this histogram (e.g. a window's difference).
    pub fn quantile_of(&self, counts: &[u64], q: f64) -> f64 {
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let target = (q * n as f64).max(1.0);
        let mut seen = 0.0;
        for (i, c) in counts.iter().enumerate() {
            let c = *c as f64;
            if seen + c >= target {
                let lo = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let hi = *self.bounds.get(i).unwrap_or(&lo);
                return lo + (hi - lo) * ((target - seen) / c).clamp(0.0, 1.0);
            }
            seen += c;
        }
        *self.bounds.last().unwrap_or(&0.0)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c.load(Relaxed);
            let le = self.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {cum}");
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
    /// Capture's latest decoded and analysed frame rates (DESIGN.md section 14).
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

    /// Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let cams = self.cameras.read();
        per_camera(&mut out, &cams, "analytics_frames_captured_total", "Frames decoded from the camera stream.", |c| &c.frames_captured);
        per_camera(&mut out, &cams, "analytics_frames_processed_total", "Frames that went through the pipeline.", |c| &c.frames_processed);
        per_camera(&mut out, &cams, "analytics_frames_skipped_total", "Frames left out on purpose by frame_skip / max_fps.", |c| {
            &c.frames_skipped
        });
        for (name, help, gauge) in [
            ("analytics_camera_decoded_fps", "Frames decoded per second (all, or keyframes only), last few seconds.", 0),
            ("analytics_camera_analysed_fps", "Frames analysed per second, last few seconds.", 1),
        ] {
            let n = family_line(&mut out, name, "gauge", help);
            for (id, c) in cams.iter() {
                let v = if gauge == 0 { &c.decoded_fps } else { &c.analysed_fps };
                let _ = writeln!(out, "{n}{{camera_id=\"{}\"}} {}", escape(id), f32::from_bits(v.load(Relaxed)));
            }
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
        let n = family_line(
            &mut out,
            "analytics_publish_retries_total",
            "counter",
            "Failed attempts to reach Redis; the events stayed buffered.",
        );
        let _ = writeln!(out, "{n} {}", self.publish_retries.load(Relaxed));
        let n = family_line(&mut out, "analytics_events_dropped_total", "counter", "Events that never reached Redis, by reason.");
        for r in DropReason::ALL {
            let _ = writeln!(out, "{n}{{reason=\"{}\"}} {}", r.as_str(), self.dropped(r));
        }
        let n = family_line(&mut out, "analytics_publish_buffered_events", "gauge", "Events waiting in the publisher's buffer.");
        let _ = writeln!(out, "{n} {}", self.publish_buffered.load(Relaxed));
        let n = family_line(&mut out, "analytics_redis_up", "gauge", "1 when the publisher's last Redis operation succeeded.");
        let _ = writeln!(out, "{n} {}", u8::from(self.redis_up()));
        per_camera(&mut out, &cams, "analytics_frames_detected_total", "Frames the object detector ran on.", |c| &c.frames_detected);
        let n = family_line(&mut out, "analytics_detect_queue_depth", "gauge", "Frames waiting for an inference batch.");
        let _ = writeln!(out, "{n} {}", self.detect_queue_depth.load(Relaxed));
        let n = family_line(&mut out, "analytics_inference_seconds", "histogram", "Time per inference batch, by phase.");
        for p in Phase::ALL {
            self.inference_seconds[p as usize].render(&mut out, n, &format!("phase=\"{}\"", p.as_str()));
        }
        let n = family_line(&mut out, "analytics_batch_size", "histogram", "Frames per inference batch.");
        self.batch_size.render(&mut out, n, "");
        let n = family_line(
            &mut out,
            "analytics_inference_wide_batches_total",
            "counter",
            "Batches run on the session on every core: one camera alone while every inference worker was idle.",
        );
        let _ = writeln!(out, "{n} {}", self.wide_batches.load(Relaxed));
        let n = family_line(&mut out, "analytics_frame_to_event_seconds", "histogram", "From frame capture to its detection result.");
        self.frame_to_event_seconds.render(&mut out, n, "");
        per_camera(&mut out, &cams, "analytics_plates_searched_total", "Vehicles the ANPR plate detector ran on.", |c| &c.plates_searched);
        let n = family_line(&mut out, "analytics_anpr_seconds", "histogram", "Plate detector + OCR time per vehicle.");
        self.anpr_seconds.render(&mut out, n, "");
        let n = family_line(
            &mut out,
            "analytics_anpr_jobs_dropped_total",
            "counter",
            "Frames whose vehicles ANPR skipped: its queue was full, or shutdown began.",
        );
        let _ = writeln!(out, "{n} {}", self.anpr_jobs_dropped.load(Relaxed));
        let n = family_line(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        let _ = writeln!(out, "{n} {}", process_rss_bytes());
        let n = family_line(&mut out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        let _ = writeln!(out, "{n} {}", process_cpu_seconds());
        out
    }
}

/// Resident memory of this process in bytes (Linux `/proc/self/status`; 0 elsewhere).
pub fn process_rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: u64 =
        s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    kib * 1024
}

/// CPU seconds (user + system) this process has used (Linux `/proc/self/stat`; 0 elsewhere).
pub fn process_cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(after) = s.rfind(')').and_then(|i| s.get(i + 2..)) else { return 0.0 };
    // fields after the command name start at field 3 (state); utime and stime are fields 14, 15
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// One counter family with a sample per camera (`name{camera_id="..."} value`).
fn per_camera(
    out: &mut String,
    cams: &BTreeMap<String, Arc<CameraCounters>>,
    name: &'static str,
    help: &str,
    counter: impl Fn(&CameraCounters) -> &AtomicU64,
) {
    let n = family_line(out, name, "counter", help);
    for (id, c) in cams {
        let _ = writeln!(out, "{n}{{camera_id=\"{}\"}} {}", escape(id), counter(c).load(Relaxed));
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
