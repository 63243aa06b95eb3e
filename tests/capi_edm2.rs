//! The EDM2 UNet through the C ABI, as a C program drives it: `ucgm_model_load` of the
//! reference state dict `../shared/reference/zoo/edm2_tiny_weights.safetensors`
//! (recognised by its tensors, configuration inferred), `ucgm_model_get_info` reporting
//! `UCGM_ARCH_EDM2`, `ucgm_forward` reproducing every `F_t*` and `F_t0.5_uncond` of
//! `edm2_tiny_io.safetensors` (rel-L2 ≤ 1e-5), `ucgm_sample` / `ucgm_sample_ext` with the
//! EDM transport by default and guidance through the unconditional branch, equal to the
//! engine's sampler on the same UNet; the forward-only refusals and bad inputs.

mod capi_common;
mod common;

use std::ffi::CString;
use std::ptr;

use capi_common::*;
use common::{assert_close, reference};
use ucgm::capi::model::*;
use ucgm::capi::sample::*;
use ucgm::capi::train::*;
use ucgm::capi::*;
use ucgm::model::edm2::Edm2;
use ucgm::tensor_file::TensorFile;
use ucgm::CpuBackend;

fn weights_path() -> CString {
    CString::new(reference("zoo/edm2_tiny_weights.safetensors").to_str().unwrap()).unwrap()
}

fn load(path: &CString) -> Model {
    let mut m = ptr::null_mut();
    ok(unsafe { ucgm_model_load(path.as_ptr(), &cpu_load_params(), &mut m) });
    assert!(!m.is_null());
    Model(m)
}

#[test]
fn edm2_loads_and_reports_its_arch() {
    let m = load(&weights_path());
    let info = m.info();
    assert_eq!(info.arch, UCGM_ARCH_EDM2);
    assert_eq!((info.input_size, info.in_channels, info.num_classes), (8, 4, 10));
    assert_eq!((info.hidden, info.depth, info.patch), (32, 1, 1));
    assert_eq!(info.image_len as usize, IMAGE_LEN);
    // meta.json's n_values = parameters + the two 32-value Fourier buffers.
    assert_eq!(info.param_count + 64, 724_203);
    assert_eq!(info.backend, UCGM_BACKEND_CPU);
    assert!(info.bytes_held > 0);
}

#[test]
fn edm2_forward_through_the_c_abi_matches_reference() {
    let m = load(&weights_path());
    let f = TensorFile::open(reference("zoo/edm2_tiny_io.safetensors")).unwrap();
    let z = f.f32("z").unwrap().1;
    let y: Vec<i32> = f.i64("y").unwrap().1.iter().map(|&v| v as i32).collect();
    let batch = y.len();
    assert_eq!(z.len(), batch * IMAGE_LEN);
    let mut out = vec![f32::NAN; z.len()];
    for tname in ["0.0", "0.25", "0.5", "0.999", "1.0"] {
        let tv: f32 = tname.parse().unwrap();
        let t = vec![tv; batch];
        ok(unsafe { ucgm_forward(m.0, z.as_ptr(), t.as_ptr(), y.as_ptr(), batch, out.as_mut_ptr(), out.len()) });
        assert_close(&format!("C ABI edm2 F_t{tname}"), &out, &f.f32(&format!("F_t{tname}")).unwrap().1, 1e-5);
    }
    let (t, null) = (vec![0.5f32; batch], vec![10i32; batch]);
    ok(unsafe { ucgm_forward(m.0, z.as_ptr(), t.as_ptr(), null.as_ptr(), batch, out.as_mut_ptr(), out.len()) });
    assert_close("C ABI edm2 F_t0.5_uncond", &out, &f.f32("F_t0.5_uncond").unwrap().1, 1e-5);
}

/// `ucgm_sample_ext` with guidance (the unconditional branch for label K) equals the
/// engine's sampler on the same UNet; `ucgm_sample` defaults to the EDM transport.
#[test]
fn edm2_samples_through_the_c_abi() {
    let m = load(&weights_path());
    let mut p = sample_params(0, 0, 0);
    let mut has_preset = -1;
    ok(unsafe { ucgm_model_get_sample_params(m.0, &mut p, std::mem::size_of::<ucgm_sample_params>(), &mut has_preset) });
    assert_eq!((p.transport, has_preset), (UCGM_TRANSPORT_EDM, 0));

    let z = TensorFile::open(reference("zoo/edm2_tiny_io.safetensors")).unwrap().f32("z").unwrap().1;
    let labels = [1i32, 7];
    let mut p = sample_params(6, 2, 3);
    p.transport = UCGM_TRANSPORT_EDM;
    p.stochasticity = UCGM_STOCHASTICITY_FIXED;
    p.rho = 0.0;
    p.extrapolation = 0.4;
    p.time_dist_ctrl = [1.17, 0.8, 1.1];
    p.rfba_gap_steps = [0.001, 0.001];
    p.cfg_scale = 1.5;
    p.cfg_interval = [0.0, 1.0];
    p.noise = z.as_ptr();
    p.noise_len = z.len();
    p.labels = labels.as_ptr();
    let mut out = vec![f32::NAN; z.len()];
    let mut info = ucgm_sample_info {
        struct_size: std::mem::size_of::<ucgm_sample_info>(),
        ..Default::default()
    };
    ok(unsafe { ucgm_sample_ext(m.0, &p, out.as_mut_ptr(), out.len(), ptr::null_mut(), 0, &mut info) });
    assert_eq!(info.guided_evals, 6);

    let mut twin = Edm2::load(reference("zoo/edm2_tiny_weights.safetensors"), CpuBackend::<f32>::new(1).unwrap(), None).unwrap();
    let cfg = ucgm::SamplerConfig {
        transport: ucgm::transport::TransportKind::Edm,
        steps: 6,
        order: p.order as usize,
        stochasticity: ucgm::Stochasticity::Fixed(0.0),
        extrapolation: 0.4,
        time_dist_ctrl: [1.17, 0.8, 1.1],
        rfba_gap_steps: [0.001, 0.001],
        cfg_scale: 1.5,
        cfg_interval: [0.0, 1.0],
        ..Default::default()
    };
    let want = ucgm::sample(&mut twin, &z, &[1, 7], &cfg, &mut ucgm::NoiseSource::provided(&[]), &mut Default::default()).unwrap();
    assert_eq!(out, want.sample, "the C ABI sample differs from the engine's");

    // The default entry point: one image, EDM transport, finite.
    let mut one = vec![f32::NAN; IMAGE_LEN];
    ok(unsafe { ucgm_sample(m.0, 4, one.as_mut_ptr(), one.len()) });
    assert!(one.iter().all(|v| v.is_finite()));
}

/// Forward-only: training, parameter access and saving are refused with a clear
/// status; bad forward inputs and create-by-arch are refused too; nothing panics.
#[test]
fn edm2_refusals_and_bad_inputs() {
    let m = load(&weights_path());
    let mut tr = ptr::null_mut();
    let tp = train_params(1e-4, 0);
    fails(
        unsafe { ucgm_trainer_create(m.0, &tp, &mut tr) },
        UCGM_STATUS_UNSUPPORTED,
        "EDM2 is forward-only",
    );
    assert!(tr.is_null());
    let mut v = vec![0f32; 16];
    fails(
        unsafe { ucgm_model_read_params(m.0, v.as_mut_ptr(), v.len()) },
        UCGM_STATUS_UNSUPPORTED,
        "forward-only",
    );
    fails(
        unsafe { ucgm_model_write_params(m.0, v.as_ptr(), v.len()) },
        UCGM_STATUS_UNSUPPORTED,
        "forward-only",
    );
    let dir = tempfile::tempdir().unwrap();
    let save = CString::new(dir.path().join("e.safetensors").to_str().unwrap()).unwrap();
    fails(unsafe { ucgm_model_save(m.0, save.as_ptr()) }, UCGM_STATUS_UNSUPPORTED, "forward-only");
    assert!(!dir.path().join("e.safetensors").exists());

    let x = vec![0.1f32; IMAGE_LEN];
    let t = [0.5f32];
    let mut out = vec![0f32; IMAGE_LEN];
    fails(
        unsafe { ucgm_forward(m.0, x.as_ptr(), t.as_ptr(), [11].as_ptr(), 1, out.as_mut_ptr(), out.len()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "labels",
    );
    fails(
        unsafe { ucgm_forward(m.0, x.as_ptr(), t.as_ptr(), [1].as_ptr(), 1, out.as_mut_ptr(), out.len() - 1) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "out",
    );
    fails(
        unsafe { ucgm_forward(m.0, x.as_ptr(), [f32::NAN].as_ptr(), [1].as_ptr(), 1, out.as_mut_ptr(), out.len()) },
        UCGM_STATUS_NON_FINITE,
        "t",
    );
    fails(
        unsafe { ucgm_forward(m.0, ptr::null(), t.as_ptr(), [1].as_ptr(), 1, out.as_mut_ptr(), out.len()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "x",
    );
    // The handle still works after the refusals.
    ok(unsafe { ucgm_forward(m.0, x.as_ptr(), t.as_ptr(), [10].as_ptr(), 1, out.as_mut_ptr(), out.len()) });
    assert!(out.iter().all(|v| v.is_finite()));

    // EDM2 is loaded from weights only.
    let mut p = tiny_params(UCGM_ARCH_EDM2, 0, 1);
    let mut h = ptr::null_mut();
    fails(unsafe { ucgm_model_create(&p, &mut h) }, UCGM_STATUS_INVALID_ARGUMENT, "arch");
    assert!(h.is_null());
    p.arch = UCGM_ARCH_TIT;
    drop(Model::create(&p));
}

/// Damaged EDM2 files: a missing tensor names the tensor and the guessed configuration;
/// a NaN weight names its tensor.
#[test]
fn edm2_bad_files_are_refused_by_name() {
    use ucgm::tensor_file::{write_atomic, TensorOut};
    let src = TensorFile::open(reference("zoo/edm2_tiny_weights.safetensors")).unwrap();
    let data: Vec<(String, Vec<usize>, Vec<f32>)> = src
        .names()
        .iter()
        .map(|n| {
            let (s, v) = src.f32(n).unwrap();
            (n.clone(), s, v)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, edit: &dyn Fn(&str, &mut Vec<f32>) -> bool| {
        let kept: Vec<(String, Vec<usize>, Vec<f32>)> = data
            .iter()
            .filter_map(|(n, s, v)| {
                let mut v = v.clone();
                edit(n, &mut v).then(|| (n.clone(), s.clone(), v))
            })
            .collect();
        let path = dir.path().join(name);
        let tensors: Vec<TensorOut<'_>> = kept.iter().map(|(n, s, v)| TensorOut::f32(n.clone(), s.clone(), v)).collect();
        write_atomic(&path, &tensors, &Default::default()).unwrap();
        CString::new(path.to_str().unwrap()).unwrap()
    };
    let missing = write("missing.safetensors", &|n: &str, _: &mut Vec<f32>| n != "dec.4x4_in0.attn_proj.weight");
    let nan = write("nan.safetensors", &|n: &str, v: &mut Vec<f32>| {
        if n == "enc.8x8_conv.weight" {
            v[3] = f32::NAN;
        }
        true
    });
    let mut h = ptr::null_mut();
    let msg = fails(
        unsafe { ucgm_model_load(missing.as_ptr(), &cpu_load_params(), &mut h) },
        UCGM_STATUS_WEIGHTS,
        "dec.4x4_in0.attn_proj.weight",
    );
    assert!(msg.contains("EDM2"), "{msg}");
    assert!(h.is_null());
    fails(
        unsafe { ucgm_model_load(nan.as_ptr(), &cpu_load_params(), &mut h) },
        UCGM_STATUS_NON_FINITE,
        "enc.8x8_conv.weight",
    );
    assert!(h.is_null());
}
