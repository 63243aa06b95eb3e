//! The Fréchet distance between two Gaussians `N(μ₁, Σ₁)` and `N(μ₂, Σ₂)`:
//!
//! `FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½`
//!
//! pytorch-fid takes `tr sqrtm(Σ₁Σ₂)` with scipy's general (Schur) square root, which
//! can turn complex and then needs an `eps·I` retry when the covariances are singular
//! (fewer images than dimensions). Here the trace is taken from the eigenvalues of
//! `Σ₁Σ₂` directly: `tr (Σ₁Σ₂)^½ = Σᵢ Re √λᵢ` (principal root), with faer's general
//! eigenvalue solver in f64. The eigenvalues always exist, so there is no failure and
//! no retry, and the trace is the one scipy's `sqrtm` has, including its treatment of
//! rank-deficient covariances: there the ~`D − N` eigenvalues that are zero in exact
//! arithmetic come out as rounding noise of order `ε‖Σ₁Σ₂‖`, and the real parts of
//! their square roots add a small positive amount to the trace (2.2e-5 of 497 on the
//! shared 64-sample reference, i.e. 9e-8 relative). pytorch-fid's numbers contain it,
//! so this does too, while a symmetric form `Σ √μ(Σ₁^½Σ₂Σ₁^½)`, which drops the noise,
//! differs by those 9e-8. How large that amount comes out is decided mostly by the
//! rounding of the product `Σ₁Σ₂`: with numpy's eigenvalues throughout, a plain-loop
//! product lands 4.1e-8 below the reference's `fd_ab` and a nearly correctly rounded one
//! 3.5e-8 above; faer's eigenvalues of numpy's OpenBLAS product land 3e-10 from it and of
//! faer's own product (this function) 1.1e-8 (`scripts/fd_noise.py --products`,
//! `tests/fid_stats.rs`). On rank-deficient statistics, agreement with another program is
//! bounded by that noise, not by this code. With more images than dimensions (the
//! 50 000-image evaluations) the covariances have full rank, there is no such noise, and
//! the distance equals scipy's to 1e-8 (`frechet_distance_equals_pytorch_fid_full_rank`).
//!
//! faer rather than nalgebra: at 2048×2048 (Inception pool3) faer's blocked,
//! multi-threaded kernels take seconds where nalgebra's unblocked ones take far longer
//! (`examples/fd_linalg_compare.rs` measures both).

use faer::{Mat, Side};

use crate::error::{Error, Result};
use crate::metric::GaussianStats;

/// `faer` matrix from a row-major `[D, D]` slice.
pub(crate) fn mat_from_row_major(values: &[f64] /* [D, D] */, dim: usize) -> Mat<f64> {
    Mat::from_fn(dim, dim, |i, j| values[i * dim + j])
}

/// Eigenvalues of a symmetric matrix, ascending.
pub(crate) fn symmetric_eigenvalues(m: &Mat<f64>, what: &str) -> Result<Vec<f64>> {
    m.self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::Internal(format!("{what}: symmetric eigendecomposition failed ({e:?})")))
}

/// `tr (Σ₁Σ₂)^½ = Σᵢ Re √λᵢ(Σ₁Σ₂)` for covariances `Σ₁`, `Σ₂` (row-major `[D, D]`).
pub fn trace_sqrt_product(s1: &[f64] /* [D, D] */, s2: &[f64] /* [D, D] */, dim: usize) -> Result<f64> {
    let product = mat_from_row_major(s1, dim) * mat_from_row_major(s2, dim);
    let eig = product
        .eigenvalues()
        .map_err(|e| Error::Internal(format!("frechet distance: eigenvalues of Σ₁Σ₂ failed ({e:?})")))?;
    // Re √z = √((|z| + Re z) / 2) for the principal root.
    Ok(eig.iter().map(|z| ((z.re.hypot(z.im) + z.re) * 0.5).max(0.0).sqrt()).sum())
}

/// The Fréchet distance of the module documentation, in f64. Rounding can make the
/// distance between (near-)identical distributions a tiny negative number.
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    if a.dim() != b.dim() {
        return Err(Error::invalid(format!("frechet distance: dimensions differ ({} vs {})", a.dim(), b.dim())));
    }
    let d = a.dim();
    let mean_term: f64 = a.mean().iter().zip(b.mean()).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    let tr_sqrt = trace_sqrt_product(a.cov(), b.cov(), d)?;
    Ok(mean_term + trace(a.cov()) + trace(b.cov()) - 2.0 * tr_sqrt)
}
