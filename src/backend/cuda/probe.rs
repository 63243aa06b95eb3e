//! Finding out, without panicking, whether the CUDA backend can run here.
//!
//! cudarc is built with `dynamic-loading`: the driver, NVRTC and cuBLAS are opened at
//! run time, and a missing library makes cudarc panic on first use. [`probe_device`]
//! therefore checks each library first, then the driver's device count, then opens the
//! device, and says which step failed. It also catches any panic from cudarc so that a
//! caller (the C ABI, a test) only ever sees an `Err`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use cudarc::driver::CudaContext;

/// What the probe found about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device ordinal (0-based).
    pub ordinal: usize,
    /// Number of CUDA devices the driver sees.
    pub device_count: usize,
    /// Device name, e.g. "NVIDIA H200".
    pub name: String,
    /// Compute capability (major, minor), e.g. (9, 0) for sm_90.
    pub compute_capability: (i32, i32),
    /// Total device memory in bytes.
    pub total_mem_bytes: usize,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ma, mi) = self.compute_capability;
        write!(
            f,
            "cuda:{} {} (sm_{ma}{mi}, {:.1} GiB, {} device(s))",
            self.ordinal,
            self.name,
            self.total_mem_bytes as f64 / (1u64 << 30) as f64,
            self.device_count
        )
    }
}

/// Which of the three dynamically loaded libraries can be opened, in the order the
/// backend needs them.
pub fn libraries_present() -> [(&'static str, bool); 3] {
    // SAFETY: these only try to dlopen the library by its usual names and close it again.
    unsafe {
        [
            ("the CUDA driver library (libcuda.so)", cudarc::driver::sys::is_culib_present()),
            ("NVRTC (libnvrtc.so)", cudarc::nvrtc::sys::is_culib_present()),
            ("cuBLAS (libcublas.so)", cudarc::cublas::sys::is_culib_present()),
        ]
    }
}

/// Checks that device `ordinal` can be used; returns its description or why not.
pub fn probe_device(ordinal: usize) -> Result<DeviceInfo, String> {
    for (name, present) in libraries_present() {
        if !present {
            return Err(format!(
                "{name} not found (install the CUDA 13 libraries and put their folder on LD_LIBRARY_PATH, without the `stubs` folder)"
            ));
        }
    }
    let run = || -> Result<DeviceInfo, String> {
        let count = CudaContext::device_count().map_err(|e| format!("the CUDA driver cannot list devices: {e}"))?;
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err("the CUDA driver sees no device".into());
        }
        if ordinal >= count {
            return Err(format!("no CUDA device {ordinal}: the driver sees {count}"));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| format!("cannot open CUDA device {ordinal}: {e}"))?;
        let name = ctx.name().map_err(|e| format!("device name: {e}"))?;
        let compute_capability = ctx.compute_capability().map_err(|e| format!("compute capability: {e}"))?;
        let total_mem_bytes = ctx.total_mem().map_err(|e| format!("device memory: {e}"))?;
        Ok(DeviceInfo {
            ordinal,
            device_count: count,
            name,
            compute_capability,
            total_mem_bytes,
        })
    };
    catch_panic("probing the CUDA device", run)
}

/// Runs `f`, turning a panic (cudarc panics when a library symbol is missing) into `Err`.
pub fn catch_panic<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what} panicked: {msg}"))
        }
    }
}
