//! The Fréchet distance: closed forms on Gaussians given directly or sampled, and
//! sanity checks on the built-in shapes dataset (real vs. degraded images).

use ucgm::data::builtin::{BuiltinShapes, Split};
use ucgm::data::Dataset;
use ucgm::metric::{frechet_distance, image_frechet_distance, FeatureSpace, GaussianStats};
use ucgm::{Error, Rng};

/// 3×3 box blur of each channel of `[N, C, H, W]` images, edges clamped.
fn box_blur(x: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = shape;
    let mut out = vec![0.0; x.len()];
    for (img, o) in x.chunks_exact(c * h * w).zip(out.chunks_exact_mut(c * h * w)) {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = 0.0;
                    for dy in -1i64..=1 {
                        for dx in -1i64..=1 {
                            let yy = (y as i64 + dy).clamp(0, h as i64 - 1) as usize;
                            let xc = (xx as i64 + dx).clamp(0, w as i64 - 1) as usize;
                            s += img[(ch * h + yy) * w + xc];
                        }
                    }
                    o[(ch * h + y) * w + xx] = s / 9.0;
                }
            }
        }
    }
    out
}

/// Each image's pixel positions randomly permuted (the same permutation for all
/// channels, so colours survive).
fn shuffle_pixels(x: &[f32], shape: [usize; 3], rng: &mut Rng) -> Vec<f32> {
    let [c, h, w] = shape;
    let hw = h * w;
    let mut out = vec![0.0; x.len()];
    for (img, o) in x.chunks_exact(c * hw).zip(out.chunks_exact_mut(c * hw)) {
        let mut perm: Vec<usize> = (0..hw).collect();
        for i in (1..hw).rev() {
            let j = ((rng.uniform() * (i + 1) as f64) as usize).min(i);
            perm.swap(i, j);
        }
        for ch in 0..c {
            for (p, &q) in perm.iter().enumerate() {
                o[ch * hw + p] = img[ch * hw + q];
            }
        }
    }
    out
}

/// Features `[n, d]` of correlated Gaussian vectors: `z · A` with `A` a fixed random
/// mixing matrix, plus `offset`.
fn correlated(n: usize, d: usize, seed: u64, offset: &[f64]) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let a: Vec<f64> = rng.normal_f32(d * d).into_iter().map(f64::from).collect();
    let z: Vec<f64> = rng.normal_f32(n * d).into_iter().map(f64::from).collect();
    let mut out = vec![0.0; n * d];
    for i in 0..n {
        for j in 0..d {
            out[i * d + j] = offset[j] + (0..d).map(|k| z[i * d + k] * a[k * d + j]).sum::<f64>();
        }
    }
    out
}

fn trace(s: &GaussianStats) -> f64 {
    (0..s.dim()).map(|i| s.cov()[i * s.dim() + i]).sum()
}

/// `R · diag(values) · Rᵀ` with `R = I − 2vvᵀ/‖v‖²` (a Householder reflection).
fn rotated_diag(v: &[f64], values: &[f64]) -> Vec<f64> {
    let d = v.len();
    let vv: f64 = v.iter().map(|x| x * x).sum();
    let r = |i: usize, j: usize| (i == j) as u8 as f64 - 2.0 * v[i] * v[j] / vv;
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = (0..d).map(|k| r(i, k) * values[k] * r(j, k)).sum();
        }
    }
    out
}

#[test]
fn distance_of_a_set_to_itself_is_zero() {
    let d = 64;
    let a = GaussianStats::from_features(&correlated(500, d, 1, &[0.3; 64]), d).unwrap();
    let fd = frechet_distance(&a, &a).unwrap();
    // Eigen-solver rounding is a few ε·d relative to the spectrum (measured ~5e-14).
    assert!(fd.abs() <= 1e-12 * trace(&a), "FD(A, A) = {fd}, tr Σ = {}", trace(&a));
    // The same through images.
    let (x, _) = BuiltinShapes::new(Split::Train, 3, 0).unwrap().render_all(300).unwrap();
    let fd = image_frechet_distance(&x, &x, [3, 16, 16]).unwrap();
    assert!(fd.abs() <= 1e-10, "image FD(A, A) = {fd}");
}

#[test]
fn a_mean_shift_adds_exactly_its_squared_norm() {
    let d = 16;
    let delta: Vec<f64> = (0..d).map(|i| 0.1 * i as f64 - 0.5).collect();
    let x = correlated(400, d, 2, &[0.0; 16]);
    let y = correlated(400, d, 2, &delta); // the same samples, shifted by δ
    let (a, b) = (GaussianStats::from_features(&x, d).unwrap(), GaussianStats::from_features(&y, d).unwrap());
    let want: f64 = delta.iter().map(|v| v * v).sum();
    let fd = frechet_distance(&a, &b).unwrap();
    // Rounding in the centring and the eigen-solvers only (measured ~3e-13).
    assert!((fd - want).abs() <= 1e-11 * (want + trace(&a)), "FD = {fd}, ‖Δμ‖² = {want}");

    // Through images: shifting every pixel by c shifts the (linear) features by the
    // features of a constant image c.
    let shape = [3, 16, 16];
    let (imgs, _) = BuiltinShapes::new(Split::Train, 3, 0).unwrap().render_all(300).unwrap();
    let shifted: Vec<f32> = imgs.iter().map(|v| v + 0.25).collect();
    let space = FeatureSpace::new(shape).unwrap();
    let zero = space.features(&vec![0.0; 768]).unwrap();
    let constant = space.features(&vec![0.25; 768]).unwrap();
    let want: f64 = constant.iter().zip(&zero).map(|(a, b)| (a - b) * (a - b)).sum();
    let fd = image_frechet_distance(&imgs, &shifted, shape).unwrap();
    // f32 images: the shifted pixels carry ~6e-8 relative rounding, which perturbs
    // the covariance slightly (measured ~1.4e-10 relative).
    assert!((fd - want).abs() <= 1e-8 * want, "image FD = {fd}, ‖Δμ‖² = {want}");
}

#[test]
fn closed_form_for_gaussians_sharing_an_eigenbasis() {
    // diag(a), diag(b): FD = ‖Δμ‖² + Σ (√aᵢ − √bᵢ)².
    let a_var = [1.0, 4.0, 0.25, 9.0, 0.0];
    let b_var = [2.0, 1.0, 0.25, 16.0, 1.0];
    let diag = |v: &[f64]| {
        let mut m = vec![0.0; v.len() * v.len()];
        v.iter().enumerate().for_each(|(i, x)| m[i * v.len() + i] = *x);
        m
    };
    let mu_a = vec![0.0, 1.0, 2.0, 3.0, 4.0];
    let mu_b = vec![1.0, 1.0, 0.0, 3.0, 4.5];
    let want_mean: f64 = mu_a.iter().zip(&mu_b).map(|(x, y)| (x - y) * (x - y)).sum();
    let want_cov: f64 = a_var.iter().zip(&b_var).map(|(x, y): (&f64, &f64)| (x.sqrt() - y.sqrt()).powi(2)).sum();
    let want = want_mean + want_cov;
    let a = GaussianStats::new(mu_a.clone(), diag(&a_var)).unwrap();
    let b = GaussianStats::new(mu_b.clone(), diag(&b_var)).unwrap();
    let fd = frechet_distance(&a, &b).unwrap();
    assert!((fd - want).abs() <= 1e-12 * want, "FD = {fd}, closed form {want}");

    // The same kind of spectra in a rotated common basis. Positive definite here: at a
    // zero eigenvalue the square root is ill-conditioned (an eigenvalue rounded to
    // ε·‖Σ‖ has square root √ε·‖Σ‖^½), which the exactly diagonal case above avoids.
    let a_var = [1.0, 4.0, 0.25, 9.0, 0.5];
    let want_cov: f64 = a_var.iter().zip(&b_var).map(|(x, y): (&f64, &f64)| (x.sqrt() - y.sqrt()).powi(2)).sum();
    let want = want_mean + want_cov;
    let v = [0.3, -1.0, 0.7, 0.2, 0.5];
    let a = GaussianStats::new(mu_a, rotated_diag(&v, &a_var)).unwrap();
    let b = GaussianStats::new(mu_b, rotated_diag(&v, &b_var)).unwrap();
    let fd = frechet_distance(&a, &b).unwrap();
    assert!((fd - want).abs() <= 1e-12 * want, "rotated FD = {fd}, closed form {want}");
}

#[test]
fn closed_form_for_non_commuting_2x2_covariances() {
    // For 2×2 SPD M: tr √M = √(tr M + 2√det M). With M = Σ₁^½ Σ₂ Σ₁^½:
    // tr M = tr(Σ₁Σ₂), det M = det Σ₁ · det Σ₂.
    let s1 = [2.0, 0.6, 0.6, 1.0];
    let s2 = [0.5, -0.3, -0.3, 3.0];
    let tr12 = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
    let det = |s: &[f64; 4]| s[0] * s[3] - s[1] * s[2];
    let tr_sqrt = (tr12 + 2.0 * (det(&s1) * det(&s2)).sqrt()).sqrt();
    let mean_term = 0.5f64.powi(2) + 2.0f64.powi(2);
    let want = mean_term + (s1[0] + s1[3]) + (s2[0] + s2[3]) - 2.0 * tr_sqrt;
    let a = GaussianStats::new(vec![0.0, 0.0], s1.to_vec()).unwrap();
    let b = GaussianStats::new(vec![0.5, -2.0], s2.to_vec()).unwrap();
    for fd in [frechet_distance(&a, &b).unwrap(), frechet_distance(&b, &a).unwrap()] {
        assert!((fd - want).abs() <= 1e-12 * want, "FD = {fd}, closed form {want}");
    }
}

#[test]
fn the_distance_is_symmetric_for_unrelated_covariances() {
    let d = 24;
    let a = GaussianStats::from_features(&correlated(200, d, 3, &[0.0; 24]), d).unwrap();
    let b = GaussianStats::from_features(&correlated(300, d, 4, &[0.1; 24]), d).unwrap();
    let (ab, ba) = (frechet_distance(&a, &b).unwrap(), frechet_distance(&b, &a).unwrap());
    assert!(ab > 0.0);
    assert!((ab - ba).abs() <= 1e-12 * ab, "FD(a, b) = {ab}, FD(b, a) = {ba}");
}

#[test]
fn invalid_inputs_are_errors() {
    let two = GaussianStats::new(vec![0.0; 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let three = GaussianStats::new(vec![0.0; 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
    assert!(matches!(frechet_distance(&two, &three), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        GaussianStats::new(vec![0.0; 2], vec![1.0, 0.5, 0.0, 1.0]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        GaussianStats::new(vec![0.0; 2], vec![1.0, 2.0, 2.0, 1.0]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(GaussianStats::new(vec![0.0; 2], vec![1.0; 3]), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        GaussianStats::new(vec![f64::NAN, 0.0], vec![1.0, 0.0, 0.0, 1.0]),
        Err(Error::NonFinite(_))
    ));
    assert!(matches!(GaussianStats::from_features(&[1.0, 2.0], 2), Err(Error::InvalidArgument(_))));
    assert!(matches!(GaussianStats::from_features(&[1.0, 2.0, 3.0], 2), Err(Error::InvalidArgument(_))));
    let x = vec![0.0f32; 2 * 768];
    assert!(matches!(image_frechet_distance(&x, &x[1..], [3, 16, 16]), Err(Error::InvalidArgument(_))));
    let mut y = x.clone();
    y[3] = f32::NAN;
    assert!(matches!(image_frechet_distance(&x, &y, [3, 16, 16]), Err(Error::NonFinite(_))));
}

/// Images `[n, C, 16, 16]` of the built-in dataset, held-out split.
fn held_out(channels: usize, n: usize) -> Vec<f32> {
    BuiltinShapes::new(Split::HeldOut, channels, 0).unwrap().render_all(n).unwrap().0
}

#[test]
fn builtin_dataset_real_images_are_far_closer_than_degraded_ones() {
    let n = 1000;
    for channels in [3usize, 1] {
        let train = BuiltinShapes::new(Split::Train, channels, 0).unwrap();
        let shape = train.sample_shape();
        let (all_train, labels) = train.render_all(2 * n).unwrap();
        let sample_len = train.sample_len();
        let (train_a, train_b) = all_train.split_at(n * sample_len);
        let held = held_out(channels, n);
        let mut rng = Rng::new(1);
        let noise: Vec<f32> = rng.normal_f32(train_a.len()).into_iter().map(|v| v.clamp(-1.0, 1.0)).collect();
        let blurred = box_blur(train_a, shape);
        let shuffled = shuffle_pixels(train_a, shape, &mut rng);
        // Mode collapse: n images of class 0 only.
        let collapsed: Vec<f32> = all_train
            .chunks_exact(sample_len)
            .zip(&labels)
            .filter(|(_, &l)| l == 0)
            .flat_map(|(x, _)| x.iter().copied())
            .collect();
        let fd = |a: &[f32], b: &[f32]| image_frechet_distance(a, b, shape).unwrap();
        let real = fd(train_a, &held);
        let same_split = fd(train_a, train_b);
        let f_noise = fd(&held, &noise);
        let f_blur = fd(&held, &blurred);
        let f_shuffled = fd(&held, &shuffled);
        let f_collapsed = fd(&held, &collapsed);
        println!(
            "C={channels}, n={n}: train/held-out {real:.3}, train/train {same_split:.3}, noise {f_noise:.2}, \
             blur {f_blur:.3}, shuffled {f_shuffled:.3}, one class {f_collapsed:.3}"
        );
        // Held-out images are as close to train images as other train images are: both
        // distances are the finite-sample floor (≈ tr Σ·d/n).
        assert!(real < 2.0 * same_split && same_split < 2.0 * real, "{real} vs {same_split}");
        for (what, bad) in [
            ("noise", f_noise),
            ("blur", f_blur),
            ("shuffled pixels", f_shuffled),
            ("one class", f_collapsed),
        ] {
            assert!(bad > 5.0 * real, "{what}: FD {bad} is not well above the real-data floor {real}");
        }
        assert!(f_noise > f_shuffled && f_noise > f_blur);
    }
}

#[test]
fn the_distance_grows_with_the_amount_of_degradation() {
    let n = 500;
    let (train, _) = BuiltinShapes::new(Split::Train, 3, 0).unwrap().render_all(n).unwrap();
    let held = held_out(3, n);
    let mut rng = Rng::new(9);
    let eps = rng.normal_f32(train.len());
    let mut last = image_frechet_distance(&train, &held, [3, 16, 16]).unwrap();
    for sigma in [0.05f32, 0.1, 0.2, 0.4] {
        let noisy: Vec<f32> = train.iter().zip(&eps).map(|(x, e)| x + sigma * e).collect();
        let fd = image_frechet_distance(&noisy, &held, [3, 16, 16]).unwrap();
        println!("pixel noise σ = {sigma}: FD {fd:.3}");
        assert!(fd > last, "σ = {sigma}: FD {fd} does not exceed {last}");
        last = fd;
    }
}
