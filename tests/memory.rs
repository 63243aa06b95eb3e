//! Memory: a model that only samples holds its weights once (the inference layout
//! replaces the plain one instead of sitting beside it), gives the same outputs, reads
//! and writes its parameters in the plain order, trains again when asked; loading checks
//! a file's claims before allocating; and the reported bytes follow the layout's
//! arithmetic for an XL-shaped model at reduced depth.

mod common;

use ucgm::model::weights;
use ucgm::{Arch, CpuBackend, Model, ModelConfig, ParamLayout, Rng};

fn random_model(cfg: &ModelConfig, seed: u64) -> Model<CpuBackend> {
    let n = ParamLayout::for_config(cfg).total();
    let p: Vec<f32> = Rng::new(seed).normal_f32(n).into_iter().map(|v| 0.05 * v).collect();
    Model::from_params(cfg.clone(), CpuBackend::<f32>::new(2).unwrap(), &p).unwrap()
}

#[test]
fn inference_layout_holds_one_copy_and_gives_the_same_outputs() {
    for arch in [Arch::Sit, Arch::Tit] {
        let cfg = ModelConfig::reference_tiny(arch);
        let mut plain = random_model(&cfg, 3);
        let mut inf = random_model(&cfg, 3);
        let b = 3;
        let x = Rng::new(1).normal_f32(b * cfg.image_len());
        let t = [0.1f32, 0.5, 0.9];
        let labels = [0, 3, cfg.num_classes];
        let mut want = vec![0f32; x.len()];
        plain.forward(&x, &t, &labels, &mut want).unwrap();
        let params = plain.read_params().unwrap();
        // The plain model's cache doubles its weights; the inference layout does not.
        let n = 4 * ParamLayout::for_config(&cfg).total();
        assert_eq!(plain.weight_bytes(), 2 * n, "plain layout + transposed cache");
        inf.enter_inference_layout().unwrap();
        assert!(inf.in_inference_layout());
        let mut got = vec![0f32; x.len()];
        inf.forward(&x, &t, &labels, &mut got).unwrap();
        assert_eq!(got, want, "{arch:?}: same kernels, same numbers");
        let largest = 4 * cfg.hidden * cfg.mlp_hidden().max(6 * cfg.hidden);
        assert!(inf.weight_bytes() <= n + largest, "{} > {} + {largest}", inf.weight_bytes(), n);
        // Parameters read back in the plain order; writes keep the layout.
        assert_eq!(inf.read_params().unwrap(), params);
        let p2: Vec<f32> = params.iter().map(|v| v * 0.5).collect();
        inf.write_params(&p2).unwrap();
        plain.write_params(&p2).unwrap();
        assert!(inf.in_inference_layout());
        assert_eq!(inf.read_params().unwrap(), p2);
        inf.forward(&x, &t, &labels, &mut got).unwrap();
        plain.forward(&x, &t, &labels, &mut want).unwrap();
        assert_eq!(got, want);
        // Training turns it back to the plain layout, and gradients agree.
        inf.forward_train(&x, &t, &labels, &mut got).unwrap();
        assert!(!inf.in_inference_layout());
        plain.forward_train(&x, &t, &labels, &mut want).unwrap();
        assert_eq!(got, want);
        let dout = Rng::new(2).normal_f32(x.len());
        inf.backward(&dout, None).unwrap();
        plain.backward(&dout, None).unwrap();
        assert_eq!(inf.read_grads().unwrap(), plain.read_grads().unwrap());
        // Saving from the inference layout writes the plain weights.
        let dir = tempfile::tempdir().unwrap();
        let mut m = random_model(&cfg, 4);
        let before = m.read_params().unwrap();
        m.enter_inference_layout().unwrap();
        m.save(dir.path().join("w.safetensors")).unwrap();
        assert_eq!(weights::load_file(&dir.path().join("w.safetensors"), None, None).unwrap().params, before);
    }
}

#[test]
fn xl_shaped_model_at_reduced_depth_reports_its_bytes() {
    // SiT-XL/2's widths (D 1152, 16 heads, 4×32×32 latents, 1000 classes) at depth 2.
    let cfg = ModelConfig {
        arch: Arch::Sit,
        input_size: 32,
        in_channels: 4,
        patch: 2,
        hidden: 1152,
        depth: 2,
        heads: 16,
        num_classes: 1000,
    };
    let n = ParamLayout::for_config(&cfg).total();
    let mut m = random_model(&cfg, 5);
    assert_eq!(m.weight_bytes(), 4 * n);
    m.enter_inference_layout().unwrap();
    let largest = cfg.hidden * cfg.mlp_hidden().max(6 * cfg.hidden);
    assert_eq!(m.weight_bytes(), 4 * (n + largest), "parameters once + one Linear's scratch");
    let z = Rng::new(6).normal_f32(cfg.image_len());
    let sc = ucgm::SamplerConfig {
        steps: 2,
        ..Default::default()
    };
    let out = ucgm::sample(&mut m, &z, &[7], &sc, &mut ucgm::NoiseSource::rng(&mut Rng::new(1)), &mut Default::default()).unwrap();
    assert!(out.sample.iter().all(|v| v.is_finite()));
    assert_eq!(m.weight_bytes(), 4 * (n + largest), "sampling adds no parameter-sized buffer");

    // The sampling workspace, written out from the network's shapes (one block's
    // activations and one residual stream, per image): the input and output images, the
    // patch rows and the final Linear's tokens, the 256 timestep features, the
    // conditioning vectors (t-MLP hidden ×2, label embedding, c, SiLU(c): 5·D), adaLN
    // outputs (6·D for the block, 2·D for the final layer), and per token the residual
    // stream, norm₁, attention output, proj, norm₂, the MLP output and the final norm
    // (7·D), qkv (3·D), the MLP hidden and its activation (2·M), and three norm
    // statistics pairs (6).
    let (t, d, m_hid, pd) = (cfg.tokens(), cfg.hidden, cfg.mlp_hidden(), cfg.patch_dim());
    let per_image = 2 * cfg.image_len() + 2 * t * pd + 256 + 13 * d + t * (10 * d + 2 * m_hid + 6);
    assert_eq!(m.workspace_bytes(), 4 * per_image, "batch-1 workspace = the arithmetic");
    assert_eq!(m.held_bytes(), m.weight_bytes() + m.workspace_bytes());
    // Kept and reused: another call at the same batch size allocates nothing new.
    let z3 = Rng::new(7).normal_f32(3 * cfg.image_len());
    ucgm::sample(
        &mut m,
        &z3,
        &[1, 2, 3],
        &sc,
        &mut ucgm::NoiseSource::rng(&mut Rng::new(1)),
        &mut Default::default(),
    )
    .unwrap();
    assert_eq!(
        m.workspace_bytes(),
        3 * 4 * per_image,
        "batch 3: three images' worth, the batch-1 workspace freed"
    );
    ucgm::sample(
        &mut m,
        &z3,
        &[4, 5, 6],
        &sc,
        &mut ucgm::NoiseSource::rng(&mut Rng::new(2)),
        &mut Default::default(),
    )
    .unwrap();
    assert_eq!(m.workspace_bytes(), 3 * 4 * per_image);
    // SiT-XL/2 at full depth holds the same per-image workspace (one block's worth):
    // 20.4 MiB per image, as the README's table says.
    assert_eq!(format!("{:.1}", 4.0 * per_image as f64 / (1 << 20) as f64), "20.4");
}

/// A safetensors file whose header is `header` (JSON) followed by `data`.
fn raw_file(path: &std::path::Path, header: &str, data: &[u8]) {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    std::fs::write(path, b).unwrap();
}

#[test]
fn hostile_headers_fail_before_any_large_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.safetensors");
    let before = common::peak_rss();
    let tb = 1u64 << 40;
    let cases = [
        // A 1 TB f32 tensor in a 16-byte file.
        (
            format!(r#"{{"w":{{"dtype":"F32","shape":[{},1024],"data_offsets":[0,{tb}]}}}}"#, tb / 4096),
            "beyond the end of the data",
        ),
        // A range longer than the tensor it describes.
        (r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#.to_string(), "does not hold"),
        // A shape whose element count overflows.
        (
            r#"{"w":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,16]}}"#.to_string(),
            "overflows",
        ),
        // Overlapping tensors.
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#.to_string(),
            "overlap or gap",
        ),
    ];
    for (header, want) in cases {
        raw_file(&p, &header, &[0u8; 16]);
        let e = ucgm::tensor_file::TensorFile::open(&p).err().expect("hostile header accepted");
        assert!(matches!(e, ucgm::Error::Format { .. }) && e.to_string().contains(want), "{e}");
    }
    // A header length field larger than the file.
    let mut b = (1u64 << 62).to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    std::fs::write(&p, b).unwrap();
    assert!(matches!(ucgm::tensor_file::TensorFile::open(&p), Err(ucgm::Error::Format { .. })));
    let grown = common::peak_rss().saturating_sub(before);
    assert!(grown < 64 << 20, "peak resident memory grew by {grown} bytes");
}

#[test]
fn backend_buffers_larger_than_memory_are_refused_before_allocation() {
    use ucgm::Backend;
    let be = CpuBackend::<f32>::new(1).unwrap();
    let e = be.zeros(1 << 40).expect_err("a 4 TiB buffer was allocated");
    assert!(matches!(e, ucgm::Error::OutOfMemory(_)), "{e}");
    assert_eq!(be.zeros(16).unwrap(), vec![0.0; 16]);
}
