//! Row-major matrix products through cuBLAS (column-major) sgemm.
//!
//! A row-major matrix with row stride `ld` is, read column-major, its transpose with the
//! same leading dimension. So the row-major C[m×n] = op(A)[m×k]·op(B)[k×n] is computed as
//! the column-major Cᵀ[n×m] = op(B)ᵀ·op(A)ᵀ: cuBLAS gets (opB, opA, n, m, k, B, A) and
//! the same transpose flags. Operands are device addresses plus leading dimensions (in
//! elements), so products can read strided sub-matrices in place (one head's columns of
//! `qkv`, for instance).
//!
//! Math mode: `CUBLAS_DEFAULT_MATH` (true f32) unless TF32 is asked for, in which case
//! `CUBLAS_TF32_TENSOR_OP_MATH`.

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t};
use cudarc::cublas::{result as cublas_result, sys as cublas_sys, CudaBlas};

use cudarc::driver::CudaSlice;

use super::launch::{elems as elems_cfg, i, Arg};
use super::{CudaBackend, Kernel};

/// Whether an operand is used as stored or transposed (in the row-major sense).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    N,
    T,
}

impl Op {
    fn cublas(self) -> cublasOperation_t {
        match self {
            Op::N => cublasOperation_t::CUBLAS_OP_N,
            Op::T => cublasOperation_t::CUBLAS_OP_T,
        }
    }
}

/// A row-major operand: device address and row stride (elements).
#[derive(Clone, Copy, Debug)]
pub(super) struct Mat {
    pub ptr: u64,
    pub ld: usize,
}

/// A grid of operands indexed by (image b, head h): the matrix of (b, h) starts
/// `b·sb + h·sh` elements past `ptr`.
#[derive(Clone, Copy, Debug)]
pub(super) struct MatGrid {
    pub ptr: u64,
    pub ld: usize,
    pub sb: usize,
    pub sh: usize,
}

/// Sets the handle's math mode (TF32 tensor cores only when asked for).
pub(super) fn set_math_mode(blas: &CudaBlas, tf32: bool) -> Result<(), String> {
    let mode = if tf32 {
        cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
    } else {
        cublasMath_t::CUBLAS_DEFAULT_MATH
    };
    // SAFETY: the handle is valid for the life of `blas`.
    unsafe { cublas_sys::cublasSetMathMode(*blas.handle(), mode) }
        .result()
        .map_err(|e| format!("cublasSetMathMode: {e}"))
}

fn int(what: &str, v: usize) -> Result<i32, String> {
    i32::try_from(v).map_err(|_| format!("{what} = {v} exceeds cuBLAS's 32-bit sizes"))
}

/// One row-major product family: C_bh = op(A_bh)·op(B_bh) for every (b, h) in nb × nh.
/// A single product is the grid 1 × 1.
#[derive(Clone, Copy, Debug)]
pub(super) struct Product {
    pub op_a: Op,
    pub op_b: Op,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: MatGrid,
    pub b: MatGrid,
    pub c: MatGrid,
    pub nb: usize,
    pub nh: usize,
}

impl Product {
    /// A single row-major product C[m×n] = op(A)·op(B).
    pub fn single(op_a: Op, op_b: Op, m: usize, n: usize, k: usize, a: Mat, b: Mat, c: Mat) -> Self {
        let g = |x: Mat| MatGrid {
            ptr: x.ptr,
            ld: x.ld,
            sb: 0,
            sh: 0,
        };
        Product {
            op_a,
            op_b,
            m,
            n,
            k,
            a: g(a),
            b: g(b),
            c: g(c),
            nb: 1,
            nh: 1,
        }
    }
}

/// One cuBLAS call, in cuBLAS's column-major terms (addresses in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CublasCall {
    pub transa: Op,
    pub transb: Op,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub a: u64,
    pub lda: i32,
    pub stride_a: i64,
    pub b: u64,
    pub ldb: i32,
    pub stride_b: i64,
    pub c: u64,
    pub ldc: i32,
    pub stride_c: i64,
    pub batch: i32,
}

/// The cuBLAS calls computing a [`Product`]: Cᵀ = op(B)ᵀ·op(A)ᵀ column-major, batched over
/// whichever of b and h is larger, one call per value of the other. Empty if there is
/// nothing to compute; Err if a size exceeds cuBLAS's 32-bit arguments.
pub(super) fn plan(p: &Product) -> Result<Vec<CublasCall>, String> {
    if p.m == 0 || p.n == 0 || p.nb == 0 || p.nh == 0 {
        return Ok(Vec::new());
    }
    let (m, n, k) = (int("n", p.n)?, int("m", p.m)?, int("k", p.k)?);
    // Leading dimensions must be ≥ 1 even for empty operands.
    let (lda, ldb, ldc) = (int("ldb", p.b.ld.max(1))?, int("lda", p.a.ld.max(1))?, int("ldc", p.c.ld.max(1))?);
    let (outer, batch) = if p.nb >= p.nh { (p.nh, p.nb) } else { (p.nb, p.nh) };
    // (offset per outer index, stride per batch index) of an operand.
    let split = |g: &MatGrid| if p.nb >= p.nh { (g.sh, g.sb) } else { (g.sb, g.sh) };
    let (a_out, a_in) = split(&p.b);
    let (b_out, b_in) = split(&p.a);
    let (c_out, c_in) = split(&p.c);
    let batch_i = int("batch", batch)?;
    Ok((0..outer)
        .map(|o| CublasCall {
            transa: p.op_b,
            transb: p.op_a,
            m,
            n,
            k,
            a: CudaBackend::off(p.b.ptr, o * a_out),
            lda,
            stride_a: a_in as i64,
            b: CudaBackend::off(p.a.ptr, o * b_out),
            ldb,
            stride_b: b_in as i64,
            c: CudaBackend::off(p.c.ptr, o * c_out),
            ldc,
            stride_c: c_in as i64,
            batch: batch_i,
        })
        .collect())
}

/// Elements from an operand's first addressed element to its last, inclusive (0 if it
/// addresses none): the stored matrix is `rows × cols` (row-major, row stride `g.ld`) for
/// each of the `nb × nh` grid entries.
fn span(g: &MatGrid, rows: usize, cols: usize, nb: usize, nh: usize) -> usize {
    if rows == 0 || cols == 0 || nb == 0 || nh == 0 {
        return 0;
    }
    (nb - 1) * g.sb + (nh - 1) * g.sh + (rows - 1) * g.ld + cols
}

/// A bf16 copy of an operand's span: `f32_base` is the f32 operand's first element,
/// `bf16_base` the copy's; addresses map element for element.
#[derive(Clone, Copy, Debug)]
struct Bf16Copy {
    f32_base: u64,
    bf16_base: u64,
    elems: usize,
}

impl Bf16Copy {
    /// The bf16 address of the f32 element at `addr` (which lies in the span).
    fn map(&self, addr: u64) -> u64 {
        debug_assert!(addr >= self.f32_base && addr < self.f32_base + 4 * self.elems.max(1) as u64);
        self.bf16_base + (addr - self.f32_base) / 2
    }
}

/// How a product's A and B operands are stored: f32 (the default), or already bf16 (laid
/// out element for element like the f32 operand the [`MatGrid`] describes, 2 bytes each),
/// which only the bf16 mode reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Storage {
    pub a_bf16: bool,
    pub b_bf16: bool,
}

impl CudaBackend {
    /// C_bh = α·op(A_bh)·op(B_bh) + β·C_bh for every (b, h) of `p`, as sgemm /
    /// strided-batched sgemm calls ([`plan`]), or bf16 GEMMs in bf16 mixed precision.
    /// Records any error.
    pub(super) fn run_product(&self, p: &Product, alpha: f32, beta: f32) {
        self.run_product_stored(p, Storage::default(), alpha, beta);
    }

    /// [`run_product`](Self::run_product) with operands stored as `storage` says.
    pub(super) fn run_product_stored(&self, p: &Product, storage: Storage, alpha: f32, beta: f32) {
        if self.failed() {
            return;
        }
        let calls = match plan(p) {
            Ok(c) if c.is_empty() => return,
            Ok(c) => c,
            Err(e) => return self.fail(e),
        };
        if self.s.options.bf16 {
            return self.run_product_bf16(p, storage, &calls, alpha, beta);
        }
        if storage != Storage::default() {
            return self.fail("internal: bf16 operands passed to an f32 product");
        }
        if !self.bind() {
            return;
        }
        let blas = self.s.blas.lock().unwrap_or_else(|p| p.into_inner());
        let Some(handle) = blas.as_ref().map(|b| *b.handle()) else {
            drop(blas);
            return self.fail("cuBLAS handle already released");
        };
        for c in calls {
            // SAFETY: the calling op checked that every addressed element lies inside its
            // views; alpha and beta are host scalars (the handle's default pointer mode).
            let res = unsafe {
                if c.batch == 1 {
                    cublas_result::sgemm(
                        handle,
                        c.transa.cublas(),
                        c.transb.cublas(),
                        c.m,
                        c.n,
                        c.k,
                        &alpha,
                        c.a as *const f32,
                        c.lda,
                        c.b as *const f32,
                        c.ldb,
                        &beta,
                        c.c as *mut f32,
                        c.ldc,
                    )
                } else {
                    cublas_result::sgemm_strided_batched(
                        handle,
                        c.transa.cublas(),
                        c.transb.cublas(),
                        c.m,
                        c.n,
                        c.k,
                        &alpha,
                        c.a as *const f32,
                        c.lda,
                        c.stride_a,
                        c.b as *const f32,
                        c.ldb,
                        c.stride_b,
                        &beta,
                        c.c as *mut f32,
                        c.ldc,
                        c.stride_c,
                        c.batch,
                    )
                }
            };
            if let Err(e) = res {
                drop(blas);
                return self.fail(format!("cuBLAS sgemm ({}×{}×{}, batch {}): {e}", p.m, p.n, p.k, c.batch));
            }
        }
    }
}

impl CudaBackend {
    /// bf16 mixed-precision product: each f32 operand's span is rounded to a bf16 copy
    /// (kernel `f32_to_bf16`, stream-ordered temporaries; an operand already stored as
    /// bf16 is used in place), then each planned call runs as
    /// cublasGemmStridedBatchedEx with bf16 inputs, f32 output and f32
    /// accumulation (`CUBLAS_COMPUTE_32F`). A span may include elements the product does
    /// not read (the other heads' columns of `qkv`, say): they are converted too, which
    /// costs bandwidth but never correctness.
    fn run_product_bf16(&self, p: &Product, storage: Storage, calls: &[CublasCall], alpha: f32, beta: f32) {
        use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cudaDataType};
        let (rows_a, cols_a) = if p.op_a == Op::N { (p.m, p.k) } else { (p.k, p.m) };
        let (rows_b, cols_b) = if p.op_b == Op::N { (p.k, p.n) } else { (p.n, p.k) };
        // The bf16 view of one operand, converting it into `temp` unless it is bf16 already.
        let bf16_view = |g: &MatGrid, rows: usize, cols: usize, stored_bf16: bool, temp: &mut Option<CudaSlice<u16>>| -> Option<Bf16Copy> {
            let elems = span(g, rows, cols, p.nb, p.nh);
            if stored_bf16 {
                return Some(Bf16Copy {
                    f32_base: g.ptr,
                    bf16_base: g.ptr,
                    elems,
                });
            }
            let t = temp.insert(self.temp::<u16>(elems)?);
            let copy = Bf16Copy {
                f32_base: g.ptr,
                bf16_base: self.ptr(t),
                elems,
            };
            self.launch(
                Kernel::F32ToBf16,
                elems_cfg(elems),
                elems,
                &[Arg::P(copy.f32_base), Arg::P(copy.bf16_base), i(elems)],
            );
            Some(copy)
        };
        let (mut temp_a, mut temp_b) = (None, None);
        let Some(copy_a) = bf16_view(&p.a, rows_a, cols_a, storage.a_bf16, &mut temp_a) else {
            return;
        };
        let Some(copy_b) = bf16_view(&p.b, rows_b, cols_b, storage.b_bf16, &mut temp_b) else {
            return;
        };
        if !self.bind() || self.failed() {
            return;
        }
        let blas = self.s.blas.lock().unwrap_or_else(|p| p.into_inner());
        let Some(handle) = blas.as_ref().map(|b| *b.handle()) else {
            drop(blas);
            return self.fail("cuBLAS handle already released");
        };
        let (bf16, f32t) = (cudaDataType::CUDA_R_16BF, cudaDataType::CUDA_R_32F);
        let compute = cublasComputeType_t::CUBLAS_COMPUTE_32F;
        let algo = cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT;
        for c in calls {
            // The plan swaps the operands (Cᵀ = op(B)ᵀ·op(A)ᵀ): its `a` lies in B's span.
            let (a16, b16) = (copy_b.map(c.a), copy_a.map(c.b));
            let (al, be) = (&alpha as *const f32 as *const std::ffi::c_void, &beta as *const f32 as *const std::ffi::c_void);
            // SAFETY: a16 / b16 address the bf16 copies of spans the calling op checked
            // against its views; C is the f32 output the op checked; alpha and beta are
            // host f32 scalars, as CUBLAS_COMPUTE_32F requires.
            // Always the strided-batched form: batch 1 is a plain GEMM.
            let res = unsafe {
                cublas_result::gemm_strided_batched_ex(
                    handle,
                    c.transa.cublas(),
                    c.transb.cublas(),
                    c.m,
                    c.n,
                    c.k,
                    al,
                    a16 as *const _,
                    bf16,
                    c.lda,
                    c.stride_a,
                    b16 as *const _,
                    bf16,
                    c.ldb,
                    c.stride_b,
                    be,
                    c.c as *mut _,
                    f32t,
                    c.ldc,
                    c.stride_c,
                    c.batch,
                    compute,
                    algo,
                )
            };
            if let Err(e) = res {
                drop(blas);
                return self.fail(format!("cuBLAS bf16 gemm ({}×{}×{}, batch {}): {e}", p.m, p.n, p.k, c.batch));
            }
        }
        // The temporaries are freed in stream order after the GEMMs that read them.
        drop(blas);
        drop((temp_a, temp_b));
    }
}

/// Host emulation of the planned cuBLAS calls, for tests that check the GEMM plumbing
/// (transposes, leading dimensions, batch strides) without a GPU. Addresses are byte
/// offsets into `mem`.
#[cfg(test)]
pub(super) fn emulate(calls: &[CublasCall], alpha: f32, beta: f32, mem: &mut [f32]) {
    let at = |addr: u64| (addr / 4) as usize;
    for c in calls {
        for bi in 0..c.batch as usize {
            let (a0, b0, c0) = (
                at(c.a) + bi * c.stride_a as usize,
                at(c.b) + bi * c.stride_b as usize,
                at(c.c) + bi * c.stride_c as usize,
            );
            let (m, n, k) = (c.m as usize, c.n as usize, c.k as usize);
            let (lda, ldb, ldc) = (c.lda as usize, c.ldb as usize, c.ldc as usize);
            let mut out = vec![0f32; m * n];
            for j in 0..n {
                for i in 0..m {
                    let mut s = 0f64;
                    for p in 0..k {
                        let av = if c.transa == Op::N { mem[a0 + i + p * lda] } else { mem[a0 + p + i * lda] };
                        let bv = if c.transb == Op::N { mem[b0 + p + j * ldb] } else { mem[b0 + j + p * ldb] };
                        s += av as f64 * bv as f64;
                    }
                    let old = if beta == 0.0 { 0.0 } else { beta * mem[c0 + i + j * ldc] };
                    out[i + j * m] = alpha * s as f32 + old;
                }
            }
            for j in 0..n {
                for i in 0..m {
                    mem[c0 + i + j * ldc] = out[i + j * m];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major products through the plan and the column-major emulator equal naive
    /// row-major products, for every transpose combination and for padded strides.
    #[test]
    fn plan_computes_row_major_products() {
        let (m, n, k) = (5usize, 7usize, 3usize);
        for (op_a, op_b) in [(Op::N, Op::N), (Op::N, Op::T), (Op::T, Op::N), (Op::T, Op::T)] {
            // A stored [m, k] (N) or [k, m] (T) with row stride +2; B likewise.
            let (ar, ac) = if op_a == Op::N { (m, k) } else { (k, m) };
            let (br, bc) = if op_b == Op::N { (k, n) } else { (n, k) };
            let (lda, ldb, ldc) = (ac + 2, bc + 1, n + 3);
            let a_off = 0;
            let b_off = ar * lda;
            let c_off = b_off + br * ldb;
            let mut mem: Vec<f32> = (0..c_off + m * ldc).map(|i| ((i * 37 % 17) as f32) - 8.0).collect();
            let orig = mem.clone();
            let get_a = |i: usize, p: usize| {
                if op_a == Op::N {
                    orig[a_off + i * lda + p]
                } else {
                    orig[a_off + p * lda + i]
                }
            };
            let get_b = |p: usize, j: usize| {
                if op_b == Op::N {
                    orig[b_off + p * ldb + j]
                } else {
                    orig[b_off + j * ldb + p]
                }
            };
            let addr = |e: usize| (e * 4) as u64;
            let prod = Product::single(
                op_a,
                op_b,
                m,
                n,
                k,
                Mat { ptr: addr(a_off), ld: lda },
                Mat { ptr: addr(b_off), ld: ldb },
                Mat { ptr: addr(c_off), ld: ldc },
            );
            emulate(&plan(&prod).unwrap(), 1.0, 0.5, &mut mem);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| get_a(i, p) * get_b(p, j)).sum::<f32>() + 0.5 * orig[c_off + i * ldc + j];
                    assert_eq!(mem[c_off + i * ldc + j], want, "{op_a:?}{op_b:?} ({i}, {j})");
                }
                // Padding columns untouched.
                for j in n..ldc {
                    assert_eq!(mem[c_off + i * ldc + j], orig[c_off + i * ldc + j]);
                }
            }
        }
    }

    #[test]
    fn plan_batches_over_the_larger_index() {
        let g = |ptr: u64| MatGrid { ptr, ld: 8, sb: 100, sh: 10 };
        let p = Product {
            op_a: Op::N,
            op_b: Op::N,
            m: 2,
            n: 2,
            k: 2,
            a: g(0),
            b: g(4000),
            c: g(8000),
            nb: 5,
            nh: 2,
        };
        let calls = plan(&p).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[1].batch, calls[1].stride_c, calls[1].c), (5, 100, 8000 + 40));
        let calls = plan(&Product { nb: 2, nh: 5, ..p }).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[1].batch, calls[1].stride_c, calls[1].c), (5, 10, 8000 + 400));
        assert!(plan(&Product { m: 0, ..p }).unwrap().is_empty());
        assert!(plan(&Product { k: 1 << 31, ..p }).is_err());
    }
}
