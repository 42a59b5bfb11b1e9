//! Start and stop of the whole service: publisher, detection (+ ANPR), motion pool, registry
//! (camera workers), API. `main`, the tests and the bench binary all use this.
//!
//! Shutdown order: the registry closes (new POSTs get 503) and joins every camera; the motion
//! pool stops; detection finishes the frames it holds; ANPR abandons its queue (counted) and
//! stops; the publisher flushes its buffer (bounded by its deadline); the API stops last.

use crate::api::http::HttpStats;
use crate::api::server::AnprStatus;
use crate::api::{ApiServer, AppState};
use crate::camera::validate;
use crate::camera::Registry;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::anpr::{self, AnprHandle, AnprModels, AnprSettings, ANPR_CAP};
use crate::pipeline::detect::session::InferenceError;
use crate::pipeline::detect::yolo::Yolo;
use crate::pipeline::detect::{self, DetectHandle, DetectSettings, DETECT_CAP};
use crate::pipeline::motion::{MotionPool, MotionPoolThreads, MotionSettings};
use crate::pipeline::publish::{self, PublisherConfig, PublisherHandle, RedisTarget};
use crate::pipeline::supervise::Supervisor;
use crate::pipeline::{events_channel, PipelineInputs};
use crossbeam_channel::Sender;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the publisher thread: {0}")]
    Publisher(std::io::Error),
    #[error("cannot start pipeline threads: {0}")]
    Threads(std::io::Error),
    #[error("{0}")]
    Model(InferenceError),
    #[error("API: {0} (API_HOST / API_PORT)")]
    Api(String),
}

pub struct Service {
    api: ApiServer,
    registry: Arc<Registry>,
    motion: MotionPoolThreads,
    detect: DetectHandle,
    anpr: Option<AnprHandle>,
    publisher: PublisherHandle,
    publisher_stop: Sender<()>,
    pub metrics: Arc<Metrics>,
    supervisor: Arc<Supervisor>,
}

fn is_loopback(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Service {
    pub fn start(config: Config) -> Result<Service, StartError> {
        let metrics = Metrics::new();
        let supervisor = Supervisor::new();
        let (events_tx, events_rx) = events_channel();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let publisher = publish::spawn(PublisherConfig::from_config(&config), events_rx, stop_rx, metrics.clone(), &supervisor)
            .map_err(StartError::Publisher)?;
        let yolo = Yolo::load(
            &config.yolo_model,
            config.yolo_model_name(),
            config.inference_device,
            config.ort_dylib_path.as_deref(),
            config.batch_size,
            config.nms_iou,
        )
        .map_err(StartError::Model)?;
        let (detect_tx, detect_rx) = crossbeam_channel::bounded(DETECT_CAP);
        let settings = DetectSettings { batch_size: config.batch_size, batch_timeout: config.batch_timeout };
        // ANPR is optional: without its model files the service runs, says why in /api/health,
        // and refuses cameras that ask for it.
        let (anpr, anpr_tx, anpr_status) = match AnprModels::load(&config) {
            Ok(models) => {
                let (tx, rx) = crossbeam_channel::bounded(ANPR_CAP);
                let status = AnprStatus {
                    loaded: true,
                    error: None,
                    plate_provider: Some(models.plate.provider()),
                    ocr_provider: Some(models.reader.provider()),
                };
                let h = anpr::spawn(models, AnprSettings::from_config(&config), rx, events_tx.clone(), metrics.clone(), &supervisor)
                    .map_err(StartError::Threads)?;
                (Some(h), Some(tx), status)
            }
            Err(e) => {
                log::warn!("anpr: disabled, cameras with enable_anpr are refused: {e}");
                (None, None, AnprStatus { loaded: false, error: Some(e.to_string()), plate_provider: None, ocr_provider: None })
            }
        };
        let detect = detect::spawn(yolo, settings, detect_rx, events_tx.clone(), anpr_tx, metrics.clone(), &supervisor)
            .map_err(StartError::Threads)?;
        let (motion, motion_threads) =
            MotionPool::spawn(config.motion_worker_count(), MotionSettings::default(), events_tx, Some(detect_tx), &supervisor)
                .map_err(StartError::Threads)?;
        let inputs = PipelineInputs { motion, stall_timeout: config.stream_stall_timeout, max_frame_pixels: config.max_frame_pixels };
        let registry = Arc::new(Registry::new(config.max_cameras, inputs, metrics.clone()));
        let state = Arc::new(AppState {
            registry: registry.clone(),
            metrics: metrics.clone(),
            publisher: publisher.health.clone(),
            redis: RedisTarget::from_config(&config),
            config: config.clone(),
            model: detect.info.clone(),
            anpr: anpr_status,
            supervisor: supervisor.clone(),
            validate: validate::Context { file_root: config.stream_file_root.clone() },
            http: Arc::new(HttpStats::default()),
            started: Instant::now(),
        });
        if config.api_token.is_none() && !is_loopback(&config.api_host) {
            log::warn!(
                "api: API_TOKEN is not set and the API listens on {}: anyone who reaches it can add or delete cameras",
                config.api_host
            );
        }
        let api = ApiServer::start(&config.api_host, config.api_port, state).map_err(StartError::Api)?;
        Ok(Service { api, registry, motion: motion_threads, detect, anpr, publisher, publisher_stop: stop_tx, metrics, supervisor })
    }

    /// Where the API listens (useful with `API_PORT=0`).
    pub fn api_addr(&self) -> SocketAddr {
        self.api.addr()
    }

    /// The camera registry (tests drive it without HTTP).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The stages' heartbeats (health reads them; tests inject faults through them).
    pub fn supervisor(&self) -> &Arc<Supervisor> {
        &self.supervisor
    }

    /// Whether the API still accepts connections; `main` exits non-zero when it stops.
    pub fn api_alive(&self) -> bool {
        self.api.is_accepting()
    }

    /// Stops cameras, flushes the publisher, stops the API.
    pub fn shutdown(self) {
        self.supervisor.begin_stop();
        log::info!("shutdown: stopping cameras");
        self.registry.shutdown();
        self.motion.shutdown();
        if let Some(a) = &self.anpr {
            a.begin_stop();
        }
        self.detect.join();
        if let Some(a) = self.anpr {
            a.join();
        }
        log::info!("shutdown: waiting for the publisher to flush");
        drop(self.publisher_stop);
        self.publisher.join();
        self.api.shutdown();
        log::info!("shutdown: done");
    }
}
