//! `aminsert`: one new row goes to the end of its nearest list.
//!
//! Locking, in this fixed order (the only order anything in ivfpq takes more
//! than one page lock in):
//! 1. the list's insert page (exclusive); if it is full and has a successor,
//!    release it and move on to the successor;
//! 2. if it is full and last: a new page from `extend` (exclusive, not yet
//!    reachable by anyone);
//! 3. the directory page holding the list's entry (exclusive), to point the
//!    list's insert page at the new page.
//!
//! Before step 1 the insert page the directory names is confirmed to be on the
//! list's chain (walked from the head, one share-locked page at a time, every
//! page checked by `page::ListChain`): a row put on a page no chain reaches
//! would be in the table but never found by the index.
//!
//! Scans and VACUUM never hold a data page while waiting for the directory page,
//! and never hold the directory page while waiting for a data page, so no cycle
//! can form. All pages changed by one insert go into one GenericXLog record, so
//! after a crash the new page is either linked and recorded, or absent.

use super::layout::{self, DataGeom, DirEntry};
use super::model;
use super::page::{self, WriteSet};
use crate::memctx::RowContext;
use pgrx::pg_sys;
use pgrx::prelude::*;

#[pg_guard]
#[allow(clippy::too_many_arguments)] // the signature is PostgreSQL's aminsert_function
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _unique: pg_sys::IndexUniqueCheck::Type,
    _unchanged: bool,
    _info: *mut pg_sys::IndexInfo,
) -> bool {
    // SAFETY: one key column: values/isnull have one element; heap_tid is valid.
    let (datum, null, tid) = unsafe { (*values, *isnull, *heap_tid) };
    if null {
        return false;
    }
    // aminsert runs in the executor's per-query context: an out-of-line vector
    // detoasted there would stay until the statement ends, once per row of an
    // INSERT ... SELECT or UPDATE. Everything one insert allocates lives in its
    // own context instead, freed when it returns.
    let ctx = RowContext::new(c"ivfpq insert");
    ctx.scope(|| insert_one(index, datum, tid));
    ctx.delete();
    false
}

fn insert_one(index: pg_sys::Relation, datum: pg_sys::Datum, tid: pg_sys::ItemPointerData) {
    // SAFETY: non-null vector datum of the indexed column, valid for this call.
    let x = unsafe { crate::vector::VectorArg::from_key(datum) }.x;
    let meta = page::meta(index);
    let model = model::load(index, &meta);
    if meta.untrained == 0 && x.len() != model.dim {
        crate::errors::check_vector(arrw_core::text::check_expected_dim(
            model.dim as i32,
            x.len(),
        ));
    }
    let mut code = vec![0u8; model.code_size()];
    let list = if meta.untrained != 0 {
        0
    } else {
        model.encode(x, &mut code)
    };
    let blk = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
    append(
        index,
        &meta,
        list,
        &code,
        layout::tid_bytes(blk, tid.ip_posid),
    );
}

/// Appends one entry to `list`, extending the list by a page when it is full.
pub fn append(
    index: pg_sys::Relation,
    meta: &layout::MetaData,
    list: u32,
    code: &[u8],
    tid: [u8; 6],
) {
    let geom = DataGeom::of(meta);
    let dir = page::list_dir(index, meta, list);
    let mut chain = page::ListChain::new(index, meta, &dir);
    chain.seek(dir.entry.insert);
    while let Some(blk) = chain.next_block() {
        pg_sys::check_for_interrupts!();
        let mut ws = WriteSet::new(index);
        let cur = ws.lock(index, blk);
        let h = chain.visit(ws.page(cur));
        if h.count < geom.capacity {
            geom.push(ws.page(cur), code, tid);
            ws.commit();
            return;
        }
        if h.next != layout::INVALID_BLOCK {
            // Someone extended the list after we read the directory; follow.
            continue;
        }
        let new_buf = page::extend(index);
        let newi = ws.add(new_buf, true);
        let new_blk = ws.block(newi);
        {
            let p = ws.page(newi);
            page::init_page(p, layout::DATA_SPECIAL);
            page::set_lower(p, geom.contents_len());
            geom.set_next(p, layout::INVALID_BLOCK);
            geom.set_list(p, list);
            layout::set_page_kind(p, layout::KIND_DATA);
            geom.push(p, code, tid);
        }
        geom.set_next(ws.page(cur), new_blk);
        let d = ws.lock(index, dir.blk);
        let mut e: DirEntry = layout::read_dir(ws.page(d), dir.slot);
        e.insert = new_blk;
        layout::write_dir(ws.page(d), dir.slot, e);
        ws.commit();
        return;
    }
}
