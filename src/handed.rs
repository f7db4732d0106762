//! The exact distances of out-of-line rows an ivfpq scan has just handed out,
//! for the executor's own evaluation of the ORDER BY expression.
//!
//! Why: for `SELECT id FROM t ORDER BY embedding <=> $1 LIMIT k` PostgreSQL
//! computes `embedding <=> $1` once more for every row the index scan returns
//! (EXPLAIN VERBOSE shows it in the scan's Output), and for a vector stored
//! out of line (TOAST: from about 512 dimensions) that is another read of the
//! value from the TOAST table, ~6 µs a row at 768 dimensions, after the scan
//! has just read it and computed the same distance. So the scan remembers,
//! for each row it re-ranked from an out-of-line value, that value's identity
//! (its TOAST table and value OID, from the pointer in the row) and the sums
//! the distance is made of (`arrw_core::ivf::ExactParts`); when it hands the
//! row out, the entry moves to a small per-backend ring, and the distance
//! operators (`<->`, `<=>`, `<#>` of `vector` and `halfvec`), given an
//! out-of-line first argument, look there before reading the value. They
//! finish the computation from the sums exactly as they would from the values
//! (the kernels are symmetric bit for bit, `arrw_core::distance`'s tests), so
//! the result is the same float8 either way.
//!
//! An entry is used only for the same value identity, the same metric, a
//! second argument equal bit for bit to the scan's query, and the same
//! statement (transaction, command id and start time when it was made), and
//! the ring is emptied when an ivfpq scan ends: within one statement a value a
//! visible row points to can be neither removed nor its OID given to another
//! value (new TOAST OIDs are checked against every entry of the TOAST index,
//! dead ones included), so its identity names the same bytes.
//! The ring holds 16 entries; the per-scan map (`Pending`) holds at most
//! `PENDING_MAX` rows re-ranked but not yet handed out (beyond that rows are
//! just not remembered: the operator reads the value as before).

use arrw_core::ivf::{ExactParts, Metric};
use arrw_core::toast::{external_pointer, ExternalPointer};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Rows a scan remembers between re-ranking and handing out.
pub const PENDING_MAX: usize = 4096;

/// Entries of the per-backend ring.
const RING: usize = 16;

/// An out-of-line value: its TOAST table and value OID.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ValueId {
    pub toastrelid: u32,
    pub valueid: u32,
}

impl ValueId {
    /// The identity of an on-disk out-of-line varlena datum, or None.
    ///
    /// # Safety
    /// `datum` must be a non-null varlena datum.
    #[inline]
    pub unsafe fn of(datum: pg_sys::Datum) -> Option<ValueId> {
        // SAFETY: forwarded contract.
        unsafe { external_pointer_of(datum) }.map(|e| ValueId {
            toastrelid: e.toastrelid,
            valueid: e.valueid,
        })
    }
}

/// The TOAST pointer of an on-disk out-of-line varlena datum, or None for any
/// other datum (one byte read). The one reader of pointers from datums: the
/// re-rank's TOAST reader (src/ivfpq/toast.rs) and [`ValueId::of`].
///
/// # Safety
/// `datum` must be a non-null varlena datum.
#[inline]
pub unsafe fn external_pointer_of(datum: pg_sys::Datum) -> Option<ExternalPointer> {
    let p = datum.cast_mut_ptr::<u8>() as *const u8;
    // A 1-byte-header in-line value is never 0x01 + tag 18: its first byte
    // gives its length, at least 1, so it is odd and at least 0x03.
    // SAFETY: a varlena has its first byte; an external one (0x01) has its
    // 18 pointer bytes, all that is read.
    let head = unsafe {
        if *p != 0x01 {
            return None;
        }
        std::slice::from_raw_parts(p, arrw_core::toast::POINTER_BYTES)
    };
    external_pointer(head)
}

#[derive(Clone)]
struct Entry {
    id: ValueId,
    metric: Metric,
    query: Rc<[f32]>,
    parts: ExactParts,
    stamp: Stamp,
}

/// (local transaction id, command id, statement start): one statement.
type Stamp = (u32, u32, i64);

thread_local! {
    static HANDED: RefCell<(Vec<Entry>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// This statement: its transaction, command and start time (a read-only
/// transaction's statements share a command id).
fn stamp() -> Stamp {
    // SAFETY: MyProc is this backend's PGPROC, set for any backend that runs
    // queries; the other two only read backend globals.
    unsafe {
        (
            (*pg_sys::MyProc).lxid,
            pg_sys::GetCurrentCommandId(false),
            pg_sys::GetCurrentStatementStartTimestamp(),
        )
    }
}

/// A scan's rows re-ranked from out-of-line values, by TID, until handed out.
#[derive(Default)]
pub struct Pending {
    rows: HashMap<u64, (ValueId, ExactParts)>,
    query: Option<Rc<[f32]>>,
}

impl Pending {
    /// Forgets everything (a rescan: new query).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.query = None;
    }

    /// Remembers row `tid`'s out-of-line key `id` and its sums to the query.
    pub fn remember(&mut self, tid: u64, id: ValueId, parts: ExactParts) {
        if self.rows.len() < PENDING_MAX {
            self.rows.insert(tid, (id, parts));
        }
    }

    /// Row `tid` goes to the executor: its entry, if any, moves to the ring.
    pub fn handed_out(&mut self, tid: u64, metric: Metric, query: &[f32]) {
        if self.rows.is_empty() {
            return;
        }
        let Some((id, parts)) = self.rows.remove(&tid) else {
            return;
        };
        let q = self
            .query
            .get_or_insert_with(|| Rc::from(query.to_vec().into_boxed_slice()))
            .clone();
        let e = Entry {
            id,
            metric,
            query: q,
            parts,
            stamp: stamp(),
        };
        HANDED.with(|h| {
            let (ring, next) = &mut *h.borrow_mut();
            if ring.len() < RING {
                ring.push(e);
            } else {
                ring[*next] = e;
            }
            *next = (*next + 1) % RING;
        });
    }
}

/// The sums of `metric`'s distance between out-of-line value `id` and the
/// query `query()` gives, remembered by a scan of this statement, if any. The
/// query is read only when some entry has this identity and metric (reading
/// it may mean detoasting it).
pub fn lookup<'q>(
    id: ValueId,
    metric: Metric,
    query: impl FnOnce() -> &'q [f32],
) -> Option<ExactParts> {
    HANDED.with(|h| {
        let (ring, _) = &*h.borrow();
        let mut hits = ring
            .iter()
            .filter(|e| e.id == id && e.metric == metric)
            .peekable();
        hits.peek()?;
        let now = stamp();
        let query = query();
        hits.find(|e| {
            e.stamp == now
                && e.query.len() == query.len()
                && e.query
                    .iter()
                    .zip(query)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
        })
        .map(|e| {
            crate::ivfpq::profile::count(crate::ivfpq::profile::Count::OrderByReuses, 1);
            e.parts
        })
    })
}

/// Empties the ring (end of an ivfpq scan).
pub fn forget() {
    HANDED.with(|h| {
        let (ring, next) = &mut *h.borrow_mut();
        ring.clear();
        *next = 0;
    });
}
