//! The plate reader: PaddleOCR PP-OCRv4 text recognition (CTC) on a plate crop.
//!
//! Input `[1, 3, 48, W]`: the BGR crop resized to height 48 keeping its aspect ratio (width up
//! to `MAX_WIDTH`), normalised as (pixel / 255 - 0.5) / 0.5, right-padded with 0 to `MAX_WIDTH`.
//! Output `[1, W / 8, classes]` softmax, decoded greedily (see `text::ctc_greedy`).

use super::text::{ctc_greedy, Charset, Read};
use crate::infer::{Device, InferenceError, ModelSession, Provider};
use ndarray::{Array4, Axis, Ix3};
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use std::path::Path;

const HEIGHT: i32 = 48;
const MAX_WIDTH: i32 = 320;

pub struct PlateReader {
    session: ModelSession,
    charset: Charset,
    input: Array4<f32>,
}

impl PlateReader {
    pub fn load(model: &Path, dict: &Path, device: &Device, dylib: Option<&Path>) -> Result<Self, InferenceError> {
        let text = std::fs::read_to_string(dict)
            .map_err(|e| InferenceError::ModelMissing { var: "ANPR_OCR_DICT", path: format!("{} ({e})", dict.display()) })?;
        let charset = Charset::from_dict(&text);
        let session = ModelSession::load("ANPR_OCR_MODEL", model, device, dylib)?;
        let bad = |reason: String| InferenceError::BadModel { var: "ANPR_OCR_MODEL", path: model.display().to_string(), reason };
        let o = session.outputs.first().ok_or_else(|| bad("no output".into()))?;
        if o.shape.len() != 3 {
            return Err(bad(format!("output {:?}, expected [N, T, classes]", o.shape)));
        }
        if o.shape[2] > 0 && o.shape[2] as usize != charset.len() {
            return Err(bad(format!(
                "{} classes but ANPR_OCR_DICT gives {} (blank + {} lines + space)",
                o.shape[2],
                charset.len(),
                charset.len() - 2
            )));
        }
        Ok(PlateReader { session, charset, input: Array4::zeros((1, 3, HEIGHT as usize, MAX_WIDTH as usize)) })
    }

    pub fn provider(&self) -> Provider {
        self.session.provider
    }

    /// Reads the text of a plate crop (8-bit BGR).
    pub fn read(&mut self, plate: &Mat) -> Result<Read, InferenceError> {
        let err = |e: opencv::Error| InferenceError::Run(format!("ocr preprocess: {e}"));
        let (w, h) = (plate.cols(), plate.rows());
        if w <= 0 || h <= 0 {
            return Err(InferenceError::Run("empty plate crop".into()));
        }
        let new_w = ((HEIGHT as f64 * w as f64 / h as f64).ceil() as i32).clamp(1, MAX_WIDTH);
        let mut resized = Mat::default();
        imgproc::resize(plate, &mut resized, Size::new(new_w, HEIGHT), 0.0, 0.0, imgproc::INTER_LINEAR).map_err(err)?;
        let bytes = resized.data_bytes().map_err(err)?;
        self.input.fill(0.0);
        let mut t = self.input.index_axis_mut(Axis(0), 0);
        for y in 0..HEIGHT as usize {
            for x in 0..new_w as usize {
                let px = &bytes[(y * new_w as usize + x) * 3..][..3];
                for c in 0..3 {
                    t[[c, y, x]] = (px[c] as f32 / 255.0 - 0.5) / 0.5;
                }
            }
        }
        let charset = &self.charset;
        self.session
            .run_f32(self.input.view(), 0, |o| o.into_dimensionality::<Ix3>().map(|o| ctc_greedy(o.index_axis(Axis(0), 0), charset)))?
            .map_err(|e| InferenceError::Run(format!("ocr output: {e}")))
    }
}
