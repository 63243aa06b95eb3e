//! Applications built on the library: whole-run configuration files, the training loop
//! with data, checkpoints and sample grids, and the demo (the README's main job). The
//! command-line tool is a thin layer over this module.

pub mod checkpoints;
pub mod config;
pub mod config_keys;
pub mod decode;
pub mod demo;
pub mod encode;
pub mod eval;
pub mod fid;
pub mod output;
pub mod sample;
pub mod train;

pub use config::RunConfig;
pub use demo::{run_demo, DemoOptions, DemoReport};
pub use train::{Quiet, StepReport, TrainObserver, TrainRun};
