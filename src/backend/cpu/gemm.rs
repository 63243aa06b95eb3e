//! GEMM on the CPU: the `gemm` crate's kernels (AVX-512/AVX2/FMA chosen at run time),
//! parallelised by the crate itself inside the backend's rayon pool, so packed operands
//! are shared between threads instead of being re-packed per block.
//!
//! Thread-count independence: the crate chooses its kernel and k-blocking from the
//! product's shape alone and splits only the m/n loops between threads, so every
//! element is accumulated in the same order for any number of threads (checked by the
//! test below over the stride patterns the model uses).

use super::Elem;

/// Products smaller than this many multiply-adds run on one thread.
const PARALLEL_WORK: usize = 1 << 17;

/// [`matmul`] on the calling thread only (for callers that already run in parallel).
pub fn matmul_seq<T: Elem>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    rsa: usize,
    csa: usize,
    b: &[T],
    rsb: usize,
    csb: usize,
    beta: T,
    c: &mut [T],
    rsc: usize,
    csc: usize,
) {
    gemm_on(1, m, k, n, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
}

/// C[m, n] = A[m, k] · B[k, n] + β·C with explicit strides (in elements), on every
/// thread of the current pool when the product is large enough.
///
/// `a`, `b`, `c` are the slices the strided matrices live in; every index the strides
/// reach must lie inside them (checked; a violation panics rather than reading out of bounds).
pub fn matmul<T: Elem>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    rsa: usize,
    csa: usize,
    b: &[T],
    rsb: usize,
    csb: usize,
    beta: T,
    c: &mut [T],
    rsc: usize,
    csc: usize,
) {
    let threads = if m * n * k.max(1) < PARALLEL_WORK { 1 } else { rayon::current_num_threads() };
    gemm_on(threads, m, k, n, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
}

fn gemm_on<T: Elem>(
    threads: usize,
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    rsa: usize,
    csa: usize,
    b: &[T],
    rsb: usize,
    csb: usize,
    beta: T,
    c: &mut [T],
    rsc: usize,
    csc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len(), "gemm: A out of bounds");
    assert!(k == 0 || (k - 1) * rsb + (n - 1) * csb < b.len(), "gemm: B out of bounds");
    assert!((m - 1) * rsc + (n - 1) * csc < c.len(), "gemm: C out of bounds");
    // SAFETY: the strides address only elements inside `a`, `b`, `c` (checked above),
    // and `c` is exclusively borrowed.
    unsafe {
        T::gemm(
            threads,
            m,
            k,
            n,
            T::one(),
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn bit_identical_for_any_thread_count() {
        for &(m, k, n) in &[
            (300, 1536, 70),
            (70, 600, 300),
            (65, 700, 64),
            (256, 1024, 64),
            (2, 1536, 384),
            (192, 16, 128),
            (3, 256, 128),
            (192, 128, 384),
            (192, 128, 512),
            (192, 512, 128),
            (3, 128, 768),
            (192, 128, 16),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729 % 997) as f32 / 997.0) - 0.5).collect();
            // Stride patterns of the model: A row- or column-major, B row- or column-major.
            for (rsa, csa, rsb, csb) in [(k, 1, 1, k), (1, m, n, 1), (k, 1, n, 1), (1, m, 1, k)] {
                let runs: Vec<Vec<f32>> = [1, 2, 3, 5]
                    .iter()
                    .map(|&th| {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(th).build().unwrap();
                        let mut c = vec![0f32; m * n];
                        pool.install(|| matmul(m, k, n, &a, rsa, csa, &b, rsb, csb, 0.0, &mut c, n, 1));
                        c
                    })
                    .collect();
                for (i, r) in runs[1..].iter().enumerate() {
                    assert!(
                        r == &runs[0],
                        "{m}x{k}x{n} strides {:?} differs with {} threads",
                        (rsa, csa, rsb, csb),
                        [2, 3, 5][i]
                    );
                }
            }
        }
    }

    #[test]
    fn matches_naive_for_odd_shapes_and_any_split() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for &(m, k, n) in &[(1, 1, 1), (7, 13, 5), (67, 31, 129), (3, 200, 700), (130, 2, 3)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 17 % 7) as f64) - 3.0).collect();
            let mut c = vec![0.0; m * n];
            pool.install(|| matmul(m, k, n, &a, k, 1, &b, n, 1, 0.0, &mut c, n, 1));
            assert_eq!(c, naive(m, k, n, &a, &b), "{m}x{k}x{n}");
        }
    }
}
