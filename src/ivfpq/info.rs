//! `arrw.ivfpq_info(index)` and `arrw.ivfpq_check(index)`: what an index holds,
//! and a full walk that raises an ERROR on any broken invariant.

use super::layout::{self, Corrupt, DataGeom};
use super::model;
use super::page::{self, nblocks, ListChain, ReadGuard};
use super::tempfile::TempRuns;
use crate::fmgr;
use arrw_core::spill::SpillHeap;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::collections::HashSet;

/// Opens an ivfpq index by OID with AccessShareLock, or raises a clear error.
/// The caller must be allowed to read the index's table: what an index holds
/// (row counts, list sizes) is information about the table's rows.
fn open_ivfpq(oid: pg_sys::Oid) -> pg_sys::Relation {
    // SAFETY: IndexGetRelation with missing_ok and get_rel_relkind only read
    // the syscache (0 for a missing OID); try_relation_open returns NULL for a
    // missing OID, which we check; we check it is an index whose AM callbacks
    // are ours before using it as one.
    unsafe {
        // Checked before taking any lock, as for any table the caller names.
        let heap = pg_sys::IndexGetRelation(oid, true);
        if heap != pg_sys::InvalidOid {
            require_select(heap);
        } else {
            // Not an index (or nothing): said from the catalog cache, without
            // waiting for a lock on a relation the caller may not even read.
            let kind = pg_sys::get_rel_relkind(oid);
            if kind == 0 {
                crate::errors::error(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                    format!("relation with OID {} does not exist", oid.to_u32()),
                );
            }
            if kind != pg_sys::RELKIND_INDEX as std::ffi::c_char {
                // Named, as an index of another kind is (a table or view was
                // "relation with OID 18538"; hunt-147): the name is the
                // catalog's, which every role can read.
                let name = pg_sys::get_rel_name(oid);
                let what = if name.is_null() {
                    format!("relation with OID {}", oid.to_u32())
                } else {
                    format!("\"{}\"", std::ffi::CStr::from_ptr(name).to_string_lossy())
                };
                crate::errors::error(
                    PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                    format!("{what} is not an ivfpq index"),
                );
            }
        }
        // A missing OID (a dropped relation, a number typed by hand) is the
        // caller's undefined table, not relation_open's internal error.
        let rel = pg_sys::try_relation_open(oid, pg_sys::AccessShareLock as i32);
        if rel.is_null() {
            crate::errors::error(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("relation with OID {} does not exist", oid.to_u32()),
            );
        }
        let ivfpq_am = pg_sys::get_index_am_oid(c"ivfpq".as_ptr(), false);
        let is_ours = (*(*rel).rd_rel).relkind == pg_sys::RELKIND_INDEX as std::ffi::c_char
            && (*(*rel).rd_rel).relam == ivfpq_am;
        if !is_ours {
            let name = page::rel_name(rel);
            let partitioned = (*(*rel).rd_rel).relkind
                == pg_sys::RELKIND_PARTITIONED_INDEX as std::ffi::c_char
                && (*(*rel).rd_rel).relam == ivfpq_am;
            pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
            if partitioned {
                crate::errors::error_hint(
                    PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                    format!(
                        "\"{name}\" is the ivfpq index of a partitioned table, which has no \
                         pages of its own: each partition has its own index"
                    ),
                    format!(
                        "Name a partition's index: SELECT relid FROM pg_partition_tree('{}') \
                         WHERE isleaf lists them.",
                        name.replace('\'', "''")
                    ),
                    "ivfpq",
                );
            }
            crate::errors::error(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{name}\" is not an ivfpq index"),
            );
        }
        let indrelid = (*(*rel).rd_index).indrelid;
        if indrelid != heap {
            require_select(indrelid);
        }
        // A hot standby has no unlogged relation's files (their main forks
        // are reset at promotion); PostgreSQL refuses queries on them with
        // this error, and so do we, before reading a page (a read was 58P01).
        if pg_sys::RecoveryInProgress()
            && (*(*rel).rd_rel).relpersistence
                == pg_sys::RELPERSISTENCE_UNLOGGED as std::ffi::c_char
        {
            pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
            crate::errors::error(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "cannot access temporary or unlogged relations during recovery".into(),
            );
        }
        // A CREATE INDEX CONCURRENTLY that failed or was cancelled before its
        // build leaves an index of no blocks: there is nothing to describe
        // (its meta page would be a read past the end, XX001). One that a
        // crash interrupted during its build (or a REINDEX CONCURRENTLY's new
        // index) may have blocks, but no meta page yet: the build writes the
        // meta page last, and PostgreSQL never marked the index valid.
        let nblocks =
            pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
        // A valid index always has its meta page: none is damage (a file
        // truncated to nothing), not an unfinished build.
        if nblocks == 0 && (*(*rel).rd_index).indisvalid {
            page::corrupt_message(
                rel,
                format!(
                    "ivfpq index \"{}\" has no blocks: its file is empty (block 0, the meta page, is missing)",
                    page::rel_name(rel)
                ),
            );
        }
        if nblocks == 0 || (!(*(*rel).rd_index).indisvalid && page::meta_unwritten(rel)) {
            let name = page::rel_name(rel);
            pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
            crate::errors::error(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "ivfpq index \"{name}\" has not been built (a CREATE INDEX CONCURRENTLY \
                     that failed or was cancelled leaves it so); REINDEX or drop it"
                ),
            );
        }
        // What the index holds includes this transaction's own new rows.
        super::pending::flush_index(rel);
        rel
    }
}

/// Whether the session's role (`SET ROLE`'s, not a `SECURITY DEFINER`
/// function's) may read every row of table `heap`: SELECT on it, and no
/// row-level security policy applying. What `ivfpq.profile` may count of a
/// scan: its candidate and filter counts are counts of the table's rows, and
/// a scan through a view (run with the view owner's rights on the table) or
/// under a policy read rows the role may not (profile.rs).
///
/// A partition counts when the role may so read it or any table it is a
/// partition of: PostgreSQL checks a query's privileges on the table it names,
/// and a role granted SELECT on a partitioned table (partitions have no grants
/// of their own) reads every row of its partitions through it (hunt-50). A
/// grant of every column counts as a grant of the table.
pub(super) fn may_read_every_row(heap: pg_sys::Oid) -> bool {
    // SAFETY: reading backend globals (the current and the SET ROLE user).
    let me = unsafe { pg_sys::GetOuterUserId() };
    // SAFETY: as above.
    if unsafe { pg_sys::GetUserId() } != me {
        return false;
    }
    let reads = |rel: pg_sys::Oid| {
        let select = pg_sys::ACL_SELECT as pg_sys::AclMode;
        // SAFETY: catalog lookups for a live OID (the scan's table is open and
        // locked, and its ancestors are locked with it); check_enable_rls with
        // noError and an explicit role only reads catalogs.
        unsafe {
            schema_usable(rel, me)
                && (pg_sys::pg_class_aclcheck(rel, me, select) == pg_sys::AclResult::ACLCHECK_OK
                    || pg_sys::pg_attribute_aclcheck_all(
                        rel,
                        me,
                        select,
                        pg_sys::AclMaskHow::ACLMASK_ALL,
                    ) == pg_sys::AclResult::ACLCHECK_OK)
                && pg_sys::check_enable_rls(rel, me, true)
                    != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        }
    };
    if reads(heap) {
        return true;
    }
    // SAFETY: a syscache lookup of a live OID.
    if !unsafe { pg_sys::get_rel_relispartition(heap) } {
        return false;
    }
    // get_partition_ancestors, called through pgrx's FFI guard (an ERROR
    // inside it becomes a Rust panic pgrx turns back into the ERROR), returns
    // a palloc'd list of OIDs (NIL for none).
    // SAFETY: as said; each cell below the list's length is read as an OID.
    unsafe {
        let list = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| get_partition_ancestors(heap));
        if list.is_null() {
            return false;
        }
        (0..(*list).length as usize).any(|i| reads((*(*list).elements.add(i)).oid_value))
    }
}

// SAFETY: the signature is PostgreSQL 15's (catalog/partition.h:
// `List *get_partition_ancestors(Oid relid)`); it is called only through
// pgrx's FFI guard.
unsafe extern "C-unwind" {
    /// PostgreSQL's catalog/partition.h (not in pgrx's bindings): the tables
    /// `relid` is a partition of, nearest first.
    fn get_partition_ancestors(relid: pg_sys::Oid) -> *mut pg_sys::List;
}

/// Whether `role` has USAGE on the schema of `rel`: without it, no query of
/// the role's reaches the table, whatever its grants (hunt-63: the index
/// functions, given the index's OID, and the profile counters answered).
fn schema_usable(rel: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups of a live OID (an open or locked relation).
    unsafe {
        pg_sys::pg_namespace_aclcheck(
            pg_sys::get_rel_namespace(rel),
            role,
            pg_sys::ACL_USAGE as pg_sys::AclMode,
        ) == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// ERROR 42501 unless the current user has USAGE on the schema of table
/// `heap`, SELECT on the table, and no row-level security policy limits which
/// of its rows the user reads.
fn require_select(heap: pg_sys::Oid) {
    // SAFETY: reading a backend global.
    let me = unsafe { pg_sys::GetUserId() };
    if !schema_usable(heap, me) {
        // SAFETY: aclcheck_error raises PostgreSQL's own "permission denied
        // for schema" (insufficient_privilege); get_namespace_name returns a
        // palloc'd name of a live schema.
        unsafe {
            pg_sys::aclcheck_error(
                pg_sys::AclResult::ACLCHECK_NO_PRIV,
                pg_sys::ObjectType::OBJECT_SCHEMA,
                pg_sys::get_namespace_name(pg_sys::get_rel_namespace(heap)),
            );
        }
    }
    // SAFETY: pg_class_aclcheck raises an ERROR itself for a missing OID;
    // aclcheck_error raises PostgreSQL's own "permission denied for table"
    // (insufficient_privilege) naming the table; get_rel_name returns a
    // palloc'd name or NULL, which aclcheck_error accepts (and which we check
    // before reading it); check_enable_rls with noError only reads the
    // relation's pg_class row and the caller's role.
    unsafe {
        let r = pg_sys::pg_class_aclcheck(
            heap,
            pg_sys::GetUserId(),
            pg_sys::ACL_SELECT as pg_sys::AclMode,
        );
        if r != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(
                r,
                pg_sys::get_relkind_objtype(pg_sys::get_rel_relkind(heap)),
                pg_sys::get_rel_name(heap),
            );
        }
        // Row-level security that applies to the caller hides rows the
        // index's counts and list sizes include (PostgreSQL hides pg_stats
        // from such a role too).
        if pg_sys::check_enable_rls(heap, pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            let name = pg_sys::get_rel_name(heap);
            let name = if name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned()
            };
            crate::errors::error(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "row-level security limits what you may read of table \"{name}\": \
                     its ivfpq index's counts cover every row"
                ),
            );
        }
    }
}

fn close(rel: pg_sys::Relation) {
    // SAFETY: opened by open_ivfpq with this lock mode.
    unsafe { pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32) }
}

/// Per-list row counts, walking every list's chain.
fn list_sizes(index: pg_sys::Relation, meta: &layout::MetaData) -> Vec<u64> {
    (0..meta.lists)
        .map(|list| {
            let dir = page::list_dir(index, meta, list);
            let mut chain = ListChain::new(index, meta, &dir);
            let mut n = 0u64;
            while let Some(blk) = chain.next_block() {
                pg_sys::check_for_interrupts!();
                n += chain.visit(ReadGuard::new(index, blk).page()).count as u64;
            }
            n
        })
        .collect()
}

crate::v1! {
    /// `arrw._ivfpq_info_json(regclass) -> text`: the facts `arrw.ivfpq_info` shows.
    fn arrw_ivfpq_info_json(fcinfo) {
        // SAFETY: argument 0 is a regclass (an OID), the function is STRICT.
        let oid = pg_sys::Oid::from(unsafe { fmgr::arg(fcinfo, 0) }.value() as u32);
        let index = open_ivfpq(oid);
        let meta = page::meta(index);
        let sizes = list_sizes(index, &meta);
        let pages = nblocks(index);
        let m = model::load(index, &meta);
        let option = crate::ivfpq::options::of(index).probes.max(0) as u32;
        close(index);
        // An index built on an empty table has no lists to probe: its scans
        // rank every row exactly until it is rebuilt.
        let (probes, deep, source) = if meta.untrained != 0 {
            (0, 0, "untrained")
        } else {
            let (p, d, s) = arrw_core::ivf::index_probes(
                option,
                meta.lists as usize,
                (meta.probes, meta.deep_probes),
            );
            (p, d, s.name())
        };
        let total: u64 = sizes.iter().sum();
        let (min, max) = (sizes.iter().copied().min().unwrap_or(0), sizes.iter().copied().max().unwrap_or(0));
        let avg = if sizes.is_empty() { 0.0 } else { total as f64 / sizes.len() as f64 };
        let metric = match m.metric {
            arrw_core::ivf::Metric::L2 => "l2",
            arrw_core::ivf::Metric::InnerProduct => "inner_product",
            arrw_core::ivf::Metric::Cosine => "cosine",
        };
        // An index built from no rows has no model: the dimensions its rows
        // are held to (the first row's, else the declared ones), and the code
        // shape its build will use (m, nbits and their bytes), not the
        // placeholder model's (hunt-54, hunt-56: m and code bytes disagreed).
        let untrained_dim = (meta.untrained != 0).then(|| model::untrained_dim(index, &meta));
        let (code_bytes, pq_m, pq_nbits) = match untrained_dim {
            Some(d) if d > 0 => {
                let (_, pm, nb) = super::options::choose_params(&super::options::of(index), 0, d);
                ((pm * nb as usize).div_ceil(8), pm, nb)
            }
            _ => (meta.code_size as usize, m.pq.m, m.pq.nbits),
        };
        let json = format!(
            "{{\"lists\":{},\"rows\":{},\"rows_min\":{},\"rows_avg\":{:.2},\"rows_max\":{},\"code_bytes\":{},\"pages\":{},\"built_rows\":{},\"rows_since_build\":{},\"dim\":{},\"m\":{},\"nbits\":{},\"metric\":\"{}\",\"trained\":{},\"refine_bits\":{},\"default_probes\":{},\"deep_probes\":{},\"probes_measured\":{},\"probes_option\":{},\"index_probes\":{},\"index_deep_probes\":{},\"probes_source\":\"{}\"}}",
            meta.lists,
            total,
            min,
            avg,
            max,
            code_bytes,
            pages,
            meta.built_rows,
            total as i64 - meta.built_rows as i64,
            untrained_dim.unwrap_or(meta.dim as usize),
            pq_m,
            pq_nbits,
            metric,
            meta.untrained == 0,
            meta.refine_bits,
            arrw_core::ivf::index_default_probes(meta.lists as usize, meta.probes),
            meta.deep_probes,
            meta.probes > 0,
            option,
            probes,
            deep,
            source
        );
        crate::fmgr::text(&json)
    }
}

crate::v1! {
    /// `arrw.ivfpq_check(regclass) -> boolean`: walks every page; ERROR on the
    /// first broken invariant, true when all hold.
    fn arrw_ivfpq_check(fcinfo) {
        // SAFETY: argument 0 is a regclass, the function is STRICT.
        let oid = pg_sys::Oid::from(unsafe { fmgr::arg(fcinfo, 0) }.value() as u32);
        let index = open_ivfpq(oid);
        // On a standby, replay writes a new data page's fine pages, the page
        // and the link to it in separate records, with no lock held across
        // them: a walk that counted the blocks between two of them found the
        // page filled but on no chain (4 of 489,048 checks during inserts),
        // and reported a healthy index corrupt. The walk is taken again there
        // before anything is reported: replay has moved on by then, and damage
        // stays.
        // SAFETY: a plain read of this backend's recovery state.
        let attempts = if unsafe { pg_sys::RecoveryInProgress() } { 3 } else { 1 };
        for attempt in 1..=attempts {
            match check_index(index) {
                Ok(()) => break,
                Err(e) if attempt == attempts => page::corrupt(index, e),
                Err(_) => {
                    // SAFETY: a plain sleep of this backend, then its interrupt check.
                    unsafe { pg_sys::pg_usleep(10_000) };
                    pg_sys::check_for_interrupts!();
                }
            }
        }
        close(index);
        fmgr::boolean(true)
    }
}

/// Whether data page `blk` holds an entry for heap TID `tid` (as `tid_u64`),
/// read again now.
fn holds_tid(index: pg_sys::Relation, geom: &DataGeom, blk: u32, tid: u64) -> bool {
    let g = ReadGuard::new(index, blk);
    let p = g.page();
    if layout::page_kind(p) != layout::KIND_DATA {
        return false;
    }
    let n = geom.count(p).min(geom.capacity);
    (0..n).any(|i| layout::tid_u64(geom.tid(p, i)) == tid)
}

/// Everything the scan, insert and VACUUM paths check as they go (through
/// `page::meta`, `page::list_dir` and `page::ListChain`, which raise the
/// ERROR themselves), plus what only a full walk can see: model and directory
/// page kinds, blocks on two chains, insert pages off their chain, heap TIDs,
/// blocks nothing links to.
fn check_index(index: pg_sys::Relation) -> Result<(), Corrupt> {
    let meta = page::meta(index);
    let n = nblocks(index);
    let model = model::load(index, &meta);
    let bad = |block: u32, what: String| Err(Corrupt { block, what });
    if model.lists as u32 != meta.lists || model.code_size() as u32 != meta.code_size {
        return bad(
            layout::META_BLOCK,
            "meta page and model disagree on lists or code size".into(),
        );
    }
    if let (d, Some(declared)) = (meta.untrained_dim, model::declared_dim(index)) {
        if meta.untrained != 0 && d != 0 && d as usize != declared {
            return bad(
                layout::META_BLOCK,
                format!(
                    "it holds rows of {d} dimensions, but its column is declared with {declared}"
                ),
            );
        }
    }
    let mut seen: HashSet<u32> = HashSet::new();
    seen.insert(layout::META_BLOCK);
    // Every page's free space is zero bytes (page::check_hole): bounds damaged
    // over live contents pass every other check until a write erases them.
    page::check_hole(
        ReadGuard::new(index, layout::META_BLOCK).page(),
        layout::META_BLOCK,
    )?;
    // page::meta checked that these ranges lie inside the index. Every
    // page's header bounds are its layout's too (the model pages' only
    // here: nothing else reads their headers, and nothing writes them).
    for b in meta.model_start..meta.model_start + meta.model_pages {
        let g = ReadGuard::new(index, b);
        layout::check_model_page(g.page(), b, &meta)?;
        page::check_hole(g.page(), b)?;
        seen.insert(b);
    }
    for b in meta.dir_start..meta.dir_start + meta.dir_pages {
        let g = ReadGuard::new(index, b);
        layout::check_dir_page(g.page(), b, &meta)?;
        page::check_hole(g.page(), b)?;
        seen.insert(b);
    }
    // An index of one vector per row holds each row's TID once; a page that
    // holds one twice returned that row twice (and another not at all).
    let one_per_row = !model::is_multi(index);
    let mut tids: Vec<u64> = Vec::new();
    // And the whole index holds it once: every entry's TID, with its block,
    // goes through a sort held to `work_mem` (the rest in a temporary file).
    // A TID garbled into another live row's, on another page, hides that
    // other row's entry from every scan that stops before meeting both, and
    // the page-by-page check passed it (hunt-142).
    let mut all: SpillHeap<u128> = SpillHeap::new();
    if one_per_row {
        // SAFETY: reading a backend global (work_mem, in kB) and the current
        // memory context, where the temporary file's BufFile is made; it
        // lives as long as this call.
        let (kb, ctx) = unsafe {
            (
                pg_sys::work_mem.max(64) as usize,
                pg_sys::CurrentMemoryContext,
            )
        };
        all.spill_to(kb * 1024 / 2 / 16, Box::new(TempRuns::new(ctx)));
    }
    let geom = DataGeom::of(&meta);
    let fine = layout::FineGeom::of(&meta);
    // The table's block count, counted again when an entry lies beyond it (rows
    // inserted while the walk runs extend the table). The table cannot be
    // dropped or rewritten meanwhile: that takes an exclusive lock on this
    // index, which our share lock blocks, so it is opened without a lock.
    // SAFETY: rd_index is the open index's pg_index row; the heap exists (see
    // above) and is closed again at once.
    let heap_blocks = || unsafe {
        let heap = pg_sys::relation_open((*(*index).rd_index).indrelid, pg_sys::NoLock as i32);
        let n = pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM);
        pg_sys::relation_close(heap, pg_sys::NoLock as i32);
        n
    };
    let table_blocks = std::cell::Cell::new(0);
    for list in 0..meta.lists {
        let dir = page::list_dir(index, &meta, list);
        let mut chain = ListChain::new(index, &meta, &dir);
        let mut found_insert = false;
        while let Some(blk) = chain.next_block() {
            pg_sys::check_for_interrupts!();
            if !seen.insert(blk) {
                return bad(blk, format!("block is reached twice (list {list})"));
            }
            let g = ReadGuard::new(index, blk);
            let p = g.page();
            let h = chain.visit(p);
            page::check_hole(p, blk)?;
            if one_per_row {
                tids.clear();
                tids.extend((0..h.count).map(|i| layout::tid_u64(geom.tid(p, i))));
                tids.sort_unstable();
                if let Some(w) = tids.windows(2).find(|w| w[0] == w[1]) {
                    let (tb, off) = layout::u64_tid(w[0]);
                    return bad(blk, format!("the page holds heap TID ({tb},{off}) twice"));
                }
                for &t in &tids {
                    all.push((u128::from(t) << 32) | u128::from(blk));
                }
            }
            for i in 0..h.count {
                let (tb, off) = layout::tid_parts(geom.tid(p, i));
                if !layout::heap_offset_valid(off) || tb == u32::MAX {
                    return bad(
                        blk,
                        format!("entry {i} has an invalid heap TID ({tb},{off})"),
                    );
                }
                if let Err(n) = page::heap_block_within(tb, &table_blocks, heap_blocks) {
                    return bad(
                        blk,
                        format!(
                            "entry {i} points at block {tb} of the table, which has {n} blocks"
                        ),
                    );
                }
            }
            if let Some(first) = chain.fine_link(fine.as_ref(), &geom, p, blk) {
                let fg = fine.expect("a link implies fine pages");
                for k in 0..fg.pages as u32 {
                    let fb = first + k;
                    if !seen.insert(fb) {
                        return bad(fb, format!("fine block is reached twice (list {list})"));
                    }
                    // Fine entries whose TIDs do not match their rows are not
                    // corruption (a crash can leave them; scans re-rank those
                    // rows from the table), so only the pages are checked.
                    let fgd = ReadGuard::new(index, fb);
                    fg.check(fgd.page(), fb, blk)?;
                    page::check_hole(fgd.page(), fb)?;
                }
            }
            found_insert |= blk == dir.entry.insert;
        }
        if !found_insert {
            return bad(
                dir.blk,
                format!(
                    "list {list}'s insert page {} is not on the list's chain",
                    dir.entry.insert
                ),
            );
        }
    }
    let mut prev: Option<u128> = None;
    let mut n_popped = 0u64;
    while let Some(r) = all.pop() {
        n_popped += 1;
        if n_popped.is_multiple_of(65_536) {
            pg_sys::check_for_interrupts!();
        }
        if let Some(p) = prev.filter(|p| p >> 32 == r >> 32) {
            let tid = (r >> 32) as u64;
            let (a, b) = (p as u32, r as u32);
            // This walk holds only an AccessShareLock: VACUUM may have
            // removed the entry on the page read first and freed its line
            // pointer, and an insert reused it, while the walk went on. Both
            // pages are read again: an entry VACUUM removed does not come
            // back, so one still on each page, once the later one was seen,
            // is damage.
            if holds_tid(index, &geom, a, tid) && holds_tid(index, &geom, b, tid) {
                let (tb, off) = layout::u64_tid(tid);
                return bad(
                    b,
                    format!("heap TID ({tb},{off}) is on block {a} too: one row has two entries"),
                );
            }
        }
        prev = Some(r);
    }
    // Blocks nobody links to: a crash between extending the relation and
    // logging the new page can leave an empty block behind; anything else is a leak.
    for b in 0..n {
        if !seen.contains(&b) {
            let g = ReadGuard::new(index, b);
            let p = g.page();
            let is_new = p.iter().all(|&x| x == 0);
            // An insert logs a new data page's fine pages before the page that
            // links to them: a crash in between leaves them unreachable.
            let orphan_fine = fine.is_some() && layout::page_kind(p) == layout::KIND_FINE;
            if !is_new && !orphan_fine {
                return bad(b, "block is not reachable from the meta page".into());
            }
        }
    }
    Ok(())
}
