//! The index's own default `probes`, measured at build time.
//!
//! How many lists a query must probe for a given recall depends on the data, not
//! only on the number of lists: at 100 lists, 20 probes gave recall@10 0.97 on
//! 384-d MiniLM sentence embeddings, 0.994 on 39 lists of 768-d mpnet ones
//! (where 8 gave 0.96 at 1.2× the speed), and 0.87 on 75 lists of concatenated
//! 768-d pairs. A fixed default overshoots on some sets and falls short on others.
//!
//! [`ProbeCalibration`] measures it instead. The build keeps a few rows of its
//! sample as stand-in queries; while it encodes every row of the table it also
//! keeps each stand-in's exact nearest rows with the list each row went to, and
//! counts the first [`CALIBRATION_DEEP_K`] of them that are not copies of the
//! stand-in: a query is rarely a row of the table, and a stand-in's copies
//! (the row it was taken from, exact duplicates and duplicates up to rounding:
//! [`COPY_SHARE`]) sit in its own list, where a
//! query finds none. Counted, they made one probe look enough: a table of
//! 1,000 real rows stored 30 times each got `probes` 1 of 30 lists and recall@10
//! 0.52 for held-out queries (0.99 at 10 probes). Once every row is encoded, [`ProbeCalibration::probes_for`]
//! ranks each stand-in's lists as a scan would ([`IvfPqModel::list_distances`])
//! and returns the fewest lists whose first `probes` hold a `target` share of
//! its first `k` neighbours on average: the fraction of the true top `k` a scan
//! of that many lists can find (its re-rank is exact). The index stores it for
//! `k` = 10 (for [`TARGET_COVERAGE`]) and 100 (for [`DEEP_TARGET_COVERAGE`]);
//! a query without `ivfpq.probes` or a `probes` option starts from the first
//! and, past its first 10 rows, goes on to the second.
//!
//! The cost is one exact distance per row and stand-in query (for 100 stand-ins
//! about the cost of assigning a row to its nearest of 100 lists), in the
//! build's threads.

use crate::distance;
use crate::ivf::{IvfPqModel, Metric};
use crate::kmeans::{Bias, Panels, LANES};
use crate::par;
use crate::stop::{Stop, Stopped};

/// Stand-in queries a build keeps (fewer when it samples fewer rows).
pub const CALIBRATION_QUERIES: usize = 100;

/// Nearest rows a query's default `probes` is measured for: recall@10.
pub const CALIBRATION_K: usize = 10;

/// Nearest rows the deep default is measured for (see the module docs): a
/// scan that has gone past its first [`CALIBRATION_K`] rows (a `LIMIT 100`,
/// or a filter that rejects most rows) probes as many lists as hold the
/// target share of the stand-ins' 100 nearest.
pub const CALIBRATION_DEEP_K: usize = 100;

/// Share of the stand-ins' nearest rows the default `probes` must reach.
///
/// Held-out queries' recall@10 at the probes so chosen (with
/// `ivfpq.iterative_scan` on, which adds lists that could hold closer rows)
/// came out within 0.01 of the target on 384-d MiniLM, 768-d mpnet and 128-d
/// SIFT rows (ARCHITECTURE.md, "Where a query's time goes"); the target sits
/// that much above the recall 0.95 applications usually ask for. 100
/// stand-ins with 10 rows each measure it to about ±0.01.
pub const TARGET_COVERAGE: f64 = 0.96;

/// Share of the stand-ins' [`CALIBRATION_DEEP_K`] nearest rows the deep
/// default must reach: higher than [`TARGET_COVERAGE`], because a deep scan's
/// cost is mostly re-ranking, which more lists hardly change, and because a
/// deep scan's rows come out in order only if the lists it never probes hold
/// none closer.
///
/// `LIMIT 100` with iterative scan, 300 queries, one client (2026-12-05,
/// ARCHITECTURE.md "The build"): dev-sift (100 lists) 0.96 → 12 lists,
/// recall@100 0.969 at ~920 q/s, 0.98 → 17 lists, 0.983 at ~900, 0.99 → 21,
/// 0.989 at ~965 (~1,000 rows re-ranked at each); 102k MiniLM (102 lists):
/// 29 lists 0.974 at ~490 q/s, 40 0.985 at ~420–450, 54 0.993 at ~400 (~2,150
/// rows refined, ~177 re-ranked at each).
pub const DEEP_TARGET_COVERAGE: f64 = 0.98;

/// Fewest stand-ins with a full set of neighbours for a measurement to count:
/// below that the build keeps the fixed default.
pub const MIN_QUERIES: usize = 20;

/// A kept neighbour at most this share of the distance of the farthest one
/// kept is a copy of the stand-in (the distances of L2 and cosine are squared
/// lengths: a share of 1e-5 is ~0.3% of the length): exact duplicates, and
/// duplicates that differ by rounding (an embedding stored once in `float4`
/// and once from `halfvec`). Ordinary neighbours lie far beyond it: the
/// nearest of a stand-in's 4 × 100 kept rows is ~0.4 of the farthest's
/// squared distance on SIFT and MiniLM rows. Copies with noise of their own
/// are not caught (SIFT rows repeated with noise of sd 0.3, a share of ~1.5e-4:
/// 1 probe of 30 lists, recall 0.375 for held-out queries), nor should be:
/// at 1e-3 a tight cluster's rows (4 blobs 100 apart, rows 1 apart) and rows
/// along a curve (8-d rows of `sin(i j)`: nearest rows at 0.002 of the
/// farthest kept) were taken for copies of each other, and probes rose for
/// rows whose nearest neighbours really are that near. Under inner product
/// distances have no zero, and only rows equal to the stand-in are copies.
pub const COPY_SHARE: f32 = 1e-5;

/// Neighbours kept per stand-in, as a multiple of the `k` it is measured for:
/// room for copies before the neighbours that count.
const KEPT_PER_K: usize = 4;

/// Rows per parallel task of [`ProbeCalibration::offer_until`].
const CHUNK: usize = 256;

/// See the module docs.
#[derive(Clone, Debug)]
pub struct ProbeCalibration {
    metric: Metric,
    dim: usize,
    k: usize,
    /// The stand-ins as given (`dim` floats each), to rank their lists and
    /// recognise the rows they were taken from.
    raw: Vec<f32>,
    /// The stand-ins re-laid for the panel kernel (normalised for cosine), one
    /// panel of [`LANES`] per group: a group's panel stays in the L1 cache
    /// while a chunk of rows is scored against it (scoring each row against
    /// all panels in turn read them all from L2 for every row: 0.3 s of a
    /// 1.2 s build at 102k × 384), four rows at a time by the k-means kernel
    /// (`Panels::all_scores`: 100 stand-ins against 75k × 384 rows took 115 ms
    /// on two threads one row at a time, 72 ms so, near the kernel's rate).
    panels: Vec<Panels>,
    /// Per stand-in, `(distance, list, equal)` of its nearest rows so far,
    /// nearest first (rows equal to the stand-in first among equal
    /// distances), at most [`ProbeCalibration::kept`]: the row it was taken
    /// from and its copies are dropped when they are counted
    /// ([`ProbeCalibration::neighbours`]).
    best: Vec<Vec<(f32, u32, bool)>>,
}

impl ProbeCalibration {
    /// `queries`: rows of the table (`dim` floats each) standing in for
    /// queries; rows that are zero or not finite are left out (a cosine
    /// distance to them is undefined). The rows are kept as given (no copy is
    /// made of them) beside their panels, so the calibration holds them twice:
    /// [`ProbeCalibration::held_bytes`], which the build counts against
    /// `maintenance_work_mem`. At 16,000 dimensions a full copy of the rows for
    /// the panels, beside the caller's and the kept one, put the build 8 MB
    /// over a 48 MB budget.
    pub fn new(metric: Metric, dim: usize, mut queries: Vec<f32>, k: usize) -> Self {
        assert!(dim > 0 && queries.len().is_multiple_of(dim));
        let n_in = queries.len() / dim;
        let mut kept = 0;
        for r in 0..n_in {
            let q = &queries[r * dim..(r + 1) * dim];
            if q.iter().all(|v| v.is_finite()) && q.iter().any(|&v| v != 0.0) {
                queries.copy_within(r * dim..(r + 1) * dim, kept * dim);
                kept += 1;
            }
        }
        queries.truncate(kept * dim);
        queries.shrink_to_fit();
        let raw = queries;
        let bias = match metric {
            Metric::L2 => Bias::HalfSquaredNorm,
            _ => Bias::Zero,
        };
        // One group of LANES rows at a time: under cosine the normalized copy
        // is of that group only.
        let mut group = Vec::new();
        let panels = raw
            .chunks(LANES * dim)
            .map(|g| {
                if metric == Metric::Cosine {
                    group.clear();
                    group.extend_from_slice(g);
                    group.chunks_exact_mut(dim).for_each(crate::ivf::normalize);
                    Panels::new(&group, dim, bias)
                } else {
                    Panels::new(g, dim, bias)
                }
            })
            .collect();
        ProbeCalibration {
            metric,
            dim,
            k: k.max(1),
            panels,
            raw,
            best: vec![Vec::new(); kept],
        }
    }

    /// Bytes a calibration of `queries` stand-ins of `dim` dimensions holds
    /// (the rows and their panels, the last panel padded to [`LANES`] rows),
    /// besides the neighbours it keeps.
    pub fn held_bytes(queries: usize, dim: usize) -> usize {
        (queries + queries.div_ceil(LANES) * LANES) * dim * 4
    }

    /// Nearest rows kept per stand-in.
    fn kept(&self) -> usize {
        KEPT_PER_K * self.k + 1
    }

    /// Stand-in queries kept.
    pub fn queries(&self) -> usize {
        self.best.len()
    }

    /// Offers a batch of encoded rows (`rows`: `dim` floats each, `lists`: the
    /// list each went to), in parallel chunks of rows; returns early with
    /// `Err(Stopped)` when `stop` is requested (checked per chunk).
    pub fn offer_until(&mut self, rows: &[f32], lists: &[u32], stop: &Stop) -> Result<(), Stopped> {
        let dim = self.dim;
        assert_eq!(rows.len(), lists.len() * dim);
        let n = self.best.len();
        if n == 0 {
            return Ok(());
        }
        let (metric, panels, raw) = (self.metric, &self.panels, &self.raw);
        let k = self.kept();
        // What a row must beat to matter: each stand-in's k-th nearest so far.
        let bar: Vec<f32> = self
            .best
            .iter()
            .map(|b| {
                if b.len() == k {
                    b[k - 1].0
                } else {
                    f32::INFINITY
                }
            })
            .collect();
        let found: Vec<Vec<Vec<(f32, u32, bool)>>> = par::chunks(rows, CHUNK * dim)
            .zip(par::chunks(lists, CHUNK))
            .map(|(xs, ls)| {
                stop.check()?;
                // Candidates per stand-in, unordered: cut back to the best k
                // (raising that stand-in's bar) whenever 2k have gathered.
                let mut best: Vec<Vec<(f32, u32, bool)>> = vec![Vec::new(); n];
                let mut bar = bar.clone();
                // ||x||² (L2) or 1 / ||x|| (cosine) of each row.
                let norm: Vec<f32> = xs
                    .chunks_exact(dim)
                    .map(|x| match metric {
                        Metric::L2 => distance::dot(x, x),
                        _ => 1.0 / distance::dot(x, x).sqrt(),
                    })
                    .collect();
                let rows = ls.len();
                let mut table = vec![0f32; rows * LANES];
                for (g, p) in panels.iter().enumerate() {
                    // The kernel's scores of every row of the chunk against
                    // this group's stand-ins: `||q||²/2 - x·q` for L2,
                    // `-x·q` otherwise.
                    p.all_scores(xs, &mut table);
                    let group = best.iter_mut().zip(bar.iter_mut()).skip(g * LANES);
                    for (l, (b, bar)) in group.take(LANES).enumerate() {
                        let j = g * LANES + l;
                        let q = &raw[j * dim..(j + 1) * dim];
                        for (i, &list) in ls.iter().enumerate() {
                            let t = table[i * LANES + l];
                            let d = match metric {
                                Metric::L2 => (norm[i] + 2.0 * t).max(0.0),
                                Metric::InnerProduct => t,
                                Metric::Cosine => 1.0 + t * norm[i],
                            };
                            if d.is_nan() || d >= *bar {
                                continue;
                            }
                            // A row equal to the stand-in is at distance 0
                            // exactly for L2 (the sum above rounds).
                            let equal = &xs[i * dim..(i + 1) * dim] == q;
                            let d = if equal && metric == Metric::L2 {
                                0.0
                            } else {
                                d
                            };
                            b.push((d, list, equal));
                            if b.len() >= 2 * k {
                                b.select_nth_unstable_by(k - 1, |p, q| p.0.total_cmp(&q.0));
                                b.truncate(k);
                                *bar = b[k - 1].0;
                            }
                        }
                    }
                }
                Ok(best)
            })
            .collect::<Result<_, Stopped>>()?;
        // Each stand-in's k nearest of what it had and what every chunk found.
        let mut merged: Vec<Vec<(f32, u32, bool)>> = std::mem::take(&mut self.best);
        for chunk in found {
            for (b, got) in merged.iter_mut().zip(chunk) {
                b.extend(got);
            }
        }
        for b in &mut merged {
            b.sort_by(|x, y| x.0.total_cmp(&y.0).then(y.2.cmp(&x.2)));
            b.truncate(k);
        }
        self.best = merged;
        Ok(())
    }

    /// Stand-in `j`'s nearest rows but itself and its copies (see
    /// [`COPY_SHARE`]), nearest first: up to `k`. Fewer when the copies fill
    /// what was kept: such a stand-in is not counted.
    fn neighbours(&self, j: usize) -> Vec<(f32, u32)> {
        let b = &self.best[j];
        let far = b.last().map_or(0.0, |e| e.0);
        let copy = |e: &(f32, u32, bool)| match self.metric {
            Metric::InnerProduct => e.2,
            _ => e.2 || e.0 <= COPY_SHARE * far,
        };
        b.iter()
            .filter(|e| !copy(e))
            .map(|e| (e.0, e.1))
            .take(self.k)
            .collect()
    }

    /// The index's two defaults: the fewest lists holding [`TARGET_COVERAGE`]
    /// of the stand-ins' [`CALIBRATION_K`] nearest rows, and the fewest
    /// holding [`DEEP_TARGET_COVERAGE`] of their [`CALIBRATION_DEEP_K`]
    /// nearest (0 when no stand-in had that many; a scan never takes it
    /// below the first: `crate::ivf::index_probes`). None when nothing was
    /// measured.
    pub fn defaults(&self, model: &IvfPqModel) -> Option<(usize, usize)> {
        let first = self.probes_for(model, TARGET_COVERAGE, CALIBRATION_K)?;
        let deep = self
            .probes_for(model, DEEP_TARGET_COVERAGE, CALIBRATION_DEEP_K)
            .unwrap_or(0);
        Some((first, deep))
    }

    /// The fewest probes whose first lists (ranked by `model` for each
    /// stand-in, as a scan ranks them) hold at least `target` of the
    /// stand-ins' `k` nearest rows (at most the `k` given to
    /// [`ProbeCalibration::new`]) on average, or None with fewer than
    /// [`MIN_QUERIES`] stand-ins that found that many rows.
    pub fn probes_for(&self, model: &IvfPqModel, target: f64, k: usize) -> Option<usize> {
        let k = k.clamp(1, self.k);
        let lists = model.lists;
        // hits[p]: neighbours whose list ranks p-th (0-based) for their stand-in.
        let mut hits = vec![0u64; lists + 1];
        let mut total = 0u64;
        let mut counted = 0usize;
        let mut rank = vec![0u32; lists];
        let dim = self.dim;
        for j in 0..self.best.len() {
            let best = self.neighbours(j);
            if best.len() < k {
                continue;
            }
            let mut ranked = model.list_distances(&self.raw[j * dim..(j + 1) * dim]);
            ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            for (r, &(l, _)) in ranked.iter().enumerate() {
                rank[l as usize] = r as u32;
            }
            for &(_, l) in &best[..k] {
                let r = rank.get(l as usize).map_or(lists, |&r| r as usize);
                hits[r.min(lists)] += 1;
                total += 1;
            }
            counted += 1;
        }
        if counted < MIN_QUERIES || total == 0 {
            return None;
        }
        let need = (target.clamp(0.0, 1.0) * total as f64).ceil() as u64;
        let mut covered = 0u64;
        for (p, &h) in hits.iter().enumerate().take(lists) {
            covered += h;
            if covered >= need {
                return Some(p + 1);
            }
        }
        Some(lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivf::IvfPqParams;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `clusters` tight blobs of `per` rows around random centres.
    fn blobs(dim: usize, clusters: usize, per: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut v = Vec::with_capacity(dim * clusters * per);
        for _ in 0..clusters {
            let c: Vec<f32> = (0..dim).map(|_| rng.gen_range(-10.0..10.0)).collect();
            for _ in 0..per {
                v.extend(c.iter().map(|&x| x + rng.gen_range(-spread..spread)));
            }
        }
        v
    }

    /// `n` rows of `dim` values uniform in [-1, 1).
    fn uniform(dim: usize, n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..dim * n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    fn model(data: &[f32], dim: usize, lists: usize, metric: Metric) -> IvfPqModel {
        IvfPqModel::train(data, dim, metric, &IvfPqParams::new(lists, 4, 8))
    }

    fn calibrate(data: &[f32], dim: usize, m: &IvfPqModel, queries: usize) -> ProbeCalibration {
        let mut c = ProbeCalibration::new(
            m.metric,
            dim,
            data[..queries * dim].to_vec(),
            CALIBRATION_DEEP_K,
        );
        let lists: Vec<u32> = data.chunks(dim).map(|x| m.assign(x)).collect();
        // Offered in two batches, as a build offers its encode batches.
        let half = (data.len() / dim / 2) * dim;
        c.offer_until(&data[..half], &lists[..half / dim], &Stop::never())
            .unwrap();
        c.offer_until(&data[half..], &lists[half / dim..], &Stop::never())
            .unwrap();
        c
    }

    #[test]
    fn well_separated_clusters_need_one_probe() {
        // Each blob is one list and a row's 10 nearest are in its own blob
        // (spread wide enough that blob-mates are not taken for copies of
        // each other: COPY_SHARE).
        let dim = 8;
        let data = blobs(dim, 16, 200, 0.1, 1);
        // Rows of different blobs interleaved, so the stand-ins come from many.
        let mut rows: Vec<&[f32]> = data.chunks(dim).collect();
        rows.sort_by_key(|r| (r[0].to_bits() % 97, r[1].to_bits()));
        let data: Vec<f32> = rows.concat();
        let m = model(&data, dim, 16, Metric::L2);
        let c = calibrate(&data, dim, &m, 50);
        assert_eq!(c.probes_for(&m, 0.97, CALIBRATION_K), Some(1));
        assert_eq!(c.probes_for(&m, 1.0, CALIBRATION_K), Some(1));
    }

    /// 4,000 uniform 16-d rows in 32 lists, measured with 60 stand-ins.
    fn uniform_calibration() -> (IvfPqModel, ProbeCalibration) {
        let dim = 16;
        let data = uniform(dim, 4000, 7);
        let m = model(&data, dim, 32, Metric::L2);
        let c = calibrate(&data, dim, &m, 60);
        (m, c)
    }

    #[test]
    fn uniform_rows_need_more_and_higher_targets_need_at_least_as_many() {
        let (m, c) = uniform_calibration();
        let p90 = c.probes_for(&m, 0.90, CALIBRATION_K).unwrap();
        let p97 = c.probes_for(&m, 0.97, CALIBRATION_K).unwrap();
        let all = c.probes_for(&m, 1.0, CALIBRATION_K).unwrap();
        assert!(
            p90 > 1 && p90 <= p97 && p97 <= all && all <= 32,
            "{p90} {p97} {all}"
        );
        // A hundred rows lie farther out than ten: at least as many lists.
        let deep = c.probes_for(&m, 0.97, CALIBRATION_DEEP_K).unwrap();
        assert!(deep >= p97, "{deep} {p97}");
    }

    #[test]
    fn defaults_take_each_target_at_its_depth() {
        let (m, c) = uniform_calibration();
        let (first, deep) = c.defaults(&m).unwrap();
        assert_eq!(
            Some(first),
            c.probes_for(&m, TARGET_COVERAGE, CALIBRATION_K)
        );
        assert_eq!(
            Some(deep),
            c.probes_for(&m, DEEP_TARGET_COVERAGE, CALIBRATION_DEEP_K)
        );
        // The deep target is the stricter one: it asks more lists here than
        // the first target at the same depth would.
        let deep_at_first_target = c
            .probes_for(&m, TARGET_COVERAGE, CALIBRATION_DEEP_K)
            .unwrap();
        assert!(deep > deep_at_first_target, "{deep} {deep_at_first_target}");
    }

    #[test]
    fn the_answer_matches_a_brute_force_count() {
        // Cosine ranks by direction; each stand-in excludes itself.
        brute_force_count(Metric::Cosine);
    }

    #[test]
    fn the_answer_matches_a_brute_force_count_in_l2() {
        // The kernel's `||q||²/2 - x·q` against exact squared distances.
        brute_force_count(Metric::L2);
    }

    fn brute_force_count(metric: Metric) {
        let dim = 12;
        let data = uniform(dim, 1500, 3);
        let m = model(&data, dim, 20, metric);
        let nq = 40;
        let c = calibrate(&data, dim, &m, nq);
        let dist = |a: &[f32], b: &[f32]| match metric {
            Metric::L2 => distance::l2_squared(a, b),
            _ => 1.0 - distance::dot(a, b) / (distance::dot(a, a) * distance::dot(b, b)).sqrt(),
        };
        let rows: Vec<&[f32]> = data.chunks(dim).collect();
        let mut ranks = Vec::new();
        for q in &rows[..nq] {
            let mut near: Vec<(f32, usize)> = rows
                .iter()
                .enumerate()
                .filter(|(_, x)| *x != q)
                .map(|(i, x)| (dist(q, x), i))
                .collect();
            near.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut order = m.list_distances(q);
            order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            for (j, &(_, i)) in near[..CALIBRATION_DEEP_K].iter().enumerate() {
                let l = m.assign(rows[i]);
                let r = order.iter().position(|&(x, _)| x == l).unwrap();
                ranks.push((j, r));
            }
        }
        for k in [CALIBRATION_K, CALIBRATION_DEEP_K] {
            let ranks: Vec<usize> = ranks
                .iter()
                .filter(|&&(j, _)| j < k)
                .map(|&(_, r)| r)
                .collect();
            for target in [0.5, 0.8, 0.9, 0.97, 1.0] {
                let need = (target * ranks.len() as f64).ceil() as usize;
                let expected = (1..=20)
                    .find(|&p| ranks.iter().filter(|&&r| r < p).count() >= need)
                    .unwrap();
                assert_eq!(
                    c.probes_for(&m, target, k),
                    Some(expected),
                    "k {k} target {target}"
                );
            }
        }
    }

    #[test]
    fn too_few_stand_ins_give_no_answer() {
        let dim = 4;
        let data = uniform(dim, 500, 5);
        let m = model(&data, dim, 8, Metric::L2);
        let c = calibrate(&data, dim, &m, MIN_QUERIES - 1);
        assert_eq!(c.probes_for(&m, 0.97, CALIBRATION_K), None);
        // Zero rows are no stand-ins for cosine.
        let zeros = vec![0f32; dim * 30];
        assert_eq!(
            ProbeCalibration::new(Metric::Cosine, dim, zeros.clone(), 10).queries(),
            0
        );
    }

    #[test]
    fn neither_a_stand_in_nor_its_copies_count_as_its_neighbours() {
        // Every row 5 times, twice exactly and three times with rounding noise
        // (1e-4 of values in [-1, 1)): each stand-in's neighbours are the other
        // rows, as a query's would be (a query is rarely a row of the table).
        let dim = 8;
        let once = uniform(dim, 600, 11);
        let mut rng = StdRng::seed_from_u64(12);
        let mut copies = [once.clone(), once.clone()].concat();
        for _ in 0..3 {
            copies.extend(once.iter().map(|&x| x + rng.gen_range(-1e-4..1e-4)));
        }
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let m = model(&copies, dim, 8, metric);
            let c = calibrate(&copies, dim, &m, 30);
            for j in 0..30 {
                let q = &copies[j * dim..(j + 1) * dim];
                let got = c.neighbours(j);
                assert_eq!(got.len(), CALIBRATION_DEEP_K, "{metric:?} {j}");
                let exact = |x: &[f32]| match metric {
                    Metric::L2 => x.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                    Metric::InnerProduct => -distance::dot(x, q),
                    Metric::Cosine => {
                        1.0 - distance::dot(x, q)
                            / (distance::dot(x, x).sqrt() * distance::dot(q, q).sqrt())
                    }
                };
                // The nearest distinct row, and under L2 and cosine none of
                // the copies (under inner product only the exact ones go).
                let nearest = (0..600)
                    .filter(|&r| r != j % 600)
                    .map(|r| exact(&once[r * dim..(r + 1) * dim]))
                    .fold(f32::INFINITY, f32::min);
                if metric != Metric::InnerProduct {
                    assert!(
                        (got[0].0 - nearest).abs() <= 1e-3 * nearest.abs().max(1.0),
                        "{metric:?} {j}: {:?} against {nearest}",
                        &got[..3]
                    );
                } else {
                    assert!(got.iter().all(|e| e.0 != exact(q)), "{metric:?} {j}");
                }
            }
        }
    }

    #[test]
    fn copies_of_every_row_do_not_make_one_probe_look_enough() {
        // 600 distinct rows, then the same rows 20 times over: the copies
        // must not make one probe look enough (hunt-66: 1 probe of 30 lists,
        // recall 0.52 for held-out queries, 0.99 at 10 probes).
        let dim = 16;
        let once = uniform(dim, 600, 21);
        let many: Vec<f32> = (0..20).flat_map(|_| once.iter().copied()).collect();
        let m = model(&many, dim, 12, Metric::L2);
        let with_copies = calibrate(&many, dim, &m, 60)
            .probes_for(&m, TARGET_COVERAGE, CALIBRATION_K)
            .unwrap();
        // A held-out query's 10 nearest are then 10 copies of its nearest
        // distinct row, in one list: fewer probes than the distinct rows' 10
        // nearest need (8 here), but more than the one the copies suggested.
        assert!(with_copies > 1, "{with_copies} probes");
    }

    #[test]
    fn a_requested_stop_returns_early() {
        let dim = 4;
        let data = vec![1f32; dim * 100];
        let mut c = ProbeCalibration::new(Metric::L2, dim, data[..dim * 30].to_vec(), 10);
        let stop = Stop::new();
        stop.request();
        let lists = vec![0u32; 100];
        assert_eq!(c.offer_until(&data, &lists, &stop), Err(Stopped));
    }
}
