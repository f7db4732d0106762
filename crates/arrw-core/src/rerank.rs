//! Exact order across re-rank batches.
//!
//! An IVF-PQ scan knows each candidate's *estimated* distance (from its PQ code)
//! and learns the *exact* distance only by reading the row. Re-ranking the best
//! `rerank` estimates and returning them in exact order is right for the first
//! rows, but a query that wants more (a `WHERE` clause that rejects most rows, a
//! `LIMIT` above `rerank`) would then get batch after batch, each in order within
//! itself: a row whose estimate put it in the third batch comes after every row
//! of the second, however close it truly is.
//!
//! [`OrderedRerank`] holds re-ranked rows in exact order and hands one out only
//! when no candidate still waiting for re-ranking is likely to be closer: when its
//! exact distance is at most the best waiting estimate minus a **margin**. The
//! margin is what estimates have been seen to exceed exact distances by: by
//! default the largest `estimate − exact` over the rows re-ranked so far, or
//! their mean plus 4 standard deviations if that is more (or a lower quantile
//! of them, see [`OrderedRerank::new`] and [`OrderedRerank::margin`]). When the candidates run out,
//! the rest comes out in exact order.
//!
//! For a small `LIMIT` with no filter this changes nothing measurable: the
//! nearest rows are far below the next estimate, so they leave after the first
//! batch. Deeper rows wait until enough candidates are re-ranked to vouch for them.
//!
//! **With a refine code** ([`OrderedRerank::with_refine`]) there is a stage in
//! between: coarse candidates are first *refined* (a second, finer estimate
//! read from the index, `crate::refine`) and wait, ordered by that estimate, to
//! be re-ranked. Each stage has its own margin: a refined candidate may be
//! closer than its fine estimate by the largest `fine − exact` seen, a coarse
//! one closer than its coarse estimate by the largest `coarse − exact` seen or
//! the largest `coarse − fine` seen plus the fine margin, whichever is larger.
//! A row leaves when no candidate of either stage (and no unprobed list) could
//! be closer; otherwise the stage whose bound is lowest is advanced. Most
//! coarse candidates are thereby ruled out by their fine estimate alone,
//! without reading their rows.

use crate::spill::{Record, SpillHeap, Store};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

/// Default quantile of the estimate errors used as the margin: the largest error
/// seen, so that rows of the probed lists come out in exact order unless an
/// estimate overshoots by more than any seen before.
pub const DEFAULT_QUANTILE: f64 = 1.0;

/// Default rank, among how far re-ranked rows lay beyond their list's centroid
/// distance (lowest first), of the list slack: the slack by which an unprobed
/// list is judged able to hold a closer row (see [`OrderedRerank::list_slack`]).
/// Which lists are probed is an approximation in any IVF index; this decides
/// how many a scan probes past its first `probes`.
///
/// A rank, not a quantile: a quantile of the slacks seen rises with the rows
/// a scan has learnt from, and how many that is was not the query's doing.
/// Up to 2026-12-07 the slack was the 1st percentile (at most the 16th lowest):
/// a first batch of `ivfpq.rerank` = 100 rows taught the 2nd lowest, one of
/// 400 the 5th, so raising `ivfpq.rerank` probed fewer lists and lowered
/// recall (dev-sift, 40 queries, `LIMIT 10`: 0.968 at 100, 0.930 at 200,
/// 0.915 at 400, the recall of `iterative_scan = off`; hunt-149), and a deep
/// scan's ever farther rows relaxed it. A rank only falls as rows are added,
/// so more re-ranking never probes fewer lists. The 2nd lowest keeps what
/// the default first batch taught: 200 held-out queries at the defaults
/// (before → after, same per-query time within noise): dev-sift recall@10
/// 0.958 → 0.966 and `LIMIT 100` 0.985 → 0.994; MiniLM 0.978 → 0.980 and
/// 0.983 → 0.994; now the same at `rerank` 100, 400 and 10,000. Deep scans
/// probe more: a 1% filter forced through the MiniLM index 0.994 → 1.000 at
/// 1.15× the time (15–18 → 18–19 ms), a 10% one 0.985 → 0.996 at the same
/// time; a `LIMIT 100` scores ~30% more codes (0.984 → 0.994), a `LIMIT 10`
/// 3–6% more (`ivfpq.profile`). The 3rd lowest
/// lost dev-sift `LIMIT 10` recall (0.964 → 0.951); offline
/// (`examples/filtered_eval.rs --list-rank`) the 2nd matched the 1st
/// percentile's lists at the default first batch.
pub const DEFAULT_LIST_RANK: usize = 2;

/// Highest list slack rank a scan may ask for: each [`Samples`] keeps that many
/// of its lowest observations.
pub const MAX_LIST_RANK: usize = 16;

/// Standard deviations above the mean of fine errors that the fine margin
/// covers at least (see [`OrderedRerank::fine_margin`]).
pub const FINE_SIGMAS: f64 = 4.0;

/// Most error samples kept (a uniform sample of all re-ranked rows beyond that).
const MAX_SAMPLES: usize = 4096;

/// Keys a [`Samples`] makes room for at its first observation.
const COUNTED_FIRST: usize = 256;

/// Distinct errors a stage's margin must have learnt from before it bounds
/// anything (see [`OrderedRerank::next`]): below that, its candidates are
/// taken to be any distance closer, so the stage is advanced before a row may
/// leave. A table of 50 vectors stored 100 times each gave a first batch of
/// one or two vectors' copies, so one or two distinct errors, whose spread
/// is nothing: `LIMIT 1` missed the nearest row in 18 of 200 queries with
/// every list probed (hunt-113). Eight errors give the mean plus
/// [`FINE_SIGMAS`] deviations something to stand on; real rows give a
/// `LIMIT 10`'s first batch several times that.
pub const MIN_DISTINCT_ERRORS: u64 = 8;

use crate::ivf::order_key as key;

/// Re-ranked rows waiting to be returned in exact order (see the module docs).
#[derive(Debug)]
pub struct OrderedRerank<T: Record> {
    /// Keyed by the exact distance, then its [`tie`](OrderedRerank::add_tied)
    /// (both as [`key`]s, in one `u64`), then the row. In memory, or beyond
    /// [`OrderedRerank::spill_to`]'s cap partly in a store.
    ready: SpillHeap<Ready<T>>,
    /// Refined candidates waiting for re-ranking, by fine estimate (with their
    /// coarse estimate).
    refined: BinaryHeap<Reverse<(u32, T, OrdF32, OrdF32)>>,
    errors: Samples,
    /// `fine − exact` of re-ranked refined rows.
    fine_errors: Samples,
    /// Largest `coarse − fine` seen.
    coarse_fine: f32,
    /// Every `coarse − fine` seen (a sample), for the floor of
    /// [`OrderedRerank::with_coarse_fine_sigmas`].
    coarse_fine_errors: Samples,
    /// That floor's standard deviations (None: no floor).
    coarse_fine_sigmas: Option<f64>,
    slacks: Samples,
    /// `fine − centroid distance` of refined candidates.
    fine_slacks: Samples,
    quantile: f64,
    list_rank: usize,
    refine: bool,
    /// `coarse − exact` of the rows this scan re-ranked from their coarse
    /// estimate alone, having no usable refine code
    /// ([`OrderedRerank::add_unrefined_tied`]).
    unrefined_errors: Samples,
    /// Rows that must all be settled before the first of them leaves
    /// ([`OrderedRerank::hold_first`]; 0 once the first has left, or when
    /// the scan was not told how many rows it will give).
    hold: usize,
    /// While `hold` is set: the keys of the `hold` nearest rows re-ranked so
    /// far (a max-heap, so its top is the `hold`-th nearest).
    held: BinaryHeap<u32>,
    /// Rows the current (or last) hold held, and rows that have left since
    /// it began ([`OrderedRerank::hold_again_up_to`]).
    hold_span: usize,
    left_since_hold: usize,
    /// Most rows a hold that begins again may hold (0: none begins again).
    rehold_cap: usize,
    /// The key of the farthest row that has left, and rows found nearer
    /// than it since ([`OrderedRerank::late`]).
    farthest_left: Option<u64>,
    late: u64,
    /// With [`OrderedRerank::with_near_spread`]: the errors of the nearest
    /// rows re-ranked so far (see [`NearErrors`]).
    near: Option<NearErrors>,
    /// With [`OrderedRerank::with_centered_errors`]: the estimates err by
    /// nothing on average, and a spread is taken around zero.
    centered: bool,
    /// With [`OrderedRerank::set_ceiling`]: the distance no row the scan's
    /// reader keeps reaches, and whether a row at it is kept.
    ceiling: Option<(f32, bool)>,
}

/// The estimate errors (`estimate − exact`) of the `cap` rows with the
/// smallest exact distances seen so far, and their mean plus
/// [`FINE_SIGMAS`] standard deviations (cached until the set changes). See
/// [`OrderedRerank::with_near_spread`].
#[derive(Clone, Debug)]
struct NearErrors {
    cap: usize,
    /// Standard deviations the spread adds to the mean.
    sigmas: f64,
    /// (key of the exact distance, error), a max-heap by distance: its top is
    /// the farthest of the kept rows.
    rows: BinaryHeap<(u32, OrdF32)>,
    cached: Option<f32>,
}

impl NearErrors {
    fn new(cap: usize, sigmas: f64) -> Self {
        NearErrors {
            cap: cap.max(2),
            sigmas: if sigmas.is_finite() {
                sigmas.max(0.0)
            } else {
                FINE_SIGMAS
            },
            rows: BinaryHeap::new(),
            cached: None,
        }
    }

    fn add(&mut self, exact: f32, err: f32) {
        if !err.is_finite() {
            return;
        }
        let k = key(exact);
        // Copies of one vector shared by many rows (a document's chunk that
        // thousands of documents repeat) give one (distance, error) pair again
        // and again: counted each time they filled the set, took its spread to
        // nothing, and rows whose estimates erred more were judged by that
        // one error (5,000 documents, nine in ten drawn from a pool of 30
        // shared 8-d vectors, queried with one of them, every list probed:
        // 9 of 30 `LIMIT 10` answers passed over a nearer row; 1–3 of 30
        // since). A repeat says nothing new: it counts once, as in `Samples`.
        if self
            .rows
            .iter()
            .any(|&(rk, re)| rk == k && re.0.to_bits() == err.to_bits())
        {
            return;
        }
        if self.rows.len() < self.cap {
            self.rows.push((k, OrdF32(err)));
        } else if self.rows.peek().is_some_and(|&(top, _)| k < top) {
            self.rows.pop();
            self.rows.push((k, OrdF32(err)));
        } else {
            return;
        }
        self.cached = None;
    }

    /// Mean plus `sigmas` standard deviations of the kept errors (None below
    /// two).
    fn spread(&mut self) -> Option<f32> {
        if self.rows.len() < 2 {
            return None;
        }
        if self.cached.is_none() {
            let n = self.rows.len() as f64;
            let mean = self.rows.iter().map(|e| f64::from(e.1 .0)).sum::<f64>() / n;
            let var = self
                .rows
                .iter()
                .map(|e| (f64::from(e.1 .0) - mean).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            self.cached = Some((mean + self.sigmas * var.sqrt()) as f32);
        }
        self.cached
    }
}

/// See [`OrderedRerank::hold_bar`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldBar(u32);

impl HoldBar {
    /// Whether a row at this exact distance would count among the held rows
    /// (a row as far as the farthest held one would not: it does not
    /// displace it).
    pub fn admits(&self, exact: f32) -> bool {
        self.0 == u32::MAX || key(exact) < self.0
    }
}

/// What the scan should do next (see [`OrderedRerank::next`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next<T> {
    /// Hand out this row (exact distance, id).
    Row(f32, T),
    /// Re-rank the next batch of candidates (with a refine code: of refined
    /// candidates, [`OrderedRerank::pop_refined`]).
    Rerank,
    /// Refine the next batch of coarse candidates (only with a refine code).
    Refine,
    /// Probe the next list.
    Probe,
    /// Nothing is left.
    Done,
}

/// A bounded uniform sample of observations with a cached quantile, and the
/// largest observation of all (not only of the sample).
#[derive(Clone, Debug)]
struct Samples {
    v: Vec<f32>,
    seen: u64,
    rng: u64,
    max: f32,
    /// Mean and sum of squared deviations of every observation (Welford).
    mean: f64,
    m2: f64,
    /// The last quantile computed, the quantile it was for, and `seen` then.
    cached: Option<(f32, f64, u64)>,
    /// The [`MAX_LIST_RANK`] lowest observations of all, ascending.
    lowest: Vec<f32>,
    /// The keys of every observation counted, up to [`MAX_SAMPLES`] of them
    /// ([`Samples::add_keyed`] skips a repeat of any; past that, of the last).
    /// Hashed by one multiplication, not the standard library's SipHash:
    /// every refined candidate adds a slack, and SipHash with the set's
    /// regrowth was ~3% of a `LIMIT 10` scan's backend time on 384-d rows
    /// (perf). At most [`MAX_SAMPLES`] keys, so keys made to collide cost a
    /// bounded amount.
    counted: HashSet<u64, crate::maxsim::BuildRowHasher>,
    /// The last observation's key.
    last: Option<u64>,
}

impl Samples {
    fn new(seed: u64) -> Self {
        Samples {
            v: Vec::new(),
            seen: 0,
            rng: seed,
            max: f32::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
            cached: None,
            lowest: Vec::new(),
            counted: HashSet::default(),
            last: None,
        }
    }

    /// Adds `e`, counted once however often it repeats.
    fn add(&mut self, e: f32) {
        self.add_keyed(e, u64::from(e.to_bits()));
    }

    /// Adds the error `estimate − exact` of a re-ranked row, counted once
    /// for every row of the same estimate whose error is within a thousandth
    /// of the estimate of it. Near-copies (copies with noise of 1e-5) share
    /// their code, so their estimate, and differ in error by their noise:
    /// distinct to [`Samples::add`], they passed for [`MIN_DISTINCT_ERRORS`]
    /// observations in one batch of one vector's copies, with no spread,
    /// and 8 of 200 `LIMIT 1` answers were another vector's row with every
    /// list probed (hunt-117). Distinct rows that share an estimate (4-bit
    /// sums collide) differ in error by far more than that, and still count.
    fn add_error(&mut self, estimate: f32, exact: f32) {
        let e = estimate - exact;
        let grain = 1e-3 * estimate.abs().max(f32::MIN_POSITIVE);
        let bucket = (e / grain).round();
        let bucket = if bucket.is_finite() { bucket as i64 } else { 0 };
        let key = (u64::from(estimate.to_bits()) << 32) ^ (bucket as u64);
        self.add_keyed(e, key);
    }

    /// Adds `e` unless an observation of the same `key` was counted.
    fn add_keyed(&mut self, e: f32, key: u64) {
        if !e.is_finite() {
            return;
        }
        // Copies of one vector (a placeholder embedding stored by the
        // thousand) are re-ranked one after another and give one error again
        // and again: counted every time, they pulled the mean to it and the
        // spread to nothing, and rows whose estimates erred otherwise were
        // judged by that margin (7,000 copies: 12 of 41 `LIMIT 10` answers
        // missed a row). A repeat says nothing new: it counts once. Copies
        // of several vectors come interleaved (a batch is read in table
        // order), so any repeat is skipped, not only of the last (hunt-113);
        // distinct rows' errors almost never share a key.
        if self.counted.len() < MAX_SAMPLES {
            if self.counted.capacity() == 0 {
                // Room for what a short scan counts at once: grown from
                // nothing, the set rehashed seven times on the way to a
                // `LIMIT 10`'s ~200 refined candidates (perf: ~1%).
                self.counted.reserve(COUNTED_FIRST);
            }
            if !self.counted.insert(key) {
                return;
            }
        } else if self.last == Some(key) {
            return;
        }
        self.last = Some(key);
        if self.lowest.len() < MAX_LIST_RANK || self.lowest.last().is_some_and(|&l| e < l) {
            let at = self.lowest.partition_point(|&x| x <= e);
            self.lowest.insert(at, e);
            self.lowest.truncate(MAX_LIST_RANK);
        }
        self.seen += 1;
        self.max = self.max.max(e);
        let d = f64::from(e) - self.mean;
        self.mean += d / self.seen as f64;
        self.m2 += d * (f64::from(e) - self.mean);
        if self.v.len() < MAX_SAMPLES {
            self.v.push(e);
            return;
        }
        // Reservoir sampling (SplitMix64 step).
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let j = ((z ^ (z >> 31)) % self.seen) as usize;
        if j < MAX_SAMPLES {
            self.v[j] = e;
        }
    }

    /// The mean plus `z` standard deviations of every observation (None
    /// below two).
    fn mean_plus(&self, z: f64) -> Option<f32> {
        (self.seen >= 2).then(|| (self.mean + z * (self.m2 / (self.seen - 1) as f64).sqrt()) as f32)
    }

    /// `z` root mean squares of every observation, deviations taken from zero
    /// (None below two): `z · sqrt(mean² + variance)`.
    fn zero_plus(&self, z: f64) -> Option<f32> {
        (self.seen >= 2).then(|| {
            let var = self.m2 / (self.seen - 1) as f64;
            (z * (self.mean * self.mean + var).sqrt()) as f32
        })
    }

    /// The `k`-th lowest observation of all (1: the lowest), or the highest
    /// of the kept lowest when fewer were seen; None without observations.
    /// `k` is at most [`MAX_LIST_RANK`].
    fn kth_lowest(&self, k: usize) -> Option<f32> {
        let i = k
            .clamp(1, MAX_LIST_RANK)
            .min(self.lowest.len())
            .checked_sub(1)?;
        self.lowest.get(i).copied()
    }

    /// The `q` quantile, None without observations. `q = 1` is the largest
    /// observation ever added. Other quantiles are recomputed (a selection over
    /// the sample) only once the observations have grown by an eighth since the
    /// last computation: a scan asks after every batch, and a quantile of
    /// thousands of samples barely moves with a few more, while the selection
    /// took ~5% of a deep scan's time when it ran every batch.
    fn quantile(&mut self, q: f64) -> Option<f32> {
        if self.v.is_empty() {
            return None;
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        if let Some((x, cq, at)) = self.cached {
            if cq == q && self.seen < at + (at / 8).max(1) {
                return Some(x);
            }
        }
        let n = self.v.len();
        let i = (((n - 1) as f64) * q).round() as usize;
        let (_, x, _) = self
            .v
            .select_nth_unstable_by(i.min(n - 1), |a, b| a.total_cmp(b));
        let x = *x;
        self.cached = Some((x, q, self.seen));
        Some(x)
    }
}

/// An `f32` carried along in a heap entry (never compared: the key decides).
#[derive(Clone, Copy, Debug)]
struct OrdF32(f32);

impl PartialEq for OrdF32 {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// A re-ranked row waiting: its key (exact distance and tie), the row, its
/// exact distance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ready<T>(u64, T, OrdF32);

impl<T: Record> Record for Ready<T> {
    const BYTES: usize = 12 + T::BYTES;
    fn put(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.0.to_le_bytes());
        out[8..12].copy_from_slice(&self.2 .0.to_le_bytes());
        self.1.put(&mut out[12..]);
    }
    fn get(b: &[u8]) -> Self {
        let k = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let d = f32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        Ready(k, T::get(&b[12..]), OrdF32(d))
    }
}

impl<T: Record> OrderedRerank<T> {
    /// Empty, with the margin at the `quantile` (0..=1) of observed estimate
    /// errors and the list slack the `list_rank`-th lowest observed slack
    /// (1 ..= [`MAX_LIST_RANK`]; see [`DEFAULT_LIST_RANK`]).
    pub fn new(quantile: f64, list_rank: usize) -> Self {
        OrderedRerank {
            ready: SpillHeap::new(),
            refined: BinaryHeap::new(),
            errors: Samples::new(0x5eed_1234_abcd_ef01),
            fine_errors: Samples::new(0xf1ae_5eed_0bad_cafe),
            coarse_fine: f32::NEG_INFINITY,
            coarse_fine_errors: Samples::new(0xc0a5_e0f1_4e5e_ed01),
            coarse_fine_sigmas: None,
            slacks: Samples::new(0x51ac_4321_dcba_10fe),
            fine_slacks: Samples::new(0x5eed_f1ae_51ac_0001),
            quantile: quantile.clamp(0.0, 1.0),
            list_rank: list_rank.clamp(1, MAX_LIST_RANK),
            refine: false,
            unrefined_errors: Samples::new(0x0bad_c0de_5eed_0002),
            hold: 0,
            held: BinaryHeap::new(),
            hold_span: 0,
            left_since_hold: 0,
            rehold_cap: 0,
            farthest_left: None,
            late: 0,
            near: None,
            centered: false,
            ceiling: None,
        }
    }

    /// Tells the queue that its reader keeps only rows nearer than `c` (at
    /// most `c` when `inclusive`): a filter `distance < c` on the rows the
    /// scan hands out (`WHERE embedding <=> $1 < 0.3 ORDER BY embedding <=>
    /// $1`). Once nothing left to explore can hold a row below it (the
    /// frontier of [`OrderedRerank::next`] is past it), the scan explores no
    /// further: the rows re-ranked so far leave in exact order and then it is
    /// done. Without it such a scan, asked for more rows than lie below `c`,
    /// explored every list and re-ranked every row of the table, each only to
    /// be rejected (75,000 rows for one kept, 6× a sequential scan,
    /// hunt-160). `c` is in the queue's distances; the glue allows for the
    /// last bits by which they and the reader's may differ.
    pub fn set_ceiling(&mut self, c: f32, inclusive: bool) {
        self.ceiling = (!c.is_nan()).then_some((c, inclusive));
    }

    /// The estimates' errors are centred on zero over all rows (inner
    /// product and cosine: `q · (r − r̂)`, whose mean is zero for codewords
    /// that are their cells' means, and for rounding to the nearest level):
    /// the spread that bounds an error not yet seen ([`FINE_SIGMAS`] of
    /// them) is then taken around zero, not around the mean of the errors
    /// seen. Those are the errors of the rows re-ranked first, the ones
    /// whose estimates ranked best, which is where an estimate that erred low
    /// lands: their mean is below zero and their spread narrow, while a row
    /// whose estimate erred high waits behind the margin they give. With
    /// every list probed, `vector_ip_ops` on 3,000 16-d rows missed a row
    /// (by up to 3.7 in distance) in 6 of 200 `LIMIT 10` answers (hunt-67);
    /// L2 estimates err low on average by the code's squared error, and stay
    /// with the mean. Called on a fresh queue.
    pub fn with_centered_errors(mut self) -> Self {
        self.centered = true;
        self
    }

    /// [`FINE_SIGMAS`] standard deviations of `s` beyond its mean, or, with
    /// [`OrderedRerank::with_centered_errors`], beyond zero, the deviations
    /// taken around zero.
    fn spread(&self, s: &Samples) -> Option<f32> {
        if self.centered {
            s.zero_plus(FINE_SIGMAS)
        } else {
            s.mean_plus(FINE_SIGMAS)
        }
    }

    /// The margin is also at least the mean plus [`FINE_SIGMAS`] standard
    /// deviations of the errors of the `rows` nearest rows re-ranked so far
    /// (by exact distance), whatever the quantile says. For estimates whose
    /// error grows with nearness, such as MaxSim's (the codes underestimate
    /// large inner products, and a far row's estimate is a loose bound built
    /// from fills): the near rows, the ones being handed out, err by more
    /// than the rows of the whole sample, and the rows re-ranked first are
    /// those whose estimates erred least (they rank by estimate). A quantile
    /// of every error, most of them far rows' negative ones, let a near row
    /// re-ranked late come out after farther rows (src/ivfpq/maxsim_scan.rs);
    /// a spread of every error is inflated by the far rows' loose bounds.
    /// Called on a fresh queue.
    pub fn with_near_spread(self, rows: usize) -> Self {
        self.with_near_spread_sigmas(rows, FINE_SIGMAS)
    }

    /// [`OrderedRerank::with_near_spread`] with the mean plus `sigmas`
    /// standard deviations (negative is 0, not finite [`FINE_SIGMAS`]): fewer
    /// than [`FINE_SIGMAS`] re-rank fewer rows, and hand a row out before a
    /// nearer one whose estimate erred by more (a scan that is told to trade
    /// exact order for speed).
    pub fn with_near_spread_sigmas(mut self, rows: usize, sigmas: f64) -> Self {
        self.near = Some(NearErrors::new(rows, sigmas));
        self
    }

    /// Keeps at most `cap` re-ranked rows in memory and the rest in sorted
    /// runs in `store` (`crate::spill`): how many rows wait is set by the
    /// data (every row whose estimate lies within the margin of the nearest
    /// waiting row's distance), not by any limit of the scan's. Called on a
    /// fresh queue.
    pub fn spill_to(&mut self, cap: usize, store: Box<dyn Store>) {
        self.ready.spill_to(cap, store);
    }

    /// Bytes a waiting row takes in memory (for the caller's `cap`).
    pub const READY_BYTES: usize = std::mem::size_of::<Ready<T>>();

    /// Rows written to the store so far ([`OrderedRerank::spill_to`]).
    pub fn spilled(&self) -> u64 {
        self.ready.written()
    }

    /// The queue is about to be dropped where its store must not be touched
    /// (`crate::spill::Store::abandon`).
    pub fn abandon_store(&mut self) {
        self.ready.abandon();
    }

    /// Records the estimate error of a re-ranked row (handed out or not).
    fn note_error(&mut self, estimate: f32, exact: f32) {
        self.errors.add_error(estimate, exact);
        if let Some(n) = self.near.as_mut() {
            n.add(exact, estimate - exact);
        }
    }

    /// Tells the scan that its first `rows` rows will all be taken (a `LIMIT`
    /// right above it): none of them leaves until the `rows`-th nearest
    /// re-ranked row could leave too, i.e. until no waiting candidate and no
    /// unprobed list is likely to hold a row closer than it.
    ///
    /// Without it the first row leaves as soon as it is settled, and the
    /// scan goes on to settle the next: the candidates and lists it explores
    /// for a deeper row were ruled out for the nearer ones by a margin and a
    /// list slack that are learnt as it goes, so a list probed only for the
    /// 60th row can hold a row closer than the 20th, which has left already
    /// (dev-sift, `LIMIT 100`, iterative scan on: 16 answers of 300 had a row
    /// out of order, 3 with iterative scan off). Settling all of them first
    /// does the same work in another order: every list and candidate a deeper
    /// row needs is explored before the first row leaves, so the rows it finds
    /// take their places among the others. Rows beyond `rows` leave as before.
    /// `rows` of 0 or 1 changes nothing; the glue caps it (the held rows wait
    /// in memory). Called on a fresh queue, before any row is added (the
    /// scans set it as they make their queue).
    pub fn hold_first(&mut self, rows: usize) {
        debug_assert!(self.ready.is_empty(), "hold_first on a queue with rows");
        self.hold = rows;
        self.held.clear();
        self.hold_span = rows;
        self.left_since_hold = 0;
    }

    /// Once the rows of a hold ([`OrderedRerank::hold_first`]) have all left
    /// and the scan is asked for another, holds again: twice as many rows as
    /// the last hold, at most `cap`, none of which leaves until the last of
    /// them could. The glue's hold is its guess of the rows the plan takes;
    /// when the executor drops rows the scan cannot judge (a join, a
    /// subquery, `SKIP LOCKED`) and asks past the held ones, it has shown the
    /// guess short, and the rows after the hold used to leave one by one as
    /// each was settled, by a margin and list slack still being learnt: a
    /// join to two of twenty categories, which cluster near some queries and
    /// pass far fewer rows there than their share of the table, had a row
    /// out of order in 7 of 200 `LIMIT 10` answers (pydoc-minilm, hunt-149).
    /// Called with `hold_first`, on a fresh queue; `cap` below 2 turns it off.
    pub fn hold_again_up_to(&mut self, cap: usize) {
        self.rehold_cap = cap;
    }

    /// Rows re-ranked after a row farther than them had left: they leave
    /// after it, out of exact order.
    ///
    /// Whether a row may leave is judged by a margin and a list slack learnt
    /// as the scan goes, so a list or candidate ruled out for one row can be
    /// explored for a deeper one and hold a row nearer than rows handed out
    /// already. A `LIMIT` that stops early misses such a row (an approximate
    /// index may); a scan read further, through a join or a filter it cannot
    /// check, or by a cursor, hands it out late. Leaving it out instead kept
    /// the order exact but lost rows every reader of the whole index must get
    /// (a cursor through a table, a `LIMIT` above its size: 1–36 of 30,000
    /// rows, hunt-151), so it is handed out and counted here
    /// (`ivfpq.profile`'s `late`).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Notes that the row of key `k` left: one more since the hold began,
    /// and the farthest yet if it is (see [`OrderedRerank::late`]).
    fn note_left(&mut self, k: u64) {
        self.left_since_hold += 1;
        self.farthest_left = self.farthest_left.max(Some(k));
    }

    /// Begins a hold of `rows` rows in the middle of a scan: the nearest
    /// `rows` rows waiting now are the first held.
    fn hold_again(&mut self, rows: usize) {
        self.hold = rows;
        self.hold_span = rows;
        self.left_since_hold = 0;
        self.held.clear();
        let mut nearest = Vec::with_capacity(rows.min(self.ready.len()));
        while nearest.len() < rows {
            match self.ready.pop() {
                Some(r) => nearest.push(r),
                None => break,
            }
        }
        for r in nearest {
            self.held.push((r.0 >> 32) as u32);
            self.ready.push(r);
        }
    }

    /// Counts a newly re-ranked row's key among the `hold` nearest.
    fn note_ready(&mut self, k: u32) {
        if self.hold <= 1 {
            return;
        }
        if self.held.len() < self.hold {
            self.held.push(k);
        } else if self.held.peek().is_some_and(|&top| k < top) {
            self.held.pop();
            self.held.push(k);
        }
    }

    /// While the first rows are held ([`OrderedRerank::hold_first`]): the bar
    /// a newly re-ranked row's exact distance must be below to count among
    /// the held rows (any row while fewer than `hold` are re-ranked). None
    /// once the hold has ended, or when there was none.
    ///
    /// Why a scan asks: a filter the executor checks on the rows handed out
    /// (not the scan) would let the hold count rows the filter then drops,
    /// so that the rows the `LIMIT` takes are not the ones held. A scan that
    /// checks its filter on every row under the bar before adding it, and
    /// [`OrderedRerank::learn`]s the rejected ones, holds exactly the rows the
    /// `LIMIT` will take; a row at or above the bar never enters the held
    /// rows (the bar only falls), so it may go unchecked. Computed once per
    /// batch, the bar is at or above each row's true bar: a few more rows are
    /// checked, none fewer.
    pub fn hold_bar(&self) -> Option<HoldBar> {
        if self.hold <= 1 {
            return None;
        }
        Some(HoldBar(if self.held.len() < self.hold {
            u32::MAX
        } else {
            *self.held.peek().expect("hold > 1 rows")
        }))
    }

    /// Whether the first rows are held ([`OrderedRerank::hold_first`]) and all
    /// of them are re-ranked, or they are leaving: the rows the `LIMIT` above
    /// takes are in hand. A scan whose candidates have run out asks this
    /// before it explores more (more lists) only to settle rows it already
    /// has: those rows are the nearest of what it has explored, in exact
    /// order, and exploring between two of them would move the frontier they
    /// leave by. False without a hold and once its rows have left: rows that
    /// leave one by one, with no `LIMIT` known to stop after them, had better
    /// wait for what further lists hold (a cursor through 14,942 documents had
    /// 16% more rows after a farther one when they left first).
    pub fn holds_enough(&self) -> bool {
        if self.hold > 1 {
            self.held.len() >= self.hold
        } else {
            self.hold_span > 1 && self.left_since_hold < self.hold_span
        }
    }

    /// The key that must be settled before a row may leave: the nearest
    /// row's, or while holding, the `hold`-th nearest's (None: fewer are
    /// re-ranked yet).
    fn gate(&self, nearest: u32) -> Option<u32> {
        if self.hold <= 1 {
            return Some(nearest);
        }
        (self.held.len() >= self.hold).then(|| *self.held.peek().expect("hold > 1 rows"))
    }

    /// The same, for a scan with a refine stage (see the module docs): coarse
    /// candidates are refined ([`Next::Refine`]) before they are re-ranked.
    pub fn with_refine(mut self) -> Self {
        self.refine = true;
        self
    }

    /// With a refine stage, the largest `coarse − fine` of the candidates
    /// refined so far (what the coarse margin adds the fine margin to) is also
    /// at least their mean plus `sigmas` standard deviations (0 or not finite:
    /// no floor, the default). Those candidates were refined because their
    /// coarse estimates erred low, so their largest error understates the
    /// rest's: on a query far from every row (all distances close together) a
    /// row whose coarse estimate overshot by more was never refined, and left
    /// out of a `LIMIT 10` with every list probed (2 of 300 on 768-d sentence
    /// pairs, hunt-155; 0 with 3 standard deviations, at 3× the candidates
    /// refined there and 1.25× on ordinary queries). Called on a fresh queue.
    pub fn with_coarse_fine_sigmas(mut self, sigmas: f64) -> Self {
        self.coarse_fine_sigmas = (sigmas.is_finite() && sigmas > 0.0).then_some(sigmas);
        self
    }

    /// Adds a refined candidate: its coarse and fine estimates, and its list's
    /// centroid distance. Its fine estimate less the fine margin stands in for
    /// the exact distance in the list slack (see [`OrderedRerank::list_slack`]).
    pub fn add_refined(&mut self, coarse: f32, fine: f32, list_distance: f32, id: T) {
        if (coarse - fine).is_finite() {
            self.coarse_fine = self.coarse_fine.max(coarse - fine);
            if self.coarse_fine_sigmas.is_some() {
                self.coarse_fine_errors.add_error(coarse, fine);
            }
        }
        self.fine_slacks.add(fine - list_distance);
        self.refined
            .push(Reverse((key(fine), id, OrdF32(coarse), OrdF32(fine))));
    }

    /// Refined candidates waiting.
    pub fn refined_len(&self) -> usize {
        self.refined.len()
    }

    /// Removes the `n` refined candidates with the best fine estimates, and
    /// every further one whose fine estimate equals the last of them (a batch
    /// never splits equal estimates: `ivf::tie_batch_limit`,
    /// `ivf::CandidatePool::pop_best`):
    /// `(coarse, fine, id)`, best first.
    pub fn pop_refined(&mut self, n: usize) -> Vec<(f32, f32, T)> {
        let mut out = Vec::with_capacity(n.min(self.refined.len()));
        let mut last = None;
        loop {
            let tie = out.len() < crate::ivf::tie_batch_limit(n)
                && matches!((self.refined.peek(), last), (Some(Reverse((k, ..))), Some(l)) if *k == l);
            if out.len() >= n && !tie {
                break;
            }
            match self.refined.pop() {
                Some(Reverse((k, id, c, f))) => {
                    last = Some(k);
                    out.push((c.0, f.0, id));
                }
                None => break,
            }
        }
        out
    }

    /// Adds a re-ranked row that was refined first: as [`OrderedRerank::add`],
    /// and its fine estimate teaches the fine margin.
    pub fn add_refined_exact(&mut self, coarse: f32, fine: f32, exact: f32, id: T) {
        self.add_refined_exact_tied(coarse, fine, exact, 0, id)
    }

    /// [`OrderedRerank::add_refined_exact`] with a tie (see
    /// [`OrderedRerank::add_tied`]).
    pub fn add_refined_exact_tied(&mut self, coarse: f32, fine: f32, exact: f32, tie: i32, id: T) {
        self.fine_errors.add_error(fine, exact);
        // Its slack was sampled when it was refined.
        self.push_ready(exact, tie, id);
        self.errors.add_error(coarse, exact);
    }

    /// Queues a re-ranked row by (exact, tie).
    fn push_ready(&mut self, exact: f32, tie: i32, id: T) {
        let k = (u64::from(key(exact)) << 32) | u64::from(crate::ivf::tie_key(tie));
        if self.farthest_left.is_some_and(|l| k < l) {
            // Found too late: see `OrderedRerank::late`.
            self.late += 1;
        }
        self.ready.push(Ready(k, id, OrdF32(exact)));
        self.note_ready(key(exact));
    }

    /// Adds a row re-ranked from its coarse estimate alone because it had no
    /// usable refine code (a row far outside the range the code learnt, such
    /// as one inserted after the build with values the training never saw):
    /// as [`OrderedRerank::add_tied`], and its coarse error is also kept apart.
    /// Such rows' coarse estimates can err by far more than the refined rows'
    /// the coarse margin is learnt from, and the ones not yet met by more than
    /// any met so far: the coarse margin is also at least the mean plus
    /// [`FINE_SIGMAS`] standard deviations of *their* errors. (A `LIMIT 10`
    /// with every list probed missed such rows: 78 of 100 answers exact on
    /// 32-d rows trained on [0, 1] with new rows in [1, 2].)
    ///
    /// Their errors alone, not every coarse error: the 4σ of every row's
    /// coarse error is far wider than the refined rows' largest, and applied
    /// from the first such row met it made the rest of the scan refine 3–4×
    /// the candidates. 18 of 75,000 rows of mean sentence vectors lay just
    /// outside the code's range with ordinary coarse errors, and a filtered
    /// `LIMIT 100` that met one refined ~41,000 candidates instead of ~12,000.
    pub fn add_unrefined_tied(
        &mut self,
        estimate: f32,
        exact: f32,
        tie: i32,
        list_distance: f32,
        id: T,
    ) {
        self.unrefined_errors.add_error(estimate, exact);
        self.add_tied(estimate, exact, tie, list_distance, id);
    }

    /// [`OrderedRerank::add_unrefined_tied`] for a row that will not be handed
    /// out (see [`OrderedRerank::learn`]).
    pub fn learn_unrefined(&mut self, estimate: f32, exact: f32, list_distance: f32) {
        self.unrefined_errors.add_error(estimate, exact);
        self.learn(estimate, exact, list_distance);
    }

    /// Learns from a refined row that was read from the table but will not be
    /// handed out (the query's own filter rejected it, see the scan's
    /// prefilter): its errors teach both margins as [`OrderedRerank::add_refined_exact`]
    /// would, and nothing waits.
    pub fn learn_refined(&mut self, coarse: f32, fine: f32, exact: f32) {
        self.fine_errors.add_error(fine, exact);
        self.errors.add_error(coarse, exact);
    }

    /// Ends the hold (see [`OrderedRerank::hold_first`]): the first row leaves.
    fn release(&mut self) {
        if self.hold > 0 {
            self.hold = 0;
            self.held = BinaryHeap::new();
        }
    }

    /// How far below its fine estimate a refined candidate's exact distance may
    /// lie: the largest `fine − exact` seen, or their mean plus
    /// [`FINE_SIGMAS`] standard deviations if that is larger (at least 0).
    /// Few refined rows are re-ranked (a `LIMIT 10` needs ~20), and the
    /// largest of so few errors understates how far the next ones can go; a
    /// fine error is a sum of many small per-dimension errors, close to normal.
    pub fn fine_margin(&mut self) -> f32 {
        let max = self.fine_errors.quantile(1.0).unwrap_or(0.0);
        let spread = self.spread(&self.fine_errors).unwrap_or(0.0);
        max.max(spread).max(0.0)
    }

    /// Rows re-ranked from the table so far (handed out or not).
    pub fn reranked(&self) -> u64 {
        self.errors.seen
    }

    /// Rows re-ranked and not yet handed out.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    /// True when no re-ranked row waits.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// Adds a re-ranked row: its estimate, its exact distance, and the distance
    /// from the query to its list's centroid (all in the space of the exact
    /// distance, see `ivf::estimate_as_distance`).
    pub fn add(&mut self, estimate: f32, exact: f32, list_distance: f32, id: T) {
        self.add_tied(estimate, exact, 0, list_distance, id)
    }

    /// [`OrderedRerank::add`] for a row whose exact distance is known more
    /// finely than an `f32`: `tie` orders rows of one `f32` distance (the
    /// glue passes what rounding the `f64` distance to `f32` dropped, so rows
    /// leave in the order of the `f64` the SQL operator returns). Cosine
    /// distances are computed in `f64`; ordered by their `f32` roundings
    /// alone, two rows 5e-9 apart left in the order of their ids (2 of 20
    /// `LIMIT 1000` queries had a pair out of order).
    pub fn add_tied(&mut self, estimate: f32, exact: f32, tie: i32, list_distance: f32, id: T) {
        self.push_ready(exact, tie, id);
        self.note_error(estimate, exact);
        self.slacks.add(exact - list_distance);
    }

    /// Learns from a row that was read from the table but will not be handed
    /// out (rejected by the query's own filter): its error and list slack count
    /// as for [`OrderedRerank::add`], and nothing waits.
    pub fn learn(&mut self, estimate: f32, exact: f32, list_distance: f32) {
        self.note_error(estimate, exact);
        self.slacks.add(exact - list_distance);
    }

    /// How far below its estimate a waiting candidate's exact distance may lie:
    /// the `quantile` of the signed errors `estimate - exact` seen so far (at
    /// least 0). At quantile 1 (the largest error) and without a refine stage,
    /// also at least their mean plus [`FINE_SIGMAS`] standard deviations, as
    /// for the fine margin: the largest error seen understates the next ones.
    /// (With a refine stage, the mean plus [`FINE_SIGMAS`] standard deviations
    /// of the rows re-ranked without their refine code only:
    /// [`OrderedRerank::add_unrefined_tied`].)
    /// 8-d rows in batches of 10 showed errors up to 2.2 and the next
    /// candidate's was 4.9 (two rows left ahead of it; 4 σ of those errors
    /// was 6.0). On SIFT (300 queries, iterative scan) the largest alone left
    /// 156 `LIMIT 100` answers out of order, by up to 45 in distance; with 4 σ,
    /// 6, at twice the rows re-ranked (LIMIT 10: 1,709 → 1,384 q/s; LIMIT
    /// 100: 964 → 646; recall unchanged). Measured again 2026-12-05 with the
    /// lists fixed (dev-sift, `LIMIT 100`, probes 20, iterative scan off, 300
    /// queries, so that only this margin decides): 4 σ 3 answers out of order
    /// (0.06 rows each, at most 0.5% farther than a row after them), 3 σ 55
    /// (2.1 rows, 4.5%) at 1.37× the q/s, the largest error alone 212 (12.5
    /// rows) at 1.55×. With a refine stage the coarse
    /// margin below already adds the fine margin (which has this rule) to the
    /// largest coarse − fine of every refined row; inflating this one too
    /// refined 185 → 323 rows a MiniLM LIMIT 10 for nothing, and so did (196 →
    /// 311, 2026-12-05) a joint bound in place of the sum below: the means of
    /// `coarse − fine` and `fine − exact` plus 4 σ of their sum, as if they
    /// were independent.
    pub fn margin(&mut self) -> f32 {
        let mut direct = self.errors.quantile(self.quantile).unwrap_or(0.0).max(0.0);
        if self.quantile >= 1.0 {
            let floor = if self.refine {
                self.spread(&self.unrefined_errors)
            } else {
                self.spread(&self.errors)
            };
            direct = direct.max(floor.unwrap_or(0.0));
        }
        if let Some(s) = self.near.as_mut().and_then(NearErrors::spread) {
            direct = direct.max(s);
        }
        if !self.refine {
            return direct;
        }
        if self.coarse_fine.is_finite() {
            // coarse − exact = (coarse − fine) + (fine − exact).
            let floor = self
                .coarse_fine_sigmas
                .and_then(|z| self.coarse_fine_errors.mean_plus(z));
            let coarse_fine = self.coarse_fine.max(floor.unwrap_or(f32::NEG_INFINITY));
            direct.max(coarse_fine + self.fine_margin())
        } else {
            direct
        }
    }

    /// How close to the query a row of an unprobed list may lie, relative to its
    /// centroid's distance: the `list_rank`-th lowest `exact − centroid
    /// distance` seen so far, repeats counted once (None before any row was
    /// re-ranked; the highest seen while fewer were). It only falls as the
    /// scan learns from more rows (see [`DEFAULT_LIST_RANK`]).
    ///
    /// With a refine stage the samples are the refined candidates' `fine −
    /// centroid distance`, less the mean fine error (fine estimates overstate
    /// distances by the code's squared error on average): far more rows are
    /// refined than re-ranked, and a low slack of the few dozen re-ranked rows
    /// alone made scans probe twice the lists (as did subtracting the whole
    /// fine margin instead of the mean error).
    pub fn list_slack(&mut self) -> Option<f32> {
        if self.refine {
            if let Some(s) = self.fine_slacks.kth_lowest(self.list_rank) {
                return Some(s - self.fine_errors.mean_plus(0.0).unwrap_or(0.0).max(0.0));
            }
        }
        self.slacks.kth_lowest(self.list_rank)
    }

    /// What to do next. `candidate` is the best estimate among candidates not
    /// yet re-ranked, `list` the centroid distance of the next list that may
    /// still be probed (None when there is none, or probing more is not allowed).
    ///
    /// The nearest re-ranked row leaves when neither a waiting candidate (its
    /// estimate minus the margin) nor an unprobed list (its centroid distance
    /// plus the slack) could hold anything closer; otherwise whichever of the
    /// two could be closer is explored first.
    ///
    /// A stage whose margin has not been observed yet (fewer than
    /// [`MIN_DISTINCT_ERRORS`] distinct errors of its rows re-ranked) bounds
    /// nothing: its candidates could be any distance closer, so that stage is
    /// advanced before a row may leave. (A row re-ranked from the
    /// table without refining, such as one whose fine entry a racing VACUUM
    /// had moved, once left ahead of refined candidates that were closer,
    /// because the fine margin was still 0.)
    pub fn next(&mut self, candidate: Option<f32>, list: Option<f32>) -> Next<T> {
        if self.hold == 0
            && self.rehold_cap > 1
            && self.hold_span > 1
            && self.left_since_hold >= self.hold_span
        {
            self.hold_again(self.hold_span.saturating_mul(2).min(self.rehold_cap));
        }
        let fine_known = self.fine_errors.seen >= MIN_DISTINCT_ERRORS;
        let coarse_known = self.errors.seen >= MIN_DISTINCT_ERRORS
            && (!self.refine || !self.coarse_fine.is_finite() || fine_known);
        let margin = self.margin();
        let bound = |e: f32, m: f32, known: bool| {
            if !known {
                f32::NEG_INFINITY
            } else if e.is_nan() {
                f32::INFINITY
            } else {
                e - m
            }
        };
        let c = candidate.map(|e| bound(e, margin, coarse_known));
        let fine_margin = self.fine_margin();
        let r = self
            .refined
            .peek()
            .map(|Reverse((_, _, _, f))| bound(f.0, fine_margin, fine_known));
        let l = match (list, self.list_slack()) {
            (Some(d), Some(s)) => Some(d + s),
            // Before any row was re-ranked there is nothing to compare with:
            // the candidates come first.
            (Some(_), None) if c.is_some() || r.is_some() => None,
            (Some(_), None) => Some(f32::NEG_INFINITY),
            (None, _) => None,
        };
        let frontier = [c, r, l]
            .into_iter()
            .flatten()
            .reduce(f32::min)
            // Past the ceiling nothing left could be kept: explore no more.
            .filter(|&f| match self.ceiling {
                Some((c, true)) => f <= c,
                Some((c, false)) => f < c,
                None => true,
            });
        if let Some(Ready(k, id, d)) = self.ready.peek() {
            // The frontier only moves once the scan explores further, so
            // once the held rows may leave, all of them leave in turn.
            if self
                .gate((k >> 32) as u32)
                .is_some_and(|g| frontier.is_none_or(|f| g <= key(f)))
            {
                self.release();
                self.ready.pop();
                self.note_left(k);
                return Next::Row(d.0, id);
            }
        }
        let Some(f) = frontier else {
            self.release();
            return match self.ready.pop() {
                Some(Ready(k, id, d)) => {
                    self.note_left(k);
                    Next::Row(d.0, id)
                }
                None => Next::Done,
            };
        };
        // Advance the stage that holds the lowest bound (re-ranking first on a
        // tie: it is the one that lets rows leave).
        if r == Some(f) {
            Next::Rerank
        } else if c == Some(f) {
            if self.refine {
                Next::Refine
            } else {
                Next::Rerank
            }
        } else {
            Next::Probe
        }
    }
}

/// Most rows of one distance [`RepeatWatch`] remembers.
pub const REPEAT_WATCH_ROWS: usize = 1024;

/// The rows a scan handed out at its current distance, to catch a row handed
/// out twice. Every row of a single-vector index has one entry, so two
/// entries naming one heap row are damage (a TID garbled into another valid
/// one, a page count raised over entries VACUUM had removed): both are
/// re-ranked from the same row, to the same exact distance, so they leave
/// one after the other among that distance's rows. Checking the rows of the
/// current distance (up to [`REPEAT_WATCH_ROWS`] of them) costs nothing a
/// scan notices and turns a row returned twice into an error.
///
/// That holds when both entries carry the row's code. A TID garbled into
/// another row's carries another code: its estimate is far off, it is
/// re-ranked late and leaves far from the true copy, after the watch has
/// moved on (a cursor, a plan with no `LIMIT` right above the scan). So the
/// watch also remembers every row handed out, up to a number the scan gives
/// ([`RepeatWatch::remembering`]: its share of `work_mem`); past it only the
/// current distance's rows are compared. (Only rows re-ranked, so visible to
/// the scan's snapshot, are watched: an entry left over from a row VACUUM
/// removed while the scan ran can name the row a later insert put at its TID,
/// which the snapshot does not see. Estimated order, `ivfpq.rerank = 0`, reads
/// no row and is not watched.)
#[derive(Clone, Debug, Default)]
pub struct RepeatWatch {
    dist: Option<u32>,
    rows: Vec<u64>,
    seen: std::collections::HashSet<u64, crate::maxsim::BuildRowHasher>,
    cap: usize,
}

impl RepeatWatch {
    /// A watch that remembers up to `rows` rows handed out (any distance).
    pub fn remembering(rows: usize) -> Self {
        RepeatWatch {
            cap: rows,
            ..Default::default()
        }
    }

    /// Notes `row` handed out at `dist`; true when it was handed out before
    /// (at this distance, or among the rows remembered).
    pub fn repeated(&mut self, dist: f32, row: u64) -> bool {
        if self.seen.contains(&row) {
            return true;
        }
        if self.seen.len() < self.cap {
            self.seen.insert(row);
        }
        let bits = dist.to_bits();
        if self.dist != Some(bits) {
            self.dist = Some(bits);
            self.rows.clear();
        }
        if self.rows.contains(&row) {
            return true;
        }
        if self.rows.len() < REPEAT_WATCH_ROWS {
            self.rows.push(row);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_row_handed_out_twice_at_one_distance_is_caught() {
        let mut w = super::RepeatWatch::default();
        assert!(!w.repeated(1.0, 7));
        assert!(!w.repeated(1.0, 8));
        assert!(w.repeated(1.0, 7));
        // Another distance starts afresh (rows of a distance leave together).
        assert!(!w.repeated(2.0, 7));
        assert!(!w.repeated(2.0, 9));
        assert!(w.repeated(2.0, 9));
    }

    #[test]
    fn a_remembered_row_handed_out_again_at_another_distance_is_caught() {
        let mut w = super::RepeatWatch::remembering(2);
        assert!(!w.repeated(1.0, 7));
        assert!(!w.repeated(2.0, 8));
        assert!(!w.repeated(3.0, 9)); // past the cap: not remembered
        assert!(w.repeated(5.0, 7));
        assert!(w.repeated(6.0, 8));
        assert!(!w.repeated(7.0, 9));
    }

    use super::*;

    /// Repeated errors (copies of one vector, re-ranked in a row) count once:
    /// the spread of the others is not drowned.
    #[test]
    fn repeated_errors_count_once() {
        let mut a = Samples::new(1);
        let mut b = Samples::new(1);
        for e in [0.5f32, -0.3, 0.9, 0.1] {
            a.add(e);
            b.add(e);
        }
        a.add(0.2);
        for _ in 0..7000 {
            b.add(0.2);
        }
        assert_eq!(a.mean_plus(4.0), b.mean_plus(4.0));
        assert_eq!(a.seen, b.seen);
    }
    /// Copies of a few vectors, read interleaved: each group's error counts
    /// once, and until [`MIN_DISTINCT_ERRORS`] distinct ones are known no row
    /// leaves ahead of a waiting candidate. Two groups of 100 copies filled
    /// the first batches with two errors and no spread, and their rows left
    /// ahead of a single row whose estimate erred by far more (hunt-113).
    #[test]
    fn copies_of_a_few_vectors_do_not_vouch_for_the_margin() {
        let mut s = Samples::new(1);
        for _ in 0..100 {
            s.add(0.05);
            s.add(0.04);
        }
        assert_eq!(s.seen, 2);
        let mut rows: Vec<(f32, f32)> = Vec::new();
        for _ in 0..100 {
            rows.push((1.0, 0.95));
            rows.push((1.0001, 0.9601));
        }
        // The nearest row, whose estimate ranks it after all 200 copies.
        rows.push((1.2, 0.5));
        // Near-copies: one estimate (one code), errors apart by their noise.
        for i in 0..100 {
            rows.push((1.0002, 0.97 + i as f32 * 1e-6));
        }
        let out = scan_order(OrderedRerank::new(1.0, 1), &rows, 40);
        let want: Vec<f32> = exact_order(&rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .into_iter()
            .map(|(x, _)| x)
            .collect();
        assert_eq!(out, want);
    }

    use proptest::prelude::*;

    /// `(exact, row)` of every row, nearest first (ties by row): what a scan
    /// that keeps exact order hands out.
    fn exact_order(exact: &[f32]) -> Vec<(f32, u32)> {
        let mut sorted: Vec<(f32, u32)> = exact
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, i as u32))
            .collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        sorted
    }

    /// Runs a scan's loop over `(estimate, exact)` rows: re-ranks `batch`
    /// rows at a time by best estimate, and returns the exact distances in
    /// the order the rows leave.
    fn scan_order(r: OrderedRerank<u32>, rows: &[(f32, f32)], batch: usize) -> Vec<f32> {
        scan_order_keeping(r, rows, batch).0
    }

    /// [`scan_order`], also giving back the queue (and the most rows it held
    /// in memory at once).
    fn scan_order_keeping(
        mut r: OrderedRerank<u32>,
        rows: &[(f32, f32)],
        batch: usize,
    ) -> (Vec<f32>, OrderedRerank<u32>, usize) {
        let mut by_est: Vec<(f32, f32, u32)> = rows
            .iter()
            .enumerate()
            .map(|(i, &(e, x))| (e, x, i as u32))
            .collect();
        by_est.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
        let (mut next, mut out, mut most) = (0, Vec::new(), 0);
        loop {
            most = most.max(r.ready.len() - r.ready.in_runs());
            match r.next(by_est.get(next).map(|c| c.0), None) {
                Next::Row(d, _) => out.push(d),
                Next::Rerank => {
                    for &(e, x, id) in &by_est[next..(next + batch).min(by_est.len())] {
                        r.add(e, x, 0.0, id);
                    }
                    next += batch;
                }
                Next::Done => return (out, r, most),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// A queue that keeps few rows in memory hands out the same rows in the
    /// same order: on rows whose estimates err by more than their distances
    /// spread (random vectors), most of what is re-ranked waits, and spills.
    #[test]
    fn a_spilling_queue_hands_out_the_same_rows() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32
        };
        let rows: Vec<(f32, f32)> = (0..20_000)
            .map(|_| {
                let exact = 10.0 + rnd();
                (exact + 2.0 * (rnd() - 0.5), exact)
            })
            .collect();
        let plain = scan_order(OrderedRerank::new(1.0, 1), &rows, 30);
        let mut r = OrderedRerank::new(1.0, 1);
        r.spill_to(300, Box::new(crate::spill::VecStore::default()));
        let (out, r, most) = scan_order_keeping(r, &rows, 30);
        assert_eq!(out, plain);
        assert_eq!(out.len(), rows.len());
        assert!(r.spilled() > 10_000, "most rows waited: {}", r.spilled());
        assert!(most <= 300, "at most the cap in memory: {most}");
    }

    /// MaxSim's estimates (src/ivfpq/maxsim_scan.rs): near rows' estimates
    /// fall short of their exact distances by a little (the codes
    /// underestimate large inner products), one of them by much more, and
    /// far rows' estimates are loose bounds (far below their exact
    /// distances). The 99th percentile of every error is a near row's
    /// ordinary error, so farther near rows left before the one that erred
    /// most, which is re-ranked only in a late batch; a margin that also
    /// covers the spread of the nearest rows' errors keeps the order.
    #[test]
    fn near_spread_keeps_rows_whose_error_grows_with_nearness_in_order() {
        let mut rows = Vec::new();
        for i in 0..40 {
            let exact = -3.0 + 0.01 * i as f32;
            // Spread over -0.1..0.1, but row 5 falls short by 0.2.
            let err = if i == 5 {
                0.2
            } else {
                -0.1 + 0.2 * ((i * 7) % 20) as f32 / 19.0
            };
            rows.push((exact + err, exact));
        }
        for j in 0..300 {
            let exact = -2.5 + 0.005 * j as f32;
            let err = -0.3 - 0.2 * (j % 10) as f32 / 9.0;
            rows.push((exact + err, exact));
        }
        let sorted = |v: &[f32]| v.windows(2).all(|w| w[0] <= w[1]);
        let plain = scan_order(OrderedRerank::new(0.99, 1), &rows, 10);
        assert_eq!(plain.len(), rows.len());
        assert!(
            !sorted(&plain),
            "the quantile alone lets the row that erred most out late"
        );
        let near = scan_order(OrderedRerank::new(0.99, 1).with_near_spread(100), &rows, 10);
        assert_eq!(near.len(), rows.len());
        assert!(sorted(&near), "{near:?}");
    }

    /// The coarse − fine floor: off by default (the largest refined error),
    /// and with it the mean plus that many standard deviations of them when
    /// that is more.
    #[test]
    fn a_coarse_fine_floor_widens_the_coarse_margin() {
        let margin = |sigmas: Option<f64>| {
            let r = OrderedRerank::<u64>::new(1.0, 1).with_refine();
            let mut r = match sigmas {
                Some(z) => r.with_coarse_fine_sigmas(z),
                None => r,
            };
            // coarse − fine of 0, 0.1, .., 0.4, ten times each: mean 0.2,
            // sd 0.1429 (n − 1), largest 0.4.
            for i in 0..50u64 {
                let fine = 1.0 + i as f32 * 0.01;
                r.add_refined(fine + 0.1 * (i % 5) as f32, fine, 0.0, i);
            }
            for (coarse, fine, id) in r.pop_refined(1) {
                r.add_refined_exact(coarse, fine, fine, id);
            }
            r.margin()
        };
        // The margin adds the fine margin to the coarse − fine term: the
        // floor moves it by what it adds to that term.
        let plain = margin(None);
        assert_eq!(margin(Some(0.0)), plain, "0 is no floor");
        assert_eq!(margin(Some(1.0)), plain, "a floor below the largest");
        let z3 = margin(Some(3.0));
        let wider = 0.2 + 3.0 * 0.142_857 - 0.4;
        assert!((z3 - plain - wider).abs() < 2e-3, "{z3} {plain}");
    }

    /// Fewer sigmas for the near-row spread: a smaller margin (the mean plus
    /// that many standard deviations), so a `LIMIT 10` re-ranks fewer rows
    /// before its rows leave; the default is [`FINE_SIGMAS`].
    #[test]
    fn fewer_near_sigmas_margin_less_and_rerank_fewer() {
        let margin = |sigmas: Option<f64>| {
            let r = OrderedRerank::<u32>::new(0.5, 1);
            let mut r = match sigmas {
                Some(s) => r.with_near_spread_sigmas(100, s),
                None => r.with_near_spread(100),
            };
            for i in 0..50u32 {
                let exact = i as f32 * 0.01;
                r.add(exact + 0.05 * (i % 5) as f32, exact, 0.0, i);
            }
            r.margin()
        };
        // Errors 0, 0.05, .., 0.2 ten times each: mean 0.1, sd ~0.0714.
        let (m4, m2, m0) = (margin(Some(4.0)), margin(Some(2.0)), margin(Some(0.0)));
        assert_eq!(margin(None), m4);
        assert!((m4 - 0.3857).abs() < 1e-3, "{m4}");
        assert!((m2 - 0.2429).abs() < 1e-3, "{m2}");
        assert!((m0 - 0.1).abs() < 1e-3, "{m0}");
        // The same rows scanned for their first ten: fewer sigmas, fewer rows
        // re-ranked.
        let rows: Vec<(f32, f32)> = (0..2000)
            .map(|i| {
                let exact = i as f32 * 0.001;
                (exact + 0.05 * ((i * 7) % 11) as f32 / 10.0, exact)
            })
            .collect();
        let mut rows = rows;
        // By estimate, as a scan offers them.
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let reranked = |sigmas: f64| {
            let mut r = OrderedRerank::new(0.5, 1).with_near_spread_sigmas(100, sigmas);
            r.hold_first(10);
            let (mut next, mut out) = (0, Vec::new());
            while out.len() < 10 {
                match r.next(rows.get(next).map(|c| c.0), None) {
                    Next::Row(d, _) => out.push(d),
                    Next::Rerank => {
                        for (i, &(e, x)) in rows.iter().enumerate().skip(next).take(10) {
                            r.add(e, x, 0.0, i as u32);
                        }
                        next += 10;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(out.windows(2).all(|w| w[0] <= w[1]));
            r.reranked()
        };
        assert!(reranked(2.0) < reranked(4.0));
    }

    /// Errors centred on zero over all rows: the spread is taken around zero,
    /// so the low errors of the rows re-ranked first (estimates that erred
    /// low rank first) do not shrink the margin below what a row whose
    /// estimate erred as far the other way needs.
    #[test]
    fn centered_errors_take_their_spread_around_zero() {
        let errors = [-2.0f32, -1.5, -1.0, -1.2, -1.8];
        let margin = |centered: bool| {
            let r: OrderedRerank<u32> = OrderedRerank::new(1.0, 1);
            let mut r = if centered {
                r.with_centered_errors()
            } else {
                r
            };
            for (i, e) in errors.iter().enumerate() {
                r.learn(-10.0 + i as f32 + e, -10.0 + i as f32, 0.0);
            }
            r.margin()
        };
        let n = errors.len() as f32;
        let mean = errors.iter().sum::<f32>() / n;
        let var = errors.iter().map(|e| (e - mean) * (e - mean)).sum::<f32>() / (n - 1.0);
        // Around the mean: below zero, so the largest error (0 at least) wins.
        assert!((margin(false) - (mean + 4.0 * var.sqrt()).max(0.0)).abs() < 1e-4);
        let rms = (mean * mean + var).sqrt();
        assert!((margin(true) - 4.0 * rms).abs() < 1e-4, "{}", margin(true));
        assert!(margin(true) > 2.0 * margin(false).max(1.0));
    }

    /// Rows rejected by the query's filter ([`OrderedRerank::learn`]) count
    /// among the nearest rows' errors too.
    #[test]
    fn near_spread_learns_from_rejected_rows() {
        let mut r: OrderedRerank<u32> = OrderedRerank::new(0.99, 1).with_near_spread(4);
        r.learn(-2.0, -3.0, 0.0);
        r.learn(-3.0, -3.0, 0.0);
        // Errors 1 and 0: mean 0.5, sd 0.707, so 0.5 + 4 × 0.707.
        assert!((r.margin() - (0.5 + 4.0 * 0.5f32.sqrt())).abs() < 1e-4);
        // A farther row does not displace them once four are kept: its
        // error (-10) would widen the spread.
        r.learn(-2.9, -2.9, 0.0);
        r.learn(-2.8, -2.8, 0.0);
        let m = r.margin();
        r.learn(-11.0, -1.0, 0.0);
        assert_eq!(r.margin(), m);
    }

    /// Rows that share a vector share its (distance, error): copies count
    /// once among the nearest rows' errors, so hundreds of them neither pull
    /// the spread to their one error nor push other rows' errors out.
    #[test]
    fn near_spread_counts_copies_of_one_error_once() {
        let spread = |copies: usize| {
            let mut r: OrderedRerank<u32> = OrderedRerank::new(0.99, 1).with_near_spread(8);
            for _ in 0..copies {
                r.learn(-5.0, -5.2, 0.0);
            }
            for (i, e) in [0.05f32, 0.3, 0.1, 0.6, 0.02].into_iter().enumerate() {
                let exact = -5.0 + 0.1 * (i as f32 + 1.0);
                r.learn(exact + e, exact, 0.0);
            }
            r.margin()
        };
        assert_eq!(spread(1), spread(300));
        assert!(spread(1) > 0.6, "{}", spread(1));
    }

    #[test]
    fn rows_leave_in_exact_order_once_nothing_waits() {
        let mut r = OrderedRerank::new(0.95, 1);
        r.add(1.0, 3.0, 0.0, 1u64);
        r.add(1.1, 2.0, 0.0, 2);
        r.add(1.2, 2.5, 0.0, 3);
        let mut out = Vec::new();
        while let Next::Row(_, id) = r.next(None, None) {
            out.push(id);
        }
        assert_eq!(out, vec![2, 3, 1]);
        assert_eq!(r.next(None, None), Next::Done);
    }

    /// A ceiling ends the scan once nothing left to explore could hold a row
    /// below it; without one the same queue asks for the next candidate.
    #[test]
    fn past_its_ceiling_a_scan_explores_no_more() {
        let run = |ceiling: Option<(f32, bool)>| {
            let mut r = OrderedRerank::new(1.0, 1);
            if let Some((c, inclusive)) = ceiling {
                r.set_ceiling(c, inclusive);
            }
            for i in 0..10u64 {
                let exact = 1.0 + 0.1 * i as f32;
                r.add(exact + 0.1 + 0.01 * i as f32, exact, 0.0, i);
            }
            let mut out = Vec::new();
            loop {
                match r.next(Some(5.0), Some(6.0)) {
                    Next::Row(_, id) => out.push(id),
                    other => return (out, other),
                }
            }
        };
        let all: Vec<u64> = (0..10).collect();
        // The waiting candidate (5.0 less a margin of ~0.2) is the frontier.
        assert_eq!(run(None), (all.clone(), Next::Rerank));
        assert_eq!(run(Some((3.0, false))), (all.clone(), Next::Done));
        assert_eq!(run(Some((4.9, true))), (all.clone(), Next::Rerank));
        // A ceiling below the rows in hand: they still leave, in order.
        assert_eq!(run(Some((1.05, false))), (all, Next::Done));
    }

    /// With a refine stage the coarse margin gets a 4σ floor only from rows
    /// re-ranked without a usable refine code, and from their own errors.
    #[test]
    fn an_unrefined_row_gives_the_coarse_margin_its_floor() {
        let mut r = OrderedRerank::new(1.0, 1).with_refine();
        // Coarse errors spread over 0..2: the largest (2) is below their mean
        // plus 4 standard deviations (~3.3).
        for i in 0..63 {
            r.add(1.0 + (i % 21) as f32 * 0.1, 1.0, 0.0, i as u64);
        }
        let before = r.margin();
        assert!((before - 2.0).abs() < 1e-6, "{before}");
        // Rows without a refine code whose coarse errors spread over 0..3.
        for i in 0..31 {
            r.add_unrefined_tied(2.0 + (i % 31) as f32 * 0.1, 2.0, 0, 0.0, 100 + i as u64);
        }
        let after = r.margin();
        let floor = r.unrefined_errors.mean_plus(FINE_SIGMAS).unwrap();
        assert!(floor > 3.0, "{floor}");
        assert!((after - floor).abs() < 1e-6, "{after} vs {floor}");
    }

    /// Rows without a refine code that err as the refined rows do leave the
    /// coarse margin at the largest coarse error: the spread of every coarse
    /// error (here ~3.3, against a largest of 2) is not their floor.
    #[test]
    fn unrefined_rows_that_err_as_others_leave_the_margin_alone() {
        let mut r = OrderedRerank::new(1.0, 1).with_refine();
        for i in 0..63 {
            r.add(1.0 + (i % 21) as f32 * 0.1, 1.0, 0.0, i as u64);
        }
        let before = r.margin();
        r.add_unrefined_tied(1.5, 1.0, 0, 0.0, 200u64);
        r.learn_unrefined(1.4, 1.0, 0.0);
        r.add_unrefined_tied(1.6, 1.0, 0, 0.0, 201u64);
        assert_eq!(r.margin(), before);
        assert_eq!(
            r.len(),
            63 + 2,
            "the rows added wait; the one learnt does not"
        );
    }

    /// Rows whose exact distances round to one `f32` leave in the order of
    /// their ties (what the rounding dropped from the `f64` distance), not of
    /// their ids; refined rows too.
    #[test]
    fn rows_of_one_f32_distance_leave_by_their_tie() {
        let (d64a, d64b) = (0.157_621_354_7_f64, 0.157_621_359_9_f64);
        assert_eq!(d64a as f32, d64b as f32, "one f32 apart from the tie");
        let tie = |d: f64| crate::ivf::f32_and_tie(d).1;
        let mut r = OrderedRerank::new(0.95, 1);
        r.add_tied(0.1, d64b as f32, tie(d64b), 0.0, 1u64);
        r.add_tied(0.1, d64a as f32, tie(d64a), 0.0, 2);
        r.add(0.1, d64a as f32, 0.0, 3);
        let mut out = Vec::new();
        while let Next::Row(_, id) = r.next(None, None) {
            out.push(id);
        }
        let mut want = [(tie(d64a), 2u64), (tie(d64b), 1), (0, 3)];
        want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        assert_eq!(out, want.iter().map(|w| w.1).collect::<Vec<_>>());
        assert!(out.iter().position(|&i| i == 2) < out.iter().position(|&i| i == 1));

        let mut r = OrderedRerank::new(0.95, 1).with_refine();
        r.add_refined_exact_tied(0.1, 0.1, d64b as f32, tie(d64b), 1u64);
        r.add_refined_exact_tied(0.1, 0.1, d64a as f32, tie(d64a), 2);
        let mut out = Vec::new();
        while let Next::Row(_, id) = r.next(None, None) {
            out.push(id);
        }
        assert_eq!(out, vec![2, 1]);
    }

    #[test]
    fn a_row_waits_while_a_candidate_could_still_be_closer() {
        let mut r = OrderedRerank::new(1.0, 1);
        // Estimates came out up to 1.0 above the exact distance (and within
        // a thousandth for 50 far rows, so that 4 standard deviations stay
        // below 1.0; distinct errors: a repeat counts once).
        r.add(4.0, 3.0, 0.0, 1u64);
        r.add(3.5, 3.5, 0.0, 2);
        for i in 0..50 {
            let x = 100.0 + i as f32;
            r.add(x + i as f32 * 1e-5, x, 0.0, 1000 + i);
        }
        assert_eq!(r.margin(), 1.0);
        // A waiting candidate estimated at 3.5 may truly be at 2.5 < 3.0.
        assert_eq!(r.next(Some(3.5), None), Next::Rerank);
        // One estimated at 4.0 may be at 3.0: row 1 may leave (ties go first).
        assert_eq!(r.next(Some(4.0), None), Next::Row(3.0, 1));
        assert_eq!(r.next(Some(4.0), None), Next::Rerank);
    }

    #[test]
    fn a_learnt_row_teaches_the_margin_and_never_leaves() {
        // The same two errors as a_few_errors_teach_four_standard_deviations,
        // one of them from a row the query's filter rejected.
        let mut r = OrderedRerank::new(1.0, 1);
        r.add(3.5, 3.5, 0.0, 2u64);
        r.learn(4.0, 3.0, 0.0);
        assert_eq!(r.margin(), {
            let mut s = OrderedRerank::new(1.0, 1);
            s.add(4.0, 3.0, 0.0, 1u64);
            s.add(3.5, 3.5, 0.0, 2);
            s.margin()
        });
        assert_eq!(r.len(), 1);
        assert_eq!(r.reranked(), 2);
        assert_eq!(r.next(None, None), Next::Row(3.5, 2));
        assert_eq!(r.next(None, None), Next::Done);
        // With a refine stage: the rejected row's fine error counts too.
        let mut r = OrderedRerank::new(1.0, 1).with_refine();
        r.add_refined(5.0, 4.0, 0.0, 7u64);
        r.learn_refined(5.0, 4.0, 3.0);
        assert!(r.fine_margin() >= 1.0);
        assert_eq!(r.len(), 0);
        assert_eq!(r.refined_len(), 1);
    }

    #[test]
    fn a_few_errors_teach_four_standard_deviations() {
        // Two errors, 1.0 and 0.0: the largest says 1.0, their spread says
        // 0.5 + 4 × 0.71.
        let mut r = OrderedRerank::new(1.0, 1);
        r.add(4.0, 3.0, 0.0, 1u64);
        r.add(3.5, 3.5, 0.0, 2);
        let m = r.margin();
        assert!((m - (0.5 + 4.0 * 0.5f32.sqrt())).abs() < 1e-4, "{m}");
        assert_eq!(r.next(Some(4.0), None), Next::Rerank);
        // A lower quantile (the MaxSim scan's) keeps its own rule.
        let mut r = OrderedRerank::new(0.99, 1);
        r.add(4.0, 3.0, 0.0, 1u64);
        r.add(3.5, 3.5, 0.0, 2);
        assert!(r.margin() <= 1.0);
    }

    #[test]
    fn an_unprobed_list_that_could_be_closer_is_probed_first() {
        let mut r = OrderedRerank::new(1.0, 1);
        // Rows lay at least 0.5 beyond their list's centroid distance.
        r.add(2.0, 2.0, 1.5, 1u64);
        r.add(3.0, 3.0, 2.0, 2);
        assert_eq!(r.list_slack(), Some(0.5));
        // (No candidate waits: two errors are too few to bound one, see
        // MIN_DISTINCT_ERRORS.) A list at 1.2 may hold a row at 1.7 < 2.0:
        // probe it.
        assert_eq!(r.next(None, Some(1.2)), Next::Probe);
        // One at 1.6 may hold rows from 2.1 on: row 1 leaves, row 2 waits.
        assert_eq!(r.next(None, Some(1.6)), Next::Row(2.0, 1));
        assert_eq!(r.next(None, Some(1.6)), Next::Probe);
        // Nothing left to explore: the rest leaves in order.
        assert_eq!(r.next(None, None), Next::Row(3.0, 2));
        assert_eq!(r.next(None, None), Next::Done);
    }

    #[test]
    fn held_rows_wait_for_the_deepest_of_them() {
        // Rows lay at least 0.5 beyond their list's centroid distance; the
        // next list is at 1.8, so it seems to hold nothing nearer than 2.3.
        let scan = |hold: usize| {
            let mut r = OrderedRerank::new(1.0, 1);
            r.hold_first(hold);
            r.add(2.0, 2.0, 1.5, 1u64);
            r.add(3.0, 3.0, 2.0, 2);
            let mut out = Vec::new();
            let mut list = Some(1.8);
            loop {
                match r.next(None, list) {
                    Next::Row(_, id) => out.push(id),
                    // The list holds a row at 1.9: closer than its slack said.
                    Next::Probe => {
                        r.add(1.9, 1.9, 1.8, 3);
                        list = None;
                    }
                    Next::Done => return out,
                    other => panic!("{other:?}"),
                }
            }
        };
        // Without a hold row 1 (2.0) leaves before the list is probed, and the
        // list's row (1.9) comes after it.
        assert_eq!(scan(0), vec![1, 3, 2]);
        // Told that two rows will be taken, the scan settles the second (3.0)
        // first, which needs the list: all three leave in exact order.
        assert_eq!(scan(2), vec![3, 1, 2]);
    }

    #[test]
    fn asked_past_its_hold_a_scan_holds_again() {
        // Held rows 1.0–1.2 leave; the executor drops them all and asks on.
        // A list at 1.35 seems to hold nothing nearer than 1.35 (rows lay at
        // least 0 beyond their centroid so far) but holds a row at 1.25.
        // Rows leaving one by one let 1.3 out before that list is probed,
        // and its row comes after it; holding the next six first probes it
        // (settling 1.8 needs it), and 1.25 comes in its place.
        let lists = || {
            vec![
                (1.0, (0..10).map(|i| (i as f32 * 0.1, true)).collect()),
                (1.35, vec![(-0.1, true), (0.5, true)]),
            ]
        };
        let run = |rehold| held_scan(lists(), 3, 1, rehold).expect("scan");
        let (out, _, late) = run(0);
        assert_eq!(late, 1);
        assert!(out.windows(2).any(|w| w[0].0 > w[1].0), "{out:?}");
        let (out, passes, late) = run(1000);
        assert_eq!(late, 0);
        assert_eq!(out.len(), passes.len());
        assert_eq!(out[3].0, 1.25);
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0), "{out:?}");
    }

    #[test]
    fn the_hold_bar_is_the_farthest_held_row() {
        let mut r = OrderedRerank::new(1.0, 1);
        assert_eq!(r.hold_bar(), None, "no hold");
        r.hold_first(2);
        let bar = r.hold_bar().expect("holding");
        assert!(
            bar.admits(f32::INFINITY),
            "fewer than two rows held: any row"
        );
        r.add(3.0, 3.0, 0.0, 1u64);
        r.add(2.0, 2.0, 0.0, 2);
        let bar = r.hold_bar().expect("holding");
        assert!(bar.admits(2.5) && !bar.admits(3.0) && !bar.admits(4.0));
        // A rejected row is learnt, not held: the bar stays.
        r.learn(1.0, 1.0, 0.0);
        assert_eq!(r.hold_bar(), Some(bar));
        r.add(1.5, 1.5, 0.0, 3);
        assert!(!r.hold_bar().expect("holding").admits(2.0));
        // The first row leaves: the hold is over.
        assert!(matches!(r.next(None, None), Next::Row(_, 3)));
        assert_eq!(r.hold_bar(), None);
    }

    #[test]
    fn a_queue_holds_enough_once_its_hold_is_re_ranked() {
        let mut r = OrderedRerank::new(1.0, 1);
        r.add(2.0, 2.0, 0.0, 1u64);
        assert!(!r.holds_enough(), "no hold");
        let mut r = OrderedRerank::new(1.0, 1);
        r.hold_first(3);
        r.add(2.0, 2.0, 0.0, 1u64);
        r.add(3.0, 3.0, 0.0, 2);
        // A rejected row does not count.
        r.learn(1.0, 1.0, 0.0);
        assert!(!r.holds_enough(), "two of three held");
        r.add(4.0, 4.0, 0.0, 3);
        assert!(r.holds_enough());
        r.add(5.0, 5.0, 0.0, 4);
        // With nothing left to wait for, the held rows leave in order, and
        // the queue holds enough until the last of them has left.
        let mut out = Vec::new();
        while let Next::Row(_, id) = r.next(None, None) {
            out.push((id, r.holds_enough()));
        }
        assert_eq!(out, vec![(1, true), (2, true), (3, false), (4, false)]);
    }

    #[test]
    fn a_deep_scan_does_not_relax_its_list_slack() {
        // The nearest rows lay up to 1.0 short of their list's centroid
        // distance; the many farther rows a deep scan goes on to read lie
        // 0.5 beyond theirs. Any quantile of all of them is 0.5, and
        // unprobed lists would then look as if they held nothing close.
        let mut r = OrderedRerank::<u64>::new(1.0, DEFAULT_LIST_RANK);
        for i in 0..100 {
            r.learn(1.0, 1.0 - i as f32 * 1e-3, 2.0);
        }
        let early = r.list_slack().unwrap();
        for i in 0..50_000 {
            r.learn(3.0, 3.0 + i as f32 * 1e-4, 2.5);
        }
        assert_eq!(r.list_slack(), Some(early));
        assert!(early < -1.0);
        // The same with a refine stage (its slacks are fine − centroid).
        let mut r = OrderedRerank::<u64>::new(1.0, DEFAULT_LIST_RANK).with_refine();
        for i in 0..100 {
            r.add_refined(1.0, 1.0 - i as f32 * 1e-3, 2.0, i);
        }
        let early = r.list_slack().unwrap();
        for i in 100..50_100 {
            r.add_refined(3.0, 3.0 + i as f32 * 1e-4, 2.5, i);
        }
        assert_eq!(r.list_slack(), Some(early));
    }

    #[test]
    fn a_larger_first_batch_never_raises_the_list_slack() {
        // hunt-149: the slack was a quantile of the rows re-ranked, and a
        // first batch of 400 (`ivfpq.rerank = 400`) taught a higher one than
        // a batch of 100 drawn from the same rows, so the scan probed fewer
        // lists and found fewer rows than at the default. Whatever more rows
        // a scan learns from, its slack is at most what fewer taught.
        // The first 100 rows lie −2..8 beyond their lists' centroids, the 300
        // farther ones 0..10, as a scan's farther rows do.
        let slacks: Vec<f32> = (0..400u32)
            .map(|i| {
                let u = ((i.wrapping_mul(2_654_435_761) >> 7) % 10_000) as f32 / 1000.0;
                if i < 100 {
                    u - 2.0
                } else {
                    u
                }
            })
            .collect();
        let slack_after = |n: usize| {
            let mut r = OrderedRerank::<u64>::new(1.0, DEFAULT_LIST_RANK);
            for &x in &slacks[..n] {
                r.learn(0.0, x, 0.0);
            }
            r.list_slack().unwrap()
        };
        let (s100, s400) = (slack_after(100), slack_after(400));
        assert!(s400 <= s100, "{s400} > {s100}");
        let mut sorted = slacks[..100].to_vec();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(s100, sorted[DEFAULT_LIST_RANK - 1]);
    }

    #[test]
    fn fewer_slacks_than_the_rank_give_the_highest() {
        let mut r = OrderedRerank::<u64>::new(1.0, 3);
        assert_eq!(r.list_slack(), None);
        r.learn(0.0, 5.0, 0.0);
        assert_eq!(r.list_slack(), Some(5.0));
        r.learn(0.0, 2.0, 0.0);
        assert_eq!(r.list_slack(), Some(5.0));
        r.learn(0.0, 9.0, 0.0);
        assert_eq!(r.list_slack(), Some(9.0));
        r.learn(0.0, 1.0, 0.0);
        assert_eq!(r.list_slack(), Some(5.0));
    }

    proptest! {
        /// Whatever the slacks, the list slack is their `rank`-th lowest
        /// over the slacks counted: a repeated value counts once
        /// (`Samples::add_keyed`; a shrunk input with repeats among its 16
        /// lowest failed an oracle that counted them all, CI 2026-12-07),
        /// and adding slacks never raises it.
        #[test]
        fn list_slack_is_the_rank_th_lowest(
            v in proptest::collection::vec(-100.0f32..100.0, 1..3000),
            rank in 1usize..=MAX_LIST_RANK,
        ) {
            let mut r = OrderedRerank::<u64>::new(1.0, rank);
            let mut last = f32::INFINITY;
            let mut seen = HashSet::new();
            for (i, &x) in v.iter().enumerate() {
                r.learn(0.0, x, 0.0);
                seen.insert(x.to_bits());
                let s = r.list_slack().unwrap();
                if seen.len() >= rank {
                    prop_assert!(s <= last, "slack rose from {} to {} at {}", last, s, i);
                    last = s;
                }
            }
            let mut seen = HashSet::new();
            let mut sorted: Vec<f32> = v.into_iter().filter(|x| seen.insert(x.to_bits())).collect();
            sorted.sort_by(f32::total_cmp);
            let want = sorted[(rank - 1).min(sorted.len() - 1)];
            prop_assert_eq!(r.list_slack().unwrap(), want);
        }
    }

    #[test]
    fn before_any_rerank_candidates_come_first_then_lists() {
        let mut r = OrderedRerank::<u64>::new(0.9, 1);
        assert_eq!(r.next(Some(1.0), Some(0.5)), Next::Rerank);
        assert_eq!(r.next(None, Some(0.5)), Next::Probe);
        assert_eq!(r.next(None, None), Next::Done);
    }

    #[test]
    fn a_stage_with_no_error_seen_yet_is_advanced_before_a_row_leaves() {
        // With a refine stage: row 2 was re-ranked straight from the table
        // (its fine entry could not be trusted); row 1 waits, refined at 5.05
        // and truly at 4.9. No refined row has been re-ranked, so how far a
        // fine estimate may overshoot is unknown: row 2 must wait.
        let mut r = OrderedRerank::new(1.0, 1).with_refine();
        r.add_refined(6.0, 5.05, 0.0, 1u64);
        r.add(5.5, 5.0, 0.0, 2);
        assert_eq!(r.next(None, None), Next::Rerank);
        for (c, f, id) in r.pop_refined(1) {
            r.add_refined_exact(c, f, 4.9, id);
        }
        assert_eq!(r.next(None, None), Next::Row(4.9, 1));
        assert_eq!(r.next(None, None), Next::Row(5.0, 2));
        assert_eq!(r.next(None, None), Next::Done);
        // The same for coarse candidates before any row taught their margin.
        let mut r = OrderedRerank::new(1.0, 1);
        r.ready
            .push(Ready(u64::from(key(5.0)) << 32, 2u64, OrdF32(5.0)));
        assert_eq!(r.next(Some(5.2), None), Next::Rerank);
    }

    #[test]
    fn the_margin_is_the_largest_error_ever_seen() {
        let mut r = OrderedRerank::new(1.0, 1);
        // One large error, then far more small ones than the sample keeps
        // (distinct: a repeat counts once).
        r.add(9.0, 1.0, 0.0, 0u64);
        for i in 1..(4 * MAX_SAMPLES as u64) {
            r.add(1.5 + (i % 1000) as f32 * 1e-4, 1.0, 0.0, i);
        }
        assert_eq!(r.margin(), 8.0);
    }

    #[test]
    fn a_quantile_follows_its_observations() {
        let mut s = Samples::new(1);
        for i in 0..1000 {
            s.add(i as f32);
        }
        assert_eq!(s.quantile(0.5), Some(500.0));
        // A few more barely move it and are not recomputed...
        for i in 0..10 {
            s.add(-1.0 - i as f32);
        }
        assert_eq!(s.quantile(0.5), Some(500.0));
        // ...many more are.
        for i in 10..1010 {
            s.add(-1.0 - i as f32);
        }
        assert!(s.quantile(0.5).is_some_and(|q| q < 0.0));
    }

    #[test]
    fn nan_distances_come_last() {
        let mut r = OrderedRerank::new(0.9, 1);
        r.add(0.0, f32::NAN, 0.0, 1u64);
        r.add(0.0, 5.0, 0.0, 2);
        assert_eq!(r.next(None, None), Next::Row(5.0, 2));
        assert!(matches!(r.next(None, None), Next::Row(d, 1) if d.is_nan()));
    }

    /// Rows a simulated scan handed out, `(exact distance, id)` in order.
    type Handed = Vec<(f32, u32)>;

    /// A simulated IVF scan told that `hold` rows will be taken: lists at
    /// their centroid distances, each row `(offset beyond it, passes)`, with
    /// exact estimates (only the list slack can misjudge a list). The scan
    /// checks its filter on the rows below its hold bar, learns the ones that
    /// fail, and hands out every other row (the executor filters those), as
    /// fetch.rs does. Returns the rows handed out, `(exact, id)` in order,
    /// whether each row passes, by id, and how many rows were found too late
    /// and left out ([`OrderedRerank::late`]).
    fn held_scan(
        lists: Vec<(f32, Vec<(f32, bool)>)>,
        hold: usize,
        batch: usize,
        rehold: usize,
    ) -> Result<(Handed, Vec<bool>, u64), TestCaseError> {
        let mut lists = lists;
        lists.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut r = OrderedRerank::new(1.0, 1);
        r.hold_first(hold);
        r.hold_again_up_to(rehold);
        let mut probed = 0;
        // (estimate, exact, list distance, id)
        let mut cands: Vec<(f32, f32, f32, u32)> = Vec::new();
        let mut passes: Vec<bool> = Vec::new();
        let mut next = 0;
        let mut out: Vec<(f32, u32)> = Vec::new();
        loop {
            let cand = cands.get(next).map(|c| c.0);
            let list = lists.get(probed).map(|l| l.0);
            match r.next(cand, list) {
                Next::Row(d, i) => out.push((d, i)),
                Next::Rerank => {
                    let bar = r.hold_bar();
                    for c in &cands[next..(next + batch).min(cands.len())] {
                        if bar.is_some_and(|b| b.admits(c.1)) && !passes[c.3 as usize] {
                            r.learn(c.0, c.1, c.2);
                        } else {
                            r.add(c.0, c.1, c.2, c.3);
                        }
                    }
                    next = (next + batch).min(cands.len());
                }
                Next::Probe => {
                    let (cd, rows) = &lists[probed];
                    for &(o, p) in rows {
                        cands.push((cd + o, cd + o, *cd, passes.len() as u32));
                        passes.push(p);
                    }
                    cands[next..].sort_by(|a, b| a.0.total_cmp(&b.0).then(a.3.cmp(&b.3)));
                    probed += 1;
                }
                Next::Refine => prop_assert!(false, "no refine stage"),
                Next::Done => return Ok((out, passes, r.late())),
            }
        }
    }

    proptest! {
        /// Estimates that are a monotone step function of the exact distance
        /// (coarse codes: every row of a cell shares its estimate), rows
        /// offered page by page to a candidate pool and re-ranked `batch` at a
        /// time with nothing taught first: rows come out in exact order, each
        /// once. A batch that split a cell learnt the errors of part of it and
        /// handed out rows before closer ones of the same cell.
        #[test]
        fn equal_estimates_never_split_a_batch(
            exact in proptest::collection::vec(0.0f32..100.0, 1..400),
            cell in 0.5f32..30.0,
            batch in 1usize..40,
            page in 1usize..64,
        ) {
            use crate::ivf::CandidatePool;
            let est = |x: f32| (x / cell).floor() * cell + 0.5 * cell;
            let mut pool: CandidatePool<u32> = CandidatePool::with_keep(batch, batch * 4, 1 << 20);
            let offer = |pool: &mut CandidatePool<u32>| {
                for (p, chunk) in exact.chunks(page).enumerate() {
                    let d: Vec<f32> = chunk.iter().map(|&x| est(x)).collect();
                    pool.push_all(&d, |i| (p * page + i) as u32);
                }
            };
            offer(&mut pool);
            let mut r = OrderedRerank::new(1.0, 1);
            let mut out = Vec::new();
            loop {
                let next = r.next(pool.best(), None);
                if next == Next::Rerank && pool.needs_reoffer() {
                    pool.begin_reoffer();
                    offer(&mut pool);
                    pool.end_reoffer();
                    continue;
                }
                match next {
                    Next::Row(d, id) => out.push((d, id)),
                    Next::Rerank => {
                        let got = pool.pop_best(batch);
                        prop_assert!(!got.is_empty());
                        for (e, id) in got {
                            r.add(e, exact[id as usize], 0.0, id);
                        }
                    }
                    Next::Probe | Next::Refine => prop_assert!(false, "no list, no refine stage"),
                    Next::Done => break,
                }
            }
            prop_assert_eq!(out, exact_order(&exact));
        }

        /// The same through a refine stage whose fine estimates are also a
        /// monotone step function (a finer one) of the exact distance.
        #[test]
        fn equal_fine_estimates_never_split_a_batch(
            exact in proptest::collection::vec(0.0f32..100.0, 1..400),
            cell in 2.0f32..30.0,
            fine_div in 2u32..8,
            batch in 1usize..40,
            rbatch in 1usize..20,
        ) {
            use crate::ivf::CandidatePool;
            let fine_cell = cell / fine_div as f32;
            let step = |x: f32, w: f32| (x / w).floor() * w + 0.5 * w;
            let mut pool: CandidatePool<u32> = CandidatePool::with_keep(batch, batch * 4, 1 << 20);
            let d: Vec<f32> = exact.iter().map(|&x| step(x, cell)).collect();
            pool.push_all(&d, |i| i as u32);
            let mut r = OrderedRerank::new(1.0, 1).with_refine();
            let mut out = Vec::new();
            loop {
                let next = r.next(pool.best(), None);
                if next == Next::Refine && pool.needs_reoffer() {
                    pool.begin_reoffer();
                    pool.push_all(&d, |i| i as u32);
                    pool.end_reoffer();
                    continue;
                }
                match next {
                    Next::Row(d, id) => out.push((d, id)),
                    Next::Refine => {
                        let got = pool.pop_best(batch);
                        prop_assert!(!got.is_empty());
                        for (e, id) in got {
                            r.add_refined(e, step(exact[id as usize], fine_cell), 0.0, id);
                        }
                    }
                    Next::Rerank => {
                        let got = r.pop_refined(rbatch);
                        prop_assert!(!got.is_empty());
                        for (c, f, id) in got {
                            r.add_refined_exact(c, f, exact[id as usize], id);
                        }
                    }
                    Next::Probe => prop_assert!(false, "no list to probe"),
                    Next::Done => break,
                }
            }
            prop_assert_eq!(out, exact_order(&exact));
        }

        /// A simulated scan whose estimates are within ±3 of the truth, with one
        /// candidate of each sign of the largest error re-ranked first: with the
        /// margin at the largest error (quantile 1), rows come out in exactly the
        /// order of their exact distances, each once.
        #[test]
        fn with_bounded_errors_the_order_is_exact(
            exact in proptest::collection::vec(0.0f32..100.0, 1..300),
            noise in proptest::collection::vec(-1.0f32..1.0, 300),
            batch in 1usize..50,
        ) {
            let mut cands: Vec<(f32, f32, u32)> = exact.iter().enumerate()
                .map(|(i, &x)| (x + noise[i] * 3.0, x, i as u32)).collect();
            cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
            let mut r = OrderedRerank::new(1.0, 1);
            // Teach it the worst case first (no row of its own).
            r.errors.add(3.0);
            let mut next = 0;
            let mut out = Vec::new();
            loop {
                match r.next(cands.get(next).map(|c| c.0), None) {
                    Next::Row(d, id) => out.push((d, id)),
                    Next::Rerank => {
                        for c in &cands[next..(next + batch).min(cands.len())] {
                            r.add(c.0, c.1, 0.0, c.2);
                        }
                        next = (next + batch).min(cands.len());
                    }
                    Next::Probe | Next::Refine => prop_assert!(false, "no list, no refine stage"),
                    Next::Done => break,
                }
            }
            prop_assert_eq!(out, exact_order(&exact));
        }

        /// A simulated IVF scan whose list slack is learnt from the rows it has
        /// seen and can misjudge a list (rows up to 3 before their centroid
        /// distance, while the first lists taught less): told that `hold` rows
        /// will be taken, its first `hold` rows come out in exact order (so
        /// no list it probes for a deeper row puts a row before one that has
        /// left), every row comes out once, and every row that came out
        /// after a farther one is counted late.
        #[test]
        fn held_rows_leave_in_exact_order(
            lists in proptest::collection::vec((0.0f32..50.0, proptest::collection::vec(-3.0f32..10.0, 1..20)), 1..20),
            hold in 2usize..40,
            batch in 1usize..20,
            rehold in proptest::sample::select(vec![0usize, 1000]),
        ) {
            let lists = lists.into_iter().map(|(d, offs)| (d, offs.into_iter().map(|o| (o, true)).collect())).collect();
            let (out, passes, late) = held_scan(lists, hold, batch, rehold)?;
            let first = &out[..hold.min(out.len())];
            prop_assert!(first.windows(2).all(|w| w[0].0 <= w[1].0), "{:?}", first);
            prop_assert_eq!(out.len(), passes.len());
            let mut ids: Vec<u32> = out.iter().map(|o| o.1).collect();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), out.len());
            // A row is late when a farther one came out before it.
            let mut farthest = f32::NEG_INFINITY;
            let mut after = 0u64;
            for &(d, _) in &out {
                if d < farthest {
                    after += 1;
                }
                farthest = farthest.max(d);
            }
            prop_assert_eq!(after, late);
        }

        /// The same scan under a filter that the scan checks only on rows
        /// below its hold bar (rejected ones are learnt, the rest are handed
        /// out unchecked and filtered after the scan, as the executor does):
        /// the first `hold` rows that pass come out in exact order, and no
        /// passing row is lost. Counting every row among the held, as a scan
        /// that left the whole filter to the executor did, lets a list
        /// probed for a deeper passing row put it before one that has left.
        #[test]
        fn held_rows_that_pass_a_filter_leave_in_exact_order(
            lists in proptest::collection::vec((0.0f32..50.0, proptest::collection::vec((-3.0f32..10.0, 0u8..4), 1..20)), 1..20),
            hold in 2usize..20,
            batch in 1usize..20,
            rehold in proptest::sample::select(vec![0usize, 1000]),
        ) {
            // One row in four passes.
            let lists = lists.into_iter().map(|(d, offs)| (d, offs.into_iter().map(|(o, p)| (o, p == 0)).collect())).collect();
            let (out, passes, _) = held_scan(lists, hold, batch, rehold)?;
            let taken: Vec<(f32, u32)> = out.iter().copied().filter(|&(_, i)| passes[i as usize]).collect();
            prop_assert_eq!(taken.len(), passes.iter().filter(|&&p| p).count());
            let first = &taken[..hold.min(taken.len())];
            prop_assert!(first.windows(2).all(|w| w[0].0 <= w[1].0), "{:?}", first);
        }

        /// The same with a refine stage: fine estimates within ±0.5 of the
        /// truth, coarse ones within ±3, both worst cases taught first. Rows
        /// still come out in exact order, each once, and fewer rows are
        /// re-ranked than refined whenever more than a batch is needed.
        #[test]
        fn with_a_refine_stage_the_order_is_exact(
            exact in proptest::collection::vec(0.0f32..100.0, 1..300),
            noise in proptest::collection::vec((-1.0f32..1.0, -1.0f32..1.0), 300),
            batch in 1usize..50,
            rbatch in 1usize..20,
        ) {
            let mut cands: Vec<(f32, f32, f32, u32)> = exact.iter().enumerate()
                .map(|(i, &x)| (x + noise[i].0 * 3.0, x + noise[i].1 * 0.5, x, i as u32)).collect();
            cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.3.cmp(&b.3)));
            let mut r = OrderedRerank::new(1.0, 1).with_refine();
            r.errors.add(3.0);
            r.fine_errors.add(0.5);
            let mut next = 0;
            let mut out = Vec::new();
            let truth: std::collections::HashMap<u32, f32> = cands.iter().map(|c| (c.3, c.2)).collect();
            loop {
                match r.next(cands.get(next).map(|c| c.0), None) {
                    Next::Row(d, id) => out.push((d, id)),
                    Next::Refine => {
                        for c in &cands[next..(next + batch).min(cands.len())] {
                            r.add_refined(c.0, c.1, 0.0, c.3);
                        }
                        next = (next + batch).min(cands.len());
                    }
                    Next::Rerank => {
                        let got = r.pop_refined(rbatch);
                        prop_assert!(!got.is_empty());
                        for (c, f, id) in got {
                            r.add_refined_exact(c, f, truth[&id], id);
                        }
                    }
                    Next::Probe => prop_assert!(false, "no list to probe"),
                    Next::Done => break,
                }
            }
            prop_assert_eq!(out, exact_order(&exact));
        }
    }
}
