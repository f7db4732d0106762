//! Reading a re-rank's out-of-line (TOAST) vectors through one TOAST index
//! scan kept open for the whole ivfpq scan.
//!
//! Why: from about 512 dimensions a `vector` is stored in the table's TOAST
//! table (arrw_core::toast explains the format), and `pg_detoast_datum` reads
//! each such value by opening and locking the TOAST table and its index,
//! starting an index scan (its descriptor alone is ~27 kB of palloc for a
//! B-tree), reading the chunks and closing everything again: ~7 µs a row at
//! 768 dimensions, about 15% of a `LIMIT 10` and more of a deep or filtered
//! scan. [`ToastReader`] opens the TOAST table and its valid index once, on
//! the scan's first out-of-line key, keeps one index scan and one slot, and
//! per value only rescans with the value's OID and copies its chunks; the
//! locks are held until the ivfpq scan ends (PostgreSQL would take and release
//! the same AccessShareLocks on every value; our heap's own lock already keeps
//! the TOAST table from being dropped or rewritten).
//!
//! What it reads is what `heap_fetch_toast_slice` reads: chunks of the value's
//! OID under a TOAST snapshot taken for the value (`init_toast_snapshot`), in
//! `chunk_seq` order. It takes only on-disk pointers into this table's TOAST
//! table whose value is stored as it is (not compressed); everything else, and
//! any value whose chunks do not check out (arrw_core::toast::Assembly), goes
//! to `pg_detoast_datum`, which reads it again and raises PostgreSQL's own
//! errors for a damaged one.
//!
//! Memory: the index scan's allocations (and anything the B-tree keeps, such as
//! its list of dead items) live in the context that was current when the reader
//! opened (the scan's); the value itself is palloc'd in the caller's context,
//! a re-rank's per-row context, so it is freed with the row like any detoasted
//! copy.

use super::profile::{self, Count};
use crate::handed::external_pointer_of;
use crate::memctx;
use arrw_core::toast::{chunk_payload, max_chunk_size, Assembly, VARHDRSZ};
use pgrx::pg_sys;
use std::cell::RefCell;

// From access/toast_internals.h, which pgrx's bindings leave out: the helpers
// heap_fetch_toast_slice itself uses (PostgreSQL 15 signatures). They may
// raise an ERROR, so each call goes through pgrx's FFI guard, as pg_sys's
// own wrappers do.
mod ffi {
    use pgrx::pg_sys;
    use std::ffi::c_int;

    unsafe extern "C-unwind" {
        #[link_name = "toast_open_indexes"]
        fn raw_open(
            toastrel: pg_sys::Relation,
            lock: pg_sys::LOCKMODE,
            toastidxs: *mut *mut pg_sys::Relation,
            num_indexes: *mut c_int,
        ) -> c_int;
        #[link_name = "toast_close_indexes"]
        fn raw_close(toastidxs: *mut pg_sys::Relation, num_indexes: c_int, lock: pg_sys::LOCKMODE);
        #[link_name = "init_toast_snapshot"]
        fn raw_snapshot(toast_snapshot: pg_sys::Snapshot);
    }

    /// # Safety
    /// As `toast_open_indexes`: an open TOAST table.
    pub(super) unsafe fn toast_open_indexes(
        toastrel: pg_sys::Relation,
        lock: pg_sys::LOCKMODE,
        toastidxs: *mut *mut pg_sys::Relation,
        num_indexes: *mut c_int,
    ) -> c_int {
        // SAFETY: forwarded contract; the guard turns an ERROR into a panic
        // that pgrx raises again as the ERROR at the callback boundary.
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| raw_open(toastrel, lock, toastidxs, num_indexes))
        }
    }

    /// # Safety
    /// As `toast_close_indexes`: indexes from `toast_open_indexes`.
    pub(super) unsafe fn toast_close_indexes(
        toastidxs: *mut pg_sys::Relation,
        num_indexes: c_int,
        lock: pg_sys::LOCKMODE,
    ) {
        // SAFETY: as above.
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| raw_close(toastidxs, num_indexes, lock)) }
    }

    /// # Safety
    /// As `init_toast_snapshot`: `snapshot` points at writable SnapshotData.
    pub(super) unsafe fn init_toast_snapshot(snapshot: pg_sys::Snapshot) {
        // SAFETY: as above.
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| raw_snapshot(snapshot)) }
    }
}
use ffi::{init_toast_snapshot, toast_close_indexes, toast_open_indexes};

/// The open objects of a reader.
struct Open {
    rel: pg_sys::Relation,
    indexes: *mut pg_sys::Relation,
    nindexes: i32,
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    /// The TOAST snapshot the index scan reads with: boxed so that its
    /// address, which the scan keeps, stays fixed; re-initialised per value.
    snapshot: Box<pg_sys::SnapshotData>,
    /// The context the scan's objects live in.
    ctx: pg_sys::MemoryContext,
}

enum State {
    /// Not opened yet: the table's TOAST table (0: it has none) and the
    /// context to open it in.
    Closed(pg_sys::Oid, pg_sys::MemoryContext),
    Open(Open),
}

/// One per ivfpq scan that re-ranks from a heap table (scan.rs, ScanState).
pub(super) struct ToastReader(RefCell<State>);

impl ToastReader {
    /// A reader for `heap`'s out-of-line values; nothing is opened yet. What
    /// it opens later lives in the current memory context, which must last as
    /// long as the reader (the scan's context, not a row's).
    ///
    /// # Safety
    /// `heap` must be an open relation.
    pub(super) unsafe fn new(heap: pg_sys::Relation) -> Self {
        // SAFETY: an open relation's rd_rel is its pg_class row.
        let toast = unsafe { (*(*heap).rd_rel).reltoastrelid };
        ToastReader(RefCell::new(State::Closed(
            toast,
            // SAFETY: reading this backend's global.
            unsafe { pg_sys::CurrentMemoryContext },
        )))
    }

    /// A reader that never reads (for scans with no table).
    pub(super) fn none() -> Self {
        ToastReader(RefCell::new(State::Closed(
            pg_sys::InvalidOid,
            std::ptr::null_mut(),
        )))
    }

    /// `key` itself when it is not an out-of-line value this reader takes, else
    /// the value read into the current memory context as a plain varlena (a
    /// 4-byte header and the stored bytes), or `key` again when its chunks did
    /// not check out (the caller's `pg_detoast_datum` then reads it, or raises
    /// PostgreSQL's error for it).
    ///
    /// # Safety
    /// `key` must be a non-null varlena datum valid for the call; no buffer
    /// lock may be held (the TOAST index and table are read).
    pub(super) unsafe fn plain(&self, key: pg_sys::Datum) -> pg_sys::Datum {
        // SAFETY: forwarded contract (a non-null varlena datum).
        let Some(ptr) = (unsafe { external_pointer_of(key) }) else {
            return key;
        };
        let Some(size) = ptr.plain_size() else {
            return key;
        };
        let mut state = self.0.borrow_mut();
        if let State::Closed(toast, ctx) = *state {
            if toast == pg_sys::InvalidOid || toast != pg_sys::Oid::from(ptr.toastrelid) {
                return key;
            }
            // SAFETY: `toast` is the TOAST table of the scan's open (and locked)
            // heap; `ctx` is the scan's context, live while the reader is.
            *state = State::Open(unsafe { memctx::in_context(ctx, || open(toast)) });
        }
        let State::Open(open) = &mut *state else {
            unreachable!()
        };
        // SAFETY: rd_id of an open relation.
        if unsafe { (*open.rel).rd_id } != pg_sys::Oid::from(ptr.toastrelid) {
            return key;
        }
        // The value: a 4-byte header and `size` bytes, in the caller's context.
        // SAFETY: palloc returns VARHDRSZ + size MAXALIGNed bytes or raises an
        // ERROR; `size` is below 1 GB (30 bits).
        let out = unsafe { pg_sys::palloc(VARHDRSZ + size) } as *mut u8;
        // SAFETY: `out` holds VARHDRSZ + size bytes, written only through this
        // slice until it is returned.
        let body = unsafe { std::slice::from_raw_parts_mut(out.add(VARHDRSZ), size) };
        // SAFETY: the reader's objects are open; `ctx` outlives them.
        let ok = unsafe { memctx::in_context(open.ctx, || read_chunks(open, ptr.valueid, body)) };
        if !ok {
            // SAFETY: ours, from palloc above, not referenced elsewhere.
            unsafe { pg_sys::pfree(out.cast()) };
            return key;
        }
        // SAFETY: `out` has room for the header; a plain 4-byte varlena header
        // is the total length shifted left by two on little-endian machines
        // (external_pointer accepts nothing on others).
        unsafe { out.cast::<u32>().write(((VARHDRSZ + size) as u32) << 2) };
        profile::count(Count::ToastReads, 1);
        pg_sys::Datum::from(out)
    }

    /// Closes what the reader opened, releasing its locks.
    ///
    /// # Safety
    /// Call once, at the end of the scan, outside any row scope.
    pub(super) unsafe fn close(&self) {
        let state = std::mem::replace(
            &mut *self.0.borrow_mut(),
            State::Closed(pg_sys::InvalidOid, std::ptr::null_mut()),
        );
        if let State::Open(o) = state {
            // SAFETY: opened by `open` and not closed since; the scan is ended
            // before its relations are closed.
            unsafe {
                pg_sys::index_endscan(o.scan);
                pg_sys::ExecDropSingleTupleTableSlot(o.slot);
                toast_close_indexes(
                    o.indexes,
                    o.nindexes,
                    pg_sys::AccessShareLock as pg_sys::LOCKMODE,
                );
                pg_sys::table_close(o.rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            }
        }
    }
}

/// Opens TOAST table `toast`, its valid index, an index scan on it and a slot,
/// in the current memory context.
///
/// # Safety
/// `toast` must be the TOAST table of a heap the caller holds a lock on.
unsafe fn open(toast: pg_sys::Oid) -> Open {
    // These are the calls and lock modes of heap_fetch_toast_slice;
    // toast_open_indexes returns the position of the index that is valid, as
    // REINDEX CONCURRENTLY may leave more than one.
    // SAFETY: the TOAST table of a locked heap exists; the snapshot is
    // initialised before the scan uses it.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(toast, lock);
        let mut indexes: *mut pg_sys::Relation = std::ptr::null_mut();
        let mut nindexes = 0;
        let valid = toast_open_indexes(rel, lock, &mut indexes, &mut nindexes);
        let mut snapshot: Box<pg_sys::SnapshotData> = Box::new(std::mem::zeroed());
        init_toast_snapshot(&mut *snapshot);
        let scan = pg_sys::index_beginscan(rel, *indexes.add(valid as usize), &mut *snapshot, 1, 0);
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        Open {
            rel,
            indexes,
            nindexes,
            scan,
            slot,
            snapshot,
            ctx: pg_sys::CurrentMemoryContext,
        }
    }
}

/// Reads the chunks of value `valueid` into `out` (its stored size); false if
/// they do not make exactly that value.
///
/// # Safety
/// `o` must be open; runs in `o.ctx`.
unsafe fn read_chunks(o: &mut Open, valueid: u32, out: &mut [u8]) -> bool {
    let mut key = pg_sys::ScanKeyData::default();
    // The key is the one heap_fetch_toast_slice uses (index column 1,
    // chunk_id = valueid); index_rescan copies it. The snapshot is
    // re-initialised per value as PostgreSQL does.
    // SAFETY: the reader's objects are open; init_toast_snapshot needs an
    // active or registered snapshot, which a scan has.
    unsafe {
        pg_sys::ScanKeyInit(
            &mut key,
            1,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::F_OIDEQ.into(),
            pg_sys::Datum::from(valueid),
        );
        init_toast_snapshot(&mut *o.snapshot);
        pg_sys::index_rescan(o.scan, &mut key, 1, std::ptr::null_mut(), 0);
    }
    // SAFETY: rd_att of the open TOAST table: (chunk_id, chunk_seq, chunk_data).
    let desc = unsafe { (*o.rel).rd_att };
    let mut asm = Assembly::new(out, max_chunk_size(pg_sys::BLCKSZ as usize));
    let mut failed = false;
    loop {
        // SAFETY: an open scan and its slot; the slot keeps the chunk's buffer
        // pinned until the next call, while we copy from it.
        let more = unsafe {
            pg_sys::index_getnext_slot(o.scan, pg_sys::ScanDirection::ForwardScanDirection, o.slot)
        };
        if !more {
            break;
        }
        let mut should_free = false;
        // A heap slot returns its tuple in place (a copy, which it never
        // makes, would be freed below).
        // SAFETY: the slot holds the chunk just read; attributes 2 and 3 exist
        // in the TOAST table's descriptor; bytes read only up to tuple's end.
        let ok = unsafe {
            let tup = pg_sys::ExecFetchSlotHeapTuple(o.slot, false, &mut should_free);
            let mut null_seq = false;
            let seq = pg_sys::heap_getattr(tup, 2, desc, &mut null_seq);
            let mut null_data = false;
            let data = pg_sys::heap_getattr(tup, 3, desc, &mut null_data);
            let start = (*tup).t_data as usize;
            let end = start + (*tup).t_len as usize;
            let at = data.cast_mut_ptr::<u8>() as usize;
            let ok = !null_seq
                && !null_data
                && (start..end).contains(&at)
                && chunk_payload(std::slice::from_raw_parts(at as *const u8, end - at))
                    .is_some_and(|payload| asm.push(seq.value() as i32, payload).is_ok());
            if should_free {
                pg_sys::heap_freetuple(tup);
            }
            ok
        };
        if !ok {
            failed = true;
            break;
        }
    }
    // Drop what the scan holds until the next value: the slot's pin on the
    // last chunk's page, the heap fetch's own pin on it and the B-tree's pin
    // on its leaf page (kept between calls under a non-MVCC snapshot). A
    // re-rank pins several table pages at once, and a backend tracks only its
    // first 8 pins in an array: three idle pins here pushed every pin and
    // unpin into its overflow hash table. A rescan without keys keeps them.
    // SAFETY: the scan and slot are open; a rescan with null keys keeps the
    // scan's key (nkeys must stay 1).
    unsafe {
        pg_sys::ExecClearTuple(o.slot);
        pg_sys::index_rescan(o.scan, std::ptr::null_mut(), 1, std::ptr::null_mut(), 0);
    }
    !failed && asm.finish().is_ok()
}
