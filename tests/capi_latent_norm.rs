//! A model handle's latent normalisation through the C ABI (`ucgm_model_set_latent_norm`,
//! `ucgm_model_load_latent_stats`): `ucgm_sample_image` decodes exactly what the Rust
//! API decodes from the model's samples with the normalisation inverted
//! (`LatentNorm::denormalize` then `AnyVae::decode` of the tiny reference VAE), the
//! statistics file gives the same as the setter, `ucgm_model_save` keeps it, and bad
//! inputs (NULL handle, unknown kind, wrong channel count, NaN / zero std or multiplier,
//! bad files) are statuses with messages that leave the previous normalisation in place.

mod capi_common;
mod common;

use std::ffi::CString;
use std::path::Path;
use std::ptr;

use capi_common::*;
use ucgm::capi::latent_norm::*;
use ucgm::capi::model::*;
use ucgm::capi::sample::{ucgm_model_set_seed, ucgm_sample};
use ucgm::capi::sample_image::*;
use ucgm::capi::vae::*;
use ucgm::capi::*;
use ucgm::latent_norm::LatentNorm;
use ucgm::tensor_file::{write_atomic, TensorOut};
use ucgm::{AnyBackend, AnyVae};

/// The tiny model samples [4, 8, 8] latents; the tiny VAE (f = 4) decodes them to
/// [3, 32, 32].
const LAT: usize = 4 * 8 * 8;
const IMG: usize = 3 * 32 * 32;
const THREADS: i32 = 2;
const MEAN: [f32; 4] = [0.5, -0.25, 1.0, 0.0];
const STD: [f32; 4] = [2.0, 0.5, 1.5, 3.0];

fn vae_path() -> std::path::PathBuf {
    common::reference("vae_tiny_diffusers.safetensors")
}

fn c_path(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

struct Vae(*mut ucgm_vae);

impl Drop for Vae {
    fn drop(&mut self) {
        unsafe { ucgm_vae_free(self.0) };
    }
}

fn tiny_vae() -> Vae {
    let mut p = cpu_load_params();
    p.threads = THREADS;
    let mut v = ptr::null_mut();
    ok(unsafe { ucgm_vae_load(c_path(&vae_path()).as_ptr(), &p, &mut v) });
    Vae(v)
}

/// The model's latents (x, model space) for `seed`, as `ucgm_sample` gives them.
fn latents(m: &Model, seed: u64) -> Vec<f32> {
    let mut x = vec![0f32; LAT];
    unsafe {
        ok(ucgm_model_set_seed(m.0, seed));
        ok(ucgm_sample(m.0, 4, x.as_mut_ptr(), x.len()));
    }
    x
}

/// `ucgm_sample_image` of one image with `seed`.
fn sample_image(m: &Model, v: &Vae, seed: u64) -> Vec<f32> {
    let mut img = vec![0f32; IMG];
    ok(unsafe { ucgm_sample_image(m.0, v.0, 4, ptr::null(), 1, &seed, img.as_mut_ptr(), img.len()) });
    img
}

/// The Rust API's path: invert `norm` on the model's latents, decode, map to [0, 1].
fn rust_decode(x: &[f32], norm: &LatentNorm) -> Vec<f32> {
    let mut z = x.to_vec();
    norm.denormalize(&mut z, 4, 8 * 8).unwrap();
    let mut vae = AnyVae::load(vae_path(), AnyBackend::cpu(THREADS as usize).unwrap()).unwrap();
    let dec = vae.decode(&z, 1, 8, 8).unwrap();
    dec.iter().map(|&v| ((v + 1.0) / 2.0).clamp(0.0, 1.0)).collect()
}

fn write_stats(path: &Path, mean: &[f32], std: &[f32], shape: Vec<usize>) {
    write_atomic(
        path,
        &[TensorOut::f32("mean", shape.clone(), mean), TensorOut::f32("std", shape, std)],
        &Default::default(),
    )
    .unwrap();
}

#[test]
fn sample_image_inverts_the_set_normalisation_as_the_rust_api_does() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 3, THREADS);
    let v = tiny_vae();
    let seed = 5;
    let x = latents(&m, seed);
    assert!(x.iter().all(|v| v.is_finite()) && x.iter().any(|&v| v != 0.0));

    // A fresh handle has no normalisation: raw latents.
    let raw = sample_image(&m, &v, seed);
    assert_eq!(raw, rust_decode(&x, &LatentNorm::identity()));

    unsafe {
        // Per-channel statistics with a multiplier.
        ok(ucgm_model_set_latent_norm(m.0, UCGM_LATENT_NORM_STATS, 0.7, MEAN.as_ptr(), STD.as_ptr(), 4));
        let stats = LatentNorm::with_stats(MEAN.to_vec(), STD.to_vec(), 0.7).unwrap();
        let img = sample_image(&m, &v, seed);
        assert_eq!(img, rust_decode(&x, &stats));
        assert_ne!(img, raw, "the normalisation changed nothing");
        assert!(img.iter().any(|&u| u > 0.0 && u < 1.0));

        // The 8-bit variant decodes the same latents.
        let mut rgb = vec![0u8; IMG];
        ok(ucgm_sample_image_rgb8(m.0, v.0, 4, ptr::null(), 1, &seed, rgb.as_mut_ptr(), rgb.len()));
        let mut z = x.clone();
        stats.denormalize(&mut z, 4, 64).unwrap();
        let mut vae = AnyVae::load(vae_path(), AnyBackend::cpu(THREADS as usize).unwrap()).unwrap();
        let dec = vae.decode(&z, 1, 8, 8).unwrap();
        for c in 0..3 {
            for k in 0..32 * 32 {
                assert_eq!(rgb[k * 3 + c], ucgm::image::decoded_to_u8(dec[c * 1024 + k]), "channel {c} pixel {k}");
            }
        }

        // SD-VAE's scale.
        ok(ucgm_model_set_latent_norm(
            m.0,
            UCGM_LATENT_NORM_SCALE,
            UCGM_SD_VAE_MULTIPLIER,
            ptr::null(),
            ptr::null(),
            0,
        ));
        assert_eq!(sample_image(&m, &v, seed), rust_decode(&x, &LatentNorm::sd_vae()));

        // NONE clears it.
        ok(ucgm_model_set_latent_norm(m.0, UCGM_LATENT_NORM_NONE, 0.0, ptr::null(), ptr::null(), 0));
        assert_eq!(sample_image(&m, &v, seed), raw);
    }
}

#[test]
fn statistics_file_equals_the_setter_and_save_keeps_the_normalisation() {
    let dir = tempfile::tempdir().unwrap();
    let m = Model::tiny_random(UCGM_ARCH_TIT, 4, THREADS);
    let v = tiny_vae();
    let seed = 9;
    let x = latents(&m, seed);
    let want = rust_decode(&x, &LatentNorm::with_stats(MEAN.to_vec(), STD.to_vec(), 1.0).unwrap());
    // The reference's layout [1, C, 1, 1] and the flat [C] load alike.
    for (name, shape) in [("stats_4d.safetensors", vec![1, 4, 1, 1]), ("stats_1d.safetensors", vec![4])] {
        let stats = dir.path().join(name);
        write_stats(&stats, &MEAN, &STD, shape);
        ok(unsafe { ucgm_model_set_latent_norm(m.0, UCGM_LATENT_NORM_NONE, 0.0, ptr::null(), ptr::null(), 0) });
        ok(unsafe { ucgm_model_load_latent_stats(m.0, c_path(&stats).as_ptr(), 1.0) });
        assert_eq!(sample_image(&m, &v, seed), want, "{name}");
    }

    // Saved with the model, read back on load; the Rust API reads the same metadata.
    let saved = dir.path().join("model.safetensors");
    ok(unsafe { ucgm_model_save(m.0, c_path(&saved).as_ptr()) });
    let stored = LatentNorm::from_metadata(&saved, ucgm::tensor_file::TensorFile::open(&saved).unwrap().metadata()).unwrap();
    assert_eq!(stored, Some(LatentNorm::with_stats(MEAN.to_vec(), STD.to_vec(), 1.0).unwrap()));
    let mut h = ptr::null_mut();
    let mut lp = cpu_load_params();
    lp.threads = THREADS;
    ok(unsafe { ucgm_model_load(c_path(&saved).as_ptr(), &lp, &mut h) });
    let loaded = Model(h);
    assert_eq!(sample_image(&loaded, &v, seed), want);
    // The setter overrides what the file said.
    ok(unsafe { ucgm_model_set_latent_norm(loaded.0, UCGM_LATENT_NORM_SCALE, UCGM_SD_VAE_MULTIPLIER, ptr::null(), ptr::null(), 0) });
    assert_eq!(sample_image(&loaded, &v, seed), rust_decode(&x, &LatentNorm::sd_vae()));
}

#[test]
fn bad_latent_norms_are_statuses_with_messages_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = Model::tiny_random(UCGM_ARCH_TIT, 5, THREADS);
    let v = tiny_vae();
    let seed = 2;
    let (mean, std) = (MEAN.as_ptr(), STD.as_ptr());
    let set = |kind, mult, mean, std, c| unsafe { ucgm_model_set_latent_norm(m.0, kind, mult, mean, std, c) };
    ok(set(UCGM_LATENT_NORM_STATS, 1.0, mean, std, 4));
    let before = sample_image(&m, &v, seed);
    let (nan, zero_std) = ([0.0, f32::NAN, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]);
    unsafe {
        fails(
            ucgm_model_set_latent_norm(ptr::null_mut(), UCGM_LATENT_NORM_SCALE, 1.0, ptr::null(), ptr::null(), 0),
            UCGM_STATUS_INVALID_ARGUMENT,
            "ucgm_model_set_latent_norm: invalid argument: model is NULL",
        );
        fails(set(7, 1.0, ptr::null(), ptr::null(), 0), UCGM_STATUS_INVALID_ARGUMENT, "kind = 7 is not one of");
        fails(
            set(UCGM_LATENT_NORM_STATS, 1.0, mean, std, 3),
            UCGM_STATUS_INVALID_ARGUMENT,
            "statistics for 3 channels",
        );
        fails(set(UCGM_LATENT_NORM_STATS, 1.0, mean, std, 0), UCGM_STATUS_INVALID_ARGUMENT, "channels");
        fails(
            set(UCGM_LATENT_NORM_STATS, 1.0, ptr::null(), std, 4),
            UCGM_STATUS_INVALID_ARGUMENT,
            "mean is NULL",
        );
        fails(
            set(UCGM_LATENT_NORM_STATS, 1.0, mean, ptr::null(), 4),
            UCGM_STATUS_INVALID_ARGUMENT,
            "std is NULL",
        );
        fails(set(UCGM_LATENT_NORM_STATS, 1.0, mean, nan.as_ptr(), 4), UCGM_STATUS_NON_FINITE, "std");
        fails(set(UCGM_LATENT_NORM_STATS, 1.0, nan.as_ptr(), std, 4), UCGM_STATUS_NON_FINITE, "mean");
        fails(
            set(UCGM_LATENT_NORM_STATS, 1.0, mean, zero_std.as_ptr(), 4),
            UCGM_STATUS_INVALID_ARGUMENT,
            "std 0 must be finite and positive",
        );
        fails(
            set(UCGM_LATENT_NORM_SCALE, 0.0, ptr::null(), ptr::null(), 0),
            UCGM_STATUS_INVALID_ARGUMENT,
            "multiplier must not be 0",
        );
        fails(
            set(UCGM_LATENT_NORM_SCALE, f32::NAN, ptr::null(), ptr::null(), 0),
            UCGM_STATUS_NON_FINITE,
            "multiplier",
        );
        fails(
            set(UCGM_LATENT_NORM_SCALE, 1.0, mean, ptr::null(), 0),
            UCGM_STATUS_INVALID_ARGUMENT,
            "must be NULL",
        );

        // Statistics files.
        let load = |p: &Path, mult: f32| ucgm_model_load_latent_stats(m.0, c_path(p).as_ptr(), mult);
        fails(
            ucgm_model_load_latent_stats(m.0, ptr::null(), 1.0),
            UCGM_STATUS_INVALID_ARGUMENT,
            "path is NULL",
        );
        fails(
            ucgm_model_load_latent_stats(ptr::null_mut(), c_path(&dir.path().join("x")).as_ptr(), 1.0),
            UCGM_STATUS_INVALID_ARGUMENT,
            "model is NULL",
        );
        fails(load(&dir.path().join("missing.safetensors"), 1.0), UCGM_STATUS_IO, "missing.safetensors");
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a statistics file").unwrap();
        fails(load(&junk, 1.0), UCGM_STATUS_FORMAT, "junk.safetensors");
        let three = dir.path().join("three.safetensors");
        write_stats(&three, &MEAN[..3], &STD[..3], vec![1, 3, 1, 1]);
        fails(load(&three, 1.0), UCGM_STATUS_INVALID_ARGUMENT, "statistics for 3 channels");
        let bad_std = dir.path().join("zero_std.safetensors");
        write_stats(&bad_std, &MEAN, &zero_std, vec![4]);
        fails(load(&bad_std, 1.0), UCGM_STATUS_FORMAT, "std 0 must be finite and positive");
        let nan_mean = dir.path().join("nan_mean.safetensors");
        write_stats(&nan_mean, &nan, &STD, vec![4]);
        fails(load(&nan_mean, 1.0), UCGM_STATUS_FORMAT, "mean NaN is not finite");
        let no_std = dir.path().join("no_std.safetensors");
        write_atomic(&no_std, &[TensorOut::f32("mean", vec![4], &MEAN)], &Default::default()).unwrap();
        fails(load(&no_std, 1.0), UCGM_STATUS_FORMAT, "\"std\" is missing");
        let good = dir.path().join("good.safetensors");
        write_stats(&good, &MEAN, &STD, vec![1, 4, 1, 1]);
        fails(load(&good, 0.0), UCGM_STATUS_INVALID_ARGUMENT, "multiplier must not be 0");
        // A diffusion model's weights are not statistics.
        fails(load(&common::reference("tit_tiny_weights.safetensors"), 1.0), UCGM_STATUS_FORMAT, "is missing");
    }
    // Every failure left the normalisation as it was.
    assert_eq!(sample_image(&m, &v, seed), before);
}
