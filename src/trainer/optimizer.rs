//! The parameter update of one training step (spec §2.9), on the backend's flat buffers:
//! optional gradient-norm clipping (`clip_grad_norm_`), NaN/±inf gradients set to 0
//! (`nan_to_num`), then the AdamW or RAdam rule with its two moment buffers. There is no
//! learning-rate schedule and no warm-up.

use super::config::{OptimizerKind, OptimizerSection};
use crate::backend::{Backend, OptimHp};
use crate::error::Result;

/// Added to the total norm before dividing, as `torch.nn.utils.clip_grad_norm_` does.
pub const CLIP_EPS: f64 = 1e-6;

/// Optimizer state: the rule, its hyper-parameters, the moments m and v (`[N]` each) and
/// the number of updates taken.
pub struct Optimizer<B: Backend> {
    kind: OptimizerKind,
    hp: OptimHp,
    max_grad_norm: Option<f64>,
    /// First moment, `[N]`.
    pub(crate) m: B::Buf,
    /// Second moment, `[N]`.
    pub(crate) v: B::Buf,
    /// Updates taken so far (the next update uses step + 1 for its bias corrections).
    pub(crate) step: u64,
}

impl<B: Backend> Optimizer<B> {
    /// A fresh optimizer for `len` parameters (zero moments, no step taken).
    pub fn new(section: &OptimizerSection, backend: &B, len: usize) -> Result<Self> {
        section.validate()?;
        let hp = OptimHp {
            lr: section.lr,
            beta1: section.beta1,
            beta2: section.beta2,
            eps: section.eps,
            weight_decay: section.weight_decay,
        };
        Ok(Optimizer {
            kind: section.kind,
            hp,
            max_grad_norm: section.max_grad_norm,
            m: backend.zeros(len)?,
            v: backend.zeros(len)?,
            step: 0,
        })
    }

    /// Updates taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// One full update: returns the gradient's global L2 norm before clipping.
    /// Clipping scales g by max_norm/(‖g‖ + 1e-6) when that is below 1 (a non-finite norm
    /// makes every gradient non-finite, as in torch); then non-finite gradients become 0;
    /// then the rule updates params in place. params, grads: `[N]`.
    pub fn update(&mut self, backend: &B, params: &mut B::Buf, grads: &mut B::Buf) -> Result<f64> {
        let n = backend.len(params);
        let norm = backend.sum_squares(backend.src(grads, 0..n)).sqrt();
        if let Some(max_norm) = self.max_grad_norm {
            let coef = max_norm / (norm + CLIP_EPS);
            // Scale unless coef ≥ 1; a NaN coef (non-finite norm) also scales, as in torch.
            if coef < 1.0 || coef.is_nan() {
                backend.scale(backend.dst(grads, 0..n), coef);
            }
        }
        backend.zero_non_finite(backend.dst(grads, 0..n));
        self.step += 1;
        let (p, g) = (backend.dst(params, 0..n), backend.src(grads, 0..n));
        let (m, v) = (backend.dst(&mut self.m, 0..n), backend.dst(&mut self.v, 0..n));
        match self.kind {
            OptimizerKind::AdamW => backend.adamw_step(p, g, m, v, &self.hp, self.step),
            OptimizerKind::RAdam => backend.radam_step(p, g, m, v, &self.hp, self.step),
        }
        Ok(norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    fn section(kind: OptimizerKind, max_grad_norm: Option<f64>) -> OptimizerSection {
        OptimizerSection {
            kind,
            lr: 0.1,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            max_grad_norm,
            eps: 1e-8,
        }
    }

    #[test]
    fn clipping_nan_guard_and_first_step() {
        let be = CpuBackend::<f64>::new(1).unwrap();
        // ‖g‖ = 5 clipped to 1: g = (0.6, 0.8) before the rule; the NaN entry becomes 0.
        let mut opt = Optimizer::new(&section(OptimizerKind::RAdam, Some(1.0)), &be, 3).unwrap();
        let mut p = vec![1.0, 1.0, 1.0];
        let mut g = vec![3.0, 4.0, 0.0];
        let norm = opt.update(&be, &mut p, &mut g).unwrap();
        assert_eq!(norm, 5.0);
        let coef = 1.0 / (5.0 + CLIP_EPS);
        assert_eq!(g, vec![3.0 * coef, 4.0 * coef, 0.0]);
        // RAdam's first step is un-adapted: p ← p − lr·g.
        for i in 0..3 {
            assert!((p[i] - (1.0 - 0.1 * g[i])).abs() < 1e-15);
        }
        assert_eq!(opt.steps_taken(), 1);
        // Norm below the limit: no scaling. A NaN gradient: zeroed, the norm is NaN and,
        // with clipping on, every gradient is NaN → 0 (torch's behaviour).
        let mut opt = Optimizer::new(&section(OptimizerKind::AdamW, Some(10.0)), &be, 2).unwrap();
        let mut g = vec![3.0, 4.0];
        let mut p = vec![0.0, 0.0];
        opt.update(&be, &mut p, &mut g).unwrap();
        assert_eq!(g, vec![3.0, 4.0]);
        let mut g = vec![f64::NAN, 4.0];
        let before = p.clone();
        assert!(opt.update(&be, &mut p, &mut g).unwrap().is_nan());
        assert_eq!(g, vec![0.0, 0.0]);
        assert!(p.iter().zip(&before).all(|(a, b)| a.is_finite() && a != b), "momentum still moves p");
        // Without clipping only the NaN entry is zeroed.
        let mut opt = Optimizer::new(&section(OptimizerKind::AdamW, None), &be, 2).unwrap();
        let mut g = vec![f64::INFINITY, 4.0];
        opt.update(&be, &mut p, &mut g).unwrap();
        assert_eq!(g, vec![0.0, 4.0]);
    }
}
