//! `aminsert`: a new row's entries join the transaction's pending entries of the
//! index (pending.rs), which writes them to the ends of their lists (append.rs)
//! when they must be visible. An index built on an empty table (untrained) takes
//! each row's entries in list 0 at once.

use super::append::{append_many, Entry};
use super::layout;
use super::model;
use super::page;
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
    info: *mut pg_sys::IndexInfo,
) -> bool {
    // SAFETY: one key column: values/isnull have one element; heap_tid is valid.
    let (datum, null, tid) = unsafe { (*values, *isnull, *heap_tid) };
    if null {
        return false;
    }
    // SAFETY: `info` is the executor's IndexInfo for this index (or null).
    let cache = unsafe { statement_cache(info) };
    let mut local = StatementCache::default();
    let cache = cache.unwrap_or(&mut local);
    // aminsert runs in the executor's per-query context: an out-of-line vector
    // detoasted there would stay until the statement ends, once per row of an
    // INSERT ... SELECT or UPDATE. Everything one insert allocates lives in its
    // own context instead, freed when it returns.
    let ctx = RowContext::new(c"ivfpq insert");
    ctx.scope(|| insert_one(index, datum, tid, cache));
    ctx.delete();
    false
}

/// What one statement's inserts into an index remember between rows
/// (`IndexInfo.ii_AmCache`, PostgreSQL's per-statement cache for `aminsert`).
#[repr(C)]
#[derive(Default)]
struct StatementCache {
    /// A lower bound of the index's size in blocks (0: not counted yet):
    /// block numbers read from pages are checked against it, and the index
    /// counted again only when one is past it. Within a statement the index
    /// only grows (we hold RowExclusiveLock: nothing truncates or rewrites it).
    nblocks: u32,
    /// The trained model's dimensions (0: not known yet, or not trained).
    /// A model never changes within a relfilenode, and nothing gives the
    /// index a new one while we hold RowExclusiveLock.
    dim: u32,
    /// 1 + whether the key is a `vector[]` (0: not known yet).
    multi: u8,
    /// Bytes of an entry's codes (PQ and refine) in the trained model, for
    /// the pending entries' memory (`pending::push`).
    coded: u32,
}

/// This statement's [`StatementCache`] for the index, made on its first row.
///
/// # Safety
/// `info` is null or the IndexInfo the executor passes to `aminsert`.
unsafe fn statement_cache<'a>(info: *mut pg_sys::IndexInfo) -> Option<&'a mut StatementCache> {
    // SAFETY: a non-null `info` is a live IndexInfo (reading one field).
    if info.is_null() || unsafe { (*info).ii_Context.is_null() } {
        return None;
    }
    // SAFETY: ii_AmCache is ours (null until we set it) and lives in
    // ii_Context, the IndexInfo's memory, as long as the statement; the
    // allocation is zeroed, a valid StatementCache (repr(C), integers).
    unsafe {
        if (*info).ii_AmCache.is_null() {
            (*info).ii_AmCache = pg_sys::MemoryContextAllocZero(
                (*info).ii_Context,
                std::mem::size_of::<StatementCache>(),
            );
        }
        Some(&mut *((*info).ii_AmCache as *mut StatementCache))
    }
}

/// Adds the row's entries to the index: to this transaction's pending
/// entries (pending.rs) once the index is trained, else straight to list 0
/// of the untrained index.
fn insert_one(
    index: pg_sys::Relation,
    datum: pg_sys::Datum,
    tid: pg_sys::ItemPointerData,
    cache: &mut StatementCache,
) {
    let blk = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
    let tid = layout::tid_bytes(blk, tid.ip_posid);
    if cache.multi == 0 {
        cache.multi = 1 + u8::from(model::is_multi(index));
    }
    let multi = cache.multi == 2;
    if cache.dim == 0 {
        let meta = page::meta_counted(index, &mut cache.nblocks);
        if meta.untrained != 0 {
            return insert_untrained(index, &meta, datum, multi, tid, cache);
        }
        let model = model::load(index, &meta);
        cache.dim = model.dim as u32;
        cache.coded = (model.code_size() + model.fine_size()) as u32;
    }
    let coded = cache.coded as usize;
    let dim = cache.dim as usize;
    // A vector[] key (vector_maxsim_ops) adds one entry per element, each
    // under the row's TID.
    // SAFETY: non-null key datum of the indexed column, valid for this call.
    unsafe {
        crate::vector::each_key_vector(datum, multi, |x| {
            if x.len() != dim {
                crate::errors::check_vector(arrw_core::text::check_expected_dim(
                    dim as i32,
                    x.len(),
                ));
            }
            super::pending::push(index, x, tid, coded);
        })
    };
}

/// An untrained index (built on an empty table) keeps its rows' entries,
/// without codes, in list 0 until it is built again; each goes straight to
/// the page (no model to encode a batch with).
///
/// Its rows keep one dimension, as a trained index's do: the first row's,
/// recorded on the meta page (`page::record_untrained_dim`), which a column
/// of declared dimensions gives too (and which outlives an `ALTER COLUMN`
/// that drops the declaration without rebuilding the index).
/// Rows of mixed dimensions made the index's exact scans fail on rows a
/// filter would have dropped, and its REINDEX fail.
fn insert_untrained(
    index: pg_sys::Relation,
    meta: &layout::MetaData,
    datum: pg_sys::Datum,
    multi: bool,
    tid: [u8; layout::TID_BYTES],
    cache: &mut StatementCache,
) {
    let model = model::load(index, meta);
    let code = vec![0u8; model.code_size()];
    let fine = vec![0u8; model.fine_size()];
    let entry = Entry {
        code: &code,
        fine: &fine,
        faithful: true,
        tid,
    };
    // Each element of a vector[] key in its own WAL record (a crash between
    // two leaves some of the row's elements indexed: the scan then estimates
    // the row from those and re-ranks it exactly).
    let mut want = meta.untrained_dim as usize;
    if want != 0 {
        // A recorded count the declared one contradicts is damage (XX002),
        // not this row's fault (model::untrained_dim).
        super::model::untrained_dim(index, meta);
    }
    // SAFETY: non-null key datum of the indexed column, valid for this call.
    unsafe {
        crate::vector::each_key_vector(datum, multi, |x| {
            // Recorded whether or not the column declares its dimensions:
            // `ALTER COLUMN ... TYPE vector` drops a declared one without
            // rebuilding the index, and rows of other dimensions then came in.
            if want == 0 {
                // The options must fit the dimensions it will keep: a REINDEX
                // of them would fail (options::check_options_fit).
                super::options::check_options_fit(&super::options::of(index), x.len(), multi);
                want = page::record_untrained_dim(index, x.len() as u32) as usize;
            }
            if want != 0 && x.len() != want {
                refuse_other_dim(index, want, x.len());
            }
            append_many(index, meta, 0, &[entry], &mut cache.nblocks)
        })
    };
}

/// ERROR 22000 for a row of `got` dimensions in an untrained index whose rows
/// have `want` (the first row's: `MetaData::untrained_dim`), worded as the
/// column's type words it (`expected 3 dimensions, not 2`), saying where the
/// number came from and how to start again.
#[cold]
fn refuse_other_dim(index: pg_sys::Relation, want: usize, got: usize) -> ! {
    crate::errors::error_detail_hint(
        PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        format!("expected {want} dimensions, not {got}"),
        format!(
            "Index \"{}\" was built on an empty table and keeps the dimensions of the first \
             row inserted since (also of a row whose transaction rolled back).",
            page::rel_name(index)
        ),
        "Declare the column's dimensions (vector(n)), or REINDEX the index once the table \
         holds rows of the dimensions you want.",
        "aminsert",
    )
}
