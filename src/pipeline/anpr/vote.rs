//! Plate voting: the reads of one track are clustered by edit distance; the largest cluster (the
//! more confident on a tie) holds the plate, as in Frigate. Within it the plate is voted
//! character by character, each read's characters weighted by their own probabilities
//! ([`consensus`]): one confident misread character (`I` read as `1`) no longer wins over the
//! other reads because its read's mean was a little higher. Pure, unit-tested.

use super::text;
use crate::events::BoundingBox;
use std::sync::Arc;

/// One read of a track's plate.
pub(crate) struct Vote {
    pub(crate) text: String,
    /// The probability of each character of `text`.
    pub(crate) char_probs: Vec<f32>,
    pub(crate) confidence: f32,
    /// The camera's `anpr_region`, if set (else the region is guessed from the voted text).
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

/// The plate a cluster of reads (`members`, indices into `votes`) agrees on, and its
/// confidence: among the reads of the cluster's most common length (the more confident on a
/// tie), each position takes the character whose probabilities, summed over those reads, are
/// largest; the confidence is the mean over positions of that sum divided by the number of
/// those reads (so reads that disagree lower it). `None` for an empty cluster.
pub(crate) fn consensus(votes: &[Vote], members: &[usize]) -> Option<(String, f32)> {
    let len_weight =
        |len: usize| members.iter().filter(|&&j| votes[j].text.chars().count() == len).map(|&j| votes[j].confidence).sum::<f32>();
    let len = members.iter().map(|&j| votes[j].text.chars().count()).max_by(|&a, &b| {
        let count = |l: usize| members.iter().filter(|&&j| votes[j].text.chars().count() == l).count();
        count(a).cmp(&count(b)).then(len_weight(a).total_cmp(&len_weight(b)))
    })?;
    let same: Vec<&Vote> = members.iter().map(|&j| &votes[j]).filter(|v| v.text.chars().count() == len).collect();
    let mut text = String::new();
    let mut total = 0.0;
    for pos in 0..len {
        let mut tally: Vec<(char, f32)> = Vec::new();
        for v in &same {
            let c = v.text.chars().nth(pos).expect("invariant: reads of this length");
            let p = v.char_probs.get(pos).copied().unwrap_or(v.confidence);
            match tally.iter_mut().find(|(t, _)| *t == c) {
                Some(t) => t.1 += p,
                None => tally.push((c, p)),
            }
        }
        let (c, p) = tally.into_iter().fold((' ', f32::MIN), |best, t| if t.1 > best.1 { t } else { best });
        text.push(c);
        total += p / same.len() as f32;
    }
    Some((text, if len == 0 { 0.0 } else { total / len as f32 }))
}

/// A read of `text` with every character at `confidence` (unit tests of the vote and the stage).
#[cfg(test)]
pub(crate) fn test_vote(text: &str, confidence: f32) -> Vote {
    let b = BoundingBox { x: 0.0, y: 0.0, width: 0.1, height: 0.1 };
    Vote {
        text: text.into(),
        char_probs: vec![confidence; text.len()],
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads within one edit of each other agree; the bigger group wins, then the more confident.
    #[test]
    fn the_largest_agreeing_group_wins() {
        let votes = [test_vote("5AU5341", 0.9), test_vote("5AU534I", 0.8), test_vote("XYZ123", 0.99), test_vote("5AU5341", 0.85)];
        assert_eq!(largest_cluster(&votes), [0, 1, 3]);
        let tie = [test_vote("AB1234", 0.7), test_vote("ZZ9999", 0.95)];
        assert_eq!(largest_cluster(&tie), [1]);
        assert!(largest_cluster(&[]).is_empty());
    }

    /// Character by character: a read that flips one character is outvoted by the others even
    /// when its mean probability is the highest; the confidence falls where reads disagree.
    #[test]
    fn the_plate_is_voted_character_by_character() {
        let mut flipped = test_vote("WSQ1021", 0.93);
        flipped.char_probs = vec![0.99, 0.99, 0.99, 0.6, 0.99, 0.99, 0.99];
        let mut a = test_vote("WSQI021", 0.9);
        a.char_probs = vec![0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9];
        let mut b = test_vote("WSQI021", 0.85);
        b.char_probs = vec![0.85; 7];
        let votes = [flipped, a, b];
        let (text, confidence) = consensus(&votes, &largest_cluster(&votes)).unwrap();
        assert_eq!(text, "WSQI021");
        assert!(confidence < 0.93 && confidence > 0.8, "{confidence}");
        // reads of the most common length decide; a dropped character does not shift the others
        let votes = [test_vote("5AU5341", 0.9), test_vote("5AU534", 0.99), test_vote("5AU5341", 0.8)];
        assert_eq!(consensus(&votes, &[0, 1, 2]).unwrap().0, "5AU5341");
        assert!(consensus(&votes, &[]).is_none());
    }
}
