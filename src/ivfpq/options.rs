//! Index options (`WITH (lists = ..., m = ..., nbits = ..., probes = ..., rerank = ..., refine = ...)`)
//! and the `ivfpq.*` settings.
//!
//! Precedence for `probes` and `rerank` at query time: the session's GUC when it is
//! set to a non-zero value, else the index's own option, else the built-in default.
//! That lets an index carry the recall it was tuned for into pooled connections and
//! shard queries that never run `SET`.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::sync::atomic::{AtomicU32, Ordering};

pub static PROBES: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static RERANK: GucSetting<i32> = GucSetting::<i32>::new(-1);
pub static ITERATIVE_SCAN: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MAX_PROBES: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static PROFILE: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static MAXSIM_DEPTH: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static MAXSIM_SIGMAS: GucSetting<f64> = GucSetting::<f64>::new(arrw_core::rerank::FINE_SIGMAS);
pub static REFINE_SIGMAS: GucSetting<f64> = GucSetting::<f64>::new(0.0);
pub static PROBES_SCALE: GucSetting<f64> = GucSetting::<f64>::new(1.0);
pub static PREFILTER: GucSetting<bool> = GucSetting::<bool>::new(true);

static RELOPT_KIND: AtomicU32 = AtomicU32::new(0);

/// Parsed reloptions, laid out as `build_reloptions` fills them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IvfpqOptions {
    vl_len_: i32,
    pub lists: i32,
    pub m: i32,
    pub nbits: i32,
    pub probes: i32,
    pub rerank: i32,
    pub refine: i32,
}

impl IvfpqOptions {
    /// Whether `other` sets every option as this does (the varlena header
    /// aside).
    fn same_settings(&self, other: &IvfpqOptions) -> bool {
        self.same_shape(other) && (self.probes, self.rerank) == (other.probes, other.rerank)
    }

    /// Whether `other` sets the options that shape the index (those
    /// registered with AccessExclusiveLock in [`init`]) as this does.
    fn same_shape(&self, other: &IvfpqOptions) -> bool {
        let f = |o: &IvfpqOptions| (o.lists, o.m, o.nbits, o.refine);
        f(self) == f(other)
    }
}

pub fn init() {
    GucRegistry::define_int_guc(
        c"ivfpq.probes",
        c"Inverted lists scanned per ivfpq query (0: the index's `probes` option, or the default its build measured).",
        c"More probes raise recall and cost time.",
        &PROBES,
        0,
        32768,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ivfpq.probes_scale",
        c"Multiplies the probes an ivfpq query takes from its index (the `probes` option, or the default its build measured) when ivfpq.probes is 0.",
        c"One setting for indexes of different sizes: 2 raises recall for deep rankings (arrw.fused_search sets it for its inputs), 0.5 trades recall for speed.",
        &PROBES_SCALE,
        0.01,
        100.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ivfpq.rerank",
        c"Candidates re-scored with exact distances per ivfpq query (-1: the index's `rerank` option, or 100; 0: off).",
        c"Re-ranking reads each candidate's vector from the table.",
        &RERANK,
        -1,
        100000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ivfpq.maxsim_depth",
        c"Rows kept per query vector by a MaxSim (@#) ivfpq scan, each with its best entry (0: 10 x rerank, at least 1000).",
        c"Deeper gathers tighten the estimates of the rows they find; a gather keeps at most depth x query vectors rows (no more than the index has entries), at most 88 bytes each, within work_mem.",
        &MAXSIM_DEPTH,
        0,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ivfpq.maxsim_sigmas",
        c"Standard deviations of the nearest rows' estimate errors a MaxSim (@#) ivfpq scan adds to their mean before it hands a row out (4: exact order over the rows it finds, in practice).",
        c"Fewer re-rank fewer rows: 3 or 2 trade a few of the nearest rows (those whose estimates erred by more) for speed; the rows returned stay in exact order among themselves.",
        &MAXSIM_SIGMAS,
        0.0,
        10.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ivfpq.refine_sigmas",
        c"With a refine code: the coarse margin of an ivfpq scan's refine stage is also at least the mean plus this many standard deviations of the coarse estimates' errors seen (0: off).",
        c"The largest error of the candidates refined understates the rest's on queries far from every row; 3 left no row out there, at up to 3 times the candidates refined.",
        &REFINE_SIGMAS,
        0.0,
        10.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ivfpq.model_cache",
        c"Memory a session may keep for the decoded models of ivfpq indexes it used, beyond the one in use (0: only that one).",
        c"Each index's model (centroids and codebooks) is read from its pages once per session while it stays cached; a session using more indexes than fit reads them again.",
        &super::model::MODEL_CACHE_MB,
        0,
        1 << 20,
        GucContext::Userset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_bool_guc(
        c"ivfpq.profile",
        c"Time the phases of this session's ivfpq scans (read with arrw.ivfpq_profile()).",
        c"Costs two clock readings per timed step while on.",
        &PROFILE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ivfpq.prefilter",
        c"Check a query's WHERE clause on the rows an ivfpq scan reads, before they are ordered.",
        c"Rows the filter rejects are never handed out (nor read from TOAST); the executor still checks every row it gets. Filters with volatile functions or subqueries are left to the executor.",
        &PREFILTER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ivfpq.iterative_scan",
        c"Probe further lists when a query (e.g. with a selective WHERE) needs more rows.",
        c"",
        &ITERATIVE_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ivfpq.max_probes",
        c"Most lists an iterative ivfpq scan probes, never fewer than its probes (0: all lists).",
        c"",
        &MAX_PROBES,
        0,
        32768,
        GucContext::Userset,
        GucFlags::default(),
    );

    // SAFETY: called once per backend from _PG_init; the option names and
    // descriptions are 'static C strings that PostgreSQL keeps pointers to.
    unsafe {
        let kind = pg_sys::add_reloption_kind();
        RELOPT_KIND.store(kind, Ordering::Relaxed);
        // Options that shape the index need a rebuild-level lock; the query-time
        // defaults (probes, rerank) only need to keep concurrent DDL out.
        let lock = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
        let light = pg_sys::ShareUpdateExclusiveLock as pg_sys::LOCKMODE;
        pg_sys::add_int_reloption(
            kind,
            c"lists".as_ptr(),
            c"Number of inverted lists (0: chosen from the row count)".as_ptr(),
            0,
            0,
            arrw_core::ivf::MAX_LISTS as i32,
            lock,
        );
        pg_sys::add_int_reloption(
            kind,
            c"m".as_ptr(),
            c"Sub-quantizers per vector; must divide the dimensions (0: automatic)".as_ptr(),
            0,
            0,
            16000,
            lock,
        );
        pg_sys::add_int_reloption(
            kind,
            c"nbits".as_ptr(),
            c"Bits per sub-quantizer code, 4 or 8 (0: automatic)".as_ptr(),
            0,
            0,
            8,
            lock,
        );
        pg_sys::add_int_reloption(
            kind,
            c"probes".as_ptr(),
            c"Default lists probed per query (0: built-in default)".as_ptr(),
            0,
            0,
            32768,
            light,
        );
        pg_sys::add_int_reloption(
            kind,
            c"rerank".as_ptr(),
            c"Default candidates re-ranked per query (-1: built-in default)".as_ptr(),
            -1,
            -1,
            100000,
            light,
        );
        pg_sys::add_int_reloption(
            kind,
            c"refine".as_ptr(),
            c"Bits per dimension of the refine code, 0 (none), 4 or 8 (-1: 4 from 256 dimensions, none below)".as_ptr(),
            -1,
            -1,
            8,
            lock,
        );
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amoptions(
    reloptions: pg_sys::Datum,
    validate: bool,
) -> *mut pg_sys::bytea {
    let off = |f: usize| f as i32;
    let elems = [
        pg_sys::relopt_parse_elt {
            optname: c"lists".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: off(std::mem::offset_of!(IvfpqOptions, lists)),
        },
        pg_sys::relopt_parse_elt {
            optname: c"m".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: off(std::mem::offset_of!(IvfpqOptions, m)),
        },
        pg_sys::relopt_parse_elt {
            optname: c"nbits".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: off(std::mem::offset_of!(IvfpqOptions, nbits)),
        },
        pg_sys::relopt_parse_elt {
            optname: c"probes".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: off(std::mem::offset_of!(IvfpqOptions, probes)),
        },
        pg_sys::relopt_parse_elt {
            optname: c"rerank".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: off(std::mem::offset_of!(IvfpqOptions, rerank)),
        },
        pg_sys::relopt_parse_elt {
            optname: c"refine".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: off(std::mem::offset_of!(IvfpqOptions, refine)),
        },
    ];
    // SAFETY: `elems` describes IvfpqOptions exactly; build_reloptions returns a
    // palloc'd struct of that size (or NULL when there are no options).
    let opts = unsafe {
        pg_sys::build_reloptions(
            reloptions,
            validate,
            RELOPT_KIND.load(Ordering::Relaxed),
            std::mem::size_of::<IvfpqOptions>(),
            elems.as_ptr(),
            elems.len() as i32,
        )
    };
    if validate && !opts.is_null() {
        // SAFETY: non-null result of build_reloptions for our struct.
        let o = unsafe { *(opts as *const IvfpqOptions) };
        if o.nbits != 0 && o.nbits != 4 && o.nbits != 8 {
            crate::errors::error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("nbits must be 4 or 8, not {}", o.nbits),
            );
        }
        if !matches!(o.refine, -1 | 0 | 4 | 8) {
            crate::errors::error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "refine must be 0, 4 or 8 bits per dimension, not {}",
                    o.refine
                ),
            );
        }
    }
    opts as *mut pg_sys::bytea
}

/// The options of an open index (all zero / -1 defaults when none were given).
pub fn of(index: pg_sys::Relation) -> IvfpqOptions {
    // SAFETY: rd_options is either NULL or the struct amoptions built for this
    // index, cached in the relcache entry that `index` points to.
    unsafe { parse_of((*index).rd_options as *const IvfpqOptions) }
}

/// The options `amoptions` parsed into `p` (NULL: none given).
///
/// # Safety
/// `p` is NULL or points to an [`IvfpqOptions`] built by [`amoptions`].
unsafe fn parse_of(p: *const IvfpqOptions) -> IvfpqOptions {
    if p.is_null() {
        IvfpqOptions {
            rerank: -1,
            refine: -1,
            ..Default::default()
        }
    } else {
        // SAFETY: the caller's contract.
        unsafe { *p }
    }
}

/// Bits per dimension of the refine code of an index of `dim` dimensions: the
/// option, else 4 from [`REFINE_MIN_DIM`] dimensions on and none below.
/// Measured (bench notes in ARCHITECTURE.md): a refined candidate costs about
/// 0.45 µs at 384 dimensions since the estimate runs in AVX2 (a fine-page
/// visit and a 4-bit estimate; it was 1 µs), a heap re-rank about 2.6 µs at
/// 384 dimensions and 5.6 µs at 768 (a TOAST fetch); at 384 dimensions a
/// `LIMIT 10` refines ~150 rows to save ~100 heap re-ranks (+15% q/s, +30%
/// with iterative scans), at 768 it triples q/s. Below 256 dimensions the
/// 4-bit PQ code is already close and rows are short: not measured as a win.
/// A `vector[]` index (`multi`) keeps none unless asked: its scan ranks rows by
/// the PQ estimates of their elements and does not read fine codes.
pub fn refine_bits(opts: &IvfpqOptions, dim: usize, multi: bool) -> u32 {
    match opts.refine {
        0 | 4 | 8 => opts.refine as u32,
        _ if dim >= REFINE_MIN_DIM && !multi => 4,
        _ => 0,
    }
}

/// Dimensions from which an index keeps a refine code by default.
pub const REFINE_MIN_DIM: usize = 256;

/// Probes for a query, and for the same scan once it is past its first rows
/// (0: no such step): GUC, else the index's own (`arrw_core::ivf::index_probes`:
/// its option, else what the build measured for its data — `measured`, the
/// meta page's `probes` and `deep_probes`, arrw_core::calibrate —, else the
/// default for `lists` lists) times `ivfpq.probes_scale`. Only the measured
/// default has a deep step: a probes setting or option is taken as the
/// user's choice for every depth.
pub fn probes(index_opt: u32, lists: usize, measured: (u32, u32)) -> (usize, usize) {
    let g = PROBES.get();
    if g > 0 {
        return (g as usize, 0);
    }
    let (first, deep, _) = arrw_core::ivf::index_probes(index_opt, lists, measured);
    let scale = |p: usize| arrw_core::ivf::scale_probes(p, PROBES_SCALE.get());
    (scale(first), if deep > 0 { scale(deep) } else { 0 })
}

/// Re-rank depth for a query: GUC (>= 0), else index option (>= 0), else default.
pub fn rerank(index_opt: i64) -> usize {
    let g = RERANK.get();
    if g >= 0 {
        g as usize
    } else if index_opt >= 0 {
        index_opt as usize
    } else {
        arrw_core::ivf::DEFAULT_RERANK
    }
}

/// What our `object_access_hook` calls first: the hook installed before ours
/// (set in [`install_alter_check`]).
static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;

/// Installs the check of an ivfpq index's changed options
/// ([`check_altered`]) as an `object_access_hook`, once per backend from
/// `_PG_init`.
///
/// Why that hook and not the utility hook: an `ALTER INDEX ... SET` that is a
/// session's first use of arrw (no `shared_preload_libraries`) loads the
/// library only when it opens the index, inside `ProcessUtility`, past the
/// point where a utility hook installed by that load could see the
/// statement, so such a change went unchecked (hunt-78). PostgreSQL calls the
/// object access hook after it wrote the new options (`ATExecSetRelOptions`:
/// `InvokeObjectPostAlterHook`), and by then the index is open, so the
/// library and this hook are loaded.
pub fn install_alter_check() {
    // SAFETY: once, from _PG_init, on PostgreSQL's thread; the previous hook
    // is kept and called by ours.
    unsafe {
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
    }
}

/// Our `object_access_hook`. Not `#[pg_guard]`, like the statement hooks
/// (SAFETY.md, "Errors and unwinding"): it calls the hook installed before
/// ours, whose ERRORs must reach PostgreSQL as raised; it is a plain frame
/// (no value with a destructor, nothing that can panic), and our own work is
/// in [`check_altered`], guarded.
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut std::ffi::c_void,
) {
    // SAFETY: PostgreSQL's arguments, forwarded unchanged to the previous
    // hook, as every object access hook does.
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS {
            prev(access, class_id, object_id, sub_id, arg);
        }
        if access == pg_sys::ObjectAccessType::OAT_POST_ALTER
            && class_id == pg_sys::RelationRelationId
            && sub_id == 0
        {
            check_altered(object_id);
        }
    }
}

/// After a relation's catalog row changed (`OAT_POST_ALTER`): when it is an
/// ivfpq index whose options changed (`ALTER INDEX ... SET/RESET (...)`, or
/// `ALTER TABLE` naming the index), ERROR, undoing the statement, unless the
/// new options fit the index's dimensions ([`check_options_fit`]).
/// PostgreSQL validates reloptions without the relation (`amoptions`), so
/// `m = 3` went onto a 4-dimensional index: it went on answering from its old
/// model, and every REINDEX, `pg_restore` and `pg_upgrade` of it then failed.
/// Other changes of an index's row (a rename, a tablespace) leave its options
/// as they were and are not checked: a damaged or older index stays
/// renamable.
///
/// # Safety
/// Called from the object access hook, in a live transaction, with
/// `relid`'s new catalog row written by the current command.
#[pg_guard]
unsafe extern "C-unwind" fn check_altered(relid: pg_sys::Oid) {
    // SAFETY: catalog reads of a relation the statement has locked (it holds
    // its lock until the transaction ends); the new row is read with
    // SnapshotSelf, which sees the current command's own writes.
    unsafe {
        if !pg_sys::IsTransactionState()
            || pg_sys::get_rel_relkind(relid) != pg_sys::RELKIND_INDEX as std::ffi::c_char
        {
            return;
        }
        let ivfpq = pg_sys::get_index_am_oid(c"ivfpq".as_ptr(), true);
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        if (*(*rel).rd_rel).relam == ivfpq {
            let new = written_options(relid);
            // The relation cache still has the options before the change.
            let old = of(rel);
            if !new.same_settings(&old) {
                // The options that shape the index declare AccessExclusiveLock,
                // but PostgreSQL chose the statement's lock before it opened the
                // index, from the options registered then: a session's first
                // use of arrw (not preloaded) had none, and took
                // ShareUpdateExclusiveLock, so a concurrent first row could
                // give the index its dimensions after the check below read
                // none (hunt-158). Taking the declared lock here (a no-op when
                // the statement holds it) waits for such writers and reads the
                // dimensions they left.
                if !new.same_shape(&old) {
                    pg_sys::LockRelationOid(relid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE);
                }
                // An index never built (a failed or cancelled CREATE INDEX
                // CONCURRENTLY leaves an empty file) has no meta page: its
                // options are checked against the column's declared
                // dimensions, if any, so that fixing them and then REINDEX
                // works.
                let dim = if super::page::nblocks(rel) == 0 {
                    super::model::declared_dim(rel).unwrap_or(0)
                } else {
                    let meta = super::page::meta(rel);
                    if meta.untrained == 0 {
                        meta.dim as usize
                    } else {
                        super::model::untrained_dim(rel, &meta)
                    }
                };
                check_options_fit(&new, dim, super::model::is_multi(rel));
            }
        }
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
    }
}

/// The options in `relid`'s catalog row as the current command wrote it
/// (the relation cache shows them only after the next command counter
/// increment), parsed as [`of`] gives them.
///
/// # Safety
/// In a live transaction; `relid` names an ivfpq index.
unsafe fn written_options(relid: pg_sys::Oid) -> IvfpqOptions {
    // SAFETY: a systable scan of pg_class by its OID index under
    // SnapshotSelf (PostgreSQL's own static snapshot), one row at most; the
    // reloptions datum is read from that row while the scan holds it and
    // parsed into a palloc'd copy before the scan ends.
    unsafe {
        let pgclass =
            pg_sys::table_open(pg_sys::RelationRelationId, pg_sys::AccessShareLock as i32);
        let mut key = pg_sys::ScanKeyData::default();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_class_oid as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::F_OIDEQ.into(),
            relid.into(),
        );
        let scan = pg_sys::systable_beginscan(
            pgclass,
            pg_sys::ClassOidIndexId.into(),
            true,
            &raw mut pg_sys::SnapshotSelfData,
            1,
            &mut key,
        );
        let tuple = pg_sys::systable_getnext(scan);
        let parsed = if tuple.is_null() {
            std::ptr::null_mut()
        } else {
            let mut isnull = false;
            let datum = pg_sys::heap_getattr(
                tuple,
                pg_sys::Anum_pg_class_reloptions as i32,
                (*pgclass).rd_att,
                &mut isnull,
            );
            if isnull {
                std::ptr::null_mut()
            } else {
                amoptions(datum, false)
            }
        };
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(pgclass, pg_sys::AccessShareLock as i32);
        parse_of(parsed as *const IvfpqOptions)
    }
}

/// ERROR unless an index of these options can be built over rows of `dim`
/// dimensions (0: not known, nothing checked): `m` divides them, codes and
/// refine codes fit a page. The build checks it, and so do the two ways an
/// index's options or dimensions change without a build (an `ALTER INDEX ...
/// SET`, checked by [`check_altered`], and the first row inserted into an
/// index built from no rows, insert.rs): either let `m = 3` onto 4-dimensional
/// rows, and the index then worked on its old model while every REINDEX,
/// `pg_restore` and `pg_upgrade` of it failed.
pub(super) fn check_options_fit(opts: &IvfpqOptions, dim: usize, multi: bool) {
    check_refine_fits(opts, Some(dim), multi);
    if dim > 0 {
        let (lists, m, nbits) = choose_params(opts, 0, dim);
        if let Err(e) = arrw_core::ivf::validate_params(0, dim, lists, m, nbits) {
            crate::errors::error(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e);
        }
    }
}

/// A refine code must fit an index page with its row's TID: 8 bits per
/// dimension past about 8,140 dimensions does not, and such a build once made an
/// index that every reader then called corrupted (and REINDEX made again).
/// Checked before the table is read when the dimension is declared, and again
/// once the rows gave it (build.rs `plan_build`).
pub(super) fn check_refine_fits(opts: &IvfpqOptions, dim: Option<usize>, multi: bool) {
    let Some(dim) = dim.filter(|&d| d > 0) else {
        return;
    };
    let bits = refine_bits(opts, dim, multi);
    if bits == 0 {
        return;
    }
    let bytes = arrw_core::refine::code_bytes(dim, bits);
    if super::layout::FineGeom::new(bytes, 1).is_none() {
        let most = (super::layout::fine_code_max_bytes() * 8) / bits as usize;
        crate::errors::error(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "ivfpq: refine = {bits} at {dim} dimensions makes refine codes of {bytes} bytes, more than \
                 an index page holds beside a row's TID; refine = {bits} goes up to {most} dimensions \
                 (use refine = 4 or 0)"
            ),
        );
    }
}

/// `(lists, m, nbits)` from the index options, with defaults for `rows` rows of
/// `dim` dimensions where an option is not given.
pub(super) fn choose_params(opts: &IvfpqOptions, rows: usize, dim: usize) -> (usize, usize, u32) {
    let (auto_lists, auto_m, auto_nbits) = arrw_core::ivf::default_params(rows.max(1), dim.max(1));
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
        arrw_core::ivf::default_m(dim.max(1), nbits)
    };
    (lists, m, nbits)
}
