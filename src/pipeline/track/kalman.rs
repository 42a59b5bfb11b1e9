//! The 8-state constant-velocity Kalman filter of ByteTrack (and SORT/DeepSORT before it).
//!
//! State `(x, y, a, h, vx, vy, va, vh)`: box centre, aspect ratio `w / h`, height, and their
//! velocities per *nominal frame*. The measurement is `(x, y, a, h)`. Noise is relative to the
//! box height with ByteTrack's weights (1/20 for position, 1/160 for velocity), so a far, small
//! person and a near, big one are filtered alike.
//!
//! One difference from ByteTrack: [`KalmanBox::predict`] takes `dt`, the time since the last
//! predict or update in nominal frame intervals, because the service detects only some frames
//! (on motion, when the detector keeps up). The transition moves by `dt * velocity` and the
//! process noise grows linearly with `dt` (a random walk); `dt = 1` is ByteTrack exactly.
//!
//! Plain `f64` arrays, written out by hand: the matrices are 8x8 and 4x4 and the only hard part,
//! the 4x4 innovation inverse, is a Cholesky factorisation. `f64` because the covariance update
//! subtracts nearly equal numbers.

// Index loops read like the matrix formulas they implement.
#![allow(clippy::needless_range_loop)]

/// Position noise per unit of box height (ByteTrack `_std_weight_position`).
const STD_WEIGHT_POSITION: f64 = 1.0 / 20.0;
/// Velocity noise per unit of box height (ByteTrack `_std_weight_velocity`).
const STD_WEIGHT_VELOCITY: f64 = 1.0 / 160.0;

/// A box as the filter measures it: centre x, centre y, aspect ratio `w / h`, height.
pub type Xyah = [f64; 4];

/// Mean and covariance of one track's state.
#[derive(Debug, Clone, PartialEq)]
pub struct KalmanBox {
    /// `(x, y, a, h, vx, vy, va, vh)`; velocities per nominal frame.
    pub mean: [f64; 8],
    pub covariance: [[f64; 8]; 8],
}

impl KalmanBox {
    /// A new track from its first measurement: velocities 0, with ByteTrack's wide initial
    /// uncertainty (twice the position noise, ten times the velocity noise).
    pub fn initiate(z: Xyah) -> Self {
        let h = z[3];
        let std = [
            2.0 * STD_WEIGHT_POSITION * h,
            2.0 * STD_WEIGHT_POSITION * h,
            1e-2,
            2.0 * STD_WEIGHT_POSITION * h,
            10.0 * STD_WEIGHT_VELOCITY * h,
            10.0 * STD_WEIGHT_VELOCITY * h,
            1e-5,
            10.0 * STD_WEIGHT_VELOCITY * h,
        ];
        let mut covariance = [[0.0; 8]; 8];
        for (i, s) in std.iter().enumerate() {
            covariance[i][i] = s * s;
        }
        KalmanBox { mean: [z[0], z[1], z[2], z[3], 0.0, 0.0, 0.0, 0.0], covariance }
    }

    /// Moves the state `dt` nominal frames ahead: `mean = F mean`, `P = F P F^T + Q dt` with
    /// `F = [[I, dt I], [0, I]]` and ByteTrack's `Q` for one frame. `dt <= 0` changes nothing.
    pub fn predict(&mut self, dt: f64) {
        if dt.is_nan() || dt <= 0.0 {
            return;
        }
        for i in 0..4 {
            self.mean[i] += dt * self.mean[i + 4];
        }
        // F P F^T without building F: rows then columns i += dt * (i + 4) for i < 4.
        let c = &mut self.covariance;
        for i in 0..4 {
            for j in 0..8 {
                c[i][j] += dt * c[i + 4][j];
            }
        }
        for row in c.iter_mut() {
            for j in 0..4 {
                row[j] += dt * row[j + 4];
            }
        }
        self.add_process_noise(dt);
    }

    /// Adds `Q dt` alone: time passes with the object assumed still, but less certainly.
    pub fn add_process_noise(&mut self, dt: f64) {
        if dt.is_nan() || dt <= 0.0 {
            return;
        }
        let h = self.mean[3];
        let (p, v) = (STD_WEIGHT_POSITION * h, STD_WEIGHT_VELOCITY * h);
        let q = [p * p, p * p, 1e-4, p * p, v * v, v * v, 1e-10, v * v];
        for (i, qi) in q.iter().enumerate() {
            self.covariance[i][i] += qi * dt;
        }
    }

    /// The state in measurement space: `(H mean, H P H^T + R)` with ByteTrack's measurement
    /// noise `R` (position weight times height; 0.1 for the aspect ratio).
    pub fn project(&self) -> (Xyah, [[f64; 4]; 4]) {
        let h = self.mean[3];
        let p = STD_WEIGHT_POSITION * h;
        let r = [p * p, p * p, 1e-2, p * p];
        let mut s = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.covariance[i][j];
            }
            s[i][i] += r[i];
        }
        ([self.mean[0], self.mean[1], self.mean[2], self.mean[3]], s)
    }

    /// Corrects the state with a measurement: `K = P H^T S^-1`, `mean += K (z - H mean)`,
    /// `P -= K S K^T`. If `S` is not positive definite (a degenerate box; `Tracker` filters those
    /// out) the state jumps to the measurement and keeps its covariance.
    pub fn update(&mut self, z: Xyah) {
        let (projected, s) = self.project();
        let Some(s_inv) = inverse_spd4(&s) else {
            self.mean[..4].copy_from_slice(&z);
            return;
        };
        // P H^T is the first four columns of P.
        let mut pht = [[0.0; 4]; 8];
        for (row, p) in pht.iter_mut().zip(&self.covariance) {
            row.copy_from_slice(&p[..4]);
        }
        let mut gain = [[0.0; 4]; 8];
        for (g, p) in gain.iter_mut().zip(&pht) {
            for (j, gj) in g.iter_mut().enumerate() {
                *gj = (0..4).map(|k| p[k] * s_inv[k][j]).sum();
            }
        }
        let innovation = [z[0] - projected[0], z[1] - projected[1], z[2] - projected[2], z[3] - projected[3]];
        for (m, g) in self.mean.iter_mut().zip(&gain) {
            *m += (0..4).map(|k| g[k] * innovation[k]).sum::<f64>();
        }
        // K S K^T = K (P H^T)^T, since K S = P H^T.
        for i in 0..8 {
            for j in 0..8 {
                self.covariance[i][j] -= (0..4).map(|k| gain[i][k] * pht[j][k]).sum::<f64>();
            }
        }
        symmetrise(&mut self.covariance);
    }

    /// The mean box as `[x1, y1, x2, y2]`.
    pub fn tlbr(&self) -> [f32; 4] {
        xyah_to_tlbr(&[self.mean[0], self.mean[1], self.mean[2], self.mean[3]])
    }
}

/// `[x1, y1, x2, y2]` to `(cx, cy, w / h, h)`.
pub fn tlbr_to_xyah(b: &[f32; 4]) -> Xyah {
    let (w, h) = (f64::from(b[2] - b[0]), f64::from(b[3] - b[1]));
    [f64::from(b[0]) + w / 2.0, f64::from(b[1]) + h / 2.0, w / h, h]
}

/// `(cx, cy, w / h, h)` to `[x1, y1, x2, y2]`.
pub fn xyah_to_tlbr(m: &Xyah) -> [f32; 4] {
    let (h, w) = (m[3], m[2] * m[3]);
    [(m[0] - w / 2.0) as f32, (m[1] - h / 2.0) as f32, (m[0] + w / 2.0) as f32, (m[1] + h / 2.0) as f32]
}

/// The inverse of a symmetric positive definite 4x4 matrix through its Cholesky factor
/// `S = L L^T`: `S^-1 = L^-T L^-1`. `None` when `S` is not positive definite.
fn inverse_spd4(s: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut l = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = s[i][i] - sum;
                if d.is_nan() || d <= 0.0 {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (s[i][j] - sum) / l[j][j];
            }
        }
    }
    // L^-1, lower triangular, by forward substitution.
    let mut li = [[0.0; 4]; 4];
    for i in 0..4 {
        li[i][i] = 1.0 / l[i][i];
        for j in 0..i {
            let sum: f64 = (j..i).map(|k| l[i][k] * li[k][j]).sum();
            li[i][j] = -sum / l[i][i];
        }
    }
    let mut inv = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            inv[i][j] = (i.max(j)..4).map(|k| li[k][i] * li[k][j]).sum();
        }
    }
    Some(inv)
}

/// Averages `P` with its transpose: rounding would otherwise make it drift from symmetric.
fn symmetrise(p: &mut [[f64; 8]; 8]) {
    for i in 0..8 {
        for j in 0..i {
            let v = 0.5 * (p[i][j] + p[j][i]);
            p[i][j] = v;
            p[j][i] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    /// Box conversions round-trip.
    #[test]
    fn xyah_round_trip() {
        let b = [10.0, 20.0, 50.0, 120.0];
        let m = tlbr_to_xyah(&b);
        assert_eq!(m, [30.0, 70.0, 40.0 / 100.0, 100.0]);
        assert_eq!(xyah_to_tlbr(&m), b);
    }

    /// `initiate` sets zero velocity and ByteTrack's initial standard deviations.
    #[test]
    fn initiate_matches_bytetrack() {
        let k = KalmanBox::initiate([100.0, 200.0, 0.5, 80.0]);
        assert_eq!(k.mean, [100.0, 200.0, 0.5, 80.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(close(k.covariance[0][0], (2.0 * 80.0 / 20.0f64).powi(2), 1e-12));
        assert!(close(k.covariance[4][4], (10.0 * 80.0 / 160.0f64).powi(2), 1e-12));
        assert!(close(k.covariance[2][2], 1e-4, 1e-12));
        assert_eq!(k.covariance[0][1], 0.0);
    }

    /// The 4x4 inverse is an inverse, and a non-positive-definite matrix is refused.
    #[test]
    fn spd_inverse() {
        let s = [[4.0, 1.0, 0.5, 0.0], [1.0, 3.0, 0.2, 0.1], [0.5, 0.2, 2.0, 0.3], [0.0, 0.1, 0.3, 1.0]];
        let inv = inverse_spd4(&s).unwrap();
        for i in 0..4 {
            for j in 0..4 {
                let v: f64 = (0..4).map(|k| s[i][k] * inv[k][j]).sum();
                assert!(close(v, if i == j { 1.0 } else { 0.0 }, 1e-12), "({i},{j}) = {v}");
            }
        }
        assert!(inverse_spd4(&[[1.0, 2.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]).is_none());
    }

    /// One predict and one update agree with ByteTrack's numpy filter, computed by hand here:
    /// a fresh track predicted one frame has `P[0][0] = (2h/20)^2 + (10h/160)^2 + (h/20)^2`.
    #[test]
    fn predict_update_numbers() {
        let h = 80.0f64;
        let mut k = KalmanBox::initiate([100.0, 200.0, 0.5, h]);
        k.predict(1.0);
        let (p0, v0, q0) = ((2.0 * h / 20.0).powi(2), (10.0 * h / 160.0).powi(2), (h / 20.0).powi(2));
        assert!(close(k.covariance[0][0], p0 + v0 + q0, 1e-12));
        assert!(close(k.covariance[0][4], v0, 1e-12));
        // update with a measurement 10 px right: the gain for x is P00 / (P00 + R00)
        let r = (h / 20.0).powi(2);
        let p00 = k.covariance[0][0];
        let p40 = k.covariance[4][0];
        k.update([110.0, 200.0, 0.5, h]);
        assert!(close(k.mean[0], 100.0 + 10.0 * p00 / (p00 + r), 1e-9), "{:?}", k.mean);
        assert!(close(k.mean[4], 10.0 * p40 / (p00 + r), 1e-9), "{:?}", k.mean);
        assert!(close(k.covariance[0][0], p00 - p00 * p00 / (p00 + r), 1e-9));
        assert_eq!(k.mean[1], 200.0);
    }

    /// `predict(dt)` moves the mean by `dt` times the velocity; `dt = 3` equals three
    /// one-frame predicts in the mean, and the uncertainty grows with `dt`.
    #[test]
    fn predict_scales_with_dt() {
        let mut a = KalmanBox::initiate([100.0, 100.0, 0.5, 100.0]);
        a.mean[4] = 2.0;
        a.mean[7] = 0.5;
        let mut b = a.clone();
        let mut c = a.clone();
        a.predict(3.0);
        for _ in 0..3 {
            b.predict(1.0);
        }
        assert!(close(a.mean[0], 106.0, 1e-12) && close(a.mean[3], 101.5, 1e-12), "{:?}", a.mean);
        for i in 0..8 {
            assert!(close(a.mean[i], b.mean[i], 1e-12));
        }
        c.predict(1.0);
        assert!(a.covariance[0][0] > c.covariance[0][0]);
        let before = c.clone();
        c.predict(0.0);
        assert_eq!(c, before, "dt = 0 is a no-op");
    }

    /// A target moving at constant velocity is followed: after 20 frames of exact measurements
    /// the filter's velocity is close to the true one and its prediction lands on the target.
    #[test]
    fn converges_on_constant_velocity() {
        let box_at = |t: f64| [100.0 + 4.0 * t, 50.0 - 1.0 * t, 0.4, 120.0];
        let mut k = KalmanBox::initiate(box_at(0.0));
        for t in 1..=20 {
            k.predict(1.0);
            k.update(box_at(f64::from(t)));
        }
        assert!((k.mean[4] - 4.0).abs() < 0.2 && (k.mean[5] + 1.0).abs() < 0.1, "velocity {:?}", &k.mean[4..]);
        k.predict(5.0);
        let (z, _) = k.project();
        let truth = box_at(25.0);
        assert!((z[0] - truth[0]).abs() < 2.0 && (z[1] - truth[1]).abs() < 1.0, "{z:?} vs {truth:?}");
        for i in 0..8 {
            assert!(k.covariance[i][i] > 0.0);
            for j in 0..8 {
                assert_eq!(k.covariance[i][j], k.covariance[j][i]);
            }
        }
    }
}
