//! Several real service processes on one real redis-server (docs/architecture.md, "The contract in one page"): restart
//! without a POST, 9 cameras on 3 instances, `kill -9` and hand-over, a newcomer taking its
//! share, delete through any instance, Redis killed and restarted mid-run, two writers racing.
//!
//! Each test owns its redis-server (a free port, no persistence) and runs the binary with
//! `LEASE_TTL_S=2`, so a hand-over is due within 2 s + a few. Cameras play a static clip at
//! 2 fps with detection on every frame: every frame gives a `detection` event whose
//! `instance_id` says who processed it. The tests run one at a time (they are CPU-heavy).
//!
//!     cargo test --test cluster -- --nocapture --test-threads=1

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

const TTL_S: f64 = 2.0;
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One `analytics-service` process.
struct Instance {
    id: String,
    addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

/// What the instances of one test share: their Redis, key prefix and stream.
struct Site {
    redis_port: u16,
    prefix: String,
    stream: String,
}

impl Site {
    fn new(redis: &OwnRedis, name: &str) -> Site {
        Site { redis_port: redis.port, prefix: format!("{}:", unique_stream(name)), stream: unique_stream(name) }
    }

    fn start(&self, id: &str) -> Instance {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("{}-{id}.log", self.stream.replace(':', "_")));
        let child = Command::new(env!("CARGO_BIN_EXE_analytics-service"))
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", self.redis_port.to_string())
            .env("REDIS_KEY_PREFIX", &self.prefix)
            .env("REDIS_STREAM", &self.stream)
            .env("INSTANCE_ID", id)
            .env("LEASE_TTL_S", TTL_S.to_string())
            .env("STREAM_FILE_ROOT", "/")
            .env("YOLO_MODEL", model("yolov8n.onnx"))
            .env("ANPR_PLATE_MODEL", "/nonexistent/anpr-off.onnx") // ANPR off: not under test
            .env("MOTION_WORKERS", "1")
            .env("LOG_LEVEL", "INFO")
            .current_dir(std::env::temp_dir()) // no .env of the repository
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("service binary starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for(Duration::from_secs(30), &format!("instance {id}'s API"), || std::net::TcpStream::connect(addr).ok());
        Instance { id: id.to_string(), addr, child: Some(child), log }
    }

    fn redis(&self) -> redis::Connection {
        redis_conn_at(self.redis_port)
    }

    /// `detection` events in the stream: (camera, instance, capture time, event id).
    fn events(&self) -> Vec<(String, String, SystemTime, String)> {
        let mut out = Vec::new();
        for (_, fields) in xrange(&mut self.redis(), &self.stream) {
            let p: Value = serde_json::from_str(&fields["payload"]).unwrap();
            if p["event_type"] != "detection" {
                continue;
            }
            let at = analytics_service::time::parse_rfc3339_millis(p["timestamp"].as_str().unwrap()).unwrap();
            out.push((
                p["camera_id"].as_str().unwrap().to_string(),
                p["instance_id"].as_str().unwrap().to_string(),
                at,
                p["event_id"].as_str().unwrap().to_string(),
            ));
        }
        out
    }
}

impl Instance {
    /// `GET /api/cameras`: camera id -> the listing's object.
    fn cameras(&self) -> BTreeMap<String, Value> {
        let r = get(self.addr, "/api/cameras");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["cameras"].as_array().unwrap().iter().map(|c| (c["camera_id"].as_str().unwrap().to_string(), c.clone())).collect()
    }

    /// Cameras this instance runs itself, with frames flowing.
    fn running_here(&self) -> BTreeSet<String> {
        self.cameras().into_iter().filter(|(_, c)| c["owner"] == self.id.as_str() && c["state"] == "running").map(|(id, _)| id).collect()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and the exit status.
    fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        wait_for(Duration::from_secs(20), "exit after SIGTERM", || c.try_wait().unwrap()).code()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn camera(id: &str) -> Value {
    json!({
        "camera_id": id,
        "stream_url": static_clip().to_str().unwrap(),
        "parameters": {"max_fps": 2, "loop_file": true, "enable_motion_detection": false}
    })
}

fn post(inst: &Instance, body: &Value) -> HttpReply {
    post_json(inst.addr, "/api/cameras", body)
}

/// Waits until each camera is running on exactly one of `instances` (by their own listings);
/// returns camera -> instance id and how long it took.
fn wait_spread(instances: &[&Instance], cameras: usize, limit: Duration, what: &str) -> (BTreeMap<String, String>, Duration) {
    let t0 = Instant::now();
    let owners = wait_for(limit, what, || {
        let mut owners = BTreeMap::new();
        for i in instances {
            for cam in i.running_here() {
                if owners.insert(cam.clone(), i.id.clone()).is_some() {
                    return None;
                }
            }
        }
        (owners.len() == cameras).then_some(owners)
    });
    (owners, t0.elapsed())
}

fn per_instance(owners: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for o in owners.values() {
        *n.entry(o.clone()).or_default() += 1;
    }
    n
}

/// For each camera, the longest time two instances both produced events for it: the last
/// event of the previous owner minus the first event of the next one (capture times).
fn worst_overlap(events: &[(String, String, SystemTime, String)]) -> Duration {
    let mut by_cam: BTreeMap<&str, Vec<(SystemTime, &str)>> = BTreeMap::new();
    for (cam, inst, at, _) in events {
        by_cam.entry(cam).or_default().push((*at, inst));
    }
    let mut worst = Duration::ZERO;
    for list in by_cam.values_mut() {
        list.sort();
        // first and last event of each instance's stint
        let mut spans: BTreeMap<&str, (SystemTime, SystemTime)> = BTreeMap::new();
        for (at, inst) in list.iter() {
            let e = spans.entry(inst).or_insert((*at, *at));
            e.1 = *at;
        }
        for (a, (a0, a1)) in &spans {
            for (b, (b0, _)) in &spans {
                if a != b && b0 >= a0 && b0 < a1 {
                    worst = worst.max(a1.duration_since(*b0).unwrap());
                }
            }
        }
    }
    worst
}

#[test]
fn a_restarted_instance_resumes_its_cameras_without_a_post() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = OwnRedis::start(free_port());
    let site = Site::new(&redis, "cluster-restart");
    let mut a = site.start("a");
    assert_eq!(post(&a, &json!([camera("door"), camera("yard")])).status, 201);
    wait_spread(&[&a], 2, Duration::from_secs(20), "both cameras running on a");
    let versions: BTreeMap<String, Value> = a.cameras().into_iter().map(|(id, c)| (id, c["version"].clone())).collect();

    // a clean stop gives the leases back; the same instance comes back and resumes at once
    assert_eq!(a.stop(), Some(0));
    assert!(a.log().contains("gave back 2 lease(s)"), "{}", a.log());
    let t = Instant::now();
    let a2 = site.start("a");
    let (_, took) = wait_spread(&[&a2], 2, Duration::from_secs(20), "cameras resumed after restart");
    println!(
        "restart (SIGTERM, same INSTANCE_ID): cameras running again {:?} after the new process started ({took:?} after its API opened)",
        t.elapsed()
    );
    let again: BTreeMap<String, Value> = a2.cameras().into_iter().map(|(id, c)| (id, c["version"].clone())).collect();
    assert_eq!(again, versions, "same configuration versions: nothing re-registered");

    // kill -9 and a new instance with another id: the leases must lapse first
    let mut a2 = a2;
    a2.kill9();
    let t = Instant::now();
    let b = site.start("b");
    let (owners, _) = wait_spread(&[&b], 2, Duration::from_secs(20), "cameras taken over by b");
    let took = t.elapsed();
    println!("kill -9, new instance b: cameras running on b {took:?} after the kill (LEASE_TTL_S={TTL_S})");
    assert!(owners.values().all(|o| o == "b"));
    assert!(took <= Duration::from_secs_f64(TTL_S + 8.0), "took {took:?}");
}

#[test]
fn three_instances_share_nine_cameras_hand_over_and_rebalance() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = OwnRedis::start(free_port());
    let site = Site::new(&redis, "cluster-share");
    let a = site.start("a");
    let mut b = site.start("b");
    let c = site.start("c");
    std::thread::sleep(Duration::from_secs_f64(TTL_S / 2.0)); // all three have heartbeated
    let nine: Vec<Value> = (1..=9).map(|i| camera(&format!("cam{i}"))).collect();
    let r = post(&a, &json!(nine));
    assert_eq!(r.status, 201, "{}", r.body);
    let (owners, took) = wait_spread(&[&a, &b, &c], 9, Duration::from_secs(30), "9 cameras spread over a, b, c");
    let spread = per_instance(&owners);
    println!("9 cameras on 3 instances: {spread:?} after {took:?}");
    assert_eq!(spread.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);

    // every instance lists every camera with its owner
    wait_for(Duration::from_secs(10), "b lists the owners of all nine", || {
        let listed: BTreeMap<String, String> =
            b.cameras().into_iter().filter_map(|(id, c)| c["owner"].as_str().map(|o| (id, o.to_string()))).collect();
        (listed == owners).then_some(())
    });

    // events from exactly one instance per camera
    std::thread::sleep(Duration::from_secs(3));
    let events = site.events();
    for (cam, owner) in &owners {
        let from: BTreeSet<&str> = events.iter().filter(|e| &e.0 == cam).map(|e| e.1.as_str()).collect();
        assert_eq!(from, BTreeSet::from([owner.as_str()]), "events of {cam}");
    }

    // kill -9 b: a and c take its three cameras within the TTL + a few seconds
    let orphans: Vec<String> = owners.iter().filter(|(_, o)| *o == "b").map(|(c, _)| c.clone()).collect();
    let t = Instant::now();
    b.kill9();
    let (owners, _) = wait_spread(&[&a, &c], 9, Duration::from_secs(30), "b's cameras taken over");
    let handover = t.elapsed();
    println!(
        "kill -9 of b ({orphans:?}): all 9 running on a and c {handover:?} later (LEASE_TTL_S={TTL_S}); spread {:?}",
        per_instance(&owners)
    );
    assert!(handover <= Duration::from_secs_f64(TTL_S + 5.0), "hand-over took {handover:?}");
    assert!(per_instance(&owners).values().all(|&n| n == 4 || n == 5));

    // a newcomer takes its share, without two instances on one camera
    let t = Instant::now();
    let d = site.start("d");
    let (owners, _) = wait_for(Duration::from_secs(30), "d takes its share", || {
        let (o, took) = wait_spread(&[&a, &c, &d], 9, Duration::from_secs(30), "spread");
        (per_instance(&o).values().copied().collect::<Vec<_>>() == vec![3, 3, 3]).then_some((o, took))
    });
    println!("d joined: 3/3/3 again {:?} after it started; spread {:?}", t.elapsed(), per_instance(&owners));
    std::thread::sleep(Duration::from_secs(2));
    let overlap = worst_overlap(&site.events());
    println!("longest time two instances produced events for one camera: {overlap:?}");
    assert!(overlap <= Duration::from_millis(1500), "two instances ran one camera for {overlap:?}");

    // delete through an instance that does not run the camera: its owner stops it
    let (victim, owner) = owners.iter().find(|(_, o)| *o != "a").map(|(c, o)| (c.clone(), o.clone())).unwrap();
    let owner_inst = [&c, &d].into_iter().find(|i| i.id == owner).unwrap();
    let r = http(a.addr, "DELETE", &format!("/api/cameras/{victim}"), None, b"");
    assert_eq!(r.status, 200);
    let t = Instant::now();
    wait_for(Duration::from_secs(5), "the owner forgets the deleted camera", || {
        (get(owner_inst.addr, &format!("/api/cameras/{victim}")).status == 404).then_some(())
    });
    println!("DELETE {victim} through a: its owner {owner} stopped it {:?} later", t.elapsed());
    let deleted_at = SystemTime::now();
    std::thread::sleep(Duration::from_secs(2));
    let late = site.events().into_iter().filter(|e| e.0 == victim && e.2 > deleted_at).count();
    assert_eq!(late, 0, "events of {victim} after its owner stopped it");
}

#[test]
fn redis_killed_and_restarted_mid_run_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let site = Site::new(&redis, "cluster-redis");
    let a = site.start("a");
    let b = site.start("b");
    std::thread::sleep(Duration::from_secs_f64(TTL_S / 2.0));
    assert_eq!(post(&a, &json!([camera("r1"), camera("r2"), camera("r3"), camera("r4")])).status, 201);
    let (owners, _) = wait_spread(&[&a, &b], 4, Duration::from_secs(30), "4 cameras on a and b");

    redis.kill();
    let down_at = SystemTime::now();
    std::thread::sleep(Duration::from_secs_f64(TTL_S * 2.0)); // longer than a lease
                                                              // reads answer from the last known state; writes say why they cannot
    assert_eq!(a.cameras().len(), 4);
    let r = post(&b, &json!([camera("r5")]));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "unavailable");
    assert!(r.json()["message"].as_str().unwrap().contains("Redis is unreachable"), "{}", r.json());
    assert_eq!(http(a.addr, "DELETE", "/api/cameras/r1", None, b"").status, 503);
    // cameras keep running on their owners
    let still = wait_spread(&[&a, &b], 4, Duration::from_secs(5), "cameras still running").0;
    assert_eq!(still, owners, "nobody stopped or moved a camera while Redis was away");
    let health = get(a.addr, "/api/health").json();
    assert_eq!(health["status"], "degraded");

    let _redis = OwnRedis::start(port); // empty: no persistence
    let up_at = SystemTime::now();
    let mut conn = site.redis();
    wait_for(Duration::from_secs(10), "the registry written back into the empty Redis", || {
        let n: usize = redis::cmd("HLEN").arg(format!("{}cameras", site.prefix)).query(&mut conn).ok()?;
        (n == 4).then_some(())
    });
    std::thread::sleep(Duration::from_secs_f64(TTL_S * 2.0));
    let after = wait_spread(&[&a, &b], 4, Duration::from_secs(10), "cameras after Redis returned").0;
    assert_eq!(after, owners, "each owner re-took its own leases");
    let events = site.events();
    let during = events.iter().filter(|e| e.2 > down_at && e.2 < up_at).count();
    println!(
        "Redis down {:?}: {during} detection events captured meanwhile reached the stream after it returned",
        up_at.duration_since(down_at).unwrap()
    );
    assert!(during >= 4 * 2, "events captured while Redis was down were buffered and delivered: {during}");
    let ids: BTreeSet<&str> = events.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "no event delivered twice");
    assert!(events.iter().filter(|e| e.2 > up_at).all(|e| owners[&e.0] == e.1), "events from the owners only");
    // and the registry is writable again
    assert_eq!(post(&b, &json!([camera("r5")])).status, 201);
}

#[test]
fn two_writers_updating_one_camera_at_once_lose_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = OwnRedis::start(free_port());
    let site = Site::new(&redis, "cluster-race");
    let a = site.start("a");
    let b = site.start("b");
    let mut cam = camera("contested");
    cam["status"] = json!("inactive"); // the configuration is under test, not the stream
    assert_eq!(post(&a, &json!([cam.clone()])).status, 201);
    const N: usize = 40;
    let writes: Vec<(f64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = [(&a, 0.2), (&b, 0.6)]
            .into_iter()
            .map(|(inst, base)| {
                let cam = cam.clone();
                s.spawn(move || {
                    (0..N)
                        .map(|i| {
                            let mut c = cam.clone();
                            let conf = base + i as f64 * 0.005;
                            c["parameters"]["confidence_threshold"] = json!(conf);
                            let r = post(inst, &json!([c]));
                            assert_eq!(r.status, 200, "{}", r.body);
                            let v = &r.json()["cameras"][0];
                            assert_eq!(v["result"], "updated");
                            (conf, v["version"].as_u64().unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let versions: BTreeSet<u64> = writes.iter().map(|w| w.1).collect();
    assert_eq!(versions.len(), 2 * N, "every write got its own version: none was lost or merged");
    let (last_conf, last_version) = writes.iter().max_by_key(|w| w.1).copied().unwrap();
    for inst in [&a, &b] {
        wait_for(Duration::from_secs(5), "both instances converge on the last write", || {
            let c = inst.cameras().remove("contested")?;
            (c["version"] == last_version && (c["parameters"]["confidence_threshold"].as_f64()? - last_conf).abs() < 1e-6).then_some(())
        });
    }
    println!(
        "{} concurrent updates through two instances: versions {:?}..={last_version}, all distinct; both instances show the last",
        2 * N,
        versions.first()
    );
}

/// The ANPR dedupe window is kept in Redis, so a camera that moves to another instance does not
/// republish a plate within the window; with Redis gone the read is published (at least once).
#[test]
fn anpr_dedupe_window_is_shared_across_instances() {
    use analytics_service::pipeline::anpr::dedupe::{Dedupe, SharedDedupe, SystemClock};
    use analytics_service::pipeline::publish::RedisTarget;
    let mut redis = OwnRedis::start(free_port());
    let target = |port| RedisTarget { host: "127.0.0.1".into(), port, db: 0, password: None };
    let window = Duration::from_secs(30);
    let prefix = format!("{}:", unique_stream("cluster-dedupe"));
    let on = |inst: &str, port| Dedupe::new(window, SystemClock).with_shared(SharedDedupe::new(target(port), &prefix, inst));
    let mut a = on("a", redis.port);
    assert!(a.should_publish("gate", "5AU5341"), "first read of the plate");
    // the camera moves to instance b (a fresh memory): the plate is not news
    let mut b = on("b", redis.port);
    assert!(!b.should_publish("gate", "5AU5341"), "published by a within the window");
    assert!(b.should_publish("gate", "7B12345"), "another plate");
    assert!(b.should_publish("yard", "5AU5341"), "the same plate on another camera");
    let ttl: i64 = redis::cmd("TTL").arg(format!("{prefix}anpr:gate:5AU5341")).query(&mut redis_conn_at(redis.port)).unwrap();
    assert!((25..=30).contains(&ttl), "the key lives as long as the window: {ttl}");
    // Redis gone: the read is published rather than lost
    redis.kill();
    let mut c = on("c", redis.port);
    assert!(c.should_publish("gate", "9Z99999"));
}
