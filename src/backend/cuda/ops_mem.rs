//! Memory ops: allocation, host transfers, copy, zero, accumulate.
//!
//! The four fallible calls (`zeros`, `upload`, `write`, `read`) first return the sticky
//! error, if any; `read` synchronises the stream, so a kernel fault queued earlier
//! surfaces there.

use std::ops::Range;

use cudarc::driver::{CudaView, CudaViewMut, DeviceSlice};

use super::launch::{elems, i, Arg};
use super::{CudaBackend, CudaBuf, Kernel};
use crate::error::{Error, Result};

impl CudaBackend {
    pub(super) fn zeros_impl(&self, len: usize) -> Result<CudaBuf> {
        self.status()?;
        let mem = self
            .s
            .stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| Error::Backend(format!("allocating {len} f32 on the device: {e}")))?;
        Ok(CudaBuf { mem, len })
    }

    pub(super) fn upload_impl(&self, host: &[f32]) -> Result<CudaBuf> {
        let mut buf = self.zeros_impl(host.len())?;
        self.write_impl(&mut buf, 0, host)?;
        Ok(buf)
    }

    pub(super) fn write_impl(&self, dst: &mut CudaBuf, offset: usize, host: &[f32]) -> Result<()> {
        self.status()?;
        let end = offset.checked_add(host.len()).filter(|&e| e <= dst.len);
        let end = end.ok_or_else(|| Error::invalid(format!("write of {} at {offset} past buffer of {}", host.len(), dst.len)))?;
        if host.is_empty() {
            return Ok(());
        }
        let mut view = dst.mem.slice_mut(offset..end);
        // From pageable memory: returns once `host` has been staged, so it may be reused.
        self.s
            .stream
            .memcpy_htod(host, &mut view)
            .map_err(|e| Error::Backend(format!("host-to-device copy: {e}")))
    }

    pub(super) fn read_impl(&self, src: &CudaBuf, range: Range<usize>) -> Result<Vec<f32>> {
        self.status()?;
        if range.start > range.end || range.end > src.len {
            return Err(Error::invalid(format!("read {range:?} past buffer of {}", src.len)));
        }
        let mut out = vec![0f32; range.len()];
        if !out.is_empty() {
            let view = src.mem.slice(range);
            if let Err(e) = self.s.stream.memcpy_dtoh(&view, &mut out) {
                self.fail(format!("device-to-host copy: {e}"));
            }
        }
        // Surface anything queued before (kernel faults, launch errors).
        self.synchronize()?;
        Ok(out)
    }

    pub(super) fn copy_impl(&self, src: CudaView<'_, f32>, mut dst: CudaViewMut<'_, f32>) {
        if src.len() != dst.len() {
            self.fail(format!("copy: source has {} elements, destination {}", src.len(), dst.len()));
            return;
        }
        if src.is_empty() || self.failed() {
            return;
        }
        if **src.stream() != *self.s.stream || **dst.stream() != *self.s.stream {
            self.fail("copy: a buffer of another CUDA backend was passed to this one");
            return;
        }
        let r = self.s.stream.memcpy_dtod(&src, &mut dst);
        self.check("device-to-device copy", r);
    }

    pub(super) fn zero_impl(&self, mut dst: CudaViewMut<'_, f32>) {
        if dst.is_empty() || self.failed() {
            return;
        }
        let _ = self.ptr(&dst);
        let r = self.s.stream.memset_zeros(&mut dst);
        self.check("zeroing device memory", r);
    }

    pub(super) fn add_assign_impl(&self, src: CudaView<'_, f32>, dst: CudaViewMut<'_, f32>) {
        let n = dst.len();
        if !self.lens_ok("add_assign", &[("src", src.len(), n)]) {
            return;
        }
        let (ps, pd) = (self.ptr(&src), self.ptr(&dst));
        self.launch(Kernel::AddAssign, elems(n), n, &[Arg::P(ps), Arg::P(pd), i(n)]);
    }
}
