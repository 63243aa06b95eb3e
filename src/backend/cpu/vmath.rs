//! Vectorisable elementwise math for the CPU kernels.
//!
//! libm's scalar `expf`/`tanhf` cost as much as the whole rest of a DiT forward, so the
//! f32 path uses a branch-free Cody–Waite + degree-6 polynomial `exp` (Cephes
//! coefficients, ≈1 ulp on the clamped range) that LLVM vectorises, and expresses every
//! activation through it: GELU-tanh(x) = x·σ(2u) (since ½(1 + tanh u) = σ(2u)), SiLU(x) =
//! x·σ(x). f64 (the gradient-check path) uses the exact std functions.
//!
//! `cpu_dispatch!` runs a kernel body compiled for AVX-512F or AVX2+FMA when the CPU has
//! it (checked once at run time), else for the baseline target.

use super::Elem;

/// e^x for f32 with a polynomial; clamps to the finite range first.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // A NaN stays NaN in x (and so in the result), while n is computed from a copy in
    // which a NaN became a bound, so that n is always a whole number in [−126, 128].
    #[allow(clippy::manual_clamp)] // not clamp: a NaN must become a bound here
    let n = (x.max(-87.3).min(88.3) * LOG2E).round_ties_even();
    let x = x.clamp(-87.3, 88.3);
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n is a whole number in [−126, 128], so the unchecked conversion gives what
    // `as i32` would, and unlike `as` (which saturates and maps NaN to 0
    // element by element) it vectorises to one conversion instruction.
    // SAFETY: n is finite and well inside the i32 range.
    let ni = unsafe { n.to_int_unchecked::<i32>() };
    let scale = f32::from_bits(((ni + 127) << 23) as u32);
    er * scale
}

/// Whether the AVX-512F build of the kernels may run here.
#[inline]
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx512f") && has_avx2_fma())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX2+FMA build of the kernels may run here.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `$body` (an expression) inside a function compiled with AVX-512F, or with
/// AVX2+FMA, when the CPU supports it, else compiled for the baseline target. The three
/// builds compute the same values (Rust never contracts `a * b + c` into an FMA on its
/// own, and every reduction here has a fixed order), only with wider vectors.
#[macro_export]
#[doc(hidden)]
macro_rules! cpu_dispatch {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn fast512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fast<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if $crate::backend::cpu::vmath::has_avx512() {
                // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked above).
                unsafe { fast512(|| $body) }
            } else if $crate::backend::cpu::vmath::has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked above).
                unsafe { fast(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

/// σ(x) = 1 / (1 + e^(−x)) through the element type's fast exp.
#[inline(always)]
pub fn sigmoid<T: Elem>(x: T) -> T {
    T::one() / (T::one() + T::fast_exp(-x))
}

/// Sum of a slice with 8 independent accumulators (vectorisable; fixed order, so the
/// result is reproducible).
#[inline(always)]
pub fn sum<T: Elem>(x: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] = acc[k] + c[k];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in rest {
        s = s + v;
    }
    s
}

/// Σ f(xᵢ) with 8 accumulators (see [`sum`]).
#[inline(always)]
pub fn sum_map<T: Elem>(x: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] = acc[k] + f(c[k]);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in rest {
        s = s + f(v);
    }
    s
}

/// Σ aᵢ·bᵢ with 8 accumulators (see [`sum`]).
#[inline(always)]
pub fn dot<T: Elem>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::zero(); 8];
    let m = n / 8 * 8;
    for i in (0..m).step_by(8) {
        for k in 0..8 {
            acc[k] = acc[k] + a[i + k] * b[i + k];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for i in m..n {
        s = s + a[i] * b[i];
    }
    s
}

/// Maximum of a slice (8 lanes).
#[inline(always)]
pub fn max<T: Elem>(x: &[T]) -> T {
    let mut acc = [T::neg_infinity(); 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
        }
    }
    let mut m = acc.iter().copied().fold(T::neg_infinity(), |a, b| if b > a { b } else { a });
    for &v in rest {
        m = if v > m { v } else { m };
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let e = exp_f32(x) as f64;
            let r = (x as f64).exp();
            worst = worst.max(((e - r) / r).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1000.0) >= 0.0 && exp_f32(-1000.0) < 1e-37);
        assert!(exp_f32(1000.0).is_finite());
        // Non-finite inputs: NaN stays NaN, the infinities go to the clamped bounds.
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::INFINITY), exp_f32(88.3));
        assert_eq!(exp_f32(f32::NEG_INFINITY), exp_f32(-87.3));
    }

    /// The vectorising conversion of the exponent gives the bits of the saturating `as`
    /// conversion it replaced, over the whole clamped range and beyond.
    #[test]
    fn exponent_conversion_keeps_the_bits() {
        fn with_as(x: f32) -> f32 {
            let x = x.clamp(-87.3, 88.3);
            let n = (x * std::f32::consts::LOG2_E).round_ties_even();
            let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
            let mut p = 1.987_569_1e-4f32;
            p = p * r + 1.398_199_9e-3;
            p = p * r + 8.333_452e-3;
            p = p * r + 4.166_579_6e-2;
            p = p * r + 1.666_666_5e-1;
            p = p * r + 0.5;
            (p * r * r + r + 1.0) * f32::from_bits(((n as i32 + 127) << 23) as u32)
        }
        let mut x = -100.0f32;
        while x < 100.0 {
            assert_eq!(exp_f32(x).to_bits(), with_as(x).to_bits(), "{x}");
            x += 0.00731;
        }
    }

    #[test]
    fn reductions_match_naive() {
        let x: Vec<f64> = (0..37).map(|i| (i as f64 * 0.37).sin()).collect();
        let naive: f64 = x.iter().sum();
        assert!((sum(&x) - naive).abs() < 1e-12);
        assert!((dot(&x, &x) - x.iter().map(|v| v * v).sum::<f64>()).abs() < 1e-12);
        assert_eq!(max(&x), x.iter().copied().fold(f64::MIN, f64::max));
    }
}
