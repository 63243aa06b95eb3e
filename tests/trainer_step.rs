//! The training step's parts that the reference tensors do not cover: the three kinds of
//! `mod`, the sampling EMA, the v2 time flip, the backward-difference consistency target,
//! the `fc-vs-fe` style, the NaN guard and the seeded draws. Expected values are computed
//! here independently with plain network forwards and the formulas of spec §2.

use ucgm::trainer::{BoxedTransport, EnhancedStyle, OptimizerSection, StepTensors, TrainSection, Trainer, TrainerConfig, TransportSection};
use ucgm::{Arch, CpuBackend, Model, ModelConfig, ParamLayout, Rng, TransportKind};

const B: usize = 8;
/// Times spanning the default window (0, 0.75): inside, on and just past its edges.
const T: [f32; B] = [0.1, 0.5, 0.74, 0.75, 0.9, 0.3, 0.0001, 0.6];

fn cfg() -> ModelConfig {
    ModelConfig::reference_tiny(Arch::Sit)
}

fn initial_params() -> Vec<f32> {
    let n = ParamLayout::for_config(&cfg()).total();
    Rng::new(21).normal_f32(n).into_iter().map(|v| 0.05 * v).collect()
}

fn model() -> Model<CpuBackend> {
    Model::from_params(cfg(), CpuBackend::<f32>::new(0).unwrap(), &initial_params()).unwrap()
}

fn config(transport: TransportSection) -> TrainerConfig {
    let optimizer = OptimizerSection::adamw(1e-3);
    TrainerConfig {
        transport,
        optimizer,
        train: TrainSection {
            ema_decay: 0.9,
            ..Default::default()
        },
    }
}

/// Data x, noise z and labels of batch `k`.
fn batch(k: u64) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let n = B * cfg().image_len();
    let mut rng = Rng::new(500 + k);
    (rng.normal_f32(n), rng.normal_f32(n), (0..B).collect())
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// F(x, t, labels) of a network with the given weights.
fn forward(params: &[f32], x: &[f32], t: &[f32], labels: &[usize]) -> Vec<f32> {
    let mut m = Model::from_params(cfg(), CpuBackend::<f32>::new(0).unwrap(), params).unwrap();
    let mut out = vec![0f32; x.len()];
    m.forward(x, t, labels, &mut out).unwrap();
    out
}

/// Linear interpolant x_t = t·z + (1 − t)·x per sample, with the coefficients as float32
/// values (α = t, γ = 1 − t rounded to f32, as the reference computes them) and the
/// arithmetic in f64.
fn linear_input(t: &[f32], z: &[f32], x: &[f32]) -> Vec<f32> {
    let s = x.len() / t.len();
    (0..x.len())
        .map(|i| {
            let (alpha, gamma) = (t[i / s] as f64, (1.0f32 - t[i / s]) as f64);
            (z[i] as f64 * alpha + x[i] as f64 * gamma) as f32
        })
        .collect()
}

#[test]
fn mod_kinds_and_sampling_ema() {
    let enhanced = |emd: f64| TransportSection {
        enhanced_ratio: 0.5,
        enhanced_style: Some(EnhancedStyle::FtVsFe),
        ema_decay_rate: emd,
        ..Default::default()
    };
    let init = initial_params();

    // EMA kind: step 1 copies (d₀ = 0), step 2 uses d₁ = (emd)/2.
    let mut tr = Trainer::new(config(enhanced(0.8)), model()).unwrap();
    let (x, z, y) = batch(0);
    tr.train_step_with(&x, &y, &T, &z).unwrap();
    assert_eq!(tr.read_teacher().unwrap(), Some(init.clone()), "first update copies the online weights");
    let p1 = tr.model().read_params().unwrap();
    // Sampling EMA after step 1: 0.9·init + 0.1·p1.
    let ema = tr.read_ema().unwrap();
    for i in 0..init.len() {
        assert!((ema[i] as f64 - (0.9 * init[i] as f64 + 0.1 * p1[i] as f64)).abs() <= 1e-7, "ema[{i}]");
    }
    let (x, z, y) = batch(1);
    tr.train_step_with(&x, &y, &T, &z).unwrap();
    let teacher = tr.read_teacher().unwrap().unwrap();
    for i in 0..init.len() {
        let want = 0.4 * init[i] as f64 + 0.6 * p1[i] as f64;
        assert!((teacher[i] as f64 - want).abs() <= 1e-7, "mod[{i}] {} vs {want}", teacher[i]);
    }

    // Frozen kind: the weights of the first step, forever.
    let mut tr = Trainer::new(config(enhanced(1.0)), model()).unwrap();
    for k in 0..3 {
        let (x, z, y) = batch(k);
        tr.train_step_with(&x, &y, &T, &z).unwrap();
    }
    assert_eq!(tr.read_teacher().unwrap(), Some(init.clone()));
    assert_ne!(tr.model().read_params().unwrap(), init);

    // Online kind: no copy.
    let mut tr = Trainer::new(config(enhanced(0.0)), model()).unwrap();
    let (x, z, y) = batch(0);
    assert!(tr.train_step_with(&x, &y, &T, &z).unwrap().loss.is_finite());
    assert_eq!(tr.read_teacher().unwrap(), None);

    // λ = 0 and ζ = 0: mod is never created.
    let mut tr = Trainer::new(config(TransportSection::default()), model()).unwrap();
    tr.train_step_with(&x, &y, &T, &z).unwrap();
    assert_eq!(tr.read_teacher().unwrap(), None);
}

/// Spec §8 item 19: v2 ReLinear at internal t equals v1 ReLinear at native 1 − t (no
/// window or weight active): same loss, same parameter gradients, output negated.
#[test]
fn relinear_flip_equals_native_time() {
    let (x, z, y) = batch(2);
    let native_t: Vec<f32> = T.iter().map(|&t| 1.0 - t).collect();
    let ts = TransportSection {
        transport_type: "ReLinear".into(),
        wt_cosine_loss: true,
        ..Default::default()
    };
    // v2: the ReLinear named in the config (flipped); v1: its native functions, unflipped.
    let run = |native: Option<BoxedTransport>, t: &[f32]| -> (StepTensors, Vec<f32>) {
        let mut tr = match native {
            None => Trainer::new(config(ts.clone()), model()).unwrap(),
            Some(transport) => Trainer::with_transport(config(ts.clone()), model(), transport).unwrap(),
        };
        let step = tr.forward_backward(&x, &y, t, &z).unwrap();
        let grads = tr.model_mut().read_grads().unwrap();
        (step, grads)
    };
    let (v2, g2) = run(None, &T);
    let (v1, g1) = run(Some(Box::new(TransportKind::ReLinear)), &native_t);
    assert!((v2.loss - v1.loss).abs() <= 1e-6 * v1.loss, "{} vs {}", v2.loss, v1.loss);
    let negated: Vec<f32> = v1.output.iter().map(|v| -v).collect();
    assert!(rel_l2(&v2.output, &negated) <= 1e-6);
    let err = rel_l2(&g2, &g1);
    println!("flip: loss {} vs {}, gradient rel-L2 {err:.2e}", v2.loss, v1.loss);
    assert!(err <= 1e-5, "gradient rel-L2 {err}");
}

/// 0 < λ < 1: F_tgt = F_θ − (α/Δ)·(4/sin(1.57t))·clamp(D, −1, 1) with
/// D = ((α·F_θ − α̂·x_t)/Δ − g(λt))/((1 − λ)t), g from a plain forward at λt.
#[test]
fn backward_difference_target() {
    let lambda = 0.5;
    let ts = TransportSection {
        consistc_ratio: lambda,
        ema_decay_rate: 0.0,
        ..Default::default()
    };
    let mut tr = Trainer::new(config(ts), model()).unwrap();
    let (x, z, y) = batch(3);
    let step = tr.forward_backward(&x, &y, &T, &z).unwrap();
    let mut labels = y.clone();
    labels[B - 1] = 10;
    assert_eq!(step.labels, labels);

    let params = initial_params();
    let x_t = linear_input(&T, &z, &x);
    let f = forward(&params, &x_t, &T, &labels);
    assert!(step.output == f, "online output differs from a plain forward at x_t");
    let r: Vec<f32> = T.iter().map(|&t| 0.5f32 * t).collect();
    let x_r = linear_input(&r, &z, &x);
    let f_r = forward(&params, &x_r, &r, &labels);
    let s = cfg().image_len();
    let want: Vec<f32> = (0..f.len())
        .map(|i| {
            let (t, rb) = (T[i / s] as f64, r[i / s] as f64);
            // Linear: Δ = −1, so x̂ = −(α·F − α̂·x_t) = x_t − t·F (α = t exactly in f32).
            let g_t = x_t[i] as f64 - t * f[i] as f64;
            let g_r = x_r[i] as f64 - rb * f_r[i] as f64;
            let d = ((g_t - g_r) / ((1.0 - lambda) * t)).clamp(-1.0, 1.0);
            (f[i] as f64 + t * 4.0 / (1.57 * t).sin() * d) as f32
        })
        .collect();
    let err = rel_l2(&step.target, &want);
    println!("backward difference: target rel-L2 {err:.2e}");
    assert!(err <= 1e-6, "target rel-L2 {err}");
}

/// `fc-vs-fe`: predictor and reference are both `mod` (here frozen = the initial
/// weights), conditional on ỹ and unconditional.
#[test]
fn fc_vs_fe_target() {
    let zeta = 0.6;
    let ts = TransportSection {
        enhanced_ratio: zeta,
        enhanced_style: Some(EnhancedStyle::FcVsFe),
        ema_decay_rate: 1.0,
        ..Default::default()
    };
    let mut tr = Trainer::new(config(ts), model()).unwrap();
    let (x, z, y) = batch(4);
    let step = tr.forward_backward(&x, &y, &T, &z).unwrap();

    let params = initial_params();
    let x_t = linear_input(&T, &z, &x);
    let cond = forward(&params, &x_t, &T, &step.labels);
    let uncond = forward(&params, &x_t, &T, &[10; B]);
    let s = cfg().image_len();
    let want: Vec<f32> = (0..x.len())
        .map(|i| {
            let b = i / s;
            let t = T[b] as f64;
            // Linear endpoints: x̂ = x_t − t·F, ẑ = x_t + (1 − t)·F.
            let endpoints = |f: f32| (x_t[i] as f64 - t * f as f64, x_t[i] as f64 + (1.0 - t) * f as f64);
            let ((cx, cz), (ux, uz)) = (endpoints(cond[i]), endpoints(uncond[i]));
            let (xv, zv) = (x[i] as f64, z[i] as f64);
            let in_window = T[b] > 0.0 && T[b] < 0.75;
            let (xe, ze) = if b == B - 1 {
                ((xv + ux) / 2.0, (zv + uz) / 2.0)
            } else if in_window {
                (xv + zeta * (cx - ux), zv + zeta * (cz - uz))
            } else {
                ((xv + cx) / 2.0, (zv + cz) / 2.0)
            };
            (ze - xe) as f32
        })
        .collect();
    let err = rel_l2(&step.target, &want);
    println!("fc-vs-fe: target rel-L2 {err:.2e}");
    assert!(err <= 1e-6, "target rel-L2 {err}");
}

/// t = 0 with λ ≠ 0: the consistency weight 4/sin(0) is infinite, the loss is not
/// finite, and the step goes on with zero gradients (the reference's NaN guard).
#[test]
fn non_finite_target_gives_zero_gradient() {
    let ts = TransportSection {
        consistc_ratio: 1.0,
        ema_decay_rate: 1.0,
        ..Default::default()
    };
    let mut tr = Trainer::new(config(ts), model()).unwrap();
    let (x, z, y) = batch(5);
    let mut t = T;
    t[0] = 0.0;
    let stats = tr.train_step_with(&x, &y, &t, &z).unwrap();
    assert!(!stats.loss.is_finite());
    assert_eq!(stats.grad_norm, 0.0);
    let p = tr.model().read_params().unwrap();
    assert!(p.iter().all(|v| v.is_finite()));
    // AdamW with zero gradient, zero moments and no weight decay leaves the weights.
    assert_eq!(p, initial_params());
}

#[test]
fn seeded_draws_are_reproducible() {
    let ts = TransportSection {
        time_dist_ctrl: [0.8, 1.0, 1.1],
        ..Default::default()
    };
    let run = |seed: u64| {
        let mut c = config(ts.clone());
        c.train.global_seed = seed;
        let mut tr = Trainer::new(c, model()).unwrap();
        let (x, _, y) = batch(6);
        let stats: Vec<f64> = (0..2).map(|_| tr.train_step(&x, &y).unwrap().loss).collect();
        (stats, tr.model().read_params().unwrap())
    };
    let (a, pa) = run(1);
    let (b, pb) = run(1);
    let (c, _) = run(2);
    assert_eq!(a, b);
    assert_eq!(pa, pb);
    assert_ne!(a, c);
    assert!(a.iter().all(|l| l.is_finite() && *l > 0.0));
}
