//! Pooling, bilinear resizing, ReLU and channel concatenation of NCHW maps (the FID
//! Inception's image ops besides the convolution). Parallel over (image, channel) planes.

use rayon::prelude::*;

use super::Elem;
use crate::backend::{Pool2dShape, PoolKind, ResizeMode};

/// y [n, c, out_h, out_w] = pool(x [n, c, h, w]) (assign).
///
/// Row-oriented: for each output row, every window row and window column adds (or
/// maxes) a whole run of outputs at once — a contiguous slice when the stride is 1, so it
/// vectorises. Each output still takes its inputs in the order of a plain window loop
/// (window rows outer, columns inner, starting from 0 or −∞), so the result is the same
/// bits as that loop.
pub fn pool2d<T: Elem>(x: &[T], y: &mut [T], s: &Pool2dShape, kind: PoolKind) {
    let (oh, ow) = (s.out_h(), s.out_w());
    if oh * ow == 0 {
        return;
    }
    // Per window column kx: the outputs [lo, hi) whose input column ox·stride + kx − pad
    // lies inside the image.
    let taps: Vec<(usize, usize)> = (0..s.k)
        .map(|kx| {
            let lo = s.pad.saturating_sub(kx).div_ceil(s.stride).min(ow);
            let hi = if s.w + s.pad > kx {
                ((s.w + s.pad - kx - 1) / s.stride + 1).min(ow)
            } else {
                0
            };
            (lo, hi.max(lo))
        })
        .collect();
    // Valid window columns per output column (the average's divisor, with the rows).
    let mut cols = vec![0usize; ow];
    for &(lo, hi) in &taps {
        cols[lo..hi].iter_mut().for_each(|c| *c += 1);
    }
    let init = match kind {
        PoolKind::Max => T::neg_infinity(),
        PoolKind::AvgExcludePad => T::zero(),
    };
    y[..s.y_len()]
        .par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(pl, out)| crate::cpu_dispatch!(pool_plane(&x[pl * s.h * s.w..(pl + 1) * s.h * s.w], out, s, kind, &taps, &cols, init)));
}

/// One (image, channel) plane of [`pool2d`]: plane [h, w] → out [out_h, out_w]. Its own
/// function so that it compiles with AVX-512 / AVX2 where the CPU has them (the same
/// operations in the same order: the same bits).
#[inline(always)]
fn pool_plane<T: Elem>(plane: &[T], out: &mut [T], s: &Pool2dShape, kind: PoolKind, taps: &[(usize, usize)], cols: &[usize], init: T) {
    let ow = s.out_w();
    {
        for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
            let y0 = (oy * s.stride) as isize - s.pad as isize;
            let (ya, yb) = (y0.max(0) as usize, ((y0 + s.k as isize).max(0) as usize).min(s.h));
            row.fill(init);
            for r in ya..yb {
                let src = &plane[r * s.w..(r + 1) * s.w];
                for (kx, &(lo, hi)) in taps.iter().enumerate() {
                    if lo == hi {
                        continue;
                    }
                    let ix0 = lo * s.stride + kx - s.pad;
                    let acc = &mut row[lo..hi];
                    match (kind, s.stride) {
                        (PoolKind::AvgExcludePad, 1) => acc.iter_mut().zip(&src[ix0..]).for_each(|(a, &v)| *a = *a + v),
                        (PoolKind::Max, 1) => acc.iter_mut().zip(&src[ix0..]).for_each(|(a, &v)| *a = max_or_nan(*a, v)),
                        (PoolKind::AvgExcludePad, st) => acc.iter_mut().zip(src[ix0..].iter().step_by(st)).for_each(|(a, &v)| *a = *a + v),
                        (PoolKind::Max, st) => acc.iter_mut().zip(src[ix0..].iter().step_by(st)).for_each(|(a, &v)| *a = max_or_nan(*a, v)),
                    }
                }
            }
            if kind == PoolKind::AvgExcludePad {
                let rows = yb - ya;
                row.iter_mut().zip(cols).for_each(|(a, &c)| *a = *a / T::of((rows * c) as f64));
            }
        }
    }
}

/// The running maximum that lets a NaN through (as PyTorch's max pooling does).
#[inline(always)]
fn max_or_nan<T: Elem>(m: T, v: T) -> T {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain window loop the row-oriented pooling must equal bit for bit.
    fn plain(x: &[f32], s: &Pool2dShape, kind: PoolKind) -> Vec<f32> {
        let (oh, ow) = (s.out_h(), s.out_w());
        let mut y = vec![0f32; s.y_len()];
        for pl in 0..s.n * s.c {
            let plane = &x[pl * s.h * s.w..][..s.h * s.w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let (y0, x0) = ((oy * s.stride) as isize - s.pad as isize, (ox * s.stride) as isize - s.pad as isize);
                    let (ya, yb) = (y0.max(0) as usize, ((y0 + s.k as isize) as usize).min(s.h));
                    let (xa, xb) = (x0.max(0) as usize, ((x0 + s.k as isize) as usize).min(s.w));
                    let mut acc = if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
                    for r in ya..yb {
                        for &v in &plane[r * s.w + xa..r * s.w + xb] {
                            acc = if kind == PoolKind::Max { max_or_nan(acc, v) } else { acc + v };
                        }
                    }
                    if kind == PoolKind::AvgExcludePad {
                        acc /= ((yb - ya) * (xb - xa)) as f32;
                    }
                    y[(pl * oh + oy) * ow + ox] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn equals_the_plain_window_loop_bit_for_bit() {
        let mut seed = 7u64;
        let mut next = |m: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % m
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let mut tried = 0;
        while tried < 300 {
            let k = 1 + next(5);
            let s = Pool2dShape {
                n: 1 + next(2),
                c: 1 + next(3),
                h: 1 + next(12),
                w: 1 + next(12),
                k,
                stride: 1 + next(3),
                pad: next(k),
            };
            if s.validate().is_err() {
                continue;
            }
            tried += 1;
            let mut x: Vec<f32> = (0..s.x_len()).map(|i| ((i * 7919 % 1013) as f32 / 101.3) - 5.0).collect();
            if tried % 10 == 0 {
                let at = next(x.len());
                x[at] = f32::NAN;
            }
            for kind in [PoolKind::Max, PoolKind::AvgExcludePad] {
                let mut y = vec![f32::INFINITY; s.y_len()];
                pool.install(|| pool2d(&x, &mut y, &s, kind));
                let want = plain(&x, &s, kind);
                let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                assert!(same, "{s:?} {kind:?}: {y:?} vs {want:?}");
            }
        }
    }
}
