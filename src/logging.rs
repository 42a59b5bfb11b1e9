//! Logging set-up (simplelog to stderr at `LOG_LEVEL`) and a rate limiter for hot-path warnings.
//!
//! Log lines follow "place: one sentence: error" (`publish: redis unreachable, retry in 1s: ...`).
//! Stream URLs are `StreamUrl`s, which print masked, so credentials never reach a log line.

use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};
use std::time::{Duration, Instant};

/// Installs the global logger. Safe to call twice (the second call is ignored).
pub fn init(level: log::LevelFilter) {
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        // third-party crates speak only at warn and above
        .add_filter_allow_str("analytics_service")
        .build();
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, ColorChoice::Never);
}

/// Lets one message through per `every`, counting the ones it held back.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(every: Duration) -> Self {
        RateLimit { every, last: None, suppressed: 0 }
    }

    /// `Some(n)` when a message may be logged now, `n` being how many were held back since the
    /// last one; `None` when it should be skipped.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        r.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(r.allow(), Some(2));
    }
}
