//! k-means clustering, used for the coarse (inverted-list) quantizer and for the
//! product quantizer's sub-codebooks.
//!
//! The algorithm is plain Lloyd iteration with k-means++ seeding, tuned for index
//! builds where wall-clock time matters more than the last fraction of a percent of
//! inertia:
//!
//! - **Subsampling.** At most `k * max_points_per_centroid` points take part in
//!   training (FAISS does the same). More points barely move the centroids of a
//!   quantizer that is only used to route vectors to lists.
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
//!   The only randomness is a [`StdRng`] seeded from [`KMeansParams::seed`].
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
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Width of a centroid panel: 16 `f32` = two AVX2 registers (or one AVX-512 one).
pub const LANES: usize = 16;

/// Points per parallel work item in assignment loops.
const BLOCK: usize = 256;

/// How initial centroids are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// k-means++ (D² sampling): well spread centroids, fewer Lloyd iterations needed.
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
    /// Seed of every random choice; the same seed and input give the same centroids.
    pub seed: u64,
    /// Seeding method.
    pub init: Init,
    /// Stop when an iteration lowers the inertia by less than this fraction.
    pub tolerance: f64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        KMeansParams {
            max_iters: 10,
            max_points_per_centroid: 64,
            seed: 0x6172_7277,
            init: Init::KMeansPlusPlus,
            tolerance: 1e-3,
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

    // Subsample (sorted indices keep the gather sequential in memory).
    let limit = if params.max_points_per_centroid == 0 {
        n
    } else {
        k.saturating_mul(params.max_points_per_centroid).max(k + 1)
    };
    let sample: std::borrow::Cow<[f32]> = if n > limit {
        let mut idx = rand::seq::index::sample(&mut rng, n, limit).into_vec();
        idx.sort_unstable();
        let mut s = Vec::with_capacity(limit * dim);
        for &i in &idx {
            s.extend_from_slice(&data[i * dim..(i + 1) * dim]);
        }
        std::borrow::Cow::Owned(s)
    } else {
        std::borrow::Cow::Borrowed(data)
    };
    let data = &sample[..];
    let n = data.len() / dim;

    let mut centroids = match params.init {
        Init::KMeansPlusPlus => kmeans_plus_plus(data, dim, k, &mut rng),
        Init::Random => {
            let idx = rand::seq::index::sample(&mut rng, n, k);
            let mut c = Vec::with_capacity(k * dim);
            for i in idx.iter() {
                c.extend_from_slice(&data[i * dim..(i + 1) * dim]);
            }
            c
        }
    };

    let norms: Vec<f32> = data.par_chunks(dim).map(|x| distance::dot(x, x)).collect();
    let mut labels = vec![0u32; n];
    let mut scores = vec![0f32; n];
    let mut prev = f64::INFINITY;
    let mut inertia = f64::INFINITY;
    let mut iterations = 0;
    for _ in 0..params.max_iters.max(1) {
        iterations += 1;
        let panels = Panels::new(&centroids, dim, Bias::HalfSquaredNorm);
        panels.nearest_par(data, &mut labels, &mut scores);
        inertia = scores
            .iter()
            .zip(&norms)
            .map(|(&s, &nx)| f64::from((nx + 2.0 * s).max(0.0)))
            .sum();
        update_centroids(data, dim, &labels, &mut centroids, &mut rng);
        if inertia == 0.0 || prev - inertia <= params.tolerance * prev {
            break;
        }
        prev = inertia;
    }
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
    data.par_chunks(dim)
        .zip(labels.par_iter())
        .map(|(x, &l)| {
            let c = &centroids[l as usize * dim..(l as usize + 1) * dim];
            f64::from(distance::l2_squared(x, c))
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// k-means++ seeding: each next centroid is a point drawn with probability
/// proportional to its squared distance to the nearest centroid chosen so far.
fn kmeans_plus_plus(data: &[f32], dim: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = data.len() / dim;
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.gen_range(0..n);
    centroids.extend_from_slice(&data[first * dim..(first + 1) * dim]);
    let mut mind: Vec<f32> = {
        let c = &data[first * dim..(first + 1) * dim];
        data.par_chunks(dim)
            .map(|x| distance::l2_squared(x, c))
            .collect()
    };
    for _ in 1..k {
        let total: f64 = mind.iter().map(|&d| f64::from(d)).sum();
        let pick = if total > 0.0 && total.is_finite() {
            let mut r = rng.gen::<f64>() * total;
            let mut pick = n - 1;
            for (i, &d) in mind.iter().enumerate() {
                r -= f64::from(d);
                if r < 0.0 {
                    pick = i;
                    break;
                }
            }
            // Rounding may leave `pick` on a point with zero weight (an existing
            // centroid); step back to the last point with positive weight.
            while mind[pick] <= 0.0 && pick > 0 {
                pick -= 1;
            }
            pick
        } else {
            // Every point coincides with a centroid: any choice is a duplicate.
            rng.gen_range(0..n)
        };
        let c = data[pick * dim..(pick + 1) * dim].to_vec();
        mind.par_iter_mut()
            .zip(data.par_chunks(dim))
            .for_each(|(m, x)| {
                let d = distance::l2_squared(x, &c);
                if d < *m {
                    *m = d;
                }
            });
        centroids.extend_from_slice(&c);
    }
    centroids
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
    centroids.par_chunks_mut(dim).enumerate().for_each_init(
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

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
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
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: `nearest_avx2` only requires the CPU to support AVX2 and
                // FMA, which was checked just above.
                unsafe { nearest_avx2(self, points, stride, offset, out_idx, out_score) };
                return;
            }
        }
        nearest_impl::<Unfused>(self, points, stride, offset, out_idx, out_score);
    }

    /// [`Panels::nearest`] over contiguous rows of `points`, in parallel blocks.
    pub(crate) fn nearest_par(&self, points: &[f32], out_idx: &mut [u32], out_score: &mut [f32]) {
        let dim = self.dim;
        points
            .par_chunks(BLOCK * dim)
            .zip(out_idx.par_chunks_mut(BLOCK))
            .zip(out_score.par_chunks_mut(BLOCK))
            .for_each(|((p, i), s)| self.nearest(p, dim, 0, i, s));
    }

    /// `table[r] = ||y - row_r||²` for every row (padding included, `table.len()`
    /// must be a multiple of [`LANES`] covering all panels).
    pub(crate) fn squared_distances(&self, y: &[f32], table: &mut [f32]) {
        self.row_op(y, table, |acc, y, r| {
            let d = y - r;
            acc + d * d
        });
    }

    /// `table[r] = y·row_r` for every row (padding included).
    pub(crate) fn dots(&self, y: &[f32], table: &mut [f32]) {
        self.row_op(y, table, |acc, y, r| acc + y * r);
    }

    #[inline(always)]
    fn row_op(&self, y: &[f32], table: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) {
        let dim = self.dim;
        assert_eq!(y.len(), dim);
        assert_eq!(table.len(), self.data.len() / dim);
        for (panel, out) in self
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
}

/// Multiply-add flavour of the kernel: fused only where the CPU has FMA (elsewhere
/// `f32::mul_add` is a slow libm call).
trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

struct Fused;
struct Unfused;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c // DIAG
    }
}

impl MulAdd for Unfused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn nearest_avx2(
    pn: &Panels,
    points: &[f32],
    stride: usize,
    offset: usize,
    out_idx: &mut [u32],
    out_score: &mut [f32],
) {
    nearest_impl::<Fused>(pn, points, stride, offset, out_idx, out_score);
}

#[inline(always)]
fn nearest_impl<F: MulAdd>(
    pn: &Panels,
    points: &[f32],
    stride: usize,
    offset: usize,
    out_idx: &mut [u32],
    out_score: &mut [f32],
) {
    let dim = pn.dim;
    let n = out_idx.len();
    let point = |i: usize| &points[i * stride + offset..i * stride + offset + dim];
    // Points of a block interleaved (`[dim][P]`), so the kernel reads them without
    // bounds checks and the compiler sees fixed-size arrays only.
    let mut xt = vec![0f32; 4 * dim];
    let mut i = 0;
    while i + 4 <= n {
        for k in 0..4 {
            for (t, &v) in point(i + k).iter().enumerate() {
                xt[t * 4 + k] = v;
            }
        }
        let r = block::<4, F>(pn, xt.as_chunks::<4>().0);
        for (k, (idx, s)) in r.into_iter().enumerate() {
            out_idx[i + k] = idx;
            out_score[i + k] = s;
        }
        i += 4;
    }
    while i < n {
        let [(idx, s)] = block::<1, F>(pn, point(i).as_chunks::<1>().0);
        out_idx[i] = idx;
        out_score[i] = s;
        i += 1;
    }
}

/// Best row for each of `P` points (`xt[t][k]` = coordinate `t` of point `k`): a
/// `P × LANES` register tile of dot products per panel, and a lane-wise running
/// minimum reduced across lanes at the end.
#[inline(always)]
fn block<const P: usize, F: MulAdd>(pn: &Panels, xt: &[[f32; P]]) -> [(u32, f32); P] {
    let dim = pn.dim;
    let mut best_s = [[f32::INFINITY; LANES]; P];
    let mut best_p = [[0u32; LANES]; P];
    let (biases, _) = pn.bias.as_chunks::<LANES>();
    for (p, (panel, bias)) in pn.data.chunks_exact(dim * LANES).zip(biases).enumerate() {
        let (rows, _) = panel.as_chunks::<LANES>();
        let mut acc = [[0f32; LANES]; P];
        for (row, xv) in rows.iter().zip(xt) {
            for k in 0..P {
                for l in 0..LANES {
                    acc[k][l] = F::mul_add(xv[k], row[l], acc[k][l]);
                }
            }
        }
        let pi = p as u32;
        for k in 0..P {
            for l in 0..LANES {
                let s = bias[l] - acc[k][l];
                if s < best_s[k][l] {
                    best_s[k][l] = s;
                    best_p[k][l] = pi;
                }
            }
        }
    }
    let mut out = [(0u32, f32::INFINITY); P];
    for k in 0..P {
        let (mut bi, mut bs) = (u32::MAX, f32::INFINITY);
        for l in 0..LANES {
            let idx = best_p[k][l] * LANES as u32 + l as u32;
            let s = best_s[k][l];
            if s < bs || (s == bs && idx < bi) {
                bs = s;
                bi = idx;
            }
        }
        // Only non-finite inputs leave nothing below +inf; fall back to row 0.
        out[k] = if bi == u32::MAX { (0, bs) } else { (bi, bs) };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
