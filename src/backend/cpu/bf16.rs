//! bf16 matrix products on the CPU: operands rounded to bf16, products accumulated in
//! f32 — the rule of the CUDA bf16 mode and of PyTorch's CPU autocast.
//!
//! **Packed operands.** Both operands are held as 32-bit words that each carry a *pair*
//! of bf16 values adjacent along k (low half: even k, high half: odd k), the layout the
//! AVX-512 BF16 instruction `vdpbf16ps` consumes:
//! * B (a Linear weight W[o, i], used as Wᵀ) in panels of [`PANEL`] columns:
//!   `[⌈o/16⌉ panels][⌈i/2⌉ pairs][16]` words ([`packed_len`]); columns past o and the
//!   odd k past i are zero. Models in the bf16 inference layout keep their Linear weights
//!   only in this form (half the bytes of f32), stored bit for bit in an f32 buffer.
//! * A (the activations) in tiles of [`MR`] rows, `[⌈n/12⌉ tiles][⌈k/2⌉ pairs][12]`
//!   words, rounded from f32 at the start of every product.
//!
//! **Rounding.** f32 → bf16 is round-to-nearest-even; like the hardware conversion,
//! subnormal inputs become (signed) zero and NaN stays NaN ([`round_bits`]).
//!
//! **Kernels.** The AVX-512 kernels compute each C element as `c ← (c + a₁·b₁) + a₀·b₀`
//! pair after pair in k order, every product exact in f32 (8-bit significands) and every
//! addition rounded to nearest: the semantics of `vdpbf16ps` (checked against the
//! instruction bit for bit by a test). Two of them: `vdpbf16ps` itself, and the pairs
//! widened to f32 for `vfmadd231ps`; they agree bit for bit except where a product or a
//! sum is subnormal (below 1.2e-38), which the instruction flushes to zero. Which one runs
//! is chosen once per process ([`Kernel::detect`]). CPUs without AVX-512 take the f32
//! GEMM on the rounded operands ([`Kernel::Portable`]): the same products, another
//! summation order.
//!
//! **Threads.** The product is split into blocks of C; every element is accumulated by
//! one kernel call in k order, so results are identical for any number of threads.

use rayon::prelude::*;

use super::scratch::Scratch;

/// Columns per B panel (one 512-bit vector of f32).
pub const PANEL: usize = 16;
/// Rows per A tile (the microkernel's rows).
pub const MR: usize = 12;
/// Tiles per block of rows handed to one task.
const TILES_PER_TASK: usize = 4;
/// Panels per block of columns handed to one task.
const PANELS_PER_TASK: usize = 8;
/// Pairs of k per pass of the microkernel: a task's four A tiles (24 KiB) and a B panel
/// pair (8 KiB) stay in L1 (64 ran the 2048×1536×384 product 12% faster than 128).
const KC: usize = 64;

/// The bf16 bits of `x`, rounded to nearest even; subnormals flush to signed zero, NaN
/// stays a (quiet) NaN.
#[inline]
pub fn round_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    if x.abs() < f32::MIN_POSITIVE {
        return ((b >> 16) & 0x8000) as u16;
    }
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// `x` rounded to bf16 and widened back to f32 (the value the products use).
#[inline]
pub fn round(x: f32) -> f32 {
    f32::from_bits((round_bits(x) as u32) << 16)
}

#[inline]
fn pair(lo: f32, hi: f32) -> u32 {
    round_bits(lo) as u32 | (round_bits(hi) as u32) << 16
}

#[inline]
fn lo(w: u32) -> f32 {
    f32::from_bits(w << 16)
}

#[inline]
fn hi(w: u32) -> f32 {
    f32::from_bits(w & 0xFFFF_0000)
}

/// Words of a packed B operand with `k` rows (the Linear's in-features) and `n` columns
/// (its out-features): ⌈n/16⌉·16 · ⌈k/2⌉.
pub fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(PANEL) * PANEL * k.div_ceil(2)
}

/// Views f32 storage as the packed words it holds (bit for bit).
pub fn words(s: &[f32]) -> &[u32] {
    bytemuck::cast_slice(s)
}

/// Mutable [`words`].
pub fn words_mut(s: &mut [f32]) -> &mut [u32] {
    bytemuck::cast_slice_mut(s)
}

/// Packs a Linear weight for the products y = x·Wᵀ.
/// w: [n, k] row-major (W[o, i]: n = o, k = i); dst: [packed_len(k, n)] words.
pub fn pack_b_nk(w: &[f32], dst: &mut [u32], k: usize, n: usize) {
    let kp = k.div_ceil(2);
    if kp == 0 {
        return; // k = 0: nothing to pack (packed_len is 0)
    }
    let dst = &mut dst[..packed_len(k, n)];
    dst.par_chunks_mut(kp * PANEL).enumerate().for_each(|(pi, panel)| {
        for c in 0..PANEL {
            let col = pi * PANEL + c;
            for p in 0..kp {
                panel[p * PANEL + c] = if col < n {
                    let row = &w[col * k..(col + 1) * k];
                    pair(row[2 * p], if 2 * p + 1 < k { row[2 * p + 1] } else { 0.0 })
                } else {
                    0
                };
            }
        }
    });
}

/// Packs a B operand stored k-major: v: [k, n] at row stride `ldv` (e.g. attention's V
/// read in place from qkv, k = tokens). dst: [packed_len(k, n)] words.
pub fn pack_b_kn(v: &[f32], ldv: usize, dst: &mut [u32], k: usize, n: usize) {
    let kp = k.div_ceil(2);
    if kp == 0 {
        return; // k = 0: nothing to pack (packed_len is 0)
    }
    let dst = &mut dst[..packed_len(k, n)];
    for (pi, panel) in dst.chunks_mut(kp * PANEL).enumerate() {
        for p in 0..kp {
            for c in 0..PANEL {
                let col = pi * PANEL + c;
                let at = |r: usize| if r < k && col < n { v[r * ldv + col] } else { 0.0 };
                panel[p * PANEL + c] = pair(at(2 * p), at(2 * p + 1));
            }
        }
    }
}

/// Inverse of [`pack_b_nk`]: the bf16-rounded weight as f32. w: [n, k] (assign).
pub fn unpack_b_nk(src: &[u32], w: &mut [f32], k: usize, n: usize) {
    let kp = k.div_ceil(2);
    for col in 0..n {
        let panel = &src[(col / PANEL) * kp * PANEL..];
        for p in 0..kp {
            let word = panel[p * PANEL + col % PANEL];
            w[col * k + 2 * p] = lo(word);
            if 2 * p + 1 < k {
                w[col * k + 2 * p + 1] = hi(word);
            }
        }
    }
}

/// f32 values of a packed A operand with `m` rows and `k` columns: tiles of [`MR`] rows,
/// `[⌈k/2⌉ pairs][MR]` per tile, one 32-bit slot per pair and row for the `vdpbf16ps`
/// kernel (a bf16 pair), two for the others (the rounded even and odd values as f32).
fn a_len(kernel: Kernel, m: usize, k: usize) -> usize {
    m.div_ceil(MR) * MR * k.div_ceil(2) * if kernel == Kernel::Avx512Bf16 { 1 } else { 2 }
}

/// Packs A: a: [m, k] with row stride `lda`; dst: [a_len(kernel, m, k)] (rows past m
/// zero). A tile's rows are first rounded into a row-major scratch (one vectorised pass),
/// then gathered pair by pair into the tile, whose writes are then sequential.
fn pack_a(parallel: bool, kernel: Kernel, a: &[f32], lda: usize, dst: &mut [f32], m: usize, k: usize) {
    let kp = k.div_ceil(2);
    let dp = kernel == Kernel::Avx512Bf16;
    let slots = if dp { 1 } else { 2 };
    let pack_tile = |(ti, tile): (usize, &mut [f32])| {
        let mut rows = Scratch::<f32>::for_overwrite(MR * 2 * kp);
        for (r, row) in rows.chunks_exact_mut(2 * kp).enumerate() {
            let i = ti * MR + r;
            if i < m {
                crate::cpu_dispatch!(round_row(&a[i * lda..i * lda + k], &mut row[..k]));
                row[k..].fill(0.0);
            } else {
                row.fill(0.0);
            }
        }
        if dp {
            let tile = words_mut(tile);
            for (p, out) in tile.chunks_exact_mut(MR).enumerate() {
                for (r, o) in out.iter_mut().enumerate() {
                    let (e, od) = (rows[r * 2 * kp + 2 * p], rows[r * 2 * kp + 2 * p + 1]);
                    *o = e.to_bits() >> 16 | (od.to_bits() & 0xFFFF_0000);
                }
            }
        } else {
            let tile: &mut [u64] = bytemuck::cast_slice_mut(tile);
            let pairs: &[u64] = bytemuck::cast_slice(&rows[..]);
            for (p, out) in tile.chunks_exact_mut(MR).enumerate() {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = pairs[r * kp + p];
                }
            }
        }
    };
    if parallel {
        dst.par_chunks_mut(kp * MR * slots).enumerate().for_each(pack_tile);
    } else {
        dst.chunks_mut(kp * MR * slots).enumerate().for_each(pack_tile);
    }
}

/// `x[j] = round(x[j])` in place (vectorised).
pub fn round_in_place(x: &mut [f32]) {
    crate::cpu_dispatch!(for v in x.iter_mut() {
        *v = f32::from_bits(round_branch_free(v.to_bits()));
    })
}

/// dst[j] = round(src[j]) (vectorised).
#[inline(always)]
fn round_row(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = f32::from_bits(round_branch_free(x.to_bits()));
    }
}

/// The f32 bits of [`round`] of the f32 with bits `b`, with selects instead of branches
/// so that loops over it vectorise.
#[inline(always)]
fn round_branch_free(b: u32) -> u32 {
    let abs = b & 0x7FFF_FFFF;
    let nearest = (b.wrapping_add(0x7FFF + ((b >> 16) & 1))) & 0xFFFF_0000;
    let nan = (b | 0x0040_0000) & 0xFFFF_0000;
    if abs > 0x7F80_0000 {
        nan
    } else if abs < 0x0080_0000 {
        b & 0x8000_0000
    } else {
        nearest
    }
}

/// Which kernel runs the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `vdpbf16ps` (AVX-512F + AVX-512 BF16).
    Avx512Bf16,
    /// The bf16 pairs widened to f32 in registers and accumulated with `vfmadd231ps`
    /// (AVX-512F): the same operations in the same order, so the same bits.
    Avx512Fma,
    /// Any CPU: the packed weights widened to an f32 matrix per product and the f32
    /// GEMM (the `gemm` crate: AVX2/FMA where present) on the rounded operands. The same
    /// products and f32 accumulation, in the f32 GEMM's summation order, so its bits are
    /// not those of the AVX-512 kernels.
    Portable,
}

impl Kernel {
    /// The kernel for this CPU, chosen once per process: the FMA kernel where AVX-512F
    /// is present, `vdpbf16ps` instead where a calibration product runs at least 1.3×
    /// faster with it (the margin keeps the choice stable from run to run; the two agree
    /// bit for bit except for products below 2⁻¹²⁶, which `vdpbf16ps` flushes to zero).
    /// On the Xeon this project is measured on `vdpbf16ps` retires 0.45 per cycle against 2
    /// FMAs, so the FMA kernel runs. The portable path elsewhere.
    /// `UCGM_BF16_KERNEL=dp|fma|portable` fixes it.
    pub fn detect() -> Kernel {
        use std::sync::OnceLock;
        static K: OnceLock<Kernel> = OnceLock::new();
        *K.get_or_init(|| {
            let avail = Self::available();
            let asked = match std::env::var("UCGM_BF16_KERNEL").as_deref() {
                Ok("dp") => Some(Kernel::Avx512Bf16),
                Ok("fma") => Some(Kernel::Avx512Fma),
                Ok("portable") => Some(Kernel::Portable),
                _ => None,
            };
            if let Some(k) = asked.filter(|k| avail.contains(k)) {
                return k;
            }
            match avail.as_slice() {
                [one] => *one,
                _ => calibrate(&avail[..avail.len() - 1]),
            }
        })
    }

    /// The kernels this CPU can run, fastest-capable first, [`Kernel::Portable`] last.
    pub fn available() -> Vec<Kernel> {
        let mut v = Vec::new();
        if Self::avx512_bf16_available() {
            v.push(Kernel::Avx512Bf16);
        }
        if super::vmath::has_avx512() {
            v.push(Kernel::Avx512Fma);
        }
        v.push(Kernel::Portable);
        v
    }

    /// Whether this CPU has AVX-512F and AVX-512 BF16.
    pub fn avx512_bf16_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// [`Kernel::Avx512Bf16`] when it runs a 96×512×256 product at least 1.3× faster than
/// [`Kernel::Avx512Fma`] (best of 5 runs each, on the calling thread), else the FMA
/// kernel; `kernels` holds both.
fn calibrate(kernels: &[Kernel]) -> Kernel {
    let (m, k, n) = (96, 512, 256);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 97) as f32 / 97.0 - 0.5).collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 89) as f32 / 89.0 - 0.5).collect();
    let mut b = vec![0u32; packed_len(k, n)];
    pack_b_nk(&w, &mut b, k, n);
    let mut c = vec![0f32; m * n];
    let time = |kern: Kernel, c: &mut [f32]| {
        (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                gemm_on_thread(kern, m, k, n, &a, k, &b, c, n);
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    if !kernels.contains(&Kernel::Avx512Bf16) {
        return kernels.first().copied().unwrap_or(Kernel::Portable);
    }
    let (dp, fma) = (time(Kernel::Avx512Bf16, &mut c), time(Kernel::Avx512Fma, &mut c));
    if dp.as_secs_f64() * 1.3 <= fma.as_secs_f64() {
        Kernel::Avx512Bf16
    } else {
        Kernel::Avx512Fma
    }
}

/// C[m, n] += A[m, k] · B[k, n] with A rounded to bf16 here and B packed.
/// a: [m, k] (row stride `lda`); b: packed (`packed_len(k, n)` words); c: [m, n] (row
/// stride `ldc`), accumulated into (prefill it with the bias or zeros). Runs on every
/// thread of the current pool when the product is large enough.
#[allow(clippy::too_many_arguments)]
pub fn gemm(kernel: Kernel, m: usize, k: usize, n: usize, a: &[f32], lda: usize, b: &[u32], c: &mut [f32], ldc: usize) {
    gemm_impl(true, kernel, m, k, n, a, lda, b, c, ldc, None)
}

/// [`gemm()`] on the calling thread only.
#[allow(clippy::too_many_arguments)]
pub fn gemm_on_thread(kernel: Kernel, m: usize, k: usize, n: usize, a: &[f32], lda: usize, b: &[u32], c: &mut [f32], ldc: usize) {
    gemm_impl(false, kernel, m, k, n, a, lda, b, c, ldc, None)
}

#[allow(clippy::too_many_arguments)]
fn gemm_impl(
    parallel: bool,
    kernel: Kernel,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[u32],
    c: &mut [f32],
    ldc: usize,
    epilogue: Option<fn(&mut [f32])>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k, "bf16 gemm: A out of bounds");
    assert!(b.len() >= packed_len(k, n), "bf16 gemm: B out of bounds");
    assert!(c.len() >= (m - 1) * ldc + n, "bf16 gemm: C out of bounds");
    if kernel == Kernel::Portable {
        return portable(parallel, m, k, n, a, lda, b, c, ldc, epilogue);
    }
    let mut ap = Scratch::<f32>::for_overwrite(a_len(kernel, m, k));
    pack_a(parallel, kernel, a, lda, &mut ap, m, k);
    let kp = k.div_ceil(2);
    let slots = if kernel == Kernel::Avx512Bf16 { 1 } else { 2 };
    let (tiles, panels) = (m.div_ceil(MR), n.div_ceil(PANEL));
    let (row_blocks, col_blocks) = (tiles.div_ceil(TILES_PER_TASK), panels.div_ceil(PANELS_PER_TASK));
    let cp = SendPtr(c.as_mut_ptr());
    let ap = &ap[..];
    let run = |task: usize| {
        let (rb, cb) = (task / col_blocks, task % col_blocks);
        let t_end = ((rb + 1) * TILES_PER_TASK).min(tiles);
        let p_end = ((cb + 1) * PANELS_PER_TASK).min(panels);
        // Blocks of KC pairs keep a tile's A and a panel pair's B in L1; C is stored in
        // f32 between blocks, so the bits are those of one pass over k.
        for k0 in (0..kp).step_by(KC) {
            let k1 = (k0 + KC).min(kp);
            let mut pi = cb * PANELS_PER_TASK;
            while pi < p_end {
                let two = pi + 1 < p_end;
                let cols = (n - pi * PANEL).min(if two { 2 * PANEL } else { PANEL });
                let b0 = &b[pi * kp * PANEL..(pi + 1) * kp * PANEL][k0 * PANEL..k1 * PANEL];
                let b1 = if two {
                    &b[(pi + 1) * kp * PANEL..(pi + 2) * kp * PANEL][k0 * PANEL..k1 * PANEL]
                } else {
                    b0
                };
                for ti in rb * TILES_PER_TASK..t_end {
                    let rows = (m - ti * MR).min(MR);
                    let at = &ap[ti * kp * MR * slots..(ti + 1) * kp * MR * slots][k0 * MR * slots..k1 * MR * slots];
                    // SAFETY: the tasks' C blocks (rows of the tile range × columns of the
                    // panel range) are disjoint, the tile lies inside c (checked above), and
                    // `kernel` runs on this CPU (`Kernel::available`).
                    unsafe { tile(kernel, rows, two, k1 - k0, at, b0, b1, cp.at(ti * MR * ldc + pi * PANEL), ldc, cols) };
                    if let (Some(f), true) = (epilogue, k1 == kp) {
                        for r in 0..rows {
                            // SAFETY: this task's own block of C (see above).
                            f(unsafe { std::slice::from_raw_parts_mut(cp.at((ti * MR + r) * ldc + pi * PANEL), cols) });
                        }
                    }
                }
                pi += if two { 2 } else { 1 };
            }
        }
    };
    if let (Some(f), 0) = (epilogue, kp) {
        // No products (k = 0): C is its start value.
        for r in 0..m {
            f(&mut c[r * ldc..r * ldc + n]);
        }
    }
    let tasks = row_blocks * col_blocks;
    if !parallel || m * n * k < (1 << 17) || tasks == 1 {
        (0..tasks).for_each(run);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    /// # Safety: `off` must lie in the buffer.
    unsafe fn at(self, off: usize) -> *mut f32 {
        self.0.add(off)
    }
}

/// One C tile of `rows` × `cols` (cols ≤ 32, two panels when `two`). `a`: the tile's
/// packed A ([`a_len`] layout of `kernel`).
///
/// # Safety
/// `c` must address `rows` rows of `cols` valid elements at row stride `ldc`, and the
/// CPU must support `kernel`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(kernel: Kernel, rows: usize, two: bool, kp: usize, a: &[f32], b0: &[u32], b1: &[u32], c: *mut f32, ldc: usize, cols: usize) {
    macro_rules! by_rows {
        ($f:ident, $p:literal) => {
            match rows {
                1 => $f::<1, $p>(kp, a, b0, b1, c, ldc, cols),
                2 => $f::<2, $p>(kp, a, b0, b1, c, ldc, cols),
                3 => $f::<3, $p>(kp, a, b0, b1, c, ldc, cols),
                4 => $f::<4, $p>(kp, a, b0, b1, c, ldc, cols),
                5 => $f::<5, $p>(kp, a, b0, b1, c, ldc, cols),
                6 => $f::<6, $p>(kp, a, b0, b1, c, ldc, cols),
                7 => $f::<7, $p>(kp, a, b0, b1, c, ldc, cols),
                8 => $f::<8, $p>(kp, a, b0, b1, c, ldc, cols),
                9 => $f::<9, $p>(kp, a, b0, b1, c, ldc, cols),
                10 => $f::<10, $p>(kp, a, b0, b1, c, ldc, cols),
                11 => $f::<11, $p>(kp, a, b0, b1, c, ldc, cols),
                _ => $f::<12, $p>(kp, a, b0, b1, c, ldc, cols),
            }
        };
    }
    match (kernel, two) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512Bf16, true) => by_rows!(tile_dp, 2),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512Bf16, false) => by_rows!(tile_dp, 1),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512Fma, true) => by_rows!(tile_fma, 2),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512Fma, false) => by_rows!(tile_fma, 1),
        _ => unreachable!("the portable kernel runs through the f32 GEMM"),
    }
}

/// [`Kernel::Portable`]: B widened to an f32 `[k, n]` matrix and A rounded, then the f32
/// GEMM with C as its start value, then `epilogue` per row of C. With `parallel`, the
/// widening, the rounding and the epilogue are spread over the pool as well as the GEMM
/// (element-wise, so the bits do not depend on it; run on one thread they kept an
/// AVX2-only CPU at 1.3–1.7 cores busy in the bf16 mode).
#[allow(clippy::too_many_arguments)]
fn portable(parallel: bool, m: usize, k: usize, n: usize, a: &[f32], lda: usize, b: &[u32], c: &mut [f32], ldc: usize, epilogue: Option<fn(&mut [f32])>) {
    let parallel = parallel && m * n * k.max(1) >= PORTABLE_PARALLEL_WORK;
    let mut bw = Scratch::<f32>::for_overwrite(k * n);
    widen_b(parallel, b, &mut bw, k, n);
    let mut ar = Scratch::<f32>::for_overwrite(m * k);
    if k > 0 {
        let round = |(r, row): (usize, &mut [f32])| crate::cpu_dispatch!(round_row(&a[r * lda..r * lda + k], row));
        if parallel {
            ar[..m * k].par_chunks_mut(k).enumerate().for_each(round);
        } else {
            ar[..m * k].chunks_mut(k).enumerate().for_each(round);
        }
        if parallel {
            super::gemm::matmul_tiled(m, k, n, &ar, k, 1, &bw, n, 1, 1.0, c, ldc, None);
        } else {
            super::gemm::matmul_seq(m, k, n, &ar, k, 1, &bw, n, 1, 1.0, c, ldc, 1);
        }
    }
    if let (Some(f), true) = (epilogue, m > 0) {
        // Rows of C at stride ldc (≥ n; max(1): a zero-width C has no row to visit).
        let rows = &mut c[..(m - 1) * ldc + n];
        if parallel {
            rows.par_chunks_mut(ldc.max(1)).for_each(|row| f(&mut row[..n]));
        } else {
            rows.chunks_mut(ldc.max(1)).for_each(|row| f(&mut row[..n]));
        }
    }
}

/// Multiply-adds from which [`portable`] spreads its element-wise passes over the pool
/// (the GEMM decides for itself).
const PORTABLE_PARALLEL_WORK: usize = 1 << 17;

/// The packed B (see [`packed_len`]) widened to the f32 matrix it rounds to, row by
/// row: pair row p gives rows 2p (low halves) and 2p + 1 (high halves), each read as
/// runs of [`PANEL`] words and written contiguously. bw: [k, n] (assign).
fn widen_b(parallel: bool, b: &[u32], bw: &mut [f32], k: usize, n: usize) {
    let kp = k.div_ceil(2);
    let pair_rows = |(p, rows): (usize, &mut [f32])| {
        let (even, odd) = rows.split_at_mut(n);
        for (q, even) in even.chunks_mut(PANEL).enumerate() {
            let words = &b[q * kp * PANEL + p * PANEL..][..even.len()];
            for (e, &w) in even.iter_mut().zip(words) {
                *e = lo(w);
            }
            if !odd.is_empty() {
                for (o, &w) in odd[q * PANEL..][..even.len()].iter_mut().zip(words) {
                    *o = hi(w);
                }
            }
        }
    };
    let bw = &mut bw[..k * n];
    if n == 0 {
        return;
    }
    if parallel {
        bw.par_chunks_mut(2 * n).enumerate().for_each(pair_rows);
    } else {
        bw.chunks_mut(2 * n).enumerate().for_each(pair_rows);
    }
}

/// Masks of the valid columns of the two panels of a tile `cols` wide.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn col_masks(cols: usize) -> [u16; 2] {
    let m = |j: usize| -> u16 {
        let left = cols.saturating_sub(j * PANEL).min(PANEL);
        ((1u32 << left) - 1) as u16
    };
    [m(0), m(1)]
}

/// AVX-512 BF16 microkernel: R rows × P panels of 16 columns in zmm accumulators,
/// one `vdpbf16ps` per row, panel and pair. `a`: pair words.
///
/// # Safety
/// As [`tile`], and the CPU must support AVX-512F and AVX-512 BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_dp<const R: usize, const P: usize>(kp: usize, a: &[f32], b0: &[u32], b1: &[u32], c: *mut f32, ldc: usize, cols: usize) {
    use std::arch::x86_64::*;
    let masks = col_masks(cols);
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for (r, acc_r) in acc.iter_mut().enumerate() {
        for (j, v) in acc_r.iter_mut().enumerate() {
            *v = _mm512_maskz_loadu_ps(masks[j], c.add(r * ldc + j * PANEL));
        }
    }
    let (ap, bp) = (a.as_ptr() as *const i32, [b0.as_ptr(), b1.as_ptr()]);
    for p in 0..kp {
        let mut bv = [_mm512_setzero_si512(); P];
        for (j, v) in bv.iter_mut().enumerate() {
            *v = _mm512_loadu_si512(bp[j].add(p * PANEL) as *const __m512i);
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(p * MR + r)));
            for (j, v) in acc_r.iter_mut().enumerate() {
                *v = _mm512_dpbf16_ps(*v, av, std::mem::transmute::<__m512i, __m512bh>(bv[j]));
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (j, &v) in acc_r.iter().enumerate() {
            _mm512_mask_storeu_ps(c.add(r * ldc + j * PANEL), masks[j], v);
        }
    }
}

/// AVX-512F microkernel with the same arithmetic as [`tile_dp`]: each B pair vector
/// widened to its odd and even f32 halves (a mask and a shift), then per row
/// `acc ← fma(a₁, b₁, acc)`, `acc ← fma(a₀, b₀, acc)` with `a` broadcast from the
/// packed f32 A. (Widening B once per block into an f32 buffer instead was slower: the
/// widening pass costs about as much as the tiles that reuse it.)
///
/// # Safety
/// As [`tile`], and the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_fma<const R: usize, const P: usize>(kp: usize, a: &[f32], b0: &[u32], b1: &[u32], c: *mut f32, ldc: usize, cols: usize) {
    use std::arch::x86_64::*;
    let masks = col_masks(cols);
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for (r, acc_r) in acc.iter_mut().enumerate() {
        for (j, v) in acc_r.iter_mut().enumerate() {
            *v = _mm512_maskz_loadu_ps(masks[j], c.add(r * ldc + j * PANEL));
        }
    }
    let high = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    let (ap, bp) = (a.as_ptr(), [b0.as_ptr(), b1.as_ptr()]);
    for p in 0..kp {
        let mut even = [_mm512_setzero_ps(); P];
        let mut odd = [_mm512_setzero_ps(); P];
        for j in 0..P {
            let w = _mm512_loadu_si512(bp[j].add(p * PANEL) as *const __m512i);
            odd[j] = _mm512_castsi512_ps(_mm512_and_si512(w, high));
            even[j] = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w));
        }
        // All odd products first, then all even ones: each accumulator's two FMAs are
        // 2·R instructions apart, not back to back (the FMA latency stays hidden).
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let a1 = _mm512_set1_ps(*ap.add((p * MR + r) * 2 + 1));
            for (j, v) in acc_r.iter_mut().enumerate() {
                *v = _mm512_fmadd_ps(a1, odd[j], *v);
            }
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let a0 = _mm512_set1_ps(*ap.add((p * MR + r) * 2));
            for (j, v) in acc_r.iter_mut().enumerate() {
                *v = _mm512_fmadd_ps(a0, even[j], *v);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (j, &v) in acc_r.iter().enumerate() {
            _mm512_mask_storeu_ps(c.add(r * ldc + j * PANEL), masks[j], v);
        }
    }
}

/// y[n, o] = x[n, i] · Wᵀ + b in bf16 products, then `epilogue` (e.g. GELU) applied to
/// each finished tile while it is in cache: x: [n, i]; wpb: [packed_len(i, o)] words
/// then, with a bias, o f32 values; y: [n, o] (assign).
#[allow(clippy::too_many_arguments)]
pub fn linear(kernel: Kernel, x: &[f32], wpb: &[f32], has_bias: bool, epilogue: Option<fn(&mut [f32])>, y: &mut [f32], n: usize, i: usize, o: usize) {
    let (w, bias) = wpb.split_at(packed_len(i, o));
    let y = &mut y[..n * o];
    if has_bias {
        for row in y.chunks_exact_mut(o) {
            row.copy_from_slice(&bias[..o]);
        }
    } else {
        y.fill(0.0);
    }
    gemm_impl(true, kernel, n, i, o, x, i, words(w), y, o, epilogue);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (((s >> 11) as f64 / (1u64 << 53) as f64) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// C = A·B on the bf16-rounded operands in f64, and Σ|a||b| per element.
    fn reference(a: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut c = vec![0.0; m * n];
        let mut s = vec![0.0; m * n];
        for r in 0..m {
            for col in 0..n {
                for p in 0..k {
                    let v = round(a[r * k + p]) as f64 * round(w[col * k + p]) as f64;
                    c[r * n + col] += v;
                    s[r * n + col] += v.abs();
                }
            }
        }
        (c, s)
    }

    #[test]
    fn rounding_is_nearest_even_with_flushed_subnormals() {
        assert_eq!(round(1.0), 1.0);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to even (1).
        assert_eq!(round(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(round(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        assert_eq!(round(-1.0 - 2f32.powi(-8) - 2f32.powi(-20)), -1.0 - 2f32.powi(-7));
        assert_eq!(round(1e-39).to_bits(), 0);
        assert_eq!(round(-1e-39).to_bits(), 0x8000_0000);
        assert!(round(f32::NAN).is_nan());
        assert_eq!(round(f32::INFINITY), f32::INFINITY);
        assert_eq!(round(f32::MAX), f32::INFINITY);
        for x in vals(1000, 3, 100.0) {
            assert_eq!(round(x), half::bf16::from_f32(x).to_f32(), "{x}");
        }
        // The vectorised form agrees, specials included.
        let mut xs = vals(1000, 4, 1e3);
        xs.extend([
            0.0,
            -0.0,
            1e-39,
            -1e-39,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ]);
        let mut r = xs.clone();
        round_in_place(&mut r);
        for (&x, &y) in xs.iter().zip(&r) {
            assert_eq!(y.to_bits(), round(x).to_bits(), "{x}");
        }
        let mut n = [f32::NAN];
        round_in_place(&mut n);
        assert!(n[0].is_nan());
    }

    #[test]
    fn packing_round_trips_to_the_rounded_weight() {
        for &(k, n) in &[(1, 1), (7, 5), (16, 16), (33, 40), (384, 48)] {
            let w = vals(n * k, 11, 2.0);
            let mut p = vec![0u32; packed_len(k, n)];
            pack_b_nk(&w, &mut p, k, n);
            let mut back = vec![f32::NAN; n * k];
            unpack_b_nk(&p, &mut back, k, n);
            let want: Vec<f32> = w.iter().map(|&v| round(v)).collect();
            assert_eq!(back, want, "{k}x{n}");
            // The k-major packing of Wᵀ is the same words.
            let mut wt = vec![0f32; k * n];
            for c in 0..n {
                for r in 0..k {
                    wt[r * n + c] = w[c * k + r];
                }
            }
            let mut p2 = vec![1u32; packed_len(k, n)];
            pack_b_kn(&wt, n, &mut p2, k, n);
            assert_eq!(p, p2, "{k}x{n}");
        }
    }

    /// Every element within the bound of an f32 sum of k+1 terms (the start value and
    /// k exact products): |c − c_exact| ≤ (k + 1)·2⁻²⁴·(|c₀| + Σ|a||b|).
    #[test]
    fn gemm_matches_f64_on_rounded_operands_for_both_kernels() {
        let kernels = Kernel::available();
        if kernels.len() < 3 {
            eprintln!("note: this CPU runs only {kernels:?}; the other kernels are not checked here");
        }
        for &(m, k, n) in &[(1, 1, 1), (5, 3, 7), (12, 16, 32), (13, 33, 17), (50, 384, 100), (256, 96, 48), (3, 1536, 80)] {
            let a = vals(m * k, 1, 1.5);
            let w = vals(n * k, 2, 0.5);
            let bias = vals(n, 3, 1.0);
            let mut bp = vec![0u32; packed_len(k, n)];
            pack_b_nk(&w, &mut bp, k, n);
            let (want, mag) = reference(&a, &w, m, k, n);
            let mut outs = Vec::new();
            for &kern in &kernels {
                let mut c: Vec<f32> = (0..m * n).map(|e| bias[e % n]).collect();
                gemm(kern, m, k, n, &a, k, &bp, &mut c, n);
                for e in 0..m * n {
                    let exact = want[e] + bias[e % n] as f64;
                    let bound = (k + 1) as f64 * 2f64.powi(-24) * (mag[e] + (bias[e % n] as f64).abs());
                    assert!(
                        (c[e] as f64 - exact).abs() <= bound,
                        "{kern:?} {m}x{k}x{n} [{e}]: {} vs {exact} (bound {bound:e})",
                        c[e]
                    );
                }
                outs.push(c);
            }
            // The AVX-512 kernels (all but the last, portable one) agree bit for bit.
            for (kern, out) in kernels.iter().zip(&outs).take(kernels.len() - 1).skip(1) {
                assert!(out == &outs[0], "{m}x{k}x{n}: {kern:?} differs from {:?}", kernels[0]);
            }
        }
    }

    #[test]
    fn every_avx512_kernel_computes_the_instruction_order_exactly() {
        // Pairs where the order of the two additions changes the rounded result.
        let (m, k, n) = (12, 64, 32);
        let a = vals(m * k, 7, 3.0);
        let w = vals(n * k, 8, 3.0);
        let mut bp = vec![0u32; packed_len(k, n)];
        pack_b_nk(&w, &mut bp, k, n);
        let start = vals(m * n, 9, 50.0);
        for kern in Kernel::available().into_iter().filter(|&k| k != Kernel::Portable) {
            let mut c = start.clone();
            gemm(kern, m, k, n, &a, k, &bp, &mut c, n);
            for r in 0..m {
                for col in 0..n {
                    let mut v = start[r * n + col];
                    for p in (0..k).step_by(2) {
                        v += round(a[r * k + p + 1]) * round(w[col * k + p + 1]);
                        v += round(a[r * k + p]) * round(w[col * k + p]);
                    }
                    assert_eq!(c[r * n + col], v, "{kern:?} [{r}, {col}]");
                }
            }
        }
    }

    #[test]
    fn fused_gelu_epilogue_equals_the_separate_pass() {
        let (n, i, o) = (70, 48, 40);
        let x = vals(n * i, 12, 2.0);
        let w = vals(o * i, 13, 1.0);
        let mut wpb = vec![0f32; packed_len(i, o) + o];
        pack_b_nk(&w, words_mut(&mut wpb[..packed_len(i, o)]), i, o);
        wpb[packed_len(i, o)..].copy_from_slice(&vals(o, 14, 1.0));
        for kern in Kernel::available() {
            let mut plain = vec![0f32; n * o];
            linear(kern, &x, &wpb, true, None, &mut plain, n, i, o);
            let mut want = vec![0f32; n * o];
            super::super::activation::gelu_tanh_forward(&plain, &mut want);
            let mut fused = vec![0f32; n * o];
            linear(
                kern,
                &x,
                &wpb,
                true,
                Some(super::super::activation::gelu_tanh_in_place::<f32>),
                &mut fused,
                n,
                i,
                o,
            );
            assert!(fused == want, "{kern:?}: fused GELU differs from the separate pass");
        }
    }

    /// Empty operands (no rows, no columns or no k) run on every kernel, with and without
    /// the epilogue: y is assigned zeros (no bias, and GELU(0) = 0), nothing panics.
    #[test]
    fn empty_products_are_zeros_without_a_panic() {
        for &(m, k, n) in &[(0, 4, 3), (3, 0, 5), (3, 4, 0), (0, 0, 0)] {
            let a = vals(m * k, 6, 1.0);
            let w = vals(n * k, 7, 1.0);
            let mut wpb = vec![0f32; packed_len(k, n) + n];
            pack_b_nk(&w, words_mut(&mut wpb[..packed_len(k, n)]), k, n);
            for kern in Kernel::available() {
                let epilogue = Some(super::super::activation::gelu_tanh_in_place::<f32> as fn(&mut [f32]));
                for ep in [None, epilogue] {
                    let mut y = vec![0.5f32; m * n];
                    linear(kern, &a, &wpb, false, ep, &mut y, m, k, n);
                    assert!(y.iter().all(|&v| v == 0.0), "{kern:?} {m}x{k}x{n}");
                }
            }
        }
    }

    #[test]
    fn same_bits_for_any_thread_count_and_row_stride() {
        let (m, k, n) = (300, 200, 150);
        let a = vals(m * (k + 5), 4, 1.0);
        let w = vals(n * k, 5, 1.0);
        let mut bp = vec![0u32; packed_len(k, n)];
        pack_b_nk(&w, &mut bp, k, n);
        for kern in Kernel::available() {
            let runs: Vec<Vec<f32>> = [1, 2, 3, 7]
                .iter()
                .map(|&th| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(th).build().unwrap();
                    let mut c = vec![0f32; m * (n + 3)];
                    pool.install(|| gemm(kern, m, k, n, &a, k + 5, &bp, &mut c, n + 3));
                    c
                })
                .collect();
            for r in &runs[1..] {
                assert!(r == &runs[0], "{kern:?}");
            }
            // Padding columns of C untouched.
            assert!(runs[0].chunks(n + 3).all(|row| row[n..] == [0.0; 3]), "{kern:?}");
        }
    }
}
