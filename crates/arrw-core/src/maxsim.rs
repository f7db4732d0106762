//! MaxSim, the late-interaction score of a multi-vector document (ColBERT):
//! for each query vector, the largest inner product with any document vector,
//! summed over the query vectors.
//!
//! SQL exposes it as `maxsim(doc vector[], query vector[])` (the similarity,
//! higher is better) and as the operator `doc @# query`, its negation, so that
//! `ORDER BY doc @# $1 LIMIT k` ranks nearest first, with VectorChord's name and
//! meaning (queries port unchanged).
//!
//! Inputs are checked before any arithmetic: both sides non-empty, every vector
//! of both sides of one dimension count, at most [`MAX_VECTORS`] vectors a side.

use crate::distance;

/// Most vectors one side of a MaxSim may hold. A document of 8192 vectors of 768
/// dimensions is 25 MB; the cost is `query × document` inner products, so larger
/// sides are more likely a mistake than a document.
pub const MAX_VECTORS: usize = 8192;

/// Which argument an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Document,
    Query,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Document => "document",
            Side::Query => "query",
        }
    }
}

/// Why a MaxSim cannot be computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaxSimError {
    /// A side holds no vector.
    Empty(Side),
    /// A side holds more than [`MAX_VECTORS`].
    TooMany(Side, usize),
    /// Two vectors differ in dimension count.
    DifferentDims(usize, usize),
}

impl MaxSimError {
    /// The ERROR message (the SQLSTATE is the glue's: 22023, 54000 and 22000).
    pub fn message(&self) -> String {
        match self {
            MaxSimError::Empty(s) => format!("MaxSim {} array must not be empty", s.name()),
            MaxSimError::TooMany(s, n) => format!(
                "MaxSim {} array has {n} vectors, at most {MAX_VECTORS} are allowed",
                s.name()
            ),
            MaxSimError::DifferentDims(a, b) => format!("different vector dimensions {a} and {b}"),
        }
    }
}

/// Checks both sides (see the module docs).
pub fn check(doc: &[&[f32]], query: &[&[f32]]) -> Result<(), MaxSimError> {
    for (side, v) in [(Side::Document, doc), (Side::Query, query)] {
        if v.is_empty() {
            return Err(MaxSimError::Empty(side));
        }
        if v.len() > MAX_VECTORS {
            return Err(MaxSimError::TooMany(side, v.len()));
        }
    }
    let dim = doc[0].len();
    if let Some(x) = doc.iter().chain(query).find(|x| x.len() != dim) {
        return Err(MaxSimError::DifferentDims(dim, x.len()));
    }
    Ok(())
}

/// The MaxSim similarity `Σ_q max_d q·d` (sums in f64).
pub fn similarity(doc: &[&[f32]], query: &[&[f32]]) -> Result<f64, MaxSimError> {
    similarity_with(doc, query, || {})
}

/// As [`similarity`], calling `tick` after each query vector: one query vector
/// is `doc.len() × dim` multiply-adds, at most 8,192 × 16,000 (~40 ms), and
/// a whole call up to 8,192 times that, so the caller's `tick` is where a
/// statement can be cancelled (the glue passes PostgreSQL's interrupt check).
pub fn similarity_with(
    doc: &[&[f32]],
    query: &[&[f32]],
    mut tick: impl FnMut(),
) -> Result<f64, MaxSimError> {
    check(doc, query)?;
    let mut sum = 0f64;
    for q in query {
        sum += doc
            .iter()
            .map(|d| distance::dot(q, d))
            .fold(f32::NEG_INFINITY, max_keeping_nan) as f64;
        tick();
    }
    Ok(sum)
}

/// The larger of `a` and `b`, NaN if either is: PostgreSQL orders NaN above
/// every number, and `maxsim(ARRAY[a], ARRAY[b])` is `-(a <#> b)`, NaN when
/// the inner product overflows to `inf - inf`. `f32::max` drops a NaN, which
/// made that query vector's best score the document's other elements' (or
/// −Infinity for a one-element document; hunt-127).
#[inline]
fn max_keeping_nan(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

/// Candidate rows of an index scan for `doc @# query`, gathered one query vector
/// at a time, with an estimate of each row's MaxSim.
///
/// An ivfpq index on `vector[]` holds one entry per element, each under its
/// row's id. For query vector `i` a scan scores the entries of the lists it
/// probes (an estimated inner product per entry) and offers them here; the best
/// `depth` entries are kept, and each row kept counts its best entry.
///
/// **The rule for a query vector that found no element of a row**: it counts
/// as the *fill* of that query vector, the score of the lowest entry kept for
/// it: no entry that was scored and dropped can have scored more. (With fewer
/// than `depth` entries seen, the fill is the lowest score seen: the row's
/// elements then lie only in lists that were not probed.) A row's estimate is
/// therefore `Σ_i found_i + Σ_{i not found} fill_i`, an upper bound of its
/// MaxSim over the probed lists up to the estimates' own error, so a scan that
/// re-ranks rows by this estimate and hands a row out once its exact MaxSim is
/// at least the next waiting estimate returns rows in exact order (the
/// threshold algorithm). A row found by no query vector scores at most
/// `Σ fill_i` ([`Gather::floor`]).
///
/// Memory: at most `4 × depth` entries of the current query vector (a linear
/// selection trims them to the best `depth` when full), plus at most
/// [`ROW_BYTES`] per row kept, at most `depth` rows per finished query vector
/// ([`Gather::bytes_for`]).
/// Most bytes a row kept by a [`Gather`] takes: 16 for its sum and 8 for its
/// last query vector (each in a vector that may have doubled: 48), and its
/// map entry (16 bytes and a control byte per bucket, buckets at most 7/16
/// full just after the map doubled: 39).
pub const ROW_BYTES: usize = 88;

#[derive(Clone, Debug)]
pub struct Gather {
    depth: usize,
    cap: usize,
    /// The current query vector's entries (score, row).
    current: Vec<(f32, u64)>,
    /// Entries scoring below this cannot enter the current best `depth`.
    threshold: f32,
    /// Lowest score offered for the current query vector.
    lowest: f32,
    /// Row -> its index in `rows`.
    index: std::collections::HashMap<u64, u32, BuildRowHasher>,
    /// Per row kept: (row, Σ over finished query vectors of score − fill).
    rows: Vec<(u64, f32)>,
    /// Per row: the last query vector that kept it, and its best excess there.
    last: Vec<(u32, f32)>,
    /// Query vectors finished so far.
    queries: u32,
    /// Σ of the fills of the finished query vectors.
    floor: f64,
    /// Query vectors that saw no entry at all (their fill is decided at the end).
    blind: usize,
    /// Lowest fill of the query vectors that saw entries.
    min_fill: f32,
    /// Entries offered for the current query vector (NaN scores aside).
    offered: usize,
    /// Some query vector dropped a row's best entry: a deeper gather would
    /// find rows this one did not ([`Gather::truncated`]).
    truncated: bool,
}

impl Gather {
    /// Keeps the best `depth` entries (at least 1) per query vector.
    pub fn new(depth: usize) -> Self {
        let depth = depth.max(1);
        Gather {
            depth,
            cap: (depth * 4).max(256),
            current: Vec::new(),
            threshold: f32::NEG_INFINITY,
            lowest: f32::INFINITY,
            index: std::collections::HashMap::default(),
            rows: Vec::new(),
            last: Vec::new(),
            queries: 0,
            floor: 0.0,
            blind: 0,
            min_fill: f32::INFINITY,
            offered: 0,
            truncated: false,
        }
    }

    /// Bytes a gather of `depth` entries per query vector holds at most for
    /// `queries` query vectors over an index of at most `entries` entries: the
    /// current query vector's buffer (16 bytes an entry, never more than 4 ×
    /// `depth` (at least 256) nor than are offered; its allocation grows by
    /// doubling) and at most [`ROW_BYTES`] per row kept. No more rows are kept than `depth` per
    /// query vector, nor than the index has entries (each row has at least
    /// one); and 1 kB. [`Gather::heap_bytes`] is what one holds.
    pub fn bytes_for(depth: usize, queries: usize, entries: usize) -> usize {
        let depth = depth.max(1);
        let buffer = (depth.saturating_mul(4))
            .max(256)
            .min(entries.max(1))
            .next_power_of_two();
        let rows = depth.saturating_mul(queries).min(entries).max(1);
        // + 1 kB: the smallest allocations round up (a vector holds at least
        // 4 entries, a map at least 4 buckets).
        buffer
            .saturating_mul(16)
            .saturating_add(rows.saturating_mul(ROW_BYTES))
            .saturating_add(1024)
    }

    /// Bytes this gather's allocations take now (their capacities).
    pub fn heap_bytes(&self) -> usize {
        // The map: 16-byte buckets and a control byte each, buckets a power of
        // two holding at most 7/8 of them (hashbrown's layout).
        let buckets = (self.index.capacity() * 8).div_ceil(7).next_power_of_two();
        self.current.capacity() * std::mem::size_of::<(f32, u64)>()
            + self.rows.capacity() * std::mem::size_of::<(u64, f32)>()
            + self.last.capacity() * std::mem::size_of::<(u32, f32)>()
            + buckets * (std::mem::size_of::<(u64, u32)>() + 1)
    }

    /// Entries kept per query vector.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Offers entry `row` with estimated inner product `score` for the current
    /// query vector.
    #[inline]
    pub fn offer(&mut self, score: f32, row: u64) {
        if score.is_nan() {
            return;
        }
        self.offered += 1;
        self.lowest = self.lowest.min(score);
        if score < self.threshold {
            return;
        }
        self.current.push((score, row));
        if self.current.len() >= self.cap {
            self.trim();
        }
    }

    /// Offers a page of entries given as estimated *distances* (`-score`, what
    /// an inner-product scan computes), entry `i` being row `row(i)`; `row` is
    /// only called for entries that can still enter the best `depth`.
    #[inline]
    pub fn offer_distances(&mut self, dists: &[f32], row: impl Fn(usize) -> u64) {
        self.offer_distances_except(dists, row, |_| false);
    }

    /// As [`Gather::offer_distances`], leaving out the entries of rows `skip`
    /// names (a scan's rows already taken): such an entry is not offered at
    /// all, so it neither takes a place among the best `depth` nor counts
    /// towards the fill or [`Gather::truncated`]. A gather that skips rows
    /// keeps the best `depth` entries of the other rows, so every row a
    /// previous gather of at most this depth found and did not take is found
    /// again. `skip` is asked only about entries that could enter the best
    /// `depth` (an entry below the threshold is dropped without reading its
    /// row: the gather already holds `depth` better entries, so it is
    /// truncated either way).
    #[inline]
    pub fn offer_distances_except(
        &mut self,
        dists: &[f32],
        row: impl Fn(usize) -> u64,
        skip: impl Fn(u64) -> bool,
    ) {
        for (i, &d) in dists.iter().enumerate() {
            let score = -d;
            if score.is_nan() {
                continue;
            }
            if score < self.threshold {
                self.offered += 1;
                self.lowest = self.lowest.min(score);
                continue;
            }
            let id = row(i);
            if skip(id) {
                continue;
            }
            self.offered += 1;
            self.lowest = self.lowest.min(score);
            self.current.push((score, id));
            if self.current.len() >= self.cap {
                self.trim();
            }
        }
    }

    /// Keeps each row's best entry, then the best `depth` of them; the lowest
    /// of those becomes the threshold.
    ///
    /// One entry per row: a row's estimate counts only its best element for
    /// each query vector, so its other entries would take places a row not
    /// kept could have had. Kept whole, a document of 250 copies of one
    /// vector took 250 of the places: over 50,000 such documents, most of
    /// them deleted and not yet vacuumed, a `LIMIT 10` gathered ~80 rows at a
    /// time and took 40 s to reach the live ones.
    fn trim(&mut self) {
        let c = &mut self.current;
        if c.len() > 1 {
            c.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)));
            c.dedup_by_key(|e| e.1);
        }
        if c.len() > self.depth {
            c.select_nth_unstable_by(self.depth - 1, |a, b| b.0.total_cmp(&a.0));
            c.truncate(self.depth);
            self.threshold = c.iter().map(|e| e.0).fold(f32::INFINITY, f32::min);
            // A row's best entry was dropped: a deeper gather would find it.
            self.truncated = true;
        }
    }

    /// Ends the current query vector: each row it kept records its best
    /// entry's excess over the fill (see the type's docs).
    pub fn end_query(&mut self) {
        self.trim();
        self.offered = 0;
        if self.current.is_empty() {
            self.blind += 1;
        } else {
            // Every dropped entry scored at most the lowest entry kept (the
            // threshold it fell under was such an entry's score or lower).
            let fill = if self.current.len() >= self.depth {
                self.current
                    .iter()
                    .map(|e| e.0)
                    .fold(f32::INFINITY, f32::min)
            } else {
                self.lowest
            };
            // Each row once, with its best entry: a row's excess for this
            // query vector is pending in `last` until another one keeps it.
            let q = self.queries + 1;
            for &(s, row) in &self.current {
                let e = s - fill;
                let next = self.rows.len() as u32;
                let i = *self.index.entry(row).or_insert(next) as usize;
                if i == self.rows.len() {
                    self.rows.push((row, 0.0));
                    self.last.push((q, e));
                } else if self.last[i].0 == q {
                    self.last[i].1 = self.last[i].1.max(e);
                } else {
                    self.rows[i].1 += self.last[i].1;
                    self.last[i] = (q, e);
                }
            }
            self.floor += f64::from(fill);
            self.min_fill = self.min_fill.min(fill);
        }
        self.current.clear();
        self.threshold = f32::NEG_INFINITY;
        self.lowest = f32::INFINITY;
        self.queries += 1;
    }

    /// The estimate of a row no query vector kept: the sum of the fills. A
    /// query vector that saw no entry counts as the lowest fill of the others
    /// (0 when none saw any): it cannot tell rows apart.
    pub fn floor(&self) -> f32 {
        let blind_fill = if self.min_fill.is_finite() {
            self.min_fill
        } else {
            0.0
        };
        (self.floor + self.blind as f64 * f64::from(blind_fill)) as f32
    }

    /// Whether some query vector was offered entries of more than `depth`
    /// rows: rows none of whose entries it kept may then score up to
    /// [`Gather::floor`] (up to the codes' error), and a deeper gather finds
    /// them. When no query vector was, every row of the lists it scored was
    /// kept with its best entry.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Every kept row with its estimated MaxSim, best first (ties by row).
    pub fn finish(self) -> Vec<(f32, u64)> {
        let mut out = self.finish_unordered();
        out.sort_unstable_by(best_first);
        out
    }

    /// Every kept row with its estimated MaxSim, in no particular order (see
    /// [`BestFirst`] to take them best first without sorting them all).
    pub fn finish_unordered(self) -> Vec<(f32, u64)> {
        let floor = self.floor();
        self.rows
            .iter()
            .zip(&self.last)
            .map(|(&(row, e), &(_, pending))| (floor + e + pending, row))
            .collect()
    }
}

/// Higher estimate first, then lower row.
fn best_first(a: &(f32, u64), b: &(f32, u64)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Rows taken best estimate first, a batch at a time: each batch is selected
/// from the rest in linear time and only it is sorted, so a scan that re-ranks
/// a few batches of tens of thousands of rows found does not sort them all.
#[derive(Clone, Debug, Default)]
pub struct BestFirst {
    v: Vec<(f32, u64)>,
    /// Rows before `next` were taken.
    next: usize,
    /// Rows `next..sorted` are the best of the rest, best first.
    sorted: usize,
}

impl BestFirst {
    /// Over `rows` (estimate, row), higher estimate first.
    pub fn new(rows: Vec<(f32, u64)>) -> Self {
        BestFirst {
            v: rows,
            next: 0,
            sorted: 0,
        }
    }

    /// Rows not taken yet.
    pub fn len(&self) -> usize {
        self.v.len() - self.next
    }

    /// Whether every row was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the best `n` of the rest (at least one) sorted at the front.
    fn prepare(&mut self, n: usize) {
        let n = n.max(1).min(self.len());
        if self.sorted - self.next >= n {
            return;
        }
        let rest = &mut self.v[self.next..];
        if n < rest.len() {
            rest.select_nth_unstable_by(n - 1, best_first);
        }
        rest[..n].sort_unstable_by(best_first);
        self.sorted = self.next + n;
    }

    /// The best estimate not taken yet.
    pub fn peek(&mut self) -> Option<f32> {
        if self.is_empty() {
            return None;
        }
        self.prepare(1);
        Some(self.v[self.next].0)
    }

    /// Takes the best `n` rows left and every further row whose estimate
    /// equals the last of them (a re-rank batch never splits equal estimates:
    /// `ivf::tie_batch_limit`, `ivf::CandidatePool::pop_best`), best
    /// first.
    pub fn take_batch(&mut self, n: usize) -> &[(f32, u64)] {
        let n = n.min(self.len());
        if n == 0 {
            return &[];
        }
        self.prepare(n);
        let last = self.v[self.next + n - 1].0;
        let mut end = self.next + n;
        let scan_from = end;
        let limit = self.next.saturating_add(crate::ivf::tie_batch_limit(n));
        for i in scan_from..self.v.len() {
            if end >= limit {
                break;
            }
            if self.v[i].0.total_cmp(&last).is_eq() {
                self.v.swap(i, end);
                end += 1;
            }
        }
        // The swaps may have moved rows of the sorted rest: sort again later.
        self.sorted = end;
        let start = self.next;
        self.next = end;
        &self.v[start..end]
    }

    /// Takes the best `n` rows left (fewer when fewer are left), best first.
    pub fn take(&mut self, n: usize) -> &[(f32, u64)] {
        let n = n.min(self.len());
        self.prepare(n);
        let start = self.next;
        self.next += n;
        &self.v[start..start + n]
    }
}

/// Hashes heap TIDs (block << 16 | offset) for [`Gather`]'s row map: one
/// multiplication (Fibonacci hashing, the high bits kept), where the standard
/// library's SipHash, built against hostile keys, cost more than the rest of
/// a gather. The keys are the index's own TIDs, not chosen by a user.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowHasher(u64);

impl std::hash::Hasher for RowHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (x ^ self.0)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(32);
    }
}

/// The [`RowHasher`] builder.
pub type BuildRowHasher = std::hash::BuildHasherDefault<RowHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refs(v: &[Vec<f32>]) -> Vec<&[f32]> {
        v.iter().map(|x| x.as_slice()).collect()
    }

    /// A gather that leaves out the rows taken so far finds the next rows, and
    /// every row an earlier gather found and did not take; skipped entries
    /// neither fill places nor make the gather truncated.
    #[test]
    fn a_nan_inner_product_makes_the_similarity_nan() {
        // 1e30 · 1e10 overflows: +inf + (−inf) is NaN, as `<#>` says too.
        let q = [1e10f32, -1e10];
        for doc in [
            vec![[1e30f32, 1e30]],
            vec![[1e30, 1e30], [0.0, 0.0]],
            vec![[0.0, 0.0], [1e30, 1e30]],
        ] {
            let d: Vec<&[f32]> = doc.iter().map(|x| &x[..]).collect();
            let s = similarity(&d, &[&q[..]]).unwrap();
            assert!(s.is_nan(), "{doc:?}: {s}");
        }
        assert_eq!(max_keeping_nan(1.0, 2.0), 2.0);
        assert_eq!(max_keeping_nan(2.0, 1.0), 2.0);
        assert!(max_keeping_nan(f32::NAN, 1.0).is_nan());
        assert!(max_keeping_nan(1.0, f32::NAN).is_nan());
    }

    #[test]
    fn gathering_again_without_taken_rows_finds_the_next_rows() {
        // One query vector; rows 0..40, each with 3 entries of one score
        // (row r scores 100 - r): 120 entries, a depth of 3 keeps 3 rows (a
        // row's entries take one place: its best).
        let dists: Vec<f32> = (0..120).map(|i| -(100.0 - (i / 3) as f32)).collect();
        let row = |i: usize| (i / 3) as u64;
        let gather = |taken: &std::collections::HashSet<u64>| {
            let mut g = Gather::new(3);
            g.offer_distances_except(&dists, row, |r| taken.contains(&r));
            g.end_query();
            let truncated = g.truncated();
            let mut rows: Vec<u64> = g.finish_unordered().into_iter().map(|e| e.1).collect();
            rows.sort_unstable();
            (rows, truncated)
        };
        let mut taken = std::collections::HashSet::new();
        let (first, t) = gather(&taken);
        assert!(t);
        assert_eq!(first, vec![0, 1, 2]);
        // Take two of them: the next gather finds the other again, and more.
        taken.extend([0, 1]);
        let (second, t) = gather(&taken);
        assert!(t);
        assert_eq!(second, vec![2, 3, 4]);
        // Every row but the last three taken: the gather holds all that is left
        // and is not truncated (it was offered 9 entries, but only 3 rows).
        taken.extend(0..37);
        let (last, t) = gather(&taken);
        assert!(!t);
        assert_eq!(last, vec![37, 38, 39]);
        // Nothing skipped: the plain offer.
        let mut g = Gather::new(3);
        g.offer_distances(&dists, row);
        g.end_query();
        let mut plain: Vec<u64> = g.finish_unordered().into_iter().map(|e| e.1).collect();
        plain.sort_unstable();
        assert_eq!(plain, first);
    }

    #[test]
    fn worked_example() {
        let doc = [vec![1.0, 0.0], vec![0.0, 2.0]];
        let query = [vec![3.0, 1.0], vec![-1.0, 1.0]];
        // q1: max(3, 2) = 3; q2: max(-1, 2) = 2.
        assert_eq!(similarity(&refs(&doc), &refs(&query)), Ok(5.0));
    }

    /// The glue cancels a long MaxSim at `tick`: it must come once per query
    /// vector, after that vector's work, and never for inputs that fail the
    /// checks.
    #[test]
    fn similarity_ticks_once_per_query_vector() {
        let doc = [vec![1.0, 0.0], vec![0.0, 2.0]];
        let query = [vec![3.0, 1.0], vec![-1.0, 1.0], vec![0.5, 0.5]];
        let mut ticks = 0;
        let s = similarity_with(&refs(&doc), &refs(&query), || ticks += 1);
        assert_eq!(s, similarity(&refs(&doc), &refs(&query)));
        assert_eq!(ticks, query.len());
        let mut ticks = 0;
        let bad = [vec![1.0, 2.0, 3.0]];
        assert!(similarity_with(&refs(&doc), &refs(&bad), || ticks += 1).is_err());
        assert_eq!(ticks, 0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = [vec![1.0, 2.0]];
        let b = [vec![1.0, 2.0, 3.0]];
        assert_eq!(
            similarity(&[], &refs(&a)),
            Err(MaxSimError::Empty(Side::Document))
        );
        assert_eq!(
            similarity(&refs(&a), &[]),
            Err(MaxSimError::Empty(Side::Query))
        );
        assert_eq!(
            similarity(&refs(&a), &refs(&b)),
            Err(MaxSimError::DifferentDims(2, 3))
        );
        let many = vec![vec![0.0f32; 2]; MAX_VECTORS + 1];
        assert_eq!(
            similarity(&refs(&many), &refs(&a)),
            Err(MaxSimError::TooMany(Side::Document, MAX_VECTORS + 1))
        );
        assert_eq!(
            MaxSimError::DifferentDims(2, 3).message(),
            "different vector dimensions 2 and 3"
        );
    }

    proptest! {
        /// Equals a plain double loop, and does not depend on the order of the
        /// document's vectors.
        #[test]
        fn matches_brute_force(
            doc in proptest::collection::vec(proptest::collection::vec(-4.0f32..4.0, 5), 1..12),
            query in proptest::collection::vec(proptest::collection::vec(-4.0f32..4.0, 5), 1..6),
        ) {
            let mut want = 0f64;
            for q in &query {
                let mut best = f64::NEG_INFINITY;
                for d in &doc {
                    let s: f64 = q.iter().zip(d).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
                    best = best.max(s);
                }
                want += best;
            }
            let got = similarity(&refs(&doc), &refs(&query)).unwrap();
            prop_assert!((got - want).abs() < 1e-3 * (1.0 + want.abs()), "{} vs {}", got, want);
            let mut rev = doc.clone();
            rev.reverse();
            let got2 = similarity(&refs(&rev), &refs(&query)).unwrap();
            prop_assert!((got - got2).abs() < 1e-4 * (1.0 + got.abs()));
        }
    }

    /// Scores of row `r`'s elements for query vector `i` in the small model
    /// below: the element list, one (row, score) per entry.
    fn entries(seed: u64, rows: u64, per_row: usize, nq: usize) -> Vec<Vec<(u64, f32)>> {
        let mut x = seed | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        };
        (0..nq)
            .map(|_| {
                (0..rows)
                    .flat_map(|r| (0..per_row).map(move |_| r))
                    .map(|r| (r, next()))
                    .collect()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// What a gather holds stays within `bytes_for`, whatever the depth,
        /// the number of query vectors and of entries per row.
        #[test]
        fn a_gather_holds_at_most_bytes_for(
            seed in any::<u64>(),
            rows in 1u64..3000,
            per_row in 1usize..6,
            nq in 1usize..8,
            depth in 1usize..5000,
        ) {
            let all = entries(seed, rows, per_row, nq);
            let mut g = Gather::new(depth);
            let mut peak = 0;
            for q in &all {
                for &(r, s) in q {
                    g.offer(s, r);
                    peak = peak.max(g.heap_bytes());
                }
                g.end_query();
                peak = peak.max(g.heap_bytes());
            }
            let bound = Gather::bytes_for(depth, nq, rows as usize * per_row);
            prop_assert!(peak <= bound, "{} > {}", peak, bound);
        }
    }

    #[test]
    fn gather_keeps_each_rows_best_element_and_fills_the_rest() {
        let mut g = Gather::new(2);
        // Query vector 0: rows 1 (0.9 and 0.5), 2 (0.7), 3 (0.2).
        for (s, r) in [(0.5, 1), (0.9, 1), (0.7, 2), (0.2, 3)] {
            g.offer(s, r);
        }
        g.end_query();
        // Query vector 1: row 3 (0.8), row 2 (0.1).
        for (s, r) in [(0.8, 3), (0.1, 2)] {
            g.offer(s, r);
        }
        g.end_query();
        // Fills: q0 keeps rows 1 and 2, fill 0.7; q1 keeps 3 and 2, fill 0.1.
        assert!((g.floor() - 0.8).abs() < 1e-6);
        let got = g.finish();
        // Row 3: fill 0.7 + 0.8 = 1.5; row 1: 0.9 + fill 0.1 = 1.0; row 2: 0.7 + 0.1.
        assert_eq!(got.iter().map(|e| e.1).collect::<Vec<_>>(), vec![3, 1, 2]);
        assert!((got[0].0 - 1.5).abs() < 1e-6);
        assert!((got[1].0 - 1.0).abs() < 1e-6);
        assert!((got[2].0 - 0.8).abs() < 1e-6);
    }

    #[test]
    fn a_query_vector_that_sees_nothing_does_not_break_the_order() {
        let mut g = Gather::new(4);
        g.offer(0.5, 1);
        g.offer(0.3, 2);
        g.end_query();
        g.end_query();
        let got = g.finish();
        assert_eq!(got.iter().map(|e| e.1).collect::<Vec<_>>(), vec![1, 2]);
        assert!(got.iter().all(|e| e.0.is_finite()));
    }

    proptest! {
        /// Batches of any sizes, with peeks in between, take the rows in
        /// exactly the sorted order.
        #[test]
        fn best_first_takes_rows_in_sorted_order(
            ests in proptest::collection::vec(0u8..20, 0..200),
            batches in proptest::collection::vec(1usize..30, 1..40),
        ) {
            let rows: Vec<(f32, u64)> = ests.iter().enumerate().map(|(i, &e)| (e as f32, i as u64)).collect();
            let mut want = rows.clone();
            want.sort_by(best_first);
            let mut bf = BestFirst::new(rows);
            let mut got = Vec::new();
            for b in batches.iter().cycle().take(400) {
                if bf.is_empty() {
                    break;
                }
                let p = bf.peek();
                let t = bf.take(*b).to_vec();
                prop_assert_eq!(p, Some(t[0].0));
                got.extend(t);
            }
            prop_assert_eq!(bf.peek(), None);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_batch_takes_every_row_of_its_last_estimate() {
        // Rows 0..10 share estimate 5.0, row 10 has 9.0, rows 11.. 1.0.
        let rows: Vec<(f32, u64)> = (0..10)
            .map(|r| (5.0, r))
            .chain([(9.0, 10)])
            .chain((11..20).map(|r| (1.0, r)))
            .collect();
        let mut b = BestFirst::new(rows);
        let got: Vec<u64> = b.take_batch(3).iter().map(|e| e.1).collect();
        assert_eq!(got.len(), 11, "{got:?}");
        assert_eq!(got[0], 10);
        assert_eq!(b.peek(), Some(1.0));
        assert_eq!(b.take_batch(2).len(), 9);
        assert!(b.is_empty());
    }

    #[test]
    fn offering_distances_is_offering_negated_scores() {
        let e = entries(7, 50, 3, 3);
        let (mut a, mut b) = (Gather::new(20), Gather::new(20));
        for q in &e {
            for &(r, s) in q {
                a.offer(s, r);
            }
            let d: Vec<f32> = q.iter().map(|x| -x.1).collect();
            b.offer_distances(&d, |i| q[i].0);
            a.end_query();
            b.end_query();
        }
        assert_eq!(a.floor(), b.floor());
        assert_eq!(a.finish(), b.finish());
    }

    proptest! {
        /// With exact scores, a row's estimate is never below its MaxSim over
        /// the offered entries (an upper bound), equals it for a row every
        /// query vector kept, and no row outside the result beats the floor.
        #[test]
        fn gather_estimates_bound_maxsim(
            seed in any::<u64>(),
            rows in 1u64..60,
            per_row in 1usize..5,
            nq in 1usize..5,
            depth in 1usize..40,
        ) {
            let e = entries(seed, rows, per_row, nq);
            let mut g = Gather::new(depth);
            g.cap = g.depth.max(8); // trim often
            for q in &e {
                for &(r, s) in q {
                    g.offer(s, r);
                }
                g.end_query();
            }
            let floor = g.floor();
            let got = g.finish();
            let exact = |r: u64| -> f32 {
                e.iter()
                    .map(|q| q.iter().filter(|x| x.0 == r).map(|x| x.1).fold(f32::NEG_INFINITY, f32::max))
                    .sum()
            };
            for &(est, r) in &got {
                prop_assert!(est >= exact(r) - 1e-4, "row {} est {} exact {}", r, est, exact(r));
            }
            for r in 0..rows {
                if !got.iter().any(|x| x.1 == r) {
                    prop_assert!(floor >= exact(r) - 1e-4);
                }
            }
            if depth >= rows as usize * per_row {
                // Every entry kept for every query vector: estimates are exact.
                for &(est, r) in &got {
                    prop_assert!((est - exact(r)).abs() < 1e-4);
                }
            }
            for w in got.windows(2) {
                prop_assert!(w[0].0 >= w[1].0);
            }
        }
    }

    /// A query vector offered more rows than its depth marks the gather
    /// truncated (a deeper one finds more rows); one offered at most its
    /// depth of rows (however many entries each), or only NaN scores beyond
    /// it, does not.
    #[test]
    fn a_gather_says_when_it_dropped_entries() {
        let mut g = Gather::new(3);
        for r in 0..3u64 {
            g.offer(r as f32, r);
        }
        g.offer(f32::NAN, 9);
        // More entries than the depth, of rows already offered.
        g.offer(0.5, 0);
        g.offer(-1.0, 2);
        g.end_query();
        assert!(!g.truncated());
        for r in 0..4u64 {
            g.offer(r as f32, r);
        }
        g.end_query();
        assert!(g.truncated());
        // A row neither kept scores at most the floor: the sum of the fills
        // (0.5, the lowest best entry kept by the first, row 0's; 1, the
        // lowest kept of the second).
        assert_eq!(g.floor(), 1.5);
    }
}
