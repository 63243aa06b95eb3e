//! Fréchet distance between two sets of images in a fixed, cheap feature space — a
//! small stand-in for FID that needs no Inception network, for tests, training
//! monitoring and comparing samplers on small data.
//!
//! ## Method
//!
//! 1. **Features.** Each image `[C, H, W]` is average-pooled to at most 16×16
//!    (adaptive average pooling as in PyTorch: output cell `i` of `P` averages input
//!    rows `floor(i·H/P) .. ceil((i+1)·H/P)`; images of 16×16 or smaller are kept as
//!    they are), flattened to `d = C·P_h·P_w` values, and — when `d > 64` — projected to
//!    64 dimensions by a fixed Gaussian random matrix with entries `N(0, 1/64)`, drawn
//!    from [`Rng`] with seed [`PROJECTION_SEED`] (portable, identical on every
//!    platform). A random projection keeps distances on average
//!    (Johnson–Lindenstrauss) and sees every spatial frequency alike, so blur and
//!    pixel shuffling change the statistics as much as wrong shapes do; 64 dimensions
//!    keep the covariance estimate stable with a few hundred samples.
//! 2. **Gaussian fit.** Mean `μ` and unbiased covariance `Σ` (divisor `n − 1`, as
//!    `numpy.cov`) of the features, in f64.
//! 3. **Fréchet distance** between `N(μ₁, Σ₁)` and `N(μ₂, Σ₂)`:
//!    `FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)`, in f64, the trace of the square
//!    root taken from symmetric eigendecompositions ([`crate::fid::frechet`]).
//!
//! With `n` samples per set the estimate has a positive bias of order `tr Σ · d / n`,
//! so compare distances computed with the same sample counts.

use crate::error::{check_len, Error, Result};
use crate::rng::Rng;

/// Largest pooled side length.
pub const MAX_POOLED_SIDE: usize = 16;
/// Feature dimension after the random projection.
pub const PROJECTED_DIM: usize = 64;
/// Seed of the random projection matrix.
pub const PROJECTION_SEED: u64 = 0x4644_5F50_524F_4A31; // "FD_PROJ1"

/// Mean and covariance of a set of feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianStats {
    dim: usize,
    mean: Vec<f64>, // [D]
    cov: Vec<f64>,  // [D, D], row-major
}

impl GaussianStats {
    /// Statistics given directly. `cov` is `[D, D]` row-major and must be symmetric
    /// and positive semi-definite (up to rounding); all values finite.
    pub fn new(mean: Vec<f64>, cov: Vec<f64>) -> Result<Self> {
        let dim = mean.len();
        if dim == 0 {
            return Err(Error::invalid("gaussian stats: empty mean"));
        }
        check_len("gaussian stats: covariance", cov.len(), dim * dim)?;
        if let Some(i) = mean.iter().chain(&cov).position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "gaussian stats: value {i} (mean first, then covariance) is not finite"
            )));
        }
        let scale = cov.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..dim {
            for j in 0..i {
                if (cov[i * dim + j] - cov[j * dim + i]).abs() > 1e-12 * scale {
                    return Err(Error::invalid(format!("gaussian stats: covariance is not symmetric at ({i}, {j})")));
                }
            }
        }
        let eig = crate::fid::frechet::symmetric_eigenvalues(&crate::fid::frechet::mat_from_row_major(&cov, dim), "gaussian stats")?;
        let min = eig.iter().fold(f64::INFINITY, |m, &v| m.min(v));
        if min < -1e-9 * scale.max(f64::MIN_POSITIVE) {
            return Err(Error::invalid(format!(
                "gaussian stats: covariance is not positive semi-definite (eigenvalue {min:e})"
            )));
        }
        Ok(GaussianStats { dim, mean, cov })
    }

    /// Statistics whose covariance `[D, D]` is known to be symmetric positive
    /// semi-definite up to rounding (computed from features, or read from a statistics
    /// file): checks the lengths, finiteness and symmetry (to 1e-9 of the largest
    /// entry, then made exactly symmetric) but not the eigenvalues, which would cost an
    /// eigendecomposition of a 2048×2048 matrix. Eigenvalues below zero count as zero in
    /// the Fréchet distance.
    pub fn from_symmetric(mean: Vec<f64>, mut cov: Vec<f64>) -> Result<Self> {
        let dim = mean.len();
        if dim == 0 {
            return Err(Error::invalid("gaussian stats: empty mean"));
        }
        check_len("gaussian stats: covariance", cov.len(), dim * dim)?;
        if let Some(i) = mean.iter().chain(&cov).position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "gaussian stats: value {i} (mean first, then covariance) is not finite"
            )));
        }
        let scale = cov.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..dim {
            for j in 0..i {
                let (a, b) = (cov[i * dim + j], cov[j * dim + i]);
                if (a - b).abs() > 1e-9 * scale {
                    return Err(Error::invalid(format!("gaussian stats: covariance is not symmetric at ({i}, {j})")));
                }
                let m = 0.5 * (a + b);
                cov[i * dim + j] = m;
                cov[j * dim + i] = m;
            }
        }
        Ok(GaussianStats { dim, mean, cov })
    }

    /// Mean and unbiased covariance of `n = features.len() / dim` vectors
    /// `[N, D]`; needs `n ≥ 2`.
    pub fn from_features(features: &[f64] /* [N, D] */, dim: usize) -> Result<Self> {
        if dim == 0 || !features.len().is_multiple_of(dim) {
            return Err(Error::invalid(format!(
                "gaussian stats: {} values are not a whole number of {dim}-vectors",
                features.len()
            )));
        }
        let n = features.len() / dim;
        if n < 2 {
            return Err(Error::invalid(format!("gaussian stats: need at least 2 samples, got {n}")));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("gaussian stats: sample {} has a non-finite feature", i / dim)));
        }
        let mut mean = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for ((c, v), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = v - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                for j in 0..=i {
                    cov[i * dim + j] += ci * centred[j];
                }
            }
        }
        let denom = (n - 1) as f64;
        for i in 0..dim {
            for j in 0..=i {
                let v = cov[i * dim + j] / denom;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Ok(GaussianStats { dim, mean, cov })
    }

    /// Feature dimension `D`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Mean `[D]`.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Covariance `[D, D]`, row-major.
    pub fn cov(&self) -> &[f64] {
        &self.cov
    }
}

/// `FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)`, in f64 ([`crate::fid::frechet`]
/// computes it, for pixel features and Inception features alike). Rounding can make a
/// distance between (near-)identical distributions a tiny negative number.
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    crate::fid::frechet::frechet_distance(a, b)
}

/// The fixed feature map of the module documentation for images of one shape.
#[derive(Clone, Debug)]
pub struct FeatureSpace {
    shape: [usize; 3],
    pooled: [usize; 2],
    projection: Option<Vec<f64>>, // [PROJECTED_DIM, C·P_h·P_w]
}

/// Bins of adaptive average pooling: input range of output cell `i` of `out`.
fn pool_bin(i: usize, input: usize, out: usize) -> (usize, usize) {
    (i * input / out, ((i + 1) * input).div_ceil(out))
}

impl FeatureSpace {
    /// The feature space for images `[C, H, W]`.
    pub fn new(shape: [usize; 3]) -> Result<Self> {
        let [c, h, w] = shape;
        if c == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!("feature space: empty image shape {shape:?}")));
        }
        let pooled = [h.min(MAX_POOLED_SIDE), w.min(MAX_POOLED_SIDE)];
        let raw_dim = c * pooled[0] * pooled[1];
        let projection = (raw_dim > PROJECTED_DIM).then(|| {
            let scale = 1.0 / (PROJECTED_DIM as f64).sqrt();
            Rng::new(PROJECTION_SEED)
                .normal_f32(PROJECTED_DIM * raw_dim)
                .into_iter()
                .map(|v| v as f64 * scale)
                .collect()
        });
        Ok(FeatureSpace { shape, pooled, projection })
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        match self.projection {
            Some(_) => PROJECTED_DIM,
            None => self.raw_dim(),
        }
    }

    fn raw_dim(&self) -> usize {
        self.shape[0] * self.pooled[0] * self.pooled[1]
    }

    /// Features `[N, D]` of images `[N, C, H, W]`.
    pub fn features(&self, images: &[f32] /* [N, C, H, W] */) -> Result<Vec<f64>> {
        let [c, h, w] = self.shape;
        let [ph, pw] = self.pooled;
        let image_len = c * h * w;
        if !images.len().is_multiple_of(image_len) {
            return Err(Error::invalid(format!(
                "features: {} values are not a whole number of {:?} images",
                images.len(),
                self.shape
            )));
        }
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("features: image {} has value {}", i / image_len, images[i])));
        }
        let raw_dim = self.raw_dim();
        let mut raw = vec![0.0f64; raw_dim];
        let mut out = Vec::with_capacity(images.len() / image_len * self.dim());
        for img in images.chunks_exact(image_len) {
            for ch in 0..c {
                for oy in 0..ph {
                    let (y0, y1) = pool_bin(oy, h, ph);
                    for ox in 0..pw {
                        let (x0, x1) = pool_bin(ox, w, pw);
                        let mut sum = 0.0f64;
                        for y in y0..y1 {
                            sum += img[(ch * h + y) * w + x0..(ch * h + y) * w + x1].iter().map(|&v| v as f64).sum::<f64>();
                        }
                        raw[(ch * ph + oy) * pw + ox] = sum / ((y1 - y0) * (x1 - x0)) as f64;
                    }
                }
            }
            match &self.projection {
                Some(p) => out.extend(p.chunks_exact(raw_dim).map(|row| row.iter().zip(&raw).map(|(a, b)| a * b).sum::<f64>())),
                None => out.extend_from_slice(&raw),
            }
        }
        Ok(out)
    }

    /// Gaussian statistics of the features of images `[N, C, H, W]` (N ≥ 2).
    pub fn stats(&self, images: &[f32] /* [N, C, H, W] */) -> Result<GaussianStats> {
        GaussianStats::from_features(&self.features(images)?, self.dim())
    }
}

/// Fréchet distance between two sets of images `[N₁, C, H, W]` and `[N₂, C, H, W]`
/// in the feature space of the module documentation.
pub fn image_frechet_distance(
    a: &[f32], // [N1, C, H, W]
    b: &[f32], // [N2, C, H, W]
    shape: [usize; 3],
) -> Result<f64> {
    let space = FeatureSpace::new(shape)?;
    frechet_distance(&space.stats(a)?, &space.stats(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_pool_bins_cover_the_input() {
        assert_eq!(pool_bin(0, 32, 16), (0, 2));
        assert_eq!(pool_bin(15, 32, 16), (30, 32));
        // 5 → 3: [0,2), [1,4), [3,5) as in PyTorch.
        assert_eq!((0..3).map(|i| pool_bin(i, 5, 3)).collect::<Vec<_>>(), vec![(0, 2), (1, 4), (3, 5)]);
    }

    #[test]
    fn feature_dims() {
        assert_eq!(FeatureSpace::new([1, 8, 8]).unwrap().dim(), 64);
        assert_eq!(FeatureSpace::new([1, 4, 4]).unwrap().dim(), 16);
        assert_eq!(FeatureSpace::new([3, 16, 16]).unwrap().dim(), PROJECTED_DIM);
        assert_eq!(FeatureSpace::new([4, 32, 32]).unwrap().dim(), PROJECTED_DIM);
        assert!(matches!(FeatureSpace::new([0, 4, 4]), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn pooling_averages_blocks() {
        // [1, 32, 32] with value = row index: pooled cell (oy, ox) = mean of rows 2oy, 2oy+1.
        let img: Vec<f32> = (0..32 * 32).map(|i| (i / 32) as f32).collect();
        let space = FeatureSpace {
            shape: [1, 32, 32],
            pooled: [16, 16],
            projection: None,
        };
        let f = space.features(&img).unwrap();
        assert_eq!(f.len(), 256);
        for oy in 0..16 {
            assert_eq!(f[oy * 16 + 5], 2.0 * oy as f64 + 0.5);
        }
    }
}
