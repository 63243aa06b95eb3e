//! UCGM transports and sampler against the invariants and worked examples of spec §8
//! (items 1–12 and 20), with exact closed-form models written as small `Denoiser`s.
//!
//! Printed reference numbers are rounded to 7 decimals, so they are compared with a
//! tolerance of half a unit in that decimal; structural properties (zero network,
//! replays of the update formulas) are compared bit for bit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ucgm::control::RunControl;
use ucgm::sampler::{kumaraswamy_f32, linspace_f64, sample, time_grid, NoiseSource, SampleOutput, SamplerConfig, Stochasticity};
use ucgm::transport::{Direction, Transport, TransportKind};
use ucgm::{Denoiser, Error, Result, Rng};

const GAPS_V1: [f64; 2] = [0.001, 0.001];

// ---------------------------------------------------------------------------------
// Exact models and helpers

/// The exact denoiser for a single data point x*: ẑ = (x_t − γx*)/α, F = α̂ẑ + γ̂x*
/// (native coefficients of `kind`, float64, rounded to float32 once).
struct SinglePoint {
    kind: TransportKind,
    x_star: Vec<f32>, // [C, H, W]
}

impl Denoiser for SinglePoint {
    fn sample_shape(&self) -> [usize; 3] {
        [1, 1, self.x_star.len()]
    }
    fn num_classes(&self) -> usize {
        10
    }
    fn eval(&mut self, x: &[f32], t: &[f32], _labels: &[usize], out: &mut [f32]) -> Result<()> {
        let per = self.x_star.len();
        for (b, &tb) in t.iter().enumerate() {
            let c = self.kind.coefs(tb as f64);
            for k in 0..per {
                let xs = self.x_star[k] as f64;
                let z_hat = (x[b * per + k] as f64 - c.gamma * xs) / c.alpha;
                out[b * per + k] = (c.alpha_to * z_hat + c.gamma_to * xs) as f32;
            }
        }
        Ok(())
    }
}

/// The exact denoiser for scalar data x ~ N(0, s²): x̂ = γs²x_t/(α²+γ²s²),
/// ẑ = αx_t/(α²+γ²s²), F = α̂ẑ + γ̂x̂ (native coefficients, float64).
struct Gaussian {
    kind: TransportKind,
    s2: f64,
}

impl Denoiser for Gaussian {
    fn sample_shape(&self) -> [usize; 3] {
        [1, 1, 1]
    }
    fn num_classes(&self) -> usize {
        1
    }
    fn eval(&mut self, x: &[f32], t: &[f32], _labels: &[usize], out: &mut [f32]) -> Result<()> {
        for ((o, &xt), &tb) in out.iter_mut().zip(x).zip(t) {
            let c = self.kind.coefs(tb as f64);
            let den = c.alpha * c.alpha + c.gamma * c.gamma * self.s2;
            let x_hat = c.gamma * self.s2 * xt as f64 / den;
            let z_hat = c.alpha * xt as f64 / den;
            *o = (c.alpha_to * z_hat + c.gamma_to * x_hat) as f32;
        }
        Ok(())
    }
}

/// F ≡ 0, the output of the reference's zero-initialised networks.
struct Zero {
    shape: [usize; 3],
}

impl Denoiser for Zero {
    fn sample_shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        4
    }
    fn eval(&mut self, _x: &[f32], _t: &[f32], _labels: &[usize], out: &mut [f32]) -> Result<()> {
        out.fill(0.0);
        Ok(())
    }
}

/// A smooth, label-dependent affine network: F = 0.3·x + 0.2·t + 0.05·(k mod 3) + 0.1·label.
struct Affine {
    shape: [usize; 3],
}

impl Denoiser for Affine {
    fn sample_shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        5
    }
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        let per = x.len() / t.len();
        for (i, (o, &xi)) in out.iter_mut().zip(x).enumerate() {
            let b = i / per;
            *o = 0.3 * xi + 0.2 * t[b] + 0.05 * (i % per % 3) as f32 + 0.1 * labels[b] as f32;
        }
        Ok(())
    }
}

/// One recorded network call.
#[derive(Clone, Debug)]
struct Call {
    x: Vec<f32>,
    t: Vec<f32>,
    labels: Vec<usize>,
    f: Vec<f32>,
}

/// Wraps a network and records every call.
struct Recorder<N> {
    inner: N,
    calls: Vec<Call>,
}

impl<N: Denoiser> Recorder<N> {
    fn new(inner: N) -> Self {
        Recorder { inner, calls: vec![] }
    }
}

impl<N: Denoiser> Denoiser for Recorder<N> {
    fn sample_shape(&self) -> [usize; 3] {
        self.inner.sample_shape()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        self.inner.eval(x, t, labels, out)?;
        self.calls.push(Call {
            x: x.to_vec(),
            t: t.to_vec(),
            labels: labels.to_vec(),
            f: out.to_vec(),
        });
        Ok(())
    }
}

fn cfg(kind: TransportKind, steps: usize) -> SamplerConfig {
    SamplerConfig {
        transport: kind,
        steps,
        rfba_gap_steps: GAPS_V1,
        return_trajectory: true,
        ..SamplerConfig::default()
    }
}

fn run(net: &mut dyn Denoiser, z: &[f32], labels: &[usize], cfg: &SamplerConfig) -> SampleOutput {
    let mut rng = Rng::new(1234);
    sample(net, z, labels, cfg, &mut NoiseSource::rng(&mut rng), &mut RunControl::default()).unwrap()
}

/// The raw x̂ sequence of a run (trajectory without its entry 0).
fn predictions(out: &SampleOutput) -> Vec<f32> {
    let tr = out.trajectory.as_ref().unwrap();
    let numel = out.sample.len();
    tr[numel..].to_vec()
}

/// |got − printed| ≤ half a unit in the 7th decimal.
fn assert_printed7(got: &[f32], printed: &[f64], what: &str) {
    assert_eq!(got.len(), printed.len(), "{what}: length");
    for (j, (&g, &p)) in got.iter().zip(printed).enumerate() {
        assert!((g as f64 - p).abs() <= 0.5e-7, "{what}[{j}]: got {g}, printed {p}");
    }
}

// ---------------------------------------------------------------------------------
// Transports (§8 items 1–4)

#[test]
fn delta_is_constant_for_linear_trigflow_relinear_edm() {
    for i in 0..=100 {
        let t = i as f64 / 100.0;
        for (kind, want) in [
            (TransportKind::Linear, -1.0),
            (TransportKind::TrigFlow, -1.0),
            (TransportKind::ReLinear, 1.0),
            (TransportKind::Edm, 2.0),
        ] {
            let d = kind.coefs(t).delta;
            assert!((d - want).abs() <= 4e-15, "{kind} t={t}: delta {d}");
        }
    }
    let lin = TransportKind::Linear.coefs(0.0);
    assert_eq!((lin.alpha, lin.gamma), (0.0, 1.0));
    let lin = TransportKind::Linear.coefs(1.0);
    assert_eq!((lin.alpha, lin.gamma), (1.0, 0.0));
}

/// A small deterministic generator of test values in [lo, hi).
fn values(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect()
}

#[test]
fn round_trip_recovers_x_and_z_for_every_transport() {
    let (xs, zs, ts) = (values(1, 400, -2.0, 2.0), values(2, 400, -3.0, 3.0), values(3, 400, 0.0, 1.0));
    for kind in TransportKind::ALL {
        // Native float64: exact up to a few ulps.
        for ((&x, &z), &t) in xs.iter().zip(&zs).zip(&ts) {
            let c = kind.coefs(t);
            let (x_t, f) = (c.interpolate(z, x), c.target(z, x));
            let scale = (c.alpha * f).abs().max((c.alpha_to * x_t).abs()).max(1.0) / c.delta.abs();
            assert!((c.recover_x(f, x_t) - x).abs() <= 16.0 * f64::EPSILON * scale, "{kind} x t={t}");
            let scale = (c.gamma_to * x_t).abs().max((c.gamma * f).abs()).max(1.0) / c.delta.abs();
            assert!((c.recover_z(f, x_t) - z).abs() <= 16.0 * f64::EPSILON * scale, "{kind} z t={t}");
        }
        // Internal float32 tensors through the public helpers (B = 100 samples of 4).
        let tr = Transport::new(kind).unwrap();
        let x32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
        let z32: Vec<f32> = zs.iter().map(|&v| v as f32).collect();
        let t32: Vec<f32> = ts.iter().step_by(4).map(|&v| v as f32).collect();
        let n = x32.len();
        let (mut x_t, mut f, mut x_hat, mut z_hat) = (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        tr.interpolate(&z32, &x32, &t32, &mut x_t).unwrap();
        tr.target(&z32, &x32, &t32, &mut f).unwrap();
        tr.recover(&f, &x_t, &t32, &mut x_hat, &mut z_hat).unwrap();
        for i in 0..n {
            let c = tr.coefs_f32(t32[i / 4]);
            // Rounding of x_t, F and the recovery's own three operations, relative to the
            // largest term, amplified by 1/|Δ|.
            let eps = 8.0 * f32::EPSILON;
            let bound_x =
                eps * ((c.alpha * f[i]).abs() + (c.alpha_to * x_t[i]).abs() + (c.alpha * c.alpha_to * z32[i]).abs()) / c.delta.abs() + eps * x32[i].abs();
            let bound_z =
                eps * ((c.gamma_to * x_t[i]).abs() + (c.gamma * f[i]).abs() + (c.gamma * c.gamma_to * x32[i]).abs()) / c.delta.abs() + eps * z32[i].abs();
            assert!(
                (x_hat[i] - x32[i]).abs() <= bound_x,
                "{kind} f32 x[{i}]: {} vs {} (bound {bound_x})",
                x_hat[i],
                x32[i]
            );
            assert!(
                (z_hat[i] - z32[i]).abs() <= bound_z,
                "{kind} f32 z[{i}]: {} vs {} (bound {bound_z})",
                z_hat[i],
                z32[i]
            );
        }
    }
}

#[test]
fn direction_detection_finds_the_data_end() {
    for kind in [
        TransportKind::Linear,
        TransportKind::TrigFlow,
        TransportKind::TrigLinear,
        TransportKind::Random,
        TransportKind::Edm,
    ] {
        assert_eq!(Transport::new(kind).unwrap().direction(), Direction::DataAtZero, "{kind}");
    }
    assert_eq!(Transport::new(TransportKind::ReLinear).unwrap().direction(), Direction::NoiseAtZero);
}

// ---------------------------------------------------------------------------------
// Sampler (§8 items 5–12, 20)

/// §8.7: one step is one evaluation at 0.999; the output is x̂ there; the trajectory has
/// n + 1 entries with entry 0 = the input noise.
#[test]
fn one_step_is_one_evaluation_at_0_999() {
    let z = [0.4f32, -1.1, 2.0];
    let mut net = Recorder::new(Affine { shape: [1, 1, 3] });
    let out = run(&mut net, &z, &[2], &cfg(TransportKind::Linear, 1));
    assert_eq!(net.calls.len(), 1);
    assert_eq!(out.nfe, 1);
    assert!((net.calls[0].t[0] as f64 - 0.999).abs() <= 0.5e-7);
    let tr = Transport::new(TransportKind::Linear).unwrap();
    let c = tr.coefs_f32(net.calls[0].t[0]);
    let want: Vec<f32> = net.calls[0].f.iter().zip(&z).map(|(&f, &x)| c.recover_x(f, x)).collect();
    assert_eq!(out.sample, want);
    let traj = out.trajectory.unwrap();
    assert_eq!(traj.len(), 2 * z.len());
    assert_eq!(&traj[..3], &z);
    assert_eq!(&traj[3..], &want[..]);
}

/// §8.8: the exact model of a single point returns it for any N, κ, ρ and transport.
#[test]
fn single_point_model_returns_the_point() {
    let settings: Vec<(&str, SamplerConfig)> = vec![
        (
            "N=1",
            SamplerConfig {
                steps: 1,
                ..cfg(TransportKind::Linear, 1)
            },
        ),
        (
            "N=3 k=0.5",
            SamplerConfig {
                steps: 3,
                extrapolation: 0.5,
                ..cfg(TransportKind::Linear, 3)
            },
        ),
        (
            "N=4 rho=1",
            SamplerConfig {
                steps: 4,
                stochasticity: Stochasticity::Fixed(1.0),
                ..cfg(TransportKind::Linear, 4)
            },
        ),
        (
            "N=6 rho=0.3 k=0.4",
            SamplerConfig {
                steps: 6,
                stochasticity: Stochasticity::Fixed(0.3),
                extrapolation: 0.4,
                ..cfg(TransportKind::Linear, 6)
            },
        ),
        (
            "N=5 SDE",
            SamplerConfig {
                steps: 5,
                stochasticity: Stochasticity::Sde,
                ..cfg(TransportKind::Linear, 5)
            },
        ),
        (
            "N=7 Heun k=0.5",
            SamplerConfig {
                steps: 7,
                order: 2,
                extrapolation: 0.5,
                ..cfg(TransportKind::Linear, 7)
            },
        ),
        (
            "N=8 kuma",
            SamplerConfig {
                steps: 8,
                time_dist_ctrl: [1.17, 0.8, 1.1],
                ..cfg(TransportKind::Linear, 8)
            },
        ),
        (
            "N=4 gaps 0",
            SamplerConfig {
                steps: 4,
                rfba_gap_steps: [0.0, 0.0],
                ..cfg(TransportKind::Linear, 4)
            },
        ),
    ];
    for kind in TransportKind::ALL {
        for (name, base) in &settings {
            let c = SamplerConfig {
                transport: kind,
                ..base.clone()
            };
            // The spec's worked case: x* = 0.7, z = 1.3.
            let out = run(&mut SinglePoint { kind, x_star: vec![0.7] }, &[1.3], &[0], &c);
            // A 4-element point, batch of 2 with different noise.
            let x_star = vec![0.7f32, -0.25, 1.5, 0.0];
            let z = [1.3f32, -0.4, 0.9, 2.2, -1.7, 0.05, 1.1, -0.6];
            let out4 = run(&mut SinglePoint { kind, x_star: x_star.clone() }, &z, &[0, 3], &c);
            // Every x̂ is (α·F − α̂·x_t)/Δ with F rounded to float32 once: a few ulps.
            let tol = 4.0 * f32::EPSILON;
            assert!((out.sample[0] - 0.7).abs() <= tol, "{kind} {name}: {}", out.sample[0]);
            for (i, (&got, &want)) in out4.sample.iter().zip(x_star.iter().chain(&x_star)).enumerate() {
                assert!((got - want).abs() <= tol * want.abs().max(1.0), "{kind} {name} [{i}]: {got} vs {want}");
            }
            for (j, &p) in predictions(&out).iter().enumerate() {
                assert!((p - 0.7).abs() <= tol, "{kind} {name}: prediction {j} = {p}");
            }
        }
    }
}

/// §8.9: the exact Gaussian model, x̂ sequences of the official sampler.
#[test]
fn gaussian_model_sequences_match_the_reference() {
    type Case = (TransportKind, f64, usize, f64, [f64; 2], &'static [f64]);
    let cases: [Case; 9] = [
        (TransportKind::Linear, 1.0, 1, 0.0, GAPS_V1, &[0.001002]),
        (TransportKind::Linear, 1.0, 2, 0.0, GAPS_V1, &[0.001002, 0.002004]),
        (TransportKind::Linear, 1.0, 4, 0.0, GAPS_V1, &[0.001002, 0.400961, 0.6411524, 0.6414732]),
        (TransportKind::Linear, 1.0, 4, 0.5, GAPS_V1, &[0.001002, 0.400961, 0.6411524, 0.7613287]),
        (TransportKind::Linear, 1.0, 2, 0.0, [0.001, 0.5], &[0.001002, 0.501001]),
        (TransportKind::Linear, 0.25, 4, 0.0, GAPS_V1, &[0.0002506, 0.1179355, 0.2943965, 0.2949856]),
        (TransportKind::Linear, 0.25, 4, 0.5, GAPS_V1, &[0.0002506, 0.1179355, 0.2943965, 0.3830394]),
        (TransportKind::TrigFlow, 1.0, 4, 0.0, GAPS_V1, &[0.0023663, 0.4341314, 0.6504055, 0.6509938]),
        (TransportKind::TrigFlow, 1.0, 4, 0.5, GAPS_V1, &[0.0023663, 0.4341314, 0.6504055, 0.7588367]),
    ];
    for (kind, s2, steps, kappa, gaps, want) in cases {
        let c = SamplerConfig {
            extrapolation: kappa,
            rfba_gap_steps: gaps,
            ..cfg(kind, steps)
        };
        let out = run(&mut Gaussian { kind, s2 }, &[1.0], &[0], &c);
        let what = format!("{kind} s2={s2} N={steps} kappa={kappa} gaps={gaps:?}");
        assert_printed7(&predictions(&out), want, &what);
        assert_eq!(out.sample[0], *predictions(&out).last().unwrap(), "{what}: output = last raw prediction");
        assert_eq!(out.nfe, steps);
        if kappa > 0.0 {
            // Extrapolation starts at the third evaluation and affects only the next input:
            // for N = 4 only the 4th value changes.
            let plain = run(&mut Gaussian { kind, s2 }, &[1.0], &[0], &SamplerConfig { extrapolation: 0.0, ..c });
            assert_eq!(predictions(&plain)[..3], predictions(&out)[..3], "{what}");
            assert_ne!(predictions(&plain)[3], predictions(&out)[3], "{what}");
        }
    }
}

/// §8.20: a network that outputs 0 returns the input noise bit for bit (Linear, ρ = 0).
#[test]
fn zero_network_returns_the_noise() {
    let z: Vec<f32> = Rng::new(5).normal_f32(2 * 3 * 4 * 4);
    for (steps, kappa) in [(1, 0.0), (4, 0.0), (4, 0.5), (9, 0.3)] {
        let c = SamplerConfig {
            extrapolation: kappa,
            ..cfg(TransportKind::Linear, steps)
        };
        let out = run(&mut Zero { shape: [3, 4, 4] }, &z, &[0, 4], &c);
        assert_eq!(out.sample, z, "N={steps} kappa={kappa}");
        let traj = out.trajectory.unwrap();
        for (j, entry) in traj.chunks(z.len()).enumerate() {
            assert_eq!(entry, &z[..], "N={steps} kappa={kappa}: trajectory entry {j}");
        }
    }
}

/// §8.11: with ρ = 0 the RNG is never touched and does not matter.
#[test]
fn deterministic_sampling_ignores_the_rng() {
    let z: Vec<f32> = Rng::new(9).normal_f32(8);
    let c = SamplerConfig {
        extrapolation: 0.5,
        ..cfg(TransportKind::TrigFlow, 6)
    };
    let mut a = Rng::new(1);
    let mut b = Rng::new(2);
    let out_a = sample(
        &mut Affine { shape: [2, 2, 2] },
        &z,
        &[1],
        &c,
        &mut NoiseSource::rng(&mut a),
        &mut RunControl::default(),
    )
    .unwrap();
    let out_b = sample(
        &mut Affine { shape: [2, 2, 2] },
        &z,
        &[1],
        &c,
        &mut NoiseSource::rng(&mut b),
        &mut RunControl::default(),
    )
    .unwrap();
    assert_eq!(out_a, out_b);
    assert_eq!(a.normal_f32(4), Rng::new(1).normal_f32(4), "the generator was not advanced");
    let mut none = NoiseSource::provided(&[]);
    let out_c = sample(&mut Affine { shape: [2, 2, 2] }, &z, &[1], &c, &mut none, &mut RunControl::default()).unwrap();
    assert_eq!(out_a, out_c);
    assert_eq!(none.tensors_drawn(), 0);
}

/// §8.11: with ρ > 0 one tensor of B·C·H·W draws per step, including the discarded last step.
#[test]
fn stochastic_sampling_draws_one_tensor_per_step() {
    let numel = 2 * 8;
    let z: Vec<f32> = Rng::new(9).normal_f32(numel);
    for (steps, order, rho) in [
        (1, 1, Stochasticity::Fixed(1.0)),
        (4, 1, Stochasticity::Fixed(0.5)),
        (5, 2, Stochasticity::Fixed(0.2)),
        (6, 1, Stochasticity::Sde),
    ] {
        let c = SamplerConfig {
            order,
            stochasticity: rho,
            ..cfg(TransportKind::Linear, steps)
        };
        let n = c.grid_points();
        let mut rng = Rng::new(77);
        let mut noise = NoiseSource::rng(&mut rng);
        sample(&mut Affine { shape: [2, 2, 2] }, &z, &[0, 1], &c, &mut noise, &mut RunControl::default()).unwrap();
        assert_eq!(noise.tensors_drawn(), n, "N={steps} order={order} {rho:?}");
        let mut skipped = Rng::new(77);
        skipped.normal_f32(n * numel);
        assert_eq!(
            rng.normal_f32(8),
            skipped.normal_f32(8),
            "N={steps} order={order} {rho:?}: exactly n·B·C·H·W draws"
        );
    }
}

/// Replays an order-1 run from its recorded calls with the spec's update (§3.3 step 3),
/// given ε per step and √(1−ρ), √ρ per step; returns the predicted float32 input of each
/// following evaluation.
fn replay_order1(c: &SamplerConfig, z: &[f32], calls: &[Call], eps: &[f32], mix: &dyn Fn(usize) -> (f64, f64)) -> Vec<Vec<f32>> {
    let tr = Transport::new(c.transport).unwrap();
    let grid = time_grid(c).unwrap();
    let numel = z.len();
    let mut inputs = vec![];
    for (i, call) in calls.iter().enumerate().take(calls.len() - 1) {
        assert_eq!(call.t[0], grid.native[i]);
        let (cur, next) = (tr.coefs_f32(grid.internal[i]), tr.coefs_f32(grid.internal[i + 1]));
        let (keep, noise) = mix(i);
        let x_next: Vec<f32> = (0..numel)
            .map(|k| {
                let z_hat = cur.recover_z(call.f[k], call.x[k]) as f64;
                let x_hat = cur.recover_x(call.f[k], call.x[k]) as f64;
                let fresh = eps[i * numel + k] as f64 * noise;
                (next.gamma as f64 * x_hat + next.alpha as f64 * (z_hat * keep + fresh)) as f32
            })
            .collect();
        inputs.push(x_next);
    }
    inputs
}

#[test]
fn fixed_rho_update_uses_provided_noise() {
    let z: Vec<f32> = Rng::new(3).normal_f32(8);
    let eps: Vec<f32> = Rng::new(4).normal_f32(5 * 8);
    let rho = 0.3f64;
    let c = SamplerConfig {
        stochasticity: Stochasticity::Fixed(rho),
        ..cfg(TransportKind::Linear, 5)
    };
    let mut net = Recorder::new(Affine { shape: [2, 2, 2] });
    let mut noise = NoiseSource::provided(&eps);
    sample(&mut net, &z, &[2], &c, &mut noise, &mut RunControl::default()).unwrap();
    assert_eq!(noise.tensors_drawn(), 5);
    let want = replay_order1(&c, &z, &net.calls, &eps, &|_| ((1.0 - rho).sqrt(), rho.sqrt()));
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&net.calls[i + 1].x, w, "input of evaluation {}", i + 1);
    }
    // The last step consumed a 5th tensor; provided noise for 4 steps is not enough.
    let mut short = NoiseSource::provided(&eps[..4 * 8]);
    let err = sample(&mut Affine { shape: [2, 2, 2] }, &z, &[2], &c, &mut short, &mut RunControl::default());
    assert!(matches!(err, Err(Error::InvalidArgument(_))));
}

/// §3.6: the adaptive ρ is computed at the first step (float32) and then frozen.
#[test]
fn sde_rho_is_frozen_after_the_first_step() {
    let z: Vec<f32> = Rng::new(3).normal_f32(8);
    let eps: Vec<f32> = Rng::new(4).normal_f32(6 * 8);
    let c = SamplerConfig {
        stochasticity: Stochasticity::Sde,
        ..cfg(TransportKind::Linear, 6)
    };
    let mut net = Recorder::new(Affine { shape: [2, 2, 2] });
    sample(&mut net, &z, &[2], &c, &mut NoiseSource::provided(&eps), &mut RunControl::default()).unwrap();
    let tr = Transport::new(TransportKind::Linear).unwrap();
    let rho_at = |i: usize| -> f32 {
        let (t_cur, t_next) = (net.calls[i].t[0], net.calls[i + 1].t[0]);
        let root = (t_next - t_cur).abs().sqrt() * (2.0 * tr.coefs_f32(t_cur).alpha).sqrt() / tr.coefs_f32(t_next).alpha;
        (root * root).clamp(0.0, 1.0)
    };
    let rho0 = rho_at(0);
    assert!(rho0 > 0.0 && rho0 < 1.0, "first-step rho {rho0}");
    let frozen = replay_order1(&c, &z, &net.calls, &eps, &|_| ((1.0 - rho0).sqrt() as f64, rho0.sqrt() as f64));
    for (i, w) in frozen.iter().enumerate() {
        assert_eq!(&net.calls[i + 1].x, w, "input of evaluation {}", i + 1);
    }
    // A per-step recomputed rho would have given different inputs.
    let rho2 = rho_at(2);
    assert_ne!(rho2, rho0);
    let moving = replay_order1(&c, &z, &net.calls, &eps, &|i| {
        let r = rho_at(i);
        ((1.0 - r).sqrt() as f64, r.sqrt() as f64)
    });
    assert_ne!(moving[2], frozen[2]);
}

/// §8.12: Heun with N = 5 evaluates at 0.999, 0.5, 0.5, 0.001, 0.001 (5 NFE).
#[test]
fn heun_evaluation_times() {
    let mut net = Recorder::new(Gaussian {
        kind: TransportKind::Linear,
        s2: 1.0,
    });
    let out = run(
        &mut net,
        &[1.0],
        &[0],
        &SamplerConfig {
            order: 2,
            ..cfg(TransportKind::Linear, 5)
        },
    );
    let times: Vec<f32> = net.calls.iter().map(|c| c.t[0]).collect();
    assert_printed7(&times, &[0.999, 0.5, 0.5, 0.001, 0.001], "Heun N=5 times");
    assert_eq!(out.nfe, 5);
    assert_eq!(predictions(&out).len(), 3);
    // The first correction scales x by G(0.5)/G(0.999) (float32 G), i.e. about 500.
    let tr = Transport::new(TransportKind::Linear).unwrap();
    let ratio = tr.coefs_f32(times[1]).gamma as f64 / tr.coefs_f32(times[0]).gamma as f64;
    assert!((ratio - 500.0).abs() < 0.05, "G(0.5)/G(0.999) = {ratio}");
    // NFE = 2n − 1 for order 2.
    for (steps, nfe) in [(1, 1), (2, 1), (3, 3), (4, 3), (6, 5), (8, 7)] {
        let out = run(
            &mut Gaussian {
                kind: TransportKind::Linear,
                s2: 1.0,
            },
            &[1.0],
            &[0],
            &SamplerConfig {
                order: 2,
                ..cfg(TransportKind::Linear, steps)
            },
        );
        assert_eq!(out.nfe, nfe, "N={steps}");
    }
}

/// §3.3 step 4, replayed exactly: x_next = x·G(t_n)/G(t_c) + (A(t_n) − G(t_n)·A(t_c)/G(t_c))·(½ẑ + ½ẑ′)
/// with ẑ the extrapolated first-stage value, G and A float32, the bracket a float32
/// expression, the rest float64.
#[test]
fn heun_correction_follows_the_exact_formula() {
    for kind in [TransportKind::Linear, TransportKind::TrigFlow, TransportKind::ReLinear] {
        let z: Vec<f32> = Rng::new(21).normal_f32(6);
        let kappa = 0.4;
        let c = SamplerConfig {
            order: 2,
            extrapolation: kappa,
            ..cfg(kind, 7)
        };
        let mut net = Recorder::new(Affine { shape: [1, 2, 3] });
        let out = run(&mut net, &z, &[3], &c);
        assert_eq!(net.calls.len(), 7);
        let tr = Transport::new(kind).unwrap();
        let grid = time_grid(&c).unwrap();
        let recover = |call: &Call, t_internal: f32| -> (Vec<f64>, Vec<f64>) {
            assert_eq!(call.t[0], tr.native_time(t_internal));
            let co = tr.coefs_f32(t_internal);
            let sign = if tr.is_flipped() { -1.0 } else { 1.0 };
            let xs = call.f.iter().zip(&call.x).map(|(&f, &x)| co.recover_x(sign * f, x) as f64).collect();
            let zs = call.f.iter().zip(&call.x).map(|(&f, &x)| co.recover_z(sign * f, x) as f64).collect();
            (xs, zs)
        };
        let mut x: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let (mut prev_x, mut prev_z): (Vec<f64>, Vec<f64>) = (vec![], vec![]);
        for i in 0..4 {
            let first = &net.calls[2 * i];
            assert_eq!(first.x, x.iter().map(|&v| v as f32).collect::<Vec<_>>(), "{kind}: first-stage input {i}");
            if i == 3 {
                break;
            }
            let second = &net.calls[2 * i + 1];
            let (t_cur, t_next) = (grid.internal[i], grid.internal[i + 1]);
            let (mut x_hat, mut z_hat) = recover(first, t_cur);
            if i >= 2 {
                for k in 0..x.len() {
                    let (rx, rz) = (x_hat[k], z_hat[k]);
                    x_hat[k] = rx + kappa * (rx - prev_x[k]);
                    z_hat[k] = rz + kappa * (rz - prev_z[k]);
                }
            }
            (prev_x, prev_z) = recover(first, t_cur);
            let (cur, next) = (tr.coefs_f32(t_cur), tr.coefs_f32(t_next));
            let euler: Vec<f32> = (0..x.len())
                .map(|k| (next.gamma as f64 * x_hat[k] + next.alpha as f64 * (z_hat[k] * 1.0 + 0.0)) as f32)
                .collect();
            assert_eq!(second.x, euler, "{kind}: Heun-stage input {i}");
            let (_, z_pri) = recover(second, t_next);
            let bracket = (next.alpha - next.gamma * cur.alpha / cur.gamma) as f64;
            x = (0..x.len())
                .map(|k| x[k] * next.gamma as f64 / cur.gamma as f64 + bracket * (0.5 * z_hat[k] + 0.5 * z_pri[k]))
                .collect();
        }
        assert_eq!(out.nfe, 7);
    }
}

#[test]
fn heun_rejects_a_grid_that_divides_by_a_zero_gamma() {
    // Gaps [0, 0] put the first point at t = 1 where Linear's γ = 0; the Heun correction
    // would divide by it.
    let c = SamplerConfig {
        order: 2,
        rfba_gap_steps: [0.0, 0.0],
        ..cfg(TransportKind::Linear, 5)
    };
    let err = sample(
        &mut Zero { shape: [1, 1, 1] },
        &[0.5],
        &[0],
        &c,
        &mut NoiseSource::provided(&[]),
        &mut RunControl::default(),
    );
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
    // Order 1 on the same grid is fine.
    let c1 = SamplerConfig { order: 1, ..c };
    assert!(sample(
        &mut Zero { shape: [1, 1, 1] },
        &[0.5],
        &[0],
        &c1,
        &mut NoiseSource::provided(&[]),
        &mut RunControl::default()
    )
    .is_ok());
}

/// §3.8: guidance in F space with a doubled batch [x; x], labels [y; null], applied on
/// the native time interval with both ends inclusive.
#[test]
fn guidance_interval_is_inclusive_and_uses_a_doubled_batch() {
    let z: Vec<f32> = Rng::new(8).normal_f32(2 * 3);
    let labels = [1usize, 4];
    let null = 5;
    // Gaps [0, 0] give the exact grid 1.0, 0.75, 0.5, 0.25.
    let c = SamplerConfig {
        cfg_scale: 2.5,
        cfg_interval: [0.25, 0.75],
        rfba_gap_steps: [0.0, 0.0],
        ..cfg(TransportKind::Linear, 4)
    };
    let mut net = Recorder::new(Affine { shape: [1, 1, 3] });
    let out = run(&mut net, &z, &labels, &c);
    assert_eq!(out.nfe, 4);
    assert_eq!(out.guided_evals, 3);
    let times: Vec<f32> = net.calls.iter().map(|c| c.t[0]).collect();
    assert_eq!(times, vec![1.0, 0.75, 0.5, 0.25]);
    assert_eq!(net.calls[0].labels, labels, "t = 1.0 is outside [0.25, 0.75]: conditional batch only");
    for call in &net.calls[1..] {
        assert_eq!(call.labels, vec![1, 4, null, null]);
        assert_eq!(call.x[..6], call.x[6..], "[x; x]");
        assert_eq!(call.t, vec![call.t[0]; 4]);
    }
    // F = F_u + s·(F_c − F_u) in float32, then x̂ = (αF − α̂x)/Δ in float32.
    let tr = Transport::new(TransportKind::Linear).unwrap();
    let last = net.calls.last().unwrap();
    let co = tr.coefs_f32(last.t[0]);
    let want: Vec<f32> = (0..6)
        .map(|k| {
            let (fc, fu) = (last.f[k], last.f[6 + k]);
            co.recover_x(fu + 2.5f32 * (fc - fu), last.x[k])
        })
        .collect();
    assert_eq!(out.sample, want);
    // Scale 0: no guidance at all.
    let mut plain = Recorder::new(Affine { shape: [1, 1, 3] });
    let out0 = run(&mut plain, &z, &labels, &SamplerConfig { cfg_scale: 0.0, ..c });
    assert_eq!(out0.guided_evals, 0);
    assert!(plain.calls.iter().all(|call| call.labels == labels));
}

/// The interval is tested in the network's native time, also for the flipped ReLinear.
#[test]
fn guidance_interval_uses_native_time_for_relinear() {
    let c = SamplerConfig {
        cfg_scale: 1.5,
        cfg_interval: [0.0, 0.5],
        rfba_gap_steps: [0.0, 0.0],
        ..cfg(TransportKind::ReLinear, 4)
    };
    let grid = time_grid(&c).unwrap();
    assert_eq!(grid.native, vec![0.0, 0.25, 0.5, 0.75]);
    let mut net = Recorder::new(Affine { shape: [1, 1, 2] });
    let out = run(&mut net, &[0.3, -0.2], &[2], &c);
    let guided: Vec<bool> = net.calls.iter().map(|call| call.labels.len() == 2).collect();
    assert_eq!(guided, vec![true, true, true, false]);
    assert_eq!(out.guided_evals, 3);
    assert_eq!(out.model_times, grid.native);
}

/// Cancellation through the progress callback and through the cancel flag.
#[test]
fn cancel_stops_with_cancelled() {
    let z = [0.1f32, 0.2];
    let c = cfg(TransportKind::Linear, 6);
    let mut net = Recorder::new(Affine { shape: [1, 1, 2] });
    let mut seen = vec![];
    let mut stop_after_two = |done: usize, total: usize| {
        seen.push((done, total));
        done < 2
    };
    let mut ctl = RunControl {
        cancel: None,
        progress: Some(&mut stop_after_two),
    };
    let err = sample(&mut net, &z, &[0], &c, &mut NoiseSource::provided(&[]), &mut ctl);
    assert!(matches!(err, Err(Error::Cancelled)), "{err:?}");
    assert_eq!(net.calls.len(), 2);
    assert_eq!(seen, vec![(1, 6), (2, 6)]);

    let flag = Arc::new(AtomicBool::new(true));
    let mut net = Recorder::new(Affine { shape: [1, 1, 2] });
    let mut ctl = RunControl {
        cancel: Some(flag.clone()),
        progress: None,
    };
    assert!(matches!(
        sample(&mut net, &z, &[0], &c, &mut NoiseSource::provided(&[]), &mut ctl),
        Err(Error::Cancelled)
    ));
    assert!(net.calls.is_empty(), "a set flag stops before the first evaluation");

    flag.store(false, Ordering::Relaxed);
    let mut ctl = RunControl {
        cancel: Some(flag.clone()),
        progress: None,
    };
    assert!(sample(&mut Affine { shape: [1, 1, 2] }, &z, &[0], &c, &mut NoiseSource::provided(&[]), &mut ctl).is_ok());
}

/// Mismatched inputs are rejected, never a panic.
#[test]
fn bad_inputs_are_rejected() {
    let c = cfg(TransportKind::Linear, 3);
    let mut net = Affine { shape: [1, 1, 2] };
    let mut go = |z: &[f32], labels: &[usize], c: &SamplerConfig| sample(&mut net, z, labels, c, &mut NoiseSource::provided(&[]), &mut RunControl::default());
    assert!(matches!(go(&[0.1, 0.2, 0.3], &[0], &c), Err(Error::InvalidArgument(_))), "z length");
    assert!(matches!(go(&[], &[], &c), Err(Error::InvalidArgument(_))), "empty batch");
    assert!(matches!(go(&[0.1, 0.2], &[6], &c), Err(Error::InvalidArgument(_))), "label > K");
    assert!(go(&[0.1, 0.2], &[5], &c).is_ok(), "label K (null) is allowed");
    assert!(matches!(go(&[0.1, f32::NAN], &[0], &c), Err(Error::NonFinite(_))), "NaN noise");
    assert!(matches!(
        go(&[0.1, 0.2], &[0], &SamplerConfig { steps: 0, ..c.clone() }),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        go(&[0.1, 0.2], &[0], &SamplerConfig { order: 3, ..c.clone() }),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        go(
            &[0.1, 0.2],
            &[0],
            &SamplerConfig {
                stochasticity: Stochasticity::Fixed(2.0),
                ..c.clone()
            }
        ),
        Err(Error::InvalidArgument(_))
    ));

    struct Broken;
    impl Denoiser for Broken {
        fn sample_shape(&self) -> [usize; 3] {
            [1, 1, 1]
        }
        fn num_classes(&self) -> usize {
            1
        }
        fn eval(&mut self, _x: &[f32], _t: &[f32], _labels: &[usize], out: &mut [f32]) -> Result<()> {
            out.fill(f32::INFINITY);
            Ok(())
        }
    }
    let err = sample(&mut Broken, &[0.5], &[0], &c, &mut NoiseSource::provided(&[]), &mut RunControl::default());
    assert!(matches!(err, Err(Error::NonFinite(_))), "{err:?}");
}

/// §8.10 in the form that matters here: ReLinear sampled through the v2 flip equals the
/// v1 computation (native coefficients, grid τ = K(u), no flip) up to float32 rounding of
/// the two time conventions.
#[test]
fn relinear_v2_flip_matches_the_v1_computation() {
    for ctrl in [[1.0, 1.0, 1.0], [1.17, 0.8, 1.1]] {
        let c = SamplerConfig {
            time_dist_ctrl: ctrl,
            extrapolation: 0.5,
            ..cfg(TransportKind::ReLinear, 6)
        };
        let out = run(
            &mut Gaussian {
                kind: TransportKind::ReLinear,
                s2: 0.5,
            },
            &[1.0],
            &[0],
            &c,
        );
        // v1: native ReLinear in native time, grid τ = K(u) directly, sentinel 0.
        let kind = TransportKind::ReLinear;
        let mut times: Vec<f32> = linspace_f64(0.001, 0.999, 6).iter().map(|&u| kumaraswamy_f32(u as f32, ctrl)).collect();
        times.push(0.0);
        let mut net = Gaussian { kind, s2: 0.5 };
        let mut x = 1.0f64;
        let (mut prev, mut v1) = ((0.0, 0.0), vec![]);
        for i in 0..6 {
            let (t_cur, t_next) = (times[i], times[i + 1]);
            let mut f = [0f32];
            net.eval(&[x as f32], &[t_cur], &[0], &mut f).unwrap();
            let co = kind.coefs_f32(t_cur);
            let (rx, rz) = (co.recover_x(f[0], x as f32) as f64, co.recover_z(f[0], x as f32) as f64);
            v1.push(rx as f32);
            let (mut xh, mut zh) = (rx, rz);
            if i >= 2 {
                xh = rx + 0.5 * (rx - prev.0);
                zh = rz + 0.5 * (rz - prev.1);
            }
            prev = (rx, rz);
            let cn = kind.coefs_f32(t_next);
            x = cn.gamma as f64 * xh + cn.alpha as f64 * zh;
        }
        for (j, (&a, &b)) in predictions(&out).iter().zip(&v1).enumerate() {
            // The two conventions round the grid differently (1 − (1 − K(u)) vs K(u)): a
            // few float32 ulps.
            assert!((a - b).abs() <= 4.0 * f32::EPSILON * b.abs(), "{ctrl:?} [{j}]: v2 {a} vs v1 {b}");
        }
    }
}
