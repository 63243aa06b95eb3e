//! The trainer's configuration: the `transport:`, `optimizer:` and `train:` sections of
//! the reference YAML (spec §6.2), with the reference's key names and defaults (§2.1).
//! Keys of the reference that this engine has no use for (`no_buffer`, `log_every`, …)
//! are accepted and kept, so a reference config file parses unchanged; other sections
//! of the file (`data:`, `model:`, `sample:`, …) are ignored.

use serde::{Deserialize, Serialize};

use super::consistency::Difference;
use super::enhance::{EnhanceWindow, EnhancedStyle};
use super::loss::{LossSpec, TimeWeight};
use super::teacher::TeacherKind;
use super::time_dist::TimeDistribution;
use crate::error::{Error, Result};
use crate::transport::{Transport, TransportKind};

/// Everything the trainer reads from a reference config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    #[serde(default)]
    pub transport: TransportSection,
    pub optimizer: OptimizerSection,
    #[serde(default)]
    pub train: TrainSection,
}

/// `transport:` — the UCGM-T hyper-parameters (spec §2.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportSection {
    /// One of the six transports: Linear, ReLinear, TrigFlow, TrigLinear, Random, EDM.
    #[serde(rename = "type")]
    pub transport_type: String,
    /// Fraction of each batch turned unconditional (`tdr`).
    pub lab_drop_ratio: f64,
    /// Consistency ratio λ ∈ `[0, 1]` (`cor`).
    pub consistc_ratio: f64,
    /// ζ, strength of the enhanced target (`enr`); ζ ≥ 1 with λ = 0 is remapped.
    pub enhanced_ratio: f64,
    /// Required when ζ ≠ 0 (v2).
    pub enhanced_style: Option<EnhancedStyle>,
    /// c of the robust loss (`huc`).
    pub scaled_cbl_eps: f64,
    /// How `mod` is obtained (`emd`).
    pub ema_decay_rate: f64,
    /// Open window (t_lo, t_hi) of the enhanced target (`eng`).
    pub enhanced_range: [f64; 2],
    /// Training times Beta(a, b)·s (`tdc`).
    pub time_dist_ctrl: [f64; 3],
    /// `null` or `Cosine` (the reference's spelling of the key).
    pub weight_funcion: Option<TimeWeight>,
    /// Adds the cosine-dissimilarity term (`wcl`).
    pub wt_cosine_loss: bool,
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            transport_type: "Linear".into(),
            lab_drop_ratio: 0.1,
            consistc_ratio: 0.0,
            enhanced_ratio: 0.0,
            enhanced_style: None,
            scaled_cbl_eps: 0.0,
            ema_decay_rate: 0.999,
            enhanced_range: [0.0, 0.75],
            time_dist_ctrl: [1.0, 1.0, 1.0],
            weight_funcion: None,
            wt_cosine_loss: false,
        }
    }
}

impl TransportSection {
    /// ζ as the trainer uses it: the constructor's remap ζ ← (ζ − 1)/ζ when ζ ≥ 1 and
    /// λ = 0 (a guidance scale s read as ζ = 1 − 1/s); otherwise unchanged.
    pub fn effective_enhanced_ratio(&self) -> f64 {
        let zeta = self.enhanced_ratio;
        if zeta >= 1.0 && self.consistc_ratio == 0.0 {
            (zeta - 1.0) / zeta
        } else {
            zeta
        }
    }

    /// The transport named by `type`, in internal time (v2 flip applied).
    pub fn transport(&self) -> Result<Transport> {
        Transport::new(self.transport_type.parse::<TransportKind>()?)
    }

    /// The loss settings.
    pub fn loss_spec(&self) -> LossSpec {
        LossSpec {
            cbl_eps: self.scaled_cbl_eps,
            cosine_term: self.wt_cosine_loss,
            time_weight: self.weight_funcion.unwrap_or_default(),
        }
    }

    /// The enhanced-target window.
    pub fn window(&self) -> EnhanceWindow {
        EnhanceWindow {
            lo: self.enhanced_range[0],
            hi: self.enhanced_range[1],
        }
    }

    /// The enhanced-target style when ζ ≠ 0 (None when the enhancement is off).
    pub fn enhancement(&self) -> Option<EnhancedStyle> {
        if self.effective_enhanced_ratio() == 0.0 {
            None
        } else {
            self.enhanced_style
        }
    }

    /// Checks every value; messages name the key.
    pub fn validate(&self) -> Result<()> {
        self.transport().map_err(|e| Error::invalid(format!("transport.type: {e}")))?;
        let unit = |key: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(format!("transport.{key} = {v} must lie in [0, 1]")))
            }
        };
        unit("lab_drop_ratio", self.lab_drop_ratio)?;
        unit("consistc_ratio", self.consistc_ratio)?;
        unit("ema_decay_rate", self.ema_decay_rate)?;
        if !self.enhanced_ratio.is_finite() {
            return Err(Error::invalid(format!("transport.enhanced_ratio = {} must be finite", self.enhanced_ratio)));
        }
        if self.effective_enhanced_ratio() != 0.0 && self.enhanced_style.is_none() {
            return Err(Error::invalid(
                "transport.enhanced_style is required when enhanced_ratio ≠ 0 (ft-vs-fe, fc-vs-xz or fc-vs-fe)",
            ));
        }
        if !(self.scaled_cbl_eps >= 0.0 && self.scaled_cbl_eps.is_finite()) {
            return Err(Error::invalid(format!("transport.scaled_cbl_eps = {} must be ≥ 0", self.scaled_cbl_eps)));
        }
        let [lo, hi] = self.enhanced_range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::invalid(format!(
                "transport.enhanced_range {:?} must be [lo, hi] with lo ≤ hi",
                self.enhanced_range
            )));
        }
        TimeDistribution::new(self.time_dist_ctrl)?;
        TeacherKind::for_rate(self.ema_decay_rate)?;
        Ok(())
    }

    /// The consistency scheme (None for λ = 0).
    pub fn difference(&self) -> Option<Difference> {
        Difference::for_ratio(self.consistc_ratio)
    }
}

/// Which update rule `optimizer.type` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// The reference's own AdamW (spec §2.9).
    AdamW,
    /// torch.optim.RAdam.
    RAdam,
}

/// `optimizer:` — no learning-rate schedule and no warm-up, as in the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSection {
    #[serde(rename = "type")]
    pub kind: OptimizerKind,
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Gradient-norm clipping (`clip_grad_norm_`), off when absent.
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
    /// eps of both rules (not a key of the reference configs; both use 1e-8).
    #[serde(default = "default_eps")]
    pub eps: f64,
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

impl OptimizerSection {
    /// AdamW at learning rate `lr` with the defaults a config file gets for the keys it
    /// leaves out: no weight decay, β = (0.9, 0.999), ε = 1e-8, no gradient clipping.
    pub fn adamw(lr: f64) -> Self {
        OptimizerSection {
            kind: OptimizerKind::AdamW,
            lr,
            weight_decay: 0.0,
            beta1: default_beta1(),
            beta2: default_beta2(),
            max_grad_norm: None,
            eps: default_eps(),
        }
    }

    /// Checks every value; messages name the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return bad(format!("optimizer.lr = {} must be a finite value ≥ 0", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!("optimizer.weight_decay = {} must be ≥ 0", self.weight_decay));
        }
        for (key, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("optimizer.{key} = {b} must lie in [0, 1)"));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad(format!("optimizer.eps = {} must be > 0", self.eps));
        }
        if let Some(c) = self.max_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return bad(format!("optimizer.max_grad_norm = {c} must be > 0"));
            }
        }
        Ok(())
    }
}

/// `train:` — the outer loop's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSection {
    /// Checkpoint to start from.
    pub ckpt: Option<String>,
    /// Do not restore the optimizer state from `ckpt`.
    pub no_reopt: bool,
    /// Do not restore the trainer state (`mod`) from `ckpt`.
    pub no_reuni: bool,
    /// DDP `broadcast_buffers=False` in the reference; no effect here.
    pub no_buffer: bool,
    pub max_steps: u64,
    pub global_batch_size: usize,
    /// Seed of every random draw of the run.
    pub global_seed: u64,
    pub log_every: u64,
    pub ckpt_every: u64,
    /// Decay of the sampling EMA copy `ema`.
    pub ema_decay: f64,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            ckpt: None,
            no_reopt: false,
            no_reuni: false,
            no_buffer: false,
            max_steps: 1_000_000,
            global_batch_size: 256,
            global_seed: 0,
            log_every: 100,
            ckpt_every: 10_000,
            ema_decay: 0.9999,
        }
    }
}

impl TrainSection {
    /// Checks every value; messages name the key.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return Err(Error::invalid(format!("train.ema_decay = {} must lie in [0, 1]", self.ema_decay)));
        }
        if self.global_batch_size == 0 {
            return Err(Error::invalid("train.global_batch_size must be at least 1"));
        }
        Ok(())
    }
}

impl TrainerConfig {
    /// Parses the relevant sections of a reference YAML config.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let cfg: TrainerConfig = serde_yaml::from_str(text).map_err(|e| Error::invalid(format!("trainer config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks all three sections.
    pub fn validate(&self) -> Result<()> {
        self.transport.validate()?;
        self.optimizer.validate()?;
        self.train.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEW_STEP: &str = r#"
data:
  image_size: 256
transport:
  type: Linear
  lab_drop_ratio: 0.1
  consistc_ratio: 1.0
  enhanced_ratio: 2.0
  enhanced_style: "fc-vs-xz"
  scaled_cbl_eps: 5.0
  ema_decay_rate: 1.0
  enhanced_range: [0.00, 0.75]
  time_dist_ctrl: [0.8, 1.0, 1.0]
  weight_funcion: Cosine
  wt_cosine_loss: False
optimizer:
  type: RAdam
  lr: 0.0001
  weight_decay: 0
  beta1: 0.9
  beta2: 0.999
  max_grad_norm: 0.1
train:
  no_reopt: True
  max_steps: 50000
  global_batch_size: 1024
  global_seed: 0
  ema_decay: 0.9999
"#;

    #[test]
    fn parses_a_reference_config() {
        let c = TrainerConfig::from_yaml(FEW_STEP).unwrap();
        assert_eq!(c.transport.enhanced_style, Some(EnhancedStyle::FcVsXz));
        assert_eq!(c.transport.weight_funcion, Some(TimeWeight::Cosine));
        assert_eq!(c.transport.difference(), Some(Difference::Central));
        assert_eq!(c.optimizer.kind, OptimizerKind::RAdam);
        assert_eq!(c.optimizer.max_grad_norm, Some(0.1));
        assert!(c.train.no_reopt && c.train.max_steps == 50_000);
        // ζ ≥ 1 with λ ≠ 0 is kept (spec §8 item 18).
        assert_eq!(c.transport.effective_enhanced_ratio(), 2.0);
        assert_eq!(c.transport.transport().unwrap().kind(), TransportKind::Linear);
        // JSON round trip (the checkpoint metadata).
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<TrainerConfig>(&json).unwrap(), c);
    }

    #[test]
    fn remap_and_validation() {
        let mut t = TransportSection {
            enhanced_ratio: 2.0,
            enhanced_style: Some(EnhancedStyle::FtVsFe),
            ..Default::default()
        };
        assert_eq!(t.effective_enhanced_ratio(), 0.5);
        t.enhanced_ratio = 0.47;
        assert_eq!(t.effective_enhanced_ratio(), 0.47);
        t.validate().unwrap();
        t.enhanced_style = None;
        assert!(t.validate().is_err());
        let bad_type = TransportSection {
            transport_type: "Cosine".into(),
            ..Default::default()
        };
        assert!(bad_type.validate().is_err());
        let bad_lambda = TransportSection {
            consistc_ratio: 1.5,
            ..Default::default()
        };
        assert!(bad_lambda.validate().is_err());
        assert!(TrainerConfig::from_yaml("optimizer: {type: SGD, lr: 1}").is_err());
        assert!(TrainerConfig::from_yaml("optimizer: {type: AdamW, lr: 1, beta2: 1.0}").is_err());
        let minimal = TrainerConfig::from_yaml("optimizer: {type: AdamW, lr: 0.0002}").unwrap();
        assert_eq!(minimal.transport, TransportSection::default());
        assert_eq!(minimal.train.ema_decay, 0.9999);
    }
}
