//! A whole run described in one YAML file whose keys follow the reference's schema
//! (spec §6.2): `output_dir`, `data:`, `vae:`, `model:`, `train:`, `optimizer:`,
//! `transport:`, `sample:`. A reference config is recognisable; keys this engine has no
//! use for are ignored. Additions the reference does not have: `data.source` (`builtin`
//! | `shards` | `folder`), `data.channels` (built-in data) and `backend:` (which compute
//! backend, e.g. `backend: {type: cuda, device: 0, tf32: false, bf16: false, threads: 0}`; default
//! `auto`; the command line's `--backend`, `--cuda-device`, `--tf32` and `--threads`
//! override it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::BackendRequest;
use crate::error::{Error, Result};
use crate::model::config::{Arch, ModelConfig};
use crate::sampler::{SamplerConfig, Stochasticity};
use crate::trainer::TrainerConfig;
use crate::transport::TransportKind;

/// `data:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataSection {
    /// `builtin` (shapes-10, generated), `shards` (latent safetensors shards) or
    /// `folder` (PNG images in one sub-folder per class).
    pub source: String,
    /// Directory of shards or images.
    pub data_path: Option<PathBuf>,
    /// Side of the images (pixels for `builtin`/`folder`; divided by
    /// `vae.downsample_ratio` for the model input, as in the reference).
    pub image_size: usize,
    pub num_classes: usize,
    /// Channels of the built-in data (1 or 3).
    pub channels: usize,
    /// Items of the built-in train split.
    pub train_len: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            source: "builtin".into(),
            data_path: None,
            image_size: 16,
            num_classes: 10,
            channels: 3,
            train_len: 50_000,
        }
    }
}

/// `vae:` (only the downsample ratio matters: inputs are latents already).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaeSection {
    pub downsample_ratio: usize,
}

impl Default for VaeSection {
    fn default() -> Self {
        VaeSection { downsample_ratio: 1 }
    }
}

/// `model:` — a reference name (`TiT-XL/2`) or a custom shape (`type: TiT` plus
/// `hidden_size`, `depth`, `num_heads`, `patch_size`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSection {
    #[serde(rename = "type")]
    pub model_type: String,
    pub in_chans: Option<usize>,
    pub hidden_size: Option<usize>,
    pub depth: Option<usize>,
    pub num_heads: Option<usize>,
    pub patch_size: Option<usize>,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            model_type: "TiT".into(),
            in_chans: None,
            hidden_size: Some(128),
            depth: Some(4),
            num_heads: Some(4),
            patch_size: Some(2),
        }
    }
}

/// `sample:` — UCGM-S settings with the reference's key names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SampleSection {
    /// `UNI` (fixed ρ), `ODE` (ρ = 0) or `SDE` (adaptive ρ).
    #[serde(rename = "type")]
    pub sample_type: String,
    pub sampling_steps: usize,
    pub stochast_ratio: f64,
    pub extrapol_ratio: f64,
    pub sampling_order: usize,
    pub time_dist_ctrl: [f64; 3],
    pub rfba_gap_steps: [f64; 2],
    pub cfg_scale: f64,
    pub cfg_interval: [f64; 2],
    pub per_batch_size: usize,
}

impl Default for SampleSection {
    fn default() -> Self {
        SampleSection {
            sample_type: "UNI".into(),
            sampling_steps: 30,
            stochast_ratio: 0.0,
            extrapol_ratio: 0.0,
            sampling_order: 1,
            time_dist_ctrl: [1.0, 1.0, 1.0],
            rfba_gap_steps: [0.001, 0.001],
            cfg_scale: 0.0,
            cfg_interval: [0.0, 1.0],
            per_batch_size: 32,
        }
    }
}

impl SampleSection {
    /// The sampler configuration for a transport.
    pub fn sampler(&self, transport: TransportKind) -> Result<SamplerConfig> {
        let stochasticity = match self.sample_type.to_ascii_uppercase().as_str() {
            "UNI" => Stochasticity::Fixed(self.stochast_ratio),
            "ODE" => Stochasticity::Fixed(0.0),
            "SDE" => Stochasticity::Sde,
            other => return Err(Error::invalid(format!("sample.type {other:?}: expected UNI, ODE or SDE"))),
        };
        let cfg = SamplerConfig {
            transport,
            steps: self.sampling_steps,
            order: self.sampling_order,
            stochasticity,
            extrapolation: self.extrapol_ratio,
            time_dist_ctrl: self.time_dist_ctrl,
            rfba_gap_steps: self.rfba_gap_steps,
            cfg_scale: self.cfg_scale,
            cfg_interval: self.cfg_interval,
            return_trajectory: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub vae: VaeSection,
    #[serde(default)]
    pub model: ModelSection,
    #[serde(flatten)]
    pub trainer: TrainerConfig,
    #[serde(default)]
    pub sample: SampleSection,
    /// `backend:` — which compute backend and its settings (default: auto).
    #[serde(default)]
    pub backend: BackendRequest,
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs")
}

impl RunConfig {
    /// Parses and validates a YAML run description.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let cfg: RunConfig = serde_yaml::from_str(text).map_err(|e| Error::invalid(format!("config: {e}")))?;
        cfg.trainer.validate()?;
        cfg.model_config()?;
        Ok(cfg)
    }

    /// Reads a YAML run description from a file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_yaml(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }

    /// The network configuration implied by `model:`, `data:` and `vae:`.
    pub fn model_config(&self) -> Result<ModelConfig> {
        let ratio = self.vae.downsample_ratio.max(1);
        if self.data.image_size % ratio != 0 {
            return Err(Error::invalid(format!(
                "data.image_size {} is not divisible by vae.downsample_ratio {ratio}",
                self.data.image_size
            )));
        }
        let input = self.data.image_size / ratio;
        let channels = self.model.in_chans.unwrap_or(self.data.channels);
        let m = &self.model;
        if m.model_type.contains('-') {
            return ModelConfig::from_name(&m.model_type, input, channels, self.data.num_classes);
        }
        let arch = match m.model_type.to_ascii_lowercase().as_str() {
            "tit" => Arch::Tit,
            "sit" => Arch::Sit,
            other => {
                return Err(Error::invalid(format!(
                    "model.type {other:?}: expected e.g. TiT-XL/2, or TiT / SiT with a custom shape"
                )))
            }
        };
        let need = |v: Option<usize>, key: &str| v.ok_or_else(|| Error::invalid(format!("model.{key} is required for a custom model")));
        let cfg = ModelConfig {
            arch,
            input_size: input,
            in_channels: channels,
            patch: need(m.patch_size, "patch_size")?,
            hidden: need(m.hidden_size, "hidden_size")?,
            depth: need(m.depth, "depth")?,
            heads: need(m.num_heads, "num_heads")?,
            num_classes: self.data.num_classes,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_style_config_parses() {
        let yaml = r#"
output_dir: outputs
data: {image_size: 256, num_classes: 1000, latent_norm: true}
vae: {type: vavae_f16d32, downsample_ratio: 16}
model: {type: TiT-XL/1, in_chans: 32}
train: {max_steps: 10, global_batch_size: 8, ema_decay: 0.9999}
optimizer: {type: AdamW, lr: 0.0002, weight_decay: 0.0, beta1: 0.9, beta2: 0.95}
transport: {type: Linear, enhanced_ratio: 0.47, enhanced_style: ft-vs-fe, wt_cosine_loss: true, weight_funcion: Cosine}
sample: {type: UNI, sampling_steps: 30, extrapol_ratio: 0.5}
"#;
        let cfg = RunConfig::from_yaml(yaml).unwrap();
        let m = cfg.model_config().unwrap();
        assert_eq!((m.input_size, m.in_channels, m.patch, m.depth), (16, 32, 1, 28));
        assert_eq!(cfg.sample.sampler(TransportKind::Linear).unwrap().steps, 30);
        assert!(RunConfig::from_yaml("model: {type: TiT-Q/2}\noptimizer: {type: AdamW, lr: 0.1}").is_err());
        assert_eq!(cfg.backend, BackendRequest::default());
    }

    #[test]
    fn backend_key_parses_and_rejects_unknown_values() {
        use crate::engine::BackendChoice;
        let with_backend = |b: &str| format!("optimizer: {{type: AdamW, lr: 0.001}}\nbackend: {b}");
        let cfg = RunConfig::from_yaml(&with_backend("{type: cuda, device: 1, tf32: true, bf16: true}")).unwrap();
        let want = BackendRequest {
            choice: BackendChoice::Cuda,
            threads: 0,
            device: 1,
            tf32: true,
            bf16: true,
        };
        assert_eq!(cfg.backend, want);
        assert_eq!(RunConfig::from_yaml(&with_backend("{type: cpu, threads: 3}")).unwrap().backend.threads, 3);
        let e = RunConfig::from_yaml(&with_backend("{type: tpu}")).unwrap_err().to_string();
        assert!(e.contains("backend") && e.contains("tpu"), "{e}");
        let e = RunConfig::from_yaml(&with_backend("{type: cpu, tf23: true}")).unwrap_err().to_string();
        assert!(e.contains("tf23"), "{e}");
    }
}
