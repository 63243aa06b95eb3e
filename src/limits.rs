//! The limits every entry point (Rust API, CLI, C ABI) enforces before work starts, so
//! that no caller value can start thousands of threads, allocate without bound, or
//! abort the host process.
//!
//! | what | limit | where it is checked |
//! |---|---|---|
//! | CPU worker threads | `0..=MAX_THREADS` (0 = one per logical CPU) | [`check_threads`], called by `CpuBackend::new` |
//! | sampling steps | `1..=MAX_STEPS` | `SamplerConfig::validate` |
//! | buffers sized by caller values (samples, batch, trajectory) | at most the machine's physical memory, and the allocation must succeed | [`try_vec`], [`check_bytes`] |
//!
//! An allocation that depends on a caller's value is made with [`try_vec`]: it fails
//! with [`Error::OutOfMemory`] (C: `UCGM_STATUS_OUT_OF_MEMORY`, CLI: a one-line error)
//! instead of aborting, and requests larger than the machine's physical memory are
//! refused up front rather than left to the kernel's OOM killer.

use crate::error::{Error, Result};

/// Largest CPU worker-thread count accepted anywhere.
pub const MAX_THREADS: usize = 1024;

/// Largest number of sampling steps accepted anywhere (the reference uses at most a few
/// hundred; the time grid then costs under a megabyte).
pub const MAX_STEPS: usize = 100_000;

/// Fails unless `threads` lies in `0..=MAX_THREADS`.
pub fn check_threads(threads: usize) -> Result<()> {
    if threads > MAX_THREADS {
        return Err(Error::invalid(format!(
            "threads = {threads} must lie in 0..={MAX_THREADS} (0 = one per logical CPU)"
        )));
    }
    Ok(())
}

/// Fails unless `steps` lies in `1..=MAX_STEPS`.
pub fn check_steps(steps: usize) -> Result<()> {
    if steps == 0 {
        return Err(Error::invalid("sampling steps must be at least 1"));
    }
    if steps > MAX_STEPS {
        return Err(Error::invalid(format!("sampling steps = {steps} exceeds the limit of {MAX_STEPS}")));
    }
    Ok(())
}

/// Physical memory of this machine in bytes (`None` where it cannot be told).
pub fn physical_memory() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        if pages > 0 && page > 0 {
            return Some((pages as u64).saturating_mul(page as u64));
        }
    }
    None
}

fn gib(bytes: u128) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Fails with [`Error::OutOfMemory`] when `count` values of `elem_bytes` bytes each
/// (overflow included) exceed the machine's physical memory.
pub fn check_bytes(what: &str, count: usize, elem_bytes: usize) -> Result<()> {
    let bytes = count as u128 * elem_bytes as u128;
    let limit = physical_memory().map_or(isize::MAX as u128, |m| (m as u128).min(isize::MAX as u128));
    if bytes > limit {
        return Err(Error::OutOfMemory(format!(
            "{what} needs {:.1} GiB ({count} values), more than this machine's {:.1} GiB of memory",
            gib(bytes),
            gib(limit)
        )));
    }
    Ok(())
}

/// A zero-filled vector of `len` values, or [`Error::OutOfMemory`] naming `what` when it
/// is larger than physical memory or the allocation fails.
pub fn try_vec<T: Clone + Default>(what: &str, len: usize) -> Result<Vec<T>> {
    let mut v = try_with_capacity(what, len)?;
    v.resize(len, T::default());
    Ok(v)
}

/// Types whose all-zero bytes are a valid value, their zero.
///
/// # Safety
/// An implementing type's all-zero bit pattern must be a valid value.
pub unsafe trait ZeroBits: Copy {}
// SAFETY: 0.0 and 0 are all-zero bits.
unsafe impl ZeroBits for f32 {}
// SAFETY: as above.
unsafe impl ZeroBits for f64 {}
// SAFETY: as above.
unsafe impl ZeroBits for u8 {}
// SAFETY: all-zero bits are the integer 0.
unsafe impl ZeroBits for u32 {}

/// [`try_vec`] for types whose zero is all-zero bytes, from the allocator's zeroed memory:
/// a large buffer comes as fresh pages the kernel zeroes when they are first touched,
/// with no separate zeroing pass over it.
pub fn try_zeroed<T: ZeroBits>(what: &str, len: usize) -> Result<Vec<T>> {
    check_bytes(what, len, std::mem::size_of::<T>().max(1))?;
    if len == 0 || std::mem::size_of::<T>() == 0 {
        // Nothing to allocate.
        return Ok(vec![unsafe_zero(); len]);
    }
    let oom = || {
        Error::OutOfMemory(format!(
            "{what}: cannot allocate {:.2} GiB ({len} values)",
            gib(len as u128 * std::mem::size_of::<T>() as u128)
        ))
    };
    let layout = std::alloc::Layout::array::<T>(len).map_err(|_| oom())?;
    // SAFETY: the layout has a non-zero size (checked above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if ptr.is_null() {
        return Err(oom());
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `len`
    // values of T, and all of them are initialised: all-zero bytes are a valid T
    // (`ZeroBits`).
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// The all-zero value of a [`ZeroBits`] type.
fn unsafe_zero<T: ZeroBits>() -> T {
    // SAFETY: all-zero bytes are a valid T (`ZeroBits`).
    unsafe { std::mem::zeroed() }
}

/// An empty vector with room for `len` values (see [`try_vec`]).
pub fn try_with_capacity<T>(what: &str, len: usize) -> Result<Vec<T>> {
    check_bytes(what, len, std::mem::size_of::<T>().max(1))?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| {
        Error::OutOfMemory(format!(
            "{what}: cannot allocate {:.2} GiB ({len} values): {e}",
            gib(len as u128 * std::mem::size_of::<T>() as u128)
        ))
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_vectors_are_zero_and_absurd_sizes_are_errors() {
        let v = try_zeroed::<f32>("t", 1 << 20).unwrap();
        assert!(v.len() == 1 << 20 && v.iter().all(|&x| x == 0.0));
        assert!(try_zeroed::<f64>("t", 0).unwrap().is_empty());
        assert!(matches!(try_zeroed::<f64>("t", usize::MAX / 4), Err(Error::OutOfMemory(_))));
    }

    #[test]
    fn limits_at_their_edges() {
        assert!(check_threads(0).is_ok());
        assert!(check_threads(MAX_THREADS).is_ok());
        assert!(matches!(check_threads(MAX_THREADS + 1), Err(Error::InvalidArgument(_))));
        assert!(check_steps(1).is_ok());
        assert!(check_steps(MAX_STEPS).is_ok());
        assert!(check_steps(0).is_err());
        assert!(matches!(check_steps(MAX_STEPS + 1), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn absurd_allocations_are_errors_not_aborts() {
        let e = try_vec::<f32>("samples", usize::MAX / 2).unwrap_err();
        assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
        assert!(e.to_string().contains("samples"), "{e}");
        let e = try_vec::<f64>("x", 1 << 50).unwrap_err();
        assert!(matches!(e, Error::OutOfMemory(_)));
        assert_eq!(try_vec::<f32>("ok", 10).unwrap(), vec![0.0; 10]);
        assert!(physical_memory().unwrap_or(1) > 0);
    }
}
