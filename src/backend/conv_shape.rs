//! The geometry of a 2-D convolution (NCHW): batch, channels, image size, kernel,
//! stride and the four paddings, with the output size and a validation that turns an
//! impossible shape into an [`Error`] before any op runs.

use crate::error::{Error, Result};

/// One `conv2d_fwd` call: x [n, c_in, h, w] * weight [c_out, c_in, kh, kw] (+ bias
/// [c_out]) → y [n, c_out, out_h, out_w], zero padding `pad_top`/`pad_bottom` rows and
/// `pad_left`/`pad_right` columns (asymmetric pads allowed: the VAE downsample pads only
/// at the bottom and right).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Conv2dShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
}

impl Conv2dShape {
    /// A square `k`×`k` kernel with stride `stride` and the same padding `pad` on all sides.
    pub fn square(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Self {
        Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out,
            kh: k,
            kw: k,
            stride_h: stride,
            stride_w: stride,
            pad_top: pad,
            pad_bottom: pad,
            pad_left: pad,
            pad_right: pad,
        }
    }

    /// Output rows: (h + pad_top + pad_bottom − kh) / stride_h + 1 (0 for an invalid shape).
    pub fn out_h(&self) -> usize {
        let padded = self.h + self.pad_top + self.pad_bottom;
        if self.stride_h == 0 || padded < self.kh {
            return 0;
        }
        (padded - self.kh) / self.stride_h + 1
    }

    /// Output columns: (w + pad_left + pad_right − kw) / stride_w + 1 (0 for an invalid shape).
    pub fn out_w(&self) -> usize {
        let padded = self.w + self.pad_left + self.pad_right;
        if self.stride_w == 0 || padded < self.kw {
            return 0;
        }
        (padded - self.kw) / self.stride_w + 1
    }

    /// Elements of x.
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    /// Elements of the weight.
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.kh * self.kw
    }

    /// Elements of y.
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.out_h() * self.out_w()
    }

    /// Reduction length of one output element: c_in·kh·kw.
    pub fn k_len(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Whether the convolution is a plain 1×1 product (no im2col needed).
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride_h == 1 && self.stride_w == 1 && self.pad_top + self.pad_bottom + self.pad_left + self.pad_right == 0
    }

    /// Checks the shape: non-zero channels, kernel and stride, a kernel that fits the padded
    /// image, padding smaller than the kernel (a window of padding only is never wanted),
    /// and sizes whose element counts fit in memory arithmetic.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("conv2d {self:?}: {m}")));
        if self.c_in == 0 || self.c_out == 0 {
            return bad("channel counts must be positive".into());
        }
        if self.kh == 0 || self.kw == 0 {
            return bad("kernel size must be positive".into());
        }
        if self.stride_h == 0 || self.stride_w == 0 {
            return bad("stride must be positive".into());
        }
        if self.h == 0 || self.w == 0 {
            return bad("image size must be positive".into());
        }
        if self.pad_top >= self.kh || self.pad_bottom >= self.kh || self.pad_left >= self.kw || self.pad_right >= self.kw {
            return bad("padding must be smaller than the kernel".into());
        }
        if self.h + self.pad_top + self.pad_bottom < self.kh || self.w + self.pad_left + self.pad_right < self.kw {
            return bad("kernel larger than the padded image".into());
        }
        let checked = [
            [self.n, self.c_in, self.h, self.w],
            [self.n, self.c_out, self.out_h(), self.out_w()],
            [self.c_out, self.c_in, self.kh, self.kw],
        ];
        for dims in checked {
            if dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|v| v > isize::MAX as usize / 8)
            {
                return bad("element count overflows".into());
            }
        }
        // The CPU op's scratch holds at least one output row's columns (im2col:
        // c_in·kh·kw·out_w values) or Winograd tiles (8·(c_in + c_out)·out_w values), however
        // the work is split; a map too wide for that must fail here, not in an allocation
        // inside the op.
        let ow = self.out_w() as u128;
        let row = (self.c_in as u128 * (self.kh * self.kw) as u128 * ow).max(8 * (self.c_in as u128 + self.c_out as u128) * ow);
        crate::limits::check_bytes("conv2d scratch for one output row", usize::try_from(row).unwrap_or(usize::MAX), 4)?;
        Ok(())
    }
}

/// Where and how `conv2d_fwd_into` stores a convolution's output: y is
/// `[n, c_total, out_h, out_w]` and the convolution assigns its channels
/// `[c_off, c_off + c_out)` (each image's block of them is contiguous), leaving the
/// others as they are, then applies ReLU to them if `relu`. Lets a branch of an
/// Inception block write straight into the block's concatenated output, with the
/// ReLU of its `BasicConv2d`, instead of a separate ReLU pass and a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOutput {
    /// Channels of the map y.
    pub c_total: usize,
    /// First channel of y the convolution writes.
    pub c_off: usize,
    /// ReLU after the bias (`max(v, 0)`, a NaN becomes 0 as in `relu_inplace`).
    pub relu: bool,
}

impl ConvOutput {
    /// The output of `shape` alone (`conv2d_fwd`'s y), with ReLU if `relu`.
    pub fn whole(shape: &Conv2dShape, relu: bool) -> Self {
        ConvOutput {
            c_total: shape.c_out,
            c_off: 0,
            relu,
        }
    }

    /// Elements of y: n·c_total·out_h·out_w.
    pub fn y_len(&self, shape: &Conv2dShape) -> usize {
        shape.n * self.c_total * shape.out_h() * shape.out_w()
    }

    /// Elements between consecutive images of y: c_total·out_h·out_w.
    pub fn image_stride(&self, shape: &Conv2dShape) -> usize {
        self.c_total * shape.out_h() * shape.out_w()
    }

    /// Checks `shape` ([`Conv2dShape::validate`]) and that channels
    /// `[c_off, c_off + c_out)` lie inside a y whose element count fits.
    pub fn validate(&self, shape: &Conv2dShape) -> Result<()> {
        shape.validate()?;
        if self.c_off.checked_add(shape.c_out).is_none_or(|end| end > self.c_total) {
            return Err(Error::invalid(format!(
                "conv2d output: channels {}..{}+{} outside a map of {} channels",
                self.c_off, self.c_off, shape.c_out, self.c_total
            )));
        }
        [shape.n, self.c_total, shape.out_h(), shape.out_w()]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&v| v <= isize::MAX as usize / 8)
            .map(|_| ())
            .ok_or_else(|| Error::invalid(format!("conv2d output: {self:?} of {shape:?} overflows")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_too_wide_for_one_row_of_scratch_is_refused() {
        // 512 → 512 channels, 3×3, one row 2³⁰ pixels wide: the input (2 TiB) passes the
        // element-count check, the 32 TiB of one row of Winograd tiles does not.
        let s = Conv2dShape::square(1, 512, 1, 1 << 30, 512, 3, 1, 1);
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("conv2d scratch for one output row"), "{e}");
        // A real VAE / Inception shape passes.
        assert!(Conv2dShape::square(8, 512, 64, 64, 512, 3, 1, 1).validate().is_ok());
    }

    #[test]
    fn output_sizes_of_the_vae_and_inception_convs() {
        let s = Conv2dShape::square(1, 3, 256, 256, 128, 3, 1, 1);
        assert_eq!((s.out_h(), s.out_w()), (256, 256));
        let d = Conv2dShape {
            pad_top: 0,
            pad_left: 0,
            pad_bottom: 1,
            pad_right: 1,
            ..Conv2dShape::square(1, 8, 32, 32, 8, 3, 2, 0)
        };
        assert_eq!((d.out_h(), d.out_w()), (16, 16));
        d.validate().unwrap();
        let i = Conv2dShape::square(1, 3, 299, 299, 32, 3, 2, 0);
        assert_eq!((i.out_h(), i.out_w()), (149, 149));
        let r = Conv2dShape {
            kh: 1,
            kw: 7,
            pad_top: 0,
            pad_bottom: 0,
            ..Conv2dShape::square(1, 8, 17, 17, 8, 7, 1, 3)
        };
        assert_eq!((r.out_h(), r.out_w()), (17, 17));
        r.validate().unwrap();
        assert!(Conv2dShape::square(1, 1, 1, 1, 1, 1, 1, 0).is_pointwise());
    }

    #[test]
    fn an_output_slice_must_lie_inside_its_map() {
        let s = Conv2dShape::square(2, 3, 8, 8, 4, 3, 1, 1);
        let whole = ConvOutput::whole(&s, true);
        whole.validate(&s).unwrap();
        assert_eq!(whole.y_len(&s), s.y_len());
        let slice = ConvOutput {
            c_total: 10,
            c_off: 6,
            relu: false,
        };
        slice.validate(&s).unwrap();
        assert_eq!((slice.y_len(&s), slice.image_stride(&s)), (2 * 10 * 64, 640));
        for bad in [
            ConvOutput {
                c_total: 9,
                c_off: 6,
                relu: false,
            },
            ConvOutput {
                c_total: 3,
                c_off: 0,
                relu: false,
            },
            ConvOutput {
                c_total: 10,
                c_off: usize::MAX,
                relu: false,
            },
            ConvOutput {
                c_total: usize::MAX,
                c_off: 0,
                relu: false,
            },
        ] {
            assert!(bad.validate(&s).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn impossible_shapes_are_errors() {
        let ok = Conv2dShape::square(1, 3, 8, 8, 4, 3, 1, 1);
        ok.validate().unwrap();
        for bad in [
            Conv2dShape { c_in: 0, ..ok },
            Conv2dShape { c_out: 0, ..ok },
            Conv2dShape { kh: 0, ..ok },
            Conv2dShape { stride_w: 0, ..ok },
            Conv2dShape { h: 0, ..ok },
            Conv2dShape { pad_top: 3, ..ok },
            Conv2dShape::square(1, 3, 2, 2, 4, 5, 1, 1),
            Conv2dShape { n: usize::MAX / 2, ..ok },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
