//! f32 inference products from Linear weights held as Wᵀ in 16-column panels, with an
//! AVX2 + FMA microkernel: the CPU's f32 inference weight form on x86-64 CPUs with AVX2
//! and FMA but without AVX-512 (those keep the `gemm` crate on the row-major Wᵀ, whose
//! AVX-512 kernels are twice as wide as this one; so does every other CPU).
//!
//! **Layout.** A Linear's W[o, i] is stored as Wᵀ = [i, o] cut into column panels:
//! ⌊o/16⌋ full panels `[i][16]`, then the last o mod 16 columns `[i][o mod 16]`. That is
//! o·i values, a permutation of W, so a model enters this form in place and leaves it
//! exactly ([`pack`], [`unpack`]).
//!
//! **Why.** The crate packs both operands into its own panel layout on every call, and
//! its threads meet after packing and after every k-block. With the weights already in
//! panels and the activations read in place, a product is one pass of independent tasks:
//! the SiT-S/2 batch-1 Linears (256 rows) ran 5–15% faster than the crate in isolation
//! (`examples/gemm_panels.rs`), more inside the model, where the crate's packing also
//! streamed the cold weights twice.
//!
//! **Microkernel.** Up to 6 rows × one 16-column panel: twelve 8-wide accumulators, two
//! panel vectors and one broadcast of the activation per k (BLIS's Haswell shape). A task
//! holds a block of rows and a group of panels; for each k-block it runs every panel over
//! every 6-row group of its block, so the panel's k-block (≤ 32 KiB) stays in L1 and the
//! activation block in L2.
//!
//! **Bits.** Every output element is accumulated exactly as the crate accumulates it for
//! the same product (f32, AVX2 + FMA kernels), so this form gives the same numbers as the
//! plain and row-major forms: within each of the crate's k-blocks one fused multiply-add
//! chain in k order from zero, the blocks' sums added to the output in order
//! ([`crate_k_block`]: the crate's `kernel_params`; one chain over all of k for a single
//! row, which the crate runs as a matrix-vector product). k ≤ 2 (the crate's
//! vector-vector path) and weights narrower than one panel run through the crate itself.
//! Every element is one kernel's work whatever the task split, so results are the same
//! for any number of threads (tests below).

use std::sync::OnceLock;

use rayon::prelude::*;

use super::gemm::{matmul, work, Epilogue, OutPtr, PARALLEL_WORK};

/// Columns per panel (two AVX2 vectors of f32).
pub const PANEL: usize = 16;
/// Rows of the microkernel.
const MR: usize = 6;
/// Activation bytes a task's row block holds per k-block (kept in L2 while every panel of
/// the task passes over it).
const ROW_BLOCK_BYTES: usize = 384 << 10;
/// At most this many panels per task (8 left one of two threads idle at the end of the
/// SiT-S/2 batch-1 products: fewer, larger tasks balance worse).
const MAX_PANELS_PER_TASK: usize = 4;

/// Whether this CPU runs the panel kernels: x86-64 with AVX2 and FMA and without AVX-512F
/// (detected once), unless `UCGM_CPU_PANELS=0` asks for the crate (for side-by-side
/// measurements).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var("UCGM_CPU_PANELS").is_ok_and(|v| v == "0") {
            return false;
        }
        detect()
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && !is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

/// (first column, width) of panel `p` of an o-column Wᵀ.
fn panel_cols(p: usize, o: usize) -> (usize, usize) {
    let c0 = p * PANEL;
    (c0, PANEL.min(o - c0))
}

/// W[o, i] → its panel form. w: [o·i]; dst: [o·i] (assign). Parallel over panels.
pub fn pack(w: &[f32], dst: &mut [f32], i: usize, o: usize) {
    assert!(
        w.len() >= o.saturating_mul(i) && dst.len() >= o.saturating_mul(i),
        "panel::pack: buffers shorter than o·i"
    );
    dst[..o * i].par_chunks_mut(PANEL * i.max(1)).enumerate().for_each(|(p, panel)| {
        let (c0, wd) = panel_cols(p, o);
        for (kk, row) in panel.chunks_exact_mut(wd).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = w[(c0 + j) * i + kk];
            }
        }
    });
}

/// Inverse of [`pack`]. src: [o·i] in panel form; w: [o·i] (assign). Parallel over rows of W.
pub fn unpack(src: &[f32], w: &mut [f32], i: usize, o: usize) {
    assert!(
        w.len() >= o.saturating_mul(i) && src.len() >= o.saturating_mul(i),
        "panel::unpack: buffers shorter than o·i"
    );
    w[..o * i].par_chunks_mut(i.max(1)).enumerate().for_each(|(col, row)| {
        let (c0, wd) = panel_cols(col / PANEL, o);
        let base = c0 * i + (col - c0);
        for (kk, v) in row.iter_mut().enumerate() {
            *v = src[base + kk * wd];
        }
    });
}

/// The length of the crate's k-blocks for an m-row product with o output columns (the
/// crate transposes it to o × m, so its "small product" test and `kernel_params` see
/// (o, m)). A single row is one chain over all of k (the crate's matrix-vector path).
pub fn crate_k_block(m: usize, k: usize, o: usize) -> usize {
    if m <= 1 {
        k
    } else if o <= 64 && m <= 64 {
        k.min(512)
    } else {
        // The crate's f32 AVX2 kernel: 16 × 6 (MR = 2 vectors of 8, NR = 6).
        gemm_common::cache::kernel_params(o, m, k, 16, 6, std::mem::size_of::<f32>()).kc.max(1)
    }
}

/// y[m, o] = x[m, i] · Wᵀ + b with W in panel form: `wpb` = [W in panels (o·i) | b (o)]
/// when `has_bias`; with `gelu`, GELU-tanh of that. The bias and GELU run on each task's
/// block right after its product (the same bits as separate passes).
/// x: [m, i]; y: [m, o] (assign).
#[allow(clippy::too_many_arguments)]
pub fn linear(x: &[f32], wpb: &[f32], has_bias: bool, gelu: bool, y: &mut [f32], m: usize, i: usize, o: usize) {
    let (w, bias) = wpb.split_at(o * i);
    let epilogue = |_: usize, c0: usize, row: &mut [f32]| {
        if has_bias {
            for (v, &b) in row.iter_mut().zip(&bias[c0..]) {
                *v += b;
            }
        }
        if gelu {
            super::activation::gelu_tanh_in_place(row);
        }
    };
    let epilogue = (has_bias || gelu).then_some(&epilogue as Epilogue<f32>);
    product(m, i, o, x, w, y, epilogue);
}

/// C[m, o] = A[m, k] · B with B = Wᵀ [k, o] in panel form, then `epilogue` on every
/// output row segment of each task's block. A and C row-major with row strides k and o.
/// a: [m·k]; b: [k·o]; c: [m·o] (assign).
#[allow(clippy::too_many_arguments)]
pub fn product(m: usize, k: usize, o: usize, a: &[f32], b: &[f32], c: &mut [f32], epilogue: Option<Epilogue<'_, f32>>) {
    if m == 0 || o == 0 {
        return;
    }
    // Saturating: an overflowing shape fails here instead of wrapping past the check.
    assert!(
        a.len() >= m.saturating_mul(k) && b.len() >= k.saturating_mul(o) && c.len() >= m.saturating_mul(o),
        "panel::product: operand shorter than its shape"
    );
    if k <= 2 || o < PANEL || !available() {
        return through_crate(m, k, o, a, b, c, epilogue);
    }
    let kc = crate_k_block(m, k, o);
    let panels = o.div_ceil(PANEL);
    let threads = if work(m, k, o) < PARALLEL_WORK { 1 } else { rayon::current_num_threads() };
    // Row blocks: whole 6-row groups whose k-block of activations fits ROW_BLOCK_BYTES.
    let rows_fit = (ROW_BLOCK_BYTES / (4 * kc.min(k))).max(MR) / MR * MR;
    let row_blocks = m.div_ceil(rows_fit);
    let rows_per_block = m.div_ceil(row_blocks).div_ceil(MR) * MR;
    let row_blocks = m.div_ceil(rows_per_block);
    // Panel groups: enough tasks for four per thread, at most MAX_PANELS_PER_TASK panels each.
    let groups_wanted = (4 * threads).div_ceil(row_blocks).min(panels);
    let panels_per_task = panels.div_ceil(groups_wanted.max(1)).clamp(1, MAX_PANELS_PER_TASK);
    let groups = panels.div_ceil(panels_per_task);
    let out = OutPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let (rb, g) = (t / groups, t % groups);
        let (r0, p0) = (rb * rows_per_block, g * panels_per_task);
        let (r1, p1) = ((r0 + rows_per_block).min(m), (p0 + panels_per_task).min(panels));
        // SAFETY: the operands are long enough (asserted above), the kernels stay inside
        // rows r0..r1 and panels p0..p1, and no two tasks share a (row, panel) block.
        unsafe { run_block(r0, r1, p0, p1, k, kc, o, a.as_ptr(), b.as_ptr(), out.get()) };
        if let Some(epi) = epilogue {
            let (c0, c1) = (p0 * PANEL, (p1 * PANEL).min(o));
            for r in r0..r1 {
                // SAFETY: this task's block, as above.
                epi(r, c0, unsafe { std::slice::from_raw_parts_mut(out.get().add(r * o + c0), c1 - c0) });
            }
        }
    };
    let tasks = row_blocks * groups;
    if threads == 1 {
        (0..tasks).for_each(task);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// The products the panel kernels do not take (k ≤ 2, W narrower than a panel, no AVX2):
/// the crate on each panel (a row-major [k, width] matrix), then the epilogue.
fn through_crate(m: usize, k: usize, o: usize, a: &[f32], b: &[f32], c: &mut [f32], epilogue: Option<Epilogue<'_, f32>>) {
    for p in 0..o.div_ceil(PANEL) {
        let (c0, wd) = panel_cols(p, o);
        let panel = &b[c0 * k..(c0 + wd) * k];
        matmul(m, k, wd, a, k, 1, panel, wd, 1, 0.0, &mut c[c0..], o, 1);
    }
    if let Some(epi) = epilogue {
        for (r, row) in c[..m * o].chunks_exact_mut(o).enumerate() {
            epi(r, 0, row);
        }
    }
}

/// Rows r0..r1 × panels p0..p1 of C = A · B, k-block by k-block.
///
/// # Safety
/// `a` holds m×k, `b` k×o in panel form, `c` m×o (row-major) values, r1 ≤ m, p1 ≤ ⌈o/16⌉,
/// and no other thread touches this block of C.
#[allow(clippy::too_many_arguments)]
unsafe fn run_block(r0: usize, r1: usize, p0: usize, p1: usize, k: usize, kc: usize, o: usize, a: *const f32, b: *const f32, c: *mut f32) {
    let mut k0 = 0;
    while k0 < k {
        let kb = kc.min(k - k0);
        for p in p0..p1 {
            let (c0, wd) = panel_cols(p, o);
            let panel = b.add(c0 * k + k0 * wd);
            let mut r = r0;
            while r < r1 {
                let rows = MR.min(r1 - r);
                let (ap, cp) = (a.add(r * k + k0), c.add(r * o + c0));
                kernel(rows, wd, kb, ap, k, panel, cp, o, k0 > 0);
                r += rows;
            }
        }
        k0 += kb;
    }
}

/// C[rows, wd] (=, or += when `add`) A[rows, kb] · P[kb, wd] for one panel P (row stride
/// wd ≤ 16), rows ≤ 6.
///
/// # Safety
/// As [`run_block`]; AVX2 and FMA available (checked by [`available`] before any call).
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(rows: usize, wd: usize, kb: usize, a: *const f32, lda: usize, p: *const f32, c: *mut f32, ldc: usize, add: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if wd == PANEL {
            avx2::rows::<true>(rows, kb, a, lda, p, wd, c, ldc, add)
        } else {
            avx2::rows::<false>(rows, kb, a, lda, p, wd, c, ldc, add)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, wd, kb, a, lda, p, c, ldc, add);
        unreachable!("the panel kernels run only where `available()` (x86-64)");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Lane masks for the first `w` of 8 lanes.
    #[inline(always)]
    unsafe fn mask(w: usize) -> __m256i {
        const LANES: [i32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
        _mm256_cmpgt_epi32(_mm256_set1_epi32(w as i32), _mm256_loadu_si256(LANES.as_ptr() as *const __m256i))
    }

    /// [`micro`] for `n` ≤ 6 rows.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn rows<const FULL: bool>(n: usize, kb: usize, a: *const f32, lda: usize, p: *const f32, wd: usize, c: *mut f32, ldc: usize, add: bool) {
        match n {
            6 => micro::<6, FULL>(kb, a, lda, p, wd, c, ldc, add),
            5 => micro::<5, FULL>(kb, a, lda, p, wd, c, ldc, add),
            4 => micro::<4, FULL>(kb, a, lda, p, wd, c, ldc, add),
            3 => micro::<3, FULL>(kb, a, lda, p, wd, c, ldc, add),
            2 => micro::<2, FULL>(kb, a, lda, p, wd, c, ldc, add),
            _ => micro::<1, FULL>(kb, a, lda, p, wd, c, ldc, add),
        }
    }

    /// R rows × one panel: `FULL` = 16 columns, else `wd` < 16 (masked loads and stores,
    /// nothing read or written past column wd). acc = Σ_p a[r, p]·P[p, :] as one fused
    /// chain in p order from zero; then C = acc, or C = C + acc when `add`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn micro<const R: usize, const FULL: bool>(kb: usize, a: *const f32, lda: usize, p: *const f32, wd: usize, c: *mut f32, ldc: usize, add: bool) {
        let (m0, m1) = if FULL {
            (_mm256_set1_epi32(-1), _mm256_set1_epi32(-1))
        } else {
            (mask(wd), mask(wd.saturating_sub(8)))
        };
        let mut acc0 = [_mm256_setzero_ps(); R];
        let mut acc1 = [_mm256_setzero_ps(); R];
        let rows: [*const f32; R] = std::array::from_fn(|r| a.add(r * lda));
        let load = |q: usize| {
            let pq = p.add(q * wd);
            if FULL {
                (_mm256_loadu_ps(pq), _mm256_loadu_ps(pq.add(8)))
            } else {
                (_mm256_maskload_ps(pq, m0), _mm256_maskload_ps(pq.add(8), m1))
            }
        };
        // Four k steps per iteration (the same chain order: step q before q + 1).
        let mut q = 0;
        while q + 4 <= kb {
            for u in 0..4 {
                let (b0, b1) = load(q + u);
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*rows[r].add(q + u));
                    acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                }
            }
            q += 4;
        }
        while q < kb {
            let (b0, b1) = load(q);
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*rows[r].add(q));
                acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
            }
            q += 1;
        }
        for r in 0..R {
            let cp = c.add(r * ldc);
            if FULL {
                if add {
                    acc0[r] = _mm256_add_ps(_mm256_loadu_ps(cp), acc0[r]);
                    acc1[r] = _mm256_add_ps(_mm256_loadu_ps(cp.add(8)), acc1[r]);
                }
                _mm256_storeu_ps(cp, acc0[r]);
                _mm256_storeu_ps(cp.add(8), acc1[r]);
            } else {
                if add {
                    acc0[r] = _mm256_add_ps(_mm256_maskload_ps(cp, m0), acc0[r]);
                    acc1[r] = _mm256_add_ps(_mm256_maskload_ps(cp.add(8), m1), acc1[r]);
                }
                _mm256_maskstore_ps(cp, m0, acc0[r]);
                _mm256_maskstore_ps(cp.add(8), m1, acc1[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::matmul_tiled;

    fn vals(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|v| (((v + seed) * 7919 % 1013) as f32 / 1013.0 - 0.5) * (1.0 + (v % 7) as f32))
            .collect()
    }

    #[test]
    fn pack_and_unpack_are_inverse_permutations() {
        for (i, o) in [(3, 16), (5, 40), (7, 5), (1, 33), (384, 48)] {
            let w = vals(i * o, 1);
            let mut packed = vec![0f32; i * o];
            pack(&w, &mut packed, i, o);
            let mut sorted_w = w.clone();
            let mut sorted_p = packed.clone();
            sorted_w.sort_by(f32::total_cmp);
            sorted_p.sort_by(f32::total_cmp);
            assert_eq!(sorted_w, sorted_p, "{i}x{o}: a permutation");
            // Element (p, col) of Wᵀ sits in its panel at p·width + (col − c0).
            for col in 0..o {
                let (c0, wd) = panel_cols(col / PANEL, o);
                for p in 0..i {
                    assert_eq!(packed[c0 * i + p * wd + col - c0], w[col * i + p]);
                }
            }
            let mut back = vec![0f32; i * o];
            unpack(&packed, &mut back, i, o);
            assert_eq!(back, w);
        }
    }

    /// The same bits as the crate on the row-major Wᵀ (the form CPUs without these kernels
    /// use), for shapes that take each of the crate's paths (one row, small products,
    /// k-blocks of `kernel_params`, k ≤ 2, partial panels, tiled products), on 1–3 threads.
    #[test]
    fn products_equal_the_crate_bit_for_bit_on_any_thread_count() {
        if !available() {
            eprintln!("SKIPPED: this CPU does not run the panel kernels (AVX2 + FMA without AVX-512F)");
            return;
        }
        let shapes = [
            (1, 384, 2304),
            (1, 1536, 40),
            (3, 40, 24),
            (7, 700, 50),
            (64, 1300, 64),
            (65, 1300, 70),
            (256, 384, 1152),
            (256, 1536, 384),
            (100, 2, 48),
            (9, 33, 7),
            (13, 1100, 37),
            (1100, 384, 700),
        ];
        for (m, k, o) in shapes {
            let x = vals(m * k, 2);
            let w = vals(o * k, 3);
            let mut wt = vec![0f32; k * o];
            for r in 0..o {
                for p in 0..k {
                    wt[p * o + r] = w[r * k + p];
                }
            }
            let mut panels = vec![0f32; k * o];
            pack(&w, &mut panels, k, o);
            let mut want = vec![0f32; m * o];
            matmul_tiled(m, k, o, &x, k, 1, &wt, o, 1, 0.0, &mut want, o, None);
            for threads in 1..=3 {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut got = vec![f32::NAN; m * o];
                pool.install(|| product(m, k, o, &x, &panels, &mut got, None));
                assert!(got == want, "{m}x{k}->{o} on {threads} threads");
            }
        }
    }

    /// A shape whose sizes overflow fails the bounds check instead of wrapping past it.
    #[test]
    #[should_panic(expected = "operand shorter than its shape")]
    fn overflowing_shapes_fail_the_bounds_check() {
        let (a, b, mut c) = (vec![0f32; 64], vec![0f32; 64], vec![0f32; 64]);
        product(1 << 33, 1 << 31, 16, &a, &b, &mut c, None);
    }

    /// Bias and GELU in the epilogue equal the product followed by separate passes.
    #[test]
    fn the_epilogue_equals_separate_passes() {
        let (m, k, o) = (70, 96, 40);
        let x = vals(m * k, 4);
        let mut wpb = vals(o * k + o, 5);
        let w = wpb[..o * k].to_vec();
        pack(&w, &mut wpb[..o * k], k, o);
        let mut plain = vec![0f32; m * o];
        product(m, k, o, &x, &wpb[..o * k], &mut plain, None);
        for row in plain.chunks_exact_mut(o) {
            for (v, b) in row.iter_mut().zip(&wpb[o * k..]) {
                *v += b;
            }
        }
        let mut fused = vec![0f32; m * o];
        linear(&x, &wpb, true, false, &mut fused, m, k, o);
        assert!(fused == plain);
        let mut want = vec![0f32; m * o];
        super::super::activation::gelu_tanh_forward(&plain, &mut want);
        linear(&x, &wpb, true, true, &mut fused, m, k, o);
        assert!(fused == want);
    }
}
