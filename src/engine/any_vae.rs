//! [`AnyVae`]: a latent autoencoder on whichever backend was chosen at run time.

use std::path::Path;

use super::{dispatch, AnyBackend};
use crate::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::control::RunControl;
use crate::error::Result;
use crate::model::vae::{Posterior, Vae, VaeConfig, VaeNaming};

/// A [`Vae`] on the CPU or on CUDA. Each method forwards to the generic VAE.
#[allow(clippy::large_enum_variant)]
pub enum AnyVae {
    Cpu(Vae<CpuBackend<f32>>),
    #[cfg(feature = "cuda")]
    Cuda(Vae<CudaBackend>),
}

impl From<Vae<CpuBackend<f32>>> for AnyVae {
    fn from(v: Vae<CpuBackend<f32>>) -> Self {
        AnyVae::Cpu(v)
    }
}

#[cfg(feature = "cuda")]
impl From<Vae<CudaBackend>> for AnyVae {
    fn from(v: Vae<CudaBackend>) -> Self {
        AnyVae::Cuda(v)
    }
}

impl AnyVae {
    /// [`Vae::load`]: a safetensors VAE in diffusers, legacy-diffusers or LDM names.
    pub fn load(path: impl AsRef<Path>, backend: AnyBackend) -> Result<Self> {
        dispatch!(backend, AnyBackend, b => Vae::load(path, b).map(AnyVae::from))
    }

    /// [`Vae::random`]: seeded random weights (benchmarks, shape tests).
    pub fn random(cfg: VaeConfig, backend: AnyBackend, seed: u64) -> Result<Self> {
        dispatch!(backend, AnyBackend, b => Vae::random(cfg, b, seed).map(AnyVae::from))
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        dispatch!(self, AnyVae, v => v.config())
    }

    /// The naming scheme the weights were loaded from.
    pub fn naming(&self) -> VaeNaming {
        dispatch!(self, AnyVae, v => v.naming())
    }

    /// Bytes of the parameters.
    pub fn weight_bytes(&self) -> usize {
        dispatch!(self, AnyVae, v => v.weight_bytes())
    }

    /// Bytes of the activation workspace kept from the last call.
    pub fn workspace_bytes(&self) -> usize {
        dispatch!(self, AnyVae, v => v.workspace_bytes())
    }

    /// The backend the VAE runs on (a clone sharing its pool / stream).
    pub fn backend(&self) -> AnyBackend {
        dispatch!(self, AnyVae, v => AnyBackend::from(v.backend().clone()))
    }

    /// [`Vae::set_activation_budget`].
    pub fn set_activation_budget(&mut self, elems: usize) {
        dispatch!(self, AnyVae, v => v.set_activation_budget(elems))
    }

    /// [`Vae::encode`]: images [n, in, h, w] in [−1, 1] → posterior [n, z, h/f, w/f].
    pub fn encode(&mut self, images: &[f32], n: usize, h: usize, w: usize) -> Result<Posterior> {
        dispatch!(self, AnyVae, v => v.encode(images, n, h, w))
    }

    /// [`Vae::encode_with`]: with cancellation and progress.
    pub fn encode_with(&mut self, images: &[f32], n: usize, h: usize, w: usize, ctl: &mut RunControl<'_>) -> Result<Posterior> {
        dispatch!(self, AnyVae, v => v.encode_with(images, n, h, w, ctl))
    }

    /// [`Vae::decode_with`]: with cancellation and progress.
    pub fn decode_with(&mut self, latents: &[f32], n: usize, h: usize, w: usize, ctl: &mut RunControl<'_>) -> Result<Vec<f32>> {
        dispatch!(self, AnyVae, v => v.decode_with(latents, n, h, w, ctl))
    }

    /// [`Vae::decode`]: raw latents [n, z, h, w] → images [n, out, h·f, w·f].
    pub fn decode(&mut self, latents: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        dispatch!(self, AnyVae, v => v.decode(latents, n, h, w))
    }
}
