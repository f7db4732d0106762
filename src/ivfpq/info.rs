//! `arrw.ivfpq_info(index)` and `arrw.ivfpq_check(index)`: what an index holds,
//! and a full walk that raises an ERROR on any broken invariant.

use super::layout::{self, DataGeom};
use super::model;
use super::page::{nblocks, ReadGuard};
use crate::fmgr;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::collections::HashSet;

/// Opens an ivfpq index by OID with AccessShareLock, or raises a clear error.
fn open_ivfpq(oid: pg_sys::Oid) -> pg_sys::Relation {
    // SAFETY: relation_open raises an ERROR for a missing OID; we check it is an
    // index whose AM callbacks are ours before using it as one.
    unsafe {
        let rel = pg_sys::relation_open(oid, pg_sys::AccessShareLock as i32);
        let ivfpq_am = pg_sys::get_index_am_oid(c"ivfpq".as_ptr(), false);
        let is_ours = (*(*rel).rd_rel).relkind == pg_sys::RELKIND_INDEX as std::ffi::c_char
            && (*(*rel).rd_rel).relam == ivfpq_am;
        if !is_ours {
            let name = model::rel_name(rel);
            pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
            super::user_error(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{name}\" is not an ivfpq index"),
            );
        }
        rel
    }
}

fn close(rel: pg_sys::Relation) {
    // SAFETY: opened by open_ivfpq with this lock mode.
    unsafe { pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32) }
}

/// Per-list row counts, walking every list's chain.
fn list_sizes(index: pg_sys::Relation, meta: &layout::MetaData) -> Vec<u64> {
    let geom = DataGeom::of(meta);
    (0..meta.lists)
        .map(|list| {
            let (dir_blk, slot) = layout::dir_location(meta, list);
            let mut blk = layout::read_dir(ReadGuard::new(index, dir_blk).page(), slot).head;
            let mut n = 0u64;
            while blk != layout::INVALID_BLOCK {
                pg_sys::check_for_interrupts!();
                let g = ReadGuard::new(index, blk);
                n += geom.count(g.page()) as u64;
                blk = geom.next(g.page());
            }
            n
        })
        .collect()
}

fn text_datum(s: &str) -> pg_sys::Datum {
    // SAFETY: cstring_to_text_with_len copies `s` into a new palloc'd text.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            s.as_ptr() as *const std::ffi::c_char,
            s.len() as i32,
        ))
    }
}

crate::v1! {
    /// `arrw._ivfpq_info_json(regclass) -> text`: the facts `arrw.ivfpq_info` shows.
    fn arrw_ivfpq_info_json(fcinfo) {
        // SAFETY: argument 0 is a regclass (an OID), the function is STRICT.
        let oid = pg_sys::Oid::from(unsafe { fmgr::arg(fcinfo, 0) }.value() as u32);
        let index = open_ivfpq(oid);
        let meta = model::read_meta(index);
        let sizes = list_sizes(index, &meta);
        let pages = nblocks(index);
        let m = model::load(index, &meta);
        close(index);
        let total: u64 = sizes.iter().sum();
        let (min, max) = (sizes.iter().copied().min().unwrap_or(0), sizes.iter().copied().max().unwrap_or(0));
        let avg = if sizes.is_empty() { 0.0 } else { total as f64 / sizes.len() as f64 };
        let metric = match m.metric {
            arrw_core::ivf::Metric::L2 => "l2",
            arrw_core::ivf::Metric::InnerProduct => "inner_product",
            arrw_core::ivf::Metric::Cosine => "cosine",
        };
        let json = format!(
            "{{\"lists\":{},\"rows\":{},\"rows_min\":{},\"rows_avg\":{:.2},\"rows_max\":{},\"code_bytes\":{},\"pages\":{},\"built_rows\":{},\"rows_since_build\":{},\"dim\":{},\"m\":{},\"nbits\":{},\"metric\":\"{}\",\"trained\":{}}}",
            meta.lists,
            total,
            min,
            avg,
            max,
            meta.code_size,
            pages,
            meta.built_rows,
            total as i64 - meta.built_rows as i64,
            meta.dim,
            m.pq.m,
            m.pq.nbits,
            metric,
            meta.untrained == 0
        );
        text_datum(&json)
    }
}

crate::v1! {
    /// `arrw.ivfpq_check(regclass) -> boolean`: walks every page; ERROR on the
    /// first broken invariant, true when all hold.
    fn arrw_ivfpq_check(fcinfo) {
        // SAFETY: argument 0 is a regclass, the function is STRICT.
        let oid = pg_sys::Oid::from(unsafe { fmgr::arg(fcinfo, 0) }.value() as u32);
        let index = open_ivfpq(oid);
        let result = check_index(index);
        close(index);
        if let Err(msg) = result {
            super::user_error(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, msg);
        }
        fmgr::bool(true)
    }
}

fn check_index(index: pg_sys::Relation) -> Result<(), String> {
    let name = model::rel_name(index);
    let meta = model::read_meta(index);
    let n = nblocks(index);
    let model = model::load(index, &meta);
    if model.lists as u32 != meta.lists || model.code_size() as u32 != meta.code_size {
        return Err(format!(
            "index \"{name}\": meta page and model disagree on lists or code size"
        ));
    }
    let mut seen: HashSet<u32> = HashSet::new();
    seen.insert(layout::META_BLOCK);
    for b in meta.model_start..meta.model_start + meta.model_pages {
        if layout::page_kind(ReadGuard::new(index, b).page()) != layout::KIND_MODEL {
            return Err(format!(
                "index \"{name}\": block {b} should be a model page"
            ));
        }
        seen.insert(b);
    }
    for b in meta.dir_start..meta.dir_start + meta.dir_pages {
        if layout::page_kind(ReadGuard::new(index, b).page()) != layout::KIND_DIR {
            return Err(format!(
                "index \"{name}\": block {b} should be a directory page"
            ));
        }
        seen.insert(b);
    }
    let geom = DataGeom::of(&meta);
    for list in 0..meta.lists {
        let (dir_blk, slot) = layout::dir_location(&meta, list);
        let e = layout::read_dir(ReadGuard::new(index, dir_blk).page(), slot);
        let mut blk = e.head;
        let mut found_insert = false;
        while blk != layout::INVALID_BLOCK {
            pg_sys::check_for_interrupts!();
            if blk >= n {
                return Err(format!(
                    "index \"{name}\": list {list} links to block {blk} past the end ({n} blocks)"
                ));
            }
            if !seen.insert(blk) {
                return Err(format!(
                    "index \"{name}\": block {blk} is reached twice (list {list})"
                ));
            }
            let g = ReadGuard::new(index, blk);
            let p = g.page();
            if layout::page_kind(p) != layout::KIND_DATA {
                return Err(format!(
                    "index \"{name}\": block {blk} in list {list} is not a data page"
                ));
            }
            if geom.list(p) != list {
                return Err(format!("index \"{name}\": block {blk} belongs to list {} but is chained in list {list}", geom.list(p)));
            }
            if geom.count(p) > geom.capacity {
                return Err(format!(
                    "index \"{name}\": block {blk} claims {} entries, capacity {}",
                    geom.count(p),
                    geom.capacity
                ));
            }
            for i in 0..geom.count(p) {
                let (tb, off) = layout::tid_parts(geom.tid(p, i));
                if off == 0 || tb == u32::MAX {
                    return Err(format!("index \"{name}\": block {blk} entry {i} has an invalid heap TID ({tb},{off})"));
                }
            }
            found_insert |= blk == e.insert;
            blk = geom.next(p);
        }
        if !found_insert {
            return Err(format!(
                "index \"{name}\": list {list}'s insert page {} is not in its chain",
                e.insert
            ));
        }
    }
    // Blocks nobody links to: a crash between extending the relation and
    // logging the new page can leave an empty block behind; anything else is a leak.
    for b in 0..n {
        if !seen.contains(&b) {
            let g = ReadGuard::new(index, b);
            let p = g.page();
            let is_new = p.iter().all(|&x| x == 0);
            if !is_new {
                return Err(format!(
                    "index \"{name}\": block {b} is not reachable from the meta page"
                ));
            }
        }
    }
    Ok(())
}
