//! The outer training loop (spec §2.9) over a dataset: batches from a seeded
//! [`Batcher`], one UCGM-T step each, periodic atomic checkpoints that also record the
//! data loader's position (so `resume` continues bit-identically), and sample grids from
//! the sampling EMA. Reporting goes through a [`TrainObserver`]; nothing is printed here.
//! The run uses the backend it is given ([`AnyBackend`], chosen at run time).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::config::RunConfig;
use super::sample::sample_images;
use crate::data::builtin::{BuiltinShapes, Split};
use crate::data::image_folder::ImageFolder;
use crate::data::shards::LatentShards;
use crate::data::{Batcher, BatcherState, Dataset};
use crate::engine::{AnyBackend, AnyModel, AnyTrainer};
use crate::error::{Error, Result};
use crate::image::write_png_grid;
use crate::tensor_file::TensorFile;
use crate::trainer::{read_weights, CheckpointWeights, StepStats};

/// Checkpoint metadata key of the data loader's position (JSON [`BatcherState`]).
pub const DATA_STATE_KEY: &str = "ucgm_data_state";

/// What the loop reports after every step.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub stats: StepStats,
    pub max_steps: u64,
    /// Images per second over the last reporting window.
    pub images_per_sec: f64,
}

/// Receives progress; return `false` from `on_step` to stop after a checkpoint.
pub trait TrainObserver {
    fn on_step(&mut self, report: &StepReport) -> bool;
    fn on_message(&mut self, message: &str);
}

/// An observer that ignores everything (library use, tests).
pub struct Quiet;

impl TrainObserver for Quiet {
    fn on_step(&mut self, _: &StepReport) -> bool {
        true
    }
    fn on_message(&mut self, _: &str) {}
}

/// Opens the training data described by `data:`.
pub fn open_dataset(cfg: &RunConfig) -> Result<Box<dyn Dataset>> {
    let d = &cfg.data;
    let path = || {
        d.data_path
            .clone()
            .ok_or_else(|| Error::invalid(format!("data.data_path is required for data.source = {}", d.source)))
    };
    let ds: Box<dyn Dataset> = match d.source.as_str() {
        "builtin" => Box::new(BuiltinShapes::new(Split::Train, d.channels, cfg.trainer.train.global_seed)?.with_len(d.train_len)?),
        "shards" => Box::new(LatentShards::open(path()?, Some(d.num_classes))?),
        "folder" => Box::new(ImageFolder::open(path()?)?),
        other => return Err(Error::invalid(format!("data.source {other:?}: expected builtin, shards or folder"))),
    };
    let model = cfg.model_config()?;
    let want = [model.in_channels, model.input_size, model.input_size];
    if ds.sample_shape() != want {
        return Err(Error::invalid(format!(
            "data items have shape {:?} but the model expects {want:?}",
            ds.sample_shape()
        )));
    }
    if ds.num_classes() > model.num_classes {
        return Err(Error::invalid(format!(
            "data has {} classes but the model {}",
            ds.num_classes(),
            model.num_classes
        )));
    }
    Ok(ds)
}

/// A training run: trainer + data + output folders.
pub struct TrainRun {
    cfg: RunConfig,
    trainer: AnyTrainer,
    batcher: Batcher<Box<dyn Dataset>>,
}

impl TrainRun {
    /// Starts a run: from `resume` (an exact continuation), else from `train.ckpt`
    /// (reference semantics), else from `init_weights` (fresh trainer whose online
    /// network starts from those weights), else from the reference initialisation.
    /// Everything runs on `backend` (the run config's `backend:` key is for the caller
    /// that chooses it, see [`crate::engine::select`]).
    pub fn new(cfg: RunConfig, backend: AnyBackend, resume: Option<&Path>, init_weights: Option<(&Path, CheckpointWeights)>) -> Result<Self> {
        let dataset = open_dataset(&cfg)?;
        let seed = cfg.trainer.train.global_seed;
        let (trainer, batcher) = if let Some(path) = resume {
            let trainer = AnyTrainer::resume(path, backend)?;
            let file = TensorFile::open(path)?;
            let state: BatcherState = match file.metadata().get(DATA_STATE_KEY) {
                Some(js) => serde_json::from_str(js).map_err(|e| Error::format(path, format!("{DATA_STATE_KEY}: {e}")))?,
                None => return Err(Error::format(path, "not a `ucgm train` checkpoint (no data loader state)")),
            };
            (trainer, Batcher::resume(dataset, &state)?)
        } else {
            let model_cfg = cfg.model_config()?;
            let trainer = if let Some(ckpt) = &cfg.trainer.train.ckpt {
                AnyTrainer::from_checkpoint(ckpt, cfg.trainer.clone(), backend)?
            } else if let Some((path, which)) = init_weights {
                let (file_cfg, params) = read_weights(path, which)?;
                if file_cfg != model_cfg {
                    return Err(Error::invalid(format!(
                        "{}: model {file_cfg:?} differs from the config's {model_cfg:?}",
                        path.display()
                    )));
                }
                AnyTrainer::new(cfg.trainer.clone(), AnyModel::from_params(model_cfg, backend, &params)?)?
            } else {
                AnyTrainer::new(cfg.trainer.clone(), AnyModel::init(model_cfg, backend, seed)?)?
            };
            (trainer, Batcher::new(dataset, seed)?)
        };
        Ok(TrainRun { cfg, trainer, batcher })
    }

    /// The trainer.
    pub fn trainer(&self) -> &AnyTrainer {
        &self.trainer
    }

    /// Folder of the checkpoints.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.cfg.output_dir.join("checkpoints")
    }

    /// Writes `checkpoints/{step:07}.safetensors` atomically and returns its path.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let dir = self.checkpoint_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("{:07}.safetensors", self.trainer.step()));
        let mut extra = BTreeMap::new();
        extra.insert(
            DATA_STATE_KEY.to_string(),
            serde_json::to_string(&self.batcher.state()).map_err(|e| Error::Internal(e.to_string()))?,
        );
        self.trainer.save_checkpoint_with(&path, &extra)?;
        Ok(path)
    }

    /// Samples a grid with the sampling EMA into `samples/{step:07}.png`.
    pub fn save_sample_grid(&self) -> Result<PathBuf> {
        let dir = self.cfg.output_dir.join("samples");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("{:07}.png", self.trainer.step()));
        let model_cfg = self.trainer.model_config().clone();
        let mut ema = AnyModel::from_params(model_cfg.clone(), self.trainer.backend(), &self.trainer.read_ema()?)?;
        let n = self.cfg.sample.per_batch_size.clamp(1, 64);
        let labels: Vec<usize> = (0..n).map(|i| i % model_cfg.num_classes).collect();
        let sampler = self.cfg.sample.sampler(self.trainer.config().transport.transport()?.kind())?;
        let images = sample_images(&mut ema, &sampler, &labels, self.cfg.trainer.train.global_seed, None)?;
        if [1, 3].contains(&model_cfg.in_channels) {
            write_png_grid(&path, &images, [n, model_cfg.in_channels, model_cfg.input_size, model_cfg.input_size], 8, 1)?;
        }
        Ok(path)
    }

    /// Trains until `train.max_steps` (or until the observer stops it), checkpointing
    /// every `train.ckpt_every` steps and at the end.
    pub fn run(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        let t = &self.cfg.trainer.train;
        let (max_steps, batch, every, log_every) = (t.max_steps, t.global_batch_size, t.ckpt_every.max(1), t.log_every.max(1));
        let mut loss_sum = (0.0, 0u64);
        let shape = self.batcher.dataset().sample_shape();
        let mut x = vec![0f32; batch * shape.iter().product::<usize>()];
        let mut labels = vec![0usize; batch];
        let mut window = (Instant::now(), 0usize);
        while self.trainer.step() < max_steps {
            self.batcher.next_batch(batch, &mut x, &mut labels)?;
            let stats = self.trainer.train_step(&x, &labels)?;
            if !stats.loss.is_finite() {
                observer.on_message(&format!("step {}: non-finite loss {} (gradients were zeroed)", stats.step, stats.loss));
            }
            window.1 += batch;
            let secs = window.0.elapsed().as_secs_f64().max(1e-9);
            let report = StepReport {
                stats,
                max_steps,
                images_per_sec: window.1 as f64 / secs,
            };
            if secs > 5.0 {
                window = (Instant::now(), 0);
            }
            loss_sum = (loss_sum.0 + stats.loss, loss_sum.1 + 1);
            if stats.step % log_every == 0 {
                observer.on_message(&format!(
                    "step {:>7}  loss {:.5}  grad norm {:.4}  {:.0} img/s",
                    stats.step,
                    loss_sum.0 / loss_sum.1 as f64,
                    stats.grad_norm,
                    report.images_per_sec
                ));
                loss_sum = (0.0, 0);
            }
            let go_on = observer.on_step(&report);
            let at_end = self.trainer.step() >= max_steps;
            if stats.step % every == 0 || at_end || !go_on {
                let path = self.save_checkpoint()?;
                observer.on_message(&format!("checkpoint {}", path.display()));
                if let Ok(grid) = self.save_sample_grid() {
                    observer.on_message(&format!("samples {}", grid.display()));
                }
            }
            if !go_on {
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    }
}
