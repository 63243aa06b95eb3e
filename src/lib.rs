//! # ucgm
//!
//! A compact engine that trains and samples diffusion transformers with *Unified
//! Continuous Generative Models* (UCGM, arXiv 2505.07447): one trainer (UCGM-T) and one
//! sampler (UCGM-S) covering diffusion, flow matching and few-step consistency models.
//!
//! * [`model`] — SiT and TiT networks, written once over the [`backend::Backend`] trait,
//!   with hand-written forward and backward passes and safetensors weights.
//! * [`backend`] — the op list; `cpu` (flat buffers, rayon, the `gemm` crate's kernels)
//!   and, with the `cuda` feature (on by default), `cuda` (cuBLAS + NVRTC kernels).
//! * [`engine`] — the backend chosen at run time (`auto` / `cpu` / `cuda`): backend,
//!   model and trainer enums over the generic ones.
//! * [`transport`], [`sampler`] — the six UCGM transports and UCGM-S.
//! * [`trainer`] — UCGM-T, optimizers, checkpoints.
//! * [`data`], [`image`], [`metric`] — datasets, PNG grids, Fréchet distance.
//! * [`app`] — run configs, the training loop, the demo; [`capi`] — the C ABI.
//! * [`rng`] — portable seeded noise.
//! * [`transport`] — the six UCGM transports (α = noise coefficient, v2 time flip).
//! * [`sampler`] — UCGM-S, the unified sampler.
//! * [`capi`] — the C ABI (`libucgm.so` / `libucgm.a`, `include/ucgm.h`).
//!
//! Tensors are float32, NCHW, contiguous; lengths are in elements.

// Numeric kernels index several arrays with one loop variable; iterator zips would hide that.
#![allow(clippy::needless_range_loop)]

pub mod app;
pub mod backend;
pub mod capi;
pub mod class_metric;
pub mod control;
pub mod data;
pub mod denoiser;
pub mod dist;
pub mod engine;
pub mod error;
pub mod fid;
pub mod image;
pub mod latent_norm;
pub mod layout;
pub mod limits;
pub mod metric;
pub mod model;
#[cfg(feature = "ndarray")]
pub mod nd;
pub mod preset;
pub mod rng;
pub mod sampler;
pub mod tensor_file;
pub mod trainer;
pub mod transport;

pub use backend::cpu::CpuBackend;
pub use backend::Backend;
pub use denoiser::Denoiser;
pub use engine::{AnyBackend, AnyModel, AnyTrainer, AnyVae, BackendChoice, BackendRequest};
pub use error::{Error, Result};
pub use layout::ParamLayout;
pub use model::config::{Arch, ModelConfig};
pub use model::vae::{Posterior, Vae, VaeConfig, VaeNaming};
pub use model::Model;
pub use rng::Rng;
pub use sampler::{sample, NoiseSource, SampleOutput, SamplerConfig, Stochasticity};
pub use transport::{Transport, TransportKind};
