//! The C ABI (`libucgm.so` / `libucgm.a`, header `include/ucgm.h`, generated from this
//! module by cbindgen in `build.rs`).
//!
//! This file holds what every exported function shares: the status codes, the
//! thread-local last error, the panic boundary (`call`), the per-handle callbacks and
//! the library-level queries (versions, backends, system info). One concept per file:
//! * [`params`] — versioned `struct_size` structs and the enum / pointer checks;
//! * [`model`] — the model handle: create, load, save, info, raw forward;
//! * [`sample`] — UCGM-S through a model handle;
//! * [`train`] — the trainer handle: UCGM-T steps, checkpoints, weights out.
//! * [`vae`] — the VAE handle: load, info, encode, decode.
//! * [`sample_image`] — sample and decode in one call, float or 8-bit RGB.
//! * [`latent_norm`] — a model's latent normalisation, which `sample_image` inverts.
//! * [`fid`] — the FID Inception handle, feature statistics, FID and Inception Score.
//! * `load` — the argument checks every load call shares.
//!
//! # Safety
//!
//! Every exported function is `unsafe`: the caller promises that each non-NULL pointer
//! points to memory of the documented size and type, and that a handle is used by one
//! thread at a time (except `*_cancel`). The rules are stated once, at the top of the
//! generated header, instead of on every function.

// The exported names are C names (ucgm_model, ucgm_status, ...).
#![allow(non_camel_case_types)]
// The safety contract of every exported function is the header's top comment.
#![allow(clippy::missing_safety_doc)]

pub mod dist;
pub mod fid;
pub mod latent_norm;
mod load;
pub mod model;
pub mod params;
pub mod sample;
pub mod sample_image;
pub mod train;
pub mod vae;

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, TryLockError};

use crate::engine::{cuda_availability, BackendChoice};
use crate::error::{Error, Result};

/// ABI version of this header and library: bumped only on an incompatible change (a
/// renumbered value or a changed signature, which this project never makes lightly).
/// Compare `ucgm_abi_version()` with `UCGM_ABI_VERSION` at start-up.
pub const UCGM_ABI_VERSION: u32 = 1;

/// Largest `threads` value accepted (`ucgm_model_params.threads`, the trainer's); 0 =
/// one per logical CPU. The CLI and the Rust API enforce the same limit.
pub const UCGM_MAX_THREADS: u32 = 1024;
/// Largest `steps` accepted by `ucgm_sample` / `ucgm_sample_params.steps`.
pub const UCGM_MAX_STEPS: u32 = 100000;

const _: () = assert!(UCGM_MAX_THREADS as usize == crate::limits::MAX_THREADS);
const _: () = assert!(UCGM_MAX_STEPS as usize == crate::limits::MAX_STEPS);

/// Status returned by every fallible call. Values are never renumbered.
pub type ucgm_status = i32;

/// Success.
pub const UCGM_STATUS_OK: ucgm_status = 0;
/// An argument is NULL, out of range, inconsistent or has the wrong length.
pub const UCGM_STATUS_INVALID_ARGUMENT: ucgm_status = 1;
/// A file could not be read or written.
pub const UCGM_STATUS_IO: ucgm_status = 2;
/// A file is malformed, truncated or inconsistent.
pub const UCGM_STATUS_FORMAT: ucgm_status = 3;
/// A weights file does not match the model (missing, extra or mis-shaped tensors).
pub const UCGM_STATUS_WEIGHTS: ucgm_status = 4;
/// An input holds NaN or infinity where finite values are required.
pub const UCGM_STATUS_NON_FINITE: ucgm_status = 5;
/// The call was stopped by `*_cancel` or by a progress callback returning non-zero.
pub const UCGM_STATUS_CANCELLED: ucgm_status = 6;
/// A compute backend is unavailable (the reason is in the last error message) or failed.
pub const UCGM_STATUS_BACKEND: ucgm_status = 7;
/// The request is valid but not supported by this build.
pub const UCGM_STATUS_UNSUPPORTED: ucgm_status = 8;
/// A bug inside the library (a caught panic, a broken invariant).
pub const UCGM_STATUS_INTERNAL: ucgm_status = 9;
/// A buffer sized by the caller's values (batch, steps, trajectory) is larger than this
/// machine's memory or could not be allocated; nothing was computed and the handle is
/// unchanged.
pub const UCGM_STATUS_OUT_OF_MEMORY: ucgm_status = 10;

/// Compute backend selector (`int32_t`).
pub type ucgm_backend = i32;
/// CUDA when it can be used here (the driver, NVRTC and cuBLAS libraries load and the
/// device opens), else the CPU. Which one, and why CUDA was not used, goes to the log
/// callback (`UCGM_LOG_INFO`) and into the info structs' `backend_description`.
pub const UCGM_BACKEND_AUTO: ucgm_backend = 0;
/// The CPU backend (always built).
pub const UCGM_BACKEND_CPU: ucgm_backend = 1;
/// The CUDA backend (cuBLAS + NVRTC kernels, libraries opened at run time). Selecting it
/// where it cannot be used fails with `UCGM_STATUS_BACKEND` and the reason.
pub const UCGM_BACKEND_CUDA: ucgm_backend = 2;

/// Log levels passed to a `ucgm_log_callback` (smaller = more severe).
pub type ucgm_log_level = i32;
/// A call failed; the message is the one `ucgm_last_error_message()` returns.
pub const UCGM_LOG_ERROR: ucgm_log_level = 1;
/// Something the caller may want to change.
pub const UCGM_LOG_WARN: ucgm_log_level = 2;
/// One line per model creation, load, save, sampling run or training call.
pub const UCGM_LOG_INFO: ucgm_log_level = 3;
/// Details (chosen backend, settings).
pub const UCGM_LOG_DEBUG: ucgm_log_level = 4;

/// `ucgm_system_info.simd` bit: x86 SSE2.
pub const UCGM_SIMD_SSE2: u32 = 1;
/// `ucgm_system_info.simd` bit: x86 AVX.
pub const UCGM_SIMD_AVX: u32 = 1 << 1;
/// `ucgm_system_info.simd` bit: x86 AVX2.
pub const UCGM_SIMD_AVX2: u32 = 1 << 2;
/// `ucgm_system_info.simd` bit: x86 FMA.
pub const UCGM_SIMD_FMA: u32 = 1 << 3;
/// `ucgm_system_info.simd` bit: x86 AVX-512F.
pub const UCGM_SIMD_AVX512F: u32 = 1 << 4;
/// `ucgm_system_info.simd` bit: Arm NEON.
pub const UCGM_SIMD_NEON: u32 = 1 << 5;

/// Log callback: `level` is a `UCGM_LOG_*` value, `message` a NUL-terminated UTF-8 line
/// (no trailing newline) valid only during the call. Called on the thread that made the
/// library call. Without a callback the library prints nothing.
pub type ucgm_log_callback = Option<unsafe extern "C" fn(level: ucgm_log_level, message: *const c_char, user_data: *mut c_void)>;

/// Progress callback: called after each step with (steps done, total steps); return
/// non-zero to stop the call, which then fails with `UCGM_STATUS_CANCELLED`. Called on
/// the thread that made the library call; it must not call into the library with the
/// same handle, except `*_cancel`.
pub type ucgm_progress_callback = Option<unsafe extern "C" fn(done: u64, total: u64, user_data: *mut c_void) -> i32>;

/// What `ucgm_get_system_info` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ucgm_system_info {
    /// Set by the caller to `sizeof(ucgm_system_info)`.
    pub struct_size: usize,
    /// Logical CPUs this process may use (the default thread count of a CPU model).
    pub logical_cpus: u32,
    /// `UCGM_SIMD_*` bits the CPU supports (detected at run time).
    pub simd: u32,
    /// Bit `1 << UCGM_BACKEND_*` set for each usable backend: CPU always, CUDA when
    /// device 0 can be used here.
    pub backends: u32,
}

unsafe impl params::Versioned for ucgm_system_info {
    const NAME: &'static str = "ucgm_system_info";
    const SIZES: &'static [usize] = &[std::mem::size_of::<ucgm_system_info>()];
    fn defaults() -> Self {
        ucgm_system_info {
            struct_size: std::mem::size_of::<Self>(),
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Last error and the panic boundary.

/// Capacity of the last-error buffer, NUL included (longer messages are cut at a
/// character boundary).
const LAST_ERROR_CAP: usize = 4096;

thread_local! {
    /// The last error message, NUL-terminated, at an address that never changes for the
    /// thread: a pointer from `ucgm_last_error_message` stays valid (its text changes).
    static LAST_ERROR: RefCell<[u8; LAST_ERROR_CAP]> = const { RefCell::new([0; LAST_ERROR_CAP]) };
    /// Depth of exported calls on this thread (panics inside are reported, not printed).
    static IN_CALL: Cell<u32> = const { Cell::new(0) };
    /// Location of a panic caught on this thread, filled by the panic hook.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A C string from any text (interior NULs become spaces).
pub(crate) fn c_string(s: impl Into<String>) -> CString {
    let s: String = s.into();
    CString::new(s.replace('\0', " ")).expect("NULs removed")
}

fn set_last_error(msg: String) {
    let msg = msg.replace('\0', " ");
    let mut end = msg.len().min(LAST_ERROR_CAP - 1);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    LAST_ERROR.with(|e| {
        let mut buf = e.borrow_mut();
        buf[..end].copy_from_slice(&msg.as_bytes()[..end]);
        buf[end] = 0;
    });
}

/// Installs (once) a panic hook that keeps panics inside library calls and on the
/// library's worker threads off stderr: they become `UCGM_STATUS_INTERNAL` with the
/// message. Other panics go to the previous hook unchanged.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = IN_CALL.with(|d| d.get() > 0) || std::thread::current().name().is_some_and(|n| n.starts_with("ucgm-"));
            if ours {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into());
    match PANIC_AT.with(|p| p.borrow_mut().take()) {
        Some(at) => format!("{what} (at {at})"),
        None => what,
    }
}

/// The panic boundary of every exported function: clears the last error, runs `f`,
/// and turns an error or a caught panic into a status plus a thread-local message
/// prefixed with the function's name.
pub(crate) fn call(fname: &str, f: impl FnOnce() -> Result<()>) -> ucgm_status {
    install_panic_hook();
    set_last_error(String::new());
    IN_CALL.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_CALL.with(|d| d.set(d.get() - 1));
    let err = match result {
        Ok(Ok(())) => return UCGM_STATUS_OK,
        Ok(Err(e)) => e,
        Err(payload) => Error::Internal(format!("panic: {}", panic_message(payload.as_ref()))),
    };
    set_last_error(format!("{fname}: {err}"));
    err.status_code()
}

/// The panic boundary of the exported functions that return a value instead of a
/// status (versions, static names): `fallback` if `f` panics.
pub(crate) fn no_unwind<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    install_panic_hook();
    IN_CALL.with(|d| d.set(d.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_CALL.with(|d| d.set(d.get() - 1));
    r.unwrap_or(fallback)
}

// ---------------------------------------------------------------------------------------
// Callbacks and cancellation shared by the handles.

/// The log and progress callbacks of one handle.
#[derive(Clone, Copy)]
pub(crate) struct Hooks {
    pub log: ucgm_log_callback,
    pub log_user_data: *mut c_void,
    pub progress: ucgm_progress_callback,
    pub progress_user_data: *mut c_void,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            log: None,
            log_user_data: std::ptr::null_mut(),
            progress: None,
            progress_user_data: std::ptr::null_mut(),
        }
    }
}

impl Hooks {
    /// Sends one line to the log callback, if any (the message is built only then).
    pub fn log(&self, level: ucgm_log_level, msg: impl FnOnce() -> String) {
        if let Some(cb) = self.log {
            let line = c_string(msg());
            // SAFETY: the callback and its user data were supplied together by the caller.
            unsafe { cb(level, line.as_ptr(), self.log_user_data) };
        }
    }

    /// The progress callback as the engine's `(done, total) -> continue?` closure.
    pub fn progress_fn(&self) -> Option<impl FnMut(usize, usize) -> bool> {
        let (cb, ud) = (self.progress?, self.progress_user_data);
        // SAFETY: as for the log callback.
        Some(move |done: usize, total: usize| unsafe { cb(done as u64, total as u64, ud) } == 0)
    }

    /// Runs `f` with the engine's control of a cancellable call: the handle's cancel flag
    /// and its progress callback.
    pub fn with_control<R>(&self, cancel: &Arc<AtomicBool>, f: impl FnOnce(&mut crate::control::RunControl<'_>) -> Result<R>) -> Result<R> {
        let mut progress = self.progress_fn();
        let mut ctl = crate::control::RunControl {
            cancel: Some(cancel.clone()),
            progress: progress.as_mut().map(|f| f as &mut dyn FnMut(usize, usize) -> bool),
        };
        f(&mut ctl)
    }
}

/// A handle: a cancel flag that any thread may set, and the state, used by one thread
/// at a time (a second concurrent user gets an error instead of a data race).
pub(crate) struct Handle<S> {
    pub cancel: Arc<AtomicBool>,
    pub state: Mutex<S>,
}

impl<S> Handle<S> {
    pub fn new(state: S) -> Self {
        Handle {
            cancel: Arc::new(AtomicBool::new(false)),
            state: Mutex::new(state),
        }
    }
}

/// State that has callbacks (every handle's).
pub(crate) trait HasHooks {
    fn hooks(&self) -> &Hooks;
    fn hooks_mut(&mut self) -> &mut Hooks;
}

/// An exported opaque handle type (`ucgm_model`, ...): a named wrapper of a [`Handle`].
pub(crate) trait AsHandle {
    type State: HasHooks;
    /// The C type's name, for messages.
    const NAME: &'static str;
    fn handle(&self) -> &Handle<Self::State>;
}

/// Runs `f` on the state of the handle behind `h` inside the panic boundary; a failure
/// is also sent to the handle's log callback at `UCGM_LOG_ERROR`.
pub(crate) unsafe fn with_handle<H: AsHandle>(fname: &str, h: *const H, f: impl FnOnce(&mut H::State, &Arc<AtomicBool>) -> Result<()>) -> ucgm_status {
    let mut hooks = None;
    let status = call(fname, || {
        let handle = params::handle_ref(h)?.handle();
        let mut state = match handle.state.try_lock() {
            Ok(g) => g,
            // A caught panic left the lock poisoned: the handle stays usable.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(Error::invalid(
                    "the handle is in use by another thread (one handle is used by one thread at a time)",
                ))
            }
        };
        hooks = Some(*state.hooks());
        f(&mut state, &handle.cancel)
    });
    if status != UCGM_STATUS_OK {
        if let Some(h) = hooks {
            h.log(UCGM_LOG_ERROR, last_error_string);
        }
    }
    status
}

/// Like [`with_handle`] for long calls: clears the cancel flag first (a cancel made
/// while no call runs is forgotten when the next call starts).
pub(crate) unsafe fn with_handle_cancellable<H: AsHandle>(
    fname: &str,
    h: *const H,
    f: impl FnOnce(&mut H::State, &Arc<AtomicBool>) -> Result<()>,
) -> ucgm_status {
    with_handle(fname, h, |s, cancel| {
        cancel.store(false, Ordering::SeqCst);
        f(s, cancel)
    })
}

fn last_error_string() -> String {
    LAST_ERROR.with(|e| CStr::from_bytes_until_nul(&e.borrow()[..]).map_or_else(|_| String::new(), |c| c.to_string_lossy().into_owned()))
}

/// Sets the cancel flag of a handle: any thread, any time, without taking the handle's
/// lock (only an atomic store).
pub(crate) unsafe fn cancel<H: AsHandle>(fname: &str, h: *const H) -> ucgm_status {
    call(fname, || {
        params::handle_ref(h)?.handle().cancel.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// Replaces a handle's log callback.
pub(crate) unsafe fn set_log<H: AsHandle>(fname: &str, h: *const H, cb: ucgm_log_callback, user_data: *mut c_void) -> ucgm_status {
    with_handle(fname, h, |s, _| {
        let hooks = s.hooks_mut();
        hooks.log = cb;
        hooks.log_user_data = user_data;
        Ok(())
    })
}

/// Replaces a handle's progress callback.
pub(crate) unsafe fn set_progress<H: AsHandle>(fname: &str, h: *const H, cb: ucgm_progress_callback, user_data: *mut c_void) -> ucgm_status {
    with_handle(fname, h, |s, _| {
        let hooks = s.hooks_mut();
        hooks.progress = cb;
        hooks.progress_user_data = user_data;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// Library-level queries.

/// The ABI version of the library (compare with `UCGM_ABI_VERSION`).
#[no_mangle]
pub extern "C" fn ucgm_abi_version() -> u32 {
    no_unwind(UCGM_ABI_VERSION, || UCGM_ABI_VERSION)
}

/// The library version, e.g. "0.1.0" (static text).
#[no_mangle]
pub extern "C" fn ucgm_version() -> *const c_char {
    const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the package version holds a NUL"),
    };
    no_unwind(VERSION.as_ptr(), || VERSION.as_ptr())
}

/// Static text for a status ("ok", "invalid argument", ...; "unknown status" for a value
/// this library does not know). Never NULL.
#[no_mangle]
pub extern "C" fn ucgm_status_str(status: ucgm_status) -> *const c_char {
    no_unwind(c"unknown status".as_ptr(), || status_text(status).as_ptr())
}

fn status_text(status: ucgm_status) -> &'static CStr {
    match status {
        UCGM_STATUS_OK => c"ok",
        UCGM_STATUS_INVALID_ARGUMENT => c"invalid argument",
        UCGM_STATUS_IO => c"i/o error",
        UCGM_STATUS_FORMAT => c"malformed file",
        UCGM_STATUS_WEIGHTS => c"weights do not match the model",
        UCGM_STATUS_NON_FINITE => c"non-finite value",
        UCGM_STATUS_CANCELLED => c"cancelled",
        UCGM_STATUS_BACKEND => c"backend unavailable or failed",
        UCGM_STATUS_UNSUPPORTED => c"unsupported",
        UCGM_STATUS_INTERNAL => c"internal error",
        UCGM_STATUS_OUT_OF_MEMORY => c"out of memory",
        _ => c"unknown status",
    }
}

/// The detail of the last failed call made on this thread ("" after a call that
/// succeeded), at most 4095 bytes of UTF-8. The pointer is the same for the life of
/// the thread; the text changes with every library call on the thread. Never NULL.
#[no_mangle]
pub extern "C" fn ucgm_last_error_message() -> *const c_char {
    no_unwind(c"".as_ptr(), || LAST_ERROR.with(|e| e.as_ptr().cast::<c_char>().cast_const()))
}

/// The engine's choice for a `UCGM_BACKEND_*` value.
pub(crate) fn backend_choice(backend: ucgm_backend) -> Result<BackendChoice> {
    match backend {
        UCGM_BACKEND_AUTO => Ok(BackendChoice::Auto),
        UCGM_BACKEND_CPU => Ok(BackendChoice::Cpu),
        UCGM_BACKEND_CUDA => Ok(BackendChoice::Cuda),
        other => Err(Error::invalid(format!(
            "backend {other} is not one of UCGM_BACKEND_AUTO (0), UCGM_BACKEND_CPU (1), UCGM_BACKEND_CUDA (2)"
        ))),
    }
}

/// Why `backend` cannot be used, or None when it can (CUDA: device 0 is probed).
pub(crate) fn backend_unavailable(backend: ucgm_backend) -> Result<Option<String>> {
    match backend_choice(backend)? {
        BackendChoice::Auto | BackendChoice::Cpu => Ok(None),
        BackendChoice::Cuda => Ok(cuda_availability(0).err().map(|why| format!("CUDA backend not available: {why}"))),
    }
}

/// `UCGM_STATUS_OK` when `backend` (a `UCGM_BACKEND_*` value) can be used; otherwise
/// `UCGM_STATUS_BACKEND` with the reason in `ucgm_last_error_message()` (or
/// `UCGM_STATUS_INVALID_ARGUMENT` for an unknown value). For CUDA this loads the driver,
/// NVRTC and cuBLAS and opens device 0 (it never fails the process: a missing library is
/// a status, not a crash); `UCGM_BACKEND_AUTO` is always available.
#[no_mangle]
pub extern "C" fn ucgm_backend_available(backend: ucgm_backend) -> ucgm_status {
    call("ucgm_backend_available", || match backend_unavailable(backend)? {
        None => Ok(()),
        Some(why) => Err(Error::Backend(why)),
    })
}

/// Static name of a backend value ("auto", "cpu", "cuda"; "unknown" otherwise).
#[no_mangle]
pub extern "C" fn ucgm_backend_name(backend: ucgm_backend) -> *const c_char {
    let name = || match backend {
        UCGM_BACKEND_AUTO => c"auto",
        UCGM_BACKEND_CPU => c"cpu",
        UCGM_BACKEND_CUDA => c"cuda",
        _ => c"unknown",
    };
    no_unwind(c"unknown".as_ptr(), || name().as_ptr())
}

fn simd_bits() -> u32 {
    #[allow(unused_mut)]
    let mut bits = 0;
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        let features = [
            (std::arch::is_x86_feature_detected!("sse2"), UCGM_SIMD_SSE2),
            (std::arch::is_x86_feature_detected!("avx"), UCGM_SIMD_AVX),
            (std::arch::is_x86_feature_detected!("avx2"), UCGM_SIMD_AVX2),
            (std::arch::is_x86_feature_detected!("fma"), UCGM_SIMD_FMA),
            (std::arch::is_x86_feature_detected!("avx512f"), UCGM_SIMD_AVX512F),
        ];
        for (on, bit) in features {
            if on {
                bits |= bit;
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            bits |= UCGM_SIMD_NEON;
        }
    }
    bits
}

/// CUDA device 0 probed once per process: its description, or why it cannot be used.
fn cuda_probe_once() -> &'static std::result::Result<String, String> {
    static PROBE: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PROBE.get_or_init(|| cuda_availability(0))
}

fn system_info() -> ucgm_system_info {
    let cuda = if cuda_probe_once().is_ok() { 1 << UCGM_BACKEND_CUDA } else { 0 };
    ucgm_system_info {
        struct_size: std::mem::size_of::<ucgm_system_info>(),
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        simd: simd_bits(),
        backends: (1 << UCGM_BACKEND_CPU) | cuda,
    }
}

/// Fills `info` (set `info->struct_size = sizeof *info` first). CUDA is probed once per
/// process, at the first call of this function or of `ucgm_system_info_string`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_get_system_info(info: *mut ucgm_system_info) -> ucgm_status {
    call("ucgm_get_system_info", || params::write_out(info, system_info()))
}

/// One static line describing the library and the machine, e.g.
/// "ucgm 0.1.0 | abi 1 | cpus 16 | simd SSE2 AVX AVX2 FMA AVX512F | backends cpu cuda (cuda:0
/// NVIDIA H200 (sm_90, 139.8 GiB, 1 device(s)))", or on a machine without CUDA
/// "… | backends cpu (cuda unavailable: the CUDA driver library (libcuda.so) not found …)".
#[no_mangle]
pub extern "C" fn ucgm_system_info_string() -> *const c_char {
    no_unwind(c"ucgm (system information unavailable)".as_ptr(), system_info_line)
}

fn system_info_line() -> *const c_char {
    static LINE: OnceLock<CString> = OnceLock::new();
    LINE.get_or_init(|| {
        let i = system_info();
        let names = [
            (UCGM_SIMD_SSE2, "SSE2"),
            (UCGM_SIMD_AVX, "AVX"),
            (UCGM_SIMD_AVX2, "AVX2"),
            (UCGM_SIMD_FMA, "FMA"),
            (UCGM_SIMD_AVX512F, "AVX512F"),
            (UCGM_SIMD_NEON, "NEON"),
        ];
        let simd: Vec<&str> = names.iter().filter(|(b, _)| i.simd & b != 0).map(|(_, n)| *n).collect();
        let backends = match cuda_probe_once() {
            Ok(device) => format!("cpu cuda ({device})"),
            Err(why) => format!("cpu (cuda unavailable: {why})"),
        };
        c_string(format!(
            "ucgm {} | abi {UCGM_ABI_VERSION} | cpus {} | simd {} | backends {backends}",
            env!("CARGO_PKG_VERSION"),
            i.logical_cpus,
            if simd.is_empty() { "none".to_string() } else { simd.join(" ") }
        ))
    })
    .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_internal_errors_with_the_message() {
        let s = call("ucgm_test", || panic!("boom {}", 42));
        assert_eq!(s, UCGM_STATUS_INTERNAL);
        let msg = unsafe { CStr::from_ptr(ucgm_last_error_message()) }.to_string_lossy().into_owned();
        assert!(msg.starts_with("ucgm_test: internal error: panic: boom 42 (at src/capi/mod.rs:"), "{msg}");
        // The next successful call clears the message.
        assert_eq!(call("ucgm_test", || Ok(())), UCGM_STATUS_OK);
        assert_eq!(unsafe { CStr::from_ptr(ucgm_last_error_message()) }.to_bytes(), b"");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary_and_the_pointer_is_stable() {
        let p = ucgm_last_error_message();
        let long = "é".repeat(LAST_ERROR_CAP); // 2 bytes each
        assert_eq!(call("f", || Err(Error::invalid(long.clone()))), UCGM_STATUS_INVALID_ARGUMENT);
        assert_eq!(ucgm_last_error_message(), p);
        let got = unsafe { CStr::from_ptr(p) }.to_str().expect("valid UTF-8");
        assert!(got.len() < LAST_ERROR_CAP && got.len() > LAST_ERROR_CAP - 4, "{}", got.len());
        assert!(got.starts_with("f: invalid argument: éé"));
    }

    #[test]
    fn every_error_variant_maps_to_its_named_status() {
        let io = Error::io("p", std::io::Error::other("x"));
        let cases = [
            (Error::invalid("x"), UCGM_STATUS_INVALID_ARGUMENT),
            (io, UCGM_STATUS_IO),
            (Error::format("p", "x"), UCGM_STATUS_FORMAT),
            (Error::Weights("x".into()), UCGM_STATUS_WEIGHTS),
            (Error::NonFinite("x".into()), UCGM_STATUS_NON_FINITE),
            (Error::Cancelled, UCGM_STATUS_CANCELLED),
            (Error::Backend("x".into()), UCGM_STATUS_BACKEND),
            (Error::Unsupported("x".into()), UCGM_STATUS_UNSUPPORTED),
            (Error::Internal("x".into()), UCGM_STATUS_INTERNAL),
            (Error::OutOfMemory("x".into()), UCGM_STATUS_OUT_OF_MEMORY),
        ];
        for (e, s) in cases {
            assert_eq!(e.status_code(), s, "{e}");
        }
    }
}
