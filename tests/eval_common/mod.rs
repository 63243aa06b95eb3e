//! Fixtures of the `ucgm eval` tests: a tiny random latent TiT (4 latent channels at
//! 4×4, 5 classes, all weights perturbed so every image differs) matching the shared
//! tiny VAE (f = 4, z = 4: 16×16 images), reference statistics, and the command line.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ucgm::{AnyBackend, AnyModel, Arch, ModelConfig, ParamLayout};

/// The tiny model's configuration.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        arch: Arch::Tit,
        input_size: 4,
        in_channels: 4,
        patch: 2,
        hidden: 16,
        depth: 1,
        heads: 2,
        num_classes: 5,
    }
}

/// Writes the tiny model's weights file into `dir`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let cfg = tiny_config();
    let model = AnyModel::init(cfg.clone(), AnyBackend::cpu(1).unwrap(), 1).unwrap();
    let mut params = model.read_params().unwrap();
    // Zero-initialised output layers would make every sample the same.
    let noise = ucgm::rng::Rng::new(5).normal_f32(params.len());
    for (p, n) in params.iter_mut().zip(noise) {
        *p += 0.2 * n;
    }
    let path = dir.join("tiny.safetensors");
    ucgm::model::weights::save(&path, &cfg, &ParamLayout::for_config(&cfg), &params).unwrap();
    path
}

/// Reference statistics (2048-d) of random features, written to `dir/ref.npz`.
pub fn reference_stats(dir: &Path) -> PathBuf {
    let mut s = ucgm::fid::FeatureStats::new(2048).unwrap();
    let f = ucgm::rng::Rng::new(9).normal_f32(20 * 2048);
    s.add_f32(&f.iter().map(|v| v.abs()).collect::<Vec<f32>>()).unwrap();
    let path = dir.join("ref.npz");
    ucgm::fid::write_stats_npz(&path, &s.finish().unwrap()).unwrap();
    path
}

pub fn vae() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/vae_tiny_diffusers.safetensors")
}

pub fn inception() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/fid_inception_random.safetensors")
}

pub fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `eval` arguments for 20 images (2 per Inception Score split) of the tiny model at 2 steps with ρ = 0.5 (so the
/// per-step noise matters), batch 3, and `extra`.
pub fn eval_args(model: &Path, reference: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "eval",
        "--ckpt",
        &s(model),
        "--vae",
        &s(&vae()),
        "--latent-multiplier",
        "0.5",
        "--inception",
        &s(&inception()),
        "--ref",
        &s(reference),
        "--num",
        "20",
        "--batch",
        "3",
        "--steps",
        "2",
        "--rho",
        "0.5",
        "--seed",
        "4",
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    a.extend(extra.iter().map(|v| v.to_string()));
    a
}

/// The number after `prefix` on a line of `stdout`.
pub fn figure(stdout: &str, prefix: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
