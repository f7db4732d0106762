//! Loading an index's trained model, with a per-backend cache.
//!
//! The model (centroids and PQ codebooks: 256 × dim floats plus lists × dim) is
//! needed by every insert and query. Reading and decoding it from its pages each
//! time would cost more than the search itself, so each backend keeps the decoded
//! model of each index it used, with the build it came from: the index's
//! relfilenode and the build's generation number (a REINDEX writes a new
//! relfilenode and generation, which replaces the index's entry; VACUUM never
//! changes a model).

use super::layout::{self, MetaData};
use super::page::{rel_name, ReadGuard};
use arrw_core::buildcache::BuildCache;
use arrw_core::ivf::{IvfPqModel, Metric};
use arrw_core::refine::ResidualSq;
use pgrx::guc::GucSetting;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// What identifies one build of one index in a backend's caches: database,
/// relfilenode (new at REINDEX and TRUNCATE), the build's generation, and the
/// meta page's `untrained` flag: a flag flipped by damage then misses the
/// cache, and reading the model checks it against the model's seal (a
/// session holding the model cached took a trained index for an untrained
/// one, and its inserts wrote zero codes into list 0; hunt-105).
pub type Key = (u32, u32, u64, u32);

/// The cache key of `index` as built (see [`Key`]).
pub fn key(index: pg_sys::Relation, meta: &MetaData) -> Key {
    // SAFETY: rd_node is a plain field of the open relation.
    let node = unsafe { (*index).rd_node };
    (
        node.dbNode.into(),
        node.relNode.into(),
        meta.generation,
        meta.untrained,
    )
}

/// Models a backend keeps at most (beyond the one in use): past it, or past
/// `ivfpq.model_cache` bytes, the least recently used go (arrw_core::buildcache,
/// which also replaces an index's model when it is rebuilt).
const CACHE_MODELS: usize = 4096;

/// `ivfpq.model_cache`, in MB (registered with the other settings in
/// options.rs).
pub static MODEL_CACHE_MB: GucSetting<i32> = GucSetting::<i32>::new(512);

/// `ivfpq.model_cache` in bytes.
fn model_cache_bytes() -> usize {
    (MODEL_CACHE_MB.get().max(0) as usize) << 20
}

thread_local! {
    // Backends are single-threaded; the cache is only touched from PostgreSQL's
    // own thread (never from rayon workers). Slots are (database, index OID).
    static CACHE: RefCell<BuildCache<(u32, u32), Key, Rc<IvfPqModel>>> =
        RefCell::new(BuildCache::new(CACHE_MODELS, usize::MAX));
}

/// The model of `index`, from the cache or from its pages.
pub fn load(index: pg_sys::Relation, meta: &MetaData) -> Rc<IvfPqModel> {
    let key = key(index, meta);
    // SAFETY: rd_id is a plain field of the open relation.
    let slot = (key.0, u32::from(unsafe { (*index).rd_id }));
    // The meta page is read anew by every caller, the model maybe long ago:
    // damage to the meta page since (its code layout, dimensions, metric)
    // is caught on a cached model too, not only when the model is read (a
    // cached model once scored codes of the meta page's damaged width: a
    // Rust assertion, XX000, and an `ivfpq_check` that passed; hunt-95).
    // A hit applies `ivfpq.model_cache` too: a budget lowered in a session
    // whose lookups all hit kept every model (hunt-141).
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let m = c.get(slot, &key);
        let before = c.bytes();
        c.set_max_bytes(model_cache_bytes());
        note_dropped(before, 0, c.bytes());
        super::profile::models_cached(c.len());
        m
    });
    if let Some(m) = hit {
        agree(index, meta, &m);
        return m;
    }
    super::profile::count(super::profile::Count::ModelLoads, 1);
    let mut bytes = Vec::with_capacity(meta.model_bytes as usize);
    for i in 0..meta.model_pages {
        let g = ReadGuard::new(index, meta.model_start + i);
        let page = g.page();
        let take = (meta.model_bytes as usize - bytes.len()).min(layout::MODEL_PER_PAGE);
        let off = super::page::contents_offset();
        bytes.extend_from_slice(&page[off..off + take]);
    }
    // The blob is the PQ model, then (with a refine code) its quantizer,
    // then the seal the build wrote over both (layout::seal_model; indexes
    // built before seals have none); check_meta bounded refine_bytes by
    // model_bytes.
    let parsed = layout::unseal_model(&bytes, meta.untrained != 0).and_then(|payload| {
        let split = payload.len().saturating_sub(meta.refine_bytes as usize);
        let mut m = IvfPqModel::from_bytes(&payload[..split])?;
        if meta.refine_bits != 0 {
            // Its bits and width against the meta page's: `agree`, below.
            let sq = ResidualSq::from_bytes(&payload[split..])?;
            m.set_refine(sq)?;
        }
        Ok(m)
    });
    let model = match parsed {
        Ok(m) => Rc::new(m),
        // The model pages' blocks, and the REINDEX hint every damaged page
        // gets (page::corrupt_message).
        Err(e) => super::page::corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\" has a corrupt model (blocks {}..{}): {e}",
                rel_name(index),
                meta.model_start,
                meta.model_start + meta.model_pages
            ),
        ),
    };
    agree(index, meta, &model);
    // What the decoded model holds, roughly: its blob's floats as they are,
    // in the ranking kernel's panels and at half precision (ARCHITECTURE.md,
    // "Memory of the model, per backend").
    let bytes = (meta.model_bytes as usize).saturating_mul(3);
    let cached = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let before = c.bytes();
        // Models of indexes since dropped go first: `REINDEX CONCURRENTLY`
        // (an `index_optimize` job's) builds the new index under a new OID, so
        // no lookup replaces the old one's (a pooled backend grew by one model
        // a rebuild, 25 → 198 MB over 8).
        c.retain(|&(db, oid)| db != key.0 || index_exists(oid));
        c.set_max_bytes(model_cache_bytes());
        c.put(slot, key, model.clone(), bytes);
        note_dropped(before, bytes, c.bytes());
        c.len()
    });
    super::profile::models_cached(cached);
    model
}

thread_local! {
    /// Bytes of models the cache let go since memory was last returned to
    /// the system.
    static DROPPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many bytes of models the cache must have let go before the memory is
/// handed back at the transaction's end.
const TRIM_AFTER: usize = 16 << 20;

/// The cache went from `before` bytes to `after` with `added` bytes put in:
/// the difference is models it let go. glibc keeps their freed ~1 MB chunks
/// in its heap (past the first freed mmap its threshold rises, so later
/// models come from the heap): a backend that dropped 120 models at `SET
/// ivfpq.model_cache = 0` stayed at 174 MB (hunt-143), and one whose query
/// over 120 partitions' indexes passed a 10 MB cache stayed at 157 MB
/// (hunt-148).
fn note_dropped(before: usize, added: usize, after: usize) {
    let gone = (before + added).saturating_sub(after);
    DROPPED.with(|d| d.set(d.get().saturating_add(gone)));
}

/// At a transaction's end (pending.rs's callback): once the cache has let go
/// of 16 MB of models, that memory is returned to the system (`malloc_trim`).
/// Not when they leave the cache: the query's scans still hold the models
/// then (each scan of an Append keeps its own), so nothing had been freed;
/// and not at every model dropped: a cache just too small for a query's
/// indexes drops one at every lookup, and a trim each time made the query
/// twice as slow (hunt-145). At most once a transaction.
pub(super) fn at_transaction_end() {
    if DROPPED.get() >= TRIM_AFTER {
        DROPPED.set(0);
        crate::parallel::release_freed_memory();
    }
}

/// ERROR (XX002, naming the index and its blocks) unless the meta page and the
/// model agree on the code layout, dimensions and metric, and the model and
/// the operator class on the metric.
pub fn agree(index: pg_sys::Relation, meta: &MetaData, model: &IvfPqModel) {
    // The page layout (meta) and the code width (model) must agree: a blocked
    // page read as rows, or the reverse, would score garbage.
    let blocked = model.is_fast() && model.code_size() > 0;
    if blocked != (meta.blocked != 0) || model.code_size() != meta.code_size as usize {
        super::page::corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\": its meta page (block 0: {}-byte codes, {}) and model \
                 (blocks {}..{}: {}-byte codes, {}) disagree on the code layout",
                rel_name(index),
                meta.code_size,
                if meta.blocked != 0 {
                    "in blocks"
                } else {
                    "in rows"
                },
                meta.model_start,
                meta.model_start + meta.model_pages,
                model.code_size(),
                if blocked { "in blocks" } else { "in rows" },
            ),
        );
    }
    // The model, the meta page and the operator class must agree on what is
    // measured: a damaged metric byte once ranked an L2 index by inner product
    // (wrong rows, no error), and a damaged dimension count would read codes
    // and keys of another width.
    // The list count: scans, inserts and VACUUM walk `meta.lists` lists, the
    // model ranks its centroids (a lowered count left lists unvacuumed;
    // hunt-105). An untrained index has a placeholder model.
    let model_lists = model.centroids.len() / model.dim.max(1);
    if meta.untrained == 0 && model_lists != meta.lists as usize {
        super::page::corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\": its meta page (block 0) counts {} lists, its model (from \
                 block {}) {}",
                rel_name(index),
                meta.lists,
                meta.model_start,
                model_lists
            ),
        );
    }
    let class = metric_of(index);
    if model.metric != class
        || meta.metric != u32::from(model.metric.to_u8())
        || meta.dim as usize != model.dim
    {
        super::page::corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\": its model (from block {}: {} dimensions, {:?}), meta page \
                 (block 0: {} dimensions, metric {}) and operator class ({:?}) disagree",
                rel_name(index),
                meta.model_start,
                model.dim,
                model.metric,
                meta.dim,
                meta.metric,
                class
            ),
        );
    }
    let fine = layout::FineGeom::of(meta).map(|f| f.code_size);
    let refine = model.refine.as_ref().map(|r| (r.bits, r.code_size()));
    let agrees = match (meta.refine_bits, refine) {
        (0, None) => true,
        (bits, Some((b, size))) => bits == b && fine == Some(size),
        _ => false,
    };
    if !agrees {
        super::page::corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\": its meta page (block 0: refine code of {} bits) and model \
                 (blocks {}..{}: {}) disagree",
                rel_name(index),
                meta.refine_bits,
                meta.model_start,
                meta.model_start + meta.model_pages,
                match refine {
                    Some((b, size)) => format!("refine code of {b} bits, {size} bytes"),
                    None => "no refine code".into(),
                }
            ),
        );
    }
}

/// Whether a relation of OID `oid` exists in this database (a syscache probe).
fn index_exists(oid: u32) -> bool {
    // SAFETY: a syscache existence probe by OID, in a transaction (model
    // loads run inside one); it reads no tuple out.
    unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(pg_sys::Oid::from(oid)),
            pg_sys::Datum::from(0usize),
            pg_sys::Datum::from(0usize),
            pg_sys::Datum::from(0usize),
        )
    }
}

/// The metric of the index's operator class, from its support function 1.
pub fn metric_of(index: pg_sys::Relation) -> Metric {
    opclass_of(index).0
}

/// The key column's declared dimensions (`vector(n)`, `halfvec(n)`, or
/// `vector(n)[]`, also through a domain over one of them), or None for a
/// column of any dimensions.
///
/// A domain column's own typmod is -1: its dimensions are the domain's (or
/// its base domain's). Read from the column alone, an index on an empty
/// table of a domain over `vector(10)` took `m = 3` at CREATE INDEX and
/// ALTER INDEX, and then refused every row.
pub fn declared_dim(index: pg_sys::Relation) -> Option<usize> {
    // SAFETY: an index relation has a tuple descriptor with at least one attribute.
    let (typid, mut typmod) = unsafe {
        let att = &*(*(*index).rd_att).attrs.as_ptr();
        (att.atttypid, att.atttypmod)
    };
    if typmod < 0 {
        // SAFETY: a catalog lookup of the key's type (a type an index exists
        // on); it writes the innermost domain's typmod through the pointer
        // when it passes a domain, else leaves it.
        unsafe { pg_sys::getBaseTypeAndTypmod(typid, &mut typmod) };
    }
    (typmod > 0).then_some(typmod as usize)
}

/// The dimensions rows and queries of an index built from no rows are held
/// to: those of the first row inserted since (`MetaData::untrained_dim`),
/// else the declared ones, else none (0).
///
/// A recorded dimension count other than the declared one is damage: a
/// change of the column's declared dimensions rebuilds the index. It was
/// taken as the rows' own, and every insert and query failed with a user
/// error (22000, "expected 64 dimensions", the column being `vector(128)`).
pub fn untrained_dim(index: pg_sys::Relation, meta: &MetaData) -> usize {
    match (meta.untrained_dim, declared_dim(index)) {
        (0, declared) => declared.unwrap_or(0),
        (d, Some(declared)) if d as usize != declared => super::page::corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\": its meta page (block 0) holds rows of {d} dimensions, but its column is declared with {declared}",
                rel_name(index)
            ),
        ),
        (d, _) => d as usize,
    }
}

/// Whether the index is on `vector[]` (`vector_maxsim_ops`): one entry per
/// element under its row's TID, scanned for `@#` (see maxsim_scan.rs).
pub fn is_multi(index: pg_sys::Relation) -> bool {
    opclass_of(index).1
}

/// The metric of the index's operator class and whether its keys are
/// `vector[]`, from the name of its support function 1.
fn opclass_of(index: pg_sys::Relation) -> (Metric, bool) {
    // SAFETY: the index has one key column whose opclass (ours) defines support
    // function 1; get_func_name returns a palloc'd name or NULL.
    let name = unsafe {
        let proc_oid = pg_sys::index_getprocid(index, 1, 1);
        let p = pg_sys::get_func_name(proc_oid);
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    match name.as_str() {
        // The halfvec classes name pgvector's halfvec functions; the key itself
        // is read as f32s by `VectorArg::from_key` whichever type it is.
        "vector_l2_squared_distance" | "halfvec_l2_squared_distance" => (Metric::L2, false),
        "vector_negative_inner_product" | "halfvec_negative_inner_product" => {
            (Metric::InnerProduct, false)
        }
        "cosine_distance" => (Metric::Cosine, false),
        // MaxSim is a sum of inner products: elements are encoded for those.
        "maxsim_distance" => (Metric::InnerProduct, true),
        other => crate::errors::error(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("ivfpq does not support the distance function {other}"),
        ),
    }
}
