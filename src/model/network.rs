//! The SiT / TiT / LightningDiT network as one static stack of layers, forward and
//! hand-written backward side by side (the llm.c way), written once over the [`Backend`]
//! ops. LightningDiT is TiT's stack with a learned weight in every RMSNorm and qk-norm
//! off. DDT's encoder–decoder stack is in [`crate::model::ddt`]; [`forward`] and
//! [`backward`] hand it over.
//!
//! Forward:  patches → x_embedder (+ pos_embed) → h;  t → features → Linear → SiLU →
//! Linear (+ label embedding) → c;  sc = SiLU(c);  per block: ada = Linear(sc) →
//! h += g₁ ⊙ proj(attn(qkv(norm₁(h)·(1+s₁)+b₁)));  h += g₂ ⊙ mlp(norm₂(h)·(1+s₂)+b₂);
//! final: Linear(norm(h)·(1+s)+b) → unpatchify.
//!
//! Backward runs the same list in reverse. Activation gradients are assigned, except the
//! residual stream `dh` and `dsc` (SiLU(c) feeds every adaLN Linear and the final
//! layer), which accumulate over all consumers before flowing into the embedders.

use std::ops::Range;

use crate::backend::{Backend, NormKind};
use crate::layout::ParamLayout;
use crate::model::acts::{attn_dims, Acts, GradScratch};
use crate::model::config::{Arch, ModelConfig};

/// Parameter ranges of one block: each Linear's `[W | b]` (`[W]` alone for DDT's
/// bias-free qkv and MLP), and the norm weights of the families that have them.
#[derive(Clone, Debug)]
pub struct BlockRanges {
    pub ada: Range<usize>,
    pub qkv: Range<usize>,
    pub proj: Range<usize>,
    pub mlp_in: Range<usize>,
    pub mlp_out: Range<usize>,
    /// RMSNorm weights \[D\] (LightningDiT, DDT).
    pub norm1: Option<Range<usize>>,
    pub norm2: Option<Range<usize>>,
    /// DDT: [q_norm.weight | k_norm.weight] [2·d_h].
    pub qk_norm: Option<Range<usize>>,
}

/// Parameter ranges of the whole network, resolved once from the layout.
#[derive(Clone, Debug)]
pub struct Ranges {
    pub x_emb: Range<usize>,
    /// DDT's `s_embedder.proj`.
    pub s_emb: Option<Range<usize>>,
    pub t0: Range<usize>,
    pub t2: Range<usize>,
    pub y_table: Range<usize>,
    pub blocks: Vec<BlockRanges>,
    pub f_ada: Range<usize>,
    pub f_lin: Range<usize>,
    /// LightningDiT's final RMSNorm weight \[D\].
    pub f_norm: Option<Range<usize>>,
}

impl Ranges {
    /// Resolves the ranges of `cfg` in `layout`.
    pub fn new(cfg: &ModelConfig, layout: &ParamLayout) -> Self {
        if let Arch::Ddt { .. } = cfg.arch {
            return Ranges {
                x_emb: layout.linear_range("x_embedder.proj"),
                s_emb: Some(layout.linear_range("s_embedder.proj")),
                t0: layout.linear_range("t_embedder.mlp.0"),
                t2: layout.linear_range("t_embedder.mlp.2"),
                y_table: layout.range_of("y_embedder.embedding_table.weight"),
                blocks: (0..cfg.depth)
                    .map(|i| {
                        let p = format!("blocks.{i}");
                        BlockRanges {
                            ada: layout.linear_range(&format!("{p}.adaLN_modulation.0")),
                            qkv: layout.range_of(&format!("{p}.attn.qkv.weight")),
                            proj: layout.linear_range(&format!("{p}.attn.proj")),
                            mlp_in: layout.span(&format!("{p}.mlp.w1.weight"), &format!("{p}.mlp.w3.weight")),
                            mlp_out: layout.range_of(&format!("{p}.mlp.w2.weight")),
                            norm1: Some(layout.range_of(&format!("{p}.norm1.weight"))),
                            norm2: Some(layout.range_of(&format!("{p}.norm2.weight"))),
                            qk_norm: Some(layout.span(&format!("{p}.attn.q_norm.weight"), &format!("{p}.attn.k_norm.weight"))),
                        }
                    })
                    .collect(),
                f_ada: layout.linear_range("final_layer.adaLN_modulation.0"),
                f_lin: layout.linear_range("final_layer.linear"),
                f_norm: None,
            };
        }
        let (mi, mo) = if cfg.arch.uses_swiglu() {
            ("mlp.w12", "mlp.w3")
        } else {
            ("mlp.fc1", "mlp.fc2")
        };
        let nw = cfg.arch.has_norm_weights();
        let norm = |name: String| nw.then(|| layout.range_of(&name));
        Ranges {
            x_emb: layout.linear_range("x_embedder.proj"),
            s_emb: None,
            t0: layout.linear_range("t_embedder.mlp.0"),
            t2: layout.linear_range("t_embedder.mlp.2"),
            y_table: layout.range_of("y_embedder.embedding_table.weight"),
            blocks: (0..cfg.depth)
                .map(|i| BlockRanges {
                    ada: layout.linear_range(&format!("blocks.{i}.adaLN_modulation.1")),
                    qkv: layout.linear_range(&format!("blocks.{i}.attn.qkv")),
                    proj: layout.linear_range(&format!("blocks.{i}.attn.proj")),
                    mlp_in: layout.linear_range(&format!("blocks.{i}.{mi}")),
                    mlp_out: layout.linear_range(&format!("blocks.{i}.{mo}")),
                    norm1: norm(format!("blocks.{i}.norm1.weight")),
                    norm2: norm(format!("blocks.{i}.norm2.weight")),
                    qk_norm: None,
                })
                .collect(),
            f_ada: layout.linear_range("final_layer.adaLN_modulation.1"),
            f_lin: layout.linear_range("final_layer.linear"),
            f_norm: norm("final_layer.norm_final.weight".to_string()),
        }
    }
}

/// Whether a Linear's parameter range `[W | b]` holds a bias (W being [o, i]).
pub fn has_bias(rg: &Range<usize>, i: usize, o: usize) -> bool {
    rg.len() == o * i + o
}

impl Ranges {
    /// The same ranges with every bound moved by `f` (a monotone map of parameter
    /// boundaries, e.g. into a packed layout).
    pub fn map(&self, f: &dyn Fn(usize) -> usize) -> Ranges {
        let m = |r: &Range<usize>| f(r.start)..f(r.end);
        let mo = |r: &Option<Range<usize>>| r.as_ref().map(m);
        Ranges {
            x_emb: m(&self.x_emb),
            s_emb: mo(&self.s_emb),
            t0: m(&self.t0),
            t2: m(&self.t2),
            y_table: m(&self.y_table),
            blocks: self
                .blocks
                .iter()
                .map(|b| BlockRanges {
                    ada: m(&b.ada),
                    qkv: m(&b.qkv),
                    proj: m(&b.proj),
                    mlp_in: m(&b.mlp_in),
                    mlp_out: m(&b.mlp_out),
                    norm1: mo(&b.norm1),
                    norm2: mo(&b.norm2),
                    qk_norm: mo(&b.qk_norm),
                })
                .collect(),
            f_ada: m(&self.f_ada),
            f_lin: m(&self.f_lin),
            f_norm: mo(&self.f_norm),
        }
    }

    /// Every Linear as (`[W | b]` range, in features, out features).
    pub fn linears(&self, cfg: &ModelConfig) -> Vec<(Range<usize>, usize, usize)> {
        let (d, m) = (cfg.hidden, cfg.mlp_hidden());
        let m_in = if cfg.arch.uses_swiglu() { 2 * m } else { m };
        let mut v = vec![(self.x_emb.clone(), cfg.patch_dim(), d), (self.t0.clone(), 256, d), (self.t2.clone(), d, d)];
        if let Some(s) = &self.s_emb {
            v.push((s.clone(), cfg.patch_dim(), d));
        }
        for b in &self.blocks {
            v.extend([
                (b.ada.clone(), d, 6 * d),
                (b.qkv.clone(), d, 3 * d),
                (b.proj.clone(), d, d),
                (b.mlp_in.clone(), d, m_in),
                (b.mlp_out.clone(), m, d),
            ]);
        }
        v.extend([(self.f_ada.clone(), d, 2 * d), (self.f_lin.clone(), d, cfg.patch_dim())]);
        v
    }
}

/// Where and in which form the forward pass reads the Linear weights.
pub enum LinearWeights<'a, B: Backend> {
    /// In the parameters, plain `[o, i]`.
    Plain,
    /// In this buffer (the parameters' offsets), in the backend's transposed form
    /// ([`transpose_weights`]); biases beside them as in the parameters.
    Transposed(&'a B::Buf),
    /// In the parameters themselves, in the backend's packed form
    /// ([`Backend::pack_weight`]): the parameters and ranges are the packed layout's.
    Packed,
}

impl<B: Backend> Clone for LinearWeights<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for LinearWeights<'_, B> {}

impl<B: Backend> LinearWeights<'_, B> {
    /// y[n, o] = Linear(x[n, i]) with the weight and bias (if its range holds one) at
    /// `rg`. x: [n, i]; y: [n, o] (assign).
    #[allow(clippy::too_many_arguments)]
    pub fn apply(self, be: &B, params: &B::Buf, x: B::Src<'_>, rg: &Range<usize>, y: B::Dst<'_>, n: usize, i: usize, o: usize) {
        self.run(be, params, x, rg, false, y, n, i, o)
    }

    /// Whether [`LinearWeights::apply_gelu`] can run (the inference forms; the plain one
    /// keeps the product for the backward pass).
    pub fn fuses_gelu(self) -> bool {
        !matches!(self, LinearWeights::Plain)
    }

    /// y = GELU-tanh(Linear(x)) in one op (the same bits as [`LinearWeights::apply`]
    /// then [`Backend::gelu_tanh_fwd`]). Only when [`LinearWeights::fuses_gelu`].
    #[allow(clippy::too_many_arguments)]
    pub fn apply_gelu(self, be: &B, params: &B::Buf, x: B::Src<'_>, rg: &Range<usize>, y: B::Dst<'_>, n: usize, i: usize, o: usize) {
        self.run(be, params, x, rg, true, y, n, i, o)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(self, be: &B, params: &B::Buf, x: B::Src<'_>, rg: &Range<usize>, gelu: bool, y: B::Dst<'_>, n: usize, i: usize, o: usize) {
        match self {
            LinearWeights::Plain => {
                assert!(!gelu, "a fused GELU needs an inference weight form");
                be.linear_fwd(x, be.src(params, rg.clone()), has_bias(rg, i, o), y, n, i, o)
            }
            LinearWeights::Transposed(wt) => be.linear_fwd_t(x, be.src(wt, rg.clone()), has_bias(rg, i, o), gelu, y, n, i, o),
            LinearWeights::Packed => {
                let w = be.packed_weight_len(i, o).expect("a backend with packed weights");
                be.linear_fwd_packed(x, be.src(params, rg.clone()), rg.len() == w + o, gelu, y, n, i, o)
            }
        }
    }
}

/// Builds `wt` = the parameters with every Linear weight in the backend's transposed form
/// ([`Backend::transpose_weight`]; biases copied): the inference weight cache of backends
/// that prefer transposed weights.
pub fn transpose_weights<B: Backend>(be: &B, cfg: &ModelConfig, r: &Ranges, params: &B::Buf, wt: &mut B::Buf) {
    for (rg, i, o) in r.linears(cfg) {
        let w_end = rg.start + o * i;
        be.transpose_weight(be.src(params, rg.start..w_end), be.dst(wt, rg.start..w_end), i, o);
        be.copy(be.src(params, w_end..rg.end), be.dst(wt, w_end..rg.end));
    }
}

/// Frozen tables on the device.
pub struct Fixed<B: Backend> {
    /// [T, D].
    pub pos_embed: B::Buf,
    /// [T, d_h] each (length 1 for SiT).
    pub rope_cos: B::Buf,
    pub rope_sin: B::Buf,
}

fn norm_kind(cfg: &ModelConfig) -> NormKind {
    match cfg.arch {
        Arch::Sit => NormKind::LayerNorm,
        _ => NormKind::RmsNorm,
    }
}

/// Index of the residual snapshot: block `i`, stage 0 (input), 1 (after attention), 2 (output).
fn h_index(train: bool, i: usize, stage: usize) -> usize {
    if train {
        2 * i + stage
    } else {
        0
    }
}

/// (&hs[a], &mut hs[b]) for a ≠ b.
fn pair<T>(v: &mut [T], a: usize, b: usize) -> (&T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (l, r) = v.split_at_mut(b);
        (&l[a], &mut r[0])
    } else {
        let (l, r) = v.split_at_mut(a);
        (&r[0], &mut l[b])
    }
}

/// Runs the forward pass. Inputs must already be in `acts.img` and `acts.tfeat`;
/// the result is left in `acts.out` [B, C, H, W].
/// `wt` says where the Linear weights are read from (see [`LinearWeights`]).
#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    be: &B,
    cfg: &ModelConfig,
    r: &Ranges,
    params: &B::Buf,
    wt: LinearWeights<'_, B>,
    fixed: &Fixed<B>,
    acts: &mut Acts<B>,
    labels: &[usize],
) {
    if let Arch::Ddt { .. } = cfg.arch {
        return crate::model::ddt::forward(be, cfg, r, params, wt, fixed, acts, labels);
    }
    let (b, t, d, c, p, side) = (acts.batch, cfg.tokens(), cfg.hidden, cfg.in_channels, cfg.patch, cfg.input_size);
    let bt = b * t;
    let (m, kind, train) = (cfg.mlp_hidden(), norm_kind(cfg), acts.train);
    let m_in = if cfg.arch.uses_swiglu() { 2 * m } else { m };
    let all = |x: &B::Buf| 0..be.len(x);
    let w = |rg: &Range<usize>| be.src(params, rg.clone());
    let nw = |rg: &Option<Range<usize>>| rg.as_ref().map(|rg| be.src(params, rg.clone()));
    let lin = |x: B::Src<'_>, rg: &Range<usize>, y: B::Dst<'_>, n: usize, i: usize, o: usize| wt.apply(be, params, x, rg, y, n, i, o);

    // Embedders.
    be.patchify(
        be.src(&acts.img, all(&acts.img)),
        be.dst(&mut acts.patches, 0..bt * cfg.patch_dim()),
        b,
        c,
        side,
        p,
    );
    lin(
        be.src(&acts.patches, all(&acts.patches)),
        &r.x_emb,
        be.dst(&mut acts.hs[0], 0..bt * d),
        bt,
        cfg.patch_dim(),
        d,
    );
    be.add_rows(be.src(&fixed.pos_embed, 0..t * d), be.dst(&mut acts.hs[0], 0..bt * d), b, t, d);
    lin(be.src(&acts.tfeat, all(&acts.tfeat)), &r.t0, be.dst(&mut acts.t_hid, 0..b * d), b, 256, d);
    be.silu_fwd(be.src(&acts.t_hid, 0..b * d), be.dst(&mut acts.t_act, 0..b * d));
    lin(be.src(&acts.t_act, 0..b * d), &r.t2, be.dst(&mut acts.cond, 0..b * d), b, d, d);
    if cfg.uses_labels() {
        be.embedding_fwd(w(&r.y_table), labels, be.dst(&mut acts.yemb, 0..b * d), d);
        be.add_assign(be.src(&acts.yemb, 0..b * d), be.dst(&mut acts.cond, 0..b * d));
    }
    be.silu_fwd(be.src(&acts.cond, 0..b * d), be.dst(&mut acts.sc, 0..b * d));

    let dims = attn_dims(cfg, b);
    for (i, br) in r.blocks.iter().enumerate() {
        let ba = &mut acts.blocks[if train { i } else { 0 }];
        let (h_in, h_mid, h_out) = (h_index(train, i, 0), h_index(train, i, 1), h_index(train, i, 2));
        lin(be.src(&acts.sc, 0..b * d), &br.ada, be.dst(&mut ba.ada, 0..b * 6 * d), b, d, 6 * d);
        let stats1 = if train { Some(be.dst(&mut ba.stats1, 0..bt * 2)) } else { None };
        be.norm_mod_fwd(
            kind,
            be.src(&acts.hs[h_in], 0..bt * d),
            nw(&br.norm1),
            be.src(&ba.ada, 0..b * 6 * d),
            6 * d,
            0,
            d,
            be.dst(&mut ba.n1, 0..bt * d),
            stats1,
            b,
            t,
            d,
        );
        lin(be.src(&ba.n1, 0..bt * d), &br.qkv, be.dst(&mut ba.qkv, 0..bt * 3 * d), bt, d, 3 * d);
        let cache = if train { Some(be.dst(&mut ba.cache, 0..dims.cache_len())) } else { None };
        be.attention_fwd(
            be.src(&ba.qkv, 0..bt * 3 * d),
            be.src(&fixed.rope_cos, all(&fixed.rope_cos)),
            be.src(&fixed.rope_sin, all(&fixed.rope_sin)),
            be.dst(&mut ba.att, 0..bt * d),
            cache,
            dims,
        );
        lin(be.src(&ba.att, 0..bt * d), &br.proj, be.dst(&mut ba.proj, 0..bt * d), bt, d, d);
        if train {
            let (src, dst) = pair(&mut acts.hs, h_in, h_mid);
            be.copy(be.src(src, 0..bt * d), be.dst(dst, 0..bt * d));
        }
        be.gate_residual_fwd(
            be.src(&ba.proj, 0..bt * d),
            be.src(&ba.ada, 0..b * 6 * d),
            6 * d,
            2 * d,
            be.dst(&mut acts.hs[h_mid], 0..bt * d),
            b,
            t,
            d,
        );
        let stats2 = if train { Some(be.dst(&mut ba.stats2, 0..bt * 2)) } else { None };
        be.norm_mod_fwd(
            kind,
            be.src(&acts.hs[h_mid], 0..bt * d),
            nw(&br.norm2),
            be.src(&ba.ada, 0..b * 6 * d),
            6 * d,
            3 * d,
            4 * d,
            be.dst(&mut ba.n2, 0..bt * d),
            stats2,
            b,
            t,
            d,
        );
        if !train && !cfg.arch.uses_swiglu() && wt.fuses_gelu() {
            // Inference: the GELU runs on each block of the product while it is in cache.
            wt.apply_gelu(be, params, be.src(&ba.n2, 0..bt * d), &br.mlp_in, be.dst(&mut ba.m_act, 0..bt * m), bt, d, m);
        } else {
            lin(be.src(&ba.n2, 0..bt * d), &br.mlp_in, be.dst(&mut ba.m1, 0..bt * m_in), bt, d, m_in);
            if cfg.arch.uses_swiglu() {
                be.swiglu_fwd(be.src(&ba.m1, 0..bt * m_in), be.dst(&mut ba.m_act, 0..bt * m), bt, m);
            } else {
                be.gelu_tanh_fwd(be.src(&ba.m1, 0..bt * m), be.dst(&mut ba.m_act, 0..bt * m));
            }
        }
        lin(be.src(&ba.m_act, 0..bt * m), &br.mlp_out, be.dst(&mut ba.m2, 0..bt * d), bt, m, d);
        if train {
            let (src, dst) = pair(&mut acts.hs, h_mid, h_out);
            be.copy(be.src(src, 0..bt * d), be.dst(dst, 0..bt * d));
        }
        be.gate_residual_fwd(
            be.src(&ba.m2, 0..bt * d),
            be.src(&ba.ada, 0..b * 6 * d),
            6 * d,
            5 * d,
            be.dst(&mut acts.hs[h_out], 0..bt * d),
            b,
            t,
            d,
        );
    }

    // Final layer.
    let h_last = h_index(train, cfg.depth, 0);
    lin(be.src(&acts.sc, 0..b * d), &r.f_ada, be.dst(&mut acts.f_ada, 0..b * 2 * d), b, d, 2 * d);
    let stats_f = if train { Some(be.dst(&mut acts.stats_f, 0..bt * 2)) } else { None };
    be.norm_mod_fwd(
        kind,
        be.src(&acts.hs[h_last], 0..bt * d),
        nw(&r.f_norm),
        be.src(&acts.f_ada, 0..b * 2 * d),
        2 * d,
        0,
        d,
        be.dst(&mut acts.nf, 0..bt * d),
        stats_f,
        b,
        t,
        d,
    );
    let pd = cfg.patch_dim();
    lin(be.src(&acts.nf, 0..bt * d), &r.f_lin, be.dst(&mut acts.tok_out, 0..bt * pd), bt, d, pd);
    be.unpatchify(be.src(&acts.tok_out, 0..bt * pd), be.dst(&mut acts.out, 0..b * cfg.image_len()), b, c, side, p);
}

/// Backward pass: `g.dout` [B, C, H, W] must hold ∂L/∂out. Parameter gradients are
/// accumulated into `grads`; if `want_dx`, ∂L/∂x is left in `g.dimg`.
pub fn backward<B: Backend>(
    be: &B,
    cfg: &ModelConfig,
    r: &Ranges,
    params: &B::Buf,
    fixed: &Fixed<B>,
    acts: &Acts<B>,
    labels: &[usize],
    grads: &mut B::Buf,
    g: &mut GradScratch<B>,
    want_dx: bool,
) {
    assert!(acts.train, "backward needs a training-mode forward");
    if let Arch::Ddt { .. } = cfg.arch {
        return crate::model::ddt::backward(be, cfg, r, params, fixed, acts, labels, grads, g, want_dx);
    }
    let (b, t, d, c, p, side) = (acts.batch, cfg.tokens(), cfg.hidden, cfg.in_channels, cfg.patch, cfg.input_size);
    let bt = b * t;
    let (m, kind, pd) = (cfg.mlp_hidden(), norm_kind(cfg), cfg.patch_dim());
    let m_in = if cfg.arch.uses_swiglu() { 2 * m } else { m };
    let w = |rg: &Range<usize>| be.src(params, rg.clone());
    let nw = |rg: &Option<Range<usize>>| rg.as_ref().map(|rg| be.src(params, rg.clone()));
    let dims = attn_dims(cfg, b);
    let img = b * cfg.image_len();

    // Final layer.
    be.unpatchify_bwd(be.src(&g.dout, 0..img), be.dst(&mut g.dtok, 0..bt * pd), b, c, side, p);
    be.linear_bwd(
        be.src(&g.dtok, 0..bt * pd),
        be.src(&acts.nf, 0..bt * d),
        w(&r.f_lin),
        true,
        Some(be.dst(&mut g.wide1, 0..bt * d)),
        be.dst(grads, r.f_lin.clone()),
        bt,
        d,
        pd,
    );
    be.zero(be.dst(&mut g.dh, 0..bt * d));
    be.zero(be.dst(&mut g.dada, 0..b * 2 * d));
    let h_last = h_index(true, cfg.depth, 0);
    be.norm_mod_bwd(
        kind,
        be.src(&g.wide1, 0..bt * d),
        be.src(&acts.hs[h_last], 0..bt * d),
        nw(&r.f_norm),
        r.f_norm.as_ref().map(|rg| be.dst(grads, rg.clone())),
        be.src(&acts.f_ada, 0..b * 2 * d),
        2 * d,
        0,
        d,
        be.src(&acts.stats_f, 0..bt * 2),
        be.dst(&mut g.dh, 0..bt * d),
        be.dst(&mut g.dada, 0..b * 2 * d),
        b,
        t,
        d,
    );
    be.linear_bwd(
        be.src(&g.dada, 0..b * 2 * d),
        be.src(&acts.sc, 0..b * d),
        w(&r.f_ada),
        true,
        Some(be.dst(&mut g.dsc, 0..b * d)),
        be.dst(grads, r.f_ada.clone()),
        b,
        d,
        2 * d,
    );

    for (i, br) in r.blocks.iter().enumerate().rev() {
        let ba = &acts.blocks[i];
        let (h_in, h_mid) = (h_index(true, i, 0), h_index(true, i, 1));
        be.zero(be.dst(&mut g.dada, 0..b * 6 * d));
        // MLP branch: h_out = h_mid + g₂ ⊙ mlp(n2).
        be.gate_residual_bwd(
            be.src(&g.dh, 0..bt * d),
            be.src(&ba.m2, 0..bt * d),
            be.src(&ba.ada, 0..b * 6 * d),
            6 * d,
            5 * d,
            be.dst(&mut g.wide1, 0..bt * d),
            be.dst(&mut g.dada, 0..b * 6 * d),
            b,
            t,
            d,
        );
        be.linear_bwd(
            be.src(&g.wide1, 0..bt * d),
            be.src(&ba.m_act, 0..bt * m),
            w(&br.mlp_out),
            true,
            Some(be.dst(&mut g.wide2, 0..bt * m)),
            be.dst(grads, br.mlp_out.clone()),
            bt,
            m,
            d,
        );
        if cfg.arch.uses_swiglu() {
            be.swiglu_bwd(
                be.src(&ba.m1, 0..bt * m_in),
                be.src(&g.wide2, 0..bt * m),
                be.dst(&mut g.wide1, 0..bt * m_in),
                bt,
                m,
            );
        } else {
            be.gelu_tanh_bwd(be.src(&ba.m1, 0..bt * m), be.src(&g.wide2, 0..bt * m), be.dst(&mut g.wide1, 0..bt * m));
        }
        be.linear_bwd(
            be.src(&g.wide1, 0..bt * m_in),
            be.src(&ba.n2, 0..bt * d),
            w(&br.mlp_in),
            true,
            Some(be.dst(&mut g.wide2, 0..bt * d)),
            be.dst(grads, br.mlp_in.clone()),
            bt,
            d,
            m_in,
        );
        be.norm_mod_bwd(
            kind,
            be.src(&g.wide2, 0..bt * d),
            be.src(&acts.hs[h_mid], 0..bt * d),
            nw(&br.norm2),
            br.norm2.as_ref().map(|rg| be.dst(grads, rg.clone())),
            be.src(&ba.ada, 0..b * 6 * d),
            6 * d,
            3 * d,
            4 * d,
            be.src(&ba.stats2, 0..bt * 2),
            be.dst(&mut g.dh, 0..bt * d),
            be.dst(&mut g.dada, 0..b * 6 * d),
            b,
            t,
            d,
        );
        // Attention branch: h_mid = h_in + g₁ ⊙ proj(attn(qkv(n1))).
        be.gate_residual_bwd(
            be.src(&g.dh, 0..bt * d),
            be.src(&ba.proj, 0..bt * d),
            be.src(&ba.ada, 0..b * 6 * d),
            6 * d,
            2 * d,
            be.dst(&mut g.wide1, 0..bt * d),
            be.dst(&mut g.dada, 0..b * 6 * d),
            b,
            t,
            d,
        );
        be.linear_bwd(
            be.src(&g.wide1, 0..bt * d),
            be.src(&ba.att, 0..bt * d),
            w(&br.proj),
            true,
            Some(be.dst(&mut g.wide2, 0..bt * d)),
            be.dst(grads, br.proj.clone()),
            bt,
            d,
            d,
        );
        be.attention_bwd(
            be.src(&g.wide2, 0..bt * d),
            be.src(&ba.qkv, 0..bt * 3 * d),
            be.src(&fixed.rope_cos, 0..be.len(&fixed.rope_cos)),
            be.src(&fixed.rope_sin, 0..be.len(&fixed.rope_sin)),
            be.src(&ba.cache, 0..dims.cache_len()),
            be.dst(&mut g.wide1, 0..bt * 3 * d),
            dims,
        );
        be.linear_bwd(
            be.src(&g.wide1, 0..bt * 3 * d),
            be.src(&ba.n1, 0..bt * d),
            w(&br.qkv),
            true,
            Some(be.dst(&mut g.wide2, 0..bt * d)),
            be.dst(grads, br.qkv.clone()),
            bt,
            d,
            3 * d,
        );
        be.norm_mod_bwd(
            kind,
            be.src(&g.wide2, 0..bt * d),
            be.src(&acts.hs[h_in], 0..bt * d),
            nw(&br.norm1),
            br.norm1.as_ref().map(|rg| be.dst(grads, rg.clone())),
            be.src(&ba.ada, 0..b * 6 * d),
            6 * d,
            0,
            d,
            be.src(&ba.stats1, 0..bt * 2),
            be.dst(&mut g.dh, 0..bt * d),
            be.dst(&mut g.dada, 0..b * 6 * d),
            b,
            t,
            d,
        );
        // adaLN Linear: its input SiLU(c) is shared, so accumulate into dsc.
        be.linear_bwd(
            be.src(&g.dada, 0..b * 6 * d),
            be.src(&acts.sc, 0..b * d),
            w(&br.ada),
            true,
            Some(be.dst(&mut g.small, 0..b * d)),
            be.dst(grads, br.ada.clone()),
            b,
            d,
            6 * d,
        );
        be.add_assign(be.src(&g.small, 0..b * d), be.dst(&mut g.dsc, 0..b * d));
    }

    // Embedders.
    let dpatch = if want_dx { Some(be.dst(&mut g.dpatch, 0..bt * pd)) } else { None };
    be.linear_bwd(
        be.src(&g.dh, 0..bt * d),
        be.src(&acts.patches, 0..bt * pd),
        w(&r.x_emb),
        true,
        dpatch,
        be.dst(grads, r.x_emb.clone()),
        bt,
        pd,
        d,
    );
    if want_dx {
        be.patchify_bwd(be.src(&g.dpatch, 0..bt * pd), be.dst(&mut g.dimg, 0..img), b, c, side, p);
    }
    be.silu_bwd(be.src(&acts.cond, 0..b * d), be.src(&g.dsc, 0..b * d), be.dst(&mut g.small, 0..b * d));
    if cfg.uses_labels() {
        be.embedding_bwd(be.src(&g.small, 0..b * d), labels, be.dst(grads, r.y_table.clone()), d);
    }
    be.linear_bwd(
        be.src(&g.small, 0..b * d),
        be.src(&acts.t_act, 0..b * d),
        w(&r.t2),
        true,
        Some(be.dst(&mut g.wide1, 0..b * d)),
        be.dst(grads, r.t2.clone()),
        b,
        d,
        d,
    );
    be.silu_bwd(be.src(&acts.t_hid, 0..b * d), be.src(&g.wide1, 0..b * d), be.dst(&mut g.wide2, 0..b * d));
    be.linear_bwd(
        be.src(&g.wide2, 0..b * d),
        be.src(&acts.tfeat, 0..b * 256),
        w(&r.t0),
        true,
        None,
        be.dst(grads, r.t0.clone()),
        b,
        256,
        d,
    );
}
