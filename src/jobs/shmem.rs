//! Shared memory of the job system: one slot per pool worker and the launcher's
//! wake-up list ("database D has work due at time T").
//!
//! Nothing here is needed for correctness after a crash: the queue lives in each
//! database's `arrw.job` table, and the launcher visits every database when it
//! starts. Shared memory only makes things prompt (submit wakes the launcher,
//! cancel finds the worker running a job).
//!
//! The wake-up list is guarded by a tiny spinlock held for a few loads and stores,
//! never across a call into PostgreSQL.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicUsize, Ordering};

/// The most workers `arrw.job_workers` may ask for.
pub const MAX_SLOTS: usize = 64;
/// Databases with pending work remembered at once; on overflow the launcher
/// rescans every database.
const MAX_PENDING: usize = 128;

/// One pool worker.
#[repr(C)]
pub struct Slot {
    /// Set by the launcher when it starts a worker here, cleared when it has exited.
    pub in_use: AtomicBool,
    pub dboid: AtomicU32,
    pub pid: AtomicI32,
    /// The job the worker is running (0: none).
    pub job_id: AtomicI64,
    /// A job whose cancellation was requested (checked by the worker against `job_id`).
    pub cancel: AtomicI64,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Pending {
    dboid: u32,
    due_ms: i64,
    gen: u64,
}

#[repr(C)]
pub struct Shared {
    lock: AtomicU32,
    /// `MyLatch` of the launcher (a pointer into shared memory), 0 if none.
    pub launcher_latch: AtomicUsize,
    /// Ask the launcher to visit every database.
    pub rescan: AtomicBool,
    pub nslots: AtomicU32,
    /// When (Unix ms) the launcher last failed to start a worker for want of a
    /// background worker slot (`max_worker_processes`); 0 once one started.
    /// While it fails, the workers running are all the pool can have
    /// (`wait_job`'s stall check).
    pub start_failed_ms: AtomicI64,
    pending: UnsafeCell<[Pending; MAX_PENDING]>,
    gen: UnsafeCell<u64>,
    pub slots: [Slot; MAX_SLOTS],
}

// SAFETY: the UnsafeCell fields are only touched under `lock`; the rest are atomics.
unsafe impl Sync for Shared {}

static mut SHARED: *mut Shared = std::ptr::null_mut();
static mut PREV_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// The shared state, if arrw was preloaded (shared memory exists).
pub fn shared() -> Option<&'static Shared> {
    // SAFETY: SHARED is set once by the startup hook in the postmaster (inherited by
    // every child) and points to memory that lives as long as the server.
    unsafe {
        let p = SHARED;
        if p.is_null() {
            None
        } else {
            Some(&*p)
        }
    }
}

/// Installs the shared-memory hooks (from `_PG_init` while preloading).
pub fn install_hooks() {
    // SAFETY: _PG_init runs single-threaded in the postmaster while preloading;
    // chaining the previous hooks keeps other extensions' shared memory working.
    unsafe {
        PREV_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: called by the postmaster in its shmem-request phase, where
    // RequestAddinShmemSpace is allowed; the previous hook is called first.
    unsafe {
        if let Some(prev) = PREV_REQUEST_HOOK {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(std::mem::size_of::<Shared>());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: the standard add-in initialisation: under AddinShmemInitLock (entry 21
    // of MainLWLockArray in PostgreSQL 15, as pgrx's own PgLwLock uses), find or
    // create the struct; a new one is zeroed (every atomic starts at 0/false).
    unsafe {
        if let Some(prev) = PREV_STARTUP_HOOK {
            prev();
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let p = pg_sys::ShmemInitStruct(
            c"arrw jobs".as_ptr(),
            std::mem::size_of::<Shared>(),
            &mut found,
        ) as *mut Shared;
        if !found {
            std::ptr::write_bytes(p as *mut u8, 0, std::mem::size_of::<Shared>());
            let n = super::JOB_WORKERS.get().clamp(1, MAX_SLOTS as i32) as u32;
            (*p).nslots.store(n, Ordering::SeqCst);
            (*p).rescan.store(true, Ordering::SeqCst);
        }
        SHARED = p;
        pg_sys::LWLockRelease(lock);
    }
}

impl Shared {
    fn with_pending<R>(&self, f: impl FnOnce(&mut [Pending; MAX_PENDING], &mut u64) -> R) -> R {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins > 1000 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: we hold the spinlock, so no other process touches these cells.
        let r = unsafe { f(&mut *self.pending.get(), &mut *self.gen.get()) };
        self.lock.store(0, Ordering::Release);
        r
    }

    /// The slots the pool actually uses.
    pub fn slots(&self) -> &[Slot] {
        let n = (self.nslots.load(Ordering::Relaxed) as usize).clamp(1, MAX_SLOTS);
        &self.slots[..n]
    }

    /// Records that database `dboid` has work due at `due_ms` (Unix ms) and wakes the
    /// launcher.
    pub fn mark(&self, dboid: pg_sys::Oid, due_ms: i64) {
        if !self.record(dboid, due_ms) {
            self.rescan.store(true, Ordering::SeqCst);
        }
        self.wake_launcher();
    }

    /// [`Shared::mark`] for the launcher's own rescan: records the entry if
    /// the table has room and says whether it did, without asking for another
    /// rescan or waking the launcher (itself). With more databases than
    /// [`MAX_PENDING`], a rescan that marked every one overflowed the table,
    /// which asked for a rescan, which marked every one again, each mark
    /// setting the launcher's latch: it never slept and started workers in an
    /// endless loop (hunt-54, 129 databases). The launcher keeps the databases
    /// that found no room and marks them as entries free up.
    pub fn mark_from_launcher(&self, dboid: pg_sys::Oid, due_ms: i64) -> bool {
        self.record(dboid, due_ms)
    }

    /// Records database `dboid`'s entry (see [`Shared::mark`]); false when the
    /// table is full.
    fn record(&self, dboid: pg_sys::Oid, due_ms: i64) -> bool {
        let db = dboid.to_u32();
        if db == 0 {
            return true;
        }
        let overflow = self.with_pending(|p, gen| {
            *gen += 1;
            if let Some(e) = p.iter_mut().find(|e| e.dboid == db) {
                e.due_ms = e.due_ms.min(due_ms);
                e.gen = *gen;
                return false;
            }
            if let Some(e) = p.iter_mut().find(|e| e.dboid == 0) {
                *e = Pending {
                    dboid: db,
                    due_ms,
                    gen: *gen,
                };
                return false;
            }
            true
        });
        !overflow
    }

    /// Sets the launcher's latch.
    pub fn wake_launcher(&self) {
        let latch = self.launcher_latch.load(Ordering::SeqCst);
        if latch != 0 {
            // If the launcher has exited, the latch belongs to some other process and
            // setting it only causes a spurious wake-up there.
            // SAFETY: the pointer is the launcher's MyLatch, inside shared memory
            // (PGPROC array) that every backend maps at the same address.
            unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
        }
    }

    /// Entries due at `now_ms`: (database, generation). Also the earliest future due time.
    pub fn due(&self, now_ms: i64) -> (Vec<(u32, u64)>, Option<i64>) {
        self.with_pending(|p, _| {
            let mut due: Vec<(i64, u32, u64)> = Vec::new();
            let mut next: Option<i64> = None;
            for e in p.iter().filter(|e| e.dboid != 0) {
                if e.due_ms <= now_ms {
                    due.push((e.due_ms, e.dboid, e.gen));
                } else {
                    next = Some(next.map_or(e.due_ms, |n: i64| n.min(e.due_ms)));
                }
            }
            due.sort();
            (due.into_iter().map(|(_, d, g)| (d, g)).collect(), next)
        })
    }

    /// Forgets database `db`'s entry if it was not marked again since generation `gen`.
    pub fn served(&self, db: u32, gen: u64) {
        self.with_pending(|p, _| {
            if let Some(e) = p.iter_mut().find(|e| e.dboid == db && e.gen == gen) {
                *e = Pending {
                    dboid: 0,
                    due_ms: 0,
                    gen: 0,
                };
            }
        });
    }

    /// Whether the launcher is failing to start more workers: its last start
    /// failed for want of a background worker slot, recently enough that it
    /// is still retrying (it retries every second while work is due).
    pub fn cannot_start_workers(&self) -> bool {
        let failed = self.start_failed_ms.load(Ordering::SeqCst);
        failed != 0 && now_ms().saturating_sub(failed) < 3000
    }

    /// The slot running `job` in database `db`.
    pub fn slot_running(&self, db: pg_sys::Oid, job: i64) -> Option<&Slot> {
        self.slots().iter().find(|s| {
            s.in_use.load(Ordering::SeqCst)
                && s.dboid.load(Ordering::SeqCst) == db.to_u32()
                && s.job_id.load(Ordering::SeqCst) == job
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// After this transaction commits, wake the launcher for this database.
pub fn wake_on_commit() {
    // SAFETY: reading a backend global.
    let db = unsafe { pg_sys::MyDatabaseId };
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
        if let Some(s) = shared() {
            s.mark(db, now_ms());
        }
    });
}

/// After this transaction commits, interrupt the worker running `job` (if any): its
/// current statement is cancelled and it sees the cancellation at once. A
/// request made in a subtransaction that rolls back (`ROLLBACK TO SAVEPOINT`,
/// a PL/pgSQL exception block) is forgotten with it, as its `arrw.job_cancel`
/// row is: it cancelled the job anyway when it was a plain commit callback.
pub fn cancel_on_commit(job: i64) {
    register_cancel_callbacks();
    // SAFETY: reading the current subtransaction's id (inside a transaction).
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    CANCELS.with(|c| c.borrow_mut().push((job, sub)));
}

thread_local! {
    /// Jobs to interrupt when this transaction commits, each with the
    /// subtransaction that asked (moved to its parent when it commits).
    static CANCELS: std::cell::RefCell<Vec<(i64, pg_sys::SubTransactionId)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    static CANCEL_CALLBACKS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Registers [`cancel_xact`] and [`cancel_subxact`], once per backend.
fn register_cancel_callbacks() {
    if CANCEL_CALLBACKS.get() {
        return;
    }
    // SAFETY: static callbacks with the hooks' signatures, registered once per
    // backend on PostgreSQL's thread; they stay registered for its life.
    unsafe {
        pg_sys::RegisterXactCallback(Some(cancel_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(cancel_subxact), std::ptr::null_mut());
    }
    CANCEL_CALLBACKS.set(true);
}

/// At commit, interrupts the workers of the jobs asked for; at abort (or
/// PREPARE: the cancel row commits later, elsewhere, and the worker sees it at
/// its next check) forgets them.
#[pg_guard]
unsafe extern "C-unwind" fn cancel_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    let commit = match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => true,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => false,
        _ => return,
    };
    let jobs = CANCELS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    if !commit || jobs.is_empty() {
        return;
    }
    let Some(s) = shared() else { return };
    // SAFETY: reading a backend global.
    let db = unsafe { pg_sys::MyDatabaseId };
    for (job, _) in jobs {
        if let Some(slot) = s.slot_running(db, job) {
            slot.cancel.store(job, Ordering::SeqCst);
            let pid = slot.pid.load(Ordering::SeqCst);
            if pid > 0 {
                // SAFETY: kill(2) on a PostgreSQL child process of the same OS user;
                // SIGINT is PostgreSQL's query-cancel signal.
                unsafe { kill(pid, pg_sys::SIGINT as i32) };
            }
        }
    }
}

/// A subtransaction that rolls back takes its requests with it; one that
/// commits hands them to its parent.
#[pg_guard]
unsafe extern "C-unwind" fn cancel_subxact(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    CANCELS.with(|c| {
        let mut c = c.borrow_mut();
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => c.retain(|&(_, s)| s != sub),
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => c
                .iter_mut()
                .filter(|(_, s)| *s == sub)
                .for_each(|(_, s)| *s = parent),
            _ => {}
        }
    });
}
