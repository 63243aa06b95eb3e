//! DDT (reference `networks/ddt.py`), the encoder–decoder DiT, forward and hand-written
//! backward over the [`Backend`] ops.
//!
//! Forward (T tokens per image, patches in (channel, row, col) order):
//! t → features (max period 10) → Linear → SiLU → Linear = t_emb;  c = SiLU(t_emb + y_emb);
//! encoder: s = s_embedder(patches), then blocks 0..E over s modulated per image by c;
//! s = SiLU(t_emb + s) per token;  decoder: h = x_embedder(patches), then blocks E..depth
//! over h modulated per token by s (the adaLN Linears run on every token: the norm and
//! gate ops see B·T "images" of one token);  final: Linear(LayerNorm(h)·(1+scale)+shift)
//! with token-wise shift/scale, folded back to the image (the adjoint of `patchify`).
//! A block: RMSNorm with weight, qkv (no bias), qk RMSNorm with weights, 2-D RoPE,
//! attention, proj; RMSNorm with weight, SwiGLU [w1; w3] → w2 (no biases).

use std::ops::Range;

use crate::backend::{Backend, NormKind};
use crate::model::acts::{attn_dims, Acts, BlockActs, GradScratch};
use crate::model::config::ModelConfig;
use crate::model::network::{has_bias, BlockRanges, Fixed, LinearWeights, Ranges};

/// Index of the residual snapshot of block `i` at `stage` (0 input, 1 after attention,
/// 2 output); the decoder's stream starts one past the encoder's output. Inference
/// keeps one stream.
fn h_index(train: bool, encoder_depth: usize, i: usize, stage: usize) -> usize {
    match (train, i < encoder_depth) {
        (false, _) => 0,
        (true, true) => 2 * i + stage,
        (true, false) => 2 * i + stage + 1,
    }
}

/// (&v[a], &mut v[b]) for a ≠ b.
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

/// Sizes every DDT op call shares.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    d: usize,
    m: usize,
    heads: usize,
    dh: usize,
}

/// One block's forward: `hs[h_in]` → `hs[h_out]` (through `hs[h_mid]`). `cond` is the
/// adaLN input: [B, D] with `mod_b` = B, `mod_t` = T (encoder) or [BT, D] with
/// `mod_b` = BT, `mod_t` = 1 (decoder).
#[allow(clippy::too_many_arguments)]
fn block_fwd<B: Backend>(
    be: &B,
    br: &BlockRanges,
    params: &B::Buf,
    wt: LinearWeights<'_, B>,
    fixed: &Fixed<B>,
    cond: &B::Buf,
    mod_b: usize,
    mod_t: usize,
    hs: &mut [B::Buf],
    (h_in, h_mid, h_out): (usize, usize, usize),
    ba: &mut BlockActs<B>,
    dm: Dims,
    train: bool,
) {
    let Dims { b, t, d, m, heads, dh } = dm;
    let bt = b * t;
    let w = |rg: &Range<usize>| be.src(params, rg.clone());
    let lin = |x: B::Src<'_>, rg: &Range<usize>, y: B::Dst<'_>, n: usize, i: usize, o: usize| wt.apply(be, params, x, rg, y, n, i, o);
    let nw = |rg: &Option<Range<usize>>| rg.as_ref().map(|rg| be.src(params, rg.clone()));
    let ada_n = mod_b * 6 * d;
    lin(be.src(cond, 0..mod_b * d), &br.ada, be.dst(&mut ba.ada, 0..ada_n), mod_b, d, 6 * d);
    let stats1 = if train { Some(be.dst(&mut ba.stats1, 0..bt * 2)) } else { None };
    be.norm_mod_fwd(
        NormKind::RmsNorm,
        be.src(&hs[h_in], 0..bt * d),
        nw(&br.norm1),
        be.src(&ba.ada, 0..ada_n),
        6 * d,
        0,
        d,
        be.dst(&mut ba.n1, 0..bt * d),
        stats1,
        mod_b,
        mod_t,
        d,
    );
    lin(be.src(&ba.n1, 0..bt * d), &br.qkv, be.dst(&mut ba.qkv, 0..bt * 3 * d), bt, d, 3 * d);
    let qk_stats = if train { Some(be.dst(&mut ba.qk_stats, 0..bt * 2 * heads)) } else { None };
    be.qk_norm_fwd(
        be.src(&ba.qkv, 0..bt * 3 * d),
        w(br.qk_norm.as_ref().expect("DDT qk-norm")),
        be.dst(&mut ba.qkn, 0..bt * 3 * d),
        qk_stats,
        bt,
        heads,
        dh,
    );
    let dims = crate::backend::AttnDims {
        batch: b,
        tokens: t,
        heads,
        head_dim: dh,
        qk_norm: false,
        rope: true,
    };
    let cache = if train { Some(be.dst(&mut ba.cache, 0..dims.cache_len())) } else { None };
    be.attention_fwd(
        be.src(&ba.qkn, 0..bt * 3 * d),
        be.src(&fixed.rope_cos, 0..be.len(&fixed.rope_cos)),
        be.src(&fixed.rope_sin, 0..be.len(&fixed.rope_sin)),
        be.dst(&mut ba.att, 0..bt * d),
        cache,
        dims,
    );
    lin(be.src(&ba.att, 0..bt * d), &br.proj, be.dst(&mut ba.proj, 0..bt * d), bt, d, d);
    if train {
        let (src, dst) = pair(hs, h_in, h_mid);
        be.copy(be.src(src, 0..bt * d), be.dst(dst, 0..bt * d));
    }
    be.gate_residual_fwd(
        be.src(&ba.proj, 0..bt * d),
        be.src(&ba.ada, 0..ada_n),
        6 * d,
        2 * d,
        be.dst(&mut hs[h_mid], 0..bt * d),
        mod_b,
        mod_t,
        d,
    );
    let stats2 = if train { Some(be.dst(&mut ba.stats2, 0..bt * 2)) } else { None };
    be.norm_mod_fwd(
        NormKind::RmsNorm,
        be.src(&hs[h_mid], 0..bt * d),
        nw(&br.norm2),
        be.src(&ba.ada, 0..ada_n),
        6 * d,
        3 * d,
        4 * d,
        be.dst(&mut ba.n2, 0..bt * d),
        stats2,
        mod_b,
        mod_t,
        d,
    );
    lin(be.src(&ba.n2, 0..bt * d), &br.mlp_in, be.dst(&mut ba.m1, 0..bt * 2 * m), bt, d, 2 * m);
    be.swiglu_fwd(be.src(&ba.m1, 0..bt * 2 * m), be.dst(&mut ba.m_act, 0..bt * m), bt, m);
    lin(be.src(&ba.m_act, 0..bt * m), &br.mlp_out, be.dst(&mut ba.m2, 0..bt * d), bt, m, d);
    if train {
        let (src, dst) = pair(hs, h_mid, h_out);
        be.copy(be.src(src, 0..bt * d), be.dst(dst, 0..bt * d));
    }
    be.gate_residual_fwd(
        be.src(&ba.m2, 0..bt * d),
        be.src(&ba.ada, 0..ada_n),
        6 * d,
        5 * d,
        be.dst(&mut hs[h_out], 0..bt * d),
        mod_b,
        mod_t,
        d,
    );
}

/// Runs the forward pass: inputs in `acts.img` and `acts.tfeat`, result in `acts.out`
/// [B, C, H, W]. `wt` says where the Linear weights are read from.
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
    let (b, t, d, c, p, side) = (acts.batch, cfg.tokens(), cfg.hidden, cfg.in_channels, cfg.patch, cfg.input_size);
    let (bt, pd, train, e) = (b * t, cfg.patch_dim(), acts.train, cfg.encoder_depth());
    let dm = Dims {
        b,
        t,
        d,
        m: cfg.mlp_hidden(),
        heads: cfg.heads,
        dh: cfg.head_dim(),
    };
    let lin = |x: B::Src<'_>, rg: &Range<usize>, y: B::Dst<'_>, n: usize, i: usize, o: usize| wt.apply(be, params, x, rg, y, n, i, o);
    let ddt = acts.ddt.as_mut().expect("DDT activations");

    // Embedders: t_emb, c = SiLU(t_emb + y_emb), patches.
    be.patchify(be.src(&acts.img, 0..b * cfg.image_len()), be.dst(&mut acts.patches, 0..bt * pd), b, c, side, p);
    lin(be.src(&acts.tfeat, 0..be.len(&acts.tfeat)), &r.t0, be.dst(&mut acts.t_hid, 0..b * d), b, 256, d);
    be.silu_fwd(be.src(&acts.t_hid, 0..b * d), be.dst(&mut acts.t_act, 0..b * d));
    lin(be.src(&acts.t_act, 0..b * d), &r.t2, be.dst(&mut ddt.temb, 0..b * d), b, d, d);
    be.embedding_fwd(be.src(params, r.y_table.clone()), labels, be.dst(&mut acts.yemb, 0..b * d), d);
    be.copy(be.src(&ddt.temb, 0..b * d), be.dst(&mut acts.cond, 0..b * d));
    be.add_assign(be.src(&acts.yemb, 0..b * d), be.dst(&mut acts.cond, 0..b * d));
    be.silu_fwd(be.src(&acts.cond, 0..b * d), be.dst(&mut acts.sc, 0..b * d));

    // Encoder over s_embedder tokens, modulated per image.
    let s_emb = r.s_emb.as_ref().expect("DDT s_embedder");
    lin(be.src(&acts.patches, 0..bt * pd), s_emb, be.dst(&mut acts.hs[0], 0..bt * d), bt, pd, d);
    for i in 0..e {
        let ba = &mut acts.blocks[if train { i } else { 0 }];
        let hx = (h_index(train, e, i, 0), h_index(train, e, i, 1), h_index(train, e, i, 2));
        block_fwd(be, &r.blocks[i], params, wt, fixed, &acts.sc, b, t, &mut acts.hs, hx, ba, dm, train);
    }
    // s = SiLU(t_emb + s) per token (t broadcast over the tokens as a row gather).
    let h_enc = if train { 2 * e } else { 0 };
    be.embedding_fwd(be.src(&ddt.temb, 0..b * d), &ddt.tok_batch, be.dst(&mut ddt.s_pre, 0..bt * d), d);
    be.add_assign(be.src(&acts.hs[h_enc], 0..bt * d), be.dst(&mut ddt.s_pre, 0..bt * d));
    be.silu_fwd(be.src(&ddt.s_pre, 0..bt * d), be.dst(&mut ddt.s_act, 0..bt * d));

    // Decoder over x_embedder tokens, modulated per token by s.
    let h_dec = if train { 2 * e + 1 } else { 0 };
    lin(be.src(&acts.patches, 0..bt * pd), &r.x_emb, be.dst(&mut acts.hs[h_dec], 0..bt * d), bt, pd, d);
    for i in e..cfg.depth {
        let ba = &mut acts.blocks[if train { i } else { 0 }];
        let hx = (h_index(train, e, i, 0), h_index(train, e, i, 1), h_index(train, e, i, 2));
        block_fwd(be, &r.blocks[i], params, wt, fixed, &ddt.s_act, bt, 1, &mut acts.hs, hx, ba, dm, train);
    }

    // Final layer: token-wise shift/scale, affine-free LayerNorm, Linear, fold.
    let h_last = if train { 2 * cfg.depth + 1 } else { 0 };
    lin(be.src(&ddt.s_act, 0..bt * d), &r.f_ada, be.dst(&mut acts.f_ada, 0..bt * 2 * d), bt, d, 2 * d);
    let stats_f = if train { Some(be.dst(&mut acts.stats_f, 0..bt * 2)) } else { None };
    be.norm_mod_fwd(
        NormKind::LayerNorm,
        be.src(&acts.hs[h_last], 0..bt * d),
        None,
        be.src(&acts.f_ada, 0..bt * 2 * d),
        2 * d,
        0,
        d,
        be.dst(&mut acts.nf, 0..bt * d),
        stats_f,
        bt,
        1,
        d,
    );
    lin(be.src(&acts.nf, 0..bt * d), &r.f_lin, be.dst(&mut acts.tok_out, 0..bt * pd), bt, d, pd);
    be.patchify_bwd(be.src(&acts.tok_out, 0..bt * pd), be.dst(&mut acts.out, 0..b * cfg.image_len()), b, c, side, p);
}

/// Backward of a Linear whose parameter range is `rg` ([W | b] or [W]): dx assign
/// (skipped if None), dW (and db) accumulate into `grads`.
#[allow(clippy::too_many_arguments)]
fn lin_bwd<B: Backend>(
    be: &B,
    params: &B::Buf,
    grads: &mut B::Buf,
    dy: B::Src<'_>,
    x: B::Src<'_>,
    rg: &Range<usize>,
    dx: Option<B::Dst<'_>>,
    n: usize,
    i: usize,
    o: usize,
) {
    be.linear_bwd(dy, x, be.src(params, rg.clone()), has_bias(rg, i, o), dx, be.dst(grads, rg.clone()), n, i, o);
}

/// One block's backward: `g.dh` holds ∂L/∂(block output) and leaves holding
/// ∂L/∂(block input); the adaLN input's gradient is added to `g.dsc` (encoder, [B, D])
/// or `g.ds` (decoder, [BT, D]).
#[allow(clippy::too_many_arguments)]
fn block_bwd<B: Backend>(
    be: &B,
    br: &BlockRanges,
    params: &B::Buf,
    fixed: &Fixed<B>,
    cond: &B::Buf,
    mod_b: usize,
    mod_t: usize,
    hs: &[B::Buf],
    (h_in, h_mid): (usize, usize),
    ba: &BlockActs<B>,
    grads: &mut B::Buf,
    g: &mut GradScratch<B>,
    encoder: bool,
    dm: Dims,
) {
    let Dims { b, t, d, m, heads, dh } = dm;
    let bt = b * t;
    let ada_n = mod_b * 6 * d;
    let nw = |rg: &Option<Range<usize>>| rg.as_ref().map(|rg| be.src(params, rg.clone()));
    be.zero(be.dst(&mut g.dada, 0..ada_n));
    // MLP branch: h_out = h_mid + g₂ ⊙ w2(SwiGLU(w13(n2))).
    be.gate_residual_bwd(
        be.src(&g.dh, 0..bt * d),
        be.src(&ba.m2, 0..bt * d),
        be.src(&ba.ada, 0..ada_n),
        6 * d,
        5 * d,
        be.dst(&mut g.wide1, 0..bt * d),
        be.dst(&mut g.dada, 0..ada_n),
        mod_b,
        mod_t,
        d,
    );
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.wide1, 0..bt * d),
        be.src(&ba.m_act, 0..bt * m),
        &br.mlp_out,
        Some(be.dst(&mut g.wide2, 0..bt * m)),
        bt,
        m,
        d,
    );
    be.swiglu_bwd(
        be.src(&ba.m1, 0..bt * 2 * m),
        be.src(&g.wide2, 0..bt * m),
        be.dst(&mut g.wide1, 0..bt * 2 * m),
        bt,
        m,
    );
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.wide1, 0..bt * 2 * m),
        be.src(&ba.n2, 0..bt * d),
        &br.mlp_in,
        Some(be.dst(&mut g.wide2, 0..bt * d)),
        bt,
        d,
        2 * m,
    );
    be.norm_mod_bwd(
        NormKind::RmsNorm,
        be.src(&g.wide2, 0..bt * d),
        be.src(&hs[h_mid], 0..bt * d),
        nw(&br.norm2),
        br.norm2.as_ref().map(|rg| be.dst(grads, rg.clone())),
        be.src(&ba.ada, 0..ada_n),
        6 * d,
        3 * d,
        4 * d,
        be.src(&ba.stats2, 0..bt * 2),
        be.dst(&mut g.dh, 0..bt * d),
        be.dst(&mut g.dada, 0..ada_n),
        mod_b,
        mod_t,
        d,
    );
    // Attention branch: h_mid = h_in + g₁ ⊙ proj(attn(rope(qk_norm(qkv(n1))))).
    be.gate_residual_bwd(
        be.src(&g.dh, 0..bt * d),
        be.src(&ba.proj, 0..bt * d),
        be.src(&ba.ada, 0..ada_n),
        6 * d,
        2 * d,
        be.dst(&mut g.wide1, 0..bt * d),
        be.dst(&mut g.dada, 0..ada_n),
        mod_b,
        mod_t,
        d,
    );
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.wide1, 0..bt * d),
        be.src(&ba.att, 0..bt * d),
        &br.proj,
        Some(be.dst(&mut g.wide2, 0..bt * d)),
        bt,
        d,
        d,
    );
    let dims = crate::backend::AttnDims {
        batch: b,
        tokens: t,
        heads,
        head_dim: dh,
        qk_norm: false,
        rope: true,
    };
    be.attention_bwd(
        be.src(&g.wide2, 0..bt * d),
        be.src(&ba.qkn, 0..bt * 3 * d),
        be.src(&fixed.rope_cos, 0..be.len(&fixed.rope_cos)),
        be.src(&fixed.rope_sin, 0..be.len(&fixed.rope_sin)),
        be.src(&ba.cache, 0..dims.cache_len()),
        be.dst(&mut g.wide1, 0..bt * 3 * d),
        dims,
    );
    let qk = br.qk_norm.as_ref().expect("DDT qk-norm");
    be.qk_norm_bwd(
        be.src(&g.wide1, 0..bt * 3 * d),
        be.src(&ba.qkv, 0..bt * 3 * d),
        be.src(params, qk.clone()),
        be.src(&ba.qk_stats, 0..bt * 2 * heads),
        be.dst(&mut g.wide2, 0..bt * 3 * d),
        be.dst(grads, qk.clone()),
        bt,
        heads,
        dh,
    );
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.wide2, 0..bt * 3 * d),
        be.src(&ba.n1, 0..bt * d),
        &br.qkv,
        Some(be.dst(&mut g.wide1, 0..bt * d)),
        bt,
        d,
        3 * d,
    );
    be.norm_mod_bwd(
        NormKind::RmsNorm,
        be.src(&g.wide1, 0..bt * d),
        be.src(&hs[h_in], 0..bt * d),
        nw(&br.norm1),
        br.norm1.as_ref().map(|rg| be.dst(grads, rg.clone())),
        be.src(&ba.ada, 0..ada_n),
        6 * d,
        0,
        d,
        be.src(&ba.stats1, 0..bt * 2),
        be.dst(&mut g.dh, 0..bt * d),
        be.dst(&mut g.dada, 0..ada_n),
        mod_b,
        mod_t,
        d,
    );
    // adaLN Linear: its input (c or s) feeds every block of its half: accumulate.
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.dada, 0..ada_n),
        be.src(cond, 0..mod_b * d),
        &br.ada,
        Some(be.dst(&mut g.wide2, 0..mod_b * d)),
        mod_b,
        d,
        6 * d,
    );
    let target = if encoder { &mut g.dsc } else { &mut g.ds };
    be.add_assign(be.src(&g.wide2, 0..mod_b * d), be.dst(target, 0..mod_b * d));
}

/// Backward pass: `g.dout` [B, C, H, W] holds ∂L/∂out; parameter gradients accumulate
/// into `grads`; with `want_dx`, ∂L/∂x is left in `g.dimg`.
#[allow(clippy::too_many_arguments)]
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
    let (b, t, d, c, p, side) = (acts.batch, cfg.tokens(), cfg.hidden, cfg.in_channels, cfg.patch, cfg.input_size);
    let (bt, pd, e) = (b * t, cfg.patch_dim(), cfg.encoder_depth());
    let dm = Dims {
        b,
        t,
        d,
        m: cfg.mlp_hidden(),
        heads: cfg.heads,
        dh: cfg.head_dim(),
    };
    let img = b * cfg.image_len();
    let ddt = acts.ddt.as_ref().expect("DDT activations");
    let _ = attn_dims(cfg, b); // same sizes as the blocks' caches

    // Final layer (the fold's adjoint is patchify).
    be.patchify(be.src(&g.dout, 0..img), be.dst(&mut g.dtok, 0..bt * pd), b, c, side, p);
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.dtok, 0..bt * pd),
        be.src(&acts.nf, 0..bt * d),
        &r.f_lin,
        Some(be.dst(&mut g.wide1, 0..bt * d)),
        bt,
        d,
        pd,
    );
    be.zero(be.dst(&mut g.dh, 0..bt * d));
    be.zero(be.dst(&mut g.dada, 0..bt * 2 * d));
    be.norm_mod_bwd(
        NormKind::LayerNorm,
        be.src(&g.wide1, 0..bt * d),
        be.src(&acts.hs[2 * cfg.depth + 1], 0..bt * d),
        None,
        None,
        be.src(&acts.f_ada, 0..bt * 2 * d),
        2 * d,
        0,
        d,
        be.src(&acts.stats_f, 0..bt * 2),
        be.dst(&mut g.dh, 0..bt * d),
        be.dst(&mut g.dada, 0..bt * 2 * d),
        bt,
        1,
        d,
    );
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.dada, 0..bt * 2 * d),
        be.src(&ddt.s_act, 0..bt * d),
        &r.f_ada,
        Some(be.dst(&mut g.ds, 0..bt * d)),
        bt,
        d,
        2 * d,
    );

    // Decoder, modulated per token by s.
    for i in (e..cfg.depth).rev() {
        let hx = (h_index(true, e, i, 0), h_index(true, e, i, 1));
        block_bwd(
            be,
            &r.blocks[i],
            params,
            fixed,
            &ddt.s_act,
            bt,
            1,
            &acts.hs,
            hx,
            &acts.blocks[i],
            grads,
            g,
            false,
            dm,
        );
    }
    let dpatch = if want_dx { Some(be.dst(&mut g.dpatch, 0..bt * pd)) } else { None };
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.dh, 0..bt * d),
        be.src(&acts.patches, 0..bt * pd),
        &r.x_emb,
        dpatch,
        bt,
        pd,
        d,
    );

    // s = SiLU(t + encoder output): into the encoder's stream and the timestep embedding.
    be.silu_bwd(be.src(&ddt.s_pre, 0..bt * d), be.src(&g.ds, 0..bt * d), be.dst(&mut g.wide1, 0..bt * d));
    be.copy(be.src(&g.wide1, 0..bt * d), be.dst(&mut g.dh, 0..bt * d));
    be.zero(be.dst(&mut g.dtemb, 0..b * d));
    be.embedding_bwd(be.src(&g.wide1, 0..bt * d), &ddt.tok_batch, be.dst(&mut g.dtemb, 0..b * d), d);

    // Encoder, modulated per image by c.
    be.zero(be.dst(&mut g.dsc, 0..b * d));
    for i in (0..e).rev() {
        let hx = (h_index(true, e, i, 0), h_index(true, e, i, 1));
        block_bwd(
            be,
            &r.blocks[i],
            params,
            fixed,
            &acts.sc,
            b,
            t,
            &acts.hs,
            hx,
            &acts.blocks[i],
            grads,
            g,
            true,
            dm,
        );
    }
    let s_emb = r.s_emb.as_ref().expect("DDT s_embedder");
    let dpatch2 = if want_dx { Some(be.dst(&mut g.dpatch2, 0..bt * pd)) } else { None };
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.dh, 0..bt * d),
        be.src(&acts.patches, 0..bt * pd),
        s_emb,
        dpatch2,
        bt,
        pd,
        d,
    );
    if want_dx {
        be.add_assign(be.src(&g.dpatch2, 0..bt * pd), be.dst(&mut g.dpatch, 0..bt * pd));
        be.patchify_bwd(be.src(&g.dpatch, 0..bt * pd), be.dst(&mut g.dimg, 0..img), b, c, side, p);
    }

    // c = SiLU(t_emb + y_emb); t_emb = mlp(features).
    be.silu_bwd(be.src(&acts.cond, 0..b * d), be.src(&g.dsc, 0..b * d), be.dst(&mut g.small, 0..b * d));
    be.embedding_bwd(be.src(&g.small, 0..b * d), labels, be.dst(grads, r.y_table.clone()), d);
    be.add_assign(be.src(&g.small, 0..b * d), be.dst(&mut g.dtemb, 0..b * d));
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.dtemb, 0..b * d),
        be.src(&acts.t_act, 0..b * d),
        &r.t2,
        Some(be.dst(&mut g.wide1, 0..b * d)),
        b,
        d,
        d,
    );
    be.silu_bwd(be.src(&acts.t_hid, 0..b * d), be.src(&g.wide1, 0..b * d), be.dst(&mut g.wide2, 0..b * d));
    lin_bwd(
        be,
        params,
        grads,
        be.src(&g.wide2, 0..b * d),
        be.src(&acts.tfeat, 0..b * 256),
        &r.t0,
        None,
        b,
        256,
        d,
    );
}
