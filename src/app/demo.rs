//! The main job (`ucgm demo`): UCGM end to end on the built-in dataset in a few minutes
//! on 2 cores.
//!
//! 1. **Multi-step training** of a small TiT (D 128, depth 4, 4 heads, **patch 4** on
//!    3×16×16 images: 16 tokens) with UCGM-T as the reference's multi-step configs do:
//!    Linear transport, λ = 0, enhanced target ζ = 0.47 (`ft-vs-fe`, `mod` = EMA 0.999),
//!    cosine loss term, AdamW lr 1e-3 (β₂ 0.95), sampling EMA 0.995, 5000 steps of 32
//!    images — but **no time weight** (`weight_funcion: null`): the reference's Cosine
//!    weight cos(1.57·t) all but ignores the noisiest times, where a pixel-space model
//!    decides which shape it draws; with it the same run put only ≈ 40 % of its samples
//!    in the class asked for, without it ≈ 85 %. Patch 4 costs about a fifth of patch 2
//!    per step on 2 cores, so 5000 steps fit the time that 1500 patch-2 steps took.
//! 2. **Few-step tuning** from the multi-step EMA weights (online, sampling EMA and the
//!    frozen `mod` all start there), as the reference's two-stage recipe does: λ = 1,
//!    enhanced target `fc-vs-xz` with ζ = 1 (the frozen multi-step teacher's x̂), robust
//!    loss c = 5, Beta(0.8, 1) times, Cosine weight (kept here: without it the tuning
//!    collapsed in a measured run, FD > 190), RAdam with clipping 0.1, 500 steps.
//! 3. **Sampling and quality**: UCGM-S with the multi-step model at 30 steps (κ = 0.5),
//!    unguided and with classifier-free guidance ([`DemoOptions::cfg_scale`],
//!    [`DemoOptions::cfg_interval`]), and at 2 steps; the tuned model at 1 and 2 steps
//!    (ρ = 1, gaps [0.001, 0.3]). Per row: a Fréchet distance against held-out images in
//!    the fixed feature space of [`crate::metric`], the class accuracy of the samples
//!    under the fixed shape classifier of [`crate::class_metric`] (label asked for vs
//!    class predicted; its accuracy on held-out real images is the ceiling), and a
//!    class-conditional FD. The distances between two real-image sets (train vs
//!    held-out) are the floors. Every grid — and one of held-out real images — has one
//!    class per column (label = column) and one seed per row, enlarged ×4 with
//!    nearest-neighbour sampling.
//!
//! **Why pixel features and not Inception.** The quality figure of every row is the
//! Fréchet distance in the fixed pooled-pixel feature space of [`crate::metric`], not the
//! FID: 16×16 synthetic shapes upsampled to 299×299 are far outside the ImageNet
//! photographs the FID Inception was trained on, so its features say little about them
//! (and extracting them costs ~6 GFLOP per image, more than the demo's training). Given
//! an Inception weights file ([`DemoOptions::inception`]), the demo adds the Inception
//! FID of every row and of the real floor, for comparison with the field's figure.
//!
//! Everything runs on one backend chosen at the start from [`DemoOptions::backend`]
//! (`auto` by default: CUDA when usable, else the CPU); the observer is told which and why.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::config::RunConfig;
use super::sample::sample_images;
use super::train::{TrainObserver, TrainRun};
use crate::class_metric::{class_frechet_distance, ShapeClassifier};
use crate::data::builtin::{BuiltinShapes, Split, NUM_CLASSES};
use crate::engine::{select, AnyInception, AnyModel, BackendRequest};
use crate::error::{Error, Result};
use crate::image::write_png_grid_upscaled;
use crate::metric::{FeatureSpace, GaussianStats};
use crate::model::inception::{InceptionInput, POOL3_DIM};
use crate::sampler::{time_grid, SamplerConfig, Stochasticity};
use crate::trainer::{read_weights, CheckpointWeights};
use crate::transport::TransportKind;

/// Sizes of a demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub output_dir: PathBuf,
    /// Which backend (and CPU threads, CUDA device, TF32); the stage configs'
    /// `backend:` keys are not used.
    pub backend: BackendRequest,
    pub multistep_steps: u64,
    pub fewstep_steps: u64,
    pub batch: usize,
    /// Generated and held-out images per Fréchet distance.
    pub eval_images: usize,
    pub seed: u64,
    /// Replace the stage-1 / stage-2 configuration (YAML files; their `output_dir` and
    /// `train.max_steps` are kept as given).
    pub multistep_config: Option<PathBuf>,
    pub fewstep_config: Option<PathBuf>,
    /// Classifier-free guidance scale of the extra guided multi-step row (0: no such
    /// row) and the native-time interval where it applies.
    pub cfg_scale: f64,
    pub cfg_interval: [f64; 2],
    /// FID Inception weights (converted `pt_inception-2015-12-05`): when given, every
    /// row also gets the Inception FID (pytorch-fid preprocessing).
    pub inception: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            output_dir: PathBuf::from("runs/demo"),
            backend: BackendRequest::default(),
            multistep_steps: 5000,
            fewstep_steps: 500,
            batch: 32,
            eval_images: 500,
            seed: 0,
            multistep_config: None,
            fewstep_config: None,
            cfg_scale: 1.5,
            cfg_interval: [0.0, 1.0],
            inception: None,
        }
    }
}

/// One line of the quality table.
#[derive(Clone, Debug)]
pub struct QualityRow {
    pub model: &'static str,
    pub steps: usize,
    /// Classifier-free guidance scale at sampling (0: none).
    pub cfg_scale: f64,
    /// Network evaluations per image: steps, plus one more for each guided step (the
    /// guided step runs the conditional and the unconditional batch).
    pub nfe: usize,
    /// Fréchet distance to the held-out images.
    pub frechet: f64,
    /// Fraction of generated images that the fixed shape classifier
    /// ([`crate::class_metric`]) assigns to the class they were asked for.
    pub class_accuracy: f64,
    /// The same per class asked for (10 values).
    pub per_class_accuracy: Vec<f64>,
    /// Mean over classes of FD(generated of class k, held-out of class k).
    pub class_frechet: f64,
    /// FID (FID Inception pool3) to the held-out images, when an Inception file was given.
    pub inception_fid: Option<f64>,
    /// The enlarged grid: one class per column, one seed per row.
    pub grid: PathBuf,
}

/// What the demo measured.
#[derive(Clone, Debug)]
pub struct DemoReport {
    /// FD(train images, held-out images): the floor a perfect model would reach.
    pub real_floor: f64,
    /// Class-conditional FD(train images, held-out images): its floor.
    pub real_class_floor: f64,
    /// FID(train images, held-out images), when an Inception file was given.
    pub real_inception_floor: Option<f64>,
    /// Accuracy of the shape classifier on the held-out real images: the ceiling of
    /// [`QualityRow::class_accuracy`].
    pub real_class_accuracy: f64,
    /// Its per-class accuracy on the held-out real images.
    pub real_per_class_accuracy: Vec<f64>,
    pub rows: Vec<QualityRow>,
    /// The held-out real grid, laid out as the generated ones.
    pub real_grid: PathBuf,
    /// Grid layout: columns (= classes) and rows (= seeds); cells are
    /// `GRID_SCALE`·16 pixels with `GRID_GAP` pixels between them.
    pub grid_columns: usize,
    pub grid_rows: usize,
    pub multistep_secs: f64,
    pub fewstep_secs: f64,
    pub eval_secs: f64,
}

/// Nearest-neighbour enlargement of the grids.
pub const GRID_SCALE: usize = 4;
/// Black pixels around and between the grids' cells.
pub const GRID_GAP: usize = 2;
/// Rows (seeds per class) of the grids.
pub const GRID_ROWS: usize = 8;

fn multistep_yaml(o: &DemoOptions) -> String {
    format!(
        r#"# Stage 1 of `ucgm demo`: multi-step UCGM-T on the built-in dataset.
output_dir: {dir}
data: {{source: builtin, image_size: 16, num_classes: 10, channels: 3}}
model: {{type: TiT, hidden_size: 128, depth: 4, num_heads: 4, patch_size: 4}}
train: {{max_steps: {steps}, global_batch_size: {batch}, global_seed: {seed}, ckpt_every: {steps}, ema_decay: 0.995, log_every: 500}}
optimizer: {{type: AdamW, lr: 0.001, beta1: 0.9, beta2: 0.95, weight_decay: 0.0}}
transport: {{type: Linear, lab_drop_ratio: 0.1, consistc_ratio: 0.0, enhanced_ratio: 0.47, enhanced_style: ft-vs-fe,
  ema_decay_rate: 0.999, enhanced_range: [0.0, 0.75], wt_cosine_loss: true, weight_funcion: null, time_dist_ctrl: [1.0, 1.0, 1.0]}}
sample: {{type: UNI, sampling_steps: 30, extrapol_ratio: 0.5, time_dist_ctrl: [1.0, 1.0, 1.0], rfba_gap_steps: [0.001, 0.001], per_batch_size: 40}}
"#,
        dir = o.output_dir.join("multistep").display(),
        steps = o.multistep_steps,
        batch = o.batch,
        seed = o.seed
    )
}

fn fewstep_yaml(o: &DemoOptions) -> String {
    format!(
        r#"# Stage 2 of `ucgm demo`: few-step tuning (λ = 1) from the stage-1 EMA weights.
output_dir: {dir}
data: {{source: builtin, image_size: 16, num_classes: 10, channels: 3}}
model: {{type: TiT, hidden_size: 128, depth: 4, num_heads: 4, patch_size: 4}}
train: {{max_steps: {steps}, global_batch_size: {batch}, global_seed: {seed}, ckpt_every: {steps}, ema_decay: 0.99, log_every: 100}}
optimizer: {{type: RAdam, lr: 0.0002, beta1: 0.9, beta2: 0.999, weight_decay: 0.0, max_grad_norm: 0.1}}
transport: {{type: Linear, lab_drop_ratio: 0.1, consistc_ratio: 1.0, enhanced_ratio: 1.0, enhanced_style: fc-vs-xz,
  scaled_cbl_eps: 5.0, ema_decay_rate: 1.0, enhanced_range: [0.0, 0.75], wt_cosine_loss: false, weight_funcion: Cosine,
  time_dist_ctrl: [0.8, 1.0, 1.0]}}
sample: {{type: UNI, sampling_steps: 2, stochast_ratio: 1.0, time_dist_ctrl: [1.0, 1.0, 1.0], rfba_gap_steps: [0.001, 0.3], per_batch_size: 40}}
"#,
        dir = o.output_dir.join("fewstep").display(),
        steps = o.fewstep_steps,
        batch = o.batch,
        seed = o.seed + 1
    )
}

fn sampler(steps: usize, rho: f64, kappa: f64, gaps: [f64; 2]) -> SamplerConfig {
    SamplerConfig {
        transport: TransportKind::Linear,
        steps,
        order: 1,
        stochasticity: Stochasticity::Fixed(rho),
        extrapolation: kappa,
        time_dist_ctrl: [1.0, 1.0, 1.0],
        rfba_gap_steps: gaps,
        cfg_scale: 0.0,
        cfg_interval: [0.0, 1.0],
        cfg_channels: None,
        return_trajectory: false,
    }
}

fn write_config(path: &Path, text: &str) -> Result<RunConfig> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
    RunConfig::from_yaml(text)
}

/// Runs the whole demo.
pub fn run_demo(o: &DemoOptions, observer: &mut dyn TrainObserver) -> Result<DemoReport> {
    if o.eval_images < 2 * NUM_CLASSES {
        return Err(Error::invalid(format!(
            "demo: eval_images must be at least {} (two images per class), got {}",
            2 * NUM_CLASSES,
            o.eval_images
        )));
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
    let multi_text = match &o.multistep_config {
        Some(p) => read(p)?,
        None => multistep_yaml(o),
    };
    let few_text = match &o.fewstep_config {
        Some(p) => read(p)?,
        None => fewstep_yaml(o),
    };
    let multi_cfg = write_config(&o.output_dir.join("multistep.yaml"), &multi_text)?;
    let few_cfg = write_config(&o.output_dir.join("fewstep.yaml"), &few_text)?;
    let selection = select(&o.backend)?;
    observer.on_message(&selection.log_line());
    let backend = selection.backend;
    // The Inception file is checked before any training.
    let inception = match &o.inception {
        Some(p) => Some(AnyInception::load(p, backend.clone(), InceptionInput::PytorchFid)?),
        None => None,
    };

    let t = &multi_cfg.trainer.train;
    observer.on_message(&format!(
        "stage 1: multi-step training, {} steps of {} images",
        t.max_steps, t.global_batch_size
    ));
    let t0 = Instant::now();
    let mut run = TrainRun::new(multi_cfg, backend.clone(), None, None)?;
    run.run(observer)?;
    let multistep_secs = t0.elapsed().as_secs_f64();
    let multi_ckpt = run.checkpoint_dir().join(format!("{:07}.safetensors", run.trainer().step()));
    drop(run);

    observer.on_message(&format!(
        "stage 2: few-step tuning (λ = 1) from the multi-step EMA, {} steps",
        few_cfg.trainer.train.max_steps
    ));
    let t1 = Instant::now();
    let mut run = TrainRun::new(few_cfg, backend.clone(), None, Some((&multi_ckpt, CheckpointWeights::Ema)))?;
    run.run(observer)?;
    let fewstep_secs = t1.elapsed().as_secs_f64();
    let few_ckpt = run.checkpoint_dir().join(format!("{:07}.safetensors", run.trainer().step()));
    drop(run);

    observer.on_message(&format!(
        "evaluating: {} generated vs {} held-out images per figure",
        o.eval_images, o.eval_images
    ));
    let t2 = Instant::now();
    let shape = [3, 16, 16];
    let len = 3 * 16 * 16;
    let (held_out, held_labels) = BuiltinShapes::new(Split::HeldOut, 3, o.seed)?
        .with_len(o.eval_images)?
        .render_all(o.eval_images)?;
    let (train_imgs, train_labels) = BuiltinShapes::new(Split::Train, 3, o.seed + 7)?
        .with_len(o.eval_images)?
        .render_all(o.eval_images)?;
    let space = FeatureSpace::new(shape)?;
    let held_stats = space.stats(&held_out)?;
    let real_floor = crate::metric::frechet_distance(&space.stats(&train_imgs)?, &held_stats)?;
    let real_class_floor = class_frechet_distance(&train_imgs, &train_labels, &held_out, &held_labels, shape, NUM_CLASSES)?;
    let held_inception = inception.as_ref().map(|net| inception_stats(net, &held_out)).transpose()?;
    let real_inception_floor = match (&inception, &held_inception) {
        (Some(net), Some(h)) => Some(crate::fid::frechet_distance(&inception_stats(net, &train_imgs)?, h)?),
        _ => None,
    };
    let classifier = ShapeClassifier::builtin()?;
    let real_score = classifier.score(&held_out, &held_labels)?;
    observer.on_message(&format!(
        "shape classifier on {} held-out real images: accuracy {:.3}",
        o.eval_images, real_score.accuracy
    ));
    // Label of image i is i mod 10, so the first GRID_ROWS·10 images fill the grid one
    // class per column and one seed per row.
    let labels: Vec<usize> = (0..o.eval_images).map(|i| i % NUM_CLASSES).collect();
    let grid_rows = GRID_ROWS.min(o.eval_images / NUM_CLASSES).max(1);
    let grid_n = (grid_rows * NUM_CLASSES).min(o.eval_images);
    let write_grid = |path: &Path, images: &[f32]| -> Result<()> {
        write_png_grid_upscaled(path, &images[..grid_n * len], [grid_n, 3, 16, 16], NUM_CLASSES, GRID_GAP, GRID_SCALE)
    };
    let mut runs: Vec<(&'static str, &Path, SamplerConfig)> = vec![("multi-step", &multi_ckpt, sampler(30, 0.0, 0.5, [0.001, 0.001]))];
    if o.cfg_scale > 0.0 {
        let mut guided = sampler(30, 0.0, 0.5, [0.001, 0.001]);
        guided.cfg_scale = o.cfg_scale;
        guided.cfg_interval = o.cfg_interval;
        runs.push(("multi-step", &multi_ckpt, guided));
    }
    runs.extend([
        ("multi-step", multi_ckpt.as_path(), sampler(2, 0.0, 0.5, [0.001, 0.001])),
        ("few-step", few_ckpt.as_path(), sampler(1, 1.0, 0.0, [0.001, 0.3])),
        ("few-step", few_ckpt.as_path(), sampler(2, 1.0, 0.0, [0.001, 0.3])),
    ]);
    let mut rows = Vec::new();
    for (name, ckpt, cfg) in runs {
        let (mcfg, params) = read_weights(ckpt, CheckpointWeights::Ema)?;
        let mut model = AnyModel::from_params(mcfg, backend.clone(), &params)?;
        let images = sample_images(&mut model, &cfg, &labels, o.seed + 1000, None)?;
        let frechet = crate::metric::frechet_distance(&space.stats(&images)?, &held_stats)?;
        let class_frechet = class_frechet_distance(&images, &labels, &held_out, &held_labels, shape, NUM_CLASSES)?;
        let score = classifier.score(&images, &labels)?;
        let inception_fid = match (&inception, &held_inception) {
            (Some(net), Some(h)) => Some(crate::fid::frechet_distance(&inception_stats(net, &images)?, h)?),
            _ => None,
        };
        let guided_steps = if cfg.cfg_scale > 0.0 {
            let [lo, hi] = cfg.cfg_interval;
            time_grid(&cfg)?.native.iter().filter(|&&t| lo as f32 <= t && t <= hi as f32).count()
        } else {
            0
        };
        let tag = if cfg.cfg_scale > 0.0 {
            format!("_cfg{}", cfg.cfg_scale)
        } else {
            String::new()
        };
        let grid = o.output_dir.join(format!("{}_{}steps{tag}.png", name.replace('-', ""), cfg.steps));
        write_grid(&grid, &images)?;
        observer.on_message(&format!(
            "{name} {} steps cfg {}: FD {frechet:.3}, class accuracy {:.3}, class FD {class_frechet:.3}{}",
            cfg.steps,
            cfg.cfg_scale,
            score.accuracy,
            inception_fid.map_or(String::new(), |f| format!(", Inception FID {f:.3}"))
        ));
        rows.push(QualityRow {
            model: name,
            steps: cfg.steps,
            cfg_scale: cfg.cfg_scale,
            nfe: cfg.steps + guided_steps,
            frechet,
            class_accuracy: score.accuracy,
            per_class_accuracy: score.per_class,
            class_frechet,
            inception_fid,
            grid,
        });
    }
    let real_grid = o.output_dir.join("heldout_real.png");
    write_grid(&real_grid, &held_out)?;
    Ok(DemoReport {
        real_floor,
        real_class_floor,
        real_inception_floor,
        real_class_accuracy: real_score.accuracy,
        real_per_class_accuracy: real_score.per_class,
        rows,
        real_grid,
        grid_columns: NUM_CLASSES,
        grid_rows,
        multistep_secs,
        fewstep_secs,
        eval_secs: t2.elapsed().as_secs_f64(),
    })
}

/// FID Inception pool3 statistics of 16×16 RGB images `[N, 3, 16, 16]` in [−1, 1]
/// (mapped to [0, 1] as pytorch-fid reads images), in batches of 50.
fn inception_stats(net: &AnyInception, images: &[f32] /* [N, 3, 16, 16] */) -> Result<GaussianStats> {
    let len = 3 * 16 * 16;
    let mut stats = crate::fid::FeatureStats::new(POOL3_DIM)?;
    for chunk in images.chunks(50 * len) {
        let x: Vec<f32> = chunk.iter().map(|v| ((v + 1.0) * 0.5).clamp(0.0, 1.0)).collect();
        stats.add_f32(&net.forward(&x, chunk.len() / len, 16, 16)?.pool3)?;
    }
    stats.finish()
}
