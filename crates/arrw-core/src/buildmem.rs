//! How much memory an index build needs, and how it spends `maintenance_work_mem`.
//!
//! A build holds, at its peak:
//! - the **reservoir** of sampled rows while it scans the table (at most half of
//!   the budget);
//! - the **training rows** taken from it and, while training, up to
//!   [`TRAIN_COPIES`] copies of them (the rows themselves, their normalized copy
//!   under cosine, the k-means++ seeding subset with its SIMD panels);
//! - the **model**: centroids (three times: as trained, as SIMD panels, as the
//!   serialized blob written to the model pages, plus the panels' half-precision
//!   copy from [`crate::ivf::HALF_RANK_MIN_BYTES`]), codebooks, the per-list
//!   fast-scan terms, and one page image per list while encoding;
//! - two **encode batches**: one on the compute threads while the table scan
//!   fills the next (see `encode_table` in src/ivfpq/build.rs), each rows
//!   copied out of the table (twice: as read and as residuals) with their codes;
//! - the **stand-in queries** the build scores its default probes with, held
//!   from the sample to the end ([`stand_in_rows`] of them; while the table is
//!   encoded, twice: as rows and as the calibration's panels,
//!   `crate::calibrate::ProbeCalibration::held_bytes`).
//!
//! [`plan`] fits these to the budget: it trains on fewer rows when the budget is
//! short (never fewer than one per list), encodes in smaller batches, and when
//! even that does not fit it says how many bytes would.

/// Copies of the training rows held at the peak of training.
pub const TRAIN_COPIES: usize = 3;

/// The smallest encode batch: below this the per-batch overhead dominates.
/// Rows so wide that 32 of them do not fit take smaller batches, down to
/// [`LEAST_ENCODE_ROWS`].
pub const MIN_ENCODE_ROWS: usize = 32;

/// The smallest encode batch of very wide rows (two a batch: one per thread).
pub const LEAST_ENCODE_ROWS: usize = 2;

/// How many of `queries` stand-in queries of `dim` dimensions a build with
/// `budget` bytes keeps: all of them while they take at most a sixteenth of the
/// budget, else fewer (at least 8). At 16,000 dimensions 100 of them were
/// 6.4 MB beside a 10 MB budget.
pub fn stand_in_rows(budget: usize, dim: usize, queries: usize) -> usize {
    let row = dim.max(1) * 4;
    queries.min((budget / 16 / row).max(8))
}

/// The largest encode batch. Small enough that the scan of the table and the
/// encoding overlap from the first thousands of rows (and that a batch's rows
/// stay in the caches), large enough that handing a batch to the compute
/// threads is a small part of its cost.
pub const MAX_ENCODE_ROWS: usize = 4096;

/// Most rows the reservoir samples, whatever the budget (k-means and PQ training
/// use at most [`crate::ivf::training_sample_size`] rows of it).
pub const MAX_RESERVOIR_ROWS: usize = 1 << 18;

/// What a build is shaped like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub dim: usize,
    pub lists: usize,
    pub m: usize,
    pub nbits: u32,
    /// Bytes of one index page.
    pub page_bytes: usize,
}

impl Shape {
    fn row_bytes(&self) -> usize {
        self.dim.max(1) * 4
    }

    /// Bytes of the model while it is built and written (see the module docs).
    pub fn model_bytes(&self) -> usize {
        let centroids = self.lists * self.row_bytes();
        let codebooks = (1usize << self.nbits) * self.row_bytes();
        let terms = if self.nbits == 4 {
            (self.lists * self.m * 16 * 4).min(crate::ivf::FAST_TERMS_MAX_BYTES)
        } else {
            0
        };
        let pages = (self.lists + self.lists.div_ceil(64)) * self.page_bytes;
        let half = if centroids >= crate::ivf::HALF_RANK_MIN_BYTES {
            centroids / 2
        } else {
            0
        };
        3 * centroids + half + 2 * codebooks + terms + pages
    }

    /// Bytes of the two encode batches of `rows` rows each.
    pub fn encode_bytes(&self, rows: usize) -> usize {
        let code = (self.m * self.nbits as usize).div_ceil(8);
        2 * rows * (2 * self.row_bytes() + code + 4 + 6)
    }
}

/// Rows the reservoir may hold within `budget` bytes (at least 1).
pub fn reservoir_rows(budget: usize, dim: usize) -> usize {
    ((budget / 2) / (dim.max(1) * 4)).clamp(1, MAX_RESERVOIR_ROWS)
}

/// How a build spends its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Rows to train on (at most what was asked for and what was sampled).
    pub train_rows: usize,
    /// Rows per encode batch.
    pub encode_rows: usize,
}

/// Too little memory: at least `needed` bytes would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeedMore {
    pub needed: usize,
}

/// Fits a build to `budget` bytes. `sampled` rows are in the reservoir and
/// `wanted` is what training would use with no limit; `held` bytes (the
/// stand-in queries) stay allocated beside the model through training and
/// encoding.
pub fn plan(
    budget: usize,
    shape: &Shape,
    sampled: usize,
    wanted: usize,
    held: usize,
) -> Result<Plan, NeedMore> {
    let row = shape.row_bytes();
    let model = shape.model_bytes() + held;
    let per_row = shape.encode_bytes(1).max(1);
    // 32 rows a batch when they fit beside the model, fewer of very wide rows.
    let room = budget.saturating_sub(model);
    let least_rows = (room / per_row).clamp(LEAST_ENCODE_ROWS, MIN_ENCODE_ROWS);
    let least_batch = shape.encode_bytes(least_rows);
    // Training needs one row per list (fewer rows give fewer lists); a table with
    // fewer rows than lists trains on all of them.
    let least_train = shape.lists.max(1).min(sampled);
    let train_need = |rows: usize| model + TRAIN_COPIES * rows * row;
    let needed = train_need(least_train).max(model + least_batch);
    if needed > budget {
        return Err(NeedMore { needed });
    }
    let train_rows = ((budget - model) / (TRAIN_COPIES * row))
        .min(wanted.max(least_train))
        .min(sampled)
        .max(least_train);
    let encode_rows = ((budget - model) / per_row).clamp(least_rows, MAX_ENCODE_ROWS);
    Ok(Plan {
        train_rows,
        encode_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shape(dim: usize, lists: usize, m: usize) -> Shape {
        Shape {
            dim,
            lists,
            m,
            nbits: 4,
            page_bytes: 8192,
        }
    }

    #[test]
    fn a_generous_budget_trains_on_what_was_asked() {
        let s = shape(128, 100, 64);
        let p = plan(256 << 20, &s, 100_000, 25_600, 0).unwrap();
        assert_eq!(p.train_rows, 25_600);
        assert_eq!(p.encode_rows, MAX_ENCODE_ROWS);
    }

    #[test]
    fn a_short_budget_trains_on_fewer_rows_and_smaller_batches() {
        // 16,000 dimensions, 16 MB: three training copies of all 128 sampled rows
        // (24 MB) do not fit beside the model.
        let s = shape(16_000, 2, 250);
        let p = plan(16 << 20, &s, 128, 4096, 0).unwrap();
        assert!(p.train_rows >= 2 && p.train_rows < 128, "{p:?}");
        assert!(s.model_bytes() + TRAIN_COPIES * p.train_rows * 64_000 <= 16 << 20);
        assert!(s.model_bytes() + s.encode_bytes(p.encode_rows) <= 16 << 20);
    }

    #[test]
    fn too_little_memory_says_how_much_would_do() {
        let s = shape(1536, 2000, 384);
        let e = plan(1 << 20, &s, 50_000, 64_000, 0).unwrap_err();
        assert!(e.needed > 1 << 20);
        // ... and that much does.
        assert!(plan(e.needed, &s, 50_000, 64_000, 0).is_ok());
    }

    /// 16,000 dimensions at 10 MB: 100 stand-ins (6.4 MB) and two encode
    /// batches of 32 rows (8 MB) did not fit beside each other; the build
    /// peaked at 31 MB. Now the stand-ins take a sixteenth and the batches what
    /// is left.
    #[test]
    fn very_wide_rows_fit_stand_ins_and_batches_in_the_budget() {
        let (budget, dim) = (10 << 20, 16_000);
        let s = shape(dim, 1, 250);
        let rows = stand_in_rows(budget, dim, 100);
        assert_eq!(rows, 10);
        let held = rows * dim * 4;
        let p = plan(budget, &s, 78, 78, held).unwrap();
        assert!(
            p.encode_rows < MIN_ENCODE_ROWS && p.encode_rows >= LEAST_ENCODE_ROWS,
            "{p:?}"
        );
        assert!(held + s.model_bytes() + s.encode_bytes(p.encode_rows) <= budget);
        assert!(held + s.model_bytes() + TRAIN_COPIES * p.train_rows * dim * 4 <= budget);
    }

    #[test]
    fn reservoir_stays_within_half_the_budget() {
        assert_eq!(reservoir_rows(1 << 20, 16_000), 8);
        assert_eq!(reservoir_rows(1 << 10, 16_000), 1);
        assert_eq!(reservoir_rows(usize::MAX / 2, 128), MAX_RESERVOIR_ROWS);
    }

    proptest! {
        /// Whatever the shape, a plan fits its budget, and a refusal names an
        /// amount that is then accepted.
        #[test]
        fn plans_fit_their_budget(
            dim in 1usize..20_000,
            lists in 1usize..5000,
            m in 1usize..512,
            sampled in 0usize..300_000,
            wanted in 0usize..300_000,
            budget_mb in 1usize..2048,
            queries in 0usize..200,
        ) {
            let s = shape(dim, lists, m);
            let budget = budget_mb << 20;
            let held = stand_in_rows(budget, dim, queries) * dim * 4;
            prop_assert!(held <= budget / 16 || stand_in_rows(budget, dim, queries) <= 8);
            match plan(budget, &s, sampled, wanted, held) {
                Ok(p) => {
                    prop_assert!(p.train_rows <= sampled);
                    prop_assert!(p.train_rows >= lists.min(sampled));
                    prop_assert!(held + s.model_bytes() + TRAIN_COPIES * p.train_rows * dim * 4 <= budget);
                    prop_assert!(p.encode_rows >= LEAST_ENCODE_ROWS);
                    prop_assert!(held + s.model_bytes() + s.encode_bytes(p.encode_rows) <= budget);
                }
                Err(NeedMore { needed }) => {
                    prop_assert!(needed > budget);
                    prop_assert!(plan(needed, &s, sampled, wanted, held).is_ok());
                }
            }
        }
    }
}
