//! Publisher: the one thread that writes events to the Redis Stream (docs/architecture.md, "Stage graph").
//!
//! ```text
//! events(cap EVENTS_CAP, Block) -> [publisher] -> buffer(PUBLISH_BUFFER_MAX, DropOldest, counted)
//!                                              -> pipelined XADD batches -> Redis
//! ```
//! Each entry is `XADD <stream> MAXLEN ~ <maxlen> * event_type <t> camera_id <id> timestamp <ts>
//! payload <event JSON>`. The thread always drains its input, so a Redis outage never stalls the
//! cameras: events wait in a bounded buffer, in order, while the publisher retries with capped
//! exponential backoff; when the buffer is full the *oldest* event goes (the newest are worth
//! most to a real-time consumer) and `analytics_events_dropped_total{reason="buffer_full"}`
//! counts it. On reconnect the buffer is flushed in order.
//!
//! Delivery is at-least-once: if a connection dies after Redis applied part of a pipeline, that
//! part is sent again. Consumers can drop the duplicate by `event_id`.

use crate::events::{Event, EventType};
use crate::logging::RateLimit;
use crate::metrics::{DropReason, Metrics};
use crate::stage::supervise::{beat, Supervisor};
use crate::stage::{StageHandle, StageThread, Stop};
use crossbeam_channel::{select, Receiver};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

// RedisTarget moved to crate::redis_target (it serves cluster, ANPR dedupe, API and service);
// re-exported here for the paths tests and the API still name.
pub use crate::redis_target::RedisTarget;

/// Publisher settings, from `Config` or set directly by tests.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub target: RedisTarget,
    /// `REDIS_STREAM`.
    pub stream: String,
    /// `INSTANCE_ID`, stamped on every event's payload.
    pub instance_id: String,
    /// `REDIS_STREAM_MAXLEN`, applied with `~`.
    pub maxlen: usize,
    /// `PUBLISH_BATCH_SIZE`: XADDs per pipeline round trip.
    pub batch_size: usize,
    /// `PUBLISH_BUFFER_MAX`: events held while Redis is unreachable.
    pub buffer_max: usize,
    /// Connect, read and write timeout of the Redis connection.
    pub io_timeout: Duration,
    /// First retry delay after a failure; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long shutdown may spend flushing the buffer before the rest is dropped (and counted).
    pub shutdown_flush: Duration,
}

impl PublisherConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        PublisherConfig {
            target: RedisTarget::from_config(c),
            stream: c.redis_stream.clone(),
            instance_id: c.instance_id.clone(),
            maxlen: c.redis_stream_maxlen,
            batch_size: c.publish_batch_size,
            buffer_max: c.publish_buffer_max,
            io_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            shutdown_flush: Duration::from_secs(5),
        }
    }
}

/// What `/api/health` shows of the publisher beyond its counters.
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
}

/// An event ready to send: the four stream fields.
struct Pending {
    ty: EventType,
    camera_id: String,
    timestamp: String,
    payload: String,
}

/// How a failed Redis operation should be retried.
#[derive(Debug, PartialEq, Eq)]
enum Retry {
    /// Connection trouble, timeouts, a loading or busy server: retry with backoff.
    Transient,
    /// Redis answered but refuses (wrong password, ACL, the stream key has another type):
    /// only an operator can fix it; retry at the slowest pace and log as an error.
    NeedsOperator,
}

/// The one place that sorts Redis errors.
fn classify(e: &redis::RedisError) -> Retry {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return Retry::Transient;
    }
    match e.code() {
        Some("WRONGTYPE" | "NOAUTH" | "WRONGPASS" | "NOPERM" | "ERR") => Retry::NeedsOperator,
        _ => Retry::Transient,
    }
}

/// Starts the publisher thread. It reads `events` until `stop` fires (or every sender of
/// `events` is gone), then flushes (within `shutdown_flush`) and returns; the handle's `join`
/// waits for that. The health is what `/api/health` shows of it.
pub fn spawn(
    cfg: PublisherConfig,
    events: Receiver<Event>,
    stop: Stop,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> std::io::Result<(StageHandle, Arc<PublisherHealth>)> {
    let health = Arc::new(PublisherHealth::default());
    let h = health.clone();
    let thread = StageThread::spawn("publish", supervisor, move || Publisher::new(cfg, metrics, h).run(events, stop))?;
    Ok((StageHandle::new("publish", vec![thread]), health))
}

struct Publisher {
    cfg: PublisherConfig,
    metrics: Arc<Metrics>,
    health: Arc<PublisherHealth>,
    buf: VecDeque<Pending>,
    conn: Option<redis::Connection>,
    backoff: Duration,
    /// While Redis is failing: the earliest moment to try again.
    retry_at: Option<Instant>,
    drop_log: RateLimit,
    fail_log: RateLimit,
}

impl Publisher {
    fn new(cfg: PublisherConfig, metrics: Arc<Metrics>, health: Arc<PublisherHealth>) -> Self {
        let backoff = cfg.backoff_min;
        Publisher {
            buf: VecDeque::with_capacity(cfg.buffer_max.min(4096)),
            cfg,
            metrics,
            health,
            conn: None,
            backoff,
            retry_at: None,
            drop_log: RateLimit::new(Duration::from_secs(5)),
            fail_log: RateLimit::new(Duration::from_secs(10)),
        }
    }

    fn run(mut self, events: Receiver<Event>, stop: Stop) {
        log::info!("publish: writing to stream '{}' on {:?}", self.cfg.stream, self.cfg.target);
        // Connect eagerly so health shows the truth before the first event.
        match self.connection() {
            Ok(_) => self.metrics.set_redis_up(true),
            Err(e) => {
                log::warn!("publish: Redis not reachable yet, events will be buffered until it is: {e}");
                *self.health.last_error.lock() = Some(e.to_string());
            }
        }
        let mut deadline: Option<Instant> = None; // set once stopping
        loop {
            beat();
            let can_send = !self.buf.is_empty() && self.retry_at.is_none_or(|t| Instant::now() >= t);
            if deadline.is_none() && !can_send {
                // Nothing to do until an event arrives, stop fires, or the retry moment comes.
                let wait = self.retry_at.map_or(Duration::from_millis(500), |t| t.saturating_duration_since(Instant::now()));
                select! {
                    recv(events) -> ev => match ev {
                        Ok(ev) => self.push(ev),
                        Err(_) => deadline = Some(Instant::now() + self.cfg.shutdown_flush),
                    },
                    recv(stop.receiver()) -> _ => deadline = Some(Instant::now() + self.cfg.shutdown_flush),
                    default(wait) => {}
                }
            }
            // Take what is already queued, a batch's worth at a time (all of it when stopping).
            let limit = if deadline.is_some() { usize::MAX } else { self.cfg.batch_size };
            for ev in events.try_iter().take(limit) {
                self.push(ev);
            }
            if deadline.is_none() && stop.is_stopped() {
                deadline = Some(Instant::now() + self.cfg.shutdown_flush);
            }
            if !self.buf.is_empty() && self.retry_at.is_none_or(|t| Instant::now() >= t) {
                self.send_batch();
            }
            self.metrics.set_publish_buffered(self.buf.len());
            if let Some(d) = deadline {
                if self.buf.is_empty() && events.is_empty() {
                    break;
                }
                let now = Instant::now();
                if now >= d {
                    let left = (self.buf.len() + events.len()) as u64;
                    self.metrics.events_dropped(DropReason::Shutdown, left);
                    log::error!("publish: shutdown deadline passed with Redis unreachable, {left} event(s) not published");
                    break;
                }
                if let Some(t) = self.retry_at {
                    std::thread::sleep(t.min(d).saturating_duration_since(now));
                }
            }
        }
        self.metrics.set_publish_buffered(0);
        log::info!("publish: stopped ({} published in total)", self.metrics.publisher_snapshot().published);
    }

    /// Encodes and buffers one event; a full buffer loses its oldest event (counted).
    fn push(&mut self, mut ev: Event) {
        if ev.common().instance_id.is_empty() {
            ev.common_mut().instance_id.clone_from(&self.cfg.instance_id);
        }
        let payload = match serde_json::to_string(&ev) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.events_dropped(DropReason::Encode, 1);
                log::error!("publish: cannot encode event for camera {}: {e}", ev.common().camera_id);
                return;
            }
        };
        if self.buf.len() >= self.cfg.buffer_max {
            self.buf.pop_front();
            self.metrics.events_dropped(DropReason::BufferFull, 1);
            if let Some(held) = self.drop_log.allow() {
                log::warn!(
                    "publish: buffer full ({} events) while Redis is unreachable, dropping the oldest ({held} more dropped since last report)",
                    self.cfg.buffer_max
                );
            }
        }
        let c = ev.common();
        self.buf.push_back(Pending { ty: ev.event_type(), camera_id: c.camera_id.clone(), timestamp: c.timestamp.clone(), payload });
    }

    /// Sends up to `batch_size` buffered events in one pipeline; on failure they stay buffered.
    fn send_batch(&mut self) {
        let n = self.buf.len().min(self.cfg.batch_size);
        let mut pipe = redis::pipe();
        for p in self.buf.range(..n) {
            pipe.cmd("XADD")
                .arg(&self.cfg.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.cfg.maxlen)
                .arg("*")
                .arg("event_type")
                .arg(p.ty.as_str())
                .arg("camera_id")
                .arg(&p.camera_id)
                .arg("timestamp")
                .arg(&p.timestamp)
                .arg("payload")
                .arg(&p.payload)
                .ignore();
        }
        let result = self.connection().and_then(|conn| pipe.exec(conn));
        match result {
            Ok(()) => {
                log::debug!("publish: {n} event(s) -> {}", self.cfg.stream);
                for p in self.buf.drain(..n) {
                    self.metrics.event_published(p.ty, &p.camera_id);
                }
                if self.retry_at.take().is_some() {
                    log::info!("publish: Redis reachable again, flushing {} buffered event(s)", self.buf.len() + n);
                }
                self.backoff = self.cfg.backoff_min;
                self.metrics.set_redis_up(true);
            }
            Err(e) => self.failed(e),
        }
    }

    fn connection(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.conn.is_none() {
            self.conn = Some(self.cfg.target.connect(self.cfg.io_timeout)?);
            log::debug!("publish: connected to {:?}", self.cfg.target);
        }
        Ok(self.conn.as_mut().expect("invariant: set just above"))
    }

    /// Records a failed attempt: drop the connection, count a retry, schedule the next one.
    fn failed(&mut self, e: redis::RedisError) {
        self.conn = None;
        self.metrics.publish_retried();
        self.metrics.set_redis_up(false);
        let class = classify(&e);
        if class == Retry::NeedsOperator {
            self.backoff = self.cfg.backoff_max;
        }
        let delay = self.backoff;
        self.retry_at = Some(Instant::now() + delay);
        self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
        let msg = e.to_string();
        if let Some(held) = self.fail_log.allow() {
            let buffered = self.buf.len();
            match class {
                Retry::Transient => log::warn!("publish: Redis unreachable, {buffered} event(s) buffered, retry in {delay:?} ({held} failures since last report): {msg}"),
                Retry::NeedsOperator => log::error!("publish: Redis refuses the write, {buffered} event(s) buffered, retry in {delay:?} ({held} failures since last report): {msg}"),
            }
        }
        *self.health.last_error.lock() = Some(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_target_hides_the_password() {
        let t = RedisTarget { host: "h".into(), port: 1, db: 2, password: Some("hunter2".into()) };
        assert_eq!(format!("{t:?}"), "redis://***@h:1/2");
    }
}
