//! The EDM2 UNet (reference `networks/edm2.py` as UCGM uses it) reproduces
//! `../shared/reference/zoo/edm2_tiny_io.safetensors`: every `F_t*` (the UNet's noise
//! label 2.68·t − 1.59 computed from t) and `F_t0.5_uncond` (no class embedding: label
//! K, the null class of the engine's guidance convention), rel-L2 ≤ 1e-5; the
//! configuration is inferred from the tensors; the named sizes' parameter counts.

mod common;

use common::{assert_close, reference};
use ucgm::model::edm2::{Edm2, Edm2Config};
use ucgm::tensor_file::TensorFile;
use ucgm::CpuBackend;

fn tiny() -> Edm2Config {
    Edm2Config {
        input_size: 8,
        in_channels: 4,
        num_classes: 10,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_blocks: 1,
        attn_resolutions: vec![8, 4],
    }
}

#[test]
fn edm2_forward_matches_reference() {
    let w = reference("zoo/edm2_tiny_weights.safetensors");
    let mut model = Edm2::load(&w, CpuBackend::<f32>::new(2).unwrap(), Some(tiny())).unwrap();
    let f = TensorFile::open(reference("zoo/edm2_tiny_io.safetensors")).unwrap();
    let z = f.f32("z").unwrap().1;
    let labels: Vec<usize> = f.i64("y").unwrap().1.iter().map(|&v| v as usize).collect();
    let mut out = vec![0f32; z.len()];
    for tname in ["0.0", "0.25", "0.5", "0.999", "1.0"] {
        let tv: f32 = tname.parse().unwrap();
        model.forward(&z, &[tv, tv], &labels, &mut out).unwrap();
        assert_close(&format!("edm2 F_t{tname}"), &out, &f.f32(&format!("F_t{tname}")).unwrap().1, 1e-5);
    }
    model.forward(&z, &[0.5, 0.5], &[10, 10], &mut out).unwrap();
    assert_close("edm2 F_t0.5_uncond", &out, &f.f32("F_t0.5_uncond").unwrap().1, 1e-5);
    // A mixed batch: the conditional and unconditional rows are computed independently.
    let mut mixed = vec![0f32; z.len()];
    model.forward(&z, &[0.5, 0.5], &[labels[0], 10], &mut mixed).unwrap();
    let half = z.len() / 2;
    assert_close("edm2 mixed cond row", &mixed[..half], &f.f32("F_t0.5").unwrap().1[..half], 1e-5);
    assert_close("edm2 mixed uncond row", &mixed[half..], &f.f32("F_t0.5_uncond").unwrap().1[half..], 1e-5);
}

#[test]
fn edm2_config_is_inferred_from_the_tensors() {
    let w = reference("zoo/edm2_tiny_weights.safetensors");
    let f = TensorFile::open(&w).unwrap();
    let cfg = Edm2Config::infer(&f).unwrap();
    // Attention is inferred where the tensors are (the 8×8 blocks have 32 channels: 0 heads).
    assert_eq!(
        cfg,
        Edm2Config {
            attn_resolutions: vec![4],
            ..tiny()
        }
    );
    let mut a = Edm2::load(&w, CpuBackend::<f32>::new(1).unwrap(), None).unwrap();
    let mut b = Edm2::load(&w, CpuBackend::<f32>::new(1).unwrap(), Some(tiny())).unwrap();
    let x: Vec<f32> = (0..2 * 4 * 64).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let (mut oa, mut ob) = (vec![0f32; x.len()], vec![0f32; x.len()]);
    a.forward(&x, &[0.3, 0.7], &[1, 2], &mut oa).unwrap();
    b.forward(&x, &[0.3, 0.7], &[1, 2], &mut ob).unwrap();
    assert_eq!(oa, ob);
    assert_eq!(
        tiny().parameter_count() + 64,
        724_203,
        "meta.json n_values (parameters + the two 32-value Fourier buffers)"
    );
}

/// Parameter counts of the named sizes equal the reference's `model.parameters()` (the
/// 512 px SD-VAE latent 4×64×64, 1000 classes; the Fourier buffers are not parameters).
#[test]
fn edm2_named_sizes_match_reference_parameter_counts() {
    for (name, count) in [
        ("EDM2-XS", 124_713_125),
        ("EDM2-S", 280_212_709),
        ("EDM2-M", 497_807_653),
        ("EDM2-L", 777_497_957),
        ("EDM2-XL", 1_119_283_621),
        ("EDM2-XXL", 1_523_164_645),
    ] {
        assert_eq!(Edm2Config::from_name(name, 64, 4, 1000).unwrap().parameter_count(), count, "{name}");
    }
    assert!(Edm2Config::from_name("EDM2-XXXL", 64, 4, 1000).is_err());
}

/// A state dict that fits no EDM2 UNet: the error names the tensor and the guess.
#[test]
fn edm2_bad_checkpoint_names_tensor_and_guess() {
    use ucgm::tensor_file::{write_atomic, TensorOut};
    let src = TensorFile::open(reference("zoo/edm2_tiny_weights.safetensors")).unwrap();
    let data: Vec<(String, Vec<usize>, Vec<f32>)> = src
        .names()
        .iter()
        .map(|n| {
            let (s, v) = src.f32(n).unwrap();
            (n.clone(), s, v)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    let tensors: Vec<TensorOut<'_>> = data
        .iter()
        .filter(|(n, _, _)| n != "dec.4x4_in0.attn_proj.weight")
        .map(|(n, s, v)| TensorOut::f32(n.clone(), s.clone(), v))
        .collect();
    write_atomic(&bad, &tensors, &Default::default()).unwrap();
    let e = Edm2::load(&bad, CpuBackend::<f32>::new(1).unwrap(), None).err().expect("refused").to_string();
    assert!(e.contains("dec.4x4_in0.attn_proj.weight") && e.contains("EDM2 (model channels 32"), "{e}");
}

/// UCGM-S with the EDM2 UNet through the public sampler, as the released EDM2 sampling
/// configs drive it (EDM transport, κ 0.4, warp [1.17, 0.8, 1.1], gaps 0.001; fewer
/// steps): the network is called at the transport's time t (its noise label 2.68·t −
/// 1.59 = ln σ / 4 of the EDM transport), the run is finite and deterministic, and
/// guidance runs the unconditional branch for the null label K.
#[test]
fn edm2_samples_with_the_edm_transport() {
    use ucgm::control::RunControl;
    use ucgm::sampler::{sample, NoiseSource, SamplerConfig, Stochasticity};
    use ucgm::transport::TransportKind;
    let mut model = Edm2::load(reference("zoo/edm2_tiny_weights.safetensors"), CpuBackend::<f32>::new(2).unwrap(), None).unwrap();
    let f = TensorFile::open(reference("zoo/edm2_tiny_io.safetensors")).unwrap();
    let z = f.f32("z").unwrap().1;
    let cfg = SamplerConfig {
        transport: TransportKind::Edm,
        steps: 6,
        order: 1,
        stochasticity: Stochasticity::Fixed(0.0),
        extrapolation: 0.4,
        time_dist_ctrl: [1.17, 0.8, 1.1],
        rfba_gap_steps: [0.001, 0.001],
        return_trajectory: true,
        ..Default::default()
    };
    let run = |model: &mut Edm2<CpuBackend<f32>>, cfg: &SamplerConfig| {
        sample(model, &z, &[1, 7], cfg, &mut NoiseSource::provided(&[]), &mut RunControl::default()).unwrap()
    };
    let a = run(&mut model, &cfg);
    let b = run(&mut model, &cfg);
    assert_eq!(a.sample, b.sample);
    assert!(a.sample.iter().all(|v| v.is_finite()));
    // The network sees the sampler's EDM times (internal time = native time for EDM).
    assert_eq!(a.model_times.len(), 6);
    let guided = SamplerConfig {
        cfg_scale: 1.5,
        cfg_interval: [0.0, 1.0],
        ..cfg.clone()
    };
    let g = run(&mut model, &guided);
    assert_eq!(g.guided_evals, 6);
    assert!(g.sample.iter().all(|v| v.is_finite()) && g.sample != a.sample);
}

/// Building from host tensors (as the benchmark does) equals loading the file.
#[test]
fn edm2_from_tensors_equals_load() {
    let w = reference("zoo/edm2_tiny_weights.safetensors");
    let f = TensorFile::open(&w).unwrap();
    let tensors = f.names().iter().map(|n| (n.clone(), f.f32(n).unwrap().1)).collect();
    let mut a = Edm2::from_tensors(tiny(), CpuBackend::<f32>::new(1).unwrap(), &tensors).unwrap();
    let mut b = Edm2::load(&w, CpuBackend::<f32>::new(1).unwrap(), Some(tiny())).unwrap();
    let z = TensorFile::open(reference("zoo/edm2_tiny_io.safetensors")).unwrap().f32("z").unwrap().1;
    let (mut oa, mut ob) = (vec![0f32; z.len()], vec![0f32; z.len()]);
    a.forward(&z, &[0.4, 0.9], &[2, 10], &mut oa).unwrap();
    b.forward(&z, &[0.4, 0.9], &[2, 10], &mut ob).unwrap();
    assert_eq!(oa, ob);
}
