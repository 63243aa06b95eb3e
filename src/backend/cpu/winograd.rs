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
    let (th, tw) = (s.out_h().div_ceil(2), s.out_w().div_ceil(2));
    let nt = nr * tw;
    // A tile row's 4 input rows, padded: column c is image column c − pad_left.
    let wp = 2 * tw + 2;
    v.par_chunks_mut(16 * nt).enumerate().for_each(|(ci, vc)| {
        let mut rows = vec![T::zero(); 4 * wp];
        let mut t = vec![T::zero(); 4 * wp];
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
                let (c0, c1) = (s.pad_left.min(wp), (s.pad_left + s.w).min(wp));
                dst[c0..c1].copy_from_slice(&src[..c1 - c0]);
            }
            // Vertical: t_k = (B^T d) row k, over whole padded rows.
            {
                let (r0, r1, r2, r3) = (&rows[..wp], &rows[wp..2 * wp], &rows[2 * wp..3 * wp], &rows[3 * wp..]);
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
            // Horizontal, per tile: columns 2tx..2tx+3 of each t_k.
            for k in 0..4 {
                let tk = &t[k * wp..(k + 1) * wp];
                let base = r * tw;
                let (v0, rest) = vc[(4 * k) * nt..(4 * k + 4) * nt].split_at_mut(nt);
                let (v1, rest) = rest.split_at_mut(nt);
                let (v2, v3) = rest.split_at_mut(nt);
                for tx in 0..tw {
                    let d = &tk[2 * tx..2 * tx + 4];
                    v0[base + tx] = d[0] - d[2];
                    v1[base + tx] = d[1] + d[2];
                    v2[base + tx] = d[2] - d[1];
                    v3[base + tx] = d[1] - d[3];
                }
            }
        }
    });
}

/// y[b, co, 2ty + a, 2tx + c] = (A^T M A)[a, c] + bias[co] for the tiles of band rows
/// g0..g0+nr, with A^T = [[1, 1, 1, 0], [0, 1, −1, −1]].
/// m: [16, c_out, nr·tw]; y: the [n, c_out, out_h, out_w] planes of `dst.y` (the band's
/// rows assigned).
fn output_transform<T: Elem>(m: &[T], bias: Option<&[T]>, y: &mut [T], s: &Conv2dShape, dst: &ConvLayout, g0: usize, nr: usize) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let nt = nr * tw;
    let (b_first, b_last) = (g0 / th, (g0 + nr - 1) / th);
    let planes = output_planes(y, s, &dst.y, b_first, b_last + 1 - b_first);
    planes.into_par_iter().enumerate().for_each(|(pi, out)| {
        let (b, co) = (b_first + pi / s.c_out, pi % s.c_out);
        let bv = bias.map_or(T::zero(), |bb| bb[co]);
        let plane = s.c_out * nt;
        let mut srow = vec![T::zero(); 2 * 4 * tw];
        // Band rows of image b.
        let (ra, rb) = ((b * th).max(g0) - g0, ((b + 1) * th).min(g0 + nr) - g0);
        for r in ra..rb {
            let ty = (g0 + r) % th;
            let at = |xi: usize| &m[xi * plane + co * nt + r * tw..][..tw];
            // Vertical: s_a[j] = (A^T M)[a, j] per tile.
            let (s0, s1) = srow.split_at_mut(4 * tw);
            for j in 0..4 {
                let (m0, m1, m2, m3) = (at(j), at(4 + j), at(8 + j), at(12 + j));
                for tx in 0..tw {
                    s0[j * tw + tx] = m0[tx] + m1[tx] + m2[tx];
                    s1[j * tw + tx] = m1[tx] - m2[tx] - m3[tx];
                }
            }
            for (a, sa) in [&*s0, &*s1].into_iter().enumerate() {
                let oy = 2 * ty + a;
                if oy >= oh {
                    break;
                }
                let row = &mut out[oy * ow..(oy + 1) * ow];
                for tx in 0..tw {
                    let (p0, p1, p2, p3) = (sa[tx], sa[tw + tx], sa[2 * tw + tx], sa[3 * tw + tx]);
                    row[2 * tx] = p0 + p1 + p2 + bv;
                    if 2 * tx + 1 < ow {
                        row[2 * tx + 1] = p1 - p2 - p3 + bv;
                    }
                }
                if dst.relu {
                    relu_seq(row);
                }
            }
        }
    });
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
