//! The C ABI's protections and what it loads: the documented limits at their edges
//! (threads, steps), caller-sized buffers too large for the machine as
//! `UCGM_STATUS_OUT_OF_MEMORY` before any work, training checkpoints loading as models
//! (EMA by default, online or `mod` on request), sampler presets that travel with the
//! weights, the per-handle seed of `ucgm_sample`, damaged files caught by the checksum,
//! and error hints that name functions that exist.

mod capi_common;

use std::ffi::CString;
use std::ptr;

use capi_common::*;
use ucgm::capi::model::*;
use ucgm::capi::sample::*;
use ucgm::capi::train::*;
use ucgm::capi::*;

fn load(path: &CString, p: &ucgm_model_params) -> Result<Model, ucgm_status> {
    let mut m = ptr::null_mut();
    let s = unsafe { ucgm_model_load(path.as_ptr(), p, &mut m) };
    if s == UCGM_STATUS_OK {
        Ok(Model(m))
    } else {
        assert!(m.is_null());
        Err(s)
    }
}

#[test]
fn thread_and_step_limits_at_their_edges() {
    assert_eq!(UCGM_MAX_THREADS, 1024);
    assert_eq!(UCGM_MAX_STEPS, 100_000);
    // 1024 threads is accepted (the pool starts and stops), 1025 is not.
    let m = Model::create(&tiny_params(UCGM_ARCH_SIT, 1, 1024));
    assert_eq!(m.info().threads, 1024);
    drop(m);
    let mut out = ptr::null_mut();
    let s = unsafe { ucgm_model_create(&tiny_params(UCGM_ARCH_SIT, 1, 1025), &mut out) };
    assert_eq!(s, UCGM_STATUS_INVALID_ARGUMENT);
    assert!(last_error().contains("threads = 1025 must lie in 0..=1024"), "{}", last_error());
    assert!(out.is_null());

    let m = Model::tiny_random(UCGM_ARCH_TIT, 3, 1);
    let mut img = vec![0f32; IMAGE_LEN];
    for steps in [100_001u32, 1_000_000_000, u32::MAX] {
        fails(
            unsafe { ucgm_sample(m.0, steps, img.as_mut_ptr(), IMAGE_LEN) },
            UCGM_STATUS_INVALID_ARGUMENT,
            "exceeds the limit of 100000",
        );
        let mut p = sample_params(steps, 1, 0);
        p.steps = steps;
        let mut len = 0usize;
        fails(
            unsafe { ucgm_sample_trajectory_len(m.0, &p, &mut len) },
            UCGM_STATUS_INVALID_ARGUMENT,
            "exceeds the limit",
        );
    }
    // The maximum itself is accepted: its trajectory length is computed, not allocated.
    let p = sample_params(100_000, 1, 0);
    let mut len = 0usize;
    ok(unsafe { ucgm_sample_trajectory_len(m.0, &p, &mut len) });
    assert_eq!(len, 100_001 * IMAGE_LEN);
    ok(unsafe { ucgm_sample(m.0, 1, img.as_mut_ptr(), IMAGE_LEN) });
}

#[test]
fn models_larger_than_memory_are_out_of_memory_not_an_abort() {
    // Within ModelConfig's plausibility bounds, but 3.3 T parameters (13 TB).
    let mut p = tiny_params(UCGM_ARCH_SIT, 1, 1);
    p.hidden = 65536;
    p.heads = 64;
    p.depth = 64;
    let mut out = ptr::null_mut();
    let s = unsafe { ucgm_model_create(&p, &mut out) };
    assert_eq!(s, UCGM_STATUS_OUT_OF_MEMORY, "{}", last_error());
    assert!(out.is_null());
    assert!(last_error().contains("model parameters") && last_error().contains("GiB"), "{}", last_error());
}

#[test]
fn buffers_larger_than_memory_are_out_of_memory_not_an_abort() {
    let m = Model::tiny_random(UCGM_ARCH_SIT, 4, 1);
    // A caller "buffer" of 2^30 images (1 TiB): address space reserved, never touched by
    // the library, which must refuse the request before allocating its own buffers.
    let batch: u32 = 1 << 30;
    let len = batch as usize * IMAGE_LEN;
    let bytes = len * 4;
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        println!("SKIPPED: cannot reserve 1 TiB of address space here");
        return;
    }
    let p = sample_params(4, batch, 0);
    let s = unsafe { ucgm_sample_ext(m.0, &p, base.cast(), len, ptr::null_mut(), 0, ptr::null_mut()) };
    unsafe { libc::munmap(base, bytes) };
    assert_eq!(s, UCGM_STATUS_OUT_OF_MEMORY, "{}", last_error());
    assert!(last_error().contains("GiB") && last_error().contains("sampling buffers"), "{}", last_error());
    assert_eq!(cstr(ucgm_status_str(UCGM_STATUS_OUT_OF_MEMORY)), "out of memory");
    // The handle is unchanged and usable.
    let mut img = vec![0f32; IMAGE_LEN];
    ok(unsafe { ucgm_sample(m.0, 2, img.as_mut_ptr(), IMAGE_LEN) });
    assert!(img.iter().all(|v| v.is_finite()));
}

fn cstr(p: *const std::ffi::c_char) -> String {
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[test]
fn checkpoints_load_as_models_with_the_weights_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let m = Model::tiny_random(UCGM_ARCH_TIT, 7, 1);
    let mut tp = train_params(1e-2, 1);
    tp.ema_decay = 0.5;
    tp.ema_decay_rate = 0.0; // no separate `mod`
    let t = Tr::create(&m, &tp);
    let x = ucgm::Rng::new(3).normal_f32(4 * IMAGE_LEN);
    t.step(&x, &[0, 1, 2, 3]);
    let ckpt = CString::new(dir.path().join("ckpt.safetensors").to_str().unwrap()).unwrap();
    ok(unsafe { ucgm_trainer_save_checkpoint(t.0, ckpt.as_ptr()) });

    let mut p = cpu_load_params();
    assert_eq!(p.checkpoint_weights, UCGM_CHECKPOINT_EMA);
    let ema = load(&ckpt, &p).unwrap();
    assert_eq!(ema.params(), t.weights(UCGM_WEIGHTS_EMA));
    p.checkpoint_weights = UCGM_CHECKPOINT_ONLINE;
    let online = load(&ckpt, &p).unwrap();
    assert_eq!(online.params(), t.weights(UCGM_WEIGHTS_ONLINE));
    assert_ne!(online.params(), ema.params());
    // NULL params: the defaults, i.e. the EMA.
    let mut raw = ptr::null_mut();
    ok(unsafe { ucgm_model_load(ckpt.as_ptr(), ptr::null(), &mut raw) });
    let null_params = Model(raw);
    assert_eq!(null_params.params(), ema.params());
    p.checkpoint_weights = UCGM_CHECKPOINT_MOD;
    assert_eq!(load(&ckpt, &p).err(), Some(UCGM_STATUS_WEIGHTS));
    assert!(last_error().contains("holds no mod weights"), "{}", last_error());
    p.checkpoint_weights = 7;
    assert_eq!(load(&ckpt, &p).err(), Some(UCGM_STATUS_INVALID_ARGUMENT));
    assert!(last_error().contains("checkpoint_weights = 7 is not one of"), "{}", last_error());

    // A damaged checkpoint (finite garbage in the data) is a format error.
    let mut bytes = std::fs::read(dir.path().join("ckpt.safetensors")).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x02;
    std::fs::write(dir.path().join("bad.safetensors"), &bytes).unwrap();
    let bad = CString::new(dir.path().join("bad.safetensors").to_str().unwrap()).unwrap();
    assert_eq!(load(&bad, &cpu_load_params()).err(), Some(UCGM_STATUS_FORMAT));
    assert!(last_error().contains("checksum mismatch"), "{}", last_error());
}

#[test]
fn presets_travel_with_the_weights_and_the_seed_advances() {
    let dir = tempfile::tempdir().unwrap();
    let m = Model::tiny_random(UCGM_ARCH_TIT, 8, 1);
    // No preset: the defaults, has_preset 0.
    let mut got = sample_params(1, 1, 0);
    let mut has = -1;
    ok(unsafe { ucgm_model_get_sample_params(m.0, &mut got, std::mem::size_of::<ucgm_sample_params>(), &mut has) });
    assert_eq!((has, got.steps, got.transport), (0, 35, UCGM_TRANSPORT_LINEAR));

    // Set a few-step preset, save, reload: it comes back and ucgm_sample uses it.
    let mut preset = sample_params(2, 1, 0);
    preset.transport = UCGM_TRANSPORT_TRIGFLOW;
    preset.rho = 1.0;
    preset.rfba_gap_steps = [0.001, 0.3];
    ok(unsafe { ucgm_model_set_sample_params(m.0, &preset) });
    let path = CString::new(dir.path().join("w.safetensors").to_str().unwrap()).unwrap();
    ok(unsafe { ucgm_model_save(m.0, path.as_ptr()) });
    let loaded = load(&path, &cpu_load_params()).unwrap();
    // A loaded model holds its weights once, in the inference layout (plus the scratch of
    // its largest Linear weight); a created one holds the plain layout only until its
    // first inference builds the transposed cache beside it.
    let n = loaded.param_count() as u64;
    let mut twin = ucgm::Model::load(path.to_str().unwrap(), ucgm::CpuBackend::<f32>::new(1).unwrap(), None).unwrap();
    twin.enter_inference_layout().unwrap();
    assert_eq!(loaded.info().bytes_held, twin.weight_bytes() as u64);
    assert!(
        loaded.info().bytes_held > 4 * n && loaded.info().bytes_held < 5 * n,
        "one copy plus one Linear's scratch"
    );
    assert_eq!(loaded.params(), m.params(), "parameters read back in the plain order");
    ok(unsafe { ucgm_model_get_sample_params(loaded.0, &mut got, std::mem::size_of::<ucgm_sample_params>(), &mut has) });
    assert_eq!(has, 1);
    assert_eq!(
        (got.transport, got.steps, got.rho, got.rfba_gap_steps),
        (UCGM_TRANSPORT_TRIGFLOW, 2, 1.0, [0.001, 0.3])
    );

    // ucgm_sample(steps = 0) = ucgm_sample_ext with the preset and the handle's seed;
    // each call advances the seed, so two calls give two images.
    let mut a = vec![0f32; IMAGE_LEN];
    let mut b = vec![0f32; IMAGE_LEN];
    ok(unsafe { ucgm_sample(loaded.0, 0, a.as_mut_ptr(), IMAGE_LEN) });
    ok(unsafe { ucgm_sample(loaded.0, 0, b.as_mut_ptr(), IMAGE_LEN) });
    assert_ne!(a, b, "two ucgm_sample calls gave one picture twice");
    let mut ext = got;
    ext.seed = 0;
    assert_eq!(loaded.sample(&ext).unwrap(), a);
    ext.seed = 1;
    assert_eq!(loaded.sample(&ext).unwrap(), b);
    // Reseeding repeats the sequence; ucgm_sample_ext leaves the handle's seed alone.
    ok(unsafe { ucgm_model_set_seed(loaded.0, 0) });
    ok(unsafe { ucgm_sample(loaded.0, 0, b.as_mut_ptr(), IMAGE_LEN) });
    assert_eq!(a, b);
    ok(unsafe { ucgm_model_get_sample_params(loaded.0, &mut got, std::mem::size_of::<ucgm_sample_params>(), ptr::null_mut()) });
    assert_eq!(got.seed, 1);
    // steps given: overrides the preset's.
    ok(unsafe { ucgm_model_set_seed(loaded.0, 0) });
    ok(unsafe { ucgm_sample(loaded.0, 5, b.as_mut_ptr(), IMAGE_LEN) });
    ext.seed = 0;
    ext.steps = 5;
    assert_eq!(loaded.sample(&ext).unwrap(), b);
    // Clearing the preset: back to the defaults.
    ok(unsafe { ucgm_model_set_sample_params(loaded.0, ptr::null()) });
    ok(unsafe { ucgm_model_get_sample_params(loaded.0, &mut got, std::mem::size_of::<ucgm_sample_params>(), &mut has) });
    assert_eq!((has, got.steps), (0, 35));
    // An invalid preset is refused.
    let mut badp = preset;
    badp.rho = 2.0;
    fails(
        unsafe { ucgm_model_set_sample_params(loaded.0, &badp) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "stochasticity",
    );
}

#[test]
fn struct_size_hints_name_functions_that_exist() {
    let m = Model::tiny_random(UCGM_ARCH_SIT, 9, 1);
    let mut info = ucgm_model_info {
        struct_size: 3,
        ..Default::default()
    };
    let msg = fails(unsafe { ucgm_model_get_info(m.0, &mut info) }, UCGM_STATUS_INVALID_ARGUMENT, "struct_size");
    assert!(msg.contains("sizeof(struct ucgm_model_info)") && !msg.contains("_default()"), "{msg}");
    let mut p = sample_params(1, 1, 0);
    p.struct_size = 3;
    let msg = fails(
        unsafe { ucgm_sample_ext(m.0, &p, ptr::null_mut(), 0, ptr::null_mut(), 0, ptr::null_mut()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "struct_size",
    );
    assert!(msg.contains("ucgm_sample_params_default()"), "{msg}");
}
