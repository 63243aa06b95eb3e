//! [`Communicator`]: what data-parallel training needs from a collective library — the
//! process's rank and the world size, an in-place sum all-reduce (f32 for gradients, f64
//! for the few statistics of a step), a broadcast from a root and a barrier. Every
//! collective is bounded by [`Communicator::timeout`]: a peer that died or hangs ends the
//! process with a clear error instead of a silent hang (see [`super::watchdog`]).

use std::time::Duration;

use crate::error::{Error, Result};

/// Environment variable holding the collective timeout in seconds (a positive number).
pub const TIMEOUT_ENV: &str = "UCGM_DIST_TIMEOUT";

/// Timeout of one collective when [`TIMEOUT_ENV`] is not set. Generous on purpose: the
/// first collective of a run waits for the slowest rank's start-up (data loading, model
/// initialisation), and a checkpoint write on rank 0 delays the next one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A group of `world()` processes that take part in every collective together, in the
/// same order. Collectives are blocking; when one does not complete within
/// [`Communicator::timeout`] the implementation reports an error or, where the
/// underlying library cannot be interrupted (MPI, NCCL), ends the process (exit status
/// [`super::watchdog::EXIT_STATUS`]) after printing which collective timed out.
pub trait Communicator {
    /// This process's rank in `0..world()`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world(&self) -> usize;
    /// Rank within this node (device selection).
    fn local_rank(&self) -> usize;
    /// Short name of the transport ("single", "mpi", "nccl").
    fn name(&self) -> &'static str;
    /// The bound on one collective.
    fn timeout(&self) -> Duration;
    /// Element-wise sum over all ranks, in place; every rank gets the identical result.
    /// values: `[n]`, the same n on every rank.
    fn all_reduce_sum_f32(&mut self, values: &mut [f32]) -> Result<()>;
    /// Element-wise sum over all ranks in f64, in place. values: `[n]`.
    fn all_reduce_sum_f64(&mut self, values: &mut [f64]) -> Result<()>;
    /// Rank `root`'s bytes into every rank's `bytes` (same length on every rank).
    fn broadcast(&mut self, bytes: &mut [u8], root: usize) -> Result<()>;
    /// Returns when every rank has reached it.
    fn barrier(&mut self) -> Result<()>;
    /// Whether this is rank 0, the one that writes checkpoints and logs.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// The collective timeout from [`TIMEOUT_ENV`] (seconds, > 0), else `default`.
pub fn timeout_from_env(default: Duration) -> Result<Duration> {
    match std::env::var(TIMEOUT_ENV) {
        Ok(s) => parse_timeout(&s),
        Err(_) => Ok(default),
    }
}

/// Parses a timeout in seconds ("30", "2.5"): finite and > 0.
pub fn parse_timeout(s: &str) -> Result<Duration> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err(Error::invalid(format!("{TIMEOUT_ENV}={s:?}: expected a positive number of seconds"))),
    }
}

/// The error of a collective on a broken group.
pub fn dist_error(what: impl std::fmt::Display) -> Error {
    Error::Backend(format!("distributed: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_strictly() {
        assert_eq!(parse_timeout("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout(" 2.5 ").unwrap(), Duration::from_millis(2500));
        for bad in ["0", "-1", "nan", "inf", "", "ten"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }
}
