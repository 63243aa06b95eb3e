//! Argument checking at the C boundary: versioned `struct_size` structs, pointers,
//! strings, enums and labels. Nothing here trusts the caller beyond what C cannot tell
//! us (that a non-NULL pointer really has the documented size).
//!
//! # The `struct_size` rule
//!
//! Every params or info struct starts with `size_t struct_size` and only ever grows at
//! the end. A struct passed in is accepted when its `struct_size` is
//! * one of the sizes the struct has had in a released ABI (fields the caller's older
//!   header does not have take their defaults), or
//! * larger than this library's size (a newer header) **and** every byte past this
//!   library's size is zero — that is, the caller left the fields this library does not
//!   know at zero, as `*_params_default` leaves them. Non-zero unknown fields are
//!   rejected rather than silently ignored. Sizes above 64 KiB are rejected outright.
//!
//! Anything else (smaller than the first release's size, or a size between releases)
//! fails with `UCGM_STATUS_INVALID_ARGUMENT`. Output structs follow the same rule; the
//! library fills the fields it knows and zeroes the bytes past them.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;

use crate::error::{check_finite, Error, Result};

/// Largest `struct_size` accepted at all.
const MAX_STRUCT_SIZE: usize = 1 << 16;

/// A `#[repr(C)]` struct whose first field is `struct_size: usize` and whose fields are
/// all plain data (any bit pattern of a shipped prefix is a valid value).
///
/// # Safety
/// Implementors must be `#[repr(C)]`, start with `struct_size: usize`, and list in
/// `SIZES` only sizes that end on a field boundary of the current layout.
pub(crate) unsafe trait Versioned: Copy {
    /// The C type's name, for messages.
    const NAME: &'static str;
    /// `sizeof` of the struct in every released ABI, oldest first; the last is the current size.
    const SIZES: &'static [usize];
    /// The default value (`struct_size` = the current size).
    fn defaults() -> Self;
    /// An output struct (the library fills it; there is no `*_default` function).
    const OUTPUT: bool = false;
}

/// Checks a struct's `struct_size` against the rule above; returns it.
fn check_size<T: Versioned>(size: usize) -> Result<usize> {
    let known = std::mem::size_of::<T>();
    debug_assert_eq!(T::SIZES.last(), Some(&known), "{}: SIZES must end with the current size", T::NAME);
    if T::SIZES.contains(&size) || (size > known && size <= MAX_STRUCT_SIZE) {
        return Ok(size);
    }
    let hint = if T::OUTPUT {
        format!("set it to sizeof(struct {})", T::NAME)
    } else {
        format!("set it with {}_default() or to sizeof(struct {})", T::NAME, T::NAME)
    };
    if size < T::SIZES[0] {
        Err(Error::invalid(format!(
            "{}.struct_size = {size} is smaller than any released version of the struct (at least {}); {hint}",
            T::NAME,
            T::SIZES[0]
        )))
    } else if size > MAX_STRUCT_SIZE {
        Err(Error::invalid(format!(
            "{}.struct_size = {size} is implausibly large (this library's size is {known}); {hint}",
            T::NAME
        )))
    } else {
        Err(Error::invalid(format!(
            "{}.struct_size = {size} is not a size this struct has had (known sizes {:?}); {hint}",
            T::NAME,
            T::SIZES
        )))
    }
}

fn check_aligned<T>(what: &str, p: *const T) -> Result<()> {
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::invalid(format!("{what} = {p:p} is not aligned to {} bytes", std::mem::align_of::<T>())));
    }
    Ok(())
}

fn check_ptr<T>(what: &str, p: *const T) -> Result<()> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    check_aligned(what, p)
}

/// Reads a versioned input struct (see the module docs for the `struct_size` rule).
pub(crate) unsafe fn read_params<T: Versioned>(p: *const T) -> Result<T> {
    check_ptr(T::NAME, p)?;
    let size = check_size::<T>(p.cast::<usize>().read())?;
    let known = std::mem::size_of::<T>();
    if size >= known {
        let tail = std::slice::from_raw_parts(p.cast::<u8>().add(known), size - known);
        if let Some(i) = tail.iter().position(|&b| b != 0) {
            return Err(Error::invalid(format!(
                "{}: byte {} is non-zero but this library (ABI {}) knows only the first {known} bytes; \
                 leave fields this library does not know at zero, or upgrade the library",
                T::NAME,
                known + i,
                super::UCGM_ABI_VERSION
            )));
        }
        return Ok(p.read());
    }
    // An older caller: its prefix over our defaults.
    let mut v = T::defaults();
    std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut v as *mut T).cast::<u8>(), size);
    Ok(v)
}

/// Writes a versioned output struct: the caller's `struct_size` is checked and kept, the
/// known fields that fit are written and any bytes past them zeroed.
pub(crate) unsafe fn write_out<T: Versioned>(p: *mut T, value: T) -> Result<()> {
    check_ptr(T::NAME, p)?;
    let size = check_size::<T>(p.cast::<usize>().read())?;
    let known = std::mem::size_of::<T>();
    let mut value = value;
    (&mut value as *mut T).cast::<usize>().write(size);
    std::ptr::copy_nonoverlapping((&value as *const T).cast::<u8>(), p.cast::<u8>(), size.min(known));
    if size > known {
        std::ptr::write_bytes(p.cast::<u8>().add(known), 0, size - known);
    }
    Ok(())
}

/// `*_params_default(params, struct_size)`: writes the defaults into the caller's struct
/// of `struct_size` bytes (which must follow the `struct_size` rule).
pub(crate) unsafe fn write_defaults<T: Versioned>(p: *mut T, struct_size: usize) -> Result<()> {
    check_ptr(T::NAME, p)?;
    check_size::<T>(struct_size)?;
    p.cast::<usize>().write(struct_size);
    write_out(p, T::defaults())
}

/// A handle reference (non-NULL, aligned).
pub(crate) unsafe fn handle_ref<'a, H: super::AsHandle>(p: *const H) -> Result<&'a H> {
    check_ptr(H::NAME, p)?;
    Ok(&*p)
}

/// An out-parameter (non-NULL, aligned).
pub(crate) unsafe fn out_ref<'a, T>(what: &str, p: *mut T) -> Result<&'a mut T> {
    check_ptr(what, p)?;
    Ok(&mut *p)
}

/// `len` elements at `p` (non-NULL, aligned).
pub(crate) unsafe fn slice<'a, T>(what: &str, p: *const T, len: usize) -> Result<&'a [T]> {
    check_ptr(what, p)?;
    check_bytes::<T>(what, len)?;
    Ok(std::slice::from_raw_parts(p, len))
}

/// `len` writable elements at `p` (non-NULL, aligned).
pub(crate) unsafe fn slice_mut<'a, T>(what: &str, p: *mut T, len: usize) -> Result<&'a mut [T]> {
    check_ptr(what, p)?;
    check_bytes::<T>(what, len)?;
    Ok(std::slice::from_raw_parts_mut(p, len))
}

/// `len` finite floats at `p`.
pub(crate) unsafe fn finite_slice<'a>(what: &str, p: *const f32, len: usize) -> Result<&'a [f32]> {
    let s = slice(what, p, len)?;
    check_finite(what, s)?;
    Ok(s)
}

fn check_bytes<T>(what: &str, len: usize) -> Result<()> {
    if len.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid(format!("{what}: length {len} is too large")));
    }
    Ok(())
}

/// Checks that a caller's buffer length equals the required one.
pub(crate) fn check_buffer_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::invalid(format!("{what}: length {got} elements, expected {want}")));
    }
    Ok(())
}

/// `a · b · …` with overflow reported as an invalid argument.
pub(crate) fn elements(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("{what}: size {dims:?} overflows")))
}

/// A NUL-terminated UTF-8 string (non-NULL).
pub(crate) unsafe fn str_arg<'a>(what: &str, p: *const c_char) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|e| Error::invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// A NUL-terminated path (non-NULL, non-empty; any bytes on Unix).
pub(crate) unsafe fn path_arg(what: &str, p: *const c_char) -> Result<PathBuf> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    let bytes = CStr::from_ptr(p).to_bytes();
    if bytes.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        Ok(PathBuf::from(str_arg(what, p)?))
    }
}

/// Maps a C enum value through `table`, naming the allowed values on failure.
pub(crate) fn enum_arg<T: Copy>(what: &str, v: i32, table: &[(i32, &str, T)]) -> Result<T> {
    table.iter().find(|(k, _, _)| *k == v).map(|(_, _, t)| *t).ok_or_else(|| {
        let allowed: Vec<String> = table.iter().map(|(k, n, _)| format!("{n} ({k})")).collect();
        Error::invalid(format!("{what} = {v} is not one of {}", allowed.join(", ")))
    })
}

/// A boolean crossing as `int32_t`: 0 or 1 only.
pub(crate) fn bool_arg(what: &str, v: i32) -> Result<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::invalid(format!("{what} = {v} is not a boolean (0 or 1)"))),
    }
}

/// A finite `double`.
pub(crate) fn finite(what: &str, v: f64) -> Result<f64> {
    if !v.is_finite() {
        return Err(Error::NonFinite(format!("{what} = {v}")));
    }
    Ok(v)
}

/// Finite `double`s.
pub(crate) fn finite_all<const N: usize>(what: &str, v: [f64; N]) -> Result<[f64; N]> {
    for (i, x) in v.iter().enumerate() {
        finite(&format!("{what}[{i}]"), *x)?;
    }
    Ok(v)
}

/// `n` class labels at `p`, each in `0..=max`.
pub(crate) unsafe fn labels_arg(what: &str, p: *const i32, n: usize, max: usize, max_meaning: &str) -> Result<Vec<usize>> {
    let raw = slice(what, p, n)?;
    raw.iter()
        .enumerate()
        .map(|(i, &l)| {
            usize::try_from(l)
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| Error::invalid(format!("{what}[{i}] = {l} is outside 0..={max} ({max_meaning})")))
        })
        .collect()
}
