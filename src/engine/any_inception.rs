//! [`AnyInception`]: the FID Inception on whichever backend was chosen at run time.

use std::path::Path;

use super::{dispatch, AnyBackend};
use crate::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::error::Result;
use crate::model::inception::{FidInception, InceptionInput, InceptionOutput};

/// A [`FidInception`] on the CPU or on CUDA. Each method forwards to the generic network.
pub enum AnyInception {
    Cpu(FidInception<CpuBackend<f32>>),
    #[cfg(feature = "cuda")]
    Cuda(FidInception<CudaBackend>),
}

impl AnyInception {
    /// [`FidInception::load`]: a converted `pt_inception-2015-12-05` safetensors file.
    pub fn load(path: impl AsRef<Path>, backend: AnyBackend, input: InceptionInput) -> Result<Self> {
        dispatch!(backend, AnyBackend, b => FidInception::load(path, b, input).map(|n| n.into()))
    }

    /// The preprocessing mode.
    pub fn input(&self) -> InceptionInput {
        dispatch!(self, AnyInception, n => n.input())
    }

    /// The backend the network runs on.
    pub fn backend(&self) -> AnyBackend {
        dispatch!(self, AnyInception, n => n.backend().clone().into())
    }

    /// [`FidInception::forward`]: pool3 features and logits of images `[n, 3, h, w]`.
    pub fn forward(&self, images: &[f32] /* [n, 3, h, w] */, n: usize, h: usize, w: usize) -> Result<InceptionOutput> {
        dispatch!(self, AnyInception, net => net.forward(images, n, h, w))
    }
}

impl From<FidInception<CpuBackend<f32>>> for AnyInception {
    fn from(n: FidInception<CpuBackend<f32>>) -> Self {
        AnyInception::Cpu(n)
    }
}

#[cfg(feature = "cuda")]
impl From<FidInception<CudaBackend>> for AnyInception {
    fn from(n: FidInception<CudaBackend>) -> Self {
        AnyInception::Cuda(n)
    }
}
