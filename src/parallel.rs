//! Running arrw-core's parallel computations from a backend.
//!
//! Training and bulk encoding use rayon threads that only compute on data copied
//! out of PostgreSQL; they never call into the server (which is single-threaded:
//! its memory contexts, error handling and locks belong to the backend's thread).
//! [`run`] starts the work on a private pool and keeps the backend's thread
//! answering interrupts meanwhile: on a cancel request, a `statement_timeout` or a
//! termination, `CHECK_FOR_INTERRUPTS` raises its ERROR on the backend thread, the
//! unwinding raises the shared [`Stop`], and the computing threads notice it at
//! their next check (a few milliseconds of work apart, see `arrw_core::stop`)
//! before the ERROR leaves this function.

use arrw_core::stop::{Stop, Stopped};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::time::Duration;

/// How often the backend's thread looks for interrupts while others compute.
const POLL: Duration = Duration::from_millis(10);

/// Threads an index build computes on: the leader plus what
/// `max_parallel_maintenance_workers` allows, and no more than the machine's cores.
pub fn build_threads() -> usize {
    // SAFETY: reading this backend's GUC variable.
    let workers = unsafe { pg_sys::max_parallel_maintenance_workers }.max(0) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (workers + 1).min(cores).max(1)
}

unsafe extern "C" {
    /// glibc: returns freed memory of every malloc arena to the OS.
    fn malloc_trim(pad: usize) -> i32;
}

/// Returns memory freed by this backend and its computing threads to the
/// operating system. glibc gives each thread that allocates its own arena and
/// keeps an arena's freed pages: after a build's training, the next phase's
/// allocations land beside them, and the backend's memory counts both
/// (`maintenance_work_mem`'s budget assumes the first phase's memory is gone).
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas (under their locks) and
    // madvises their free pages; nothing is live in them, and the computing
    // threads are idle between phases.
    unsafe { malloc_trim(0) };
}

/// A pool of computing threads for one statement.
pub struct Pool(rayon::ThreadPool);

/// Raises the stop when dropped: on the normal path after the work is done (a
/// no-op then), and when an ERROR unwinds the backend's thread.
struct StopOnDrop<'a>(&'a Stop);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.request();
    }
}

impl Pool {
    /// A pool of `threads` threads (see [`build_threads`]).
    pub fn new(threads: usize) -> Self {
        match rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("arrw-compute-{i}"))
            .build()
        {
            Ok(p) => Pool(p),
            Err(e) => {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
                    format!("could not start {threads} computing threads: {e}")
                );
            }
        }
    }

    /// Threads of the pool.
    pub fn threads(&self) -> usize {
        self.0.current_num_threads()
    }

    /// Runs `work` on the pool and returns its result, answering interrupts on
    /// the calling (backend) thread every few milliseconds while it runs. `work`
    /// must not call PostgreSQL; it gets the stop to pass to arrw-core.
    pub fn run<T: Send>(&self, work: impl FnOnce(&Stop) -> Result<T, Stopped> + Send) -> T {
        self.run_reporting(|_, _| {}, work)
    }

    /// Starts `work` on the pool and returns at once: the backend's thread
    /// goes on (reading the next rows of a table) while the pool computes, and
    /// [`Pending::wait`] takes the result. `work` owns its data (`'static`):
    /// nothing it reads can be freed under it, whatever the backend does
    /// meanwhile. An ERROR that unwinds the backend before the wait (a cancel
    /// seen by the table scan) drops the [`Pending`], which raises the stop
    /// and waits for the work to notice it.
    pub fn start<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Stop) -> Result<T, Stopped> + Send + 'static,
    ) -> Pending<T> {
        let stop = Stop::new();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let me = std::thread::current();
        let theirs = stop.clone();
        self.0.spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&theirs)));
            // The receiver may be gone (the backend stopped waiting): nothing
            // to tell then.
            let _ = tx.send(r);
            me.unpark();
        });
        Pending {
            rx,
            stop,
            open: true,
        }
    }

    /// [`Pool::run`] that also hands `report` the work's progress (units done,
    /// units planned: [`Stop::progress`]) on the backend's thread while it
    /// waits, every few milliseconds and once at the end.
    pub fn run_reporting<T: Send>(
        &self,
        mut report: impl FnMut(u64, u64),
        work: impl FnOnce(&Stop) -> Result<T, Stopped> + Send,
    ) -> T {
        let stop = Stop::new();
        let me = std::thread::current();
        let result = std::thread::scope(|s| {
            let _raise = StopOnDrop(&stop);
            let stop = &stop;
            let pool = &self.0;
            let me = me.clone();
            // A named thread waits for the pool, so the backend's own thread is
            // free to answer interrupts (and a build's threads can be told apart).
            let spawned = std::thread::Builder::new()
                .name("arrw-wait".into())
                .spawn_scoped(s, move || {
                    let r = pool.install(|| work(stop));
                    me.unpark();
                    r
                });
            let h = match spawned {
                Ok(h) => h,
                Err(e) => {
                    ereport!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
                        format!("could not start a thread: {e}")
                    );
                }
            };
            while !h.is_finished() {
                // May raise an ERROR: `_raise` stops the workers and the scope
                // joins them before the ERROR propagates.
                pg_sys::check_for_interrupts!();
                let (done, planned) = stop.progress();
                report(done, planned);
                std::thread::park_timeout(POLL);
            }
            let (done, planned) = stop.progress();
            report(done, planned);
            match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        match result {
            Ok(v) => v,
            // Only our own guard raises the stop, and only while unwinding.
            Err(Stopped) => error!("arrw: a computation stopped without a cancel request"),
        }
    }
}

/// Work started by [`Pool::start`].
pub struct Pending<T> {
    rx: std::sync::mpsc::Receiver<std::thread::Result<Result<T, Stopped>>>,
    stop: Stop,
    /// The result has not been taken yet.
    open: bool,
}

impl<T> Pending<T> {
    /// The work's result, answering interrupts on the backend's thread every
    /// few milliseconds until it is there.
    pub fn wait(mut self) -> T {
        loop {
            match self.rx.try_recv() {
                Ok(r) => {
                    self.open = false;
                    return match r {
                        Ok(Ok(v)) => v,
                        Ok(Err(Stopped)) => {
                            error!("arrw: a computation stopped without a cancel request")
                        }
                        Err(panic) => std::panic::resume_unwind(panic),
                    };
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    // May raise an ERROR: Drop then stops and waits for the work.
                    pg_sys::check_for_interrupts!();
                    std::thread::park_timeout(POLL);
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.open = false;
                    error!("arrw: a computation ended without a result")
                }
            }
        }
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        if self.open {
            // Unwinding (or never waited for): stop the work and let it end
            // before the statement's cleanup goes on, so no thread of this
            // statement outlives it.
            self.stop.request();
            let _ = self.rx.recv();
        }
    }
}
