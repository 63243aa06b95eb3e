//! The enhanced ("self-boosting") target of spec §2.5: classifier-free guidance folded
//! into the regression target. The same rule is applied separately to x̃ (with data
//! predictions x̂) and to z̃ (with noise predictions ẑ); afterwards
//! F_tgt = α̂(t)·z̃ + γ̂(t)·x̃.
//!
//! With W = {b : t_lo < t_b < t_hi} (strict), D = the dropped samples (batch tail) and
//! N = the others, for a predictor p_c and a reference p_u:
//! * b ∈ N ∩ W: x̃_b ← x̃_b + ζ·(p_c,b − p_u,b)
//! * b ∈ N \ W: x̃_b ← ½·(x̃_b + p_c,b)
//! * b ∈ D:     x̃_b ← ½·(x̃_b + p_u,b)
//!
//! Predictor / reference per v2 `enhanced_style` (every network call uses the labels ỹ
//! after dropping, since the reference overwrites its label tensor in place):
//! * `ft-vs-fe`: p_c = the online prediction of the step (detached), p_u = `mod` with all
//!   labels null;
//! * `fc-vs-xz`: p_c = `mod` with ỹ, p_u = the targets themselves (x̃, z̃);
//! * `fc-vs-fe`: p_c = `mod` with ỹ, p_u = `mod` with all labels null.

use serde::{Deserialize, Serialize};

use super::interpolant::sample_len;
use super::label_drop::is_dropped;

/// Which predictions the enhanced target contrasts (v2 `enhanced_style`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnhancedStyle {
    /// Online conditional prediction vs `mod` unconditional (multi-step training).
    #[serde(rename = "ft-vs-fe")]
    FtVsFe,
    /// `mod` conditional prediction vs the targets themselves (few-step training).
    #[serde(rename = "fc-vs-xz")]
    FcVsXz,
    /// `mod` conditional vs `mod` unconditional (tuning external pre-trained models).
    #[serde(rename = "fc-vs-fe")]
    FcVsFe,
}

impl EnhancedStyle {
    /// Whether the predictor p_c is the online network's own output (else `mod`'s).
    pub fn predictor_is_online(self) -> bool {
        self == EnhancedStyle::FtVsFe
    }
    /// Whether the reference p_u is `mod` with null labels (else the targets themselves).
    pub fn reference_is_unconditional(self) -> bool {
        self != EnhancedStyle::FcVsXz
    }
}

/// The open time window (t_lo, t_hi) of `enhanced_range`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnhanceWindow {
    pub lo: f64,
    pub hi: f64,
}

impl EnhanceWindow {
    /// t_lo < t < t_hi, compared in f32 as the reference compares its float32 times with
    /// Python floats.
    pub fn contains(&self, t: f32) -> bool {
        t > self.lo as f32 && t < self.hi as f32
    }
}

/// The reference p_u of the rule.
#[derive(Clone, Copy, Debug)]
pub enum Reference<'a> {
    /// A prediction tensor `[B, C, H, W]` (`mod` with null labels).
    Prediction(&'a [f32]),
    /// The endpoint tensor being enhanced, as it was before this call (`fc-vs-xz`).
    Target,
}

/// Applies the enhancement rule in place to one endpoint tensor.
///
/// target: `[B, C, H, W]` (x̃ or z̃, edited in place); predictor: `[B, C, H, W]` (p_c);
/// t: `[B]`; `n_drop`: the number of dropped samples at the batch tail; `zeta`: ζ after
/// the constructor's remap.
pub fn enhance_endpoint(target: &mut [f32], predictor: &[f32], reference: Reference<'_>, t: &[f32], window: EnhanceWindow, zeta: f64, n_drop: usize) {
    let batch = t.len();
    let s = match reference {
        Reference::Prediction(r) => sample_len(batch, &[target.len(), predictor.len(), r.len()]),
        Reference::Target => sample_len(batch, &[target.len(), predictor.len()]),
    };
    for (b, &tb) in t.iter().enumerate() {
        let range = b * s..(b + 1) * s;
        let dropped = is_dropped(b, batch, n_drop);
        let in_window = window.contains(tb);
        for i in range {
            let x = target[i] as f64;
            let p_c = predictor[i] as f64;
            let p_u = match reference {
                Reference::Prediction(r) => r[i] as f64,
                Reference::Target => x,
            };
            let new = if dropped {
                0.5 * (x + p_u)
            } else if in_window {
                x + zeta * (p_c - p_u)
            } else {
                0.5 * (x + p_c)
            };
            target[i] = new as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: EnhanceWindow = EnhanceWindow { lo: 0.0, hi: 0.75 };

    #[test]
    fn three_cases_with_a_prediction_reference() {
        // Samples: in window, outside window, in window but dropped (n_drop = 1).
        let t = [0.5f32, 0.75, 0.3];
        let mut x = vec![1.0f32, 1.0, 1.0];
        let p_c = [3.0f32, 3.0, 3.0];
        let p_u = [2.0f32, 2.0, 2.0];
        enhance_endpoint(&mut x, &p_c, Reference::Prediction(&p_u), &t, WINDOW, 0.5, 1);
        assert_eq!(x, vec![1.0 + 0.5 * (3.0 - 2.0), 0.5 * (1.0 + 3.0), 0.5 * (1.0 + 2.0)]);
    }

    #[test]
    fn fc_vs_xz_mixes_with_the_target_and_keeps_dropped_samples() {
        // In window: (1 − ζ)·x + ζ·p_c; outside: (x + p_c)/2; dropped: x unchanged.
        let t = [0.2f32, 0.0, 0.9, 0.6];
        let mut x = vec![1.0f32, -1.0, 2.0, 4.0];
        let p_c = [0.5f32, 0.5, 0.5, 0.5];
        enhance_endpoint(&mut x, &p_c, Reference::Target, &t, WINDOW, 2.0, 1);
        // t = 0.0 is outside the open window (strict inequality).
        assert_eq!(x, vec![(1.0 - 2.0) * 1.0 + 2.0 * 0.5, 0.5 * (-1.0 + 0.5), 0.5 * (2.0 + 0.5), 4.0]);
    }

    #[test]
    fn styles_and_window_edges() {
        assert!(EnhancedStyle::FtVsFe.predictor_is_online());
        assert!(!EnhancedStyle::FcVsFe.predictor_is_online());
        assert!(!EnhancedStyle::FcVsXz.reference_is_unconditional());
        assert!(EnhancedStyle::FcVsFe.reference_is_unconditional());
        let style: EnhancedStyle = serde_json::from_str("\"fc-vs-xz\"").unwrap();
        assert_eq!(style, EnhancedStyle::FcVsXz);
        let w = EnhanceWindow { lo: 0.0, hi: 0.76 };
        assert!(w.contains(0.759_999_9) && !w.contains(0.76) && !w.contains(0.0) && w.contains(1e-30));
    }
}
