//! Elementwise activations and their backward passes (kernels in
//! `kernels/elementwise.cu`): GELU-tanh, SiLU, SwiGLU.

use cudarc::driver::{CudaView, CudaViewMut};

use super::launch::{elems, i, Arg};
use super::{CudaBackend, Kernel};

/// 2·√(2/π) and 0.044715 as the CPU rounds them to f32.
fn gelu_consts() -> (f32, f32) {
    ((2.0 * 0.797_884_560_802_865_4f64) as f32, 0.044715f64 as f32)
}

impl CudaBackend {
    /// y = GELU-tanh(x). x, y: [n] (n = y's length).
    pub(super) fn gelu_tanh_fwd_impl(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>) {
        let n = y.len();
        if !self.lens_ok("gelu_tanh_fwd", &[("x", x.len(), n)]) {
            return;
        }
        let (c2, a) = gelu_consts();
        let args = [Arg::P(self.ptr(&x)), Arg::P(self.ptr(&y)), i(n), Arg::F(c2), Arg::F(a)];
        self.launch(Kernel::GeluTanhFwd, elems(n), n, &args);
    }

    /// dx = GELU'(x) ⊙ dy (assign). x, dy, dx: [n].
    pub(super) fn gelu_tanh_bwd_impl(&self, x: CudaView<'_, f32>, dy: CudaView<'_, f32>, dx: CudaViewMut<'_, f32>) {
        let n = dx.len();
        if !self.lens_ok("gelu_tanh_bwd", &[("x", x.len(), n), ("dy", dy.len(), n)]) {
            return;
        }
        let (c2, a) = gelu_consts();
        let args = [Arg::P(self.ptr(&x)), Arg::P(self.ptr(&dy)), Arg::P(self.ptr(&dx)), i(n), Arg::F(c2), Arg::F(a)];
        self.launch(Kernel::GeluTanhBwd, elems(n), n, &args);
    }

    /// y = x·σ(x). x, y: [n].
    pub(super) fn silu_fwd_impl(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>) {
        let n = y.len();
        if !self.lens_ok("silu_fwd", &[("x", x.len(), n)]) {
            return;
        }
        let args = [Arg::P(self.ptr(&x)), Arg::P(self.ptr(&y)), i(n)];
        self.launch(Kernel::SiluFwd, elems(n), n, &args);
    }

    /// dx = SiLU'(x) ⊙ dy (assign). x, dy, dx: [n].
    pub(super) fn silu_bwd_impl(&self, x: CudaView<'_, f32>, dy: CudaView<'_, f32>, dx: CudaViewMut<'_, f32>) {
        let n = dx.len();
        if !self.lens_ok("silu_bwd", &[("x", x.len(), n), ("dy", dy.len(), n)]) {
            return;
        }
        let args = [Arg::P(self.ptr(&x)), Arg::P(self.ptr(&dy)), Arg::P(self.ptr(&dx)), i(n)];
        self.launch(Kernel::SiluBwd, elems(n), n, &args);
    }

    /// y [n, h] = SiLU(x1) ⊙ x2 with x12 [n, 2h] = [x1 | x2] per row.
    pub(super) fn swiglu_fwd_impl(&self, x12: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, n: usize, h: usize) {
        if !self.lens_ok("swiglu_fwd", &[("x12", x12.len(), n * 2 * h), ("y", y.len(), n * h)]) {
            return;
        }
        let args = [Arg::P(self.ptr(&x12)), Arg::P(self.ptr(&y)), i(n * h), i(h)];
        self.launch(Kernel::SwigluFwd, elems(n * h), n * h, &args);
    }

    /// dx12 [n, 2h] (assign) from dy [n, h].
    pub(super) fn swiglu_bwd_impl(&self, x12: CudaView<'_, f32>, dy: CudaView<'_, f32>, dx12: CudaViewMut<'_, f32>, n: usize, h: usize) {
        let lens = [("x12", x12.len(), n * 2 * h), ("dy", dy.len(), n * h), ("dx12", dx12.len(), n * 2 * h)];
        if !self.lens_ok("swiglu_bwd", &lens) {
            return;
        }
        let args = [Arg::P(self.ptr(&x12)), Arg::P(self.ptr(&dy)), Arg::P(self.ptr(&dx12)), i(n * h), i(h)];
        self.launch(Kernel::SwigluBwd, elems(n * h), n * h, &args);
    }
}
