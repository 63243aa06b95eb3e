//! UCGM-T, the trainer (spec §2): one training step of the unified objective — time and
//! noise sampling, positional label dropping, the online forward, the enhanced target
//! with the auxiliary network `mod`, the consistency target, the robust loss and its
//! gradient — plus the optimizers, the sampling EMA and checkpoints.
//!
//! The host-side math lives in small modules, one concept each, over flat
//! `[B, C, H, W]` buffers:
//! * [`coefficients`] — the transport's α, γ, α̂, γ̂, Δ per sample;
//! * [`interpolant`] — x_t, F*, x̂, ẑ for a whole batch;
//! * [`time_dist`], [`label_drop`] — the per-step randomness and label dropping;
//! * [`enhance`], [`consistency`] — the two target modifications;
//! * [`loss`] — the loss and dL/dF;
//! * [`teacher`] — how `mod` is obtained and its EMA ramp;
//! * [`config`] — the reference YAML sections;
//! * [`optimizer`] — clipping, the NaN guard and the AdamW / RAdam update;
//! * [`step`] — [`Trainer`], the training step itself;
//! * [`batch_part`], [`data_parallel`] — the data-parallel step over a communicator;
//! * [`checkpoint`] — save, resume, and reading weights back.

pub mod batch_part;
pub mod checkpoint;
pub mod coefficients;
pub mod config;
pub mod consistency;
pub mod data_parallel;
pub mod enhance;
pub mod interpolant;
pub mod label_drop;
pub mod loss;
pub mod optimizer;
pub mod step;
pub mod teacher;
pub mod time_dist;

pub use batch_part::BatchPart;
pub use checkpoint::{read_weights, CheckpointWeights};
pub use coefficients::{Coef, Coefficients};
pub use config::{OptimizerKind, OptimizerSection, TrainSection, TrainerConfig, TransportSection};
pub use enhance::EnhancedStyle;
pub use loss::{LossSpec, TimeWeight};
pub use step::{BoxedTransport, StepStats, StepTensors, Trainer};
