//! Kernel launches: typed arguments checked against the kernel table's signature, and
//! the launch shapes the kernels are written for (grid-stride loops, one block per row,
//! one warp per task).

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::kernels::Kernel;
use super::CudaBackend;

/// One kernel argument. `P` is a device address (`float*`, `double*`, `const i64*`).
#[derive(Clone, Copy, Debug)]
pub(super) enum Arg {
    P(u64),
    I(i64),
    F(f32),
    D(f64),
}

impl Arg {
    fn kind(&self) -> char {
        match self {
            Arg::P(_) => 'P',
            Arg::I(_) => 'I',
            Arg::F(_) => 'F',
            Arg::D(_) => 'D',
        }
    }
}

/// A size as a kernel `long long`.
pub(super) fn i(n: usize) -> Arg {
    Arg::I(n as i64)
}

/// Threads per block of every kernel (a multiple of 32: the block reductions need it).
pub(super) const THREADS: u32 = 256;
/// Cap on the grid of grid-stride kernels (they loop over the rest).
const MAX_BLOCKS: usize = 1 << 20;

/// `n` independent elements, grid-stride (`GRID_STRIDE` in the sources).
pub(super) fn elems(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row (`BLOCK_ROWS` in the sources).
pub(super) fn rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.clamp(1, MAX_BLOCKS) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One warp per task (the attention q/k kernels).
pub(super) fn warps(tasks: usize) -> LaunchConfig {
    let per_block = (THREADS / 32) as usize;
    LaunchConfig {
        grid_dim: (tasks.div_ceil(per_block).clamp(1, MAX_BLOCKS) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaBackend {
    /// Launches kernel `k` on the backend's stream with `args`, unless the backend has
    /// failed or `work` is 0 (a zero-sized grid is a launch error). Records any error.
    pub(super) fn launch(&self, k: Kernel, cfg: LaunchConfig, work: usize, args: &[Arg]) {
        if work == 0 || self.failed() {
            return;
        }
        let kinds: String = args.iter().map(Arg::kind).collect();
        if kinds != k.signature() {
            self.fail(format!("internal: kernel {} takes ({}), launched with ({kinds})", k.name(), k.signature()));
            return;
        }
        let func = self.s.kernels.get(k);
        let mut b = self.s.stream.launch_builder(func);
        for a in args {
            match a {
                Arg::P(v) => b.arg(v),
                Arg::I(v) => b.arg(v),
                Arg::F(v) => b.arg(v),
                Arg::D(v) => b.arg(v),
            };
        }
        // SAFETY: the arguments match the kernel's parameter list (checked above against
        // the table, which a unit test checks against the sources), and every pointer
        // addresses a view whose length the calling op checked against the sizes passed.
        let r = unsafe { b.launch(cfg) };
        self.check(&format!("launching kernel {}", k.name()), r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_never_empty_and_capped() {
        assert_eq!(elems(0).grid_dim.0, 1);
        assert_eq!(elems(257).grid_dim.0, 2);
        assert_eq!(elems(usize::MAX / 2).grid_dim.0 as usize, MAX_BLOCKS);
        assert_eq!(rows(5).grid_dim.0, 5);
        assert_eq!(warps(9).grid_dim.0, 2);
        assert_eq!(THREADS % 32, 0);
    }
}
