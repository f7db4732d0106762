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
    check(doc, query)?;
    Ok(query
        .iter()
        .map(|q| {
            doc.iter()
                .map(|d| distance::dot(q, d))
                .fold(f32::NEG_INFINITY, f32::max) as f64
        })
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refs(v: &[Vec<f32>]) -> Vec<&[f32]> {
        v.iter().map(|x| x.as_slice()).collect()
    }

    #[test]
    fn worked_example() {
        let doc = [vec![1.0, 0.0], vec![0.0, 2.0]];
        let query = [vec![3.0, 1.0], vec![-1.0, 1.0]];
        // q1: max(3, 2) = 3; q2: max(-1, 2) = 2.
        assert_eq!(similarity(&refs(&doc), &refs(&query)), Ok(5.0));
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
}
