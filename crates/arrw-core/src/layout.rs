//! On-disk layout of an ivfpq index, and the checks every reader applies to
//! what it reads from a page. Plain byte layouts, no PostgreSQL calls.
//!
//! ```text
//! block 0          meta page: MetaData (format, dims, metric, lists, code size,
//!                  where the model and directory start, build statistics)
//! blocks 1..       model pages: the trained model (IvfPqModel::to_bytes), its
//!                  refine quantizer, and a seal (`seal_model`), split
//!                  across consecutive pages' contents
//! then             directory pages: one DirEntry per list (first page, page
//!                  that inserts try first)
//! then             data pages, chained per list: the codes, then
//!                  tids[cap][6]; count, next link and fine link in the
//!                  special space; with a refine code (`MetaData::refine_bits`),
//!                  each data page is followed by its `FineGeom::pages` fine
//!                  pages: entry `i`'s (tid, refine code) at fine page
//!                  `i / per_page`, slot `i % per_page`
//! ```
//! A fine entry is used only when its TID equals its data entry's: a crash
//! between the records that write a data page and its fine pages, or a VACUUM
//! racing an insert, can leave fine entries that do not match, and a scan then
//! re-ranks that row from the table instead. Wrong fine data costs time, never a
//! wrong or missing row.
//! Codes on a data page are stored one of two ways (`MetaData::blocked`):
//! - rows (8-bit codes): `codes[cap][code_size]`, entry `i` at `i × code_size`;
//! - blocks (4-bit codes): `cap / 32` blocks of 32 transposed codes in
//!   [`crate::fastscan`]'s layout, so a scan scores 32 codes per few SIMD
//!   instructions; entry `i` is lane `i % 32` of block `i / 32`. Unused lanes of
//!   the last block hold stale or zero nibbles that scans ignore (`count` bounds
//!   every read).
//!
//! Every page has a standard PostgreSQL page header, so PostgreSQL's page
//! checks, full-page images and generic WAL records all work; the special space ends
//! with a page-kind tag.
//!
//! # Reading untrusted pages
//!
//! Index pages can be damaged (disk, bugs, someone writing into the file), and
//! every block number and count on them steers a read. So nothing read from a
//! page is used before one of the checks here accepts it: [`check_meta`] (the
//! meta page's block ranges and sizes against the index's size), [`check_dir_page`]
//! and [`check_dir_entry`] (a list's head and insert page), [`DataGeom::check`]
//! (a data page's kind, list, count) and [`Chain`] (every link of a list's
//! chain is a data block of the index, and the chain ends). They return
//! [`Corrupt`] instead of panicking, for any bytes.
//!
//! The checks of a whole page ([`read_meta_page`], [`check_model_page`],
//! [`check_dir_page`], [`DataGeom::check`], [`FineGeom::check`]) also hold
//! its header's `pd_lower`, `pd_upper` and `pd_special` to the values its
//! layout gives them ([`check_bounds`]): WAL and every page write treat the
//! bytes between `pd_lower` and `pd_upper` as free space and zero them, so
//! bounds moved onto a page's contents would let the next write erase what it
//! just wrote.

use crate::fastscan;
use std::fmt;

/// PostgreSQL's BLCKSZ (the extension checks it matches at compile time).
pub const PAGE_SIZE: usize = 8192;
/// PostgreSQL's SizeOfPageHeaderData (checked by the extension, too).
pub const PAGE_HEADER_BYTES: usize = 24;

/// Offset of the contents area (after the MAXALIGNed page header).
pub const fn contents_offset() -> usize {
    (PAGE_HEADER_BYTES + 7) & !7
}

/// Bytes available for contents on a page with `special` bytes of special space.
pub const fn contents_capacity(special: usize) -> usize {
    PAGE_SIZE - contents_offset() - ((special + 7) & !7)
}

pub const META_BLOCK: u32 = 0;
pub const MAGIC: u32 = 0x4152_5751; // "ARWQ"
/// 2: adds `MetaData::blocked` (4-bit codes in fast-scan blocks).
/// 3: adds the refine code (`MetaData::refine_bits`, fine pages, the data
/// page's fine link).
pub const FORMAT_VERSION: u32 = 3;

/// Whether a meta page's format number is one an arrw could have written:
/// an older format (1 on), or a newer one up to 16 past this arrw's (a later
/// arrw's index, which this one cannot read: the REINDEX error). Anything
/// else (0, or a number no release will reach, as a damaged word reads) is
/// damage to the meta page.
pub fn plausible_format(version: u32) -> bool {
    (1..=FORMAT_VERSION + 16).contains(&version)
}

/// Page kinds, stored in the last two bytes of every page's special space.
pub const KIND_META: u16 = 0xA1;
pub const KIND_MODEL: u16 = 0xA2;
pub const KIND_DIR: u16 = 0xA3;
pub const KIND_DATA: u16 = 0xA4;
pub const KIND_FINE: u16 = 0xA5;

/// Size of a heap TID on disk (block hi, block lo, offset: 3 × u16).
pub const TID_BYTES: usize = 6;

/// Special space of meta, model and directory pages: just the kind tag.
pub const SMALL_SPECIAL: usize = 8;
/// Special space of data pages: next (u32), list (u32), count (u16), fine (u32
/// at offset 10: the first fine page, or INVALID_BLOCK), kind (u16).
pub const DATA_SPECIAL: usize = 16;
/// Special space of fine pages: owner data block (u32), pad, kind.
pub const FINE_SPECIAL: usize = 8;

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
    /// Bytes at the end of the model pages' blob that hold the refine
    /// quantizer (`arrw_core::refine::ResidualSq::to_bytes`); 0 without one.
    pub refine_bytes: u32,
    /// The default `probes` the build measured for this index's data
    /// (`arrw_core::calibrate`); 0: none (an index built before it was
    /// measured, or from too few rows), and the fixed default applies.
    /// At most `lists` (`check_meta`).
    pub probes: u32,
    /// 1 when data pages hold codes in fast-scan blocks of 32 (4-bit codes).
    pub blocked: u32,
    /// Bits per dimension of the refine code (0: none, 4 or 8).
    pub refine_bits: u32,
    /// The measured default for scans past their first 10 rows (the same
    /// share of the stand-ins' 100 nearest rows; `arrw_core::calibrate`); 0:
    /// none. At most `lists`. Indexes built before it have zeros here: the
    /// meta page's bytes past the older, shorter struct were zero.
    pub deep_probes: u32,
    /// An untrained index (`untrained = 1`): the dimensions of the first row
    /// inserted since the build, which every later row must have (the model,
    /// built from no rows, cannot say; a column's declared dimensions can be
    /// dropped by `ALTER COLUMN` without a rebuild); 0 until then, and always
    /// 0 on a trained index. Written by the first insert (src/ivfpq/page.rs,
    /// `record_untrained_dim`); indexes of earlier builds have 0 here.
    pub untrained_dim: u32,
}

pub const META_BYTES: usize = std::mem::size_of::<MetaData>();

impl MetaData {
    /// The first block after the directory: data pages start here.
    pub fn first_data_block(&self) -> u32 {
        self.dir_start.saturating_add(self.dir_pages)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct DirEntry {
    /// First data page of the list (every list has one, from the build on).
    pub head: u32,
    /// Page where inserts start looking for room (follow `next` from there).
    pub insert: u32,
}

pub const DIR_ENTRY_BYTES: usize = std::mem::size_of::<DirEntry>();
pub const DIR_PER_PAGE: usize = contents_capacity(SMALL_SPECIAL) / DIR_ENTRY_BYTES;
pub const MODEL_PER_PAGE: usize = contents_capacity(SMALL_SPECIAL);

/// The end of a sealed model blob: this tag, then a 64-bit hash of the bytes
/// before it ([`seal_model`]).
pub const SEAL_TAG: [u8; 8] = *b"arrwsum1";
/// The tag of a placeholder model's seal (an index built from no rows, whose
/// meta page says `untrained`): a meta page whose flag disagrees with the
/// model's tag is damaged. Without it a flag flipped to "trained" read the
/// placeholder of one list as the model, and errors blamed the data.
pub const PLACEHOLDER_SEAL_TAG: [u8; 8] = *b"arrwsum0";
/// Bytes [`seal_model`] appends.
pub const SEAL_BYTES: usize = 16;

/// A hash of `bytes` that changes with any change of one 8-byte word (each
/// step — xor, rotate, multiply by an odd number — is a bijection of the
/// running value) and with the length: for damage, not for adversaries.
pub fn blob_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).rotate_left(23).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    (h ^ u64::from_le_bytes(tail))
        .rotate_left(23)
        .wrapping_mul(K)
}

/// Appends [`SEAL_TAG`] and the blob's hash to the model pages' blob (the PQ
/// model, then the refine quantizer), so that a damaged model page is found
/// when the model is read: values that parse (a NaN centroid, a step of 3e38)
/// otherwise ranked rows wrongly without an error, and training itself can
/// write NaN for rows near ±f32::MAX, so no value check tells them apart.
/// `placeholder`: the model of an index built from no rows
/// ([`PLACEHOLDER_SEAL_TAG`]).
pub fn seal_model(blob: &mut Vec<u8>, placeholder: bool) {
    let h = blob_hash(blob);
    blob.extend_from_slice(if placeholder {
        &PLACEHOLDER_SEAL_TAG
    } else {
        &SEAL_TAG
    });
    blob.extend_from_slice(&h.to_le_bytes());
}

/// The payload of a model blob: checked against its seal, or the whole blob
/// when it has none (an index built before seals; damage that removes the
/// tag leaves 16 bytes the parsers refuse). `placeholder`: the meta page says
/// the index is untrained, which its seal must agree with.
pub fn unseal_model(blob: &[u8], placeholder: bool) -> Result<&[u8], String> {
    let Some(at) = blob.len().checked_sub(SEAL_BYTES) else {
        return Ok(blob);
    };
    let sealed_placeholder = match &blob[at..at + 8] {
        t if t == SEAL_TAG => false,
        t if t == PLACEHOLDER_SEAL_TAG => true,
        _ => return Ok(blob),
    };
    if sealed_placeholder != placeholder {
        return Err(if placeholder {
            "the meta page says the index is untrained, and its model pages hold a trained model"
                .into()
        } else {
            "the meta page says the index is trained, and its model pages hold the placeholder of an index built from no rows".into()
        });
    }
    let stored = u64::from_le_bytes(blob[at + 8..].try_into().expect("8 bytes"));
    let payload = &blob[..at];
    if blob_hash(payload) != stored {
        return Err("its bytes do not match the hash written when it was built".into());
    }
    Ok(payload)
}

pub const INVALID_BLOCK: u32 = u32::MAX;

/// A broken invariant found on block `block` of an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt {
    pub block: u32,
    pub what: String,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}: {}", self.block, self.what)
    }
}

fn corrupt<T>(block: u32, what: String) -> Result<T, Corrupt> {
    Err(Corrupt { block, what })
}

// The plain-old-data readers below panic on a short slice: the validating
// readers check a page's length (PAGE_SIZE) before any field read, and every
// fixed offset they use lies within a page.
fn rd<T: Copy>(bytes: &[u8], off: usize) -> T {
    assert!(off + std::mem::size_of::<T>() <= bytes.len());
    // SAFETY: read_unaligned has no alignment requirement; T is a plain-old-data
    // type (integers and repr(C) structs of them) valid for any bits; the
    // bounds were checked by the assert directly above.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(off) as *const T) }
}

fn wr<T: Copy>(bytes: &mut [u8], off: usize, v: T) {
    assert!(off + std::mem::size_of::<T>() <= bytes.len());
    // SAFETY: write_unaligned has no alignment requirement; the bounds were
    // checked by the assert directly above.
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
    (
        meta.dir_start.saturating_add((l / DIR_PER_PAGE) as u32),
        l % DIR_PER_PAGE,
    )
}

fn check_len(page: &[u8], block: u32) -> Result<(), Corrupt> {
    if page.len() != PAGE_SIZE {
        return corrupt(
            block,
            format!("page has {} bytes, not {PAGE_SIZE}", page.len()),
        );
    }
    Ok(())
}

/// Checks a page's kind tag (and its length).
pub fn check_kind(page: &[u8], block: u32, kind: u16) -> Result<(), Corrupt> {
    check_len(page, block)?;
    // The standard header's bounds: WAL deltas and full-page images skip the
    // bytes between them, so a page whose bounds are broken cannot be
    // written back faithfully (crate::page_delta).
    if let Err(b) = crate::page_delta::hole(page) {
        return corrupt(
            block,
            format!(
                "pd_lower {} and pd_upper {} bound no free space",
                b.lower, b.upper
            ),
        );
    }
    let found = page_kind(page);
    if found != kind {
        return corrupt(
            block,
            format!(
                "page kind is {found:#x}, expected {kind:#x} ({})",
                kind_name(kind)
            ),
        );
    }
    Ok(())
}

fn kind_name(kind: u16) -> &'static str {
    match kind {
        KIND_META => "meta page",
        KIND_MODEL => "model page",
        KIND_DIR => "directory page",
        KIND_DATA => "data page",
        KIND_FINE => "fine page",
        _ => "unknown",
    }
}

/// Where the special space of a page with `special` bytes of it starts:
/// PostgreSQL's `PageInit` puts `pd_special` and `pd_upper` there, and no
/// ivfpq page keeps anything between its contents and its special space, so
/// both stay there.
pub const fn special_start(special: usize) -> usize {
    PAGE_SIZE - ((special + 7) & !7)
}

/// The [`MetaData`] sizes meta pages of this format have: 80 bytes before the
/// struct grew by `deep_probes` (and `untrained_dim`, which took its padding),
/// [`META_BYTES`] since. The build sets `pd_lower` to the end of the struct it
/// wrote, so an index built by an earlier arrw of this format has the shorter
/// one (its later fields lie in its free space and read as zero, which is
/// what they mean there); `page::record_untrained_dim` raises it to the whole
/// struct when it writes one of them. A struct that grows again adds its
/// size here.
pub const META_LOWERS: [usize; 2] = [contents_offset() + 80, contents_offset() + META_BYTES];
const _: () = assert!(
    META_BYTES == 88,
    "a grown MetaData: add its size to META_LOWERS"
);

/// Checks that `page`'s header (block `blk`, a page of kind `kind` with
/// `special` bytes of special space) holds the bounds its layout gives it:
/// `pd_lower` one of `lowers` (the end of its contents area, used or not, as
/// the build and inserts set it) and `pd_upper` and `pd_special` at its
/// special space. Call after [`check_kind`] (a page of another kind has other
/// bounds, and the kind is the better message). Three compares: every read of
/// a page applies it.
///
/// Why: WAL (generic records, full-page images) and `WriteSet::commit` treat
/// the bytes between `pd_lower` and `pd_upper` as free space: they are never
/// logged, and are zeroed when the page is written. A `pd_lower` lowered onto
/// a page's unused slots, or a `pd_upper` lowered onto them, bounds only
/// zero bytes, so PostgreSQL's page check, [`check_kind`] and the
/// free-space checks all passed, and the next insert put its entry in what
/// the header calls free space: the write zeroed it, the count went up, and
/// a committed row had no index entry (hunt-121).
pub fn check_bounds(
    page: &[u8],
    blk: u32,
    kind: u16,
    lowers: &[usize],
    special: usize,
) -> Result<(), Corrupt> {
    check_len(page, blk)?;
    let lower = rd::<u16>(page, 12) as usize;
    let upper = rd::<u16>(page, 14) as usize;
    let sp = rd::<u16>(page, 16) as usize;
    let want = special_start(special);
    if lowers.contains(&lower) && upper == want && sp == want {
        return Ok(());
    }
    let lowers: Vec<String> = lowers.iter().map(|l| l.to_string()).collect();
    corrupt(
        blk,
        format!(
            "{} header has pd_lower {lower}, pd_upper {upper} and pd_special {sp}, where its \
             layout has {}, {want} and {want} (damaged bounds: a write zeroes the bytes \
             between pd_lower and pd_upper as free space)",
            kind_name(kind),
            lowers.join(" or ")
        ),
    )
}

/// [`check_kind`], then [`check_bounds`].
fn check_layout(
    page: &[u8],
    blk: u32,
    kind: u16,
    lowers: &[usize],
    special: usize,
) -> Result<(), Corrupt> {
    check_kind(page, blk, kind)?;
    check_bounds(page, blk, kind, lowers, special)
}

/// The first of `ranges` (byte ranges a write changes on a page whose free
/// space is `hole`, `pd_lower .. pd_upper`) that overlaps the free space, if
/// any. Applying a page image zeroes its free space (as generic redo does),
/// so a byte written there is lost: `WriteSet::commit` refuses such a write
/// before anything is applied or logged, whatever check let its page through.
pub fn range_in_hole(ranges: &[(usize, usize)], hole: (usize, usize)) -> Option<(usize, usize)> {
    let (lower, upper) = hole;
    ranges
        .iter()
        .copied()
        .find(|&(s, e)| s < e && lower < upper && s < upper && e > lower)
}

/// Reads the meta page: length, kind and magic, and for a page of this format
/// its header's bounds ([`check_meta_bounds`]). The format version is left to
/// the caller (an old format is not corruption, and its bounds are its own),
/// and the fields to [`check_meta`].
pub fn read_meta_page(page: &[u8]) -> Result<MetaData, Corrupt> {
    check_kind(page, META_BLOCK, KIND_META)?;
    let m = read_meta(page);
    if m.magic != MAGIC {
        return corrupt(META_BLOCK, format!("bad magic number {:#x}", m.magic));
    }
    if m.version == FORMAT_VERSION {
        check_meta_bounds(page)?;
    }
    Ok(m)
}

/// Checks the header bounds of a meta page of this format (see
/// [`META_LOWERS`] and [`check_bounds`]).
pub fn check_meta_bounds(page: &[u8]) -> Result<(), Corrupt> {
    check_bounds(page, META_BLOCK, KIND_META, &META_LOWERS, SMALL_SPECIAL)
}

/// `pd_lower` of model page `blk`: the end of its part of the model blob
/// (`MODEL_PER_PAGE` bytes, less on the last page), as the build sets it.
pub fn model_page_lower(meta: &MetaData, blk: u32) -> usize {
    let k = blk.saturating_sub(meta.model_start) as u64;
    let bytes = (meta.model_bytes as u64)
        .saturating_sub(k * MODEL_PER_PAGE as u64)
        .min(MODEL_PER_PAGE as u64);
    contents_offset() + bytes as usize
}

/// Checks that block `blk` is a model page with its layout's header bounds
/// (call [`check_meta`] first, which places the model pages).
pub fn check_model_page(page: &[u8], blk: u32, meta: &MetaData) -> Result<(), Corrupt> {
    check_layout(
        page,
        blk,
        KIND_MODEL,
        &[model_page_lower(meta, blk)],
        SMALL_SPECIAL,
    )
}

/// Checks the meta page's fields that steer reads, for an index of `nblocks`
/// blocks: the model and directory block ranges lie inside the index, in order,
/// are big enough for the model and the lists, and data pages hold at least
/// one entry (at most what a page's u16 count can say), and the count of rows
/// built fits a bigint.
pub fn check_meta(m: &MetaData, nblocks: u32) -> Result<(), Corrupt> {
    let b = META_BLOCK;
    let bad = |what: String| corrupt(b, what);
    if m.lists == 0 {
        return bad("the index has 0 lists".into());
    }
    if m.probes > m.lists || m.deep_probes > m.lists {
        return bad(format!(
            "a default of {} (deep: {}) probes exceeds the index's {} lists",
            m.probes, m.deep_probes, m.lists
        ));
    }
    if m.built_rows > i64::MAX as u64 {
        return bad(format!(
            "{} rows built, more than any table holds",
            m.built_rows
        ));
    }
    if m.untrained > 1 || m.blocked > 1 {
        return bad(format!(
            "flags untrained = {}, blocked = {} are not 0 or 1",
            m.untrained, m.blocked
        ));
    }
    if m.untrained == 0 && m.untrained_dim != 0 {
        return bad(format!(
            "a trained index records {} dimensions for rows inserted untrained",
            m.untrained_dim
        ));
    }
    if m.untrained_dim as usize > crate::text::VECTOR_MAX_DIM {
        return bad(format!(
            "rows of {} dimensions recorded, more than a vector has",
            m.untrained_dim
        ));
    }
    let model_end = m.model_start as u64 + m.model_pages as u64;
    if m.model_start == META_BLOCK || m.model_pages == 0 || model_end > m.dir_start as u64 {
        return bad(format!(
            "model pages {}..{} are not between the meta page and the directory (block {})",
            m.model_start, model_end, m.dir_start
        ));
    }
    if m.model_bytes as u64 > m.model_pages as u64 * MODEL_PER_PAGE as u64 {
        return bad(format!(
            "a model of {} bytes does not fit its {} pages",
            m.model_bytes, m.model_pages
        ));
    }
    let dir_end = m.dir_start as u64 + m.dir_pages as u64;
    if dir_end >= nblocks as u64 {
        return bad(format!(
            "directory pages {}..{dir_end} leave no data pages in an index of {nblocks} blocks",
            m.dir_start
        ));
    }
    if (m.dir_pages as u64) * (DIR_PER_PAGE as u64) < m.lists as u64 {
        return bad(format!(
            "{} directory pages cannot hold {} lists",
            m.dir_pages, m.lists
        ));
    }
    let cap = DataGeom::of(m).capacity;
    if cap == 0 || cap > u16::MAX as usize || (m.blocked != 0 && m.code_size == 0) {
        return bad(format!(
            "code size {} (blocked = {}) gives data pages no usable capacity",
            m.code_size, m.blocked
        ));
    }
    if !matches!(m.refine_bits, 0 | 4 | 8)
        || (m.refine_bits == 0) != (m.refine_bytes == 0)
        || m.refine_bytes > m.model_bytes
        || (m.refine_bits != 0 && FineGeom::of(m).is_none())
    {
        return bad(format!(
            "refine code of {} bits per dimension and {} model bytes is not possible here",
            m.refine_bits, m.refine_bytes
        ));
    }
    Ok(())
}

/// `pd_lower` of directory page `blk`: the end of the entries of the lists it
/// holds (`DIR_PER_PAGE`, fewer on the last page), as the build sets it.
/// Entries are only ever rewritten in place, so it never changes.
pub fn dir_page_lower(meta: &MetaData, blk: u32) -> usize {
    let before = blk.saturating_sub(meta.dir_start) as u64 * DIR_PER_PAGE as u64;
    let entries = (meta.lists as u64)
        .saturating_sub(before)
        .min(DIR_PER_PAGE as u64);
    contents_offset() + entries as usize * DIR_ENTRY_BYTES
}

/// Checks that block `blk` is a directory page of the index `meta` describes,
/// with its layout's header bounds (call [`check_meta`] first, which places
/// the directory).
pub fn check_dir_page(page: &[u8], blk: u32, meta: &MetaData) -> Result<(), Corrupt> {
    check_layout(
        page,
        blk,
        KIND_DIR,
        &[dir_page_lower(meta, blk)],
        SMALL_SPECIAL,
    )
}

/// Checks `list`'s directory entry (read from block `dir_blk`) for an index of
/// `nblocks` blocks: both its head and insert page are data blocks.
pub fn check_dir_entry(
    meta: &MetaData,
    list: u32,
    e: &DirEntry,
    dir_blk: u32,
    nblocks: u32,
) -> Result<(), Corrupt> {
    let first = meta.first_data_block();
    for (name, blk) in [("first", e.head), ("insert", e.insert)] {
        if blk < first || blk >= nblocks {
            return corrupt(
                dir_blk,
                format!(
                    "list {list}'s {name} page is block {blk}, not a data block (data blocks are {first}..{nblocks})"
                ),
            );
        }
    }
    Ok(())
}

/// What a data page's special space says, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    pub next: u32,
    pub count: usize,
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

    /// Checks that `page` (block `blk`) is a data page of `list` whose count fits,
    /// whose header has its layout's bounds ([`check_bounds`]: an insert's
    /// entry must never land in what the header calls free space) and that
    /// does not link to itself; returns its count and next link. The link's
    /// range is checked by [`Chain`], which knows the index's size.
    pub fn check(&self, page: &[u8], blk: u32, list: u32) -> Result<DataHeader, Corrupt> {
        check_layout(page, blk, KIND_DATA, &[self.lower()], DATA_SPECIAL)?;
        let owner = self.list(page);
        if owner != list {
            return corrupt(
                blk,
                format!("data page of list {owner} is on the chain of list {list}"),
            );
        }
        let count = self.count(page);
        if count > self.capacity {
            return corrupt(
                blk,
                format!(
                    "data page claims {count} entries, it holds at most {}",
                    self.capacity
                ),
            );
        }
        let next = self.next(page);
        if next == blk {
            return corrupt(blk, format!("data page of list {list} links to itself"));
        }
        Ok(DataHeader { next, count })
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

    /// `pd_lower` of every data page: the end of its whole contents area,
    /// used or not (build.rs and append.rs set it when they make the page;
    /// nothing changes it after).
    pub fn lower(&self) -> usize {
        contents_offset() + self.contents_len()
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

    /// The raw count field; only [`DataGeom::check`]'s result bounds it.
    pub fn count(&self, page: &[u8]) -> usize {
        rd::<u16>(page, self.special_off(page) + 8) as usize
    }

    pub fn set_count(&self, page: &mut [u8], n: usize) {
        let o = self.special_off(page) + 8;
        wr(page, o, n as u16)
    }

    /// The raw fine link (the first of the page's fine pages, or
    /// INVALID_BLOCK); only [`FineGeom::check_link`] makes it usable.
    pub fn fine(&self, page: &[u8]) -> u32 {
        rd(page, self.special_off(page) + 10)
    }

    pub fn set_fine(&self, page: &mut [u8], fine: u32) {
        let o = self.special_off(page) + 10;
        wr(page, o, fine)
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

    /// The byte ranges of `page` that [`DataGeom::push`] changes when the page
    /// holds `n` entries: the new entry's code (for fast-scan blocks, its
    /// block), its TID and the count. For the WAL delta of an insert
    /// (`page_delta::page_delta_within`).
    pub fn push_ranges(&self, page: &[u8], n: usize) -> [(usize, usize); 3] {
        let code = if self.blocked {
            let bb = self.block_bytes();
            let b = self.codes_off() + (n / fastscan::BLOCK) * bb;
            (b, b + bb)
        } else {
            let c = self.codes_off() + n * self.code_size;
            (c, c + self.code_size)
        };
        let t = self.tids_off() + n * TID_BYTES;
        let o = self.special_off(page) + 8;
        [code, (t, t + TID_BYTES), (o, o + 2)]
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

/// Fine page geometry: where a data page's refine codes live (see the module
/// docs). A data page at block `b` with fine pages has them at blocks
/// `b + 1 ..= b + pages`, written right after it by the build and reserved with
/// it by an insert that adds a data page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FineGeom {
    /// Bytes of one refine code.
    pub code_size: usize,
    /// Entries per fine page.
    pub per_page: usize,
    /// Fine pages per data page.
    pub pages: usize,
}

/// The largest refine code (bytes) a fine page holds with its row's TID.
pub const fn fine_code_max_bytes() -> usize {
    contents_capacity(FINE_SPECIAL) - TID_BYTES
}

impl FineGeom {
    /// The geometry for refine codes of `code_size` bytes beside data pages of
    /// `capacity` entries; None when there is no refine code or a page cannot
    /// hold one entry.
    pub fn new(code_size: usize, capacity: usize) -> Option<FineGeom> {
        let per_page = contents_capacity(FINE_SPECIAL) / (TID_BYTES + code_size);
        if code_size == 0 || per_page == 0 || capacity == 0 {
            return None;
        }
        Some(FineGeom {
            code_size,
            per_page,
            pages: capacity.div_ceil(per_page),
        })
    }

    /// The fine geometry of an index (None without a refine code). The refine
    /// code size follows from the dimensions and bits per dimension.
    pub fn of(meta: &MetaData) -> Option<FineGeom> {
        if meta.refine_bits == 0 {
            return None;
        }
        let bytes = crate::refine::code_bytes(meta.dim as usize, meta.refine_bits);
        FineGeom::new(bytes, DataGeom::of(meta).capacity)
    }

    /// Bytes of contents in use on a fine page (pd_lower target).
    pub fn contents_len(&self) -> usize {
        self.per_page * (TID_BYTES + self.code_size)
    }

    /// `pd_lower` of every fine page: the end of all its slots, used or not
    /// (set when the page is made, never changed).
    pub fn lower(&self) -> usize {
        contents_offset() + self.contents_len()
    }

    /// The fine page (as an offset from the first, `0..pages`) and the slot on
    /// it of data entry `i`.
    pub fn locate(&self, i: usize) -> (usize, usize) {
        (i / self.per_page, i % self.per_page)
    }

    /// Checks a data page's fine link: None when the page has no fine pages,
    /// the first fine block when it is `data_blk + 1` and all of the page's
    /// fine pages lie inside an index of `nblocks` blocks.
    pub fn check_link(
        &self,
        fine: u32,
        data_blk: u32,
        nblocks: u32,
    ) -> Result<Option<u32>, Corrupt> {
        if fine == INVALID_BLOCK {
            return Ok(None);
        }
        let end = data_blk as u64 + 1 + self.pages as u64;
        if fine as u64 != data_blk as u64 + 1 || end > nblocks as u64 {
            return corrupt(
                data_blk,
                format!(
                    "data page links to fine page {fine}, not to the {} blocks after it in an index of {nblocks} blocks",
                    self.pages
                ),
            );
        }
        Ok(Some(fine))
    }

    /// Checks that `page` (block `blk`) is a fine page of data block `owner`
    /// whose header has its layout's bounds ([`check_bounds`]).
    pub fn check(&self, page: &[u8], blk: u32, owner: u32) -> Result<(), Corrupt> {
        check_layout(page, blk, KIND_FINE, &[self.lower()], FINE_SPECIAL)?;
        let o = self.owner(page);
        if o != owner {
            return corrupt(
                blk,
                format!("fine page of data block {o} is read for data block {owner}"),
            );
        }
        Ok(())
    }

    fn special_off(&self, page: &[u8]) -> usize {
        page.len() - FINE_SPECIAL
    }

    pub fn owner(&self, page: &[u8]) -> u32 {
        rd(page, self.special_off(page))
    }

    /// Makes an initialised (PageInit'ed with FINE_SPECIAL) page a fine page of
    /// `owner` with no valid entries.
    pub fn init(&self, page: &mut [u8], owner: u32) {
        let o = self.special_off(page);
        wr(page, o, owner);
        set_page_kind(page, KIND_FINE);
    }

    fn entry_off(&self, slot: usize) -> usize {
        assert!(slot < self.per_page);
        contents_offset() + slot * (TID_BYTES + self.code_size)
    }

    /// Where slot `slot`'s entry (TID, then code) lies in a fine page: its
    /// offset and length (inside the page for every `slot < per_page`).
    pub fn entry_span(&self, slot: usize) -> (usize, usize) {
        (self.entry_off(slot), TID_BYTES + self.code_size)
    }

    /// The TID of slot `slot` (all zero: no entry; no heap TID has offset 0).
    pub fn tid(&self, page: &[u8], slot: usize) -> [u8; TID_BYTES] {
        rd(page, self.entry_off(slot))
    }

    /// The refine code of slot `slot`.
    pub fn code<'p>(&self, page: &'p [u8], slot: usize) -> &'p [u8] {
        let o = self.entry_off(slot) + TID_BYTES;
        &page[o..o + self.code_size]
    }

    /// Writes slot `slot`.
    pub fn set(&self, page: &mut [u8], slot: usize, tid: [u8; TID_BYTES], code: &[u8]) {
        assert_eq!(code.len(), self.code_size);
        let o = self.entry_off(slot);
        wr(page, o, tid);
        page[o + TID_BYTES..o + TID_BYTES + self.code_size].copy_from_slice(code);
    }

    /// The bytes [`FineGeom::set`] changes for `slot`.
    pub fn set_range(&self, slot: usize) -> (usize, usize) {
        let o = self.entry_off(slot);
        (o, o + TID_BYTES + self.code_size)
    }

    /// Empties slot `slot` (its TID matches no data entry).
    pub fn clear(&self, page: &mut [u8], slot: usize) {
        let o = self.entry_off(slot);
        page[o..o + TID_BYTES + self.code_size].fill(0);
    }
}

/// Where each surviving entry's fine entry comes from when a data page keeps
/// the entries that `dead` does not name, in order: for new slot `k`, the old
/// slot whose fine entry moves there, or None when that fine entry did not
/// match its data entry (it is cleared rather than moved, so that a stale
/// fine entry can never come to sit beside a data entry of the same TID).
pub fn fine_moves(
    data_tids: &[[u8; TID_BYTES]],
    fine_tids: &[[u8; TID_BYTES]],
    dead: &[bool],
) -> Vec<Option<usize>> {
    assert!(data_tids.len() == fine_tids.len() && data_tids.len() == dead.len());
    (0..data_tids.len())
        .filter(|&i| !dead[i])
        .map(|i| (fine_tids[i] == data_tids[i]).then_some(i))
        .collect()
}

/// A walk along one list's chain of data pages, checking every link before it
/// is followed and every page before it is read.
///
/// Use: `while let Some(blk) = chain.next_block(nblocks)? { read blk; chain.visit(..)? }`.
/// A link must name a data block of the index (`first_data_block..nblocks`), and
/// a chain visits at most as many pages as the index has data blocks, so a
/// loop anywhere in it ends the walk with an error after that many steps.
#[derive(Clone, Debug)]
pub struct Chain {
    list: u32,
    first_data: u32,
    geom: DataGeom,
    /// The block to visit next (INVALID_BLOCK at the end).
    cur: u32,
    /// The block that holds the link to `cur` (the directory block at the start).
    from: u32,
    /// Pages handed out by next_block so far.
    steps: u32,
    /// `cur` was handed out and not yet visited.
    pending: bool,
    /// A block the walk must hand out before the chain ends (the list's
    /// insert page; INVALID_BLOCK: none), see [`Chain::must_reach`].
    must_reach: u32,
}

impl Chain {
    /// A walk from `head`, the list's first page as read from directory block `dir_blk`.
    pub fn new(meta: &MetaData, list: u32, dir_blk: u32, head: u32) -> Chain {
        Chain {
            list,
            first_data: meta.first_data_block(),
            geom: DataGeom::of(meta),
            cur: head,
            from: dir_blk,
            steps: 0,
            pending: false,
            must_reach: INVALID_BLOCK,
        }
    }

    /// The walk must meet `block` (the list's insert page, as the directory
    /// entry the walk started from names it) before the chain ends, or
    /// [`Chain::next_block`] reports the chain cut at its last page. Pages
    /// are never unlinked, and the insert page only ever moves to a page of
    /// the chain (an append links its new page and points the directory at
    /// it in one WAL record; VACUUM points it back at a page it walked), so
    /// a walk from the head that ends without meeting it followed a damaged
    /// link: a cut link looks like any list's last page, and the rows past
    /// it were silently left out of scans, and VACUUM moved the insert page
    /// back onto the cut chain (hunt-72).
    pub fn must_reach(mut self, block: u32) -> Chain {
        self.must_reach = block;
        self
    }

    /// The list being walked.
    pub fn list(&self) -> u32 {
        self.list
    }

    /// The block the next call of [`Chain::next_block`] returns, unchecked.
    pub fn peek(&self) -> u32 {
        self.cur
    }

    /// The next block to read, or None at the end of the chain. Err when the
    /// link points outside the index's data blocks or the chain is longer
    /// than the index has data blocks (it loops). Nothing changes on Err, so a
    /// caller may retry with a fresh `nblocks` (the index may have grown).
    pub fn next_block(&mut self, nblocks: u32) -> Result<Option<u32>, Corrupt> {
        if self.pending {
            // The caller did not visit the block: hand it out again.
            return Ok(Some(self.cur));
        }
        if self.cur == INVALID_BLOCK {
            if self.must_reach != INVALID_BLOCK {
                return corrupt(
                    self.from,
                    format!(
                        "the chain of list {} ends before its insert page {}: a link was cut",
                        self.list, self.must_reach
                    ),
                );
            }
            return Ok(None);
        }
        if self.cur < self.first_data || self.cur >= nblocks {
            return corrupt(
                self.from,
                format!(
                    "list {} links to block {}, not a data block (data blocks are {}..{nblocks})",
                    self.list, self.cur, self.first_data
                ),
            );
        }
        if self.steps >= nblocks.saturating_sub(self.first_data) {
            return corrupt(
                self.from,
                format!(
                    "the chain of list {} is longer than the index's {} data blocks: it loops",
                    self.list,
                    nblocks - self.first_data
                ),
            );
        }
        self.steps += 1;
        self.pending = true;
        if self.cur == self.must_reach {
            self.must_reach = INVALID_BLOCK;
        }
        Ok(Some(self.cur))
    }

    /// Checks `page`, the block the last [`Chain::next_block`] returned, and
    /// moves the walk to its successor.
    pub fn visit(&mut self, page: &[u8]) -> Result<DataHeader, Corrupt> {
        let blk = self.cur;
        let h = self.geom.check(page, blk, self.list)?;
        self.pending = false;
        self.from = blk;
        self.cur = h.next;
        Ok(h)
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

/// Most rows (line pointers) a heap page of [`PAGE_SIZE`] bytes holds:
/// PostgreSQL's `MaxHeapTuplesPerPage`, the page less its header over a
/// MAXALIGNed tuple header and a line pointer.
pub const MAX_HEAP_ROWS_PER_PAGE: u16 = ((PAGE_SIZE - 24) / (24 + 4)) as u16;

/// Whether `off` can be a heap row's line pointer: 1 to
/// [`MAX_HEAP_ROWS_PER_PAGE`]. Any other offset in an index entry is damage
/// (one flipped bit made 1 into 513, and the row was silently never found).
pub fn heap_offset_valid(off: u16) -> bool {
    (1..=MAX_HEAP_ROWS_PER_PAGE).contains(&off)
}

/// Where a heap page's line pointer `off` (1-based) says its item starts, if
/// the page (PostgreSQL's standard layout: `pd_lower` at byte 12, 4-byte line
/// pointers from byte 24, the item's offset in their low 15 bits) has that many
/// line pointers. For prefetch hints only: the item may be unused or a
/// redirect, and nothing is read at the offset. Any bytes give an offset
/// inside the page or None, never a panic.
pub fn heap_item_offset(page: &[u8], off: u16) -> Option<usize> {
    let lower = usize::from(u16::from_ne_bytes(page.get(12..14)?.try_into().ok()?));
    let at = PAGE_HEADER_BYTES + 4 * usize::from(off).checked_sub(1)?;
    if at + 4 > lower.min(page.len()) {
        return None;
    }
    let lp = u32::from_ne_bytes(page.get(at..at + 4)?.try_into().ok()?);
    Some(((lp & 0x7fff) as usize).min(page.len() - 1))
}

/// Everything a reader does with an index image, checks first, for tests and
/// fuzzing: walks every list of the index in `pages` (one PAGE_SIZE page per
/// block) the way scans do, reading every entry. Returns the entries per list,
/// or the first broken invariant; never panics.
pub fn walk_image(pages: &[&[u8]]) -> Result<Vec<usize>, Corrupt> {
    let nblocks = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    let page = |blk: u32| -> Result<&[u8], Corrupt> {
        match pages.get(blk as usize) {
            Some(p) => Ok(*p),
            None => corrupt(blk, "block past the end of the image".into()),
        }
    };
    let meta = read_meta_page(page(META_BLOCK)?)?;
    check_meta(&meta, nblocks)?;
    let geom = DataGeom::of(&meta);
    let fine = FineGeom::of(&meta);
    let mut sizes = Vec::new();
    for b in meta.model_start..meta.model_start + meta.model_pages {
        check_model_page(page(b)?, b, &meta)?;
    }
    for list in 0..meta.lists {
        let (dir_blk, slot) = dir_location(&meta, list);
        let dp = page(dir_blk)?;
        check_dir_page(dp, dir_blk, &meta)?;
        let e = read_dir(dp, slot);
        check_dir_entry(&meta, list, &e, dir_blk, nblocks)?;
        let mut chain = Chain::new(&meta, list, dir_blk, e.head).must_reach(e.insert);
        let mut n = 0;
        let mut code = vec![0u8; geom.code_size];
        while let Some(blk) = chain.next_block(nblocks)? {
            let p = page(blk)?;
            let h = chain.visit(p)?;
            if geom.blocked {
                let _ = geom.blocks(p);
            } else {
                let _ = geom.codes(p);
            }
            for i in 0..h.count {
                geom.code(p, i, &mut code);
                let _ = tid_parts(geom.tid(p, i));
            }
            if let Some(fg) = fine {
                if let Some(first) = fg.check_link(geom.fine(p), blk, nblocks)? {
                    for i in 0..h.count {
                        let (k, slot) = fg.locate(i);
                        let fb = first + k as u32;
                        let fp = page(fb)?;
                        fg.check(fp, fb, blk)?;
                        let _ = (fg.tid(fp, slot), fg.code(fp, slot));
                    }
                }
            }
            n += h.count;
        }
        sizes.push(n);
    }
    Ok(sizes)
}

/// A page with a standard-looking header: pd_special and pd_upper at
/// [`special_start`], pd_lower after `used` bytes of contents (as the build
/// sets them: [`check_bounds`]).
fn blank(special: usize, kind: u16, used: usize) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    let sp = special_start(special) as u16;
    p[12..14].copy_from_slice(&((contents_offset() + used) as u16).to_ne_bytes());
    p[14..16].copy_from_slice(&sp.to_ne_bytes());
    p[16..18].copy_from_slice(&sp.to_ne_bytes());
    set_page_kind(&mut p, kind);
    p
}

/// A small sound index image, for tests and fuzzing: meta, one model page,
/// directory pages, then `pages_per_list` chained data pages per list, `fill`
/// entries each (`fill` at most the page capacity).
pub fn example_image(
    lists: u32,
    code_size: usize,
    blocked: bool,
    pages_per_list: u32,
    fill: usize,
) -> Vec<Vec<u8>> {
    example_image_refined(lists, code_size, blocked, pages_per_list, fill, 0)
}

/// [`example_image`] with a refine code of `refine_bits` (0, 4 or 8) bits per
/// dimension: each data page followed by its fine pages, every entry's fine
/// entry matching it.
pub fn example_image_refined(
    lists: u32,
    code_size: usize,
    blocked: bool,
    pages_per_list: u32,
    fill: usize,
    refine_bits: u32,
) -> Vec<Vec<u8>> {
    let geom = DataGeom::new(code_size, blocked);
    let mut meta = MetaData {
        magic: MAGIC,
        version: FORMAT_VERSION,
        dim: 8,
        lists,
        code_size: code_size as u32,
        model_start: 1,
        model_pages: 1,
        model_bytes: 100,
        dir_start: 2,
        dir_pages: (lists as usize).div_ceil(DIR_PER_PAGE) as u32,
        blocked: blocked as u32,
        refine_bits,
        refine_bytes: if refine_bits > 0 { 72 } else { 0 },
        ..Default::default()
    };
    let fine = FineGeom::of(&meta);
    let per_data = 1 + fine.map_or(0, |f| f.pages) as u32;
    let mut pages = vec![
        blank(SMALL_SPECIAL, KIND_META, META_BYTES),
        blank(SMALL_SPECIAL, KIND_MODEL, meta.model_bytes as usize),
    ];
    for k in 0..meta.dir_pages {
        let used = dir_page_lower(&meta, meta.dir_start + k) - contents_offset();
        pages.push(blank(SMALL_SPECIAL, KIND_DIR, used));
    }
    let first = pages.len() as u32;
    meta.generation = 1;
    write_meta(&mut pages[0], &meta);
    let code = vec![0x5au8; code_size];
    for list in 0..lists {
        let head = first + list * pages_per_list * per_data;
        for k in 0..pages_per_list {
            let blk = head + k * per_data;
            let mut p = blank(DATA_SPECIAL, KIND_DATA, geom.contents_len());
            geom.set_list(&mut p, list);
            let last = k + 1 == pages_per_list;
            geom.set_next(&mut p, if last { INVALID_BLOCK } else { blk + per_data });
            geom.set_fine(
                &mut p,
                if fine.is_some() {
                    blk + 1
                } else {
                    INVALID_BLOCK
                },
            );
            let mut fps: Vec<Vec<u8>> = (0..per_data - 1)
                .map(|_| {
                    let fg = fine.expect("fine pages");
                    let mut f = blank(FINE_SPECIAL, KIND_FINE, fg.contents_len());
                    fg.init(&mut f, blk);
                    f
                })
                .collect();
            for i in 0..fill.min(geom.capacity) {
                let tid = tid_bytes(list * 1000 + k, i as u16 + 1);
                geom.push(&mut p, &code, tid);
                if let Some(fg) = fine {
                    let (fk, slot) = fg.locate(i);
                    fg.set(&mut fps[fk], slot, tid, &vec![0xa5u8; fg.code_size]);
                }
            }
            pages.push(p);
            pages.extend(fps);
        }
        let (db, slot) = dir_location(&meta, list);
        let e = DirEntry {
            head,
            insert: head + (pages_per_list - 1) * per_data,
        };
        write_dir(&mut pages[db as usize], slot, e);
    }
    pages
}

#[cfg(test)]
mod seal_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A sealed blob unseals to itself; any change of one of its bytes
        /// (payload, tag or hash) is refused or leaves extra bytes.
        #[test]
        fn a_sealed_blob_finds_any_changed_byte(
            blob in proptest::collection::vec(any::<u8>(), 0..300),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
            placeholder in any::<bool>(),
        ) {
            let mut sealed = blob.clone();
            seal_model(&mut sealed, placeholder);
            prop_assert_eq!(unseal_model(&sealed, placeholder).unwrap(), &blob[..]);
            prop_assert!(unseal_model(&sealed, !placeholder).is_err());
            let i = at.index(sealed.len());
            sealed[i] ^= flip;
            match unseal_model(&sealed, placeholder) {
                Err(_) => {}
                // A changed tag reads as an unsealed blob: the whole of it,
                // 16 bytes longer than what the parsers expect.
                Ok(p) => prop_assert!(i >= blob.len() && i < blob.len() + 8 && p.len() == blob.len() + 16),
            }
        }
    }

    #[test]
    fn an_unsealed_blob_reads_whole() {
        for placeholder in [false, true] {
            assert_eq!(unseal_model(b"short", placeholder).unwrap(), b"short");
            let v = vec![7u8; 40];
            assert_eq!(unseal_model(&v, placeholder).unwrap(), &v[..]);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn heap_offsets_run_from_1_to_postgres_max_heap_tuples_per_page() {
        assert_eq!(MAX_HEAP_ROWS_PER_PAGE, 291);
        assert!(!heap_offset_valid(0));
        assert!(heap_offset_valid(1) && heap_offset_valid(291));
        assert!(!heap_offset_valid(292) && !heap_offset_valid(513) && !heap_offset_valid(u16::MAX));
    }

    /// Older and newer formats ask for a REINDEX; a number no arrw wrote is
    /// damage.
    #[test]
    fn format_numbers_an_arrw_could_have_written() {
        assert!(plausible_format(1) && plausible_format(FORMAT_VERSION));
        assert!(plausible_format(FORMAT_VERSION + 1));
        assert!(!plausible_format(0));
        assert!(!plausible_format(2_029_829_132));
        assert!(!plausible_format(u32::MAX));
    }

    /// `fine_code_max_bytes` is exactly the largest code a fine page takes.
    #[test]
    fn the_largest_fine_code_fits_and_one_more_byte_does_not() {
        let most = fine_code_max_bytes();
        assert!(FineGeom::new(most, 1).is_some_and(|g| g.per_page == 1));
        assert!(FineGeom::new(most + 1, 1).is_none());
    }

    use super::*;
    use proptest::prelude::*;

    fn image(lists: u32, code_size: usize, blocked: bool, ppl: u32, fill: usize) -> Vec<Vec<u8>> {
        example_image(lists, code_size, blocked, ppl, fill)
    }

    fn walk(pages: &[Vec<u8>]) -> Result<Vec<usize>, Corrupt> {
        let refs: Vec<&[u8]> = pages.iter().map(|p| p.as_slice()).collect();
        walk_image(&refs)
    }

    const NEXT: usize = PAGE_SIZE - DATA_SPECIAL;
    const LIST: usize = NEXT + 4;
    const COUNT: usize = NEXT + 8;

    fn put_u32(p: &mut [u8], off: usize, v: u32) {
        p[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn pushes_and_fine_sets_change_only_their_ranges() {
        use crate::page_delta::unchanged_outside;
        for (code_size, blocked) in [(32, true), (64, true), (8, false), (48, false)] {
            let g = DataGeom::new(code_size, blocked);
            let mut page = vec![0u8; PAGE_SIZE];
            page[12..14]
                .copy_from_slice(&((contents_offset() + g.contents_len()) as u16).to_ne_bytes());
            page[14..16].copy_from_slice(&((PAGE_SIZE - DATA_SPECIAL) as u16).to_ne_bytes());
            for n in 0..g.capacity {
                let before = page.clone();
                let code: Vec<u8> = (0..code_size).map(|k| (n * 31 + k * 7 + 1) as u8).collect();
                let ranges = g.push_ranges(&page, g.count(&page));
                g.push(&mut page, &code, [(n % 250) as u8 + 1; TID_BYTES]);
                assert!(
                    unchanged_outside(&before, &page, &ranges),
                    "entry {n}, code {code_size}"
                );
            }
            if let Some(fg) = FineGeom::new(96, g.capacity) {
                let mut fine = vec![0u8; PAGE_SIZE];
                fine[12..14].copy_from_slice(
                    &((contents_offset() + fg.contents_len()) as u16).to_ne_bytes(),
                );
                fine[14..16].copy_from_slice(&((PAGE_SIZE - FINE_SPECIAL) as u16).to_ne_bytes());
                for slot in 0..fg.per_page.min(g.capacity) {
                    let before = fine.clone();
                    fg.set(
                        &mut fine,
                        slot,
                        [3; TID_BYTES],
                        &[(slot % 250) as u8 + 1; 96],
                    );
                    assert!(unchanged_outside(&before, &fine, &[fg.set_range(slot)]));
                }
            }
        }
    }

    #[test]
    fn a_page_whose_header_bounds_no_hole_is_corrupt() {
        // PostgreSQL refuses such a page when it reads it from disk (XX001,
        // "invalid page"); in memory, the readers refuse it too, since a page
        // write takes lengths from these bounds.
        let mut pages = image(1, 8, false, 1, 10);
        assert!(walk(&pages).is_ok());
        let data = pages.len() - 1;
        for (lower, upper) in [(u16::MAX, 8176u16), (0, 8176), (4000, 3000), (24, 9000)] {
            let mut p = pages.clone();
            p[data][12..14].copy_from_slice(&lower.to_ne_bytes());
            p[data][14..16].copy_from_slice(&upper.to_ne_bytes());
            let e = walk(&p).unwrap_err();
            assert_eq!(e.block as usize, data);
            assert!(e.what.contains("bound no free space"), "{}", e.what);
        }
        pages[0][12..14].copy_from_slice(&2u16.to_ne_bytes());
        assert!(walk(&pages).is_err(), "the meta page too");
    }

    /// A header whose bounds disagree with its page's layout is corrupt on
    /// every page kind, though all it calls free space is zero bytes: an
    /// insert page's pd_lower lowered to the end of its live TIDs passed every
    /// check, and the next insert's entry, written there, was zeroed by the
    /// write (hunt-121).
    #[test]
    fn header_bounds_that_disagree_with_the_layout_are_corrupt() {
        let fill = 40;
        let pages = example_image_refined(2, 4, false, 2, fill, 4);
        assert!(walk(&pages).is_ok());
        let meta = read_meta(&pages[0]);
        let geom = DataGeom::of(&meta);
        let fg = FineGeom::of(&meta).unwrap();
        let data = meta.first_data_block() as usize;
        let (dir, model) = (meta.dir_start as usize, meta.model_start as usize);
        let tids = contents_offset() + geom.capacity * geom.code_size;
        let (lower, upper, special) = (12, 14, 16);
        let cases: [(usize, &[(usize, usize)]); 8] = [
            // The repro: a data page's pd_lower at the end of its live TIDs.
            (data, &[(lower, tids + fill * TID_BYTES)]),
            // pd_upper lowered to its TIDs, pd_lower to the end of its codes.
            (
                data,
                &[
                    (lower, contents_offset() + fill * geom.code_size),
                    (upper, tids),
                ],
            ),
            // No free space at all, or a special space moved.
            (data, &[(lower, special_start(DATA_SPECIAL))]),
            (data, &[(special, PAGE_SIZE)]),
            // A fine page's pd_lower at the end of its live entries.
            (
                data + 1,
                &[(
                    lower,
                    fg.lower() - (fg.per_page - fill) * (TID_BYTES + fg.code_size),
                )],
            ),
            // A directory page's pd_lower past its two entries, a model
            // page's inside its blob, the meta page's inside its struct.
            (
                dir,
                &[(lower, dir_page_lower(&meta, dir as u32) + DIR_ENTRY_BYTES)],
            ),
            (model, &[(lower, contents_offset() + 50)]),
            (META_BLOCK as usize, &[(lower, contents_offset() + 84)]),
        ];
        for (blk, fields) in cases {
            let mut p = pages.clone();
            for &(at, v) in fields {
                p[blk][at..at + 2].copy_from_slice(&(v as u16).to_ne_bytes());
            }
            // PostgreSQL's page check and the free-space check see nothing.
            assert_eq!(
                crate::page_delta::hole_is_clear(&p[blk]),
                Ok(true),
                "{fields:?}"
            );
            let e = walk(&p).unwrap_err();
            assert_eq!(e.block as usize, blk, "{e}");
            assert!(e.what.contains("where its layout has"), "{e}");
        }
        // A meta page of an earlier build of this format, whose struct was
        // 80 bytes long, is sound; a meta page of another format is left to
        // its caller's format check.
        let mut p = pages.clone();
        p[0][12..14].copy_from_slice(&(contents_offset() as u16 + 80).to_ne_bytes());
        assert!(walk(&p).is_ok());
        let mut old = p[0].clone();
        old[12..14].copy_from_slice(&(contents_offset() as u16 + 40).to_ne_bytes());
        assert!(check_meta_bounds(&old).is_err());
        let mut m = read_meta(&old);
        m.version = 2;
        write_meta(&mut old, &m);
        assert_eq!(read_meta_page(&old).map(|m| m.version), Ok(2));
    }

    /// What `WriteSet::commit` refuses: a changed range that overlaps the
    /// free space. A sound data or fine page's writes never do.
    #[test]
    fn writes_into_the_free_space_are_found() {
        let hole = (7398, 8176);
        assert_eq!(
            range_in_hole(&[(24, 28), (7398, 7404), (8184, 8186)], hole),
            Some((7398, 7404))
        );
        // Ranges that touch it, an empty range in it, an empty hole: none.
        assert_eq!(range_in_hole(&[(7392, 7398), (8176, 8178)], hole), None);
        assert_eq!(range_in_hole(&[(8000, 8000)], hole), None);
        assert_eq!(range_in_hole(&[(24, 8192)], (8174, 8174)), None);
        assert_eq!(range_in_hole(&[(7000, 9000)], hole), Some((7000, 9000)));
        for (code_size, blocked) in [(4, false), (48, false), (32, true), (64, true)] {
            let g = DataGeom::new(code_size, blocked);
            let page = blank(DATA_SPECIAL, KIND_DATA, g.contents_len());
            let hole = crate::page_delta::hole(&page).unwrap();
            for n in 0..g.capacity {
                assert_eq!(range_in_hole(&g.push_ranges(&page, n), hole), None);
            }
            // The repro's page: pd_lower at the end of its live TIDs, where
            // the next entry's TID goes.
            let mut bad = page.clone();
            let n = g.capacity / 2;
            let end = contents_offset() + g.capacity * code_size + n * TID_BYTES;
            bad[12..14].copy_from_slice(&(end as u16).to_ne_bytes());
            let hole = crate::page_delta::hole(&bad).unwrap();
            assert!(range_in_hole(&g.push_ranges(&bad, n), hole).is_some());
            if let Some(fg) = FineGeom::new(96, g.capacity) {
                let fine = blank(FINE_SPECIAL, KIND_FINE, fg.contents_len());
                let hole = crate::page_delta::hole(&fine).unwrap();
                for slot in 0..fg.per_page {
                    assert_eq!(range_in_hole(&[fg.set_range(slot)], hole), None);
                }
            }
        }
    }

    #[test]
    fn sound_image_walks() {
        let pages = image(3, 8, false, 2, 10);
        assert_eq!(walk(&pages).unwrap(), vec![20, 20, 20]);
        let pages = image(2, 4, true, 3, 40);
        assert_eq!(walk(&pages).unwrap(), vec![120, 120]);
    }

    #[test]
    fn self_link_is_an_error() {
        let mut pages = image(2, 8, false, 2, 5);
        // list 0: blocks 3 -> 4; make 4 link to itself
        put_u32(&mut pages[4], NEXT, 4);
        let e = walk(&pages).unwrap_err();
        assert_eq!(e.block, 4);
        assert!(e.what.contains("links to itself"), "{e}");
    }

    /// A link cut short (a page's `next` set to the end marker before the
    /// list's insert page) passes every page's own checks; only the insert
    /// page the walk never meets gives it away.
    #[test]
    fn a_chain_cut_before_its_insert_page_is_an_error() {
        let mut pages = image(2, 8, false, 3, 5);
        // list 0: blocks 3 -> 4 -> 5 (insert page 5); cut after 3.
        put_u32(&mut pages[3], NEXT, INVALID_BLOCK);
        let e = walk(&pages).unwrap_err();
        assert_eq!(e.block, 3);
        assert!(e.what.contains("ends before its insert page 5"), "{e}");
        // Cut after 4: the last page before the cut is named.
        let mut pages = image(2, 8, false, 3, 5);
        put_u32(&mut pages[4], NEXT, INVALID_BLOCK);
        assert_eq!(walk(&pages).unwrap_err().block, 4);
        // An insert page earlier on the chain (VACUUM moves it back) is met.
        let mut pages = image(2, 8, false, 3, 5);
        let (db, slot) = dir_location(&read_meta_page(&pages[0]).unwrap(), 0);
        write_dir(
            &mut pages[db as usize],
            slot,
            DirEntry { head: 3, insert: 4 },
        );
        assert_eq!(walk(&pages).unwrap(), vec![15, 15]);
    }

    #[test]
    fn longer_loop_is_an_error() {
        let mut pages = image(1, 8, false, 3, 5);
        // 3 -> 4 -> 5 -> 3
        put_u32(&mut pages[5], NEXT, 3);
        let e = walk(&pages).unwrap_err();
        assert!(e.what.contains("loops"), "{e}");
    }

    #[test]
    fn link_past_the_end_is_an_error() {
        let mut pages = image(1, 8, false, 2, 5);
        put_u32(&mut pages[3], NEXT, 100);
        let e = walk(&pages).unwrap_err();
        assert_eq!(e.block, 3);
        assert!(e.what.contains("links to block 100"), "{e}");
        // A link back into the model or directory pages is as bad.
        put_u32(&mut pages[3], NEXT, 1);
        assert!(walk(&pages).unwrap_err().what.contains("links to block 1,"));
    }

    #[test]
    fn count_over_capacity_is_an_error() {
        let mut pages = image(1, 8, false, 1, 5);
        pages[3][COUNT..COUNT + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
        let e = walk(&pages).unwrap_err();
        assert!(e.what.contains("claims 65535 entries"), "{e}");
    }

    #[test]
    fn wrong_list_or_kind_is_an_error() {
        let mut pages = image(2, 8, false, 1, 5);
        put_u32(&mut pages[3], LIST, 7);
        assert!(walk(&pages)
            .unwrap_err()
            .what
            .contains("list 7 is on the chain of list 0"));
        let mut pages = image(2, 8, false, 1, 5);
        set_page_kind(&mut pages[4], KIND_DIR);
        let e = walk(&pages).unwrap_err();
        assert_eq!(e.block, 4);
        assert!(e.what.contains("expected 0xa4"), "{e}");
    }

    #[test]
    fn bad_directory_entries_are_errors() {
        let mut pages = image(2, 8, false, 1, 5);
        write_dir(
            &mut pages[2],
            1,
            DirEntry {
                head: INVALID_BLOCK,
                insert: 4,
            },
        );
        assert!(walk(&pages)
            .unwrap_err()
            .what
            .contains("first page is block 4294967295"));
        let mut pages = image(2, 8, false, 1, 5);
        write_dir(&mut pages[2], 0, DirEntry { head: 3, insert: 9 });
        assert!(walk(&pages)
            .unwrap_err()
            .what
            .contains("insert page is block 9"));
    }

    #[test]
    fn bad_meta_fields_are_errors() {
        let pages = image(2, 8, false, 1, 5);
        let meta = read_meta(&pages[0]);
        assert!(check_meta(&meta, 5).is_ok());
        let bad = [
            MetaData { lists: 0, ..meta },
            MetaData {
                lists: 100_000,
                ..meta
            },
            MetaData {
                model_start: 0,
                ..meta
            },
            MetaData {
                model_pages: u32::MAX,
                ..meta
            },
            MetaData {
                model_bytes: u32::MAX,
                ..meta
            },
            MetaData {
                dir_start: u32::MAX,
                ..meta
            },
            MetaData {
                dir_pages: 40,
                ..meta
            },
            MetaData {
                code_size: 9000,
                ..meta
            },
            MetaData {
                code_size: 0,
                blocked: 1,
                ..meta
            },
            MetaData { probes: 3, ..meta },
            MetaData {
                deep_probes: 3,
                ..meta
            },
            // Recorded dimensions on a trained index, or more than a vector has.
            MetaData {
                untrained_dim: 3,
                ..meta
            },
            MetaData {
                untrained: 1,
                untrained_dim: 16_001,
                ..meta
            },
            MetaData {
                probes: u32::MAX,
                ..meta
            },
            // More rows than a bigint holds (ivfpq_info reports it as one).
            MetaData {
                built_rows: i64::MAX as u64 + 1,
                ..meta
            },
        ];
        for m in bad {
            assert!(check_meta(&m, 5).is_err(), "{m:?}");
        }
        // A measured default of at most `lists` probes is fine.
        assert!(check_meta(&MetaData { probes: 2, ..meta }, 5).is_ok());
        // The index must have room for data pages after the directory.
        assert!(check_meta(&meta, 3).is_err());
    }

    #[test]
    fn short_pages_are_errors() {
        let pages = image(1, 8, false, 1, 5);
        let refs: Vec<&[u8]> = vec![&pages[0][..100]];
        assert!(walk_image(&refs).is_err());
        assert!(walk_image(&[]).is_err());
    }

    #[test]
    fn refined_image_walks_and_bad_fine_links_are_errors() {
        let pages = example_image_refined(2, 4, true, 2, 40, 4);
        assert_eq!(walk(&pages), Ok(vec![80, 80]));
        let meta = read_meta(&pages[0]);
        let fg = FineGeom::of(&meta).unwrap();
        let first = meta.first_data_block() as usize;
        let fine_off = PAGE_SIZE - DATA_SPECIAL + 10;
        // A link that is not the next block, and one past the end.
        for bad in [first as u32 + 2, first as u32, 10_000] {
            let mut p = pages.clone();
            put_u32(&mut p[first], fine_off, bad);
            let e = walk(&p).unwrap_err();
            assert_eq!(e.block, first as u32, "{e}");
        }
        // A fine page of another owner, and one of the wrong kind.
        let mut p = pages.clone();
        put_u32(&mut p[first + 1], PAGE_SIZE - FINE_SPECIAL, 77);
        assert_eq!(walk(&p).unwrap_err().block, first as u32 + 1);
        let mut p = pages.clone();
        set_page_kind(&mut p[first + 1], KIND_DATA);
        assert_eq!(walk(&p).unwrap_err().block, first as u32 + 1);
        // No fine pages at all is fine (INVALID link).
        let mut p = pages.clone();
        put_u32(&mut p[first], fine_off, INVALID_BLOCK);
        assert!(walk(&p).is_ok());
        assert!(fg.pages >= 1 && fg.per_page >= 1);
    }

    #[test]
    fn fine_geometry_covers_every_entry_once() {
        for (cs, cap) in [(192, 96), (384, 32), (4, 1000), (1, 5)] {
            let g = FineGeom::new(cs, cap).unwrap();
            let mut seen = std::collections::HashSet::new();
            for i in 0..cap {
                let (k, slot) = g.locate(i);
                assert!(k < g.pages && slot < g.per_page);
                assert!(seen.insert((k, slot)));
            }
            assert!(g.contents_len() <= contents_capacity(FINE_SPECIAL));
        }
        assert_eq!(FineGeom::new(0, 10), None);
        assert_eq!(FineGeom::new(9000, 10), None);
    }

    #[test]
    fn fine_entries_move_with_their_rows_or_are_dropped() {
        let t = |i: u16| tid_bytes(1, i);
        let data = [t(1), t(2), t(3), t(4)];
        let fine = [t(1), t(9), t(3), t(4)];
        let dead = [false, false, true, false];
        assert_eq!(
            fine_moves(&data, &fine, &dead),
            vec![Some(0), None, Some(3)]
        );
    }

    #[test]
    fn heap_item_offsets() {
        let mut page = vec![0u8; PAGE_SIZE];
        // Two line pointers: items at 8000 (len 150, normal) and 7800.
        page[12..14].copy_from_slice(&(24u16 + 8).to_ne_bytes());
        let lp = |off: u32, flags: u32, len: u32| (off | (flags << 15) | (len << 17)).to_ne_bytes();
        page[24..28].copy_from_slice(&lp(8000, 1, 150));
        page[28..32].copy_from_slice(&lp(7800, 1, 200));
        assert_eq!(heap_item_offset(&page, 1), Some(8000));
        assert_eq!(heap_item_offset(&page, 2), Some(7800));
        assert_eq!(heap_item_offset(&page, 0), None);
        assert_eq!(heap_item_offset(&page, 3), None);
        // A pd_lower beyond the page, or a short page: no read outside it.
        page[12..14].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert_eq!(heap_item_offset(&page, 2047), None);
        assert_eq!(heap_item_offset(&page[..30], 2), None);
        assert_eq!(heap_item_offset(&page[..10], 1), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any page bytes and line pointer number: an offset inside the page or
        /// None.
        #[test]
        fn heap_item_offset_stays_inside(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            len in 0usize..PAGE_SIZE + 1,
            off in any::<u16>(),
        ) {
            let mut page = vec![0u8; len];
            for (i, b) in bytes.iter().enumerate().take(len) {
                page[i] = *b;
            }
            if let Some(at) = heap_item_offset(&page, off) {
                prop_assert!(at < page.len());
            }
        }

        /// Mutations of a refined image: Ok or Err, never a panic.
        #[test]
        fn mutated_refined_images_never_panic(
            muts in proptest::collection::vec((0usize..24, 0usize..PAGE_SIZE, any::<u8>()), 1..40),
            tail in proptest::collection::vec((0usize..24, 0usize..16, any::<u8>()), 0..20),
            eight in any::<bool>(),
        ) {
            let mut pages = example_image_refined(2, 4, true, 3, 70, if eight { 8 } else { 4 });
            let n = pages.len();
            for (b, off, v) in muts {
                pages[b % n][off] = v;
            }
            for (b, k, v) in tail {
                let p = &mut pages[b % n];
                p[PAGE_SIZE - 1 - k] = v;
            }
            let _ = walk(&pages);
        }

        /// Any mutation of any bytes of a sound image gives Ok or Err, never a
        /// panic, and a walk that is Ok read counts within capacity.
        #[test]
        fn mutated_images_never_panic(
            blocked in any::<bool>(),
            muts in proptest::collection::vec((0usize..16, 0usize..PAGE_SIZE, any::<u8>()), 1..40),
            tail in proptest::collection::vec((0usize..16, 0usize..16, any::<u8>()), 0..20),
        ) {
            let code_size = if blocked { 4 } else { 8 };
            let mut pages = image(3, code_size, blocked, 3, 50);
            let n = pages.len();
            for (b, off, v) in muts {
                pages[b % n][off] = v;
            }
            // Mutations focused on the special spaces and the meta/dir fields.
            for (b, k, v) in tail {
                let p = &mut pages[b % n];
                let off = if k < 8 { PAGE_SIZE - 1 - k } else { contents_offset() + (k - 8) * 4 };
                p[off] = v;
            }
            let geom = DataGeom::new(code_size, blocked);
            if let Ok(sizes) = walk(&pages) {
                prop_assert!(sizes.iter().all(|&s| s <= geom.capacity * n));
            }
        }
    }
}
