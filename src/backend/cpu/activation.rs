//! Elementwise activations (GELU-tanh, SiLU, SwiGLU) and their backward passes, split
//! into fixed-size chunks across the pool.

use rayon::prelude::*;

use super::Elem;

const CHUNK: usize = 4096;
const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2/π)
const GELU_A: f64 = 0.044715;

#[inline(always)]
fn sigmoid<T: Elem>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// y = ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
pub fn gelu_tanh_forward<T: Elem>(x: &[T], y: &mut [T]) {
    let (c, a, half) = (T::of(GELU_C), T::of(GELU_A), T::of(0.5));
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            let u = c * (xv + a * xv * xv * xv);
            *yv = half * xv * (T::one() + u.tanh());
        }
    });
}

/// dx = GELU'(x)·dy.
pub fn gelu_tanh_backward<T: Elem>(x: &[T], dy: &[T], dx: &mut [T]) {
    let (c, a, half, three) = (T::of(GELU_C), T::of(GELU_A), T::of(0.5), T::of(3.0));
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dc, (xc, gc))| {
            for ((d, &xv), &g) in dc.iter_mut().zip(xc).zip(gc) {
                let u = c * (xv + a * xv * xv * xv);
                let th = u.tanh();
                let du = c * (T::one() + three * a * xv * xv);
                *d = g * (half * (T::one() + th) + half * xv * (T::one() - th * th) * du);
            }
        });
}

/// y = x·σ(x).
pub fn silu_forward<T: Elem>(x: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = xv * sigmoid(xv);
        }
    });
}

#[inline(always)]
fn silu_grad<T: Elem>(x: T) -> T {
    let s = sigmoid(x);
    s * (T::one() + x * (T::one() - s))
}

/// dx = SiLU'(x)·dy.
pub fn silu_backward<T: Elem>(x: &[T], dy: &[T], dx: &mut [T]) {
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dc, (xc, gc))| {
            for ((d, &xv), &g) in dc.iter_mut().zip(xc).zip(gc) {
                *d = g * silu_grad(xv);
            }
        });
}

/// y[n, :] = SiLU(x12[n, :h]) ⊙ x12[n, h:2h]; x12: [N, 2h]; y: [N, h].
pub fn swiglu_forward<T: Elem>(x12: &[T], y: &mut [T], n: usize, h: usize) {
    y[..n * h].par_chunks_mut(h).zip(x12.par_chunks(2 * h)).for_each(|(yr, xr)| {
        let (x1, x2) = xr.split_at(h);
        for j in 0..h {
            yr[j] = x1[j] * sigmoid(x1[j]) * x2[j];
        }
    });
}

/// dx12 [N, 2h] (assign) from dy [N, h].
pub fn swiglu_backward<T: Elem>(x12: &[T], dy: &[T], dx12: &mut [T], n: usize, h: usize) {
    dx12[..n * 2 * h]
        .par_chunks_mut(2 * h)
        .zip(x12.par_chunks(2 * h).zip(dy.par_chunks(h)))
        .for_each(|(dr, (xr, gr))| {
            let (x1, x2) = xr.split_at(h);
            let (d1, d2) = dr.split_at_mut(h);
            for j in 0..h {
                d1[j] = gr[j] * x2[j] * silu_grad(x1[j]);
                d2[j] = gr[j] * x1[j] * sigmoid(x1[j]);
            }
        });
}
