//! Reusable scratch buffers for the CPU ops' large temporaries (column matrices,
//! Winograd tiles, product scratch), kept in a small per-thread pool.
//!
//! A FID Inception batch makes ~100 convolution calls and a VAE decode ~30, each needing
//! up to 16 MiB of temporaries. Allocated fresh, every call paid for zeroing them and,
//! above the allocator's mmap threshold, for faulting fresh pages in (7% of the Inception's
//! time). A buffer taken from the pool keeps whatever values it held: callers overwrite
//! every element before reading it, so no zeroing pass is paid either.
//!
//! Memory held: at most [`KEEP`] buffers of at most [`KEEP_BYTES`] in all, per thread
//! that called an op using them (in practice the caller's thread only: the parallel
//! parts borrow the caller's buffers). Larger buffers are freed when returned.

use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use super::Elem;

/// Buffers kept per thread.
pub const KEEP: usize = 6;
/// Bytes kept per thread, all buffers together.
pub const KEEP_BYTES: usize = 96 << 20;

thread_local! {
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` values borrowed from the calling thread's pool; returned on drop.
pub struct Scratch<T: Elem> {
    buf: Vec<T>,
}

impl<T: Elem> Scratch<T> {
    /// `len` values with unspecified (but initialised) contents: for callers that write
    /// every element before reading it.
    pub fn for_overwrite(len: usize) -> Self {
        let pooled = POOL.with(|p| {
            let mut p = p.borrow_mut();
            // The smallest pooled buffer of this type that holds `len`, else the largest.
            let best = p
                .iter()
                .enumerate()
                .filter_map(|(i, b)| b.downcast_ref::<Vec<T>>().map(|v| (i, v.capacity())))
                .min_by_key(|&(_, cap)| if cap >= len { (0, cap) } else { (1, usize::MAX - cap) });
            best.map(|(i, _)| p.swap_remove(i))
        });
        let mut buf = pooled.and_then(|b| b.downcast::<Vec<T>>().ok()).map_or_else(Vec::new, |b| *b);
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, T::zero());
        }
        Scratch { buf }
    }
}

impl<T: Elem> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let bytes = buf.capacity() * std::mem::size_of::<T>();
        if bytes == 0 || bytes > KEEP_BYTES {
            return;
        }
        // `try_with`: a thread being torn down simply frees the buffer.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            p.push(Box::new(buf));
            // Over the limits: drop the smallest buffers first.
            let size = |b: &Box<dyn Any>| {
                b.downcast_ref::<Vec<f32>>()
                    .map(|v| v.capacity() * 4)
                    .or_else(|| b.downcast_ref::<Vec<f64>>().map(|v| v.capacity() * 8))
                    .unwrap_or(0)
            };
            while p.len() > KEEP || p.iter().map(size).sum::<usize>() > KEEP_BYTES {
                let smallest = (0..p.len()).min_by_key(|&i| size(&p[i])).unwrap_or(0);
                p.swap_remove(smallest);
            }
        });
    }
}

impl<T: Elem> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf
    }
}

impl<T: Elem> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_sized_and_the_pool_stays_bounded() {
        let ptr = {
            let mut a = Scratch::<f32>::for_overwrite(1000);
            assert_eq!(a.len(), 1000);
            a[3] = 7.0;
            a.as_ptr()
        };
        // The same buffer comes back, contents kept.
        let b = Scratch::<f32>::for_overwrite(500);
        assert_eq!((b.as_ptr(), b.len(), b[3]), (ptr, 500, 7.0));
        drop(b);
        let c = Scratch::<f32>::for_overwrite(800);
        assert_eq!((c.as_ptr(), c.len()), (ptr, 800));
        // Types do not mix.
        let d = Scratch::<f64>::for_overwrite(10);
        assert_eq!(d.len(), 10);
        drop((c, d));
        // Many buffers: the pool keeps at most KEEP.
        let many: Vec<Scratch<f32>> = (0..10).map(|i| Scratch::for_overwrite(100 + i)).collect();
        drop(many);
        POOL.with(|p| assert!(p.borrow().len() <= KEEP));
        // A buffer over the byte limit is not kept.
        drop(Scratch::<f32>::for_overwrite(KEEP_BYTES / 4 + 1));
        POOL.with(|p| {
            assert!(p
                .borrow()
                .iter()
                .all(|b| b.downcast_ref::<Vec<f32>>().is_none_or(|v| v.capacity() * 4 <= KEEP_BYTES)))
        });
    }
}
