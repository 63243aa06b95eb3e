//! [`AnyTrainer`]: UCGM-T on whichever backend was chosen at run time.

use std::collections::BTreeMap;
use std::path::Path;

use super::{dispatch, AnyBackend, AnyModel};
use crate::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::dist::Communicator;
use crate::error::Result;
use crate::layout::ParamLayout;
use crate::model::config::ModelConfig;
use crate::trainer::{StepStats, Trainer, TrainerConfig};

/// A [`Trainer`] on the CPU or on CUDA. Each method forwards to the generic trainer.
// One value per handle or run, made once and never moved in a loop: the variants
// stay inline rather than boxed.
#[allow(clippy::large_enum_variant)]
pub enum AnyTrainer {
    Cpu(Trainer<CpuBackend<f32>>),
    #[cfg(feature = "cuda")]
    Cuda(Trainer<CudaBackend>),
}

impl From<Trainer<CpuBackend<f32>>> for AnyTrainer {
    fn from(t: Trainer<CpuBackend<f32>>) -> Self {
        AnyTrainer::Cpu(t)
    }
}

#[cfg(feature = "cuda")]
impl From<Trainer<CudaBackend>> for AnyTrainer {
    fn from(t: Trainer<CudaBackend>) -> Self {
        AnyTrainer::Cuda(t)
    }
}

/// Training on the CPU runs in f32: its bf16 mode is for sampling only, so asking for it
/// in a trainer is an error rather than a silent change of meaning.
fn refuse_cpu_bf16(backend: &AnyBackend) -> Result<()> {
    if matches!(backend, AnyBackend::Cpu(_)) && backend.bf16() {
        return Err(crate::error::Error::invalid(
            "bf16 on the CPU is a sampling mode (bf16 weights and products for a model that only samples); \
             training on the CPU runs in float32: leave bf16 off to train (--bf16, backend: {bf16: true}, ucgm_model_params.bf16)",
        ));
    }
    Ok(())
}

impl AnyTrainer {
    /// [`Trainer::new`]: a trainer over `model` (on the model's backend). The CPU's bf16
    /// mode is refused (see [`crate::engine::BackendRequest::bf16`]).
    pub fn new(config: TrainerConfig, model: AnyModel) -> Result<Self> {
        refuse_cpu_bf16(&model.backend())?;
        dispatch!(model, AnyModel, m => Trainer::new(config, m).map(AnyTrainer::from))
    }

    /// [`Trainer::resume`]: continues a run from a checkpoint exactly.
    pub fn resume(path: impl AsRef<Path>, backend: AnyBackend) -> Result<Self> {
        refuse_cpu_bf16(&backend)?;
        dispatch!(backend, AnyBackend, b => Trainer::resume(path, b).map(AnyTrainer::from))
    }

    /// [`Trainer::from_checkpoint`]: a new run from a checkpoint with new settings.
    pub fn from_checkpoint(path: impl AsRef<Path>, config: TrainerConfig, backend: AnyBackend) -> Result<Self> {
        refuse_cpu_bf16(&backend)?;
        dispatch!(backend, AnyBackend, b => Trainer::from_checkpoint(path, config, b).map(AnyTrainer::from))
    }

    /// The trainer's configuration.
    pub fn config(&self) -> &TrainerConfig {
        dispatch!(self, AnyTrainer, t => t.config())
    }

    /// Completed steps.
    pub fn step(&self) -> u64 {
        dispatch!(self, AnyTrainer, t => t.step())
    }

    /// The online network's configuration.
    pub fn model_config(&self) -> &ModelConfig {
        dispatch!(self, AnyTrainer, t => t.model().config())
    }

    /// The parameter layout shared by the online, EMA and `mod` weights.
    pub fn layout(&self) -> &ParamLayout {
        dispatch!(self, AnyTrainer, t => t.model().layout())
    }

    /// The backend the trainer runs on (a clone sharing its pool / stream).
    pub fn backend(&self) -> AnyBackend {
        dispatch!(self, AnyTrainer, t => AnyBackend::from(t.model().backend().clone()))
    }

    /// The online weights on the host, `[N]`.
    pub fn read_online(&self) -> Result<Vec<f32>> {
        dispatch!(self, AnyTrainer, t => t.model().read_params())
    }

    /// The sampling EMA on the host, `[N]`.
    pub fn read_ema(&self) -> Result<Vec<f32>> {
        dispatch!(self, AnyTrainer, t => t.read_ema())
    }

    /// The `mod` weights on the host, `[N]`, when `mod` exists as a separate copy.
    pub fn read_teacher(&self) -> Result<Option<Vec<f32>>> {
        dispatch!(self, AnyTrainer, t => t.read_teacher())
    }

    /// [`Trainer::train_step`]. x: `[B, C, H, W]`; labels: `[B]` in 0..=K.
    pub fn train_step(&mut self, x: &[f32], labels: &[usize]) -> Result<StepStats> {
        dispatch!(self, AnyTrainer, t => t.train_step(x, labels))
    }

    /// [`Trainer::train_step_with`]. x, z: `[B, C, H, W]`; labels, t: `[B]`.
    pub fn train_step_with(&mut self, x: &[f32], labels: &[usize], t: &[f32], z: &[f32]) -> Result<StepStats> {
        dispatch!(self, AnyTrainer, tr => tr.train_step_with(x, labels, t, z))
    }

    /// [`Trainer::train_step_part`]: one data-parallel step over `comm` on this rank's
    /// slice of a global batch of `global_batch`. x: `[b, C, H, W]`; labels: `[b]`.
    pub fn train_step_part(&mut self, x: &[f32], labels: &[usize], global_batch: usize, comm: &mut dyn Communicator) -> Result<StepStats> {
        dispatch!(self, AnyTrainer, t => t.train_step_part(x, labels, global_batch, comm))
    }

    /// [`Trainer::check_replicas`]: every rank holds rank 0's weights.
    pub fn check_replicas(&self, comm: &mut dyn Communicator) -> Result<()> {
        dispatch!(self, AnyTrainer, t => t.check_replicas(comm))
    }

    /// [`Trainer::save_checkpoint_with`] (no extra metadata).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_checkpoint_with(path, &BTreeMap::new())
    }

    /// [`Trainer::save_checkpoint_with`]: atomically, with extra metadata entries.
    pub fn save_checkpoint_with(&self, path: impl AsRef<Path>, extra: &BTreeMap<String, String>) -> Result<()> {
        dispatch!(self, AnyTrainer, t => t.save_checkpoint_with(path, extra))
    }
}
