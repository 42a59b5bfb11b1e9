//! docs/architecture.md, "REST API" (limits), tried as an attacker would: a real service on a loopback port, raw
//! sockets, nothing mocked. Each test breaks one promise on purpose and checks the service
//! answers precisely (a 4xx in the error shape, or a closed connection) and keeps serving.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Sends raw bytes and reads until the server closes or `timeout`; returns what came back.
fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(reply: &str) -> u16 {
    reply.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The JSON body of a raw reply, which must be in the error shape.
fn error_body(reply: &str) -> Value {
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {reply}"));
    assert!(v["error"].is_string() && v["message"].is_string() && v["details"].is_array(), "not the error shape: {v}");
    v
}

fn health_ok(addr: SocketAddr) {
    let r = get(addr, "/api/health");
    assert_eq!(r.status, 200, "health stopped answering: {}", r.body);
}

/// Some tests measure the whole test process (RSS, threads), which another test's service
/// starting or stopping beside them would move: those run alone, the others side by side.
static PROCESS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    PROCESS.write().unwrap_or_else(|e| e.into_inner())
}

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    PROCESS.read().unwrap_or_else(|e| e.into_inner())
}

fn service() -> analytics_service::service::Service {
    start_service(test_config("hostile"))
}

#[test]
fn absurd_content_lengths_are_refused_and_nothing_dies() {
    let _process = exclusive();
    let svc = service();
    let addr = svc.api_addr();
    let rss0 = rss_kib();
    for (value, want) in [
        ("9223372036854775807", 413),
        ("18446744073709551615", 413),
        ("184467440737095516150000", 413),
        ("-1", 400),
        ("abc", 400),
        ("1e3", 400),
        ("", 400),
        ("0x10", 400),
    ] {
        for (method, path) in [("GET", "/metrics"), ("POST", "/api/cameras"), ("DELETE", "/api/cameras/x")] {
            let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {value}\r\n\r\n");
            // four times each: the seed lost one API thread per request
            for _ in 0..4 {
                let r = raw(addr, req.as_bytes(), Duration::from_secs(5));
                assert_eq!(status_of(&r), want, "Content-Length {value:?} on {method} {path}: {r}");
                error_body(&r);
            }
        }
    }
    let r = raw(addr, b"GET /metrics HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", Duration::from_secs(5));
    assert_eq!(status_of(&r), 400, "{r}");
    assert!(error_body(&r)["message"].as_str().unwrap().contains("more than one Content-Length"));
    let r = raw(addr, b"POST /api/cameras HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", Duration::from_secs(5));
    assert_eq!(status_of(&r), 400, "{r}");
    health_ok(addr);
    eprintln!("RSS before {} KiB, after {} KiB", rss0, rss_kib());
    svc.shutdown();
}

#[test]
fn chunked_bodies_are_decoded_within_the_limit() {
    let _process = shared();
    let svc = service();
    let addr = svc.api_addr();
    let body = serde_json::to_vec(&json!({"camera_id": "chunky", "stream_url": "rtsp://127.0.0.1:9/x", "status": "inactive"})).unwrap();
    let (a, b) = body.split_at(10);
    let mut req =
        b"POST /api/cameras HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for part in [a, b] {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw(addr, &req, Duration::from_secs(5));
    assert_eq!(status_of(&r), 201, "{r}");
    // a chunk that would pass API_MAX_BODY_BYTES is refused before it is read
    let r = raw(
        addr,
        b"POST /api/cameras HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&r), 413, "{r}");
    error_body(&r);
    let r = raw(addr, b"POST /api/cameras HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Duration::from_secs(5));
    assert_eq!(status_of(&r), 400, "{r}");
    health_ok(addr);
    svc.shutdown();
}

#[test]
fn huge_and_numerous_headers_get_431_without_being_kept() {
    let _process = exclusive();
    let svc = service();
    let addr = svc.api_addr();
    let rss0 = rss_kib();
    let long = format!("GET /api/health HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(100 * 1024));
    let r = raw(addr, long.as_bytes(), Duration::from_secs(5));
    assert_eq!(status_of(&r), 431, "{}", &r[..r.len().min(300)]);
    error_body(&r);
    // a 30 MB header line: refused after the first 8 KiB, so memory does not follow it
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /api/health HTTP/1.1\r\nX-Huge: ");
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..30 {
        if s.write_all(&chunk).is_err() {
            break; // the server closed the connection: good
        }
    }
    drop(s);
    let many: String = (0..5000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(addr, format!("GET /api/health HTTP/1.1\r\n{many}\r\n").as_bytes(), Duration::from_secs(5));
    assert_eq!(status_of(&r), 431, "{}", &r[..r.len().min(300)]);
    health_ok(addr);
    let grown = rss_kib().saturating_sub(rss0);
    eprintln!("RSS before {rss0} KiB, growth {grown} KiB");
    assert!(grown < 20 * 1024, "header bytes were kept in memory: RSS grew by {grown} KiB");
    svc.shutdown();
}

#[test]
fn http2_request_lines_are_answered_and_leak_nothing() {
    let _process = exclusive();
    let svc = service();
    let addr = svc.api_addr();
    let open = |svc: &analytics_service::service::Service| {
        let m = get(svc.api_addr(), "/metrics").body;
        m.lines().find_map(|l| l.strip_prefix("analytics_api_open_connections ")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap()
    };
    let threads0 = thread_count();
    for _ in 0..20 {
        let r = raw(addr, b"GET /api/health HTTP/2.0\r\nHost: x\r\n\r\n", Duration::from_secs(5));
        assert_eq!(status_of(&r), 505, "{r}");
        error_body(&r);
    }
    // every one of them was closed by the server (the raw reads returned), and no thread stays
    wait_for(Duration::from_secs(5), "connections closed", || (open(&svc) <= 1).then_some(()));
    let threads1 = thread_count();
    eprintln!("threads before {threads0}, after {threads1}");
    assert!(threads1 <= threads0 + 2, "threads leaked: {threads0} -> {threads1}");
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /api/health\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\nNoColonHere\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\nExpect: nonsense\r\n\r\n",
        b"GET http://evil/ HTTP/1.1\r\n\r\n",
        b"BREW /api/health HTTP/1.1\r\n\r\n",
    ] {
        let r = raw(addr, bad, Duration::from_secs(5));
        let st = status_of(&r);
        assert!((400..500).contains(&st) || st == 501, "{:?} -> {r}", String::from_utf8_lossy(bad));
        error_body(&r);
    }
    health_ok(addr);
    svc.shutdown();
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

#[test]
fn trickling_clients_hold_only_their_own_connection() {
    let _process = exclusive();
    let svc = service();
    let addr = svc.api_addr();
    let mut held = Vec::new();
    // 16 clients trickle a head, 16 declare a body and trickle it
    for i in 0..32 {
        let mut s = TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /api/health HTTP/1.1\r\nX-Slow: ").unwrap();
        } else {
            s.write_all(b"POST /api/cameras HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[").unwrap();
        }
        held.push(s);
    }
    let trickle = std::thread::spawn(move || {
        for _ in 0..3 {
            for s in &mut held {
                let _ = s.write_all(b"a");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        held
    });
    let t0 = Instant::now();
    health_ok(addr);
    let r = post_json(addr, "/api/cameras", &json!({"camera_id": "normal", "stream_url": "rtsp://127.0.0.1:9/x", "status": "inactive"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let served = t0.elapsed();
    eprintln!("a normal client was served in {served:?} while 32 clients trickled");
    // the tricklers would hold a shared handler pool for their whole 10 s deadline
    assert!(served < Duration::from_secs(5), "a normal client waited {served:?} behind the trickling ones");
    let mut held = trickle.join().unwrap();
    // past the head/body deadline (10 s) each trickler gets a 408 and is closed
    std::thread::sleep(Duration::from_secs(9));
    let mut cut = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        if status_of(&buf) == 408 {
            error_body(&buf);
            cut += 1;
        }
    }
    assert_eq!(cut, 32, "every trickling client is cut off with 408");
    svc.shutdown();
}

#[test]
fn the_connection_cap_refuses_with_503_and_recovers() {
    let _process = shared();
    let mut cfg = test_config("hostile-cap");
    cfg.api_max_connections = 4;
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = raw(addr, b"GET /api/health HTTP/1.1\r\n\r\n", Duration::from_secs(5));
    assert_eq!(status_of(&r), 503, "{r}");
    assert!(error_body(&r)["message"].as_str().unwrap().contains("too many open connections"));
    drop(idle);
    wait_for(Duration::from_secs(5), "a slot frees", || (get(addr, "/api/health").status == 200).then_some(()));
    svc.shutdown();
}

#[test]
fn the_bearer_token_guards_every_route_but_health() {
    let _process = shared();
    let mut cfg = test_config("hostile-token");
    cfg.api_token = Some("0123456789abcdef-token".into());
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    health_ok(addr);
    for (method, path) in [
        ("GET", "/api/cameras"),
        ("POST", "/api/cameras"),
        ("GET", "/api/cameras/x"),
        ("DELETE", "/api/cameras/x"),
        ("GET", "/metrics"),
        ("GET", "/nope"),
    ] {
        for auth in [
            "",
            "Authorization: Bearer wrong\r\n",
            "Authorization: Basic MDEyMzQ1Njc4OWFiY2RlZi10b2tlbg==\r\n",
            "Authorization: Bearer 0123456789abcdef-toke\r\n",
        ] {
            let r = raw(addr, format!("{method} {path} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n").as_bytes(), Duration::from_secs(5));
            assert_eq!(status_of(&r), 401, "{method} {path} {auth}: {r}");
            assert!(r.contains("WWW-Authenticate: Bearer"), "{r}");
            assert_eq!(error_body(&r)["error"], "unauthorized");
        }
        let r = raw(
            addr,
            format!("{method} {path} HTTP/1.1\r\nAuthorization: Bearer 0123456789abcdef-token\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert_ne!(status_of(&r), 401, "{method} {path} with the token: {r}");
    }
    svc.shutdown();
}

#[test]
fn file_sources_only_inside_stream_file_root() {
    let _process = shared();
    let dir = std::env::temp_dir().join(format!("hostile-root-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("media")).unwrap();
    std::fs::write(dir.join("media/ok.mp4"), b"not really a video").unwrap();
    std::fs::write(dir.join("outside.mp4"), b"x").unwrap();
    let mut cfg = test_config("hostile-root");
    cfg.stream_file_root = Some(dir.join("media").canonicalize().unwrap());
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let cam = |url: String| json!({"camera_id": "f", "stream_url": url, "status": "inactive"});
    let r = post_json(addr, "/api/cameras", &cam(dir.join("media/ok.mp4").display().to_string()));
    assert_eq!(r.status, 201, "{}", r.body);
    for bad in [dir.join("outside.mp4"), dir.join("media/../outside.mp4"), "/etc/passwd".into(), "/proc/self/environ".into()] {
        let r = post_json(addr, "/api/cameras", &cam(bad.display().to_string()));
        assert_eq!(r.status, 422, "{}: {}", bad.display(), r.body);
        assert!(r.body.contains("STREAM_FILE_ROOT"), "{}", r.body);
    }
    svc.shutdown();
    // unset: every file source is refused, naming the variable
    let mut cfg = test_config("hostile-noroot");
    cfg.stream_file_root = None;
    let svc = start_service(cfg);
    let r = post_json(svc.api_addr(), "/api/cameras", &cam(dir.join("media/ok.mp4").display().to_string()));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("STREAM_FILE_ROOT"), "{}", r.body);
    svc.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_values_at_scale_get_a_small_fast_reply() {
    let _process = shared();
    let svc = service();
    let addr = svc.api_addr();
    // ~1 MiB of bad cameras: each with a bad id, a bad fps and an unknown class
    let one = json!({"camera_id": "bad id!", "stream_url": "ftp://x", "parameters": {"max_fps": 5e-324, "detection_classes": vec!["unicorn"; 80]}});
    let per = serde_json::to_vec(&one).unwrap().len() + 1;
    let n = ((1 << 20) - 64) / per;
    let n = n.min(1024);
    let body = Value::Array(vec![one; n]);
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!(bytes.len() <= 1 << 20, "{} bytes", bytes.len());
    let t0 = Instant::now();
    let r = http(addr, "POST", "/api/cameras", Some("application/json"), &bytes);
    let took = t0.elapsed();
    assert_eq!(r.status, 422, "{}", &r.body[..r.body.len().min(300)]);
    let v = r.json();
    assert_eq!(v["details"].as_array().unwrap().len(), 50);
    assert!(v["message"].as_str().unwrap().contains(&format!("{} invalid field(s), the first 50 listed", n * 83)), "{}", v["message"]);
    eprintln!("{} bytes of bad values -> {} byte reply in {took:?}", bytes.len(), r.body.len());
    assert!(r.body.len() < 64 * 1024, "reply of {} bytes", r.body.len());
    // the same for a single camera with a huge zone list / point list / class list
    let big = json!({"camera_id": "c", "stream_url": "rtsp://h/x", "parameters": {
        "roi_zones": vec![json!({"name": "z", "points": vec![[0.5, 0.5]; 400]}); 100],
        "detection_classes": vec!["unicorn"; 10000]}});
    let r = post_json(addr, "/api/cameras", &big);
    assert_eq!(r.status, 422);
    assert!(r.body.len() < 8 * 1024, "{}", r.body);
    svc.shutdown();
}

#[test]
fn duplicate_keys_and_subnormal_numbers_are_refused() {
    let _process = shared();
    let svc = service();
    let addr = svc.api_addr();
    let r = http(
        addr,
        "POST",
        "/api/cameras",
        Some("application/json"),
        br#"{"camera_id": "a", "camera_id": "b", "stream_url": "rtsp://h/x"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("duplicate key 'camera_id'"), "{}", r.body);
    let r = post_json(addr, "/api/cameras", &json!({"camera_id": "a", "stream_url": "rtsp://h/x", "parameters": {"max_fps": 5e-324}}));
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["details"][0]["path"], "parameters.max_fps");
    assert!(get(addr, "/api/cameras/a").status == 404, "nothing was stored");
    svc.shutdown();
}

#[test]
fn credentials_never_leave_the_process() {
    let _process = shared();
    let svc = service();
    let addr = svc.api_addr();
    let urls = [
        "rtsp://admin:p#ss-secret1@127.0.0.1:9/stream",
        "rtsp://admin:p/ss-secret2@127.0.0.1:9/stream",
        "rtsp://127.0.0.1:9/user=admin&password=secret3&channel=1&stream=0.sdp",
        "rtsp://127.0.0.1:9/live?user=admin&pwd=secret4",
        "http://127.0.0.1:9/video.cgi?pw=secret5",
    ];
    let cams: Vec<Value> = urls.iter().enumerate().map(|(i, u)| json!({"camera_id": format!("m{i}"), "stream_url": u})).collect();
    let r = post_json(addr, "/api/cameras", &Value::Array(cams));
    assert_eq!(r.status, 201, "{}", r.body);
    // wait until each has failed to connect at least once, so last_error is filled
    wait_for(Duration::from_secs(20), "connection errors", || {
        let v = get(addr, "/api/cameras").json();
        v["cameras"].as_array().unwrap().iter().all(|c| c["last_error"].is_string()).then_some(())
    });
    let everything = [get(addr, "/api/cameras").body, get(addr, "/api/health").body, get(addr, "/metrics").body, r.body].concat();
    for i in 1..=5 {
        assert!(!everything.contains(&format!("secret{i}")), "secret{i} leaked: {everything}");
    }
    assert!(everything.contains("admin:***@127.0.0.1:9"), "{everything}");
    assert!(everything.contains("password=***"), "{everything}");
    svc.shutdown();
}

#[test]
fn a_stage_killed_on_purpose_shows_in_health() {
    let _process = shared();
    let svc = service();
    let addr = svc.api_addr();
    let h = get(addr, "/api/health").json();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["model"]["loaded"], true);
    let names: Vec<&str> = h["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    for stage in ["publish", "detect", "motion-0"] {
        assert!(names.contains(&stage), "{names:?}");
    }
    assert!(svc.supervisor().inject_panic("detect"));
    let h = wait_for(Duration::from_secs(10), "detect dead in health", || {
        let h = get(addr, "/api/health").json();
        (h["status"] == "degraded").then_some(h)
    });
    let detect = h["stages"].as_array().unwrap().iter().find(|s| s["name"] == "detect").unwrap().clone();
    assert_eq!(detect["state"], "dead", "{h}");
    assert_eq!(detect["panicked"], true);
    assert_eq!(h["model"]["loaded"], false, "a dead detect stage has no usable model");
    assert!(h["problems"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().contains("stage detect is dead")), "{h}");
    let m = get(addr, "/metrics").body;
    assert!(m.contains("analytics_stage_up{stage=\"detect\"} 0"), "{m}");
    // the API and the other stages go on
    assert!(svc.supervisor().inject_panic("motion-0"));
    health_ok(addr);
    svc.shutdown();
}

#[test]
fn oversized_frames_put_the_camera_in_error() {
    let _process = shared();
    let mut cfg = test_config("hostile-frames");
    cfg.max_frame_pixels = 1024; // the sample video is 768x576
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let video = media("vtest_pedestrians_768x576.mp4");
    let r = post_json(addr, "/api/cameras", &json!({"camera_id": "big", "stream_url": video.display().to_string()}));
    assert_eq!(r.status, 201, "{}", r.body);
    let cam = wait_for(Duration::from_secs(20), "camera in error", || {
        let c = get(addr, "/api/cameras/big").json();
        (c["state"] == "error").then_some(c)
    });
    assert!(cam["last_error"].as_str().unwrap().contains("MAX_FRAME_PIXELS"), "{cam}");
    assert_eq!(cam["frames_processed"], 0, "{cam}");
    let h = get(addr, "/api/health").json();
    assert_eq!(h["status"], "degraded");
    svc.shutdown();
}
