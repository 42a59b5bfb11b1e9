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
use super::http::{Request, Response};
use super::server::AppState;
use crate::camera::validate::validate_cameras;
use crate::camera::{ApplyOutcome, CameraState, CameraView};
use crate::cluster::store::StoreError;
use crate::cluster::ClusterError;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime};

/// Every route the server has, as `(method, path pattern)`: the OpenAPI test checks against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/cameras"),
    ("POST", "/api/cameras"),
    ("GET", "/api/cameras/{camera_id}"),
    ("DELETE", "/api/cameras/{camera_id}"),
    ("GET", "/api/health"),
    ("GET", "/metrics"),
];

/// A camera `reconnecting` for longer than this makes health `degraded`.
pub const STUCK_RECONNECTING: Duration = Duration::from_secs(60);

fn json_reply(status: u16, v: &impl Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => Response { status, content_type: "application/json", headers: Vec::new(), body },
        Err(e) => Response::error(&ApiError::internal(format!("cannot encode the reply: {e}"))),
    }
}

/// Answers one request. Input never makes it panic; if a bug does, the HTTP layer turns the
/// panic into a 500 and the connection thread lives on.
pub fn handle(state: &AppState, req: &Request) -> Response {
    let t0 = Instant::now();
    let path = req.target.split(['?', '#']).next().unwrap_or("");
    let reply = route(state, req, path).unwrap_or_else(|e| Response::error(&e));
    log::debug!("api: {} {path} -> {} in {:?}", req.method, reply.status, t0.elapsed());
    reply
}

/// `Authorization: Bearer <API_TOKEN>`, compared in constant time.
fn authorised(state: &AppState, req: &Request) -> bool {
    let Some(token) = state.config.api_token.as_deref() else { return true };
    let given = req.header("Authorization").and_then(|v| {
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

fn route(state: &AppState, req: &Request, path: &str) -> Result<Response, ApiError> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method.as_str();
    // HEAD is answered like GET (the HTTP layer drops the body).
    let get = matches!(method, "GET" | "HEAD");
    let public = segments == ["api", "health"] && get;
    if !public && !authorised(state, req) {
        return Err(ApiError::unauthorized());
    }
    match (segments.as_slice(), method) {
        (["api", "cameras"], _) if get => Ok(json_reply(200, &CameraList { cameras: state.cluster.registry().list() })),
        (["api", "cameras"], "POST") => post_cameras(state, req),
        (["api", "cameras"], m) => Err(ApiError::method_not_allowed(m, path, "GET, POST")),
        (["api", "cameras", id], _) if get => {
            let id = percent_decode(id);
            state.cluster.registry().get(&id).map(|v| json_reply(200, &v)).ok_or_else(|| unknown_camera(&id))
        }
        (["api", "cameras", id], "DELETE") => {
            let id = percent_decode(id);
            match state.cluster.delete(&id) {
                Ok(Some(v)) => Ok(json_reply(200, &v)),
                Ok(None) => Err(unknown_camera(&id)),
                Err(e) => Err(cluster_error(e)),
            }
        }
        (["api", "cameras", _], m) => Err(ApiError::method_not_allowed(m, path, "GET, DELETE")),
        (["api", "health"], _) if get => Ok(json_reply(200, &health(state))),
        (["api", "health"], m) => Err(ApiError::method_not_allowed(m, path, "GET")),
        (["metrics"], _) if get => Ok(Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            headers: Vec::new(),
            body: render_metrics(state).into_bytes(),
        }),
        (["metrics"], m) => Err(ApiError::method_not_allowed(m, path, "GET")),
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

/// The service's metrics plus the HTTP layer's and the stages' (appended here because they
/// belong to the API and the supervisor rather than to the pipeline counters).
fn render_metrics(state: &AppState) -> String {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = state.metrics.render_prometheus();
    let h = &state.http;
    for (name, kind, help, v) in [
        ("api_requests_total", "counter", "HTTP requests handled.", h.requests.load(Relaxed)),
        ("api_server_errors_total", "counter", "HTTP replies with a 5xx status.", h.server_errors.load(Relaxed)),
        ("api_open_connections", "gauge", "Open HTTP connections.", h.open_connections.load(Relaxed) as u64),
        ("api_refused_connections_total", "counter", "Connections refused past API_MAX_CONNECTIONS.", h.refused_connections.load(Relaxed)),
        ("api_handler_panics_total", "counter", "Requests whose handler panicked (answered 500).", h.handler_panics.load(Relaxed)),
        (
            "api_rejected_requests_total",
            "counter",
            "Requests refused by the HTTP layer (framing, limits, timeouts).",
            h.rejected_requests.load(Relaxed),
        ),
    ] {
        let _ = writeln!(out, "# HELP analytics_{name} {help}\n# TYPE analytics_{name} {kind}\nanalytics_{name} {v}");
    }
    let _ = writeln!(out, "# HELP analytics_stage_up Whether a stage thread is alive and beating (1) or dead or stalled (0).");
    let _ = writeln!(out, "# TYPE analytics_stage_up gauge");
    for s in state.supervisor.report() {
        let _ = writeln!(out, "analytics_stage_up{{stage=\"{}\"}} {}", s.name, u8::from(s.state == "ok"));
    }
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

fn post_cameras(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let content_type = req.header("Content-Type");
    let is_json = content_type.and_then(|ct| ct.split(';').next()).is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    // the HTTP layer has already refused bodies over API_MAX_BODY_BYTES (413)
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
    let applied = state.cluster.apply(validated.cameras).map_err(cluster_error)?;
    let created = applied.iter().any(|(o, _)| *o == ApplyOutcome::Created);
    let cameras: Vec<Applied> = applied.into_iter().map(|(result, camera)| Applied { result, camera }).collect();
    Ok(json_reply(if created { 201 } else { 200 }, &PostReply { cameras, warnings: validated.warnings }))
}

/// `/api/health`: Redis reachability (a fresh PING), publisher counters, model, stages, camera
/// states. `degraded` (still 200) names what is wrong in `problems`.
fn health(state: &AppState) -> Value {
    let ping = state.redis.ping(Duration::from_millis(500));
    // one listing serves the counts and the per-camera problems
    let list: Vec<CameraView> = state.cluster.registry().list();
    let cameras = crate::camera::Registry::state_counts(&list);
    let cluster = state.cluster.state();
    let total: usize = cameras.values().sum();
    let stages = state.supervisor.report();
    let mut problems: Vec<String> = Vec::new();
    if let Err(e) = &ping {
        problems.push(format!("redis unreachable: {e}"));
    }
    for s in stages.iter().filter(|s| s.state != "ok") {
        problems.push(format!("stage {} is {} (last beat {:.0} s ago)", s.name, s.state, s.last_beat_s));
    }
    let now = SystemTime::now();
    let me = state.cluster.instance_id();
    let pending = list.iter().filter(|c| c.status.state == CameraState::Pending).count();
    if pending > 0 {
        problems.push(format!(
            "{pending} active camera(s) have no instance running them (all {} live instance(s) at MAX_CAMERAS, or a hand-over in progress)",
            cluster.instances.len()
        ));
    }
    if !cluster.redis_ok {
        problems.push("cluster: Redis unreachable: cameras keep running, the registry is read-only (writes answer 503)".into());
    }
    for u in &cluster.unusable {
        problems.push(format!("stored camera cannot run on this instance: {u}"));
    }
    let mut stuck = Vec::new();
    // problems of cameras this instance runs; other instances report their own
    for c in list.iter().filter(|c| c.owner.as_deref() == Some(me)) {
        let since = now.duration_since(c.status.state_since_at).unwrap_or_default();
        match c.status.state {
            CameraState::Error => {
                problems.push(format!("camera {} is in error: {}", c.config.camera_id, c.status.last_error.as_deref().unwrap_or("?")))
            }
            CameraState::Reconnecting if since > STUCK_RECONNECTING => {
                stuck.push(c.config.camera_id.clone());
                problems.push(format!("camera {} has been reconnecting for {} s", c.config.camera_id, since.as_secs()));
            }
            _ => {}
        }
    }
    problems.truncate(50);
    let detect_alive = state.supervisor.is_running("detect");
    let c = &state.config;
    json!({
        "status": if problems.is_empty() { "ok" } else { "degraded" },
        "problems": problems,
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
            // the session lives in the detect stage: a dead stage means no usable model
            "loaded": detect_alive,
            "requested_device": c.inference_device,
            "yolo": state.model,
            "anpr": state.anpr,
        },
        "stages": stages,
        "cluster": {
            "instance_id": me,
            "redis_reachable": cluster.redis_ok,
            "live_instances": cluster.instances,
            "cameras_held": cluster.held,
            "fair_share": cluster.target,
            "pending_cameras": pending,
        },
        "cameras": { "total": total, "by_state": cameras, "stuck_reconnecting": stuck },
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
