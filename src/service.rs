//! Start and stop of the whole service: the pipeline (every stage thread, made in
//! [`Pipeline::start`]), the registry (camera workers) and the cluster coordinator that fills it
//! from Redis, the API. `main`, the tests and the bench binary all use this.
//!
//! Shutdown order: the cluster stops (new POSTs get 503), joins every camera and gives its
//! leases back; the pipeline stops stage by stage ([`Pipeline::shutdown`]); the API stops last.

use crate::api::snapshot::RedisSnapshot;
use crate::api::stats::HttpStats;
use crate::api::{ApiServer, AppState};
use crate::camera::validate;
use crate::camera::Registry;
use crate::cluster::{Cluster, ClusterSettings};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::redis_target::RedisTarget;
use crate::stage::supervise::Supervisor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub use crate::pipeline::StartError as PipelineError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // transparent: `{:#}` (main) would print the message twice, as the error and its source
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("API: {0} (API_HOST / API_PORT)")]
    Api(String),
    #[error("cannot start the cluster coordinator thread: {0}")]
    Cluster(std::io::Error),
}

pub struct Service {
    api: ApiServer,
    cluster: Arc<Cluster>,
    pipeline: Pipeline,
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
        let pipeline = Pipeline::start(&config, metrics.clone(), &supervisor)?;
        let registry = Arc::new(Registry::new(&config.instance_id, Arc::new(pipeline.inputs.clone()), metrics.clone()));
        let cluster = Cluster::start(ClusterSettings::from_config(&config), RedisTarget::from_config(&config), registry, &supervisor)
            .map_err(StartError::Cluster)?;
        let state = Arc::new(AppState {
            cluster: cluster.clone(),
            metrics: metrics.clone(),
            publisher: pipeline.publisher_health.clone(),
            redis: RedisSnapshot::new(RedisTarget::from_config(&config)),
            config: config.clone(),
            model: pipeline.model.clone(),
            anpr: pipeline.anpr_status.clone(),
            supervisor: supervisor.clone(),
            validate: validate::Context { file_root: config.stream_file_root.clone() },
            feed: crate::api::feed::EventFeed::new(RedisTarget::from_config(&config), config.redis_stream.clone()),
            http: Arc::new(HttpStats::default()),
            draining: Default::default(),
            images: crate::api::images::Images::new(RedisTarget::from_config(&config), &config.redis_key_prefix),
            started: Instant::now(),
        });
        if config.api_token.is_none() && !is_loopback(&config.api_host) {
            log::warn!(
                "api: API_TOKEN is not set and the API listens on {}: anyone who reaches it can add or delete cameras",
                config.api_host
            );
        }
        let api = ApiServer::start(&config.api_host, config.api_port, state).map_err(StartError::Api)?;
        Ok(Service { api, cluster, pipeline, metrics, supervisor })
    }

    /// The detection model as loaded: provider, batch, I/O binding.
    pub fn model(&self) -> &crate::infer::YoloInfo {
        &self.pipeline.model
    }

    /// Where the API listens (useful with `API_PORT=0`).
    pub fn api_addr(&self) -> SocketAddr {
        self.api.addr()
    }

    /// The camera registry (tests drive it without HTTP).
    pub fn registry(&self) -> &Arc<Registry> {
        self.cluster.registry()
    }

    /// The cluster coordinator's handle (what this instance knows of the others).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
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
        // /readyz says 503 from here on, so a load balancer stops sending while cameras stop
        self.api.begin_drain();
        self.supervisor.begin_stop();
        log::info!("shutdown: stopping cameras");
        self.cluster.shutdown();
        self.pipeline.shutdown();
        self.api.shutdown();
        log::info!("shutdown: done");
    }
}
