//! Reading a re-rank batch's rows from the table, several pages at a time.
//!
//! Why: re-ranking reads each candidate's vector from its heap row. On a table
//! much larger than the CPU caches every row costs four or five cache misses in
//! a row (the buffer's descriptor, the page header, the line pointer and tuple
//! header, the vector), and `table_index_fetch_tuple` takes them one after the
//! other: ~1.8 µs a row on 1M SIFT rows, half of a query's time (perf:
//! `heap_page_prune_opt`, which is where a page is first touched, 15%;
//! `heap_hot_search_buffer` 7%; the distance kernel reading the vector 5%).
//! [`exact_distances`] pins a batch's pages first, then reads every row's line
//! pointer, then finds every row's visible version, then computes the
//! distances, and prefetches (a CPU hint, it reads nothing) what the next stage
//! will touch (page headers, tuple headers, vectors), so the misses of different
//! rows overlap instead of adding up.
//!
//! It does what `heapam_index_fetch_tuple` does, in another order: pin the page,
//! `heap_page_prune_opt` once per page, share-lock it while
//! `heap_hot_search_buffer` finds the version visible to the scan's snapshot
//! (which also takes the serializable predicate lock), unlock, and read the
//! indexed column from the tuple while the page stays pinned (a pinned page's
//! tuples are not moved: pruning that moves them needs a cleanup lock, which a
//! pin blocks). Only for heap tables and plain column keys; other table access
//! methods, expression indexes and `vector[]` keys take the row-at-a-time path.
//!
//! With a prefilter (prefilter.rs), a visible row whose key is stored out of
//! line (TOAST) or compressed is first checked against the query's filter; a
//! rejected one is read only while the scan's margins have learnt from few
//! rows (its distance then teaches them). Rows with an in-line key are
//! checked here only while the scan holds the rows a `LIMIT` will take, and
//! only those near enough to be held (`OrderedRerank::hold_bar`): the hold
//! must count the rows the executor will keep, or a list probed for a deeper
//! one can hold a row nearer than one handed out already. The others are
//! handed out and left to the executor's filter (checking every re-ranked row
//! here cost more than the executor's check of the rows handed out: 101k
//! SIFT, 10% filter, 0.89x interleaved).

use super::layout;
use super::page::{self, Recents};
use super::profile::{self, Count, Phase};
use super::toast::ToastReader;
use crate::handed::{Pending, ValueId};
use crate::memctx::RowContext;
use arrw_core::ivf::{exact_parts, Metric};
use arrw_core::rerank::HoldBar;
use pgrx::pg_sys;
use std::cell::Cell;

/// Pages pinned at once per stage. A backend tracks its first 8 pins in an
/// array and the rest in a hash table, whose lookups on every pin and unpin
/// cost more than the overlap of more pages wins; the executor may hold one pin
/// of its own. The next stage's pages are hinted while this one's are read.
const PAGES_AT_ONCE: usize = 6;

/// Cache lines of a row prefetched before its distance is computed: the whole
/// tuple (header and vector) up to this many. With only the first 4 lines (the
/// hardware prefetcher was to follow the rest) a 128-d row's distance kernel
/// still waited on its last lines: 12% of a SIFT scan with a 10% filter.
const ROW_LINES: usize = 16;

/// A scan's handle on its plan node's filter (prefilter.rs), checked on each
/// row [`exact_distances`] reads.
pub(super) struct Prefilter {
    /// The node whose scan this is; it lives until the executor ends the node,
    /// which ends the scan first (`ExecEndIndexScan` calls `index_endscan`).
    node: *mut pg_sys::IndexScanState,
    /// Our expression context in the node's executor state, made at the first
    /// check; the executor state frees it with its query memory.
    econtext: Cell<*mut pg_sys::ExprContext>,
}

impl Prefilter {
    /// A handle on `node`'s filter (prefilter.rs makes it at executor start).
    pub(super) fn new(node: *mut pg_sys::IndexScanState) -> Self {
        Prefilter {
            node,
            econtext: Cell::new(std::ptr::null_mut()),
        }
    }

    /// Whether the row in `slot` passes the node's filter. Memory the filter
    /// allocates lives in our context's per-tuple memory, reset after each
    /// row.
    ///
    /// # Safety
    /// `slot` holds a visible row of the node's relation, of the slot type the
    /// node scans with (`table_slot_create` on that relation), and the node's
    /// query is running (this is called from its scan).
    pub(super) unsafe fn passes(&self, slot: *mut pg_sys::TupleTableSlot) -> bool {
        // SAFETY: the node is live while its scan runs (see `node`); its
        // executor state outlives it. CreateExprContext allocates in the
        // state's query memory and registers the context for freeing.
        unsafe {
            if self.econtext.get().is_null() {
                self.econtext
                    .set(pg_sys::CreateExprContext((*self.node).ss.ps.state));
            }
            let econtext = self.econtext.get();
            (*econtext).ecxt_scantuple = slot;
            // Evaluates in the per-tuple memory, then resets it (one call per
            // row); a NULL result fails. The filter may run other scans, which
            // must not decide whether this one is counted (profile::outside).
            super::profile::outside(|| pg_sys::ExecQualAndReset((*self.node).ss.ps.qual, econtext))
        }
    }
}

/// The heap column to read keys from directly (see the module docs), or None
/// when the scan must use the row-at-a-time path: a table that is not a heap,
/// an expression index (`has_exprs`), or a `vector[]` key (`multi`). Decided
/// once per scan.
///
/// # Safety
/// `scan` must be live, with its heap relation open; `index_info` built for
/// its index (or null: None).
pub(super) unsafe fn direct_column(
    scan: pg_sys::IndexScanDesc,
    index_info: *const pg_sys::IndexInfo,
    has_exprs: bool,
    multi: bool,
) -> Option<i16> {
    if multi || has_exprs || index_info.is_null() {
        return None;
    }
    // SAFETY: forwarded contract: the heap relation and the IndexInfo are live.
    unsafe {
        let heap = (*scan).heapRelation;
        if heap.is_null() || (*heap).rd_tableam != pg_sys::GetHeapamTableAmRoutine() {
            return None;
        }
        let att = (*index_info).ii_IndexAttrNumbers[0];
        (att > 0).then_some(att)
    }
}

/// A page of the batch: its buffer and the batch's rows on it (`from..to`).
struct PageRows {
    buf: pg_sys::Buffer,
    from: usize,
    to: usize,
}

/// What [`exact_distances`] reads with and where it leaves what it learns.
pub(super) struct Fetch<'a> {
    pub query: &'a [f32],
    /// Per-row memory (detoasted vectors).
    pub row: &'a RowContext,
    /// Out-of-line keys are read through it.
    pub toast: &'a ToastReader,
    /// Out-of-line rows' distance sums, kept for the executor (src/handed.rs).
    pub handed: &'a mut Pending,
    pub metric: Metric,
    /// The query's filter, checked on each visible row whose key is not in
    /// line (prefilter.rs), with the scan's slot (a buffer heap tuple slot of
    /// the table) to check it on.
    pub filter: Option<(&'a Prefilter, *mut pg_sys::TupleTableSlot)>,
    /// Read a rejected row's vector even when it is out of line (the scan's
    /// margins have not learnt from enough rows yet).
    pub read_rejected: bool,
    /// While the scan holds the rows a `LIMIT` will take: the filter is also
    /// checked on rows with an in-line key whose distance passes this bar
    /// (`OrderedRerank::hold_bar`), so that the held rows are rows the
    /// executor will keep (see the module docs).
    pub hold_bar: Option<HoldBar>,
    /// Counts the rows the filter rejected (read or not).
    pub rejected: &'a mut u64,
    /// The table's block count as last counted ([`check_heap_tid`]).
    pub heap_blocks: &'a Cell<u32>,
}

/// Checks that the heap row `(blk, off)`, read from an index entry, can exist:
/// its line pointer one a heap page can have, and its block inside the
/// scan's table. `known` caches the table's block count for the scan (0: not
/// counted yet); it is counted again only when a block lies beyond it (the
/// table may have grown, which costs one `lseek`). A damaged entry's TID once
/// reached the table's storage manager, whose error (58P01, "could not open
/// file ... previous segment is only N blocks") named neither the index nor
/// corruption: now an XX002 naming both.
///
/// # Safety
/// `scan` must be live (its index and heap relations open).
pub(super) unsafe fn check_heap_tid(
    scan: pg_sys::IndexScanDesc,
    (blk, off): (u32, u16),
    known: &Cell<u32>,
) {
    // SAFETY: forwarded contract: the heap relation is open.
    let (heap, index) = unsafe { ((*scan).heapRelation, (*scan).indexRelation) };
    // A line pointer no heap page can have: PostgreSQL's fetch calls the row
    // "not found", and the scan lost it without a word (hunt-55: offset 1
    // with one bit flipped, 513).
    if !arrw_core::layout::heap_offset_valid(off) {
        page::corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\" has an entry{} for line pointer {off} of block {blk} of table \"{}\", which no heap page has",
                page::rel_name(index),
                entry_home(index, layout::tid_u64(layout::tid_bytes(blk, off))),
                page::rel_name(heap)
            ),
        );
    }
    let within = page::heap_block_within(blk, known, || {
        // SAFETY: as above; counting the main fork's blocks reads no page.
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM) }
    });
    if let Err(n) = within {
        page::corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\" has an entry{} for block {blk} of table \"{}\", which has {n} blocks",
                page::rel_name(index),
                entry_home(index, layout::tid_u64(layout::tid_bytes(blk, off))),
                page::rel_name(heap)
            ),
        );
    }
}

/// Where in `index` an entry for heap row `tid` lies, for the ERROR of an
/// entry that names no row: " at block B (list L)", or "" when no list holds
/// it. The scan that met the entry no longer knows the page it read it from
/// (candidates carry TIDs), so this walks the lists: an error path, once per
/// statement, and its own reads are checked as every walk's are.
#[cold]
fn entry_home(index: pg_sys::Relation, tid: u64) -> String {
    let meta = page::meta(index);
    let geom = layout::DataGeom::of(&meta);
    for list in 0..meta.lists {
        let dir = page::list_dir(index, &meta, list);
        let mut chain = page::ListChain::new(index, &meta, &dir);
        while let Some(at) = chain.next_block() {
            pg_sys::check_for_interrupts!();
            let g = page::ReadGuard::new(index, at);
            let p = g.page();
            let h = chain.visit(p);
            if (0..h.count).any(|i| layout::tid_u64(geom.tid(p, i)) == tid) {
                return format!(" at block {at} (list {list})");
            }
        }
    }
    String::new()
}

/// A row of a batch read from the table: `i`, its place in the batch; `d`, its
/// exact distance, and `tie`, what rounding it to `f32` dropped
/// (`ExactParts::distance_tie`); `kept`, false when the query's filter
/// rejected it (its distance then only teaches the margins: the row is not
/// handed out).
#[derive(Clone, Copy, Debug)]
pub(super) struct Exact {
    pub i: usize,
    pub d: f32,
    pub tie: i32,
    pub kept: bool,
}

/// Appends an [`Exact`] to `out` for each row `tids[i]` (sorted by TID)
/// whose version visible to the scan's snapshot has a non-NULL key in heap
/// column `att` (from [`direct_column`]): its exact distance to the query, in
/// the order of `tids`. Rows with no visible version are skipped, and so are
/// rows with an out-of-line key the filter rejects (past `read_rejected`). Every
/// detoasted vector (out-of-line ones read through the TOAST reader) lives in
/// the row context and is freed before the next row.
///
/// # Safety
/// `scan` must be live, its heap relation a heap table with column `att`.
pub(super) unsafe fn exact_distances(
    scan: pg_sys::IndexScanDesc,
    att: i16,
    f: Fetch<'_>,
    tids: &[u64],
    out: &mut Vec<Exact>,
) {
    let Fetch {
        query,
        row,
        toast,
        handed,
        metric,
        filter,
        read_rejected,
        hold_bar,
        rejected,
        heap_blocks,
    } = f;
    // SAFETY: live scan (forwarded contract): its heap relation and snapshot
    // stay open for the scan's duration.
    let (heap, snapshot) = unsafe { ((*scan).heapRelation, (*scan).xs_snapshot) };
    // SAFETY: as above; rd_att is the open relation's tuple descriptor.
    let desc = unsafe { (*heap).rd_att };
    let mut pages: Vec<PageRows> = Vec::with_capacity(PAGES_AT_ONCE);
    // (place in the batch, visible version, its page's buffer)
    let mut rows: Vec<(usize, pg_sys::HeapTupleData, pg_sys::Buffer)> =
        Vec::with_capacity(PAGES_AT_ONCE * 4);
    let mut i = 0;
    while i < tids.len() {
        pg_sys::check_for_interrupts!();
        let t = profile::start();
        // 1. Pin the next pages: first hint the buffers this backend saw them
        //    in (descriptor and page header), then pin each, through the
        //    recent-buffer table where it still holds (page::pin), and hint
        //    the header lines stage 2 reads.
        pages.clear();
        let mut to = i;
        while to < tids.len() && pages.len() < PAGES_AT_ONCE {
            let blk = layout::u64_tid(tids[to]).0;
            let from = to;
            while to < tids.len() && layout::u64_tid(tids[to]).0 == blk {
                to += 1;
            }
            page::prefetch_recent(heap, blk, Recents::Heap);
            pages.push(PageRows { buf: 0, from, to });
        }
        for p in pages.iter_mut() {
            let blk = layout::u64_tid(tids[p.from]).0;
            for &t in &tids[p.from..p.to] {
                // SAFETY: live scan (forwarded contract).
                unsafe { check_heap_tid(scan, layout::u64_tid(t), heap_blocks) };
            }
            p.buf = page::pin(heap, blk, Recents::Heap);
            // SAFETY: `p.buf` is pinned; its page address is fixed while pinned.
            let at = unsafe { pg_sys::BufferGetPage(p.buf) } as *const u8;
            page::prefetch(at);
            page::prefetch(at.wrapping_add(64));
        }
        // The next stage's buffers (descriptor and page header), so that
        // their misses overlap this stage's work.
        let mut ahead = to;
        let mut hinted = 0;
        while ahead < tids.len() && hinted < PAGES_AT_ONCE {
            let blk = layout::u64_tid(tids[ahead]).0;
            page::prefetch_recent(heap, blk, Recents::Heap);
            hinted += 1;
            while ahead < tids.len() && layout::u64_tid(tids[ahead]).0 == blk {
                ahead += 1;
            }
        }
        i = to;
        // 2. Per page: prune as a heap fetch would, and prefetch each row's
        //    tuple header from its line pointer (read under the share lock).
        for p in &pages {
            // SAFETY: the page is pinned by us; heap_page_prune_opt takes the
            // cleanup lock only if it can get it without waiting, and runs before
            // we look at the page, so the tuples we locate below stay put.
            unsafe {
                pg_sys::heap_page_prune_opt(heap, p.buf);
                pg_sys::LockBuffer(p.buf, pg_sys::BUFFER_LOCK_SHARE as i32);
            }
            // SAFETY: pinned and share-locked: the line pointers do not change.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    pg_sys::BufferGetPage(p.buf) as *const u8,
                    layout::PAGE_SIZE,
                )
            };
            for &tid in &tids[p.from..p.to] {
                if let Some(at) = arrw_core::layout::heap_item_offset(bytes, layout::u64_tid(tid).1)
                {
                    page::prefetch(bytes.as_ptr().wrapping_add(at));
                }
            }
            // SAFETY: we took this share lock above.
            unsafe { pg_sys::LockBuffer(p.buf, pg_sys::BUFFER_LOCK_UNLOCK as i32) };
        }
        // 3. Per page: find each row's visible version under the share lock
        //    (held only for the page's rows).
        rows.clear();
        for p in &pages {
            // SAFETY: the page is pinned by us.
            unsafe { pg_sys::LockBuffer(p.buf, pg_sys::BUFFER_LOCK_SHARE as i32) };
            for (k, &tid) in tids.iter().enumerate().take(p.to).skip(p.from) {
                let (blk, off) = layout::u64_tid(tid);
                let mut ip = pg_sys::ItemPointerData::default();
                ip.ip_blkid.bi_hi = (blk >> 16) as u16;
                ip.ip_blkid.bi_lo = blk as u16;
                ip.ip_posid = off;
                let mut tup = pg_sys::HeapTupleData::default();
                // SAFETY: the page is pinned and share-locked; an offset beyond
                // the page's line pointers is "not found", not a read.
                let visible = unsafe {
                    pg_sys::heap_hot_search_buffer(
                        &mut ip,
                        heap,
                        p.buf,
                        snapshot,
                        &mut tup,
                        std::ptr::null_mut(),
                        true,
                    )
                };
                if visible {
                    let at = tup.t_data as *const u8;
                    let lines = ((at as usize % 64) + tup.t_len as usize)
                        .div_ceil(64)
                        .min(ROW_LINES);
                    for line in 0..lines {
                        page::prefetch(at.wrapping_add(64 * line));
                    }
                    rows.push((k, tup, p.buf));
                }
            }
            // SAFETY: we took this share lock above.
            unsafe { pg_sys::LockBuffer(p.buf, pg_sys::BUFFER_LOCK_UNLOCK as i32) };
        }
        profile::stop(t, Phase::Fetch);
        // 4. Distances, from the tuples of the still pinned pages; for an
        //    out-of-line key, the filter first.
        for (k, tup, buf) in rows.iter_mut() {
            row.scope(|| {
                let mut null = false;
                // SAFETY: `tup` points at a visible tuple of a page we pin,
                // described by the heap's descriptor; `att` is a column of it.
                let key = unsafe { pg_sys::heap_getattr(tup, i32::from(att), desc, &mut null) };
                if null {
                    return;
                }
                // SAFETY: a non-null varlena datum: its first byte is its
                // header.
                let header = unsafe { std::slice::from_raw_parts(key.cast_mut_ptr::<u8>(), 1) };
                // The filter on the row in the scan's slot. Storing takes a
                // pin of the slot's own, dropped when the slot is cleared
                // after the batch.
                let tp: *mut pg_sys::HeapTupleData = &mut *tup;
                let check = |f: &Prefilter, slot: *mut pg_sys::TupleTableSlot| {
                    // SAFETY: `tp` is a visible tuple of the pinned `buf` of
                    // this heap; `slot` is the scan's buffer heap tuple slot of it.
                    unsafe {
                        pg_sys::ExecStoreBufferHeapTuple(tp, slot, *buf);
                        f.passes(slot)
                    }
                };
                // An out-of-line key is checked before its vector is read; an
                // in-line one costs nothing more to read, and is checked after
                // (below) only if it could be held.
                let inline = arrw_core::toast::plain_inline(header);
                let kept = match filter {
                    Some((f, slot)) if !inline => check(f, slot),
                    _ => true,
                };
                if !kept {
                    *rejected += 1;
                    profile::count(Count::Filtered, 1);
                    if !read_rejected {
                        return;
                    }
                }
                // SAFETY: a non-null key of a vector index's column is a vector
                // (or halfvec) datum; an out-of-line one is read by the scan's
                // TOAST reader (no buffer lock is held here), and it or a
                // detoasted copy lives in the row context.
                let x = profile::time(Phase::Fetch, || unsafe {
                    crate::vector::VectorArg::from_key(toast.plain(key)).x
                });
                if x.len() != query.len() {
                    crate::vector::check_same_dims(query, x);
                }
                let parts = profile::time(Phase::Exact, || exact_parts(metric, query, x));
                let kept = match filter {
                    Some((f, slot))
                        if inline && hold_bar.is_some_and(|b| b.admits(parts.distance())) =>
                    {
                        let kept = check(f, slot);
                        if !kept {
                            *rejected += 1;
                            profile::count(Count::Filtered, 1);
                        }
                        kept
                    }
                    _ => kept,
                };
                // SAFETY: `key` is the non-null varlena datum read above.
                if let Some(id) = unsafe { ValueId::of(key) }.filter(|_| kept) {
                    handed.remember(tids[*k], id, parts);
                }
                let (d, tie) = parts.distance_tie();
                out.push(Exact {
                    i: *k,
                    d,
                    tie,
                    kept,
                });
            });
        }
        // 5. Unpin, the slot's pin first.
        if let Some((_, slot)) = filter {
            // SAFETY: the scan's slot; clearing drops its pin and its pointer
            // to the last row checked, which lives in `rows`.
            unsafe { pg_sys::ExecClearTuple(slot) };
        }
        for p in &pages {
            // SAFETY: pinned once by page::pin in stage 1.
            unsafe { pg_sys::ReleaseBuffer(p.buf) };
        }
    }
}
