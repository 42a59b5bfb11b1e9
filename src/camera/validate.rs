//! Validation of `POST /api/cameras` bodies (docs/architecture.md, "REST API").
//!
//! The body is walked as a `serde_json::Value` rather than derived, so that every bad field gets
//! its own entry with its JSON path (`[0].parameters.max_fps`), unknown fields become warnings
//! instead of errors, and a known field with a wrong type is reported as such. All cameras are
//! checked before any is applied: one invalid camera means nothing changes.

use super::payload::{CameraConfig, CameraParams, CountLine, DecodeMode, DesiredStatus, DetectOn, RoiZone};
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
pub const MAX_LINES: usize = 16;
/// Zone analytics limits: `loitering_s` up to a day, `min_frames` up to 100, sides up to 10 km,
/// speed limits up to 1000 km/h.
pub const MAX_LOITERING_S: f64 = 86_400.0;
pub const MAX_MIN_FRAMES: u64 = 100;
pub const MAX_DISTANCE_M: f64 = 10_000.0;
pub const MAX_SPEED_KMH: f64 = 1_000.0;
/// Shortest line (normalised length): shorter is a typo, and no crossing could be told.
pub const MIN_LINE_LENGTH: f32 = 0.01;
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
    "lines",
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
    if let Some(v) = present(p, "lines") {
        match v.as_array() {
            Some(lines) if lines.len() > MAX_LINES => {
                w.err(&format!("{path}lines"), format!("at most {MAX_LINES} lines, got {}", lines.len()))
            }
            Some(lines) => {
                let mut names = HashSet::new();
                for (i, l) in lines.iter().enumerate() {
                    if let Some(line) = count_line(w, l, &format!("{path}lines[{i}]")) {
                        if names.insert(line.name.clone()) {
                            out.lines.push(line);
                        } else {
                            w.err(&format!("{path}lines[{i}].name"), format!("duplicate line name '{}'", line.name));
                        }
                    }
                }
            }
            None => w.err(&format!("{path}lines"), format!("must be an array of lines, got {}", type_name(v))),
        }
    }
    (w.n_errors == before).then_some(out)
}

/// `name` of a zone or line: required, 1 to 128 characters, not only spaces.
fn item_name(w: &mut Walk, obj: &Map<String, Value>, path: &str) -> Option<String> {
    let prefix = format!("{path}.");
    match w.string(obj, "name", &prefix) {
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
    }
}

/// `classes` of a zone or line: COCO names (at most 80); empty or missing = every class.
fn class_list(w: &mut Walk, obj: &Map<String, Value>, path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Some(v) = present(obj, "classes") else { return out };
    match v.as_array() {
        Some(list) if list.len() > MAX_CLASSES => {
            w.err(&format!("{path}.classes"), format!("at most {MAX_CLASSES} classes, got {}", list.len()))
        }
        Some(list) => {
            for (i, c) in list.iter().enumerate() {
                match c.as_str() {
                    Some(name) if coco_class_id(name).is_some() => {
                        if !out.iter().any(|n| n == name) {
                            out.push(name.to_string());
                        }
                    }
                    Some(name) => w.err_with(
                        || format!("{path}.classes[{i}]"),
                        || format!("unknown class '{}'; valid classes (COCO): {}", truncate(name), COCO_CLASSES.join(", ")),
                    ),
                    None => w.err_with(|| format!("{path}.classes[{i}]"), || format!("must be a string, got {}", type_name(c))),
                }
            }
        }
        None => w.err(&format!("{path}.classes"), format!("must be an array of class names, got {}", type_name(v))),
    }
    out
}

/// One `[x, y]` point in [0, 1]; records the error at `path` otherwise.
fn point(w: &mut Walk, pt: &Value, path: impl FnOnce() -> String) -> Option<[f32; 2]> {
    let xy: Option<Vec<f64>> = pt.as_array().filter(|a| a.len() == 2).and_then(|a| a.iter().map(Value::as_f64).collect());
    match xy {
        Some(xy) if xy.iter().all(|c| (0.0..=1.0).contains(c)) => Some([xy[0] as f32, xy[1] as f32]),
        Some(_) => {
            w.err_with(path, || format!("coordinates must be in [0, 1] (normalised), got {pt}"));
            None
        }
        None => {
            w.err_with(path, || format!("must be [x, y] with two numbers, got {}", truncate(&pt.to_string())));
            None
        }
    }
}

fn count_line(w: &mut Walk, l: &Value, path: &str) -> Option<CountLine> {
    let Some(obj) = l.as_object() else {
        w.err(path, format!("must be an object {{\"name\", \"points\", \"classes\"}}, got {}", type_name(l)));
        return None;
    };
    let before = w.n_errors;
    w.warn_unknown(&format!("{path}."), obj, &["name", "points", "classes"]);
    let name = item_name(w, obj, path);
    let mut points = Vec::new();
    match present(obj, "points") {
        Some(Value::Array(list)) if list.len() != 2 => {
            w.err(&format!("{path}.points"), format!("needs exactly 2 points [[x1, y1], [x2, y2]], got {}", list.len()))
        }
        Some(Value::Array(list)) => {
            for (i, pt) in list.iter().enumerate() {
                points.extend(point(w, pt, || format!("{path}.points[{i}]")));
            }
            if let [a, b] = points[..] {
                if (a[0] - b[0]).hypot(a[1] - b[1]) < MIN_LINE_LENGTH {
                    w.err(&format!("{path}.points"), format!("the two points must be at least {MIN_LINE_LENGTH} apart (normalised)"));
                }
            }
        }
        Some(other) => w.err(&format!("{path}.points"), format!("must be [[x1, y1], [x2, y2]], got {}", type_name(other))),
        None => w.err(&format!("{path}.points"), "is required"),
    }
    let classes = class_list(w, obj, path);
    (w.n_errors == before).then(|| CountLine { name: name.unwrap_or_default(), points: [points[0], points[1]], classes })
}

fn roi_zone(w: &mut Walk, z: &Value, path: &str) -> Option<RoiZone> {
    let Some(obj) = z.as_object() else {
        w.err(path, format!("must be an object {{\"name\", \"points\"}}, got {}", type_name(z)));
        return None;
    };
    let before = w.n_errors;
    let prefix = format!("{path}.");
    w.warn_unknown(&prefix, obj, &["name", "points", "classes", "loitering_s", "min_frames", "distances_m", "speed_limit_kmh"]);
    let name = item_name(w, obj, path);
    let mut points = Vec::new();
    match present(obj, "points") {
        Some(Value::Array(list)) if !(3..=MAX_ZONE_POINTS).contains(&list.len()) => {
            w.err(&format!("{path}.points"), format!("needs 3 to {MAX_ZONE_POINTS} points, got {}", list.len()));
        }
        Some(Value::Array(list)) => {
            for (i, pt) in list.iter().enumerate() {
                points.extend(point(w, pt, || format!("{path}.points[{i}]")));
            }
        }
        Some(other) => w.err(&format!("{path}.points"), format!("must be an array of [x, y] points, got {}", type_name(other))),
        None => w.err(&format!("{path}.points"), "is required"),
    }
    let classes = class_list(w, obj, path);
    let loitering_s = w.number(obj, "loitering_s", &prefix, 0.0, MAX_LOITERING_S, true);
    let min_frames = present(obj, "min_frames").and_then(|v| match v.as_u64() {
        Some(n) if (1..=MAX_MIN_FRAMES).contains(&n) => Some(n as u32),
        _ => {
            w.err(&format!("{path}.min_frames"), format!("must be an integer in [1, {MAX_MIN_FRAMES}], got {}", truncate(&v.to_string())));
            None
        }
    });
    let mut distances_m = None;
    if let Some(v) = present(obj, "distances_m") {
        let dp = format!("{path}.distances_m");
        let sides: Option<Vec<f64>> = v.as_array().filter(|a| a.len() == 4).and_then(|a| a.iter().map(Value::as_f64).collect());
        match sides {
            Some(d) if d.iter().all(|m| *m > 0.0 && *m <= MAX_DISTANCE_M) => {
                if points.len() != 4 && w.n_errors == before {
                    w.err(
                        &dp,
                        format!("needs a zone of exactly 4 points (its sides p1p2, p2p3, p3p4, p4p1), this one has {}", points.len()),
                    );
                } else if points.len() == 4 && !crate::camera::payload::convex_quad(&points) {
                    w.err(
                        &format!("{path}.points"),
                        "with distances_m the 4 points must go round a convex quadrilateral (in order, no three on a line)",
                    );
                } else {
                    distances_m = Some([d[0] as f32, d[1] as f32, d[2] as f32, d[3] as f32]);
                }
            }
            Some(_) => w.err(&dp, format!("each side must be in (0, {MAX_DISTANCE_M}] metres, got {}", truncate(&v.to_string()))),
            None => w.err(&dp, format!("must be 4 numbers (metres of the sides p1p2, p2p3, p3p4, p4p1), got {}", truncate(&v.to_string()))),
        }
    }
    let speed_limit_kmh = w.number(obj, "speed_limit_kmh", &prefix, 0.0, MAX_SPEED_KMH, true);
    if speed_limit_kmh.is_some() && present(obj, "distances_m").is_none() {
        w.err(&format!("{path}.speed_limit_kmh"), "needs distances_m (the zone's real side lengths) to measure speed");
    }
    (w.n_errors == before).then(|| RoiZone {
        name: name.unwrap_or_default(),
        points,
        classes,
        loitering_s,
        min_frames,
        distances_m,
        speed_limit_kmh,
    })
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

    /// Lines and zone analytics options: valid ones parse; each malformed field is a 422
    /// entry with its own path (docs/architecture.md, "Zone analytics").
    #[test]
    fn lines_and_zone_options() {
        let cam = |params: Value| json!({"camera_id": "c", "stream_url": "rtsp://h/x", "parameters": params});
        let quad = json!([[0.3, 0.2], [0.7, 0.2], [0.9, 0.9], [0.1, 0.9]]);
        let ok = cam(json!({
            "lines": [{"name": "door", "points": [[0.5, 1.0], [0.5, 0.0]], "classes": ["person"]}],
            "roi_zones": [{"name": "road", "points": quad, "loitering_s": 30, "min_frames": 5,
                           "distances_m": [10, 40, 10, 40], "speed_limit_kmh": 50, "classes": ["car"]}]}));
        let p = validate_cameras(&ok, &Context::default()).unwrap().cameras.remove(0).parameters;
        assert_eq!(p.lines[0].points, [[0.5, 1.0], [0.5, 0.0]]);
        let z = &p.roi_zones[0];
        assert_eq!(
            (z.loitering_s, z.min_frames, z.distances_m, z.speed_limit_kmh),
            (Some(30.0), Some(5), Some([10.0, 40.0, 10.0, 40.0]), Some(50.0))
        );
        // the stored form validates back to the same parameters (the registry keeps it in Redis)
        let back = cam(serde_json::to_value(&p).unwrap());
        assert_eq!(validate_cameras(&back, &Context::default()).unwrap().cameras[0].parameters, p);

        let line = |v: Value| cam(json!({"lines": [v]}));
        assert_eq!(paths(line(json!({"name": "a", "points": [[0, 0]]}))), ["parameters.lines[0].points"]);
        assert_eq!(paths(line(json!({"name": "a", "points": [[0, 0], [0.001, 0]]}))), ["parameters.lines[0].points"]);
        assert_eq!(paths(line(json!({"name": "a", "points": [[0, 0], [1.5, 0]]}))), ["parameters.lines[0].points[1]"]);
        assert_eq!(
            paths(line(json!({"points": [[0, 0], [1, 0]], "classes": ["unicorn"]}))),
            ["parameters.lines[0].name", "parameters.lines[0].classes[0]"]
        );
        assert_eq!(paths(line(json!("door"))), ["parameters.lines[0]"]);
        let l = json!({"name": "a", "points": [[0, 0], [1, 1]]});
        assert_eq!(paths(cam(json!({"lines": vec![l.clone(); 17]}))), ["parameters.lines"]);
        assert_eq!(paths(cam(json!({"lines": [l.clone(), l]}))), ["parameters.lines[1].name"]);
        assert_eq!(paths(cam(json!({"lines": {"a": 1}}))), ["parameters.lines"]);

        let zone = |extra: Value| {
            let mut z = json!({"name": "z", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]});
            z.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            cam(json!({"roi_zones": [z]}))
        };
        let bad = |extra: Value| paths(zone(extra));
        assert_eq!(bad(json!({"loitering_s": 0})), ["parameters.roi_zones[0].loitering_s"]);
        assert_eq!(bad(json!({"loitering_s": "long"})), ["parameters.roi_zones[0].loitering_s"]);
        assert_eq!(bad(json!({"min_frames": 0})), ["parameters.roi_zones[0].min_frames"]);
        assert_eq!(bad(json!({"min_frames": 2.5})), ["parameters.roi_zones[0].min_frames"]);
        assert_eq!(bad(json!({"distances_m": [1, 2, 3]})), ["parameters.roi_zones[0].distances_m"]);
        assert_eq!(bad(json!({"distances_m": [1, 2, 3, -4]})), ["parameters.roi_zones[0].distances_m"]);
        assert_eq!(bad(json!({"speed_limit_kmh": 50})), ["parameters.roi_zones[0].speed_limit_kmh"]);
        assert_eq!(bad(json!({"speed_limit_kmh": 0, "distances_m": [1, 1, 1, 1]})), ["parameters.roi_zones[0].speed_limit_kmh"]);
        assert_eq!(bad(json!({"classes": ["person", 3]})), ["parameters.roi_zones[0].classes[1]"]);
        assert_eq!(
            bad(json!({"points": [[0, 0], [1, 0], [0, 1], [1, 1]], "distances_m": [1, 1, 1, 1]})),
            ["parameters.roi_zones[0].points"]
        );
        let tri = cam(json!({"roi_zones": [{"name": "t", "points": [[0, 0], [1, 0], [0, 1]], "distances_m": [1, 1, 1, 1]}]}));
        assert_eq!(paths(tri), ["parameters.roi_zones[0].distances_m"]);
        assert!(validate_cameras(&zone(json!({"loitering_s": 0.5, "min_frames": 1})), &Context::default()).is_ok());
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
