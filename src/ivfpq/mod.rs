//! `ivfpq`: an IVF-PQ index access method for `vector`.
//!
//! The handler below is the table of contents: each callback PostgreSQL calls
//! lives in the file named beside it. The algorithms (k-means, PQ, ADC tables,
//! candidate selection) are in `arrw_core::ivf`; these files move data between
//! PostgreSQL pages and those routines.
//!
//! | callback | file | what it does |
//! |---|---|---|
//! | ambuild, ambuildempty | build.rs | sample, train, encode every row, write pages, WAL-log them |
//! | aminsert | insert.rs, pending.rs, append.rs | keep the row's entry until it must be visible, then encode a batch and append each list's rows a page at a time |
//! | ambeginscan, amrescan, amgettuple, amendscan | scan.rs | probe lists, ADC-score codes, re-rank from the heap |
//! | (re-rank's table reads) | fetch.rs | a batch's rows, pages pinned and rows located a stage at a time |
//! | (the query's `WHERE` on those rows) | prefilter.rs, fetch.rs | begins filtered scans at executor start (the hook: executor_hook.rs); fetch.rs checks their filter on each row read |
//! | amgettuple of `vector_maxsim_ops` (`@#`) | maxsim_scan.rs | per query vector: probe, gather rows, estimate MaxSim, re-rank |
//! | amgettuple itself | here | starts the scan (scan.rs) and hands it to one of the two |
//! | ambulkdelete, amvacuumcleanup | vacuum.rs | drop dead TIDs, compact pages |
//! | amcostestimate | cost.rs | make ORDER BY ... LIMIT plans pick the index |
//! | amoptions | options.rs | `lists`, `m`, `nbits`, `probes`, `rerank` |
//!
//! Page layout: layout.rs. Buffer, lock and WAL handling: page.rs.

// Functions in this module take `pg_sys::Relation` (a pointer) by value: it is
// the handle PostgreSQL passed to the access-method callback that is running, open
// and locked for that callback's duration, and these functions are only reached
// from those callbacks. Marking each of them `unsafe` would spread `unsafe` blocks
// over every caller without adding a check, so the lint is allowed here; the
// pointer dereferences themselves stay in `unsafe` blocks with SAFETY comments.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod append;
pub mod build;
pub mod cost;
pub mod executor_hook;
pub mod fetch;
pub mod info;
pub mod insert;
pub mod layout;
pub mod maxsim_query;
pub mod maxsim_scan;
pub mod model;
pub mod options;
pub mod page;
pub mod path_hook;
pub mod pending;
pub mod prefilter;
pub mod profile;
pub mod scan;
mod tempfile;
mod toast;
pub mod vacuum;

use pgrx::pg_sys;
use pgrx::prelude::*;

crate::v1! {
    /// `ivfpqhandler(internal) -> index_am_handler`
    fn arrw_ivfpq_handler(_fcinfo) {
        // SAFETY: makeNode-style allocation: palloc0 of the node in the current
        // memory context, then we fill every field PostgreSQL 15 reads.
        let am = unsafe {
            let am = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexAmRoutine>()) as *mut pg_sys::IndexAmRoutine;
            (*am).type_ = pg_sys::NodeTag::T_IndexAmRoutine;
            &mut *am
        };
        am.amstrategies = 0;
        am.amsupport = 1;
        am.amoptsprocnum = 0;
        am.amcanorder = false;
        am.amcanorderbyop = true;
        am.amcanbackward = false;
        am.amcanunique = false;
        am.amcanmulticol = false;
        am.amoptionalkey = true;
        am.amsearcharray = false;
        am.amsearchnulls = false;
        am.amstorage = false;
        am.amclusterable = false;
        am.ampredlocks = false;
        am.amcanparallel = false;
        am.amcaninclude = false;
        am.amusemaintenanceworkmem = false;
        am.amparallelvacuumoptions = pg_sys::VACUUM_OPTION_PARALLEL_BULKDEL as u8;
        am.amkeytype = pg_sys::InvalidOid;

        am.ambuild = Some(build::ambuild);
        am.ambuildempty = Some(build::ambuildempty);
        am.aminsert = Some(insert::aminsert);
        am.ambulkdelete = Some(vacuum::ambulkdelete);
        am.amvacuumcleanup = Some(vacuum::amvacuumcleanup);
        am.amcanreturn = None;
        am.amcostestimate = Some(cost::amcostestimate);
        am.amoptions = Some(options::amoptions);
        am.amproperty = None;
        am.ambuildphasename = Some(build::ambuildphasename);
        am.amvalidate = Some(amvalidate);
        am.amadjustmembers = None;
        am.ambeginscan = Some(scan::ambeginscan);
        am.amrescan = Some(scan::amrescan);
        am.amgettuple = Some(amgettuple);
        am.amgetbitmap = None;
        am.amendscan = Some(scan::amendscan);
        am.ammarkpos = None;
        am.amrestrpos = None;
        am.amestimateparallelscan = None;
        am.aminitparallelscan = None;
        am.amparallelrescan = None;
        pg_sys::Datum::from(am as *mut pg_sys::IndexAmRoutine)
    }
}

/// `amgettuple`: starts the scan (scan.rs), then runs a MaxSim scan of a
/// trained `vector_maxsim_ops` index (maxsim_scan.rs) or any other scan
/// (scan.rs). Dispatching here keeps the two scan files' imports one-way.
#[pg_guard]
unsafe extern "C-unwind" fn amgettuple(
    scan: pg_sys::IndexScanDesc,
    dir: pg_sys::ScanDirection::Type,
) -> bool {
    // SAFETY: PostgreSQL calls amgettuple with a scan ambeginscan began.
    let Some(st) = (unsafe { scan::begin(scan, dir) }) else {
        return false;
    };
    if st.multi.is_some() && st.meta.untrained == 0 {
        // SAFETY: scan is live and started.
        unsafe { maxsim_scan::gettuple(scan, st) }
    } else {
        // SAFETY: scan is live and started.
        unsafe { scan::gettuple(scan, st) }
    }
}

/// Operator classes are written by arrw's own SQL; nothing to validate.
#[pg_guard]
unsafe extern "C-unwind" fn amvalidate(_opclassoid: pg_sys::Oid) -> bool {
    true
}

/// Called from `_PG_init`: reloptions and GUCs.
pub fn init() {
    options::init();
    options::install_alter_check();
    pending::init();
    executor_hook::init();
    path_hook::init();
}
