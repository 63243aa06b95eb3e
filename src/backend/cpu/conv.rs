//! 2-D convolution (NCHW, zero padding), forward: im2col in bounded tiles of output rows
//! feeding the `gemm` crate, one image at a time.
//!
//! Per image, y[c_out, P] = W[c_out, K] · col[K, P] with K = c_in·kh·kw and P the output
//! pixels. The column matrix is never built whole: it is filled for a band of output
//! rows at a time, at most [`TILE_ELEMS`] elements (16 MiB of f32), so a 512×512 decode
//! needs a few MiB of scratch instead of gigabytes. A 1×1 stride-1 unpadded convolution
//! reads x directly (no copy).
//!
//! Thread-count independence: the tiles depend only on the shape; the column fill is
//! split by column-matrix rows, and the product is the `gemm` crate's, which splits only
//! its m/n loops (see `gemm.rs`); no reduction is ever split.

use rayon::prelude::*;

use super::{gemm::matmul, Elem};
use crate::backend::Conv2dShape;

/// Most elements of one im2col tile.
pub const TILE_ELEMS: usize = 1 << 22;

/// Output rows per im2col tile for `s` (at least one).
pub fn tile_rows(s: &Conv2dShape) -> usize {
    let per_row = (s.k_len() * s.out_w()).max(1);
    (TILE_ELEMS / per_row).clamp(1, s.out_h().max(1))
}

/// y = conv(x, w) + bias. x: [n, c_in, h, w]; w: [c_out, c_in, kh, kw]; bias: [c_out];
/// y: [n, c_out, out_h, out_w] (assign).
pub fn forward<T: Elem>(x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T], s: &Conv2dShape) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let p = oh * ow;
    let k = s.k_len();
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * p;
    if s.n == 0 || p == 0 {
        return;
    }
    let w = &w[..s.w_len()];
    let beta = if bias.is_some() { T::one() } else { T::zero() };
    let rows = tile_rows(s);
    let mut col: Vec<T> = if s.is_pointwise() { Vec::new() } else { vec![T::zero(); k * rows * ow] };
    for b in 0..s.n {
        let xi = &x[b * x_img..(b + 1) * x_img];
        let yi = &mut y[b * y_img..(b + 1) * y_img];
        match bias {
            Some(bias) => yi.par_chunks_mut(p).zip(&bias[..s.c_out]).for_each(|(row, &bv)| row.fill(bv)),
            None => yi.fill(T::zero()),
        }
        if s.is_pointwise() {
            matmul(s.c_out, k, p, w, k, 1, xi, p, 1, beta, yi, p, 1);
            continue;
        }
        let mut r0 = 0;
        while r0 < oh {
            let nr = rows.min(oh - r0);
            let tp = nr * ow;
            let col = &mut col[..k * tp];
            im2col(xi, col, s, r0, nr);
            matmul(s.c_out, k, tp, w, k, 1, col, tp, 1, beta, &mut yi[r0 * ow..], p, 1);
            r0 += nr;
        }
    }
}

/// col[(ci, ky, kx), (r, ox)] = x[ci, (r0 + r)·sh + ky − pad_top, ox·sw + kx − pad_left]
/// (0 outside the image) for the `nr` output rows from `r0`. x: [c_in, h, w] of one
/// image; col: [K, nr·ow].
fn im2col<T: Elem>(x: &[T], col: &mut [T], s: &Conv2dShape, r0: usize, nr: usize) {
    let ow = s.out_w();
    let tp = nr * ow;
    col.par_chunks_mut(tp).enumerate().for_each(|(kr, dst)| {
        let ci = kr / (s.kh * s.kw);
        let ky = (kr / s.kw) % s.kh;
        let kx = kr % s.kw;
        let plane = &x[ci * s.h * s.w..(ci + 1) * s.h * s.w];
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
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f64], w: &[f64], bias: Option<&[f64]>, s: &Conv2dShape) -> Vec<f64> {
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
                forward(&x, &w, bb, &mut y, &s);
                assert_eq!(y, naive(&x, &w, bb, &s), "{s:?}");
            }
        }
    }
}
