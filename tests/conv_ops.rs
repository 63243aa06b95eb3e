//! The CPU image ops against naive float64 references over random shapes (1×1 images,
//! odd sizes, stride 2, asymmetric pads, every kernel shape the VAE, FID Inception and
//! EDM2 UNet use): `conv2d_fwd`, `group_norm_fwd` (+ SiLU), `upsample_nearest2x`,
//! `transpose_batched`; `conv2d_fwd_into` on every plane layout against `conv2d_fwd` +
//! ReLU;
//! plus thread-count independence.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use ucgm::backend::cpu::CpuBackend;
use ucgm::backend::{Conv2dShape, ConvLayout, PlaneLayout};
use ucgm::{Backend, Rng};

fn randn(seed: u64, n: usize) -> Vec<f32> {
    Rng::new(seed).normal_f32(n)
}

fn run_prop<S: Strategy>(name: &str, s: S, f: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    let mut r = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = r.run(&s, f) {
        panic!("{name}: {e}");
    }
}

/// The naive f64 convolution.
pub fn conv_ref(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &Conv2dShape) -> Vec<f64> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut y = vec![0.0; s.y_len()];
    for b in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |bb| bb[co] as f64);
                    for ci in 0..s.c_in {
                        for ky in 0..s.kh {
                            for kx in 0..s.kw {
                                let iy = (oy * s.stride_h + ky) as isize - s.pad_top as isize;
                                let ix = (ox * s.stride_w + kx) as isize - s.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                let xv = x[((b * s.c_in + ci) * s.h + iy as usize) * s.w + ix as usize] as f64;
                                acc += xv * w[((co * s.c_in + ci) * s.kh + ky) * s.kw + kx] as f64;
                            }
                        }
                    }
                    y[((b * s.c_out + co) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    y
}

/// Kernel geometries: (kh, kw, stride, [pad t, b, l, r]) of the VAE, FID Inception and
/// EDM2 UNet convolutions.
fn geometry() -> impl Strategy<Value = (usize, usize, usize, [usize; 4])> {
    select(vec![
        (3, 3, 1, [1, 1, 1, 1]),
        (3, 3, 2, [0, 1, 0, 1]),
        (1, 1, 1, [0, 0, 0, 0]),
        (3, 3, 1, [0, 0, 0, 0]),
        (3, 3, 2, [0, 0, 0, 0]),
        (3, 3, 2, [1, 1, 1, 1]),
        (5, 5, 1, [2, 2, 2, 2]),
        (1, 3, 1, [0, 0, 1, 1]),
        (3, 1, 1, [1, 1, 0, 0]),
        (1, 7, 1, [0, 0, 3, 3]),
        (7, 1, 1, [3, 3, 0, 0]),
        (1, 1, 2, [0, 0, 0, 0]),
    ])
}

/// Element-wise |y − ref| ≤ 1e-5·(Σ|x·w| + |b|) + 1e-30, the f32 accumulation bound
/// (loosely), checked through the relative L2 error instead: ≤ 1e-6.
fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    let (mut n, mut d) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        n += (g as f64 - w).powi(2);
        d += w * w;
    }
    if d == 0.0 {
        n.sqrt()
    } else {
        (n / d).sqrt()
    }
}

#[test]
fn conv2d_matches_f64_reference() {
    let cpu = CpuBackend::<f32>::new(2).unwrap();
    let dims = select(vec![1usize, 2, 3, 5, 7, 8, 13]);
    let chans = select(vec![1usize, 2, 3, 4, 17, 32]);
    let strat = (1usize..=3, chans.clone(), dims.clone(), dims, chans, geometry(), any::<bool>(), any::<u64>());
    run_prop("conv2d", strat, |(n, c_in, h, w, c_out, (kh, kw, st, p), has_bias, seed)| {
        let s = Conv2dShape::padded(n, c_in, h, w, c_out, (kh, kw), st, p);
        if s.validate().is_err() {
            // Kernel larger than the padded image: must be an error, not a panic.
            prop_assert!(s.h + p[0] + p[1] < kh || s.w + p[2] + p[3] < kw);
            return Ok(());
        }
        let (x, wt, b) = (randn(seed, s.x_len()), randn(seed + 1, s.w_len()), randn(seed + 2, c_out));
        let bias = has_bias.then_some(&b[..]);
        let mut y = vec![f32::NAN; s.y_len()];
        cpu.conv2d_fwd(&x, &wt, bias, &mut y, &s);
        let want = conv_ref(&x, &wt, bias, &s);
        let e = rel_l2(&y, &want);
        prop_assert!(e <= 1e-6, "{s:?}: rel-L2 {e:.3e}");
        Ok(())
    });
}

/// `planes` ([n, c] planes of `plane` elements, NCHW) placed as `layout` says in a buffer
/// of `len` elements that starts as `background`.
fn place(planes: &[f32], layout: &PlaneLayout, n: usize, c: usize, plane: usize, background: &[f32]) -> Vec<f32> {
    let mut out = background.to_vec();
    for b in 0..n {
        for ch in 0..c {
            out[layout.plane(b, ch) * plane..][..plane].copy_from_slice(&planes[(b * c + ch) * plane..][..plane]);
        }
    }
    out
}

/// `conv2d_fwd_into` on every plane layout (NCHW, channels-outer, channels of a wider map,
/// in and out) with and without ReLU gives the bits of `conv2d_fwd` on NCHW maps followed
/// by ReLU, in the planes the layout names, and leaves the rest of y alone: on every CPU
/// path (Winograd, small maps grouped over images with and without in-place products,
/// one image in row tiles, pointwise).
#[test]
fn conv2d_layouts_equal_nchw_then_relu() {
    let cpu = CpuBackend::<f32>::new(2).unwrap();
    let shapes = select(vec![
        Conv2dShape::square(3, 16, 9, 7, 24, 3, 1, 1),   // Winograd
        Conv2dShape::square(2, 48, 12, 12, 20, 5, 1, 2), // small maps, grouped
        Conv2dShape::square(3, 24, 10, 10, 16, 1, 1, 0), // pointwise, grouped
        Conv2dShape::square(2, 3, 49, 50, 8, 3, 2, 0),   // one image, row tiles
        Conv2dShape::square(1, 8, 48, 48, 12, 1, 1, 0),  // pointwise, one image
        Conv2dShape::square(2, 20, 50, 46, 17, 3, 1, 1), // Winograd, large
        Conv2dShape {
            kh: 7,
            kw: 1,
            pad_left: 0,
            pad_right: 0,
            ..Conv2dShape::square(3, 12, 17, 17, 10, 7, 1, 3)
        },
    ]);
    // (channels-outer?, channels before, channels after) for x and for y.
    let side = (any::<bool>(), 0usize..4, 0usize..3);
    run_prop(
        "conv2d_into",
        (shapes, side.clone(), side, any::<bool>(), any::<bool>(), any::<u64>()),
        |(s, xs, ys, relu, has_bias, seed)| {
            let layout_of = |(outer, before, after): (bool, usize, usize), c: usize| {
                let total = before + c + after;
                let l = if outer { PlaneLayout::cnhw(s.n) } else { PlaneLayout::nchw(total) };
                (l.from_channel(before), s.n * total)
            };
            let (lx, x_planes) = layout_of(xs, s.c_in);
            let (ly, y_planes) = layout_of(ys, s.c_out);
            let l = ConvLayout { x: lx, y: ly, relu };
            l.validate(&s).unwrap();
            let (hw, p) = (s.h * s.w, s.out_h() * s.out_w());
            let (x, w, b) = (randn(seed, s.x_len()), randn(seed + 1, s.w_len()), randn(seed + 2, s.c_out));
            let bias = has_bias.then_some(&b[..]);
            let mut alone = vec![f32::NAN; s.y_len()];
            cpu.conv2d_fwd(&x, &w, bias, &mut alone, &s);
            if relu {
                cpu.relu_inplace(&mut alone);
            }
            let x_placed = place(&x, &lx, s.n, s.c_in, hw, &randn(seed + 3, x_planes * hw));
            let background = randn(seed + 4, y_planes * p);
            let want = place(&alone, &ly, s.n, s.c_out, p, &background);
            let mut got = background;
            cpu.conv2d_fwd_into(&x_placed, &w, bias, &mut got, &s, &l);
            prop_assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{s:?} {l:?}");
            Ok(())
        },
    );
}

#[test]
fn conv2d_large_tiles_and_any_thread_count_agree() {
    // Large enough to need several im2col row tiles (K·out_w·rows > 4M elements).
    let s = Conv2dShape::square(2, 128, 96, 100, 16, 3, 1, 1);
    let (x, w, b) = (randn(1, s.x_len()), randn(2, s.w_len()), randn(3, 16));
    let runs: Vec<Vec<f32>> = [1, 2, 3]
        .iter()
        .map(|&t| {
            let be = CpuBackend::<f32>::new(t).unwrap();
            let mut y = vec![f32::NAN; s.y_len()];
            be.conv2d_fwd(&x, &w, Some(&b), &mut y, &s);
            y
        })
        .collect();
    assert!(runs[1] == runs[0] && runs[2] == runs[0], "conv2d depends on the thread count");
    // Spot-check one output channel of the second image against f64.
    let s1 = Conv2dShape { n: 1, ..s };
    let want = conv_ref(&x[s1.x_len()..], &w, Some(&b), &s1);
    let e = rel_l2(&runs[0][s1.y_len()..], &want);
    assert!(e <= 1e-6, "rel-L2 {e:.3e}");
}

#[test]
fn group_norm_matches_f64_reference() {
    let cpu = CpuBackend::<f32>::new(2).unwrap();
    let strat = (
        1usize..=3,
        select(vec![(1usize, 1usize), (4, 2), (6, 3), (32, 32), (64, 32), (12, 4)]),
        select(vec![1usize, 3, 17, 64]),
        any::<bool>(),
        any::<u64>(),
    );
    run_prop("group_norm", strat, |(n, (c, groups), hw, silu, seed)| {
        let x: Vec<f32> = randn(seed, n * c * hw).iter().map(|v| 3.0 * v + 1.5).collect();
        let (g, b) = (randn(seed + 1, c), randn(seed + 2, c));
        let mut y = vec![f32::NAN; x.len()];
        cpu.group_norm_fwd(&x, &g, &b, &mut y, n, c, hw, groups, 1e-6, silu);
        // Element-wise against f64: the f32 op rounds the mean and the centred value x − μ
        // (an error of an ulp of |x|, amplified by |γ|/σ), the scale and the sum, so each
        // output may be off by a few ulp of (|x| + |μ|)·|γ|/σ + |β| (SiLU's slope is below 1.1):
        // bound 1e-6·((|x| + |μ|)·|γ|/σ + |β|) + 1e-7 (≈ 16 ulp).
        let cg = c / groups;
        for bi in 0..n {
            for gi in 0..groups {
                let base = (bi * c + gi * cg) * hw;
                let xs: Vec<f64> = x[base..base + cg * hw].iter().map(|&v| v as f64).collect();
                let mean = xs.iter().sum::<f64>() / xs.len() as f64;
                let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / xs.len() as f64;
                let rstd = 1.0 / (var + 1e-6).sqrt();
                for (j, &v) in xs.iter().enumerate() {
                    let ch = gi * cg + j / hw;
                    let (scaled, beta) = ((v - mean) * rstd * g[ch] as f64, b[ch] as f64);
                    let t = scaled + beta;
                    let magnitude = (v.abs() + mean.abs()) * rstd * (g[ch] as f64).abs();
                    let want = if silu { t / (1.0 + (-t).exp()) } else { t };
                    let bound = 1e-6 * (magnitude + beta.abs()) + 1e-7;
                    let got = y[base + j] as f64;
                    prop_assert!((got - want).abs() <= bound, "y[{}] = {got}, want {want} (bound {bound:.2e})", base + j);
                }
            }
        }
        Ok(())
    });
}

#[test]
fn upsample_and_transpose_are_exact() {
    let cpu = CpuBackend::<f32>::new(2).unwrap();
    let strat = (1usize..=3, 1usize..=5, 1usize..=9, 1usize..=40, any::<u64>());
    run_prop("upsample/transpose", strat, |(n, c, h, w, seed)| {
        let x = randn(seed, n * c * h * w);
        let mut y = vec![f32::NAN; 4 * x.len()];
        cpu.upsample_nearest2x(&x, &mut y, n, c, h, w);
        for p in 0..n * c {
            for oy in 0..2 * h {
                for ox in 0..2 * w {
                    prop_assert_eq!(y[(p * 2 * h + oy) * 2 * w + ox], x[(p * h + oy / 2) * w + ox / 2]);
                }
            }
        }
        let (rows, cols) = (c, h * w);
        let mut t = vec![f32::NAN; x.len()];
        cpu.transpose_batched(&x, &mut t, n, rows, cols);
        for b in 0..n {
            for r in 0..rows {
                for cc in 0..cols {
                    prop_assert_eq!(t[b * rows * cols + cc * rows + r], x[b * rows * cols + r * cols + cc]);
                }
            }
        }
        Ok(())
    });
}
