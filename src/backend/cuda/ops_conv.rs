//! Image ops of the convolutional networks (kernels in `kernels/image.cu`): the 2-D
//! convolution as im2col + cuBLAS GEMM, GroupNorm (+ SiLU), nearest ×2 upsampling and
//! the batched transpose.
//!
//! The convolution fills a column matrix [images, c_in·kh·kw, pixels] for as many whole
//! images as fit in [`COL_TILE_ELEMS`] (or, for one large image, a band of output rows),
//! then runs one strided-batched product y_b[c_out, P] = W[c_out, K]·col_b[K, P] over the
//! images of the tile. A 1×1 stride-1 unpadded convolution multiplies x directly.

use cudarc::driver::{CudaView, CudaViewMut};

use super::blas::{MatGrid, Op, Product};
use super::launch::{elems, i, rows, Arg};
use super::{CudaBackend, Kernel};
use crate::backend::{Conv2dShape, ConvLayout};

/// Most elements of one im2col tile on the device (256 MiB of f32).
pub(super) const COL_TILE_ELEMS: usize = 1 << 26;

impl CudaBackend {
    /// y = conv(x, w) + bias (then ReLU if `l.relu`). x: the [n, c_in, h, w] planes of
    /// `l.x`; w: [c_out, c_in, kh, kw]; bias: [c_out]; y: the [n, c_out, out_h, out_w]
    /// planes of `l.y` assigned, the rest untouched.
    pub(super) fn conv2d_fwd_impl(
        &self,
        x: CudaView<'_, f32>,
        w: CudaView<'_, f32>,
        bias: Option<CudaView<'_, f32>>,
        y: CudaViewMut<'_, f32>,
        s: &Conv2dShape,
        l: &ConvLayout,
    ) {
        if let Err(e) = l.validate(s) {
            return self.fail(e.to_string());
        }
        let mut lens = vec![("x", x.len(), l.x_len(s)), ("w", w.len(), s.w_len()), ("y", y.len(), l.y_len(s))];
        if let Some(b) = &bias {
            lens.push(("bias", b.len(), s.c_out));
        }
        if !self.lens_ok("conv2d_fwd", &lens) || s.n == 0 {
            return;
        }
        let (oh, ow) = (s.out_h(), s.out_w());
        let (p, hw) = (oh * ow, s.h * s.w);
        let k = s.k_len();
        // Plane (0, 0) of x and of y; images and channels `image`/`channel` planes apart.
        let px = Self::off(self.ptr(&x), l.x.first * hw);
        let pw = self.ptr(&w);
        let py = Self::off(self.ptr(&y), l.y.first * p);
        let (y_img, y_ch) = (l.y.image * p, l.y.channel * p);
        if let Some(b) = &bias {
            self.plane_kernel(Kernel::BiasChannels, Some(self.ptr(b)), py, s, l);
        }
        let beta = if bias.is_some() { 1.0 } else { 0.0 };
        let weight = MatGrid { ptr: pw, ld: k, sb: 0, sh: 0 };
        if s.is_pointwise() {
            let prod = Product {
                op_a: Op::N,
                op_b: Op::N,
                m: s.c_out,
                n: p,
                k,
                a: weight,
                b: MatGrid {
                    ptr: px,
                    ld: l.x.channel * hw,
                    sb: l.x.image * hw,
                    sh: 0,
                },
                c: MatGrid {
                    ptr: py,
                    ld: y_ch,
                    sb: y_img,
                    sh: 0,
                },
                nb: s.n,
                nh: 1,
            };
            self.run_product(&prod, 1.0, beta);
            if l.relu {
                self.plane_kernel(Kernel::ReluPlanes, None, py, s, l);
            }
            return;
        }
        // Whole images per tile when one fits, else bands of output rows of one image.
        let per_image = k * p;
        let cap = self.s.conv_tile_elems.load(std::sync::atomic::Ordering::Relaxed);
        let (images, band) = if per_image <= cap {
            ((cap / per_image).clamp(1, s.n), oh)
        } else {
            (1, (cap / (k * ow)).clamp(1, oh))
        };
        let Some(col) = self.temp::<f32>(images * k * band * ow) else { return };
        let pc = self.ptr(&col);
        let mut b0 = 0;
        while b0 < s.n {
            let nb = images.min(s.n - b0);
            let mut r0 = 0;
            while r0 < oh {
                let nr = band.min(oh - r0);
                let tp = nr * ow;
                let total = nb * k * tp;
                let args = [
                    Arg::P(Self::off(px, b0 * l.x.image * hw)),
                    Arg::P(pc),
                    i(total),
                    i(s.c_in),
                    i(s.h),
                    i(s.w),
                    i(s.kh),
                    i(s.kw),
                    i(s.stride_h),
                    i(s.stride_w),
                    i(s.pad_top),
                    i(s.pad_left),
                    i(ow),
                    i(r0),
                    i(nr),
                    i(l.x.image),
                    i(l.x.channel),
                ];
                self.launch(Kernel::Im2col, elems(total), total, &args);
                let prod = Product {
                    op_a: Op::N,
                    op_b: Op::N,
                    m: s.c_out,
                    n: tp,
                    k,
                    a: weight,
                    b: MatGrid {
                        ptr: pc,
                        ld: tp,
                        sb: k * tp,
                        sh: 0,
                    },
                    c: MatGrid {
                        ptr: Self::off(py, b0 * y_img + r0 * ow),
                        ld: y_ch,
                        sb: y_img,
                        sh: 0,
                    },
                    nb,
                    nh: 1,
                };
                self.run_product(&prod, 1.0, beta);
                r0 += nr;
            }
            b0 += nb;
        }
        if l.relu {
            self.plane_kernel(Kernel::ReluPlanes, None, py, s, l);
        }
    }

    /// The bias fill (with `bias`) or the ReLU (without) over the convolution's output
    /// planes (`py`: plane (0, 0) of `l.y`).
    fn plane_kernel(&self, kernel: Kernel, bias: Option<u64>, py: u64, s: &Conv2dShape, l: &ConvLayout) {
        let p = s.out_h() * s.out_w();
        let total = s.n * s.c_out * p;
        let mut args = Vec::with_capacity(7);
        if let Some(b) = bias {
            args.push(Arg::P(b));
        }
        args.extend([Arg::P(py), i(total), i(s.c_out), i(p), i(l.y.image), i(l.y.channel)]);
        self.launch(kernel, elems(total), total, &args);
    }

    /// GroupNorm (+ SiLU). x, y: [n, c, hw]; gamma, beta: [c].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn group_norm_fwd_impl(
        &self,
        x: CudaView<'_, f32>,
        gamma: CudaView<'_, f32>,
        beta: CudaView<'_, f32>,
        y: CudaViewMut<'_, f32>,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
        eps: f32,
        silu: bool,
    ) {
        if groups == 0 || !c.is_multiple_of(groups) {
            return self.fail(format!("group_norm_fwd: {c} channels do not split into {groups} groups"));
        }
        let len = n * c * hw;
        let lens = [("x", x.len(), len), ("gamma", gamma.len(), c), ("beta", beta.len(), c), ("y", y.len(), len)];
        if !self.lens_ok("group_norm_fwd", &lens) {
            return;
        }
        let nrows = n * groups;
        let args = [
            Arg::P(self.ptr(&x)),
            Arg::P(self.ptr(&gamma)),
            Arg::P(self.ptr(&beta)),
            Arg::P(self.ptr(&y)),
            i(nrows),
            i(groups),
            i(c / groups),
            i(hw),
            Arg::F(eps),
            i(silu as usize),
        ];
        self.launch(Kernel::GroupNormFwd, rows(nrows), len, &args);
    }

    /// x [n, c, h, w] → y [n, c, 2h, 2w].
    pub(super) fn upsample_nearest2x_impl(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, n: usize, c: usize, h: usize, w: usize) {
        let total = n * c * 4 * h * w;
        if !self.lens_ok("upsample_nearest2x", &[("x", x.len(), n * c * h * w), ("y", y.len(), total)]) {
            return;
        }
        let args = [Arg::P(self.ptr(&x)), Arg::P(self.ptr(&y)), i(total), i(h), i(w)];
        self.launch(Kernel::UpsampleNearest2x, elems(total), total, &args);
    }

    /// x [batch, rows, cols] → y [batch, cols, rows].
    pub(super) fn transpose_batched_impl(&self, x: CudaView<'_, f32>, y: CudaViewMut<'_, f32>, batch: usize, nrows: usize, cols: usize) {
        let total = batch * nrows * cols;
        if !self.lens_ok("transpose_batched", &[("x", x.len(), total), ("y", y.len(), total)]) {
            return;
        }
        let args = [Arg::P(self.ptr(&x)), Arg::P(self.ptr(&y)), i(total), i(nrows), i(cols)];
        self.launch(Kernel::TransposeBatched, elems(total), total, &args);
    }
}
