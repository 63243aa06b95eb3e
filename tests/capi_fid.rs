//! FID and Inception Score through the C ABI (`ucgm_inception_*`, `ucgm_fid_stats_*`,
//! `ucgm_fid_distance`, `ucgm_inception_score`) on the shared random FID Inception
//! (`../shared/reference/fid_inception_random.safetensors`, `fid_io_shared`):
//! * pool3 features equal the Rust API's (bit for bit, both modes) and pytorch-fid's
//!   reference (rel-L2 ≤ 1e-5);
//! * statistics accumulated through the handle, saved as `.npz` and loaded back give
//!   the Rust API's Fréchet distance exactly and the reference `fd_ab` within its own
//!   rounding noise (1e-7 relative, see tests/fid_stats.rs); the f32 path equals the
//!   Rust API's; the Inception Score equals the Rust API's;
//! * NULL pointers, wrong modes, lengths and files, pixels outside [0, 1], NaN features
//!   and logits are status codes with messages, and leave the handles usable.

mod common;

use std::ffi::{CStr, CString};
use std::ptr;

use common::{assert_close, reference};
use ucgm::capi::fid::*;
use ucgm::capi::model::*;
use ucgm::capi::*;
use ucgm::fid::{frechet_distance, inception_score, FeatureStats};
use ucgm::model::inception::{FidInception, InceptionInput};
use ucgm::tensor_file::TensorFile;
use ucgm::CpuBackend;

fn last_error() -> String {
    unsafe { CStr::from_ptr(ucgm_last_error_message()) }.to_string_lossy().into_owned()
}

fn cpu_params() -> ucgm_model_params {
    let mut p: ucgm_model_params = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { ucgm_model_params_default(&mut p, std::mem::size_of::<ucgm_model_params>()) },
        UCGM_STATUS_OK
    );
    p.backend = UCGM_BACKEND_CPU;
    p.threads = 2;
    p
}

fn cstr(p: &std::path::Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

fn load(path: &std::path::Path, mode: i32) -> (ucgm_status, *mut ucgm_inception) {
    let mut h = ptr::null_mut();
    let p = cpu_params();
    let st = unsafe { ucgm_inception_load(cstr(path).as_ptr(), &p, mode, &mut h) };
    (st, h)
}

fn io() -> TensorFile {
    TensorFile::open(reference("fid_io_shared.safetensors")).unwrap()
}

/// (pool3, logits) of `images` [n, 3, h, w] through the handle.
fn features(h: *mut ucgm_inception, images: &[f32], n: usize, side: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut pool3, mut logits) = (vec![f32::NAN; n * 2048], vec![f32::NAN; n * 1008]);
    let st = unsafe {
        ucgm_inception_features(
            h,
            images.as_ptr(),
            n,
            side,
            side,
            pool3.as_mut_ptr(),
            pool3.len(),
            logits.as_mut_ptr(),
            logits.len(),
        )
    };
    assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
    (pool3, logits)
}

#[test]
fn features_equal_the_rust_api_and_the_reference() {
    let images = io().f32_shaped("images", &[2, 3, 64, 64]).unwrap();
    let want = io().f32_shaped("pool3", &[2, 2048]).unwrap();
    let weights = reference("fid_inception_random.safetensors");
    for (mode, input) in [
        (UCGM_INCEPTION_PYTORCH_FID, InceptionInput::PytorchFid),
        (UCGM_INCEPTION_TORCH_FIDELITY, InceptionInput::TorchFidelity),
    ] {
        let (st, h) = load(&weights, mode);
        assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
        let (pool3, logits) = features(h, &images, 2, 64);
        let rust = FidInception::load(&weights, CpuBackend::<f32>::new(2).unwrap(), input).unwrap();
        let given: Vec<f32> = match input {
            InceptionInput::PytorchFid => images.clone(),
            InceptionInput::TorchFidelity => images.iter().map(|v| (v * 255.0).trunc()).collect(),
        };
        let r = rust.forward(&given, 2, 64, 64).unwrap();
        assert!(pool3 == r.pool3 && logits == r.logits_unbiased, "{input:?}: C ABI differs from the Rust API");
        if input == InceptionInput::PytorchFid {
            assert_close("pool3 (C ABI)", &pool3, &want, 1e-5);
        }
        // pool3 only (logits NULL).
        let mut p2 = vec![0f32; 2 * 2048];
        let st = unsafe { ucgm_inception_features(h, images.as_ptr(), 2, 64, 64, p2.as_mut_ptr(), p2.len(), ptr::null_mut(), 0) };
        assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
        assert_eq!(p2, pool3);
        unsafe { ucgm_inception_free(h) };
    }
}

fn new_stats(dim: usize) -> *mut ucgm_fid_stats {
    let mut s = ptr::null_mut();
    assert_eq!(unsafe { ucgm_fid_stats_new(dim, &mut s) }, UCGM_STATUS_OK, "{}", last_error());
    s
}

#[test]
fn statistics_npz_distance_and_score() {
    let f = io();
    let (_, a) = f.f64("feats_a").unwrap();
    let (_, b) = f.f64("feats_b").unwrap();
    let fd_ab: f64 = f.metadata()["fd_ab"].parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A in three uneven chunks (f64), saved and read back; B in one.
    let sa = new_stats(2048);
    for (start, end) in [(0, 10), (10, 11), (11, 64)] {
        let st = unsafe { ucgm_fid_stats_add_f64(sa, a[start * 2048..].as_ptr(), end - start) };
        assert_eq!(st, UCGM_STATUS_OK, "{}", last_error());
    }
    let (mut count, mut dim) = (0u64, 0u64);
    assert_eq!(unsafe { ucgm_fid_stats_get_count(sa, &mut count, &mut dim) }, UCGM_STATUS_OK);
    assert_eq!((count, dim), (64, 2048));
    let npz = dir.path().join("a.npz");
    assert_eq!(unsafe { ucgm_fid_stats_save_npz(sa, cstr(&npz).as_ptr()) }, UCGM_STATUS_OK, "{}", last_error());
    let mut la = ptr::null_mut();
    assert_eq!(
        unsafe { ucgm_fid_stats_load_npz(cstr(&npz).as_ptr(), &mut la) },
        UCGM_STATUS_OK,
        "{}",
        last_error()
    );
    let sb = new_stats(2048);
    assert_eq!(unsafe { ucgm_fid_stats_add_f64(sb, b.as_ptr(), 64) }, UCGM_STATUS_OK);
    for first in [sa, la] {
        let mut fd = f64::NAN;
        assert_eq!(unsafe { ucgm_fid_distance(first, sb, &mut fd) }, UCGM_STATUS_OK, "{}", last_error());
        let rel = (fd - fd_ab).abs() / fd_ab;
        println!("C ABI Fréchet distance {fd} vs reference {fd_ab}: rel {rel:e}");
        // fd_ab carries 9e-8 relative of null-space rounding noise (rank-63 covariances;
        // src/fid/frechet.rs, tests/fid_stats.rs use the same bound).
        assert!(rel <= 1e-7, "{fd} vs {fd_ab}");
        // And exactly the Rust API's on the same chunks.
        let mut ra = FeatureStats::new(2048).unwrap();
        for (start, end) in [(0, 10), (10, 11), (11, 64)] {
            ra.add_f64(&a[start * 2048..end * 2048]).unwrap();
        }
        let mut rb = FeatureStats::new(2048).unwrap();
        rb.add_f64(&b).unwrap();
        assert_eq!(fd, frechet_distance(&ra.finish().unwrap(), &rb.finish().unwrap()).unwrap());
    }
    let mut self_fd = f64::NAN;
    assert_eq!(unsafe { ucgm_fid_distance(sa, sa, &mut self_fd) }, UCGM_STATUS_OK, "{}", last_error());
    // Zero up to the same null-space noise (as pytorch-fid; tests/fid_stats.rs).
    assert!(self_fd.abs() < 1e-6 * fd_ab, "{self_fd}");

    // The f32 path equals the Rust API's.
    let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
    let (s32a, s32b) = (new_stats(2048), new_stats(2048));
    assert_eq!(unsafe { ucgm_fid_stats_add(s32a, a32.as_ptr(), 64) }, UCGM_STATUS_OK);
    assert_eq!(unsafe { ucgm_fid_stats_add(s32b, b32.as_ptr(), 64) }, UCGM_STATUS_OK);
    let mut fd32 = f64::NAN;
    assert_eq!(unsafe { ucgm_fid_distance(s32a, s32b, &mut fd32) }, UCGM_STATUS_OK);
    let (mut ra, mut rb) = (FeatureStats::new(2048).unwrap(), FeatureStats::new(2048).unwrap());
    ra.add_f32(&a32).unwrap();
    rb.add_f32(&b32).unwrap();
    assert_eq!(fd32, frechet_distance(&ra.finish().unwrap(), &rb.finish().unwrap()).unwrap());

    // Inception Score equals the Rust API's.
    let logits: Vec<f32> = ucgm::Rng::new(3).normal_f32(40 * 1008).iter().map(|v| 3.0 * v).collect();
    let (mut m, mut s) = (f64::NAN, f64::NAN);
    assert_eq!(
        unsafe { ucgm_inception_score(logits.as_ptr(), 40, 10, &mut m, &mut s) },
        UCGM_STATUS_OK,
        "{}",
        last_error()
    );
    let r = inception_score(&logits, 1008, 10).unwrap();
    assert_eq!((m, s), (r.mean, r.std));
    assert!(m > 1.0);
    for h in [sa, la, sb, s32a, s32b] {
        unsafe { ucgm_fid_stats_free(h) };
    }
}

#[test]
fn bad_input_is_a_status_with_a_message() {
    let weights = reference("fid_inception_random.safetensors");
    let check = |st: ucgm_status, want: ucgm_status, needle: &str| {
        let msg = last_error();
        assert_eq!(st, want, "{msg}");
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    };
    // Loading.
    let mut h = ptr::null_mut();
    check(
        unsafe { ucgm_inception_load(ptr::null(), ptr::null(), 0, &mut h) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "path",
    );
    check(
        unsafe { ucgm_inception_load(cstr(&weights).as_ptr(), ptr::null(), 0, ptr::null_mut()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "out",
    );
    let (st, h) = load(&weights, 7);
    check(st, UCGM_STATUS_INVALID_ARGUMENT, "mode");
    assert!(h.is_null());
    let (st, _) = load(std::path::Path::new("/nonexistent/inception.safetensors"), 0);
    check(st, UCGM_STATUS_IO, "nonexistent");
    let (st, h) = load(&reference("vae_tiny_diffusers.safetensors"), 0);
    check(st, UCGM_STATUS_WEIGHTS, "FID Inception");
    assert!(h.is_null());
    let (st, h) = load(&weights, 0);
    assert_eq!(st, UCGM_STATUS_OK);
    // Features.
    let mut img = vec![0.5f32; 3 * 8 * 8];
    let (mut pool3, mut logits) = (vec![0f32; 2048], vec![0f32; 1008]);
    let call = |img: &[f32], n: usize, p: &mut [f32], pl: usize, l: *mut f32, ll: usize| unsafe {
        ucgm_inception_features(h, img.as_ptr(), n, 8, 8, p.as_mut_ptr(), pl, l, ll)
    };
    check(call(&img, 0, &mut pool3, 0, ptr::null_mut(), 0), UCGM_STATUS_INVALID_ARGUMENT, "n = 0");
    check(call(&img, 1, &mut pool3, 2047, ptr::null_mut(), 0), UCGM_STATUS_INVALID_ARGUMENT, "out_pool3");
    check(
        call(&img, 1, &mut pool3, 2048, logits.as_mut_ptr(), 1000),
        UCGM_STATUS_INVALID_ARGUMENT,
        "out_logits",
    );
    check(
        unsafe { ucgm_inception_features(h, ptr::null(), 1, 8, 8, pool3.as_mut_ptr(), 2048, ptr::null_mut(), 0) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "images",
    );
    check(
        unsafe { ucgm_inception_features(ptr::null_mut(), img.as_ptr(), 1, 8, 8, pool3.as_mut_ptr(), 2048, ptr::null_mut(), 0) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "inception",
    );
    img[5] = 1.5;
    check(
        call(&img, 1, &mut pool3, 2048, ptr::null_mut(), 0),
        UCGM_STATUS_INVALID_ARGUMENT,
        "outside [0, 1]",
    );
    img[5] = f32::NAN;
    check(call(&img, 1, &mut pool3, 2048, ptr::null_mut(), 0), UCGM_STATUS_NON_FINITE, "images");
    img[5] = 0.5;
    assert_eq!(call(&img, 1, &mut pool3, 2048, logits.as_mut_ptr(), 1008), UCGM_STATUS_OK, "{}", last_error());
    unsafe { ucgm_inception_free(h) };

    // Statistics.
    let mut s = ptr::null_mut();
    check(unsafe { ucgm_fid_stats_new(0, &mut s) }, UCGM_STATUS_INVALID_ARGUMENT, "dim 0");
    check(unsafe { ucgm_fid_stats_new(1 << 20, &mut s) }, UCGM_STATUS_INVALID_ARGUMENT, "dim");
    let s = new_stats(4);
    let good = [1f32, 2.0, 3.0, 4.0, 0.0, 1.0, 0.0, 1.0];
    check(unsafe { ucgm_fid_stats_add(s, good.as_ptr(), 1) }, UCGM_STATUS_OK, "");
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("s.npz");
    // One vector has no covariance.
    check(
        unsafe { ucgm_fid_stats_save_npz(s, cstr(&npz).as_ptr()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "at least 2",
    );
    let mut bad = good;
    bad[6] = f32::INFINITY;
    check(unsafe { ucgm_fid_stats_add(s, bad.as_ptr(), 2) }, UCGM_STATUS_NON_FINITE, "features");
    check(unsafe { ucgm_fid_stats_add(s, ptr::null(), 2) }, UCGM_STATUS_INVALID_ARGUMENT, "features");
    let mut count = 0u64;
    assert_eq!(unsafe { ucgm_fid_stats_get_count(s, &mut count, ptr::null_mut()) }, UCGM_STATUS_OK);
    assert_eq!(count, 1, "a failed add left the statistics unchanged");
    check(unsafe { ucgm_fid_stats_add(s, good[4..].as_ptr(), 1) }, UCGM_STATUS_OK, "");
    check(unsafe { ucgm_fid_stats_save_npz(s, cstr(&npz).as_ptr()) }, UCGM_STATUS_OK, "");
    check(unsafe { ucgm_fid_stats_save_npz(s, ptr::null()) }, UCGM_STATUS_INVALID_ARGUMENT, "path");
    let mut loaded = ptr::null_mut();
    check(unsafe { ucgm_fid_stats_load_npz(cstr(&npz).as_ptr(), &mut loaded) }, UCGM_STATUS_OK, "");
    check(unsafe { ucgm_fid_stats_add(loaded, good.as_ptr(), 1) }, UCGM_STATUS_INVALID_ARGUMENT, ".npz");
    let garbage = dir.path().join("g.npz");
    std::fs::write(&garbage, b"PK not really").unwrap();
    let mut g = ptr::null_mut();
    check(unsafe { ucgm_fid_stats_load_npz(cstr(&garbage).as_ptr(), &mut g) }, UCGM_STATUS_FORMAT, "g.npz");
    assert!(g.is_null());
    let other = new_stats(2048);
    let mut fd = 0f64;
    check(
        unsafe { ucgm_fid_distance(loaded, other, &mut fd) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "need at least 2",
    );
    let many = vec![0.25f32; 3 * 2048];
    let mut many2 = many.clone();
    many2[7] = 1.0;
    unsafe {
        ucgm_fid_stats_add(other, many.as_ptr(), 3);
        ucgm_fid_stats_add(other, many2.as_ptr(), 1);
    }
    check(
        unsafe { ucgm_fid_distance(loaded, other, &mut fd) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "dimensions differ",
    );
    check(
        unsafe { ucgm_fid_distance(loaded, loaded, ptr::null_mut()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "out",
    );
    check(unsafe { ucgm_fid_distance(loaded, loaded, &mut fd) }, UCGM_STATUS_OK, "");
    assert!(fd.abs() < 1e-12);
    for h in [s, loaded, other] {
        unsafe { ucgm_fid_stats_free(h) };
    }
    unsafe { ucgm_fid_stats_free(ptr::null_mut()) };
    unsafe { ucgm_inception_free(ptr::null_mut()) };

    // Inception Score.
    let l = vec![0.1f32; 5 * 1008];
    let (mut m, mut sd) = (0f64, 0f64);
    check(
        unsafe { ucgm_inception_score(l.as_ptr(), 5, 10, &mut m, &mut sd) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "splits",
    );
    check(
        unsafe { ucgm_inception_score(l.as_ptr(), 5, 0, &mut m, &mut sd) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "splits",
    );
    check(
        unsafe { ucgm_inception_score(l.as_ptr(), 5, 5, ptr::null_mut(), &mut sd) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "out_mean",
    );
    check(
        unsafe { ucgm_inception_score(ptr::null(), 5, 5, &mut m, &mut sd) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "logits",
    );
    let mut nan = l.clone();
    nan[3000] = f32::NAN;
    check(
        unsafe { ucgm_inception_score(nan.as_ptr(), 5, 5, &mut m, &mut sd) },
        UCGM_STATUS_NON_FINITE,
        "logits",
    );
    check(unsafe { ucgm_inception_score(l.as_ptr(), 5, 5, &mut m, &mut sd) }, UCGM_STATUS_OK, "");
    assert!((m - 1.0).abs() < 1e-12);
}
