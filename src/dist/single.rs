//! [`SingleProcess`]: the world of one process. Every collective is the identity, so the
//! data-parallel code path run on one process is the plain one-process training step.

use std::time::Duration;

use super::communicator::{Communicator, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};

/// Rank 0 of a world of 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn name(&self) -> &'static str {
        "single"
    }
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }
    fn all_reduce_sum_f32(&mut self, _values: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&mut self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&mut self, _bytes: &mut [u8], root: usize) -> Result<()> {
        if root != 0 {
            return Err(Error::invalid(format!("broadcast root {root} in a world of 1")));
        }
        Ok(())
    }
    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }
}
