//! The compute backend: the DiT-level op list that the model's forward and backward
//! passes are written against, once. CPU (`cpu/`) and CUDA implement the same ops; the
//! model, the sampler and the trainer never know which one runs.
//!
//! Conventions for every op:
//! * Buffers are flat, row-major, contiguous. `Src`/`Dst` are views into them (plain
//!   slices on the CPU). Shapes are given as sizes and documented per argument.
//! * "assign" outputs are overwritten; "accumulate" outputs get `+=` (parameter
//!   gradients, and activation gradients with several consumers).
//! * Work is split by output rows, never along a reduction, so results are
//!   bit-identical for any thread count.
//! * A Linear's parameters are one view `[weight (out×in) | bias (out)]`, as laid out by
//!   [`crate::layout::ParamLayout`]; its gradient is the matching view of the gradient
//!   buffer.

mod conv_shape;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod pool_shape;
pub mod profiled;

pub use conv_shape::{Conv2dShape, ConvLayout, PlaneLayout};
pub use pool_shape::{Pool2dShape, PoolKind, ResizeMode};

use std::ops::Range;

use crate::error::Result;

/// Which normalisation a block uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// LayerNorm without affine parameters, eps 1e-6 (SiT).
    LayerNorm,
    /// RMSNorm, eps 1e-6 (TiT; LightningDiT and DDT add a learned weight, passed to the
    /// op separately).
    RmsNorm,
}

/// Per-op sizes of an attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    /// Batch B.
    pub batch: usize,
    /// Tokens per image T.
    pub tokens: usize,
    /// Heads H.
    pub heads: usize,
    /// Head width d_h (D = H·d_h).
    pub head_dim: usize,
    /// TiT: parameter-free RMSNorm on each head's q and k before RoPE.
    pub qk_norm: bool,
    /// TiT: 2-D RoPE on q and k (needs the cos/sin tables).
    pub rope: bool,
}

impl AttnDims {
    /// Hidden width D = H·d_h.
    pub fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Elements of the cache `attention_fwd` fills for `attention_bwd`:
    /// final q and k [B·T, 2D], inverse RMS of q and k [B·T·H·2], probabilities [B·H·T·T].
    pub fn cache_len(&self) -> usize {
        let bt = self.batch * self.tokens;
        bt * 2 * self.hidden() + bt * self.heads * 2 + self.batch * self.heads * self.tokens * self.tokens
    }
}

/// One step of rewriting a parameter buffer into the packed layout in place
/// ([`Backend::pack_in_place`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackStep {
    /// Moves the run `from` to start at `to` (≤ `from.start`).
    Copy { from: Range<usize>, to: usize },
    /// Packs the Linear weight W[o, i] at `from` (o·i values) to `to` (≤ `from.start`).
    Pack { from: Range<usize>, to: usize, i: usize, o: usize },
}

/// Hyper-parameters of one optimizer update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimHp {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The op list. `Elem` is the element type of device buffers (f32 for the real
/// backends; the CPU backend also runs in f64 for finite-difference gradient checks).
pub trait Backend: Send + Sync {
    /// A device buffer.
    type Buf: Send + Sync;
    /// A read-only view of part of a buffer.
    type Src<'a>
    where
        Self: 'a;
    /// A writable view of part of a buffer.
    type Dst<'a>
    where
        Self: 'a;

    /// Short name ("cpu", "cuda").
    fn name(&self) -> String;

    /// Runs `f` in the backend's execution context: the CPU backend enters its thread
    /// pool once, so the many ops of a forward pass do not each pay a hand-off to the
    /// pool. The model wraps whole passes in it.
    fn scope<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }

    // ---------------------------------------------------------------- memory
    /// A zero-filled buffer of `len` elements.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer holding `host` (converted to the element type).
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    /// [`Backend::upload`] of a vector the caller gives up: a backend whose buffers are
    /// host vectors of f32 keeps it as it is (no second copy of a model while loading).
    fn upload_owned(&self, host: Vec<f32>) -> Result<Self::Buf> {
        self.upload(&host)
    }
    /// Writes `host` into `dst[offset..offset + host.len()]`.
    fn write(&self, dst: &mut Self::Buf, offset: usize, host: &[f32]) -> Result<()>;
    /// Reads `src[range]` back to the host as f32.
    fn read(&self, src: &Self::Buf, range: Range<usize>) -> Result<Vec<f32>>;
    /// Number of elements in a buffer.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// A read-only view `buf[range]`.
    fn src<'a>(&self, buf: &'a Self::Buf, range: Range<usize>) -> Self::Src<'a>;
    /// A writable view `buf[range]`.
    fn dst<'a>(&self, buf: &'a mut Self::Buf, range: Range<usize>) -> Self::Dst<'a>;
    /// `dst = src` (same length).
    fn copy(&self, src: Self::Src<'_>, dst: Self::Dst<'_>);
    /// `dst = 0`.
    fn zero(&self, dst: Self::Dst<'_>);
    /// `dst += src` elementwise (same length).
    fn add_assign(&self, src: Self::Src<'_>, dst: Self::Dst<'_>);

    // ---------------------------------------------------------------- linear algebra
    /// `y[n, o] = x[n, i] · W[o, i]ᵀ + b[o]`; `wb` = `[W | b]`, `has_bias` says if b is present.
    fn linear_fwd(&self, x: Self::Src<'_>, wb: Self::Src<'_>, has_bias: bool, y: Self::Dst<'_>, n: usize, i: usize, o: usize);
    /// Whether [`Backend::linear_fwd_t`] beats [`Backend::linear_fwd`]: the model then
    /// keeps its Linear weights for inference in the backend's transposed form
    /// ([`Backend::transpose_weight`]).
    fn prefers_transposed_weights(&self) -> bool {
        false
    }
    /// `y[n, o] = x[n, i] · Wᵀ + b[o]` with W in the backend's transposed form: `wtb` =
    /// [W transposed (o·i values, [`Backend::transpose_weight`]) | b]; with `gelu`, y =
    /// GELU-tanh(·) of that (inference's fused MLP input, the same bits as
    /// [`Backend::gelu_tanh_fwd`] after the product). Called only when
    /// [`Backend::prefers_transposed_weights`].
    #[allow(clippy::too_many_arguments)]
    fn linear_fwd_t(&self, _x: Self::Src<'_>, _wtb: Self::Src<'_>, _has_bias: bool, _gelu: bool, _y: Self::Dst<'_>, _n: usize, _i: usize, _o: usize) {
        unreachable!("linear_fwd_t is only called on backends that prefer transposed weights")
    }
    /// Length (in buffer elements) of a Linear weight W[o, i] in the backend's packed
    /// low-precision form, when it runs inference products from one (the CPU in bf16
    /// mode: bf16 pairs, half the bytes); `None` otherwise. A model then holds its
    /// inference weights packed ([`Backend::pack_weight`]) and calls
    /// [`Backend::linear_fwd_packed`].
    fn packed_weight_len(&self, _i: usize, _o: usize) -> Option<usize> {
        None
    }
    /// Packs W[o, i] (plain layout). w: [o·i]; dst: [packed_weight_len(i, o)].
    /// Called only when [`Backend::packed_weight_len`] is `Some`.
    fn pack_weight(&self, _w: Self::Src<'_>, _dst: Self::Dst<'_>, _i: usize, _o: usize) {
        unreachable!("pack_weight is only called on backends with a packed weight form")
    }
    /// Rewrites `buf` into the packed layout in place, the steps in order, then shrinks
    /// it to `total` elements: the packed weights are never held beside the plain ones
    /// (peak memory: the plain buffer plus one packed weight's scratch). Returns
    /// `Ok(false)`, the buffer untouched, when a step would write past its own source
    /// (a weight whose packed form is larger than o·i); the caller then packs into a new
    /// buffer. Called only when [`Backend::packed_weight_len`] is `Some`.
    fn pack_in_place(&self, _buf: &mut Self::Buf, _steps: &[PackStep], _total: usize) -> Result<bool> {
        unreachable!("pack_in_place is only called on backends with a packed weight form")
    }
    /// Inverse of [`Backend::pack_weight`] (the values the products use, e.g. rounded to
    /// bf16). src: [packed_weight_len(i, o)]; w: [o·i] (assign).
    fn unpack_weight(&self, _src: Self::Src<'_>, _w: Self::Dst<'_>, _i: usize, _o: usize) {
        unreachable!("unpack_weight is only called on backends with a packed weight form")
    }
    /// `y[n, o] = x[n, i] · Wᵀ + b[o]` from a packed weight: `wpb` = [packed W | b];
    /// with `gelu`, GELU-tanh of that (as in [`Backend::linear_fwd_t`]).
    /// x: [n, i]; y: [n, o] (assign).
    #[allow(clippy::too_many_arguments)]
    fn linear_fwd_packed(&self, _x: Self::Src<'_>, _wpb: Self::Src<'_>, _has_bias: bool, _gelu: bool, _y: Self::Dst<'_>, _n: usize, _i: usize, _o: usize) {
        unreachable!("linear_fwd_packed is only called on backends with a packed weight form")
    }
    /// A Linear weight W[o, i] in the backend's transposed form: Wᵀ = [i, o], stored
    /// as its products read it (o·i values, a permutation of W; the CPU: row-major, or in
    /// 16-column panels where its panel kernels run). w: [o·i] plain; dst: [o·i] (assign).
    /// Called only when [`Backend::prefers_transposed_weights`].
    fn transpose_weight(&self, _w: Self::Src<'_>, _dst: Self::Dst<'_>, _i: usize, _o: usize) {
        unreachable!("transpose_weight is only called on backends that prefer transposed weights")
    }
    /// Inverse of [`Backend::transpose_weight`] (exact). src: [o·i] transposed form;
    /// w: [o·i] plain (assign).
    fn untranspose_weight(&self, _src: Self::Src<'_>, _w: Self::Dst<'_>, _i: usize, _o: usize) {
        unreachable!("untranspose_weight is only called on backends that prefer transposed weights")
    }
    /// Backward of `linear_fwd`: dx[n, i] = dy · W (assign, skipped if `dx` is None);
    /// `dW[o, i] += dyᵀ · x` and `db[o] += Σₙ dy` (accumulate into `dwb` = `[dW | db]`).
    fn linear_bwd(
        &self,
        dy: Self::Src<'_>,
        x: Self::Src<'_>,
        wb: Self::Src<'_>,
        has_bias: bool,
        dx: Option<Self::Dst<'_>>,
        dwb: Self::Dst<'_>,
        n: usize,
        i: usize,
        o: usize,
    );

    // ---------------------------------------------------------------- norms + adaLN
    /// y[b, t, :] = norm(x[b, t, :]) ⊙ w ⊙ (1 + ada[b, scale_col..+D]) + ada[b, shift_col..+D].
    /// x, y: [B·T, D]; weight w: \[D\] (the norm's learned weight; None = 1); ada:
    /// [B, ada_stride]; stats (saved for backward, may be None): [B·T, 2] = (mean, 1/σ)
    /// for LayerNorm, (0, 1/rms) for RMSNorm. Token-wise modulation (one ada row per
    /// token) is b = B·T, t = 1.
    fn norm_mod_fwd(
        &self,
        kind: NormKind,
        x: Self::Src<'_>,
        weight: Option<Self::Src<'_>>,
        ada: Self::Src<'_>,
        ada_stride: usize,
        shift_col: usize,
        scale_col: usize,
        y: Self::Dst<'_>,
        stats: Option<Self::Dst<'_>>,
        b: usize,
        t: usize,
        d: usize,
    );
    /// Backward of `norm_mod_fwd`: dx [B·T, D] accumulate; dada [B, ada_stride]
    /// accumulate at the shift and scale columns; dweight \[D\] accumulate (given iff
    /// `weight` is).
    fn norm_mod_bwd(
        &self,
        kind: NormKind,
        dy: Self::Src<'_>,
        x: Self::Src<'_>,
        weight: Option<Self::Src<'_>>,
        dweight: Option<Self::Dst<'_>>,
        ada: Self::Src<'_>,
        ada_stride: usize,
        shift_col: usize,
        scale_col: usize,
        stats: Self::Src<'_>,
        dx: Self::Dst<'_>,
        dada: Self::Dst<'_>,
        b: usize,
        t: usize,
        d: usize,
    );
    /// h[b, t, :] += ada[b, gate_col..+D] ⊙ y[b, t, :]. h, y: [B·T, D]; ada: [B, ada_stride].
    fn gate_residual_fwd(&self, y: Self::Src<'_>, ada: Self::Src<'_>, ada_stride: usize, gate_col: usize, h: Self::Dst<'_>, b: usize, t: usize, d: usize);
    /// Backward of `gate_residual_fwd`: dy = gate ⊙ dh (assign);
    /// dada[b, gate_col..+D] += Σₜ dh ⊙ y (accumulate).
    fn gate_residual_bwd(
        &self,
        dh: Self::Src<'_>,
        y: Self::Src<'_>,
        ada: Self::Src<'_>,
        ada_stride: usize,
        gate_col: usize,
        dy: Self::Dst<'_>,
        dada: Self::Dst<'_>,
        b: usize,
        t: usize,
        d: usize,
    );

    /// DDT's qk-norm: RMSNorm (eps 1e-6) with a learned weight on every head of q and k.
    /// qkv, out: [N, 3D] laid out (3, H, d_h) per row; out = qkv with each q head
    /// replaced by rms_norm(q)⊙qw and each k head by rms_norm(k)⊙kw, v copied.
    /// qkw: [2·d_h] = [qw | kw]; stats (for the backward, may be None): [N, 2H] = 1/rms
    /// of the q heads then the k heads.
    fn qk_norm_fwd(&self, qkv: Self::Src<'_>, qkw: Self::Src<'_>, out: Self::Dst<'_>, stats: Option<Self::Dst<'_>>, n: usize, heads: usize, head_dim: usize);
    /// Backward of `qk_norm_fwd`: dqkv [N, 3D] assign (the v part is dout's); dqkw
    /// [2·d_h] accumulate (rows in order).
    fn qk_norm_bwd(
        &self,
        dout: Self::Src<'_>,
        qkv: Self::Src<'_>,
        qkw: Self::Src<'_>,
        stats: Self::Src<'_>,
        dqkv: Self::Dst<'_>,
        dqkw: Self::Dst<'_>,
        n: usize,
        heads: usize,
        head_dim: usize,
    );

    // ---------------------------------------------------------------- attention
    /// Multi-head attention. qkv: [B·T, 3D] laid out (3, H, d_h) per row; out: [B·T, D]
    /// (head h in columns h·d_h..); rope_cos, rope_sin: [T, d_h] (ignored unless
    /// `dims.rope`); cache: [`AttnDims::cache_len`] for the backward, or None (inference).
    fn attention_fwd(
        &self,
        qkv: Self::Src<'_>,
        rope_cos: Self::Src<'_>,
        rope_sin: Self::Src<'_>,
        out: Self::Dst<'_>,
        cache: Option<Self::Dst<'_>>,
        dims: AttnDims,
    );
    /// Backward of `attention_fwd`: dqkv [B·T, 3D] assign.
    fn attention_bwd(
        &self,
        dout: Self::Src<'_>,
        qkv: Self::Src<'_>,
        rope_cos: Self::Src<'_>,
        rope_sin: Self::Src<'_>,
        cache: Self::Src<'_>,
        dqkv: Self::Dst<'_>,
        dims: AttnDims,
    );

    // ---------------------------------------------------------------- image ops (VAE, FID, UNet)
    /// 2-D convolution, NCHW, zero padding, forward only: x [n, c_in, h, w]; w
    /// [c_out, c_in, kh, kw]; bias \[c_out\] or None; y [n, c_out, out_h, out_w] (assign).
    /// The caller validates `shape` ([`Conv2dShape::validate`]).
    fn conv2d_fwd(&self, x: Self::Src<'_>, w: Self::Src<'_>, bias: Option<Self::Src<'_>>, y: Self::Dst<'_>, shape: &Conv2dShape);
    /// [`Backend::conv2d_fwd`] on maps laid out as `layout` says (NCHW or channels-outer
    /// planes, or channels of a wider map: [`PlaneLayout`]), with ReLU if `layout.relu`:
    /// the planes of y it names are assigned, the rest of y is untouched. The values are
    /// those of `conv2d_fwd` on the same maps in NCHW followed by `relu_inplace`, bit for
    /// bit on the CPU. x: `layout.x_len(shape)` elements or more; y:
    /// `layout.y_len(shape)` or more. The caller validates ([`ConvLayout::validate`]).
    fn conv2d_fwd_into(&self, x: Self::Src<'_>, w: Self::Src<'_>, bias: Option<Self::Src<'_>>, y: Self::Dst<'_>, shape: &Conv2dShape, layout: &ConvLayout);
    /// GroupNorm with affine parameters, then SiLU if `silu`: x, y [n, c, hw]; gamma, beta
    /// \[c\]; the c channels form `groups` groups of c/groups consecutive channels
    /// (`groups` divides c), each normalised over its (c/groups)·hw elements with the
    /// biased variance and `eps`.
    #[allow(clippy::too_many_arguments)]
    fn group_norm_fwd(
        &self,
        x: Self::Src<'_>,
        gamma: Self::Src<'_>,
        beta: Self::Src<'_>,
        y: Self::Dst<'_>,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
        eps: f32,
        silu: bool,
    );
    /// Nearest-neighbour ×2 upsampling: x [n, c, h, w] → y [n, c, 2h, 2w] (assign).
    fn upsample_nearest2x(&self, x: Self::Src<'_>, y: Self::Dst<'_>, n: usize, c: usize, h: usize, w: usize);
    /// Batched transpose: x [batch, rows, cols] → y [batch, cols, rows] (assign). NCHW ↔
    /// token rows [n, hw, c].
    fn transpose_batched(&self, x: Self::Src<'_>, y: Self::Dst<'_>, batch: usize, rows: usize, cols: usize);
    /// EDM2's magnitude-preserving `normalize` of every row: y[r, :] = x[r, :] /
    /// (1e-4 + ‖x[r, :]‖/√n) (f32 sum of squares in a fixed order). x, y: [rows, n]. The
    /// pixel norm (rows = pixels after a transpose) and the attention's q/k/v norm
    /// (rows = one head of one pixel).
    fn mp_normalize_rows(&self, x: Self::Src<'_>, y: Self::Dst<'_>, rows: usize, n: usize);
    /// x ← min(max(x, −lim), lim) elementwise (NaN stays NaN, as `torch.clip`).
    fn clamp(&self, x: Self::Dst<'_>, lim: f32);
    /// Max or average pooling: x [n, c, h, w] → y [n, c, out_h, out_w] (assign). The
    /// caller validates `shape` ([`Pool2dShape::validate`]).
    fn pool2d_fwd(&self, x: Self::Src<'_>, y: Self::Dst<'_>, shape: &Pool2dShape, kind: PoolKind);
    /// Bilinear resize x [n, c, h, w] → y [n, c, out_h, out_w] (assign), no antialiasing.
    #[allow(clippy::too_many_arguments)]
    fn resize_bilinear(&self, x: Self::Src<'_>, y: Self::Dst<'_>, n: usize, c: usize, h: usize, w: usize, out_h: usize, out_w: usize, mode: ResizeMode);
    /// x ← max(x, 0).
    fn relu_inplace(&self, x: Self::Dst<'_>);
    /// Channel concatenation: dst[b, offset + ch, :] = src[b, ch, :] for src [n, c_src,
    /// hw] and dst [n, c_dst, hw] (other channels of dst untouched).
    #[allow(clippy::too_many_arguments)]
    fn copy_channels(&self, src: Self::Src<'_>, dst: Self::Dst<'_>, n: usize, c_src: usize, c_dst: usize, offset: usize, hw: usize);

    // ---------------------------------------------------------------- activations
    /// y = GELU(x) with the tanh approximation (same length).
    fn gelu_tanh_fwd(&self, x: Self::Src<'_>, y: Self::Dst<'_>);
    /// dx = GELU'(x) ⊙ dy (assign).
    fn gelu_tanh_bwd(&self, x: Self::Src<'_>, dy: Self::Src<'_>, dx: Self::Dst<'_>);
    /// y = x·sigmoid(x).
    fn silu_fwd(&self, x: Self::Src<'_>, y: Self::Dst<'_>);
    /// dx = SiLU'(x) ⊙ dy (assign).
    fn silu_bwd(&self, x: Self::Src<'_>, dy: Self::Src<'_>, dx: Self::Dst<'_>);
    /// SwiGLU: x12 [N, 2h] = [x1 | x2] per row → y [N, h] = SiLU(x1) ⊙ x2.
    fn swiglu_fwd(&self, x12: Self::Src<'_>, y: Self::Dst<'_>, n: usize, h: usize);
    /// Backward of `swiglu_fwd`: dx12 [N, 2h] assign.
    fn swiglu_bwd(&self, x12: Self::Src<'_>, dy: Self::Src<'_>, dx12: Self::Dst<'_>, n: usize, h: usize);

    // ---------------------------------------------------------------- layout ops
    /// Image → patch rows. x: [B, C, H, W]; out: [B·T, C·p·p] in (c, row, col) order.
    fn patchify(&self, x: Self::Src<'_>, out: Self::Dst<'_>, b: usize, c: usize, side: usize, p: usize);
    /// Adjoint of `patchify` (assign): dpatch [B·T, C·p·p] → dx [B, C, H, W].
    fn patchify_bwd(&self, dpatch: Self::Src<'_>, dx: Self::Dst<'_>, b: usize, c: usize, side: usize, p: usize);
    /// Token outputs → image. tok: [B·T, p·p·C] in (row, col, c) order; out: [B, C, H, W].
    fn unpatchify(&self, tok: Self::Src<'_>, out: Self::Dst<'_>, b: usize, c: usize, side: usize, p: usize);
    /// Adjoint of `unpatchify` (assign): dout [B, C, H, W] → dtok [B·T, p·p·C].
    fn unpatchify_bwd(&self, dout: Self::Src<'_>, dtok: Self::Dst<'_>, b: usize, c: usize, side: usize, p: usize);
    /// x[b·T + t, :] += rows[t, :] for every b. x: [B·T, D]; rows: [T, D].
    fn add_rows(&self, rows: Self::Src<'_>, x: Self::Dst<'_>, b: usize, t: usize, d: usize);
    /// `out[b, :] = table[labels[b], :]` (assign). table: `[K+1, D]`; out: `[B, D]`.
    fn embedding_fwd(&self, table: Self::Src<'_>, labels: &[usize], out: Self::Dst<'_>, d: usize);
    /// `dtable[labels[b], :] += dout[b, :]`, in batch order (deterministic).
    fn embedding_bwd(&self, dout: Self::Src<'_>, labels: &[usize], dtable: Self::Dst<'_>, d: usize);

    // ---------------------------------------------------------------- optimizer
    /// The reference's AdamW (optimers/adamw.py) at step `step` (1-based):
    /// m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
    /// p ← p − lr·√(1−β₂ᵏ)/(1−β₁ᵏ)·(m/(√v + eps) + wd·p).
    fn adamw_step(&self, p: Self::Dst<'_>, g: Self::Src<'_>, m: Self::Dst<'_>, v: Self::Dst<'_>, hp: &OptimHp, step: u64);
    /// torch.optim.RAdam (decoupled_weight_decay = False) at step `step` (1-based).
    fn radam_step(&self, p: Self::Dst<'_>, g: Self::Src<'_>, m: Self::Dst<'_>, v: Self::Dst<'_>, hp: &OptimHp, step: u64);
    /// dst ← decay·dst + (1 − decay)·src.
    fn ema(&self, src: Self::Src<'_>, dst: Self::Dst<'_>, decay: f64);
    /// Σ x² in f64 (deterministic order).
    fn sum_squares(&self, x: Self::Src<'_>) -> f64;
    /// x ← s·x.
    fn scale(&self, x: Self::Dst<'_>, s: f64);
    /// NaN and ±inf → 0 (torch.nan_to_num with nan=0, posinf=0, neginf=0 as the reference uses).
    fn zero_non_finite(&self, x: Self::Dst<'_>);
}
