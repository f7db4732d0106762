//! Page deltas in the format of PostgreSQL's generic WAL records.
//!
//! Every ivfpq page change is logged as a generic WAL record (resource manager
//! `RM_GENERIC_ID`), which PostgreSQL's own redo applies on replicas and in
//! crash recovery. The record carries, per page, a **delta**: a sequence of
//! fragments, each `offset: u16`, `length: u16` (native byte order) and
//! `length` bytes to place at `offset`. After applying them, redo zeroes the
//! page's hole (`pd_lower .. pd_upper`), so a delta covers only the bytes below
//! `pd_lower` and from `pd_upper` on.
//!
//! PostgreSQL's `GenericXLogFinish` finds the changed bytes by comparing the old
//! and new page a byte at a time, once per record; for an insert that changes a
//! few dozen bytes of a full 8 kB page, that comparison was ~45% of a `COPY`
//! into an indexed table. [`page_delta`] produces an equivalent delta (it
//! applies to the same result; fragments may be cut differently) comparing
//! 64 bytes at a time (SSE2 compares, a bit mask of the bytes that differ),
//! and [`apply_delta`] is redo's half.
//!
//! Semantics, as in `computeDelta`: a byte of the new page's lower part
//! (`0 .. new pd_lower`) is emitted when it differs from the old page's byte or
//! lies in the old page's hole (`old pd_lower ..`), since the old bytes there
//! are not what a replica holds (it holds zeroes); likewise for the upper part
//! (`new pd_upper .. end`, valid in the old page from `old pd_upper`).
//! Fragments closer than [`MATCH_THRESHOLD`] bytes are merged: the unchanged
//! gap costs no more than a fragment header.

use crate::layout::{PAGE_HEADER_BYTES, PAGE_SIZE};

/// Bytes of a fragment header: offset and length, two `u16`s.
pub const FRAGMENT_HEADER: usize = 4;

/// Unchanged gaps of at most this many bytes are carried inside one fragment.
pub const MATCH_THRESHOLD: usize = FRAGMENT_HEADER;

/// The largest delta [`page_delta`] can produce: every byte of both parts, and
/// one header for each part.
pub const MAX_DELTA: usize = PAGE_SIZE + 2 * FRAGMENT_HEADER;

/// A page header whose `pd_lower`/`pd_upper` cannot bound a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadBounds {
    pub lower: usize,
    pub upper: usize,
}

/// `(pd_lower, pd_upper)` of a standard page of [`PAGE_SIZE`] bytes, when they
/// bound a hole (`24 ≤ lower ≤ upper ≤ 8192`).
pub fn hole(page: &[u8]) -> Result<(usize, usize), BadBounds> {
    let at = |o: usize| {
        page.get(o..o + 2)
            .map_or(0, |b| usize::from(u16::from_ne_bytes([b[0], b[1]])))
    };
    let (lower, upper) = (at(12), at(14));
    if page.len() != PAGE_SIZE || lower < PAGE_HEADER_BYTES || lower > upper || upper > PAGE_SIZE {
        return Err(BadBounds { lower, upper });
    }
    Ok((lower, upper))
}

/// Whether the hole of a standard page (see [`hole`]) is all zero bytes, as
/// every index page's is (pages start zeroed, writers keep their contents
/// below `pd_lower`, and applying a record zeroes the hole). Bytes there mean
/// damaged bounds over live contents, which a write would erase.
pub fn hole_is_clear(page: &[u8]) -> Result<bool, BadBounds> {
    let (lower, upper) = hole(page)?;
    Ok(page[lower..upper].iter().all(|&b| b == 0))
}

/// Replaces `out` with the delta that turns `old` into `new` (both standard
/// pages of [`PAGE_SIZE`] bytes), in the generic WAL format (module docs).
/// Fails, writing nothing, when either page's bounds are not a hole.
pub fn page_delta(old: &[u8], new: &[u8], out: &mut Vec<u8>) -> Result<(), BadBounds> {
    let (old_lower, old_upper) = hole(old)?;
    let (new_lower, new_upper) = hole(new)?;
    out.clear();
    region(old, new, 0, new_lower, 0, old_lower, out);
    region(old, new, new_upper, PAGE_SIZE, old_upper, PAGE_SIZE, out);
    Ok(())
}

/// [`page_delta`] when the caller knows that only bytes inside `ranges`
/// (sorted, non-overlapping, within the page) can differ: only they are
/// compared. When the pages' bounds differ, bytes of the new used part may
/// lie in the old hole and must be sent wherever they are: then every byte is
/// compared, as in [`page_delta`]. A change outside `ranges` would be lost,
/// which callers check in their tests ([`unchanged_outside`]).
pub fn page_delta_within(
    old: &[u8],
    new: &[u8],
    ranges: &[(usize, usize)],
    out: &mut Vec<u8>,
) -> Result<(), BadBounds> {
    let (old_lower, old_upper) = hole(old)?;
    let (new_lower, new_upper) = hole(new)?;
    if (old_lower, old_upper) != (new_lower, new_upper) {
        return page_delta(old, new, out);
    }
    out.clear();
    for &(s, e) in ranges {
        let e = e.min(PAGE_SIZE);
        // The part of the range below pd_lower, then the part from pd_upper.
        region(old, new, s, e.min(new_lower), s, e.min(new_lower), out);
        let s2 = s.max(new_upper);
        region(old, new, s2, e, s2, e, out);
    }
    Ok(())
}

/// Whether `old` and `new` are equal everywhere outside `ranges`, the hole
/// of `new` excepted: what [`page_delta_within`] assumes.
pub fn unchanged_outside(old: &[u8], new: &[u8], ranges: &[(usize, usize)]) -> bool {
    let (lower, upper) = hole(new).unwrap_or((PAGE_SIZE, PAGE_SIZE));
    (0..old.len().min(new.len())).all(|i| {
        (i >= lower && i < upper)
            || ranges.iter().any(|&(s, e)| i >= s && i < e)
            || old[i] == new[i]
    })
}

/// Appends the fragments for `new[start..end]`, where `old` is valid (may be
/// compared with) only in `valid_start..valid_end`.
fn region(
    old: &[u8],
    new: &[u8],
    start: usize,
    end: usize,
    valid_start: usize,
    valid_end: usize,
    out: &mut Vec<u8>,
) {
    if start >= end {
        return;
    }
    let mut frag = Fragments {
        out,
        new,
        open: None,
    };
    let lo = valid_start.clamp(start, end);
    let hi = valid_end.clamp(lo, end);
    if start < lo {
        frag.changed(start, lo);
    }
    let mut i = lo;
    // 64 bytes at a time: equal chunks (nearly all of them) cost one vector
    // comparison; a differing one is turned into a bit mask of its differing
    // bytes, whose runs become ranges (merged across chunks by `frag`).
    while i + 64 <= hi {
        let a: &[u8; 64] = old[i..i + 64].try_into().expect("64 bytes");
        let b: &[u8; 64] = new[i..i + 64].try_into().expect("64 bytes");
        let mut mask = diff_mask(a, b);
        if mask != 0 {
            let mut at = 0u32;
            while mask != 0 {
                let s = mask.trailing_zeros();
                let len = (!(mask >> s)).trailing_zeros().min(64 - s);
                frag.changed(i + (at + s) as usize, i + (at + s + len) as usize);
                at += s + len;
                mask = if s + len >= 64 { 0 } else { mask >> (s + len) };
            }
        }
        i += 64;
    }
    while i < hi {
        while i < hi && old[i] == new[i] {
            i += 1;
        }
        let s = i;
        while i < hi && old[i] != new[i] {
            i += 1;
        }
        if s < i {
            frag.changed(s, i);
        }
    }
    if hi < end {
        frag.changed(hi, end);
    }
    frag.flush();
}

/// Bit `k` set where `a[k] != b[k]`.
#[inline]
fn diff_mask(a: &[u8; 64], b: &[u8; 64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SSE2 is part of x86_64: no runtime check. Four 16-byte compares,
        // each's byte mask from movemask (set where equal), inverted.
        use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
        let mut eq = 0u64;
        for k in 0..4 {
            // SAFETY: bytes 16k..16k+16 of two 64-byte arrays; unaligned
            // loads read exactly them.
            let m = unsafe {
                let x = _mm_loadu_si128(a.as_ptr().add(16 * k) as *const __m128i);
                let y = _mm_loadu_si128(b.as_ptr().add(16 * k) as *const __m128i);
                _mm_movemask_epi8(_mm_cmpeq_epi8(x, y)) as u32 as u64
            };
            eq |= m << (16 * k);
        }
        !eq
    }
    #[cfg(not(target_arch = "x86_64"))]
    diff_mask_portable(a, b)
}

/// [`diff_mask`] without SIMD: per 8-byte word, the high bit of each nonzero
/// byte of `a ^ b`, gathered into 8 bits by a multiplication.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn diff_mask_portable(a: &[u8; 64], b: &[u8; 64]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut mask = 0u64;
    for w in 0..8 {
        let x = u64::from_le_bytes(a[8 * w..8 * w + 8].try_into().expect("8 bytes"))
            ^ u64::from_le_bytes(b[8 * w..8 * w + 8].try_into().expect("8 bytes"));
        // High bit of each byte: set iff the byte is nonzero.
        let nz = (((x & LOW7) + LOW7) | x) & HIGH;
        // Bytes 0..8 (little-endian: byte k at bits 8k..8k+8) to bits 0..8.
        let bits = ((nz >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        mask |= bits << (8 * w);
    }
    mask
}

/// Changed ranges in increasing order, merged across small gaps and written
/// out as fragments.
struct Fragments<'a> {
    out: &'a mut Vec<u8>,
    new: &'a [u8],
    open: Option<(usize, usize)>,
}

impl Fragments<'_> {
    fn changed(&mut self, s: usize, e: usize) {
        match self.open {
            Some((os, oe)) if s - oe <= MATCH_THRESHOLD => self.open = Some((os, e)),
            _ => {
                self.flush();
                self.open = Some((s, e));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((s, e)) = self.open.take() {
            // Offsets and lengths fit: pages are PAGE_SIZE (8192) bytes.
            let (o, l) = ((s as u16).to_ne_bytes(), ((e - s) as u16).to_ne_bytes());
            self.out.extend_from_slice(&[o[0], o[1], l[0], l[1]]);
            self.out.extend_from_slice(&self.new[s..e]);
        }
    }
}

/// A delta that does not parse or reaches past the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadDelta {
    pub at: usize,
}

/// Applies `delta` to `page` as PostgreSQL's redo does, then zeroes the hole
/// the page's (new) header names. For tests of [`page_delta`].
pub fn apply_delta(page: &mut [u8], delta: &[u8]) -> Result<(), BadDelta> {
    let mut p = 0;
    while p < delta.len() {
        let hdr = delta
            .get(p..p + FRAGMENT_HEADER)
            .ok_or(BadDelta { at: p })?;
        let off = usize::from(u16::from_ne_bytes([hdr[0], hdr[1]]));
        let len = usize::from(u16::from_ne_bytes([hdr[2], hdr[3]]));
        let data = delta
            .get(p + FRAGMENT_HEADER..p + FRAGMENT_HEADER + len)
            .ok_or(BadDelta { at: p })?;
        page.get_mut(off..off + len)
            .ok_or(BadDelta { at: p })?
            .copy_from_slice(data);
        p += FRAGMENT_HEADER + len;
    }
    let (lower, upper) = hole(page).map_err(|_| BadDelta { at: delta.len() })?;
    page[lower..upper].fill(0);
    Ok(())
}

/// `page` with its hole zeroed: what a replica holds for it.
pub fn as_replayed(page: &[u8]) -> Vec<u8> {
    let mut p = page.to_vec();
    if let Ok((lower, upper)) = hole(page) {
        p[lower..upper].fill(0);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn page(lower: u16, upper: u16, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; PAGE_SIZE];
        p[12..14].copy_from_slice(&lower.to_ne_bytes());
        p[14..16].copy_from_slice(&upper.to_ne_bytes());
        p
    }

    /// What a replica holds after replaying `delta` onto its copy of `old`.
    fn replay(old: &[u8], delta: &[u8]) -> Vec<u8> {
        let mut r = as_replayed(old);
        apply_delta(&mut r, delta).expect("a delta of ours parses");
        r
    }

    #[test]
    fn unchanged_page_has_an_empty_delta() {
        let p = page(1000, 7000, 3);
        let mut d = vec![9];
        page_delta(&p, &p, &mut d).unwrap();
        assert!(d.is_empty());
    }

    #[test]
    fn one_byte_is_one_fragment() {
        let old = page(8192, 8192, 0);
        let mut new = old.clone();
        new[5000] = 7;
        let mut d = Vec::new();
        page_delta(&old, &new, &mut d).unwrap();
        assert_eq!(
            d,
            [&5000u16.to_ne_bytes()[..], &1u16.to_ne_bytes(), &[7]].concat()
        );
        assert_eq!(replay(&old, &d), new);
    }

    #[test]
    fn close_changes_merge_and_far_ones_do_not() {
        let old = page(8192, 8192, 0);
        let mut new = old.clone();
        new[100] = 1;
        new[105] = 1; // gap of 4: merged
        new[200] = 1;
        new[206] = 1; // gap of 5: apart
        let mut d = Vec::new();
        page_delta(&old, &new, &mut d).unwrap();
        // 100..106 (6 bytes), 200..201, 206..207.
        assert_eq!(d.len(), 3 * FRAGMENT_HEADER + 6 + 1 + 1);
        assert_eq!(replay(&old, &d), new);
    }

    #[test]
    fn bytes_in_the_old_hole_are_always_sent() {
        // The old page's hole holds garbage on the primary, zeroes on a
        // replica: a new byte there equal to the garbage must still be sent.
        let old = page(1000, 8192, 5);
        let new = page(2000, 8192, 5);
        let mut d = Vec::new();
        page_delta(&old, &new, &mut d).unwrap();
        assert_eq!(replay(&old, &d), as_replayed(&new));
        assert!(d.len() >= 1000, "the grown lower part is sent: {}", d.len());
    }

    #[test]
    fn a_grown_upper_part_is_sent_from_the_new_upper() {
        let old = page(100, 8000, 1);
        let new = page(100, 6000, 1);
        let mut d = Vec::new();
        page_delta(&old, &new, &mut d).unwrap();
        assert_eq!(replay(&old, &d), as_replayed(&new));
    }

    #[test]
    fn bad_bounds_are_refused() {
        let ok = page(100, 200, 0);
        for (l, u) in [(10, 200), (300, 200), (100, 9000)] {
            let bad = page(l, u, 0);
            let mut d = Vec::new();
            assert!(page_delta(&ok, &bad, &mut d).is_err());
            assert!(page_delta(&bad, &ok, &mut d).is_err());
        }
        assert!(page_delta(&ok[..100], &ok, &mut Vec::new()).is_err());
    }

    #[test]
    fn broken_deltas_are_errors() {
        let mut p = page(100, 200, 0);
        assert!(apply_delta(&mut p, &[1, 0]).is_err());
        let past = [
            &8190u16.to_ne_bytes()[..],
            &4u16.to_ne_bytes(),
            &[1, 2, 3, 4],
        ]
        .concat();
        assert!(apply_delta(&mut p, &past).is_err());
        let short = [&10u16.to_ne_bytes()[..], &4u16.to_ne_bytes(), &[1]].concat();
        assert!(apply_delta(&mut p, &short).is_err());
    }

    #[test]
    fn diff_masks_agree_with_bytewise_comparison() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut a = [0u8; 64];
            let mut b = [0u8; 64];
            for k in 0..64 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                a[k] = (s % 3) as u8;
                b[k] = ((s >> 8) % 3) as u8;
            }
            let want = (0..64).fold(0u64, |m, k| m | (u64::from(a[k] != b[k]) << k));
            assert_eq!(diff_mask(&a, &b), want);
            assert_eq!(diff_mask_portable(&a, &b), want);
        }
    }

    /// A page with the given bounds and random bytes.
    fn arb_page() -> impl Strategy<Value = Vec<u8>> {
        (24u16..=8192, 0u16..=8192, any::<u64>()).prop_map(|(lower, span, seed)| {
            let upper = lower.saturating_add(span).min(8192);
            let mut p = page(lower, upper, 0);
            let mut s = seed | 1;
            for b in p.iter_mut().skip(16) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *b = (s % 4) as u8; // few values: many equal bytes
            }
            p
        })
    }

    #[test]
    fn a_delta_within_ranges_sends_what_changed_there() {
        let old = page(6000, 7000, 0);
        let mut new = old.clone();
        new[100] = 1;
        new[3000] = 2;
        new[7500] = 3;
        let ranges = [(90, 200), (2990, 3010), (7400, 7600)];
        assert!(unchanged_outside(&old, &new, &ranges));
        let mut within = Vec::new();
        page_delta_within(&old, &new, &ranges, &mut within).unwrap();
        let mut full = Vec::new();
        page_delta(&old, &new, &mut full).unwrap();
        assert_eq!(within, full);
        assert_eq!(replay(&old, &within), new);
        // A change outside the ranges is what the check catches.
        new[5000] = 9;
        assert!(!unchanged_outside(&old, &new, &ranges));
        // Bounds that moved: every byte is compared.
        let moved = page(6500, 7000, 0);
        page_delta_within(&old, &moved, &ranges, &mut within).unwrap();
        assert_eq!(replay(&old, &within), as_replayed(&moved));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Replaying the delta onto a replica's copy of the old page gives
        /// the new page as a replica must hold it, and the delta is never
        /// larger than MAX_DELTA.
        #[test]
        fn replay_gives_the_new_page(old in arb_page(), new in arb_page(),
                                     edits in proptest::collection::vec((16usize..8192, any::<u8>()), 0..40),
                                     same in any::<bool>()) {
            // Either an unrelated page, or the old one with a few bytes edited.
            let mut new = if same { old.clone() } else { new };
            for (at, v) in edits {
                new[at] = v;
            }
            let mut d = Vec::new();
            page_delta(&old, &new, &mut d).unwrap();
            prop_assert!(d.len() <= MAX_DELTA);
            prop_assert_eq!(replay(&old, &d), as_replayed(&new));
        }
    }
}
