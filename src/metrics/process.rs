//! What the process itself costs (`process_*` families of the Prometheus conventions), read
//! from Linux's /proc at scrape time.

/// Resident memory of this process in bytes (Linux `/proc/self/status`; 0 elsewhere).
pub fn process_rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: u64 =
        s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    kib * 1024
}

/// CPU seconds (user + system) this process has used (Linux `/proc/self/stat`; 0 elsewhere).
pub fn process_cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(after) = s.rfind(')').and_then(|i| s.get(i + 2..)) else { return 0.0 };
    // fields after the command name start at field 3 (state); utime and stime are fields 14, 15
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
