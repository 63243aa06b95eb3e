//! CPU benchmarks: `cpu_forward` and `cpu_train_step` (forward + backward + AdamW) for
//! the tiny network (depth 4, D 128, 4 heads, patch 2, 4×16×16 → 64 tokens) at batch 1
//! and 32, and SiT-S/2 on a 4×32×32 latent at batch 1 and 8. Criterion reports images/s
//! (throughput in "elements" = images); a summary table at the end prints ms per image
//! and GFLOP/s from counted FLOPs (a DiT-S/2 forward is 12.1 GFLOP; a training step is
//! counted as 3× the forward).
//!
//! `cpu_vae`: SD-VAE decode of one 4×32×32 latent to 256×256 and encode of one 256×256
//! image (random weights); `benches/pytorch_compare_vae.py` runs diffusers' AutoencoderKL
//! beside it.
//!
//! `UCGM_BENCH_QUICK=1` shortens every measurement (used by CI, which only prints).

use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ucgm::backend::{Backend, OptimHp};
use ucgm::{Arch, CpuBackend, Model, ModelConfig, Rng};

struct Case {
    name: &'static str,
    cfg: ModelConfig,
    batch: usize,
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
        },
        Case {
            name: "tiny",
            cfg: tiny,
            batch: 32,
        },
        Case {
            name: "S/2",
            cfg: s2.clone(),
            batch: 1,
        },
        Case {
            name: "S/2",
            cfg: s2,
            batch: 8,
        },
    ]
}

fn quick() -> bool {
    std::env::var("UCGM_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// A model with small random weights (zero-init would make the work trivial for no op,
/// but random weights are what a trained model looks like to the kernels).
fn model(cfg: &ModelConfig) -> Model<CpuBackend> {
    let be = CpuBackend::<f32>::new(0).unwrap();
    let mut m = Model::init(cfg.clone(), be, 0).unwrap();
    let mut rng = Rng::new(1);
    let p: Vec<f32> = rng.normal_f32(m.layout().total()).into_iter().map(|v| v * 0.02).collect();
    m.write_params(&p).unwrap();
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
    fn new(cfg: &ModelConfig, batch: usize) -> Self {
        let model = model(cfg);
        let mut rng = Rng::new(2);
        let n = model.layout().total();
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
    for case in cases() {
        let mut s = Step::new(&case.cfg, case.batch);
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

/// Median wall time of `reps` runs after one warm-up.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn summary() {
    let threads = CpuBackend::<f32>::new(0).unwrap().threads();
    println!("\nucgm CPU summary ({threads} threads; median of runs; FLOPs counted, train step = 3× forward)");
    println!("{:<16} {:<7} {:>6} {:>12} {:>10}", "bench", "model", "batch", "ms/image", "GFLOP/s");
    for train in [false, true] {
        for case in cases() {
            let mut s = Step::new(&case.cfg, case.batch);
            let reps = if quick() { 3 } else { 7 };
            let secs = median_secs(reps, || if train { s.train() } else { s.forward() });
            let flops = case.cfg.forward_flops() * case.batch as f64 * if train { 3.0 } else { 1.0 };
            let name = if train { "cpu_train_step" } else { "cpu_forward" };
            println!(
                "{:<16} {:<7} {:>6} {:>12.2} {:>10.1}",
                name,
                case.name,
                case.batch,
                secs * 1e3 / case.batch as f64,
                flops / secs / 1e9
            );
        }
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
    let mut vae = Vae::random(VaeConfig::sd_vae(), CpuBackend::<f32>::new(0).unwrap(), 0).unwrap();
    let mut rng = Rng::new(2);
    let z = rng.normal_f32(4 * 32 * 32);
    let img: Vec<f32> = rng.normal_f32(3 * 256 * 256).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    g.throughput(Throughput::Elements(1));
    g.bench_function("sd_vae_decode_4x32x32", |b| b.iter(|| vae.decode(&z, 1, 32, 32).unwrap()));
    g.bench_function("sd_vae_encode_256", |b| b.iter(|| vae.encode(&img, 1, 256, 256).unwrap()));
    g.finish();
}

criterion_group!(benches, cpu_forward, cpu_train_step, cpu_vae);

fn main() {
    if std::env::args().any(|a| a == "--summary-only") {
        summary();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
