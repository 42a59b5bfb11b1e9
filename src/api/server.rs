//! The API server: [`super::http`] (the HTTP layer that no request can hurt) with
//! [`super::routes::handle`] as its handler.
//!
//! Shutdown stops accepting; connections finish the request they are in.

use super::http::{HttpServer, HttpStats, Limits};
use super::routes;
use crate::camera::validate;
use crate::metrics::Metrics;
use crate::pipeline::publish::{PublisherHealth, RedisTarget};
use crate::stage::supervise::Supervisor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Everything a request handler can see.
pub struct AppState {
    /// The camera registry, through the cluster (writes go to Redis first).
    pub cluster: Arc<crate::cluster::Cluster>,
    pub metrics: Arc<Metrics>,
    pub publisher: Arc<PublisherHealth>,
    pub redis: RedisTarget,
    pub config: crate::config::Config,
    /// The loaded detection model (name, provider, runtime, shapes).
    pub model: crate::infer::YoloInfo,
    /// Whether ANPR's models loaded, and on what.
    pub anpr: AnprStatus,
    /// The stage threads' heartbeats.
    pub supervisor: Arc<Supervisor>,
    /// What request validation needs (`STREAM_FILE_ROOT`).
    pub validate: validate::Context,
    /// The HTTP layer's counters (connections, refusals, handler panics).
    pub http: Arc<HttpStats>,
    pub started: Instant,
}

/// ANPR's state for `/api/health` and for refusing `enable_anpr` when it cannot run.
pub use crate::pipeline::AnprStatus;

pub struct ApiServer {
    http: HttpServer,
}

impl ApiServer {
    /// Binds `host:port` (port 0 picks a free one) and starts serving.
    pub fn start(host: &str, port: u16, state: Arc<AppState>) -> Result<Self, String> {
        let limits =
            Limits { max_body: state.config.api_max_body_bytes, max_connections: state.config.api_max_connections, ..Limits::default() };
        let stats = state.http.clone();
        let handler = Arc::new(move |req: &super::http::Request| routes::handle(&state, req));
        let http = HttpServer::start(host, port, limits, handler, stats).map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
        log::info!("api: listening on http://{}", http.addr());
        Ok(ApiServer { http })
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Whether the accept loop still runs; `main` exits non-zero when it does not.
    pub fn is_accepting(&self) -> bool {
        self.http.is_accepting()
    }

    /// Stops taking connections.
    pub fn shutdown(self) {
        self.http.shutdown();
    }
}
