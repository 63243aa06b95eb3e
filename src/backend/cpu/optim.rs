//! Optimizer updates, EMA and gradient utilities over flat parameter buffers.
//!
//! Every op walks its buffers in fixed-size chunks ([`CHUNK`] elements) spread over the
//! pool. Element updates are independent, and the one reduction ([`sum_squares`]) keeps
//! one f64 partial sum per chunk and adds the partials in chunk order, so every result is
//! bit-identical for any thread count. Per-element arithmetic is done in f64 and rounded
//! once to the element type on store.

use rayon::prelude::*;

use super::Elem;
use crate::backend::OptimHp;

/// Elements per parallel work item (fixed, so the reduction order never depends on the
/// number of threads).
const CHUNK: usize = 4096;

/// The reference's own AdamW (`optimers/adamw.py`, spec §2.9) at step `step` (1-based).
///
/// For every element, with g the gradient:
/// ```text
/// m ← β₁·m + (1 − β₁)·g
/// v ← β₂·v + (1 − β₂)·g²
/// p ← p − lr·√(1 − β₂ᵏ)/(1 − β₁ᵏ) · ( m/(√v + eps) + wd·p )
/// ```
/// eps is added to the *uncorrected* √v and the weight decay is scaled by the same
/// bias-corrected step size (this differs from `torch.optim.AdamW`).
///
/// p, g, m, v: `[N]` (same length).
pub fn adamw_step<T: Elem>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], hp: &OptimHp, step: u64) {
    check_lengths(p.len(), g.len(), m.len(), v.len());
    let k = step.max(1) as f64;
    let step_size = hp.lr * (1.0 - hp.beta2.powf(k)).sqrt() / (1.0 - hp.beta1.powf(k));
    let (b1, b2, eps, wd) = (hp.beta1, hp.beta2, hp.eps, hp.weight_decay);
    par_zip4(p, g, m, v, |pe, ge, me, ve| {
        let (pv, gv) = (pe.f64(), ge.f64());
        let mv = b1 * me.f64() + (1.0 - b1) * gv;
        let vv = b2 * ve.f64() + (1.0 - b2) * gv * gv;
        let (m_t, v_t) = (T::of(mv), T::of(vv));
        *me = m_t;
        *ve = v_t;
        let update = m_t.f64() / (v_t.f64().sqrt() + eps) + wd * pv;
        *pe = T::of(pv - step_size * update);
    });
}

/// `torch.optim.RAdam` with its defaults (`decoupled_weight_decay = False`) at step
/// `step` (1-based), following torch's `_single_tensor_radam`:
/// ```text
/// g  ← g + wd·p                                   (L2 penalty folded into the gradient)
/// m  ← m + (1 − β₁)·(g − m)                       (= β₁m + (1 − β₁)g, torch's lerp)
/// v  ← β₂·v + (1 − β₂)·g²
/// m̂  = m / (1 − β₁ᵏ)
/// ρ∞ = 2/(1 − β₂) − 1
/// ρₖ = ρ∞ − 2k·β₂ᵏ/(1 − β₂ᵏ)
/// if ρₖ > 5:
///     l = √(1 − β₂ᵏ) / (√v + eps)                 (eps on the uncorrected √v, as torch)
///     r = √( (ρₖ − 4)(ρₖ − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρₖ) )
///     p ← p − lr·m̂·l·r
/// else:
///     p ← p − lr·m̂                               (un-adapted SGD-with-momentum step)
/// ```
/// With the default β₂ = 0.999 the first five steps take the un-adapted branch
/// (ρ₁ … ρ₅ ≈ 1, 1.9995, 2.9987, 3.9975, 4.9960) and step 6 is the first rectified one.
///
/// p, g, m, v: `[N]` (same length). g is not modified.
pub fn radam_step<T: Elem>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], hp: &OptimHp, step: u64) {
    check_lengths(p.len(), g.len(), m.len(), v.len());
    let k = step.max(1) as f64;
    let (b1, b2, eps, wd, lr) = (hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.lr);
    let bias_correction1 = 1.0 - b1.powf(k);
    let bias_correction2 = 1.0 - b2.powf(k);
    let rho_inf = 2.0 / (1.0 - b2) - 1.0;
    let rho_k = rho_inf - 2.0 * k * b2.powf(k) / bias_correction2;
    // `Some(lr·r·√(1 − β₂ᵏ))` on the rectified branch, `None` on the un-adapted one.
    let rectified = (rho_k > 5.0).then(|| {
        let rect = ((rho_k - 4.0) * (rho_k - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_k)).sqrt();
        lr * rect * bias_correction2.sqrt()
    });
    par_zip4(p, g, m, v, |pe, ge, me, ve| {
        let pv = pe.f64();
        let gv = ge.f64() + wd * pv;
        let mv = me.f64();
        let (m_t, v_t) = (T::of(mv + (1.0 - b1) * (gv - mv)), T::of(b2 * ve.f64() + (1.0 - b2) * gv * gv));
        *me = m_t;
        *ve = v_t;
        let m_hat = m_t.f64() / bias_correction1;
        let delta = match rectified {
            Some(scale) => scale * m_hat / (v_t.f64().sqrt() + eps),
            None => lr * m_hat,
        };
        *pe = T::of(pv - delta);
    });
}

/// dst ← decay·dst + (1 − decay)·src. src, dst: `[N]`.
pub fn ema<T: Elem>(src: &[T], dst: &mut [T], decay: f64) {
    assert_eq!(src.len(), dst.len(), "ema: source and destination lengths differ");
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(dc, sc)| {
        for (d, &s) in dc.iter_mut().zip(sc) {
            *d = T::of(decay * d.f64() + (1.0 - decay) * s.f64());
        }
    });
}

/// Σ x² in f64: one partial sum per [`CHUNK`], partials added in chunk order. x: `[N]`.
pub fn sum_squares<T: Elem>(x: &[T]) -> f64 {
    let partials: Vec<f64> = x.par_chunks(CHUNK).map(|c| c.iter().map(|v| v.f64() * v.f64()).sum::<f64>()).collect();
    partials.iter().sum()
}

/// x ← s·x. x: `[N]`.
pub fn scale<T: Elem>(x: &mut [T], s: f64) {
    x.par_chunks_mut(CHUNK).for_each(|c| {
        for v in c {
            *v = T::of(v.f64() * s);
        }
    });
}

/// NaN, +inf and −inf → 0 (`torch.nan_to_num(nan=0, posinf=0, neginf=0)`). x: `[N]`.
pub fn zero_non_finite<T: Elem>(x: &mut [T]) {
    x.par_chunks_mut(CHUNK).for_each(|c| {
        for v in c.iter_mut().filter(|v| !v.is_finite()) {
            *v = T::zero();
        }
    });
}

fn check_lengths(p: usize, g: usize, m: usize, v: usize) {
    assert!(p == g && p == m && p == v, "optimizer buffers differ in length: p {p}, g {g}, m {m}, v {v}");
}

/// Runs `f` on matching elements of four equally long buffers, chunk by chunk.
fn par_zip4<T: Elem>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], f: impl Fn(&mut T, &T, &mut T, &mut T) + Sync) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((pc, gc), mc), vc)| {
            for (((pe, ge), me), ve) in pc.iter_mut().zip(gc).zip(mc.iter_mut()).zip(vc.iter_mut()) {
                f(pe, ge, me, ve);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(lr: f64, beta2: f64, weight_decay: f64) -> OptimHp {
        OptimHp {
            lr,
            beta1: 0.9,
            beta2,
            eps: 1e-8,
            weight_decay,
        }
    }

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-300), "{a} vs {b}");
    }

    /// Values computed by hand (Python floats) from the formula of §2.9:
    /// p=1, g=0.5, lr=0.1, β=(0.9,0.999), eps=1e-8, wd=0.01; then g=−0.25, then g=2.
    #[test]
    fn adamw_matches_hand_computed_steps() {
        let h = hp(0.1, 0.999, 0.01);
        let (mut p, mut m, mut v) = (vec![1.0f64], vec![0.0f64], vec![0.0f64]);
        let expected = [
            (0.5, 0.8996838354794964, 0.05, 0.00025),
            (-0.25, 0.872838435931781, 0.02, 0.00031225),
            (2.0, 0.805597358793174, 0.218, 0.00431193775),
        ];
        for (k, &(g, p_ref, m_ref, v_ref)) in expected.iter().enumerate() {
            adamw_step(&mut p, &[g], &mut m, &mut v, &h, k as u64 + 1);
            close(m[0], m_ref, 1e-14);
            close(v[0], v_ref, 1e-14);
            close(p[0], p_ref, 1e-14);
        }
    }

    /// torch.optim.RAdam semantics, values from a hand evaluation of its update rule:
    /// p=1, lr=0.1, wd=0.1, β=(0.9,0.999), g alternating 0.5 / −0.3 for 8 steps
    /// (steps 1–5 un-adapted, 6–8 rectified).
    #[test]
    fn radam_matches_hand_computed_steps() {
        let h = hp(0.1, 0.999, 0.1);
        let (mut p, mut m, mut v) = (vec![1.0f64], vec![0.0f64], vec![0.0f64]);
        let expected = [
            0.94,
            0.9224210526315789,
            0.889474849485337,
            0.8722458474590102,
            0.8448843806703423,
            0.843902606767016,
            0.8421605703523886,
            0.8407012059385998,
        ];
        for (k, &p_ref) in expected.iter().enumerate() {
            let g = if k % 2 == 0 { 0.5 } else { -0.3 };
            radam_step(&mut p, &[g], &mut m, &mut v, &h, k as u64 + 1);
            close(p[0], p_ref, 1e-12);
        }
    }

    #[test]
    fn radam_rectification_switches_on_at_step_six() {
        // With weight decay 0 and a constant gradient, the un-adapted branch moves by
        // exactly lr·m̂ = lr·g; the rectified branch by lr·r·g/(|g| + eps·…) ≠ lr·g.
        let h = hp(0.01, 0.999, 0.0);
        let (mut p, mut m, mut v) = (vec![0.0f64], vec![0.0f64], vec![0.0f64]);
        let mut before = 0.0;
        for k in 1..=6u64 {
            radam_step(&mut p, &[2.0], &mut m, &mut v, &h, k);
            let moved = before - p[0];
            before = p[0];
            if k <= 5 {
                close(moved, 0.02, 1e-12);
            } else {
                // ρ₆, r and the adaptive factor √(1−β₂⁶)/(√v₆ + eps) evaluated by hand.
                close(moved, 0.0002582111113302865, 1e-9);
            }
        }
    }

    #[test]
    fn ema_scale_zero_non_finite() {
        let mut d = vec![1.0f32, 2.0, -4.0];
        ema(&[3.0, 2.0, 0.0], &mut d, 0.75);
        assert_eq!(d, vec![1.5, 2.0, -3.0]);
        // decay 0 copies exactly.
        let src = [0.1f32, -7.25, 3.3e-7];
        ema(&src, &mut d, 0.0);
        assert_eq!(d, src);
        scale(&mut d, -2.0);
        assert_eq!(d, vec![-0.2, 14.5, -6.6e-7]);
        let mut x = vec![f32::NAN, 1.0, f32::INFINITY, -2.0, f32::NEG_INFINITY];
        zero_non_finite(&mut x);
        assert_eq!(x, vec![0.0, 1.0, 0.0, -2.0, 0.0]);
    }

    #[test]
    fn sum_squares_is_exact_in_f64_and_thread_independent() {
        let x: Vec<f32> = (0..3 * CHUNK + 17).map(|i| ((i as f32) * 0.37).sin()).collect();
        let direct: f64 = {
            let parts: Vec<f64> = x.chunks(CHUNK).map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum()).collect();
            parts.iter().sum()
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| sum_squares(&x));
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(|| sum_squares(&x));
        assert_eq!(one.to_bits(), direct.to_bits());
        assert_eq!(three.to_bits(), direct.to_bits());
        assert_eq!(sum_squares(&[3.0f64, 4.0]), 25.0);
    }

    #[test]
    fn updates_are_thread_count_independent() {
        let n = 2 * CHUNK + 5;
        let g: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos()).collect();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
                let (mut p, mut m, mut v) = (vec![0.5f32; n], vec![0.0f32; n], vec![0.0f32; n]);
                for k in 1..=7 {
                    adamw_step(&mut p, &g, &mut m, &mut v, &hp(1e-3, 0.95, 0.1), k);
                    radam_step(&mut p, &g, &mut m, &mut v, &hp(1e-3, 0.999, 0.1), k);
                }
                p
            })
        };
        assert_eq!(run(1), run(2));
    }
}
