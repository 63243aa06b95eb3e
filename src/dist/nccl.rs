//! [`NcclCommunicator`]: NCCL through cudarc's `nccl` module, for GPUs (cargo feature
//! `nccl`). Like the rest of the CUDA path, libnccl is opened at run time: the build
//! needs nothing, and a machine without NCCL gets a clear error (probed first, since
//! cudarc panics on a missing library).
//!
//! Bootstrap: rank 0 creates the NCCL unique id and hands it to the other ranks through
//! the TCP [`rendezvous`] on `MASTER_ADDR`; world size 1 needs no
//! rendezvous. Every rank uses GPU `local_rank`.
//!
//! The [`Communicator`] methods take host slices: a call copies the values to the GPU,
//! all-reduces them there and copies them back (the trainer's gradient is reduced this
//! way today; reducing the device gradient buffer in place is the next step). Each
//! collective synchronises its stream under the [`Watchdog`], so a dead or hung peer
//! (NCCL then spins forever) ends the process after the timeout.
//!
//! Status: this file compiles in CI; it has not been run (no GPU and no NCCL here).

use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};

use super::communicator::{dist_error, Communicator};
use super::launch::LaunchEnv;
use super::rendezvous;
use super::watchdog::Watchdog;
use crate::error::Result;

/// A rank of an NCCL group on GPU `local_rank`.
pub struct NcclCommunicator {
    comm: Comm,
    stream: Arc<CudaStream>,
    rank: usize,
    world: usize,
    local_rank: usize,
    watchdog: Watchdog,
}

fn nccl_error(what: &str, e: impl std::fmt::Debug) -> crate::error::Error {
    dist_error(format!("NCCL {what}: {e:?}"))
}

impl NcclCommunicator {
    /// Joins the group described by `env` (rank 0 serves the unique id on the rendezvous
    /// port, see [`rendezvous::rendezvous_port`]).
    pub fn init(env: &LaunchEnv, timeout: Duration) -> Result<Self> {
        // SAFETY: only probes whether the shared libraries can be opened.
        let present = unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nccl::sys::is_culib_present() };
        if !present {
            return Err(dist_error("NCCL transport: libcuda.so or libnccl.so could not be opened"));
        }
        let id = if env.world == 1 {
            Id::new().map_err(|e| nccl_error("unique id", e))?
        } else {
            let (addr, master_port) = env
                .master
                .clone()
                .ok_or_else(|| dist_error("NCCL with more than one rank needs MASTER_ADDR and MASTER_PORT (the rendezvous for the unique id)"))?;
            let port = rendezvous::rendezvous_port(master_port)?;
            if env.rank == 0 {
                let id = Id::new().map_err(|e| nccl_error("unique id", e))?;
                let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
                rendezvous::serve(port, env.world, &bytes, timeout)?;
                id
            } else {
                let bytes = rendezvous::fetch(&addr, port, env.rank, env.world, timeout)?;
                let mut internal = [0 as ::core::ffi::c_char; 128];
                if bytes.len() != internal.len() {
                    return Err(dist_error(format!("rendezvous: the NCCL id has {} bytes, expected 128", bytes.len())));
                }
                for (d, s) in internal.iter_mut().zip(&bytes) {
                    *d = *s as ::core::ffi::c_char;
                }
                Id::uninit(internal)
            }
        };
        let ctx = CudaContext::new(env.local_rank).map_err(|e| nccl_error(&format!("GPU {}", env.local_rank), e))?;
        let stream = ctx.new_stream().map_err(|e| nccl_error("stream", e))?;
        let watchdog = Watchdog::new(timeout, format!("rank {} of {} (nccl)", env.rank, env.world));
        let comm = watchdog
            .guard("communicator initialisation", || Comm::from_rank(stream.clone(), env.rank, env.world, id))
            .map_err(|e| nccl_error("init", e))?;
        Ok(NcclCommunicator {
            comm,
            stream,
            rank: env.rank,
            world: env.world,
            local_rank: env.local_rank,
            watchdog,
        })
    }

    /// Sum all-reduce of host values through the GPU. values: `[n]`.
    fn reduce_host<T: cudarc::nccl::safe::NcclType + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &mut self,
        values: &mut [T],
        what: &str,
    ) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let (comm, stream) = (&self.comm, &self.stream);
        self.watchdog.guard(what, || -> Result<()> {
            let mut dev = stream.clone_htod(values).map_err(|e| nccl_error("copy to GPU", e))?;
            comm.all_reduce_in_place(&mut dev, &ReduceOp::Sum).map_err(|e| nccl_error(what, e))?;
            stream.memcpy_dtoh(&dev, values).map_err(|e| nccl_error("copy from GPU", e))?;
            stream.synchronize().map_err(|e| nccl_error("synchronize", e))
        })
    }
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.world
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn name(&self) -> &'static str {
        "nccl"
    }
    fn timeout(&self) -> Duration {
        self.watchdog.timeout()
    }
    fn all_reduce_sum_f32(&mut self, values: &mut [f32]) -> Result<()> {
        self.reduce_host(values, "all-reduce (f32 sum)")
    }
    fn all_reduce_sum_f64(&mut self, values: &mut [f64]) -> Result<()> {
        self.reduce_host(values, "all-reduce (f64 sum)")
    }
    fn broadcast(&mut self, bytes: &mut [u8], root: usize) -> Result<()> {
        if root >= self.world {
            return Err(dist_error(format!("broadcast root {root} in a world of {}", self.world)));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let (comm, stream) = (&self.comm, &self.stream);
        self.watchdog.guard("broadcast", || -> Result<()> {
            let mut dev = stream.clone_htod(&*bytes).map_err(|e| nccl_error("copy to GPU", e))?;
            comm.broadcast_in_place(&mut dev, root as i32).map_err(|e| nccl_error("broadcast", e))?;
            stream.memcpy_dtoh(&dev, bytes).map_err(|e| nccl_error("copy from GPU", e))?;
            stream.synchronize().map_err(|e| nccl_error("synchronize", e))
        })
    }
    fn barrier(&mut self) -> Result<()> {
        // NCCL has no barrier: a one-element all-reduce is one.
        let mut one = [0f32];
        self.reduce_host(&mut one, "barrier")
    }
}
