//! [`BatchPart`]: which samples of a global batch one data-parallel rank trains on — the
//! contiguous global indices `offset..offset + len` of a batch of `global` samples. The
//! per-sample quantities that depend on a sample's place in the batch (positional label
//! dropping, the 1/B of the loss mean) are computed from the global index, so the parts
//! of a step together equal the one-process step on the whole batch.

use super::label_drop::drop_count;
use crate::error::{Error, Result};

/// A contiguous part of a global batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPart {
    /// Global index of the part's first sample.
    pub offset: usize,
    /// Samples in the part.
    pub len: usize,
    /// Samples in the global batch.
    pub global: usize,
}

impl BatchPart {
    /// The whole batch of `batch` samples (one process).
    pub fn whole(batch: usize) -> Self {
        BatchPart {
            offset: 0,
            len: batch,
            global: batch,
        }
    }

    /// Samples `range` of a global batch of `global`; the range must lie inside it.
    pub fn new(range: std::ops::Range<usize>, global: usize) -> Result<Self> {
        if range.start > range.end || range.end > global {
            return Err(Error::invalid(format!("batch part {range:?} is not inside a batch of {global}")));
        }
        Ok(BatchPart {
            offset: range.start,
            len: range.len(),
            global,
        })
    }

    /// The part's global index range.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }

    /// How many of this part's samples are dropped to the null class: the global batch
    /// drops its last `drop_count(ratio, global)` samples, so a part drops its samples at
    /// global index ≥ global − that count — always a tail of the part.
    pub fn local_drops(&self, ratio: f64) -> usize {
        let first_dropped = self.global - drop_count(ratio, self.global);
        self.range().end.saturating_sub(first_dropped.max(self.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_follow_the_global_tail() {
        // B = 16, ratio 0.1 → the last 2 samples (14, 15) are dropped.
        assert_eq!(BatchPart::whole(16).local_drops(0.1), 2);
        assert_eq!(BatchPart::new(0..8, 16).unwrap().local_drops(0.1), 0);
        assert_eq!(BatchPart::new(8..15, 16).unwrap().local_drops(0.1), 1);
        assert_eq!(BatchPart::new(15..16, 16).unwrap().local_drops(0.1), 1);
        assert_eq!(BatchPart::new(16..16, 16).unwrap().local_drops(0.1), 0);
        for world in 1..6 {
            let total: usize = (0..world)
                .map(|r| BatchPart::new(crate::dist::shard_range(128, r, world), 128).unwrap().local_drops(0.1))
                .sum();
            assert_eq!(total, 13);
        }
        assert!(BatchPart::new(3..17, 16).is_err());
    }
}
