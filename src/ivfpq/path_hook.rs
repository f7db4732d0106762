//! arrw's `set_rel_pathlist_hook`: keeps an ivfpq index scan whose `ORDER BY`
//! reads a value of the calling plan (a `PARAM_EXEC`: a `LATERAL` outer row's
//! vector, a correlated subquery's) out of parallel workers.
//!
//! PostgreSQL judges a scan's parallel safety by its relation's target list
//! and filters, not by the expressions an index orders by; a worker is not
//! sent the executor parameters of the plan above its `Gather`, so a worker
//! that began such a scan (a `Parallel Append` over a partitioned table or a
//! `UNION ALL`, chosen under `LATERAL (... ORDER BY v <-> outer.q LIMIT k)`)
//! read an unset parameter while evaluating the ORDER BY key and died of a
//! segmentation fault, restarting the server. ivfpq's scan cost (re-ranking
//! from the table) is what made such plans win; the hook marks those paths
//! parallel-unsafe before the paths above them are built.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// The hook installed before ours, called first.
static mut PREV_SET_REL_PATHLIST: pg_sys::set_rel_pathlist_hook_type = None;

/// Installs the hook (once per backend, from `_PG_init`).
pub fn init() {
    // SAFETY: once, from _PG_init, on PostgreSQL's thread; the previous hook
    // is kept and called by ours.
    unsafe {
        PREV_SET_REL_PATHLIST = pg_sys::set_rel_pathlist_hook;
        pg_sys::set_rel_pathlist_hook = Some(set_rel_pathlist);
    }
}

/// Our `set_rel_pathlist_hook` (see the module docs).
#[pg_guard]
unsafe extern "C-unwind" fn set_rel_pathlist(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rti: pg_sys::Index,
    rte: *mut pg_sys::RangeTblEntry,
) {
    // SAFETY: PostgreSQL's arguments, forwarded to the previous hook; the
    // rel's path list holds Path nodes, each read only after its tag says it
    // is an IndexPath, whose IndexOptInfo and ORDER BY list are the planner's.
    unsafe {
        if let Some(prev) = PREV_SET_REL_PATHLIST {
            prev(root, rel, rti, rte);
        }
        if rel.is_null() || (*rel).pathlist.is_null() {
            return;
        }
        let paths = pgrx::PgList::<pg_sys::Path>::from_pg((*rel).pathlist);
        for path in paths.iter_ptr() {
            if path.is_null()
                || (*path).type_ != pg_sys::NodeTag::T_IndexPath
                || !(*path).parallel_safe
            {
                continue;
            }
            let ip = path as *mut pg_sys::IndexPath;
            let info = (*ip).indexinfo;
            if info.is_null() || !is_ivfpq(info) || (*ip).indexorderbys.is_null() {
                continue;
            }
            // The ORDER BY keys read a parameter set by the plan above.
            if !pg_sys::pull_paramids((*ip).indexorderbys as *mut pg_sys::Expr).is_null() {
                (*path).parallel_safe = false;
            }
        }
    }
}

/// Whether an index the planner considers is one of ours: its cached cost
/// estimate function is ours (no catalog lookup on this path, which runs for
/// every relation of every planned query).
///
/// # Safety
/// `info` is a live IndexOptInfo of the planner.
unsafe fn is_ivfpq(info: *mut pg_sys::IndexOptInfo) -> bool {
    // SAFETY: forwarded contract; the pointer is only compared, never called.
    let f = unsafe { (*info).amcostestimate };
    f.is_some_and(|f| f as *const () == super::cost::amcostestimate as *const ())
}
