//! Object detection with YOLOv8 (DESIGN.md section 5, detection).
//!
//! ```text
//! frames from motion (DETECT_CAP, try_send; full -> dropped{stage="motion"})
//!   -> [batcher: per-camera queues of DETECT_PER_CAMERA_CAP, newest wins -> dropped{stage="detect"},
//!       round-robin up to BATCH_SIZE frames or BATCH_TIMEOUT_MS]
//!   -> [letterbox x rayon -> one ort session -> decode + class-aware NMS]
//!   -> per-camera filter (threshold, classes, zones) -> Event::Detection -> events (Block) -> publish
//!   -> vehicles of `enable_anpr` cameras -> AnprJob (ANPR_CAP, try_send) -> anpr
//! ```
//! One inference thread owns the session (`Session::run` takes `&mut self`). Cameras with
//! `enable_object_detection: false` get no detection events (their frames only reach this stage
//! when ANPR needs vehicles).

pub mod batcher; // RoundRobin: fair per-camera batching
pub mod classes; // the 80 COCO names
pub mod postprocess; // decode, NMS, un-letterbox, per-camera filter
pub mod preprocess; // Letterbox
pub mod session; // the only file that uses ort
pub mod yolo; // the YOLOv8 model: shapes, names, batch tensor

use crate::camera::CameraParams;
use crate::events::{Detection, DetectionEvent, Event, EventCommon};
use crate::logging::RateLimit;
use crate::metrics::{Metrics, Phase, Stage};
use crate::pipeline::anpr::{AnprJob, Vehicle, FULL_FRAME_INTERVAL, VEHICLE_CLASSES};
use crate::pipeline::frame::Frame;
use crate::pipeline::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::pipeline::StageThread;
use batcher::RoundRobin;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
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
    events: Sender<Event>,
    anpr: Option<Sender<AnprJob>>,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> std::io::Result<DetectHandle> {
    let info = yolo.info.clone();
    let thread = StageThread::spawn("detect", supervisor, move || {
        let mut stage = DetectStage {
            yolo,
            settings,
            events,
            anpr,
            full_frame_at: HashMap::new(),
            metrics,
            error_log: RateLimit::new(Duration::from_secs(10)),
        };
        stage.run(frames)
    })?;
    Ok(DetectHandle { thread, info })
}

struct DetectStage {
    yolo: Yolo,
    settings: DetectSettings,
    events: Sender<Event>,
    /// ANPR's queue, when ANPR models are loaded.
    anpr: Option<Sender<AnprJob>>,
    /// Per camera: the last whole-frame plate search (entries older than a minute are pruned).
    full_frame_at: HashMap<String, Instant>,
    metrics: Arc<Metrics>,
    error_log: RateLimit,
}

impl DetectStage {
    fn run(&mut self, frames: Receiver<Frame>) {
        let mut queues: RoundRobin<Frame> = RoundRobin::new(DETECT_PER_CAMERA_CAP);
        let push = |q: &mut RoundRobin<Frame>, f: Frame| {
            let camera = f.camera.camera_id.clone();
            if let Some(old) = q.push(&camera, f) {
                old.camera.counters.frame_dropped(Stage::Detect);
            }
        };
        let mut open = true;
        while open || !queues.is_empty() {
            beat();
            if queues.is_empty() {
                match frames.recv_timeout(BEAT_EVERY) {
                    Ok(f) => push(&mut queues, f),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // Fill the batch until it is full or the oldest frame has waited BATCH_TIMEOUT_MS.
            let deadline = Instant::now() + self.settings.batch_timeout;
            while open && queues.len() < self.settings.batch_size {
                match frames.recv_deadline(deadline) {
                    Ok(f) => push(&mut queues, f),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            for f in frames.try_iter() {
                push(&mut queues, f);
            }
            let batch = queues.take_batch(self.settings.batch_size);
            self.full_frame_at.retain(|_, t| t.elapsed() < Duration::from_secs(60));
            self.metrics.set_detect_queue_depth(queues.len());
            if !batch.is_empty() {
                self.process(batch);
            }
        }
        log::debug!("detect: stopped");
    }

    fn process(&mut self, batch: Vec<Frame>) {
        let params: Vec<Arc<CameraParams>> = batch.iter().map(|f| f.camera.params()).collect();
        let conf: Vec<f32> = params.iter().map(|p| p.confidence_threshold).collect();
        let images: Vec<&opencv::core::Mat> = batch.iter().map(|f| &f.image).collect();
        let (results, t) = match self.yolo.detect_batch(&images, &conf) {
            Ok(r) => r,
            Err(e) => {
                for f in &batch {
                    f.camera.counters.frame_dropped(Stage::Detect);
                }
                if let Some(held) = self.error_log.allow() {
                    log::error!("detect: batch of {} failed ({held} more since last report): {e}", batch.len());
                }
                return;
            }
        };
        self.metrics.inference_phase(Phase::Preprocess, t.preprocess.as_secs_f64());
        self.metrics.inference_phase(Phase::Inference, t.inference.as_secs_f64());
        self.metrics.inference_phase(Phase::Postprocess, t.postprocess.as_secs_f64());
        self.metrics.batch_size.observe(batch.len() as f64);
        let model_info = self.yolo.model_info();
        for ((frame, params), (lb, raw)) in batch.into_iter().zip(params).zip(results) {
            frame.camera.counters.frame_detected();
            frame.camera.counters.frame_processed();
            let detections: Vec<Detection> = postprocess::camera_detections(&raw, &lb, &self.yolo.class_names, &params);
            self.metrics.frame_to_event_seconds.observe(frame.captured.elapsed().as_secs_f64());
            if params.enable_object_detection && !detections.is_empty() {
                if log::log_enabled!(log::Level::Debug) {
                    let what: Vec<String> = detections.iter().map(|d| format!("{} {:.2}", d.class_name, d.confidence)).collect();
                    log::debug!("detect cam={} frame={}: {}", frame.camera.camera_id, frame.frame_number, what.join(", "));
                }
                let ev = Event::Detection(DetectionEvent {
                    common: EventCommon::new(&frame.camera.camera_id, frame.captured_at, frame.frame_number),
                    detections,
                    model_info: model_info.clone(),
                });
                let _ = self.events.send(ev);
            }
            if let (true, Some(anpr)) = (params.enable_anpr, &self.anpr) {
                let vehicles: Vec<Vehicle> = raw
                    .iter()
                    .filter_map(|d| {
                        let name = self.yolo.class_names.get(d.class_id)?;
                        VEHICLE_CLASSES.contains(&name.as_str()).then(|| Vehicle {
                            class_name: name.clone(),
                            confidence: d.confidence,
                            bbox: d.bbox,
                        })
                    })
                    .collect();
                // no vehicle: a whole-frame plate search, at most once per FULL_FRAME_INTERVAL
                let due = !vehicles.is_empty() || {
                    let last = self.full_frame_at.get(&frame.camera.camera_id);
                    last.is_none_or(|t| t.elapsed() >= FULL_FRAME_INTERVAL)
                };
                if due {
                    if vehicles.is_empty() {
                        self.full_frame_at.insert(frame.camera.camera_id.clone(), Instant::now());
                    }
                    if anpr.try_send(AnprJob { frame, vehicles }).is_err() {
                        self.metrics.anpr_job_dropped();
                    }
                }
            }
        }
    }
}
