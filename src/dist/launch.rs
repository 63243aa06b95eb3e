//! Where a process stands in a multi-process launch, read from the environment its
//! launcher set — the variables users already launch with, no extra flags:
//!
//! | launcher | rank | world size | local rank |
//! |---|---|---|---|
//! | Open MPI `mpirun` | `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK` |
//! | MPICH / Hydra, Intel MPI (PMI) | `PMI_RANK` | `PMI_SIZE` | `MPI_LOCALRANKID` |
//! | `torchrun` | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` |
//! | Slurm `srun` | `SLURM_PROCID` | `SLURM_NTASKS` | `SLURM_LOCALID` |
//!
//! The first launcher in that order whose rank and size are both set wins (torchrun or
//! mpirun inside a Slurm allocation describe the real process group; the Slurm variables
//! then describe the allocation). `MASTER_ADDR` / `MASTER_PORT` (torchrun; set them
//! yourself under mpirun or srun) name the rendezvous for the NCCL unique id.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Which launcher's variables described the process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher variables: a single process.
    None,
    /// Open MPI's `mpirun` / `mpiexec`.
    OpenMpi,
    /// A PMI launcher (MPICH's Hydra, Intel MPI).
    Pmi,
    /// `torchrun` / `torch.distributed.launch`.
    Torchrun,
    /// Slurm's `srun`.
    Slurm,
}

impl Launcher {
    /// Whether MPI started this process (so MPI can be initialised in it).
    pub fn is_mpi(self) -> bool {
        matches!(self, Launcher::OpenMpi | Launcher::Pmi)
    }
}

/// A process's place in its launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchEnv {
    /// Who set the variables.
    pub launcher: Launcher,
    /// Rank in `0..world`.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Rank within this node.
    pub local_rank: usize,
    /// `MASTER_ADDR:MASTER_PORT`, when both are set.
    pub master: Option<(String, u16)>,
}

/// (launcher, rank, size, local rank) variable names, in precedence order.
const LAUNCHERS: [(Launcher, &str, &str, &str); 4] = [
    (Launcher::OpenMpi, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    (Launcher::Pmi, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    (Launcher::Torchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    (Launcher::Slurm, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
];

impl LaunchEnv {
    /// A single process (no launcher).
    pub fn single() -> Self {
        LaunchEnv {
            launcher: Launcher::None,
            rank: 0,
            world: 1,
            local_rank: 0,
            master: None,
        }
    }

    /// From this process's environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// From a map of environment variables (the testable core of [`LaunchEnv::from_env`]).
    /// Errors name the variable that is malformed or inconsistent.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self> {
        let number = |name: &str| -> Result<Option<usize>> {
            match vars.get(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| Error::invalid(format!("launch environment: {name}={v:?} is not a non-negative integer"))),
            }
        };
        let master = match (vars.get("MASTER_ADDR"), vars.get("MASTER_PORT")) {
            (Some(addr), Some(port)) if !addr.trim().is_empty() => {
                let port = port
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| Error::invalid(format!("launch environment: MASTER_PORT={port:?} is not a port number (1-65535)")))?;
                Some((addr.trim().to_string(), port))
            }
            _ => None,
        };
        for (launcher, rank_var, size_var, local_var) in LAUNCHERS {
            let (rank, world) = match (number(rank_var)?, number(size_var)?) {
                (Some(r), Some(w)) => (r, w),
                (None, None) => continue,
                (Some(_), None) => return Err(Error::invalid(format!("launch environment: {rank_var} is set but {size_var} is not"))),
                (None, Some(_)) => return Err(Error::invalid(format!("launch environment: {size_var} is set but {rank_var} is not"))),
            };
            if world == 0 || rank >= world {
                return Err(Error::invalid(format!("launch environment: {rank_var}={rank} is not below {size_var}={world}")));
            }
            let local_rank = number(local_var)?.unwrap_or(0);
            return Ok(LaunchEnv {
                launcher,
                rank,
                world,
                local_rank,
                master,
            });
        }
        Ok(LaunchEnv { master, ..Self::single() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<LaunchEnv> {
        LaunchEnv::from_vars(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn every_launcher_is_read() {
        assert_eq!(env(&[]).unwrap(), LaunchEnv::single());
        let t = env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap();
        assert_eq!(
            t,
            LaunchEnv {
                launcher: Launcher::Torchrun,
                rank: 3,
                world: 8,
                local_rank: 1,
                master: Some(("node7".into(), 29500))
            }
        );
        let m = env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ])
        .unwrap();
        assert_eq!((m.launcher, m.rank, m.world, m.local_rank, m.master), (Launcher::OpenMpi, 1, 2, 1, None));
        assert!(m.launcher.is_mpi());
        let p = env(&[("PMI_RANK", "0"), ("PMI_SIZE", "4"), ("MPI_LOCALRANKID", "0")]).unwrap();
        assert_eq!((p.launcher, p.world), (Launcher::Pmi, 4));
        let s = env(&[("SLURM_PROCID", "5"), ("SLURM_NTASKS", "6"), ("SLURM_LOCALID", "2")]).unwrap();
        assert_eq!((s.launcher, s.rank, s.world, s.local_rank), (Launcher::Slurm, 5, 6, 2));
        assert!(!s.launcher.is_mpi());
    }

    #[test]
    fn precedence_mpi_then_torchrun_then_slurm() {
        let both = env(&[("RANK", "1"), ("WORLD_SIZE", "2"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]).unwrap();
        assert_eq!((both.launcher, both.rank, both.world), (Launcher::Torchrun, 1, 2));
        let all = env(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2"), ("RANK", "1"), ("WORLD_SIZE", "2")]).unwrap();
        assert_eq!((all.launcher, all.rank), (Launcher::OpenMpi, 0));
        // A local rank that is missing is 0.
        assert_eq!(env(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap().local_rank, 0);
    }

    #[test]
    fn malformed_environments_are_errors() {
        for bad in [
            vec![("RANK", "2"), ("WORLD_SIZE", "2")],
            vec![("RANK", "0"), ("WORLD_SIZE", "0")],
            vec![("RANK", "-1"), ("WORLD_SIZE", "2")],
            vec![("RANK", "x"), ("WORLD_SIZE", "2")],
            vec![("RANK", "0")],
            vec![("WORLD_SIZE", "2")],
            vec![("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1"), ("SLURM_LOCALID", "a")],
            vec![("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")],
            vec![("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "0")],
        ] {
            let e = env(&bad).unwrap_err().to_string();
            assert!(e.contains("launch environment"), "{bad:?}: {e}");
        }
    }
}
