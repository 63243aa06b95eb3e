//! Trainer checkpoints: one safetensors file holding everything a run needs to continue
//! bit-identically, written atomically (temp file, fsync, rename) so an interrupted
//! write never damages the previous checkpoint.
//!
//! Contents (every tensor f32, named after the reference's `state_dict` names):
//! * `<name>` — the online weights;
//! * `ema.<name>` — the sampling EMA;
//! * `mod.<name>` — the auxiliary network `mod`, when it exists as a separate copy;
//! * `optimizer.exp_avg.<name>`, `optimizer.exp_avg_sq.<name>` — the moments m and v;
//! * metadata `ucgm_config` (the model configuration, as in a weights file),
//!   `ucgm_trainer_config` (the [`TrainerConfig`]) and `ucgm_trainer_state` (completed
//!   steps, optimizer steps, RNG position, whether `mod` exists and its EMA ramp), as JSON.
//!
//! Unlike the reference, the `mod` ramp is saved too (see [`super::teacher`]), so
//! [`Trainer::resume`] continues exactly where the run stopped.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::TrainerConfig;
use super::optimizer::Optimizer;
use super::step::Trainer;
use super::teacher::{EmaRamp, Teacher, TeacherKind};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::layout::ParamLayout;
use crate::model::config::ModelConfig;
use crate::model::weights::{read_params, CONFIG_KEY};
use crate::model::Model;
use crate::rng::{Rng, RngState};
use crate::tensor_file::{write_atomic, TensorFile, TensorOut};

/// Metadata key of the trainer configuration (JSON).
pub const TRAINER_CONFIG_KEY: &str = "ucgm_trainer_config";
pub use crate::model::weights::CheckpointWeights;
/// Metadata key of the trainer state (JSON).
pub use crate::model::weights::TRAINER_STATE_KEY;
/// Name prefix of the sampling EMA weights.
pub const EMA_PREFIX: &str = "ema.";
/// Name prefix of the `mod` weights.
pub const MOD_PREFIX: &str = "mod.";
/// Name prefix of the optimizer's first moment.
pub const EXP_AVG_PREFIX: &str = "optimizer.exp_avg.";
/// Name prefix of the optimizer's second moment.
pub const EXP_AVG_SQ_PREFIX: &str = "optimizer.exp_avg_sq.";

/// The scalar state of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TrainerState {
    /// Completed training steps.
    step: u64,
    /// Optimizer updates taken (its bias-correction counter).
    optimizer_step: u64,
    /// Position of the random stream.
    rng: RngState,
    /// Whether `mod` had been created.
    teacher_created: bool,
    /// The `mod` EMA ramp (EMA kind only).
    teacher_ramp: Option<EmaRamp>,
}

/// Reads one set of weights from a checkpoint: the model configuration and the flat
/// parameters in [`ParamLayout`] order (e.g. for `Model::from_params`).
pub fn read_weights(path: impl AsRef<Path>, which: CheckpointWeights) -> Result<(ModelConfig, Vec<f32>)> {
    // (the checksum is verified by `read_params`, in its one pass over the data)
    let file = TensorFile::open_header(path)?;
    let cfg = model_config(&file)?;
    let params = read_params(&file, &cfg, which.prefix())?;
    Ok((cfg, params))
}

/// A JSON metadata entry of a checkpoint.
fn metadata_json<T: for<'de> Deserialize<'de>>(file: &TensorFile, key: &str) -> Result<T> {
    let text = file
        .metadata()
        .get(key)
        .ok_or_else(|| Error::format(file.path(), format!("not a trainer checkpoint: no {key} metadata")))?;
    serde_json::from_str(text).map_err(|e| Error::format(file.path(), format!("metadata {key}: {e}")))
}

fn model_config(file: &TensorFile) -> Result<ModelConfig> {
    let cfg: ModelConfig = metadata_json(file, CONFIG_KEY)?;
    cfg.validate()?;
    Ok(cfg)
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("checkpoint metadata: {e}")))
}

impl<B: Backend + Clone> Trainer<B> {
    /// Writes the checkpoint atomically: on any error the file previously at `path` (if
    /// any) is left untouched.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_checkpoint_with(path, &BTreeMap::new())
    }

    /// [`Trainer::save_checkpoint`] with extra metadata entries (e.g. the data loader's
    /// position, so a whole run resumes exactly); keys must not collide with the
    /// trainer's own.
    pub fn save_checkpoint_with(&self, path: impl AsRef<Path>, extra: &BTreeMap<String, String>) -> Result<()> {
        let be = self.model.backend();
        let layout = self.model.layout();
        let n = layout.total();
        let online = self.model.read_params()?;
        let ema = self.read_ema()?;
        let teacher = self.teacher.read_params()?;
        let exp_avg = be.read(&self.optimizer.m, 0..n)?;
        let exp_avg_sq = be.read(&self.optimizer.v, 0..n)?;
        let mut sets: Vec<(&str, &[f32])> = vec![("", &online), (EMA_PREFIX, &ema), (EXP_AVG_PREFIX, &exp_avg), (EXP_AVG_SQ_PREFIX, &exp_avg_sq)];
        if let Some(t) = &teacher {
            sets.push((MOD_PREFIX, t));
        }
        let tensors: Vec<TensorOut<'_>> = sets
            .iter()
            .flat_map(|&(prefix, data)| {
                layout
                    .entries()
                    .iter()
                    .map(move |e| TensorOut::f32(format!("{prefix}{}", e.name), e.shape.clone(), &data[e.range()]))
            })
            .collect();
        let state = TrainerState {
            step: self.step,
            optimizer_step: self.optimizer.step,
            rng: self.rng.state(),
            teacher_created: self.teacher.is_created(),
            teacher_ramp: match self.teacher.kind() {
                TeacherKind::Ema(ramp) => Some(ramp),
                _ => None,
            },
        };
        let mut meta = BTreeMap::new();
        meta.insert(CONFIG_KEY.to_string(), to_json(self.model.config())?);
        meta.insert(TRAINER_CONFIG_KEY.to_string(), to_json(&self.config)?);
        meta.insert(TRAINER_STATE_KEY.to_string(), to_json(&state)?);
        meta.insert("format".to_string(), "pt".to_string());
        for (k, v) in extra {
            if meta.contains_key(k) {
                return Err(Error::invalid(format!("checkpoint metadata key {k:?} is reserved")));
            }
            meta.insert(k.clone(), v.clone());
        }
        write_atomic(path, &tensors, &meta)
    }

    /// Continues a run from a checkpoint exactly: same configuration, weights, EMA, `mod`
    /// (with its ramp), optimizer moments and step counters, and random stream.
    pub fn resume(path: impl AsRef<Path>, backend: B) -> Result<Self> {
        let file = TensorFile::open(path)?;
        let config: TrainerConfig = metadata_json(&file, TRAINER_CONFIG_KEY)?;
        Self::restore(&file, config, backend, true)
    }

    /// Starts a new run from a checkpoint with another configuration (the reference's
    /// `train.ckpt`): the online and EMA weights are loaded; the optimizer state unless
    /// `train.no_reopt`; `mod` unless `train.no_reuni` (its ramp only when
    /// `ema_decay_rate` is unchanged). The step count continues; the random stream is
    /// seeded afresh from `train.global_seed`.
    pub fn from_checkpoint(path: impl AsRef<Path>, config: TrainerConfig, backend: B) -> Result<Self> {
        let file = TensorFile::open(path)?;
        Self::restore(&file, config, backend, false)
    }

    fn restore(file: &TensorFile, config: TrainerConfig, backend: B, exact: bool) -> Result<Self> {
        let cfg = model_config(file)?;
        let state: TrainerState = metadata_json(file, TRAINER_STATE_KEY)?;
        let online = read_params(file, &cfg, "")?;
        let model = Model::from_params(cfg.clone(), backend.clone(), &online)?;
        let mut trainer = Trainer::new(config, model)?;
        let n = ParamLayout::for_config(&cfg).total();
        let upload = |prefix: &str| -> Result<B::Buf> { backend.upload(&read_params(file, &cfg, prefix)?) };
        trainer.ema = upload(EMA_PREFIX)?;
        trainer.step = state.step;
        if exact || !trainer.config.train.no_reopt {
            let mut optimizer = Optimizer::new(&trainer.config.optimizer, &backend, n)?;
            optimizer.m = upload(EXP_AVG_PREFIX)?;
            optimizer.v = upload(EXP_AVG_SQ_PREFIX)?;
            optimizer.step = state.optimizer_step;
            trainer.optimizer = optimizer;
        }
        if exact || !trainer.config.train.no_reuni {
            trainer.teacher = Self::restore_teacher(file, &cfg, &state, trainer.teacher.kind(), &backend, exact)?;
        }
        if exact {
            trainer.rng = Rng::from_state(&state.rng);
        }
        Ok(trainer)
    }

    /// `mod` from the checkpoint for a teacher of kind `kind` (its ramp restored when the
    /// rate matches). With `exact`, a missing `mod` that the state says exists is an error.
    fn restore_teacher(file: &TensorFile, cfg: &ModelConfig, state: &TrainerState, kind: TeacherKind, backend: &B, exact: bool) -> Result<Teacher<B>> {
        let kind = match (kind, state.teacher_ramp) {
            (TeacherKind::Ema(fresh), Some(saved)) if saved.rate == fresh.rate => TeacherKind::Ema(saved),
            (kind, _) => kind,
        };
        let mut teacher = Teacher::new(kind);
        let has_mod = file.contains(&format!("{MOD_PREFIX}x_embedder.proj.weight"));
        if exact && state.teacher_created && kind.has_copy() && !has_mod {
            return Err(Error::format(
                file.path(),
                "the trainer state says `mod` exists but the file holds no mod.* tensors",
            ));
        }
        if state.teacher_created && kind.has_copy() && has_mod {
            let weights = read_params(file, cfg, MOD_PREFIX)?;
            teacher.net = Some(Model::from_params(cfg.clone(), backend.clone(), &weights)?);
        }
        Ok(teacher)
    }
}
