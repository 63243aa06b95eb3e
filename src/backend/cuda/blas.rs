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

use super::CudaBackend;

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

impl CudaBackend {
    /// Row-major C[m×n] = α·op(A)·op(B) + β·C (single product). Records any error.
    pub(super) fn gemm(&self, op_a: Op, op_b: Op, m: usize, n: usize, k: usize, alpha: f32, a: Mat, b: Mat, beta: f32, c: Mat) {
        let one = MatGrid { ptr: 0, ld: 0, sb: 0, sh: 0 };
        let g = |x: Mat| MatGrid { ptr: x.ptr, ld: x.ld, ..one };
        self.gemm_grid(op_a, op_b, m, n, k, alpha, g(a), g(b), beta, g(c), 1, 1);
    }

    /// Row-major products for every (b, h) in nb × nh: C_bh = α·op(A_bh)·op(B_bh) + β·C_bh,
    /// as strided-batched sgemm calls batched over whichever of b and h is larger.
    pub(super) fn gemm_grid(
        &self,
        op_a: Op,
        op_b: Op,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: MatGrid,
        b: MatGrid,
        beta: f32,
        c: MatGrid,
        nb: usize,
        nh: usize,
    ) {
        if m == 0 || n == 0 || nb == 0 || nh == 0 || self.failed() || !self.bind() {
            return;
        }
        let r = (|| -> Result<(), String> {
            let (mi, ni, ki) = (int("m", m)?, int("n", n)?, int("k", k)?);
            // Leading dimensions must be ≥ 1 even for empty operands.
            let (lda, ldb, ldc) = (int("lda", a.ld.max(1))?, int("ldb", b.ld.max(1))?, int("ldc", c.ld.max(1))?);
            let (outer, batch, a_out, b_out, c_out, a_in, b_in, c_in) = if nb >= nh {
                (nh, nb, a.sh, b.sh, c.sh, a.sb, b.sb, c.sb)
            } else {
                (nb, nh, a.sb, b.sb, c.sb, a.sh, b.sh, c.sh)
            };
            let batch_i = int("batch", batch)?;
            let blas = self.s.blas.lock().unwrap_or_else(|p| p.into_inner());
            let handle = *blas.as_ref().ok_or("cuBLAS handle already released")?.handle();
            for o in 0..outer {
                let pa = Self::off(a.ptr, o * a_out) as *const f32;
                let pb = Self::off(b.ptr, o * b_out) as *const f32;
                let pc = Self::off(c.ptr, o * c_out) as *mut f32;
                // SAFETY: the calling op checked that every addressed element lies inside
                // its views; alpha and beta are host scalars (the handle's default
                // pointer mode).
                let res = unsafe {
                    if batch == 1 {
                        cublas_result::sgemm(handle, op_b.cublas(), op_a.cublas(), ni, mi, ki, &alpha, pb, ldb, pa, lda, &beta, pc, ldc)
                    } else {
                        cublas_result::sgemm_strided_batched(
                            handle,
                            op_b.cublas(),
                            op_a.cublas(),
                            ni,
                            mi,
                            ki,
                            &alpha,
                            pb,
                            ldb,
                            b_in as i64,
                            pa,
                            lda,
                            a_in as i64,
                            &beta,
                            pc,
                            ldc,
                            c_in as i64,
                            batch_i,
                        )
                    }
                };
                res.map_err(|e| format!("cuBLAS sgemm ({m}×{n}×{k}, batch {batch}): {e}"))?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            self.fail(e);
        }
    }
}
