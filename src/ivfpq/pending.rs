//! A transaction's new index entries, kept in the backend until they must be
//! visible, then written a list page at a time.
//!
//! Why: writing each row's entry as it comes (lock the list's last page, copy
//! it, log a WAL record, release) cost a `COPY` into an indexed table two to
//! three times the time of the `COPY` alone, and finding each row's list alone
//! (a pass over every centroid) grows with the lists. Kept back, a batch's
//! lists are found in one pass (`IvfPqModel::encode_batch_fine_serial`) and
//! each list's rows go onto its pages together, one record per page
//! (`append::append_many`).
//!
//! Correctness rests on one fact: a row inserted by a transaction is visible
//! to no other transaction before it commits, and to its own only from later
//! commands or scans. So the entries must reach the pages:
//! - before the transaction commits or prepares (`XACT_EVENT_PRE_COMMIT`,
//!   `PRE_PREPARE`): other transactions then see the rows and the entries
//!   together, and the entries' WAL precedes the commit record, so a crash or
//!   a replica never has the one without the other;
//! - before any scan of the index in this backend (`amrescan`, and every
//!   function of ours that reads its pages): this transaction's own later
//!   commands see their rows;
//! - before any utility statement (our `ProcessUtility_hook`): TRUNCATE,
//!   REINDEX, CLUSTER and VACUUM FULL give the index a new relfilenode, ALTER
//!   INDEX SET TABLESPACE copies its pages, DROP removes it, ANALYZE reads it;
//!   all of them find the entries on the pages, as if written row by row;
//! - when an index's pending entries reach [`cap_bytes`], and every index's
//!   when all of them together do (memory is bounded by `work_mem` in all,
//!   whatever the rows and however many indexes: an `INSERT ... SELECT` into
//!   64 partitions, each with an ivfpq index, held up to 64 × `work_mem`,
//!   256 MB at the default, when the cap was per index; hunt-133).
//!
//! And they are dropped, never written, where their rows are rolled back: at
//! transaction abort, and at subtransaction abort for the entries made since
//! that subtransaction began (each entry carries its subtransaction id; ids
//! grow with time within a transaction). Writing those would not be wrong by
//! itself (an index entry of a rolled-back row is what an abort leaves
//! anyway), but once the abort is known, VACUUM may remove the dead rows and
//! hand their TIDs to new rows, which a late entry would then point at.
//!
//! One kind of row dies while its own transaction runs: a speculative insertion
//! of `INSERT ... ON CONFLICT` that met a conflict is "super-deleted" at once,
//! dead to everyone, so VACUUM may free its TID before this transaction ends. Its
//! entry must reach the pages before that (as it did when written row by row),
//! so from the start of a statement that has an `ON CONFLICT` clause (our
//! `ExecutorStart_hook`, executor_hook.rs, looks at its plan) until the transaction ends, each new
//! entry is written as it comes; so too in the transaction that loads the
//! library, whose first statement that hook may have missed ([`init`]).
//!
//! - before a plan that may run in parallel workers starts (our
//!   `ExecutorStart_hook`, executor_hook.rs): the workers share this
//!   transaction and see its rows, but not this backend's registry.
//!
//! A build of the index drops its pending entries ([`forget_index`]): the
//! build reads every row itself, this transaction's too, so rebuilds that
//! bypass the utility hook (a replicated TRUNCATE in a logical replication
//! apply worker) lose nothing.
//!
//! Another session may copy the index's pages to a new relfilenode between
//! two statements of this transaction: `ALTER INDEX ... SET TABLESPACE` locks
//! the index alone, and the executor releases its lock on an index at the end
//! of each statement (only the table's lock lasts until the transaction
//! ends). The copy is the same build (the meta page's generation), without
//! this transaction's pending rows, so they are written to the copy. (They
//! were an internal ERROR at the next flush: the transaction's COMMIT failed
//! and its rows were lost; hunt-99.) Any other new relfilenode under pending
//! entries means a rebuild that bypassed all of the above, and stays an
//! internal ERROR at the next flush, so the transaction fails rather than
//! commit rows its index lacks.
//!
//! Entries leave the registry when their write starts. A write that fails
//! (a cancel, an ERROR) loses them: at top level the transaction aborts with
//! it, but inside a subtransaction (a savepoint, a PL/pgSQL exception block)
//! the outer transaction went on and committed rows its index lacked (35,000
//! of 40,000 rows once). So a failed write dooms the transaction: every later
//! flush, scan of an ivfpq index or commit in it is an ERROR ([`LOST`]).
//!
//! The registry is the backend's own (a `thread_local`: only PostgreSQL's
//! thread touches it); entries are Rust memory, not palloc'd, and are freed
//! when written or dropped.

use super::append::{self, Entry};
use super::layout;
use super::model;
use super::page;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

/// One index's pending entries, in the order they came.
struct Pending {
    index: pg_sys::Oid,
    /// The relfilenode the entries were last checked against.
    node: pg_sys::RelFileNode,
    /// The build the entries were made for (the meta page's generation):
    /// a relfilenode of the same build is a copy of the pages
    /// ([`same_build`]).
    generation: u64,
    dim: usize,
    /// Bytes one entry holds ([`entry_bytes`]).
    per: usize,
    tids: Vec<[u8; layout::TID_BYTES]>,
    /// The subtransaction each entry was made in.
    subs: Vec<pg_sys::SubTransactionId>,
    /// The entries' vectors, `dim` floats each.
    vectors: Vec<f32>,
}

thread_local! {
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// Whether this transaction ran a statement with `ON CONFLICT` (see the
    /// module docs), or loaded the library (see [`init`]): entries are then
    /// written as they come.
    static AT_ONCE: Cell<bool> = const { Cell::new(false) };
    /// Set while entries taken from the registry are being written, and left
    /// set when the write fails (see the module docs); cleared when the
    /// transaction ends.
    static LOST: Cell<bool> = const { Cell::new(false) };
}

/// ERROR when a write of this transaction's entries failed (see the module
/// docs): its index lacks some of its rows, so it must not go on.
fn check_not_lost() {
    if LOST.get() {
        crate::errors::error_hint(
            PgSqlErrorCode::ERRCODE_TRANSACTION_ROLLBACK,
            "ivfpq: this transaction's new index entries were lost when writing them failed in a \
             subtransaction, so it cannot go on",
            "Roll the transaction back and run it again.",
            "ivfpq",
        );
    }
}

/// Writes `pending`, taken from the registry: [`LOST`] stays set if it fails.
fn write_taken(index: pg_sys::Relation, pending: Pending) {
    LOST.set(true);
    write(index, pending);
    LOST.set(false);
}

/// Bytes of vectors an index keeps pending before they are written: the
/// session's `work_mem` (at least 64 kB, at most 64 MB).
fn cap_bytes() -> usize {
    // SAFETY: reading a GUC variable on PostgreSQL's thread.
    let kb = unsafe { pg_sys::work_mem }.max(0) as usize;
    (kb * 1024).clamp(64 << 10, 64 << 20)
}

fn same_node(a: &pg_sys::RelFileNode, b: &pg_sys::RelFileNode) -> bool {
    a.spcNode == b.spcNode && a.dbNode == b.dbNode && a.relNode == b.relNode
}

/// Whether `index` (whose relfilenode is `node`) holds the build `e`'s
/// entries were made for: the same relfilenode, or a copy of its pages under
/// another one (see the module docs), which `e` then follows.
fn same_build(index: pg_sys::Relation, node: &pg_sys::RelFileNode, e: &mut Pending) -> bool {
    if same_node(&e.node, node) {
        return true;
    }
    if page::meta(index).generation != e.generation {
        return false;
    }
    e.node = *node;
    true
}

/// Bytes one pending entry of `dim` floats holds until written, and while
/// it is written: its vector, TID and subtransaction, and the codes the
/// write encodes it into (`coded`: the model's code and refine code sizes).
fn entry_bytes(dim: usize, coded: usize) -> usize {
    dim * 4 + layout::TID_BYTES + std::mem::size_of::<pg_sys::SubTransactionId>() + coded + 4
}

/// Adds the entry `(x, tid)` of a trained index to this transaction's
/// pending entries, writing the index's entries when they reach the cap.
/// `coded` is the bytes of the entry's codes (see [`entry_bytes`]).
///
/// Memory: the entries and what their write encodes stay within `work_mem`
/// ([`cap_bytes`]); the vectors grow by doubling, but never past what the cap
/// holds (a doubling past it held up to twice the cap: an `INSERT ... SELECT`
/// of 100,000 rows took 40 MB at `work_mem` 32MB).
pub fn push(index: pg_sys::Relation, x: &[f32], tid: [u8; layout::TID_BYTES], coded: usize) {
    // SAFETY: `index` is the open relation aminsert was called for.
    let (oid, node) = unsafe { ((*index).rd_id, (*index).rd_node) };
    // SAFETY: plain call, in a transaction (aminsert).
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let full = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let at = match p.iter().position(|e| e.index == oid) {
            Some(i) => i,
            None => {
                p.push(Pending {
                    index: oid,
                    node,
                    generation: page::meta(index).generation,
                    dim: x.len(),
                    per: entry_bytes(x.len(), coded),
                    tids: Vec::new(),
                    subs: Vec::new(),
                    vectors: Vec::new(),
                });
                p.len() - 1
            }
        };
        let e = &mut p[at];
        if !same_build(index, &node, e) || e.dim != x.len() {
            return Err(());
        }
        let per = entry_bytes(x.len(), coded);
        let rows_cap = (cap_bytes() / per).max(1);
        if e.vectors.len() == e.vectors.capacity() {
            let have = e.tids.len();
            let more = have.max(16).min(rows_cap.saturating_sub(have)).max(1);
            e.vectors.reserve_exact(more * x.len());
            e.tids.reserve_exact(more);
            e.subs.reserve_exact(more);
        }
        e.tids.push(tid);
        e.subs.push(sub);
        e.vectors.extend_from_slice(x);
        e.per = e.per.max(per);
        if e.tids.len() >= rows_cap || AT_ONCE.get() {
            return Ok(Full::Index);
        }
        // Every index's entries together (the cap is the backend's, not each
        // index's: see the module docs).
        let total: usize = p.iter().map(|e| e.tids.len() * e.per).sum();
        Ok(if total >= cap_bytes() {
            Full::All
        } else {
            Full::No
        })
    });
    match full {
        Ok(Full::Index) => flush_index(index),
        Ok(Full::All) => flush_all(),
        Ok(Full::No) => {}
        Err(()) => rewritten(index),
    }
}

/// What [`push`] found full: nothing, its index's entries, or all entries.
enum Full {
    No,
    Index,
    All,
}

#[cold]
fn rewritten(index: pg_sys::Relation) -> ! {
    crate::errors::error(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!(
            "ivfpq index \"{}\" was rewritten while it had entries not yet written",
            page::rel_name(index)
        ),
    )
}

/// Whether this backend holds pending entries (of any index).
pub fn any() -> bool {
    PENDING.with(|p| !p.borrow().is_empty())
}

/// Writes this transaction's pending entries of `index` (open, and locked at
/// least as the caller reads it). Cheap when there are none.
pub fn flush_index(index: pg_sys::Relation) {
    check_not_lost();
    // SAFETY: `index` is an open relation.
    let oid = unsafe { (*index).rd_id };
    let taken = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let at = p.iter().position(|e| e.index == oid)?;
        Some(p.swap_remove(at))
    });
    if let Some(pending) = taken {
        write_taken(index, pending);
    }
}

/// Drops the pending entries of the index being built (`ambuild`): a build
/// reads every row of its table itself, this transaction's new ones included,
/// so the entries are either in the new index already or point at rows a
/// TRUNCATE removed. Our utility hook writes them before the statements that
/// rebuild an index; this is for the rebuilds that bypass it: a logical
/// replication apply worker runs a replicated TRUNCATE with
/// `ExecuteTruncateGuts`, and its transaction then failed at every retry on
/// the entries of the rows inserted before the TRUNCATE (written to the old
/// relfilenode's rows, [`rewritten`]): the subscription stopped for good.
pub fn forget_index(index: pg_sys::Oid) {
    PENDING.with(|p| p.borrow_mut().retain(|e| e.index != index));
}

/// Writes every index's pending entries (before a commit, a prepare or a
/// utility statement).
pub fn flush_all() {
    check_not_lost();
    while let Some(pending) = PENDING.with(|p| p.borrow_mut().pop()) {
        // What an insert takes. This transaction holds RowExclusiveLock on
        // the table until it ends, so nothing rebuilds, truncates or drops
        // the index meanwhile (those lock the table), but its inserts'
        // locks on the index itself went at the end of each statement: this
        // waits for a statement that locks the index alone (`ALTER INDEX ...
        // SET TABLESPACE`), whose copy of the pages it then writes into.
        let lock = pg_sys::RowExclusiveLock as i32;
        // SAFETY: in a transaction; try_relation_open returns NULL for an OID
        // that no longer names a relation.
        let index = unsafe { pg_sys::try_relation_open(pending.index, lock) };
        if index.is_null() {
            // Dropped in this transaction (whose commit drops its rows' table
            // or index with it): nothing to write into.
            continue;
        }
        write_taken(index, pending);
        // SAFETY: opened above; the lock stays until the transaction ends.
        unsafe { pg_sys::relation_close(index, pg_sys::NoLock as i32) };
    }
}

/// Drops every pending entry (the transaction is over).
fn discard_all() {
    PENDING.with(|p| p.borrow_mut().clear());
    AT_ONCE.set(false);
    LOST.set(false);
}

/// Drops the entries made in subtransaction `sub` or after it began (its
/// children, which committed into it or aborted): `sub` is aborting.
fn discard_since(sub: pg_sys::SubTransactionId) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        for e in p.iter_mut() {
            if e.subs.iter().all(|&s| s < sub) {
                continue;
            }
            let mut kept = 0;
            for i in 0..e.tids.len() {
                if e.subs[i] < sub {
                    e.tids[kept] = e.tids[i];
                    e.subs[kept] = e.subs[i];
                    e.vectors
                        .copy_within(i * e.dim..(i + 1) * e.dim, kept * e.dim);
                    kept += 1;
                }
            }
            e.tids.truncate(kept);
            e.subs.truncate(kept);
            e.vectors.truncate(kept * e.dim);
        }
        p.retain(|e| !e.tids.is_empty());
    });
}

/// Encodes `pending`'s vectors in one pass and appends each list's entries
/// to it together, lists in order.
fn write(index: pg_sys::Relation, mut pending: Pending) {
    // SAFETY: `index` is an open relation.
    let node = unsafe { (*index).rd_node };
    if !same_build(index, &node, &mut pending) {
        rewritten(index);
    }
    let mut nblocks = 0;
    let meta = page::meta_counted(index, &mut nblocks);
    let model = model::load(index, &meta);
    // Entries are only kept for a trained index, and a model never changes
    // within a relfilenode.
    if meta.untrained != 0 || model.dim != pending.dim {
        rewritten(index);
    }
    let (cs, fs) = (model.code_size(), model.fine_size());
    let enc = encode_interruptibly(&model, &pending.vectors);
    let mut order: Vec<usize> = (0..pending.tids.len()).collect();
    order.sort_by_key(|&i| enc.lists[i]);
    let mut entries = Vec::new();
    for rows in order.chunk_by(|&a, &b| enc.lists[a] == enc.lists[b]) {
        entries.clear();
        entries.extend(rows.iter().map(|&i| Entry {
            code: &enc.codes[i * cs..(i + 1) * cs],
            fine: &enc.fine[i * fs..(i + 1) * fs],
            faithful: enc.faithful[i],
            tid: pending.tids[i],
        }));
        append::append_many(index, &meta, enc.lists[rows[0]], &entries, &mut nblocks);
    }
}

/// Scores (row × list × dimension) one piece of the pending rows may take
/// between interrupt checks: a few milliseconds of one core, as a build's
/// blocks (`arrw_core::kmeans`'s `BLOCK_WORK`).
const ENCODE_WORK: usize = 1 << 26;

/// Most rows a piece of [`encode_interruptibly`] encodes.
const ENCODE_PIECE_ROWS: usize = 1024;

/// Encodes the pending rows (`model.encode_batch_fine_serial`) in pieces of
/// at most [`ENCODE_WORK`] scores, with CHECK_FOR_INTERRUPTS between them.
/// One call over every row checked nothing: 150,000 rows against 32,768
/// lists ran 2.5–6 s past a statement_timeout of 1 s, and when the write ran
/// at commit the INSERT then committed (hunt-114).
fn encode_interruptibly(
    model: &arrw_core::ivf::IvfPqModel,
    vectors: &[f32],
) -> arrw_core::ivf::EncodedBatch {
    let dim = model.dim.max(1);
    // At most ENCODE_PIECE_ROWS a piece: a piece's codes are held beside the
    // whole batch's while they are appended.
    let rows = (ENCODE_WORK / (model.lists.max(1) * dim)).clamp(1, ENCODE_PIECE_ROWS);
    let n = vectors.len() / dim;
    if n <= rows {
        pgrx::check_for_interrupts!();
        return model.encode_batch_fine_serial(vectors);
    }
    // Sized once: the entries' codes are within what `entry_bytes` counted.
    let mut out = arrw_core::ivf::EncodedBatch {
        lists: Vec::with_capacity(n),
        codes: Vec::with_capacity(n * model.code_size()),
        fine: Vec::with_capacity(n * model.fine_size()),
        faithful: Vec::with_capacity(n),
    };
    for piece in vectors.chunks(rows * dim) {
        pgrx::check_for_interrupts!();
        let mut e = model.encode_batch_fine_serial(piece);
        out.lists.append(&mut e.lists);
        out.codes.append(&mut e.codes);
        out.fine.append(&mut e.fine);
        out.faithful.append(&mut e.faithful);
    }
    out
}

/// Registers the transaction callbacks and the utility hook (once per
/// backend, from `_PG_init`; the executor-start hook is executor_hook.rs's).
pub fn init() {
    // The previous hooks are kept and called by ours; PostgreSQL's standard
    // functions have exactly the hook types' signatures.
    // SAFETY: once, from _PG_init, on PostgreSQL's thread; static callbacks;
    // the standard functions' addresses are non-null function pointers.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
        // The hook installed before ours, else PostgreSQL's own function: a
        // non-null function address as the hook type's Some(fn).
        PREV_UTILITY =
            pg_sys::ProcessUtility_hook.or(std::mem::transmute::<
                *const u8,
                pg_sys::ProcessUtility_hook_type,
            >(&raw const STANDARD_PROCESS_UTILITY));
        pg_sys::ProcessUtility_hook = Some(utility_hook);
        // Loaded inside a transaction (not preloaded: a session's first use
        // of arrw loads it), possibly during the very statement that inserts:
        // an `INSERT ... SELECT ... ON CONFLICT DO NOTHING` opens the index
        // only in `ExecutorStart`, past the point where the executor-start
        // hook this load installs could note its `ON CONFLICT`, and kept its
        // speculative rows' entries to commit; VACUUM then gave a row that
        // lost its race's TID to another row, and the commit wrote the stale
        // entry onto it (one row with two entries, XX002, hunt-158). The
        // statements of the loading transaction are not known, so its entries
        // are written as they come, as under `ON CONFLICT`.
        if pg_sys::IsTransactionState() {
            AT_ONCE.set(true);
        }
    }
}

/// Writes every pending entry before a plan that may run in parallel workers
/// starts (called by executor_hook.rs before the plan starts): a worker's scan
/// of an ivfpq index flushes its own, empty, registry, and missed the rows
/// this backend had just inserted (a `LIMIT 1` under `force_parallel_mode`
/// returned another row than the one just inserted at the query's point).
#[pg_guard]
pub(super) unsafe extern "C-unwind" fn before_parallel_plan(qd: *mut pg_sys::QueryDesc) {
    // SAFETY: PostgreSQL passes a valid QueryDesc whose plannedstmt is set.
    let parallel = unsafe { (*(*qd).plannedstmt).parallelModeNeeded };
    if parallel && (any() || LOST.get()) {
        flush_all();
    }
}

/// Sets [`AT_ONCE`] for the rest of the transaction when the plan about to
/// start inserts with `ON CONFLICT` (called by executor_hook.rs before the
/// plan starts).
#[pg_guard]
pub(super) unsafe extern "C-unwind" fn note_on_conflict(qd: *mut pg_sys::QueryDesc) {
    // SAFETY: PostgreSQL passes a valid QueryDesc whose plannedstmt is set.
    if !AT_ONCE.get() && unsafe { has_on_conflict((*qd).plannedstmt) } {
        AT_ONCE.set(true);
    }
}

/// Whether a plan inserts with `ON CONFLICT`: its top node, or the top node of
/// one of its subplans (a data-modifying `WITH`), is a ModifyTable with an
/// ON CONFLICT action.
///
/// # Safety
/// `stmt` is null or a valid PlannedStmt.
unsafe fn has_on_conflict(stmt: *mut pg_sys::PlannedStmt) -> bool {
    // SAFETY: forwarded contract; plan nodes start with their NodeTag, and a
    // node tagged T_ModifyTable is a ModifyTable; subplans is a List of Plans.
    unsafe {
        let on_conflict = |plan: *mut pg_sys::Plan| {
            !plan.is_null()
                && (*plan).type_ == pg_sys::NodeTag::T_ModifyTable
                && (*(plan as *mut pg_sys::ModifyTable)).onConflictAction
                    != pg_sys::OnConflictAction::ONCONFLICT_NONE
        };
        if stmt.is_null()
            || (*stmt).commandType == pg_sys::CmdType::CMD_SELECT && !(*stmt).hasModifyingCTE
        {
            return false;
        }
        if on_conflict((*stmt).planTree) {
            return true;
        }
        let subplans = (*stmt).subplans;
        if subplans.is_null() {
            return false;
        }
        (0..(*subplans).length).any(|i| {
            on_conflict((*(*subplans).elements.add(i as usize)).ptr_value as *mut pg_sys::Plan)
        })
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        // Still inside the transaction: an ERROR here aborts it.
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            COMMITTING.set(true);
            flush_all()
        }
        // Over (after a commit, nothing is left: it was written just before).
        XACT_EVENT_COMMIT
        | XACT_EVENT_PARALLEL_COMMIT
        | XACT_EVENT_ABORT
        | XACT_EVENT_PARALLEL_ABORT
        | XACT_EVENT_PREPARE => {
            COMMITTING.set(false);
            discard_all();
            // Also the end of the transaction's scans, which held the models
            // the cache let go: their memory goes back now (model.rs).
            super::model::at_transaction_end();
        }
        _ => {}
    }
}

thread_local! {
    /// Between a transaction's pre-commit (or pre-prepare) callbacks and its
    /// end: see [`committing`].
    static COMMITTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while the current transaction commits or prepares, after the
/// callbacks that come first: what PostgreSQL does then on its own (emptying
/// `ON COMMIT DELETE ROWS` tables and rebuilding their indexes, also at the
/// commits VACUUM makes inside its statement) was asked for by no statement,
/// and build.rs says nothing about it.
pub fn committing() -> bool {
    COMMITTING.get()
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        discard_since(sub);
    }
}

/// What our `ProcessUtility_hook` calls next: the hook installed before ours,
/// or `standard_ProcessUtility` (set in [`init`], always Some).
static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;

// PostgreSQL's own implementations, taken by address only (the symbols are
// functions; nothing reads these "statics"): when no other hook was installed
// before ours, ours calls them directly. pgrx's `pg_sys` wrappers would turn
// their ERRORs into Rust panics and raise them again, without the error's
// CONTEXT lines (`COPY t, line 2, column v: ...`).
extern "C" {
    #[link_name = "standard_ProcessUtility"]
    static STANDARD_PROCESS_UTILITY: u8;
}

/// Our `ProcessUtility_hook`. Not `#[pg_guard]`, by design (SAFETY.md,
/// "Pending index entries"): it runs the statement, and the statement's
/// ERRORs must reach PostgreSQL as raised. It is a plain frame (no value with
/// a destructor, nothing that can panic), so a PostgreSQL ERROR may pass
/// through it; our own work is in [`before_utility`], guarded.
#[allow(clippy::too_many_arguments)] // PostgreSQL's ProcessUtility_hook_type
unsafe extern "C-unwind" fn utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL's arguments, forwarded unchanged to the previous hook
    // or the standard implementation, as every ProcessUtility hook does.
    unsafe {
        before_utility(pstmt);
        if let Some(next) = PREV_UTILITY {
            next(pstmt, query, read_only_tree, context, params, env, dest, qc);
        }
    }
}

/// Writes every pending entry before a utility statement, except transaction
/// control (COMMIT and PREPARE write them at their pre-commit event; ROLLBACK
/// drops them; SAVEPOINT changes nothing they depend on).
#[pg_guard]
unsafe extern "C-unwind" fn before_utility(pstmt: *mut pg_sys::PlannedStmt) {
    if !any() {
        return;
    }
    // SAFETY: PostgreSQL passes a valid PlannedStmt whose utilityStmt is set;
    // IsTransactionState only reads the transaction state.
    let flush = unsafe {
        let stmt = (*pstmt).utilityStmt;
        pg_sys::IsTransactionState()
            && !stmt.is_null()
            && (*stmt).type_ != pg_sys::NodeTag::T_TransactionStmt
    };
    if flush {
        flush_all();
    }
}
