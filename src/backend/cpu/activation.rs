//! Elementwise activations (GELU-tanh, SiLU, SwiGLU) and their backward passes, split
//! into fixed-size chunks across the pool and vectorised (see [`super::vmath`]).

use rayon::prelude::*;

use super::vmath::sigmoid;
use super::Elem;
use crate::cpu_dispatch;

const CHUNK: usize = 4096;
const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2/π)
const GELU_A: f64 = 0.044715;

/// y = ½x(1 + tanh(√(2/π)(x + 0.044715x³))) = x·σ(2u), u = √(2/π)(x + 0.044715x³).
pub fn gelu_tanh_forward<T: Elem>(x: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        cpu_dispatch!(for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = gelu_tanh(xv);
        })
    });
}

/// y = GELU-tanh(y) in place on the calling thread (the epilogue of a fused Linear):
/// the same bits as [`gelu_tanh_forward`].
pub fn gelu_tanh_in_place<T: Elem>(y: &mut [T]) {
    cpu_dispatch!(for v in y.iter_mut() {
        *v = gelu_tanh(*v);
    })
}

/// GELU-tanh of one value, x·σ(2u) (the one formula every GELU forward here uses).
#[inline(always)]
fn gelu_tanh<T: Elem>(x: T) -> T {
    let (c2, a) = (T::of(2.0 * GELU_C), T::of(GELU_A));
    x * sigmoid(c2 * (x + a * x * x * x))
}

/// dx = GELU'(x)·dy, GELU'(x) = s + x·s(1 − s)·2√(2/π)(1 + 3·0.044715x²), s = σ(2u).
pub fn gelu_tanh_backward<T: Elem>(x: &[T], dy: &[T], dx: &mut [T]) {
    let (c2, a, three) = (T::of(2.0 * GELU_C), T::of(GELU_A), T::of(3.0));
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dc, (xc, gc))| {
            cpu_dispatch!(for ((d, &xv), &g) in dc.iter_mut().zip(xc).zip(gc) {
                let s = sigmoid(c2 * (xv + a * xv * xv * xv));
                let du2 = c2 * (T::one() + three * a * xv * xv);
                *d = g * (s + xv * s * (T::one() - s) * du2);
            })
        });
}

/// y = x·σ(x).
pub fn silu_forward<T: Elem>(x: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        cpu_dispatch!(for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = xv * sigmoid(xv);
        })
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
            cpu_dispatch!(for ((d, &xv), &g) in dc.iter_mut().zip(xc).zip(gc) {
                *d = g * silu_grad(xv);
            })
        });
}

/// y[n, :] = SiLU(x12[n, :h]) ⊙ x12[n, h:2h]; x12: [N, 2h]; y: [N, h].
pub fn swiglu_forward<T: Elem>(x12: &[T], y: &mut [T], n: usize, h: usize) {
    y[..n * h].par_chunks_mut(h).zip(x12.par_chunks(2 * h)).for_each(|(yr, xr)| {
        let (x1, x2) = xr.split_at(h);
        cpu_dispatch!(for j in 0..h {
            yr[j] = x1[j] * sigmoid(x1[j]) * x2[j];
        })
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
            cpu_dispatch!(for j in 0..h {
                let s = sigmoid(x1[j]);
                d1[j] = gr[j] * x2[j] * s * (T::one() + x1[j] * (T::one() - s));
                d2[j] = gr[j] * x1[j] * s;
            })
        });
}
