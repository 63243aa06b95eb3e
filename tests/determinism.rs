//! Same input → bit-identical output and gradients with 1, 2 and 3 threads: work is
//! split by output rows (or columns), never along a reduction (design.md §5.4).

use ucgm::{Arch, CpuBackend, Model, ModelConfig, ParamLayout, Rng};

fn run(arch: Arch, threads: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let cfg = ModelConfig {
        arch,
        input_size: 16,
        in_channels: 4,
        patch: 2,
        hidden: 128,
        depth: 2,
        heads: 4,
        num_classes: 10,
    };
    let mut rng = Rng::new(5);
    let n = ParamLayout::for_config(&cfg).total();
    let params: Vec<f32> = rng.normal_f32(n).into_iter().map(|v| v * 0.05).collect();
    let mut m = Model::from_params(cfg.clone(), CpuBackend::<f32>::new(threads).unwrap(), &params).unwrap();
    let b = 3;
    let x = rng.normal_f32(b * cfg.image_len());
    let t = [0.1f32, 0.5, 0.9];
    let labels = [0usize, 7, 10];
    let mut inference = vec![0f32; x.len()];
    m.forward(&x, &t, &labels, &mut inference).unwrap();
    let mut out = vec![0f32; x.len()];
    m.forward_train(&x, &t, &labels, &mut out).unwrap();
    let dout = rng.normal_f32(x.len());
    let mut dx = vec![0f32; x.len()];
    m.zero_grads().unwrap();
    m.backward(&dout, Some(&mut dx)).unwrap();
    (out, m.read_grads().unwrap(), dx, inference)
}

#[test]
fn thread_count_does_not_change_results() {
    for arch in [Arch::Sit, Arch::Tit] {
        let one = run(arch, 1);
        for threads in [2, 3] {
            let many = run(arch, threads);
            assert!(one.0 == many.0, "{arch:?}: forward differs with {threads} threads");
            assert!(one.1 == many.1, "{arch:?}: parameter gradients differ with {threads} threads");
            assert!(one.2 == many.2, "{arch:?}: input gradient differs with {threads} threads");
            assert!(one.3 == many.3, "{arch:?}: inference forward differs with {threads} threads");
        }
    }
}

/// Batch 1 with a hidden size whose modulation product (1×256·1536) is large enough to be
/// split over threads by columns (the row-vector path of `gemm.rs`), and 256 tokens, so
/// the GELU epilogue (256×1024) is split by rows: the inference forward keeps its bits
/// for 1–4 threads.
#[test]
fn batch_one_forward_is_the_same_for_any_thread_count() {
    let cfg = ModelConfig {
        arch: Arch::Sit,
        input_size: 32,
        in_channels: 4,
        patch: 2,
        hidden: 256,
        depth: 2,
        heads: 4,
        num_classes: 10,
    };
    let mut rng = Rng::new(9);
    let params: Vec<f32> = rng.normal_f32(ParamLayout::for_config(&cfg).total()).into_iter().map(|v| v * 0.05).collect();
    let x = rng.normal_f32(cfg.image_len());
    let forward = |threads: usize| {
        let mut m = Model::from_params(cfg.clone(), CpuBackend::<f32>::new(threads).unwrap(), &params).unwrap();
        let mut out = vec![0f32; x.len()];
        m.forward(&x, &[0.3], &[4], &mut out).unwrap();
        out
    };
    let one = forward(1);
    assert!(one.iter().all(|v| v.is_finite()) && one.iter().any(|&v| v != 0.0));
    for threads in [2, 3, 4] {
        assert!(forward(threads) == one, "batch-1 forward differs with {threads} threads");
    }
}

/// Inference keeps a transposed copy of the Linear weights (faster GEMMs on the CPU): it
/// agrees with the plain path to rounding, and any parameter write invalidates it.
#[test]
fn transposed_weight_cache_matches_and_follows_parameter_writes() {
    let cfg = ModelConfig {
        arch: Arch::Tit,
        input_size: 16,
        in_channels: 4,
        patch: 2,
        hidden: 128,
        depth: 2,
        heads: 4,
        num_classes: 10,
    };
    let mut rng = Rng::new(9);
    let n = ParamLayout::for_config(&cfg).total();
    let p1: Vec<f32> = rng.normal_f32(n).into_iter().map(|v| v * 0.05).collect();
    let p2: Vec<f32> = rng.normal_f32(n).into_iter().map(|v| v * 0.05).collect();
    let x = rng.normal_f32(2 * cfg.image_len());
    let (t, labels) = ([0.2f32, 0.7], [3usize, 10]);
    let eval = |m: &mut Model<CpuBackend>| {
        let mut out = vec![0f32; x.len()];
        m.forward(&x, &t, &labels, &mut out).unwrap();
        out
    };
    let mut m = Model::from_params(cfg.clone(), CpuBackend::<f32>::new(2).unwrap(), &p1).unwrap();
    let cached = eval(&mut m);
    let own = m.params().clone();
    let mut plain = vec![0f32; x.len()];
    m.forward_with(&own, &x, &t, &labels, &mut plain).unwrap();
    let num: f64 = cached.iter().zip(&plain).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = plain.iter().map(|b| (*b as f64).powi(2)).sum();
    assert!((num / den).sqrt() < 1e-6, "cache path differs: {:e}", (num / den).sqrt());
    m.write_params(&p2).unwrap();
    let after = eval(&mut m);
    let mut fresh = Model::from_params(cfg, CpuBackend::<f32>::new(2).unwrap(), &p2).unwrap();
    assert!(after == eval(&mut fresh), "stale transposed weights after write_params");
}
