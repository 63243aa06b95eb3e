//! Runs repeated forward + backward passes of a named model for profiling.
//! Usage: cargo run --release --example profile_train -- [SiT-S/2] [batch] [reps]
use ucgm::{CpuBackend, Model, ModelConfig, Rng};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("SiT-S/2");
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let cfg = ModelConfig::from_name(name, 32, 4, 1000).unwrap();
    let mut m = Model::init(cfg.clone(), CpuBackend::<f32>::new(0).unwrap(), 0).unwrap();
    let mut rng = Rng::new(1);
    let p: Vec<f32> = rng.normal_f32(m.layout().total()).into_iter().map(|v| v * 0.02).collect();
    m.write_params(&p).unwrap();
    let x = rng.normal_f32(batch * cfg.image_len());
    let t = vec![0.5f32; batch];
    let l = vec![1usize; batch];
    let mut out = vec![0f32; x.len()];
    let (mut tf, mut tb) = (0.0, 0.0);
    for _ in 0..reps {
        let t0 = std::time::Instant::now();
        m.forward_train(&x, &t, &l, &mut out).unwrap();
        let t1 = std::time::Instant::now();
        m.backward(&out, None).unwrap();
        let (f, b) = ((t1 - t0).as_secs_f64(), t1.elapsed().as_secs_f64());
        eprintln!("  forward_train {:.1} ms, backward {:.1} ms", f * 1e3, b * 1e3);
        tf += f;
        tb += b;
    }
    println!("{name} batch {batch}: forward_train {:.1} ms, backward {:.1} ms per step", tf * 1e3 / reps as f64, tb * 1e3 / reps as f64);
}
