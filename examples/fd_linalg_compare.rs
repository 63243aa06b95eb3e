//! Times the 2048×2048 Fréchet distance with faer (the engine's choice, both the
//! product-eigenvalue form it uses and the symmetric form) and with nalgebra (symmetric
//! eigendecompositions), on covariances of 4096 random feature vectors.
//!
//! `cargo run --release --example fd_linalg_compare [dim]` (timings need a quiet machine).

use std::time::Instant;

use nalgebra::DMatrix;
use ucgm::fid::frechet::trace_sqrt_product;
use ucgm::fid::FeatureStats;
use ucgm::Rng;

fn nalgebra_trace_sqrt(s1: &[f64], s2: &[f64], d: usize) -> f64 {
    let m1 = DMatrix::from_row_slice(d, d, s1);
    let m2 = DMatrix::from_row_slice(d, d, s2);
    let e = m1.symmetric_eigen();
    let sq = e.eigenvalues.map(|l| l.max(0.0).sqrt());
    let b = &e.eigenvectors * DMatrix::from_diagonal(&sq);
    let c = b.transpose() * m2 * &b;
    let c = (&c + c.transpose()) * 0.5;
    c.symmetric_eigenvalues().iter().map(|l| l.max(0.0).sqrt()).sum()
}

fn faer_symmetric_trace_sqrt(s1: &[f64], s2: &[f64], d: usize) -> f64 {
    use faer::{Mat, Side};
    let m1 = Mat::from_fn(d, d, |i, j| s1[i * d + j]);
    let m2 = Mat::from_fn(d, d, |i, j| s2[i * d + j]);
    let e = m1.self_adjoint_eigen(Side::Lower).unwrap();
    let (u, s) = (e.U(), e.S().column_vector());
    let b = Mat::from_fn(d, d, |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    let c = b.transpose() * &m2 * &b;
    c.self_adjoint_eigenvalues(Side::Lower).unwrap().iter().map(|l| l.max(0.0).sqrt()).sum()
}

fn main() {
    let d: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(2048);
    let n = 2 * d;
    let cov = |seed: u64| {
        let x: Vec<f32> = Rng::new(seed)
            .normal_f32(n * d)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i % d) as f32 / d as f32))
            .collect();
        let mut s = FeatureStats::new(d).unwrap();
        s.add_f32(&x).unwrap();
        s.finish().unwrap()
    };
    let (a, b) = (cov(1), cov(2));
    let t = Instant::now();
    let p = trace_sqrt_product(a.cov(), b.cov(), d).unwrap();
    println!("faer product eigenvalues (engine): {:.2} s  tr = {p:.10}", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let s = faer_symmetric_trace_sqrt(a.cov(), b.cov(), d);
    println!("faer symmetric form:               {:.2} s  tr = {s:.10}", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let q = nalgebra_trace_sqrt(a.cov(), b.cov(), d);
    println!("nalgebra symmetric form:           {:.2} s  tr = {q:.10}", t.elapsed().as_secs_f64());
}
