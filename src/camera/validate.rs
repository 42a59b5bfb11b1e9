//! Validation of `POST /api/cameras` bodies (DESIGN.md section 1).
//!
//! The body is walked as a `serde_json::Value` rather than derived, so that every bad field gets
//! its own entry with its JSON path (`[0].parameters.max_fps`), unknown fields become warnings
//! instead of errors, and a known field with a wrong type is reported as such. All cameras are
//! checked before any is applied: one invalid camera means nothing changes.

use super::payload::{CameraConfig, CameraParams, DesiredStatus, DetectOn, RoiZone};
use super::url::StreamUrl;
use crate::pipeline::detect::classes::{coco_class_id, COCO_CLASSES};
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
];

/// Collects issues while walking.
#[derive(Default)]
struct Walk {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

impl Walk {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(Issue { path: path.into(), message: message.into() });
    }
    fn warn_unknown(&mut self, path: &str, obj: &Map<String, Value>, known: &[&str]) {
        for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
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
pub fn validate_cameras(body: &Value) -> Result<Validated, Vec<Issue>> {
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
        let before = w.errors.len();
        let cam = camera(&mut w, item, &prefix);
        if let Some(cam) = cam {
            if !seen.insert(cam.camera_id.clone()) {
                w.err(&format!("{prefix}camera_id"), format!("duplicate camera_id '{}' in this request", cam.camera_id));
            } else if w.errors.len() == before {
                cameras.push(cam);
            }
        }
    }
    if w.errors.is_empty() {
        Ok(Validated { cameras, warnings: w.warnings })
    } else {
        Err(w.errors)
    }
}

/// One camera object at `prefix` (`"[3]."` or `""`). `None` when it has errors.
fn camera(w: &mut Walk, v: &Value, prefix: &str) -> Option<CameraConfig> {
    let Some(obj) = v.as_object() else {
        let path = if prefix.is_empty() { "$".to_string() } else { prefix.trim_end_matches('.').to_string() };
        w.err(&path, format!("must be a camera object, got {}", type_name(v)));
        return None;
    };
    let before = w.errors.len();
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
        Some(s) => StreamUrl::parse(s).map_err(|m| w.err(&format!("{prefix}stream_url"), m)).ok(),
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
    if w.errors.len() != before {
        return None;
    }
    Some(CameraConfig { camera_id: camera_id?, status, stream_url: stream_url?, parameters: parameters? })
}

fn params(w: &mut Walk, p: &Map<String, Value>, path: &str) -> Option<CameraParams> {
    let before = w.errors.len();
    w.warn_unknown(path, p, PARAM_FIELDS);
    let mut out = CameraParams::default();

    if let Some(v) = present(p, "detection_classes") {
        match v.as_array() {
            Some(list) => {
                for (i, c) in list.iter().enumerate() {
                    let ip = format!("{path}detection_classes[{i}]");
                    match c.as_str() {
                        Some(name) if coco_class_id(name).is_some() => {
                            if !out.detection_classes.iter().any(|n| n == name) {
                                out.detection_classes.push(name.to_string());
                            }
                        }
                        Some(name) => w.err(&ip, format!("unknown class '{}'; valid classes: {}", truncate(name), COCO_CLASSES.join(", "))),
                        None => w.err(&ip, format!("must be a string, got {}", type_name(c))),
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
    if let Some(x) = w.number(p, "max_fps", path, 0.0, 120.0, true) {
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
    ] {
        if let Some(b) = w.boolean(p, key, path) {
            *slot = b;
        }
    }
    match w.string(p, "anpr_region", path) {
        Some(r) if (1..=32).contains(&r.trim().len()) => out.anpr_region = Some(r.trim().to_string()),
        Some(_) => w.err(&format!("{path}anpr_region"), "must be 1 to 32 characters, e.g. \"CZ\""),
        None => {}
    }
    match w.string(p, "detect_on", path) {
        None | Some("every_frame") => {}
        Some("motion") => out.detect_on = DetectOn::Motion,
        Some(other) => w.err(&format!("{path}detect_on"), format!("must be 'every_frame' or 'motion', got '{}'", truncate(other))),
    }
    if let Some(v) = present(p, "roi_zones") {
        match v.as_array() {
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
    (w.errors.len() == before).then_some(out)
}

fn roi_zone(w: &mut Walk, z: &Value, path: &str) -> Option<RoiZone> {
    let Some(obj) = z.as_object() else {
        w.err(path, format!("must be an object {{\"name\", \"points\"}}, got {}", type_name(z)));
        return None;
    };
    let before = w.errors.len();
    let prefix = format!("{path}.");
    w.warn_unknown(&prefix, obj, &["name", "points"]);
    let name = match w.string(obj, "name", &prefix) {
        Some(n) if !n.trim().is_empty() && n.len() <= 128 => Some(n.to_string()),
        Some(_) => {
            w.err(&format!("{path}.name"), "must be 1 to 128 characters");
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
        Some(Value::Array(list)) => {
            if !(3..=256).contains(&list.len()) {
                w.err(&format!("{path}.points"), format!("needs 3 to 256 points, got {}", list.len()));
            }
            for (i, pt) in list.iter().enumerate() {
                let xy: Option<Vec<f64>> = pt.as_array().filter(|a| a.len() == 2).and_then(|a| a.iter().map(Value::as_f64).collect());
                match xy {
                    Some(xy) if xy.iter().all(|c| (0.0..=1.0).contains(c)) => points.push([xy[0] as f32, xy[1] as f32]),
                    Some(_) => w.err(&format!("{path}.points[{i}]"), format!("coordinates must be in [0, 1] (normalised), got {pt}")),
                    None => w.err(&format!("{path}.points[{i}]"), format!("must be [x, y] with two numbers, got {pt}")),
                }
            }
        }
        Some(other) => w.err(&format!("{path}.points"), format!("must be an array of [x, y] points, got {}", type_name(other))),
        None => w.err(&format!("{path}.points"), "is required"),
    }
    (w.errors.len() == before).then(|| RoiZone { name: name.unwrap_or_default(), points })
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
        validate_cameras(&body).unwrap_err().into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn the_customer_payload_is_valid() {
        let v = validate_cameras(&customer()).unwrap();
        assert_eq!(v.cameras.len(), 1);
        assert!(v.warnings.is_empty());
        let c = &v.cameras[0];
        assert_eq!(c.parameters.detection_classes, ["person", "car", "truck"]);
        assert_eq!(c.parameters.max_fps, 30.0);
    }

    #[test]
    fn a_single_object_is_accepted() {
        let v = validate_cameras(&customer()[0]).unwrap();
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
                "[1].parameters.roi_zones[0].points[1]",
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
        let v = validate_cameras(&body).unwrap();
        let w: Vec<_> = v.warnings.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(w, ["[0].site", "[0].parameters.night_mode"]);
    }

    #[test]
    fn duplicates_and_missing_required_fields() {
        let body = json!([{"camera_id": "a", "stream_url": "x.mp4"}, {"camera_id": "a", "stream_url": "y.mp4"}, {}]);
        assert_eq!(paths(body), ["[1].camera_id", "[2].camera_id", "[2].stream_url"]);
    }

    #[test]
    fn wrong_top_level_shapes() {
        assert_eq!(paths(json!([])), ["$"]);
        assert_eq!(paths(json!("x")), ["$"]);
        assert_eq!(paths(json!([1])), ["[0]"]);
    }
}
