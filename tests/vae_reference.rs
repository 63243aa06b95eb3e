//! The latent VAE against the shared reference (`../shared/reference/vae_tiny_*`, README
//! "Latent VAE"): diffusers-, legacy-diffusers- and LDM-named files load and give the
//! posterior and decodes of diffusers' AutoencoderKL (rel-L2 ≤ 1e-5 on the CPU), the
//! namings give bit-identical outputs; the real SD-VAE and VA-VAE shapes run on a
//! 256×256 image; bad files and inputs are clear errors.

mod common;

use std::collections::BTreeMap;

use common::{assert_close, reference};
use ucgm::backend::cpu::CpuBackend;
use ucgm::model::vae::{Vae, VaeConfig, VaeNaming};
use ucgm::tensor_file::{write_atomic, TensorFile, TensorOut};
use ucgm::Error;

const TOL: f64 = 1e-5;

fn cpu() -> CpuBackend<f32> {
    CpuBackend::new(2).unwrap()
}

struct Io {
    image: Vec<f32>,
    mean: Vec<f32>,
    logvar: Vec<f32>,
    z: Vec<f32>,
    dec: Vec<f32>,
    roundtrip: Vec<f32>,
}

fn io() -> Io {
    let tf = TensorFile::open(reference("vae_tiny_io.safetensors")).unwrap();
    let get = |n: &str, s: &[usize]| tf.f32_shaped(n, s).unwrap();
    Io {
        image: get("image", &[2, 3, 32, 32]),
        mean: get("enc_mean", &[2, 4, 8, 8]),
        logvar: get("enc_logvar", &[2, 4, 8, 8]),
        z: get("z", &[2, 4, 8, 8]),
        dec: get("dec_out", &[2, 3, 32, 32]),
        roundtrip: get("roundtrip", &[2, 3, 32, 32]),
    }
}

/// (mean, logvar, dec_out, roundtrip) of a loaded VAE on the reference inputs.
fn run(vae: &mut Vae<CpuBackend<f32>>, io: &Io) -> [Vec<f32>; 4] {
    let post = vae.encode(&io.image, 2, 32, 32).unwrap();
    assert_eq!((post.n, post.z, post.h, post.w), (2, 4, 8, 8));
    let dec = vae.decode(&io.z, 2, 8, 8).unwrap();
    let rt = vae.decode(&post.mean, 2, 8, 8).unwrap();
    [post.mean, post.logvar, dec, rt]
}

fn check(name: &str, out: &[Vec<f32>; 4], io: &Io) {
    assert_close(&format!("{name} enc_mean"), &out[0], &io.mean, TOL);
    assert_close(&format!("{name} enc_logvar"), &out[1], &io.logvar, TOL);
    assert_close(&format!("{name} dec_out"), &out[2], &io.dec, TOL);
    assert_close(&format!("{name} roundtrip"), &out[3], &io.roundtrip, TOL);
}

/// Rewrites a safetensors file with every name passed through `rename` (None drops it)
/// and `extra` tensors added.
fn rewrite(src: &str, dst: &std::path::Path, rename: impl Fn(&str) -> Option<String>, extra: &[(&str, Vec<usize>, Vec<f32>)]) {
    let tf = TensorFile::open(reference(src)).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = tf
        .names()
        .iter()
        .filter_map(|n| {
            let (s, d) = tf.f32(n).unwrap();
            rename(n).map(|r| (r, s, d))
        })
        .chain(extra.iter().map(|(n, s, d)| (n.to_string(), s.clone(), d.clone())))
        .collect();
    let outs: Vec<TensorOut<'_>> = tensors.iter().map(|(n, s, d)| TensorOut::f32(n.clone(), s.clone(), d)).collect();
    let meta: BTreeMap<String, String> = tf.metadata().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_atomic(dst, &outs, &meta).unwrap();
}

#[test]
fn vae_tiny_diffusers_and_ldm_match_the_reference_bit_identically() {
    let io = io();
    let mut d = Vae::load(reference("vae_tiny_diffusers.safetensors"), cpu()).unwrap();
    assert_eq!(d.naming(), VaeNaming::Diffusers);
    let cfg = d.config().clone();
    assert_eq!(cfg.block_channels, vec![32, 64, 64]);
    assert_eq!((cfg.layers_per_block, cfg.latent_channels, cfg.groups, cfg.downsample_factor()), (2, 4, 32, 4));
    assert!(cfg.mid_attention && cfg.use_quant_conv);
    let out_d = run(&mut d, &io);
    check("diffusers", &out_d, &io);

    let mut l = Vae::load(reference("vae_tiny_ldm.safetensors"), cpu()).unwrap();
    assert_eq!(l.naming(), VaeNaming::Ldm);
    assert_eq!(l.config(), &cfg);
    let out_l = run(&mut l, &io);
    check("ldm", &out_l, &io);
    for (a, b) in out_d.iter().zip(&out_l) {
        assert!(a == b, "diffusers and LDM namings differ");
    }
    // One thread gives the same bits as two.
    let mut one = Vae::load(reference("vae_tiny_diffusers.safetensors"), CpuBackend::new(1).unwrap()).unwrap();
    assert!(run(&mut one, &io) == out_d, "results depend on the thread count");
}

#[test]
fn legacy_diffusers_attention_names_load_and_match() {
    let io = io();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.safetensors");
    rewrite(
        "vae_tiny_diffusers.safetensors",
        &path,
        |n| {
            Some(
                n.replace(".to_q.", ".query.")
                    .replace(".to_k.", ".key.")
                    .replace(".to_v.", ".value.")
                    .replace(".to_out.0.", ".proj_attn."),
            )
        },
        &[],
    );
    let mut v = Vae::load(&path, cpu()).unwrap();
    assert_eq!(v.naming(), VaeNaming::DiffusersLegacy);
    check("legacy", &run(&mut v, &io), &io);
}

/// f16 and bf16 files load: a half-precision file gives exactly what the f32 file holding
/// the same rounded values gives.
#[test]
fn half_precision_files_load_as_their_rounded_f32_values() {
    use safetensors::{serialize_to_file, tensor::TensorView, Dtype};
    let dir = tempfile::tempdir().unwrap();
    let tf = TensorFile::open(reference("vae_tiny_diffusers.safetensors")).unwrap();
    let io = io();
    for dtype in [Dtype::F16, Dtype::BF16] {
        let to_bytes = |v: f32| match dtype {
            Dtype::F16 => half::f16::from_f32(v).to_le_bytes(),
            _ => half::bf16::from_f32(v).to_le_bytes(),
        };
        let from_bytes = |c: &[u8]| match dtype {
            Dtype::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
            _ => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
        };
        let mut halves: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut rounded: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for n in tf.names() {
            let (shape, d) = tf.f32(n).unwrap();
            let bytes: Vec<u8> = d.iter().flat_map(|&v| to_bytes(v)).collect();
            let back: Vec<f32> = bytes.chunks_exact(2).map(from_bytes).collect();
            halves.push((n.clone(), shape.clone(), bytes));
            rounded.push((n.clone(), shape, back));
        }
        let half_path = dir.path().join(format!("{dtype:?}.safetensors"));
        let views: Vec<(String, TensorView<'_>)> = halves
            .iter()
            .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
            .collect();
        serialize_to_file(views, None, &half_path).unwrap();
        let f32_path = dir.path().join(format!("{dtype:?}_f32.safetensors"));
        let outs: Vec<TensorOut<'_>> = rounded.iter().map(|(n, s, d)| TensorOut::f32(n.clone(), s.clone(), d)).collect();
        write_atomic(&f32_path, &outs, &BTreeMap::new()).unwrap();
        let mut a = Vae::load(&half_path, cpu()).unwrap();
        let mut b = Vae::load(&f32_path, cpu()).unwrap();
        assert!(run(&mut a, &io) == run(&mut b, &io), "{dtype:?} file differs from its f32 rounding");
    }
}

#[test]
fn training_only_keys_are_ignored_and_unknown_keys_rejected() {
    let io = io();
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("train.safetensors");
    rewrite(
        "vae_tiny_ldm.safetensors",
        &ok,
        |n| Some(n.to_string()),
        &[
            ("loss.discriminator.main.0.weight", vec![2, 2], vec![0.5; 4]),
            ("loss.logvar", vec![1], vec![0.0]),
            ("linear_proj.weight", vec![4, 4], vec![0.1; 16]),
        ],
    );
    let mut v = Vae::load(&ok, cpu()).unwrap();
    let post = v.encode(&io.image, 2, 32, 32).unwrap();
    assert_close("ldm + training keys enc_mean", &post.mean, &io.mean, TOL);

    let unknown = dir.path().join("unknown.safetensors");
    rewrite(
        "vae_tiny_ldm.safetensors",
        &unknown,
        |n| Some(n.to_string()),
        &[("encoder.down.0.attn.0.q.weight", vec![32, 32, 1, 1], vec![0.0; 1024])],
    );
    let e = Vae::load(&unknown, cpu()).err().expect("unknown key accepted");
    assert!(
        matches!(e, Error::Format { .. }) && e.to_string().contains("encoder.down.0.attn.0.q.weight"),
        "{e}"
    );

    let missing = dir.path().join("missing.safetensors");
    rewrite(
        "vae_tiny_diffusers.safetensors",
        &missing,
        |n| (n != "decoder.up_blocks.1.resnets.2.conv2.bias").then(|| n.to_string()),
        &[],
    );
    let e = Vae::load(&missing, cpu()).err().expect("missing tensor accepted");
    assert!(e.to_string().contains("decoder.up_blocks.1.resnets.2.conv2.bias"), "{e}");

    let shaped = dir.path().join("shaped.safetensors");
    rewrite(
        "vae_tiny_diffusers.safetensors",
        &shaped,
        |n| (n != "decoder.conv_in.bias").then(|| n.to_string()),
        &[("decoder.conv_in.bias", vec![63], vec![0.0; 63])],
    );
    let e = Vae::load(&shaped, cpu()).err().expect("mis-shaped tensor accepted");
    assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("decoder.conv_in.bias"), "{e}");
}

#[test]
fn bad_files_and_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated file.
    let bytes = std::fs::read(reference("vae_tiny_diffusers.safetensors")).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = Vae::load(&cut, cpu()).err().expect("truncated file accepted");
    assert!(matches!(e, Error::Format { .. }), "{e}");
    // A DiT weights file given as a VAE.
    let e = Vae::load(reference("sit_tiny_weights.safetensors"), cpu()).err().expect("DiT accepted as VAE");
    assert!(e.to_string().contains("not a VAE"), "{e}");

    let mut v = Vae::load(reference("vae_tiny_diffusers.safetensors"), cpu()).unwrap();
    // 7×7 image.
    let e = v.encode(&[0.0; 3 * 49], 1, 7, 7).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("multiples"), "{e}");
    // Wrong latent channel count: 3 channels of 8×8 for a z = 4 VAE.
    let e = v.decode(&[0.0; 3 * 64], 1, 8, 8).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("4 latent channels"), "{e}");
    // NaN latent.
    let mut z = vec![0.0f32; 4 * 64];
    z[17] = f32::NAN;
    let e = v.decode(&z, 1, 8, 8).unwrap_err();
    assert!(e.to_string().contains("latents[17] = NaN"), "{e}");
    // Image of the wrong length.
    assert!(v.encode(&[0.0; 10], 1, 32, 32).is_err());
    // Zero-size latent.
    assert!(v.decode(&[], 1, 0, 8).is_err());
    // Channels that do not split into the groups.
    let cfg = VaeConfig {
        block_channels: vec![48, 64],
        ..VaeConfig::sd_vae()
    };
    assert!(Vae::random(cfg, cpu(), 0).is_err());
}

#[test]
fn non_square_images_and_chunked_batches_match_whole_batches() {
    let mut v = Vae::load(reference("vae_tiny_diffusers.safetensors"), cpu()).unwrap();
    let (n, h, w) = (3, 12, 20);
    let img: Vec<f32> = (0..n * 3 * h * w).map(|i| ((i * 7919 % 2001) as f32 / 1000.0) - 1.0).collect();
    let whole = v.encode(&img, n, h, w).unwrap();
    assert_eq!((whole.h, whole.w), (3, 5));
    let dec = v.decode(&whole.mean, n, 3, 5).unwrap();
    assert_eq!(dec.len(), n * 3 * h * w);
    v.set_activation_budget(1); // one image at a time
    let mut seen = Vec::new();
    let mut progress = |done: usize, total: usize| {
        seen.push((done, total));
        true
    };
    let mut ctl = ucgm::control::RunControl {
        cancel: None,
        progress: Some(&mut progress),
    };
    let one = v.encode_with(&img, n, h, w, &mut ctl).unwrap();
    assert_eq!(seen, vec![(1, 3), (2, 3), (3, 3)]);
    assert!(one == whole);
    // A progress callback that says stop cancels after the first chunk.
    let mut stop = |_: usize, _: usize| false;
    let mut ctl = ucgm::control::RunControl {
        cancel: None,
        progress: Some(&mut stop),
    };
    assert!(matches!(v.decode_with(&whole.mean, n, 3, 5, &mut ctl), Err(Error::Cancelled)));
    assert!(v.decode(&whole.mean, n, 3, 5).unwrap() == dec);
}

fn shapes_run(cfg: VaeConfig, z: usize, lat: usize) {
    let mut v = Vae::random(cfg, cpu(), 7).unwrap();
    let img: Vec<f32> = (0..3 * 256 * 256).map(|i| ((i * 7919 % 2001) as f32 / 1000.0) - 1.0).collect();
    let post = v.encode(&img, 1, 256, 256).unwrap();
    assert_eq!((post.n, post.z, post.h, post.w), (1, z, lat, lat));
    assert!(post.mean.iter().chain(&post.logvar).all(|x| x.is_finite()));
    assert!(post.logvar.iter().all(|&x| (-30.0..=20.0).contains(&x)));
    let out = v.decode(&post.mean, 1, lat, lat).unwrap();
    assert_eq!(out.len(), 3 * 256 * 256);
    assert!(out.iter().all(|x| x.is_finite()));
}

#[test]
fn sd_vae_shapes_encode_and_decode_256() {
    let cfg = VaeConfig::sd_vae();
    assert_eq!(cfg.downsample_factor(), 8);
    shapes_run(cfg, 4, 32);
}

#[test]
fn va_vae_shapes_encode_and_decode_256() {
    let cfg = VaeConfig::va_vae();
    assert_eq!(cfg.downsample_factor(), 16);
    shapes_run(cfg, 32, 16);
}
