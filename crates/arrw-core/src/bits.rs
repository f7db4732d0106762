//! Bit strings as pgvector treats them: the binary quantization of a vector
//! (bit `i` set when element `i` is positive, the most significant bit of each
//! byte first, as PostgreSQL's `bit` type orders them) and the Hamming and
//! Jaccard distances between two bit strings of one length (`<~>`, `<%>`).
//!
//! The glue (src/vector/bits.rs) reads and builds PostgreSQL's `varbit`; the
//! bytes here are its data bytes, whose padding bits past the string's length
//! PostgreSQL keeps at zero, so whole bytes can be compared.

/// Sets bit `i` of `out` (most significant first) for each `true` of
/// `positive`, leaving the others as they are (callers pass zeroed bytes).
/// `out` must hold at least `positive.len().div_ceil(8)` bytes.
pub fn quantize(positive: impl IntoIterator<Item = bool>, out: &mut [u8]) {
    for (i, p) in positive.into_iter().enumerate() {
        if p {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
}

/// The number of bits in which `a` and `b` differ (over `a.len()` bytes; the
/// caller checked the lengths are equal).
pub fn hamming(a: &[u8], b: &[u8]) -> u64 {
    debug_assert_eq!(a.len(), b.len());
    let mut d = 0u64;
    let (ac, ar) = (a.chunks_exact(8), a.chunks_exact(8).remainder());
    let br = b.chunks_exact(8).remainder();
    for (x, y) in ac.zip(b.chunks_exact(8)) {
        let (x, y) = (word(x), word(y));
        d += (x ^ y).count_ones() as u64;
    }
    for (x, y) in ar.iter().zip(br) {
        d += (x ^ y).count_ones() as u64;
    }
    d
}

/// The Jaccard distance `1 - |a ∧ b| / |a ∨ b|` of two bit strings of one
/// length, and 1 when they share no set bit (also when both are empty or
/// all zero), as pgvector computes it.
pub fn jaccard(a: &[u8], b: &[u8]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let (mut ab, mut aa, mut bb) = (0u64, 0u64, 0u64);
    let (ac, ar) = (a.chunks_exact(8), a.chunks_exact(8).remainder());
    let br = b.chunks_exact(8).remainder();
    for (x, y) in ac.zip(b.chunks_exact(8)) {
        let (x, y) = (word(x), word(y));
        ab += (x & y).count_ones() as u64;
        aa += x.count_ones() as u64;
        bb += y.count_ones() as u64;
    }
    for (x, y) in ar.iter().zip(br) {
        ab += (x & y).count_ones() as u64;
        aa += x.count_ones() as u64;
        bb += y.count_ones() as u64;
    }
    if ab == 0 {
        1.0
    } else {
        1.0 - ab as f64 / (aa + bb - ab) as f64
    }
}

fn word(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bools(bytes: &[u8]) -> Vec<bool> {
        (0..bytes.len() * 8)
            .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
            .collect()
    }

    #[test]
    fn quantize_sets_bits_most_significant_first() {
        let mut out = [0u8; 2];
        quantize(
            [true, false, false, false, false, false, false, true, true],
            &mut out,
        );
        assert_eq!(out, [0b1000_0001, 0b1000_0000]);
        let mut none = [0u8; 1];
        quantize([], &mut none);
        assert_eq!(none, [0]);
    }

    #[test]
    fn distances_of_small_strings() {
        // 1100 and 1010 (bit strings of length 4, padded with zeros).
        let (a, b) = ([0b1100_0000u8], [0b1010_0000u8]);
        assert_eq!(hamming(&a, &b), 2);
        // one shared bit of three set in either: 1 - 1/3.
        assert_eq!(jaccard(&a, &b), 1.0 - 1.0 / 3.0);
        assert_eq!(jaccard(&a, &a), 0.0);
        // Nothing shared, and nothing set at all: 1 (pgvector's convention).
        assert_eq!(jaccard(&[0b1000_0000], &[0b0100_0000]), 1.0);
        assert_eq!(jaccard(&[0], &[0]), 1.0);
        assert_eq!(jaccard(&[], &[]), 1.0);
        assert_eq!(hamming(&[], &[]), 0);
    }

    proptest! {
        // The word-at-a-time loops against a bit-by-bit count, over lengths
        // that leave every remainder of 8 bytes.
        #[test]
        fn match_a_bit_by_bit_count(pair in (0usize..40).prop_flat_map(|n| (
            proptest::collection::vec(any::<u8>(), n),
            proptest::collection::vec(any::<u8>(), n),
        ))) {
            let (a, b) = pair;
            let (x, y) = (bools(&a), bools(&b));
            let differ = x.iter().zip(&y).filter(|(p, q)| p != q).count() as u64;
            prop_assert_eq!(hamming(&a, &b), differ);
            prop_assert_eq!(hamming(&a, &b), hamming(&b, &a));
            let both = x.iter().zip(&y).filter(|(p, q)| **p && **q).count();
            let either = x.iter().zip(&y).filter(|(p, q)| **p || **q).count();
            let want = if both == 0 { 1.0 } else { 1.0 - both as f64 / either as f64 };
            prop_assert_eq!(jaccard(&a, &b), want);
            prop_assert_eq!(jaccard(&a, &b), jaccard(&b, &a));
        }

        #[test]
        fn quantize_matches_the_signs(x in proptest::collection::vec(-2.0f32..2.0, 0..70)) {
            let mut out = vec![0u8; x.len().div_ceil(8)];
            quantize(x.iter().map(|&v| v > 0.0), &mut out);
            let got = bools(&out);
            for (i, v) in x.iter().enumerate() {
                prop_assert_eq!(got[i], *v > 0.0);
            }
            // Padding stays zero.
            prop_assert!(got[x.len()..].iter().all(|b| !b));
        }
    }
}
