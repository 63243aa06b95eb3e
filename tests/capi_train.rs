//! The trainer part of the C API driven from Rust: steps equal the engine's trainer,
//! the loss decreases, `ucgm_train_steps` with progress and cancellation from another
//! thread, exact checkpoint resume, weights out as files and model handles, settings
//! validation, files, and two trainers on two threads.

mod capi_common;

use std::ffi::{c_void, CString};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use capi_common::*;
use ucgm::capi::model::*;
use ucgm::capi::train::*;
use ucgm::capi::*;
use ucgm::trainer::{EnhancedStyle, OptimizerKind, OptimizerSection, TimeWeight, TrainSection, Trainer, TrainerConfig, TransportSection};
use ucgm::{Arch, CpuBackend, ModelConfig, Rng};

/// A fixed little dataset: `n` samples of a per-class pattern plus a little noise, and
/// their labels. x: `[n, 4, 8, 8]`.
fn dataset(n: usize, seed: u64) -> (Vec<f32>, Vec<i32>) {
    let mut rng = Rng::new(seed);
    let labels: Vec<i32> = (0..n).map(|i| (i % 3) as i32).collect();
    let noise = rng.normal_f32(n * IMAGE_LEN);
    let x = (0..n * IMAGE_LEN)
        .map(|k| {
            let (b, j) = (k / IMAGE_LEN, k % IMAGE_LEN);
            let c = labels[b] as f32;
            (0.7 * ((j as f32) * 0.3 + c).sin()) + 0.05 * noise[k]
        })
        .collect();
    (x, labels)
}

fn tiny_config() -> ModelConfig {
    ModelConfig {
        arch: Arch::Tit,
        input_size: 8,
        in_channels: 4,
        patch: 2,
        hidden: 32,
        depth: 2,
        heads: 2,
        num_classes: 10,
    }
}

#[test]
fn steps_are_the_engine_trainer_steps() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 1, 1);
    let mut p = train_params(1e-3, 5);
    p.enhanced_ratio = 0.5;
    p.enhanced_style = UCGM_ENHANCED_FT_VS_FE;
    p.weight_function = UCGM_TIME_WEIGHT_COSINE;
    p.wt_cosine_loss = 1;
    p.time_dist_ctrl = [2.4, 2.4, 1.0];
    p.optimizer = UCGM_OPTIMIZER_RADAM;
    p.max_grad_norm = 0.5;
    p.ema_decay = 0.9;
    let tr = Tr::create(&m, &p);

    let cfg = TrainerConfig {
        transport: TransportSection {
            enhanced_ratio: 0.5,
            enhanced_style: Some(EnhancedStyle::FtVsFe),
            weight_funcion: Some(TimeWeight::Cosine),
            wt_cosine_loss: true,
            time_dist_ctrl: [2.4, 2.4, 1.0],
            ..TransportSection::default()
        },
        optimizer: OptimizerSection {
            kind: OptimizerKind::RAdam,
            lr: 1e-3,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            max_grad_norm: Some(0.5),
            eps: 1e-8,
        },
        train: TrainSection {
            global_seed: 5,
            ema_decay: 0.9,
            ..TrainSection::default()
        },
    };
    let model = ucgm::Model::from_params(tiny_config(), CpuBackend::<f32>::new(1).unwrap(), &m.params()).unwrap();
    let mut engine = Trainer::new(cfg, model).unwrap();

    let (x, labels) = dataset(8, 2);
    let ul: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    for _ in 0..3 {
        let loss = tr.step(&x, &labels);
        let want = engine.train_step(&x, &ul).unwrap();
        assert_eq!(loss.to_bits(), want.loss.to_bits(), "loss {loss} vs {}", want.loss);
        let i = tr.info();
        assert_eq!(
            (i.step, i.last_loss.to_bits(), i.last_grad_norm.to_bits(), i.last_dropped),
            (want.step, want.loss.to_bits(), want.grad_norm.to_bits(), 1)
        );
    }
    assert!(tr.weights(UCGM_WEIGHTS_ONLINE) == engine.model().read_params().unwrap());
    assert!(tr.weights(UCGM_WEIGHTS_EMA) == engine.read_ema().unwrap());
    assert!(tr.weights(UCGM_WEIGHTS_MOD) == engine.read_teacher().unwrap().unwrap());
    assert_eq!(tr.info().has_mod, 1);
    assert!(m.params() != tr.weights(UCGM_WEIGHTS_ONLINE), "the model handle is not trained in place");

    // The caller's t and z.
    let t = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.99];
    let z = Rng::new(9).normal_f32(x.len());
    let mut loss = 0.0;
    ok(unsafe { ucgm_train_step_with(tr.0, x.as_ptr(), labels.as_ptr(), t.as_ptr(), z.as_ptr(), 8, &mut loss) });
    let want = engine.train_step_with(&x, &ul, &t, &z).unwrap();
    assert_eq!(loss.to_bits(), want.loss.to_bits());
    assert!(tr.weights(UCGM_WEIGHTS_ONLINE) == engine.model().read_params().unwrap());

    let call = |t: &[f32], z: &[f32]| unsafe { ucgm_train_step_with(tr.0, x.as_ptr(), labels.as_ptr(), t.as_ptr(), z.as_ptr(), 8, ptr::null_mut()) };
    let mut bad_t = t;
    bad_t[3] = 1.5;
    fails(call(&bad_t, &z), UCGM_STATUS_INVALID_ARGUMENT, "t[3] = 1.5 is outside [0, 1]");
    bad_t[3] = f32::NAN;
    fails(call(&bad_t, &z), UCGM_STATUS_NON_FINITE, "t[3]");
    let mut bad_z = z.clone();
    bad_z[100] = f32::INFINITY;
    fails(call(&t, &bad_z), UCGM_STATUS_NON_FINITE, "z[100]");
    assert_eq!(tr.info().step, 4, "failed steps change nothing");
}

#[test]
fn the_loss_decreases_on_a_fixed_dataset() {
    let m = Model::create(&tiny_params(UCGM_ARCH_TIT, 3, 1));
    let mut p = train_params(2e-3, 1);
    p.lab_drop_ratio = 0.0;
    let tr = Tr::create(&m, &p);
    let (x, labels) = dataset(8, 4);
    let losses: Vec<f64> = (0..60).map(|_| tr.step(&x, &labels)).collect();
    assert!(losses.iter().all(|l| l.is_finite()));
    let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = losses[50..].iter().sum::<f64>() / 10.0;
    eprintln!("mean loss: first 10 steps {first:.4}, last 10 {last:.4}");
    assert!(last < 0.8 * first, "the loss did not decrease: {first} -> {last}");

    // The EMA-weights model samples finite images.
    let mut h = ptr::null_mut();
    ok(unsafe { ucgm_trainer_export_model(tr.0, UCGM_WEIGHTS_ONLINE, &mut h) });
    let trained = Model(h);
    let s = trained.sample(&sample_params(4, 2, 0)).unwrap();
    assert!(s.iter().all(|v| v.is_finite()));
}

#[repr(C)]
struct Progress {
    calls: AtomicU64,
    stop_after: u64,
}

unsafe extern "C" fn on_progress(done: u64, total: u64, ud: *mut c_void) -> i32 {
    let p = &*(ud as *const Progress);
    let calls = p.calls.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(done == calls && total >= done);
    i32::from(p.stop_after != 0 && calls >= p.stop_after)
}

#[test]
fn train_steps_progress_and_cancel_from_another_thread() {
    let m = Model::tiny_random(UCGM_ARCH_SIT, 2, 1);
    let (x, labels) = dataset(4, 1);
    let p = train_params(1e-3, 3);

    // ucgm_train_steps over 3 batches equals three ucgm_train_step calls.
    let a = Tr::create(&m, &p);
    let b = Tr::create(&m, &p);
    let xs: Vec<f32> = [x.clone(), x.clone(), x.clone()].concat();
    let ls: Vec<i32> = [labels.clone(), labels.clone(), labels.clone()].concat();
    let mut losses = [0f64; 3];
    ok(unsafe { ucgm_train_steps(a.0, xs.as_ptr(), ls.as_ptr(), 3, 4, losses.as_mut_ptr(), 3) });
    let one_by_one: Vec<f64> = (0..3).map(|_| b.step(&x, &labels)).collect();
    assert_eq!(losses.to_vec(), one_by_one);
    assert!(a.weights(UCGM_WEIGHTS_ONLINE) == b.weights(UCGM_WEIGHTS_ONLINE));
    fails(
        unsafe { ucgm_train_steps(a.0, xs.as_ptr(), ls.as_ptr(), 3, 4, losses.as_mut_ptr(), 2) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "losses: length 2",
    );
    fails(
        unsafe { ucgm_train_steps(a.0, xs.as_ptr(), ls.as_ptr(), 0, 4, ptr::null_mut(), 0) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "n_batches",
    );

    // The progress callback stops the run at its step; those steps stay applied.
    let stop = Progress {
        calls: AtomicU64::new(0),
        stop_after: 2,
    };
    ok(unsafe { ucgm_trainer_set_progress_callback(a.0, Some(on_progress), &stop as *const _ as *mut c_void) });
    fails(
        unsafe { ucgm_train_steps(a.0, xs.as_ptr(), ls.as_ptr(), 3, 4, ptr::null_mut(), 0) },
        UCGM_STATUS_CANCELLED,
        "ucgm_train_steps: cancelled",
    );
    assert_eq!((stop.calls.load(Ordering::SeqCst), a.info().step), (2, 5));

    // A long run cancelled from another thread stops at the next step.
    let prog = Progress {
        calls: AtomicU64::new(0),
        stop_after: 0,
    };
    ok(unsafe { ucgm_trainer_set_progress_callback(a.0, Some(on_progress), &prog as *const _ as *mut c_void) });
    let n = 2000;
    let big_x: Vec<f32> = x.iter().copied().cycle().take(n * x.len()).collect();
    let big_l: Vec<i32> = labels.iter().copied().cycle().take(n * 4).collect();
    let h = SendPtr(a.0);
    let (status, at) = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let h = h;
            let st = unsafe { ucgm_train_steps(h.0, big_x.as_ptr(), big_l.as_ptr(), n, 4, ptr::null_mut(), 0) };
            (st, last_error())
        });
        while prog.calls.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        ok(unsafe { ucgm_trainer_cancel(a.0) });
        let at = prog.calls.load(Ordering::SeqCst);
        (worker.join().unwrap(), at)
    });
    assert_eq!(status.0, UCGM_STATUS_CANCELLED, "{}", status.1);
    let done = prog.calls.load(Ordering::SeqCst);
    assert!(done <= at + 1 && done < n as u64, "{done} steps ran after a cancel at {at}");
    assert_eq!(a.info().step, 5 + done);
    // Still usable.
    ok(unsafe { ucgm_trainer_set_progress_callback(a.0, None, ptr::null_mut()) });
    assert!(a.step(&x, &labels).is_finite());
    assert_eq!(a.info().step, 6 + done);
}

#[test]
fn checkpoints_resume_exactly_and_weights_load_as_models() {
    let dir = tempfile::tempdir().unwrap();
    let c = |name: &str| CString::new(dir.path().join(name).to_str().unwrap()).unwrap();
    let m = Model::tiny_random(UCGM_ARCH_TIT, 7, 1);
    let mut p = train_params(1e-3, 8);
    p.enhanced_ratio = 0.4;
    p.enhanced_style = UCGM_ENHANCED_FT_VS_FE;
    let (x, labels) = dataset(4, 5);
    let a = Tr::create(&m, &p);
    for _ in 0..3 {
        a.step(&x, &labels);
    }
    let ckpt = c("run.safetensors");
    ok(unsafe { ucgm_trainer_save_checkpoint(a.0, ckpt.as_ptr()) });
    let after: Vec<f64> = (0..3).map(|_| a.step(&x, &labels)).collect();

    let mut h = ptr::null_mut();
    ok(unsafe { ucgm_trainer_resume(ckpt.as_ptr(), &cpu_load_params(), &mut h) });
    let b = Tr(h);
    assert_eq!(b.info().step, 3);
    let resumed: Vec<f64> = (0..3).map(|_| b.step(&x, &labels)).collect();
    assert_eq!(after, resumed, "a resumed run continues bit-identically");
    for w in [UCGM_WEIGHTS_ONLINE, UCGM_WEIGHTS_EMA, UCGM_WEIGHTS_MOD] {
        assert!(a.weights(w) == b.weights(w), "weights {w} differ after resume");
    }

    // A new run from the checkpoint with other settings keeps the step count.
    let mut q = train_params(5e-4, 1);
    q.no_reopt = 1;
    ok(unsafe { ucgm_trainer_create_from_checkpoint(ckpt.as_ptr(), &q, &cpu_load_params(), &mut h) });
    let d = Tr(h);
    assert_eq!(d.info().step, 3);
    assert!(d.step(&x, &labels).is_finite());
    q.no_reopt = 2;
    fails(
        unsafe { ucgm_trainer_create_from_checkpoint(ckpt.as_ptr(), &q, ptr::null(), &mut h) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "no_reopt = 2 is not a boolean",
    );
    assert!(h.is_null());

    // Weights files load as models with the same weights.
    for (w, name) in [(UCGM_WEIGHTS_ONLINE, "online"), (UCGM_WEIGHTS_EMA, "ema"), (UCGM_WEIGHTS_MOD, "mod")] {
        let path = c(&format!("{name}.safetensors"));
        ok(unsafe { ucgm_trainer_save_weights(a.0, w, path.as_ptr()) });
        let mut mh = ptr::null_mut();
        ok(unsafe { ucgm_model_load(path.as_ptr(), &cpu_load_params(), &mut mh) });
        let loaded = Model(mh);
        assert!(loaded.params() == a.weights(w));
        let sp = sample_params(3, 2, 1);
        let mut eh = ptr::null_mut();
        ok(unsafe { ucgm_trainer_export_model(a.0, w, &mut eh) });
        assert!(loaded.sample(&sp).unwrap() == Model(eh).sample(&sp).unwrap());
    }
    fails(
        unsafe { ucgm_trainer_save_weights(a.0, 3, c("x").as_ptr()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "which = 3",
    );

    // `mod` does not exist with ema_decay_rate = 0.
    let mut online = train_params(1e-3, 1);
    online.ema_decay_rate = 0.0;
    let e = Tr::create(&m, &online);
    e.step(&x, &labels);
    assert_eq!(e.info().has_mod, 0);
    let mut mh = ptr::null_mut();
    fails(
        unsafe { ucgm_trainer_export_model(e.0, UCGM_WEIGHTS_MOD, &mut mh) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "`mod` does not exist",
    );
    assert!(mh.is_null());

    // Files: missing, not a checkpoint, corrupt, unwritable.
    fails(
        unsafe { ucgm_trainer_resume(c("missing").as_ptr(), ptr::null(), &mut h) },
        UCGM_STATUS_IO,
        "missing",
    );
    fails(
        unsafe { ucgm_trainer_resume(c("online.safetensors").as_ptr(), ptr::null(), &mut h) },
        UCGM_STATUS_FORMAT,
        "not a trainer checkpoint",
    );
    let bytes = std::fs::read(dir.path().join("run.safetensors")).unwrap();
    std::fs::write(dir.path().join("cut.safetensors"), &bytes[..bytes.len() - 100]).unwrap();
    fails(
        unsafe { ucgm_trainer_resume(c("cut.safetensors").as_ptr(), ptr::null(), &mut h) },
        UCGM_STATUS_FORMAT,
        "cut.safetensors",
    );
    assert!(h.is_null());
    fails(
        unsafe { ucgm_trainer_save_checkpoint(a.0, c("no/dir/x").as_ptr()) },
        UCGM_STATUS_IO,
        "i/o error",
    );
    fails(
        unsafe { ucgm_trainer_save_weights(a.0, UCGM_WEIGHTS_EMA, c("no/dir/x").as_ptr()) },
        UCGM_STATUS_IO,
        "i/o error",
    );
    assert_eq!(std::fs::read(dir.path().join("run.safetensors")).unwrap(), bytes);
}

#[test]
fn settings_batches_and_labels_are_validated() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 1, 1);
    let create = |p: &ucgm_train_params| {
        let mut t = ptr::dangling_mut::<ucgm_trainer>();
        let s = unsafe { ucgm_trainer_create(m.0, p, &mut t) };
        assert!(t.is_null() || s == UCGM_STATUS_OK);
        unsafe { ucgm_trainer_free(t) };
        s
    };
    let base = train_params(1e-3, 0);
    type Edit = fn(&mut ucgm_train_params);
    let cases: [(Edit, i32, &str); 14] = [
        (|p| p.transport = 6, UCGM_STATUS_INVALID_ARGUMENT, "ucgm_train_params.transport = 6"),
        (|p| p.enhanced_style = -1, UCGM_STATUS_INVALID_ARGUMENT, "ucgm_train_params.enhanced_style = -1"),
        (|p| p.enhanced_ratio = 0.5, UCGM_STATUS_INVALID_ARGUMENT, "enhanced_style is required"),
        (|p| p.weight_function = 2, UCGM_STATUS_INVALID_ARGUMENT, "weight_function = 2"),
        (|p| p.optimizer = 9, UCGM_STATUS_INVALID_ARGUMENT, "optimizer = 9"),
        (|p| p.wt_cosine_loss = 7, UCGM_STATUS_INVALID_ARGUMENT, "wt_cosine_loss = 7 is not a boolean"),
        (|p| p.lr = f64::NAN, UCGM_STATUS_NON_FINITE, "ucgm_train_params.lr"),
        (|p| p.lr = -1.0, UCGM_STATUS_INVALID_ARGUMENT, "optimizer.lr"),
        (|p| p.beta2 = 1.0, UCGM_STATUS_INVALID_ARGUMENT, "optimizer.beta2"),
        (|p| p.consistc_ratio = 1.5, UCGM_STATUS_INVALID_ARGUMENT, "consistc_ratio"),
        (|p| p.time_dist_ctrl[1] = f64::INFINITY, UCGM_STATUS_NON_FINITE, "time_dist_ctrl[1]"),
        (|p| p.max_grad_norm = -0.1, UCGM_STATUS_INVALID_ARGUMENT, "max_grad_norm"),
        (|p| p.ema_decay = 2.0, UCGM_STATUS_INVALID_ARGUMENT, "ema_decay"),
        (|p| p.struct_size = 8, UCGM_STATUS_INVALID_ARGUMENT, "ucgm_train_params.struct_size"),
    ];
    for (edit, status, needle) in cases {
        let mut p = base;
        edit(&mut p);
        fails(create(&p), status, needle);
    }
    ok(create(&base));

    let tr = Tr::create(&m, &base);
    let (x, labels) = dataset(3, 0);
    let step = |x: &[f32], l: &[i32], b: usize| unsafe { ucgm_train_step(tr.0, x.as_ptr(), l.as_ptr(), b, ptr::null_mut()) };
    fails(step(&x, &[0, 11, 1], 3), UCGM_STATUS_INVALID_ARGUMENT, "labels[1] = 11 is outside 0..=10");
    fails(step(&x, &[0, -3, 1], 3), UCGM_STATUS_INVALID_ARGUMENT, "labels[1] = -3");
    fails(step(&x, &labels, 0), UCGM_STATUS_INVALID_ARGUMENT, "batch must be at least 1");
    let mut bad = x.clone();
    bad[7] = f32::NAN;
    fails(step(&bad, &labels, 3), UCGM_STATUS_NON_FINITE, "x[7]");
    fails(
        unsafe { ucgm_train_step(tr.0, ptr::null(), labels.as_ptr(), 3, ptr::null_mut()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "x is NULL",
    );
    fails(
        unsafe { ucgm_train_step(ptr::null_mut(), x.as_ptr(), labels.as_ptr(), 3, ptr::null_mut()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "trainer is NULL",
    );
    assert_eq!(tr.info().step, 0);
    ok(step(&x, &[0, 10, 1], 3)); // the null class trains unconditionally
    assert_eq!(tr.info().step, 1);
    unsafe { ucgm_trainer_free(ptr::null_mut()) };
}

#[test]
fn two_trainers_on_two_threads_match_each_alone() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 4, 1);
    let (x, labels) = dataset(4, 2);
    let run = |seed: u64| {
        let tr = Tr::create(&m, &train_params(1e-3, seed));
        let losses: Vec<f64> = (0..4).map(|_| tr.step(&x, &labels)).collect();
        (losses, tr.weights(UCGM_WEIGHTS_EMA))
    };
    let (alone_a, alone_b) = (run(1), run(2));
    let (ta, tb) = (Tr::create(&m, &train_params(1e-3, 1)), Tr::create(&m, &train_params(1e-3, 2)));
    let (ha, hb) = (SendPtr(ta.0), SendPtr(tb.0));
    let work = |h: SendPtr<ucgm_trainer>| {
        let t = Tr(h.0);
        let losses: Vec<f64> = (0..4).map(|_| t.step(&x, &labels)).collect();
        let r = (losses, t.weights(UCGM_WEIGHTS_EMA));
        std::mem::forget(t);
        r
    };
    let (ra, rb) = std::thread::scope(|s| {
        let a = s.spawn(move || work(ha));
        let b = s.spawn(move || work(hb));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(ra == alone_a, "trainer A differs when B trains beside it");
    assert!(rb == alone_b, "trainer B differs when A trains beside it");
}
