//! The YOLOv8 detector: a [`ModelSession`] plus what is read from the model (input size, batch
//! axis, class count and names) and one preallocated batch tensor.
//!
//! `detect_batch` letterboxes the frames in parallel (rayon) into the batch tensor, runs the
//! session once per chunk of `max_batch` (frame by frame for a model with a fixed batch of 1),
//! and decodes each image's `[4 + C, N]` slice.

use super::postprocess::{decode, RawDetection};
use super::preprocess::{letterbox_into, Letterbox};
use super::session::{InferenceError, ModelSession, Provider, RuntimeInfo};
use crate::coco::COCO_CLASSES;
use crate::config::InferenceDevice;
use crate::events::ModelInfo;
use ndarray::{s, Array4, Axis, Ix3};
use opencv::core::Mat;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
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
}

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
    batch: Array4<f32>,
    iou: f32,
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
        device: InferenceDevice,
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
        device: InferenceDevice,
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
        };
        log::info!(
            "detect: {} ready on {:?}: input {w}x{h}, batch {}, {classes} classes",
            info.name,
            info.provider,
            fixed_batch.map_or_else(|| format!("dynamic (up to {max_batch})"), |b| b.to_string())
        );
        Ok(Yolo { batch: Array4::zeros((max_batch, 3, h, w)), session, info, class_names, iou })
    }

    pub fn model_info(&self) -> ModelInfo {
        ModelInfo { model_type: self.info.name.clone(), version: format!("onnxruntime {}", self.info.runtime.version) }
    }

    /// Letterboxes up to `max_batch` images into the batch tensor (benchmarks: with
    /// [`Yolo::run_preprocessed`], the bare inference loop without the service around it).
    pub fn preprocess(&mut self, images: &[&Mat]) -> Result<Vec<Letterbox>, InferenceError> {
        let n = images.len().min(self.info.max_batch);
        let mut view = self.batch.slice_mut(s![..n, .., .., ..]);
        let slots: Vec<_> = view.axis_iter_mut(Axis(0)).collect();
        slots
            .into_par_iter()
            .zip(images[..n].par_iter())
            .map(|(dst, img)| letterbox_into(img, dst))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InferenceError::Run(format!("preprocess: {e}")))
    }

    /// One `session.run` on the first `n` preprocessed images; returns the output's element count.
    pub fn run_preprocessed(&mut self, n: usize) -> Result<usize, InferenceError> {
        let n = if self.info.fixed_batch.is_some() { self.info.max_batch } else { n.clamp(1, self.info.max_batch) };
        self.session.run_f32(self.batch.slice(s![..n, .., .., ..]), 0, |o| o.len())
    }

    /// Detects objects in each image (8-bit BGR) with the confidence threshold of its camera.
    pub fn detect_batch(&mut self, images: &[&Mat], conf: &[f32]) -> Result<(Vec<ImageDetections>, BatchTimings), InferenceError> {
        let mut out = Vec::with_capacity(images.len());
        let mut t = BatchTimings::default();
        let max = self.info.max_batch;
        for (chunk_i, chunk) in images.chunks(max).enumerate() {
            let n = chunk.len();
            // a fixed batch axis needs a full tensor; a dynamic one takes exactly n
            let run_n = if self.info.fixed_batch.is_some() { max } else { n };
            let t0 = Instant::now();
            let boxes = self.preprocess(chunk)?;
            let t1 = Instant::now();
            t.preprocess += t1 - t0;
            let iou = self.iou;
            let conf = &conf[chunk_i * max..chunk_i * max + n];
            let mut post = Duration::ZERO;
            let dets = self.session.run_f32(self.batch.slice(s![..run_n, .., .., ..]), 0, |o| {
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
