//! Linear layer y = x·Wᵀ + b and its backward over a `[W | b]` parameter view, as
//! cuBLAS products plus a broadcast (bias) and a deterministic column sum (bias
//! gradient).

use cudarc::driver::{CudaView, CudaViewMut};

use super::blas::{Mat, Op, Product};
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
        self.run_product(&forward_product(n, ni, o, px, pw, py), 1.0, beta);
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
            self.run_product(&dx_product(n, ni, o, pdy, pw, pdx), 1.0, 0.0);
        }
        self.run_product(&dw_product(n, ni, o, pdy, px, pdw), 1.0, 1.0);
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

/// y[n, o] = x[n, i]·Wᵀ with W stored [o, i] row-major.
fn forward_product(n: usize, ni: usize, o: usize, px: u64, pw: u64, py: u64) -> Product {
    Product::single(Op::N, Op::T, n, o, ni, Mat { ptr: px, ld: ni }, Mat { ptr: pw, ld: ni }, Mat { ptr: py, ld: o })
}

/// dx[n, i] = dy[n, o]·W[o, i].
fn dx_product(n: usize, ni: usize, o: usize, pdy: u64, pw: u64, pdx: u64) -> Product {
    Product::single(
        Op::N,
        Op::N,
        n,
        ni,
        o,
        Mat { ptr: pdy, ld: o },
        Mat { ptr: pw, ld: ni },
        Mat { ptr: pdx, ld: ni },
    )
}

/// dW[o, i] (+)= dy[n, o]ᵀ·x[n, i].
fn dw_product(n: usize, ni: usize, o: usize, pdy: u64, px: u64, pdw: u64) -> Product {
    Product::single(
        Op::T,
        Op::N,
        o,
        ni,
        n,
        Mat { ptr: pdy, ld: o },
        Mat { ptr: px, ld: ni },
        Mat { ptr: pdw, ld: ni },
    )
}

#[cfg(test)]
mod tests {
    //! The linear products through the planned cuBLAS calls and the host emulator,
    //! against the CPU backend's linear layer.
    use super::super::blas::{emulate, plan};
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::Backend;

    #[test]
    fn products_match_cpu_linear() {
        let cpu = CpuBackend::<f32>::new(1).unwrap();
        for (n, ni, o) in [(1, 1, 1), (3, 5, 7), (13, 2, 31), (4, 17, 3)] {
            let mut rng = crate::rng::Rng::new((n * 100 + ni * 10 + o) as u64);
            let (x, wb, dy, dwb0) = (
                rng.normal_f32(n * ni),
                rng.normal_f32(o * ni + o),
                rng.normal_f32(n * o),
                rng.normal_f32(o * ni + o),
            );
            let mut y_cpu = vec![0f32; n * o];
            cpu.linear_fwd(&x, &wb, true, &mut y_cpu, n, ni, o);
            let (mut dx_cpu, mut dwb_cpu) = (vec![0f32; n * ni], dwb0.clone());
            cpu.linear_bwd(&dy, &x, &wb, true, Some(&mut dx_cpu[..]), &mut dwb_cpu, n, ni, o);
            // Memory: x | wb | y | dy | dx | dwb.
            let (ex, ew) = (0, n * ni);
            let ey = ew + wb.len();
            let edy = ey + n * o;
            let edx = edy + n * o;
            let edw = edx + n * ni;
            let mut mem = [x.clone(), wb.clone(), vec![0.0; n * o], dy.clone(), vec![f32::NAN; n * ni], dwb0.clone()].concat();
            let a = |e: usize| (e * 4) as u64;
            // Forward: the bias broadcast, then the product with β = 1.
            for r in 0..n {
                mem[ey + r * o..ey + (r + 1) * o].copy_from_slice(&wb[o * ni..]);
            }
            emulate(&plan(&forward_product(n, ni, o, a(ex), a(ew), a(ey))).unwrap(), 1.0, 1.0, &mut mem);
            emulate(&plan(&dx_product(n, ni, o, a(edy), a(ew), a(edx))).unwrap(), 1.0, 0.0, &mut mem);
            emulate(&plan(&dw_product(n, ni, o, a(edy), a(ex), a(edw))).unwrap(), 1.0, 1.0, &mut mem);
            let close = |got: &[f32], want: &[f32], what: &str| {
                for (k, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what} ({n}, {ni}, {o}) [{k}]: {g} vs {w}");
                }
            };
            close(&mem[ey..edy], &y_cpu, "y");
            close(&mem[edx..edw], &dx_cpu, "dx");
            close(&mem[edw..edw + o * ni], &dwb_cpu[..o * ni], "dW");
        }
    }
}
