//! The YOLOv8 detector: a [`ModelSession`] plus what is read from the model (input size, batch
//! axis, class count and names) and one preallocated batch tensor.
//!
//! `detect_batch` letterboxes the frames in parallel (rayon) into the batch tensor, runs the
//! session once per chunk of `max_batch` (frame by frame for a model with a fixed batch of 1),
//! and decodes each image's `[4 + C, N]` slice.

use super::decode::{decode, RawDetection};
use super::letterbox::{letterbox_into, Letterbox};
use super::precision::{load_chosen, Precision, PrecisionSetting};
use super::session::{BoundIo, Device, InferenceError, ModelSession, Provider, RuntimeInfo};
use crate::coco::COCO_CLASSES;
use crate::events::ModelInfo;
use ndarray::{s, Array4, ArrayViewD, ArrayViewMut4, Axis, Ix3};
use opencv::core::Mat;
use parking_lot::Mutex;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `/api/health` shows about the model.
#[derive(Debug, Clone, Serialize)]
pub struct YoloInfo {
    pub name: String,
    pub path: String,
    pub provider: Provider,
    pub runtime: RuntimeInfo,
    pub input_width: usize,
    pub input_height: usize,
    /// `None`: dynamic batch axis.
    pub fixed_batch: Option<usize>,
    pub max_batch: usize,
    pub classes: usize,
    /// Whether runs go through ONNX Runtime's I/O binding ([`BoundIo`]): on by itself on a GPU.
    pub io_binding: bool,
    /// `fp32`, or `int8` for the statically quantised model (`YOLO_PRECISION`, docs/int8.md).
    pub precision: Precision,
}

/// A session on every core that the inference workers share ([`Yolo::load_wide_session`]).
pub type WideSession = Arc<Mutex<ModelSession>>;

/// One image's result: how it was letterboxed, and its detections in source pixels.
pub type ImageDetections = (Letterbox, Vec<RawDetection>);

/// Time spent per phase of one `detect_batch`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchTimings {
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

pub struct Yolo {
    session: ModelSession,
    pub info: YoloInfo,
    pub class_names: Vec<String>,
    input: BatchInput,
    iou: f32,
    /// A session on every core, shared by the workers, for a batch one runs alone
    /// ([`Yolo::load_wide_session`]).
    wide: Option<WideSession>,
    /// Whether the next batches run on `wide`.
    use_wide: bool,
}

/// Where the batch is letterboxed and how the session gets it.
enum BatchInput {
    /// A host array the session reads through a view (no copy): the CPU's best path.
    Host(Array4<f32>),
    /// Buffers bound once with ONNX Runtime's I/O binding: page-locked memory on a GPU.
    Bound(Box<BoundIo>),
}

/// Parses Ultralytics' `names` metadata, `{0: 'person', 1: 'bicycle', ...}`.
pub fn parse_names(meta: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = meta;
    while let Some(colon) = rest.find(": ") {
        rest = &rest[colon + 2..];
        let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') else { break };
        let Some(end) = rest[1..].find(q) else { break };
        names.push(rest[1..1 + end].to_string());
        rest = &rest[1 + end + 1..];
    }
    names
}

impl Yolo {
    /// Loads `path`, checks it is a YOLOv8 detection head (`[B, 3, H, W]` in, `[B, 4 + C, N]`
    /// out) and sizes the batch tensor for `batch_size`.
    pub fn load(
        path: &Path,
        name: String,
        device: &Device,
        dylib: Option<&Path>,
        batch_size: usize,
        iou: f32,
    ) -> Result<Self, InferenceError> {
        Self::load_with_threads(path, name, device, dylib, batch_size, iou, 0)
    }

    /// [`load`](Self::load) with `intra_threads` ONNX Runtime threads (0: one per core), for
    /// one of several inference workers.
    pub fn load_with_threads(
        path: &Path,
        name: String,
        device: &Device,
        dylib: Option<&Path>,
        batch_size: usize,
        iou: f32,
        intra_threads: usize,
    ) -> Result<Self, InferenceError> {
        let session = ModelSession::load_with_threads("YOLO_MODEL", path, device, dylib, intra_threads)?;
        let bad = |reason: String| InferenceError::BadModel { var: "YOLO_MODEL", path: path.display().to_string(), reason };
        let input = session.inputs.first().ok_or_else(|| bad("no input".into()))?.clone();
        let output = session.outputs.first().ok_or_else(|| bad("no output".into()))?.clone();
        if input.shape.len() != 4 || input.shape[1] != 3 || input.shape[2] <= 0 || input.shape[3] <= 0 || !session.input_is(0, "float32") {
            return Err(bad(format!("input {} is {:?} {}, expected float32 [batch, 3, H, W]", input.name, input.shape, input.element)));
        }
        if output.shape.len() != 3 || output.shape[1] <= 4 {
            return Err(bad(format!(
                "output {} is {:?}, expected [batch, 4 + classes, anchors] (a YOLOv8 detection head)",
                output.name, output.shape
            )));
        }
        let classes = (output.shape[1] - 4) as usize;
        let fixed_batch = (input.shape[0] > 0).then_some(input.shape[0] as usize);
        let max_batch = fixed_batch.unwrap_or(batch_size).max(1);
        let (h, w) = (input.shape[2] as usize, input.shape[3] as usize);
        let mut class_names = session.names_metadata.as_deref().map(parse_names).unwrap_or_default();
        if class_names.len() != classes {
            class_names = if classes == COCO_CLASSES.len() {
                COCO_CLASSES.iter().map(|s| s.to_string()).collect()
            } else {
                (0..classes).map(|i| format!("class{i}")).collect()
            };
        }
        let info = YoloInfo {
            name,
            path: path.display().to_string(),
            provider: session.provider,
            runtime: session.runtime.clone(),
            input_width: w,
            input_height: h,
            fixed_batch,
            max_batch,
            classes,
            io_binding: false,
            // the INT8 model is the FP32 one's quantised sibling (scripts/quantize.py)
            precision: if path.to_string_lossy().ends_with(".int8.onnx") { Precision::Int8 } else { Precision::Fp32 },
        };
        log::info!(
            "detect: {} ready on {:?}: input {w}x{h}, batch {}, {classes} classes",
            info.name,
            info.provider,
            fixed_batch.map_or_else(|| format!("dynamic (up to {max_batch})"), |b| b.to_string())
        );
        let mut yolo = Yolo {
            input: BatchInput::Host(Array4::zeros((max_batch, 3, h, w))),
            session,
            info,
            class_names,
            iou,
            wide: None,
            use_wide: false,
        };
        if yolo.info.provider != Provider::Cpu {
            if let Err(e) = yolo.use_io_binding() {
                log::warn!("detect: {}: I/O binding unavailable on {:?}, running without it: {e}", yolo.info.name, yolo.info.provider);
            }
        }
        Ok(yolo)
    }

    /// [`load_with_threads`](Self::load_with_threads) of the FP32 model `path` or its INT8
    /// sibling, as `setting` (`YOLO_PRECISION`) chooses for the provider and this CPU
    /// ([`load_chosen`]).
    #[allow(clippy::too_many_arguments)]
    pub fn load_with_precision(
        path: &Path,
        name: String,
        device: &Device,
        dylib: Option<&Path>,
        batch_size: usize,
        iou: f32,
        intra_threads: usize,
        setting: PrecisionSetting,
    ) -> Result<Self, InferenceError> {
        let load =
            |file: &Path, device: &Device| Self::load_with_threads(file, name.clone(), device, dylib, batch_size, iou, intra_threads);
        let yolo = load_chosen("YOLO_PRECISION", setting, path, device, load, |y: &Yolo| y.info.provider)?;
        log::info!(
            "detect: YOLO_PRECISION={setting:?}: running {} ({:?}) on {:?}",
            yolo.info.path,
            yolo.info.precision,
            yolo.info.provider
        );
        Ok(yolo)
    }

    /// Switches to ONNX Runtime's I/O binding ([`BoundIo`]), after one trial run through it;
    /// on failure nothing changes. Done by itself on a GPU provider; public so tests and the
    /// bench can take the bound path on the CPU.
    pub fn use_io_binding(&mut self) -> Result<(), InferenceError> {
        let (max, h, w) = (self.info.max_batch, self.info.input_height, self.info.input_width);
        let mut io = self.session.bind_io([max, 3, h, w], 0)?;
        let n = self.run_size(1);
        io.batch_mut(n)?.fill(0.0);
        self.session.run_bound(&mut io, n, |o| o.len())?;
        self.input = BatchInput::Bound(Box::new(io));
        self.info.io_binding = true;
        Ok(())
    }

    /// Caps the batch at `n` images (a dynamic batch axis only; a fixed one stays), shrinking
    /// the batch tensor.
    pub fn cap_batch(&mut self, n: usize) {
        let n = n.max(1);
        if self.info.fixed_batch.is_some() || n >= self.info.max_batch {
            return;
        }
        self.info.max_batch = n;
        let (h, w) = (self.info.input_height, self.info.input_width);
        match &mut self.input {
            BatchInput::Host(a) => *a = Array4::zeros((n, 3, h, w)),
            BatchInput::Bound(io) => io.cap_batch(n),
        }
    }

    /// The batch a run of `n` images takes: a fixed batch axis needs a full tensor, a dynamic
    /// one takes exactly `n`.
    fn run_size(&self, n: usize) -> usize {
        if self.info.fixed_batch.is_some() {
            self.info.max_batch
        } else {
            n.clamp(1, self.info.max_batch)
        }
    }

    /// Loads a second session of the model on every core (a quiet pool: it sleeps between
    /// runs), for the workers to share ([`Yolo::share_wide_session`]): a worker that runs a
    /// batch while the others are idle uses it, so one camera alone is detected at the speed of
    /// the whole CPU, not of the one core each worker's own session has (the light-load
    /// latency). `None` off the CPU: a GPU runs every batch whole.
    pub fn load_wide_session(&self, dylib: Option<&Path>) -> Result<Option<WideSession>, InferenceError> {
        if self.info.provider != Provider::Cpu {
            return Ok(None);
        }
        let session = ModelSession::load_quiet("YOLO_MODEL", Path::new(&self.info.path), dylib)?;
        Ok(Some(Arc::new(Mutex::new(session))))
    }

    /// Gives this worker the shared wide session.
    pub fn share_wide_session(&mut self, wide: WideSession) {
        self.wide = Some(wide);
    }

    /// Runs the next batches on the wide session (when there is one) or on the worker's own;
    /// says whether they will run on the wide one.
    pub fn set_wide(&mut self, on: bool) -> bool {
        self.use_wide = on && self.wide.is_some() && matches!(self.input, BatchInput::Host(_));
        self.use_wide
    }

    /// The batch tensor of a run of `n` images (see [`Yolo::run_size`]), to letterbox into.
    fn batch_mut(&mut self, n: usize) -> Result<ArrayViewMut4<'_, f32>, InferenceError> {
        let n = self.run_size(n);
        match &mut self.input {
            BatchInput::Host(a) => Ok(a.slice_mut(s![..n, .., .., ..])),
            BatchInput::Bound(io) => io.batch_mut(n),
        }
    }

    /// One `session.run` on a batch of `n` images; `f` reads the output.
    fn run_batch<R>(&mut self, n: usize, f: impl FnOnce(ArrayViewD<'_, f32>) -> R) -> Result<R, InferenceError> {
        let n = self.run_size(n);
        match &mut self.input {
            BatchInput::Host(a) => {
                let input = a.slice(s![..n, .., .., ..]);
                match &self.wide {
                    Some(wide) if self.use_wide => wide.lock().run_f32(input, 0, f),
                    _ => self.session.run_f32(input, 0, f),
                }
            }
            BatchInput::Bound(io) => self.session.run_bound(io, n, f),
        }
    }

    pub fn model_info(&self) -> ModelInfo {
        let mut info =
            ModelInfo::of_file(Path::new(&self.info.path), &self.info.name, &format!("onnxruntime {}", self.info.runtime.version));
        info.precision = self.info.precision.as_str().into();
        info
    }

    /// Letterboxes up to `max_batch` images into the batch tensor (benchmarks: with
    /// [`Yolo::run_preprocessed`], the bare inference loop without the service around it).
    pub fn preprocess(&mut self, images: &[&Mat]) -> Result<Vec<Letterbox>, InferenceError> {
        let n = images.len().min(self.info.max_batch);
        let mut batch = self.batch_mut(n)?;
        let mut view = batch.slice_mut(s![..n, .., .., ..]);
        let slots: Vec<_> = view.axis_iter_mut(Axis(0)).collect();
        slots
            .into_par_iter()
            .zip(images[..n].par_iter())
            .map(|(dst, img)| letterbox_into(img, dst))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InferenceError::Run(format!("preprocess: {e}")))
    }

    /// One `session.run` on the `n` images [`Yolo::preprocess`] wrote; returns the output's
    /// element count.
    pub fn run_preprocessed(&mut self, n: usize) -> Result<usize, InferenceError> {
        self.run_batch(n, |o| o.len())
    }

    /// Detects objects in each image (8-bit BGR) with the confidence threshold of its camera.
    pub fn detect_batch(&mut self, images: &[&Mat], conf: &[f32]) -> Result<(Vec<ImageDetections>, BatchTimings), InferenceError> {
        let mut out = Vec::with_capacity(images.len());
        let mut t = BatchTimings::default();
        let max = self.info.max_batch;
        for (chunk_i, chunk) in images.chunks(max).enumerate() {
            let n = chunk.len();
            let t0 = Instant::now();
            let boxes = self.preprocess(chunk)?;
            let t1 = Instant::now();
            t.preprocess += t1 - t0;
            let iou = self.iou;
            let conf = &conf[chunk_i * max..chunk_i * max + n];
            let mut post = Duration::ZERO;
            let dets = self.run_batch(n, |o| {
                let tp = Instant::now();
                let o = o.into_dimensionality::<Ix3>();
                let r = o
                    .map(|o| (0..n).into_par_iter().map(|i| decode(o.index_axis(Axis(0), i), conf[i], iou, &boxes[i])).collect::<Vec<_>>());
                post = tp.elapsed();
                r
            })?;
            let dets = dets.map_err(|e| InferenceError::Run(format!("output shape: {e}")))?;
            let total = t1.elapsed();
            t.postprocess += post;
            t.inference += total.saturating_sub(post);
            out.extend(boxes.into_iter().zip(dets));
        }
        Ok((out, t))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_names;

    #[test]
    fn names_metadata_parses() {
        let n = parse_names("{0: 'person', 1: 'traffic light', 2: \"cell phone\"}");
        assert_eq!(n, ["person", "traffic light", "cell phone"]);
        assert!(parse_names("").is_empty());
    }
}
