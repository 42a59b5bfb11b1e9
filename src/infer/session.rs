//! ONNX Runtime sessions: the only file that uses `ort` directly.
//!
//! One ONNX Runtime environment per process, loaded at run time from the shared library
//! (`ort`'s `load-dynamic`): `ORT_DYLIB_PATH`, else the places `scripts/setup.sh` and the Docker
//! image install it. Without the library the first `ort` call would panic; [`environment`]
//! checks first and returns a clear error instead.
//!
//! Execution providers: `cpu`, `cuda` (the CUDA provider must load, or start-up fails), `auto`
//! (CUDA if its provider library and GPU load, CPU otherwise), `tensorrt` (opt-in: TensorRT
//! with CUDA for the nodes TensorRT does not take, both required). GPU providers are registered
//! with `error_on_failure`, so a failed registration is seen and reported instead of silently
//! running on the CPU; [`ModelSession::provider`] says what really runs. Why a GPU provider
//! failed is read from ONNX Runtime's message ([`GpuFailure`]): no driver or no device is told
//! apart from a library of the GPU recipe that is missing (docs/gpu.md).

use ndarray::{ArrayView, ArrayViewD, ArrayViewMut4, Ix4};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{IoBinding, Session};
use ort::value::{PrimitiveTensorElementType, Tensor, TensorRef};
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
    #[error("{var}=int8 but the INT8 model {path:?} is missing; make it with scripts/quantize.py (scripts/setup.sh runs it), or set {var}=auto or fp32")]
    Int8Missing { var: &'static str, path: String },
    #[error("{var}={path:?}: cannot load the model: {reason}")]
    Load { var: &'static str, path: String, reason: String },
    #[error("INFERENCE_DEVICE={device} but the {provider} execution provider did not load: {cause}. ONNX Runtime said: {detail}")]
    Gpu { device: &'static str, provider: &'static str, cause: GpuFailure, detail: String },
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
    /// TensorRT, with CUDA for the nodes it does not take.
    #[serde(rename = "tensorrt")]
    TensorRt,
}

/// Why a GPU execution provider did not load, read from ONNX Runtime's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuFailure {
    /// `libcuda.so.1` cannot be opened: the NVIDIA driver is not installed here (no GPU), or a
    /// container was started without the GPU (`--gpus`, NVIDIA Container Toolkit).
    NoDriver,
    /// The driver answers but sees no GPU (`cudaErrorNoDevice`, CUDA error 100).
    NoDevice,
    /// `cudaErrorInsufficientDriver` (CUDA error 35): the CUDA runtime found no driver, or one
    /// older than CUDA 13.
    OldDriver,
    /// A library of the GPU recipe (cuBLAS, cuDNN, TensorRT, ...) cannot be opened.
    MissingLibrary(String),
    /// The ONNX Runtime library has no such provider: a CPU build of ONNX Runtime.
    NotInRuntime,
    /// Anything else: ONNX Runtime's message says what.
    Other,
}

impl GpuFailure {
    /// Reads ONNX Runtime's message. A missing library is named by the loader as
    /// `libX.so.N: cannot open shared object file`; CUDA errors as `CUDA failure N: text`.
    pub fn classify(msg: &str) -> GpuFailure {
        static MISSING: OnceLock<regex::Regex> = OnceLock::new();
        let missing = MISSING
            .get_or_init(|| regex::Regex::new(r"([A-Za-z0-9_.+-]+\.so[0-9.]*): cannot open shared object file").expect("valid regex"));
        if let Some(lib) = missing.captures(msg).map(|c| c[1].to_string()) {
            return match lib.as_str() {
                "libcuda.so.1" | "libcuda.so" => GpuFailure::NoDriver,
                l if l.starts_with("libonnxruntime_providers_") => GpuFailure::NotInRuntime,
                _ => GpuFailure::MissingLibrary(lib),
            };
        }
        let lower = msg.to_ascii_lowercase();
        if lower.contains("no cuda-capable device") || lower.contains("cudaerrornodevice") || lower.contains("cuda failure 100:") {
            GpuFailure::NoDevice
        } else if lower.contains("driver version is insufficient")
            || lower.contains("cudaerrorinsufficientdriver")
            || lower.contains("cuda failure 35:")
        {
            GpuFailure::OldDriver
        } else if lower.contains("not enabled in this build")
            || lower.contains("is not supported in this build")
            || lower.contains("this build has no cuda")
        {
            GpuFailure::NotInRuntime
        } else {
            GpuFailure::Other
        }
    }
}

impl std::fmt::Display for GpuFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuFailure::NoDriver => f.write_str(
                "no CUDA device: the NVIDIA driver library libcuda.so.1 is not on this machine (no GPU here, or a container started without its GPU: --gpus / NVIDIA Container Toolkit)",
            ),
            GpuFailure::NoDevice => f.write_str("no CUDA device: the NVIDIA driver reports no CUDA-capable GPU (see nvidia-smi, CUDA_VISIBLE_DEVICES)"),
            GpuFailure::OldDriver => f.write_str(
                "no CUDA device: no usable NVIDIA driver (CUDA error 35: none is installed, or it is older than CUDA 13 needs, r580 or newer; nvidia-smi shows it)",
            ),
            GpuFailure::MissingLibrary(lib) => write!(
                f,
                "missing library {lib}: the GPU libraries are not installed or not on LD_LIBRARY_PATH (scripts/gpu_setup.sh installs them; docs/gpu.md)"
            ),
            GpuFailure::NotInRuntime => {
                f.write_str("the ONNX Runtime library (ORT_DYLIB_PATH) has no such provider: it is a CPU build; use onnxruntime-gpu (docs/gpu.md)")
            }
            GpuFailure::Other => f.write_str("see ONNX Runtime's message"),
        }
    }
}

/// The part of ONNX Runtime's GPU error that matters: from `CUDA failure N: ...` or `Failed
/// to load library ...` on (the rest is a C++ source location and signature).
fn gpu_detail(msg: &str) -> String {
    let msg = msg.trim();
    let start = ["CUDA failure ", "Failed to load library "].iter().find_map(|k| msg.find(k)).unwrap_or(0);
    msg[start..].to_string()
}

/// TensorRT settings (`TENSORRT_CACHE_DIR`, `TENSORRT_FP16`), carried by [`Device::TensorRt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRtOptions {
    /// Where TensorRT keeps the engines it builds (minutes, once per model and batch size).
    pub cache_dir: PathBuf,
    /// Whether TensorRT may use float16.
    pub fp16: bool,
}

/// Where a model is to run: the `INFERENCE_DEVICE` choice, with what that choice needs. Passed
/// to every load, so no session depends on state set elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// CUDA when a GPU and its libraries load, CPU otherwise.
    Auto,
    Cpu,
    /// CUDA, required: start-up fails if it does not load.
    Cuda,
    /// TensorRT (opt-in, never chosen by `Auto`), with CUDA for the nodes TensorRT does not
    /// take; both must load.
    TensorRt(TensorRtOptions),
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
    pub fn load(var: &'static str, path: &Path, device: &Device, dylib: Option<&Path>) -> Result<Self, InferenceError> {
        Self::load_with_threads(var, path, device, dylib, 0)
    }

    /// [`load`](Self::load) with `intra_threads` threads for ONNX Runtime's intra-op pool (0:
    /// its default, one per core). Several sessions that each run one frame at a time on one
    /// thread use a small CPU better than one session spreading each frame over every core.
    pub fn load_with_threads(
        var: &'static str,
        path: &Path,
        device: &Device,
        dylib: Option<&Path>,
        intra_threads: usize,
    ) -> Result<Self, InferenceError> {
        Self::load_inner(var, path, device, dylib, intra_threads, true)
    }

    /// A CPU session whose intra-op pool (one thread per core) sleeps between runs instead of
    /// spinning: for runs now and then beside other sessions, whose cores it must not keep busy.
    pub fn load_quiet(var: &'static str, path: &Path, dylib: Option<&Path>) -> Result<Self, InferenceError> {
        Self::load_inner(var, path, &Device::Cpu, dylib, 0, false)
    }

    fn load_inner(
        var: &'static str,
        path: &Path,
        device: &Device,
        dylib: Option<&Path>,
        intra_threads: usize,
        spin: bool,
    ) -> Result<Self, InferenceError> {
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
        let build = |provider: Provider| -> Result<Session, ort::Error> {
            let mut b = Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::Level3).map_err(Into::<ort::Error>::into)?;
            if intra_threads > 0 {
                b = b.with_intra_threads(intra_threads).map_err(Into::<ort::Error>::into)?;
            }
            if !spin {
                b = b.with_intra_op_spinning(false).map_err(Into::<ort::Error>::into)?;
            }
            let mut b = match provider {
                Provider::Cpu => b,
                Provider::Cuda => cuda_provider(b)?,
                Provider::TensorRt => {
                    let Device::TensorRt(options) = device else {
                        return Err(ort::Error::new("TensorRT is tried only for INFERENCE_DEVICE=tensorrt"));
                    };
                    tensorrt_provider(b, options)?
                }
            };
            b.commit_from_file(path)
        };
        let gpu_err = |device: &'static str, provider: &'static str, e: ort::Error| {
            let detail = gpu_detail(&e.to_string());
            InferenceError::Gpu { device, provider, cause: GpuFailure::classify(&detail), detail }
        };
        let (session, provider) = match device {
            Device::Cpu => (build(Provider::Cpu).map_err(|e| load_err(&e))?, Provider::Cpu),
            Device::Cuda => (build(Provider::Cuda).map_err(|e| gpu_err("cuda", "CUDA", e))?, Provider::Cuda),
            Device::TensorRt(_) => (build(Provider::TensorRt).map_err(|e| gpu_err("tensorrt", "TensorRT", e))?, Provider::TensorRt),
            Device::Auto => match build(Provider::Cuda) {
                Ok(s) => (s, Provider::Cuda),
                Err(e) => {
                    let detail = gpu_detail(&e.to_string());
                    let cause = GpuFailure::classify(&detail);
                    // a CPU build of ONNX Runtime (the default setup) is the expected case: INFO;
                    // a GPU build that cannot use the GPU deserves a WARN
                    let level = if matches!(cause, GpuFailure::NotInRuntime) { log::Level::Info } else { log::Level::Warn };
                    log::log!(
                        level,
                        "inference: INFERENCE_DEVICE=auto: CUDA not used for {shown}, running on CPU: {cause}. ONNX Runtime said: {detail}"
                    );
                    (build(Provider::Cpu).map_err(|e| load_err(&e))?, Provider::Cpu)
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

/// ONNX Runtime's I/O binding for a float32 model with one batch input: the buffers are made
/// where the provider wants them and reused by every run.
///
/// On a GPU provider the batch is written (letterboxed) straight into page-locked host memory
/// (`CudaPinned`), which ORT uploads into a device buffer from its arena with an asynchronous
/// DMA copy instead of first staging pageable memory, and the output is bound to page-locked
/// memory too, so the device writes the result where the decoder reads it. On the CPU the
/// buffers are ordinary host memory (nothing to gain there: [`ModelSession::run_f32`] already
/// runs on a view without a copy), which is how tests prove the bound path without a GPU.
///
/// A tensor's shape is fixed when it is made, and `ort` clones a borrowed view of part of one
/// before binding it (on the CPU that clone deadlocks in ort 2.0.0-rc.15: it binds a borrowed
/// view again, inside the lock it holds), so there is one owned staging tensor per batch size
/// in use, made on first use; the least recently used go once they hold more than two full
/// batches' worth of images.
pub struct BoundIo {
    binding: IoBinding,
    allocator: Allocator,
    /// `[max_batch, C, H, W]`.
    shape: [usize; 4],
    /// Staging tensors by batch size, the most recently used last.
    staging: Vec<(usize, Tensor<f32>)>,
    input: String,
    output: String,
    /// Where ORT puts the output: it allocates it on a run, then reuses it while the batch
    /// size stays the same ([`ModelSession::run_bound`] binds it afresh when the size changes).
    output_memory: MemoryInfo<'static>,
    /// The batch size of the last run: the shape of the output the binding holds now.
    output_batch: usize,
}

impl BoundIo {
    /// The staging tensor for a batch of `n` (made if need be), to write `n` images into.
    pub fn batch_mut(&mut self, n: usize) -> Result<ArrayViewMut4<'_, f32>, InferenceError> {
        let tensor = self.staging(n)?;
        Ok(tensor.extract_array_mut().into_dimensionality::<Ix4>().expect("invariant: staging tensors have 4 axes"))
    }

    /// Caps the batch at `n` images, dropping larger staging tensors.
    pub fn cap_batch(&mut self, n: usize) {
        self.shape[0] = n.clamp(1, self.shape[0]);
        let max = self.shape[0];
        self.staging.retain(|(size, _)| *size <= max);
    }

    fn staging(&mut self, n: usize) -> Result<&mut Tensor<f32>, InferenceError> {
        let n = n.clamp(1, self.shape[0]);
        if let Some(i) = self.staging.iter().position(|(size, _)| *size == n) {
            let entry = self.staging.remove(i);
            self.staging.push(entry);
        } else {
            let [_, c, h, w] = self.shape;
            let tensor = Tensor::<f32>::new(&self.allocator, [n, c, h, w]).map_err(|e| InferenceError::Run(format!("I/O binding: {e}")))?;
            self.staging.push((n, tensor));
            // keep at most two full batches' worth of images (the newest entry always stays)
            while self.staging.iter().map(|(size, _)| size).sum::<usize>() > 2 * self.shape[0] && self.staging.len() > 1 {
                self.staging.remove(0);
            }
        }
        Ok(&mut self.staging.last_mut().expect("invariant: just pushed").1)
    }
}

/// The memory a bound session's input is written into and its output read from: page-locked
/// host memory for a GPU provider, plain host memory for the CPU.
fn bound_memory(provider: Provider, kind: MemoryType) -> Result<MemoryInfo<'static>, ort::Error> {
    let device = if provider == Provider::Cpu { AllocationDevice::CPU } else { AllocationDevice::CUDA_PINNED };
    let kind = if provider == Provider::Cpu { MemoryType::Default } else { kind };
    MemoryInfo::new(device, 0, AllocatorType::Device, kind)
}

impl ModelSession {
    /// Binds input 0 (float32, at most `shape` = `[max_batch, C, H, W]`) and output `output` to
    /// buffers made for this session ([`BoundIo`]).
    pub fn bind_io(&self, shape: [usize; 4], output: usize) -> Result<BoundIo, InferenceError> {
        let err = |e: ort::Error| InferenceError::Run(format!("I/O binding: {e}"));
        let input = self.inputs.first().ok_or_else(|| InferenceError::Run("I/O binding: the model has no input".into()))?.name.clone();
        let output = self
            .outputs
            .get(output)
            .ok_or_else(|| InferenceError::Run(format!("I/O binding: the model has no output {output}")))?
            .name
            .clone();
        let allocator = match self.provider {
            Provider::Cpu => Allocator::default(),
            _ => Allocator::new(&self.session, bound_memory(self.provider, MemoryType::CPUInput).map_err(err)?).map_err(err)?,
        };
        let binding = self.session.create_binding().map_err(err)?;
        let output_memory = bound_memory(self.provider, MemoryType::CPUOutput).map_err(err)?;
        Ok(BoundIo { binding, allocator, shape, staging: Vec::new(), input, output, output_memory, output_batch: 0 })
    }

    /// Runs the model on `io`'s staging tensor for a batch of `n` (what
    /// [`BoundIo::batch_mut`] gave) and hands the bound output to `f` as a view.
    pub fn run_bound<R>(&mut self, io: &mut BoundIo, n: usize, f: impl FnOnce(ArrayViewD<'_, f32>) -> R) -> Result<R, InferenceError> {
        let err = |e: ort::Error| InferenceError::Run(e.to_string());
        io.staging(n)?;
        let n = n.clamp(1, io.shape[0]);
        if io.output_batch != n {
            // the output's shape follows the batch: ORT allocates it in the bound memory on
            // this run, and the binding keeps that buffer for the next runs of the same size
            io.binding.bind_output_to_device(&io.output, &io.output_memory).map_err(err)?;
            io.output_batch = n;
        }
        let BoundIo { binding, input, output, staging, .. } = io;
        // an owned tensor: bound without a copy (ORT uploads it when the session is on a GPU)
        let value = &staging.last().expect("invariant: staging(n) made it the last").1;
        binding.bind_input(input.as_str(), value).map_err(err)?;
        let outputs = self.session.run_binding(binding).map_err(err)?;
        let out = outputs.get(output.as_str()).ok_or_else(|| InferenceError::Run(format!("output {output} missing from the bound run")))?;
        let view = out.try_extract_array::<f32>().map_err(err)?;
        Ok(f(view))
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

/// Adds TensorRT, then CUDA for the nodes TensorRT does not take; both fail loudly. Engines and
/// the timing cache go to `cache_dir`, so a restart reuses them instead of building again.
#[cfg(feature = "cuda")]
fn tensorrt_provider(
    b: ort::session::builder::SessionBuilder,
    options: &TensorRtOptions,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    std::fs::create_dir_all(&options.cache_dir)
        .map_err(|e| ort::Error::new(format!("TENSORRT_CACHE_DIR={}: cannot create it: {e}", options.cache_dir.display())))?;
    let dir = options.cache_dir.display().to_string();
    let trt = ort::ep::TensorRT::default()
        .with_engine_cache(true)
        .with_engine_cache_path(&dir)
        .with_timing_cache(true)
        .with_timing_cache_path(&dir)
        .with_fp16(options.fp16)
        .build()
        .error_on_failure();
    b.with_execution_providers([trt, ort::ep::CUDA::default().build().error_on_failure()]).map_err(Into::<ort::Error>::into)
}

#[cfg(not(feature = "cuda"))]
fn tensorrt_provider(
    _b: ort::session::builder::SessionBuilder,
    _options: &TensorRtOptions,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    Err(ort::Error::new("this build has no CUDA support (cargo feature `cuda` off)"))
}

#[cfg(test)]
mod tests {
    use super::GpuFailure;

    /// The messages ONNX Runtime gives on a machine without a driver, with a recipe library
    /// missing, and from a driver without a GPU, are told apart.
    #[test]
    fn gpu_failures_are_told_apart() {
        let no_driver = "Failed to load library libonnxruntime_providers_cuda.so with error: libcuda.so.1: cannot open shared object file: No such file or directory";
        assert_eq!(GpuFailure::classify(no_driver), GpuFailure::NoDriver);
        assert!(GpuFailure::NoDriver.to_string().starts_with("no CUDA device"));
        let lib = "Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: No such file or directory";
        assert_eq!(GpuFailure::classify(lib), GpuFailure::MissingLibrary("libcublasLt.so.13".into()));
        assert!(GpuFailure::classify(lib).to_string().starts_with("missing library libcublasLt.so.13"));
        let no_device = "CUDA failure 100: no CUDA-capable device is detected ; GPU=0 ; hostname=x ; file=cuda_execution_provider.cc ; line=282 ; expr=cudaSetDevice(info_.device_id);";
        assert_eq!(GpuFailure::classify(no_device), GpuFailure::NoDevice);
        let old = "CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version ; GPU=0";
        assert_eq!(GpuFailure::classify(old), GpuFailure::OldDriver);
        let cpu_build = "Failed to load library libonnxruntime_providers_shared.so with error: libonnxruntime_providers_shared.so: cannot open shared object file: No such file or directory";
        assert_eq!(GpuFailure::classify(cpu_build), GpuFailure::NotInRuntime);
        assert_eq!(GpuFailure::classify("something else"), GpuFailure::Other);
        assert_eq!(
            super::gpu_detail(
                "/src/provider_bridge_ort.cc:2043 Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library a.so with error: b\n"
            ),
            "Failed to load library a.so with error: b"
        );
    }
}
