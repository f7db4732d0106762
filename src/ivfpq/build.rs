//! Index build: `CREATE INDEX ... USING ivfpq` and `REINDEX`.
//!
//! 1. Scan the table once, counting rows and keeping a uniform reservoir sample
//!    (at most half of `maintenance_work_mem`).
//! 2. Fit the rest to `maintenance_work_mem` (`arrw_core::buildmem`: fewer
//!    training rows, smaller encode batches, or an ERROR saying how much is
//!    needed), then train the model on the sample (k-means lists, residual PQ
//!    codebooks) with `arrw_core` on a pool of `crate::parallel::build_threads()`
//!    threads that only compute on the copied sample; the backend's thread keeps
//!    answering cancel requests meanwhile.
//! 3. Scan the table again, encoding rows in batches (parallel, again on copies)
//!    and appending `(code, tid)` to each list's page image; a full image is
//!    written to its block and chained to a newly reserved block.
//! 4. Write meta, model and directory pages, then WAL-log every page at once with
//!    `log_newpage_range` (cheaper than logging each page change of the build).

use super::layout::{self, DataGeom, DirEntry, MetaData};
use super::options;
use super::page::{self, build_append, build_overwrite, init_page, set_lower};
use crate::memctx::RowContext;
use crate::parallel::{self, Pool};
use arrw_core::buildmem::{self, Shape};
use arrw_core::ivf::{self, IvfPqModel, IvfPqParams, Metric};
use arrw_core::text;
use pgrx::pg_sys;
use pgrx::prelude::*;
use rand::{Rng, SeedableRng};

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

fn progress(param: u32, value: i64) {
    // SAFETY: plain call; a no-op when no progress reporting is active.
    unsafe { pg_sys::pgstat_progress_update_param(param as i32, value) }
}

/// The first column's declared dimensions (`vector(n)`), or None.
fn declared_dim(index: pg_sys::Relation) -> Option<usize> {
    // SAFETY: an index relation has a tuple descriptor with at least one attribute.
    let typmod = unsafe { (*(*(*index).rd_att).attrs.as_ptr()).atttypmod };
    (typmod > 0).then_some(typmod as usize)
}

/// Reads the vector out of an index datum (detoasting a copy if needed).
///
/// # Safety
/// `datum` must be a non-null `vector` datum.
unsafe fn datum_vector<'a>(datum: pg_sys::Datum) -> &'a [f32] {
    // SAFETY: forwarded contract.
    unsafe { crate::vector::VectorArg::from_datum(datum).x }
}

fn check_dim(expected: usize, got: usize) {
    if expected != got {
        crate::errors::check_vector(text::check_expected_dim(expected as i32, got));
    }
}

struct SampleState {
    dim: Option<usize>,
    rows: u64,
    sample: Vec<f32>,
    /// Rows the reservoir holds, once the dimension is known.
    cap: usize,
    budget: usize,
    rng: rand::rngs::StdRng,
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
    // SAFETY: `state` is the SampleState ambuild passed; values/isnull have one
    // element (one key column).
    let (st, datum, null) = unsafe { (&mut *(state as *mut SampleState), *values, *isnull) };
    if null {
        return;
    }
    let SampleState {
        dim,
        rows,
        sample,
        cap,
        budget,
        rng,
        row,
    } = st;
    row.scope(|| {
        // SAFETY: non-null vector datum of the indexed column.
        let x = unsafe { datum_vector(datum) };
        let d = *dim.get_or_insert(x.len());
        check_dim(d, x.len());
        if *cap == 0 {
            *cap = buildmem::reservoir_rows(*budget, d);
        }
        *rows += 1;
        // Reservoir sampling (algorithm R): every row has the same chance to be kept.
        let n = sample.len() / d;
        if n < *cap {
            sample.extend_from_slice(x);
        } else {
            let j = rng.gen_range(0..*rows) as usize;
            if j < *cap {
                sample[j * d..(j + 1) * d].copy_from_slice(x);
            }
        }
    });
    if st.rows % 1024 == 0 {
        pg_sys::check_for_interrupts!();
    }
}

/// One list's page being filled, and the block it will be written to.
struct ListPage {
    image: Vec<u8>,
    block: u32,
}

struct EncodeState<'m> {
    index: pg_sys::Relation,
    model: &'m IvfPqModel,
    pool: &'m Pool,
    row: RowContext,
    geom: DataGeom,
    dim: usize,
    batch: Vec<f32>,
    tids: Vec<[u8; layout::TID_BYTES]>,
    batch_rows: usize,
    lists: Vec<ListPage>,
    heads: Vec<u32>,
    encoded: u64,
}

fn new_data_image(geom: &DataGeom, list: u32) -> Vec<u8> {
    let mut img = vec![0u8; pg_sys::BLCKSZ as usize];
    init_page(&mut img, layout::DATA_SPECIAL);
    set_lower(&mut img, geom.contents_len());
    geom.set_next(&mut img, layout::INVALID_BLOCK);
    geom.set_list(&mut img, list);
    layout::set_page_kind(&mut img, layout::KIND_DATA);
    img
}

impl EncodeState<'_> {
    /// Encodes the buffered rows (in parallel) and appends them to their lists.
    fn flush(&mut self) {
        if self.tids.is_empty() {
            return;
        }
        let (model, batch) = (self.model, &self.batch);
        let (lists, codes) = self.pool.run(|stop| model.encode_batch_until(batch, stop));
        let cs = self.geom.code_size;
        for (i, &l) in lists.iter().enumerate() {
            let lp = &mut self.lists[l as usize];
            if self.geom.count(&lp.image) == self.geom.capacity {
                // Reserve the successor block, link to it, write the full page.
                let next = build_append(self.index, &new_data_image(&self.geom, l));
                self.geom.set_next(&mut lp.image, next);
                build_overwrite(self.index, lp.block, &lp.image);
                lp.image = new_data_image(&self.geom, l);
                lp.block = next;
            }
            self.geom
                .push(&mut lp.image, &codes[i * cs..(i + 1) * cs], self.tids[i]);
        }
        self.encoded += lists.len() as u64;
        progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, self.encoded as i64);
        self.batch.clear();
        self.tids.clear();
        pg_sys::check_for_interrupts!();
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
    let (dim, batch) = (st.dim, &mut st.batch);
    st.row.scope(|| {
        // SAFETY: non-null vector datum.
        let x = unsafe { datum_vector(datum) };
        check_dim(dim, x.len());
        batch.extend_from_slice(x);
    });
    let blk = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
    st.tids.push(layout::tid_bytes(blk, tid.ip_posid));
    if st.tids.len() >= st.batch_rows {
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
        pg_sys::table_index_build_scan(
            heap,
            index,
            index_info,
            true,
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
    let opts = options::of(index);
    let metric = super::model::metric_of(index);
    let declared = declared_dim(index);

    // Pass 1: count and sample.
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_SAMPLE);
    let budget = maintenance_bytes();
    // With the dimension declared and `lists` given, a budget too small for the
    // model fails now, before the table is read.
    if let (Some(dim), true) = (declared, opts.lists > 0) {
        let (lists, m, nbits) = choose_params(&opts, opts.lists as usize, dim);
        let shape = shape_of(dim, lists, m, nbits);
        if let Err(e) = buildmem::plan(budget, &shape, lists, lists) {
            too_little_memory(&shape, e.needed, budget);
        }
    }
    let mut sample = SampleState {
        dim: declared,
        rows: 0,
        sample: Vec::new(),
        cap: declared.map_or(0, |d| buildmem::reservoir_rows(budget, d)),
        budget,
        rng: rand::rngs::StdRng::seed_from_u64(0x1f2e_3d4c),
        row: RowContext::new(c"ivfpq build row"),
    };
    // SAFETY: `sample` is the SampleState sample_callback expects; it outlives the scan.
    let heap_tuples = unsafe {
        scan_table(
            heap,
            index,
            index_info,
            Some(sample_callback),
            &mut sample as *mut SampleState as *mut std::ffi::c_void,
        )
    };
    let rows = sample.rows as usize;
    let untrained = rows == 0;
    let dim = sample.dim.unwrap_or(0);

    let (mut lists, m, nbits) = choose_params(&opts, rows, dim);
    if dim > 0 {
        if let Err(e) = ivf::validate_params(0, dim, lists, m, nbits) {
            crate::errors::error(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e);
        }
    }
    if rows > 0 && lists > rows {
        ereport!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("ivfpq: the table has {rows} rows, so the index gets {rows} lists instead of {lists}"),
            "Rebuild the index (REINDEX) once the table holds more data."
        );
        lists = rows;
    }
    if untrained {
        ereport!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "ivfpq index built on an empty table: queries re-rank every row until it is rebuilt",
            "Run REINDEX once the table holds data."
        );
    }

    // Fit training and encoding to maintenance_work_mem.
    let plan = if untrained {
        buildmem::Plan {
            train_rows: 0,
            encode_rows: buildmem::MIN_ENCODE_ROWS,
        }
    } else {
        let shape = shape_of(dim, lists, m, nbits);
        let wanted = ivf::training_sample_size(lists, nbits).min(rows);
        let have = sample.sample.len() / dim;
        match buildmem::plan(budget, &shape, have, wanted) {
            Ok(p) => {
                if p.train_rows < wanted.min(have) {
                    ereport!(
                        NOTICE,
                        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                        format!(
                            "ivfpq: training on {} rows instead of {} to stay within maintenance_work_mem ({} MB)",
                            p.train_rows,
                            wanted.min(have),
                            budget >> 20
                        ),
                        "Raise maintenance_work_mem for a model trained on more rows."
                    );
                }
                p
            }
            Err(e) => too_little_memory(&shape, e.needed, budget),
        }
    };

    // Train on copies: the pool's threads only do arithmetic on `sample`.
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_TRAIN);
    pg_sys::check_for_interrupts!();
    let pool = Pool::new(parallel::build_threads());
    let model = if untrained {
        let d = dim.max(1);
        let mm = if d.is_multiple_of(m) { m } else { 1 };
        IvfPqModel::train(&[], d, metric, &IvfPqParams::new(1, mm, nbits))
    } else {
        let n_train = plan.train_rows;
        let have = sample.sample.len() / dim;
        // The reservoir often holds the whole table in physical order, so its
        // first rows are not a random sample: training on them fits the lists to
        // whatever was loaded first (on SIFT, lists of 122 to 4,096 rows instead
        // of 289 to 2,303, and recall@10 0.958 instead of 0.972 at 16 probes with
        // 40 re-ranked). Pick the training rows at random.
        let train_rows = if have > n_train {
            let mut idx = rand::seq::index::sample(&mut sample.rng, have, n_train).into_vec();
            idx.sort_unstable();
            let mut v = Vec::with_capacity(n_train * dim);
            for i in idx {
                v.extend_from_slice(&sample.sample[i * dim..(i + 1) * dim]);
            }
            v
        } else {
            std::mem::take(&mut sample.sample)
        };
        // The reservoir is not needed any more: free it before training's copies.
        sample.sample = Vec::new();
        let params = IvfPqParams::new(lists, m, nbits);
        pool.run(|stop| {
            let params = IvfPqParams {
                stop: stop.clone(),
                ..params
            };
            IvfPqModel::train_until(&train_rows, dim, metric, &params)
        })
    };
    sample.row.delete();
    pg_sys::check_for_interrupts!();

    // Block 0 (meta, written last), model pages, directory pages.
    let mut blank = vec![0u8; pg_sys::BLCKSZ as usize];
    init_page(&mut blank, layout::SMALL_SPECIAL);
    let meta_blk = build_append(index, &blank);
    assert_eq!(meta_blk, layout::META_BLOCK);
    let model_bytes = model.to_bytes();
    let model_start = page::nblocks(index);
    let mut model_pages = 0;
    for img in model_page_images(&model_bytes, &blank) {
        build_append(index, &img);
        model_pages += 1;
    }
    let nlists = model.lists;
    let dir_pages = nlists.div_ceil(layout::DIR_PER_PAGE);
    let dir_start = page::nblocks(index);
    for _ in 0..dir_pages {
        build_append(index, &blank);
    }

    // Pass 2: encode every row into its list. Each list starts with one page
    // (possibly empty), so a list's head never changes after the build.
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_ENCODE);
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, rows as i64);
    // 4-bit codes are stored in fast-scan blocks (see layout.rs).
    let blocked = model.is_fast() && model.code_size() > 0;
    let geom = DataGeom::new(model.code_size(), blocked);
    let mut heads = Vec::with_capacity(nlists);
    let mut list_pages = Vec::with_capacity(nlists);
    for l in 0..nlists as u32 {
        let img = new_data_image(&geom, l);
        let blk = build_append(index, &img);
        heads.push(blk);
        list_pages.push(ListPage {
            image: img,
            block: blk,
        });
    }
    let batch_rows = plan.encode_rows;
    let mut enc = EncodeState {
        index,
        model: &model,
        pool: &pool,
        row: RowContext::new(c"ivfpq build row"),
        geom,
        dim: model.dim,
        batch: Vec::new(),
        tids: Vec::new(),
        batch_rows,
        lists: list_pages,
        heads,
        encoded: 0,
    };
    if !untrained {
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
        enc.flush();
    }
    let EncodeState {
        lists: enc_lists,
        heads,
        encoded,
        row,
        ..
    } = enc;
    row.delete();

    // Final list pages, directory, meta.
    let mut dir_imgs = vec![blank.clone(); dir_pages];
    for (l, lp) in enc_lists.iter().enumerate() {
        build_overwrite(index, lp.block, &lp.image);
        let e = DirEntry {
            head: heads[l],
            insert: lp.block,
        };
        layout::write_dir(
            &mut dir_imgs[l / layout::DIR_PER_PAGE],
            l % layout::DIR_PER_PAGE,
            e,
        );
    }
    for (i, img) in dir_imgs.iter_mut().enumerate() {
        let used = ((nlists - i * layout::DIR_PER_PAGE).min(layout::DIR_PER_PAGE))
            * layout::DIR_ENTRY_BYTES;
        set_lower(img, used);
        layout::set_page_kind(img, layout::KIND_DIR);
        build_overwrite(index, dir_start + i as u32, img);
    }
    let meta = MetaData {
        magic: layout::MAGIC,
        version: layout::FORMAT_VERSION,
        dim: model.dim as u32,
        lists: nlists as u32,
        code_size: model.code_size() as u32,
        metric: metric_code(metric),
        untrained: untrained as u32,
        model_start,
        model_pages,
        model_bytes: model_bytes.len() as u32,
        dir_start,
        dir_pages: dir_pages as u32,
        built_rows: encoded,
        generation: generation(),
        probes: opts.probes.max(0) as u32,
        rerank: (opts.rerank + 1).max(0) as u32,
        blocked: blocked as u32,
        _pad: 0,
    };
    let mut img = blank.clone();
    layout::write_meta(&mut img, &meta);
    set_lower(&mut img, layout::META_BYTES);
    layout::set_page_kind(&mut img, layout::KIND_META);
    build_overwrite(index, layout::META_BLOCK, &img);

    // WAL-log the whole index now that it is complete.
    page::log_all_pages(index);

    // SAFETY: palloc0 of the result struct PostgreSQL expects back.
    unsafe {
        let r = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBuildResult>())
            as *mut pg_sys::IndexBuildResult;
        (*r).heap_tuples = heap_tuples;
        (*r).index_tuples = encoded as f64;
        r
    }
}

/// `(lists, m, nbits)` from the index options, with defaults for `rows` rows of
/// `dim` dimensions where an option is not given.
fn choose_params(opts: &options::IvfpqOptions, rows: usize, dim: usize) -> (usize, usize, u32) {
    let (auto_lists, auto_m, auto_nbits) = ivf::default_params(rows.max(1), dim.max(1));
    let lists = if opts.lists > 0 {
        opts.lists as usize
    } else {
        auto_lists
    };
    let nbits = if opts.nbits > 0 {
        opts.nbits as u32
    } else {
        auto_nbits
    };
    // The default m depends on the code width (same code bytes at 4 and 8 bits).
    let m = if opts.m > 0 {
        opts.m as usize
    } else if nbits == auto_nbits {
        auto_m
    } else {
        ivf::default_m(dim.max(1), nbits)
    };
    (lists, m, nbits)
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

pub fn metric_code(m: Metric) -> u32 {
    m.to_u8() as u32
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
    let metric = super::model::metric_of(index);
    let dim = declared_dim(index).unwrap_or(1);
    let model = IvfPqModel::train(&[], dim, metric, &IvfPqParams::new(1, 1, 8));
    let bytes = model.to_bytes();
    let mut pages: Vec<Vec<u8>> = Vec::new();
    let mut blank = vec![0u8; pg_sys::BLCKSZ as usize];
    init_page(&mut blank, layout::SMALL_SPECIAL);
    pages.push(blank.clone()); // meta, filled below
    let model_start = 1;
    pages.extend(model_page_images(&bytes, &blank));
    let model_pages = pages.len() as u32 - 1;
    let dir_start = pages.len() as u32;
    // An 8-bit placeholder model: row layout.
    let geom = DataGeom::new(model.code_size(), false);
    let mut dir = blank.clone();
    layout::write_dir(
        &mut dir,
        0,
        DirEntry {
            head: dir_start + 1,
            insert: dir_start + 1,
        },
    );
    set_lower(&mut dir, layout::DIR_ENTRY_BYTES);
    layout::set_page_kind(&mut dir, layout::KIND_DIR);
    pages.push(dir);
    pages.push(new_data_image(&geom, 0));
    let meta = MetaData {
        magic: layout::MAGIC,
        version: layout::FORMAT_VERSION,
        dim: dim as u32,
        lists: 1,
        code_size: model.code_size() as u32,
        metric: metric_code(metric),
        untrained: 1,
        model_start,
        model_pages,
        model_bytes: bytes.len() as u32,
        dir_start,
        dir_pages: 1,
        built_rows: 0,
        generation: generation(),
        probes: 0,
        rerank: 0,
        blocked: 0,
        _pad: 0,
    };
    layout::write_meta(&mut pages[0], &meta);
    set_lower(&mut pages[0], layout::META_BYTES);
    layout::set_page_kind(&mut pages[0], layout::KIND_META);
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
