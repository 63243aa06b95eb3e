//! Times the bf16 products against the f32 GEMM on the SiT Linear shapes:
//! `cargo run --release --example bf16_gemm [threads]`. Prints ms per product and the
//! multiply-add rate of each.

use std::time::Instant;

use ucgm::backend::cpu::{bf16, matmul};

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let kernels = bf16::Kernel::available();
    println!("threads {threads}, kernels {kernels:?}, chosen {:?}", bf16::Kernel::detect());
    print!("{:>18} {:>9}", "m x k x n", "f32 ms");
    for k in &kernels {
        print!(" {:>16}", format!("{k:?} ms"));
    }
    println!("  (GFLOP/s in brackets)");
    for &(m, k, n) in &[
        (256, 384, 1152),
        (256, 384, 1536),
        (256, 1536, 384),
        (2048, 384, 1152),
        (2048, 384, 1536),
        (2048, 1536, 384),
        (8, 384, 2304),
        (2048, 1152, 3456),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104729 % 997) as f32 / 997.0) - 0.5).collect();
        let mut wt = vec![0f32; k * n];
        for c in 0..n {
            for r in 0..k {
                wt[r * n + c] = w[c * k + r];
            }
        }
        let mut bp = vec![0u32; bf16::packed_len(k, n)];
        bf16::pack_b_nk(&w, &mut bp, k, n);
        let mut c = vec![0f32; m * n];
        let reps = (2e9 / (m * n * k) as f64).clamp(3.0, 200.0) as usize;
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() * 1e3 / reps as f64
        };
        let gf = |ms: f64| 2.0 * (m * n * k) as f64 / ms / 1e6;
        let f32_ms = pool.install(|| time(&mut || matmul(m, k, n, &a, k, 1, &wt, n, 1, 0.0, &mut c, n, 1)));
        print!("{:>18} {:>9.3}", format!("{m}x{k}x{n}"), f32_ms);
        for &kern in &kernels {
            let ms = pool.install(|| time(&mut || bf16::gemm(kern, m, k, n, &a, k, &bp, &mut c, n)));
            print!(" {:>16}", format!("{ms:.3} [{:.0}]", gf(ms)));
        }
        println!("  f32 [{:.0}]", gf(f32_ms));
    }
}
