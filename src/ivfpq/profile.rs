//! Where an ivfpq scan spends its time: per-backend counters, collected only
//! with `SET ivfpq.profile = on`, read with `arrw.ivfpq_profile()` (JSON) and
//! cleared with `arrw.ivfpq_profile_reset()`. `bench/profile` turns them into the
//! breakdown in ARCHITECTURE.md ("Where a query's time goes").
//!
//! Each phase is timed with the monotonic clock around the code that does it
//! (about 25 ns per reading, two readings per timed step); with the setting off
//! a step costs one branch on a thread-local flag. The counters describe this
//! backend's own scans only: nothing about other sessions or other users'
//! tables is reachable through them.

use std::cell::Cell;
use std::time::Instant;

/// The timed parts of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the meta page and the (cached) model, parsing the query.
    Setup = 0,
    /// Ranking every list by its centroid's distance to the query.
    Rank,
    /// Building the query's lookup tables (per query and per probed list).
    Tables,
    /// Pinning, locking and checking list pages.
    Pages,
    /// Scoring codes (fast scan or ADC).
    Codes,
    /// Keeping and selecting candidates (the pool).
    Select,
    /// Reading a candidate's row from the table (visibility, deforming,
    /// detoasting).
    Fetch,
    /// Exact distances of re-ranked rows.
    Exact,
    /// The exact-order queue and its margins (`arrw_core::rerank`).
    Order,
    /// Refining candidates: reading fine pages and scoring fine codes.
    Refine,
}

const PHASES: usize = 10;
const NAMES: [&str; PHASES] = [
    "setup", "rank", "tables", "pages", "codes", "select", "fetch", "exact", "order", "refine",
];

/// Counted events.
#[derive(Clone, Copy, Debug)]
pub enum Count {
    Scans = 0,
    Lists,
    Pages,
    Candidates,
    Reranked,
    Returned,
    Refined,
    /// Rounds that offered the probed lists' codes again (CandidatePool).
    Reoffers,
    /// Out-of-line keys read through the scan's TOAST reader (toast.rs).
    ToastReads,
    /// ORDER BY values the executor took from the scan's sums instead of
    /// reading an out-of-line row again (src/handed.rs).
    OrderByReuses,
    /// Rows read from the table that the query's filter rejected in the scan
    /// (prefilter.rs).
    Filtered,
    /// Models read from an index's pages, not found in the backend's cache
    /// (model.rs).
    ModelLoads,
    /// Rows found nearer than a row the scan had handed out already, and
    /// left out (`arrw_core::rerank::OrderedRerank::late`).
    Late,
}

const COUNTS: usize = 13;
const COUNT_NAMES: [&str; COUNTS] = [
    "scans",
    "lists",
    "pages",
    "candidates",
    "reranked",
    "returned",
    "refined",
    "reoffers",
    "toast_reads",
    "orderby_reuses",
    "filtered",
    "model_loads",
    "late",
];

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static NANOS: [Cell<u64>; PHASES] = const { [const { Cell::new(0) }; PHASES] };
    static COUNTERS: [Cell<u64>; COUNTS] = const { [const { Cell::new(0) }; COUNTS] };
}

thread_local! {
    /// The role (`SET ROLE`, `SET SESSION AUTHORIZATION`) whose scans the
    /// counters hold (0: none yet).
    static COUNTED_FOR: Cell<u32> = const { Cell::new(0) };
}

/// Makes the counters the current role's: a role other than the one whose
/// scans were counted starts from zero, so counts of scans of tables it may
/// not read never reach it (a pooled session changes roles between clients).
fn own_counters() {
    // SAFETY: reading a backend global (the role SET ROLE last set).
    let me = u32::from(unsafe { pgrx::pg_sys::GetOuterUserId() });
    if COUNTED_FOR.get() != me {
        reset();
        COUNTED_FOR.set(me);
    }
}

/// Reads `ivfpq.profile` once per scan (so one scan is timed all or nothing).
/// The caller passes false for a scan of a table the session's role may not
/// read in full (`info::may_read_every_row`: run with another role's rights
/// inside a `SECURITY DEFINER` function or a view, or limited by row-level
/// security): its counts would tell that role about rows it cannot read.
pub fn scan_begins(enabled: bool) {
    ON.with(|o| o.set(enabled));
    if enabled {
        own_counters();
    }
    count(Count::Scans, 1);
}

/// Puts back a started scan's own decision (`scan_begins`) before it runs
/// again: another scan of the same query (a nested loop, a LATERAL join) may
/// have begun since, with a decision of its own.
#[inline]
pub fn resume(enabled: bool) {
    ON.with(|o| o.set(enabled));
}

/// Runs `f`, user code a scan calls between its own counts (its filter, an
/// index expression), and then puts back the scan's decision: a scan that
/// `f` begins (a function in the filter that runs a query over an ivfpq
/// index) sets its own, and the calling scan's next counts followed it. A
/// scan not counted under row-level security then counted, as `filtered`,
/// the rows the policy hid from the caller (hunt-86).
#[inline]
pub fn outside<R>(f: impl FnOnce() -> R) -> R {
    let on = ON.with(|o| o.get());
    let r = f();
    ON.with(|o| o.set(on));
    r
}

/// A running timer, or None when profiling is off.
#[inline]
pub fn start() -> Option<Instant> {
    if ON.with(|o| o.get()) {
        Some(Instant::now())
    } else {
        None
    }
}

/// Adds the time since `t` (from [`start`]) to `phase`.
#[inline]
pub fn stop(t: Option<Instant>, phase: Phase) {
    if let Some(t) = t {
        let ns = t.elapsed().as_nanos() as u64;
        NANOS.with(|n| {
            let c = &n[phase as usize];
            c.set(c.get().saturating_add(ns));
        });
    }
}

/// Times `f` as `phase`.
#[inline]
pub fn time<R>(phase: Phase, f: impl FnOnce() -> R) -> R {
    let t = start();
    let r = f();
    stop(t, phase);
    r
}

/// Adds `n` to an event counter (only while profiling).
#[inline]
pub fn count(what: Count, n: u64) {
    if ON.with(|o| o.get()) {
        COUNTERS.with(|c| {
            let c = &c[what as usize];
            c.set(c.get().saturating_add(n));
        });
    }
}

thread_local! {
    /// Scan states allocated and not yet freed in this backend (scan.rs;
    /// `open_scans`, counted whether or not ivfpq.profile is on).
    static OPEN_SCANS: Cell<u64> = const { Cell::new(0) };
    /// Models in this backend's cache (model.rs; `models_cached`, kept
    /// whether or not ivfpq.profile is on).
    static MODELS_CACHED: Cell<u64> = const { Cell::new(0) };
}

/// The backend's model cache now holds `n` models (model.rs).
pub fn models_cached(n: usize) {
    MODELS_CACHED.with(|c| c.set(n as u64));
}

/// A scan state was allocated (ambeginscan).
pub fn scan_opened() {
    OPEN_SCANS.with(|n| n.set(n.get() + 1));
}

/// A scan state was freed (amendscan, or its query's memory going away).
pub fn scan_freed() {
    OPEN_SCANS.with(|n| n.set(n.get().saturating_sub(1)));
}

/// The counters as a JSON object: seconds per phase and event counts (of the
/// current role's scans only).
///
/// Inside a `SECURITY DEFINER` function every counter reads 0: the counters
/// are the session role's, and the function's owner (who may never have been
/// allowed to read the tables counted) must not learn them.
pub fn json() -> String {
    // SAFETY: reading backend globals (the current and the SET ROLE user).
    let borrowed = unsafe { pgrx::pg_sys::GetUserId() != pgrx::pg_sys::GetOuterUserId() };
    if !borrowed {
        own_counters();
    }
    let mut parts = Vec::new();
    NANOS.with(|n| {
        for (name, c) in NAMES.iter().zip(n.iter()) {
            let v = if borrowed { 0 } else { c.get() };
            parts.push(format!("\"{name}_s\":{:.9}", v as f64 * 1e-9));
        }
    });
    COUNTERS.with(|c| {
        for (name, v) in COUNT_NAMES.iter().zip(c.iter()) {
            let v = if borrowed { 0 } else { v.get() };
            parts.push(format!("\"{name}\":{v}"));
        }
    });
    parts.push(format!("\"open_scans\":{}", OPEN_SCANS.with(|n| n.get())));
    parts.push(format!(
        "\"models_cached\":{}",
        MODELS_CACHED.with(|n| n.get())
    ));
    format!("{{{}}}", parts.join(","))
}

/// Clears every counter.
pub fn reset() {
    NANOS.with(|n| n.iter().for_each(|c| c.set(0)));
    COUNTERS.with(|c| c.iter().for_each(|c| c.set(0)));
}

crate::v1! {
    /// `arrw.ivfpq_profile() -> jsonb`: this backend's scan counters.
    fn arrw_ivfpq_profile(_fcinfo) {
        crate::fmgr::text(&json())
    }
}

crate::v1! {
    /// `arrw.ivfpq_profile_reset() -> void`: clears them.
    fn arrw_ivfpq_profile_reset(_fcinfo) {
        reset();
        pgrx::pg_sys::Datum::from(0usize)
    }
}
