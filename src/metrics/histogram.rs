//! A fixed-bucket histogram on atomics: observed from any thread without a lock, read at scrape
//! time and for the bench's quantiles.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A fixed-bucket histogram (Prometheus semantics: cumulative `le` buckets, sum, count).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in micro-units, so it fits an atomic integer.
    sum_micros: AtomicU64,
}

/// Seconds, 1 ms to ~60 s in steps of about 1.5x: latency and phase timings.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
    5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
];
/// Batch sizes.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 128.0, 256.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_micros: AtomicU64::new(0) }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v.max(0.0) * 1e6) as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn mean(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum_micros.load(Relaxed) as f64 / 1e6 / n as f64
        }
    }

    /// The bucket counts now; two of them subtract into a window (see [`Histogram::quantile_of`]).
    pub fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// The `q` quantile (0..1), interpolated within its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        self.quantile_of(&self.counts(), q)
    }

    /// The `q` quantile of bucket counts taken from this histogram (e.g. a window's difference).
    pub fn quantile_of(&self, counts: &[u64], q: f64) -> f64 {
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let target = (q * n as f64).max(1.0);
        let mut seen = 0.0;
        for (i, c) in counts.iter().enumerate() {
            let c = *c as f64;
            if seen + c >= target {
                let lo = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let hi = *self.bounds.get(i).unwrap_or(&lo);
                return lo + (hi - lo) * ((target - seen) / c).clamp(0.0, 1.0);
            }
            seen += c;
        }
        *self.bounds.last().unwrap_or(&0.0)
    }

    /// Its samples in the text exposition format, under `name` with extra `labels`.
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c.load(Relaxed);
            let le = self.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {cum}");
    }
}
