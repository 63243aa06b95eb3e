//! The shape of an AutoencoderKL (latent-diffusion VAE): levels and their channels,
//! ResNet blocks per level, latent channels, GroupNorm groups, and the optional mid-block
//! attention and quant convolutions. Inferred from a weights file's tensor shapes (under
//! the canonical diffusers names, see [`super::naming`]); every derived size is computed
//! here.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// GroupNorm epsilon of every norm of the VAE.
pub const GN_EPS: f32 = 1e-6;

/// Groups of every GroupNorm when the file does not say (LDM's `Normalize` and the
/// diffusers default).
pub const DEFAULT_GROUPS: usize = 32;

/// An AutoencoderKL configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaeConfig {
    /// Image channels in (3 for RGB).
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Channels of each level, finest first (SD-VAE: 128, 256, 512, 512).
    pub block_channels: Vec<usize>,
    /// ResNet blocks per encoder level (the decoder has one more per level).
    pub layers_per_block: usize,
    /// Latent channels z (the encoder outputs 2z: mean and log-variance).
    pub latent_channels: usize,
    /// GroupNorm groups (every norm).
    pub groups: usize,
    /// Single-head self-attention between the two mid-block ResNets.
    pub mid_attention: bool,
    /// 1×1 `quant_conv` (2z → 2z) after the encoder and `post_quant_conv` (z → z) before
    /// the decoder.
    pub use_quant_conv: bool,
}

impl VaeConfig {
    /// The SD-VAE (`stabilityai/sd-vae-ft-ema`): f = 8, z = 4.
    pub fn sd_vae() -> Self {
        VaeConfig {
            in_channels: 3,
            out_channels: 3,
            block_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            groups: 32,
            mid_attention: true,
            use_quant_conv: true,
        }
    }

    /// VA-VAE (LightningDiT `vavae_f16d32`: ch 128, ch_mult (1, 1, 2, 2, 4), 2 blocks,
    /// z 32): f = 16.
    pub fn va_vae() -> Self {
        VaeConfig {
            in_channels: 3,
            out_channels: 3,
            block_channels: vec![128, 128, 256, 256, 512],
            layers_per_block: 2,
            latent_channels: 32,
            groups: 32,
            mid_attention: true,
            use_quant_conv: true,
        }
    }

    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.block_channels.len()
    }

    /// Spatial downsampling factor 2^(levels − 1).
    pub fn downsample_factor(&self) -> usize {
        1 << self.levels().saturating_sub(1)
    }

    /// Channels of the mid block (the last level's).
    pub fn mid_channels(&self) -> usize {
        *self.block_channels.last().unwrap_or(&0)
    }

    /// Checks that the configuration describes a network that can run: at least one
    /// level, non-zero sizes, every channel count divisible by the group count.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("VAE config: {m}")));
        if self.block_channels.is_empty() || self.levels() > 12 {
            return bad(format!("{} levels (need 1..=12)", self.levels()));
        }
        if self.in_channels == 0 || self.out_channels == 0 || self.latent_channels == 0 || self.layers_per_block == 0 || self.groups == 0 {
            return bad(format!("zero size in {self:?}"));
        }
        for &c in &self.block_channels {
            if c == 0 || c % self.groups != 0 {
                return bad(format!("{c} channels do not split into {} GroupNorm groups", self.groups));
            }
        }
        Ok(())
    }

    /// Infers the configuration from the canonical (diffusers-named) tensor shapes;
    /// `groups` from the file's metadata when it says, else [`DEFAULT_GROUPS`].
    pub fn from_tensor_shapes(shapes: &HashMap<String, Vec<usize>>, groups: Option<usize>) -> Result<Self> {
        let get = |name: &str| -> Result<&Vec<usize>> {
            shapes
                .get(name)
                .ok_or_else(|| Error::Weights(format!("VAE weights: tensor {name:?} is missing")))
        };
        let dim = |name: &str, axis: usize| -> Result<usize> {
            let s = get(name)?;
            s.get(axis)
                .copied()
                .ok_or_else(|| Error::Weights(format!("VAE weights: tensor {name:?} has shape {s:?}")))
        };
        let mut block_channels = Vec::new();
        while shapes.contains_key(&format!("encoder.down_blocks.{}.resnets.0.conv1.weight", block_channels.len())) {
            block_channels.push(dim(&format!("encoder.down_blocks.{}.resnets.0.conv1.weight", block_channels.len()), 0)?);
        }
        if block_channels.is_empty() {
            return Err(Error::Weights(
                "VAE weights: no encoder level (encoder.down_blocks.0.resnets.0.conv1.weight)".into(),
            ));
        }
        let mut layers = 0;
        while shapes.contains_key(&format!("encoder.down_blocks.0.resnets.{layers}.conv1.weight")) {
            layers += 1;
        }
        let enc_out = dim("encoder.conv_out.weight", 0)?;
        if enc_out % 2 != 0 {
            return Err(Error::Weights(format!(
                "VAE weights: encoder.conv_out has {enc_out} output channels (need 2·z)"
            )));
        }
        let cfg = VaeConfig {
            in_channels: dim("encoder.conv_in.weight", 1)?,
            out_channels: dim("decoder.conv_out.weight", 0)?,
            block_channels,
            layers_per_block: layers,
            latent_channels: enc_out / 2,
            groups: groups.unwrap_or(DEFAULT_GROUPS),
            mid_attention: shapes.contains_key("encoder.mid_block.attentions.0.to_q.weight"),
            use_quant_conv: shapes.contains_key("quant_conv.weight"),
        };
        cfg.validate()
            .map_err(|e| Error::Weights(format!("VAE weights imply an impossible network: {e}")))?;
        Ok(cfg)
    }

    /// Every tensor of the network under its canonical diffusers name with its shape, in
    /// the order the parameter buffer holds them. Attention q/k/v are [C, C] (the LDM
    /// files' [C, C, 1, 1] are accepted as the same data).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let conv = |out: &mut Vec<(String, Vec<usize>)>, name: String, co: usize, ci: usize, k: usize| {
            out.push((format!("{name}.weight"), vec![co, ci, k, k]));
            out.push((format!("{name}.bias"), vec![co]));
        };
        let norm = |out: &mut Vec<(String, Vec<usize>)>, name: String, c: usize| {
            out.push((format!("{name}.weight"), vec![c]));
            out.push((format!("{name}.bias"), vec![c]));
        };
        let resnet = |out: &mut Vec<(String, Vec<usize>)>, p: String, ci: usize, co: usize| {
            norm(out, format!("{p}.norm1"), ci);
            conv(out, format!("{p}.conv1"), co, ci, 3);
            norm(out, format!("{p}.norm2"), co);
            conv(out, format!("{p}.conv2"), co, co, 3);
            if ci != co {
                conv(out, format!("{p}.conv_shortcut"), co, ci, 1);
            }
        };
        let mid = |out: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            resnet(out, format!("{p}.mid_block.resnets.0"), c, c);
            if self.mid_attention {
                let a = format!("{p}.mid_block.attentions.0");
                norm(out, format!("{a}.group_norm"), c);
                // q, k, v weights then their biases: one [3C, C] | [3C] Linear.
                for part in ["to_q", "to_k", "to_v"] {
                    out.push((format!("{a}.{part}.weight"), vec![c, c]));
                }
                for part in ["to_q", "to_k", "to_v"] {
                    out.push((format!("{a}.{part}.bias"), vec![c]));
                }
                out.push((format!("{a}.to_out.0.weight"), vec![c, c]));
                out.push((format!("{a}.to_out.0.bias"), vec![c]));
            }
            resnet(out, format!("{p}.mid_block.resnets.1"), c, c);
        };
        let bc = &self.block_channels;
        let n = bc.len();
        let (z, cm) = (self.latent_channels, self.mid_channels());
        // Encoder.
        conv(&mut out, "encoder.conv_in".into(), bc[0], self.in_channels, 3);
        let mut prev = bc[0];
        for (i, &c) in bc.iter().enumerate() {
            for j in 0..self.layers_per_block {
                resnet(&mut out, format!("encoder.down_blocks.{i}.resnets.{j}"), if j == 0 { prev } else { c }, c);
            }
            if i + 1 < n {
                conv(&mut out, format!("encoder.down_blocks.{i}.downsamplers.0.conv"), c, c, 3);
            }
            prev = c;
        }
        mid(&mut out, "encoder", cm);
        norm(&mut out, "encoder.conv_norm_out".into(), cm);
        conv(&mut out, "encoder.conv_out".into(), 2 * z, cm, 3);
        if self.use_quant_conv {
            conv(&mut out, "quant_conv".into(), 2 * z, 2 * z, 1);
            conv(&mut out, "post_quant_conv".into(), z, z, 1);
        }
        // Decoder.
        conv(&mut out, "decoder.conv_in".into(), cm, z, 3);
        mid(&mut out, "decoder", cm);
        let mut prev = cm;
        for i in 0..n {
            let c = bc[n - 1 - i];
            for j in 0..=self.layers_per_block {
                resnet(&mut out, format!("decoder.up_blocks.{i}.resnets.{j}"), if j == 0 { prev } else { c }, c);
            }
            if i + 1 < n {
                conv(&mut out, format!("decoder.up_blocks.{i}.upsamplers.0.conv"), c, c, 3);
            }
            prev = c;
        }
        norm(&mut out, "decoder.conv_norm_out".into(), bc[0]);
        conv(&mut out, "decoder.conv_out".into(), self.out_channels, bc[0], 3);
        out
    }

    /// Elements of the CPU convolutions' smallest scratch (one output row: Winograd tiles
    /// of 8·(c_in + c_out) values per pixel, im2col columns of 9·c_in) at the widest
    /// level of a `w`-pixel-wide image: bounded before a call, since the ops cannot fail.
    pub fn conv_row_scratch(&self, w: usize) -> usize {
        let bc = &self.block_channels;
        (0..bc.len())
            .map(|l| {
                let c = bc[l].max(bc[l.saturating_sub(1)]).max(bc[(l + 1).min(bc.len() - 1)]);
                (w >> l).saturating_mul(16 * c)
            })
            .max()
            .unwrap_or(0)
    }

    /// Elements of one image's largest activation (the workspace buffers' size), for an
    /// image of `h`×`w` pixels: per level the widest channel count that lives at its
    /// resolution, the image and latent ends, and the mid attention's q|k|v rows.
    pub fn max_activation(&self, h: usize, w: usize) -> usize {
        let bc = &self.block_channels;
        let n = bc.len();
        let mut m = self.in_channels.max(self.out_channels) * h * w;
        for l in 0..n {
            let hw = (h >> l) * (w >> l);
            let c = bc[l].max(bc[l.saturating_sub(1)]).max(bc[(l + 1).min(n - 1)]);
            m = m.max(c * hw);
        }
        let f = self.downsample_factor();
        let hw = (h / f) * (w / f);
        m.max(2 * self.latent_channels * hw).max(3 * self.mid_channels() * hw)
    }
}
