//! GroupNorm with affine parameters, optionally fused with SiLU (the VAE's
//! norm → SiLU pairs). One task per (image, group): statistics in f64 over the group's
//! elements in order (two passes: mean, then the centred sum of squares), so results do
//! not depend on the thread count.

use rayon::prelude::*;

use super::vmath::sigmoid;
use super::Elem;
use crate::cpu_dispatch;

/// Σ f(x) in f64 with eight interleaved accumulators (a fixed order, vectorisable).
#[inline(always)]
fn sum_f64<T: Elem>(x: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            acc[j] += f(c[j].f64());
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|v| f(v.f64())).sum();
    acc.iter().sum::<f64>() + tail
}

/// y = GN(x)·γ + β, then SiLU if `silu`. x, y: [n, c, hw]; gamma, beta: [c].
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Elem>(x: &[T], gamma: &[T], beta: &[T], y: &mut [T], n: usize, c: usize, hw: usize, groups: usize, eps: f32, silu: bool) {
    let cg = c / groups;
    let len = cg * hw;
    if n == 0 || len == 0 {
        return;
    }
    y[..n * c * hw].par_chunks_mut(len).enumerate().for_each(|(task, yg)| {
        let g = task % groups;
        let xg = &x[task * len..(task + 1) * len];
        let (mean, var) = cpu_dispatch!({
            let mean = sum_f64(xg, |v| v) / len as f64;
            (mean, sum_f64(xg, |v| (v - mean) * (v - mean)) / len as f64)
        });
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for (ci, (yc, xc)) in yg.chunks_exact_mut(hw).zip(xg.chunks_exact(hw)).enumerate() {
            let ch = g * cg + ci;
            // (x − mean)·(γ·rstd) + β: centred first, so a group whose elements are all
            // equal gives β exactly (rstd = 1/√eps would amplify any cancellation residue).
            let (m, a, b) = (T::of(mean), T::of(gamma[ch].f64() * rstd), beta[ch]);
            if silu {
                cpu_dispatch!(for (o, &v) in yc.iter_mut().zip(xc) {
                    let t = (v - m) * a + b;
                    *o = t * sigmoid(t);
                })
            } else {
                cpu_dispatch!(for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = (v - m) * a + b;
                })
            }
        }
    });
}
