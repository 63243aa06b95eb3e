//! The consistency target of spec §2.6 (λ = `consistc_ratio` ≠ 0).
//!
//! The online network is evaluated under no-grad (stop-gradient of θ, not an EMA) on the
//! trajectory through the possibly enhanced endpoints, x_r = α(r)·z̃ + γ(r)·x̃, giving the
//! data estimates g(r) = (α(r)·F(x_r, r, ỹ) − α̂(r)·x_r)/Δ(r). The time derivative of x̂
//! is then estimated by a finite difference:
//! * λ = 1, central: D = (g(t + 0.005) − g(t − 0.005))/0.01 (times unclamped, so the
//!   network may see t slightly outside `[0, 1]`);
//! * 0 < λ < 1, backward to r = λ·t: D = (ĝ_t − g(λt))/((1 − λ)·t), where
//!   ĝ_t = (α(t)·F_θ − α̂(t)·x̃_t)/Δ(t) combines the step's online output F_θ (computed at
//!   the original x_t) with the enhanced x̃_t = α(t)·z̃ + γ(t)·x̃.
//!
//! Then D ← clamp(D, −1, 1) and F_tgt = F_θ − (α(t)/Δ(t))·(4/sin(1.57·t))·D.
//! At t = 0 the weight 4/sin(0) is infinite; as in the reference the target is then
//! non-finite and the step's gradients are zeroed by the NaN/Inf guard.

use super::coefficients::Coef;
use super::interpolant::sample_len;

/// Half-width ε of the central difference.
pub const HALF_WIDTH: f32 = 0.005;
/// The divisor of the central difference, 2ε = 0.01 (a constant, not the f32 distance
/// between the two probe times).
pub const CENTRAL_WIDTH: f64 = 0.01;

/// The finite-difference scheme selected by λ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Difference {
    /// λ = 1: central difference at t ± 0.005 (two extra forwards).
    Central,
    /// 0 < λ < 1: backward difference to λ·t (one extra forward).
    Backward { lambda: f64 },
}

impl Difference {
    /// The scheme for `consistc_ratio` λ; None for λ = 0 (plain target, §2.3).
    pub fn for_ratio(lambda: f64) -> Option<Self> {
        if lambda == 0.0 {
            None
        } else if lambda == 1.0 {
            Some(Difference::Central)
        } else {
            Some(Difference::Backward { lambda })
        }
    }

    /// The times at which the online network is probed: [t + ε, t − ε] (central) or
    /// [λ·t] (backward), computed in f32 like the reference. t: `[B]`; each result: `[B]`.
    pub fn probe_times(&self, t: &[f32]) -> Vec<Vec<f32>> {
        match *self {
            Difference::Central => vec![t.iter().map(|&v| v + HALF_WIDTH).collect(), t.iter().map(|&v| v - HALF_WIDTH).collect()],
            Difference::Backward { lambda } => {
                vec![t.iter().map(|&v| (lambda as f32) * v).collect()]
            }
        }
    }
}

/// One no-grad network evaluation on the trajectory: the coefficients at the probe time,
/// the network input x_r and its output F_r.
#[derive(Clone, Copy, Debug)]
pub struct Probe<'a> {
    /// Coefficients at r, `[B]`.
    pub coefs: &'a [Coef],
    /// x_r = α(r)·z̃ + γ(r)·x̃, `[B, C, H, W]`.
    pub x_r: &'a [f32],
    /// The network output at (x_r, r), `[B, C, H, W]`.
    pub f: &'a [f32],
}

impl Probe<'_> {
    /// g(r) at element i of sample b: (α(r)·F − α̂(r)·x_r)/Δ(r), in f64.
    fn data_estimate(&self, b: usize, i: usize) -> f64 {
        self.coefs[b].recover_x(self.f[i] as f64, self.x_r[i] as f64)
    }
}

/// Central difference D = (g(t + ε) − g(t − ε))/0.01. out: `[B, C, H, W]`.
pub fn central_difference(plus: Probe<'_>, minus: Probe<'_>, out: &mut [f64]) {
    let batch = plus.coefs.len();
    let s = sample_len(batch, &[out.len(), plus.x_r.len(), plus.f.len(), minus.x_r.len(), minus.f.len()]);
    for (i, d) in out.iter_mut().enumerate() {
        let b = i / s;
        *d = (plus.data_estimate(b, i) - minus.data_estimate(b, i)) / CENTRAL_WIDTH;
    }
}

/// Backward difference D = (ĝ_t − g(λt))/((1 − λ)·t), where `current` holds the
/// coefficients at t, the enhanced x̃_t and the step's online output F_θ.
/// t: `[B]`; out: `[B, C, H, W]`.
pub fn backward_difference(current: Probe<'_>, previous: Probe<'_>, lambda: f64, t: &[f32], out: &mut [f64]) {
    let batch = t.len();
    let s = sample_len(batch, &[out.len(), current.x_r.len(), current.f.len(), previous.x_r.len(), previous.f.len()]);
    for (i, d) in out.iter_mut().enumerate() {
        let b = i / s;
        let eps = ((1.0 - lambda) as f32 * t[b]) as f64;
        *d = (current.data_estimate(b, i) - previous.data_estimate(b, i)) / eps;
    }
}

/// The consistency weight 4/sin(1.57·t) times α(t)/Δ(t).
pub fn target_weight(coef: &Coef, t: f32) -> f64 {
    coef.alpha / coef.delta * 4.0 / (1.57 * t as f64).sin()
}

/// F_tgt = F_θ − (α/Δ)·(4/sin(1.57t))·clamp(D, −1, 1).
/// f_theta, target: `[B, C, H, W]`; derivative D: `[B, C, H, W]`; coefs (at t), t: `[B]`.
pub fn consistency_target(f_theta: &[f32], derivative: &[f64], coefs: &[Coef], t: &[f32], target: &mut [f32]) {
    let s = sample_len(t.len(), &[f_theta.len(), derivative.len(), target.len()]);
    for (b, (&tb, coef)) in t.iter().zip(coefs).enumerate() {
        let w = target_weight(coef, tb);
        for i in b * s..(b + 1) * s {
            target[i] = (f_theta[i] as f64 - w * derivative[i].clamp(-1.0, 1.0)) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::coefficients::Coefficients;
    use super::*;
    use crate::transport::TransportKind::Linear;

    #[test]
    fn linear_weight_values_of_the_spec() {
        // Spec §8 item 17: (α/|Δ|)·4/sin(1.57t) for Linear.
        for (t, w) in [(0.01f32, 2.5479), (0.5, 2.8296), (1.0, 4.0000)] {
            let got = -target_weight(&Linear.at(t), t);
            assert!((got - w).abs() < 5e-5, "t = {t}: {got}");
        }
    }

    #[test]
    fn probe_times_and_schemes() {
        assert_eq!(Difference::for_ratio(0.0), None);
        assert_eq!(Difference::for_ratio(1.0), Some(Difference::Central));
        let t = [0.5f32, 0.0];
        assert_eq!(Difference::Central.probe_times(&t), vec![vec![0.505, 0.005], vec![0.495, -0.005]]);
        assert_eq!(Difference::Backward { lambda: 0.5 }.probe_times(&t), vec![vec![0.25, 0.0]]);
    }

    /// For an exact model of a single data point x* (F = α̂ẑ + γ̂x* with ẑ recovered from
    /// x_t), g(r) = x* for every r, so D = 0 and the target equals F_θ.
    #[test]
    fn exact_model_gives_zero_derivative() {
        let t = [0.3f32, 0.8];
        let (z, x) = (vec![1.3f32, -0.4], vec![0.7f32, 0.2]);
        let probe_at = |times: &[f32]| {
            let coefs = Linear.at_all(times);
            let x_r: Vec<f32> = (0..2).map(|b| coefs[b].interpolate(z[b] as f64, x[b] as f64) as f32).collect();
            let f: Vec<f32> = (0..2).map(|b| coefs[b].target(z[b] as f64, x[b] as f64) as f32).collect();
            (coefs, x_r, f)
        };
        let times = Difference::Central.probe_times(&t);
        let (cp, xp, fp) = probe_at(&times[0]);
        let (cm, xm, fm) = probe_at(&times[1]);
        let mut d = vec![0.0; 2];
        central_difference(Probe { coefs: &cp, x_r: &xp, f: &fp }, Probe { coefs: &cm, x_r: &xm, f: &fm }, &mut d);
        assert!(d.iter().all(|v| v.abs() < 1e-4), "{d:?}");
        let mut tgt = vec![0.0f32; 2];
        let f_theta = [0.25f32, -0.5];
        consistency_target(&f_theta, &[0.0, 0.0], &Linear.at_all(&t), &t, &mut tgt);
        assert_eq!(tgt, f_theta);
    }

    #[test]
    fn differences_clamp_and_weight() {
        // A probe whose data estimate moves linearly in r: g(r) = 3r (set F so that
        // (α F − α̂ x_r)/Δ = 3r with x_r = 0: for Linear, (r·F)/(−1) = 3r ⇒ F = −3).
        let t = [0.4f32];
        let times = Difference::Central.probe_times(&t);
        let (cp, cm) = (Linear.at_all(&times[0]), Linear.at_all(&times[1]));
        let zero = [0.0f32];
        let f = [-3.0f32];
        let mut d = [0.0f64];
        central_difference(Probe { coefs: &cp, x_r: &zero, f: &f }, Probe { coefs: &cm, x_r: &zero, f: &f }, &mut d);
        let exact = 3.0 * (times[0][0] as f64 - times[1][0] as f64) / 0.01;
        assert!((d[0] - exact).abs() < 1e-12 && (d[0] - 3.0).abs() < 1e-5, "{} vs {exact}", d[0]);
        // Backward with λ = 0.5: g(t) from F_θ at x̃_t, g(λt) from the probe.
        let prev_t = Difference::Backward { lambda: 0.5 }.probe_times(&t);
        let cur = Linear.at_all(&t);
        let prev = Linear.at_all(&prev_t[0]);
        backward_difference(
            Probe {
                coefs: &cur,
                x_r: &zero,
                f: &f,
            },
            Probe {
                coefs: &prev,
                x_r: &zero,
                f: &f,
            },
            0.5,
            &t,
            &mut d,
        );
        assert!((d[0] - 3.0).abs() < 1e-6, "{}", d[0]);
        // D = 3 is clamped to 1: target = F_θ − (α/Δ)·w·1 = F_θ + t·4/sin(1.57t).
        let mut tgt = [0.0f32];
        consistency_target(&[0.1], &d, &cur, &t, &mut tgt);
        let want = 0.1 + 0.4 * 4.0 / (1.57f64 * 0.4f32 as f64).sin();
        assert!((tgt[0] as f64 - want).abs() < 1e-6);
    }
}
