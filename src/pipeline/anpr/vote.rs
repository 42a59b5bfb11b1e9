//! Plate voting: the reads of one track are clustered by edit distance; the largest cluster (the
//! more confident on a tie) decides, as Frigate does. Pure, unit-tested.

use super::text;
use crate::events::BoundingBox;
use std::sync::Arc;

/// One read of a track's plate.
pub(crate) struct Vote {
    pub(crate) text: String,
    pub(crate) confidence: f32,
    pub(crate) region: Option<String>,
    pub(crate) camera_id: Arc<str>,
    pub(crate) frame_number: u64,
    pub(crate) captured_at: std::time::SystemTime,
    /// The frame's width and height in pixels (events carry them).
    pub(crate) frame_size: (u32, u32),
    pub(crate) plate_box: BoundingBox,
    pub(crate) vehicle_box: BoundingBox,
    pub(crate) vehicle_class: String,
    /// The plate crop OCR read (the event's plate image).
    pub(crate) plate_crop: Option<opencv::core::Mat>,
}

/// Indices of the largest group of votes that agree (edit distance <= 1 to the group's most
/// confident member), the more confident group on a tie.
pub(crate) fn largest_cluster(votes: &[Vote]) -> Vec<usize> {
    let mut best: (Vec<usize>, f32) = (Vec::new(), f32::MIN);
    for v in votes {
        let members: Vec<usize> = (0..votes.len()).filter(|&j| text::edit_distance(&v.text, &votes[j].text) <= 1).collect();
        let top = members.iter().map(|&j| votes[j].confidence).fold(f32::MIN, f32::max);
        if members.len() > best.0.len() || (members.len() == best.0.len() && top > best.1) {
            best = (members, top);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(text: &str, confidence: f32) -> Vote {
        let b = BoundingBox { x: 0.0, y: 0.0, width: 0.1, height: 0.1 };
        Vote {
            text: text.into(),
            confidence,
            region: None,
            camera_id: Arc::from("c"),
            frame_number: 0,
            captured_at: std::time::SystemTime::UNIX_EPOCH,
            frame_size: (640, 480),
            plate_box: b,
            vehicle_box: b,
            vehicle_class: "car".into(),
            plate_crop: None,
        }
    }

    /// Reads within one edit of each other agree; the bigger group wins, then the more confident.
    #[test]
    fn the_largest_agreeing_group_wins() {
        let votes = [vote("5AU5341", 0.9), vote("5AU534I", 0.8), vote("XYZ123", 0.99), vote("5AU5341", 0.85)];
        assert_eq!(largest_cluster(&votes), [0, 1, 3]);
        let tie = [vote("AB1234", 0.7), vote("ZZ9999", 0.95)];
        assert_eq!(largest_cluster(&tie), [1]);
        assert!(largest_cluster(&[]).is_empty());
    }
}
