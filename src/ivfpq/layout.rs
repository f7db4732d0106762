//! On-disk layout of an ivfpq index. Plain byte layouts, no PostgreSQL calls.
//!
//! ```text
//! block 0          meta page: MetaData (format, dims, metric, lists, code size,
//!                  where the model and directory start, build statistics)
//! blocks 1..       model pages: the trained model (IvfPqModel::to_bytes) split
//!                  across consecutive pages' contents
//! then             directory pages: one DirEntry per list (first page, page
//!                  that inserts try first)
//! then             data pages, chained per list: the codes, then
//!                  tids[cap][6]; count and next link in the special space
//! ```
//! Codes on a data page are stored one of two ways (`MetaData::blocked`):
//! - rows (8-bit codes): `codes[cap][code_size]`, entry `i` at `i × code_size`;
//! - blocks (4-bit codes): `cap / 32` blocks of 32 transposed codes in
//!   `arrw_core::fastscan`'s layout, so a scan scores 32 codes per few SIMD
//!   instructions; entry `i` is lane `i % 32` of block `i / 32`. Unused lanes of
//!   the last block hold stale or zero nibbles that scans ignore (`count` bounds
//!   every read).
//!
//! Every page has a standard header, so PostgreSQL's page checks, full-page
//! images and GenericXLog all work; the special space ends with a page-kind tag
//! that `arrw.ivfpq_check` verifies.

use super::page::{contents_capacity, contents_offset};
use arrw_core::fastscan;

pub const META_BLOCK: u32 = 0;
pub const MAGIC: u32 = 0x4152_5751; // "ARWQ"
/// 2: adds `MetaData::blocked` (4-bit codes in fast-scan blocks).
pub const FORMAT_VERSION: u32 = 2;

/// Page kinds, stored in the last two bytes of every page's special space.
pub const KIND_META: u16 = 0xA1;
pub const KIND_MODEL: u16 = 0xA2;
pub const KIND_DIR: u16 = 0xA3;
pub const KIND_DATA: u16 = 0xA4;

/// Size of a heap TID on disk (block hi, block lo, offset: 3 × u16).
pub const TID_BYTES: usize = 6;

/// Special space of meta, model and directory pages: just the kind tag.
pub const SMALL_SPECIAL: usize = 8;
/// Special space of data pages: next (u32), list (u32), count (u16), pad, kind.
pub const DATA_SPECIAL: usize = 16;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct MetaData {
    pub magic: u32,
    pub version: u32,
    pub dim: u32,
    pub lists: u32,
    pub code_size: u32,
    pub metric: u32,
    /// 1 when the index was built from no rows: it has one list and empty codes,
    /// and scans re-rank every row (exact search) until it is rebuilt.
    pub untrained: u32,
    pub model_start: u32,
    pub model_pages: u32,
    pub model_bytes: u32,
    pub dir_start: u32,
    pub dir_pages: u32,
    /// Rows encoded by the build (inserts since then are counted by ivfpq_info).
    pub built_rows: u64,
    /// Changes on every build; keys the per-backend model cache.
    pub generation: u64,
    /// `probes`/`rerank` index options captured at build (0 = not set).
    pub probes: u32,
    pub rerank: u32,
    /// 1 when data pages hold codes in fast-scan blocks of 32 (4-bit codes).
    pub blocked: u32,
    pub _pad: u32,
}

pub const META_BYTES: usize = std::mem::size_of::<MetaData>();

#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct DirEntry {
    /// First data page of the list (InvalidBlockNumber when empty).
    pub head: u32,
    /// Page where inserts start looking for room (follow `next` from there).
    pub insert: u32,
}

pub const DIR_ENTRY_BYTES: usize = std::mem::size_of::<DirEntry>();
pub const DIR_PER_PAGE: usize = contents_capacity(SMALL_SPECIAL) / DIR_ENTRY_BYTES;
pub const MODEL_PER_PAGE: usize = contents_capacity(SMALL_SPECIAL);

pub const INVALID_BLOCK: u32 = u32::MAX;

fn rd<T: Copy>(bytes: &[u8], off: usize) -> T {
    assert!(off + std::mem::size_of::<T>() <= bytes.len());
    // SAFETY: bounds checked above; read_unaligned has no alignment requirement
    // and T is a plain-old-data type (integers and repr(C) structs of them).
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(off) as *const T) }
}

fn wr<T: Copy>(bytes: &mut [u8], off: usize, v: T) {
    assert!(off + std::mem::size_of::<T>() <= bytes.len());
    // SAFETY: bounds checked above; write_unaligned has no alignment requirement.
    unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().add(off) as *mut T, v) }
}

pub fn page_kind(page: &[u8]) -> u16 {
    rd::<u16>(page, page.len() - 2)
}

pub fn set_page_kind(page: &mut [u8], kind: u16) {
    let n = page.len();
    wr::<u16>(page, n - 2, kind)
}

pub fn read_meta(page: &[u8]) -> MetaData {
    rd(page, contents_offset())
}

pub fn write_meta(page: &mut [u8], m: &MetaData) {
    wr(page, contents_offset(), *m)
}

pub fn read_dir(page: &[u8], slot: usize) -> DirEntry {
    rd(page, contents_offset() + slot * DIR_ENTRY_BYTES)
}

pub fn write_dir(page: &mut [u8], slot: usize, e: DirEntry) {
    wr(page, contents_offset() + slot * DIR_ENTRY_BYTES, e)
}

/// The directory block and slot of `list`.
pub fn dir_location(meta: &MetaData, list: u32) -> (u32, usize) {
    let l = list as usize;
    (meta.dir_start + (l / DIR_PER_PAGE) as u32, l % DIR_PER_PAGE)
}

/// Data page geometry for one code size and code layout.
#[derive(Clone, Copy, Debug)]
pub struct DataGeom {
    pub code_size: usize,
    pub capacity: usize,
    /// Codes in fast-scan blocks of 32 (see the module docs).
    pub blocked: bool,
}

impl DataGeom {
    /// `blocked` needs `code_size > 0`; a zero code size always uses rows.
    pub fn new(code_size: usize, blocked: bool) -> DataGeom {
        let room = contents_capacity(DATA_SPECIAL);
        if blocked && code_size > 0 {
            let per_block = fastscan::block_bytes(code_size) + fastscan::BLOCK * TID_BYTES;
            DataGeom {
                code_size,
                capacity: (room / per_block) * fastscan::BLOCK,
                blocked: true,
            }
        } else {
            DataGeom {
                code_size,
                capacity: room / (code_size + TID_BYTES),
                blocked: false,
            }
        }
    }

    /// The geometry of an index's data pages.
    pub fn of(meta: &MetaData) -> DataGeom {
        DataGeom::new(meta.code_size as usize, meta.blocked != 0)
    }

    fn codes_off(&self) -> usize {
        contents_offset()
    }

    fn block_bytes(&self) -> usize {
        fastscan::block_bytes(self.code_size)
    }

    fn tids_off(&self) -> usize {
        contents_offset() + self.capacity * self.code_size
    }

    /// Bytes of contents in use when the page is full (pd_lower target).
    pub fn contents_len(&self) -> usize {
        self.capacity * (self.code_size + TID_BYTES)
    }

    fn special_off(&self, page: &[u8]) -> usize {
        page.len() - DATA_SPECIAL
    }

    pub fn next(&self, page: &[u8]) -> u32 {
        rd(page, self.special_off(page))
    }

    pub fn set_next(&self, page: &mut [u8], next: u32) {
        let o = self.special_off(page);
        wr(page, o, next)
    }

    pub fn list(&self, page: &[u8]) -> u32 {
        rd(page, self.special_off(page) + 4)
    }

    pub fn set_list(&self, page: &mut [u8], list: u32) {
        let o = self.special_off(page) + 4;
        wr(page, o, list)
    }

    pub fn count(&self, page: &[u8]) -> usize {
        rd::<u16>(page, self.special_off(page) + 8) as usize
    }

    pub fn set_count(&self, page: &mut [u8], n: usize) {
        let o = self.special_off(page) + 8;
        wr(page, o, n as u16)
    }

    /// Row layout: the codes of the page's `count` entries, contiguous.
    pub fn codes<'p>(&self, page: &'p [u8]) -> &'p [u8] {
        debug_assert!(!self.blocked);
        let n = self.count(page).min(self.capacity);
        &page[self.codes_off()..self.codes_off() + n * self.code_size]
    }

    /// Block layout: the whole blocks that hold the page's `count` entries.
    pub fn blocks<'p>(&self, page: &'p [u8]) -> &'p [u8] {
        debug_assert!(self.blocked);
        let n = self.count(page).min(self.capacity);
        let len = n.div_ceil(fastscan::BLOCK) * self.block_bytes();
        &page[self.codes_off()..self.codes_off() + len]
    }

    /// Copies entry `i`'s code (packed, `code_size` bytes) into `out`.
    pub fn code(&self, page: &[u8], i: usize, out: &mut [u8]) {
        assert!(i < self.capacity && out.len() == self.code_size);
        if self.blocked {
            let bb = self.block_bytes();
            let b = self.codes_off() + (i / fastscan::BLOCK) * bb;
            fastscan::get_lane(&page[b..b + bb], i % fastscan::BLOCK, out);
        } else {
            let c = self.codes_off() + i * self.code_size;
            out.copy_from_slice(&page[c..c + self.code_size]);
        }
    }

    fn set_code(&self, page: &mut [u8], i: usize, code: &[u8]) {
        assert!(i < self.capacity && code.len() == self.code_size);
        if self.blocked {
            let bb = self.block_bytes();
            let b = self.codes_off() + (i / fastscan::BLOCK) * bb;
            fastscan::set_lane(&mut page[b..b + bb], i % fastscan::BLOCK, code);
        } else {
            let c = self.codes_off() + i * self.code_size;
            page[c..c + self.code_size].copy_from_slice(code);
        }
    }

    pub fn tid(&self, page: &[u8], i: usize) -> [u8; TID_BYTES] {
        rd(page, self.tids_off() + i * TID_BYTES)
    }

    /// Appends one entry; the caller checked `count < capacity`.
    pub fn push(&self, page: &mut [u8], code: &[u8], tid: [u8; TID_BYTES]) {
        let n = self.count(page);
        assert!(n < self.capacity && code.len() == self.code_size);
        self.set_code(page, n, code);
        wr(page, self.tids_off() + n * TID_BYTES, tid);
        self.set_count(page, n + 1);
    }

    /// Removes the entries whose index `dead(i)` says, keeping the others in
    /// order; returns how many were removed.
    pub fn retain(&self, page: &mut [u8], mut dead: impl FnMut(usize) -> bool) -> usize {
        let n = self.count(page).min(self.capacity);
        let mut keep = 0;
        let mut code = vec![0u8; self.code_size];
        for i in 0..n {
            if dead(i) {
                continue;
            }
            if keep != i {
                self.code(page, i, &mut code);
                self.set_code(page, keep, &code);
                let (src, dst) = (
                    self.tids_off() + i * TID_BYTES,
                    self.tids_off() + keep * TID_BYTES,
                );
                page.copy_within(src..src + TID_BYTES, dst);
            }
            keep += 1;
        }
        self.set_count(page, keep);
        n - keep
    }
}

/// Encodes a heap TID as 6 bytes (PostgreSQL's ItemPointerData layout).
pub fn tid_bytes(block: u32, offset: u16) -> [u8; TID_BYTES] {
    let mut b = [0u8; TID_BYTES];
    b[0..2].copy_from_slice(&((block >> 16) as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&(block as u16).to_ne_bytes());
    b[4..6].copy_from_slice(&offset.to_ne_bytes());
    b
}

/// Decodes [`tid_bytes`].
pub fn tid_parts(b: [u8; TID_BYTES]) -> (u32, u16) {
    let hi = u16::from_ne_bytes([b[0], b[1]]) as u32;
    let lo = u16::from_ne_bytes([b[2], b[3]]) as u32;
    ((hi << 16) | lo, u16::from_ne_bytes([b[4], b[5]]))
}

/// A TID packed into a u64 (for candidate heaps).
pub fn tid_u64(b: [u8; TID_BYTES]) -> u64 {
    let (blk, off) = tid_parts(b);
    ((blk as u64) << 16) | off as u64
}

pub fn u64_tid(v: u64) -> (u32, u16) {
    ((v >> 16) as u32, v as u16)
}
