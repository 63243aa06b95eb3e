//! The field's image-quality figures: Fréchet Inception Distance (FID) and Inception
//! Score (IS), computed the way pytorch-fid, torch-fidelity and the ADM evaluator do.
//!
//! * [`stats`] — streaming mean and covariance of feature vectors in f64 (constant
//!   memory in the number of images, resumable).
//! * [`frechet`] — the Fréchet distance between two Gaussians with a robust matrix
//!   square root (faer's symmetric eigendecomposition).
//! * [`inception_score()`] — the Inception Score of 1008-way logits, 10 contiguous splits.
//! * [`npz`] — reading and writing `mu`/`sigma` statistics files as numpy `.npz`
//!   (the format of pytorch-fid's `--save-stats` and of the ADM reference batches).
//!
//! The Gaussian statistics themselves are [`crate::metric::GaussianStats`], shared with
//! the pixel-space Fréchet distance of the demo.

pub mod frechet;
pub mod inception_score;
pub mod npz;
pub mod stats;

pub use frechet::frechet_distance;
pub use inception_score::{inception_score, InceptionScore, IS_SPLITS};
pub use npz::{read_stats_npz, write_stats_npz};
pub use stats::FeatureStats;
