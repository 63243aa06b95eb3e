//! FID benchmarks: Inception features per image on the CPU (batch 8, 64×64 inputs
//! resized to 299), on CUDA (batch 250, where a device exists), and the 2048×2048
//! Fréchet distance. Weights: the shared random FID Inception
//! (`../shared/reference/fid_inception_random.safetensors`; same cost as the real one).
//! `benches/pytorch_fid_compare.py` times pytorch-fid on the same inputs and threads.
//! Timings need a quiet machine.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ucgm::fid::{frechet_distance, FeatureStats};
use ucgm::model::inception::{FidInception, InceptionInput};
use ucgm::{Backend, CpuBackend, Rng};

fn weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/fid_inception_random.safetensors")
}

fn images(n: usize) -> Vec<f32> {
    Rng::new(7)
        .normal_f32(n * 3 * 64 * 64)
        .iter()
        .map(|v| (0.5 + 0.2 * v).clamp(0.0, 1.0))
        .collect()
}

fn features<B: Backend>(c: &mut Criterion, name: &str, be: B, n: usize) {
    let net = FidInception::load(weights(), be, InceptionInput::PytorchFid).expect("weights");
    let x = images(n);
    let mut g = c.benchmark_group("fid");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(n as u64));
    g.bench_function(name, |b| b.iter(|| net.forward(&x, n, 64, 64).unwrap()));
    g.finish();
}

fn bench(c: &mut Criterion) {
    let threads = std::env::var("UCGM_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    features(c, &format!("features_cpu_{threads}threads_batch8"), CpuBackend::<f32>::new(threads).unwrap(), 8);
    #[cfg(feature = "cuda")]
    match ucgm::backend::cuda::CudaBackend::new(0) {
        Ok(be) => features(c, "features_cuda_batch250", be, 250),
        Err(e) => eprintln!("fid/features_cuda_batch250 skipped: {e}"),
    }
    let d = 2048;
    let stats = |seed| {
        let mut s = FeatureStats::new(d).unwrap();
        s.add_f32(&Rng::new(seed).normal_f32(2 * d * d)).unwrap();
        s.finish().unwrap()
    };
    let (a, b) = (stats(1), stats(2));
    let mut g = c.benchmark_group("fid");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.bench_function("frechet_distance_2048", |bch| bch.iter(|| frechet_distance(&a, &b).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
