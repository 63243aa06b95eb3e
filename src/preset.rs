//! Sampler presets: how a model should be sampled (transport, steps, order, ρ, κ, time
//! warp, gaps, guidance), stored as JSON in a weights file's or checkpoint's metadata
//! under [`PRESET_KEY`], so that a few-step model is sampled as it was tuned without the
//! user having to know its settings. `ucgm sample` and `ucgm_sample` use a file's preset
//! unless told otherwise; `ucgm train` and the demo write one from the run config's
//! `sample:` section.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sampler::{SamplerConfig, Stochasticity};
use crate::transport::TransportKind;

/// Metadata key of the sampler preset (JSON).
pub const PRESET_KEY: &str = "ucgm_sampler";

/// The stored form: the reference's key names, so a person can read and edit it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    transport: String,
    sampling_steps: usize,
    sampling_order: usize,
    /// A number in [0, 1] or "SDE".
    stochast_ratio: serde_json::Value,
    extrapol_ratio: f64,
    time_dist_ctrl: [f64; 3],
    rfba_gap_steps: [f64; 2],
    cfg_scale: f64,
    cfg_interval: [f64; 2],
}

/// The preset JSON of a sampler configuration (`return_trajectory` is not stored).
pub fn to_json(cfg: &SamplerConfig) -> Result<String> {
    cfg.validate()?;
    let stored = Stored {
        transport: cfg.transport.name().to_string(),
        sampling_steps: cfg.steps,
        sampling_order: cfg.order,
        stochast_ratio: match cfg.stochasticity {
            Stochasticity::Fixed(r) => serde_json::json!(r),
            Stochasticity::Sde => serde_json::json!("SDE"),
        },
        extrapol_ratio: cfg.extrapolation,
        time_dist_ctrl: cfg.time_dist_ctrl,
        rfba_gap_steps: cfg.rfba_gap_steps,
        cfg_scale: cfg.cfg_scale,
        cfg_interval: cfg.cfg_interval,
    };
    serde_json::to_string(&stored).map_err(|e| Error::Internal(format!("sampler preset: {e}")))
}

/// Parses and validates a preset JSON.
pub fn from_json(text: &str) -> Result<SamplerConfig> {
    let s: Stored = serde_json::from_str(text).map_err(|e| Error::invalid(format!("sampler preset {PRESET_KEY}: {e}")))?;
    let stochasticity = match &s.stochast_ratio {
        serde_json::Value::Number(n) => Stochasticity::Fixed(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(t) => t.parse()?,
        other => return Err(Error::invalid(format!("sampler preset: stochast_ratio {other}: a number or \"SDE\""))),
    };
    let cfg = SamplerConfig {
        transport: s.transport.parse::<TransportKind>()?,
        steps: s.sampling_steps,
        order: s.sampling_order,
        stochasticity,
        extrapolation: s.extrapol_ratio,
        time_dist_ctrl: s.time_dist_ctrl,
        rfba_gap_steps: s.rfba_gap_steps,
        cfg_scale: s.cfg_scale,
        cfg_interval: s.cfg_interval,
        cfg_channels: None,
        return_trajectory: false,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The preset stored in a file's metadata, if any (a malformed one is an error naming
/// the file, never silently ignored).
pub fn from_metadata(path: &std::path::Path, metadata: &HashMap<String, String>) -> Result<Option<SamplerConfig>> {
    metadata
        .get(PRESET_KEY)
        .map(|t| from_json(t).map_err(|e| Error::format(path, e.to_string())))
        .transpose()
}

/// A metadata map holding `cfg` as the preset (for `save_with_metadata`).
pub fn metadata(cfg: &SamplerConfig) -> Result<BTreeMap<String, String>> {
    Ok(BTreeMap::from([(PRESET_KEY.to_string(), to_json(cfg)?)]))
}

/// One line describing a preset, for logs: "Linear, 2 steps, order 1, ρ 0, κ 0, …".
pub fn describe(cfg: &SamplerConfig) -> String {
    let rho = match cfg.stochasticity {
        Stochasticity::Fixed(r) => format!("{r}"),
        Stochasticity::Sde => "SDE".into(),
    };
    format!(
        "{}, {} steps, order {}, rho {rho}, kappa {}, time warp {:?}, gaps {:?}, cfg {} on {:?}",
        cfg.transport.name(),
        cfg.steps,
        cfg.order,
        cfg.extrapolation,
        cfg.time_dist_ctrl,
        cfg.rfba_gap_steps,
        cfg.cfg_scale,
        cfg.cfg_interval
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        let cfg = SamplerConfig {
            transport: TransportKind::TrigFlow,
            steps: 2,
            order: 1,
            stochasticity: Stochasticity::Fixed(1.0),
            extrapolation: 0.25,
            time_dist_ctrl: [1.17, 0.8, 1.1],
            rfba_gap_steps: [0.001, 0.6],
            cfg_scale: 1.5,
            cfg_interval: [0.0, 0.7],
            cfg_channels: None,
            return_trajectory: false,
        };
        assert_eq!(from_json(&to_json(&cfg).unwrap()).unwrap(), cfg);
        let sde = SamplerConfig {
            stochasticity: Stochasticity::Sde,
            ..SamplerConfig::default()
        };
        assert_eq!(from_json(&to_json(&sde).unwrap()).unwrap(), sde);
        let bad = to_json(&cfg).unwrap().replace("\"sampling_steps\":2", "\"sampling_steps\":0");
        assert!(from_json(&bad).is_err());
        let unknown = to_json(&cfg).unwrap().replace("\"cfg_scale\"", "\"cfg_scal\"");
        assert!(from_json(&unknown).unwrap_err().to_string().contains("cfg_scal"));
    }
}
