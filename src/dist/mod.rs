//! Data parallelism across processes: a small [`Communicator`] abstraction (rank, world
//! size, an in-place sum all-reduce, broadcast, barrier — every collective bounded by a
//! timeout) with three transports, none of them home-made:
//! * [`single`] — one process, world size 1 (every collective is the identity);
//! * `mpi` — MPI through the `mpi` crate (rsmpi), cargo feature `mpi`, for CPU clusters;
//! * `nccl` — NCCL through cudarc (loaded at run time like the rest of the CUDA path),
//!   cargo feature `nccl`, for GPUs.
//!
//! Around them: [`launch`] reads the launcher's environment (torchrun, mpirun, Slurm),
//! [`rendezvous`] hands the NCCL unique id from rank 0 to the others over TCP on
//! `MASTER_ADDR:MASTER_PORT` (the launcher protocol, not a collective transport),
//! [`watchdog`] turns a collective that does not finish within the timeout into a clear
//! error and a process exit, [`shard`] splits a global batch into per-rank slices, and
//! [`select`] picks the communicator for the environment a process was started in.

pub mod communicator;
pub mod launch;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod rendezvous;
pub mod select;
pub mod shard;
pub mod single;
pub mod watchdog;

pub use communicator::{Communicator, DEFAULT_TIMEOUT, TIMEOUT_ENV};
pub use launch::{LaunchEnv, Launcher};
pub use select::{communicator_for, Transport};
pub use shard::shard_range;
pub use single::SingleProcess;
