//! Run control shared by the sampler and the trainer: a cancel flag that any thread may
//! set, and an optional progress callback that may ask to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Progress callback: (step done, total steps) → `true` to continue, `false` to stop.
pub type ProgressFn<'a> = dyn FnMut(usize, usize) -> bool + 'a;

/// Cancellation and progress reporting for a long call.
#[derive(Default)]
pub struct RunControl<'a> {
    /// Set from any thread to stop at the next step with [`Error::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Called after every step.
    pub progress: Option<&'a mut ProgressFn<'a>>,
}

impl RunControl<'_> {
    /// Fails with [`Error::Cancelled`] if the cancel flag is set.
    pub fn check(&self) -> Result<()> {
        if let Some(c) = &self.cancel {
            if c.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    }

    /// Reports progress; fails with [`Error::Cancelled`] if the callback asks to stop
    /// or the cancel flag is set.
    pub fn step(&mut self, done: usize, total: usize) -> Result<()> {
        if let Some(p) = self.progress.as_mut() {
            if !p(done, total) {
                return Err(Error::Cancelled);
            }
        }
        self.check()
    }
}
