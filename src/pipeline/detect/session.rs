//! ONNX Runtime sessions: the only file that uses `ort` directly.
//!
//! One ONNX Runtime environment per process, loaded at run time from the shared library
//! (`ort`'s `load-dynamic`): `ORT_DYLIB_PATH`, else the places `scripts/setup.sh` and the Docker
//! image install it. Without the library the first `ort` call would panic; [`environment`]
//! checks first and returns a clear error instead.
//!
//! Execution providers: `cpu`, `cuda` (the CUDA provider must load, or start-up fails), `auto`
//! (CUDA if its provider library and GPU load, CPU otherwise). The CUDA provider is registered
//! with `error_on_failure`, so a failed CUDA registration is seen and reported instead of
//! silently running on the CPU; [`ModelSession::provider`] says what really runs.

use crate::config::InferenceDevice;
use ndarray::{ArrayView, ArrayViewD};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{PrimitiveTensorElementType, TensorRef};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Errors of model loading and inference; messages name the file or variable and the fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferenceError {
    #[error("ONNX Runtime library not found (looked at: {looked}); set ORT_DYLIB_PATH to libonnxruntime.so (scripts/setup.sh installs it into .local/onnxruntime/lib)")]
    RuntimeMissing { looked: String },
    #[error("ONNX Runtime library {path} failed to load: {reason}")]
    RuntimeLoad { path: String, reason: String },
    #[error("{var}={path:?}: model file not found; see models/README.md (scripts/setup.sh installs the models)")]
    ModelMissing { var: &'static str, path: String },
    #[error(
        "{var}={path:?} is a PyTorch checkpoint; export it to ONNX: yolo export model={path} format=onnx dynamic=True (models/README.md)"
    )]
    PyTorch { var: &'static str, path: String },
    #[error("{var}={path:?}: cannot load the model: {reason}")]
    Load { var: &'static str, path: String, reason: String },
    #[error("INFERENCE_DEVICE=cuda but the CUDA execution provider did not load: {0}")]
    Cuda(String),
    #[error("{var}={path:?}: unexpected model shape: {reason}")]
    BadModel { var: &'static str, path: String, reason: String },
    #[error("inference failed: {0}")]
    Run(String),
}

/// Which execution provider a session really uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Cpu,
    Cuda,
}

/// The loaded runtime: where from and which version.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    pub library: String,
    /// e.g. `1.31.1`.
    pub version: String,
}

struct Env {
    env: ort::environment::Environment,
    info: RuntimeInfo,
}

static ENV: OnceLock<Result<Env, InferenceError>> = OnceLock::new();

/// Where the runtime library is looked for when `ORT_DYLIB_PATH` is not set.
fn candidates() -> Vec<PathBuf> {
    let mut c = vec![
        PathBuf::from(".local/onnxruntime/lib/libonnxruntime.so"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".local/onnxruntime/lib/libonnxruntime.so"),
    ];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            c.push(dir.join("libonnxruntime.so"));
            c.push(dir.join("../lib/libonnxruntime.so"));
        }
    }
    c.extend(
        ["/usr/local/lib/libonnxruntime.so", "/usr/lib/libonnxruntime.so", "/opt/onnxruntime/lib/libonnxruntime.so"].map(PathBuf::from),
    );
    c
}

/// The process's ONNX Runtime environment, created on first use from `dylib` (or the search
/// list). Later calls return the same one, whatever they pass.
pub fn environment(dylib: Option<&Path>) -> Result<RuntimeInfo, InferenceError> {
    let env = ENV.get_or_init(|| {
        let path = match dylib {
            Some(p) if p.is_file() => p.to_path_buf(),
            Some(p) => return Err(InferenceError::RuntimeMissing { looked: format!("ORT_DYLIB_PATH={}", p.display()) }),
            None => candidates().into_iter().find(|p| p.is_file()).ok_or_else(|| InferenceError::RuntimeMissing {
                looked: candidates().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            })?,
        };
        let load_err = |e: &dyn std::fmt::Display| InferenceError::RuntimeLoad { path: path.display().to_string(), reason: e.to_string() };
        let env = ort::init_from(&path).map_err(|e| load_err(&e))?.with_name("analytics-service").build().map_err(|e| load_err(&e))?;
        let version = runtime_version(&path);
        log::info!("inference: ONNX Runtime {version} loaded from {}", path.display());
        Ok(Env { env, info: RuntimeInfo { library: path.display().to_string(), version } })
    });
    env.as_ref().map(|e| e.info.clone()).map_err(Clone::clone)
}

/// The runtime's version: from the library's file name (`libonnxruntime.so.1.31.1`, through
/// symlinks), else from its build info (`git-branch=rel-1.31.1`), else the build info itself.
fn runtime_version(path: &Path) -> String {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(v) = name.split_once(".so.").map(|(_, v)| v).filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit())) {
        return v.to_string();
    }
    let build = ort::info();
    build.split([',', ' ']).find_map(|part| part.trim().strip_prefix("git-branch=rel-")).map_or_else(|| build.to_string(), str::to_string)
}

/// One tensor's declared shape: `-1` marks a dynamic axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub element: String,
}

/// A loaded model with the provider it runs on. `run` takes `&mut self`: one session per thread.
pub struct ModelSession {
    session: Session,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub provider: Provider,
    pub runtime: RuntimeInfo,
    /// Custom metadata `names` (Ultralytics writes the class names there), if any.
    pub names_metadata: Option<String>,
}

impl ModelSession {
    /// Loads `path` (named by variable `var` in errors) on the provider `device` asks for.
    pub fn load(var: &'static str, path: &Path, device: InferenceDevice, dylib: Option<&Path>) -> Result<Self, InferenceError> {
        let shown = path.display().to_string();
        if path.extension().is_some_and(|e| e == "pt" || e == "pth") {
            return Err(InferenceError::PyTorch { var, path: shown });
        }
        if !path.is_file() {
            return Err(InferenceError::ModelMissing { var, path: shown });
        }
        let runtime = environment(dylib)?;
        let env = &ENV.get().and_then(|e| e.as_ref().ok()).expect("invariant: environment() succeeded").env;
        let load_err = |e: &dyn std::fmt::Display| InferenceError::Load { var, path: shown.clone(), reason: e.to_string() };
        let build = |cuda: bool| -> Result<Session, ort::Error> {
            let mut b = Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::Level3).map_err(Into::<ort::Error>::into)?;
            if cuda {
                b = cuda_provider(b)?;
            }
            b.commit_from_file(path)
        };
        let (session, provider) = match device {
            InferenceDevice::Cpu => (build(false).map_err(|e| load_err(&e))?, Provider::Cpu),
            InferenceDevice::Cuda => (build(true).map_err(|e| InferenceError::Cuda(e.to_string()))?, Provider::Cuda),
            InferenceDevice::Auto => match build(true) {
                Ok(s) => (s, Provider::Cuda),
                Err(e) => {
                    log::info!("inference: CUDA not available for {shown}, using CPU: {e}");
                    (build(false).map_err(|e| load_err(&e))?, Provider::Cpu)
                }
            },
        };
        let spec = |o: &ort::value::Outlet| TensorSpec {
            name: o.name().to_string(),
            shape: o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default(),
            element: o.dtype().tensor_type().map_or_else(|| "not a tensor".into(), |t| format!("{t:?}").to_lowercase()),
        };
        let inputs: Vec<TensorSpec> = session.inputs().iter().map(spec).collect();
        let outputs: Vec<TensorSpec> = session.outputs().iter().map(spec).collect();
        let names_metadata = session.metadata().ok().and_then(|m| m.custom("names"));
        log::info!("inference: {var}={shown} loaded on {provider:?}: inputs {inputs:?}, outputs {outputs:?}");
        Ok(ModelSession { session, inputs, outputs, provider, runtime, names_metadata })
    }

    /// Whether input `i` is float32 / float16.
    pub fn input_is(&self, i: usize, element: &str) -> bool {
        self.inputs.get(i).is_some_and(|s| s.element == element)
    }

    /// Runs the model on one input and hands output `output` to `f` as a view (no copy).
    fn run_typed<T: PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static, R>(
        &mut self,
        input: ArrayViewD<'_, T>,
        output: usize,
        f: impl FnOnce(ArrayViewD<'_, T>) -> R,
    ) -> Result<R, InferenceError> {
        let run_err = |e: ort::Error| InferenceError::Run(e.to_string());
        let tensor = TensorRef::from_array_view(input).map_err(run_err)?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(run_err)?;
        let view = outputs[output].try_extract_array::<T>().map_err(run_err)?;
        Ok(f(view))
    }

    /// Runs a float32 model on `input` and hands output `output` to `f` as a view (no copy).
    pub fn run_f32<D: ndarray::Dimension, R>(
        &mut self,
        input: ArrayView<'_, f32, D>,
        output: usize,
        f: impl FnOnce(ArrayViewD<'_, f32>) -> R,
    ) -> Result<R, InferenceError> {
        self.run_typed(input.into_dyn(), output, f)
    }

    /// Runs a float16 model: converts `input` to f16 and the chosen output back to f32.
    pub fn run_f16<D: ndarray::Dimension, R>(
        &mut self,
        input: ArrayView<'_, f32, D>,
        output: usize,
        f: impl FnOnce(ArrayViewD<'_, f32>) -> R,
    ) -> Result<R, InferenceError> {
        let half = input.mapv(half::f16::from_f32).into_dyn();
        self.run_typed(half.view(), output, |o| f(o.mapv(half::f16::to_f32).view()))
    }
}

/// Adds the CUDA execution provider (when built with the `cuda` feature), failing loudly.
#[cfg(feature = "cuda")]
fn cuda_provider(b: ort::session::builder::SessionBuilder) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    b.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()]).map_err(Into::<ort::Error>::into)
}

#[cfg(not(feature = "cuda"))]
fn cuda_provider(_b: ort::session::builder::SessionBuilder) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    Err(ort::Error::new("this build has no CUDA support (cargo feature `cuda` off)"))
}
