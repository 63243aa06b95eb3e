//! Whole-batch versions of the transport identities of spec §1.1: the network input
//! x_t = α·z + γ·x, the regression target F* = α̂·z + γ̂·x, and the recovery of both
//! endpoints x̂ = (α·F − α̂·x_t)/Δ, ẑ = (γ̂·x_t − γ·F)/Δ from a network output F.
//!
//! Buffers are `[B, C, H, W]` flattened; sample b owns the contiguous range
//! b·S .. (b+1)·S with S = C·H·W, and uses the coefficients `coefs[b]`.
//! Arithmetic is done in f64 and rounded once to f32.

use super::coefficients::Coef;

/// Elements per sample S, checking that every buffer has B·S elements.
pub(crate) fn sample_len(batch: usize, lens: &[usize]) -> usize {
    assert!(batch > 0, "empty batch");
    let n = lens[0];
    assert!(n.is_multiple_of(batch), "buffer of {n} elements is not a batch of {batch}");
    assert!(lens.iter().all(|&l| l == n), "buffer lengths differ: {lens:?}");
    n / batch
}

/// out[b] = op(coefs[b], a[b, i], c[b, i]) for every element. a, c, out: `[B, S]`.
fn per_sample(coefs: &[Coef], a: &[f32], c: &[f32], out: &mut [f32], op: impl Fn(&Coef, f64, f64) -> f64) {
    let s = sample_len(coefs.len(), &[a.len(), c.len(), out.len()]);
    for (b, coef) in coefs.iter().enumerate() {
        let r = b * s..(b + 1) * s;
        for ((o, &ai), &ci) in out[r.clone()].iter_mut().zip(&a[r.clone()]).zip(&c[r]) {
            *o = op(coef, ai as f64, ci as f64) as f32;
        }
    }
}

/// Network input x_t = α(t)·z + γ(t)·x. z, x, x_t: `[B, C, H, W]`; coefs: `[B]`.
pub fn interpolate(coefs: &[Coef], z: &[f32], x: &[f32], x_t: &mut [f32]) {
    per_sample(coefs, z, x, x_t, |c, z, x| c.interpolate(z, x));
}

/// Regression target F* = α̂(t)·z + γ̂(t)·x. z, x, target: `[B, C, H, W]`; coefs: `[B]`.
pub fn regression_target(coefs: &[Coef], z: &[f32], x: &[f32], target: &mut [f32]) {
    per_sample(coefs, z, x, target, |c, z, x| c.target(z, x));
}

/// Data estimate x̂ = (α·F − α̂·x_t)/Δ. f, x_t, x_hat: `[B, C, H, W]`; coefs: `[B]`.
pub fn data_estimate(coefs: &[Coef], f: &[f32], x_t: &[f32], x_hat: &mut [f32]) {
    per_sample(coefs, f, x_t, x_hat, |c, f, xt| c.recover_x(f, xt));
}

/// Noise estimate ẑ = (γ̂·x_t − γ·F)/Δ. f, x_t, z_hat: `[B, C, H, W]`; coefs: `[B]`.
pub fn noise_estimate(coefs: &[Coef], f: &[f32], x_t: &[f32], z_hat: &mut [f32]) {
    per_sample(coefs, f, x_t, z_hat, |c, f, xt| c.recover_z(f, xt));
}

#[cfg(test)]
mod tests {
    use super::super::coefficients::Coefficients;
    use super::*;
    use crate::transport::TransportKind::Linear;

    #[test]
    fn round_trip_on_a_batch() {
        let t = [0.1f32, 0.9];
        let coefs = Linear.at_all(&t);
        let z: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let x: Vec<f32> = (0..6).map(|i| 0.3 - i as f32 * 0.2).collect();
        let (mut xt, mut f, mut xh, mut zh) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 6], vec![0.0; 6]);
        interpolate(&coefs, &z, &x, &mut xt);
        regression_target(&coefs, &z, &x, &mut f);
        // Linear: x_t = t·z + (1 − t)·x, F* = z − x.
        assert!((xt[4] - (0.9 * z[4] + 0.1 * x[4])).abs() < 1e-6);
        assert_eq!(f[2], z[2] - x[2]);
        data_estimate(&coefs, &f, &xt, &mut xh);
        noise_estimate(&coefs, &f, &xt, &mut zh);
        for i in 0..6 {
            assert!((xh[i] - x[i]).abs() < 1e-6 && (zh[i] - z[i]).abs() < 1e-6);
        }
    }
}
