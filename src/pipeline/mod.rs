//! The processing pipeline (DESIGN.md sections 5 and 7): OS-thread stages joined by bounded
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
//! is a `const` whose doc states its policy. Stop order: cameras (the registry), then the
//! motion pool; every later stage ends by itself once its input is closed and drained
//! (track ends every object on the way out), the publisher last.

pub mod anpr; // licence plates: plate detector, OCR, dedupe
pub mod capture; // per-camera stream reading, reconnects, frame pacing
pub mod decode; // decode budget: keyframes only when that loses nothing
pub mod detect; // YOLOv8 object detection
pub mod frame; // Frame: one decoded picture on its way through the stages
pub mod motion; // the motion pool and the frame-differencing detector
pub mod publish; // the Redis Stream publisher thread
pub mod supervise; // stage heartbeats: dead or stalled stages show in health
pub mod track; // per-camera ByteTrack multi-object tracker: detections -> tracks

use crate::events::Event;
use crossbeam_channel::Sender;

/// One stage thread, named for `top -H` and logs, with a heartbeat in the service's
/// [`supervise::Supervisor`]. `join` waits for it and logs a panic with the thread's name
/// instead of propagating it, so shutdown goes on with the other stages.
pub struct StageThread(std::thread::JoinHandle<()>);

impl StageThread {
    pub fn spawn(name: &str, supervisor: &supervise::Supervisor, body: impl FnOnce() + Send + 'static) -> std::io::Result<Self> {
        let beat = supervisor.register(name);
        let sup_enter = {
            let beat = beat.clone();
            move || {
                let _ended = supervise::EndGuard(beat.clone());
                supervise::Supervisor::enter_current(&beat);
                body();
            }
        };
        std::thread::Builder::new().name(name.to_string()).spawn(sup_enter).map(StageThread)
    }

    pub fn join(self) {
        let name = self.0.thread().name().unwrap_or("stage").to_string();
        if self.0.join().is_err() {
            log::error!("{name}: thread panicked");
        }
    }
}

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
    Model(detect::session::InferenceError),
}

/// Whether ANPR's models loaded, and on what (for health, and to refuse `enable_anpr`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnprStatus {
    pub loaded: bool,
    pub error: Option<String>,
    pub plate_provider: Option<detect::session::Provider>,
    pub ocr_provider: Option<detect::session::Provider>,
}

/// Every stage thread of the service, and what the rest of the service needs of them.
pub struct Pipeline {
    /// For the registry: how a camera worker hands on its frames.
    pub inputs: PipelineInputs,
    /// The loaded detection model.
    pub model: detect::yolo::YoloInfo,
    pub anpr_status: AnprStatus,
    pub publisher_health: std::sync::Arc<publish::PublisherHealth>,
    motion: motion::MotionPoolThreads,
    detect: detect::DetectHandle,
    track: track::stage::TrackHandle,
    anpr: Option<anpr::AnprHandle>,
    publisher: publish::PublisherHandle,
    publisher_stop: Sender<()>,
}

impl Pipeline {
    /// Makes every channel and starts every stage thread but the cameras'.
    pub fn start(
        config: &crate::config::Config,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        supervisor: &supervise::Supervisor,
    ) -> Result<Pipeline, StartError> {
        let (events_tx, events_rx) = events_channel();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let publisher = publish::spawn(publish::PublisherConfig::from_config(config), events_rx, stop_rx, metrics.clone(), supervisor)
            .map_err(StartError::Publisher)?;
        detect::session::set_tensorrt_options(detect::session::TensorRtOptions {
            cache_dir: config.tensorrt_cache_dir.clone(),
            fp16: config.tensorrt_fp16,
        });
        // one model instance per inference worker (each owns its session)
        let (workers, threads) = config.inference_worker_count();
        let load = || {
            detect::yolo::Yolo::load_with_threads(
                &config.yolo_model,
                config.yolo_model_name(),
                config.inference_device,
                config.ort_dylib_path.as_deref(),
                config.batch_size_to_load(),
                config.nms_iou,
                threads,
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
        let (anpr, anpr_tx, anpr_status) = match anpr::AnprModels::load(config) {
            Ok(models) => {
                let (tx, rx) = crossbeam_channel::bounded(anpr::ANPR_CAP);
                let status = AnprStatus {
                    loaded: true,
                    error: None,
                    plate_provider: Some(models.plate.provider()),
                    ocr_provider: Some(models.reader.provider()),
                };
                let h = anpr::spawn(
                    models,
                    anpr::AnprSettings::from_config(config).shared_in_redis(config),
                    rx,
                    events_tx.clone(),
                    metrics.clone(),
                    supervisor,
                )
                .map_err(StartError::Threads)?;
                (Some(h), Some(tx), status)
            }
            Err(e) => {
                log::warn!("anpr: disabled, cameras with enable_anpr are refused: {e}");
                (None, None, AnprStatus { loaded: false, error: Some(e.to_string()), plate_provider: None, ocr_provider: None })
            }
        };
        let (detected_tx, detected_rx) = crossbeam_channel::bounded(track::stage::TRACK_CAP);
        let (ended_tx, ended_rx) = crossbeam_channel::bounded(track::stage::ENDED_CAP);
        let track_settings = track::stage::TrackSettings { lost_timeout: config.track_lost, class_names, model_info };
        let outputs = track::stage::Outputs { events: events_tx.clone(), anpr: anpr_tx };
        let track = track::stage::spawn(track_settings, detected_rx, ended_rx, outputs, metrics.clone(), supervisor)
            .map_err(StartError::Threads)?;
        let (detect_tx, detect_rx) = crossbeam_channel::bounded(detect::DETECT_CAP);
        let settings = detect::DetectSettings { batch_size, batch_timeout: config.batch_timeout };
        let detect = detect::spawn(yolos, settings, detect_rx, detected_tx, metrics.clone(), supervisor).map_err(StartError::Threads)?;
        let (motion, motion_threads) = motion::MotionPool::spawn(
            config.motion_worker_count(),
            motion::MotionSettings::default(),
            events_tx,
            Some(detect_tx),
            supervisor,
        )
        .map_err(StartError::Threads)?;
        let inputs = PipelineInputs {
            motion,
            stall_timeout: config.stream_stall_timeout,
            max_frame_pixels: config.max_frame_pixels,
            ended: ended_tx,
        };
        Ok(Pipeline {
            inputs,
            model: detect.info.clone(),
            anpr_status,
            publisher_health: publisher.health.clone(),
            motion: motion_threads,
            detect,
            track,
            anpr,
            publisher,
            publisher_stop: stop_tx,
        })
    }

    /// Stops every stage, in order, once the cameras have stopped: the motion pool; detection
    /// finishes the frames it holds; track ends every object; ANPR abandons queued jobs
    /// (counted) but passes every object event on; the publisher flushes (bounded by its
    /// deadline).
    pub fn shutdown(self) {
        let Pipeline { inputs, motion, detect, track, anpr, publisher, publisher_stop, .. } = self;
        drop(inputs);
        motion.shutdown();
        if let Some(a) = &anpr {
            a.begin_stop();
        }
        detect.join();
        track.join();
        if let Some(a) = anpr {
            a.join();
        }
        log::info!("shutdown: waiting for the publisher to flush");
        drop(publisher_stop);
        publisher.join();
    }
}
