//! VACUUM: remove index entries of dead rows and reuse their space.
//!
//! Each list is walked page by page under an exclusive lock on one page at a
//! time; the page's surviving entries are compacted in place (one generic WAL
//! record per changed page). Pages are never unlinked, so a list's chain stays
//! valid for concurrent scans and inserts; instead the list's insert page is moved
//! back to the first page that now has room, so inserts refill freed space.
//! Lists are read through `page::list_dir` and `page::ListChain`, which check
//! every link and count before it is used (a damaged chain is an ERROR, not a
//! loop or an out-of-bounds read).
//!
//! With a refine code, a compacted data page's fine entries move with their
//! rows (`layout::fine_moves`), under the data page's exclusive lock (data page
//! before its fine pages, as everywhere). Fine pages beyond the first three
//! are rewritten in records of their own before the record of the data page
//! and its first three fine pages (a WriteSet takes four pages a record); a
//! crash between them leaves fine entries whose TIDs do not match their rows,
//! which scans then re-rank from the table and the next VACUUM clears.

use super::layout::{self, DataGeom, DirEntry, FineGeom};
use super::page::{self, WriteSet};
use pgrx::pg_sys;
use pgrx::prelude::*;

#[pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    callback_state: *mut std::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: info comes from VACUUM for our index; stats is ours to allocate.
    let (index, stats) = unsafe { ((*info).index, alloc_stats(stats)) };
    let Some(callback) = callback else {
        return stats;
    };
    // Each pass counts the entries left from scratch (VACUUM calls this once per
    // batch of dead TIDs when they do not fit in maintenance_work_mem; summing
    // the passes over-counted the index's rows), as btree does.
    // SAFETY: stats was allocated above.
    unsafe { (*stats).num_index_tuples = 0.0 };
    let meta = page::meta(index);
    // The pages' geometry and the list count come from the meta page: held to
    // the model first (model::load checks that they agree), so damage there
    // is an ERROR before any page is read with it. Read with a damaged code
    // width, entries' TIDs came from code bytes: dead rows' entries stayed
    // while their line pointers were freed for reuse, and live rows' went;
    // with a lowered list count the lists past it were never vacuumed
    // (hunt-95, hunt-105).
    let _ = super::model::load(index, &meta);
    let geom = DataGeom::of(&meta);
    let fg = FineGeom::of(&meta);
    // SAFETY: info is VACUUM's (or validate_index's) for this call.
    let progress = unsafe { (*info).report_progress };
    let total = page::nblocks(index);
    let mut done: u32 = 0;
    let per_data_page = 1 + fg.as_ref().map_or(0, |f| f.pages as u32);
    if progress {
        // CREATE INDEX CONCURRENTLY's "index validation: scanning index" phase
        // asks for blocks done of total (the index's pages; it showed 0 of 0).
        // Each data page visited counts with its fine pages (a refine code's:
        // three quarters of a 384-d index, which this pass reads only where
        // it removes entries; counted alone, the phase sat at a quarter and
        // then ended, hunt-157); the rest (meta, directory, model) count at
        // the end.
        report_blocks(pg_sys::PROGRESS_SCAN_BLOCKS_TOTAL, total);
        report_blocks(pg_sys::PROGRESS_SCAN_BLOCKS_DONE, 0);
    }
    for list in 0..meta.lists {
        let dir = page::list_dir(index, &meta, list);
        let mut chain = page::ListChain::new(index, &meta, &dir);
        let mut first_with_room = layout::INVALID_BLOCK;
        while let Some(blk) = chain.next_block() {
            // SAFETY: plain calls; VACUUM's cost-based delay and cancellation.
            unsafe { pg_sys::vacuum_delay_point() };
            if progress {
                done = done.saturating_add(per_data_page).min(total);
                report_blocks(pg_sys::PROGRESS_SCAN_BLOCKS_DONE, done);
            }
            let mut ws = WriteSet::new(index);
            let i = ws.lock(index, blk);
            let page = ws.page(i);
            let n = chain.visit(page).count;
            let mut dead = vec![false; n];
            let mut any = false;
            for (k, d) in dead.iter_mut().enumerate() {
                let (b, o) = layout::tid_parts(geom.tid(page, k));
                let mut ip = pg_sys::ItemPointerData::default();
                ip.ip_blkid.bi_hi = (b >> 16) as u16;
                ip.ip_blkid.bi_lo = b as u16;
                ip.ip_posid = o;
                // SAFETY: VACUUM's callback only looks the TID up in its dead-TID
                // store; it does not touch buffers, so holding our page lock is fine.
                *d = unsafe { callback(&mut ip, callback_state) };
                any |= *d;
            }
            let link = if any {
                chain.fine_link(fg.as_ref(), &geom, ws.page(i), blk)
            } else {
                None
            };
            if let (Some(fg), Some(first)) = (&fg, link) {
                compact_fine(index, &mut ws, i, &geom, fg, blk, first, &dead);
            }
            let page = ws.page(i);
            let removed = if any {
                geom.retain(page, |k| dead[k])
            } else {
                0
            };
            let remaining = geom.count(page);
            if removed > 0 {
                ws.commit();
            } else {
                drop(ws); // nothing changed: abort the empty record, release the page
            }
            // SAFETY: stats was allocated above.
            unsafe {
                (*stats).tuples_removed += removed as f64;
                (*stats).num_index_tuples += remaining as f64;
            }
            if first_with_room == layout::INVALID_BLOCK && remaining < geom.capacity {
                first_with_room = blk;
            }
        }
        if first_with_room != layout::INVALID_BLOCK && first_with_room != dir.entry.insert {
            let mut ws = WriteSet::new(index);
            let d = ws.lock(index, dir.blk);
            // Checked again as written (see append.rs).
            page::check_dir(index, &meta, ws.page(d), dir.blk);
            let mut e: DirEntry = layout::read_dir(ws.page(d), dir.slot);
            e.insert = first_with_room;
            layout::write_dir(ws.page(d), dir.slot, e);
            ws.commit();
        }
    }
    if progress {
        report_blocks(pg_sys::PROGRESS_SCAN_BLOCKS_DONE, total);
    }
    stats
}

/// Sets a `PROGRESS_SCAN_BLOCKS_*` parameter of the command's progress row.
fn report_blocks(param: u32, blocks: u32) {
    super::build::progress(param, i64::from(blocks));
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: info is VACUUM's; analyze_only means nothing was deleted.
    unsafe {
        if (*info).analyze_only {
            return stats;
        }
        // No ambulkdelete pass (nothing to delete): return NULL so that VACUUM
        // keeps the index's statistics. Returning zeroed stats made VACUUM
        // record reltuples = 0 for the index (num_index_tuples is only counted
        // by ambulkdelete).
        if stats.is_null() {
            return stats;
        }
        let stats = alloc_stats(stats);
        (*stats).num_pages = page::nblocks((*info).index);
        stats
    }
}

/// # Safety
/// `stats` is NULL or a result struct from an earlier pass.
unsafe fn alloc_stats(
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        // SAFETY: palloc0 of the struct PostgreSQL frees after VACUUM.
        unsafe { pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBulkDeleteResult>()) as *mut _ }
    } else {
        stats
    }
}

/// Moves the fine entries of data page `blk` (entry `i` of `ws`, exclusively
/// locked, not yet compacted) to where their rows go when the `dead` entries
/// are removed; fine entries that did not match their rows are cleared. Fine
/// pages past the third are written now in records of their own, the first
/// three join `ws` (see the module docs).
#[allow(clippy::too_many_arguments)]
fn compact_fine(
    index: pg_sys::Relation,
    ws: &mut WriteSet,
    data: usize,
    geom: &DataGeom,
    fg: &FineGeom,
    blk: u32,
    first: u32,
    dead: &[bool],
) {
    let n = dead.len();
    let data_tids: Vec<[u8; layout::TID_BYTES]> =
        (0..n).map(|k| geom.tid(ws.page(data), k)).collect();
    // The old fine entries, copied out (share locks, one page at a time).
    let pages = n.div_ceil(fg.per_page);
    let mut old: Vec<Vec<u8>> = Vec::with_capacity(pages);
    for k in 0..pages {
        let fblk = first + k as u32;
        let g = page::ReadGuard::new(index, fblk);
        page::check_fine(index, fg, g.page(), fblk, blk);
        old.push(g.page().to_vec());
    }
    let fine_tids: Vec<[u8; layout::TID_BYTES]> = (0..n)
        .map(|i| {
            let (k, slot) = fg.locate(i);
            fg.tid(&old[k], slot)
        })
        .collect();
    let moves = layout::fine_moves(&data_tids, &fine_tids, dead);
    let write = |p: &mut [u8], k: usize| {
        for slot in 0..fg.per_page {
            let to = k * fg.per_page + slot;
            match moves.get(to).copied().flatten() {
                Some(from) => {
                    let (fk, fs) = fg.locate(from);
                    let code = fg.code(&old[fk], fs).to_vec();
                    fg.set(p, slot, data_tids[from], &code);
                }
                None => fg.clear(p, slot),
            }
        }
    };
    // Pages past the third first, in their own records.
    for group in (3..pages).collect::<Vec<_>>().chunks(4) {
        let mut fws = WriteSet::new(index);
        for &k in group {
            let f = fws.lock(index, first + k as u32);
            write(fws.page(f), k);
        }
        fws.commit();
    }
    for k in 0..pages.min(3) {
        let f = ws.lock(index, first + k as u32);
        write(ws.page(f), k);
    }
}
