//! Linear layer y = x·Wᵀ + b and its backward, over a `[W | b]` parameter view.

use super::gemm::{matmul_tiled, Epilogue};
use super::Elem;

/// row += bias (one output row segment; `bias` starts at the segment's first column).
#[inline]
fn add_bias<T: Elem>(row: &mut [T], bias: &[T]) {
    for (v, &b) in row.iter_mut().zip(bias) {
        *v = *v + b;
    }
}

/// y[n, o] = x[n, i] · W[o, i]ᵀ + b[o].
/// x: [n, i]; wb: [o·i (+ o)]; y: [n, o] (assign).
pub fn forward<T: Elem>(x: &[T], wb: &[T], has_bias: bool, y: &mut [T], n: usize, i: usize, o: usize) {
    let (w, bias) = wb.split_at(o * i);
    let epilogue = |_: usize, c0: usize, row: &mut [T]| add_bias(row, &bias[c0..]);
    // A = x (row-major), B = Wᵀ: element (p, j) = W[j, p] → rs 1, cs i.
    matmul_tiled(
        n,
        i,
        o,
        x,
        i,
        1,
        w,
        1,
        i,
        T::zero(),
        &mut y[..n * o],
        o,
        has_bias.then_some(&epilogue as Epilogue<T>),
    );
}

/// y[n, o] = x[n, i] · Wt[i, o] + b[o] with the weight stored transposed; with `gelu`,
/// GELU-tanh of it. The bias and the GELU are the product's epilogue: applied to each
/// output tile right after its product, on the same thread, while it is still in cache
/// (a separate pass over the whole output was memory-bound: 10% of the SiT-S/2 batch-8
/// forward), so the fused GELU has the same bits as the separate pass.
/// x: [n, i]; wtb: [i·o (+ o)]; y: [n, o] (assign). With the `gemm` crate a row-major B
/// is packed far faster than the column-major view of W[o, i] (≈1.9× on the SiT-S/2
/// fc2 product at batch 1), so inference keeps a transposed copy of the weights. (CPUs
/// that run the panel kernels keep it in panel form instead and take `panel::linear`.)
#[allow(clippy::too_many_arguments)]
pub fn forward_t<T: Elem>(x: &[T], wtb: &[T], has_bias: bool, gelu: bool, y: &mut [T], n: usize, i: usize, o: usize) {
    let (wt, bias) = wtb.split_at(o * i);
    let epilogue = |_: usize, c0: usize, row: &mut [T]| {
        if has_bias {
            add_bias(row, &bias[c0..]);
        }
        if gelu {
            super::activation::gelu_tanh_in_place(row);
        }
    };
    let epilogue = (has_bias || gelu).then_some(&epilogue as Epilogue<T>);
    matmul_tiled(n, i, o, x, i, 1, wt, o, 1, T::zero(), &mut y[..n * o], o, epilogue);
}

/// dst[c, r] = src[r, c] for a row-major [rows, cols] matrix (blocked, parallel over
/// blocks of destination rows).
pub fn transpose<T: Elem>(src: &[T], dst: &mut [T], rows: usize, cols: usize) {
    use rayon::prelude::*;
    const BLOCK: usize = 32;
    dst[..rows * cols].par_chunks_mut(BLOCK * rows).enumerate().for_each(|(bi, d)| {
        let c0 = bi * BLOCK;
        let nc = d.len() / rows;
        for r0 in (0..rows).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in 0..nc {
                    d[c * rows + r] = src[r * cols + c0 + c];
                }
            }
        }
    });
}

/// dx[n, i] = dy · W (assign, if wanted); dW += dyᵀ · x; db += Σₙ dy.
/// dy: [n, o]; x: [n, i]; wb: [o·i (+ o)]; dx: [n, i]; dwb: [o·i (+ o)] (accumulate).
pub fn backward<T: Elem>(dy: &[T], x: &[T], wb: &[T], has_bias: bool, dx: Option<&mut [T]>, dwb: &mut [T], n: usize, i: usize, o: usize) {
    let w = &wb[..o * i];
    if let Some(dx) = dx {
        matmul_tiled(n, o, i, dy, o, 1, w, i, 1, T::zero(), dx, i, None);
    }
    let (dw, db) = dwb.split_at_mut(o * i);
    // dW[o, i] += dyᵀ[o, n] · x[n, i]: A = dyᵀ → rs 1, cs o.
    matmul_tiled(o, n, i, dy, 1, o, x, i, 1, T::one(), dw, i, None);
    if has_bias {
        column_sums_into(dy, &mut db[..o], n, o);
    }
}

/// acc[j] += Σᵣ m[r, j] for a row-major [rows, cols] matrix, rows in order.
pub fn column_sums_into<T: Elem>(m: &[T], acc: &mut [T], rows: usize, cols: usize) {
    use rayon::prelude::*;
    let chunk = 256;
    acc.par_chunks_mut(chunk).enumerate().for_each(|(ci, a)| {
        let c0 = ci * chunk;
        let mut tmp: Vec<T> = vec![T::zero(); a.len()];
        for r in 0..rows {
            let row = &m[r * cols + c0..r * cols + c0 + a.len()];
            for (t, &v) in tmp.iter_mut().zip(row) {
                *t = *t + v;
            }
        }
        for (x, t) in a.iter_mut().zip(tmp) {
            *x = *x + t;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused GELU equals the product then the separate GELU pass, bit for bit, on
    /// products below and above the tiling size.
    #[test]
    fn fused_gelu_matches_the_separate_pass() {
        for (n, i, o) in [(3, 40, 24), (512, 40, 24), (549, 40, 24), (1100, 384, 700)] {
            let x: Vec<f32> = (0..n * i).map(|v| ((v * 7919 % 1013) as f32 / 1013.0) - 0.5).collect();
            let wtb: Vec<f32> = (0..i * o + o).map(|v| ((v * 104729 % 997) as f32 / 997.0) - 0.5).collect();
            let mut y = vec![0f32; n * o];
            forward_t(&x, &wtb, true, false, &mut y, n, i, o);
            let mut want = vec![0f32; n * o];
            super::super::activation::gelu_tanh_forward(&y, &mut want);
            let mut fused = vec![0f32; n * o];
            forward_t(&x, &wtb, true, true, &mut fused, n, i, o);
            assert!(fused == want, "{n}x{i}->{o}");
        }
    }
}
