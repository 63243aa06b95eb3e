//! What the sampler needs from a network: F = net(x_t, t, y). The engine's models
//! implement it; tests implement it with exact closed-form models (spec §8).

use crate::error::Result;

/// A network evaluation F(x_t, t, y) in the model's native time.
pub trait Denoiser {
    /// Shape (C, H, W) of one sample.
    fn sample_shape(&self) -> [usize; 3];
    /// Number of classes K; label K is the null (unconditional) class.
    fn num_classes(&self) -> usize;
    /// x: `[B, C, H, W]`; t: `[B]`; labels: `[B]` in 0..=K; out: `[B, C, H, W]` (assign).
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()>;
}
