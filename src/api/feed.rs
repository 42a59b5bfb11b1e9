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
/// How long a request waits for the connection another request is using.
const BUSY_WAIT: Duration = Duration::from_secs(3);

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
        // requests take turns on the one connection; one stuck behind a slow Redis gives up
        let Some(mut guard) = self.conn.try_lock_for(BUSY_WAIT) else {
            return Err("the event reader is busy; retry shortly".into());
        };
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
                end = just_before(&entry.id);
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

/// The stream id just before `id` (`<ms>-<seq>`), for the next page of `XREVRANGE`: the
/// exclusive `(id` form needs Redis 6.2, and the customer's Redis may be older.
fn just_before(id: &str) -> String {
    let parsed = id.split_once('-').and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)));
    match parsed {
        Some((ms, seq)) if seq > 0 => format!("{ms}-{}", seq - 1),
        Some((ms, _)) if ms > 0 => format!("{}-{}", ms - 1, u64::MAX),
        Some(_) => "0-0".into(), // nothing is before 0-0; the loop ends on a short page
        None => format!("({id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::just_before;

    #[test]
    fn the_id_before() {
        assert_eq!(just_before("1700000000000-5"), "1700000000000-4");
        assert_eq!(just_before("1700000000000-0"), "1699999999999-18446744073709551615");
    }
}
