//! [`Watchdog`]: a thread that bounds every blocking collective. MPI and NCCL calls
//! cannot be interrupted, and when a peer dies or hangs they may block forever (MPI)
//! or spin (NCCL). The collective is therefore wrapped in [`Watchdog::guard`]: when it
//! has not returned within the timeout the watchdog prints
//! `ucgm: distributed: rank R of W (transport): <collective> did not complete within T s …`
//! to stderr and ends the process with status [`EXIT_STATUS`] (`_exit`, so no atexit
//! handler of the MPI library can block the exit). A launcher (mpirun, torchrun, srun)
//! then sees a failed rank and ends the job; the last checkpoint, written atomically, is
//! intact.
//!
//! Ending the process is deliberate: there is no way to unwind out of a blocked MPI
//! collective, and a host application that passed its own communicator through the
//! C ABI gets the same bound.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Exit status of a process ended by the watchdog (EX_TEMPFAIL).
pub const EXIT_STATUS: i32 = 75;

#[derive(Default)]
struct State {
    /// The collective in progress and its deadline.
    armed: Option<(Instant, String)>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Bounds blocking collectives by a timeout; see the module doc.
pub struct Watchdog {
    shared: Arc<Shared>,
    timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// A watchdog for the process described by `who` (e.g. "rank 1 of 2 (mpi)").
    pub fn new(timeout: Duration, who: String) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let watcher = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ucgm-dist-watchdog".into())
            .spawn(move || watch(&watcher, timeout, &who))
            .ok();
        Watchdog { shared, timeout, thread }
    }

    /// The bound on one collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs the collective `what` under the timeout.
    pub fn guard<T>(&self, what: &str, collective: impl FnOnce() -> T) -> T {
        self.set(Some((Instant::now() + self.timeout, what.to_string())));
        let out = collective();
        self.set(None);
        out
    }

    fn set(&self, armed: Option<(Instant, String)>) {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        s.armed = armed;
        self.shared.wake.notify_all();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        {
            let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            s.stop = true;
            self.shared.wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(shared: &Shared, timeout: Duration, who: &str) {
    let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if s.stop {
            return;
        }
        let now = Instant::now();
        s = match &s.armed {
            None => shared.wake.wait(s).unwrap_or_else(|p| p.into_inner()),
            Some((deadline, what)) if now >= *deadline => {
                use std::io::Write;
                let msg = format!(
                    "ucgm: distributed: {who}: {what} did not complete within {:.1} s (UCGM_DIST_TIMEOUT): a peer rank died, hangs or is far behind; ending this process (status {EXIT_STATUS})\n",
                    timeout.as_secs_f64()
                );
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(msg.as_bytes());
                let _ = err.flush();
                // SAFETY: `_exit` ends the process without running atexit handlers (the
                // MPI library's could block on the dead peer); nothing is left to flush.
                unsafe { libc::_exit(EXIT_STATUS) }
            }
            Some((deadline, _)) => {
                let wait = *deadline - now;
                shared.wake.wait_timeout(s, wait).unwrap_or_else(|p| p.into_inner()).0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collective_that_returns_in_time_passes_through() {
        let w = Watchdog::new(Duration::from_secs(5), "rank 0 of 1 (test)".into());
        for i in 0..100 {
            assert_eq!(w.guard("sum", || i * 2), i * 2);
        }
        drop(w); // joins the thread
    }
}
