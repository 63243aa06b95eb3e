//! How a global batch is split over ranks: contiguous slices in rank order, the first
//! `B mod world` ranks taking one sample more. Sample `i` of the global batch belongs to
//! exactly one rank, and concatenating the slices in rank order gives the global batch —
//! which is what makes an N-rank step equal the one-process step on the same batch.

use std::ops::Range;

/// The global-batch indices of `rank`'s slice of a batch of `global` samples over `world`
/// ranks (empty when `global < world` leaves this rank nothing). Panics if `world == 0`
/// or `rank >= world` (a communicator never reports those).
pub fn shard_range(global: usize, rank: usize, world: usize) -> Range<usize> {
    assert!(world > 0 && rank < world, "rank {rank} of world {world}");
    let (base, extra) = (global / world, global % world);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start..start + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_tile_the_batch_in_rank_order() {
        for global in 0..20 {
            for world in 1..7 {
                let mut next = 0;
                for rank in 0..world {
                    let r = shard_range(global, rank, world);
                    assert_eq!(r.start, next);
                    assert!(r.len() == global / world || r.len() == global / world + 1);
                    next = r.end;
                }
                assert_eq!(next, global);
            }
        }
        assert_eq!(shard_range(10, 0, 4), 0..3);
        assert_eq!(shard_range(10, 3, 4), 8..10);
    }
}
