//! Activation workspace for one batch size: every buffer the forward pass writes, and
//! (in training mode) everything the backward pass reads, one buffer per tensor with
//! its shape documented. Inference keeps a single block's worth and one residual stream.

use crate::backend::{AttnDims, Backend};
use crate::error::Result;
use crate::model::config::{Arch, ModelConfig};
use crate::model::embed::TIME_FEATURES;

/// Per-block activations (BT = B·T tokens, D hidden, M = MLP hidden).
pub struct BlockActs<B: Backend> {
    /// adaLN output [B, 6D] (DDT: [BT, 6D], per token for the decoder blocks): shift₁,
    /// scale₁, gate₁, shift₂, scale₂, gate₂.
    pub ada: B::Buf,
    /// Modulated norm₁ output [BT, D].
    pub n1: B::Buf,
    /// norm₁ statistics [BT, 2].
    pub stats1: B::Buf,
    /// qkv projection [BT, 3D].
    pub qkv: B::Buf,
    /// DDT: qkv after the qk RMSNorm [BT, 3D] (empty for the other families).
    pub qkn: B::Buf,
    /// DDT: 1/rms of every q and k head [BT, 2H] (training only).
    pub qk_stats: B::Buf,
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

impl<B: Backend> BlockActs<B> {
    fn elements(&self, be: &B) -> usize {
        [
            &self.ada,
            &self.n1,
            &self.stats1,
            &self.qkv,
            &self.qkn,
            &self.qk_stats,
            &self.cache,
            &self.att,
            &self.proj,
            &self.n2,
            &self.stats2,
            &self.m1,
            &self.m_act,
            &self.m2,
        ]
        .iter()
        .map(|b| be.len(b))
        .sum()
    }
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
    /// DDT's extra activations (None for the other families).
    pub ddt: Option<DdtActs<B>>,
}

/// DDT's activations besides the shared ones.
pub struct DdtActs<B: Backend> {
    /// Timestep embedding t [B, D] (before the label is added).
    pub temb: B::Buf,
    /// Encoder output + t per token [BT, D].
    pub s_pre: B::Buf,
    /// s = SiLU(t + encoder output) [BT, D]: the decoder's token-wise condition.
    pub s_act: B::Buf,
    /// Sample index of every token \[BT\] (b repeated T times): broadcasting t over the
    /// tokens is a gather of these rows.
    pub tok_batch: Vec<usize>,
}

/// Rows of the adaLN outputs: one per image, or (DDT) one per token.
pub fn ada_rows(cfg: &ModelConfig, batch: usize) -> usize {
    match cfg.arch {
        Arch::Ddt { .. } => batch * cfg.tokens(),
        _ => batch,
    }
}

/// Residual-stream snapshots a training forward keeps: 2·depth + 1 (DDT: + 1, the
/// decoder starts a new stream).
pub fn residual_snapshots(cfg: &ModelConfig) -> usize {
    match cfg.arch {
        Arch::Ddt { .. } => 2 * cfg.depth + 2,
        _ => 2 * cfg.depth + 1,
    }
}

impl<B: Backend> Acts<B> {
    /// Allocates the workspace.
    pub fn new(be: &B, cfg: &ModelConfig, batch: usize, train: bool) -> Result<Self> {
        let (d, bt) = (cfg.hidden, batch * cfg.tokens());
        let m = cfg.mlp_hidden();
        let m_in = if cfg.arch.uses_swiglu() { 2 * m } else { m };
        let dims = attn_dims(cfg, batch);
        let ddt = matches!(cfg.arch, Arch::Ddt { .. });
        let ar = ada_rows(cfg, batch);
        let n_blocks = if train { cfg.depth } else { 1 };
        let mut blocks = Vec::with_capacity(n_blocks);
        for _ in 0..n_blocks {
            blocks.push(BlockActs {
                ada: be.zeros(ar * 6 * d)?,
                n1: be.zeros(bt * d)?,
                stats1: be.zeros(bt * 2)?,
                qkv: be.zeros(bt * 3 * d)?,
                qkn: be.zeros(if ddt { bt * 3 * d } else { 0 })?,
                qk_stats: be.zeros(if ddt && train { bt * 2 * cfg.heads } else { 0 })?,
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
        let n_h = if train { residual_snapshots(cfg) } else { 1 };
        let ddt_acts = if ddt {
            Some(DdtActs {
                temb: be.zeros(batch * d)?,
                s_pre: be.zeros(bt * d)?,
                s_act: be.zeros(bt * d)?,
                tok_batch: (0..bt).map(|r| r / cfg.tokens()).collect(),
            })
        } else {
            None
        };
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
            f_ada: be.zeros(ar * 2 * d)?,
            nf: be.zeros(bt * d)?,
            stats_f: be.zeros(bt * 2)?,
            tok_out: be.zeros(bt * cfg.patch_dim())?,
            out: be.zeros(batch * cfg.image_len())?,
            ddt: ddt_acts,
        })
    }
}

impl<B: Backend> Acts<B> {
    /// Bytes of every buffer of the workspace (f32 elements; DDT's token index on the host
    /// included).
    pub fn bytes(&self, be: &B) -> usize {
        let mut n = [
            &self.img,
            &self.patches,
            &self.tfeat,
            &self.t_hid,
            &self.t_act,
            &self.yemb,
            &self.cond,
            &self.sc,
            &self.f_ada,
            &self.nf,
            &self.stats_f,
            &self.tok_out,
            &self.out,
        ]
        .iter()
        .map(|b| be.len(b))
        .sum::<usize>();
        n += self.hs.iter().map(|b| be.len(b)).sum::<usize>();
        n += self.blocks.iter().map(|b| b.elements(be)).sum::<usize>();
        let mut host = 0;
        if let Some(d) = &self.ddt {
            n += be.len(&d.temb) + be.len(&d.s_pre) + be.len(&d.s_act);
            host = d.tok_batch.len() * std::mem::size_of::<usize>();
        }
        4 * n + host
    }
}

/// Attention sizes of a configuration at a batch size.
pub fn attn_dims(cfg: &ModelConfig, batch: usize) -> AttnDims {
    AttnDims {
        batch,
        tokens: cfg.tokens(),
        heads: cfg.heads,
        head_dim: cfg.head_dim(),
        // LightningDiT's released configs have qk-norm off; DDT's (with weights) is the
        // separate `qk_norm_fwd` op before the attention.
        qk_norm: cfg.arch == Arch::Tit,
        rope: cfg.arch.uses_rope(),
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
    /// Gradient of an adaLN output [B, 6D] (DDT: [BT, 6D]).
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
    /// DDT: gradient of s = SiLU(t + encoder output) [BT, D], accumulated over the
    /// decoder's adaLN Linears and the final layer (empty otherwise).
    pub ds: B::Buf,
    /// DDT: gradient of the timestep embedding [B, D].
    pub dtemb: B::Buf,
    /// DDT: gradient of the patch rows through `s_embedder` [BT, C·p·p].
    pub dpatch2: B::Buf,
}

impl<B: Backend> GradScratch<B> {
    /// Allocates the scratch for a batch size.
    pub fn new(be: &B, cfg: &ModelConfig, batch: usize) -> Result<Self> {
        let (d, bt) = (cfg.hidden, batch * cfg.tokens());
        let m = cfg.mlp_hidden();
        let wide = bt * (3 * d).max(2 * m).max(d);
        let ddt = matches!(cfg.arch, Arch::Ddt { .. });
        let some = |n: usize| if ddt { n } else { 0 };
        Ok(GradScratch {
            batch,
            dh: be.zeros(bt * d)?,
            wide1: be.zeros(wide)?,
            wide2: be.zeros(wide)?,
            dada: be.zeros(ada_rows(cfg, batch) * 6 * d)?,
            dsc: be.zeros(batch * d)?,
            small: be.zeros(batch * d)?,
            dtok: be.zeros(bt * cfg.patch_dim())?,
            dpatch: be.zeros(bt * cfg.patch_dim())?,
            dimg: be.zeros(batch * cfg.image_len())?,
            dout: be.zeros(batch * cfg.image_len())?,
            ds: be.zeros(some(bt * d))?,
            dtemb: be.zeros(some(batch * d))?,
            dpatch2: be.zeros(some(bt * cfg.patch_dim()))?,
        })
    }

    /// Bytes of every buffer of the scratch (f32 elements).
    pub fn bytes(&self, be: &B) -> usize {
        let bufs = [
            &self.dh,
            &self.wide1,
            &self.wide2,
            &self.dada,
            &self.dsc,
            &self.small,
            &self.dtok,
            &self.dpatch,
            &self.dimg,
            &self.dout,
            &self.ds,
            &self.dtemb,
            &self.dpatch2,
        ];
        4 * bufs.iter().map(|b| be.len(b)).sum::<usize>()
    }
}
