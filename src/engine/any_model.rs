//! [`AnyModel`]: a SiT / TiT network on whichever backend was chosen at run time.

use std::path::Path;

use super::{dispatch, AnyBackend};
use crate::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::layout::ParamLayout;
use crate::model::config::ModelConfig;
use crate::model::Model;

/// A [`Model`] on the CPU or on CUDA. Each method forwards to the generic model.
// One value per handle or run, made once and never moved in a loop: the variants
// stay inline rather than boxed.
#[allow(clippy::large_enum_variant)]
pub enum AnyModel {
    Cpu(Model<CpuBackend<f32>>),
    #[cfg(feature = "cuda")]
    Cuda(Model<CudaBackend>),
}

impl From<Model<CpuBackend<f32>>> for AnyModel {
    fn from(m: Model<CpuBackend<f32>>) -> Self {
        AnyModel::Cpu(m)
    }
}

#[cfg(feature = "cuda")]
impl From<Model<CudaBackend>> for AnyModel {
    fn from(m: Model<CudaBackend>) -> Self {
        AnyModel::Cuda(m)
    }
}

impl AnyModel {
    /// [`Model::init`]: the reference's seeded from-scratch initialisation on `backend`.
    pub fn init(cfg: ModelConfig, backend: AnyBackend, seed: u64) -> Result<Self> {
        dispatch!(backend, AnyBackend, b => Model::init(cfg, b, seed).map(AnyModel::from))
    }

    /// [`Model::from_params`]: `params` is `[N]` in the [`ParamLayout`] order of `cfg`.
    pub fn from_params(cfg: ModelConfig, backend: AnyBackend, params: &[f32]) -> Result<Self> {
        dispatch!(backend, AnyBackend, b => Model::from_params(cfg, b, params).map(AnyModel::from))
    }

    /// [`Model::from_params_owned`]: no second copy of the weights on the CPU.
    pub fn from_params_owned(cfg: ModelConfig, backend: AnyBackend, params: Vec<f32>) -> Result<Self> {
        dispatch!(backend, AnyBackend, b => Model::from_params_owned(cfg, b, params).map(AnyModel::from))
    }

    /// [`Model::load`]: a safetensors weights file.
    pub fn load(path: impl AsRef<Path>, backend: AnyBackend, heads: Option<usize>) -> Result<Self> {
        dispatch!(backend, AnyBackend, b => Model::load(path, b, heads).map(AnyModel::from))
    }

    /// [`Model::save_with_metadata`].
    pub fn save_with_metadata(&self, path: impl AsRef<Path>, extra: &std::collections::BTreeMap<String, String>) -> Result<()> {
        dispatch!(self, AnyModel, m => m.save_with_metadata(path, extra))
    }

    /// [`Model::enter_inference_layout`]: a model that only samples holds its weights
    /// once, in the layout its GEMMs want.
    pub fn enter_inference_layout(&mut self) -> Result<()> {
        dispatch!(self, AnyModel, m => m.enter_inference_layout())
    }

    /// [`Model::weight_bytes`].
    pub fn weight_bytes(&self) -> usize {
        dispatch!(self, AnyModel, m => m.weight_bytes())
    }

    /// [`Model::held_bytes`]: weights plus the activation workspaces held now.
    pub fn held_bytes(&self) -> usize {
        dispatch!(self, AnyModel, m => m.held_bytes())
    }

    /// The network's configuration.
    pub fn config(&self) -> &ModelConfig {
        dispatch!(self, AnyModel, m => m.config())
    }

    /// The parameter layout.
    pub fn layout(&self) -> &ParamLayout {
        dispatch!(self, AnyModel, m => m.layout())
    }

    /// The backend the model runs on (a clone sharing its pool / stream).
    pub fn backend(&self) -> AnyBackend {
        dispatch!(self, AnyModel, m => AnyBackend::from(m.backend().clone()))
    }

    /// The parameters on the host, `[N]` in layout order.
    pub fn read_params(&self) -> Result<Vec<f32>> {
        dispatch!(self, AnyModel, m => m.read_params())
    }

    /// Overwrites the parameters with `params` (`[N]` in layout order).
    pub fn write_params(&mut self, params: &[f32]) -> Result<()> {
        dispatch!(self, AnyModel, m => m.write_params(params))
    }

    /// One evaluation F(x, t, y). x: `[B, C, H, W]`; t: `[B]`; labels: `[B]` in 0..=K;
    /// out: `[B, C, H, W]` (assign).
    pub fn forward(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        dispatch!(self, AnyModel, m => m.forward(x, t, labels, out))
    }

    /// [`Model::save`]: safetensors, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        dispatch!(self, AnyModel, m => m.save(path))
    }
}

impl Denoiser for AnyModel {
    fn sample_shape(&self) -> [usize; 3] {
        dispatch!(self, AnyModel, m => m.sample_shape())
    }
    fn num_classes(&self) -> usize {
        dispatch!(self, AnyModel, m => Denoiser::num_classes(m))
    }
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        dispatch!(self, AnyModel, m => m.eval(x, t, labels, out))
    }
}
