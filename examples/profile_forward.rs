//! Runs repeated forward passes of a named model for profiling (`perf record`).
//! Usage: cargo run --release --example profile_forward -- [SiT-S/2] [batch] [reps]
use ucgm::{CpuBackend, Model, ModelConfig, Rng};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("SiT-S/2");
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let cfg = ModelConfig::from_name(name, 32, 4, 1000).unwrap();
    let mut m = Model::init(cfg.clone(), CpuBackend::<f32>::new(0).unwrap(), 0).unwrap();
    let mut rng = Rng::new(1);
    let p: Vec<f32> = rng.normal_f32(m.layout().total()).into_iter().map(|v| v * 0.02).collect();
    m.write_params(&p).unwrap();
    let x = rng.normal_f32(batch * cfg.image_len());
    let t = vec![0.5f32; batch];
    let l = vec![1usize; batch];
    let mut out = vec![0f32; x.len()];
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        m.forward(&x, &t, &l, &mut out).unwrap();
    }
    println!("{name} batch {batch}: {:.2} ms/image", t0.elapsed().as_secs_f64() * 1e3 / (reps * batch) as f64);
}
