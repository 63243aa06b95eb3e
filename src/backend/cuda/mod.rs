//! CUDA backend through cudarc: f32 device buffers, one context + stream + cuBLAS handle
//! per backend (clones share them), matrix products through cuBLAS sgemm (row-major
//! C = A·B computed as Cᵀ = Bᵀ·Aᵀ, TF32 only when asked for) or, in bf16 mixed precision
//! ([`CudaOptions::bf16`]), bf16 GEMMs with f32 accumulation, every other op as an NVRTC
//! kernel compiled once per device architecture (`kernels.rs`, sources in `kernels/`).
//!
//! Errors: the trait's ops return `()`. The first failure (a driver or cuBLAS error, a
//! view too short for the sizes given, a buffer of another backend) is recorded in the
//! backend and is *sticky*, like CUDA's own: every later op does nothing, and the next
//! `zeros` / `upload` / `write` / `read` returns it as [`Error::Backend`]. A backend that
//! failed must be replaced. Kernel faults surface at the next `read`, which synchronises
//! the stream. Nothing here panics on a CUDA failure; a view range outside its buffer
//! panics as it does on the CPU (a caller bug).
//!
//! Determinism: no kernel uses atomics; every reduction has a fixed order that depends
//! only on the shape, so a run repeats bit for bit on the same device and driver.
//!
//! Threading: one backend (and its clones) is used by one thread at a time, as the C ABI
//! documents; calls from several threads are memory-safe (the context is bound to the
//! calling thread on every op and the cuBLAS handle is behind a lock) but serialise on
//! the one stream.

mod blas;
mod kernels;
mod launch;
mod ops_act;
mod ops_attention;
mod ops_conv;
mod ops_layout;
mod ops_linear;
mod ops_mem;
mod ops_norm;
mod ops_optim;
mod ops_pool;
mod probe;

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr};

pub use kernels::{arch_for, compiled as compile_kernels, parse_signatures, Kernel, SOURCE as KERNEL_SOURCE};
pub use probe::{libraries_present, probe_device, DeviceInfo};

use super::{AttnDims, Backend, Conv2dShape, ConvLayout, NormKind, OptimHp, Pool2dShape, PoolKind, ResizeMode};
use crate::error::{Error, Result};
use kernels::Kernels;

/// Options of a CUDA backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// Let cuBLAS use TF32 tensor cores for f32 products (≈3× faster, ~1e-3 relative
    /// error per product instead of ~1e-7). Off by default.
    pub tf32: bool,
    /// bf16 mixed precision (PyTorch autocast's rule for matrix products): every matrix
    /// product — the Linear layers forward and backward, and attention's QKᵀ, PV and their
    /// gradients — rounds both operands to bf16 and accumulates in f32 on the tensor cores
    /// (cublasGemmEx, f32 output). Parameters, gradients, optimizer state and the
    /// activations between products stay f32 (f32 master weights), as do norms, softmax,
    /// GELU, residuals and the loss. Takes precedence over `tf32` for the products.
    /// Off by default.
    pub bf16: bool,
}

/// Default cap on the temporary attention scores when no cache is given (inference)
/// and on the score gradients in the backward: images are processed in chunks whose
/// [heads, T, T] blocks fit in this many bytes.
pub const ATTENTION_SCRATCH_BYTES: usize = 512 << 20;

/// A device buffer of f32. Zero-length buffers hold one element internally (a zero-byte
/// device allocation is an error), so the length is kept here.
pub struct CudaBuf {
    mem: CudaSlice<f32>,
    len: usize,
}

impl std::fmt::Debug for CudaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBuf({} f32)", self.len)
    }
}

impl CudaBuf {
    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// State shared by a backend and its clones.
struct Shared {
    info: DeviceInfo,
    options: CudaOptions,
    kernels: Kernels,
    /// Always `Some` until drop (see `Drop for Shared`).
    blas: Mutex<Option<CudaBlas>>,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    /// The first failure, sticky.
    error: Mutex<Option<String>>,
    attention_scratch_bytes: AtomicUsize,
    /// Cap on the elements of one convolution's im2col tile (`ops_conv.rs`).
    conv_tile_elems: AtomicUsize,
}

/// The CUDA backend. Cheap to clone: clones share the context, stream, cuBLAS handle,
/// compiled kernels and the error state.
#[derive(Clone)]
pub struct CudaBackend {
    s: Arc<Shared>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({}, tf32 {}, bf16 {})", self.s.info, self.s.options.tf32, self.s.options.bf16)
    }
}

impl CudaBackend {
    /// Whether CUDA device 0 can be used here (libraries, driver, device); the reason if
    /// not. Never panics.
    pub fn probe() -> std::result::Result<DeviceInfo, String> {
        probe_device(0)
    }

    /// A backend on device `ordinal` with default options (f32, TF32 off).
    pub fn new(ordinal: usize) -> Result<Self> {
        Self::with_options(ordinal, CudaOptions::default())
    }

    /// A backend on device `ordinal`: probes first, then creates the context, stream and
    /// cuBLAS handle and loads the kernels (compiled by NVRTC on first use).
    pub fn with_options(ordinal: usize, options: CudaOptions) -> Result<Self> {
        let info = probe_device(ordinal).map_err(Error::Backend)?;
        let shared = probe::catch_panic("creating the CUDA backend", || Self::create(info, options)).map_err(Error::Backend)?;
        Ok(CudaBackend { s: Arc::new(shared) })
    }

    fn create(info: DeviceInfo, options: CudaOptions) -> std::result::Result<Shared, String> {
        let ctx = CudaContext::new(info.ordinal).map_err(|e| format!("cannot open CUDA device {}: {e}", info.ordinal))?;
        // One stream per backend and no cross-stream use: cudarc's per-buffer event
        // tracking would only add two event records per kernel argument.
        // SAFETY: set before any buffer of this context object is allocated; all work of
        // this backend is ordered on its single stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| format!("cannot create a CUDA stream: {e}"))?;
        keep_pool_memory(&ctx);
        let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cannot create a cuBLAS handle: {e}"))?;
        blas::set_math_mode(&blas, options.tf32)?;
        let (major, minor) = info.compute_capability;
        let kernels = Kernels::load(&ctx, &arch_for(major, minor))?;
        Ok(Shared {
            info,
            options,
            kernels,
            blas: Mutex::new(Some(blas)),
            stream,
            ctx,
            error: Mutex::new(None),
            attention_scratch_bytes: AtomicUsize::new(ATTENTION_SCRATCH_BYTES),
            conv_tile_elems: AtomicUsize::new(ops_conv::COL_TILE_ELEMS),
        })
    }

    /// The device this backend runs on.
    pub fn device(&self) -> &DeviceInfo {
        &self.s.info
    }

    /// The options it was created with.
    pub fn options(&self) -> CudaOptions {
        self.s.options
    }

    /// Waits for all queued work; returns the sticky error, if any.
    pub fn synchronize(&self) -> Result<()> {
        if let Err(e) = self.s.stream.synchronize() {
            self.fail(format!("stream synchronize: {e}"));
        }
        self.status()
    }

    /// The sticky error, if an op has failed.
    pub fn status(&self) -> Result<()> {
        if let Err(e) = self.s.ctx.check_err() {
            self.fail(format!("deferred CUDA error: {e}"));
        }
        match &*self.s.error.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(msg) => Err(Error::Backend(msg.clone())),
            None => Ok(()),
        }
    }

    /// Caps the temporary attention buffers (see [`ATTENTION_SCRATCH_BYTES`]); tests use
    /// a small cap to exercise the chunked path on small shapes.
    #[doc(hidden)]
    pub fn set_attention_scratch_bytes(&self, bytes: usize) {
        self.s.attention_scratch_bytes.store(bytes.max(1), Ordering::Relaxed);
    }

    /// Caps the elements of one convolution's im2col tile (default
    /// [`ops_conv::COL_TILE_ELEMS`]); tests use a small cap to exercise the row bands.
    #[doc(hidden)]
    pub fn set_conv_tile_elems(&self, elems: usize) {
        self.s.conv_tile_elems.store(elems.max(1), Ordering::Relaxed);
    }

    // ------------------------------------------------------------ error state

    /// Records `msg` as the backend's error unless one is already recorded.
    fn fail(&self, msg: impl Into<String>) {
        let mut e = self.s.error.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_none() {
            *e = Some(msg.into());
        }
    }

    /// Whether an error has been recorded (ops then do nothing).
    fn failed(&self) -> bool {
        self.s.error.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Records a failed driver / cuBLAS result.
    fn check<T, E: std::fmt::Display>(&self, what: &str, r: std::result::Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(format!("{what}: {e}"));
                None
            }
        }
    }

    /// Checks that every view is at least as long as the op needs: `(name, have, need)`.
    /// Records an error and returns false if one is short (the kernel would otherwise
    /// read or write past the view).
    fn lens_ok(&self, op: &str, lens: &[(&str, usize, usize)]) -> bool {
        if self.failed() {
            return false;
        }
        for &(name, have, need) in lens {
            if have < need {
                self.fail(format!("{op}: {name} has {have} elements, the sizes given need {need}"));
                return false;
            }
        }
        true
    }

    // ------------------------------------------------------------ device pointers

    /// The device address of a view (after checking it belongs to this backend).
    fn ptr<T, V: DevicePtr<T>>(&self, v: &V) -> u64 {
        if **v.stream() != *self.s.stream {
            self.fail("a buffer of another CUDA backend was passed to this one");
        }
        // With event tracking disabled the returned guard records nothing.
        let (p, _guard) = v.device_ptr(&self.s.stream);
        p
    }

    /// Device address `elems` f32 elements past `base`.
    fn off(base: u64, elems: usize) -> u64 {
        base + (elems * std::mem::size_of::<f32>()) as u64
    }

    /// An uninitialised temporary device buffer of `len` elements of `T` (stream-ordered
    /// allocation, freed in stream order when dropped). None (error recorded) on failure.
    fn temp<T: cudarc::driver::DeviceRepr>(&self, len: usize) -> Option<CudaSlice<T>> {
        // SAFETY: every temporary is fully written by a kernel before it is read.
        let r = unsafe { self.s.stream.alloc::<T>(len.max(1)) };
        self.check(&format!("allocating {len} temporary elements"), r)
    }

    /// Binds the context to the calling thread (needed before raw cuBLAS calls).
    fn bind(&self) -> bool {
        let r = self.s.ctx.bind_to_thread();
        self.check("binding the CUDA context", r).is_some()
    }
}

/// Lets the device's default memory pool keep freed memory instead of returning it to
/// the driver at every synchronisation: the ops' temporaries are stream-ordered
/// allocations that would otherwise be re-mapped after every `read`. (The pool is the
/// device's, shared within the process; PyTorch's caching allocator behaves the same.)
/// Best effort: a failure only costs speed.
fn keep_pool_memory(ctx: &Arc<CudaContext>) {
    use cudarc::driver::sys;
    if !ctx.has_async_alloc() {
        return;
    }
    let mut pool = std::mem::MaybeUninit::<sys::CUmemoryPool>::uninit();
    // SAFETY: plain driver calls on a valid device; `threshold` outlives the call.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(pool.as_mut_ptr(), ctx.cu_device()).result().is_ok() {
            let mut threshold = u64::MAX;
            let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
            let _ = sys::cuMemPoolSetAttribute(pool.assume_init(), attr, (&mut threshold as *mut u64).cast());
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // cudarc's `CudaBlas` unwraps the result of cublasDestroy in its Drop, which can
        // fail on a context in a sticky error state: destroy the handle here, ignoring
        // the result, and leak the wrapper (one stream reference) in that case only.
        let blas = self.blas.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        let failed = self.error.get_mut().unwrap_or_else(|p| p.into_inner()).is_some() || self.ctx.check_err().is_err();
        if let Some(blas) = blas {
            if failed {
                // SAFETY: the handle is valid and not used again (the wrapper is forgotten).
                let _ = unsafe { cudarc::cublas::result::destroy_handle(*blas.handle()) };
                std::mem::forget(blas);
            }
        }
    }
}

impl Backend for CudaBackend {
    type Buf = CudaBuf;
    type Src<'a> = CudaView<'a, f32>;
    type Dst<'a> = CudaViewMut<'a, f32>;

    fn name(&self) -> String {
        let mode = match (self.s.options.bf16, self.s.options.tf32) {
            (true, _) => ", bf16 mixed precision",
            (false, true) => ", tf32",
            (false, false) => "",
        };
        format!("cuda ({}{mode})", self.s.info)
    }

    fn zeros(&self, len: usize) -> Result<CudaBuf> {
        self.zeros_impl(len)
    }
    fn upload(&self, host: &[f32]) -> Result<CudaBuf> {
        self.upload_impl(host)
    }
    fn write(&self, dst: &mut CudaBuf, offset: usize, host: &[f32]) -> Result<()> {
        self.write_impl(dst, offset, host)
    }
    fn read(&self, src: &CudaBuf, range: Range<usize>) -> Result<Vec<f32>> {
        self.read_impl(src, range)
    }
    fn len(&self, buf: &CudaBuf) -> usize {
        buf.len
    }
    fn src<'a>(&self, buf: &'a CudaBuf, range: Range<usize>) -> CudaView<'a, f32> {
        assert!(
            range.start <= range.end && range.end <= buf.len,
            "view {range:?} outside a buffer of {}",
            buf.len
        );
        buf.mem.slice(range)
    }
    fn dst<'a>(&self, buf: &'a mut CudaBuf, range: Range<usize>) -> CudaViewMut<'a, f32> {
        assert!(
            range.start <= range.end && range.end <= buf.len,
            "view {range:?} outside a buffer of {}",
            buf.len
        );
        buf.mem.slice_mut(range)
    }
    fn copy(&self, src: CudaView<'_, f32>, dst: CudaViewMut<'_, f32>) {
        self.copy_impl(src, dst);
    }
    fn zero(&self, dst: CudaViewMut<'_, f32>) {
        self.zero_impl(dst);
    }
    fn add_assign(&self, src: CudaView<'_, f32>, dst: CudaViewMut<'_, f32>) {
        self.add_assign_impl(src, dst);
    }

    fn linear_fwd(&self, x: CudaView<'_, f32>, wb: CudaView<'_, f32>, has_bias: bool, y: CudaViewMut<'_, f32>, n: usize, i: usize, o: usize) {
        self.linear_fwd_impl(x, wb, has_bias, y, n, i, o);
    }
    fn linear_bwd(
        &self,
        dy: CudaView<'_, f32>,
        x: CudaView<'_, f32>,
        wb: CudaView<'_, f32>,
        has_bias: bool,
        dx: Option<CudaViewMut<'_, f32>>,
        dwb: CudaViewMut<'_, f32>,
        n: usize,
        i: usize,
        o: usize,
    ) {
        self.linear_bwd_impl(dy, x, wb, has_bias, dx, dwb, n, i, o);
    }

    fn norm_mod_fwd(
        &self,
        kind: NormKind,
        x: CudaView<'_, f32>,
        weight: Option<CudaView<'_, f32>>,
        ada: CudaView<'_, f32>,
        ada_stride: usize,
        shift_col: usize,
        scale_col: usize,
        y: CudaViewMut<'_, f32>,
        stats: Option<CudaViewMut<'_, f32>>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        self.norm_mod_fwd_impl(kind, x, weight, ada, ada_stride, shift_col, scale_col, y, stats, b, t, d);
    }
    fn norm_mod_bwd(
        &self,
        kind: NormKind,
        dy: CudaView<'_, f32>,
        x: CudaView<'_, f32>,
        weight: Option<CudaView<'_, f32>>,
        dweight: Option<CudaViewMut<'_, f32>>,
        ada: CudaView<'_, f32>,
        ada_stride: usize,
        shift_col: usize,
        scale_col: usize,
        stats: CudaView<'_, f32>,
        dx: CudaViewMut<'_, f32>,
        dada: CudaViewMut<'_, f32>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        self.norm_mod_bwd_impl(kind, dy, x, weight, dweight, ada, ada_stride, shift_col, scale_col, stats, dx, dada, b, t, d);
    }
    fn qk_norm_fwd(
        &self,
        qkv: CudaView<'_, f32>,
        qkw: CudaView<'_, f32>,
        out: CudaViewMut<'_, f32>,
        stats: Option<CudaViewMut<'_, f32>>,
        n: usize,
        heads: usize,
        head_dim: usize,
    ) {
        self.qk_norm_fwd_impl(qkv, qkw, out, stats, n, heads, head_dim);
    }
    fn qk_norm_bwd(
        &self,
        dout: CudaView<'_, f32>,
        qkv: CudaView<'_, f32>,
        qkw: CudaView<'_, f32>,
        stats: CudaView<'_, f32>,
        dqkv: CudaViewMut<'_, f32>,
        dqkw: CudaViewMut<'_, f32>,
        n: usize,
        heads: usize,
        head_dim: usize,
    ) {
        self.qk_norm_bwd_impl(dout, qkv, qkw, stats, dqkv, dqkw, n, heads, head_dim);
    }
    fn gate_residual_fwd(
        &self,
        y: CudaView<'_, f32>,
        ada: CudaView<'_, f32>,
        ada_stride: usize,
        gate_col: usize,
        h: CudaViewMut<'_, f32>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        self.gate_residual_fwd_impl(y, ada, ada_stride, gate_col, h, b, t, d);
    }
    fn gate_residual_bwd(
        &self,
        dh: CudaView<'_, f32>,
        y: CudaView<'_, f32>,
        ada: CudaView<'_, f32>,
        ada_stride: usize,
        gate_col: usize,
        dy: CudaViewMut<'_, f32>,
        dada: CudaViewMut<'_, f32>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        self.gate_residual_bwd_impl(dh, y, ada, ada_stride, gate_col, dy, dada, b, t, d);
    }

    fn attention_fwd(
        &self,
        qkv: CudaView<'_, f32>,
        rope_cos: CudaView<'_, f32>,
        rope_sin: CudaView<'_, f32>,
        out: CudaViewMut<'_, f32>,
        cache: Option<CudaViewMut<'_, f32>>,
        dims: AttnDims,
    ) {
        self.attention_fwd_impl(qkv, rope_cos, rope_sin, out, cache, dims);
    }
    fn attention_bwd(
        &self,
        dout: CudaView<'_, f32>,
        qkv: CudaView<'_, f32>,
        rope_cos: CudaView<'_, f32>,
        rope_sin: CudaView<'_, f32>,
        cache: CudaView<'_, f32>,
        dqkv: CudaViewMut<'_, f32>,
        dims: AttnDims,
    ) {
        self.attention_bwd_impl(dout, qkv, rope_cos, rope_sin, cache, dqkv, dims);
    }

    fn conv2d_fwd(&self, x: CudaView<'_, f32>, w: CudaView<'_, f32>, bias: Option<CudaView<'_, f32>>, y: CudaViewMut<'_, f32>, shape: &Conv2dShape) {
        self.conv2d_fwd_impl(x, w, bias, y, shape, &ConvLayout::nchw(shape, false));
    }
    fn conv2d_fwd_into(
        &self,
        x: CudaView<'_, f32>,
        w: CudaView<'_, f32>,
        bias: Option<CudaView<'_, f32>>,
        y: CudaViewMut<'_, f32>,
        shape: &Conv2dShape,
        layout: &ConvLayout,
    ) {
        self.conv2d_fwd_impl(x, w, bias, y, shape, layout);
    }
    fn group_norm_fwd(
        &self,
        x: CudaView<'_, f32>,
        gamma: CudaView<'_, f32>,
        beta: CudaView<'_, f32>,
        y: CudaViewMut<'_, f32>,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
        eps: f32,
        silu: bool,
    ) {
        self.group_norm_fwd_impl(x, gamma, beta, y, n, c, hw, groups, eps, silu);
    }
    fn upsample_nearest2x(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, n: usize, c: usize, h: usize, w: usize) {
        self.upsample_nearest2x_impl(x, y, n, c, h, w);
    }
    fn mp_normalize_rows(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, rows: usize, n: usize) {
        self.mp_normalize_rows_impl(x, y, rows, n);
    }
    fn clamp(&self, x: CudaViewMut<'_, f32>, lim: f32) {
        self.clamp_impl(x, lim);
    }
    fn transpose_batched(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, batch: usize, rows: usize, cols: usize) {
        self.transpose_batched_impl(x, y, batch, rows, cols);
    }
    fn pool2d_fwd(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, shape: &Pool2dShape, kind: PoolKind) {
        self.pool2d_fwd_impl(x, y, shape, kind);
    }
    fn resize_bilinear(
        &self,
        x: CudaView<'_, f32>,
        y: CudaViewMut<'_, f32>,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        out_h: usize,
        out_w: usize,
        mode: ResizeMode,
    ) {
        self.resize_bilinear_impl(x, y, n, c, h, w, out_h, out_w, mode);
    }
    fn relu_inplace(&self, x: CudaViewMut<'_, f32>) {
        self.relu_inplace_impl(x);
    }
    fn copy_channels(&self, src: CudaView<'_, f32>, dst: CudaViewMut<'_, f32>, n: usize, c_src: usize, c_dst: usize, offset: usize, hw: usize) {
        self.copy_channels_impl(src, dst, n, c_src, c_dst, offset, hw);
    }

    fn gelu_tanh_fwd(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>) {
        self.gelu_tanh_fwd_impl(x, y);
    }
    fn gelu_tanh_bwd(&self, x: CudaView<'_, f32>, dy: CudaView<'_, f32>, dx: CudaViewMut<'_, f32>) {
        self.gelu_tanh_bwd_impl(x, dy, dx);
    }
    fn silu_fwd(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>) {
        self.silu_fwd_impl(x, y);
    }
    fn silu_bwd(&self, x: CudaView<'_, f32>, dy: CudaView<'_, f32>, dx: CudaViewMut<'_, f32>) {
        self.silu_bwd_impl(x, dy, dx);
    }
    fn swiglu_fwd(&self, x12: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, n: usize, h: usize) {
        self.swiglu_fwd_impl(x12, y, n, h);
    }
    fn swiglu_bwd(&self, x12: CudaView<'_, f32>, dy: CudaView<'_, f32>, dx12: CudaViewMut<'_, f32>, n: usize, h: usize) {
        self.swiglu_bwd_impl(x12, dy, dx12, n, h);
    }

    fn patchify(&self, x: CudaView<'_, f32>, out: CudaViewMut<'_, f32>, b: usize, c: usize, side: usize, p: usize) {
        self.patch_op(Kernel::Patchify, x, out, b, c, side, p);
    }
    fn patchify_bwd(&self, dpatch: CudaView<'_, f32>, dx: CudaViewMut<'_, f32>, b: usize, c: usize, side: usize, p: usize) {
        self.patch_op(Kernel::PatchifyBwd, dpatch, dx, b, c, side, p);
    }
    fn unpatchify(&self, tok: CudaView<'_, f32>, out: CudaViewMut<'_, f32>, b: usize, c: usize, side: usize, p: usize) {
        self.patch_op(Kernel::Unpatchify, tok, out, b, c, side, p);
    }
    fn unpatchify_bwd(&self, dout: CudaView<'_, f32>, dtok: CudaViewMut<'_, f32>, b: usize, c: usize, side: usize, p: usize) {
        self.patch_op(Kernel::UnpatchifyBwd, dout, dtok, b, c, side, p);
    }
    fn add_rows(&self, rows: CudaView<'_, f32>, x: CudaViewMut<'_, f32>, b: usize, t: usize, d: usize) {
        self.add_rows_impl(rows, x, b, t, d);
    }
    fn embedding_fwd(&self, table: CudaView<'_, f32>, labels: &[usize], out: CudaViewMut<'_, f32>, d: usize) {
        self.embedding_fwd_impl(table, labels, out, d);
    }
    fn embedding_bwd(&self, dout: CudaView<'_, f32>, labels: &[usize], dtable: CudaViewMut<'_, f32>, d: usize) {
        self.embedding_bwd_impl(dout, labels, dtable, d);
    }

    fn adamw_step(&self, p: CudaViewMut<'_, f32>, g: CudaView<'_, f32>, m: CudaViewMut<'_, f32>, v: CudaViewMut<'_, f32>, hp: &OptimHp, step: u64) {
        self.adamw_step_impl(p, g, m, v, hp, step);
    }
    fn radam_step(&self, p: CudaViewMut<'_, f32>, g: CudaView<'_, f32>, m: CudaViewMut<'_, f32>, v: CudaViewMut<'_, f32>, hp: &OptimHp, step: u64) {
        self.radam_step_impl(p, g, m, v, hp, step);
    }
    fn ema(&self, src: CudaView<'_, f32>, dst: CudaViewMut<'_, f32>, decay: f64) {
        self.ema_impl(src, dst, decay);
    }
    fn sum_squares(&self, x: CudaView<'_, f32>) -> f64 {
        self.sum_squares_impl(x)
    }
    fn scale(&self, x: CudaViewMut<'_, f32>, s: f64) {
        self.scale_impl(x, s);
    }
    fn zero_non_finite(&self, x: CudaViewMut<'_, f32>) {
        self.zero_non_finite_impl(x);
    }
}
