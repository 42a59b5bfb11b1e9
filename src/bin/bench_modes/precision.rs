//! `bench --precision fp32,int8`: the whole service with each detector precision
//! (`YOLO_PRECISION`), back to back in one run, so the ratio INT8 / FP32 is measured under the
//! same machine load (docs/int8.md).
//!
//! Each round runs, for every precision in turn (the order flips every round, so a load that
//! drifts during the run favours neither): a saturated phase, `--cameras` file cameras (in real
//! time, 10 fps each, unless `--fast`; give enough that detection is the limit, e.g. 8 on 2
//! cores), whose detected frames/s is the throughput; and a
//! light-load phase, one camera playing the video in real time (10 fps), whose frame-to-event
//! p50/p99 is the latency. `--rounds R` (2). The table gives each precision's best saturated
//! frames/s and median latency over the rounds, the INT8 / FP32 ratios, and the cores other
//! processes kept busy per phase.

use analytics_service::config::Config;
use analytics_service::infer::PrecisionSetting;
use serde_json::{json, Value};
use std::path::Path;

pub fn parse(list: &str) -> Vec<PrecisionSetting> {
    list.split(',')
        .map(|p| match p.trim().to_ascii_lowercase().as_str() {
            "fp32" => PrecisionSetting::Fp32,
            "int8" => PrecisionSetting::Int8,
            "auto" => PrecisionSetting::Auto,
            other => {
                eprintln!("bench: --precision takes fp32,int8,auto (comma-separated), not {other}");
                std::process::exit(2);
            }
        })
        .collect()
}

fn name(p: PrecisionSetting) -> &'static str {
    match p {
        PrecisionSetting::Fp32 => "fp32",
        PrecisionSetting::Int8 => "int8",
        PrecisionSetting::Auto => "auto",
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

pub fn run(a: &super::Args, cfg: &Config, video: &Path, precisions: &[PrecisionSetting], rounds: usize) -> anyhow::Result<Value> {
    let saturated = a.clone();
    let light = super::Args { cameras: 1, fast: false, ..a.clone() };
    let mut phases = Vec::new();
    for round in 0..rounds {
        let mut order = precisions.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for p in order {
            let cfg = Config { yolo_precision: p, ..cfg.clone() };
            println!("\n#### round {} / {rounds}, YOLO_PRECISION={} : saturated, {} cameras", round + 1, name(p), saturated.cameras);
            let s = super::run_service(&saturated, &cfg, video)?;
            println!("\n#### round {} / {rounds}, YOLO_PRECISION={} : light load, 1 camera in real time", round + 1, name(p));
            let l = super::run_service(&light, &cfg, video)?;
            phases.push(json!({"round": round + 1, "precision": name(p), "saturated": s, "light": l}));
        }
    }
    println!(
        "\n== precision: {} cameras saturated ({}), 1 camera light load (real time), {} s each, {rounds} round(s) ==",
        a.cameras,
        if a.fast { "fast decode" } else { "real time" },
        a.seconds
    );
    println!(
        "{:<10} {:>16} {:>14} {:>14} {:>18} {:>18}",
        "precision", "detected fps", "light p50 ms", "light p99 ms", "other cores sat.", "other cores light"
    );
    let mut rows = serde_json::Map::new();
    for &p in precisions {
        let mine: Vec<&Value> = phases.iter().filter(|v| v["precision"] == name(p)).collect();
        let f = |k: &str, path: &[&str]| -> Vec<f64> {
            mine.iter().filter_map(|v| path.iter().fold(&v[k], |acc, key| &acc[*key]).as_f64()).collect()
        };
        let fps = f("saturated", &["detected_fps"]).into_iter().fold(f64::NAN, f64::max);
        let p50 = median(f("light", &["latency_ms", "p50"]));
        let p99 = median(f("light", &["latency_ms", "p99"]));
        let other_s = median(f("saturated", &["other_cpu_cores"]));
        let other_l = median(f("light", &["other_cpu_cores"]));
        println!("{:<10} {fps:>16.1} {p50:>14.1} {p99:>14.1} {other_s:>18.2} {other_l:>18.2}", name(p));
        rows.insert(
            name(p).into(),
            json!({"detected_fps_best": fps, "light_p50_ms": p50, "light_p99_ms": p99,
            "other_cores_saturated": other_s, "other_cores_light": other_l}),
        );
    }
    let get = |p: &str, k: &str| rows.get(p).and_then(|r| r[k].as_f64());
    let ratios = match (get("int8", "detected_fps_best"), get("fp32", "detected_fps_best")) {
        (Some(i), Some(f)) if f > 0.0 => {
            let lat = get("int8", "light_p99_ms").zip(get("fp32", "light_p99_ms")).map(|(i, f)| i / f);
            println!(
                "int8 / fp32: saturated frames/s {:.2} (target >= 1.6), light-load p99 {} (target <= 1)",
                i / f,
                lat.map_or("-".into(), |r| format!("{r:.2}"))
            );
            json!({"saturated_fps": i / f, "light_p99": lat})
        }
        _ => Value::Null,
    };
    Ok(json!({"phases": phases, "summary": rows, "int8_over_fp32": ratios}))
}
