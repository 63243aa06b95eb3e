//! The all-reduce share of a data-parallel UCGM-T step on the CPU, and a scaling note for
//! XL/2 on 8 GPUs. Run on a quiet machine (timings are meaningless while others build):
//!
//! ```text
//! cargo build --release --features mpi --example dist_allreduce_share
//! mpirun -np 2 --bind-to none target/release/examples/dist_allreduce_share [MODEL] [GLOBAL_BATCH] [STEPS]
//! ```
//! (defaults SiT-S/2, 8, 3; add `--oversubscribe --allow-run-as-root` where needed).
//! Each rank trains its half of the global batch; rank 0 prints the step time, the time
//! of one all-reduce of a buffer as large as the gradient, their ratio, and the cost of
//! drawing the whole global batch's noise on every rank. Without MPI (or run as one
//! process) it reports the one-process step.
use std::time::Instant;

use ucgm::dist::{communicator_for, shard_range, LaunchEnv, Transport};
use ucgm::trainer::{OptimizerSection, TrainSection, Trainer, TrainerConfig};
use ucgm::{CpuBackend, Model, ModelConfig, ParamLayout, Rng};

fn main() -> ucgm::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("SiT-S/2");
    let global: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut comm = communicator_for(&LaunchEnv::from_env()?, Transport::Auto { cuda: false })?;
    let (rank, world) = (comm.rank(), comm.world());
    let cfg = ModelConfig::from_name(name, 32, 4, 1000)?;
    // The machine's cores shared among the ranks on it (one pool per rank).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = Model::init(cfg.clone(), CpuBackend::<f32>::new((cores / world).max(1))?, 0)?;
    let config = TrainerConfig {
        transport: Default::default(),
        optimizer: OptimizerSection::adamw(1e-4),
        train: TrainSection::default(),
    };
    let mut trainer = Trainer::new(config, model)?;
    let n_params = trainer.model().layout().total();
    let part = shard_range(global, rank, world);
    let mut data = Rng::new(7);
    let x = data.normal_f32(part.len() * cfg.image_len());
    let labels: Vec<usize> = part.clone().map(|i| i % 1000).collect();

    let (mut step_s, mut reduce_s) = (Vec::new(), Vec::new());
    let mut grad_like = vec![1e-3f32; n_params];
    for i in 0..=steps {
        comm.barrier()?;
        let t0 = Instant::now();
        trainer.train_step_part(&x, &labels, global, comm.as_mut())?;
        let step = t0.elapsed().as_secs_f64();
        comm.barrier()?;
        let t1 = Instant::now();
        comm.all_reduce_sum_f32(&mut grad_like)?;
        let reduce = t1.elapsed().as_secs_f64();
        if i > 0 {
            // The first step warms up (allocation, first touch).
            step_s.push(step);
            reduce_s.push(reduce);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (step, reduce) = (median(&mut step_s), median(&mut reduce_s));
    let t_noise = {
        let t0 = Instant::now();
        let z = Rng::new(1).normal_f32(global * cfg.image_len());
        std::hint::black_box(z);
        t0.elapsed().as_secs_f64()
    };
    if rank == 0 {
        let mb = n_params as f64 * 4.0 / 1e6;
        println!(
            "{name}, global batch {global} over {world} rank(s) ({} on rank 0), {} ({n_params} parameters, gradient {mb:.1} MB)",
            part.len(),
            comm.name()
        );
        println!(
            "  step (median of {steps}): {:.1} ms, of which the gradient all-reduce ≈ {:.1} ms = {:.1} %",
            step * 1e3,
            reduce * 1e3,
            100.0 * reduce / step
        );
        println!(
            "  drawing the global batch's noise on every rank: {:.2} ms ({:.2} % of the step)",
            t_noise * 1e3,
            100.0 * t_noise / step
        );
        xl2_note();
    }
    Ok(())
}

/// What one data-parallel step of XL/2 on 8 GPUs spends in the gradient all-reduce, from
/// the gradient size and stated assumptions (no GPU step was measured here).
fn xl2_note() {
    let Ok(cfg) = ModelConfig::from_name("SiT-XL/2", 32, 4, 1000) else { return };
    let n = ParamLayout::for_config(&cfg).total() as f64;
    let bytes = 4.0 * n;
    let ranks = 8.0;
    // A ring all-reduce moves 2(W−1)/W of the buffer through each GPU's link.
    let moved = 2.0 * (ranks - 1.0) / ranks * bytes;
    let bus = 350e9; // assumed NCCL bus bandwidth on 8×H100/H200 NVLink (bytes/s)
    let pcie = 25e9; // assumed host↔device copy bandwidth (bytes/s)
    let ring = moved / bus;
    let host_copies = 2.0 * bytes / pcie;
    println!(
        "XL/2 note: {:.1} M parameters, f32 gradient {:.2} GB; 8-GPU ring all-reduce moves {:.2} GB per GPU: ≈ {:.0} ms at an assumed {:.0} GB/s NCCL bus bandwidth,",
        n / 1e6,
        bytes / 1e9,
        moved / 1e9,
        ring * 1e3,
        bus / 1e9
    );
    println!(
        "  plus ≈ {:.0} ms for the current NCCL path's copy through the host (2 × {:.2} GB at an assumed {:.0} GB/s) — reduce the device buffer in place before scaling out.",
        host_copies * 1e3,
        bytes / 1e9,
        pcie / 1e9
    );
}
