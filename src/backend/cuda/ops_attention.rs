//! Multi-head attention (optional qk-RMSNorm and 2-D RoPE), forward and backward.
//!
//! Forward: a kernel writes the final q and k (and the saved 1/rms) into the cache; per
//! (image, head) cuBLAS strided-batched products give S = Q·Kᵀ into the probability
//! block, a row kernel turns it into P = softmax(S/√d_h) in place, and O = P·V is written
//! straight into the head's columns of `out`. Backward: dV = Pᵀ·dO, dP = dO·Vᵀ, the
//! softmax backward in place, dQ = dS·K and dK = dSᵀ·Q into `dqkv`, then a kernel applies
//! the RoPE transpose and the qk-norm backward in place.
//!
//! The cache layout is the CPU's ([`AttnDims::cache_len`]): q and k [B·T, 2D], 1/rms
//! [B·T, H, 2], probabilities [B, H, T, T]. Without a cache (inference) the probabilities
//! and, in the backward, the score gradients live in temporaries of at most
//! `attention_scratch_bytes`, processing that many images at a time. The T×T blocks are
//! materialised (no flash attention yet): memory is O(B·H·T²) in training, as on the CPU.

use std::sync::atomic::Ordering;

use cudarc::driver::{CudaView, CudaViewMut};

use super::blas::{MatGrid, Op};
use super::launch::{i, rows, warps, Arg};
use super::{CudaBackend, Kernel};
use crate::backend::AttnDims;

/// Element offsets of the three cache regions.
struct CacheLayout {
    rms: usize,
    probs: usize,
}

fn cache_layout(dm: &AttnDims) -> CacheLayout {
    let bt = dm.batch * dm.tokens;
    let rms = bt * 2 * dm.hidden();
    CacheLayout {
        rms,
        probs: rms + bt * dm.heads * 2,
    }
}

impl CudaBackend {
    /// Images per chunk so that one chunk's [H, T, T] blocks fit the scratch cap.
    fn images_per_chunk(&self, dm: &AttnDims) -> usize {
        let per_image = dm.heads * dm.tokens * dm.tokens * std::mem::size_of::<f32>();
        let cap = self.s.attention_scratch_bytes.load(Ordering::Relaxed);
        (cap / per_image.max(1)).clamp(1, dm.batch.max(1))
    }

    fn attn_shapes_ok(&self, op: &str, dm: &AttnDims) -> bool {
        if dm.rope && dm.head_dim % 2 != 0 {
            self.fail(format!("{op}: RoPE needs an even head width, got {}", dm.head_dim));
            return false;
        }
        true
    }

    /// qkv: [B·T, 3D]; rope_cos, rope_sin: [T, d_h] (read only with RoPE); out: [B·T, D];
    /// cache: [`AttnDims::cache_len`] or None.
    pub(super) fn attention_fwd_impl(
        &self,
        qkv: CudaView<'_, f32>,
        cos: CudaView<'_, f32>,
        sin: CudaView<'_, f32>,
        out: CudaViewMut<'_, f32>,
        cache: Option<CudaViewMut<'_, f32>>,
        dm: AttnDims,
    ) {
        let (b, t, nh, dh, d) = (dm.batch, dm.tokens, dm.heads, dm.head_dim, dm.hidden());
        let bt = b * t;
        if bt == 0 || d == 0 || !self.attn_shapes_ok("attention_fwd", &dm) {
            return;
        }
        let mut lens = vec![("qkv", qkv.len(), bt * 3 * d), ("out", out.len(), bt * d)];
        if dm.rope {
            lens.extend([("rope_cos", cos.len(), t * dh), ("rope_sin", sin.len(), t * dh)]);
        }
        if let Some(c) = &cache {
            lens.push(("cache", c.len(), dm.cache_len()));
        }
        if !self.lens_ok("attention_fwd", &lens) {
            return;
        }
        let (pqkv, pcos, psin, pout) = (self.ptr(&qkv), self.ptr(&cos), self.ptr(&sin), self.ptr(&out));
        let cl = cache_layout(&dm);
        let ttt = t * t;

        // q, k and 1/rms: in the cache, or in a temporary laid out the same way.
        let tmp_qk = if cache.is_none() { self.temp::<f32>(cl.probs) } else { None };
        let pqk = match (&cache, &tmp_qk) {
            (Some(c), _) => self.ptr(c),
            (None, Some(tq)) => self.ptr(tq),
            (None, None) => return,
        };
        let prep = [
            Arg::P(pqkv),
            Arg::P(pcos),
            Arg::P(psin),
            Arg::P(pqk),
            Arg::P(Self::off(pqk, cl.rms)),
            i(bt),
            i(t),
            i(nh),
            i(dh),
            i(dm.qk_norm as usize),
            i(dm.rope as usize),
        ];
        self.launch(Kernel::AttnPrep, warps(bt * nh * 2), bt * nh * 2, &prep);

        // Probabilities: all of them in the cache, or one chunk of images at a time.
        let chunk = if cache.is_some() { b } else { self.images_per_chunk(&dm) };
        let tmp_p = if cache.is_none() { self.temp::<f32>(chunk * nh * ttt) } else { None };
        let p_base = match (&cache, &tmp_p) {
            (Some(_), _) => Self::off(pqk, cl.probs),
            (None, Some(tp)) => self.ptr(tp),
            (None, None) => return,
        };
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        for b0 in (0..b).step_by(chunk) {
            let bc = chunk.min(b - b0);
            let pp = if cache.is_some() { Self::off(p_base, b0 * nh * ttt) } else { p_base };
            let probs = MatGrid {
                ptr: pp,
                ld: t,
                sb: nh * ttt,
                sh: ttt,
            };
            let q = MatGrid {
                ptr: Self::off(pqk, b0 * t * 2 * d),
                ld: 2 * d,
                sb: t * 2 * d,
                sh: dh,
            };
            let k = MatGrid {
                ptr: Self::off(pqk, b0 * t * 2 * d + d),
                ..q
            };
            // S = Q·Kᵀ per (image, head).
            self.gemm_grid(Op::N, Op::T, t, t, dh, 1.0, q, k, 0.0, probs, bc, nh);
            let nrows = bc * nh * t;
            self.launch(Kernel::SoftmaxRows, rows(nrows), nrows * t, &[Arg::P(pp), i(nrows), i(t), Arg::F(scale)]);
            // O = P·V, V read in place from qkv, O written in place into out.
            let v = MatGrid {
                ptr: Self::off(pqkv, b0 * t * 3 * d + 2 * d),
                ld: 3 * d,
                sb: t * 3 * d,
                sh: dh,
            };
            let o = MatGrid {
                ptr: Self::off(pout, b0 * t * d),
                ld: d,
                sb: t * d,
                sh: dh,
            };
            self.gemm_grid(Op::N, Op::N, t, dh, t, 1.0, probs, v, 0.0, o, bc, nh);
        }
    }

    /// dout: [B·T, D]; qkv: [B·T, 3D]; cache from the forward; dqkv: [B·T, 3D] (assign).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attention_bwd_impl(
        &self,
        dout: CudaView<'_, f32>,
        qkv: CudaView<'_, f32>,
        cos: CudaView<'_, f32>,
        sin: CudaView<'_, f32>,
        cache: CudaView<'_, f32>,
        dqkv: CudaViewMut<'_, f32>,
        dm: AttnDims,
    ) {
        let (b, t, nh, dh, d) = (dm.batch, dm.tokens, dm.heads, dm.head_dim, dm.hidden());
        let bt = b * t;
        if bt == 0 || d == 0 || !self.attn_shapes_ok("attention_bwd", &dm) {
            return;
        }
        let mut lens = vec![
            ("dout", dout.len(), bt * d),
            ("qkv", qkv.len(), bt * 3 * d),
            ("cache", cache.len(), dm.cache_len()),
            ("dqkv", dqkv.len(), bt * 3 * d),
        ];
        if dm.rope {
            lens.extend([("rope_cos", cos.len(), t * dh), ("rope_sin", sin.len(), t * dh)]);
        }
        if !self.lens_ok("attention_bwd", &lens) {
            return;
        }
        let (pdout, pqkv, pcos, psin, pqk, pdqkv) = (
            self.ptr(&dout),
            self.ptr(&qkv),
            self.ptr(&cos),
            self.ptr(&sin),
            self.ptr(&cache),
            self.ptr(&dqkv),
        );
        let cl = cache_layout(&dm);
        let ttt = t * t;
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        let chunk = self.images_per_chunk(&dm);
        let Some(tmp_ds) = self.temp::<f32>(chunk * nh * ttt) else { return };
        let pds = self.ptr(&tmp_ds);
        for b0 in (0..b).step_by(chunk) {
            let bc = chunk.min(b - b0);
            let pp = Self::off(pqk, cl.probs + b0 * nh * ttt);
            let probs = MatGrid {
                ptr: pp,
                ld: t,
                sb: nh * ttt,
                sh: ttt,
            };
            let ds = MatGrid { ptr: pds, ..probs };
            let dout_g = MatGrid {
                ptr: Self::off(pdout, b0 * t * d),
                ld: d,
                sb: t * d,
                sh: dh,
            };
            let qkv_part = |part: usize| MatGrid {
                ptr: Self::off(pqkv, b0 * t * 3 * d + part * d),
                ld: 3 * d,
                sb: t * 3 * d,
                sh: dh,
            };
            let dqkv_part = |part: usize| MatGrid {
                ptr: Self::off(pdqkv, b0 * t * 3 * d + part * d),
                ..qkv_part(part)
            };
            let qk_part = |part: usize| MatGrid {
                ptr: Self::off(pqk, b0 * t * 2 * d + part * d),
                ld: 2 * d,
                sb: t * 2 * d,
                sh: dh,
            };
            // dV = Pᵀ·dO.
            self.gemm_grid(Op::T, Op::N, t, dh, t, 1.0, probs, dout_g, 0.0, dqkv_part(2), bc, nh);
            // dP = dO·Vᵀ.
            self.gemm_grid(Op::N, Op::T, t, t, dh, 1.0, dout_g, qkv_part(2), 0.0, ds, bc, nh);
            // dS = P ⊙ (dP − rowsum(P ⊙ dP))·scale, in place.
            let nrows = bc * nh * t;
            self.launch(
                Kernel::SoftmaxBwdRows,
                rows(nrows),
                nrows * t,
                &[Arg::P(pp), Arg::P(pds), i(nrows), i(t), Arg::F(scale)],
            );
            // dQ = dS·K and dK = dSᵀ·Q (final q and k from the cache).
            self.gemm_grid(Op::N, Op::N, t, dh, t, 1.0, ds, qk_part(1), 0.0, dqkv_part(0), bc, nh);
            self.gemm_grid(Op::T, Op::N, t, dh, t, 1.0, ds, qk_part(0), 0.0, dqkv_part(1), bc, nh);
        }
        let post = [
            Arg::P(pqkv),
            Arg::P(pcos),
            Arg::P(psin),
            Arg::P(Self::off(pqk, cl.rms)),
            Arg::P(pdqkv),
            i(bt),
            i(t),
            i(nh),
            i(dh),
            i(dm.qk_norm as usize),
            i(dm.rope as usize),
        ];
        if dm.rope || dm.qk_norm {
            self.launch(Kernel::AttnBwdPost, warps(bt * nh * 2), bt * nh * 2, &post);
        }
    }
}
