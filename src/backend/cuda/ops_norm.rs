//! LayerNorm / RMSNorm fused with adaLN modulation, and the gated residual, forward and
//! backward (kernels in `kernels/norm.cu` and `kernels/elementwise.cu`).

use cudarc::driver::{CudaView, CudaViewMut};

use super::launch::{elems, i, rows, Arg};
use super::{CudaBackend, Kernel};
use crate::backend::NormKind;

/// Elements of `ada` [b, stride] that an op touches at column `col` with width `d`.
fn ada_need(b: usize, stride: usize, col: usize, d: usize) -> usize {
    if b == 0 {
        0
    } else {
        (b - 1) * stride + col + d
    }
}

impl CudaBackend {
    /// x, y: [b·t, d]; weight: [d]; ada: [b, stride]; stats: [b·t, 2] (see the trait).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm_mod_fwd_impl(
        &self,
        kind: NormKind,
        x: CudaView<'_, f32>,
        weight: Option<CudaView<'_, f32>>,
        ada: CudaView<'_, f32>,
        stride: usize,
        shift_col: usize,
        scale_col: usize,
        y: CudaViewMut<'_, f32>,
        stats: Option<CudaViewMut<'_, f32>>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        let nrows = b * t;
        let ada_len = ada_need(b, stride, shift_col.max(scale_col), d);
        let mut lens = vec![("x", x.len(), nrows * d), ("ada", ada.len(), ada_len), ("y", y.len(), nrows * d)];
        if let Some(s) = &stats {
            lens.push(("stats", s.len(), nrows * 2));
        }
        if let Some(w) = &weight {
            lens.push(("weight", w.len(), d));
        }
        if !self.lens_ok("norm_mod_fwd", &lens) {
            return;
        }
        let ps = stats.as_ref().map_or(0, |s| self.ptr(s));
        let pw = weight.as_ref().map_or(0, |w| self.ptr(w));
        let args = [
            Arg::P(self.ptr(&x)),
            Arg::P(pw),
            Arg::P(self.ptr(&ada)),
            Arg::P(self.ptr(&y)),
            Arg::P(ps),
            i(nrows),
            i(t),
            i(d),
            i(stride),
            i(shift_col),
            i(scale_col),
            i((kind == NormKind::RmsNorm) as usize),
        ];
        self.launch(Kernel::NormModFwd, rows(nrows), nrows * d, &args);
    }

    /// dx [b·t, d] accumulate; dada [b, stride] accumulate at the shift and scale columns;
    /// dweight [d] accumulate (with weight [d]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm_mod_bwd_impl(
        &self,
        kind: NormKind,
        dy: CudaView<'_, f32>,
        x: CudaView<'_, f32>,
        weight: Option<CudaView<'_, f32>>,
        dweight: Option<CudaViewMut<'_, f32>>,
        ada: CudaView<'_, f32>,
        stride: usize,
        shift_col: usize,
        scale_col: usize,
        stats: CudaView<'_, f32>,
        dx: CudaViewMut<'_, f32>,
        dada: CudaViewMut<'_, f32>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        let nrows = b * t;
        let ada_len = ada_need(b, stride, shift_col.max(scale_col), d);
        if shift_col < scale_col + d && scale_col < shift_col + d {
            self.fail(format!(
                "norm_mod_bwd: shift columns {shift_col}.. and scale columns {scale_col}.. overlap (width {d})"
            ));
            return;
        }
        if weight.is_some() != dweight.is_some() {
            self.fail("norm_mod_bwd: weight and dweight must be given together");
            return;
        }
        let mut lens = vec![
            ("dy", dy.len(), nrows * d),
            ("x", x.len(), nrows * d),
            ("ada", ada.len(), ada_len),
            ("stats", stats.len(), nrows * 2),
            ("dx", dx.len(), nrows * d),
            ("dada", dada.len(), ada_len),
        ];
        if let (Some(w), Some(dw)) = (&weight, &dweight) {
            lens.push(("weight", w.len(), d));
            lens.push(("dweight", dw.len(), d));
        }
        if !self.lens_ok("norm_mod_bwd", &lens) {
            return;
        }
        let (pdy, px, pada, pst, pdx, pdada) = (self.ptr(&dy), self.ptr(&x), self.ptr(&ada), self.ptr(&stats), self.ptr(&dx), self.ptr(&dada));
        let pw = weight.as_ref().map_or(0, |w| self.ptr(w));
        let inv_d = (1.0 / d.max(1) as f64) as f32;
        let args = [
            Arg::P(pdy),
            Arg::P(px),
            Arg::P(pw),
            Arg::P(pada),
            Arg::P(pst),
            Arg::P(pdx),
            i(nrows),
            i(t),
            i(d),
            i(stride),
            i(scale_col),
            i((kind == NormKind::LayerNorm) as usize),
            Arg::F(inv_d),
        ];
        self.launch(Kernel::NormModBwdDx, rows(nrows), nrows * d, &args);
        let n = b * d;
        let args = [
            Arg::P(pdy),
            Arg::P(px),
            Arg::P(pw),
            Arg::P(pst),
            Arg::P(pdada),
            i(n),
            i(t),
            i(d),
            i(stride),
            i(shift_col),
            i(scale_col),
        ];
        self.launch(Kernel::NormModBwdAda, elems(n), n * t, &args);
        if let Some(dw) = &dweight {
            let args = [
                Arg::P(pdy),
                Arg::P(px),
                Arg::P(pada),
                Arg::P(pst),
                Arg::P(self.ptr(dw)),
                i(nrows),
                i(t),
                i(d),
                i(stride),
                i(scale_col),
            ];
            self.launch(Kernel::NormWeightBwd, elems(d), nrows * d, &args);
        }
    }

    /// DDT qk-norm (see the trait). qkv, out: [n, 3·heads·dh]; qkw: [2·dh]; stats: [n, 2·heads].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn qk_norm_fwd_impl(
        &self,
        qkv: CudaView<'_, f32>,
        qkw: CudaView<'_, f32>,
        mut out: CudaViewMut<'_, f32>,
        stats: Option<CudaViewMut<'_, f32>>,
        n: usize,
        heads: usize,
        dh: usize,
    ) {
        let w3 = n * 3 * heads * dh;
        let mut lens = vec![("qkv", qkv.len(), w3), ("qkw", qkw.len(), 2 * dh), ("out", out.len(), w3)];
        if let Some(s) = &stats {
            lens.push(("stats", s.len(), n * 2 * heads));
        }
        if !self.lens_ok("qk_norm_fwd", &lens) {
            return;
        }
        self.copy_impl(qkv.slice(0..w3), out.slice_mut(0..w3));
        let ps = stats.as_ref().map_or(0, |s| self.ptr(s));
        let args = [Arg::P(self.ptr(&out)), Arg::P(self.ptr(&qkw)), Arg::P(ps), i(n), i(heads), i(dh)];
        self.launch(Kernel::QkNormFwd, rows(n * 2 * heads), n * 2 * heads * dh, &args);
    }

    /// Backward of the qk-norm: dqkv [n, 3·heads·dh] assign; dqkw [2·dh] accumulate.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn qk_norm_bwd_impl(
        &self,
        dout: CudaView<'_, f32>,
        qkv: CudaView<'_, f32>,
        qkw: CudaView<'_, f32>,
        stats: CudaView<'_, f32>,
        mut dqkv: CudaViewMut<'_, f32>,
        dqkw: CudaViewMut<'_, f32>,
        n: usize,
        heads: usize,
        dh: usize,
    ) {
        let w3 = n * 3 * heads * dh;
        let lens = [
            ("dout", dout.len(), w3),
            ("qkv", qkv.len(), w3),
            ("qkw", qkw.len(), 2 * dh),
            ("stats", stats.len(), n * 2 * heads),
            ("dqkv", dqkv.len(), w3),
            ("dqkw", dqkw.len(), 2 * dh),
        ];
        if !self.lens_ok("qk_norm_bwd", &lens) {
            return;
        }
        self.copy_impl(dout.slice(0..w3), dqkv.slice_mut(0..w3));
        let inv_d = (1.0 / dh.max(1) as f64) as f32;
        let (pg, px, pw, pst) = (self.ptr(&dqkv), self.ptr(&qkv), self.ptr(&qkw), self.ptr(&stats));
        let args = [Arg::P(pg), Arg::P(px), Arg::P(pw), Arg::P(pst), i(n), i(heads), i(dh), Arg::F(inv_d)];
        self.launch(Kernel::QkNormBwdDx, rows(n * 2 * heads), n * 2 * heads * dh, &args);
        let args = [Arg::P(self.ptr(&dout)), Arg::P(px), Arg::P(pst), Arg::P(self.ptr(&dqkw)), i(n), i(heads), i(dh)];
        self.launch(Kernel::QkNormBwdW, elems(2 * dh), n * heads * 2 * dh, &args);
    }

    /// h[b, t, :] += ada[b, gate_col..+d] ⊙ y[b, t, :]. y, h: [b·t, d]; ada: [b, stride].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gate_residual_fwd_impl(
        &self,
        y: CudaView<'_, f32>,
        ada: CudaView<'_, f32>,
        stride: usize,
        gate_col: usize,
        h: CudaViewMut<'_, f32>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        let n = b * t * d;
        let lens = [("y", y.len(), n), ("ada", ada.len(), ada_need(b, stride, gate_col, d)), ("h", h.len(), n)];
        if !self.lens_ok("gate_residual_fwd", &lens) {
            return;
        }
        let args = [
            Arg::P(self.ptr(&y)),
            Arg::P(self.ptr(&ada)),
            Arg::P(self.ptr(&h)),
            i(n),
            i(t),
            i(d),
            i(stride),
            i(gate_col),
        ];
        self.launch(Kernel::GateResidualFwd, elems(n), n, &args);
    }

    /// dy = gate ⊙ dh (assign); dada[b, gate_col..+d] += Σₜ dh ⊙ y (accumulate).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gate_residual_bwd_impl(
        &self,
        dh: CudaView<'_, f32>,
        y: CudaView<'_, f32>,
        ada: CudaView<'_, f32>,
        stride: usize,
        gate_col: usize,
        dy: CudaViewMut<'_, f32>,
        dada: CudaViewMut<'_, f32>,
        b: usize,
        t: usize,
        d: usize,
    ) {
        let n = b * t * d;
        let ada_len = ada_need(b, stride, gate_col, d);
        let lens = [
            ("dh", dh.len(), n),
            ("y", y.len(), n),
            ("ada", ada.len(), ada_len),
            ("dy", dy.len(), n),
            ("dada", dada.len(), ada_len),
        ];
        if !self.lens_ok("gate_residual_bwd", &lens) {
            return;
        }
        let (pdh, py, pada, pdy, pdada) = (self.ptr(&dh), self.ptr(&y), self.ptr(&ada), self.ptr(&dy), self.ptr(&dada));
        let args = [Arg::P(pdh), Arg::P(pada), Arg::P(pdy), i(n), i(t), i(d), i(stride), i(gate_col)];
        self.launch(Kernel::GateResidualBwdDy, elems(n), n, &args);
        let nb = b * d;
        let args = [Arg::P(pdh), Arg::P(py), Arg::P(pdada), i(nb), i(t), i(d), i(stride), i(gate_col)];
        self.launch(Kernel::GateResidualBwdAda, elems(nb), nb * t, &args);
    }

    /// EDM2 `normalize` of rows: x, y [rows, n].
    pub(super) fn mp_normalize_rows_impl(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, nrows: usize, n: usize) {
        let lens = [("x", x.len(), nrows * n), ("y", y.len(), nrows * n)];
        if !self.lens_ok("mp_normalize_rows", &lens) {
            return;
        }
        let alpha = (1.0 / (n.max(1) as f64).sqrt()) as f32;
        let args = [Arg::P(self.ptr(&x)), Arg::P(self.ptr(&y)), i(nrows), i(n), Arg::F(alpha)];
        self.launch(Kernel::MpNormalizeRows, rows(nrows), nrows * n, &args);
    }

    /// x ← clamp(x, −lim, lim). x: [n].
    pub(super) fn clamp_impl(&self, x: CudaViewMut<'_, f32>, lim: f32) {
        let n = x.len();
        let args = [Arg::P(self.ptr(&x)), i(n), Arg::F(lim)];
        self.launch(Kernel::Clamp, elems(n), n, &args);
    }
}
