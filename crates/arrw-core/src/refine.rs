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

/// Bytes of the refine code of `dim` dimensions at `bits` per dimension (the
/// one place this is computed: the quantizer, the fine page geometry and the
/// build's check that a code fits a page all ask here).
pub fn code_bytes(dim: usize, bits: u32) -> usize {
    (dim * bits as usize).div_ceil(8)
}

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
                // Ranges wider than a float4 holds (values near ±3e38 on both
                // sides) made the step infinite: the model was then refused as
                // corrupt by every later read, and a REINDEX made it again.
                // Within ±f32::MAX / 2 the width and every decoded level are
                // finite; values beyond are clipped, and such rows' codes are
                // not faithful (`encode`), so scans re-rank them from the table.
                const HALF: f32 = f32::MAX / 2.0;
                (a.clamp(-HALF, HALF), b.clamp(-HALF, HALF))
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
        code_bytes(self.dim(), self.bits)
    }

    /// Writes the code of residual `r` (`dim` values) into `out` (`code_size()`
    /// bytes). Values beyond a dimension's range take its end level.
    ///
    /// Returns whether the code is *faithful*: its squared error `‖r − r̂‖²` is
    /// at most what a row inside every range can have, `Σ_d (step_d / 2)²`. A
    /// row far outside the clipped ranges (or with a NaN) is not: its refined
    /// estimate can be off by more than any learnt margin would allow for, so
    /// callers do not store its fine entry as usable (scans re-rank such rows
    /// from the table).
    ///
    /// Every row of an index with a refine code is encoded once by the build
    /// (and by each insert): with AVX2 the loop below runs 8 dimensions at a
    /// time (the rounding an instruction instead of a call of libm's `roundf`,
    /// which had the build spend 13% of its time here at 384 dimensions).
    pub fn encode(&self, r: &[f32], out: &mut [u8]) -> bool {
        assert_eq!(r.len(), self.dim());
        assert_eq!(out.len(), self.code_size());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `encode_avx2` only requires AVX2, checked just above.
            return unsafe { encode_avx2(self, r, out) };
        }
        encode_lanes(self, r, out)
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
        // A range [lo, lo + step × levels] the build cannot write: it clips
        // ranges to ±f32::MAX / 2 (`train`); beyond, decoded levels and
        // estimates overflow, and a damaged step of 3e38 ordered rows wrongly
        // without an error.
        let levels = f64::from((1u32 << bits) - 1);
        let bound = f64::from(f32::MAX) / 2.0 * (1.0 + 1e-4);
        if let Some(d) = (0..dim).find(|&d| {
            let (a, s) = (f64::from(lo[d]), f64::from(step[d]));
            a.abs() > bound || (a + s * levels).abs() > bound
        }) {
            return Err(format!(
                "refine model's range of dimension {d} ({} + {} per level) exceeds what a build writes",
                lo[d], step[d]
            ));
        }
        Ok(ResidualSq { bits, lo, step })
    }
}

/// Refined estimates for one query: the distance from the query to
/// `centroid + decoded residual` of a list's rows, in the space of the PQ
/// estimates (squared L2 between prepared vectors for L2 and cosine, the
/// negative inner product for inner product), from their codes alone.
///
/// Per list [`FineQuery::set_list`] folds the centroid and each dimension's
/// range into `t` and `w`, so a row costs one multiply-add and (for L2) one
/// square per dimension: `Σ_d (t_d − w_d·k_d)²`, or `bias + Σ_d w_d·k_d`. A
/// list's `t` and `w` are kept once computed: a scan refines candidates of the
/// same few dozen lists batch after batch.
#[derive(Clone, Debug)]
pub struct FineQuery {
    l2: bool,
    bits: u32,
    code_size: usize,
    q: Vec<f32>,
    lo: Vec<f32>,
    step: Vec<f32>,
    /// Per cached list: `t` then `w`, `padded` values each.
    tables: Vec<f32>,
    biases: Vec<f32>,
    cached: std::collections::HashMap<u32, usize>,
    padded: usize,
    cur: usize,
}

/// Dimensions per unrolled step of [`FineQuery::estimate`] (8 bytes of 4-bit codes).
const LANES: usize = 16;

/// Whether this CPU runs [`FineQuery::estimate`]'s AVX2 build (detected once).
#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    static YES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *YES.get_or_init(|| crate::distance::Isa::Avx2Fma.is_supported())
}

impl ResidualSq {
    /// Prepares refined estimates for `query` (already normalised for cosine).
    /// `l2`: squared L2 estimates (L2 and cosine); otherwise negative inner
    /// products.
    pub fn query(&self, query: &[f32], l2: bool) -> FineQuery {
        assert_eq!(query.len(), self.dim());
        // Padded to whole steps of LANES with zeros: a padded dimension adds
        // (0 − 0·k)² = 0, or 0·k.
        let padded = (self.code_size() * 8 / self.bits as usize).next_multiple_of(LANES);
        FineQuery {
            l2,
            bits: self.bits,
            code_size: self.code_size(),
            q: query.to_vec(),
            lo: self.lo.clone(),
            step: self.step.clone(),
            tables: Vec::new(),
            biases: Vec::new(),
            cached: std::collections::HashMap::new(),
            padded,
            cur: usize::MAX,
        }
    }
}

impl FineQuery {
    /// Makes `list`, whose centroid is `centroid`, the one estimated next.
    pub fn set_list(&mut self, list: u32, centroid: &[f32]) {
        if let Some(&i) = self.cached.get(&list) {
            self.cur = i;
            return;
        }
        let dim = self.lo.len();
        assert_eq!(centroid.len(), dim);
        let i = self.biases.len();
        let p = self.padded;
        self.tables.resize((i + 1) * 2 * p, 0.0);
        let (t, w) = self.tables[i * 2 * p..(i + 1) * 2 * p].split_at_mut(p);
        let mut bias = 0f32;
        for d in 0..dim {
            if self.l2 {
                t[d] = self.q[d] - centroid[d] - self.lo[d];
                w[d] = self.step[d];
            } else {
                bias -= self.q[d] * (centroid[d] + self.lo[d]);
                w[d] = -self.q[d] * self.step[d];
            }
        }
        self.biases.push(bias);
        self.cached.insert(list, i);
        self.cur = i;
    }

    /// The refined estimate of the row whose fine code is `code`
    /// (`code_size` bytes), for the list set last.
    pub fn estimate(&self, code: &[u8]) -> f32 {
        debug_assert_eq!(code.len(), self.code_size);
        assert!(self.cur < self.biases.len(), "set_list first");
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked once, cached).
            return unsafe { self.estimate_avx2(code) };
        }
        self.estimate_portable(code)
    }

    /// [`FineQuery::estimate`] with AVX2: the same 16 lanes as the portable
    /// code, held in two 8-wide registers, with the same operations in the same
    /// order (a multiply and a subtract, no fused multiply-add; the lanes summed
    /// one by one at the end), so the result is the same float, bit for bit
    /// (tested). 5–6× faster than what the compiler makes of the portable loop
    /// (1,536 dimensions: 995 → 175 ns; 384: 256 → 51 ns), which dominated
    /// refining at 768 and 1,536 dimensions.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `self.cur` is a cached list.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn estimate_avx2(&self, code: &[u8]) -> f32 {
        use std::arch::x86_64::*;
        let p = self.padded;
        let base = self.cur * 2 * p;
        let (t, w) = self.tables[base..base + 2 * p].split_at(p);
        let per = if self.bits == 8 { LANES } else { LANES / 2 };
        // The code is read `per` bytes at a time; a short last piece is copied
        // into zeros first (the portable code's `k.fill(0.0)`), so every load is
        // a whole 8 or 16 bytes inside a buffer.
        let mut tail = [0u8; LANES];
        let steps = code.len().div_ceil(per);
        assert!(steps * LANES <= p, "tables cover the code");
        let mut acc_lo = _mm256_setzero_ps();
        let mut acc_hi = _mm256_setzero_ps();
        for i in 0..steps {
            let start = i * per;
            let piece = &code[start..(start + per).min(code.len())];
            let src: &[u8] = if piece.len() == per {
                piece
            } else {
                tail[..piece.len()].copy_from_slice(piece);
                &tail[..per]
            };
            // SAFETY: `src` holds `per` bytes (8 or 16): the 8-byte load reads
            // exactly them, the 16-byte one too; `i * LANES + 16 <= p` (asserted
            // above) keeps the table loads inside `t` and `w`.
            unsafe {
                let bytes = if self.bits == 8 {
                    _mm_loadu_si128(src.as_ptr() as *const __m128i)
                } else {
                    // 8 bytes of two 4-bit codes each, low nibble first: split
                    // and interleave them into 16 bytes k0, k1, ..., k15.
                    let b = _mm_loadl_epi64(src.as_ptr() as *const __m128i);
                    let mask = _mm_set1_epi8(15);
                    let lo = _mm_and_si128(b, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
                    _mm_unpacklo_epi8(lo, hi)
                };
                let k_lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
                let k_hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8)));
                let o = i * LANES;
                let w_lo = _mm256_loadu_ps(w.as_ptr().add(o));
                let w_hi = _mm256_loadu_ps(w.as_ptr().add(o + 8));
                if self.l2 {
                    let e_lo = _mm256_sub_ps(
                        _mm256_loadu_ps(t.as_ptr().add(o)),
                        _mm256_mul_ps(w_lo, k_lo),
                    );
                    let e_hi = _mm256_sub_ps(
                        _mm256_loadu_ps(t.as_ptr().add(o + 8)),
                        _mm256_mul_ps(w_hi, k_hi),
                    );
                    acc_lo = _mm256_add_ps(acc_lo, _mm256_mul_ps(e_lo, e_lo));
                    acc_hi = _mm256_add_ps(acc_hi, _mm256_mul_ps(e_hi, e_hi));
                } else {
                    acc_lo = _mm256_add_ps(acc_lo, _mm256_mul_ps(w_lo, k_lo));
                    acc_hi = _mm256_add_ps(acc_hi, _mm256_mul_ps(w_hi, k_hi));
                }
            }
        }
        let mut acc = [0f32; LANES];
        // SAFETY: `acc` holds 16 floats: two unaligned 8-float stores.
        unsafe {
            _mm256_storeu_ps(acc.as_mut_ptr(), acc_lo);
            _mm256_storeu_ps(acc.as_mut_ptr().add(8), acc_hi);
        }
        self.biases[self.cur] + acc.iter().sum::<f32>()
    }

    #[inline(always)]
    fn estimate_portable(&self, code: &[u8]) -> f32 {
        let p = self.padded;
        let base = self.cur * 2 * p;
        let (t, w) = self.tables[base..base + 2 * p].split_at(p);
        let mut k = [0f32; LANES];
        let mut acc = [0f32; LANES];
        let per = if self.bits == 8 { LANES } else { LANES / 2 };
        for (i, c) in code.chunks(per).enumerate() {
            if c.len() < per {
                k.fill(0.0);
            }
            if self.bits == 8 {
                for (kk, &b) in k.iter_mut().zip(c) {
                    *kk = f32::from(b);
                }
            } else {
                for (j, &b) in c.iter().enumerate() {
                    k[2 * j] = f32::from(b & 15);
                    k[2 * j + 1] = f32::from(b >> 4);
                }
            }
            let t = &t[i * LANES..(i + 1) * LANES];
            let w = &w[i * LANES..(i + 1) * LANES];
            if self.l2 {
                for j in 0..LANES {
                    let e = t[j] - w[j] * k[j];
                    acc[j] += e * e;
                }
            } else {
                for j in 0..LANES {
                    acc[j] += w[j] * k[j];
                }
            }
        }
        self.biases[self.cur] + acc.iter().sum::<f32>()
    }
}

/// Dimensions [`encode_lanes`] handles at once: fixed-size inner loops the
/// compiler vectorises, and as many partial sums of the squared error.
const ENCODE_LANES: usize = 8;

/// [`encode_lanes`] compiled for AVX2 (see [`ResidualSq::encode`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn encode_avx2(q: &ResidualSq, r: &[f32], out: &mut [u8]) -> bool {
    encode_lanes(q, r, out)
}

/// The body of [`ResidualSq::encode`]: each dimension's level is
/// `round((v − lo) / step)` clamped to the levels (NaN: 0), the same
/// arithmetic whatever the instruction set; the squared error and its bound
/// are summed in [`ENCODE_LANES`] partial sums of `f64` (their order moves the
/// sums by far less than the check's 1e-6 tolerance).
#[inline(always)]
fn encode_lanes(q: &ResidualSq, r: &[f32], out: &mut [u8]) -> bool {
    let max = ((1u32 << q.bits) - 1) as f32;
    // `clamp` leaves NaN, which `as u8` makes 0.
    let level = |v: f32, lo: f32, step: f32| ((v - lo) / step).round().clamp(0.0, max) as u8;
    let mut err = [0f64; ENCODE_LANES];
    let mut bound = [0f64; ENCODE_LANES];
    let dim = r.len();
    let whole = dim - dim % ENCODE_LANES;
    let mut levels = [0u8; ENCODE_LANES];
    for c in (0..whole).step_by(ENCODE_LANES) {
        let (v, lo, step) = (
            &r[c..c + ENCODE_LANES],
            &q.lo[c..c + ENCODE_LANES],
            &q.step[c..c + ENCODE_LANES],
        );
        for i in 0..ENCODE_LANES {
            let l = level(v[i], lo[i], step[i]);
            levels[i] = l;
            let e = f64::from(v[i] - (lo[i] + f32::from(l) * step[i]));
            err[i] += e * e;
            bound[i] += 0.25 * f64::from(step[i]) * f64::from(step[i]);
        }
        if q.bits == 8 {
            out[c..c + ENCODE_LANES].copy_from_slice(&levels);
        } else {
            for i in 0..ENCODE_LANES / 2 {
                out[c / 2 + i] = levels[2 * i] | (levels[2 * i + 1] << 4);
            }
        }
    }
    if q.bits != 8 {
        out[whole / 2..].fill(0);
    }
    for d in whole..dim {
        let l = level(r[d], q.lo[d], q.step[d]);
        if q.bits == 8 {
            out[d] = l;
        } else {
            out[d / 2] |= l << (4 * (d % 2));
        }
        let e = f64::from(r[d] - (q.lo[d] + f32::from(l) * q.step[d]));
        err[0] += e * e;
        bound[0] += 0.25 * f64::from(q.step[d]) * f64::from(q.step[d]);
    }
    err.iter().sum::<f64>() <= bound.iter().sum::<f64>() * (1.0 + 1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Residuals spanning more than a float4 holds (±3e38 on both sides) give
    /// a model that reads back (its step was infinite: every later read of
    /// the index called it corrupt), and those rows' codes are not faithful.
    #[test]
    fn ranges_wider_than_a_float_give_a_readable_model() {
        let r: Vec<f32> = vec![3e38, 0.0, -3e38, 0.0, 1.0, 1.0];
        for bits in [4, 8] {
            let q = ResidualSq::train(&r, 2, bits, 0.0);
            let back = ResidualSq::from_bytes(&q.to_bytes()).expect("readable");
            assert_eq!(back.dim(), 2);
            let mut code = vec![0u8; q.code_size()];
            assert!(!q.encode(&[3e38, 0.0], &mut code), "clipped: not faithful");
            assert!(q.encode(&[0.5, 0.5], &mut code));
        }
    }
    use proptest::prelude::*;

    #[test]
    fn constant_dimensions_decode_to_their_value() {
        let sq = ResidualSq::train(&[2.5, 0.0, 2.5, 1.0], 2, 4, 0.0);
        let mut code = vec![0u8; sq.code_size()];
        assert!(sq.encode(&[2.5, 1.0], &mut code));
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
        // Far outside the range: the end level, and not faithful.
        assert!(!sq.encode(&[1e9], &mut c));
        assert_eq!(c[0], 255);
        assert!(!sq.encode(&[-1e9], &mut c));
        assert_eq!(c[0], 0);
        assert!(!sq.encode(&[f32::NAN], &mut c));
        assert_eq!(c[0], 0);
        // Inside it: faithful.
        assert!(sq.encode(&[37.3], &mut c));
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
        // A finite step no build writes (3e38 × 15 levels overflows).
        let mut bad = b.clone();
        bad[n - 4..].copy_from_slice(&3e38f32.to_le_bytes());
        assert!(ResidualSq::from_bytes(&bad).is_err());
        // The widest range a build writes is read back.
        let wide = ResidualSq::train(&[-3e38, 3e38, 0.0, 1.0], 1, 4, 0.0);
        assert!(ResidualSq::from_bytes(&wide.to_bytes()).is_ok());
    }

    /// The refined estimate equals the metric computed on the decoded row.
    fn decoded_distance(sq: &ResidualSq, q: &[f32], c: &[f32], code: &[u8], l2: bool) -> f32 {
        let mut x = c.to_vec();
        sq.decode_add(code, &mut x);
        if l2 {
            q.iter().zip(&x).map(|(a, b)| (a - b) * (a - b)).sum()
        } else {
            -q.iter().zip(&x).map(|(a, b)| a * b).sum::<f32>()
        }
    }

    /// Reproducible values in [-10, 10] in steps of 0.01 (xorshift from `seed`).
    fn values(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f32 / 100.0 - 10.0
        }
    }

    /// The encoder before it ran 8 dimensions at a time (kept to compare).
    fn encode_reference(q: &ResidualSq, r: &[f32], out: &mut [u8]) -> bool {
        let max = ((1u32 << q.bits) - 1) as f32;
        let level = |d: usize, v: f32| ((v - q.lo[d]) / q.step[d]).round().clamp(0.0, max) as u8;
        let (mut err, mut bound) = (0f64, 0f64);
        if q.bits != 8 {
            out.fill(0);
        }
        for (d, &v) in r.iter().enumerate() {
            let l = level(d, v);
            if q.bits == 8 {
                out[d] = l;
            } else {
                out[d / 2] |= l << (4 * (d % 2));
            }
            let e = f64::from(v - (q.lo[d] + f32::from(l) * q.step[d]));
            err += e * e;
            bound += 0.25 * f64::from(q.step[d]) * f64::from(q.step[d]);
        }
        err <= bound * (1.0 + 1e-6)
    }

    proptest! {
        /// The same codes and verdicts as the one-dimension-at-a-time encoder,
        /// for any width (a tail of fewer than 8 dimensions, odd widths for
        /// 4-bit codes), values beyond the ranges, halves between levels and NaN.
        #[test]
        fn encode_matches_the_reference(
            dim in 1usize..40,
            bits in prop_oneof![Just(4u32), Just(8u32)],
            train in proptest::collection::vec(-2.0f32..2.0, 40 * 8),
            rows in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![8 => -3.0f32..3.0, 1 => Just(f32::NAN), 1 => (-30i32..30).prop_map(|h| h as f32 * 0.125)], 40), 1..6),
        ) {
            let q = ResidualSq::train(&train[..dim * 8], dim, bits, 0.05);
            for row in &rows {
                let r = &row[..dim];
                let (mut a, mut b) = (vec![0xAAu8; q.code_size()], vec![0x55u8; q.code_size()]);
                let fa = q.encode(r, &mut a);
                let fb = encode_reference(&q, r, &mut b);
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(fa, fb);
                prop_assert_eq!(encode_lanes(&q, r, &mut a), fb);
                prop_assert_eq!(&a, &b);
            }
        }
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
                prop_assert!(sq.encode(r, &mut code), "a row inside every range is faithful");
                let mut out = vec![0f32; dim];
                sq.decode_add(&code, &mut out);
                for d in 0..dim {
                    prop_assert!((out[d] - r[d]).abs() <= sq.step[d] * 0.5 + 1e-4,
                        "dim {} value {} decoded {} step {}", d, r[d], out[d], sq.step[d]);
                }
            }
        }

        /// Estimates from codes match distances to the decoded rows, for both
        /// widths, both kinds of metric and dimensions that fill no whole step.
        #[test]
        fn estimates_match_decoded_rows(
            dim in 1usize..40,
            seed in any::<u64>(),
            eight in any::<bool>(),
            l2 in any::<bool>(),
        ) {
            let mut r = values(seed);
            let data: Vec<f32> = (0..dim * 20).map(|_| r()).collect();
            let bits = if eight { 8 } else { 4 };
            let sq = ResidualSq::train(&data, dim, bits, 0.01);
            let q: Vec<f32> = (0..dim).map(|_| r()).collect();
            let c: Vec<f32> = (0..dim).map(|_| r()).collect();
            let mut fq = sq.query(&q, l2);
            fq.set_list(0, &q);
            fq.set_list(1, &c);
            let mut code = vec![0u8; sq.code_size()];
            for row in data.chunks_exact(dim) {
                let _ = sq.encode(row, &mut code);
                let want = decoded_distance(&sq, &q, &c, &code, l2);
                let got = fq.estimate(&code);
                prop_assert!((got - want).abs() <= 1e-3 * (1.0 + want.abs()), "{} vs {}", got, want);
            }
        }

        /// The AVX2 build of the estimate gives the portable build's float, bit
        /// for bit (same lanes, same summation order), at any width.
        #[test]
        fn avx2_estimate_equals_portable(
            dim in 1usize..1600,
            seed in any::<u64>(),
            eight in any::<bool>(),
            l2 in any::<bool>(),
        ) {
            let mut r = values(seed);
            let data: Vec<f32> = (0..dim * 4).map(|_| r()).collect();
            let sq = ResidualSq::train(&data, dim, if eight { 8 } else { 4 }, 0.01);
            let q: Vec<f32> = (0..dim).map(|_| r()).collect();
            let mut fq = sq.query(&q, l2);
            fq.set_list(3, &data[..dim]);
            let mut code = vec![0u8; sq.code_size()];
            for row in data.chunks_exact(dim) {
                let _ = sq.encode(row, &mut code);
                let portable = fq.estimate_portable(&code);
                prop_assert_eq!(fq.estimate(&code).to_bits(), portable.to_bits());
                #[cfg(target_arch = "x86_64")]
                if avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked).
                    let avx2 = unsafe { fq.estimate_avx2(&code) };
                    prop_assert_eq!(avx2.to_bits(), portable.to_bits());
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
