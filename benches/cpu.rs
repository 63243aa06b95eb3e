//! CPU benchmarks: `cpu_forward` and `cpu_train_step` (forward + backward + AdamW) for
//! the tiny network (depth 4, D 128, 4 heads, patch 2, 4×16×16 → 64 tokens) at batch 1
//! and 32, and SiT-S/2 on a 4×32×32 latent at batch 1 and 8. Criterion reports images/s
//! (throughput in "elements" = images); a summary table at the end prints ms per image
//! and GFLOP/s from counted FLOPs (a DiT-S/2 forward is 12.1 GFLOP; a training step is
//! counted as 3× the forward).
//!
//! Forward-only rows at batch 1 for the pre-trained XL networks of the paper's UCGM-S
//! results: LightningDiT-XL/1 (32×16×16 VA-VAE latent) and DDT-XL/2 (4×32×32), weights
//! built in memory (about 2.7 GB each, plus the transposed inference copy).
//!
//! `cpu_vae`: SD-VAE decode of one 4×32×32 latent to 256×256 and encode of one 256×256
//! image (random weights); `benches/pytorch_compare_vae.py` runs diffusers' AutoencoderKL
//! beside it.
//! EDM2-XL (4×64×64, the 512 px SD-VAE latent) forward at batch 1 as well (criterion
//! only, not in the summary table).
//!
//! The summary table measures every row (the network rows and the two VAE rows) in a
//! child process of its own (`--row N`) and prints its peak resident set (VmHWM) beside
//! the time, so no row's memory hides another's.
//!
//! `--row N [--reps R]` prints one tab-separated line for a parent process:
//! `ROW, bench, model, batch, seconds per call (median), FLOP per call, peak RSS bytes,
//! CPU seconds per wall second over the timed runs`; `--list-rows` prints
//! `ROWS, N, bench, model, batch` for every row without measuring
//! (`benches/pytorch_compare.py` uses both).
//!
//! `UCGM_BENCH_THREADS=N` sets the worker threads of every backend here (default: one
//! per core).
//!
//! `UCGM_BENCH_PLAIN_LAYOUT=1` runs the forward rows in the plain layout with the
//! transposed-weight cache beside it (two copies: the memory before issue 17).
//! `UCGM_BENCH_BF16=1` runs the forward rows in the CPU's bf16 inference mode (bf16
//! Linear weights, bf16 products with f32 accumulation; `CpuOptions::bf16`); the
//! training rows stay f32 (`benches/pytorch_compare.py --bf16` compares these rows with
//! PyTorch's bf16 autocast).
//! `UCGM_BENCH_QUICK=1` shortens every measurement (used by CI, which only prints) and
//! leaves the XL rows out unless `UCGM_BENCH_ZOO=1`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ucgm::backend::cpu::CpuOptions;
use ucgm::backend::{Backend, OptimHp};
use ucgm::{Arch, CpuBackend, Model, ModelConfig, Rng};

struct Case {
    name: &'static str,
    cfg: ModelConfig,
    batch: usize,
    /// Forward only (no training-step row): the pre-trained XL networks.
    forward_only: bool,
}

fn cases() -> Vec<Case> {
    let tiny = ModelConfig {
        arch: Arch::Sit,
        input_size: 16,
        in_channels: 4,
        patch: 2,
        hidden: 128,
        depth: 4,
        heads: 4,
        num_classes: 10,
    };
    let s2 = ModelConfig::from_name("SiT-S/2", 32, 4, 1000).unwrap();
    vec![
        Case {
            name: "tiny",
            cfg: tiny.clone(),
            batch: 1,
            forward_only: false,
        },
        Case {
            name: "tiny",
            cfg: tiny,
            batch: 32,
            forward_only: false,
        },
        Case {
            name: "S/2",
            cfg: s2.clone(),
            batch: 1,
            forward_only: false,
        },
        Case {
            name: "S/2",
            cfg: s2,
            batch: 8,
            forward_only: false,
        },
        // The pre-trained XL networks of the paper's UCGM-S results, on their released
        // latents (weights built in memory), batch 1 forward. UCGM_BENCH_QUICK=1 skips them.
        Case {
            name: "LightningDiT-XL/1",
            cfg: ModelConfig::from_name("LightningDiT-XL/1", 16, 32, 1000).unwrap(),
            batch: 1,
            forward_only: true,
        },
        Case {
            name: "DDT-XL/2",
            cfg: ModelConfig::from_name("DDT-XL/2", 32, 4, 1000).unwrap(),
            batch: 1,
            forward_only: true,
        },
    ]
    .into_iter()
    .filter(|c| !(c.forward_only && quick() && std::env::var("UCGM_BENCH_ZOO").is_err()))
    .collect()
}

/// `UCGM_BENCH_THREADS` (0 or unset: one thread per core).
fn bench_threads() -> usize {
    std::env::var("UCGM_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn quick() -> bool {
    std::env::var("UCGM_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// A model with small random weights (zero-init would make the work trivial for no op,
/// but random weights are what a trained model looks like to the kernels).
fn model(cfg: &ModelConfig) -> Model<CpuBackend> {
    model_on(cfg, CpuBackend::<f32>::new(bench_threads()).unwrap())
}

fn model_on(cfg: &ModelConfig, be: CpuBackend) -> Model<CpuBackend> {
    let mut m = Model::init(cfg.clone(), be, 0).unwrap();
    let mut rng = Rng::new(1);
    let p: Vec<f32> = rng.normal_f32(m.layout().total()).into_iter().map(|v| v * 0.02).collect();
    m.write_params(&p).unwrap();
    m
}

/// The model of a forward row as a sampling handle holds it: the inference layout (the
/// transposed Linear weights in place of the plain ones, one copy).
///
/// `UCGM_BENCH_PLAIN_LAYOUT=1` keeps the plain layout instead, whose first forward adds
/// the transposed-weight cache beside it: two copies, what every handle held before the
/// inference layout (issue 17), for the memory column's "before" figures.
fn inference_model(cfg: &ModelConfig) -> Model<CpuBackend> {
    let bf16 = std::env::var("UCGM_BENCH_BF16").is_ok_and(|v| v == "1");
    let be = CpuBackend::<f32>::with_options(bench_threads(), CpuOptions { bf16 }).unwrap();
    let mut m = model_on(cfg, be);
    if std::env::var("UCGM_BENCH_PLAIN_LAYOUT").is_ok_and(|v| v == "1") {
        return m;
    }
    m.enter_inference_layout().unwrap();
    m
}

struct Step {
    model: Model<CpuBackend>,
    x: Vec<f32>,
    t: Vec<f32>,
    labels: Vec<usize>,
    out: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
}

impl Step {
    fn new(cfg: &ModelConfig, batch: usize, train: bool) -> Self {
        let model = if train { model(cfg) } else { inference_model(cfg) };
        let mut rng = Rng::new(2);
        // AdamW moments only for the training rows.
        let n = if train { model.layout().total() } else { 0 };
        Step {
            x: rng.normal_f32(batch * cfg.image_len()),
            t: (0..batch).map(|i| (i as f32 + 0.5) / batch as f32).collect(),
            labels: (0..batch).map(|i| i % cfg.num_classes).collect(),
            out: vec![0.0; batch * cfg.image_len()],
            m: vec![0.0; n],
            v: vec![0.0; n],
            model,
            step: 0,
        }
    }
    fn forward(&mut self) {
        self.model.forward(&self.x, &self.t, &self.labels, &mut self.out).unwrap();
    }
    fn train(&mut self) {
        self.model.zero_grads().unwrap();
        self.model.forward_train(&self.x, &self.t, &self.labels, &mut self.out).unwrap();
        let dout: Vec<f32> = self.out.iter().map(|v| v * 1e-3).collect();
        self.model.backward(&dout, None).unwrap();
        self.step += 1;
        let hp = OptimHp {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let n = self.model.layout().total();
        let be = self.model.backend().clone();
        let (p, g) = self.model.params_and_grads_mut().unwrap();
        be.adamw_step(&mut p[..n], &g[..n], &mut self.m, &mut self.v, &hp, self.step);
    }
}

fn bench(c: &mut Criterion, train: bool) {
    let group_name = if train { "cpu_train_step" } else { "cpu_forward" };
    let mut g = c.benchmark_group(group_name);
    g.sample_size(10);
    if quick() {
        g.warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(1));
    } else {
        g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    }
    for case in cases().into_iter().filter(|c| !(train && c.forward_only)) {
        let mut s = Step::new(&case.cfg, case.batch, train);
        g.throughput(Throughput::Elements(case.batch as u64));
        g.bench_function(BenchmarkId::new(case.name, format!("batch{}", case.batch)), |b| {
            b.iter(|| if train { s.train() } else { s.forward() })
        });
    }
    g.finish();
}

fn cpu_forward(c: &mut Criterion) {
    bench(c, false);
}

fn cpu_train_step(c: &mut Criterion) {
    bench(c, true);
}

/// Resets this process's peak resident set to its current one (Linux: `5` written to
/// `/proc/self/clear_refs`), so a row's peak covers its runs, not its setup (random
/// weights are generated beside the model's own copy). Where unsupported the peak then
/// includes the setup.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// User + system CPU seconds of this process so far (all its threads).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Median wall time of `reps` runs after one warm-up, and the CPU seconds per wall
/// second over those runs (how many cores they kept busy).
fn median_secs(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    reset_peak_rss();
    f();
    let c0 = cpu_seconds();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    let busy = (cpu_seconds() - c0) / v.iter().sum::<f64>();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], busy)
}

/// One row of the summary table, measured in a process of its own (`--row N`), so the
/// peak resident set of one row is not masked by another's.
#[derive(Clone, Copy)]
enum Row {
    /// `cases()[i]`, forward or training step.
    Net {
        train: bool,
        index: usize,
    },
    VaeDecode,
    VaeEncode,
    /// The 512 px decode (4×64×64 → 512×512): its peak memory (issue 10); not in quick runs.
    VaeDecode512,
}

fn rows() -> Vec<Row> {
    let cases = cases();
    let mut rows: Vec<Row> = (0..cases.len()).map(|index| Row::Net { train: false, index }).collect();
    rows.extend(
        (0..cases.len())
            .filter(|&i| !cases[i].forward_only)
            .map(|index| Row::Net { train: true, index }),
    );
    rows.extend([Row::VaeDecode, Row::VaeEncode]);
    if !quick() {
        rows.push(Row::VaeDecode512);
    }
    rows
}

/// The peak resident set of this process (VmHWM), in bytes; 0 where unknown.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// What a row measures: (bench, model, batch).
fn row_label(row: Row) -> (&'static str, String, usize) {
    match row {
        Row::Net { train, index } => {
            let case = cases().swap_remove(index);
            let name = if train { "cpu_train_step" } else { "cpu_forward" };
            (name, case.name.to_string(), case.batch)
        }
        Row::VaeDecode512 => ("cpu_vae", "SD-VAE decode 64→512".to_string(), 1),
        Row::VaeDecode => ("cpu_vae", "SD-VAE decode 32→256".to_string(), 1),
        Row::VaeEncode => ("cpu_vae", "SD-VAE encode 256".to_string(), 1),
    }
}

/// Measures one row in this process with `reps` timed runs (None: the default, 7, or 3
/// in quick runs): (bench, model, batch, seconds per call, FLOP per call, CPU seconds per
/// wall second).
fn measure_row(row: Row, reps: Option<usize>) -> (&'static str, String, usize, f64, f64, f64) {
    use ucgm::model::vae::{Vae, VaeConfig};
    let reps = reps.unwrap_or(if quick() { 3 } else { 7 }).max(1);
    let (bench, model, batch) = row_label(row);
    let (secs, busy, flops) = match row {
        Row::Net { train, index } => {
            let case = cases().swap_remove(index);
            let mut s = Step::new(&case.cfg, case.batch, train);
            let (secs, busy) = median_secs(reps, || if train { s.train() } else { s.forward() });
            let flops = case.cfg.forward_flops() * case.batch as f64 * if train { 3.0 } else { 1.0 };
            (secs, busy, flops)
        }
        Row::VaeDecode512 => {
            let mut vae = Vae::random(VaeConfig::sd_vae(), CpuBackend::<f32>::new(bench_threads()).unwrap(), 0).unwrap();
            let z = Rng::new(2).normal_f32(4 * 64 * 64);
            let (secs, busy) = median_secs(1, || drop(vae.decode(&z, 1, 64, 64).unwrap()));
            (secs, busy, f64::NAN)
        }
        Row::VaeDecode | Row::VaeEncode => {
            let mut vae = Vae::random(VaeConfig::sd_vae(), CpuBackend::<f32>::new(bench_threads()).unwrap(), 0).unwrap();
            let mut rng = Rng::new(2);
            let (secs, busy) = if matches!(row, Row::VaeDecode) {
                let z = rng.normal_f32(4 * 32 * 32);
                median_secs(reps.min(5), || drop(vae.decode(&z, 1, 32, 32).unwrap()))
            } else {
                let img: Vec<f32> = rng.normal_f32(3 * 256 * 256).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
                median_secs(reps.min(5), || drop(vae.encode(&img, 1, 256, 256).unwrap()))
            };
            (secs, busy, f64::NAN)
        }
    };
    (bench, model, batch, secs, flops, busy)
}

/// `--row N [--reps R]`: measures row N alone and prints one machine-readable line for the
/// parent (the CPU seconds per wall second last, after the peak resident set).
fn row_main(index: usize, reps: Option<usize>) {
    let rows = rows();
    let Some(&row) = rows.get(index) else {
        eprintln!("--row {index}: there are {} rows (0..{})", rows.len(), rows.len());
        std::process::exit(2);
    };
    let (bench, model, batch, secs, flops, busy) = measure_row(row, reps);
    println!("ROW\t{bench}\t{model}\t{batch}\t{secs}\t{flops}\t{}\t{busy}", peak_rss());
}

/// `--list-rows`: every row's index and label, nothing measured.
fn list_rows() {
    for (i, &row) in rows().iter().enumerate() {
        let (bench, model, batch) = row_label(row);
        println!("ROWS\t{i}\t{bench}\t{model}\t{batch}");
    }
}

/// The summary table: every row in a fresh child process (`--row N`), with its peak
/// resident set while it runs (weights, workspaces, the thread pool and the allocator's
/// slack; the binary itself is ~10 MiB of it), the setup excluded.
fn summary() {
    let threads = CpuBackend::<f32>::new(bench_threads()).unwrap().threads();
    println!("\nucgm CPU summary ({threads} threads; median of runs; FLOPs counted, train step = 3× forward; one process per row)");
    println!(
        "{:<16} {:<22} {:>6} {:>12} {:>10} {:>14}",
        "bench", "model", "batch", "ms/image", "GFLOP/s", "peak RSS MiB"
    );
    let exe = std::env::current_exe().ok();
    for (i, &row) in rows().iter().enumerate() {
        let child = exe
            .as_ref()
            .and_then(|e| std::process::Command::new(e).args(["--row", &i.to_string()]).output().ok());
        let parsed = child.as_ref().filter(|o| o.status.success()).and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let line = text.lines().find(|l| l.starts_with("ROW\t"))?.to_string();
            let f: Vec<&str> = line.split('\t').collect();
            Some((
                f[1].to_string(),
                f[2].to_string(),
                f[3].parse::<usize>().ok()?,
                f[4].parse::<f64>().ok()?,
                f[5].parse::<f64>().ok()?,
                f[6].parse::<u64>().ok()?,
            ))
        });
        let (bench, model, batch, secs, flops, rss) = match parsed {
            Some(p) => p,
            None => {
                // No child process (or it failed): measured here, without a memory figure.
                let (b, m, n, s, f, _) = measure_row(row, None);
                (b.to_string(), m, n, s, f, 0)
            }
        };
        let gflops = if flops.is_nan() {
            "–".to_string()
        } else {
            format!("{:.1}", flops / secs / 1e9)
        };
        let rss = if rss == 0 {
            "–".to_string()
        } else {
            format!("{:.0}", rss as f64 / (1 << 20) as f64)
        };
        println!(
            "{:<16} {:<22} {:>6} {:>12.2} {:>10} {:>14}",
            bench,
            model,
            batch,
            secs * 1e3 / batch as f64,
            gflops,
            rss
        );
    }
}

/// `cpu_vae`: the SD-VAE (random weights, the reference's test initialisation) decoding
/// one 4×32×32 latent to 256×256 and encoding one 256×256 image.
fn cpu_vae(c: &mut Criterion) {
    use ucgm::model::vae::{Vae, VaeConfig};
    let mut g = c.benchmark_group("cpu_vae");
    g.sample_size(10);
    if quick() {
        g.warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(1));
    } else {
        g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    }
    let mut vae = Vae::random(VaeConfig::sd_vae(), CpuBackend::<f32>::new(bench_threads()).unwrap(), 0).unwrap();
    let mut rng = Rng::new(2);
    let z = rng.normal_f32(4 * 32 * 32);
    let img: Vec<f32> = rng.normal_f32(3 * 256 * 256).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    g.throughput(Throughput::Elements(1));
    g.bench_function("sd_vae_decode_4x32x32", |b| b.iter(|| vae.decode(&z, 1, 32, 32).unwrap()));
    g.bench_function("sd_vae_encode_256", |b| b.iter(|| vae.encode(&img, 1, 256, 256).unwrap()));
    g.finish();
}

/// EDM2-XL (the 512 px SD-VAE latent 4×64×64) forward at batch 1, random weights built in
/// memory (gains 1). Left out of quick runs unless `UCGM_BENCH_ZOO=1`.
fn cpu_forward_edm2(c: &mut Criterion) {
    use ucgm::model::edm2::{Edm2, Edm2Config};
    if quick() && std::env::var("UCGM_BENCH_ZOO").is_err() {
        return;
    }
    let cfg = Edm2Config::from_name("EDM2-XL", 64, 4, 1000).unwrap();
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
    let mut m = Edm2::from_tensors(cfg.clone(), CpuBackend::<f32>::new(bench_threads()).unwrap(), &tensors).unwrap();
    drop(tensors);
    let x = rng.normal_f32(cfg.image_len());
    let mut out = vec![0f32; cfg.image_len()];
    let mut g = c.benchmark_group("cpu_forward");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("EDM2-XL", "batch1"), |b| {
        b.iter(|| m.forward(&x, &[0.5], &[1], &mut out).unwrap())
    });
    g.finish();
}

criterion_group!(benches, cpu_forward, cpu_forward_edm2, cpu_train_step, cpu_vae);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| -> Option<usize> {
        let i = args.iter().position(|a| a == flag)?;
        match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(v) => Some(v),
            None => {
                eprintln!("{flag} needs a number");
                std::process::exit(2);
            }
        }
    };
    if args.iter().any(|a| a == "--list-rows") {
        list_rows();
        return;
    }
    if let Some(index) = value_of("--row") {
        row_main(index, value_of("--reps"));
        return;
    }
    if args.iter().any(|a| a == "--summary-only") {
        summary();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
