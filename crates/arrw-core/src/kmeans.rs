//! k-means clustering, used for the coarse (inverted-list) quantizer and for the
//! product quantizer's sub-codebooks.
//!
//! The algorithm is Lloyd iteration with greedy k-means++ seeding, tuned for index
//! builds, where wall-clock time matters:
//!
//! - **Subsampling.** At most `k * max_points_per_centroid` points (256, as FAISS)
//!   take part in training, and for large `k` at most `max(65536, 32 k)`, which
//!   bounds the cost of an iteration. Measured on MiniLM embeddings (75 lists), 64
//!   points per centroid gave ~1% lower recall@10 at a fixed probe count than 256,
//!   and 1000 were no better than 256.
//! - **Seeding** is greedy k-means++ (the best of `2 + ln k` D²-sampled
//!   candidates) on a random subset of `16 k` points. Plain k-means++ occasionally
//!   seeds two centroids in one cluster and none in its neighbour, a local minimum
//!   Lloyd cannot leave; seeding on the whole sample costs more than the Lloyd
//!   iterations and measured no better.
//! - **Iterations.** 25 Lloyd iterations by default, no early stop (FAISS's
//!   default). Stopping at a 0.05% inertia improvement (~12 iterations) cost 0.1–0.3%
//!   of recall@10 at a fixed probe count on SIFT.
//! - **Blocked nearest-centroid kernel.** Assignment is the cost of k-means
//!   (`n * k * dim` multiply-adds per iteration). Calling a distance function per
//!   (point, centroid) pair spends most of its time on horizontal sums and loads;
//!   instead centroids are laid out in *panels* of [`LANES`] centroids transposed
//!   (`[dim][LANES]`), and the kernel computes 4 points × 16 centroids of dot products
//!   at once in registers (a tiny GEMM micro-kernel). `||x - c||² = ||x||² + ||c||² -
//!   2 x·c`, and `||x||²` does not change the argmin, so the kernel minimises
//!   `||c||²/2 - x·c`. The same kernel assigns rows to lists in the index build and
//!   encodes product-quantizer sub-vectors, so it is runtime-dispatched to AVX2+FMA
//!   where available.
//! - **Deterministic whatever the thread count.** Assignment is per point; centroid
//!   sums are computed per cluster over its members in index order (a counting sort
//!   groups them), so no floating-point reduction depends on how rayon splits work.
//!   The only randomness is a [`StdRng`] seeded from [`KMeansParams::seed`]. Results
//!   are bitwise identical for the same seed, input and instruction set (the AVX2+FMA
//!   kernel rounds differently from the portable one).
//! - **Empty clusters** are repaired by splitting the largest cluster: the empty
//!   centroid becomes a slightly perturbed copy of the big one, which moves the other
//!   way, so the next assignment divides its points between the two.
//!
//! `k` larger than the number of points: [`train`] returns **fewer** centroids (one
//! per input point, i.e. the points themselves), never duplicates. Duplicated
//! centroids would make empty inverted lists that a query still spends probes on, so a
//! table smaller than `lists` would answer `LIMIT 10` with fewer rows than it has.
//! Callers must therefore use the length of the returned vector, not `k`.

use crate::distance;
use crate::par;
use crate::stop::Stop;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Width of a centroid panel: 16 `f32` = two AVX2 registers (or one AVX-512 one).
pub const LANES: usize = 16;

/// Default [`KMeansParams::init_points_per_centroid`].
const INIT_PPC: usize = 16;

/// Points per parallel work item in assignment loops (at most: see
/// [`block_rows`]).
const BLOCK: usize = 256;

/// Multiply-adds one parallel block of an assignment pass may take (rows ×
/// centroids × dimensions). Compute threads look at the stop flag between
/// blocks, so a block is the longest one runs on after a cancel: 2^26 is a few
/// milliseconds of one core. 256 rows of 1,536 dimensions against 2,000
/// centroids (0.8 G) kept a cancelled build training for 125–300 ms (hunt-87).
pub(crate) const BLOCK_WORK: usize = 1 << 26;

/// Rows per parallel block when each row is scored against `k` rows of `dim`
/// floats: within [`BLOCK_WORK`], at most `max`, at least 4 (the kernels score
/// four points at a time).
pub(crate) fn block_rows(k: usize, dim: usize, max: usize) -> usize {
    (BLOCK_WORK / (k.max(1) * dim.max(1))).clamp(4, max.max(4))
}

/// How initial centroids are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Greedy k-means++ (D² sampling, best of `2 + ln k` candidates per step): well
    /// spread centroids, fewer Lloyd iterations needed.
    KMeansPlusPlus,
    /// `k` distinct random points of the training sample (what FAISS does).
    Random,
}

/// Tuning knobs of [`train`]. [`Default`] is what the index build uses.
#[derive(Clone, Debug)]
pub struct KMeansParams {
    /// Upper bound on Lloyd iterations.
    pub max_iters: usize,
    /// Training uses at most `k * max_points_per_centroid` points of the input (a
    /// seeded random subsample); 0 means no limit.
    pub max_points_per_centroid: usize,
    /// ... and at most `max(max_sample, k * min_points_per_centroid)` points, which
    /// bounds the cost of an iteration for large `k` (0: no such bound).
    pub max_sample: usize,
    /// See `max_sample`.
    pub min_points_per_centroid: usize,
    /// Seed of every random choice; the same seed and input give the same centroids.
    pub seed: u64,
    /// Seeding method (greedy k-means++ by default).
    pub init: Init,
    /// k-means++ seeding looks at `k * init_points_per_centroid` random points of
    /// the training sample (0: all of it).
    pub init_points_per_centroid: usize,
    /// Stop when an iteration lowers the inertia by less than this fraction (0:
    /// always run `max_iters`).
    pub tolerance: f64,
    /// Checked between blocks of work: once requested, training returns early with
    /// meaningless centroids, which the caller must discard (see [`crate::stop`]).
    pub stop: Stop,
    /// Spherical k-means: points are assigned to the centroid of largest cosine
    /// similarity (L2 to the centroids scaled to unit length), so on unit-length
    /// data the partition is spherical k-means'. The centroids returned are still
    /// the clusters' means (their directions are the spherical centroids): an
    /// index keeps the mean for residuals, which are shorter than residuals from
    /// a unit vector, and ranks lists by its direction. For cosine indexes: the
    /// mean of a spread-out cluster is short, and L2 to it ranks such clusters too
    /// late for the neighbours they hold. The inertia reported is then to the
    /// nearest direction.
    pub spherical: bool,
}

impl Default for KMeansParams {
    fn default() -> Self {
        KMeansParams {
            max_iters: 25,
            max_points_per_centroid: 256,
            max_sample: 65536,
            min_points_per_centroid: 32,
            seed: 0x6172_7277,
            init: Init::KMeansPlusPlus,
            init_points_per_centroid: INIT_PPC,
            tolerance: 0.0,
            stop: Stop::never(),
            spherical: false,
        }
    }
}

/// Result of [`train_detailed`].
#[derive(Clone, Debug)]
pub struct KMeansResult {
    /// `k' × dim` row-major centroids, `k' = min(k, n)`.
    pub centroids: Vec<f32>,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Sum of squared distances of the training sample to its nearest centroid,
    /// measured at the last assignment step.
    pub inertia: f64,
}

/// Trains `k` centroids on `data` (`n × dim`, row-major) and returns them row-major.
///
/// Returns `min(k, n) × dim` values: with `n <= k` the centroids are the points
/// themselves, and with `n == 0` the result is empty (see the module docs).
pub fn train(data: &[f32], dim: usize, k: usize, params: &KMeansParams) -> Vec<f32> {
    train_detailed(data, dim, k, params).centroids
}

/// How many of `n` points a run for `k` centroids trains on.
fn sample_limit(n: usize, k: usize, params: &KMeansParams) -> usize {
    if params.max_points_per_centroid == 0 {
        n
    } else {
        let mut l = k.saturating_mul(params.max_points_per_centroid);
        if params.max_sample > 0 {
            l = l.min(
                params
                    .max_sample
                    .max(k.saturating_mul(params.min_points_per_centroid)),
            );
        }
        l.max(k + 1)
    }
}

/// The progress units a [`train`] of `k` centroids on `n` points reports through
/// `params.stop` ([`crate::stop::Stop::advance`]): one per point assigned in a
/// Lloyd iteration, `max_iters` iterations (an early stop reports the rest at
/// once). Callers [`crate::stop::Stop::plan`] it before training.
pub fn planned_work(n: usize, k: usize, params: &KMeansParams) -> u64 {
    if k == 0 || n <= k {
        return 0;
    }
    let sample = n.min(sample_limit(n, k, params)) as u64;
    let iters = params.max_iters.max(1) as u64;
    if k >= TWO_LEVEL_MIN {
        // The top level, then every sample point once more in its group
        // (each group's own seeding is reported on top of its iterations).
        let top = planned_work(sample as usize, two_level_top(k), params);
        return top + sample * iters + groups_seeding_bound(sample as usize, k, params);
    }
    sample * iters + seeding_work(sample as usize, k, params)
}

/// At least the progress units the groups of a two-level run of `k` centroids
/// on `sample` points report for their seeding, whatever their sizes: each
/// group seeds `k_j − 1` picks on at most `k_j × init_points_per_centroid` of
/// its points, with no more trials than `k` would take (the last step of a
/// two-level run reports what its groups did not, so that done meets planned).
fn groups_seeding_bound(sample: usize, k: usize, params: &KMeansParams) -> u64 {
    if params.init != Init::KMeansPlusPlus {
        return 0;
    }
    let m = if params.init_points_per_centroid == 0 {
        sample
    } else {
        k.saturating_mul(params.init_points_per_centroid)
            .min(sample)
    };
    (seeding_trials(k) * m + k) as u64
}

/// The progress units of the k-means++ seeding of a flat run of `k` centroids
/// on its `sample` points (see [`kmeans_plus_plus`]; 0 for random seeds).
fn seeding_work(sample: usize, k: usize, params: &KMeansParams) -> u64 {
    if params.init != Init::KMeansPlusPlus || k < 2 {
        return 0;
    }
    let m = k.saturating_mul(params.init_points_per_centroid.max(1));
    let m = if params.init_points_per_centroid == 0 || m >= sample {
        sample
    } else {
        m
    };
    seeding_units_per_pick(m, k) * (k as u64 - 1)
}

/// From this many centroids on, [`train`] runs in two levels.
///
/// A flat run costs `n × k × dim` per Lloyd iteration on a sample that grows
/// with `k` (32 points a centroid), so `k²`: 3,162 lists (10M rows at √rows) took
/// most of a 95 s build, and 10,000 lists (10M rows at rows / 1000) had not
/// finished seeding after 4 minutes. Two levels cost about `2 √k / k` of that.
pub const TWO_LEVEL_MIN: usize = 2048;

/// Centroids of the top level of a two-level run for `k`.
fn two_level_top(k: usize) -> usize {
    ((k as f64).sqrt().ceil() as usize).max(2)
}

/// `k` centroids in two levels (`k ≥ TWO_LEVEL_MIN`) on `data` (the sample):
/// `√k` top centroids, every sample point assigned to its nearest, then each top cluster's
/// points split into its share of the `k` (proportional to its size, at least one
/// each, never more than its points) by a flat run of its own (the groups run in
/// parallel). The centroids are those of the second level. Their inertia is a few
/// percent above a flat run's (the top level's borders are fixed), the price of
/// builds at 10M rows in minutes rather than hours; the same trade VectorChord
/// and FAISS make for large `k`.
fn train_two_level(data: &[f32], dim: usize, k: usize, params: &KMeansParams) -> KMeansResult {
    let n = data.len() / dim;
    let top = train_detailed(data, dim, two_level_top(k), params).centroids;
    let iters = params.max_iters.max(1) as u64;
    if params.stop.requested() || top.is_empty() {
        params.stop.advance(n as u64 * iters);
        return KMeansResult {
            centroids: Vec::new(),
            iterations: 0,
            inertia: 0.0,
        };
    }
    let labels = assign(data, dim, &top);
    let groups = top.len() / dim;
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); groups];
    for (i, &l) in labels.iter().enumerate() {
        members[l as usize].push(i as u32);
    }
    let counts: Vec<usize> = members.iter().map(Vec::len).collect();
    let shares = split_shares(&counts, k);
    let parts: Vec<(Vec<f32>, f64, u64)> = par::iter(&members)
        .zip(par::iter(&shares))
        .enumerate()
        .map(|(j, (m, &kj))| {
            if kj == 0 || params.stop.requested() {
                return (Vec::new(), 0.0, 0);
            }
            let mut pts = Vec::with_capacity(m.len() * dim);
            for &i in m {
                pts.extend_from_slice(&data[i as usize * dim..(i as usize + 1) * dim]);
            }
            let p = KMeansParams {
                seed: params.seed ^ (j as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ..params.clone()
            };
            let r = train_detailed(&pts, dim, kj, &p);
            (r.centroids, r.inertia, planned_work(m.len(), kj, &p))
        })
        .collect();
    // Every group reported its own plan; the rest of the second level's plan
    // (groups with no more points than centroids train nothing) is done now.
    let reported: u64 = parts.iter().map(|p| p.2).sum();
    params
        .stop
        .advance((n as u64 * iters + groups_seeding_bound(n, k, params)).saturating_sub(reported));
    let mut centroids = Vec::with_capacity(k * dim);
    let mut inertia = 0.0;
    for (c, i, _) in parts {
        centroids.extend_from_slice(&c);
        inertia += i;
    }
    if params.stop.requested() {
        centroids.clear();
    }
    KMeansResult {
        centroids,
        iterations: params.max_iters.max(1),
        inertia,
    }
}

/// At most `limit` rows of `data` drawn at random (all of them, borrowed, when
/// there are no more); sorted indices keep the gather sequential in memory.
fn subsample<'a>(
    data: &'a [f32],
    dim: usize,
    limit: usize,
    rng: &mut StdRng,
) -> std::borrow::Cow<'a, [f32]> {
    let n = data.len() / dim;
    if n <= limit {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut idx = rand::seq::index::sample(rng, n, limit).into_vec();
    idx.sort_unstable();
    let mut s = Vec::with_capacity(limit * dim);
    for &i in &idx {
        s.extend_from_slice(&data[i * dim..(i + 1) * dim]);
    }
    std::borrow::Cow::Owned(s)
}

/// Splits `k` centroids over groups of `counts` points: proportional to the
/// counts (largest remainders), at least one per non-empty group, at most its
/// points. Sums to `min(k, Σ counts)`.
fn split_shares(counts: &[usize], k: usize) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    let k = k.min(total);
    if k == 0 {
        return vec![0; counts.len()];
    }
    let nonempty = counts.iter().filter(|&&c| c > 0).count();
    if k < nonempty {
        // Fewer centroids than groups: one each for the k largest.
        let mut by_size: Vec<usize> = (0..counts.len()).collect();
        by_size.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
        let mut shares = vec![0; counts.len()];
        for &j in &by_size[..k] {
            shares[j] = 1;
        }
        return shares;
    }
    // One each first, the rest in proportion to the points beyond the first.
    let mut shares: Vec<usize> = counts.iter().map(|&c| usize::from(c > 0)).collect();
    let mut left = k.saturating_sub(nonempty);
    let spare: usize = total - nonempty;
    if left > 0 && spare > 0 {
        let mut rema: Vec<(f64, usize)> = Vec::with_capacity(counts.len());
        for (j, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let want = (c - 1) as f64 * left as f64 / spare as f64;
            let w = (want.floor() as usize).min(c - shares[j]);
            shares[j] += w;
            rema.push((want - want.floor(), j));
        }
        left = k - shares.iter().sum::<usize>();
        rema.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // Largest remainders first; then anyone with points to spare.
        for &(_, j) in rema.iter().cycle().take(rema.len() * 2) {
            if left == 0 {
                break;
            }
            if shares[j] < counts[j] {
                shares[j] += 1;
                left -= 1;
            }
        }
        for j in 0..counts.len() {
            let add = left.min(counts[j] - shares[j]);
            shares[j] += add;
            left -= add;
        }
    }
    shares
}

/// [`train`], also reporting iterations and final inertia.
pub fn train_detailed(data: &[f32], dim: usize, k: usize, params: &KMeansParams) -> KMeansResult {
    assert!(dim > 0, "dimension must be positive");
    assert_eq!(data.len() % dim, 0, "data length is not a multiple of dim");
    let n = data.len() / dim;
    if k == 0 || n == 0 {
        return KMeansResult {
            centroids: Vec::new(),
            iterations: 0,
            inertia: 0.0,
        };
    }
    if n <= k {
        return KMeansResult {
            centroids: data.to_vec(),
            iterations: 0,
            inertia: 0.0,
        };
    }

    let mut rng = StdRng::seed_from_u64(params.seed);
    let sample = subsample(data, dim, sample_limit(n, k, params), &mut rng);
    if k >= TWO_LEVEL_MIN {
        return train_two_level(&sample, dim, k, params);
    }
    train_flat(&sample, dim, k, params, &mut rng)
}

/// One level of k-means on `data` (the sample: `n > k > 0`).
fn train_flat(
    data: &[f32],
    dim: usize,
    k: usize,
    params: &KMeansParams,
    rng: &mut StdRng,
) -> KMeansResult {
    let n = data.len() / dim;

    if params.stop.requested() {
        return KMeansResult {
            centroids: Vec::new(),
            iterations: 0,
            inertia: 0.0,
        };
    }
    let mut centroids = match params.init {
        Init::KMeansPlusPlus => {
            // Seeding is sequential in k (each pick needs a pass over the points), so
            // it runs on a smaller random subset; Lloyd then uses the whole sample.
            let m = k.saturating_mul(params.init_points_per_centroid.max(1));
            if params.init_points_per_centroid == 0 || m >= n {
                kmeans_plus_plus(data, dim, k, rng, &params.stop)
            } else {
                let idx = rand::seq::index::sample(rng, n, m);
                let mut sub = Vec::with_capacity(m * dim);
                for i in idx.iter() {
                    sub.extend_from_slice(&data[i * dim..(i + 1) * dim]);
                }
                kmeans_plus_plus(&sub, dim, k, rng, &params.stop)
            }
        }
        Init::Random => {
            let idx = rand::seq::index::sample(rng, n, k);
            let mut c = Vec::with_capacity(k * dim);
            for i in idx.iter() {
                c.extend_from_slice(&data[i * dim..(i + 1) * dim]);
            }
            c
        }
    };

    let norms: Vec<f32> = par::chunks(data, dim)
        .map(|x| distance::dot(x, x))
        .collect();
    let mut labels = vec![0u32; n];
    let mut scores = vec![0f32; n];
    let mut prev = f64::INFINITY;
    let mut inertia = f64::INFINITY;
    let mut iterations = 0;
    for _ in 0..params.max_iters.max(1) {
        if params.stop.requested() {
            break;
        }
        iterations += 1;
        let panels = if params.spherical {
            Panels::new(&unit_rows(&centroids, dim), dim, Bias::HalfSquaredNorm)
        } else {
            Panels::new(&centroids, dim, Bias::HalfSquaredNorm)
        };
        panels.nearest_par_until(data, &mut labels, &mut scores, &params.stop);
        if params.stop.requested() {
            break;
        }
        inertia = scores
            .iter()
            .zip(&norms)
            .map(|(&s, &nx)| f64::from((nx + 2.0 * s).max(0.0)))
            .sum();
        update_centroids(data, dim, &labels, &mut centroids, rng);
        params.stop.advance(n as u64);
        if inertia == 0.0 || (prev.is_finite() && prev - inertia <= params.tolerance * prev) {
            break;
        }
        prev = inertia;
    }
    // Iterations not run (converged early) count as done: see planned_work.
    params
        .stop
        .advance((params.max_iters.max(1) - iterations) as u64 * n as u64);
    KMeansResult {
        centroids,
        iterations,
        inertia,
    }
}

/// Index of the nearest (L2) centroid of every row of `data`, computed in parallel.
pub fn assign(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    assert_eq!(data.len() % dim, 0);
    assert!(!centroids.is_empty(), "no centroids");
    let n = data.len() / dim;
    let panels = Panels::new(centroids, dim, Bias::HalfSquaredNorm);
    let mut labels = vec![0u32; n];
    let mut scores = vec![0f32; n];
    panels.nearest_par(data, &mut labels, &mut scores);
    labels
}

/// Sum of squared L2 distances of every row of `data` to its nearest centroid.
pub fn inertia(data: &[f32], dim: usize, centroids: &[f32]) -> f64 {
    let labels = assign(data, dim, centroids);
    par::chunks(data, dim)
        .zip(par::iter(&labels))
        .map(|(x, &l)| {
            let c = &centroids[l as usize * dim..(l as usize + 1) * dim];
            f64::from(distance::l2_squared(x, c))
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// Candidates k-means++ seeding tries per pick for `k` centroids (see
/// [`kmeans_plus_plus`]).
fn seeding_trials(k: usize) -> usize {
    2 + (k as f64).ln().floor().max(0.0) as usize
}

/// The progress units one pick of k-means++ seeding on `m` points reports:
/// its distance computations (`trials × m`) in units of one point assigned to
/// `k` centroids (a Lloyd unit, see [`planned_work`]), at least 1.
fn seeding_units_per_pick(m: usize, k: usize) -> u64 {
    ((seeding_trials(k) * m).div_ceil(k.max(1)) as u64).max(1)
}

/// Points per block of the seeding's pass: ~256 kB of them (a core's L2
/// cache), so that the block stays in cache while every candidate of the
/// pick is measured against it; a multiple of [`LANES`], at most 4,096 (the
/// longest a thread runs on after a stop: a pass over all the points was
/// 110 MB at 18,000 × 1,536).
fn seeding_block(dim: usize) -> usize {
    let rows = (256 * 1024 / (dim.max(1) * 4)).clamp(LANES, 4096);
    rows / LANES * LANES
}

/// Greedy k-means++ seeding: each next centroid is the best (lowest resulting
/// potential, i.e. sum of squared distances to the nearest centroid) of
/// `2 + ln k` candidates drawn with probability proportional to their squared
/// distance to the nearest centroid chosen so far. Plain k-means++ (one candidate)
/// sometimes puts two seeds in one cluster and none in a neighbouring one, a
/// local minimum Lloyd iterations cannot leave.
///
/// A pick's candidates are all drawn before any is measured (each draw only
/// reads the distances to the centroids chosen before the pick), then
/// measured in one pass over the points, block by block, every candidate
/// against a block while it is in cache. Measured one pass per candidate, the
/// seeding streamed the points from memory `2 + ln k` times a pick and took
/// 14–17 s of a 22 s build of 1.5M rows at 1,500 lists (hunt-154); the picks
/// are the same either way. Reports [`seeding_units_per_pick`] per pick to
/// `stop` (the build's progress moved not at all while it seeded).
fn kmeans_plus_plus(data: &[f32], dim: usize, k: usize, rng: &mut StdRng, stop: &Stop) -> Vec<f32> {
    let blk = seeding_block(dim);
    let n = data.len() / dim;
    let trials = seeding_trials(k);
    let per_pick = seeding_units_per_pick(n, k);
    // The points themselves laid out as panels: the distances of one candidate to
    // a block of them are then a vectorised loop (`Panels::squared_distances`).
    // Every block but the last holds exactly `blk` points (a multiple of LANES),
    // so point `i` is entry `i` of the concatenated distance vectors.
    let blocks: Vec<Panels> = par::chunks(data, blk * dim)
        .map(|c| Panels::new(c, dim, Bias::Zero))
        .collect();
    let padded = blocks.iter().map(|b| b.data.len() / dim).sum::<usize>();
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.gen_range(0..n);
    centroids.extend_from_slice(&data[first * dim..(first + 1) * dim]);
    let mut mind = vec![0f32; padded];
    par::chunks_mut(&mut mind, blk)
        .zip(par::iter(&blocks))
        .for_each(|(o, b)| b.squared_distances(&data[first * dim..(first + 1) * dim], o));
    // Padding never gets picked.
    mind[n..].fill(0.0);
    // The candidates' distances, block-major: block j's `trials` runs of its
    // points, one per candidate, each already lowered to `mind`.
    let mut cands = vec![0f32; padded * trials];
    let mut picks: Vec<usize> = Vec::with_capacity(trials);
    let mut group_sums = vec![0f64; n.div_ceil(SUM_GROUP)];
    for _ in 1..k {
        // Checked between picks, and by every block of a pick's pass.
        if stop.requested() {
            break;
        }
        for (g, chunk) in group_sums.iter_mut().zip(mind[..n].chunks(SUM_GROUP)) {
            *g = sum_f64(chunk);
        }
        let total: f64 = group_sums.iter().sum();
        picks.clear();
        for _ in 0..trials {
            picks.push(d2_draw(&mind[..n], &group_sums, total, rng));
        }
        par::chunks_mut(&mut cands, blk * trials)
            .zip(par::iter(&blocks))
            .zip(par::chunks(&mind, blk))
            .for_each(|((o, b), m)| {
                if stop.requested() {
                    return;
                }
                for (t, &p) in picks.iter().enumerate() {
                    let run = &mut o[t * m.len()..(t + 1) * m.len()];
                    b.squared_distances(&data[p * dim..(p + 1) * dim], run);
                    run.iter_mut().zip(m).for_each(|(c, &md)| *c = c.min(md));
                }
            });
        if stop.requested() {
            break;
        }
        // Each candidate's potential, summed in point order as one pass over
        // its distances would (blocks are multiples of 8 points).
        let mut best_pot = f64::INFINITY;
        let mut best_t = 0;
        for t in 0..trials {
            let mut acc = SumF64::default();
            let mut left = n;
            for (j, b) in blocks.iter().enumerate() {
                let rows = b.data.len() / dim;
                let run = &cands[j * blk * trials + t * rows..][..rows.min(left)];
                acc.add(run);
                left -= run.len();
            }
            let pot = acc.total();
            if t == 0 || pot < best_pot {
                best_pot = pot;
                best_t = t;
            }
        }
        for (j, b) in blocks.iter().enumerate() {
            let rows = b.data.len() / dim;
            let at = j * blk;
            mind[at..at + rows].copy_from_slice(&cands[j * blk * trials + best_t * rows..][..rows]);
        }
        let p = picks[best_t];
        centroids.extend_from_slice(&data[p * dim..(p + 1) * dim]);
        stop.advance(per_pick);
    }
    centroids
}

/// One D² draw of k-means++ seeding: a point with probability proportional to
/// `mind` (each point's squared distance to the nearest centroid chosen),
/// found through `group_sums` (the sums of `mind` over groups of
/// [`SUM_GROUP`] points) without a prefix sum over all of them; `total` is
/// their sum. Never an existing centroid (weight 0) unless every point is one.
fn d2_draw(mind: &[f32], group_sums: &[f64], total: f64, rng: &mut StdRng) -> usize {
    let n = mind.len();
    if !(total > 0.0 && total.is_finite()) {
        // Every point coincides with a centroid: any choice is a duplicate.
        return rng.gen_range(0..n);
    }
    let mut r = rng.gen::<f64>() * total;
    let mut g = 0;
    while g + 1 < group_sums.len() && r >= group_sums[g] {
        r -= group_sums[g];
        g += 1;
    }
    let start = g * SUM_GROUP;
    let end = (start + SUM_GROUP).min(n);
    // The first point with positive weight whose running sum exceeds r, else
    // (rounding) the last one with positive weight.
    let mut pick = None;
    for (i, &d) in mind[start..end].iter().enumerate() {
        if d > 0.0 {
            pick = Some(start + i);
            r -= f64::from(d);
            if r < 0.0 {
                break;
            }
        }
    }
    pick.unwrap_or_else(|| rng.gen_range(0..n))
}

/// Points per group of [`d2_draw`]'s sums: D² sampling without a sequential
/// prefix sum over all points, but sums of groups (vectorised), then a walk
/// over groups and within one.
const SUM_GROUP: usize = 256;

/// [`sum_f64`] over a sequence of slices, as if they were one: every slice
/// but the last must be a multiple of 8 long (the last one's tail, under 8
/// values, is added one by one at the end).
#[derive(Default)]
struct SumF64 {
    acc: [f64; 8],
    tail: [f32; 7],
    tail_len: usize,
}

impl SumF64 {
    fn add(&mut self, v: &[f32]) {
        debug_assert_eq!(self.tail_len, 0, "only the last slice may end in a tail");
        let (chunks, rest) = v.as_chunks::<8>();
        for c in chunks {
            for (a, &x) in self.acc.iter_mut().zip(c) {
                *a += f64::from(x);
            }
        }
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn total(&self) -> f64 {
        let a = &self.acc;
        let mut s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
        for &x in &self.tail[..self.tail_len] {
            s += f64::from(x);
        }
        s
    }
}

/// Sum in f64 with 8 independent accumulators (vectorisable, and not bound by
/// the latency of one long chain of additions); deterministic for a given input.
fn sum_f64(v: &[f32]) -> f64 {
    let mut s = SumF64::default();
    s.add(v);
    s.total()
}

/// Replaces every centroid by the mean of its points (deterministically: each
/// cluster sums its members in index order) and repairs empty clusters.
fn update_centroids(
    data: &[f32],
    dim: usize,
    labels: &[u32],
    centroids: &mut [f32],
    rng: &mut StdRng,
) {
    let k = centroids.len() / dim;
    let mut counts = vec![0usize; k];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let mut start = vec![0usize; k + 1];
    for c in 0..k {
        start[c + 1] = start[c] + counts[c];
    }
    let mut fill = start.clone();
    let mut order = vec![0u32; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        order[fill[l as usize]] = i as u32;
        fill[l as usize] += 1;
    }
    par::chunks_mut(centroids, dim).enumerate().for_each_init(
        || vec![0f64; dim],
        |acc, (c, cent)| {
            let members = &order[start[c]..start[c + 1]];
            if members.is_empty() {
                return;
            }
            acc.iter_mut().for_each(|a| *a = 0.0);
            for &i in members {
                let x = &data[i as usize * dim..(i as usize + 1) * dim];
                for (a, &v) in acc.iter_mut().zip(x) {
                    *a += f64::from(v);
                }
            }
            let inv = 1.0 / members.len() as f64;
            for (o, a) in cent.iter_mut().zip(acc.iter()) {
                *o = (a * inv) as f32;
            }
        },
    );
    split_empty_clusters(dim, &mut counts, centroids, rng);
}

/// `rows` (`dim` wide) with every non-zero row scaled to unit length: the
/// directions of spherical k-means' centroids ([`KMeansParams::spherical`]).
pub fn unit_rows(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut out = rows.to_vec();
    par::chunks_mut(&mut out, dim).for_each(|r| {
        let n = f64::from(distance::dot(r, r)).sqrt();
        if n > 0.0 && n.is_finite() {
            let inv = (1.0 / n) as f32;
            r.iter_mut().for_each(|v| *v *= inv);
        }
    });
    out
}

/// Gives every empty cluster half of the largest cluster: the two centroids become
/// `c ± δ` with a small random `δ`, so the next assignment splits its points.
fn split_empty_clusters(dim: usize, counts: &mut [usize], centroids: &mut [f32], rng: &mut StdRng) {
    const EPS: f32 = 1.0 / 1024.0;
    for empty in 0..counts.len() {
        if counts[empty] != 0 {
            continue;
        }
        // Largest cluster, lowest index on ties.
        let mut big = 0;
        for (c, &cnt) in counts.iter().enumerate() {
            if cnt > counts[big] {
                big = c;
            }
        }
        if counts[big] < 2 {
            break; // nothing left to split
        }
        let scale = {
            let b = &centroids[big * dim..(big + 1) * dim];
            let mean_abs = b.iter().map(|v| v.abs()).sum::<f32>() / dim as f32;
            if mean_abs > 0.0 {
                mean_abs
            } else {
                1.0
            }
        };
        for t in 0..dim {
            let v = centroids[big * dim + t];
            let delta = EPS * (v.abs() + scale) * if rng.gen::<bool>() { 1.0 } else { -1.0 };
            centroids[empty * dim + t] = v + delta;
            centroids[big * dim + t] = v - delta;
        }
        let half = counts[big] / 2;
        counts[empty] = half;
        counts[big] -= half;
    }
}

// ---------------------------------------------------------------------------------
// Blocked nearest-row kernel, shared with `pq` and `ivf`.
// ---------------------------------------------------------------------------------

/// What [`Panels`] adds to `-x·c` to form the score it minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bias {
    /// `||c||²/2 - x·c`: minimising it finds the nearest row in L2 distance, and
    /// `||x - c||² = ||x||² + 2 * score`.
    HalfSquaredNorm,
    /// `-x·c`: minimising it finds the row of largest inner product.
    Zero,
}

/// Rows (centroids or codewords) re-laid for the blocked kernel: panels of
/// [`LANES`] rows stored transposed (`[panel][dim][LANES]`), the last panel padded
/// with zero rows whose bias is `+inf` so they never win.
#[derive(Clone, Debug)]
pub(crate) struct Panels {
    dim: usize,
    rows: usize,
    data: Vec<f32>,
    bias: Vec<f32>,
}

impl Panels {
    pub(crate) fn new(rows: &[f32], dim: usize, bias: Bias) -> Self {
        assert!(dim > 0);
        assert_eq!(rows.len() % dim, 0);
        let n = rows.len() / dim;
        let npanels = n.div_ceil(LANES);
        let mut data = vec![0f32; npanels * dim * LANES];
        let mut b = vec![f32::INFINITY; npanels * LANES];
        for (r, row) in rows.chunks_exact(dim).enumerate() {
            let (p, l) = (r / LANES, r % LANES);
            let panel = &mut data[p * dim * LANES..(p + 1) * dim * LANES];
            for (t, &v) in row.iter().enumerate() {
                panel[t * LANES + l] = v;
            }
            b[r] = match bias {
                Bias::HalfSquaredNorm => 0.5 * distance::dot(row, row),
                Bias::Zero => 0.0,
            };
        }
        Panels {
            dim,
            rows: n,
            data,
            bias: b,
        }
    }

    /// The transposed values (`[panel][dim][LANES]`, padding rows zero) and
    /// `dim`: what [`crate::halfpanels::HalfPanels`] copies.
    pub(crate) fn raw(&self) -> (&[f32], usize) {
        (&self.data, self.dim)
    }

    /// Rows including the padding of the last panel: the length of the tables
    /// [`Panels::squared_distances`] and [`Panels::dots`] fill.
    pub(crate) fn padded_rows(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Row `r`'s value in coordinate `t`.
    #[cfg(test)]
    pub(crate) fn get(&self, r: usize, t: usize) -> f32 {
        let (p, l) = (r / LANES, r % LANES);
        self.data[p * self.dim * LANES + t * LANES + l]
    }

    /// For every point `i` (the `dim` values at `points[i * stride + offset..]`, for
    /// `i < out_idx.len()`), the index of the row minimising the score and the score.
    /// Ties go to the lowest row index.
    pub(crate) fn nearest(
        &self,
        points: &[f32],
        stride: usize,
        offset: usize,
        out_idx: &mut [u32],
        out_score: &mut [f32],
    ) {
        assert_eq!(out_idx.len(), out_score.len());
        let n = out_idx.len();
        if n == 0 {
            return;
        }
        assert!(self.rows > 0, "no rows to compare with");
        assert!(offset + self.dim <= stride || n == 1);
        assert!((n - 1) * stride + offset + self.dim <= points.len());
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            // SAFETY: `x86::nearest` only requires AVX2 and FMA, checked just above.
            unsafe { x86::nearest(self, points, stride, offset, out_idx, out_score) };
            for i in out_idx.iter_mut() {
                *i = real_row(*i, self.rows as u32);
            }
            return;
        }
        let dim = self.dim;
        let mut scores = vec![0f32; self.bias.len()];
        for i in 0..n {
            let x = &points[i * stride + offset..i * stride + offset + dim];
            scores1_portable(self, x, &mut scores);
            (out_idx[i], out_score[i]) = argmin_portable(&scores);
            out_idx[i] = real_row(out_idx[i], self.rows as u32);
        }
    }

    /// `out[i * w + r] = score of point i against row r` for the contiguous
    /// points of `points`, `w` = the padded row count (padding scores `+inf`).
    pub(crate) fn all_scores(&self, points: &[f32], out: &mut [f32]) {
        let (dim, width) = (self.dim, self.bias.len());
        assert_eq!(points.len() % dim, 0);
        assert_eq!(out.len(), points.len() / dim * width);
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            // SAFETY: `x86::all_scores` only requires AVX2 and FMA, checked just above.
            unsafe { x86::all_scores(self, points, out) };
            return;
        }
        for (x, o) in points.chunks_exact(dim).zip(out.chunks_exact_mut(width)) {
            scores1_portable(self, x, o);
        }
    }

    /// One panel's rows (at most [`LANES`]: a 4-bit sub-quantizer's 16
    /// codewords), transposed (`[dim][LANES]`), and their biases.
    fn single_panel(&self) -> Option<(&[[f32; LANES]], &[f32; LANES])> {
        if self.data.len() != self.dim * LANES || self.rows == 0 {
            return None;
        }
        let (rows, _) = self.data.as_chunks::<LANES>();
        let bias = self.bias.as_slice().try_into().ok()?;
        Some((rows, bias))
    }

    /// [`Panels::nearest`] over contiguous rows of `points`, in parallel blocks.
    pub(crate) fn nearest_par(&self, points: &[f32], out_idx: &mut [u32], out_score: &mut [f32]) {
        self.nearest_par_until(points, out_idx, out_score, &Stop::never());
    }

    /// [`Panels::nearest_par`] that skips the remaining blocks once `stop` is
    /// requested (their outputs are then left as they were).
    pub(crate) fn nearest_par_until(
        &self,
        points: &[f32],
        out_idx: &mut [u32],
        out_score: &mut [f32],
        stop: &Stop,
    ) {
        let dim = self.dim;
        let block = block_rows(self.rows, dim, BLOCK);
        par::chunks(points, block * dim)
            .zip(par::chunks_mut(out_idx, block))
            .zip(par::chunks_mut(out_score, block))
            .for_each(|((p, i), s)| {
                if !stop.requested() {
                    self.nearest(p, dim, 0, i, s)
                }
            });
    }

    /// `table[r] = ||y - row_r||²` for every row (padding included, `table.len()`
    /// must be a multiple of [`LANES`] covering all panels). Computed directly as a
    /// sum of squared differences, not through the norm expansion, so it is exact
    /// to rounding even for tiny residuals.
    pub(crate) fn squared_distances(&self, y: &[f32], table: &mut [f32]) {
        let f = |acc: f32, y: f32, r: f32| {
            let d = y - r;
            acc + d * d
        };
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            // SAFETY: `x86::row_op` only requires AVX2 and FMA, checked just above.
            unsafe { x86::row_op(self, y, table, f) };
            return;
        }
        row_op(self, y, table, f);
    }

    /// `table[r] = y·row_r` for every row (padding included).
    pub(crate) fn dots(&self, y: &[f32], table: &mut [f32]) {
        let f = |acc: f32, y: f32, r: f32| acc + y * r;
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            // SAFETY: `x86::row_op` only requires AVX2 and FMA, checked just above.
            unsafe { x86::row_op(self, y, table, f) };
            return;
        }
        row_op(self, y, table, f);
    }
}

/// For one point and panels of at most [`LANES`] rows each (4-bit
/// sub-quantizers: `panels[j]` scores `x[j * dsub..(j + 1) * dsub]`), calls
/// `put(j, row)` with the nearest row of each, ties to the lowest row. The
/// insert path: one row against up to 256 sub-quantizers, where
/// [`Panels::nearest`]'s per-call costs (a thread-local scratch buffer,
/// asserts, a general argmin) were most of the work. Returns false, having
/// called nothing, when a panel is wider or `x` is not `dsub` per panel.
pub(crate) fn nearest_per_panel(
    panels: &[Panels],
    x: &[f32],
    dsub: usize,
    put: impl FnMut(usize, u32),
) -> bool {
    if x.len() != dsub * panels.len()
        || panels
            .iter()
            .any(|p| p.dim != dsub || p.single_panel().is_none())
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: `x86::nearest_per_panel` only requires AVX2 and FMA,
        // checked just above; the shapes were checked above too.
        unsafe { x86::nearest_per_panel(panels, x, dsub, put) };
        return true;
    }
    nearest_per_panel_portable(panels, x, dsub, put);
    true
}

/// The one-panel sub-quantizers of [`nearest_per_panel`] with their part of
/// `x`: `(j, rows, biases, x_j)`.
fn single_panels<'a>(
    panels: &'a [Panels],
    x: &'a [f32],
    dsub: usize,
) -> impl Iterator<Item = (usize, &'a [[f32; LANES]], &'a [f32; LANES], &'a [f32], u32)> {
    panels
        .iter()
        .zip(x.chunks_exact(dsub))
        .enumerate()
        .filter_map(|(j, (pn, xs))| {
            pn.single_panel()
                .map(|(rows, bias)| (j, rows, bias, xs, pn.rows as u32))
        })
}

/// `idx` if it names one of the `rows` real rows, else row 0. When every real
/// row scores NaN (squared norms and dot products overflowing `f32`: vector
/// components near 1e38, which the `vector` type admits) an argmin lands on a
/// padding row (`+inf`, beyond the last real one), and that index, used as a
/// list or codeword, was out of bounds: a panic in the build's k-means and in
/// every later insert.
#[inline]
fn real_row(idx: u32, rows: u32) -> u32 {
    if idx < rows {
        idx
    } else {
        0
    }
}

/// [`nearest_per_panel`] without SIMD (shapes checked by it).
fn nearest_per_panel_portable(
    panels: &[Panels],
    x: &[f32],
    dsub: usize,
    mut put: impl FnMut(usize, u32),
) {
    for (j, rows, bias, xs, nrows) in single_panels(panels, x, dsub) {
        let mut score = *bias;
        for (row, &xv) in rows.iter().zip(xs) {
            for (s, &r) in score.iter_mut().zip(row) {
                *s -= xv * r;
            }
        }
        put(j, real_row(argmin_portable(&score).0, nrows));
    }
}

/// `table[r] = fold of f over the coordinates of (y, row_r)`, 16 rows at a time:
/// element-wise over a 16-wide array, so it vectorises (with whatever instruction
/// set the caller was compiled for, see `x86::row_op`).
#[inline(always)]
fn row_op(pn: &Panels, y: &[f32], table: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) {
    let dim = pn.dim;
    assert_eq!(y.len(), dim);
    assert_eq!(table.len(), pn.data.len() / dim);
    for (panel, out) in pn
        .data
        .chunks_exact(dim * LANES)
        .zip(table.chunks_exact_mut(LANES))
    {
        let mut acc = [0f32; LANES];
        let (rows, _) = panel.as_chunks::<LANES>();
        for (row, &yv) in rows.iter().zip(y) {
            for l in 0..LANES {
                acc[l] = f(acc[l], yv, row[l]);
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// Portable kernel: `scores[r] = bias[r] - x·row_r` for one point. Written as
/// element-wise updates of a 16-wide array, which compilers vectorise.
fn scores1_portable(pn: &Panels, x: &[f32], scores: &mut [f32]) {
    let dim = pn.dim;
    let (biases, _) = pn.bias.as_chunks::<LANES>();
    for ((panel, bias), out) in pn
        .data
        .chunks_exact(dim * LANES)
        .zip(biases)
        .zip(scores.chunks_exact_mut(LANES))
    {
        let (rows, _) = panel.as_chunks::<LANES>();
        let mut acc = [0f32; LANES];
        for (row, &xv) in rows.iter().zip(x) {
            for l in 0..LANES {
                acc[l] += xv * row[l];
            }
        }
        for l in 0..LANES {
            out[l] = bias[l] - acc[l];
        }
    }
}

/// Index and value of the smallest score, lowest index on ties (row 0 if every
/// score is NaN).
fn argmin_portable(scores: &[f32]) -> (u32, f32) {
    let (mut bi, mut bs) = (0u32, f32::INFINITY);
    let mut found = false;
    for (i, &v) in scores.iter().enumerate() {
        if v < bs || !found && v == bs {
            bi = i as u32;
            bs = v;
            found = true;
        }
    }
    (bi, bs)
}

/// AVX2+FMA kernels: a 4-point × 16-row register tile of dot products (8
/// accumulators), and a vectorised argmin.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Panels, LANES};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn load8(v: &[f32; 8]) -> __m256 {
        // SAFETY: `v` is 8 initialised, contiguous f32s, exactly what the unaligned
        // load reads.
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn store8(dst: &mut [f32; 8], v: __m256) {
        // SAFETY: `dst` is 8 contiguous f32s we hold exclusively, exactly what the
        // unaligned store writes.
        unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), v) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn halves(v: &[f32; LANES]) -> (__m256, __m256) {
        let (h, _) = v.as_chunks::<8>();
        (load8(&h[0]), load8(&h[1]))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn put(dst: &mut [f32], lo: __m256, hi: __m256) {
        let (h, _) = dst.as_chunks_mut::<8>();
        store8(&mut h[0], lo);
        store8(&mut h[1], hi);
    }

    /// [`super::row_op`] compiled for AVX2 (the compiler vectorises it 8 wide).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn row_op(
        pn: &Panels,
        y: &[f32],
        table: &mut [f32],
        f: impl Fn(f32, f32, f32) -> f32,
    ) {
        super::row_op(pn, y, table, f)
    }

    thread_local! {
        /// Scores of one point against every row (`Panels::nearest` of < 4
        /// points); as long as the widest table seen by this thread.
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// [`Panels::nearest`]: blocks of 4 points go through [`scores4`], the
    /// remainder through [`scores1`], then each point's scores through [`argmin`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn nearest(
        pn: &Panels,
        points: &[f32],
        stride: usize,
        offset: usize,
        out_idx: &mut [u32],
        out_score: &mut [f32],
    ) {
        let dim = pn.dim;
        let width = pn.bias.len();
        let n = out_idx.len();
        let point = |i: usize| &points[i * stride + offset..i * stride + offset + dim];
        if n < 4 {
            // Fewer points than a block (an insert encodes one row, against the
            // lists and then each of up to 256 sub-quantizers): the scores go to
            // this thread's scratch buffer. Allocating and freeing per call (a
            // zeroed 2 KB buffer among small ones) made glibc consolidate its
            // free lists on every insert, ~40% of a COPY into an index.
            SCRATCH.with(|b| {
                let mut b = b.borrow_mut();
                if b.len() < width {
                    b.resize(width, 0.0);
                }
                let s = &mut b[..width];
                for j in 0..n {
                    scores1(pn, point(j), s);
                    (out_idx[j], out_score[j]) = argmin(s);
                }
            });
            return;
        }
        score_points(pn, n, point, |i, s| {
            (out_idx[i], out_score[i]) = argmin(s);
        });
    }

    /// [`Panels::all_scores`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn all_scores(pn: &Panels, points: &[f32], out: &mut [f32]) {
        let (dim, width) = (pn.dim, pn.bias.len());
        let point = |i: usize| &points[i * dim..(i + 1) * dim];
        score_points(pn, points.len() / dim, point, |i, s| {
            out[i * width..(i + 1) * width].copy_from_slice(s);
        });
    }

    /// Hands `each(i, scores)` the scores of points `0..n` (`point(i)`)
    /// against every row: blocks of 4 points through [`scores4`], the rest
    /// through [`scores1`]. The one block walk of [`nearest`] and
    /// [`all_scores`].
    #[target_feature(enable = "avx2,fma")]
    fn score_points<'a>(
        pn: &Panels,
        n: usize,
        point: impl Fn(usize) -> &'a [f32],
        mut each: impl FnMut(usize, &[f32]),
    ) {
        let (dim, width) = (pn.dim, pn.bias.len());
        // The points of a block interleaved (`[dim][4]`), so the kernel reads them as
        // fixed-size arrays without bounds checks.
        let mut xt = vec![[0f32; 4]; dim];
        let mut scores = vec![0f32; 4 * width];
        let mut i = 0;
        while i + 4 <= n {
            let (p0, p1, p2, p3) = (point(i), point(i + 1), point(i + 2), point(i + 3));
            for (t, x) in xt.iter_mut().enumerate() {
                *x = [p0[t], p1[t], p2[t], p3[t]];
            }
            scores4(pn, &xt, &mut scores);
            for (k, s) in scores.chunks_exact(width).enumerate() {
                each(i + k, s);
            }
            i += 4;
        }
        let s = &mut scores[..width];
        for j in i..n {
            scores1(pn, point(j), s);
            each(j, s);
        }
    }

    /// `scores[k * width + r] = bias[r] - x_k·row_r` for the 4 points of `xt`
    /// (`xt[t][k]`), `width = pn.bias.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scores4(pn: &Panels, xt: &[[f32; 4]], scores: &mut [f32]) {
        let dim = pn.dim;
        let width = pn.bias.len();
        assert_eq!(xt.len(), dim);
        assert_eq!(scores.len(), 4 * width);
        let (biases, _) = pn.bias.as_chunks::<LANES>();
        for (p, (panel, bias)) in pn.data.chunks_exact(dim * LANES).zip(biases).enumerate() {
            let (rows, _) = panel.as_chunks::<LANES>();
            let z = _mm256_setzero_ps();
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            let (mut a4, mut a5, mut a6, mut a7) = (z, z, z, z);
            for (row, xv) in rows.iter().zip(xt) {
                let (r0, r1) = halves(row);
                let x0 = _mm256_set1_ps(xv[0]);
                let x1 = _mm256_set1_ps(xv[1]);
                let x2 = _mm256_set1_ps(xv[2]);
                let x3 = _mm256_set1_ps(xv[3]);
                a0 = _mm256_fmadd_ps(x0, r0, a0);
                a1 = _mm256_fmadd_ps(x0, r1, a1);
                a2 = _mm256_fmadd_ps(x1, r0, a2);
                a3 = _mm256_fmadd_ps(x1, r1, a3);
                a4 = _mm256_fmadd_ps(x2, r0, a4);
                a5 = _mm256_fmadd_ps(x2, r1, a5);
                a6 = _mm256_fmadd_ps(x3, r0, a6);
                a7 = _mm256_fmadd_ps(x3, r1, a7);
            }
            let (b0, b1) = halves(bias);
            let o = p * LANES;
            put(
                &mut scores[o..o + LANES],
                _mm256_sub_ps(b0, a0),
                _mm256_sub_ps(b1, a1),
            );
            let o = o + width;
            put(
                &mut scores[o..o + LANES],
                _mm256_sub_ps(b0, a2),
                _mm256_sub_ps(b1, a3),
            );
            let o = o + width;
            put(
                &mut scores[o..o + LANES],
                _mm256_sub_ps(b0, a4),
                _mm256_sub_ps(b1, a5),
            );
            let o = o + width;
            put(
                &mut scores[o..o + LANES],
                _mm256_sub_ps(b0, a6),
                _mm256_sub_ps(b1, a7),
            );
        }
    }

    /// `scores[r] = bias[r] - x·row_r` for one point. Even and odd coordinates go
    /// to separate accumulators to halve the FMA dependency chains.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scores1(pn: &Panels, x: &[f32], scores: &mut [f32]) {
        let dim = pn.dim;
        assert_eq!(x.len(), dim);
        assert_eq!(scores.len(), pn.bias.len());
        let (biases, _) = pn.bias.as_chunks::<LANES>();
        for ((panel, bias), out) in pn
            .data
            .chunks_exact(dim * LANES)
            .zip(biases)
            .zip(scores.chunks_exact_mut(LANES))
        {
            let (rows, _) = panel.as_chunks::<LANES>();
            let z = _mm256_setzero_ps();
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            let (pairs, rest) = rows.as_chunks::<2>();
            let (xpairs, xrest) = x.as_chunks::<2>();
            for (rr, xx) in pairs.iter().zip(xpairs) {
                let (r0, r1) = halves(&rr[0]);
                let (r2, r3) = halves(&rr[1]);
                let x0 = _mm256_set1_ps(xx[0]);
                let x1 = _mm256_set1_ps(xx[1]);
                a0 = _mm256_fmadd_ps(x0, r0, a0);
                a1 = _mm256_fmadd_ps(x0, r1, a1);
                a2 = _mm256_fmadd_ps(x1, r2, a2);
                a3 = _mm256_fmadd_ps(x1, r3, a3);
            }
            for (row, &xv) in rest.iter().zip(xrest) {
                let (r0, r1) = halves(row);
                let x0 = _mm256_set1_ps(xv);
                a0 = _mm256_fmadd_ps(x0, r0, a0);
                a1 = _mm256_fmadd_ps(x0, r1, a1);
            }
            let (b0, b1) = halves(bias);
            put(
                out,
                _mm256_sub_ps(b0, _mm256_add_ps(a0, a2)),
                _mm256_sub_ps(b1, _mm256_add_ps(a1, a3)),
            );
        }
    }

    /// [`super::nearest_per_panel`] (shapes checked by it): per panel two
    /// 8-wide accumulators, then the minimum and its first lane, branch-free.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn nearest_per_panel(
        panels: &[Panels],
        x: &[f32],
        dsub: usize,
        mut put: impl FnMut(usize, u32),
    ) {
        for (j, rows, bias, xs, nrows) in super::single_panels(panels, x, dsub) {
            let z = _mm256_setzero_ps();
            let (mut a0, mut a1) = (z, z);
            for (row, &xv) in rows.iter().zip(xs) {
                let (r0, r1) = halves(row);
                let xb = _mm256_set1_ps(xv);
                a0 = _mm256_fmadd_ps(xb, r0, a0);
                a1 = _mm256_fmadd_ps(xb, r1, a1);
            }
            let (b0, b1) = halves(bias);
            let (s0, s1) = (_mm256_sub_ps(b0, a0), _mm256_sub_ps(b1, a1));
            let mv = _mm256_set1_ps(hmin(_mm256_min_ps(s0, s1)));
            let lo = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(s0, mv)) as u32;
            let hi = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(s1, mv)) as u32;
            // A NaN score (never from finite rows and points) matches no lane: row 0.
            let idx = ((hi << 8) | lo).trailing_zeros() % LANES as u32;
            put(j, super::real_row(idx, nrows));
        }
    }

    /// The smallest of the 8 lanes of `m`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn hmin(m: __m256) -> f32 {
        let v = _mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let v = _mm_min_ps(v, _mm_movehl_ps(v, v));
        _mm_cvtss_f32(_mm_min_ss(v, _mm_shuffle_ps::<1>(v, v)))
    }

    /// Index and value of the smallest score (length a multiple of 8), lowest index
    /// on ties: a vector min, then the first lane equal to it.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn argmin(scores: &[f32]) -> (u32, f32) {
        let (chunks, _) = scores.as_chunks::<8>();
        let mut m = _mm256_set1_ps(f32::INFINITY);
        for c in chunks {
            m = _mm256_min_ps(load8(c), m);
        }
        let min = hmin(m);
        let mv = _mm256_set1_ps(min);
        for (i, c) in chunks.iter().enumerate() {
            let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(load8(c), mv));
            if mask != 0 {
                return ((i * 8) as u32 + mask.trailing_zeros(), min);
            }
        }
        (0, min)
    }
}

#[cfg(test)]
mod tests {
    /// The seeding as it was before its candidates shared a pass (one pass
    /// over the points per candidate): the reference the batched one must
    /// equal, pick for pick.
    fn kmeans_plus_plus_one_pass_each(
        data: &[f32],
        dim: usize,
        k: usize,
        rng: &mut StdRng,
        stop: &Stop,
    ) -> Vec<f32> {
        // Points per parallel block; a multiple of LANES, so only the last block has
        // padding and point `i` is entry `i` of the concatenated distance vectors.
        const BLK: usize = 4096;
        let n = data.len() / dim;
        let trials = 2 + (k as f64).ln().floor().max(0.0) as usize;
        // The points themselves laid out as panels: the distances of one candidate to
        // all of them are then a vectorised loop (`Panels::squared_distances`).
        let blocks: Vec<Panels> = par::chunks(data, BLK * dim)
            .map(|c| Panels::new(c, dim, Bias::Zero))
            .collect();
        let padded = blocks.iter().map(|b| b.data.len() / dim).sum::<usize>();
        // A block is 4,096 points: the longest a thread runs on after a stop
        // (the pass over all of them was 110 MB at 18,000 × 1,536).
        let distances = |c: &[f32], out: &mut [f32]| {
            par::chunks_mut(out, BLK)
                .zip(par::iter(&blocks))
                .for_each(|(o, b)| {
                    if !stop.requested() {
                        b.squared_distances(c, o)
                    }
                });
        };
        let mut centroids = Vec::with_capacity(k * dim);
        let first = rng.gen_range(0..n);
        centroids.extend_from_slice(&data[first * dim..(first + 1) * dim]);
        let mut mind = vec![0f32; padded];
        distances(&data[first * dim..(first + 1) * dim], &mut mind);
        mind[n..].fill(0.0); // padding never gets picked
        let mut cand = vec![0f32; padded];
        let mut best = vec![0f32; padded];
        let mut group_sums = vec![0f64; n.div_ceil(SUM_GROUP)];
        'picks: for _ in 1..k {
            // One pick costs `trials` passes over the points: check between
            // passes (between picks only, a cancelled build of 1,536-d rows ran
            // on for 60-210 ms, nine passes of 10-20 ms; hunt-87).
            if stop.requested() {
                break;
            }
            for (g, chunk) in group_sums.iter_mut().zip(mind[..n].chunks(SUM_GROUP)) {
                *g = sum_f64(chunk);
            }
            let total: f64 = group_sums.iter().sum();
            let mut best_pot = f64::INFINITY;
            let mut best_pick = 0;
            for t in 0..trials {
                let pick = d2_draw(&mind[..n], &group_sums, total, rng);
                distances(&data[pick * dim..(pick + 1) * dim], &mut cand);
                if stop.requested() {
                    break 'picks;
                }
                cand.iter_mut().zip(&mind).for_each(|(c, &m)| *c = c.min(m));
                let pot = sum_f64(&cand[..n]);
                if t == 0 || pot < best_pot {
                    best_pot = pot;
                    best_pick = pick;
                    std::mem::swap(&mut best, &mut cand);
                }
            }
            std::mem::swap(&mut mind, &mut best);
            centroids.extend_from_slice(&data[best_pick * dim..(best_pick + 1) * dim]);
        }
        centroids
    }

    /// Batched seeding picks what one pass per candidate picked, across
    /// dimensions (blocks of 16 to 4,096 points, a last block of any size),
    /// sizes and data with duplicates.
    #[test]
    fn seeding_in_one_pass_per_pick_picks_as_one_pass_per_candidate() {
        let mut r = StdRng::seed_from_u64(7);
        for &(n, dim, k) in &[
            (1000, 2, 10),
            (5000, 16, 40),
            (3001, 96, 25),
            (777, 384, 9),
            (300, 1536, 7),
        ] {
            let mut data: Vec<f32> = (0..n * dim).map(|_| r.gen_range(-1.0f32..1.0)).collect();
            // A block of copies of one row, where distances tie.
            for i in 1..(n / 10) {
                let (a, b) = data.split_at_mut(i * dim);
                b[..dim].copy_from_slice(&a[..dim]);
            }
            let stop = Stop::new();
            let got = kmeans_plus_plus(&data, dim, k, &mut StdRng::seed_from_u64(3), &stop);
            let want = kmeans_plus_plus_one_pass_each(
                &data,
                dim,
                k,
                &mut StdRng::seed_from_u64(3),
                &Stop::never(),
            );
            assert_eq!(got, want, "n {n} dim {dim} k {k}");
            let (done, _) = stop.progress();
            assert_eq!(done, seeding_units_per_pick(n, k) * (k as u64 - 1));
        }
    }

    /// A flat run's progress reaches its plan, and seeding is part of it.
    #[test]
    fn a_flat_run_reports_its_seeding() {
        let mut r = StdRng::seed_from_u64(9);
        let (n, dim, k) = (20_000, 8, 300);
        let data: Vec<f32> = (0..n * dim).map(|_| r.gen_range(-1.0f32..1.0)).collect();
        let params = KMeansParams {
            max_iters: 4,
            stop: Stop::new(),
            ..Default::default()
        };
        let planned = planned_work(n, k, &params);
        let sample = n.min(sample_limit(n, k, &params)) as u64;
        assert!(planned > sample * 4, "{planned}");
        params.stop.plan(planned);
        train_detailed(&data, dim, k, &params);
        assert_eq!(params.stop.progress(), (planned, planned));
    }

    use super::*;

    /// A parallel block of an assignment pass stays within BLOCK_WORK
    /// multiply-adds (the longest a thread runs on after a stop) whenever a
    /// block of four rows does, keeps 256 rows for narrow models, and never
    /// goes below four rows.
    #[test]
    fn assignment_blocks_stay_within_their_work() {
        for (k, dim) in [
            (1, 1),
            (100, 128),
            (1000, 128),
            (10_000, 128),
            (2000, 1536),
            (20_000, 16_000),
        ] {
            let rows = block_rows(k, dim, BLOCK);
            assert!((4..=BLOCK).contains(&rows), "{k} x {dim}: {rows}");
            assert!(
                rows * k * dim <= BLOCK_WORK || rows == 4,
                "{k} x {dim}: {rows}"
            );
        }
        assert_eq!(block_rows(1000, 128, BLOCK), BLOCK);
        assert!(block_rows(2000, 1536, BLOCK) < 32);
    }

    /// `all_scores` (4 points at a time with SIMD, then the rest one by one)
    /// against the portable one-point kernel, for point counts around the
    /// block of 4 and row counts around a panel.
    #[test]
    fn all_scores_match_the_portable_kernel() {
        let mut rng = StdRng::seed_from_u64(11);
        for (dim, rows, points) in [(3, 5, 1), (16, 16, 4), (33, 17, 7), (128, 40, 9)] {
            let r: Vec<f32> = (0..rows * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..points * dim)
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            for bias in [Bias::HalfSquaredNorm, Bias::Zero] {
                let pn = Panels::new(&r, dim, bias);
                let w = pn.padded_rows();
                let mut got = vec![0f32; points * w];
                pn.all_scores(&x, &mut got);
                let mut want = vec![0f32; w];
                for (p, g) in x.chunks_exact(dim).zip(got.chunks_exact(w)) {
                    scores1_portable(&pn, p, &mut want);
                    for (j, (a, b)) in g.iter().zip(&want).enumerate() {
                        let ok = if j < rows {
                            (a - b).abs() <= 1e-4 * (1.0 + b.abs())
                        } else {
                            a.is_infinite() && b.is_infinite()
                        };
                        assert!(ok, "dim {dim} row {j}: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// Fewer than 4 points against more rows than the on-stack score buffer holds
    /// (the heap path of `x86::nearest`), and against few (the stack path).
    #[test]
    fn nearest_per_panel_matches_exhaustive_search_simd_and_portable() {
        let mut rng = StdRng::seed_from_u64(31);
        for (dsub, rows, m) in [(1, 16, 8), (2, 16, 64), (3, 7, 5), (6, 16, 4), (2, 1, 3)] {
            let panels: Vec<Panels> = (0..m)
                .map(|_| {
                    let c: Vec<f32> = (0..rows * dsub).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    Panels::new(&c, dsub, Bias::HalfSquaredNorm)
                })
                .collect();
            for _ in 0..50 {
                let x: Vec<f32> = (0..m * dsub).map(|_| rng.gen_range(-1.2..1.2)).collect();
                let mut simd = vec![u32::MAX; m];
                let mut portable = vec![u32::MAX; m];
                assert!(nearest_per_panel(&panels, &x, dsub, |j, k| simd[j] = k));
                nearest_per_panel_portable(&panels, &x, dsub, |j, k| portable[j] = k);
                for (j, pn) in panels.iter().enumerate() {
                    let xs = &x[j * dsub..(j + 1) * dsub];
                    let d = |r: u32| -> f32 {
                        (0..dsub)
                            .map(|t| (xs[t] - pn.get(r as usize, t)).powi(2))
                            .sum()
                    };
                    let best = (0..rows as u32).map(d).fold(f32::INFINITY, f32::min);
                    for got in [simd[j], portable[j]] {
                        assert!((got as usize) < rows, "padding row {got} won");
                        assert!(
                            d(got) <= best + 1e-5,
                            "dsub {dsub}: row {got} at {} vs {best}",
                            d(got)
                        );
                    }
                }
            }
            // Wider panels (8-bit codebooks) and wrong shapes are refused.
            assert!(!nearest_per_panel(
                &panels,
                &vec![0.0; m * dsub + 1],
                dsub,
                |_, _| {}
            ));
        }
        let wide = Panels::new(&[0.5; 17 * 2], 2, Bias::HalfSquaredNorm);
        assert!(!nearest_per_panel(&[wide], &[0.0, 0.0], 2, |_, _| panic!(
            "called"
        )));
    }

    #[test]
    fn nearest_of_a_few_points_any_width() {
        let mut rng = StdRng::seed_from_u64(11);
        for (rows, dim) in [(1100usize, 8usize), (1024, 3), (17, 5)] {
            let c: Vec<f32> = (0..rows * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..3 * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let pn = Panels::new(&c, dim, Bias::HalfSquaredNorm);
            for n in 1..=3 {
                let (mut idx, mut sc) = (vec![0u32; n], vec![0f32; n]);
                pn.nearest(&x[..n * dim], dim, 0, &mut idx, &mut sc);
                for i in 0..n {
                    let xi = &x[i * dim..(i + 1) * dim];
                    let best = (0..rows)
                        .min_by(|&a, &b| {
                            let d = |r: usize| distance::l2_squared(xi, &c[r * dim..(r + 1) * dim]);
                            d(a).total_cmp(&d(b))
                        })
                        .unwrap();
                    let d = |r: usize| distance::l2_squared(xi, &c[r * dim..(r + 1) * dim]);
                    assert!(d(idx[i] as usize) <= d(best) + 1e-4, "rows {rows} n {n}");
                }
            }
        }
    }

    #[test]
    fn split_shares_are_proportional_and_bounded() {
        for (counts, k) in [
            (vec![10usize, 0, 5, 1, 100], 50usize),
            (vec![3, 3, 3], 9),
            (vec![3, 3, 3], 20),
            (vec![1, 1, 1, 1], 2),
            (vec![0, 0], 3),
            (vec![1000, 1, 1], 10),
        ] {
            let s = split_shares(&counts, k);
            let total: usize = counts.iter().sum();
            assert_eq!(s.iter().sum::<usize>(), k.min(total), "{counts:?} {k}");
            for (&c, &x) in counts.iter().zip(&s) {
                assert!(x <= c, "{counts:?} {k}: {s:?}");
                if c > 0 && k >= counts.iter().filter(|&&c| c > 0).count() {
                    assert!(x >= 1, "{counts:?} {k}: {s:?}");
                }
            }
        }
        // Proportional: 100 of 116 points get most of 50.
        assert!(split_shares(&[10, 0, 5, 1, 100], 50)[4] >= 40);
    }

    /// Spherical training assigns by cosine similarity and returns means: two
    /// Lloyd iterations from the same seeding equal one iteration followed by a
    /// cosine assignment to its (normalised) centroids and the means of the
    /// clusters that makes. Plain k-means (L2 to the means) differs on the same
    /// points, which have no clear clusters.
    #[test]
    fn spherical_kmeans_assigns_by_direction_and_keeps_means() {
        let (dim, k, n) = (8, 10, 2000); // n below the sample limit (256 a centroid)
        let mut r = StdRng::seed_from_u64(11);
        let mut data: Vec<f32> = (0..n * dim).map(|_| gauss(&mut r)).collect();
        data.chunks_exact_mut(dim).for_each(|x| {
            let l = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            x.iter_mut().for_each(|v| *v /= l);
        });
        let run = |iters: usize, spherical: bool| {
            let p = KMeansParams {
                max_iters: iters,
                spherical,
                ..Default::default()
            };
            train(&data, dim, k, &p)
        };
        let one = run(1, true);
        let two = run(2, true);
        let dirs = unit_rows(&one, dim);
        let labels: Vec<usize> = data
            .chunks_exact(dim)
            .map(|x| {
                let cos = |c: &[f32]| c.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
                (0..k)
                    .max_by(|&a, &b| {
                        cos(&dirs[a * dim..(a + 1) * dim])
                            .total_cmp(&cos(&dirs[b * dim..(b + 1) * dim]))
                    })
                    .unwrap()
            })
            .collect();
        let mut want = vec![0f64; k * dim];
        let mut count = vec![0usize; k];
        for (x, &l) in data.chunks_exact(dim).zip(&labels) {
            count[l] += 1;
            for (w, &v) in want[l * dim..(l + 1) * dim].iter_mut().zip(x) {
                *w += f64::from(v);
            }
        }
        assert!(count.iter().all(|&c| c > 0));
        for (i, (w, g)) in want.iter().zip(&two).enumerate() {
            let w = w / count[i / dim] as f64;
            assert!(
                (w - f64::from(*g)).abs() < 1e-4,
                "value {i}: want {w}, got {g}"
            );
        }
        // Means of spread points on a sphere are shorter than 1.
        assert!(two
            .chunks_exact(dim)
            .all(|c| c.iter().map(|v| v * v).sum::<f32>() < 0.99));
        assert_ne!(run(2, false), two);
    }

    /// Two levels give `k` distinct centroids, report the work they planned,
    /// and an inertia close to a flat run's.
    #[test]
    fn two_level_training_is_close_to_flat() {
        let dim = 4;
        let k = TWO_LEVEL_MIN + 100;
        let mut r = StdRng::seed_from_u64(3);
        // Blobs around 300 centres, so the data has structure at both levels.
        let centres: Vec<f32> = (0..300 * dim).map(|_| r.gen_range(-50.0..50.0)).collect();
        let n = k * 20;
        let data: Vec<f32> = (0..n)
            .flat_map(|i| {
                let c = (i * 7919) % 300;
                (0..dim)
                    .map(|d| centres[c * dim + d] + r.gen_range(-3.0f32..3.0))
                    .collect::<Vec<_>>()
            })
            .collect();
        let params = KMeansParams {
            max_iters: 8,
            stop: Stop::new(),
            ..Default::default()
        };
        params.stop.plan(planned_work(n, k, &params));
        let two = train_detailed(&data, dim, k, &params);
        let (done, planned) = params.stop.progress();
        assert_eq!(done, planned);
        assert_eq!(two.centroids.len(), k * dim);
        let mut distinct: Vec<Vec<u32>> = two
            .centroids
            .chunks_exact(dim)
            .map(|c| c.iter().map(|v| v.to_bits()).collect())
            .collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), k);
        let flat_params = KMeansParams {
            max_iters: 8,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(flat_params.seed);
        let sample = subsample(&data, dim, sample_limit(n, k, &flat_params), &mut rng);
        let flat = train_flat(&sample, dim, k, &flat_params, &mut rng);
        let (i2, i1) = (
            inertia(&data, dim, &two.centroids),
            inertia(&data, dim, &flat.centroids),
        );
        assert!(i2 <= 1.25 * i1, "two-level inertia {i2} against flat {i1}");
    }

    /// Deterministic Gaussian blobs: `centers` well-separated centers, `per` points
    /// each, standard deviation `sigma`.
    pub(crate) fn blobs(
        centers: usize,
        per: usize,
        dim: usize,
        sigma: f32,
        seed: u64,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let c: Vec<f32> = (0..centers * dim)
            .map(|_| rng.gen_range(-10.0f32..10.0))
            .collect();
        let mut data = Vec::with_capacity(centers * per * dim);
        for i in 0..centers * per {
            let ci = i % centers;
            for t in 0..dim {
                data.push(c[ci * dim + t] + sigma * gauss(&mut rng));
            }
        }
        (c, data)
    }

    pub(crate) fn gauss(rng: &mut StdRng) -> f32 {
        // Box-Muller.
        let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
        let u2: f32 = rng.gen();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }

    fn brute_nearest(rows: &[f32], dim: usize, x: &[f32]) -> (usize, f32) {
        let mut best = (0, f32::INFINITY);
        for (r, row) in rows.chunks_exact(dim).enumerate() {
            let d = distance::l2_squared(x, row);
            if d < best.1 {
                best = (r, d);
            }
        }
        best
    }

    #[test]
    fn panels_nearest_matches_brute_force() {
        let mut rng = StdRng::seed_from_u64(1);
        for &(rows, dim, n) in &[
            (1, 3, 5),
            (15, 8, 9),
            (16, 4, 4),
            (37, 17, 23),
            (100, 128, 7),
        ] {
            let c: Vec<f32> = (0..rows * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let pn = Panels::new(&c, dim, Bias::HalfSquaredNorm);
            let mut idx = vec![0; n];
            let mut sc = vec![0.0; n];
            pn.nearest(&x, dim, 0, &mut idx, &mut sc);
            for i in 0..n {
                let xi = &x[i * dim..(i + 1) * dim];
                let (b, d) = brute_nearest(&c, dim, xi);
                let got = distance::l2_squared(xi, &c[idx[i] as usize * dim..][..dim]);
                assert!(
                    got <= d + 1e-4,
                    "rows={rows} dim={dim}: {got} vs {d} ({} vs {b})",
                    idx[i]
                );
                let via_score = distance::dot(xi, xi) + 2.0 * sc[i];
                assert!((via_score - got).abs() < 1e-3 * (1.0 + got));
            }
        }
    }

    /// Components near 1e38 (finite, and admitted by the `vector` type) make
    /// every score NaN (`inf - inf`); the argmin kernels then picked a padding
    /// row, an index past the last real row, which the build's k-means and the
    /// insert path used as a list number (a panic). Every kernel must name a
    /// real row, SIMD and portable, for one point and for a tile of four.
    #[test]
    fn nearest_names_a_real_row_when_every_score_is_nan() {
        let dim = 8;
        let rows: Vec<f32> = (0..4 * dim)
            .map(|i| if i % 2 == 0 { 3e38 } else { -3e38 })
            .collect();
        let points: Vec<f32> = (0..5 * dim)
            .map(|i| if i % 3 == 0 { -3e38 } else { 3e38 })
            .collect();
        for bias in [Bias::HalfSquaredNorm, Bias::Zero] {
            let pn = Panels::new(&rows, dim, bias);
            for n in [1, 5] {
                let (mut idx, mut sc) = (vec![99u32; n], vec![0f32; n]);
                pn.nearest(&points[..n * dim], dim, 0, &mut idx, &mut sc);
                assert!(idx.iter().all(|&i| i < 4), "{idx:?}");
            }
            let mut scores = vec![0f32; pn.bias.len()];
            scores1_portable(&pn, &points[..dim], &mut scores);
            assert!(real_row(argmin_portable(&scores).0, 4) < 4);
        }
        // Sub-quantizers of fewer than 16 codewords (a panel with padding).
        let panels: Vec<Panels> = (0..3)
            .map(|_| Panels::new(&rows[..3 * 2], 2, Bias::HalfSquaredNorm))
            .collect();
        let x = [3e38f32, -3e38, 3e38, 3e38, -3e38, -3e38];
        let mut got = Vec::new();
        assert!(nearest_per_panel(&panels, &x, 2, |j, i| got.push((j, i))));
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|&(_, i)| i < 3), "{got:?}");
        got.clear();
        nearest_per_panel_portable(&panels, &x, 2, |j, i| got.push((j, i)));
        assert!(got.iter().all(|&(_, i)| i < 3), "{got:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// The dispatched kernel (AVX2 where available: 4-point tiles and the
        /// single-point remainder) finds a nearest row as good as brute force, and
        /// agrees with the portable kernel, for any shape, stride and offset.
        #[test]
        fn panels_nearest_any_shape(
            rows in 1usize..70,
            dim in 1usize..40,
            n in 0usize..11,
            pad in 0usize..5,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let stride = dim + pad;
            let offset = pad / 2;
            let c: Vec<f32> = (0..rows * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..n * stride).map(|_| rng.gen_range(-1.0..1.0)).collect();
            for bias in [Bias::HalfSquaredNorm, Bias::Zero] {
                let pn = Panels::new(&c, dim, bias);
                let mut idx = vec![0; n];
                let mut sc = vec![0.0; n];
                pn.nearest(&x, stride, offset, &mut idx, &mut sc);
                let mut scores = vec![0f32; pn.bias.len()];
                for i in 0..n {
                    let xi = &x[i * stride + offset..i * stride + offset + dim];
                    let score = |r: usize| {
                        let row = &c[r * dim..(r + 1) * dim];
                        let b = if bias == Bias::Zero { 0.0 } else { 0.5 * distance::dot(row, row) };
                        b - distance::dot(xi, row)
                    };
                    let best = (0..rows).map(score).fold(f32::INFINITY, f32::min);
                    proptest::prop_assert!((idx[i] as usize) < rows);
                    proptest::prop_assert!(score(idx[i] as usize) <= best + 1e-4);
                    proptest::prop_assert!((sc[i] - best).abs() <= 1e-4);
                    scores1_portable(&pn, xi, &mut scores);
                    let (pi, ps) = argmin_portable(&scores);
                    proptest::prop_assert!((ps - sc[i]).abs() <= 1e-4);
                    proptest::prop_assert!(score(pi as usize) <= best + 1e-4);
                }
            }
        }
    }

    #[test]
    fn sum_f64_matches_naive() {
        let v: Vec<f32> = (0..1003).map(|i| (i as f32).sin()).collect();
        let naive: f64 = v.iter().map(|&x| f64::from(x)).sum();
        assert!((sum_f64(&v) - naive).abs() < 1e-9);
        assert_eq!(sum_f64(&[]), 0.0);
    }

    #[test]
    fn panels_strided_and_dot() {
        let mut rng = StdRng::seed_from_u64(2);
        let dim = 4;
        let c: Vec<f32> = (0..20 * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // points of dimension 12; the sub-vector at offset 4 is compared.
        let x: Vec<f32> = (0..6 * 12).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let pn = Panels::new(&c, dim, Bias::Zero);
        let mut idx = vec![0; 6];
        let mut sc = vec![0.0; 6];
        pn.nearest(&x, 12, 4, &mut idx, &mut sc);
        for i in 0..6 {
            let xi = &x[i * 12 + 4..i * 12 + 8];
            let best = (0..20)
                .max_by(|&a, &b| {
                    let da = distance::dot(xi, &c[a * dim..(a + 1) * dim]);
                    let db = distance::dot(xi, &c[b * dim..(b + 1) * dim]);
                    da.partial_cmp(&db).unwrap().then(b.cmp(&a))
                })
                .unwrap();
            assert_eq!(idx[i] as usize, best);
        }
        let mut t = vec![0.0; 32];
        pn.dots(&x[4..8], &mut t);
        for r in 0..20 {
            let e = distance::dot(&x[4..8], &c[r * dim..(r + 1) * dim]);
            assert!((t[r] - e).abs() < 1e-5);
            assert_eq!(pn.get(r, 1), c[r * dim + 1]);
        }
    }

    #[test]
    fn finds_planted_clusters_and_reduces_inertia() {
        let (centers, data) = blobs(10, 200, 16, 0.5, 7);
        let params = KMeansParams::default();
        let r = train_detailed(&data, 16, 10, &params);
        assert_eq!(r.centroids.len(), 10 * 16);
        // Every planted center has a trained centroid close to it.
        for c in centers.chunks_exact(16) {
            let (_, d) = brute_nearest(&r.centroids, 16, c);
            assert!(d < 1.0, "planted center missed: {d}");
        }
        // Inertia is about n * dim * sigma² and far below that of a single centroid.
        let one = train(&data, 16, 1, &params);
        let i1 = inertia(&data, 16, &one);
        let i10 = inertia(&data, 16, &r.centroids);
        assert!(i10 < i1 / 20.0, "{i10} vs {i1}");
        assert!(i10 < 2000.0 * 16.0 * 0.25 * 1.2);
    }

    #[test]
    fn lloyd_never_increases_inertia_over_seeding() {
        let (_, data) = blobs(20, 50, 8, 3.0, 11);
        let seed_only = KMeansParams {
            max_iters: 1,
            ..Default::default()
        };
        let full = KMeansParams {
            max_iters: 30,
            tolerance: 0.0,
            ..Default::default()
        };
        let a = inertia(&data, 8, &train(&data, 8, 20, &seed_only));
        let b = inertia(&data, 8, &train(&data, 8, 20, &full));
        assert!(b <= a * 1.0001, "{b} > {a}");
    }

    #[test]
    fn a_requested_stop_returns_at_once() {
        let (_, data) = blobs(50, 200, 32, 1.0, 5);
        let stop = Stop::new();
        stop.request();
        let p = KMeansParams {
            stop: stop.clone(),
            ..Default::default()
        };
        let r = train_detailed(&data, 32, 50, &p);
        assert_eq!(r.iterations, 0);
        assert!(r.centroids.is_empty());
        // Seeding checks between picks: a raised stop leaves it after the first.
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(kmeans_plus_plus(&data, 32, 50, &mut rng, &stop).len(), 32);
    }

    #[test]
    fn edge_cases() {
        let p = KMeansParams::default();
        assert!(train(&[], 4, 3, &p).is_empty());
        let one = [1.0, 2.0, 3.0];
        assert_eq!(train(&one, 3, 5, &p), one.to_vec());
        let few = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        assert_eq!(train(&few, 2, 3, &p), few.to_vec());
        assert_eq!(train(&few, 2, 10, &p), few.to_vec());
        assert!(train(&few, 2, 0, &p).is_empty());
        // All points identical: still k centroids, all equal to the point.
        let same = vec![3.0f32; 2 * 50];
        let c = train(&same, 2, 4, &p);
        assert_eq!(c.len(), 8);
        for v in c {
            assert!((v - 3.0).abs() < 0.1);
        }
    }

    #[test]
    fn deterministic_for_a_seed_and_repairs_empty_clusters() {
        let (_, data) = blobs(5, 100, 6, 1.0, 3);
        for init in [Init::KMeansPlusPlus, Init::Random] {
            let p = KMeansParams {
                init,
                max_points_per_centroid: 30,
                ..Default::default()
            };
            let a = train(&data, 6, 12, &p);
            let b = train(&data, 6, 12, &p);
            assert_eq!(a, b);
            // 12 clusters on 5 blobs: all must end up used.
            let labels = assign(&data, 6, &a);
            let mut used = [false; 12];
            for l in labels {
                used[l as usize] = true;
            }
            assert!(used.iter().all(|&u| u), "{init:?}: empty cluster left");
        }
        // Thread count does not matter.
        let p = KMeansParams::default();
        let a = train(&data, 6, 12, &p);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| train(&data, 6, 12, &p));
        assert_eq!(a, b);
    }
}
