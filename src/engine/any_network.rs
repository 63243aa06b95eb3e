//! [`AnyNetwork`]: the network behind a model handle — a DiT-family [`AnyModel`] (SiT,
//! TiT, LightningDiT, DDT: forward, backward, training) or the forward-only EDM2 UNet
//! [`AnyEdm2`]. What every network does (evaluate, sample, describe its backend) is
//! here; what only a DiT does (parameters in a flat layout, saving, training) goes
//! through [`AnyNetwork::dit`], which refuses an EDM2 UNet with `Error::Unsupported`.

use super::{AnyBackend, AnyEdm2, AnyModel};
use crate::denoiser::Denoiser;
use crate::error::{Error, Result};

/// A DiT-family model or an EDM2 UNet, on any backend.
// One value per handle, made once and never moved in a loop: the variants stay inline.
#[allow(clippy::large_enum_variant)]
pub enum AnyNetwork {
    /// SiT / TiT / LightningDiT / DDT.
    Dit(AnyModel),
    /// The EDM2 UNet (forward only).
    Edm2(AnyEdm2),
}

impl From<AnyModel> for AnyNetwork {
    fn from(m: AnyModel) -> Self {
        AnyNetwork::Dit(m)
    }
}

impl From<AnyEdm2> for AnyNetwork {
    fn from(m: AnyEdm2) -> Self {
        AnyNetwork::Edm2(m)
    }
}

/// Why `what` cannot be done with an EDM2 UNet.
fn forward_only(what: &str) -> Error {
    Error::Unsupported(format!(
        "{what}: the model is an EDM2 UNet, and EDM2 is forward-only (sampling and ucgm_forward only; no training, parameter access or saving)"
    ))
}

impl AnyNetwork {
    /// The DiT-family model, or `Error::Unsupported` naming `what` for an EDM2 UNet.
    pub fn dit(&self, what: &str) -> Result<&AnyModel> {
        match self {
            AnyNetwork::Dit(m) => Ok(m),
            AnyNetwork::Edm2(_) => Err(forward_only(what)),
        }
    }

    /// [`AnyNetwork::dit`], mutably.
    pub fn dit_mut(&mut self, what: &str) -> Result<&mut AnyModel> {
        match self {
            AnyNetwork::Dit(m) => Ok(m),
            AnyNetwork::Edm2(_) => Err(forward_only(what)),
        }
    }

    /// The backend the network runs on (a clone sharing its pool / stream).
    pub fn backend(&self) -> AnyBackend {
        match self {
            AnyNetwork::Dit(m) => m.backend(),
            AnyNetwork::Edm2(m) => m.backend(),
        }
    }

    /// Bytes of parameter-sized state held on the backend.
    pub fn weight_bytes(&self) -> usize {
        match self {
            AnyNetwork::Dit(m) => m.weight_bytes(),
            AnyNetwork::Edm2(m) => m.weight_bytes(),
        }
    }

    /// Everything the network holds: weights plus the activation workspaces kept between
    /// calls (EDM2 allocates its activations per call: its weights).
    pub fn held_bytes(&self) -> usize {
        match self {
            AnyNetwork::Dit(m) => m.held_bytes(),
            AnyNetwork::Edm2(m) => m.weight_bytes(),
        }
    }

    /// Elements of one sample, C·H·W.
    pub fn image_len(&self) -> usize {
        self.sample_shape().iter().product()
    }

    /// Classifier-free guidance acts on the first this many output channels (None: all;
    /// LightningDiT: 3, as its reference).
    pub fn cfg_channels(&self) -> Option<usize> {
        match self {
            AnyNetwork::Dit(m) => m.config().arch.cfg_channels(),
            AnyNetwork::Edm2(_) => None,
        }
    }

    /// One evaluation F(x, t, y). x: `[B, C, H, W]`; t: `[B]`; labels: `[B]` in 0..=K;
    /// out: `[B, C, H, W]` (assign).
    pub fn forward(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        match self {
            AnyNetwork::Dit(m) => m.forward(x, t, labels, out),
            AnyNetwork::Edm2(m) => m.forward(x, t, labels, out),
        }
    }
}

impl Denoiser for AnyNetwork {
    fn sample_shape(&self) -> [usize; 3] {
        match self {
            AnyNetwork::Dit(m) => m.sample_shape(),
            AnyNetwork::Edm2(m) => m.sample_shape(),
        }
    }
    fn num_classes(&self) -> usize {
        match self {
            AnyNetwork::Dit(m) => Denoiser::num_classes(m),
            AnyNetwork::Edm2(m) => Denoiser::num_classes(m),
        }
    }
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        match self {
            AnyNetwork::Dit(m) => m.eval(x, t, labels, out),
            AnyNetwork::Edm2(m) => m.eval(x, t, labels, out),
        }
    }
}
