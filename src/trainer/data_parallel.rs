//! The data-parallel training step: every rank holds the same parameters, trains on its
//! contiguous slice of the global batch ([`crate::dist::shard_range`]) and the parameter
//! gradients are summed over ranks, so every rank takes the identical optimizer, EMA and
//! `mod` update.
//!
//! Randomness. Every rank holds the same random stream and draws the times and the noise
//! of the WHOLE global batch from it in the one-process order (t for all B samples, then
//! z), keeping the rows of its slice; label dropping is positional in the global batch
//! ([`BatchPart::local_drops`]) and the loss mean is over the global batch. A sample's
//! randomness is therefore a function of its global index and the step only, and an
//! N-rank step equals the one-process step on the same global batch up to the summation
//! order of the gradient sum — with one rank this *is* the one-process step, bit for bit
//! ([`Trainer::train_step`]'s draws and arithmetic are unchanged). The price is drawing
//! B·C·H·W normals per rank and step instead of B/N·C·H·W (measured in
//! `examples/dist_allreduce_share.rs`).
//!
//! Communication per step: one 2-element f64 all-reduce (the loss and a non-finite flag,
//! so every rank takes the same NaN-guard decision as one process would) before the
//! backward pass, and one sum all-reduce of the flat gradient buffer after it (no
//! bucketing or overlap with the backward pass yet). On the CPU backend the gradient
//! buffer is reduced in place; on other backends it goes through the host.

use std::any::Any;

use super::batch_part::BatchPart;
use super::label_drop::drop_count;
use super::step::{StepStats, Trainer};
use super::time_dist::TimeDistribution;
use crate::backend::Backend;
use crate::dist::{shard_range, Communicator};
use crate::error::{check_len, Error, Result};

impl<B: Backend + Clone> Trainer<B>
where
    B::Buf: 'static,
{
    /// One data-parallel training step over `comm`: this rank's slice
    /// `shard_range(global_batch, rank, world)` of the global batch (x: `[b, C, H, W]`,
    /// labels: `[b]` in 0..K), the same call on every rank. Returns the statistics of the
    /// global batch (its loss, the norm of the summed gradient, its dropped labels).
    pub fn train_step_part(&mut self, x: &[f32], labels: &[usize], global_batch: usize, comm: &mut dyn Communicator) -> Result<StepStats> {
        let (rank, world) = (comm.rank(), comm.world());
        if global_batch < world {
            return Err(Error::invalid(format!(
                "global batch {global_batch} is smaller than the {world} ranks: every rank needs at least one sample"
            )));
        }
        let range = shard_range(global_batch, rank, world);
        let part = BatchPart::new(range.clone(), global_batch)?;
        let image = self.model.config().image_len();
        check_len("labels (this rank's slice)", labels.len(), part.len)?;
        check_len("x (this rank's slice)", x.len(), part.len * image)?;
        let time_dist = TimeDistribution::new(self.config.transport.time_dist_ctrl)?;
        let t = time_dist.sample(&mut self.rng, global_batch)?;
        let z = self.rng.normal_f32(global_batch * image);
        let (t, z) = (&t[range.clone()], &z[range.start * image..range.end * image]);

        let tensors = self.forward_part(x, labels, t, z, part)?;
        let finite = tensors.dloss.iter().all(|v| v.is_finite());
        let mut shared = [tensors.loss, if finite { 0.0 } else { 1.0 }];
        comm.all_reduce_sum_f64(&mut shared)?;
        self.backward_from(&tensors.dloss, shared[1] == 0.0)?;
        // A real transport reduces even with one rank (NCCL on one GPU runs the same path
        // as on eight; the sum over one rank is the identity, bit for bit).
        if world > 1 || comm.name() != "single" {
            self.all_reduce_grads(comm)?;
        }
        let grad_norm = self.apply_update()?;
        Ok(StepStats {
            step: self.step,
            loss: shared[0],
            grad_norm,
            n_drop: drop_count(self.config.transport.lab_drop_ratio, global_batch),
        })
    }

    /// Sums the parameter gradients over the ranks of `comm`, in place.
    fn all_reduce_grads(&mut self, comm: &mut dyn Communicator) -> Result<()> {
        let n = self.model.layout().total();
        let be = self.model.backend().clone();
        let (_, grads) = self.model.params_and_grads_mut()?;
        if let Some(host) = (grads as &mut dyn Any).downcast_mut::<Vec<f32>>() {
            return comm.all_reduce_sum_f32(&mut host[..n]);
        }
        let mut host = be.read(grads, 0..n)?;
        comm.all_reduce_sum_f32(&mut host)?;
        be.write(grads, 0, &host)
    }

    /// Checks that every rank holds bit-identical online weights (a CRC-32 of the
    /// parameters compared with rank 0's); all ranks return the same answer. A mismatch
    /// means the replicas diverged (a non-deterministic reduction or a bug) and is an error.
    pub fn check_replicas(&self, comm: &mut dyn Communicator) -> Result<()> {
        if comm.world() == 1 {
            return Ok(());
        }
        let params = self.model.read_params()?;
        let mut hasher = crc32fast::Hasher::new();
        for v in &params {
            hasher.update(&v.to_le_bytes());
        }
        let mine = hasher.finalize();
        let mut root = mine.to_le_bytes();
        comm.broadcast(&mut root, 0)?;
        let mut differ = [f64::from(u8::from(u32::from_le_bytes(root) != mine))];
        comm.all_reduce_sum_f64(&mut differ)?;
        if differ[0] != 0.0 {
            return Err(crate::dist::communicator::dist_error(format!(
                "the weights of {} rank(s) differ from rank 0's after step {}: the replicas diverged",
                differ[0], self.step
            )));
        }
        Ok(())
    }
}
