//! `ucgm eval` on a tiny random latent TiT, the shared tiny VAE and the shared random
//! FID Inception (20 images of 16×16, 2 steps with ρ = 0.5):
//! * interrupted after 2 batches and resumed, it ends with the same statistics file
//!   (bit for bit), FID and IS as an uninterrupted run;
//! * its statistics, IS and FID equal those computed through the library (the sampler,
//!   VAE and Inception called directly in the same batches, noise from
//!   `Rng::for_index`); batch-size independence to rounding is shown by the 2-rank
//!   run of tests/dist_mpi.rs;
//! * a features file of other settings, too few images, a wrong Inception file, a bad
//!   reference file and a corrupt features file are clear errors.

mod cli_common;
mod common;
mod eval_common;

use eval_common::*;
use ucgm::app::eval::{image_noise, step_draws};
use ucgm::control::RunControl;
use ucgm::fid::{frechet_distance, inception_score, read_stats_npz, FeatureStats};
use ucgm::model::inception::{FidInception, InceptionInput};
use ucgm::{AnyBackend, AnyModel, CpuBackend, NoiseSource, SamplerConfig, Stochasticity};

fn ucgm(args: &[String]) -> (bool, String, String) {
    let mut all: Vec<&str> = vec!["--backend", "cpu", "--threads", "2"];
    all.extend(args.iter().map(String::as_str));
    cli_common::ucgm(&all)
}

fn rel_l2_f64(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn resumed_eval_equals_uninterrupted_and_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let reference = reference_stats(dir.path());
    let (fa, sa) = (dir.path().join("a.safetensors"), dir.path().join("a.npz"));
    let (ok, out_a, err) = ucgm(&eval_args(&model, &reference, &["--features-file", &s(&fa), "--save-stats", &s(&sa)]));
    assert!(ok, "{err}");
    assert!(err.contains("label of image i = i mod 5 (4 per class)"), "{err}");
    let (fid_a, is_a) = (figure(&out_a, "FID "), figure(&out_a, "IS "));
    assert_eq!(figure(&out_a, "images "), 20.0);
    assert!(fid_a.is_finite() && fid_a > 0.0 && is_a > 1.0, "{out_a}");

    // Interrupted after 2 batches (6 images), then resumed.
    let (fb, sb) = (dir.path().join("b.safetensors"), dir.path().join("b.npz"));
    let b_args = eval_args(&model, &reference, &["--features-file", &s(&fb), "--save-stats", &s(&sb), "--save-every", "1"]);
    let mut first = b_args.clone();
    first.extend(["--max-batches".into(), "2".into()]);
    let (ok, out, err) = ucgm(&first);
    assert!(ok, "{err}");
    assert!(out.contains("stopped at image 6 of 20"), "{out}");
    assert!(fb.exists() && !sb.exists());
    let (ok, out_b, err) = ucgm(&b_args);
    assert!(ok, "{err}");
    assert!(err.contains("resuming at image 6"), "{err}");
    assert_eq!(out_b, out_a, "resumed run differs");
    assert_eq!(std::fs::read(&sb).unwrap(), std::fs::read(&sa).unwrap(), "statistics files differ");
    // A finished features file reproduces the result without computing anything.
    let (ok, out_c, err) = ucgm(&b_args);
    assert!(ok && out_c == out_a, "{err}{out_c}");

    // The same figures image by image through the library.
    let cfg = SamplerConfig {
        steps: 2,
        stochasticity: Stochasticity::Fixed(0.5),
        rfba_gap_steps: [0.001, 0.001],
        ..SamplerConfig::default()
    };
    let mut net = AnyModel::load(&model, AnyBackend::cpu(2).unwrap(), None).unwrap();
    net.enter_inference_layout().unwrap();
    let mut vae = ucgm::AnyVae::load(vae(), AnyBackend::cpu(2).unwrap()).unwrap();
    let norm = ucgm::latent_norm::LatentNorm::scale(0.5);
    let inc = FidInception::load(inception(), CpuBackend::<f32>::new(2).unwrap(), InceptionInput::PytorchFid).unwrap();
    let per = 4 * 4 * 4;
    let draws = step_draws(&cfg).unwrap();
    assert_eq!(draws, 2);
    let mut stats = FeatureStats::new(2048).unwrap();
    let mut logits = Vec::new();
    // Batches of 3 as the command's (images 0–2, 3–5, …, 18–19).
    for start in (0..20).step_by(3) {
        let idx: Vec<usize> = (start..(start + 3).min(20)).collect();
        let b = idx.len();
        let (mut z, mut steps) = (Vec::new(), vec![0f32; draws * b * per]);
        for (k, &i) in idx.iter().enumerate() {
            let (zi, si) = image_noise(4, i, per, draws);
            z.extend_from_slice(&zi);
            for d in 0..draws {
                steps[(d * b + k) * per..(d * b + k + 1) * per].copy_from_slice(&si[d * per..(d + 1) * per]);
            }
        }
        let labels: Vec<usize> = idx.iter().map(|i| i % 5).collect();
        let x = ucgm::sample(&mut net, &z, &labels, &cfg, &mut NoiseSource::provided(&steps), &mut RunControl::default()).unwrap();
        let img = ucgm::app::decode::decode_latents(&mut vae, &norm, &x.sample, [b, 4, 4, 4]).unwrap();
        let px: Vec<f32> = img.iter().map(|v| ((v + 1.0) / 2.0).clamp(0.0, 1.0)).collect();
        let o = inc.forward(&px, b, 16, 16).unwrap();
        stats.add_f32(&o.pool3).unwrap();
        logits.extend_from_slice(&o.logits_unbiased);
    }
    let lib = stats.finish().unwrap();
    let cli = read_stats_npz(&sa).unwrap();
    let (dm, dc) = (rel_l2_f64(cli.mean(), lib.mean()), rel_l2_f64(cli.cov(), lib.cov()));
    println!("CLI vs library, same batches: mean rel-L2 {dm:e}, cov rel-L2 {dc:e}");
    // The same computation in the same order: equal (the .npz stores f64 exactly).
    assert!(dm == 0.0 && dc == 0.0, "mean {dm:e} cov {dc:e}");
    let is = inception_score(&logits, 1008, 10).unwrap();
    // The figures are printed in full (shortest round-trip form).
    assert_eq!(is_a, is.mean);
    let fid = frechet_distance(&lib, &read_stats_npz(&reference).unwrap()).unwrap();
    assert_eq!(fid_a, fid);
}

#[test]
fn other_settings_and_bad_input_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let reference = reference_stats(dir.path());
    let f = dir.path().join("f.safetensors");
    let args = |extra: &[&str]| eval_args(&model, &reference, extra);
    let (ok, out, err) = ucgm(&args(&["--features-file", &s(&f), "--max-batches", "1"]));
    assert!(ok && out.contains("stopped at image 3 of 20"), "{err}{out}");
    let saved = std::fs::read(&f).unwrap();
    // Other settings with the same features file: an error naming the difference, file untouched.
    for (flag, value, key) in [("--seed", "5", "seed"), ("--steps", "3", "sampler"), ("--num", "24", "num")] {
        let mut a = args(&["--features-file", &s(&f)]);
        let at = a.iter().position(|v| v == flag).unwrap();
        a[at + 1] = value.into();
        let (ok, _, err) = ucgm(&a);
        assert!(!ok && err.contains("other settings") && err.contains(key), "{flag}: {err}");
    }
    let (ok, _, err) = ucgm(&args(&["--features-file", &s(&f), "--compat"]));
    assert!(!ok && err.contains("input"), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), saved);
    // A corrupt features file.
    std::fs::write(&f, &saved[..saved.len() / 2]).unwrap();
    let (ok, _, err) = ucgm(&args(&["--features-file", &s(&f)]));
    assert!(!ok && err.contains("f.safetensors"), "{err}");
    // Too few images for the Inception Score.
    let mut a = args(&[]);
    let at = a.iter().position(|v| v == "--num").unwrap();
    a[at + 1] = "5".into();
    let (ok, _, err) = ucgm(&a);
    assert!(!ok && err.contains("at least 10 images"), "{err}");
    // A VAE file given as the Inception weights.
    let mut a = args(&[]);
    let at = a.iter().position(|v| v == "--inception").unwrap();
    a[at + 1] = s(&vae());
    let (ok, _, err) = ucgm(&a);
    assert!(!ok && err.contains("not a pytorch-fid FID Inception file"), "{err}");
    // A reference statistics file that is not one: refused before any compute.
    let bad = dir.path().join("bad.npz");
    std::fs::write(&bad, b"not a zip").unwrap();
    let (ok, _, err) = ucgm(&eval_args(&model, &bad, &[]));
    assert!(!ok && err.contains("bad.npz") && err.contains("zip"), "{err}");
}
