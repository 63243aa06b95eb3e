//! Data-movement ops: patchify / unpatchify (and their adjoints), broadcast row adds,
//! label-embedding gather / scatter-add, elementwise accumulate.

use rayon::prelude::*;

use super::Elem;

/// dst += src.
pub fn add_assign<T: Elem>(src: &[T], dst: &mut [T]) {
    dst.par_chunks_mut(8192).zip(src.par_chunks(8192)).for_each(|(d, s)| {
        for (a, &b) in d.iter_mut().zip(s) {
            *a = *a + b;
        }
    });
}

/// Calls `f(pixel, token, ch, py, px)` for every pixel of a [B, C, H, W] batch: its
/// NCHW index, the patch (token) it falls in, its channel and its row/column inside the
/// patch. Patchify, unpatchify and their adjoints are this walk with different index
/// formulas on the token side.
#[inline(always)]
fn for_each_pixel(b: usize, c: usize, side: usize, p: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let l = side / p;
    for bi in 0..b {
        for ch in 0..c {
            for yy in 0..side {
                for xx in 0..side {
                    let token = bi * l * l + (yy / p) * l + xx / p;
                    f(((bi * c + ch) * side + yy) * side + xx, token, ch, yy % p, xx % p);
                }
            }
        }
    }
}

/// x [B, C, H, W] → out [B·T, C·p·p], per token in (c, row, col) order (Conv2d weight order).
pub fn patchify<T: Elem>(x: &[T], out: &mut [T], b: usize, c: usize, side: usize, p: usize) {
    for_each_pixel(b, c, side, p, |pix, tok, ch, py, px| out[tok * c * p * p + (ch * p + py) * p + px] = x[pix]);
}

/// Adjoint of [`patchify`] (every pixel belongs to exactly one patch, so assign).
pub fn patchify_bwd<T: Elem>(dpatch: &[T], dx: &mut [T], b: usize, c: usize, side: usize, p: usize) {
    for_each_pixel(b, c, side, p, |pix, tok, ch, py, px| dx[pix] = dpatch[tok * c * p * p + (ch * p + py) * p + px]);
}

/// tok [B·T, p·p·C] in (row, col, c) order → out [B, C, H, W].
pub fn unpatchify<T: Elem>(tok: &[T], out: &mut [T], b: usize, c: usize, side: usize, p: usize) {
    for_each_pixel(b, c, side, p, |pix, t, ch, py, px| out[pix] = tok[t * c * p * p + (py * p + px) * c + ch]);
}

/// Adjoint of [`unpatchify`] (assign).
pub fn unpatchify_bwd<T: Elem>(dout: &[T], dtok: &mut [T], b: usize, c: usize, side: usize, p: usize) {
    for_each_pixel(b, c, side, p, |pix, t, ch, py, px| dtok[t * c * p * p + (py * p + px) * c + ch] = dout[pix]);
}

/// x[b·T + t, :] += rows[t, :].
pub fn add_rows<T: Elem>(rows: &[T], x: &mut [T], b: usize, t: usize, d: usize) {
    x[..b * t * d].par_chunks_mut(d).enumerate().for_each(|(r, xr)| {
        let src = &rows[(r % t) * d..(r % t + 1) * d];
        for (a, &s) in xr.iter_mut().zip(src) {
            *a = *a + s;
        }
    });
}

/// out[b, :] = table[labels[b], :].
pub fn embedding_fwd<T: Elem>(table: &[T], labels: &[usize], out: &mut [T], d: usize) {
    for (bi, &l) in labels.iter().enumerate() {
        out[bi * d..(bi + 1) * d].copy_from_slice(&table[l * d..(l + 1) * d]);
    }
}

/// dtable[labels[b], :] += dout[b, :], in batch order.
pub fn embedding_bwd<T: Elem>(dout: &[T], labels: &[usize], dtable: &mut [T], d: usize) {
    for (bi, &l) in labels.iter().enumerate() {
        for (a, &g) in dtable[l * d..(l + 1) * d].iter_mut().zip(&dout[bi * d..(bi + 1) * d]) {
            *a = *a + g;
        }
    }
}
