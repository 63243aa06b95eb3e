//! Activation workspace for one batch size: every buffer the forward pass writes, and
//! (in training mode) everything the backward pass reads, one buffer per tensor with
//! its shape documented. Inference keeps a single block's worth and one residual stream.

use crate::backend::{AttnDims, Backend};
use crate::error::Result;
use crate::model::config::{Arch, ModelConfig};
use crate::model::embed::TIME_FEATURES;

/// Per-block activations (BT = B·T tokens, D hidden, M = MLP hidden).
pub struct BlockActs<B: Backend> {
    /// adaLN output [B, 6D]: shift₁, scale₁, gate₁, shift₂, scale₂, gate₂.
    pub ada: B::Buf,
    /// Modulated norm₁ output [BT, D].
    pub n1: B::Buf,
    /// norm₁ statistics [BT, 2].
    pub stats1: B::Buf,
    /// qkv projection [BT, 3D].
    pub qkv: B::Buf,
    /// Attention cache for the backward (training only) [`AttnDims::cache_len`].
    pub cache: B::Buf,
    /// Attention output before `proj` [BT, D].
    pub att: B::Buf,
    /// `proj` output [BT, D].
    pub proj: B::Buf,
    /// Modulated norm₂ output [BT, D].
    pub n2: B::Buf,
    /// norm₂ statistics [BT, 2].
    pub stats2: B::Buf,
    /// First MLP Linear output [BT, M] (SiT) or [BT, 2M] (TiT, x₁ | x₂).
    pub m1: B::Buf,
    /// Activation output [BT, M].
    pub m_act: B::Buf,
    /// Second MLP Linear output [BT, D].
    pub m2: B::Buf,
}

/// Whole-network activations for a batch of `batch` images.
pub struct Acts<B: Backend> {
    pub batch: usize,
    pub train: bool,
    /// Input images [B, C, H, W].
    pub img: B::Buf,
    /// Patch rows [BT, C·p·p].
    pub patches: B::Buf,
    /// Timestep features [B, 256].
    pub tfeat: B::Buf,
    /// t-MLP hidden before SiLU [B, D].
    pub t_hid: B::Buf,
    /// t-MLP hidden after SiLU [B, D].
    pub t_act: B::Buf,
    /// Label embedding [B, D].
    pub yemb: B::Buf,
    /// Conditioning c = t_emb + y_emb [B, D].
    pub cond: B::Buf,
    /// SiLU(c) [B, D], input of every adaLN Linear.
    pub sc: B::Buf,
    /// Residual stream [BT, D]: training keeps 2·depth + 1 snapshots (block input,
    /// after attention, block output …); inference one buffer updated in place.
    pub hs: Vec<B::Buf>,
    /// Training: one per block; inference: one reused.
    pub blocks: Vec<BlockActs<B>>,
    /// Final adaLN output [B, 2D].
    pub f_ada: B::Buf,
    /// Final modulated norm [BT, D].
    pub nf: B::Buf,
    /// Final norm statistics [BT, 2].
    pub stats_f: B::Buf,
    /// Final Linear output [BT, p·p·C].
    pub tok_out: B::Buf,
    /// Output image [B, C, H, W].
    pub out: B::Buf,
}

impl<B: Backend> Acts<B> {
    /// Allocates the workspace.
    pub fn new(be: &B, cfg: &ModelConfig, batch: usize, train: bool) -> Result<Self> {
        let (d, bt) = (cfg.hidden, batch * cfg.tokens());
        let m = cfg.mlp_hidden();
        let m_in = if cfg.arch == Arch::Tit { 2 * m } else { m };
        let dims = attn_dims(cfg, batch);
        let n_blocks = if train { cfg.depth } else { 1 };
        let mut blocks = Vec::with_capacity(n_blocks);
        for _ in 0..n_blocks {
            blocks.push(BlockActs {
                ada: be.zeros(batch * 6 * d)?,
                n1: be.zeros(bt * d)?,
                stats1: be.zeros(bt * 2)?,
                qkv: be.zeros(bt * 3 * d)?,
                cache: be.zeros(if train { dims.cache_len() } else { 0 })?,
                att: be.zeros(bt * d)?,
                proj: be.zeros(bt * d)?,
                n2: be.zeros(bt * d)?,
                stats2: be.zeros(bt * 2)?,
                m1: be.zeros(bt * m_in)?,
                m_act: be.zeros(bt * m)?,
                m2: be.zeros(bt * d)?,
            });
        }
        let n_h = if train { 2 * cfg.depth + 1 } else { 1 };
        let hs = (0..n_h).map(|_| be.zeros(bt * d)).collect::<Result<Vec<_>>>()?;
        Ok(Acts {
            batch,
            train,
            img: be.zeros(batch * cfg.image_len())?,
            patches: be.zeros(bt * cfg.patch_dim())?,
            tfeat: be.zeros(batch * TIME_FEATURES)?,
            t_hid: be.zeros(batch * d)?,
            t_act: be.zeros(batch * d)?,
            yemb: be.zeros(batch * d)?,
            cond: be.zeros(batch * d)?,
            sc: be.zeros(batch * d)?,
            hs,
            blocks,
            f_ada: be.zeros(batch * 2 * d)?,
            nf: be.zeros(bt * d)?,
            stats_f: be.zeros(bt * 2)?,
            tok_out: be.zeros(bt * cfg.patch_dim())?,
            out: be.zeros(batch * cfg.image_len())?,
        })
    }
}

/// Attention sizes of a configuration at a batch size.
pub fn attn_dims(cfg: &ModelConfig, batch: usize) -> AttnDims {
    let tit = cfg.arch == Arch::Tit;
    AttnDims {
        batch,
        tokens: cfg.tokens(),
        heads: cfg.heads,
        head_dim: cfg.head_dim(),
        qk_norm: tit,
        rope: tit,
    }
}

/// Scratch buffers of the backward pass.
pub struct GradScratch<B: Backend> {
    pub batch: usize,
    /// Gradient of the residual stream [BT, D].
    pub dh: B::Buf,
    /// Two wide scratch buffers [BT, max(3D, 2M)].
    pub wide1: B::Buf,
    pub wide2: B::Buf,
    /// Gradient of an adaLN output [B, 6D].
    pub dada: B::Buf,
    /// Gradient of SiLU(c), accumulated over all adaLN Linears [B, D].
    pub dsc: B::Buf,
    /// Small scratch [B, D].
    pub small: B::Buf,
    /// Gradient of the final Linear output [BT, p·p·C].
    pub dtok: B::Buf,
    /// Gradient of the patch rows [BT, C·p·p].
    pub dpatch: B::Buf,
    /// Gradient of the input image [B, C, H, W].
    pub dimg: B::Buf,
    /// Gradient of the output image [B, C, H, W] (uploaded).
    pub dout: B::Buf,
}

impl<B: Backend> GradScratch<B> {
    /// Allocates the scratch for a batch size.
    pub fn new(be: &B, cfg: &ModelConfig, batch: usize) -> Result<Self> {
        let (d, bt) = (cfg.hidden, batch * cfg.tokens());
        let m = cfg.mlp_hidden();
        let wide = bt * (3 * d).max(2 * m).max(d);
        Ok(GradScratch {
            batch,
            dh: be.zeros(bt * d)?,
            wide1: be.zeros(wide)?,
            wide2: be.zeros(wide)?,
            dada: be.zeros(batch * 6 * d)?,
            dsc: be.zeros(batch * d)?,
            small: be.zeros(batch * d)?,
            dtok: be.zeros(bt * cfg.patch_dim())?,
            dpatch: be.zeros(bt * cfg.patch_dim())?,
            dimg: be.zeros(batch * cfg.image_len())?,
            dout: be.zeros(batch * cfg.image_len())?,
        })
    }
}
