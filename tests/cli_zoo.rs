//! `ucgm sample --config` with the reference's sampling configs for the pre-trained
//! families: the YAML (model, transport, sample sections) means what it means in the
//! reference — the same samples as the library driven with the released settings spelled
//! out (LightningDiT guiding channels 0–2 only, DDT all channels). The configs are the
//! released `sampling_multi_steps/in1k256_{lightningdit_xl_vavae,ddt_xl_sdvae}_relinear`
//! ones with the tiny networks' shapes and 6 steps instead of 50.

mod cli_common;
mod common;

use cli_common::ucgm;
use ucgm::app::config::SamplingNetwork;
use ucgm::app::sample::sample_images;
use ucgm::model::edm2::Edm2Config;
use ucgm::sampler::{SamplerConfig, Stochasticity};
use ucgm::tensor_file::TensorFile;
use ucgm::transport::TransportKind;
use ucgm::{CpuBackend, Model, ModelConfig};

fn config(model: &str, image_size: usize, cfg_scale: f64, interval: [f64; 2], kappa: f64) -> String {
    format!(
        "output_dir: ./outputs\n\
         data:\n  data_path: ./buffers/data/x\n  image_size: {image_size}\n  num_classes: 10\n\
         vae:\n  type: identity\n  downsample_ratio: 1\n\
         model:\n{model}\
         train:\n  global_seed: 0\n\
         transport:\n  type: ReLinear\n\
         sample:\n  ckpt: \"0000000.pt\"\n  type: UNI\n  cfg_scale: {cfg_scale}\n  cfg_interval: [{}, {}]\n  sampling_steps: 6\n  \
         stochast_ratio: 0.0\n  extrapol_ratio: {kappa}\n  sampling_order: 1\n  time_dist_ctrl: [1.17, 0.8, 1.1]\n  \
         rfba_gap_steps: [0.001, 0.001]\n  per_batch_size: 125\n  fid_sample_num: 50000\n",
        interval[0], interval[1]
    )
}

fn run(family: &str, yaml: &str, model: Model<CpuBackend<f32>>, scale: f64, interval: [f64; 2], kappa: f64, channels: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("sampling.yaml");
    std::fs::write(&cfg_path, yaml).unwrap();
    let out = dir.path().join("s.safetensors");
    let w = common::reference(&format!("zoo/{family}_tiny_weights.safetensors"));
    let (ok, _, err) = ucgm(&[
        "sample",
        "--config",
        cfg_path.to_str().unwrap(),
        "--ckpt",
        w.to_str().unwrap(),
        "--n",
        "3",
        "--labels",
        "1,7",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--threads",
        "1",
    ]);
    assert!(ok, "{family}: {err}");
    let got = TensorFile::open(&out).unwrap().f32("samples").unwrap().1;
    let released = SamplerConfig {
        transport: TransportKind::ReLinear,
        steps: 6,
        order: 1,
        stochasticity: Stochasticity::Fixed(0.0),
        extrapolation: kappa,
        time_dist_ctrl: [1.17, 0.8, 1.1],
        rfba_gap_steps: [0.001, 0.001],
        cfg_scale: scale,
        cfg_interval: interval,
        cfg_channels: channels,
        return_trajectory: false,
    };
    let mut model = model;
    let want = sample_images(&mut model, &released, &[1, 7, 1], 5, None).unwrap();
    common::assert_close(&format!("{family} ucgm sample --config"), &got, &want, 1e-6);
}

#[test]
fn lightningdit_reference_sampling_config() {
    let model = "  type: LightningDiT\n  in_chans: 32\n  hidden_size: 64\n  depth: 2\n  num_heads: 4\n  patch_size: 1\n";
    let yaml = config(model, 4, 6.7, [0.125, 1.0], 0.5);
    let w = common::reference("zoo/lightningdit_tiny_weights.safetensors");
    let m = Model::load(w, CpuBackend::<f32>::new(1).unwrap(), None).unwrap();
    assert_eq!(m.config().arch.cfg_channels(), Some(3));
    run("lightningdit", &yaml, m, 6.7, [0.125, 1.0], 0.5, Some(3));
}

#[test]
fn ddt_reference_sampling_config() {
    let model = "  type: DDT\n  in_chans: 4\n  hidden_size: 64\n  depth: 3\n  num_heads: 4\n  patch_size: 2\n  num_encoder_blocks: 2\n";
    let yaml = config(model, 8, 2.0, [0.3, 1.0], 0.28);
    let cfg = common::ddt_tiny();
    let w = common::reference("zoo/ddt_tiny_weights.safetensors");
    let m = Model::load_with_config(w, cfg, CpuBackend::<f32>::new(1).unwrap()).unwrap();
    run("ddt", &yaml, m, 2.0, [0.3, 1.0], 0.28, None);
}

/// The released sampling configs themselves (copied from the reference repository,
/// `configs/sampling_multi_steps/`) parse into the XL networks and their settings.
#[test]
fn released_sampling_configs_parse() {
    use ucgm::app::RunConfig;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference_configs");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let transformer = |text: &str| match RunConfig::sampling_from_yaml(text).unwrap() {
        (SamplingNetwork::Transformer(mc), s) => (mc, s),
        other => panic!("{other:?}"),
    };
    let (mc, s) = transformer(&read("in1k256_lightningdit_xl_vavae_relinear.yaml"));
    assert_eq!(mc, ModelConfig::from_name("LightningDiT-XL/1", 16, 32, 1000).unwrap());
    assert_eq!(
        (
            s.transport,
            s.steps,
            s.extrapolation,
            s.cfg_scale,
            s.cfg_interval,
            s.time_dist_ctrl,
            s.rfba_gap_steps
        ),
        (TransportKind::ReLinear, 50, 0.5, 6.7, [0.125, 1.0], [1.17, 0.8, 1.1], [0.001, 0.001])
    );
    assert_eq!(mc.arch.cfg_channels(), Some(3));
    let (mc, s) = transformer(&read("in1k256_ddt_xl_sdvae_relinear.yaml"));
    assert_eq!(mc, ModelConfig::from_name("DDT-XL/2", 32, 4, 1000).unwrap());
    assert_eq!(
        (s.transport, s.steps, s.extrapolation, s.cfg_scale, s.cfg_interval),
        (TransportKind::ReLinear, 50, 0.28, 2.0, [0.3, 1.0])
    );
    assert_eq!(mc.arch.cfg_channels(), None);
    // EDM2-S at 512 px (SD-VAE latent 4×64×64), EDM transport, no guidance.
    match RunConfig::sampling_from_yaml(&read("in1k512_edm2_s_sdvae_edm.yaml")).unwrap() {
        (SamplingNetwork::Edm2(c), s) => {
            assert_eq!(c, Edm2Config::from_name("EDM2-S", 64, 4, 1000).unwrap());
            assert_eq!(
                (s.transport, s.steps, s.extrapolation, s.cfg_scale, s.time_dist_ctrl),
                (TransportKind::Edm, 40, 0.4, 0.0, [1.17, 0.8, 1.1])
            );
        }
        other => panic!("{other:?}"),
    }
}

/// `ucgm sample` on EDM2 weights (configuration inferred from the tensors, EDM
/// transport): the same samples as the library's sampler with those settings.
#[test]
fn edm2_sample_command() {
    use ucgm::model::edm2::Edm2;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.safetensors");
    let w = common::reference("zoo/edm2_tiny_weights.safetensors");
    let (ok, _, err) = ucgm(&[
        "sample",
        "--ckpt",
        w.to_str().unwrap(),
        "--steps",
        "4",
        "--kappa",
        "0.4",
        "--time-dist-ctrl",
        "1.17,0.8,1.1",
        "--n",
        "2",
        "--labels",
        "3,10",
        "--seed",
        "9",
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--threads",
        "1",
    ]);
    assert!(ok, "{err}");
    let got = TensorFile::open(&out).unwrap().f32("samples").unwrap().1;
    let cfg = SamplerConfig {
        transport: TransportKind::Edm,
        steps: 4,
        extrapolation: 0.4,
        time_dist_ctrl: [1.17, 0.8, 1.1],
        rfba_gap_steps: [0.001, 0.001],
        ..Default::default()
    };
    let mut m = Edm2::load(&w, CpuBackend::<f32>::new(1).unwrap(), None).unwrap();
    let want = sample_images(&mut m, &cfg, &[3, 10], 9, None).unwrap();
    common::assert_close("edm2 ucgm sample", &got, &want, 1e-6);
}
