//! Index build: `CREATE INDEX ... USING ivfpq` and `REINDEX`. `ambuild` runs
//! these phases in order:
//!
//! 1. `check_declared_shape_fits`: with the dimension declared and `lists`
//!    given, a `maintenance_work_mem` too small for the model fails before the
//!    table is read.
//! 2. `sample_table`: scan the table once, counting rows and keeping a uniform
//!    reservoir sample (`arrw_core::sample`, at most half of the budget).
//! 3. `plan_build`: choose the model's shape and fit the rest to the budget
//!    (`arrw_core::buildmem`: fewer training rows, smaller encode batches, or an
//!    ERROR saying how much is needed).
//! 4. `train`: train the model on rows drawn from the sample (k-means lists,
//!    residual PQ codebooks) with `arrw_core` on a pool of
//!    `crate::parallel::build_threads()` threads that only compute on the copied
//!    rows; the backend's thread keeps answering cancel requests meanwhile.
//! 5. `append_front_pages` (meta and directory blank, model complete), then
//!    `encode_table`: scan the table again, encoding rows in batches (parallel,
//!    again on copies, while the backend reads the next batch and writes the
//!    last: `EncodeState::flush`) and appending `(code, tid)` to each list's
//!    page image; a full image is written to its block and chained to a newly
//!    reserved block.
//! 6. `finish`: write each list's last page, the directory and meta pages
//!    (`closing_pages`, shared with `ambuildempty`), then WAL-log every page at
//!    once with `log_newpage_range` (cheaper than logging each page change of the
//!    build).

use super::layout::{self, DataGeom, DirEntry, FineGeom, MetaData};
use super::options;
use super::page::{self, build_append, build_modify, build_overwrite, init_page, set_lower};
use crate::errors;
use crate::memctx::RowContext;
use crate::parallel::{self, Pool};
use arrw_core::buildmem::{self, Shape};
use arrw_core::calibrate::{self, ProbeCalibration};
use arrw_core::ivf::{self, IvfPqModel, IvfPqParams, Metric};
use arrw_core::sample::{self, Reservoir};
use arrw_core::text;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Build phases shown in `pg_stat_progress_create_index.phase`.
const PHASE_SAMPLE: i64 = 2;
const PHASE_TRAIN: i64 = 3;
const PHASE_ENCODE: i64 = 4;

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut std::ffi::c_char {
    let name: &'static std::ffi::CStr = match phase {
        PHASE_SAMPLE => c"sampling rows",
        PHASE_TRAIN => c"training model",
        PHASE_ENCODE => c"encoding rows",
        _ => return std::ptr::null_mut(),
    };
    name.as_ptr() as *mut std::ffi::c_char
}

/// Sets a parameter of the command's progress row (`pg_stat_progress_*`):
/// the build's phases and counts, and the validation scan of a concurrent
/// build (vacuum.rs).
pub(super) fn progress(param: u32, value: i64) {
    // SAFETY: plain call; a no-op when no progress reporting is active.
    unsafe { pg_sys::pgstat_progress_update_param(param as i32, value) }
}

fn check_dim(expected: usize, got: usize) {
    if expected != got {
        crate::errors::check_vector(text::check_expected_dim(expected as i32, got));
    }
}

/// Pass 1's state: the rows' dimension and the reservoir, both set by the
/// first row unless the column declares its dimension.
struct SampleState {
    dim: Option<usize>,
    /// Keys are `vector[]`: every element is a row of the sample.
    multi: bool,
    budget: usize,
    reservoir: Option<Reservoir>,
    /// Rows with a key seen so far: the phase's tuples_done, against the
    /// planner's row count (the reservoir counts vectors, a `vector[]` row's
    /// every element: `60384 of 20000`; hunt-114).
    rows: u64,
    /// The phase's tuples_total, raised to `rows` when they pass it.
    total: i64,
    /// Detoasted values of the current row (out-of-line vectors are copies).
    row: RowContext,
}

#[pg_guard]
unsafe extern "C-unwind" fn sample_callback(
    _index: pg_sys::Relation,
    _tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: `state` is the SampleState sample_table passed; values/isnull have
    // one element (one key column).
    let (st, datum, null) = unsafe { (&mut *(state as *mut SampleState), *values, *isnull) };
    if null {
        return;
    }
    let SampleState {
        dim,
        multi,
        budget,
        reservoir,
        rows,
        total,
        row,
    } = st;
    *rows += 1;
    row.scope(|| {
        // SAFETY: non-null key datum of the indexed column.
        unsafe {
            crate::vector::each_key_vector(datum, *multi, |x| {
                let d = *dim.get_or_insert(x.len());
                check_dim(d, x.len());
                let r = reservoir.get_or_insert_with(|| {
                    Reservoir::new(d, buildmem::reservoir_rows(*budget, d), sample::BUILD_SEED)
                });
                r.offer(x);
            })
        };
    });
    if *rows % 1024 == 0 || *multi {
        pg_sys::check_for_interrupts!();
        // Rows sampled so far (of the estimate set before the scan, raised
        // when they pass it).
        if *rows as i64 > *total {
            *total = *rows as i64;
            progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, *total);
        }
        progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, *rows as i64);
    }
}

/// One list's page being filled, and the block it will be written to.
struct ListPage {
    image: Vec<u8>,
    block: u32,
}

/// Rows read from the table for one encode batch: `dim` floats each (a
/// `vector[]` row contributes one per element) and the TID of each.
#[derive(Default)]
struct Batch {
    rows: Vec<f32>,
    tids: Vec<[u8; layout::TID_BYTES]>,
    /// Table rows the batch's entries came from (a `vector[]` row gives one
    /// entry per element).
    heap_rows: u64,
}

/// A batch back from the pool: its rows, their codes, and the calibration
/// that went with them.
struct Encoding {
    batch: Batch,
    codes: ivf::EncodedBatch,
    calib: Option<ProbeCalibration>,
}

struct EncodeState<'m> {
    index: pg_sys::Relation,
    /// Shared with the pool's work, which must own what it reads (see
    /// `crate::parallel::Pool::start`).
    model: std::sync::Arc<IvfPqModel>,
    pool: &'m Pool,
    row: RowContext,
    geom: DataGeom,
    /// Where refine codes go (None: the index keeps none).
    fine: Option<FineGeom>,
    dim: usize,
    /// Keys are `vector[]`: one entry per element, each under the row's TID.
    multi: bool,
    /// The batch the scan is filling.
    batch: Batch,
    /// The batch before it, being encoded on the pool meanwhile.
    pending: Option<parallel::Pending<Encoding>>,
    /// The backend reads and writes while the pool encodes: only when the
    /// pool has more than one thread. With `max_parallel_maintenance_workers
    /// = 0` the build stays on one core, each batch encoded while the backend
    /// waits, as a build without parallel workers is expected to.
    overlap: bool,
    batch_rows: usize,
    lists: Vec<ListPage>,
    heads: Vec<u32>,
    encoded: u64,
    /// Table rows whose entries are written, and the total the progress view
    /// shows them against: the rows the sampling pass read, raised when this
    /// pass reads more (a concurrent build's second pass sees the rows
    /// committed since the first: 1,806,336 "of" 1,507,199 before; hunt-154).
    rows_written: u64,
    rows_total: u64,
    /// The stand-in queries whose nearest rows set the index's default
    /// `probes` (arrw_core::calibrate; None for `vector[]` keys, and while a
    /// batch is on the pool, which has it).
    calib: Option<ProbeCalibration>,
}

fn new_data_image(geom: &DataGeom, list: u32) -> Vec<u8> {
    let mut img = vec![0u8; pg_sys::BLCKSZ as usize];
    init_page(&mut img, layout::DATA_SPECIAL);
    set_lower(&mut img, geom.contents_len());
    geom.set_next(&mut img, layout::INVALID_BLOCK);
    geom.set_fine(&mut img, layout::INVALID_BLOCK);
    geom.set_list(&mut img, list);
    layout::set_page_kind(&mut img, layout::KIND_DATA);
    img
}

/// A blank fine page of data block `owner`.
fn new_fine_image(fg: &FineGeom, owner: u32) -> Vec<u8> {
    let mut img = vec![0u8; pg_sys::BLCKSZ as usize];
    init_page(&mut img, layout::FINE_SPECIAL);
    set_lower(&mut img, fg.contents_len());
    fg.init(&mut img, owner);
    img
}

impl EncodeState<'_> {
    /// Reserves a new data page of `list` at the end of the index, followed
    /// directly by its fine pages (blank; entries are written as rows come).
    /// Returns its block and its image, still to be filled and written.
    fn new_page(&self, list: u32) -> (u32, Vec<u8>) {
        let mut img = new_data_image(&self.geom, list);
        let blk = build_append(self.index, &img);
        if let Some(fg) = &self.fine {
            for k in 0..fg.pages {
                let got = build_append(self.index, &new_fine_image(fg, blk));
                // The build is the index's only writer: blocks come in order.
                assert_eq!(
                    got,
                    blk + 1 + k as u32,
                    "ivfpq build: fine pages not contiguous"
                );
            }
            self.geom.set_fine(&mut img, blk + 1);
        }
        (blk, img)
    }

    /// Hands the filled batch to the pool and writes the one before it.
    ///
    /// The scan of the table and the writing of pages run on the backend's
    /// thread while the pool encodes the next batch: on 75k × 384 rows the
    /// two halves took about as long as each other (ARCHITECTURE.md, "The
    /// build"). The batch before must be back first, as it carries the
    /// calibration the next one adds to; batches are written in the order
    /// read, so the index is the same as one encoded batch by batch.
    fn flush(&mut self) {
        if self.batch.tids.is_empty() {
            return;
        }
        let mut done = self.pending.take().map(parallel::Pending::wait);
        if let Some(d) = done.as_mut() {
            self.calib = d.calib.take();
        }
        let batch = std::mem::take(&mut self.batch);
        let (model, calib) = (self.model.clone(), self.calib.take());
        self.pending = Some(self.pool.start(move |stop| {
            let codes = model.encode_batch_fine_until(&batch.rows, stop)?;
            let mut calib = calib;
            if let Some(c) = calib.as_mut() {
                c.offer_until(&batch.rows, &codes.lists, stop)?;
            }
            Ok(Encoding {
                batch,
                codes,
                calib,
            })
        }));
        if let Some(d) = done {
            // The written batch's buffers take the next rows: two batches'
            // worth at most (buildmem::Shape::encode_bytes).
            self.batch = self.write(d);
        }
        if !self.overlap {
            self.finish_pending();
        }
        pg_sys::check_for_interrupts!();
    }

    /// Flushes what is left and waits for the last batch.
    fn drain(&mut self) {
        self.flush();
        self.finish_pending();
    }

    /// Waits for the batch on the pool, if any, and writes it.
    fn finish_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            let mut d = p.wait();
            self.calib = d.calib.take();
            self.batch = self.write(d);
        }
    }

    /// Appends an encoded batch's rows to their lists; returns its buffers,
    /// emptied.
    fn write(&mut self, d: Encoding) -> Batch {
        let Encoding {
            mut batch, codes, ..
        } = d;
        let (lists, fines) = (&codes.lists, &codes.fine);
        let cs = self.geom.code_size;
        for (i, &l) in lists.iter().enumerate() {
            if self.geom.count(&self.lists[l as usize].image) == self.geom.capacity {
                // Reserve the successor block, link to it, write the full page.
                let (next, img) = self.new_page(l);
                let lp = &mut self.lists[l as usize];
                self.geom.set_next(&mut lp.image, next);
                build_overwrite(self.index, lp.block, &lp.image);
                lp.image = img;
                lp.block = next;
            }
            let lp = &mut self.lists[l as usize];
            let slot = self.geom.count(&lp.image);
            self.geom.push(
                &mut lp.image,
                &codes.codes[i * cs..(i + 1) * cs],
                batch.tids[i],
            );
            if let Some(fg) = &self.fine {
                let (k, fslot) = fg.locate(slot);
                let code = &fines[i * fg.code_size..(i + 1) * fg.code_size];
                // An unfaithful fine code is stored under no TID: scans then
                // re-rank that row from the table (see arrw_core::refine).
                let tid = if codes.faithful[i] {
                    batch.tids[i]
                } else {
                    [0; layout::TID_BYTES]
                };
                build_modify(self.index, lp.block + 1 + k as u32, |p| {
                    fg.set(p, fslot, tid, code)
                });
            }
        }
        self.encoded += lists.len() as u64;
        // Rows, as the sampling pass and the total count them (entries
        // counted a `vector[]` row once per element).
        self.rows_written += batch.heap_rows;
        if self.rows_written > self.rows_total {
            self.rows_total = self.rows_written;
            progress(
                pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL,
                self.rows_total as i64,
            );
        }
        progress(
            pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE,
            self.rows_written as i64,
        );
        batch.rows.clear();
        batch.tids.clear();
        batch.heap_rows = 0;
        batch
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn encode_callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: as in sample_callback; `tid` points to the heap TID of this row.
    let (st, datum, null, tid) =
        unsafe { (&mut *(state as *mut EncodeState), *values, *isnull, *tid) };
    if null {
        return;
    }
    let blk = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
    let tid = layout::tid_bytes(blk, tid.ip_posid);
    let (dim, multi) = (st.dim, st.multi);
    let (batch, tids) = (&mut st.batch.rows, &mut st.batch.tids);
    st.row.scope(|| {
        // SAFETY: non-null key datum of the indexed column.
        unsafe {
            crate::vector::each_key_vector(datum, multi, |x| {
                check_dim(dim, x.len());
                batch.extend_from_slice(x);
                tids.push(tid);
            })
        };
    });
    st.batch.heap_rows += 1;
    // A vector[] row's elements all join the batch (the row's vectors are
    // read in its memory context, which ends with the closure), so a batch
    // may exceed batch_rows by one row's elements
    // (arrw_core::maxsim::MAX_VECTORS at most).
    if st.batch.tids.len() >= st.batch_rows {
        st.flush();
    }
}

/// Bytes of `maintenance_work_mem`.
fn maintenance_bytes() -> usize {
    // SAFETY: reading a GUC variable of this backend.
    (unsafe { pg_sys::maintenance_work_mem } as usize) * 1024
}

/// One pass over the table with `callback` receiving each row's index datum.
///
/// # Safety
/// `state` must be what `callback` expects and outlive the scan.
unsafe fn scan_table(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
    callback: pg_sys::IndexBuildCallback,
    state: *mut std::ffi::c_void,
) -> f64 {
    // SAFETY: heap/index/index_info come from PostgreSQL for this build; the
    // caller guarantees the callback state.
    unsafe {
        // allow_sync = false: a synchronized scan starts where another scan
        // of the table is, and the seeded sample (arrw_core::sample) then saw
        // the rows rotated, so the same table trained another model (indexes
        // of a `pg_restore -j` differed from their source's; hunt-101).
        pg_sys::table_index_build_scan(
            heap,
            index,
            index_info,
            false,
            true,
            callback,
            state,
            std::ptr::null_mut(),
        )
    }
}

/// Page images holding the serialized model, one per MODEL_PER_PAGE bytes.
fn model_page_images(bytes: &[u8], blank: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .chunks(layout::MODEL_PER_PAGE)
        .map(|chunk| {
            let mut img = blank.to_vec();
            let off = page::contents_offset();
            img[off..off + chunk.len()].copy_from_slice(chunk);
            set_lower(&mut img, chunk.len());
            layout::set_page_kind(&mut img, layout::KIND_MODEL);
            img
        })
        .collect()
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    // SAFETY: `index` is the open index relation ambuild was given.
    super::pending::forget_index(unsafe { (*index).rd_id });
    let opts = options::of(index);
    let metric = super::model::metric_of(index);
    let multi = super::model::is_multi(index);
    let declared = super::model::declared_dim(index);
    let budget = maintenance_bytes();

    // SAFETY: `heap` is the open heap relation ambuild was given; counting its
    // blocks reads no page.
    let heap_blocks =
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM) };
    check_declared_shape_fits(
        &opts,
        declared,
        heap_blocks as usize * rows_per_page_at_most(declared, multi, key_element_bytes(index)),
        multi,
        budget,
    );
    options::check_refine_fits(&opts, declared, multi);
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_SAMPLE);
    // Pass 1's tuples_total is the planner's row estimate, its tuples_done the
    // rows seen. The estimate is the table's last known density (reltuples /
    // relpages) times its blocks now, as the planner scales it; for a table
    // never analyzed or vacuumed, the most rows its blocks can hold (as the
    // shape check above counts them). Plain
    // reltuples was 0 there, or stale (100 after an ANALYZE of a small
    // table), and done climbed past it (hunt-117); a count that passes the
    // estimate still raises it (sample_callback).
    let rel = {
        // SAFETY: `heap` is the open heap relation ambuild was given.
        unsafe { &*(*heap).rd_rel }
    };
    let (reltuples, relpages) = (rel.reltuples, rel.relpages);
    let estimate = if reltuples >= 0.0 && relpages > 0 {
        (f64::from(reltuples) / f64::from(relpages) * f64::from(heap_blocks)).round() as i64
    } else {
        (heap_blocks as usize * rows_per_page_at_most(declared, multi, key_element_bytes(index)))
            as i64
    };
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, estimate);
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, 0);
    let sampled = {
        // SAFETY: forwarded from PostgreSQL's call.
        unsafe { sample_table(heap, index, index_info, declared, multi, budget, estimate) }
    };
    let mut plan = plan_build(&opts, &sampled, multi, budget);
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_TRAIN);
    // Training's tuples are k-means work: one per training row assigned in a
    // Lloyd iteration, the coarse k-means' then every sub-quantizer's, as the
    // compute threads count them (arrw_core::stop); 0 of 0 until train() plans.
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, 0);
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, 0);
    pg_sys::check_for_interrupts!();
    let pool = Pool::new(parallel::build_threads());
    if !multi {
        plan.stand_ins = sampled
            .reservoir
            .as_ref()
            .map_or(Vec::new(), |r| stand_in_queries(r, budget));
    }
    let model = std::sync::Arc::new(train(&opts, metric, multi, sampled.reservoir, &plan, &pool));
    pg_sys::check_for_interrupts!();
    // The sample and training's copies are freed, partly in the compute
    // threads' own malloc arenas, which keep freed pages: the encoding pass
    // then allocates beside them (16,000-d rows at 32MB peaked 46 MB with two
    // extra threads, 32 MB with none). Hand them back to the OS first.
    parallel::release_freed_memory();

    let front = append_front_pages(index, &model, plan.untrained);
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_ENCODE);
    progress(
        pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL,
        sampled.table_rows as i64,
    );
    // Training's count stayed until the first batch was written
    // (`2424832 of 100000`; hunt-114).
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, 0);
    // SAFETY: forwarded from PostgreSQL's call.
    let encoded = unsafe {
        encode_table(
            heap,
            index,
            index_info,
            &model,
            multi,
            &pool,
            &mut plan,
            sampled.table_rows as u64,
        )
    };
    let index_tuples = encoded.rows as f64;
    finish(index, &front, &model, plan.untrained, encoded);

    // SAFETY: palloc0 of the result struct PostgreSQL expects back.
    unsafe {
        let r = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBuildResult>())
            as *mut pg_sys::IndexBuildResult;
        (*r).heap_tuples = sampled.heap_tuples;
        (*r).index_tuples = index_tuples;
        r
    }
}

/// Most heap tuples an 8 kB page holds (PostgreSQL's MaxHeapTuplesPerPage).
const MAX_ROWS_PER_PAGE: usize = arrw_core::layout::MAX_HEAP_ROWS_PER_PAGE as usize;

/// Bytes an element of the index's key type takes: 2 for `halfvec` (also
/// pgvector's, or through a domain), 4 otherwise (`vector`).
fn key_element_bytes(index: pg_sys::Relation) -> usize {
    // SAFETY: an index relation has a tuple descriptor with at least one
    // attribute; getBaseType and format_type_be are catalog lookups of a type
    // an index exists on, and the name they return is a palloc'd C string.
    let name = unsafe {
        let att = &*(*(*index).rd_att).attrs.as_ptr();
        let base = pg_sys::getBaseType(att.atttypid);
        std::ffi::CStr::from_ptr(pg_sys::format_type_be(base))
            .to_string_lossy()
            .into_owned()
    };
    // Quotes come with `quote_all_identifiers = on` ("halfvec", or
    // "public"."halfvec"): a halfvec key was then counted at 4 bytes an
    // element, and the early memory check refused builds that fit (hunt-104).
    let name = name.replace('"', "");
    if name == "halfvec" || name.ends_with(".halfvec") {
        2
    } else {
        4
    }
}

/// Most rows a heap page can hold when each carries a non-null vector of
/// `declared` dimensions of `element` bytes each: a row is at least its tuple
/// header (24 bytes), its line pointer (4) and the vector, which stays in the
/// row, uncompressed, while the tuple is under PostgreSQL's TOAST threshold
/// (~2 kB). Above it the value may go out of line or be compressed, and a
/// pointer of ~16 bytes is all that is sure to stay. Counted as
/// `MAX_ROWS_PER_PAGE` rows a page, a 1,000-row 128-d table was taken for
/// 20,952 rows, and `lists = 32768` asked for 265 MB it would never use
/// (hunt-67); counted at a `halfvec`'s 2 bytes an element for every type, a
/// `vector(600)` (out of line) was taken for 5 rows a page instead of ~157,
/// and a build that could not fit read the whole table before it said so
/// (hunt-68).
fn rows_per_page_at_most(declared: Option<usize>, multi: bool, element: usize) -> usize {
    const PAGE_SPACE: usize = 8192 - 24;
    const TOAST_THRESHOLD: usize = 2032;
    match (declared, multi) {
        (Some(dim), false) => {
            let inline = 8 + element * dim;
            let value = if 24 + inline <= TOAST_THRESHOLD {
                inline
            } else {
                16
            };
            (PAGE_SPACE / (24 + 4 + value)).clamp(1, MAX_ROWS_PER_PAGE)
        }
        // An array may be empty, or hold many vectors behind one pointer:
        // nothing but the tuple bounds its rows, and nothing bounds its
        // vectors a page (so a small table's build may be refused early for
        // a model of more lists than it has vectors).
        _ => MAX_ROWS_PER_PAGE,
    }
}

/// With the dimension declared and `lists` given, a budget too small for the
/// model fails before the table is read. The plan is the one the build makes
/// once it has read the table (`plan_build`), for a table of `max_rows` rows
/// (an upper bound from its size): at most one list per row, and a sample of
/// what the reservoir holds at each budget. `lists = 32768` on a 100-row table
/// once asked for 397 MB it would never use (the build keeps 100 lists), so a
/// dump of such an index did not restore at the default setting; and a
/// sample taken for one row per list asked 78 MB where the build, sampling
/// what 2 MB holds, needed 3.
fn check_declared_shape_fits(
    opts: &options::IvfpqOptions,
    declared: Option<usize>,
    max_rows: usize,
    multi: bool,
    budget: usize,
) {
    if let (Some(dim), true) = (declared, opts.lists > 0) {
        let rows = max_rows.max(1);
        let (lists, m, nbits) = options::choose_params(opts, rows, dim);
        let lists = lists.min(rows);
        let shape = shape_of(dim, lists, m, nbits);
        let wanted = ivf::training_sample_size(lists, nbits).min(rows);
        let try_at = |b: usize| {
            // A `vector[]` row may hold many vectors: only the reservoir
            // bounds its sample.
            let room = buildmem::reservoir_rows(b, dim);
            let have = if multi { room } else { room.min(rows) };
            buildmem::plan(b, &shape, have, wanted, stand_in_bytes(b, dim, false))
                .map(|_| ())
                .map_err(|e| e.needed)
        };
        if let Err(needed) = try_at(budget) {
            too_little_memory(&shape, enough_budget(needed, try_at), budget);
        }
    }
}

/// What pass 1 found.
struct Sampled {
    /// What `table_index_build_scan` counted.
    heap_tuples: f64,
    /// Non-null keys: rows, or a `vector[]` row's elements.
    rows: usize,
    /// Table rows with a non-null key (what the progress view counts).
    table_rows: usize,
    /// The rows' dimension (the declared one, else the first row's; 0 if neither).
    dim: usize,
    /// None when no row was non-null.
    reservoir: Option<Reservoir>,
}

/// Pass 1: counts the rows and keeps a uniform sample of them, in at most half
/// of `maintenance_work_mem`.
///
/// # Safety
/// The arguments are ambuild's.
unsafe fn sample_table(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
    declared: Option<usize>,
    multi: bool,
    budget: usize,
    total: i64,
) -> Sampled {
    let mut st = SampleState {
        dim: declared,
        multi,
        budget,
        reservoir: None,
        rows: 0,
        total,
        row: RowContext::new(c"ivfpq build row"),
    };
    // SAFETY: `st` is the SampleState sample_callback expects; it outlives the scan.
    let heap_tuples = unsafe {
        scan_table(
            heap,
            index,
            index_info,
            Some(sample_callback),
            &mut st as *mut SampleState as *mut std::ffi::c_void,
        )
    };
    st.row.delete();
    Sampled {
        heap_tuples,
        rows: st.reservoir.as_ref().map_or(0, |r| r.seen() as usize),
        table_rows: st.rows as usize,
        dim: st.dim.unwrap_or(0),
        reservoir: st.reservoir,
    }
}

/// The model's shape and how training and encoding fit `maintenance_work_mem`.
struct BuildPlan {
    /// No rows: the model is a placeholder and pass 2 is skipped.
    untrained: bool,
    dim: usize,
    lists: usize,
    m: usize,
    nbits: u32,
    mem: buildmem::Plan,
    /// Rows of the sample standing in for queries while the table is encoded
    /// (`stand_in_queries`; empty for `vector[]` keys and empty tables).
    stand_ins: Vec<f32>,
}

/// Chooses the model's shape for the rows sampled (NOTICEs when the table is
/// empty or smaller than `lists`) and fits training and encoding to the budget:
/// fewer training rows (NOTICE), smaller encode batches, or an ERROR naming the
/// megabytes needed.
fn plan_build(
    opts: &options::IvfpqOptions,
    sampled: &Sampled,
    multi: bool,
    budget: usize,
) -> BuildPlan {
    let (rows, dim) = (sampled.rows, sampled.dim);
    options::check_options_fit(opts, dim, multi);
    let (mut lists, m, nbits) = options::choose_params(opts, rows, dim);
    // The default m divides the dimensions (sub-quantizers are of one width):
    // a count with no divisor near the usual dim / 2 (4-bit) or dim / 4 (8-bit)
    // sub-quantizers, a prime such as 383, gets m = 1, whose code says almost
    // nothing (or m = dim, a wide code). Say so, rather than build it quietly.
    if dim > 0 && opts.m <= 0 && m.saturating_mul(8) < ivf::m_target(dim, nbits).0 {
        errors::notice_hint(
            format!(
                "ivfpq: {dim} dimensions have no divisor near the usual number of sub-quantizers, \
                 so the index gets m = {m}, a code too coarse to find neighbours well"
            ),
            ivf::finer_m_hint(dim, m, nbits),
            "CREATE INDEX",
        );
    }
    if rows > 0 && lists > rows {
        errors::notice_hint(
            format!("ivfpq: the table has {rows} rows, so the index gets {rows} lists instead of {lists}"),
            "Rebuild the index (REINDEX) once the table holds more data.",
            "CREATE INDEX",
        );
        lists = rows;
    }
    let Some(reservoir) = &sampled.reservoir else {
        // Said to whoever ran the statement that built it. PostgreSQL also
        // rebuilds indexes itself: the commit of a transaction that used an
        // `ON COMMIT DELETE ROWS` temporary table empties it and rebuilds its
        // indexes, and the advice, at every such commit, could never help.
        // No portal runs at a statement's own commit, but one does at the
        // commits VACUUM makes inside its statement (the NOTICE came once per
        // relation vacuumed, of any temporary table; hunt-129).
        // SAFETY: reading a backend global.
        if !unsafe { pg_sys::ActivePortal }.is_null() && !super::pending::committing() {
            errors::notice_hint(
                "ivfpq index built on an empty table: queries re-rank every row until it is rebuilt",
                "Run REINDEX once the table holds data.",
                "CREATE INDEX",
            );
        }
        let mem = buildmem::Plan {
            train_rows: 0,
            encode_rows: buildmem::MIN_ENCODE_ROWS,
        };
        return BuildPlan {
            untrained: true,
            dim,
            lists,
            m,
            nbits,
            mem,
            stand_ins: Vec::new(),
        };
    };
    let shape = shape_of(dim, lists, m, nbits);
    let wanted = ivf::training_sample_size(lists, nbits).min(rows);
    let have = reservoir.len();
    let held = stand_in_bytes(budget, dim, multi);
    let mem = match buildmem::plan(budget, &shape, have, wanted, held) {
        Ok(p) => {
            if p.train_rows < wanted.min(have) {
                errors::notice_hint(
                    format!(
                        "ivfpq: training on {} rows instead of {} to stay within maintenance_work_mem ({} MB)",
                        p.train_rows,
                        wanted.min(have),
                        budget >> 20
                    ),
                    "Raise maintenance_work_mem for a model trained on more rows.",
                    "CREATE INDEX",
                );
            }
            p
        }
        Err(e) => {
            // A larger budget samples more rows (when the reservoir was full:
            // else it holds them all), which training then needs.
            let all = if have < buildmem::reservoir_rows(budget, dim) {
                have
            } else {
                usize::MAX
            };
            let needed = enough_budget(e.needed, |b| {
                let have = all.min(buildmem::reservoir_rows(b, dim));
                buildmem::plan(b, &shape, have, wanted, stand_in_bytes(b, dim, multi))
                    .map(|_| ())
                    .map_err(|e| e.needed)
            });
            too_little_memory(&shape, needed, budget)
        }
    };
    BuildPlan {
        untrained: false,
        dim,
        lists,
        m,
        nbits,
        mem,
        stand_ins: Vec::new(),
    }
}

/// Trains the model on rows drawn from the reservoir, on copies: the pool's
/// threads only do arithmetic on them. Without rows, the placeholder model of an
/// empty index.
fn train(
    opts: &options::IvfpqOptions,
    metric: Metric,
    multi: bool,
    reservoir: Option<Reservoir>,
    plan: &BuildPlan,
    pool: &Pool,
) -> IvfPqModel {
    let Some(reservoir) = reservoir else {
        return placeholder_model(opts, plan.dim, metric);
    };
    // The reservoir is freed here, before training makes its copies, and its
    // pages go back to the OS (parallel::release_freed_memory): kept by the
    // allocator, they counted beside training's copies (16,000-d rows at
    // 48MB peaked at +81 MB).
    let train_rows = reservoir.into_training(plan.mem.train_rows);
    parallel::release_freed_memory();
    let params = IvfPqParams {
        refine_bits: options::refine_bits(opts, plan.dim, multi),
        ..IvfPqParams::new(plan.lists, plan.m, plan.nbits)
    };
    pool.run_reporting(
        |done, planned| {
            progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, planned as i64);
            progress(
                pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE,
                done.min(planned) as i64,
            );
        },
        |stop| {
            let params = IvfPqParams {
                stop: stop.clone(),
                ..params
            };
            IvfPqModel::train_until(&train_rows, plan.dim, metric, &params)
        },
    )
}

/// The model of an index built from no rows (by `ambuild` on an empty table and
/// by `ambuildempty`): one list, the options' code shape where the dimension
/// allows it. Scans of such an index re-rank every row.
fn placeholder_model(opts: &options::IvfpqOptions, dim: usize, metric: Metric) -> IvfPqModel {
    let (_, m, nbits) = options::choose_params(opts, 0, dim);
    let d = dim.max(1);
    let m = if d.is_multiple_of(m) { m } else { 1 };
    IvfPqModel::train(&[], d, metric, &IvfPqParams::new(1, m, nbits))
}

/// Whether data pages hold the model's codes in fast-scan blocks (4-bit codes;
/// see layout.rs).
fn is_blocked(model: &IvfPqModel) -> bool {
    model.is_fast() && model.code_size() > 0
}

/// The pages before the data pages: block 0 (meta), the model pages, then the
/// directory pages. Block numbers follow from the model alone.
struct Front {
    /// The blob on the model pages: the PQ model, then the refine quantizer.
    model_bytes: usize,
    refine_bytes: usize,
    model_pages: u32,
    dir_pages: usize,
}

impl Front {
    const MODEL_START: u32 = layout::META_BLOCK + 1;

    fn dir_start(&self) -> u32 {
        Self::MODEL_START + self.model_pages
    }
}

fn blank_small_page() -> Vec<u8> {
    let mut blank = vec![0u8; pg_sys::BLCKSZ as usize];
    init_page(&mut blank, layout::SMALL_SPECIAL);
    blank
}

/// The front pages' images: meta and directory pages blank (filled by
/// [`closing_pages`] once the lists are written), model pages complete.
fn front_pages(model: &IvfPqModel, untrained: bool) -> (Front, Vec<Vec<u8>>) {
    let blank = blank_small_page();
    let mut bytes = model.to_bytes();
    let refine = model
        .refine
        .as_ref()
        .map(|r| r.to_bytes())
        .unwrap_or_default();
    bytes.extend_from_slice(&refine);
    // Checked by every read of the model (model::load): a damaged model page
    // is an ERROR, whatever its bytes parse as, and so is a meta page whose
    // `untrained` flag disagrees with the model's kind.
    layout::seal_model(&mut bytes, untrained);
    let mut pages = vec![blank.clone()];
    pages.extend(model_page_images(&bytes, &blank));
    let front = Front {
        model_bytes: bytes.len(),
        refine_bytes: refine.len(),
        model_pages: pages.len() as u32 - 1,
        dir_pages: model.lists.div_ceil(layout::DIR_PER_PAGE),
    };
    pages.extend(std::iter::repeat_n(blank, front.dir_pages));
    (front, pages)
}

/// The meta page and directory pages of an index whose lists start at `dir`'s
/// head pages, and whose `built_rows` rows were encoded by the build
/// (`untrained`: the model is a placeholder, see [`placeholder_model`]).
fn closing_pages(
    front: &Front,
    model: &IvfPqModel,
    untrained: bool,
    dir: &[DirEntry],
    built_rows: u64,
    (probes, deep_probes): (u32, u32),
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let blank = blank_small_page();
    let mut dir_imgs = vec![blank.clone(); front.dir_pages];
    for (l, &e) in dir.iter().enumerate() {
        layout::write_dir(
            &mut dir_imgs[l / layout::DIR_PER_PAGE],
            l % layout::DIR_PER_PAGE,
            e,
        );
    }
    for (i, img) in dir_imgs.iter_mut().enumerate() {
        let used = ((dir.len() - i * layout::DIR_PER_PAGE).min(layout::DIR_PER_PAGE))
            * layout::DIR_ENTRY_BYTES;
        set_lower(img, used);
        layout::set_page_kind(img, layout::KIND_DIR);
    }
    let meta = MetaData {
        magic: layout::MAGIC,
        version: layout::FORMAT_VERSION,
        dim: model.dim as u32,
        lists: model.lists as u32,
        code_size: model.code_size() as u32,
        metric: model.metric.to_u8() as u32,
        untrained: untrained as u32,
        model_start: Front::MODEL_START,
        model_pages: front.model_pages,
        model_bytes: front.model_bytes as u32,
        dir_start: front.dir_start(),
        dir_pages: front.dir_pages as u32,
        built_rows,
        generation: generation(),
        refine_bytes: front.refine_bytes as u32,
        probes,
        blocked: is_blocked(model) as u32,
        refine_bits: model.refine.as_ref().map_or(0, |r| r.bits),
        deep_probes,
        untrained_dim: 0,
    };
    let mut img = blank;
    layout::write_meta(&mut img, &meta);
    set_lower(&mut img, layout::META_BYTES);
    layout::set_page_kind(&mut img, layout::KIND_META);
    (img, dir_imgs)
}

/// Appends the front pages to the index (block 0 first).
fn append_front_pages(index: pg_sys::Relation, model: &IvfPqModel, untrained: bool) -> Front {
    let (front, pages) = front_pages(model, untrained);
    for (blk, img) in pages.iter().enumerate() {
        let got = build_append(index, img);
        assert_eq!(got, blk as u32, "ivfpq build: the index was not empty");
    }
    front
}

/// What pass 2 wrote.
struct Encoded {
    /// Each list's last page (still to be written) and its block.
    lists: Vec<ListPage>,
    /// Each list's first block.
    heads: Vec<u32>,
    rows: u64,
    /// The measured default `probes` (0: none, the fixed default applies).
    probes: u32,
    /// The same for scans past their first rows (0: none).
    deep_probes: u32,
}

/// Pass 2: encodes every row into its list. Each list starts with one page
/// (possibly empty), so a list's head never changes after the build.
/// `rows_total`: the rows pass 1 read, the progress view's total.
///
/// # Safety
/// The relations and `index_info` are ambuild's.
#[allow(clippy::too_many_arguments)]
unsafe fn encode_table(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
    model: &std::sync::Arc<IvfPqModel>,
    multi: bool,
    pool: &Pool,
    plan: &mut BuildPlan,
    rows_total: u64,
) -> Encoded {
    let geom = DataGeom::new(model.code_size(), is_blocked(model));
    let nlists = model.lists;
    let mut enc = EncodeState {
        index,
        model: model.clone(),
        pool,
        row: RowContext::new(c"ivfpq build row"),
        geom,
        fine: FineGeom::new(model.fine_size(), geom.capacity),
        dim: model.dim,
        multi,
        batch: Batch::default(),
        pending: None,
        overlap: pool.threads() > 1,
        batch_rows: plan.mem.encode_rows,
        lists: Vec::with_capacity(nlists),
        heads: Vec::with_capacity(nlists),
        encoded: 0,
        rows_written: 0,
        rows_total,
        // The stand-ins move into the calibration (a copy of them here was
        // memory the budget did not count).
        calib: (!plan.stand_ins.is_empty()).then(|| {
            let k = calibrate::CALIBRATION_DEEP_K;
            ProbeCalibration::new(
                model.metric,
                model.dim,
                std::mem::take(&mut plan.stand_ins),
                k,
            )
        }),
    };
    // One page (and its fine pages) a list, each an extension of the file:
    // 32,768 lists took 0.3–1.8 s here, past a cancel or statement_timeout
    // (hunt-114), so each list checks for interrupts.
    for l in 0..nlists as u32 {
        pg_sys::check_for_interrupts!();
        let (blk, image) = enc.new_page(l);
        enc.heads.push(blk);
        enc.lists.push(ListPage { image, block: blk });
    }
    if !plan.untrained {
        // SAFETY: `enc` is the EncodeState encode_callback expects; it outlives the scan.
        unsafe {
            scan_table(
                heap,
                index,
                index_info,
                Some(encode_callback),
                &mut enc as *mut EncodeState as *mut std::ffi::c_void,
            );
        }
        enc.drain();
    }
    enc.row.delete();
    // No stand-ins (an empty table, `vector[]` keys): no measurement.
    let (probes, deep_probes) = enc
        .calib
        .as_ref()
        .and_then(|c| {
            let (first, deep) = c.defaults(model)?;
            pgrx::debug1!(
                "ivfpq: {first} of {} lists hold {}% of the {} nearest rows of {} stand-in queries, {deep} {}% of the {}",
                model.lists,
                calibrate::TARGET_COVERAGE * 100.0,
                calibrate::CALIBRATION_K,
                c.queries(),
                calibrate::DEEP_TARGET_COVERAGE * 100.0,
                calibrate::CALIBRATION_DEEP_K,
            );
            Some((first as u32, deep as u32))
        })
        .unwrap_or((0, 0));
    Encoded {
        lists: enc.lists,
        heads: enc.heads,
        rows: enc.encoded,
        probes,
        deep_probes,
    }
}

/// Bytes the stand-in queries of a build of `dim`-dimensional rows hold
/// within `budget`, at their most: the rows and their panels while the table
/// is encoded (`ProbeCalibration::held_bytes`; none for MaxSim builds, which
/// calibrate nothing).
fn stand_in_bytes(budget: usize, dim: usize, multi: bool) -> usize {
    if multi {
        return 0;
    }
    let rows = buildmem::stand_in_rows(budget, dim, calibrate::CALIBRATION_QUERIES);
    ProbeCalibration::held_bytes(rows, dim)
}

/// Up to `calibrate::CALIBRATION_QUERIES` rows of the sample (fewer of very
/// wide rows: `buildmem::stand_in_rows`), evenly spread over it (a reservoir
/// of a table smaller than its capacity holds the rows in table order, where
/// neighbours are often alike).
fn stand_in_queries(r: &Reservoir, budget: usize) -> Vec<f32> {
    let (n, dim) = (r.len(), r.dim());
    let k = buildmem::stand_in_rows(budget, dim, calibrate::CALIBRATION_QUERIES).min(n);
    let mut out = Vec::with_capacity(k * dim);
    for i in 0..k {
        let row = i * n / k;
        out.extend_from_slice(&r.rows()[row * dim..(row + 1) * dim]);
    }
    out
}

/// Writes each list's last page, the directory and the meta page, then WAL-logs
/// the whole index now that it is complete.
fn finish(
    index: pg_sys::Relation,
    front: &Front,
    model: &IvfPqModel,
    untrained: bool,
    enc: Encoded,
) {
    let mut dir = Vec::with_capacity(enc.lists.len());
    for (lp, &head) in enc.lists.iter().zip(&enc.heads) {
        // A write a list, as in encode_table: cancellable between them.
        pg_sys::check_for_interrupts!();
        build_overwrite(index, lp.block, &lp.image);
        dir.push(DirEntry {
            head,
            insert: lp.block,
        });
    }
    let (meta, dir_imgs) = closing_pages(
        front,
        model,
        untrained,
        &dir,
        enc.rows,
        (enc.probes, enc.deep_probes),
    );
    for (i, img) in dir_imgs.iter().enumerate() {
        build_overwrite(index, front.dir_start() + i as u32, img);
    }
    build_overwrite(index, layout::META_BLOCK, &meta);
    page::log_all_pages(index);
}

fn shape_of(dim: usize, lists: usize, m: usize, nbits: u32) -> Shape {
    Shape {
        dim,
        lists,
        m,
        nbits,
        page_bytes: pg_sys::BLCKSZ as usize,
    }
}

/// The smallest budget from `first` on at which `try_at` (a build's memory
/// plan) succeeds. What a build holds grows with its budget (the rows
/// sampled, the calibration's stand-in rows, the encode batch), so the bytes
/// a plan failing at a small budget names can fall short once granted: a
/// build at `maintenance_work_mem = 1MB` asked for 70 MB, and at 70 MB for 76.
fn enough_budget(first: usize, try_at: impl Fn(usize) -> Result<(), usize>) -> usize {
    let mut b = first;
    // Each step asks for more; the stand-ins are capped, so a few suffice.
    for _ in 0..16 {
        match try_at(b) {
            Ok(()) => return b,
            Err(needed) => b = needed.max(b + 1),
        }
    }
    b
}

#[cold]
fn too_little_memory(shape: &Shape, needed: usize, budget: usize) -> ! {
    let mb = |b: usize| b.div_ceil(1 << 20);
    pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!(
            "ivfpq: building this index needs at least {} MB of maintenance_work_mem, which is {} MB",
            mb(needed),
            mb(budget)
        ),
        "ambuild",
    )
    .set_detail(format!(
        "The model of {} lists of {} dimensions takes {} MB; training needs at least one row per list beside it.",
        shape.lists,
        shape.dim,
        mb(shape.model_bytes())
    ))
    .set_hint(format!(
        "SET maintenance_work_mem = '{}MB', or build with fewer lists.",
        mb(needed)
    ))
    .report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

/// A number that differs between builds (keys the model cache).
fn generation() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 48)
}

/// `ambuildempty`: the init fork of an unlogged index is an empty, untrained index
/// (meta, model, one directory page, one empty list), WAL-logged so that it
/// survives a crash (the init fork is what the main fork is reset to).
#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    let opts = options::of(index);
    let metric = super::model::metric_of(index);
    let model = placeholder_model(
        &opts,
        super::model::declared_dim(index).unwrap_or(0),
        metric,
    );
    let (front, mut pages) = front_pages(&model, true);
    let head = pages.len() as u32;
    let geom = DataGeom::new(model.code_size(), is_blocked(&model));
    pages.push(new_data_image(&geom, 0));
    let (meta, dir_imgs) = closing_pages(
        &front,
        &model,
        true,
        &[DirEntry { head, insert: head }],
        0,
        (0, 0),
    );
    pages[layout::META_BLOCK as usize] = meta;
    let dir_start = front.dir_start() as usize;
    pages.splice(dir_start..dir_start + dir_imgs.len(), dir_imgs);
    for (blk, img) in pages.iter_mut().enumerate() {
        // SAFETY: the init fork of a new index is ours alone (the relation is
        // being created under an exclusive lock). We write each page through
        // smgr and WAL-log it, as PostgreSQL's own AMs do for init forks.
        unsafe {
            let smgr = pg_sys::RelationGetSmgr(index);
            pg_sys::PageSetChecksumInplace(img.as_mut_ptr() as pg_sys::Page, blk as u32);
            pg_sys::smgrextend(
                smgr,
                pg_sys::ForkNumber::INIT_FORKNUM,
                blk as u32,
                img.as_mut_ptr() as *mut std::ffi::c_char,
                true,
            );
            pg_sys::log_newpage(
                &mut (*smgr).smgr_rnode.node,
                pg_sys::ForkNumber::INIT_FORKNUM,
                blk as u32,
                img.as_mut_ptr() as pg_sys::Page,
                true,
            );
        }
    }
    // SAFETY: flush the init fork to disk before the transaction commits.
    unsafe {
        pg_sys::smgrimmedsync(
            pg_sys::RelationGetSmgr(index),
            pg_sys::ForkNumber::INIT_FORKNUM,
        )
    };
}
