//! CUDA benchmarks (feature `cuda`): `cuda_forward` of SiT-S/2, B/2 and XL/2 (standard
//! DiT shapes) at batch 256 on a 4×32×32 latent with 1000 classes, and `cuda_train_step`
//! (forward + backward + AdamW) of XL/2 at batch 64, in every precision of
//! [`PRECISIONS`]: float32 with TF32 off, TF32 (`CudaOptions { tf32: true }`), and bf16
//! mixed precision (`CudaOptions { bf16: true }`: bf16 products with f32 accumulation, f32
//! master weights). Adding a precision is one variant of [`Precision`] and its
//! `cuda_options`.
//!
//! Timing: every case gets a fresh backend (the compiled kernels are cached per process)
//! and a warm-up run first (cuBLAS heuristics, memory-pool growth); each timed run sits
//! between two device synchronizes, and the median is reported. Inputs, the output
//! gradient and the optimizer moments stay on the device, so no host transfer of images
//! is timed (the per-call timestep features and labels are, as a sampler would pay them).
//!
//! FLOPs are counted from the model configuration ([`ModelConfig::forward_flops`]): 2 per
//! multiply-add of every matrix product — per block qkv, proj and the two MLP Linears
//! (2·T·12·D² for SiT), attention scores and values (4·T²·D), the per-image adaLN Linear
//! (12·D²) — plus the embeddings and the final layer. That is per image: a DiT-XL/2
//! forward is 237.2 GFLOP per image (the DiT paper's 118.6 "Gflops" are multiply-adds),
//! 60.7 TFLOP per batch of 256; the unit test `forward_flops_match_the_published_dit_numbers`
//! pins it. A training step counts 3× the forward (the backward runs two products per
//! forward product); the AdamW update's elementwise work is not counted.
//!
//! Output: `cargo bench --features cuda --bench cuda` runs criterion (throughput in
//! images) and then the summary table; `-- --summary-only` prints only the table (what
//! `scripts/gpu_run.sh` runs on the GPU machine); `-- --plan` prints the cases with their
//! FLOPs, memory estimates and PyTorch numbers without touching a device.
//! `UCGM_BENCH_QUICK=1` shortens everything (median of 3 runs after one warm-up).
//! `UCGM_BENCH_SMOKE=1` runs every case on the tiny reference SiT (8×8×4 latent, width
//! 64, depth 2) at batch 2 instead of the DiT size: a check of the benchmark's own
//! mechanics (backend per precision, device-resident inputs, train step, table), e.g. on
//! the host CUDA emulator in CI, before a GPU's minutes are spent on it. Its numbers are
//! not measurements of a DiT, and the table says so.
//!
//! The table compares against PyTorch 2.11 on the same H200 (`../shared/device.md`):
//! eager (SDPA attention) at the row's precision, eager bf16, and `torch.compile` bf16
//! where given; speed-up = PyTorch ms / ucgm ms, so > 1 means ucgm is faster.
//!
//! After the table come three rows of other networks: `vae_decode_b64_256` (the SD-VAE
//! decoder), `edm2_xl_forward_b1` (the EDM2-XL UNet forward at batch 1, f32) and
//! `inception_fid_b250_256` (FID features of 250 images, f32).
//!
//! Without a usable CUDA device the bench prints one line, "no CUDA device: <reason>",
//! and exits 0 — or exits 1 when `UCGM_REQUIRE_CUDA=1`. It also exits 1 when a case
//! fails on the device (a CUDA error, out of memory).
//!
//! Memory: inference keeps one block's activations plus attention probabilities chunked
//! to at most [`ATTENTION_SCRATCH_BYTES`] (XL/2 at batch 256: ≈ 8 GiB in all); a training
//! step keeps every block's activations and the [B, H, T, T] probabilities (XL/2 at batch
//! 64: ≈ 58 GiB with parameters, gradients and both moments) — both fit the H200's
//! 139 GiB. A case whose estimate does not fit the device is skipped with a line saying so.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use ucgm::backend::cuda::{CudaBackend, CudaBuf, CudaOptions, DeviceInfo, ATTENTION_SCRATCH_BYTES};
use ucgm::backend::{Backend, OptimHp};
use ucgm::model::acts::attn_dims;
use ucgm::{Arch, Model, ModelConfig, ParamLayout, Rng};

/// Latent side, channels and classes of a 256 px ImageNet DiT (device.md).
const LATENT_SIDE: usize = 32;
const LATENT_CHANNELS: usize = 4;
const NUM_CLASSES: usize = 1000;

const FORWARD_BATCH: usize = 256;
const TRAIN_BATCH: usize = 64;
/// Model sizes benchmarked (SiT = the standard DiT block), in table order.
const FORWARD_MODELS: [&str; 3] = ["S/2", "B/2", "XL/2"];
const TRAIN_MODELS: [&str; 1] = ["XL/2"];
/// The pre-trained families UCGM-S is applied to (forward only), each on its released
/// latent: (name, latent side, latent channels).
const ZOO_MODELS: [(&str, usize, usize); 2] = [("LightningDiT-XL/1", 16, 32), ("DDT-XL/2", 32, 4)];

/// A training step's counted FLOPs per forward FLOP (forward + a backward of twice the work).
const TRAIN_STEP_FLOPS_PER_FORWARD: f64 = 3.0;

/// A case is skipped when its estimated memory exceeds this share of the device's.
const DEVICE_MEMORY_HEADROOM: f64 = 0.95;

const GIB: f64 = (1u64 << 30) as f64;

/// Numeric precision of a case, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precision {
    /// float32 products with TF32 off.
    F32,
    /// float32 storage, cuBLAS TF32 tensor-core products.
    Tf32,
    /// bf16 weights and activations, float32 accumulation (training: float32 master
    /// weights and optimizer state). Not in the backend yet.
    Bf16,
}

const PRECISIONS: [Precision; 3] = [Precision::F32, Precision::Tf32, Precision::Bf16];

impl Precision {
    fn label(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The backend options that run this precision, or why it cannot run.
    fn cuda_options(self) -> Result<CudaOptions, &'static str> {
        match self {
            Precision::F32 => Ok(CudaOptions::default()),
            Precision::Tf32 => Ok(CudaOptions {
                tf32: true,
                ..CudaOptions::default()
            }),
            Precision::Bf16 => Ok(CudaOptions {
                bf16: true,
                ..CudaOptions::default()
            }),
        }
    }
}

/// What a case times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// Inference forward.
    Forward,
    /// Zero gradients, training forward, backward, AdamW update.
    TrainStep,
}

impl Workload {
    /// The criterion group name (`<backend>_<what>`, design.md §7).
    fn bench_name(self) -> &'static str {
        match self {
            Workload::Forward => "cuda_forward",
            Workload::TrainStep => "cuda_train_step",
        }
    }

    fn flops_per_forward(self) -> f64 {
        match self {
            Workload::Forward => 1.0,
            Workload::TrainStep => TRAIN_STEP_FLOPS_PER_FORWARD,
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
struct Case {
    workload: Workload,
    /// Size name as in device.md: "S/2", "B/2", "L/2", "XL/2".
    model: &'static str,
    batch: usize,
    precision: Precision,
}

impl Case {
    fn config(&self) -> ModelConfig {
        if smoke() {
            return ModelConfig::reference_tiny(Arch::Sit);
        }
        if let Some(&(name, side, channels)) = ZOO_MODELS.iter().find(|z| z.0 == self.model) {
            return ModelConfig::from_name(name, side, channels, NUM_CLASSES).expect("named zoo size");
        }
        ModelConfig::from_name(&format!("SiT-{}", self.model), LATENT_SIDE, LATENT_CHANNELS, NUM_CLASSES).expect("named DiT size")
    }

    /// Counted FLOPs of one call (the whole batch).
    fn flops(&self) -> f64 {
        self.config().forward_flops() * self.batch as f64 * self.workload.flops_per_forward()
    }

    /// Criterion id: `XL_2-tf32/batch256`.
    fn bench_id(&self) -> BenchmarkId {
        BenchmarkId::new(self.function_name(), format!("batch{}", self.batch))
    }

    fn function_name(&self) -> String {
        format!("{}-{}", self.model.replace('/', "_"), self.precision.label())
    }

    /// `cuda_forward/XL_2-tf32/batch256`, as criterion prints it.
    fn title(&self) -> String {
        format!("{}/{}/batch{}", self.workload.bench_name(), self.function_name(), self.batch)
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (workload, models, batch) in [
        (Workload::Forward, &FORWARD_MODELS[..], FORWARD_BATCH),
        (Workload::TrainStep, &TRAIN_MODELS[..], TRAIN_BATCH),
    ] {
        for &model in models {
            for precision in PRECISIONS {
                v.push(Case {
                    workload,
                    model,
                    batch: if smoke() { SMOKE_BATCH } else { batch },
                    precision,
                });
            }
        }
    }
    for (model, _, _) in ZOO_MODELS {
        for precision in PRECISIONS {
            v.push(Case {
                workload: Workload::Forward,
                model,
                batch: if smoke() { SMOKE_BATCH } else { FORWARD_BATCH },
                precision,
            });
        }
    }
    v
}

// ------------------------------------------------------------------ PyTorch numbers

/// PyTorch 2.11 eager (SDPA attention) on the H200, standard DiT at 256 px, from
/// `../shared/device.md`: forward at batch 256 in fp32, tf32 and bf16 (ms), and a bf16
/// training step at the batch given (ms).
struct PytorchEager {
    model: &'static str,
    forward_f32_ms: f64,
    forward_tf32_ms: f64,
    forward_bf16_ms: f64,
    train_bf16_batch: usize,
    train_bf16_ms: f64,
}

const PYTORCH_EAGER: [PytorchEager; 4] = [
    PytorchEager {
        model: "S/2",
        forward_f32_ms: 89.5,
        forward_tf32_ms: 40.2,
        forward_bf16_ms: 28.9,
        train_bf16_batch: 128,
        train_bf16_ms: 44.3,
    },
    PytorchEager {
        model: "B/2",
        forward_f32_ms: 283.0,
        forward_tf32_ms: 91.5,
        forward_bf16_ms: 58.2,
        train_bf16_batch: 128,
        train_bf16_ms: 84.0,
    },
    PytorchEager {
        model: "L/2",
        forward_f32_ms: 952.7,
        forward_tf32_ms: 265.4,
        forward_bf16_ms: 165.8,
        train_bf16_batch: 64,
        train_bf16_ms: 125.5,
    },
    PytorchEager {
        model: "XL/2",
        forward_f32_ms: 1376.0,
        forward_tf32_ms: 377.2,
        forward_bf16_ms: 228.3,
        train_bf16_batch: 64,
        train_bf16_ms: 175.1,
    },
];

/// `torch.compile` (default mode, bf16 autocast) on the same card, device.md: (workload,
/// model, batch, ms). Forwards are at batch 256.
const PYTORCH_COMPILED_BF16: [(Workload, &str, usize, f64); 4] = [
    (Workload::Forward, "S/2", 256, 11.1),
    (Workload::TrainStep, "S/2", 128, 25.2),
    (Workload::Forward, "XL/2", 256, 130.4),
    (Workload::TrainStep, "XL/2", 64, 119.3),
];

/// PyTorch eager ms for the case's workload, model and batch in `precision`, if measured.
fn pytorch_eager_ms(case: &Case, precision: Precision) -> Option<f64> {
    let row = PYTORCH_EAGER.iter().find(|r| r.model == case.model)?;
    match case.workload {
        Workload::Forward if case.batch == 256 => Some(match precision {
            Precision::F32 => row.forward_f32_ms,
            Precision::Tf32 => row.forward_tf32_ms,
            Precision::Bf16 => row.forward_bf16_ms,
        }),
        Workload::TrainStep if precision == Precision::Bf16 && case.batch == row.train_bf16_batch => Some(row.train_bf16_ms),
        _ => None,
    }
}

/// `torch.compile` bf16 ms for the case's workload, model and batch, if measured.
fn pytorch_compiled_bf16_ms(case: &Case) -> Option<f64> {
    PYTORCH_COMPILED_BF16
        .iter()
        .find(|(w, m, b, _)| *w == case.workload && *m == case.model && *b == case.batch)
        .map(|r| r.3)
}

// ------------------------------------------------------------------ memory estimate

/// Device bytes a case allocates: the buffers of `ucgm::model::acts` (activations and, for
/// training, the backward scratch), the parameter-sized buffers (parameters; training
/// adds gradients and the two AdamW moments), the bench's own inputs and the attention
/// temporaries (at most [`ATTENTION_SCRATCH_BYTES`]). Kept in step with `acts.rs` by
/// hand, so an estimate; cuBLAS workspaces and pool rounding come on top.
fn estimated_device_bytes(case: &Case) -> f64 {
    let cfg = case.config();
    let train = case.workload == Workload::TrainStep;
    let (b, d, m) = (case.batch, cfg.hidden, cfg.mlp_hidden());
    let bt = b * cfg.tokens();
    let m_in = if cfg.arch.uses_swiglu() { 2 * m } else { m };
    let dims = attn_dims(&cfg, b);
    // ada (DDT: per token), n1, stats1, qkv (DDT: + qk-normed copy), cache, att, proj, n2,
    // stats2, m1, m_act, m2.
    let ddt = matches!(cfg.arch, Arch::Ddt { .. });
    let block = if ddt { bt * 6 * d + bt * 3 * d } else { b * 6 * d }
        + bt * d * 5
        + bt * 2 * 2
        + bt * 3 * d
        + bt * m_in
        + bt * m
        + if train { dims.cache_len() } else { 0 };
    let blocks = if train { cfg.depth } else { 1 };
    let residuals = if train { 2 * cfg.depth + 1 } else { 1 };
    let images = b * cfg.image_len();
    // img, out, patches, tok_out, nf, stats_f and the [B, D]-sized conditioning buffers.
    let io = 2 * images + 2 * bt * cfg.patch_dim() + bt * d + bt * 2 + b * (256 + 2 * d + 5 * d);
    let backward_scratch = if train {
        bt * d + 2 * bt * (3 * d).max(2 * m).max(d) + b * 8 * d + 2 * bt * cfg.patch_dim() + 2 * images
    } else {
        0
    };
    let param_buffers = ParamLayout::for_config(&cfg).total() * if train { 4 } else { 1 };
    let bench_inputs = images * if train { 2 } else { 1 };
    let floats = block * blocks + residuals * bt * d + io + backward_scratch + param_buffers + bench_inputs;
    let probabilities_bytes = b * cfg.heads * cfg.tokens() * cfg.tokens() * 4;
    (floats * 4 + probabilities_bytes.min(ATTENTION_SCRATCH_BYTES)) as f64
}

// ------------------------------------------------------------------ running a case

fn quick() -> bool {
    std::env::var("UCGM_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Batch of every case in smoke mode.
const SMOKE_BATCH: usize = 2;

/// Smoke mode (`UCGM_BENCH_SMOKE=1`): tiny model, batch 2 — see the module docs.
fn smoke() -> bool {
    std::env::var("UCGM_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn require_cuda() -> bool {
    std::env::var("UCGM_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// Small random parameters (what trained weights look like to the kernels), the same for
/// every case of a model: a block of normals tiled to the full length, which is quick even
/// for XL/2's 675 M parameters.
fn bench_params(len: usize) -> Vec<f32> {
    let block: Vec<f32> = Rng::new(1).normal_f32(len.min(1 << 20)).into_iter().map(|v| v * 0.02).collect();
    block.iter().copied().cycle().take(len).collect()
}

/// A model on a fresh backend with its inputs on the device.
struct CaseRunner {
    backend: CudaBackend,
    model: Model<CudaBackend>,
    /// Input images [B, C, H, W].
    x: CudaBuf,
    /// ∂L/∂F for the backward [B, C, H, W] (training only; else empty).
    dout: CudaBuf,
    /// AdamW moments [N] (training only; else empty).
    adam_m: CudaBuf,
    adam_v: CudaBuf,
    t: Vec<f32>,
    labels: Vec<usize>,
    workload: Workload,
    adam_steps: u64,
}

impl CaseRunner {
    fn new(case: &Case, options: CudaOptions, ordinal: usize, params: &[f32]) -> ucgm::Result<Self> {
        let cfg = case.config();
        let backend = CudaBackend::with_options(ordinal, options)?;
        let train = case.workload == Workload::TrainStep;
        let images = case.batch * cfg.image_len();
        let mut rng = Rng::new(2);
        let x = backend.upload(&rng.normal_f32(images))?;
        let dout = if train {
            backend.upload(&rng.normal_f32(images).into_iter().map(|v| v * 1e-3).collect::<Vec<_>>())?
        } else {
            backend.zeros(0)?
        };
        let n_adam = if train { params.len() } else { 0 };
        let (adam_m, adam_v) = (backend.zeros(n_adam)?, backend.zeros(n_adam)?);
        let model = Model::from_params(cfg.clone(), backend.clone(), params)?;
        Ok(CaseRunner {
            model,
            x,
            dout,
            adam_m,
            adam_v,
            t: (0..case.batch).map(|i| (i as f32 + 0.5) / case.batch as f32).collect(),
            labels: (0..case.batch).map(|i| i % cfg.num_classes).collect(),
            workload: case.workload,
            adam_steps: 0,
            backend,
        })
    }

    /// Queues one call of the workload (returns before the device finishes).
    fn run_once(&mut self) -> ucgm::Result<()> {
        match self.workload {
            Workload::Forward => {
                self.model.forward_device(&self.x, &self.t, &self.labels, false)?;
            }
            Workload::TrainStep => {
                self.model.zero_grads()?;
                self.model.forward_device(&self.x, &self.t, &self.labels, true)?;
                self.model.backward_device(&self.dout, false)?;
                self.adam_steps += 1;
                let hp = OptimHp {
                    lr: 1e-4,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                };
                let n = self.model.layout().total();
                let be = &self.backend;
                let (p, g) = self.model.params_and_grads_mut()?;
                be.adamw_step(
                    be.dst(p, 0..n),
                    be.src(g, 0..n),
                    be.dst(&mut self.adam_m, 0..n),
                    be.dst(&mut self.adam_v, 0..n),
                    &hp,
                    self.adam_steps,
                );
            }
        }
        Ok(())
    }

    /// Wall time of `calls` back-to-back calls, synchronizing before and after.
    fn time_calls(&mut self, calls: u64) -> ucgm::Result<Duration> {
        self.backend.synchronize()?;
        let start = Instant::now();
        for _ in 0..calls {
            self.run_once()?;
        }
        self.backend.synchronize()?;
        Ok(start.elapsed())
    }

    /// Device memory in use now (GiB): with the backend's memory pool keeping freed
    /// blocks, about the high-water mark of the cases run so far.
    fn device_memory_in_use_gib(&self) -> Option<f64> {
        // The backend binds its context to this thread on every op, so the query sees it.
        cudarc::driver::result::mem_get_info().ok().map(|(free, total)| (total - free) as f64 / GIB)
    }
}

/// Why a case does not run, if it does not.
fn skip_reason(case: &Case, device: &DeviceInfo) -> Option<String> {
    if let Err(why) = case.precision.cuda_options() {
        return Some(format!("{}: {why}", case.precision.label()));
    }
    let need = estimated_device_bytes(case);
    let have = device.total_mem_bytes as f64;
    if need > DEVICE_MEMORY_HEADROOM * have {
        return Some(format!(
            "skipped: needs ≈ {:.1} GiB of device memory, the device has {:.1} GiB",
            need / GIB,
            have / GIB
        ));
    }
    None
}

/// Caches the host parameters per model size (XL/2's take 2.7 GB and a second to make).
#[derive(Default)]
struct ParamCache(HashMap<&'static str, Vec<f32>>);

impl ParamCache {
    fn get(&mut self, case: &Case) -> &[f32] {
        self.0
            .entry(case.model)
            .or_insert_with(|| bench_params(ParamLayout::for_config(&case.config()).total()))
    }
}

/// Creates the case's runner and runs the warm-up calls.
fn prepare(case: &Case, device: &DeviceInfo, params: &mut ParamCache, warmups: usize) -> ucgm::Result<CaseRunner> {
    let options = case.precision.cuda_options().expect("runnable precision");
    let mut runner = CaseRunner::new(case, options, device.ordinal, params.get(case))?;
    for _ in 0..warmups.max(1) {
        runner.time_calls(1)?;
    }
    Ok(runner)
}

// ------------------------------------------------------------------ the table

/// Median and spread of the timed runs.
struct Measured {
    median_s: f64,
    min_s: f64,
    max_s: f64,
    device_gib: Option<f64>,
}

fn measure(case: &Case, device: &DeviceInfo, params: &mut ParamCache, warmups: usize, runs: usize) -> ucgm::Result<Measured> {
    let mut runner = prepare(case, device, params, warmups)?;
    let mut secs = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        secs.push(runner.time_calls(1)?.as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    Ok(Measured {
        median_s: secs[secs.len() / 2],
        min_s: secs[0],
        max_s: secs[secs.len() - 1],
        device_gib: runner.device_memory_in_use_gib(),
    })
}

fn speed_up_cell(torch_ms: Option<f64>, ucgm_ms: Option<f64>) -> String {
    match (torch_ms, ucgm_ms) {
        (Some(t), Some(u)) => format!("{t:>8.1} {:>6.2}×", t / u),
        (Some(t), None) => format!("{t:>8.1} {:>7}", "–"),
        _ => format!("{:>8} {:>7}", "–", "–"),
    }
}

fn print_header(device: Option<&DeviceInfo>, warmups: usize, runs: usize) {
    match device {
        Some(d) => {
            println!("ucgm CUDA benchmarks on {d}");
            if smoke() {
                println!(
                    "SMOKE MODE (UCGM_BENCH_SMOKE=1): every row runs the tiny reference SiT at batch {SMOKE_BATCH}, not the DiT size it names; the numbers check the mechanics and measure nothing"
                );
            }
            println!(
                "{} mode: median of {runs} runs after {warmups} warm-up(s), each between device synchronizes; a fresh backend per case",
                if quick() { "quick" } else { "full" }
            );
        }
        None => println!("ucgm CUDA benchmark plan (no device used)"),
    }
    println!(
        "FLOPs counted from the model config, 2 per multiply-add, train step = {TRAIN_STEP_FLOPS_PER_FORWARD}× forward (XL/2 forward: {:.1} GFLOP per image)",
        ModelConfig::from_name("SiT-XL/2", LATENT_SIDE, LATENT_CHANNELS, NUM_CLASSES)
            .expect("XL/2")
            .forward_flops()
            / 1e9
    );
    println!(
        "PyTorch 2.11 on the same H200 (device.md): eager at the row's precision, eager bf16, torch.compile bf16; ×: PyTorch ms / ucgm ms (> 1: ucgm faster)"
    );
    println!("est GiB: estimated device memory of the case; dev GiB: device memory in use after it, CUDA context included (each case runs in a process of its own: its own high-water mark)");
    println!();
    println!(
        "{:<16} {:<5} {:<5} {:>5} {:>9} {:>13} {:>8} {:>8} {:>7} {:>7} | {:>8} {:>7} | {:>8} {:>7} | {:>8} {:>7}",
        "bench", "model", "prec", "batch", "ms", "(min–max)", "img/s", "TFLOP/s", "est GiB", "dev GiB", "eager", "×", "eag bf16", "×", "cmp bf16", "×"
    );
}

fn print_row(case: &Case, result: &Result<Measured, String>) {
    let prefix = format!(
        "{:<16} {:<5} {:<5} {:>5}",
        case.workload.bench_name(),
        case.model,
        case.precision.label(),
        case.batch
    );
    let eager = pytorch_eager_ms(case, case.precision);
    let eager_bf16 = pytorch_eager_ms(case, Precision::Bf16);
    let compiled = pytorch_compiled_bf16_ms(case);
    match result {
        Ok(m) => {
            let ms = m.median_s * 1e3;
            println!(
                "{prefix} {ms:>9.2} {:>13} {:>8.0} {:>8.1} {:>7.1} {:>7} | {} | {} | {}",
                format!("({:.1}–{:.1})", m.min_s * 1e3, m.max_s * 1e3),
                case.batch as f64 / m.median_s,
                case.flops() / m.median_s / 1e12,
                estimated_device_bytes(case) / GIB,
                m.device_gib.map_or("?".into(), |g| format!("{g:.1}")),
                speed_up_cell(eager, Some(ms)),
                speed_up_cell(eager_bf16, Some(ms)),
                speed_up_cell(compiled, Some(ms)),
            );
        }
        Err(why) => {
            let eager_bf16 = if case.precision == Precision::Bf16 { None } else { eager_bf16 };
            let eager_name = format!("eager {}", case.precision.label());
            let targets: Vec<String> = [(eager_name.as_str(), eager), ("eager bf16", eager_bf16), ("torch.compile bf16", compiled)]
                .iter()
                .filter_map(|(name, ms)| ms.map(|ms| format!("{name} {ms} ms")))
                .collect();
            let targets = if targets.is_empty() {
                String::new()
            } else {
                format!(" (PyTorch: {})", targets.join(", "))
            };
            println!("{prefix}   {why}{targets}");
        }
    }
}

/// Prints the case list with FLOPs, memory estimates and PyTorch numbers (no device).
fn plan() {
    print_header(None, 0, 0);
    for case in cases() {
        let why = match case.precision.cuda_options() {
            Ok(_) => format!(
                "plan: {:.1} TFLOP per call, ≈ {:.1} GiB of device memory",
                case.flops() / 1e12,
                estimated_device_bytes(&case) / GIB
            ),
            Err(why) => format!("{}: {why}", case.precision.label()),
        };
        print_row(&case, &Err(why));
    }
}

/// The row text of a case that failed on the device; an allocation failure says so
/// with the case's memory estimate.
fn failure_note(case: &Case, e: &ucgm::Error) -> String {
    let msg = e.to_string();
    if msg.contains("OUT_OF_MEMORY") || msg.to_ascii_lowercase().contains("out of memory") {
        format!(
            "FAILED: out of device memory (estimated ≈ {:.1} GiB for this case): {msg}",
            estimated_device_bytes(case) / GIB
        )
    } else {
        format!("FAILED: {msg}")
    }
}

/// Measures case `index` of [`cases`] and prints its row. Returns whether it ran (or
/// was skipped for a stated reason).
fn summary_case(index: usize, device: &DeviceInfo, params: &mut ParamCache) -> bool {
    let (warmups, runs) = if quick() { (1, 3) } else { (2, 10) };
    let Some(case) = cases().into_iter().nth(index) else {
        println!("no case {index}");
        return false;
    };
    let mut ran = true;
    let result = match skip_reason(&case, device) {
        Some(why) => Err(why),
        None => measure(&case, device, params, warmups, runs).map_err(|e| {
            ran = false;
            failure_note(&case, &e)
        }),
    };
    print_row(&case, &result);
    ran
}

/// Runs `--child ARG` of this benchmark in a process of its own (so its device memory is
/// its own: a fresh context and memory pool) and passes its output through. Returns
/// whether it exited 0; None where no child could be started (then the caller measures
/// in this process).
fn in_child(arg: &str) -> Option<bool> {
    if std::env::var_os("UCGM_BENCH_IN_PROCESS").is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe).args(["--child", arg]).output().ok()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.trim().is_empty() {
        println!("  (child {arg} exited {:?}: {})", out.status.code(), err.trim().lines().last().unwrap_or(""));
    }
    Some(out.status.success())
}

/// Runs every case and prints its row as soon as it is measured, each case in a child
/// process (`UCGM_BENCH_IN_PROCESS=1`: all in this one). Returns whether every runnable
/// case ran.
fn summary(device: &DeviceInfo, params: &mut ParamCache) -> bool {
    let (warmups, runs) = if quick() { (1, 3) } else { (2, 10) };
    print_header(Some(device), warmups, runs);
    let mut all_ran = true;
    for index in 0..cases().len() {
        all_ran &= in_child(&format!("case:{index}")).unwrap_or_else(|| summary_case(index, device, params));
    }
    all_ran
}

/// The criterion groups `cuda_forward` and `cuda_train_step` (throughput in images).
fn criterion_benches(device: &DeviceInfo, params: &mut ParamCache) -> bool {
    let mut c = Criterion::default().configure_from_args();
    let mut all_ran = true;
    for workload in [Workload::Forward, Workload::TrainStep] {
        let mut g = c.benchmark_group(workload.bench_name());
        // Calls take 10 ms to seconds: flat sampling keeps the count of calls small.
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
        if quick() {
            g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        } else {
            g.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
        }
        for case in cases().into_iter().filter(|c| c.workload == workload) {
            if let Some(why) = skip_reason(&case, device) {
                println!("{}: {why}", case.title());
                continue;
            }
            let mut runner = match prepare(&case, device, params, 1) {
                Ok(r) => r,
                Err(e) => {
                    println!("{}: {}", case.title(), failure_note(&case, &e));
                    all_ran = false;
                    continue;
                }
            };
            g.throughput(Throughput::Elements(case.batch as u64));
            g.bench_function(case.bench_id(), |b| {
                b.iter_custom(|calls| runner.time_calls(calls).unwrap_or_else(|e| panic!("{}: {e}", case.title())))
            });
        }
        g.finish();
    }
    c.final_summary();
    all_ran
}

/// Device memory in use now, CUDA context included (GiB, one decimal), "?" where the
/// driver does not say.
fn device_gib_now() -> String {
    cudarc::driver::result::mem_get_info().map_or("?".into(), |(free, total)| format!("{:.1}", (total - free) as f64 / GIB))
}

/// Median milliseconds of `runs` calls of `call` after `warmups` untimed ones (quick:
/// 1 and 3; smoke: 0 and 1), with the device memory in use after them.
fn median_ms_and_memory(mut call: impl FnMut() -> ucgm::Result<()>, slow: (usize, usize)) -> ucgm::Result<(f64, String)> {
    // Smoke mode checks mechanics (on the host emulator in CI): one untimed-warm-up-free run.
    let (warmups, runs) = if smoke() {
        (0, 1)
    } else if quick() {
        (1, 3)
    } else {
        slow
    };
    for _ in 0..warmups {
        call()?;
    }
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            call().map(|_| t0.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<ucgm::Result<_>>()?;
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((ms[ms.len() / 2], device_gib_now()))
}

/// Prints a row of another network (batch `batch`): its median, throughput and device
/// memory, or why it failed. Returns whether it ran.
fn print_extra_row(name: &str, batch: usize, result: ucgm::Result<(f64, String)>) -> bool {
    match result {
        Ok((ms, gib)) => {
            println!("{name:<40} {ms:>10.1} ms/batch {:>10.1} images/s {gib:>6} dev GiB", batch as f64 / ms * 1e3);
            true
        }
        Err(e) => {
            println!("{name:<40} failed: {e}");
            false
        }
    }
}

/// `vae_decode_b64_256`: the SD-VAE (random weights) decoding 64 latents 4×32×32 to
/// 256×256 images in f32, latents uploaded and images read back inside the timing (what
/// a sampler pays). In smoke mode a 2-level VAE at batch 2. Returns whether it ran.
fn vae_row() -> bool {
    use ucgm::model::vae::{Vae, VaeConfig};
    let (cfg, batch, side) = if smoke() {
        let c = VaeConfig {
            block_channels: vec![32, 32],
            ..VaeConfig::sd_vae()
        };
        (c, 2, 8)
    } else {
        (VaeConfig::sd_vae(), 64, LATENT_SIDE)
    };
    let run = || -> ucgm::Result<(f64, String)> {
        let be = CudaBackend::new(0)?;
        let mut vae = Vae::random(cfg.clone(), be.clone(), 0)?;
        vae.set_activation_budget(4 << 30); // 16 GiB of activations: the whole batch at once
        let z = Rng::new(5).normal_f32(batch * 4 * side * side);
        median_ms_and_memory(|| vae.decode(&z, batch, side, side).map(drop), (2, 7))
    };
    let name = if smoke() {
        "vae_decode_b2_64 (smoke: 2-level VAE)"
    } else {
        "vae_decode_b64_256 (SD-VAE f32)"
    };
    print_extra_row(name, batch, run())
}

/// `inception_fid_b250`: the FID Inception (random weights, the real geometry) on 250
/// images of 256×256 in [0, 1] (pytorch-fid preprocessing: bilinear resize to 299×299),
/// pool3 features and logits read back inside the timing, f32. In smoke mode 2 images of
/// 32×32. Returns whether it ran.
fn inception_row() -> bool {
    use ucgm::model::inception::{FidInception, InceptionInput};
    let (batch, side) = if smoke() { (1, 32) } else { (250, 256) };
    let run = || -> ucgm::Result<(f64, String)> {
        let net = FidInception::random(CudaBackend::new(0)?, InceptionInput::PytorchFid, 1)?;
        let images: Vec<f32> = Rng::new(9)
            .normal_f32(batch * 3 * side * side)
            .iter()
            .map(|v| (0.5 + 0.25 * v).clamp(0.0, 1.0))
            .collect();
        median_ms_and_memory(|| net.forward(&images, batch, side, side).map(drop), (2, 7))
    };
    let name = if smoke() {
        "inception_fid_b1_32 (smoke)"
    } else {
        "inception_fid_b250_256 (f32)"
    };
    print_extra_row(name, batch, run())
}

/// `edm2_xl_forward_b1`: the EDM2-XL UNet (random weights built in memory, gains 1) on
/// the 512 px SD-VAE latent 4×64×64, one forward at batch 1 in f32, input uploaded and
/// output read back inside the timing (what a sampler pays per step). In smoke mode the
/// tiny reference UNet (4×8×8, model channels 32) at batch 2. Returns whether it ran.
fn edm2_row() -> bool {
    use ucgm::model::edm2::{Edm2, Edm2Config};
    let (cfg, batch) = if smoke() {
        let c = Edm2Config {
            input_size: 8,
            in_channels: 4,
            num_classes: 10,
            model_channels: 32,
            channel_mult: vec![1, 2],
            num_blocks: 1,
            attn_resolutions: vec![4],
        };
        (c, 2)
    } else {
        (Edm2Config::from_name("EDM2-XL", 64, 4, 1000).expect("EDM2-XL"), 1)
    };
    let run = || -> ucgm::Result<(f64, String)> {
        let mut rng = Rng::new(3);
        let tensors = cfg
            .tensors()
            .into_iter()
            .map(|(n, shape)| {
                let len: usize = shape.iter().product();
                let v = if shape.is_empty() { vec![1.0] } else { rng.normal_f32(len) };
                (n, v)
            })
            .collect();
        let mut m = Edm2::from_tensors(cfg.clone(), CudaBackend::new(0)?, &tensors)?;
        drop(tensors);
        let x = rng.normal_f32(batch * cfg.image_len());
        let (t, labels) = (vec![0.5f32; batch], vec![1usize; batch]);
        let mut out = vec![0f32; x.len()];
        median_ms_and_memory(|| m.forward(&x, &t, &labels, &mut out).map(drop), (2, 9))
    };
    let name = if smoke() {
        "edm2_forward_b2_8 (smoke: tiny UNet)"
    } else {
        "edm2_xl_forward_b1 (EDM2-XL f32)"
    };
    print_extra_row(name, batch, run())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--plan") {
        plan();
        return;
    }
    let device = match CudaBackend::probe() {
        Ok(d) => d,
        Err(why) => {
            println!("no CUDA device: {why}");
            if require_cuda() {
                eprintln!("UCGM_REQUIRE_CUDA=1: failing");
                std::process::exit(1);
            }
            return;
        }
    };
    let mut params = ParamCache::default();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let ran = match args.get(i + 1).map(String::as_str) {
            Some("vae") => vae_row(),
            Some("edm2") => edm2_row(),
            Some("inception") => inception_row(),
            Some(c) if c.starts_with("case:") => c[5..].parse().is_ok_and(|n| summary_case(n, &device, &mut params)),
            other => {
                println!("unknown child {other:?}");
                false
            }
        };
        std::process::exit(if ran { 0 } else { 1 });
    }
    let mut all_ran = true;
    if !args.iter().any(|a| a == "--summary-only") {
        all_ran &= criterion_benches(&device, &mut params);
        println!();
    }
    all_ran &= summary(&device, &mut params);
    all_ran &= in_child("vae").unwrap_or_else(vae_row);
    all_ran &= in_child("edm2").unwrap_or_else(edm2_row);
    all_ran &= in_child("inception").unwrap_or_else(inception_row);
    if !all_ran {
        std::process::exit(1);
    }
}
