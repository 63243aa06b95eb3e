//! The auxiliary network `mod` of spec §2.4 (`ema_decay_rate` = emd), used only for the
//! enhanced target:
//! * emd = 0: `mod` is the online network itself;
//! * emd = 1: a frozen copy of the weights present at the first step that needs it;
//! * 0 < emd < 1: a copy moved toward the online weights at every step (after the online
//!   forward, before `mod` is evaluated): mod ← d_k·mod + (1 − d_k)·online, with the
//!   ramp d_{k+1} = d_k + (1 − d_k)(emd − d_k)/2, d_0 = 0 (so the first update copies).
//!
//! Difference from the reference: there the ramp counter is a plain attribute, not
//! checkpointed, so after a resume the first update copies the online weights again. Here
//! the ramp is part of the checkpoint, so that a resumed run continues bit-identically.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// The kind for `ema_decay_rate`; emd must lie in [0, 1].
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
