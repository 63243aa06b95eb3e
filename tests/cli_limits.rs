//! The command line's protections and the files it moves between: documented limits at
//! their edges (threads, steps, sample counts), negative values parsed as values, bad
//! output paths failing before any compute, training checkpoints loading as models (EMA
//! by default) and exported to plain weights with their sampler preset, presets used
//! unless overridden, and damaged data caught by the checksum.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ucgm::model::weights::{self, CheckpointWeights};
use ucgm::preset;
use ucgm::tensor_file::TensorFile;
use ucgm::trainer::{OptimizerSection, TrainSection, Trainer, TrainerConfig, TransportSection};
use ucgm::{Arch, CpuBackend, Model, ModelConfig, ParamLayout, Rng, SamplerConfig, Stochasticity, TransportKind};

fn ucgm(args: &[&str]) -> (bool, String, String, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ucgm")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        start.elapsed(),
    )
}

/// The last stderr line, which must be the one error line.
fn error_line(err: &str) -> &str {
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("ucgm: error:"), "no error line in {err:?}");
    last
}

fn tiny_weights(dir: &Path) -> String {
    let cfg = ModelConfig::reference_tiny(Arch::Sit);
    let n = ParamLayout::for_config(&cfg).total();
    let p: Vec<f32> = Rng::new(5).normal_f32(n).into_iter().map(|v| 0.05 * v).collect();
    let m = Model::from_params(cfg, CpuBackend::<f32>::new(1).unwrap(), &p).unwrap();
    let path = dir.join("w.safetensors");
    m.save(&path).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn limits_hold_at_their_edges_and_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_weights(dir.path());
    let out = dir.path().join("s.safetensors");
    let out = out.to_str().unwrap();
    let base = ["sample", "--ckpt", w.as_str(), "--out", out, "--n", "1"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        ucgm(&a)
    };
    // Threads: 1024 is the documented maximum (it works), 1025 and 100000 are one-line errors.
    let (ok, _, err, _) = with(&["--threads", "1024", "--backend", "cpu", "--steps", "1"]);
    assert!(ok, "{err}");
    for t in ["1025", "100000"] {
        let (ok, _, err, took) = with(&["--threads", t, "--backend", "cpu", "--steps", "1"]);
        assert!(!ok);
        assert!(error_line(&err).contains(&format!("threads = {t} must lie in 0..=1024")), "{err}");
        assert!(took < Duration::from_secs(20), "{took:?}");
    }
    // Steps: 100000 is the maximum; above it, and u32::MAX, fail before any work.
    for s in ["100001", "4294967295"] {
        let (ok, _, err, _) = with(&["--steps", s, "--threads", "1"]);
        assert!(!ok);
        assert!(error_line(&err).contains("exceeds the limit of 100000"), "{err}");
    }
    // An absurd sample count is an out-of-memory error, before any compute, not an abort.
    let (ok, _, err, took) = ucgm(&["sample", "--ckpt", &w, "--out", out, "--n", "100000000000", "--threads", "1"]);
    assert!(!ok, "{err}");
    let line = error_line(&err);
    assert!(line.contains("out of memory") && line.contains("GiB"), "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Negative numbers are values (then rejected by the sampler's own check).
    let (ok, _, err, _) = with(&["--cfg-scale", "-1", "--threads", "1", "--steps", "1"]);
    assert!(!ok);
    assert!(error_line(&err).contains("cfg scale must be finite and >= 0, got -1"), "{err}");
    let (ok, _, err, _) = with(&["--kappa", "-0.5", "--threads", "1", "--steps", "1"]);
    assert!(!ok);
    assert!(error_line(&err).contains("extrapolation ratio must be finite and >= 0"), "{err}");
    // A bad output path fails before the (long) sampling starts.
    let missing = dir.path().join("no/such/dir/s.safetensors");
    let (ok, _, err, _) = ucgm(&["sample", "--ckpt", &w, "--steps", "100000", "--n", "64", "--out", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(error_line(&err).contains("does not exist"), "{err}");
    assert_eq!(err.lines().count(), 1, "failed before choosing a backend: {err}");
    let (ok, _, err, _) = ucgm(&["sample", "--ckpt", &w, "--out", dir.path().to_str().unwrap()]);
    assert!(!ok && error_line(&err).contains("use a .png or .safetensors file"), "{err}");
}

/// A SiT-tiny training checkpoint whose online and EMA weights differ, with a preset.
fn checkpoint(dir: &Path, preset_cfg: &SamplerConfig) -> std::path::PathBuf {
    let cfg = ModelConfig::reference_tiny(Arch::Sit);
    let n = ParamLayout::for_config(&cfg).total();
    let p: Vec<f32> = Rng::new(9).normal_f32(n).into_iter().map(|v| 0.05 * v).collect();
    let model = Model::from_params(cfg.clone(), CpuBackend::<f32>::new(1).unwrap(), &p).unwrap();
    let tc = TrainerConfig {
        transport: TransportSection::default(),
        optimizer: OptimizerSection::adamw(1e-2),
        train: TrainSection {
            ema_decay: 0.5,
            ..Default::default()
        },
    };
    let mut t = Trainer::new(tc, model).unwrap();
    let x = Rng::new(1).normal_f32(4 * cfg.image_len());
    t.train_step(&x, &[0, 1, 2, 3]).unwrap();
    let path = dir.join("ckpt.safetensors");
    t.save_checkpoint_with(&path, &preset::metadata(preset_cfg).unwrap()).unwrap();
    path
}

#[test]
fn checkpoints_load_as_models_and_export_with_their_preset() {
    let dir = tempfile::tempdir().unwrap();
    let few_step = SamplerConfig {
        transport: TransportKind::Linear,
        steps: 2,
        stochasticity: Stochasticity::Fixed(1.0),
        rfba_gap_steps: [0.001, 0.5],
        ..SamplerConfig::default()
    };
    let ckpt = checkpoint(dir.path(), &few_step);
    let c = ckpt.to_str().unwrap();

    // The Rust API: EMA by default, online on request, and they differ.
    let ema = weights::load_file(&ckpt, None, None).unwrap();
    assert_eq!(ema.checkpoint, Some(CheckpointWeights::Ema));
    let online = weights::load_file(&ckpt, None, Some(CheckpointWeights::Online)).unwrap();
    assert_ne!(ema.params, online.params);
    let m = Model::load(&ckpt, CpuBackend::<f32>::new(1).unwrap(), None).unwrap();
    assert_eq!(m.read_params().unwrap(), ema.params);

    // ucgm export writes the plain EMA weights with the preset; the export is a weights file.
    let exported = dir.path().join("exported.safetensors");
    let (ok, stdout, err, _) = ucgm(&["export", c, "--out", exported.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(stdout.contains("ema weights"), "{stdout}");
    let e = weights::load_file(&exported, None, None).unwrap();
    assert_eq!(e.checkpoint, None);
    assert_eq!(e.params, ema.params);
    assert_eq!(preset::from_metadata(&exported, &e.metadata).unwrap(), Some(few_step.clone()));
    let (ok, stdout, _, _) = ucgm(&["info", exported.to_str().unwrap()]);
    assert!(ok && stdout.contains("2 steps") && stdout.contains("crc32:"), "{stdout}");
    let online_out = dir.path().join("online.safetensors");
    let (ok, _, err, _) = ucgm(&["export", c, "--weights", "online", "--out", online_out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(weights::load_file(&online_out, None, None).unwrap().params, online.params);
    let (ok, _, err, _) = ucgm(&["export", c, "--weights", "mod", "--out", online_out.to_str().unwrap()]);
    assert!(!ok && error_line(&err).contains("holds no mod weights"), "{err}");

    // ucgm sample uses the preset (2 steps, ρ = 1) unless told otherwise, and says so.
    let s1 = dir.path().join("s1.safetensors");
    let (ok, stdout, err, _) = ucgm(&["sample", "--ckpt", c, "--n", "2", "--threads", "1", "--out", s1.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("sampler preset from") && stdout.contains("(2 steps, Linear)"), "{err}{stdout}");
    let (ok, stdout, err, _) = ucgm(&[
        "sample",
        "--ckpt",
        c,
        "--n",
        "2",
        "--steps",
        "3",
        "--threads",
        "1",
        "--out",
        s1.to_str().unwrap(),
    ]);
    assert!(ok && stdout.contains("(3 steps"), "{err}{stdout}");
    let (ok, stdout, err, _) = ucgm(&[
        "sample",
        "--ckpt",
        c,
        "--n",
        "2",
        "--no-preset",
        "--threads",
        "1",
        "--out",
        s1.to_str().unwrap(),
    ]);
    assert!(ok && stdout.contains("(30 steps") && !err.contains("sampler preset"), "{err}{stdout}");
}

#[test]
fn damaged_weights_fail_their_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_weights(dir.path());
    let mut bytes = std::fs::read(&w).unwrap();
    let n = bytes.len();
    // Finite garbage: flip a low mantissa bit of a weight near the end of the data.
    bytes[n - 64] ^= 0x01;
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let (ok, _, err, _) = ucgm(&["info", bad.to_str().unwrap()]);
    assert!(!ok && error_line(&err).contains("checksum mismatch"), "{err}");
    // A file written without a checksum (as converted official checkpoints) still loads.
    let f = TensorFile::open(&w).unwrap();
    let names: Vec<String> = f.names().to_vec();
    let data: Vec<(String, Vec<usize>, Vec<f32>)> = names
        .iter()
        .map(|n| {
            let (s, v) = f.f32(n).unwrap();
            (n.clone(), s, v)
        })
        .collect();
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = data
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = raw
        .iter()
        .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    let plain = dir.path().join("plain.safetensors");
    let meta: std::collections::HashMap<String, String> = BTreeMap::from([(weights::CONFIG_KEY.to_string(), f.metadata()[weights::CONFIG_KEY].clone())])
        .into_iter()
        .collect();
    std::fs::write(&plain, safetensors::serialize(tensors, Some(meta)).unwrap()).unwrap();
    let (ok, stdout, err, _) = ucgm(&["info", plain.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(stdout.contains("none (not verified)"), "{stdout}");
}
