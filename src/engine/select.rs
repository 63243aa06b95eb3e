//! Choosing the backend at run time: the request (`auto` / `cpu` / `cuda` and their
//! settings), the CUDA probe, and [`AnyBackend`], the chosen backend with the words
//! that describe it ("cpu (12 threads)", "cuda:0 NVIDIA H200 (sm_90, 139.8 GiB, 1
//! device(s))").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::backend::cpu::{CpuBackend, CpuOptions};
#[cfg(feature = "cuda")]
use crate::backend::cuda::{CudaBackend, CudaOptions};
use crate::error::{Error, Result};

/// Why CUDA is unavailable in a build without the `cuda` feature.
pub const CUDA_NOT_BUILT: &str = "not built: this ucgm was compiled without the `cuda` feature";

/// Which backend the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// CUDA when it can be used here, else the CPU.
    #[default]
    Auto,
    /// The CPU backend (always built).
    Cpu,
    /// The CUDA backend; an error when it cannot be used.
    Cuda,
}

impl BackendChoice {
    /// "auto", "cpu" or "cuda".
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "cuda" | "gpu" => Ok(BackendChoice::Cuda),
            _ => Err(Error::invalid(format!("backend {s:?}: expected auto, cpu or cuda"))),
        }
    }
}

/// Which backend a built one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Cuda,
}

/// What the user asked for, with the settings of both backends. In a run config this is
/// the `backend:` key, e.g. `backend: {type: cuda, device: 0, tf32: false}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendRequest {
    /// `auto` (default), `cpu` or `cuda`.
    #[serde(rename = "type")]
    pub choice: BackendChoice,
    /// CPU worker threads of the backend's own pool; 0 = one per logical CPU.
    pub threads: usize,
    /// CUDA device ordinal (default 0).
    pub device: usize,
    /// Let cuBLAS use TF32 tensor cores for float32 products (faster, ~1e-3 relative
    /// error per product). Off unless asked for; the CPU ignores it.
    pub tf32: bool,
    /// bf16 mixed precision: matrix products on bf16 operands with f32 accumulation,
    /// everything else f32. On CUDA (`CudaOptions::bf16`) for sampling and training,
    /// with f32 master weights. On the CPU (`CpuOptions::bf16`) for sampling: a model
    /// that only samples keeps its Linear weights in bf16 (half the memory); training
    /// stays f32. Off unless asked for.
    pub bf16: bool,
}

/// A built backend of either kind. Cheap to clone (clones share the CPU pool or the
/// CUDA context and stream).
#[derive(Clone, Debug)]
pub enum AnyBackend {
    Cpu(CpuBackend<f32>),
    #[cfg(feature = "cuda")]
    Cuda(CudaBackend),
}

impl From<CpuBackend<f32>> for AnyBackend {
    fn from(b: CpuBackend<f32>) -> Self {
        AnyBackend::Cpu(b)
    }
}

#[cfg(feature = "cuda")]
impl From<CudaBackend> for AnyBackend {
    fn from(b: CudaBackend) -> Self {
        AnyBackend::Cuda(b)
    }
}

impl AnyBackend {
    /// A CPU backend with its own pool of `threads` workers (0 = one per logical CPU).
    pub fn cpu(threads: usize) -> Result<Self> {
        Ok(AnyBackend::Cpu(CpuBackend::new(threads)?))
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match self {
            AnyBackend::Cpu(_) => BackendKind::Cpu,
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(_) => BackendKind::Cuda,
        }
    }

    /// One line naming the backend: "cpu (2 threads)", or "cuda:0 NVIDIA H200 (sm_90,
    /// 139.8 GiB, 1 device(s))" with ", bf16 mixed precision" or ", TF32 on" when asked for.
    pub fn describe(&self) -> String {
        match self {
            AnyBackend::Cpu(b) => {
                let mode = if b.options().bf16 { ", bf16 products" } else { "" };
                match b.threads() {
                    1 => format!("cpu (1 thread{mode})"),
                    n => format!("cpu ({n} threads{mode})"),
                }
            }
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(b) => {
                let o = b.options();
                let mode = if o.bf16 {
                    ", bf16 mixed precision"
                } else if o.tf32 {
                    ", TF32 on"
                } else {
                    ""
                };
                format!("{}{mode}", b.device())
            }
        }
    }

    /// Worker threads of a CPU backend; 0 for CUDA.
    pub fn threads(&self) -> usize {
        match self {
            AnyBackend::Cpu(b) => b.threads(),
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(_) => 0,
        }
    }

    /// The CUDA device ordinal; None on the CPU.
    pub fn cuda_device(&self) -> Option<usize> {
        match self {
            AnyBackend::Cpu(_) => None,
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(b) => Some(b.device().ordinal),
        }
    }

    /// Whether products may use TF32 (CUDA only).
    pub fn tf32(&self) -> bool {
        match self {
            AnyBackend::Cpu(_) => false,
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(b) => b.options().tf32,
        }
    }

    /// Whether products run in bf16 mixed precision (on the CPU: sampling products).
    pub fn bf16(&self) -> bool {
        match self {
            AnyBackend::Cpu(b) => b.options().bf16,
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(b) => b.options().bf16,
        }
    }

    /// A new backend of the same kind and settings that shares nothing with this one
    /// (its own CPU pool, or its own CUDA stream and cuBLAS handle on the same device).
    pub fn independent_copy(&self) -> Result<Self> {
        match self {
            AnyBackend::Cpu(b) => Ok(AnyBackend::Cpu(CpuBackend::with_options(b.threads(), b.options())?)),
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(b) => Ok(AnyBackend::Cuda(CudaBackend::with_options(b.device().ordinal, b.options())?)),
        }
    }
}

/// Whether CUDA device `device` can be used here: its description
/// ("cuda:0 NVIDIA H200 (sm_90, …)"), or why not (a library that does not load, no
/// device, or [`CUDA_NOT_BUILT`]). Never panics.
pub fn cuda_availability(device: usize) -> std::result::Result<String, String> {
    #[cfg(feature = "cuda")]
    {
        crate::backend::cuda::probe_device(device).map(|info| info.to_string())
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        Err(CUDA_NOT_BUILT.to_string())
    }
}

/// The chosen backend and how it came to be chosen.
#[derive(Clone, Debug)]
pub struct Selection {
    pub backend: AnyBackend,
    /// What was asked for.
    pub requested: BackendChoice,
    /// `auto` chose the CPU: why CUDA could not be used.
    pub cuda_unavailable: Option<String>,
}

impl Selection {
    /// The backend in use and, when `auto` fell back to the CPU, why: "cuda:0 NVIDIA
    /// H200 (sm_90, …)" or "cpu (12 threads); cuda unavailable: the CUDA driver library
    /// (libcuda.so) not found (…)".
    pub fn summary(&self) -> String {
        match &self.cuda_unavailable {
            Some(why) => format!("{}; cuda unavailable: {why}", self.backend.describe()),
            None => self.backend.describe(),
        }
    }

    /// The line the C ABI logs and the command-line tool prints:
    /// "backend auto: cpu (2 threads); cuda unavailable: …".
    pub fn log_line(&self) -> String {
        format!("backend {}: {}", self.requested, self.summary())
    }
}

/// The CUDA backend `req` asks for, or why it cannot be had (the text of
/// [`cuda_availability`] when the probe fails; the backend probes first).
#[cfg(feature = "cuda")]
fn cuda_backend(req: &BackendRequest) -> std::result::Result<AnyBackend, String> {
    let options = CudaOptions {
        tf32: req.tf32,
        bf16: req.bf16,
    };
    match CudaBackend::with_options(req.device, options) {
        Ok(b) => Ok(AnyBackend::Cuda(b)),
        Err(Error::Backend(why)) => Err(why),
        Err(other) => Err(other.to_string()),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(_req: &BackendRequest) -> std::result::Result<AnyBackend, String> {
    Err(CUDA_NOT_BUILT.into())
}

/// The CPU backend `req` asks for (threads, bf16).
fn cpu_backend(req: &BackendRequest) -> Result<AnyBackend> {
    Ok(AnyBackend::Cpu(CpuBackend::with_options(req.threads, CpuOptions { bf16: req.bf16 })?))
}

/// Builds the backend `req` asks for.
/// * `cpu`: the CPU backend with `req.threads` workers.
/// * `cuda`: the CUDA backend on `req.device`, or [`Error::Backend`] `"CUDA backend not
///   available: <reason>"` when a library does not load, there is no such device, the
///   backend does not start, or the build has no CUDA backend.
/// * `auto`: CUDA when that succeeds, else the CPU, with the reason kept in
///   [`Selection::cuda_unavailable`].
pub fn select(req: &BackendRequest) -> Result<Selection> {
    let chosen = |backend, cuda_unavailable| Selection {
        backend,
        requested: req.choice,
        cuda_unavailable,
    };
    match req.choice {
        BackendChoice::Cpu => Ok(chosen(cpu_backend(req)?, None)),
        BackendChoice::Cuda => match cuda_backend(req) {
            Ok(backend) => Ok(chosen(backend, None)),
            Err(why) => Err(Error::Backend(format!("CUDA backend not available: {why}"))),
        },
        BackendChoice::Auto => match cuda_backend(req) {
            Ok(backend) => Ok(chosen(backend, None)),
            Err(why) => Ok(chosen(cpu_backend(req)?, Some(why))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print() {
        for c in [BackendChoice::Auto, BackendChoice::Cpu, BackendChoice::Cuda] {
            assert_eq!(c.name().parse::<BackendChoice>().unwrap(), c);
        }
        assert_eq!("CUDA".parse::<BackendChoice>().unwrap(), BackendChoice::Cuda);
        let e = "tpu".parse::<BackendChoice>().unwrap_err().to_string();
        assert!(e.contains("expected auto, cpu or cuda"), "{e}");
    }

    #[test]
    fn cpu_is_always_there_and_auto_says_why_it_fell_back() {
        let s = select(&BackendRequest {
            choice: BackendChoice::Cpu,
            threads: 1,
            ..Default::default()
        })
        .unwrap();
        assert_eq!((s.backend.kind(), s.summary().as_str()), (BackendKind::Cpu, "cpu (1 thread)"));
        let auto = select(&BackendRequest {
            threads: 1,
            ..Default::default()
        })
        .unwrap();
        match cuda_availability(0) {
            Ok(device) => assert_eq!(auto.backend.kind(), BackendKind::Cuda, "{device}"),
            Err(why) => {
                assert_eq!(auto.backend.kind(), BackendKind::Cpu);
                assert_eq!(auto.log_line(), format!("backend auto: cpu (1 thread); cuda unavailable: {why}"));
                let e = select(&BackendRequest {
                    choice: BackendChoice::Cuda,
                    ..Default::default()
                })
                .unwrap_err();
                assert!(matches!(e, Error::Backend(_)), "{e}");
                assert!(e.to_string().contains(&format!("CUDA backend not available: {why}")), "{e}");
            }
        }
    }
}
