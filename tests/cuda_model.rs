//! Whole networks on the CUDA backend: tiny SiT, TiT, LightningDiT and DDT forward and per-parameter
//! gradients against `Model<CpuBackend>` (NMSE ≤ 1e-8), the reference tensors of
//! `../shared/reference` (every `F_t*`, rel-L2 ≤ 1e-5), a few sampling steps and AdamW
//! training steps against the CPU (NMSE ≤ 1e-6), and bit-reproducibility of a training
//! step. Each test skips itself where CUDA is unavailable unless `UCGM_REQUIRE_CUDA=1`.
#![cfg(feature = "cuda")]

mod cuda_support;

use cuda_support::*;
use ucgm::backend::cuda::CudaBackend;
use ucgm::backend::OptimHp;
use ucgm::control::RunControl;
use ucgm::sampler::{sample, NoiseSource, SamplerConfig, Stochasticity};
use ucgm::tensor_file::TensorFile;
use ucgm::transport::TransportKind;
use ucgm::{Arch, Backend, CpuBackend, Model, ModelConfig, ParamLayout, Rng};

/// The gradient-check network (odd sizes: 3 channels, 2 heads of 8) and the reference one.
fn configs(arch: Arch) -> Vec<ModelConfig> {
    vec![
        ModelConfig {
            arch,
            input_size: 4,
            in_channels: 3,
            patch: 2,
            hidden: 16,
            depth: 2,
            heads: 2,
            num_classes: 3,
        },
        ModelConfig::reference_tiny(arch),
    ]
}

/// Random parameters, N(0, 0.15²) for every tensor (zero-initialised ones included, so
/// every path carries signal).
///
/// The scale matters: the thresholds of design.md §5.3 compare two f32 computations, which
/// only means something where f32 itself is accurate. At N(0, 0.3²) the tiny SiT's
/// activations blow up through the adaLN modulation, attention saturates, and the f32 CPU
/// gradients are already 3e-3 (NMSE) away from the f64 CPU ones — any two f32 backends then
/// disagree by as much. Each comparison below therefore first checks, against the f64 CPU
/// backend, that the inputs are well-conditioned (`assert_well_conditioned`).
fn random_params(cfg: &ModelConfig, seed: u64) -> Vec<f32> {
    let n = ParamLayout::for_config(cfg).total();
    Rng::new(seed).normal_f32(n).into_iter().map(|v| v * 0.15).collect()
}

/// Fails unless the f32 CPU result is within `threshold / 100` (NMSE) of the f64 CPU one:
/// a CPU-vs-CUDA comparison at `threshold` is then a statement about the CUDA backend, not
/// about rounding in an ill-conditioned computation.
fn assert_well_conditioned(what: &str, cpu_f32: &[f32], cpu_f64: &[f32], threshold: f64) {
    let e = nmse(cpu_f32, cpu_f64);
    eprintln!("{what}: f32 CPU vs f64 CPU NMSE {e:.3e}");
    assert!(
        e <= threshold / 100.0,
        "{what}: the test inputs are ill-conditioned (f32 CPU vs f64 CPU NMSE {e:.3e})"
    );
}

/// The f64 CPU backend (the accuracy anchor).
fn cpu64() -> CpuBackend<f64> {
    CpuBackend::<f64>::new(2).expect("cpu backend")
}

/// Forward (inference and training) and backward on both backends; compares outputs,
/// ∂L/∂x and every parameter tensor's gradient.
fn forward_and_grads(be: &CudaBackend, cfg: &ModelConfig, seed: u64) {
    let params = random_params(cfg, seed);
    let mut gm = Model::from_params(cfg.clone(), be.clone(), &params).unwrap();
    let mut cm = Model::from_params(cfg.clone(), cpu(), &params).unwrap();
    let mut fm = Model::from_params(cfg.clone(), cpu64(), &params).unwrap();
    let b = 3;
    let n = b * cfg.image_len();
    let x = randn(seed + 1, n);
    let t = [0.05f32, 0.5, 0.97];
    let labels = [0usize, cfg.num_classes, 1];
    let dout = randn(seed + 2, n);
    let tag = format!("{:?} d{} p{}", cfg.arch, cfg.hidden, cfg.patch);

    let (mut out_g, mut out_c) = (vec![f32::NAN; n], vec![0f32; n]);
    gm.forward(&x, &t, &labels, &mut out_g).unwrap();
    cm.forward(&x, &t, &labels, &mut out_c).unwrap();
    assert_nmse(&format!("{tag} inference output"), &out_g, &out_c, WHOLE_MODEL);

    gm.zero_grads().unwrap();
    cm.zero_grads().unwrap();
    gm.forward_train(&x, &t, &labels, &mut out_g).unwrap();
    cm.forward_train(&x, &t, &labels, &mut out_c).unwrap();
    assert_nmse(&format!("{tag} training output"), &out_g, &out_c, WHOLE_MODEL);
    let (mut dx_g, mut dx_c) = (vec![f32::NAN; n], vec![0f32; n]);
    gm.backward(&dout, Some(&mut dx_g)).unwrap();
    cm.backward(&dout, Some(&mut dx_c)).unwrap();
    let (mut out_f, mut dx_f) = (vec![0f32; n], vec![0f32; n]);
    fm.zero_grads().unwrap();
    fm.forward_train(&x, &t, &labels, &mut out_f).unwrap();
    fm.backward(&dout, Some(&mut dx_f)).unwrap();
    assert_well_conditioned(&format!("{tag} dx"), &dx_c, &dx_f, WHOLE_MODEL);
    assert_nmse(&format!("{tag} dx"), &dx_g, &dx_c, WHOLE_MODEL);
    let (gg, gc, gf) = (gm.read_grads().unwrap(), cm.read_grads().unwrap(), fm.read_grads().unwrap());
    assert_well_conditioned(&format!("{tag} all gradients"), &gc, &gf, WHOLE_MODEL);
    for e in gm.layout().entries() {
        let r = e.range();
        let err = nmse(&gg[r.clone()], &gc[r]);
        assert!(err <= WHOLE_MODEL, "{tag} gradient of {}: NMSE {err:.3e}", e.name);
    }
    assert_nmse(&format!("{tag} all gradients"), &gg, &gc, WHOLE_MODEL);
}

#[test]
fn sit_forward_and_gradients_match_cpu() {
    let Some(be) = gpu("sit_forward_and_gradients_match_cpu") else { return };
    for cfg in configs(Arch::Sit) {
        forward_and_grads(&be, &cfg, 11);
    }
}

#[test]
fn lightningdit_forward_and_gradients_match_cpu() {
    let Some(be) = gpu("lightningdit_forward_and_gradients_match_cpu") else {
        return;
    };
    for cfg in configs(Arch::LightningDit) {
        forward_and_grads(&be, &cfg, 13);
    }
}

#[test]
fn ddt_forward_and_gradients_match_cpu() {
    let Some(be) = gpu("ddt_forward_and_gradients_match_cpu") else { return };
    // depth 2: one encoder block (per-image modulation), one decoder block (per token).
    for cfg in configs(Arch::Ddt { encoder_depth: 1 }) {
        forward_and_grads(&be, &cfg, 14);
    }
}

/// The zoo's reference tensors (`../shared/reference/zoo`) on CUDA: every `F_t*` of the
/// tiny LightningDiT and DDT, rel-L2 ≤ 1e-5.
#[test]
fn zoo_reference_outputs_reproduced() {
    let Some(be) = gpu("zoo_reference_outputs_reproduced") else { return };
    let ddt = ModelConfig {
        arch: Arch::Ddt { encoder_depth: 2 },
        input_size: 8,
        in_channels: 4,
        patch: 2,
        hidden: 64,
        depth: 3,
        heads: 4,
        num_classes: 10,
    };
    for family in ["lightningdit", "ddt"] {
        let dir = reference("zoo");
        let w = dir.join(format!("{family}_tiny_weights.safetensors"));
        let mut m = match family {
            "ddt" => Model::load_with_config(&w, ddt.clone(), be.clone()).unwrap(),
            _ => Model::load(&w, be.clone(), None).unwrap(),
        };
        let f = TensorFile::open(dir.join(format!("{family}_tiny_io.safetensors"))).unwrap();
        let z = f.f32("z").unwrap().1;
        let labels: Vec<usize> = f.i64("y").unwrap().1.iter().map(|&v| v as usize).collect();
        for tname in ["0.0", "0.25", "0.5", "0.999", "1.0"] {
            let tv: f32 = tname.parse().unwrap();
            let mut out = vec![f32::NAN; z.len()];
            m.forward(&z, &[tv, tv], &labels, &mut out).unwrap();
            let e = rel_l2(&out, &f.f32(&format!("F_t{tname}")).unwrap().1);
            assert!(e <= 1e-5, "{family} F_t{tname} on CUDA: rel-L2 {e:.3e}");
        }
    }
}

/// The EDM2 UNet on CUDA: every `F_t*` and `F_t0.5_uncond` of the zoo's reference, rel-L2
/// ≤ 1e-5.
#[test]
fn edm2_reference_outputs_reproduced() {
    use ucgm::model::edm2::Edm2;
    let Some(be) = gpu("edm2_reference_outputs_reproduced") else { return };
    let dir = reference("zoo");
    let mut m = Edm2::load(dir.join("edm2_tiny_weights.safetensors"), be, None).unwrap();
    let f = TensorFile::open(dir.join("edm2_tiny_io.safetensors")).unwrap();
    let z = f.f32("z").unwrap().1;
    let labels: Vec<usize> = f.i64("y").unwrap().1.iter().map(|&v| v as usize).collect();
    let mut out = vec![f32::NAN; z.len()];
    for tname in ["0.0", "0.25", "0.5", "0.999", "1.0"] {
        let tv: f32 = tname.parse().unwrap();
        m.forward(&z, &[tv, tv], &labels, &mut out).unwrap();
        let e = rel_l2(&out, &f.f32(&format!("F_t{tname}")).unwrap().1);
        assert!(e <= 1e-5, "edm2 F_t{tname} on CUDA: rel-L2 {e:.3e}");
    }
    m.forward(&z, &[0.5, 0.5], &[10, 10], &mut out).unwrap();
    let e = rel_l2(&out, &f.f32("F_t0.5_uncond").unwrap().1);
    assert!(e <= 1e-5, "edm2 F_t0.5_uncond on CUDA: rel-L2 {e:.3e}");
}

#[test]
fn tit_forward_and_gradients_match_cpu() {
    let Some(be) = gpu("tit_forward_and_gradients_match_cpu") else { return };
    for cfg in configs(Arch::Tit) {
        forward_and_grads(&be, &cfg, 12);
    }
}

fn rel_l2(out: &[f32], want: &[f32]) -> f64 {
    let num: f64 = out.iter().zip(want).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Every reference `F_t*` (and `F_t0.5_null`) reproduced by `be` within rel-L2 `bound`;
/// with `floor`, also *not* closer than it (a lower-precision path must really have run).
fn reference_outputs(be: &CudaBackend, what: &str, bound: f64, floor: Option<f64>) {
    for prefix in ["sit", "tit"] {
        let mut model = Model::load(reference(&format!("{prefix}_tiny_weights.safetensors")), be.clone(), Some(4)).unwrap();
        let f = TensorFile::open(reference(&format!("{prefix}_tiny_sampler.safetensors"))).unwrap();
        let (_, z) = f.f32("z").unwrap();
        let labels: Vec<usize> = f.i64("y").unwrap().1.iter().map(|&v| v as usize).collect();
        let null = vec![model.config().num_classes; labels.len()];
        let mut out = vec![f32::NAN; z.len()];
        for tname in ["0.0", "0.25", "0.5", "0.999", "1.0", "0.5_null"] {
            let tv: f32 = tname.trim_end_matches("_null").parse().unwrap();
            let y = if tname.ends_with("_null") { &null } else { &labels };
            model.forward(&z, &[tv, tv], y, &mut out).unwrap();
            let (_, want) = f.f32(&format!("F_t{tname}")).unwrap();
            let e = rel_l2(&out, &want);
            eprintln!("{prefix} {what} F_t{tname}: rel-L2 {e:.3e}");
            assert!(e <= bound, "{prefix} {what} F_t{tname}: rel-L2 {e:.3e} > {bound:.0e}");
            if let Some(floor) = floor {
                assert!(
                    e > floor,
                    "{prefix} {what} F_t{tname}: rel-L2 {e:.3e} is f32 accuracy: the {what} path did not run"
                );
            }
        }
    }
}

#[test]
fn reference_outputs_reproduced() {
    let Some(be) = gpu("reference_outputs_reproduced") else { return };
    reference_outputs(&be, "f32", 1e-5, None);
}

/// bf16 mixed precision reproduces the reference tensors within rel-L2 1e-2 (the issue's
/// bf16 bound), and is measurably not f32 (so the bf16 path really ran).
#[test]
fn bf16_reference_outputs_reproduced() {
    let Some(be) = gpu_with("bf16_reference_outputs_reproduced", bf16_options()) else {
        return;
    };
    reference_outputs(&be, "bf16", 1e-2, Some(1e-5));
}

/// bf16 mixed precision on the whole tiny networks against the f32 CPU: the output within
/// the bf16 threshold of design.md §5.3 (NMSE 1e-4); ∂L/∂x and the parameter gradients
/// within NMSE 1e-3 (rel-L2 ≈ 3%). The gradient bound is wider because the backward
/// chains twice as many rounded products as the forward (each backward product rounds
/// both the incoming gradient and a weight or activation to 8 significant bits), and the
/// op-level tests in cuda_ops.rs already pin the bf16 products exactly (equal to the f32
/// op on bf16-rounded operands at the f32 threshold); this test checks that the whole
/// network runs in bf16 without error growth beyond bf16 rounding.
const BF16_WHOLE_BACKWARD: f64 = 1e-3;

#[test]
fn bf16_forward_and_gradients_close_to_f32() {
    let Some(be) = gpu_with("bf16_forward_and_gradients_close_to_f32", bf16_options()) else {
        return;
    };
    for arch in [Arch::Sit, Arch::Tit] {
        let cfg = ModelConfig::reference_tiny(arch);
        let params = random_params(&cfg, 41);
        let mut gm = Model::from_params(cfg.clone(), be.clone(), &params).unwrap();
        let mut cm = Model::from_params(cfg.clone(), cpu(), &params).unwrap();
        let b = 3;
        let n = b * cfg.image_len();
        let (x, dout) = (randn(42, n), randn(43, n));
        let (t, labels) = ([0.05f32, 0.5, 0.97], [0usize, cfg.num_classes, 1]);
        let (mut og, mut oc) = (vec![f32::NAN; n], vec![0f32; n]);
        gm.zero_grads().unwrap();
        cm.zero_grads().unwrap();
        gm.forward_train(&x, &t, &labels, &mut og).unwrap();
        cm.forward_train(&x, &t, &labels, &mut oc).unwrap();
        assert_nmse(&format!("{arch:?} bf16 output"), &og, &oc, BF16);
        let (mut dg, mut dc) = (vec![f32::NAN; n], vec![0f32; n]);
        gm.backward(&dout, Some(&mut dg)).unwrap();
        cm.backward(&dout, Some(&mut dc)).unwrap();
        assert_nmse(&format!("{arch:?} bf16 dx"), &dg, &dc, BF16_WHOLE_BACKWARD);
        assert_nmse(
            &format!("{arch:?} bf16 all gradients"),
            &gm.read_grads().unwrap(),
            &cm.read_grads().unwrap(),
            BF16_WHOLE_BACKWARD,
        );
    }
}

#[test]
fn sampling_matches_cpu_and_reference() {
    let Some(be) = gpu("sampling_matches_cpu_and_reference") else { return };
    for prefix in ["sit", "tit"] {
        let w = reference(&format!("{prefix}_tiny_weights.safetensors"));
        let mut gm = Model::load(&w, be.clone(), Some(4)).unwrap();
        let mut cm = Model::load(&w, CpuBackend::<f32>::new(2).unwrap(), Some(4)).unwrap();
        let f = TensorFile::open(reference(&format!("{prefix}_tiny_sampler.safetensors"))).unwrap();
        let (_, z) = f.f32("z").unwrap();
        let labels: Vec<usize> = f.i64("y").unwrap().1.iter().map(|&v| v as usize).collect();
        for (run, transport, steps) in [("lin_s4", TransportKind::Linear, 4), ("trigflow_s4", TransportKind::TrigFlow, 4)] {
            let cfg = SamplerConfig {
                transport,
                steps,
                order: 1,
                stochasticity: Stochasticity::Fixed(0.0),
                extrapolation: 0.0,
                time_dist_ctrl: [1.0, 1.0, 1.0],
                rfba_gap_steps: [0.001, 0.001],
                cfg_scale: 0.0,
                cfg_interval: [0.0, 1.0],
                cfg_channels: None,
                return_trajectory: true,
            };
            let g = sample(&mut gm, &z, &labels, &cfg, &mut NoiseSource::provided(&[]), &mut RunControl::default()).unwrap();
            let c = sample(&mut cm, &z, &labels, &cfg, &mut NoiseSource::provided(&[]), &mut RunControl::default()).unwrap();
            assert_nmse(
                &format!("{prefix} {run} trajectory vs CPU"),
                g.trajectory.as_ref().unwrap(),
                c.trajectory.as_ref().unwrap(),
                STEPS,
            );
            let (_, want) = f.f32(&format!("{run}__samples")).unwrap();
            let e = rel_l2(g.trajectory.as_ref().unwrap(), &want);
            eprintln!("{prefix} {run}: rel-L2 vs reference {e:.3e}");
            assert!(e <= 1e-5, "{prefix} {run}: rel-L2 {e:.3e} against the reference");
        }
    }
}

/// A few plain training steps (forward, backward with dL/dF = F − x, AdamW through the
/// backend) on both backends.
///
/// AdamW's ε is 1e-6, not the usual 1e-8: some parameters have a gradient that is exactly
/// zero in exact arithmetic (the key bias: softmax ignores a constant added to a row of
/// logits), so every implementation computes rounding noise of ~1e-10 there, and with
/// ε = 1e-8 Adam's m̂/√v̂ turns that noise into full ±lr steps — the f32 and f64 CPU runs
/// then differ by ~1e-7 NMSE after 4 steps. ε = 1e-6 damps updates of gradients below
/// ~1e-7 and leaves every real gradient's update unchanged to < 0.1%.
fn train_steps<B: Backend + Clone>(be: B, cfg: &ModelConfig, params: &[f32], steps: u64) -> (Vec<f32>, Vec<f32>) {
    let mut model = Model::from_params(cfg.clone(), be.clone(), params).unwrap();
    let n = params.len();
    let mut m = be.zeros(n).unwrap();
    let mut v = be.zeros(n).unwrap();
    let hp = OptimHp {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-6,
        weight_decay: 0.01,
    };
    let b = 4;
    let mut last_out = Vec::new();
    for step in 1..=steps {
        let x = randn(100 + step, b * cfg.image_len());
        let t = [0.1f32, 0.4, 0.7, 0.95];
        let labels = [0usize, 1, 2, cfg.num_classes];
        let mut out = vec![0f32; x.len()];
        model.zero_grads().unwrap();
        model.forward_train(&x, &t, &labels, &mut out).unwrap();
        let dout: Vec<f32> = out.iter().zip(&x).map(|(o, x)| o - x).collect();
        model.backward(&dout, None).unwrap();
        let (p, g) = model.params_and_grads_mut().unwrap();
        be.adamw_step(be.dst(p, 0..n), be.src(g, 0..n), be.dst(&mut m, 0..n), be.dst(&mut v, 0..n), &hp, step);
        last_out = out;
    }
    (model.read_params().unwrap(), last_out)
}

#[test]
fn training_steps_match_cpu() {
    let Some(be) = gpu("training_steps_match_cpu") else { return };
    for arch in [Arch::Sit, Arch::Tit] {
        let cfg = ModelConfig::reference_tiny(arch);
        let params = random_params(&cfg, 21);
        let (pg, og) = train_steps(be.clone(), &cfg, &params, 4);
        let (pc, oc) = train_steps(cpu(), &cfg, &params, 4);
        let (pf, of) = train_steps(cpu64(), &cfg, &params, 4);
        assert_well_conditioned(&format!("{arch:?} params after 4 AdamW steps"), &pc, &pf, STEPS);
        assert_well_conditioned(&format!("{arch:?} output at step 4"), &oc, &of, STEPS);
        assert_nmse(&format!("{arch:?} params after 4 AdamW steps"), &pg, &pc, STEPS);
        assert_nmse(&format!("{arch:?} output at step 4"), &og, &oc, STEPS);
    }
}

#[test]
fn training_step_is_bit_reproducible() {
    let Some(be) = gpu("training_step_is_bit_reproducible") else { return };
    for arch in [Arch::Sit, Arch::Tit] {
        let cfg = ModelConfig::reference_tiny(arch);
        let params = random_params(&cfg, 31);
        let a = train_steps(be.clone(), &cfg, &params, 2);
        let b = train_steps(be.clone(), &cfg, &params, 2);
        assert!(a == b, "{arch:?}: two identical training runs differ on the GPU");
    }
}

/// The tiny VAE (shared reference) on CUDA: encode and decode match the CPU and the
/// reference tensors, through chunked batches too.
#[test]
fn vae_encode_decode_match_cpu_and_reference() {
    use ucgm::model::vae::Vae;
    let Some(be) = gpu("vae_encode_decode_match_cpu_and_reference") else { return };
    let io = TensorFile::open(reference("vae_tiny_io.safetensors")).unwrap();
    let image = io.f32_shaped("image", &[2, 3, 32, 32]).unwrap();
    let z = io.f32_shaped("z", &[2, 4, 8, 8]).unwrap();
    let mut cpu = Vae::load(reference("vae_tiny_ldm.safetensors"), CpuBackend::<f32>::new(2).unwrap()).unwrap();
    let mut gpu = Vae::load(reference("vae_tiny_diffusers.safetensors"), be).unwrap();
    let (pc, pg) = (cpu.encode(&image, 2, 32, 32).unwrap(), gpu.encode(&image, 2, 32, 32).unwrap());
    assert_nmse("vae enc_mean", &pg.mean, &pc.mean, WHOLE_MODEL);
    assert_nmse("vae enc_logvar", &pg.logvar, &pc.logvar, WHOLE_MODEL);
    assert!(rel_l2(&pg.mean, &io.f32("enc_mean").unwrap().1) <= 1e-5);
    let (dc, dg) = (cpu.decode(&z, 2, 8, 8).unwrap(), gpu.decode(&z, 2, 8, 8).unwrap());
    assert_nmse("vae dec_out", &dg, &dc, WHOLE_MODEL);
    assert!(rel_l2(&dg, &io.f32("dec_out").unwrap().1) <= 1e-5);
    gpu.set_activation_budget(1);
    assert_nmse("vae dec_out one image at a time", &gpu.decode(&z, 2, 8, 8).unwrap(), &dc, WHOLE_MODEL);
}

/// The FID Inception (random weights, the real geometry) on CUDA: pool3 features and
/// logits match the CPU in both preprocessing modes, on non-square images that are
/// resized to 299×299 (the CPU path itself matches pytorch-fid in `tests/fid_inception.rs`).
#[test]
fn inception_features_match_cpu() {
    use ucgm::model::inception::{FidInception, InceptionInput};
    let Some(be) = gpu("inception_features_match_cpu") else { return };
    // One image: the network always runs at 299×299, so each image costs the host
    // emulator (CI, three thread orders) about half a minute.
    let (n, h, w) = (1, 64, 48);
    let images: Vec<f32> = randn(11, n * 3 * h * w).iter().map(|v| (0.5 + 0.25 * v).clamp(0.0, 1.0)).collect();
    for input in [InceptionInput::PytorchFid, InceptionInput::TorchFidelity] {
        let x: Vec<f32> = match input {
            InceptionInput::PytorchFid => images.clone(),
            InceptionInput::TorchFidelity => images.iter().map(|v| (v * 255.0).round()).collect(),
        };
        let cpu_net = FidInception::random(cpu(), input, 7).unwrap();
        let gpu_net = FidInception::random(be.clone(), input, 7).unwrap();
        let (c, g) = (cpu_net.forward(&x, n, h, w).unwrap(), gpu_net.forward(&x, n, h, w).unwrap());
        assert!(g.pool3.iter().all(|v| v.is_finite()));
        assert_nmse(&format!("inception pool3 ({input:?})"), &g.pool3, &c.pool3, WHOLE_MODEL);
        assert_nmse(&format!("inception logits ({input:?})"), &g.logits, &c.logits, WHOLE_MODEL);
    }
}
