//! Multi-head attention with optional qk-RMSNorm and 2-D RoPE (TiT), forward and
//! backward. One task per (image, head): it reads its head's slice of `qkv`, writes its
//! head's columns of the output, so tasks never share an output element.

use rayon::prelude::*;

use super::{bf16, gemm::matmul_seq as matmul, norm::NORM_EPS, vmath, Elem};
use crate::backend::AttnDims;
use crate::cpu_dispatch;

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    /// # Safety: `off..off+len` must be in bounds and not aliased by another task.
    unsafe fn slice<'a>(self, off: usize, len: usize) -> &'a mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(off), len)
    }
}

/// Offsets of the three parts of the cache (see [`AttnDims::cache_len`]).
struct CacheLayout {
    qk: usize,
    rms: usize,
    probs: usize,
}

fn cache_layout(dm: &AttnDims) -> CacheLayout {
    let bt = dm.batch * dm.tokens;
    let rms = bt * 2 * dm.hidden();
    CacheLayout {
        qk: 0,
        rms,
        probs: rms + bt * dm.heads * 2,
    }
}

/// Applies RoPE to one head row in place: (a, b) ↦ (a·cos − b·sin, b·cos + a·sin).
fn rope_row<T: Elem>(x: &mut [T], cos: &[T], sin: &[T]) {
    for j in (0..x.len()).step_by(2) {
        let (a, b) = (x[j], x[j + 1]);
        x[j] = a * cos[j] - b * sin[j];
        x[j + 1] = b * cos[j + 1] + a * sin[j + 1];
    }
}

/// Transpose of [`rope_row`].
fn rope_row_bwd<T: Elem>(g: &mut [T], cos: &[T], sin: &[T]) {
    for j in (0..g.len()).step_by(2) {
        let (ga, gb) = (g[j], g[j + 1]);
        g[j] = ga * cos[j] + gb * sin[j + 1];
        g[j + 1] = gb * cos[j + 1] - ga * sin[j];
    }
}

/// 1 / rms of a row.
fn inv_rms<T: Elem>(x: &[T]) -> T {
    let ms = x.iter().map(|&v| v * v).sum::<T>() / T::of(x.len() as f64);
    T::one() / (ms + T::of(NORM_EPS)).sqrt()
}

/// Final q or k of one head (qk-norm, then RoPE) for all tokens of an image: [T, d_h].
/// out: [T, d_h] (assign).
#[allow(clippy::too_many_arguments)]
fn prepare<T: Elem>(qkv: &[T], part: usize, bi: usize, h: usize, cos: &[T], sin: &[T], dm: &AttnDims, rms_out: &mut [T], out: &mut [T]) {
    let (t, dh, d) = (dm.tokens, dm.head_dim, dm.hidden());
    for i in 0..t {
        let src = &qkv[(bi * t + i) * 3 * d + part * d + h * dh..][..dh];
        let row = &mut out[i * dh..(i + 1) * dh];
        row.copy_from_slice(src);
        rms_out[i] = T::one();
        if dm.qk_norm {
            let r = inv_rms(src);
            rms_out[i] = r;
            row.iter_mut().for_each(|v| *v = *v * r);
        }
        if dm.rope {
            rope_row(row, &cos[i * dh..(i + 1) * dh], &sin[i * dh..(i + 1) * dh]);
        }
    }
}

/// Row-wise softmax of `scale`·s in place on a [rows, cols] matrix.
fn softmax_rows<T: Elem>(s: &mut [T], cols: usize, scale: T) {
    cpu_dispatch!(for row in s.chunks_exact_mut(cols) {
        let mx = vmath::max(row);
        for v in row.iter_mut() {
            *v = ((*v - mx) * scale).fast_exp();
        }
        let inv = T::one() / vmath::sum(row);
        row.iter_mut().for_each(|v| *v = *v * inv);
    })
}

/// out [B·T, D] = softmax(q kᵀ/√d_h) v per head; fills `cache` when given. With `bf16`
/// (inference: no cache) both products run on bf16-rounded operands (q, k, v and the
/// probabilities rounded with [`bf16::round`]) with f32 accumulation, in the f32 GEMM:
/// on these small products (k = d_h for Q·Kᵀ) the bf16 kernels' packing costs more than
/// it saves.
pub fn forward<T: Elem>(qkv: &[T], cos: &[T], sin: &[T], out: &mut [T], cache: Option<&mut [T]>, dm: AttnDims, bf16: bool) {
    let (t, dh, d, nh) = (dm.tokens, dm.head_dim, dm.hidden(), dm.heads);
    let scale = T::of(1.0 / (dh as f64).sqrt());
    let outp = SendPtr(out.as_mut_ptr());
    let cl = cache_layout(&dm);
    let cachep = cache.map(|c| SendPtr(c.as_mut_ptr()));
    // Per-thread buffers, reused across tasks: q, k [T, d_h], s [T, T], their rms [T].
    let buffers = || {
        (
            vec![T::zero(); t * dh],
            vec![T::zero(); t * dh],
            vec![T::zero(); t * t],
            vec![T::zero(); t],
            vec![T::zero(); t],
        )
    };
    (0..dm.batch * nh).into_par_iter().for_each_init(buffers, |(q, k, s, rq, rk), task| {
        let (bi, h) = (task / nh, task % nh);
        prepare(qkv, 0, bi, h, cos, sin, &dm, rq, q);
        prepare(qkv, 1, bi, h, cos, sin, &dm, rk, k);
        let (q, k, s) = (&mut q[..], &mut k[..], &mut s[..]);
        let v = &qkv[bi * t * 3 * d + 2 * d + h * dh..];
        let o = unsafe { outp.slice(bi * t * d + h * dh, (t - 1) * d + dh) };
        if bf16 {
            let round = |x: &mut [T]| bf16::round_in_place(T::as_f32_mut(x).expect("bf16 on f32"));
            round(q);
            round(k);
            let mut vr = vec![T::zero(); t * dh];
            for (i, row) in vr.chunks_exact_mut(dh).enumerate() {
                row.copy_from_slice(&v[i * 3 * d..i * 3 * d + dh]);
            }
            round(&mut vr);
            matmul(t, dh, t, q, dh, 1, k, 1, dh, T::zero(), s, t, 1);
            softmax_rows(s, t, scale);
            round(s);
            matmul(t, t, dh, s, t, 1, &vr, dh, 1, T::zero(), o, d, 1);
        } else {
            // S = Q·Kᵀ (Kᵀ: rs 1, cs d_h), then scale + softmax.
            matmul(t, dh, t, q, dh, 1, k, 1, dh, T::zero(), s, t, 1);
            softmax_rows(s, t, scale);
            // O = P·V, V read in place from qkv (rs 3D), O written in place (rs D).
            matmul(t, t, dh, s, t, 1, v, 3 * d, 1, T::zero(), o, d, 1);
        }
        if let Some(cp) = cachep {
            unsafe {
                for i in 0..t {
                    let row = bi * t + i;
                    cp.slice(cl.qk + row * 2 * d + h * dh, dh).copy_from_slice(&q[i * dh..(i + 1) * dh]);
                    cp.slice(cl.qk + row * 2 * d + d + h * dh, dh).copy_from_slice(&k[i * dh..(i + 1) * dh]);
                    let r = cp.slice(cl.rms + (row * nh + h) * 2, 2);
                    r[0] = rq[i];
                    r[1] = rk[i];
                }
                cp.slice(cl.probs + task * t * t, t * t).copy_from_slice(s);
            }
        }
    });
}

/// dqkv [B·T, 3D] (assign) from dout [B·T, D] and the forward cache.
pub fn backward<T: Elem>(dout: &[T], qkv: &[T], cos: &[T], sin: &[T], cache: &[T], dqkv: &mut [T], dm: AttnDims) {
    let (t, dh, d, nh) = (dm.tokens, dm.head_dim, dm.hidden(), dm.heads);
    let scale = T::of(1.0 / (dh as f64).sqrt());
    let cl = cache_layout(&dm);
    let dp = SendPtr(dqkv.as_mut_ptr());
    // Per-thread buffers, reused across tasks (a fresh [T, T] per task was faulted in
    // page by page): q, k, dq, dk [T, d_h], ds [T, T]. Every element is assigned before
    // it is read.
    let buffers = || {
        (
            vec![T::zero(); t * dh],
            vec![T::zero(); t * dh],
            vec![T::zero(); t * dh],
            vec![T::zero(); t * dh],
            vec![T::zero(); t * t],
        )
    };
    (0..dm.batch * nh).into_par_iter().for_each_init(buffers, |(q, k, dq, dk, ds), task| {
        let (bi, h) = (task / nh, task % nh);
        let p = &cache[cl.probs + task * t * t..][..t * t];
        let base = bi * t;
        for i in 0..t {
            q[i * dh..(i + 1) * dh].copy_from_slice(&cache[cl.qk + (base + i) * 2 * d + h * dh..][..dh]);
            k[i * dh..(i + 1) * dh].copy_from_slice(&cache[cl.qk + (base + i) * 2 * d + d + h * dh..][..dh]);
        }
        let dout_h = &dout[base * d + h * dh..];
        let v = &qkv[base * 3 * d + 2 * d + h * dh..];
        // dV = Pᵀ·dO, written in place into dqkv's v slice.
        let dv = unsafe { dp.slice(base * 3 * d + 2 * d + h * dh, (t - 1) * 3 * d + dh) };
        matmul(t, t, dh, p, 1, t, dout_h, d, 1, T::zero(), dv, 3 * d, 1);
        // dP = dO·Vᵀ.
        matmul(t, dh, t, dout_h, d, 1, v, 1, 3 * d, T::zero(), ds, t, 1);
        // dS = P ⊙ (dP − rowsum(P ⊙ dP)), times the softmax scale.
        cpu_dispatch!(for i in 0..t {
            let (pr, dr) = (&p[i * t..(i + 1) * t], &mut ds[i * t..(i + 1) * t]);
            let dot = vmath::dot(pr, dr);
            for j in 0..t {
                dr[j] = pr[j] * (dr[j] - dot) * scale;
            }
        });
        matmul(t, t, dh, ds, t, 1, k, dh, 1, T::zero(), dq, dh, 1);
        matmul(t, t, dh, ds, 1, t, q, dh, 1, T::zero(), dk, dh, 1);
        for (part, g) in [(0usize, dq), (1usize, dk)] {
            for i in 0..t {
                let gr = &mut g[i * dh..(i + 1) * dh];
                if dm.rope {
                    rope_row_bwd(gr, &cos[i * dh..(i + 1) * dh], &sin[i * dh..(i + 1) * dh]);
                }
                if dm.qk_norm {
                    let x = &qkv[(base + i) * 3 * d + part * d + h * dh..][..dh];
                    let r = cache[cl.rms + ((base + i) * nh + h) * 2 + part];
                    let mean_gy = x.iter().zip(gr.iter()).map(|(&xv, &gv)| gv * xv * r).sum::<T>() / T::of(dh as f64);
                    for j in 0..dh {
                        gr[j] = r * (gr[j] - x[j] * r * mean_gy);
                    }
                }
                let dst = unsafe { dp.slice((base + i) * 3 * d + part * d + h * dh, dh) };
                dst.copy_from_slice(gr);
            }
        }
    });
}
