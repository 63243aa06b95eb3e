//! The outer training loop (spec §2.9) over a dataset: batches from a seeded
//! [`Batcher`], one UCGM-T step each, periodic atomic checkpoints that also record the
//! data loader's position (so `resume` continues bit-identically), and sample grids from
//! the sampling EMA. Reporting goes through a [`TrainObserver`]; nothing is printed here.
//! The run uses the backend it is given ([`AnyBackend`], chosen at run time).
//!
//! Before anything else a run makes sure its output directory can be written and removes
//! the temporary files of interrupted writes ([`super::checkpoints`]); after every
//! checkpoint it updates `checkpoints/latest` and applies `train.keep_last`. An exact
//! resume refuses a run config whose model or trainer settings differ from the
//! checkpoint's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoints::{apply_retention, checkpoint_name, prepare_output_dir, read_header_metadata, remove_stale_temp_files, resolve_resume, write_latest};
use super::config::RunConfig;
use super::sample::sample_images;
use crate::data::builtin::{BuiltinShapes, Split};
use crate::data::image_folder::ImageFolder;
use crate::data::shards::LatentShards;
use crate::data::{Batcher, BatcherState, Dataset};
use crate::dist::{shard_range, Communicator, SingleProcess};
use crate::engine::{AnyBackend, AnyModel, AnyTrainer};
use crate::error::{Error, Result};
use crate::image::write_png_grid;
use crate::model::config::ModelConfig;
use crate::model::weights::CONFIG_KEY;
use crate::trainer::checkpoint::TRAINER_CONFIG_KEY;
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
        "shards" => {
            let shards = LatentShards::open(path()?, Some(d.num_classes))?;
            match cfg.latent_norm()? {
                Some(n) if n != crate::latent_norm::LatentNorm::identity() => Box::new(crate::data::normalized::Normalized::new(shards, n)?),
                _ => Box::new(shards),
            }
        }
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

/// A training run: trainer + data + output folders, on one process or as one rank of a
/// data-parallel group (see [`TrainRun::with_communicator`]).
pub struct TrainRun {
    cfg: RunConfig,
    /// The process group: every rank trains its slice of each global batch; rank 0 alone
    /// writes checkpoints, sample grids and messages.
    comm: Box<dyn Communicator>,
    trainer: AnyTrainer,
    batcher: Batcher<Box<dyn Dataset>>,
    /// Lines for the log, emitted when [`TrainRun::run`] starts.
    pending: Vec<String>,
    /// Inputs of the run that retention must never delete.
    protect: Vec<PathBuf>,
}

/// Trainer settings that may change between a run and its exact resume.
const RESUME_MAY_CHANGE: &[&str] = &[
    "train.max_steps",
    "train.log_every",
    "train.ckpt_every",
    "train.ckpt",
    "train.no_reopt",
    "train.no_reuni",
    "train.no_buffer",
];

/// What `--resume ARG` continues for run config `cfg`: the checkpoint (`ARG` may be
/// `latest` or a folder, see [`resolve_resume`]) and its data loader position. Reads only
/// the checkpoint's header; the checkpoint's model and trainer settings must equal the
/// config's (except `train.max_steps`, `log_every`, `ckpt_every` and the `train.ckpt`
/// options), else the error names every differing key.
pub fn resume_point(cfg: &RunConfig, arg: &Path) -> Result<(PathBuf, BatcherState)> {
    let path = resolve_resume(arg, &cfg.output_dir)?;
    let meta = read_header_metadata(&path)?;
    let state: BatcherState = match meta.get(DATA_STATE_KEY) {
        Some(js) => serde_json::from_str(js).map_err(|e| Error::format(&path, format!("{DATA_STATE_KEY}: {e}")))?,
        None => return Err(Error::format(&path, "not a `ucgm train` checkpoint (no data loader state)")),
    };
    let diffs = resume_differences(&path, &meta, cfg)?;
    if !diffs.is_empty() {
        return Err(Error::invalid(format!(
            "cannot resume {}: the run config differs from the checkpoint's: {} (an exact resume needs the run's own settings; to start a new run from a checkpoint use train.ckpt or --init)",
            path.display(),
            diffs.join("; ")
        )));
    }
    Ok((path, state))
}

/// The differences between the model and trainer settings stored in a checkpoint's
/// metadata and those of `cfg`, as "key: config X, checkpoint Y".
fn resume_differences(path: &Path, metadata: &BTreeMap<String, String>, cfg: &RunConfig) -> Result<Vec<String>> {
    let meta = |key: &str| {
        metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::format(path, format!("not a trainer checkpoint: no {key} metadata")))
    };
    let theirs: ModelConfig = serde_json::from_str(meta(CONFIG_KEY)?).map_err(|e| Error::format(path, format!("{CONFIG_KEY}: {e}")))?;
    let ours = cfg.model_config()?;
    let mut diffs = Vec::new();
    if ours.arch != theirs.arch {
        diffs.push(format!("model.type: config {}, checkpoint {}", ours.arch.name(), theirs.arch.name()));
    }
    for (key, a, b) in [
        ("model.hidden_size", ours.hidden, theirs.hidden),
        ("model.depth", ours.depth, theirs.depth),
        ("model.num_heads", ours.heads, theirs.heads),
        ("model.patch_size", ours.patch, theirs.patch),
        ("model.in_chans", ours.in_channels, theirs.in_channels),
        ("model input size (data.image_size / vae.downsample_ratio)", ours.input_size, theirs.input_size),
        ("data.num_classes", ours.num_classes, theirs.num_classes),
    ] {
        if a != b {
            diffs.push(format!("{key}: config {a}, checkpoint {b}"));
        }
    }
    // Both sides through the same JSON text → value path, so equal settings compare equal.
    let stored: serde_json::Value = serde_json::from_str(meta(TRAINER_CONFIG_KEY)?).map_err(|e| Error::format(path, format!("{TRAINER_CONFIG_KEY}: {e}")))?;
    let ours_text = serde_json::to_string(&cfg.trainer).map_err(|e| Error::Internal(e.to_string()))?;
    let ours: serde_json::Value = serde_json::from_str(&ours_text).map_err(|e| Error::Internal(e.to_string()))?;
    json_differences("", &ours, &stored, &mut diffs);
    Ok(diffs)
}

fn json_differences(path: &str, ours: &serde_json::Value, theirs: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    if RESUME_MAY_CHANGE.contains(&path) {
        return;
    }
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                json_differences(&sub, a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: config {a}, checkpoint {b}")),
        _ => {}
    }
}

impl TrainRun {
    /// Starts a run: from `resume` (an exact continuation), else from `train.ckpt`
    /// (reference semantics), else from `init_weights` (fresh trainer whose online
    /// network starts from those weights), else from the reference initialisation.
    /// Everything runs on `backend` (the run config's `backend:` key is for the caller
    /// that chooses it, see [`crate::engine::select`]).
    ///
    /// First of all the output directory is created and checked writable (so a bad
    /// `output_dir` fails before any compute) and stale temporary files of interrupted
    /// writes there are removed. `resume` is checked with [`resume_point`].
    pub fn new(cfg: RunConfig, backend: AnyBackend, resume: Option<&Path>, init_weights: Option<(&Path, CheckpointWeights)>) -> Result<Self> {
        Self::with_communicator(cfg, backend, resume, init_weights, Box::new(SingleProcess))
    }

    /// [`TrainRun::new`] as one rank of the data-parallel group `comm`. Every rank reads
    /// the same starting point (`resume`, `train.ckpt`, `init_weights` or the seeded
    /// initialisation) and the same data stream; each step draws the whole global batch
    /// (`train.global_batch_size`, which stays the same for any number of ranks) and the
    /// rank trains its slice of it ([`crate::trainer::Trainer::train_step_part`]). Only
    /// rank 0 prepares the output directory, writes checkpoints and sample grids and
    /// reports to the observer, so a checkpoint resumes on any number of ranks with the
    /// same global batch and sample order.
    pub fn with_communicator(
        cfg: RunConfig,
        backend: AnyBackend,
        resume: Option<&Path>,
        init_weights: Option<(&Path, CheckpointWeights)>,
        comm: Box<dyn Communicator>,
    ) -> Result<Self> {
        let pending = if comm.is_root() {
            prepare_output_dir(&cfg.output_dir)?;
            let mut lines = remove_stale_temp_files(&cfg.output_dir)?.messages();
            if comm.world() > 1 {
                lines.push(format!(
                    "data parallel: {} ranks over {}, global batch {} ({} to {} per rank), collective timeout {:.0} s",
                    comm.world(),
                    comm.name(),
                    cfg.trainer.train.global_batch_size,
                    cfg.trainer.train.global_batch_size / comm.world(),
                    cfg.trainer.train.global_batch_size.div_ceil(comm.world()),
                    comm.timeout().as_secs_f64()
                ));
            }
            lines
        } else {
            Vec::new()
        };
        if let (Some(ckpt), Some((init, _))) = (&cfg.trainer.train.ckpt, init_weights) {
            return Err(Error::invalid(format!(
                "train.ckpt ({ckpt}) and the initial weights {} (--init) both say where the run starts: give one",
                init.display()
            )));
        }
        let mut protect: Vec<PathBuf> = cfg.trainer.train.ckpt.iter().map(PathBuf::from).collect();
        protect.extend(init_weights.map(|(p, _)| p.to_path_buf()));
        let dataset = open_dataset(&cfg)?;
        let seed = cfg.trainer.train.global_seed;
        let (trainer, batcher) = if let Some(arg) = resume {
            let (path, state) = resume_point(&cfg, arg)?;
            let trainer = AnyTrainer::resume(&path, backend)?;
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
        Ok(TrainRun {
            cfg,
            comm,
            trainer,
            batcher,
            pending,
            protect,
        })
    }

    /// The trainer.
    pub fn trainer(&self) -> &AnyTrainer {
        &self.trainer
    }

    /// Folder of the checkpoints.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.cfg.output_dir.join("checkpoints")
    }

    /// Writes `checkpoints/{step:07}.safetensors` atomically, points `checkpoints/latest`
    /// at it and applies `train.keep_last`; returns its path.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        self.checkpoint().map(|(path, _)| path)
    }

    /// [`TrainRun::save_checkpoint`], also returning the older checkpoints it deleted.
    fn checkpoint(&self) -> Result<(PathBuf, Vec<PathBuf>)> {
        let path = self.write_checkpoint()?;
        write_latest(&path)?;
        let removed = match self.cfg.keep_last {
            Some(keep) => apply_retention(&self.checkpoint_dir(), keep, &path, &self.protect)?,
            None => Vec::new(),
        };
        Ok((path, removed))
    }

    fn write_checkpoint(&self) -> Result<PathBuf> {
        let dir = self.checkpoint_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(checkpoint_name(self.trainer.step()));
        let mut extra = BTreeMap::new();
        extra.insert(
            DATA_STATE_KEY.to_string(),
            serde_json::to_string(&self.batcher.state()).map_err(|e| Error::Internal(e.to_string()))?,
        );
        // The run's `sample:` section is how this model is meant to be sampled.
        let sampler = self.cfg.sample.sampler(self.trainer.config().transport.transport()?.kind())?;
        extra.insert(crate::preset::PRESET_KEY.to_string(), crate::preset::to_json(&sampler)?);
        // How the latents were normalised travels with the model (decoding inverts it).
        if let Some(n) = self.cfg.latent_norm()? {
            extra.insert(crate::latent_norm::LATENT_NORM_KEY.to_string(), n.to_json()?);
        }
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
        for m in std::mem::take(&mut self.pending) {
            observer.on_message(&m);
        }
        let root = self.comm.is_root();
        let mut quiet = Quiet;
        let observer: &mut dyn TrainObserver = if root { observer } else { &mut quiet };
        let part = shard_range(batch, self.comm.rank(), self.comm.world());
        let image = shape.iter().product::<usize>();
        while self.trainer.step() < max_steps {
            // Every rank draws the whole global batch (the data order and augmentation of
            // one process) and trains its slice.
            self.batcher.next_batch(batch, &mut x, &mut labels)?;
            let (xs, ys) = (&x[part.start * image..part.end * image], &labels[part.clone()]);
            let stats = self.trainer.train_step_part(xs, ys, batch, self.comm.as_mut())?;
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
            let mut go_on = observer.on_step(&report);
            if self.comm.world() > 1 {
                // Rank 0's observer decides for every rank (a stop must stop all of them).
                let mut flag = [u8::from(go_on)];
                self.comm.broadcast(&mut flag, 0)?;
                go_on = flag[0] != 0;
            }
            let at_end = self.trainer.step() >= max_steps;
            if stats.step % every == 0 || at_end || !go_on {
                self.trainer.check_replicas(self.comm.as_mut())?;
                if root {
                    let (path, removed) = self.checkpoint()?;
                    observer.on_message(&format!("checkpoint {}", path.display()));
                    for old in removed {
                        observer.on_message(&format!("removed old checkpoint {} (train.keep_last)", old.display()));
                    }
                    if let Ok(grid) = self.save_sample_grid() {
                        observer.on_message(&format!("samples {}", grid.display()));
                    }
                }
            }
            if !go_on {
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    }
}
