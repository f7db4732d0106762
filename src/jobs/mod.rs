//! Background jobs: a crash-safe queue, a worker pool shared by every database, and
//! the job kinds (index_rebuild, index_optimize, bulk_import, bulk_export,
//! batch_delete, batch_update). User documentation: docs/jobs.md; SQL: sql/jobs.sql.
//!
//! | piece | file | what it does |
//! |---|---|---|
//! | queue | sql/jobs.sql | `arrw.job` (per database, row-level security), view `arrw.jobs` |
//! | SQL API | api.rs | submit_job / cancel_job / wait_job |
//! | arguments | args.rs | `JobKind`, argument validation, privilege checks (at submit and before each attempt) |
//! | a job | job.rs | `Job`, its `State`, an attempt's `Outcome`, `Ctx` (what kind code may ask of the worker, including the resume point) |
//! | kinds | kinds.rs, import.rs | what each kind does, batch by batch (kinds.rs dispatches) |
//! | identity | identity.rs | the relation a job acts on: its name's OID at submit, checked each attempt and batch |
//! | worker | worker.rs | entry point of a pool worker: claims jobs, runs them as their owner, records outcomes, requeues orphans |
//! | launcher | launcher.rs | static worker: starts pool workers in databases with work |
//! | shared memory | shmem.rs | worker slots, launcher wake-ups, cancel signalling |
//! | server glue | spi.rs, notify.rs | SPI, transactions, role switching, top-level utility commands, NOTIFY |
//!
//! Modules depend on each other one way only: spi ← args ← job ← kinds, import ←
//! worker (launcher starts workers by symbol name; api and notify sit beside the
//! worker, on args and job).
//!
//! Adding a job kind touches args.rs, sql/jobs.sql and the kind's own file:
//! - args.rs: its `JobKind` variant (name, accepted and required keys), its `Spec`
//!   variant and its arms in `parse` and `check` (the compiler lists each match
//!   that needs one, including the one-line dispatch in `kinds::run`);
//! - sql/jobs.sql: the kind name in the CHECK constraint of `arrw.job.kind`;
//! - its own file (like import.rs), a `run(ctx, ...) -> Outcome` working through
//!   `job::Ctx` (batches that commit with `Ctx::progress`, a resume point read with
//!   `Ctx::checkpoint`, `Ctx::stop` between batches);
//! - docs/jobs.md, for users.
//!
//! Settings: `arrw.job_workers` (pool size, default 2, server start),
//! `arrw.job_retry_delay` (first retry delay, doubling per attempt; reloadable) and
//! `arrw.job_import_max_row_size` (longest row bulk_import accepts; reloadable).

pub mod api;
pub mod args;
pub mod identity;
pub mod import;
pub mod job;
pub mod kinds;
pub mod launcher;
pub mod notify;
pub mod shmem;
pub mod spi;
pub mod worker;

use pgrx::pg_sys;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `arrw.job_workers`: pool workers running jobs at once, across all databases.
pub static JOB_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);
/// `arrw.job_retry_delay`: delay before the first retry of a failed attempt (ms).
pub static RETRY_DELAY_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
/// `arrw.job_import_max_row_size`: the longest row bulk_import accepts (kB).
pub static MAX_ROW_KB: GucSetting<i32> = GucSetting::<i32>::new(1 << 20);

/// The longest row bulk_import accepts, in bytes: the setting, but never more than
/// COPY itself can hold.
pub fn max_row_bytes() -> u64 {
    (MAX_ROW_KB.get().max(1) as u64 * 1024).min(arrw_core::import::COPY_MAX_ROW_BYTES)
}

/// Called from `_PG_init`: settings; while preloading also shared memory and the
/// launcher.
pub fn init() {
    GucRegistry::define_int_guc(
        c"arrw.job_retry_delay",
        c"Delay before a failed background job is retried; it doubles with each attempt.",
        c"Retries stop after the job's max_attempts attempts.",
        &RETRY_DELAY_MS,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"arrw.job_import_max_row_size",
        c"Longest row (line, or binary tuple) a bulk_import job accepts.",
        c"A longer row fails the job. The default, 1GB, is the longest row COPY can hold.",
        &MAX_ROW_KB,
        1,
        1 << 20,
        GucContext::Sighup,
        GucFlags::UNIT_KB,
    );
    // SAFETY: reading a flag PostgreSQL sets while it loads shared_preload_libraries.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    GucRegistry::define_int_guc(
        c"arrw.job_workers",
        c"Background job workers running at once (shared by all databases).",
        c"Each is a background worker: max_worker_processes must leave room for them, the job launcher and the logical replication launcher.",
        &JOB_WORKERS,
        1,
        shmem::MAX_SLOTS as i32,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    shmem::install_hooks();
    launcher::register();
}
