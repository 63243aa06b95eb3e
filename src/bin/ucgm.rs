//! `ucgm` — the command-line tool: `demo` (the README's main job), `train` (from a
//! reference-style YAML config), `sample` (from a checkpoint or weights file, any UCGM-S
//! setting; PNG grid or safetensors latents), `info` (a file's configuration and sizes).
//! `--backend auto|cpu|cuda` (with `--threads`, `--cuda-device`, `--tf32`) chooses the
//! compute backend at run time; the choice and, for `auto`, why, is one line on stderr
//! ("backend auto: cpu (2 threads); cuda unavailable: …"). Errors are one line on
//! stderr and a non-zero exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ucgm::app::fid::{source_stats, FidSource};
use ucgm::app::{run_demo, DemoOptions, RunConfig, StepReport, TrainObserver, TrainRun};
use ucgm::engine::{select, AnyBackend, AnyModel, BackendChoice, BackendRequest};
use ucgm::fid::{frechet_distance, write_stats_npz};
use ucgm::model::inception::{FidInception, InceptionInput};
use ucgm::model::weights::{self, CheckpointWeights};
use ucgm::preset;
use ucgm::sampler::{SamplerConfig, Stochasticity};
use ucgm::tensor_file::{write_atomic, TensorFile, TensorOut};
use ucgm::transport::TransportKind;
use ucgm::{Error, ParamLayout, Result};

#[derive(Parser)]
#[command(name = "ucgm", version, about = "Train and sample diffusion transformers with UCGM (UCGM-T / UCGM-S)")]
struct Cli {
    #[command(flatten)]
    backend: BackendFlags,
    #[command(subcommand)]
    command: Command,
}

/// The backend flags, accepted by every command.
#[derive(Args)]
struct BackendFlags {
    /// Compute backend: auto (CUDA when its libraries load and a device exists, else the
    /// CPU), cpu or cuda (an error when CUDA cannot be used). Default: the run config's
    /// `backend:` key for `train`, else auto.
    #[arg(long, global = true, value_parser = parse_backend)]
    backend: Option<BackendChoice>,
    /// CPU worker threads (0 = one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// CUDA device ordinal (default 0).
    #[arg(long, global = true)]
    cuda_device: Option<usize>,
    /// Let CUDA use TF32 tensor cores for float32 products (faster, ~1e-3 relative error
    /// per product). Off unless given.
    #[arg(long, global = true)]
    tf32: bool,
    /// bf16 mixed precision: matrix products on bf16 operands with f32 accumulation,
    /// everything else f32. CUDA: tensor cores, f32 master weights, sampling and
    /// training. CPU: sampling only — the model's Linear weights held in bf16 (half the
    /// memory) and bf16 products; training on the CPU refuses it. Off unless given.
    #[arg(long, global = true)]
    bf16: bool,
}

impl BackendFlags {
    /// `base` (a run config's `backend:`, or the defaults) with the flags given here on top.
    fn request(&self, base: BackendRequest) -> BackendRequest {
        BackendRequest {
            choice: self.backend.unwrap_or(base.choice),
            threads: self.threads.unwrap_or(base.threads),
            device: self.cuda_device.unwrap_or(base.device),
            tf32: self.tf32 || base.tf32,
            bf16: self.bf16 || base.bf16,
        }
    }
}

fn parse_backend(s: &str) -> std::result::Result<BackendChoice, String> {
    s.parse().map_err(|_: Error| "expected auto, cpu or cuda".to_string())
}

/// Builds the requested backend and says on stderr which one runs and, for `auto`, why.
fn choose_backend(request: &BackendRequest) -> Result<AnyBackend> {
    let selection = select(request)?;
    eprintln!("{}", selection.log_line());
    Ok(selection.backend)
}

#[derive(Subcommand)]
enum Command {
    /// Train a small TiT on the built-in dataset (multi-step, then few-step tuning),
    /// sample at 1, 2 and 30 steps, write PNG grids and print quality figures.
    Demo {
        /// Folder for the checkpoints, grids and figures.
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        /// Training steps of stage 1 (multi-step model).
        #[arg(long, default_value_t = 5000)]
        multistep_steps: u64,
        /// Training steps of stage 2 (few-step tuning, λ = 1).
        #[arg(long, default_value_t = 500)]
        fewstep_steps: u64,
        /// Images per training step.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Generated and held-out images of each quality figure.
        #[arg(long, default_value_t = 500)]
        eval_images: usize,
        /// Seed of data order, initialisation and noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Use this YAML for stage 1 (multi-step) instead of the built-in one.
        #[arg(long)]
        multistep_config: Option<PathBuf>,
        /// Use this YAML for stage 2 (few-step tuning) instead of the built-in one.
        #[arg(long)]
        fewstep_config: Option<PathBuf>,
        /// Classifier-free guidance scale of the guided multi-step row (0: no such row).
        #[arg(long, default_value_t = 1.5)]
        cfg_scale: f64,
        /// Native-time interval where that guidance applies: two numbers, `LO,HI`.
        #[arg(long, value_delimiter = ',', num_args = 2, default_values_t = [0.0, 1.0])]
        cfg_interval: Vec<f64>,
        /// FID Inception weights (scripts/convert_inception.py): adds an Inception FID
        /// column (slow on the CPU: ~6 GFLOP per image; 16×16 shapes are far from
        /// Inception's domain, so the pixel FD stays the main figure).
        #[arg(long)]
        inception: Option<PathBuf>,
    },
    /// Train from a YAML config (keys as the reference's: model, train, optimizer, transport, sample).
    Train {
        /// The run's YAML config.
        #[arg(long)]
        config: PathBuf,
        /// Continue a run exactly from one of its checkpoints: a checkpoint file, `latest`
        /// (the config's output_dir/checkpoints/latest) or a run or checkpoints folder
        /// (its `latest` pointer).
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Start the online network from these weights (a checkpoint's EMA, or a weights file).
        #[arg(long)]
        init: Option<PathBuf>,
        /// Override train.max_steps.
        #[arg(long)]
        max_steps: Option<u64>,
        /// Keep only the newest N step checkpoints (overrides train.keep_last).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keep_last: Option<u64>,
    },
    /// Sample from a checkpoint or weights file. Settings not given come from the file's
    /// sampler preset (stored by `ucgm train`, the demo and `ucgm export`), else from the
    /// defaults shown.
    Sample(Box<SampleArgs>),
    /// Write the plain weights file of a training checkpoint (its EMA by default), with
    /// its configuration and sampler preset, for `ucgm_model_load` and other tools.
    Export {
        /// The training checkpoint (or weights file) to read.
        ckpt: PathBuf,
        /// Which weights of a checkpoint: ema (default), online or mod.
        #[arg(long, default_value = "ema")]
        weights: String,
        /// The weights file to write (.safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Encode an image folder (one sub-folder per class, PNG/JPEG) into latent shards in
    /// the reference's format (`latents`, `latents_flip`, `labels`); resumable: finished
    /// shards are skipped.
    Encode(EncodeArgs),
    /// Decode a latents file (`latents` of a shard or `samples` of `ucgm sample`) to PNGs.
    Decode(DecodeArgs),
    /// Fréchet Inception Distance between two image sets, each a folder of PNG images, a
    /// statistics .npz (mu, sigma; pytorch-fid / ADM format) or a samples .safetensors
    /// (`samples` [N, 3, H, W] in [−1, 1]). Prints FID (and writes A's statistics with
    /// --save-stats).
    Fid {
        /// First image set.
        a: PathBuf,
        /// Second image set.
        b: PathBuf,
        /// FID Inception weights (pt_inception-2015-12-05 converted by
        /// scripts/convert_inception.py); needed unless both sides are .npz files.
        #[arg(long)]
        inception: Option<PathBuf>,
        /// Images per network batch.
        #[arg(long, default_value_t = 50)]
        batch: usize,
        /// torch-fidelity's inception-v3-compat preprocessing (uint8, TF1 resize), as the
        /// UCGM reference's eval.py; default: pytorch-fid's.
        #[arg(long)]
        compat: bool,
        /// Write the statistics of A to this .npz.
        #[arg(long)]
        save_stats: Option<PathBuf>,
    },
    /// Evaluate a checkpoint as the reference's eval.py does: sample --num images (image
    /// i has label i mod K), decode them with the VAE, extract FID Inception features and
    /// logits, print the FID against --ref and the Inception Score (10 splits).
    /// Resumable with --features-file; under mpirun each rank evaluates its share.
    Eval(Box<EvalArgs>),
    /// Print a checkpoint's or weights file's configuration, sizes, parameter count,
    /// sampler preset and checksum.
    Info {
        /// The checkpoint or weights file.
        path: PathBuf,
    },
}

/// `ucgm encode` options.
#[derive(Args)]
struct EncodeArgs {
    /// The image folder: one sub-folder per class (an ImageNet-style train folder).
    input: PathBuf,
    /// The VAE (safetensors; diffusers or LDM names).
    #[arg(long)]
    vae: PathBuf,
    /// The shard folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Side of the centre crop in pixels (a multiple of the VAE's factor).
    #[arg(long, default_value_t = 256)]
    image_size: usize,
    /// Images per VAE call (each is also encoded mirrored).
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Images per shard (the reference: 10000).
    #[arg(long, default_value_t = ucgm::app::encode::REFERENCE_SHARD_SIZE)]
    shard_size: usize,
    /// Store the posterior mean (the reference's SD-VAE extraction) or one sample
    /// (its VA-VAE extraction).
    #[arg(long, default_value = "mean")]
    posterior: String,
    /// Seed of the posterior samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `ucgm decode` options.
#[derive(Args)]
struct DecodeArgs {
    /// A safetensors file with `latents` or `samples` [N, C, H, W].
    latents: PathBuf,
    /// The VAE (safetensors).
    #[arg(long)]
    vae: PathBuf,
    /// Tensor to decode (default: `samples` if present, else `latents`).
    #[arg(long)]
    tensor: Option<String>,
    /// Grid PNG to write.
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Folder for one PNG per latent (000000.png, …).
    #[arg(long)]
    images_dir: Option<PathBuf>,
    /// Latent statistics (safetensors `mean`, `std`) to invert before decoding.
    #[arg(long)]
    latent_stats: Option<PathBuf>,
    /// Latent multiplier to invert (SD-VAE: 0.18215). Without it and without stats, the
    /// file's stored normalisation is used, else the latents are taken as raw.
    #[arg(long)]
    latent_multiplier: Option<f32>,
    /// Decode at most this many latents.
    #[arg(long)]
    limit: Option<usize>,
}

/// `ucgm eval` options.
#[derive(Args)]
struct EvalArgs {
    /// Checkpoint (`ucgm train`) or weights safetensors file of a latent model.
    #[arg(long)]
    ckpt: PathBuf,
    /// Which weights of a checkpoint: ema (default), online or mod.
    #[arg(long, default_value = "ema")]
    weights: String,
    /// Attention heads, for weights files whose width is not a named size.
    #[arg(long)]
    heads: Option<usize>,
    /// The VAE (safetensors) that decodes the samples.
    #[arg(long)]
    vae: PathBuf,
    /// Latent statistics file (safetensors `mean`, `std`) of a VA-VAE / E2E-VAE model;
    /// overrides the model file's stored normalisation.
    #[arg(long)]
    latent_stats: Option<PathBuf>,
    /// Latent multiplier (SD-VAE: 0.18215); overrides the stored normalisation.
    #[arg(long)]
    latent_multiplier: Option<f32>,
    /// FID Inception weights (pt_inception-2015-12-05 converted by scripts/convert_inception.py).
    #[arg(long)]
    inception: PathBuf,
    /// torch-fidelity's inception-v3-compat preprocessing (uint8, TF1 resize), as the
    /// UCGM reference's eval.py; default: pytorch-fid's.
    #[arg(long)]
    compat: bool,
    /// Reference statistics .npz (mu, sigma), e.g. ADM's VIRTUAL_imagenet256_labeled.npz.
    #[arg(long = "ref")]
    reference: Option<PathBuf>,
    /// Number of images (at least 10, for the 10 Inception Score splits).
    #[arg(long, default_value_t = 50000)]
    num: usize,
    /// Images per batch (sampling, decoding and features).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Seed of the per-image noise (image i draws from stream i of this seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    flags: SamplerFlags,
    /// Accumulate the state here (atomically, every --save-every batches) and continue
    /// from it when it exists; under mpirun each rank uses FILE with .rankRofW inserted.
    #[arg(long)]
    features_file: Option<PathBuf>,
    /// Batches between two saves of --features-file.
    #[arg(long, default_value_t = 20)]
    save_every: usize,
    /// Write the samples' statistics (mu, sigma) to this .npz.
    #[arg(long)]
    save_stats: Option<PathBuf>,
    /// Stop after this many batches of this invocation (state saved; for tests and time slots).
    #[arg(long, hide = true)]
    max_batches: Option<usize>,
}

/// `ucgm sample` options. Every sampler setting is optional: unset ones come from the
/// file's preset, else from the default in the help text.
#[derive(Args)]
struct SampleArgs {
    /// Checkpoint (`ucgm train`) or weights safetensors file.
    #[arg(long)]
    ckpt: PathBuf,
    /// Which weights of a checkpoint: ema (default), online or mod.
    #[arg(long, default_value = "ema")]
    weights: String,
    /// Attention heads, for weights files whose width is not a named size.
    #[arg(long)]
    heads: Option<usize>,
    /// A reference sampling config (e.g. the reference's
    /// configs/sampling_multi_steps/in1k256_lightningdit_xl_vavae_relinear.yaml): its
    /// `model:` (with `data:` and `vae:`) names the network — needed for DDT weights,
    /// which do not record their shape — and its `transport:` and `sample:` give the
    /// sampler settings (flags still override).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: SamplerFlags,
    /// Number of samples.
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Comma-separated labels (cycled); default 0, 1, 2, … cycled over the classes.
    #[arg(long)]
    labels: Option<String>,
    /// Seed of the initial and per-step noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output: .png (1- or 3-channel data, or decoded with --vae) or .safetensors
    /// (tensor `samples` [N, C, H, W], model-space latents).
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    /// Decode the samples with this VAE (safetensors) and write images.
    #[arg(long)]
    vae: Option<PathBuf>,
    /// Latent statistics file (safetensors `mean`, `std`) of a VA-VAE / E2E-VAE model;
    /// overrides the model file's stored normalisation.
    #[arg(long)]
    latent_stats: Option<PathBuf>,
    /// Latent multiplier (SD-VAE: 0.18215); overrides the stored normalisation.
    #[arg(long)]
    latent_multiplier: Option<f32>,
    /// With --vae: also write one PNG per image into this folder.
    #[arg(long)]
    images_dir: Option<PathBuf>,
}

/// The UCGM-S settings of `ucgm sample` and `ucgm eval`. Every one is optional: unset
/// ones come from the file's preset, else from the default in the help text.
#[derive(Args)]
struct SamplerFlags {
    /// Guidance acts on the first N channels only, or `all`. Default: the network's own
    /// rule (LightningDiT: 3, its reference's quirk that its released FIDs were measured
    /// with; all channels for every other network).
    #[arg(long)]
    cfg_channels: Option<String>,
    /// Ignore the file's sampler preset: unset settings take the defaults below.
    #[arg(long)]
    no_preset: bool,
    /// Transport the network was trained with: Linear, ReLinear, TrigFlow, TrigLinear,
    /// Random or EDM [default: Linear].
    #[arg(long)]
    transport: Option<String>,
    /// Sampling steps, 1..=100000 [default: 30].
    #[arg(long)]
    steps: Option<usize>,
    /// Solver order: 1 (Euler / DDIM-like) or 2 (Heun-like) [default: 1].
    #[arg(long)]
    order: Option<usize>,
    /// Stochasticity ρ in [0, 1] (1 = consistency-model sampling), or "sde" for the
    /// adaptive value [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    rho: Option<String>,
    /// Extrapolation κ ≥ 0 (0.2–0.6 for multi-step models) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    kappa: Option<f64>,
    /// Kumaraswamy time warp a,b,c (1,1,1 = none; 1.17,0.8,1.1 recommended) [default: 1,1,1].
    #[arg(long, value_parser = parse_list::<3>, allow_negative_numbers = true)]
    time_dist_ctrl: Option<[f64; 3]>,
    /// Grid gaps g0,g1 at the noise and data ends [default: 0.001,0.001].
    #[arg(long, value_parser = parse_list::<2>, allow_negative_numbers = true)]
    gaps: Option<[f64; 2]>,
    /// Classifier-free guidance scale s ≥ 0 (0 = off) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    cfg_scale: Option<f64>,
    /// Native-time interval lo,hi where guidance applies [default: 0,1].
    #[arg(long, value_parser = parse_list::<2>, allow_negative_numbers = true)]
    cfg_interval: Option<[f64; 2]>,
}

impl SampleArgs {
    fn sampler(&self, base: SamplerConfig) -> Result<SamplerConfig> {
        self.flags.sampler(base)
    }
}

impl SamplerFlags {
    /// The sampler settings: `base` (the preset or the defaults) with the flags on top.
    fn sampler(&self, base: SamplerConfig) -> Result<SamplerConfig> {
        let mut cfg = base;
        if let Some(t) = &self.transport {
            cfg.transport = t.parse::<TransportKind>()?;
        }
        if let Some(v) = self.steps {
            cfg.steps = v;
        }
        if let Some(v) = self.order {
            cfg.order = v;
        }
        if let Some(rho) = &self.rho {
            cfg.stochasticity = if rho.eq_ignore_ascii_case("sde") {
                Stochasticity::Sde
            } else {
                Stochasticity::Fixed(rho.parse().map_err(|_| Error::invalid(format!("--rho {rho:?}: a number in [0, 1] or sde")))?)
            };
        }
        if let Some(v) = self.kappa {
            cfg.extrapolation = v;
        }
        if let Some(v) = self.time_dist_ctrl {
            cfg.time_dist_ctrl = v;
        }
        if let Some(v) = self.gaps {
            cfg.rfba_gap_steps = v;
        }
        if let Some(v) = self.cfg_scale {
            cfg.cfg_scale = v;
        }
        if let Some(v) = self.cfg_interval {
            cfg.cfg_interval = v;
        }
        if let Some(c) = &self.cfg_channels {
            cfg.cfg_channels = match c.trim() {
                a if a.eq_ignore_ascii_case("all") => None,
                n => Some(
                    n.parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| Error::invalid(format!("--cfg-channels {c:?}: a channel count ≥ 1 or all")))?,
                ),
            };
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The defaults of `ucgm sample` when a file has no preset.
fn cli_sampler_defaults() -> SamplerConfig {
    SamplerConfig {
        steps: 30,
        rfba_gap_steps: [0.001, 0.001],
        ..SamplerConfig::default()
    }
}

fn parse_list<const N: usize>(s: &str) -> std::result::Result<[f64; N], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|e| format!("{p:?}: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    v.try_into()
        .map_err(|v: Vec<f64>| format!("expected {N} comma-separated numbers, got {}", v.len()))
}

/// Progress bar with loss, images/s and ETA.
struct Bar {
    bar: Option<ProgressBar>,
}

impl TrainObserver for Bar {
    fn on_step(&mut self, r: &StepReport) -> bool {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return true; // logs only (train.log_every) when not on a terminal
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(r.max_steps);
            b.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}").expect("template"));
            b
        });
        if bar.length() != Some(r.max_steps) {
            bar.set_length(r.max_steps);
        }
        bar.set_position(r.stats.step);
        bar.set_message(format!("loss {:.4} | {:.0} img/s", r.stats.loss, r.images_per_sec));
        true
    }
    fn on_message(&mut self, m: &str) {
        match &self.bar {
            Some(b) => b.println(m),
            None => eprintln!("{m}"),
        }
        if m.starts_with("stage") {
            if let Some(b) = self.bar.take() {
                b.finish_and_clear();
            }
        }
    }
}

/// The weights of a checkpoint (`which` of it) or weights file, with its metadata.
fn load_for_sampling(path: &Path, which: &str, heads: Option<usize>) -> Result<weights::LoadedWeights> {
    let which: CheckpointWeights = which
        .parse()
        .map_err(|_| Error::invalid(format!("--weights {which:?}: expected ema, online or mod")))?;
    weights::load_file(path, heads, Some(which))
}

fn info(path: &Path) -> Result<()> {
    let file = TensorFile::open(path)?;
    let is_ckpt = file.metadata().contains_key(ucgm::trainer::checkpoint::TRAINER_STATE_KEY);
    let cfg = ucgm::model::weights::config_of(&file, None)?;
    let n = ParamLayout::for_config(&cfg).total();
    println!("file        {}", path.display());
    println!("kind        {}", if is_ckpt { "training checkpoint" } else { "weights" });
    println!(
        "model       {}  (D {}, depth {}, heads {}, patch {})",
        cfg.arch.name(),
        cfg.hidden,
        cfg.depth,
        cfg.heads,
        cfg.patch
    );
    println!(
        "input       {}×{}×{} ({} tokens), {} classes (+ null)",
        cfg.in_channels,
        cfg.input_size,
        cfg.input_size,
        cfg.tokens(),
        cfg.num_classes
    );
    println!("parameters  {n} ({:.2} M)", n as f64 / 1e6);
    println!("forward     {:.2} GFLOP per image", cfg.forward_flops() / 1e9);
    match preset::from_metadata(path, file.metadata())? {
        Some(p) => println!("sampler     {}", preset::describe(&p)),
        None => println!("sampler     no preset stored"),
    }
    println!(
        "checksum    {}",
        file.metadata()
            .get(ucgm::tensor_file::CHECKSUM_KEY)
            .map_or("none (not verified)", |c| c.as_str())
    );
    for key in [ucgm::trainer::checkpoint::TRAINER_STATE_KEY, ucgm::trainer::checkpoint::TRAINER_CONFIG_KEY] {
        if let Some(v) = file.metadata().get(key) {
            println!("{key}  {v}");
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run(cli: Cli) -> Result<()> {
    let defaults = BackendRequest::default();
    match cli.command {
        Command::Demo {
            out,
            multistep_steps,
            fewstep_steps,
            batch,
            eval_images,
            seed,
            multistep_config,
            fewstep_config,
            cfg_scale,
            cfg_interval,
            inception,
        } => {
            let o = DemoOptions {
                output_dir: out,
                backend: cli.backend.request(defaults),
                multistep_steps,
                fewstep_steps,
                batch,
                eval_images,
                seed,
                multistep_config,
                fewstep_config,
                cfg_scale,
                cfg_interval: [cfg_interval[0], cfg_interval[1]],
                inception,
            };
            let report = run_demo(&o, &mut Bar { bar: None })?;
            println!(
                "\nUCGM demo: TiT on shapes-10 (3×16×16); training {:.0} s multi-step + {:.0} s few-step, evaluation {:.0} s",
                report.multistep_secs, report.fewstep_secs, report.eval_secs
            );
            println!(
                "quality: {n} generated images per row vs {n} held-out images. FD: Fréchet distance (pooled-pixel features, \
                 64-d projection; lower is better); class acc: share of images the fixed shape classifier puts in the class \
                 asked for (higher is better); class FD: mean over classes of the FD within the class",
                n = o.eval_images
            );
            println!(
                "(FD is measured on pooled pixels, not Inception features: 16×16 synthetic shapes are far from the \
                 photographs the FID Inception was trained on{})",
                if o.inception.is_some() {
                    "; the Inception FID column is given for comparison"
                } else {
                    "; --inception FILE adds an Inception FID column"
                }
            );
            let fid_col = |v: Option<f64>| v.map_or(String::new(), |f| format!(" {f:>10.3}"));
            println!(
                "{:<12} {:>5} {:>5} {:>4} {:>9} {:>10} {:>9}{}   grid",
                "model",
                "steps",
                "cfg",
                "NFE",
                "FD",
                "class acc",
                "class FD",
                if o.inception.is_some() {
                    format!(" {:>10}", "Incep. FID")
                } else {
                    String::new()
                }
            );
            for r in &report.rows {
                let cfg = if r.cfg_scale > 0.0 { format!("{}", r.cfg_scale) } else { "-".into() };
                println!(
                    "{:<12} {:>5} {:>5} {:>4} {:>9.3} {:>9.1}% {:>9.3}{}   {}",
                    r.model,
                    r.steps,
                    cfg,
                    r.nfe,
                    r.frechet,
                    100.0 * r.class_accuracy,
                    r.class_frechet,
                    fid_col(r.inception_fid),
                    r.grid.display()
                );
            }
            println!(
                "{:<12} {:>5} {:>5} {:>4} {:>9.3} {:>9.1}% {:>9.3}{}   {}",
                "real",
                "-",
                "-",
                "-",
                report.real_floor,
                100.0 * report.real_class_accuracy,
                report.real_class_floor,
                fid_col(report.real_inception_floor),
                report.real_grid.display()
            );
            println!("(real: FD and class FD between train and held-out images = the floor; class acc of held-out images = the ceiling)");
            let names = ucgm::data::builtin::CLASS_NAMES;
            println!("per-class accuracy (class asked for):");
            print!("{:<22}", "");
            for n in names {
                print!(" {:>8}", n);
            }
            println!();
            let line = |label: String, v: &[f64]| {
                print!("{label:<22}");
                for x in v {
                    print!(" {:>7.0}%", 100.0 * x);
                }
                println!();
            };
            for r in &report.rows {
                let cfg = if r.cfg_scale > 0.0 { format!(" cfg {}", r.cfg_scale) } else { String::new() };
                line(format!("{} {}{cfg}", r.model, r.steps), &r.per_class_accuracy);
            }
            line("real (held-out)".into(), &report.real_per_class_accuracy);
            println!(
                "grids: {} columns (one class each: {}), {} rows (seeds), enlarged {}× (nearest neighbour)",
                report.grid_columns,
                names.join(", "),
                report.grid_rows,
                ucgm::app::demo::GRID_SCALE
            );
            Ok(())
        }
        Command::Train {
            config,
            resume,
            init,
            max_steps,
            keep_last,
        } => {
            let (mut cfg, not_implemented) = RunConfig::from_file_with_warnings(&config)?;
            if let Some(line) = ucgm::app::config_keys::warning_line(&not_implemented) {
                eprintln!("ucgm: warning: {}: {line}", config.display());
            }
            if let Some(m) = max_steps {
                cfg.trainer.train.max_steps = m;
            }
            if let Some(k) = keep_last {
                cfg.keep_last = Some(k as usize);
            }
            // Checks that need no compute come before the backend starts.
            ucgm::app::checkpoints::prepare_output_dir(&cfg.output_dir)?;
            let resume = match &resume {
                Some(arg) => Some(ucgm::app::train::resume_point(&cfg, arg)?.0),
                None => None,
            };
            let init = init.as_deref().map(|p| (p, CheckpointWeights::Ema));
            // The launcher's environment (mpirun, torchrun, srun) makes this process one
            // rank of a data-parallel group; without one it is a single process.
            let launch = ucgm::dist::LaunchEnv::from_env()?;
            let mut request = cli.backend.request(cfg.backend);
            if launch.world > 1 && cli.backend.cuda_device.is_none() {
                // One GPU per rank on a node: the launcher's local rank picks it.
                request.device = launch.local_rank;
            }
            let backend = choose_backend(&request)?;
            let cuda = !matches!(backend, ucgm::AnyBackend::Cpu(_));
            let comm = ucgm::dist::communicator_for(&launch, ucgm::dist::Transport::Auto { cuda })?;
            let mut run = TrainRun::with_communicator(cfg, backend, resume.as_deref(), init, comm)?;
            run.run(&mut Bar { bar: None })
        }
        Command::Sample(args) => sample_command(&args, cli.backend.request(defaults)),
        Command::Export { ckpt, weights: which, out } => {
            let w = load_for_sampling(&ckpt, &which, None)?;
            let extra: std::collections::BTreeMap<String, String> = [preset::PRESET_KEY, ucgm::latent_norm::LATENT_NORM_KEY]
                .into_iter()
                .filter_map(|k| w.metadata.get(k).map(|v| (k.to_string(), v.clone())))
                .collect();
            let layout = ParamLayout::for_config(&w.cfg);
            weights::save_with_metadata(&out, &w.cfg, &layout, &w.params, &extra)?;
            let source = w.checkpoint.map_or("weights".to_string(), |c| format!("{} weights", c.name()));
            println!("wrote the {source} of {} to {}", ckpt.display(), out.display());
            Ok(())
        }
        Command::Info { path } => info(&path),
        Command::Eval(args) => eval_command(&args, cli.backend.request(defaults)),
        Command::Encode(args) => encode_command(&args, cli.backend.request(defaults)),
        Command::Decode(args) => decode_command(&args, cli.backend.request(defaults)),
        Command::Fid {
            a,
            b,
            inception,
            batch,
            compat,
            save_stats,
        } => {
            let (a, b) = (FidSource::classify(&a)?, FidSource::classify(&b)?);
            let input = if compat { InceptionInput::TorchFidelity } else { InceptionInput::PytorchFid };
            let job = FidJob {
                a,
                b,
                inception,
                batch,
                input,
                save_stats,
            };
            if !job.a.needs_network() && !job.b.needs_network() {
                return job.run::<ucgm::CpuBackend>(None);
            }
            match choose_backend(&cli.backend.request(defaults))? {
                AnyBackend::Cpu(be) => job.run(Some(be)),
                #[cfg(feature = "cuda")]
                AnyBackend::Cuda(be) => job.run(Some(be)),
            }
        }
    }
}

/// `ucgm fid`'s settings.
struct FidJob {
    a: FidSource,
    b: FidSource,
    inception: Option<PathBuf>,
    batch: usize,
    input: InceptionInput,
    save_stats: Option<PathBuf>,
}

impl FidJob {
    fn run<B: ucgm::Backend>(&self, backend: Option<B>) -> Result<()> {
        let net = match (backend, &self.inception) {
            (Some(be), Some(p)) => Some(FidInception::load(p, be, self.input)?),
            (Some(_), None) => return Err(Error::invalid("--inception WEIGHTS is needed for image folders and samples files")),
            (None, _) => None,
        };
        let mut stats = Vec::new();
        for (side, src) in [("A", &self.a), ("B", &self.b)] {
            let bar = ProgressBar::new(0);
            bar.set_style(ProgressStyle::with_template("features {msg} {bar:30} {pos}/{len} images [{elapsed_precise} < {eta_precise}]").expect("template"));
            bar.set_message(side);
            let s = source_stats(src, net.as_ref(), self.batch, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            stats.push(s);
        }
        if let Some(p) = &self.save_stats {
            write_stats_npz(p, &stats[0])?;
            eprintln!("wrote the statistics of A to {}", p.display());
        }
        println!("FID {:.6}", frechet_distance(&stats[0], &stats[1])?);
        Ok(())
    }
}

fn sample_command(args: &SampleArgs, backend: BackendRequest) -> Result<()> {
    // A reference sampling config names the network and gives the sampler settings.
    let reference = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            Some(RunConfig::sampling_from_yaml(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?)
        }
        None => None,
    };
    // The EDM2 UNet: named by the config, or recognised by its stored Fourier buffers.
    let edm2 = match &reference {
        Some((ucgm::app::config::SamplingNetwork::Edm2(c), s)) => Some((Some(c.clone()), Some(s.clone()))),
        Some(_) => None,
        // (header only: the loader verifies the checksum as it reads the data)
        None => TensorFile::open_header(&args.ckpt)
            .ok()
            .filter(|f| f.contains("emb_fourier.freqs"))
            .map(|_| (None, None)),
    };
    if let Some((cfg, sampler)) = edm2 {
        return sample_edm2_command(args, backend, cfg, sampler);
    }
    let w = match &reference {
        Some((ucgm::app::config::SamplingNetwork::Transformer(mc), _)) => {
            let which = args.weights.parse::<weights::CheckpointWeights>()?;
            weights::load_file_as(&args.ckpt, mc, Some(which))?
        }
        _ => load_for_sampling(&args.ckpt, &args.weights, args.heads)?,
    };
    let mc = w.cfg.clone();
    let stored = if args.flags.no_preset {
        None
    } else {
        preset::from_metadata(&args.ckpt, &w.metadata)?
    };
    if let Some(p) = &stored {
        eprintln!("sampler preset from {}: {}", args.ckpt.display(), preset::describe(p));
    }
    let base = match reference {
        Some((_, sampler)) => sampler,
        None => stored.unwrap_or_else(cli_sampler_defaults),
    };
    // The network's guidance rule (LightningDiT: channels 0–2), unless --cfg-channels says.
    let base = SamplerConfig {
        cfg_channels: mc.arch.cfg_channels(),
        ..base
    };
    let cfg = args.sampler(base)?;
    let n = args.n;
    if n == 0 {
        return Err(Error::invalid("--n must be at least 1"));
    }
    let label_list: Vec<usize> = match args.labels.as_deref() {
        Some(s) => s
            .split(',')
            .map(|p| {
                p.trim().parse::<usize>().ok().filter(|&l| l <= mc.num_classes).ok_or_else(|| {
                    Error::invalid(format!(
                        "--labels: {p:?} is not a class id in 0..={} ({} = unconditional)",
                        mc.num_classes, mc.num_classes
                    ))
                })
            })
            .collect::<Result<_>>()?,
        None => (0..mc.num_classes).collect(),
    };
    if label_list.is_empty() {
        return Err(Error::invalid("--labels is empty"));
    }
    let out = &args.out;
    let decoded = match &args.vae {
        Some(_) => {
            if out.extension().and_then(|e| e.to_str()) != Some("png") {
                return Err(Error::invalid(format!("--vae writes images: --out {} must be a .png file", out.display())));
            }
            let stored = ucgm::latent_norm::LatentNorm::from_metadata(&args.ckpt, &w.metadata)?;
            Some(ucgm::app::decode::resolve_norm(stored, args.latent_stats.as_deref(), args.latent_multiplier)?)
        }
        None => None,
    };
    let png = match out.extension().and_then(|e| e.to_str()) {
        _ if decoded.is_some() => true,
        Some("png") if [1, 3].contains(&mc.in_channels) => true,
        Some("png") => {
            return Err(Error::invalid(format!(
                "{} channels cannot be a PNG grid: use --out file.safetensors",
                mc.in_channels
            )))
        }
        Some("safetensors") => false,
        _ => return Err(Error::invalid(format!("--out {}: use a .png or .safetensors file", out.display()))),
    };
    ucgm::app::output::check_writable_file(out)?;
    // Every buffer sized by --n is checked before any compute.
    let total = n
        .checked_mul(mc.image_len())
        .ok_or_else(|| Error::OutOfMemory(format!("--n {n}: the sample count overflows")))?;
    ucgm::limits::check_bytes(&format!("--n {n} samples"), total, if png { 8 } else { 4 })?;
    let labels: Vec<usize> = (0..n).map(|i| label_list[i % label_list.len()]).collect();
    // Under a launcher (mpirun, torchrun, srun) this process is one rank: it samples (and
    // decodes) its contiguous share of the images, every image's noise from its own
    // stream, and rank 0 gathers and writes them — the same images for any number of
    // ranks. Without a launcher: one process, one noise stream (as before).
    let launch = ucgm::dist::LaunchEnv::from_env()?;
    let distributed = launch.launcher != ucgm::dist::Launcher::None;
    let mut backend = backend;
    if launch.world > 1 && backend.device == 0 {
        // One GPU per rank on a node: the launcher's local rank picks it.
        backend.device = launch.local_rank;
    }
    let backend = choose_backend(&backend)?;
    let mut comm = if distributed {
        let cuda = !matches!(backend, AnyBackend::Cpu(_));
        Some(ucgm::dist::communicator_for(&launch, ucgm::dist::Transport::Auto { cuda })?)
    } else {
        None
    };
    let share = ucgm::dist::shard_range(n, launch.rank, launch.world);
    let root = comm.as_ref().is_none_or(|c| c.is_root());
    // The VAE is loaded (and checked against the model) before any sampling.
    let mut vae = match &args.vae {
        Some(p) => {
            let vae = ucgm::engine::AnyVae::load(p, backend.clone())?;
            if vae.config().latent_channels != mc.in_channels {
                return Err(Error::invalid(format!(
                    "the VAE {} has {} latent channels but the model samples {} channels",
                    p.display(),
                    vae.config().latent_channels,
                    mc.in_channels
                )));
            }
            Some(vae)
        }
        None => None,
    };
    let mut model = AnyModel::from_params_owned(mc.clone(), backend, w.params)?;
    model.enter_inference_layout()?;
    let bar = if root {
        sampling_bar(share.len().div_ceil(64) * cfg.grid_points())
    } else {
        None
    };
    let mut tick = |_: usize, _: usize| {
        if let Some(b) = &bar {
            b.inc(1);
        }
        true
    };
    let mut ctl = ucgm::control::RunControl {
        cancel: None,
        progress: Some(&mut tick),
    };
    let images = match comm.as_mut() {
        None => ucgm::app::sample::sample_images(&mut model, &cfg, &labels, args.seed, Some(&mut ctl))?,
        Some(_) => ucgm::app::sample::sample_images_indexed(&mut model, &cfg, &labels[share.clone()], share.clone(), args.seed, 64, Some(&mut ctl))?,
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let shape = [n, mc.in_channels, mc.input_size, mc.input_size];
    if let (Some(vae), Some(norm)) = (vae.as_mut(), decoded.as_ref()) {
        if root {
            eprintln!("latent normalisation: {}", norm.describe());
        }
        let f = vae.config().downsample_factor();
        let part = [share.len(), mc.in_channels, mc.input_size, mc.input_size];
        let imgs = ucgm::app::decode::decode_latents(vae, norm, &images, if comm.is_some() { part } else { shape })?;
        let imgs = match comm.as_mut() {
            Some(c) => gather_shares(c.as_mut(), &imgs, n, share.clone(), 3 * mc.input_size * f * mc.input_size * f)?,
            None => imgs,
        };
        if !root {
            return Ok(());
        }
        let ishape = [n, 3, mc.input_size * f, mc.input_size * f];
        ucgm::app::decode::write_pngs(&imgs, ishape, Some(out), args.images_dir.as_deref(), "")?;
        println!(
            "wrote {n} decoded {}×{} images ({} steps, {}) to {}{}",
            ishape[3],
            ishape[2],
            cfg.steps,
            cfg.transport.name(),
            out.display(),
            args.images_dir.as_ref().map_or(String::new(), |d| format!(" and {}", d.display()))
        );
        return Ok(());
    }
    let images = match comm.as_mut() {
        Some(c) => gather_shares(c.as_mut(), &images, n, share, mc.image_len())?,
        None => images,
    };
    if !root {
        return Ok(());
    }
    if png {
        ucgm::image::write_png_grid(out, &images, shape, (n as f64).sqrt().ceil() as usize, 1)?;
    } else {
        let l: Vec<i64> = labels.iter().map(|&v| v as i64).collect();
        write_atomic(
            out,
            &[TensorOut::f32("samples", shape.to_vec(), &images), TensorOut::i64("labels", vec![n], &l)],
            &Default::default(),
        )?;
    }
    println!("wrote {n} samples ({} steps, {}) to {}", cfg.steps, cfg.transport.name(), out.display());
    Ok(())
}

/// Every rank's rows `share` of an `[n, row]` array (this rank's: `mine`) assembled on
/// every rank: one sum all-reduce of a zero-filled buffer each rank fills its share of
/// (adding zeros is exact, so the rows arrive bit for bit).
fn gather_shares(comm: &mut dyn ucgm::dist::Communicator, mine: &[f32], n: usize, share: std::ops::Range<usize>, row: usize) -> Result<Vec<f32>> {
    let mut all = ucgm::limits::try_vec::<f32>(
        "gathered samples",
        n.checked_mul(row).ok_or_else(|| Error::OutOfMemory("gathered samples overflow".into()))?,
    )?;
    all[share.start * row..share.end * row].copy_from_slice(mine);
    comm.all_reduce_sum_f32(&mut all)?;
    Ok(all)
}

fn encode_command(args: &EncodeArgs, backend: BackendRequest) -> Result<()> {
    use ucgm::app::encode::{encode_folder, EncodeOptions};
    let opts = EncodeOptions {
        input: args.input.clone(),
        output: args.out.clone(),
        image_size: args.image_size,
        batch: args.batch,
        shard_size: args.shard_size,
        posterior: args.posterior.parse()?,
        seed: args.seed,
        vae_name: args.vae.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    // The folder is listed (and bad files reported) before the backend starts.
    let list = ucgm::app::encode::list_images(&args.input)?;
    let backend = choose_backend(&backend)?;
    let mut vae = ucgm::engine::AnyVae::load(&args.vae, backend)?;
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = ProgressBar::new(list.files.len() as u64);
        b.set_style(ProgressStyle::with_template("encoding {bar:30} {pos}/{len} images [{elapsed_precise} < {eta_precise}] {per_sec}").expect("template"));
        Some(b)
    } else {
        None
    };
    let mut tick = |done: usize, _: usize| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
        true
    };
    let mut ctl = ucgm::control::RunControl {
        cancel: None,
        progress: Some(&mut tick),
    };
    let r = encode_folder(&mut vae, &opts, &mut ctl)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "encoded {} images of {} classes into {} ({} shards written, {} finished ones skipped); latents {}×{}×{}, {} posterior, unscaled",
        r.images,
        r.classes,
        args.out.display(),
        r.shards_written,
        r.shards_skipped,
        r.latent_shape[0],
        r.latent_shape[1],
        r.latent_shape[2],
        args.posterior
    );
    Ok(())
}

fn decode_command(args: &DecodeArgs, backend: BackendRequest) -> Result<()> {
    if args.grid.is_none() && args.images_dir.is_none() {
        return Err(Error::invalid("give --grid FILE.png and/or --images-dir DIR"));
    }
    let file = TensorFile::open(&args.latents)?;
    let name = match &args.tensor {
        Some(t) => t.clone(),
        None if file.contains("samples") => "samples".into(),
        None => "latents".into(),
    };
    if !file.contains(&name) {
        return Err(Error::format(&args.latents, format!("no tensor {name:?} (found {:?})", file.names())));
    }
    let (shape, mut data) = file.f32(&name).map_err(|e| Error::format(&args.latents, e.to_string()))?;
    let &[mut n, c, h, w] = shape.as_slice() else {
        return Err(Error::format(
            &args.latents,
            format!("tensor {name:?} has shape {shape:?}, expected [N, C, H, W]"),
        ));
    };
    if let Some(l) = args.limit {
        n = n.min(l);
        data.truncate(n * c * h * w);
    }
    if n == 0 {
        return Err(Error::format(&args.latents, format!("tensor {name:?} holds no latents")));
    }
    let stored = ucgm::latent_norm::LatentNorm::from_metadata(&args.latents, file.metadata())?;
    let norm = match ucgm::app::decode::resolve_norm(stored, args.latent_stats.as_deref(), args.latent_multiplier) {
        Ok(n) => n,
        Err(_) => ucgm::latent_norm::LatentNorm::identity(), // raw latents (a shard)
    };
    let backend = choose_backend(&backend)?;
    let mut vae = ucgm::engine::AnyVae::load(&args.vae, backend)?;
    let f = vae.config().downsample_factor();
    let imgs = ucgm::app::decode::decode_latents(&mut vae, &norm, &data, [n, c, h, w])?;
    let k = ucgm::app::decode::write_pngs(&imgs, [n, 3, h * f, w * f], args.grid.as_deref(), args.images_dir.as_deref(), "")?;
    println!("decoded {n} latents ({}) to {k} PNG file(s) of {}×{} images", norm.describe(), w * f, h * f);
    Ok(())
}

/// `ucgm sample` with an EDM2 UNet (a state dict with the reference's names; EDM
/// transport by default): `cfg` from the sampling config, else inferred from the tensors.
fn sample_edm2_command(args: &SampleArgs, backend: BackendRequest, cfg: Option<ucgm::model::edm2::Edm2Config>, sampler: Option<SamplerConfig>) -> Result<()> {
    use ucgm::model::edm2::Edm2;
    let base = sampler.unwrap_or_else(|| SamplerConfig {
        transport: TransportKind::Edm,
        ..cli_sampler_defaults()
    });
    let scfg = args.sampler(base)?;
    let n = args.n;
    if n == 0 {
        return Err(Error::invalid("--n must be at least 1"));
    }
    let mut net: Box<dyn ucgm::Denoiser> = match choose_backend(&backend)? {
        AnyBackend::Cpu(b) => Box::new(Edm2::load(&args.ckpt, b, cfg)?),
        #[cfg(feature = "cuda")]
        AnyBackend::Cuda(b) => Box::new(Edm2::load(&args.ckpt, b, cfg)?),
    };
    let k = net.num_classes();
    let [c, h, w] = net.sample_shape();
    let label_list: Vec<usize> = match args.labels.as_deref() {
        Some(s) => s
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&l| l <= k)
                    .ok_or_else(|| Error::invalid(format!("--labels: {p:?} is not a class id in 0..={k} ({k} = unconditional)")))
            })
            .collect::<Result<_>>()?,
        None => (0..k.max(1)).collect(),
    };
    if label_list.is_empty() {
        return Err(Error::invalid("--labels is empty"));
    }
    let out = &args.out;
    if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(Error::invalid(format!(
            "--out {}: an EDM2 latent sample is written as .safetensors",
            out.display()
        )));
    }
    ucgm::app::output::check_writable_file(out)?;
    let total = n
        .checked_mul(c * h * w)
        .ok_or_else(|| Error::OutOfMemory(format!("--n {n}: the sample count overflows")))?;
    ucgm::limits::check_bytes(&format!("--n {n} samples"), total, 4)?;
    let labels: Vec<usize> = (0..n).map(|i| label_list[i % label_list.len()]).collect();
    let images = ucgm::app::sample::sample_images(net.as_mut(), &scfg, &labels, args.seed, None)?;
    let l: Vec<i64> = labels.iter().map(|&v| v as i64).collect();
    write_atomic(
        out,
        &[TensorOut::f32("samples", vec![n, c, h, w], &images), TensorOut::i64("labels", vec![n], &l)],
        &Default::default(),
    )?;
    println!("wrote {n} samples ({} steps, {}, EDM2) to {}", scfg.steps, scfg.transport.name(), out.display());
    Ok(())
}

/// `ucgm eval`: settings and checks, then [`eval_on`] on the chosen backend.
fn eval_command(args: &EvalArgs, request: BackendRequest) -> Result<()> {
    use ucgm::app::eval::{rank_features_path, EvalState, Fingerprint};
    let launch = ucgm::dist::LaunchEnv::from_env()?;
    if args.num < ucgm::fid::IS_SPLITS {
        return Err(Error::invalid(format!(
            "--num {}: at least {} images (the Inception Score's splits)",
            args.num,
            ucgm::fid::IS_SPLITS
        )));
    }
    if args.batch == 0 {
        return Err(Error::invalid("--batch must be at least 1"));
    }
    let w = load_for_sampling(&args.ckpt, &args.weights, args.heads)?;
    let mc = w.cfg.clone();
    let stored = if args.flags.no_preset {
        None
    } else {
        preset::from_metadata(&args.ckpt, &w.metadata)?
    };
    let base = SamplerConfig {
        cfg_channels: mc.arch.cfg_channels(),
        ..stored.unwrap_or_else(cli_sampler_defaults)
    };
    let cfg = args.flags.sampler(base)?;
    let stored_norm = ucgm::latent_norm::LatentNorm::from_metadata(&args.ckpt, &w.metadata)?;
    let norm = ucgm::app::decode::resolve_norm(stored_norm, args.latent_stats.as_deref(), args.latent_multiplier)?;
    // Files that are read or written at the end are checked before any compute.
    let reference = args.reference.as_ref().map(ucgm::fid::read_stats_npz).transpose()?;
    if let Some(p) = &args.save_stats {
        ucgm::app::output::check_writable_file(p)?;
    }
    let input = if args.compat {
        InceptionInput::TorchFidelity
    } else {
        InceptionInput::PytorchFid
    };
    let k = mc.num_classes.max(1);
    let range = ucgm::dist::shard_range(args.num, launch.rank, launch.world);
    let mut fp = Fingerprint::default();
    fp.file("ckpt", &args.ckpt)?
        .file("vae", &args.vae)?
        .file("inception", &args.inception)?
        .set("weights", &args.weights)
        .set("latent_norm", norm.describe())
        .set("num", args.num)
        .set("seed", args.seed)
        .set("sampler", format!("{cfg:?}"))
        .set("input", format!("{input:?}"))
        .set("ranks", launch.world);
    let features = args.features_file.as_ref().map(|p| rank_features_path(p, launch.rank, launch.world));
    let state = EvalState::load_or_new(features.as_deref(), fp.text(), range.clone())?;
    let backend = choose_backend(&request)?;
    let cuda = !matches!(backend, AnyBackend::Cpu(_));
    let comm = ucgm::dist::communicator_for(&launch, ucgm::dist::Transport::Auto { cuda })?;
    if comm.is_root() {
        let per = args.num / k;
        let extra = args.num % k;
        eprintln!(
            "eval: {} images, label of image i = i mod {k} ({per} per class{}), {} steps, seed {}, {} rank(s){}",
            args.num,
            if extra > 0 { format!(", classes 0..{extra} one more") } else { String::new() },
            cfg.steps,
            args.seed,
            comm.world(),
            if state.next > state.range.start {
                format!("; resuming at image {} from the features file", state.next)
            } else {
                String::new()
            }
        );
    }
    let vae = ucgm::engine::AnyVae::load(&args.vae, backend.clone())?;
    if vae.config().latent_channels != mc.in_channels {
        return Err(Error::invalid(format!(
            "the VAE {} has {} latent channels but the model samples {} channels",
            args.vae.display(),
            vae.config().latent_channels,
            mc.in_channels
        )));
    }
    let mut model = AnyModel::from_params_owned(mc, backend.clone(), w.params)?;
    model.enter_inference_layout()?;
    let job = EvalJob {
        args,
        cfg,
        norm,
        input,
        reference,
        features,
        state,
        comm,
        model,
        vae,
    };
    match backend {
        AnyBackend::Cpu(be) => job.run(be),
        #[cfg(feature = "cuda")]
        AnyBackend::Cuda(be) => job.run(be),
    }
}

/// A prepared `ucgm eval`.
struct EvalJob<'a> {
    args: &'a EvalArgs,
    cfg: SamplerConfig,
    norm: ucgm::latent_norm::LatentNorm,
    input: InceptionInput,
    reference: Option<ucgm::metric::GaussianStats>,
    features: Option<PathBuf>,
    state: ucgm::app::eval::EvalState,
    comm: Box<dyn ucgm::dist::Communicator>,
    model: AnyModel,
    vae: ucgm::engine::AnyVae,
}

impl EvalJob<'_> {
    fn run<B: ucgm::Backend>(mut self, backend: B) -> Result<()> {
        use ucgm::app::eval::{merge_ranks, report, run_eval, EvalPipeline, EvalRun};
        let net = FidInception::load(&self.args.inception, backend, self.input)?;
        let root = self.comm.is_root();
        let bar = ProgressBar::new(self.state.range.len() as u64);
        if !root {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar.set_style(ProgressStyle::with_template("eval {bar:30} {pos}/{len} images [{elapsed_precise} < {eta_precise}] {per_sec}").expect("template"));
        let mut pipe = EvalPipeline {
            model: &mut self.model,
            vae: &mut self.vae,
            norm: &self.norm,
            net: &net,
            sampler: &self.cfg,
            seed: self.args.seed,
        };
        let run = EvalRun {
            batch: self.args.batch,
            features_file: self.features.as_deref(),
            save_every: self.args.save_every,
            max_batches: self.args.max_batches,
        };
        let finished = run_eval(&mut pipe, &mut self.state, &run, &mut |done, _| bar.set_position(done as u64))?;
        bar.finish_and_clear();
        // Every rank stops, or every rank merges.
        let mut unfinished = [f64::from(u8::from(!finished))];
        self.comm.all_reduce_sum_f64(&mut unfinished)?;
        if unfinished[0] > 0.0 {
            if root {
                println!(
                    "stopped at image {} of {}; the state is in {}: rerun the same command to continue",
                    self.state.next,
                    self.args.num,
                    self.args
                        .features_file
                        .as_ref()
                        .map_or("nowhere (no --features-file)".into(), |p| p.display().to_string())
                );
            }
            return Ok(());
        }
        let Some((stats, logits)) = merge_ranks(self.comm.as_mut(), self.state, self.args.num)? else {
            return Ok(());
        };
        let r = report(&stats, &logits, self.reference.as_ref())?;
        if let Some(p) = &self.args.save_stats {
            write_stats_npz(p, &r.stats)?;
            eprintln!("wrote the samples' statistics to {}", p.display());
        }
        println!("images {}", r.images);
        if let Some(fid) = r.fid {
            println!("FID {fid}");
        }
        println!("IS {} ± {}", r.inception_score.mean, r.inception_score.std);
        Ok(())
    }
}

/// A progress bar over `len` sampler steps when stderr is a terminal.
fn sampling_bar(len: usize) -> Option<ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(ProgressStyle::with_template("sampling {bar:30} {pos}/{len} steps [{elapsed_precise} < {eta_precise}]").expect("template"));
    Some(b)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ucgm: error: {e}");
            ExitCode::from(if matches!(e, Error::Cancelled) { 130 } else { 1 })
        }
    }
}
