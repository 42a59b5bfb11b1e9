//! Object detection with YOLOv8 (DESIGN.md section 5, detection).
//!
//! ```text
//! frames from motion (DETECT_CAP, try_send; full -> dropped{stage="motion"})
//!   -> [batcher: per-camera queues of DETECT_PER_CAMERA_CAP, newest wins -> dropped{stage="detect"},
//!       round-robin up to BATCH_SIZE frames, one from every live camera, or BATCH_TIMEOUT_MS]
//!   -> [letterbox x rayon -> one ort session -> decode + class-aware NMS, down to TRACK_LOW_THRESH]
//!   -> Detected{frame, every box} (TRACK_CAP, Block) -> track
//! ```
//! One inference thread owns the session (`Session::run` takes `&mut self`). This stage only
//! detects: the camera's threshold, classes and zones, the events and the ANPR requests are
//! the track stage's business, because the tracker needs the low-score boxes the events leave
//! out (ByteTrack's second association).

pub mod batcher; // RoundRobin: fair per-camera batching
pub mod postprocess; // decode, NMS, un-letterbox, per-camera filter
pub mod preprocess; // Letterbox
pub mod session; // the only file that uses ort
pub mod yolo; // the YOLOv8 model: shapes, names, batch tensor

use crate::logging::RateLimit;
use crate::metrics::{Metrics, Phase, Stage};
use crate::pipeline::frame::Frame;
use crate::pipeline::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::pipeline::StageThread;
use batcher::RoundRobin;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use yolo::{Yolo, YoloInfo};

/// Frames between the motion pool and the batcher. Policy: the motion stage `try_send`s and
/// counts a full channel as a drop; the batcher drains it into its per-camera queues at once,
/// so it only fills if the batcher thread is stuck.
pub const DETECT_CAP: usize = 64;

/// Frames waiting per camera inside the batcher. Policy: `DropOldest` (newest wins), counted
/// as `frames_dropped{stage="detect"}`.
pub const DETECT_PER_CAMERA_CAP: usize = 2;

/// A camera that sent a frame within this window counts as live: a batch does not wait for
/// more frames once every live camera has one queued.
pub const LIVE_CAMERA_WINDOW: Duration = Duration::from_secs(2);

/// The lowest score a box is kept at: the tracker's low-score pass uses boxes down to here,
/// far below any camera's event threshold.
pub const TRACK_LOW_THRESH: f32 = 0.1;

/// One detected frame with every box the detector kept (>= [`TRACK_LOW_THRESH`]), in frame
/// pixels, on its way to the track stage.
pub struct Detected {
    pub frame: Frame,
    pub boxes: Vec<postprocess::RawDetection>,
}

/// Whether the letterbox can take `image`: 8-bit, 3 channels, at least 2x2.
fn usable(image: &opencv::core::Mat) -> bool {
    use opencv::prelude::MatTraitConst;
    !image.empty() && image.typ() == opencv::core::CV_8UC3 && image.cols() >= 2 && image.rows() >= 2
}

/// Batching settings.
#[derive(Debug, Clone)]
pub struct DetectSettings {
    /// `BATCH_SIZE`.
    pub batch_size: usize,
    /// `BATCH_TIMEOUT_MS`.
    pub batch_timeout: Duration,
}

/// The running detection stage.
pub struct DetectHandle {
    thread: StageThread,
    pub info: YoloInfo,
}

impl DetectHandle {
    /// Waits for the stage, which ends once every sender of its input is gone and its queues
    /// are empty.
    pub fn join(self) {
        self.thread.join();
    }
}

/// Starts the inference thread.
pub fn spawn(
    yolo: Yolo,
    settings: DetectSettings,
    frames: Receiver<Frame>,
    detected: Sender<Detected>,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> std::io::Result<DetectHandle> {
    let info = yolo.info.clone();
    let thread = StageThread::spawn("detect", supervisor, move || {
        let mut stage = DetectStage { yolo, settings, detected, metrics, error_log: RateLimit::new(Duration::from_secs(10)) };
        stage.run(frames)
    })?;
    Ok(DetectHandle { thread, info })
}

struct DetectStage {
    yolo: Yolo,
    settings: DetectSettings,
    detected: Sender<Detected>,
    metrics: Arc<Metrics>,
    error_log: RateLimit,
}

impl DetectStage {
    fn run(&mut self, frames: Receiver<Frame>) {
        let mut queues: RoundRobin<Frame> = RoundRobin::new(DETECT_PER_CAMERA_CAP);
        // when each camera last sent a frame: once every live camera has a frame queued, the
        // batch goes without waiting out BATCH_TIMEOUT_MS (one camera alone never waits)
        let mut last_seen: std::collections::HashMap<Arc<str>, Instant> = std::collections::HashMap::new();
        let mut push = |q: &mut RoundRobin<Frame>, f: Frame| {
            let camera = f.camera_id.clone();
            let now = Instant::now();
            last_seen.insert(camera.clone(), now);
            if last_seen.len() > 2 * q.cameras_queued() + 16 {
                last_seen.retain(|_, t| now.duration_since(*t) < LIVE_CAMERA_WINDOW);
            }
            let live = last_seen.values().filter(|t| now.duration_since(**t) < LIVE_CAMERA_WINDOW).count();
            if let Some(old) = q.push(&camera, f) {
                old.counters.frame_dropped(Stage::Detect);
            }
            live
        };
        let mut live = 0;
        let mut open = true;
        while open || !queues.is_empty() {
            beat();
            if queues.is_empty() {
                match frames.recv_timeout(BEAT_EVERY) {
                    Ok(f) => live = push(&mut queues, f),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // Fill the batch until it is full, every live camera has a frame in it, or the
            // oldest frame has waited BATCH_TIMEOUT_MS.
            let deadline = Instant::now() + self.settings.batch_timeout;
            while open && queues.len() < self.settings.batch_size && queues.cameras_queued() < live {
                match frames.recv_deadline(deadline) {
                    Ok(f) => live = push(&mut queues, f),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            for f in frames.try_iter() {
                live = push(&mut queues, f);
            }
            let batch = queues.take_batch(self.settings.batch_size);
            self.metrics.set_detect_queue_depth(queues.len());
            if !batch.is_empty() {
                self.process(batch);
            }
        }
        log::debug!("detect: stopped");
    }

    fn process(&mut self, batch: Vec<Frame>) {
        // A frame the letterbox cannot take (empty, not 8-bit BGR, tiny) goes alone; the rest
        // of the batch, other cameras' frames, goes on.
        let (batch, unusable): (Vec<Frame>, Vec<Frame>) = batch.into_iter().partition(|f| usable(&f.image));
        for f in unusable {
            f.counters.frame_dropped(Stage::Detect);
            if let Some(held) = self.error_log.allow() {
                log::warn!(
                    "detect cam={}: frame {} dropped: not an 8-bit BGR picture ({held} more since last report)",
                    f.camera_id,
                    f.frame_number
                );
            }
        }
        if batch.is_empty() {
            return;
        }
        let conf = vec![TRACK_LOW_THRESH; batch.len()];
        let images: Vec<&opencv::core::Mat> = batch.iter().map(|f| &f.image).collect();
        let (results, t) = match self.yolo.detect_batch(&images, &conf) {
            Ok(r) => r,
            Err(e) if batch.len() > 1 => {
                // one bad frame must not cost every camera its frame: retry them one by one
                if let Some(held) = self.error_log.allow() {
                    log::warn!("detect: batch of {} failed, retrying frame by frame ({held} more since last report): {e}", batch.len());
                }
                for f in batch {
                    self.process(vec![f]);
                }
                return;
            }
            Err(e) => {
                for f in &batch {
                    f.counters.frame_dropped(Stage::Detect);
                }
                if let Some(held) = self.error_log.allow() {
                    log::error!("detect: frame of camera {} failed ({held} more since last report): {e}", batch[0].camera_id);
                }
                return;
            }
        };
        self.metrics.inference_phase(Phase::Preprocess, t.preprocess.as_secs_f64());
        self.metrics.inference_phase(Phase::Inference, t.inference.as_secs_f64());
        self.metrics.inference_phase(Phase::Postprocess, t.postprocess.as_secs_f64());
        self.metrics.batch_size.observe(batch.len() as f64);
        for (mut frame, (_lb, boxes)) in batch.into_iter().zip(results) {
            frame.counters.frame_detected();
            // the detector is done with it: its camera may convert the next frame
            frame.in_flight = None;
            // Block policy: the track stage is cheap and never waits on anything slow
            if self.detected.send(Detected { frame, boxes }).is_err() {
                log::debug!("detect: the track stage is gone (shutdown)");
            }
        }
    }
}
