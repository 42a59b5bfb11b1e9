//! The service's state in Redis (docs/architecture.md, "Redis keys"): every key the service owns, and the
//! Lua scripts that change several of them at once.
//!
//! | key (after `REDIS_KEY_PREFIX`, default `analytics:`) | type | holds |
//! | --- | --- | --- |
//! | `cameras` | hash | camera id -> its configuration as JSON (stream URL unmasked) |
//! | `versions` | hash | camera id -> the revision that last changed it |
//! | `rev` | string | revision counter: +1 per write; instances poll it to know when to reload |
//! | `lease:<camera id>` | string, PX | the instance processing the camera |
//! | `instances` | sorted set | live instance ids, scored by their last heartbeat (Redis time, ms) |
//! | `instance_info` | hash | instance id -> JSON `{max_cameras, version}` |
//! | `status` | hash | camera id -> JSON of its live state, written by its owner each tick |
//! | `anpr:<camera id>:<plate>` | string, EX | the ANPR dedupe window across instances |
//!
//! Writes are Lua scripts, so a batch of cameras is all-or-nothing and two writers can never
//! interleave: each write that changes a camera gets the next revision, which is the camera's
//! `version`. Heartbeats use Redis's clock (`TIME` inside the script), so instances on machines
//! whose clocks disagree still agree on who is alive.

use crate::camera::CameraConfig;
use crate::redis_target::RedisTarget;
use redis::{Connection, RedisResult};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long any single Redis call of the control plane may take before it counts as a failure.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What a write did to one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    Unchanged,
}

/// The whole desired state, read atomically.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub rev: u64,
    /// camera id -> (version, stored JSON)
    pub cameras: BTreeMap<String, (u64, String)>,
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("registering {new} new camera(s) would exceed the capacity of the live instances ({capacity} cameras: MAX_CAMERAS of each; {current} registered); delete some first, raise MAX_CAMERAS or add an instance")]
    Capacity { new: usize, current: usize, capacity: usize },
    #[error("Redis is unreachable, so the camera registry cannot be changed now (the last known state is still served and running cameras keep running): {0}")]
    Redis(String),
}

/// A camera's configuration as stored: the API's JSON with the stream URL unmasked. serde_json
/// maps are sorted, so equal configurations give equal strings (the scripts compare them).
pub fn stored_json(cfg: &CameraConfig) -> String {
    let mut v = serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("stream_url".into(), cfg.stream_url.expose().into());
    }
    v.to_string()
}

/// Keys under the prefix, and the calls the cluster makes. Holds one connection, reopened after
/// any failure; every call has [`CALL_TIMEOUT`].
pub struct Store {
    target: RedisTarget,
    prefix: String,
    conn: Option<Connection>,
}

const APPLY: &str = r#"
local cap, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local new = 0
for i = 0, n - 1 do
  if redis.call('HEXISTS', KEYS[1], ARGV[3 + 2 * i]) == 0 then new = new + 1 end
end
local count = redis.call('HLEN', KEYS[1])
if new > 0 and count + new > cap then return {'capacity', tostring(count), tostring(new)} end
local out = {'ok'}
local rev = nil
for i = 0, n - 1 do
  local id, cfg = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  local old = redis.call('HGET', KEYS[1], id)
  if old == cfg then
    out[#out + 1] = 'unchanged'
    out[#out + 1] = tostring(redis.call('HGET', KEYS[2], id) or '0')
  else
    if not rev then rev = redis.call('INCR', KEYS[3]) end
    redis.call('HSET', KEYS[1], id, cfg)
    redis.call('HSET', KEYS[2], id, rev)
    out[#out + 1] = old and 'updated' or 'created'
    out[#out + 1] = tostring(rev)
  end
end
return out
"#;

const DELETE: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return redis.call('INCR', KEYS[3])
"#;

/// Writes a cache back into a Redis that lost it (restarted without persistence, or restored
/// from an older snapshot): only when Redis's revision is behind the cache's, so of several
/// instances the one with the newest state wins and the others then load it.
const SEED: &str = r#"
local have = tonumber(redis.call('GET', KEYS[3]) or '0')
if have >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
redis.call('SET', KEYS[3], ARGV[1])
return 1
"#;

const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local out = {tostring(now)}
for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do out[#out + 1] = v end
return out
"#;

/// Renews each lease the instance holds, or re-takes it when it has vanished (Redis restarted);
/// 0 where another instance holds it now.
const RENEW: &str = r#"
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    out[i] = 1
  elseif not v then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"#;

const RELEASE: &str = r#"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k); n = n + 1 end
end
return n
"#;

const LEAVE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"#;

impl Store {
    pub fn new(target: RedisTarget, prefix: &str) -> Self {
        Store { target, prefix: prefix.to_string(), conn: None }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn lease_key(&self, camera_id: &str) -> String {
        format!("{}lease:{camera_id}", self.prefix)
    }

    /// Runs `f` on the connection (opening it if needed); any error drops the connection so the
    /// next call reconnects.
    fn with<T>(&mut self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        if self.conn.is_none() {
            self.conn = Some(self.target.connect(CALL_TIMEOUT)?);
        }
        let conn = self.conn.as_mut().expect("invariant: connected above");
        let r = f(conn);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    fn eval(script: &str, keys: &[String], args: &[String]) -> redis::Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(script).arg(keys.len()).arg(keys).arg(args);
        c
    }

    /// Creates or updates cameras, all or nothing: refused when the number registered would pass
    /// `capacity`. Returns the new revision and, per camera, what happened and its version.
    pub fn apply(&mut self, cameras: &[(String, String)], capacity: usize) -> Result<(u64, Vec<(Written, u64)>), StoreError> {
        let keys = [self.key("cameras"), self.key("versions"), self.key("rev")];
        let mut args = vec![capacity.to_string(), cameras.len().to_string()];
        for (id, json) in cameras {
            args.push(id.clone());
            args.push(json.clone());
        }
        let reply: Vec<String> = self.with(|c| Self::eval(APPLY, &keys, &args).query(c)).map_err(|e| StoreError::Redis(e.to_string()))?;
        let num = |s: Option<&String>| s.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        match reply.first().map(String::as_str) {
            Some("capacity") => {
                Err(StoreError::Capacity { current: num(reply.get(1)) as usize, new: num(reply.get(2)) as usize, capacity })
            }
            Some("ok") => {
                let out: Vec<(Written, u64)> = reply[1..]
                    .chunks(2)
                    .map(|p| {
                        let w = match p[0].as_str() {
                            "created" => Written::Created,
                            "updated" => Written::Updated,
                            _ => Written::Unchanged,
                        };
                        (w, num(p.get(1)))
                    })
                    .collect();
                let rev = out.iter().map(|(_, v)| *v).max().unwrap_or(0);
                Ok((rev, out))
            }
            other => Err(StoreError::Redis(format!("unexpected reply from the apply script: {other:?}"))),
        }
    }

    /// Deletes a camera; the new revision, or `None` if it was not registered.
    pub fn delete(&mut self, camera_id: &str) -> Result<Option<u64>, StoreError> {
        let keys = [self.key("cameras"), self.key("versions"), self.key("rev"), self.key("status")];
        let rev: u64 =
            self.with(|c| Self::eval(DELETE, &keys, &[camera_id.to_string()]).query(c)).map_err(|e| StoreError::Redis(e.to_string()))?;
        Ok((rev > 0).then_some(rev))
    }

    /// The current revision (0 when Redis holds no state yet, e.g. right after a restart).
    pub fn rev(&mut self) -> RedisResult<u64> {
        let key = self.key("rev");
        self.with(|c| redis::cmd("GET").arg(&key).query::<Option<u64>>(c)).map(|r| r.unwrap_or(0))
    }

    /// The desired state, read in one MULTI/EXEC so revision and cameras agree.
    pub fn snapshot(&mut self) -> RedisResult<Snapshot> {
        let (rk, ck, vk) = (self.key("rev"), self.key("cameras"), self.key("versions"));
        let (rev, cams, versions): (Option<u64>, BTreeMap<String, String>, BTreeMap<String, u64>) =
            self.with(|c| redis::pipe().atomic().get(&rk).hgetall(&ck).hgetall(&vk).query(c))?;
        let cameras = cams.into_iter().map(|(id, json)| (id.clone(), (versions.get(&id).copied().unwrap_or(0), json))).collect();
        Ok(Snapshot { rev: rev.unwrap_or(0), cameras })
    }

    /// Writes `snapshot` back if Redis's revision is behind it; true if it did.
    pub fn seed(&mut self, snapshot: &Snapshot) -> RedisResult<bool> {
        let keys = [self.key("cameras"), self.key("versions"), self.key("rev")];
        let mut args = vec![snapshot.rev.to_string()];
        for (id, (version, json)) in &snapshot.cameras {
            args.extend([id.clone(), json.clone(), version.to_string()]);
        }
        self.with(|c| Self::eval(SEED, &keys, &args).query::<i64>(c)).map(|n| n == 1)
    }

    /// Records this instance as alive and returns Redis's clock (ms: the clock statuses are aged
    /// with) and the live instances with their info JSON, dropping those silent for longer than
    /// `ttl`.
    pub fn heartbeat(&mut self, me: &str, ttl: Duration, info: &str) -> RedisResult<(u64, BTreeMap<String, String>)> {
        let keys = [self.key("instances"), self.key("instance_info")];
        let args = [me.to_string(), ttl.as_millis().to_string(), info.to_string()];
        let reply: Vec<String> = self.with(|c| Self::eval(HEARTBEAT, &keys, &args).query(c))?;
        let now_ms = reply.first().and_then(|t| t.parse().ok()).unwrap_or(0);
        let live = reply[1.min(reply.len())..].chunks(2).filter(|p| p.len() == 2).map(|p| (p[0].clone(), p[1].clone())).collect();
        Ok((now_ms, live))
    }

    /// Removes this instance from the live set (clean shutdown).
    pub fn leave(&mut self, me: &str) -> RedisResult<()> {
        let keys = [self.key("instances"), self.key("instance_info")];
        self.with(|c| Self::eval(LEAVE, &keys, &[me.to_string()]).query::<i64>(c)).map(|_| ())
    }

    /// Renews the leases on `cameras`; per camera, whether this instance still holds it.
    pub fn renew(&mut self, me: &str, cameras: &[String], ttl: Duration) -> RedisResult<Vec<bool>> {
        if cameras.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = cameras.iter().map(|c| self.lease_key(c)).collect();
        let args = [me.to_string(), ttl.as_millis().to_string()];
        let held: Vec<i64> = self.with(|c| Self::eval(RENEW, &keys, &args).query(c))?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    /// Who holds each camera's lease (`None`: nobody).
    pub fn owners(&mut self, cameras: &[String]) -> RedisResult<Vec<Option<String>>> {
        if cameras.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = cameras.iter().map(|c| self.lease_key(c)).collect();
        self.with(|c| redis::cmd("MGET").arg(&keys).query(c))
    }

    /// Tries to take each camera's lease (`SET NX PX`); per camera, whether it was taken.
    pub fn acquire(&mut self, me: &str, cameras: &[String], ttl: Duration) -> RedisResult<Vec<bool>> {
        if cameras.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for cam in cameras {
            p.cmd("SET").arg(self.lease_key(cam)).arg(me).arg("NX").arg("PX").arg(ttl.as_millis() as u64);
        }
        let replies: Vec<Option<String>> = self.with(|c| p.query(c))?;
        Ok(replies.into_iter().map(|r| r.is_some()).collect())
    }

    /// Gives up leases this instance holds (deleted, set inactive, rebalanced, shutdown).
    pub fn release(&mut self, me: &str, cameras: &[String]) -> RedisResult<usize> {
        if cameras.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = cameras.iter().map(|c| self.lease_key(c)).collect();
        self.with(|c| Self::eval(RELEASE, &keys, &[me.to_string()]).query(c))
    }

    /// Publishes the live state of the cameras this instance runs (camera id -> JSON).
    pub fn publish_status(&mut self, statuses: &[(String, String)]) -> RedisResult<()> {
        if statuses.is_empty() {
            return Ok(());
        }
        let key = self.key("status");
        self.with(|c| redis::cmd("HSET").arg(&key).arg(statuses).query::<i64>(c)).map(|_| ())
    }

    /// The live state other instances published for `cameras`.
    pub fn statuses(&mut self, cameras: &[String]) -> RedisResult<Vec<Option<String>>> {
        if cameras.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key("status");
        self.with(|c| redis::cmd("HMGET").arg(&key).arg(cameras).query(c))
    }
}
