//! The plate detector: a YOLOv8 (detect or seg) model with one class, `plate`, run on a vehicle
//! crop. Only boxes are used: rows 0..4 of `output0` are cx, cy, w, h and row 4 the plate score
//! (mask coefficients and prototypes of a seg model are ignored). fp16, fp32 and the INT8 model
//! `scripts/quantize.py` makes (float32 in and out) all work; the batch is 1.
//!
//! `ANPR_PLATE_PRECISION` picks the file like `YOLO_PRECISION` does for the object detector
//! (`auto`: the `.int8.onnx` sibling on a CPU with VNNI, where it ran 2.8x as fast as the FP16
//! file, which ONNX Runtime's CPU provider computes in FP32 through casts; docs/int8.md).

use crate::infer::decode::{decode, RawDetection};
use crate::infer::letterbox::letterbox_into;
use crate::infer::precision::load_chosen;
use crate::infer::{Device, InferenceError, ModelSession, PrecisionSetting, Provider};
use ndarray::{s, Array4, Axis, Ix3};
use opencv::core::Mat;
use std::path::Path;

pub struct PlateDetector {
    session: ModelSession,
    input: Array4<f32>,
    fp16: bool,
    /// The file loaded.
    pub path: String,
}

impl PlateDetector {
    /// The float model `path` or its INT8 sibling, as `setting` (`ANPR_PLATE_PRECISION`) chooses.
    pub fn load_with_precision(
        path: &Path,
        setting: PrecisionSetting,
        device: &Device,
        dylib: Option<&Path>,
    ) -> Result<Self, InferenceError> {
        let plate = load_chosen("ANPR_PLATE_PRECISION", setting, path, device, |f, d| Self::load(f, d, dylib), |p: &Self| p.provider())?;
        log::info!("anpr: ANPR_PLATE_PRECISION={setting:?}: running {} ({}) on {:?}", plate.path, plate.precision(), plate.provider());
        Ok(plate)
    }

    /// Exactly the file `path`.
    pub fn load(path: &Path, device: &Device, dylib: Option<&Path>) -> Result<Self, InferenceError> {
        let session = ModelSession::load("ANPR_PLATE_MODEL", path, device, dylib)?;
        let bad = |reason: String| InferenceError::BadModel { var: "ANPR_PLATE_MODEL", path: path.display().to_string(), reason };
        let i = session.inputs.first().ok_or_else(|| bad("no input".into()))?;
        let o = session.outputs.first().ok_or_else(|| bad("no output".into()))?;
        if i.shape.len() != 4 || i.shape[1] != 3 || i.shape[2] <= 0 || i.shape[3] <= 0 {
            return Err(bad(format!("input {:?}, expected [1, 3, H, W]", i.shape)));
        }
        if o.shape.len() != 3 || o.shape[1] < 5 {
            return Err(bad(format!("output {:?}, expected [1, 4 + 1 (+ mask coefficients), N]", o.shape)));
        }
        let fp16 = session.input_is(0, "float16");
        let (h, w) = (i.shape[2] as usize, i.shape[3] as usize);
        Ok(PlateDetector { input: Array4::zeros((1, 3, h, w)), session, fp16, path: path.display().to_string() })
    }

    pub fn provider(&self) -> Provider {
        self.session.provider
    }

    /// `int8` (the quantised sibling), `fp16` or `fp32`: what `/api/health` reports.
    pub fn precision(&self) -> &'static str {
        if self.path.ends_with(".int8.onnx") {
            "int8"
        } else if self.fp16 {
            "fp16"
        } else {
            "fp32"
        }
    }

    /// The best plate in `crop` (8-bit BGR) scoring above `min_score`, in crop pixels.
    pub fn detect(&mut self, crop: &Mat, min_score: f32) -> Result<Option<RawDetection>, InferenceError> {
        let lb = letterbox_into(crop, self.input.index_axis_mut(Axis(0), 0))
            .map_err(|e| InferenceError::Run(format!("plate preprocess: {e}")))?;
        let pick = |o: ndarray::ArrayViewD<f32>| -> Option<RawDetection> {
            let o = o.into_dimensionality::<Ix3>().ok()?;
            // rows 0..5: box + plate score; the rest are mask coefficients
            let rows = o.index_axis(Axis(0), 0);
            decode(rows.slice(s![..5, ..]), min_score, 0.45, &lb).into_iter().next()
        };
        if self.fp16 {
            self.session.run_f16(self.input.view(), 0, pick)
        } else {
            self.session.run_f32(self.input.view(), 0, pick)
        }
    }
}
