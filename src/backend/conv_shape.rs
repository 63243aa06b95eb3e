//! The geometry of a 2-D convolution (NCHW): batch, channels, image size, kernel,
//! stride and the four paddings, with the output size and a validation that turns an
//! impossible shape into an [`Error`] before any op runs.

use crate::error::{Error, Result};

/// One `conv2d_fwd` call: x [n, c_in, h, w] * weight [c_out, c_in, kh, kw] (+ bias
/// \[c_out\]) → y [n, c_out, out_h, out_w], zero padding `pad_top`/`pad_bottom` rows and
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

    /// A `kh`×`kw` kernel with the same stride both ways and the paddings `[top, bottom,
    /// left, right]`.
    #[allow(clippy::too_many_arguments)]
    pub fn padded(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, (kh, kw): (usize, usize), stride: usize, pads: [usize; 4]) -> Self {
        Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride_h: stride,
            stride_w: stride,
            pad_top: pads[0],
            pad_bottom: pads[1],
            pad_left: pads[2],
            pad_right: pads[3],
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

/// Where the (image, channel) planes of a batch of maps lie in a buffer: plane (b, c)
/// starts at element `(first + b·image + c·channel) · plane_len`. NCHW maps of C
/// channels are `{first: 0, image: C, channel: 1}`; channels-outer (CNHW) maps of N
/// images are `{first: 0, image: 1, channel: N}`, where a convolution's column matrix
/// and output are the maps themselves (the FID Inception keeps its maps so); an offset
/// `first` selects channels of a wider map (a branch writing into its block's output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Plane index of (image 0, channel 0).
    pub first: usize,
    /// Planes between consecutive images.
    pub image: usize,
    /// Planes between consecutive channels.
    pub channel: usize,
}

impl PlaneLayout {
    /// Images of `c` channels one after another (NCHW).
    pub fn nchw(c: usize) -> Self {
        PlaneLayout {
            first: 0,
            image: c,
            channel: 1,
        }
    }

    /// Channels of `n` images one after another (CNHW).
    pub fn cnhw(n: usize) -> Self {
        PlaneLayout {
            first: 0,
            image: 1,
            channel: n,
        }
    }

    /// Channels `[c_off, …)` of a map with this layout.
    pub fn from_channel(self, c_off: usize) -> Self {
        PlaneLayout {
            first: self.first + c_off * self.channel,
            ..self
        }
    }

    /// Plane index of (image b, channel c).
    #[inline]
    pub fn plane(&self, b: usize, c: usize) -> usize {
        self.first + b * self.image + c * self.channel
    }

    /// Elements a buffer needs to hold `n` images of `c` planes of `plane_len` (0 when
    /// empty; `None` on overflow).
    pub fn len(&self, n: usize, c: usize, plane_len: usize) -> Option<usize> {
        if n == 0 || c == 0 || plane_len == 0 {
            return Some(0);
        }
        let last = (n - 1)
            .checked_mul(self.image)?
            .checked_add((c - 1).checked_mul(self.channel)?)?
            .checked_add(self.first)?;
        last.checked_add(1)?.checked_mul(plane_len)
    }

    /// Whether the n·c planes are distinct (images outer or channels outer, as a
    /// convolution's output must be).
    pub fn distinct(&self, n: usize, c: usize) -> bool {
        n <= 1 && (c <= 1 || self.channel >= 1)
            || c <= 1 && self.image >= 1
            || self.channel >= 1 && self.image >= c.saturating_mul(self.channel)
            || self.image >= 1 && self.channel >= n.saturating_mul(self.image)
    }
}

/// How `conv2d_fwd_into` reads its input and stores its output: the planes of x
/// `[n, c_in, h, w]` and of y `[n, c_out, out_h, out_w]` as [`PlaneLayout`]s (planes
/// of y outside the convolution's are left as they are), and ReLU after the bias if
/// `relu` (`max(v, 0)`, a NaN becomes 0 as in `relu_inplace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvLayout {
    pub x: PlaneLayout,
    pub y: PlaneLayout,
    pub relu: bool,
}

impl ConvLayout {
    /// NCHW in and out (`conv2d_fwd`'s layout), with ReLU if `relu`.
    pub fn nchw(shape: &Conv2dShape, relu: bool) -> Self {
        ConvLayout {
            x: PlaneLayout::nchw(shape.c_in),
            y: PlaneLayout::nchw(shape.c_out),
            relu,
        }
    }

    /// Elements x must hold.
    pub fn x_len(&self, s: &Conv2dShape) -> usize {
        self.x.len(s.n, s.c_in, s.h * s.w).unwrap_or(usize::MAX)
    }

    /// Elements y must hold.
    pub fn y_len(&self, s: &Conv2dShape) -> usize {
        self.y.len(s.n, s.c_out, s.out_h() * s.out_w()).unwrap_or(usize::MAX)
    }

    /// Checks `shape` ([`Conv2dShape::validate`]), that both buffers' extents fit in
    /// memory arithmetic and that the output planes are distinct.
    pub fn validate(&self, shape: &Conv2dShape) -> Result<()> {
        shape.validate()?;
        let fits = |l: &PlaneLayout, c: usize, plane: usize| l.len(shape.n, c, plane).is_some_and(|v| v <= isize::MAX as usize / 8);
        if !fits(&self.x, shape.c_in, shape.h * shape.w) || !fits(&self.y, shape.c_out, shape.out_h() * shape.out_w()) {
            return Err(Error::invalid(format!("conv2d layout {self:?} of {shape:?} overflows")));
        }
        if !self.y.distinct(shape.n, shape.c_out) {
            return Err(Error::invalid(format!("conv2d layout {self:?}: output planes overlap")));
        }
        Ok(())
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
    fn plane_layouts_place_and_bound_their_planes() {
        let s = Conv2dShape::square(2, 3, 8, 8, 4, 3, 1, 1);
        let plain = ConvLayout::nchw(&s, true);
        plain.validate(&s).unwrap();
        assert_eq!((plain.x_len(&s), plain.y_len(&s)), (s.x_len(), s.y_len()));
        // Channels 6..10 of a 10-channel NCHW map, and of a 10-channel CNHW map.
        let slice = PlaneLayout::nchw(10).from_channel(6);
        assert_eq!((slice.plane(1, 2), slice.len(2, 4, 64)), (18, Some(20 * 64)));
        let cn = PlaneLayout::cnhw(2).from_channel(6);
        assert_eq!((cn.plane(1, 2), cn.len(2, 4, 64)), (17, Some(20 * 64)));
        for y in [slice, cn] {
            ConvLayout { y, ..plain }.validate(&s).unwrap();
        }
        // Overlapping output planes and overflowing extents are refused.
        for y in [
            PlaneLayout {
                first: 0,
                image: 1,
                channel: 1,
            },
            PlaneLayout {
                first: 0,
                image: 3,
                channel: 1,
            },
            PlaneLayout {
                first: usize::MAX,
                image: 4,
                channel: 1,
            },
            PlaneLayout {
                first: 0,
                image: usize::MAX,
                channel: 1,
            },
        ] {
            assert!(ConvLayout { y, ..plain }.validate(&s).is_err(), "{y:?}");
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
