//! Helpers shared by the integration tests: where the reference tensors live and how
//! outputs are compared with them.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/reference` beside the repository (as on the developer machines and in CI),
/// or `$UCGM_REFERENCE_DIR` where set (the staged copy on the GPU machine).
pub fn reference_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("UCGM_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("..").join("shared").join("reference"));
    assert!(
        dir.is_dir(),
        "reference tensors not found at {} (copy shared/ beside the repository)",
        dir.display()
    );
    dir
}

/// Path of one reference file.
pub fn reference(name: &str) -> PathBuf {
    reference_dir().join(name)
}

/// ‖out − ref‖ / ‖ref‖ and the index of the worst absolute error, in f64.
pub fn rel_l2(out: &[f32], reference: &[f32]) -> (f64, usize) {
    assert_eq!(out.len(), reference.len(), "length mismatch");
    let (mut num, mut den, mut worst, mut wi) = (0f64, 0f64, 0f64, 0usize);
    for (i, (&a, &b)) in out.iter().zip(reference).enumerate() {
        let e = (a as f64 - b as f64).abs();
        num += e * e;
        den += (b as f64) * (b as f64);
        if e > worst || e.is_nan() {
            worst = e;
            wi = i;
        }
    }
    ((num / den.max(1e-300)).sqrt(), wi)
}

/// Asserts rel-L2 ≤ tol with a message naming the tensor and the worst index.
pub fn assert_close(name: &str, out: &[f32], reference: &[f32], tol: f64) {
    let (e, wi) = rel_l2(out, reference);
    eprintln!("{name}: rel-L2 {e:.3e} (worst index {wi}: {} vs {})", out[wi], reference[wi]);
    assert!(
        e <= tol,
        "{name}: rel-L2 {e:.3e} > {tol:.0e}; worst index {wi}: got {} want {}",
        out[wi],
        reference[wi]
    );
}

/// The process's peak resident set (VmHWM from /proc/self/status), in bytes; 0 where
/// it cannot be read.
pub fn peak_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

/// The tiny DDT of the zoo's reference tensors (its weights do not record the patch
/// size, input size or encoder depth): 4×8×8, patch 2, D 64, 3 blocks of which 2 encode.
pub fn ddt_tiny() -> ucgm::ModelConfig {
    ucgm::ModelConfig {
        arch: ucgm::Arch::Ddt { encoder_depth: 2 },
        input_size: 8,
        in_channels: 4,
        patch: 2,
        hidden: 64,
        depth: 3,
        heads: 4,
        num_classes: 10,
    }
}
