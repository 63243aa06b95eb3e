//! Pooling, bilinear resizing, ReLU and channel concatenation of NCHW maps (the FID
//! Inception's image ops besides the convolution). Parallel over (image, channel) planes.

use rayon::prelude::*;

use super::Elem;
use crate::backend::{Pool2dShape, PoolKind, ResizeMode};

/// y [n, c, out_h, out_w] = pool(x [n, c, h, w]) (assign).
pub fn pool2d<T: Elem>(x: &[T], y: &mut [T], s: &Pool2dShape, kind: PoolKind) {
    let (oh, ow) = (s.out_h(), s.out_w());
    if oh * ow == 0 {
        return;
    }
    y[..s.y_len()].par_chunks_mut(oh * ow).enumerate().for_each(|(pl, out)| {
        let plane = &x[pl * s.h * s.w..(pl + 1) * s.h * s.w];
        for oy in 0..oh {
            let y0 = (oy * s.stride) as isize - s.pad as isize;
            let (ya, yb) = (y0.max(0) as usize, ((y0 + s.k as isize) as usize).min(s.h));
            for ox in 0..ow {
                let x0 = (ox * s.stride) as isize - s.pad as isize;
                let (xa, xb) = (x0.max(0) as usize, ((x0 + s.k as isize) as usize).min(s.w));
                out[oy * ow + ox] = match kind {
                    PoolKind::Max => {
                        let mut m = T::neg_infinity();
                        for r in ya..yb {
                            for &v in &plane[r * s.w + xa..r * s.w + xb] {
                                if v > m || v.is_nan() {
                                    m = v;
                                }
                            }
                        }
                        m
                    }
                    PoolKind::AvgExcludePad => {
                        let mut sum = T::zero();
                        for r in ya..yb {
                            for &v in &plane[r * s.w + xa..r * s.w + xb] {
                                sum = sum + v;
                            }
                        }
                        sum / T::of(((yb - ya) * (xb - xa)) as f64)
                    }
                };
            }
        }
    });
}

/// Source index pairs and weights of one axis: (lo, hi, λ) per output position, in f32
/// arithmetic as PyTorch and torch-fidelity compute them.
fn axis_taps(input: usize, output: usize, mode: ResizeMode) -> Vec<(usize, usize, f32)> {
    let scale = (input as f64 / output as f64) as f32;
    (0..output)
        .map(|o| {
            let src = match mode {
                ResizeMode::HalfPixel => (scale * (o as f32 + 0.5) - 0.5).max(0.0),
                ResizeMode::Tf1 => o as f32 * scale,
            };
            let lo = (src as usize).min(input - 1);
            let hi = (lo + 1).min(input - 1);
            (lo, hi, src - lo as f32)
        })
        .collect()
}

/// Bilinear resize x [n, c, h, w] → y [n, c, out_h, out_w] (assign).
#[allow(clippy::too_many_arguments)]
pub fn resize_bilinear<T: Elem>(x: &[T], y: &mut [T], n: usize, c: usize, h: usize, w: usize, out_h: usize, out_w: usize, mode: ResizeMode) {
    if out_h * out_w == 0 || h * w == 0 {
        return;
    }
    let ty = axis_taps(h, out_h, mode);
    let tx = axis_taps(w, out_w, mode);
    y[..n * c * out_h * out_w].par_chunks_mut(out_h * out_w).enumerate().for_each(|(pl, out)| {
        let p = &x[pl * h * w..(pl + 1) * h * w];
        for (oy, &(y0, y1, ly)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, lx)) in tx.iter().enumerate() {
                let (a, b) = (p[y0 * w + x0].f64() as f32, p[y0 * w + x1].f64() as f32);
                let (c_, d) = (p[y1 * w + x0].f64() as f32, p[y1 * w + x1].f64() as f32);
                let v = match mode {
                    ResizeMode::HalfPixel => (1.0 - ly) * ((1.0 - lx) * a + lx * b) + ly * ((1.0 - lx) * c_ + lx * d),
                    ResizeMode::Tf1 => {
                        let top = a + (b - a) * lx;
                        let bottom = c_ + (d - c_) * lx;
                        top + (bottom - top) * ly
                    }
                };
                out[oy * out_w + ox] = T::of(v as f64);
            }
        }
    });
}

/// x ← max(x, 0).
pub fn relu<T: Elem>(x: &mut [T]) {
    x.par_chunks_mut(1 << 14).for_each(|c| c.iter_mut().for_each(|v| *v = v.max(T::zero())));
}

/// dst[b, offset + ch, :] = src[b, ch, :]: src [n, c_src, hw] into dst [n, c_dst, hw].
pub fn copy_channels<T: Elem>(src: &[T], dst: &mut [T], n: usize, c_src: usize, c_dst: usize, offset: usize, hw: usize) {
    let m = c_src * hw;
    dst[..n * c_dst * hw].par_chunks_mut(c_dst * hw).enumerate().for_each(|(b, d)| {
        d[offset * hw..offset * hw + m].copy_from_slice(&src[b * m..(b + 1) * m]);
    });
}
