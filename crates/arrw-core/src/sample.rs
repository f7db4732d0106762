//! The index build's sample of the table: a uniform reservoir sample taken in one
//! pass (algorithm R), and the training rows drawn from it.
//!
//! Both draw from one seeded generator, so a build of the same table in the same
//! physical order trains the same model.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seed of every build's sample.
pub const BUILD_SEED: u64 = 0x1f2e_3d4c;

/// At most `cap` rows of `dim` floats, each row offered so far kept with the same
/// probability `min(1, cap / seen)`.
pub struct Reservoir {
    dim: usize,
    cap: usize,
    seen: u64,
    rows: Vec<f32>,
    rng: StdRng,
}

impl Reservoir {
    /// An empty reservoir of at most `cap` (at least 1) rows of `dim` floats.
    pub fn new(dim: usize, cap: usize, seed: u64) -> Self {
        assert!(dim > 0, "a reservoir of 0-dimensional rows");
        Reservoir {
            dim,
            cap: cap.max(1),
            seen: 0,
            rows: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Rows held (`min(seen, cap)`).
    pub fn len(&self) -> usize {
        self.rows.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows held, row after row.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }

    /// Offers the next row of the table (`x.len()` must be `dim`).
    pub fn offer(&mut self, x: &[f32]) {
        assert_eq!(x.len(), self.dim, "row of the wrong dimension");
        self.seen += 1;
        if self.len() < self.cap {
            self.rows.extend_from_slice(x);
        } else {
            let j = self.rng.gen_range(0..self.seen) as usize;
            if j < self.cap {
                self.rows[j * self.dim..(j + 1) * self.dim].copy_from_slice(x);
            }
        }
    }

    /// `k` rows chosen uniformly at random from those held, in reservoir order
    /// (all of them when `k >= len()`), consuming the reservoir.
    ///
    /// The reservoir often holds the whole table in physical order, so its first
    /// rows are not a random sample: training on them fits the lists to whatever
    /// was loaded first (on SIFT, lists of 122 to 4,096 rows instead of 289 to
    /// 2,303, and recall@10 0.958 instead of 0.972 at 16 probes with 40 re-ranked).
    pub fn into_training(mut self, k: usize) -> Vec<f32> {
        let have = self.len();
        if have <= k {
            return self.rows;
        }
        let mut idx = rand::seq::index::sample(&mut self.rng, have, k).into_vec();
        idx.sort_unstable();
        let d = self.dim;
        let mut v = Vec::with_capacity(k * d);
        for i in idx {
            v.extend_from_slice(&self.rows[i * d..(i + 1) * d]);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fill(n: usize, cap: usize, seed: u64) -> Reservoir {
        let mut r = Reservoir::new(2, cap, seed);
        for i in 0..n {
            r.offer(&[i as f32, -(i as f32)]);
        }
        r
    }

    fn ids(rows: &[f32]) -> Vec<usize> {
        rows.chunks(2).map(|r| r[0] as usize).collect()
    }

    #[test]
    fn keeps_everything_below_capacity() {
        let r = fill(10, 10, 1);
        assert_eq!((r.seen(), r.len()), (10, 10));
        assert_eq!(ids(r.rows()), (0..10).collect::<Vec<_>>());
        // k >= n: every row, in order.
        assert_eq!(
            ids(&fill(10, 16, 1).into_training(10)),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(
            ids(&fill(10, 16, 1).into_training(99)),
            (0..10).collect::<Vec<_>>()
        );
        assert!(fill(0, 4, 1).into_training(3).is_empty());
        assert!(fill(5, 4, 1).into_training(0).is_empty());
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = fill(1000, 50, 7);
        let b = fill(1000, 50, 7);
        assert_eq!(a.rows(), b.rows());
        assert_eq!(a.into_training(20), b.into_training(20));
        assert_ne!(fill(1000, 50, 7).rows(), fill(1000, 50, 8).rows());
    }

    /// Every row of the table lands in the reservoir (and in the training rows)
    /// about equally often: counted over many seeds, each count is within a few
    /// standard deviations of its expectation.
    #[test]
    fn uniform() {
        let (n, cap, k, trials) = (60usize, 12usize, 5usize, 4000u64);
        let mut kept = vec![0u32; n];
        let mut trained = vec![0u32; n];
        for seed in 0..trials {
            let r = fill(n, cap, seed);
            for i in ids(r.rows()) {
                kept[i] += 1;
            }
            for i in ids(&r.into_training(k)) {
                trained[i] += 1;
            }
        }
        for (counts, p) in [
            (&kept, cap as f64 / n as f64),
            (&trained, k as f64 / n as f64),
        ] {
            let mean = trials as f64 * p;
            let sd = (trials as f64 * p * (1.0 - p)).sqrt();
            for (i, &c) in counts.iter().enumerate() {
                assert!(
                    (c as f64 - mean).abs() < 5.0 * sd,
                    "row {i}: {c} times, expected {mean:.0} ± {sd:.0}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "wrong dimension")]
    fn rejects_other_dimensions() {
        Reservoir::new(3, 4, 0).offer(&[1.0]);
    }

    proptest! {
        /// The reservoir holds min(n, cap) distinct rows of the table, each intact;
        /// the training rows are k (or all) distinct rows of the reservoir, in
        /// reservoir order.
        #[test]
        fn sizes_and_contents(n in 0usize..300, cap in 1usize..50, k in 0usize..60, seed: u64) {
            let r = fill(n, cap, seed);
            prop_assert_eq!(r.seen(), n as u64);
            prop_assert_eq!(r.len(), n.min(cap));
            for row in r.rows().chunks(2) {
                prop_assert_eq!(row[1], -row[0]);
            }
            let held = ids(r.rows());
            let mut sorted = held.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), held.len());
            prop_assert!(held.iter().all(|&i| i < n));
            let train = ids(&r.into_training(k));
            prop_assert_eq!(train.len(), k.min(held.len()));
            let pos: Vec<usize> = train
                .iter()
                .map(|i| held.iter().position(|h| h == i).unwrap())
                .collect();
            prop_assert!(pos.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
