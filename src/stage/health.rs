//! What the stages report to health: the publisher's Redis state and whether ANPR's models
//! loaded. Kept here, beside the supervisor's heartbeats, so that the API reads stage health
//! without importing `pipeline` (docs/architecture.md, "Modules").

use crate::metrics::Metrics;
use parking_lot::Mutex;
use serde::Serialize;

/// The publisher's connection as health shows it; the publisher writes, health reads.
#[derive(Debug, Default)]
pub struct PublisherHealth {
    last_error: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublisherHealthSnapshot {
    pub connected: bool,
    pub last_error: Option<String>,
}

impl PublisherHealth {
    pub fn snapshot(&self, metrics: &Metrics) -> PublisherHealthSnapshot {
        PublisherHealthSnapshot { connected: metrics.redis_up(), last_error: self.last_error.lock().clone() }
    }

    /// Records the latest publish failure (kept until the next one).
    pub fn set_error(&self, message: String) {
        *self.last_error.lock() = Some(message);
    }
}

/// Whether ANPR's models loaded, and on what (for health, and to refuse `enable_anpr`).
#[derive(Debug, Clone, Serialize)]
pub struct AnprStatus {
    pub loaded: bool,
    pub error: Option<String>,
    pub plate_provider: Option<crate::infer::Provider>,
    /// The plate detector's file and precision (`int8`, `fp16` or `fp32`; ANPR_PLATE_PRECISION).
    pub plate_model: Option<String>,
    pub plate_precision: Option<&'static str>,
    pub ocr_provider: Option<crate::infer::Provider>,
}
