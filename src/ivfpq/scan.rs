//! Index scans: `ORDER BY embedding <op> $1 LIMIT k`.
//!
//! The first call ranks all lists by centroid distance and reads the `probes`
//! nearest lists page by page (share lock on one page at a time), scoring every
//! code with the query's ADC tables into a candidate pool ordered by estimated
//! distance (bounded by `work_mem`). Candidates are then re-ranked `rerank` at a
//! time: their exact distances are computed from the vectors in the table
//! (fetched with the scan's snapshot, so dead and invisible rows drop out here).
//!
//! Rows leave in exact distance order across batches, not just within one
//! (`arrw_core::rerank::OrderedRerank`): the nearest re-ranked row is handed out
//! only when no candidate still waiting could be closer (its estimate minus the
//! largest amount by which estimates have overshot exact distances in this
//! scan, or 4 standard deviations above their mean if more) and, with `ivfpq.iterative_scan` on, no list not yet probed could hold a
//! closer row (its centroid distance plus the 2nd lowest of how far re-ranked
//! rows lay beyond their own list's centroid, `rerank::DEFAULT_LIST_RANK`). Otherwise the scan re-ranks the
//! next batch or probes the next list, up to `ivfpq.max_probes`. So a `WHERE`
//! clause that rejects most rows, or a `LIMIT` deeper than `rerank`, gets the
//! rows in the order an exact scan of the probed region would give; a plain
//! `LIMIT 10` still re-ranks one batch.
//!
//! With a refine code (`refine` index option, on by default from 256
//! dimensions), candidates pass through a stage in between: a batch of the
//! best coarse candidates is *refined*, re-estimated from the fine codes on the
//! fine pages beside their data page (read in block order, share lock, one page
//! at a time), and only the refined candidates that could still be among the
//! next rows are fetched from the table, a few at a time (`arrw_core::rerank`
//! has the margins of both stages). A fine entry whose TID is not its row's (a
//! crash or a racing VACUUM left it) is not trusted: that row is re-ranked from
//! the table directly.
//!
//! With `rerank = 0`, candidates are returned in estimated order without reading
//! the table. An untrained index (built empty) has no estimates: it ranks every
//! row exactly, in passes that each keep the next `work_mem / 48` rows
//! (`arrw_core::ivf::ExactPasses`), so a `LIMIT` query reads the table once and
//! memory does not grow with it.
//!
//! Every vector read from the table lives in a per-row memory context reset
//! after its distance is computed (out-of-line vectors are detoasted copies).

use super::layout::{self, DataGeom};
use super::profile::{self, Count, Phase};
use super::{fetch, model, options, page};
use crate::memctx::RowContext;
use arrw_core::ivf::{
    estimate_as_distance, exact_parts, short_pool_keep, CandidatePool, ExactPasses, IvfPqModel,
    Metric, RankedLists, ShortDemand,
};
use arrw_core::layout::FineGeom;
use arrw_core::rerank::{Next, OrderedRerank, DEFAULT_LIST_RANK, DEFAULT_QUANTILE};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub(super) struct ScanState {
    pub(super) started: bool,
    /// Whether this scan's work is counted by `ivfpq.profile` (decided once
    /// by `start`, put back on every `amgettuple`: scans of one query
    /// interleave, and each counts as its own decision says).
    profiled: bool,
    pub(super) query: Vec<f32>,
    pub(super) model: Option<Rc<IvfPqModel>>,
    /// The build `model` was read from (`model::key`): a rescan of the same
    /// build keeps it rather than asking the backend's cache again, which a
    /// query over more indexes than the cache holds had emptied of it (each
    /// of 20 rescans over 300 partitions read all 300 models; hunt-93).
    model_key: Option<model::Key>,
    pub(super) meta: layout::MetaData,
    /// Lists nearest first, ordered as far as probed (`RankedLists`).
    pub(super) ranked: RankedLists,
    /// Per list, the distance from the query to its centroid (exact space).
    pub(super) list_dist: Vec<f32>,
    pub(super) probed: usize,
    /// Candidates not yet re-ranked (batches select their best): see `Cand`.
    pub(super) pool: CandidatePool<Cand>,
    /// Re-ranked rows, handed out in exact order (see arrw_core::rerank).
    pub(super) order: OrderedRerank<Cand>,
    /// The index's fine geometry when it keeps a refine code.
    pub(super) fine: Option<FineGeom>,
    /// The query as the model sees it (normalised for cosine), for refining.
    pub(super) prepared: Vec<f32>,
    /// Fine-code estimates for this query (made at the first refine).
    pub(super) fine_query: Option<arrw_core::refine::FineQuery>,
    /// The query's lookup-table state between rounds of probing (made at the
    /// first, for `model`: see `QueryTables::into_parts`).
    pub(super) query_parts: Option<arrw_core::ivf::QueryParts>,
    /// Page buffers of `scan_list`, reused across rounds.
    pub(super) score_scratch: ScoreScratch,
    /// Without re-ranking: results ready to return in estimated order, best last.
    pub(super) ready: Vec<(f32, u64)>,
    /// Batches of estimates handed out so far (`rerank = 0`).
    pub(super) estimated_batches: usize,
    pub(super) probes: usize,
    /// Lists to have probed once `depth` reaches `DEEP_AFTER` (0: no such
    /// step; `options::probes`).
    pub(super) deep_probes: usize,
    /// Rows this scan has settled: handed out, or rejected by the query's
    /// filter (prefilter.rs).
    pub(super) depth: u64,
    /// Rows the plan will take from this scan, when a `LIMIT` right above it
    /// says (prefilter.rs reads it at executor start; 0: not known). Past
    /// `DEEP_AFTER`, the scan starts at its deep default.
    pub(super) rows_wanted: u64,
    /// The scan's plan node has a filter: the executor (or prefilter.rs)
    /// rejects some of the rows it hands out, so `rows_wanted` says little
    /// about how many candidates it will need.
    pub(super) filtered: bool,
    /// Rows to hold before the first leaves ([`hold_limit_rows`]): None when
    /// no `LIMIT` above the scan says how many the plan takes.
    pub(super) hold_rows: Option<u64>,
    /// Whether `hold_rows` are exactly the rows the `LIMIT` takes: nothing
    /// between the scan and the `LIMIT` drops rows but the node's filter,
    /// which the scan checks itself ([`set_rows_wanted`]). Otherwise the hold
    /// is a guess that the executor may show short.
    pub(super) hold_exact: bool,
    /// A conjunct of the node's filter that keeps only rows nearer than a
    /// distance, as the ORDER BY operator gives it, and whether a row at it
    /// is kept ([`set_distance_ceiling`]).
    pub(super) ceiling: Option<(f64, bool)>,
    /// The index build (model cache key) whose short-scan demand this scan's
    /// pool was sized by and will add to when it is done (None: not a short
    /// refined scan; see [`SHORT_DEMAND`]).
    pub(super) short_demand_of: Option<model::Key>,
    pub(super) rerank: usize,
    pub(super) iterative: bool,
    pub(super) max_probes: usize,
    pub(super) fetch: *mut pg_sys::IndexFetchTableData,
    pub(super) slot: *mut pg_sys::TupleTableSlot,
    pub(super) estate: *mut pg_sys::EState,
    pub(super) index_info: *mut pg_sys::IndexInfo,
    /// The index has expression columns (FormIndexDatum allocates per row).
    pub(super) has_exprs: bool,
    /// The heap column re-ranking reads keys from directly, page batch by page
    /// batch (fetch.rs), or None for the row-at-a-time path.
    pub(super) direct_column: Option<i16>,
    /// Per re-ranked row: detoasted vectors.
    pub(super) row: RowContext,
    /// Out-of-line keys, read through one TOAST index scan (toast.rs).
    pub(super) toast: super::toast::ToastReader,
    /// The table's block count as last counted (`fetch::check_heap_tid`).
    pub(super) heap_blocks: std::cell::Cell<u32>,
    /// Re-ranked out-of-line rows' sums until handed out (src/handed.rs).
    pub(super) handed: crate::handed::Pending,
    /// Untrained index: exact ranking in bounded passes; None once exhausted.
    pub(super) exact: Option<ExactPasses>,
    /// The index's size as last counted (`page::list_dir_counted`; 0: not yet).
    pub(super) nblocks: u32,
    /// A `vector_maxsim_ops` index's scan for `@#` (maxsim_scan.rs).
    pub(super) multi: Option<super::maxsim_query::MultiScan>,
    /// The memory context the scan lives in (its temporary file is made
    /// there: tempfile.rs).
    pub(super) ctx: pg_sys::MemoryContext,
    /// Rows handed out at the current distance (a row handed out twice is
    /// damage: `arrw_core::rerank::RepeatWatch`).
    pub(super) repeats: arrw_core::rerank::RepeatWatch,
    /// The plan node's filter, checked on each row read from the table
    /// (prefilter.rs); None when the executor alone checks it.
    pub(super) filter: Option<fetch::Prefilter>,
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambeginscan(
    index: pg_sys::Relation,
    nkeys: i32,
    norderbys: i32,
) -> pg_sys::IndexScanDesc {
    // SAFETY: RelationGetIndexScan allocates the descriptor (and the orderby
    // value arrays) in the current memory context, which lives as long as the scan.
    let scan = unsafe { pg_sys::RelationGetIndexScan(index, nkeys, norderbys) };
    // RelationGetIndexScan pallocs the descriptor without initializing
    // xs_orderbyvals/xs_orderbynulls: the AM owns them (as GiST does), and
    // hand_out writes through them, so they must point at real arrays.
    // SAFETY: palloc in the scan's memory context; norderbys entries each.
    unsafe {
        if norderbys > 0 {
            let n = norderbys as usize;
            (*scan).xs_orderbyvals =
                pg_sys::palloc0(n * std::mem::size_of::<pg_sys::Datum>()) as *mut pg_sys::Datum;
            let nulls = pg_sys::palloc(n) as *mut bool;
            std::ptr::write_bytes(nulls, 1, n);
            (*scan).xs_orderbynulls = nulls;
        } else {
            (*scan).xs_orderbyvals = std::ptr::null_mut();
            (*scan).xs_orderbynulls = std::ptr::null_mut();
        }
    }
    let row = RowContext::new(c"ivfpq re-rank row");
    let st = Box::new(ScanState {
        started: false,
        profiled: false,
        query: Vec::new(),
        model: None,
        model_key: None,
        meta: Default::default(),
        ranked: RankedLists::default(),
        list_dist: Vec::new(),
        probed: 0,
        pool: CandidatePool::new(1, 1),
        order: OrderedRerank::new(DEFAULT_QUANTILE, DEFAULT_LIST_RANK),
        fine: None,
        rows_wanted: 0,
        filtered: false,
        hold_rows: None,
        hold_exact: false,
        ceiling: None,
        short_demand_of: None,
        prepared: Vec::new(),
        fine_query: None,
        query_parts: None,
        score_scratch: ScoreScratch::default(),
        ready: Vec::new(),
        estimated_batches: 0,
        probes: 0,
        deep_probes: 0,
        depth: 0,
        rerank: 0,
        iterative: true,
        max_probes: 0,
        fetch: std::ptr::null_mut(),
        slot: std::ptr::null_mut(),
        estate: std::ptr::null_mut(),
        index_info: std::ptr::null_mut(),
        has_exprs: false,
        direct_column: None,
        row,
        toast: super::toast::ToastReader::none(),
        heap_blocks: std::cell::Cell::new(0),
        handed: Default::default(),
        exact: None,
        nblocks: 0,
        multi: None,
        filter: None,
        // SAFETY: reading this backend's current context, where the
        // descriptor (and the callback below) live.
        ctx: unsafe { pg_sys::CurrentMemoryContext },
        repeats: repeat_watch(),
    });
    // SAFETY: `scan` is the descriptor just allocated; opaque is ours. The
    // callback record is palloc'd in the context the descriptor lives in, and
    // runs when that context is reset or deleted, before its memory is freed.
    unsafe {
        (*scan).opaque = Box::into_raw(st) as *mut std::ffi::c_void;
        let cb = pg_sys::palloc0(std::mem::size_of::<pg_sys::MemoryContextCallback>())
            as *mut pg_sys::MemoryContextCallback;
        (*cb).func = Some(free_scan_state);
        (*cb).arg = scan as *mut std::ffi::c_void;
        pg_sys::MemoryContextRegisterResetCallback(pg_sys::CurrentMemoryContext, cb);
    }
    profile::scan_opened();
    scan
}

/// Frees the scan's state when the memory context of its descriptor goes away
/// without `amendscan` (a query ended by an ERROR or a cancel: the executor
/// does not end its scans then). The state is Rust heap memory (the candidate
/// pool, per-query buffers), which nothing else would free: every failed or
/// cancelled scan leaked it for the rest of the connection. Only Rust memory
/// is freed here; what the state holds of PostgreSQL's (buffer pins,
/// relations, locks) is released by the aborting transaction's resource
/// owner, as for any scan.
#[pg_guard]
unsafe extern "C-unwind" fn free_scan_state(arg: *mut std::ffi::c_void) {
    let scan = arg as pg_sys::IndexScanDesc;
    // SAFETY: `arg` is the descriptor registered in ambeginscan; the callback
    // runs before its context's memory is freed, so it is still readable;
    // amendscan nulls `opaque` when it has freed the state itself.
    unsafe {
        let p = (*scan).opaque as *mut ScanState;
        if !p.is_null() {
            (*scan).opaque = std::ptr::null_mut();
            // The aborting transaction closed its temporary file already.
            (*p).order.abandon_store();
            drop(Box::from_raw(p));
            profile::scan_freed();
        }
    }
}

/// Gives a scan just begun by [`ambeginscan`] its plan node's filter
/// (prefilter.rs, at executor start); rescans keep it.
///
/// # Safety
/// `scan` must be a scan begun by [`ambeginscan`] and not yet ended.
pub(super) unsafe fn set_prefilter(scan: pg_sys::IndexScanDesc, f: fetch::Prefilter) {
    // SAFETY: forwarded contract.
    unsafe { state(scan) }.filter = Some(f);
}

/// Tells the scan how many rows its plan will take (a `LIMIT` above it,
/// prefilter.rs), whether rows it hands out are dropped before they reach
/// the `LIMIT` (its node's filter, a join), how many of its first rows to
/// hold ([`hold_limit_rows`]: more than `rows` when the executor drops rows
/// the scan cannot check itself), and whether those are exactly the rows the
/// `LIMIT` takes ([`ScanState::hold_exact`]); kept across rescans.
///
/// # Safety
/// `scan` must be a scan begun by [`ambeginscan`] and not yet ended.
pub(super) unsafe fn set_rows_wanted(
    scan: pg_sys::IndexScanDesc,
    rows: u64,
    filtered: bool,
    hold: u64,
    hold_exact: bool,
) {
    // SAFETY: forwarded contract.
    let st = unsafe { state(scan) };
    if rows > 1 {
        st.rows_wanted = rows;
    }
    st.filtered = filtered;
    st.hold_rows = Some(hold);
    st.hold_exact = hold_exact;
}

/// Tells the scan that its node's filter keeps only rows whose distance (as
/// the ORDER BY operator gives it) is below `ceiling` (at most it, when
/// `inclusive`): `WHERE embedding <=> $1 < 0.3` beside `ORDER BY embedding
/// <=> $1` (prefilter.rs finds it). Rows leave in exact order, so once
/// nothing the scan has not explored can be nearer than that, no row after
/// can pass, and the scan ends (`OrderedRerank::set_ceiling`); kept across
/// rescans.
///
/// # Safety
/// `scan` must be a scan begun by [`ambeginscan`] and not yet ended.
pub(super) unsafe fn set_distance_ceiling(
    scan: pg_sys::IndexScanDesc,
    ceiling: f64,
    inclusive: bool,
) {
    // SAFETY: forwarded contract.
    let st = unsafe { state(scan) };
    st.ceiling = Some((ceiling, inclusive));
}

/// The ceiling of [`set_distance_ceiling`] in the queue's distances (squared
/// for L2), widened by far more than the last bits in which the scan's exact
/// distances and the operator's may differ, so that no row the filter keeps
/// is left out for them.
fn queue_ceiling(metric: Metric, ceiling: f64) -> f32 {
    let c = if metric == Metric::L2 {
        if ceiling < 0.0 {
            // No distance is below a negative one.
            return f32::NEG_INFINITY;
        }
        ceiling * ceiling
    } else {
        ceiling
    };
    if !c.is_finite() {
        return c as f32;
    }
    (c + c.abs() * 1e-5 + 1e-9) as f32
}

/// Whether the scan checks its node's filter itself (prefilter.rs), so that
/// the rows it holds for a `LIMIT` are rows the `LIMIT` takes.
///
/// # Safety
/// `scan` must be a scan begun by [`ambeginscan`] and not yet ended.
pub(super) unsafe fn checks_filter(scan: pg_sys::IndexScanDesc) -> bool {
    // SAFETY: forwarded contract: the scan's relations are open; rd_index's
    // key array has at least one entry (ivfpq indexes have one key column).
    unsafe {
        let st = state(scan);
        if st.filter.is_none() {
            return false;
        }
        let (index, heap) = ((*scan).indexRelation, (*scan).heapRelation);
        // MaxSim scans check it on every row they re-rank; single-vector ones
        // on the batched path only (fetch::direct_column: a heap table, a
        // plain column key), which the scan will take.
        model::is_multi(index)
            || (!heap.is_null()
                && (*heap).rd_tableam == pg_sys::GetHeapamTableAmRoutine()
                && (*(*index).rd_index).indkey.values.as_slice(1)[0] > 0)
    }
}

/// # Safety
/// `scan` must be a scan begun by [`ambeginscan`] and not yet ended.
unsafe fn state<'a>(scan: pg_sys::IndexScanDesc) -> &'a mut ScanState {
    // SAFETY: opaque was set to a leaked Box<ScanState> in ambeginscan.
    unsafe { &mut *((*scan).opaque as *mut ScanState) }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amrescan(
    scan: pg_sys::IndexScanDesc,
    _keys: pg_sys::ScanKey,
    _nkeys: i32,
    orderbys: pg_sys::ScanKey,
    norderbys: i32,
) {
    // This transaction's own new rows are visible to a scan from its next
    // command on: their entries must be on the pages first (pending.rs).
    // SAFETY: scan is ours; its index relation is open.
    super::pending::flush_index(unsafe { (*scan).indexRelation });
    // SAFETY: scan is ours; orderbys has norderbys entries and orderByData room
    // for as many (RelationGetIndexScan sized it).
    unsafe {
        if !orderbys.is_null() && norderbys > 0 {
            std::ptr::copy(orderbys, (*scan).orderByData, norderbys as usize);
        }
        let st = state(scan);
        record_short_demand(st);
        profile::count(Count::Late, st.order.late());
        st.started = false;
        st.pool = CandidatePool::new(1, 1);
        st.order = OrderedRerank::new(DEFAULT_QUANTILE, DEFAULT_LIST_RANK);
        st.repeats = repeat_watch();
        st.fine = None;
        st.fine_query = None;
        st.handed.clear();
        st.query_parts = None;
        st.ready.clear();
        st.estimated_batches = 0;
        st.ranked = RankedLists::default();
        st.probed = 0;
        st.exact = None;
        st.multi = None;
    }
}

/// The scan's state for `amgettuple` (mod.rs), started on the first call;
/// None when the scan returns nothing (no ORDER BY, a NULL `vector[]` query).
///
/// # Safety
/// `scan` must be a scan begun by [`ambeginscan`] and not yet ended.
pub(super) unsafe fn begin<'a>(
    scan: pg_sys::IndexScanDesc,
    dir: pg_sys::ScanDirection::Type,
) -> Option<&'a mut ScanState> {
    if dir != pg_sys::ScanDirection::ForwardScanDirection {
        crate::errors::error(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "ivfpq index scans only go forward".into(),
        );
    }
    // SAFETY: scan is ours and live.
    let st = unsafe { state(scan) };
    if !st.started {
        // SAFETY: scan is live (this function's contract), `st` its state.
        if !unsafe { start(scan, st) } {
            return None;
        }
    } else {
        profile::resume(st.profiled);
    }
    Some(st)
}

/// `amgettuple` of a single-vector scan, or of a MaxSim scan of an untrained
/// index (exact passes).
///
/// # Safety
/// `scan` must be live and started (`begin`).
pub(super) unsafe fn gettuple(scan: pg_sys::IndexScanDesc, st: &mut ScanState) -> bool {
    loop {
        if st.meta.untrained != 0 || st.rerank == 0 {
            if let Some((dist, tid)) = st.ready.pop() {
                // Not read from the table here, so its block is checked here.
                // SAFETY: scan is live.
                unsafe {
                    super::fetch::check_heap_tid(scan, layout::u64_tid(tid), &st.heap_blocks);
                    hand_out(scan, st.meta.metric, dist, tid)
                };
                return true;
            }
        }
        if st.meta.untrained != 0 {
            if st.exact.is_none() {
                return false;
            }
            // SAFETY: scan is live; the pass fetches heap tuples with its snapshot.
            unsafe { exact_pass(scan, st) };
            continue;
        }
        let limit = probe_limit(st);
        if st.rerank == 0 {
            // Estimated order, batch by batch (documented as approximate).
            if st.pool.needs_reoffer() {
                // SAFETY: scan is live.
                unsafe { reoffer(scan, st) };
                continue;
            }
            if !st.pool.is_empty() {
                let metric = st.model.as_ref().expect("started").metric;
                let n = estimated_batch(st.rows_wanted, st.estimated_batches);
                st.estimated_batches += 1;
                let mut batch: Vec<(f32, u64)> = st
                    .pool
                    .pop_best(n)
                    .into_iter()
                    .map(|(e, t)| (estimate_as_distance(metric, e), untag(t.tag)))
                    .collect();
                batch.sort_by(|a, b| b.0.total_cmp(&a.0));
                st.ready = batch;
                continue;
            }
            if st.probed < limit && (st.probed == 0 || st.iterative) {
                let upto = (st.probed + st.probes).min(limit);
                // SAFETY: scan is live.
                unsafe { probe_lists(scan, st, upto) };
                continue;
            }
            return false;
        }
        // Re-ranked rows leave in exact order: a row goes only when neither a
        // candidate still waiting nor a list not yet probed is likely to hold a
        // closer one (arrw_core::rerank). Lists beyond the first `probes` are
        // probed one at a time, and only with ivfpq.iterative_scan on.
        // Past its first rows a scan probes the lists that hold the deeper
        // neighbours too (arrw_core::calibrate: a LIMIT 100 or a selective
        // filter settles that many rows before it is done), at once rather
        // than one by one as the list slack admits them. This is part of the
        // index's default probes, so it applies with iterative scans off too
        // (they then probe no list beyond it).
        let deep = st.deep_probes.min(limit);
        if st.depth >= DEEP_AFTER && st.probed < deep {
            // SAFETY: scan is live.
            unsafe { probe_lists(scan, st, deep) };
            continue;
        }
        let metric = st.model.as_ref().expect("started").metric;
        let t = profile::start();
        // While a group of equal estimates is split (CandidatePool::
        // split_estimate), a candidate of it may lie anywhere: nothing leaves
        // until the group has been re-ranked.
        let candidate = if st.pool.split_estimate().is_some() {
            Some(f32::NEG_INFINITY)
        } else {
            st.pool.best().map(|e| estimate_as_distance(metric, e))
        };
        let next_list = (st.iterative && st.probed < limit).then(|| {
            st.ranked.order_through(st.probed + 1);
            st.list_dist[st.ranked.get(st.probed).0 as usize]
        });
        let next = st.order.next(candidate, next_list);
        profile::stop(t, Phase::Order);
        // The pool kept only the best few thousand candidates of the probed
        // lists; when the next step takes from it and it is spent, the lists
        // offer theirs again first.
        let takes_pool = match next {
            Next::Refine => true,
            Next::Rerank => st.fine.is_none(),
            _ => false,
        };
        if takes_pool && st.pool.needs_reoffer() {
            // SAFETY: scan is live.
            unsafe { reoffer(scan, st) };
            continue;
        }
        match next {
            Next::Row(dist, c) => {
                profile::count(Count::Returned, 1);
                st.depth += 1;
                if st.repeats.repeated(dist, untag(c.tag)) {
                    // SAFETY: scan is live.
                    unsafe { repeated_row(scan, untag(c.tag), list_of(c.tag)) };
                }
                // The executor computes the ORDER BY expression of this row
                // next: an out-of-line row's sums go where the operator finds
                // them (src/handed.rs).
                st.handed.handed_out(untag(c.tag), metric, &st.query);
                // SAFETY: scan is live.
                unsafe { hand_out(scan, st.meta.metric, dist, untag(c.tag)) };
                return true;
            }
            // SAFETY: scan is live; these fetch heap tuples with its snapshot.
            Next::Rerank if st.fine.is_some() => unsafe { rerank_refined(scan, st) },
            // SAFETY: as above.
            Next::Rerank => unsafe { refill(scan, st) },
            // SAFETY: as above.
            Next::Refine => unsafe { refine(scan, st) },
            Next::Probe => {
                let upto = (st.probed + 1).min(limit);
                // SAFETY: scan is live.
                unsafe { probe_lists(scan, st, upto) };
            }
            Next::Done => return false,
        }
    }
}

/// A watch for rows handed out twice (`arrw_core::rerank::RepeatWatch`) that
/// remembers as many rows as a sixteenth of `work_mem` holds (~16 bytes a
/// row; 16,384 at the default 4 MB, and at least 4,096).
fn repeat_watch() -> arrw_core::rerank::RepeatWatch {
    // SAFETY: reading this backend's GUC variable.
    let kb = unsafe { pg_sys::work_mem } as usize;
    arrw_core::rerank::RepeatWatch::remembering((kb * 1024 / 16 / 16).max(4096))
}

/// XX002 for a row two entries of a single-vector index name (see
/// `arrw_core::rerank::RepeatWatch`): handed out twice before, silently.
///
/// # Safety
/// `scan` must be live.
#[cold]
unsafe fn repeated_row(scan: pg_sys::IndexScanDesc, tid: u64, list: u32) -> ! {
    let (blk, off) = layout::u64_tid(tid);
    // SAFETY: live scan (forwarded contract).
    let index = unsafe { (*scan).indexRelation };
    page::corrupt_message(
        index,
        format!(
            "ivfpq index \"{}\" is corrupted: two of its entries point at one row (heap block {blk}, offset {off}; one of them in list {list})",
            page::rel_name(index)
        ),
    )
}

/// How many lists a scan may probe: all, or `ivfpq.max_probes`.
///
/// `ivfpq.max_probes` bounds what an iterative scan adds past its `probes`,
/// never the `probes` themselves (as pgvector's `ivfflat.max_probes`): a
/// `max_probes` of 2 cut an explicit `ivfpq.probes = 10` to 2 lists.
fn probe_limit(st: &ScanState) -> usize {
    if st.max_probes > 0 {
        st.max_probes.max(st.probes).min(st.ranked.len())
    } else {
        st.ranked.len()
    }
}

/// A pool entry: the heap TID (48 bits) with the candidate's list above it, so a
/// re-ranked row's list distance is known (lists < 2^16, see ivf::MAX_LISTS).
fn tag(tid: u64, list: u32) -> u64 {
    tid | (u64::from(list) << 48)
}

pub(super) fn untag(tagged: u64) -> u64 {
    tagged & ((1 << 48) - 1)
}

fn list_of(tagged: u64) -> u32 {
    (tagged >> 48) as u32
}

/// A candidate: its tagged TID (`tag`), and where its fine entry is: the data
/// block and slot it was read from, or `NO_FINE` (its page has no fine pages).
/// Ordered by its fields, so ties between equal distances break the same way
/// in every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Cand {
    pub(super) tag: u64,
    pub(super) blk: u32,
    pub(super) slot: u32,
}

/// Candidates of one estimate are ordered by their row (and list): a pool
/// splits a group of equal estimates by it (arrw_core::ivf::PoolTie).
/// A held row beyond `work_mem` goes to the scan's temporary file
/// (tempfile.rs) as these 16 bytes.
impl arrw_core::spill::Record for Cand {
    const BYTES: usize = 16;
    fn put(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.tag.to_le_bytes());
        out[8..12].copy_from_slice(&self.blk.to_le_bytes());
        out[12..16].copy_from_slice(&self.slot.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Cand {
            tag: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            blk: u32_at(8),
            slot: u32_at(12),
        }
    }
}

impl arrw_core::ivf::PoolTie for Cand {
    fn pool_tie(&self) -> u32 {
        arrw_core::ivf::tie_of(self.tag)
    }
}

pub(super) const NO_FINE: u32 = u32::MAX;

/// Sets the scan's current row and its ORDER BY value.
///
/// # Safety
/// `scan` must be live.
pub(super) unsafe fn hand_out(scan: pg_sys::IndexScanDesc, metric: u32, dist: f32, tid: u64) {
    let (blk, off) = layout::u64_tid(tid);
    // SAFETY: xs_orderbyvals/nulls, when allocated, have numberOfOrderBys
    // entries (the executor does not read them: xs_recheckorderby is false).
    unsafe {
        let t = &mut (*scan).xs_heaptid;
        t.ip_blkid.bi_hi = (blk >> 16) as u16;
        t.ip_blkid.bi_lo = blk as u16;
        t.ip_posid = off;
        (*scan).xs_recheck = false;
        (*scan).xs_recheckorderby = false;
        if (*scan).numberOfOrderBys > 0 && !(*scan).xs_orderbyvals.is_null() {
            *(*scan).xs_orderbyvals = crate::fmgr::float8(user_distance(metric, dist));
            *(*scan).xs_orderbynulls = false;
        }
    }
}

/// The value of the ORDER BY operator from the internal distance.
fn user_distance(metric: u32, d: f32) -> f64 {
    if metric == Metric::L2.to_u8() as u32 {
        (d.max(0.0) as f64).sqrt()
    } else {
        d as f64
    }
}

/// ERROR: a query of `got` dimensions for an index of `dim`, worded as the
/// distance operators (and pgvector's index scans) word it for the query's
/// type (`different vector dimensions 4 and 3`, or `halfvec`).
///
/// # Safety
/// `query` must be the scan's non-null ORDER BY argument.
unsafe fn refuse_other_dim(query: pg_sys::Datum, dim: usize, got: usize) {
    // SAFETY: forwarded contract.
    let half = unsafe { crate::vector::key_is_half(query) };
    crate::errors::check_vector(if half {
        arrw_core::half::check_same_dims(dim, got)
    } else {
        arrw_core::text::check_same_dims(dim, got)
    });
}

/// First call after (re)scan: read the query and the model, rank the lists.
///
/// # Safety
/// `scan` must be live.
unsafe fn start(scan: pg_sys::IndexScanDesc, st: &mut ScanState) -> bool {
    st.started = true;
    // The counters count every row the index holds, so only a scan of a table
    // whose every row the session's role may read counts (info.rs).
    let profiled = options::PROFILE.get()
        // SAFETY: live scan: its index relation is open.
        && super::info::may_read_every_row(unsafe { (*(*(*scan).indexRelation).rd_index).indrelid });
    st.profiled = profiled;
    profile::scan_begins(profiled);
    let t = profile::start();
    // SAFETY: orderByData[0] was filled by amrescan.
    let (index, key) = unsafe { ((*scan).indexRelation, &*(*scan).orderByData) };
    // SAFETY: reading a field of the live scan.
    if unsafe { (*scan).numberOfOrderBys } < 1 {
        return false;
    }
    let multi = model::is_multi(index);
    // A NULL query (a parameter, an outer row's value): every row is at a
    // NULL distance, so a sequential scan returns all of them, in no
    // particular order, and so does this scan (below). A MaxSim index holds
    // a row once per element, and handing each row out once would take a set
    // of every row seen, growing with the table: it returns none
    // (docs/multivector.md).
    let null_query = key.sk_flags & pg_sys::SK_ISNULL as i32 != 0;
    if null_query && multi {
        return false;
    }
    if null_query {
        // A stand-in query is set once the dimension is known.
        st.query.clear();
    } else if multi {
        // SAFETY: the ORDER BY argument of `@#` is a non-null vector[] datum.
        st.multi = Some(unsafe { super::maxsim_query::MultiScan::new(key.sk_argument) });
    } else {
        // SAFETY: the ORDER BY argument is a non-null vector datum.
        st.query = unsafe { crate::vector::VectorArg::from_key(key.sk_argument) }
            .x
            .to_vec();
    }
    st.meta = page::meta(index);
    let build = model::key(index, &st.meta);
    let model = match &st.model {
        Some(m) if st.model_key == Some(build) => {
            // The meta page was read again: held to the model kept.
            model::agree(index, &st.meta, m);
            m.clone()
        }
        _ => model::load(index, &st.meta),
    };
    // An index built on an empty table has no model to hold the query to; a
    // declared dimension (vector(n)), or the first row inserted since, still
    // does: a query of another one is the operators' ERROR at once, as on a
    // trained index (it was only raised by the first row compared, and not at
    // all on an empty table).
    let untrained_dim = if st.meta.untrained != 0 {
        model::untrained_dim(index, &st.meta)
    } else {
        0
    };
    if null_query {
        // Any vector of the index's dimension will do: what it ranks by is
        // not handed out (the executor reads no ORDER BY value from an ivfpq
        // scan), and the scan below returns every row. A unit vector keeps
        // cosine estimates finite.
        let dim = if st.meta.untrained == 0 {
            model.dim
        } else {
            untrained_dim
        };
        if dim == 0 {
            // No row has given the index a dimension: it holds no row.
            return false;
        }
        st.query = vec![0.0; dim];
        st.query[0] = 1.0;
    } else if let Some(m) = &st.multi {
        if st.meta.untrained == 0 {
            m.check_dim(model.dim);
        } else if untrained_dim > 0 {
            m.check_dim(untrained_dim);
        }
    } else if st.meta.untrained != 0 {
        if untrained_dim > 0 && st.query.len() != untrained_dim {
            // SAFETY: the ORDER BY argument read above.
            unsafe { refuse_other_dim(key.sk_argument, untrained_dim, st.query.len()) };
        }
    } else if st.query.len() != model.dim {
        // SAFETY: the ORDER BY argument read above.
        unsafe { refuse_other_dim(key.sk_argument, model.dim, st.query.len()) };
    }
    // Index options are read from the relcache entry (not the meta page), so
    // ALTER INDEX ... SET (probes = ...) takes effect at once.
    let opts = options::of(index);
    let (probes, deep_probes) = options::probes(
        opts.probes.max(0) as u32,
        st.meta.lists as usize,
        (st.meta.probes, st.meta.deep_probes),
    );
    st.probes = probes.max(1);
    st.deep_probes = deep_probes;
    // A plan that will take more rows than the first default is measured for
    // (a `LIMIT 100`) starts at the deep default: the lists it would add
    // after its first rows could hold rows closer than those, which would
    // then come out after them.
    // So does a scan no `LIMIT` bounds (a cursor, `ORDER BY` alone, a `LIMIT`
    // from a subquery), which holds its first [`UNKNOWN_LIMIT_HOLD`] rows:
    // such scans started at the first default and, their rows held, still
    // had a farther row before a nearer one in 7 of 100 cursor reads of 100
    // rows (16-d, 10k rows, index defaults).
    // And so does a scan whose rows are filtered or dropped before the LIMIT
    // (its filter, a join): it will go past its first 10 rows, and a LIMIT 10
    // behind a filter passing 90% had a row out of order in 5 of 200 answers
    // (the deep lists, added past 10 rows, held nearer ones).
    let deep = st.rows_wanted > DEEP_AFTER || st.hold_rows.is_none() || st.filtered;
    if deep && st.deep_probes > st.probes {
        st.probes = st.deep_probes;
    }
    st.depth = 0;
    st.rerank = options::rerank(opts.rerank as i64);
    st.iterative = options::ITERATIVE_SCAN.get();
    st.max_probes = options::MAX_PROBES.get().max(0) as usize;
    if null_query {
        // Every row, read from the codes alone (`rerank = 0`'s path: no
        // distance to order by is read from the table), every list at once.
        st.rerank = 0;
        st.iterative = true;
        st.max_probes = 0;
        st.probes = (st.meta.lists as usize).max(1);
    }
    profile::stop(t, Phase::Setup);
    st.fine = if st.meta.untrained == 0 && model.refine.is_some() && !multi {
        layout::FineGeom::of(&st.meta)
    } else {
        None
    };
    if st.meta.untrained != 0 {
        st.ranked = RankedLists::new(vec![(0, 0.0)]);
        st.ranked.order_through(1);
        st.exact = Some(ExactPasses::new(pool_cap()));
    } else if multi {
        // Lists are ranked per query vector when the first row is asked for.
    } else {
        let t = profile::start();
        let dists = model.list_distances(&st.query);
        st.list_dist = dists
            .iter()
            .map(|&(_, d)| estimate_as_distance(model.metric, d))
            .collect();
        st.ranked = RankedLists::new(dists);
        st.ranked.order_through(st.probes);
        profile::stop(t, Phase::Rank);
        // Candidates by estimate: the first batch is kept apart cheaply (see
        // CandidatePool), the rest held for later batches, within work_mem.
        // A `LIMIT 10` with no filter, on an index with a refine code, pops
        // only what its refine stage needs: a pool sized by what such scans
        // of this index popped lately is cut more cheaply
        // (arrw_core::ivf::short_pool_keep).
        let short = (1..=DEEP_AFTER).contains(&st.rows_wanted)
            && !st.filtered
            && st.fine.is_some()
            && st.rerank > 0;
        // Keyed like the model cache: a REINDEX or TRUNCATE starts over.
        let key = model::key(index, &st.meta);
        st.short_demand_of = short.then_some(key);
        st.pool = if short {
            let demand = SHORT_DEMAND.with(|m| m.borrow().get(&key).and_then(|d| d.get()));
            CandidatePool::with_keep(st.rerank, short_pool_keep(st.rerank, demand), pool_cap())
        } else if st.rerank > 0 {
            CandidatePool::new(st.rerank, pool_cap())
        } else {
            // The first batch may be a LIMIT's few rows; the later ones are
            // ESTIMATED_BATCH, and the pool keeps for them as it always did.
            let keep = ESTIMATED_BATCH * 8;
            CandidatePool::with_keep(estimated_batch(st.rows_wanted, 0), keep, pool_cap())
        };
    }
    if st.fine.is_some() {
        st.prepared = model.prepared_query(&st.query);
    }
    let order = OrderedRerank::new(DEFAULT_QUANTILE, DEFAULT_LIST_RANK);
    let order = if st.fine.is_some() {
        order
            .with_refine()
            .with_coarse_fine_sigmas(options::REFINE_SIGMAS.get())
    } else {
        order
    };
    // Inner-product and cosine estimates err by nothing on average: their
    // margins take the errors' spread around zero (OrderedRerank docs).
    st.order = if model.metric != Metric::L2 && !multi {
        order.with_centered_errors()
    } else {
        order
    };
    if !multi {
        hold_limit_rows(st);
        if let Some((c, inclusive)) = st.ceiling {
            st.order
                .set_ceiling(queue_ceiling(model.metric, c), inclusive);
        }
    }
    st.query_parts = None;
    st.model = Some(model);
    st.model_key = Some(build);
    if st.meta.untrained == 0 && !multi {
        let upto = st.probes.min(probe_limit(st));
        // SAFETY: scan is live.
        unsafe { probe_lists(scan, st, upto) };
    }
    true
}

thread_local! {
    /// Per index build (the model cache's key, `model::key`), what this
    /// backend's recent short refined scans popped from their candidate pools
    /// (arrw_core::ivf::short_pool_keep): a performance hint only, since a
    /// pool that keeps too few re-offers its lists and loses nothing. At most
    /// [`SHORT_DEMAND_INDEXES`] entries.
    static SHORT_DEMAND: RefCell<HashMap<model::Key, ShortDemand>> = RefCell::new(HashMap::new());
}

/// Indexes whose short-scan demand a backend remembers; past that the table
/// starts over (each index then sizes its next scan's pool as for the first).
const SHORT_DEMAND_INDEXES: usize = 256;

/// Adds what a finished (or restarted) short refined scan popped to its
/// index's demand, once.
fn record_short_demand(st: &mut ScanState) {
    let Some(key) = st.short_demand_of.take() else {
        return;
    };
    // A scan stopped before its first row (a rescan, an executor that quit
    // early) says nothing about what a scan needs.
    if !st.started || st.depth == 0 {
        return;
    }
    let popped = st.pool.popped();
    SHORT_DEMAND.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= SHORT_DEMAND_INDEXES && !m.contains_key(&key) {
            m.clear();
        }
        m.entry(key).or_default().record(popped);
    });
}

/// A `LIMIT` right above the scan will take its first `rows_wanted` rows:
/// none leaves before all of them are settled, so that the lists and
/// candidates the deeper ones need are explored, and the margin learnt from
/// them, before the nearer ones leave (`OrderedRerank::hold_first`). They
/// wait in memory, ~36 bytes each (the row and its key among the held): at
/// most a quarter of the candidates the pool may keep, so the two stay
/// within `work_mem` together; a larger `LIMIT` holds that many of its first
/// rows. Called once `st.order` is made for the scan (single-vector and
/// MaxSim scans alike); it also bounds the queue's memory
/// ([`spill_beyond_work_mem`]).
///
/// With no `LIMIT` that says how many rows the plan takes (a cursor, a
/// `LIMIT` fed by a subquery or an outer row, no `LIMIT` at all) the scan
/// holds [`UNKNOWN_LIMIT_HOLD`]: its first rows left as soon as the margin
/// learnt from the first few re-ranked rows cleared them, and 19 of 100
/// cursor reads of 100 rows (16-d, 10k rows, index defaults) had a farther row
/// before a nearer one; MaxSim scans, 5 of 20 among their first 10.
pub(super) fn hold_limit_rows(st: &mut ScanState) {
    spill_beyond_work_mem(st);
    let unknown = if st.multi.is_some() {
        UNKNOWN_LIMIT_HOLD_MAXSIM
    } else {
        UNKNOWN_LIMIT_HOLD
    };
    let hold = st.hold_rows.unwrap_or(unknown);
    if hold > 1 {
        let cap = pool_cap() / 4;
        st.order.hold_first(hold.min(cap as u64) as usize);
        // Asked past the held rows, the executor dropped rows this guess
        // did not count for: hold the next ones too (twice as many each time).
        // Not in MaxSim scans: there the held rows wait on gathers that leave
        // out every row taken, and holding again let 9 of 20 `LIMIT 100`
        // answers behind an `IN (subquery)` filter out of order, against 2
        // without (hunt-152).
        if st.multi.is_none() {
            st.order.hold_again_up_to(cap);
        }
    }
}

/// Bounds the rows the scan's queue keeps in memory (called as the queue is
/// made, with [`hold_limit_rows`]): a quarter of `work_mem` of them (the
/// candidate pool takes the rest, `pool_cap`), the rest in a temporary file
/// (tempfile.rs, made only when needed). How many re-ranked
/// rows wait is set by the data, not by the scan: every row whose estimate
/// lies within the margin of the nearest waiting row's distance. On vectors
/// whose distances crowd together (random ones, near-copies) that is most of
/// what a deep scan has read: a cursor through 300,000 random 128-d rows held
/// ~10 MB of them at `work_mem = 4MB` (5 MB at 64kB), growing with the table.
fn spill_beyond_work_mem(st: &mut ScanState) {
    // SAFETY: reading this backend's GUC variable.
    let budget = unsafe { pg_sys::work_mem } as usize * 1024;
    // A heap's vector may double past its cap: two rows' room per row kept.
    let cap = budget / 4 / (2 * OrderedRerank::<Cand>::READY_BYTES);
    st.order
        .spill_to(cap, Box::new(super::tempfile::TempRuns::new(st.ctx)));
}

/// Rows a scan holds when no `LIMIT` says how many it will hand out (see
/// [`hold_limit_rows`]).
const UNKNOWN_LIMIT_HOLD: u64 = 100;

/// The same for a MaxSim scan, each of whose rows costs the MaxSim of a whole
/// array read from the table: 30 settled the first 10 rows of the queries
/// above (0 of 20 out of order).
const UNKNOWN_LIMIT_HOLD_MAXSIM: u64 = 30;

/// Bytes of `work_mem` per candidate the pool may keep: a (distance,
/// candidate) takes 24 and the pool holds up to twice its cap between trims.
/// [`pool_cap`] and [`work_mem_kb_holding`], its inverse, both take it from
/// here, so an error that names a `work_mem` names one that holds what it says.
const POOL_BYTES_PER_CAND: usize = 2 * std::mem::size_of::<(f32, Cand)>();

/// Most candidates kept per round: `work_mem` / [`POOL_BYTES_PER_CAND`] (48),
/// at least 1000.
pub(super) fn pool_cap() -> usize {
    // SAFETY: reading this backend's GUC variable.
    ((unsafe { pg_sys::work_mem } as usize * 1024) / POOL_BYTES_PER_CAND).max(1000)
}

/// The least `work_mem` (in kB) whose [`pool_cap`] is at least `cands`.
fn work_mem_kb_holding(cands: u64) -> u64 {
    (cands.saturating_mul(POOL_BYTES_PER_CAND as u64)).div_ceil(1024)
}

/// Probes lists `ranked[probed..upto]`: scores their codes into the
/// candidate pool.
///
/// # Safety
/// `scan` must be live.
unsafe fn probe_lists(scan: pg_sys::IndexScanDesc, st: &mut ScanState, upto: usize) {
    profile::count(Count::Lists, (upto - st.probed) as u64);
    // SAFETY: scan is live.
    unsafe { score_lists(scan, st, st.probed, upto) };
    st.probed = upto;
    // Stay within work_mem between rounds: keep the best candidates (the pool
    // remembers where it cut; a re-offer brings the rest back).
    profile::time(Phase::Select, || st.pool.keep_best(pool_cap()));
    // SAFETY: scan is live.
    unsafe { refuse_loss(scan, st) };
}

/// ERROR when the candidate pool had to drop candidates it cannot offer again
/// (`CandidatePool::lost`): more than `work_mem` holds rank before rows the
/// scan already took, which happens when a list probed late (an iterative
/// scan, or the deep probes past the first rows) brings that many better
/// candidates, thousands of copies of one vector say. Going on, the scan
/// missed rows: a `LIMIT 5000` over 5,000 rows returned 2,114 at `work_mem =
/// 64kB`.
///
/// The hint names a `work_mem` with which the same query cannot fail so again:
/// one whose pool holds every entry of the lists the scan may probe, the most
/// it can ever be offered. What this cut had to keep is no such bound: with
/// more room the scan goes deeper before a later list brings more, and what
/// that needs depends on `work_mem` in ways a scan cannot foresee (20,000 SIFT
/// rows, `lists = 100`, a `LIMIT 5000`: 1,534 at 64kB, whose hint of 128kB
/// failed again needing 2,847; 100kB passed; 160kB failed needing 3,456).
/// Counting those entries reads the lists' pages once, on this error path only.
///
/// # Safety
/// `scan` must be live.
unsafe fn refuse_loss(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    let Some(need) = st.pool.lost() else {
        return;
    };
    // SAFETY: live scan (forwarded contract).
    let index = unsafe { (*scan).indexRelation };
    // The lists this scan may probe: all up to the limit when iterative,
    // otherwise its probes and deep probes (gettuple).
    let limit = probe_limit(st);
    let lists = if st.iterative {
        limit
    } else {
        st.probes.max(st.deep_probes).min(limit)
    };
    st.ranked.order_through(lists);
    let entries: u64 = (0..lists)
        .map(|i| list_entries(index, &st.meta, &mut st.nblocks, st.ranked.get(i).0))
        .sum();
    // Never below what this cut had to keep (entries inserted since the
    // lists were read are counted by neither).
    let kb = work_mem_kb_holding(entries.max(need as u64));
    let setting = if kb < 10 * 1024 {
        format!("{kb}kB")
    } else {
        format!("{}MB", kb.div_ceil(1024))
    };
    let iterative = if st.iterative {
        ", or SET ivfpq.iterative_scan = off"
    } else {
        ""
    };
    crate::errors::error_detail_hint(
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!(
            "ivfpq scan of index \"{}\" needs more candidates than work_mem holds: it had to \
             keep {need} candidates at once, and work_mem holds {}",
            page::rel_name(index),
            pool_cap()
        ),
        "Candidates that rank before rows the scan has already passed cannot be offered again: \
         dropping them would miss rows.",
        format!(
            "Raise work_mem to at least {setting} (enough for all {entries} entries of the {lists} \
             lists this scan may probe){iterative}."
        ),
        "ivfpq",
    );
}

/// Entries on `list`'s pages (live or not): what a scan of it offers the
/// candidate pool at most.
fn list_entries(
    index: pg_sys::Relation,
    meta: &layout::MetaData,
    nblocks: &mut u32,
    list: u32,
) -> u64 {
    let dir = page::list_dir_counted(index, meta, list, nblocks);
    let mut chain = page::ListChain::new(index, meta, &dir);
    let mut n = 0u64;
    while let Some(blk) = chain.next_block() {
        pg_sys::check_for_interrupts!();
        n += chain.visit(page::ReadGuard::new(index, blk).page()).count as u64;
    }
    n
}

/// Offers the codes of every list probed so far again, when the pool has
/// handed out all it kept and dropped the rest (`CandidatePool`): a scan that
/// goes deeper than the few thousand candidates the pool keeps (a very
/// selective `WHERE`) reads its lists once more instead of holding every code.
///
/// # Safety
/// `scan` must be live.
unsafe fn reoffer(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    profile::count(Count::Reoffers, 1);
    st.pool.begin_reoffer();
    // SAFETY: scan is live.
    unsafe { score_lists(scan, st, 0, st.probed) };
    st.pool.end_reoffer();
    profile::time(Phase::Select, || st.pool.keep_best(pool_cap()));
    // SAFETY: scan is live.
    unsafe { refuse_loss(scan, st) };
}

/// Scores the codes of lists `ranked[from..upto]` into the candidate pool.
///
/// # Safety
/// `scan` must be live.
unsafe fn score_lists(scan: pg_sys::IndexScanDesc, st: &mut ScanState, from: usize, upto: usize) {
    // SAFETY: live scan.
    let index = unsafe { (*scan).indexRelation };
    let model = st.model.clone().expect("started");
    let geom = DataGeom::of(&st.meta);
    // The query is prepared at the first round and resumed at the next ones
    // (made for this `model`, which st.model keeps alive until the next rescan
    // or start, both of which drop the parts).
    let mut qt = profile::time(Phase::Tables, || match st.query_parts.take() {
        Some(parts) => arrw_core::ivf::QueryTables::from_parts(&model, parts),
        None => model.query_tables(&st.query),
    });
    let mut scratch = std::mem::take(&mut st.score_scratch);
    if upto > from {
        profile::time(Phase::Rank, || st.ranked.order_through(upto));
    }
    for i in from..upto {
        let list = st.ranked.get(i).0;
        profile::time(Phase::Tables, || qt.set_list(list));
        let pool = &mut st.pool;
        let (meta, fine) = (&st.meta, st.fine.as_ref());
        let below = pool.upper_estimate();
        scan_list(
            index,
            meta,
            &mut st.nblocks,
            &qt,
            list,
            fine,
            &mut scratch,
            below,
            |page, fine_blk, scored| {
                let item = |i: usize| Cand {
                    tag: tag(layout::tid_u64(geom.tid(page, i)), list),
                    blk: fine_blk,
                    slot: i as u32,
                };
                match scored {
                    Scored::All(d) => pool.push_all(d, item),
                    Scored::Some(idx, est) => pool.push_some(idx, est, item),
                }
                pool.upper_estimate()
            },
        );
    }
    st.query_parts = Some(qt.into_parts());
    st.score_scratch = scratch;
}

/// A page's estimates as [`scan_list`] hands them to its caller.
pub(super) enum Scored<'a> {
    /// One estimate per entry of the page, in slot order.
    All(&'a [f32]),
    /// Only the entries whose estimate is not above the caller's bound: their
    /// slots and estimates, in slot order.
    Some(&'a [u32], &'a [f32]),
}

/// Buffers [`scan_list`] scores a page into, reused across pages and lists.
#[derive(Default)]
pub(super) struct ScoreScratch {
    dists: Vec<f32>,
    idx: Vec<u32>,
    est: Vec<f32>,
}

/// Scores every code of `list` with `qt` (set to that list), a page at a time
/// (share lock on one page at a time), and calls `take(page, fine_blk,
/// scored)` for each page while it is locked: `fine_blk` is the page's block
/// when its fine pages are linked (`NO_FINE` otherwise), `scored` the page's
/// estimates. `take` returns a bound for the next page (as `below` does for
/// the first): entries whose estimate is above it may be left out of its
/// `scored` (4-bit codes are then compared with it 32 at a time, before their
/// estimates are formed); NaN or +inf asks for every entry. The one walker of
/// a list's codes for scans.
#[allow(clippy::too_many_arguments)]
pub(super) fn scan_list(
    index: pg_sys::Relation,
    meta: &layout::MetaData,
    nblocks: &mut u32,
    qt: &arrw_core::ivf::QueryTables,
    list: u32,
    fine: Option<&FineGeom>,
    scratch: &mut ScoreScratch,
    mut below: f32,
    mut take: impl FnMut(&[u8], u32, Scored) -> f32,
) {
    let geom = DataGeom::of(meta);
    if scratch.dists.len() < geom.capacity {
        scratch.dists.resize(geom.capacity, 0.0);
    }
    let t = profile::start();
    let dir = page::list_dir_counted(index, meta, list, nblocks);
    let mut chain = page::ListChain::new(index, meta, &dir);
    profile::stop(t, Phase::Pages);
    loop {
        let t = profile::start();
        let Some(blk) = chain.next_block() else {
            break;
        };
        pg_sys::check_for_interrupts!();
        let g = page::ReadGuard::new(index, blk);
        let page = g.page();
        let h = chain.visit(page);
        let n = h.count;
        // The next page's checks and first code blocks load while this one is
        // scored (at 1M rows the first touch of each page, in its checks and
        // the kernel's first loads, was ~10% of a query).
        page::prefetch_recent_page(index, h.next, page::Recents::Index, NEXT_PAGE_PREFETCH);
        let fine_blk = match chain.fine_link(fine, &geom, page, blk) {
            Some(_) => blk,
            None => NO_FINE,
        };
        profile::stop(t, Phase::Pages);
        let t = profile::start();
        let dists = &mut scratch.dists[..n];
        let sparse = geom.blocked && geom.code_size > 0 && below < f32::INFINITY;
        if sparse {
            qt.scan_blocks_below(
                geom.blocks(page),
                n,
                below,
                &mut scratch.idx,
                &mut scratch.est,
            );
        } else if geom.code_size == 0 {
            dists.fill(0.0);
        } else if geom.blocked {
            qt.scan_blocks(geom.blocks(page), n, dists);
        } else {
            qt.scan(geom.codes(page), dists);
        }
        profile::stop(t, Phase::Codes);
        let t = profile::start();
        let scored = if sparse {
            Scored::Some(&scratch.idx, &scratch.est)
        } else {
            Scored::All(dists)
        };
        below = take(page, fine_blk, scored);
        profile::stop(t, Phase::Select);
        profile::count(Count::Pages, 1);
        profile::count(Count::Candidates, n as u64);
    }
}

/// Bytes at the start of a list's next page prefetched while the current one
/// is scored (see [`scan_list`]): its header and first code blocks; the CPU's
/// stream prefetcher follows on from there.
const NEXT_PAGE_PREFETCH: usize = 1024;

/// Candidates handed out per batch when re-ranking is off (estimated order).
const ESTIMATED_BATCH: usize = 1024;

/// The size of the `batches`-th batch of estimates (`rerank = 0`): the first
/// is the rows a `LIMIT` right above the scan will take, when it says (a
/// `LIMIT 10` sorted its best 1,024 estimates to hand out 10), then
/// [`ESTIMATED_BATCH`].
fn estimated_batch(rows_wanted: u64, batches: usize) -> usize {
    if batches == 0 && rows_wanted > 0 {
        (rows_wanted as usize).min(ESTIMATED_BATCH)
    } else {
        ESTIMATED_BATCH
    }
}

/// Re-ranks the next `rerank` candidates: their exact distances, read from the
/// table, go to the ordered queue (rows no longer visible drop out here).
///
/// # Safety
/// `scan` must be live.
unsafe fn refill(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    let t = profile::start();
    let n = if st.order.reranked() == 0 {
        st.rerank
    } else {
        followup_batch(st.rerank)
    };
    let mut batch = st.pool.pop_best(n);
    // Fetch in TID order: the heap fetch keeps its buffer pinned while
    // consecutive TIDs stay on one page, and the reads walk the table forward.
    batch.sort_unstable_by_key(|&(_, c)| untag(c.tag));
    profile::stop(t, Phase::Select);
    profile::count(Count::Reranked, batch.len() as u64);
    let metric = st.model.as_ref().expect("started").metric;
    let tids: Vec<u64> = batch.iter().map(|&(_, c)| untag(c.tag)).collect();
    // SAFETY: live scan (forwarded contract).
    let exact = unsafe { exact_batch(scan, st, metric, &tids) };
    for fetch::Exact { i, d, tie, kept } in exact {
        let (est, c) = batch[i];
        let list_d = st.list_dist[list_of(c.tag) as usize];
        let est = estimate_as_distance(metric, est);
        profile::time(Phase::Order, || {
            if kept {
                st.order.add_tied(est, d, tie, list_d, c)
            } else {
                st.order.learn(est, d, list_d)
            }
        });
    }
}

/// Candidates re-ranked from the table per batch after the first `rerank`
/// (no refine code): the first batch teaches the margin; what follows it is
/// usually a few rows whose estimate less the margin still undercuts the
/// rows to hand out next, so smaller batches stop sooner (a `LIMIT 10` on 1M
/// SIFT rows re-ranked ~290 rows in batches of 100).
fn followup_batch(rerank: usize) -> usize {
    (rerank / 4).max(16).min(rerank)
}

/// Refined candidates re-ranked per exact batch: few, since the fine estimate
/// already orders them closely (the margins decide whether more are needed),
/// and more for a larger `rerank` (whoever raises it asks for more exact
/// work: `rerank` ≥ the rows probed makes every batch exact).
fn refined_batch(rerank: usize) -> usize {
    (rerank / 8).max(16)
}

/// Fine pages hinted ahead of the one being read while refining (see
/// [`refine`]): enough for their cache misses to overlap the reading of the
/// pages before them.
const FINE_PREFETCH_AHEAD: usize = 8;

/// Refines the next `rerank` coarse candidates: their fine estimates, read
/// from the fine pages in block order, queue them for re-ranking. Candidates
/// without a trustworthy fine entry (no fine pages, or a TID that is not
/// theirs) are re-ranked from the table at once.
///
/// # Safety
/// `scan` must be live.
unsafe fn refine(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    // SAFETY: live scan.
    let index = unsafe { (*scan).indexRelation };
    let t = profile::start();
    let mut batch = st.pool.pop_best(st.rerank.max(1));
    // Fine page by fine page (block order), then slot.
    batch.sort_unstable_by_key(|&(_, c)| (c.blk, c.slot));
    profile::stop(t, Phase::Select);
    let model = st.model.clone().expect("started");
    let metric = model.metric;
    let fg = st.fine.expect("refine only with fine pages");
    if st.fine_query.is_none() {
        let sq = model.refine.as_ref().expect("a refine model");
        st.fine_query = Some(sq.query(&st.prepared, metric != Metric::InnerProduct));
    }
    let fq = st.fine_query.as_mut().expect("set above");
    let mut cur_list = u32::MAX;
    let mut direct: Vec<(f32, Cand)> = Vec::new();
    let t = profile::start();
    // Each candidate's fine page (of its data page's) and slot on it, once.
    let at: Vec<(usize, usize)> = batch
        .iter()
        .map(|&(_, c)| fg.locate(c.slot as usize))
        .collect();
    // The batch's fine pages: `(block, from, to)`, its candidates `from..to`.
    let mut groups: Vec<(u32, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < batch.len() {
        let c = batch[i].1;
        if c.blk == NO_FINE {
            direct.push(batch[i]);
            i += 1;
            continue;
        }
        let k = at[i].0;
        let from = i;
        while i < batch.len() && batch[i].1.blk == c.blk && at[i].0 == k {
            i += 1;
        }
        // The data page's fine link was checked when its codes were scanned
        // (`FineGeom::check_link`): this block is in the index.
        groups.push((c.blk + 1 + k as u32, from, i));
    }
    // Then one page at a time (one pin, one lock), hinting the CPU at the
    // buffer, special space and entries of the page FINE_PREFETCH_AHEAD
    // visits ahead, so that the cache misses of different pages overlap
    // without holding many pins (see page::prefetch_recent_spans).
    let hint = |g: &(u32, usize, usize)| {
        let spans = at[g.1..g.2].iter().map(|&(_, slot)| fg.entry_span(slot));
        page::prefetch_recent_spans(index, g.0, page::Recents::Index, spans);
    };
    groups.iter().take(FINE_PREFETCH_AHEAD).for_each(hint);
    for (gi, &(fblk, from, to)) in groups.iter().enumerate() {
        pg_sys::check_for_interrupts!();
        if let Some(g) = groups.get(gi + FINE_PREFETCH_AHEAD) {
            hint(g);
        }
        let g = page::ReadGuard::new(index, fblk);
        let page = g.page();
        page::check_fine(index, &fg, page, fblk, batch[from].1.blk);
        for (&(est, c), &(_, slot)) in batch[from..to].iter().zip(&at[from..to]) {
            if layout::tid_u64(fg.tid(page, slot)) != untag(c.tag) {
                direct.push((est, c));
                continue;
            }
            let list = list_of(c.tag);
            if list != cur_list {
                fq.set_list(list, model.centroid(list));
                cur_list = list;
            }
            let f = fq.estimate(fg.code(page, slot));
            st.order.add_refined(
                estimate_as_distance(metric, est),
                estimate_as_distance(metric, f),
                st.list_dist[list as usize],
                c,
            );
        }
    }
    profile::stop(t, Phase::Refine);
    profile::count(Count::Refined, (batch.len() - direct.len()) as u64);
    if direct.is_empty() {
        return;
    }
    direct.sort_unstable_by_key(|&(_, c)| untag(c.tag));
    profile::count(Count::Reranked, direct.len() as u64);
    let tids: Vec<u64> = direct.iter().map(|&(_, c)| untag(c.tag)).collect();
    // SAFETY: live scan (forwarded contract).
    let exact = unsafe { exact_batch(scan, st, metric, &tids) };
    for fetch::Exact { i, d, tie, kept } in exact {
        let (est, c) = direct[i];
        let list_d = st.list_dist[list_of(c.tag) as usize];
        let est = estimate_as_distance(metric, est);
        if kept {
            st.order.add_unrefined_tied(est, d, tie, list_d, c);
        } else {
            st.order.learn_unrefined(est, d, list_d);
        }
    }
}

/// Re-ranks the refined candidates with the best fine estimates
/// ([`refined_batch`] of them) from the table.
///
/// # Safety
/// `scan` must be live.
unsafe fn rerank_refined(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    let mut batch = st.order.pop_refined(refined_batch(st.rerank));
    batch.sort_unstable_by_key(|&(_, _, c)| untag(c.tag));
    profile::count(Count::Reranked, batch.len() as u64);
    let metric = st.model.as_ref().expect("started").metric;
    let tids: Vec<u64> = batch.iter().map(|&(_, _, c)| untag(c.tag)).collect();
    // SAFETY: live scan (forwarded contract).
    let exact = unsafe { exact_batch(scan, st, metric, &tids) };
    for fetch::Exact { i, d, tie, kept } in exact {
        let (coarse, fine, c) = batch[i];
        profile::time(Phase::Order, || {
            if kept {
                st.order.add_refined_exact_tied(coarse, fine, d, tie, c)
            } else {
                st.order.learn_refined(coarse, fine, d)
            }
        });
    }
}

/// The exact distance of each row `tids[i]` (sorted by TID) with a visible
/// version and a non-NULL key, in the order of `tids`, and whether the
/// query's filter kept it (prefilter.rs): a batch at a time on a heap table
/// with a plain column key (fetch.rs), else row by row (that path leaves the
/// filter to the executor: every row is kept).
///
/// # Safety
/// `scan` must be live.
unsafe fn exact_batch(
    scan: pg_sys::IndexScanDesc,
    st: &mut ScanState,
    metric: Metric,
    tids: &[u64],
) -> Vec<fetch::Exact> {
    let mut out = Vec::with_capacity(tids.len());
    // SAFETY: live scan: its heap relation, snapshot and index are open.
    unsafe { ensure_fetch(scan, st) };
    if let Some(att) = st.direct_column.filter(|_| st.multi.is_none()) {
        // SAFETY: ensure_fetch ran; direct_column accepted the heap and column.
        unsafe {
            let ctx = fetch::Fetch {
                query: &st.query,
                row: &st.row,
                toast: &st.toast,
                handed: &mut st.handed,
                metric,
                filter: st.filter.as_ref().map(|f| (f, st.slot)),
                read_rejected: st.order.reranked() < LEARN_BEFORE_SKIPPING,
                hold_bar: st.order.hold_bar(),
                rejected: &mut st.depth,
                heap_blocks: &st.heap_blocks,
            };
            fetch::exact_distances(scan, att, ctx, tids, &mut out)
        };
        return out;
    }
    for (i, &tid) in tids.iter().enumerate() {
        pg_sys::check_for_interrupts!();
        // SAFETY: ensure_fetch ran for this live scan.
        if let Some((d, tie)) = unsafe { exact_distance_tie_of(scan, st, metric, tid) } {
            out.push(fetch::Exact {
                i,
                d,
                tie,
                kept: true,
            });
        }
    }
    // SAFETY: the slot belongs to this scan; clearing releases the last row's pin.
    unsafe { pg_sys::ExecClearTuple(st.slot) };
    out
}

/// The exact distance from the query to the visible version of row `tid` and
/// its tie (`ExactParts::distance_tie`, or the MaxSim query's
/// `exact_distance_tie`), or None if no version is visible. The row's vector
/// (a detoasted copy when it is stored out of line) is freed before this
/// returns.
///
/// # Safety
/// ensure_fetch must have run for this live scan.
pub(super) unsafe fn exact_distance_tie_of(
    scan: pg_sys::IndexScanDesc,
    st: &ScanState,
    metric: Metric,
    tid: u64,
) -> Option<(f32, i32)> {
    if let Some(m) = &st.multi {
        return st.row.scope(|| {
            // SAFETY: forwarded contract.
            let key = profile::time(Phase::Fetch, || unsafe { fetch_key(scan, st, tid) })?;
            // SAFETY: a non-null key of a vector_maxsim_ops index is a vector[].
            let doc = unsafe {
                crate::vector::maxsim::array_vectors(key, arrw_core::maxsim::Side::Document)
            };
            // A row whose array is empty has no entry in the index and is not
            // returned by it (an exact scan would stop at it with an ERROR).
            if doc.is_empty() {
                return None;
            }
            Some(profile::time(Phase::Exact, || m.exact_distance_tie(&doc)))
        });
    }
    st.row.scope(|| {
        // SAFETY: forwarded contract.
        let x = profile::time(Phase::Fetch, || unsafe { fetch_vector(scan, st, tid) })?;
        if x.len() != st.query.len() {
            crate::vector::check_same_dims(&st.query, x);
        }
        Some(profile::time(Phase::Exact, || {
            exact_parts(metric, &st.query, x).distance_tie()
        }))
    })
}

/// One pass of an untrained index's exact scan: every row's exact distance is
/// offered to the bounded selection, and the pass's rows become ready.
///
/// # Safety
/// `scan` must be live.
unsafe fn exact_pass(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    // SAFETY: live scan.
    let index = unsafe { (*scan).indexRelation };
    let geom = DataGeom::of(&st.meta);
    let metric = st.model.as_ref().expect("started").metric;
    // SAFETY: live scan: its heap relation, snapshot and index are open.
    unsafe { ensure_fetch(scan, st) };
    let mut exact = st.exact.take().expect("an exact scan in progress");
    let mut tids = Vec::with_capacity(geom.capacity);
    // A `vector[]` row has one entry per element, written one after another
    // by its insert: each was scored again (a MaxSim over the whole array
    // each time), so 10 documents of 1,000 vectors took 1.3-1.9 s where a
    // sequential scan took 2 ms (hunt-49). A row repeated right after itself
    // is skipped; the selection drops any other repeat, as before.
    let mut last = None;
    for list in 0..st.meta.lists {
        let dir = page::list_dir(index, &st.meta, list);
        let mut chain = page::ListChain::new(index, &st.meta, &dir);
        while let Some(blk) = chain.next_block() {
            pg_sys::check_for_interrupts!();
            // Copy the page's TIDs and release it before reading the table: no
            // index page stays locked while heap pages are read.
            tids.clear();
            {
                let g = page::ReadGuard::new(index, blk);
                let page = g.page();
                let n = chain.visit(page).count;
                tids.extend((0..n).map(|i| layout::tid_u64(geom.tid(page, i))));
            }
            for &tid in &tids {
                if last.replace(tid) == Some(tid) {
                    continue;
                }
                profile::count(Count::Reranked, 1);
                // SAFETY: ensure_fetch ran for this live scan.
                if let Some((d, tie)) = unsafe { exact_distance_tie_of(scan, st, metric, tid) } {
                    exact.offer_tied(d, tie, tid);
                }
            }
        }
    }
    // SAFETY: release the last row's pin.
    unsafe { pg_sys::ExecClearTuple(st.slot) };
    let mut pass = exact.finish_pass();
    if pass.len() == exact.cap() {
        st.exact = Some(exact);
    }
    pass.reverse();
    st.ready = pass;
}

/// Rows a scan re-ranks in full (their vectors read even from TOAST when the
/// query's filter rejects them) before it skips the out-of-line vectors of
/// rejected rows: the margins of `arrw_core::rerank` learn from every row
/// whose exact distance is known, and a filtered query that skipped them all
/// learnt from its passing rows only (about 15 at a 10% filter and 768
/// dimensions against ~150 read): MaxSim scans, whose margin is a quantile,
/// then let rows out of order. 32 is more than the ~20 rows an unfiltered
/// `LIMIT 10` learns from at 384–1,536 dimensions.
const LEARN_BEFORE_SKIPPING: u64 = 32;

/// Rows a scan settles before it probes `deep_probes` lists: the depth its
/// first `probes` were measured for (arrw_core::calibrate).
pub(super) const DEEP_AFTER: u64 = arrw_core::calibrate::CALIBRATION_K as u64;

/// Lazily sets up what heap fetches need.
///
/// # Safety
/// `scan` must be live.
pub(super) unsafe fn ensure_fetch(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    if !st.fetch.is_null() {
        return;
    }
    // SAFETY: heapRelation is open for the scan's duration (index_beginscan
    // sets it); the objects are freed in amendscan.
    unsafe {
        let heap = (*scan).heapRelation;
        if heap.is_null() {
            crate::errors::error(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "ivfpq re-ranking needs the table; set ivfpq.rerank = 0 for this scan".into(),
            );
        }
        st.fetch = pg_sys::table_index_fetch_begin(heap);
        st.slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        st.estate = pg_sys::CreateExecutorState();
        st.index_info = pg_sys::BuildIndexInfo((*scan).indexRelation);
        // FormIndexDatum evaluates index expressions in the estate's per-tuple
        // expression context, reading the row from its scan tuple: that must be
        // our slot (an expression reads its columns from there; NULL would crash).
        // The slot never changes, so this is set once.
        let econtext = pg_sys::MakePerTupleExprContext(st.estate);
        (*econtext).ecxt_scantuple = st.slot;
        st.has_exprs = !(*st.index_info).ii_Expressions.is_null();
        st.direct_column =
            fetch::direct_column(scan, st.index_info, st.has_exprs, st.multi.is_some());
        st.toast = super::toast::ToastReader::new(heap);
        if st.direct_column.is_some() {
            page::size_recents(heap, page::Recents::Heap);
        }
    }
}

/// The indexed vector of the visible row version at `tid`, or None if no
/// version is visible to the scan's snapshot.
///
/// # Safety
/// ensure_fetch must have run for this live scan.
unsafe fn fetch_vector<'a>(
    scan: pg_sys::IndexScanDesc,
    st: &ScanState,
    tid: u64,
) -> Option<&'a [f32]> {
    // SAFETY: forwarded contract; a non-null key of a vector index is a
    // vector (or halfvec) datum.
    unsafe { fetch_key(scan, st, tid).map(|d| crate::vector::VectorArg::from_key(d).x) }
}

/// The index key (datum) of the visible row version at `tid`, or None if no
/// version is visible to the scan's snapshot or the key is NULL.
///
/// # Safety
/// ensure_fetch must have run for this live scan.
unsafe fn fetch_key(
    scan: pg_sys::IndexScanDesc,
    st: &ScanState,
    tid: u64,
) -> Option<pg_sys::Datum> {
    let (blk, off) = layout::u64_tid(tid);
    // SAFETY: live scan (forwarded contract).
    unsafe { super::fetch::check_heap_tid(scan, (blk, off), &st.heap_blocks) };
    let mut ip = pg_sys::ItemPointerData::default();
    ip.ip_blkid.bi_hi = (blk >> 16) as u16;
    ip.ip_blkid.bi_lo = blk as u16;
    ip.ip_posid = off;
    let mut call_again = false;
    let mut all_dead = false;
    // SAFETY: fetch/slot belong to this scan's heap; the snapshot is the scan's.
    unsafe {
        let found = pg_sys::table_index_fetch_tuple(
            st.fetch,
            &mut ip,
            (*scan).xs_snapshot,
            st.slot,
            &mut call_again,
            &mut all_dead,
        );
        if !found {
            return None;
        }
        // Expression results live in the per-tuple context (set up with our slot
        // as its scan tuple by ensure_fetch); resetting frees the previous row's,
        // which the caller no longer uses. A plain column index allocates nothing
        // there, so it skips the call (each FFI call costs a setjmp guard, and
        // this runs for every re-ranked candidate).
        if st.has_exprs {
            pg_sys::MemoryContextReset(
                (*(*st.estate).es_per_tuple_exprcontext).ecxt_per_tuple_memory,
            );
        }
        let mut values = [pg_sys::Datum::from(0usize); pg_sys::INDEX_MAX_KEYS as usize];
        let mut nulls = [false; pg_sys::INDEX_MAX_KEYS as usize];
        let mut form = || {
            pg_sys::FormIndexDatum(
                st.index_info,
                st.slot,
                st.estate,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            )
        };
        // An index expression is user code, which may run other scans
        // (profile::outside).
        if st.has_exprs {
            profile::outside(form);
        } else {
            form();
        }
        // The slot keeps the row's buffer pinned until the next fetch replaces
        // it (refill clears it after the batch), so an in-line vector datum that
        // points into the page stays valid while the caller uses it.
        if nulls[0] {
            None
        } else {
            // An out-of-line key is read through the scan's TOAST reader, into
            // the caller's (row) context.
            Some(st.toast.plain(values[0]))
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // SAFETY: opaque holds our Box, reclaimed exactly once here; the fetch
    // objects were created by ensure_fetch for this scan.
    unsafe {
        let mut st = Box::from_raw((*scan).opaque as *mut ScanState);
        (*scan).opaque = std::ptr::null_mut();
        record_short_demand(&mut st);
        profile::count(Count::Late, st.order.late());
        crate::handed::forget();
        if !st.fetch.is_null() {
            st.toast.close();
            pg_sys::table_index_fetch_end(st.fetch);
            pg_sys::ExecDropSingleTupleTableSlot(st.slot);
            pg_sys::FreeExecutorState(st.estate);
        }
        st.row.delete();
    }
    profile::scan_freed();
}
