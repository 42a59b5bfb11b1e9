//! `GET /api/health` (the full report), `GET /livez` and `GET /readyz` (the Kubernetes probes,
//! docs/security.md). None of them needs the token and none opens a Redis connection: Redis
//! is read from [`super::snapshot`] (at most 1 s old), the rest from memory.

use super::reply::Reply;
use super::state::AppState;
use crate::camera::{CameraState, CameraView};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

/// A camera `reconnecting` for longer than this makes health `degraded`.
pub const STUCK_RECONNECTING: Duration = Duration::from_secs(60);

/// `/livez`: the process serves HTTP. Nothing else is checked on purpose: a liveness probe that
/// fails on Redis or a camera would restart a service that only has to wait.
pub fn livez() -> Reply {
    Reply::json(200, &json!({"status": "ok"}))
}

/// `/readyz`: 200 once the detection model is loaded, the camera registry has been read from
/// Redis and every stage thread is alive; 503 with the reasons otherwise (and while shutting
/// down, so that a Service stops routing here before the process goes). A Redis outage after
/// the registry was loaded keeps it ready: running cameras keep running (docs/architecture.md, "The contract in one page").
pub fn readyz(state: &AppState) -> Reply {
    let mut reasons: Vec<String> = Vec::new();
    if state.draining.load(Ordering::Relaxed) {
        reasons.push("shutting down".into());
    }
    if !state.supervisor.is_running("detect") {
        reasons.push("the detection model is not loaded (the detect stage is not running)".into());
    }
    let cluster = state.cluster.state();
    if !state.redis.registry_loaded(cluster.redis_ok) {
        reasons.push(format!(
            "the camera registry has not been loaded from Redis yet: {}",
            cluster.last_error.as_deref().unwrap_or("Redis unreachable")
        ));
    }
    for s in state.supervisor.report().iter().filter(|s| s.state != "ok") {
        reasons.push(format!("stage {} is {}", s.name, s.state));
    }
    if reasons.is_empty() {
        return Reply::json(200, &json!({"status": "ready", "reasons": reasons}));
    }
    // the error shape too (docs/architecture.md, "REST API"), with the reasons as details
    let message = format!("not ready: {}", reasons.join("; "));
    Reply::json(503, &json!({"status": "not_ready", "reasons": reasons, "error": "not_ready", "message": message, "details": reasons}))
}

/// `/api/health`: Redis reachability (the cached PING), publisher counters, model, stages,
/// camera states. `degraded` (still 200) names what is wrong in `problems`.
pub fn health(state: &AppState) -> Value {
    let ping = state.redis.ping();
    // one listing serves the counts and the per-camera problems
    let list: Vec<CameraView> = state.cluster.registry().list();
    let cameras = crate::camera::Registry::state_counts(&list);
    let cluster = state.cluster.state();
    state.redis.registry_loaded(cluster.redis_ok);
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
