//! Index scans: `ORDER BY embedding <op> $1 LIMIT k`.
//!
//! A scan works in rounds. Round one ranks all lists by centroid distance, reads
//! the `probes` nearest lists page by page (share lock on one page at a time),
//! scores every code with the query's ADC tables and keeps the candidates ordered
//! by estimated distance (bounded by `work_mem`). Candidates are then handed out
//! in batches of `rerank`: each batch is re-scored with exact distances computed
//! from the vectors in the table (fetched with the scan's snapshot, so dead and
//! invisible rows drop out here) and returned in exact order. When the executor
//! wants more rows than the probed lists hold (a selective WHERE clause), and
//! `ivfpq.iterative_scan` is on, another round probes the next lists, up to
//! `ivfpq.max_probes`.
//!
//! With `rerank = 0`, candidates are returned in estimated order without reading
//! the table. An untrained index (built empty) re-ranks every candidate.

use super::layout::{self, DataGeom};
use super::{model, options, page};
use arrw_core::ivf::{exact_distance, CandidatePool, IvfPqModel, Metric};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::rc::Rc;

struct ScanState {
    started: bool,
    query: Vec<f32>,
    model: Option<Rc<IvfPqModel>>,
    meta: layout::MetaData,
    ranked: Vec<u32>,
    probed: usize,
    /// Candidates not yet re-ranked (batches select their best).
    pool: CandidatePool<u64>,
    /// Results ready to return, best last.
    ready: Vec<(f32, u64)>,
    probes: usize,
    rerank: usize,
    iterative: bool,
    max_probes: usize,
    fetch: *mut pg_sys::IndexFetchTableData,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
    index_info: *mut pg_sys::IndexInfo,
    /// The index has expression columns (FormIndexDatum allocates per row).
    has_exprs: bool,
    tmp: pg_sys::MemoryContext,
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
    // xs_orderbyvals/xs_orderbynulls: the AM owns them (as GiST does). Leaving
    // them as garbage made amgettuple write through wild pointers.
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
    // SAFETY: creating a child memory context of the current one.
    let tmp = unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"ivfpq re-rank".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    };
    let st = Box::new(ScanState {
        started: false,
        query: Vec::new(),
        model: None,
        meta: Default::default(),
        ranked: Vec::new(),
        probed: 0,
        pool: CandidatePool::new(1, 1),
        ready: Vec::new(),
        probes: 0,
        rerank: 0,
        iterative: true,
        max_probes: 0,
        fetch: std::ptr::null_mut(),
        slot: std::ptr::null_mut(),
        estate: std::ptr::null_mut(),
        index_info: std::ptr::null_mut(),
        has_exprs: false,
        tmp,
    });
    // SAFETY: `scan` is the descriptor just allocated; opaque is ours.
    unsafe { (*scan).opaque = Box::into_raw(st) as *mut std::ffi::c_void };
    scan
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
    // SAFETY: scan is ours; orderbys has norderbys entries and orderByData room
    // for as many (RelationGetIndexScan sized it).
    unsafe {
        if !orderbys.is_null() && norderbys > 0 {
            std::ptr::copy(orderbys, (*scan).orderByData, norderbys as usize);
        }
        let st = state(scan);
        st.started = false;
        st.pool = CandidatePool::new(1, 1);
        st.ready.clear();
        st.ranked.clear();
        st.probed = 0;
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(
    scan: pg_sys::IndexScanDesc,
    dir: pg_sys::ScanDirection::Type,
) -> bool {
    if dir != pg_sys::ScanDirection::ForwardScanDirection {
        super::user_error(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "ivfpq index scans only go forward".into(),
        );
    }
    // SAFETY: scan is ours and live.
    let st = unsafe { state(scan) };
    if !st.started && !unsafe { start(scan, st) } {
        return false;
    }
    loop {
        if let Some((dist, tid)) = st.ready.pop() {
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
                    *(*scan).xs_orderbyvals =
                        crate::fmgr::float8(user_distance(st.meta.metric, dist));
                    *(*scan).xs_orderbynulls = false;
                }
            }
            return true;
        }
        if !st.pool.is_empty() {
            // SAFETY: scan is live; refill fetches heap tuples with its snapshot.
            unsafe { refill(scan, st) };
            continue;
        }
        let may_probe = st.probed == 0 || st.iterative;
        let limit = if st.max_probes > 0 {
            st.max_probes.min(st.ranked.len())
        } else {
            st.ranked.len()
        };
        if may_probe && st.probed < limit {
            // SAFETY: scan is live.
            unsafe { probe_round(scan, st, limit) };
            continue;
        }
        return false;
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

/// First call after (re)scan: read the query and the model, rank the lists.
///
/// # Safety
/// `scan` must be live.
unsafe fn start(scan: pg_sys::IndexScanDesc, st: &mut ScanState) -> bool {
    st.started = true;
    // SAFETY: orderByData[0] was filled by amrescan.
    let (index, key) = unsafe { ((*scan).indexRelation, &*(*scan).orderByData) };
    if unsafe { (*scan).numberOfOrderBys } < 1 || key.sk_flags & pg_sys::SK_ISNULL as i32 != 0 {
        return false;
    }
    // SAFETY: the ORDER BY argument is a non-null vector datum.
    st.query = unsafe { crate::vector::VectorArg::from_datum(key.sk_argument) }
        .x
        .to_vec();
    st.meta = page::meta(index);
    let model = model::load(index, &st.meta);
    if st.meta.untrained == 0 && st.query.len() != model.dim {
        crate::vector::check(arrw_core::text::check_expected_dim(
            model.dim as i32,
            st.query.len(),
        ));
    }
    // Index options are read from the relcache entry (not the meta page), so
    // ALTER INDEX ... SET (probes = ...) takes effect at once.
    let opts = options::of(index);
    st.probes = options::probes(opts.probes.max(0) as u32).max(1);
    st.rerank = options::rerank(opts.rerank as i64);
    st.iterative = options::ITERATIVE_SCAN.get();
    st.max_probes = options::MAX_PROBES.get().max(0) as usize;
    if st.meta.untrained != 0 {
        st.ranked = vec![0];
    } else {
        st.ranked = model
            .rank_lists(&st.query, model.lists)
            .into_iter()
            .map(|(l, _)| l)
            .collect();
    }
    st.model = Some(model);
    true
}

/// Most candidates kept per round: `work_mem` / 16 bytes per (distance, tid).
fn pool_cap() -> usize {
    // SAFETY: reading this backend's GUC variable.
    ((unsafe { pg_sys::work_mem } as usize * 1024) / 16).max(1000)
}

/// Scores the codes of the next `probes` lists into the candidate pool.
///
/// # Safety
/// `scan` must be live.
unsafe fn probe_round(scan: pg_sys::IndexScanDesc, st: &mut ScanState, limit: usize) {
    // SAFETY: live scan.
    let index = unsafe { (*scan).indexRelation };
    let model = st.model.clone().expect("started");
    let geom = DataGeom::of(&st.meta);
    let upto = (st.probed + st.probes).min(limit);
    // An untrained index (all estimates equal) promises to re-rank every row,
    // so its pool has no cap: capping it dropped arbitrary rows once the table
    // outgrew work_mem / 16 entries, and exact queries missed their answers.
    let cap = if st.meta.untrained != 0 {
        usize::MAX / 4
    } else {
        pool_cap()
    };
    // An untrained index (built from no rows) holds placeholder codes: every
    // candidate is re-ranked, so no ADC tables. Its model's dimension is a
    // placeholder too when the column has none declared, so building tables
    // for the query would fail its dimension assertion.
    let mut qt = (st.meta.untrained == 0).then(|| model.query_tables(&st.query));
    // Candidates by estimate: the first batch is kept apart cheaply (see
    // CandidatePool), the rest held for later batches, within work_mem.
    let batch = if st.meta.untrained != 0 {
        usize::MAX / 4
    } else if st.rerank > 0 {
        st.rerank
    } else {
        ESTIMATED_BATCH
    };
    let mut pool = CandidatePool::new(batch, cap);
    let mut dists: Vec<f32> = vec![0.0; geom.capacity];
    for &list in &st.ranked[st.probed..upto] {
        if let Some(qt) = qt.as_mut() {
            qt.set_list(list);
        }
        let dir = page::list_dir(index, &st.meta, list);
        let mut chain = page::ListChain::new(index, &st.meta, &dir);
        while let Some(blk) = chain.next_block() {
            pg_sys::check_for_interrupts!();
            let g = page::ReadGuard::new(index, blk);
            let page = g.page();
            let n = chain.visit(page).count;
            match qt.as_ref() {
                Some(qt) if geom.code_size != 0 && geom.blocked => {
                    qt.scan_blocks(geom.blocks(page), n, &mut dists[..n])
                }
                Some(qt) if geom.code_size != 0 => qt.scan(geom.codes(page), &mut dists[..n]),
                _ => dists[..n].fill(0.0),
            }
            pool.push_all(&dists[..n], |i| layout::tid_u64(geom.tid(page, i)));
        }
    }
    st.probed = upto;
    // Stay within work_mem between rounds: keep the best `cap` candidates.
    pool.keep_best(cap);
    st.pool = pool;
}

/// Candidates handed out per batch when re-ranking is off (estimated order).
const ESTIMATED_BATCH: usize = 1024;

/// Moves the next batch of candidates from the pool to the ready queue,
/// re-ranking them exactly when re-ranking is on.
///
/// # Safety
/// `scan` must be live.
unsafe fn refill(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    let exact = st.rerank > 0 || st.meta.untrained != 0;
    if !exact {
        // Estimated order: hand out the next 1024 best, sorted, best last.
        let mut batch = st.pool.pop_best(ESTIMATED_BATCH);
        batch.sort_by(|a, b| b.0.total_cmp(&a.0));
        st.ready = batch;
        return;
    }
    let take = if st.meta.untrained != 0 {
        st.pool.len()
    } else {
        st.rerank
    };
    let mut batch = st.pool.pop_best(take);
    // Fetch in TID order: the heap fetch keeps its buffer pinned while
    // consecutive TIDs stay on one page, and the reads walk the table forward.
    batch.sort_unstable_by_key(|&(_, tid)| tid);
    let metric = st.model.as_ref().expect("started").metric;
    // SAFETY: live scan: its heap relation, snapshot and index are open.
    unsafe { ensure_fetch(scan, st) };
    let mut out = Vec::with_capacity(batch.len());
    // SAFETY: switching to our own short-lived context for detoasted vectors
    // and expression results; switched back and reset below.
    let old = unsafe { pg_sys::MemoryContextSwitchTo(st.tmp) };
    for &(_, tid) in &batch {
        pg_sys::check_for_interrupts!();
        // SAFETY: fetch/slot/estate were set up by ensure_fetch for this scan.
        if let Some(x) = unsafe { fetch_vector(scan, st, tid) } {
            if x.len() != st.query.len() {
                crate::vector::check_same_dims(&st.query, x);
            }
            out.push((exact_distance(metric, &st.query, x), tid));
        }
    }
    // SAFETY: release the last row's pin; restore the caller's context (nothing
    // we keep points into tmp).
    unsafe {
        pg_sys::ExecClearTuple(st.slot);
        pg_sys::MemoryContextSwitchTo(old);
        pg_sys::MemoryContextReset(st.tmp);
    }
    // NaN (zero vectors under cosine) sorts last, as in a sequential scan.
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    let out: Vec<(f32, u64)> = {
        let (nan, rest): (Vec<_>, Vec<_>) = out.into_iter().partition(|x| x.0.is_nan());
        nan.into_iter().chain(rest).collect()
    };
    st.ready = out;
}

/// Lazily sets up what heap fetches need.
///
/// # Safety
/// `scan` must be live.
unsafe fn ensure_fetch(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    if !st.fetch.is_null() {
        return;
    }
    // SAFETY: heapRelation is open for the scan's duration (index_beginscan
    // sets it); the objects are freed in amendscan.
    unsafe {
        let heap = (*scan).heapRelation;
        if heap.is_null() {
            super::user_error(
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
        // our slot (without it, expression indexes crashed on a NULL scan tuple).
        // The slot never changes, so this is set once.
        let econtext = pg_sys::MakePerTupleExprContext(st.estate);
        (*econtext).ecxt_scantuple = st.slot;
        st.has_exprs = !(*st.index_info).ii_Expressions.is_null();
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
    let (blk, off) = layout::u64_tid(tid);
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
        pg_sys::FormIndexDatum(
            st.index_info,
            st.slot,
            st.estate,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        // The slot keeps the row's buffer pinned until the next fetch replaces
        // it (refill clears it after the batch), so an in-line vector datum that
        // points into the page stays valid while the caller uses it.
        if nulls[0] {
            None
        } else {
            Some(crate::vector::VectorArg::from_datum(values[0]).x)
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // SAFETY: opaque holds our Box, reclaimed exactly once here; the fetch
    // objects were created by ensure_fetch for this scan.
    unsafe {
        let st = Box::from_raw((*scan).opaque as *mut ScanState);
        (*scan).opaque = std::ptr::null_mut();
        if !st.fetch.is_null() {
            pg_sys::table_index_fetch_end(st.fetch);
            pg_sys::ExecDropSingleTupleTableSlot(st.slot);
            pg_sys::FreeExecutorState(st.estate);
        }
        pg_sys::MemoryContextDelete(st.tmp);
    }
}
