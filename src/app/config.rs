//! A whole run described in one YAML file whose keys follow the reference's schema
//! (spec §6.2): `output_dir`, `data:`, `vae:`, `model:`, `train:`, `optimizer:`,
//! `transport:`, `sample:`. A reference config parses unchanged. Every key is checked
//! first ([`super::config_keys`]): an unknown key is an error naming it (and the nearest
//! known key); a key of the reference's schema that this engine does not implement
//! (`vae.type`, `sample.fid_sample_num`, …) is returned as a warning
//! by [`RunConfig::from_yaml_with_warnings`]; values that contradict each other are
//! errors naming both keys. Additions the reference does not have: `data.source`
//! (`builtin` | `shards` | `folder`), `data.channels` and `data.train_len` (built-in
//! data), `data.latent_stats` (the statistics file of `data.latent_norm`), `train.keep_last` (keep only the newest N step checkpoints) and `backend:`
//! (which compute backend, e.g. `backend: {type: cuda, device: 0, tf32: false, bf16:
//! false, threads: 0}`; default `auto`; the command line's `--backend`, `--cuda-device`,
//! `--tf32` and `--threads` override it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::config_keys::{check_keys, ReferenceKey};
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
    /// `folder` (PNG images in one sub-folder per class). Default: `shards` when
    /// `data_path` is given (as in a reference config), else `builtin`.
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
    /// Shards only: standardise latents per channel with `latent_stats` (the
    /// reference's VA-VAE / E2E-VAE setting); see [`crate::latent_norm`].
    pub latent_norm: bool,
    /// Shards only: multiply (standardised) latents by this (SD-VAE: 0.18215).
    pub latent_multiplier: f64,
    /// The latent statistics file (safetensors `mean`, `std`; `scripts/convert_vae.py
    /// stats`) for `latent_norm: true`. The reference finds it by a path convention.
    pub latent_stats: Option<PathBuf>,
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
            latent_norm: false,
            latent_multiplier: 1.0,
            latent_stats: None,
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
    /// DDT with a custom shape: how many of the `depth` blocks are encoder blocks.
    pub num_encoder_blocks: Option<usize>,
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
            num_encoder_blocks: None,
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
            cfg_channels: None,
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
    /// `train.keep_last`: keep only the newest N step checkpoints (all when None). Not
    /// part of the trainer configuration stored in checkpoints.
    #[serde(skip)]
    pub keep_last: Option<usize>,
}

/// Largest run description accepted, in bytes (real ones hold a few hundred).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Deepest nesting of flow collections (`[` and `{`, counted without regard to quotes)
/// accepted: the YAML scanner's time grows with the square of it (100 000 levels take a
/// minute), and the deserializer stops at 128 levels anyway.
pub const MAX_CONFIG_NESTING: usize = 128;

/// Refuses texts too large or too deeply nested to parse in bounded time.
fn check_yaml_size(text: &str) -> Result<()> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(Error::invalid(format!(
            "config: {} bytes, more than the limit of {MAX_CONFIG_BYTES}",
            text.len()
        )));
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_CONFIG_NESTING {
        return Err(Error::invalid(format!(
            "config: nested {deepest} levels deep, more than the limit of {MAX_CONFIG_NESTING}"
        )));
    }
    Ok(())
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// The network a sampling config names.
#[derive(Clone, Debug, PartialEq)]
pub enum SamplingNetwork {
    /// SiT, TiT, LightningDiT or DDT.
    Transformer(ModelConfig),
    /// The EDM2 UNet.
    Edm2(crate::model::edm2::Edm2Config),
}

impl RunConfig {
    /// The network and the sampler settings of a reference *sampling* config
    /// (`configs/sampling_multi_steps/*.yaml`): its `model:` (with `data:` and `vae:`),
    /// `transport.type` and `sample:` sections. Such a file has no `optimizer:`; one is
    /// assumed (it plays no part in sampling). `model.type: EDM2-S` … `EDM2-XXL` gives an
    /// EDM2 UNet on the latent of `data:` and `vae:`.
    pub fn sampling_from_yaml(text: &str) -> Result<(SamplingNetwork, SamplerConfig)> {
        check_yaml_size(text)?;
        let mut value: Value = serde_yaml::from_str(text).map_err(|e| Error::invalid(format!("config: {e}")))?;
        let mut edm2_name = None;
        if let Value::Mapping(m) = &mut value {
            let key = Value::String("optimizer".into());
            if !m.contains_key(&key) {
                let opt: Value = serde_yaml::from_str("{type: AdamW, lr: 0.0001}").map_err(|e| Error::Internal(e.to_string()))?;
                m.insert(key, opt);
            }
            // The run schema knows the transformers only: an EDM2 name is read here and a
            // transformer of patch 1 (which fits every latent) stands in for the checks.
            if let Some(Value::Mapping(model)) = m.get_mut(Value::String("model".into())) {
                let tkey = Value::String("type".into());
                if let Some(Value::String(t)) = model.get(&tkey) {
                    if t.to_ascii_uppercase().starts_with("EDM2-") {
                        edm2_name = Some(t.clone());
                        model.insert(tkey, Value::String("SiT-S/1".into()));
                    }
                }
            }
        }
        let text = serde_yaml::to_string(&value).map_err(|e| Error::Internal(e.to_string()))?;
        let run = Self::from_yaml(&text)?;
        let transport = run.trainer.transport.transport_type.parse::<TransportKind>()?;
        let sampler = run.sample.sampler(transport)?;
        let net = match edm2_name {
            Some(name) => {
                let mc = run.model_config()?;
                SamplingNetwork::Edm2(crate::model::edm2::Edm2Config::from_name(&name, mc.input_size, mc.in_channels, mc.num_classes)?)
            }
            None => SamplingNetwork::Transformer(run.model_config()?),
        };
        Ok((net, sampler))
    }

    /// Parses and validates a YAML run description (reference-only keys are accepted and
    /// ignored; see [`RunConfig::from_yaml_with_warnings`] to learn which).
    pub fn from_yaml(text: &str) -> Result<Self> {
        Self::from_yaml_with_warnings(text).map(|(cfg, _)| cfg)
    }

    /// Parses and validates a YAML run description: unknown keys and contradicting values
    /// are errors naming the keys; also returns the keys of the reference's schema that
    /// were given but that this engine does not implement (see
    /// [`super::config_keys::warning_line`]).
    pub fn from_yaml_with_warnings(text: &str) -> Result<(Self, Vec<&'static ReferenceKey>)> {
        check_yaml_size(text)?;
        let value: Value = serde_yaml::from_str(text).map_err(|e| Error::invalid(format!("config: {e}")))?;
        let not_implemented = check_keys(&value)?;
        let mut cfg: RunConfig = serde_yaml::from_str(text).map_err(|e| Error::invalid(format!("config: {e}")))?;
        cfg.keep_last = match given(&value, "train", "keep_last") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => Some(n as usize),
                _ => {
                    return Err(Error::invalid(format!(
                        "train.keep_last = {}: expected a whole number ≥ 1 (or no key to keep every checkpoint)",
                        serde_yaml::to_string(v).unwrap_or_default().trim()
                    )))
                }
            },
        };
        if given(&value, "data", "source").is_none() && given(&value, "data", "data_path").is_some_and(|v| !v.is_null()) {
            // A reference config: its data_path is a folder of latent shards.
            cfg.data.source = "shards".into();
        }
        cfg.trainer.validate()?;
        cfg.check_contradictions(&value)?;
        cfg.model_config()?;
        Ok((cfg, not_implemented))
    }

    /// Reads a YAML run description from a file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        Self::from_file_with_warnings(path).map(|(cfg, _)| cfg)
    }

    /// [`RunConfig::from_yaml_with_warnings`] on a file; errors name the file.
    pub fn from_file_with_warnings(path: &std::path::Path) -> Result<(Self, Vec<&'static ReferenceKey>)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_yaml_with_warnings(&text).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::invalid(format!("{}: {m}", path.display())),
            other => Error::invalid(format!("{}: {other}", path.display())),
        })
    }

    /// The latent normalisation of the training data (`None` for pixel data): read from
    /// `data.latent_stats` when `latent_norm` is on.
    pub fn latent_norm(&self) -> Result<Option<crate::latent_norm::LatentNorm>> {
        let d = &self.data;
        if d.source != "shards" {
            return Ok(None);
        }
        let m = d.latent_multiplier as f32;
        let n = match (&d.latent_stats, d.latent_norm) {
            (Some(p), true) => crate::latent_norm::LatentNorm::from_stats_file(p, m)?,
            (None, true) => {
                return Err(Error::invalid(
                    "data.latent_norm: true needs data.latent_stats: the statistics file (the reference's \
                     buffers/vaes/stat/{vae}_{res}.pt, converted by scripts/convert_vae.py stats)",
                ))
            }
            _ => crate::latent_norm::LatentNorm::scale(m),
        };
        n.validate()?;
        Ok(Some(n))
    }

    /// Values of different keys that cannot hold together (`value` is the parsed YAML,
    /// to tell keys given from defaults).
    fn check_contradictions(&self, value: &Value) -> Result<()> {
        let has = |section: &str, key: &str| given(value, section, key).is_some_and(|v| !v.is_null());
        let d = &self.data;
        if d.source == "builtin" {
            if has("data", "data_path") {
                return Err(Error::invalid(
                    "data.data_path is given but data.source is builtin (generated data, no path): remove one of them",
                ));
            }
            if let Some(c) = self.model.in_chans.filter(|&c| c != d.channels) {
                return Err(Error::invalid(format!(
                    "model.in_chans = {c} contradicts data.channels = {} (the built-in data's channels)",
                    d.channels
                )));
            }
        } else if has("data", "train_len") {
            return Err(Error::invalid(format!(
                "data.train_len is given but data.source is {} (train_len sizes the built-in data only)",
                d.source
            )));
        }
        if d.source != "shards" && (d.latent_norm || d.latent_multiplier != 1.0 || d.latent_stats.is_some()) {
            return Err(Error::invalid(format!(
                "data.latent_norm / latent_multiplier / latent_stats apply to latent shards, but data.source is {}",
                d.source
            )));
        }
        if d.latent_stats.is_some() && !d.latent_norm {
            return Err(Error::invalid(
                "data.latent_stats is given but data.latent_norm is false: set latent_norm: true or remove latent_stats",
            ));
        }
        let m = &self.model;
        if m.model_type.contains('-') {
            let input = d.image_size / self.vae.downsample_ratio.max(1);
            let channels = m.in_chans.unwrap_or(d.channels);
            if let Ok(named) = ModelConfig::from_name(&m.model_type, input, channels, d.num_classes) {
                for (key, v, fixed) in [
                    ("hidden_size", m.hidden_size, named.hidden),
                    ("depth", m.depth, named.depth),
                    ("num_heads", m.num_heads, named.heads),
                    ("patch_size", m.patch_size, named.patch),
                ] {
                    if has("model", key) && v != Some(fixed) {
                        return Err(Error::invalid(format!(
                            "model.{key} = {} contradicts model.type = {} (which has {key} {fixed}): use type: {} for a custom shape",
                            v.map_or("null".into(), |v| v.to_string()),
                            m.model_type,
                            m.model_type.split('-').next().unwrap_or("TiT")
                        )));
                    }
                }
            }
        }
        if self.sample.sample_type.eq_ignore_ascii_case("ODE") && self.sample.stochast_ratio != 0.0 {
            return Err(Error::invalid(format!(
                "sample.stochast_ratio = {} contradicts sample.type = ODE (ρ = 0): use type: UNI for a fixed ρ",
                self.sample.stochast_ratio
            )));
        }
        Ok(())
    }

    /// The network configuration implied by `model:`, `data:` and `vae:`.
    pub fn model_config(&self) -> Result<ModelConfig> {
        let ratio = self.vae.downsample_ratio.max(1);
        if !self.data.image_size.is_multiple_of(ratio) {
            return Err(Error::invalid(format!(
                "data.image_size {} is not divisible by vae.downsample_ratio {ratio}",
                self.data.image_size
            )));
        }
        let input = self.data.image_size / ratio;
        let channels = self.model.in_chans.unwrap_or(self.data.channels);
        let m = &self.model;
        let patch_fits = |patch: usize, what: &str| {
            if patch > 0 && !input.is_multiple_of(patch) {
                Err(Error::invalid(format!(
                    "data.image_size {} / vae.downsample_ratio {ratio} = {input} is not divisible by {what} {patch}",
                    self.data.image_size
                )))
            } else {
                Ok(())
            }
        };
        if m.model_type.contains('-') {
            if let Some(patch) = m.model_type.rsplit_once('/').and_then(|(_, p)| p.parse().ok()) {
                patch_fits(patch, &format!("the patch size of model.type {}:", m.model_type))?;
            }
            return ModelConfig::from_name(&m.model_type, input, channels, self.data.num_classes);
        }
        let arch = match m.model_type.to_ascii_lowercase().as_str() {
            "tit" => Arch::Tit,
            "sit" => Arch::Sit,
            "lightningdit" => Arch::LightningDit,
            "ddt" => Arch::Ddt {
                encoder_depth: m
                    .num_encoder_blocks
                    .ok_or_else(|| Error::invalid("model.num_encoder_blocks is required for a custom DDT"))?,
            },
            other => {
                return Err(Error::invalid(format!(
                    "model.type {other:?}: expected e.g. TiT-XL/2, LightningDiT-XL/1, DDT-XL/2, or TiT / SiT / LightningDiT / DDT \
                     with a custom shape"
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
        patch_fits(cfg.patch, "model.patch_size")?;
        if cfg.heads > 0 && !cfg.hidden.is_multiple_of(cfg.heads) {
            return Err(Error::invalid(format!(
                "model.hidden_size {} is not divisible by model.num_heads {}",
                cfg.hidden, cfg.heads
            )));
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The value of `section.key` in a parsed config, if the key is there.
fn given<'a>(value: &'a Value, section: &str, key: &str) -> Option<&'a Value> {
    value.get(section)?.get(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_style_config_parses() {
        let yaml = r#"
output_dir: outputs
data: {data_path: ./buffers/data/train_256, image_size: 256, num_classes: 1000, latent_norm: true}
vae: {type: vavae_f16d32, downsample_ratio: 16}
model: {type: TiT-XL/1, in_chans: 32}
train: {max_steps: 10, global_batch_size: 8, ema_decay: 0.9999}
optimizer: {type: AdamW, lr: 0.0002, weight_decay: 0.0, beta1: 0.9, beta2: 0.95}
transport: {type: Linear, enhanced_ratio: 0.47, enhanced_style: ft-vs-fe, wt_cosine_loss: true, weight_funcion: Cosine}
sample: {type: UNI, sampling_steps: 30, extrapol_ratio: 0.5}
"#;
        let (cfg, warnings) = RunConfig::from_yaml_with_warnings(yaml).unwrap();
        let warned: Vec<&str> = warnings.iter().map(|r| r.key).collect();
        assert_eq!(warned, ["vae.type"]);
        assert!(
            cfg.latent_norm().unwrap_err().to_string().contains("data.latent_stats"),
            "latent_norm needs the statistics file"
        );
        let m = cfg.model_config().unwrap();
        assert_eq!((m.input_size, m.in_channels, m.patch, m.depth), (16, 32, 1, 28));
        assert_eq!(cfg.sample.sampler(TransportKind::Linear).unwrap().steps, 30);
        assert_eq!(cfg.data.source, "shards", "a reference config's data_path is latent shards");
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

    const BASE: &str = "optimizer: {type: AdamW, lr: 0.001}\n";

    fn parse_err(extra: &str) -> String {
        RunConfig::from_yaml(&format!("{BASE}{extra}")).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_errors_and_reference_keys_warnings() {
        let e = parse_err("train: {max_stepz: 10}");
        assert!(e.contains("unknown key `train.max_stepz` (did you mean `train.max_steps`?)"), "{e}");
        let (cfg, warn) = RunConfig::from_yaml_with_warnings(&format!("{BASE}data: {{num_workers: 8}}\ntrain: {{keep_last: 3}}")).unwrap();
        assert_eq!(warn.iter().map(|r| r.key).collect::<Vec<_>>(), ["data.num_workers"]);
        // Latent normalisation applies to shards only.
        assert!(parse_err("data: {latent_multiplier: 0.18215}").contains("data.source is builtin"));
        assert_eq!(cfg.keep_last, Some(3));
        assert!(parse_err("train: {keep_last: 0}").contains("train.keep_last"));
        assert!(parse_err("train: {keep_last: many}").contains("train.keep_last"));
    }

    #[test]
    fn contradictions_name_both_keys() {
        for (extra, keys) in [
            ("model: {type: TiT-S/2, depth: 4}\ndata: {image_size: 8}", ["model.depth", "model.type"]),
            ("data: {source: builtin, data_path: /x}", ["data.data_path", "data.source"]),
            ("data: {data_path: /x, train_len: 5}", ["data.train_len", "data.source"]),
            ("data: {source: shards, data_path: /x, train_len: 5}", ["data.train_len", "data.source"]),
            ("data: {channels: 3}\nmodel: {in_chans: 1}", ["model.in_chans", "data.channels"]),
            ("sample: {type: ODE, stochast_ratio: 0.5}", ["sample.stochast_ratio", "sample.type"]),
            ("data: {image_size: 18}\nmodel: {patch_size: 4}", ["data.image_size", "model.patch_size"]),
            ("data: {image_size: 18}\nmodel: {type: TiT-S/4}", ["data.image_size", "model.type"]),
            ("model: {hidden_size: 96, num_heads: 5}", ["model.hidden_size", "model.num_heads"]),
        ] {
            let e = parse_err(extra);
            assert!(keys.iter().all(|k| e.contains(k)), "{extra}: {e}");
        }
        // The same values as the named model are no contradiction.
        RunConfig::from_yaml(&format!("{BASE}model: {{type: TiT-S/2, depth: 12}}\ndata: {{image_size: 8}}")).unwrap();
    }

    /// The key table of `config_keys` lists exactly the fields of the structs (plus
    /// `train.keep_last`, read by `from_yaml`, minus `train.no_buffer`, which the table
    /// lists as a reference key without effect).
    #[test]
    fn key_table_matches_the_structs() {
        use super::super::config_keys::ENGINE_KEYS;
        let cfg = RunConfig::from_yaml(BASE).unwrap();
        let Value::Mapping(top) = serde_yaml::to_value(&cfg).unwrap() else { panic!() };
        let mut from_structs = Vec::new();
        for (k, v) in &top {
            let k = k.as_str().unwrap().to_string();
            if let Value::Mapping(inner) = v {
                from_structs.extend(inner.keys().map(|i| format!("{k}.{}", i.as_str().unwrap())));
            }
            from_structs.push(k);
        }
        from_structs.retain(|k| k != "train.no_buffer");
        from_structs.push("train.keep_last".into());
        from_structs.sort();
        let mut table: Vec<String> = ENGINE_KEYS
            .iter()
            .flat_map(|(s, keys)| keys.iter().map(move |k| if s.is_empty() { k.to_string() } else { format!("{s}.{k}") }))
            .collect();
        table.sort();
        assert_eq!(table, from_structs);
    }
}
