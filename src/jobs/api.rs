//! The SQL functions: `arrw.submit_job`, `arrw.cancel_job`, `arrw.wait_job`
//! (declared in sql/jobs.sql).
//!
//! Users cannot write `arrw.job`; these functions do it for them as the bootstrap
//! superuser with a fixed search path (`spi::as_job_admin`), after checking what the
//! calling role may do. The owner of a new job is always the calling role.

use super::args::{self, JobKind};
use super::job::State;
use super::{notify, shmem, spi};
use crate::errors::{error_detail_hint, error_hint, warning_hint};
use crate::fmgr;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Submits a job; returns its id. See docs/jobs.md.
fn submit(kind: Option<String>, args_json: Option<String>, max_attempts: Option<i32>) -> i64 {
    let Some(kind_name) = kind else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "job kind must not be NULL"
        );
    };
    let Some(kind) = JobKind::parse(&kind_name) else {
        error_hint(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown job kind \"{kind_name}\""),
            format!(
                "Job kinds are: {}.",
                args::KINDS
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "arrw.submit_job",
        );
    };
    // NULLs are refused, as a NULL kind is: they were taken for the defaults
    // ('{}', 3), which the caller may not have meant (hunt-98). Omitting an
    // argument gives its default.
    let Some(args_json) = args_json else {
        error_hint(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "job arguments must not be NULL",
            "Pass '{}' for none, or leave the argument out.",
            "arrw.submit_job",
        );
    };
    let Some(max_attempts) = max_attempts else {
        error_hint(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "max_attempts must not be NULL",
            "Leave the argument out for the default, 3.",
            "arrw.submit_job",
        );
    };
    if !(1..=100).contains(&max_attempts) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "max_attempts must be between 1 and 100"
        );
    }
    // As the caller: validate the arguments and the caller's rights.
    let spec = args::parse(kind, &args_json);
    let checked = args::check(kind, &spec);
    // The relation the job is for, by OID: every attempt checks that its name
    // still resolves to it (identity::same_relation_as_submitted).
    let rel_oid = checked.rel.as_ref().map(|r| r.oid.clone());
    let table_oid = checked.rel.as_ref().and_then(|r| r.table_oid.clone());
    // SAFETY: reading the current user id.
    let owner = unsafe { pg_sys::GetUserId() };
    let search_path = spi::current_search_path();
    let settings = spi::job_settings_json();
    let owner_text = owner.to_u32().to_string();
    let max_text = max_attempts.to_string();
    let id = spi::as_job_admin(|| {
        let id = spi::one(
            "INSERT INTO arrw.job (kind, args, owner, search_path, max_attempts, checkpoint) \
             VALUES ($1, $2::jsonb, $3::oid, $4, $5::int, \
                     jsonb_strip_nulls(jsonb_build_object('rel_oid', $6, 'table_oid', $7, \
                                                          'settings', $8::jsonb))) \
             RETURNING id",
            &[
                Some(kind.name()),
                Some(&args_json),
                Some(&owner_text),
                Some(&search_path),
                Some(&max_text),
                rel_oid.as_deref(),
                table_oid.as_deref(),
                Some(&settings),
            ],
        )
        .unwrap_or_default();
        notify::state_changed(&id, kind.name(), State::Queued);
        id
    });
    shmem::wake_on_commit();
    if shmem::shared().is_none() {
        warning_hint(
            PgSqlErrorCode::ERRCODE_WARNING,
            "arrw is not in shared_preload_libraries: the job is queued but no worker will run it",
            "Add arrw to shared_preload_libraries and restart the server.",
            "arrw.submit_job",
        );
    }
    id.parse().unwrap_or(0)
}

crate::v1! {
    /// `arrw.submit_job(kind text, args jsonb DEFAULT '{}', max_attempts int DEFAULT 3) -> bigint`
    fn arrw_submit_job(fcinfo) {
        // SAFETY: the SQL declaration gives (text, jsonb, integer).
        let (kind, args, max) = unsafe {
            (
                fmgr::arg_text(fcinfo, 0),
                fmgr::arg_jsonb_text(fcinfo, 1),
                if fmgr::arg_is_null(fcinfo, 2) { None } else { Some(fmgr::arg_i32(fcinfo, 2)) },
            )
        };
        pg_sys::Datum::from(submit(kind, args, max))
    }
}

/// Cancels a queued or running job the caller may see. Returns true if it was
/// queued (now cancelled) or running (its worker stops it within seconds).
///
/// Nothing here locks the job's row: visibility is checked as the caller, with
/// row-level security, and the request is a new row in `arrw.job_cancel`, which
/// only the committed request makes visible to workers. A caller's open
/// transaction therefore never holds up a worker, whoever the caller is.
///
/// Without a lock the job's row can change until this transaction commits (a
/// worker may claim the queued job and run it to the end), so this function
/// announces nothing of a job another transaction submitted: the worker that
/// writes `cancelled` into the job's row announces it, in that transaction,
/// and a job that ended otherwise is never announced cancelled (it once was,
/// after its success, by a request judged on an older snapshot; hunt-47). A
/// job submitted by this very transaction is invisible to workers until it
/// commits, so its cancellation is announced here, with the job's kind in the
/// request's `announced_kind`, through which the change feed's plugin marks
/// the event `"origin":"arrw"` (src/cdc/plugin.rs); the worker recording it
/// later does not announce it again.
fn cancel(id: i64) -> bool {
    require_this_version("arrw.cancel_job");
    let id_text = id.to_string();
    // As the caller: only a job the caller may see, in its effective state.
    let state = spi::one(
        "SELECT state FROM arrw.jobs WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.int8",
        &[Some(&id_text)],
    );
    let Some(state) = state.as_deref().and_then(State::parse) else {
        return false;
    };
    if state.is_final() {
        return false;
    }
    let requested = spi::as_job_admin(|| {
        // Whether this transaction submitted the job (its row's xmin is ours).
        let xmin = spi::one(
            "SELECT xmin::text FROM arrw.job WHERE id = $1::bigint AND state = 'queued'",
            &[Some(&id_text)],
        );
        let own = xmin.and_then(|x| x.parse::<u32>().ok()).is_some_and(|x| {
            // SAFETY: a plain lookup in this backend's transaction state.
            unsafe { pg_sys::TransactionIdIsCurrentTransactionId(pg_sys::TransactionId::from(x)) }
        });
        // The state again in this statement's snapshot, taken after the
        // request's table is locked (in READ COMMITTED the newest committed
        // one): a job that ended since the caller's look is not cancelled.
        let r = spi::query(
            "WITH j AS (SELECT kind FROM arrw.job WHERE id = $1::bigint AND state IN ('queued', 'running')), \
                  ins AS (INSERT INTO arrw.job_cancel (job_id, announced_kind) \
                          SELECT $1::bigint, CASE WHEN $2::boolean THEN j.kind END FROM j \
                          WHERE NOT EXISTS (SELECT 1 FROM arrw.job_cancel WHERE job_id = $1::bigint) \
                          RETURNING announced_kind) \
             SELECT (SELECT announced_kind FROM ins) FROM j",
            &[Some(&id_text), Some(if own { "t" } else { "f" })],
        );
        let Some(row) = r.rows.into_iter().next() else {
            return false;
        };
        if let Some(kind) = &row[0] {
            notify::state_changed(&id_text, kind, State::Cancelled);
        }
        true
    });
    if !requested {
        return false;
    }
    // A running job's worker is interrupted at commit; a queued one is recorded
    // as cancelled by the next worker in this database.
    shmem::cancel_on_commit(id);
    shmem::wake_on_commit();
    true
}

crate::v1! {
    /// `arrw.cancel_job(id bigint) -> boolean` (STRICT)
    fn arrw_cancel_job(fcinfo) {
        // SAFETY: the SQL declaration gives (bigint); STRICT means it is not NULL.
        let id = unsafe { fmgr::arg_i64(fcinfo, 0) };
        fmgr::boolean(cancel(id))
    }
}

/// The longest wait, in microseconds, for a `wait_job` timeout: months count as
/// 30 days and days as 24 hours (as interval comparison does), added up without
/// overflow. `None` (no limit) for a timeout beyond what the clock can count; a
/// negative timeout is an error.
fn timeout_micros(iv: &pg_sys::Interval) -> Option<u64> {
    const DAY: i128 = 86_400_000_000;
    let total = iv.time as i128 + iv.day as i128 * DAY + iv.month as i128 * 30 * DAY;
    if total < 0 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "wait_job timeout must not be negative"
        );
    }
    u64::try_from(total).ok()
}

/// 40P01 for a `wait_job` whose own snapshot holds up what it waits for.
fn snapshot_stall(message: String) -> ! {
    error_detail_hint(
        PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED,
        message,
        "REINDEX CONCURRENTLY waits for every transaction of the database that holds an older \
         snapshot, including this wait_job call.",
        "Poll arrw.jobs in separate statements instead (each takes a new snapshot).",
        "arrw.wait_job",
    )
}

/// Refuses (55000) a call in a database whose arrw is another version than
/// this library's: the package replaced, `ALTER EXTENSION arrw UPDATE` not
/// run yet. Workers leave such a database's jobs queued until the update
/// (worker.rs), so `wait_job` waited for it without a word, and `cancel_job`
/// wrote a column 0.1.0's `arrw.job_cancel` does not have (42703; hunt-126).
fn require_this_version(function: &str) {
    let installed = spi::one(
        "SELECT e.extversion FROM pg_catalog.pg_extension e \
         WHERE e.extname OPERATOR(pg_catalog.=) 'arrw'",
        &[],
    );
    let this = env!("CARGO_PKG_VERSION");
    if let Some(v) = installed.filter(|v| v != this) {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "{function} needs arrw {this} in this database, which has arrw {v}: its jobs \
                 wait until the extension is updated"
            ),
            "require_this_version",
        )
        .set_hint("Run ALTER EXTENSION arrw UPDATE.")
        .report(PgLogLevel::ERROR);
    }
}

/// Waits until job `id` ends (or `timeout_us` passes) and returns its state.
fn wait(id: i64, timeout_us: Option<u64>) -> String {
    require_this_version("arrw.wait_job");
    let (queued, running, cancelled) = (State::Queued, State::Running, State::Cancelled);
    // SAFETY: reading the backend's isolation level.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "arrw.wait_job cannot wait inside a REPEATABLE READ or SERIALIZABLE transaction",
            "Its snapshot would never show the job's progress."
        );
    }
    let start = std::time::Instant::now();
    // No deadline if it lies beyond what Instant can represent.
    let deadline = timeout_us.and_then(|t| start.checked_add(std::time::Duration::from_micros(t)));
    let id_text = id.to_string();
    let mut first = true;
    let mut last_lock_check = std::time::Instant::now();
    loop {
        // As the caller: row-level security shows only jobs the caller may see
        // (and the policy's rule again for a role that bypasses it).
        let r = spi::query(
            &format!(
                "SELECT CASE WHEN j.state OPERATOR(pg_catalog.=) '{queued}' AND EXISTS (SELECT 1 FROM arrw.job_cancel c \
                               WHERE c.job_id OPERATOR(pg_catalog.=) j.id) THEN '{cancelled}' ELSE j.state END, \
                        j.kind, j.worker_pid, j.xmin::pg_catalog.text \
                 FROM arrw.job j WHERE j.id OPERATOR(pg_catalog.=) $1::pg_catalog.int8 \
                   AND CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles r \
                                         WHERE r.oid OPERATOR(pg_catalog.=) j.owner) \
                            THEN pg_catalog.pg_has_role(j.owner, 'USAGE') \
                            ELSE (SELECT r.rolsuper FROM pg_catalog.pg_roles r \
                                  WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) END"
            ),
            &[Some(&id_text)],
        );
        let Some(row) = r.rows.into_iter().next() else {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("job {id} does not exist")
            );
        };
        let state = row[0].clone().unwrap_or_default();
        if State::parse(&state).is_some_and(State::is_final) {
            return state;
        }
        if first {
            first = false;
            let xmin: u32 = row[3].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
            // SAFETY: a plain lookup in this backend's transaction state.
            if unsafe {
                pg_sys::TransactionIdIsCurrentTransactionId(pg_sys::TransactionId::from(xmin))
            } {
                error_hint(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("job {id} was submitted in this transaction and cannot start before it commits"),
                    "Commit, then call arrw.wait_job.",
                    "arrw.wait_job",
                );
            }
            // Without preloading there are no job workers (submit_job warned):
            // waiting would last until a timeout or a cancel (hunt-158).
            if shmem::shared().is_none() {
                error_hint(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("job {id} cannot run: arrw is not in shared_preload_libraries, so no worker runs jobs"),
                    "Add arrw to shared_preload_libraries and restart the server; the job stays queued until then.",
                    "arrw.wait_job",
                );
            }
        }
        // REINDEX CONCURRENTLY waits for every transaction in the database holding an
        // older snapshot, and this call holds one while it waits: if the job's worker
        // is waiting for us, waiting longer only delays both.
        let kind = row[1].as_deref().unwrap_or("");
        if state == running.as_str()
            && JobKind::parse(kind).is_some_and(JobKind::reindexes_concurrently)
            && last_lock_check.elapsed() >= std::time::Duration::from_millis(500)
        {
            last_lock_check = std::time::Instant::now();
            if let Some(pid) = row[2].as_deref() {
                let blocked = spi::flag(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks w JOIN pg_catalog.pg_locks m \
                       ON m.locktype OPERATOR(pg_catalog.=) 'virtualxid' \
                      AND m.virtualxid OPERATOR(pg_catalog.=) w.virtualxid \
                      AND m.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() AND m.granted \
                     WHERE w.locktype OPERATOR(pg_catalog.=) 'virtualxid' AND NOT w.granted \
                       AND w.pid OPERATOR(pg_catalog.=) $1::int)",
                    &[Some(pid)],
                );
                if blocked {
                    snapshot_stall(format!(
                        "job {id} ({kind}) is waiting for this transaction to end"
                    ));
                }
            }
        }
        // A queued job waits for a worker; when every worker of the pool is
        // an index job waiting for this call's snapshot, directly or behind
        // another job worker that is (a REINDEX CONCURRENTLY waiting for
        // another's table lock), none ever frees up: the same stall, one step removed (the waited
        // job stayed queued until a cancel ended this call).
        if state == queued.as_str()
            && last_lock_check.elapsed() >= std::time::Duration::from_millis(500)
        {
            last_lock_check = std::time::Instant::now();
            // As many workers as the pool may have, or, while the launcher
            // cannot start another (max_worker_processes leaves room for
            // fewer, or parallel queries and other extensions hold the
            // rest), those running: the check compared them with
            // arrw.job_workers only, and never fired when fewer fit (hunt-51).
            let full = shmem::shared().is_some_and(|sh| sh.cannot_start_workers());
            let workers = if full {
                1
            } else {
                super::JOB_WORKERS.get().max(1)
            }
            .to_string();
            // The pool's workers by arrw's own slots, not by pg_stat_activity:
            // that view shows backend_type only to roles with pg_read_all_stats
            // (the workers run as the bootstrap superuser), so for any other role
            // it listed no worker and the call waited forever where a superuser
            // got 40P01. pg_blocking_pids() answers every role; the caller learns
            // only whether all of them wait for it.
            let pids: Vec<String> = shmem::shared()
                .map(|sh| {
                    sh.slots()
                        .iter()
                        .filter(|s| s.in_use.load(std::sync::atomic::Ordering::SeqCst))
                        .map(|s| s.pid.load(std::sync::atomic::Ordering::SeqCst))
                        .filter(|&pid| pid != 0)
                        .map(|pid| pid.to_string())
                        .collect()
                })
                .unwrap_or_default();
            let pids = format!("{{{}}}", pids.join(","));
            let stalled = spi::flag(
                "WITH w AS (SELECT a.pid, pg_catalog.pg_blocking_pids(a.pid) AS b \
                              FROM pg_catalog.unnest($2::pg_catalog.int4[]) a(pid)) \
                 SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>=) $1::int \
                    AND pg_catalog.bool_and(pg_catalog.cardinality(w.b) OPERATOR(pg_catalog.>) 0 \
                        AND w.b OPERATOR(pg_catalog.<@) ((SELECT pg_catalog.array_agg(x.pid) FROM w x) \
                                     OPERATOR(pg_catalog.||) pg_catalog.pg_backend_pid())) \
                    AND pg_catalog.bool_or(pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.=) ANY (w.b)) \
                   FROM w",
                &[Some(&workers), Some(&pids)],
            );
            if stalled {
                snapshot_stall(format!(
                    "job {id} ({kind}) cannot start: every job worker runs an index job waiting for this transaction to end"
                ));
            }
        }
        let mut sleep_ms = 100;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return state;
            }
            sleep_ms = sleep_ms.min(left.as_millis().max(1) as i64);
        }
        // SAFETY: the standard latch wait of a backend, followed by an interrupt
        // check so that the caller can cancel the wait.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                sleep_ms as _,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pg_sys::check_for_interrupts!();
    }
}

crate::v1! {
    /// `arrw.wait_job(id bigint, timeout interval DEFAULT NULL) -> text`
    fn arrw_wait_job(fcinfo) {
        // SAFETY: the SQL declaration gives (bigint, interval); an interval datum
        // points to a pg_sys::Interval.
        let (id, timeout) = unsafe {
            if fmgr::arg_is_null(fcinfo, 0) {
                ereport!(ERROR, PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "job id must not be NULL");
            }
            let id = fmgr::arg_i64(fcinfo, 0);
            let timeout = if fmgr::arg_is_null(fcinfo, 1) {
                None
            } else {
                Some(timeout_micros(fmgr::arg_interval(fcinfo, 1)))
            };
            (id, timeout)
        };
        let state = wait(id, timeout.map(|t| t.unwrap_or(u64::MAX)));
        match state.into_datum() {
            Some(d) => d,
            // SAFETY: our own fcinfo.
            None => unsafe { fmgr::return_null(fcinfo) },
        }
    }
}
