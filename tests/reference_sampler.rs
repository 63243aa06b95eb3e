//! UCGM-S with the real SiT and TiT networks reproduces every `<run>__samples` tensor of
//! `../shared/reference/*_sampler.safetensors` — the whole returned trajectory (entry 0
//! = z, entry i+1 = the raw x̂ of step i) — with rel-L2 ≤ 1e-5.

mod common;

use common::{assert_close, reference};
use ucgm::control::RunControl;
use ucgm::sampler::{sample, NoiseSource, SamplerConfig, Stochasticity};
use ucgm::tensor_file::TensorFile;
use ucgm::transport::TransportKind;
use ucgm::{CpuBackend, Model};

fn runs() -> Vec<(&'static str, TransportKind, usize, f64, [f64; 3])> {
    use TransportKind::*;
    vec![
        ("lin_s1", Linear, 1, 0.0, [1.0, 1.0, 1.0]),
        ("lin_s2", Linear, 2, 0.0, [1.0, 1.0, 1.0]),
        ("lin_s4", Linear, 4, 0.0, [1.0, 1.0, 1.0]),
        ("lin_s6_k05_kuma", Linear, 6, 0.5, [1.17, 0.8, 1.1]),
        ("relin_s4", ReLinear, 4, 0.0, [1.0, 1.0, 1.0]),
        ("trigflow_s4", TrigFlow, 4, 0.0, [1.0, 1.0, 1.0]),
    ]
}

fn check(prefix: &str) {
    let mut model = Model::load(
        reference(&format!("{prefix}_tiny_weights.safetensors")),
        CpuBackend::<f32>::new(2).unwrap(),
        Some(4),
    )
    .unwrap();
    let f = TensorFile::open(reference(&format!("{prefix}_tiny_sampler.safetensors"))).unwrap();
    let (_, z) = f.f32("z").unwrap();
    let labels: Vec<usize> = f.i64("y").unwrap().1.iter().map(|&v| v as usize).collect();
    for (run, transport, steps, kappa, tdc) in runs() {
        let cfg = SamplerConfig {
            transport,
            steps,
            order: 1,
            stochasticity: Stochasticity::Fixed(0.0),
            extrapolation: kappa,
            time_dist_ctrl: tdc,
            rfba_gap_steps: [0.001, 0.001],
            cfg_scale: 0.0,
            cfg_interval: [0.0, 1.0],
            cfg_channels: None,
            return_trajectory: true,
        };
        let out = sample(&mut model, &z, &labels, &cfg, &mut NoiseSource::provided(&[]), &mut RunControl::default()).unwrap();
        let (shape, want) = f.f32(&format!("{run}__samples")).unwrap();
        let traj = out.trajectory.expect("trajectory");
        assert_eq!(traj.len(), want.len(), "{prefix} {run}: trajectory shape {shape:?}");
        assert_close(&format!("{prefix} {run} trajectory"), &traj, &want, 1e-5);
        let last = &want[want.len() - z.len()..];
        assert_close(&format!("{prefix} {run} sample"), &out.sample, last, 1e-5);
        assert_eq!(out.nfe, steps);
    }
}

#[test]
fn sit_sampler_matches_reference() {
    check("sit");
}

#[test]
fn tit_sampler_matches_reference() {
    check("tit");
}
