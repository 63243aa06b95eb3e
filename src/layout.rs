//! Parameter layout: one flat buffer per role (parameters, gradients, optimizer
//! moments, EMA copies), described once by a table `name -> (shape, offset)`.
//!
//! Names are the reference's PyTorch `state_dict` names, so converted official
//! checkpoints load without renaming. The order is block by block (embedders, then
//! `blocks.0.*`, `blocks.1.*`, …, then the final layer), and every Linear's weight is
//! immediately followed by its bias: a layer's gradient is one contiguous range, which
//! lets the backward pass hand a single mutable view `[weight | bias]` to the backend.
//! Frozen buffers (`pos_embed`, RoPE tables) are not parameters: they are computed.

use std::collections::HashMap;
use std::ops::Range;

use crate::model::config::{Arch, ModelConfig};

/// One named tensor inside a flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

impl ParamEntry {
    /// The element range of this tensor in the flat buffer.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The complete table for one model configuration.
#[derive(Clone, Debug)]
pub struct ParamLayout {
    entries: Vec<ParamEntry>,
    index: HashMap<String, usize>,
    total: usize,
}

impl ParamLayout {
    /// Builds the layout of a network (SiT, TiT, LightningDiT or DDT).
    pub fn for_config(cfg: &ModelConfig) -> Self {
        if let Arch::Ddt { .. } = cfg.arch {
            return Self::ddt(cfg);
        }
        let (d, k) = (cfg.hidden, cfg.num_classes);
        let mut b = Builder::default();
        b.push("x_embedder.proj.weight", vec![d, cfg.in_channels, cfg.patch, cfg.patch]);
        b.push("x_embedder.proj.bias", vec![d]);
        b.linear("t_embedder.mlp.0", 256, d);
        b.linear("t_embedder.mlp.2", d, d);
        b.push("y_embedder.embedding_table.weight", vec![k + 1, d]);
        let h = cfg.mlp_hidden();
        let norm_w = cfg.arch.has_norm_weights();
        for i in 0..cfg.depth {
            let p = format!("blocks.{i}");
            if norm_w {
                b.push(&format!("{p}.norm1.weight"), vec![d]);
                b.push(&format!("{p}.norm2.weight"), vec![d]);
            }
            b.linear(&format!("{p}.adaLN_modulation.1"), d, 6 * d);
            b.linear(&format!("{p}.attn.qkv"), d, 3 * d);
            b.linear(&format!("{p}.attn.proj"), d, d);
            if cfg.arch.uses_swiglu() {
                b.linear(&format!("{p}.mlp.w12"), d, 2 * h);
                b.linear(&format!("{p}.mlp.w3"), h, d);
            } else {
                b.linear(&format!("{p}.mlp.fc1"), d, h);
                b.linear(&format!("{p}.mlp.fc2"), h, d);
            }
        }
        if norm_w {
            b.push("final_layer.norm_final.weight", vec![d]);
        }
        b.linear("final_layer.adaLN_modulation.1", d, 2 * d);
        b.linear("final_layer.linear", d, cfg.patch_dim());
        b.finish()
    }

    /// DDT's layout. Bias-free Linears have no `.bias` entry; within a block `mlp.w1` and
    /// `mlp.w3` are adjacent ([w1; w3] is one [2M, D] weight: the SwiGLU's [x₁ | x₂]),
    /// as are `attn.q_norm.weight` and `attn.k_norm.weight` ([2·d_h]).
    fn ddt(cfg: &ModelConfig) -> Self {
        let (d, k, pd, h, dh) = (cfg.hidden, cfg.num_classes, cfg.patch_dim(), cfg.mlp_hidden(), cfg.head_dim());
        let mut b = Builder::default();
        b.linear("x_embedder.proj", pd, d);
        b.linear("s_embedder.proj", pd, d);
        b.linear("t_embedder.mlp.0", 256, d);
        b.linear("t_embedder.mlp.2", d, d);
        b.push("y_embedder.embedding_table.weight", vec![k + 1, d]);
        for i in 0..cfg.depth {
            let p = format!("blocks.{i}");
            b.push(&format!("{p}.norm1.weight"), vec![d]);
            b.push(&format!("{p}.norm2.weight"), vec![d]);
            b.linear(&format!("{p}.adaLN_modulation.0"), d, 6 * d);
            b.push(&format!("{p}.attn.qkv.weight"), vec![3 * d, d]);
            b.push(&format!("{p}.attn.q_norm.weight"), vec![dh]);
            b.push(&format!("{p}.attn.k_norm.weight"), vec![dh]);
            b.linear(&format!("{p}.attn.proj"), d, d);
            b.push(&format!("{p}.mlp.w1.weight"), vec![h, d]);
            b.push(&format!("{p}.mlp.w3.weight"), vec![h, d]);
            b.push(&format!("{p}.mlp.w2.weight"), vec![d, h]);
        }
        b.linear("final_layer.adaLN_modulation.0", d, 2 * d);
        b.linear("final_layer.linear", d, pd);
        b.finish()
    }

    /// The range of one tensor; panics on an unknown name (layout names are internal).
    pub fn range_of(&self, name: &str) -> Range<usize> {
        self.get(name).unwrap_or_else(|| panic!("layout has no tensor {name}")).range()
    }

    /// The range spanning the adjacent tensors `first` and `second` (e.g. DDT's w1 | w3).
    pub fn span(&self, first: &str, second: &str) -> Range<usize> {
        let (a, b) = (self.range_of(first), self.range_of(second));
        assert_eq!(a.end, b.start, "{first} and {second} are not adjacent");
        a.start..b.end
    }

    /// All entries in buffer order.
    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    /// Total number of elements (= trainable parameter count).
    pub fn total(&self) -> usize {
        self.total
    }

    /// Looks an entry up by its reference name.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// Offset of a tensor; panics on an unknown name (layout names are internal constants).
    pub fn offset(&self, name: &str) -> usize {
        self.get(name).unwrap_or_else(|| panic!("layout has no tensor {name}")).offset
    }

    /// Range `[weight | bias]` of the Linear called `prefix`.
    pub fn linear_range(&self, prefix: &str) -> Range<usize> {
        let w = self.get(&format!("{prefix}.weight")).unwrap_or_else(|| panic!("layout has no linear {prefix}"));
        let b = self.get(&format!("{prefix}.bias")).unwrap_or_else(|| panic!("layout has no bias {prefix}"));
        debug_assert_eq!(w.offset + w.len, b.offset);
        w.offset..b.offset + b.len
    }
}

#[derive(Default)]
struct Builder {
    entries: Vec<ParamEntry>,
    total: usize,
}

impl Builder {
    fn push(&mut self, name: &str, shape: Vec<usize>) {
        let len = shape.iter().product();
        self.entries.push(ParamEntry {
            name: name.to_string(),
            shape,
            offset: self.total,
            len,
        });
        self.total += len;
    }
    fn linear(&mut self, prefix: &str, fan_in: usize, fan_out: usize) {
        self.push(&format!("{prefix}.weight"), vec![fan_out, fan_in]);
        self.push(&format!("{prefix}.bias"), vec![fan_out]);
    }
    fn finish(self) -> ParamLayout {
        let index = self.entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        ParamLayout {
            entries: self.entries,
            index,
            total: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_layout_has_reference_names_and_counts() {
        let l = ParamLayout::for_config(&ModelConfig::reference_tiny(Arch::Sit));
        assert_eq!(l.entries().len(), 31);
        assert_eq!(l.get("blocks.1.mlp.fc2.weight").unwrap().shape, vec![64, 256]);
        let t = ParamLayout::for_config(&ModelConfig::reference_tiny(Arch::Tit));
        assert_eq!(t.get("blocks.0.mlp.w12.weight").unwrap().shape, vec![340, 64]);
        let r = t.linear_range("blocks.0.attn.qkv");
        assert_eq!(r.len(), 192 * 64 + 192);
    }

    #[test]
    fn named_sizes_match_reference_parameter_counts() {
        // SiT-XL/2: 674.82M trainable (spec §4.4); SiT-S/2: 32.86M trainable.
        let xl = ModelConfig::from_name("SiT-XL/2", 32, 4, 1000).unwrap();
        let n = ParamLayout::for_config(&xl).total() as f64 / 1e6;
        assert!((n - 674.82).abs() < 0.01, "{n}");
        let s = ModelConfig::from_name("SiT-S/2", 32, 4, 1000).unwrap();
        let n = ParamLayout::for_config(&s).total() as f64 / 1e6;
        assert!((n - 32.86).abs() < 0.01, "{n}");
    }
}
