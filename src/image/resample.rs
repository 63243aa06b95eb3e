//! PIL's `Image.resize` for 8-bit RGB with the `BOX` and `BICUBIC` filters, reproduced
//! operation for operation (Pillow `src/libImaging/Resample.c`), so that images
//! preprocessed here are byte-identical to the reference's (checked against Pillow by
//! `tests/image_preprocess.rs` with the fixture of `scripts/make_image_fixture.py`).
//!
//! The algorithm: separable convolution, horizontal pass first, then vertical — the
//! order of every Pillow up to 12 (the reference's preprocessing ran on those). Pillow
//! 13 chooses the pass order by the shapes and can then differ by one level on some
//! pixels; the test checks exact agreement with Pillow's single-axis passes in the
//! classic order and ≤ 1 level against Pillow 13's own two-axis `resize`. For each output coordinate the filter is centred at `(x + ½)·scale` input
//! pixels and, when shrinking, stretched by `scale` (antialiasing); its weights
//! (computed in f64, normalised to sum 1) are rounded to 22-bit fixed point. Each pass
//! accumulates `u8 × weight` in integers from `2^21` (rounding), then shifts right by 22
//! and clamps to 0..=255.

use super::decode::Rgb8Image;
use crate::error::{Error, Result};

/// A PIL resampling filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BOX`: support ½, every input pixel under the output pixel weighs the same.
    Box,
    /// `Image.BICUBIC`: Keys cubic convolution with a = −½, support 2.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The fixed-point filter weights of one axis: for output pixel `i`, `len[i]` weights
/// from `weights[i·ksize..]` applied to input pixels `first[i]..first[i] + len[i]`.
struct Coefficients {
    ksize: usize,
    first: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole input range.
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut first = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for x in 0..xmax {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * inv_filterscale);
            k[x] = w;
            ww += w;
        }
        for x in 0..xmax {
            if ww != 0.0 {
                k[x] /= ww;
            }
            let v = k[x] * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if k[x] < 0.0 { (v - 0.5) as i32 } else { (v + 0.5) as i32 };
        }
        first.push(xmin);
        len.push(xmax);
    }
    Coefficients { ksize, first, len, weights }
}

/// Pillow's `clip8`: the accumulator shifted right (arithmetic) and clamped to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One horizontal pass: `[H, W, 3]` → `[H, out_w, 3]`.
fn horizontal(src: &Rgb8Image, out_w: usize, filter: Filter) -> Rgb8Image {
    let c = coefficients(src.width, out_w, filter);
    let mut pixels = vec![0u8; src.height * out_w * 3];
    for y in 0..src.height {
        let row = &src.pixels[y * src.width * 3..(y + 1) * src.width * 3];
        for xx in 0..out_w {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + c.len[xx]];
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (x, &w) in k.iter().enumerate() {
                let p = &row[(c.first[xx] + x) * 3..];
                for ch in 0..3 {
                    acc[ch] = acc[ch].wrapping_add((p[ch] as i32).wrapping_mul(w));
                }
            }
            for ch in 0..3 {
                pixels[(y * out_w + xx) * 3 + ch] = clip8(acc[ch]);
            }
        }
    }
    Rgb8Image {
        width: out_w,
        height: src.height,
        pixels,
    }
}

/// One vertical pass: `[H, W, 3]` → `[out_h, W, 3]`.
fn vertical(src: &Rgb8Image, out_h: usize, filter: Filter) -> Rgb8Image {
    let c = coefficients(src.height, out_h, filter);
    let stride = src.width * 3;
    let mut pixels = vec![0u8; out_h * stride];
    for yy in 0..out_h {
        let k = &c.weights[yy * c.ksize..yy * c.ksize + c.len[yy]];
        let out = &mut pixels[yy * stride..(yy + 1) * stride];
        for (i, o) in out.iter_mut().enumerate() {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                acc = acc.wrapping_add((src.pixels[(c.first[yy] + y) * stride + i] as i32).wrapping_mul(w));
            }
            *o = clip8(acc);
        }
    }
    Rgb8Image {
        width: src.width,
        height: out_h,
        pixels,
    }
}

/// `image.resize((out_w, out_h), filter)` of PIL for an RGB image.
///
/// Errors: [`Error::InvalidArgument`] for an empty input or output size, or an output
/// beyond [`super::MAX_IMAGE_PIXELS`].
pub fn resize(src: &Rgb8Image, out_w: usize, out_h: usize, filter: Filter) -> Result<Rgb8Image> {
    if src.width == 0 || src.height == 0 || out_w == 0 || out_h == 0 {
        return Err(Error::invalid(format!(
            "resize: {}×{} → {out_w}×{out_h}: sizes must be at least 1",
            src.width, src.height
        )));
    }
    if out_w.saturating_mul(out_h) > super::MAX_IMAGE_PIXELS {
        return Err(Error::invalid(format!(
            "resize: {out_w}×{out_h} pixels exceeds the limit of {} pixels",
            super::MAX_IMAGE_PIXELS
        )));
    }
    crate::limits::check_bytes("resized image", out_w * out_h.max(src.height), 3)?;
    let need_h = out_w != src.width;
    let need_v = out_h != src.height;
    Ok(match (need_h, need_v) {
        (false, false) => src.clone(),
        (true, false) => horizontal(src, out_w, filter),
        (false, true) => vertical(src, out_h, filter),
        (true, true) => vertical(&horizontal(src, out_w, filter), out_h, filter),
    })
}
