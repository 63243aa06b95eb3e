//! Data movement of image tensors: nearest-neighbour ×2 upsampling and the batched
//! transpose that turns NCHW feature maps into token rows [n, hw, c] and back.

use rayon::prelude::*;

use super::Elem;

/// y [n, c, 2h, 2w] = x [n, c, h, w] repeated 2×2 (assign).
pub fn upsample_nearest2x<T: Elem>(x: &[T], y: &mut [T], n: usize, c: usize, h: usize, w: usize) {
    if h == 0 || w == 0 {
        return;
    }
    y[..n * c * 4 * h * w].par_chunks_mut(4 * h * w).enumerate().for_each(|(pl, out)| {
        let src = &x[pl * h * w..(pl + 1) * h * w];
        for (r, srow) in src.chunks_exact(w).enumerate() {
            let (top, bottom) = out[2 * r * 2 * w..(2 * r + 2) * 2 * w].split_at_mut(2 * w);
            for (j, &v) in srow.iter().enumerate() {
                top[2 * j] = v;
                top[2 * j + 1] = v;
            }
            bottom.copy_from_slice(top);
        }
    });
}

/// y [batch, cols, rows] = x [batch, rows, cols] transposed per batch entry (assign);
/// blocked, parallel over (batch entry, block of destination rows).
pub fn transpose_batched<T: Elem>(x: &[T], y: &mut [T], batch: usize, rows: usize, cols: usize) {
    const BLOCK: usize = 32;
    let m = rows * cols;
    if m == 0 {
        return;
    }
    y[..batch * m].par_chunks_mut(m).enumerate().for_each(|(b, yb)| {
        let xb = &x[b * m..(b + 1) * m];
        yb.par_chunks_mut(BLOCK * rows).enumerate().for_each(|(bi, d)| {
            let c0 = bi * BLOCK;
            let nc = d.len() / rows;
            for r0 in (0..rows).step_by(BLOCK) {
                for r in r0..(r0 + BLOCK).min(rows) {
                    for c in 0..nc {
                        d[c * rows + r] = xb[r * cols + c0 + c];
                    }
                }
            }
        });
    });
}
