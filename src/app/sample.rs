//! Sampling helpers shared by the CLI, the demo and the training loop: seeded initial
//! noise, batched UCGM-S runs over many labels.

use crate::control::RunControl;
use crate::denoiser::Denoiser;
use crate::error::Result;
use crate::rng::Rng;
use crate::sampler::{sample, NoiseSource, SamplerConfig};

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
