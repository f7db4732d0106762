//! A min-heap that keeps at most a fixed number of records in memory and the
//! rest in sorted runs in a [`Store`] (the glue's: a temporary file).
//!
//! Why: an ivfpq scan holds every row it has re-ranked until no waiting
//! candidate could be closer (`crate::rerank`). How many wait is the number of
//! rows whose estimates lie within the margin of the nearest one's distance:
//! on data whose distances crowd together (random vectors, near-copies) that
//! is most of what a deep scan has read, so a cursor over a 300,000-row index
//! held ~10 MB at `work_mem = 4MB`, and it grew with the table. With a store,
//! the heap keeps at most `cap` records; when it holds more it writes its
//! farther half to the store as one sorted run, and the smallest record is the
//! smaller of the heap's and the runs' heads.
//!
//! Runs are kept few: after a run is written, the last two are merged while
//! the last holds at least half as many records as the one before it (so run
//! sizes fall geometrically, about log₂(rows / cap) runs, and each record is
//! rewritten about as often), or while there are more than [`MAX_RUNS`]. Each
//! run reads [`READ_AHEAD`] records at a time. Space written to the store is
//! not reused: a record is written once per merge that moves it, so a scan
//! that spills n records writes O(n log(n / cap)) of them in all.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A record of fixed size that sorts as it should leave (smallest first).
pub trait Record: Copy + Ord {
    /// Bytes [`Record::put`] writes.
    const BYTES: usize;
    /// Writes the record into `out` (`BYTES` long).
    fn put(&self, out: &mut [u8]);
    /// Reads what [`Record::put`] wrote.
    fn get(b: &[u8]) -> Self;
}

impl Record for u32 {
    const BYTES: usize = 4;
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        u32::from_le_bytes(b.try_into().expect("4 bytes"))
    }
}

impl Record for u64 {
    const BYTES: usize = 8;
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
}

impl Record for u128 {
    const BYTES: usize = 16;
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        u128::from_le_bytes(b.try_into().expect("16 bytes"))
    }
}

/// Where the runs go: an append-only byte store read back at offsets.
pub trait Store {
    /// Appends `b` and returns the offset it starts at.
    fn append(&mut self, b: &[u8]) -> u64;
    /// Fills `b` with the bytes at `offset`, all written before by `append`.
    fn read_at(&mut self, offset: u64, b: &mut [u8]);
    /// The heap is being dropped on a path where the store must not be
    /// touched any more (the glue: a transaction's abort has closed its
    /// file already). Nothing by default.
    fn abandon(&mut self) {}
}

/// An in-memory [`Store`], for tests.
#[derive(Default, Debug)]
pub struct VecStore {
    pub bytes: Vec<u8>,
}

impl Store for VecStore {
    fn append(&mut self, b: &[u8]) -> u64 {
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(b);
        at
    }
    fn read_at(&mut self, offset: u64, b: &mut [u8]) {
        let o = offset as usize;
        b.copy_from_slice(&self.bytes[o..o + b.len()]);
    }
}

/// Records each run reads at a time.
pub const READ_AHEAD: usize = 64;

/// Most runs kept before the last ones are merged whatever their sizes.
pub const MAX_RUNS: usize = 24;

/// Records encoded per `append` when a run is written.
const WRITE_CHUNK: usize = 1024;

/// Smallest `cap` a spilling heap takes: room for its half and the runs'
/// read-ahead to matter.
pub const MIN_CAP: usize = 4 * READ_AHEAD;

struct Run<R> {
    /// Offset of the next record not yet read.
    next: u64,
    /// Records in the store not yet read.
    unread: usize,
    /// Records read and not yet taken, smallest first.
    buf: VecDeque<R>,
}

impl<R: Record> Run<R> {
    fn len(&self) -> usize {
        self.unread + self.buf.len()
    }

    /// Reads the next records when none is buffered.
    fn fill(&mut self, store: &mut dyn Store, scratch: &mut Vec<u8>) {
        if !self.buf.is_empty() || self.unread == 0 {
            return;
        }
        let k = self.unread.min(READ_AHEAD);
        scratch.resize(k * R::BYTES, 0);
        store.read_at(self.next, scratch);
        self.buf
            .extend(scratch.chunks_exact(R::BYTES).map(|c| R::get(c)));
        self.next += (k * R::BYTES) as u64;
        self.unread -= k;
    }
}

/// Where the smallest record is.
#[derive(Clone, Copy)]
enum Head {
    Heap,
    Run(usize),
}

/// See the module docs. Without a store it is a plain binary heap.
pub struct SpillHeap<R: Record> {
    heap: BinaryHeap<Reverse<R>>,
    /// Most records the heap keeps once it has a store.
    cap: usize,
    store: Option<Box<dyn Store>>,
    runs: Vec<Run<R>>,
    /// Records written to the store so far (merges included).
    written: u64,
    scratch: Vec<u8>,
}

impl<R: Record> Default for SpillHeap<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Record> std::fmt::Debug for SpillHeap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillHeap")
            .field("in_memory", &self.heap.len())
            .field("runs", &self.runs.len())
            .field("in_runs", &self.in_runs())
            .field("cap", &self.cap)
            .finish()
    }
}

impl<R: Record> SpillHeap<R> {
    /// Empty, without a store (everything in memory).
    pub fn new() -> Self {
        SpillHeap {
            heap: BinaryHeap::new(),
            cap: usize::MAX,
            store: None,
            runs: Vec::new(),
            written: 0,
            scratch: Vec::new(),
        }
    }

    /// From now on keeps at most `cap` records (at least [`MIN_CAP`]) in
    /// memory, the rest in `store`. Called on an empty heap.
    pub fn spill_to(&mut self, cap: usize, store: Box<dyn Store>) {
        debug_assert!(self.is_empty(), "spill_to on a heap with records");
        self.cap = cap.max(MIN_CAP);
        self.store = Some(store);
    }

    /// Bytes the in-memory part may take at most: `cap` records of the heap
    /// (its vector may double past them once: twice that), the runs'
    /// read-ahead and a run's write buffer. Without a store, unbounded.
    pub fn bytes_at_most(&self) -> Option<usize> {
        let rec = std::mem::size_of::<R>();
        self.store.as_ref().map(|_| {
            2 * self.cap * rec + MAX_RUNS * READ_AHEAD * (rec + R::BYTES) + WRITE_CHUNK * R::BYTES
        })
    }

    pub fn push(&mut self, r: R) {
        self.heap.push(Reverse(r));
        if self.heap.len() > self.cap && self.store.is_some() {
            self.spill();
        }
    }

    /// Records held, in memory and in runs.
    pub fn len(&self) -> usize {
        self.heap.len() + self.in_runs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records in runs (in the store or read ahead).
    pub fn in_runs(&self) -> usize {
        self.runs.iter().map(|r| r.len()).sum()
    }

    /// Records written to the store so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The smallest record.
    pub fn peek(&mut self) -> Option<R> {
        match self.head()? {
            Head::Heap => self.heap.peek().map(|r| r.0),
            Head::Run(i) => self.runs[i].buf.front().copied(),
        }
    }

    /// Removes and returns the smallest record.
    pub fn pop(&mut self) -> Option<R> {
        match self.head()? {
            Head::Heap => self.heap.pop().map(|r| r.0),
            Head::Run(i) => {
                let r = self.runs[i].buf.pop_front();
                if self.runs[i].len() == 0 {
                    self.runs.remove(i);
                }
                r
            }
        }
    }

    /// Tells the store not to be touched again (see [`Store::abandon`]);
    /// the heap is about to be dropped.
    pub fn abandon(&mut self) {
        if let Some(s) = self.store.as_mut() {
            s.abandon();
        }
    }

    fn head(&mut self) -> Option<Head> {
        let mut best: Option<(R, Head)> = self.heap.peek().map(|r| (r.0, Head::Heap));
        if let Some(store) = self.store.as_mut() {
            for (i, run) in self.runs.iter_mut().enumerate() {
                run.fill(store.as_mut(), &mut self.scratch);
                if let Some(&r) = run.buf.front() {
                    if best.is_none_or(|(b, _)| r < b) {
                        best = Some((r, Head::Run(i)));
                    }
                }
            }
        }
        best.map(|(_, h)| h)
    }

    /// Writes the farther half of the heap as a run, then merges runs.
    fn spill(&mut self) {
        let mut v: Vec<R> = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|r| r.0)
            .collect();
        v.sort_unstable();
        let far = v.split_off(self.cap / 2);
        self.heap = v.into_iter().map(Reverse).collect();
        let run = self.write_run(far.iter().copied(), far.len());
        self.runs.push(run);
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            if self.runs[n - 1].len() * 2 < self.runs[n - 2].len() && n <= MAX_RUNS {
                break;
            }
            let b = self.runs.pop().expect("two runs");
            let a = self.runs.pop().expect("two runs");
            let merged = self.merge(a, b);
            self.runs.push(merged);
        }
    }

    /// Writes `n` records, smallest first, as a run.
    fn write_run(&mut self, records: impl Iterator<Item = R>, n: usize) -> Run<R> {
        let store = self.store.as_mut().expect("a spilling heap has a store");
        let mut start = None;
        let mut buf = Vec::with_capacity(WRITE_CHUNK.min(n.max(1)) * R::BYTES);
        let mut count = 0usize;
        let mut flush = |buf: &mut Vec<u8>, start: &mut Option<u64>| {
            if !buf.is_empty() {
                let at = store.append(buf);
                start.get_or_insert(at);
                buf.clear();
            }
        };
        for r in records {
            let at = buf.len();
            buf.resize(at + R::BYTES, 0);
            r.put(&mut buf[at..]);
            count += 1;
            if buf.len() >= WRITE_CHUNK * R::BYTES {
                flush(&mut buf, &mut start);
            }
        }
        flush(&mut buf, &mut start);
        debug_assert_eq!(count, n);
        self.written += count as u64;
        Run {
            next: start.unwrap_or(0),
            unread: count,
            buf: VecDeque::new(),
        }
    }

    /// One run of the records of `a` and `b`, smallest first.
    fn merge(&mut self, mut a: Run<R>, mut b: Run<R>) -> Run<R> {
        let n = a.len() + b.len();
        let mut out = Vec::with_capacity(n.min(WRITE_CHUNK));
        let mut parts: Vec<Run<R>> = Vec::new();
        let mut taken = 0usize;
        // Merge a chunk at a time: read both runs, write what leaves.
        let mut start: Option<u64> = None;
        while taken < n {
            {
                let store = self.store.as_mut().expect("a spilling heap has a store");
                a.fill(store.as_mut(), &mut self.scratch);
                b.fill(store.as_mut(), &mut self.scratch);
            }
            let next = match (a.buf.front(), b.buf.front()) {
                (Some(x), Some(y)) if y < x => b.buf.pop_front(),
                (Some(_), _) => a.buf.pop_front(),
                (None, Some(_)) => b.buf.pop_front(),
                (None, None) => break,
            };
            out.push(next.expect("a record"));
            taken += 1;
            if out.len() == WRITE_CHUNK || taken == n {
                let len = out.len();
                let part = self.write_run(out.drain(..), len);
                // Chunks of one run are written back to back (nothing else
                // appends meanwhile): the merged run starts at the first.
                start.get_or_insert(part.next);
                parts.push(part);
            }
        }
        // The parts' records were counted as written by write_run.
        Run {
            next: start.unwrap_or(0),
            unread: parts.iter().map(|p| p.unread).sum(),
            buf: VecDeque::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spilling(cap: usize) -> SpillHeap<u64> {
        let mut h = SpillHeap::new();
        h.spill_to(cap, Box::new(VecStore::default()));
        h
    }

    /// Records come out smallest first, whatever was spilled, and the heap
    /// never keeps more than its cap in memory.
    #[test]
    fn pops_in_order_with_few_in_memory() {
        let mut h = spilling(MIN_CAP);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut all = Vec::new();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = x % 1_000_000;
            all.push(r);
            h.push(r);
            assert!(h.heap.len() <= MIN_CAP);
        }
        assert_eq!(h.len(), all.len());
        assert!(h.runs.len() <= MAX_RUNS);
        assert!(h.written() > 0);
        all.sort_unstable();
        let mut out = Vec::new();
        while let Some(r) = h.pop() {
            out.push(r);
        }
        assert_eq!(out, all);
    }

    /// Pushes between pops (a scan re-ranks more rows as others leave) keep
    /// the order: a record smaller than every run's head leaves first.
    #[test]
    fn interleaved_pushes_and_pops() {
        let mut h = spilling(MIN_CAP);
        let mut reference = std::collections::BinaryHeap::new();
        let mut x = 12345u64;
        for step in 0..30_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) % 100_000 + step; // drifts upward, as distances do
            h.push(r);
            reference.push(Reverse(r));
            if step % 3 == 0 {
                assert_eq!(h.pop(), reference.pop().map(|r| r.0));
            }
            assert_eq!(h.len(), reference.len());
        }
        while let Some(Reverse(r)) = reference.pop() {
            assert_eq!(h.peek(), Some(r));
            assert_eq!(h.pop(), Some(r));
        }
        assert!(h.is_empty());
        assert_eq!(h.pop(), None);
    }

    /// Without a store nothing spills.
    #[test]
    fn without_a_store_it_is_a_heap() {
        let mut h: SpillHeap<u32> = SpillHeap::new();
        for r in (0..10_000u32).rev() {
            h.push(r);
        }
        assert_eq!(h.written(), 0);
        assert!(h.bytes_at_most().is_none());
        assert_eq!(
            (0..10_000).map(|_| h.pop().unwrap()).collect::<Vec<_>>(),
            (0..10_000).collect::<Vec<_>>()
        );
    }

    proptest! {
        /// Any interleaving of pushes and pops agrees with a plain heap.
        #[test]
        fn agrees_with_a_binary_heap(ops in proptest::collection::vec((any::<bool>(), 0u32..5000), 0..4000), cap in 0usize..600) {
            let mut h: SpillHeap<u32> = SpillHeap::new();
            h.spill_to(cap, Box::new(VecStore::default()));
            let mut reference = std::collections::BinaryHeap::new();
            for (push, v) in ops {
                if push {
                    h.push(v);
                    reference.push(Reverse(v));
                } else {
                    prop_assert_eq!(h.pop(), reference.pop().map(|r| r.0));
                }
                prop_assert_eq!(h.len(), reference.len());
                prop_assert!(h.heap.len() <= cap.max(MIN_CAP));
            }
            while let Some(Reverse(r)) = reference.pop() {
                prop_assert_eq!(h.pop(), Some(r));
            }
        }
    }
}
