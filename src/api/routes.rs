//! Routes: path and method to handler, and the JSON replies.
//!
//! | route | methods |
//! | --- | --- |
//! | `/api/cameras` | GET (list), POST (create / update in place) |
//! | `/api/cameras/{camera_id}` | GET, DELETE |
//! | `/api/health` | GET |
//! | `/metrics` | GET (Prometheus text) |
//!
//! A trailing slash is ignored. Other paths get 404, other methods 405 with `Allow`.

use super::error::ApiError;
use super::server::AppState;
use crate::camera::validate::validate_cameras;
use crate::camera::{ApplyOutcome, CameraView, RegistryError};
use serde::Serialize;
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response};

/// Every route the server has, as `(method, path pattern)`: the OpenAPI test checks against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/cameras"),
    ("POST", "/api/cameras"),
    ("GET", "/api/cameras/{camera_id}"),
    ("DELETE", "/api/cameras/{camera_id}"),
    ("GET", "/api/health"),
    ("GET", "/metrics"),
];

/// A reply ready to send.
struct Reply {
    status: u16,
    body: String,
    content_type: &'static str,
    allow: Option<&'static str>,
}

impl Reply {
    fn json(status: u16, v: &impl Serialize) -> Reply {
        match serde_json::to_string(v) {
            Ok(body) => Reply { status, body, content_type: "application/json", allow: None },
            Err(e) => Reply::error(ApiError::internal(format!("cannot encode the reply: {e}"))),
        }
    }

    fn error(e: ApiError) -> Reply {
        let allow = e.allow;
        let mut r = Reply::json(e.status, &e);
        r.allow = allow;
        r
    }
}

/// Answers one request. Never panics on input; a failure to send the reply is logged.
pub fn handle(state: &AppState, mut req: Request) {
    let t0 = Instant::now();
    let method = req.method().clone();
    let url = req.url().to_string();
    let reply = route(state, &method, &url, &mut req).unwrap_or_else(Reply::error);
    let status = reply.status;
    let mut resp = Response::from_string(reply.body).with_status_code(status);
    let ct = Header::from_bytes("Content-Type", reply.content_type).expect("invariant: static header");
    resp.add_header(ct);
    if let Some(allow) = reply.allow {
        resp.add_header(Header::from_bytes("Allow", allow).expect("invariant: static header"));
    }
    if let Err(e) = req.respond(resp) {
        log::debug!("api: {method} {url}: client went away before the reply: {e}");
    }
    log::debug!("api: {method} {url} -> {status} in {:?}", t0.elapsed());
}

fn route(state: &AppState, method: &Method, url: &str, req: &mut Request) -> Result<Reply, ApiError> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (segments.as_slice(), method) {
        (["api", "cameras"], Method::Get) => Ok(Reply::json(200, &CameraList { cameras: state.registry.list() })),
        (["api", "cameras"], Method::Post) => post_cameras(state, req),
        (["api", "cameras"], m) => Err(ApiError::method_not_allowed(m.as_str(), path, "GET, POST")),
        (["api", "cameras", id], Method::Get) => {
            let id = percent_decode(id);
            state.registry.get(&id).map(|v| Reply::json(200, &v)).ok_or_else(|| unknown_camera(&id))
        }
        (["api", "cameras", id], Method::Delete) => {
            let id = percent_decode(id);
            state.registry.remove(&id).map(|v| Reply::json(200, &v)).ok_or_else(|| unknown_camera(&id))
        }
        (["api", "cameras", _], m) => Err(ApiError::method_not_allowed(m.as_str(), path, "GET, DELETE")),
        (["api", "health"], Method::Get) => Ok(Reply::json(200, &health(state))),
        (["api", "health"], m) => Err(ApiError::method_not_allowed(m.as_str(), path, "GET")),
        (["metrics"], Method::Get) => Ok(Reply {
            status: 200,
            body: state.metrics.render_prometheus(),
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            allow: None,
        }),
        (["metrics"], m) => Err(ApiError::method_not_allowed(m.as_str(), path, "GET")),
        _ => Err(ApiError::not_found(format!("no route {path}; see README.md for the API"))),
    }
}

fn unknown_camera(id: &str) -> ApiError {
    ApiError::not_found(format!("camera '{id}' is not registered"))
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

fn post_cameras(state: &AppState, req: &mut Request) -> Result<Reply, ApiError> {
    let content_type = req.headers().iter().find(|h| h.field.equiv("Content-Type")).map(|h| h.value.as_str().to_string());
    let is_json = content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::unsupported_media_type(content_type.as_deref()));
    }
    let limit = state.config.api_max_body_bytes;
    if req.body_length().is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = Vec::new();
    req.as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
    if body.len() > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::malformed_json(&e))?;
    let validated = validate_cameras(&value)
        .map_err(|issues| ApiError::validation(issues.into_iter().map(|i| serde_json::to_value(i).unwrap_or(Value::Null)).collect()))?;
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
            return Err(ApiError::validation(refused));
        }
    }
    let applied = state.registry.apply(validated.cameras).map_err(|e| match e {
        RegistryError::TooManyCameras { .. } => ApiError::conflict("too_many_cameras", e.to_string()),
        RegistryError::ShuttingDown => ApiError::unavailable(e.to_string()),
    })?;
    let created = applied.iter().any(|(o, _)| *o == ApplyOutcome::Created);
    let cameras: Vec<Applied> = applied.into_iter().map(|(result, camera)| Applied { result, camera }).collect();
    Ok(Reply::json(if created { 201 } else { 200 }, &PostReply { cameras, warnings: validated.warnings }))
}

/// `/api/health`: Redis reachability (a fresh PING), publisher counters, model, camera states.
fn health(state: &AppState) -> Value {
    let ping = state.redis.ping(Duration::from_millis(500));
    let cameras = state.registry.state_counts();
    let total: usize = cameras.values().sum();
    let degraded = ping.is_err() || cameras.get("error").copied().unwrap_or(0) > 0;
    let c = &state.config;
    json!({
        "status": if degraded { "degraded" } else { "ok" },
        "redis": {
            "reachable": ping.is_ok(),
            "latency_ms": ping.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
            "error": ping.err(),
            "host": c.redis_host,
            "port": c.redis_port,
            "db": c.redis_db,
            "stream": c.redis_stream,
            "publisher": {
                "health": state.publisher.snapshot(&state.metrics),
                "counters": state.metrics.publisher_snapshot(),
            },
        },
        "model": {
            "loaded": true,
            "requested_device": c.inference_device,
            "yolo": state.model,
            "anpr": state.anpr,
        },
        "cameras": { "total": total, "by_state": cameras },
        "uptime_s": state.started.elapsed().as_secs_f64(),
    })
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
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("cam%3A1"), "cam:1");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("%a\u{e9}x%41"), "%a\u{e9}xA");
    }
}
