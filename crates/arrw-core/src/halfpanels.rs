//! Ranking many centroids from a half-precision copy.
//!
//! Why: a query ranks every list by its centroid before it probes any
//! ([`crate::ivf::IvfPqModel::list_distances`]). At 10,000 lists of 128
//! dimensions the centroids are 5 MB of `f32`: each query streams them from the
//! L3 cache (or memory, once the scan's pages have pushed them out), and the
//! ranking took 190–280 µs of a ~3 ms query at 10M rows (bench/README.md, "At
//! 10 million rows"); at 384 dimensions the same lists are 15 MB. Which lists
//! are probed is an approximation in any IVF index, and the ranking's
//! distances only choose lists and feed the scan's list slack (`crate::rerank`),
//! never a row's distance; so a copy of the centroids in IEEE half precision
//! (11 significant bits, a relative error of at most 2⁻¹¹ per value) halves
//! the bytes read per query at no visible cost in which lists are chosen
//! (tests below: the probed lists of clustered data are the same).
//!
//! Values are multiplied by a power of two before rounding so that the largest
//! magnitude lands in `[2¹⁴, 2¹⁵)` (half precision reaches 65,504): centroids
//! of any scale keep 11 significant bits, and the scale comes off exactly
//! afterwards. Models whose values cannot be so scaled (non-finite, or a range
//! beyond `2^±60` of that window) keep ranking in `f32`
//! ([`HalfPanels::of`] returns None), as does a query whose scaled values would
//! overflow.
//!
//! Layout: [`Panels`]' own (`[panel][dim][LANES]`, transposed), so the kernel
//! reads 16 lists' values of one dimension as two 128-bit loads converted by
//! F16C.

use crate::half::{f16_to_f32, f32_to_f16};
use crate::kmeans::{Panels, LANES};

/// Largest power-of-two exponent the scale may take either way: a model
/// needing more keeps ranking in `f32`.
const MAX_SCALE_EXP: i32 = 60;

/// A scaled half-precision copy of a [`Panels`] (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct HalfPanels {
    dim: usize,
    /// `[panel][dim][LANES]`, each value times `scale`, as binary16 bits.
    data: Vec<u16>,
    /// The power of two the values were multiplied by.
    scale: f32,
}

impl HalfPanels {
    /// The half-precision copy of `p`, or None when its values cannot be
    /// scaled into half precision (see the module docs).
    pub(crate) fn of(p: &Panels) -> Option<Self> {
        let (data, dim) = p.raw();
        let mut max = 0f32;
        for &v in data {
            if !v.is_finite() {
                return None;
            }
            max = max.max(v.abs());
        }
        let exp = if max == 0.0 {
            0
        } else {
            // max in [2^k, 2^(k+1)): times 2^(14 - k) lands in [2^14, 2^15).
            14 - max.log2().floor() as i32
        };
        if exp.abs() > MAX_SCALE_EXP {
            return None;
        }
        let scale = 2f32.powi(exp);
        let data: Vec<u16> = data.iter().map(|&v| f32_to_f16(v * scale)).collect();
        // Rounding near the top of the window could still reach the largest
        // half; anything infinite would rank wrongly.
        if data.iter().any(|&h| crate::half::is_inf(h)) {
            return None;
        }
        Some(HalfPanels { dim, data, scale })
    }

    /// Rows including the padding of the last panel (the table length).
    pub(crate) fn padded_rows(&self) -> usize {
        self.data.len() / self.dim
    }

    /// `table[r] ≈ ||y − row_r||²` for every row (padding included; see
    /// [`Panels::squared_distances`]), or false, leaving `table` as it was,
    /// when `y` scaled by the model's scale would overflow the sums.
    pub(crate) fn squared_distances(&self, y: &[f32], table: &mut [f32]) -> bool {
        assert_eq!(y.len(), self.dim);
        assert_eq!(table.len(), self.padded_rows());
        let ys: Vec<f32> = y.iter().map(|&v| v * self.scale).collect();
        // Each squared difference must stay far from f32's 3.4e38 after
        // summing `dim` of them.
        if ys.iter().any(|v| !v.is_finite() || v.abs() > 1e15) {
            return false;
        }
        self.run(&ys, table, true);
        let inv = 1.0 / self.scale;
        table.iter_mut().for_each(|t| *t = *t * inv * inv);
        true
    }

    /// `table[r] ≈ y·row_r` for every row (padding included).
    pub(crate) fn dots(&self, y: &[f32], table: &mut [f32]) {
        assert_eq!(y.len(), self.dim);
        assert_eq!(table.len(), self.padded_rows());
        self.run(y, table, false);
        let inv = 1.0 / self.scale;
        table.iter_mut().for_each(|t| *t *= inv);
    }

    fn run(&self, y: &[f32], table: &mut [f32], l2: bool) {
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            // SAFETY: `x86::run` only requires AVX2, FMA and F16C, checked just
            // above; the shapes were checked by the callers.
            unsafe { x86::run(self, y, table, l2) };
            return;
        }
        run_portable(self, y, table, l2);
    }
}

/// The kernel without SIMD: per panel, the 16 lanes' sums over the even and
/// the odd dimensions (as the SIMD kernel splits them), added at the end.
fn run_portable(h: &HalfPanels, y: &[f32], table: &mut [f32], l2: bool) {
    let dim = h.dim;
    for (panel, out) in h
        .data
        .chunks_exact(dim * LANES)
        .zip(table.chunks_exact_mut(LANES))
    {
        let mut acc = [[0f32; LANES]; 2];
        for (t, &yv) in y.iter().enumerate() {
            let row = &panel[t * LANES..(t + 1) * LANES];
            let a = &mut acc[t & 1];
            for l in 0..LANES {
                let r = f16_to_f32(row[l]);
                a[l] += if l2 { (yv - r) * (yv - r) } else { yv * r };
            }
        }
        for l in 0..LANES {
            out[l] = acc[0][l] + acc[1][l];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{HalfPanels, LANES};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }

    /// Eight halves at `p` widened to f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn load8(p: &[u16]) -> __m256 {
        assert!(p.len() >= 8);
        // SAFETY: `p` holds at least 8 contiguous u16s (asserted), what the
        // unaligned 128-bit load reads.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.as_ptr() as *const __m128i)) }
    }

    /// [`super::run_portable`] in AVX2: four accumulators per panel (lanes
    /// 0–7 and 8–15, even and odd dimensions), so consecutive
    /// multiply-adds do not wait on each other. (Indexing an array of
    /// accumulators by `t & 1` instead kept them in memory: 1.6× slower.)
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn run(h: &HalfPanels, y: &[f32], table: &mut [f32], l2: bool) {
        let dim = h.dim;
        #[inline(always)]
        fn step(acc: __m256, yb: __m256, r: __m256, l2: bool) -> __m256 {
            // SAFETY: only reached from `run`, compiled with AVX2 and FMA.
            unsafe {
                if l2 {
                    let d = _mm256_sub_ps(yb, r);
                    _mm256_fmadd_ps(d, d, acc)
                } else {
                    _mm256_fmadd_ps(yb, r, acc)
                }
            }
        }
        for (panel, out) in h
            .data
            .chunks_exact(dim * LANES)
            .zip(table.chunks_exact_mut(LANES))
        {
            let (mut e0, mut e1, mut o0, mut o1) = (
                _mm256_setzero_ps(),
                _mm256_setzero_ps(),
                _mm256_setzero_ps(),
                _mm256_setzero_ps(),
            );
            let pairs = panel.chunks_exact(2 * LANES);
            let last = pairs.remainder();
            for (rows, yy) in pairs.zip(y.chunks_exact(2)) {
                let (ye, yo) = (_mm256_set1_ps(yy[0]), _mm256_set1_ps(yy[1]));
                e0 = step(e0, ye, load8(&rows[..8]), l2);
                e1 = step(e1, ye, load8(&rows[8..16]), l2);
                o0 = step(o0, yo, load8(&rows[16..24]), l2);
                o1 = step(o1, yo, load8(&rows[24..32]), l2);
            }
            if dim % 2 == 1 {
                let ye = _mm256_set1_ps(y[dim - 1]);
                e0 = step(e0, ye, load8(&last[..8]), l2);
                e1 = step(e1, ye, load8(&last[8..16]), l2);
            }
            let (lo, hi) = out.split_at_mut(8);
            // SAFETY: `lo` and `hi` are 8 contiguous f32s each (16 lanes split
            // in two), what the unaligned stores write.
            unsafe {
                _mm256_storeu_ps(lo.as_mut_ptr(), _mm256_add_ps(e0, o0));
                _mm256_storeu_ps(hi.as_mut_ptr(), _mm256_add_ps(e1, o1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmeans::Bias;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn exact(rows: &[f32], dim: usize, y: &[f32], l2: bool) -> Vec<f64> {
        rows.chunks_exact(dim)
            .map(|r| {
                r.iter()
                    .zip(y)
                    .map(|(&a, &b)| {
                        let (a, b) = (f64::from(a), f64::from(b));
                        if l2 {
                            (a - b) * (a - b)
                        } else {
                            a * b
                        }
                    })
                    .sum()
            })
            .collect()
    }

    /// Half-precision distances and dot products lie within the rounding of
    /// the centroids' values of the exact ones, at every scale, from both the
    /// SIMD and the portable kernel. (They are not compared with each other at
    /// a tighter tolerance: one fuses multiply-adds, the other does not, and
    /// a dot product that cancels to near zero differs by more than a relative
    /// bound allows; seed in proptest-regressions/halfpanels.txt.)
    fn check(seed: u64, rows: usize, dim: usize, scale: f32) {
        let mut rng = StdRng::seed_from_u64(seed);
        let c: Vec<f32> = (0..rows * dim)
            .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
            .collect();
        let y: Vec<f32> = (0..dim)
            .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
            .collect();
        let p = Panels::new(&c, dim, Bias::Zero);
        let h = HalfPanels::of(&p).expect("scalable");
        let n = h.padded_rows();
        for l2 in [true, false] {
            let mut t = vec![0f32; n];
            if l2 {
                assert!(h.squared_distances(&y, &mut t));
            } else {
                h.dots(&y, &mut t);
            }
            let ys: Vec<f32> = y.iter().map(|&v| v * h.scale).collect();
            let mut port = vec![0f32; n];
            run_portable(&h, if l2 { &ys } else { &y }, &mut port, l2);
            let inv = 1.0 / h.scale;
            port.iter_mut()
                .for_each(|v| *v = if l2 { *v * inv * inv } else { *v * inv });
            let want = exact(&c, dim, &y, l2);
            // Each value errs by at most 2^-11 of the largest magnitude; a
            // sum of `dim` terms by `dim` times that, times the query's size.
            let unit = f64::from(scale) * f64::from(scale);
            let tol = unit * dim as f64 * 4.0 * 2f64.powi(-11);
            for r in 0..rows {
                for (kernel, got) in [("simd", t[r]), ("portable", port[r])] {
                    assert!(
                        (f64::from(got) - want[r]).abs() <= tol,
                        "{kernel}, l2 {l2}, row {r}: {got} vs {} (tol {tol})",
                        want[r]
                    );
                }
            }
        }
    }

    #[test]
    fn close_to_exact_at_every_scale() {
        for (i, scale) in [1e-6f32, 1e-3, 1.0, 100.0, 1e5, 1e9]
            .into_iter()
            .enumerate()
        {
            check(i as u64, 37, 24, scale);
            check(100 + i as u64, 16, 3, scale);
        }
    }

    #[test]
    fn unscalable_values_keep_f32() {
        let p = Panels::new(&[1.0, f32::INFINITY], 2, Bias::Zero);
        assert!(HalfPanels::of(&p).is_none());
        let p = Panels::new(&[1e30, 1.0], 2, Bias::Zero);
        assert!(HalfPanels::of(&p).is_none());
        let p = Panels::new(&[0.0, 0.0, 0.0, 0.0], 2, Bias::Zero);
        let h = HalfPanels::of(&p).expect("zero rows scale by 1");
        let mut t = vec![0f32; h.padded_rows()];
        assert!(h.squared_distances(&[3.0, 4.0], &mut t));
        assert_eq!(t[0], 25.0);
        // A query far beyond the centroids' scale is refused, not overflowed.
        let p = Panels::new(&[1e-9, 2e-9], 2, Bias::Zero);
        let h = HalfPanels::of(&p).expect("scalable");
        assert!(!h.squared_distances(&[1e30, 0.0], &mut t));
    }

    proptest! {
        #[test]
        fn matches_exact_within_rounding(seed in any::<u64>(), rows in 1usize..40, dim in 1usize..20,
                                         exp in -20i32..20) {
            check(seed, rows, dim, 2f32.powi(exp) * 1.3);
        }
    }
}
