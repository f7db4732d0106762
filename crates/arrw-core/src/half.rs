//! `halfvec`: IEEE 754 half precision (binary16) and the text and binary
//! formats of pgvector's `halfvec`, byte-compatible with pgvector 0.8.
//!
//! A half is kept as its bit pattern (`u16`); arithmetic happens in `f32`, to
//! which every half converts exactly. The conversion `f32 -> half` rounds to
//! nearest, ties to even (what pgvector's F16C `_cvtss_sh(x, 0)` and its
//! portable fallback do), so values read back through `f32` are the same bits
//! pgvector stores.
//!
//! The text format is `vector`'s (same grammar, same `float4` output of each
//! element widened to `f32`), with `halfvec` in the messages; the binary format
//! is an int16 dimension count, an int16 `unused` (0), then each element as a
//! big-endian 16-bit half. The order of checks follows pgvector's `halfvec_in`
//! and `halfvec_recv`.

use crate::text::{
    check_dim_signed, check_expected_dim, non_finite, out_of_range, parse_elements, too_few_dims,
    typmod_in_of, SqlState, VectorError, VECTOR_MAX_DIM,
};

/// Largest number of dimensions a `halfvec` may have (pgvector's limit).
pub const HALFVEC_MAX_DIM: usize = VECTOR_MAX_DIM;

/// The type's name, as it appears in error messages.
const TY: &str = "halfvec";

/// The exact `f32` value of a half.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match exp {
        // Infinity keeps a zero mantissa; a NaN keeps its payload (never stored:
        // every constructor rejects NaN).
        0x1f => sign | 0x7f80_0000 | (man << 13),
        0 => {
            // Zero or subnormal: man × 2^-24, exact in f32 (2^-24 is 0x3380_0000).
            let v = man as f32 * f32::from_bits(0x3380_0000);
            sign | v.to_bits()
        }
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Widens `src` into `dst` (equal lengths): the exact `f32` of every half.
///
/// Every distance over halfvecs and every ivfpq key read from a halfvec column
/// goes through here, so it uses the CPU's F16C conversion (8 halves per
/// instruction) when the CPU has it, detected once; the scalar
/// [`f16_to_f32`] otherwise. Both give the same bits (tested on all halves).
pub fn widen(src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen: lengths differ");
    #[cfg(target_arch = "x86_64")]
    {
        static F16C: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *F16C.get_or_init(|| {
            std::arch::is_x86_feature_detected!("f16c")
                && std::arch::is_x86_feature_detected!("avx")
        }) {
            // SAFETY: the CPU supports F16C and AVX (checked just above), and the
            // lengths are equal (asserted).
            unsafe { widen_f16c(src, dst) };
            return;
        }
    }
    for (o, &h) in dst.iter_mut().zip(src) {
        *o = f16_to_f32(h);
    }
}

/// [`widen`] with F16C: 8 halves per `vcvtph2ps`, the tail in scalar code.
///
/// # Safety
/// The CPU must support F16C and AVX; `src.len() == dst.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c,avx")]
unsafe fn widen_f16c(src: &[u16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    let n = src.len() / 8 * 8;
    let mut i = 0;
    while i < n {
        // SAFETY: i + 8 <= n <= src.len() == dst.len(): the 16-byte load and the
        // 32-byte store stay inside both slices (unaligned forms).
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    for j in n..src.len() {
        dst[j] = f16_to_f32(src[j]);
    }
}

/// The half nearest to `x` (ties to even); values beyond the half range become
/// infinities, as the hardware conversion gives. Callers that must reject
/// overflow compare with [`is_inf`] (see [`to_half_checked`]).
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x007f_ffff;
    if exp == 0xff {
        return if man == 0 {
            sign | 0x7c00
        } else {
            // A quiet NaN with the top of the payload.
            sign | 0x7e00 | (man >> 13) as u16
        };
    }
    // The half's biased exponent if the value is a normal half.
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e >= 1 {
        // Normal: keep the top 10 mantissa bits, round on the 13 dropped ones.
        // A carry out of the mantissa steps the exponent (to infinity at the top).
        let h = ((e as u32) << 10) | (man >> 13);
        let rest = man & 0x1fff;
        let up = rest > 0x1000 || (rest == 0x1000 && h & 1 == 1);
        return sign | (h + u32::from(up)) as u16;
    }
    // Subnormal half (or zero): the significand with its implicit bit, shifted to
    // units of 2^-24. An f32 subnormal (exp 0) lies far below 2^-25 and becomes 0.
    let shift = (126 - exp) as u32;
    if shift > 25 {
        return sign;
    }
    let m = man | 0x0080_0000;
    let h = m >> shift;
    let rest = m & ((1 << shift) - 1);
    let halfway = 1 << (shift - 1);
    let up = rest > halfway || (rest == halfway && h & 1 == 1);
    // A carry to 0x400 is the smallest normal half, which is right.
    sign | (h + u32::from(up)) as u16
}

/// Whether a half is NaN.
#[inline]
pub fn is_nan(h: u16) -> bool {
    h & 0x7c00 == 0x7c00 && h & 0x03ff != 0
}

/// Whether a half is an infinity.
#[inline]
pub fn is_inf(h: u16) -> bool {
    h & 0x7fff == 0x7c00
}

/// Whether a half is +0 or -0.
#[inline]
pub fn is_zero(h: u16) -> bool {
    h & 0x7fff == 0
}

/// pgvector's `Float4ToHalf`: the nearest half, or `"70000" is out of range for
/// type halfvec` when a finite `x` rounds to an infinity. Infinities and NaN
/// pass through (the caller's [`check_element`] rejects them, as pgvector does).
pub fn to_half_checked(x: f32) -> Result<u16, VectorError> {
    let h = f32_to_f16(x);
    if is_inf(h) && !x.is_infinite() {
        let mut s = String::new();
        crate::text::format_float4(x, &mut s);
        return Err(out_of_range(TY, s.as_bytes()));
    }
    Ok(h)
}

/// Rejects NaN and infinite halves (`NaN not allowed in halfvec`).
pub fn check_element(h: u16) -> Result<(), VectorError> {
    if is_nan(h) || is_inf(h) {
        return Err(non_finite(TY, is_nan(h)));
    }
    Ok(())
}

/// Rejects dimension counts outside `1..=HALFVEC_MAX_DIM`.
pub fn check_dim(dim: usize) -> Result<(), VectorError> {
    check_dim_signed(TY, i64::try_from(dim).unwrap_or(i64::MAX))
}

/// `halfvec must have at least 1 dimension` (subvector's empty result).
pub fn empty_error() -> VectorError {
    too_few_dims(TY)
}

/// A stored halfvec whose length disagrees with its header (XX001).
pub fn corrupt(total: usize, dim: i16) -> VectorError {
    VectorError::new(
        SqlState::DataCorrupted,
        format!("halfvec datum is corrupt: {total} bytes for {dim} dimensions"),
    )
}

/// Rejects operands of different dimensions (`different halfvec dimensions 3 and 4`).
pub fn check_same_dims(a: usize, b: usize) -> Result<(), VectorError> {
    if a != b {
        return Err(VectorError::new(
            SqlState::DataException,
            format!("different halfvec dimensions {a} and {b}"),
        ));
    }
    Ok(())
}

/// Validates the modifier list of `halfvec(n)` and returns the typmod to store.
pub fn typmod_in(dims: &[i32]) -> Result<i32, VectorError> {
    typmod_in_of(TY, dims)
}

/// Parses the text form of a halfvec, e.g. `[1, 2.5, -3e-2]`, into halves.
///
/// As pgvector does, each number is read as a `float4` (with `strtof`'s rules)
/// and then rounded to a half; a finite number beyond the half range is out of
/// range, and NaN and infinities are rejected. The typmod is checked by the
/// caller afterwards, as for [`crate::text::parse_vector_text`].
pub fn parse_halfvec_text<S: AsRef<[u8]> + ?Sized>(input: &S) -> Result<Vec<u16>, VectorError> {
    parse_elements(input.as_ref(), TY, |value, overflow, token| {
        let h = f32_to_f16(value);
        if overflow || (is_inf(h) && !value.is_infinite()) {
            return Err(out_of_range(TY, token));
        }
        check_element(h)?;
        Ok(h)
    })
}

/// Appends the text form, `[e1,e2,...]`: each element printed as the `float4`
/// it widens to (pgvector prints halves with the shortest `float4` form too).
pub fn format_halfvec_text(v: &[u16], out: &mut String) {
    out.reserve(v.len() * 8 + 2);
    out.push('[');
    for (i, &h) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::text::format_float4(f16_to_f32(h), out);
    }
    out.push(']');
}

/// Appends the binary form: dimension count and `unused` (0) as big-endian
/// int16, then each half big-endian.
pub fn encode_halfvec_binary(v: &[u16], out: &mut Vec<u8>) {
    let dim = i16::try_from(v.len()).expect("halfvec dimension fits in int16");
    out.reserve(4 + 2 * v.len());
    out.extend_from_slice(&dim.to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes());
    for h in v {
        out.extend_from_slice(&h.to_be_bytes());
    }
}

/// Reads the binary form from the start of `buf`, enforcing `typmod` (-1 for
/// none), and returns the halves and the number of bytes consumed. As with
/// [`crate::text::decode_vector_binary`], trailing bytes are the caller's
/// business (PostgreSQL rejects them after the receive function returns).
pub fn decode_halfvec_binary(buf: &[u8], typmod: i32) -> Result<(Vec<u16>, usize), VectorError> {
    let mut cursor = 0usize;
    let mut take2 = || -> Result<[u8; 2], VectorError> {
        let bytes = buf.get(cursor..cursor + 2).ok_or_else(|| {
            VectorError::new(
                SqlState::ProtocolViolation,
                "insufficient data left in message",
            )
        })?;
        cursor += 2;
        Ok([bytes[0], bytes[1]])
    };
    let dim = i16::from_be_bytes(take2()?);
    let unused = i16::from_be_bytes(take2()?);
    check_dim_signed(TY, i64::from(dim))?;
    let dim = dim as usize;
    check_expected_dim(typmod, dim)?;
    if unused != 0 {
        return Err(VectorError::new(
            SqlState::DataException,
            format!("expected unused to be 0, not {unused}"),
        ));
    }
    // One element at a time, so a NaN early in a truncated message is reported
    // as a NaN, in pgvector's order.
    let mut values = Vec::with_capacity(dim);
    for _ in 0..dim {
        let h = u16::from_be_bytes(take2()?);
        check_element(h)?;
        values.push(h);
    }
    Ok((values, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(msg: &str) -> VectorError {
        VectorError::new(SqlState::DataException, msg)
    }

    #[test]
    fn every_half_round_trips_through_f32() {
        for h in 0..=u16::MAX {
            if is_nan(h) {
                assert!(f16_to_f32(h).is_nan());
                continue;
            }
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#06x}");
        }
    }

    #[test]
    fn widen_matches_the_scalar_conversion() {
        // Every non-NaN half at every offset of an 8-lane block, and every tail length.
        let all: Vec<u16> = (0..=u16::MAX).filter(|&h| !is_nan(h)).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, all.len()] {
            for start in 0..3 {
                let src = &all[start..start + len.min(all.len() - start)];
                let mut dst = vec![0f32; src.len()];
                widen(src, &mut dst);
                for (&h, &x) in src.iter().zip(&dst) {
                    assert_eq!(x.to_bits(), f16_to_f32(h).to_bits(), "{h:#06x}");
                }
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f32_to_f16(0.1), 0x2e66);
        assert_eq!(f32_to_f16(1.0 / 3.0), 0x3555);
        // 65519.99 rounds down to the largest half, 65520 ties to even (infinity).
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(-1e10), 0xfc00);
        // Half the smallest subnormal ties to even (zero); a bit above it rounds up.
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0);
        assert_eq!(f32_to_f16(2f32.powi(-25) * 1.0001), 1);
        assert_eq!(f32_to_f16(3.0 * 2f32.powi(-25)), 2);
        assert_eq!(f32_to_f16(f32::from_bits(1)), 0);
        assert_eq!(f32_to_f16(-f32::from_bits(1)), 0x8000);
        assert!(is_nan(f32_to_f16(f32::NAN)));
    }

    /// The nearest half by exhaustive comparison in f64 (ties to even), over
    /// finite halves and the overflow threshold 65520.
    fn reference(x: f32) -> u16 {
        let x = f64::from(x);
        let sign: u16 = if x.is_sign_negative() { 0x8000 } else { 0 };
        let a = x.abs();
        if a >= 65520.0 {
            return sign | 0x7c00;
        }
        let mut best = 0u16;
        let mut best_err = f64::INFINITY;
        // Halves are monotone in their bit pattern; binary search the bracket.
        let (mut lo, mut hi) = (0u16, 0x7bff);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if f64::from(f16_to_f32(mid)) <= a {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        for c in [lo, (lo + 1).min(0x7bff)] {
            let err = (f64::from(f16_to_f32(c)) - a).abs();
            if err < best_err || (err == best_err && c & 1 == 0) {
                best = c;
                best_err = err;
            }
        }
        sign | best
    }

    proptest! {
        #[test]
        fn conversion_is_nearest_ties_to_even(bits in any::<u32>()) {
            let x = f32::from_bits(bits);
            prop_assume!(x.is_finite());
            prop_assert_eq!(f32_to_f16(x), reference(x), "{:e}", x);
        }

        #[test]
        fn conversion_near_halves(h in 0u16..0x7c00, delta in -4096i32..4096) {
            // Values within a few f32 ulps of a half and of midpoints between halves.
            let x = f32::from_bits((f16_to_f32(h).to_bits() as i32 + delta).max(0) as u32);
            prop_assume!(x.is_finite());
            prop_assert_eq!(f32_to_f16(x), reference(x));
        }

        #[test]
        fn text_round_trip(v in prop::collection::vec(0u16..0x7c00, 1..40), signs in any::<u64>()) {
            let v: Vec<u16> = v.iter().enumerate().map(|(i, &h)| h | (((signs >> (i % 64)) & 1) as u16) << 15).collect();
            let mut s = String::new();
            format_halfvec_text(&v, &mut s);
            prop_assert_eq!(parse_halfvec_text(&s).unwrap(), v);
        }

        #[test]
        fn binary_round_trip(v in prop::collection::vec(0u16..0x7c00, 1..40)) {
            let mut out = Vec::new();
            encode_halfvec_binary(&v, &mut out);
            prop_assert_eq!(decode_halfvec_binary(&out, -1).unwrap(), (v.clone(), out.len()));
        }
    }

    #[test]
    fn text_input_and_errors() {
        assert_eq!(
            parse_halfvec_text(" [ 1, 2.5 ,-3 ] ").unwrap(),
            vec![0x3c00, 0x4100, 0xc200]
        );
        let mut s = String::new();
        format_halfvec_text(
            &parse_halfvec_text("[1.23456789,0.1,65504]").unwrap(),
            &mut s,
        );
        assert_eq!(s, "[1.234375,0.099975586,65504]");
        assert_eq!(
            parse_halfvec_text("[1,2").unwrap_err().message,
            "invalid input syntax for type halfvec: \"[1,2\""
        );
        let e = parse_halfvec_text("1,2]").unwrap_err();
        assert_eq!(e.sqlstate, SqlState::InvalidTextRepresentation);
        assert_eq!(
            e.detail.as_deref(),
            Some("Vector contents must start with \"[\".")
        );
        assert_eq!(
            parse_halfvec_text("[]").unwrap_err(),
            data("halfvec must have at least 1 dimension")
        );
        let e = parse_halfvec_text("[65520]").unwrap_err();
        assert_eq!(e.sqlstate, SqlState::NumericValueOutOfRange);
        assert_eq!(e.message, "\"65520\" is out of range for type halfvec");
        assert_eq!(
            parse_halfvec_text("[1e39]").unwrap_err().message,
            "\"1e39\" is out of range for type halfvec"
        );
        assert_eq!(
            parse_halfvec_text("[NaN]").unwrap_err(),
            data("NaN not allowed in halfvec")
        );
        assert_eq!(
            parse_halfvec_text("[-inf]").unwrap_err(),
            data("infinite value not allowed in halfvec")
        );
        // Underflow to zero is accepted, as in pgvector.
        assert_eq!(parse_halfvec_text("[1e-10]").unwrap(), vec![0]);
        let big = format!("[{}]", vec!["1"; 16001].join(","));
        let e = parse_halfvec_text(&big).unwrap_err();
        assert_eq!(e.sqlstate, SqlState::ProgramLimitExceeded);
        assert_eq!(e.message, "halfvec cannot have more than 16000 dimensions");
        assert_eq!(
            parse_halfvec_text(&format!("[{}]", vec!["1"; 16000].join(",")))
                .unwrap()
                .len(),
            16000
        );
    }

    #[test]
    fn binary_errors() {
        let short = decode_halfvec_binary(&[0, 2, 0, 0, 0x3c, 0], -1).unwrap_err();
        assert_eq!(short.sqlstate, SqlState::ProtocolViolation);
        assert_eq!(
            decode_halfvec_binary(&[0, 0, 0, 0], -1).unwrap_err(),
            data("halfvec must have at least 1 dimension")
        );
        assert_eq!(
            decode_halfvec_binary(&[0xff, 0xff, 0, 0], -1).unwrap_err(),
            data("halfvec must have at least 1 dimension")
        );
        assert_eq!(
            decode_halfvec_binary(&[0x3e, 0x81, 0, 0], -1)
                .unwrap_err()
                .sqlstate,
            SqlState::ProgramLimitExceeded
        );
        assert_eq!(
            decode_halfvec_binary(&[0, 1, 0, 0, 0x3c, 0], 2).unwrap_err(),
            data("expected 2 dimensions, not 1")
        );
        assert_eq!(
            decode_halfvec_binary(&[0, 1, 0, 7, 0x3c, 0], -1).unwrap_err(),
            data("expected unused to be 0, not 7")
        );
        assert_eq!(
            decode_halfvec_binary(&[0, 2, 0, 0, 0x7e, 0], -1).unwrap_err(),
            data("NaN not allowed in halfvec")
        );
        assert_eq!(
            decode_halfvec_binary(&[0, 1, 0, 0, 0xfc, 0], 1).unwrap_err(),
            data("infinite value not allowed in halfvec")
        );
        // Trailing bytes are left for the caller.
        assert_eq!(
            decode_halfvec_binary(&[0, 1, 0, 0, 0xbc, 0, 9], 1).unwrap(),
            (vec![0xbc00], 6)
        );
    }

    #[test]
    fn checked_conversion_and_typmods() {
        assert_eq!(to_half_checked(1.5), Ok(0x3e00));
        let e = to_half_checked(70000.0).unwrap_err();
        assert_eq!(e.message, "\"70000\" is out of range for type halfvec");
        assert_eq!(to_half_checked(f32::INFINITY), Ok(0x7c00));
        assert_eq!(typmod_in(&[3]), Ok(3));
        assert_eq!(
            typmod_in(&[16001]).unwrap_err().message,
            "dimensions for type halfvec cannot exceed 16000"
        );
        assert_eq!(
            check_same_dims(3, 4).unwrap_err().message,
            "different halfvec dimensions 3 and 4"
        );
    }
}
