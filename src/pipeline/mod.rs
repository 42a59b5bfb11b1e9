//! The processing pipeline (docs/architecture.md, "Stage graph"): OS-thread stages joined by bounded
//! channels, all made here, in [`Pipeline::start`], and stopped by [`Pipeline::shutdown`].
//!
//! ```text
//! capture (1 thread / camera, started by the registry through PipelineInputs)
//!   -> motion pool (M threads; per-camera FRAMES_PER_CAMERA_CAP, newest wins)
//!   -> detect (1 thread: cross-camera batches; DETECT_CAP)
//!   -> track (1 thread: ByteTrack per camera; TRACK_CAP; camera-ended notices ENDED_CAP)
//!   -> anpr (1 thread, when its models load: fair per-camera job queue; ANPR_CAP)
//!   -> publish (1 thread: pipelined XADD; EVENTS_CAP) -> Redis
//! motion, track and anpr all send events to publish.
//! ```
//! Data flows one way: no stage holds a sender to a stage before it, and no stage sees the
//! registry or the API (a frame carries a snapshot of its camera's parameters). Each capacity
//! is a `const` whose doc states its policy. Every stage's `spawn` returns a
//! [`StageHandle`]; stopping is one kind of signal, [`crate::stage::Stop`]. Stop order: cameras
//! (the registry), then the motion pool (its `Stop`); every later stage ends by itself once its
//! input is closed and drained (track ends every object on the way out; ANPR, told by the same
//! `Stop`, abandons queued plate reads), the publisher last (its own `Stop`, once nothing can
//! produce an event).

pub mod anpr; // licence plates: plate detector, OCR, dedupe
pub mod capture; // per-camera stream reading, reconnects, frame pacing
pub mod decode; // decode budget: keyframes only when that loses nothing
pub mod detect; // YOLOv8 object detection
pub mod evidence; // the JPEG pool: latest frames, object snapshots, plate crops
pub mod frame; // Frame: one decoded picture on its way through the stages
pub mod motion; // the motion pool and the frame-differencing detector
pub mod publish; // the Redis Stream publisher thread
                 // stage heartbeats moved to crate::stage; re-exported while the API still names this path
pub use crate::stage::supervise;
pub mod track; // per-camera ByteTrack multi-object tracker: detections -> tracks

use crate::events::Event;
use crate::stage::{StageHandle, StopSender};
use crossbeam_channel::Sender;

/// Events waiting for the publisher. Policy: `Block`; the publisher drains it into its own
/// bounded buffer even while Redis is down, so producers only block if it cannot keep up at all.
pub const EVENTS_CAP: usize = 4096;

/// What a camera worker needs to hand its output on. Cheap to clone.
#[derive(Clone)]
pub struct PipelineInputs {
    /// Where capture hands frames (each camera attaches once per worker).
    pub motion: motion::MotionPool,
    /// `STREAM_STALL_TIMEOUT_S`.
    pub stall_timeout: std::time::Duration,
    /// `MAX_FRAME_PIXELS`: larger frames put the camera in `error`.
    pub max_frame_pixels: u64,
    /// Where a camera's worker says it has stopped (the track stage ends its tracks).
    pub ended: Sender<frame::CameraEnded>,
}

/// Makes the events channel.
pub fn events_channel() -> (Sender<Event>, crossbeam_channel::Receiver<Event>) {
    crossbeam_channel::bounded(EVENTS_CAP)
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the publisher thread: {0}")]
    Publisher(std::io::Error),
    #[error("cannot start pipeline threads: {0}")]
    Threads(std::io::Error),
    #[error("{0}")]
    Model(crate::infer::InferenceError),
}

pub use crate::stage::health::AnprStatus;

/// Every stage thread of the service, and what the rest of the service needs of them.
pub struct Pipeline {
    /// For the registry: how a camera worker hands on its frames.
    pub inputs: PipelineInputs,
    /// The loaded detection model.
    pub model: crate::infer::YoloInfo,
    pub anpr_status: AnprStatus,
    pub publisher_health: std::sync::Arc<publish::PublisherHealth>,
    /// Every stage, in the order [`Pipeline::shutdown`] joins them: motion, detect, track,
    /// anpr (when it runs), publish.
    stages: Vec<StageHandle>,
    /// Fired first at shutdown: the motion pool stops, ANPR abandons its queued jobs.
    stop: StopSender,
    /// Fired once every other stage has ended: the publisher flushes and ends.
    flush: StopSender,
}

impl Pipeline {
    /// Makes every channel and starts every stage thread but the cameras'.
    pub fn start(
        config: &crate::config::Config,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        supervisor: &supervise::Supervisor,
    ) -> Result<Pipeline, StartError> {
        let (events_tx, events_rx) = events_channel();
        let (stop, flush) = (StopSender::new(), StopSender::new());
        let (publisher, publisher_health) =
            publish::spawn(publish::PublisherConfig::from_config(config), events_rx, flush.subscribe(), metrics.clone(), supervisor)
                .map_err(StartError::Publisher)?;
        let device = config.device();
        // one model instance per inference worker (each owns its session)
        let (workers, threads) = config.inference_worker_count();
        let load = || {
            crate::infer::Yolo::load_with_precision(
                &config.yolo_model,
                config.yolo_model_name(),
                &device,
                config.ort_dylib_path.as_deref(),
                config.batch_size_to_load(),
                config.nms_iou,
                threads,
                config.yolo_precision,
            )
            .map_err(StartError::Model)
        };
        let mut yolos = (0..workers).map(|_| load()).collect::<Result<Vec<_>, _>>()?;
        // BATCH_SIZE auto: 1 on the CPU (the config's doc says why), so the batch tensor
        // shrinks; a model with a fixed batch axis keeps it, and gets that many frames a run
        for y in &mut yolos {
            y.cap_batch(config.batch_size_on(y.info.provider));
        }
        let yolo = &yolos[0];
        let batch_size = yolo.info.max_batch;
        // several single-core workers on a CPU share one session on every core, for a batch one
        // of them runs while the rest are idle (one camera alone: the light-load latency)
        let wide = if workers > 1 { yolo.load_wide_session(config.ort_dylib_path.as_deref()).map_err(StartError::Model)? } else { None };
        log::info!("detect: {workers} inference worker(s) of {threads} ONNX Runtime thread(s) each");
        let model_info = yolo.model_info();
        let class_names = std::sync::Arc::new(yolo.class_names.clone());
        if let Some(wide) = wide {
            for y in &mut yolos {
                y.share_wide_session(wide.clone());
            }
        }
        // ANPR is optional: without its model files the service runs, says why in /api/health,
        // and refuses cameras that ask for it.
        let (evidence, evidence_stage) =
            evidence::Evidence::spawn(evidence::EvidenceSettings::from_config(config), stop.subscribe(), metrics.clone(), supervisor)
                .map_err(StartError::Threads)?;
        let (anpr, anpr_tx, anpr_status) = match anpr::AnprModels::load(config) {
            Ok(models) => {
                let (tx, rx) = crossbeam_channel::bounded(anpr::ANPR_CAP);
                let status = AnprStatus {
                    loaded: true,
                    error: None,
                    plate_provider: Some(models.plate.provider()),
                    plate_model: Some(models.plate.path.clone()),
                    plate_precision: Some(models.plate.precision()),
                    ocr_provider: Some(models.reader.provider()),
                };
                let h = anpr::spawn(
                    models,
                    anpr::AnprSettings::from_config(config).shared_in_redis(config).with_plate_images(evidence.settings.clone()),
                    rx,
                    events_tx.clone(),
                    stop.subscribe(),
                    metrics.clone(),
                    supervisor,
                )
                .map_err(StartError::Threads)?;
                (Some(h), Some(tx), status)
            }
            Err(e) => {
                log::warn!("anpr: disabled, cameras with enable_anpr are refused: {e}");
                (
                    None,
                    None,
                    AnprStatus {
                        loaded: false,
                        error: Some(e.to_string()),
                        plate_provider: None,
                        plate_model: None,
                        plate_precision: None,
                        ocr_provider: None,
                    },
                )
            }
        };
        let (detected_tx, detected_rx) = crossbeam_channel::bounded(track::stage::TRACK_CAP);
        let (ended_tx, ended_rx) = crossbeam_channel::bounded(track::stage::ENDED_CAP);
        let track_settings = track::stage::TrackSettings { lost_timeout: config.track_lost, class_names, model_info };
        let outputs = track::stage::Outputs { events: events_tx.clone(), anpr: anpr_tx, evidence: Some(evidence.clone()) };
        let track = track::stage::spawn(track_settings, detected_rx, ended_rx, outputs, metrics.clone(), supervisor)
            .map_err(StartError::Threads)?;
        let (detect_tx, detect_rx) = crossbeam_channel::bounded(detect::DETECT_CAP);
        let settings = detect::DetectSettings { batch_size, batch_timeout: config.batch_timeout };
        let model = yolos[0].info.clone();
        let detect = detect::spawn(yolos, settings, detect_rx, detected_tx, metrics.clone(), supervisor).map_err(StartError::Threads)?;
        let (motion, motion_threads) = motion::MotionPool::spawn(
            config.motion_worker_count(),
            motion::MotionSettings::default(),
            events_tx,
            Some(detect_tx),
            Some(evidence),
            stop.subscribe(),
            supervisor,
        )
        .map_err(StartError::Threads)?;
        let inputs = PipelineInputs {
            motion,
            stall_timeout: config.stream_stall_timeout,
            max_frame_pixels: config.max_frame_pixels,
            ended: ended_tx,
        };
        let stages =
            [Some(motion_threads), Some(detect), Some(track), anpr, Some(evidence_stage), Some(publisher)].into_iter().flatten().collect();
        Ok(Pipeline { inputs, model, anpr_status, publisher_health, stages, stop, flush })
    }

    /// Stops every stage, in order, once the cameras have stopped: the motion pool; detection
    /// finishes the frames it holds; track ends every object; ANPR abandons queued jobs
    /// (counted) but passes every object event on; the publisher flushes (bounded by its
    /// deadline).
    ///
    /// The one place stage threads are joined. Two signals of the one [`crate::stage::Stop`]
    /// kind: `stop` for the stages that must be told (motion, ANPR's queue), `flush` for the
    /// publisher once nothing can produce an event any more; every other stage ends when its
    /// input closes, which the join order guarantees.
    pub fn shutdown(self) {
        let Pipeline { inputs, stages, mut stop, mut flush, .. } = self;
        drop(inputs);
        stop.fire();
        for stage in stages {
            if stage.name == "publish" {
                log::info!("shutdown: waiting for the publisher to flush");
                flush.fire();
            }
            stage.join();
        }
    }
}
