//! Parallel GEMM: matrixmultiply kernels, single-threaded, run on blocks of output rows
//! (or of output columns when there are few rows) inside the backend's rayon pool.
//! Each output element is computed by the same kernel sequence whatever the blocking,
//! so results do not depend on the thread count.

use rayon::prelude::*;

use super::Elem;

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// C[m, n] = A[m, k] · B[k, n] + β·C with explicit strides (in elements).
///
/// `a`, `b`, `c` are the slices the strided matrices live in; every index the strides
/// reach must lie inside them (checked in debug builds).
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
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len());
    debug_assert!(k == 0 || (k - 1) * rsb + (n - 1) * csb < b.len());
    debug_assert!((m - 1) * rsc + (n - 1) * csc < c.len());
    let (ap, bp, cp) = (a.as_ptr() as usize, b.as_ptr() as usize, SendPtr(c.as_mut_ptr()));
    let run = move |r0: usize, r1: usize, c0: usize, c1: usize| unsafe {
        let a0 = (ap as *const T).add(r0 * rsa);
        let b0 = (bp as *const T).add(c0 * csb);
        let cp = cp;
        let c00 = cp.0.add(r0 * rsc + c0 * csc);
        T::gemm(
            r1 - r0,
            k,
            c1 - c0,
            T::one(),
            a0,
            rsa as isize,
            csa as isize,
            b0,
            rsb as isize,
            csb as isize,
            beta,
            c00,
            rsc as isize,
            csc as isize,
        );
    };
    let threads = rayon::current_num_threads();
    let work = m * n * k.max(1);
    if threads <= 1 || work < 1 << 15 {
        run(0, m, 0, n);
        return;
    }
    let tasks = threads * 4;
    if m >= 64 || m >= n {
        let chunk = m.div_ceil(tasks).max(16).next_multiple_of(8);
        let blocks: Vec<usize> = (0..m).step_by(chunk).collect();
        blocks.into_par_iter().for_each(|r0| run(r0, (r0 + chunk).min(m), 0, n));
    } else {
        let chunk = n.div_ceil(tasks).max(64).next_multiple_of(16);
        let blocks: Vec<usize> = (0..n).step_by(chunk).collect();
        blocks.into_par_iter().for_each(|c0| run(0, m, c0, (c0 + chunk).min(n)));
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
