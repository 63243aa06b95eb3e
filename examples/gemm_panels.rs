//! The f32 inference Linears' products two ways, interleaved: the `gemm` crate on the
//! row-major Wᵀ (`matmul_tiled`, what CPUs without the panel kernels run) against the
//! AVX2 panel kernels on the same weights in panel form (`panel::product`, what
//! AVX2-without-AVX-512 CPUs run). SiT-S/2 shapes at batch 1 and batch 8. Each round
//! cycles through 12 different weights per shape, so they come from memory as in a
//! model's pass, not from cache; both sides must give the same bits (checked).
//!
//! Usage: cargo run --release --example gemm_panels [threads] [rounds]
//! Prints per shape the median ms of each, GFLOP/s, and the ratio crate/panels (above 1:
//! panels win). On a CPU without the panel kernels it says so and exits.

use std::time::Instant;

use ucgm::backend::cpu::{matmul_tiled, panel};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(9);
    if !panel::available() {
        println!("this CPU does not run the panel kernels (they need AVX2 and FMA without AVX-512F); nothing to compare");
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    println!("{threads} threads, median of {rounds} interleaved rounds, 12 weights cycled per shape");
    println!(
        "{:<20} {:>10} {:>10} {:>9} {:>9} {:>7}",
        "product (m×k→o)", "crate ms", "panels ms", "crate GF", "panel GF", "ratio"
    );
    let (mut total_crate, mut total_panels) = (0.0, 0.0);
    for m in [256usize, 2048] {
        // (k, o): qkv, attention projection, MLP in, MLP out, and the adaLN modulation (one row per image).
        for (k, o) in [(384usize, 1152usize), (384, 384), (384, 1536), (1536, 384), (384, 2304)] {
            let m = if o == 2304 { m / 256 } else { m };
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5).collect();
            // 12 weights W[o, k], each in both forms.
            let plain: Vec<Vec<f32>> = (0..12)
                .map(|s| (0..o * k).map(|i| (((i + 31 * s) * 104729 % 997) as f32 / 997.0) - 0.5).collect())
                .collect();
            let row_major: Vec<Vec<f32>> = plain
                .iter()
                .map(|w| {
                    let mut wt = vec![0f32; k * o];
                    for r in 0..o {
                        for p in 0..k {
                            wt[p * o + r] = w[r * k + p];
                        }
                    }
                    wt
                })
                .collect();
            let panels: Vec<Vec<f32>> = plain
                .iter()
                .map(|w| {
                    let mut p = vec![0f32; k * o];
                    panel::pack(w, &mut p, k, o);
                    p
                })
                .collect();
            let (mut c_crate, mut c_panels) = (vec![0f32; m * o], vec![0f32; m * o]);
            let (mut t_crate, mut t_panels) = (Vec::new(), Vec::new());
            pool.install(|| {
                for round in 0..rounds + 1 {
                    let t = Instant::now();
                    for wt in &row_major {
                        matmul_tiled(m, k, o, &a, k, 1, wt, o, 1, 0.0, &mut c_crate, o, None);
                    }
                    let crate_s = t.elapsed().as_secs_f64() / 12.0;
                    let t = Instant::now();
                    for p in &panels {
                        panel::product(m, k, o, &a, p, &mut c_panels, None);
                    }
                    let panels_s = t.elapsed().as_secs_f64() / 12.0;
                    if round > 0 {
                        t_crate.push(crate_s);
                        t_panels.push(panels_s);
                    }
                }
            });
            assert!(c_crate == c_panels, "{m}x{k}->{o}: the two forms disagree");
            let (tc, tp) = (median(t_crate), median(t_panels));
            total_crate += tc;
            total_panels += tp;
            let gf = 2.0 * (m * k * o) as f64 / 1e9;
            println!(
                "{:<20} {:>10.3} {:>10.3} {:>9.0} {:>9.0} {:>6.2}×",
                format!("{m}×{k}→{o}"),
                tc * 1e3,
                tp * 1e3,
                gf / tc,
                gf / tp,
                tc / tp
            );
        }
    }
    println!(
        "sum of the medians: crate {:.2} ms, panels {:.2} ms, ratio {:.2}×",
        total_crate * 1e3,
        total_panels * 1e3,
        total_crate / total_panels
    );
}
