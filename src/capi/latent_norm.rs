//! A model handle's latent normalisation (spec §4.6, [`crate::latent_norm`]): how the
//! VAE's raw latents z became the model's inputs x, which `ucgm_sample_image` inverts
//! before decoding. It comes from the weights file's `ucgm_latent_norm` metadata on
//! load; `ucgm_model_set_latent_norm` and `ucgm_model_load_latent_stats` replace it, and
//! `ucgm_model_save` stores it.

use std::ffi::c_char;

use super::model::ucgm_model;
use super::params;
use super::{ucgm_status, with_handle, UCGM_LOG_INFO};
use crate::error::{Error, Result};
use crate::latent_norm::{LatentNorm, SD_VAE_MULTIPLIER};

/// Kind of latent normalisation (`int32_t`).
pub type ucgm_latent_norm_kind = i32;
/// None: the model samples raw VAE latents (x = z).
pub const UCGM_LATENT_NORM_NONE: ucgm_latent_norm_kind = 0;
/// A scale: x = multiplier · z (SD-VAE: `UCGM_SD_VAE_MULTIPLIER`).
pub const UCGM_LATENT_NORM_SCALE: ucgm_latent_norm_kind = 1;
/// Per-channel statistics: `x = (z − mean[c]) / std[c] · multiplier` (VA-VAE and E2E-VAE,
/// multiplier 1).
pub const UCGM_LATENT_NORM_STATS: ucgm_latent_norm_kind = 2;

/// The SD-VAE scaling factor of the reference configs (`latent_multiplier` 0.18215).
pub const UCGM_SD_VAE_MULTIPLIER: f32 = 0.18215;
const _: () = assert!(UCGM_SD_VAE_MULTIPLIER.to_bits() == SD_VAE_MULTIPLIER.to_bits());

const KINDS: [(i32, &str, ucgm_latent_norm_kind); 3] = [
    (UCGM_LATENT_NORM_NONE, "UCGM_LATENT_NORM_NONE", UCGM_LATENT_NORM_NONE),
    (UCGM_LATENT_NORM_SCALE, "UCGM_LATENT_NORM_SCALE", UCGM_LATENT_NORM_SCALE),
    (UCGM_LATENT_NORM_STATS, "UCGM_LATENT_NORM_STATS", UCGM_LATENT_NORM_STATS),
];

fn multiplier_arg(what: &str, v: f32) -> Result<f32> {
    params::finite(what, f64::from(v))?;
    if v == 0.0 {
        return Err(Error::invalid(format!("{what} must not be 0")));
    }
    Ok(v)
}

/// The statistics must be for the model's latent channels.
fn check_channels(norm: &LatentNorm, model_channels: usize, source: &str) -> Result<()> {
    match norm.channels() {
        Some(c) if c != model_channels => Err(Error::invalid(format!(
            "{source} has statistics for {c} channels but the model's latents have {model_channels}"
        ))),
        _ => Ok(()),
    }
}

/// The normalisation a set call asks for (None: raw latents).
unsafe fn norm_for(kind: ucgm_latent_norm_kind, multiplier: f32, mean: *const f32, std: *const f32, channels: usize) -> Result<Option<LatentNorm>> {
    let kind = params::enum_arg("kind", kind, &KINDS)?;
    if kind != UCGM_LATENT_NORM_STATS && (!mean.is_null() || !std.is_null()) {
        return Err(Error::invalid("mean and std must be NULL unless kind is UCGM_LATENT_NORM_STATS"));
    }
    Ok(match kind {
        UCGM_LATENT_NORM_NONE => None,
        UCGM_LATENT_NORM_SCALE => Some(LatentNorm::scale(multiplier_arg("multiplier", multiplier)?)),
        _ => {
            let multiplier = multiplier_arg("multiplier", multiplier)?;
            if channels == 0 {
                return Err(Error::invalid("channels must be at least 1"));
            }
            let mean = params::finite_slice("mean", mean, channels)?.to_vec();
            let std = params::finite_slice("std", std, channels)?.to_vec();
            Some(LatentNorm::with_stats(mean, std, multiplier)?)
        }
    })
}

/// Sets how the model's latents are normalised, replacing what its file said:
/// * `UCGM_LATENT_NORM_NONE` — raw latents; `multiplier` and `channels` are ignored;
/// * `UCGM_LATENT_NORM_SCALE` — x = `multiplier` · z (SD-VAE: `UCGM_SD_VAE_MULTIPLIER`);
///   `channels` is ignored;
/// * `UCGM_LATENT_NORM_STATS` — `x = (z − mean[c]) / std[c] · multiplier` (VA-VAE,
///   E2E-VAE: multiplier 1; `ucgm_model_load_latent_stats` reads the reference's
///   statistics file instead): `mean`, `std` — `[channels]`, `channels` = the model's
///   `in_channels`.
///
/// `mean` and `std` must be NULL for the other kinds. `multiplier` must be finite and
/// non-zero, every `std` finite and positive. Fails with `UCGM_STATUS_INVALID_ARGUMENT`
/// (an unknown kind, a NULL or wrong-length buffer, a zero multiplier or a std ≤ 0) or
/// `UCGM_STATUS_NON_FINITE` (NaN or infinity); the handle keeps its previous
/// normalisation then. `ucgm_sample_image` inverts it; `ucgm_model_save` stores it.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_set_latent_norm(
    model: *mut ucgm_model,
    kind: ucgm_latent_norm_kind,
    multiplier: f32,
    mean: *const f32, // [channels]
    std: *const f32,  // [channels]
    channels: usize,
) -> ucgm_status {
    with_handle("ucgm_model_set_latent_norm", model, |s, _| {
        let norm = norm_for(kind, multiplier, mean, std, channels)?;
        if let Some(n) = &norm {
            check_channels(n, crate::Denoiser::sample_shape(&s.model)[0], "the call")?;
        }
        let line = norm.as_ref().map_or_else(|| "raw latents".to_string(), LatentNorm::describe);
        s.hooks.log(UCGM_LOG_INFO, || format!("latent normalisation: {line}"));
        s.latent_norm = norm;
        Ok(())
    })
}

/// Sets per-channel statistics (`UCGM_LATENT_NORM_STATS`) from a statistics file: the
/// reference's `buffers/vaes/stat/{vae}_{res}.pt` converted to safetensors
/// (`scripts/convert_vae.py stats`), tensors `mean` and `std` of shape `[1, C, 1, 1]` or
/// `[C]` with C = the model's `in_channels`; `multiplier` as in the run's config (1 for
/// VA-VAE / E2E-VAE). Fails with `UCGM_STATUS_IO` (missing / unreadable),
/// `UCGM_STATUS_FORMAT` (not safetensors, a tensor missing or mis-shaped, a std ≤ 0 or
/// a non-finite value) or `UCGM_STATUS_INVALID_ARGUMENT` (NULL path, a zero multiplier,
/// statistics for another channel count); the handle keeps its previous normalisation
/// then.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_load_latent_stats(model: *mut ucgm_model, path: *const c_char, multiplier: f32) -> ucgm_status {
    with_handle("ucgm_model_load_latent_stats", model, |s, _| {
        let path = params::path_arg("path", path)?;
        let multiplier = multiplier_arg("multiplier", multiplier)?;
        let norm = LatentNorm::from_stats_file(&path, multiplier)?;
        check_channels(&norm, crate::Denoiser::sample_shape(&s.model)[0], &path.display().to_string())?;
        s.hooks
            .log(UCGM_LOG_INFO, || format!("latent normalisation from {}: {}", path.display(), norm.describe()));
        s.latent_norm = Some(norm);
        Ok(())
    })
}
