//! The engine's one error type. Every variant maps 1:1 to a stable C status code
//! (`ucgm_status`), so the C ABI never invents its own errors.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is out of range, inconsistent, or has the wrong length/shape.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A file could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its contents are malformed, truncated or inconsistent.
    #[error("malformed file {path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A weights file does not match the model (missing, extra, mis-shaped, bad dtype).
    #[error("weights mismatch: {0}")]
    Weights(String),
    /// Input or state contains NaN or infinity where finite values are required.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// The run was stopped by `cancel` or by a progress callback.
    #[error("cancelled")]
    Cancelled,
    /// A compute backend is unavailable or failed.
    #[error("backend error: {0}")]
    Backend(String),
    /// The feature exists in the reference but is not supported by this build.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A bug inside the engine (a caught panic, a broken invariant).
    #[error("internal error: {0}")]
    Internal(String),
    /// A buffer sized by the caller's values is larger than memory or could not be allocated.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
}

impl Error {
    /// Stable numeric status for the C ABI. Values are never renumbered.
    pub fn status_code(&self) -> i32 {
        match self {
            Error::InvalidArgument(_) => 1,
            Error::Io { .. } => 2,
            Error::Format { .. } => 3,
            Error::Weights(_) => 4,
            Error::NonFinite(_) => 5,
            Error::Cancelled => 6,
            Error::Backend(_) => 7,
            Error::Unsupported(_) => 8,
            Error::Internal(_) => 9,
            Error::OutOfMemory(_) => 10,
        }
    }

    /// Shorthand for an [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Shorthand for an [`Error::Format`].
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// Fails with [`Error::InvalidArgument`] unless `got == want`.
pub fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::invalid(format!("{what}: length {got}, expected {want}")));
    }
    Ok(())
}

/// Fails with [`Error::NonFinite`] if any value is NaN or infinite.
pub fn check_finite(what: &str, xs: &[f32]) -> Result<()> {
    if let Some(i) = xs.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!("{what}[{i}] = {}", xs[i])));
    }
    Ok(())
}
