//! Decoded VAE outputs → 8-bit RGB → PNG files, as the reference saves them
//! (`decode_to_images`: clamp((x + 1)/2, 0, 1); torchvision `save_image`:
//! floor(u·255 + 0.5); [`crate::image::decoded_to_u8`]), one file per image and/or a
//! grid (torchvision `make_grid` layout, black padding). Files are written atomically.

use std::path::Path;

use crate::engine::AnyVae;
use crate::error::{check_len, Error, Result};
use crate::image::{decoded_to_u8, Grid};
use crate::latent_norm::LatentNorm;

/// Images `[N, 3, H, W]` (decoder output) → `N` interleaved RGB byte images `[H, W, 3]`.
pub fn to_rgb8(images: &[f32] /* [N, 3, H, W] */, shape: [usize; 4]) -> Result<Vec<Vec<u8>>> {
    let [n, c, h, w] = shape;
    if c != 3 {
        return Err(Error::invalid(format!("decoded images have {c} channels; PNG output needs 3")));
    }
    check_len("decoded images", images.len(), n * c * h * w)?;
    Ok(images
        .chunks_exact(c * h * w)
        .map(|img| {
            let mut px = vec![0u8; h * w * 3];
            for (i, p) in px.chunks_exact_mut(3).enumerate() {
                for ch in 0..3 {
                    p[ch] = decoded_to_u8(img[ch * h * w + i]);
                }
            }
            px
        })
        .collect())
}

/// Lays out byte images `[H, W, 3]` in a grid of `columns` with `padding` black pixels.
pub fn grid_of(images: &[Vec<u8>], h: usize, w: usize, columns: usize, padding: usize) -> Result<Grid> {
    if images.is_empty() || columns == 0 {
        return Err(Error::invalid("grid: no images or no columns"));
    }
    let cols = columns.min(images.len());
    let rows = images.len().div_ceil(cols);
    let (gw, gh) = (cols * (w + padding) + padding, rows * (h + padding) + padding);
    let mut pixels = vec![0u8; gw * gh * 3];
    for (k, img) in images.iter().enumerate() {
        check_len("grid image", img.len(), h * w * 3)?;
        let (x0, y0) = (padding + (k % cols) * (w + padding), padding + (k / cols) * (h + padding));
        for y in 0..h {
            let dst = ((y0 + y) * gw + x0) * 3;
            pixels[dst..dst + w * 3].copy_from_slice(&img[y * w * 3..(y + 1) * w * 3]);
        }
    }
    Ok(Grid {
        width: gw,
        height: gh,
        channels: 3,
        pixels,
    })
}

/// Model-space latents `[N, C, H, W]` → raw latents (`norm` inverted) → decoded images
/// `[N, 3, H·f, W·f]` (not clamped).
pub fn decode_latents(vae: &mut AnyVae, norm: &LatentNorm, latents: &[f32] /* [N, C, H, W] */, shape: [usize; 4]) -> Result<Vec<f32>> {
    let [n, c, h, w] = shape;
    let z = vae.config().latent_channels;
    if c != z {
        return Err(Error::invalid(format!("latents have {c} channels but the VAE takes {z}")));
    }
    check_len("latents", latents.len(), n * c * h * w)?;
    crate::error::check_finite("latents", latents)?;
    let mut raw = latents.to_vec();
    norm.denormalize(&mut raw, c, h * w)?;
    vae.decode(&raw, n, h, w)
}

/// Writes decoded images `[N, 3, H, W]`: a grid PNG at `grid` (if given) and one PNG per
/// image `{prefix}{i:06}.png` in `dir` (if given). Every path is checked before writing.
pub fn write_pngs(images: &[f32] /* [N, 3, H, W] */, shape: [usize; 4], grid: Option<&Path>, dir: Option<&Path>, prefix: &str) -> Result<usize> {
    let [n, _, h, w] = shape;
    let bytes = to_rgb8(images, shape)?;
    if let Some(g) = grid {
        super::output::check_writable_file(g)?;
    }
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let mut written = 0;
    if let Some(g) = grid {
        grid_of(&bytes, h, w, (n as f64).sqrt().ceil() as usize, 2)?.write_png(g)?;
        written += 1;
    }
    if let Some(d) = dir {
        for (i, img) in bytes.into_iter().enumerate() {
            Grid {
                width: w,
                height: h,
                channels: 3,
                pixels: img,
            }
            .write_png(d.join(format!("{prefix}{i:06}.png")))?;
            written += 1;
        }
    }
    Ok(written)
}

/// The latent normalisation to invert before decoding: `--latent-stats FILE` (with
/// `--latent-multiplier`, default 1), else `--latent-multiplier M` alone, else the one
/// stored with the model (`stored`); none of them is an error that says what to pass.
pub fn resolve_norm(stored: Option<LatentNorm>, stats: Option<&Path>, multiplier: Option<f32>) -> Result<LatentNorm> {
    match (stats, multiplier, stored) {
        (Some(p), m, _) => LatentNorm::from_stats_file(p, m.unwrap_or(1.0)),
        (None, Some(m), _) => {
            let n = LatentNorm::scale(m);
            n.validate()?;
            Ok(n)
        }
        (None, None, Some(n)) => Ok(n),
        (None, None, None) => Err(Error::invalid(
            "the model file does not say how its latents are normalised: pass --latent-multiplier 0.18215 (SD-VAE), \
             --latent-stats FILE (VA-VAE / E2E-VAE) or --latent-multiplier 1 (raw latents)",
        )),
    }
}
