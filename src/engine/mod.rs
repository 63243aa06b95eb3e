//! The backend chosen at run time: what the C ABI, the command-line tool and the demo
//! hold when the user picks `auto`, `cpu` or `cuda` while the program runs.
//!
//! The network, the sampler and the trainer are written once, generic over
//! [`crate::Backend`]. This module adds the one place where the concrete backends are
//! named: small enums with one variant per built backend —
//! * [`AnyBackend`] — a CPU or CUDA backend, with the words that describe it;
//! * [`AnyModel`] — `Model<CpuBackend<f32>>` or `Model<CudaBackend>`;
//! * [`AnyTrainer`] — `Trainer<CpuBackend<f32>>` or `Trainer<CudaBackend>`;
//! * [`AnyVae`] — `Vae<CpuBackend<f32>>` or `Vae<CudaBackend>`;
//! * [`AnyEdm2`] — `Edm2<CpuBackend<f32>>` or `Edm2<CudaBackend>` (forward only);
//! * [`AnyNetwork`] — an [`AnyModel`] or an [`AnyEdm2`]: what a C model handle holds;
//!
//! and [`select`], which turns a [`BackendRequest`] (`auto` / `cpu` / `cuda`, CPU
//! threads, CUDA device, TF32) into a backend plus the reason it was chosen. `auto`
//! takes CUDA when the driver, NVRTC and cuBLAS load and the device opens, else the CPU;
//! an explicit `cuda` that cannot be had is an [`crate::Error::Backend`] with the reason.
//! Nothing here panics when a CUDA library is missing.
//!
//! Every method of the enums is written once: the private `dispatch!` macro expands
//! one expression for each variant (the CUDA arm only exists with the `cuda` feature).

mod any_edm2;
mod any_inception;
mod any_model;
mod any_network;
mod any_trainer;
mod any_vae;
mod select;

pub use any_edm2::AnyEdm2;
pub use any_inception::AnyInception;
pub use any_model::AnyModel;
pub use any_network::AnyNetwork;
pub use any_trainer::AnyTrainer;
pub use any_vae::AnyVae;
pub use select::{cuda_availability, select, AnyBackend, BackendChoice, BackendKind, BackendRequest, Selection, CUDA_NOT_BUILT};

/// `dispatch!(value, Enum, x => expr)`: matches `value` against every variant of `Enum`
/// (`Cpu(x)` and, with the `cuda` feature, `Cuda(x)`) and evaluates `expr` in each arm,
/// so that generic code over [`crate::Backend`] is written once for all backends.
macro_rules! dispatch {
    ($value:expr, $Enum:ident, $x:ident => $body:expr) => {
        match $value {
            $Enum::Cpu($x) => $body,
            #[cfg(feature = "cuda")]
            $Enum::Cuda($x) => $body,
        }
    };
}
pub(crate) use dispatch;
