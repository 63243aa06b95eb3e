//! Finite-difference gradient checks of the whole network in f64 (design.md §5.1).
//!
//! For a tiny SiT, TiT, LightningDiT and DDT (encoder and decoder blocks) with random (non-zero) weights, the loss
//! L = Σ dout ⊙ F(x, t, y) with a random dout is differentiated by central differences
//! (ε = 1e-5) at sampled entries of every parameter tensor and of the input, and compared
//! with the hand-written backward: max|fd − an| / max|an| ≤ 1e-6 per tensor.
//!
//! Why this catches a wrong backward: f64 central differences are accurate to ~1e-10
//! here, so any real mistake — a dropped (1 + scale) factor in the norm backward, a
//! missing accumulation of dsc over the blocks, a transposed weight gradient, a RoPE
//! rotated the wrong way — shows up as an O(1e-2..1) error on the tensors upstream of
//! it, five or more orders of magnitude above the threshold. Every parameter tensor is
//! sampled (first, last and random entries) so every layer's backward is exercised.

use ucgm::{Arch, CpuBackend, Model, ModelConfig, Rng};

fn tiny(arch: Arch) -> ModelConfig {
    ModelConfig {
        arch,
        input_size: 4,
        in_channels: 3,
        patch: 2,
        hidden: 16,
        depth: 2,
        heads: 2,
        num_classes: 3,
    }
}

fn random_params(model_len: usize, rng: &mut Rng) -> Vec<f32> {
    rng.normal_f32(model_len).into_iter().map(|v| v * 0.3).collect()
}

fn loss(model: &mut Model<CpuBackend<f64>>, x: &Vec<f64>, t: &[f32], labels: &[usize], dout: &[f64]) -> f64 {
    let out = model.forward_device(x, t, labels, false).unwrap();
    out.iter().zip(dout).map(|(a, b)| a * b).sum()
}

fn check(arch: Arch) {
    check_cfg(tiny(arch));
}

fn check_cfg(cfg: ModelConfig) {
    let arch = cfg.arch;
    let be = CpuBackend::<f64>::new(2).unwrap();
    let mut rng = Rng::new(11);
    let n = ucgm::ParamLayout::for_config(&cfg).total();
    let mut model = Model::from_params(cfg.clone(), be, &random_params(n, &mut rng)).unwrap();
    let b = 2;
    let x: Vec<f64> = rng.normal_f32(b * cfg.image_len()).into_iter().map(f64::from).collect();
    let t = [0.3f32, 0.8];
    let labels = [1usize, cfg.num_classes];
    let dout: Vec<f64> = rng.normal_f32(b * cfg.image_len()).into_iter().map(f64::from).collect();

    model.zero_grads().unwrap();
    model.forward_device(&x, &t, &labels, true).unwrap();
    let dx = model.backward_device(&dout, true).unwrap().unwrap().clone();
    let grads = model.grads().unwrap().clone();
    let eps = 1e-5;

    let layout = model.layout().clone();
    let mut worst = 0f64;
    for e in layout.entries() {
        let an_max = grads[e.range()].iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(an_max > 0.0, "{}: analytic gradient is identically zero", e.name);
        let mut picks = vec![0, e.len - 1];
        for _ in 0..3 {
            picks.push((rng.uniform() * e.len as f64) as usize % e.len);
        }
        let mut err = 0f64;
        for &i in &picks {
            let k = e.offset + i;
            let orig = model.params()[k];
            model.params_mut().unwrap()[k] = orig + eps;
            let lp = loss(&mut model, &x, &t, &labels, &dout);
            model.params_mut().unwrap()[k] = orig - eps;
            let lm = loss(&mut model, &x, &t, &labels, &dout);
            model.params_mut().unwrap()[k] = orig;
            let fd = (lp - lm) / (2.0 * eps);
            err = err.max((fd - grads[k]).abs());
        }
        let rel = err / an_max;
        worst = worst.max(rel);
        assert!(rel <= 1e-6, "{:?} {}: max|fd − an| / max|an| = {rel:.3e}", arch, e.name);
    }
    // Input gradient.
    let an_max = dx.iter().fold(0f64, |m, v| m.max(v.abs()));
    let mut err = 0f64;
    for i in (0..x.len()).step_by(5) {
        let mut xp = x.clone();
        xp[i] += eps;
        let lp = loss(&mut model, &xp, &t, &labels, &dout);
        xp[i] -= 2.0 * eps;
        let lm = loss(&mut model, &xp, &t, &labels, &dout);
        err = err.max(((lp - lm) / (2.0 * eps) - dx[i]).abs());
    }
    let rel = err / an_max;
    assert!(rel <= 1e-6, "{arch:?} input: {rel:.3e}");
    eprintln!("{arch:?}: worst parameter error {worst:.2e}, input error {rel:.2e}");
}

#[test]
fn sit_gradients_match_finite_differences() {
    check(Arch::Sit);
}

#[test]
fn tit_gradients_match_finite_differences() {
    check(Arch::Tit);
}

#[test]
fn lightningdit_gradients_match_finite_differences() {
    check(Arch::LightningDit);
}

#[test]
fn ddt_gradients_match_finite_differences() {
    // Two encoder blocks (per-image modulation) and one decoder block (per-token).
    check_cfg(ModelConfig {
        depth: 3,
        ..tiny(Arch::Ddt { encoder_depth: 2 })
    });
}
