//! IVF-PQ: inverted lists over a k-means coarse quantizer, with product-quantized
//! residual codes, plus the pieces a query needs (list ranking, ADC tables, a bounded
//! candidate heap, exact re-ranking distances) and the index's default parameters.
//!
//! # How the index access method uses this module
//!
//! Build:
//! 1. sample [`training_sample_size`] rows, [`IvfPqModel::train`] on them;
//! 2. store the model ([`IvfPqModel::to_bytes`]) in the index's meta pages;
//! 3. [`IvfPqModel::encode_batch`] the table's rows in batches of a few thousand and
//!    append `(tid, code)` to the list each row was assigned to.
//!
//! Insert: [`IvfPqModel::encode`] gives the list and the code of one row.
//!
//! Scan:
//! ```
//! # use arrw_core::ivf::*;
//! # let data: Vec<f32> = (0..64 * 4).map(|i| ((i * 7919) % 101) as f32).collect();
//! # let model = IvfPqModel::train(&data, 4, Metric::L2, &IvfPqParams::new(4, 2, 8));
//! # let (lists, codes) = model.encode_batch(&data);
//! # let query = [1.0, 2.0, 3.0, 4.0];
//! let mut qt = model.query_tables(&query);
//! let mut top = TopK::new(DEFAULT_RERANK);
//! for (list, _dist) in qt.rank_lists(DEFAULT_PROBES) {
//!     qt.set_list(list);
//!     // for every page of the list: codes (contiguous) and the matching row ids
//! #   let (page_codes, page_ids): (Vec<u8>, Vec<u64>) = lists.iter().enumerate()
//! #       .filter(|(_, &l)| l == list)
//! #       .map(|(i, _)| (codes[i * 2..i * 2 + 2].to_vec(), i as u64)).fold(
//! #           (Vec::new(), Vec::new()), |(mut c, mut d), (x, i)| { c.extend(x); d.push(i); (c, d) });
//!     qt.scan_into(&page_codes, &page_ids, &mut top);
//! }
//! // then fetch the candidates' vectors and order them by `exact_distance`.
//! let candidates = top.into_sorted_vec();
//! # assert!(!candidates.is_empty());
//! ```
//!
//! # Metrics
//! - [`Metric::L2`]: lists and codes by Euclidean distance; estimates are
//!   `||q - c - r̂||²` (squared L2 to the reconstructed vector).
//! - [`Metric::Cosine`]: vectors and queries are L2-normalised first (zero vectors
//!   stay zero), then everything is L2; for unit vectors `||q - x||² = 2 - 2 cos`.
//!   Lists are spherical k-means': rows go to, and queries rank lists by, the
//!   centroid of largest cosine similarity (L2 to the centroids' directions),
//!   while residuals are taken from the clusters' means, which are shorter and
//!   closer to their rows than a unit vector. L2 to the means ranked a spread-out
//!   cluster (short mean) too late for the neighbours it holds: on MiniLM
//!   (pydoc-minilm, 75 lists) the true top 10 in the first 16 lists went from
//!   0.940 to 0.954, and recall@10 at probes 16 from 0.945 to 0.958 (ARCHITECTURE.md).
//! - [`Metric::InnerProduct`]: the coarse centroids are trained by (L2) k-means; rows
//!   go to the list of largest `x·c`, queries probe lists by largest `q·c`, and
//!   estimates are `-(q·c + q·r̂)`. The centroids are trained by L2 k-means because
//!   Lloyd iterations with max-inner-product assignment are known to let a few
//!   large-norm centroids absorb most points. On MiniLM (unit vectors, where the
//!   orders agree) this measured recall@10 0.964 at 20 probes and 100 re-ranked,
//!   against 0.959 for [`Metric::Cosine`].
//!   When every training row has unit length (normalised embeddings compared by
//!   `<#>`, the usual advice for them, and MaxSim over such vectors), inner
//!   product ranks as cosine does, and the lists are made and ranked as for
//!   cosine below ([`IvfPqModel::direction_lists`], stored in the model's flags).
//!
//! # Stored model
//! [`IvfPqModel::to_bytes`] writes (all integers and floats little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"AIVP"` |
//! | 4 | 1 | format version ([`MODEL_FORMAT_VERSION`]) |
//! | 5 | 1 | metric: 0 = L2, 1 = inner product, 2 = cosine |
//! | 6 | 1 | nbits |
//! | 7 | 1 | flags: bit 0 = lists ranked by centroid direction ([`IvfPqModel::direction_lists`]; inner product only, implied for cosine); other bits 0 |
//! | 8 | 4 | dim (u32) |
//! | 12 | 4 | lists (u32) |
//! | 16 | 4 | m (u32) |
//! | 20 | 4 × lists × dim | centroids (f32, row-major) |
//! | … | 4 × m × 2^nbits × dim/m | PQ codebooks (f32, `[m][2^nbits][dim/m]`) |
//!
//! The public fields hold the same data for a caller that prefers its own layout;
//! rebuild with [`IvfPqModel::from_parts`].

use crate::distance;
use crate::fastscan::{self, FastTable};
use crate::halfpanels::HalfPanels;
use crate::kmeans::{self, Bias, KMeansParams, Panels};
use crate::par;
use crate::pq::{self, adc_scan, AdcTable, PqTrainParams, ProductQuantizer};
use crate::refine::ResidualSq;
use crate::stop::{Stop, Stopped};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::borrow::Cow;

/// Lists probed per query unless the user says otherwise.
///
/// With [`default_params`] (~1000 rows per list, 4-bit codes) and
/// [`DEFAULT_RERANK`], measured recall@10 (`examples/ivfpq_eval.rs`, one training
/// seed): SIFT 100k × 128 (100 lists, m = 64) 0.962 at 10 probes, 0.993 at 20;
/// MiniLM 75k × 384 (75 lists, m = 128) 0.943 at 16, 0.957 at 20, 0.968 at 24.
/// (8-bit codes of the same size, means over 6 seeds: SIFT 0.964 / 0.994, MiniLM
/// 0.960 at 20.) 20 is the smallest count ≥ 0.95 on both. A probe scans ~1000
/// codes at any table size (see [`default_params`]), so the fraction of the table
/// scanned falls as it grows: [`default_probes`] probes more lists beyond 1,000.
pub const DEFAULT_PROBES: usize = 20;

/// Lists probed per query unless the user says otherwise, for an index of
/// `lists` lists: [`DEFAULT_PROBES`] up to 1,000 lists, then growing as
/// `lists^0.4`. On SIFT from photographs, recall@10 0.954 took 20 probes of
/// 1,000 lists (1M rows) and 0.946 took 48 of 10,000 (10M rows, 52 for 0.95):
/// 10× the lists, 2.5× the probes (`bench/scale.py`). 50 at 10,000 lists.
pub fn default_probes(lists: usize) -> usize {
    if lists <= 1000 {
        DEFAULT_PROBES
    } else {
        (DEFAULT_PROBES as f64 * (lists as f64 / 1000.0).powf(0.4)).round() as usize
    }
}

/// The probes an index's scans start from when neither a setting nor an
/// index option says: what its build measured (`measured`, from
/// [`crate::calibrate`]; 0 when it did not), else [`default_probes`] of its
/// `lists`.
pub fn index_default_probes(lists: usize, measured: u32) -> usize {
    if measured > 0 {
        measured as usize
    } else {
        default_probes(lists)
    }
}

/// Where an index's default probes come from (see [`index_probes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbesSource {
    /// The index's `probes` option.
    Option,
    /// What its build measured (`crate::calibrate`).
    Measured,
    /// [`default_probes`] of its lists.
    Fixed,
}

impl ProbesSource {
    pub fn name(self) -> &'static str {
        match self {
            ProbesSource::Option => "option",
            ProbesSource::Measured => "measured",
            ProbesSource::Fixed => "fixed",
        }
    }
}

/// The probes a scan of an index takes when no setting says otherwise, and
/// the deep default it goes on to past its first rows (0: none): its `probes`
/// option (`option`, 0 when unset) for every depth, else what its build
/// measured (`measured`: the meta page's `probes` and `deep_probes`; the deep
/// one at least the first), else [`default_probes`] of its `lists`.
pub fn index_probes(
    option: u32,
    lists: usize,
    measured: (u32, u32),
) -> (usize, usize, ProbesSource) {
    if option > 0 {
        return (option as usize, 0, ProbesSource::Option);
    }
    let first = index_default_probes(lists, measured.0);
    if measured.0 == 0 {
        return (first, 0, ProbesSource::Fixed);
    }
    let deep = if measured.1 > 0 {
        (measured.1 as usize).max(first)
    } else {
        0
    };
    (first, deep, ProbesSource::Measured)
}

/// `probes` times `scale` (the `ivfpq.probes_scale` setting), rounded, at least
/// 1 and at most [`MAX_LISTS`]; a scale that is not a positive finite number
/// leaves `probes` as it is.
pub fn scale_probes(probes: usize, scale: f64) -> usize {
    if !(scale.is_finite() && scale > 0.0) {
        return probes;
    }
    ((probes as f64 * scale).round() as usize).clamp(1, MAX_LISTS)
}

/// Candidates (best by estimated distance) re-scored exactly unless the user says
/// otherwise. With the default codes this loses nothing against re-ranking 200
/// once the right lists are probed (SIFT 1.000 and MiniLM 0.998 recall@10 with
/// all lists probed); below 100 recall drops on MiniLM.
pub const DEFAULT_RERANK: usize = 100;

/// Largest `lists` accepted (same bound as pgvector's ivfflat).
pub const MAX_LISTS: usize = 32768;

/// Largest dimension accepted (same as pgvector's `vector`).
pub const MAX_DIM: usize = 16000;

/// Largest code accepted, in bytes, so that several `(tid, code)` entries fit in
/// an 8 kB page.
pub const MAX_CODE_SIZE: usize = 2048;

/// Version byte of [`IvfPqModel::to_bytes`].
pub const MODEL_FORMAT_VERSION: u8 = 1;

const MAGIC: &[u8; 4] = b"AIVP";
const HEADER: usize = 20;

/// Distance the index orders by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Euclidean (`<->`).
    L2,
    /// Negative inner product (`<#>`).
    InnerProduct,
    /// Cosine distance (`<=>`).
    Cosine,
}

impl Metric {
    /// Stable numeric code used in the stored model.
    pub fn to_u8(self) -> u8 {
        match self {
            Metric::L2 => 0,
            Metric::InnerProduct => 1,
            Metric::Cosine => 2,
        }
    }

    /// Inverse of [`Metric::to_u8`].
    pub fn from_u8(v: u8) -> Option<Metric> {
        match v {
            0 => Some(Metric::L2),
            1 => Some(Metric::InnerProduct),
            2 => Some(Metric::Cosine),
            _ => None,
        }
    }
}

/// Build parameters.
#[derive(Clone, Debug)]
pub struct IvfPqParams {
    /// Requested number of inverted lists (the model may get fewer, see
    /// [`IvfPqModel::train`]).
    pub lists: usize,
    /// PQ sub-quantizers; must divide the dimension.
    pub m: usize,
    /// Bits per sub-quantizer code: 4 or 8.
    pub nbits: u32,
    /// Seed of all random choices of training.
    pub seed: u64,
    /// Coarse k-means settings (`seed` there is ignored in favour of `self.seed`).
    pub kmeans: KMeansParams,
    /// PQ training settings (`seed` there is ignored in favour of `self.seed`).
    pub pq: PqTrainParams,
    /// Cancellation of training (the `stop` fields of `kmeans` and `pq` are
    /// ignored in favour of this one); see [`IvfPqModel::train_until`].
    pub stop: Stop,
    /// Bits per dimension of the refine code ([`crate::refine`]): 0 (none), 4 or 8.
    pub refine_bits: u32,
}

impl IvfPqParams {
    /// Parameters with the default seed and k-means settings.
    pub fn new(lists: usize, m: usize, nbits: u32) -> Self {
        IvfPqParams {
            lists,
            m,
            nbits,
            seed: 0x6172_7277_6976_6671,
            kmeans: KMeansParams::default(),
            pq: PqTrainParams::default(),
            stop: Stop::never(),
            refine_bits: 0,
        }
    }
}

/// Number of sample rows worth passing to [`IvfPqModel::train`]: what the coarse
/// k-means and the PQ training actually use (they subsample anything larger). The
/// glue can sample this many rows from the table instead of reading all of them.
pub fn training_sample_size(lists: usize, nbits: u32) -> usize {
    let kp = KMeansParams::default();
    let coarse = lists.saturating_mul(kp.max_points_per_centroid).min(
        kp.max_sample
            .max(lists.saturating_mul(kp.min_points_per_centroid)),
    );
    let pq = (1usize << nbits) * pq::PQ_POINTS_PER_CODEWORD;
    coarse.max(pq)
}

/// Default `(lists, m, nbits)` for a table of `rows` vectors of `dim` dimensions.
///
/// Chosen from measurements (`examples/ivfpq_eval.rs`) on a SIFT set (100k × 128,
/// L2) and a MiniLM sentence-embedding set (75k × 384, cosine) so that
/// [`DEFAULT_PROBES`] probes and [`DEFAULT_RERANK`] re-ranked candidates give
/// recall@10 ≥ 0.95 on both:
/// - `lists`: `rows / 1000`, at least 1 and at most [`MAX_LISTS`]. With ~1000 rows
///   per list, a probe costs about the same at any table size. Above 1M rows this
///   was `sqrt(rows)` (pgvector's advice for ivfflat): at 10M rows that made lists
///   of 3,162 rows, so a query scanned 3× the codes of a 1M-row one for the same
///   probes (192 q/s at recall 0.95 on 10M SIFT rows); two-level k-means
///   ([`crate::kmeans::TWO_LEVEL_MIN`]) keeps the build of 10,000 lists in minutes.
/// - `nbits`: 4, scanned with [`crate::fastscan`]. At equal code bytes (twice the
///   sub-quantizers of 8-bit codes) and 100 re-ranked candidates, recall@10 matched
///   8-bit codes within 0.001 on both sets (SIFT 0.993 vs 0.994, MiniLM 0.957 vs
///   0.957 at 20 probes), while queries ran 1.5–2.1× faster and PQ training 3×
///   faster (16 codewords per sub-quantizer instead of 256). Without re-ranking
///   4-bit codes rank worse (recall 0.70 vs 0.78 on SIFT): `ivfpq.rerank = 0` users
///   should build with `nbits = 8`.
/// - `m`: [`default_m`] for 4 bits.
pub fn default_params(rows: usize, dim: usize) -> (usize, usize, u32) {
    ((rows / 1000).clamp(1, MAX_LISTS), default_m(dim, 4), 4)
}

/// Default number of sub-quantizers for `dim` dimensions and `nbits`-bit codes:
/// the divisor of `dim` closest (in ratio; the larger on ties) to a target of
/// - 8 bits: about 4 dimensions per sub-quantizer, but codes of at most 64 bytes
///   unless the vectors are long (then `dim / 8`);
/// - 4 bits: twice that (the same code bytes), at most 256 sub-quantizers (fast
///   scan sums one byte per sub-quantizer into 16 bits).
///
/// Measured with 8-bit codes and 100 re-ranked candidates: 4 dimensions per
/// sub-quantizer lose nothing against exact search on either set (SIFT m=32,
/// MiniLM m=96), while 8 lose 0.5–1% of recall@10. MiniLM with m=64 (6 dimensions)
/// is within 0.001 of m=96, and its 64-byte codes scan about twice as fast (the
/// lookup table of 96 sub-quantizers, 96 kB, no longer fits the L1 cache). 4-bit
/// codes with twice the sub-quantizers (SIFT 64, MiniLM 128) matched those.
/// At 768 dimensions, where the refine code is on by default, 96-byte 4-bit
/// codes (m = 192) refine a third of the rows 64-byte ones do (183 against 552
/// per `LIMIT 10`) for 1.3× the q/s at recall 0.94 (mpnet 32k, bench/sweep.py);
/// 128-byte ones refine fewer still but scan twice the pages.
pub fn default_m(dim: usize, nbits: u32) -> usize {
    let (target, cap) = m_target(dim, nbits);
    let target = target.max(1) as f64;
    let mut best = 1usize;
    let mut best_err = f64::INFINITY;
    for m in 1..=dim.min(cap) {
        if !dim.is_multiple_of(m) {
            continue;
        }
        let err = (m as f64 / target).ln().abs();
        if err <= best_err {
            best = m;
            best_err = err;
        }
    }
    best
}

/// What to do when [`default_m`] gave `dim` dimensions a code far coarser than
/// usual (`m` sub-quantizers of `nbits`): the hint of the build's NOTICE. It
/// names only what works: a larger divisor of `dim` that the code size limits
/// allow (with `nbits` as it is, else with 8 bits), or, when there is none (a
/// prime count above 2,048, whose only divisors are 1 and a code too wide),
/// padding the vectors with zeros to the next multiple of 8 dimensions whose
/// default code is not coarse, which changes no distance. (It advised
/// `nbits = 8` to a user who had passed it; hunt-130.)
pub fn finer_m_hint(dim: usize, m: usize, nbits: u32) -> String {
    let nearest = |nb: u32| {
        let target = m_target(dim, nb).0.max(1) as f64;
        (m + 1..=dim)
            .filter(|&d| dim.is_multiple_of(d) && validate_params(0, dim, 1, d, nb).is_ok())
            .min_by(|&a, &b| {
                let err = |d: usize| (d as f64 / target).ln().abs();
                err(a).total_cmp(&err(b))
            })
    };
    if let Some(d) = nearest(nbits) {
        return format!("Pass m = {d} ({}-byte codes).", pq::code_size(d, nbits));
    }
    if nbits == 4 {
        if let Some(d) = nearest(8) {
            return format!("Pass nbits = 8 and m = {d} ({d}-byte codes).");
        }
    }
    // The first multiple of 8 from `dim` up whose default code is not coarse
    // (3,992 = 8 × 499 is not, at 4 bits: m = 8).
    let coarse = |p: usize| default_m(p, nbits).saturating_mul(8) < m_target(p, nbits).0;
    let mut padded = dim.next_multiple_of(8);
    while coarse(padded) && padded < MAX_DIM {
        padded += 8;
    }
    format!(
        "No larger m divides {dim} within the code size limits. Pad the vectors with zeros to \
         {padded} dimensions (zeros change no distance); {padded} dimensions get m = {} by default.",
        default_m(padded, nbits)
    )
}

/// The number of sub-quantizers [`default_m`] aims at for `dim` dimensions
/// (before it takes the nearest divisor), and the most it may take.
pub fn m_target(dim: usize, nbits: u32) -> (usize, usize) {
    let bytes = (dim / 4).min((dim / 8).max(64)).clamp(1, MAX_CODE_SIZE);
    if nbits == 4 {
        (
            (2 * bytes).min(2 * fastscan::MAX_CODE_SIZE),
            2 * fastscan::MAX_CODE_SIZE,
        )
    } else {
        (bytes, MAX_CODE_SIZE)
    }
}

/// Checks user-supplied parameters, with messages fit for an `ERROR`.
///
/// `rows` is the table's row estimate; a table smaller than `lists` is accepted (the
/// model then has one list per row, see [`IvfPqModel::train`]).
pub fn validate_params(
    rows: usize,
    dim: usize,
    lists: usize,
    m: usize,
    nbits: u32,
) -> Result<(), String> {
    let _ = rows;
    if dim == 0 {
        return Err("column must have at least 1 dimension".into());
    }
    if dim > MAX_DIM {
        return Err(format!(
            "column cannot have more than {MAX_DIM} dimensions for ivfpq index"
        ));
    }
    if lists == 0 || lists > MAX_LISTS {
        return Err(format!(
            "lists must be between 1 and {MAX_LISTS}, not {lists}"
        ));
    }
    if nbits != 4 && nbits != 8 {
        return Err(format!("nbits must be 4 or 8, not {nbits}"));
    }
    if m == 0 {
        return Err("m must be at least 1".into());
    }
    if !dim.is_multiple_of(m) {
        let suggest = default_m(dim, nbits);
        return Err(format!(
            "m must divide the number of dimensions ({dim}); {m} does not (try {suggest})"
        ));
    }
    let cs = pq::code_size(m, nbits);
    if nbits == 4 && cs > fastscan::MAX_CODE_SIZE {
        return Err(format!(
            "with nbits = 4, m can be at most {} (codes of at most {} bytes), not {m}",
            2 * fastscan::MAX_CODE_SIZE,
            fastscan::MAX_CODE_SIZE
        ));
    }
    if cs > MAX_CODE_SIZE {
        return Err(format!(
            "m = {m} makes {cs}-byte codes; the maximum is {MAX_CODE_SIZE} bytes"
        ));
    }
    Ok(())
}

/// L2-normalises `x` in place; zero vectors stay zero (and vectors with a
/// NaN element stay as they are).
///
/// The length is summed in `f32`, as the exact `<=>` does, unless that
/// overflows: elements near 1e19 square past `f32::MAX`, and a cosine index
/// left such rows unnormalised, so k-means and the codebooks trained on them
/// beside unit vectors (1% of rows at 1e19 made 15 of 20 `LIMIT` answers on
/// real embeddings differ from a sequential scan; hunt-48). Then the length
/// is summed in `f64`. A length that underflows stays as `f32` gives it (the
/// exact `<=>`, as pgvector's, sees such a row at distance 0 from every query,
/// and a code of its true direction put it far from where the exact order
/// has it; hunt-50).
pub fn normalize(x: &mut [f32]) {
    let n = distance::dot(x, x).sqrt();
    if n > 0.0 && n.is_finite() {
        let inv = 1.0 / n;
        x.iter_mut().for_each(|v| *v *= inv);
        return;
    }
    if n == f32::INFINITY {
        let n = distance::norm_squared_f64(x).sqrt();
        if n.is_finite() {
            x.iter_mut().for_each(|v| *v = (f64::from(*v) / n) as f32);
        }
    }
}

/// The distance a metric's results are ordered by, computed exactly on full
/// vectors: squared L2 (monotone in `<->`), negative inner product (`<#>`), or
/// cosine distance `1 - cos` (`<=>`, NaN if either vector is zero, as in pgvector).
pub fn exact_distance(metric: Metric, q: &[f32], x: &[f32]) -> f32 {
    exact_parts(metric, q, x).distance()
}

/// The sums an exact distance is made of, as the distance operators of SQL
/// compute them (`<->` is the square root of `L2Squared`, `<#>` the negated
/// `Dot`, `<=>` one minus the clamped `ab / sqrt(aa * bb)`, all in `f64`). The
/// kernels are symmetric bit for bit (`distance`'s tests), so the sums of
/// `(q, x)` finish to the same `f64` as an operator's of `(x, q)`; src/handed.rs
/// relies on that.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExactParts {
    L2Squared(f32),
    Dot(f32),
    Cosine { ab: f32, aa: f32, bb: f32 },
}

/// The sums of `metric`'s exact distance between `q` and `x`.
pub fn exact_parts(metric: Metric, q: &[f32], x: &[f32]) -> ExactParts {
    match metric {
        Metric::L2 => ExactParts::L2Squared(distance::l2_squared(q, x)),
        Metric::InnerProduct => ExactParts::Dot(distance::dot(q, x)),
        Metric::Cosine => {
            let (ab, aa, bb) = distance::cosine_parts(q, x);
            ExactParts::Cosine { ab, aa, bb }
        }
    }
}

impl ExactParts {
    /// The index's distance ([`exact_distance`]): squared L2, negated inner
    /// product, cosine distance.
    pub fn distance(self) -> f32 {
        match self {
            ExactParts::L2Squared(d) => d,
            ExactParts::Dot(d) => -d,
            ExactParts::Cosine { ab, aa, bb } => distance::cosine_from_parts(ab, aa, bb) as f32,
        }
    }

    /// [`ExactParts::distance`], and what rounding it to `f32` dropped from the
    /// `f64` the SQL operator returns ([`f32_and_tie`]; 0 for L2 and inner
    /// product, whose SQL values are monotone in their `f32` sums): rows whose
    /// distances round to one `f32` are ordered by it
    /// ([`crate::rerank::OrderedRerank::add_tied`]).
    pub fn distance_tie(self) -> (f32, i32) {
        match self {
            ExactParts::Cosine { ab, aa, bb } => {
                f32_and_tie(distance::cosine_from_parts(ab, aa, bb))
            }
            other => (other.distance(), 0),
        }
    }
}

/// `d` rounded to `f32`, and what the rounding dropped, counted in `f64`
/// steps (units in the last place; 0 for NaN and the infinities): the pair
/// orders like `d` itself, so a queue keyed by `f32` distances can order rows
/// of one `f32` by the `f64` an SQL operator returns
/// (`OrderedRerank::add_tied`, [`ExactPasses::offer_tied`]). Within one `f32`
/// there are 2^29 `f64`s, which an `i32` counts exactly; the difference as an
/// `f32` (what it was) kept 24 bits of it, and cosine distances a few `f64`
/// steps apart (0.29289321881345254 and 0.2928932188134524) came out in the
/// wrong order. Below the smallest `f32` (|d| < 1e-45) the count saturates.
pub fn f32_and_tie(d: f64) -> (f32, i32) {
    let r = d as f32;
    if !d.is_finite() {
        return (r, 0);
    }
    // `r` is `d` rounded, of the same sign: bit patterns grow with magnitude.
    let (a, b) = (d.to_bits() as i64, f64::from(r).to_bits() as i64);
    let steps = if d.is_sign_negative() { b - a } else { a - b };
    (
        r,
        steps.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
    )
}

/// The order key of a tie ([`f32_and_tie`]): monotone, as an unsigned key.
pub fn tie_key(tie: i32) -> u32 {
    (tie as u32) ^ 0x8000_0000
}

/// Rows whose nearest lists are found in one pass by the batch encoders.
const ENCODE_CHUNK: usize = 256;

/// Bytes of rows one chunk of the batch encoders copies (its residuals):
/// wide rows take fewer rows a chunk (16,000-d: 16 rows, 1 MB). Each
/// computing thread's allocator arena kept a freed chunk copy of 256 such
/// rows (16 MB) beside the build's budget.
const ENCODE_CHUNK_BYTES: usize = 1 << 20;

/// Rows per chunk of the batch encoders for rows of `dim` floats: at most
/// [`ENCODE_CHUNK`], at most [`ENCODE_CHUNK_BYTES`] of rows, at least 8.
fn encode_chunk_rows(dim: usize) -> usize {
    (ENCODE_CHUNK_BYTES / (dim.max(1) * 4)).clamp(8, ENCODE_CHUNK)
}

/// What [`IvfPqModel::encode_batch_fine_until`] returns, per row: its list,
/// its PQ code, its refine code and whether that is faithful.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedBatch {
    pub lists: Vec<u32>,
    pub codes: Vec<u8>,
    pub fine: Vec<u8>,
    pub faithful: Vec<bool>,
}

/// Tails of the training residuals left outside the refine code's range (see
/// [`crate::refine`]), per dimension, for [`refine_clip`]`(4)`.
pub const REFINE_CLIP: f64 = 0.001;

/// The tails a refine code of `bits` bits per dimension clips. 4 bits: the
/// 0.1% tails, whose range is worth the resolution. 8 bits: none. A row is
/// stored as usable only when its quantisation error stays within the code's
/// worst case for in-range values (`ResidualSq::encode`), and 8-bit steps are
/// 17x finer, so one clipped value among 768 outweighs that bound: with the
/// 0.1% tails clipped, most 768-d rows (1 - 0.998^768 = 78% have a clipped
/// value) were re-ranked from the table instead of refined (pairs set: 259-313
/// rows a `LIMIT 10`, against 29-30 at 4 bits).
pub fn refine_clip(bits: u32) -> f64 {
    if bits >= 8 {
        0.0
    } else {
        REFINE_CLIP
    }
}

/// An estimated distance (from codes, or a centroid distance from
/// [`IvfPqModel::rank_lists`]) in the space of [`exact_distance`]: estimates under
/// cosine are squared L2 distances between normalized vectors, `2 (1 - cos)`.
pub fn estimate_as_distance(metric: Metric, estimate: f32) -> f32 {
    match metric {
        Metric::Cosine => 0.5 * estimate,
        _ => estimate,
    }
}

/// A trained IVF-PQ model. The public fields are the stored data; do not modify
/// them (private structures derived from them are built at construction).
#[derive(Clone, Debug)]
pub struct IvfPqModel {
    /// Distance the index orders by.
    pub metric: Metric,
    /// Vector dimensions.
    pub dim: usize,
    /// Number of inverted lists (can be below the requested number, see
    /// [`IvfPqModel::train`]).
    pub lists: usize,
    /// `lists × dim` coarse centroids, row-major.
    pub centroids: Vec<f32>,
    /// Residual product quantizer.
    pub pq: ProductQuantizer,
    /// The refine code's quantizer of list residuals `x − c` (`crate::refine`),
    /// when the index keeps one. Stored apart from [`IvfPqModel::to_bytes`].
    pub refine: Option<ResidualSq>,
    /// Rows are placed in, and queries rank lists by, the centroid of largest
    /// cosine similarity (the centroid's direction) rather than the centroid
    /// itself: always for cosine, and for inner product when the training
    /// sample was unit length (normalised embeddings compared by `<#>`, and
    /// MaxSim over them), where inner product and cosine agree. The centroids
    /// stay the clusters' means, residuals are taken from them, and estimates
    /// are unchanged. See the module docs' "Metrics".
    pub direction_lists: bool,
    coarse: Panels,
    /// What queries rank lists by when the centroids take at least
    /// [`HALF_RANK_MIN_BYTES`] (`crate::halfpanels`): `coarse` in half precision.
    coarse_half: Option<HalfPanels>,
    /// 4-bit (fast-scan) L2/cosine models: per list, the query-independent part
    /// of every 16-entry table row (see [`IvfPqModel::list_terms`]), `lists × mp × 16`,
    /// kept when it takes at most [`FAST_TERMS_MAX_BYTES`]; computed per probed list
    /// otherwise.
    fast_terms: Option<Vec<f32>>,
}

/// Memory cap of a model's precomputed fast-scan terms (per backend that loads it).
/// 100 lists × 64-byte codes take 0.8 MB; the cap is reached at ~4,000 lists of
/// 64-byte codes, where computing a list's terms per probe (`16 × dim`
/// multiply-adds) is still cheap next to scanning its ~1000 codes.
pub const FAST_TERMS_MAX_BYTES: usize = 32 << 20;

/// Size of the `f32` centroids from which queries rank lists from a
/// half-precision copy (`crate::halfpanels`): beyond the L2 cache of a core
/// (1 MB: 2,048 lists of 128 dimensions, 683 of 384), where reading them is
/// most of the ranking's time. Smaller models rank in `f32` (a copy would
/// save a few microseconds).
pub const HALF_RANK_MIN_BYTES: usize = 1 << 20;

impl IvfPqModel {
    /// Trains the coarse centroids and the residual PQ on `sample` (`n × dim`,
    /// row-major), in parallel, deterministically for `params.seed`.
    ///
    /// `lists` of the result is `min(params.lists, n)`, at least 1: a table smaller
    /// than the requested `lists` gets one list per sampled row (see
    /// [`crate::kmeans`]). With an empty sample the model has one list with a zero
    /// centroid and zero codebooks: every row then lands in that list with the same
    /// code, and an index built that way still returns correct results after exact
    /// re-ranking, but only if the whole list is re-ranked (the estimates are all
    /// equal); the glue should warn, as pgvector does, and suggest `REINDEX` once the
    /// table has data.
    ///
    /// Panics on invalid shapes (check with [`validate_params`] first).
    pub fn train(sample: &[f32], dim: usize, metric: Metric, params: &IvfPqParams) -> Self {
        Self::train_until(sample, dim, metric, params)
            .expect("training with a Stop that was requested: use train_until")
    }

    /// [`IvfPqModel::train`] that returns `Err(Stopped)` soon after `params.stop`
    /// is requested (between blocks of a k-means step, k-means++ picks or
    /// sub-quantizers; see [`crate::stop`]).
    pub fn train_until(
        sample: &[f32],
        dim: usize,
        metric: Metric,
        params: &IvfPqParams,
    ) -> Result<Self, Stopped> {
        if let Err(e) = validate_params(0, dim, params.lists, params.m, params.nbits) {
            panic!("{e}");
        }
        assert_eq!(
            sample.len() % dim,
            0,
            "sample length is not a multiple of dim"
        );
        let data = prepare_many(metric, sample, dim);
        let n = data.len() / dim;
        // Lists by centroid direction (spherical k-means' partition, means
        // kept for residuals): always for cosine, whose sample prepare_many
        // made unit length; for inner product when the sample already is.
        let direction = metric == Metric::Cosine
            || (metric == Metric::InnerProduct && n > 0 && all_unit_length(&data, dim));
        let kp = KMeansParams {
            seed: params.seed,
            stop: params.stop.clone(),
            spherical: params.kmeans.spherical || direction,
            ..params.kmeans.clone()
        };
        let pq_params = PqTrainParams {
            seed: params.seed.wrapping_add(1),
            stop: params.stop.clone(),
            ..params.pq.clone()
        };
        // Progress: the coarse k-means, then the sub-quantizers' (crate::stop).
        params.stop.plan(
            kmeans::planned_work(n, params.lists, &kp)
                + ProductQuantizer::planned_work(n, params.m, params.nbits, &pq_params),
        );
        let mut centroids = kmeans::train(&data, dim, params.lists, &kp);
        params.stop.check()?;
        if centroids.is_empty() {
            centroids = vec![0.0; dim];
        }
        let coarse = coarse_panels(metric, direction, &centroids, dim);

        let residuals = pq_training_residuals(&data, dim, &centroids, &coarse, params)?;
        let pq = ProductQuantizer::train_with(&residuals, dim, params.m, params.nbits, &pq_params);
        params.stop.check()?;
        let mut model = IvfPqModel::assemble(metric, dim, centroids, pq, coarse, direction);
        if params.refine_bits > 0 && !residuals.is_empty() {
            // The same list residuals the PQ was trained on; the tails of
            // `refine_clip` are clipped (see crate::refine).
            model.refine = Some(ResidualSq::train(
                &residuals,
                dim,
                params.refine_bits,
                refine_clip(params.refine_bits),
            ));
        }
        Ok(model)
    }

    fn assemble(
        metric: Metric,
        dim: usize,
        centroids: Vec<f32>,
        pq: ProductQuantizer,
        coarse: Panels,
        direction_lists: bool,
    ) -> Self {
        let lists = centroids.len() / dim;
        let coarse_half = if lists * dim * 4 >= HALF_RANK_MIN_BYTES {
            HalfPanels::of(&coarse)
        } else {
            None
        };
        let mut model = IvfPqModel {
            metric,
            dim,
            lists,
            centroids,
            pq,
            direction_lists,
            coarse,
            coarse_half,
            fast_terms: None,
            refine: None,
        };
        let per_list = model.fast_row_count() * 16;
        if model.is_fast()
            && !list_free_tables(metric)
            && lists * per_list * 4 <= FAST_TERMS_MAX_BYTES
        {
            let mut t = vec![0f32; lists * per_list];
            par::chunks_mut(&mut t, per_list)
                .enumerate()
                .for_each(|(l, out)| model.list_terms(l as u32, out));
            model.fast_terms = Some(t);
        }
        model
    }

    /// True when codes are 4-bit and scanned with [`crate::fastscan`] (their pages
    /// hold blocks of 32 transposed codes).
    pub fn is_fast(&self) -> bool {
        self.pq.nbits == 4
    }

    /// Rows of a fast-scan table: `2 × code_size` (an odd `m` gets a zero row).
    fn fast_row_count(&self) -> usize {
        2 * self.code_size()
    }

    /// The query-independent part of list `list`'s fast-scan table for L2/cosine:
    /// `out[q][k] = ||w_qk||² + 2 c_q·w_qk`, where `c_q` is the list centroid's
    /// `q`-th sub-vector and `w_qk` codeword `k` of sub-quantizer `q`. With
    /// `||q_q - c_q - w||² = ||q_q - c_q||² + out[q][k] - 2 q_q·w`, a query adds
    /// its own `-2 q_q·w_qk` (the same for every list) and the coarse distance
    /// `||q - c||²` (a constant per list).
    fn list_terms(&self, list: u32, out: &mut [f32]) {
        let dsub = self.pq.dsub();
        let c = self.centroid(list);
        out.fill(0.0);
        for q in 0..self.pq.m {
            let cq = &c[q * dsub..(q + 1) * dsub];
            for k in 0..16 {
                let w = self.pq.codeword(q, k);
                let (mut ww, mut cw) = (0f32, 0f32);
                for (&a, &b) in w.iter().zip(cq) {
                    ww += a * a;
                    cw += a * b;
                }
                out[q * 16 + k] = ww + 2.0 * cw;
            }
        }
    }

    /// Rebuilds a model from its stored parts (lists by direction for cosine
    /// only; see [`IvfPqModel::from_parts_with`]).
    pub fn from_parts(
        metric: Metric,
        dim: usize,
        centroids: Vec<f32>,
        pq: ProductQuantizer,
    ) -> Result<Self, String> {
        Self::from_parts_with(metric, dim, centroids, pq, metric == Metric::Cosine)
    }

    /// [`IvfPqModel::from_parts`] with [`IvfPqModel::direction_lists`] given
    /// (forced on for cosine).
    pub fn from_parts_with(
        metric: Metric,
        dim: usize,
        centroids: Vec<f32>,
        pq: ProductQuantizer,
        direction_lists: bool,
    ) -> Result<Self, String> {
        let direction = direction_lists || metric == Metric::Cosine;
        if dim == 0 || centroids.is_empty() || !centroids.len().is_multiple_of(dim) {
            return Err(format!(
                "centroids have {} values, not a positive multiple of {dim}",
                centroids.len()
            ));
        }
        if pq.dim != dim {
            return Err(format!("PQ has {} dimensions, expected {dim}", pq.dim));
        }
        let coarse = coarse_panels(metric, direction, &centroids, dim);
        Ok(IvfPqModel::assemble(
            metric, dim, centroids, pq, coarse, direction,
        ))
    }

    /// Attaches a refine quantizer read from disk; refuses one of another
    /// dimension.
    pub fn set_refine(&mut self, sq: ResidualSq) -> Result<(), String> {
        if sq.dim() != self.dim {
            return Err(format!(
                "refine model has {} dimensions, the model {}",
                sq.dim(),
                self.dim
            ));
        }
        self.refine = Some(sq);
        Ok(())
    }

    /// Bytes per refine code (0 without one).
    pub fn fine_size(&self) -> usize {
        self.refine.as_ref().map_or(0, |r| r.code_size())
    }

    /// Bytes per stored code.
    pub fn code_size(&self) -> usize {
        self.pq.code_size()
    }

    /// Centroid of `list`.
    pub fn centroid(&self, list: u32) -> &[f32] {
        let l = list as usize;
        &self.centroids[l * self.dim..(l + 1) * self.dim]
    }

    /// The list a vector belongs to.
    pub fn assign(&self, x: &[f32]) -> u32 {
        assert_eq!(x.len(), self.dim);
        self.assign_prepared(&prepare(self.metric, x))
    }

    fn assign_prepared(&self, x: &[f32]) -> u32 {
        let (mut i, mut s) = ([0u32], [0f32]);
        self.coarse.nearest(x, self.dim, 0, &mut i, &mut s);
        i[0]
    }

    /// Encodes a vector: writes its code (`code_size()` bytes) and returns its list.
    pub fn encode(&self, x: &[f32], code: &mut [u8]) -> u32 {
        self.encode_fine(x, code, &mut []).0
    }

    /// [`IvfPqModel::encode`] that also writes the refine code into `fine`
    /// (`fine_size()` bytes; empty without a refine quantizer); the flag says
    /// whether the refine code is faithful ([`ResidualSq::encode`]; true
    /// without one).
    pub fn encode_fine(&self, x: &[f32], code: &mut [u8], fine: &mut [u8]) -> (u32, bool) {
        assert_eq!(x.len(), self.dim);
        assert_eq!(fine.len(), self.fine_size());
        let mut r = prepare(self.metric, x).into_owned();
        let list = self.assign_prepared(&r);
        r.iter_mut()
            .zip(self.centroid(list))
            .for_each(|(v, &c)| *v -= c);
        self.pq.encode(&r, code);
        let faithful = self.refine.as_ref().is_none_or(|sq| sq.encode(&r, fine));
        (list, faithful)
    }

    /// Encodes `n` contiguous vectors in parallel: their lists and their codes
    /// (`n × code_size()` bytes). Same results as [`IvfPqModel::encode`] per row.
    pub fn encode_batch(&self, vectors: &[f32]) -> (Vec<u32>, Vec<u8>) {
        self.encode_batch_until(vectors, &Stop::never())
            .expect("never stopped")
    }

    /// [`IvfPqModel::encode_batch`] that checks `stop` between chunks of 256 rows.
    pub fn encode_batch_until(
        &self,
        vectors: &[f32],
        stop: &Stop,
    ) -> Result<(Vec<u32>, Vec<u8>), Stopped> {
        self.encode_batch_fine_until(vectors, stop)
            .map(|e| (e.lists, e.codes))
    }

    /// [`IvfPqModel::encode_batch_until`] that also returns the refine codes
    /// (`n × fine_size()` bytes; empty without a refine quantizer) and which
    /// of them are faithful.
    pub fn encode_batch_fine_until(
        &self,
        vectors: &[f32],
        stop: &Stop,
    ) -> Result<EncodedBatch, Stopped> {
        let dim = self.dim;
        // Each row is scored against every list: a chunk is also the longest a
        // thread runs on after a stop (kmeans::block_rows).
        let chunk = encode_chunk_rows(dim).min(kmeans::block_rows(
            self.coarse.padded_rows(),
            dim,
            ENCODE_CHUNK,
        ));
        assert_eq!(vectors.len() % dim, 0);
        let n = vectors.len() / dim;
        let cs = self.code_size();
        let fs = self.fine_size();
        let mut lists = vec![0u32; n];
        let mut codes = vec![0u8; n * cs];
        let mut fine = vec![0u8; n * fs];
        let mut faithful = vec![true; n];
        // A chunk of fine codes per chunk of rows (a zero-sized code still
        // needs one chunk per row chunk for the zip).
        let mut dummy = vec![0u8; n.div_ceil(chunk)];
        let (fine_chunks, fine_chunk) = if fs > 0 {
            (&mut fine[..], chunk * fs)
        } else {
            (&mut dummy[..], 1)
        };
        par::chunks(vectors, chunk * dim)
            .zip(par::chunks_mut(&mut lists, chunk))
            .zip(par::chunks_mut(&mut codes, chunk * cs))
            .zip(par::chunks_mut(fine_chunks, fine_chunk))
            .zip(par::chunks_mut(&mut faithful, chunk))
            .for_each(|((((x, l), c), f), ok)| {
                if stop.requested() {
                    return;
                }
                self.encode_chunk(x, l, c, f, ok);
            });
        stop.check()?;
        Ok(EncodedBatch {
            lists,
            codes,
            fine,
            faithful,
        })
    }

    /// [`IvfPqModel::encode_batch_fine_until`] on the calling thread only,
    /// for callers that must not start threads (an insert's buffered rows,
    /// encoded inside a backend). Same results.
    pub fn encode_batch_fine_serial(&self, vectors: &[f32]) -> EncodedBatch {
        let dim = self.dim;
        assert_eq!(vectors.len() % dim, 0);
        let n = vectors.len() / dim;
        let (cs, fs) = (self.code_size(), self.fine_size());
        let mut out = EncodedBatch {
            lists: vec![0u32; n],
            codes: vec![0u8; n * cs],
            fine: vec![0u8; n * fs],
            faithful: vec![true; n],
        };
        for (start, x) in (0..n)
            .step_by(encode_chunk_rows(dim))
            .zip(vectors.chunks(encode_chunk_rows(dim) * dim))
        {
            let rows = start..(start + encode_chunk_rows(dim)).min(n);
            self.encode_chunk(
                x,
                &mut out.lists[rows.clone()],
                &mut out.codes[rows.start * cs..rows.end * cs],
                &mut out.fine[rows.start * fs..rows.end * fs],
                &mut out.faithful[rows],
            );
        }
        out
    }

    /// Encodes the rows of `x` (row-major) into their lists `l`, codes `c`
    /// and refine codes `f` (empty, or one per row; `ok` says which are
    /// faithful): the nearest centroids of the whole chunk in one pass, then
    /// each row's residual.
    fn encode_chunk(&self, x: &[f32], l: &mut [u32], c: &mut [u8], f: &mut [u8], ok: &mut [bool]) {
        let dim = self.dim;
        let fs = self.fine_size();
        let mut r = prepare_many(self.metric, x, dim).into_owned();
        let mut s = vec![0f32; l.len()];
        self.coarse.nearest(&r, dim, 0, l, &mut s);
        for (row, &li) in r.chunks_exact_mut(dim).zip(l.iter()) {
            row.iter_mut()
                .zip(self.centroid(li))
                .for_each(|(v, &cv)| *v -= cv);
        }
        self.pq.encode_many(&r, c);
        if let Some(sq) = &self.refine {
            for ((row, out), ok) in r.chunks_exact(dim).zip(f.chunks_exact_mut(fs)).zip(ok) {
                *ok = sq.encode(row, out);
            }
        }
    }

    /// The `nprobe` lists closest to `q` (by the metric), best first, with their
    /// distance (squared L2 to the centroid, or `-q·c`).
    pub fn rank_lists(&self, q: &[f32], nprobe: usize) -> Vec<(u32, f32)> {
        let q = prepare(self.metric, q);
        self.rank_prepared(&q, nprobe)
    }

    fn rank_prepared(&self, q: &[f32], nprobe: usize) -> Vec<(u32, f32)> {
        let mut r = RankedLists::new(self.distances_prepared(q));
        let k = nprobe.min(r.len());
        r.order_through(k);
        r.all()[..k].to_vec()
    }

    /// Every list with the query's distance to its centroid (L2: squared; inner
    /// product and cosine: negated inner product with the prepared query), in
    /// list order; [`RankedLists`] orders them as far as a scan needs.
    pub fn list_distances(&self, q: &[f32]) -> Vec<(u32, f32)> {
        let q = prepare(self.metric, q);
        self.distances_prepared(&q)
    }

    /// 16 centroids at a time through the panel kernel (the centroids of 10,000
    /// lists are 5 MB at 128 dimensions: one pass over them, vectorised, instead of
    /// a distance call per centroid), from their half-precision copy when the
    /// model keeps one (see [`HALF_RANK_MIN_BYTES`]).
    fn distances_prepared(&self, q: &[f32]) -> Vec<(u32, f32)> {
        assert_eq!(q.len(), self.dim);
        let mut t = vec![0f32; self.coarse.padded_rows()];
        match (self.metric, &self.coarse_half) {
            (Metric::InnerProduct, Some(h)) => h.dots(q, &mut t),
            (Metric::InnerProduct, None) => self.coarse.dots(q, &mut t),
            (_, Some(h)) if h.squared_distances(q, &mut t) => {}
            _ => self.coarse.squared_distances(q, &mut t),
        }
        let ip = self.metric == Metric::InnerProduct;
        t[..self.lists]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, if ip { -v } else { v }))
            .collect()
    }

    /// Drops the half-precision copy of the centroids, so that lists are
    /// ranked from the `f32` ones (for measurements and tests; models keep the
    /// copy from [`HALF_RANK_MIN_BYTES`]).
    #[doc(hidden)]
    pub fn rank_lists_in_f32(&mut self) {
        self.coarse_half = None;
    }

    /// Prepares a query for scanning lists.
    pub fn query_tables(&self, q: &[f32]) -> QueryTables<'_> {
        QueryTables::new(self, q)
    }

    /// The query as the index sees it (normalised for cosine), as
    /// [`QueryTables::query`] gives it, without building the tables.
    pub fn prepared_query(&self, q: &[f32]) -> Vec<f32> {
        prepare(self.metric, q).into_owned()
    }

    /// Serialises the model (layout in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER + 4 * (self.centroids.len() + self.pq.codebooks.len()));
        out.extend_from_slice(MAGIC);
        out.push(MODEL_FORMAT_VERSION);
        out.push(self.metric.to_u8());
        out.push(self.pq.nbits as u8);
        out.push(u8::from(
            self.direction_lists && self.metric == Metric::InnerProduct,
        ));
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.lists as u32).to_le_bytes());
        out.extend_from_slice(&(self.pq.m as u32).to_le_bytes());
        for v in self.centroids.iter().chain(&self.pq.codebooks) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parses [`IvfPqModel::to_bytes`] output, checking every size.
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() < HEADER || &b[0..4] != MAGIC {
            return Err("not an ivfpq model".into());
        }
        if b[4] != MODEL_FORMAT_VERSION {
            return Err(format!(
                "ivfpq model format version {} is not supported (expected {MODEL_FORMAT_VERSION}); REINDEX",
                b[4]
            ));
        }
        let metric = Metric::from_u8(b[5]).ok_or_else(|| format!("unknown metric {}", b[5]))?;
        let nbits = u32::from(b[6]);
        if b[7] > 1 {
            return Err(format!("unknown ivfpq model flags {:#x}", b[7]));
        }
        let direction = b[7] & 1 == 1;
        let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
        let (dim, lists, m) = (u(8), u(12), u(16));
        validate_params(0, dim, lists, m, nbits)?;
        let ncent = lists * dim;
        let ncb = m * (1usize << nbits) * (dim / m);
        let want = HEADER + 4 * (ncent + ncb);
        if b.len() != want {
            return Err(format!("ivfpq model is {} bytes, expected {want}", b.len()));
        }
        let floats: Vec<f32> = b[HEADER..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (cent, cb) = floats.split_at(ncent);
        let pq = ProductQuantizer::new(dim, m, nbits, cb.to_vec())?;
        Self::from_parts_with(metric, dim, cent.to_vec(), pq, direction)
    }
}

/// Whether every row of `data` has unit length (squared norm within 1% of 1:
/// float16 rounding and float accumulation stay far inside that).
fn all_unit_length(data: &[f32], dim: usize) -> bool {
    data.chunks_exact(dim)
        .all(|x| (distance::dot(x, x) - 1.0).abs() <= 0.01)
}

/// The list residuals PQ is trained on: a subsample of `data` (at most
/// `2^nbits × points_per_codeword` rows), each less the centroid of its nearest
/// list. Returns `Err(Stopped)` soon after `params.stop` is requested: finding
/// the nearest lists is `rows × lists × dim` multiply-adds, seconds at
/// `nbits = 8` (16,384 rows) against tens of thousands of lists, and a cancel
/// waited for all of it (hunt-130).
fn pq_training_residuals(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    coarse: &Panels,
    params: &IvfPqParams,
) -> Result<Vec<f32>, Stopped> {
    let n = data.len() / dim;
    let limit = (1usize << params.nbits).saturating_mul(params.pq.points_per_codeword.max(1));
    let rows: Vec<usize> = if n > limit {
        let mut rng = StdRng::seed_from_u64(params.seed ^ 0x7265_7369_6475_616c);
        let mut v = rand::seq::index::sample(&mut rng, n, limit).into_vec();
        v.sort_unstable();
        v
    } else {
        (0..n).collect()
    };
    let mut residuals = Vec::with_capacity(rows.len() * dim);
    for &i in &rows {
        residuals.extend_from_slice(&data[i * dim..(i + 1) * dim]);
    }
    let mut labels = vec![0u32; rows.len()];
    let mut scores = vec![0f32; rows.len()];
    coarse.nearest_par_until(&residuals, &mut labels, &mut scores, &params.stop);
    params.stop.check()?;
    par::chunks_mut(&mut residuals, dim)
        .zip(par::iter(&labels))
        .for_each(|(r, &l)| {
            let c = &centroids[l as usize * dim..(l as usize + 1) * dim];
            r.iter_mut().zip(c).for_each(|(v, &cv)| *v -= cv);
        });
    Ok(residuals)
}

/// What rows are assigned to and queries rank lists by: the centroids
/// (inner product: largest `x·c`; L2: nearest), or with `direction` (which
/// every caller sets for cosine) their directions (largest cosine similarity,
/// the partition of spherical k-means; [`crate::kmeans::KMeansParams::spherical`]).
/// Residuals stay relative to the means ([`IvfPqModel::centroid`]).
fn coarse_panels(metric: Metric, direction: bool, centroids: &[f32], dim: usize) -> Panels {
    debug_assert!(direction || metric != Metric::Cosine);
    let bias = match metric {
        Metric::InnerProduct => Bias::Zero,
        Metric::L2 | Metric::Cosine => Bias::HalfSquaredNorm,
    };
    if direction {
        Panels::new(&kmeans::unit_rows(centroids, dim), dim, bias)
    } else {
        Panels::new(centroids, dim, bias)
    }
}

/// True when a 4-bit model's byte table is the same for every list, only its
/// bias changing ([`QueryTables::set_list`]): inner product, where the table is
/// the query's own terms `-q·w` and the list only adds `-q·c`, so it is
/// quantized once per query instead of once per list probed.
///
/// Not cosine, though its unit rows and queries would allow it (`|q - x̂|² =
/// 2 - 2 q·x̂` up to the code's error): tried 2026-12-07, the query's table
/// `-2 q·w` spans more than a list's `|w|² - 2 (q - c)·w` (the query's part
/// along the centroid cancels in the latter), so its 8-bit steps are coarser,
/// and on pydoc-minilm a `LIMIT 10` refined 239 candidates instead of 174
/// (`LIMIT 100`: 2,313 instead of 1,855) for the same recall (ARCHITECTURE.md,
/// "Levers measured offline").
pub(crate) fn list_free_tables(metric: Metric) -> bool {
    metric == Metric::InnerProduct
}

fn prepare(metric: Metric, x: &[f32]) -> Cow<'_, [f32]> {
    if metric == Metric::Cosine {
        let mut v = x.to_vec();
        normalize(&mut v);
        Cow::Owned(v)
    } else {
        Cow::Borrowed(x)
    }
}

fn prepare_many(metric: Metric, x: &[f32], dim: usize) -> Cow<'_, [f32]> {
    if metric == Metric::Cosine {
        let mut v = x.to_vec();
        par::chunks_mut(&mut v, dim).for_each(normalize);
        Cow::Owned(v)
    } else {
        Cow::Borrowed(x)
    }
}

/// Everything one query needs to score codes: the prepared query (normalised for
/// cosine) and the tables of the list being scanned.
///
/// 8-bit models score row-major codes with a float [`AdcTable`]. For L2/cosine the
/// table depends on the list (it is built from the residual `q - c`, `256 × dim`
/// operations per list); for inner product it is built once and only its bias
/// `-q·c` changes per list.
///
/// 4-bit models ([`IvfPqModel::is_fast`]) score blocks of 32 codes with a byte
/// table ([`FastTable`]); a list's float table is the sum of the model's
/// precomputed list terms and the query's own terms (`mp × 16` additions), then
/// quantized.
#[derive(Clone, Debug)]
pub struct QueryTables<'a> {
    model: &'a IvfPqModel,
    query: Vec<f32>,
    table: AdcTable,
    residual: Vec<f32>,
    list: Option<u32>,
    fast: Option<FastQuery>,
}

/// A query's [`QueryTables`] without their model ([`QueryTables::into_parts`]).
#[derive(Clone, Debug)]
pub struct QueryParts {
    /// Address of the model they were made with (checked, never dereferenced).
    model: usize,
    query: Vec<f32>,
    table: AdcTable,
    residual: Vec<f32>,
    list: Option<u32>,
    fast: Option<FastQuery>,
}

/// The fast-scan state of a query.
#[derive(Clone, Debug)]
struct FastQuery {
    /// Query terms, `mp × 16`: `-2 q_q·w_qk` (L2/cosine) or `-q_q·w_qk` (inner
    /// product).
    qterms: Vec<f32>,
    /// The current list's float table (`mp × 16`) and its bias.
    float: Vec<f32>,
    bias: f32,
    /// With [`list_free_tables`]: the quantized table's offset for a bias of 0,
    /// once `table` holds the query's terms (quantized once per query).
    shared_offset: Option<f32>,
    /// Scratch for list terms computed on the fly.
    scratch: Vec<f32>,
    /// The current list's quantized table.
    table: FastTable,
}

impl<'a> QueryTables<'a> {
    /// Prepares `q` (raw, as the user wrote it) for `model`.
    pub fn new(model: &'a IvfPqModel, q: &[f32]) -> Self {
        assert_eq!(q.len(), model.dim, "query has the wrong dimension");
        let query = prepare(model.metric, q).into_owned();
        let fast = model.is_fast().then(|| {
            let rows = model.fast_row_count();
            let dsub = model.pq.dsub();
            let factor = if model.metric == Metric::InnerProduct {
                -1.0
            } else {
                -2.0
            };
            let mut qterms = vec![0f32; rows * 16];
            for j in 0..model.pq.m {
                let qj = &query[j * dsub..(j + 1) * dsub];
                // The 16 codewords' dot products side by side: sixteen
                // independent sums, one dimension at a time (a dot product
                // per codeword was a chain of dependent additions of `dsub`
                // terms each, ~15 µs a query at 384 dimensions).
                let book = &model.pq.codebooks[j * 16 * dsub..(j + 1) * 16 * dsub];
                let mut acc = [0f32; 16];
                for (d, &qv) in qj.iter().enumerate() {
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a += qv * book[k * dsub + d];
                    }
                }
                for (o, a) in qterms[j * 16..j * 16 + 16].iter_mut().zip(acc) {
                    *o = factor * a;
                }
            }
            FastQuery {
                float: vec![0.0; rows * 16],
                scratch: vec![0.0; rows * 16],
                bias: 0.0,
                shared_offset: None,
                table: FastTable::zeros(rows),
                qterms,
            }
        });
        let mut table = AdcTable::new(if fast.is_some() { 0 } else { model.code_size() });
        if model.metric == Metric::InnerProduct && fast.is_none() {
            model.pq.neg_ip_table(&query, &mut table);
        }
        QueryTables {
            model,
            residual: vec![0.0; model.dim],
            query,
            table,
            list: None,
            fast,
        }
    }

    /// Hands back the query's state without the model: the prepared query, its
    /// fast-scan terms and the table buffers. A scan that probes lists in
    /// several rounds (iterative scans, re-offers) keeps them and resumes with
    /// [`QueryTables::from_parts`] instead of preparing the query again
    /// (`QueryTables::new` computes `m × 16` dot products and allocates the
    /// tables: ~3% of a 384-d `LIMIT 10` when it ran per round).
    pub fn into_parts(self) -> QueryParts {
        QueryParts {
            model: self.model as *const IvfPqModel as usize,
            query: self.query,
            table: self.table,
            residual: self.residual,
            list: self.list,
            fast: self.fast,
        }
    }

    /// The tables [`QueryTables::into_parts`] took apart, for the same model.
    ///
    /// # Panics
    /// If `model` is not the model the parts were made with (compared by
    /// address: the caller keeps that model alive and in place meanwhile).
    pub fn from_parts(model: &'a IvfPqModel, parts: QueryParts) -> Self {
        assert_eq!(
            parts.model, model as *const IvfPqModel as usize,
            "query tables resumed with another model"
        );
        QueryTables {
            model,
            query: parts.query,
            table: parts.table,
            residual: parts.residual,
            list: parts.list,
            fast: parts.fast,
        }
    }

    /// The query as the index sees it (normalised for cosine).
    pub fn query(&self) -> &[f32] {
        &self.query
    }

    /// [`IvfPqModel::rank_lists`] for this query.
    pub fn rank_lists(&self, nprobe: usize) -> Vec<(u32, f32)> {
        self.model.rank_prepared(&self.query, nprobe)
    }

    /// Makes `list` the list whose codes are scored next.
    pub fn set_list(&mut self, list: u32) {
        assert!((list as usize) < self.model.lists, "no list {list}");
        if self.list == Some(list) {
            return;
        }
        let model = self.model;
        let c = model.centroid(list);
        if let Some(f) = self.fast.as_mut() {
            if list_free_tables(model.metric) {
                // `-q·(c + r̂) = -q·c - Σ q·w`: only the bias depends on the
                // list; the byte table is the query's own terms, quantized
                // once per query.
                f.bias = -distance::dot(&self.query, c);
                let base = match f.shared_offset {
                    Some(o) => o,
                    None => {
                        f.float.copy_from_slice(&f.qterms);
                        f.table.quantize(&f.float, 0.0);
                        f.shared_offset = Some(f.table.offset);
                        f.table.offset
                    }
                };
                f.table.offset = base + f.bias;
                self.list = Some(list);
                return;
            }
            match model.metric {
                Metric::InnerProduct => unreachable!("list-free tables"),
                Metric::L2 | Metric::Cosine => {
                    let n = f.float.len();
                    let terms: &[f32] = match &model.fast_terms {
                        Some(t) => &t[list as usize * n..(list as usize + 1) * n],
                        None => {
                            model.list_terms(list, &mut f.scratch);
                            &f.scratch
                        }
                    };
                    for ((o, &a), &b) in f.float.iter_mut().zip(terms).zip(&f.qterms) {
                        *o = a + b;
                    }
                    f.bias = distance::l2_squared(&self.query, c);
                }
            }
            f.table.quantize(&f.float, f.bias);
            self.list = Some(list);
            return;
        }
        match model.metric {
            Metric::InnerProduct => {
                self.table.bias = -distance::dot(&self.query, c);
            }
            Metric::L2 | Metric::Cosine => {
                for ((r, &q), &cv) in self.residual.iter_mut().zip(&self.query).zip(c) {
                    *r = q - cv;
                }
                model.pq.l2_table(&self.residual, &mut self.table);
            }
        }
        self.list = Some(list);
    }

    /// The ADC table of the current list (8-bit models; empty for 4-bit ones).
    pub fn table(&self) -> &AdcTable {
        &self.table
    }

    /// Estimated distance of one (row-major) code of the current list. For 4-bit
    /// models this is the unquantized float estimate.
    pub fn distance(&self, code: &[u8]) -> f32 {
        debug_assert!(self.list.is_some(), "set_list first");
        match &self.fast {
            Some(f) => {
                let mut s = f.bias;
                for q in 0..2 * code.len() {
                    let nib = (code[q / 2] >> (4 * (q % 2))) & 15;
                    s += f.float[q * 16 + nib as usize];
                }
                s
            }
            None => pq::adc_distance(&self.table, code),
        }
    }

    /// Estimated distances of contiguous (row-major) codes of the current list.
    /// 8-bit models only: 4-bit codes are scanned in blocks ([`Self::scan_blocks`]).
    pub fn scan(&self, codes: &[u8], out: &mut [f32]) {
        debug_assert!(self.list.is_some(), "set_list first");
        if self.fast.is_some() {
            let cs = self.model.code_size();
            for (c, o) in codes.chunks_exact(cs).zip(out.iter_mut()) {
                *o = self.distance(c);
            }
            return;
        }
        adc_scan(&self.table, codes, self.model.code_size(), out);
    }

    /// Estimated distances of the first `n` codes held in `blocks` (whole
    /// [`fastscan`] blocks of the current list; 4-bit models only) into `out[..n]`.
    pub fn scan_blocks(&self, blocks: &[u8], n: usize, out: &mut [f32]) {
        assert!(out.len() >= n);
        self.block_sums(blocks, n, |table, lo, lanes, sums| {
            for (o, &s) in out[lo..lo + lanes].iter_mut().zip(sums) {
                *o = table.estimate(s);
            }
        });
    }

    /// Byte sums of the first `n` codes held in `blocks` (4-bit models only),
    /// a block at a time: `each(table, first lane, lanes, sums)`.
    fn block_sums(
        &self,
        blocks: &[u8],
        n: usize,
        mut each: impl FnMut(&FastTable, usize, usize, &[u16; fastscan::BLOCK]),
    ) {
        let f = self.fast.as_ref().expect("scan_blocks needs a 4-bit model");
        debug_assert!(self.list.is_some(), "set_list first");
        let cs = self.model.code_size();
        let bb = fastscan::block_bytes(cs);
        assert!(blocks.len() >= n.div_ceil(fastscan::BLOCK) * bb);
        let mut sums = [0u16; fastscan::BLOCK];
        for (bi, b) in blocks
            .chunks_exact(bb)
            .take(n.div_ceil(fastscan::BLOCK))
            .enumerate()
        {
            fastscan::scan(&f.table, b, cs, &mut sums);
            let lo = bi * fastscan::BLOCK;
            each(&f.table, lo, (n - lo).min(fastscan::BLOCK), &sums);
        }
    }

    /// As [`Self::scan_blocks`], but keeps only the lanes whose estimate is not
    /// above `below`: their indices go to `idx` and their estimates (the same
    /// values `scan_blocks` gives) to `est`, in lane order (both cleared first).
    /// NaN estimates are kept, and every lane is kept when `below` is NaN.
    ///
    /// Why: once a scan's candidate pool is full, most codes are worse than
    /// anything it keeps ([`CandidatePool::upper_estimate`]). Their byte sums
    /// are compared with the bound in the table's own units, 32 at a time, so
    /// a rejected code costs neither its float estimate nor a store.
    pub fn scan_blocks_below(
        &self,
        blocks: &[u8],
        n: usize,
        below: f32,
        idx: &mut Vec<u32>,
        est: &mut Vec<f32>,
    ) {
        idx.clear();
        est.clear();
        let mut limit = None;
        self.block_sums(blocks, n, |table, lo, lanes, sums| {
            let limit = *limit.get_or_insert_with(|| fastscan::sum_limit(table, below));
            let mut mask = fastscan::lanes_at_most(sums, limit) & (u32::MAX >> (32 - lanes));
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let e = table.estimate(sums[j]);
                // The byte-sum limit is conservative: the float comparison
                // decides (NaN is kept, as documented).
                if not_above(e, below) {
                    idx.push((lo + j) as u32);
                    est.push(e);
                }
            }
        });
    }

    /// Scores contiguous (row-major) codes of the current list and offers each to
    /// `top` with the matching item of `items` (e.g. the row's heap TID). 4-bit
    /// codes are packed into blocks first.
    pub fn scan_into<T: Copy>(&self, codes: &[u8], items: &[T], top: &mut TopK<T>) {
        const CHUNK: usize = 64;
        let cs = self.model.code_size();
        assert_eq!(codes.len(), items.len() * cs, "codes/items length mismatch");
        let mut buf = [0f32; CHUNK];
        for (c, it) in codes.chunks(CHUNK * cs).zip(items.chunks(CHUNK)) {
            let d = &mut buf[..it.len()];
            if self.fast.is_some() && cs > 0 {
                self.scan_blocks(&fastscan::pack(c, cs), it.len(), d);
            } else {
                self.scan(c, d);
            }
            for (&dist, &item) in d.iter().zip(it) {
                top.push(dist, item);
            }
        }
    }
}

/// `e` is not above `bound` (true when either is NaN).
#[inline]
pub fn not_above(e: f32, bound: f32) -> bool {
    e.partial_cmp(&bound) != Some(std::cmp::Ordering::Greater)
}

/// Keeps the `capacity` smallest distances seen, with their items.
///
/// A binary max-heap on distance: the worst kept candidate is at the root, so once
/// full, rejecting a candidate that cannot enter (the common case deep into a scan)
/// is one comparison. NaN distances count as `+inf`; on equal distances the earlier
/// candidate is kept.
#[derive(Clone, Debug)]
pub struct TopK<T> {
    cap: usize,
    heap: Vec<(f32, T)>,
}

impl<T: Copy> TopK<T> {
    /// An empty heap keeping at most `capacity` candidates.
    pub fn new(capacity: usize) -> Self {
        TopK {
            cap: capacity,
            heap: Vec::with_capacity(capacity),
        }
    }

    /// Maximum number of candidates kept.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Number of candidates kept.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Distance a new candidate must beat to enter: the worst kept one once full,
    /// `+inf` before.
    pub fn threshold(&self) -> f32 {
        if self.heap.len() == self.cap && self.cap > 0 {
            self.heap[0].0
        } else {
            f32::INFINITY
        }
    }

    /// Offers a candidate; returns whether it was kept.
    #[inline]
    pub fn push(&mut self, dist: f32, item: T) -> bool {
        let dist = if dist.is_nan() { f32::INFINITY } else { dist };
        if self.heap.len() == self.cap {
            if self.cap == 0 || dist >= self.heap[0].0 {
                return false;
            }
            self.heap[0] = (dist, item);
            self.sift_down(0);
        } else {
            self.heap.push((dist, item));
            self.sift_up(self.heap.len() - 1);
        }
        true
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let p = (i - 1) / 2;
            if self.heap[p].0 >= self.heap[i].0 {
                break;
            }
            self.heap.swap(p, i);
            i = p;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.heap[r].0 > self.heap[l].0 {
                r
            } else {
                l
            };
            if self.heap[c].0 <= self.heap[i].0 {
                break;
            }
            self.heap.swap(c, i);
            i = c;
        }
    }

    /// The kept candidates, best (smallest distance) first.
    pub fn into_sorted_vec(self) -> Vec<(f32, T)> {
        let mut v = self.heap;
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }
}

/// Lists by distance to the query, put in order only as far as a scan reads
/// them: a scan probes a few dozen of thousands of lists, and sorting all of
/// them cost more than ranking them at 10,000 lists. Ties break by list number.
#[derive(Clone, Debug, Default)]
pub struct RankedLists {
    lists: Vec<(u32, f32)>,
    /// `lists[..ordered]` are the nearest, in order.
    ordered: usize,
}

impl RankedLists {
    /// Lists with their distances (any order).
    pub fn new(lists: Vec<(u32, f32)>) -> Self {
        RankedLists { lists, ordered: 0 }
    }

    /// Number of lists.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// True when there are no lists.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Puts the nearest `n` lists in order (and a few more: the next call
    /// orders at least twice as many, so a scan probing one list at a time
    /// sorts in a few growing chunks).
    pub fn order_through(&mut self, n: usize) {
        let n = n.min(self.lists.len());
        if n <= self.ordered {
            return;
        }
        let n = n.max(self.ordered.saturating_mul(2)).min(self.lists.len());
        let by = |a: &(u32, f32), b: &(u32, f32)| {
            order_key(a.1).cmp(&order_key(b.1)).then(a.0.cmp(&b.0))
        };
        let rest = &mut self.lists[self.ordered..];
        let k = n - self.ordered;
        if k < rest.len() {
            rest.select_nth_unstable_by(k - 1, by);
        }
        rest[..k].sort_unstable_by(by);
        self.ordered = n;
    }

    /// The `i`-th nearest list and its distance (`order_through(i + 1)` first).
    pub fn get(&self, i: usize) -> (u32, f32) {
        assert!(i < self.ordered, "list {i} not ordered yet");
        self.lists[i]
    }

    /// All lists: the first `order_through` ones in order, the rest in any.
    pub fn all(&self) -> &[(u32, f32)] {
        &self.lists
    }
}

/// The candidates of an index scan, handed out best first in batches.
///
/// An index scan scores every code of the probed lists (tens of thousands, a
/// few hundred thousand at 10M rows) but usually needs only its first batch
/// (`ivfpq.rerank` candidates, ~100), sometimes a few dozen (a selective
/// `WHERE`, a deep `LIMIT`). Three tiers keep the work per code at about one
/// comparison:
///
/// - `near` holds every kept candidate whose estimate is at most `near_bound`
///   (at least `batch` of them once that bound is finite). The bound is lowered
///   whenever `near` grows to 4 batches, so a batch is selected from a few
///   hundred entries.
/// - `far` holds the other kept candidates, all above `near_bound` (or NaN).
/// - Candidates whose estimate is not below `upper` are not kept at all: when
///   `near` and `far` together exceed `2 × keep`, about the best `keep` stay
///   (a threshold read from a sample, then one pass) and `upper` becomes that
///   threshold. A code at or above `upper` then costs one comparison and no
///   store (storing every code, and trimming to `work_mem`, was most of the
///   selection time at 10M rows: 152k codes a query).
///
/// Nothing is lost. When every kept candidate has been popped and some were
/// dropped ([`CandidatePool::needs_reoffer`]), the caller offers every code of
/// the same lists again between [`CandidatePool::begin_reoffer`] and
/// [`CandidatePool::end_reoffer`]: those below the old `upper` (handed out
/// already) are skipped, the others kept as the first time. `upper` always
/// stays above every candidate popped (a list probed after some pops may hold
/// candidates better than those popped: a cut keeps all of them), so a re-offer
/// never brings one back, and above the best candidate held, so each re-offer
/// makes progress. Pops therefore return exactly the best-first order of
/// everything offered, to any depth, holding about `2 × keep` candidates.
/// Candidates compare by their estimate's [`order_key`] (NaN last), and
/// candidates of one estimate by their item's [`PoolTie`]: the thresholds
/// (`upper`, the re-offer's lower bound, the last one popped) are such pairs
/// ([`pool_key`]), so a cut can split a group of equal estimates. Identical or
/// nearly identical rows share a code, and so an estimate, by the thousand;
/// a cut that could only keep or drop such a group whole, once it outgrew
/// `cap`, kept `cap` of it at random and lost the rest: a `LIMIT 10` over
/// 3,000 near-duplicates at `work_mem = 64kB` missed every true neighbour,
/// and once two better rows of another list came, returned those two alone.
///
/// `cap` is the caller's `work_mem` bound: if a cut would have to keep more
/// than `cap` (that many candidates before the last one popped), the best `cap`
/// stay, the pool stops re-offering, and what it dropped is lost, until a
/// later cut's threshold falls to where the lost ones begin (a re-offer then
/// brings them back).
#[derive(Clone, Debug)]
pub struct CandidatePool<T> {
    near: Vec<(f32, T)>,
    far: Vec<(f32, T)>,
    near_bound: f32,
    /// Candidates whose [`pool_key`] is at or above this were dropped since
    /// the last re-offer began (`None`: none were).
    upper: Option<u64>,
    /// During a re-offer, the old `upper`: candidates below it were kept (and
    /// handed out) in an earlier round.
    lower: Option<u64>,
    /// The largest [`pool_key`] popped.
    popped_max: Option<u64>,
    /// The `cap` forced a cut: no more re-offers.
    lossy: bool,
    /// The smallest [`pool_key`] a lossy cut dropped: a later `upper` at or
    /// below it ends the loss (a re-offer brings all of them back).
    lossy_from: Option<u64>,
    /// The most candidates a lossy cut had to keep (what `cap` would have had
    /// to be): [`CandidatePool::lost`].
    lossy_need: usize,
    /// Candidates popped so far ([`CandidatePool::popped`]).
    popped: usize,
    batch: usize,
    keep: usize,
    cap: usize,
    /// [`CandidatePool::best`] since the last change (a scan asks for it before
    /// every row it hands out, far more often than the pool changes).
    best: Option<Option<f32>>,
}

/// Candidates a pool keeps at least, whatever its batch (see
/// [`CandidatePool::new`]: 8 batches, at least this many). Each cut costs a
/// pass over `2 × keep` entries and a deep scan re-offers every `keep`
/// candidates it pops; the first matters to every query, so it starts small
/// and doubles at each re-offer. A `LIMIT 10` hands out ~150–250 candidates.
/// 2,048 (or 16 batches) cut less often, but the cuts (selection included)
/// were ~11% of a 1M-row SIFT `LIMIT 10`; at 1,024, interleaved A/B
/// (bench/ab.py, 20 rounds): 1M SIFT `LIMIT 10` and `LIMIT 100` +6%,
/// pydoc-minilm `LIMIT 10` +11%, dev-sift with a filter keeping 55% of rows
/// (bench/ab.py's `--filter 0.1` then: its signed hash put every negative one
/// under the bound) `LIMIT 10` +9% and `LIMIT 100` +2%, pydoc-minilm with that
/// filter +4%; pydoc-minilm `LIMIT
/// 100` without a filter (~1,800 candidates refined: it re-offers) −4%.
const POOL_KEEP_MIN: usize = 1024;

/// Candidates a pool keeps at least for a scan that will hand out a few
/// settled rows and refines its candidates before reading any from the table
/// ([`short_pool_keep`]).
pub const SHORT_POOL_KEEP_MIN: usize = 256;

/// How many candidates the pool of a short refined scan (a `LIMIT` of at
/// most [`crate::calibrate::CALIBRATION_K`], no filter, an index with a refine
/// code) keeps, given `demand`: what recent such scans of the same index
/// popped on average ([`ShortDemand`]; `None`: none yet).
///
/// Such a scan pops what its refine stage needs to settle its rows, which
/// depends on the data more than on `batch`: ~175 candidates for a `LIMIT 10`
/// on 384-d MiniLM rows (the first `rerank` to learn the margins, then those
/// still within them), ~500 on 768-d rows whose 4-bit estimates err more.
/// Keeping [`POOL_KEEP_MIN`] (1,024) made each cut a pass over 2,048 entries
/// and let several times more codes through the scan's bound than the refine
/// stage looks at: at 384 dimensions the pool's selection was ~14% of the
/// query (59 µs of `SET ivfpq.profile`'s ~420, pydoc-minilm, probes 14), 37
/// µs keeping 256. Keeping fewer than a scan pops costs a re-offer of every
/// probed list (the keep then doubles), which on 768-d rows (~500 popped) made
/// a fixed 256 12% slower. So the pool keeps twice the recent demand, at
/// least [`SHORT_POOL_KEEP_MIN`] and at most what [`CandidatePool::new`]
/// keeps; with no demand known yet, what `new` keeps.
pub fn short_pool_keep(batch: usize, demand: Option<f64>) -> usize {
    let batch = batch.max(1);
    let full = batch.saturating_mul(8).max(POOL_KEEP_MIN);
    match demand {
        Some(d) if d.is_finite() && d >= 0.0 => {
            ((2.0 * d).ceil() as usize).clamp(SHORT_POOL_KEEP_MIN.min(full), full)
        }
        _ => full,
    }
}

/// The average candidates popped by recent short refined scans of one index
/// ([`short_pool_keep`]): an exponential moving average that gives the latest
/// scan a quarter of the weight, so a change of data or settings is followed
/// within a few queries.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShortDemand(Option<f64>);

impl ShortDemand {
    /// The average so far (`None`: no scan recorded).
    pub fn get(self) -> Option<f64> {
        self.0
    }

    /// Records a scan that popped `popped` candidates.
    pub fn record(&mut self, popped: usize) {
        let p = popped as f64;
        self.0 = Some(match self.0 {
            Some(d) => 0.75 * d + 0.25 * p,
            None => p,
        });
    }
}

/// Most candidates a batch of `k` takes once ties with its last estimate are
/// added: all of them (the pool holds at most `cap`, what `work_mem` allows).
///
/// It was 16 batches, at least 1,024, on the reasoning that identical vectors
/// (a placeholder embedding, a chunk repeated across documents) share one code
/// and one estimate by the thousand, and that their exact distances are equal
/// too, so the margin their first rows teach holds for the rest. Near-copies
/// break that: the query's own row (`p × 1.001`, one code with 3,000 copies of
/// `p`) was left in the part of its group not taken, behind a margin the
/// copies had taught, and a `LIMIT 3` missed the row at distance 0 with every
/// list probed. Only reading a row tells a copy from a near-copy, so the whole
/// group is re-ranked: a `LIMIT 10` next to 10,000 copies reads 10,000 rows.
pub fn tie_batch_limit(_k: usize) -> usize {
    usize::MAX
}

impl<T: PoolTie> CandidatePool<T> {
    /// A pool whose first `batch` best candidates are kept apart cheaply, holding at
    /// most about `2 × cap` candidates (see the type's docs).
    pub fn new(batch: usize, cap: usize) -> Self {
        let batch = batch.max(1);
        let keep = batch.saturating_mul(8).max(POOL_KEEP_MIN);
        Self::with_keep(batch, keep, cap)
    }

    /// As [`CandidatePool::new`], keeping about `keep` candidates when it cuts
    /// (tests use small ones to exercise re-offers).
    pub fn with_keep(batch: usize, keep: usize, cap: usize) -> Self {
        let cap = cap.max(1);
        CandidatePool {
            near: Vec::new(),
            far: Vec::new(),
            near_bound: f32::INFINITY,
            upper: None,
            lower: None,
            popped_max: None,
            lossy: false,
            lossy_from: None,
            lossy_need: 0,
            popped: 0,
            batch: batch.max(1),
            keep: keep.clamp(1, cap),
            cap,
            best: None,
        }
    }

    /// Candidates held.
    pub fn len(&self) -> usize {
        self.near.len() + self.far.len()
    }

    /// True when no candidate is held (some may still have been dropped: see
    /// [`CandidatePool::needs_reoffer`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offers `dists.len()` candidates, the `i`-th with item `item(i)` (one page
    /// of a list). `item` is called for the candidates kept (and for those
    /// whose estimate equals a bound of the pool: their [`PoolTie`] decides).
    pub fn push_all(&mut self, dists: &[f32], item: impl Fn(usize) -> T) {
        self.offer(dists.iter().copied().enumerate(), item);
    }

    /// [`Self::push_all`] and [`Self::push_some`]: offers `(index, estimate)`
    /// pairs.
    #[inline]
    fn offer(&mut self, cands: impl Iterator<Item = (usize, f32)>, item: impl Fn(usize) -> T) {
        self.best = None;
        // The bounds as estimates, for one float comparison per code; equal
        // estimates, NaN and -0.0 against 0.0 take the order keys.
        let up = self.upper.map_or(f32::INFINITY, key_to_f32);
        let low = self.lower.map_or(f32::NEG_INFINITY, key_to_f32);
        let near_bound = self.near_bound;
        for (i, d) in cands {
            let mut at_bound = None;
            if !(d < up && d > low) {
                if d > up || d < low {
                    continue;
                }
                let it = item(i);
                let k = pool_key(d, &it);
                if self.upper.is_some_and(|u| k >= u) || self.lower.is_some_and(|l| k < l) {
                    continue;
                }
                at_bound = Some(it);
            }
            let it = at_bound.unwrap_or_else(|| item(i));
            // NaN fails the comparison and goes to `far`.
            if d <= near_bound {
                self.near.push((d, it));
            } else {
                self.far.push((d, it));
            }
        }
        if self.near.len() >= self.batch.saturating_mul(4).max(64) {
            self.tighten_to(self.batch);
        }
        if self.len() > self.keep.saturating_mul(2) {
            self.cut(self.keep);
        }
    }

    /// The best estimate that may still be popped: of the candidates held, or
    /// (none held) a lower bound on those dropped. NaN only when every estimate
    /// is NaN.
    pub fn best(&mut self) -> Option<f32> {
        if let Some(b) = self.best {
            return b;
        }
        // What a lossy cut dropped is gone: reporting it would have a scan wait
        // for candidates no re-offer brings back.
        let dropped = self.upper.filter(|_| !self.lossy).map(key_to_f32);
        let b = self.find_best().or(dropped);
        self.best = Some(b);
        b
    }

    fn find_best(&self) -> Option<f32> {
        // Everything in `near` is at most the bound and everything in `far`
        // above it (or NaN), so the best is in `near` unless it is empty.
        let v = if self.near.is_empty() {
            &self.far
        } else {
            &self.near
        };
        v.iter().map(|c| c.0).min_by_key(|&d| order_key(d))
    }

    /// An estimate above which nothing offered now would be kept (+inf while
    /// nothing was dropped): a scan may skip such codes before offering them
    /// ([`QueryTables::scan_blocks_below`]). Candidates equal to it may still be
    /// kept, so skip only those above.
    pub fn upper_estimate(&self) -> f32 {
        self.upper.map_or(f32::INFINITY, key_to_f32)
    }

    /// Offers the candidates `idx[i]` with estimate `est[i]` (one page's codes
    /// not above [`Self::upper_estimate`]); `item` maps an index to its item and
    /// is called as in [`Self::push_all`]. The same as offering the page's
    /// every code with [`Self::push_all`] when the codes left out are above
    /// that bound.
    pub fn push_some(&mut self, idx: &[u32], est: &[f32], item: impl Fn(usize) -> T) {
        assert_eq!(idx.len(), est.len(), "indices/estimates length mismatch");
        self.offer(
            idx.iter().map(|&i| i as usize).zip(est.iter().copied()),
            item,
        );
    }

    /// Offers one candidate.
    pub fn push(&mut self, dist: f32, item: T) {
        self.push_all(&[dist], |_| item);
    }

    /// Keeps the best `k` entries of `near`, moves the others to `far` and lowers
    /// the bound to the worst kept estimate.
    fn tighten_to(&mut self, k: usize) {
        if self.near.len() <= k {
            return;
        }
        select_best(&mut self.near, k);
        // NaN estimates belong in `far` (every `near` entry is at most the
        // bound, and the bound below is the largest finite one): with fewer
        // than `k` finite estimates the selection leaves NaN among the first
        // `k`. Kept in `near`, a NaN was popped ahead of a finite candidate
        // offered later into `far` (pop_best selects from `near` alone when it
        // holds enough; a proptest seed in proptest-regressions/ivf.txt).
        let mut k = k;
        let mut i = 0;
        while i < k {
            if self.near[i].0.is_nan() {
                k -= 1;
                self.near.swap(i, k);
            } else {
                i += 1;
            }
        }
        self.near_bound = self.near[..k]
            .iter()
            .map(|e| e.0)
            .fold(f32::NEG_INFINITY, f32::max);
        self.far.extend(self.near.drain(k..));
    }

    /// Moves every candidate back to `near` (the bound no longer separates).
    fn merge(&mut self) {
        if self.near.len() < self.far.len() {
            std::mem::swap(&mut self.near, &mut self.far);
        }
        self.near.append(&mut self.far);
        self.near_bound = f32::INFINITY;
    }

    /// Keeps about the best `n` candidates held (all of those not above the
    /// last one popped, and at least the best); the others are dropped and
    /// `upper` becomes the threshold.
    fn cut(&mut self, n: usize) {
        if self.len() <= n {
            return;
        }
        if self.cut_far(n) {
            return;
        }
        self.merge();
        let v = &mut self.near;
        // The threshold: the key of rank ~n, read from a sample of at most
        // ~512 keys (a cut happens once per `keep` candidates kept).
        let step = (v.len() / 512).max(1);
        let mut sample: Vec<u64> = v
            .iter()
            .step_by(step)
            .map(|e| pool_key(e.0, &e.1))
            .collect();
        let r = (n / step).min(sample.len() - 1);
        // A group of equal estimates is kept or dropped whole (pop_best then
        // hands it out in one batch: see there), so the threshold is the start
        // of the sampled key's group.
        let t = group_start(*sample.select_nth_unstable(r).1);
        // `upper` stays above the best held (progress) and every popped one,
        // with their groups.
        let min = v
            .iter()
            .map(|e| pool_key(e.0, &e.1))
            .min()
            .expect("non-empty");
        let (floor, whole_floor) = Self::floors(min, self.popped_max);
        let mut t = t.max(whole_floor);
        let before_cut = v.len();
        if t <= POOL_KEY_MAX {
            v.retain(|e| pool_key(e.0, &e.1) < t);
        }
        if v.len() > self.cap {
            // The sample overshot the cap, or a group of equal estimates is
            // larger than it (NaN estimates included, whose group ends past
            // every key): the exact threshold, which splits that group by row
            // rather than keep a random part of it (cut_lossy). A NaN group
            // once went lossy here, and the finite candidates dropped by
            // earlier cuts were never offered again.
            v.select_nth_unstable_by_key(self.cap, |e| pool_key(e.0, &e.1));
            let exact = pool_key(v[self.cap].0, &v[self.cap].1);
            if exact >= floor {
                t = exact;
                v.retain(|e| pool_key(e.0, &e.1) < t);
            }
        }
        // Everything held was below the old `upper`: `upper` only moves down
        // between re-offers (and only when something was dropped).
        if v.len() < before_cut {
            self.set_upper(t);
        }
        // Still above the cap: more candidates than `cap` lie below `floor`
        // (or every estimate is NaN).
        if self.len() > self.cap {
            self.cut_lossy();
        }
        // Split what is kept again: about 4 batches in `near` (the sample's
        // estimate at that rank), the rest in `far`.
        let r_near = (self.batch.saturating_mul(4) / step).min(r);
        self.near_bound = if r_near == 0 {
            f32::NEG_INFINITY
        } else {
            key_to_f32(*sample[..r].select_nth_unstable(r_near - 1).1)
        };
        let (near, far, nb) = (&mut self.near, &mut self.far, self.near_bound);
        near.retain(|e| {
            // NaN fails the comparison and goes to `far`.
            let keep = e.0 <= nb;
            if !keep {
                far.push(*e);
            }
            keep
        });
    }

    /// [`Self::cut`] without merging `near` and `far`, when the threshold lies
    /// above `near_bound`: every `near` entry stays, one pass over `far` drops
    /// what is not below the threshold and moves what falls under the new
    /// `near` bound into `near`. A scan cuts every few thousand codes it keeps;
    /// merging and splitting the whole pool each time (three passes and a copy
    /// of ~4,000 entries) was a tenth of a `LIMIT 10`'s time at 384
    /// dimensions. Returns false, changing nothing, when it does not apply
    /// (`near_bound` not below the threshold, or the cut would keep more than
    /// `cap`: the general path handles both).
    fn cut_far(&mut self, n: usize) -> bool {
        if self.near.is_empty() || self.near_bound.is_nan() || self.near_bound == f32::INFINITY {
            return false;
        }
        // The largest key `near` may hold: every entry of its bound's estimate.
        let nb_key = (u64::from(order_key(self.near_bound)) << 32) | u64::from(TIE_MAX);
        let total = self.len();
        let step = (total / 512).max(1);
        let mut sample: Vec<u64> = self
            .near
            .iter()
            .chain(self.far.iter())
            .step_by(step)
            .map(|e| pool_key(e.0, &e.1))
            .collect();
        let r = (n / step).min(sample.len() - 1);
        let t = group_start(*sample.select_nth_unstable(r).1);
        // `upper` stays above the best held (in `near`, which is not empty and
        // below every `far` entry) and above every popped one, with their
        // groups of equal estimates (as in `cut`).
        let min = self
            .near
            .iter()
            .map(|e| pool_key(e.0, &e.1))
            .min()
            .expect("non-empty");
        let t = t.max(Self::floors(min, self.popped_max).1);
        if t > POOL_KEY_MAX || t <= nb_key {
            return false;
        }
        // The new `near` bound: the sample's estimate at ~4 batches (as the
        // general path), but never below the current one (`near` keeps all
        // it holds).
        let r_near = (self.batch.saturating_mul(4) / step).min(r);
        let mut nb = self.near_bound;
        if r_near > 0 {
            let k = *sample[..r].select_nth_unstable(r_near - 1).1;
            if k < t {
                nb = nb.max(key_to_f32(k));
            }
        }
        // (Counting is needed only when the pool could hold more than `cap`.)
        if total > self.cap
            && self.near.len() + self.far.iter().filter(|e| pool_key(e.0, &e.1) < t).count()
                > self.cap
        {
            return false;
        }
        let before = total;
        let (near, far) = (&mut self.near, &mut self.far);
        far.retain(|e| {
            if pool_key(e.0, &e.1) >= t {
                return false;
            }
            // Below t, hence not NaN.
            if e.0 <= nb {
                near.push(*e);
                return false;
            }
            true
        });
        self.near_bound = nb;
        if self.len() < before {
            self.set_upper(t);
        }
        true
    }

    /// The least thresholds a cut may set, given the least key held: above it
    /// and every popped key (`.0`: progress), and (`.1`) above their whole
    /// groups of equal estimates, which a cut keeps together while they fit.
    fn floors(min: u64, popped_max: Option<u64>) -> (u64, u64) {
        let mut floor = min + 1;
        let mut whole = group_end(min);
        if let Some(p) = popped_max {
            floor = floor.max(p + 1);
            whole = whole.max(group_end(p));
        }
        (floor, whole)
    }

    /// Candidates from `t` on are dropped (to be offered again). A loss of an
    /// earlier lossy cut ends when they all lie at or above `t`: the next
    /// re-offer brings them back, and nothing popped (all below `t`) with them.
    fn set_upper(&mut self, t: u64) {
        self.upper = Some(t);
        if self.lossy_from.is_some_and(|l| t <= l) {
            self.lossy = false;
            self.lossy_from = None;
        }
    }

    /// Keeps exactly the best `cap` and gives up on re-offers (they could bring
    /// back what was popped).
    fn cut_lossy(&mut self) {
        self.merge();
        let cap = self.cap;
        self.lossy_need = self.lossy_need.max(self.near.len());
        if self.near.len() > cap {
            self.near
                .select_nth_unstable_by_key(cap, |e| pool_key(e.0, &e.1));
            let lost = self.near[cap..].iter().map(|e| pool_key(e.0, &e.1)).min();
            self.lossy_from = match (self.lossy_from, lost) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.near.truncate(cap);
        }
        self.lossy = true;
    }

    /// Drops all but about the best `n` candidates (they are offered again by
    /// the next re-offer).
    pub fn keep_best(&mut self, n: usize) {
        self.best = None;
        self.cut(n.max(1));
    }

    /// Removes and returns the `k` best candidates held (in no particular
    /// order), and every other one whose estimate equals the worst of them: a
    /// batch never splits candidates of equal estimate that the pool holds
    /// ([`tie_batch_limit`]; a group larger than `cap` is split by a cut).
    ///
    /// A scan learns how far estimates fall short of exact distances from the
    /// rows it re-ranks, and hands a row out once no waiting estimate less
    /// that margin could beat it. Equal estimates are common where codes are
    /// coarse (few dimensions per sub-quantizer, a wide range: 190 rows of a
    /// 4-d table shared one estimate) and their exact distances spread over
    /// the whole cell; a batch that took ten of them learnt the errors of
    /// those ten, and the row of the cell that lay furthest from its estimate
    /// was handed out after rows it should have preceded.
    pub fn pop_best(&mut self, k: usize) -> Vec<(f32, T)> {
        self.best = None;
        // Every `near` entry is ≤ bound < every `far` entry, so the best k of all
        // are in `near` when it holds k of them.
        if k > self.near.len() && !self.far.is_empty() {
            self.merge();
            // A deep scan pops batch after batch: keep the next batches apart
            // again, so each pop selects from a few thousand entries, not from
            // every candidate left (16 batches: a LIMIT 100 at 384 dimensions
            // pops ~15 and merged the whole pool every fourth with 4).
            self.tighten_to(k.saturating_mul(16).max(64));
            // Fewer finite estimates than `k`: the NaN ones (which tighten_to
            // keeps in `far`) come next, all of them in `near` again.
            if k > self.near.len() && !self.far.is_empty() {
                self.merge();
            }
        }
        let mut k = k.min(self.near.len());
        select_best(&mut self.near, k);
        // NaN estimates (a row whose vector holds NaN) come last and are not
        // completed: they order nothing.
        let limit = tie_batch_limit(k);
        if k > 0 && k < self.len() && worst_key(&self.near[..k]) != u32::MAX {
            let worst = worst_key(&self.near[..k]);
            // The selection leaves equal estimates on both sides of its cut:
            // move those after it up to the batch's end.
            let scan_from = k;
            for i in scan_from..self.near.len() {
                if k >= limit {
                    break;
                }
                if order_key(self.near[i].0) == worst {
                    self.near.swap(i, k);
                    k += 1;
                }
            }
            // `far` holds estimates above the bound `near` was cut at, and
            // entries equal to it (the same selection): only then can one tie.
            if order_key(self.near_bound) == worst {
                let mut i = 0;
                while i < self.far.len() && k < limit {
                    if order_key(self.far[i].0) == worst {
                        let c = self.far.swap_remove(i);
                        self.near.push(c);
                        let last = self.near.len() - 1;
                        self.near.swap(last, k);
                        k += 1;
                    } else {
                        i += 1;
                    }
                }
            }
        }
        let out: Vec<(f32, T)> = self.near.drain(..k).collect();
        self.popped += out.len();
        if let Some(m) = out.iter().map(|c| pool_key(c.0, &c.1)).max() {
            self.popped_max = Some(self.popped_max.map_or(m, |p| p.max(m)));
        }
        out
    }

    /// Candidates [`CandidatePool::pop_best`] has handed out in all.
    pub fn popped(&self) -> usize {
        self.popped
    }

    /// While candidates are lost (a lossy cut, not yet ended by a later
    /// threshold): how many the pool would have had to keep instead of `cap`.
    /// A scan that goes on would miss rows, so it stops with an error saying
    /// how much `work_mem` it needs.
    pub fn lost(&self) -> Option<usize> {
        self.lossy.then_some(self.lossy_need)
    }

    /// The estimate of a group of equal estimates a cut split (more of it
    /// than the cap holds): part of it is held or popped, the rest waits for
    /// a re-offer. Nothing the popped part taught says where the rest lies
    /// (copies and near-copies of one vector share a code, and the copies'
    /// one error is no margin for the rest: 15,000 copies at 64kB missed the
    /// query's own row), so a scan hands out no row while this is `Some`.
    pub fn split_estimate(&self) -> Option<f32> {
        self.upper
            .filter(|u| u & 0xFFFF_FFFF != 0 && !self.lossy)
            .map(key_to_f32)
    }

    /// True when nothing is held but candidates were dropped: offer the same
    /// lists again ([`CandidatePool::begin_reoffer`]) before popping more.
    pub fn needs_reoffer(&self) -> bool {
        self.is_empty() && self.upper.is_some() && !self.lossy
    }

    /// Starts offering every candidate of the lists offered so far again:
    /// those below the old `upper` were popped already and are skipped.
    pub fn begin_reoffer(&mut self) {
        debug_assert!(self.needs_reoffer(), "re-offer with candidates held");
        self.best = None;
        self.near.clear();
        self.far.clear();
        self.near_bound = f32::INFINITY;
        self.lower = self.upper.take();
        // A scan this deep is likely to go deeper: fewer re-offers.
        self.keep = self.keep.saturating_mul(2).min(self.cap);
    }

    /// Ends a re-offer: lists offered from now on are new ones (every candidate
    /// counts).
    pub fn end_reoffer(&mut self) {
        self.lower = None;
    }
}

/// Reorders `v` so that its `k` smallest estimates come first (in no particular
/// order), in linear time. NaN estimates count as largest.
/// The largest order key of `v` (0 when empty).
fn worst_key<T>(v: &[(f32, T)]) -> u32 {
    v.iter().map(|c| order_key(c.0)).max().unwrap_or(0)
}

fn select_best<T>(v: &mut [(f32, T)], k: usize) {
    if k < v.len() && k > 0 {
        v.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
    }
}

/// Exact nearest-first selection in passes that hold at most `cap` entries.
///
/// A scan that must rank every row exactly (an index built on an empty table has
/// no estimates to go by) cannot know how many rows the executor will ask for.
/// Keeping all of them would grow with the table; instead each pass offers every
/// row's exact distance, keeps the best `cap` that come strictly after everything
/// returned by earlier passes, and returns them in order. Rows are ordered by
/// `(distance, id)` with NaN last, so passes never repeat or skip a row even when
/// distances tie. A pass that returns fewer than `cap` entries was the last.
/// A row offered twice in one pass (a `vector[]` row has an entry per element,
/// each offered with the row's one exact distance) is kept once.
#[derive(Clone, Debug)]
pub struct ExactPasses {
    /// Keys are the distance's [`order_key`] (high half) and its tie's (low
    /// half; see [`ExactPasses::offer_tied`]), then the row.
    after: Option<(u64, u64)>,
    cap: usize,
    heap: std::collections::BTreeSet<(u64, u64)>,
}

/// A total order on distances as `u32` keys: increasing with the distance, NaN last.
pub(crate) fn order_key(d: f32) -> u32 {
    if d.is_nan() {
        u32::MAX
    } else {
        let b = d.to_bits();
        if b & 0x8000_0000 != 0 {
            !b
        } else {
            b | 0x8000_0000
        }
    }
}

/// What orders a [`CandidatePool`]'s candidates of one estimate: the same
/// value for a candidate every time it is offered (a re-offer skips those
/// below the old threshold), 31 bits. Values may repeat; a pool cannot split
/// candidates whose estimate and value both agree.
pub trait PoolTie: Copy {
    fn pool_tie(&self) -> u32;
}

/// The largest [`PoolTie`] value.
pub const TIE_MAX: u32 = 0x7FFF_FFFF;

/// Spreads `x` over 31 bits (a multiplicative hash): a [`PoolTie`] of an
/// item's identity.
pub fn tie_of(x: u64) -> u32 {
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) as u32
}

impl PoolTie for u32 {
    fn pool_tie(&self) -> u32 {
        tie_of(u64::from(*self))
    }
}

impl PoolTie for usize {
    fn pool_tie(&self) -> u32 {
        tie_of(*self as u64)
    }
}

impl PoolTie for u64 {
    fn pool_tie(&self) -> u32 {
        tie_of(*self)
    }
}

/// A candidate's place in a [`CandidatePool`]: its estimate's [`order_key`]
/// above its item's [`PoolTie`].
fn pool_key<T: PoolTie>(d: f32, item: &T) -> u64 {
    (u64::from(order_key(d)) << 32) | u64::from(item.pool_tie() & TIE_MAX)
}

/// The first [`pool_key`] of `k`'s estimate (its group of equal estimates).
fn group_start(k: u64) -> u64 {
    k & !0xFFFF_FFFF
}

/// One past the last [`pool_key`] of `k`'s estimate (past every key for NaN's).
fn group_end(k: u64) -> u64 {
    group_start(k).saturating_add(1 << 32)
}

/// The largest [`pool_key`]; one past it means "past every candidate".
const POOL_KEY_MAX: u64 = ((u32::MAX as u64) << 32) | TIE_MAX as u64;

/// A pool bound (a [`pool_key`], or one past the last) as the estimate it
/// starts at (+inf past NaN's keys).
fn key_to_f32(k: u64) -> f32 {
    if k > POOL_KEY_MAX {
        f32::INFINITY
    } else {
        from_order_key((k >> 32) as u32)
    }
}

fn from_order_key(k: u32) -> f32 {
    if k == u32::MAX {
        f32::NAN
    } else if k & 0x8000_0000 != 0 {
        f32::from_bits(k & 0x7fff_ffff)
    } else {
        f32::from_bits(!k)
    }
}

impl ExactPasses {
    /// Selection holding at most `cap` (at least 1) entries per pass.
    pub fn new(cap: usize) -> Self {
        ExactPasses {
            after: None,
            cap: cap.max(1),
            heap: std::collections::BTreeSet::new(),
        }
    }

    /// Offers one row of the current pass.
    pub fn offer(&mut self, dist: f32, id: u64) {
        self.offer_tied(dist, 0, id)
    }

    /// [`ExactPasses::offer`] for a distance known more finely than an `f32`:
    /// rows of one `f32` distance are ordered by `tie`, what rounding the
    /// `f64` to `f32` dropped ([`ExactParts::distance_tie`]), so that cosine
    /// rows come in the order of the `f64` the SQL operator returns.
    pub fn offer_tied(&mut self, dist: f32, tie: i32, id: u64) {
        let k = (
            (u64::from(order_key(dist)) << 32) | u64::from(tie_key(tie)),
            id,
        );
        if self.after.is_some_and(|a| k <= a) {
            return;
        }
        if self.heap.len() < self.cap {
            self.heap.insert(k);
        } else if self.heap.last().is_some_and(|&worst| k < worst) && self.heap.insert(k) {
            self.heap.pop_last();
        }
    }

    /// Ends the pass: its entries, nearest first. The next pass continues after
    /// the last of them.
    pub fn finish_pass(&mut self) -> Vec<(f32, u64)> {
        let v: Vec<(u64, u64)> = std::mem::take(&mut self.heap).into_iter().collect();
        if let Some(&last) = v.last() {
            self.after = Some(last);
        }
        v.into_iter()
            .map(|(k, id)| (from_order_key((k >> 32) as u32), id))
            .collect()
    }

    /// Entries a pass holds at most.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// An in-memory IVF-PQ index: the reference implementation of the scan the access
/// method performs over pages, used by tests and the `ivfpq_eval` example.
#[derive(Clone, Debug)]
pub struct InvertedLists {
    /// Bytes per code.
    pub code_size: usize,
    /// Per list, its codes back to back.
    pub codes: Vec<Vec<u8>>,
    /// Per list, the row numbers of its codes.
    pub ids: Vec<Vec<u32>>,
    /// 4-bit models: per list, its codes in [`fastscan`] blocks.
    pub blocks: Vec<Vec<u8>>,
}

impl InvertedLists {
    /// Encodes and files every row of `vectors` (row number = id).
    pub fn build(model: &IvfPqModel, vectors: &[f32]) -> Self {
        let (lists, codes) = model.encode_batch(vectors);
        let cs = model.code_size();
        let mut il = InvertedLists {
            code_size: cs,
            codes: vec![Vec::new(); model.lists],
            ids: vec![Vec::new(); model.lists],
            blocks: Vec::new(),
        };
        for (i, (&l, c)) in lists.iter().zip(codes.chunks_exact(cs)).enumerate() {
            il.codes[l as usize].extend_from_slice(c);
            il.ids[l as usize].push(i as u32);
        }
        if model.is_fast() && cs > 0 {
            il.blocks = il.codes.iter().map(|c| fastscan::pack(c, cs)).collect();
        }
        il
    }

    /// The `k` nearest rows to `q`: probes `nprobe` lists, keeps the best
    /// `max(k, rerank)` by estimated distance, and, when `rerank > 0`, re-orders them
    /// by [`exact_distance`] to their rows in `vectors`. Returns `(distance, id)`,
    /// best first (estimated distances when `rerank == 0`).
    pub fn search(
        &self,
        model: &IvfPqModel,
        q: &[f32],
        k: usize,
        nprobe: usize,
        rerank: usize,
        vectors: &[f32],
    ) -> Vec<(f32, u32)> {
        let mut qt = model.query_tables(q);
        let mut top = TopK::new(k.max(rerank));
        let mut est = Vec::new();
        for (list, _) in qt.rank_lists(nprobe) {
            qt.set_list(list);
            let l = list as usize;
            if self.blocks.is_empty() {
                qt.scan_into(&self.codes[l], &self.ids[l], &mut top);
            } else {
                let n = self.ids[l].len();
                est.resize(n, 0.0);
                qt.scan_blocks(&self.blocks[l], n, &mut est);
                for (&d, &id) in est.iter().zip(&self.ids[l]) {
                    top.push(d, id);
                }
            }
        }
        if rerank == 0 {
            let mut v = top.into_sorted_vec();
            v.truncate(k);
            return v;
        }
        let dim = model.dim;
        let mut exact = TopK::new(k);
        for (_, id) in top.into_sorted_vec() {
            let x = &vectors[id as usize * dim..(id as usize + 1) * dim];
            exact.push(exact_distance(model.metric, q, x), id);
        }
        exact.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {

    /// Lengths past `f32`'s range (elements near 1e19) are still normalised;
    /// lengths that underflow stay as `f32` gives them (see [`normalize`]).
    #[test]
    fn normalize_survives_lengths_past_f32() {
        let mut tiny = vec![3e-40f32, 4e-40];
        normalize(&mut tiny);
        assert_eq!(tiny, vec![3e-40f32, 4e-40]);
        for scale in [1e19f32, 3e30, 1e-3] {
            let mut x = vec![3.0 * scale, 4.0 * scale, 0.0];
            normalize(&mut x);
            assert!(
                (x[0] - 0.6).abs() < 1e-6 && (x[1] - 0.8).abs() < 1e-6,
                "{scale}: {x:?}"
            );
        }
        let mut z = vec![0.0f32; 4];
        normalize(&mut z);
        assert_eq!(z, vec![0.0; 4]);
        let mut nan = vec![f32::NAN, 1.0];
        normalize(&mut nan);
        assert!(nan[0].is_nan() && nan[1] == 1.0);
    }
    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    fn gauss(rng: &mut StdRng) -> f32 {
        let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
        let u2: f32 = rng.gen();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }

    /// `n` points around `centers` Gaussian centers, with per-blob anisotropic
    /// spread, plus queries drawn the same way.
    fn blobs(n: usize, nq: usize, dim: usize, centers: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let c: Vec<f32> = (0..centers * dim).map(|_| 1.5 * gauss(&mut rng)).collect();
        let scale: Vec<f32> = (0..centers * dim)
            .map(|_| rng.gen_range(0.3f32..1.5))
            .collect();
        let mut gen = |count: usize| {
            let mut v = Vec::with_capacity(count * dim);
            for _ in 0..count {
                let b = rng.gen_range(0..centers);
                for t in 0..dim {
                    v.push(c[b * dim + t] + scale[b * dim + t] * gauss(&mut rng));
                }
            }
            v
        };
        let data = gen(n);
        let queries = gen(nq);
        (data, queries)
    }

    #[test]
    fn a_pop_takes_every_candidate_of_its_worst_estimate() {
        let mut p: CandidatePool<u32> = CandidatePool::with_keep(4, 64, 1 << 20);
        // 30 candidates at 2.0, 5 at 1.0, 30 at 3.0.
        let d: Vec<f32> = (0..65)
            .map(|i| match i {
                0..30 => 2.0,
                30..35 => 1.0,
                _ => 3.0,
            })
            .collect();
        p.push_all(&d, |i| i as u32);
        let got = p.pop_best(8);
        assert_eq!(got.len(), 35, "every 2.0 comes with the 1.0s");
        assert!(got.iter().all(|c| c.0 <= 2.0));
        assert_eq!(p.best(), Some(3.0));
        assert_eq!(p.pop_best(1).len(), 30);
        // Thousands of equal estimates (identical vectors, or near-copies
        // whose exact distances differ): all of them in one batch.
        let mut p: CandidatePool<u32> = CandidatePool::with_keep(10, 100_000, 1 << 20);
        p.push_all(&[0.5; 5000], |i| i as u32);
        assert_eq!(p.pop_best(10).len(), 5000);
        assert!(p.is_empty());
    }

    #[test]
    fn a_short_scan_keeps_twice_its_recent_demand_within_bounds() {
        // No demand known: what CandidatePool::new keeps.
        assert_eq!(short_pool_keep(100, None), 1024);
        assert_eq!(short_pool_keep(400, None), 3200);
        assert_eq!(short_pool_keep(100, Some(175.0)), 350);
        assert_eq!(short_pool_keep(100, Some(20.0)), SHORT_POOL_KEEP_MIN);
        assert_eq!(short_pool_keep(100, Some(5000.0)), 1024);
        assert_eq!(short_pool_keep(100, Some(f64::NAN)), 1024);
        let mut d = ShortDemand::default();
        assert_eq!(d.get(), None);
        d.record(200);
        assert_eq!(d.get(), Some(200.0));
        d.record(600);
        assert_eq!(d.get(), Some(300.0));
        let mut p: CandidatePool<u32> = CandidatePool::with_keep(4, 64, 1 << 20);
        p.push_all(&[3.0, 1.0, 2.0, 5.0, 4.0], |i| i as u32);
        p.pop_best(2);
        p.pop_best(2);
        assert_eq!(p.popped(), 4);
    }

    /// The tie carries what rounding the `f64` cosine distance to `f32` dropped:
    /// distance plus tie gives back the `f64` (to the tie's own rounding), so
    /// two rows of one `f32` distance order as their `f64`s do.
    #[test]
    fn distance_tie_keeps_the_f64_order_of_cosine_distances() {
        let q = [0.3f32, -1.2, 0.7, 2.0];
        let mut rows: Vec<(f64, f32, i32)> = (0..2000)
            .map(|i| {
                let t = i as f32 * 1e-6;
                let x = [0.3 + t, -1.2, 0.7 - t, 2.0 + t * 0.5];
                let p = exact_parts(Metric::Cosine, &q, &x);
                let ExactParts::Cosine { ab, aa, bb } = p else {
                    unreachable!()
                };
                let d = distance::cosine_from_parts(ab, aa, bb);
                let (r, tie) = p.distance_tie();
                assert_eq!(r, p.distance());
                assert_eq!(
                    f64::from_bits((f64::from(r).to_bits() as i64 + i64::from(tie)) as u64),
                    d
                );
                (d, r, tie)
            })
            .collect();
        rows.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)));
        assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0));
        // Two cosine distances a few f64 steps apart, which an f32 difference
        // could not tell apart.
        let (x, y) = (0.29289321881345254_f64, 0.2928932188134524_f64);
        let ((rx, tx), (ry, ty)) = (f32_and_tie(x), f32_and_tie(y));
        assert_eq!(rx, ry);
        assert!(ty < tx && tie_key(ty) < tie_key(tx));
        let (nx, ny) = (f32_and_tie(-x), f32_and_tie(-y));
        assert!(nx.1 < ny.1, "negative distances order the other way");
        // L2 and inner product: their SQL values follow their f32 sums.
        let p = exact_parts(Metric::L2, &q, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(p.distance_tie(), (p.distance(), 0));
    }

    #[test]
    fn order_keys_round_trip_and_sort_nan_last() {
        let xs = [
            f32::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-30,
            3.0,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) < order_key(w[1]), "{w:?}");
        }
        for &x in &xs {
            assert_eq!(from_order_key(order_key(x)).to_bits(), x.to_bits());
        }
        assert!(order_key(f32::NAN) > order_key(f32::INFINITY));
        assert!(order_key(-f32::NAN) > order_key(f32::INFINITY));
        assert!(from_order_key(order_key(f32::NAN)).is_nan());
    }

    proptest! {
        /// Passes of any size return every row exactly once, in (distance, id)
        /// order, ties and NaN included.
        #[test]
        fn exact_passes_return_the_full_order(
            ds in proptest::collection::vec(prop_oneof![
                (0u8..6).prop_map(|v| v as f32),
                Just(f32::NAN),
                -3.0f32..3.0,
            ], 0..200),
            cap in 1usize..40,
            repeats in 1usize..4,
        ) {
            let mut expected: Vec<(u32, u64)> =
                ds.iter().enumerate().map(|(i, &d)| (order_key(d), i as u64)).collect();
            expected.sort();
            let mut sel = ExactPasses::new(cap);
            let mut got = Vec::new();
            loop {
                // A row may be offered several times in a pass (one entry per
                // element of a vector[] row): it still comes back once.
                for (i, &d) in ds.iter().enumerate() {
                    for _ in 0..(1 + i % repeats) {
                        sel.offer(d, i as u64);
                    }
                }
                let pass = sel.finish_pass();
                prop_assert!(pass.len() <= cap);
                let n = pass.len();
                got.extend(pass.into_iter().map(|(d, id)| (order_key(d), id)));
                if n < cap {
                    break;
                }
            }
            prop_assert_eq!(got, expected);
        }
    }

    /// Rows of one `f32` distance come out of the exact passes in the order of
    /// their ties (then ids), across passes too.
    #[test]
    fn exact_passes_order_one_f32_distance_by_tie() {
        let mut sel = ExactPasses::new(2);
        // Offered in id order; their ties (all of one sign, so that neither the
        // ids nor the signs alone give this order) say 3, 2, 1.
        let rows = [(1u64, 0.5f32, 3i32), (2, 0.5, 2), (3, 0.5, 1), (4, 0.25, 0)];
        for (i, d, t) in rows {
            sel.offer_tied(d, t, i);
        }
        let first = sel.finish_pass();
        assert_eq!(first.iter().map(|p| p.1).collect::<Vec<_>>(), [4, 3]);
        for (i, d, t) in rows {
            sel.offer_tied(d, t, i);
        }
        let second = sel.finish_pass();
        assert_eq!(second.iter().map(|p| p.1).collect::<Vec<_>>(), [2, 1]);
        assert!(second.iter().all(|p| p.0 == 0.5));
    }

    #[test]
    fn training_and_encoding_stop_on_request_and_match_when_not_stopped() {
        let (data, _) = blobs(3000, 0, 16, 8, 21);
        let plain = IvfPqParams::new(20, 8, 4);
        let reference = IvfPqModel::train(&data, 16, Metric::L2, &plain);
        // A stop that is never requested changes nothing.
        let watched = IvfPqParams {
            stop: Stop::new(),
            ..plain.clone()
        };
        let m = IvfPqModel::train_until(&data, 16, Metric::L2, &watched).unwrap();
        assert_eq!(m.to_bytes(), reference.to_bytes());
        assert_eq!(
            m.encode_batch_until(&data, &watched.stop).unwrap(),
            reference.encode_batch(&data)
        );
        // A requested one discards the work.
        watched.stop.request();
        assert_eq!(
            IvfPqModel::train_until(&data, 16, Metric::L2, &watched).err(),
            Some(Stopped)
        );
        assert_eq!(
            m.encode_batch_until(&data, &watched.stop).err(),
            Some(Stopped)
        );
    }

    /// Finding the PQ training rows' lists stops at a requested stop (it was
    /// the one step of training that did not look: seconds at `nbits = 8`
    /// against 32,768 lists, hunt-130), and otherwise gives each row less
    /// its nearest centroid.
    #[test]
    fn pq_training_residuals_stop_on_request() {
        let (data, _) = blobs(500, 0, 8, 4, 3);
        let centroids: Vec<f32> = data[..4 * 8].to_vec();
        let coarse = coarse_panels(Metric::L2, false, &centroids, 8);
        let params = IvfPqParams {
            stop: Stop::new(),
            ..IvfPqParams::new(4, 4, 4)
        };
        let r = pq_training_residuals(&data, 8, &centroids, &coarse, &params).unwrap();
        assert_eq!(r.len(), data.len());
        for (x, e) in data.chunks_exact(8).zip(r.chunks_exact(8)) {
            let best = centroids
                .chunks_exact(8)
                .map(|c| distance::l2_squared(x, c))
                .fold(f32::INFINITY, f32::min);
            let c: Vec<f32> = x.iter().zip(e).map(|(a, b)| a - b).collect();
            assert!((distance::l2_squared(x, &c) - best).abs() <= 1e-3 * (1.0 + best));
        }
        params.stop.request();
        assert_eq!(
            pq_training_residuals(&data, 8, &centroids, &coarse, &params).err(),
            Some(Stopped)
        );
    }

    /// The coarse-code hint names a remedy that the limits allow, and never
    /// the `nbits` already in use.
    #[test]
    fn finer_m_hint_names_what_works() {
        // 383 is prime: 4-bit codes allow m up to 256, so only 8 bits help.
        assert_eq!(
            finer_m_hint(383, 1, 4),
            "Pass nbits = 8 and m = 383 (383-byte codes)."
        );
        // 766 = 2 × 383: m = 383 at 4 bits is past the 4-bit limit too.
        assert_eq!(
            finer_m_hint(766, 2, 4),
            "Pass nbits = 8 and m = 383 (383-byte codes)."
        );
        // A prime above 2,048: no divisor fits any code; pad to a multiple of 8.
        for nbits in [4, 8] {
            let h = finer_m_hint(3989, 1, nbits);
            assert!(h.contains("Pad the vectors with zeros to "), "{h}");
            assert!(!h.contains("nbits = 8"), "{h}");
            let p: usize = h
                .split("zeros to ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(p > 3989 && p.is_multiple_of(8) && p < 3989 + 64, "{h}");
            let m = default_m(p, nbits);
            assert!(h.contains(&format!("get m = {m} by")), "{h}");
            assert!(m * 8 >= m_target(p, nbits).0, "{h}");
        }
        // Whatever it names is accepted and finer than what the user got.
        for dim in [3, 5, 7, 127, 383, 509, 766, 2053, 3989, 16381] {
            for nbits in [4u32, 8] {
                let m = default_m(dim, nbits);
                let h = finer_m_hint(dim, m, nbits);
                if let Some(rest) = h.strip_prefix("Pass m = ") {
                    let d: usize = rest.split(' ').next().unwrap().parse().unwrap();
                    assert!(
                        d > m && validate_params(0, dim, 1, d, nbits).is_ok(),
                        "{dim} {nbits}: {h}"
                    );
                }
                if let Some(rest) = h.strip_prefix("Pass nbits = 8 and m = ") {
                    assert_eq!(nbits, 4, "{h}");
                    let d: usize = rest.split(' ').next().unwrap().parse().unwrap();
                    assert!(validate_params(0, dim, 1, d, 8).is_ok(), "{dim}: {h}");
                }
            }
        }
    }

    /// The serial batch encoder (an insert's buffered rows) gives every row
    /// what the one-row encoder gives it: list, code, refine code and whether
    /// that is faithful; across chunk boundaries and per metric.
    #[test]
    fn serial_batch_encode_matches_one_row_encode() {
        let (data, _) = blobs(700, 0, 16, 8, 5);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            for refine in [false, true] {
                let mut m = IvfPqModel::train(&data, 16, metric, &IvfPqParams::new(12, 8, 4));
                if refine {
                    // Trained on the residuals with 5% tails clipped:
                    // some rows fall outside its range (not faithful).
                    let mut res = Vec::with_capacity(data.len());
                    for x in data.chunks_exact(16) {
                        let list = m.assign(x);
                        let p = prepare(metric, x);
                        res.extend(p.iter().zip(m.centroid(list)).map(|(a, b)| a - b));
                    }
                    m.set_refine(ResidualSq::train(&res, 16, 4, 0.05)).unwrap();
                }
                let got = m.encode_batch_fine_serial(&data);
                let (cs, fs) = (m.code_size(), m.fine_size());
                let mut unfaithful = 0;
                for (i, x) in data.chunks_exact(16).enumerate() {
                    let (mut code, mut fine) = (vec![0u8; cs], vec![0u8; fs]);
                    let (list, ok) = m.encode_fine(x, &mut code, &mut fine);
                    assert_eq!(got.lists[i], list, "row {i}");
                    assert_eq!(&got.codes[i * cs..(i + 1) * cs], &code[..], "row {i}");
                    assert_eq!(&got.fine[i * fs..(i + 1) * fs], &fine[..], "row {i}");
                    assert_eq!(got.faithful[i], ok, "row {i}");
                    unfaithful += usize::from(!ok);
                }
                // Both kinds of rows were compared.
                assert!(
                    !refine || (unfaithful > 0 && unfaithful < 700),
                    "{unfaithful}"
                );
            }
        }
    }

    /// Training plans its progress units up front (coarse k-means, then every
    /// sub-quantizer's) and has done exactly them at the end, whatever the
    /// sample's size against the lists and codewords (early convergence counts
    /// the iterations it skipped).
    #[test]
    fn training_progress_ends_at_what_it_planned() {
        for (rows, lists, nbits) in [
            (3000, 20, 4),
            (30, 20, 4),
            (20, 40, 4),
            (5000, 8, 8),
            (1, 1, 4),
        ] {
            let (data, _) = blobs(rows, 0, 16, 8, 5);
            let params = IvfPqParams {
                stop: Stop::new(),
                ..IvfPqParams::new(lists, 8, nbits)
            };
            IvfPqModel::train_until(&data, 16, Metric::L2, &params).unwrap();
            let (done, planned) = params.stop.progress();
            assert_eq!(done, planned, "rows {rows} lists {lists} nbits {nbits}");
            if rows > lists {
                assert!(planned > 0, "rows {rows} lists {lists}: nothing planned");
            }
        }
    }

    fn brute_force(metric: Metric, data: &[f32], q: &[f32], dim: usize, k: usize) -> Vec<u32> {
        let mut d: Vec<(f32, u32)> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, x)| (exact_distance(metric, q, x), i as u32))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.truncate(k);
        d.into_iter().map(|(_, i)| i).collect()
    }

    /// Recall@10 of one trained index for each `(nprobe, rerank)` setting.
    fn recall(
        metric: Metric,
        data: &[f32],
        queries: &[f32],
        dim: usize,
        params: &IvfPqParams,
        settings: &[(usize, usize)],
    ) -> Vec<f64> {
        let model = IvfPqModel::train(data, dim, metric, params);
        let il = InvertedLists::build(&model, data);
        let truths: Vec<Vec<u32>> = queries
            .chunks_exact(dim)
            .map(|q| brute_force(metric, data, q, dim, 10))
            .collect();
        let r: Vec<f64> = settings
            .iter()
            .map(|&(nprobe, rerank)| {
                let mut hits = 0;
                for (q, truth) in queries.chunks_exact(dim).zip(&truths) {
                    let got = il.search(&model, q, 10, nprobe, rerank, data);
                    hits += got.iter().filter(|(_, id)| truth.contains(id)).count();
                }
                hits as f64 / (10 * truths.len()) as f64
            })
            .collect();
        r
    }

    #[test]
    fn recall_on_gaussian_blobs_l2() {
        let dim = 32;
        // Fewer blobs than lists: lists cut through blobs, so true neighbours are
        // often in another list and probing more lists matters.
        let (data, queries) = blobs(3000, 40, dim, 6, 1);
        let p = IvfPqParams::new(32, 8, 8);
        let r = recall(
            Metric::L2,
            &data,
            &queries,
            dim,
            &p,
            &[(1, 40), (4, 40), (8, 100), (8, 0), (32, 3000)],
        );
        // Measured: 0.46, 0.96, 1.0, 0.73, 1.0.
        assert!(
            r[0] < 0.7,
            "one probe should miss neighbours in other lists: {r:?}"
        );
        assert!(r[1] >= 0.9, "4 probes, 40 re-ranked: {r:?}");
        assert!(r[2] >= 0.97, "8 probes, 100 re-ranked: {r:?}");
        assert!(r[3] >= 0.6, "8 probes, no re-ranking: {r:?}");
        assert!(r[3] < r[2]);
        // All lists probed and everything re-ranked: exact.
        assert!(r[4] > 0.999, "{r:?}");
    }

    #[test]
    fn recall_cosine_and_inner_product() {
        let dim = 24;
        let (data, queries) = blobs(2500, 30, dim, 5, 2);
        let p = IvfPqParams::new(20, 6, 8);
        // Measured: cosine 0.957, IP on unit vectors 0.923, IP on raw vectors
        // 0.997, 4-bit cosine 0.943.
        let cos = recall(Metric::Cosine, &data, &queries, dim, &p, &[(3, 40)])[0];
        assert!(cos >= 0.9, "cosine recall {cos}");
        // Inner product on unit vectors ranks like cosine.
        let mut unit = data.clone();
        unit.chunks_exact_mut(dim).for_each(normalize);
        let ip = recall(Metric::InnerProduct, &unit, &queries, dim, &p, &[(3, 40)])[0];
        assert!(ip >= 0.85, "inner-product recall {ip}");
        // Inner product on raw vectors (varying norms).
        let ipr = recall(Metric::InnerProduct, &data, &queries, dim, &p, &[(4, 40)])[0];
        assert!(ipr >= 0.9, "raw inner-product recall {ipr}");
        // 4-bit codes.
        let p4 = IvfPqParams::new(20, 12, 4);
        let c4 = recall(Metric::Cosine, &data, &queries, dim, &p4, &[(3, 40)])[0];
        assert!(c4 >= 0.88, "4-bit cosine recall {c4}");
    }

    #[test]
    fn estimates_match_reconstruction_per_metric() {
        let dim = 16;
        let (data, queries) = blobs(1500, 5, dim, 8, 3);
        for (metric, m, nbits) in [
            (Metric::L2, 4, 8),
            (Metric::Cosine, 4, 8),
            (Metric::InnerProduct, 4, 8),
            (Metric::L2, 8, 4),
            (Metric::Cosine, 8, 4),
            (Metric::InnerProduct, 8, 4),
        ] {
            let model = IvfPqModel::train(&data, dim, metric, &IvfPqParams::new(8, m, nbits));
            let cs = model.code_size();
            let (lists, codes) = model.encode_batch(&data);
            for q in queries.chunks_exact(dim) {
                let mut qt = model.query_tables(q);
                for (i, x) in data.chunks_exact(dim).enumerate().take(40) {
                    let code = &codes[i * cs..(i + 1) * cs];
                    let mut single = vec![0u8; cs];
                    assert_eq!(model.encode(x, &mut single), lists[i]);
                    assert_eq!(&single[..], code);
                    qt.set_list(lists[i]);
                    // reconstruct c + r̂ and compare with the estimate.
                    let mut rec = vec![0f32; dim];
                    model.pq.decode(code, &mut rec);
                    rec.iter_mut()
                        .zip(model.centroid(lists[i]))
                        .for_each(|(r, &c)| *r += c);
                    let want = match metric {
                        Metric::InnerProduct => -distance::dot(qt.query(), &rec),
                        _ => distance::l2_squared(qt.query(), &rec),
                    };
                    let got = qt.distance(code);
                    assert!(
                        (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                        "{metric:?}: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Cosine similarity of `x` and `c`.
    fn cosine(x: &[f32], c: &[f32]) -> f32 {
        distance::dot(x, c) / (distance::dot(x, x) * distance::dot(c, c)).sqrt()
    }

    /// Every vector of `rows` is assigned to a list whose centroid has the
    /// largest cosine similarity with it.
    fn assert_assigned_by_direction<'a>(m: &IvfPqModel, rows: impl Iterator<Item = &'a [f32]>) {
        for x in rows {
            let best = (0..m.lists as u32)
                .map(|l| cosine(x, m.centroid(l)))
                .fold(f32::MIN, f32::max);
            let got = cosine(x, m.centroid(m.assign(x)));
            assert!(got >= best - 1e-5, "assigned cosine {got}, best {best}");
        }
    }

    /// An inner-product model trained on unit-length rows makes and ranks its
    /// lists by centroid direction, as a cosine model does, and keeps that
    /// through serialisation; on rows of other lengths it ranks by `q·c`.
    #[test]
    fn inner_product_on_unit_rows_goes_by_direction() {
        let dim = 12;
        let (data, queries) = blobs(3000, 20, dim, 5, 22);
        let unit: Vec<f32> = data
            .chunks_exact(dim)
            .flat_map(|x| {
                let n = distance::dot(x, x).sqrt();
                x.iter().map(move |v| v / n)
            })
            .collect();
        let params = IvfPqParams::new(24, 6, 4);
        let model = IvfPqModel::train(&unit, dim, Metric::InnerProduct, &params);
        assert!(model.direction_lists);
        let back = IvfPqModel::from_bytes(&model.to_bytes()).unwrap();
        assert!(back.direction_lists);
        for m in [&model, &back] {
            let rows = unit.chunks_exact(dim).take(300);
            assert_assigned_by_direction(m, rows.chain(queries.chunks_exact(dim)));
        }
        // Rows of other lengths: largest q·c, as before.
        let plain = IvfPqModel::train(&data, dim, Metric::InnerProduct, &params);
        assert!(!plain.direction_lists);
        assert!(
            !IvfPqModel::from_bytes(&plain.to_bytes())
                .unwrap()
                .direction_lists
        );
        for x in data.chunks_exact(dim).take(300) {
            let best = (0..plain.lists as u32)
                .map(|l| distance::dot(x, plain.centroid(l)))
                .fold(f32::MIN, f32::max);
            let got = distance::dot(x, plain.centroid(plain.assign(x)));
            assert!(
                got >= best - 1e-3 * best.abs().max(1.0),
                "assigned {got}, best {best}"
            );
        }
        // Unknown flag bits are refused.
        let mut b = model.to_bytes();
        b[7] = 2;
        assert!(IvfPqModel::from_bytes(&b).is_err());
    }

    /// A cosine model ranks lists and assigns rows by the direction of each
    /// centroid (largest cosine similarity), while its centroids stay the
    /// clusters' means (shorter than 1), from which residuals are taken.
    #[test]
    fn cosine_lists_go_by_centroid_direction() {
        let dim = 12;
        let (data, queries) = blobs(3000, 20, dim, 5, 21);
        let model = IvfPqModel::train(&data, dim, Metric::Cosine, &IvfPqParams::new(24, 6, 4));
        let mut short = 0;
        for l in 0..model.lists as u32 {
            let c = model.centroid(l);
            short += usize::from(distance::dot(c, c) < 0.98);
        }
        assert!(short > 0, "the centroids are means, not unit vectors");
        let rows = data.chunks_exact(dim).take(500);
        assert_assigned_by_direction(&model, rows.chain(queries.chunks_exact(dim)));
        for q in queries.chunks_exact(dim) {
            let ranked = model.rank_lists(q, model.lists);
            for w in ranked.windows(2) {
                let (a, b) = (model.centroid(w[0].0), model.centroid(w[1].0));
                assert!(
                    cosine(q, a) >= cosine(q, b) - 1e-5,
                    "lists ranked out of cosine order"
                );
            }
        }
    }

    /// The codes `encode_batch` gave list `list`: how many, row-major, and
    /// packed into fast-scan blocks.
    fn list_codes(lists: &[u32], codes: &[u8], cs: usize, list: u32) -> (usize, Vec<u8>, Vec<u8>) {
        let mine: Vec<u8> = lists
            .iter()
            .zip(codes.chunks_exact(cs))
            .filter(|(&l, _)| l == list)
            .flat_map(|(_, c)| c.iter().copied())
            .collect();
        let blocks = fastscan::pack(&mine, cs);
        (mine.len() / cs, mine, blocks)
    }

    /// `scan_blocks_below` keeps exactly the lanes of `scan_blocks` whose
    /// estimate is not above the bound (NaN bound: all), with the same values,
    /// at bounds below, inside and above each list's estimates.
    #[test]
    fn scan_blocks_below_keeps_exactly_the_lanes_not_above() {
        let dim = 16;
        let (data, queries) = blobs(2000, 4, dim, 5, 9);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let model = IvfPqModel::train(&data, dim, metric, &IvfPqParams::new(5, 8, 4));
            let cs = model.code_size();
            let (lists, codes) = model.encode_batch(&data);
            let (mut idx, mut est) = (Vec::new(), Vec::new());
            for q in queries.chunks_exact(dim) {
                let mut qt = model.query_tables(q);
                for list in 0..model.lists as u32 {
                    qt.set_list(list);
                    let (n, _, blocks) = list_codes(&lists, &codes, cs, list);
                    let mut dense = vec![0f32; n];
                    qt.scan_blocks(&blocks, n, &mut dense);
                    let mut sorted = dense.clone();
                    sorted.sort_by(f32::total_cmp);
                    let mut bounds = vec![f32::NEG_INFINITY, f32::INFINITY, f32::NAN];
                    if n > 0 {
                        bounds.extend([sorted[0], sorted[n / 3], sorted[n / 2], sorted[n - 1]]);
                        bounds.extend([sorted[n / 2].next_up(), sorted[n / 2].next_down()]);
                    }
                    for below in bounds {
                        qt.scan_blocks_below(&blocks, n, below, &mut idx, &mut est);
                        let want: Vec<(u32, f32)> = dense
                            .iter()
                            .enumerate()
                            .filter(|(_, &e)| below.is_nan() || not_above(e, below))
                            .map(|(i, &e)| (i as u32, e))
                            .collect();
                        let got: Vec<(u32, f32)> =
                            idx.iter().copied().zip(est.iter().copied()).collect();
                        assert_eq!(got, want, "{metric:?}, list {list}, bound {below}");
                    }
                }
            }
        }
    }

    /// Tables taken apart and resumed (`into_parts`/`from_parts`) score every
    /// list, in any order and from any list they were left on, exactly as
    /// tables made fresh for the query; resuming with another model panics.
    #[test]
    fn resumed_query_tables_score_as_fresh_ones() {
        let dim = 16;
        let (data, queries) = blobs(1500, 3, dim, 6, 21);
        for (metric, nbits) in [
            (Metric::L2, 4),
            (Metric::Cosine, 4),
            (Metric::InnerProduct, 4),
            (Metric::L2, 8),
        ] {
            let model = IvfPqModel::train(&data, dim, metric, &IvfPqParams::new(6, 8, nbits));
            let cs = model.code_size();
            let (lists, codes) = model.encode_batch(&data);
            for q in queries.chunks_exact(dim) {
                let mut parts = model.query_tables(q).into_parts();
                for list in [3u32, 0, 5, 5, 1, 3] {
                    let mut resumed = QueryTables::from_parts(&model, parts);
                    resumed.set_list(list);
                    let mut fresh = model.query_tables(q);
                    fresh.set_list(list);
                    let (n, rows, blocks) = list_codes(&lists, &codes, cs, list);
                    let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                    if model.is_fast() {
                        resumed.scan_blocks(&blocks, n, &mut a);
                        fresh.scan_blocks(&blocks, n, &mut b);
                    } else {
                        resumed.scan(&rows, &mut a);
                        fresh.scan(&rows, &mut b);
                    }
                    assert_eq!(a, b, "{metric:?} {nbits}-bit, list {list}");
                    assert_eq!(resumed.query(), fresh.query());
                    parts = resumed.into_parts();
                }
                let other = IvfPqModel::train(&data, dim, metric, &IvfPqParams::new(6, 8, nbits));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    QueryTables::from_parts(&other, parts.clone())
                }));
                assert!(r.is_err(), "resumed with another model");
            }
        }
    }

    /// Offering a page's codes not above `upper_estimate` with `push_some`
    /// pops the same candidates, in the same order, as offering every code.
    #[test]
    fn push_some_of_the_codes_not_above_the_bound_equals_push_all() {
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..20 {
            let (mut all, mut some) = (
                CandidatePool::with_keep(10, 50, 10_000),
                CandidatePool::with_keep(10, 50, 10_000),
            );
            for page in 0..30u32 {
                let d: Vec<f32> = (0..64)
                    .map(|_| {
                        if round % 4 == 0 {
                            rng.gen_range(0..8) as f32
                        } else {
                            rng.gen::<f32>() * 100.0
                        }
                    })
                    .collect();
                all.push_all(&d, |i| page * 64 + i as u32);
                let below = some.upper_estimate();
                let (idx, est): (Vec<u32>, Vec<f32>) = d
                    .iter()
                    .enumerate()
                    .filter(|(_, &e)| not_above(e, below))
                    .map(|(i, &e)| (i as u32, e))
                    .unzip();
                some.push_some(&idx, &est, |i| page * 64 + i as u32);
            }
            loop {
                if all.needs_reoffer() || some.needs_reoffer() {
                    break;
                }
                let (a, b) = (all.pop_best(7), some.pop_best(7));
                assert_eq!(a, b, "round {round}");
                if a.is_empty() {
                    break;
                }
            }
        }
    }

    #[test]
    fn fast_scan_tracks_float_estimates() {
        // Odd m (a padding sub-quantizer), every metric, precomputed and
        // on-the-fly list terms give the same tables.
        let dim = 15;
        let (data, queries) = blobs(1200, 4, dim, 6, 8);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let model = IvfPqModel::train(&data, dim, metric, &IvfPqParams::new(6, 5, 4));
            assert!(model.is_fast());
            let mut lazy = model.clone();
            lazy.fast_terms = None;
            let cs = model.code_size();
            assert_eq!(cs, 3);
            let (lists, codes) = model.encode_batch(&data);
            for q in queries.chunks_exact(dim) {
                let mut qt = model.query_tables(q);
                let mut qt_lazy = lazy.query_tables(q);
                for list in 0..model.lists as u32 {
                    qt.set_list(list);
                    qt_lazy.set_list(list);
                    let (n, mine, blocks) = list_codes(&lists, &codes, cs, list);
                    let mut got = vec![0f32; n];
                    qt.scan_blocks(&blocks, n, &mut got);
                    let want: Vec<f32> = mine.chunks_exact(cs).map(|c| qt.distance(c)).collect();
                    let lazy_want: Vec<f32> =
                        mine.chunks_exact(cs).map(|c| qt_lazy.distance(c)).collect();
                    let lo = want.iter().copied().fold(f32::INFINITY, f32::min);
                    let hi = want.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let tol = 0.05 * (hi - lo).abs() + 1e-3 * (1.0 + hi.abs());
                    for i in 0..n {
                        assert!(
                            (got[i] - want[i]).abs() <= tol,
                            "{metric:?}: {} vs {}",
                            got[i],
                            want[i]
                        );
                        assert!((lazy_want[i] - want[i]).abs() <= 1e-3 * (1.0 + want[i].abs()));
                    }
                }
            }
        }
    }

    proptest! {
        /// Ordering in chunks gives the same order as one full sort (NaN last,
        /// ties by list number).
        #[test]
        fn ranked_lists_order_in_chunks(
            d in prop::collection::vec(0u32..50, 0..300),
            steps in prop::collection::vec(0usize..40, 1..12),
        ) {
            let lists: Vec<(u32, f32)> = d
                .iter()
                .enumerate()
                .map(|(i, &x)| (i as u32, if x == 49 { f32::NAN } else { x as f32 }))
                .collect();
            let mut want = lists.clone();
            want.sort_by(|a, b| order_key(a.1).cmp(&order_key(b.1)).then(a.0.cmp(&b.0)));
            let mut r = RankedLists::new(lists);
            let mut upto = 0;
            for s in steps {
                upto += s;
                r.order_through(upto);
                for (i, w) in want.iter().enumerate().take(upto) {
                    prop_assert_eq!(r.get(i).0, w.0);
                }
            }
            r.order_through(usize::MAX);
            let got: Vec<u32> = r.all().iter().map(|e| e.0).collect();
            let w: Vec<u32> = want.iter().map(|e| e.0).collect();
            prop_assert_eq!(got, w);
        }
    }

    /// A cut forced past `cap` (more candidates before the last one popped than
    /// `cap`) loses what it drops: the pool then neither re-offers nor reports a
    /// best estimate for them, so a scan does not wait for them forever.
    #[test]
    fn lossy_pool_reports_nothing_it_cannot_hand_out() {
        let mut pool = CandidatePool::with_keep(4, 8, 10);
        let first: Vec<f32> = (100..120).map(|d| d as f32).collect();
        pool.push_all(&first, |i| i);
        assert_eq!(pool.len(), 8, "a cut kept the best 8 and dropped the rest");
        assert_eq!(pool.pop_best(4).len(), 4);
        // 30 candidates better than those popped: more than the cap of 10, so
        // the cut keeps the best 10 and loses the rest.
        let better: Vec<f32> = (1..31).map(|d| d as f32).collect();
        pool.push_all(&better, |i| 100 + i);
        assert_eq!(pool.len(), 10);
        while !pool.is_empty() {
            assert!(pool.best().is_some());
            assert!(!pool.pop_best(4).is_empty());
        }
        assert!(!pool.needs_reoffer());
        assert_eq!(pool.best(), None);
    }

    /// Pops every candidate of `pool`, re-offering `lists` (pages of
    /// estimates, items their place in `all`) whenever it asks, and returns
    /// the batches popped (each in no particular order).
    fn drain_with_reoffers(pool: &mut CandidatePool<usize>, lists: &[Vec<f32>]) -> Vec<Vec<usize>> {
        let offer = |pool: &mut CandidatePool<usize>| {
            let mut base = 0;
            for l in lists {
                for (j, page) in l.chunks(300).enumerate() {
                    let at = base + 300 * j;
                    pool.push_all(page, |i| at + i);
                }
                base += l.len();
            }
        };
        offer(pool);
        pool.keep_best(pool.cap);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            if pool.needs_reoffer() {
                pool.begin_reoffer();
                offer(pool);
                pool.end_reoffer();
                pool.keep_best(pool.cap);
                continue;
            }
            if pool.is_empty() {
                break;
            }
            out.push(pool.pop_best(100).into_iter().map(|e| e.1).collect());
        }
        out
    }

    /// A group of equal estimates larger than the cap (3,000 near-duplicates
    /// sharing a code, `work_mem` = 64kB: a cap of 1,365) is split, not kept
    /// whole or lost: every candidate comes out, best estimate first, whether
    /// the group holds the best estimate or two better ones come later (that
    /// case once ended the scan after those two: the pool had gone lossy on
    /// the group and stayed so).
    #[test]
    fn a_tie_group_larger_than_the_cap_is_split_not_lost() {
        let spread: Vec<f32> = (0..2000).map(|i| 0.05 + i as f32 * 0.001).collect();
        for (tie, better) in [(0.02f32, 0usize), (0.0515, 2), (0.5, 450)] {
            let group = vec![tie; 3000];
            for lists in [
                vec![group.clone(), spread.clone()],
                vec![spread.clone(), group.clone()],
            ] {
                let all: Vec<f32> = lists.concat();
                let mut pool = CandidatePool::new(100, 1365);
                let batches = drain_with_reoffers(&mut pool, &lists);
                let got: Vec<usize> = batches.concat();
                let mut seen = got.clone();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), all.len(), "tie {tie}: every candidate, once");
                assert_eq!(got.len(), all.len());
                // Batch after batch, best estimates first.
                let range = |b: &Vec<usize>| {
                    let e = b.iter().map(|&i| all[i]);
                    (
                        e.clone().fold(f32::INFINITY, f32::min),
                        e.fold(f32::NEG_INFINITY, f32::max),
                    )
                };
                for w in batches.windows(2) {
                    assert!(
                        range(&w[0]).1 <= range(&w[1]).0,
                        "tie {tie}: best estimate first"
                    );
                }
                let est: Vec<f32> = got.iter().map(|&i| all[i]).collect();
                assert_eq!(
                    est.iter().filter(|&&e| e < tie).count(),
                    better,
                    "tie {tie}"
                );
            }
        }
    }

    /// Candidates of NaN estimates (rows whose products overflow) past the
    /// cap are split like any group: the finite candidates earlier cuts
    /// dropped still come back (a lossy cut of the NaN group dropped them for
    /// good: a LIMIT 8000 returned 1,365 rows), and nothing is lost.
    #[test]
    fn a_nan_group_past_the_cap_loses_no_finite_candidate() {
        let finite: Vec<f32> = (0..3000).map(|i| 0.1 + i as f32 * 0.001).collect();
        let nan = vec![f32::NAN; 5000];
        let lists = vec![nan, finite.clone()];
        let mut pool = CandidatePool::new(100, 1365);
        let batches = drain_with_reoffers(&mut pool, &lists);
        let got: Vec<usize> = batches.concat();
        assert!(pool.lost().is_none());
        let mut seen = got.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 8000, "every candidate once");
        // The finite ones come first.
        let first: Vec<usize> = got[..3000].to_vec();
        assert!(first.iter().all(|&i| i >= 5000), "finite candidates first");
    }

    #[test]
    fn default_probes_grow_slowly_with_lists() {
        assert_eq!(default_probes(0), DEFAULT_PROBES);
        assert_eq!(default_probes(1000), DEFAULT_PROBES);
        assert_eq!(default_probes(10_000), 50);
        let mut last = 0;
        for l in [1, 10, 100, 1000, 1001, 2000, 5000, 10_000, MAX_LISTS] {
            let p = default_probes(l);
            assert!(p >= last && p >= DEFAULT_PROBES, "{l}: {p}");
            last = p;
        }
        assert!(default_probes(MAX_LISTS) < MAX_LISTS / 100);
    }

    #[test]
    fn a_measured_default_wins_over_the_fixed_one() {
        assert_eq!(index_default_probes(100, 7), 7);
        assert_eq!(index_default_probes(100, 0), DEFAULT_PROBES);
        assert_eq!(index_default_probes(10_000, 0), default_probes(10_000));
    }

    #[test]
    fn index_probes_option_then_measured_then_fixed() {
        assert_eq!(index_probes(5, 100, (7, 12)), (5, 0, ProbesSource::Option));
        assert_eq!(
            index_probes(0, 100, (7, 12)),
            (7, 12, ProbesSource::Measured)
        );
        // A deep default below the first (never written so) is raised to it;
        // none measured means no deep step.
        assert_eq!(index_probes(0, 100, (7, 3)), (7, 7, ProbesSource::Measured));
        assert_eq!(index_probes(0, 100, (7, 0)), (7, 0, ProbesSource::Measured));
        assert_eq!(
            index_probes(0, 100, (0, 0)),
            (DEFAULT_PROBES, 0, ProbesSource::Fixed)
        );
        assert_eq!(
            index_probes(0, 10_000, (0, 0)),
            (default_probes(10_000), 0, ProbesSource::Fixed)
        );
    }

    #[test]
    fn scale_probes_rounds_and_bounds() {
        assert_eq!(scale_probes(20, 1.0), 20);
        assert_eq!(scale_probes(20, 2.0), 40);
        assert_eq!(scale_probes(20, 0.5), 10);
        assert_eq!(scale_probes(5, 0.01), 1);
        assert_eq!(scale_probes(20, 1.0e9), MAX_LISTS);
        assert_eq!(scale_probes(7, f64::NAN), 7);
        assert_eq!(scale_probes(7, 0.0), 7);
        assert_eq!(scale_probes(7, -1.0), 7);
    }

    #[test]
    fn rank_lists_is_sorted_and_complete() {
        let dim = 8;
        let (data, queries) = blobs(800, 3, dim, 6, 4);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let model = IvfPqModel::train(&data, dim, metric, &IvfPqParams::new(12, 2, 8));
            let q = &queries[..dim];
            let all = model.rank_lists(q, 1000);
            assert_eq!(all.len(), 12);
            assert!(all.windows(2).all(|w| w[0].1 <= w[1].1));
            let top3 = model.rank_lists(q, 3);
            assert_eq!(&all[..3], &top3[..]);
            // The best list is the one `assign` picks.
            assert_eq!(model.assign(q), all[0].0);
            assert!(model.rank_lists(q, 0).is_empty());
        }
    }

    /// A model whose centroids pass [`HALF_RANK_MIN_BYTES`] ranks lists from
    /// their half-precision copy: every list's distance within the copy's
    /// rounding of the `f32` one, and the lists a scan would probe the same,
    /// for each metric (cosine and inner product through the direction lists).
    #[test]
    fn large_models_rank_lists_in_half_precision_as_in_f32() {
        let (dim, lists) = (64, 4200);
        assert!(lists * dim * 4 >= HALF_RANK_MIN_BYTES);
        let (cents, queries) = blobs(lists, 20, dim, 40, 9);
        let pq = ProductQuantizer::new(dim, 32, 4, vec![0.0; 32 * 16 * 2]).unwrap();
        for (metric, direction) in [
            (Metric::L2, false),
            (Metric::Cosine, true),
            (Metric::InnerProduct, false),
        ] {
            let model =
                IvfPqModel::from_parts_with(metric, dim, cents.clone(), pq.clone(), direction)
                    .unwrap();
            assert!(model.coarse_half.is_some());
            let mut f32_only = model.clone();
            f32_only.rank_lists_in_f32();
            let (mut same, mut total) = (0, 0);
            for q in queries.chunks_exact(dim) {
                let half = model.list_distances(q);
                let full = f32_only.list_distances(q);
                let scale = full.iter().map(|d| d.1.abs()).fold(0f32, f32::max);
                for (h, f) in half.iter().zip(&full) {
                    assert_eq!(h.0, f.0);
                    assert!(
                        (h.1 - f.1).abs() <= scale * 4e-3,
                        "{metric:?}: {h:?} vs {f:?}"
                    );
                }
                let top = |d: &[(u32, f32)]| {
                    let mut r = RankedLists::new(d.to_vec());
                    r.order_through(32);
                    let mut v: Vec<u32> = r.all()[..32].iter().map(|x| x.0).collect();
                    v.sort_unstable();
                    v
                };
                let (a, b) = (top(&half), top(&full));
                same += a.iter().filter(|l| b.binary_search(l).is_ok()).count();
                total += 32;
            }
            // Near-ties at the 32nd list may swap; nothing else.
            assert!(same * 100 >= total * 98, "{metric:?}: {same} of {total}");
        }
    }

    #[test]
    fn tiny_tables_still_work() {
        let dim = 4;
        // Fewer rows than lists: one list per row, and every row is found.
        let data: Vec<f32> = (0..7 * dim).map(|i| (i * i % 13) as f32).collect();
        let model = IvfPqModel::train(&data, dim, Metric::L2, &IvfPqParams::new(100, 2, 8));
        assert_eq!(model.lists, 7);
        let il = InvertedLists::build(&model, &data);
        let got = il.search(&model, &data[..dim], 10, 10, 100, &data);
        assert_eq!(got.len(), 7);
        assert_eq!(got[0].1, 0);
        // One row.
        let model = IvfPqModel::train(
            &data[..dim],
            dim,
            Metric::Cosine,
            &IvfPqParams::new(10, 4, 4),
        );
        assert_eq!(model.lists, 1);
        // No rows: one zero list, everything still searchable with enough re-ranking.
        let model = IvfPqModel::train(&[], dim, Metric::L2, &IvfPqParams::new(10, 2, 8));
        assert_eq!(model.lists, 1);
        let il = InvertedLists::build(&model, &data);
        let got = il.search(&model, &data[dim..2 * dim], 1, 1, 7, &data);
        assert_eq!(got[0].1, 1);
        let bytes = model.to_bytes();
        assert_eq!(IvfPqModel::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    }

    #[test]
    fn serialization_round_trips_and_rejects_garbage() {
        let dim = 12;
        let (data, queries) = blobs(1000, 2, dim, 5, 5);
        for (metric, m, nbits) in [
            (Metric::L2, 3, 8),
            (Metric::Cosine, 6, 4),
            (Metric::InnerProduct, 4, 8),
        ] {
            let model = IvfPqModel::train(&data, dim, metric, &IvfPqParams::new(9, m, nbits));
            let b = model.to_bytes();
            let back = IvfPqModel::from_bytes(&b).unwrap();
            assert_eq!(back.metric, metric);
            assert_eq!(back.centroids, model.centroids);
            assert_eq!(back.pq.codebooks, model.pq.codebooks);
            assert_eq!(back.encode_batch(&data), model.encode_batch(&data));
            let q = &queries[..dim];
            assert_eq!(back.rank_lists(q, 3), model.rank_lists(q, 3));
            assert!(IvfPqModel::from_bytes(&b[..b.len() - 1]).is_err());
            let mut bad = b.clone();
            bad[4] = 99;
            assert!(IvfPqModel::from_bytes(&bad)
                .unwrap_err()
                .contains("version"));
            let mut bad = b.clone();
            bad[16] = 5; // m = 5 does not divide 12
            assert!(IvfPqModel::from_bytes(&bad).is_err());
        }
        assert!(IvfPqModel::from_bytes(b"nope").is_err());
    }

    #[test]
    fn training_is_deterministic() {
        let dim = 16;
        let (data, _) = blobs(1200, 0, dim, 10, 6);
        let p = IvfPqParams::new(16, 4, 8);
        let a = IvfPqModel::train(&data, dim, Metric::L2, &p);
        let b = IvfPqModel::train(&data, dim, Metric::L2, &p);
        assert_eq!(a.to_bytes(), b.to_bytes());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let c = pool.install(|| IvfPqModel::train(&data, dim, Metric::L2, &p));
        assert_eq!(a.to_bytes(), c.to_bytes());
    }

    #[test]
    fn params_validation_and_defaults() {
        assert!(validate_params(1000, 384, 100, 48, 8).is_ok());
        let e = validate_params(1000, 384, 100, 5, 8).unwrap_err();
        assert!(
            e.starts_with("m must divide the number of dimensions (384); 5 does not"),
            "{e}"
        );
        assert!(validate_params(1000, 384, 0, 48, 8)
            .unwrap_err()
            .contains("lists"));
        assert!(validate_params(1000, 384, 40000, 48, 8)
            .unwrap_err()
            .contains("lists"));
        assert!(validate_params(1000, 384, 10, 48, 6)
            .unwrap_err()
            .contains("nbits"));
        assert!(validate_params(1000, 0, 10, 1, 8).is_err());
        assert!(validate_params(1000, 16001, 10, 1, 8).is_err());
        assert!(validate_params(1000, 8000, 10, 4000, 8)
            .unwrap_err()
            .contains("bytes"));
        assert!(validate_params(1000, 1024, 10, 512, 4)
            .unwrap_err()
            .contains("at most 256"));
        assert!(validate_params(1000, 1024, 10, 256, 4).is_ok());
        assert_eq!(default_params(100_000, 128), (100, 64, 4));
        assert_eq!(default_params(75_000, 384), (75, 128, 4));
        assert_eq!(default_m(128, 8), 32);
        assert_eq!(default_m(384, 8), 64);
        assert_eq!(default_m(768, 4), 192);
        assert_eq!(default_m(1536, 4), 256);
        assert_eq!(default_m(3072, 4), 256);
        // Fewer rows than lists is fine.
        assert!(validate_params(3, 8, 100, 2, 8).is_ok());
        for rows in [0, 1, 10, 1000, 100_000, 10_000_000] {
            for dim in [1, 2, 3, 7, 128, 384, 768, 1536, 16000] {
                let (l, m, b) = default_params(rows, dim);
                assert!(validate_params(rows, dim, l, m, b).is_ok(), "{rows} {dim}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Popping batches from a CandidatePool yields exactly the candidates in
        /// best-first batches, whatever the batch size, cap and arrival order.
        #[test]
        fn candidate_pool_batches_are_exact(
            dists in prop::collection::vec(0u32..5000, 0..3000),
            batch in 1usize..200,
            pops in prop::collection::vec(1usize..300, 1..20),
            nan_every in 0usize..50,
        ) {
            // Nothing dropped here (candidate_pool_reoffers_lose_nothing cuts).
            let mut pool = CandidatePool::with_keep(batch, usize::MAX / 8, usize::MAX / 8);
            let mut all: Vec<(f32, usize)> = Vec::new();
            let ds: Vec<f32> = dists
                .iter()
                .enumerate()
                .map(|(i, &d)| if nan_every > 0 && i % nan_every == 0 { f32::NAN } else { d as f32 })
                .collect();
            // The first half one by one, the rest in pages of 37.
            let half = ds.len() / 2;
            for (i, &d) in ds[..half].iter().enumerate() {
                pool.push(d, i);
            }
            for (p, page) in ds[half..].chunks(37).enumerate() {
                pool.push_all(page, |j| half + p * 37 + j);
            }
            all.extend(ds.iter().enumerate().map(|(i, &d)| (d, i)));
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut taken = 0;
            for &k in &pops {
                // best() is the best estimate left (NaN last), also when cached.
                let want_best = all.get(taken).map(|e| e.0.to_bits());
                prop_assert_eq!(pool.best().map(f32::to_bits), want_best);
                prop_assert_eq!(pool.best().map(f32::to_bits), want_best);
                let mut got = pool.pop_best(k);
                got.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                // The batch, and every candidate whose estimate ties its worst
                // (NaN estimates are not completed: they come last anyway).
                let mut end = (taken + k).min(all.len());
                while end > taken && end < all.len() && !all[end].0.is_nan() && order_key(all[end].0) == order_key(all[end - 1].0) {
                    end += 1;
                }
                let want = &all[taken..end];
                // Ties may be split differently: compare the estimates, then the
                // sets of items once the batch is complete.
                let gd: Vec<u32> = got.iter().map(|e| e.0.to_bits()).collect();
                let wd: Vec<u32> = want.iter().map(|e| e.0.to_bits()).collect();
                prop_assert_eq!(gd, wd);
                taken += got.len();
            }
            prop_assert_eq!(pool.len(), all.len() - taken);
        }

        /// Whatever it keeps, cuts and offers again, every pop returns the best
        /// candidates of everything offered and not yet popped (by estimate, NaN
        /// last), and lists offered after a re-offer count in full.
        #[test]
        fn candidate_pool_reoffers_lose_nothing(
            lists in prop::collection::vec(prop::collection::vec(0u32..300, 0..200), 1..8),
            batch in 1usize..40,
            keep in 1usize..100,
            pops_after in prop::collection::vec(0usize..4, 8),
            nan_every in 0usize..30,
        ) {
            let ds: Vec<Vec<f32>> = lists
                .iter()
                .map(|l| {
                    l.iter()
                        .enumerate()
                        .map(|(i, &d)| if nan_every > 0 && i % nan_every == 1 { f32::NAN } else { d as f32 })
                        .collect()
                })
                .collect();
            let first: Vec<usize> = ds
                .iter()
                .scan(0, |n, l| {
                    let f = *n;
                    *n += l.len();
                    Some(f)
                })
                .collect();
            let offer = |pool: &mut CandidatePool<usize>, l: usize| {
                for (p, page) in ds[l].chunks(37).enumerate() {
                    pool.push_all(page, |j| first[l] + p * 37 + j);
                }
            };
            let mut pool = CandidatePool::with_keep(batch, keep, usize::MAX);
            let interleaved = pops_after[..ds.len() - 1].iter().any(|&p| p > 0);
            let most_ties = {
                let mut k: Vec<u32> = ds.iter().flatten().map(|&d| order_key(d)).collect();
                k.sort_unstable();
                k.chunk_by(|a, b| a == b).map(|r| r.len()).max().unwrap_or(0)
            };
            let mut left: Vec<(u32, usize)> = Vec::new();
            // `keep` doubles at each re-offer.
            let mut keep = keep;
            let mut pop = |pool: &mut CandidatePool<usize>, left: &mut Vec<(u32, usize)>, offered: usize|
                -> Result<(), TestCaseError> {
                if pool.needs_reoffer() {
                    keep *= 2;
                    pool.begin_reoffer();
                    for l in 0..offered {
                        offer(pool, l);
                    }
                    pool.end_reoffer();
                }
                // More only when lists came after pops (a cut keeps every
                // candidate not above the last one popped) or when more than
                // that many estimates tie with the best (a cut keeps them all).
                prop_assert!(pool.len() <= (2 * keep).max(most_ties) || interleaved);
                left.sort_unstable();
                // With nothing held, best() is a lower bound on what was dropped.
                let best = pool.best().map(order_key);
                if pool.is_empty() {
                    prop_assert!(best <= left.first().map(|e| e.0));
                } else {
                    prop_assert_eq!(best, left.first().map(|e| e.0));
                }
                let got = pool.pop_best(batch);
                prop_assert!(got.len() >= batch.min(left.len()) || pool.needs_reoffer());
                if got.len() > batch {
                    // Beyond the batch only estimates equal to its worst.
                    let worst = got.iter().map(|e| order_key(e.0)).max().unwrap();
                    let at_worst = got.iter().filter(|e| order_key(e.0) == worst).count();
                    prop_assert!(got.len() - at_worst < batch);
                }
                let mut gk: Vec<u32> = got.iter().map(|e| order_key(e.0)).collect();
                gk.sort_unstable();
                let wk: Vec<u32> = left[..got.len()].iter().map(|e| e.0).collect();
                for &(d, id) in &got {
                    let at = left.iter().position(|e| e.1 == id);
                    prop_assert!(at.is_some(), "popped twice or never offered: {} {}", id, d);
                    prop_assert_eq!(left.swap_remove(at.unwrap()).0, order_key(d));
                }
                prop_assert_eq!(gk, wk);
                Ok(())
            };
            for l in 0..ds.len() {
                offer(&mut pool, l);
                left.extend(ds[l].iter().enumerate().map(|(j, &d)| (order_key(d), first[l] + j)));
                for _ in 0..pops_after[l] {
                    pop(&mut pool, &mut left, l + 1)?;
                }
            }
            let mut rounds = 0;
            while !left.is_empty() {
                pop(&mut pool, &mut left, ds.len())?;
                rounds += 1;
                prop_assert!(rounds < 10_000);
            }
            prop_assert!(pool.is_empty() && !pool.needs_reoffer());
        }

        /// With a cap, the pool holds at most `2 × cap` and pops the best.
        #[test]
        fn candidate_pool_cap_keeps_the_best(
            dists in prop::collection::vec(0u32..100_000, 0..3000),
            cap in 1usize..400,
        ) {
            let mut pool = CandidatePool::new(50, cap);
            for (i, &d) in dists.iter().enumerate() {
                pool.push(d as f32, i);
                prop_assert!(pool.len() <= 2 * cap);
            }
            let mut want: Vec<u32> = dists.clone();
            want.sort_unstable();
            // The best of them (fewer when a cut fell inside a run of equal
            // estimates: a re-offer brings the rest; more when the cap-th ties
            // with the next).
            let mut got: Vec<u32> = pool.pop_best(cap).iter().map(|e| e.0 as u32).collect();
            got.sort_unstable();
            prop_assert!(!got.is_empty() || dists.is_empty());
            prop_assert_eq!(&got[..], &want[..got.len()]);
        }

        /// TopK keeps exactly the N smallest (distinct) distances, sorted.
        #[test]
        fn topk_keeps_exactly_the_best(
            dists in prop::collection::hash_set(0u32..100_000, 0..300),
            cap in 0usize..50,
        ) {
            let dists: Vec<f32> = dists.into_iter().map(|d| d as f32 / 7.0).collect();
            let mut top = TopK::new(cap);
            for (i, &d) in dists.iter().enumerate() {
                top.push(d, i);
            }
            let got: Vec<f32> = top.into_sorted_vec().into_iter().map(|(d, i)| {
                assert_eq!(dists[i], d);
                d
            }).collect();
            let mut want = dists.clone();
            want.sort_by(f32::total_cmp);
            want.truncate(cap);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn topk_nan_and_threshold() {
        let mut t = TopK::new(2);
        assert_eq!(t.threshold(), f32::INFINITY);
        assert!(t.push(f32::NAN, 1));
        assert!(t.push(3.0, 2));
        assert_eq!(t.threshold(), f32::INFINITY); // the NaN counts as +inf
        assert!(t.push(1.0, 3));
        assert_eq!(t.threshold(), 3.0);
        assert!(!t.push(3.0, 4));
        assert_eq!(t.into_sorted_vec(), vec![(1.0, 3), (3.0, 2)]);
    }

    #[test]
    fn exact_distance_per_metric() {
        let a = [1.0, 0.0];
        let b = [0.0, 2.0];
        assert_eq!(exact_distance(Metric::L2, &a, &b), 5.0);
        assert_eq!(exact_distance(Metric::InnerProduct, &a, &[3.0, 1.0]), -3.0);
        assert!((exact_distance(Metric::Cosine, &a, &b) - 1.0).abs() < 1e-6);
        assert!(exact_distance(Metric::Cosine, &a, &[0.0, 0.0]).is_nan());
        let mut z = [0.0f32; 3];
        normalize(&mut z);
        assert_eq!(z, [0.0; 3]);
    }
}
