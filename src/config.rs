//! Configuration from the environment and an optional `.env` file (DESIGN.md section 4).
//!
//! Two layers, in ripgrep's manner: [`RawConfig`] is what `envy` reads (every field typed, every
//! default here), and [`Config::from_env`] checks ranges and forms on top of it. Any invalid value
//! stops start-up with one line that names the variable, the bad value and the expected form.
//! Each field's doc gives its variable, default and an example; `.env.example` mirrors them.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration error: always names the variable and says what form it expects.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?} is invalid: {reason} (expected {expected})")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
    pub expected: String,
}

/// Where inference runs (`INFERENCE_DEVICE`).
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

/// The variables as `envy` reads them. Field `foo_bar` is variable `FOO_BAR`.
#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default = "d::api_host")]
    api_host: String,
    #[serde(default = "d::api_port")]
    api_port: u16,
    #[serde(default = "d::api_max_body_bytes")]
    api_max_body_bytes: usize,
    #[serde(default = "d::api_max_connections")]
    api_max_connections: usize,
    #[serde(default)]
    api_token: Option<String>,
    #[serde(default)]
    stream_file_root: Option<PathBuf>,
    #[serde(default = "d::max_frame_pixels")]
    max_frame_pixels: u64,
    #[serde(default = "d::track_lost_s")]
    track_lost_s: f64,
    #[serde(default = "d::redis_host")]
    redis_host: String,
    #[serde(default = "d::redis_port")]
    redis_port: u16,
    #[serde(default)]
    redis_db: i64,
    #[serde(default)]
    redis_password: Option<String>,
    #[serde(default = "d::redis_stream")]
    redis_stream: String,
    #[serde(default = "d::redis_key_prefix")]
    redis_key_prefix: String,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default = "d::lease_ttl_s")]
    lease_ttl_s: f64,
    #[serde(default = "d::redis_stream_maxlen")]
    redis_stream_maxlen: usize,
    #[serde(default = "d::publish_batch_size")]
    publish_batch_size: usize,
    #[serde(default = "d::publish_buffer_max")]
    publish_buffer_max: usize,
    #[serde(default = "d::yolo_model")]
    yolo_model: PathBuf,
    #[serde(default = "d::inference_device")]
    inference_device: String,
    #[serde(default = "d::tensorrt_cache_dir")]
    tensorrt_cache_dir: PathBuf,
    #[serde(default = "d::tensorrt_fp16")]
    tensorrt_fp16: String,
    #[serde(default = "d::batch_size")]
    batch_size: usize,
    #[serde(default)]
    inference_workers: usize,
    #[serde(default = "d::batch_timeout_ms")]
    batch_timeout_ms: u64,
    #[serde(default = "d::nms_iou")]
    nms_iou: f32,
    #[serde(default)]
    ort_dylib_path: Option<PathBuf>,
    #[serde(default = "d::anpr_plate_model")]
    anpr_plate_model: PathBuf,
    #[serde(default = "d::anpr_ocr_model")]
    anpr_ocr_model: PathBuf,
    #[serde(default = "d::anpr_ocr_dict")]
    anpr_ocr_dict: PathBuf,
    #[serde(default = "d::anpr_dedupe_window_s")]
    anpr_dedupe_window_s: u64,
    #[serde(default = "d::anpr_min_plate_len")]
    anpr_min_plate_len: usize,
    #[serde(default = "d::anpr_max_plate_len")]
    anpr_max_plate_len: usize,
    #[serde(default)]
    anpr_plate_format: String,
    #[serde(default = "d::anpr_min_read_confidence")]
    anpr_min_read_confidence: f32,
    #[serde(default = "d::anpr_min_plate_score")]
    anpr_min_plate_score: f32,
    #[serde(default = "d::max_cameras")]
    max_cameras: usize,
    #[serde(default = "d::stream_stall_timeout_s")]
    stream_stall_timeout_s: u64,
    #[serde(default)]
    motion_workers: usize,
    #[serde(default = "d::log_level")]
    log_level: String,
}

/// Defaults, one function per variable (serde needs functions).
mod d {
    use std::path::PathBuf;
    pub fn api_host() -> String {
        "0.0.0.0".into()
    }
    pub fn api_port() -> u16 {
        8069
    }
    pub fn api_max_body_bytes() -> usize {
        1 << 20
    }
    pub fn api_max_connections() -> usize {
        10_000
    }
    pub fn max_frame_pixels() -> u64 {
        3840 * 2160
    }
    pub fn track_lost_s() -> f64 {
        3.0
    }
    pub fn redis_key_prefix() -> String {
        "analytics:".into()
    }
    pub fn lease_ttl_s() -> f64 {
        10.0
    }
    pub fn redis_host() -> String {
        "redis".into()
    }
    pub fn redis_port() -> u16 {
        6379
    }
    pub fn redis_stream() -> String {
        "stream:events".into()
    }
    pub fn redis_stream_maxlen() -> usize {
        100_000
    }
    pub fn publish_batch_size() -> usize {
        100
    }
    pub fn publish_buffer_max() -> usize {
        10_000
    }
    pub fn yolo_model() -> PathBuf {
        "models/yolov8n.onnx".into()
    }
    pub fn inference_device() -> String {
        "auto".into()
    }
    pub fn tensorrt_cache_dir() -> PathBuf {
        "/tmp/analytics-service/tensorrt".into()
    }
    pub fn tensorrt_fp16() -> String {
        "true".into()
    }
    pub fn batch_size() -> usize {
        0
    }
    pub fn batch_timeout_ms() -> u64 {
        20
    }
    pub fn nms_iou() -> f32 {
        0.45
    }
    pub fn anpr_plate_model() -> PathBuf {
        "models/plate_detector_yolov8s_seg.onnx".into()
    }
    pub fn anpr_ocr_model() -> PathBuf {
        "models/ch_PP-OCRv4_rec_infer.onnx".into()
    }
    pub fn anpr_ocr_dict() -> PathBuf {
        "models/ppocr_v4_rec_dict.txt".into()
    }
    pub fn anpr_dedupe_window_s() -> u64 {
        30
    }
    pub fn anpr_min_plate_len() -> usize {
        4
    }
    pub fn anpr_max_plate_len() -> usize {
        10
    }
    pub fn anpr_min_read_confidence() -> f32 {
        0.8
    }
    pub fn anpr_min_plate_score() -> f32 {
        0.4
    }
    pub fn max_cameras() -> usize {
        64
    }
    pub fn stream_stall_timeout_s() -> u64 {
        20
    }
    pub fn log_level() -> String {
        "INFO".into()
    }
}

/// The expected form of each variable, quoted in error messages.
const FORMS: &[(&str, &str)] = &[
    ("API_HOST", "an IP address to bind, e.g. 0.0.0.0"),
    ("API_PORT", "a TCP port 0..65535, e.g. 8069"),
    ("API_MAX_BODY_BYTES", "a byte count 1024..67108864, e.g. 1048576"),
    ("API_MAX_CONNECTIONS", "open HTTP connections 1..1000000, e.g. 10000"),
    ("API_TOKEN", "a bearer token of 16 to 256 visible ASCII characters, or empty for none"),
    ("STREAM_FILE_ROOT", "an existing directory that local file sources must be inside, or empty to refuse file sources"),
    ("MAX_FRAME_PIXELS", "pixels per frame 1024..100000000, e.g. 8294400 (3840x2160)"),
    ("TRACK_LOST_S", "seconds 0.1..600, e.g. 3"),
    ("REDIS_HOST", "a host name or IP, e.g. redis or 127.0.0.1"),
    ("REDIS_PORT", "a TCP port 1..65535, e.g. 6379"),
    ("REDIS_DB", "a database index 0..=15 or more, e.g. 0"),
    ("REDIS_PASSWORD", "the Redis password, or empty for none"),
    ("REDIS_STREAM", "a non-empty stream key, e.g. stream:events"),
    ("REDIS_STREAM_MAXLEN", "a positive entry count, e.g. 100000"),
    ("REDIS_KEY_PREFIX", "1 to 64 visible ASCII characters, e.g. analytics:"),
    ("INSTANCE_ID", "1 to 128 visible ASCII characters unique per instance, or empty for the host name"),
    ("LEASE_TTL_S", "seconds 0.5..300, e.g. 10"),
    ("PUBLISH_BATCH_SIZE", "XADDs per pipeline 1..10000, e.g. 100"),
    ("PUBLISH_BUFFER_MAX", "events kept while Redis is down, >= PUBLISH_BATCH_SIZE, e.g. 10000"),
    ("YOLO_MODEL", "a path to an ONNX file, e.g. models/yolov8n.onnx"),
    ("INFERENCE_DEVICE", "one of auto, cpu, cuda, tensorrt"),
    ("TENSORRT_CACHE_DIR", "a writable directory for TensorRT engines (created if missing), e.g. /var/cache/analytics/tensorrt"),
    ("TENSORRT_FP16", "true or false: let TensorRT build float16 kernels"),
    ("BATCH_SIZE", "frames per inference batch 1..256, or 0 for 1 on the CPU and 8 on a GPU"),
    ("INFERENCE_WORKERS", "inference threads 0..64, each with its own session; 0 = one per CPU core up to 4"),
    ("BATCH_TIMEOUT_MS", "milliseconds to wait for a batch 0..10000, e.g. 20"),
    ("NMS_IOU", "an IoU in (0, 1], e.g. 0.45"),
    ("ORT_DYLIB_PATH", "a path to libonnxruntime.so, or empty to search the usual places"),
    ("ANPR_PLATE_MODEL", "a path to the plate detector ONNX file"),
    ("ANPR_OCR_MODEL", "a path to the text recogniser ONNX file"),
    ("ANPR_OCR_DICT", "a path to the OCR dictionary, one character a line"),
    ("ANPR_DEDUPE_WINDOW_S", "seconds 0..86400, e.g. 30"),
    ("ANPR_MIN_PLATE_LEN", "characters 1..20, e.g. 4"),
    ("ANPR_MAX_PLATE_LEN", "characters, >= ANPR_MIN_PLATE_LEN and <= 20, e.g. 10"),
    ("ANPR_PLATE_FORMAT", "a regular expression the normalised plate must match, e.g. ^[0-9][A-Z]{2}[0-9]{4}$, or empty"),
    ("ANPR_MIN_READ_CONFIDENCE", "a mean character probability in [0, 1], e.g. 0.8"),
    ("ANPR_MIN_PLATE_SCORE", "a plate detector score in [0, 1], e.g. 0.4"),
    ("MAX_CAMERAS", "a camera count 1..4096, e.g. 64"),
    ("STREAM_STALL_TIMEOUT_S", "seconds 1..3600, e.g. 20"),
    ("MOTION_WORKERS", "a thread count, 0 = one per CPU core"),
    ("LOG_LEVEL", "one of OFF, ERROR, WARN, INFO, DEBUG, TRACE"),
];

/// Every variable the service reads (`.env.example` and the README are checked against it).
pub fn known_variables() -> Vec<&'static str> {
    FORMS.iter().map(|(v, _)| *v).collect()
}

fn expected_form(var: &str) -> String {
    FORMS.iter().find(|(v, _)| *v == var).map_or_else(|| "a valid value".to_string(), |(_, f)| f.to_string())
}

fn invalid(var: &str, value: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError { var: var.into(), value: value.to_string(), reason: reason.to_string(), expected: expected_form(var) }
}

/// `BATCH_SIZE` when auto on a GPU: frames of different cameras in one run.
pub const GPU_BATCH_SIZE: usize = 8;

/// The validated configuration. Plain data: `service::Service::start` builds the live objects.
#[derive(Debug, Clone)]
pub struct Config {
    /// `API_HOST` (0.0.0.0): address the REST API binds.
    pub api_host: String,
    /// `API_PORT` (8069): REST API port; 0 picks a free port (tests).
    pub api_port: u16,
    /// `API_MAX_BODY_BYTES` (1048576): larger request bodies get 413.
    pub api_max_body_bytes: usize,
    /// `API_MAX_CONNECTIONS` (10000): open HTTP connections (an idle one costs a task and
    /// ~10 KiB, no thread); past it a new connection gets 503 and is closed.
    pub api_max_connections: usize,
    /// `API_TOKEN` (none): when set, every route but `GET /api/health` needs
    /// `Authorization: Bearer <token>`. Never logged.
    pub api_token: Option<String>,
    /// `STREAM_FILE_ROOT` (none): local file sources must resolve inside this directory
    /// (canonicalised here); none refuses file sources.
    pub stream_file_root: Option<PathBuf>,
    /// `MAX_FRAME_PIXELS` (3840x2160): a larger frame (or one under 32x32) puts its camera in
    /// `error` instead of reaching a stage.
    pub max_frame_pixels: u64,
    /// `TRACK_LOST_S` (3): an object not seen for this long (on frames that were detected)
    /// ends.
    pub track_lost: Duration,
    /// `REDIS_HOST` (redis): the compose service name; `127.0.0.1` for a local Redis.
    pub redis_host: String,
    /// `REDIS_PORT` (6379).
    pub redis_port: u16,
    /// `REDIS_DB` (0).
    pub redis_db: i64,
    /// `REDIS_PASSWORD` (none): never logged.
    pub redis_password: Option<String>,
    /// `REDIS_STREAM` (stream:events): the stream every event is XADDed to.
    pub redis_stream: String,
    /// `REDIS_STREAM_MAXLEN` (100000): `MAXLEN ~` cap of the stream.
    pub redis_stream_maxlen: usize,
    /// `REDIS_KEY_PREFIX` (analytics:): every key the service keeps in Redis (registry, leases,
    /// heartbeats, ANPR dedupe) starts with it; instances with the same prefix form one service.
    pub redis_key_prefix: String,
    /// `INSTANCE_ID` (the host name): this instance's name in leases, listings and events.
    pub instance_id: String,
    /// `LEASE_TTL_S` (10): a camera lease lapses this long after its holder stops renewing it
    /// (renewed every fifth of it); an instance silent this long counts as dead.
    pub lease_ttl: Duration,
    /// `PUBLISH_BATCH_SIZE` (100): XADDs sent in one pipeline.
    pub publish_batch_size: usize,
    /// `PUBLISH_BUFFER_MAX` (10000): events held while Redis is unreachable; beyond it the
    /// oldest are dropped and counted.
    pub publish_buffer_max: usize,
    /// `YOLO_MODEL` (models/yolov8n.onnx): the YOLOv8 ONNX file. A `.pt` file is refused.
    pub yolo_model: PathBuf,
    /// `INFERENCE_DEVICE` (auto): auto | cpu | cuda | tensorrt (docs/gpu.md).
    pub inference_device: InferenceDevice,
    /// `TENSORRT_CACHE_DIR` (/tmp/analytics-service/tensorrt): where TensorRT keeps the engines
    /// and timing cache it builds, so that only the first start with a model (and batch size)
    /// pays the minutes of engine building. Used only with `INFERENCE_DEVICE=tensorrt`.
    pub tensorrt_cache_dir: PathBuf,
    /// `TENSORRT_FP16` (true): TensorRT may use float16 kernels (faster, ~1e-3 relative error).
    pub tensorrt_fp16: bool,
    /// `BATCH_SIZE` (0 = auto): most frames in one cross-camera inference batch. Auto is 1 on
    /// the CPU, where each inference worker's one-thread session detects ~7 % more frames per
    /// second one at a time than in batches of 3 (and a frame no longer waits for its batch),
    /// and [`GPU_BATCH_SIZE`] on a GPU ([`Config::batch_size_on`]).
    pub batch_size: usize,
    /// `INFERENCE_WORKERS` (0 = one per CPU core, at most 4): detection threads, each with its
    /// own session and `cores / workers` ONNX Runtime threads, running batches side by side.
    pub inference_workers: usize,
    /// `BATCH_TIMEOUT_MS` (20): longest wait for a batch to fill.
    pub batch_timeout: Duration,
    /// `NMS_IOU` (0.45): IoU above which NMS suppresses a box of the same class.
    pub nms_iou: f32,
    /// `ORT_DYLIB_PATH` (none): the ONNX Runtime library; none = search `.local/onnxruntime/lib`,
    /// beside the binary, `/usr/local/lib`, `/usr/lib`, `/opt/onnxruntime/lib`.
    pub ort_dylib_path: Option<PathBuf>,
    /// `ANPR_PLATE_MODEL` (models/plate_detector_yolov8s_seg.onnx).
    pub anpr_plate_model: PathBuf,
    /// `ANPR_OCR_MODEL` (models/ch_PP-OCRv4_rec_infer.onnx).
    pub anpr_ocr_model: PathBuf,
    /// `ANPR_OCR_DICT` (models/ppocr_v4_rec_dict.txt).
    pub anpr_ocr_dict: PathBuf,
    /// `ANPR_DEDUPE_WINDOW_S` (30): the same plate on a camera is published once per window.
    pub anpr_dedupe_window: Duration,
    /// `ANPR_MIN_PLATE_LEN` (4) / `ANPR_MAX_PLATE_LEN` (10): normalised plate length bounds.
    pub anpr_min_plate_len: usize,
    pub anpr_max_plate_len: usize,
    /// `ANPR_PLATE_FORMAT` (none): a regex every published plate must match.
    pub anpr_plate_format: Option<regex::Regex>,
    /// `ANPR_MIN_READ_CONFIDENCE` (0.8): least mean character probability of a published read.
    pub anpr_min_read_confidence: f32,
    /// `ANPR_MIN_PLATE_SCORE` (0.4): least plate detector score.
    pub anpr_min_plate_score: f32,
    /// `MAX_CAMERAS` (64): the most cameras this instance runs. The cameras registered in all
    /// may not pass the sum over the live instances, so memory stays bounded.
    pub max_cameras: usize,
    /// `STREAM_STALL_TIMEOUT_S` (20): an open stream without frames this long counts as dead.
    pub stream_stall_timeout: Duration,
    /// `MOTION_WORKERS` (0 = CPU cores): threads of the motion pool.
    pub motion_workers: usize,
    /// `LOG_LEVEL` (INFO).
    pub log_level: LogLevel,
}

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
                return Err(invalid(".env", ".env", e));
            }
        }
        Self::from_vars(std::env::vars())
    }

    /// Reads and validates the configuration from `(NAME, value)` pairs.
    pub fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let raw: RawConfig = envy::from_iter(vars).map_err(envy_error)?;
        let check = |ok: bool, var: &str, value: &dyn ToString, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(invalid(var, value.to_string(), reason))
            }
        };
        raw.api_host.parse::<std::net::IpAddr>().map_err(|e| invalid("API_HOST", &raw.api_host, e))?;
        check((1024..=64 << 20).contains(&raw.api_max_body_bytes), "API_MAX_BODY_BYTES", &raw.api_max_body_bytes, "out of range")?;
        check((1..=1_000_000).contains(&raw.api_max_connections), "API_MAX_CONNECTIONS", &raw.api_max_connections, "out of range")?;
        let api_token = raw.api_token.filter(|t| !t.is_empty());
        if let Some(t) = &api_token {
            let ok = (16..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic());
            // the value is a secret: never echo it
            check(ok, "API_TOKEN", &"<hidden>", "must be 16 to 256 visible ASCII characters")?;
        }
        let stream_file_root = match raw.stream_file_root.filter(|p| !p.as_os_str().is_empty()) {
            None => None,
            Some(p) => match p.canonicalize() {
                Ok(c) if c.is_dir() => Some(c),
                Ok(_) => return Err(invalid("STREAM_FILE_ROOT", p.display(), "not a directory")),
                Err(e) => return Err(invalid("STREAM_FILE_ROOT", p.display(), e)),
            },
        };
        check((1024..=100_000_000).contains(&raw.max_frame_pixels), "MAX_FRAME_PIXELS", &raw.max_frame_pixels, "out of range")?;
        check((0.1..=600.0).contains(&raw.track_lost_s), "TRACK_LOST_S", &raw.track_lost_s, "out of range")?;
        check(!raw.redis_host.trim().is_empty(), "REDIS_HOST", &raw.redis_host, "empty")?;
        check(raw.redis_port != 0, "REDIS_PORT", &raw.redis_port, "port 0 cannot be connected to")?;
        check(raw.redis_db >= 0, "REDIS_DB", &raw.redis_db, "negative")?;
        check(!raw.redis_stream.trim().is_empty(), "REDIS_STREAM", &raw.redis_stream, "empty")?;
        check(raw.redis_stream_maxlen > 0, "REDIS_STREAM_MAXLEN", &raw.redis_stream_maxlen, "must be positive")?;
        let visible = |v: &str, max: usize| (1..=max).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic());
        check(visible(&raw.redis_key_prefix, 64), "REDIS_KEY_PREFIX", &raw.redis_key_prefix, "empty, too long or not visible ASCII")?;
        let instance_id = match raw.instance_id.filter(|i| !i.is_empty()) {
            Some(id) => id,
            None => host_name(),
        };
        check(visible(&instance_id, 128), "INSTANCE_ID", &instance_id, "too long or not visible ASCII")?;
        check((0.5..=300.0).contains(&raw.lease_ttl_s), "LEASE_TTL_S", &raw.lease_ttl_s, "out of range")?;
        check((1..=10_000).contains(&raw.publish_batch_size), "PUBLISH_BATCH_SIZE", &raw.publish_batch_size, "out of range")?;
        check(
            raw.publish_buffer_max >= raw.publish_batch_size,
            "PUBLISH_BUFFER_MAX",
            &raw.publish_buffer_max,
            "smaller than PUBLISH_BATCH_SIZE",
        )?;
        check_model_path("YOLO_MODEL", &raw.yolo_model)?;
        check_model_path("ANPR_PLATE_MODEL", &raw.anpr_plate_model)?;
        check_model_path("ANPR_OCR_MODEL", &raw.anpr_ocr_model)?;
        let inference_device = match raw.inference_device.to_ascii_lowercase().as_str() {
            "auto" => InferenceDevice::Auto,
            "cpu" => InferenceDevice::Cpu,
            "cuda" | "gpu" => InferenceDevice::Cuda,
            "tensorrt" | "trt" => InferenceDevice::TensorRt,
            _ => return Err(invalid("INFERENCE_DEVICE", &raw.inference_device, "unknown device")),
        };
        check(!raw.tensorrt_cache_dir.as_os_str().is_empty(), "TENSORRT_CACHE_DIR", &raw.tensorrt_cache_dir.display(), "empty")?;
        let tensorrt_fp16 = match raw.tensorrt_fp16.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(invalid("TENSORRT_FP16", &raw.tensorrt_fp16, "not a boolean")),
        };
        check(raw.batch_size <= 256, "BATCH_SIZE", &raw.batch_size, "out of range")?;
        check(raw.inference_workers <= 64, "INFERENCE_WORKERS", &raw.inference_workers, "out of range")?;
        check(raw.batch_timeout_ms <= 10_000, "BATCH_TIMEOUT_MS", &raw.batch_timeout_ms, "out of range")?;
        check(raw.nms_iou > 0.0 && raw.nms_iou <= 1.0, "NMS_IOU", &raw.nms_iou, "out of range")?;
        check(raw.anpr_dedupe_window_s <= 86_400, "ANPR_DEDUPE_WINDOW_S", &raw.anpr_dedupe_window_s, "out of range")?;
        check((1..=20).contains(&raw.anpr_min_plate_len), "ANPR_MIN_PLATE_LEN", &raw.anpr_min_plate_len, "out of range")?;
        check(
            (raw.anpr_min_plate_len..=20).contains(&raw.anpr_max_plate_len),
            "ANPR_MAX_PLATE_LEN",
            &raw.anpr_max_plate_len,
            "out of range",
        )?;
        check(
            (0.0..=1.0).contains(&raw.anpr_min_read_confidence),
            "ANPR_MIN_READ_CONFIDENCE",
            &raw.anpr_min_read_confidence,
            "out of range",
        )?;
        check((0.0..=1.0).contains(&raw.anpr_min_plate_score), "ANPR_MIN_PLATE_SCORE", &raw.anpr_min_plate_score, "out of range")?;
        let anpr_plate_format = match raw.anpr_plate_format.trim() {
            "" => None,
            re => Some(regex::Regex::new(re).map_err(|e| invalid("ANPR_PLATE_FORMAT", re, e))?),
        };
        check((1..=4096).contains(&raw.max_cameras), "MAX_CAMERAS", &raw.max_cameras, "out of range")?;
        check((1..=3600).contains(&raw.stream_stall_timeout_s), "STREAM_STALL_TIMEOUT_S", &raw.stream_stall_timeout_s, "out of range")?;
        check(raw.motion_workers <= 256, "MOTION_WORKERS", &raw.motion_workers, "out of range")?;
        let log_level = raw.log_level.parse::<LogLevel>().map_err(|_| invalid("LOG_LEVEL", &raw.log_level, "unknown level"))?;
        Ok(Config {
            api_host: raw.api_host,
            api_port: raw.api_port,
            api_max_body_bytes: raw.api_max_body_bytes,
            api_max_connections: raw.api_max_connections,
            api_token,
            stream_file_root,
            max_frame_pixels: raw.max_frame_pixels,
            track_lost: Duration::from_secs_f64(raw.track_lost_s),
            redis_host: raw.redis_host,
            redis_port: raw.redis_port,
            redis_db: raw.redis_db,
            redis_password: raw.redis_password.filter(|p| !p.is_empty()),
            redis_stream: raw.redis_stream,
            redis_stream_maxlen: raw.redis_stream_maxlen,
            redis_key_prefix: raw.redis_key_prefix,
            instance_id,
            lease_ttl: Duration::from_secs_f64(raw.lease_ttl_s),
            publish_batch_size: raw.publish_batch_size,
            publish_buffer_max: raw.publish_buffer_max,
            yolo_model: raw.yolo_model,
            inference_device,
            tensorrt_cache_dir: raw.tensorrt_cache_dir,
            tensorrt_fp16,
            batch_size: raw.batch_size,
            inference_workers: raw.inference_workers,
            batch_timeout: Duration::from_millis(raw.batch_timeout_ms),
            nms_iou: raw.nms_iou,
            ort_dylib_path: raw.ort_dylib_path.filter(|p| !p.as_os_str().is_empty()),
            anpr_plate_model: raw.anpr_plate_model,
            anpr_ocr_model: raw.anpr_ocr_model,
            anpr_ocr_dict: raw.anpr_ocr_dict,
            anpr_dedupe_window: Duration::from_secs(raw.anpr_dedupe_window_s),
            anpr_min_plate_len: raw.anpr_min_plate_len,
            anpr_max_plate_len: raw.anpr_max_plate_len,
            anpr_plate_format,
            anpr_min_read_confidence: raw.anpr_min_read_confidence,
            anpr_min_plate_score: raw.anpr_min_plate_score,
            max_cameras: raw.max_cameras,
            stream_stall_timeout: Duration::from_secs(raw.stream_stall_timeout_s),
            motion_workers: raw.motion_workers,
            log_level,
        })
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
    pub fn batch_size_on(&self, provider: crate::pipeline::detect::session::Provider) -> usize {
        match (self.batch_size, provider) {
            (0, crate::pipeline::detect::session::Provider::Cpu) => 1,
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

/// A model path must name an ONNX file; a PyTorch checkpoint gets the export hint.
fn check_model_path(var: &str, path: &std::path::Path) -> Result<(), ConfigError> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("pt") | Some("pth") => Err(invalid(
            var,
            path.display(),
            "this is a PyTorch checkpoint, ONNX Runtime cannot load it; export it once with \
             `yolo export model=yolov8n.pt format=onnx dynamic=True` (see models/README.md)",
        )),
        _ if path.as_os_str().is_empty() => Err(invalid(var, "", "empty path")),
        _ => Ok(()),
    }
}

/// Turns envy's "<err> while parsing value 'v' provided by VAR" into a [`ConfigError`].
fn envy_error(e: envy::Error) -> ConfigError {
    let msg = e.to_string();
    if let Some((head, var)) = msg.rsplit_once(" provided by ") {
        if let Some((reason, value)) = head.split_once(" while parsing value ") {
            return invalid(var, value.trim_matches('\''), reason);
        }
    }
    invalid("environment", "", msg)
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
    }

    #[test]
    fn a_bad_number_names_the_variable_and_the_form() {
        let e = Config::from_vars(vars(&[("API_PORT", "80a")])).unwrap_err();
        assert_eq!(e.var, "API_PORT");
        assert_eq!(e.value, "80a");
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
            assert_eq!(e.var, var, "{value}: {e}");
        }
    }

    #[test]
    fn the_token_is_never_echoed() {
        let e = Config::from_vars(vars(&[("API_TOKEN", "abc def")])).unwrap_err();
        assert!(!e.to_string().contains("abc"), "{e}");
    }

    #[test]
    fn a_pytorch_checkpoint_gets_the_export_hint() {
        let e = Config::from_vars(vars(&[("YOLO_MODEL", "yolov8n.pt")])).unwrap_err();
        assert_eq!(e.var, "YOLO_MODEL");
        assert!(e.to_string().contains("format=onnx"), "{e}");
    }
}
