//! [`MpiCommunicator`]: the MPI world through the `mpi` crate (rsmpi), for CPU clusters
//! (`mpirun -np N ucgm train …`). Cargo feature `mpi`.
//!
//! Every collective runs under the [`Watchdog`]: MPI cannot be interrupted, and with a
//! dead peer Open MPI either aborts the job itself (mpirun notices the failed process and
//! kills the others) or, with a hung peer, blocks forever — the watchdog bounds that
//! case. MPI is initialised with `MPI_THREAD_SINGLE` semantics (only the thread that
//! created the communicator calls MPI; the watchdog never does).

use std::time::Duration;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};

use super::communicator::{dist_error, Communicator};
use super::watchdog::Watchdog;
use crate::error::Result;

/// The MPI world of this process. Finalises MPI when dropped.
pub struct MpiCommunicator {
    // Field order: the world before the universe (dropping the universe finalises MPI).
    world: SimpleCommunicator,
    _universe: Universe,
    rank: usize,
    size: usize,
    local_rank: usize,
    watchdog: Watchdog,
    /// Reused send buffer of the in-place all-reduce, `[n]`.
    scratch: Vec<f32>,
}

impl MpiCommunicator {
    /// Initialises MPI (once per process) and wraps `MPI_COMM_WORLD`. `local_rank` comes
    /// from the launcher's environment.
    pub fn init(timeout: Duration, local_rank: usize) -> Result<Self> {
        let universe = mpi::initialize().ok_or_else(|| dist_error("MPI is already initialised in this process"))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let watchdog = Watchdog::new(timeout, format!("rank {rank} of {size} (mpi)"));
        Ok(MpiCommunicator {
            world,
            _universe: universe,
            rank,
            size,
            local_rank,
            watchdog,
            scratch: Vec::new(),
        })
    }
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn name(&self) -> &'static str {
        "mpi"
    }
    fn timeout(&self) -> Duration {
        self.watchdog.timeout()
    }
    fn all_reduce_sum_f32(&mut self, values: &mut [f32]) -> Result<()> {
        self.scratch.clear();
        self.scratch.extend_from_slice(values);
        let (world, send) = (&self.world, &self.scratch);
        self.watchdog
            .guard("all-reduce (f32 sum)", || world.all_reduce_into(&send[..], values, SystemOperation::sum()));
        Ok(())
    }
    fn all_reduce_sum_f64(&mut self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        let world = &self.world;
        self.watchdog
            .guard("all-reduce (f64 sum)", || world.all_reduce_into(&send[..], values, SystemOperation::sum()));
        Ok(())
    }
    fn broadcast(&mut self, bytes: &mut [u8], root: usize) -> Result<()> {
        if root >= self.size {
            return Err(dist_error(format!("broadcast root {root} in a world of {}", self.size)));
        }
        let world = &self.world;
        self.watchdog.guard("broadcast", || world.process_at_rank(root as i32).broadcast_into(bytes));
        Ok(())
    }
    fn barrier(&mut self) -> Result<()> {
        let world = &self.world;
        self.watchdog.guard("barrier", || world.barrier());
        Ok(())
    }
}
