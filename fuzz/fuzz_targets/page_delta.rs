//! WAL page deltas (`arrw_core::page_delta`) on arbitrary pages: the header's
//! bounds come from the input, so most are nonsense.
//!
//! The first 4 bytes are the old page's pd_lower and pd_upper, the next 4 the
//! new page's; the rest fills the old page (cycled) and is then read as
//! 3-byte edits (offset hi, offset lo, value) that make the new page from it.
//! Invariants: nothing panics; a delta is never larger than `MAX_DELTA`;
//! replaying it onto a replica's copy of the old page (hole zeroed) gives the
//! new page as a replica holds it; a delta limited to ranges that hold every
//! edit replays the same; `apply_delta` of the raw input bytes returns.

#![no_main]

use arrw_core::layout::PAGE_SIZE;
use arrw_core::page_delta::{apply_delta, as_replayed, page_delta, page_delta_within, MAX_DELTA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let (bounds, rest) = data.split_at(8);
    let mut old = vec![0u8; PAGE_SIZE];
    for (i, b) in old.iter_mut().enumerate().skip(16) {
        *b = rest[i % rest.len()];
    }
    old[12..16].copy_from_slice(&bounds[0..4]);
    let mut new = old.clone();
    new[12..16].copy_from_slice(&bounds[4..8]);
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for e in rest.chunks_exact(3).take(64) {
        let at = (u16::from_be_bytes([e[0], e[1]]) as usize % (PAGE_SIZE - 16)) + 16;
        new[at] = e[2];
        ranges.push((at, at + 1));
    }
    ranges.sort_unstable();
    ranges.push((12, 16));
    ranges.sort_unstable();

    let mut d = Vec::new();
    if page_delta(&old, &new, &mut d).is_ok() {
        assert!(d.len() <= MAX_DELTA, "delta of {} bytes", d.len());
        let mut replica = as_replayed(&old);
        apply_delta(&mut replica, &d).expect("our own delta applies");
        assert_eq!(replica, as_replayed(&new), "replay differs");
        let mut w = Vec::new();
        page_delta_within(&old, &new, &ranges, &mut w).expect("same bounds as above");
        let mut replica = as_replayed(&old);
        apply_delta(&mut replica, &w).expect("our own delta applies");
        assert_eq!(replica, as_replayed(&new), "replay of the ranged delta differs");
    }
    let mut page = old.clone();
    let _ = apply_delta(&mut page, rest);
});
