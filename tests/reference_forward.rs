//! The SiT and TiT networks reproduce the reference PyTorch forward pass: every `F_t*`
//! tensor of `../shared/reference/*_sampler.safetensors` (both label sets) with
//! rel-L2 ≤ 1e-5, and the frozen buffers (`pos_embed`, RoPE tables) stored in the
//! reference weights equal the ones the engine computes.

mod common;

use common::{assert_close, reference};
use ucgm::model::weights;
use ucgm::tensor_file::TensorFile;
use ucgm::{Arch, CpuBackend, Model, ModelConfig};

fn check_family(prefix: &str, arch: Arch) {
    let be = CpuBackend::<f32>::new(1).unwrap();
    let mut model = Model::load(reference(&format!("{prefix}_tiny_weights.safetensors")), be, Some(4)).unwrap();
    assert_eq!(model.config(), &ModelConfig::reference_tiny(arch));
    let f = TensorFile::open(reference(&format!("{prefix}_tiny_sampler.safetensors"))).unwrap();
    let (_, z) = f.f32("z").unwrap();
    let (_, y) = f.i64("y").unwrap();
    let labels: Vec<usize> = y.iter().map(|&v| v as usize).collect();
    let mut out = vec![0f32; z.len()];
    for tname in ["0.0", "0.25", "0.5", "0.999", "1.0"] {
        let tv: f32 = tname.parse().unwrap();
        model.forward(&z, &[tv, tv], &labels, &mut out).unwrap();
        let (_, want) = f.f32(&format!("F_t{tname}")).unwrap();
        assert_close(&format!("{prefix} F_t{tname}"), &out, &want, 1e-5);
    }
    model.forward(&z, &[0.5, 0.5], &[10, 10], &mut out).unwrap();
    let (_, want) = f.f32("F_t0.5_null").unwrap();
    assert_close(&format!("{prefix} F_t0.5_null"), &out, &want, 1e-5);
    // The training-mode forward (plain weight layout; inference uses a transposed copy of
    // the Linear weights) reproduces the reference as well.
    let mut out2 = vec![0f32; z.len()];
    model.forward_train(&z, &[0.5, 0.5], &[10, 10], &mut out2).unwrap();
    assert_close(&format!("{prefix} F_t0.5_null (training forward)"), &out2, &want, 1e-5);
}

#[test]
fn sit_tiny_matches_reference_outputs() {
    check_family("sit", Arch::Sit);
}

#[test]
fn tit_tiny_matches_reference_outputs() {
    check_family("tit", Arch::Tit);
}

#[test]
fn frozen_buffers_match_reference() {
    for (prefix, arch) in [("sit", Arch::Sit), ("tit", Arch::Tit)] {
        let f = TensorFile::open(reference(&format!("{prefix}_tiny_weights.safetensors"))).unwrap();
        for (name, shape, data) in weights::buffers(&ModelConfig::reference_tiny(arch)) {
            let want = f.f32_shaped(&name, &shape).unwrap();
            assert_close(&format!("{prefix} {name}"), &data, &want, 1e-6);
        }
    }
}
