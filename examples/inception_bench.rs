//! Times the FID Inception's features on the CPU, one measurement per run, for
//! `benches/pytorch_fid_compare.py` (which interleaves these runs with pytorch-fid's):
//!
//! ```text
//! cargo run --release --example inception_bench -- [threads] [reps] [batch] [side] [--profile]
//! ```
//!
//! `--profile` prints the per-op table afterwards (convolutions per kernel and stride;
//! [`ucgm::backend::profiled::Profiled`]).
//!
//! Batch 8 of 64×64 images in [0, 1] by default (bilinear resize to 299×299 inside, as
//! pytorch-fid), random weights in the real geometry (the work does not depend on the
//! values). Prints `ucgm features: <median ms per image> ms/image wall, <cpu s per
//! image> s cpu`. Only meaningful on an otherwise quiet machine.

use std::time::Instant;

use ucgm::backend::cpu::CpuBackend;
use ucgm::backend::profiled::Profiled;
use ucgm::model::inception::{FidInception, InceptionInput};
use ucgm::Rng;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() -> ucgm::Result<()> {
    let profile = std::env::args().any(|a| a == "--profile");
    let args: Vec<String> = std::env::args().filter(|a| a != "--profile").collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (threads, reps, batch, side) = (arg(1, 2), arg(2, 5), arg(3, 8), arg(4, 64));
    let be = Profiled::new(CpuBackend::<f32>::new(threads)?);
    let net = FidInception::random(be.clone(), InceptionInput::PytorchFid, 0)?;
    let x: Vec<f32> = Rng::new(1)
        .normal_f32(batch * 3 * side * side)
        .iter()
        .map(|v| (0.5 + 0.25 * v).clamp(0.0, 1.0))
        .collect();
    net.forward(&x, batch, side, side)?;
    be.reset();
    let c0 = cpu_seconds();
    let mut ms: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t0 = Instant::now();
            net.forward(&x, batch, side, side).map(|_| t0.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<ucgm::Result<_>>()?;
    let cpu = (cpu_seconds() - c0) / reps.max(1) as f64;
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let per = ms[ms.len() / 2] / batch as f64;
    println!(
        "ucgm features: {per:.2} ms/image wall, {:.4} s cpu (activation buffers kept: {:.0} MiB)",
        cpu / batch as f64,
        net.workspace_bytes() as f64 / 1048576.0
    );
    if profile {
        let mut rows: Vec<_> = be.table().into_iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.time));
        let total: f64 = rows.iter().map(|r| r.1.time.as_secs_f64()).sum();
        println!("| op | calls/batch | ms/image | % |\n|---|---|---|---|");
        for (op, t) in rows {
            let s = t.time.as_secs_f64();
            println!(
                "| {op} | {} | {:.2} | {:.1} |",
                t.calls / reps.max(1) as u64,
                s * 1e3 / (reps.max(1) * batch) as f64,
                100.0 * s / total
            );
        }
    }
    Ok(())
}
