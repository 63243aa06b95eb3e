//! Sample and decode in one call (`ucgm_sample_image`, `ucgm_sample_image_rgb8`): a
//! model handle samples latents as `ucgm_sample` does, the model's latent normalisation
//! is inverted, and a VAE handle decodes them into the caller's memory.

use std::ptr;

use super::model::ucgm_model;
use super::params::{self, Versioned};
use super::sample::{run, ucgm_sample_params};
use super::vae::{decode_into, ucgm_vae};
use super::{ucgm_status, with_handle, with_handle_cancellable, UCGM_STATUS_OK};
use crate::error::{Error, Result};
use crate::latent_norm::LatentNorm;

/// Output layout of the shared implementation.
enum Pixels {
    /// `[n, 3, H, W]` float in [0, 1].
    F32(*mut f32),
    /// `[n, H, W, 3]` bytes.
    Rgb8(*mut u8),
}

#[allow(clippy::too_many_arguments)]
unsafe fn sample_image(
    fname: &str,
    model: *mut ucgm_model,
    vae: *mut ucgm_vae,
    steps: u32,
    labels: *const i32,
    n: usize,
    seed: *const u64,
    out: Pixels,
    out_len: usize,
) -> ucgm_status {
    // A NULL output is refused before any sampling work.
    let out_null = match out {
        Pixels::F32(p) => p.is_null(),
        Pixels::Rgb8(p) => p.is_null(),
    };
    if out_null {
        return crate::capi::call(fname, || Err(Error::invalid("out is NULL")));
    }
    // The model's latent shape, checked against the VAE before any work.
    let mut shape = [0usize; 3];
    let st = with_handle(fname, model, |s, _| {
        shape = crate::Denoiser::sample_shape(&s.model);
        Ok(())
    });
    if st != UCGM_STATUS_OK {
        return st;
    }
    let [channels, lat_h, lat_w] = shape;
    let st = with_handle(fname, vae, |s, _| {
        let c = s.vae.config();
        if c.latent_channels != channels {
            return Err(Error::invalid(format!(
                "the model samples {channels}-channel latents but the VAE takes {}",
                c.latent_channels
            )));
        }
        if c.out_channels != 3 {
            return Err(Error::invalid(format!("the VAE gives {} channels, not RGB", c.out_channels)));
        }
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::invalid(format!("n = {n} must lie in 1..=2^32-1")));
        }
        let f = c.downsample_factor();
        let want = params::elements("out", &[n, 3, lat_h, f, lat_w, f])?;
        params::check_buffer_len("out_len", out_len, want)?;
        crate::limits::check_bytes("decoded images", want, 8)?;
        Ok(())
    });
    if st != UCGM_STATUS_OK {
        return st;
    }
    // Sample, as ucgm_sample does, n at once.
    let lat_len = n * channels * lat_h * lat_w;
    let mut latents = vec![0f32; lat_len];
    let mut norm: Option<LatentNorm> = None;
    let st = run(
        fname,
        model,
        |s| {
            norm = s.latent_norm.clone();
            let mut p = s.preset.as_ref().map_or_else(ucgm_sample_params::defaults, super::sample::params_of);
            if steps != 0 {
                p.steps = steps;
            }
            p.batch = n as u32;
            p.labels = labels;
            p.seed = if seed.is_null() { s.seed } else { *seed };
            Ok(p)
        },
        seed.is_null(),
        latents.as_mut_ptr(),
        lat_len,
        ptr::null_mut(),
        0,
        ptr::null_mut(),
    );
    if st != UCGM_STATUS_OK {
        return st;
    }
    with_handle_cancellable(fname, vae, |s, cancel| {
        let norm = norm.unwrap_or_else(LatentNorm::identity);
        norm.denormalize(&mut latents, channels, lat_h * lat_w)?;
        let f = s.vae.config().downsample_factor();
        let (hf, wf) = (lat_h * f, lat_w * f);
        let mut img = vec![0f32; n * 3 * hf * wf];
        s.hooks.with_control(cancel, |ctl| {
            decode_into(&mut s.vae, latents.as_ptr(), n, lat_h, lat_w, img.as_mut_ptr(), img.len(), ctl)
        })?;
        write_pixels(&img, n, hf, wf, out, out_len)
    })
}

/// Decoded `[n, 3, h, w]` → the caller's layout with the documented mapping.
unsafe fn write_pixels(img: &[f32], n: usize, h: usize, w: usize, out: Pixels, out_len: usize) -> Result<()> {
    match out {
        Pixels::F32(p) => {
            let dst = params::slice_mut("out", p, out_len)?;
            for (d, &x) in dst.iter_mut().zip(img) {
                *d = ((x + 1.0) / 2.0).clamp(0.0, 1.0);
            }
        }
        Pixels::Rgb8(p) => {
            let dst = params::slice_mut("out", p, out_len)?;
            let plane = h * w;
            for i in 0..n {
                for c in 0..3 {
                    let src = &img[(i * 3 + c) * plane..][..plane];
                    for (k, &x) in src.iter().enumerate() {
                        dst[(i * plane + k) * 3 + c] = crate::image::decoded_to_u8(x);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Samples `n` images with the model's sampler preset (as `ucgm_sample`; `steps` 0 = the
/// preset's) and decodes them with `vae` into caller memory, in one call.
/// * `labels` — `[n]` classes in 0..=K (K = the null class), or NULL: random classes;
/// * `seed` — NULL: the handle's seed, which then advances by one as with `ucgm_sample`;
///   else the seed of this call (the handle's is left alone);
/// * `out` — `[n, 3, H·f, W·f]` float NCHW, u = clamp((x + 1)/2, 0, 1) of the decoded x;
///   `out_len` = n·3·(H·f)·(W·f) (H = W = the model's input size, f = the VAE's factor).
///
/// The model's latent normalisation (the `ucgm_latent_norm` metadata of its file:
/// SD-VAE ×0.18215, VA-VAE statistics; or what `ucgm_model_set_latent_norm` /
/// `ucgm_model_load_latent_stats` set) is inverted before decoding; a model without one
/// is taken to sample raw latents. `ucgm_model_cancel` / the model's progress callback
/// cover the sampling, `ucgm_vae_cancel` / the VAE's the decoding.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ucgm_sample_image(
    model: *mut ucgm_model,
    vae: *mut ucgm_vae,
    steps: u32,
    labels: *const i32,
    n: usize,
    seed: *const u64,
    out: *mut f32,
    out_len: usize,
) -> ucgm_status {
    sample_image("ucgm_sample_image", model, vae, steps, labels, n, seed, Pixels::F32(out), out_len)
}

/// As `ucgm_sample_image`, into 8-bit interleaved RGB:
/// * `out` — `[n, H·f, W·f, 3]` bytes, floor(u·255 + 0.5) of u = clamp((x + 1)/2, 0, 1)
///   (torchvision's `save_image` of the reference's decoded samples); `out_len` =
///   n·(H·f)·(W·f)·3.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ucgm_sample_image_rgb8(
    model: *mut ucgm_model,
    vae: *mut ucgm_vae,
    steps: u32,
    labels: *const i32,
    n: usize,
    seed: *const u64,
    out: *mut u8,
    out_len: usize,
) -> ucgm_status {
    sample_image("ucgm_sample_image_rgb8", model, vae, steps, labels, n, seed, Pixels::Rgb8(out), out_len)
}
