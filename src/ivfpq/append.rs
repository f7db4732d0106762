//! Appending entries to the end of a list: an insert's (pending.rs writes a
//! transaction's entries a list at a time; an untrained index takes each row's
//! at once, insert.rs).
//!
//! Locking, in this fixed order (the only order anything in ivfpq takes more
//! than one page lock in):
//! 1. the list's insert page (exclusive); if it is full and has a successor,
//!    release it and move on to the successor;
//! 2. if it is full and last: a new page from `extend` (exclusive, not yet
//!    reachable by anyone);
//! 3. the directory page holding the list's entry (exclusive), to point the
//!    list's insert page at the new page, or at a later page the walk found
//!    room on (VACUUM moved the insert page back and inserts filled it).
//!
//! With a refine code, the fine pages that take the new rows' fine entries (at
//! most three per record, in block order) are locked right after their data
//! page (a data page's fine pages are only ever locked while holding that data
//! page, so this order is the only one). A new
//! data page comes with its fine pages, reserved together (contiguous) under
//! the relation extension lock; the fine pages are logged first, in records of
//! their own, while nothing links to them yet, then the data page, the old
//! tail's link and the directory as before. A crash in between leaves only
//! unreachable blocks.
//!
//! Before step 1 the insert page the directory names is confirmed to be on the
//! list's chain (walked one share-locked page at a time, every page checked by
//! `page::ListChain`): a row put on a page no chain reaches would be in the
//! table but never found by the index. The walk starts from the last insert
//! page this backend confirmed for the list ([`ON_CHAIN`]; pages are never
//! unlinked, so it stays on the chain until a REINDEX or TRUNCATE gives the
//! index a new relfilenode), and from the list's head only when that one is
//! not behind the directory's insert page (VACUUM moved the insert page
//! back). Walking from the head every time made each insert cost a visit per
//! page of its list: O(rows) per insert into an index built on an empty table
//! (one list), and a growing cost for every list as the table outgrows the
//! rows it was built on.
//!
//! Scans and VACUUM never hold a data page while waiting for the directory page,
//! and never hold the directory page while waiting for a data page, so no cycle
//! can form. The pages changed by one step (rows onto one data page and its fine
//! pages, or a new page with its link and directory entry) go into one generic
//! WAL record, so after a crash the new page is either linked and recorded, or
//! absent.

use super::layout::{self, DataGeom, DirEntry, FineGeom};
use super::model;
use super::page::{self, WriteSet};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;

/// The index build ([`model::key`]) and the list.
type ChainKey = (model::Key, u32);

/// Most lists remembered per backend before the memory is dropped and
/// relearnt (a walk from the head each).
const ON_CHAIN_MAX: usize = 1 << 16;

thread_local! {
    /// Per backend: for each list it inserted into, the last insert page it
    /// found on the list's chain. Only PostgreSQL's own thread touches it.
    static ON_CHAIN: RefCell<HashMap<ChainKey, u32>> = RefCell::new(HashMap::new());
}

fn chain_key(index: pg_sys::Relation, meta: &layout::MetaData, list: u32) -> ChainKey {
    (model::key(index, meta), list)
}

fn remember_on_chain(key: ChainKey, blk: u32) {
    ON_CHAIN.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= ON_CHAIN_MAX && !m.contains_key(&key) {
            m.clear();
        }
        m.insert(key, blk);
    });
}

/// A walk of `dir`'s list positioned at its insert page, the page confirmed to
/// be on the chain (see the module docs).
fn chain_at_insert_page(
    index: pg_sys::Relation,
    meta: &layout::MetaData,
    dir: &page::ListDir,
    key: ChainKey,
) -> page::ListChain {
    let target = dir.entry.insert;
    if let Some(known) = ON_CHAIN.with(|m| m.borrow().get(&key).copied()) {
        let mut chain = page::ListChain::resume(index, meta, dir, known);
        if chain.try_seek(target) {
            return chain;
        }
    }
    let mut chain = page::ListChain::new(index, meta, dir);
    chain.seek(target);
    chain
}

/// One entry to append to a list: its PQ code, its refine code (empty when
/// the index keeps none; stored under no TID when not `faithful`, and scans
/// then re-rank the row from the table) and its row's TID.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    pub code: &'a [u8],
    pub fine: &'a [u8],
    pub faithful: bool,
    pub tid: [u8; layout::TID_BYTES],
}

impl Entry<'_> {
    fn fine_tid(&self) -> [u8; layout::TID_BYTES] {
        if self.faithful {
            self.tid
        } else {
            [0; layout::TID_BYTES]
        }
    }
}

/// Appends `rows` (in order) to `list`, filling its insert page, then
/// extending the list by a page at a time, each filled with as many rows as
/// it takes. One WAL record per page written (a row alone names the bytes it
/// changed, so that its record's delta compares only those). `nblocks` is a
/// lower bound of the index's size (0: unknown), see [`page::list_dir_counted`].
pub fn append_many(
    index: pg_sys::Relation,
    meta: &layout::MetaData,
    list: u32,
    rows: &[Entry],
    nblocks: &mut u32,
) {
    let Some(first) = rows.first() else {
        return;
    };
    let geom = DataGeom::of(meta);
    let fg = FineGeom::of(meta).filter(|f| f.code_size == first.fine.len());
    let dir = page::list_dir_counted(index, meta, list, nblocks);
    let key = chain_key(index, meta, list);
    let mut chain = chain_at_insert_page(index, meta, &dir, key);
    let mut rest = rows;
    while let Some(blk) = chain.next_block() {
        pg_sys::check_for_interrupts!();
        let mut ws = WriteSet::new(index);
        let cur = ws.lock(index, blk);
        let h = chain.visit(ws.page(cur));
        if h.count < geom.capacity {
            let link = chain.fine_link(fg.as_ref(), &geom, ws.page(cur), blk);
            let fine = fg.as_ref().zip(link);
            // The rows that fit, and whose refine codes fit in the fine pages
            // one record can take beside the data page.
            let mut take = rest.len().min(geom.capacity - h.count);
            // Past the directory's insert page, the directory page joins the
            // record (below): one fine page fewer fits.
            let moving = blk != dir.entry.insert;
            if let Some((fg, _)) = fine {
                let first_k = fg.locate(h.count).0;
                let pages = page::WRITESET_PAGES - if moving { 2 } else { 1 };
                let end = (first_k + pages) * fg.per_page;
                take = take.min(end - h.count);
            }
            let changed = geom.push_ranges(ws.page(cur), h.count);
            for e in &rest[..take] {
                geom.push(ws.page(cur), e.code, e.tid);
            }
            if take == 1 {
                ws.only_changed(cur, &changed);
            }
            if let Some((fg, first)) = fine {
                let mut locked: Vec<(usize, usize)> = Vec::with_capacity(3);
                for (j, e) in rest[..take].iter().enumerate() {
                    let (k, slot) = fg.locate(h.count + j);
                    let f = match locked.iter().find(|&&(lk, _)| lk == k) {
                        Some(&(_, f)) => f,
                        None => {
                            let fblk = first + k as u32;
                            let f = ws.lock(index, fblk);
                            page::check_fine(index, fg, ws.page(f), fblk, blk);
                            locked.push((k, f));
                            f
                        }
                    };
                    fg.set(ws.page(f), slot, e.fine_tid(), e.fine);
                    if take == 1 {
                        ws.only_changed(f, &[fg.set_range(slot)]);
                    }
                }
            }
            if moving {
                // The walk went past the directory's insert page (VACUUM had
                // moved it back to a page with room, since filled): point it
                // here, in the same record, unless someone moved it since we
                // read it. Left behind, every later insert walked every full
                // page from there to the list's end: an index built on an
                // empty table (one chain), vacuumed, took 36 → 1,563 ms for
                // 2,000 inserts (hunt-65). The directory page comes last, as
                // in step 3 above.
                let d = ws.lock(index, dir.blk);
                // Checked again as written (its kind and header bounds):
                // list_dir read it under a share lock, and the write zeroes
                // what its header calls free space.
                page::check_dir(index, meta, ws.page(d), dir.blk);
                let mut e: DirEntry = layout::read_dir(ws.page(d), dir.slot);
                if e.insert == dir.entry.insert {
                    e.insert = blk;
                    layout::write_dir(ws.page(d), dir.slot, e);
                }
            }
            ws.commit();
            // The rest go on this page if it still has room (the fine pages
            // limited this record), else after it: walk on from it again.
            match wrote(index, meta, &dir, key, blk, &mut rest, take) {
                Some(next) => chain = next,
                None => return,
            }
            continue;
        }
        if h.next != layout::INVALID_BLOCK {
            // Someone extended the list after we read the directory; follow.
            continue;
        }
        let take = rest.len().min(geom.capacity);
        let mut bufs = page::extend_contiguous(index, 1 + fg.map_or(0, |f| f.pages));
        let new_buf = bufs.remove(0);
        let new_blk = page::block_of(new_buf);
        if let Some(fg) = &fg {
            // The fine pages first, while no link reaches them (see the top).
            for (g, group) in bufs.chunks(page::WRITESET_PAGES).enumerate() {
                let mut fws = WriteSet::new(index);
                for &b in group {
                    let i = fws.add(b, true);
                    let p = fws.page(i);
                    page::init_page(p, layout::FINE_SPECIAL);
                    page::set_lower(p, fg.contents_len());
                    fg.init(p, new_blk);
                }
                for (j, e) in rest[..take].iter().enumerate() {
                    let (k, slot) = fg.locate(j);
                    if k / page::WRITESET_PAGES == g {
                        fg.set(
                            fws.page(k % page::WRITESET_PAGES),
                            slot,
                            e.fine_tid(),
                            e.fine,
                        );
                    }
                }
                fws.commit();
            }
        }
        let newi = ws.add(new_buf, true);
        {
            let p = ws.page(newi);
            page::init_page(p, layout::DATA_SPECIAL);
            page::set_lower(p, geom.contents_len());
            geom.set_next(p, layout::INVALID_BLOCK);
            geom.set_list(p, list);
            geom.set_fine(
                p,
                if fg.is_some() {
                    new_blk + 1
                } else {
                    layout::INVALID_BLOCK
                },
            );
            layout::set_page_kind(p, layout::KIND_DATA);
            for e in &rest[..take] {
                geom.push(p, e.code, e.tid);
            }
        }
        geom.set_next(ws.page(cur), new_blk);
        let d = ws.lock(index, dir.blk);
        // Checked again as written, as above.
        page::check_dir(index, meta, ws.page(d), dir.blk);
        let mut e: DirEntry = layout::read_dir(ws.page(d), dir.slot);
        e.insert = new_blk;
        layout::write_dir(ws.page(d), dir.slot, e);
        ws.commit();
        // Linked from a page of the chain in the record just written.
        match wrote(index, meta, &dir, key, new_blk, &mut rest, take) {
            Some(next) => chain = next,
            None => return,
        }
    }
    // Every page visited either took rows or led on (its successor, or a
    // new page): a chain that ends first was cut short by damage.
    page::corrupt(
        index,
        layout::Corrupt {
            block: dir.blk,
            what: format!("list {list}'s chain ended before its insert page took the new rows"),
        },
    );
}

/// After a record put the first `take` of `rest` on block `blk` (on the
/// list's chain): remembers the block, drops those rows from `rest`, and
/// returns the walk to go on with from that block, or None when no row is
/// left.
fn wrote(
    index: pg_sys::Relation,
    meta: &layout::MetaData,
    dir: &page::ListDir,
    key: ChainKey,
    blk: u32,
    rest: &mut &[Entry],
    take: usize,
) -> Option<page::ListChain> {
    remember_on_chain(key, blk);
    *rest = &rest[take..];
    (!rest.is_empty()).then(|| page::ListChain::resume(index, meta, dir, blk))
}
