//! Repeated forward (or forward + backward) passes of a named SiT/TiT for profiling
//! with `perf record`, printing the time per image (or per step).
//! Usage: cargo run --release --example profile -- [forward|train] [SiT-S/2] [batch] [reps]
use std::time::Instant;

use ucgm::{CpuBackend, Model, ModelConfig, Rng};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("forward");
    let name = args.get(2).map(String::as_str).unwrap_or("SiT-S/2");
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(5);
    let cfg = ModelConfig::from_name(name, 32, 4, 1000).expect("model name");
    let mut m = Model::init(cfg.clone(), CpuBackend::<f32>::new(0).expect("pool"), 0).expect("model");
    let mut rng = Rng::new(1);
    let p: Vec<f32> = rng.normal_f32(m.layout().total()).into_iter().map(|v| v * 0.02).collect();
    m.write_params(&p).expect("params");
    let x = rng.normal_f32(batch * cfg.image_len());
    let (t, l) = (vec![0.5f32; batch], vec![1usize; batch]);
    let mut out = vec![0f32; x.len()];
    for rep in 0..=reps {
        let t0 = Instant::now();
        if mode == "train" {
            m.forward_train(&x, &t, &l, &mut out).expect("forward");
            let t1 = Instant::now();
            m.backward(&out, None).expect("backward");
            if rep > 0 {
                println!(
                    "{name} batch {batch}: forward_train {:.1} ms, backward {:.1} ms",
                    (t1 - t0).as_secs_f64() * 1e3,
                    t1.elapsed().as_secs_f64() * 1e3
                );
            }
        } else {
            m.forward(&x, &t, &l, &mut out).expect("forward");
            if rep > 0 {
                println!("{name} batch {batch}: {:.2} ms/image", t0.elapsed().as_secs_f64() * 1e3 / batch as f64);
            }
        }
    }
}
