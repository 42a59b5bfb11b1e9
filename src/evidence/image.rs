//! Image helpers of the evidence (pure, OpenCV): JPEG encode and decode, boxes and polygons
//! drawn on a frame, scaling to a height, the square thumbnail crop, the edge test of the
//! best-frame rule.

use crate::events::BoundingBox;
use opencv::core::{Mat, Point, Rect, Scalar, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

/// Why an image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("not a JPEG OpenCV can decode")]
    Undecodable,
}

/// Least and most side of a thumbnail, in pixels.
pub const THUMB_MIN: i32 = 160;
pub const THUMB_MAX: i32 = 320;
/// A thumbnail shows this much around the box (1.2x its larger side).
pub const THUMB_SCALE: f32 = 1.2;
/// A box within this many pixels of the frame's border touches the edge.
pub const EDGE_PX: f32 = 2.0;

/// JPEG of `img` (8-bit BGR) at `quality` 1..100.
pub fn encode_jpeg(img: &(impl MatTraitConst + opencv::core::ToInputArray), quality: i32) -> Result<Vec<u8>, ImageError> {
    let mut buf = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality.clamp(1, 100)]);
    imgcodecs::imencode(".jpg", img, &mut buf, &params)?;
    Ok(buf.to_vec())
}

/// The BGR picture of a JPEG.
pub fn decode_jpeg(bytes: &[u8]) -> Result<Mat, ImageError> {
    let m = imgcodecs::imdecode(&Vector::<u8>::from_slice(bytes), imgcodecs::IMREAD_COLOR)?;
    if m.empty() {
        return Err(ImageError::Undecodable);
    }
    Ok(m)
}

/// Whether `bbox` (x1, y1, x2, y2 pixels) touches the border of a `w` x `h` frame.
pub fn touches_edge(bbox: &[f32; 4], w: f32, h: f32) -> bool {
    bbox[0] <= EDGE_PX || bbox[1] <= EDGE_PX || bbox[2] >= w - 1.0 - EDGE_PX || bbox[3] >= h - 1.0 - EDGE_PX
}

/// A normalised box in pixels of `img`, clipped to it (at least 1x1).
pub fn to_rect(b: &BoundingBox, w: i32, h: i32) -> Rect {
    let x1 = ((b.x * w as f32).round() as i32).clamp(0, w - 1);
    let y1 = ((b.y * h as f32).round() as i32).clamp(0, h - 1);
    let x2 = (((b.x + b.width) * w as f32).round() as i32).clamp(x1 + 1, w);
    let y2 = (((b.y + b.height) * h as f32).round() as i32).clamp(y1 + 1, h);
    Rect::new(x1, y1, x2 - x1, y2 - y1)
}

/// A stable colour per class name (BGR).
fn colour(name: &str) -> Scalar {
    const PALETTE: [(f64, f64, f64); 8] = [
        (56.0, 56.0, 255.0),
        (151.0, 157.0, 255.0),
        (31.0, 112.0, 255.0),
        (29.0, 178.0, 255.0),
        (49.0, 210.0, 207.0),
        (10.0, 249.0, 72.0),
        (187.0, 212.0, 0.0),
        (255.0, 115.0, 100.0),
    ];
    let i = name.bytes().fold(7usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize)) % PALETTE.len();
    let (b, g, r) = PALETTE[i];
    Scalar::new(b, g, r, 0.0)
}

/// Draws a labelled box (normalised) on `img`.
pub fn draw_box(img: &mut Mat, b: &BoundingBox, label: &str, class_name: &str) -> Result<(), ImageError> {
    let (w, h) = (img.cols(), img.rows());
    let r = to_rect(b, w, h);
    let c = colour(class_name);
    let thick = (w.max(h) / 400).max(2);
    imgproc::rectangle(img, r, c, thick, imgproc::LINE_8, 0)?;
    if !label.is_empty() {
        let scale = (w.max(h) as f64 / 1600.0).max(0.45);
        let mut base = 0;
        let size = imgproc::get_text_size(label, imgproc::FONT_HERSHEY_SIMPLEX, scale, 1, &mut base)?;
        let top = if r.y - size.height - 6 >= 0 { r.y - size.height - 6 } else { r.y };
        imgproc::rectangle(img, Rect::new(r.x, top, size.width + 6, size.height + 6), c, imgproc::FILLED, imgproc::LINE_8, 0)?;
        imgproc::put_text(
            img,
            label,
            Point::new(r.x + 3, top + size.height + 2),
            imgproc::FONT_HERSHEY_SIMPLEX,
            scale,
            Scalar::all(255.0),
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    Ok(())
}

/// Draws a closed polygon (normalised points) with its name.
pub fn draw_polygon(img: &mut Mat, name: &str, points: &[[f32; 2]], colour_bgr: Scalar) -> Result<(), ImageError> {
    let (w, h) = (img.cols() as f32, img.rows() as f32);
    let pts: Vector<Point> = points.iter().map(|p| Point::new((p[0] * w) as i32, (p[1] * h) as i32)).collect();
    let mut polys = Vector::<Vector<Point>>::new();
    polys.push(pts.clone());
    let closed = points.len() > 2;
    imgproc::polylines(img, &polys, closed, colour_bgr, 2, imgproc::LINE_AA, 0)?;
    if let Some(p) = pts.iter().next() {
        imgproc::put_text(img, name, p, imgproc::FONT_HERSHEY_SIMPLEX, 0.6, colour_bgr, 2, imgproc::LINE_AA, false)?;
    }
    Ok(())
}

/// `img` scaled to `height` pixels (aspect kept); unchanged when it is that high already or
/// `height` is larger (never upscaled).
pub fn scale_to_height(img: Mat, height: Option<u32>) -> Result<Mat, ImageError> {
    let Some(target) = height.map(|h| h as i32) else { return Ok(img) };
    if target >= img.rows() || target < 1 {
        return Ok(img);
    }
    let w = ((img.cols() as f64 * target as f64 / img.rows() as f64).round() as i32).max(1);
    let mut out = Mat::default();
    imgproc::resize(&img, &mut out, Size::new(w, target), 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(out)
}

/// The square region of a `w` x `h` frame shown by a thumbnail of `bbox` (pixels x1, y1, x2,
/// y2): centred on the box, [`THUMB_SCALE`] times its larger side, moved inside the frame
/// (smaller only when the frame is).
pub fn thumbnail_rect(bbox: &[f32; 4], w: i32, h: i32) -> Rect {
    let (cx, cy) = ((bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0);
    let side = (((bbox[2] - bbox[0]).max(bbox[3] - bbox[1]) * THUMB_SCALE).ceil() as i32).max(2).min(w.min(h));
    let x = ((cx - side as f32 / 2.0).round() as i32).clamp(0, w - side);
    let y = ((cy - side as f32 / 2.0).round() as i32).clamp(0, h - side);
    Rect::new(x, y, side, side)
}

/// The thumbnail of `bbox` in `img`: [`thumbnail_rect`] scaled to [`THUMB_MIN`]..[`THUMB_MAX`] px.
pub fn thumbnail(img: &Mat, bbox: &[f32; 4]) -> Result<Mat, ImageError> {
    let r = thumbnail_rect(bbox, img.cols(), img.rows());
    let crop = Mat::roi(img, r)?;
    let side = r.width.clamp(THUMB_MIN, THUMB_MAX);
    let mut out = Mat::default();
    let interp = if side < r.width { imgproc::INTER_AREA } else { imgproc::INTER_LINEAR };
    imgproc::resize(&crop, &mut out, Size::new(side, side), 0.0, 0.0, interp)?;
    Ok(out)
}

/// The part of `img` inside `b` (normalised) grown by `margin` of its size on each side.
pub fn crop(img: &Mat, b: &BoundingBox, margin: f32) -> Result<Mat, ImageError> {
    let grown = BoundingBox {
        x: b.x - b.width * margin,
        y: b.y - b.height * margin,
        width: b.width * (1.0 + 2.0 * margin),
        height: b.height * (1.0 + 2.0 * margin),
    };
    let r = to_rect(&grown, img.cols(), img.rows());
    Ok(Mat::roi(img, r)?.try_clone()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::CV_8UC3;

    #[test]
    fn thumbnail_is_square_bounded_and_inside() {
        let img = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(90.0)).unwrap();
        // a small box: 1.2x of 50 is 60 px, scaled up to the 160 px least
        let t = thumbnail(&img, &[100.0, 100.0, 130.0, 150.0]).unwrap();
        assert_eq!((t.cols(), t.rows()), (160, 160));
        // a tall box at the edge: the square stays inside the frame and at most 320 px
        let r = thumbnail_rect(&[600.0, 0.0, 640.0, 470.0], 640, 480);
        assert!(r.x + r.width <= 640 && r.y + r.height <= 480 && r.width == r.height, "{r:?}");
        assert_eq!(thumbnail(&img, &[600.0, 0.0, 640.0, 470.0]).unwrap().cols(), 320);
    }

    #[test]
    fn jpeg_round_trip_and_scaling() {
        let mut img = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(30.0)).unwrap();
        draw_box(&mut img, &BoundingBox { x: 0.1, y: 0.1, width: 0.3, height: 0.5 }, "person 0.91 #3", "person").unwrap();
        let j = encode_jpeg(&img, 70).unwrap();
        assert_eq!(&j[..2], &[0xff, 0xd8]);
        let back = decode_jpeg(&j).unwrap();
        assert_eq!((back.cols(), back.rows()), (640, 480));
        let small = scale_to_height(back, Some(240)).unwrap();
        assert_eq!((small.cols(), small.rows()), (320, 240));
        assert!(decode_jpeg(b"not a jpeg").is_err());
    }

    #[test]
    fn edge_test() {
        assert!(touches_edge(&[0.0, 10.0, 50.0, 60.0], 640.0, 480.0));
        assert!(touches_edge(&[10.0, 10.0, 639.0, 60.0], 640.0, 480.0));
        assert!(!touches_edge(&[10.0, 10.0, 600.0, 400.0], 640.0, 480.0));
    }
}
