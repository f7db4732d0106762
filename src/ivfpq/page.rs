//! Page access for the ivfpq index: the only file of `ivfpq/` that touches
//! buffers, page memory and WAL directly, and the one home of reading index
//! pages safely.
//!
//! - [`ReadGuard`]: a pinned, share-locked page, released on drop.
//! - [`WriteSet`]: up to four exclusively locked pages changed together in one
//!   generic WAL record (PostgreSQL's `RM_GENERIC_ID`, replayed by its own
//!   generic redo). Changes are made on private page copies and become visible
//!   (and WAL-logged) only at [`WriteSet::commit`]; dropping a `WriteSet`
//!   without committing (an ERROR unwinding through it) discards them and
//!   leaves the pages untouched. Every page write after the build goes through it.
//! - [`extend`]: adds a block under the relation-extension lock (only inserts
//!   and the build call it).
//! - [`meta`], [`list_dir`], [`ListChain`]: the checked readers every scan,
//!   insert, VACUUM and `ivfpq_info`/`ivfpq_check` use to find a list's pages.
//!   No block number or count read from a page is used before
//!   `arrw_core::layout`'s checks accept it; a broken one raises [`corrupt`]'s
//!   ERROR (SQLSTATE XX002, the block, a REINDEX hint) instead of a wrong
//!   answer, a hang, a read that extends the index or a panic.
//!
//! The layouts of the page kinds are in `arrw_core::layout`; this file moves bytes.

use super::layout::{
    self, Corrupt, DataGeom, DataHeader, DirEntry, FineGeom, MetaData, KIND_META, MAGIC,
};
use arrw_core::recent::RecentTable;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

pub use super::layout::{contents_capacity, contents_offset};

/// Raises the ERROR for a broken invariant `e` of `index`: SQLSTATE XX002
/// (index_corrupted), naming the index and the block, with a REINDEX hint.
#[cold]
pub fn corrupt(index: pg_sys::Relation, e: Corrupt) -> ! {
    let name = rel_name(index);
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
        format!("ivfpq index \"{name}\" is corrupted at {e}"),
        "ivfpq",
    )
    .set_hint(format!("REINDEX INDEX {}", qualified_name(index)))
    .report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned");
}

/// Raises XX002 for `index` with `message` (which names the block) and the
/// REINDEX hint [`corrupt`] gives, for damage found outside a page's own checks.
pub fn corrupt_message(index: pg_sys::Relation, message: String) -> ! {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, message, "ivfpq")
        .set_hint(format!("REINDEX INDEX {}", qualified_name(index)))
        .report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned");
}

/// `schema.name` of a relation, quoted where needed (for the hint).
fn qualified_name(rel: pg_sys::Relation) -> String {
    // SAFETY: rd_rel is the open relation's pg_class row; get_namespace_name
    // returns a palloc'd name or NULL; quote_qualified_identifier returns a
    // palloc'd NUL-terminated string built from two NUL-terminated strings.
    unsafe {
        let nsp = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
        let relname = (*(*rel).rd_rel).relname.data.as_ptr();
        let q = pg_sys::quote_qualified_identifier(nsp, relname);
        std::ffi::CStr::from_ptr(q).to_string_lossy().into_owned()
    }
}

fn check<T>(index: pg_sys::Relation, r: Result<T, Corrupt>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => corrupt(index, e),
    }
}

/// `test(n)` of what a page says against the index's size `n`, taken from
/// `known` (a lower bound: 0 = not counted yet). When that fails the index
/// is counted again, since a concurrent insert may have extended it since
/// (it never shrinks while open: VACUUM does not truncate it), and the second
/// result stands: [`corrupt`]'s ERROR if it fails too. Counting is an
/// `lseek`, so callers keep `known` across pages and rows.
fn check_counted<T>(
    index: pg_sys::Relation,
    known: &mut u32,
    mut test: impl FnMut(u32) -> Result<T, Corrupt>,
) -> T {
    if *known != 0 {
        if let Ok(v) = test(*known) {
            return v;
        }
    }
    *known = nblocks(index);
    check(index, test(*known))
}

/// Whether the index's meta block has never been written (a new, all-zero
/// page): what a build interrupted before its end leaves (call only on an
/// index with at least one block).
pub fn meta_unwritten(index: pg_sys::Relation) -> bool {
    let g = ReadGuard::new(index, layout::META_BLOCK);
    g.page().iter().all(|&b| b == 0)
}

/// Reads the meta page and checks its magic, kind and format version (what
/// `meta` checks beside it needs the index's size).
pub fn read_meta(index: pg_sys::Relation) -> MetaData {
    if nblocks(index) == 0 {
        empty_index(index);
    }
    meta_page(index)
}

/// XX002 for an index of no blocks. A valid index always has its meta page:
/// an empty file is damage, which PostgreSQL's read of block 0 reports
/// without naming the index (XX001).
#[cold]
fn empty_index(index: pg_sys::Relation) -> ! {
    corrupt_message(
        index,
        format!(
            "ivfpq index \"{}\" has no blocks: its file is empty (block 0, the meta page, is missing)",
            rel_name(index)
        ),
    )
}

/// [`read_meta`] of an index known to have blocks.
fn meta_page(index: pg_sys::Relation) -> MetaData {
    let g = ReadGuard::new(index, layout::META_BLOCK);
    let m = layout::read_meta(g.page());
    if m.magic != MAGIC || layout::page_kind(g.page()) != KIND_META {
        corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\" has no valid meta page (block {})",
                rel_name(index),
                layout::META_BLOCK
            ),
        );
    }
    if !layout::plausible_format(m.version) {
        // A damaged word, not an index of another arrw: 2029829132 read as
        // a format asked for a REINDEX that named no damage (0A000).
        corrupt_message(
            index,
            format!(
                "ivfpq index \"{}\" has no valid meta page (block {}): its format number {} was never written by any arrw",
                rel_name(index),
                layout::META_BLOCK,
                m.version
            ),
        );
    }
    if m.version != layout::FORMAT_VERSION {
        wrong_format(index, m.version);
    }
    // After the format check: another format's meta page has its own bounds.
    // Every reader of the index reads the meta page first, and the one
    // writer of it (record_untrained_dim) with it, so its header's bounds
    // are held to its layout here (layout::check_bounds says why).
    check(index, layout::check_meta_bounds(g.page()));
    m
}

/// Raises the ERROR for an index written in another on-disk format (by an older
/// or newer arrw): SQLSTATE 0A000 (feature_not_supported), both format numbers,
/// and the REINDEX that rebuilds it in this arrw's format. Never read further:
/// the layout of another format is not this one's.
#[cold]
fn wrong_format(index: pg_sys::Relation, version: u32) -> ! {
    let q = qualified_name(index);
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!(
            "ivfpq index \"{}\" has on-disk format {version}, this arrw reads format {}; REINDEX it",
            rel_name(index),
            layout::FORMAT_VERSION
        ),
        "ivfpq",
    )
    .set_detail(
        "The index was built by an arrw with another ivfpq format; its pages are not read. \
         The table's rows are intact: REINDEX rebuilds the index from them.",
    )
    .set_hint(format!("REINDEX INDEX {q}"))
    .report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned");
}

/// The index's name, for messages.
pub fn rel_name(rel: pg_sys::Relation) -> String {
    // SAFETY: rd_rel->relname is a NUL-terminated NameData of the open relation.
    unsafe {
        std::ffi::CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// The index's meta page, with every field that steers reads checked against
/// the index's size.
pub fn meta(index: pg_sys::Relation) -> MetaData {
    meta_counted(index, &mut 0)
}

/// [`meta`] for a caller that reads it again and again (an insert per row of
/// one statement): `known` is the index's size it counted last (0: none yet),
/// counted again only when the meta page names a block past it, as in
/// [`list_dir_counted`]. Counting is an `lseek`: two a row were ~10% of a
/// `COPY` into an indexed table.
pub fn meta_counted(index: pg_sys::Relation, known: &mut u32) -> MetaData {
    // Counted once, before block 0 is read (the count the checks below use).
    if *known == 0 {
        *known = nblocks(index);
        if *known == 0 {
            empty_index(index);
        }
    }
    let m = meta_page(index);
    check_counted(index, known, |n| layout::check_meta(&m, n));
    m
}

/// The dimensions every row of an untrained index must have
/// (`MetaData::untrained_dim`): the recorded ones, or
/// `dim` (the row being inserted) recorded now when none are yet; 0 when the
/// index is no longer untrained (nothing to hold rows to).
///
/// Lock order: the meta page is locked alone. The caller holds no page lock
/// and none is taken while this one is held, so it is outside append.rs's
/// order, and two first inserts of different dimensions serialize on it: the
/// second reads the first's dimensions and gets the ERROR.
pub fn record_untrained_dim(index: pg_sys::Relation, dim: u32) -> u32 {
    let mut ws = WriteSet::new(index);
    let i = ws.lock(index, layout::META_BLOCK);
    let mut m = match layout::read_meta_page(ws.page(i)) {
        Ok(m) => m,
        Err(e) => corrupt(index, e),
    };
    if let Err(e) = layout::check_meta(&m, nblocks(index)) {
        corrupt(index, e);
    }
    if m.untrained == 0 || m.untrained_dim != 0 {
        // Dropping the set releases the page unchanged and unlogged.
        return m.untrained_dim;
    }
    m.untrained_dim = dim;
    layout::write_meta(ws.page(i), &m);
    // A meta page of an earlier build of this format ends its pd_lower at a
    // shorter struct (layout::META_LOWERS), and untrained_dim lies past it,
    // in what the header calls free space, which the write would zero
    // (WriteSet::commit refuses it): pd_lower moves to the whole struct, in
    // the same record. A no-op on a page built with it.
    set_lower(ws.page(i), layout::META_BYTES);
    let at = contents_offset();
    ws.only_changed(i, &[(12, 14), (at, at + layout::META_BYTES)]);
    // WAL: one generic record of the meta page's changed bytes, replayed by
    // PostgreSQL's generic redo on replicas and in recovery.
    ws.commit();
    dim
}

/// Where a list's directory entry is, and what it said when read.
#[derive(Clone, Copy, Debug)]
pub struct ListDir {
    pub list: u32,
    pub blk: u32,
    pub slot: usize,
    pub entry: DirEntry,
    /// The index's size when the entry was checked.
    nblocks: u32,
}

/// Reads and checks `list`'s directory entry: a directory page, and a head and
/// insert page that are data blocks of the index.
pub fn list_dir(index: pg_sys::Relation, meta: &MetaData, list: u32) -> ListDir {
    list_dir_counted(index, meta, list, &mut 0)
}

/// [`list_dir`] for a caller that reads many lists (a scan): `known` is the
/// index's size it counted last (0: none yet). The entry is checked against it,
/// and the index counted again (`known` updated) only when the entry names a
/// block past it (an insert extended the index since). Counting is a system call
/// (`lseek`): once per probed list it was ~1 µs of every list a scan probed.
pub fn list_dir_counted(
    index: pg_sys::Relation,
    meta: &MetaData,
    list: u32,
    known: &mut u32,
) -> ListDir {
    if list >= meta.lists {
        corrupt(
            index,
            Corrupt {
                block: layout::META_BLOCK,
                what: format!(
                    "the model names list {list}, the meta page has {} lists",
                    meta.lists
                ),
            },
        );
    }
    let (blk, slot) = layout::dir_location(meta, list);
    let entry = {
        let g = ReadGuard::new(index, blk);
        check_dir(index, meta, g.page(), blk);
        layout::read_dir(g.page(), slot)
    };
    // Counted after the read: a block the entry names (an insert that just
    // extended the list) exists by then.
    check_counted(index, known, |n| {
        layout::check_dir_entry(meta, list, &entry, blk, n)
    });
    let n = *known;
    ListDir {
        list,
        blk,
        slot,
        entry,
        nblocks: n,
    }
}

/// A checked walk along a list's chain of data pages (`layout::Chain` plus the
/// index's current size). The caller reads each block `next_block` returns
/// with whatever lock it needs and passes the page to `visit`:
///
/// ```ignore
/// let mut chain = ListChain::new(index, &meta, &dir);
/// while let Some(blk) = chain.next_block() {
///     let g = ReadGuard::new(index, blk);
///     let h = chain.visit(g.page()); // h.count <= capacity, h.next checked next time
/// }
/// ```
pub struct ListChain {
    index: pg_sys::Relation,
    chain: layout::Chain,
    nblocks: u32,
}

impl ListChain {
    /// A walk from the list's head. A walk that reaches the chain's end
    /// without meeting the insert page `dir` names is an ERROR
    /// (`layout::Chain::must_reach`): a cut link would otherwise hide the
    /// rest of the list from scans and VACUUM without a word.
    pub fn new(index: pg_sys::Relation, meta: &MetaData, dir: &ListDir) -> ListChain {
        ListChain {
            index,
            chain: layout::Chain::new(meta, dir.list, dir.blk, dir.entry.head)
                .must_reach(dir.entry.insert),
            nblocks: dir.nblocks,
        }
    }

    /// The next block of the chain, or None at its end; ERROR on a link outside
    /// the index's data blocks or a chain that loops.
    pub fn next_block(&mut self) -> Option<u32> {
        let chain = &mut self.chain;
        check_counted(self.index, &mut self.nblocks, |n| chain.next_block(n))
    }

    /// Checks the page of the block `next_block` returned (data page of this
    /// list, count within capacity) and moves on to its successor.
    pub fn visit(&mut self, page: &[u8]) -> DataHeader {
        check(self.index, self.chain.visit(page))
    }

    /// The first fine page of data page `page` (block `blk`), checked: None
    /// when the page has none (or the index keeps no refine code).
    pub fn fine_link(
        &mut self,
        fine: Option<&FineGeom>,
        geom: &DataGeom,
        page: &[u8],
        blk: u32,
    ) -> Option<u32> {
        let fg = fine?;
        let link = geom.fine(page);
        // An insert extends the index before it links the new page.
        check_counted(self.index, &mut self.nblocks, |n| {
            fg.check_link(link, blk, n)
        })
    }

    /// A walk of `dir`'s list from `from`, a block known to be on its chain
    /// (an insert page this backend reached from the head before: pages are
    /// never unlinked, so it still is).
    pub fn resume(index: pg_sys::Relation, meta: &MetaData, dir: &ListDir, from: u32) -> ListChain {
        ListChain {
            index,
            chain: layout::Chain::new(meta, dir.list, dir.blk, from),
            nblocks: dir.nblocks,
        }
    }

    /// Walks (share-locking one page at a time) until the next block is
    /// `target`; ERROR if the chain ends first. An insert page that no chain
    /// reaches would take rows that no scan finds.
    pub fn seek(&mut self, target: u32) {
        if !self.try_seek(target) {
            corrupt(
                self.index,
                Corrupt {
                    block: target,
                    what: format!(
                        "list {}'s insert page is not on the list's chain",
                        self.chain.list()
                    ),
                },
            );
        }
    }

    /// [`ListChain::seek`], false instead of an ERROR when the chain ends
    /// before `target`.
    pub fn try_seek(&mut self, target: u32) -> bool {
        while self.chain.peek() != target {
            pg_sys::check_for_interrupts!();
            let Some(blk) = self.next_block() else {
                return false;
            };
            let g = ReadGuard::new(self.index, blk);
            self.visit(g.page());
        }
        true
    }
}

/// Checks that `page` (block `blk`) is a directory page of the index `meta`
/// describes, with its layout's header bounds (ERROR XX002 otherwise). For a
/// writer that locks the page again after [`list_dir`] read it.
pub fn check_dir(index: pg_sys::Relation, meta: &MetaData, page: &[u8], blk: u32) {
    check(index, layout::check_dir_page(page, blk, meta))
}

/// Checks that `page` (block `blk`) is a fine page of data block `owner`
/// (ERROR XX002 otherwise).
pub fn check_fine(index: pg_sys::Relation, fg: &FineGeom, page: &[u8], blk: u32, owner: u32) {
    check(index, fg.check(page, blk, owner))
}

/// A pinned and share-locked page.
pub struct ReadGuard {
    buf: pg_sys::Buffer,
}

impl ReadGuard {
    /// Pins block `blk` of the index's main fork and share-locks it.
    pub fn new(rel: pg_sys::Relation, blk: u32) -> ReadGuard {
        ReadGuard {
            buf: pin_and_lock(rel, blk, pg_sys::BUFFER_LOCK_SHARE),
        }
    }

    /// Share-locks buffer `buf`, which the caller pinned (with [`pin`]) and
    /// hands over: the guard unlocks and unpins it.
    pub fn lock_pinned(buf: pg_sys::Buffer) -> ReadGuard {
        // SAFETY: the caller pinned `buf` (its contract); the pin is now ours.
        unsafe { pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_SHARE as i32) };
        ReadGuard { buf }
    }

    /// The whole page (BLCKSZ bytes), readable while the share lock is held.
    pub fn page(&self) -> &[u8] {
        // SAFETY: the buffer is pinned and share-locked for the guard's lifetime,
        // so its BLCKSZ bytes are valid and no one else modifies them.
        unsafe {
            std::slice::from_raw_parts(
                pg_sys::BufferGetPage(self.buf) as *const u8,
                pg_sys::BLCKSZ as usize,
            )
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        // SAFETY: we hold exactly one pin and the share lock on `buf`.
        unsafe { pg_sys::UnlockReleaseBuffer(self.buf) }
    }
}

/// Pins block `blk` of the index's main fork and takes its content lock in `mode`.
fn pin_and_lock(rel: pg_sys::Relation, blk: u32, mode: u32) -> pg_sys::Buffer {
    let buf = pin(rel, blk, Recents::Index);
    // SAFETY: `buf` is pinned by this backend (pin above).
    unsafe { pg_sys::LockBuffer(buf, mode as i32) };
    buf
}

/// Which per-backend table of recent buffers (`arrw_core::recent`, 12 bytes an
/// entry) a relation's blocks go to (see [`pin_recent`]): index pages and the
/// table pages re-ranking reads are kept apart, so that a scan's many heap
/// pages do not push out the index's.
#[derive(Clone, Copy, PartialEq)]
pub enum Recents {
    /// 8,192 entries (96 kB): ivfpq index pages, whatever the index's size.
    Index,
    /// Table pages re-ranking reads (src/ivfpq/fetch.rs): made by the first
    /// scan that re-ranks, with four entries per page of the largest table
    /// re-ranked in so far ([`size_recents`]), from 8,192 to 262,144 entries
    /// (96 kB to 3 MB: tables up to 512 MB get four entries a page, larger
    /// ones fewer, and hit less).
    Heap,
}

/// Entries a table starts with.
const RECENTS: usize = 8192;

/// Most entries of the heap table (3 MB).
const MAX_HEAP_RECENTS: usize = 262_144;

/// Grows the table `which` to four entries per page of `rel` (by
/// `pg_class.relpages`, as of its last VACUUM, ANALYZE or index build; at most
/// [`MAX_HEAP_RECENTS`]), emptying it if it grows. Called once per scan.
pub fn size_recents(rel: pg_sys::Relation, which: Recents) {
    // SAFETY: `rel` is an open relation: its pg_class row is readable.
    let pages = unsafe { (*(*rel).rd_rel).relpages }.max(0) as usize;
    // Four entries a page: two-way sets then keep ~97% of the pages (at one
    // entry a page, ~70%).
    let want = pages.saturating_mul(4).clamp(RECENTS, MAX_HEAP_RECENTS);
    RECENT.with(|r| r.borrow_mut()[which as usize].reserve(want));
}

/// Pins block `blk` of `rel`'s main fork (no lock), through the recent-buffer
/// table `which` when this backend found the block in a shared buffer before
/// (see [`pin_recent`]), else with `ReadBufferExtended`, which raises an ERROR
/// for a block past the end. InvalidBlockNumber is refused with an XX002
/// ERROR (it is P_NEW to ReadBuffer: reading it would add a block); callers
/// pass only checked blocks, so only a damaged index link (`Index`) or entry
/// TID (`Heap`) gets here with it.
pub fn pin(rel: pg_sys::Relation, blk: u32, which: Recents) -> pg_sys::Buffer {
    if blk == pg_sys::InvalidBlockNumber {
        match which {
            Recents::Index => corrupt(
                rel,
                Corrupt {
                    block: blk,
                    what: "read of InvalidBlockNumber".into(),
                },
            ),
            Recents::Heap => crate::errors::error(
                PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
                format!(
                    "ivfpq index entry points at block {blk} of table \"{}\", which has no such block",
                    rel_name(rel)
                ),
            ),
        }
    }
    pin_recent(rel, blk, which).unwrap_or_else(|| {
        // SAFETY: `rel` is an open relation (callers hold it for an AM
        // callback or a scan); `blk` is not P_NEW (refused above).
        let buf = unsafe {
            pg_sys::ReadBufferExtended(
                rel,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                blk,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            )
        };
        remember_buffer(rel, blk, buf, which);
        buf
    })
}

/// Hints the CPU to bring the cache line at `p` in (no effect elsewhere).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address, and
    // changes no memory.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The addresses of the buffer descriptor and the page of the shared buffer
/// the table `which` remembers for block `blk` of `rel`, for CPU prefetch
/// hints only (the buffer may hold another block by now: neither is read).
fn recent_addresses(
    rel: pg_sys::Relation,
    blk: u32,
    which: Recents,
) -> Option<(*const u8, *const u8)> {
    let buf = recent_buffer(rel, blk, which)?;
    let i = (buf - 1) as usize;
    // Addresses only (wrapping arithmetic, no dereference): `buf` is a shared
    // buffer number ReadBufferExtended returned (1..=NBuffers), so both lie in
    // the shared arrays; a prefetch would be harmless even if they did not.
    // SAFETY: reading the two global array bases set at backend start.
    let (descs, blocks) = unsafe { (pg_sys::BufferDescriptors, pg_sys::BufferBlocks) };
    Some((
        descs.wrapping_add(i) as *const u8,
        (blocks as *const u8).wrapping_add(i * pg_sys::BLCKSZ as usize),
    ))
}

/// When the table `which` remembers a shared buffer for block `blk` of `rel`,
/// prefetches that buffer's descriptor and page header, which [`pin`] is about
/// to touch: a caller that will pin several blocks hints them all first, so
/// their cache misses overlap. Reads nothing of the buffer itself.
pub fn prefetch_recent(rel: pg_sys::Relation, blk: u32, which: Recents) {
    if let Some((desc, page)) = recent_addresses(rel, blk, which) {
        prefetch(desc);
        prefetch(page);
    }
}

/// As [`prefetch_recent`], and more of the page: its last cache line (the
/// special space, which the page checks read) and its first `bytes` (a cache
/// line at a time). For a walk that knows its next page while it reads the
/// current one (a list's chain), so that page's checks and first code blocks
/// need not wait on memory.
pub fn prefetch_recent_page(rel: pg_sys::Relation, blk: u32, which: Recents, bytes: usize) {
    prefetch_recent_spans(rel, blk, which, std::iter::once((0, bytes)));
}

/// As [`prefetch_recent`], for a page a caller will read at known places: the
/// buffer's descriptor, the page's special space (last line, which the page
/// checks read) and every cache line of each `(offset, len)` span. For a loop
/// that visits pages one at a time and knows the next ones: it hints a page a
/// few visits ahead instead of pinning many at once (a backend tracks only its
/// first 8 pins in an array; more go to a hash table, whose lookups on every
/// pin and unpin cost more than the misses they were meant to overlap).
pub fn prefetch_recent_spans(
    rel: pg_sys::Relation,
    blk: u32,
    which: Recents,
    spans: impl Iterator<Item = (usize, usize)>,
) {
    let Some((desc, page)) = recent_addresses(rel, blk, which) else {
        return;
    };
    let size = pg_sys::BLCKSZ as usize;
    prefetch(desc);
    prefetch(page.wrapping_add(size - 64));
    for (off, len) in spans {
        let end = (off + len).min(size);
        let mut line = off & !63;
        while line < end {
            prefetch(page.wrapping_add(line));
            line += 64;
        }
    }
}

thread_local! {
    /// See [`pin_recent`], one per [`Recents`]. Backends are single-threaded:
    /// only their main thread reads pages.
    static RECENT: std::cell::RefCell<[RecentTable; 2]> =
        const { std::cell::RefCell::new([RecentTable::new(), RecentTable::new()]) };
}

/// The shared buffer the table `which` remembers for block `blk` of `rel`, if
/// any (not checked against the buffer: see [`pin_recent`]). Never for a
/// temporary relation: it lives in local buffers, and its relfilenode number
/// may equal a permanent relation's (their files differ by backend), whose
/// shared buffer would pass ReadRecentBuffer's tag check.
fn recent_buffer(rel: pg_sys::Relation, blk: u32, which: Recents) -> Option<pg_sys::Buffer> {
    if uses_local_buffers(rel) {
        return None;
    }
    // SAFETY: `rel` is an open relation: its descriptor is readable.
    let node = unsafe { (*rel).rd_node };
    RECENT
        .with(|r| r.borrow()[which as usize].get(node.relNode.to_u32(), node.dbNode.to_u32(), blk))
}

/// Pins block `blk` of `rel` without a buffer-mapping lookup when this backend
/// found it in a shared buffer before and the buffer still holds it
/// (`ReadRecentBuffer` checks the buffer's tag under its header lock, so a
/// buffer since given to another block is refused and `None` returned). The
/// lookup (a hash probe under a partition lock, cache misses in a table sized
/// by `shared_buffers`) was 12% of a 384-d query's backend time, for ~400 index
/// pages a query, and 12% of a SIFT `LIMIT 100`'s for its ~800 heap rows. The
/// statistics a hit of `ReadBufferExtended` would count are counted here too
/// (the relation's `pg_statio` hits, VACUUM's page-hit cost).
fn pin_recent(rel: pg_sys::Relation, blk: u32, which: Recents) -> Option<pg_sys::Buffer> {
    let buf = recent_buffer(rel, blk, which)?;
    // SAFETY: `rel` is an open relation: its descriptor is readable.
    let node = unsafe { (*rel).rd_node };
    let fork = pg_sys::ForkNumber::MAIN_FORKNUM;
    // SAFETY: `buf` is a shared buffer (1..=NBuffers) ReadBufferExtended gave
    // this backend, so its header may be inspected; ReadRecentBuffer pins it
    // only if it is valid and tagged with this relation, fork and block.
    let pinned = unsafe { pg_sys::ReadRecentBuffer(node, fork, blk, buf) };
    if !pinned {
        return None;
    }
    // SAFETY: `rel` is open; these are the counters ReadBufferExtended and
    // ReadBuffer_common update for a shared-buffer hit (pgstat_count_buffer_read
    // and _hit, VacuumPageHit and the cost balance); backend-local globals.
    unsafe {
        if (*rel).pgstat_info.is_null() && (*rel).pgstat_enabled {
            pg_sys::pgstat_assoc_relation(rel);
        }
        let info = (*rel).pgstat_info;
        if !info.is_null() {
            (*info).t_counts.t_blocks_fetched += 1;
            (*info).t_counts.t_blocks_hit += 1;
        }
        pg_sys::VacuumPageHit += 1;
        if pg_sys::VacuumCostActive {
            pg_sys::VacuumCostBalance += pg_sys::VacuumCostPageHit;
        }
    }
    Some(buf)
}

/// Whether `rel` is temporary (PostgreSQL's `RelationUsesLocalBuffers`).
fn uses_local_buffers(rel: pg_sys::Relation) -> bool {
    // SAFETY: `rel` is an open relation: its descriptor and pg_class row are
    // readable.
    unsafe { (*(*rel).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char }
}

/// Notes in table `which` that block `blk` of `rel` is in shared buffer `buf`
/// (see [`pin_recent`]; the local buffers of temporary relations, numbered
/// below 0, are not kept).
fn remember_buffer(rel: pg_sys::Relation, blk: u32, buf: pg_sys::Buffer, which: Recents) {
    if buf <= 0 {
        return;
    }
    // SAFETY: `rel` is an open relation: its descriptor is readable.
    let node = unsafe { (*rel).rd_node };
    RECENT.with(|r| {
        r.borrow_mut()[which as usize].put(
            node.relNode.to_u32(),
            node.dbNode.to_u32(),
            blk,
            buf,
            RECENTS,
        )
    });
}

/// Exclusively locks `blk` (pinning it) and returns the buffer.
fn lock_exclusive(rel: pg_sys::Relation, blk: u32) -> pg_sys::Buffer {
    pin_and_lock(rel, blk, pg_sys::BUFFER_LOCK_EXCLUSIVE)
}

/// Adds a new block at the end of the index and returns it exclusively locked.
///
/// The extension lock serializes concurrent extenders so that two backends never
/// get the same new block; it is released as soon as the block exists (the
/// buffer lock then protects the page), as PostgreSQL's own AMs do.
pub fn extend(rel: pg_sys::Relation) -> pg_sys::Buffer {
    extend_contiguous(rel, 1).remove(0)
}

/// Adds `n` new blocks at the end of the index, contiguous, and returns them
/// exclusively locked in block order: the relation extension lock is held
/// until all exist, so no concurrent extender takes a block in between (a data
/// page's fine pages must directly follow it). Every extender of an ivfpq
/// index goes through here or [`extend`], both under that lock.
pub fn extend_contiguous(rel: pg_sys::Relation, n: usize) -> Vec<pg_sys::Buffer> {
    let mut out = Vec::with_capacity(n);
    // SAFETY: `rel` is an open index; P_NEW extends the relation by one zeroed
    // block per call; each new buffer is locked before anyone can reach it
    // through a link, and the extension lock is released after the loop (an
    // ERROR inside releases it with the transaction's locks).
    unsafe {
        pg_sys::LockRelationForExtension(rel, pg_sys::ExclusiveLock as i32);
        for _ in 0..n {
            let buf = pg_sys::ReadBufferExtended(
                rel,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                pg_sys::InvalidBlockNumber, // P_NEW
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            );
            pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
            out.push(buf);
        }
        pg_sys::UnlockRelationForExtension(rel, pg_sys::ExclusiveLock as i32);
    }
    for w in out.windows(2) {
        assert_eq!(
            block_of(w[1]),
            block_of(w[0]) + 1,
            "ivfpq: extension was not contiguous"
        );
    }
    out
}

/// The block number of a buffer.
pub fn block_of(buf: pg_sys::Buffer) -> u32 {
    // SAFETY: `buf` is a valid pinned buffer.
    unsafe { pg_sys::BufferGetBlockNumber(buf) }
}

/// Number of blocks in the index's main fork.
pub fn nblocks(rel: pg_sys::Relation) -> u32 {
    // SAFETY: `rel` is an open relation.
    unsafe { pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) }
}

/// Whether heap block `blk`, read from an index entry, lies inside its table,
/// whose block count `known` caches (0: not counted yet). `count` counts the
/// table's main fork again (one `lseek`), which happens only when `blk` lies
/// beyond the cached count: the table may have grown since. `Err(n)` carries
/// the fresh count when it does not lie inside. The one rule for entries'
/// heap blocks, shared by scans (`fetch::check_heap_tid`) and `ivfpq_check`.
pub fn heap_block_within(
    blk: u32,
    known: &std::cell::Cell<u32>,
    count: impl FnOnce() -> u32,
) -> Result<(), u32> {
    if blk < known.get() {
        return Ok(());
    }
    let n = count();
    known.set(n);
    if blk < n {
        Ok(())
    } else {
        Err(n)
    }
}

/// Pages one [`WriteSet`] may hold: the most block references a WAL record
/// takes without `XLogEnsureRecordSpace` (and GenericXLog's limit).
pub const WRITESET_PAGES: usize = 4;

/// A page image a [`WriteSet`] edits, with the delta that logs it. Aligned as
/// PostgreSQL's `PGAlignedBlock`, since callers treat it as a `Page`.
#[repr(C, align(64))]
struct Image {
    bytes: [u8; pg_sys::BLCKSZ as usize],
    delta: Vec<u8>,
    /// The only byte ranges the caller changed ([`WriteSet::only_changed`]);
    /// `None`: any byte may have changed.
    changed: Option<[(usize, usize); MAX_CHANGED]>,
    nchanged: usize,
}

/// Ranges a caller may name in [`WriteSet::only_changed`].
const MAX_CHANGED: usize = 4;

/// Spare images kept per backend for the next WriteSet (at most two are open
/// at once: an insert's data-page set and the fine pages it extends with).
const SPARE_IMAGES: usize = 8;

thread_local! {
    /// Images of finished WriteSets, reused: a row inserted costs no
    /// allocation for its WAL record. Only PostgreSQL's own thread touches it.
    static SPARE: std::cell::RefCell<Vec<Box<Image>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn take_image() -> Box<Image> {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| {
        Box::new(Image {
            bytes: [0; pg_sys::BLCKSZ as usize],
            delta: Vec::with_capacity(arrw_core::page_delta::MAX_DELTA),
            changed: None,
            nchanged: 0,
        })
    })
}

fn give_back(img: Box<Image>) {
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_IMAGES {
            s.push(img);
        }
    });
}

/// Up to four pages modified atomically under one generic WAL record.
///
/// Callers edit a private image of each page (from [`WriteSet::page`]);
/// [`WriteSet::commit`] applies the images to the buffers and logs them in one
/// `RM_GENERIC_ID` record, which PostgreSQL's own generic redo replays. It does
/// what `GenericXLogFinish` does, except that the delta of each page (the
/// changed byte ranges) is found by `arrw_core::page_delta` 64 bytes at a
/// time, before the critical section, instead of a byte at a time inside it:
/// PostgreSQL's comparison was ~45% of a `COPY` into an indexed table
/// (SAFETY.md, "WAL"). Pages are standard pages: their hole (`pd_lower ..
/// pd_upper`) is zeroed when applied and not logged, as generic redo expects.
///
/// Lock order: callers add pages in the order documented in `append.rs` (data
/// pages of one list in chain order, then the directory page); nothing ever
/// waits for a data page while holding a directory page, so there is no cycle.
pub struct WriteSet {
    rel: pg_sys::Relation,
    /// Whether changes are WAL-logged: the index is permanent (an unlogged or
    /// temporary index is not, as for GenericXLog; a permanent one is logged
    /// even under `wal_level = minimal`, which costs only WAL).
    logged: bool,
    bufs: [pg_sys::Buffer; WRITESET_PAGES],
    /// Logged as a full image (new pages) rather than a delta.
    full: [bool; WRITESET_PAGES],
    images: [Option<Box<Image>>; WRITESET_PAGES],
    n: usize,
}

impl WriteSet {
    pub fn new(rel: pg_sys::Relation) -> WriteSet {
        // SAFETY: `rel` is an open relation; rd_rel is its pg_class row.
        let logged = unsafe {
            (*(*rel).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char
        };
        WriteSet {
            rel,
            logged,
            bufs: [pg_sys::InvalidBuffer as pg_sys::Buffer; WRITESET_PAGES],
            full: [false; WRITESET_PAGES],
            images: [None, None, None, None],
            n: 0,
        }
    }

    /// Exclusively locks block `blk` and adds it to the record; returns its index.
    pub fn lock(&mut self, rel: pg_sys::Relation, blk: u32) -> usize {
        let buf = lock_exclusive(rel, blk);
        self.add(buf, false)
    }

    /// Adds an already exclusively locked buffer (e.g. from [`extend`]). With
    /// `fresh`, the page is new and is logged as a full image.
    pub fn add(&mut self, buf: pg_sys::Buffer, fresh: bool) -> usize {
        assert!(
            self.n < WRITESET_PAGES,
            "a WriteSet takes at most {WRITESET_PAGES} pages per record"
        );
        debug_assert!(!self.bufs[..self.n].contains(&buf), "a page added twice");
        let mut img = take_image();
        // SAFETY: `buf` is pinned and exclusively locked by us: its page is
        // BLCKSZ bytes nobody else changes until we release it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                pg_sys::BufferGetPage(buf) as *const u8,
                img.bytes.as_mut_ptr(),
                pg_sys::BLCKSZ as usize,
            )
        };
        img.changed = None;
        let i = self.n;
        self.bufs[i] = buf;
        self.full[i] = fresh;
        self.images[i] = Some(img);
        self.n += 1;
        i
    }

    /// The working copy of page `i` (BLCKSZ bytes).
    pub fn page(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.n, "page {i} of a WriteSet of {}", self.n);
        &mut self.images[i].as_mut().expect("added").bytes
    }

    pub fn block(&self, i: usize) -> u32 {
        block_of(self.bufs[i])
    }

    /// Tells [`WriteSet::commit`] that page `i` changed only inside `ranges`
    /// (sorted byte ranges, at most four; e.g. `DataGeom::push_ranges`), so
    /// that its delta compares only them instead of the whole page (an
    /// insert's 8 kB comparison was ~8% of a `COPY`). A change outside them
    /// would be lost on the primary and the replicas alike (the page gets
    /// only the delta's bytes): debug builds (the `#[pg_test]` tier) check
    /// that there is none.
    pub fn only_changed(&mut self, i: usize, ranges: &[(usize, usize)]) {
        assert!(i < self.n && ranges.len() <= MAX_CHANGED);
        let img = self.images[i].as_mut().expect("added");
        let mut r = [(0, 0); MAX_CHANGED];
        r[..ranges.len()].copy_from_slice(ranges);
        img.changed = Some(r);
        img.nchanged = ranges.len();
    }

    /// Applies the images to the pages and WAL-logs them in one record, then
    /// releases the pages.
    pub fn commit(mut self) {
        let n = self.n;
        if n == 0 {
            // Nothing to apply or log (a record of no block is no record).
            return;
        }
        // Everything that can fail happens before the critical section: a
        // page whose header bounds no hole is an internal error (our own
        // images always do), and nothing is applied.
        let mut holes = [(0usize, 0usize); WRITESET_PAGES];
        for (i, hole) in holes.iter_mut().enumerate().take(n) {
            let img = self.images[i].as_mut().expect("added");
            // SAFETY: the buffer is pinned and exclusively locked by us.
            let old = unsafe {
                std::slice::from_raw_parts(
                    pg_sys::BufferGetPage(self.bufs[i]) as *const u8,
                    pg_sys::BLCKSZ as usize,
                )
            };
            // A page read from disk whose header bounds no hole is damaged (the
            // readers' checks look at the index's own fields, not these); a new
            // page's old bytes do not matter.
            if !self.full[i] {
                match arrw_core::page_delta::hole_is_clear(old) {
                    Err(b) => corrupt(
                        self.rel,
                        Corrupt {
                            block: block_of(self.bufs[i]),
                            what: format!(
                                "a page header whose pd_lower {} and pd_upper {} bound no free space",
                                b.lower, b.upper
                            ),
                        },
                    ),
                    // Applying the image zeroes the hole: with bounds damaged
                    // over live entries, an insert erased them (rows gone
                    // from every later scan, without an error).
                    Ok(false) => corrupt(self.rel, hole_not_clear(old, block_of(self.bufs[i]))),
                    Ok(true) => {}
                }
            }
            *hole = match arrw_core::page_delta::hole(&img.bytes) {
                Ok(h) => h,
                Err(b) => bad_image(b),
            };
            // Applying the image zeroes its hole (below, and redo on replicas
            // does the same), so anything the writer put there would be lost
            // after the record says it was written: an insert into a page
            // whose bounds were damaged past the readers' checks raised the
            // count over an entry it had just erased (hunt-121). Whatever let
            // the page through (damage, a layout mistake), such a write is
            // refused here, before anything is applied or logged. With named
            // ranges (an insert) that is a few compares; without them, the
            // hole must hold only zero bytes (a page read from disk had a
            // clear hole, checked above, and a new page starts zeroed, so a
            // byte there is one the writer put).
            let into_hole = match img.changed {
                Some(r) => layout::range_in_hole(&r[..img.nchanged], *hole).map(Some),
                None => (!img.bytes[hole.0..hole.1].iter().all(|&b| b == 0)).then_some(None),
            };
            if let Some(changed) = into_hole {
                let block = block_of(self.bufs[i]);
                corrupt(self.rel, write_in_hole(block, *hole, changed));
            }
            if self.logged && !self.full[i] {
                let found = match img.changed {
                    Some(r) => {
                        let ranges = &r[..img.nchanged];
                        debug_assert!(
                            arrw_core::page_delta::unchanged_outside(old, &img.bytes, ranges),
                            "a page changed outside the ranges its writer named"
                        );
                        arrw_core::page_delta::page_delta_within(
                            old,
                            &img.bytes,
                            ranges,
                            &mut img.delta,
                        )
                    }
                    None => arrw_core::page_delta::page_delta(old, &img.bytes, &mut img.delta),
                };
                if let Err(b) = found {
                    bad_image(b);
                }
            }
        }
        // Inside the critical section only copies and PostgreSQL's WAL calls
        // run (an ERROR there becomes a PANIC, as in GenericXLogFinish, whose
        // steps these are, in the same order).
        // SAFETY: every buffer is pinned and exclusively locked by us; the
        // images and deltas stay alive (in self) until XLogInsert copied them.
        unsafe {
            if self.logged {
                pg_sys::XLogBeginInsert();
            }
            pg_sys::CritSectionCount += 1;
            for (i, &(lower, upper)) in holes.iter().enumerate().take(n) {
                let buf = self.bufs[i];
                let img = self.images[i].as_mut().expect("added");
                let page = pg_sys::BufferGetPage(buf) as *mut u8;
                let src = img.bytes.as_ptr();
                let delta_applied = self.logged
                    && !self.full[i]
                    && arrw_core::page_delta::apply_delta(
                        std::slice::from_raw_parts_mut(page, pg_sys::BLCKSZ as usize),
                        &img.delta,
                    )
                    .is_ok();
                if delta_applied {
                    // Only the changed bytes were copied (the delta was taken
                    // against this very page, under our lock), and the hole
                    // zeroed, as redo does: the same page as the whole copy
                    // below, for a fraction of the memory traffic.
                } else if self.logged {
                    // The hole is zeroed, as redo leaves it (see above).
                    std::ptr::copy_nonoverlapping(src, page, lower);
                    std::ptr::write_bytes(page.add(lower), 0, upper - lower);
                    std::ptr::copy_nonoverlapping(
                        src.add(upper),
                        page.add(upper),
                        pg_sys::BLCKSZ as usize - upper,
                    );
                } else {
                    std::ptr::copy_nonoverlapping(src, page, pg_sys::BLCKSZ as usize);
                }
                pg_sys::MarkBufferDirty(buf);
                if self.logged {
                    let id = i as u8;
                    if self.full[i] {
                        let flags = pg_sys::REGBUF_FORCE_IMAGE | pg_sys::REGBUF_STANDARD;
                        pg_sys::XLogRegisterBuffer(id, buf, flags as u8);
                    } else {
                        pg_sys::XLogRegisterBuffer(id, buf, pg_sys::REGBUF_STANDARD as u8);
                        if !img.delta.is_empty() {
                            pg_sys::XLogRegisterBufData(
                                id,
                                img.delta.as_mut_ptr() as *mut std::ffi::c_char,
                                img.delta.len() as std::ffi::c_int,
                            );
                        }
                    }
                }
            }
            if self.logged {
                let lsn = pg_sys::XLogInsert(pg_sys::RmgrIds::RM_GENERIC_ID as u8, 0);
                for &buf in &self.bufs[..n] {
                    set_page_lsn(pg_sys::BufferGetPage(buf) as *mut u8, lsn);
                }
            }
            pg_sys::CritSectionCount -= 1;
        }
    }
}

/// PageSetLSN: the page header's `pd_lsn` (two 32-bit halves, high first).
///
/// # Safety
/// `page` points to a page we hold exclusively locked.
unsafe fn set_page_lsn(page: *mut u8, lsn: pg_sys::XLogRecPtr) {
    // SAFETY: pd_lsn is the first field of the page header: {xlogid, xrecoff}.
    unsafe {
        let h = page as *mut pg_sys::PageHeaderData;
        (*h).pd_lsn.xlogid = (lsn >> 32) as u32;
        (*h).pd_lsn.xrecoff = lsn as u32;
    }
}

#[cold]
fn bad_image(b: arrw_core::page_delta::BadBounds) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!(
            "ivfpq: a page about to be written has pd_lower {} and pd_upper {}",
            b.lower, b.upper
        ),
        "WriteSet::commit",
    )
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

impl Drop for WriteSet {
    fn drop(&mut self) {
        for i in 0..self.n {
            if let Some(img) = self.images[i].take() {
                give_back(img);
            }
            // SAFETY: we still hold the pin and lock we took on it, once.
            // Uncommitted images are dropped without touching the pages.
            unsafe { pg_sys::UnlockReleaseBuffer(self.bufs[i]) };
        }
    }
}

/// Initializes a standard page header with `special` bytes of special space.
pub fn init_page(page: &mut [u8], special: usize) {
    // SAFETY: `page` is BLCKSZ writable bytes (a WriteSet copy or a build buffer).
    unsafe {
        pg_sys::PageInit(
            page.as_mut_ptr() as pg_sys::Page,
            pg_sys::BLCKSZ as usize,
            special,
        )
    }
}

/// The damage [`WriteSet::commit`] reports for a write that changes bytes
/// `changed` (None: some byte it named no range for) inside the free space
/// `hole` of block `block`, which applying it would zero.
#[cold]
fn write_in_hole(block: u32, hole: (usize, usize), changed: Option<(usize, usize)>) -> Corrupt {
    let (lower, upper) = hole;
    let what = match changed {
        Some((s, e)) => format!("bytes {s}..{e}"),
        None => "bytes".to_string(),
    };
    Corrupt {
        block,
        what: format!(
            "a write puts {what} into the free space between pd_lower {lower} and pd_upper \
             {upper}, which writing the page zeroes (the header's bounds disagree with the \
             page's layout); nothing was written"
        ),
    }
}

/// The damage [`WriteSet::commit`] and `ivfpq_check` report for a page whose
/// free space (between pd_lower and pd_upper) is not all zero bytes.
pub fn hole_not_clear(page: &[u8], block: u32) -> Corrupt {
    let (lower, upper) = arrw_core::page_delta::hole(page).unwrap_or((0, 0));
    Corrupt {
        block,
        what: format!(
            "a page header whose pd_lower {lower} and pd_upper {upper} leave data in its free \
             space (damaged bounds: a write would erase it)"
        ),
    }
}

/// `Err` (XX002's [`Corrupt`]) unless `page`'s header bounds a free space of
/// zero bytes (`arrw_core::page_delta::hole_is_clear`).
pub fn check_hole(page: &[u8], block: u32) -> Result<(), Corrupt> {
    match arrw_core::page_delta::hole_is_clear(page) {
        Ok(true) => Ok(()),
        Ok(false) => Err(hole_not_clear(page, block)),
        Err(b) => Err(Corrupt {
            block,
            what: format!(
                "a page header whose pd_lower {} and pd_upper {} bound no free space",
                b.lower, b.upper
            ),
        }),
    }
}

/// Sets pd_lower so that WAL deltas and full-page images keep `used` bytes of
/// contents (they skip the hole between pd_lower and pd_upper).
pub fn set_lower(page: &mut [u8], used_contents: usize) {
    let lower = (contents_offset() + used_contents) as u16;
    // SAFETY: PageHeaderData starts the page; pd_lower is a u16 field of it.
    unsafe { (*(page.as_mut_ptr() as pg_sys::PageHeader)).pd_lower = lower }
}

/// Writes a whole new page image to a new block at the end of the index during
/// the build. Not WAL-logged here: the build logs every page with
/// `log_newpage_range` when it is done.
pub fn build_append(rel: pg_sys::Relation, image: &[u8]) -> u32 {
    let buf = extend(rel);
    // SAFETY: `buf` is exclusively locked by us; we copy exactly BLCKSZ bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            image.as_ptr(),
            pg_sys::BufferGetPage(buf) as *mut u8,
            pg_sys::BLCKSZ as usize,
        );
        pg_sys::MarkBufferDirty(buf);
        let blk = pg_sys::BufferGetBlockNumber(buf);
        pg_sys::UnlockReleaseBuffer(buf);
        blk
    }
}

/// Changes block `blk` (which the build created) in place with `f`; unlogged
/// like [`build_append`]. For the build's fine entries, written one by one
/// into their pages rather than kept as page images per list.
pub fn build_modify(rel: pg_sys::Relation, blk: u32, f: impl FnOnce(&mut [u8])) {
    let buf = lock_exclusive(rel, blk);
    // SAFETY: `buf` is pinned and exclusively locked by us: its BLCKSZ bytes
    // are ours to change until the release below.
    unsafe {
        let page = std::slice::from_raw_parts_mut(
            pg_sys::BufferGetPage(buf) as *mut u8,
            pg_sys::BLCKSZ as usize,
        );
        f(page);
        pg_sys::MarkBufferDirty(buf);
        pg_sys::UnlockReleaseBuffer(buf);
    }
}

/// Overwrites block `blk` (which the build created) with `image`; unlogged like
/// [`build_append`].
pub fn build_overwrite(rel: pg_sys::Relation, blk: u32, image: &[u8]) {
    let buf = lock_exclusive(rel, blk);
    // SAFETY: as in build_append.
    unsafe {
        std::ptr::copy_nonoverlapping(
            image.as_ptr(),
            pg_sys::BufferGetPage(buf) as *mut u8,
            pg_sys::BLCKSZ as usize,
        );
        pg_sys::MarkBufferDirty(buf);
        pg_sys::UnlockReleaseBuffer(buf);
    }
}

/// WAL-logs every block of the index as a full page image (end of the build),
/// so that crash recovery and replicas get the built index.
///
/// A few pages per record: `log_newpage_range` locks every page of a record
/// at once (32 when given more), and at `shared_buffers = 128kB`, PostgreSQL's
/// minimum of 16 buffers, every build of more than ~16 pages failed with
/// XX000 "no unpinned buffers available" (hunt-162). Eight pages a record add
/// one record header per 64 kB of page images: nothing measurable.
pub fn log_all_pages(rel: pg_sys::Relation) {
    const PAGES_PER_RECORD: u32 = 8;
    let n = nblocks(rel);
    // SAFETY: `rel` is open and we hold the build's lock on it; each range is
    // of blocks that exist.
    unsafe {
        if (*(*rel).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char {
            let mut from = 0;
            while from < n {
                let to = n.min(from.saturating_add(PAGES_PER_RECORD));
                pg_sys::log_newpage_range(rel, pg_sys::ForkNumber::MAIN_FORKNUM, from, to, true);
                from = to;
            }
        }
    }
}
