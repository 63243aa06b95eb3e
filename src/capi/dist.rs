//! Data parallelism through the C ABI: a host application that runs the trainer in its
//! own processes (under its MPI, NCCL, Gloo, …) describes its process group with a
//! `ucgm_communicator` — rank, world size and the collectives as callbacks — sets it on
//! a trainer with `ucgm_trainer_set_communicator`, and calls `ucgm_train_step_part` on
//! every rank with that rank's slice of the global batch. The library never ships its
//! own collective transport here: it calls the host's.

use std::ffi::c_void;
use std::mem::size_of;
use std::time::Duration;

use super::params::{self, Versioned};
use super::train::{batch_args, record, ucgm_trainer};
use super::{call, ucgm_status, with_handle};
use crate::dist::watchdog::Watchdog;
use crate::dist::{shard_range, Communicator, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};

/// Sum all-reduce of `n` elements in place (`float` or `double` by the field's name);
/// returns 0 on success, anything else is an error.
pub type ucgm_all_reduce_f32_fn = Option<unsafe extern "C" fn(values: *mut f32, n: usize, user_data: *mut c_void) -> i32>;
/// Sum all-reduce of `n` doubles in place; returns 0 on success.
pub type ucgm_all_reduce_f64_fn = Option<unsafe extern "C" fn(values: *mut f64, n: usize, user_data: *mut c_void) -> i32>;
/// Broadcast of `n` bytes from rank `root` into every rank's buffer; returns 0 on success.
pub type ucgm_broadcast_fn = Option<unsafe extern "C" fn(bytes: *mut u8, n: usize, root: u32, user_data: *mut c_void) -> i32>;

/// The host's process group, for `ucgm_trainer_set_communicator`. Fill with
/// `ucgm_communicator_default` (rank 0 of 1, no callbacks, timeout 300 s), then set:
/// * `rank`, `world` — this process's rank in 0..world;
/// * `all_reduce_f32`, `all_reduce_f64`, `broadcast` — required when `world` > 1. They
///   are called on the thread that uses the trainer, in the same order on every rank,
///   and must give every rank the identical result;
/// * `timeout_seconds` — a callback that has not returned after this long ends the
///   process with exit status 75 after a message on stderr (a dead or hung peer must not
///   hang the job; a blocked collective cannot be unwound);
/// * `user_data` — passed to every callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ucgm_communicator {
    /// `sizeof(struct ucgm_communicator)`.
    pub struct_size: usize,
    pub rank: u32,
    pub world: u32,
    pub all_reduce_f32: ucgm_all_reduce_f32_fn,
    pub all_reduce_f64: ucgm_all_reduce_f64_fn,
    pub broadcast: ucgm_broadcast_fn,
    pub timeout_seconds: f64,
    pub user_data: *mut c_void,
}

unsafe impl Versioned for ucgm_communicator {
    const NAME: &'static str = "ucgm_communicator";
    const SIZES: &'static [usize] = &[size_of::<ucgm_communicator>()];
    fn defaults() -> Self {
        ucgm_communicator {
            struct_size: size_of::<Self>(),
            rank: 0,
            world: 1,
            all_reduce_f32: None,
            all_reduce_f64: None,
            broadcast: None,
            timeout_seconds: DEFAULT_TIMEOUT.as_secs_f64(),
            user_data: std::ptr::null_mut(),
        }
    }
}

/// A [`Communicator`] over the host's callbacks.
pub(crate) struct HostCommunicator {
    c: ucgm_communicator,
    watchdog: Watchdog,
}

// SAFETY: the callbacks and `user_data` are only used on the thread that holds the
// trainer handle's lock (the C ABI's rule: one handle, one thread at a time).
unsafe impl Send for HostCommunicator {}

impl HostCommunicator {
    fn new(c: ucgm_communicator) -> Result<Self> {
        if c.world == 0 || c.rank >= c.world {
            return Err(Error::invalid(format!("ucgm_communicator: rank {} is not below world {}", c.rank, c.world)));
        }
        if c.world > 1 && (c.all_reduce_f32.is_none() || c.all_reduce_f64.is_none() || c.broadcast.is_none()) {
            return Err(Error::invalid(
                "ucgm_communicator: all_reduce_f32, all_reduce_f64 and broadcast are required when world > 1",
            ));
        }
        let secs = params::finite("ucgm_communicator.timeout_seconds", c.timeout_seconds)?;
        if !(secs > 0.0 && secs < 1e9) {
            return Err(Error::invalid(format!("ucgm_communicator.timeout_seconds = {secs}: expected > 0")));
        }
        let watchdog = Watchdog::new(Duration::from_secs_f64(secs), format!("rank {} of {} (host communicator)", c.rank, c.world));
        Ok(HostCommunicator { c, watchdog })
    }

    fn status(what: &str, code: i32) -> Result<()> {
        match code {
            0 => Ok(()),
            c => Err(crate::dist::communicator::dist_error(format!("the host's {what} callback returned {c}"))),
        }
    }
}

impl Communicator for HostCommunicator {
    fn rank(&self) -> usize {
        self.c.rank as usize
    }
    fn world(&self) -> usize {
        self.c.world as usize
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn name(&self) -> &'static str {
        "host"
    }
    fn timeout(&self) -> Duration {
        self.watchdog.timeout()
    }
    fn all_reduce_sum_f32(&mut self, values: &mut [f32]) -> Result<()> {
        let Some(f) = self.c.all_reduce_f32 else { return Ok(()) };
        let user = self.c.user_data;
        // SAFETY: the host's callback on a valid buffer of `values.len()` floats.
        let code = self.watchdog.guard("all_reduce_f32", || unsafe { f(values.as_mut_ptr(), values.len(), user) });
        Self::status("all_reduce_f32", code)
    }
    fn all_reduce_sum_f64(&mut self, values: &mut [f64]) -> Result<()> {
        let Some(f) = self.c.all_reduce_f64 else { return Ok(()) };
        let user = self.c.user_data;
        // SAFETY: as above.
        let code = self.watchdog.guard("all_reduce_f64", || unsafe { f(values.as_mut_ptr(), values.len(), user) });
        Self::status("all_reduce_f64", code)
    }
    fn broadcast(&mut self, bytes: &mut [u8], root: usize) -> Result<()> {
        let Some(f) = self.c.broadcast else { return Ok(()) };
        let user = self.c.user_data;
        // SAFETY: as above.
        let code = self
            .watchdog
            .guard("broadcast", || unsafe { f(bytes.as_mut_ptr(), bytes.len(), root as u32, user) });
        Self::status("broadcast", code)
    }
    fn barrier(&mut self) -> Result<()> {
        let mut one = [0f64];
        self.all_reduce_sum_f64(&mut one)
    }
}

/// Fills `comm` (a struct of `struct_size` bytes, normally `sizeof *comm`) with the
/// defaults: rank 0 of 1, no callbacks, `timeout_seconds` 300.
#[no_mangle]
pub unsafe extern "C" fn ucgm_communicator_default(comm: *mut ucgm_communicator, struct_size: usize) -> ucgm_status {
    call("ucgm_communicator_default", || params::write_defaults(comm, struct_size))
}

/// Makes `trainer` one rank of the host's process group `comm` (copied; NULL returns the
/// trainer to a single process). Every rank must hold the same trainer state (the same
/// creation arguments, seed and checkpoint). Fails on a rank not below `world` or a
/// missing callback when `world` > 1.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_set_communicator(trainer: *mut ucgm_trainer, comm: *const ucgm_communicator) -> ucgm_status {
    with_handle("ucgm_trainer_set_communicator", trainer, |s, _| {
        s.comm = if comm.is_null() {
            None
        } else {
            Some(HostCommunicator::new(params::read_params(comm)?)?)
        };
        Ok(())
    })
}

/// One data-parallel UCGM-T step: call it on every rank of the trainer's communicator
/// with that rank's slice of a global batch of `global_batch` samples — the contiguous
/// samples `[rank·⌊B/W⌋ + min(rank, B mod W), …)`, `⌊B/W⌋` of them plus one on the first
/// `B mod W` ranks. Times and noise are drawn for the whole global batch from the
/// trainer's stream (identical on every rank), label dropping and the loss mean follow
/// the global batch, and the gradients are summed with the communicator's
/// `all_reduce_f32`, so every rank takes the same update and the result equals
/// `ucgm_train_step` on the whole batch up to the summation order.
/// * `x` — `[batch, C, H, W]` this rank's samples; `labels` — `[batch]` in 0..=K;
/// * `loss` — NULL, or receives the loss of the global batch.
///
/// Without a communicator (or with world 1) this is `ucgm_train_step` with
/// `batch == global_batch`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_train_step_part(
    trainer: *mut ucgm_trainer,
    x: *const f32,
    labels: *const i32,
    batch: usize,
    global_batch: usize,
    loss: *mut f64,
) -> ucgm_status {
    with_handle("ucgm_train_step_part", trainer, |s, _| {
        let (x, labels) = batch_args(s, x, labels, batch)?;
        let mut single = crate::dist::SingleProcess;
        let mut comm = s.comm.take();
        let result = (|| {
            let c: &mut dyn Communicator = match comm.as_mut() {
                Some(c) => c,
                None => &mut single,
            };
            let want = shard_range(global_batch.max(c.world()), c.rank(), c.world()).len();
            if batch != want {
                return Err(Error::invalid(format!(
                    "batch {batch}: rank {} of {} holds {want} samples of a global batch of {global_batch}",
                    c.rank(),
                    c.world()
                )));
            }
            s.trainer.train_step_part(x, &labels, global_batch, c)
        })();
        s.comm = comm;
        record(s, result?, loss);
        Ok(())
    })
}
