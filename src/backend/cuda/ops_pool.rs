//! Pooling, bilinear resizing, ReLU and channel concatenation on the device (kernels in
//! `kernels/image.cu`), one thread per output element, f32 arithmetic in the CPU
//! backend's order (no fused multiply-adds), so both backends agree to rounding.

use cudarc::driver::{CudaView, CudaViewMut};

use super::launch::{elems, i, Arg};
use super::{CudaBackend, Kernel};
use crate::backend::{Pool2dShape, PoolKind, ResizeMode};

impl CudaBackend {
    /// x [n, c, h, w] → y [n, c, out_h, out_w].
    pub(super) fn pool2d_fwd_impl(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, s: &Pool2dShape, kind: PoolKind) {
        let total = s.y_len();
        if !self.lens_ok("pool2d_fwd", &[("x", x.len(), s.x_len()), ("y", y.len(), total)]) || total == 0 {
            return;
        }
        let kind = match kind {
            PoolKind::Max => 0,
            PoolKind::AvgExcludePad => 1,
        };
        let args = [
            Arg::P(self.ptr(&x)),
            Arg::P(self.ptr(&y)),
            i(total),
            i(s.h),
            i(s.w),
            i(s.out_h()),
            i(s.out_w()),
            i(s.k),
            i(s.stride),
            i(s.pad),
            i(kind),
        ];
        self.launch(Kernel::Pool2d, elems(total), total, &args);
    }

    /// x [n, c, h, w] → y [n, c, out_h, out_w].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resize_bilinear_impl(
        &self,
        x: CudaView<'_, f32>,
        y: CudaViewMut<'_, f32>,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        out_h: usize,
        out_w: usize,
        mode: ResizeMode,
    ) {
        let total = n * c * out_h * out_w;
        if !self.lens_ok("resize_bilinear", &[("x", x.len(), n * c * h * w), ("y", y.len(), total)]) || total == 0 || h * w == 0 {
            return;
        }
        let mode = match mode {
            ResizeMode::HalfPixel => 0,
            ResizeMode::Tf1 => 1,
        };
        let args = [
            Arg::P(self.ptr(&x)),
            Arg::P(self.ptr(&y)),
            i(total),
            i(h),
            i(w),
            i(out_h),
            i(out_w),
            Arg::F((h as f64 / out_h as f64) as f32),
            Arg::F((w as f64 / out_w as f64) as f32),
            i(mode),
        ];
        self.launch(Kernel::ResizeBilinear, elems(total), total, &args);
    }

    /// x ← max(x, 0).
    pub(super) fn relu_inplace_impl(&self, x: CudaViewMut<'_, f32>) {
        let total = x.len();
        if total == 0 {
            return;
        }
        let args = [Arg::P(self.ptr(&x)), i(total)];
        self.launch(Kernel::ReluInplace, elems(total), total, &args);
    }

    /// dst[b, offset + ch, :] = src[b, ch, :].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_channels_impl(&self, src: CudaView<'_, f32>, dst: CudaViewMut<'_, f32>, n: usize, c_src: usize, c_dst: usize, offset: usize, hw: usize) {
        let total = n * c_src * hw;
        if offset + c_src > c_dst || !self.lens_ok("copy_channels", &[("src", src.len(), total), ("dst", dst.len(), n * c_dst * hw)]) || total == 0 {
            return;
        }
        let args = [Arg::P(self.ptr(&src)), Arg::P(self.ptr(&dst)), i(total), i(c_src), i(c_dst), i(offset), i(hw)];
        self.launch(Kernel::CopyChannels, elems(total), total, &args);
    }
}
