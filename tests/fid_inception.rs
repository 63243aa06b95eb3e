//! The FID Inception against pytorch-fid (`fid_inception_random.safetensors` +
//! `fid_io_shared`: pool3 and blocks 0–2, rel-L2 ≤ 1e-5 on the CPU), BatchNorm folding
//! against conv + BN in f64 (property test), the torch-fidelity compat mode against a
//! fixture made with `scripts/make_fid_compat_reference.py`, and bad weights files.

mod common;

use proptest::prelude::*;
use ucgm::model::inception::weights::fold_batch_norm;
use ucgm::model::inception::{FidInception, InceptionInput, LOGITS_DIM, POOL3_DIM};
use ucgm::tensor_file::TensorFile;
use ucgm::{CpuBackend, Error};

fn net(input: InceptionInput) -> FidInception<CpuBackend> {
    FidInception::load(common::reference("fid_inception_random.safetensors"), CpuBackend::new(2).unwrap(), input).unwrap()
}

#[test]
fn pool3_and_blocks_match_pytorch_fid() {
    let io = TensorFile::open(common::reference("fid_io_shared.safetensors")).unwrap();
    let images = io.f32_shaped("images", &[2, 3, 64, 64]).unwrap();
    let out = net(InceptionInput::PytorchFid).forward_detailed(&images, 2, 64, 64, true).unwrap();
    let blocks = out.blocks.unwrap();
    for (i, (name, shape)) in [("block0", [2, 64, 73, 73]), ("block1", [2, 192, 35, 35]), ("block2", [2, 768, 17, 17])]
        .iter()
        .enumerate()
    {
        let r = io.f32_shaped(name, shape).unwrap();
        common::assert_close(name, &blocks[i], &r, 1e-5);
    }
    let pool3 = io.f32_shaped("pool3", &[2, POOL3_DIM]).unwrap();
    common::assert_close("pool3", &out.pool3, &pool3, 1e-5);
    assert_eq!(out.logits.len(), 2 * LOGITS_DIM);
    assert!(out.logits.iter().all(|v| v.is_finite()));
}

#[test]
fn torch_fidelity_compat_mode_matches_fixture() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fid_compat_reference.safetensors");
    if !path.exists() {
        eprintln!("SKIPPED: {} not made (scripts/make_fid_compat_reference.py)", path.display());
        return;
    }
    let io = TensorFile::open(&path).unwrap();
    let (shape, images) = io.f32("images").unwrap();
    let (n, h, w) = (shape[0], shape[2], shape[3]);
    let out = net(InceptionInput::TorchFidelity).forward(&images, n, h, w).unwrap();
    common::assert_close("compat pool3", &out.pool3, &io.f32_shaped("pool3", &[n, POOL3_DIM]).unwrap(), 1e-5);
    common::assert_close("compat logits", &out.logits, &io.f32_shaped("logits", &[n, LOGITS_DIM]).unwrap(), 1e-5);
    common::assert_close(
        "compat logits_unbiased",
        &out.logits_unbiased,
        &io.f32_shaped("logits_unbiased", &[n, LOGITS_DIM]).unwrap(),
        1e-5,
    );
}

/// Activation buffers are recycled between layers and calls (their stale contents are
/// always overwritten): repeated calls, calls of other batch sizes in between and a
/// released workspace give the same bits as a fresh network.
#[test]
fn recycled_buffers_give_the_same_bits_and_can_be_released() {
    let make = || FidInception::random(CpuBackend::<f32>::new(2).unwrap(), InceptionInput::PytorchFid, 3).unwrap();
    let img = |n: usize, seed: usize| -> Vec<f32> { (0..n * 3 * 40 * 40).map(|i| ((i * 7919 + seed) % 1013) as f32 / 1013.0).collect() };
    let fresh = make().forward(&img(2, 1), 2, 40, 40).unwrap();
    let net = make();
    assert_eq!(net.workspace_bytes(), 0);
    net.forward(&img(2, 5), 2, 40, 40).unwrap();
    assert!(net.workspace_bytes() > 0, "the buffers are kept after a call");
    let kept = net.workspace_bytes();
    net.forward(&img(1, 9), 1, 40, 40).unwrap();
    assert!(net.workspace_bytes() < kept, "another batch shape frees the first shape's buffers");
    let again = net.forward(&img(2, 1), 2, 40, 40).unwrap();
    assert_eq!(net.workspace_bytes(), kept, "the memory kept is one shape's set");
    assert!(again.pool3 == fresh.pool3 && again.logits == fresh.logits);
    net.release_workspace();
    assert_eq!(net.workspace_bytes(), 0);
    assert!(net.forward(&img(2, 1), 2, 40, 40).unwrap().pool3 == fresh.pool3);
}

#[test]
fn weights_without_num_batches_tracked_load_the_same() {
    let src = TensorFile::open(common::reference("fid_inception_random.safetensors")).unwrap();
    let kept: Vec<(String, Vec<usize>, Vec<f32>)> = src
        .names()
        .iter()
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .map(|n| {
            let (s, d) = src.f32(n).unwrap();
            (n.clone(), s, d)
        })
        .collect();
    assert_eq!(kept.len(), 472);
    let outs: Vec<_> = kept
        .iter()
        .map(|(n, s, d)| ucgm::tensor_file::TensorOut::f32(n.clone(), s.clone(), d))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("converted.safetensors");
    ucgm::tensor_file::write_atomic(&p, &outs, &Default::default()).unwrap();
    let a = FidInception::<CpuBackend>::load(&p, CpuBackend::new(2).unwrap(), InceptionInput::PytorchFid).unwrap();
    let img: Vec<f32> = (0..3 * 20 * 30).map(|i| (i % 17) as f32 / 16.0).collect();
    let x = a.forward(&img, 1, 20, 30).unwrap();
    let y = net(InceptionInput::PytorchFid).forward(&img, 1, 20, 30).unwrap();
    assert_eq!(x.pool3, y.pool3);
}

#[test]
fn bad_weights_and_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    let t = [1.0f32; 4];
    ucgm::tensor_file::write_atomic(&p, &[ucgm::tensor_file::TensorOut::f32("x", vec![4], &t)], &Default::default()).unwrap();
    let e = FidInception::<CpuBackend>::load(&p, CpuBackend::new(1).unwrap(), InceptionInput::PytorchFid)
        .err()
        .unwrap();
    assert!(matches!(e, Error::Weights(_)) && e.to_string().contains("is missing"), "{e}");
    let n = net(InceptionInput::PytorchFid);
    assert!(matches!(n.forward(&[0.5; 10], 1, 2, 2), Err(Error::InvalidArgument(_))));
    assert!(matches!(n.forward(&[f32::NAN; 12], 1, 2, 2), Err(Error::NonFinite(_))));
    assert!(matches!(n.forward(&[], 0, 2, 2), Err(Error::InvalidArgument(_))));
}

/// conv(x, W) + BN in f64, and the folded conv, at one output position per channel of
/// a 1-pixel-kernel-window (the fold is per output channel, so a dot product checks it).
fn conv_bn_f64(x: &[f64], w: &[f32], g: &[f32], b: &[f32], m: &[f32], v: &[f32], affine: (f64, f64)) -> Vec<f64> {
    let k = x.len();
    (0..g.len())
        .map(|o| {
            let conv: f64 = (0..k).map(|i| w[o * k + i] as f64 * (affine.0 * x[i] + affine.1)).sum();
            (conv - m[o] as f64) * g[o] as f64 / (v[o] as f64 + 1e-3).sqrt() + b[o] as f64
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn batch_norm_folding_equals_conv_then_bn(
        c_out in 1usize..6, k in 1usize..30, seed in 0u64..1000,
        affine in prop_oneof![Just((1.0, 0.0)), Just((2.0, -1.0)), Just((1.0 / 128.0, -1.0))],
    ) {
        let mut r = ucgm::Rng::new(seed);
        let w = r.normal_f32(c_out * k);
        let g: Vec<f32> = r.normal_f32(c_out).iter().map(|u| 1.0 + 0.2 * u.abs()).collect();
        let b = r.normal_f32(c_out);
        let m = r.normal_f32(c_out);
        let v: Vec<f32> = r.normal_f32(c_out).iter().map(|u| 1.0 + 0.2 * u.abs()).collect();
        let x: Vec<f64> = r.normal_f32(k).iter().map(|&u| (u.abs() as f64 * 100.0).min(255.0)).collect();
        let (fw, fb) = fold_batch_norm(&w, &g, &b, &m, &v, affine);
        let want = conv_bn_f64(&x, &w, &g, &b, &m, &v, affine);
        for o in 0..c_out {
            let got: f64 = (0..k).map(|i| fw[o * k + i] as f64 * x[i]).sum::<f64>() + fb[o] as f64;
            let scale: f64 = (0..k).map(|i| (fw[o * k + i] as f64 * x[i]).abs()).sum::<f64>() + fb[o].abs() as f64 + 1.0;
            // Folded parameters are stored in f32: agreement to f32 rounding of the terms.
            prop_assert!((got - want[o]).abs() <= 4.0 * f32::EPSILON as f64 * scale, "{} vs {}", got, want[o]);
        }
    }
}
