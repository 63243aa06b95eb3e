//! A dataset of raw VAE latents seen through a [`LatentNorm`]: item `i` is
//! `(z − mean)/std · multiplier` of the inner item, as the reference's
//! `ImgLatentDataset.__getitem__` returns it (spec §4.6).

use super::Dataset;
use crate::error::Result;
use crate::latent_norm::LatentNorm;
use crate::rng::Rng;

/// `inner`'s items normalised by `norm`.
pub struct Normalized<D: Dataset> {
    inner: D,
    norm: LatentNorm,
}

impl<D: Dataset> Normalized<D> {
    /// Fails if `norm` has statistics for another channel count than `inner`'s items.
    pub fn new(inner: D, norm: LatentNorm) -> Result<Self> {
        norm.validate()?;
        let [c, h, w] = inner.sample_shape();
        // A zero-filled probe item checks the channel count once, up front.
        norm.normalize(&mut vec![0.0; c * h * w], c, h * w)?;
        Ok(Normalized { inner, norm })
    }
}

impl<D: Dataset> Dataset for Normalized<D> {
    fn sample_shape(&self) -> [usize; 3] {
        self.inner.sample_shape()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, index: usize, rng: &mut Rng, x_out: &mut [f32] /* [C, H, W] */) -> Result<usize> {
        let label = self.inner.get(index, rng, x_out)?;
        let [c, h, w] = self.inner.sample_shape();
        self.norm.normalize(x_out, c, h * w)?;
        Ok(label)
    }
}
