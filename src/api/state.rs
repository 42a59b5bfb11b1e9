//! [`AppState`]: everything a route can see. Its own module so that the routes and the server
//! both depend on it and not on each other.

use super::snapshot::RedisSnapshot;
use super::stats::HttpStats;
use crate::camera::validate;
use crate::metrics::Metrics;
use crate::stage::health::PublisherHealth;
use crate::stage::supervise::Supervisor;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// ANPR's state for `/api/health` and for refusing `enable_anpr` when it cannot run.
pub use crate::stage::health::AnprStatus;

/// Everything a request handler can see.
pub struct AppState {
    /// The camera registry, through the cluster (writes go to Redis first).
    pub cluster: Arc<crate::cluster::Cluster>,
    pub metrics: Arc<Metrics>,
    pub publisher: Arc<PublisherHealth>,
    /// Redis as health sees it: one kept connection, one PING a second at most.
    pub redis: RedisSnapshot,
    pub config: crate::config::Config,
    /// The loaded detection model (name, provider, runtime, shapes).
    pub model: crate::infer::YoloInfo,
    /// Whether ANPR's models loaded, and on what.
    pub anpr: AnprStatus,
    /// The stage threads' heartbeats.
    pub supervisor: Arc<Supervisor>,
    /// What request validation needs (`STREAM_FILE_ROOT`).
    pub validate: validate::Context,
    /// `GET /api/events`: the stream read back, one kept connection.
    pub feed: super::feed::EventFeed,
    /// The HTTP layer's counters (connections, refusals, handler panics).
    pub http: Arc<HttpStats>,
    /// Set when shutdown begins: `/readyz` answers 503 so that a load balancer stops sending.
    pub draining: AtomicBool,
    /// The image routes' view of Redis (latest frames, snapshots).
    pub images: super::images::Images,
    pub started: Instant,
}
