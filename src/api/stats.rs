//! The HTTP layer's counters (exported on `/metrics` as `analytics_api_*`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters the front door keeps; every field is a plain atomic so that any thread can bump it.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests that reached a route (authenticated, framed, body read).
    pub requests: AtomicU64,
    /// Replies with a 5xx status (handler or HTTP layer).
    pub server_errors: AtomicU64,
    pub open_connections: AtomicUsize,
    /// Connections refused past `API_MAX_CONNECTIONS` (answered 503 and closed).
    pub refused_connections: AtomicU64,
    pub handler_panics: AtomicU64,
    /// Requests refused before any route (framing, limits, timeouts, missing token).
    pub rejected_requests: AtomicU64,
}

impl HttpStats {
    /// Appends the counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        for (name, kind, help, v) in [
            ("analytics_api_requests_total", "counter", "HTTP requests handled by a route.", self.requests.load(Relaxed)),
            ("analytics_api_server_errors_total", "counter", "HTTP replies with a 5xx status.", self.server_errors.load(Relaxed)),
            ("analytics_api_open_connections", "gauge", "Open HTTP connections.", self.open_connections.load(Relaxed) as u64),
            (
                "api_refused_connections_total",
                "counter",
                "Connections refused past API_MAX_CONNECTIONS.",
                self.refused_connections.load(Relaxed),
            ),
            (
                "analytics_api_handler_panics_total",
                "counter",
                "Requests whose handler panicked (answered 500).",
                self.handler_panics.load(Relaxed),
            ),
            (
                "api_rejected_requests_total",
                "counter",
                "Requests refused before any route (framing, limits, timeouts, token).",
                self.rejected_requests.load(Relaxed),
            ),
        ] {
            crate::metrics::render::single(out, name, kind, help, v);
        }
    }
}
