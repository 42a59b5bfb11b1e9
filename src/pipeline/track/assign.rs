//! Association costs and the thresholded linear assignment of ByteTrack's `matching.py`.
//!
//! Cost is `1 - IoU` between a track's (predicted) box and a detection, or with `fuse_score`
//! `1 - IoU * score`, so a confident detection wins a tie against a doubtful one.
//! [`linear_assignment`] then pairs tracks and detections to minimise the total cost, where
//! a pair costing `thresh` or more is never made and leaving a track or a detection alone costs
//! `thresh / 2` each (`lap.lapjv(cost, extend_cost=True, cost_limit=thresh)`). That is the same
//! as maximising the sum of `thresh - cost` over the pairs made, which is what is solved here
//! with Kuhn-Munkres on integer weights (`pathfinding` needs `Ord` weights; a micro-unit
//! resolution is far below any IoU difference that matters).

use crate::infer::iou;
use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

/// Weight units per unit of cost.
const WEIGHT_SCALE: f64 = 1e6;

/// The `tracks x dets` cost matrix, row-major: `1 - IoU`, or `1 - IoU * score` when
/// `scores` is given (ByteTrack `iou_distance` + `fuse_score`).
pub fn iou_cost(tracks: &[[f32; 4]], dets: &[[f32; 4]], scores: Option<&[f32]>) -> Vec<f32> {
    let mut cost = Vec::with_capacity(tracks.len() * dets.len());
    for t in tracks {
        for (j, d) in dets.iter().enumerate() {
            let sim = iou(t, d) * scores.map_or(1.0, |s| s[j]);
            cost.push(1.0 - sim);
        }
    }
    cost
}

/// Pairs `(row, col)` of a `rows x cols` row-major cost matrix with the least total cost,
/// each pair costing less than `thresh`; rows and columns may stay unpaired. Sorted by row.
pub fn linear_assignment(cost: &[f32], rows: usize, cols: usize, thresh: f32) -> Vec<(usize, usize)> {
    debug_assert_eq!(cost.len(), rows * cols);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Kuhn-Munkres wants no more rows than columns: solve the transpose when needed.
    let transpose = rows > cols;
    let (r, c) = if transpose { (cols, rows) } else { (rows, cols) };
    let weight = |i: usize, j: usize| {
        let x = if transpose { cost[j * cols + i] } else { cost[i * cols + j] };
        // NaN (never produced by iou_cost) and pairs at or over the threshold weigh 0: no pair.
        let gain = f64::from(thresh) - f64::from(x);
        if gain > 0.0 {
            (gain * WEIGHT_SCALE).round() as i64
        } else {
            0
        }
    };
    let weights = Matrix::from_fn(r, c, |(i, j)| weight(i, j));
    let (_, assigned) = kuhn_munkres(&weights);
    let mut pairs: Vec<(usize, usize)> = assigned
        .into_iter()
        .enumerate()
        .filter(|&(i, j)| weights[(i, j)] > 0)
        .map(|(i, j)| if transpose { (j, i) } else { (i, j) })
        .collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The global optimum wins over greedy: row 0 prefers column 0, but giving it column 1
    /// lets row 1 take column 0, for a lower total.
    #[test]
    fn global_not_greedy() {
        let cost = [0.1, 0.2, 0.15, 0.9];
        assert_eq!(linear_assignment(&cost, 2, 2, 0.8), vec![(0, 1), (1, 0)]);
    }

    /// Pairs at or over the threshold are never made, and a pair is left out when leaving both
    /// alone is cheaper (lapjv's `cost_limit`).
    #[test]
    fn threshold_and_unmatched() {
        assert!(linear_assignment(&[0.8, 0.95], 1, 2, 0.8).is_empty());
        assert_eq!(linear_assignment(&[0.79, 0.95], 1, 2, 0.8), vec![(0, 0)]);
        // 3 tracks, 2 dets: the transpose path, and a track left alone
        let cost = [0.9, 0.1, 0.2, 0.9, 0.9, 0.9];
        assert_eq!(linear_assignment(&cost, 3, 2, 0.5), vec![(0, 1), (1, 0)]);
        assert!(linear_assignment(&[], 0, 4, 0.5).is_empty());
    }

    /// The fused cost weighs IoU by the detection score.
    #[test]
    fn fused_cost() {
        let t = [[0.0, 0.0, 10.0, 10.0]];
        let d = [[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]];
        let c = iou_cost(&t, &d, Some(&[0.5, 0.9]));
        assert!((c[0] - 0.5).abs() < 1e-6 && (c[1] - (1.0 - 0.3)).abs() < 1e-6, "{c:?}");
        assert_eq!(iou_cost(&t, &d, None)[0], 0.0);
    }
}
