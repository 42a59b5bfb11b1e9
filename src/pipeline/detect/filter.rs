//! A camera's view of the detector's boxes: its `confidence_threshold`, `detection_classes` and
//! `roi_zones` (a box counts when its bottom-centre lies in a zone), boxes normalised to the
//! frame. Pure; the track stage applies it (the tracker itself sees every box).

use crate::camera::CameraParams;
use crate::events::Detection;
use crate::infer::decode::{normalise, RawDetection};
use crate::infer::Letterbox;

/// A camera's view of one image's detections: its threshold and classes, its zones (a box
/// counts when its bottom-centre lies in a zone), boxes normalised to the frame.
pub fn camera_detections(raw: &[RawDetection], lb: &Letterbox, names: &[String], params: &CameraParams) -> Vec<Detection> {
    camera_filter(raw, lb.src_w as f32, lb.src_h as f32, names, params).into_iter().map(|(_, d)| d).collect()
}

/// [`camera_detections`] for a `w` x `h` frame, each kept box with its index in `raw` (the
/// track stage joins them to the tracker's assignment).
pub fn camera_filter(raw: &[RawDetection], w: f32, h: f32, names: &[String], params: &CameraParams) -> Vec<(usize, Detection)> {
    raw.iter()
        .enumerate()
        .filter(|(_, d)| d.confidence >= params.confidence_threshold)
        .filter_map(|(i, d)| {
            let class_name = names.get(d.class_id).cloned().unwrap_or_else(|| format!("class{}", d.class_id));
            if !params.detection_classes.is_empty() && !params.detection_classes.contains(&class_name) {
                return None;
            }
            let zones = zones_of(&d.bbox, w, h, params);
            if !params.roi_zones.is_empty() && zones.is_empty() {
                return None;
            }
            Some((i, Detection { class_name, confidence: d.confidence, bounding_box: normalise(&d.bbox, w, h), zones, track_id: None }))
        })
        .collect()
}

/// The camera's zones that hold the bottom-centre of `bbox` (pixels of a `w` x `h` frame).
pub fn zones_of(bbox: &[f32; 4], w: f32, h: f32, params: &CameraParams) -> Vec<String> {
    let [x1, _, x2, y2] = *bbox;
    let (bx, by) = ((x1 + x2) / 2.0 / w, y2 / h);
    params.roi_zones.iter().filter(|z| z.contains(bx, by)).map(|z| z.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::RoiZone;
    use crate::events::BoundingBox;

    #[test]
    fn camera_filter_applies_threshold_classes_and_zones() {
        let names: Vec<String> = ["person", "car"].map(String::from).to_vec();
        let lb = Letterbox { scale: 1.0, pad_x: 0.0, pad_y: 0.0, src_w: 100, src_h: 100 };
        let raw = [
            RawDetection { class_id: 0, confidence: 0.9, bbox: [10.0, 10.0, 20.0, 40.0] }, // feet at (0.15, 0.4)
            RawDetection { class_id: 1, confidence: 0.8, bbox: [60.0, 60.0, 90.0, 90.0] }, // at (0.75, 0.9)
            RawDetection { class_id: 0, confidence: 0.3, bbox: [50.0, 10.0, 60.0, 20.0] },
        ];
        let mut p = CameraParams::default();
        let all = camera_detections(&raw, &lb, &names, &p);
        assert_eq!(all.len(), 2, "threshold 0.5 drops the 0.3");
        assert_eq!(all[0].bounding_box, BoundingBox { x: 0.1, y: 0.1, width: 0.1, height: 0.3 });
        p.detection_classes = vec!["car".into()];
        assert_eq!(camera_detections(&raw, &lb, &names, &p)[0].class_name, "car");
        p.detection_classes.clear();
        p.roi_zones =
            vec![RoiZone { name: "bottom".into(), points: vec![[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], ..Default::default() }];
        let z = camera_detections(&raw, &lb, &names, &p);
        assert_eq!(z.len(), 1);
        assert_eq!((z[0].class_name.as_str(), z[0].zones.clone()), ("car", vec!["bottom".to_string()]));
    }
}
