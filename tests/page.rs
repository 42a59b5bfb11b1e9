//! The operator page (docs/operator-page.md), in a real browser: the service with a real Redis
//! and a real RTSP camera on the sample video, and headless Debian Chromium driven by Selenium
//! (`tests/page_flow.py`, both installed by scripts/setup.sh). Screenshots of every step go to
//! `$PAGE_ARTEFACTS` (default: a fresh folder under the temp dir, printed); with
//! `UPDATE_SCREENSHOT=1` the zone step's picture, palette-reduced, also replaces
//! `docs/images/operator-page.png` (the README's).
//!
//! Also, without a browser: the page's headers (CSP, nosniff, no token needed) and
//! `GET /api/events` (token, newest first, per camera, bounded `count`).

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::time::Instant;

const TOKEN: &str = "page-test-token-1234";

fn authed(addr: std::net::SocketAddr, method: &str, path: &str, body: Option<&serde_json::Value>) -> HttpReply {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = format!("Bearer {TOKEN}");
    http_with(addr, method, path, &[("Authorization", &auth), ("Content-Type", "application/json")], body.as_bytes())
}

fn artefacts_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("PAGE_ARTEFACTS").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        std::env::temp_dir().join(format!("analytics-service-page-{stamp}-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The browser flow of the issue: token, running row, live image, a zone drawn and saved (and
/// checked through the API), a bad URL's message, a delete, and no HTML payload ever running.
#[test]
fn operator_page_in_a_real_browser() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(std::path::Path::new(tool).is_file(), "{tool} is missing: run scripts/setup.sh (apt: chromium chromium-driver)");
    }
    let video = media("vtest_pedestrians_768x576.mp4");
    let rtsp = RtspServer::start(&[("walk", video.as_path())]);
    let mut cfg = test_config("page");
    cfg.api_token = Some(TOKEN.into());
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let cams = json!([
        {"camera_id": "walk", "stream_url": rtsp.url("walk"), "parameters": {"max_fps": 5, "detection_classes": ["person"]}},
        {"camera_id": "page-spare", "status": "inactive", "stream_url": rtsp.url("walk")}
    ]);
    let r = authed(addr, "POST", "/api/cameras", Some(&cams));
    assert_eq!(r.status, 201, "{}", r.body);

    let dir = artefacts_dir();
    eprintln!("page: screenshots in {}", dir.display());
    let t0 = Instant::now();
    let readme_shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images/operator-page.png");
    let mut flow = Command::new(python());
    flow.arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page_flow.py"))
        .args(["--url", &format!("http://{addr}/"), "--token", TOKEN, "--camera", "walk", "--delete-camera", "page-spare"])
        .arg("--artefacts")
        .arg(&dir)
        // Selenium must use the given driver, never download one
        .env("SE_OFFLINE", "true");
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        flow.arg("--readme-shot").arg(&readme_shot);
    }
    let out = flow.output().expect("the venv's python (scripts/setup.sh installs selenium into it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser flow failed; screenshots in {}", dir.display());
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .expect("the flow prints its RESULT line");
    eprintln!(
        "page: flow {:.1} s (browser process {:.1} s), Chromium {}, ChromeDriver {}",
        result["flow_s"].as_f64().unwrap(),
        t0.elapsed().as_secs_f64(),
        result["browser"],
        result["driver"]
    );

    // what the browser saved is what the registry holds: the clicked polygon, the name as text
    let cam = svc.registry().get("walk").expect("walk is registered");
    let zones = &cam.config.parameters.roi_zones;
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0].name, "<img src=x onerror=window.__xss=1>");
    let clicked = result["clicked"].as_array().unwrap();
    assert_eq!(zones[0].points.len(), clicked.len());
    for (p, c) in zones[0].points.iter().zip(clicked) {
        let (cx, cy) = (c[0].as_f64().unwrap() as f32, c[1].as_f64().unwrap() as f32);
        assert!((p[0] - cx).abs() <= 0.02 && (p[1] - cy).abs() <= 0.02, "saved {p:?}, clicked ({cx}, {cy})");
    }
    // the save kept every other parameter as it was
    assert_eq!(cam.config.parameters.max_fps, 5.0);
    assert_eq!(cam.config.parameters.detection_classes, ["person"]);
    assert_eq!(cam.config.stream_url.expose(), rtsp.url("walk"));
    assert!(svc.registry().get("page-spare").is_none(), "the page deleted page-spare");

    let size = std::fs::metadata(&readme_shot).map(|m| m.len()).unwrap_or(0);
    assert!(size < 300 * 1024, "{} is {size} bytes; keep the README's picture under 300 KB", readme_shot.display());
    svc.shutdown();
}

/// The page needs no token and carries its policy; the data does need one. `GET /api/events`
/// reads the stream newest first, per camera, with a bounded `count`.
#[test]
fn page_headers_and_the_events_endpoint() {
    let mut cfg = test_config("page-events");
    cfg.api_token = Some(TOKEN.into());
    let stream = cfg.redis_stream.clone();
    let svc = start_service(cfg);
    let addr = svc.api_addr();

    for path in ["/", "/assets/app.js", "/assets/app.css"] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path} needs no token");
        let csp = &r.headers["content-security-policy"];
        assert!(csp.contains("script-src 'self'") && csp.contains("object-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    assert!(get(addr, "/").headers["content-type"].starts_with("text/html"));
    assert!(get(addr, "/assets/app.js").headers["content-type"].starts_with("text/javascript"));
    assert_eq!(get(addr, "/assets/nope.js").status, 401, "anything else needs the token");
    assert_eq!(get(addr, "/api/events").status, 401);
    assert_eq!(http(addr, "POST", "/", Some("application/json"), b"{}").status, 401);

    // events written as the publisher writes them: fields plus the JSON payload
    let mut conn = redis_conn();
    for i in 0..30 {
        let cam = if i % 3 == 0 { "a" } else { "b" };
        let payload = json!({"event_type": "motion", "camera_id": cam, "n": i}).to_string();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("event_type")
            .arg("motion")
            .arg("camera_id")
            .arg(cam)
            .arg("payload")
            .arg(payload)
            .query(&mut conn)
            .unwrap();
    }
    let r = authed(addr, "GET", "/api/events?camera_id=a&count=4", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let ns: Vec<i64> = v["events"].as_array().unwrap().iter().map(|e| e["event"]["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [27, 24, 21, 18], "newest first, camera a only");
    assert!(v["events"][0]["id"].as_str().unwrap().contains('-'), "the stream entry id");
    let all = authed(addr, "GET", "/api/events?count=100", None).json();
    assert_eq!(all["events"].as_array().unwrap().len(), 30);
    assert_eq!(all["exhausted"], true);
    // camera a's events behind 1200 newer ones of c: found across pages of the stream
    let mut pipe = redis::pipe();
    for i in 0..1200 {
        pipe.cmd("XADD").arg(&stream).arg("*").arg("camera_id").arg("c").arg("payload").arg(json!({"n": 1000 + i}).to_string()).ignore();
    }
    let () = pipe.query(&mut conn).unwrap();
    let v = authed(addr, "GET", "/api/events?camera_id=a&count=20", None).json();
    let ns: Vec<i64> = v["events"].as_array().unwrap().iter().map(|e| e["event"]["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [27, 24, 21, 18, 15, 12, 9, 6, 3, 0], "{v}");
    assert_eq!((v["scanned"].as_u64(), v["exhausted"].as_bool()), (Some(1230), Some(true)));
    let r = authed(addr, "GET", "/api/events?camera_id=nobody", None);
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 0);
    for bad in ["count=0", "count=201", "count=1e9", "count=-1", "count=abc", "camera_id=%3Cx%3E"] {
        let r = authed(addr, "GET", &format!("/api/events?{bad}"), None);
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        let path = r.json()["details"][0]["path"].as_str().unwrap().to_string();
        assert_eq!(path, bad.split('=').next().unwrap(), "{bad}");
    }
    assert_eq!(authed(addr, "POST", "/api/events", Some(&json!({}))).status, 405);
    svc.shutdown();
}

/// A camera posted back with its masked URL (what GET shows) keeps its real URL: the page
/// edits a parameter without knowing the password.
#[test]
fn a_masked_url_sent_back_keeps_the_stored_one() {
    let svc = start_service(test_config("page-masked"));
    let addr = svc.api_addr();
    let cam = json!({"camera_id": "m", "status": "inactive", "stream_url": "rtsp://admin:s3cret@10.0.0.9/live"});
    assert_eq!(post_json(addr, "/api/cameras", &cam).status, 201);
    let shown = get(addr, "/api/cameras/m").json();
    assert_eq!(shown["stream_url"], "rtsp://admin:***@10.0.0.9/live");
    let mut back = shown.clone();
    back["parameters"]["max_fps"] = json!(7);
    let body = json!({"camera_id": "m", "status": "inactive", "stream_url": shown["stream_url"], "parameters": back["parameters"]});
    let r = post_json(addr, "/api/cameras", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let stored = svc.registry().get("m").unwrap().config;
    assert_eq!(stored.stream_url.expose(), "rtsp://admin:s3cret@10.0.0.9/live");
    assert_eq!(stored.parameters.max_fps, 7.0);
    // a new password is taken as sent
    let body = json!({"camera_id": "m", "status": "inactive", "stream_url": "rtsp://admin:other@10.0.0.9/live"});
    assert_eq!(post_json(addr, "/api/cameras", &body).status, 200);
    assert_eq!(svc.registry().get("m").unwrap().config.stream_url.expose(), "rtsp://admin:other@10.0.0.9/live");
    svc.shutdown();
}
