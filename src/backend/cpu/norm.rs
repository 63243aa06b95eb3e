//! LayerNorm / RMSNorm (eps 1e-6, optional learned weight) fused with adaLN modulation,
//! the gated residual `h += gate ⊙ y`, and DDT's per-head qk RMSNorm, with their
//! backward passes.

use rayon::prelude::*;

use super::{vmath, Elem};
use crate::backend::NormKind;
use crate::cpu_dispatch;

/// The reference's norm epsilon.
pub const NORM_EPS: f64 = 1e-6;

/// Where a block's shift and scale live inside the adaLN output `ada` [B, stride], and
/// the norm's learned weight [D] (None = 1).
pub struct Modulation<'a, T> {
    pub weight: Option<&'a [T]>,
    pub ada: &'a [T],
    pub stride: usize,
    pub shift_col: usize,
    pub scale_col: usize,
}

impl<T: Elem> Modulation<'_, T> {
    fn shift(&self, b: usize, d: usize) -> &[T] {
        &self.ada[b * self.stride + self.shift_col..][..d]
    }
    fn scale(&self, b: usize, d: usize) -> &[T] {
        &self.ada[b * self.stride + self.scale_col..][..d]
    }
    /// The norm weight at column j (1 without one).
    #[inline(always)]
    fn w(&self, j: usize) -> T {
        self.weight.map_or(T::one(), |w| w[j])
    }
}

/// (mean, 1/σ) of one row.
fn row_stats<T: Elem>(kind: NormKind, x: &[T]) -> (T, T) {
    let d = T::of(x.len() as f64);
    let eps = T::of(NORM_EPS);
    match kind {
        NormKind::LayerNorm => {
            let mean = vmath::sum(x) / d;
            let var = vmath::sum_map(x, |v| (v - mean) * (v - mean)) / d;
            (mean, T::one() / (var + eps).sqrt())
        }
        NormKind::RmsNorm => {
            let ms = vmath::dot(x, x) / d;
            (T::zero(), T::one() / (ms + eps).sqrt())
        }
    }
}

/// y = norm(x)·(1 + scale[b]) + shift[b]; x, y: [B·T, D]; stats: [B·T, 2].
pub fn forward<T: Elem>(kind: NormKind, x: &[T], m: &Modulation<T>, y: &mut [T], stats: Option<&mut [T]>, b: usize, t: usize, d: usize) {
    let rows = b * t;
    let body = |r: usize, yr: &mut [T]| -> (T, T) {
        let xr = &x[r * d..(r + 1) * d];
        let (sh, sc) = (m.shift(r / t, d), m.scale(r / t, d));
        cpu_dispatch!({
            let (mean, rstd) = row_stats(kind, xr);
            for j in 0..d {
                yr[j] = (xr[j] - mean) * rstd * m.w(j) * (T::one() + sc[j]) + sh[j];
            }
            (mean, rstd)
        })
    };
    match stats {
        Some(st) => y[..rows * d]
            .par_chunks_mut(d)
            .zip(st[..rows * 2].par_chunks_mut(2))
            .enumerate()
            .for_each(|(r, (yr, s))| {
                let (mean, rstd) = body(r, yr);
                s[0] = mean;
                s[1] = rstd;
            }),
        None => y[..rows * d].par_chunks_mut(d).enumerate().for_each(|(r, yr)| {
            body(r, yr);
        }),
    }
}

/// Backward of [`forward`]: dx += ∂L/∂x; dada[shift], dada[scale] += per-sample sums;
/// dweight [D] += Σ over rows in order (when the norm has a weight).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Elem>(
    kind: NormKind,
    dy: &[T],
    x: &[T],
    m: &Modulation<T>,
    stats: &[T],
    dx: &mut [T],
    dada: &mut [T],
    dweight: Option<&mut [T]>,
    b: usize,
    t: usize,
    d: usize,
) {
    let rows = b * t;
    let inv_d = T::of(1.0 / d as f64);
    dx[..rows * d].par_chunks_mut(d).enumerate().for_each(|(r, dxr)| {
        let (xr, dyr) = (&x[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d]);
        let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
        let sc = m.scale(r / t, d);
        cpu_dispatch!({
            let mut g = [T::zero(); 8];
            let mut gx = [T::zero(); 8];
            for j0 in (0..d).step_by(8) {
                for k in 0..8.min(d - j0) {
                    let j = j0 + k;
                    let gj = dyr[j] * (T::one() + sc[j]) * m.w(j);
                    g[k] = g[k] + gj;
                    gx[k] = gx[k] + gj * (xr[j] - mean) * rstd;
                }
            }
            let sum_g = vmath::sum(&g);
            let sum_gx = vmath::sum(&gx);
            let mean_g = if kind == NormKind::LayerNorm { sum_g * inv_d } else { T::zero() };
            let mean_gx = sum_gx * inv_d;
            for j in 0..d {
                let g = dyr[j] * (T::one() + sc[j]) * m.w(j);
                let xh = (xr[j] - mean) * rstd;
                dxr[j] = dxr[j] + rstd * (g - mean_g - xh * mean_gx);
            }
        })
    });
    // Per-sample shift/scale gradients: sum over tokens in order, split by sample.
    let stride = m.stride;
    dada.par_chunks_mut(stride).take(b).enumerate().for_each(|(bi, da)| {
        for ti in 0..t {
            let r = bi * t + ti;
            let (xr, dyr) = (&x[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d]);
            let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
            let (dshift, dscale) = if m.shift_col < m.scale_col {
                let (a, b) = da.split_at_mut(m.scale_col);
                (&mut a[m.shift_col..m.shift_col + d], &mut b[..d])
            } else {
                let (a, b) = da.split_at_mut(m.shift_col);
                (&mut b[..d], &mut a[m.scale_col..m.scale_col + d])
            };
            cpu_dispatch!(for j in 0..d {
                let xh = (xr[j] - mean) * rstd;
                dshift[j] = dshift[j] + dyr[j];
                dscale[j] = dscale[j] + dyr[j] * xh * m.w(j);
            })
        }
    });
    if let Some(dw) = dweight {
        // dw[j] += Σ_r dy·(1 + scale)·x̂, rows in order, split by column.
        dw[..d].par_chunks_mut(8).enumerate().for_each(|(c, dwc)| {
            for r in 0..rows {
                let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
                let sc = m.scale(r / t, d);
                for (k, dwj) in dwc.iter_mut().enumerate() {
                    let j = c * 8 + k;
                    let xh = (x[r * d + j] - mean) * rstd;
                    *dwj = *dwj + dy[r * d + j] * (T::one() + sc[j]) * xh;
                }
            }
        });
    }
}

/// Index of q (`part` 0) or k (`part` 1) head `h` of row `r` inside qkv [N, 3D].
fn qk_at(r: usize, part: usize, h: usize, heads: usize, dh: usize) -> usize {
    r * 3 * heads * dh + part * heads * dh + h * dh
}

/// DDT qk-norm forward (see `Backend::qk_norm_fwd`). qkv, out: [N, 3D]; qkw: [2·d_h];
/// stats: [N, 2H].
pub fn qk_norm_forward<T: Elem>(qkv: &[T], qkw: &[T], out: &mut [T], stats: Option<&mut [T]>, n: usize, heads: usize, dh: usize) {
    let w3 = 3 * heads * dh;
    let body = |r: usize, o: &mut [T], mut st: Option<&mut [T]>| {
        o.copy_from_slice(&qkv[r * w3..(r + 1) * w3]);
        for part in 0..2 {
            let w = &qkw[part * dh..(part + 1) * dh];
            for h in 0..heads {
                let at = qk_at(0, part, h, heads, dh);
                let row = &mut o[at..at + dh];
                cpu_dispatch!({
                    let ms = vmath::dot(row, row) / T::of(dh as f64);
                    let ri = T::one() / (ms + T::of(NORM_EPS)).sqrt();
                    for j in 0..dh {
                        row[j] = row[j] * ri * w[j];
                    }
                    if let Some(st) = st.as_deref_mut() {
                        st[part * heads + h] = ri;
                    }
                })
            }
        }
    };
    match stats {
        Some(st) => out[..n * w3]
            .par_chunks_mut(w3)
            .zip(st[..n * 2 * heads].par_chunks_mut(2 * heads))
            .enumerate()
            .for_each(|(r, (o, s))| body(r, o, Some(s))),
        None => out[..n * w3].par_chunks_mut(w3).enumerate().for_each(|(r, o)| body(r, o, None)),
    }
}

/// DDT qk-norm backward. dout, qkv, dqkv: [N, 3D]; qkw, dqkw: [2·d_h]; stats: [N, 2H].
#[allow(clippy::too_many_arguments)]
pub fn qk_norm_backward<T: Elem>(dout: &[T], qkv: &[T], qkw: &[T], stats: &[T], dqkv: &mut [T], dqkw: &mut [T], n: usize, heads: usize, dh: usize) {
    let w3 = 3 * heads * dh;
    let inv_d = T::of(1.0 / dh as f64);
    dqkv[..n * w3].par_chunks_mut(w3).enumerate().for_each(|(r, g)| {
        g.copy_from_slice(&dout[r * w3..(r + 1) * w3]);
        for part in 0..2 {
            let w = &qkw[part * dh..(part + 1) * dh];
            for h in 0..heads {
                let at = qk_at(0, part, h, heads, dh);
                let x = &qkv[r * w3 + at..][..dh];
                let ri = stats[r * 2 * heads + part * heads + h];
                let gr = &mut g[at..at + dh];
                cpu_dispatch!({
                    // y = x̂ ⊙ w, x̂ = x·ri: dx = ri·(gw − x̂·mean(gw·x̂)), gw = g ⊙ w.
                    let mut sgx = T::zero();
                    for j in 0..dh {
                        sgx = sgx + gr[j] * w[j] * x[j] * ri;
                    }
                    let mean_gx = sgx * inv_d;
                    for j in 0..dh {
                        let xh = x[j] * ri;
                        gr[j] = ri * (gr[j] * w[j] - xh * mean_gx);
                    }
                })
            }
        }
    });
    // dqkw[part·d_h + j] += Σ_r Σ_h dout·x̂, rows and heads in order.
    dqkw[..2 * dh].par_chunks_mut(dh).enumerate().for_each(|(part, dw)| {
        for r in 0..n {
            for h in 0..heads {
                let at = qk_at(r, part, h, heads, dh);
                let ri = stats[r * 2 * heads + part * heads + h];
                for j in 0..dh {
                    dw[j] = dw[j] + dout[at + j] * qkv[at + j] * ri;
                }
            }
        }
    });
}

/// h[b, t, :] += gate[b] ⊙ y[b, t, :]; y, h: [B·T, D]; ada: [B, stride].
pub fn gate_residual_forward<T: Elem>(y: &[T], ada: &[T], stride: usize, gate_col: usize, h: &mut [T], b: usize, t: usize, d: usize) {
    h[..b * t * d].par_chunks_mut(d).enumerate().for_each(|(r, hr)| {
        let g = &ada[(r / t) * stride + gate_col..][..d];
        let yr = &y[r * d..(r + 1) * d];
        cpu_dispatch!(for j in 0..d {
            hr[j] = hr[j] + g[j] * yr[j];
        })
    });
}

/// dy = gate ⊙ dh (assign); dada[gate] += Σₜ dh ⊙ y.
pub fn gate_residual_backward<T: Elem>(
    dh: &[T],
    y: &[T],
    ada: &[T],
    stride: usize,
    gate_col: usize,
    dy: &mut [T],
    dada: &mut [T],
    b: usize,
    t: usize,
    d: usize,
) {
    dy[..b * t * d].par_chunks_mut(d).enumerate().for_each(|(r, dyr)| {
        let g = &ada[(r / t) * stride + gate_col..][..d];
        let dhr = &dh[r * d..(r + 1) * d];
        cpu_dispatch!(for j in 0..d {
            dyr[j] = g[j] * dhr[j];
        })
    });
    dada.par_chunks_mut(stride).take(b).enumerate().for_each(|(bi, da)| {
        let dg = &mut da[gate_col..gate_col + d];
        for ti in 0..t {
            let r = bi * t + ti;
            let (dhr, yr) = (&dh[r * d..(r + 1) * d], &y[r * d..(r + 1) * d]);
            cpu_dispatch!(for j in 0..d {
                dg[j] = dg[j] + dhr[j] * yr[j];
            })
        }
    });
}

/// EDM2 `normalize` of every row: y = x / (1e-4 + ‖x‖/√n). x, y: [rows, n].
pub fn mp_normalize_rows<T: Elem>(x: &[T], y: &mut [T], rows: usize, n: usize) {
    let alpha = T::of(1.0 / (n as f64).sqrt());
    y[..rows * n].par_chunks_mut(n.max(1)).enumerate().for_each(|(r, yr)| {
        let xr = &x[r * n..(r + 1) * n];
        cpu_dispatch!({
            let norm = vmath::dot(xr, xr).sqrt();
            let d = T::of(1e-4) + alpha * norm;
            for j in 0..n {
                yr[j] = xr[j] / d;
            }
        })
    });
}

/// x ← clamp(x, −lim, lim); NaN stays NaN.
pub fn clamp<T: Elem>(x: &mut [T], lim: f64) {
    let (lo, hi) = (T::of(-lim), T::of(lim));
    x.par_chunks_mut(4096).for_each(|c| {
        for v in c.iter_mut() {
            if *v < lo {
                *v = lo;
            } else if *v > hi {
                *v = hi;
            }
        }
    });
}
