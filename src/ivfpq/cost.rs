//! `amcostestimate`: make `ORDER BY embedding <op> $1 LIMIT k` use the index, and
//! never let the planner use it for anything else.
//!
//! The work of a scan happens before its first row: probe `probes` of `lists`
//! lists (reading that fraction of the data pages) and re-rank candidates from
//! the heap. So that is the startup cost; the per-row cost after it is small. The
//! planner scales the run cost by LIMIT / rows, which makes a small LIMIT cheap.

use super::{options, page};
use pgrx::pg_sys;

#[pg_guard]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C-unwind" fn amcostestimate(
    root: *mut pg_sys::PlannerInfo,
    path: *mut pg_sys::IndexPath,
    loop_count: f64,
    startup: *mut pg_sys::Cost,
    total: *mut pg_sys::Cost,
    selectivity: *mut pg_sys::Selectivity,
    correlation: *mut f64,
    pages: *mut f64,
) {
    // SAFETY: all pointers come from the planner for this call; the IndexPath's
    // indexinfo describes our index, which we open briefly (AccessShareLock is
    // already held by the planner) to read its meta page.
    unsafe {
        if (*path).indexorderbys.is_null() {
            // No ORDER BY distance: an ivfpq index cannot answer anything else.
            *startup = f64::INFINITY;
            *total = f64::INFINITY;
            *selectivity = 0.0;
            *correlation = 0.0;
            *pages = 0.0;
            return;
        }
        let info = (*path).indexinfo;
        let rel = pg_sys::index_open((*info).indexoid, pg_sys::NoLock as i32);
        let meta = page::read_meta(rel);
        let opts = options::of(rel);
        pg_sys::index_close(rel, pg_sys::NoLock as i32);
        let lists = meta.lists.max(1) as f64;
        let probes = (options::probes(
            opts.probes.max(0) as u32,
            meta.lists as usize,
            (meta.probes, meta.deep_probes),
        )
        .0 as f64)
            .min(lists);
        let ratio = if meta.untrained != 0 {
            1.0
        } else {
            probes / lists
        };

        let mut costs: pg_sys::GenericCosts = std::mem::zeroed();
        costs.numIndexTuples = ratio * (*info).tuples;
        pg_sys::genericcostestimate(root, path, loop_count, &mut costs);
        // A probe reads its lists' data pages only. With a refine code, most
        // of the index is fine pages (768 of every 902 bytes of a row at
        // 1,536 dimensions), of which a scan reads one per refined candidate:
        // counting them as probed made a 12,000-row table of 1,536-d halfvecs
        // look cheaper to sort whole (its TOASTed vectors are invisible to a
        // Seq Scan's cost) than to probe 4 of 12 lists, at 30 against 730 q/s.
        let index_pages = (*info).pages as f64;
        let data_row = f64::from(meta.code_size) + 6.0;
        let fine_row = if meta.refine_bytes > 0 {
            f64::from(meta.refine_bytes) + 6.0
        } else {
            0.0
        };
        let data_pages = index_pages * data_row / (data_row + fine_row);
        let visited = (ratio * data_pages).max(1.0);
        let seq_page = pg_sys::seq_page_cost;
        let cpu = pg_sys::cpu_operator_cost;
        let rerank = options::rerank(opts.rerank as i64) as f64;
        // Re-ranked candidates: a random heap fetch each; with a refine code,
        // a fine page visit each, and only about one in eight is fetched
        // (scan.rs, refined_batch).
        let heap_fetch = pg_sys::random_page_cost * 0.1 + cpu * 10.0;
        let rerank_cost = if fine_row > 0.0 {
            rerank * (seq_page * 0.1 + cpu * 10.0) + (rerank / 8.0).max(16.0) * heap_fetch
        } else {
            rerank * heap_fetch
        };
        let scan_cost = visited * seq_page + costs.numIndexTuples * cpu + rerank_cost;
        *startup = scan_cost;
        // Past the first batch, every further row costs a re-rank (a random heap
        // fetch) and, once the probed lists run dry, more probing. Charging that
        // per row of the table makes a plan that reads everything (ORDER BY
        // without LIMIT, large OFFSETs) prefer Seq Scan + Sort, while a small
        // LIMIT, which the planner applies as a fraction of this run cost, still
        // finds the index cheap. (root->limit_tuples would be more direct but is
        // unknown for generic plans with LIMIT $1.)
        let per_row = pg_sys::random_page_cost + cpu * 10.0;
        *total =
            scan_cost + costs.indexTotalCost - costs.indexStartupCost + (*info).tuples * per_row;
        *selectivity = costs.indexSelectivity;
        *correlation = 0.0;
        *pages = visited;
    }
}
use pgrx::prelude::*;
