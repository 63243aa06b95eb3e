//! Shapes of the pooling and resizing ops of the convolutional networks (FID Inception).

use crate::error::{Error, Result};

/// Which pooling a [`crate::Backend::pool2d_fwd`] call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window's in-bounds pixels (padding never wins, as PyTorch's −∞).
    Max,
    /// Mean over the window's in-bounds pixels (PyTorch `count_include_pad=False`).
    AvgExcludePad,
}

/// A square pooling window over NCHW maps: x [n, c, h, w] → y [n, c, out_h, out_w].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Window side.
    pub k: usize,
    pub stride: usize,
    /// Padding on every side.
    pub pad: usize,
}

impl Pool2dShape {
    /// Output height `⌊(h + 2·pad − k)/stride⌋ + 1`.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Elements of x.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Elements of y.
    pub fn y_len(&self) -> usize {
        self.n * self.c * self.out_h() * self.out_w()
    }
    /// Fails unless the window fits: `k ≥ 1`, `stride ≥ 1`, `pad < k`, `k ≤ h + 2·pad`.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 || self.stride == 0 || self.pad >= self.k || self.k > self.h + 2 * self.pad || self.k > self.w + 2 * self.pad {
            return Err(Error::invalid(format!("pooling: window does not fit {self:?}")));
        }
        Ok(())
    }
}

/// How a bilinear resize maps output pixels to input coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// PyTorch `interpolate(mode="bilinear", align_corners=False, antialias=False)`:
    /// `src = (dst + ½)·in/out − ½`, clamped at 0; `v = λ₀·a + λ₁·b`.
    HalfPixel,
    /// TensorFlow 1.x `resize_bilinear(align_corners=False)` as torch-fidelity
    /// reproduces it: `src = dst·in/out`; `v = a + (b − a)·λ`.
    Tf1,
}
