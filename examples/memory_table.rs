//! Memory of the named model sizes, from the buffers the engine actually allocates: the
//! weights (float32, one copy; the sampling handle's inference layout adds one Linear's
//! scratch), the activation workspace of sampling per image (the forward keeps one
//! block's activations and one residual stream, allocated once per batch size and reused
//! across steps and calls), and a training step's state per image (every block's
//! activations, the [B, H, T, T] attention probabilities and the backward scratch) with
//! the per-model training state (gradients, AdamW's two moments, the EMA copy).
//!
//! `cargo run --release --example memory_table` prints the README table. The workspace
//! numbers are exact (sums of `Backend::len` of every buffer of `Acts`/`GradScratch` at
//! batch 1 and 8: fixed part + per image); the process's resident memory adds the
//! allocator's and the thread pool's overhead and the backend's per-op temporaries.

use ucgm::model::acts::{Acts, GradScratch};
use ucgm::{CpuBackend, ModelConfig, ParamLayout};

const MIB: f64 = (1 << 20) as f64;

fn main() -> ucgm::Result<()> {
    let be = CpuBackend::<f32>::new(1)?;
    println!("SiT/DiT sizes at 256 px (SD-VAE latent 4×32×32, 1000 classes), float32:");
    println!();
    println!("| model | params | weights MiB | sampling MiB/image | sampling fixed MiB | training MiB/image | training state MiB (grads + AdamW m, v + EMA) |");
    println!("|---|---|---|---|---|---|---|");
    for name in ["SiT-S/2", "SiT-B/2", "SiT-L/2", "SiT-XL/2"] {
        let cfg = ModelConfig::from_name(name, 32, 4, 1000)?;
        let n = ParamLayout::for_config(&cfg).total();
        let infer = |b: usize| -> ucgm::Result<usize> { Ok(Acts::new(&be, &cfg, b, false)?.bytes(&be)) };
        let train = |b: usize| -> ucgm::Result<usize> { Ok(Acts::new(&be, &cfg, b, true)?.bytes(&be) + GradScratch::new(&be, &cfg, b)?.bytes(&be)) };
        let (i1, i8) = (infer(1)?, infer(8)?);
        let (t1, t8) = (train(1)?, train(8)?);
        let (i_per, t_per) = ((i8 - i1) as f64 / 7.0, (t8 - t1) as f64 / 7.0);
        println!(
            "| {name} | {:.1} M | {:.0} | {:.1} | {:.2} | {:.0} | {:.0} |",
            n as f64 / 1e6,
            4.0 * n as f64 / MIB,
            i_per / MIB,
            (i1 as f64 - i_per) / MIB,
            t_per / MIB,
            16.0 * n as f64 / MIB,
        );
    }
    println!();
    println!("sampling at batch B holds weights + fixed + B × per-image; a training step at batch B holds weights + state + B × per-image");
    println!("(plus the `mod` teacher copy, 4 bytes per parameter, when enhanced-target training uses one).");
    Ok(())
}
