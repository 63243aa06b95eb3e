//! 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016): each 2×2 block of outputs
//! comes from a 4×4 input tile with 16 products per (c_in, c_out) pair instead of 36,
//! 2.25× fewer multiply-adds than im2col + GEMM. The VAE's convolutions are almost all
//! of this kind, and so are a third of the FID Inception's multiply-adds.
//!
//! With ξ = (i, j) one of the 16 positions of a transformed 4×4 tile:
//!
//! ```text
//! U[co, ξ, ci] = (G g G^T)[ξ]     g = w[co, ci]: 3×3          (filter transform, per call)
//! V[ci, ξ, t]  = (B^T d B)[ξ]     d = the 4×4 input tile of t (zeros outside the image)
//! M[ξ, co, t]  = Σ_ci U[co, ξ, ci]·V[ci, ξ, t]                (16 GEMMs, one per ξ)
//! y[co, 2×2 outputs of t] = A^T M[co, ·, t] A + bias[co]
//! ```
//!
//! The tiles are taken in bands of tile rows. A band may span several images, so maps
//! too small to fill a GEMM on their own (the Inception's 17×17 and 8×8) share one with
//! the rest of the batch, and each filter is packed once per band, not once per image.
//!
//! Accuracy: the transforms use only ±1 and ½ (exact scalings), so the result differs
//! from the direct sum only by the rounding of the extra additions; the unit test below
//! bounds it against an f64 reference, and the VAE and Inception reference tests
//! (rel-L2 ≤ 1e-5) run through this path.
//!
//! Thread-count independence: every transform is computed per (channel, tile) on one
//! thread, and each GEMM's reduction over c_in is never split (see `gemm.rs`).

use rayon::prelude::*;

use super::{conv::output_planes, gemm::matmul_seq, pool::relu_seq, scratch::Scratch, Elem};
use crate::backend::{Conv2dShape, ConvLayout, PlaneLayout};

/// Most elements of the V and M band buffers together (16 MiB of f32).
const BAND_ELEMS: usize = 1 << 22;

/// Whether [`forward`] handles this shape: a 3×3 window at stride 1 with enough channels
/// that the 16 GEMMs, not the transforms, dominate (the 3-channel convolutions at an RGB
/// image's side stay on im2col).
pub fn applies(s: &Conv2dShape) -> bool {
    s.kh == 3 && s.kw == 3 && s.stride_h == 1 && s.stride_w == 1 && s.c_in >= 16 && s.c_out >= 16 && s.out_h() * s.out_w() > 0
}

/// y = conv(x, w) + bias (then ReLU if `l.relu`) for a shape where [`applies`] holds,
/// maps laid out as `l` says. x: [n, c_in, h, w];
/// w: [c_out, c_in, 3, 3]; bias: [c_out]; y: [n, c_out, out_h, out_w] (assign).
pub fn forward<T: Elem>(x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T], s: &Conv2dShape, l: &ConvLayout) {
    debug_assert!(applies(s));
    let (oh, ow) = (s.out_h(), s.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let (ci_n, co_n) = (s.c_in, s.c_out);
    let total_rows = s.n * th;
    if total_rows == 0 {
        return;
    }
    let u = filter_transform(w, co_n, ci_n);
    let rows_per_band = (BAND_ELEMS / (16 * (ci_n + co_n) * tw)).clamp(1, total_rows);
    let mut v = Scratch::<T>::for_overwrite(16 * ci_n * rows_per_band * tw);
    let mut m = Scratch::<T>::for_overwrite(16 * co_n * rows_per_band * tw);
    let mut g0 = 0;
    while g0 < total_rows {
        let nr = rows_per_band.min(total_rows - g0);
        let nt = nr * tw;
        let (v, m) = (&mut v[..16 * ci_n * nt], &mut m[..16 * co_n * nt]);
        input_transform(x, &l.x, v, s, g0, nr);
        // The 16 products side by side, each on one thread: no hand-offs inside a
        // product, and each thread's share is whole products.
        let v = &*v;
        m.par_chunks_mut(co_n * nt).enumerate().for_each(|(xi, mx)| {
            matmul_seq(co_n, ci_n, nt, &u[xi * ci_n..], 16 * ci_n, 1, &v[xi * nt..], 16 * nt, 1, T::zero(), mx, nt, 1);
        });
        output_transform(m, bias, y, s, l, g0, nr);
        g0 += nr;
    }
}

/// U[co, ξ, ci] = (G g G^T)[ξ] with G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
/// w: [c_out, c_in, 3, 3]; returns [c_out, 16, c_in].
fn filter_transform<T: Elem>(w: &[T], co_n: usize, ci_n: usize) -> Scratch<T> {
    let half = T::of(0.5);
    let mut u = Scratch::<T>::for_overwrite(co_n * 16 * ci_n);
    u.par_chunks_mut(16 * ci_n).enumerate().for_each(|(co, uc)| {
        for ci in 0..ci_n {
            let g = &w[(co * ci_n + ci) * 9..][..9];
            // Rows: Gg [4, 3].
            let mut gg = [[T::zero(); 3]; 4];
            for c in 0..3 {
                let (a, b, d) = (g[c], g[3 + c], g[6 + c]);
                gg[0][c] = a;
                gg[1][c] = (a + b + d) * half;
                gg[2][c] = (a - b + d) * half;
                gg[3][c] = d;
            }
            for (i, r) in gg.iter().enumerate() {
                let row = [r[0], (r[0] + r[1] + r[2]) * half, (r[0] - r[1] + r[2]) * half, r[2]];
                for (j, &val) in row.iter().enumerate() {
                    uc[(i * 4 + j) * ci_n + ci] = val;
                }
            }
        }
    });
    u
}

/// Image and tile row of band row `g` (global over the batch).
#[inline]
fn tile_row(g: usize, th: usize) -> (usize, usize) {
    (g / th, g % th)
}

/// V[ci, ξ, t] = (B^T d B)[ξ] for the tiles of band rows g0..g0+nr, with
/// B^T = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]].
/// x: the [n, c_in, h, w] planes of `lx`; v: [c_in, 16, nr·tw].
fn input_transform<T: Elem>(x: &[T], lx: &PlaneLayout, v: &mut [T], s: &Conv2dShape, g0: usize, nr: usize) {
    let tw = s.out_w().div_ceil(2);
    let nt = nr * tw;
    v.par_chunks_mut(16 * nt).enumerate().for_each_init(
        || (vec![T::zero(); 8 * (tw + 1)], vec![T::zero(); 8 * (tw + 1)]),
        |(rows, t), (ci, vc)| crate::cpu_dispatch!(input_transform_channel(x, lx, vc, s, g0, nr, ci, rows, t)),
    );
}

/// [`input_transform`] of input channel `ci`: vc [16, nr·tw]. Each tile row's 4 padded
/// input rows (column c is image column c − pad_left) are held split into their even and
/// odd columns (`rows`, `t`: [4][2][tw + 1]), so that every step is a run of
/// element-wise operations over the tiles, which vectorises; the arithmetic per element
/// is the textbook transform's, in its order. Its own function so that it compiles with
/// AVX-512 / AVX2 where the CPU has them.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_transform_channel<T: Elem>(x: &[T], lx: &PlaneLayout, vc: &mut [T], s: &Conv2dShape, g0: usize, nr: usize, ci: usize, rows: &mut [T], t: &mut [T]) {
    let (th, tw) = (s.out_h().div_ceil(2), s.out_w().div_ceil(2));
    let nt = nr * tw;
    let half = tw + 1;
    let wp = 2 * half;
    for r in 0..nr {
        let (b, ty) = tile_row(g0 + r, th);
        let plane = &x[lx.plane(b, ci) * s.h * s.w..][..s.h * s.w];
        for i in 0..4 {
            let dst = &mut rows[i * wp..(i + 1) * wp];
            dst.fill(T::zero());
            let iy = 2 * ty + i;
            if iy < s.pad_top || iy - s.pad_top >= s.h {
                continue;
            }
            let src = &plane[(iy - s.pad_top) * s.w..][..s.w];
            // Padded column c = 2j + q goes to dst[q·half + j] when it lies in the image.
            for q in 0..2 {
                let j0 = s.pad_left.saturating_sub(q).div_ceil(2);
                let j1 = (s.pad_left + s.w).saturating_sub(q).div_ceil(2).min(half);
                if j0 < j1 {
                    let first = 2 * j0 + q - s.pad_left;
                    dst[q * half + j0..q * half + j1]
                        .iter_mut()
                        .zip(src[first..].iter().step_by(2))
                        .for_each(|(d, &v)| *d = v);
                }
            }
        }
        // Vertical: t_k = (B^T d) row k, element-wise over the split rows.
        {
            let (r0, r1, r2, r3) = (&rows[..wp], &rows[wp..2 * wp], &rows[2 * wp..3 * wp], &rows[3 * wp..4 * wp]);
            let (t0, rest) = t.split_at_mut(wp);
            let (t1, rest) = rest.split_at_mut(wp);
            let (t2, t3) = rest.split_at_mut(wp);
            for c in 0..wp {
                t0[c] = r0[c] - r2[c];
                t1[c] = r1[c] + r2[c];
                t2[c] = r2[c] - r1[c];
                t3[c] = r1[c] - r3[c];
            }
        }
        // Horizontal: tile tx takes padded columns 2tx..2tx+3 = even[tx], odd[tx],
        // even[tx + 1], odd[tx + 1].
        let base = r * tw;
        for k in 0..4 {
            let tk = &t[k * wp..(k + 1) * wp];
            let (even, odd) = tk.split_at(half);
            let (e0, e1, o0, o1) = (&even[..tw], &even[1..=tw], &odd[..tw], &odd[1..=tw]);
            let (v0, rest) = vc[(4 * k) * nt..(4 * k + 4) * nt].split_at_mut(nt);
            let (v1, rest) = rest.split_at_mut(nt);
            let (v2, v3) = rest.split_at_mut(nt);
            let (v0, v1, v2, v3) = (
                &mut v0[base..base + tw],
                &mut v1[base..base + tw],
                &mut v2[base..base + tw],
                &mut v3[base..base + tw],
            );
            for tx in 0..tw {
                v0[tx] = e0[tx] - e1[tx];
                v1[tx] = o0[tx] + e1[tx];
                v2[tx] = e1[tx] - o0[tx];
                v3[tx] = o0[tx] - o1[tx];
            }
        }
    }
}

/// y[b, co, 2ty + a, 2tx + c] = (A^T M A)[a, c] + bias[co] for the tiles of band rows
/// g0..g0+nr, with A^T = [[1, 1, 1, 0], [0, 1, −1, −1]].
/// m: [16, c_out, nr·tw]; y: the [n, c_out, out_h, out_w] planes of `dst.y` (the band's
/// rows assigned).
fn output_transform<T: Elem>(m: &[T], bias: Option<&[T]>, y: &mut [T], s: &Conv2dShape, dst: &ConvLayout, g0: usize, nr: usize) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let (b_first, b_last) = (g0 / th, (g0 + nr - 1) / th);
    let planes = output_planes(y, s, &dst.y, b_first, b_last + 1 - b_first);
    planes.into_par_iter().enumerate().for_each_init(
        || vec![T::zero(); 10 * tw],
        |scratch, (pi, out)| {
            let (b, co) = (b_first + pi / s.c_out, pi % s.c_out);
            let bv = bias.map_or(T::zero(), |bb| bb[co]);
            crate::cpu_dispatch!(output_transform_plane(m, out, s, dst.relu, g0, nr, b, co, bv, scratch))
        },
    );
}

/// [`output_transform`] of output plane (b, co): out [out_h, out_w]. Every step runs
/// element-wise over the tiles of a row (the even and odd output columns apart, then
/// interleaved), which vectorises; its own function so that it compiles with AVX-512 /
/// AVX2 where the CPU has them. scratch: [10·tw].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_transform_plane<T: Elem>(m: &[T], out: &mut [T], s: &Conv2dShape, relu: bool, g0: usize, nr: usize, b: usize, co: usize, bv: T, scratch: &mut [T]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let nt = nr * tw;
    let plane = s.c_out * nt;
    let (srow, eo) = scratch.split_at_mut(8 * tw);
    let (even, odd) = eo.split_at_mut(tw);
    // Band rows of image b.
    let (ra, rb) = ((b * th).max(g0) - g0, ((b + 1) * th).min(g0 + nr) - g0);
    for r in ra..rb {
        let ty = (g0 + r) % th;
        let at = |xi: usize| &m[xi * plane + co * nt + r * tw..][..tw];
        // Vertical: s_a[j] = (A^T M)[a, j] per tile.
        let (s0, s1) = srow.split_at_mut(4 * tw);
        for j in 0..4 {
            let (m0, m1, m2, m3) = (at(j), at(4 + j), at(8 + j), at(12 + j));
            let (a0, a1) = (&mut s0[j * tw..(j + 1) * tw], &mut s1[j * tw..(j + 1) * tw]);
            for tx in 0..tw {
                a0[tx] = m0[tx] + m1[tx] + m2[tx];
                a1[tx] = m1[tx] - m2[tx] - m3[tx];
            }
        }
        for (a, sa) in [&*s0, &*s1].into_iter().enumerate() {
            let oy = 2 * ty + a;
            if oy >= oh {
                break;
            }
            let (p0, p1, p2, p3) = (&sa[..tw], &sa[tw..2 * tw], &sa[2 * tw..3 * tw], &sa[3 * tw..4 * tw]);
            for tx in 0..tw {
                even[tx] = p0[tx] + p1[tx] + p2[tx] + bv;
                odd[tx] = p1[tx] - p2[tx] - p3[tx] + bv;
            }
            let row = &mut out[oy * ow..(oy + 1) * ow];
            let pairs = ow / 2;
            for (tx, pair) in row[..2 * pairs].chunks_exact_mut(2).enumerate() {
                pair[0] = even[tx];
                pair[1] = odd[tx];
            }
            if ow % 2 == 1 {
                row[ow - 1] = even[tw - 1];
            }
            if relu {
                relu_seq(row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::{naive, values};
    use super::*;

    fn shapes() -> Vec<Conv2dShape> {
        vec![
            Conv2dShape::square(2, 16, 7, 5, 17, 3, 1, 1),
            Conv2dShape::square(3, 16, 1, 1, 16, 3, 1, 1),
            Conv2dShape::square(1, 20, 3, 3, 16, 3, 1, 0),
            Conv2dShape::square(2, 16, 9, 8, 24, 3, 1, 0),
            Conv2dShape {
                pad_top: 2,
                pad_bottom: 0,
                pad_left: 0,
                pad_right: 2,
                ..Conv2dShape::square(3, 17, 6, 7, 16, 3, 1, 0)
            },
            Conv2dShape::square(5, 32, 8, 8, 16, 3, 1, 1),
        ]
    }

    #[test]
    fn matches_the_direct_sum_in_f64() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for s in shapes() {
            s.validate().unwrap();
            assert!(applies(&s));
            let (x, w): (Vec<f64>, Vec<f64>) = (values(s.x_len(), 7919, 1013), values(s.w_len(), 104729, 997));
            let bias: Vec<f64> = (0..s.c_out).map(|i| i as f64 * 0.1 - 1.0).collect();
            let mut y = vec![f64::NAN; s.y_len()];
            pool.install(|| forward(&x, &w, Some(&bias), &mut y, &s, &ConvLayout::nchw(&s, false)));
            let want = naive(&x, &w, Some(&bias), &s);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{s:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn bands_across_images_and_threads_give_the_same_bits() {
        // Shapes small enough that one band holds several images, and one large enough
        // to need several bands.
        for s in [Conv2dShape::square(6, 16, 9, 9, 16, 3, 1, 1), Conv2dShape::square(1, 64, 70, 66, 64, 3, 1, 1)] {
            let (x, w): (Vec<f32>, Vec<f32>) = (values(s.x_len(), 7919, 1013), values(s.w_len(), 104729, 997));
            let runs: Vec<Vec<f32>> = [1, 2, 5]
                .iter()
                .map(|&th| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(th).build().unwrap();
                    let mut y = vec![0f32; s.y_len()];
                    pool.install(|| forward(&x, &w, None, &mut y, &s, &ConvLayout::nchw(&s, false)));
                    y
                })
                .collect();
            assert!(runs.iter().all(|r| r == &runs[0]), "{s:?}");
            // One image at a time gives the same bits as the batch (tiles are independent).
            let s1 = Conv2dShape { n: 1, ..s };
            let mut y1 = vec![0f32; s1.y_len()];
            forward(&x[..s1.x_len()], &w, None, &mut y1, &s1, &ConvLayout::nchw(&s1, false));
            assert_eq!(&runs[0][..s1.y_len()], &y1[..]);
        }
    }
}
