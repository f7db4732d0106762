//! The launcher ("arrw job launcher"): one static background worker, connected to
//! no database, that starts pool workers ("arrw job worker", dynamic background
//! workers, at most `arrw.job_workers` at once) in the databases that have work.
//!
//! It learns of work from shared memory (`shmem::Shared::mark`: a committed
//! submit_job, a retry falling due, a worker that died mid-job) and, when it starts
//! and every ten minutes, by visiting every database that accepts connections (a
//! worker started in a database without arrw exits at once). A visit also requeues
//! jobs orphaned by a crash, so after any restart every queued or interrupted job
//! runs again without anyone submitting anything.

use super::shmem::{self, now_ms};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often every database is visited even without a wake-up.
const RESCAN_MS: i64 = 600_000;

/// Registers the launcher (from `_PG_init` while preloading).
pub fn register() {
    BackgroundWorkerBuilder::new("arrw job launcher")
        .set_type("arrw job launcher")
        .set_library("arrw")
        .set_function("arrw_job_launcher_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn arrw_job_launcher_main(_arg: pg_sys::Datum) {
    main();
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(pid, 0) only checks that the process exists.
    pid > 0 && unsafe { kill(pid, 0) } == 0
}

/// Databases a worker may connect to (not templates, connections allowed, valid).
fn databases() -> Vec<u32> {
    let mut out = Vec::new();
    // The same catalog scan PostgreSQL's logical replication launcher makes of a
    // shared catalog without a database connection.
    // SAFETY: in a transaction, with a snapshot, pg_database opened with
    // AccessShareLock and closed again; each tuple is a FormData_pg_database.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::GetTransactionSnapshot();
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tup = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tup.is_null() {
                break;
            }
            let db = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tup);
            if db.datallowconn && !db.datistemplate && db.datconnlimit != -2 {
                out.push(db.oid.to_u32());
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        pg_sys::CommitTransactionCommand();
    }
    out
}

/// An integer setting's current value (0 if unknown).
fn setting_int(name: &str) -> i64 {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: a NUL-terminated name; GetConfigOption returns NULL (missing_ok)
    // or a string it owns, read at once.
    unsafe {
        let v = pg_sys::GetConfigOption(c.as_ptr(), true, false);
        if v.is_null() {
            return 0;
        }
        std::ffi::CStr::from_ptr(v)
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

fn start_worker(slot: usize, db: u32) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new(&format!("arrw job worker for database {db}"))
        .set_type("arrw job worker")
        .set_library("arrw")
        // The pool worker's entry point, defined in worker.rs.
        .set_function("arrw_job_worker_main")
        .enable_spi_access()
        .set_argument(Some(pg_sys::Datum::from(slot)))
        .set_extra(&db.to_string())
        // SAFETY: reading a backend global.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .ok()
}

fn main() {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let Some(sh) = shmem::shared() else { return };
    // SAFETY: MyLatch points to this process's latch in shared memory.
    sh.launcher_latch
        .store(unsafe { pg_sys::MyLatch } as usize, Ordering::SeqCst);
    let n = sh.slots().len();
    let mut handles: Vec<Option<DynamicBackgroundWorker>> = (0..n).map(|_| None).collect();
    let mut next_rescan = 0i64;
    // SAFETY: reading a GUC variable of this process (fixed at server start).
    let max_workers = unsafe { pg_sys::max_worker_processes };
    // Slots other static background workers take for good: this launcher's, and
    // PostgreSQL's logical replication launcher's (registered unless
    // max_logical_replication_workers is 0). Parallel queries and other
    // extensions' workers take more, which nothing here can count.
    let others = 1 + i32::from(setting_int("max_logical_replication_workers") > 0);
    if n as i32 + others > max_workers {
        pgrx::warning!(
            "arrw.job_workers = {n} does not fit in max_worker_processes = {max_workers}: \
             the job launcher{} take{} {others} of its slots, so at most {} jobs can run at once \
             (fewer while parallel queries or other extensions' background workers hold slots)",
            if others > 1 {
                " and the logical replication launcher"
            } else {
                ""
            },
            if others > 1 { "" } else { "s" },
            (max_workers - others).max(0)
        );
    }
    // When the last "no background worker slot" warning went out.
    let mut slot_warned = i64::MIN;
    // Databases of the last rescan not yet in the shared table (it was full).
    let mut backlog: Vec<u32> = Vec::new();
    loop {
        let now = now_ms();
        // Reap workers that have exited.
        for (i, h) in handles.iter_mut().enumerate() {
            let slot = &sh.slots()[i];
            let stopped = match h {
                Some(w) => match w.pid() {
                    Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted) => false,
                    Err(BackgroundWorkerStatus::PostmasterDied) => return,
                    Err(_) => true,
                },
                // A slot left by an earlier launcher of this server.
                None => {
                    slot.in_use.load(Ordering::SeqCst) && !alive(slot.pid.load(Ordering::SeqCst))
                }
            };
            if stopped {
                if slot.job_id.load(Ordering::SeqCst) != 0 {
                    // Died mid-job: visit its database again to requeue the job.
                    sh.mark(pg_sys::Oid::from(slot.dboid.load(Ordering::SeqCst)), now);
                }
                slot.job_id.store(0, Ordering::SeqCst);
                slot.cancel.store(0, Ordering::SeqCst);
                slot.pid.store(0, Ordering::SeqCst);
                slot.in_use.store(false, Ordering::SeqCst);
                *h = None;
            }
        }
        if now >= next_rescan || sh.rescan.swap(false, Ordering::SeqCst) {
            backlog = databases();
            next_rescan = now + RESCAN_MS;
        }
        // The rescan's databases, as far as the shared table has room (more
        // databases than it holds wait here until started workers free it).
        backlog.retain(|&db| !sh.mark_from_launcher(pg_sys::Oid::from(db), now));
        // Start workers for databases with work due.
        let (due, next_due) = sh.due(now);
        let mut waiting = false;
        for (db, gen) in due {
            let Some(i) = (0..n)
                .find(|&i| handles[i].is_none() && !sh.slots()[i].in_use.load(Ordering::SeqCst))
            else {
                waiting = true;
                break;
            };
            let slot = &sh.slots()[i];
            slot.dboid.store(db, Ordering::SeqCst);
            slot.job_id.store(0, Ordering::SeqCst);
            slot.cancel.store(0, Ordering::SeqCst);
            slot.pid.store(0, Ordering::SeqCst);
            slot.in_use.store(true, Ordering::SeqCst);
            match start_worker(i, db) {
                Some(w) => {
                    handles[i] = Some(w);
                    sh.served(db, gen);
                    sh.start_failed_ms.store(0, Ordering::SeqCst);
                }
                None => {
                    sh.start_failed_ms.store(now.max(1), Ordering::SeqCst);
                    // No background worker slot free (max_worker_processes): retry soon,
                    // and say so in the server log once a minute (jobs otherwise
                    // wait in the queue without a word).
                    slot.in_use.store(false, Ordering::SeqCst);
                    if now.saturating_sub(slot_warned) >= 60_000 {
                        slot_warned = now;
                        pgrx::warning!(
                            "arrw job launcher: no background worker slot is free to run the \
                             queued jobs of database {db} (max_worker_processes = {max_workers}); \
                             they wait until one is"
                        );
                    }
                    waiting = true;
                    break;
                }
            }
        }
        let mut wake = next_rescan.min(next_due.unwrap_or(i64::MAX));
        if waiting || !backlog.is_empty() {
            wake = wake.min(now + 1000);
        }
        let timeout = (wake - now_ms()).clamp(10, 60_000) as u64;
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(timeout))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloading the configuration file from the worker's main loop.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    sh.launcher_latch.store(0, Ordering::SeqCst);
    // SIGTERM: the postmaster restarts a worker that exits with 1 (after the
    // restart time registered above) and never one that exits with 0, so a
    // launcher ended by `pg_terminate_backend` would leave every later job
    // queued until the server restarted. At shutdown nothing is restarted.
    // SAFETY: proc_exit runs the exit callbacks and exits the process; nothing
    // of this function's stack is used afterwards.
    unsafe { pg_sys::proc_exit(1) };
}
