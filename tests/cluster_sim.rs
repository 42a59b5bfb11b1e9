//! A simulation of a large site: 1000 cameras over 20 instances on one real redis-server, with
//! instances dying (as `kill -9` would: no lease given back) and joining. Each instance is the
//! real coordinator and registry (`Cluster`) in this process; only the camera workers are idle
//! threads instead of streams, so the cost is the coordination alone.
//!
//! Reports the hand-over time after deaths, the rebalance time and churn after joins, and the
//! most cameras any instance held against the fair share; checks that no camera is ever run by
//! two live instances at once and that every camera is run again within `LEASE_TTL_S` + 3 s.
//!
//!     cargo test --test cluster_sim -- --nocapture

mod common;

use analytics_service::camera::runtime::{CameraState, StatusWriter};
use analytics_service::camera::validate::{validate_cameras, Context};
use analytics_service::camera::worker::CaptureLoop;
use analytics_service::camera::{Registry, StreamUrl};
use analytics_service::cluster::{Cluster, ClusterSettings};
use analytics_service::metrics::Metrics;
use analytics_service::pipeline::publish::RedisTarget;
use analytics_service::stage::supervise::Supervisor;
use analytics_service::stage::Stop;
use common::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CAMERAS: usize = 1000;
const TTL: Duration = Duration::from_secs(2);

/// A camera worker that runs until told to stop.
struct Idle;

impl CaptureLoop for Idle {
    fn run(&self, status: StatusWriter, _url: StreamUrl, stop: Stop) {
        status.set_state(CameraState::Running);
        stop.wait();
    }
}

struct Sim {
    target: RedisTarget,
    prefix: String,
    live: BTreeMap<String, (Arc<Cluster>, Arc<Supervisor>)>,
    next: usize,
}

impl Sim {
    fn join(&mut self) -> String {
        let id = format!("inst-{:02}", self.next);
        self.next += 1;
        let settings = ClusterSettings {
            instance_id: id.clone(),
            prefix: self.prefix.clone(),
            lease_ttl: TTL,
            max_cameras: 200,
            validate: Context { file_root: None },
        };
        let supervisor = Supervisor::new();
        let registry = Arc::new(Registry::new(&id, Arc::new(Idle), Metrics::new()));
        let cluster = Cluster::start(settings, self.target.clone(), registry, &supervisor).expect("cluster starts");
        self.live.insert(id.clone(), (cluster, supervisor));
        id
    }

    fn crash(&mut self, id: &str) {
        let (c, _) = self.live.remove(id).expect("live instance");
        c.halt_as_if_crashed();
    }

    /// camera -> the live instances that run it (a worker holding a lease).
    fn holders(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, (c, _)) in &self.live {
            for cam in c.registry().leased() {
                out.entry(cam).or_default().push(id.clone());
            }
        }
        out
    }

    fn counts(&self) -> BTreeMap<String, usize> {
        self.live.iter().map(|(id, (c, _))| (id.clone(), c.registry().leased().len())).collect()
    }

    /// Polls until every camera runs on exactly one live instance and the counts are even
    /// (max - min <= 1); returns how long it took and the most any instance held meanwhile.
    /// Panics on a camera run by two instances at once.
    fn settle(&self, what: &str, limit: Duration) -> (Duration, usize, Duration) {
        let t0 = Instant::now();
        let mut max_held = 0;
        let mut all_run_at = None;
        loop {
            let holders = self.holders();
            let doubled: Vec<_> = holders.iter().filter(|(_, h)| h.len() > 1).collect();
            assert!(doubled.is_empty(), "{what}: cameras run by two instances at once: {:?}", &doubled[..doubled.len().min(5)]);
            let counts = self.counts();
            max_held = max_held.max(counts.values().copied().max().unwrap_or(0));
            let covered = holders.len() == CAMERAS;
            if covered && all_run_at.is_none() {
                all_run_at = Some(t0.elapsed());
            }
            let (lo, hi) = (counts.values().min().copied().unwrap_or(0), counts.values().max().copied().unwrap_or(0));
            if covered && hi - lo <= 1 {
                return (all_run_at.unwrap(), max_held, t0.elapsed());
            }
            assert!(t0.elapsed() < limit, "{what}: not settled after {limit:?}: {} of {CAMERAS} run, counts {counts:?}", holders.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn thousand_cameras_over_twenty_instances_with_deaths_and_joins() {
    let redis = OwnRedis::start(free_port());
    let mut sim = Sim {
        target: RedisTarget { host: "127.0.0.1".into(), port: redis.port, db: 0, password: None },
        prefix: "sim:".into(),
        live: BTreeMap::new(),
        next: 0,
    };
    for _ in 0..20 {
        sim.join();
    }
    std::thread::sleep(TTL / 2); // every instance has heartbeated: the capacity is known
    let root = std::env::temp_dir();
    let body: Vec<_> = (0..CAMERAS).map(|i| json!({"camera_id": format!("cam-{i:04}"), "stream_url": "rtsp://10.0.0.1/cam"})).collect();
    let cameras = validate_cameras(&json!(body), &Context { file_root: Some(root) }).expect("valid cameras").cameras;
    let first = sim.live.values().next().unwrap().0.clone();
    let t = Instant::now();
    first.apply(cameras).expect("registered");
    println!("registered {CAMERAS} cameras in one POST in {:?}", t.elapsed());
    let (covered, max_held, even) = sim.settle("initial spread", Duration::from_secs(30));
    println!(
        "initial: all {CAMERAS} running after {covered:?}, even after {even:?}; most held by one instance {max_held} (fair share {})",
        CAMERAS / 20
    );
    let mut report = vec![];

    // five deaths at once
    let before = sim.holders();
    let victims: Vec<String> = sim.live.keys().take(5).cloned().collect();
    for v in &victims {
        sim.crash(v);
    }
    let orphaned = before.values().filter(|h| victims.contains(&h[0])).count();
    let (handover, max_held, even) = sim.settle("after 5 deaths", TTL * 10);
    println!("5 of 20 killed ({orphaned} cameras orphaned): all running again after {handover:?} (TTL {TTL:?}), even after {even:?}; most held {max_held} (fair share {})", CAMERAS.div_ceil(15));
    assert!(handover <= TTL + Duration::from_secs(3), "hand-over took {handover:?}");
    report.push(("5 deaths", handover, max_held));

    // five joins: count the cameras that moved (ideal: what the newcomers should hold)
    let before = sim.holders();
    for _ in 0..5 {
        sim.join();
    }
    let (_, max_held, even) = sim.settle("after 5 joins", TTL * 15);
    let after = sim.holders();
    let moved = after.iter().filter(|(cam, h)| before.get(*cam) != Some(*h)).count();
    println!("5 joined: even after {even:?}; {moved} cameras moved (ideal {}); most held {max_held}", 5 * CAMERAS / 20);
    assert!(moved <= 2 * 5 * CAMERAS / 20, "rebalancing moved {moved} cameras: flapping");
    report.push(("5 joins", even, max_held));

    // half the cluster dies
    let victims: Vec<String> = sim.live.keys().skip(3).take(10).cloned().collect();
    for v in &victims {
        sim.crash(v);
    }
    let (handover, max_held, even) = sim.settle("after 10 deaths", TTL * 10);
    println!(
        "10 of 20 killed: all running again after {handover:?}, even after {even:?}; most held {max_held} (fair share {})",
        CAMERAS / 10
    );
    assert!(handover <= TTL + Duration::from_secs(3), "hand-over took {handover:?}");
    report.push(("10 deaths", handover, max_held));

    let counts = sim.counts();
    println!("final counts: {:?}", counts.values().collect::<BTreeSet<_>>());
    for (_, (c, _)) in std::mem::take(&mut sim.live) {
        c.shutdown();
    }
    println!("| event | cameras running again / even after | most held by one instance |");
    for (what, t, m) in report {
        println!("| {what} | {t:?} | {m} |");
    }
}
