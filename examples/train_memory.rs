//! Resident memory of training against the sum the README states (issue 17): a named
//! model (default SiT-S/2 at 256 px: latent 4×32×32, 1000 classes) trained with UCGM-T
//! (AdamW, EMA, default transport) at batch B on random latents for N steps, printing the
//! process's resident set (VmRSS) and its peak (VmHWM) every K steps next to the predicted
//! sum: weights + gradients + AdamW's two moments + the EMA copy + `mod`'s teacher copy
//! when the trainer holds one (all float32, from the parameter count) + the step's
//! workspaces (the model's own count of its buffers, `Model::workspace_bytes`).
//!
//! `cargo run --release --example train_memory -- [SiT-S/2] [batch 8] [steps 30] [every 10]`
//!
//! Growth over many steps is checked on a tiny model in `tests/training_memory.rs`.

use ucgm::trainer::{OptimizerSection, TrainSection, Trainer, TrainerConfig, TransportSection};
use ucgm::{CpuBackend, Model, ModelConfig, Rng};

const MIB: f64 = (1 << 20) as f64;

fn status_kib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

fn main() -> ucgm::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("SiT-S/2");
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let steps: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let every: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let cfg = ModelConfig::from_name(name, 32, 4, 1000)?;
    let rss0 = status_kib("VmRSS:") * 1024.0;
    let model = Model::init(cfg.clone(), CpuBackend::<f32>::new(0)?, 0)?;
    let n = model.layout().total() as f64;
    let config = TrainerConfig {
        transport: TransportSection::default(),
        optimizer: OptimizerSection::adamw(1e-4),
        train: TrainSection::default(),
    };
    let mut trainer = Trainer::new(config, model)?;
    let mut rng = Rng::new(1);
    let x = rng.normal_f32(batch * cfg.image_len());
    let labels: Vec<usize> = (0..batch).map(|i| i % 1000).collect();
    println!(
        "{name} batch {batch}: {:.1} M parameters; process before the model: {:.0} MiB resident",
        n / 1e6,
        rss0 / MIB
    );
    println!(
        "{:>6} {:>12} {:>12} {:>14} {:>10}",
        "step", "VmRSS MiB", "VmHWM MiB", "predicted MiB", "HWM/pred"
    );
    for step in 1..=steps {
        trainer.train_step(&x, &labels)?;
        if step % every == 0 || step == 1 {
            let teacher = if trainer.read_teacher()?.is_some() { 4.0 * n } else { 0.0 };
            // Weights (one copy) + gradients + m + v + EMA + teacher + workspaces.
            let predicted = 4.0 * n * 5.0 + teacher + trainer.model().workspace_bytes() as f64 + rss0;
            let (rss, hwm) = (status_kib("VmRSS:") * 1024.0, status_kib("VmHWM:") * 1024.0);
            println!(
                "{step:>6} {:>12.0} {:>12.0} {:>14.0} {:>10.3}",
                rss / MIB,
                hwm / MIB,
                predicted / MIB,
                hwm / predicted
            );
        }
    }
    Ok(())
}
