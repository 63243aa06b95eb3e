//! [`communicator_for`]: the communicator for the environment a process was started in.
//!
//! * no launcher, or a world of 1 → [`SingleProcess`] (NCCL with a world of 1 when asked
//!   for explicitly with [`Transport::Nccl`]);
//! * started by mpirun / a PMI launcher → MPI (feature `mpi`);
//! * more than one rank on a CUDA backend → NCCL (feature `nccl`; needs `MASTER_ADDR` /
//!   `MASTER_PORT` for the unique id, whichever launcher started the process);
//! * anything else → a clear error naming the feature or launcher that is missing.

use super::communicator::{timeout_from_env, Communicator, DEFAULT_TIMEOUT};
use super::launch::LaunchEnv;
use super::single::SingleProcess;
use crate::error::{Error, Result};

/// Which transport a caller wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// MPI for CPU runs, NCCL for CUDA runs.
    Auto { cuda: bool },
    /// MPI even on a CUDA backend (host-side reduction).
    Mpi,
    /// NCCL, even with a world of 1 (runs the NCCL path on one GPU).
    Nccl,
}

/// The communicator for `env` (usually [`LaunchEnv::from_env`]) with the timeout of
/// `UCGM_DIST_TIMEOUT` (default [`DEFAULT_TIMEOUT`]).
pub fn communicator_for(env: &LaunchEnv, transport: Transport) -> Result<Box<dyn Communicator>> {
    // Parsed (and so checked) in every build, used by the transports this build has.
    #[cfg_attr(not(any(feature = "mpi", feature = "nccl")), allow(unused_variables))]
    let timeout = timeout_from_env(DEFAULT_TIMEOUT)?;
    let use_nccl = match transport {
        Transport::Nccl => true,
        Transport::Mpi => false,
        Transport::Auto { cuda } => cuda && env.world > 1,
    };
    if use_nccl {
        #[cfg(feature = "nccl")]
        return Ok(Box::new(super::nccl::NcclCommunicator::init(env, timeout)?));
        #[cfg(not(feature = "nccl"))]
        return Err(Error::Unsupported(format!(
            "rank {} of {} on CUDA needs the NCCL transport: build with --features nccl",
            env.rank, env.world
        )));
    }
    if env.world == 1 && transport != Transport::Mpi {
        return Ok(Box::new(SingleProcess));
    }
    if env.launcher.is_mpi() || transport == Transport::Mpi {
        #[cfg(feature = "mpi")]
        {
            let comm = super::mpi::MpiCommunicator::init(timeout, env.local_rank)?;
            if env.launcher.is_mpi() && (comm.rank() != env.rank || comm.world() != env.world) {
                return Err(super::communicator::dist_error(format!(
                    "MPI says rank {} of {}, the launcher's environment rank {} of {}",
                    comm.rank(),
                    comm.world(),
                    env.rank,
                    env.world
                )));
            }
            return Ok(Box::new(comm));
        }
        #[cfg(not(feature = "mpi"))]
        return Err(Error::Unsupported(format!(
            "started by {:?} as rank {} of {}, but this build has no MPI transport: build with --features mpi",
            env.launcher, env.rank, env.world
        )));
    }
    Err(Error::Unsupported(format!(
        "started by {:?} as rank {} of {} on the CPU: multi-process CPU training runs over MPI (build with --features mpi and launch with mpirun)",
        env.launcher, env.rank, env.world
    )))
}
