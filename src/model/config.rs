//! Network configuration: the families (SiT, TiT, and the pre-trained LightningDiT and
//! DDT), the named sizes (S/B/L/XL with patch 1/2/4; LightningDiT also 1p0B/1p6B; DDT
//! XL), and any custom shape. Derived sizes (tokens, head dim, MLP width) are computed
//! here and nowhere else.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Network family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// Plain DiT with continuous time: LayerNorm (no affine), GELU-tanh MLP, no RoPE.
    Sit,
    /// UCGM's TiT: RMSNorm, qk-norm, 2-D RoPE, SwiGLU MLP.
    Tit,
    /// LightningDiT (reference `networks/lightningdit.py`, the released XL/1 options):
    /// TiT's layers with a learned RMSNorm weight (norm1, norm2, final norm), qk-norm off,
    /// the label embedding always used (K + 1 rows, row K = null).
    LightningDit,
    /// DDT (reference `networks/ddt.py`): the first `encoder_depth` of the `depth` blocks
    /// are encoder blocks over `s_embedder` tokens (modulated per image by SiLU(t + y));
    /// the rest are decoder blocks over `x_embedder` tokens, modulated per token by
    /// SiLU(t + s). RMSNorm and qk RMSNorm with weights, bias-free SwiGLU and qkv, 2-D
    /// RoPE on positions linspace(0, 16, L), no position embedding.
    Ddt {
        /// Encoder blocks (`num_encoder_blocks`); XL: 22 of 28.
        encoder_depth: usize,
    },
}

impl Arch {
    /// Reference name prefix ("SiT", "TiT", "LightningDiT", "DDT").
    pub fn name(self) -> &'static str {
        match self {
            Arch::Sit => "SiT",
            Arch::Tit => "TiT",
            Arch::LightningDit => "LightningDiT",
            Arch::Ddt { .. } => "DDT",
        }
    }

    /// Whether the blocks use 2-D RoPE.
    pub fn uses_rope(self) -> bool {
        !matches!(self, Arch::Sit)
    }

    /// Whether the MLP is a SwiGLU (first Linear [2M, D] = [x₁ | x₂]).
    pub fn uses_swiglu(self) -> bool {
        !matches!(self, Arch::Sit)
    }

    /// Whether the RMSNorms carry a learned weight.
    pub fn has_norm_weights(self) -> bool {
        matches!(self, Arch::LightningDit | Arch::Ddt { .. })
    }

    /// Max period of the sinusoidal timestep features (DDT: 10; the others 10000).
    pub fn time_max_period(self) -> f32 {
        match self {
            Arch::Ddt { .. } => 10.0,
            _ => 10000.0,
        }
    }

    /// Classifier-free guidance acts on the first this many output channels (None: all).
    /// LightningDiT's `forward_with_cfg` guides channels 0–2 only, the setting its
    /// released FIDs were measured with; every other network guides all channels.
    pub fn cfg_channels(self) -> Option<usize> {
        match self {
            Arch::LightningDit => Some(3),
            _ => None,
        }
    }
}

/// Complete description of a network's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Spatial side of the (square) input, e.g. 32 for a 4×32×32 latent.
    pub input_size: usize,
    /// Input (= output) channels.
    pub in_channels: usize,
    /// Patch side p.
    pub patch: usize,
    /// Hidden width D.
    pub hidden: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads (D must be divisible by it).
    pub heads: usize,
    /// Number of classes K; the label table has K + 1 rows (row K = null class).
    pub num_classes: usize,
}

/// Most tokens per image a configuration may have.
pub const MAX_TOKENS: usize = 1 << 16;

impl ModelConfig {
    /// A named size: `S`, `B`, `L`, `XL` (case-insensitive; LightningDiT also `1p0B` and
    /// `1p6B`; DDT only `XL`, with 22 encoder blocks whatever `arch` says), with patch 1, 2
    /// or 4.
    pub fn named(arch: Arch, size: &str, patch: usize, input_size: usize, in_channels: usize, num_classes: usize) -> Result<Self> {
        let up = size.to_ascii_uppercase();
        let (depth, hidden, heads) = match (up.as_str(), arch) {
            ("S", Arch::Sit | Arch::Tit | Arch::LightningDit) => (12, 384, 6),
            ("B", Arch::Sit | Arch::Tit | Arch::LightningDit) => (12, 768, 12),
            ("L", Arch::Sit | Arch::Tit | Arch::LightningDit) => (24, 1024, 16),
            ("XL", _) => (28, 1152, 16),
            ("1P0B", Arch::LightningDit) => (24, 1536, 24),
            ("1P6B", Arch::LightningDit) => (28, 1792, 28),
            (other, Arch::Ddt { .. }) => return Err(Error::invalid(format!("unknown DDT size {other:?} (the reference defines XL)"))),
            (other, Arch::LightningDit) => {
                return Err(Error::invalid(format!(
                    "unknown LightningDiT size {other:?} (expected S, B, L, XL, 1p0B or 1p6B)"
                )))
            }
            (other, _) => return Err(Error::invalid(format!("unknown model size {other:?} (expected S, B, L or XL)"))),
        };
        let arch = match arch {
            Arch::Ddt { .. } => Arch::Ddt { encoder_depth: 22 },
            a => a,
        };
        if ![1, 2, 4].contains(&patch) {
            return Err(Error::invalid(format!("named sizes use patch 1, 2 or 4, got {patch}")));
        }
        let cfg = ModelConfig {
            arch,
            input_size,
            in_channels,
            patch,
            hidden,
            depth,
            heads,
            num_classes,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a reference model name such as `TiT-XL/2`, `SiT-S/2`, `LightningDiT-XL/1`
    /// or `DDT-XL/2`.
    pub fn from_name(name: &str, input_size: usize, in_channels: usize, num_classes: usize) -> Result<Self> {
        let bad = || Error::invalid(format!("model name {name:?}: expected e.g. TiT-XL/2, SiT-S/2, LightningDiT-XL/1 or DDT-XL/2"));
        let (fam, rest) = name.split_once('-').ok_or_else(bad)?;
        let (size, patch) = rest.split_once('/').ok_or_else(bad)?;
        let arch = match fam.to_ascii_lowercase().as_str() {
            "sit" => Arch::Sit,
            "tit" => Arch::Tit,
            "lightningdit" => Arch::LightningDit,
            "ddt" => Arch::Ddt { encoder_depth: 22 },
            _ => return Err(bad()),
        };
        let patch: usize = patch.parse().map_err(|_| bad())?;
        Self::named(arch, size, patch, input_size, in_channels, num_classes)
    }

    /// The tiny network of the reference tensors: 4×8×8 input, patch 2, D 64, depth 2,
    /// 4 heads, 10 classes.
    pub fn reference_tiny(arch: Arch) -> Self {
        ModelConfig {
            arch,
            input_size: 8,
            in_channels: 4,
            patch: 2,
            hidden: 64,
            depth: 2,
            heads: 4,
            num_classes: 10,
        }
    }

    /// Checks every shape constraint, with a message naming the violated one.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::invalid(m));
        if self.input_size == 0 || self.in_channels == 0 || self.patch == 0 || self.hidden == 0 || self.depth == 0 || self.heads == 0 {
            return fail(format!("model config has a zero size: {self:?}"));
        }
        if self.num_classes == 0 {
            return fail("num_classes must be at least 1".into());
        }
        if !self.input_size.is_multiple_of(self.patch) {
            return fail(format!("input size {} is not divisible by patch {}", self.input_size, self.patch));
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return fail(format!("hidden {} is not divisible by heads {}", self.hidden, self.heads));
        }
        if !self.hidden.is_multiple_of(4) {
            return fail(format!("hidden {} must be divisible by 4 (2-D sin-cos position embedding)", self.hidden));
        }
        if self.arch.uses_rope() && !self.head_dim().is_multiple_of(4) {
            return fail(format!("{} head dim {} must be divisible by 4 (2-D RoPE)", self.arch.name(), self.head_dim()));
        }
        if let Arch::Ddt { encoder_depth } = self.arch {
            if encoder_depth > self.depth {
                return fail(format!("DDT encoder depth {encoder_depth} exceeds the {} blocks", self.depth));
            }
        }
        let big = 1usize << 20;
        if self.input_size > 4096 || self.in_channels > 4096 || self.hidden > big || self.depth > 1024 || self.num_classes > big {
            return fail(format!("model config is implausibly large: {self:?}"));
        }
        // The position tables (T × hidden) and every activation grow with the tokens, not
        // with the weights a file holds: a tiny file must not claim a 4-million-token image.
        // 65 536 tokens is a 256 × 256 patch grid (a 2048 px image through an f8 VAE at
        // patch 1), far beyond any released model (≤ 4 096).
        if self.tokens() > MAX_TOKENS {
            return fail(format!(
                "{} tokens per image ((input size {} / patch {})²) exceed the limit of {MAX_TOKENS}",
                self.tokens(),
                self.input_size,
                self.patch
            ));
        }
        Ok(())
    }

    /// Tokens per side, L = input_size / patch.
    pub fn grid(&self) -> usize {
        self.input_size / self.patch
    }
    /// Tokens per image, T = L².
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Per-head width d_h = D / H.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
    /// MLP hidden width: 4D for SiT, int(2/3·4D) for the SwiGLUs of TiT and LightningDiT,
    /// int(2·4D/3) for DDT's.
    pub fn mlp_hidden(&self) -> usize {
        match self.arch {
            Arch::Sit => 4 * self.hidden,
            Arch::Tit | Arch::LightningDit => (2.0 / 3.0 * (4 * self.hidden) as f64) as usize,
            Arch::Ddt { .. } => 2 * (4 * self.hidden) / 3,
        }
    }
    /// Values per token in a patch: C·p².
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.patch * self.patch
    }
    /// Elements of one image, C·H·W.
    pub fn image_len(&self) -> usize {
        self.in_channels * self.input_size * self.input_size
    }
    /// Whether the class embedding is added to the conditioning (TiT needs K ≥ 2).
    pub fn uses_labels(&self) -> bool {
        match self.arch {
            Arch::Tit => self.num_classes >= 2,
            _ => true,
        }
    }
    /// Encoder blocks of a DDT (0 for the other families).
    pub fn encoder_depth(&self) -> usize {
        match self.arch {
            Arch::Ddt { encoder_depth } => encoder_depth,
            _ => 0,
        }
    }
    /// Whether the model adds the sin-cos position embedding (all but DDT).
    pub fn uses_pos_embed(&self) -> bool {
        !matches!(self.arch, Arch::Ddt { .. })
    }
    /// Counted FLOPs of one forward pass per image (matrix products and attention).
    pub fn forward_flops(&self) -> f64 {
        let (d, t) = (self.hidden as f64, self.tokens() as f64);
        let mlp = self.mlp_hidden() as f64;
        let mlp_in = if self.arch.uses_swiglu() { 2.0 * mlp } else { mlp };
        let per_block = 2.0 * t * (3.0 * d * d + d * d + d * mlp_in + mlp * d) + 4.0 * t * t * d + 2.0 * 6.0 * d * d;
        let embed = 2.0 * t * d * self.patch_dim() as f64 + 2.0 * t * d * self.patch_dim() as f64 + 2.0 * (256.0 * d + d * d) + 2.0 * 2.0 * d * d;
        per_block * self.depth as f64 + embed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sizes_and_derived_values() {
        let s2 = ModelConfig::from_name("SiT-S/2", 32, 4, 1000).unwrap();
        assert_eq!((s2.depth, s2.hidden, s2.heads, s2.tokens()), (12, 384, 6, 256));
        let t = ModelConfig::from_name("TiT-XL/2", 32, 4, 1000).unwrap();
        assert_eq!(t.mlp_hidden(), 3072);
        assert_eq!(ModelConfig::from_name("TiT-L/2", 32, 4, 1000).unwrap().mlp_hidden(), 2730);
        assert_eq!(ModelConfig::reference_tiny(Arch::Tit).mlp_hidden(), 170);
        assert!(ModelConfig::from_name("TiT-M/2", 32, 4, 10).is_err());
        assert!(ModelConfig::from_name("TiT-S/3", 32, 4, 10).is_err());
        // DiT-S/2 forward ≈ 12.1 GFLOP (design card).
        let g = s2.forward_flops() / 1e9;
        assert!((g - 12.1).abs() < 0.3, "{g}");
    }

    /// `forward_flops` counts 2 FLOPs per multiply-add, per image. The DiT paper (Peebles &
    /// Xie 2023, Table 4) gives multiply-adds ("Gflops") per 256 px image (4×32×32 latent):
    /// S/2 6.06, B/2 23.01, L/2 80.71, XL/2 118.64 — so a DiT-XL/2 forward is ≈ 237.3 GFLOP
    /// per image, the "237 GFLOP" the CUDA benchmark issue quotes. device.md's torch.compile
    /// row agrees: 466 TFLOP/s × 130.4 ms / 256 images = 237.4 GFLOP per image.
    #[test]
    fn forward_flops_match_the_published_dit_numbers() {
        for (name, dit_gmacs) in [("SiT-S/2", 6.06), ("SiT-B/2", 23.01), ("SiT-L/2", 80.71), ("SiT-XL/2", 118.64)] {
            let cfg = ModelConfig::from_name(name, 32, 4, 1000).unwrap();
            let gflop = cfg.forward_flops() / 1e9;
            let want = 2.0 * dit_gmacs;
            assert!(
                (gflop / want - 1.0).abs() < 0.01,
                "{name}: counted {gflop:.2} GFLOP per image, DiT paper 2×{dit_gmacs} = {want:.2}"
            );
        }
        let xl2 = ModelConfig::from_name("SiT-XL/2", 32, 4, 1000).unwrap().forward_flops();
        assert!((xl2 / 237e9 - 1.0).abs() < 0.01, "{xl2}");
    }
}
