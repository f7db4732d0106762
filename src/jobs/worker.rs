//! A pool worker ("arrw job worker"): connected to one database, it requeues jobs
//! orphaned by dead workers, then claims and runs queued jobs until none is due,
//! and exits.
//!
//! Crash safety rests on two things:
//! - a job's state and its resume point (`checkpoint`) change only in committed
//!   transactions, the resume point in the same transaction as the work it covers;
//! - while a worker runs a job it holds a session-level advisory lock on the job
//!   (lock method USER, so transaction aborts keep it; process exit, including a
//!   crash, drops it). A `running` job whose lock can be taken has no live worker.
//!
//! The worker connects as the bootstrap superuser for arrw's own bookkeeping and
//! runs everything the job does as the job's owner inside a security-restricted
//! operation (`spi::as_role`).

use super::args::{self, Kind};
use super::shmem::{self, Slot};
use super::{kinds, notify, spi};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// SIGTERM received: finish the current batch, requeue the job, exit.
pub static GOT_SIGTERM: AtomicBool = AtomicBool::new(false);
/// The worker is inside one long statement (REINDEX, export): SIGTERM cancels it.
pub static IN_LONG_STATEMENT: AtomicBool = AtomicBool::new(false);

static mut WORKER_USER: (pg_sys::Oid, i32) = (pg_sys::InvalidOid, 0);

unsafe extern "C" {
    fn __errno_location() -> *mut i32;
}

#[pg_guard]
unsafe extern "C-unwind" fn on_sigterm(_signal: i32) {
    // SAFETY: an async-signal-safe handler like PostgreSQL's own: it saves errno,
    // sets flags (sig_atomic_t globals and atomics) and the process latch.
    unsafe {
        let errno = *__errno_location();
        GOT_SIGTERM.store(true, Ordering::SeqCst);
        if IN_LONG_STATEMENT.load(Ordering::SeqCst) {
            pg_sys::InterruptPending = 1;
            pg_sys::QueryCancelPending = 1;
        }
        pg_sys::SetLatch(pg_sys::MyLatch);
        *__errno_location() = errno;
    }
}

/// What became of one attempt at a job.
pub enum Outcome {
    Succeeded(Option<String>),
    Cancelled,
    /// Stopped by SIGTERM: back to the queue, the attempt not counted.
    Requeue,
    Failed {
        message: String,
        code: PgSqlErrorCode,
    },
}

/// A claimed job.
pub struct Job {
    pub id: i64,
    pub id_text: String,
    pub kind: Kind,
    pub args: String,
    pub owner: pg_sys::Oid,
    pub search_path: String,
    pub attempts: i32,
    pub max_attempts: i32,
}

/// What the job code needs from the worker.
pub struct Ctx<'a> {
    pub job: &'a Job,
    pub slot: &'a Slot,
}

impl Ctx<'_> {
    /// Runs `f` as the job's owner (security-restricted, owner's search path).
    pub fn as_owner<R>(&self, f: impl FnOnce() -> R) -> R {
        spi::as_role(self.job.owner, &self.job.search_path, true, f)
    }

    /// Between batches: has the job been asked to stop (SIGTERM, cancel_job)?
    pub fn stop(&self) -> Option<Outcome> {
        if GOT_SIGTERM.load(Ordering::SeqCst) {
            return Some(Outcome::Requeue);
        }
        if self.slot.cancel.load(Ordering::SeqCst) == self.job.id {
            return Some(Outcome::Cancelled);
        }
        None
    }

    /// Inside a transaction: was cancel_job called (committed) for this job?
    pub fn cancel_requested(&self) -> bool {
        cancel_requested(&self.job.id_text)
    }

    /// Runs one statement of the job as its owner (see `as_owner`), with every
    /// constraint IMMEDIATE: a deferred constraint is then checked at the end of
    /// the statement, inside the security-restricted operation (PostgreSQL refuses
    /// to queue deferred triggers there), and since each batch transaction runs one
    /// statement, that is when a deferred check would have run anyway. A violation
    /// fails the batch like any other error.
    pub fn run_as_owner(&self, sql: &str) -> u64 {
        self.as_owner(|| {
            spi::exec("SET CONSTRAINTS ALL IMMEDIATE", &[]);
            spi::exec(sql, &[])
        })
    }

    /// Records progress (0..1) and the resume point, in the current transaction.
    pub fn progress(&self, progress: f64, checkpoint: Option<&str>) {
        spi::exec(
            "UPDATE arrw.job SET progress = $2::float8, checkpoint = coalesce($3::jsonb, checkpoint) \
             WHERE id = $1::bigint",
            &[Some(&self.job.id_text), Some(&progress.clamp(0.0, 1.0).to_string()), checkpoint],
        );
    }

    /// The job's saved resume point (JSON text), if any.
    pub fn checkpoint_field(&self, path: &str) -> Option<String> {
        spi::one(
            "SELECT checkpoint #>> $2::text[] FROM arrw.job WHERE id = $1::bigint",
            &[Some(&self.job.id_text), Some(&format!("{{{path}}}"))],
        )
    }
}

/// Runs `f`; if it raises an ERROR (or panics), aborts the current transaction,
/// restores the worker's identity and search path, and returns the error.
pub fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, Box<CaughtError>> {
    let r = PgTryBuilder::new(std::panic::AssertUnwindSafe(move || Ok(f())))
        .catch_others(|e| Err(Box::new(e)))
        .execute();
    if r.is_err() {
        IN_LONG_STATEMENT.store(false, Ordering::SeqCst);
        // Restoring the user matters: an abort after REINDEX CONCURRENTLY's internal
        // commits would leave the job owner's id in place.
        // SAFETY: error recovery as in PostgreSQL's own background workers: abort
        // whatever transaction is open (a no-op when idle), then restore the user.
        unsafe {
            pg_sys::AbortCurrentTransaction();
            let (uid, ctx) = WORKER_USER;
            spi::set_user_and_context(uid, ctx);
            pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        }
        spi::set_search_path(spi::SAFE_SEARCH_PATH, pg_sys::GucAction::GUC_ACTION_SET);
    }
    r
}

/// The message (with detail) and SQLSTATE of a caught error.
pub fn describe(e: &CaughtError) -> (String, PgSqlErrorCode) {
    let report = match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    let mut msg = report.message().to_string();
    if let Some(d) = report.detail() {
        msg.push_str(&format!(" ({d})"));
    }
    (msg, report.sql_error_code())
}

fn job_locktag(id: i64) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        // SAFETY: reading a backend global.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: (id >> 32) as u32,
        locktag_field3: id as u32,
        // Distinct from the 1 and 2 the SQL advisory-lock functions use.
        locktag_field4: 0x6a62,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Tries to lock job `id` without waiting: for the session (a worker running it) or
/// the transaction (checking whether anyone runs it).
pub fn try_lock_job(id: i64, session: bool) -> bool {
    let tag = job_locktag(id);
    // SAFETY: a valid locktag; dontWait = true never sleeps.
    let r = unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, session, true) };
    r != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

fn unlock_job(id: i64) {
    let tag = job_locktag(id);
    // SAFETY: releases a session lock this process may hold (a no-op with a WARNING
    // if it does not, which cannot happen on the paths calling this).
    unsafe { pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, true) };
}

/// Entry point of a pool worker (see `launcher`): `slot` is its index.
pub fn main(slot_idx: usize) {
    // SAFETY: handlers are installed before pgrx unblocks signals below.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(on_sigterm));
    }
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    let Some(sh) = shmem::shared() else { return };
    let Some(slot) = sh.slots().get(slot_idx) else {
        return;
    };
    let dboid: u32 = BackgroundWorker::get_extra().parse().unwrap_or(0);
    // SAFETY: reading a backend global.
    slot.pid
        .store(unsafe { pg_sys::MyProcPid }, Ordering::SeqCst);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    // SAFETY: written once, before any job runs; read by `guarded`.
    unsafe { WORKER_USER = spi::user_and_context() };

    let ready = guarded(|| {
        spi::xact(|| {
            spi::set_search_path(spi::SAFE_SEARCH_PATH, pg_sys::GucAction::GUC_ACTION_SET);
            spi::flag(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'arrw') \
                    AND to_regclass('arrw.job') IS NOT NULL",
                &[],
            )
        })
    });
    if !matches!(ready, Ok(true)) {
        slot.pid.store(0, Ordering::SeqCst);
        return;
    }
    if let Err(e) = guarded(|| spi::xact(recover_orphans)) {
        log(&format!(
            "requeueing orphaned jobs failed: {}",
            describe(&e).0
        ));
    }
    let db = pg_sys::Oid::from(dboid);
    loop {
        if GOT_SIGTERM.load(Ordering::SeqCst) {
            break;
        }
        // SAFETY: ConfigReloadPending is set by pgrx's SIGHUP handler.
        unsafe {
            if pg_sys::ConfigReloadPending != 0 {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
        }
        match guarded(|| spi::xact(|| claim(sh, slot, db))) {
            Ok(Some(job)) => {
                if !run_one(&job, slot, sh, db) {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                log(&format!("claiming a job failed: {}", describe(&e).0));
                break;
            }
        }
    }
    slot.pid.store(0, Ordering::SeqCst);
}

fn log(msg: &str) {
    ereport!(
        LOG,
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        format!("arrw job worker: {msg}")
    );
}

/// Has cancellation of job `id` been requested (and committed)? Requests live in
/// `arrw.job_cancel`, not in the job's row, so that cancel_job never locks a job's
/// row in the caller's transaction (a worker updating it would wait for that
/// transaction to end).
pub fn cancel_requested(id: &str) -> bool {
    spi::flag(
        "SELECT EXISTS (SELECT 1 FROM arrw.job_cancel WHERE job_id = $1::bigint)",
        &[Some(id)],
    )
}

/// Requeues (or fails, after max_attempts) every `running` job no live worker
/// holds; a job whose cancellation was requested is cancelled instead.
fn recover_orphans() {
    let rows = spi::query(
        "SELECT id, kind, attempts >= max_attempts, \
                EXISTS (SELECT 1 FROM arrw.job_cancel c WHERE c.job_id = j.id) \
         FROM arrw.job j WHERE state = 'running'",
        &[],
    );
    for r in rows.rows {
        let id_text = r[0].clone().unwrap_or_default();
        let Ok(id) = id_text.parse::<i64>() else {
            continue;
        };
        if !try_lock_job(id, false) {
            continue; // a live worker runs it
        }
        let kind = r[1].clone().unwrap_or_default();
        let (sql, state) = if r[3].as_deref() == Some("t") {
            (
                "UPDATE arrw.job SET state = 'cancelled', finished_at = now() \
                 WHERE id = $1::bigint AND state = 'running'",
                "cancelled",
            )
        } else if r[2].as_deref() == Some("t") {
            (
                "UPDATE arrw.job SET state = 'failed', finished_at = now(), \
                 error = 'the worker running the job stopped (server crash or restart) on its last attempt' \
                 WHERE id = $1::bigint AND state = 'running'",
                "failed",
            )
        } else {
            (
                "UPDATE arrw.job SET state = 'queued', worker_pid = NULL \
                 WHERE id = $1::bigint AND state = 'running'",
                "queued",
            )
        };
        if spi::exec(sql, &[Some(&id_text)]) == 1 {
            log(&format!("job {id} ({kind}) lost its worker; now {state}"));
            notify::state_changed(&id_text, &kind, state);
        }
    }
}

/// Claims the next due job of this database (in the caller's transaction), after
/// recording as cancelled the queued jobs whose cancellation was requested.
fn claim(sh: &shmem::Shared, slot: &Slot, db: pg_sys::Oid) -> Option<Job> {
    spi::exec(
        "UPDATE arrw.job SET state = 'cancelled', finished_at = coalesce(\
                (SELECT min(requested_at) FROM arrw.job_cancel c WHERE c.job_id = job.id), now()) \
         WHERE id IN (SELECT id FROM arrw.job j WHERE state = 'queued' \
                        AND EXISTS (SELECT 1 FROM arrw.job_cancel c WHERE c.job_id = j.id) \
                      FOR UPDATE SKIP LOCKED)",
        &[],
    );
    let r = spi::query(
        "SELECT id, kind, args::text, owner::oid, search_path, attempts, max_attempts FROM arrw.job j \
         WHERE state = 'queued' AND run_after <= now() \
           AND NOT EXISTS (SELECT 1 FROM arrw.job_cancel c WHERE c.job_id = j.id) \
         ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        &[],
    );
    let Some(row) = r.rows.into_iter().next() else {
        // Nothing due: tell the launcher when the next retry is.
        if let Some(ms) = spi::one(
            "SELECT (extract(epoch FROM min(run_after)) * 1000)::bigint FROM arrw.job j WHERE state = 'queued' \
               AND NOT EXISTS (SELECT 1 FROM arrw.job_cancel c WHERE c.job_id = j.id)",
            &[],
        ) {
            let due = ms.parse::<i64>().unwrap_or(0).max(shmem::now_ms() + 500);
            sh.mark(db, due);
        }
        return None;
    };
    let s = |i: usize| row[i].clone().unwrap_or_default();
    let id: i64 = s(0).parse().unwrap_or(0);
    if !try_lock_job(id, true) {
        sh.mark(db, shmem::now_ms() + 1000);
        return None;
    }
    let kind = Kind::parse(&s(1))?;
    spi::exec(
        "UPDATE arrw.job SET state = 'running', attempts = attempts + 1, worker_pid = pg_backend_pid(), \
         started_at = now(), finished_at = NULL WHERE id = $1::bigint",
        &[Some(&s(0))],
    );
    notify::state_changed(&s(0), kind.name(), "running");
    slot.job_id.store(id, Ordering::SeqCst);
    if spi::flag(
        "SELECT EXISTS (SELECT 1 FROM arrw.job j WHERE state = 'queued' AND run_after <= now() AND id <> $1::bigint \
           AND NOT EXISTS (SELECT 1 FROM arrw.job_cancel c WHERE c.job_id = j.id))",
        &[Some(&s(0))],
    ) {
        sh.mark(db, shmem::now_ms());
    }
    Some(Job {
        id,
        id_text: s(0),
        kind,
        args: s(2),
        owner: pg_sys::Oid::from(s(3).parse::<u32>().unwrap_or(0)),
        search_path: s(4),
        attempts: s(5).parse::<i32>().unwrap_or(1) + 1,
        max_attempts: s(6).parse().unwrap_or(3),
    })
}

/// Runs one claimed job and records its outcome. Returns false if the worker
/// should stop taking jobs.
fn run_one(job: &Job, slot: &Slot, sh: &shmem::Shared, db: pg_sys::Oid) -> bool {
    let activity = std::ffi::CString::new(format!("arrw job {}: {}", job.id, job.kind.name()))
        .unwrap_or_default();
    // SAFETY: a NUL-terminated string; pgstat copies it.
    unsafe {
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, activity.as_ptr())
    };
    let ctx = Ctx { job, slot };
    let outcome = match guarded(|| kinds::run(&ctx)) {
        Ok(o) => o,
        Err(e) => {
            let (message, code) = describe(&e);
            if matches!(job.kind, Kind::IndexRebuild | Kind::IndexOptimize) {
                if let Err(e2) = guarded(|| kinds::drop_leftover_indexes(&ctx)) {
                    log(&format!(
                        "job {}: dropping leftover indexes failed: {}",
                        job.id,
                        describe(&e2).0
                    ));
                }
            }
            if GOT_SIGTERM.load(Ordering::SeqCst) {
                Outcome::Requeue
            } else if code == PgSqlErrorCode::ERRCODE_QUERY_CANCELED
                && (slot.cancel.load(Ordering::SeqCst) == job.id
                    || matches!(guarded(|| spi::xact(|| ctx.cancel_requested())), Ok(true)))
            {
                Outcome::Cancelled
            } else {
                Outcome::Failed { message, code }
            }
        }
    };
    // Hold interrupts while recording the outcome: a late cancel request must not
    // abort the bookkeeping. Clear any pending one afterwards.
    // SAFETY: HOLD_INTERRUPTS / RESUME_INTERRUPTS on backend globals; ERROR resets
    // the holdoff count to 0, which the resume below respects.
    unsafe {
        pg_sys::InterruptHoldoffCount += 1;
        pg_sys::QueryCancelPending = 0;
    }
    let finished = guarded(|| spi::xact(|| finish(job, &outcome, sh, db)));
    if let Err(e) = &finished {
        log(&format!(
            "recording the outcome of job {} failed: {}",
            job.id,
            describe(e).0
        ));
        unlock_job(job.id);
        // The job is still `running`: the next worker here requeues it.
        sh.mark(db, shmem::now_ms() + 1000);
    }
    slot.job_id.store(0, Ordering::SeqCst);
    let _ = slot
        .cancel
        .compare_exchange(job.id, 0, Ordering::SeqCst, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe {
        pg_sys::QueryCancelPending = 0;
        pg_sys::InterruptHoldoffCount = pg_sys::InterruptHoldoffCount.saturating_sub(1);
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
    }
    finished.is_ok() && !matches!(outcome, Outcome::Requeue)
}

/// Errors retrying cannot fix.
fn permanent(code: PgSqlErrorCode) -> bool {
    use PgSqlErrorCode::*;
    matches!(
        code,
        ERRCODE_INSUFFICIENT_PRIVILEGE
            | ERRCODE_INVALID_PARAMETER_VALUE
            | ERRCODE_SYNTAX_ERROR
            | ERRCODE_FEATURE_NOT_SUPPORTED
            | ERRCODE_WRONG_OBJECT_TYPE
            | ERRCODE_UNDEFINED_OBJECT
    )
}

/// Records the outcome of an attempt (in the caller's transaction) and releases the
/// job's session lock before that transaction commits (the row lock taken by the
/// UPDATE keeps a concurrent orphan check from requeueing the job meanwhile).
///
/// Once cancel_job has returned true the job ends `cancelled` whatever became of
/// the attempt, unless it succeeded: a failure is not retried and a shutdown does
/// not requeue it.
fn finish(job: &Job, outcome: &Outcome, sh: &shmem::Shared, db: pg_sys::Oid) {
    let id = Some(job.id_text.as_str());
    let kind = job.kind.name();
    let cancelled = match outcome {
        Outcome::Failed { message, .. } if cancel_requested(&job.id_text) => {
            log(&format!(
                "job {} ({kind}) failed after its cancellation was requested: {message}",
                job.id
            ));
            Some(Some(message.as_str()))
        }
        Outcome::Requeue if cancel_requested(&job.id_text) => Some(None),
        _ => None,
    };
    if let Some(error) = cancelled {
        spi::exec(
            "UPDATE arrw.job SET state = 'cancelled', finished_at = now(), \
             error = coalesce($2, error) WHERE id = $1::bigint",
            &[id, error],
        );
        notify::state_changed(&job.id_text, kind, "cancelled");
        unlock_job(job.id);
        return;
    }
    let state = match outcome {
        Outcome::Succeeded(result) => {
            spi::exec(
                "UPDATE arrw.job SET state = 'succeeded', progress = 1, finished_at = now(), error = NULL, \
                 result = coalesce($2::jsonb, result) WHERE id = $1::bigint",
                &[id, result.as_deref()],
            );
            "succeeded"
        }
        Outcome::Cancelled => {
            spi::exec(
                "UPDATE arrw.job SET state = 'cancelled', finished_at = now() WHERE id = $1::bigint",
                &[id],
            );
            "cancelled"
        }
        Outcome::Requeue => {
            spi::exec(
                "UPDATE arrw.job SET state = 'queued', attempts = greatest(attempts - 1, 0), worker_pid = NULL \
                 WHERE id = $1::bigint",
                &[id],
            );
            sh.mark(db, shmem::now_ms());
            "queued"
        }
        Outcome::Failed { message, code } => {
            log(&format!(
                "job {} ({kind}) attempt {} of {} failed: {message}",
                job.id, job.attempts, job.max_attempts
            ));
            if permanent(*code) || job.attempts >= job.max_attempts {
                spi::exec(
                    "UPDATE arrw.job SET state = 'failed', finished_at = now(), error = $2 WHERE id = $1::bigint",
                    &[id, Some(message)],
                );
                "failed"
            } else {
                let base = super::RETRY_DELAY_MS.get().max(0) as i64;
                let delay = base
                    .saturating_mul(1i64 << (job.attempts - 1).clamp(0, 20))
                    .min(3_600_000);
                spi::exec(
                    "UPDATE arrw.job SET state = 'queued', error = $2, worker_pid = NULL, \
                     run_after = now() + $3::bigint * interval '1 millisecond' WHERE id = $1::bigint",
                    &[id, Some(message), Some(&delay.to_string())],
                );
                sh.mark(db, shmem::now_ms() + delay);
                "queued"
            }
        }
    };
    notify::state_changed(&job.id_text, kind, state);
    unlock_job(job.id);
}

/// Checks, before an attempt, that the owner still exists and may run the job;
/// returns the parsed arguments.
pub fn prepare(ctx: &Ctx) -> (args::Spec, args::Checked) {
    let owner = ctx.job.owner.to_u32().to_string();
    if !spi::flag(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE oid = $1::oid)",
        &[Some(&owner)],
    ) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "the role that submitted job {} (OID {owner}) no longer exists",
                ctx.job.id
            )
        );
    }
    let spec = args::parse(ctx.job.kind, &ctx.job.args);
    let checked = ctx.as_owner(|| args::check(ctx.job.kind, &spec));
    (spec, checked)
}
