//! [`AnyEdm2`]: the EDM2 UNet (forward only) on whichever backend was chosen at run time.

use std::path::Path;

use super::{dispatch, AnyBackend};
use crate::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::model::edm2::{Edm2, Edm2Config};

/// An [`Edm2`] UNet on the CPU or on CUDA. Each method forwards to the generic network.
// One value per handle, made once and never moved in a loop: the variants stay inline.
#[allow(clippy::large_enum_variant)]
pub enum AnyEdm2 {
    Cpu(Edm2<CpuBackend<f32>>),
    #[cfg(feature = "cuda")]
    Cuda(Edm2<CudaBackend>),
}

impl AnyEdm2 {
    /// [`Edm2::load`]: a safetensors state dict with the reference's names; `cfg` is
    /// inferred from the tensors when `None`.
    pub fn load(path: impl AsRef<Path>, backend: AnyBackend, cfg: Option<Edm2Config>) -> Result<Self> {
        match backend {
            AnyBackend::Cpu(b) => Edm2::load(path, b, cfg).map(AnyEdm2::Cpu),
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(b) => Edm2::load(path, b, cfg).map(AnyEdm2::Cuda),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Edm2Config {
        dispatch!(self, AnyEdm2, m => m.config())
    }

    /// The backend the UNet runs on (a clone sharing its pool / stream).
    pub fn backend(&self) -> AnyBackend {
        dispatch!(self, AnyEdm2, m => AnyBackend::from(m.backend().clone()))
    }

    /// [`Edm2::weight_bytes`].
    pub fn weight_bytes(&self) -> usize {
        dispatch!(self, AnyEdm2, m => m.weight_bytes())
    }

    /// One evaluation F(x, t, y). x: `[B, C, H, W]`; t: `[B]`; labels: `[B]` in 0..=K
    /// (K = the unconditional branch); out: `[B, C, H, W]` (assign).
    pub fn forward(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        dispatch!(self, AnyEdm2, m => m.forward(x, t, labels, out))
    }
}

impl Denoiser for AnyEdm2 {
    fn sample_shape(&self) -> [usize; 3] {
        dispatch!(self, AnyEdm2, m => m.sample_shape())
    }
    fn num_classes(&self) -> usize {
        dispatch!(self, AnyEdm2, m => Denoiser::num_classes(m))
    }
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        dispatch!(self, AnyEdm2, m => m.eval(x, t, labels, out))
    }
}
