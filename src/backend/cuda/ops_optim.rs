//! Optimizer updates, EMA, Σx², scaling and NaN scrubbing over flat parameter buffers
//! (kernels in `kernels/optim.cu` and `kernels/reduce.cu`). Per-element arithmetic is in
//! f64, rounded once to f32 on store, as on the CPU; step-dependent scalars are computed
//! here on the host with the CPU's formulas.

use cudarc::driver::{CudaView, CudaViewMut};

use super::launch::{elems, i, rows, Arg};
use super::{CudaBackend, Kernel};
use crate::backend::OptimHp;

/// Elements per partial sum of `sum_squares` (the CPU's chunk size).
const SUMSQ_CHUNK: usize = 4096;

impl CudaBackend {
    fn optim_lens(&self, op: &str, p: usize, g: usize, m: usize, v: usize) -> bool {
        if p != g || p != m || p != v {
            self.fail(format!("{op}: buffers differ in length: p {p}, g {g}, m {m}, v {v}"));
            return false;
        }
        !self.failed()
    }

    /// The reference's AdamW at step `step` (1-based). p, g, m, v: [n].
    pub(super) fn adamw_step_impl(
        &self,
        p: CudaViewMut<'_, f32>,
        g: CudaView<'_, f32>,
        m: CudaViewMut<'_, f32>,
        v: CudaViewMut<'_, f32>,
        hp: &OptimHp,
        step: u64,
    ) {
        let n = p.len();
        if !self.optim_lens("adamw_step", n, g.len(), m.len(), v.len()) {
            return;
        }
        let k = step.max(1) as f64;
        let step_size = hp.lr * (1.0 - hp.beta2.powf(k)).sqrt() / (1.0 - hp.beta1.powf(k));
        let args = [
            Arg::P(self.ptr(&p)),
            Arg::P(self.ptr(&g)),
            Arg::P(self.ptr(&m)),
            Arg::P(self.ptr(&v)),
            i(n),
            Arg::D(hp.beta1),
            Arg::D(hp.beta2),
            Arg::D(hp.eps),
            Arg::D(hp.weight_decay),
            Arg::D(step_size),
        ];
        self.launch(Kernel::AdamwStep, elems(n), n, &args);
    }

    /// torch.optim.RAdam (decoupled_weight_decay = False) at step `step`. p, g, m, v: [n].
    pub(super) fn radam_step_impl(
        &self,
        p: CudaViewMut<'_, f32>,
        g: CudaView<'_, f32>,
        m: CudaViewMut<'_, f32>,
        v: CudaViewMut<'_, f32>,
        hp: &OptimHp,
        step: u64,
    ) {
        let n = p.len();
        if !self.optim_lens("radam_step", n, g.len(), m.len(), v.len()) {
            return;
        }
        let k = step.max(1) as f64;
        let (b1, b2) = (hp.beta1, hp.beta2);
        let bias_correction1 = 1.0 - b1.powf(k);
        let bias_correction2 = 1.0 - b2.powf(k);
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_k = rho_inf - 2.0 * k * b2.powf(k) / bias_correction2;
        let (rectified, rect) = if rho_k > 5.0 {
            let r = ((rho_k - 4.0) * (rho_k - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_k)).sqrt();
            (1usize, hp.lr * r * bias_correction2.sqrt())
        } else {
            (0usize, 0.0)
        };
        let args = [
            Arg::P(self.ptr(&p)),
            Arg::P(self.ptr(&g)),
            Arg::P(self.ptr(&m)),
            Arg::P(self.ptr(&v)),
            i(n),
            Arg::D(b1),
            Arg::D(b2),
            Arg::D(hp.eps),
            Arg::D(hp.weight_decay),
            Arg::D(hp.lr),
            Arg::D(bias_correction1),
            Arg::D(rect),
            i(rectified),
        ];
        self.launch(Kernel::RadamStep, elems(n), n, &args);
    }

    /// dst ← decay·dst + (1 − decay)·src. src, dst: [n].
    pub(super) fn ema_impl(&self, src: CudaView<'_, f32>, dst: CudaViewMut<'_, f32>, decay: f64) {
        let n = dst.len();
        if src.len() != n {
            self.fail(format!("ema: source has {} elements, destination {n}", src.len()));
            return;
        }
        let args = [Arg::P(self.ptr(&src)), Arg::P(self.ptr(&dst)), i(n), Arg::D(decay)];
        self.launch(Kernel::Ema, elems(n), n, &args);
    }

    /// Σ x² in f64: one partial per 4096 elements, then the partials in a fixed-order
    /// reduction. Synchronises (the result comes back to the host); NaN if the backend
    /// has failed. x: [n].
    pub(super) fn sum_squares_impl(&self, x: CudaView<'_, f32>) -> f64 {
        let n = x.len();
        if self.failed() {
            return f64::NAN;
        }
        if n == 0 {
            return 0.0;
        }
        let chunks = n.div_ceil(SUMSQ_CHUNK);
        let (Some(part), Some(out)) = (self.temp::<f64>(chunks), self.temp::<f64>(1)) else {
            return f64::NAN;
        };
        let (px, pp, po) = (self.ptr(&x), self.ptr(&part), self.ptr(&out));
        self.launch(Kernel::SumsqPartial, rows(chunks), n, &[Arg::P(px), Arg::P(pp), i(n), i(SUMSQ_CHUNK)]);
        // One block: its grid-stride loop over the partials is the fixed first stage.
        self.launch(Kernel::SumFinishD, rows(1), chunks, &[Arg::P(pp), Arg::P(po), i(chunks)]);
        if self.failed() {
            return f64::NAN;
        }
        let mut host = [0f64; 1];
        let r = self.s.stream.memcpy_dtoh(&out, &mut host);
        if self.check("reading Σx²", r).is_none() || self.synchronize().is_err() {
            return f64::NAN;
        }
        host[0]
    }

    /// x ← s·x. x: [n].
    pub(super) fn scale_impl(&self, x: CudaViewMut<'_, f32>, s: f64) {
        let n = x.len();
        let args = [Arg::P(self.ptr(&x)), i(n), Arg::D(s)];
        self.launch(Kernel::Scale, elems(n), n, &args);
    }

    /// NaN, ±inf → 0. x: [n].
    pub(super) fn zero_non_finite_impl(&self, x: CudaViewMut<'_, f32>) {
        let n = x.len();
        let args = [Arg::P(self.ptr(&x)), i(n)];
        self.launch(Kernel::ZeroNonFinite, elems(n), n, &args);
    }
}
