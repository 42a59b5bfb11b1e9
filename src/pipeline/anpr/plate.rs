//! The plate detector: a YOLOv8 (detect or seg) model with one class, `plate`, run on a vehicle
//! crop. Only boxes are used: rows 0..4 of `output0` are cx, cy, w, h and row 4 the plate score
//! (mask coefficients and prototypes of a seg model are ignored). fp16 and fp32 models both work;
//! the batch is 1.

use crate::infer::decode::{decode, RawDetection};
use crate::infer::letterbox::letterbox_into;
use crate::infer::{Device, InferenceError, ModelSession, Provider};
use ndarray::{s, Array4, Axis, Ix3};
use opencv::core::Mat;
use std::path::Path;

pub struct PlateDetector {
    session: ModelSession,
    input: Array4<f32>,
    fp16: bool,
}

impl PlateDetector {
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
        Ok(PlateDetector { input: Array4::zeros((1, 3, h, w)), session, fp16 })
    }

    pub fn provider(&self) -> Provider {
        self.session.provider
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
