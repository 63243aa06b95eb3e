//! GEMM on the CPU: the `gemm` crate's kernels (AVX-512/AVX2/FMA chosen at run time),
//! inside the backend's rayon pool. [`matmul`] lets the crate parallelise a product
//! itself, so packed operands are shared between threads instead of being re-packed per
//! block (the better choice for small products); [`matmul_tiled`] splits large ones into
//! output tiles (below).
//!
//! Thread-count independence: the crate chooses its kernel and k-blocking from the
//! product's shape alone and splits only the m/n loops between threads, so every
//! element is accumulated in the same order for any number of threads (checked by the
//! test below over the stride patterns the model uses).
//!
//! [`matmul_tiled`] (the Linears' products) splits a large product into output tiles
//! instead, each computed by the crate on one thread, with an optional epilogue (bias,
//! GELU) applied to the tile right after its product, while it is still in cache. On the
//! 2-core AVX2 EPYC this ran the SiT-S/2 batch-8 products 4–21% faster than the crate's
//! own threading (`examples/gemm_tiles.rs`): the crate synchronises all threads twice per
//! k-block (after packing B, after the block), and one slow core then holds the other;
//! independent tiles only meet at the end. The tiling may follow the thread count: the
//! crate's k-blocking depends on k and the cache sizes only, and every element is one
//! register accumulation per k-block, so a tile's elements get the same bits as in the
//! whole product (checked by the thread-count test below).
//!
//! A row vector times a row-major matrix (the Linears at batch 1, e.g. the adaLN
//! modulation) is one memory-bound pass the crate keeps on one thread; [`matmul`] splits it
//! into column chunks, one per thread, with the same bits (`row_vector_chunks`).

use rayon::prelude::*;

use super::Elem;

/// Products smaller than this many multiply-adds run on one thread.
pub(super) const PARALLEL_WORK: usize = 1 << 17;

/// Products with at least this many multiply-adds are split into tiles by
/// [`matmul_tiled`]; smaller ones (SiT-S/2 at batch 1: 1.5·10⁸) gained from the crate's
/// shared packing instead.
pub const TILE_WORK: usize = 1 << 28;

/// [`matmul_tiled`] makes at least as many tiles as a grid of tiles this size would have
/// (the tiles' shape then comes from the count: 512×1536, 1024×768 or 512×768 tiles of the
/// S/2 batch-8 products ran within 3% of each other, all 5–16% ahead of the crate's
/// threading).
const TILE_ROWS: usize = 512;
const TILE_COLS: usize = 1536;

/// An epilogue of [`matmul_tiled`]: called once per output row segment after its tile's
/// product, with the row index, the first column, and the segment (contiguous columns).
pub type Epilogue<'a, T> = &'a (dyn Fn(usize, usize, &mut [T]) + Sync);

/// Raw output pointer shared by tile tasks (each writes only its own tile).
#[derive(Clone, Copy)]
pub(super) struct OutPtr<T>(pub(super) *mut T);
unsafe impl<T> Send for OutPtr<T> {}
unsafe impl<T> Sync for OutPtr<T> {}
impl<T> OutPtr<T> {
    /// The pointer (a method, so closures capture the `Send` wrapper, not the field).
    pub(super) fn get(self) -> *mut T {
        self.0
    }
}

/// (tile rows, tile columns) for an `m`×`n` output on `threads` threads: the tile count
/// is the smallest multiple of `threads` (so every thread gets as many tiles) at or above
/// the number of 512×1536 tiles (`TILE_ROWS`×`TILE_COLS`) the output holds, and of the splits
/// into that many whole tiles the one with the squarest tiles (rows split first on a
/// tie).
pub fn tile_shape(m: usize, n: usize, threads: usize) -> (usize, usize) {
    let threads = threads.max(1);
    let base = m.div_ceil(TILE_ROWS) * n.div_ceil(TILE_COLS);
    let count = base.max(threads).div_ceil(threads) * threads;
    let mut best: Option<(f64, usize, usize)> = None;
    for col_splits in 1..=count {
        if !count.is_multiple_of(col_splits) {
            continue;
        }
        let row_splits = count / col_splits;
        if row_splits > m || col_splits > n {
            continue;
        }
        let (tr, tc) = (m.div_ceil(row_splits), n.div_ceil(col_splits));
        // Whole tiles only: a split that leaves an empty tile is not that many tiles.
        if m.div_ceil(tr) != row_splits || n.div_ceil(tc) != col_splits {
            continue;
        }
        // Tiles the crate would treat as a small product (its own k-blocking up to 64×64,
        // matrix-vector kernels for one row or column) could round differently from the
        // whole product: never made unless the whole product is one of them.
        if (tr <= 64 && tc <= 64 && (m > 64 || n > 64)) || (tr < 2 && m >= 2) || (tc < 2 && n >= 2) {
            continue;
        }
        let aspect = (tr as f64 / tc as f64).max(tc as f64 / tr as f64);
        if best.is_none_or(|(a, _, _)| aspect < a) {
            best = Some((aspect, tr, tc));
        }
    }
    best.map_or((m, n), |(_, tr, tc)| (tr, tc))
}

/// Multiply-adds of an m×k by k×n product (k counted as at least 1), saturating.
pub(super) fn work(m: usize, k: usize, n: usize) -> usize {
    m.saturating_mul(n).saturating_mul(k.max(1))
}

/// Panics unless every element the strides reach in A [m, k] and B [k, n] lies inside
/// their slices (of `a_len`, `b_len` elements); m, n ≥ 1.
#[allow(clippy::too_many_arguments)]
fn check_operands(m: usize, k: usize, n: usize, a_len: usize, rsa: usize, csa: usize, b_len: usize, rsb: usize, csb: usize) {
    assert!(k == 0 || (m - 1) * rsa + (k - 1) * csa < a_len, "gemm: A out of bounds");
    assert!(k == 0 || (k - 1) * rsb + (n - 1) * csb < b_len, "gemm: B out of bounds");
}

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
    let threads = if work(m, k, n) < PARALLEL_WORK { 1 } else { rayon::current_num_threads() };
    gemm_on(threads, m, k, n, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
}

/// [`matmul`] for the Linears: products of at least [`TILE_WORK`] multiply-adds run as
/// independent tiles ([`tile_shape`]), one per task, each followed by `epilogue` on its
/// rows; smaller ones run as one parallel product followed by the epilogue over the rows
/// in parallel. The results are the same for any thread count (see the module doc). C is
/// row-major with row stride `ldc` (ldc ≥ n).
#[allow(clippy::too_many_arguments)]
pub fn matmul_tiled<T: Elem>(
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
    ldc: usize,
    epilogue: Option<Epilogue<'_, T>>,
) {
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    if threads < 2 || work(m, k, n) < TILE_WORK || (m <= 64 && n <= 64) {
        matmul(m, k, n, a, rsa, csa, b, rsb, csb, beta, c, ldc, 1);
        if let Some(epi) = epilogue {
            // Whole rows per task; when there is more than one task, as many tasks per
            // thread (256 GELU rows of 1536 had been cut 85/85/85/1, so one of two
            // threads did twice the other's share).
            let tasks = match m.saturating_mul(n) / PARALLEL_WORK {
                0 => 1,
                t => t.div_ceil(threads) * threads,
            };
            let rows_per_task = m.div_ceil(tasks.min(m));
            c[..(m - 1) * ldc + n].par_chunks_mut(rows_per_task * ldc).enumerate().for_each(|(ci, block)| {
                for (r, row) in block.chunks_mut(ldc).enumerate() {
                    epi(ci * rows_per_task + r, 0, &mut row[..n]);
                }
            });
        }
        return;
    }
    check_operands(m, k, n, a.len(), rsa, csa, b.len(), rsb, csb);
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "gemm: C out of bounds");
    let (tr, tc) = tile_shape(m, n, threads);
    let col_tiles = n.div_ceil(tc);
    let out = OutPtr(c.as_mut_ptr());
    (0..m.div_ceil(tr) * col_tiles).into_par_iter().for_each(|tile| {
        let (r0, c0) = ((tile / col_tiles) * tr, (tile % col_tiles) * tc);
        let (rows, cols) = (tr.min(m - r0), tc.min(n - c0));
        // SAFETY: A, B and C are in bounds (checked above: the tile lies inside the
        // product), and tiles are disjoint, so no two tasks write the same element.
        unsafe {
            T::gemm(
                1,
                rows,
                k,
                cols,
                T::one(),
                a.as_ptr().add(r0 * rsa),
                rsa as isize,
                csa as isize,
                b.as_ptr().add(c0 * csb),
                rsb as isize,
                csb as isize,
                beta,
                out.get().add(r0 * ldc + c0),
                ldc as isize,
                1,
            );
            if let Some(epi) = epilogue {
                for r in r0..r0 + rows {
                    epi(r, c0, std::slice::from_raw_parts_mut(out.get().add(r * ldc + c0), cols));
                }
            }
        }
    });
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
    check_operands(m, k, n, a.len(), rsa, csa, b.len(), rsb, csb);
    assert!((m - 1) * rsc + (n - 1) * csc < c.len(), "gemm: C out of bounds");
    if threads > 1 && m == 1 && k > 2 && csb == 1 && csc == 1 && n >= 2 * ROW_VECTOR_ALIGN {
        row_vector_chunks(threads, k, n, a, csa, b, rsb, beta, c);
        return;
    }
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

/// Column chunks of [`row_vector_chunks`] start at multiples of this many columns (the
/// widest SIMD vector of f32, AVX-512).
const ROW_VECTOR_ALIGN: usize = 16;

/// c[1, n] = a[1, k] · B[k, n] + β·c for a row-major B (unit column stride), split into one
/// column chunk per thread. The crate runs a row vector times a matrix on one thread
/// whatever it is asked (an axpy of B's rows per k, vectorised along n): a memory-bound
/// pass over the whole weight, e.g. each block's adaLN modulation at batch 1, 3.5 MB for
/// SiT-S/2 and 32 MB for XL/2. Each chunk is that same kernel on fewer columns, and an
/// output element's sum does not depend on the chunk it lies in as long as chunks start
/// at multiples of the vector width (the tail past the last whole vector is then the
/// same columns), so the bits are those of the single call for any thread count (tested).
#[allow(clippy::too_many_arguments)]
fn row_vector_chunks<T: Elem>(
    threads: usize,
    k: usize,
    n: usize,
    a: &[T], /* [1, k], column stride csa */
    csa: usize,
    b: &[T], /* [k, n], row stride rsb, unit column stride */
    rsb: usize,
    beta: T,
    c: &mut [T], /* [1, n] */
) {
    let chunk = n.div_ceil(threads).div_ceil(ROW_VECTOR_ALIGN) * ROW_VECTOR_ALIGN;
    c[..n].par_chunks_mut(chunk).enumerate().for_each(|(i, out)| {
        let c0 = i * chunk;
        // SAFETY: the caller checked that A [1, k] and B [k, n] lie inside `a` and `b`;
        // columns c0..c0 + out.len() are inside B's n columns, and `out` is this task's
        // own part of C.
        unsafe {
            T::gemm(
                1,
                1,
                k,
                out.len(),
                T::one(),
                a.as_ptr(),
                1,
                csa as isize,
                b.as_ptr().add(c0),
                rsb as isize,
                1,
                beta,
                out.as_mut_ptr(),
                out.len() as isize,
                1,
            );
        }
    });
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

    /// `len` values in [−0.5, 0.5) from a multiplicative sequence modulo `modulus`.
    fn operand(len: usize, step: usize, modulus: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * step % modulus) as f32 / modulus as f32) - 0.5).collect()
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
            let a: Vec<f32> = operand(m * k, 7919, 1013);
            let b: Vec<f32> = operand(k * n, 104729, 997);
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

    /// A row vector times a row-major matrix, split into column chunks, has the bits of
    /// the crate's single-threaded call (for widths with and without a vector tail, and
    /// for β ≠ 0), and equals the naive sum.
    #[test]
    fn row_vector_products_are_bit_identical_for_any_thread_count() {
        for &(k, n, beta) in &[
            (384, 2304, 0.0f32),
            (384, 1000, 0.0),
            (256, 385, 0.5),
            (3, 77, 0.0),
            (1152, 6912, 1.0),
            (40, 33, 0.0),
        ] {
            let a: Vec<f32> = operand(k, 7919, 1013);
            let b: Vec<f32> = operand(k * n, 104729, 997);
            let c0: Vec<f32> = (0..n).map(|j| j as f32 * 1e-2).collect();
            let mut want = c0.clone();
            gemm_on(1, 1, k, n, &a, k, 1, &b, n, 1, beta, &mut want, n, 1);
            let exact: Vec<f64> = (0..n)
                .map(|j| (0..k).map(|p| a[p] as f64 * b[p * n + j] as f64).sum::<f64>() + beta as f64 * c0[j] as f64)
                .collect();
            for (w, e) in want.iter().zip(&exact) {
                assert!((*w as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "{w} vs {e}");
            }
            for th in [2, 3, 4, 7] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(th).build().unwrap();
                let mut c = c0.clone();
                pool.install(|| gemm_on(th, 1, k, n, &a, k, 1, &b, n, 1, beta, &mut c, n, 1));
                assert!(c == want, "1x{k}x{n} beta {beta} on {th} threads");
            }
        }
    }

    #[test]
    fn tiles_cover_the_output_evenly() {
        // The SiT-S/2 batch-8 shapes on 2 threads: outputs, then weight gradients.
        assert_eq!(tile_shape(2048, 1536, 2), (1024, 768));
        assert_eq!(tile_shape(2048, 384, 2), (512, 384));
        assert_eq!(tile_shape(1536, 384, 2), (384, 384));
        assert_eq!(tile_shape(384, 1536, 2), (384, 768));
        assert_eq!(tile_shape(384, 384, 2), (192, 384));
        for &(m, n) in &[(2048, 1536), (7, 3000), (3000, 7), (65, 65), (1, 5000), (100, 1), (999, 1001)] {
            for threads in [1, 2, 3, 4, 7, 16] {
                let (tr, tc) = tile_shape(m, n, threads);
                assert!(tr >= 1 && tc >= 1 && tr <= m && tc <= n, "{m}x{n} on {threads}: {tr}x{tc}");
                let count = m.div_ceil(tr) * n.div_ceil(tc);
                assert!(count == 1 || count % threads == 0, "{m}x{n} on {threads}: {count} tiles");
                assert!(!(tr <= 64 && tc <= 64) || (m <= 64 && n <= 64) || count == 1, "{m}x{n} on {threads}: {tr}x{tc}");
            }
        }
    }

    /// The tiled product (with an epilogue) gives the same bits for any thread count and
    /// equals the crate's whole product followed by the epilogue.
    #[test]
    fn tiled_is_bit_identical_for_any_thread_count_and_equals_the_whole_product() {
        for &(m, k, n) in &[(1024, 512, 520), (520, 1300, 400), (300, 2048, 450)] {
            assert!(m * k * n >= TILE_WORK, "large enough to tile");
            let a: Vec<f32> = operand(m * k, 7919, 1013);
            let b: Vec<f32> = operand(k * n, 104729, 997);
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 1e-3).collect();
            let epi = |_: usize, c0: usize, row: &mut [f32]| {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (*v + bias[c0 + j]).max(0.0);
                }
            };
            for (rsa, csa, rsb, csb) in [(k, 1, n, 1), (1, m, 1, k)] {
                let mut want = vec![0f32; m * n];
                let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
                one.install(|| matmul(m, k, n, &a, rsa, csa, &b, rsb, csb, 0.0, &mut want, n, 1));
                want.iter_mut().enumerate().for_each(|(i, v)| *v = (*v + bias[i % n]).max(0.0));
                for th in [1, 2, 3, 4, 6] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(th).build().unwrap();
                    let mut c = vec![f32::NAN; m * n];
                    pool.install(|| matmul_tiled(m, k, n, &a, rsa, csa, &b, rsb, csb, 0.0, &mut c, n, Some(&epi)));
                    assert!(c == want, "{m}x{k}x{n} strides {:?} on {th} threads", (rsa, csa, rsb, csb));
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
