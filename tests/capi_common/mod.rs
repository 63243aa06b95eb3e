//! Helpers shared by the C-API tests (`tests/capi_*.rs`): tiny models, status checks,
//! the proptest configuration, and where the freshly built libraries are.
#![allow(dead_code)]

use std::ffi::CStr;
use std::path::PathBuf;

use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use ucgm::capi::model::*;
use ucgm::capi::sample::*;
use ucgm::capi::train::*;
use ucgm::capi::*;

/// The one proptest configuration of the C-API tests: the default, which reads
/// `PROPTEST_CASES` (never an explicit `with_cases`, which would ignore it), with
/// failures persisted beside the test source (`tests/<test>.proptest-regressions`,
/// committed and replayed first).
pub fn proptest_config(source_file: &'static str) -> ProptestConfig {
    ProptestConfig {
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

/// Sizes `ucgm_model_params` has had in released ABIs, oldest first (ABI 1's first
/// release ended before `cuda_device`).
pub fn model_params_sizes() -> [usize; 2] {
    [std::mem::offset_of!(ucgm_model_params, cuda_device), std::mem::size_of::<ucgm_model_params>()]
}

/// Sizes `ucgm_model_info` has had in released ABIs, oldest first.
pub fn model_info_sizes() -> [usize; 3] {
    [
        std::mem::offset_of!(ucgm_model_info, cuda_device),
        std::mem::offset_of!(ucgm_model_info, bytes_held),
        std::mem::size_of::<ucgm_model_info>(),
    ]
}

/// Whether CUDA device 0 can be used here: its description, or why not.
pub fn cuda_here() -> Result<String, String> {
    ucgm::engine::cuda_availability(0)
}

/// Whether a test that needs CUDA must fail instead of skipping (`UCGM_REQUIRE_CUDA=1`).
pub fn require_cuda() -> bool {
    std::env::var("UCGM_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// True where CUDA device 0 can be used; otherwise prints why `test` is skipped and
/// returns false, or panics when `UCGM_REQUIRE_CUDA=1` (a GPU run cannot pass vacuously).
pub fn cuda_or_skip(test: &str) -> bool {
    match cuda_here() {
        Ok(device) => {
            eprintln!("{test}: running on {device}");
            true
        }
        Err(why) => {
            assert!(!require_cuda(), "{test}: UCGM_REQUIRE_CUDA=1 but CUDA is unavailable: {why}");
            eprintln!("{test}: skipped, CUDA unavailable: {why}");
            false
        }
    }
}

/// A NUL-terminated text field of an info struct.
pub fn text_field(field: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8(bytes).expect("UTF-8")
}

/// The calling thread's last error message.
pub fn last_error() -> String {
    unsafe { CStr::from_ptr(ucgm_last_error_message()) }.to_string_lossy().into_owned()
}

/// Asserts a call succeeded, showing the message otherwise.
#[track_caller]
pub fn ok(status: ucgm_status) {
    assert_eq!(status, UCGM_STATUS_OK, "status {status}: {}", last_error());
}

/// Asserts a call failed with `want` and a non-empty message containing `needle`;
/// returns the message.
#[track_caller]
pub fn fails(status: ucgm_status, want: ucgm_status, needle: &str) -> String {
    let msg = last_error();
    assert_eq!(status, want, "expected status {want}, got {status}: {msg}");
    assert!(!msg.is_empty(), "status {status} without a message");
    assert!(msg.contains(needle), "message {msg:?} does not mention {needle:?}");
    msg
}

/// Model params of a tiny network (4×8×8 input, patch 2, hidden 32, depth 2, 2 heads,
/// 10 classes) on the CPU backend with `threads` threads (explicitly the CPU: these tests
/// check the CPU contract, thread counts included, also on machines with CUDA;
/// `tests/capi_backend.rs` runs the same handles on CUDA).
pub fn tiny_params(arch: ucgm_arch, seed: u64, threads: i32) -> ucgm_model_params {
    let mut p = std::mem::MaybeUninit::<ucgm_model_params>::uninit();
    ok(unsafe { ucgm_model_params_default(p.as_mut_ptr(), std::mem::size_of::<ucgm_model_params>()) });
    let mut p = unsafe { p.assume_init() };
    p.arch = arch;
    p.input_size = 8;
    p.in_channels = 4;
    p.num_classes = 10;
    p.patch = 2;
    p.hidden = 32;
    p.depth = 2;
    p.heads = 2;
    p.seed = seed;
    p.threads = threads;
    p.backend = UCGM_BACKEND_CPU;
    p
}

/// Params for `ucgm_model_load` / `ucgm_trainer_resume` of the CPU-contract tests: the
/// defaults (heads from the file) on the CPU backend with 1 thread, so that a reloaded
/// handle is compared bit for bit with a CPU one also where CUDA is usable.
pub fn cpu_load_params() -> ucgm_model_params {
    let mut p = std::mem::MaybeUninit::<ucgm_model_params>::uninit();
    ok(unsafe { ucgm_model_params_default(p.as_mut_ptr(), std::mem::size_of::<ucgm_model_params>()) });
    let mut p = unsafe { p.assume_init() };
    p.backend = UCGM_BACKEND_CPU;
    p.threads = 1;
    p
}

/// Elements of one tiny sample.
pub const IMAGE_LEN: usize = 4 * 8 * 8;

/// Owns a model handle in tests.
pub struct Model(pub *mut ucgm_model);

impl Model {
    pub fn create(p: &ucgm_model_params) -> Model {
        let mut m = std::ptr::null_mut();
        ok(unsafe { ucgm_model_create(p, &mut m) });
        assert!(!m.is_null());
        Model(m)
    }

    /// A tiny model whose weights are all random (N(0, 0.05²) from `seed`), so that its
    /// output depends on every parameter (a fresh network outputs F = 0).
    pub fn tiny_random(arch: ucgm_arch, seed: u64, threads: i32) -> Model {
        let m = Model::create(&tiny_params(arch, seed, threads));
        let n = m.param_count();
        let mut rng = ucgm::Rng::new(seed ^ 0x5eed);
        let w: Vec<f32> = rng.normal_f32(n).into_iter().map(|v| 0.05 * v).collect();
        ok(unsafe { ucgm_model_write_params(m.0, w.as_ptr(), w.len()) });
        m
    }

    pub fn info(&self) -> ucgm_model_info {
        let mut info = ucgm_model_info {
            struct_size: std::mem::size_of::<ucgm_model_info>(),
            ..Default::default()
        };
        ok(unsafe { ucgm_model_get_info(self.0, &mut info) });
        info
    }

    pub fn param_count(&self) -> usize {
        self.info().param_count as usize
    }

    pub fn params(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.param_count()];
        ok(unsafe { ucgm_model_read_params(self.0, v.as_mut_ptr(), v.len()) });
        v
    }

    /// `ucgm_sample_ext` with `p`; returns the samples.
    pub fn sample(&self, p: &ucgm_sample_params) -> Result<Vec<f32>, ucgm_status> {
        let mut out = vec![f32::NAN; p.batch as usize * IMAGE_LEN];
        let s = unsafe { ucgm_sample_ext(self.0, p, out.as_mut_ptr(), out.len(), std::ptr::null_mut(), 0, std::ptr::null_mut()) };
        if s == UCGM_STATUS_OK {
            Ok(out)
        } else {
            Err(s)
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { ucgm_model_free(self.0) };
    }
}

/// A raw pointer that may be moved to another thread (the C API allows a handle to be
/// used from any thread, one at a time, and `*_cancel` from any thread at any time).
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Sampling defaults with `steps`, `batch` and `seed`.
pub fn sample_params(steps: u32, batch: u32, seed: u64) -> ucgm_sample_params {
    let mut p = std::mem::MaybeUninit::<ucgm_sample_params>::uninit();
    ok(unsafe { ucgm_sample_params_default(p.as_mut_ptr(), std::mem::size_of::<ucgm_sample_params>()) });
    let mut p = unsafe { p.assume_init() };
    p.steps = steps;
    p.batch = batch;
    p.seed = seed;
    p
}

/// The directory holding the libucgm.so / libucgm.a that this `cargo test` run built:
/// the test executable's own directory (`target/<profile>/deps`, where `cargo test`
/// writes the cdylib and staticlib), else its parent (`target/<profile>`).
///
/// On Linux the library's SONAME is `libucgm.so.<ABI>` (build.rs), the name programs
/// linked against it load at run time, so a link of that name to libucgm.so is made
/// beside it (as scripts/install.sh installs one).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("exe dir").to_path_buf();
    for dir in [deps.clone(), deps.parent().expect("profile dir").to_path_buf()] {
        if dir.join("libucgm.so").is_file() && dir.join("libucgm.a").is_file() {
            if cfg!(target_os = "linux") {
                soname_link(&dir);
            }
            return dir;
        }
    }
    panic!(
        "libucgm.so / libucgm.a not found beside {} (cargo test builds them for the lib target)",
        exe.display()
    );
}

/// `dir/libucgm.so.<ABI>` → `libucgm.so` (tests run in parallel: an existing correct
/// link is kept, anything else replaced).
#[cfg(unix)]
fn soname_link(dir: &std::path::Path) {
    let link = dir.join(format!("libucgm.so.{UCGM_ABI_VERSION}"));
    if std::fs::read_link(&link).is_ok_and(|t| t == std::path::Path::new("libucgm.so")) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    match std::os::unix::fs::symlink("libucgm.so", &link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot link {} to libucgm.so: {e}", link.display()),
    }
}

#[cfg(not(unix))]
fn soname_link(_dir: &std::path::Path) {}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Owns a trainer handle.
pub struct Tr(pub *mut ucgm_trainer);

impl Drop for Tr {
    fn drop(&mut self) {
        unsafe { ucgm_trainer_free(self.0) };
    }
}

impl Tr {
    pub fn create(m: &Model, p: &ucgm_train_params) -> Tr {
        let mut t = std::ptr::null_mut();
        ok(unsafe { ucgm_trainer_create(m.0, p, &mut t) });
        Tr(t)
    }
    pub fn resume(path: &std::ffi::CString, mp: Option<&ucgm_model_params>) -> Tr {
        let mut t = std::ptr::null_mut();
        ok(unsafe { ucgm_trainer_resume(path.as_ptr(), mp.map_or(std::ptr::null(), |p| p as *const _), &mut t) });
        Tr(t)
    }
    pub fn step(&self, x: &[f32], labels: &[i32]) -> f64 {
        let mut loss = f64::NAN;
        ok(unsafe { ucgm_train_step(self.0, x.as_ptr(), labels.as_ptr(), labels.len(), &mut loss) });
        loss
    }
    pub fn info(&self) -> ucgm_trainer_info {
        let mut i = ucgm_trainer_info {
            struct_size: std::mem::size_of::<ucgm_trainer_info>(),
            ..Default::default()
        };
        ok(unsafe { ucgm_trainer_get_info(self.0, &mut i) });
        i
    }
    /// A model handle holding the trainer's `which` weights.
    pub fn export(&self, which: ucgm_weights) -> Model {
        let mut m = std::ptr::null_mut();
        ok(unsafe { ucgm_trainer_export_model(self.0, which, &mut m) });
        Model(m)
    }
    /// The trainer's `which` weights.
    pub fn weights(&self, which: ucgm_weights) -> Vec<f32> {
        self.export(which).params()
    }
}

/// Default training settings with learning rate `lr` and `seed`.
pub fn train_params(lr: f64, seed: u64) -> ucgm_train_params {
    let mut p = std::mem::MaybeUninit::<ucgm_train_params>::uninit();
    ok(unsafe { ucgm_train_params_default(p.as_mut_ptr(), std::mem::size_of::<ucgm_train_params>()) });
    let mut p = unsafe { p.assume_init() };
    p.lr = lr;
    p.seed = seed;
    p
}

/// Runs a command, failing the test with its output unless it exits 0.
pub fn run_checked(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
