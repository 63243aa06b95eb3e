//! Helpers shared by the CUDA tests (`tests/cuda_*.rs`): the skip-or-require rule, the
//! NMSE comparison of design.md §5.3, the proptest configuration, buffer helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use ucgm::backend::cuda::{CudaBackend, CudaBuf};
use ucgm::{Backend, CpuBackend};

/// NMSE thresholds (f32, TF32 off), design.md §5.3.
pub const ELEMENTWISE: f64 = 1e-12;
pub const NORMS: f64 = 1e-10;
pub const MATMUL: f64 = 1e-9;
pub const WHOLE_MODEL: f64 = 1e-8;
pub const STEPS: f64 = 1e-6;

/// Whether a skipped GPU test must fail instead (`UCGM_REQUIRE_CUDA=1`).
pub fn require_cuda() -> bool {
    std::env::var("UCGM_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// The CUDA backend on device 0, or None (after printing why) where CUDA is unavailable.
/// Panics instead of skipping when `UCGM_REQUIRE_CUDA=1`, and whenever the device is
/// there but the backend cannot be created (a kernel that fails to compile, say).
pub fn gpu(test: &str) -> Option<CudaBackend> {
    match CudaBackend::probe() {
        Ok(info) => {
            let be = CudaBackend::new(info.ordinal).unwrap_or_else(|e| panic!("{test}: CUDA device found ({info}) but the backend failed: {e}"));
            eprintln!("{test}: running on {info}");
            Some(be)
        }
        Err(why) => {
            assert!(!require_cuda(), "{test}: UCGM_REQUIRE_CUDA=1 but CUDA is unavailable: {why}");
            eprintln!("{test}: skipped, CUDA unavailable: {why}");
            None
        }
    }
}

/// Like [`gpu`], with backend options (bf16 mixed precision, TF32).
pub fn gpu_with(test: &str, options: ucgm::backend::cuda::CudaOptions) -> Option<CudaBackend> {
    let info = gpu(test)?.device().clone();
    Some(CudaBackend::with_options(info.ordinal, options).unwrap_or_else(|e| panic!("{test}: backend with {options:?} failed: {e}")))
}

/// The bf16 mixed-precision options.
pub fn bf16_options() -> ucgm::backend::cuda::CudaOptions {
    ucgm::backend::cuda::CudaOptions {
        bf16: true,
        ..Default::default()
    }
}

/// `v` rounded to bf16 (nearest even) and back: what a bf16 GEMM reads.
pub fn bf16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect()
}

/// NMSE threshold of bf16 paths against f32, design.md §5.3.
pub const BF16: f64 = 1e-4;

/// The CPU reference backend.
pub fn cpu() -> CpuBackend<f32> {
    CpuBackend::<f32>::new(2).expect("cpu backend")
}

/// Proptest configuration: `PROPTEST_CASES` cases (default 24), no failure files (the
/// seed of a failing case is printed instead).
pub fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs property `f` over `strategy` with [`config`]; panics with the minimal failing input.
pub fn run_prop<S: Strategy>(name: &str, strategy: S, f: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&strategy, f) {
        panic!("{name}: {e}");
    }
}

/// NMSE = Σ(x − ref)² / Σref² in f64; +inf if `got` holds a NaN or ±inf, or lengths differ.
/// When the reference is all zeros, the plain Σx² is returned.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (&a, &b) in got.iter().zip(want) {
        let e = a as f64 - b as f64;
        num += e * e;
        den += (b as f64) * (b as f64);
    }
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Fails the proptest case unless NMSE(got, want) ≤ tol.
pub fn check(name: &str, got: &[f32], want: &[f32], tol: f64) -> Result<(), TestCaseError> {
    let e = nmse(got, want);
    if e <= tol {
        Ok(())
    } else {
        let bad = got.iter().position(|v| !v.is_finite());
        // The worst element, for diagnosis on a machine whose logs are all one has.
        let worst = got
            .iter()
            .zip(want)
            .enumerate()
            .max_by(|a, b| ((a.1 .0 - a.1 .1).abs()).total_cmp(&(b.1 .0 - b.1 .1).abs()))
            .map(|(i, (g, w))| format!("worst at {i}: got {g:e}, want {w:e}"));
        Err(TestCaseError::fail(format!(
            "{name}: NMSE {e:.3e} > {tol:.0e} (len {} vs {}, first non-finite at {bad:?}, {})",
            got.len(),
            want.len(),
            worst.unwrap_or_default()
        )))
    }
}

/// [`check`] for a formula whose float32 evaluation has an absolute error bound of its
/// own: elements within `floor[i]` of the reference count as equal, the rest must meet
/// the NMSE bound. For GELU's tanh form 0.5·x·(1 + tanh u) in the negative tail, 1 + tanh
/// u cancels: its float32 value carries an absolute error of about one unit in the last
/// place of 1 (2⁻²³), so any two correct float32 implementations (the CPU's vectorised
/// tanh, CUDA's tanhf) may differ by 2⁻²³·(1 + |x|) there, even though that is ~2e-6
/// relative to a value of 1e-7 (seen on the H200: x ≈ −5.3, one element, NMSE 3.4e-12).
pub fn check_floor(name: &str, got: &[f32], want: &[f32], floor: &[f64], tol: f64) -> Result<(), TestCaseError> {
    if got.len() != want.len() || floor.len() != want.len() {
        return check(name, got, want, tol);
    }
    let outside: Vec<f32> = got
        .iter()
        .zip(want)
        .zip(floor)
        .map(|((&g, &w), &f)| if g.is_finite() && ((g as f64) - (w as f64)).abs() <= f { w } else { g })
        .collect();
    check(name, &outside, want, tol)
}

/// The float32 cancellation bound of an activation of `x` (see [`check_floor`]), times
/// `scale` (the incoming gradient for a backward).
pub fn activation_floor(x: &[f32], scale: Option<&[f32]>) -> Vec<f64> {
    let eps = f64::from(f32::EPSILON);
    x.iter()
        .enumerate()
        .map(|(i, &v)| eps * (1.0 + f64::from(v.abs())) * scale.map_or(1.0, |s| f64::from(s[i].abs()).max(1.0)))
        .collect()
}

/// Panicking form of [`check`] for plain tests.
pub fn assert_nmse(name: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = nmse(got, want);
    eprintln!("{name}: NMSE {e:.3e}");
    assert!(e <= tol, "{name}: NMSE {e:.3e} > {tol:.0e}");
}

/// Deterministic N(0, 1) values for a case seed.
pub fn randn(seed: u64, n: usize) -> Vec<f32> {
    ucgm::Rng::new(seed).normal_f32(n)
}

/// A device buffer holding `host`.
pub fn up(be: &CudaBackend, host: &[f32]) -> CudaBuf {
    be.upload(host).expect("upload")
}

/// A device buffer of `n` NaNs (an output that must be fully overwritten).
pub fn poisoned(be: &CudaBackend, n: usize) -> CudaBuf {
    be.upload(&vec![f32::NAN; n]).expect("upload")
}

/// The whole buffer back on the host.
pub fn down(be: &CudaBackend, buf: &CudaBuf) -> Vec<f32> {
    be.read(buf, 0..be.len(buf)).expect("read")
}

/// The reference tensors: `UCGM_REFERENCE_DIR`, else `../shared/reference` beside the
/// repository (the GPU runner sets the variable: it carries a copy of them).
pub fn reference(name: &str) -> PathBuf {
    let dir = std::env::var_os("UCGM_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join("reference"));
    assert!(dir.is_dir(), "reference tensors not found at {} (set UCGM_REFERENCE_DIR)", dir.display());
    dir.join(name)
}
