//! Configuration from the environment and an optional `.env` file (docs/architecture.md,
//! "Configuration").
//!
//! Every variable is defined once, in the [`define_config!`] table below, in ripgrep's manner
//! (`flags/defs.rs`): its field, type, name, default, section, the form a value must have, the
//! parser that checks it, and what it does. From that one table come the typed [`Config`], the
//! parsing with defaults ([`Config::from_vars`]), [`VARS`] (what the service reads), and the
//! generated `docs/configuration.md` and `.env.example` (a unit test fails when either differs
//! from the table; `UPDATE_CONFIG_DOCS=1 cargo test --lib config` rewrites them).
//!
//! Every variable is read and checked before start-up goes on, and every bad one is reported in
//! the one error: a line per variable naming it, the bad value and the expected form.

use std::path::PathBuf;
use std::time::Duration;

/// One bad variable: always names it and says what form it expects.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{var}={value:?} is invalid: {reason} (expected {expected})")]
pub struct VarError {
    pub var: String,
    pub value: String,
    pub reason: String,
    pub expected: String,
}

/// Every bad variable of one start-up, in the table's order (never empty).
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub errors: Vec<VarError>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.errors.len() > 1 {
            write!(f, "{} variables are invalid: ", self.errors.len())?;
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The names of the bad variables, in order.
    pub fn vars(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.var.as_str()).collect()
    }
}

/// Where inference runs (`INFERENCE_DEVICE`): the plain choice; [`Config::device`] turns it into
/// the [`crate::infer::Device`] a model is loaded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InferenceDevice {
    /// CUDA when a GPU and its libraries load, CPU otherwise.
    Auto,
    Cpu,
    Cuda,
    /// TensorRT (opt-in, never chosen by `auto`), with CUDA for the nodes TensorRT does not
    /// take; both must load.
    #[serde(rename = "tensorrt")]
    TensorRt,
}

/// Log verbosity (`LOG_LEVEL`).
pub type LogLevel = log::LevelFilter;

/// One environment variable, as the table defines it.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    /// The field of [`Config`] that holds it.
    pub field: &'static str,
    /// The environment variable.
    pub name: &'static str,
    /// Its default, as written in `.env` (empty: none).
    pub default: &'static str,
    /// The group it is listed under in the docs and `.env.example`.
    pub section: &'static str,
    /// The form a value must have (quoted by errors).
    pub form: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Never echoed in an error.
    pub secret: bool,
}

/// Reads one variable: the value given, else the default; a bad value is recorded and `None`
/// returned, so that every variable is checked before start-up stops.
fn take<T>(errors: &mut Vec<VarError>, var: &Var, given: Option<&String>, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
    let value = given.map_or(var.default, |v| v.as_str());
    match parse(value) {
        Ok(v) => Some(v),
        Err(reason) => {
            let shown = if var.secret { "<hidden>".to_string() } else { value.to_string() };
            errors.push(VarError { var: var.name.into(), value: shown, reason, expected: var.form.into() });
            None
        }
    }
}

/// The table: see the module doc. Each entry is
/// `/// doc` `field: Type = "NAME", default "value", section "name", plain|secret, form "...", parse <fn(&str) -> Result<Type, String>>;`
macro_rules! define_config {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident : $ty:ty = $name:literal, default $default:literal, section $section:literal, $kind:ident,
            form $form:literal, parse $parse:expr;
    )+) => {
        /// The validated configuration, one field per variable of the table. Plain data:
        /// `service::Service::start` builds the live objects.
        #[derive(Debug, Clone)]
        pub struct Config {
            $(
                #[doc = concat!("`", $name, "` (default `", $default, "`):")]
                $(#[doc = $doc])+
                pub $field: $ty,
            )+
        }

        /// Every variable the service reads, in the order of the docs.
        pub const VARS: &[Var] = &[$(
            Var {
                field: stringify!($field),
                name: $name,
                default: $default,
                section: $section,
                form: $form,
                doc: concat!($($doc, "\n"),+),
                secret: matches!(stringify!($kind).as_bytes(), b"secret"),
            },
        )+];

        impl Config {
            /// Reads every variable (the given value, else the default) and checks each, then
            /// the rules between variables; every failure is collected.
            fn parse(given: &std::collections::HashMap<String, String>) -> Result<Config, ConfigError> {
                let mut errors = Vec::new();
                let mut vars = VARS.iter();
                $(
                    let var = vars.next().expect("invariant: one Var per field, in order");
                    let $field: Option<$ty> = take(&mut errors, var, given.get(var.name), $parse);
                )+
                let built = 'all: {
                    Some(Config { $($field: match $field { Some(v) => v, None => break 'all None },)+ })
                };
                match built {
                    Some(config) => {
                        errors.extend(config.cross_checks());
                        if errors.is_empty() { Ok(config) } else { Err(ConfigError { errors }) }
                    }
                    None => {
                        // invariant: a field is missing only after its error was recorded
                        Err(ConfigError { errors })
                    }
                }
            }
        }
    };
}

/// Parsers shared by the table's entries; each returns the reason a value is refused.
mod p {
    use super::*;

    pub fn int<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        move |v| {
            let n = v.trim().parse::<T>().map_err(|e| e.to_string())?;
            if n < lo || n > hi {
                return Err("out of range".into());
            }
            Ok(n)
        }
    }

    pub fn float(lo: f64, hi: f64) -> impl Fn(&str) -> Result<f64, String> {
        move |v| {
            let x = v.trim().parse::<f64>().map_err(|e| e.to_string())?;
            if !(lo..=hi).contains(&x) {
                return Err("out of range".into());
            }
            Ok(x)
        }
    }

    pub fn unit(lo_exclusive: bool) -> impl Fn(&str) -> Result<f32, String> {
        move |v| {
            let x = v.trim().parse::<f32>().map_err(|e| e.to_string())?;
            if !(0.0..=1.0).contains(&x) || (lo_exclusive && x == 0.0) {
                return Err("out of range".into());
            }
            Ok(x)
        }
    }

    pub fn secs(lo: f64, hi: f64) -> impl Fn(&str) -> Result<Duration, String> {
        move |v| float(lo, hi)(v).map(Duration::from_secs_f64)
    }

    pub fn whole_secs(lo: u64, hi: u64) -> impl Fn(&str) -> Result<Duration, String> {
        move |v| int(lo, hi)(v).map(Duration::from_secs)
    }

    pub fn millis(lo: u64, hi: u64) -> impl Fn(&str) -> Result<Duration, String> {
        move |v| int(lo, hi)(v).map(Duration::from_millis)
    }

    pub fn ip(v: &str) -> Result<String, String> {
        v.parse::<std::net::IpAddr>().map_err(|e| e.to_string())?;
        Ok(v.to_string())
    }

    pub fn non_empty(v: &str) -> Result<String, String> {
        if v.trim().is_empty() {
            return Err("empty".into());
        }
        Ok(v.to_string())
    }

    pub fn visible(max: usize) -> impl Fn(&str) -> Result<String, String> {
        move |v| {
            if !(1..=max).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("empty, too long or not visible ASCII".into());
            }
            Ok(v.to_string())
        }
    }

    pub fn optional(v: &str) -> Result<Option<String>, String> {
        Ok(Some(v.to_string()).filter(|v| !v.is_empty()))
    }

    pub fn optional_path(v: &str) -> Result<Option<PathBuf>, String> {
        Ok(Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty()))
    }

    pub fn path(v: &str) -> Result<PathBuf, String> {
        if v.is_empty() {
            return Err("empty".into());
        }
        Ok(PathBuf::from(v))
    }

    pub fn token(v: &str) -> Result<Option<String>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        if !(16..=256).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 16 to 256 visible ASCII characters".into());
        }
        Ok(Some(v.to_string()))
    }

    pub fn directory(v: &str) -> Result<Option<PathBuf>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        match PathBuf::from(v).canonicalize() {
            Ok(c) if c.is_dir() => Ok(Some(c)),
            Ok(_) => Err("not a directory".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A model path must name an ONNX file; a PyTorch checkpoint gets the export hint.
    pub fn model(v: &str) -> Result<PathBuf, String> {
        let path = PathBuf::from(v);
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("pt") | Some("pth") => Err("this is a PyTorch checkpoint, ONNX Runtime cannot load it; export it once with \
                 `yolo export model=yolov8n.pt format=onnx dynamic=True` (see models/README.md)"
                .into()),
            _ if v.is_empty() => Err("empty path".into()),
            _ => Ok(path),
        }
    }

    pub fn precision(v: &str) -> Result<crate::infer::PrecisionSetting, String> {
        use crate::infer::PrecisionSetting;
        match v.to_ascii_lowercase().as_str() {
            "auto" => Ok(PrecisionSetting::Auto),
            "fp32" | "float32" => Ok(PrecisionSetting::Fp32),
            "int8" => Ok(PrecisionSetting::Int8),
            _ => Err("unknown precision".into()),
        }
    }

    pub fn device(v: &str) -> Result<InferenceDevice, String> {
        match v.to_ascii_lowercase().as_str() {
            "auto" => Ok(InferenceDevice::Auto),
            "cpu" => Ok(InferenceDevice::Cpu),
            "cuda" | "gpu" => Ok(InferenceDevice::Cuda),
            "tensorrt" | "trt" => Ok(InferenceDevice::TensorRt),
            _ => Err("unknown device".into()),
        }
    }

    pub fn boolean(v: &str) -> Result<bool, String> {
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("not a boolean".into()),
        }
    }

    pub fn regex(v: &str) -> Result<Option<regex::Regex>, String> {
        match v.trim() {
            "" => Ok(None),
            re => regex::Regex::new(re).map(Some).map_err(|e| e.to_string()),
        }
    }

    pub fn instance_id(v: &str) -> Result<String, String> {
        let id = if v.is_empty() { host_name() } else { v.to_string() };
        if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("too long or not visible ASCII".into());
        }
        Ok(id)
    }

    pub fn log_level(v: &str) -> Result<LogLevel, String> {
        v.parse::<LogLevel>().map_err(|_| "unknown level".into())
    }
}

define_config! {
    /// Address the REST API binds.
    api_host: String = "API_HOST", default "0.0.0.0", section "REST API", plain,
        form "an IP address to bind, e.g. 0.0.0.0", parse p::ip;
    /// REST API port; 0 picks a free port (tests).
    api_port: u16 = "API_PORT", default "8069", section "REST API", plain,
        form "a TCP port 0..65535, e.g. 8069", parse p::int(0, u16::MAX);
    /// Request bodies larger than this get 413.
    api_max_body_bytes: usize = "API_MAX_BODY_BYTES", default "1048576", section "REST API", plain,
        form "a byte count 1024..67108864, e.g. 1048576", parse p::int(1024, 64 << 20);
    /// Most open HTTP connections (an idle one costs a task and ~16 KiB, no thread; kept under
    /// the open-file limit, which is raised to its hard limit at start-up); past it a new
    /// connection gets 503 and is closed.
    api_max_connections: usize = "API_MAX_CONNECTIONS", default "10000", section "REST API", plain,
        form "open HTTP connections 1..1000000, e.g. 10000", parse p::int(1, 1_000_000);
    /// Bearer token for every route except `GET /api/health`, `/livez`, `/readyz` and the operator page's files (`Authorization: Bearer <token>`);
    /// empty = no authentication: then bind the API to a private network only. Never logged.
    /// Generate one with `openssl rand -hex 32`.
    api_token: Option<String> = "API_TOKEN", default "", section "REST API", secret,
        form "a bearer token of 16 to 256 visible ASCII characters, or empty for none", parse p::token;
    /// Local file sources (a path or `file://`) must resolve inside this directory, symlinks
    /// followed (canonicalised here); empty = file sources are refused. RTSP/HTTP sources are
    /// not affected.
    stream_file_root: Option<PathBuf> = "STREAM_FILE_ROOT", default "", section "REST API", plain,
        form "an existing directory that local file sources must be inside, or empty to refuse file sources", parse p::directory;
    /// Frames larger than this many pixels (or smaller than 32x32) put the camera in `error`
    /// instead of reaching a stage.
    max_frame_pixels: u64 = "MAX_FRAME_PIXELS", default "8294400", section "REST API", plain,
        form "pixels per frame 1024..100000000, e.g. 8294400 (3840x2160)", parse p::int(1024, 100_000_000);
    /// An object not seen for this many seconds (on frames that went through the detector)
    /// ends; its `object` event with lifecycle `end` is published then.
    track_lost: Duration = "TRACK_LOST_S", default "3", section "Objects (tracking)", plain,
        form "seconds 0.1..600, e.g. 3", parse p::secs(0.1, 600.0);
    /// How long object snapshots, thumbnails and plate crops stay in Redis (seconds); the
    /// consumer copies what it wants to keep. Redis memory is about this times the rate of
    /// objects times ~100 KB (README, "Images").
    snapshot_ttl: Duration = "SNAPSHOT_TTL_S", default "3600", section "Evidence (images)", plain,
        form "seconds 1..604800, e.g. 3600", parse p::whole_secs(1, 604_800);
    /// An object whose kept snapshot gets clearly better gets an `update` (reason `snapshot`) at
    /// most this often (seconds).
    snapshot_update: Duration = "SNAPSHOT_UPDATE_S", default "10", section "Evidence (images)", plain,
        form "seconds 1..3600, e.g. 10", parse p::secs(1.0, 3600.0);
    /// The Redis to publish to; `redis` is the compose service, use 127.0.0.1 for a local Redis.
    redis_host: String = "REDIS_HOST", default "redis", section "Redis Stream", plain,
        form "a host name or IP, e.g. redis or 127.0.0.1", parse p::non_empty;
    /// Its port.
    redis_port: u16 = "REDIS_PORT", default "6379", section "Redis Stream", plain,
        form "a TCP port 1..65535, e.g. 6379", parse p::int(1, u16::MAX);
    /// Its database index.
    redis_db: i64 = "REDIS_DB", default "0", section "Redis Stream", plain,
        form "a database index 0..=15 or more, e.g. 0", parse p::int(0, i64::MAX);
    /// Its password; empty = no AUTH. Never logged.
    redis_password: Option<String> = "REDIS_PASSWORD", default "", section "Redis Stream", secret,
        form "the Redis password, or empty for none", parse p::optional;
    /// The stream every event is XADDed to.
    redis_stream: String = "REDIS_STREAM", default "stream:events", section "Redis Stream", plain,
        form "a non-empty stream key, e.g. stream:events", parse p::non_empty;
    /// The stream's approximate cap (`MAXLEN ~`).
    redis_stream_maxlen: usize = "REDIS_STREAM_MAXLEN", default "100000", section "Redis Stream", plain,
        form "a positive entry count, e.g. 100000", parse p::int(1, usize::MAX);
    /// XADDs per pipelined round trip.
    publish_batch_size: usize = "PUBLISH_BATCH_SIZE", default "100", section "Redis Stream", plain,
        form "XADDs per pipeline 1..10000, e.g. 100", parse p::int(1, 10_000);
    /// Events kept in memory while Redis is unreachable; beyond this the oldest are dropped
    /// (counted).
    publish_buffer_max: usize = "PUBLISH_BUFFER_MAX", default "10000", section "Redis Stream", plain,
        form "events kept while Redis is down, >= PUBLISH_BATCH_SIZE, e.g. 10000", parse p::int(1, usize::MAX);
    /// Every key the service keeps in Redis (camera registry, leases, heartbeats, ANPR dedupe)
    /// starts with this; instances with the same Redis and prefix form one service.
    redis_key_prefix: String = "REDIS_KEY_PREFIX", default "analytics:", section "Several instances", plain,
        form "1 to 64 visible ASCII characters, e.g. analytics:", parse p::visible(64);
    /// This instance's name in leases, listings and events; unique per instance. Empty = the
    /// host name.
    instance_id: String = "INSTANCE_ID", default "", section "Several instances", plain,
        form "1 to 128 visible ASCII characters unique per instance, or empty for the host name", parse p::instance_id;
    /// A camera lease lapses this long after its holder stops renewing it (renewed every fifth
    /// of it); an instance silent this long counts as dead and its cameras move within it + a
    /// few seconds.
    lease_ttl: Duration = "LEASE_TTL_S", default "10", section "Several instances", plain,
        form "seconds 0.5..300, e.g. 10", parse p::secs(0.5, 300.0);
    /// Most cameras this instance runs. Registering more cameras than the live instances'
    /// limits add up to is refused (409), which bounds memory.
    max_cameras: usize = "MAX_CAMERAS", default "64", section "Several instances", plain,
        form "a camera count 1..4096, e.g. 64", parse p::int(1, 4096);
    /// The YOLOv8 ONNX file; a `.pt` checkpoint is refused with the export command (see
    /// models/README.md).
    yolo_model: PathBuf = "YOLO_MODEL", default "models/yolov8n.onnx", section "Object detection (YOLOv8, ONNX)", plain,
        form "a path to an ONNX file, e.g. models/yolov8n.onnx", parse p::model;
    /// `auto` | `fp32` | `int8`. auto = the INT8 model beside `YOLO_MODEL` (`yolov8n.int8.onnx`,
    /// made by scripts/quantize.py) on a CPU with VNNI (AVX-512 VNNI / AVX-VNNI), where it
    /// detects ~1.4-1.9x the frames; FP32 without VNNI, on GPUs and when the file is missing
    /// (with a warning). int8 without the file fails at start-up. docs/int8.md.
    yolo_precision: crate::infer::PrecisionSetting = "YOLO_PRECISION", default "auto", section "Object detection (YOLOv8, ONNX)", plain,
        form "one of auto, fp32, int8", parse p::precision;
    /// `auto` | `cpu` | `cuda` | `tensorrt`. auto = CUDA when its provider, driver and GPU load,
    /// else CPU (logged with the reason); cuda / tensorrt fail at start-up instead. GPU setup:
    /// docs/gpu.md.
    inference_device: InferenceDevice = "INFERENCE_DEVICE", default "auto", section "Object detection (YOLOv8, ONNX)", plain,
        form "one of auto, cpu, cuda, tensorrt", parse p::device;
    /// `tensorrt` only: where TensorRT keeps the engines and timing cache it builds (minutes,
    /// once per model and batch size; keep the folder across restarts).
    tensorrt_cache_dir: PathBuf = "TENSORRT_CACHE_DIR", default "/tmp/analytics-service/tensorrt", section "Object detection (YOLOv8, ONNX)", plain,
        form "a writable directory for TensorRT engines (created if missing), e.g. /var/cache/analytics/tensorrt", parse p::path;
    /// `tensorrt` only: whether TensorRT may use float16 kernels (faster, ~1e-3 relative error).
    tensorrt_fp16: bool = "TENSORRT_FP16", default "true", section "Object detection (YOLOv8, ONNX)", plain,
        form "true or false: let TensorRT build float16 kernels", parse p::boolean;
    /// Detection threads, each with its own session of (cores / workers) ONNX Runtime threads,
    /// running batches side by side. 0 = one per CPU core, at most 4.
    inference_workers: usize = "INFERENCE_WORKERS", default "0", section "Object detection (YOLOv8, ONNX)", plain,
        form "inference threads 0..64, each with its own session; 0 = one per CPU core up to 4", parse p::int(0, 64);
    /// Most frames in one cross-camera batch. 0 = auto: 1 on the CPU, where each inference
    /// worker's one-thread session detects ~7 % more frames per second one at a time than in
    /// batches of 3 (and a frame no longer waits for its batch), and 8 on a GPU
    /// (`GPU_BATCH_SIZE`, see `Config::batch_size_on`).
    batch_size: usize = "BATCH_SIZE", default "0", section "Object detection (YOLOv8, ONNX)", plain,
        form "frames per inference batch 1..256, or 0 for 1 on the CPU and 8 on a GPU", parse p::int(0, 256);
    /// The longest wait for a batch to fill.
    batch_timeout: Duration = "BATCH_TIMEOUT_MS", default "20", section "Object detection (YOLOv8, ONNX)", plain,
        form "milliseconds to wait for a batch 0..10000, e.g. 20", parse p::millis(0, 10_000);
    /// IoU above which NMS suppresses a box of the same class.
    nms_iou: f32 = "NMS_IOU", default "0.45", section "Object detection (YOLOv8, ONNX)", plain,
        form "an IoU in (0, 1], e.g. 0.45", parse p::unit(true);
    /// The ONNX Runtime library; empty = `.local/onnxruntime/lib` (scripts/setup.sh), beside
    /// the binary, `/usr/local/lib`, `/usr/lib`, `/opt/onnxruntime/lib`.
    ort_dylib_path: Option<PathBuf> = "ORT_DYLIB_PATH", default "", section "Object detection (YOLOv8, ONNX)", plain,
        form "a path to libonnxruntime.so, or empty to search the usual places", parse p::optional_path;
    /// The plate detector ONNX file.
    anpr_plate_model: PathBuf = "ANPR_PLATE_MODEL", default "models/plate_detector_yolov8s_seg.onnx", section "ANPR", plain,
        form "a path to the plate detector ONNX file", parse p::model;
    /// `auto` | `fp32` | `int8`, as `YOLO_PRECISION` for the plate detector: auto = its INT8
    /// sibling (`plate_detector_yolov8s_seg.int8.onnx`, scripts/quantize.py) on a CPU with VNNI,
    /// where a plate search ran 2.8x as fast; fp32 = `ANPR_PLATE_MODEL` as given (an FP16 file).
    /// int8 without the file disables ANPR (the reason in /api/health), as a missing model does.
    anpr_plate_precision: crate::infer::PrecisionSetting = "ANPR_PLATE_PRECISION", default "auto", section "ANPR", plain,
        form "one of auto, fp32, int8", parse p::precision;
    /// The text recogniser ONNX file.
    anpr_ocr_model: PathBuf = "ANPR_OCR_MODEL", default "models/ch_PP-OCRv4_rec_infer.onnx", section "ANPR", plain,
        form "a path to the text recogniser ONNX file", parse p::model;
    /// The OCR dictionary, one character a line.
    anpr_ocr_dict: PathBuf = "ANPR_OCR_DICT", default "models/ppocr_v4_rec_dict.txt", section "ANPR", plain,
        form "a path to the OCR dictionary, one character a line", parse p::path;
    /// The same plate on the same camera is published once per window (seconds).
    anpr_dedupe_window: Duration = "ANPR_DEDUPE_WINDOW_S", default "30", section "ANPR", plain,
        form "seconds 0..86400, e.g. 30", parse p::whole_secs(0, 86_400);
    /// Least normalised plate length (A-Z, 0-9 only).
    anpr_min_plate_len: usize = "ANPR_MIN_PLATE_LEN", default "4", section "ANPR", plain,
        form "characters 1..20, e.g. 4", parse p::int(1, 20);
    /// Most normalised plate length.
    anpr_max_plate_len: usize = "ANPR_MAX_PLATE_LEN", default "10", section "ANPR", plain,
        form "characters, >= ANPR_MIN_PLATE_LEN and <= 20, e.g. 10", parse p::int(1, 20);
    /// A regular expression every published (normalised) plate must match; empty = any.
    anpr_plate_format: Option<regex::Regex> = "ANPR_PLATE_FORMAT", default "", section "ANPR", plain,
        form "a regular expression the normalised plate must match, e.g. ^[0-9][A-Z]{2}[0-9]{4}$, or empty", parse p::regex;
    /// Least mean character probability of a published read.
    anpr_min_read_confidence: f32 = "ANPR_MIN_READ_CONFIDENCE", default "0.8", section "ANPR", plain,
        form "a mean character probability in [0, 1], e.g. 0.8", parse p::unit(false);
    /// Least plate detector score.
    anpr_min_plate_score: f32 = "ANPR_MIN_PLATE_SCORE", default "0.4", section "ANPR", plain,
        form "a plate detector score in [0, 1], e.g. 0.4", parse p::unit(false);
    /// An open stream that delivers no frame for this long counts as dead and reconnects.
    stream_stall_timeout: Duration = "STREAM_STALL_TIMEOUT_S", default "20", section "Cameras and stages", plain,
        form "seconds 1..3600, e.g. 20", parse p::whole_secs(1, 3600);
    /// Motion pool threads; 0 = one per CPU core.
    motion_workers: usize = "MOTION_WORKERS", default "0", section "Cameras and stages", plain,
        form "a thread count 0..256, 0 = one per CPU core", parse p::int(0, 256);
    /// `OFF` | `ERROR` | `WARN` | `INFO` | `DEBUG` | `TRACE` (any case).
    log_level: LogLevel = "LOG_LEVEL", default "INFO", section "Logging", plain,
        form "one of OFF, ERROR, WARN, INFO, DEBUG, TRACE", parse p::log_level;
}

/// Every variable the service reads (`.env.example` and the docs are checked against it).
pub fn known_variables() -> Vec<&'static str> {
    VARS.iter().map(|v| v.name).collect()
}

/// `BATCH_SIZE` when auto on a GPU: frames of different cameras in one run.
pub const GPU_BATCH_SIZE: usize = 8;

impl Default for Config {
    /// Every variable at its default (no environment read).
    fn default() -> Self {
        Self::from_vars(std::iter::empty()).expect("invariant: the defaults are valid")
    }
}

impl Config {
    /// Loads `.env` (if present; real environment variables win over it), then reads and
    /// validates every variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Err(e) = dotenvy::dotenv() {
            if !e.not_found() {
                let bad = VarError { var: ".env".into(), value: ".env".into(), reason: e.to_string(), expected: "NAME=value lines".into() };
                return Err(ConfigError { errors: vec![bad] });
            }
        }
        Self::from_vars(std::env::vars())
    }

    /// Reads and validates the configuration from `(NAME, value)` pairs; variables the table
    /// does not define are ignored (the environment holds many).
    pub fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        Self::parse(&vars.collect())
    }

    /// The rules that involve two variables.
    fn cross_checks(&self) -> Vec<VarError> {
        let mut bad = Vec::new();
        let mut check = |ok: bool, field: &str, value: String, reason: &str| {
            if !ok {
                let var = VARS.iter().find(|v| v.field == field).expect("invariant: a field of the table");
                bad.push(VarError { var: var.name.into(), value, reason: reason.into(), expected: var.form.into() });
            }
        };
        check(
            self.publish_buffer_max >= self.publish_batch_size,
            "publish_buffer_max",
            self.publish_buffer_max.to_string(),
            "smaller than the publish batch",
        );
        check(
            self.anpr_max_plate_len >= self.anpr_min_plate_len,
            "anpr_max_plate_len",
            self.anpr_max_plate_len.to_string(),
            "out of range",
        );
        bad
    }

    /// Where the models run: `INFERENCE_DEVICE`, with the TensorRT cache folder and float16
    /// choice for `tensorrt` (the inference module takes it at every load: no global settings).
    pub fn device(&self) -> crate::infer::Device {
        use crate::infer::{Device, TensorRtOptions};
        match self.inference_device {
            InferenceDevice::Auto => Device::Auto,
            InferenceDevice::Cpu => Device::Cpu,
            InferenceDevice::Cuda => Device::Cuda,
            InferenceDevice::TensorRt => {
                Device::TensorRt(TensorRtOptions { cache_dir: self.tensorrt_cache_dir.clone(), fp16: self.tensorrt_fp16 })
            }
        }
    }

    /// The batch size the model is loaded for: `BATCH_SIZE`, or [`GPU_BATCH_SIZE`] when auto
    /// (the provider is known only once it loads; [`Config::batch_size_on`] then says).
    pub fn batch_size_to_load(&self) -> usize {
        if self.batch_size > 0 {
            self.batch_size
        } else {
            GPU_BATCH_SIZE
        }
    }

    /// The batch size on `provider`: `BATCH_SIZE`, or when auto 1 on the CPU and
    /// [`GPU_BATCH_SIZE`] on a GPU.
    pub fn batch_size_on(&self, provider: crate::infer::Provider) -> usize {
        match (self.batch_size, provider) {
            (0, crate::infer::Provider::Cpu) => 1,
            (0, _) => GPU_BATCH_SIZE,
            (n, _) => n,
        }
    }

    /// Inference workers and ONNX Runtime threads for each: `INFERENCE_WORKERS`, or one worker
    /// of one thread per core (at most 4 workers) when 0.
    pub fn inference_worker_count(&self) -> (usize, usize) {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = if self.inference_workers > 0 { self.inference_workers } else { cores.clamp(1, 4) };
        (workers, (cores / workers).max(1))
    }

    /// Motion pool size: `MOTION_WORKERS`, or one per CPU core when 0.
    pub fn motion_worker_count(&self) -> usize {
        if self.motion_workers > 0 {
            self.motion_workers
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// The model name events carry, taken from the file name (`models/yolov8n.onnx` -> `yolov8n`).
    pub fn yolo_model_name(&self) -> String {
        self.yolo_model.file_stem().map_or_else(|| "yolov8".into(), |s| s.to_string_lossy().into_owned())
    }
}

/// The machine's host name (the container id under Docker), the default `INSTANCE_ID`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "analytics".into())
}

/// `docs/configuration.md`, generated from [`VARS`].
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# Configuration\n\n\
         Generated from the one definition of every variable (`src/config.rs`, `define_config!`); a unit\n\
         test fails when this file differs from it (`UPDATE_CONFIG_DOCS=1 cargo test --lib config`\n\
         rewrites it, and `.env.example` with it).\n\n\
         Configuration comes from the environment and an optional `.env` file in the working directory\n\
         (the environment wins). Every variable is optional. An invalid value stops start-up with one\n\
         error that names every bad variable, its value and the expected form.\n",
    );
    let mut section = "";
    for v in VARS {
        if v.section != section {
            section = v.section;
            out.push_str(&format!("\n## {section}\n\n| variable | default | form | what it does |\n| --- | --- | --- | --- |\n"));
        }
        let default = if v.default.is_empty() { "(empty)".to_string() } else { format!("`{}`", v.default) };
        let doc = v.doc.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        out.push_str(&format!("| `{}` | {default} | {} | {} |\n", v.name, v.form.replace('|', "\\|"), doc.replace('|', "\\|")));
    }
    out
}

/// `.env.example`, generated from [`VARS`].
pub fn render_env_example() -> String {
    let mut out = String::from(
        "# analytics-service configuration, generated from src/config.rs (docs/configuration.md has the\n\
         # same in a table). Copy to .env and edit; real environment variables win over this file.\n\
         # Every variable is optional; the value shown is the default. Invalid values stop start-up with\n\
         # one error naming every bad variable.\n",
    );
    let mut section = "";
    for v in VARS {
        if v.section != section {
            section = v.section;
            out.push_str(&format!("\n# --- {section} ---\n"));
        }
        for line in v.doc.lines() {
            out.push_str(&format!("#{}\n", line.trim_end()));
        }
        out.push_str(&format!("{}={}\n", v.name, v.default));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::default();
        assert_eq!(c.api_host, "0.0.0.0");
        assert_eq!(c.api_port, 8069);
        assert_eq!(c.redis_host, "redis");
        assert_eq!(c.redis_port, 6379);
        assert_eq!(c.redis_db, 0);
        assert_eq!(c.redis_password, None);
        assert_eq!(c.redis_stream, "stream:events");
        assert_eq!(c.redis_stream_maxlen, 100_000);
        assert_eq!(c.yolo_model, PathBuf::from("models/yolov8n.onnx"));
        assert_eq!(c.inference_device, InferenceDevice::Auto);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.yolo_model_name(), "yolov8n");
        assert_eq!(c.track_lost, Duration::from_secs(3));
        assert_eq!(c.max_frame_pixels, 3840 * 2160);
        assert!(!c.instance_id.is_empty(), "the host name by default");
    }

    #[test]
    fn values_are_read_and_case_insensitive_where_it_helps() {
        let c = Config::from_vars(vars(&[
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", ""),
            ("INFERENCE_DEVICE", "CUDA"),
            ("LOG_LEVEL", "debug"),
        ]))
        .unwrap();
        assert_eq!(c.redis_host, "127.0.0.1");
        assert_eq!(c.redis_port, 6380);
        assert_eq!(c.redis_password, None, "an empty password means none");
        assert_eq!(c.inference_device, InferenceDevice::Cuda);
        assert_eq!(c.log_level, LogLevel::Debug);
    }

    #[test]
    fn tensorrt_is_opt_in_with_a_cache_folder_and_fp16() {
        let c = Config::default();
        assert_eq!(c.tensorrt_cache_dir, PathBuf::from("/tmp/analytics-service/tensorrt"));
        assert!(c.tensorrt_fp16);
        let c = Config::from_vars(vars(&[
            ("INFERENCE_DEVICE", "TensorRT"),
            ("TENSORRT_CACHE_DIR", "/var/cache/trt"),
            ("TENSORRT_FP16", "false"),
        ]))
        .unwrap();
        assert_eq!(c.inference_device, InferenceDevice::TensorRt);
        assert_eq!(c.tensorrt_cache_dir, PathBuf::from("/var/cache/trt"));
        assert!(!c.tensorrt_fp16);
        assert_eq!(serde_json::to_string(&InferenceDevice::TensorRt).unwrap(), "\"tensorrt\"");
        let crate::infer::Device::TensorRt(o) = c.device() else { panic!("tensorrt") };
        assert_eq!((o.cache_dir, o.fp16), (PathBuf::from("/var/cache/trt"), false));
    }

    #[test]
    fn a_bad_number_names_the_variable_and_the_form() {
        let e = Config::from_vars(vars(&[("API_PORT", "80a")])).unwrap_err();
        assert_eq!(e.vars(), ["API_PORT"]);
        assert_eq!(e.errors[0].value, "80a");
        let line = e.to_string();
        assert!(line.starts_with("API_PORT=\"80a\" is invalid"), "{line}");
        assert!(line.contains("a TCP port"), "{line}");
    }

    #[test]
    fn each_range_rule_names_its_variable() {
        for (var, value) in [
            ("API_HOST", "not-an-ip"),
            ("REDIS_PORT", "0"),
            ("REDIS_PORT", "70000"),
            ("REDIS_DB", "-1"),
            ("REDIS_STREAM", " "),
            ("REDIS_STREAM_MAXLEN", "0"),
            ("INFERENCE_DEVICE", "tpu"),
            ("BATCH_SIZE", "257"),
            ("BATCH_TIMEOUT_MS", "x"),
            ("LOG_LEVEL", "LOUD"),
            ("MAX_CAMERAS", "0"),
            ("PUBLISH_BUFFER_MAX", "5"),
            ("STREAM_STALL_TIMEOUT_S", "0"),
            ("ANPR_PLATE_FORMAT", "[unclosed"),
            ("ANPR_MAX_PLATE_LEN", "2"),
            ("ANPR_MIN_READ_CONFIDENCE", "1.5"),
            ("API_TOKEN", "short"),
            ("API_MAX_CONNECTIONS", "0"),
            ("STREAM_FILE_ROOT", "/nonexistent/dir"),
            ("MAX_FRAME_PIXELS", "10"),
            ("TENSORRT_FP16", "maybe"),
            ("TENSORRT_CACHE_DIR", ""),
        ] {
            let e = Config::from_vars(vars(&[(var, value)])).unwrap_err();
            assert_eq!(e.vars(), [var], "{value}: {e}");
        }
    }

    /// Start-up reports every bad variable at once, in the table's order, not only the first.
    #[test]
    fn every_bad_variable_is_reported_in_one_error() {
        let e = Config::from_vars(vars(&[("LOG_LEVEL", "LOUD"), ("API_PORT", "eighty"), ("NMS_IOU", "2"), ("REDIS_HOST", "127.0.0.1")]))
            .unwrap_err();
        assert_eq!(e.vars(), ["API_PORT", "NMS_IOU", "LOG_LEVEL"]);
        let line = e.to_string();
        assert!(line.starts_with("3 variables are invalid: API_PORT=\"eighty\" is invalid"), "{line}");
        assert!(line.contains("NMS_IOU=\"2\"") && line.contains("LOG_LEVEL=\"LOUD\""), "{line}");
    }

    #[test]
    fn the_token_is_never_echoed() {
        let e = Config::from_vars(vars(&[("API_TOKEN", "abc def")])).unwrap_err();
        assert!(!e.to_string().contains("abc"), "{e}");
    }

    #[test]
    fn a_pytorch_checkpoint_gets_the_export_hint() {
        let e = Config::from_vars(vars(&[("YOLO_MODEL", "yolov8n.pt")])).unwrap_err();
        assert_eq!(e.vars(), ["YOLO_MODEL"]);
        assert!(e.to_string().contains("format=onnx"), "{e}");
    }

    /// Each variable is defined once: its name occurs once, quoted, in this file (the table),
    /// and once in VARS; every default parses.
    #[test]
    fn every_variable_is_defined_once() {
        let full = include_str!("config.rs");
        let source = &full[..full.find("#[cfg(test)]").expect("the tests module")];
        let mut seen = std::collections::BTreeSet::new();
        for v in VARS {
            assert!(seen.insert(v.name), "{} twice in the table", v.name);
            assert_eq!(source.matches(&format!("\"{}\"", v.name)).count(), 1, "{} is written more than once", v.name);
        }
        Config::from_vars(std::iter::empty()).expect("every default is valid");
    }

    /// docs/configuration.md and .env.example are the table's: regenerated with
    /// `UPDATE_CONFIG_DOCS=1 cargo test --lib config`.
    #[test]
    fn docs_and_env_example_are_generated_from_the_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (path, want) in [("docs/configuration.md", render_markdown()), (".env.example", render_env_example())] {
            let file = root.join(path);
            if std::env::var_os("UPDATE_CONFIG_DOCS").is_some() {
                std::fs::write(&file, &want).unwrap();
            }
            let have = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(have == want, "{path} differs from src/config.rs's table: run UPDATE_CONFIG_DOCS=1 cargo test --lib config");
        }
        let example = render_env_example();
        let pairs = example.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('='));
        Config::from_vars(pairs.map(|(k, v)| (k.to_string(), v.to_string()))).expect(".env.example's values are valid");
    }
}
