//! Linear layer y = x·Wᵀ + b and its backward over a `[W | b]` parameter view, as
//! cuBLAS products plus a broadcast (bias) and a deterministic column sum (bias
//! gradient).

use cudarc::driver::{CudaView, CudaViewMut};

use super::blas::{Mat, Op};
use super::launch::{elems, i, Arg};
use super::{CudaBackend, Kernel};

/// Rows per partial sum of the bias-gradient column sums (fixed: the summation order
/// depends only on the shape).
const COLSUM_CHUNK: usize = 256;

impl CudaBackend {
    /// y[n, o] = x[n, i]·W[o, i]ᵀ + b[o]. x: [n, i]; wb: [o·i (+ o)]; y: [n, o] (assign).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear_fwd_impl(&self, x: CudaView<'_, f32>, wb: CudaView<'_, f32>, has_bias: bool, y: CudaViewMut<'_, f32>, n: usize, ni: usize, o: usize) {
        let wlen = o * ni + if has_bias { o } else { 0 };
        if !self.lens_ok("linear_fwd", &[("x", x.len(), n * ni), ("wb", wb.len(), wlen), ("y", y.len(), n * o)]) {
            return;
        }
        let (px, pw, py) = (self.ptr(&x), self.ptr(&wb), self.ptr(&y));
        if has_bias {
            let pb = Self::off(pw, o * ni);
            self.launch(Kernel::BiasRows, elems(n * o), n * o, &[Arg::P(pb), Arg::P(py), i(n * o), i(o)]);
        }
        let beta = if has_bias { 1.0 } else { 0.0 };
        // y = x · Wᵀ with W stored [o, i] row-major.
        self.gemm(
            Op::N,
            Op::T,
            n,
            o,
            ni,
            1.0,
            Mat { ptr: px, ld: ni },
            Mat { ptr: pw, ld: ni },
            beta,
            Mat { ptr: py, ld: o },
        );
    }

    /// dx[n, i] = dy·W (assign, if wanted); dW[o, i] += dyᵀ·x; db[o] += Σₙ dy.
    /// dy: [n, o]; x: [n, i]; wb: [o·i (+ o)]; dx: [n, i]; dwb: [o·i (+ o)] (accumulate).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear_bwd_impl(
        &self,
        dy: CudaView<'_, f32>,
        x: CudaView<'_, f32>,
        wb: CudaView<'_, f32>,
        has_bias: bool,
        dx: Option<CudaViewMut<'_, f32>>,
        dwb: CudaViewMut<'_, f32>,
        n: usize,
        ni: usize,
        o: usize,
    ) {
        let wlen = o * ni + if has_bias { o } else { 0 };
        let dx_len = dx.as_ref().map_or(usize::MAX, |v| v.len());
        let mut lens = vec![
            ("dy", dy.len(), n * o),
            ("x", x.len(), n * ni),
            ("wb", wb.len(), o * ni),
            ("dwb", dwb.len(), wlen),
        ];
        if dx.is_some() {
            lens.push(("dx", dx_len, n * ni));
        }
        if !self.lens_ok("linear_bwd", &lens) {
            return;
        }
        let (pdy, px, pw, pdw) = (self.ptr(&dy), self.ptr(&x), self.ptr(&wb), self.ptr(&dwb));
        if let Some(dx) = dx {
            let pdx = self.ptr(&dx);
            self.gemm(
                Op::N,
                Op::N,
                n,
                ni,
                o,
                1.0,
                Mat { ptr: pdy, ld: o },
                Mat { ptr: pw, ld: ni },
                0.0,
                Mat { ptr: pdx, ld: ni },
            );
        }
        // dW += dyᵀ · x, dy stored [n, o].
        self.gemm(
            Op::T,
            Op::N,
            o,
            ni,
            n,
            1.0,
            Mat { ptr: pdy, ld: o },
            Mat { ptr: px, ld: ni },
            1.0,
            Mat { ptr: pdw, ld: ni },
        );
        if has_bias {
            self.column_sums_into(pdy, Self::off(pdw, o * ni), n, o);
        }
    }

    /// acc[j] += Σᵣ m[r, j] for a row-major [rows, cols] matrix at `m`: partial sums over
    /// fixed chunks of rows, then the partials in chunk order.
    pub(super) fn column_sums_into(&self, m: u64, acc: u64, rows: usize, cols: usize) {
        if rows == 0 || cols == 0 {
            return;
        }
        let chunks = rows.div_ceil(COLSUM_CHUNK);
        let Some(part) = self.temp::<f32>(chunks * cols) else { return };
        let pp = self.ptr(&part);
        let np = chunks * cols;
        self.launch(
            Kernel::ColsumPartial,
            elems(np),
            np,
            &[Arg::P(m), Arg::P(pp), i(np), i(rows), i(cols), i(COLSUM_CHUNK)],
        );
        self.launch(Kernel::ColsumFinish, elems(cols), cols, &[Arg::P(pp), Arg::P(acc), i(chunks), i(cols)]);
    }
}
