//! The Linears' products two ways, interleaved: the `gemm` crate's own threading over
//! the whole product (`matmul`) against independent output tiles, one per task
//! (`matmul_tiled`, what the Linears run). SiT-S/2 shapes at batch 8 (forward, dX, dW)
//! and batch 1 (below the tiling size, where both are the same call).
//!
//! Usage: cargo run --release --example gemm_tiles [threads] [rounds]
//! Prints per shape the median ms of each and the ratio crate/tiled (above 1: tiles win).

use std::time::Instant;

use ucgm::backend::cpu::{matmul, matmul_tiled, tile_shape};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(15);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    println!("{threads} threads, median of {rounds} interleaved rounds");
    println!("{:<22} {:>16} {:>10} {:>10} {:>8}", "product (m×k×n)", "tiles", "crate ms", "tiled ms", "ratio");
    // (name, m, k, n, A transposed): y = x·Wt (forward), dX = dY·W, dW = dYᵀ·X.
    let cases = [
        ("fwd 384->1536 b8", 2048, 384, 1536, false),
        ("fwd 1536->384 b8", 2048, 1536, 384, false),
        ("fwd 384->1152 b8", 2048, 384, 1152, false),
        ("fwd 384->384 b8", 2048, 384, 384, false),
        ("dW 384->1536 b8", 1536, 2048, 384, true),
        ("dW 1536->384 b8", 384, 2048, 1536, true),
        ("dW 384->1152 b8", 1152, 2048, 384, true),
        ("dW 384->384 b8", 384, 2048, 384, true),
        ("fwd 384->1536 b1", 256, 384, 1536, false),
    ];
    for (name, m, k, n, a_t) in cases {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729 % 997) as f32 / 997.0) - 0.5).collect();
        let (rsa, csa) = if a_t { (1, m) } else { (k, 1) };
        let mut c = vec![0f32; m * n];
        let (mut crate_ms, mut tiled_ms) = (Vec::new(), Vec::new());
        pool.install(|| {
            for round in 0..rounds + 1 {
                let t = Instant::now();
                matmul(m, k, n, &a, rsa, csa, &b, n, 1, 0.0, &mut c, n, 1);
                let t_crate = t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                matmul_tiled(m, k, n, &a, rsa, csa, &b, n, 1, 0.0, &mut c, n, None);
                let t_tiled = t.elapsed().as_secs_f64() * 1e3;
                if round > 0 {
                    crate_ms.push(t_crate);
                    tiled_ms.push(t_tiled);
                }
            }
        });
        let (tr, tc) = tile_shape(m, n, threads);
        let tiles = if m * n * k >= ucgm::backend::cpu::TILE_WORK {
            format!("{}×{} of {tr}×{tc}", m.div_ceil(tr), n.div_ceil(tc))
        } else {
            "(not tiled)".to_string()
        };
        let (cm, tm) = (median(crate_ms), median(tiled_ms));
        println!("{:<22} {tiles:>16} {cm:>10.3} {tm:>10.3} {:>7.2}×", format!("{name} ({m}×{k}×{n})"), cm / tm);
    }
}
