//! A pool worker ("arrw job worker"): connected to one database, it requeues jobs
//! orphaned by dead workers, then claims and runs queued jobs until none is due,
//! and exits.
//!
//! Crash safety rests on two things:
//! - a job's state and its resume point (`checkpoint`) change only in committed
//!   transactions, the resume point in the same transaction as the work it covers;
//! - while a worker runs a job it holds a session-level lock on the job (kept
//!   across its transactions; process exit, including a crash, drops it). A
//!   `running` job whose lock can be taken has no live worker. The lock is two
//!   locks on one tag, one in each lock method, and a job counts as free only
//!   when both can be taken (the advisory-lock method, USER, first):
//!   - the default method's: the job's own SQL runs in this session, and
//!     `pg_advisory_unlock_all()` in a trigger or function it calls releases
//!     every USER session lock, after which the next worker found the job
//!     orphaned and ran it a second time beside the first;
//!   - the USER method's: a transaction abort releases the default method's
//!     session locks, and while [`guarded`] recovered from an error (before it
//!     took the lock again) a worker starting in the database found the job
//!     orphaned, requeued or cancelled it, and the first worker's outcome then
//!     overwrote the row and released a lock it no longer held (a WARNING).
//!
//!   Only a job whose SQL called `pg_advisory_unlock_all()` and then failed
//!   is without either lock for a moment; `guarded` takes both again at once,
//!   and the outcome is written only to a row still `running` in this worker.
//!
//! The worker connects as the bootstrap superuser for arrw's own bookkeeping and
//! runs everything the job does as the job's owner, as current and session
//! user, inside a security-restricted operation (`spi::as_role_with`,
//! `spi::toplevel_utility`).

use super::args::{JobKind, KINDS};
use super::job::{cancel_requested, Ctx, Job, Outcome, State, GOT_SIGTERM, IN_LONG_STATEMENT};
use super::shmem::{self, Slot};
use super::{kinds, notify, spi};
use crate::errors::{describe, sqlstate_class};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::sync::atomic::Ordering;

static mut WORKER_USER: (pg_sys::Oid, i32) = (pg_sys::InvalidOid, 0);

thread_local! {
    /// The job whose session lock this worker holds (see [`guarded`]).
    static HELD: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

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

/// Runs `f`; if it raises an ERROR (or panics), aborts the current transaction,
/// restores the worker's identity and search path, and returns the error.
pub fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, Box<CaughtError>> {
    let r = PgTryBuilder::new(std::panic::AssertUnwindSafe(move || Ok(f())))
        .catch_others(|e| Err(Box::new(e)))
        .execute();
    if r.is_err() {
        IN_LONG_STATEMENT.store(false, Ordering::SeqCst);
        // Restoring the user matters: an abort after REINDEX CONCURRENTLY's internal
        // commits would leave the job owner's id in place, as current user and
        // as session user (`spi::toplevel_utility` sets that for the session;
        // an abort reverts only what its own transaction set).
        // SAFETY: error recovery as in PostgreSQL's own background workers: abort
        // whatever transaction is open (a no-op when idle), then restore the user.
        let (uid, ctx) = unsafe {
            pg_sys::AbortCurrentTransaction();
            let (uid, ctx) = WORKER_USER;
            spi::set_user_and_context(uid, ctx);
            pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            (uid, ctx)
        };
        // SAFETY: reading a backend global.
        if unsafe { pg_sys::GetSessionUserId() } != uid {
            // Outside the restricted operation now (above); this makes the
            // worker's login role the session and current user again.
            spi::reset_session_user();
            spi::set_user_and_context(uid, ctx);
            spi::check_session_user(uid);
        }
        spi::set_search_path(spi::SAFE_SEARCH_PATH, pg_sys::GucAction::GUC_ACTION_SET);
        // An abort releases the default lock method's session locks too
        // (ProcReleaseLocks), so that half of the job's lock is taken again at
        // once: the job is still this worker's, which records its outcome next.
        if let Some(id) = HELD.with(|h| h.get()) {
            // The USER lock survives the abort; the default one is retaken
            // (nobody else can have taken it: checkers try USER first).
            let mut lost = false;
            for method in [pg_sys::USER_LOCKMETHOD, pg_sys::DEFAULT_LOCKMETHOD] {
                let tag = job_locktag(id, method);
                if !lock_held(&tag) && !lock(&tag, true) && method == pg_sys::DEFAULT_LOCKMETHOD {
                    lost = true;
                }
            }
            if lost {
                unlock_job(id);
                log(&format!(
                    "job {id}: another worker took the job while this one recovered from an error"
                ));
            }
        }
    }
    r
}

fn job_locktag(id: i64, method: u32) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        // SAFETY: reading a backend global.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: (id >> 32) as u32,
        locktag_field3: id as u32,
        // Distinct from the 1 and 2 the SQL advisory-lock functions use.
        locktag_field4: 0x6a62,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        // One in each method (see the module comment): SQL can release every
        // USER session lock of its session (`pg_advisory_unlock_all`), and a
        // transaction abort every DEFAULT one.
        locktag_lockmethodid: method as u8,
    }
}

/// Tries to lock job `id` without waiting: for the session (a worker running it) or
/// the transaction (checking whether anyone runs it). Both locks, the USER
/// method's first, so that a checker never holds the default one of a job whose
/// worker keeps its USER lock across an abort (and retakes the default one).
pub fn try_lock_job(id: i64, session: bool) -> bool {
    let user = job_locktag(id, pg_sys::USER_LOCKMETHOD);
    if !lock(&user, session) {
        return false;
    }
    if !lock(&job_locktag(id, pg_sys::DEFAULT_LOCKMETHOD), session) {
        // SAFETY: the lock just taken above, in the same mode and scope.
        unsafe { pg_sys::LockRelease(&user, pg_sys::ExclusiveLock as i32, session) };
        return false;
    }
    true
}

fn lock(tag: &pg_sys::LOCKTAG, session: bool) -> bool {
    // SAFETY: a valid locktag; dontWait = true never sleeps.
    let r = unsafe { pg_sys::LockAcquire(tag, pg_sys::ExclusiveLock as i32, session, true) };
    r != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

fn lock_held(tag: &pg_sys::LOCKTAG) -> bool {
    // SAFETY: a valid locktag; a lookup in this backend's lock table.
    unsafe { pg_sys::LockHeldByMe(tag, pg_sys::ExclusiveLock as i32) }
}

/// Releases whichever of the job's two session locks this process still holds
/// (the job's SQL may have released the USER one; releasing a lock not held is
/// a WARNING).
fn unlock_job(id: i64) {
    HELD.with(|h| h.set(None));
    for method in [pg_sys::DEFAULT_LOCKMETHOD, pg_sys::USER_LOCKMETHOD] {
        let tag = job_locktag(id, method);
        if lock_held(&tag) {
            // SAFETY: a session lock this process holds (checked just above).
            unsafe { pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, true) };
        }
    }
}

/// Entry point of a pool worker, started by the launcher (`launcher::start_worker`
/// names this symbol) with its slot index as the argument and its database's OID
/// as the extra data.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn arrw_job_worker_main(arg: pg_sys::Datum) {
    main(arg.value());
}

fn main(slot_idx: usize) {
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
            spi::pin_worker_transactions();
            // The installed version and the database's name, when arrw and
            // its queue exist (a version has no space).
            spi::one(
                "SELECT e.extversion || ' ' || current_database() FROM pg_extension e \
                 WHERE e.extname = 'arrw' AND to_regclass('arrw.job') IS NOT NULL",
                &[],
            )
        })
    });
    // A database whose arrw is another version than this library's (the
    // library replaced, `ALTER EXTENSION arrw UPDATE` not run yet): the
    // worker's SQL reads this version's tables, and against 0.1.0's every
    // claim failed ("column c.announced_kind does not exist") once a second,
    // forever, while the jobs stayed queued (hunt-117). Say what to do, and
    // leave them to the launcher's next rescan.
    let ready = ready.map(|v| match v {
        Some(v) => {
            let (version, db) = v.split_once(' ').unwrap_or((&v, ""));
            if version == env!("CARGO_PKG_VERSION") {
                return true;
            }
            log(&format!(
                "database \"{db}\" has arrw {version} installed, and the server runs arrw {}: its \
                 queued jobs wait until ALTER EXTENSION arrw UPDATE",
                env!("CARGO_PKG_VERSION")
            ));
            // Look again in a minute: queued jobs then run within a minute
            // of the update, not at the launcher's ten-minute rescan
            // (hunt-119).
            sh.mark(pg_sys::Oid::from(dboid), shmem::now_ms() + 60_000);
            false
        }
        None => false,
    });
    // The launcher forgot the database's due time when it started this
    // worker: a worker that stops before it claims (a cancel or terminate
    // during this check, or a SIGTERM before the first claim) marks it due
    // again, or its queued jobs waited for the launcher's ten-minute rescan
    // (hunt-51). A database without arrw is not marked.
    let retry = || sh.mark(pg_sys::Oid::from(dboid), shmem::now_ms() + 1000);
    if !matches!(ready, Ok(true)) {
        if ready.is_err() {
            retry();
        }
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
    let mut claimed = false;
    loop {
        super::job::exit_if_postmaster_died();
        if GOT_SIGTERM.load(Ordering::SeqCst) {
            if !claimed {
                retry();
            }
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
                claimed = true;
                if !run_one(&job, slot, sh, db) {
                    break;
                }
                release_sql_session_locks();
            }
            Ok(None) => break,
            Err(e) => {
                log(&format!("claiming a job failed: {}", describe(&e).0));
                // The claim had locked its job (and `guarded` took the lock
                // again after the abort): release it, or it outlived this
                // process in the lock table and no worker could ever claim
                // the job, nor any queued behind it (a cancel of a worker
                // waiting inside its claim; hunt-47). Then wake the launcher
                // for the job, which is still queued.
                if let Some(id) = HELD.with(|h| h.get()) {
                    unlock_job(id);
                }
                sh.mark(db, shmem::now_ms() + 1000);
                break;
            }
        }
    }
    slot.pid.store(0, Ordering::SeqCst);
}

/// Between jobs: releases the session-level advisory locks the finished
/// job's SQL took (`pg_advisory_lock`). Process exit would release them; a
/// worker that goes on to the next job kept them, and a later job of another
/// role ran holding them (or could release them), while clients waiting for
/// them waited on (hunt-84). arrw's own lock on the finished job is released
/// by then; with a job still held (never, after `run_one`) nothing is done.
fn release_sql_session_locks() {
    if HELD.with(|h| h.get()).is_some() {
        return;
    }
    // SAFETY: releases this process's session locks of the advisory (USER)
    // lock method, which only SQL's advisory-lock functions and arrw's job
    // locks take, and this worker holds no job lock now (checked above).
    unsafe { pg_sys::LockReleaseSession(pg_sys::USER_LOCKMETHOD as pg_sys::LOCKMETHODID) };
}

fn log(msg: &str) {
    ereport!(
        LOG,
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        format!("arrw job worker: {msg}")
    );
}

/// Requeues (or fails, after max_attempts) every `running` job no live worker
/// holds; a job whose cancellation was requested is cancelled instead.
fn recover_orphans() {
    let rows = spi::query(
        &format!(
            "SELECT id, kind, attempts >= max_attempts, \
                    EXISTS (SELECT 1 FROM arrw.job_cancel c WHERE c.job_id = j.id), args->>'path' \
             FROM arrw.job j WHERE state = '{}'",
            State::Running
        ),
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
        let (state, set) = if r[3].as_deref() == Some("t") {
            (State::Cancelled, "finished_at = now()")
        } else if r[2].as_deref() == Some("t") {
            (
                State::Failed,
                "finished_at = now(), error_sqlstate = NULL, \
                 error = 'the worker running the job stopped (server crash or restart) on its last attempt'",
            )
        } else {
            (State::Queued, "worker_pid = NULL")
        };
        let sql = format!(
            "UPDATE arrw.job SET state = '{state}', {set} WHERE id = $1::bigint AND state = '{}'",
            State::Running
        );
        if spi::exec(&sql, &[Some(&id_text)]) == 1 {
            log(&format!("job {id} ({kind}) lost its worker; now {state}"));
            notify::state_changed(&id_text, &kind, state);
            if state != State::Queued {
                super::kinds::remove_leftovers(&kind, &id_text, r[4].as_deref());
            }
        }
    }
}

/// Claims the next due job of this database (in the caller's transaction), after
/// recording as cancelled the queued jobs whose cancellation was requested.
/// The SQL list of the kinds that walk their table's heap by block ranges,
/// `('batch_delete', 'batch_update')`, made from `JobKind::walks_table` (its
/// one home).
fn walkers() -> String {
    kinds_where(JobKind::walks_table)
}

/// The SQL list of the kinds `which` holds for, as `('a', 'b')`.
fn kinds_where(which: fn(JobKind) -> bool) -> String {
    let names: Vec<String> = KINDS
        .iter()
        .filter(|&&k| which(k))
        .map(|k| format!("'{}'", k.name()))
        .collect();
    format!("({})", names.join(", "))
}

/// The queued jobs (alias `j`) a worker may claim, due or not: not cancelled,
/// and not a job that walks its table (`batch_delete`, `batch_update`) while
/// another such job on the same table is in the middle of its walk: running,
/// or queued for a retry with a walk position saved (`end` in its resume
/// point; of two such, the older goes first). The walk covers the blocks the
/// table had when the job started, and the other job's updates move rows
/// past them or into blocks already walked: two such jobs on one 50,000-row
/// table, one after the other in the queue, ran side by side on the two
/// workers, and both succeeded having missed most of their rows (hunt-77);
/// a second one run while the first waited to retry left the first 68% of
/// its rows (hunt-82). The held-back job is claimed when the first ends (its
/// worker claims on).
///
/// Nor an index job (`index_rebuild`, `index_optimize`) while another index
/// job on an index of the same table (or partition tree, [`table_root`]) runs. Two `REINDEX CONCURRENTLY`s of one
/// table's indexes deadlock: the second waits for the table's lock holding a
/// snapshot, the first then waits for that snapshot to go, and the deadlock
/// check fails the one that did the work. Requeued 1–3 s later (an attempt
/// not counted), it failed the other one the same way, round after round: two
/// jobs on an index whose build took ~8 s ran for minutes and never ended
/// (hunt-128).
///
/// The tests are plain `NOT EXISTS` conditions of the query (the kinds inside
/// them), which the planner turns into anti-joins: one pass over the jobs.
/// Written as `NOT (walker AND EXISTS ...)` the walkers' test was a subplan
/// run per queued job, a scan of every job each time: with a few thousand
/// batch jobs queued a claim took seconds to minutes, and the queue nearly
/// stopped (hunt-100).
fn claimable() -> String {
    let walkers = walkers();
    let reindexers = kinds_where(JobKind::reindexes_concurrently);
    format!(
        "j.state = 'queued' \
         AND NOT EXISTS (SELECT 1 FROM arrw.job_cancel c WHERE c.job_id = j.id) \
         AND NOT EXISTS (\
              SELECT 1 FROM arrw.job r \
               WHERE j.kind IN {walkers} AND r.kind IN {walkers} AND r.id <> j.id \
                 AND r.checkpoint->>'rel_oid' = j.checkpoint->>'rel_oid' \
                 AND (r.state = 'running' \
                      OR (r.state = 'queued' AND r.checkpoint ? 'end' \
                          AND (NOT j.checkpoint ? 'end' OR r.id < j.id)))) \
         AND NOT EXISTS (\
              SELECT 1 FROM arrw.job r \
               WHERE j.kind IN {reindexers} AND r.kind IN {reindexers} AND r.id <> j.id \
                 AND {} = {} \
                 AND r.state = 'running')",
        table_root("r"),
        table_root("j"),
    )
}

/// SQL for the root of the partition tree the table of job `alias` (its
/// index's table, recorded at submit) is in, or that table: a job on a
/// partitioned index rebuilds its partitions' indexes too, and one on a
/// partition's index beside it deadlocked with it as two jobs on one table
/// did (hunt-131), so index jobs are kept apart by the tree.
fn table_root(alias: &str) -> String {
    let table = format!("({alias}.checkpoint->>'table_oid')::pg_catalog.oid");
    format!(
        "coalesce(pg_catalog.pg_partition_root({table}::pg_catalog.regclass)::pg_catalog.oid, {table})"
    )
}

/// Takes, until the claim's transaction ends, the lock that orders the claims
/// of jobs walking table `rel`, or of index jobs on its indexes (see
/// [`claimable`]; a batch job and an index job on one table may run together,
/// and taking one lock for both only makes one claim wait for the other's).
fn lock_claimed_table(rel: u32) {
    let tag = pg_sys::LOCKTAG {
        // SAFETY: reading a backend global.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: rel,
        locktag_field3: 0,
        // Distinct from the jobs' own tags (0x6a62) and from the 1 and 2 the
        // SQL advisory-lock functions use.
        locktag_field4: 0x6a63,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    // SAFETY: a valid locktag; a transaction-scoped lock that may wait (for
    // another worker's claim transaction, which holds no lock this one has).
    unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, false) };
}

fn claim(sh: &shmem::Shared, slot: &Slot, db: pg_sys::Oid) -> Option<Job> {
    let (queued, running, cancelled) = (State::Queued, State::Running, State::Cancelled);
    let done = spi::query(
        &format!(
            "UPDATE arrw.job SET state = '{cancelled}', finished_at = coalesce(\
                    (SELECT min(requested_at) FROM arrw.job_cancel c WHERE c.job_id = job.id), now()) \
             WHERE id IN (SELECT id FROM arrw.job j WHERE state = '{queued}' \
                            AND EXISTS (SELECT 1 FROM arrw.job_cancel c WHERE c.job_id = j.id) \
                          FOR UPDATE SKIP LOCKED) \
             RETURNING id::text, kind, args->>'path', EXISTS (SELECT 1 FROM arrw.job_cancel c \
                       WHERE c.job_id = job.id AND c.announced_kind IS NOT NULL)"
        ),
        &[],
    );
    // Announced here, in the transaction that writes the row (so the feed's
    // event is `"origin":"arrw"`): cancel_job announces only a job its own
    // transaction submitted (recording its kind in `announced_kind`), which
    // is not announced twice; any other it cannot know still queued when its
    // request commits (api.rs `cancel`).
    for row in done.rows {
        if let (Some(id), Some(kind)) = (&row[0], &row[1]) {
            if row[3].as_deref() != Some("t") {
                notify::state_changed(id, kind, cancelled);
            }
            // A queued job may have had an attempt whose worker died.
            super::kinds::remove_leftovers(kind, id, row[2].as_deref());
        }
    }
    let r = spi::query(
        &format!(
            "SELECT id, kind, args::text, owner::oid, search_path, attempts, max_attempts, \
                    checkpoint->>'rel_oid', \
                    (SELECT string_agg(e.key || chr(31) || e.value, chr(30)) \
                       FROM jsonb_each_text(j.checkpoint->'settings') e), \
                    {} FROM arrw.job j \
             WHERE {} AND run_after <= now() \
             ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            table_root("j"),
            claimable()
        ),
        &[],
    );
    let Some(row) = r.rows.into_iter().next() else {
        // Nothing due: tell the launcher when the next retry is.
        if let Some(ms) = spi::one(
            &format!(
                "SELECT (extract(epoch FROM min(run_after)) * 1000)::bigint FROM arrw.job j \
                 WHERE {}",
                claimable()
            ),
            &[],
        ) {
            let due = ms.parse::<i64>().unwrap_or(0).max(shmem::now_ms() + 500);
            sh.mark(db, due);
        }
        return None;
    };
    let s = |i: usize| row[i].clone().unwrap_or_default();
    let id: i64 = s(0).parse().unwrap_or(0);
    let kind = JobKind::parse(&s(1))?;
    let table = if kind.walks_table() {
        row[7].as_deref()
    } else if kind.reindexes_concurrently() {
        row[9].as_deref()
    } else {
        None
    };
    if let Some(rel) = table.and_then(|r| r.parse::<u32>().ok()) {
        // Two workers may each have picked a batch job on this table (or
        // an index job on its indexes) before either committed its claim:
        // the second waits here for the first's claim to commit, then
        // sees it running.
        lock_claimed_table(rel);
        if !spi::flag(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM arrw.job j WHERE j.id = $1::bigint AND {})",
                claimable()
            ),
            &[Some(&s(0))],
        ) {
            return None;
        }
    }
    if !try_lock_job(id, true) {
        sh.mark(db, shmem::now_ms() + 1000);
        return None;
    }
    HELD.with(|h| h.set(Some(id)));
    spi::exec(
        &format!(
            "UPDATE arrw.job SET state = '{running}', attempts = attempts + 1, worker_pid = pg_backend_pid(), \
             started_at = now(), finished_at = NULL WHERE id = $1::bigint"
        ),
        &[Some(&s(0))],
    );
    notify::state_changed(&s(0), kind.name(), running);
    slot.job_id.store(id, Ordering::SeqCst);
    // The launcher forgot this database's due time when it started a worker
    // here: tell it when the next queued job is due, now or later (a retry
    // falling due while this job runs waited for it to end, with workers
    // free; hunt-51).
    if let Some(ms) = spi::one(
        &format!(
            "SELECT (extract(epoch FROM min(run_after)) * 1000)::bigint FROM arrw.job j \
             WHERE {} AND id <> $1::bigint",
            claimable()
        ),
        &[Some(&s(0))],
    ) {
        sh.mark(db, ms.parse::<i64>().unwrap_or(0).max(shmem::now_ms()));
    }
    Some(Job {
        id,
        id_text: s(0),
        kind,
        args: s(2),
        owner: pg_sys::Oid::from(s(3).parse::<u32>().unwrap_or(0)),
        search_path: s(4),
        // name US value RS name US value ... (the query above; no setting
        // name or value holds either control character).
        settings: s(8)
            .split('\u{1e}')
            .filter_map(|kv| kv.split_once('\u{1f}'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
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
            if job.kind.reindexes_concurrently() && HELD.with(|h| h.get()) == Some(job.id) {
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
            } else if code == PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED
                && job.kind.reindexes_concurrently()
            {
                // Another index job on the same table: 19 of 28 such jobs run
                // two at a time lost an attempt this way, some all three.
                Outcome::Contended
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
    // A worker that lost the job's lock while it recovered from an error (see
    // `guarded`) leaves the row to whoever took it.
    let finished = if HELD.with(|h| h.get()) == Some(job.id) {
        guarded(|| spi::xact(|| finish(job, &outcome, sh, db)))
    } else {
        Ok(())
    };
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

/// Errors retrying cannot fix: every SQLSTATE but those of the classes that
/// name a passing condition (08 connection exception, 40 transaction
/// rollback: serialization failures and deadlocks, 53 insufficient
/// resources, 57 operator intervention, 58 system error: I/O, a file not
/// there yet; 72 snapshot too old; XX internal error), of a lock or object
/// busy now (55P03, 55006), and of errors the job's own code raises (P0: a
/// PL/pgSQL `RAISE` in a trigger or function says nothing of whether it
/// passes, and was retried before). A data error (22: a bad value in an
/// imported row, a division by zero), a constraint violated (23) or a
/// statement that does not type-check (42) fails the same way on every
/// attempt; they were retried `max_attempts` times.
fn permanent(code: PgSqlErrorCode) -> bool {
    use PgSqlErrorCode::*;
    if matches!(code, ERRCODE_LOCK_NOT_AVAILABLE | ERRCODE_OBJECT_IN_USE) {
        return false;
    }
    !matches!(
        &sqlstate_class(code),
        b"08" | b"40" | b"53" | b"57" | b"58" | b"72" | b"P0" | b"XX"
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
    // A job's one long statement (an index job's REINDEX, an export's COPY)
    // runs to its end even when the postmaster dies meanwhile: its outcome is
    // not recorded then (it was committed as succeeded with no server
    // running; hunt-119); the next start requeues the job.
    super::job::exit_if_postmaster_died();
    let kind = job.kind.name();
    // The SQLSTATE beside a failure's message (`error_sqlstate`).
    let sqlstate = match outcome {
        Outcome::Failed { code, .. } => Some(crate::errors::sqlstate_text(*code)),
        _ => None,
    };
    let cancelled = match outcome {
        Outcome::Failed { message, .. } if cancel_requested(&job.id_text) => {
            log(&format!(
                "job {} ({kind}) failed after its cancellation was requested: {message}",
                job.id
            ));
            Some(Some(message.as_str()))
        }
        Outcome::Requeue | Outcome::Contended if cancel_requested(&job.id_text) => Some(None),
        _ => None,
    };
    // The new state, the other columns it sets (parameters $2, ...), and when the
    // launcher should look at this database again.
    let delay_text;
    let (state, set, params, wake_at): (State, &str, Vec<Option<&str>>, Option<i64>) = match (
        cancelled, outcome,
    ) {
        (Some(error), _) => (
            State::Cancelled,
            "finished_at = now(), \
             error_sqlstate = CASE WHEN $2 IS NULL THEN error_sqlstate ELSE $3 END, \
             error = coalesce($2, error)",
            vec![error, sqlstate.as_deref()],
            None,
        ),
        (None, Outcome::Succeeded(result)) => (
            State::Succeeded,
            "progress = 1, finished_at = now(), error = NULL, error_sqlstate = NULL, \
             result = coalesce($2::jsonb, result)",
            vec![result.as_deref()],
            None,
        ),
        (None, Outcome::Cancelled) => (State::Cancelled, "finished_at = now()", vec![], None),
        (None, Outcome::Requeue) => (
            State::Queued,
            "attempts = greatest(attempts - 1, 0), worker_pid = NULL",
            vec![],
            Some(shmem::now_ms()),
        ),
        // The other job's REINDEX CONCURRENTLY goes on; try again once it is
        // likely done (a second or two, spread so two losers do not meet again).
        (None, Outcome::Contended) => {
            log(&format!(
                    "job {} ({kind}) deadlocked with another session on its table (a REINDEX or DDL of it); requeued",
                    job.id
                ));
            (
                State::Queued,
                "attempts = greatest(attempts - 1, 0), worker_pid = NULL, \
                 run_after = now() + (1000 + random() * 2000) * interval '1 millisecond'",
                vec![],
                Some(shmem::now_ms() + 1000),
            )
        }
        (None, Outcome::Failed { message, code }) => {
            log(&format!(
                "job {} ({kind}) attempt {} of {} failed: {message}",
                job.id, job.attempts, job.max_attempts
            ));
            if permanent(*code) || job.attempts >= job.max_attempts {
                (
                    State::Failed,
                    "finished_at = now(), error = $2, error_sqlstate = $3",
                    vec![Some(message.as_str()), sqlstate.as_deref()],
                    None,
                )
            } else {
                let base = super::RETRY_DELAY_MS.get().max(0) as i64;
                let delay = base
                    .saturating_mul(1i64 << (job.attempts - 1).clamp(0, 20))
                    .min(3_600_000);
                delay_text = delay.to_string();
                (
                    State::Queued,
                    "error = $2, error_sqlstate = $4, worker_pid = NULL, \
                         run_after = now() + $3::bigint * interval '1 millisecond'",
                    vec![
                        Some(message.as_str()),
                        Some(delay_text.as_str()),
                        sqlstate.as_deref(),
                    ],
                    Some(shmem::now_ms() + delay),
                )
            }
        }
    };
    let mut all = vec![Some(job.id_text.as_str())];
    all.extend(params);
    // Only the attempt this worker runs: should another worker ever have taken
    // the job over, its row is not this worker's to write or announce.
    if spi::exec(
        &format!(
            "UPDATE arrw.job SET state = '{state}', {set} WHERE id = $1::bigint \
             AND state = '{}' AND worker_pid = pg_backend_pid()",
            State::Running
        ),
        &all,
    ) != 1
    {
        log(&format!(
            "job {} ({kind}): another worker took the job; this attempt's outcome ({state}) is not recorded",
            job.id
        ));
        unlock_job(job.id);
        return;
    }
    if let Some(due) = wake_at {
        sh.mark(db, due);
    }
    notify::state_changed(&job.id_text, kind, state);
    if matches!(state, State::Failed | State::Cancelled) {
        // An earlier attempt whose worker died may have left its file, and
        // this one may have ended before reaching it (a privilege revoked).
        let path = spi::one(
            "SELECT $1::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'path'",
            &[Some(&job.args)],
        );
        super::kinds::remove_leftovers(kind, &job.id_text, path.as_deref());
    }
    unlock_job(job.id);
}
