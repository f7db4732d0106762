//! arrw's `ExecutorStart_hook`: the one place ivfpq learns that a plan
//! starts, for two users. Before the plan starts, pending.rs notes whether it
//! inserts with `ON CONFLICT` (new index entries are then written as they
//! come) and writes the pending entries if it may run in parallel workers;
//! once its state tree is built, prefilter.rs lets each filtered ivfpq
//! index scan check its filter itself, and tells each one right below a
//! `LIMIT` how many rows the plan will take.
//!
//! The hook is a plain frame, not `#[pg_guard]`, for the reason SAFETY.md
//! gives under "Pending index entries": it runs the statement's start (the
//! hook installed before ours, or `standard_ExecutorStart`), and that start's
//! ERRORs must reach PostgreSQL as raised, with their CONTEXT lines. It holds
//! only `Copy` values and nothing in it can panic; its own work is in the
//! guarded functions it calls.

use pgrx::pg_sys;

/// What our hook calls next: the hook installed before ours, or
/// `standard_ExecutorStart` (set in [`init`], always Some).
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

// PostgreSQL's own implementation, taken by address only (the symbol is a
// function; nothing reads this "static"): called directly when no hook was
// installed before ours. pgrx's `pg_sys` wrapper would turn its ERRORs into
// Rust panics and raise them again without their CONTEXT lines.
extern "C" {
    #[link_name = "standard_ExecutorStart"]
    static STANDARD_EXECUTOR_START: u8;
}

/// Installs the hook (once per backend, from `_PG_init`).
pub fn init() {
    // SAFETY: once, from _PG_init, on PostgreSQL's thread; the previous hook
    // is kept and called by ours; the standard function's address is a
    // non-null function pointer with exactly the hook type's signature.
    unsafe {
        PREV_EXECUTOR_START =
            pg_sys::ExecutorStart_hook.or(std::mem::transmute::<
                *const u8,
                pg_sys::ExecutorStart_hook_type,
            >(&raw const STANDARD_EXECUTOR_START));
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

/// Our `ExecutorStart_hook` (see the module docs).
unsafe extern "C-unwind" fn executor_start(qd: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    // SAFETY: PostgreSQL's arguments, forwarded unchanged to the previous hook
    // or the standard implementation; after it returns the QueryDesc is
    // started (its plan state tree built).
    unsafe {
        super::pending::note_on_conflict(qd);
        super::pending::before_parallel_plan(qd);
        if let Some(next) = PREV_EXECUTOR_START {
            next(qd, eflags);
        }
        super::prefilter::attach(qd, eflags);
    }
}
