//! The VAE handle through the C ABI (`ucgm_vae_*`): the tiny diffusers-named reference
//! VAE reproduces diffusers' AutoencoderKL posterior and decode (rel-L2 ≤ 1e-5, CPU);
//! NULL pointers, wrong lengths, missing / corrupt files, a DiT file given as a VAE, NaN
//! latents and a cancelling progress callback are status codes with messages.

mod common;

use std::ffi::{c_void, CStr, CString};
use std::ptr;

use common::{assert_close, reference};
use ucgm::capi::model::*;
use ucgm::capi::vae::*;
use ucgm::capi::*;
use ucgm::tensor_file::TensorFile;

const TOL: f64 = 1e-5;

fn last_error() -> String {
    unsafe { CStr::from_ptr(ucgm_last_error_message()) }.to_string_lossy().into_owned()
}

fn cpu_params() -> ucgm_model_params {
    let mut p: ucgm_model_params = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { ucgm_model_params_default(&mut p, std::mem::size_of::<ucgm_model_params>()) },
        UCGM_STATUS_OK
    );
    p.backend = UCGM_BACKEND_CPU;
    p.threads = 2;
    p
}

fn load(path: &std::path::Path) -> (ucgm_status, *mut ucgm_vae) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut v = ptr::null_mut();
    let p = cpu_params();
    let st = unsafe { ucgm_vae_load(c.as_ptr(), &p, &mut v) };
    (st, v)
}

fn tiny() -> *mut ucgm_vae {
    let (st, v) = load(&reference("vae_tiny_diffusers.safetensors"));
    assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
    assert!(!v.is_null());
    v
}

fn io(name: &str, shape: &[usize]) -> Vec<f32> {
    TensorFile::open(reference("vae_tiny_io.safetensors")).unwrap().f32_shaped(name, shape).unwrap()
}

#[test]
fn info_encode_decode_match_the_reference() {
    let v = tiny();
    let mut info = ucgm_vae_info {
        struct_size: std::mem::size_of::<ucgm_vae_info>(),
        ..Default::default()
    };
    assert_eq!(unsafe { ucgm_vae_get_info(v, &mut info) }, UCGM_STATUS_OK, "{}", last_error());
    assert_eq!(
        (info.latent_channels, info.downsample_factor, info.in_channels, info.out_channels),
        (4, 4, 3, 3)
    );
    assert_eq!(info.backend, UCGM_BACKEND_CPU);
    assert_eq!(info.cuda_device, -1);
    assert!(info.bytes_held > 0);
    let desc = unsafe { CStr::from_ptr(info.backend_description.as_ptr()) }.to_string_lossy().into_owned();
    assert!(desc.starts_with("cpu"), "{desc}");

    let image = io("image", &[2, 3, 32, 32]);
    let (mut mean, mut logvar) = (vec![0f32; 2 * 4 * 8 * 8], vec![0f32; 2 * 4 * 8 * 8]);
    let st = unsafe { ucgm_vae_encode(v, image.as_ptr(), 2, 32, 32, mean.as_mut_ptr(), mean.len(), logvar.as_mut_ptr(), logvar.len()) };
    assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
    assert_close("enc_mean", &mean, &io("enc_mean", &[2, 4, 8, 8]), TOL);
    assert_close("enc_logvar", &logvar, &io("enc_logvar", &[2, 4, 8, 8]), TOL);
    // out_logvar may be NULL: the mean alone, identical.
    let mut mean2 = vec![0f32; mean.len()];
    let st = unsafe { ucgm_vae_encode(v, image.as_ptr(), 2, 32, 32, mean2.as_mut_ptr(), mean2.len(), ptr::null_mut(), 0) };
    assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
    assert_eq!(mean, mean2);

    let z = io("z", &[2, 4, 8, 8]);
    let mut dec = vec![0f32; 2 * 3 * 32 * 32];
    let st = unsafe { ucgm_vae_decode(v, z.as_ptr(), 2, 8, 8, dec.as_mut_ptr(), dec.len()) };
    assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
    assert_close("dec_out", &dec, &io("dec_out", &[2, 3, 32, 32]), TOL);
    unsafe { ucgm_vae_free(v) };
}

#[test]
fn bad_arguments_are_statuses_with_messages() {
    let v = tiny();
    let z = io("z", &[2, 4, 8, 8]);
    let image = io("image", &[2, 3, 32, 32]);
    let mut dec = vec![0f32; 2 * 3 * 32 * 32];
    let mut mean = vec![0f32; 2 * 4 * 8 * 8];
    unsafe {
        // NULL handle, NULL inputs and outputs.
        assert_eq!(
            ucgm_vae_decode(ptr::null_mut(), z.as_ptr(), 2, 8, 8, dec.as_mut_ptr(), dec.len()),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert!(!last_error().is_empty());
        assert_eq!(
            ucgm_vae_decode(v, ptr::null(), 2, 8, 8, dec.as_mut_ptr(), dec.len()),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert!(last_error().contains("latents"), "{}", last_error());
        assert_eq!(
            ucgm_vae_decode(v, z.as_ptr(), 2, 8, 8, ptr::null_mut(), dec.len()),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert!(last_error().contains("out"), "{}", last_error());
        assert_eq!(
            ucgm_vae_encode(v, ptr::null(), 2, 32, 32, mean.as_mut_ptr(), mean.len(), ptr::null_mut(), 0),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(ucgm_vae_get_info(v, ptr::null_mut()), UCGM_STATUS_INVALID_ARGUMENT);
        // Wrong lengths.
        assert_eq!(
            ucgm_vae_decode(v, z.as_ptr(), 2, 8, 8, dec.as_mut_ptr(), dec.len() - 1),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert!(last_error().contains("out"), "{}", last_error());
        assert_eq!(
            ucgm_vae_encode(v, image.as_ptr(), 2, 32, 32, mean.as_mut_ptr(), mean.len() + 1, ptr::null_mut(), 0),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert!(last_error().contains("out_mean"), "{}", last_error());
        let mut lv = vec![0f32; 3];
        assert_eq!(
            ucgm_vae_encode(v, image.as_ptr(), 2, 32, 32, mean.as_mut_ptr(), mean.len(), lv.as_mut_ptr(), lv.len()),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert!(last_error().contains("out_logvar"), "{}", last_error());
        // Sizes that are not multiples of the factor, zero sizes, absurd sizes.
        assert_eq!(
            ucgm_vae_encode(v, image.as_ptr(), 2, 30, 32, mean.as_mut_ptr(), mean.len(), ptr::null_mut(), 0),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert!(last_error().contains("multiples"), "{}", last_error());
        assert_eq!(
            ucgm_vae_decode(v, z.as_ptr(), 0, 8, 8, dec.as_mut_ptr(), dec.len()),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        assert_ne!(ucgm_vae_decode(v, z.as_ptr(), usize::MAX, 8, 8, dec.as_mut_ptr(), dec.len()), UCGM_STATUS_OK);
        // NaN latent, infinite pixel.
        let mut bad = z.clone();
        bad[17] = f32::NAN;
        assert_eq!(ucgm_vae_decode(v, bad.as_ptr(), 2, 8, 8, dec.as_mut_ptr(), dec.len()), UCGM_STATUS_NON_FINITE);
        assert!(last_error().contains("latents"), "{}", last_error());
        let mut bad = image.clone();
        bad[3] = f32::INFINITY;
        assert_eq!(
            ucgm_vae_encode(v, bad.as_ptr(), 2, 32, 32, mean.as_mut_ptr(), mean.len(), ptr::null_mut(), 0),
            UCGM_STATUS_NON_FINITE
        );
        // The handle is still usable.
        assert_eq!(ucgm_vae_decode(v, z.as_ptr(), 2, 8, 8, dec.as_mut_ptr(), dec.len()), UCGM_STATUS_OK);
        ucgm_vae_free(v);
        ucgm_vae_free(ptr::null_mut());
    }
}

#[test]
fn bad_files_are_statuses_with_messages() {
    let dir = std::env::temp_dir().join(format!("ucgm_capi_vae_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (st, v) = load(&dir.join("missing.safetensors"));
    assert_eq!(st, UCGM_STATUS_IO, "{}", last_error());
    assert!(v.is_null());
    assert!(last_error().contains("missing.safetensors"), "{}", last_error());

    let bytes = std::fs::read(reference("vae_tiny_diffusers.safetensors")).unwrap();
    let cut = dir.join("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (st, v) = load(&cut);
    assert_eq!(st, UCGM_STATUS_FORMAT, "{}", last_error());
    assert!(v.is_null());

    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file at all").unwrap();
    let (st, v) = load(&junk);
    assert_eq!(st, UCGM_STATUS_FORMAT, "{}", last_error());
    assert!(v.is_null());

    // A diffusion transformer's weights are not an autoencoder.
    let (st, v) = load(&reference("sit_tiny_weights.safetensors"));
    assert_eq!(st, UCGM_STATUS_FORMAT, "{}", last_error());
    assert!(v.is_null());
    assert!(last_error().contains("not a VAE"), "{}", last_error());

    unsafe {
        let mut out = ptr::null_mut();
        assert_eq!(ucgm_vae_load(ptr::null(), ptr::null(), &mut out), UCGM_STATUS_INVALID_ARGUMENT);
        let c = CString::new(reference("vae_tiny_diffusers.safetensors").to_str().unwrap()).unwrap();
        assert_eq!(ucgm_vae_load(c.as_ptr(), ptr::null(), ptr::null_mut()), UCGM_STATUS_INVALID_ARGUMENT);
    }
    std::fs::remove_dir_all(&dir).ok();
}

unsafe extern "C" fn stop_at_once(_done: u64, _total: u64, calls: *mut c_void) -> i32 {
    *(calls as *mut u64) += 1;
    1
}

#[test]
fn progress_callback_can_cancel() {
    let v = tiny();
    let z = io("z", &[2, 4, 8, 8]);
    let mut dec = vec![0f32; 2 * 3 * 32 * 32];
    let mut calls = 0u64;
    unsafe {
        assert_eq!(
            ucgm_vae_set_progress_callback(v, Some(stop_at_once), &mut calls as *mut u64 as *mut c_void),
            UCGM_STATUS_OK
        );
        assert_eq!(ucgm_vae_decode(v, z.as_ptr(), 2, 8, 8, dec.as_mut_ptr(), dec.len()), UCGM_STATUS_CANCELLED);
        assert!(calls >= 1);
        // A cancel made while no call runs is forgotten by the next call.
        assert_eq!(ucgm_vae_set_progress_callback(v, None, ptr::null_mut()), UCGM_STATUS_OK);
        assert_eq!(ucgm_vae_cancel(v), UCGM_STATUS_OK);
        assert_eq!(
            ucgm_vae_decode(v, z.as_ptr(), 2, 8, 8, dec.as_mut_ptr(), dec.len()),
            UCGM_STATUS_OK,
            "{}",
            last_error()
        );
        assert_close("dec_out after a cancel", &dec, &io("dec_out", &[2, 3, 32, 32]), TOL);
        ucgm_vae_free(v);
    }
}

fn tiny_model(in_channels: u32) -> *mut ucgm_model {
    let mut p = cpu_params();
    p.arch = UCGM_ARCH_TIT;
    p.input_size = 8;
    p.in_channels = in_channels;
    p.num_classes = 10;
    p.patch = 2;
    p.hidden = 32;
    p.depth = 2;
    p.heads = 2;
    p.seed = 3;
    let mut m = ptr::null_mut();
    assert_eq!(unsafe { ucgm_model_create(&p, &mut m) }, UCGM_STATUS_OK, "{}", last_error());
    m
}

#[test]
fn sample_image_equals_sample_then_decode() {
    use ucgm::capi::sample::ucgm_sample;
    use ucgm::capi::sample_image::*;
    let (m, v) = (tiny_model(4), tiny());
    unsafe {
        // ucgm_sample (seed 5) → ucgm_vae_decode → clamp((x + 1)/2, 0, 1).
        assert_eq!(ucgm::capi::sample::ucgm_model_set_seed(m, 5), UCGM_STATUS_OK);
        let mut lat = vec![0f32; 4 * 8 * 8];
        assert_eq!(ucgm_sample(m, 4, lat.as_mut_ptr(), lat.len()), UCGM_STATUS_OK, "{}", last_error());
        let mut dec = vec![0f32; 3 * 32 * 32];
        assert_eq!(ucgm_vae_decode(v, lat.as_ptr(), 1, 8, 8, dec.as_mut_ptr(), dec.len()), UCGM_STATUS_OK);
        let want: Vec<f32> = dec.iter().map(|&x| ((x + 1.0) / 2.0).clamp(0.0, 1.0)).collect();

        assert_eq!(ucgm::capi::sample::ucgm_model_set_seed(m, 5), UCGM_STATUS_OK);
        let mut img = vec![0f32; 3 * 32 * 32];
        let st = ucgm_sample_image(m, v, 4, ptr::null(), 1, ptr::null(), img.as_mut_ptr(), img.len());
        assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
        assert_eq!(img, want);
        assert!(img.iter().any(|&u| u > 0.0 && u < 1.0));

        // The 8-bit variant, explicit seed 5: [1, 32, 32, 3] of the same decode.
        let mut rgb = vec![0u8; 32 * 32 * 3];
        let seed = 5u64;
        let st = ucgm_sample_image_rgb8(m, v, 4, ptr::null(), 1, &seed, rgb.as_mut_ptr(), rgb.len());
        assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
        for c in 0..3 {
            for k in 0..32 * 32 {
                assert_eq!(rgb[k * 3 + c], ucgm::image::decoded_to_u8(dec[c * 32 * 32 + k]), "channel {c} pixel {k}");
            }
        }

        // Wrong length, NULL output, a model whose latents the VAE does not take.
        let st = ucgm_sample_image(m, v, 4, ptr::null(), 1, ptr::null(), img.as_mut_ptr(), img.len() - 1);
        assert_eq!(st, UCGM_STATUS_INVALID_ARGUMENT);
        assert!(last_error().contains("out_len"), "{}", last_error());
        let st = ucgm_sample_image(m, v, 4, ptr::null(), 1, ptr::null(), ptr::null_mut(), img.len());
        assert_eq!(st, UCGM_STATUS_INVALID_ARGUMENT);
        assert_eq!(
            ucgm_sample_image(m, ptr::null_mut(), 4, ptr::null(), 1, ptr::null(), img.as_mut_ptr(), img.len()),
            UCGM_STATUS_INVALID_ARGUMENT
        );
        let m3 = tiny_model(3);
        let st = ucgm_sample_image(m3, v, 4, ptr::null(), 1, ptr::null(), img.as_mut_ptr(), img.len());
        assert_eq!(st, UCGM_STATUS_INVALID_ARGUMENT);
        assert!(last_error().contains("latent"), "{}", last_error());
        ucgm_model_free(m3);
        ucgm_model_free(m);
        ucgm_vae_free(v);
    }
}
