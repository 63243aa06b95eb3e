//! The element types the CPU backend runs in: f32 (real work) and f64 (gradient checks).

use num_traits::Float;

/// A CPU element type with a GEMM.
pub trait Elem: Float + Send + Sync + Default + std::fmt::Debug + std::iter::Sum + crate::limits::ZeroBits + 'static {
    /// Converts from f64 (rounding for f32).
    fn of(x: f64) -> Self;
    /// Widens to f64.
    fn f64(self) -> f64;
    /// e^x: a vectorisable polynomial for f32 (≈1 ulp), exact `exp` for f64.
    fn fast_exp(self) -> Self;
    /// The slice as f32 when `Self` is f32 (the bf16 products run on f32 buffers only).
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    /// Mutable [`Elem::as_f32`].
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
    /// C = α·A·B + β·C with explicit row/column strides, on `threads` threads of the
    /// current rayon pool.
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping (for C) memory.
    unsafe fn gemm(
        threads: usize,
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

/// C = α·A·B + β·C through the `gemm` crate (single-threaded: the caller splits work).
/// The `gemm` crate (with its AVX-512 kernels) ran the SiT-S/2 forward ≈15% faster than
/// matrixmultiply side by side on this project's 2-core Zen 4 machines, and its own
/// parallel mode shares packed operands between threads.
#[allow(clippy::too_many_arguments)]
unsafe fn faer_gemm<T>(
    threads: usize,
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: *const T,
    rsa: isize,
    csa: isize,
    b: *const T,
    rsb: isize,
    csb: isize,
    beta: T,
    c: *mut T,
    rsc: isize,
    csc: isize,
) where
    T: 'static + Copy + num_traits::Zero + PartialEq,
{
    // gemm's convention: dst = α_g·dst + β_g·lhs·rhs, dst read only if `read_dst`.
    let read_dst = beta != T::zero();
    gemm::gemm(
        m,
        n,
        k,
        c,
        csc,
        rsc,
        read_dst,
        a,
        csa,
        rsa,
        b,
        csb,
        rsb,
        beta,
        alpha,
        false,
        false,
        false,
        if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        },
    )
}

impl Elem for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        super::vmath::exp_f32(self)
    }
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
    unsafe fn gemm(
        threads: usize,
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        faer_gemm(threads, m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Elem for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        self.exp()
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
    unsafe fn gemm(
        threads: usize,
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        faer_gemm(threads, m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}
