//! Shared test fixtures: a service on port 0, a raw HTTP client, a real Redis (the machine's,
//! or one a test starts on a spare port and kills), and unique stream names. Every stream
//! entry read through [`xrange`] is validated against the JSON Schemas in `docs/schema/`
//! ([`schema`]).
#![allow(dead_code)]

// Test builds only: src/bin/bench.rs includes this file too and has no dev-dependencies.
#[cfg(test)]
pub mod schema;

use analytics_service::config::Config;
use analytics_service::service::Service;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The Redis the tests use: `TEST_REDIS_HOST`/`TEST_REDIS_PORT`, default 127.0.0.1:6379
/// (`.ci/run` starts one there if none answers).
pub fn redis_host() -> String {
    std::env::var("TEST_REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}

pub fn redis_port() -> u16 {
    std::env::var("TEST_REDIS_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(6379)
}

pub fn redis_conn_at(port: u16) -> redis::Connection {
    let url = format!("redis://{}:{port}/", redis_host());
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("tests need a real redis-server on {}:{port} (run .ci/run, or start one): {e}", redis_host()))
}

pub fn redis_conn() -> redis::Connection {
    redis_conn_at(redis_port())
}

/// A stream name no other test (or earlier run) uses.
pub fn unique_stream(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("test:{name}:{}:{nanos}", std::process::id())
}

/// A configuration for tests: API on 127.0.0.1 port 0, the test Redis, a unique stream and key
/// prefix.
pub fn test_config(stream_name: &str) -> Config {
    Config {
        api_host: "127.0.0.1".into(),
        api_port: 0,
        redis_host: redis_host(),
        redis_port: redis_port(),
        redis_stream: unique_stream(stream_name),
        // each test service is a cluster of its own: its registry, leases and dedupe keys
        redis_key_prefix: format!("{}:", unique_stream(stream_name)),
        instance_id: "test-instance".into(),
        yolo_model: model("yolov8n.onnx"),
        ort_dylib_path: std::env::var_os("ORT_DYLIB_PATH").map(Into::into),
        // tests play files from the media folder and temporary folders; the file-root rule
        // itself is tested in tests/hostile.rs
        stream_file_root: Some("/".into()),
        ..Config::default()
    }
}

/// A model installed by scripts/setup.sh into `models/`; a missing one fails with what to do.
pub fn model(name: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name);
    assert!(p.is_file(), "model {} is missing: run scripts/setup.sh (it installs the models, see models/README.md)", p.display());
    p
}

/// The Python of the setup's venv (onnxruntime, numpy, opencv), for reference scripts.
pub fn python() -> std::path::PathBuf {
    let p = std::env::var_os("ANALYTICS_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".local/venv/bin/python"));
    assert!(p.is_file(), "{} is missing: run scripts/setup.sh (it makes the venv)", p.display());
    p
}

pub fn start_service(config: Config) -> Service {
    Service::start(config).expect("service starts")
}

/// A reply from the raw client.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end.
pub fn http(addr: SocketAddr, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> HttpReply {
    let ct: Vec<(&str, &str)> = content_type.map(|ct| ("Content-Type", ct)).into_iter().collect();
    http_with(addr, method, path, &ct, body)
}

/// [`http`] with any header fields (e.g. `Authorization`).
pub fn http_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    let mut s = TcpStream::connect(addr).expect("connect to API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading the whole body; ignore a broken pipe then.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP reply: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    HttpReply { status, headers, body: body.to_string() }
}

pub fn get(addr: SocketAddr, path: &str) -> HttpReply {
    http(addr, "GET", path, None, b"")
}

pub fn post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> HttpReply {
    http(addr, "POST", path, Some("application/json"), body.to_string().as_bytes())
}

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real redis-server the test owns, on its own port; killed on drop.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test (the setup script installs it)");
        let mut r = OwnRedis { port, child: Some(child) };
        wait_for(Duration::from_secs(10), "own redis-server to answer", || {
            let url = format!("redis://127.0.0.1:{port}/");
            let mut c = redis::Client::open(url).ok()?.get_connection_with_timeout(Duration::from_millis(200)).ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        });
        r.port = port;
        r
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// All entries of a stream as (id, field map), unchecked: for streams the service did not
/// write (the seed design's, in `tests/baseline.rs`).
pub fn xrange_unchecked(conn: &mut redis::Connection, stream: &str) -> Vec<(String, HashMap<String, String>)> {
    redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(conn).unwrap()
}

/// All entries of a stream as (id, field map). Each event entry is checked against its JSON
/// Schema in `docs/schema/` (the test fails on a field the docs do not describe).
pub fn xrange(conn: &mut redis::Connection, stream: &str) -> Vec<(String, HashMap<String, String>)> {
    // tests poll this: each entry is checked once
    static CHECKED: std::sync::Mutex<Option<std::collections::HashSet<String>>> = std::sync::Mutex::new(None);
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(conn).unwrap();
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    let checked = checked.get_or_insert_with(Default::default);
    for (id, fields) in &entries {
        if checked.insert(format!("{stream}\0{id}")) {
            check_entry(fields);
        }
    }
    entries
}

#[cfg(test)]
fn check_entry(fields: &HashMap<String, String>) {
    schema::check_entry(fields)
}

/// Outside tests (src/bin/bench.rs) entries are not checked.
#[cfg(not(test))]
fn check_entry(_: &HashMap<String, String>) {}

/// A sample media file (`vtest_pedestrians_768x576.mp4`, `bus.jpg`, `car_plate_cz_5AU5341.png`):
/// the first of `$ANALYTICS_MEDIA_DIR/<name>`, `<repo>/.local/media/<name>` (where
/// scripts/setup.sh puts them) and `<repo>/../shared/media/<name>` that exists. A missing file
/// fails the test with what to do (it is never skipped). Tests, benches and the bench binary all
/// find media through this one function.
pub fn media(name: &str) -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = std::env::var_os("ANALYTICS_MEDIA_DIR")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([repo.join(".local/media"), repo.join("../shared/media")]);
    let tried: Vec<std::path::PathBuf> = dirs.map(|d| d.join(name)).collect();
    tried.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("sample media {name} is missing (looked at {tried:?}): run scripts/setup.sh, which puts it into .local/media")
    })
}

/// The reference detector (onnxruntime alone, tests/reference_detect.py, yolov8n) on each
/// image: path -> [(class, confidence, [x1, y1, x2, y2] in pixels)].
pub fn reference_detections(paths: &[std::path::PathBuf]) -> HashMap<String, Vec<(usize, f32, [f32; 4])>> {
    let out = fixtures_dir().join(format!("reference-{}-{}.json", std::process::id(), paths.len()));
    let st = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference_detect.py"))
        .arg(model("yolov8n.onnx"))
        .arg(&out)
        .args(paths)
        .status()
        .unwrap();
    assert!(st.success(), "reference script failed");
    type Found = Vec<(usize, f32, f32, f32, f32, f32)>;
    let v: HashMap<String, Found> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(out);
    v.into_iter().map(|(k, d)| (k, d.into_iter().map(|(c, s, a, b, x, y)| (c, s, [a, b, x, y])).collect())).collect()
}

/// A folder for generated fixtures, shared by tests and kept between runs.
pub fn fixtures_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join("analytics-service-fixtures");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs ffmpeg to make `name` in the fixtures folder unless it exists; returns its path.
pub fn ffmpeg_fixture(name: &str, args: &[&str]) -> std::path::PathBuf {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let out = fixtures_dir().join(name);
    if out.is_file() {
        return out;
    }
    let tmp = fixtures_dir().join(format!("{}.{}.tmp.mp4", name, std::process::id()));
    let status = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error"])
        .args(args)
        .arg(&tmp)
        .status()
        .expect("ffmpeg must be installed (scripts/setup.sh installs it)");
    assert!(status.success(), "ffmpeg failed making {name}");
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// The first `seconds` of `video` at `width`x`height`, 25 fps, H.264 with a keyframe every
/// second exactly (`-g 25`, no scene-cut keyframes), as an IP camera's stream is set up; the
/// decode-budget test and `bench --decode-budget` play it.
pub fn gop25_clip(video: &std::path::Path, width: u32, height: u32, seconds: u32) -> std::path::PathBuf {
    let name = format!("{}_{width}x{height}_{seconds}s_25fps_gop25.mp4", video.file_stem().unwrap_or_default().to_string_lossy());
    let (t, vf) = (seconds.to_string(), format!("scale={width}:{height},fps=25"));
    let input = video.to_str().expect("a UTF-8 path");
    ffmpeg_fixture(
        &name,
        &[
            "-i",
            input,
            "-t",
            &t,
            "-vf",
            &vf,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-an",
        ],
    )
}

/// 8 s at 10 fps zooming into the plate photo (the car grows, so it is not stationary): the
/// ANPR end-to-end tests' camera.
pub fn plate_video() -> std::path::PathBuf {
    still_clip(
        "plate_zoom_8s.mp4",
        &media("car_plate_cz_5AU5341.png"),
        "scale=1036:662,zoompan=z='1+0.003*on':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s=1036x662:fps=10",
        "8",
        &[],
    )
}

/// A still image looped into an H.264 clip (10 fps, yuv420p) of `seconds`, through the filter
/// `vf`, with further output options `extra`; made once into the fixtures folder as `name`.
pub fn still_clip(name: &str, image: &std::path::Path, vf: &str, seconds: &str, extra: &[&str]) -> std::path::PathBuf {
    let image = image.to_str().unwrap();
    let mut args = vec!["-loop", "1", "-framerate", "10", "-i", image, "-vf", vf, "-t", seconds];
    args.extend_from_slice(extra);
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    ffmpeg_fixture(name, &args)
}

/// A 10 s static H.264 clip (the bus photo, 10 fps): real encoder noise, no motion.
pub fn static_clip() -> std::path::PathBuf {
    still_clip("static_bus_10s.mp4", &media("bus.jpg"), "scale=640:-2", "10", &[])
}

/// The pedestrian sample sped up 3x to 30 fps (27 s): a busy camera for fairness tests.
pub fn clip_30fps() -> std::path::PathBuf {
    let src = media("vtest_pedestrians_768x576.mp4");
    ffmpeg_fixture(
        "vtest_30fps.mp4",
        &[
            "-i",
            src.to_str().unwrap(),
            "-vf",
            "setpts=PTS/3",
            "-r",
            "30",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-an",
        ],
    )
}

/// The project's GStreamer RTSP server (scripts/rtsp_server.py) on a spare port; killed on drop.
pub struct RtspServer {
    pub port: u16,
    child: Option<Child>,
    mounts: Vec<(String, std::path::PathBuf)>,
}

impl RtspServer {
    pub fn start(mounts: &[(&str, &std::path::Path)]) -> RtspServer {
        Self::start_on(free_port(), mounts.iter().map(|(n, p)| (n.to_string(), p.to_path_buf())).collect())
    }

    fn start_on(port: u16, mounts: Vec<(String, std::path::PathBuf)>) -> RtspServer {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rtsp_server.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script).args(["--port", &port.to_string()]);
        for (name, path) in &mounts {
            cmd.arg("--mount").arg(format!("{name}={}", path.display()));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 with GStreamer RTSP (scripts/setup.sh installs it)");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(line.starts_with("READY"), "rtsp_server did not start: {line:?}");
        RtspServer { port, child: Some(child), mounts }
    }

    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{mount}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same mounts again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        wait_for(Duration::from_secs(10), "RTSP port free again", || TcpListener::bind(("127.0.0.1", port)).ok().map(drop));
        let mut again = Self::start_on(port, std::mem::take(&mut self.mounts));
        self.child = again.child.take();
        self.mounts = std::mem::take(&mut again.mounts);
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of this process in KiB.
pub fn rss_kib() -> u64 {
    analytics_service::metrics::process_rss_bytes() / 1024
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    analytics_service::metrics::process_cpu_seconds()
}
