//! ADM's `center_crop_arr` (guided-diffusion `image_datasets.py`, copied by the
//! reference into `autoencs/utils.py`), the preprocessing of every reference VAE:
//!
//! 1. while the shorter side is at least `2·size`: PIL `BOX` resize to `(w // 2, h // 2)`;
//! 2. PIL `BICUBIC` resize to `(round(w·s), round(h·s))` with `s = size / min(w, h)`
//!    (Python's `round`, half to even);
//! 3. crop `size × size` at `((h' − size) // 2, (w' − size) // 2)`.
//!
//! Then `ToTensor` + `Normalize(0.5, 0.5)`: a byte `v` becomes `(v/255 − 0.5)/0.5` in
//! f32, `[3, size, size]`, in [−1, 1].
//!
//! An image smaller than `size` is enlarged by step 2, as in the reference (a 7×7 image
//! becomes a blurry 256×256 one, not an error). A very elongated image whose enlarged
//! long side would exceed [`super::MAX_IMAGE_PIXELS`] is an error.

use super::decode::Rgb8Image;
use super::resample::{resize, Filter};
use crate::error::{Error, Result};

/// The reference's `center_crop_arr(image, size)`: a `size × size` RGB image.
///
/// Errors: [`Error::InvalidArgument`] if `size` is 0 or an intermediate image would
/// exceed the pixel limit.
pub fn center_crop_arr(image: &Rgb8Image, size: usize) -> Result<Rgb8Image> {
    if size == 0 {
        return Err(Error::invalid("center_crop_arr: size must be at least 1"));
    }
    if image.width == 0 || image.height == 0 {
        return Err(Error::invalid("center_crop_arr: empty image"));
    }
    let mut img = std::borrow::Cow::Borrowed(image);
    while img.width.min(img.height) >= 2 * size {
        img = std::borrow::Cow::Owned(resize(&img, img.width / 2, img.height / 2, Filter::Box)?);
    }
    let scale = size as f64 / img.width.min(img.height) as f64;
    let (w, h) = ((img.width as f64 * scale).round_ties_even(), (img.height as f64 * scale).round_ties_even());
    if w * h > super::MAX_IMAGE_PIXELS as f64 {
        return Err(Error::invalid(format!(
            "center_crop_arr: a {}×{} image resized to a shorter side of {size} would have {w}×{h} pixels, over the limit of {}",
            image.width,
            image.height,
            super::MAX_IMAGE_PIXELS
        )));
    }
    let img = resize(&img, w as usize, h as usize, Filter::Bicubic)?;
    if img.width < size || img.height < size {
        return Err(Error::Internal(format!(
            "center_crop_arr: resized to {}×{}, smaller than {size}",
            img.width, img.height
        )));
    }
    let (y0, x0) = ((img.height - size) / 2, (img.width - size) / 2);
    let mut pixels = Vec::with_capacity(size * size * 3);
    for y in y0..y0 + size {
        pixels.extend_from_slice(&img.pixels[(y * img.width + x0) * 3..(y * img.width + x0 + size) * 3]);
    }
    Ok(Rgb8Image {
        width: size,
        height: size,
        pixels,
    })
}

/// `ToTensor` + `Normalize(mean 0.5, std 0.5)`: `[H, W, 3]` bytes → `[3, H, W]` floats
/// `(v/255 − 0.5)/0.5` (f32 operations in torch's order), written into `out`.
pub fn to_signed_chw(image: &Rgb8Image, out: &mut [f32] /* [3, H, W] */) -> Result<()> {
    let (h, w) = (image.height, image.width);
    crate::error::check_len("to_signed_chw: out", out.len(), 3 * h * w)?;
    for (i, px) in image.pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = (px[c] as f32 / 255.0 - 0.5) / 0.5;
        }
    }
    Ok(())
}

/// The image mirrored left–right (`RandomHorizontalFlip(p=1)`).
pub fn flip_horizontal(image: &Rgb8Image) -> Rgb8Image {
    let w = image.width;
    let mut pixels = image.pixels.clone();
    for (dst, src) in pixels.chunks_exact_mut(w * 3).zip(image.pixels.chunks_exact(w * 3)) {
        for x in 0..w {
            dst[x * 3..x * 3 + 3].copy_from_slice(&src[(w - 1 - x) * 3..(w - x) * 3]);
        }
    }
    Rgb8Image {
        width: w,
        height: image.height,
        pixels,
    }
}

/// Reads a PNG or JPEG file and preprocesses it as the reference does:
/// `[3, size, size]` floats in [−1, 1].
pub fn load_preprocessed(path: &std::path::Path, size: usize) -> Result<Vec<f32>> {
    let img = center_crop_arr(&super::decode::read_rgb8(path)?, size)?;
    let mut out = vec![0.0f32; 3 * size * size];
    to_signed_chw(&img, &mut out)?;
    Ok(out)
}
