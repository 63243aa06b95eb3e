//! Times the VAE and its convolution on the CPU, one measurement per run, for
//! `benches/pytorch_compare_vae.py` (which interleaves these runs with PyTorch's) and by
//! hand:
//!
//! ```text
//! cargo run --release --example vae_bench -- decode    [threads] [reps]   # SD-VAE 4×32×32 → 256²
//! cargo run --release --example vae_bench -- encode    [threads] [reps]   # SD-VAE 256² → 4×32×32
//! cargo run --release --example vae_bench -- decode512 [threads] [reps]   # 4×64×64 → 512², peak RSS
//! cargo run --release --example vae_bench -- conv      [threads] [reps]   # 3×3 128→128 at 256² vs its GEMM
//! ```
//!
//! Prints `ucgm <mode>: <median ms> ms wall, <cpu s per run> s cpu, peak RSS <MiB>`.
//! Random weights (the reference's test initialisation), built in memory. Timings are
//! only meaningful on an otherwise quiet machine.

use std::time::Instant;

use ucgm::backend::cpu::{matmul, CpuBackend};
use ucgm::backend::{Backend, Conv2dShape};
use ucgm::model::vae::{Vae, VaeConfig};
use ucgm::Rng;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0)
}

/// (median wall ms, mean cpu s) of `reps` runs after one warm-up.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let c0 = cpu_seconds();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = (cpu_seconds() - c0) / reps as f64;
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], cpu)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("decode");
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let be = CpuBackend::<f32>::new(threads).unwrap();
    let mut rng = Rng::new(3);
    let (ms, cpu) = match mode {
        "decode" | "decode512" | "encode" => {
            let mut vae = Vae::random(VaeConfig::sd_vae(), be, 0).unwrap();
            let side = if mode == "decode512" { 64 } else { 32 };
            if mode == "encode" {
                let img: Vec<f32> = rng.normal_f32(3 * 256 * 256).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
                time(reps, || drop(vae.encode(&img, 1, 256, 256).unwrap()))
            } else {
                let z = rng.normal_f32(4 * side * side);
                time(reps, || drop(vae.decode(&z, 1, side, side).unwrap()))
            }
        }
        "conv" => {
            let s = Conv2dShape::square(1, 128, 256, 256, 128, 3, 1, 1);
            let (x, w, b) = (rng.normal_f32(s.x_len()), rng.normal_f32(s.w_len()), rng.normal_f32(128));
            let mut y = vec![0f32; s.y_len()];
            let conv = time(reps, || be.conv2d_fwd(&x, &w, Some(&b), &mut y, &s));
            // The same product from a ready column matrix: the GEMM alone.
            let (k, p) = (s.k_len(), 256 * 256);
            let col = rng.normal_f32(k * p);
            let gemm = time(reps, || be.install(|| matmul(128, k, p, &w, k, 1, &col, p, 1, 0.0, &mut y, p, 1)));
            let gflop = 2.0 * 128.0 * k as f64 * p as f64 / 1e9;
            println!(
                "conv 3x3 128->128 256x256: im2col-tiled {:.1} ms ({:.1} GFLOP/s); GEMM alone on a prebuilt column matrix {:.1} ms ({:.1} GFLOP/s)",
                conv.0,
                gflop / conv.0 * 1e3,
                gemm.0,
                gflop / gemm.0 * 1e3
            );
            conv
        }
        other => panic!("unknown mode {other} (decode, encode, decode512, conv)"),
    };
    println!("ucgm {mode}: {ms:.1} ms wall, {cpu:.3} s cpu, peak RSS {:.0} MiB", peak_rss_mib());
}
