//! The training-time distribution (spec §1.3, §2.2 step 1): t ~ Beta(a, b), then
//! t ← clamp(s·t, 0, 1), from `time_dist_ctrl = [a, b, s]`. It is the only training-time
//! distribution of the reference (no logit-normal, no shift).

use crate::error::{Error, Result};
use crate::rng::Rng;

/// `time_dist_ctrl = [a, b, s]`: Beta(a, b) scaled by s and clamped to `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeDistribution {
    /// Beta shape a (> 0).
    pub a: f64,
    /// Beta shape b (> 0).
    pub b: f64,
    /// Scale s applied before clamping.
    pub scale: f64,
}

impl TimeDistribution {
    /// From the config triple `[a, b, s]`, checking a, b > 0 and a finite s.
    pub fn new(ctrl: [f64; 3]) -> Result<Self> {
        let [a, b, scale] = ctrl;
        if !(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() && scale.is_finite()) {
            return Err(Error::invalid(format!("time_dist_ctrl {ctrl:?}: need a > 0, b > 0 and a finite scale")));
        }
        Ok(TimeDistribution { a, b, scale })
    }

    /// `n` i.i.d. times: each a Beta(a, b) draw rounded to f32 (the reference samples in
    /// float32), multiplied by s in f32 and clamped to `[0, 1]`.
    pub fn sample(&self, rng: &mut Rng, n: usize) -> Result<Vec<f32>> {
        let draws = rng.beta(self.a, self.b, n)?;
        Ok(draws.into_iter().map(|t| ((self.scale as f32) * (t as f32)).clamp(0.0, 1.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_mean_and_reproducibility() {
        let d = TimeDistribution::new([1.0, 1.0, 1.0]).unwrap();
        let t = d.sample(&mut Rng::new(3), 20_000).unwrap();
        assert!(t.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let mean = t.iter().map(|&v| v as f64).sum::<f64>() / t.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert_eq!(t[..10], d.sample(&mut Rng::new(3), 10).unwrap()[..]);
        // Beta(0.8, 1)·1.1: mean 0.8/1.8·1.1 before clamping; some mass clamped at 1.
        let d = TimeDistribution::new([0.8, 1.0, 1.1]).unwrap();
        let t = d.sample(&mut Rng::new(4), 20_000).unwrap();
        assert!(t.contains(&1.0) && t.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(TimeDistribution::new([0.0, 1.0, 1.0]).is_err());
        assert!(TimeDistribution::new([1.0, f64::NAN, 1.0]).is_err());
    }
}
