//! Streaming mean and covariance of feature vectors in f64, in memory independent of
//! the number of images (`D + D²` values; 32 MiB for Inception's D = 2048).
//!
//! Each batch is reduced on its own — batch mean, then the scatter `Xcᵀ Xc` of the
//! rows centred on it (faer's matrix product) — and merged into the running totals with
//! Chan et al.'s pairwise update
//! `M₂ ← M₂ + M₂ᵇ + δδᵀ·n·nᵇ/(n + nᵇ)`, `μ ← μ + δ·nᵇ/(n + nᵇ)` with `δ = μᵇ − μ`.
//! Centring before squaring avoids the cancellation of the naive `E[xxᵀ] − μμᵀ`,
//! and the result does not depend on how the images were cut into batches beyond
//! rounding. The covariance is the unbiased one (divisor `n − 1`, as `numpy.cov`).
//! The state (`n`, `μ`, `M₂`) can be saved and restored, so an interrupted feature
//! extraction continues where it stopped.

use faer::{Mat, MatRef};

use crate::error::{check_len, Error, Result};
use crate::limits::check_bytes;
use crate::metric::GaussianStats;

/// Running mean and scatter of `D`-dimensional feature vectors.
#[derive(Clone, Debug)]
pub struct FeatureStats {
    dim: usize,
    count: u64,
    mean: Vec<f64>, // [D]
    m2: Mat<f64>,   // [D, D]: Σ (x − μ)(x − μ)ᵀ
}

impl FeatureStats {
    /// Empty statistics of `dim`-vectors.
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("feature statistics: dimension 0"));
        }
        check_bytes("feature statistics (D×D covariance)", dim.saturating_mul(dim), 8)?;
        Ok(FeatureStats {
            dim,
            count: 0,
            mean: vec![0.0; dim],
            m2: Mat::zeros(dim, dim),
        })
    }

    /// Statistics restored from a saved state: `count` vectors with mean `[D]` and
    /// scatter `m2` `[D, D]` row-major (see [`FeatureStats::scatter`]).
    pub fn from_state(count: u64, mean: Vec<f64> /* [D] */, m2: &[f64] /* [D, D] */) -> Result<Self> {
        let dim = mean.len();
        let mut s = FeatureStats::new(dim)?;
        check_len("feature statistics: scatter", m2.len(), dim * dim)?;
        if mean.iter().chain(m2).any(|v| !v.is_finite()) {
            return Err(Error::NonFinite("feature statistics: saved state is not finite".into()));
        }
        s.count = count;
        s.mean = mean;
        s.m2 = Mat::from_fn(dim, dim, |i, j| m2[i * dim + j]);
        Ok(s)
    }

    /// Feature dimension `D`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of vectors added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Running mean `[D]`.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Scatter `Σ (x − μ)(x − μ)ᵀ` `[D, D]`, row-major (for saving the state).
    pub fn scatter(&self) -> Vec<f64> {
        let d = self.dim;
        let mut out = Vec::with_capacity(d * d);
        for i in 0..d {
            out.extend((0..d).map(|j| self.m2[(i, j)]));
        }
        out
    }

    /// Adds a batch of feature vectors `[N, D]` (f32 network outputs). Fails on a
    /// non-finite feature (naming the row) and leaves the statistics unchanged then.
    pub fn add_f32(&mut self, features: &[f32] /* [N, D] */) -> Result<()> {
        self.check_batch(features.len())?;
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "features: row {} of the batch has a non-finite value ({})",
                i / self.dim,
                features[i]
            )));
        }
        let x: Vec<f64> = features.iter().map(|&v| v as f64).collect();
        self.add_checked(&x);
        Ok(())
    }

    /// Adds a batch of feature vectors `[N, D]` in f64.
    pub fn add_f64(&mut self, features: &[f64] /* [N, D] */) -> Result<()> {
        self.check_batch(features.len())?;
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "features: row {} of the batch has a non-finite value ({})",
                i / self.dim,
                features[i]
            )));
        }
        self.add_checked(features);
        Ok(())
    }

    fn check_batch(&self, len: usize) -> Result<()> {
        if !len.is_multiple_of(self.dim) {
            return Err(Error::invalid(format!("features: {len} values are not a whole number of {}-vectors", self.dim)));
        }
        Ok(())
    }

    fn add_checked(&mut self, x: &[f64] /* [N, D] */) {
        let d = self.dim;
        let nb = x.len() / d;
        if nb == 0 {
            return;
        }
        let mut mean_b = vec![0.0f64; d];
        for row in x.chunks_exact(d) {
            for (m, v) in mean_b.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean_b.iter_mut().for_each(|m| *m /= nb as f64);
        let centred: Vec<f64> = x.chunks_exact(d).flat_map(|row| row.iter().zip(&mean_b).map(|(v, m)| v - m)).collect();
        let xc = MatRef::from_row_major_slice(&centred, nb, d);
        let scatter_b = xc.transpose() * xc;
        self.combine(nb as u64, &mean_b, scatter_b.as_ref());
    }

    /// Chan et al.'s pairwise update with a part of `nb` vectors, mean `mean_b` `[D]` and
    /// scatter `scatter_b` `[D, D]` (symmetrised on the way in).
    fn combine(&mut self, nb: u64, mean_b: &[f64] /* [D] */, scatter_b: MatRef<'_, f64> /* [D, D] */) {
        if nb == 0 {
            return;
        }
        let d = self.dim;
        let n = self.count as f64;
        let nbf = nb as f64;
        let total = n + nbf;
        let delta: Vec<f64> = mean_b.iter().zip(&self.mean).map(|(b, a)| b - a).collect();
        let w = n * nbf / total;
        for j in 0..d {
            for i in 0..d {
                self.m2[(i, j)] += 0.5 * (scatter_b[(i, j)] + scatter_b[(j, i)]) + delta[i] * delta[j] * w;
            }
        }
        for (m, dl) in self.mean.iter_mut().zip(&delta) {
            *m += dl * nbf / total;
        }
        self.count += nb;
    }

    /// Merges the statistics of another, disjoint set of vectors (e.g. another process's
    /// share of an evaluation) with the same pairwise update: the result is that of
    /// one set holding both, up to rounding. Deterministic: merging the same parts in the
    /// same order gives the same bits.
    pub fn merge(&mut self, other: &FeatureStats) -> Result<()> {
        if other.dim != self.dim {
            return Err(Error::invalid(format!(
                "feature statistics: cannot merge dimension {} into {}",
                other.dim, self.dim
            )));
        }
        self.combine(other.count, &other.mean, other.m2.as_ref());
        Ok(())
    }

    /// Mean and unbiased covariance (needs at least 2 vectors).
    pub fn finish(&self) -> Result<GaussianStats> {
        if self.count < 2 {
            return Err(Error::invalid(format!("feature statistics: need at least 2 images, got {}", self.count)));
        }
        let d = self.dim;
        let denom = (self.count - 1) as f64;
        let mut cov = vec![0.0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] = 0.5 * (self.m2[(i, j)] + self.m2[(j, i)]) / denom;
            }
        }
        GaussianStats::from_symmetric(self.mean.clone(), cov)
    }
}
