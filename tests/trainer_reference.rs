//! The trainer against one training step of the reference implementation
//! (`../shared/reference/sit_tiny_train_step.safetensors`, three runs T1/T2/T3; see the
//! reference README for the settings and tolerances).

use std::path::PathBuf;

use serde_json::Value;
use ucgm::tensor_file::TensorFile;
use ucgm::trainer::coefficients::{Coef, Coefficients};
use ucgm::trainer::interpolant::regression_target;
use ucgm::trainer::loss::{loss_and_grad, LossShape};
use ucgm::trainer::{OptimizerSection, TrainSection, Trainer, TrainerConfig, TransportSection};
use ucgm::TransportKind;
use ucgm::{Backend, CpuBackend, Model};

const RUNS: [&str; 3] = ["T1_plain_fm", "T2_multistep", "T3_fewstep"];

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference")
}

/// The train-step file and its per-run metadata (loss, grad_norm, cfg).
fn train_step() -> (TensorFile, Value) {
    let f = TensorFile::open(reference_dir().join("sit_tiny_train_step.safetensors")).expect("reference train step file");
    let runs: Value = serde_json::from_str(&f.metadata()["runs"]).expect("runs metadata is JSON");
    (f, runs)
}

/// The run's settings as a `transport:` section (the metadata uses the same key names,
/// except `transport_type` for `type`).
fn transport_of(run: &Value) -> TransportSection {
    let mut cfg = run["cfg"].clone();
    let ty = cfg["transport_type"].take();
    cfg.as_object_mut().unwrap().insert("type".into(), ty);
    let section: TransportSection = serde_json::from_value(cfg).expect("cfg parses as a transport section");
    section.validate().unwrap();
    section
}

/// rel-L2 = ‖a − b‖/‖b‖ and the worst index.
fn rel_l2(a: &[f32], b: &[f32]) -> (f64, usize) {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den, mut worst, mut at) = (0.0f64, 0.0f64, 0.0f64, 0);
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let d = (x as f64 - y as f64).abs();
        num += d * d;
        den += (y as f64).powi(2);
        if d > worst {
            worst = d;
            at = i;
        }
    }
    ((num / den).sqrt(), at)
}

/// The loss of each run, evaluated from the reference's own F_θ and F_tgt, matches the
/// reference loss (this checks §2.7/§2.8 independently of the network).
#[test]
fn loss_from_reference_tensors() {
    let (f, runs) = train_step();
    let t = f.f32_shaped("t", &[8]).unwrap();
    let shape = LossShape {
        batch: 8,
        channels: 4,
        pixels: 64,
    };
    for run in RUNS {
        let spec = transport_of(&runs[run]).loss_spec();
        let out = f.f32_shaped(&format!("{run}__F"), &[8, 4, 8, 8]).unwrap();
        let target = f.f32_shaped(&format!("{run}__target"), &[8, 4, 8, 8]).unwrap();
        let mut grad = vec![0.0f32; out.len()];
        let loss = loss_and_grad(&out, &target, &t, shape, &spec, &mut grad);
        let want = runs[run]["loss"].as_f64().unwrap();
        let rel = (loss - want).abs() / want;
        println!("{run}: loss {loss:.9} vs reference {want:.9}, relative error {rel:.2e}");
        assert!(rel <= 1e-5, "{run}: loss {loss} vs {want}");
    }
}

/// T1 (λ = 0, ζ = 0): the target is the plain regression target F* = z − x.
#[test]
fn plain_target_from_reference_tensors() {
    let (f, _) = train_step();
    let t = f.f32_shaped("t", &[8]).unwrap();
    let x = f.f32_shaped("x", &[8, 4, 8, 8]).unwrap();
    let z = f.f32_shaped("z", &[8, 4, 8, 8]).unwrap();
    let coefs: Vec<Coef> = TransportKind::Linear.at_all(&t);
    let mut target = vec![0.0f32; x.len()];
    regression_target(&coefs, &z, &x, &mut target);
    let (err, at) = rel_l2(&target, &f.f32_shaped("T1_plain_fm__target", &[8, 4, 8, 8]).unwrap());
    println!("T1 target rel-L2 {err:.2e} (worst index {at})");
    assert!(err <= 1e-7, "T1 target rel-L2 {err}");
}

/// A trainer for one run: the reference SiT-tiny weights (4 heads), the run's transport
/// settings; the optimizer does not enter the compared quantities.
fn trainer_for(run: &Value) -> Trainer<CpuBackend> {
    let model = Model::load(reference_dir().join("sit_tiny_weights.safetensors"), CpuBackend::new(0).unwrap(), Some(4)).expect("reference weights");
    let optimizer = OptimizerSection::adamw(1e-4);
    let config = TrainerConfig {
        transport: transport_of(run),
        optimizer,
        train: TrainSection::default(),
    };
    Trainer::new(config, model).unwrap()
}

/// The full step of each run on the reference network: F_θ, F_tgt, the loss and the
/// gradient's global norm.
#[test]
fn training_step_matches_reference() {
    let (f, runs) = train_step();
    let t = f.f32_shaped("t", &[8]).unwrap();
    let x = f.f32_shaped("x", &[8, 4, 8, 8]).unwrap();
    let z = f.f32_shaped("z", &[8, 4, 8, 8]).unwrap();
    let labels: Vec<usize> = f.i64("c").unwrap().1.into_iter().map(|c| c as usize).collect();
    for run in RUNS {
        let meta = &runs[run];
        let mut trainer = trainer_for(meta);
        let step = trainer.forward_backward(&x, &labels, &t, &z).unwrap();
        assert_eq!(step.n_drop, 1);
        assert_eq!(step.labels, vec![0, 1, 2, 3, 4, 5, 6, 10]);
        let (err_f, at_f) = rel_l2(&step.output, &f.f32_shaped(&format!("{run}__F"), &[8, 4, 8, 8]).unwrap());
        let (err_t, at_t) = rel_l2(&step.target, &f.f32_shaped(&format!("{run}__target"), &[8, 4, 8, 8]).unwrap());
        let want_loss = meta["loss"].as_f64().unwrap();
        let err_loss = (step.loss - want_loss).abs() / want_loss;
        let model = trainer.model_mut();
        let n = model.layout().total();
        let be = model.backend().clone();
        let grad_norm = be.sum_squares(be.src(model.grads().unwrap(), 0..n)).sqrt();
        let want_norm = meta["grad_norm"].as_f64().unwrap();
        let err_norm = (grad_norm - want_norm).abs() / want_norm;
        println!(
            "{run}: F rel-L2 {err_f:.2e} (worst {at_f}), target rel-L2 {err_t:.2e} (worst {at_t}), loss rel {err_loss:.2e}, grad norm {grad_norm:.9} vs {want_norm:.9} rel {err_norm:.2e}"
        );
        let target_tol = if run == "T3_fewstep" { 1e-4 } else { 1e-5 };
        assert!(err_f <= 1e-5, "{run}: F rel-L2 {err_f}");
        assert!(err_t <= target_tol, "{run}: target rel-L2 {err_t}");
        assert!(err_loss <= 1e-5, "{run}: loss {} vs {want_loss}", step.loss);
        assert!(err_norm <= 1e-5, "{run}: grad norm {grad_norm} vs {want_norm}");
    }
}
