//! Evidence (DESIGN section 10): `latest.jpg` from any instance and only while someone looks,
//! object snapshots that the reference detector agrees with, the best frame really being the
//! best, plate crops that the OCR reads alone, and expiry. Real model, real Redis, real RTSP
//! and video; every event read is checked against its JSON Schema (`common::xrange`).

mod common;

use analytics_service::evidence::image::{decode_jpeg, thumbnail_rect, touches_edge};
use analytics_service::{AnprModels, Service};
use common::*;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use redis::Commands;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// A GET whose body is bytes (a JPEG): status, headers (lower-case names), body.
fn get_bytes(addr: SocketAddr, path: &str) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP reply");
    let head = String::from_utf8_lossy(&raw[..at]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, headers, raw[at + 4..].to_vec())
}

fn add_camera(addr: SocketAddr, id: &str, url: &str, extra: Value) {
    let mut params = json!({"max_fps": 5, "loop_file": false, "file_realtime": true});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let r = post_json(addr, "/api/cameras", &json!({"camera_id": id, "stream_url": url, "parameters": params}));
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Every event payload of the stream (schema-checked), in order.
fn events(conn: &mut redis::Connection, stream: &str) -> Vec<Value> {
    xrange(conn, stream).into_iter().map(|(_, f)| serde_json::from_str(&f["payload"]).unwrap()).collect()
}

fn age_of(ts: &str) -> Duration {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    SystemTime::now().duration_since(SystemTime::from(t)).unwrap_or_default()
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/// A normalised `bounding_box` in pixels of a `w` x `h` frame (x1, y1, x2, y2).
fn px(b: &Value, w: f32, h: f32) -> [f32; 4] {
    let f = |k: &str| b[k].as_f64().unwrap() as f32;
    [f("x") * w, f("y") * h, (f("x") + f("width")) * w, (f("y") + f("height")) * h]
}

/// Pixels where two same-sized pictures differ by more than 40 in some channel, inside `r`.
fn differing(a: &Mat, b: &Mat, r: Rect) -> usize {
    let mut n = 0;
    for y in r.y.max(0)..(r.y + r.height).min(a.rows()) {
        for x in r.x.max(0)..(r.x + r.width).min(a.cols()) {
            let (p, q) = (a.at_2d::<opencv::core::Vec3b>(y, x).unwrap(), b.at_2d::<opencv::core::Vec3b>(y, x).unwrap());
            if (0..3).any(|c| (p[c] as i32 - q[c] as i32).abs() > 40) {
                n += 1;
            }
        }
    }
    n
}

/// `latest.jpg`: 404 for an unknown camera, 503 before a frame, no JPEG encoding while nobody
/// asks; then from the owner *and* from a second instance, a frame at most 2 s old whose
/// `bbox=1` picture differs from the clean one along the boxes (and hardly elsewhere);
/// `height` scales.
#[test]
fn latest_jpg_from_any_instance_only_while_watched() {
    let clip = media("vtest_pedestrians_768x576.mp4");
    let rtsp = RtspServer::start(&[("walk", &clip)]);
    let cfg = test_config("latest");
    let a = start_service(cfg.clone());
    let b = start_service(analytics_service::Config { instance_id: "test-instance-b".into(), ..cfg.clone() });
    let (aa, ba) = (a.api_addr(), b.api_addr());
    assert_eq!(get_bytes(aa, "/api/cameras/nope/latest.jpg").0, 404);
    // a camera that never connects: 503 in the error shape
    add_camera(aa, "dead", &format!("rtsp://127.0.0.1:{}/none", free_port()), json!({}));
    wait_for(Duration::from_secs(10), "instance b to know camera dead", || (get(ba, "/api/cameras/dead").status == 200).then_some(()));
    let r = get(ba, "/api/cameras/dead/latest.jpg");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "unavailable", "{}", r.body);
    add_camera(aa, "walk", &rtsp.url("walk"), json!({"detection_classes": ["person"]}));
    wait_for(Duration::from_secs(60), "camera walk analysing frames", || {
        let c = get(aa, "/api/cameras/walk").json();
        (c["frames_processed"].as_u64().unwrap_or(0) > 10 || c["counters"]["frames_processed"].as_u64().unwrap_or(0) > 10).then_some(())
    });
    let encodes = |s: &Service| s.metrics.latest_frame_encodes();
    let before = (encodes(&a), encodes(&b));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((encodes(&a), encodes(&b)), before, "nobody asked: no JPEG encoding");
    assert_eq!(before, (0, 0));
    let owner = get(aa, "/api/cameras/walk").json()["owner"].as_str().unwrap().to_string();
    for (who, addr) in [("instance a", aa), ("instance b", ba)] {
        let t0 = Instant::now();
        let (status, h, clean) = get_bytes(addr, "/api/cameras/walk/latest.jpg");
        assert_eq!(status, 200, "{who}: {}", String::from_utf8_lossy(&clean));
        assert_eq!(h["content-type"], "image/jpeg");
        let age = age_of(&h["x-frame-timestamp"]);
        println!("{who} (owner {owner}): first latest.jpg in {:?}, frame {} is {age:?} old", t0.elapsed(), h["x-frame-number"]);
        assert!(age <= Duration::from_secs(2), "{who}: frame {age:?} old");
        let img = decode_jpeg(&clean).unwrap();
        assert_eq!((img.cols(), img.rows()), (768, 576));
        // bbox=1 on the same frame as a clean one: differs along the boxes, hardly elsewhere
        let mut checked = false;
        for _ in 0..40 {
            let (_, h1, clean) = get_bytes(addr, "/api/cameras/walk/latest.jpg");
            let (_, h2, boxed) = get_bytes(addr, "/api/cameras/walk/latest.jpg?bbox=1");
            assert!(age_of(&h2["x-frame-timestamp"]) <= Duration::from_secs(2));
            if h1["x-frame-number"] != h2["x-frame-number"] {
                continue;
            }
            let mut redis = redis_conn();
            let meta: String = redis.hget(format!("{}latest:walk", cfg.redis_key_prefix), "meta").unwrap_or_default();
            let meta: Value = serde_json::from_str(&meta).unwrap_or(Value::Null);
            if meta["frame_number"].as_u64().map(|n| n.to_string()).as_deref() != Some(h2["x-frame-number"].as_str())
                || meta["boxes"].as_array().is_none_or(|b| b.is_empty())
            {
                continue;
            }
            let (c, d) = (decode_jpeg(&clean).unwrap(), decode_jpeg(&boxed).unwrap());
            let whole = differing(&c, &d, Rect::new(0, 0, 768, 576));
            let mut near = 0;
            for bx in meta["boxes"].as_array().unwrap() {
                let p = px(&bx["bounding_box"], 768.0, 576.0);
                let edge = Rect::new(p[0] as i32 - 3, p[1] as i32 - 3, (p[2] - p[0]) as i32 + 7, 7);
                near += differing(&c, &d, edge);
            }
            println!("{who}: bbox=1 changes {whole} pixels, {near} along the boxes' top edges");
            assert!(near > 20, "{who}: the boxes are drawn");
            checked = true;
            break;
        }
        assert!(checked, "{who}: never got a clean and a boxed picture of one frame with boxes");
        let (status, _, small) = get_bytes(addr, "/api/cameras/walk/latest.jpg?height=240&quality=50&zones=1&motion=1");
        assert_eq!(status, 200);
        let small = decode_jpeg(&small).unwrap();
        assert_eq!((small.cols(), small.rows()), (320, 240));
    }
    assert!(encodes(&a) + encodes(&b) > 0, "asking made the owner encode");
    let r = get(aa, "/api/cameras/walk/latest.jpg?quality=0");
    assert_eq!(r.status, 422, "{}", r.body);
    a.shutdown();
    b.shutdown();
}

/// The first 20 s of the pedestrian sample (people walking), 768x576.
fn walking_clip() -> PathBuf {
    let src = media("vtest_pedestrians_768x576.mp4");
    ffmpeg_fixture(
        "vtest_20s.mp4",
        &["-i", src.to_str().unwrap(), "-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"],
    )
}

fn redis_bytes(conn: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    conn.get(key).unwrap()
}

/// Waits until `camera`'s file has played to its end, deletes it (its objects end) and
/// returns every event of the stream once the ends have come.
fn play_and_end(svc: &Service, stream: &str, camera: &str, timeout: Duration) -> Vec<Value> {
    let addr = svc.api_addr();
    wait_for(timeout, &format!("camera {camera} to reach the end of its file"), || {
        let c = get(addr, &format!("/api/cameras/{camera}")).json();
        (c["state"] == "reconnecting" && c["last_error"].as_str().is_some_and(|e| e.contains("end of file"))).then_some(())
    });
    let r = http(addr, "DELETE", &format!("/api/cameras/{camera}"), None, b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut conn = redis_conn();
    wait_for(Duration::from_secs(20), "every started object to end", || {
        let evs = events(&mut conn, stream);
        let of = |l: &str| evs.iter().filter(|e| e["event_type"] == "object" && e["lifecycle"] == l).count();
        (of("start") > 0 && of("start") == of("end")).then_some(evs)
    })
}

/// People walking (real video, model and Redis): every ended object has a snapshot whose
/// JPEGs decode and are in Redis; the reference detector (onnxruntime) finds an object of the
/// track's class in the full frame over the event's box (IoU >= 0.5), and in the thumbnail too;
/// the API serves both from the track id. Reports encode time and bytes per object.
#[test]
fn every_ended_object_has_a_snapshot_the_reference_detector_agrees_with() {
    let cfg = test_config("snapshots");
    let svc = start_service(cfg.clone());
    let addr = svc.api_addr();
    add_camera(addr, "walk", walking_clip().to_str().unwrap(), json!({"enable_motion_detection": false}));
    let evs = play_and_end(&svc, &cfg.redis_stream, "walk", Duration::from_secs(120));
    let ends: Vec<&Value> = evs.iter().filter(|e| e["event_type"] == "object" && e["lifecycle"] == "end").collect();
    let mut conn = redis_conn();
    let dir = std::env::temp_dir().join(format!("evidence_snapshots_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (i, e) in ends.iter().enumerate() {
        let s = &e["snapshot"];
        assert!(s.is_object(), "every ended object has a snapshot: {e}");
        let full = redis_bytes(&mut conn, s["key"].as_str().unwrap()).expect("the snapshot is in Redis");
        let thumb = redis_bytes(&mut conn, s["thumbnail_key"].as_str().unwrap()).expect("the thumbnail is in Redis");
        let img = decode_jpeg(&full).unwrap();
        assert_eq!((img.cols() as u64, img.rows() as u64), (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap()));
        let t = decode_jpeg(&thumb).unwrap();
        assert!(t.cols() == t.rows() && (160..=320).contains(&t.cols()), "thumbnail {}x{}", t.cols(), t.rows());
        let (f, tf) = (dir.join(format!("{i}_full.jpg")), dir.join(format!("{i}_thumb.jpg")));
        std::fs::write(&f, &full).unwrap();
        std::fs::write(&tf, &thumb).unwrap();
        files.push((f, tf));
    }
    let refs = reference_detections(&files.iter().flat_map(|(a, b)| [a.clone(), b.clone()]).collect::<Vec<_>>());
    let (mut full_ok, mut thumb_ok) = (0, 0);
    for (e, (f, tf)) in ends.iter().zip(&files) {
        let s = &e["snapshot"];
        let class = analytics_service::coco::COCO_CLASSES.iter().position(|c| *c == e["class_name"].as_str().unwrap()).unwrap();
        let (w, h) = (s["width"].as_f64().unwrap() as f32, s["height"].as_f64().unwrap() as f32);
        let b = px(&s["bounding_box"], w, h);
        let best = refs[f.to_str().unwrap()].iter().filter(|d| d.0 == class).map(|d| iou(d.2, b)).fold(0.0, f32::max);
        full_ok += usize::from(best >= 0.5);
        // the box in thumbnail pixels
        let r = thumbnail_rect(&b, w as i32, h as i32);
        let k = decode_jpeg(&std::fs::read(tf).unwrap()).unwrap().cols() as f32 / r.width as f32;
        let tb = [(b[0] - r.x as f32) * k, (b[1] - r.y as f32) * k, (b[2] - r.x as f32) * k, (b[3] - r.y as f32) * k];
        let tbest = refs[tf.to_str().unwrap()].iter().filter(|d| d.0 == class).map(|d| iou(d.2, tb)).fold(0.0, f32::max);
        thumb_ok += usize::from(tbest >= 0.5);
        if best < 0.5 || tbest < 0.5 {
            println!("{}: reference IoU {best:.2} in the frame, {tbest:.2} in the thumbnail", e["track_id"]);
        }
    }
    // what Redis holds: every snapshot and thumbnail still there (superseded ones no event named are deleted)
    let kept: Vec<String> = conn.keys(format!("{}*humbnail:*", cfg.redis_key_prefix)).unwrap();
    let kept_full: Vec<String> = conn.keys(format!("{}snapshot:*", cfg.redis_key_prefix)).unwrap();
    let held: u64 = kept.iter().chain(&kept_full).map(|k| conn.strlen::<_, u64>(k).unwrap()).sum();
    println!(
        "Redis holds {} snapshots + {} thumbnails, {held} bytes: {} bytes per ended object",
        kept_full.len(),
        kept.len(),
        held / ends.len().max(1) as u64
    );
    let updates = evs.iter().filter(|e| e["update_reason"] == "snapshot").count();
    println!("{updates} update(s) with reason snapshot");
    let (n, bytes) = svc.metrics.snapshots();
    let enc = &svc.metrics.snapshot_encode_seconds;
    println!(
        "{} ended objects; reference agrees on {full_ok} full frames and {thumb_ok} thumbnails; {n} snapshots written, {} bytes each (full + thumbnail), encode mean {:.1} ms",
        ends.len(),
        bytes / n.max(1),
        enc.mean() * 1000.0
    );
    assert!(ends.len() >= 5, "people walk through the clip");
    assert_eq!(full_ok, ends.len(), "the reference detector finds each object in its snapshot");
    assert!(thumb_ok * 10 >= ends.len() * 9, "and in (nearly) every thumbnail: {thumb_ok} of {}", ends.len());
    // the API serves them from the track id, raw or %2F-escaped
    let tid = ends[0]["track_id"].as_str().unwrap();
    for path in
        [format!("/api/objects/{tid}/snapshot.jpg?bbox=1&crop=1"), format!("/api/objects/{}/thumbnail.jpg", tid.replace('/', "%2F"))]
    {
        let (status, h, body) = get_bytes(addr, &path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        assert_eq!(h["content-type"], "image/jpeg");
        decode_jpeg(&body).unwrap();
    }
    assert_eq!(get(addr, "/api/objects/walk/0-0/snapshot.jpg").status, 404);
    // the Django-side consumer stores each object's thumbnail next to the event
    let out = std::process::Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/consumer.py"))
        .env("REDIS_HOST", redis_host())
        .env("REDIS_PORT", redis_port().to_string())
        .env("REDIS_STREAM", &cfg.redis_stream)
        .args(["--group", "evidence", "--from-start", "--max-seconds", "5", "--images"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for e in &ends {
        let thumb = dir.join(format!("{}.thumb.jpg", e["event_id"].as_str().unwrap()));
        let stored = std::fs::read(&thumb).unwrap_or_else(|_| panic!("consumer.py stored {}", thumb.display()));
        decode_jpeg(&stored).unwrap();
        assert!(dir.join(format!("{}.json", e["event_id"].as_str().unwrap())).is_file());
    }
    let _ = std::fs::remove_dir_all(&dir);
    svc.shutdown();
}

/// A person coming closer (the bus photo zoomed in, 10 fps): the snapshot's box is among the
/// largest of its track (boxes that touch the frame's edge aside, which the rule never takes).
#[test]
fn the_best_frame_is_really_the_best() {
    let bus = media("bus.jpg");
    let clip = still_clip(
        "bus_approach_8s.mp4",
        &bus,
        "scale=810:1080,zoompan=z='1+0.05*on/10':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s=540x720:fps=10",
        "8",
        &[],
    );
    let cfg = test_config("bestframe");
    let svc = start_service(cfg.clone());
    add_camera(
        svc.api_addr(),
        "near",
        clip.to_str().unwrap(),
        json!({"enable_motion_detection": false, "max_fps": 10, "detection_classes": ["person"]}),
    );
    let evs = play_and_end(&svc, &cfg.redis_stream, "near", Duration::from_secs(90));
    let mut checked = 0;
    for end in evs.iter().filter(|e| e["event_type"] == "object" && e["lifecycle"] == "end") {
        let tid = end["track_id"].as_str().unwrap();
        let (w, h) = (end["width"].as_f64().unwrap() as f32, end["height"].as_f64().unwrap() as f32);
        let areas: Vec<f32> = evs
            .iter()
            .filter(|e| e["event_type"] == "detection")
            .flat_map(|e| e["detections"].as_array().unwrap().iter())
            .filter(|d| d["track_id"] == tid)
            .map(|d| px(&d["bounding_box"], w, h))
            .filter(|b| !touches_edge(b, w, h))
            .map(|b| (b[2] - b[0]) * (b[3] - b[1]))
            .collect();
        if areas.len() < 20 {
            continue; // a short track says little
        }
        let s = px(&end["snapshot"]["bounding_box"], w, h);
        let area = (s[2] - s[0]) * (s[3] - s[1]);
        let max = areas.iter().copied().fold(0.0, f32::max);
        let first = areas[0];
        println!("{tid}: snapshot box {area:.0} px, track's boxes {first:.0} .. {max:.0} px ({} sightings)", areas.len());
        assert!(area >= 0.8 * max, "{tid}: the snapshot's box ({area:.0}) is among the largest ({max:.0})");
        checked += 1;
    }
    assert!(checked >= 1, "at least one person tracked long enough");
    svc.shutdown();
}

/// Plates: each `anpr` event's plate crop is in Redis, and the OCR model alone reads the same
/// text from it.
#[test]
fn each_plate_crop_reads_as_its_event() {
    let cfg = test_config("platecrops");
    let svc = start_service(cfg.clone());
    add_camera(svc.api_addr(), "gate", plate_video().to_str().unwrap(), json!({"enable_anpr": true, "max_fps": 10}));
    let evs = play_and_end(&svc, &cfg.redis_stream, "gate", Duration::from_secs(90));
    let mut models = AnprModels::load(&cfg).expect("ANPR models (scripts/setup.sh)");
    let rules = analytics_service::pipeline::anpr::text::PlateRules {
        min_len: cfg.anpr_min_plate_len,
        max_len: cfg.anpr_max_plate_len,
        format: cfg.anpr_plate_format.clone(),
    };
    let mut conn = redis_conn();
    let plates: Vec<&Value> = evs.iter().filter(|e| e["event_type"] == "anpr").collect();
    assert!(!plates.is_empty(), "the plate is read");
    for e in plates {
        let key = e["plate_image_key"].as_str().expect("every anpr event names its plate crop");
        let jpeg = redis_bytes(&mut conn, key).expect("the plate crop is in Redis");
        let img = decode_jpeg(&jpeg).unwrap();
        let raw = models.reader.read(&img).unwrap();
        let read = analytics_service::pipeline::anpr::text::normalise(&raw, &rules).map(|r| r.text);
        println!("plate crop {}x{} ({} bytes) reads {read:?}; event says {}", img.cols(), img.rows(), jpeg.len(), e["anpr_result"]["text"]);
        assert_eq!(read.as_deref(), e["anpr_result"]["text"].as_str());
    }
    svc.shutdown();
}

/// With `SNAPSHOT_TTL_S=2`, the snapshot keys are gone after it and the API answers 404.
#[test]
fn snapshots_expire() {
    let cfg = analytics_service::Config { snapshot_ttl: Duration::from_secs(2), ..test_config("expiry") };
    let svc = start_service(cfg.clone());
    let addr = svc.api_addr();
    add_camera(addr, "bus", static_clip().to_str().unwrap(), json!({"enable_motion_detection": false}));
    let mut conn = redis_conn();
    let snap = wait_for(Duration::from_secs(60), "an object event with a snapshot", || {
        events(&mut conn, &cfg.redis_stream).into_iter().find(|e| e["event_type"] == "object" && e["snapshot"].is_object())
    });
    let r = http(addr, "DELETE", "/api/cameras/bus", None, b"");
    assert_eq!(r.status, 200);
    let keys = [snap["snapshot"]["key"].as_str().unwrap().to_string(), snap["snapshot"]["thumbnail_key"].as_str().unwrap().to_string()];
    let tid = snap["track_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(3500));
    for k in &keys {
        assert!(!conn.exists::<_, bool>(k).unwrap(), "{k} expired");
    }
    assert_eq!(get(addr, &format!("/api/objects/{tid}/snapshot.jpg")).status, 404);
    assert_eq!(get(addr, &format!("/api/objects/{tid}/thumbnail.jpg")).status, 404);
    svc.shutdown();
}
