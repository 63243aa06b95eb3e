//! Pooling, bilinear resizing, ReLU and channel concatenation of NCHW maps (the FID
//! Inception's image ops besides the convolution). Parallel over (image, channel) planes.

use rayon::prelude::*;

use super::Elem;
use crate::backend::{Pool2dShape, PoolKind, ResizeMode};

/// y [n, c, out_h, out_w] = pool(x [n, c, h, w]) (assign).
///
/// Per (image, channel) plane, the padded plane is split into its `stride × stride`
/// phases (sub-planes of every stride-th row and column, padding filled with 0 for the
/// average and −∞ for the maximum), so that every window tap (ky, kx) reads one
/// contiguous run of a phase for all outputs of the plane at once: the outputs are
/// accumulated in rows as wide as a phase (the extra columns are discarded), in long
/// runs that vectorise even for the 8×8 and 17×17 maps of the FID Inception. Each output
/// still takes its inputs in the order of a plain window loop (window rows outer,
/// columns inner, from 0 or −∞); a padding tap adds +0 (which leaves a sum that started
/// at +0 unchanged) or maxes with −∞, so the result is the same bits as that loop.
pub fn pool2d<T: Elem>(x: &[T], y: &mut [T], s: &Pool2dShape, kind: PoolKind) {
    let (oh, ow) = (s.out_h(), s.out_w());
    if oh * ow == 0 {
        return;
    }
    let geo = PhaseGeometry::new(s);
    // Valid (non-padding) window rows per output row and columns per output column.
    let valid = |o: usize, len: usize| {
        let lo = (o * s.stride).max(s.pad);
        let hi = (o * s.stride + s.k).min(len + s.pad);
        hi.saturating_sub(lo)
    };
    // The average's divisor per output: valid rows × valid columns of its window.
    let divisor: Vec<T> = (0..oh * ow).map(|o| T::of((valid(o / ow, s.h) * valid(o % ow, s.w)) as f64)).collect();
    let fill = match kind {
        PoolKind::Max => T::neg_infinity(),
        PoolKind::AvgExcludePad => T::zero(),
    };
    y[..s.y_len()].par_chunks_mut(oh * ow).enumerate().for_each_init(
        || (vec![fill; geo.phases_len()], vec![fill; geo.acc_len()]),
        |(phases, acc), (pl, out)| {
            let plane = &x[pl * s.h * s.w..(pl + 1) * s.h * s.w];
            crate::cpu_dispatch!(pool_plane(plane, out, s, kind, &geo, phases, acc, &divisor, fill))
        },
    );
}

/// The phase layout of [`pool2d`]: `stride²` sub-planes of `ph × pw` each; phase
/// (a, b) holds padded-plane element (i·stride + a, j·stride + b) at (i, j).
struct PhaseGeometry {
    stride: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
}

impl PhaseGeometry {
    fn new(s: &Pool2dShape) -> Self {
        let (hp, wp) = (s.h + 2 * s.pad, s.w + 2 * s.pad);
        PhaseGeometry {
            stride: s.stride,
            ph: hp.div_ceil(s.stride),
            pw: wp.div_ceil(s.stride),
            oh: s.out_h(),
            ow: s.out_w(),
        }
    }
    fn phases_len(&self) -> usize {
        self.stride * self.stride * self.ph * self.pw
    }
    /// Outputs accumulated in rows of a phase's width: the last row only as far as `ow`.
    fn acc_len(&self) -> usize {
        (self.oh - 1) * self.pw + self.ow
    }
}

/// One (image, channel) plane of [`pool2d`]: plane [h, w] → out [out_h, out_w], with the
/// phases and accumulator scratch of `geo`. Its own function so that it compiles with
/// AVX-512 / AVX2 where the CPU has them (the same operations in the same order: the
/// same bits).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pool_plane<T: Elem>(
    plane: &[T],
    out: &mut [T],
    s: &Pool2dShape,
    kind: PoolKind,
    geo: &PhaseGeometry,
    phases: &mut [T],
    acc: &mut [T],
    divisor: &[T], // [out_h·out_w]
    fill: T,
) {
    let (st, ph, pw) = (geo.stride, geo.ph, geo.pw);
    let phase_len = ph * pw;
    // Scatter the plane into the phases; padding and the phases' ragged ends keep `fill`
    // (set when the scratch was made: only plane positions are ever written).
    if st == 1 {
        for (r, src) in plane.chunks_exact(s.w).enumerate() {
            phases[(r + s.pad) * pw + s.pad..][..s.w].copy_from_slice(src);
        }
    } else {
        for (r, src) in plane.chunks_exact(s.w).enumerate() {
            let pr = r + s.pad;
            let row0 = (pr % st) * st * phase_len + (pr / st) * pw;
            for b in 0..st {
                // Plane columns c with (c + pad) mod stride = b, from c0, land at
                // phase column (c + pad)/stride.
                let c0 = (b + st - s.pad % st) % st;
                if c0 >= s.w {
                    continue;
                }
                let dst = &mut phases[row0 + b * phase_len + (c0 + s.pad) / st..];
                dst.iter_mut().zip(src[c0..].iter().step_by(st)).for_each(|(d, &v)| *d = v);
            }
        }
    }
    let len = acc.len();
    acc.fill(fill);
    for ky in 0..s.k {
        for kx in 0..s.k {
            let phase = (ky % st) * st + kx % st;
            let src = &phases[phase * phase_len + (ky / st) * pw + kx / st..][..len];
            match kind {
                PoolKind::AvgExcludePad => acc.iter_mut().zip(src).for_each(|(a, &v)| *a = *a + v),
                PoolKind::Max => acc.iter_mut().zip(src).for_each(|(a, &v)| *a = max_or_nan(*a, v)),
            }
        }
    }
    for ((row, a), d) in out.chunks_exact_mut(geo.ow).zip(acc.chunks(pw)).zip(divisor.chunks_exact(geo.ow)) {
        match kind {
            PoolKind::Max => row.copy_from_slice(&a[..geo.ow]),
            PoolKind::AvgExcludePad => row.iter_mut().zip(a).zip(d).for_each(|((o, &v), &d)| *o = v / d),
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
    x.par_chunks_mut(1 << 14).for_each(relu_seq);
}

/// x ← max(x, 0) on the calling thread (a NaN becomes 0).
pub fn relu_seq<T: Elem>(x: &mut [T]) {
    x.iter_mut().for_each(|v| *v = v.max(T::zero()));
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
