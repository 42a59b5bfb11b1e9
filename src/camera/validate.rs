//! Validation of `POST /api/cameras` bodies (docs/architecture.md, "REST API").
//!
//! The body is walked as a `serde_json::Value` rather than derived, so that every bad field gets
//! its own entry with its JSON path (`[0].parameters.max_fps`), unknown fields become warnings
//! instead of errors, and a known field with a wrong type is reported as such. All cameras are
//! checked before any is applied: one invalid camera means nothing changes.

use super::payload::{CameraConfig, CameraParams, DecodeMode, DesiredStatus, DetectOn, RoiZone};
use super::url::{SourceKind, StreamUrl};
use crate::coco::{coco_class_id, COCO_CLASSES};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// One problem (or, for warnings, one ignored field) at a JSON path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    /// JSON path from the body's root, e.g. `[0].parameters.max_fps` (`$` = the whole body).
    pub path: String,
    pub message: String,
}

/// What a valid body yields: the cameras, and warnings about ignored fields.
#[derive(Debug)]
pub struct Validated {
    pub cameras: Vec<CameraConfig>,
    pub warnings: Vec<Issue>,
}

/// Most cameras one request may carry; beyond, MAX_CAMERAS decides anyway.
const MAX_ITEMS: usize = 1024;
/// Limits (docs/architecture.md, "REST API"). Each is checked before the list is walked, so a huge list costs
/// one error, not one per element.
pub const MAX_ZONES: usize = 16;
pub const MAX_ZONE_POINTS: usize = 64;
pub const MAX_CLASSES: usize = 80;
pub const MAX_NAME_CHARS: usize = 128;
pub const MAX_REGION_CHARS: usize = 32;
/// Smallest `max_fps`: one frame every 1000 s. Anything smaller is a typo (or `5e-324`).
pub const MIN_MAX_FPS: f64 = 0.001;
/// Errors kept with their text; past this only the count grows (the reply lists 50 anyway).
const KEPT_ERRORS: usize = 50;

/// What validation needs to know about the service.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `STREAM_FILE_ROOT`, canonicalised: local file sources must resolve inside it; `None`
    /// refuses them.
    pub file_root: Option<std::path::PathBuf>,
}

/// A body that failed: the first problems and how many there were in all.
#[derive(Debug)]
pub struct Invalid {
    pub total: usize,
    pub issues: Vec<Issue>,
}
const TOP_FIELDS: &[&str] = &["camera_id", "status", "stream_url", "parameters"];
const PARAM_FIELDS: &[&str] = &[
    "detection_classes",
    "confidence_threshold",
    "roi_zones",
    "enable_motion_detection",
    "enable_object_detection",
    "enable_anpr",
    "detect_on",
    "anpr_region",
    "motion_threshold",
    "frame_skip",
    "max_fps",
    "loop_file",
    "file_realtime",
    "frame_detections",
    "decode",
    "snapshots",
];

/// Collects issues while walking.
#[derive(Default)]
struct Walk {
    /// The first `KEPT_ERRORS` errors.
    errors: Vec<Issue>,
    /// All errors, kept or not.
    n_errors: usize,
    warnings: Vec<Issue>,
}

impl Walk {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.n_errors += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(Issue { path: path.into(), message: message.into() });
        }
    }
    /// `err` for loops over user-sized lists: nothing is formatted once the kept errors are full.
    fn err_with(&mut self, path: impl FnOnce() -> String, message: impl FnOnce() -> String) {
        self.n_errors += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(Issue { path: path(), message: message() });
        }
    }
    fn warn_unknown(&mut self, path: &str, obj: &Map<String, Value>, known: &[&str]) {
        for k in obj.keys().filter(|k| !known.contains(&k.as_str())).take(KEPT_ERRORS.saturating_sub(self.warnings.len())) {
            self.warnings.push(Issue { path: format!("{path}{k}"), message: "unknown field, ignored".into() });
        }
    }

    /// `obj[key]` as a number in `range`; `None` (no error) when missing or null.
    fn number(&mut self, obj: &Map<String, Value>, key: &str, path: &str, lo: f64, hi: f64, lo_open: bool) -> Option<f32> {
        let v = present(obj, key)?;
        let p = format!("{path}{key}");
        let Some(n) = v.as_f64() else {
            self.err(&p, format!("must be a number, got {}", type_name(v)));
            return None;
        };
        let ok = if lo_open { n > lo } else { n >= lo } && n <= hi;
        if !ok {
            let open = if lo_open { "(" } else { "[" };
            self.err(&p, format!("must be in {open}{lo}, {hi}], got {n}"));
            return None;
        }
        Some(n as f32)
    }

    fn boolean(&mut self, obj: &Map<String, Value>, key: &str, path: &str) -> Option<bool> {
        let v = present(obj, key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.err(&format!("{path}{key}"), format!("must be true or false, got {}", type_name(v)));
                None
            }
        }
    }

    fn string<'v>(&mut self, obj: &'v Map<String, Value>, key: &str, path: &str) -> Option<&'v str> {
        let v = present(obj, key)?;
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.err(&format!("{path}{key}"), format!("must be a string, got {}", type_name(v)));
                None
            }
        }
    }
}

/// `obj[key]` unless missing or null (null means "use the default").
fn present<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `id` is a valid camera id: 1..=128 chars of `[A-Za-z0-9._:-]`.
pub fn valid_camera_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Validates a whole body: an array of camera objects or a single object.
pub fn validate_cameras(body: &Value, ctx: &Context) -> Result<Validated, Invalid> {
    let mut w = Walk::default();
    let items: Vec<(String, &Value)> = match body {
        Value::Array(a) if a.is_empty() => {
            w.err("$", "the array is empty; send at least one camera object");
            vec![]
        }
        Value::Array(a) if a.len() > MAX_ITEMS => {
            w.err("$", format!("{} cameras in one request, the limit is {MAX_ITEMS}", a.len()));
            vec![]
        }
        Value::Array(a) => a.iter().enumerate().map(|(i, v)| (format!("[{i}]."), v)).collect(),
        Value::Object(_) => vec![(String::new(), body)],
        other => {
            w.err("$", format!("must be an array of camera objects (or one object), got {}", type_name(other)));
            vec![]
        }
    };
    let mut cameras = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (prefix, item) in items {
        let before = w.n_errors;
        let cam = camera(&mut w, item, &prefix, ctx);
        if let Some(cam) = cam {
            if !seen.insert(cam.camera_id.clone()) {
                w.err(&format!("{prefix}camera_id"), format!("duplicate camera_id '{}' in this request", cam.camera_id));
            } else if w.n_errors == before {
                cameras.push(cam);
            }
        }
    }
    if w.n_errors == 0 {
        Ok(Validated { cameras, warnings: w.warnings })
    } else {
        Err(Invalid { total: w.n_errors, issues: w.errors })
    }
}

/// One camera object at `prefix` (`"[3]."` or `""`). `None` when it has errors.
fn camera(w: &mut Walk, v: &Value, prefix: &str, ctx: &Context) -> Option<CameraConfig> {
    let Some(obj) = v.as_object() else {
        let path = if prefix.is_empty() { "$".to_string() } else { prefix.trim_end_matches('.').to_string() };
        w.err(&path, format!("must be a camera object, got {}", type_name(v)));
        return None;
    };
    let before = w.n_errors;
    w.warn_unknown(prefix, obj, TOP_FIELDS);

    let camera_id = match w.string(obj, "camera_id", prefix) {
        Some(id) if valid_camera_id(id) => Some(id.to_string()),
        Some(id) => {
            w.err(
                &format!("{prefix}camera_id"),
                format!("'{}' is not a valid id: use 1 to 128 characters of A-Z a-z 0-9 . _ : -", truncate(id)),
            );
            None
        }
        None => {
            if present(obj, "camera_id").is_none() {
                w.err(&format!("{prefix}camera_id"), "is required");
            }
            None
        }
    };
    let status = match w.string(obj, "status", prefix) {
        None | Some("active") => DesiredStatus::Active,
        Some("inactive") => DesiredStatus::Inactive,
        Some(other) => {
            w.err(&format!("{prefix}status"), format!("must be 'active' or 'inactive', got '{}'", truncate(other)));
            DesiredStatus::Active
        }
    };
    let stream_url = match w.string(obj, "stream_url", prefix) {
        Some(s) => StreamUrl::parse(s).and_then(|u| check_file_source(u, ctx)).map_err(|m| w.err(&format!("{prefix}stream_url"), m)).ok(),
        None => {
            if present(obj, "stream_url").is_none() {
                w.err(&format!("{prefix}stream_url"), "is required");
            }
            None
        }
    };
    let parameters = match present(obj, "parameters") {
        None => Some(CameraParams::default()),
        Some(Value::Object(p)) => params(w, p, &format!("{prefix}parameters.")),
        Some(other) => {
            w.err(&format!("{prefix}parameters"), format!("must be an object, got {}", type_name(other)));
            None
        }
    };
    if w.n_errors != before {
        return None;
    }
    Some(CameraConfig { camera_id: camera_id?, status, stream_url: stream_url?, parameters: parameters? })
}

fn params(w: &mut Walk, p: &Map<String, Value>, path: &str) -> Option<CameraParams> {
    let before = w.n_errors;
    w.warn_unknown(path, p, PARAM_FIELDS);
    let mut out = CameraParams::default();

    if let Some(v) = present(p, "detection_classes") {
        match v.as_array() {
            Some(list) if list.len() > MAX_CLASSES => {
                w.err(&format!("{path}detection_classes"), format!("at most {MAX_CLASSES} classes, got {}", list.len()))
            }
            Some(list) => {
                for (i, c) in list.iter().enumerate() {
                    let ip = || format!("{path}detection_classes[{i}]");
                    match c.as_str() {
                        Some(name) if coco_class_id(name).is_some() => {
                            if !out.detection_classes.iter().any(|n| n == name) {
                                out.detection_classes.push(name.to_string());
                            }
                        }
                        Some(name) => w.err_with(ip, || {
                            format!("unknown class '{}'; valid classes (COCO): {}", truncate(name), COCO_CLASSES.join(", "))
                        }),
                        None => w.err_with(ip, || format!("must be a string, got {}", type_name(c))),
                    }
                }
            }
            None => w.err(&format!("{path}detection_classes"), format!("must be an array of class names, got {}", type_name(v))),
        }
    }
    if let Some(x) = w.number(p, "confidence_threshold", path, 0.0, 1.0, false) {
        out.confidence_threshold = x;
    }
    if let Some(x) = w.number(p, "motion_threshold", path, 0.0, 1.0, false) {
        out.motion_threshold = x;
    }
    if let Some(x) = w.number(p, "max_fps", path, MIN_MAX_FPS, 120.0, false) {
        out.max_fps = x;
    }
    if let Some(v) = present(p, "frame_skip") {
        let fp = format!("{path}frame_skip");
        match v.as_u64() {
            Some(n) if (1..=10_000).contains(&n) => out.frame_skip = n as u32,
            Some(n) => w.err(&fp, format!("must be an integer in [1, 10000], got {n}")),
            None if v.is_number() => w.err(&fp, format!("must be an integer in [1, 10000], got {v}")),
            None => w.err(&fp, format!("must be an integer, got {}", type_name(v))),
        }
    }
    for (key, slot) in [
        ("enable_motion_detection", &mut out.enable_motion_detection),
        ("enable_object_detection", &mut out.enable_object_detection),
        ("enable_anpr", &mut out.enable_anpr),
        ("loop_file", &mut out.loop_file),
        ("file_realtime", &mut out.file_realtime),
        ("frame_detections", &mut out.frame_detections),
        ("snapshots", &mut out.snapshots),
    ] {
        if let Some(b) = w.boolean(p, key, path) {
            *slot = b;
        }
    }
    match w.string(p, "anpr_region", path) {
        Some(r) if (1..=MAX_REGION_CHARS).contains(&r.chars().count()) && !r.trim().is_empty() => {
            out.anpr_region = Some(r.trim().to_string())
        }
        Some(_) => {
            w.err(&format!("{path}anpr_region"), format!("must be 1 to {MAX_REGION_CHARS} characters, not only spaces, e.g. \"CZ\""))
        }
        None => {}
    }
    match w.string(p, "decode", path) {
        None | Some("auto") => {}
        Some("all") => out.decode = DecodeMode::All,
        Some("keyframes") => out.decode = DecodeMode::Keyframes,
        Some(other) => w.err(&format!("{path}decode"), format!("must be 'auto', 'all' or 'keyframes', got '{}'", truncate(other))),
    }
    match w.string(p, "detect_on", path) {
        None | Some("every_frame") => {}
        Some("motion") => out.detect_on = DetectOn::Motion,
        Some(other) => w.err(&format!("{path}detect_on"), format!("must be 'every_frame' or 'motion', got '{}'", truncate(other))),
    }
    if let Some(v) = present(p, "roi_zones") {
        match v.as_array() {
            Some(zones) if zones.len() > MAX_ZONES => {
                w.err(&format!("{path}roi_zones"), format!("at most {MAX_ZONES} zones, got {}", zones.len()))
            }
            Some(zones) => {
                let mut names = HashSet::new();
                for (i, z) in zones.iter().enumerate() {
                    if let Some(zone) = roi_zone(w, z, &format!("{path}roi_zones[{i}]")) {
                        if names.insert(zone.name.clone()) {
                            out.roi_zones.push(zone);
                        } else {
                            w.err(&format!("{path}roi_zones[{i}].name"), format!("duplicate zone name '{}'", zone.name));
                        }
                    }
                }
            }
            None => w.err(&format!("{path}roi_zones"), format!("must be an array of zones, got {}", type_name(v))),
        }
    }
    (w.n_errors == before).then_some(out)
}

fn roi_zone(w: &mut Walk, z: &Value, path: &str) -> Option<RoiZone> {
    let Some(obj) = z.as_object() else {
        w.err(path, format!("must be an object {{\"name\", \"points\"}}, got {}", type_name(z)));
        return None;
    };
    let before = w.n_errors;
    let prefix = format!("{path}.");
    w.warn_unknown(&prefix, obj, &["name", "points"]);
    let name = match w.string(obj, "name", &prefix) {
        Some(n) if !n.trim().is_empty() && n.chars().count() <= MAX_NAME_CHARS => Some(n.to_string()),
        Some(_) => {
            w.err(&format!("{path}.name"), format!("must be 1 to {MAX_NAME_CHARS} characters, not only spaces"));
            None
        }
        None => {
            if present(obj, "name").is_none() {
                w.err(&format!("{path}.name"), "is required");
            }
            None
        }
    };
    let mut points = Vec::new();
    match present(obj, "points") {
        Some(Value::Array(list)) if !(3..=MAX_ZONE_POINTS).contains(&list.len()) => {
            w.err(&format!("{path}.points"), format!("needs 3 to {MAX_ZONE_POINTS} points, got {}", list.len()));
        }
        Some(Value::Array(list)) => {
            for (i, pt) in list.iter().enumerate() {
                let xy: Option<Vec<f64>> = pt.as_array().filter(|a| a.len() == 2).and_then(|a| a.iter().map(Value::as_f64).collect());
                match xy {
                    Some(xy) if xy.iter().all(|c| (0.0..=1.0).contains(c)) => points.push([xy[0] as f32, xy[1] as f32]),
                    Some(_) => {
                        w.err_with(|| format!("{path}.points[{i}]"), || format!("coordinates must be in [0, 1] (normalised), got {pt}"))
                    }
                    None => w.err_with(
                        || format!("{path}.points[{i}]"),
                        || format!("must be [x, y] with two numbers, got {}", truncate(&pt.to_string())),
                    ),
                }
            }
        }
        Some(other) => w.err(&format!("{path}.points"), format!("must be an array of [x, y] points, got {}", type_name(other))),
        None => w.err(&format!("{path}.points"), "is required"),
    }
    (w.n_errors == before).then(|| RoiZone { name: name.unwrap_or_default(), points })
}

/// Local file sources must resolve (symlinks followed) inside `STREAM_FILE_ROOT`; without it
/// they are refused, so that nobody who reaches the API can make the service open or probe
/// arbitrary paths. The message never says whether a path outside the root exists.
fn check_file_source(url: StreamUrl, ctx: &Context) -> Result<StreamUrl, String> {
    if url.kind() != SourceKind::File {
        return Ok(url);
    }
    let Some(root) = &ctx.file_root else {
        return Err("local file sources are disabled: set STREAM_FILE_ROOT to the directory that holds the files".into());
    };
    let raw = url.expose();
    let path = raw.strip_prefix("file://").unwrap_or(raw);
    let outside = || format!("local file sources must be inside STREAM_FILE_ROOT ({})", root.display());
    let path = std::path::Path::new(path);
    if !path.is_absolute() {
        return Err(format!("must be an absolute path inside STREAM_FILE_ROOT ({})", root.display()));
    }
    // A file that does not exist yet is accepted (it may be copied in later; the camera then
    // reconnects until it is there), but only where it would be inside the root: resolve the
    // deepest existing ancestor and allow no `..` below it.
    let mut existing = path;
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return Err(outside()),
        }
    }
    let Ok(mut real) = existing.canonicalize() else { return Err(outside()) };
    if rest.is_empty() && !real.is_file() {
        return Err(if real.starts_with(root) { format!("'{}' is not a file", path.display()) } else { outside() });
    }
    for name in rest.into_iter().rev() {
        real.push(name);
    }
    if real.starts_with(root) {
        Ok(url)
    } else {
        Err(outside())
    }
}

/// Shortens user input quoted in messages.
fn truncate(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn customer() -> Value {
        json!([{"camera_id": "7e793c44-5960-4d40-903f-9c2cf0a17903", "status": "active",
            "stream_url": "rtsp://user:password@172.16.34.2:554/media/video1",
            "parameters": {"detection_classes": ["person", "car", "truck"], "confidence_threshold": 0.5,
              "roi_zones": [], "enable_motion_detection": true, "enable_object_detection": true,
              "enable_anpr": false, "motion_threshold": 0.1, "frame_skip": 1, "max_fps": 30}}])
    }

    fn paths(body: Value) -> Vec<String> {
        validate_cameras(&body, &Context::default()).unwrap_err().issues.into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn the_customer_payload_is_valid() {
        let v = validate_cameras(&customer(), &Context::default()).unwrap();
        assert_eq!(v.cameras.len(), 1);
        assert!(v.warnings.is_empty());
        let c = &v.cameras[0];
        assert_eq!(c.parameters.detection_classes, ["person", "car", "truck"]);
        assert_eq!(c.parameters.max_fps, 30.0);
    }

    #[test]
    fn a_single_object_is_accepted() {
        let v = validate_cameras(&customer()[0], &Context::default()).unwrap();
        assert_eq!(v.cameras.len(), 1);
    }

    #[test]
    fn every_field_error_has_its_own_path() {
        let body = json!([{"camera_id": "ok", "stream_url": "rtsp://h/x"},
            {"camera_id": "bad id!", "stream_url": 5, "status": "paused",
             "parameters": {"confidence_threshold": 1.5, "max_fps": 0, "frame_skip": 0,
               "motion_threshold": "high", "enable_anpr": "yes", "detection_classes": ["person", "unicorn"],
               "roi_zones": [{"name": "a", "points": [[0, 0], [2, 0]]}]}}]);
        let mut p = paths(body);
        p.sort();
        assert_eq!(
            p,
            [
                "[1].camera_id",
                "[1].parameters.confidence_threshold",
                "[1].parameters.detection_classes[1]",
                "[1].parameters.enable_anpr",
                "[1].parameters.frame_skip",
                "[1].parameters.max_fps",
                "[1].parameters.motion_threshold",
                "[1].parameters.roi_zones[0].points",
                "[1].status",
                "[1].stream_url",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let mut body = customer();
        body[0]["site"] = json!("north");
        body[0]["parameters"]["night_mode"] = json!(true);
        let v = validate_cameras(&body, &Context::default()).unwrap();
        let w: Vec<_> = v.warnings.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(w, ["[0].site", "[0].parameters.night_mode"]);
    }

    #[test]
    fn decode_is_auto_all_or_keyframes() {
        let mut body = customer();
        assert_eq!(validate_cameras(&body, &Context::default()).unwrap().cameras[0].parameters.decode, DecodeMode::Auto);
        body[0]["parameters"]["decode"] = json!("keyframes");
        assert_eq!(validate_cameras(&body, &Context::default()).unwrap().cameras[0].parameters.decode, DecodeMode::Keyframes);
        body[0]["parameters"]["decode"] = json!("nokey");
        assert_eq!(paths(body.clone()), ["[0].parameters.decode"]);
        body[0]["parameters"]["decode"] = json!(1);
        assert_eq!(paths(body), ["[0].parameters.decode"]);
    }

    #[test]
    fn duplicates_and_missing_required_fields() {
        let body = json!([{"camera_id": "a", "stream_url": "rtsp://h/x"}, {"camera_id": "a", "stream_url": "rtsp://h/y"}, {}]);
        assert_eq!(paths(body), ["[1].camera_id", "[2].camera_id", "[2].stream_url"]);
    }

    #[test]
    fn wrong_top_level_shapes() {
        assert_eq!(paths(json!([])), ["$"]);
        assert_eq!(paths(json!("x")), ["$"]);
        assert_eq!(paths(json!([1])), ["[0]"]);
    }

    #[test]
    fn limits_of_design_section_8() {
        let zone = |n: usize| json!({"name": "z", "points": vec![[0.5, 0.5]; n]});
        let cam = |params: Value| json!({"camera_id": "c", "stream_url": "rtsp://h/x", "parameters": params});
        assert_eq!(paths(cam(json!({"roi_zones": vec![zone(3); 17]}))), ["parameters.roi_zones"]);
        assert_eq!(paths(cam(json!({"roi_zones": [zone(65)]}))), ["parameters.roi_zones[0].points"]);
        assert!(validate_cameras(&cam(json!({"roi_zones": [zone(64)]})), &Context::default()).is_ok());
        assert_eq!(paths(cam(json!({"detection_classes": vec!["person"; 81]}))), ["parameters.detection_classes"]);
        assert_eq!(paths(cam(json!({"max_fps": 5e-324}))), ["parameters.max_fps"]);
        assert_eq!(paths(cam(json!({"anpr_region": "Č".repeat(33)}))), ["parameters.anpr_region"]);
        assert!(validate_cameras(&cam(json!({"anpr_region": "Č".repeat(32)})), &Context::default()).is_ok());
        let long_url = format!("rtsp://h/{}", "é".repeat(2040));
        assert_eq!(paths(json!({"camera_id": "c", "stream_url": long_url})), ["stream_url"]);
    }

    #[test]
    fn at_most_fifty_errors_are_kept_but_all_are_counted() {
        let body: Vec<Value> = (0..500).map(|_| json!({"camera_id": "bad id"})).collect();
        let e = validate_cameras(&Value::Array(body), &Context::default()).unwrap_err();
        assert_eq!(e.total, 1000);
        assert_eq!(e.issues.len(), KEPT_ERRORS);
    }

    #[test]
    fn file_sources_only_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("validate-root-{}", std::process::id()));
        let inside = dir.join("in");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("a.mp4"), b"x").unwrap();
        std::fs::write(dir.join("secret.mp4"), b"x").unwrap();
        let _ = std::fs::remove_file(inside.join("link.mp4"));
        std::os::unix::fs::symlink(dir.join("secret.mp4"), inside.join("link.mp4")).unwrap();
        let ctx = Context { file_root: Some(inside.canonicalize().unwrap()) };
        let check = |url: String, ctx: &Context| {
            validate_cameras(&json!({"camera_id": "c", "stream_url": url}), ctx).map(|_| ()).map_err(|e| e.issues[0].message.clone())
        };
        assert!(check(format!("{}", inside.join("a.mp4").display()), &ctx).is_ok());
        assert!(check(format!("file://{}", inside.join("a.mp4").display()), &ctx).is_ok());
        for bad in [
            inside.join("link.mp4"),
            inside.join("../secret.mp4"),
            "/etc/passwd".into(),
            dir.join("nope.mp4"),
            inside.join("no/../../secret.mp4"),
        ] {
            let m = check(format!("{}", bad.display()), &ctx).unwrap_err();
            assert!(m.contains("inside STREAM_FILE_ROOT"), "{}: {m}", bad.display());
        }
        assert!(check("a.mp4".into(), &ctx).unwrap_err().contains("absolute"));
        assert!(check(format!("{}", inside.join("later.mp4").display()), &ctx).is_ok(), "a file may arrive later");
        assert!(check(format!("{}", inside.join("sub/../../x.mp4").display()), &ctx).unwrap_err().contains("inside"));
        assert!(check(format!("{}", inside.display()), &ctx).unwrap_err().contains("not a file"));
        let m = check(format!("{}", inside.join("a.mp4").display()), &Context::default()).unwrap_err();
        assert!(m.contains("STREAM_FILE_ROOT"), "{m}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
