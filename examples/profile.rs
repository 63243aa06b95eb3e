//! Repeated forward passes or training steps (forward + backward + AdamW) of a named
//! SiT/TiT on the CPU, printing the time per image (or per step), then the per-op
//! profile: each backend op's calls, wall time per pass and cores kept busy, from
//! [`ucgm::backend::profiled::Profiled`] (warm-up pass excluded). Also the workload for
//! `perf record`.
//!
//! Usage: cargo run --release --example profile -- [forward|train] [SiT-S/2|tiny] [batch] [reps] [--bf16]
//!
//! `--bf16`: the forward in the CPU's bf16 inference mode (the model in its packed
//! inference layout, as a sampling handle holds it). Without it the forward runs in the
//! f32 inference layout, as `ucgm sample` does. Threads: `UCGM_THREADS` (default: one per
//! core).
use std::time::Instant;

use ucgm::backend::cpu::CpuOptions;
use ucgm::backend::profiled::Profiled;
use ucgm::backend::{Backend, OptimHp};
use ucgm::{CpuBackend, Model, ModelConfig, Rng};

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bf16").collect();
    let bf16 = std::env::args().any(|a| a == "--bf16");
    let mode = args.get(1).map(String::as_str).unwrap_or("forward");
    let name = args.get(2).map(String::as_str).unwrap_or("SiT-S/2");
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(5).max(1);
    let threads = std::env::var("UCGM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let train = mode == "train";
    // "tiny": the benches' tiny network (D 128, depth 4, 4 heads, 4×16×16, patch 2).
    let cfg = if name == "tiny" {
        ModelConfig {
            arch: ucgm::Arch::Sit,
            input_size: 16,
            in_channels: 4,
            patch: 2,
            hidden: 128,
            depth: 4,
            heads: 4,
            num_classes: 10,
        }
    } else {
        ModelConfig::from_name(name, 32, 4, 1000).expect("model name")
    };
    let cpu = CpuBackend::<f32>::with_options(threads, CpuOptions { bf16 }).expect("pool");
    let be = Profiled::new(cpu);
    let mut m = Model::init(cfg.clone(), be.clone(), 0).expect("model");
    let mut rng = Rng::new(1);
    let p: Vec<f32> = rng.normal_f32(m.layout().total()).into_iter().map(|v| v * 0.02).collect();
    m.write_params(&p).expect("params");
    if !train {
        m.enter_inference_layout().expect("inference layout");
    }
    let n = m.layout().total();
    let (mut adam_m, mut adam_v) = if train {
        (be.zeros(n).expect("m"), be.zeros(n).expect("v"))
    } else {
        (vec![], vec![])
    };
    let hp = OptimHp {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let x = rng.normal_f32(batch * cfg.image_len());
    let (t, l) = (vec![0.5f32; batch], vec![1usize; batch]);
    let mut out = vec![0f32; x.len()];
    let mut total = 0.0;
    for rep in 0..=reps {
        if rep == 1 {
            be.reset();
        }
        let t0 = Instant::now();
        if train {
            m.zero_grads().expect("zero");
            m.forward_train(&x, &t, &l, &mut out).expect("forward");
            let t1 = Instant::now();
            m.backward(&out, None).expect("backward");
            let t2 = Instant::now();
            let (params, grads) = m.params_and_grads_mut().expect("grads");
            be.adamw_step(&mut params[..n], &grads[..n], &mut adam_m, &mut adam_v, &hp, rep as u64 + 1);
            if rep > 0 {
                total += t0.elapsed().as_secs_f64();
                println!(
                    "{name} batch {batch}: forward_train {:.1} ms, backward {:.1} ms, AdamW {:.1} ms",
                    (t1 - t0).as_secs_f64() * 1e3,
                    (t2 - t1).as_secs_f64() * 1e3,
                    t2.elapsed().as_secs_f64() * 1e3
                );
            }
        } else {
            m.forward(&x, &t, &l, &mut out).expect("forward");
            if rep > 0 {
                total += t0.elapsed().as_secs_f64();
                println!("{name} batch {batch}: {:.2} ms/image", t0.elapsed().as_secs_f64() * 1e3 / batch as f64);
            }
        }
    }
    let per_pass = total * 1e3 / reps as f64;
    let table = be.table();
    let mut rows: Vec<_> = table.iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.time));
    let timed: f64 = rows.iter().map(|(_, o)| o.time.as_secs_f64()).sum::<f64>() * 1e3 / reps as f64;
    println!(
        "\nper-op profile: {name}, {} batch {batch}{}, {} threads, mean of {reps} passes of {per_pass:.1} ms (ops {timed:.1} ms, {:.1}% of the pass)",
        if train { "training step" } else { "forward" },
        if bf16 { ", bf16" } else { "" },
        be.inner().threads(),
        100.0 * timed / per_pass
    );
    println!("| op | calls/pass | ms/pass | % of pass | cores busy |");
    println!("|---|---|---|---|---|");
    for (op, o) in rows {
        let ms = o.time.as_secs_f64() * 1e3 / reps as f64;
        println!(
            "| {op} | {} | {ms:.2} | {:.1} | {:.2} |",
            o.calls / reps as u64,
            100.0 * ms / per_pass,
            o.cores_busy()
        );
    }
}
