//! The C API driven from Rust through its exported functions: library queries, the
//! `struct_size` rule, model creation and info, forward and sampling against the engine
//! called directly, files (missing, truncated, corrupt, unwritable), callbacks, two
//! handles on two threads, cancellation from another thread.

mod capi_common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use capi_common::*;
use ucgm::capi::model::*;
use ucgm::capi::sample::*;
use ucgm::capi::*;
use ucgm::{Arch, CpuBackend, ModelConfig, NoiseSource, Rng, SamplerConfig, Stochasticity};

fn cstr(p: *const c_char) -> String {
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn tiny_config(arch: Arch) -> ModelConfig {
    ModelConfig {
        arch,
        input_size: 8,
        in_channels: 4,
        patch: 2,
        hidden: 32,
        depth: 2,
        heads: 2,
        num_classes: 10,
    }
}

/// The engine model holding the same weights as a handle.
fn engine_twin(m: &Model, arch: Arch) -> ucgm::Model<CpuBackend> {
    ucgm::Model::from_params(tiny_config(arch), CpuBackend::new(1).unwrap(), &m.params()).unwrap()
}

#[test]
fn library_queries() {
    assert_eq!(ucgm_abi_version(), UCGM_ABI_VERSION);
    assert_eq!(cstr(ucgm_version()), env!("CARGO_PKG_VERSION"));
    let mut texts = std::collections::HashSet::new();
    for s in 0..=10 {
        let t = cstr(ucgm_status_str(s));
        assert_ne!(t, "unknown status", "status {s}");
        assert!(texts.insert(t), "status {s} shares its text");
    }
    assert_eq!(cstr(ucgm_status_str(UCGM_STATUS_OK)), "ok");
    assert_eq!(cstr(ucgm_status_str(UCGM_STATUS_CANCELLED)), "cancelled");
    assert_eq!(cstr(ucgm_status_str(UCGM_STATUS_OUT_OF_MEMORY)), "out of memory");
    for s in [-1, 11, i32::MAX, i32::MIN] {
        assert_eq!(cstr(ucgm_status_str(s)), "unknown status");
    }

    let mut info = ucgm_system_info {
        struct_size: std::mem::size_of::<ucgm_system_info>(),
        ..Default::default()
    };
    ok(unsafe { ucgm_get_system_info(&mut info) });
    assert_eq!(info.logical_cpus as usize, std::thread::available_parallelism().unwrap().get());
    let cuda = cuda_here();
    let cuda_bit = if cuda.is_ok() { 1 << UCGM_BACKEND_CUDA } else { 0 };
    assert_eq!(info.backends, (1 << UCGM_BACKEND_CPU) | cuda_bit);
    #[cfg(target_arch = "x86_64")]
    assert_ne!(info.simd & UCGM_SIMD_SSE2, 0, "x86-64 always has SSE2");
    let line = cstr(ucgm_system_info_string());
    assert!(
        line.starts_with(&format!("ucgm {} | abi 1 | cpus {}", env!("CARGO_PKG_VERSION"), info.logical_cpus)),
        "{line}"
    );

    ok(ucgm_backend_available(UCGM_BACKEND_CPU));
    ok(ucgm_backend_available(UCGM_BACKEND_AUTO));
    match &cuda {
        Ok(device) => {
            ok(ucgm_backend_available(UCGM_BACKEND_CUDA));
            assert!(line.ends_with(&format!("| backends cpu cuda ({device})")), "{line}");
        }
        Err(why) => {
            let msg = fails(ucgm_backend_available(UCGM_BACKEND_CUDA), UCGM_STATUS_BACKEND, "CUDA backend not available: ");
            assert!(msg.ends_with(why.as_str()), "{msg}");
            assert!(line.ends_with(&format!("| backends cpu (cuda unavailable: {why})")), "{line}");
            #[cfg(not(feature = "cuda"))]
            assert!(why.contains("not built"), "{why}");
        }
    }
    fails(ucgm_backend_available(3), UCGM_STATUS_INVALID_ARGUMENT, "UCGM_BACKEND_CPU (1)");
    assert_eq!(cstr(ucgm_backend_name(UCGM_BACKEND_CUDA)), "cuda");
    assert_eq!(cstr(ucgm_backend_name(-4)), "unknown");
    assert_eq!(cstr(ucgm_transport_name(UCGM_TRANSPORT_EDM)), "EDM");
    assert_eq!(cstr(ucgm_transport_name(6)), "unknown");
}

#[test]
fn last_error_is_per_thread_and_cleared_by_success() {
    fails(
        unsafe { ucgm_forward(ptr::null_mut(), ptr::null(), ptr::null(), ptr::null(), 1, ptr::null_mut(), 0) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "ucgm_forward: invalid argument: model is NULL",
    );
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "", "another thread sees this thread's error");
    assert!(last_error().contains("model is NULL"));
    ok(ucgm_backend_available(UCGM_BACKEND_CPU));
    assert_eq!(last_error(), "");
}

#[test]
fn struct_size_rule() {
    let size = std::mem::size_of::<ucgm_model_params>();
    let mut p = tiny_params(UCGM_ARCH_TIT, 1, 1);
    // Too small, between nothing and the first release, between releases, and absurdly large.
    let [first_release, _] = model_params_sizes();
    for bad in [0, 8, first_release - 8, size - 4, 1 << 20] {
        fails(unsafe { ucgm_model_params_default(&mut p, bad) }, UCGM_STATUS_INVALID_ARGUMENT, "struct_size");
        let mut q = p;
        q.struct_size = bad;
        let mut m = ptr::null_mut();
        fails(
            unsafe { ucgm_model_create(&q, &mut m) },
            UCGM_STATUS_INVALID_ARGUMENT,
            "ucgm_model_params.struct_size",
        );
        assert!(m.is_null());
    }

    // A newer caller: a larger struct whose unknown tail is zero is accepted, a non-zero
    // byte there is rejected. The buffer really has that many bytes.
    #[repr(C)]
    struct Newer {
        p: ucgm_model_params,
        extra: [u64; 3],
    }
    let mut newer = Newer { p, extra: [7; 3] };
    ok(unsafe { ucgm_model_params_default(&mut newer.p, std::mem::size_of::<Newer>()) });
    assert_eq!(newer.p.struct_size, std::mem::size_of::<Newer>());
    assert_eq!(newer.extra, [0; 3], "params_default zeroes the fields it does not know");
    assert_eq!(newer.p.num_classes, 1000, "defaults written");
    newer.p = ucgm_model_params {
        struct_size: std::mem::size_of::<Newer>(),
        ..tiny_params(UCGM_ARCH_TIT, 1, 1)
    };
    let mut m = ptr::null_mut();
    ok(unsafe { ucgm_model_create(&newer.p, &mut m) });
    unsafe { ucgm_model_free(m) };
    newer.extra[2] = 1;
    fails(unsafe { ucgm_model_create(&newer.p, &mut m) }, UCGM_STATUS_INVALID_ARGUMENT, "non-zero");

    // Output structs: the caller's size is kept, bytes past the known fields zeroed.
    let model = Model::create(&tiny_params(UCGM_ARCH_SIT, 1, 1));
    #[repr(C)]
    struct NewerInfo {
        i: ucgm_model_info,
        extra: [u64; 2],
    }
    let mut ni = NewerInfo {
        i: ucgm_model_info {
            struct_size: std::mem::size_of::<NewerInfo>(),
            ..Default::default()
        },
        extra: [9; 2],
    };
    ok(unsafe { ucgm_model_get_info(model.0, &mut ni.i) });
    assert_eq!(ni.i.struct_size, std::mem::size_of::<NewerInfo>());
    assert_eq!((ni.i.hidden, ni.extra), (32, [0, 0]));
    let mut small = ucgm_model_info {
        struct_size: 16,
        ..Default::default()
    };
    fails(
        unsafe { ucgm_model_get_info(model.0, &mut small) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "ucgm_model_info.struct_size = 16",
    );
}

#[test]
fn create_named_and_custom_models() {
    let mut p = tiny_params(UCGM_ARCH_TIT, 3, 1);
    let name = CString::new("TiT-S/2").unwrap();
    p.name = name.as_ptr();
    let m = Model::create(&p);
    let i = m.info();
    assert_eq!(
        (i.arch, i.depth, i.hidden, i.heads, i.patch, i.input_size, i.in_channels, i.num_classes),
        (UCGM_ARCH_TIT, 12, 384, 6, 2, 8, 4, 10)
    );
    let engine = ucgm::ParamLayout::for_config(&ModelConfig::from_name("TiT-S/2", 8, 4, 10).unwrap()).total();
    assert_eq!(i.param_count as usize, engine);
    assert_eq!((i.image_len, i.tokens, i.backend, i.threads), (256, 16, UCGM_BACKEND_CPU, 1));
    drop(m);

    let bad = CString::new("TiT-M/2").unwrap();
    p.name = bad.as_ptr();
    let mut h = ptr::null_mut();
    fails(unsafe { ucgm_model_create(&p, &mut h) }, UCGM_STATUS_INVALID_ARGUMENT, "unknown model size");

    // Custom shape; heads = 0 means hidden / 64.
    let mut c = tiny_params(UCGM_ARCH_SIT, 3, 2);
    c.heads = 0;
    fails(unsafe { ucgm_model_create(&c, &mut h) }, UCGM_STATUS_INVALID_ARGUMENT, "hidden / 64");
    c.hidden = 64;
    let m = Model::create(&c);
    assert_eq!(
        (m.info().heads, m.info().arch, m.info().threads, m.info().mlp_hidden),
        (1, UCGM_ARCH_SIT, 2, 256)
    );

    // Same seed, same weights; the reference init leaves the output layer at zero.
    let a = Model::create(&tiny_params(UCGM_ARCH_TIT, 5, 1)).params();
    let b = Model::create(&tiny_params(UCGM_ARCH_TIT, 5, 1)).params();
    let d = Model::create(&tiny_params(UCGM_ARCH_TIT, 6, 1)).params();
    assert!(a == b && a != d);

    // Backend and thread choices.
    let mut cuda = tiny_params(UCGM_ARCH_TIT, 1, 1);
    cuda.backend = UCGM_BACKEND_CUDA;
    if let Err(why) = cuda_here() {
        h = ptr::dangling_mut(); // must be reset to NULL on failure
        let msg = fails(unsafe { ucgm_model_create(&cuda, &mut h) }, UCGM_STATUS_BACKEND, "CUDA backend not available");
        assert!(msg.ends_with(&why), "{msg}");
        assert!(h.is_null());
    }
    let mut threads = tiny_params(UCGM_ARCH_TIT, 1, -1);
    fails(unsafe { ucgm_model_create(&threads, &mut h) }, UCGM_STATUS_INVALID_ARGUMENT, "threads = -1");
    threads.threads = 0;
    let m = Model::create(&threads);
    assert_eq!(m.info().threads as usize, std::thread::available_parallelism().unwrap().get());
    fails(
        unsafe { ucgm_model_create(&threads, ptr::null_mut()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "out is NULL",
    );
    fails(
        unsafe { ucgm_model_create(ptr::null(), &mut h) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "ucgm_model_params is NULL",
    );
    unsafe { ucgm_model_free(ptr::null_mut()) };
}

#[test]
fn forward_is_the_engine_forward() {
    for arch in [UCGM_ARCH_SIT, UCGM_ARCH_TIT] {
        let m = Model::tiny_random(arch, 11, 2);
        let mut twin = engine_twin(&m, if arch == UCGM_ARCH_SIT { Arch::Sit } else { Arch::Tit });
        let b = 3;
        let x = Rng::new(1).normal_f32(b * IMAGE_LEN);
        let t = [0.2f32, 0.5, 0.95];
        let labels = [0i32, 9, 10]; // 10 = the null class
        let mut out = vec![f32::NAN; x.len()];
        ok(unsafe { ucgm_forward(m.0, x.as_ptr(), t.as_ptr(), labels.as_ptr(), b, out.as_mut_ptr(), out.len()) });
        let mut want = vec![0f32; x.len()];
        twin.forward(&x, &t, &[0, 9, 10], &mut want).unwrap();
        assert!(out == want, "ucgm_forward differs from Model::forward");
        assert!(out.iter().any(|v| *v != 0.0));

        let call = |x: &[f32], t: &[f32], l: &[i32], batch: usize, out: &mut [f32]| unsafe {
            ucgm_forward(m.0, x.as_ptr(), t.as_ptr(), l.as_ptr(), batch, out.as_mut_ptr(), out.len())
        };
        fails(
            call(&x, &t, &[0, 11, 1], b, &mut out),
            UCGM_STATUS_INVALID_ARGUMENT,
            "labels[1] = 11 is outside 0..=10",
        );
        fails(call(&x, &t, &[0, -1, 1], b, &mut out), UCGM_STATUS_INVALID_ARGUMENT, "labels[1] = -1");
        fails(call(&x, &[0.2, f32::NAN, 0.1], &labels, b, &mut out), UCGM_STATUS_NON_FINITE, "t[1]");
        let mut bad_x = x.clone();
        bad_x[77] = f32::INFINITY;
        fails(call(&bad_x, &t, &labels, b, &mut out), UCGM_STATUS_NON_FINITE, "x[77]");
        fails(call(&x, &t, &labels, 0, &mut out), UCGM_STATUS_INVALID_ARGUMENT, "batch");
        fails(
            call(&x, &t, &labels, b, &mut out[..10]),
            UCGM_STATUS_INVALID_ARGUMENT,
            "out: length 10 elements, expected 768",
        );
        fails(
            unsafe { ucgm_forward(m.0, ptr::null(), t.as_ptr(), labels.as_ptr(), b, out.as_mut_ptr(), out.len()) },
            UCGM_STATUS_INVALID_ARGUMENT,
            "x is NULL",
        );
        // The handle still works after every failure.
        ok(call(&x, &t, &labels, b, &mut out));
        assert!(out == want);
    }
}

/// The documented draws of a sampling call without caller noise or labels: z, then one
/// uniform per label, then the step noise, all from `Rng::new(seed)`.
fn engine_sample(twin: &mut ucgm::Model<CpuBackend>, cfg: &SamplerConfig, batch: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let z = rng.normal_f32(batch * IMAGE_LEN);
    let labels: Vec<usize> = (0..batch).map(|_| (rng.uniform() * 10.0) as usize).collect();
    let mut noise = NoiseSource::rng(&mut rng);
    ucgm::sample(twin, &z, &labels, cfg, &mut noise, &mut Default::default()).unwrap().sample
}

#[test]
fn sampling_is_the_engine_sampler_with_the_documented_draws() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 21, 1);
    let mut twin = engine_twin(&m, Arch::Tit);

    // ucgm_sample: defaults, batch 1, seed 0, steps from the argument.
    let mut out = vec![f32::NAN; IMAGE_LEN];
    ok(unsafe { ucgm_sample(m.0, 6, out.as_mut_ptr(), out.len()) });
    let cfg = SamplerConfig {
        steps: 6,
        ..Default::default()
    };
    assert!(out == engine_sample(&mut twin, &cfg, 1, 0));
    assert!(out.iter().all(|v| v.is_finite()));
    fails(
        unsafe { ucgm_sample(m.0, 6, out.as_mut_ptr(), 2 * IMAGE_LEN) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "out: length 512",
    );
    fails(
        unsafe { ucgm_sample(m.0, 100_001, out.as_mut_ptr(), IMAGE_LEN) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "exceeds the limit of 100000",
    );
    // The handle's seed advanced by one per successful ucgm_sample call (one so far).
    let mut second = vec![f32::NAN; IMAGE_LEN];
    ok(unsafe { ucgm_sample(m.0, 6, second.as_mut_ptr(), second.len()) });
    assert!(second == engine_sample(&mut twin, &cfg, 1, 1));
    // steps = 0: the model's preset steps, here none stored, so the default 35.
    ok(unsafe { ucgm_model_set_seed(m.0, 0) });
    ok(unsafe { ucgm_sample(m.0, 0, out.as_mut_ptr(), IMAGE_LEN) });
    let cfg35 = SamplerConfig {
        steps: 35,
        ..Default::default()
    };
    assert!(out == engine_sample(&mut twin, &cfg35, 1, 0));
    ok(unsafe { ucgm_model_set_seed(m.0, 0) });

    // Every setting of ucgm_sample_ext reaches the sampler.
    let mut p = sample_params(5, 3, 42);
    p.transport = UCGM_TRANSPORT_TRIGFLOW;
    p.order = 2;
    p.stochasticity = UCGM_STOCHASTICITY_FIXED;
    p.rho = 0.3;
    p.extrapolation = 0.4;
    p.time_dist_ctrl = [1.17, 0.8, 1.1];
    p.rfba_gap_steps = [0.01, 0.02];
    p.cfg_scale = 1.5;
    p.cfg_interval = [0.1, 0.8];
    let cfg = SamplerConfig {
        transport: ucgm::TransportKind::TrigFlow,
        steps: 5,
        order: 2,
        stochasticity: Stochasticity::Fixed(0.3),
        extrapolation: 0.4,
        time_dist_ctrl: [1.17, 0.8, 1.1],
        rfba_gap_steps: [0.01, 0.02],
        cfg_scale: 1.5,
        cfg_interval: [0.1, 0.8],
        cfg_channels: None,
        return_trajectory: false,
    };
    assert!(m.sample(&p).unwrap() == engine_sample(&mut twin, &cfg, 3, 42));
    p.stochasticity = UCGM_STOCHASTICITY_SDE;
    let sde = SamplerConfig {
        stochasticity: Stochasticity::Sde,
        ..cfg.clone()
    };
    assert!(m.sample(&p).unwrap() == engine_sample(&mut twin, &sde, 3, 42));
}

#[test]
fn caller_noise_labels_trajectory_and_info() {
    let m = Model::tiny_random(UCGM_ARCH_SIT, 8, 1);
    let b = 2;
    let mut p = sample_params(4, b as u32, 9);
    p.rho = 0.5;
    let labels = [3i32, 10];
    p.labels = labels.as_ptr();
    let seeded = m.sample(&p).unwrap();

    // The same draws passed in explicitly give the same samples: z first, then (labels
    // given, so no label draws) one step-noise tensor per step.
    let mut rng = Rng::new(9);
    let z = rng.normal_f32(b * IMAGE_LEN);
    let steps_noise = rng.normal_f32(4 * b * IMAGE_LEN);
    p.noise = z.as_ptr();
    p.noise_len = z.len();
    p.step_noise = steps_noise.as_ptr();
    p.step_noise_len = steps_noise.len();
    p.seed = 12345; // unused now
    assert!(m.sample(&p).unwrap() == seeded);

    // Trajectory and info.
    let mut len = 0usize;
    ok(unsafe { ucgm_sample_trajectory_len(m.0, &p, &mut len) });
    assert_eq!(len, 5 * b * IMAGE_LEN);
    let mut traj = vec![f32::NAN; len];
    let mut out = vec![f32::NAN; b * IMAGE_LEN];
    let mut info = ucgm_sample_info {
        struct_size: std::mem::size_of::<ucgm_sample_info>(),
        ..Default::default()
    };
    ok(unsafe { ucgm_sample_ext(m.0, &p, out.as_mut_ptr(), out.len(), traj.as_mut_ptr(), traj.len(), &mut info) });
    assert!(out == seeded);
    assert!(traj[..b * IMAGE_LEN] == z[..], "trajectory entry 0 is z");
    assert!(traj[4 * b * IMAGE_LEN..] == out[..], "the last entry is the sample");
    assert_eq!((info.grid_points, info.nfe, info.guided_evals, info.noise_tensors), (4, 4, 0, 4));
    fails(
        unsafe { ucgm_sample_ext(m.0, &p, out.as_mut_ptr(), out.len(), traj.as_mut_ptr(), traj.len() - 1, ptr::null_mut()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "trajectory: length",
    );

    // Too little step noise; noise of the wrong length; non-finite noise.
    p.step_noise_len = 3 * b * IMAGE_LEN;
    fails(m.sample(&p).unwrap_err(), UCGM_STATUS_INVALID_ARGUMENT, "provided noise exhausted");
    p.step_noise_len = 3 * b * IMAGE_LEN + 1;
    fails(m.sample(&p).unwrap_err(), UCGM_STATUS_INVALID_ARGUMENT, "not a multiple");
    p.step_noise = ptr::null();
    p.noise_len = z.len() - 1;
    fails(m.sample(&p).unwrap_err(), UCGM_STATUS_INVALID_ARGUMENT, "noise_len");
    let mut bad = z.clone();
    bad[5] = f32::NAN;
    p.noise = bad.as_ptr();
    p.noise_len = bad.len();
    fails(m.sample(&p).unwrap_err(), UCGM_STATUS_NON_FINITE, "noise[5]");

    // Guidance doubles the batch of the evaluations inside the interval.
    let mut g = sample_params(4, 1, 0);
    g.cfg_scale = 2.0;
    ok(unsafe { ucgm_sample_ext(m.0, &g, out.as_mut_ptr(), IMAGE_LEN, ptr::null_mut(), 0, &mut info) });
    assert_eq!((info.nfe, info.guided_evals), (4, 4));
}

#[test]
fn files_missing_truncated_corrupt_and_unwritable() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| CString::new(dir.path().join(name).to_str().unwrap()).unwrap();
    let m = Model::tiny_random(UCGM_ARCH_TIT, 4, 1);
    let good = path("good.safetensors");
    ok(unsafe { ucgm_model_save(m.0, good.as_ptr()) });

    // Reload: same configuration, weights and samples.
    let mut h = ptr::null_mut();
    ok(unsafe { ucgm_model_load(good.as_ptr(), &cpu_load_params(), &mut h) });
    let back = Model(h);
    assert!(back.params() == m.params());
    assert_eq!((back.info().hidden, back.info().heads, back.info().num_classes), (32, 2, 10));
    let p = sample_params(5, 2, 3);
    assert!(back.sample(&p).unwrap() == m.sample(&p).unwrap());

    let mut h = ptr::null_mut();
    let missing = path("missing.safetensors");
    fails(
        unsafe { ucgm_model_load(missing.as_ptr(), ptr::null(), &mut h) },
        UCGM_STATUS_IO,
        "missing.safetensors",
    );
    assert!(h.is_null());

    let bytes = std::fs::read(dir.path().join("good.safetensors")).unwrap();
    for (name, content) in [
        ("truncated.safetensors", bytes[..bytes.len() / 2].to_vec()),
        ("header_only.safetensors", bytes[..6].to_vec()),
        ("empty.safetensors", vec![]),
        ("garbage.safetensors", (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
    ] {
        std::fs::write(dir.path().join(name), content).unwrap();
        let p = path(name);
        fails(unsafe { ucgm_model_load(p.as_ptr(), ptr::null(), &mut h) }, UCGM_STATUS_FORMAT, name);
        assert!(h.is_null());
    }
    // A valid file whose tensors are not a model.
    let other = ucgm::tensor_file::TensorOut::f32("weight", vec![2], &[1.0, 2.0]);
    ucgm::tensor_file::write_atomic(dir.path().join("other.safetensors"), &[other], &Default::default()).unwrap();
    let p = path("other.safetensors");
    fails(
        unsafe { ucgm_model_load(p.as_ptr(), ptr::null(), &mut h) },
        UCGM_STATUS_WEIGHTS,
        "x_embedder.proj.weight",
    );

    // Unwritable destinations: a missing directory, a path below a regular file, a directory.
    for bad in [
        dir.path().join("no/such/dir/m.safetensors"),
        dir.path().join("good.safetensors/m.safetensors"),
        dir.path().to_path_buf(),
    ] {
        let c = CString::new(bad.to_str().unwrap()).unwrap();
        fails(unsafe { ucgm_model_save(m.0, c.as_ptr()) }, UCGM_STATUS_IO, "i/o error");
    }
    assert_eq!(
        std::fs::read(dir.path().join("good.safetensors")).unwrap(),
        bytes,
        "a failed save changed nothing"
    );
    let empty = CString::new("").unwrap();
    fails(unsafe { ucgm_model_save(m.0, empty.as_ptr()) }, UCGM_STATUS_INVALID_ARGUMENT, "path is empty");
    fails(unsafe { ucgm_model_save(m.0, ptr::null()) }, UCGM_STATUS_INVALID_ARGUMENT, "path is NULL");
}

#[test]
fn params_round_trip_and_validation() {
    let m = Model::create(&tiny_params(UCGM_ARCH_TIT, 2, 1));
    let mut w = m.params();
    w.iter_mut().enumerate().for_each(|(i, v)| *v += (i % 7) as f32 * 1e-3);
    ok(unsafe { ucgm_model_write_params(m.0, w.as_ptr(), w.len()) });
    assert!(m.params() == w);
    fails(
        unsafe { ucgm_model_write_params(m.0, w.as_ptr(), w.len() - 1) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "values: length",
    );
    w[3] = f32::NEG_INFINITY;
    fails(
        unsafe { ucgm_model_write_params(m.0, w.as_ptr(), w.len()) },
        UCGM_STATUS_NON_FINITE,
        "values[3]",
    );
    let mut out = vec![0f32; 3];
    fails(
        unsafe { ucgm_model_read_params(m.0, out.as_mut_ptr(), 3) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "out: length 3",
    );
}

unsafe extern "C" fn collect_log(level: ucgm_log_level, msg: *const c_char, ud: *mut c_void) {
    let sink = &*(ud as *const Mutex<Vec<(i32, String)>>);
    sink.lock().unwrap().push((level, CStr::from_ptr(msg).to_string_lossy().into_owned()));
}

#[test]
fn log_callback_receives_creation_work_and_errors() {
    let sink: Mutex<Vec<(i32, String)>> = Mutex::new(vec![]);
    let mut p = tiny_params(UCGM_ARCH_TIT, 1, 1);
    p.log_callback = Some(collect_log);
    p.log_user_data = &sink as *const _ as *mut c_void;
    let m = Model::create(&p);
    m.sample(&sample_params(3, 1, 0)).unwrap();
    let err = m.sample(&sample_params(0, 1, 0)).unwrap_err();
    assert_eq!(err, UCGM_STATUS_INVALID_ARGUMENT);
    let msg = last_error();
    {
        let lines = sink.lock().unwrap();
        let has = |lvl: i32, needle: &str| lines.iter().any(|(l, s)| *l == lvl && s.contains(needle));
        assert!(has(UCGM_LOG_INFO, "created TiT 4x8x8 input"), "{lines:?}");
        assert!(has(UCGM_LOG_INFO, "backend cpu: cpu (1 thread)"), "{lines:?}");
        assert!(has(UCGM_LOG_INFO, "sampled 1 x 4x8x8 in 3 steps"), "{lines:?}");
        assert!(lines.iter().any(|(l, s)| *l == UCGM_LOG_ERROR && *s == msg), "{lines:?}");
    }
    // Cleared: nothing more arrives.
    ok(unsafe { ucgm_model_set_log_callback(m.0, None, ptr::null_mut()) });
    let n = sink.lock().unwrap().len();
    m.sample(&sample_params(2, 1, 0)).unwrap();
    assert_eq!(sink.lock().unwrap().len(), n);
}

#[test]
fn two_handles_on_two_threads_match_each_alone() {
    let a = Model::tiny_random(UCGM_ARCH_TIT, 31, 1);
    let b = Model::tiny_random(UCGM_ARCH_SIT, 32, 1);
    let pa = sample_params(12, 2, 1);
    let pb = sample_params(12, 3, 2);
    let alone_a = a.sample(&pa).unwrap();
    let alone_b = b.sample(&pb).unwrap();
    let x = Rng::new(3).normal_f32(2 * IMAGE_LEN);
    let fwd = |m: SendPtr<ucgm_model>| {
        let mut out = vec![0f32; 2 * IMAGE_LEN];
        ok(unsafe { ucgm_forward(m.0, x.as_ptr(), [0.3f32, 0.7].as_ptr(), [1i32, 2].as_ptr(), 2, out.as_mut_ptr(), out.len()) });
        out
    };
    let fwd_a = fwd(SendPtr(a.0));
    let fwd_b = fwd(SendPtr(b.0));
    for _ in 0..3 {
        let (ha, hb) = (SendPtr(a.0), SendPtr(b.0));
        let (pa, pb) = (
            SendPtr(&pa as *const _ as *mut ucgm_sample_params),
            SendPtr(&pb as *const _ as *mut ucgm_sample_params),
        );
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(move || {
                let (ha, pa) = (ha, pa); // capture the Send wrappers, not their fields
                let m = Model(ha.0);
                let r = (m.sample(unsafe { &*pa.0 }).unwrap(), fwd(ha));
                std::mem::forget(m);
                r
            });
            let tb = s.spawn(move || {
                let (hb, pb) = (hb, pb);
                let m = Model(hb.0);
                let r = (m.sample(unsafe { &*pb.0 }).unwrap(), fwd(hb));
                std::mem::forget(m);
                r
            });
            (ta.join().unwrap(), tb.join().unwrap())
        });
        assert!(ra.0 == alone_a && ra.1 == fwd_a, "handle A differs when B runs beside it");
        assert!(rb.0 == alone_b && rb.1 == fwd_b, "handle B differs when A runs beside it");
    }
}

struct Progress {
    calls: AtomicU64,
    total: AtomicU64,
    stop_after: u64,
}

unsafe extern "C" fn count_progress(done: u64, total: u64, ud: *mut c_void) -> i32 {
    let p = &*(ud as *const Progress);
    let calls = p.calls.fetch_add(1, Ordering::SeqCst) + 1;
    assert_eq!(done, calls, "progress reports steps in order");
    p.total.store(total, Ordering::SeqCst);
    i32::from(p.stop_after != 0 && calls >= p.stop_after)
}

#[test]
fn progress_callback_stops_at_its_step() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 5, 1);
    let prog = Progress {
        calls: AtomicU64::new(0),
        total: AtomicU64::new(0),
        stop_after: 3,
    };
    ok(unsafe { ucgm_model_set_progress_callback(m.0, Some(count_progress), &prog as *const _ as *mut c_void) });
    fails(m.sample(&sample_params(10, 1, 0)).unwrap_err(), UCGM_STATUS_CANCELLED, "cancelled");
    assert_eq!(prog.calls.load(Ordering::SeqCst), 3);
    assert_eq!(prog.total.load(Ordering::SeqCst), 10);
    ok(unsafe { ucgm_model_set_progress_callback(m.0, None, ptr::null_mut()) });
    let full = m.sample(&sample_params(10, 1, 0)).unwrap();
    assert!(full.iter().all(|v| v.is_finite()));
}

#[test]
fn cancel_from_another_thread_stops_sampling_at_the_next_step() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 6, 1);
    let short = sample_params(4, 1, 0);
    let reference = m.sample(&short).unwrap();

    // A cancel made while nothing runs is forgotten when the next call starts.
    ok(unsafe { ucgm_model_cancel(m.0) });
    assert!(m.sample(&short).unwrap() == reference);

    let prog = Progress {
        calls: AtomicU64::new(0),
        total: AtomicU64::new(0),
        stop_after: 0,
    };
    ok(unsafe { ucgm_model_set_progress_callback(m.0, Some(count_progress), &prog as *const _ as *mut c_void) });
    let long = sample_params(100_000, 4, 0);
    let h = SendPtr(m.0);
    let lp = SendPtr(&long as *const _ as *mut ucgm_sample_params);
    let (status, msg, calls_at_cancel) = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let (h, lp) = (h, lp); // capture the Send wrappers, not their fields
            let mut out = vec![0f32; 4 * IMAGE_LEN];
            let st = unsafe { ucgm_sample_ext(h.0, lp.0, out.as_mut_ptr(), out.len(), ptr::null_mut(), 0, ptr::null_mut()) };
            (st, last_error())
        });
        while prog.calls.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        // The handle is busy: a second user is refused, not raced.
        let mut info = ucgm_model_info {
            struct_size: std::mem::size_of::<ucgm_model_info>(),
            ..Default::default()
        };
        fails(
            unsafe { ucgm_model_get_info(m.0, &mut info) },
            UCGM_STATUS_INVALID_ARGUMENT,
            "in use by another thread",
        );
        ok(unsafe { ucgm_model_cancel(m.0) });
        let at = prog.calls.load(Ordering::SeqCst);
        let (st, msg) = worker.join().unwrap();
        (st, msg, at)
    });
    assert_eq!(status, UCGM_STATUS_CANCELLED, "{msg}");
    assert_eq!(msg, "ucgm_sample_ext: cancelled");
    let calls = prog.calls.load(Ordering::SeqCst);
    assert!(
        calls <= calls_at_cancel + 1,
        "{calls} steps ran, cancel came after {calls_at_cancel}: not stopped at the next step"
    );
    assert!(calls < 100_000);

    // Still usable, with the same results as before.
    ok(unsafe { ucgm_model_set_progress_callback(m.0, None, ptr::null_mut()) });
    assert!(m.sample(&short).unwrap() == reference);
}
