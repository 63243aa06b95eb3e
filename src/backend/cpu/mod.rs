//! CPU backend: flat `Vec<T>` buffers, one rayon pool per backend instance, GEMMs from
//! the `gemm` crate parallelised inside that pool, large ones as independent output
//! tiles (see `gemm.rs`, also for why not matrixmultiply), f32 inference Linears from
//! weights in panel form with an AVX2 kernel of our own where the CPU has AVX2 but not
//! AVX-512 ([`panel`]: the crate's bits, faster), vectorised elementwise math ([`vmath`]).
//! Generic over the element type so the same ops run in f64 for finite-difference
//! gradient checks. No op splits a reduction across threads, so results are
//! bit-identical for any thread count.

mod activation;
mod attention;
pub mod bf16;
mod conv;
mod elem;
mod gemm;
mod group_norm;
mod image_layout;
mod layout_ops;
mod linear;
mod norm;
mod optim;
pub mod panel;
mod pool;
mod scratch;
pub mod vmath;
mod winograd;

use std::ops::Range;
use std::sync::Arc;

pub use elem::Elem;
pub use gemm::{matmul, matmul_tiled, tile_shape, TILE_WORK};

use super::{AttnDims, Backend, Conv2dShape, ConvLayout, NormKind, OptimHp, PackStep, Pool2dShape, PoolKind, ResizeMode};
use crate::error::{Error, Result};

/// The CPU backend over element type `T` (f32 for real work, f64 for gradient checks).
#[derive(Clone)]
pub struct CpuBackend<T: Elem = f32> {
    pool: Arc<Pool>,
    options: CpuOptions,
    _elem: std::marker::PhantomData<T>,
}

/// Settings of a CPU backend beyond its thread count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuOptions {
    /// bf16 inference (f32 backends only): a model that only samples holds its Linear
    /// weights in bf16 (half the memory), every matrix product of the forward pass —
    /// the Linear layers and attention's Q·Kᵀ and P·V — rounds its operands to bf16 and
    /// accumulates in f32 ([`bf16`]), everything else stays f32: the rule of the CUDA
    /// bf16 mode. Training, gradients and products with external parameters (an EMA
    /// copy) stay f32.
    pub bf16: bool,
}

/// A rayon pool whose worker threads are joined when it is dropped (with the last clone
/// of its backend): no thread of the library outlives the models that use it, so a C
/// host may unload libucgm right after `ucgm_model_free`, and leak checkers see no live
/// threads at exit. (rayon's own drop only signals the workers.)
struct Pool {
    pool: Option<rayon::ThreadPool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // (Not `thread::current()`: on a C host's thread that would allocate a handle
        // that lives until the thread ends.)
        let on_own_worker = self.pool.as_ref().is_some_and(|p| p.current_thread_index().is_some());
        drop(self.pool.take()); // tells the workers to finish and exit
        if on_own_worker {
            return; // it cannot wait for itself
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<T: Elem> std::fmt::Debug for CpuBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuBackend<{}>({} threads)", std::any::type_name::<T>(), self.threads())
    }
}

impl<T: Elem> CpuBackend<T> {
    /// A backend with its own pool of `threads` workers (0 = one per core).
    ///
    /// On Linux with glibc this also fixes malloc's mmap threshold at 32 MiB (once per
    /// process, see [`tune_allocator`]); set `UCGM_NO_MALLOPT=1` to leave the allocator alone.
    pub fn new(threads: usize) -> Result<Self> {
        Self::with_options(threads, CpuOptions::default())
    }

    /// [`CpuBackend::new`] with options (see [`CpuOptions`]). bf16 needs f32 elements.
    pub fn with_options(threads: usize, options: CpuOptions) -> Result<Self> {
        if options.bf16 && std::any::TypeId::of::<T>() != std::any::TypeId::of::<f32>() {
            return Err(Error::invalid("bf16 mode needs an f32 CPU backend"));
        }
        crate::limits::check_threads(threads)?;
        tune_allocator();
        let mut workers = Vec::new();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .spawn_handler(|thread| {
                let worker = std::thread::Builder::new()
                    .name(format!("ucgm-cpu-{}", thread.index()))
                    .spawn(|| thread.run())?;
                workers.push(worker);
                Ok(())
            })
            .build()
            .map_err(|e| Error::Backend(format!("cannot start CPU thread pool: {e}")))?;
        Ok(CpuBackend {
            pool: Arc::new(Pool { pool: Some(pool), workers }),
            options,
            _elem: std::marker::PhantomData,
        })
    }

    fn rayon(&self) -> &rayon::ThreadPool {
        self.pool.pool.as_ref().expect("the pool lives until the backend is dropped")
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.rayon().current_num_threads()
    }

    /// The backend's options.
    pub fn options(&self) -> CpuOptions {
        self.options
    }

    /// Whether f32 inference runs the panel kernels ([`panel`]): f32 elements on a CPU
    /// that has them. The transposed weight form is then the panel form.
    pub fn panels(&self) -> bool {
        T::as_f32(&[]).is_some() && panel::available()
    }

    /// Runs `f` inside this backend's pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.rayon().install(f)
    }
}

/// Fixes glibc's mmap threshold at 32 MiB (its maximum) and raises its trim threshold to
/// 256 MiB, once per process (Linux/glibc only; skipped
/// when `UCGM_NO_MALLOPT=1`).
///
/// Why: the `gemm` kernels allocate their packing workspace on every call. glibc serves
/// blocks above its *dynamic* mmap threshold with a fresh `mmap` (page faults on every
/// GEMM) and only raises the threshold after such a block is freed, so whether a run gets
/// reused heap memory depended on the order of earlier allocations: the same binary ran
/// the SiT-S/2 batch-1 forward in 72 ms or 91 ms. A fixed threshold makes it 72 ms every
/// time (`MALLOC_MMAP_THRESHOLD_=33554432` has the same effect, side by side). Blocks
/// above 32 MiB are still mmapped; smaller freed blocks stay in the heap for reuse (the
/// trim threshold keeps glibc from handing them back to the kernel after every step).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var("UCGM_NO_MALLOPT").is_ok_and(|v| v == "1") || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
                return;
            }
            // SAFETY: mallopt only adjusts allocator parameters; M_MMAP_THRESHOLD takes a byte count.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            }
        });
    }
}

impl<T: Elem> Backend for CpuBackend<T> {
    type Buf = Vec<T>;
    type Src<'a> = &'a [T];
    type Dst<'a> = &'a mut [T];

    fn name(&self) -> String {
        if self.options.bf16 {
            format!("cpu ({} threads, bf16)", self.threads())
        } else {
            format!("cpu ({} threads)", self.threads())
        }
    }

    fn scope<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.install(f)
    }

    fn zeros(&self, len: usize) -> Result<Vec<T>> {
        // Checked against physical memory first: an over-committed allocation would only
        // fail when touched, by the kernel's OOM killer.
        crate::limits::try_zeroed("a CPU buffer", len)
    }
    fn upload(&self, host: &[f32]) -> Result<Vec<T>> {
        Ok(host.iter().map(|&x| T::of(x as f64)).collect())
    }
    fn upload_owned(&self, host: Vec<f32>) -> Result<Vec<T>> {
        // f32 buffers are the host vector itself; other element types convert.
        match (Box::new(host) as Box<dyn std::any::Any>).downcast::<Vec<T>>() {
            Ok(v) => Ok(*v),
            Err(other) => {
                let host = other.downcast::<Vec<f32>>().expect("a Vec<f32>");
                self.upload(&host)
            }
        }
    }
    fn write(&self, dst: &mut Vec<T>, offset: usize, host: &[f32]) -> Result<()> {
        let end = offset.checked_add(host.len()).filter(|&e| e <= dst.len());
        let end = end.ok_or_else(|| Error::invalid(format!("write of {} at {offset} past buffer of {}", host.len(), dst.len())))?;
        for (d, &s) in dst[offset..end].iter_mut().zip(host) {
            *d = T::of(s as f64);
        }
        Ok(())
    }
    fn read(&self, src: &Vec<T>, range: Range<usize>) -> Result<Vec<f32>> {
        let s = src
            .get(range.clone())
            .ok_or_else(|| Error::invalid(format!("read {range:?} past buffer of {}", src.len())))?;
        Ok(s.iter().map(|x| x.f64() as f32).collect())
    }
    fn len(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }
    fn src<'a>(&self, buf: &'a Vec<T>, range: Range<usize>) -> &'a [T] {
        &buf[range]
    }
    fn dst<'a>(&self, buf: &'a mut Vec<T>, range: Range<usize>) -> &'a mut [T] {
        &mut buf[range]
    }
    fn copy(&self, src: &[T], dst: &mut [T]) {
        dst.copy_from_slice(src);
    }
    fn zero(&self, dst: &mut [T]) {
        dst.fill(T::zero());
    }
    fn add_assign(&self, src: &[T], dst: &mut [T]) {
        self.install(|| layout_ops::add_assign(src, dst));
    }

    fn linear_fwd(&self, x: &[T], wb: &[T], has_bias: bool, y: &mut [T], n: usize, i: usize, o: usize) {
        self.install(|| linear::forward(x, wb, has_bias, y, n, i, o));
    }
    fn prefers_transposed_weights(&self) -> bool {
        true
    }
    fn linear_fwd_t(&self, x: &[T], wtb: &[T], has_bias: bool, gelu: bool, y: &mut [T], n: usize, i: usize, o: usize) {
        if self.panels() {
            let (x, wtb, y) = (T::as_f32(x).expect("f32"), T::as_f32(wtb).expect("f32"), T::as_f32_mut(y).expect("f32"));
            self.install(|| panel::linear(x, wtb, has_bias, gelu, y, n, i, o))
        } else {
            self.install(|| linear::forward_t(x, wtb, has_bias, gelu, y, n, i, o))
        }
    }
    fn transpose_weight(&self, w: &[T], dst: &mut [T], i: usize, o: usize) {
        if self.panels() {
            let (w, dst) = (T::as_f32(w).expect("f32"), T::as_f32_mut(dst).expect("f32"));
            self.install(|| panel::pack(w, dst, i, o))
        } else {
            self.install(|| linear::transpose(w, dst, o, i))
        }
    }
    fn untranspose_weight(&self, src: &[T], w: &mut [T], i: usize, o: usize) {
        if self.panels() {
            let (src, w) = (T::as_f32(src).expect("f32"), T::as_f32_mut(w).expect("f32"));
            self.install(|| panel::unpack(src, w, i, o))
        } else {
            self.install(|| linear::transpose(src, w, i, o))
        }
    }
    fn packed_weight_len(&self, i: usize, o: usize) -> Option<usize> {
        let is_f32 = T::as_f32(&[]).is_some();
        (self.options.bf16 && is_f32).then(|| bf16::packed_len(i, o))
    }
    fn pack_weight(&self, w: &[T], dst: &mut [T], i: usize, o: usize) {
        let (w, dst) = (T::as_f32(w).expect("bf16 on f32"), T::as_f32_mut(dst).expect("bf16 on f32"));
        self.install(|| bf16::pack_b_nk(w, bf16::words_mut(dst), i, o));
    }
    fn pack_in_place(&self, buf: &mut Vec<T>, steps: &[PackStep], total: usize) -> Result<bool> {
        let fits = steps.iter().all(|s| match s {
            PackStep::Copy { from, to } => *to <= from.start && from.end <= buf.len(),
            PackStep::Pack { from, to, i, o } => *to <= from.start && to + bf16::packed_len(*i, *o) <= from.end && from.len() == i * o && from.end <= buf.len(),
        });
        if !fits || total > buf.len() {
            return Ok(false);
        }
        let largest = steps
            .iter()
            .map(|s| if let PackStep::Pack { i, o, .. } = s { bf16::packed_len(*i, *o) } else { 0 })
            .max()
            .unwrap_or(0);
        let mut scratch: Vec<u32> = crate::limits::try_zeroed("the packing scratch", largest)?;
        let b = T::as_f32_mut(buf).expect("bf16 on f32");
        for s in steps {
            match s {
                PackStep::Copy { from, to } => b.copy_within(from.clone(), *to),
                PackStep::Pack { from, to, i, o } => {
                    let len = bf16::packed_len(*i, *o);
                    self.install(|| bf16::pack_b_nk(&b[from.clone()], &mut scratch[..len], *i, *o));
                    bf16::words_mut(&mut b[*to..to + len]).copy_from_slice(&scratch[..len]);
                }
            }
        }
        buf.truncate(total);
        buf.shrink_to_fit();
        Ok(true)
    }
    fn unpack_weight(&self, src: &[T], w: &mut [T], i: usize, o: usize) {
        let (src, w) = (T::as_f32(src).expect("bf16 on f32"), T::as_f32_mut(w).expect("bf16 on f32"));
        bf16::unpack_b_nk(bf16::words(src), w, i, o);
    }
    fn linear_fwd_packed(&self, x: &[T], wpb: &[T], has_bias: bool, gelu: bool, y: &mut [T], n: usize, i: usize, o: usize) {
        let (x, wpb, y) = (
            T::as_f32(x).expect("bf16 on f32"),
            T::as_f32(wpb).expect("bf16 on f32"),
            T::as_f32_mut(y).expect("bf16 on f32"),
        );
        let epilogue: Option<fn(&mut [f32])> = gelu.then_some(activation::gelu_tanh_in_place::<f32>);
        self.install(|| bf16::linear(bf16::Kernel::detect(), x, wpb, has_bias, epilogue, y, n, i, o));
    }
    fn linear_bwd(&self, dy: &[T], x: &[T], wb: &[T], has_bias: bool, dx: Option<&mut [T]>, dwb: &mut [T], n: usize, i: usize, o: usize) {
        self.install(|| linear::backward(dy, x, wb, has_bias, dx, dwb, n, i, o));
    }

    fn norm_mod_fwd(
        &self,
        kind: NormKind,
        x: &[T],
        weight: Option<&[T]>,
        ada: &[T],
        ada_stride: usize,
        shift_col: usize,
        scale_col: usize,
        y: &mut [T],
        stats: Option<&mut [T]>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        let m = norm::Modulation {
            weight,
            ada,
            stride: ada_stride,
            shift_col,
            scale_col,
        };
        self.install(|| norm::forward(kind, x, &m, y, stats, b, t, d));
    }
    fn norm_mod_bwd(
        &self,
        kind: NormKind,
        dy: &[T],
        x: &[T],
        weight: Option<&[T]>,
        dweight: Option<&mut [T]>,
        ada: &[T],
        ada_stride: usize,
        shift_col: usize,
        scale_col: usize,
        stats: &[T],
        dx: &mut [T],
        dada: &mut [T],
        b: usize,
        t: usize,
        d: usize,
    ) {
        let m = norm::Modulation {
            weight,
            ada,
            stride: ada_stride,
            shift_col,
            scale_col,
        };
        self.install(|| norm::backward(kind, dy, x, &m, stats, dx, dada, dweight, b, t, d));
    }
    fn qk_norm_fwd(&self, qkv: &[T], qkw: &[T], out: &mut [T], stats: Option<&mut [T]>, n: usize, heads: usize, head_dim: usize) {
        self.install(|| norm::qk_norm_forward(qkv, qkw, out, stats, n, heads, head_dim));
    }
    fn qk_norm_bwd(&self, dout: &[T], qkv: &[T], qkw: &[T], stats: &[T], dqkv: &mut [T], dqkw: &mut [T], n: usize, heads: usize, head_dim: usize) {
        self.install(|| norm::qk_norm_backward(dout, qkv, qkw, stats, dqkv, dqkw, n, heads, head_dim));
    }
    fn gate_residual_fwd(&self, y: &[T], ada: &[T], ada_stride: usize, gate_col: usize, h: &mut [T], b: usize, t: usize, d: usize) {
        self.install(|| norm::gate_residual_forward(y, ada, ada_stride, gate_col, h, b, t, d));
    }
    fn gate_residual_bwd(&self, dh: &[T], y: &[T], ada: &[T], ada_stride: usize, gate_col: usize, dy: &mut [T], dada: &mut [T], b: usize, t: usize, d: usize) {
        self.install(|| norm::gate_residual_backward(dh, y, ada, ada_stride, gate_col, dy, dada, b, t, d));
    }

    fn attention_fwd(&self, qkv: &[T], rope_cos: &[T], rope_sin: &[T], out: &mut [T], cache: Option<&mut [T]>, dims: AttnDims) {
        let bf16 = self.options.bf16 && cache.is_none();
        self.install(|| attention::forward(qkv, rope_cos, rope_sin, out, cache, dims, bf16));
    }
    fn attention_bwd(&self, dout: &[T], qkv: &[T], rope_cos: &[T], rope_sin: &[T], cache: &[T], dqkv: &mut [T], dims: AttnDims) {
        self.install(|| attention::backward(dout, qkv, rope_cos, rope_sin, cache, dqkv, dims));
    }

    fn conv2d_fwd(&self, x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T], shape: &Conv2dShape) {
        self.install(|| conv::forward(x, w, bias, y, shape, &ConvLayout::nchw(shape, false)));
    }
    fn conv2d_fwd_into(&self, x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T], shape: &Conv2dShape, layout: &ConvLayout) {
        self.install(|| conv::forward(x, w, bias, y, shape, layout));
    }
    fn group_norm_fwd(&self, x: &[T], gamma: &[T], beta: &[T], y: &mut [T], n: usize, c: usize, hw: usize, groups: usize, eps: f32, silu: bool) {
        self.install(|| group_norm::forward(x, gamma, beta, y, n, c, hw, groups, eps, silu));
    }
    fn upsample_nearest2x(&self, x: &[T], y: &mut [T], n: usize, c: usize, h: usize, w: usize) {
        self.install(|| image_layout::upsample_nearest2x(x, y, n, c, h, w));
    }
    fn mp_normalize_rows(&self, x: &[T], y: &mut [T], rows: usize, n: usize) {
        self.install(|| norm::mp_normalize_rows(x, y, rows, n));
    }
    fn clamp(&self, x: &mut [T], lim: f32) {
        self.install(|| norm::clamp(x, lim as f64));
    }
    fn transpose_batched(&self, x: &[T], y: &mut [T], batch: usize, rows: usize, cols: usize) {
        self.install(|| image_layout::transpose_batched(x, y, batch, rows, cols));
    }
    fn pool2d_fwd(&self, x: &[T], y: &mut [T], shape: &Pool2dShape, kind: PoolKind) {
        self.install(|| pool::pool2d(x, y, shape, kind));
    }
    fn resize_bilinear(&self, x: &[T], y: &mut [T], n: usize, c: usize, h: usize, w: usize, out_h: usize, out_w: usize, mode: ResizeMode) {
        self.install(|| pool::resize_bilinear(x, y, n, c, h, w, out_h, out_w, mode));
    }
    fn relu_inplace(&self, x: &mut [T]) {
        self.install(|| pool::relu(x));
    }
    fn copy_channels(&self, src: &[T], dst: &mut [T], n: usize, c_src: usize, c_dst: usize, offset: usize, hw: usize) {
        self.install(|| pool::copy_channels(src, dst, n, c_src, c_dst, offset, hw));
    }

    fn gelu_tanh_fwd(&self, x: &[T], y: &mut [T]) {
        self.install(|| activation::gelu_tanh_forward(x, y));
    }
    fn gelu_tanh_bwd(&self, x: &[T], dy: &[T], dx: &mut [T]) {
        self.install(|| activation::gelu_tanh_backward(x, dy, dx));
    }
    fn silu_fwd(&self, x: &[T], y: &mut [T]) {
        self.install(|| activation::silu_forward(x, y));
    }
    fn silu_bwd(&self, x: &[T], dy: &[T], dx: &mut [T]) {
        self.install(|| activation::silu_backward(x, dy, dx));
    }
    fn swiglu_fwd(&self, x12: &[T], y: &mut [T], n: usize, h: usize) {
        self.install(|| activation::swiglu_forward(x12, y, n, h));
    }
    fn swiglu_bwd(&self, x12: &[T], dy: &[T], dx12: &mut [T], n: usize, h: usize) {
        self.install(|| activation::swiglu_backward(x12, dy, dx12, n, h));
    }

    fn patchify(&self, x: &[T], out: &mut [T], b: usize, c: usize, side: usize, p: usize) {
        layout_ops::patchify(x, out, b, c, side, p);
    }
    fn patchify_bwd(&self, dpatch: &[T], dx: &mut [T], b: usize, c: usize, side: usize, p: usize) {
        layout_ops::patchify_bwd(dpatch, dx, b, c, side, p);
    }
    fn unpatchify(&self, tok: &[T], out: &mut [T], b: usize, c: usize, side: usize, p: usize) {
        layout_ops::unpatchify(tok, out, b, c, side, p);
    }
    fn unpatchify_bwd(&self, dout: &[T], dtok: &mut [T], b: usize, c: usize, side: usize, p: usize) {
        layout_ops::unpatchify_bwd(dout, dtok, b, c, side, p);
    }
    fn add_rows(&self, rows: &[T], x: &mut [T], b: usize, t: usize, d: usize) {
        self.install(|| layout_ops::add_rows(rows, x, b, t, d));
    }
    fn embedding_fwd(&self, table: &[T], labels: &[usize], out: &mut [T], d: usize) {
        layout_ops::embedding_fwd(table, labels, out, d);
    }
    fn embedding_bwd(&self, dout: &[T], labels: &[usize], dtable: &mut [T], d: usize) {
        layout_ops::embedding_bwd(dout, labels, dtable, d);
    }

    fn adamw_step(&self, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], hp: &OptimHp, step: u64) {
        self.install(|| optim::adamw_step(p, g, m, v, hp, step));
    }
    fn radam_step(&self, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], hp: &OptimHp, step: u64) {
        self.install(|| optim::radam_step(p, g, m, v, hp, step));
    }
    fn ema(&self, src: &[T], dst: &mut [T], decay: f64) {
        self.install(|| optim::ema(src, dst, decay));
    }
    fn sum_squares(&self, x: &[T]) -> f64 {
        self.install(|| optim::sum_squares(x))
    }
    fn scale(&self, x: &mut [T], s: f64) {
        self.install(|| optim::scale(x, s));
    }
    fn zero_non_finite(&self, x: &mut [T]) {
        self.install(|| optim::zero_non_finite(x));
    }
}
