//! A backend wrapper that times every op: [`Profiled`] runs its inner backend and adds
//! each call's wall time to a table by op name ([`Profiled::table`]), the per-op profile
//! of `examples/profile` (a forward pass, a training step, or its backward by op).
//!
//! An op's time is measured on the calling thread around the whole call, so a CPU op
//! counts the time of all its parallel work; on an asynchronous backend (CUDA) it counts
//! only the launch. Ops that return views or metadata (`src`, `dst`, `len`, `name`,
//! `scope`) are not timed.
//!
//! Each op also records the process's CPU time over the call (all threads), so
//! `cpu / time` says how many cores the op kept busy: an op well below the pool's size
//! has serial parts or idle threads. Rayon workers spin a little before sleeping, so
//! the figure can read slightly high, never low.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{AttnDims, Backend, Conv2dShape, ConvLayout, NormKind, OptimHp, PackStep, Pool2dShape, PoolKind, ResizeMode};
use crate::error::Result;

/// Calls, total wall time and total process CPU time of one op.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpTime {
    pub calls: u64,
    pub time: Duration,
    /// CPU time of the whole process (every thread) during the op's calls.
    pub cpu: Duration,
}

impl OpTime {
    /// Cores kept busy on average: CPU time per wall time (0 for an untimed op).
    pub fn cores_busy(&self) -> f64 {
        if self.time.is_zero() {
            0.0
        } else {
            self.cpu.as_secs_f64() / self.time.as_secs_f64()
        }
    }
}

/// CPU time consumed so far by the whole process (all threads); zero where the clock
/// is unavailable.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// `inner` with every op timed; clones share the table.
#[derive(Clone, Debug)]
pub struct Profiled<B> {
    /// `UCGM_PROFILE_SHAPES` was set when the wrapper was made: convolutions and Linears
    /// get a row per shape.
    shapes: bool,
    inner: B,
    table: Arc<Mutex<BTreeMap<String, OpTime>>>,
}

/// A Linear's row of the table: the op, and with `UCGM_PROFILE_SHAPES` set, rows × in →
/// out.
fn linear_key(shapes: bool, op: &str, n: usize, i: usize, o: usize) -> String {
    if shapes {
        format!("{op} {n}x{i}->{o}")
    } else {
        op.to_string()
    }
}

/// A convolution's row of the table: kernel and stride, and with `UCGM_PROFILE_SHAPES`
/// set, channels and input size.
fn conv_key(shapes: bool, s: &Conv2dShape) -> String {
    let key = format!("conv2d_fwd {}x{} s{}", s.kh, s.kw, s.stride_h);
    if shapes {
        format!("{key} {}->{} {}x{}", s.c_in, s.c_out, s.h, s.w)
    } else {
        key
    }
}

impl<B: Backend> Profiled<B> {
    /// Wraps `inner` with an empty table.
    pub fn new(inner: B) -> Self {
        Profiled {
            inner,
            table: Arc::default(),
            shapes: std::env::var_os("UCGM_PROFILE_SHAPES").is_some(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The table so far: op name → calls and total time. Convolutions are listed per
    /// kernel and stride (`conv2d_fwd 3x3 s1`; with `UCGM_PROFILE_SHAPES` set, per
    /// channels and input size too, and the Linears per shape), poolings per kind, window and stride, the rest per
    /// op.
    pub fn table(&self) -> BTreeMap<String, OpTime> {
        self.table.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Empties the table (e.g. after a warm-up).
    pub fn reset(&self) {
        if let Ok(mut t) = self.table.lock() {
            t.clear();
        }
    }

    fn timed<R>(&self, op: &str, f: impl FnOnce() -> R) -> R {
        let (t0, c0) = (Instant::now(), process_cpu_time());
        let r = f();
        let (dt, dc) = (t0.elapsed(), process_cpu_time().saturating_sub(c0));
        if let Ok(mut t) = self.table.lock() {
            let e = t.entry(op.to_string()).or_default();
            e.calls += 1;
            e.time += dt;
            e.cpu += dc;
        }
        r
    }
}

impl<B: Backend> Backend for Profiled<B> {
    type Buf = B::Buf;
    type Src<'a>
        = B::Src<'a>
    where
        Self: 'a;
    type Dst<'a>
        = B::Dst<'a>
    where
        Self: 'a;

    fn name(&self) -> String {
        self.inner.name()
    }
    fn scope<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.inner.scope(f)
    }
    fn zeros(&self, len: usize) -> Result<Self::Buf> {
        self.timed("zeros", || self.inner.zeros(len))
    }
    fn upload(&self, host: &[f32]) -> Result<Self::Buf> {
        self.timed("upload", || self.inner.upload(host))
    }
    fn upload_owned(&self, host: Vec<f32>) -> Result<Self::Buf> {
        self.timed("upload_owned", || self.inner.upload_owned(host))
    }
    fn write(&self, dst: &mut Self::Buf, offset: usize, host: &[f32]) -> Result<()> {
        self.timed("write", || self.inner.write(dst, offset, host))
    }
    fn read(&self, src: &Self::Buf, range: Range<usize>) -> Result<Vec<f32>> {
        self.timed("read", || self.inner.read(src, range))
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        self.inner.len(buf)
    }
    fn src<'a>(&self, buf: &'a Self::Buf, range: Range<usize>) -> Self::Src<'a> {
        self.inner.src(buf, range)
    }
    fn dst<'a>(&self, buf: &'a mut Self::Buf, range: Range<usize>) -> Self::Dst<'a> {
        self.inner.dst(buf, range)
    }
    fn copy(&self, src: Self::Src<'_>, dst: Self::Dst<'_>) {
        self.timed("copy", || self.inner.copy(src, dst))
    }
    fn zero(&self, dst: Self::Dst<'_>) {
        self.timed("zero", || self.inner.zero(dst))
    }
    fn add_assign(&self, src: Self::Src<'_>, dst: Self::Dst<'_>) {
        self.timed("add_assign", || self.inner.add_assign(src, dst))
    }
    fn linear_fwd(&self, x: Self::Src<'_>, wb: Self::Src<'_>, has_bias: bool, y: Self::Dst<'_>, n: usize, i: usize, o: usize) {
        self.timed(&linear_key(self.shapes, "linear_fwd", n, i, o), || {
            self.inner.linear_fwd(x, wb, has_bias, y, n, i, o)
        })
    }
    fn prefers_transposed_weights(&self) -> bool {
        self.inner.prefers_transposed_weights()
    }
    fn linear_fwd_t(&self, x: Self::Src<'_>, wtb: Self::Src<'_>, has_bias: bool, gelu: bool, y: Self::Dst<'_>, n: usize, i: usize, o: usize) {
        self.timed(&linear_key(self.shapes, "linear_fwd_t", n, i, o), || {
            self.inner.linear_fwd_t(x, wtb, has_bias, gelu, y, n, i, o)
        })
    }
    fn packed_weight_len(&self, i: usize, o: usize) -> Option<usize> {
        self.inner.packed_weight_len(i, o)
    }
    fn pack_weight(&self, w: Self::Src<'_>, dst: Self::Dst<'_>, i: usize, o: usize) {
        self.timed("pack_weight", || self.inner.pack_weight(w, dst, i, o))
    }
    fn pack_in_place(&self, buf: &mut Self::Buf, steps: &[PackStep], total: usize) -> Result<bool> {
        self.timed("pack_in_place", || self.inner.pack_in_place(buf, steps, total))
    }
    fn unpack_weight(&self, src: Self::Src<'_>, w: Self::Dst<'_>, i: usize, o: usize) {
        self.timed("unpack_weight", || self.inner.unpack_weight(src, w, i, o))
    }
    fn linear_fwd_packed(&self, x: Self::Src<'_>, wpb: Self::Src<'_>, has_bias: bool, gelu: bool, y: Self::Dst<'_>, n: usize, i: usize, o: usize) {
        self.timed("linear_fwd_packed", || self.inner.linear_fwd_packed(x, wpb, has_bias, gelu, y, n, i, o))
    }
    fn transpose_weight(&self, w: Self::Src<'_>, dst: Self::Dst<'_>, i: usize, o: usize) {
        self.timed("transpose_weight", || self.inner.transpose_weight(w, dst, i, o))
    }
    fn untranspose_weight(&self, src: Self::Src<'_>, w: Self::Dst<'_>, i: usize, o: usize) {
        self.timed("untranspose_weight", || self.inner.untranspose_weight(src, w, i, o))
    }
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
    ) {
        self.timed(&linear_key(self.shapes, "linear_bwd", n, i, o), || {
            self.inner.linear_bwd(dy, x, wb, has_bias, dx, dwb, n, i, o)
        })
    }
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
    ) {
        self.timed("norm_mod_fwd", || {
            self.inner
                .norm_mod_fwd(kind, x, weight, ada, ada_stride, shift_col, scale_col, y, stats, b, t, d)
        })
    }
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
    ) {
        self.timed("norm_mod_bwd", || {
            self.inner
                .norm_mod_bwd(kind, dy, x, weight, dweight, ada, ada_stride, shift_col, scale_col, stats, dx, dada, b, t, d)
        })
    }
    fn gate_residual_fwd(&self, y: Self::Src<'_>, ada: Self::Src<'_>, ada_stride: usize, gate_col: usize, h: Self::Dst<'_>, b: usize, t: usize, d: usize) {
        self.timed("gate_residual_fwd", || self.inner.gate_residual_fwd(y, ada, ada_stride, gate_col, h, b, t, d))
    }
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
    ) {
        self.timed("gate_residual_bwd", || {
            self.inner.gate_residual_bwd(dh, y, ada, ada_stride, gate_col, dy, dada, b, t, d)
        })
    }
    fn qk_norm_fwd(&self, qkv: Self::Src<'_>, qkw: Self::Src<'_>, out: Self::Dst<'_>, stats: Option<Self::Dst<'_>>, n: usize, heads: usize, head_dim: usize) {
        self.timed("qk_norm_fwd", || self.inner.qk_norm_fwd(qkv, qkw, out, stats, n, heads, head_dim))
    }
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
    ) {
        self.timed("qk_norm_bwd", || self.inner.qk_norm_bwd(dout, qkv, qkw, stats, dqkv, dqkw, n, heads, head_dim))
    }
    fn attention_fwd(
        &self,
        qkv: Self::Src<'_>,
        rope_cos: Self::Src<'_>,
        rope_sin: Self::Src<'_>,
        out: Self::Dst<'_>,
        cache: Option<Self::Dst<'_>>,
        dims: AttnDims,
    ) {
        self.timed("attention_fwd", || self.inner.attention_fwd(qkv, rope_cos, rope_sin, out, cache, dims))
    }
    fn attention_bwd(
        &self,
        dout: Self::Src<'_>,
        qkv: Self::Src<'_>,
        rope_cos: Self::Src<'_>,
        rope_sin: Self::Src<'_>,
        cache: Self::Src<'_>,
        dqkv: Self::Dst<'_>,
        dims: AttnDims,
    ) {
        self.timed("attention_bwd", || self.inner.attention_bwd(dout, qkv, rope_cos, rope_sin, cache, dqkv, dims))
    }
    fn conv2d_fwd(&self, x: Self::Src<'_>, w: Self::Src<'_>, bias: Option<Self::Src<'_>>, y: Self::Dst<'_>, shape: &Conv2dShape) {
        self.timed(&conv_key(self.shapes, shape), || self.inner.conv2d_fwd(x, w, bias, y, shape))
    }
    fn conv2d_fwd_into(&self, x: Self::Src<'_>, w: Self::Src<'_>, bias: Option<Self::Src<'_>>, y: Self::Dst<'_>, shape: &Conv2dShape, layout: &ConvLayout) {
        self.timed(&conv_key(self.shapes, shape), || self.inner.conv2d_fwd_into(x, w, bias, y, shape, layout))
    }
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
    ) {
        self.timed("group_norm_fwd", || self.inner.group_norm_fwd(x, gamma, beta, y, n, c, hw, groups, eps, silu))
    }
    fn upsample_nearest2x(&self, x: Self::Src<'_>, y: Self::Dst<'_>, n: usize, c: usize, h: usize, w: usize) {
        self.timed("upsample_nearest2x", || self.inner.upsample_nearest2x(x, y, n, c, h, w))
    }
    fn transpose_batched(&self, x: Self::Src<'_>, y: Self::Dst<'_>, batch: usize, rows: usize, cols: usize) {
        self.timed("transpose_batched", || self.inner.transpose_batched(x, y, batch, rows, cols))
    }
    fn mp_normalize_rows(&self, x: Self::Src<'_>, y: Self::Dst<'_>, rows: usize, n: usize) {
        self.timed("mp_normalize_rows", || self.inner.mp_normalize_rows(x, y, rows, n))
    }
    fn clamp(&self, x: Self::Dst<'_>, lim: f32) {
        self.timed("clamp", || self.inner.clamp(x, lim))
    }
    fn pool2d_fwd(&self, x: Self::Src<'_>, y: Self::Dst<'_>, shape: &Pool2dShape, kind: PoolKind) {
        self.timed(&format!("pool2d_fwd {:?} {}x{} s{}", kind, shape.k, shape.k, shape.stride), || {
            self.inner.pool2d_fwd(x, y, shape, kind)
        })
    }
    fn resize_bilinear(&self, x: Self::Src<'_>, y: Self::Dst<'_>, n: usize, c: usize, h: usize, w: usize, out_h: usize, out_w: usize, mode: ResizeMode) {
        self.timed("resize_bilinear", || self.inner.resize_bilinear(x, y, n, c, h, w, out_h, out_w, mode))
    }
    fn relu_inplace(&self, x: Self::Dst<'_>) {
        self.timed("relu_inplace", || self.inner.relu_inplace(x))
    }
    fn copy_channels(&self, src: Self::Src<'_>, dst: Self::Dst<'_>, n: usize, c_src: usize, c_dst: usize, offset: usize, hw: usize) {
        self.timed("copy_channels", || self.inner.copy_channels(src, dst, n, c_src, c_dst, offset, hw))
    }
    fn gelu_tanh_fwd(&self, x: Self::Src<'_>, y: Self::Dst<'_>) {
        self.timed("gelu_tanh_fwd", || self.inner.gelu_tanh_fwd(x, y))
    }
    fn gelu_tanh_bwd(&self, x: Self::Src<'_>, dy: Self::Src<'_>, dx: Self::Dst<'_>) {
        self.timed("gelu_tanh_bwd", || self.inner.gelu_tanh_bwd(x, dy, dx))
    }
    fn silu_fwd(&self, x: Self::Src<'_>, y: Self::Dst<'_>) {
        self.timed("silu_fwd", || self.inner.silu_fwd(x, y))
    }
    fn silu_bwd(&self, x: Self::Src<'_>, dy: Self::Src<'_>, dx: Self::Dst<'_>) {
        self.timed("silu_bwd", || self.inner.silu_bwd(x, dy, dx))
    }
    fn swiglu_fwd(&self, x12: Self::Src<'_>, y: Self::Dst<'_>, n: usize, h: usize) {
        self.timed("swiglu_fwd", || self.inner.swiglu_fwd(x12, y, n, h))
    }
    fn swiglu_bwd(&self, x12: Self::Src<'_>, dy: Self::Src<'_>, dx12: Self::Dst<'_>, n: usize, h: usize) {
        self.timed("swiglu_bwd", || self.inner.swiglu_bwd(x12, dy, dx12, n, h))
    }
    fn patchify(&self, x: Self::Src<'_>, out: Self::Dst<'_>, b: usize, c: usize, side: usize, p: usize) {
        self.timed("patchify", || self.inner.patchify(x, out, b, c, side, p))
    }
    fn patchify_bwd(&self, dpatch: Self::Src<'_>, dx: Self::Dst<'_>, b: usize, c: usize, side: usize, p: usize) {
        self.timed("patchify_bwd", || self.inner.patchify_bwd(dpatch, dx, b, c, side, p))
    }
    fn unpatchify(&self, tok: Self::Src<'_>, out: Self::Dst<'_>, b: usize, c: usize, side: usize, p: usize) {
        self.timed("unpatchify", || self.inner.unpatchify(tok, out, b, c, side, p))
    }
    fn unpatchify_bwd(&self, dout: Self::Src<'_>, dtok: Self::Dst<'_>, b: usize, c: usize, side: usize, p: usize) {
        self.timed("unpatchify_bwd", || self.inner.unpatchify_bwd(dout, dtok, b, c, side, p))
    }
    fn add_rows(&self, rows: Self::Src<'_>, x: Self::Dst<'_>, b: usize, t: usize, d: usize) {
        self.timed("add_rows", || self.inner.add_rows(rows, x, b, t, d))
    }
    fn embedding_fwd(&self, table: Self::Src<'_>, labels: &[usize], out: Self::Dst<'_>, d: usize) {
        self.timed("embedding_fwd", || self.inner.embedding_fwd(table, labels, out, d))
    }
    fn embedding_bwd(&self, dout: Self::Src<'_>, labels: &[usize], dtable: Self::Dst<'_>, d: usize) {
        self.timed("embedding_bwd", || self.inner.embedding_bwd(dout, labels, dtable, d))
    }
    fn adamw_step(&self, p: Self::Dst<'_>, g: Self::Src<'_>, m: Self::Dst<'_>, v: Self::Dst<'_>, hp: &OptimHp, step: u64) {
        self.timed("adamw_step", || self.inner.adamw_step(p, g, m, v, hp, step))
    }
    fn radam_step(&self, p: Self::Dst<'_>, g: Self::Src<'_>, m: Self::Dst<'_>, v: Self::Dst<'_>, hp: &OptimHp, step: u64) {
        self.timed("radam_step", || self.inner.radam_step(p, g, m, v, hp, step))
    }
    fn ema(&self, src: Self::Src<'_>, dst: Self::Dst<'_>, decay: f64) {
        self.timed("ema", || self.inner.ema(src, dst, decay))
    }
    fn sum_squares(&self, x: Self::Src<'_>) -> f64 {
        self.timed("sum_squares", || self.inner.sum_squares(x))
    }
    fn scale(&self, x: Self::Dst<'_>, s: f64) {
        self.timed("scale", || self.inner.scale(x, s))
    }
    fn zero_non_finite(&self, x: Self::Dst<'_>) {
        self.timed("zero_non_finite", || self.inner.zero_non_finite(x))
    }
}
