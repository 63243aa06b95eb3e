//! Training data: the [`Dataset`] trait and the [`Batcher`] that draws shuffled,
//! reproducible batches from one.
//!
//! * [`shards`] — the reference's pre-extracted latent shards (spec §4.6).
//! * [`builtin`] — a small class-conditional image set generated in code, for tests,
//!   demos and the quality metric's sanity checks.
//! * [`image_folder`] — a folder of PNG images, one sub-folder per class.
//!
//! ## Reproducibility
//!
//! A [`Batcher`] visits the dataset in epochs. Epoch `e` is a permutation of
//! `0..len` drawn from a generator seeded by `(seed, e)` only, so any epoch can be
//! rebuilt without replaying earlier ones. Augmentation (the ½ horizontal flip) draws
//! from one sequential augmentation stream. The whole state is
//! `(seed, len, epoch, position, augmentation stream position)` — a [`BatcherState`],
//! serializable with serde — and a batcher rebuilt from it yields bit-identical batches
//! to one that never stopped.

pub mod builtin;
pub mod image_folder;
pub mod normalized;
pub mod shards;

use serde::{Deserialize, Serialize};

use crate::error::{check_len, Error, Result};
use crate::rng::{Rng, RngState};

/// A finite, indexable set of labelled samples of one shape.
pub trait Dataset: Send + Sync {
    /// Shape of one sample: `[C, H, W]`.
    fn sample_shape(&self) -> [usize; 3];

    /// Number of classes; every label is in `0..num_classes()`.
    fn num_classes(&self) -> usize;

    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether the dataset has no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements in one sample: `C·H·W`.
    fn sample_len(&self) -> usize {
        self.sample_shape().iter().product()
    }

    /// Writes sample `index` into `x_out` and returns its label. `rng` drives any
    /// augmentation (e.g. a horizontal flip with probability ½); a dataset without
    /// augmentation leaves it untouched.
    ///
    /// Errors: [`Error::InvalidArgument`] if `index >= len()` or `x_out` has the wrong
    /// length.
    fn get(&self, index: usize, rng: &mut Rng, x_out: &mut [f32] /* [C, H, W] */) -> Result<usize>;
}

impl<T: Dataset + ?Sized> Dataset for &T {
    fn sample_shape(&self) -> [usize; 3] {
        (**self).sample_shape()
    }
    fn num_classes(&self) -> usize {
        (**self).num_classes()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize, rng: &mut Rng, x_out: &mut [f32]) -> Result<usize> {
        (**self).get(index, rng, x_out)
    }
}

impl<T: Dataset + ?Sized> Dataset for Box<T> {
    fn sample_shape(&self) -> [usize; 3] {
        (**self).sample_shape()
    }
    fn num_classes(&self) -> usize {
        (**self).num_classes()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize, rng: &mut Rng, x_out: &mut [f32]) -> Result<usize> {
        (**self).get(index, rng, x_out)
    }
}

/// Checks the common arguments of [`Dataset::get`].
pub(crate) fn check_get_args(what: &str, index: usize, len: usize, x_out: &[f32], sample_len: usize) -> Result<()> {
    if index >= len {
        return Err(Error::invalid(format!("{what}: index {index} out of range (len {len})")));
    }
    check_len(&format!("{what}: x_out"), x_out.len(), sample_len)
}

/// Mirrors every row of a `[C, H, W]` image left–right, in place.
pub fn flip_horizontal(x: &mut [f32] /* [C, H, W] */, width: usize) {
    if width == 0 {
        return;
    }
    for row in x.chunks_exact_mut(width) {
        row.reverse();
    }
}

/// Draws the ½-probability flip decision from `rng` (one uniform draw).
pub fn draw_flip(rng: &mut Rng) -> bool {
    rng.uniform() < 0.5
}

/// SplitMix64 finaliser: a bijective, well-mixing map on `u64`.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for an independent generator, derived from `(seed, domain, index)`.
/// Different domains keep streams for different purposes (shuffling, augmentation,
/// item synthesis) apart even when they share `seed`.
pub(crate) fn derive_seed(seed: u64, domain: u64, index: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ domain) ^ index)
}

const DOMAIN_SHUFFLE: u64 = 0x5348_5546_464C_4531; // "SHUFFLE1"
const DOMAIN_AUGMENT: u64 = 0x4155_474D_454E_5431; // "AUGMENT1"

/// A uniformly random permutation of `0..len` (Fisher–Yates) for one epoch.
fn epoch_permutation(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = Rng::new(derive_seed(seed, DOMAIN_SHUFFLE, epoch));
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        // `uniform()` is in (0, 1); the bias of scaling a 53-bit float is < len / 2^52.
        let j = ((rng.uniform() * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    order
}

/// Where a [`Batcher`] stands; restoring it continues the exact same batch stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatcherState {
    /// Seed of the shuffling and augmentation streams.
    pub seed: u64,
    /// Length of the dataset the state belongs to (checked on resume).
    pub len: usize,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Samples of the current epoch already handed out.
    pub position: usize,
    /// Position of the augmentation stream.
    pub rng: RngState,
}

/// Draws shuffled batches from a [`Dataset`], epoch after epoch, reproducibly from a
/// seed. A batch that crosses an epoch boundary finishes the old epoch and continues
/// with the next epoch's permutation.
pub struct Batcher<D> {
    dataset: D,
    seed: u64,
    epoch: u64,
    position: usize,
    order: Vec<usize>,
    augment: Rng,
}

impl<D: Dataset> Batcher<D> {
    /// A batcher at the start of epoch 0. Fails on an empty dataset.
    pub fn new(dataset: D, seed: u64) -> Result<Self> {
        let state = BatcherState {
            seed,
            len: dataset.len(),
            epoch: 0,
            position: 0,
            rng: Rng::new(derive_seed(seed, DOMAIN_AUGMENT, 0)).state(),
        };
        Self::resume(dataset, &state)
    }

    /// A batcher continuing from `state`. Fails if the dataset's length differs from
    /// the one recorded in the state, or the position is past the end of the epoch.
    pub fn resume(dataset: D, state: &BatcherState) -> Result<Self> {
        let len = dataset.len();
        if len == 0 || dataset.sample_len() == 0 {
            return Err(Error::invalid(format!(
                "batcher: the dataset is empty ({len} samples of shape {:?})",
                dataset.sample_shape()
            )));
        }
        if state.len != len {
            return Err(Error::invalid(format!(
                "batcher: the saved state belongs to a dataset of {} samples, this one has {len}",
                state.len
            )));
        }
        if state.position > len {
            return Err(Error::invalid(format!(
                "batcher: saved position {} is past the epoch length {len}",
                state.position
            )));
        }
        Ok(Batcher {
            order: epoch_permutation(len, state.seed, state.epoch),
            dataset,
            seed: state.seed,
            epoch: state.epoch,
            position: state.position,
            augment: Rng::from_state(&state.rng),
        })
    }

    /// The current state, to store in a checkpoint.
    pub fn state(&self) -> BatcherState {
        BatcherState {
            seed: self.seed,
            len: self.dataset.len(),
            epoch: self.epoch,
            position: self.position,
            rng: self.augment.state(),
        }
    }

    /// The dataset.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// Current epoch (0-based).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Samples of the current epoch already handed out.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Fills `x` with the next `batch` samples and `labels` with their labels.
    ///
    /// On error (wrong buffer lengths, a failing [`Dataset::get`]) the batcher's state
    /// is unchanged, so the call can be retried; `x` and `labels` may be partly
    /// overwritten.
    pub fn next_batch(
        &mut self,
        batch: usize,
        x: &mut [f32],        // [B, C, H, W]
        labels: &mut [usize], // [B]
    ) -> Result<()> {
        let sample_len = self.dataset.sample_len();
        check_len("next_batch: x", x.len(), batch * sample_len)?;
        check_len("next_batch: labels", labels.len(), batch)?;
        let saved = self.state();
        let result = self.fill(sample_len, x, labels);
        if result.is_err() {
            self.restore(&saved);
        }
        result
    }

    fn fill(
        &mut self,
        sample_len: usize,
        x: &mut [f32],        // [B, C, H, W]
        labels: &mut [usize], // [B]
    ) -> Result<()> {
        for (x_b, label) in x.chunks_exact_mut(sample_len).zip(labels.iter_mut()) {
            if self.position == self.order.len() {
                self.epoch += 1;
                self.position = 0;
                self.order = epoch_permutation(self.order.len(), self.seed, self.epoch);
            }
            let index = self.order[self.position];
            self.position += 1;
            *label = self.dataset.get(index, &mut self.augment, x_b)?;
            if *label >= self.dataset.num_classes() {
                return Err(Error::Internal(format!(
                    "dataset returned label {} for item {index}, but has {} classes",
                    *label,
                    self.dataset.num_classes()
                )));
            }
        }
        Ok(())
    }

    fn restore(&mut self, s: &BatcherState) {
        if self.epoch != s.epoch {
            self.order = epoch_permutation(s.len, s.seed, s.epoch);
        }
        self.epoch = s.epoch;
        self.position = s.position;
        self.augment = Rng::from_state(&s.rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_depends_on_epoch_and_seed() {
        let p = epoch_permutation(1000, 3, 0);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, epoch_permutation(1000, 3, 0));
        assert_ne!(p, epoch_permutation(1000, 3, 1));
        assert_ne!(p, epoch_permutation(1000, 4, 0));
        assert_eq!(epoch_permutation(1, 3, 0), vec![0]);
    }

    #[test]
    fn flip_reverses_rows() {
        // [C=1, H=2, W=3]
        let mut x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        flip_horizontal(&mut x, 3);
        assert_eq!(x, [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
    }

    #[test]
    fn derived_seeds_differ_by_domain_and_index() {
        let a = derive_seed(1, DOMAIN_SHUFFLE, 0);
        assert_ne!(a, derive_seed(1, DOMAIN_AUGMENT, 0));
        assert_ne!(a, derive_seed(1, DOMAIN_SHUFFLE, 1));
        assert_ne!(a, derive_seed(2, DOMAIN_SHUFFLE, 0));
    }
}
