//! Data-movement ops (kernels in `kernels/layout.cu` and `kernels/elementwise.cu`):
//! patchify / unpatchify and their adjoints, broadcast row adds, label embeddings.

use cudarc::driver::{CudaView, CudaViewMut};

use super::launch::{elems, i, Arg};
use super::{CudaBackend, Kernel};

impl CudaBackend {
    /// The four patch ops: each maps an image [b, c, side, side] to token rows
    /// [b·T, c·p·p] or back, one thread per pixel; `src`/`dst` are whichever side `k` reads
    /// and writes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn patch_op(&self, k: Kernel, src: CudaView<'_, f32>, dst: CudaViewMut<'_, f32>, b: usize, c: usize, side: usize, p: usize) {
        let n = b * c * side * side;
        if p == 0 || !side.is_multiple_of(p) {
            self.fail(format!("{}: image side {side} is not a multiple of the patch {p}", k.name()));
            return;
        }
        if !self.lens_ok(k.name(), &[("input", src.len(), n), ("output", dst.len(), n)]) {
            return;
        }
        let args = [Arg::P(self.ptr(&src)), Arg::P(self.ptr(&dst)), i(n), i(c), i(side), i(p)];
        self.launch(k, elems(n), n, &args);
    }

    /// x[b·T + t, :] += rows[t, :]. x: [b·t, d]; rows: [t, d].
    pub(super) fn add_rows_impl(&self, rows: CudaView<'_, f32>, x: CudaViewMut<'_, f32>, b: usize, t: usize, d: usize) {
        let n = b * t * d;
        if !self.lens_ok("add_rows", &[("rows", rows.len(), t * d), ("x", x.len(), n)]) {
            return;
        }
        let args = [Arg::P(self.ptr(&rows)), Arg::P(self.ptr(&x)), i(n), i(t * d)];
        self.launch(Kernel::AddRows, elems(n), n, &args);
    }

    /// Uploads `labels` after checking them against the table's `rows`.
    fn labels_on_device(&self, op: &str, labels: &[usize], rows: usize) -> Option<cudarc::driver::CudaSlice<i64>> {
        if let Some((bi, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= rows) {
            self.fail(format!("{op}: labels[{bi}] = {l} outside the table of {rows} rows"));
            return None;
        }
        let host: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let r = self.s.stream.clone_htod(&host);
        self.check(&format!("{op}: uploading labels"), r)
    }

    /// out[b, :] = table[labels[b], :] (assign). table: [K+1, d]; out: [B, d].
    pub(super) fn embedding_fwd_impl(&self, table: CudaView<'_, f32>, labels: &[usize], out: CudaViewMut<'_, f32>, d: usize) {
        let n = labels.len() * d;
        if n == 0 || !self.lens_ok("embedding_fwd", &[("out", out.len(), n)]) {
            return;
        }
        let Some(lab) = self.labels_on_device("embedding_fwd", labels, table.len() / d) else {
            return;
        };
        let args = [Arg::P(self.ptr(&table)), Arg::P(self.ptr(&lab)), Arg::P(self.ptr(&out)), i(n), i(d)];
        self.launch(Kernel::EmbeddingFwd, elems(n), n, &args);
    }

    /// dtable[labels[b], :] += dout[b, :], in batch order (one thread per column).
    pub(super) fn embedding_bwd_impl(&self, dout: CudaView<'_, f32>, labels: &[usize], dtable: CudaViewMut<'_, f32>, d: usize) {
        let b = labels.len();
        if b * d == 0 || !self.lens_ok("embedding_bwd", &[("dout", dout.len(), b * d)]) {
            return;
        }
        let Some(lab) = self.labels_on_device("embedding_bwd", labels, dtable.len() / d) else {
            return;
        };
        let args = [Arg::P(self.ptr(&dout)), Arg::P(self.ptr(&lab)), Arg::P(self.ptr(&dtable)), i(b), i(d)];
        self.launch(Kernel::EmbeddingBwd, elems(d), d * b, &args);
    }
}
