//! Sampling helpers shared by the CLI, the demo, the training loop and the evaluation:
//! seeded initial noise, batched UCGM-S runs over many labels — either from one stream
//! ([`sample_images`]) or with every image's noise from its own stream
//! ([`sample_images_indexed`]), so that any split of the images over batches or ranks
//! samples the same images.

use std::ops::Range;

use crate::control::RunControl;
use crate::denoiser::Denoiser;
use crate::error::{check_len, Error, Result};
use crate::rng::Rng;
use crate::sampler::{sample, time_grid, NoiseSource, SamplerConfig, Stochasticity};

/// Samples one image per label (in batches of at most 64) with noise from `seed`.
/// Returns `[N, C, H, W]`.
pub fn sample_images(net: &mut dyn Denoiser, cfg: &SamplerConfig, labels: &[usize], seed: u64, mut ctl: Option<&mut RunControl<'_>>) -> Result<Vec<f32>> {
    let [c, h, w] = net.sample_shape();
    let per = c * h * w;
    let mut rng = Rng::new(seed);
    let total = labels
        .len()
        .checked_mul(per)
        .ok_or_else(|| crate::error::Error::OutOfMemory("sample count overflows".into()))?;
    let mut out = crate::limits::try_with_capacity::<f32>("samples", total)?;
    for chunk in labels.chunks(64) {
        let z = rng.normal_f32(chunk.len() * per);
        let mut default_ctl = RunControl::default();
        let ctl = match ctl.as_deref_mut() {
            Some(c) => c,
            None => &mut default_ctl,
        };
        let res = sample(net, &z, chunk, cfg, &mut NoiseSource::rng(&mut rng), ctl)?;
        out.extend_from_slice(&res.sample);
    }
    Ok(out)
}

/// Number of step-noise tensors the sampler may draw with `cfg` (0 when ρ = 0).
pub fn step_draws(cfg: &SamplerConfig) -> Result<usize> {
    Ok(match cfg.stochasticity {
        Stochasticity::Fixed(0.0) => 0,
        _ => time_grid(cfg)?.steps(),
    })
}

/// The noise of image `index`: the initial noise `[per]` and `draws` step-noise tensors
/// `[draws, per]`, all from the image's own stream.
pub fn image_noise(seed: u64, index: usize, per: usize, draws: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::for_index(seed, index as u64);
    let z = rng.normal_f32(per);
    let steps = rng.normal_f32(per * draws);
    (z, steps)
}

/// Samples images `indices` (global image indices, one label each: labels `[len]`) in
/// one batch, every image's initial and step noise from its own stream
/// ([`image_noise`]). Returns `[len, C, H, W]`.
pub fn sample_batch_indexed(
    net: &mut dyn Denoiser,
    cfg: &SamplerConfig,
    labels: &[usize],
    indices: Range<usize>,
    seed: u64,
    ctl: &mut RunControl<'_>,
) -> Result<Vec<f32>> {
    let b = indices.len();
    if b == 0 {
        return Err(Error::invalid("sampling: empty batch"));
    }
    check_len("labels", labels.len(), b)?;
    let [c, h, w] = net.sample_shape();
    let per = c * h * w;
    let draws = step_draws(cfg)?;
    let mut z = crate::limits::try_with_capacity::<f32>("sampling noise", b * per)?;
    let mut steps = crate::limits::try_vec::<f32>("sampling step noise", draws * b * per)?;
    for (k, i) in indices.enumerate() {
        let (zi, si) = image_noise(seed, i, per, draws);
        z.extend_from_slice(&zi);
        // [draws, B, per]: step s of image k.
        for s in 0..draws {
            steps[(s * b + k) * per..(s * b + k + 1) * per].copy_from_slice(&si[s * per..(s + 1) * per]);
        }
    }
    Ok(sample(net, &z, labels, cfg, &mut NoiseSource::provided(&steps), ctl)?.sample)
}

/// Samples images `indices` (labels `[len]`) in batches of at most `batch`, each image's
/// noise from its own stream: the result does not depend on the batching nor on which
/// process samples which images (up to the floating-point rounding of different batch
/// compositions). Returns `[len, C, H, W]`.
pub fn sample_images_indexed(
    net: &mut dyn Denoiser,
    cfg: &SamplerConfig,
    labels: &[usize],
    indices: Range<usize>,
    seed: u64,
    batch: usize,
    mut ctl: Option<&mut RunControl<'_>>,
) -> Result<Vec<f32>> {
    check_len("labels", labels.len(), indices.len())?;
    let per: usize = net.sample_shape().iter().product();
    let total = labels
        .len()
        .checked_mul(per)
        .ok_or_else(|| Error::OutOfMemory("sample count overflows".into()))?;
    let mut out = crate::limits::try_with_capacity::<f32>("samples", total)?;
    let batch = batch.max(1);
    for (k, chunk) in labels.chunks(batch).enumerate() {
        let start = indices.start + k * batch;
        let mut default_ctl = RunControl::default();
        let ctl = match ctl.as_deref_mut() {
            Some(c) => c,
            None => &mut default_ctl,
        };
        out.extend_from_slice(&sample_batch_indexed(net, cfg, chunk, start..start + chunk.len(), seed, ctl)?);
    }
    Ok(out)
}
