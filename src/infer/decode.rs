//! Pure postprocessing of YOLOv8 output: decode `[4 + C, N]` (cx, cy, w, h, class scores), keep
//! the best class per anchor above the threshold, class-aware NMS, boxes back through the
//! letterbox to source pixels. Mirrors Ultralytics' `non_max_suppression` + `scale_boxes`.
//! Box geometry shared by detect, ANPR and tracking: [`iou`], [`normalise`].

use super::letterbox::Letterbox;
use crate::events::BoundingBox;
use ndarray::ArrayView2;

/// A detection in source-image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection {
    pub class_id: usize,
    pub confidence: f32,
    /// x1, y1, x2, y2.
    pub bbox: [f32; 4],
}

/// Most candidates that enter NMS (Ultralytics `max_nms`).
const MAX_NMS: usize = 30_000;
/// Most detections kept per image (Ultralytics `max_det`).
pub const MAX_DET: usize = 300;

/// Intersection over union of two x1y1x2y2 boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Decodes one image's output `[4 + C, N]` into detections in source pixels.
pub fn decode(out: ArrayView2<f32>, conf_threshold: f32, iou_threshold: f32, lb: &Letterbox) -> Vec<RawDetection> {
    let classes = out.nrows().saturating_sub(4);
    let n = out.ncols();
    if classes == 0 {
        return Vec::new();
    }
    // best class per anchor, row by row (contiguous reads)
    let mut best = vec![f32::MIN; n];
    let mut best_class = vec![0usize; n];
    for c in 0..classes {
        for (j, &s) in out.row(4 + c).iter().enumerate() {
            if s > best[j] {
                best[j] = s;
                best_class[j] = c;
            }
        }
    }
    let (cx, cy, w, h) = (out.row(0), out.row(1), out.row(2), out.row(3));
    let mut cands: Vec<RawDetection> = (0..n)
        .filter(|&j| best[j] > conf_threshold)
        .map(|j| RawDetection {
            class_id: best_class[j],
            confidence: best[j],
            bbox: [cx[j] - w[j] / 2.0, cy[j] - h[j] / 2.0, cx[j] + w[j] / 2.0, cy[j] + h[j] / 2.0],
        })
        .collect();
    cands.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    cands.truncate(MAX_NMS);
    let mut kept = nms(&cands, iou_threshold);
    for d in &mut kept {
        let [x1, y1, x2, y2] = d.bbox;
        d.bbox = lb.unmap(x1, y1, x2, y2);
    }
    kept
}

/// Class-aware greedy NMS over candidates sorted by confidence (highest first).
pub fn nms(sorted: &[RawDetection], iou_threshold: f32) -> Vec<RawDetection> {
    let mut kept: Vec<RawDetection> = Vec::new();
    for d in sorted {
        if kept.len() >= MAX_DET {
            break;
        }
        if !kept.iter().any(|k| k.class_id == d.class_id && iou(&k.bbox, &d.bbox) > iou_threshold) {
            kept.push(*d);
        }
    }
    kept
}

/// A pixel box of a `w` x `h` frame, normalised.
pub fn normalise(b: &[f32; 4], w: f32, h: f32) -> BoundingBox {
    let [x1, y1, x2, y2] = *b;
    BoundingBox { x: x1 / w, y: y1 / h, width: (x2 - x1) / w, height: (y2 - y1) / h }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn lb() -> Letterbox {
        Letterbox { scale: 1.0, pad_x: 0.0, pad_y: 0.0, src_w: 640, src_h: 640 }
    }

    /// An output with `anchors` columns, each (cx, cy, w, h, class, score).
    fn output(classes: usize, anchors: &[(f32, f32, f32, f32, usize, f32)]) -> Array2<f32> {
        let mut o = Array2::zeros((4 + classes, anchors.len()));
        for (j, &(cx, cy, w, h, c, s)) in anchors.iter().enumerate() {
            o[[0, j]] = cx;
            o[[1, j]] = cy;
            o[[2, j]] = w;
            o[[3, j]] = h;
            o[[4 + c, j]] = s;
        }
        o
    }

    #[test]
    fn iou_basics() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nms_is_class_aware() {
        let o = output(
            3,
            &[
                (100.0, 100.0, 50.0, 50.0, 0, 0.9),
                (102.0, 100.0, 50.0, 50.0, 0, 0.8), // same class, overlapping: suppressed
                (102.0, 100.0, 50.0, 50.0, 1, 0.7), // other class, overlapping: kept
                (400.0, 400.0, 50.0, 50.0, 0, 0.6), // far away: kept
                (400.0, 100.0, 50.0, 50.0, 2, 0.2), // below threshold
            ],
        );
        let d = decode(o.view(), 0.25, 0.45, &lb());
        let got: Vec<(usize, f32)> = d.iter().map(|d| (d.class_id, d.confidence)).collect();
        assert_eq!(got, [(0, 0.9), (1, 0.7), (0, 0.6)]);
        assert_eq!(d[0].bbox, [75.0, 75.0, 125.0, 125.0]);
    }

    #[test]
    fn boxes_map_back_through_the_letterbox() {
        let (lb, _) = Letterbox::fit(768, 576, 640, 640);
        let o = output(1, &[(320.0, 320.0, 64.0, 48.0, 0, 0.9)]);
        let d = decode(o.view(), 0.25, 0.45, &lb);
        let [x1, y1, x2, y2] = d[0].bbox;
        // model (288,296)-(352,344) -> source: x/0.8333, (y-80)/0.8333
        assert!((x1 - 345.6).abs() < 0.01 && (x2 - 422.4).abs() < 0.01, "{:?}", d[0].bbox);
        assert!((y1 - 259.2).abs() < 0.01 && (y2 - 316.8).abs() < 0.01, "{:?}", d[0].bbox);
    }

    #[test]
    fn empty_and_degenerate_outputs() {
        assert!(decode(Array2::zeros((4, 10)).view(), 0.25, 0.45, &lb()).is_empty());
        assert!(decode(Array2::zeros((84, 0)).view(), 0.25, 0.45, &lb()).is_empty());
    }
}
