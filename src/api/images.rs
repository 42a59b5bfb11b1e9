//! The image routes (DESIGN section 10): `GET /api/cameras/{id}/latest.jpg`,
//! `GET /api/objects/{track_id}/snapshot.jpg` and `/thumbnail.jpg`. Any instance answers: the
//! images are in Redis (`crate::evidence`'s keys). For a latest frame this instance marks the
//! camera wanted (`latest_want:<camera>`, PX `WANT_TTL`); the camera's owner then hands its
//! frames over (`latest:<camera>`, at most 2 a second, only while wanted), and this instance
//! draws the overlays, scales and re-encodes per query.

use super::error::ApiError;
use super::reply::Reply;
use crate::evidence::image::{self, decode_jpeg, encode_jpeg};
use crate::evidence::{Keys, LatestMeta, SnapshotInfo, WANT_TTL};
use crate::redis_target::RedisTarget;
use http::header::{HeaderName, CACHE_CONTROL};
use opencv::core::Scalar;
use parking_lot::Mutex;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a request for a camera nobody looked at waits for its owner to hand a frame over
/// (the owner reads the wanted marks every 200 ms and hands over at once).
pub const FIRST_FRAME_WAIT: Duration = Duration::from_millis(2500);
/// Redis calls of the image routes give up after this.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Most connections kept for the image routes (more concurrent requests open their own).
const KEPT_CONNECTIONS: usize = 4;

/// The query of an image route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageQuery {
    pub bbox: bool,
    pub zones: bool,
    pub motion: bool,
    pub crop: bool,
    pub height: Option<u32>,
    pub quality: Option<i32>,
}

/// Default JPEG quality of the answers.
pub const DEFAULT_QUALITY: i32 = 70;

impl ImageQuery {
    /// Parses `bbox=1&zones=1&motion=1&crop=1&height=N&quality=Q`; unknown names are ignored,
    /// bad values are a 422 naming the parameter.
    pub fn parse(query: &str) -> Result<ImageQuery, ApiError> {
        let mut q = ImageQuery::default();
        let mut bad = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "1"));
            let flag = |v: &str| match v {
                "1" | "true" | "yes" | "" => Some(true),
                "0" | "false" | "no" => Some(false),
                _ => None,
            };
            let mut set_flag = |slot: &mut bool, name: &str| match flag(v) {
                Some(b) => *slot = b,
                None => bad.push(json!({"path": format!("query.{name}"), "message": format!("must be 1 or 0, got '{}'", short(v))})),
            };
            match k {
                "bbox" => set_flag(&mut q.bbox, "bbox"),
                "zones" => set_flag(&mut q.zones, "zones"),
                "motion" => set_flag(&mut q.motion, "motion"),
                "crop" => set_flag(&mut q.crop, "crop"),
                "height" => match v.parse::<u32>() {
                    Ok(h) if (16..=4320).contains(&h) => q.height = Some(h),
                    _ => bad
                        .push(json!({"path": "query.height", "message": format!("must be an integer in [16, 4320], got '{}'", short(v))})),
                },
                "quality" => match v.parse::<i32>() {
                    Ok(x) if (1..=100).contains(&x) => q.quality = Some(x),
                    _ => {
                        bad.push(json!({"path": "query.quality", "message": format!("must be an integer in [1, 100], got '{}'", short(v))}))
                    }
                },
                _ => {}
            }
        }
        if bad.is_empty() {
            Ok(q)
        } else {
            Err(ApiError::validation(bad.len(), bad))
        }
    }
}

fn short(v: &str) -> String {
    v.chars().take(32).collect()
}

/// Redis as the image routes see it: a few kept connections.
pub struct Images {
    target: RedisTarget,
    pub keys: Keys,
    conns: Mutex<Vec<redis::Connection>>,
}

impl Images {
    pub fn new(target: RedisTarget, prefix: &str) -> Images {
        Images { target, keys: Keys::new(prefix), conns: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on a kept (or new) connection; a connection that failed is not kept.
    fn redis<T>(&self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, ApiError> {
        let kept = self.conns.lock().pop();
        let mut c = match kept {
            Some(c) => c,
            None => self.target.connect(CALL_TIMEOUT).map_err(redis_away)?,
        };
        let r = f(&mut c).map_err(redis_away)?;
        let mut conns = self.conns.lock();
        if conns.len() < KEPT_CONNECTIONS {
            conns.push(c);
        }
        Ok(r)
    }

    /// `GET /api/cameras/{id}/latest.jpg` for a registered camera.
    pub fn latest(&self, camera_id: &str, q: &ImageQuery) -> Result<Reply, ApiError> {
        let want = self.keys.latest_want(camera_id);
        let key = self.keys.latest(camera_id);
        let read = |this: &Images| -> Result<Option<(String, Vec<u8>)>, ApiError> {
            let (meta, jpeg): (Option<String>, Option<Vec<u8>>) = this.redis(|c| {
                redis::pipe()
                    .cmd("SET")
                    .arg(&want)
                    .arg(1)
                    .arg("PX")
                    .arg(WANT_TTL.as_millis() as u64)
                    .ignore()
                    .cmd("HMGET")
                    .arg(&key)
                    .arg("meta")
                    .arg("jpeg")
                    .query::<((Option<String>, Option<Vec<u8>>),)>(c)
                    .map(|(x,)| x)
            })?;
            Ok(meta.zip(jpeg))
        };
        let t0 = Instant::now();
        let (meta, jpeg) = loop {
            if let Some(found) = read(self)? {
                break found;
            }
            if t0.elapsed() >= FIRST_FRAME_WAIT {
                return Err(ApiError::unavailable(format!(
                    "camera '{camera_id}' has no frame yet: it is not running or not connected (see GET /api/cameras/{camera_id})"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let meta: LatestMeta = serde_json::from_str(&meta).map_err(|e| ApiError::internal(format!("latest frame record: {e}")))?;
        let mut img = decode_jpeg(&jpeg).map_err(|e| ApiError::internal(format!("latest frame: {e}")))?;
        let mut draw = || -> Result<(), image::ImageError> {
            if q.zones {
                for z in &meta.zones {
                    image::draw_polygon(&mut img, &z.name, &z.points, Scalar::new(255.0, 200.0, 0.0, 0.0))?;
                }
            }
            if q.motion {
                for b in &meta.motion_boxes {
                    image::draw_box(&mut img, b, "", "motion")?;
                }
            }
            if q.bbox {
                for b in &meta.boxes {
                    let n = b.track_id.as_deref().and_then(|t| t.rsplit('-').next()).unwrap_or("");
                    let label = format!("{} {:.2}{}{}", b.class_name, b.confidence, if n.is_empty() { "" } else { " #" }, n);
                    image::draw_box(&mut img, &b.bounding_box, &label, &b.class_name)?;
                }
            }
            Ok(())
        };
        draw().map_err(|e| ApiError::internal(format!("drawing the overlays: {e}")))?;
        let mut reply = jpeg_reply(img, q)?;
        reply.headers.push((HeaderName::from_static("x-frame-number"), meta.frame_number.to_string()));
        reply.headers.push((HeaderName::from_static("x-frame-timestamp"), meta.timestamp.clone()));
        Ok(reply)
    }

    /// The snapshot record of `track_id`, or 404.
    fn info(&self, track_id: &str) -> Result<SnapshotInfo, ApiError> {
        let key = self.keys.object(track_id);
        let raw: Option<String> = self.redis(|c| redis::cmd("GET").arg(&key).query(c))?;
        let raw = raw.ok_or_else(|| gone(track_id))?;
        serde_json::from_str(&raw).map_err(|e| ApiError::internal(format!("snapshot record: {e}")))
    }

    fn bytes(&self, key: &str, track_id: &str) -> Result<Vec<u8>, ApiError> {
        let v: Option<Vec<u8>> = self.redis(|c| redis::cmd("GET").arg(key).query(c))?;
        v.ok_or_else(|| gone(track_id))
    }

    /// `GET /api/objects/{track_id}/snapshot.jpg`.
    pub fn snapshot(&self, track_id: &str, q: &ImageQuery) -> Result<Reply, ApiError> {
        let info = self.info(track_id)?;
        let jpeg = self.bytes(&info.key, track_id)?;
        let mut img = decode_jpeg(&jpeg).map_err(|e| ApiError::internal(format!("snapshot: {e}")))?;
        let mut frame_headers = vec![
            (HeaderName::from_static("x-frame-number"), info.frame_number.to_string()),
            (HeaderName::from_static("x-frame-timestamp"), info.timestamp.clone()),
        ];
        if q.bbox {
            image::draw_box(&mut img, &info.bounding_box, "", "object").map_err(|e| ApiError::internal(e.to_string()))?;
        }
        if q.crop {
            img = image::crop(&img, &info.bounding_box, 0.1).map_err(|e| ApiError::internal(e.to_string()))?;
        }
        let mut reply = jpeg_reply(img, q)?;
        reply.headers.append(&mut frame_headers);
        Ok(reply)
    }

    /// `GET /api/objects/{track_id}/thumbnail.jpg`: the stored bytes, re-encoded only when the
    /// query asks for another size or quality.
    pub fn thumbnail(&self, track_id: &str, q: &ImageQuery) -> Result<Reply, ApiError> {
        let info = self.info(track_id)?;
        let jpeg = self.bytes(&info.thumbnail_key, track_id)?;
        if q.height.is_none() && q.quality.is_none() {
            return Ok(image_reply(jpeg));
        }
        let img = decode_jpeg(&jpeg).map_err(|e| ApiError::internal(format!("thumbnail: {e}")))?;
        jpeg_reply(img, q)
    }
}

fn jpeg_reply(img: opencv::core::Mat, q: &ImageQuery) -> Result<Reply, ApiError> {
    let img = image::scale_to_height(img, q.height).map_err(|e| ApiError::internal(e.to_string()))?;
    let bytes = encode_jpeg(&img, q.quality.unwrap_or(DEFAULT_QUALITY)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(image_reply(bytes))
}

fn image_reply(bytes: Vec<u8>) -> Reply {
    Reply { status: 200, content_type: "image/jpeg", headers: vec![(CACHE_CONTROL, "no-store".into())], body: bytes.into(), close: false }
}

fn gone(track_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no snapshot of object '{}': unknown, not kept (camera parameter snapshots false) or expired (SNAPSHOT_TTL_S)",
        short(track_id)
    ))
}

fn redis_away(e: redis::RedisError) -> ApiError {
    ApiError::unavailable(format!("images are kept in Redis, which is unreachable now: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = ImageQuery::parse("bbox=1&zones=true&height=240&quality=50&x=y").unwrap();
        assert_eq!(q, ImageQuery { bbox: true, zones: true, height: Some(240), quality: Some(50), ..Default::default() });
        assert_eq!(ImageQuery::parse("").unwrap(), ImageQuery::default());
        let e = ImageQuery::parse("quality=0&height=abc&bbox=maybe").unwrap_err();
        assert_eq!(e.status, 422);
    }
}
