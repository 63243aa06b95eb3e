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

use super::blas::{MatGrid, Op, Product, Storage};
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
        if dm.rope && !dm.head_dim.is_multiple_of(2) {
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
        if cache.is_none() && self.s.options.bf16 {
            return self.attention_fwd_bf16_inference(pqkv, pcos, psin, pout, &dm);
        }
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
            let [scores, pv] = forward_products(&dm, b0, bc, pqk, pqkv, pout, pp);
            // S = Q·Kᵀ per (image, head), then P = softmax(S/√d_h) in place.
            self.run_product(&scores, 1.0, 0.0);
            let nrows = bc * nh * t;
            self.launch(Kernel::SoftmaxRows, rows(nrows), nrows * t, &[Arg::P(pp), i(nrows), i(t), Arg::F(scale)]);
            // O = P·V, V read in place from qkv, O written in place into out.
            self.run_product(&pv, 1.0, 0.0);
        }
    }

    /// The inference forward in bf16 mixed precision (no cache): one kernel writes the final
    /// q, k and the raw v as bf16 in qkv's layout, the scores S = Q·Kᵀ come out of a bf16
    /// GEMM in f32, a row kernel writes bf16(softmax(S/√d_h)), and O = P·V is a bf16 GEMM
    /// into `out`. Compared with the f32 sequence plus operand conversion this skips the f32
    /// q/k copy, three conversion passes and one f32 pass over the probabilities. Addresses
    /// as in [`attention_fwd_impl`](Self::attention_fwd_impl), lengths already checked.
    fn attention_fwd_bf16_inference(&self, pqkv: u64, pcos: u64, psin: u64, pout: u64, dm: &AttnDims) {
        let (b, t, nh, dh, d) = (dm.batch, dm.tokens, dm.heads, dm.head_dim, dm.hidden());
        let (bt, ttt) = (b * t, t * t);
        let Some(qkv16) = self.temp::<u16>(bt * 3 * d) else { return };
        let pqkv16 = self.ptr(&qkv16);
        let prep = [
            Arg::P(pqkv),
            Arg::P(pcos),
            Arg::P(psin),
            Arg::P(pqkv16),
            i(bt),
            i(t),
            i(nh),
            i(dh),
            i(dm.qk_norm as usize),
            i(dm.rope as usize),
        ];
        self.launch(Kernel::AttnPrepBf16, warps(bt * nh * 3), bt * nh * 3, &prep);
        let chunk = self.images_per_chunk(dm);
        let (Some(scores), Some(probs16)) = (self.temp::<f32>(chunk * nh * ttt), self.temp::<u16>(chunk * nh * ttt)) else {
            return;
        };
        let (ps, pp16) = (self.ptr(&scores), self.ptr(&probs16));
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        let both = Storage { a_bf16: true, b_bf16: true };
        for b0 in (0..b).step_by(chunk) {
            let bc = chunk.min(b - b0);
            let g = grids(dm, b0, 0, 0);
            let (s_grid, p_grid) = ((g.probs)(ps, dm), (g.probs)(pp16, dm));
            let prod = |op_a, op_b, m, n, k, a, b, c| per_head(bc, nh, op_a, op_b, m, n, k, a, b, c);
            // S = Q·Kᵀ (q and k are parts 0 and 1 of qkv16), P16 = bf16(softmax(S/√d_h)),
            // O = P·V (v is part 2 of qkv16) into the head's columns of `out`.
            let [q, k, v] = [0, 1, 2].map(|part| qkv_part_bf16(dm, b0, pqkv16, part));
            self.run_product_stored(&prod(Op::N, Op::T, t, t, dh, q, k, s_grid), both, 1.0, 0.0);
            let nrows = bc * nh * t;
            self.launch(
                Kernel::SoftmaxRowsBf16,
                rows(nrows),
                nrows * t,
                &[Arg::P(ps), Arg::P(pp16), i(nrows), i(t), Arg::F(scale)],
            );
            self.run_product_stored(&prod(Op::N, Op::N, t, dh, t, p_grid, v, (g.rows_d)(pout, dm, b0)), both, 1.0, 0.0);
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
            let [dv, dp, dq, dk] = backward_products(&dm, b0, bc, pqk, pqkv, pdout, pdqkv, pp, pds);
            // dV = Pᵀ·dO; dP = dO·Vᵀ.
            self.run_product(&dv, 1.0, 0.0);
            self.run_product(&dp, 1.0, 0.0);
            // dS = P ⊙ (dP − rowsum(P ⊙ dP))·scale, in place.
            let nrows = bc * nh * t;
            self.launch(
                Kernel::SoftmaxBwdRows,
                rows(nrows),
                nrows * t,
                &[Arg::P(pp), Arg::P(pds), i(nrows), i(t), Arg::F(scale)],
            );
            // dQ = dS·K and dK = dSᵀ·Q (final q and k from the cache).
            self.run_product(&dq, 1.0, 0.0);
            self.run_product(&dk, 1.0, 0.0);
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

/// Operand grids of one chunk of images b0..b0+bc (addresses of the whole buffers; the
/// chunk offset is applied here).
struct Grids {
    /// Final q and k (cache layout): part 0 = q, 1 = k.
    qk: [MatGrid; 2],
    /// The v part of qkv.
    v: MatGrid,
    /// A [B·T, D] tensor with head h at columns h·d_h (out, dout).
    rows_d: fn(u64, &AttnDims, usize) -> MatGrid,
    /// Probability (or score-gradient) blocks of the chunk, [bc, H, T, T] from `ptr`.
    probs: fn(u64, &AttnDims) -> MatGrid,
}

fn grids(dm: &AttnDims, b0: usize, pqk: u64, pqkv: u64) -> Grids {
    let (t, dh, d) = (dm.tokens, dm.head_dim, dm.hidden());
    let qk = |part: usize| MatGrid {
        ptr: CudaBackend::off(pqk, b0 * t * 2 * d + part * d),
        ld: 2 * d,
        sb: t * 2 * d,
        sh: dh,
    };
    Grids {
        qk: [qk(0), qk(1)],
        v: qkv_part(dm, b0, pqkv, 2),
        rows_d: |ptr, dm, b0| MatGrid {
            ptr: CudaBackend::off(ptr, b0 * dm.tokens * dm.hidden()),
            ld: dm.hidden(),
            sb: dm.tokens * dm.hidden(),
            sh: dm.head_dim,
        },
        probs: |ptr, dm| MatGrid {
            ptr,
            ld: dm.tokens,
            sb: dm.heads * dm.tokens * dm.tokens,
            sh: dm.tokens * dm.tokens,
        },
    }
}

/// Part `part` (0 q, 1 k, 2 v) of a [B·T, 3D] tensor (qkv, dqkv) for images from b0.
fn qkv_part(dm: &AttnDims, b0: usize, ptr: u64, part: usize) -> MatGrid {
    let (t, d) = (dm.tokens, dm.hidden());
    MatGrid {
        ptr: CudaBackend::off(ptr, b0 * t * 3 * d + part * d),
        ld: 3 * d,
        sb: t * 3 * d,
        sh: dm.head_dim,
    }
}

/// The product family C = op(A)·op(B) over `bc` images × `nh` heads.
#[allow(clippy::too_many_arguments)]
fn per_head(bc: usize, nh: usize, op_a: Op, op_b: Op, m: usize, n: usize, k: usize, a: MatGrid, b: MatGrid, c: MatGrid) -> Product {
    Product {
        op_a,
        op_b,
        m,
        n,
        k,
        a,
        b,
        c,
        nb: bc,
        nh,
    }
}

/// [`qkv_part`] of a bf16 copy of qkv at `ptr`: the same grid with the base address at
/// 2 bytes per element (the products' own offsets are mapped to bf16 by the bf16 GEMM path).
fn qkv_part_bf16(dm: &AttnDims, b0: usize, ptr: u64, part: usize) -> MatGrid {
    let g = qkv_part(dm, b0, 0, part);
    MatGrid { ptr: ptr + g.ptr / 2, ..g }
}

/// Forward products of images b0..b0+bc: S = Q·Kᵀ into the probability blocks at `pp`,
/// and O = P·V into `out`.
fn forward_products(dm: &AttnDims, b0: usize, bc: usize, pqk: u64, pqkv: u64, pout: u64, pp: u64) -> [Product; 2] {
    let (t, dh, nh) = (dm.tokens, dm.head_dim, dm.heads);
    let g = grids(dm, b0, pqk, pqkv);
    let probs = (g.probs)(pp, dm);
    let prod = |op_a, op_b, m, n, k, a, b, c| per_head(bc, nh, op_a, op_b, m, n, k, a, b, c);
    [
        prod(Op::N, Op::T, t, t, dh, g.qk[0], g.qk[1], probs),
        prod(Op::N, Op::N, t, dh, t, probs, g.v, (g.rows_d)(pout, dm, b0)),
    ]
}

/// Backward products of images b0..b0+bc: dV = Pᵀ·dO, dP = dO·Vᵀ (into the score
/// gradients at `pds`), dQ = dS·K, dK = dSᵀ·Q.
#[allow(clippy::too_many_arguments)]
fn backward_products(dm: &AttnDims, b0: usize, bc: usize, pqk: u64, pqkv: u64, pdout: u64, pdqkv: u64, pp: u64, pds: u64) -> [Product; 4] {
    let (t, dh, nh) = (dm.tokens, dm.head_dim, dm.heads);
    let g = grids(dm, b0, pqk, pqkv);
    let (probs, ds) = ((g.probs)(pp, dm), (g.probs)(pds, dm));
    let dout = (g.rows_d)(pdout, dm, b0);
    let prod = |op_a, op_b, m, n, k, a, b, c| per_head(bc, nh, op_a, op_b, m, n, k, a, b, c);
    [
        prod(Op::T, Op::N, t, dh, t, probs, dout, qkv_part(dm, b0, pdqkv, 2)),
        prod(Op::N, Op::T, t, t, dh, dout, g.v, ds),
        prod(Op::N, Op::N, t, dh, t, ds, g.qk[1], qkv_part(dm, b0, pdqkv, 0)),
        prod(Op::T, Op::N, t, dh, t, ds, g.qk[0], qkv_part(dm, b0, pdqkv, 1)),
    ]
}

#[cfg(test)]
mod tests {
    //! The attention products checked on the host: the planned cuBLAS calls run through
    //! the column-major emulator (`blas::emulate`) on a flat "device memory", with the
    //! softmax rows done on the host, against the CPU backend's attention.
    use super::super::blas::{emulate, plan};
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::Backend;

    fn nmse(got: &[f32], want: &[f32]) -> f64 {
        assert_eq!(got.len(), want.len());
        if got.iter().any(|v| !v.is_finite()) {
            return f64::INFINITY;
        }
        let num: f64 = got.iter().zip(want).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
        let den: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum();
        num / den.max(1e-300)
    }

    /// What the `softmax_rows` kernel does, on the host.
    fn softmax_rows(s: &mut [f32], cols: usize, scale: f32) {
        for row in s.chunks_exact_mut(cols) {
            let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|v| *v = ((*v - mx) * scale).exp());
            let inv = 1.0 / row.iter().sum::<f32>();
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }

    /// What the `softmax_bwd_rows` kernel does, on the host.
    fn softmax_bwd_rows(p: &[f32], ds: &mut [f32], cols: usize, scale: f32) {
        for (pr, dr) in p.chunks_exact(cols).zip(ds.chunks_exact_mut(cols)) {
            let dot: f32 = pr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
            for (d, &pv) in dr.iter_mut().zip(pr) {
                *d = pv * (*d - dot) * scale;
            }
        }
    }

    fn randn(seed: u64, n: usize) -> Vec<f32> {
        crate::rng::Rng::new(seed).normal_f32(n)
    }

    fn case(dm: AttnDims, chunk: usize) {
        let cpu = CpuBackend::<f32>::new(1).unwrap();
        let (b, t, nh, dh, d) = (dm.batch, dm.tokens, dm.heads, dm.head_dim, dm.hidden());
        let (bt, ttt, cl) = (b * t, t * t, cache_layout(&dm));
        let qkv = randn(1, bt * 3 * d);
        let (cos, sin): (Vec<f32>, Vec<f32>) = randn(2, t * dh).iter().map(|a| (a.cos(), a.sin())).unzip();
        let (mut out_cpu, mut cache_cpu) = (vec![0f32; bt * d], vec![0f32; dm.cache_len()]);
        cpu.attention_fwd(&qkv, &cos, &sin, &mut out_cpu, Some(&mut cache_cpu), dm);
        let dout = randn(3, bt * d);
        let mut dqkv_cpu = vec![0f32; bt * 3 * d];
        cpu.attention_bwd(&dout, &qkv, &cos, &sin, &cache_cpu, &mut dqkv_cpu, dm);

        // Flat memory: qkv | cache | out | dout | dqkv | score-gradient temporary.
        let e_qkv = 0;
        let e_c = e_qkv + bt * 3 * d;
        let e_o = e_c + dm.cache_len();
        let e_do = e_o + bt * d;
        let e_dq = e_do + bt * d;
        let e_ds = e_dq + bt * 3 * d;
        let mut mem = vec![f32::NAN; e_ds + chunk * nh * ttt];
        let a = |e: usize| (e * 4) as u64;
        mem[e_qkv..e_c].copy_from_slice(&qkv);
        // What the prep kernel writes: final q, k and 1/rms (probabilities left NaN).
        mem[e_c..e_c + cl.probs].copy_from_slice(&cache_cpu[..cl.probs]);
        mem[e_do..e_dq].copy_from_slice(&dout);
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        for b0 in (0..b).step_by(chunk) {
            let bc = chunk.min(b - b0);
            let ep = e_c + cl.probs + b0 * nh * ttt;
            let [scores, pv] = forward_products(&dm, b0, bc, a(e_c), a(e_qkv), a(e_o), a(ep));
            emulate(&plan(&scores).unwrap(), 1.0, 0.0, &mut mem);
            softmax_rows(&mut mem[ep..ep + bc * nh * ttt], t, scale);
            emulate(&plan(&pv).unwrap(), 1.0, 0.0, &mut mem);
        }
        assert!(nmse(&mem[e_o..e_do], &out_cpu) < 1e-12, "{dm:?} chunk {chunk}: out");
        assert!(nmse(&mem[e_c..e_o], &cache_cpu) < 1e-12, "{dm:?} chunk {chunk}: cache");

        for b0 in (0..b).step_by(chunk) {
            let bc = chunk.min(b - b0);
            let ep = e_c + cl.probs + b0 * nh * ttt;
            let [dv, dp, dq, dk] = backward_products(&dm, b0, bc, a(e_c), a(e_qkv), a(e_do), a(e_dq), a(ep), a(e_ds));
            emulate(&plan(&dv).unwrap(), 1.0, 0.0, &mut mem);
            emulate(&plan(&dp).unwrap(), 1.0, 0.0, &mut mem);
            let (p, ds) = mem.split_at_mut(e_ds);
            softmax_bwd_rows(&p[ep..ep + bc * nh * ttt], &mut ds[..bc * nh * ttt], t, scale);
            emulate(&plan(&dq).unwrap(), 1.0, 0.0, &mut mem);
            emulate(&plan(&dk).unwrap(), 1.0, 0.0, &mut mem);
        }
        let got = &mem[e_dq..e_ds];
        // The v part is final; q and k are final without RoPE and qk-norm (else the post
        // kernel still has to run).
        for part in 0..3 {
            if part < 2 && (dm.rope || dm.qk_norm) {
                continue;
            }
            let pick = |x: &[f32]| -> Vec<f32> { (0..bt).flat_map(|r| x[r * 3 * d + part * d..r * 3 * d + (part + 1) * d].to_vec()).collect() };
            let e = nmse(&pick(got), &pick(&dqkv_cpu));
            assert!(e < 1e-12, "{dm:?} chunk {chunk}: dqkv part {part} NMSE {e:e}");
        }
    }

    #[test]
    fn products_match_cpu_attention() {
        for (batch, tokens, heads, head_dim, norm_rope) in [
            (1, 1, 1, 2, false),
            (2, 5, 3, 4, false),
            (3, 7, 2, 6, true),
            (2, 16, 4, 8, true),
            (1, 13, 1, 3, false),
        ] {
            let dm = AttnDims {
                batch,
                tokens,
                heads,
                head_dim,
                qk_norm: norm_rope,
                rope: norm_rope,
            };
            for chunk in [1, 2, batch] {
                case(dm, chunk.min(batch));
            }
        }
    }
}
