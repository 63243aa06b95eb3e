//! 2-D convolution (NCHW, zero padding), forward: im2col in bounded tiles of output rows
//! feeding the `gemm` crate, one image at a time. 3×3 stride-1 convolutions with 16 or
//! more channels on both sides go to Winograd's F(2×2, 3×3) instead (`winograd.rs`).
//!
//! Per image, y[c_out, P] = W[c_out, K] · col[K, P] with K = c_in·kh·kw and P the output
//! pixels. The column matrix is never built whole: it is filled for a band of output
//! rows at a time, at most [`TILE_ELEMS`] elements (16 MiB of f32), so a 512×512 decode
//! needs a few MiB of scratch instead of gigabytes. A 1×1 stride-1 unpadded convolution
//! reads x directly (no copy). Maps may be NCHW or channels-outer, or channels of a
//! wider map ([`ConvLayout`]); on channels-outer maps the small-map products read and
//! write the maps in place.
//!
//! Thread-count independence: the tiles depend only on the shape; the column fill is
//! split by column-matrix rows, and the product is [`matmul_tiled`]'s, which splits only
//! the output into tiles (see `gemm.rs`); no reduction is ever split. (Tiles against the
//! crate's own threading: FID Inception features 117.5 → 112.8 ms per image on the
//! 2-core EPYC, three alternating runs of `examples/inception_bench`; the SD-VAE decode,
//! mostly Winograd, unchanged.)

use rayon::prelude::*;

use super::{gemm::matmul_tiled, pool::relu_seq, scratch::Scratch, Elem};
use crate::backend::{Conv2dShape, ConvLayout, PlaneLayout};

/// Most elements of one im2col tile.
pub const TILE_ELEMS: usize = 1 << 22;

/// Output rows per im2col tile for `s` (at least one).
pub fn tile_rows(s: &Conv2dShape) -> usize {
    let per_row = (s.k_len() * s.out_w()).max(1);
    (TILE_ELEMS / per_row).clamp(1, s.out_h().max(1))
}

/// y = conv(x, w) + bias (then ReLU if `l.relu`). x: the [n, c_in, h, w] planes of
/// `l.x`; w: [c_out, c_in, kh, kw]; bias: [c_out]; y: the [n, c_out, out_h, out_w]
/// planes of `l.y` assigned, the buffer's other elements untouched.
pub fn forward<T: Elem>(x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T], s: &Conv2dShape, l: &ConvLayout) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let p = oh * ow;
    if s.n == 0 || p == 0 {
        return;
    }
    if super::winograd::applies(s) {
        return super::winograd::forward(x, w, bias, y, s, l);
    }
    let images = images_per_product(s);
    if images > 1 {
        return forward_batched(x, w, bias, y, s, l, images);
    }
    let k = s.k_len();
    let hw = s.h * s.w;
    let (rsb, rsc) = (l.x.channel * hw, l.y.channel * p);
    let w = &w[..s.w_len()];
    let beta = if bias.is_some() { T::one() } else { T::zero() };
    let rows = tile_rows(s);
    let mut col = Scratch::<T>::for_overwrite(if s.is_pointwise() { 0 } else { k * rows * ow });
    for b in 0..s.n {
        fill_bias(output_planes(y, s, &l.y, b, 1), bias, s.c_out);
        let yi = &mut y[l.y.plane(b, 0) * p..];
        if s.is_pointwise() {
            matmul_tiled(s.c_out, k, p, w, k, 1, &x[l.x.plane(b, 0) * hw..], rsb, 1, beta, yi, rsc, None);
            if l.relu {
                output_planes(y, s, &l.y, b, 1).into_par_iter().for_each(relu_seq);
            }
            continue;
        }
        let mut r0 = 0;
        while r0 < oh {
            let nr = rows.min(oh - r0);
            let tp = nr * ow;
            let col = &mut col[..k * tp];
            col.par_chunks_mut(tp)
                .enumerate()
                .for_each(|(kr, dst)| im2col_row(x, &l.x, b, dst, s, kr, r0, nr));
            matmul_tiled(s.c_out, k, tp, w, k, 1, col, tp, 1, beta, &mut y[l.y.plane(b, 0) * p + r0 * ow..], rsc, None);
            if l.relu {
                output_planes(y, s, &l.y, b, 1)
                    .into_par_iter()
                    .for_each(|plane| relu_seq(&mut plane[r0 * ow..][..tp]));
            }
            r0 += nr;
        }
    }
}

/// Each plane ← its channel's bias (0 without one). planes: c_out per image, in
/// (image, channel) order; bias: [c_out].
fn fill_bias<T: Elem>(planes: Vec<&mut [T]>, bias: Option<&[T]>, c_out: usize) {
    planes
        .into_par_iter()
        .enumerate()
        .for_each(|(i, plane)| plane.fill(bias.map_or(T::zero(), |b| b[i % c_out])));
}

/// Output maps smaller than this many pixels share one product with the batch's other
/// images (the FID Inception's 35×35, 17×17 and 8×8 maps): one packing of the filters per
/// group of images instead of one per image, and products wide enough to keep every
/// thread busy.
const SMALL_MAP: usize = 2048;

/// Images whose column matrices go into one product: 1 (one image at a time, in row
/// tiles) unless the maps are small and the batch has several.
fn images_per_product(s: &Conv2dShape) -> usize {
    let p = s.out_h() * s.out_w();
    if s.n < 2 || p >= SMALL_MAP {
        return 1;
    }
    (TILE_ELEMS / (s.k_len() * p).max(1)).clamp(1, s.n)
}

/// [`forward`] for small maps: the column matrices of `images` images side by side,
/// col [K, images·P], in one product per group of images. Where the images' planes of
/// a channel are adjacent (channels-outer maps, `PlaneLayout::image == 1`) the product
/// reads a pointwise convolution's input in place and writes y in place; otherwise the
/// column matrix is filled and the product goes to a scratch [c_out, images·P] whose
/// blocks are then copied into y (through ReLU if `l.relu`). Each output is the same sum
/// as on the one-image path (the `gemm` crate's k-blocking depends on K alone, and C
/// starts at the bias on both), so the result does not depend on how the images are
/// grouped or batched, nor on the layout.
fn forward_batched<T: Elem>(x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T], s: &Conv2dShape, l: &ConvLayout, images: usize) {
    let (oh, p) = (s.out_h(), s.out_h() * s.out_w());
    let k = s.k_len();
    let w = &w[..s.w_len()];
    let beta = if bias.is_some() { T::one() } else { T::zero() };
    let in_place_x = s.is_pointwise() && l.x.image == 1;
    let in_place_y = l.y.image == 1;
    let mut col = Scratch::<T>::for_overwrite(if in_place_x { 0 } else { k * images * p });
    let mut prod = Scratch::<T>::for_overwrite(if in_place_y { 0 } else { s.c_out * images * p });
    let mut b0 = 0;
    while b0 < s.n {
        let nb = images.min(s.n - b0);
        let wide = nb * p;
        let (b_mat, rsb): (&[T], usize) = if in_place_x {
            (&x[l.x.plane(b0, 0) * p..], l.x.channel * p)
        } else {
            let col = &mut col[..k * wide];
            col.par_chunks_mut(wide).enumerate().for_each(|(kr, dst)| {
                for (bi, seg) in dst.chunks_exact_mut(p).enumerate() {
                    im2col_row(x, &l.x, b0 + bi, seg, s, kr, 0, oh);
                }
            });
            (col, wide)
        };
        if in_place_y {
            // Rows of C: channel co's planes of images b0..b0+nb, adjacent.
            let rsc = l.y.channel * p;
            let c0 = l.y.plane(b0, 0) * p;
            fill_bias(output_rows(&mut y[c0..], s.c_out, rsc, wide), bias, s.c_out);
            matmul_tiled(s.c_out, k, wide, w, k, 1, b_mat, rsb, 1, beta, &mut y[c0..], rsc, None);
            if l.relu {
                output_rows(&mut y[c0..], s.c_out, rsc, wide).into_par_iter().for_each(relu_seq);
            }
        } else {
            let prod = &mut prod[..s.c_out * wide];
            fill_bias(prod.chunks_mut(wide).collect(), bias, s.c_out);
            matmul_tiled(s.c_out, k, wide, w, k, 1, b_mat, rsb, 1, beta, prod, wide, None);
            let prod = &*prod;
            output_planes(y, s, &l.y, b0, nb).into_par_iter().enumerate().for_each(|(pi, dst)| {
                let (bi, co) = (pi / s.c_out, pi % s.c_out);
                let src = &prod[co * wide + bi * p..][..p];
                if l.relu {
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v.max(T::zero()));
                } else {
                    dst.copy_from_slice(src);
                }
            });
        }
        b0 += nb;
    }
}

/// `count` rows of `len` elements, `stride` apart from the start of `y` (stride ≥ len).
fn output_rows<T>(y: &mut [T], count: usize, stride: usize, len: usize) -> Vec<&mut [T]> {
    let mut rows = Vec::with_capacity(count);
    let mut rest = y;
    for i in 0..count {
        let (row, tail) = rest.split_at_mut(len);
        rows.push(row);
        if i + 1 < count {
            rest = &mut tail[stride - len..];
        } else {
            break;
        }
    }
    rows
}

/// The output planes [out_h·out_w] of images [b0, b0 + nb) in y, in (image, channel)
/// order: plane (b, c) of layout `ly` for c < c_out. The planes must be distinct
/// ([`PlaneLayout::distinct`], checked by [`ConvLayout::validate`]).
pub(super) fn output_planes<'a, T>(y: &'a mut [T], s: &Conv2dShape, ly: &PlaneLayout, b0: usize, nb: usize) -> Vec<&'a mut [T]> {
    let p = s.out_h() * s.out_w();
    let mut order: Vec<(usize, usize)> = (0..nb * s.c_out).map(|i| (ly.plane(b0 + i / s.c_out, i % s.c_out), i)).collect();
    order.sort_unstable();
    let mut planes: Vec<Option<&'a mut [T]>> = (0..order.len()).map(|_| None).collect();
    let (mut rest, mut at) = (y, 0);
    for (pl, i) in order {
        let (_, tail) = rest.split_at_mut(pl * p - at);
        let (plane, tail) = tail.split_at_mut(p);
        planes[i] = Some(plane);
        rest = tail;
        at = (pl + 1) * p;
    }
    planes.into_iter().map(|pl| pl.expect("every plane is distinct")).collect()
}

/// One row of the column matrix: dst[(r, ox)] = x[b, ci, (r0 + r)·sh + ky − pad_top,
/// ox·sw + kx − pad_left] (0 outside the image) for column-matrix row kr = (ci, ky, kx)
/// and the `nr` output rows from `r0`. x: the planes of `lx`; dst: [nr·ow].
#[allow(clippy::too_many_arguments)]
fn im2col_row<T: Elem>(x: &[T], lx: &PlaneLayout, b: usize, dst: &mut [T], s: &Conv2dShape, kr: usize, r0: usize, nr: usize) {
    let ow = s.out_w();
    let ci = kr / (s.kh * s.kw);
    let ky = (kr / s.kw) % s.kh;
    let kx = kr % s.kw;
    let plane = &x[lx.plane(b, ci) * s.h * s.w..][..s.h * s.w];
    // Output columns whose input column lies inside the image: ox·sw + kx − pl ∈ [0, w).
    let lo = s.pad_left.saturating_sub(kx).div_ceil(s.stride_w).min(ow);
    let hi = if s.w + s.pad_left > kx {
        ((s.w + s.pad_left - kx - 1) / s.stride_w + 1).min(ow)
    } else {
        0
    };
    for r in 0..nr {
        let d = &mut dst[r * ow..(r + 1) * ow];
        let iy = (r0 + r) * s.stride_h + ky;
        if iy < s.pad_top || iy - s.pad_top >= s.h || lo >= hi {
            d.fill(T::zero());
            continue;
        }
        let src = &plane[(iy - s.pad_top) * s.w..][..s.w];
        d[..lo].fill(T::zero());
        d[hi..].fill(T::zero());
        let ix0 = lo * s.stride_w + kx - s.pad_left;
        if s.stride_w == 1 {
            d[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
        } else {
            for (j, v) in d[lo..hi].iter_mut().enumerate() {
                *v = src[ix0 + j * s.stride_w];
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The direct sum in f64 (also the reference of `winograd.rs`'s tests).
    pub(crate) fn naive(x: &[f64], w: &[f64], bias: Option<&[f64]>, s: &Conv2dShape) -> Vec<f64> {
        let (oh, ow) = (s.out_h(), s.out_w());
        let mut y = vec![0.0; s.y_len()];
        for b in 0..s.n {
            for co in 0..s.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias.map_or(0.0, |bb| bb[co]);
                        for ci in 0..s.c_in {
                            for ky in 0..s.kh {
                                for kx in 0..s.kw {
                                    let iy = (oy * s.stride_h + ky) as isize - s.pad_top as isize;
                                    let ix = (ox * s.stride_w + kx) as isize - s.pad_left as isize;
                                    if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                        continue;
                                    }
                                    acc += x[((b * s.c_in + ci) * s.h + iy as usize) * s.w + ix as usize] * w[((co * s.c_in + ci) * s.kh + ky) * s.kw + kx];
                                }
                            }
                        }
                        y[((b * s.c_out + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    /// Deterministic test values in [−0.5, 0.5): ((i·a) mod m)/m − ½.
    pub(crate) fn values<T: Elem>(len: usize, a: usize, m: usize) -> Vec<T> {
        (0..len).map(|i| T::of((i * a % m) as f64 / m as f64 - 0.5)).collect()
    }

    #[test]
    fn grouped_images_give_the_same_bits_as_one_at_a_time() {
        // Small maps (several images per product): pointwise, strided, 1×7 and padded 5×5.
        let shapes = [
            Conv2dShape::square(7, 96, 8, 8, 40, 1, 1, 0),
            Conv2dShape::square(5, 24, 17, 17, 20, 3, 2, 0),
            Conv2dShape {
                kh: 1,
                kw: 7,
                pad_top: 0,
                pad_bottom: 0,
                ..Conv2dShape::square(6, 32, 17, 17, 24, 7, 1, 3)
            },
            Conv2dShape::square(4, 48, 35, 35, 64, 5, 1, 2),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for s in shapes {
            s.validate().unwrap();
            assert!(images_per_product(&s) > 1, "{s:?}");
            let (x, w) = (values(s.x_len(), 7919, 1013), values(s.w_len(), 104729, 997));
            let bias: Vec<f32> = (0..s.c_out).map(|i| i as f32 * 0.01).collect();
            let mut whole = vec![0f32; s.y_len()];
            pool.install(|| forward(&x, &w, Some(&bias), &mut whole, &s, &ConvLayout::nchw(&s, false)));
            for images in [1, 2, 3] {
                let mut part = vec![0f32; s.y_len()];
                forward_batched(&x, &w, Some(&bias), &mut part, &s, &ConvLayout::nchw(&s, false), images);
                assert!(part == whole, "{s:?} in groups of {images}");
            }
            // Each image alone (the one-image path) gives the same bits.
            let s1 = Conv2dShape { n: 1, ..s };
            for b in 0..s.n {
                let mut one = vec![0f32; s1.y_len()];
                forward(
                    &x[b * s1.x_len()..][..s1.x_len()],
                    &w,
                    Some(&bias),
                    &mut one,
                    &s1,
                    &ConvLayout::nchw(&s1, false),
                );
                assert!(one[..] == whole[b * s1.y_len()..][..s1.y_len()], "{s:?} image {b} alone");
            }
        }
    }

    #[test]
    fn matches_naive_on_odd_shapes() {
        let shapes = [
            Conv2dShape::square(2, 3, 7, 5, 4, 3, 1, 1),
            Conv2dShape::square(1, 2, 1, 1, 3, 1, 1, 0),
            Conv2dShape::square(1, 2, 1, 1, 3, 3, 1, 1),
            Conv2dShape {
                pad_top: 0,
                pad_left: 0,
                pad_bottom: 1,
                pad_right: 1,
                ..Conv2dShape::square(2, 3, 8, 6, 5, 3, 2, 0)
            },
            Conv2dShape {
                kh: 7,
                kw: 1,
                pad_left: 0,
                pad_right: 0,
                ..Conv2dShape::square(1, 3, 9, 4, 2, 7, 1, 3)
            },
            Conv2dShape::square(1, 3, 11, 11, 2, 5, 2, 2),
        ];
        for s in shapes {
            s.validate().unwrap();
            let x: Vec<f64> = (0..s.x_len()).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
            let w: Vec<f64> = (0..s.w_len()).map(|i| ((i * 17 % 7) as f64) - 3.0).collect();
            let bias: Vec<f64> = (0..s.c_out).map(|i| i as f64 - 1.0).collect();
            for with_bias in [false, true] {
                let bb = with_bias.then_some(&bias[..]);
                let mut y = vec![f64::NAN; s.y_len()];
                forward(&x, &w, bb, &mut y, &s, &ConvLayout::nchw(&s, false));
                assert_eq!(y, naive(&x, &w, bb, &s), "{s:?}");
            }
        }
    }
}
