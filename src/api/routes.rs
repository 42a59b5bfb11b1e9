//! Routes: path and method to handler, and the JSON replies. Handlers are synchronous (they
//! take locks and talk to Redis); [`super::front`] runs them off the reactor.
//!
//! | route | methods | token |
//! | --- | --- | --- |
//! | `/api/cameras` | GET (list), POST (create / update in place) | yes |
//! | `/api/cameras/{camera_id}` | GET, DELETE | yes |
//! | `/api/cameras/{camera_id}/counts` | GET (zone occupancy, line totals) | yes |
//! | `/api/cameras/{camera_id}/counts/reset` | POST (line totals to zero) | yes |
//! | `/api/events` | GET (newest events from the stream, [`super::feed`]) | yes |
//! | `/`, `/assets/*` | GET (the operator page, [`super::page`]) | no |
//! | `/api/health` | GET | no |
//! | `/livez`, `/readyz` | GET (Kubernetes probes) | no |
//! | `/metrics` | GET (Prometheus text) | yes |
//! | `/api/cameras/{camera_id}/latest.jpg` | GET (the newest frame, JPEG) | yes |
//! | `/api/objects/{track_id}/snapshot.jpg`, `.../thumbnail.jpg` | GET (an object's best frame) | yes |
//!
//! `HEAD` is answered like `GET` (hyper leaves the body out and keeps its `Content-Length`).
//! A trailing slash is ignored. Other paths get 404, other methods 405 with `Allow`.

use super::error::ApiError;
use super::health;
use super::images::ImageQuery;
use super::reply::{Reply, Request};
use super::state::AppState;
use crate::camera::validate::validate_cameras;
use crate::camera::{ApplyOutcome, CameraView, CountsReset};
use crate::cluster::store::StoreError;
use crate::cluster::ClusterError;
use http::{HeaderMap, Method};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;

/// Every route the server has, as `(method, path pattern)`: the OpenAPI test checks against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/cameras"),
    ("POST", "/api/cameras"),
    ("GET", "/api/cameras/{camera_id}"),
    ("GET", "/api/cameras/{camera_id}/counts"),
    ("POST", "/api/cameras/{camera_id}/counts/reset"),
    ("GET", "/api/events"),
    ("DELETE", "/api/cameras/{camera_id}"),
    ("GET", "/api/health"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/cameras/{camera_id}/latest.jpg"),
    ("GET", "/api/objects/{track_id}/snapshot.jpg"),
    ("GET", "/api/objects/{track_id}/thumbnail.jpg"),
    ("GET", "/"),
    ("GET", "/assets/app.js"),
    ("GET", "/assets/app.css"),
];

/// Where [`super::front`] runs a request's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Answered on the reactor: `/livez` and `/readyz` read only memory (atomics and short
    /// locks), so no number of busy handlers can delay a probe.
    Inline,
    /// `/api/health`: a blocking handler with permits of its own, so the other routes cannot
    /// use them up.
    Health,
    /// Everything else: the shared handler permits.
    Handler,
}

fn normalise(path: &str) -> &str {
    if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    }
}

fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

/// The lane of a request; only `GET`/`HEAD` of the probes take the short ones.
pub fn lane(method: &Method, path: &str) -> Lane {
    match normalise(path) {
        "/livez" | "/readyz" if is_get(method) => Lane::Inline,
        "/api/health" if is_get(method) => Lane::Health,
        _ => Lane::Handler,
    }
}

/// Whether a request needs the token: all but `GET`/`HEAD` of health, the probes and the
/// operator page's assets (they hold no data; every data call the page makes sends the token).
pub fn needs_token(method: &Method, path: &str) -> bool {
    lane(method, path) == Lane::Handler && !(is_get(method) && super::page::is_asset(normalise(path)))
}

/// `Authorization: Bearer <API_TOKEN>`, compared in constant time. Checked by
/// [`super::front`] on the head alone, before any body byte is read.
pub fn authorised(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = state.config.api_token.as_deref() else { return true };
    let given = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = 0u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0 && a.len() == b.len()
}

/// Answers one request (already authorised, body read). Input never makes it panic; if a bug
/// does, [`super::front`] turns the panic into a 500 and the server goes on.
pub fn handle(state: &AppState, req: &Request) -> Reply {
    let t0 = Instant::now();
    let reply = route(state, req).unwrap_or_else(|e| Reply::error(&e));
    log::debug!("api: {} {} -> {} in {:?}", req.method, truncate_path(&req.path), reply.status, t0.elapsed());
    reply
}

fn route(state: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let path = normalise(&req.path);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method.as_str();
    let get = is_get(&req.method);
    match (segments.as_slice(), method) {
        (["api", "cameras"], _) if get => Ok(Reply::json(200, &CameraList { cameras: state.cluster.registry().list() })),
        (["api", "cameras"], "POST") => post_cameras(state, req),
        (["api", "cameras"], m) => Err(ApiError::method_not_allowed(m, path, "GET, POST")),
        (["api", "cameras", id], _) if get => {
            let id = percent_decode(id);
            state.cluster.registry().get(&id).map(|v| Reply::json(200, &v)).ok_or_else(|| unknown_camera(&id))
        }
        (["api", "cameras", id], "DELETE") => {
            let id = percent_decode(id);
            match state.cluster.delete(&id) {
                Ok(Some(v)) => Ok(Reply::json(200, &v)),
                Ok(None) => Err(unknown_camera(&id)),
                Err(e) => Err(cluster_error(e)),
            }
        }
        (["api", "cameras", _], m) => Err(ApiError::method_not_allowed(m, path, "GET, DELETE")),
        (["api", "cameras", id, "latest.jpg"], _) if get => {
            let id = percent_decode(id);
            let q = ImageQuery::parse(&req.query)?;
            state.cluster.registry().get(&id).ok_or_else(|| unknown_camera(&id))?;
            state.images.latest(&id, &q)
        }
        (["api", "cameras", _, "latest.jpg"], m) => Err(ApiError::method_not_allowed(m, path, "GET")),
        (["api", "objects", track @ .., "snapshot.jpg" | "thumbnail.jpg"], _) if get && !track.is_empty() => {
            // a track id holds a '/' (`<camera>/<ms>-<n>`): sent as is or as %2F
            let track_id = track.iter().map(|s| percent_decode(s)).collect::<Vec<_>>().join("/");
            let q = ImageQuery::parse(&req.query)?;
            if path.ends_with("snapshot.jpg") {
                state.images.snapshot(&track_id, &q)
            } else {
                state.images.thumbnail(&track_id, &q)
            }
        }
        (["api", "objects", track @ .., "snapshot.jpg" | "thumbnail.jpg"], m) if !track.is_empty() => {
            Err(ApiError::method_not_allowed(m, path, "GET"))
        }
        (["api", "cameras", id, "counts"], _) if get => {
            let id = percent_decode(id);
            state.cluster.registry().counts(&id).map(|v| Reply::json(200, &v)).ok_or_else(|| unknown_camera(&id))
        }
        (["api", "cameras", _, "counts"], m) => Err(ApiError::method_not_allowed(m, path, "GET")),
        (["api", "cameras", id, "counts", "reset"], "POST") => {
            let id = percent_decode(id);
            match state.cluster.registry().reset_counts(&id) {
                Some(CountsReset::Done(v)) => Ok(Reply::json(200, &v)),
                Some(CountsReset::Elsewhere(owner)) => Err(ApiError::conflict(
                    "not_owner",
                    format!(
                        "camera '{}' runs on instance '{owner}': send the reset to that instance (counts live where the camera runs)",
                        truncate_path(&id)
                    ),
                )),
                None => Err(unknown_camera(&id)),
            }
        }
        (["api", "cameras", _, "counts", "reset"], m) => Err(ApiError::method_not_allowed(m, path, "POST")),
        (["api", "health"], _) if get => Ok(Reply::json(200, &health::health(state))),
        (["livez"], _) if get => Ok(health::livez()),
        (["readyz"], _) if get => Ok(health::readyz(state)),
        (["api", "health"] | ["livez"] | ["readyz"], m) => Err(ApiError::method_not_allowed(m, path, "GET")),
        (["metrics"], _) if get => Ok(Reply::text(200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(state))),
        (["metrics"], m) => Err(ApiError::method_not_allowed(m, path, "GET")),
        (["api", "events"], _) if get => events(state, req),
        (["api", "events"], m) => Err(ApiError::method_not_allowed(m, path, "GET")),
        _ if super::page::is_asset(path) => {
            if get {
                Ok(super::page::asset(path).expect("is_asset"))
            } else {
                Err(ApiError::method_not_allowed(method, path, "GET"))
            }
        }
        _ => Err(ApiError::not_found(format!("no route {}; see README.md for the API", truncate_path(path)))),
    }
}

/// Paths quoted back are cut short (they are attacker-chosen and up to 8 KiB).
fn truncate_path(p: &str) -> String {
    if p.chars().count() <= 128 {
        p.to_string()
    } else {
        format!("{}...", p.chars().take(128).collect::<String>())
    }
}

/// The service's metrics plus the HTTP layer's counters and the stages' liveness.
fn render_metrics(state: &AppState) -> String {
    let mut out = state.metrics.render_prometheus();
    state.http.render(&mut out);
    crate::metrics::render::labelled(
        &mut out,
        "analytics_stage_up",
        "gauge",
        "Whether a stage thread is alive and beating (1) or dead or stalled (0).",
        "stage",
        state.supervisor.report().into_iter().map(|s| (s.name.to_string(), u64::from(s.state == "ok"))),
    );
    out
}

/// 409 past the cluster's capacity; 503 while Redis is unreachable or the service stops.
fn cluster_error(e: ClusterError) -> ApiError {
    match e {
        ClusterError::Store(StoreError::Capacity { .. }) => ApiError::conflict("too_many_cameras", e.to_string()),
        ClusterError::Store(StoreError::Redis(_)) | ClusterError::ShuttingDown => ApiError::unavailable(e.to_string()),
    }
}

fn unknown_camera(id: &str) -> ApiError {
    ApiError::not_found(format!("camera '{}' is not registered", truncate_path(id)))
}

#[derive(Serialize)]
struct CameraList {
    cameras: Vec<CameraView>,
}

/// The POST reply: each camera with what the request did to it, and ignored fields.
#[derive(Serialize)]
struct PostReply {
    cameras: Vec<Applied>,
    warnings: Vec<crate::camera::validate::Issue>,
}

/// A camera in the POST reply: its view plus what the request did to it.
#[derive(Serialize)]
struct Applied {
    result: ApplyOutcome,
    #[serde(flatten)]
    camera: CameraView,
}

fn post_cameras(state: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let content_type = req.header("Content-Type");
    let is_json = content_type.and_then(|ct| ct.split(';').next()).is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    // the front door has already refused bodies over API_MAX_BODY_BYTES (413)
    let value: Value = super::strict_json::from_slice(&req.body).map_err(|e| ApiError::malformed_json(&e))?;
    let validated = validate_cameras(&value, &state.validate).map_err(|invalid| {
        let details = invalid.issues.into_iter().map(|i| serde_json::to_value(i).unwrap_or(Value::Null)).collect();
        ApiError::validation(invalid.total, details)
    })?;
    if !state.anpr.loaded {
        let refused: Vec<Value> = validated
            .cameras
            .iter()
            .enumerate()
            .filter(|(_, c)| c.parameters.enable_anpr)
            .map(|(i, _)| {
                let path = if value.is_array() { format!("[{i}].parameters.enable_anpr") } else { "parameters.enable_anpr".into() };
                json!({"path": path, "message": format!("ANPR is not available on this service: {}", state.anpr.error.as_deref().unwrap_or("models not loaded"))})
            })
            .collect();
        if !refused.is_empty() {
            return Err(ApiError::validation(refused.len(), refused));
        }
    }
    let mut cameras = validated.cameras;
    keep_masked_urls(state, &mut cameras);
    let applied = state.cluster.apply(cameras).map_err(cluster_error)?;
    let created = applied.iter().any(|(o, _)| *o == ApplyOutcome::Created);
    let cameras: Vec<Applied> = applied.into_iter().map(|(result, camera)| Applied { result, camera }).collect();
    Ok(Reply::json(if created { 201 } else { 200 }, &PostReply { cameras, warnings: validated.warnings }))
}

/// A `stream_url` sent back exactly as the API shows it masked (`rtsp://user:***@host/...`)
/// keeps the stored URL: a client (the operator page) can read a camera, change a parameter
/// and post it back without knowing the password, and without replacing it with `***`.
fn keep_masked_urls(state: &AppState, cameras: &mut [crate::camera::CameraConfig]) {
    for cam in cameras {
        if let Some(stored) = state.cluster.registry().get(&cam.camera_id) {
            let stored = stored.config.stream_url;
            if stored.masked() != stored.expose() && cam.stream_url.expose() == stored.masked() {
                cam.stream_url = stored;
            }
        }
    }
}

/// `GET /api/events?camera_id=&count=`: the newest events, newest first ([`super::feed`]).
fn events(state: &AppState, req: &Request) -> Result<Reply, ApiError> {
    use super::feed::{DEFAULT_COUNT, MAX_COUNT};
    let mut details = Vec::new();
    let camera_id = req.query_param("camera_id").filter(|c| !c.is_empty());
    if let Some(id) = &camera_id {
        if !crate::camera::validate::valid_camera_id(id) {
            details.push(json!({"path": "camera_id", "message": "is not a valid id: use 1 to 128 characters of A-Z a-z 0-9 . _ : -"}));
        }
    }
    let count = match req.query_param("count").filter(|c| !c.is_empty()) {
        None => DEFAULT_COUNT,
        Some(c) => match c.parse::<usize>() {
            Ok(n) if (1..=MAX_COUNT).contains(&n) => n,
            _ => {
                details.push(
                    json!({"path": "count", "message": format!("must be an integer in [1, {MAX_COUNT}], got '{}'", truncate_path(&c))}),
                );
                0
            }
        },
    };
    if !details.is_empty() {
        return Err(ApiError::validation(details.len(), details));
    }
    let feed = state.feed.recent(camera_id.as_deref(), count).map_err(ApiError::unavailable)?;
    Ok(Reply::json(200, &feed))
}

/// Decodes `%XX` escapes in a path segment (ids may contain ':' which clients may escape).
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, percent_decode};

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("cam%3A1"), "cam:1");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("%a\u{e9}x%41"), "%a\u{e9}xA");
    }
}
