//! The auxiliary network `mod` of spec §2.4 (`ema_decay_rate` = emd), used only for the
//! enhanced target:
//! * emd = 0: `mod` is the online network itself;
//! * emd = 1: a frozen copy of the weights present at the first step that needs it;
//! * 0 < emd < 1: a copy moved toward the online weights at every step (after the online
//!   forward, before `mod` is evaluated): mod ← d_k·mod + (1 − d_k)·online, with the
//!   ramp d_{k+1} = d_k + (1 − d_k)(emd − d_k)/2, d_0 = 0 (so the first update copies).
//!
//! [`Teacher`] also owns the second network instance through which every no-grad forward
//! of a step runs (the `mod` evaluations and the consistency probes of the online
//! weights), so the online network keeps the activations of its training forward.
//!
//! Difference from the reference: there the ramp counter is a plain attribute, not
//! checkpointed, so after a resume the first update copies the online weights again. Here
//! the ramp is part of the checkpoint, so that a resumed run continues bit-identically.

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::Model;

/// How `mod` is obtained from `ema_decay_rate`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TeacherKind {
    /// emd = 0: the online network.
    Online,
    /// emd = 1: frozen at its creation.
    Frozen,
    /// 0 < emd < 1: EMA of the online weights with the ramped decay.
    Ema(EmaRamp),
}

impl TeacherKind {
    /// The kind for `ema_decay_rate`; emd must lie in `[0, 1]`.
    pub fn for_rate(emd: f64) -> Result<Self> {
        if emd == 0.0 {
            Ok(TeacherKind::Online)
        } else if emd == 1.0 {
            Ok(TeacherKind::Frozen)
        } else if emd > 0.0 && emd < 1.0 {
            Ok(TeacherKind::Ema(EmaRamp::new(emd)))
        } else {
            Err(Error::invalid(format!("ema_decay_rate {emd} must lie in [0, 1]")))
        }
    }

    /// Whether `mod` is a separate weight copy (frozen or EMA).
    pub fn has_copy(&self) -> bool {
        !matches!(self, TeacherKind::Online)
    }
}

/// The ramped decay of the EMA teacher.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmaRamp {
    /// emd, the decay the ramp approaches.
    pub rate: f64,
    /// d_k, the decay of the next update.
    pub decay: f64,
}

impl EmaRamp {
    /// A fresh ramp, d_0 = 0.
    pub fn new(rate: f64) -> Self {
        EmaRamp { rate, decay: 0.0 }
    }

    /// Returns d_k for this step's update and advances to d_{k+1}.
    pub fn next_decay(&mut self) -> f64 {
        let d = self.decay;
        self.decay = d + (1.0 - d) * (self.rate - d) / 2.0;
        d
    }
}

/// `mod` and the no-grad evaluator of a step.
pub struct Teacher<B: Backend> {
    pub(super) kind: TeacherKind,
    /// A second instance of the network, created at the first step that needs `mod`. Its
    /// parameter buffer is the `mod` copy (stale and unused when `kind` is Online); its
    /// workspace serves every no-grad forward of the step.
    pub(super) net: Option<Model<B>>,
}

impl<B: Backend + Clone> Teacher<B> {
    /// A teacher of the given kind, not yet created.
    pub fn new(kind: TeacherKind) -> Self {
        Teacher { kind, net: None }
    }

    /// How `mod` is obtained (with the current ramp state for the EMA kind).
    pub fn kind(&self) -> TeacherKind {
        self.kind
    }

    /// Whether `mod` has been created (it is created lazily).
    pub fn is_created(&self) -> bool {
        self.net.is_some()
    }

    /// The `mod` weights when they are a separate copy that exists, as a host vector.
    pub fn read_params(&self) -> Result<Option<Vec<f32>>> {
        match (&self.net, self.kind.has_copy()) {
            (Some(net), true) => Ok(Some(net.read_params()?)),
            _ => Ok(None),
        }
    }

    /// Step 8 of §2.2: creates `mod` on first use (a copy of the online weights), then,
    /// for the EMA kind, moves it toward the online weights with this step's ramped decay.
    pub fn advance(&mut self, online: &Model<B>) -> Result<()> {
        if self.net.is_none() {
            let copy = online.read_params()?;
            self.net = Some(Model::from_params(online.config().clone(), online.backend().clone(), &copy)?);
        }
        if let TeacherKind::Ema(ramp) = &mut self.kind {
            let decay = ramp.next_decay();
            let net = self.net.as_mut().expect("created above");
            let be = online.backend();
            let n = online.layout().total();
            be.ema(be.src(online.params(), 0..n), be.dst(net.params_mut()?, 0..n), decay);
        }
        Ok(())
    }

    /// F of `mod` (no grad). x, out: `[B, C, H, W]`; t_net: `[B]` network times; labels: `[B]`.
    pub fn eval_mod(&mut self, online: &Model<B>, x: &[f32], t_net: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        let net = self.net.as_mut().ok_or_else(|| Error::Internal("mod evaluated before it was created".into()))?;
        match self.kind {
            TeacherKind::Online => net.forward_with(online.params(), x, t_net, labels, out),
            TeacherKind::Frozen | TeacherKind::Ema(_) => net.forward(x, t_net, labels, out),
        }
    }

    /// F of the online weights under no-grad, through the teacher's workspace.
    /// x, out: `[B, C, H, W]`; t_net: `[B]` network times; labels: `[B]`.
    pub fn eval_online(&mut self, online: &Model<B>, x: &[f32], t_net: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        let net = self
            .net
            .as_mut()
            .ok_or_else(|| Error::Internal("no-grad evaluator used before it was created".into()))?;
        net.forward_with(online.params(), x, t_net, labels, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_values_of_the_spec() {
        // Spec §2.4: decays used at steps 1…12 for emd = 0.999, and ≈ 0.998993 after 10 000.
        let want = [
            0.0, 0.4995, 0.6245, 0.694812, 0.741229, 0.774581, 0.799875, 0.8198, 0.835946, 0.849321, 0.860598, 0.870244,
        ];
        let mut ramp = EmaRamp::new(0.999);
        for (k, &w) in want.iter().enumerate() {
            let d = ramp.next_decay();
            assert!((d - w).abs() < 6e-7, "step {}: {d} vs {w}", k + 1);
        }
        let mut ramp = EmaRamp::new(0.999);
        let mut d = 0.0;
        for _ in 0..10_000 {
            d = ramp.next_decay();
        }
        assert!((d - 0.998993).abs() < 6e-7, "{d}");
    }

    #[test]
    fn kinds() {
        assert_eq!(TeacherKind::for_rate(0.0).unwrap(), TeacherKind::Online);
        assert_eq!(TeacherKind::for_rate(1.0).unwrap(), TeacherKind::Frozen);
        assert!(matches!(TeacherKind::for_rate(0.5).unwrap(), TeacherKind::Ema(r) if r.decay == 0.0));
        assert!(TeacherKind::for_rate(1.5).is_err() && TeacherKind::for_rate(-0.1).is_err());
        assert!(!TeacherKind::Online.has_copy() && TeacherKind::Frozen.has_copy());
    }
}
