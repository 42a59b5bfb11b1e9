//! The evidence stage (DESIGN section 10; docs/architecture.md, "Stage graph"): the JPEG pool
//! that writes latest frames and object snapshots to Redis, off the detection path.
//!
//! ```text
//! motion pool, track -> Job (EVIDENCE_CAP, try_send; full = dropped, counted
//!                        analytics_evidence_jobs_dropped_total{kind}) -> [evidence x EVIDENCE_WORKERS]
//!   Latest{frame, overlay}  -> JPEG -> HSET latest:<camera> meta jpeg, PX LATEST_TTL
//!   Snapshot{frame, box}    -> JPEG full + thumbnail -> SET snapshot:/thumbnail:/object: EX SNAPSHOT_TTL_S
//!                              -> SnapshotBook (the track stage announces only what is written)
//! [evidence-watch] every WATCH_EVERY: MGET latest_want:<camera> of the cameras offering frames
//!   -> LatestHub's wanted flags (a camera nobody looks at is never encoded)
//! ```
//! Nothing here sends events: an object event names a snapshot only once the pool has written
//! it ([`SnapshotBook`]), so a consumer that reads the event finds the key. Memory: the queue
//! holds at most [`EVIDENCE_CAP`] frames; the hub and the book hold a few small records per
//! camera and per live object. The workers end when every [`Evidence`] handle is gone; the
//! watcher when its `Stop` fires.

pub mod best; // the best-frame rule, pure
mod book; // SnapshotBook: what the pool has written, what the track stage announced
mod hub; // LatestHub: which cameras are wanted, their latest boxes and motion
mod plate; // PlateWriter: plate crops of anpr events

pub use book::SnapshotBook;
pub use hub::LatestHub;
pub use plate::PlateWriter;

use crate::events::{BoundingBox, Snapshot};
use crate::evidence::image::{self, encode_jpeg};
use crate::evidence::{Keys, LatestMeta, OverlayBox, OverlayZone, LATEST_TTL, STORE_QUALITY};
use crate::logging::RateLimit;
use crate::metrics::{EvidenceKind, Metrics};
use crate::pipeline::frame::Frame;
use crate::redis_target::RedisTarget;
use crate::stage::supervise::{beat, Supervisor};
use crate::stage::{StageHandle, StageThread, Stop};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use opencv::core::Mat;
use opencv::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Jobs waiting for the pool. Policy: `try_send`, a full queue drops the job (counted by kind):
/// pictures are never worth slowing detection for. 32 frames of 1080p are ~200 MB at most.
pub const EVIDENCE_CAP: usize = 32;
/// Threads encoding JPEGs.
pub const EVIDENCE_WORKERS: usize = 2;
/// How often the watcher reads which cameras are wanted.
pub const WATCH_EVERY: Duration = Duration::from_millis(200);
/// JPEG quality of snapshots and thumbnails.
pub const SNAPSHOT_QUALITY: i32 = 85;
/// Redis calls of the pool and the watcher give up after this.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connect, a worker fails its jobs at once for this long instead of waiting
/// `CALL_TIMEOUT` on each: while Redis is away the queue drains (jobs counted as not kept)
/// rather than holding frames and making ending objects wait.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How long the track stage waits at an object's end for its snapshot still being encoded
/// (only when its camera stops: otherwise the end comes `TRACK_LOST_S` after the last sighting).
pub const END_WAIT: Duration = Duration::from_millis(800);

/// What the pool needs to know.
#[derive(Debug, Clone)]
pub struct EvidenceSettings {
    pub target: RedisTarget,
    pub keys: Keys,
    /// `SNAPSHOT_TTL_S`.
    pub ttl: Duration,
    /// `SNAPSHOT_UPDATE_S`.
    pub update_every: Duration,
}

impl EvidenceSettings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        EvidenceSettings {
            target: RedisTarget::from_config(c),
            keys: Keys::new(&c.redis_key_prefix),
            ttl: c.snapshot_ttl,
            update_every: c.snapshot_update,
        }
    }
}

/// A frame to hand over as the camera's latest.
pub struct LatestJob {
    pub image: Mat,
    pub meta: LatestMeta,
}

/// A sighting to keep as an object's snapshot.
pub struct SnapshotJob {
    pub track_id: String,
    pub image: Arc<Mat>,
    /// x1, y1, x2, y2 in pixels.
    pub bbox: [f32; 4],
    pub frame_number: u64,
    pub captured_at: SystemTime,
    pub quality: best::Quality,
}

enum Job {
    Latest(LatestJob),
    Snapshot(SnapshotJob),
}

/// The stages' handle on the pool: cheap to clone.
#[derive(Clone)]
pub struct Evidence {
    jobs: Sender<Job>,
    pub hub: Arc<LatestHub>,
    pub book: Arc<SnapshotBook>,
    pub settings: EvidenceSettings,
    metrics: Arc<Metrics>,
}

impl Evidence {
    /// Starts the pool's workers and the watcher.
    pub fn spawn(
        settings: EvidenceSettings,
        stop: Stop,
        metrics: Arc<Metrics>,
        supervisor: &Supervisor,
    ) -> std::io::Result<(Evidence, StageHandle)> {
        let (tx, rx) = crossbeam_channel::bounded(EVIDENCE_CAP);
        let hub = Arc::new(LatestHub::default());
        let book = Arc::new(SnapshotBook::default());
        let mut joins = Vec::new();
        for i in 0..EVIDENCE_WORKERS {
            let w = Worker {
                settings: settings.clone(),
                book: book.clone(),
                metrics: metrics.clone(),
                conn: None,
                down_since: None,
                log: RateLimit::new(Duration::from_secs(10)),
            };
            let rx: Receiver<Job> = rx.clone();
            joins.push(StageThread::spawn(&format!("evidence-{i}"), supervisor, move || w.run(rx))?);
        }
        let (s, h) = (settings.clone(), hub.clone());
        joins.push(StageThread::spawn("evidence-watch", supervisor, move || watch(s, h, stop))?);
        Ok((Evidence { jobs: tx, hub, book, settings, metrics }, StageHandle::new("evidence", joins)))
    }

    /// Whether someone looks at `camera`'s latest frame now (the callers build overlays only then).
    pub fn latest_wanted(&self, camera_id: &str) -> bool {
        self.hub.wanted(camera_id)
    }

    /// Offers a frame as `camera`'s latest: handed over when wanted and due (at most every
    /// `LATEST_EVERY`). `boxes` are the frame's tracked boxes when it went through the
    /// detector; `None` draws the newest known.
    pub fn offer_latest(&self, frame: &Frame, boxes: Option<Vec<OverlayBox>>) {
        let cam = &frame.camera_id;
        if let Some(b) = boxes {
            self.hub.set_boxes(cam, frame.frame_number, b);
        }
        let Some((boxes, boxes_frame_number, motion_boxes)) = self.hub.take_due(cam) else { return };
        let Ok(image) = frame.image.try_clone() else { return };
        // ROI polygons, then the counting lines (two points: drawn open)
        let zones = frame
            .params
            .roi_zones
            .iter()
            .map(|z| OverlayZone { name: z.name.clone(), points: z.points.clone() })
            .chain(frame.params.lines.iter().map(|l| OverlayZone { name: l.name.clone(), points: l.points.to_vec() }))
            .collect();
        let meta = LatestMeta {
            camera_id: cam.to_string(),
            frame_number: frame.frame_number,
            timestamp: crate::time::rfc3339_millis(frame.captured_at),
            width: frame.image.cols() as u32,
            height: frame.image.rows() as u32,
            boxes,
            boxes_frame_number,
            motion_boxes,
            zones,
        };
        self.submit(Job::Latest(LatestJob { image, meta }), EvidenceKind::Latest);
    }

    /// Records the motion boxes of `camera`'s newest analysed frame (only while it is wanted).
    pub fn set_motion(&self, camera_id: &str, boxes: &[BoundingBox]) {
        self.hub.set_motion(camera_id, boxes);
    }

    /// Queues a snapshot; false when the queue was full (dropped, counted).
    pub fn snapshot(&self, job: SnapshotJob) -> bool {
        let track = job.track_id.clone();
        self.book.submitted(&track);
        let ok = self.submit(Job::Snapshot(job), EvidenceKind::Snapshot);
        if !ok {
            self.book.finished(&track, None);
        }
        ok
    }

    fn submit(&self, job: Job, kind: EvidenceKind) -> bool {
        match self.jobs.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.evidence_dropped(kind);
                false
            }
        }
    }
}

/// Reads which cameras are wanted, every [`WATCH_EVERY`], until `stop` fires.
fn watch(settings: EvidenceSettings, hub: Arc<LatestHub>, stop: Stop) {
    let mut conn: Option<redis::Connection> = None;
    let mut log = RateLimit::new(Duration::from_secs(30));
    loop {
        beat();
        if stop.wait_timeout(WATCH_EVERY) {
            break;
        }
        let cams = hub.cameras();
        if cams.is_empty() {
            continue;
        }
        if conn.is_none() {
            conn = settings.target.connect(CALL_TIMEOUT).ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let keys: Vec<String> = cams.iter().map(|k| settings.keys.latest_want(k)).collect();
        match redis::cmd("MGET").arg(&keys).query::<Vec<Option<String>>>(c) {
            Ok(v) => {
                for (cam, w) in cams.iter().zip(v) {
                    hub.set_wanted(cam, w.is_some());
                }
            }
            Err(e) => {
                conn = None;
                if let Some(held) = log.allow() {
                    log::warn!("evidence: cannot read which cameras are wanted ({held} more since last report): {e}");
                }
            }
        }
    }
}

struct Worker {
    settings: EvidenceSettings,
    book: Arc<SnapshotBook>,
    metrics: Arc<Metrics>,
    conn: Option<redis::Connection>,
    /// When the last connect failed (cleared by a successful call).
    down_since: Option<Instant>,
    log: RateLimit,
}

impl Worker {
    fn run(mut self, rx: Receiver<Job>) {
        loop {
            beat();
            match rx.recv_timeout(crate::stage::supervise::BEAT_EVERY) {
                Ok(Job::Latest(j)) => {
                    if let Err(e) = self.latest(j) {
                        self.failed("latest frame", e);
                    }
                }
                Ok(Job::Snapshot(j)) => {
                    let track = j.track_id.clone();
                    match self.snapshot(j) {
                        Ok(info) => {
                            if let Some(old) = self.book.finished(&track, Some(info)) {
                                // superseded before any event named it: nobody can ask for it
                                let _ = self.with_conn(|c| {
                                    redis::cmd("DEL").arg(&old.key).arg(&old.thumbnail_key).query::<()>(c).map_err(|e| e.to_string())
                                });
                            }
                        }
                        Err(e) => {
                            self.book.finished(&track, None);
                            self.failed("snapshot", e);
                        }
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn failed(&mut self, what: &str, e: String) {
        if let Some(held) = self.log.allow() {
            log::warn!("evidence: {what} not kept ({held} more since last report): {e}");
        }
    }

    /// `f` on the connection, (re)connecting first if needed; the outcome is reported to the
    /// book ([`SnapshotBook::set_store_failing`]).
    fn with_conn<T>(&mut self, f: impl FnOnce(&mut redis::Connection) -> Result<T, String>) -> Result<T, String> {
        if self.conn.is_none() {
            if let Some(at) = self.down_since.filter(|at| at.elapsed() < RECONNECT_AFTER) {
                return Err(format!("Redis unreachable (last try {} ms ago)", at.elapsed().as_millis()));
            }
            match self.settings.target.connect(CALL_TIMEOUT) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.down_since = Some(Instant::now());
                    self.book.set_store_failing(true);
                    return Err(e.to_string());
                }
            }
        }
        let c = self.conn.as_mut().expect("invariant: set above");
        let r = f(c);
        if r.is_err() {
            self.conn = None;
            self.down_since = Some(Instant::now());
        } else {
            self.down_since = None;
        }
        self.book.set_store_failing(r.is_err());
        r
    }

    fn latest(&mut self, j: LatestJob) -> Result<(), String> {
        let jpeg = encode_jpeg(&j.image, STORE_QUALITY).map_err(|e| e.to_string())?;
        self.metrics.latest_frame_encoded();
        let meta = serde_json::to_string(&j.meta).map_err(|e| e.to_string())?;
        let key = self.settings.keys.latest(&j.meta.camera_id);
        self.with_conn(|c| {
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&key)
                .arg("meta")
                .arg(meta)
                .arg("jpeg")
                .arg(jpeg)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(LATEST_TTL.as_millis() as u64)
                .ignore()
                .query::<()>(c)
                .map_err(|e| e.to_string())
        })
    }

    fn snapshot(&mut self, j: SnapshotJob) -> Result<(Snapshot, best::Quality), String> {
        let t0 = Instant::now();
        let full = encode_jpeg(&*j.image, SNAPSHOT_QUALITY).map_err(|e| e.to_string())?;
        let thumb = image::thumbnail(&j.image, &j.bbox).and_then(|t| encode_jpeg(&t, SNAPSHOT_QUALITY)).map_err(|e| e.to_string())?;
        self.metrics.snapshot_encode_seconds.observe(t0.elapsed().as_secs_f64());
        let (w, h) = (j.image.cols() as f32, j.image.rows() as f32);
        let keys = &self.settings.keys;
        let info = Snapshot {
            key: keys.snapshot(&j.track_id, j.frame_number),
            thumbnail_key: keys.thumbnail(&j.track_id, j.frame_number),
            frame_number: j.frame_number,
            timestamp: crate::time::rfc3339_millis(j.captured_at),
            bounding_box: crate::infer::decode::normalise(&j.bbox, w, h),
            width: w as u32,
            height: h as u32,
        };
        let index = keys.object(&j.track_id);
        let json = serde_json::to_string(&info).map_err(|e| e.to_string())?;
        let ttl = self.settings.ttl.as_secs().max(1);
        let bytes = (full.len() + thumb.len()) as u64;
        let (k, tk) = (info.key.clone(), info.thumbnail_key.clone());
        self.with_conn(|c| {
            redis::pipe()
                .cmd("SET")
                .arg(&k)
                .arg(full)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .cmd("SET")
                .arg(&tk)
                .arg(thumb)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .cmd("SET")
                .arg(&index)
                .arg(json)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .query::<()>(c)
                .map_err(|e| e.to_string())
        })?;
        self.metrics.snapshot_written(bytes);
        Ok((info, j.quality))
    }
}
