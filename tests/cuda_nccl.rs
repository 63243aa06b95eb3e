//! NCCL on one GPU (feature `nccl`): the NCCL communicator with a world of 1 runs the
//! same code path as a multi-GPU job — unique id, communicator, stream, watchdog, the f32
//! and f64 sum all-reduces, broadcast and barrier — and a data-parallel training step
//! through it on the CUDA backend equals the one-process step bit for bit (the trainer
//! reduces the gradient through any real transport, even with one rank). Multi-rank
//! logic is covered on the CPU over MPI (`tests/dist_mpi.rs`); several GPUs were not
//! available to the project.
//!
//! Each test skips itself where CUDA or libnccl is unavailable, unless
//! `UCGM_REQUIRE_CUDA=1`, which turns a skip into a failure.
#![cfg(feature = "nccl")]

mod cuda_support;

use cuda_support::*;
use ucgm::dist::{communicator_for, Communicator, LaunchEnv, Transport};
use ucgm::trainer::{OptimizerSection, TrainSection, Trainer, TrainerConfig, TransportSection};
use ucgm::{Arch, Model, ModelConfig, ParamLayout, Rng};

/// The NCCL communicator of a world of 1 on GPU 0, or None (skipped) without CUDA/NCCL.
fn nccl(test: &str) -> Option<Box<dyn Communicator>> {
    gpu(test)?;
    match communicator_for(&LaunchEnv::single(), Transport::Nccl) {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(!require_cuda(), "{test}: UCGM_REQUIRE_CUDA=1 but NCCL is unavailable: {e}");
            println!("skipped {test}: {e}");
            None
        }
    }
}

#[test]
fn nccl_world_of_one_collectives_are_the_identity() {
    let Some(mut comm) = nccl("nccl_world_of_one_collectives_are_the_identity") else {
        return;
    };
    assert_eq!((comm.name(), comm.rank(), comm.world()), ("nccl", 0, 1));
    let want = Rng::new(3).normal_f32(1 << 20);
    let mut v = want.clone();
    comm.all_reduce_sum_f32(&mut v).unwrap();
    assert!(v == want, "f32 all-reduce over one rank changed the values");
    let want64: Vec<f64> = want.iter().map(|&x| f64::from(x) * 1.000_000_1).collect();
    let mut v64 = want64.clone();
    comm.all_reduce_sum_f64(&mut v64).unwrap();
    assert!(v64 == want64, "f64 all-reduce over one rank changed the values");
    let mut bytes: Vec<u8> = (0..=255).collect();
    comm.broadcast(&mut bytes, 0).unwrap();
    assert!(bytes.iter().enumerate().all(|(i, &b)| b as usize == i));
    comm.barrier().unwrap();
    // An empty reduction is not an error.
    comm.all_reduce_sum_f32(&mut []).unwrap();
}

fn trainer_config() -> TrainerConfig {
    TrainerConfig {
        transport: TransportSection::default(),
        optimizer: OptimizerSection::adamw(1e-3),
        train: TrainSection {
            ema_decay: 0.9,
            ..Default::default()
        },
    }
}

#[test]
fn nccl_data_parallel_step_equals_one_process_step() {
    let Some(mut comm) = nccl("nccl_data_parallel_step_equals_one_process_step") else {
        return;
    };
    let be = gpu("nccl_data_parallel_step_equals_one_process_step").unwrap();
    let cfg = ModelConfig::reference_tiny(Arch::Tit);
    let params: Vec<f32> = Rng::new(21)
        .normal_f32(ParamLayout::for_config(&cfg).total())
        .into_iter()
        .map(|v| 0.05 * v)
        .collect();
    let mut plain = Trainer::new(trainer_config(), Model::from_params(cfg.clone(), be.clone(), &params).unwrap()).unwrap();
    let mut parted = Trainer::new(trainer_config(), Model::from_params(cfg.clone(), be, &params).unwrap()).unwrap();
    let b = 6;
    for step in 0..3u64 {
        let x = Rng::new(500 + step).normal_f32(b * cfg.image_len());
        let labels: Vec<usize> = (0..b).map(|i| i % cfg.num_classes).collect();
        let a = plain.train_step(&x, &labels).unwrap();
        let p = parted.train_step_part(&x, &labels, b, comm.as_mut()).unwrap();
        assert_eq!(a.loss.to_bits(), p.loss.to_bits(), "step {step}: loss");
        parted.check_replicas(comm.as_mut()).unwrap();
    }
    let (wa, wp) = (plain.model().read_params().unwrap(), parted.model().read_params().unwrap());
    assert!(wa == wp, "weights after 3 steps through NCCL differ from the one-process run");
}
