//! "Fast scan" of 4-bit PQ codes: codes stored in transposed blocks of 32 and
//! scored 32 at a time with byte shuffles instead of one table lookup per code
//! byte.
//!
//! Why: the scalar ADC loop ([`crate::pq::adc_scan`]) costs one table lookup per
//! code byte, about a cycle each at best, and its float table (`code_size × 1 kB`)
//! spills out of the L1 cache once codes pass ~32 bytes. With 4-bit codes a
//! sub-quantizer's table has only 16 entries; quantized to bytes it fits one SIMD
//! register, and `vpshufb` looks up 32 codes' entries in one instruction. Scoring
//! a 48-byte code this way costs a handful of instructions instead of 96 lookups.
//!
//! # Block layout
//! A block holds the codes of 32 vectors ("lanes") with `mp` sub-quantizers, where
//! `mp = 2 × code_size` (the packed code's nibble count; an odd `m` has a padding
//! sub-quantizer whose code is always 0). The block is `mp` groups of 16 bytes, one
//! group per sub-quantizer `q` in order; byte `j` of group `q` holds lane `j`'s
//! nibble for `q` in its low half and lane `j + 16`'s in its high half. A block is
//! therefore `16 × mp = 32 × code_size` bytes: exactly the bytes of 32 packed codes.
//!
//! Two consecutive groups (`q` even) load as one 32-byte register whose halves line
//! up with two consecutive 16-byte table rows, which is what the AVX2 kernel uses.
//!
//! # Quantized tables
//! [`FastTable::new`] turns a float table `t[q][k]` (`mp × 16`) into bytes:
//! `lut[q][k] = round((t[q][k] - min_k t[q][k]) × s)` with one scale `s` for all
//! rows, chosen so the largest entry is 255. The sum of `mp` bytes fits a `u16`
//! (`mp ≤ 256`), and the estimate is `offset + sum / s`, where `offset` adds the
//! row minima and the caller's bias. Rounding costs at most `mp / (2s)` of error per
//! estimate, which re-ranking with exact distances absorbs.

/// Codes per block.
pub const BLOCK: usize = 32;

/// Largest packed code (bytes) fast scan supports: `2 × 128 = 256` sub-quantizers,
/// whose byte sums still fit a `u16` (256 × 255 < 65536).
pub const MAX_CODE_SIZE: usize = 128;

/// Bytes of one block of 32 codes of `code_size` bytes.
pub fn block_bytes(code_size: usize) -> usize {
    BLOCK * code_size
}

/// The nibble of sub-quantizer `q` in a packed 4-bit code (see [`crate::pq`]).
#[inline]
fn nibble(code: &[u8], q: usize) -> u8 {
    (code[q / 2] >> (4 * (q % 2))) & 15
}

/// Writes packed code `code` into lane `lane` of `block` (other lanes unchanged).
pub fn set_lane(block: &mut [u8], lane: usize, code: &[u8]) {
    let cs = code.len();
    assert!(lane < BLOCK && block.len() == block_bytes(cs));
    let (j, shift, keep) = if lane < 16 {
        (lane, 0, 0xF0u8)
    } else {
        (lane - 16, 4, 0x0Fu8)
    };
    for q in 0..2 * cs {
        let b = &mut block[16 * q + j];
        *b = (*b & keep) | (nibble(code, q) << shift);
    }
}

/// Reads lane `lane` of `block` back as a packed code into `out`.
pub fn get_lane(block: &[u8], lane: usize, out: &mut [u8]) {
    let cs = out.len();
    assert!(lane < BLOCK && block.len() == block_bytes(cs));
    let (j, shift) = if lane < 16 { (lane, 0) } else { (lane - 16, 4) };
    out.fill(0);
    for q in 0..2 * cs {
        let v = (block[16 * q + j] >> shift) & 15;
        out[q / 2] |= v << (4 * (q % 2));
    }
}

/// Packs `n` contiguous packed codes into `ceil(n / 32)` blocks (unused lanes 0).
pub fn pack(codes: &[u8], code_size: usize) -> Vec<u8> {
    assert!(code_size > 0 && codes.len().is_multiple_of(code_size));
    let n = codes.len() / code_size;
    let bb = block_bytes(code_size);
    let mut out = vec![0u8; n.div_ceil(BLOCK) * bb];
    for (i, c) in codes.chunks_exact(code_size).enumerate() {
        let b = i / BLOCK;
        set_lane(&mut out[b * bb..(b + 1) * bb], i % BLOCK, c);
    }
    out
}

/// A per-query (per-list) table quantized to bytes, laid out `[mp][16]`.
#[derive(Clone, Debug)]
pub struct FastTable {
    /// `mp × 16` byte entries.
    pub lut: Vec<u8>,
    /// Added to every estimate: the caller's bias plus each row's minimum.
    pub offset: f32,
    /// Multiplies a sum of entries into distance units (`1 / s`).
    pub scale: f32,
}

impl FastTable {
    /// An all-zero table for `mp` sub-quantizers.
    pub fn zeros(mp: usize) -> FastTable {
        FastTable {
            lut: vec![0; mp * 16],
            offset: 0.0,
            scale: 0.0,
        }
    }

    /// Quantizes `t` (`mp × 16` floats, `mp ≤ 256`) with `bias` added to every
    /// estimate; refills `self` (no allocation when the size is unchanged).
    ///
    /// Runs once per probed list over `mp × 16` entries (4,096 for 128
    /// sub-quantizers), so it has an AVX2 version: the portable one, compiled for
    /// baseline x86-64, cost as much as scanning the list's ~1000 codes.
    pub fn quantize(&mut self, t: &[f32], bias: f32) {
        assert!(t.len().is_multiple_of(16) && t.len() / 16 <= 2 * MAX_CODE_SIZE);
        self.lut.resize(t.len(), 0);
        let rows = t.len() / 16;
        let mut mins = [0f32; 2 * MAX_CODE_SIZE];
        let mut spans = [0f32; 2 * MAX_CODE_SIZE];
        row_ranges(t, &mut mins[..rows], &mut spans[..rows]);
        let mut offset = bias as f64;
        let mut span = 0f32;
        for (lo, sp) in mins[..rows].iter_mut().zip(&spans[..rows]) {
            if !lo.is_finite() {
                *lo = 0.0;
            }
            offset += *lo as f64;
            if sp.is_finite() {
                span = span.max(*sp);
            }
        }
        let s = if span > 0.0 { 255.0 / span } else { 0.0 };
        quantize_rows(t, &mins[..rows], s, &mut self.lut);
        self.offset = offset as f32;
        self.scale = if s > 0.0 { 1.0 / s } else { 0.0 };
    }

    /// The float estimate of a byte sum.
    #[inline]
    pub fn estimate(&self, sum: u16) -> f32 {
        self.offset + sum as f32 * self.scale
    }
}

/// Per 16-entry row of `t`: its minimum and `max - min`.
fn row_ranges(t: &[f32], mins: &mut [f32], spans: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 detected; the kernel reads t.len() / 16 rows and
            // writes as many entries of mins/spans (callers size them so).
            unsafe { x86::row_ranges_avx2(t, mins, spans) };
            return;
        }
    }
    row_ranges_scalar(t, mins, spans)
}

fn row_ranges_scalar(t: &[f32], mins: &mut [f32], spans: &mut [f32]) {
    for ((row, lo_out), sp_out) in t.chunks_exact(16).zip(mins).zip(spans) {
        let (mut lo, mut hi) = (row[0], row[0]);
        for &v in &row[1..] {
            lo = if v < lo { v } else { lo };
            hi = if v > hi { v } else { hi };
        }
        *lo_out = lo;
        *sp_out = hi - lo;
    }
}

/// `lut[q][k] = round_half_up((t[q][k] - mins[q]) × s)`, saturated to 0..=255
/// (NaN gives 0).
fn quantize_rows(t: &[f32], mins: &[f32], s: f32, lut: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 detected; t, lut have mins.len() rows of 16.
            unsafe { x86::quantize_rows_avx2(t, mins, s, lut) };
            return;
        }
    }
    quantize_rows_scalar(t, mins, s, lut)
}

fn quantize_rows_scalar(t: &[f32], mins: &[f32], s: f32, lut: &mut [u8]) {
    for ((row, out), &lo) in t.chunks_exact(16).zip(lut.chunks_exact_mut(16)).zip(mins) {
        for (v, o) in row.iter().zip(out) {
            let x = (v - lo) * s + 0.5;
            // Truncation of a value ≥ 0.5 rounds half up; `as` saturates (and
            // maps NaN to 0) like the AVX2 pack instructions.
            *o = if x >= 255.0 { 255 } else { x as i32 as u8 };
        }
    }
}

/// Byte sums of every lane of `blocks` (whole blocks of `code_size`-byte codes):
/// `out[i] = Σ_q lut[q][nibble(code_i, q)]`. `out.len()` must be
/// `32 × blocks` lanes.
pub fn scan(table: &FastTable, blocks: &[u8], code_size: usize, out: &mut [u16]) {
    let lut = &table.lut[..];
    let bb = block_bytes(code_size);
    assert!(code_size > 0 && code_size <= MAX_CODE_SIZE);
    assert_eq!(lut.len(), 32 * code_size, "table is for another code size");
    assert!(blocks.len().is_multiple_of(bb));
    assert_eq!(out.len(), blocks.len() / bb * BLOCK);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            for (b, o) in blocks.chunks_exact(bb).zip(out.chunks_exact_mut(BLOCK)) {
                // SAFETY: AVX2 was detected just above; the slices have the lengths
                // the kernel reads and writes (checked by the asserts above).
                unsafe { x86::block_avx2(lut, b, o) };
            }
            return;
        }
    }
    scan_scalar(table, blocks, code_size, out)
}

/// The largest byte sum whose estimate ([`FastTable::estimate`]) may be at most
/// `below`: every lane whose estimate is at most `below` has a sum at most this
/// (the converse need not hold). `u16::MAX` (every lane) when `below` is NaN or
/// the table cannot be inverted; `None` when no sum can qualify.
pub fn sum_limit(table: &FastTable, below: f32) -> Option<u16> {
    let (offset, scale) = (table.offset as f64, table.scale as f64);
    if below.is_nan() || !offset.is_finite() || !scale.is_finite() || scale <= 0.0 {
        return Some(u16::MAX);
    }
    if below == f32::INFINITY {
        return Some(u16::MAX);
    }
    // The estimate is computed in f32: `offset + sum × scale` rounds twice, by
    // at most an ulp of the largest magnitude involved each time. The slack
    // covers four such ulps (in sums) plus one for the floor.
    let big = offset.abs().max((below as f64).abs()) + u16::MAX as f64 * scale;
    let slack = 4.0 * big * f32::EPSILON as f64 / scale + 1.0;
    let t = ((below as f64 - offset) / scale + slack).floor();
    if t < 0.0 {
        None
    } else if t >= u16::MAX as f64 {
        Some(u16::MAX)
    } else {
        Some(t as u16)
    }
}

/// Bit `j` set for each lane `j` of `sums` at most `limit` (`None`: no lane).
#[inline]
pub fn lanes_at_most(sums: &[u16; BLOCK], limit: Option<u16>) -> u32 {
    let Some(limit) = limit else {
        return 0;
    };
    if limit == u16::MAX {
        return u32::MAX;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 detected; sums is 32 u16 (64 bytes).
            return unsafe { x86::lanes_at_most_avx2(sums, limit) };
        }
    }
    lanes_at_most_scalar(sums, limit)
}

fn lanes_at_most_scalar(sums: &[u16; BLOCK], limit: u16) -> u32 {
    sums.iter()
        .enumerate()
        .fold(0u32, |m, (j, &s)| m | (u32::from(s <= limit) << j))
}

/// The reference implementation of [`scan`] (also the fallback on CPUs without
/// AVX2).
pub fn scan_scalar(table: &FastTable, blocks: &[u8], code_size: usize, out: &mut [u16]) {
    let lut = &table.lut[..];
    let bb = block_bytes(code_size);
    for (b, o) in blocks.chunks_exact(bb).zip(out.chunks_exact_mut(BLOCK)) {
        o.fill(0);
        for (g, row) in b.chunks_exact(16).zip(lut.chunks_exact(16)) {
            for j in 0..16 {
                o[j] += row[(g[j] & 15) as usize] as u16;
                o[j + 16] += row[(g[j] >> 4) as usize] as u16;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Minimum and maximum of 8 lanes, as scalars.
    #[target_feature(enable = "avx2")]
    fn hmin_hmax(lo: __m256, hi: __m256) -> (f32, f32) {
        let lo = _mm_min_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps::<1>(lo));
        let hi = _mm_max_ps(_mm256_castps256_ps128(hi), _mm256_extractf128_ps::<1>(hi));
        let lo = _mm_min_ps(lo, _mm_movehl_ps(lo, lo));
        let hi = _mm_max_ps(hi, _mm_movehl_ps(hi, hi));
        let lo = _mm_min_ss(lo, _mm_shuffle_ps::<1>(lo, lo));
        let hi = _mm_max_ss(hi, _mm_shuffle_ps::<1>(hi, hi));
        (_mm_cvtss_f32(lo), _mm_cvtss_f32(hi))
    }

    /// See `row_ranges`.
    ///
    /// # Safety
    /// AVX2 must be available; `mins` and `spans` have `t.len() / 16` entries.
    #[target_feature(enable = "avx2")]
    pub unsafe fn row_ranges_avx2(t: &[f32], mins: &mut [f32], spans: &mut [f32]) {
        for ((row, lo_out), sp_out) in t.chunks_exact(16).zip(mins).zip(spans) {
            // SAFETY: row has 16 floats: two unaligned 8-float loads.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_ps(row.as_ptr()),
                    _mm256_loadu_ps(row.as_ptr().add(8)),
                )
            };
            let (lo, hi) = hmin_hmax(_mm256_min_ps(a, b), _mm256_max_ps(a, b));
            *lo_out = lo;
            *sp_out = hi - lo;
        }
    }

    /// See `quantize_rows`.
    ///
    /// # Safety
    /// AVX2 must be available; `t` and `lut` have `mins.len()` rows of 16.
    #[target_feature(enable = "avx2")]
    pub unsafe fn quantize_rows_avx2(t: &[f32], mins: &[f32], s: f32, lut: &mut [u8]) {
        let sv = _mm256_set1_ps(s);
        let half = _mm256_set1_ps(0.5);
        let top = _mm256_set1_ps(255.0);
        for ((row, out), &lo) in t.chunks_exact(16).zip(lut.chunks_exact_mut(16)).zip(mins) {
            let lov = _mm256_set1_ps(lo);
            // SAFETY: row has 16 floats, out 16 bytes; unaligned loads/stores.
            unsafe {
                let a = _mm256_loadu_ps(row.as_ptr());
                let b = _mm256_loadu_ps(row.as_ptr().add(8));
                // Same operations, in the same order, as the scalar version (no
                // fused multiply-add), so both give identical bytes.
                let a = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(a, lov), sv), half);
                let b = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b, lov), sv), half);
                // Clamp at 255 (min_ps returns its second operand when either is
                // NaN, so NaN stays NaN), truncate to i32 (NaN gives i32::MIN,
                // which the saturating packs turn into 0, as the scalar `as`
                // does), then pack 16 × i32 → 16 × u8.
                let a = _mm256_min_ps(top, a);
                let b = _mm256_min_ps(top, b);
                let ia = _mm256_cvttps_epi32(a);
                let ib = _mm256_cvttps_epi32(b);
                // packs interleaves 128-bit halves: [a0-3 b0-3 | a4-7 b4-7].
                let p = _mm256_packs_epi32(ia, ib);
                let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(p);
                let bytes =
                    _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256::<1>(p));
                _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, bytes);
            }
        }
    }

    /// See `lanes_at_most`.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2")]
    pub unsafe fn lanes_at_most_avx2(sums: &[u16; 32], limit: u16) -> u32 {
        let l = _mm256_set1_epi16(limit as i16);
        // SAFETY: sums is 64 bytes: two unaligned 32-byte loads.
        let (a, b) = unsafe {
            (
                _mm256_loadu_si256(sums.as_ptr() as *const __m256i),
                _mm256_loadu_si256(sums.as_ptr().add(16) as *const __m256i),
            )
        };
        // Unsigned s <= limit  <=>  min(s, limit) == s.
        let ma = _mm256_cmpeq_epi16(_mm256_min_epu16(a, l), a);
        let mb = _mm256_cmpeq_epi16(_mm256_min_epu16(b, l), b);
        // Words to bytes (packs keeps -1/0 as -1/0), lanes back in order.
        let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi16(ma, mb));
        _mm256_movemask_epi8(p) as u32
    }

    /// Scores one block. `lut` and `block` are both `32 × code_size` bytes: pairs
    /// of 16-byte rows (table) and groups (codes) for sub-quantizers `2p`, `2p + 1`.
    ///
    /// # Safety
    /// The CPU must support AVX2; `lut.len() == block.len()`, a multiple of 32,
    /// and `out.len() == 32`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn block_avx2(lut: &[u8], block: &[u8], out: &mut [u16]) {
        debug_assert!(lut.len() == block.len() && block.len().is_multiple_of(32));
        debug_assert_eq!(out.len(), 32);
        let mask = _mm256_set1_epi8(0x0F);
        let zero = _mm256_setzero_si256();
        // The shuffled bytes are added as 16-bit words, without widening each
        // one (four unpacks per pair of sub-quantizers, all on the shuffle
        // ports, were the kernel's bottleneck): word i of `even_lo` sums
        // `b[2i] + 256 × b[2i + 1]` (mod 2^16) of the low-lane results, and
        // `odd_lo` sums `b[2i + 1]` alone (each word shifted right by 8). The
        // even bytes' sums are then `even_lo - (odd_lo << 8)` (mod 2^16, exact:
        // a half sums at most 128 sub-quantizers of ≤ 255, below 2^16).
        // `_lo` holds lanes 0–15, `_hi` lanes 16–31; in each 256-bit register
        // the low 128-bit half sums even sub-quantizers, the high half odd ones.
        let (mut even_lo, mut odd_lo, mut even_hi, mut odd_hi) = (zero, zero, zero, zero);
        let pairs = block.len() / 32;
        for p in 0..pairs {
            // SAFETY: p < pairs, so bytes 32p..32p+32 are inside both slices;
            // loadu has no alignment requirement.
            let (c, t) = unsafe {
                (
                    _mm256_loadu_si256(block.as_ptr().add(32 * p) as *const __m256i),
                    _mm256_loadu_si256(lut.as_ptr().add(32 * p) as *const __m256i),
                )
            };
            let lo = _mm256_and_si256(c, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(c), mask);
            let rlo = _mm256_shuffle_epi8(t, lo);
            let rhi = _mm256_shuffle_epi8(t, hi);
            even_lo = _mm256_add_epi16(even_lo, rlo);
            odd_lo = _mm256_add_epi16(odd_lo, _mm256_srli_epi16::<8>(rlo));
            even_hi = _mm256_add_epi16(even_hi, rhi);
            odd_hi = _mm256_add_epi16(odd_hi, _mm256_srli_epi16::<8>(rhi));
        }
        // Words → per-lane sums: even bytes (lanes 0, 2, …) and odd bytes
        // (lanes 1, 3, …) interleaved back into lane order.
        let split = |even: __m256i, odd: __m256i| {
            let even = _mm256_sub_epi16(even, _mm256_slli_epi16::<8>(odd));
            // Both sub-quantizer halves summed: 8 words of even lanes, 8 of odd.
            let e = _mm_add_epi16(
                _mm256_castsi256_si128(even),
                _mm256_extracti128_si256::<1>(even),
            );
            let o = _mm_add_epi16(
                _mm256_castsi256_si128(odd),
                _mm256_extracti128_si256::<1>(odd),
            );
            (_mm_unpacklo_epi16(e, o), _mm_unpackhi_epi16(e, o))
        };
        let (l0, l1) = split(even_lo, odd_lo);
        let (h0, h1) = split(even_hi, odd_hi);
        // SAFETY: out has 32 u16 (64 bytes): four unaligned 16-byte stores.
        unsafe {
            let o = out.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(o, l0);
            _mm_storeu_si128(o.add(1), l1);
            _mm_storeu_si128(o.add(2), h0);
            _mm_storeu_si128(o.add(3), h1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_codes(n: usize, cs: usize, seed: u64) -> Vec<u8> {
        let mut r = StdRng::seed_from_u64(seed);
        (0..n * cs).map(|_| r.gen::<u8>()).collect()
    }

    #[test]
    fn lanes_round_trip() {
        for cs in [1, 2, 3, 24, 48, 64, 128] {
            let codes = random_codes(70, cs, cs as u64);
            let blocks = pack(&codes, cs);
            assert_eq!(blocks.len(), 3 * block_bytes(cs));
            let mut out = vec![0u8; cs];
            for (i, c) in codes.chunks_exact(cs).enumerate() {
                let b = i / BLOCK;
                get_lane(
                    &blocks[b * block_bytes(cs)..(b + 1) * block_bytes(cs)],
                    i % BLOCK,
                    &mut out,
                );
                assert_eq!(out, c, "code {i}, code size {cs}");
            }
        }
    }

    #[test]
    fn set_lane_overwrites_only_its_lane() {
        let cs = 5;
        let mut codes = random_codes(32, cs, 9);
        let mut block = pack(&codes, cs);
        let new = [0xFFu8, 0x00, 0x5A, 0xA5, 0x3C];
        set_lane(&mut block, 17, &new);
        codes[17 * cs..18 * cs].copy_from_slice(&new);
        assert_eq!(block, pack(&codes, cs));
    }

    fn float_table(mp: usize, seed: u64) -> Vec<f32> {
        let mut r = StdRng::seed_from_u64(seed);
        (0..mp * 16).map(|_| r.gen_range(-3.0f32..7.0)).collect()
    }

    /// The exact float estimate of one packed code.
    fn float_estimate(t: &[f32], bias: f32, code: &[u8]) -> f32 {
        bias + (0..2 * code.len())
            .map(|q| t[q * 16 + nibble(code, q) as usize])
            .sum::<f32>()
    }

    #[test]
    fn quantized_estimates_are_within_the_rounding_bound() {
        for cs in [1, 8, 48, 64, 128] {
            let mp = 2 * cs;
            let t = float_table(mp, cs as u64);
            let mut ft = FastTable::zeros(mp);
            ft.quantize(&t, 1.5);
            let codes = random_codes(64, cs, 3);
            let blocks = pack(&codes, cs);
            let mut sums = vec![0u16; 64];
            scan(&ft, &blocks, cs, &mut sums);
            let bound = mp as f32 * 0.5 * ft.scale * 1.0001 + 1e-3;
            for (i, c) in codes.chunks_exact(cs).enumerate() {
                let want = float_estimate(&t, 1.5, c);
                let got = ft.estimate(sums[i]);
                assert!(
                    (got - want).abs() <= bound,
                    "cs {cs} code {i}: {got} vs {want} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn constant_and_degenerate_tables() {
        let mut ft = FastTable::zeros(4);
        ft.quantize(&[2.0; 64], 0.5);
        assert_eq!(ft.lut, vec![0; 64]);
        assert_eq!(ft.estimate(0), 8.5);
        let blocks = pack(&[0x12, 0x34], 2);
        let mut s = vec![9u16; 32];
        scan(&ft, &blocks, 2, &mut s);
        assert!(s.iter().all(|&v| v == 0));
    }

    #[test]
    fn simd_quantize_equals_scalar() {
        for seed in 0..50u64 {
            let mut t = float_table(64, seed);
            if seed % 5 == 0 {
                t[7] = f32::NAN;
                t[100] = 1e30;
            }
            let rows = t.len() / 16;
            let (mut m1, mut s1) = (vec![0f32; rows], vec![0f32; rows]);
            let (mut m2, mut s2) = (vec![0f32; rows], vec![0f32; rows]);
            row_ranges(&t, &mut m1, &mut s1);
            row_ranges_scalar(&t, &mut m2, &mut s2);
            if seed % 5 != 0 {
                assert_eq!(m1, m2);
                assert_eq!(s1, s2);
            }
            let (mut l1, mut l2) = (vec![0u8; t.len()], vec![0u8; t.len()]);
            quantize_rows(&t, &m2, 255.0 / 10.0, &mut l1);
            quantize_rows_scalar(&t, &m2, 255.0 / 10.0, &mut l2);
            assert_eq!(l1, l2, "seed {seed}");
        }
    }

    /// The largest sums the kernel can meet (every entry 255, 256
    /// sub-quantizers: 65,280) come out exact: the 16-bit words it adds shuffled
    /// bytes into wrap, and the split must undo that exactly.
    #[test]
    fn simd_scan_is_exact_at_the_largest_sums() {
        for cs in [1, 2, 63, 64, 127, 128] {
            let mp = 2 * cs;
            for fill in [255u8, 254, 1] {
                let ft = FastTable {
                    lut: vec![fill; mp * 16],
                    offset: 0.0,
                    scale: 1.0,
                };
                let blocks = pack(&random_codes(2 * BLOCK, cs, cs as u64), cs);
                let (mut a, mut b) = (vec![0u16; 2 * BLOCK], vec![0u16; 2 * BLOCK]);
                scan(&ft, &blocks, cs, &mut a);
                scan_scalar(&ft, &blocks, cs, &mut b);
                assert_eq!(a, b, "code size {cs}, entries {fill}");
                assert!(a.iter().all(|&v| v as usize == mp * fill as usize));
            }
            // Alternating lanes at the extremes: lane j's table entry for its
            // nibble is 255 for even nibbles, 0 for odd ones.
            let mut lut = vec![0u8; mp * 16];
            for (k, e) in lut.iter_mut().enumerate() {
                *e = if k % 2 == 0 { 255 } else { 0 };
            }
            let ft = FastTable {
                lut,
                offset: 0.0,
                scale: 1.0,
            };
            let codes: Vec<u8> = (0..BLOCK * cs)
                .map(|i| if (i / cs) % 2 == 0 { 0x00 } else { 0x11 })
                .collect();
            let blocks = pack(&codes, cs);
            let (mut a, mut b) = (vec![0u16; BLOCK], vec![0u16; BLOCK]);
            scan(&ft, &blocks, cs, &mut a);
            scan_scalar(&ft, &blocks, cs, &mut b);
            assert_eq!(a, b, "code size {cs}, alternating");
        }
    }

    /// Every sum whose estimate is at most the bound is within `sum_limit`,
    /// at ordinary and at extreme offsets (where the f32 estimate's rounding
    /// is far coarser than one byte sum).
    #[test]
    fn sum_limit_is_conservative() {
        let cases = [
            (0.0f32, 0.01f32),
            (-3.5, 0.25),
            (1e6, 1e-3),
            (-1e6, 1e-3),
            (1e-3, 1e-7),
            (5.0, 0.0),
            (f32::NAN, 0.1),
        ];
        for (offset, scale) in cases {
            let ft = FastTable {
                lut: vec![0; 32],
                offset,
                scale,
            };
            let mut bounds: Vec<f32> = vec![f32::NEG_INFINITY, f32::INFINITY, f32::NAN, offset];
            for s in [0u16, 1, 7, 100, 1000, 30000, 65535] {
                let e = ft.estimate(s);
                bounds.extend([e, e.next_up(), e.next_down()]);
            }
            for below in bounds {
                let limit = sum_limit(&ft, below);
                for s in 0..=u16::MAX {
                    if ft.estimate(s) <= below {
                        assert!(
                            limit.is_some_and(|l| s <= l),
                            "offset {offset}, scale {scale}, bound {below}: sum {s} beyond {limit:?}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn simd_scan_equals_scalar(cs in 1usize..=128, nblocks in 1usize..4, seed in any::<u64>()) {
            let mp = 2 * cs;
            let mut ft = FastTable::zeros(mp);
            ft.quantize(&float_table(mp, seed), 0.0);
            let codes = random_codes(nblocks * BLOCK, cs, seed ^ 1);
            let blocks = pack(&codes, cs);
            let mut a = vec![0u16; nblocks * BLOCK];
            let mut b = vec![0u16; nblocks * BLOCK];
            scan(&ft, &blocks, cs, &mut a);
            scan_scalar(&ft, &blocks, cs, &mut b);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn simd_lanes_at_most_equals_scalar(sums in proptest::array::uniform32(any::<u16>()), limit in any::<u16>(), pick in 0usize..32) {
            // Also a limit equal to one of the sums.
            for l in [limit, sums[pick], sums[pick].saturating_sub(1)] {
                prop_assert_eq!(lanes_at_most(&sums, Some(l)), lanes_at_most_scalar(&sums, l));
            }
            prop_assert_eq!(lanes_at_most(&sums, None), 0);
        }
    }
}
