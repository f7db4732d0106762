//! The SQL functions: `arrw.submit_job`, `arrw.cancel_job`, `arrw.wait_job`
//! (declared in sql/jobs.sql).
//!
//! Users cannot write `arrw.job`; these functions do it for them as the bootstrap
//! superuser with a fixed search path (`spi::as_job_admin`), after checking what the
//! calling role may do. The owner of a new job is always the calling role.

use super::args::{self, Kind};
use super::{notify, shmem, spi};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::FromDatum;
use pgrx::PgLogLevel;

/// Text argument `n`, or `None` for SQL NULL.
///
/// # Safety
/// `fcinfo` must be the call's own, with a `text` argument `n`.
unsafe fn arg_text(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<String> {
    // SAFETY: the caller guarantees argument n exists and is text.
    unsafe {
        if pgrx::fcinfo::pg_arg_is_null(fcinfo, n) {
            None
        } else {
            String::from_datum(crate::fmgr::arg(fcinfo, n), false)
        }
    }
}

/// `jsonb` argument `n` as JSON text, or `None` for SQL NULL.
///
/// # Safety
/// `fcinfo` must be the call's own, with a `jsonb` argument `n`.
unsafe fn arg_jsonb_text(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<String> {
    // SAFETY: the caller guarantees argument n exists and is jsonb.
    unsafe {
        if pgrx::fcinfo::pg_arg_is_null(fcinfo, n) {
            None
        } else {
            pgrx::JsonB::from_datum(crate::fmgr::arg(fcinfo, n), false).map(|j| j.0.to_string())
        }
    }
}

/// Submits a job; returns its id. See docs/jobs.md.
fn submit(kind: Option<String>, args_json: Option<String>, max_attempts: Option<i32>) -> i64 {
    let Some(kind_name) = kind else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "job kind must not be NULL"
        );
    };
    let Some(kind) = Kind::parse(&kind_name) else {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown job kind \"{kind_name}\""),
            "arrw.submit_job",
        )
        .set_hint(format!(
            "Job kinds are: {}.",
            args::KINDS
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .report(PgLogLevel::ERROR);
        unreachable!();
    };
    let args_json = args_json.unwrap_or_else(|| "{}".into());
    let max_attempts = max_attempts.unwrap_or(3);
    if !(1..=100).contains(&max_attempts) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "max_attempts must be between 1 and 100"
        );
    }
    // As the caller: validate the arguments and the caller's rights.
    let spec = args::parse(kind, &args_json);
    args::check(kind, &spec);
    // SAFETY: reading the current user id.
    let owner = unsafe { pg_sys::GetUserId() };
    let search_path = spi::current_search_path();
    let owner_text = owner.to_u32().to_string();
    let max_text = max_attempts.to_string();
    let id = spi::as_job_admin(|| {
        let id = spi::one(
            "INSERT INTO arrw.job (kind, args, owner, search_path, max_attempts) \
             VALUES ($1, $2::jsonb, $3::oid, $4, $5::int) RETURNING id",
            &[
                Some(kind.name()),
                Some(&args_json),
                Some(&owner_text),
                Some(&search_path),
                Some(&max_text),
            ],
        )
        .unwrap_or_default();
        notify::state_changed(&id, kind.name(), "queued");
        id
    });
    shmem::wake_on_commit();
    if shmem::shared().is_none() {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            "arrw is not in shared_preload_libraries: the job is queued but no worker will run it",
            "arrw.submit_job",
        )
        .set_hint("Add arrw to shared_preload_libraries and restart the server.")
        .report(PgLogLevel::WARNING);
    }
    id.parse().unwrap_or(0)
}

crate::v1! {
    /// `arrw.submit_job(kind text, args jsonb DEFAULT '{}', max_attempts int DEFAULT 3) -> bigint`
    fn arrw_submit_job(fcinfo) {
        // SAFETY: the SQL declaration gives (text, jsonb, integer).
        let (kind, args, max) = unsafe {
            (
                arg_text(fcinfo, 0),
                arg_jsonb_text(fcinfo, 1),
                if pgrx::fcinfo::pg_arg_is_null(fcinfo, 2) { None } else { Some(crate::fmgr::arg_i32(fcinfo, 2)) },
            )
        };
        pg_sys::Datum::from(submit(kind, args, max))
    }
}

/// Cancels a queued or running job the caller may see. Returns true if it was
/// queued (now cancelled) or running (its worker stops it within seconds).
fn cancel(id: i64) -> bool {
    // SAFETY: reading the current user id.
    let me = unsafe { pg_sys::GetUserId() };
    let id_text = id.to_string();
    let running = spi::as_job_admin(|| {
        let r = spi::query(
            "SELECT owner::oid, state, kind FROM arrw.job WHERE id = $1::bigint FOR UPDATE",
            &[Some(&id_text)],
        );
        let row = r.rows.into_iter().next()?;
        let owner = pg_sys::Oid::from(
            row[0]
                .as_deref()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0),
        );
        // SAFETY: has_privs_of_role only reads the role catalogs.
        if !unsafe { pg_sys::has_privs_of_role(me, owner) } {
            return None;
        }
        let kind = row[2].clone().unwrap_or_default();
        match row[1].as_deref() {
            Some("queued") => {
                spi::exec(
                    "UPDATE arrw.job SET state = 'cancelled', finished_at = now() \
                     WHERE id = $1::bigint",
                    &[Some(&id_text)],
                );
                notify::state_changed(&id_text, &kind, "cancelled");
                Some(false)
            }
            Some("running") => {
                spi::exec(
                    "UPDATE arrw.job SET cancel_requested = true WHERE id = $1::bigint",
                    &[Some(&id_text)],
                );
                Some(true)
            }
            _ => None,
        }
    });
    match running {
        None => false,
        Some(false) => true,
        Some(true) => {
            shmem::cancel_on_commit(id);
            true
        }
    }
}

crate::v1! {
    /// `arrw.cancel_job(id bigint) -> boolean` (STRICT)
    fn arrw_cancel_job(fcinfo) {
        // SAFETY: the SQL declaration gives (bigint); STRICT means it is not NULL.
        let id = unsafe { crate::fmgr::arg(fcinfo, 0) }.value() as i64;
        crate::fmgr::bool(cancel(id))
    }
}

const FINAL: &[&str] = &["succeeded", "failed", "cancelled"];

/// Waits until job `id` ends (or `timeout_us` passes) and returns its state.
fn wait(id: i64, timeout_us: Option<i64>) -> String {
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
    let id_text = id.to_string();
    let mut first = true;
    let mut last_lock_check = std::time::Instant::now();
    loop {
        // As the caller: row-level security shows only jobs the caller may see.
        let r = spi::query(
            "SELECT state, kind, worker_pid, xmin::text FROM arrw.job WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.int8",
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
        if FINAL.contains(&state.as_str()) {
            return state;
        }
        if first {
            first = false;
            let xmin: u32 = row[3].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
            // SAFETY: a plain lookup in this backend's transaction state.
            if unsafe {
                pg_sys::TransactionIdIsCurrentTransactionId(pg_sys::TransactionId::from(xmin))
            } {
                ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("job {id} was submitted in this transaction and cannot start before it commits"),
                    "arrw.wait_job",
                )
                .set_hint("Commit, then call arrw.wait_job.")
                .report(PgLogLevel::ERROR);
            }
        }
        // REINDEX CONCURRENTLY waits for every transaction in the database holding an
        // older snapshot, and this call holds one while it waits: if the job's worker
        // is waiting for us, waiting longer only delays both.
        let kind = row[1].as_deref().unwrap_or("");
        if state == "running"
            && (kind == "index_rebuild" || kind == "index_optimize")
            && last_lock_check.elapsed() >= std::time::Duration::from_millis(500)
        {
            last_lock_check = std::time::Instant::now();
            if let Some(pid) = row[2].as_deref() {
                let blocked = spi::flag(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks w JOIN pg_catalog.pg_locks m \
                       ON m.locktype = 'virtualxid' AND m.virtualxid = w.virtualxid \
                      AND m.pid = pg_catalog.pg_backend_pid() AND m.granted \
                     WHERE w.locktype = 'virtualxid' AND NOT w.granted AND w.pid = $1::int)",
                    &[Some(pid)],
                );
                if blocked {
                    ErrorReport::new(
                        PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED,
                        format!("job {id} ({kind}) is waiting for this transaction to end"),
                        "arrw.wait_job",
                    )
                    .set_detail(
                        "REINDEX CONCURRENTLY waits for every transaction of the database that holds an older \
                         snapshot, including this wait_job call.",
                    )
                    .set_hint("Poll arrw.jobs in separate statements instead (each takes a new snapshot).")
                    .report(PgLogLevel::ERROR);
                }
            }
        }
        if let Some(t) = timeout_us {
            if start.elapsed().as_micros() as i64 >= t {
                return state;
            }
        }
        // SAFETY: the standard latch wait of a backend, followed by an interrupt
        // check so that the caller can cancel the wait.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                100,
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
            if pgrx::fcinfo::pg_arg_is_null(fcinfo, 0) {
                ereport!(ERROR, PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "job id must not be NULL");
            }
            let id = crate::fmgr::arg(fcinfo, 0).value() as i64;
            let timeout = if pgrx::fcinfo::pg_arg_is_null(fcinfo, 1) {
                None
            } else {
                let iv = &*(crate::fmgr::arg(fcinfo, 1).cast_mut_ptr::<pg_sys::Interval>());
                Some(
                    iv.time
                        .saturating_add(iv.day as i64 * 86_400_000_000)
                        .saturating_add(iv.month as i64 * 30 * 86_400_000_000),
                )
            };
            (id, timeout)
        };
        let state = wait(id, timeout);
        match state.into_datum() {
            Some(d) => d,
            // SAFETY: our own fcinfo.
            None => unsafe { crate::fmgr::return_null(fcinfo) },
        }
    }
}
