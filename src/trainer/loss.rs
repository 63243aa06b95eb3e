//! The UCGM-T loss (spec §2.7, §2.8) and its exact gradient with respect to the online
//! output F_θ (the network's backward is hand-written, so dL/dF starts it).
//!
//! Per sample b, with d = F_θ − F_tgt over its S = C·P elements (P = H·W pixels), the
//! robust-loss constant c = `scaled_cbl_eps` and m_b = (1/S)·Σ d²:
//! ```text
//! ℓ_b = √(m_b + c²) − c                                   (the root of the MSE for c = 0)
//!     + (1/P)·Σ_p (1 − cos_p)                             (only with `wt_cosine_loss`)
//! cos_p = Σ_c F_c·G_c / (max(‖F‖, 1e-8)·max(‖G‖, 1e-8))  (over channels, at pixel p)
//! L = (1/B)·Σ_b w_b·ℓ_b,   w_b = cos(1.57·t_b) ("Cosine") or 1
//! ```
//! The target G = F_tgt is a constant (no-grad), so the gradient is
//! ```text
//! ∂L/∂F_c = (w_b/B)·[ d_c/(S·√(m_b + c²))
//!                     − (1/P)·( G_c/(a·g) − s·F_c/(a²·g·‖F‖)·[‖F‖ > 1e-8] ) ]
//! ```
//! with s = Σ_c F_c·G_c, a = max(‖F‖, 1e-8), g = max(‖G‖, 1e-8) at the element's pixel
//! (the clamp max(‖F‖, 1e-8) is constant below 1e-8, so its derivative is 0 there).
//! When m_b + c² = 0 (c = 0 and F_θ = F_tgt exactly) the root is not differentiable; the
//! gradient of that term is taken as 0 there (the reference would produce NaN, which its
//! NaN guard then zeroes together with every other gradient of the step).
//!
//! All sums are in f64, in a fixed order.

use serde::{Deserialize, Serialize};

use crate::backend::cpu::Elem;

/// Clamp of the channel norms in the cosine similarity (torch's default eps).
pub const COSINE_EPS: f64 = 1e-8;

/// Per-sample time weight (`weight_funcion`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeWeight {
    /// No weight (`null`).
    #[default]
    None,
    /// cos(1.57·t).
    Cosine,
}

impl TimeWeight {
    /// The weight of a sample at time t.
    pub fn at(self, t: f32) -> f64 {
        match self {
            TimeWeight::None => 1.0,
            TimeWeight::Cosine => (1.57 * t as f64).cos(),
        }
    }
}

/// The loss settings of `transport:`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossSpec {
    /// c of the robust loss √(m + c²) − c (`scaled_cbl_eps`).
    pub cbl_eps: f64,
    /// Adds the cosine-dissimilarity term (`wt_cosine_loss`).
    pub cosine_term: bool,
    /// Per-sample time weight (`weight_funcion`).
    pub time_weight: TimeWeight,
}

/// Sizes of a `[B, C, H, W]` batch as the loss sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossShape {
    /// Batch B.
    pub batch: usize,
    /// Channels C.
    pub channels: usize,
    /// Pixels per channel P = H·W.
    pub pixels: usize,
}

impl LossShape {
    /// Elements per sample S = C·P.
    pub fn sample_len(&self) -> usize {
        self.channels * self.pixels
    }
    fn check(&self, lens: &[usize]) {
        let n = self.batch * self.sample_len();
        assert!(n > 0, "empty loss shape {self:?}");
        assert!(lens.iter().all(|&l| l == n), "loss buffers {lens:?} do not match {self:?}");
    }
}

/// Channel statistics of one pixel: s = Σ F·G, a = max(‖F‖, eps), g = max(‖G‖, eps),
/// and whether ‖F‖ is above the clamp.
struct PixelCosine {
    dot: f64,
    f_norm: f64,
    g_norm: f64,
    f_unclamped: bool,
}

impl PixelCosine {
    /// f, g: one sample `[C, P]`; `p`: the pixel.
    fn new<T: Elem>(f: &[T], g: &[T], pixels: usize, p: usize) -> Self {
        let (mut dot, mut ff, mut gg) = (0.0, 0.0, 0.0);
        for c in 0..f.len() / pixels {
            let (fv, gv) = (f[c * pixels + p].f64(), g[c * pixels + p].f64());
            dot += fv * gv;
            ff += fv * fv;
            gg += gv * gv;
        }
        let f_raw = ff.sqrt();
        PixelCosine {
            dot,
            f_norm: f_raw.max(COSINE_EPS),
            g_norm: gg.sqrt().max(COSINE_EPS),
            f_unclamped: f_raw > COSINE_EPS,
        }
    }
    fn cos(&self) -> f64 {
        self.dot / (self.f_norm * self.g_norm)
    }
}

/// Mean squared difference m_b of one sample. f, g: `[S]`.
fn mean_square<T: Elem>(f: &[T], g: &[T]) -> f64 {
    f.iter().zip(g).map(|(&a, &b)| (a.f64() - b.f64()).powi(2)).sum::<f64>() / f.len() as f64
}

/// ℓ_b for every sample (before the time weight). f, target: `[B, C, H, W]`; result: `[B]`.
pub fn per_sample_losses<T: Elem>(f: &[T], target: &[T], shape: LossShape, spec: &LossSpec) -> Vec<f64> {
    shape.check(&[f.len(), target.len()]);
    let s = shape.sample_len();
    (0..shape.batch)
        .map(|b| {
            let (fb, gb) = (&f[b * s..(b + 1) * s], &target[b * s..(b + 1) * s]);
            let c = spec.cbl_eps;
            let mut loss = (mean_square(fb, gb) + c * c).sqrt() - c;
            if spec.cosine_term {
                let dissimilarity: f64 = (0..shape.pixels).map(|p| 1.0 - PixelCosine::new(fb, gb, shape.pixels, p).cos()).sum();
                loss += dissimilarity / shape.pixels as f64;
            }
            loss
        })
        .collect()
}

/// L = (1/B)·Σ_b w_b·ℓ_b. losses, t: `[B]`.
pub fn batch_loss(losses: &[f64], t: &[f32], weight: TimeWeight) -> f64 {
    partial_batch_loss(losses, t, weight, losses.len())
}

/// This part's share of the loss of a global batch of `mean_over` samples:
/// (1/mean_over)·Σ_b w_b·ℓ_b over the part's samples (summed over the parts of a
/// data-parallel step, it is L). losses, t: `[b]`.
pub fn partial_batch_loss(losses: &[f64], t: &[f32], weight: TimeWeight, mean_over: usize) -> f64 {
    assert_eq!(losses.len(), t.len(), "one time per sample");
    losses.iter().zip(t).map(|(&l, &tb)| weight.at(tb) * l).sum::<f64>() / mean_over as f64
}

/// The batch loss L and, into `grad`, ∂L/∂F_θ (assign).
/// f, target, grad: `[B, C, H, W]`; t: `[B]`.
pub fn loss_and_grad<T: Elem>(f: &[T], target: &[T], t: &[f32], shape: LossShape, spec: &LossSpec, grad: &mut [T]) -> f64 {
    partial_loss_and_grad(f, target, t, shape, spec, shape.batch, grad)
}

/// [`loss_and_grad`] for a part (`shape.batch` samples) of a global batch of `mean_over`
/// samples: the part's share of L ([`partial_batch_loss`]) and of ∂L/∂F_θ — the 1/B of
/// the mean is 1/`mean_over`, so summing the parts' parameter gradients gives the
/// gradient of the whole batch. With `mean_over = shape.batch` this is [`loss_and_grad`].
/// f, target, grad: `[b, C, H, W]`; t: `[b]`.
pub fn partial_loss_and_grad<T: Elem>(f: &[T], target: &[T], t: &[f32], shape: LossShape, spec: &LossSpec, mean_over: usize, grad: &mut [T]) -> f64 {
    shape.check(&[f.len(), target.len(), grad.len()]);
    assert!(mean_over >= shape.batch, "a part of {} samples of a batch of {mean_over}", shape.batch);
    assert_eq!(t.len(), shape.batch, "one time per sample");
    let s = shape.sample_len();
    let pixels = shape.pixels;
    let losses = per_sample_losses(f, target, shape, spec);
    for (b, &tb) in t.iter().enumerate() {
        let range = b * s..(b + 1) * s;
        let (fb, gb, db) = (&f[range.clone()], &target[range.clone()], &mut grad[range]);
        let scale = spec.time_weight.at(tb) / mean_over as f64;
        let root = (mean_square(fb, gb) + spec.cbl_eps * spec.cbl_eps).sqrt();
        // d/dF of √(m + c²): d/(S·√(m + c²)); 0 where the root is 0 (see module doc).
        let rms_factor = if root > 0.0 { 1.0 / (s as f64 * root) } else { 0.0 };
        for (i, d) in db.iter_mut().enumerate() {
            *d = T::of(scale * rms_factor * (fb[i].f64() - gb[i].f64()));
        }
        if spec.cosine_term {
            for p in 0..pixels {
                let px = PixelCosine::new(fb, gb, pixels, p);
                let inv = 1.0 / (px.f_norm * px.g_norm);
                let norm_term = if px.f_unclamped { px.dot * inv / (px.f_norm * px.f_norm) } else { 0.0 };
                for c in 0..shape.channels {
                    let i = c * pixels + p;
                    let dcos = gb[i].f64() * inv - norm_term * fb[i].f64();
                    db[i] = T::of(db[i].f64() - scale * dcos / pixels as f64);
                }
            }
        }
    }
    partial_batch_loss(&losses, t, spec.time_weight, mean_over)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cbl_eps: f64, cosine_term: bool, time_weight: TimeWeight) -> LossSpec {
        LossSpec {
            cbl_eps,
            cosine_term,
            time_weight,
        }
    }

    #[test]
    fn robust_loss_worked_values() {
        // Spec §2.7 / §8 item 14: a constant difference 0.3.
        let shape = LossShape {
            batch: 1,
            channels: 4,
            pixels: 4,
        };
        let f = vec![0.3f64; 16];
        let g = vec![0.0f64; 16];
        // The spec's values were computed in float32, where √(m + c²) − c near c = 5 or 9
        // carries the f32 rounding of √(…) ≈ c: half an ulp of 5 and of 9 is 4.8e-7.
        for (c, want) in [(0.0, 0.3), (5.0, 0.0089917), (9.0, 0.0049982)] {
            let l = per_sample_losses(&f, &g, shape, &spec(c, false, TimeWeight::None))[0];
            assert!((l - want).abs() < 4.8e-7, "c = {c}: {l}");
            let exact = (0.09f64 + c * c).sqrt() - c;
            assert!((l - exact).abs() < 1e-15, "c = {c}: {l} vs {exact}");
        }
        // F = e₀, target = e₁ at every pixel, C = 4, cosine term: √(2/C) + 1.
        let mut f = vec![0.0f64; 16];
        let mut g = vec![0.0f64; 16];
        for p in 0..4 {
            f[p] = 1.0;
            g[4 + p] = 1.0;
        }
        let l = per_sample_losses(&f, &g, shape, &spec(0.0, true, TimeWeight::None))[0];
        assert!((l - 1.707_106_8).abs() < 1e-7, "{l}");
    }

    #[test]
    fn plain_loss_is_mean_of_per_sample_rms_and_cosine_weight_values() {
        // Spec §8 item 13: mean_b RMS_b(F − F*).
        let shape = LossShape {
            batch: 2,
            channels: 1,
            pixels: 2,
        };
        let f = [1.0f32, 1.0, 0.0, 0.0];
        let g = [0.0f32, 0.0, 3.0, -4.0];
        let mut grad = [0.0f32; 4];
        let l = loss_and_grad(&f, &g, &[0.2, 0.9], shape, &spec(0.0, false, TimeWeight::None), &mut grad);
        let want = (1.0 + (12.5f64).sqrt()) / 2.0;
        assert!((l - want).abs() < 1e-12);
        // Spec §2.8: cos(1.57t) = 1, 0.7073882, 0.0007963 at t = 0, 0.5, 1 (7 digits of a
        // float32 evaluation; f64 gives 0.70738827 and 0.00079633).
        for (t, w) in [(0.0f32, 1.0), (0.5, 0.7073882), (1.0, 0.0007963)] {
            assert!((TimeWeight::Cosine.at(t) - w).abs() < 1e-7);
        }
    }

    /// Deterministic pseudo-random values in [−1, 1).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()
    }

    /// max |fd − an| / max |an| over every element, central differences in f64.
    fn gradient_error(f: &[f64], g: &[f64], t: &[f32], shape: LossShape, spec: &LossSpec, h: f64) -> f64 {
        let mut grad = vec![0.0; f.len()];
        loss_and_grad(f, g, t, shape, spec, &mut grad);
        let loss = |x: &[f64]| batch_loss(&per_sample_losses(x, g, shape, spec), t, spec.time_weight);
        let mut x = f.to_vec();
        let (mut worst, mut biggest) = (0.0f64, 0.0f64);
        for i in 0..f.len() {
            x[i] = f[i] + h;
            let up = loss(&x);
            x[i] = f[i] - h;
            let down = loss(&x);
            x[i] = f[i];
            worst = worst.max(((up - down) / (2.0 * h) - grad[i]).abs());
            biggest = biggest.max(grad[i].abs());
        }
        worst / biggest
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let shape = LossShape {
            batch: 3,
            channels: 4,
            pixels: 6,
        };
        let n = 3 * 24;
        let f = values(n, 1);
        let mut g = values(n, 2);
        // One target pixel with ‖G‖ below the clamp (its cosine is then ≈ 0).
        for c in 0..4 {
            g[24 + c * 6 + 2] = 1e-10;
        }
        let t = [0.1f32, 0.5, 0.95];
        for sp in [
            spec(0.0, false, TimeWeight::None),
            spec(0.0, true, TimeWeight::Cosine),
            spec(5.0, false, TimeWeight::Cosine),
            spec(9.0, true, TimeWeight::None),
        ] {
            let err = gradient_error(&f, &g, &t, shape, &sp, 1e-5);
            assert!(err <= 1e-6, "{sp:?}: relative error {err:e}");
        }
    }

    #[test]
    fn gradient_inside_the_norm_clamp() {
        // A pixel of F with ‖F‖ < 1e-8: there cos = s/(1e-8·‖G‖) is linear in F, so the
        // norm term vanishes; small steps keep ‖F‖ below the clamp.
        let shape = LossShape {
            batch: 1,
            channels: 3,
            pixels: 2,
        };
        let mut f = values(6, 3);
        let g = values(6, 4);
        for c in 0..3 {
            f[c * 2 + 1] = 1e-9 * (c as f64 + 1.0);
        }
        let sp = spec(0.0, true, TimeWeight::None);
        let mut grad = vec![0.0; 6];
        loss_and_grad(&f, &g, &[0.3], shape, &sp, &mut grad);
        let loss = |x: &[f64]| batch_loss(&per_sample_losses(x, &g, shape, &sp), &[0.3], TimeWeight::None);
        for c in 0..3 {
            let i = c * 2 + 1;
            let h = 1e-10;
            let (mut up, mut down) = (f.clone(), f.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!((fd - grad[i]).abs() <= 1e-6 * grad[i].abs(), "channel {c}: fd {fd} vs {}", grad[i]);
        }
    }

    #[test]
    fn zero_difference_has_zero_gradient() {
        let shape = LossShape {
            batch: 1,
            channels: 2,
            pixels: 2,
        };
        let f = [0.5f32, -1.0, 2.0, 0.25];
        let mut grad = [1.0f32; 4];
        let l = loss_and_grad(&f, &f, &[0.5], shape, &spec(0.0, false, TimeWeight::None), &mut grad);
        assert_eq!(l, 0.0);
        assert_eq!(grad, [0.0; 4]);
    }
}
