//! Trainer checkpoints: resuming continues bit-identically, and a failed write leaves the
//! previous checkpoint intact.

use std::collections::HashMap;
use std::path::Path;

use ucgm::tensor_file::TensorFile;
use ucgm::trainer::{
    read_weights, CheckpointWeights, EnhancedStyle, OptimizerKind, OptimizerSection, TimeWeight, TrainSection, Trainer, TrainerConfig, TransportSection,
};
use ucgm::{Arch, CpuBackend, Model, ModelConfig, ParamLayout, Rng};

const BATCH: usize = 8;

fn model_config() -> ModelConfig {
    ModelConfig::reference_tiny(Arch::Sit)
}

/// A SiT-tiny with small random weights (the reference init zeroes the output layer).
fn model() -> Model<CpuBackend> {
    let cfg = model_config();
    let n = ParamLayout::for_config(&cfg).total();
    let params: Vec<f32> = Rng::new(11).normal_f32(n).into_iter().map(|v| 0.05 * v).collect();
    Model::from_params(cfg, CpuBackend::<f32>::new(0).unwrap(), &params).unwrap()
}

/// Multi-step style (EMA `mod` with its ramp, ft-vs-fe, cosine loss, AdamW) and few-step
/// style (frozen `mod`, central consistency, fc-vs-xz, robust loss, RAdam with clipping).
fn configs() -> Vec<(&'static str, TrainerConfig)> {
    let multi = TransportSection {
        enhanced_ratio: 0.47,
        enhanced_style: Some(EnhancedStyle::FtVsFe),
        wt_cosine_loss: true,
        weight_funcion: Some(TimeWeight::Cosine),
        ..Default::default()
    };
    let few = TransportSection {
        consistc_ratio: 1.0,
        enhanced_ratio: 2.0,
        enhanced_style: Some(EnhancedStyle::FcVsXz),
        scaled_cbl_eps: 5.0,
        ema_decay_rate: 1.0,
        time_dist_ctrl: [0.8, 1.0, 1.0],
        weight_funcion: Some(TimeWeight::Cosine),
        ..Default::default()
    };
    let adamw = OptimizerSection {
        kind: OptimizerKind::AdamW,
        lr: 2e-3,
        weight_decay: 0.01,
        beta1: 0.9,
        beta2: 0.95,
        max_grad_norm: None,
        eps: 1e-8,
    };
    let radam = OptimizerSection {
        kind: OptimizerKind::RAdam,
        lr: 1e-3,
        weight_decay: 0.0,
        beta1: 0.9,
        beta2: 0.999,
        max_grad_norm: Some(0.1),
        eps: 1e-8,
    };
    let train = TrainSection {
        global_seed: 3,
        ema_decay: 0.9,
        ..Default::default()
    };
    vec![
        (
            "multi-step",
            TrainerConfig {
                transport: multi,
                optimizer: adamw,
                train: train.clone(),
            },
        ),
        (
            "few-step",
            TrainerConfig {
                transport: few,
                optimizer: radam,
                train,
            },
        ),
    ]
}

/// Data batch number `k`: fixed images and labels 0..K−1.
fn batch(k: usize) -> (Vec<f32>, Vec<usize>) {
    let x = Rng::new(100 + k as u64).normal_f32(BATCH * model_config().image_len());
    let labels = (0..BATCH).map(|i| (i + k) % 10).collect();
    (x, labels)
}

fn run_steps(trainer: &mut Trainer<CpuBackend>, steps: std::ops::Range<usize>) {
    for k in steps {
        let (x, labels) = batch(k);
        let stats = trainer.train_step(&x, &labels).unwrap();
        assert!(stats.loss.is_finite() && stats.grad_norm.is_finite());
        assert_eq!(stats.step, k as u64 + 1);
    }
}

/// Tensor bits by name, and the metadata.
type Snapshot = (Vec<(String, Vec<u32>)>, HashMap<String, String>);

/// Everything the next step depends on, read back through a checkpoint file: every
/// tensor's bits by name, and the metadata.
fn snapshot(trainer: &Trainer<CpuBackend>, dir: &Path, name: &str) -> Snapshot {
    let path = dir.join(name);
    trainer.save_checkpoint(&path).unwrap();
    let file = TensorFile::open(&path).unwrap();
    let tensors = file
        .names()
        .iter()
        .map(|n| (n.clone(), file.f32(n).unwrap().1.iter().map(|v| v.to_bits()).collect()))
        .collect();
    (tensors, file.metadata().clone())
}

#[test]
fn resume_continues_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (total, split) = (5, 2);
    for (name, config) in configs() {
        let mut straight = Trainer::new(config.clone(), model()).unwrap();
        run_steps(&mut straight, 0..total);

        let mut first = Trainer::new(config.clone(), model()).unwrap();
        run_steps(&mut first, 0..split);
        let ckpt = dir.path().join(format!("{name}.safetensors"));
        first.save_checkpoint(&ckpt).unwrap();
        drop(first);
        let mut resumed = Trainer::resume(&ckpt, CpuBackend::<f32>::new(0).unwrap()).unwrap();
        assert_eq!(resumed.step(), split as u64);
        assert_eq!(resumed.config(), &config);
        run_steps(&mut resumed, split..total);

        let a = straight.model().read_params().unwrap();
        let b = resumed.model().read_params().unwrap();
        assert!(
            a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name}: online weights differ after resume"
        );
        assert_eq!(straight.read_ema().unwrap(), resumed.read_ema().unwrap(), "{name}: EMA differs");
        assert_eq!(straight.read_teacher().unwrap(), resumed.read_teacher().unwrap(), "{name}: mod differs");
        assert!(straight.read_teacher().unwrap().is_some(), "{name}: mod is a separate copy");
        assert_eq!(straight.rng_state(), resumed.rng_state());
        // The whole state (moments, counters, ramp, RNG) is bit-identical.
        let (s_tensors, s_meta) = snapshot(&straight, dir.path(), "s.safetensors");
        let (r_tensors, r_meta) = snapshot(&resumed, dir.path(), "r.safetensors");
        assert_eq!(s_tensors.len(), 5 * 31, "{name}: online, ema., mod., exp_avg., exp_avg_sq. tensors");
        for ((sn, sv), (rn, rv)) in s_tensors.iter().zip(&r_tensors) {
            assert_eq!(sn, rn);
            assert!(sv == rv, "{name}: tensor {sn} differs after resume");
        }
        assert_eq!(s_meta, r_meta, "{name}: metadata differs after resume");
        // The training actually moved the weights.
        assert_ne!(a, model().read_params().unwrap());
    }
}

#[test]
fn checkpoint_weights_read_back_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = configs().remove(0);
    let mut trainer = Trainer::new(config, model()).unwrap();
    run_steps(&mut trainer, 0..2);
    let path = dir.path().join("c.safetensors");
    trainer.save_checkpoint(&path).unwrap();
    let (cfg, online) = read_weights(&path, CheckpointWeights::Online).unwrap();
    assert_eq!(cfg, model_config());
    assert_eq!(online, trainer.model().read_params().unwrap());
    assert_eq!(read_weights(&path, CheckpointWeights::Ema).unwrap().1, trainer.read_ema().unwrap());
    assert_eq!(Some(read_weights(&path, CheckpointWeights::Mod).unwrap().1), trainer.read_teacher().unwrap());
    // A plain weights file is not a trainer checkpoint.
    let weights = dir.path().join("w.safetensors");
    trainer.model().save(&weights).unwrap();
    assert!(Trainer::resume(&weights, CpuBackend::<f32>::new(0).unwrap()).is_err());
}

#[test]
fn failed_write_leaves_previous_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = configs().remove(1);
    let mut trainer = Trainer::new(config, model()).unwrap();
    run_steps(&mut trainer, 0..1);
    let path = dir.path().join("ckpt.safetensors");
    trainer.save_checkpoint(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let weights_after_one = trainer.model().read_params().unwrap();
    run_steps(&mut trainer, 1..2);

    // Simulated failure mid-write: the temporary file cannot be created because its
    // name is taken by a directory. The save fails and the old file is untouched.
    let tmp = dir.path().join(format!(".ckpt.safetensors.{}.tmp", std::process::id()));
    std::fs::create_dir(&tmp).unwrap();
    assert!(trainer.save_checkpoint(&path).is_err());
    std::fs::remove_dir(&tmp).unwrap();
    assert!(std::fs::read(&path).unwrap() == before, "previous checkpoint was modified");
    let restored = Trainer::resume(&path, CpuBackend::<f32>::new(0).unwrap()).unwrap();
    assert_eq!(restored.step(), 1);
    assert_eq!(restored.model().read_params().unwrap(), weights_after_one);

    // A missing directory: an error, and nothing is created.
    let missing = dir.path().join("no/such/dir/ckpt.safetensors");
    assert!(trainer.save_checkpoint(&missing).is_err());
    assert!(!missing.parent().unwrap().exists());
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn new_run_from_checkpoint_honours_no_reopt_and_no_reuni() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = configs().remove(1);
    let mut trainer = Trainer::new(config.clone(), model()).unwrap();
    run_steps(&mut trainer, 0..2);
    let path = dir.path().join("c.safetensors");
    trainer.save_checkpoint(&path).unwrap();
    let teacher = trainer.read_teacher().unwrap().expect("frozen mod");

    // Keep everything: the frozen mod comes back, the step count continues.
    let kept = Trainer::from_checkpoint(&path, config.clone(), CpuBackend::<f32>::new(0).unwrap()).unwrap();
    assert_eq!(kept.step(), 2);
    assert_eq!(kept.read_teacher().unwrap(), Some(teacher.clone()));
    assert_eq!(kept.read_ema().unwrap(), trainer.read_ema().unwrap());

    // no_reuni: mod is re-created from the loaded online weights at the first step.
    let mut fresh_config = config;
    fresh_config.train.no_reuni = true;
    fresh_config.train.no_reopt = true;
    let mut fresh = Trainer::from_checkpoint(&path, fresh_config, CpuBackend::<f32>::new(0).unwrap()).unwrap();
    assert_eq!(fresh.read_teacher().unwrap(), None);
    let online = fresh.model().read_params().unwrap();
    run_steps(&mut fresh, 2..3);
    assert_eq!(fresh.read_teacher().unwrap(), Some(online));
}
