//! Finite-difference checks of every CPU op's backward in f64 (design.md §5.1):
//! loss = Σ dout ⊙ op(inputs) with a random dout, central differences with ε = 1e-5,
//! pass at max|fd − an| / max|an| ≤ 1e-6 for every differentiable input.
//!
//! A deliberately wrong backward fails these: f64 differences are accurate to ~1e-10,
//! while a typical slip (a sign in the RoPE transpose, the LayerNorm mean term missing,
//! a gradient assigned where it must accumulate, a wrong softmax Jacobian) produces
//! errors of order 1e-2 or larger. Shapes include 1 and primes.

use ucgm::backend::{AttnDims, Backend, NormKind};
use ucgm::{CpuBackend, Rng};

type Inputs = Vec<Vec<f64>>;

fn be() -> CpuBackend<f64> {
    CpuBackend::<f64>::new(2).unwrap()
}

fn randn(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    rng.normal_f32(n).into_iter().map(|v| v as f64 * scale).collect()
}

/// Checks the gradients `bwd` returns for inputs `check` against central differences.
fn fd_check(name: &str, inputs: Inputs, check: &[usize], fwd: &dyn Fn(&Inputs) -> Vec<f64>, bwd: &dyn Fn(&Inputs, &[f64]) -> Inputs) {
    let mut rng = Rng::new(3);
    let y = fwd(&inputs);
    let dout = randn(&mut rng, y.len(), 1.0);
    let an = bwd(&inputs, &dout);
    let eps = 1e-5;
    for &j in check {
        let an_max = an[j].iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(an_max > 0.0, "{name}: input {j} has an all-zero gradient");
        let n = inputs[j].len();
        let step = (n / 60).max(1);
        let mut err = 0f64;
        for i in (0..n).step_by(step) {
            let mut p = inputs.clone();
            p[j][i] += eps;
            let lp: f64 = fwd(&p).iter().zip(&dout).map(|(a, b)| a * b).sum();
            p[j][i] -= 2.0 * eps;
            let lm: f64 = fwd(&p).iter().zip(&dout).map(|(a, b)| a * b).sum();
            err = err.max(((lp - lm) / (2.0 * eps) - an[j][i]).abs());
        }
        let rel = err / an_max;
        eprintln!("{name} input {j}: {rel:.2e}");
        assert!(rel <= 1e-6, "{name}: input {j}: max|fd − an| / max|an| = {rel:.3e}");
    }
}

#[test]
fn linear() {
    for &(n, i, o, bias) in &[(1, 1, 1, true), (5, 7, 3, true), (13, 4, 11, false)] {
        let b = be();
        let mut rng = Rng::new(1);
        let wlen = o * i + if bias { o } else { 0 };
        let inputs = vec![randn(&mut rng, n * i, 1.0), randn(&mut rng, wlen, 1.0)];
        let fwd = |x: &Inputs| {
            let mut y = vec![0.0; n * o];
            b.linear_fwd(&x[0], &x[1], bias, &mut y, n, i, o);
            y
        };
        let bwd = |x: &Inputs, dy: &[f64]| {
            let mut dx = vec![0.0; n * i];
            let mut dw = vec![0.0; wlen];
            b.linear_bwd(dy, &x[0], &x[1], bias, Some(&mut dx), &mut dw, n, i, o);
            vec![dx, dw]
        };
        fd_check(&format!("linear {n}x{i}x{o}"), inputs, &[0, 1], &fwd, &bwd);
    }
}

#[test]
fn norm_modulate() {
    for kind in [NormKind::LayerNorm, NormKind::RmsNorm] {
        for &(bs, t, d) in &[(1, 1, 3), (2, 3, 7), (3, 5, 2)] {
            let b = be();
            let mut rng = Rng::new(2);
            let stride = 3 * d + 1;
            let inputs = vec![randn(&mut rng, bs * t * d, 1.0), randn(&mut rng, bs * stride, 0.5)];
            let fwd = |x: &Inputs| {
                let mut y = vec![0.0; bs * t * d];
                b.norm_mod_fwd(kind, &x[0], None, &x[1], stride, 1, d + 1, &mut y, None, bs, t, d);
                y
            };
            let bwd = |x: &Inputs, dy: &[f64]| {
                let mut y = vec![0.0; bs * t * d];
                let mut st = vec![0.0; bs * t * 2];
                b.norm_mod_fwd(kind, &x[0], None, &x[1], stride, 1, d + 1, &mut y, Some(&mut st), bs, t, d);
                let mut dx = vec![0.0; bs * t * d];
                let mut da = vec![0.0; bs * stride];
                b.norm_mod_bwd(kind, dy, &x[0], None, None, &x[1], stride, 1, d + 1, &st, &mut dx, &mut da, bs, t, d);
                vec![dx, da]
            };
            // d = 2 LayerNorm is degenerate (normalized values ±1) but still differentiable.
            fd_check(&format!("{kind:?} {bs}x{t}x{d}"), inputs, &[0, 1], &fwd, &bwd);
        }
    }
}

/// The learned norm weight (LightningDiT, DDT): gradients for x, ada and the weight.
#[test]
fn norm_modulate_with_weight() {
    for kind in [NormKind::LayerNorm, NormKind::RmsNorm] {
        for &(bs, t, d) in &[(1, 1, 3), (2, 3, 7), (3, 5, 2)] {
            let b = be();
            let mut rng = Rng::new(3);
            let stride = 3 * d + 1;
            let w: Vec<f64> = randn(&mut rng, d, 0.3).iter().map(|v| 1.0 + v).collect();
            let inputs = vec![randn(&mut rng, bs * t * d, 1.0), randn(&mut rng, bs * stride, 0.5), w];
            let fwd = |x: &Inputs| {
                let mut y = vec![0.0; bs * t * d];
                b.norm_mod_fwd(kind, &x[0], Some(&x[2]), &x[1], stride, 1, d + 1, &mut y, None, bs, t, d);
                y
            };
            let bwd = |x: &Inputs, dy: &[f64]| {
                let mut y = vec![0.0; bs * t * d];
                let mut st = vec![0.0; bs * t * 2];
                b.norm_mod_fwd(kind, &x[0], Some(&x[2]), &x[1], stride, 1, d + 1, &mut y, Some(&mut st), bs, t, d);
                let (mut dx, mut da, mut dw) = (vec![0.0; bs * t * d], vec![0.0; bs * stride], vec![0.0; d]);
                b.norm_mod_bwd(
                    kind,
                    dy,
                    &x[0],
                    Some(&x[2]),
                    Some(&mut dw),
                    &x[1],
                    stride,
                    1,
                    d + 1,
                    &st,
                    &mut dx,
                    &mut da,
                    bs,
                    t,
                    d,
                );
                vec![dx, da, dw]
            };
            fd_check(&format!("weighted {kind:?} {bs}x{t}x{d}"), inputs, &[0, 1, 2], &fwd, &bwd);
        }
    }
}

/// DDT's qk RMSNorm with weights.
#[test]
fn qk_norm() {
    for &(n, heads, dh) in &[(1, 1, 4), (3, 2, 6)] {
        let b = be();
        let mut rng = Rng::new(4);
        let w: Vec<f64> = randn(&mut rng, 2 * dh, 0.3).iter().map(|v| 1.0 + v).collect();
        let inputs = vec![randn(&mut rng, n * 3 * heads * dh, 1.0), w];
        let fwd = |x: &Inputs| {
            let mut y = vec![0.0; n * 3 * heads * dh];
            b.qk_norm_fwd(&x[0], &x[1], &mut y, None, n, heads, dh);
            y
        };
        let bwd = |x: &Inputs, dy: &[f64]| {
            let mut y = vec![0.0; n * 3 * heads * dh];
            let mut st = vec![0.0; n * 2 * heads];
            b.qk_norm_fwd(&x[0], &x[1], &mut y, Some(&mut st), n, heads, dh);
            let (mut dx, mut dw) = (vec![0.0; n * 3 * heads * dh], vec![0.0; 2 * dh]);
            b.qk_norm_bwd(dy, &x[0], &x[1], &st, &mut dx, &mut dw, n, heads, dh);
            vec![dx, dw]
        };
        fd_check(&format!("qk_norm {n}x{heads}x{dh}"), inputs, &[0, 1], &fwd, &bwd);
    }
}

#[test]
fn gated_residual() {
    let (bs, t, d, stride) = (2, 3, 5, 11);
    let b = be();
    let mut rng = Rng::new(4);
    let inputs = vec![
        randn(&mut rng, bs * t * d, 1.0),
        randn(&mut rng, bs * stride, 1.0),
        randn(&mut rng, bs * t * d, 1.0),
    ];
    let fwd = |x: &Inputs| {
        let mut h = x[2].clone();
        b.gate_residual_fwd(&x[0], &x[1], stride, 4, &mut h, bs, t, d);
        h
    };
    let bwd = |x: &Inputs, dh: &[f64]| {
        let mut dy = vec![0.0; bs * t * d];
        let mut da = vec![0.0; bs * stride];
        b.gate_residual_bwd(dh, &x[0], &x[1], stride, 4, &mut dy, &mut da, bs, t, d);
        vec![dy, da, dh.to_vec()]
    };
    fd_check("gate_residual", inputs, &[0, 1, 2], &fwd, &bwd);
}

fn attention_case(bs: usize, t: usize, heads: usize, dh: usize, tit: bool) {
    let b = be();
    let mut rng = Rng::new(5);
    let dims = AttnDims {
        batch: bs,
        tokens: t,
        heads,
        head_dim: dh,
        qk_norm: tit,
        rope: tit,
    };
    let d = heads * dh;
    let cos = randn(&mut rng, t * dh, 1.0);
    let sin = randn(&mut rng, t * dh, 1.0);
    let inputs = vec![randn(&mut rng, bs * t * 3 * d, 1.0)];
    let fwd = |x: &Inputs| {
        let mut o = vec![0.0; bs * t * d];
        b.attention_fwd(&x[0], &cos, &sin, &mut o, None, dims);
        o
    };
    let bwd = |x: &Inputs, dout: &[f64]| {
        let mut o = vec![0.0; bs * t * d];
        let mut cache = vec![0.0; dims.cache_len()];
        b.attention_fwd(&x[0], &cos, &sin, &mut o, Some(&mut cache), dims);
        let mut dqkv = vec![f64::NAN; bs * t * 3 * d];
        b.attention_bwd(dout, &x[0], &cos, &sin, &cache, &mut dqkv, dims);
        vec![dqkv]
    };
    fd_check(&format!("attention b{bs} t{t} h{heads} dh{dh} tit={tit}"), inputs, &[0], &fwd, &bwd);
}

#[test]
fn attention_plain() {
    attention_case(1, 1, 1, 2, false);
    attention_case(2, 5, 3, 2, false);
    attention_case(1, 7, 2, 4, false);
}

#[test]
fn attention_qknorm_rope() {
    attention_case(1, 1, 1, 4, true);
    attention_case(2, 5, 3, 4, true);
    attention_case(1, 7, 2, 8, true);
}

#[test]
fn activations() {
    let b = be();
    let mut rng = Rng::new(6);
    let n = 37;
    let inputs = vec![randn(&mut rng, n, 2.0)];
    let gelu_f = |x: &Inputs| {
        let mut y = vec![0.0; n];
        b.gelu_tanh_fwd(&x[0], &mut y);
        y
    };
    let gelu_b = |x: &Inputs, dy: &[f64]| {
        let mut dx = vec![0.0; n];
        b.gelu_tanh_bwd(&x[0], dy, &mut dx);
        vec![dx]
    };
    fd_check("gelu_tanh", inputs.clone(), &[0], &gelu_f, &gelu_b);
    let silu_f = |x: &Inputs| {
        let mut y = vec![0.0; n];
        b.silu_fwd(&x[0], &mut y);
        y
    };
    let silu_b = |x: &Inputs, dy: &[f64]| {
        let mut dx = vec![0.0; n];
        b.silu_bwd(&x[0], dy, &mut dx);
        vec![dx]
    };
    fd_check("silu", inputs, &[0], &silu_f, &silu_b);
    let (rows, h) = (3, 7);
    let x12 = vec![randn(&mut rng, rows * 2 * h, 2.0)];
    let sw_f = |x: &Inputs| {
        let mut y = vec![0.0; rows * h];
        b.swiglu_fwd(&x[0], &mut y, rows, h);
        y
    };
    let sw_b = |x: &Inputs, dy: &[f64]| {
        let mut dx = vec![0.0; rows * 2 * h];
        b.swiglu_bwd(&x[0], dy, &mut dx, rows, h);
        vec![dx]
    };
    fd_check("swiglu", x12, &[0], &sw_f, &sw_b);
}

#[test]
fn patch_ops_and_embedding() {
    let b = be();
    let mut rng = Rng::new(7);
    let (bs, c, side, p) = (2, 3, 6, 3);
    let t = (side / p) * (side / p);
    let inputs = vec![randn(&mut rng, bs * c * side * side, 1.0)];
    let pf = |x: &Inputs| {
        let mut y = vec![0.0; bs * t * c * p * p];
        b.patchify(&x[0], &mut y, bs, c, side, p);
        y
    };
    let pb = |_: &Inputs, dy: &[f64]| {
        let mut dx = vec![0.0; bs * c * side * side];
        b.patchify_bwd(dy, &mut dx, bs, c, side, p);
        vec![dx]
    };
    fd_check("patchify", inputs.clone(), &[0], &pf, &pb);
    let tok = vec![randn(&mut rng, bs * t * c * p * p, 1.0)];
    let uf = |x: &Inputs| {
        let mut y = vec![0.0; bs * c * side * side];
        b.unpatchify(&x[0], &mut y, bs, c, side, p);
        y
    };
    let ub = |_: &Inputs, dy: &[f64]| {
        let mut dx = vec![0.0; bs * t * c * p * p];
        b.unpatchify_bwd(dy, &mut dx, bs, c, side, p);
        vec![dx]
    };
    fd_check("unpatchify", tok, &[0], &uf, &ub);
    // Unpatchify ∘ patchify is not the identity (channel order differs) — check it differs
    // for C > 1, which is exactly the reference's (c,row,col) vs (row,col,c) quirk.
    let img = &inputs[0];
    let mut patches = vec![0.0; img.len()];
    b.patchify(img, &mut patches, bs, c, side, p);
    let mut back = vec![0.0; img.len()];
    b.unpatchify(&patches, &mut back, bs, c, side, p);
    assert_ne!(&back, img);
    let (k, d) = (4, 5);
    let labels = [3usize, 0, 3];
    let table = vec![randn(&mut rng, k * d, 1.0)];
    let ef = |x: &Inputs| {
        let mut y = vec![0.0; labels.len() * d];
        b.embedding_fwd(&x[0], &labels, &mut y, d);
        y
    };
    let eb = |_: &Inputs, dy: &[f64]| {
        let mut dt = vec![0.0; k * d];
        b.embedding_bwd(dy, &labels, &mut dt, d);
        vec![dt]
    };
    fd_check("embedding", table, &[0], &ef, &eb);
}
