//! Latent normalisation: how a VAE's raw latents become the model's inputs and back
//! (spec §4.6; the reference's `ImgLatentDataset.__getitem__` and `eval.py`):
//!
//! ```text
//! model input  x = (z − mean) / std · multiplier        (per channel)
//! raw latent   z = x · std / multiplier + mean           (before decoding)
//! ```
//!
//! * SD-VAE (`data.latent_norm: false`, `latent_multiplier: 0.18215`): no statistics,
//!   `x = 0.18215 · z` — [`LatentNorm::sd_vae`].
//! * VA-VAE / E2E-VAE (`latent_norm: true`, `latent_multiplier: 1.0`): per-channel mean
//!   and standard deviation from a statistics file — [`LatentNorm::from_stats_file`].
//!
//! The statistics file is the reference's `buffers/vaes/stat/{vae}_{res}.pt` (a dict
//! `{"mean": [1, C, 1, 1], "std": [1, C, 1, 1]}`, computed over 10 000 random training
//! latents; `scripts/convert_vae.py stats` turns it into safetensors with the same tensor
//! names). `[C]` is accepted too.
//!
//! The normalisation travels with the model: [`LatentNorm::to_json`] is stored in a
//! weights file's or checkpoint's metadata under [`LATENT_NORM_KEY`], next to the
//! sampler preset, and `ucgm sample --vae` / `ucgm_sample_image` use it unless told
//! otherwise. Operations are f32 in the reference's order, so results match torch's.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tensor_file::TensorFile;

/// Metadata key of the latent normalisation (JSON, see [`LatentNorm::to_json`]).
pub const LATENT_NORM_KEY: &str = "ucgm_latent_norm";

/// The SD-VAE scaling factor of the reference configs (`latent_multiplier`).
pub const SD_VAE_MULTIPLIER: f32 = 0.18215;

/// Per-channel `(z − mean)/std · multiplier`; empty `mean`/`std` mean 0 and 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentNorm {
    /// Per-channel mean `[C]`, or empty (no statistics).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation `[C]` (> 0), or empty.
    #[serde(default)]
    pub std: Vec<f32>,
    /// Multiplier after the standardisation (SD-VAE: 0.18215).
    pub multiplier: f32,
    /// Optional hint: the VAE file these latents belong to (a path or a name), for
    /// `ucgm sample` messages and the README's commands; never opened implicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<String>,
}

impl LatentNorm {
    /// The identity (`multiplier` 1, no statistics).
    pub fn identity() -> Self {
        LatentNorm::scale(1.0)
    }

    /// `x = multiplier · z`.
    pub fn scale(multiplier: f32) -> Self {
        LatentNorm {
            mean: Vec::new(),
            std: Vec::new(),
            multiplier,
            vae: None,
        }
    }

    /// SD-VAE: `x = 0.18215 · z`.
    pub fn sd_vae() -> Self {
        LatentNorm::scale(SD_VAE_MULTIPLIER)
    }

    /// Per-channel statistics and a multiplier; checked by [`LatentNorm::validate`].
    pub fn with_stats(mean: Vec<f32>, std: Vec<f32>, multiplier: f32) -> Result<Self> {
        let n = LatentNorm {
            mean,
            std,
            multiplier,
            vae: None,
        };
        n.validate()?;
        Ok(n)
    }

    /// Reads `mean` and `std` (`[1, C, 1, 1]` or `[C]`) from a safetensors statistics
    /// file; `multiplier` as in the run config (1.0 for VA-VAE / E2E-VAE).
    ///
    /// Errors: [`Error::Io`] / [`Error::Format`] for an unreadable or malformed file, a
    /// missing tensor, other shapes, a non-positive or non-finite value.
    pub fn from_stats_file(path: impl AsRef<Path>, multiplier: f32) -> Result<Self> {
        let path = path.as_ref();
        let file = TensorFile::open(path)?;
        let read = |name: &str| -> Result<Vec<f32>> {
            if !file.contains(name) {
                return Err(Error::format(
                    path,
                    format!("latent statistics: tensor {name:?} is missing (found {:?})", file.names()),
                ));
            }
            let (shape, v) = file.f32(name).map_err(|e| Error::format(path, e.to_string()))?;
            let ok = match shape.as_slice() {
                [c] => *c == v.len(),
                [1, c, 1, 1] => *c == v.len(),
                _ => false,
            };
            if !ok {
                return Err(Error::format(
                    path,
                    format!("latent statistics: tensor {name:?} has shape {shape:?}, expected [1, C, 1, 1] or [C]"),
                ));
            }
            Ok(v)
        };
        let n = LatentNorm::with_stats(read("mean")?, read("std")?, multiplier).map_err(|e| Error::format(path, e.to_string()))?;
        Ok(n)
    }

    /// Checks the fields: equal lengths, finite values, `std > 0`, a finite non-zero
    /// multiplier.
    pub fn validate(&self) -> Result<()> {
        if self.mean.len() != self.std.len() {
            return Err(Error::invalid(format!(
                "latent normalisation: {} means but {} standard deviations",
                self.mean.len(),
                self.std.len()
            )));
        }
        if !self.multiplier.is_finite() || self.multiplier == 0.0 {
            return Err(Error::invalid(format!(
                "latent normalisation: multiplier {} must be finite and non-zero",
                self.multiplier
            )));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(Error::invalid(format!("latent normalisation: mean {m} is not finite")));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::invalid(format!("latent normalisation: std {s} must be finite and positive")));
        }
        Ok(())
    }

    /// Channels the statistics are for (`None` without statistics: any count).
    pub fn channels(&self) -> Option<usize> {
        (!self.mean.is_empty()).then_some(self.mean.len())
    }

    fn check(&self, what: &str, len: usize, channels: usize, plane: usize) -> Result<()> {
        if let Some(c) = self.channels() {
            if c != channels {
                return Err(Error::invalid(format!(
                    "{what}: latents have {channels} channels but the latent statistics have {c}"
                )));
            }
        }
        let per = channels.saturating_mul(plane);
        if per == 0 || !len.is_multiple_of(per) {
            return Err(Error::invalid(format!(
                "{what}: {len} values are not a whole number of latents of {channels} channels × {plane} positions"
            )));
        }
        Ok(())
    }

    /// Raw VAE latents → model inputs, in place. `latents` is `[N, C, H, W]` with
    /// `plane = H·W`.
    pub fn normalize(&self, latents: &mut [f32] /* [N, C, H, W] */, channels: usize, plane: usize) -> Result<()> {
        self.check("normalize", latents.len(), channels, plane)?;
        for (i, block) in latents.chunks_exact_mut(plane).enumerate() {
            let c = i % channels;
            let (m, s) = (self.mean.get(c).copied(), self.std.get(c).copied());
            for v in block {
                let mut x = *v;
                if let (Some(m), Some(s)) = (m, s) {
                    x = (x - m) / s;
                }
                *v = x * self.multiplier;
            }
        }
        Ok(())
    }

    /// Model outputs → raw VAE latents (for decoding), in place:
    /// `z = x · std / multiplier + mean`.
    pub fn denormalize(&self, latents: &mut [f32] /* [N, C, H, W] */, channels: usize, plane: usize) -> Result<()> {
        self.check("denormalize", latents.len(), channels, plane)?;
        for (i, block) in latents.chunks_exact_mut(plane).enumerate() {
            let c = i % channels;
            let (m, s) = (self.mean.get(c).copied(), self.std.get(c).copied());
            for v in block {
                *v = match (m, s) {
                    (Some(m), Some(s)) => *v * s / self.multiplier + m,
                    _ => *v / self.multiplier,
                };
            }
        }
        Ok(())
    }

    /// The metadata JSON.
    pub fn to_json(&self) -> Result<String> {
        self.validate()?;
        serde_json::to_string(self).map_err(|e| Error::Internal(format!("latent normalisation: {e}")))
    }

    /// Parses and validates the metadata JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        let n: LatentNorm = serde_json::from_str(text).map_err(|e| Error::invalid(format!("{LATENT_NORM_KEY}: {e}")))?;
        n.validate()?;
        Ok(n)
    }

    /// The normalisation stored in a file's metadata, if any (malformed: an error naming
    /// the file).
    pub fn from_metadata(path: &Path, metadata: &HashMap<String, String>) -> Result<Option<Self>> {
        metadata
            .get(LATENT_NORM_KEY)
            .map(|t| LatentNorm::from_json(t).map_err(|e| Error::format(path, e.to_string())))
            .transpose()
    }

    /// One line for logs.
    pub fn describe(&self) -> String {
        match self.channels() {
            None => format!("x = {} · z", self.multiplier),
            Some(c) => format!("x = (z − mean) / std · {} with {c}-channel statistics", self.multiplier),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_vae_scales_and_inverts() {
        let n = LatentNorm::sd_vae();
        let mut z = vec![1.0f32, -2.0, 0.5, 4.0];
        let orig = z.clone();
        n.normalize(&mut z, 4, 1).unwrap();
        assert_eq!(z, orig.iter().map(|v| v * 0.18215).collect::<Vec<_>>());
        n.denormalize(&mut z, 4, 1).unwrap();
        for (a, b) in z.iter().zip(&orig) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0));
        }
    }

    #[test]
    fn per_channel_statistics_follow_the_reference_formula() {
        let n = LatentNorm::with_stats(vec![1.0, -1.0], vec![2.0, 0.5], 1.0).unwrap();
        // [N=1, C=2, H·W=2]
        let mut z = vec![3.0f32, 5.0, 0.0, -2.0];
        n.normalize(&mut z, 2, 2).unwrap();
        assert_eq!(z, vec![1.0, 2.0, 2.0, -2.0]);
        n.denormalize(&mut z, 2, 2).unwrap();
        assert_eq!(z, vec![3.0, 5.0, 0.0, -2.0]);
        assert!(n.normalize(&mut z, 4, 1).unwrap_err().to_string().contains("statistics have 2"));
        assert!(n.normalize(&mut [0.0; 3], 2, 2).is_err());
        let back = LatentNorm::from_json(&n.to_json().unwrap()).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn bad_statistics_are_errors() {
        assert!(LatentNorm::with_stats(vec![0.0], vec![0.0], 1.0).is_err());
        assert!(LatentNorm::with_stats(vec![f32::NAN], vec![1.0], 1.0).is_err());
        assert!(LatentNorm::with_stats(vec![0.0, 1.0], vec![1.0], 1.0).is_err());
        assert!(LatentNorm::with_stats(vec![], vec![], 0.0).is_err());
        assert!(LatentNorm::from_json("{\"multiplier\": 1, \"extra\": 2}").is_err());
    }
}
