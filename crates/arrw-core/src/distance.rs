//! Distance kernels with runtime SIMD dispatch.
//!
//! Every distance arrw computes (SQL operators, k-means assignment, IVF list
//! scans, PQ training) ends in one of these loops, so they are written with
//! explicit AVX-512F and AVX2+FMA intrinsics instead of relying on the
//! auto-vectorizer: a float reduction cannot be vectorized without
//! reassociation, which the compiler will not do on its own, so the plain loop
//! runs one element per add latency.
//!
//! The instruction set is chosen once per process, at first use, from what the
//! CPU reports (see [`Isa`]); the choice is cached in a [`OnceLock`] of
//! function pointers, so a call costs one load and one indirect call on top of
//! the kernel itself. Builds for other architectures use the scalar code.
//!
//! Accuracy: the SIMD kernels accumulate in `f32` like pgvector, but in 16 to
//! 64 independent partial sums, so their results differ from the sequential
//! [`scalar`] reference in the last bits (usually they are closer to the exact
//! value). [`norm_squared_f64`] accumulates in `f64`, as pgvector's
//! `vector_norm` does.
//!
//! All `unsafe` code of arrw-core lives in this module.

#![deny(unsafe_op_in_unsafe_fn)]

use std::sync::OnceLock;

/// Vectors shorter than this are summed by the sequential [`scalar`] loops.
/// pgvector's loops are vectorized by the compiler (`-fassociative-math`) in
/// lanes of 8 or more, so below 8 elements they are plain sequential sums;
/// ours then give the same bits (pgvector's own examples, and clients that
/// compare small vectors' distances, see the same numbers). From 8 elements
/// on, both sum in lanes, and the last bits depend on the lane width pgvector
/// was compiled for: docs/pgvector.md says so.
pub const SCALAR_BELOW: usize = 8;

/// Squared Euclidean distance, `sum((a[i] - b[i])^2)`, accumulated in `f32`
/// (as pgvector does).
///
/// # Panics
/// If the slices differ in length.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    if a.len() < SCALAR_BELOW {
        return scalar::l2_squared(a, b);
    }
    (Kernels::best().l2_squared)(a, b)
}

/// Inner product, `sum(a[i] * b[i])`, accumulated in `f32`.
///
/// # Panics
/// If the slices differ in length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    if a.len() < SCALAR_BELOW {
        return scalar::dot(a, b);
    }
    (Kernels::best().dot)(a, b)
}

/// L1 (taxicab) distance, `sum(|a[i] - b[i]|)`, accumulated in `f32`.
///
/// # Panics
/// If the slices differ in length.
#[inline]
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    if a.len() < SCALAR_BELOW {
        return scalar::l1(a, b);
    }
    (Kernels::best().l1)(a, b)
}

/// `(a·b, a·a, b·b)` computed in a single pass over both vectors, which is
/// what cosine distance needs; one pass instead of three matters once the
/// vectors come from memory rather than cache.
///
/// # Panics
/// If the slices differ in length.
#[inline]
pub fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    if a.len() < SCALAR_BELOW {
        return scalar::cosine_parts(a, b);
    }
    (Kernels::best().cosine_parts)(a, b)
}

/// Cosine distance from the one-pass sums of [`cosine_parts`], in `f64` with
/// pgvector's clamping; NaN when either vector is zero (0/0), exactly as
/// pgvector returns. The one formula of the SQL operators and of ivfpq's
/// exact distances (`ivf::ExactParts`).
pub fn cosine_from_parts(ab: f32, aa: f32, bb: f32) -> f64 {
    let sim = f64::from(ab) / (f64::from(aa) * f64::from(bb)).sqrt();
    1.0 - sim.clamp(-1.0, 1.0)
}

/// `sum(a[i]^2)` accumulated in `f64`. pgvector's `vector_norm` works in
/// double precision so that norms of long vectors with large elements neither
/// overflow `f32` nor lose digits; each product of two `f32` is exact in
/// `f64`, so only the summation order differs from pgvector.
#[inline]
pub fn norm_squared_f64(a: &[f32]) -> f64 {
    if a.len() < SCALAR_BELOW {
        return scalar::norm_squared_f64(a);
    }
    (Kernels::best().norm_squared_f64)(a)
}

/// Reference implementations: straightforward sequential loops with the same
/// accumulation order as pgvector's C code. They are the fallback on CPUs
/// without AVX2 and the yardstick the SIMD kernels are tested against.
pub mod scalar {
    /// See [`super::l2_squared`].
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "vector lengths differ");
        let mut sum = 0.0f32;
        for (x, y) in a.iter().zip(b) {
            let d = x - y;
            sum += d * d;
        }
        sum
    }

    /// See [`super::dot`].
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "vector lengths differ");
        let mut sum = 0.0f32;
        for (x, y) in a.iter().zip(b) {
            sum += x * y;
        }
        sum
    }

    /// See [`super::l1`].
    pub fn l1(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "vector lengths differ");
        let mut sum = 0.0f32;
        for (x, y) in a.iter().zip(b) {
            sum += (x - y).abs();
        }
        sum
    }

    /// See [`super::cosine_parts`].
    pub fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        assert_eq!(a.len(), b.len(), "vector lengths differ");
        let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
        for (x, y) in a.iter().zip(b) {
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        (ab, aa, bb)
    }

    /// See [`super::norm_squared_f64`].
    pub fn norm_squared_f64(a: &[f32]) -> f64 {
        let mut sum = 0.0f64;
        for &x in a {
            sum += f64::from(x) * f64::from(x);
        }
        sum
    }
}

/// An instruction-set level the kernels exist for, in increasing order of
/// preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable code, any CPU.
    Scalar,
    /// x86-64 with AVX2 and FMA (Haswell, Zen 1 and later).
    Avx2Fma,
    /// x86-64 with AVX-512F (plus the AVX2 and FMA every such CPU has).
    Avx512F,
}

impl Isa {
    /// Every level, whether or not this CPU supports it.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512F];

    /// A short display name.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Avx512F => "avx512f",
        }
    }

    /// Whether this CPU (and OS, which must save the wider registers) can run
    /// the kernels of this level.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512F => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best level this CPU supports.
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.is_supported())
            .unwrap_or(Isa::Scalar)
    }
}

/// One set of kernels for a single instruction-set level, as plain function
/// pointers. Each pointer is safe to call: it checks slice lengths itself and
/// can only be obtained for a level the CPU supports.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub isa: Isa,
    pub l2_squared: PairKernel,
    pub dot: PairKernel,
    pub l1: PairKernel,
    pub cosine_parts: CosineKernel,
    pub norm_squared_f64: NormKernel,
}

/// A kernel over two equal-length vectors returning one `f32`.
pub type PairKernel = fn(&[f32], &[f32]) -> f32;
/// The signature of [`cosine_parts`].
pub type CosineKernel = fn(&[f32], &[f32]) -> (f32, f32, f32);
/// The signature of [`norm_squared_f64`].
pub type NormKernel = fn(&[f32]) -> f64;

impl Kernels {
    /// The kernels of `isa`, or `None` if this CPU cannot run them. Used by
    /// tests and benchmarks to exercise every level; normal code calls the
    /// module's free functions.
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        if !isa.is_supported() {
            return None;
        }
        Some(match isa {
            Isa::Scalar => Kernels {
                isa,
                l2_squared: scalar::l2_squared,
                dot: scalar::dot,
                l1: scalar::l1,
                cosine_parts: scalar::cosine_parts,
                norm_squared_f64: scalar::norm_squared_f64,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => Kernels {
                isa,
                l2_squared: x86::avx2_entry::l2_squared,
                dot: x86::avx2_entry::dot,
                l1: x86::avx2_entry::l1,
                cosine_parts: x86::avx2_entry::cosine_parts,
                norm_squared_f64: x86::avx2_entry::norm_squared_f64,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512F => Kernels {
                isa,
                l2_squared: x86::avx512_entry::l2_squared,
                dot: x86::avx512_entry::dot,
                l1: x86::avx512_entry::l1,
                cosine_parts: x86::avx512_entry::cosine_parts,
                norm_squared_f64: x86::avx512_entry::norm_squared_f64,
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the scalar level is supported off x86-64"),
        })
    }

    /// The kernels of the best supported level, detected on first call.
    #[inline]
    pub fn best() -> &'static Kernels {
        static BEST: OnceLock<Kernels> = OnceLock::new();
        BEST.get_or_init(|| Kernels::for_isa(Isa::detect()).expect("detected level is supported"))
    }
}

/// The instruction-set level the free functions of this module use.
pub fn active_isa() -> Isa {
    Kernels::best().isa
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86-64 kernels. Each `#[target_feature]` function may only run on
    //! a CPU with those features and requires `a.len() == b.len()`; the
    //! `*_entry` wrappers establish both and are the only callers.

    use std::arch::x86_64::*;

    /// Safe entry points for the AVX2+FMA kernels.
    pub(super) mod avx2_entry {
        // These functions are private to the distance module and reachable
        // only through `Kernels::for_isa(Isa::Avx2Fma)`, which returns them
        // only after `Isa::Avx2Fma.is_supported()` confirmed AVX2 and FMA at
        // run time. That is what every SAFETY comment below relies on.

        pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
            assert_eq!(a.len(), b.len(), "vector lengths differ");
            // SAFETY: AVX2 and FMA are present (see above) and lengths match.
            unsafe { super::avx2::l2_squared(a, b) }
        }

        pub fn dot(a: &[f32], b: &[f32]) -> f32 {
            assert_eq!(a.len(), b.len(), "vector lengths differ");
            // SAFETY: AVX2 and FMA are present (see above) and lengths match.
            unsafe { super::avx2::dot(a, b) }
        }

        pub fn l1(a: &[f32], b: &[f32]) -> f32 {
            assert_eq!(a.len(), b.len(), "vector lengths differ");
            // SAFETY: AVX2 and FMA are present (see above) and lengths match.
            unsafe { super::avx2::l1(a, b) }
        }

        pub fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
            assert_eq!(a.len(), b.len(), "vector lengths differ");
            // SAFETY: AVX2 and FMA are present (see above) and lengths match.
            unsafe { super::avx2::cosine_parts(a, b) }
        }

        pub fn norm_squared_f64(a: &[f32]) -> f64 {
            // SAFETY: AVX2 and FMA are present (see above).
            unsafe { super::avx2::norm_squared_f64(a) }
        }
    }

    /// Safe entry points for the AVX-512F kernels.
    pub(super) mod avx512_entry {
        // As for `avx2_entry`: reachable only through
        // `Kernels::for_isa(Isa::Avx512F)`, which checks AVX-512F, AVX2 and
        // FMA at run time first.

        pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
            assert_eq!(a.len(), b.len(), "vector lengths differ");
            // SAFETY: AVX-512F, AVX2 and FMA are present (see above) and
            // lengths match.
            unsafe { super::avx512::l2_squared(a, b) }
        }

        pub fn dot(a: &[f32], b: &[f32]) -> f32 {
            assert_eq!(a.len(), b.len(), "vector lengths differ");
            // SAFETY: AVX-512F, AVX2 and FMA are present (see above) and
            // lengths match.
            unsafe { super::avx512::dot(a, b) }
        }

        pub fn l1(a: &[f32], b: &[f32]) -> f32 {
            assert_eq!(a.len(), b.len(), "vector lengths differ");
            // SAFETY: AVX-512F, AVX2 and FMA are present (see above) and
            // lengths match.
            unsafe { super::avx512::l1(a, b) }
        }

        pub fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
            assert_eq!(a.len(), b.len(), "vector lengths differ");
            // SAFETY: AVX-512F, AVX2 and FMA are present (see above) and
            // lengths match.
            unsafe { super::avx512::cosine_parts(a, b) }
        }

        pub fn norm_squared_f64(a: &[f32]) -> f64 {
            // SAFETY: AVX-512F, AVX2 and FMA are present (see above).
            unsafe { super::avx512::norm_squared_f64(a) }
        }
    }

    /// AVX2+FMA kernels: 8 lanes per register, four registers of partial sums
    /// in the main loop (enough independent FMA chains to cover FMA latency
    /// on current cores), then one register at a time, then a scalar tail of
    /// fewer than 8 elements.
    mod avx2 {
        use super::*;

        /// Sum of the 8 lanes.
        #[target_feature(enable = "avx2,fma")]
        fn hsum(v: __m256) -> f32 {
            let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            let one = _mm_add_ss(pair, _mm_movehdup_ps(pair));
            _mm_cvtss_f32(one)
        }

        /// Sum of the 4 lanes.
        #[target_feature(enable = "avx2,fma")]
        fn hsum_pd(v: __m256d) -> f64 {
            let pair = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
            let one = _mm_add_sd(pair, _mm_unpackhi_pd(pair, pair));
            _mm_cvtsd_f64(one)
        }

        /// # Safety
        /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 8u + 8 <= i + 32 <= n = a.len() = b.len(),
                    // so both 8-float loads are in bounds; loadu needs no
                    // alignment.
                    let (x, y) = unsafe {
                        (
                            _mm256_loadu_ps(pa.add(i + 8 * u)),
                            _mm256_loadu_ps(pb.add(i + 8 * u)),
                        )
                    };
                    let d = _mm256_sub_ps(x, y);
                    *acc = _mm256_fmadd_ps(d, d, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: i + 8 <= n = a.len() = b.len().
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
                let d = _mm256_sub_ps(x, y);
                acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
                i += 8;
            }
            let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut sum = hsum(total);
            for (x, y) in a[i..].iter().zip(&b[i..]) {
                let d = x - y;
                sum += d * d;
            }
            sum
        }

        /// # Safety
        /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 8u + 8 <= i + 32 <= n = a.len() = b.len().
                    let (x, y) = unsafe {
                        (
                            _mm256_loadu_ps(pa.add(i + 8 * u)),
                            _mm256_loadu_ps(pb.add(i + 8 * u)),
                        )
                    };
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: i + 8 <= n = a.len() = b.len().
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
                acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
                i += 8;
            }
            let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut sum = hsum(total);
            for (x, y) in a[i..].iter().zip(&b[i..]) {
                sum += x * y;
            }
            sum
        }

        /// # Safety
        /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn l1(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            // |x| is x with the sign bit cleared.
            let sign = _mm256_set1_ps(-0.0);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 8u + 8 <= i + 32 <= n = a.len() = b.len().
                    let (x, y) = unsafe {
                        (
                            _mm256_loadu_ps(pa.add(i + 8 * u)),
                            _mm256_loadu_ps(pb.add(i + 8 * u)),
                        )
                    };
                    *acc = _mm256_add_ps(*acc, _mm256_andnot_ps(sign, _mm256_sub_ps(x, y)));
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: i + 8 <= n = a.len() = b.len().
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
                acc[0] = _mm256_add_ps(acc[0], _mm256_andnot_ps(sign, _mm256_sub_ps(x, y)));
                i += 8;
            }
            let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut sum = hsum(total);
            for (x, y) in a[i..].iter().zip(&b[i..]) {
                sum += (x - y).abs();
            }
            sum
        }

        /// Two registers per sum (six chains) keep the FMA units busy while
        /// leaving registers for the loads.
        ///
        /// # Safety
        /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut ab = [_mm256_setzero_ps(); 2];
            let mut aa = [_mm256_setzero_ps(); 2];
            let mut bb = [_mm256_setzero_ps(); 2];
            let mut i = 0;
            while i + 16 <= n {
                for u in 0..2 {
                    // SAFETY: i + 8u + 8 <= i + 16 <= n = a.len() = b.len().
                    let (x, y) = unsafe {
                        (
                            _mm256_loadu_ps(pa.add(i + 8 * u)),
                            _mm256_loadu_ps(pb.add(i + 8 * u)),
                        )
                    };
                    ab[u] = _mm256_fmadd_ps(x, y, ab[u]);
                    aa[u] = _mm256_fmadd_ps(x, x, aa[u]);
                    bb[u] = _mm256_fmadd_ps(y, y, bb[u]);
                }
                i += 16;
            }
            if i + 8 <= n {
                // SAFETY: i + 8 <= n = a.len() = b.len().
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
                ab[0] = _mm256_fmadd_ps(x, y, ab[0]);
                aa[0] = _mm256_fmadd_ps(x, x, aa[0]);
                bb[0] = _mm256_fmadd_ps(y, y, bb[0]);
                i += 8;
            }
            let mut s_ab = hsum(_mm256_add_ps(ab[0], ab[1]));
            let mut s_aa = hsum(_mm256_add_ps(aa[0], aa[1]));
            let mut s_bb = hsum(_mm256_add_ps(bb[0], bb[1]));
            for (x, y) in a[i..].iter().zip(&b[i..]) {
                s_ab += x * y;
                s_aa += x * x;
                s_bb += y * y;
            }
            (s_ab, s_aa, s_bb)
        }

        /// Widens 4 floats at a time to doubles; four accumulators.
        ///
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn norm_squared_f64(a: &[f32]) -> f64 {
            let n = a.len();
            let pa = a.as_ptr();
            let mut acc = [_mm256_setzero_pd(); 4];
            let mut i = 0;
            while i + 16 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 4u + 4 <= i + 16 <= n = a.len().
                    let x = _mm256_cvtps_pd(unsafe { _mm_loadu_ps(pa.add(i + 4 * u)) });
                    *acc = _mm256_fmadd_pd(x, x, *acc);
                }
                i += 16;
            }
            let total = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
            let mut sum = hsum_pd(total);
            for &x in &a[i..] {
                sum += f64::from(x) * f64::from(x);
            }
            sum
        }
    }

    /// AVX-512F kernels: 16 lanes per register, four registers of partial
    /// sums in the main loop, then one register at a time, then a single
    /// masked load for the last 1..=15 elements (masked-off lanes are never
    /// read, so this cannot fault past the end of the slice).
    mod avx512 {
        use super::*;

        /// Mask selecting the first `rem` lanes, `1 <= rem < 16`.
        #[inline(always)]
        fn tail_mask(rem: usize) -> __mmask16 {
            debug_assert!((1..16).contains(&rem));
            ((1u32 << rem) - 1) as __mmask16
        }

        /// # Safety
        /// The CPU must support AVX-512F, AVX2 and FMA, and
        /// `a.len() == b.len()`.
        #[target_feature(enable = "avx512f,avx2,fma")]
        pub(super) unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i + 64 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 16u + 16 <= i + 64 <= n = a.len() = b.len(),
                    // so both 16-float loads are in bounds; loadu needs no
                    // alignment.
                    let (x, y) = unsafe {
                        (
                            _mm512_loadu_ps(pa.add(i + 16 * u)),
                            _mm512_loadu_ps(pb.add(i + 16 * u)),
                        )
                    };
                    let d = _mm512_sub_ps(x, y);
                    *acc = _mm512_fmadd_ps(d, d, *acc);
                }
                i += 64;
            }
            while i + 16 <= n {
                // SAFETY: i + 16 <= n = a.len() = b.len().
                let (x, y) = unsafe { (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
                let d = _mm512_sub_ps(x, y);
                acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
                i += 16;
            }
            if i < n {
                let k = tail_mask(n - i);
                // SAFETY: only the first n - i lanes are read (the rest are
                // masked off and zeroed without touching memory), and
                // i + (n - i) = n = a.len() = b.len().
                let (x, y) = unsafe {
                    (
                        _mm512_maskz_loadu_ps(k, pa.add(i)),
                        _mm512_maskz_loadu_ps(k, pb.add(i)),
                    )
                };
                let d = _mm512_sub_ps(x, y);
                acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
            }
            let total = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            _mm512_reduce_add_ps(total)
        }

        /// # Safety
        /// The CPU must support AVX-512F, AVX2 and FMA, and
        /// `a.len() == b.len()`.
        #[target_feature(enable = "avx512f,avx2,fma")]
        pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i + 64 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 16u + 16 <= i + 64 <= n = a.len() = b.len().
                    let (x, y) = unsafe {
                        (
                            _mm512_loadu_ps(pa.add(i + 16 * u)),
                            _mm512_loadu_ps(pb.add(i + 16 * u)),
                        )
                    };
                    *acc = _mm512_fmadd_ps(x, y, *acc);
                }
                i += 64;
            }
            while i + 16 <= n {
                // SAFETY: i + 16 <= n = a.len() = b.len().
                let (x, y) = unsafe { (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
                acc[0] = _mm512_fmadd_ps(x, y, acc[0]);
                i += 16;
            }
            if i < n {
                let k = tail_mask(n - i);
                // SAFETY: only lanes below n - i are read; i + (n - i) = n =
                // a.len() = b.len().
                let (x, y) = unsafe {
                    (
                        _mm512_maskz_loadu_ps(k, pa.add(i)),
                        _mm512_maskz_loadu_ps(k, pb.add(i)),
                    )
                };
                acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
            }
            let total = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            _mm512_reduce_add_ps(total)
        }

        /// # Safety
        /// The CPU must support AVX-512F, AVX2 and FMA, and
        /// `a.len() == b.len()`.
        #[target_feature(enable = "avx512f,avx2,fma")]
        pub(super) unsafe fn l1(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i + 64 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 16u + 16 <= i + 64 <= n = a.len() = b.len().
                    let (x, y) = unsafe {
                        (
                            _mm512_loadu_ps(pa.add(i + 16 * u)),
                            _mm512_loadu_ps(pb.add(i + 16 * u)),
                        )
                    };
                    *acc = _mm512_add_ps(*acc, _mm512_abs_ps(_mm512_sub_ps(x, y)));
                }
                i += 64;
            }
            while i + 16 <= n {
                // SAFETY: i + 16 <= n = a.len() = b.len().
                let (x, y) = unsafe { (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
                acc[0] = _mm512_add_ps(acc[0], _mm512_abs_ps(_mm512_sub_ps(x, y)));
                i += 16;
            }
            if i < n {
                let k = tail_mask(n - i);
                // SAFETY: only lanes below n - i are read; i + (n - i) = n =
                // a.len() = b.len().
                let (x, y) = unsafe {
                    (
                        _mm512_maskz_loadu_ps(k, pa.add(i)),
                        _mm512_maskz_loadu_ps(k, pb.add(i)),
                    )
                };
                acc[1] = _mm512_add_ps(acc[1], _mm512_abs_ps(_mm512_sub_ps(x, y)));
            }
            let total = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            _mm512_reduce_add_ps(total)
        }

        /// Two registers per sum, six FMA chains in flight.
        ///
        /// # Safety
        /// The CPU must support AVX-512F, AVX2 and FMA, and
        /// `a.len() == b.len()`.
        #[target_feature(enable = "avx512f,avx2,fma")]
        pub(super) unsafe fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut ab = [_mm512_setzero_ps(); 2];
            let mut aa = [_mm512_setzero_ps(); 2];
            let mut bb = [_mm512_setzero_ps(); 2];
            let mut i = 0;
            while i + 32 <= n {
                for u in 0..2 {
                    // SAFETY: i + 16u + 16 <= i + 32 <= n = a.len() = b.len().
                    let (x, y) = unsafe {
                        (
                            _mm512_loadu_ps(pa.add(i + 16 * u)),
                            _mm512_loadu_ps(pb.add(i + 16 * u)),
                        )
                    };
                    ab[u] = _mm512_fmadd_ps(x, y, ab[u]);
                    aa[u] = _mm512_fmadd_ps(x, x, aa[u]);
                    bb[u] = _mm512_fmadd_ps(y, y, bb[u]);
                }
                i += 32;
            }
            while i < n {
                // One full or masked register; at most two iterations.
                let k = if n - i >= 16 { !0 } else { tail_mask(n - i) };
                // SAFETY: lanes at or past n - i are masked off and not read;
                // the rest lie below n = a.len() = b.len().
                let (x, y) = unsafe {
                    (
                        _mm512_maskz_loadu_ps(k, pa.add(i)),
                        _mm512_maskz_loadu_ps(k, pb.add(i)),
                    )
                };
                ab[0] = _mm512_fmadd_ps(x, y, ab[0]);
                aa[0] = _mm512_fmadd_ps(x, x, aa[0]);
                bb[0] = _mm512_fmadd_ps(y, y, bb[0]);
                i += 16;
            }
            (
                _mm512_reduce_add_ps(_mm512_add_ps(ab[0], ab[1])),
                _mm512_reduce_add_ps(_mm512_add_ps(aa[0], aa[1])),
                _mm512_reduce_add_ps(_mm512_add_ps(bb[0], bb[1])),
            )
        }

        /// Widens 8 floats at a time straight from memory (a 256-bit load
        /// feeding the conversion, rather than splitting a 512-bit register,
        /// which costs an extra shuffle per 16 elements); four accumulators.
        ///
        /// # Safety
        /// The CPU must support AVX-512F, AVX2 and FMA.
        #[target_feature(enable = "avx512f,avx2,fma")]
        pub(super) unsafe fn norm_squared_f64(a: &[f32]) -> f64 {
            let n = a.len();
            let pa = a.as_ptr();
            let mut acc = [_mm512_setzero_pd(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 8u + 8 <= i + 32 <= n = a.len().
                    let x = _mm512_cvtps_pd(unsafe { _mm256_loadu_ps(pa.add(i + 8 * u)) });
                    *acc = _mm512_fmadd_pd(x, x, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: i + 8 <= n = a.len().
                let x = _mm512_cvtps_pd(unsafe { _mm256_loadu_ps(pa.add(i)) });
                acc[0] = _mm512_fmadd_pd(x, x, acc[0]);
                i += 8;
            }
            if i < n {
                // Fewer than 8 left: a masked 16-lane load (the 256-bit
                // masked load would need AVX-512VL) whose low half holds them.
                let k = tail_mask(n - i);
                // SAFETY: only the first n - i lanes are read, and
                // i + (n - i) = n = a.len().
                let v = unsafe { _mm512_maskz_loadu_ps(k, pa.add(i)) };
                let x = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
                acc[1] = _mm512_fmadd_pd(x, x, acc[1]);
            }
            let total = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
            _mm512_reduce_add_pd(total)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Below [`SCALAR_BELOW`] elements every distance is the sequential sum,
    /// bit for bit, as pgvector's is there (its 3-d `<#>` of [0.1,0.2,0.3]
    /// and [0.4,0.5,0.6] is -0.3199999928474426; the AVX-512 kernel's masked
    /// tail gave -0.320000022649765).
    #[test]
    fn short_vectors_sum_sequentially() {
        let (a, b) = ([0.1f32, 0.2, 0.3], [0.4f32, 0.5, 0.6]);
        assert_eq!(dot(&a, &b), 0.32f32);
        let mut rng = StdRng::seed_from_u64(8);
        for n in 1..SCALAR_BELOW {
            for _ in 0..500 {
                let a = random_vec(&mut rng, n, 3.0);
                let b = random_vec(&mut rng, n, 3.0);
                assert_eq!(
                    l2_squared(&a, &b).to_bits(),
                    scalar::l2_squared(&a, &b).to_bits()
                );
                assert_eq!(dot(&a, &b).to_bits(), scalar::dot(&a, &b).to_bits());
                assert_eq!(l1(&a, &b).to_bits(), scalar::l1(&a, &b).to_bits());
                assert_eq!(cosine_parts(&a, &b), scalar::cosine_parts(&a, &b));
                assert_eq!(
                    norm_squared_f64(&a).to_bits(),
                    scalar::norm_squared_f64(&a).to_bits()
                );
            }
        }
    }

    fn supported() -> Vec<Kernels> {
        Isa::ALL.into_iter().filter_map(Kernels::for_isa).collect()
    }

    fn random_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
    }

    /// Checks `got` against the exactly computed `exact`: any summation
    /// order of n rounded f32 terms stays within about (n + 1) * 2^-24 of
    /// the sum of the terms' magnitudes, so that bound (with slack) is what
    /// a correct kernel must meet, whatever its lane layout.
    fn assert_close(what: &str, n: usize, got: f32, exact: f64, magnitude: f64) {
        let bound = (n as f64 + 2.0) * f64::from(f32::EPSILON) * magnitude + 1e-30;
        assert!(
            (f64::from(got) - exact).abs() <= bound,
            "{what} n={n}: got {got}, exact {exact}, bound {bound}"
        );
    }

    /// Compares one kernel set against exact values and the scalar reference.
    fn check_all(k: &Kernels, a: &[f32], b: &[f32]) {
        let n = a.len();
        let isa = k.isa.name();
        let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| f64::from(x - y)).collect();

        let l2_exact: f64 = diffs.iter().map(|d| d * d).sum();
        assert_close(
            &format!("{isa} l2"),
            n,
            (k.l2_squared)(a, b),
            l2_exact,
            l2_exact,
        );

        let l1_exact: f64 = diffs.iter().map(|d| d.abs()).sum();
        assert_close(&format!("{isa} l1"), n, (k.l1)(a, b), l1_exact, l1_exact);

        let dot_exact: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let dot_mag: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) * f64::from(*y)).abs())
            .sum();
        assert_close(&format!("{isa} dot"), n, (k.dot)(a, b), dot_exact, dot_mag);

        let aa_exact: f64 = a.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
        let bb_exact: f64 = b.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
        let (ab, aa, bb) = (k.cosine_parts)(a, b);
        assert_close(&format!("{isa} cos.ab"), n, ab, dot_exact, dot_mag);
        assert_close(&format!("{isa} cos.aa"), n, aa, aa_exact, aa_exact);
        assert_close(&format!("{isa} cos.bb"), n, bb, bb_exact, bb_exact);

        let norm = (k.norm_squared_f64)(a);
        let norm_bound = (n as f64 + 2.0) * f64::EPSILON * aa_exact;
        assert!(
            (norm - aa_exact).abs() <= norm_bound,
            "{isa} norm n={n}: {norm} vs {aa_exact}"
        );

        // Agreement with the reference, relative to the magnitude of the
        // terms. Both are within the bound above of the exact value.
        let rel = |x: f32, y: f32, mag: f64| f64::from((x - y).abs()) / mag.max(1e-30);
        let tol = 2.0 * (n as f64 + 2.0) * f64::from(f32::EPSILON);
        assert!(rel((k.l2_squared)(a, b), scalar::l2_squared(a, b), l2_exact) <= tol);
        assert!(rel((k.l1)(a, b), scalar::l1(a, b), l1_exact) <= tol);
        assert!(rel((k.dot)(a, b), scalar::dot(a, b), dot_mag) <= tol);
    }

    #[test]
    fn every_isa_matches_reference_for_lengths_1_to_300() {
        let mut rng = StdRng::seed_from_u64(0x5eed_d157);
        for k in supported() {
            for n in 0..=300 {
                let a = random_vec(&mut rng, n, 1.0);
                let b = random_vec(&mut rng, n, 1.0);
                check_all(&k, &a, &b);
            }
        }
    }

    #[test]
    fn every_isa_matches_reference_for_large_lengths() {
        let mut rng = StdRng::seed_from_u64(42);
        for k in supported() {
            for n in [511, 512, 513, 1536, 4099, 16000] {
                let a = random_vec(&mut rng, n, 100.0);
                let b = random_vec(&mut rng, n, 100.0);
                check_all(&k, &a, &b);
            }
        }
    }

    #[test]
    fn exact_small_cases() {
        for k in supported() {
            let a = [1.0f32, 2.0, 3.0];
            let b = [4.0f32, 6.0, 3.0];
            assert_eq!((k.l2_squared)(&a, &b), 25.0, "{:?}", k.isa);
            assert_eq!((k.dot)(&a, &b), 25.0, "{:?}", k.isa);
            assert_eq!((k.l1)(&a, &b), 7.0, "{:?}", k.isa);
            assert_eq!((k.cosine_parts)(&a, &b), (25.0, 14.0, 61.0), "{:?}", k.isa);
            assert_eq!((k.norm_squared_f64)(&a), 14.0, "{:?}", k.isa);
            assert_eq!((k.l2_squared)(&[], &[]), 0.0);
            assert_eq!((k.norm_squared_f64)(&[]), 0.0);
        }
    }

    #[test]
    fn norm_squared_does_not_overflow_f32() {
        let a = vec![3e30f32; 1000];
        for k in supported() {
            let got = (k.norm_squared_f64)(&a);
            let want = 1000.0 * f64::from(3e30f32) * f64::from(3e30f32);
            assert!((got - want).abs() <= want * 1e-12, "{:?}: {got}", k.isa);
        }
    }

    #[test]
    fn detection_picks_a_supported_level() {
        let isa = active_isa();
        assert!(isa.is_supported());
        assert_eq!(isa, Isa::detect());
        assert!(Kernels::for_isa(Isa::Scalar).is_some());
        // Free functions go through the detected kernels.
        let a = [1.0f32, -2.0];
        let b = [0.5f32, 4.0];
        assert_eq!(l2_squared(&a, &b), 36.25);
        assert_eq!(dot(&a, &b), -7.5);
        assert_eq!(l1(&a, &b), 6.5);
        assert_eq!(cosine_parts(&a, &b), (-7.5, 5.0, 16.25));
        assert_eq!(norm_squared_f64(&a), 5.0);
    }

    macro_rules! mismatch_panics {
        ($($name:ident: $kernel:ident),* $(,)?) => {$(
            #[test]
            #[should_panic(expected = "vector lengths differ")]
            fn $name() {
                let _ = $kernel(&[1.0, 2.0, 3.0], &[1.0, 2.0]);
            }
        )*};
    }
    mismatch_panics!(
        l2_mismatch_panics: l2_squared,
        dot_mismatch_panics: dot,
        l1_mismatch_panics: l1,
        cosine_mismatch_panics: cosine_parts,
    );

    #[test]
    fn mismatch_panics_at_every_level() {
        for k in supported() {
            let short = [1.0f32; 20];
            let long = [1.0f32; 21];
            for f in [k.l2_squared, k.dot, k.l1] {
                assert!(std::panic::catch_unwind(|| f(&long, &short)).is_err());
                assert!(std::panic::catch_unwind(|| f(&short, &long)).is_err());
            }
            assert!(std::panic::catch_unwind(|| (k.cosine_parts)(&long, &short)).is_err());
        }
    }

    fn pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (1usize..700).prop_flat_map(|n| {
            (
                prop::collection::vec(-1e3f32..1e3, n),
                prop::collection::vec(-1e3f32..1e3, n),
            )
        })
    }

    /// Every kernel gives the same bits with its arguments swapped (the
    /// cosine parts with `aa` and `bb` exchanged): an index scan computes
    /// `(query, row)` and the SQL operators `(row, query)`, and src/handed.rs
    /// hands one's sums to the other.
    #[test]
    fn kernels_are_symmetric_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(7);
        for k in supported() {
            for n in [1, 3, 8, 15, 16, 17, 31, 64, 100, 384, 768, 1536] {
                for scale in [1e-3f32, 1.0, 1e3] {
                    let a = random_vec(&mut rng, n, scale);
                    let b = random_vec(&mut rng, n, scale);
                    let isa = k.isa.name();
                    assert_eq!(
                        (k.l2_squared)(&a, &b).to_bits(),
                        (k.l2_squared)(&b, &a).to_bits(),
                        "{isa} l2 n={n}"
                    );
                    assert_eq!(
                        (k.dot)(&a, &b).to_bits(),
                        (k.dot)(&b, &a).to_bits(),
                        "{isa} dot n={n}"
                    );
                    let (ab, aa, bb) = (k.cosine_parts)(&a, &b);
                    let (ba, bb2, aa2) = (k.cosine_parts)(&b, &a);
                    assert_eq!(
                        (ab.to_bits(), aa.to_bits(), bb.to_bits()),
                        (ba.to_bits(), aa2.to_bits(), bb2.to_bits()),
                        "{isa} cosine n={n}"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn prop_simd_matches_reference((a, b) in pair()) {
            for k in supported() {
                check_all(&k, &a, &b);
            }
        }

        #[test]
        fn prop_symmetry_and_identity((a, b) in pair()) {
            for k in supported() {
                prop_assert_eq!((k.l2_squared)(&a, &b), (k.l2_squared)(&b, &a));
                prop_assert_eq!((k.l1)(&a, &b), (k.l1)(&b, &a));
                prop_assert_eq!((k.dot)(&a, &b), (k.dot)(&b, &a));
                prop_assert_eq!((k.l2_squared)(&a, &a), 0.0);
                prop_assert_eq!((k.l1)(&a, &a), 0.0);
                let (ab, aa, bb) = (k.cosine_parts)(&a, &b);
                prop_assert!(aa >= 0.0 && bb >= 0.0);
                prop_assert!(ab.is_finite());
            }
        }
    }
}
