//! Feeds damaged ivfpq index images to the page readers every scan, insert and
//! VACUUM goes through (`arrw_core::layout`: meta, directory and chain checks).
//!
//! The first byte picks a sound starting image (lists, code layout, pages per
//! list); the rest is a list of 4-byte mutations (block, offset hi, offset lo,
//! value) applied to it, so the fuzzer spends its time on images that get past
//! the magic number. Images with a refine code put each data page's fine pages
//! after it (their links, kinds and owners are read as scans read them).
//! Invariants: the walk never panics, never loops (it
//! returns), and a walk that succeeds read no list longer than the data pages
//! can hold. The same damaged bytes read as heap pages by the re-rank's
//! prefetch hint (`heap_item_offset`) give an offset inside the page or None.

#![no_main]

use arrw_core::layout::{example_image_refined, heap_item_offset, walk_image, DataGeom, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, muts)) = data.split_first() else {
        return;
    };
    let lists = 1 + (sel & 3) as u32;
    let blocked = sel & 4 != 0;
    let code_size = if blocked { 4 } else { 8 };
    let per_list = 1 + ((sel >> 3) & 3) as u32;
    let fill = if sel & 0x20 != 0 { usize::MAX } else { 17 };
    // Bit 7: an index with a refine code (fine pages after each data page).
    let refine = if sel & 0x80 != 0 { 4 } else { 0 };
    let mut pages = example_image_refined(lists, code_size, blocked, per_list, fill, refine);
    let n = pages.len();
    for m in muts.chunks_exact(4) {
        let blk = m[0] as usize % n;
        let off = u16::from_be_bytes([m[1], m[2]]) as usize % PAGE_SIZE;
        pages[blk][off] = m[3];
    }
    for (m, page) in muts.chunks_exact(4).zip(pages.iter().cycle()) {
        if let Some(at) = heap_item_offset(page, u16::from_be_bytes([m[0], m[3]])) {
            assert!(at < PAGE_SIZE, "item offset {at}");
        }
    }
    let refs: Vec<&[u8]> = pages.iter().map(|p| p.as_slice()).collect();
    if let Ok(sizes) = walk_image(&refs) {
        let cap = DataGeom::new(code_size, blocked).capacity;
        let total: usize = sizes.iter().sum();
        assert!(total <= cap * n, "{total} entries from {n} pages");
    }
});
