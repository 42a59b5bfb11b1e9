//! `GET /api/events`: the newest events, read back from the Redis Stream the service writes
//! (`REDIS_STREAM`) with `XREVRANGE`, newest first, for the operator page's event list and for
//! anyone who wants to look without a consumer group.
//!
//! Bounded: at most [`MAX_COUNT`] events a request, and at most [`MAX_SCAN`] stream entries
//! read to find them (a camera that has been quiet while others were busy may get fewer than
//! it asked for; `scanned` and `exhausted` in the reply say how far the search went). One kept
//! connection with short timeouts, behind a lock: requests queue on it rather than opening
//! connections.

use crate::redis_target::RedisTarget;
use parking_lot::Mutex;
use redis::streams::StreamRangeReply;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Most events one request may ask for (`count`).
pub const MAX_COUNT: usize = 200;
/// `count` when the query has none.
pub const DEFAULT_COUNT: usize = 50;
/// Most stream entries one request reads while filtering by camera.
pub const MAX_SCAN: usize = 10_000;
/// Entries per `XREVRANGE` round trip.
const PAGE: usize = 500;
const TIMEOUT: Duration = Duration::from_millis(1500);

/// One event as read from the stream: its stream entry id and the event's JSON (exactly what
/// was published: docs/events.md).
#[derive(Debug, Serialize)]
pub struct FeedEntry {
    pub id: String,
    pub event: Value,
}

/// The reply of `GET /api/events`.
#[derive(Debug, Serialize)]
pub struct Feed {
    pub events: Vec<FeedEntry>,
    /// Stream entries read to find them.
    pub scanned: usize,
    /// Whether the whole stream was read (false: the search stopped at [`MAX_SCAN`] or at
    /// `count`).
    pub exhausted: bool,
}

pub struct EventFeed {
    target: RedisTarget,
    stream: String,
    conn: Mutex<Option<redis::Connection>>,
}

impl EventFeed {
    pub fn new(target: RedisTarget, stream: String) -> EventFeed {
        EventFeed { target, stream, conn: Mutex::new(None) }
    }

    /// The newest `count` events (of `camera_id` when given), newest first.
    pub fn recent(&self, camera_id: Option<&str>, count: usize) -> Result<Feed, String> {
        let mut guard = self.conn.lock();
        if guard.is_none() {
            *guard = Some(self.target.connect(TIMEOUT).map_err(|e| format!("cannot reach Redis: {e}"))?);
        }
        let conn = guard.as_mut().expect("connected above");
        let result = self.scan(conn, camera_id, count);
        if result.is_err() {
            *guard = None; // a fresh connection next time
        }
        result
    }

    fn scan(&self, conn: &mut redis::Connection, camera_id: Option<&str>, count: usize) -> Result<Feed, String> {
        let mut events = Vec::with_capacity(count);
        let mut end = "+".to_string();
        let mut scanned = 0;
        loop {
            let page = if camera_id.is_some() { PAGE.min(MAX_SCAN - scanned) } else { count - events.len() };
            let reply: StreamRangeReply = redis::cmd("XREVRANGE")
                .arg(&self.stream)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(page)
                .query(conn)
                .map_err(|e| format!("cannot read the stream from Redis: {e}"))?;
            let n = reply.ids.len();
            scanned += n;
            for entry in reply.ids {
                end = format!("({}", entry.id);
                if let Some(want) = camera_id {
                    let cam: Option<String> = entry.get("camera_id");
                    if cam.as_deref() != Some(want) {
                        continue;
                    }
                }
                let payload: Option<String> = entry.get("payload");
                let event = payload.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or(Value::Null);
                events.push(FeedEntry { id: entry.id, event });
                if events.len() == count {
                    return Ok(Feed { events, scanned, exhausted: false });
                }
            }
            if n < page {
                return Ok(Feed { events, scanned, exhausted: true });
            }
            if scanned >= MAX_SCAN || camera_id.is_none() {
                return Ok(Feed { events, scanned, exhausted: false });
            }
        }
    }
}
