//! No lock-out (docs/security.md): with 5,000 idle connections open and 200 clients
//! trickling request heads, `GET /api/health`, `/livez`, `/readyz` and an authenticated
//! `GET /api/cameras` are still answered, and everything recovers when those clients go.
//! Prints the figures: connections held, latency of each probe, RSS and threads of the
//! process (the service runs in this test process, so /proc/self is the service plus the
//! clients' sockets) before, during and after. Timings are reported, not asserted tightly
//! (the bound below only says "not locked out").

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TOKEN: &str = "lockout-token-0123456789abcdef";
const IDLE: usize = 5000;
const TRICKLERS: usize = 200;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// One request on a fresh connection: (status, latency).
fn timed(addr: SocketAddr, path: &str, token: bool) -> (u16, Duration) {
    let t0 = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else { return (0, t0.elapsed()) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = if token { format!("Authorization: Bearer {TOKEN}\r\n") } else { String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), t0.elapsed())
}

/// Each probe three times: the statuses and the worst latency.
fn probes(addr: SocketAddr, when: &str) -> Vec<(String, Vec<u16>, Duration)> {
    let mut out = Vec::new();
    for (path, token) in [("/api/health", false), ("/livez", false), ("/readyz", false), ("/api/cameras", true)] {
        let mut statuses = Vec::new();
        let mut worst = Duration::ZERO;
        for _ in 0..3 {
            let (st, took) = timed(addr, path, token);
            statuses.push(st);
            worst = worst.max(took);
        }
        eprintln!("  {when:<7} {path:<12} {statuses:?} worst {:.1} ms", worst.as_secs_f64() * 1000.0);
        out.push((path.to_string(), statuses, worst));
    }
    out
}

fn open_connections(addr: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().find_map(|l| l.strip_prefix("analytics_api_open_connections ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn idle_and_trickling_clients_cannot_lock_out_health() {
    // this process holds both ends of every connection
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(files as usize > 2 * (IDLE + TRICKLERS) + 200, "the open-file hard limit ({files}) is too low for this test");
    let mut cfg = test_config("lockout");
    cfg.api_token = Some(TOKEN.into());
    let svc = start_service(cfg);
    let addr = svc.api_addr();
    let (rss0, threads0) = (rss_kib(), threads());
    eprintln!("before: RSS {rss0} KiB, {threads0} threads");
    let before = probes(addr, "before");

    let t0 = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => idle.push(s),
            Err(e) => {
                eprintln!("connect failed after {} idle connections: {e}", idle.len());
                break;
            }
        }
    }
    let mut tricklers: Vec<TcpStream> = (0..TRICKLERS).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    for s in &mut tricklers {
        let _ = s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n");
    }
    let opened = t0.elapsed();
    // trickle one header byte per client every 100 ms while the probes run
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut tricklers {
                    let _ = s.write_all(b"X");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            tricklers
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let held = open_connections(addr);
    let (rss1, threads1) = (rss_kib(), threads());
    eprintln!(
        "during: {} idle + {} trickling clients opened in {:.1} s; the server holds {held} connections; RSS {rss1} KiB (+{} KiB), {threads1} threads",
        idle.len(),
        TRICKLERS,
        opened.as_secs_f64(),
        rss1.saturating_sub(rss0)
    );
    let during = probes(addr, "during");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let tricklers = trickle.join().unwrap();

    drop(idle);
    drop(tricklers);
    let t1 = Instant::now();
    let left = wait_for(Duration::from_secs(20), "connections to close", || {
        let n = open_connections(addr);
        (n <= 1).then_some(n)
    });
    let (rss2, threads2) = (rss_kib(), threads());
    eprintln!("after: {left} open after {:.1} s; RSS {rss2} KiB, {threads2} threads", t1.elapsed().as_secs_f64());
    let after = probes(addr, "after");

    // four more waves of idle connections: memory is reused, not grown (a leak would add about
    // 80 MiB a wave; the allocator settles within a few tens of MiB of the first wave)
    let mut rss_last = rss2;
    for wave in 2..=5 {
        let again: Vec<TcpStream> = (0..IDLE).filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let held = open_connections(addr);
        drop(again);
        wait_for(Duration::from_secs(20), "connections to close", || (open_connections(addr) <= 1).then_some(()));
        rss_last = rss_kib();
        eprintln!("wave {wave}: {held} connections held, RSS after {rss_last} KiB");
    }
    assert!(rss_last < rss2 + 48 * 1024, "RSS grew wave after wave: {rss2} -> {rss_last} KiB");

    assert!(held as usize >= IDLE, "the server held only {held} connections");
    for (phase, results) in [("before", &before), ("during", &during), ("after", &after)] {
        for (path, statuses, worst) in results.iter() {
            assert!(statuses.iter().all(|s| *s == 200), "{phase}: {path} answered {statuses:?}");
            // generous: this says "not locked out", the figures above say how fast
            assert!(*worst < Duration::from_secs(5), "{phase}: {path} took {worst:?}");
        }
    }
    assert!(threads1 <= threads0 + 16, "threads grew with connections: {threads0} -> {threads1}");
    svc.shutdown();
}
