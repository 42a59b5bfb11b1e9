//! The one Prometheus text renderer (exposition format 0.0.4) of the service's metrics.
//!
//! Why not `prometheus-client`: its registry owns every metric as its own typed object
//! (`Family<Labels, Counter>`) and encodes what was registered. Here the counters are plain
//! atomics inside per-camera structs that come and go with cameras, read where they live at
//! scrape time; moving to the crate means rewriting every counter and the per-camera lifetime
//! for the same text. The format written here is small, fixed, escaped per the spec, and
//! checked by the tests (`tests/api.rs` scrapes it).

use super::{process_cpu_seconds, process_rss_bytes, CameraCounters, DropReason, EvidenceKind, Metrics, Phase, Stage};
use crate::events::EventType;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

impl Metrics {
    /// Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let cams = self.cameras.read();
        per_camera(&mut out, &cams, "analytics_frames_captured_total", "Frames decoded from the camera stream.", |c| &c.frames_captured);
        per_camera(&mut out, &cams, "analytics_frames_processed_total", "Frames that went through the pipeline.", |c| &c.frames_processed);
        per_camera(&mut out, &cams, "analytics_frames_skipped_total", "Frames left out on purpose by frame_skip / max_fps.", |c| {
            &c.frames_skipped
        });
        for (name, help, decoded) in [
            ("analytics_camera_decoded_fps", "Frames decoded per second (all, or keyframes only), last few seconds.", true),
            ("analytics_camera_analysed_fps", "Frames analysed per second, last few seconds.", false),
        ] {
            let n = family_line(&mut out, name, "gauge", help);
            for (id, c) in cams.iter() {
                let v = if decoded { &c.decoded_fps } else { &c.analysed_fps };
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
        let n = family_line(
            &mut out,
            "analytics_latest_frame_encodes_total",
            "counter",
            "Latest frames encoded as JPEG (only for cameras someone looks at).",
        );
        let _ = writeln!(out, "{n} {}", self.latest_frame_encodes.load(Relaxed));
        let n = family_line(
            &mut out,
            "analytics_evidence_jobs_dropped_total",
            "counter",
            "Evidence jobs dropped because the JPEG pool's queue was full, by kind.",
        );
        for k in EvidenceKind::ALL {
            let _ = writeln!(out, "{n}{{kind=\"{}\"}} {}", k.as_str(), self.evidence_drops(k));
        }
        let n = family_line(&mut out, "analytics_snapshots_written_total", "counter", "Object snapshots written to Redis.");
        let _ = writeln!(out, "{n} {}", self.snapshots_written.load(Relaxed));
        let n = family_line(
            &mut out,
            "analytics_snapshot_bytes_total",
            "counter",
            "Bytes of object snapshots written to Redis (full frame + thumbnail).",
        );
        let _ = writeln!(out, "{n} {}", self.snapshot_bytes.load(Relaxed));
        let n = family_line(
            &mut out,
            "analytics_snapshot_encode_seconds",
            "histogram",
            "Time to encode one snapshot (full frame + thumbnail).",
        );
        self.snapshot_encode_seconds.render(&mut out, n, "");
        let n = family_line(&mut out, "analytics_plate_images_written_total", "counter", "Plate crops of anpr events written to Redis.");
        let _ = writeln!(out, "{n} {}", self.plate_images_written.load(Relaxed));
        let n = family_line(&mut out, "analytics_plate_image_bytes_total", "counter", "Bytes of plate crops written to Redis.");
        let _ = writeln!(out, "{n} {}", self.plate_image_bytes.load(Relaxed));
        let n = family_line(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        let _ = writeln!(out, "{n} {}", process_rss_bytes());
        let n = family_line(&mut out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        let _ = writeln!(out, "{n} {}", process_cpu_seconds());
        out
    }
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

/// Writes the `# HELP` and `# TYPE` lines of a family and returns its name for the samples.
pub fn family_line(out: &mut String, name: &'static str, kind: &str, help: &str) -> &'static str {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name
}

/// A family of one sample with no labels, for figures kept outside [`Metrics`] (the HTTP
/// layer's counters), so that every family of `/metrics` is written here.
pub fn single(out: &mut String, name: &'static str, kind: &str, help: &str, value: u64) {
    let n = family_line(out, name, kind, help);
    let _ = writeln!(out, "{n} {value}");
}

/// A family with one label, for figures kept outside [`Metrics`] (the supervisor's stages).
pub fn labelled(
    out: &mut String,
    name: &'static str,
    kind: &str,
    help: &str,
    label: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let n = family_line(out, name, kind, help);
    for (value_of_label, v) in samples {
        let _ = writeln!(out, "{n}{{{label}=\"{}\"}} {v}", escape(&value_of_label));
    }
}

/// Escapes a label value (backslash, quote, newline) per the exposition format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
