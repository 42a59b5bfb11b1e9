//! The HTTP listener: `API_THREADS` threads take requests from one tiny_http server.
//!
//! One request's failure is logged and never stops the server. Shutdown sets a flag and
//! unblocks each thread once, then joins them.

use super::routes;
use crate::camera::Registry;
use crate::metrics::Metrics;
use crate::pipeline::publish::{PublisherHealth, RedisTarget};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Everything a request handler can see.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub publisher: Arc<PublisherHealth>,
    pub redis: RedisTarget,
    pub config: crate::config::Config,
    /// The loaded detection model (name, provider, runtime, shapes).
    pub model: crate::pipeline::detect::yolo::YoloInfo,
    /// Whether ANPR's models loaded, and on what.
    pub anpr: AnprStatus,
    pub started: Instant,
}

/// ANPR's state for `/api/health` and for refusing `enable_anpr` when it cannot run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnprStatus {
    pub loaded: bool,
    pub error: Option<String>,
    pub plate_provider: Option<crate::pipeline::detect::session::Provider>,
    pub ocr_provider: Option<crate::pipeline::detect::session::Provider>,
}

pub struct ApiServer {
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl ApiServer {
    /// Binds `host:port` (port 0 picks a free one) and starts `threads` request threads.
    pub fn start(host: &str, port: u16, threads: usize, state: Arc<AppState>) -> Result<Self, String> {
        let server = tiny_http::Server::http((host, port)).map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
        let addr = server.server_addr().to_ip().ok_or("listener has no IP address")?;
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let (server, state, stopping) = (server.clone(), state.clone(), stopping.clone());
            let h = std::thread::Builder::new()
                .name(format!("api-{i}"))
                .spawn(move || serve(&server, &state, &stopping))
                .map_err(|e| format!("cannot start API thread: {e}"))?;
            handles.push(h);
        }
        log::info!("api: listening on http://{addr}");
        Ok(ApiServer { server, threads: handles, stopping, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests and joins the threads (requests in flight finish first).
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, state: &AppState, stopping: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(req) => routes::handle(state, req),
            Err(_) if stopping.load(Ordering::SeqCst) => break,
            Err(e) => log::warn!("api: accepting a request failed: {e}"),
        }
    }
}
