//! Letterbox preprocessing, exactly as Ultralytics does it: scale to fit the model's input
//! keeping the aspect ratio (bilinear), pad the rest with grey 114 centred, BGR -> RGB, /255,
//! CHW float32. [`Letterbox`] records scale and padding so postprocessing can map boxes back.

use ndarray::ArrayViewMut3;
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

/// How one source image was fitted into the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Source pixels -> model pixels.
    pub scale: f32,
    /// Padding left and top, model pixels.
    pub pad_x: f32,
    pub pad_y: f32,
    /// Source size.
    pub src_w: i32,
    pub src_h: i32,
}

impl Letterbox {
    /// Computes the fit of a `src_w` x `src_h` image into `dst_w` x `dst_h` (Ultralytics
    /// `LetterBox(auto=False, scaleup=True, center=True)`, including its rounding).
    pub fn fit(src_w: i32, src_h: i32, dst_w: i32, dst_h: i32) -> (Letterbox, Size) {
        let r = (dst_h as f64 / src_h as f64).min(dst_w as f64 / src_w as f64);
        // Python's round() is round-half-even
        let new_w = (src_w as f64 * r).round_ties_even() as i32;
        let new_h = (src_h as f64 * r).round_ties_even() as i32;
        let dw = (dst_w - new_w) as f64 / 2.0;
        let dh = (dst_h - new_h) as f64 / 2.0;
        let left = (dw - 0.1).round_ties_even();
        let top = (dh - 0.1).round_ties_even();
        (Letterbox { scale: r as f32, pad_x: left as f32, pad_y: top as f32, src_w, src_h }, Size::new(new_w, new_h))
    }

    /// Maps a box from model pixels back to source pixels, clipped to the image.
    pub fn unmap(&self, x1: f32, y1: f32, x2: f32, y2: f32) -> [f32; 4] {
        let (w, h) = (self.src_w as f32, self.src_h as f32);
        [
            ((x1 - self.pad_x) / self.scale).clamp(0.0, w),
            ((y1 - self.pad_y) / self.scale).clamp(0.0, h),
            ((x2 - self.pad_x) / self.scale).clamp(0.0, w),
            ((y2 - self.pad_y) / self.scale).clamp(0.0, h),
        ]
    }
}

/// The grey of the padding, as a model input value.
const PAD: f32 = 114.0 / 255.0;

/// `i as f32 / 255.0` for every byte `i`.
fn unit_table() -> &'static [f32; 256] {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|i| i as f32 / 255.0))
}

/// Letterboxes `img` (8-bit BGR) into `dst` (`[3, H, W]`, RGB, 0..1).
pub fn letterbox_into(img: &Mat, mut dst: ArrayViewMut3<f32>) -> opencv::Result<Letterbox> {
    let (dh, dw) = (dst.shape()[1] as i32, dst.shape()[2] as i32);
    let (lb, size) = Letterbox::fit(img.cols(), img.rows(), dw, dh);
    let resized;
    let src = if size.width == img.cols() && size.height == img.rows() {
        img
    } else {
        let mut r = Mat::default();
        imgproc::resize(img, &mut r, size, 0.0, 0.0, imgproc::INTER_LINEAR)?;
        resized = r;
        &resized
    };
    let cont;
    let src = if src.is_continuous() {
        src
    } else {
        cont = src.try_clone()?;
        &cont
    };
    let bytes = src.data_bytes()?;
    let (w, h) = (size.width as usize, size.height as usize);
    let (px, py) = (lb.pad_x as usize, lb.pad_y as usize);
    let (dw, dh) = (dw as usize, dh as usize);
    let out =
        dst.as_slice_mut().ok_or_else(|| opencv::Error::new(opencv::core::StsBadArg, "letterbox target is not contiguous".to_string()))?;
    // One pass over the target, row by row: grey where the picture does not reach, the
    // picture's pixels elsewhere (no fill of the whole tensor first: at 640x640 that was a
    // 4.9 MB write, three quarters of it overwritten at once). A table turns a byte into its
    // value / 255 (the same f32 the division gives, without a division per channel).
    let unit = unit_table();
    for (c, plane) in out.chunks_exact_mut(dh * dw).enumerate() {
        // planes are R, G, B; the source is B, G, R
        let channel = 2 - c;
        for (y, row) in plane.chunks_exact_mut(dw).enumerate() {
            if y < py || y >= py + h {
                row.fill(PAD);
                continue;
            }
            let src_row = &bytes[(y - py) * w * 3..(y - py + 1) * w * 3];
            row[..px].fill(PAD);
            row[px + w..].fill(PAD);
            for (o, bgr) in row[px..px + w].iter_mut().zip(src_row.chunks_exact(3)) {
                *o = unit[bgr[channel] as usize];
            }
        }
    }
    Ok(lb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;
    use opencv::core::{Scalar, CV_8UC3};

    #[test]
    fn fit_matches_ultralytics_rounding() {
        // 810x1080 (bus.jpg) into 640: r = 0.5926, new 480x640, pad left 80
        let (lb, size) = Letterbox::fit(810, 1080, 640, 640);
        assert_eq!((size.width, size.height), (480, 640));
        assert_eq!((lb.pad_x, lb.pad_y), (80.0, 0.0));
        // 768x576: new 640x480, pad top 80
        let (lb, size) = Letterbox::fit(768, 576, 640, 640);
        assert_eq!((size.width, size.height), (640, 480));
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 80.0));
        // odd padding: 518x331 -> 640x409, dh = 115.5: top 115, bottom 116
        let (lb, size) = Letterbox::fit(518, 331, 640, 640);
        assert_eq!(size.height, 409);
        assert_eq!(lb.pad_y, 115.0);
    }

    #[test]
    fn unmap_inverts_the_fit() {
        let (lb, _) = Letterbox::fit(768, 576, 640, 640);
        let [x1, y1, x2, y2] = lb.unmap(0.0, 80.0, 640.0, 560.0);
        assert!((x1, y1).0.abs() < 1e-3 && y1.abs() < 1e-3);
        assert!((x2 - 768.0).abs() < 1e-3 && (y2 - 576.0).abs() < 1e-3);
    }

    /// The one-pass letterbox writes exactly what the plain definition gives (fill grey, then
    /// each pixel's channels / 255 into the R, G, B planes), for padding on either axis and
    /// odd sizes.
    #[test]
    fn letterbox_equals_the_plain_definition() {
        for (w, h) in [(97, 61), (61, 97), (64, 64), (130, 47)] {
            let mut img = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(0.0)).unwrap();
            opencv::core::randu(&mut img, &Scalar::all(0.0), &Scalar::all(256.0)).unwrap();
            let mut ours = Array3::<f32>::zeros((3, 64, 64));
            let lb = letterbox_into(&img, ours.view_mut()).unwrap();
            let (_, size) = Letterbox::fit(w, h, 64, 64);
            let mut resized = Mat::default();
            imgproc::resize(&img, &mut resized, size, 0.0, 0.0, imgproc::INTER_LINEAR).unwrap();
            let mut plain = Array3::<f32>::from_elem((3, 64, 64), PAD);
            for y in 0..size.height {
                for x in 0..size.width {
                    let p = resized.at_2d::<opencv::core::Vec3b>(y, x).unwrap();
                    let (ty, tx) = ((y + lb.pad_y as i32) as usize, (x + lb.pad_x as i32) as usize);
                    for c in 0..3 {
                        plain[[c, ty, tx]] = p[2 - c] as f32 / 255.0;
                    }
                }
            }
            assert_eq!(ours, plain, "{w}x{h}");
        }
    }

    #[test]
    fn letterbox_writes_rgb_planes_and_grey_padding() {
        // a pure blue (BGR 255,0,0) 100x50 image
        let img = Mat::new_rows_cols_with_default(50, 100, CV_8UC3, Scalar::new(255.0, 0.0, 0.0, 0.0)).unwrap();
        let mut t = Array3::<f32>::zeros((3, 64, 64));
        let lb = letterbox_into(&img, t.view_mut()).unwrap();
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 16.0));
        assert_eq!(t[[0, 0, 0]], PAD, "padding is grey");
        assert_eq!(t[[0, 32, 32]], 0.0, "red plane");
        assert_eq!(t[[2, 32, 32]], 1.0, "blue plane");
    }
}
