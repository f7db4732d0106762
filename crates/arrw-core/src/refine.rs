//! A second, finer code per row: the residual the product quantizer leaves
//! (`x - centroid - p̂`) scalar-quantized per dimension.
//!
//! Why: an ivfpq scan hands rows out in exact order only once no waiting
//! candidate could be closer, judged from its PQ estimate minus the largest
//! estimate error seen (`crate::rerank`). At 384 dimensions a 4-bit PQ code of
//! 64 bytes errs by so much that a `LIMIT 100` re-ranks ~750 rows from the heap
//! for its 100, and a `LIMIT 10` ~55 (measured with `examples/bound_eval.rs` on
//! the 75k MiniLM set, 20 probes). Re-estimating the coarse survivors with this
//! code (4 bits per dimension, 192 bytes at 384 dimensions) cuts the exact
//! re-ranks to ~120 and ~12 (SIFT: 331 → 125 and 45 → 14), and a refined estimate
//! is a read of a few hundred bytes from the index instead of a heap fetch.
//!
//! Each dimension has its own range, the `clip` and `1 - clip` quantiles of the
//! training residuals (clipping the tails halves the step of 4-bit codes at the
//! cost of a larger error on the rare values outside), cut into `2^bits - 1`
//! equal steps. Codes pack dimensions low bits first, 4-bit codes two to a byte.

/// Per-dimension scalar quantizer of PQ residuals (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct ResidualSq {
    /// Bits per dimension: 4 or 8.
    pub bits: u32,
    /// Per dimension, the value of level 0.
    pub lo: Vec<f32>,
    /// Per dimension, the width of one level (positive and finite).
    pub step: Vec<f32>,
}

/// Bytes of [`ResidualSq::to_bytes`] before the per-dimension arrays.
const HEADER: usize = 8;

impl ResidualSq {
    /// Fits the ranges to `residuals` (`n × dim`, row-major, `n ≥ 1`). Panics on
    /// an unsupported `bits` or a shape that is not `n × dim`.
    pub fn train(residuals: &[f32], dim: usize, bits: u32, clip: f64) -> Self {
        assert!(bits == 4 || bits == 8, "bits must be 4 or 8");
        assert!(dim > 0 && !residuals.is_empty() && residuals.len().is_multiple_of(dim));
        let n = residuals.len() / dim;
        let clip = clip.clamp(0.0, 0.5);
        let levels = ((1u32 << bits) - 1) as f32;
        let mut lo = Vec::with_capacity(dim);
        let mut step = Vec::with_capacity(dim);
        let mut col = Vec::with_capacity(n);
        for d in 0..dim {
            col.clear();
            col.extend(
                residuals
                    .iter()
                    .skip(d)
                    .step_by(dim)
                    .copied()
                    .filter(|v| v.is_finite()),
            );
            let (a, b) = if col.is_empty() {
                (0.0, 0.0)
            } else {
                let last = col.len() - 1;
                let i = ((last as f64) * clip).round() as usize;
                let j = ((last as f64) * (1.0 - clip)).round() as usize;
                let a = *col.select_nth_unstable_by(i, |x, y| x.total_cmp(y)).1;
                let b = *col
                    .select_nth_unstable_by(j.max(i), |x, y| x.total_cmp(y))
                    .1;
                (a, b)
            };
            lo.push(a);
            // A constant dimension still gets a positive step, so decoding
            // gives back its value and nothing divides by zero.
            step.push(
                ((b - a) / levels)
                    .max(f32::MIN_POSITIVE * 1e6)
                    .max(a.abs() * 1e-7),
            );
        }
        ResidualSq { bits, lo, step }
    }

    /// Dimensions.
    pub fn dim(&self) -> usize {
        self.lo.len()
    }

    /// Bytes per code.
    pub fn code_size(&self) -> usize {
        (self.dim() * self.bits as usize).div_ceil(8)
    }

    fn level(&self, d: usize, v: f32) -> u8 {
        let max = ((1u32 << self.bits) - 1) as f32;
        let l = ((v - self.lo[d]) / self.step[d]).round();
        // NaN maps to 0 (clamp leaves NaN, `as u8` makes it 0).
        l.clamp(0.0, max) as u8
    }

    /// Writes the code of residual `r` (`dim` values) into `out` (`code_size()`
    /// bytes). Values beyond a dimension's range take its end level.
    pub fn encode(&self, r: &[f32], out: &mut [u8]) {
        assert_eq!(r.len(), self.dim());
        assert_eq!(out.len(), self.code_size());
        if self.bits == 8 {
            for (d, (o, &v)) in out.iter_mut().zip(r).enumerate() {
                *o = self.level(d, v);
            }
            return;
        }
        out.fill(0);
        for (d, &v) in r.iter().enumerate() {
            out[d / 2] |= self.level(d, v) << (4 * (d % 2));
        }
    }

    /// Adds the residual decoded from `code` to `out` (`dim` values), so that a
    /// caller holding `centroid + p̂` gets the refined row.
    pub fn decode_add(&self, code: &[u8], out: &mut [f32]) {
        assert_eq!(out.len(), self.dim());
        assert_eq!(code.len(), self.code_size());
        for (d, o) in out.iter_mut().enumerate() {
            let l = if self.bits == 8 {
                code[d]
            } else {
                (code[d / 2] >> (4 * (d % 2))) & 15
            };
            *o += self.lo[d] + f32::from(l) * self.step[d];
        }
    }

    /// Serialises: `bits` (u32 LE), `dim` (u32 LE), then `lo` and `step` as f32 LE.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER + 8 * self.dim());
        b.extend_from_slice(&self.bits.to_le_bytes());
        b.extend_from_slice(&(self.dim() as u32).to_le_bytes());
        for v in self.lo.iter().chain(&self.step) {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Reads [`Self::to_bytes`] output, checking everything (the bytes come from
    /// disk): the bit width, that the length matches the dimensions, finite
    /// values and positive steps.
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() < HEADER {
            return Err(format!("refine model of {} bytes is truncated", b.len()));
        }
        let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let (bits, dim) = (u(0), u(4) as usize);
        if bits != 4 && bits != 8 {
            return Err(format!(
                "refine model has {bits} bits per dimension, not 4 or 8"
            ));
        }
        if dim == 0 || Some(b.len()) != dim.checked_mul(8).and_then(|x| x.checked_add(HEADER)) {
            return Err(format!(
                "refine model of {} bytes does not hold {dim} dimensions",
                b.len()
            ));
        }
        let f = |i: usize| {
            f32::from_le_bytes(
                b[HEADER + 4 * i..HEADER + 4 * i + 4]
                    .try_into()
                    .expect("4 bytes"),
            )
        };
        let lo: Vec<f32> = (0..dim).map(f).collect();
        let step: Vec<f32> = (dim..2 * dim).map(f).collect();
        if lo.iter().any(|v| !v.is_finite()) || step.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(
                "refine model has a non-finite range or a step that is not positive".into(),
            );
        }
        Ok(ResidualSq { bits, lo, step })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_dimensions_decode_to_their_value() {
        let sq = ResidualSq::train(&[2.5, 0.0, 2.5, 1.0], 2, 4, 0.0);
        let mut code = vec![0u8; sq.code_size()];
        sq.encode(&[2.5, 1.0], &mut code);
        let mut out = vec![0.0; 2];
        sq.decode_add(&code, &mut out);
        assert!(
            (out[0] - 2.5).abs() < 1e-5 && (out[1] - 1.0).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn values_beyond_the_range_take_its_ends_and_nan_the_bottom() {
        let data: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        let sq = ResidualSq::train(&data, 1, 8, 0.0);
        let mut c = [0u8];
        sq.encode(&[1e9], &mut c);
        assert_eq!(c[0], 255);
        sq.encode(&[-1e9], &mut c);
        assert_eq!(c[0], 0);
        sq.encode(&[f32::NAN], &mut c);
        assert_eq!(c[0], 0);
    }

    #[test]
    fn bad_bytes_are_refused() {
        let sq = ResidualSq::train(&[0.0, 1.0, 2.0, 3.0], 2, 4, 0.0);
        let b = sq.to_bytes();
        assert!(ResidualSq::from_bytes(&b[..b.len() - 1]).is_err());
        assert!(ResidualSq::from_bytes(&b[..3]).is_err());
        let mut bad = b.clone();
        bad[0] = 5;
        assert!(ResidualSq::from_bytes(&bad).is_err());
        let mut bad = b.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&0f32.to_le_bytes()); // a zero step
        assert!(ResidualSq::from_bytes(&bad).is_err());
        let mut bad = b.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ResidualSq::from_bytes(&bad).is_err());
    }

    proptest! {
        /// Inside the trained range a value comes back within half a step, for
        /// both widths, and the model survives serialisation.
        #[test]
        fn round_trip_within_half_a_step(
            rows in proptest::collection::vec(proptest::collection::vec(-10.0f32..10.0, 7), 1..40),
            eight in any::<bool>(),
        ) {
            let dim = 7;
            let data: Vec<f32> = rows.concat();
            let bits = if eight { 8 } else { 4 };
            let sq = ResidualSq::train(&data, dim, bits, 0.0);
            prop_assert_eq!(ResidualSq::from_bytes(&sq.to_bytes()).unwrap(), sq.clone());
            let mut code = vec![0u8; sq.code_size()];
            for r in data.chunks_exact(dim) {
                sq.encode(r, &mut code);
                let mut out = vec![0f32; dim];
                sq.decode_add(&code, &mut out);
                for d in 0..dim {
                    prop_assert!((out[d] - r[d]).abs() <= sq.step[d] * 0.5 + 1e-4,
                        "dim {} value {} decoded {} step {}", d, r[d], out[d], sq.step[d]);
                }
            }
        }

        /// Arbitrary bytes never panic the reader.
        #[test]
        fn any_bytes_read_or_refused(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ResidualSq::from_bytes(&b);
        }
    }
}
