//! The pre-trained families (LightningDiT, DDT) reproduce the reference PyTorch code on
//! `../shared/reference/zoo/*`: every raw forward `F_t*`, the null-label forward, the
//! guided forwards `Fcfg_t*` (the reference's `forward_with_cfg` on a stacked batch,
//! LightningDiT guiding channels 0–2 only) and every `<run>__samples` trajectory of
//! UCGM-S, each with rel-L2 ≤ 1e-5, driven through the public API as a user would.

mod common;

use common::{assert_close, reference};
use ucgm::control::RunControl;
use ucgm::denoiser::Denoiser;
use ucgm::model::weights;
use ucgm::sampler::{sample, NoiseSource, SamplerConfig, StackedGuidance, Stochasticity};
use ucgm::tensor_file::TensorFile;
use ucgm::transport::TransportKind;
use ucgm::{Arch, CpuBackend, Model, ModelConfig};

fn load(family: &str) -> Model<CpuBackend<f32>> {
    let be = CpuBackend::<f32>::new(2).unwrap();
    let path = reference(&format!("zoo/{family}_tiny_weights.safetensors"));
    match family {
        "ddt" => Model::load_with_config(path, common::ddt_tiny(), be).unwrap(),
        _ => Model::load(path, be, None).unwrap(),
    }
}

struct Io {
    f: TensorFile,
    z: Vec<f32>,
    labels: Vec<usize>,
}

fn io(family: &str) -> Io {
    let f = TensorFile::open(reference(&format!("zoo/{family}_tiny_io.safetensors"))).unwrap();
    let z = f.f32("z").unwrap().1;
    let labels = f.i64("y").unwrap().1.iter().map(|&v| v as usize).collect();
    Io { f, z, labels }
}

fn check_forward(family: &str) {
    let mut model = load(family);
    let Io { f, z, labels } = io(family);
    let mut out = vec![0f32; z.len()];
    for tname in ["0.0", "0.25", "0.5", "0.999", "1.0"] {
        let tv: f32 = tname.parse().unwrap();
        model.forward(&z, &[tv, tv], &labels, &mut out).unwrap();
        assert_close(&format!("{family} F_t{tname}"), &out, &f.f32(&format!("F_t{tname}")).unwrap().1, 1e-5);
    }
    model.forward(&z, &[0.5, 0.5], &[10, 10], &mut out).unwrap();
    let want = f.f32("F_t0.5_null").unwrap().1;
    assert_close(&format!("{family} F_t0.5_null"), &out, &want, 1e-5);
    // The training-mode forward (plain weight layout) as well.
    model.forward_train(&z, &[0.5, 0.5], &[10, 10], &mut out).unwrap();
    assert_close(&format!("{family} F_t0.5_null (training forward)"), &out, &want, 1e-5);
}

/// (scale, interval, guided channels, t inside, t outside) of the released configs.
fn guidance(family: &str, arch: Arch) -> (f32, [f32; 2], Option<usize>, &'static str, &'static str) {
    match family {
        "lightningdit" => (6.7, [0.125, 1.0], arch.cfg_channels(), "0.5", "0.075"),
        _ => (2.0, [0.3, 1.0], arch.cfg_channels(), "0.5", "0.25"),
    }
}

fn check_cfg_forward(family: &str) {
    let mut model = load(family);
    let arch = model.config().arch;
    let Io { f, z, labels } = io(family);
    let (scale, interval, channels, tin, tout) = guidance(family, arch);
    let zz: Vec<f32> = z.iter().chain(&z).copied().collect();
    let yy = [labels[0], labels[1], 10, 10];
    for tname in [tin, tout] {
        let tv: f32 = tname.parse().unwrap();
        let mut net = StackedGuidance {
            net: &mut model,
            scale,
            interval,
            channels,
        };
        let mut out = vec![0f32; zz.len()];
        net.eval(&zz, &[tv; 4], &yy, &mut out).unwrap();
        assert_close(&format!("{family} Fcfg_t{tname}"), &out, &f.f32(&format!("Fcfg_t{tname}")).unwrap().1, 1e-5);
    }
}

fn sampler_cfg(steps: usize, kappa: f64, tdc: [f64; 3]) -> SamplerConfig {
    SamplerConfig {
        transport: TransportKind::ReLinear,
        steps,
        order: 1,
        stochasticity: Stochasticity::Fixed(0.0),
        extrapolation: kappa,
        time_dist_ctrl: tdc,
        rfba_gap_steps: [0.001, 0.001],
        return_trajectory: true,
        ..Default::default()
    }
}

fn check_sampler(family: &str) {
    let mut model = load(family);
    let arch = model.config().arch;
    let Io { f, z, labels } = io(family);
    let (kappa, run6) = match family {
        "lightningdit" => (0.5, "relin_s6_k05_kuma"),
        _ => (0.28, "relin_s6_k028_kuma"),
    };
    let warp = [1.17, 0.8, 1.1];
    for (run, cfg) in [("relin_s4", sampler_cfg(4, 0.0, [1.0; 3])), (run6, sampler_cfg(6, kappa, warp))] {
        let out = sample(&mut model, &z, &labels, &cfg, &mut NoiseSource::provided(&[]), &mut RunControl::default()).unwrap();
        let want = f.f32(&format!("{run}__samples")).unwrap().1;
        assert_close(&format!("{family} {run} trajectory"), &out.trajectory.unwrap(), &want, 1e-5);
    }

    // The guided run: the reference's stack [z; z] with labels [y; null] through its
    // forward_with_cfg, whole trajectory (both halves).
    let (scale, interval, channels, _, _) = guidance(family, arch);
    let run = match family {
        "lightningdit" => "relin_s6_k05_kuma_cfg6.7",
        _ => "relin_s6_k028_kuma_cfg2",
    };
    let want = f.f32(&format!("{run}__samples")).unwrap().1;
    let zz: Vec<f32> = z.iter().chain(&z).copied().collect();
    let yy = [labels[0], labels[1], 10, 10];
    let mut net = StackedGuidance {
        net: &mut model,
        scale,
        interval,
        channels,
    };
    let cfg = sampler_cfg(6, kappa, warp);
    let out = sample(&mut net, &zz, &yy, &cfg, &mut NoiseSource::provided(&[]), &mut RunControl::default()).unwrap();
    assert_close(&format!("{family} {run} trajectory (stack)"), &out.trajectory.unwrap(), &want, 1e-5);

    // The engine's own guidance (batch B, the released config's channels) gives the first
    // B images of that stack: what `eval.py` keeps.
    let guided = SamplerConfig {
        cfg_scale: scale as f64,
        cfg_interval: [interval[0] as f64, interval[1] as f64],
        cfg_channels: channels,
        ..sampler_cfg(6, kappa, warp)
    };
    let out = sample(&mut model, &z, &labels, &guided, &mut NoiseSource::provided(&[]), &mut RunControl::default()).unwrap();
    let traj = out.trajectory.unwrap();
    let n = z.len();
    let first: Vec<f32> = want.chunks(2 * n).flat_map(|step| step[..n].to_vec()).collect();
    assert_close(&format!("{family} {run} trajectory (engine guidance)"), &traj, &first, 1e-5);
    assert_eq!(out.guided_evals, if family == "lightningdit" { 4 } else { 3 });
}

#[test]
fn lightningdit_forward_matches_reference() {
    check_forward("lightningdit");
}

#[test]
fn lightningdit_guided_forward_matches_reference() {
    check_cfg_forward("lightningdit");
}

#[test]
fn lightningdit_sampler_matches_reference() {
    check_sampler("lightningdit");
}

#[test]
fn ddt_forward_matches_reference() {
    check_forward("ddt");
}

#[test]
fn ddt_guided_forward_matches_reference() {
    check_cfg_forward("ddt");
}

#[test]
fn ddt_sampler_matches_reference() {
    check_sampler("ddt");
}

#[test]
fn lightningdit_config_is_inferred_and_buffers_match() {
    let model = load("lightningdit");
    let cfg = model.config().clone();
    assert_eq!(
        cfg,
        ModelConfig {
            arch: Arch::LightningDit,
            input_size: 4,
            in_channels: 32,
            patch: 1,
            hidden: 64,
            depth: 2,
            heads: 4,
            num_classes: 10,
        }
    );
    let f = TensorFile::open(reference("zoo/lightningdit_tiny_weights.safetensors")).unwrap();
    for (name, shape, data) in weights::buffers(&cfg) {
        assert_close(&format!("lightningdit {name}"), &data, &f.f32_shaped(&name, &shape).unwrap(), 1e-6);
    }
}

/// Parameter counts of the named sizes equal the reference's trainable parameters
/// (`sum(p.numel() for p in model.parameters() if p.requires_grad)` of
/// `LightningDiT_models[...]` / `DDT_models[...]` with 1000 classes; LightningDiT on the
/// 32-channel 16×16 VA-VAE latent, DDT on the 4-channel SD-VAE latent; LightningDiT's
/// frozen `pos_embed` parameter is a computed buffer here).
#[test]
fn named_sizes_match_reference_parameter_counts() {
    let count = |name: &str, input: usize, channels: usize| {
        let cfg = ModelConfig::from_name(name, input, channels, 1000).unwrap();
        ucgm::ParamLayout::for_config(&cfg).total()
    };
    assert_eq!(count("LightningDiT-XL/1", 16, 32), 674_961_824);
    assert_eq!(count("LightningDiT-XL/2", 16, 32), 675_183_104);
    assert_eq!(count("LightningDiT-B/1", 16, 32), 130_359_584);
    // DDT stores no position table: the count does not depend on the input size.
    assert_eq!(count("DDT-XL/2", 32, 4), 674_646_352);
    assert_eq!(count("DDT-XL/2", 64, 4), 674_646_352);
    let ddt = ModelConfig::from_name("DDT-XL/2", 32, 4, 1000).unwrap();
    assert_eq!(
        (ddt.arch, ddt.depth, ddt.heads, ddt.mlp_hidden()),
        (Arch::Ddt { encoder_depth: 22 }, 28, 16, 3072)
    );
}

/// A checkpoint that fits no known architecture: the error names the tensor that
/// disagrees and the architecture guessed from the others.
#[test]
fn checkpoint_of_no_known_architecture_is_refused_naming_tensor_and_guess() {
    use ucgm::tensor_file::{write_atomic, TensorOut};
    let src = TensorFile::open(reference("zoo/lightningdit_tiny_weights.safetensors")).unwrap();
    let dir = std::env::temp_dir().join(format!("ucgm_zoo_bad_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names: Vec<String> = src.names().to_vec();
    let data: Vec<(String, Vec<usize>, Vec<f32>)> = names
        .iter()
        .map(|n| {
            let (shape, v) = src.f32(n).unwrap();
            (n.clone(), shape, v)
        })
        .collect();
    // blocks.1.norm2.weight one element short: the rest still says LightningDiT.
    let bad = dir.join("bad_norm.safetensors");
    let tensors: Vec<TensorOut<'_>> = data
        .iter()
        .map(|(n, s, v)| {
            if n == "blocks.1.norm2.weight" {
                TensorOut::f32(n.clone(), vec![s[0] - 1], &v[1..])
            } else {
                TensorOut::f32(n.clone(), s.clone(), v)
            }
        })
        .collect();
    write_atomic(&bad, &tensors, &Default::default()).unwrap();
    let e = Model::load(&bad, CpuBackend::<f32>::new(1).unwrap(), None).err().expect("refused").to_string();
    assert!(
        e.contains("blocks.1.norm2.weight") && e.contains("[63]") && e.contains("LightningDiT (depth 2"),
        "{e}"
    );
    // A missing tensor (blocks.0.norm1.weight kept, blocks.1.norm1.weight dropped).
    let missing = dir.join("missing.safetensors");
    let tensors: Vec<TensorOut<'_>> = data
        .iter()
        .filter(|(n, _, _)| n != "blocks.1.norm1.weight")
        .map(|(n, s, v)| TensorOut::f32(n.clone(), s.clone(), v))
        .collect();
    write_atomic(&missing, &tensors, &Default::default()).unwrap();
    let e = Model::load(&missing, CpuBackend::<f32>::new(1).unwrap(), None)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("blocks.1.norm1.weight") && e.contains("missing") && e.contains("LightningDiT"),
        "{e}"
    );
    // DDT weights do not say their patch size, input size or encoder depth.
    let e = Model::load(reference("zoo/ddt_tiny_weights.safetensors"), CpuBackend::<f32>::new(1).unwrap(), None)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("DDT") && e.contains("s_embedder.proj.weight") && e.contains("DDT-XL/2"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Saved weights carry their configuration (DDT's encoder depth included): they load
/// back without naming the model and give the same outputs.
#[test]
fn saved_weights_round_trip_with_their_configuration() {
    let dir = std::env::temp_dir().join(format!("ucgm_zoo_save_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for family in ["lightningdit", "ddt"] {
        let mut model = load(family);
        let path = dir.join(format!("{family}.safetensors"));
        model.save(&path).unwrap();
        let mut back = Model::load(&path, CpuBackend::<f32>::new(1).unwrap(), None).unwrap();
        assert_eq!(back.config(), model.config());
        let Io { z, labels, .. } = io(family);
        let (mut a, mut b) = (vec![0f32; z.len()], vec![0f32; z.len()]);
        model.forward(&z, &[0.3, 0.3], &labels, &mut a).unwrap();
        back.forward(&z, &[0.3, 0.3], &labels, &mut b).unwrap();
        assert_eq!(a, b, "{family}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
