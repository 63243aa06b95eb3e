//! The AutoencoderKL forward pass over a backend, written once: ResNet blocks, the
//! stride-2 downsample with its bottom/right pad, nearest ×2 upsample + conv, the
//! single-head mid attention, GroupNorm + SiLU, and the encoder / decoder built from them.
//!
//! Activations live in three workspace buffers `x`, `t1`, `t2` of
//! [`super::VaeConfig::max_activation`] elements per image; every layer reads the
//! current activation from `x` and leaves its output there.

use std::collections::HashMap;
use std::ops::Range;

use super::config::{VaeConfig, GN_EPS};
use crate::backend::{AttnDims, Backend, Conv2dShape};
use crate::error::Result;

/// Where each canonical tensor lives in the parameter buffer.
pub struct ParamIndex {
    ranges: HashMap<String, Range<usize>>,
    total: usize,
}

impl ParamIndex {
    /// Offsets of [`VaeConfig::tensor_shapes`] laid out one after the other.
    pub fn new(cfg: &VaeConfig) -> Self {
        let mut ranges = HashMap::new();
        let mut off = 0;
        for (name, shape) in cfg.tensor_shapes() {
            let len: usize = shape.iter().product();
            ranges.insert(name, off..off + len);
            off += len;
        }
        ParamIndex { ranges, total: off }
    }

    /// Total elements.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The range of a canonical tensor.
    pub fn get(&self, name: &str) -> Range<usize> {
        self.ranges
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("VAE parameter {name} not in the layout"))
    }
}

/// The three workspace buffers and the current activation's shape [nb, c, h, w] in `x`.
pub struct Work<B: Backend> {
    pub x: B::Buf,
    pub t1: B::Buf,
    pub t2: B::Buf,
    pub nb: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl<B: Backend> Work<B> {
    fn len(&self) -> usize {
        self.nb * self.c * self.h * self.w
    }
}

/// The network's parameters and layout on a backend.
pub struct Net<'a, B: Backend> {
    pub cfg: &'a VaeConfig,
    pub idx: &'a ParamIndex,
    pub params: &'a B::Buf,
    pub be: &'a B,
}

impl<B: Backend> Net<'_, B> {
    fn p(&self, name: &str) -> B::Src<'_> {
        self.be.src(self.params, self.idx.get(name))
    }

    /// dst = conv(src) with layer `name` (k×k, stride, pads t/b/l/r); returns (c_out, oh, ow).
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        name: &str,
        src: &B::Buf,
        dst: &mut B::Buf,
        nb: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pads: [usize; 4],
    ) -> (usize, usize) {
        let s = Conv2dShape::padded(nb, c_in, h, w, c_out, (k, k), stride, pads);
        let be = self.be;
        let wr = self.idx.get(&format!("{name}.weight"));
        let br = self.idx.get(&format!("{name}.bias"));
        be.conv2d_fwd(
            be.src(src, 0..s.x_len()),
            be.src(self.params, wr),
            Some(be.src(self.params, br)),
            be.dst(dst, 0..s.y_len()),
            &s,
        );
        (s.out_h(), s.out_w())
    }

    /// dst = GN(src) (+ SiLU) with norm `name`; src/dst: [nb, c, hw].
    #[allow(clippy::too_many_arguments)]
    fn norm(&self, name: &str, src: &B::Buf, dst: &mut B::Buf, nb: usize, c: usize, hw: usize, silu: bool) {
        let be = self.be;
        let len = nb * c * hw;
        be.group_norm_fwd(
            be.src(src, 0..len),
            self.p(&format!("{name}.weight")),
            self.p(&format!("{name}.bias")),
            be.dst(dst, 0..len),
            nb,
            c,
            hw,
            self.cfg.groups,
            GN_EPS,
            silu,
        );
    }

    /// x ← ResnetBlock(x) with c_out output channels.
    fn resnet(&self, p: &str, wk: &mut Work<B>, c_out: usize) {
        let (nb, ci, h, w) = (wk.nb, wk.c, wk.h, wk.w);
        let hw = h * w;
        self.norm(&format!("{p}.norm1"), &wk.x, &mut wk.t1, nb, ci, hw, true);
        self.conv(&format!("{p}.conv1"), &wk.t1, &mut wk.t2, nb, ci, h, w, c_out, 3, 1, [1; 4]);
        self.norm(&format!("{p}.norm2"), &wk.t2, &mut wk.t1, nb, c_out, hw, true);
        self.conv(&format!("{p}.conv2"), &wk.t1, &mut wk.t2, nb, c_out, h, w, c_out, 3, 1, [1; 4]);
        let out_len = nb * c_out * hw;
        if ci != c_out {
            self.conv(&format!("{p}.conv_shortcut"), &wk.x, &mut wk.t1, nb, ci, h, w, c_out, 1, 1, [0; 4]);
            self.be.add_assign(self.be.src(&wk.t1, 0..out_len), self.be.dst(&mut wk.t2, 0..out_len));
        } else {
            self.be.add_assign(self.be.src(&wk.x, 0..out_len), self.be.dst(&mut wk.t2, 0..out_len));
        }
        std::mem::swap(&mut wk.x, &mut wk.t2);
        wk.c = c_out;
    }

    /// x ← x + Attention(GN(x)): one head of width C over the h·w tokens.
    fn attention(&self, p: &str, wk: &mut Work<B>) {
        let be = self.be;
        let (nb, c, hw) = (wk.nb, wk.c, wk.h * wk.w);
        let len = nb * c * hw;
        self.norm(&format!("{p}.group_norm"), &wk.x, &mut wk.t1, nb, c, hw, false);
        // NCHW → token rows [nb·hw, C].
        be.transpose_batched(be.src(&wk.t1, 0..len), be.dst(&mut wk.t2, 0..len), nb, c, hw);
        // q | k | v rows [nb·hw, 3C] from the packed [Wq; Wk; Wv | bq; bk; bv] Linear.
        let qkv_start = self.idx.get(&format!("{p}.to_q.weight")).start;
        let qkv = be.src(self.params, qkv_start..qkv_start + 3 * c * c + 3 * c);
        be.linear_fwd(be.src(&wk.t2, 0..len), qkv, true, be.dst(&mut wk.t1, 0..3 * len), nb * hw, c, 3 * c);
        let dims = AttnDims {
            batch: nb,
            tokens: hw,
            heads: 1,
            head_dim: c,
            qk_norm: false,
            rope: false,
        };
        let empty = be.src(self.params, 0..0);
        be.attention_fwd(
            be.src(&wk.t1, 0..3 * len),
            empty,
            be.src(self.params, 0..0),
            be.dst(&mut wk.t2, 0..len),
            None,
            dims,
        );
        let out_start = self.idx.get(&format!("{p}.to_out.0.weight")).start;
        let proj = be.src(self.params, out_start..out_start + c * c + c);
        be.linear_fwd(be.src(&wk.t2, 0..len), proj, true, be.dst(&mut wk.t1, 0..len), nb * hw, c, c);
        // Tokens → NCHW, added to the input.
        be.transpose_batched(be.src(&wk.t1, 0..len), be.dst(&mut wk.t2, 0..len), nb, hw, c);
        be.add_assign(be.src(&wk.t2, 0..len), be.dst(&mut wk.x, 0..len));
    }

    fn mid(&self, p: &str, wk: &mut Work<B>) {
        let c = wk.c;
        self.resnet(&format!("{p}.mid_block.resnets.0"), wk, c);
        if self.cfg.mid_attention {
            self.attention(&format!("{p}.mid_block.attentions.0"), wk);
        }
        self.resnet(&format!("{p}.mid_block.resnets.1"), wk, c);
    }

    /// x ← conv(x) with a `k`×`k` kernel, stride 1, padding k/2.
    fn conv_same(&self, name: &str, wk: &mut Work<B>, c_out: usize, k: usize) {
        self.conv(name, &wk.x, &mut wk.t1, wk.nb, wk.c, wk.h, wk.w, c_out, k, 1, [k / 2; 4]);
        std::mem::swap(&mut wk.x, &mut wk.t1);
        wk.c = c_out;
    }

    /// Encoder + quant_conv: x [nb, in, h, w] → [nb, 2z, h/f, w/f] in `x`.
    pub fn encode(&self, wk: &mut Work<B>) -> Result<()> {
        let cfg = self.cfg;
        let bc = &cfg.block_channels;
        self.conv_same("encoder.conv_in", wk, bc[0], 3);
        for (i, &c) in bc.iter().enumerate() {
            for j in 0..cfg.layers_per_block {
                self.resnet(&format!("encoder.down_blocks.{i}.resnets.{j}"), wk, c);
            }
            if i + 1 < bc.len() {
                let (oh, ow) = self.conv(
                    &format!("encoder.down_blocks.{i}.downsamplers.0.conv"),
                    &wk.x,
                    &mut wk.t1,
                    wk.nb,
                    c,
                    wk.h,
                    wk.w,
                    c,
                    3,
                    2,
                    [0, 1, 0, 1],
                );
                std::mem::swap(&mut wk.x, &mut wk.t1);
                (wk.h, wk.w) = (oh, ow);
            }
        }
        self.mid("encoder", wk);
        self.norm_silu("encoder.conv_norm_out", wk);
        self.conv_same("encoder.conv_out", wk, 2 * cfg.latent_channels, 3);
        if cfg.use_quant_conv {
            self.conv_same("quant_conv", wk, 2 * cfg.latent_channels, 1);
        }
        Ok(())
    }

    fn norm_silu(&self, name: &str, wk: &mut Work<B>) {
        self.norm(name, &wk.x, &mut wk.t1, wk.nb, wk.c, wk.h * wk.w, true);
        std::mem::swap(&mut wk.x, &mut wk.t1);
    }

    /// post_quant_conv + decoder: x [nb, z, h, w] → [nb, out, h·f, w·f] in `x`.
    pub fn decode(&self, wk: &mut Work<B>) -> Result<()> {
        let cfg = self.cfg;
        let bc = &cfg.block_channels;
        let n = bc.len();
        if cfg.use_quant_conv {
            self.conv_same("post_quant_conv", wk, cfg.latent_channels, 1);
        }
        self.conv_same("decoder.conv_in", wk, cfg.mid_channels(), 3);
        self.mid("decoder", wk);
        for i in 0..n {
            let c = bc[n - 1 - i];
            for j in 0..=cfg.layers_per_block {
                self.resnet(&format!("decoder.up_blocks.{i}.resnets.{j}"), wk, c);
            }
            if i + 1 < n {
                let be = self.be;
                let len = wk.len();
                be.upsample_nearest2x(be.src(&wk.x, 0..len), be.dst(&mut wk.t1, 0..4 * len), wk.nb, wk.c, wk.h, wk.w);
                std::mem::swap(&mut wk.x, &mut wk.t1);
                (wk.h, wk.w) = (2 * wk.h, 2 * wk.w);
                self.conv_same(&format!("decoder.up_blocks.{i}.upsamplers.0.conv"), wk, c, 3);
            }
        }
        self.norm_silu("decoder.conv_norm_out", wk);
        self.conv_same("decoder.conv_out", wk, cfg.out_channels, 3);
        Ok(())
    }
}
