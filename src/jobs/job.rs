//! A job as the worker and the job kinds see it: its row (`Job`), its lifecycle
//! (`State`), what an attempt came to (`Outcome`), and what the kind code may ask of
//! the worker (`Ctx`: run as the owner, stop between batches, record progress and
//! the resume point, read the resume point back).
//!
//! Leaf of the queue's modules: it depends on the argument code (`JobKind`) and
//! the server glue only, and every other job module may use it.

use super::args::JobKind;
use super::shmem::Slot;
use super::spi;
use pgrx::pg_sys;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// SIGTERM received: finish the current batch, requeue the job, exit.
pub static GOT_SIGTERM: AtomicBool = AtomicBool::new(false);
/// The worker is inside one long statement (REINDEX, export): SIGTERM cancels it.
pub static IN_LONG_STATEMENT: AtomicBool = AtomicBool::new(false);

/// The state of a job: the values of `arrw.job.state` (and of the view
/// `arrw.jobs`, where a queued job with a cancellation request reads `cancelled`).
/// Every state name in the Rust code comes from here.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Queued,
        State::Running,
        State::Succeeded,
        State::Failed,
        State::Cancelled,
    ];

    /// The name stored in `arrw.job.state` (and announced to listeners).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A job in this state never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

/// The name, for `format!` into SQL (`state = '{}'`) and messages.
impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one attempt at a job.
pub enum Outcome {
    Succeeded(Option<String>),
    Cancelled,
    /// Stopped by SIGTERM: back to the queue, the attempt not counted.
    Requeue,
    /// Lost a deadlock to another job rebuilding an index of the same table
    /// (two `REINDEX CONCURRENTLY` on one table wait for each other): back to
    /// the queue a little later, the attempt not counted.
    Contended,
    Failed {
        message: String,
        code: pgrx::PgSqlErrorCode,
    },
}

/// A claimed job.
pub struct Job {
    pub id: i64,
    pub id_text: String,
    pub kind: JobKind,
    pub args: String,
    pub owner: pg_sys::Oid,
    pub search_path: String,
    /// The submitter's values of `spi::JOB_SETTINGS` (none for a job
    /// submitted before they were saved).
    pub settings: Vec<(String, String)>,
    pub attempts: i32,
    pub max_attempts: i32,
}

/// Exits the process (`proc_exit(1)`) when the postmaster is gone. A worker
/// orphaned by a postmaster killed with SIGKILL otherwise finished its job and
/// claimed and ran every queued one, writing with no postmaster (a standby saw
/// none of it), while its attachment to shared memory kept the server from
/// starting again (hunt-115). Exiting leaves the job `running`; the next start
/// requeues it as a crashed attempt, as docs/jobs.md says. Called between
/// batches and before every claim.
pub fn exit_if_postmaster_died() {
    // No WL_LATCH_SET: a set latch is neither waited for nor reset, and a
    // timeout of 0 only polls; with WL_EXIT_ON_PM_DEATH, WaitLatch calls
    // proc_exit(1) itself when the postmaster's death pipe has closed, and
    // otherwise returns WL_TIMEOUT.
    // SAFETY: MyLatch is this process's latch, on PostgreSQL's thread.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            0,
            pg_sys::PG_WAIT_EXTENSION,
        );
    }
}

/// What the job code needs from the worker.
pub struct Ctx<'a> {
    pub job: &'a Job,
    pub slot: &'a Slot,
}

impl Ctx<'_> {
    /// Runs `f` as the job's owner (security-restricted, with the search path
    /// and settings of the submitting session), the owner being the session
    /// user too: `session_user` and `is_superuser` are the owner's, as in the
    /// owner's own session (a row-level security policy or a default on
    /// `session_user` saw the worker's superuser; hunt-120).
    pub fn as_owner<R>(&self, f: impl FnOnce() -> R) -> R {
        spi::as_role_with(
            self.job.owner,
            &self.job.search_path,
            &self.job.settings,
            true,
            true,
            f,
        )
    }

    /// Between batches: has the job been asked to stop (SIGTERM, cancel_job)?
    /// A worker whose postmaster has died exits here (see
    /// [`exit_if_postmaster_died`]).
    pub fn stop(&self) -> Option<Outcome> {
        exit_if_postmaster_died();
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

    /// Records progress (0..1) and the resume point (a JSON object, whose keys
    /// replace those of the saved one; the others, such as the OID recorded at
    /// submit, stay), in the current transaction.
    pub fn progress(&self, progress: f64, checkpoint: Option<&str>) {
        spi::exec(
            "UPDATE arrw.job SET progress = $2::float8, \
                    checkpoint = CASE WHEN $3 IS NULL THEN checkpoint \
                                      ELSE coalesce(checkpoint, '{}') || $3::jsonb END \
             WHERE id = $1::bigint",
            &[
                Some(&self.job.id_text),
                Some(&progress.clamp(0.0, 1.0).to_string()),
                checkpoint,
            ],
        );
    }

    /// The job's saved resume point (empty if there is none), in the current
    /// transaction.
    pub fn checkpoint(&self) -> Checkpoint {
        let rows = spi::query(
            "SELECT e.key, CASE WHEN jsonb_typeof(e.value) = 'array' \
                    THEN (SELECT string_agg(x, ',') FROM jsonb_array_elements_text(e.value) x) \
                    ELSE e.value #>> '{}' END \
             FROM arrw.job j, jsonb_each(j.checkpoint) e WHERE j.id = $1::bigint",
            &[Some(&self.job.id_text)],
        );
        Checkpoint(
            rows.rows
                .into_iter()
                .filter_map(|mut r| {
                    let value = r.get_mut(1).and_then(Option::take);
                    Some((r.first_mut()?.take()?, value))
                })
                .collect(),
        )
    }
}

/// A job's resume point, as the kind wrote it with `Ctx::progress`: the fields of
/// a JSON object, each in its text form (an array as its elements joined by
/// commas, JSON null as absent).
pub struct Checkpoint(Vec<(String, Option<String>)>);

impl Checkpoint {
    /// Field `key` as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Field `key` as a number, if it is one.
    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.text(key).and_then(|s| s.parse().ok())
    }
}

/// Has cancellation of job `id` been requested (and committed)? Requests live in
/// `arrw.job_cancel`, not in the job's row, so that cancel_job never locks a job's
/// row in the caller's transaction (a worker updating it would wait for that
/// transaction to end).
///
/// `arrw.job` is locked first (in the mode the transaction's progress update
/// takes anyway), then `arrw.job_cancel` read: `DROP EXTENSION arrw` locks the
/// extension's tables in that order, and a batch transaction that read
/// `arrw.job_cancel` before updating `arrw.job` deadlocked with it (40P01 for
/// the DROP, hunt-126). In this order the DROP waits for the batch to commit,
/// then reports the objects that depend on the extension (2BP01) or, with
/// CASCADE, drops them.
pub fn cancel_requested(id: &str) -> bool {
    spi::exec("LOCK TABLE arrw.job IN ROW EXCLUSIVE MODE", &[]);
    spi::flag(
        "SELECT EXISTS (SELECT 1 FROM arrw.job_cancel WHERE job_id = $1::bigint)",
        &[Some(id)],
    )
}

/// Removes a file when dropped (also while an ERROR unwinds), unless
/// disarmed: the temporary files of file jobs (kinds.rs, import.rs).
pub struct RemoveOnDrop(pub Option<String>);

impl RemoveOnDrop {
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
