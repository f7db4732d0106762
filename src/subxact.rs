//! Subtransactions: the one helper that runs code in a subtransaction and
//! turns its ERROR into a value (background jobs' SQL, and the scans' own
//! evaluation of a `LIMIT` expression that may fail, ivfpq/prefilter.rs).

use pgrx::pg_sys;
use pgrx::PgTryBuilder;

/// Runs `f` in a subtransaction of the current transaction. When `f` returns,
/// the subtransaction is released (its work kept) if `keep`, rolled back if not;
/// when `f` raises an ERROR, it is rolled back and the error returned, and the
/// transaction can go on (as a PL/pgSQL `EXCEPTION` block does). The caller
/// rethrows what it does not handle (a cancel, for one).
pub fn subxact<R>(
    keep: bool,
    f: impl FnOnce() -> R,
) -> Result<R, Box<pgrx::pg_sys::panic::CaughtError>> {
    // SAFETY: inside a transaction (a job worker's `xact`, or a statement's
    // executor start, prefilter.rs), not in parallel mode; the subtransaction is
    // closed below on both paths, and the memory context and resource owner are
    // restored as PostgreSQL's PL/pgSQL restores them around its blocks.
    let (cxt, owner) = unsafe {
        let cxt = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
        (cxt, owner)
    };
    let r = PgTryBuilder::new(std::panic::AssertUnwindSafe(move || Ok(f())))
        .catch_others(|e| Err(Box::new(e)))
        .execute();
    // SAFETY: the subtransaction begun above is the current one (an ERROR inside
    // it was caught above; its abort, user, settings and SPI connections of the
    // subtransaction are undone by the rollback).
    unsafe {
        pg_sys::MemoryContextSwitchTo(cxt);
        if keep && r.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(cxt);
        pg_sys::CurrentResourceOwner = owner;
    }
    r
}
