//! Runs an attempt of a job: checks it may still run (`prepare`), then hands it
//! to its kind. index_rebuild, index_optimize, bulk_export, batch_delete and
//! batch_update are here; bulk_import is in import.rs.

use super::args::{self, CopyOpts, JobKind, Rel, Spec};
use super::job::{Ctx, Outcome, RemoveOnDrop, IN_LONG_STATEMENT};
use super::{identity, import, spi};
use arrw_core::walk::Remembered;
use pgrx::prelude::*;
use std::sync::atomic::Ordering;

/// Checks, before an attempt, that the owner still exists and may run the job;
/// returns the parsed arguments.
fn prepare(ctx: &Ctx) -> (Spec, args::Checked) {
    let owner = ctx.job.owner.to_u32().to_string();
    if !spi::flag(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE oid = $1::oid)",
        &[Some(&owner)],
    ) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "the role that submitted job {} (OID {owner}) no longer exists",
                ctx.job.id
            )
        );
    }
    let spec = args::parse(ctx.job.kind, &ctx.job.args);
    let checked = ctx.as_owner(|| args::check(ctx.job.kind, &spec));
    if let Some(rel) = &checked.rel {
        identity::same_relation_as_submitted(ctx, rel);
    }
    (spec, checked)
}

/// The resume-point key set by an index job before its `REINDEX CONCURRENTLY`.
const REINDEX_STARTED: &str = "reindex_started";

/// Runs one attempt of the job. Errors propagate (the worker classifies them).
pub fn run(ctx: &Ctx) -> Outcome {
    let (spec, checked) = spi::xact(|| prepare(ctx));
    match spec {
        Spec::Index { .. } => index(ctx, checked.rel.expect("index resolved")),
        Spec::Import { .. } => import::run(ctx, &spec, checked.rel.expect("table resolved")),
        Spec::Export { query, path, copy } => export(ctx, &query, &path, &copy),
        Spec::Delete {
            where_, batch_rows, ..
        } => batch(
            ctx,
            checked.rel.expect("table resolved"),
            None,
            Some(&where_),
            batch_rows,
        ),
        Spec::Update {
            set,
            where_,
            batch_rows,
            ..
        } => batch(
            ctx,
            checked.rel.expect("table resolved"),
            Some(&set),
            where_.as_deref(),
            batch_rows,
        ),
    }
}

/// `arrw.ivfpq_info(index)` as JSON, if that function exists and the job's owner
/// still owns the index.
///
/// Read as the worker (the bootstrap superuser), not as the owner:
/// `ivfpq_info` refuses a role that row-level security limits on the table
/// (as `FORCE ROW LEVEL SECURITY` does its owner) or that lacks SELECT, and
/// that refusal failed every `index_optimize` of such a table (42501, not
/// retried), though the owner may rebuild and retrain the index. The figures
/// describe the owner's own index, shown only to roles with the owner's
/// privileges (`arrw.jobs`); the owner can lift FORCE or grant itself SELECT
/// at will. `ivfpq_info` runs no code of the owner's.
fn ivfpq_stats(ctx: &Ctx, qname: &str) -> Option<String> {
    spi::xact(|| {
        if !spi::flag(
            "SELECT to_regprocedure('arrw.ivfpq_info(regclass)') IS NOT NULL",
            &[],
        ) {
            return None;
        }
        let owner = ctx.job.owner.to_u32().to_string();
        if !spi::flag(
            "SELECT pg_catalog.pg_has_role($2::pg_catalog.oid, c.relowner, 'USAGE') \
             FROM pg_catalog.pg_class c \
             WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass::pg_catalog.oid",
            &[Some(qname), Some(&owner)],
        ) {
            return None;
        }
        let read = || {
            spi::one(
                "SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.=) 1 \
                        THEN (pg_catalog.array_agg(pg_catalog.to_jsonb(s)))[1] \
                        ELSE pg_catalog.jsonb_agg(pg_catalog.to_jsonb(s)) END \
                 FROM arrw.ivfpq_info($1::pg_catalog.regclass) s",
                &[Some(qname)],
            )
        };
        // A damaged index (XX001/XX002), or one of an older format, is what
        // a rebuild repairs (docs/security.md, README "Upgrading"): its
        // figures are the error, and the rebuild goes on. Raised, `index_optimize` failed every attempt before its REINDEX
        // on the one kind of index it is there to fix, where index_rebuild
        // repaired it (hunt-121). Anything else (a cancel above all) is raised.
        match crate::subxact::subxact(true, read) {
            Ok(v) => v,
            Err(e) if damaged(&e) => {
                let (msg, code) = crate::errors::describe(&e);
                let state = crate::errors::sqlstate_text(code);
                spi::one(
                    "SELECT pg_catalog.jsonb_build_object('unreadable', $1::pg_catalog.text, \
                            'sqlstate', $2::pg_catalog.text)",
                    &[Some(&msg), Some(&state)],
                )
            }
            Err(e) => e.rethrow(),
        }
    })
}

/// What keeps `arrw.ivfpq_info` from reading an ivfpq index that a rebuild
/// makes readable: data corruption (XX001 a damaged page header, XX002 an
/// index arrw found damaged), and an index of another on-disk format
/// (0A000, `page::wrong_format`: every index an earlier arrw built, which
/// the upgrade notes send to a rebuild; hunt-126).
fn damaged(e: &pgrx::pg_sys::panic::CaughtError) -> bool {
    matches!(
        crate::errors::report_of(e).sql_error_code(),
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED
            | PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED
            | PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED
    )
}

/// Drops what interrupted `REINDEX CONCURRENTLY`s of this job left behind: the
/// invalid `_ccnew` / `_ccold` indexes PostgreSQL names after the index it
/// rebuilds (`<index>_ccnew`, `<index>_ccold`, maybe followed by digits when
/// the name is taken, the index name cut short when the whole would pass 63
/// bytes), on the index's table or, for a partitioned index, on the table of
/// each of its partitions' indexes (REINDEX rebuilds each leaf index).
///
/// Only this job's: before its first REINDEX the job records the invalid
/// indexes that already existed on those tables (`invalid_before`); those, and
/// everything while no REINDEX of the job ever started, are left alone.
pub fn drop_leftover_indexes(ctx: &Ctx) {
    let leftovers: Vec<String> = spi::xact(|| {
        let saved = ctx.checkpoint();
        if saved.text(REINDEX_STARTED).is_none() {
            return Vec::new();
        }
        let Some(index) = saved.text(identity::REL_OID).map(str::to_string) else {
            return Vec::new();
        };
        let before = saved.text(INVALID_BEFORE).unwrap_or_default().to_string();
        let Some(table) = saved.text("table_oid").map(str::to_string) else {
            return Vec::new();
        };
        let Spec::Index { index: name } = args::parse(ctx.job.kind, &ctx.job.args) else {
            return Vec::new();
        };
        // The job's indexes: the one recorded (after a swap, the old index now
        // named `_ccold`) and the one its name resolves to now, with their
        // partitions' indexes, if on the job's table or its partitions.
        // pg_partition_tree() gives no rows for a relation that is neither
        // partitioned nor a partition, so each tree is united with its root:
        // a plain table and its index are a tree of one (without that, a plain
        // table's leftovers were never found).
        ctx.as_owner(|| {
            spi::query(
                "WITH ours AS ( \
                   SELECT DISTINCT x.indrelid AS tab, xc.relname::pg_catalog.text AS name \
                   FROM pg_catalog.unnest(ARRAY[$1::pg_catalog.oid, pg_catalog.to_regclass($3)::pg_catalog.oid]) r(oid) \
                   CROSS JOIN LATERAL (SELECT p.relid FROM pg_catalog.pg_partition_tree(r.oid::pg_catalog.regclass) p \
                                       UNION SELECT r.oid::pg_catalog.regclass) t \
                   JOIN pg_catalog.pg_index x ON x.indexrelid OPERATOR(pg_catalog.=) t.relid \
                   JOIN pg_catalog.pg_class xc ON xc.oid OPERATOR(pg_catalog.=) t.relid \
                   WHERE r.oid IS NOT NULL AND x.indrelid OPERATOR(pg_catalog.=) ANY (ARRAY( \
                     SELECT p.relid FROM pg_catalog.pg_partition_tree($4::pg_catalog.oid::pg_catalog.regclass) p \
                     UNION SELECT $4::pg_catalog.oid::pg_catalog.regclass))) \
                 SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) \
                 FROM ours \
                 JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) ours.tab AND NOT i.indisvalid \
                 JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                 CROSS JOIN LATERAL (SELECT pg_catalog.regexp_replace(c.relname::pg_catalog.text, \
                        '_cc(new|old)[0-9]*$', '') AS base) b \
                 WHERE c.relname::pg_catalog.text OPERATOR(pg_catalog.~) '_cc(new|old)[0-9]*$' \
                   AND b.base OPERATOR(pg_catalog.<>) '' \
                   AND (b.base OPERATOR(pg_catalog.=) ours.name \
                        OR (pg_catalog.octet_length(c.relname::pg_catalog.text) OPERATOR(pg_catalog.>=) 58 \
                            AND pg_catalog.starts_with(ours.name, b.base))) \
                   AND NOT (i.indexrelid::pg_catalog.text OPERATOR(pg_catalog.=) ANY \
                        (pg_catalog.string_to_array($2, ','))) \
                 GROUP BY 1",
                &[Some(&index), Some(&before), Some(&name), Some(&table)],
            )
            .rows
            .into_iter()
            .filter_map(|r| r[0].clone())
            .collect()
        })
    });
    for q in leftovers {
        spi::toplevel_utility(
            &format!("DROP INDEX CONCURRENTLY IF EXISTS {q}"),
            ctx.job.owner,
            &ctx.job.search_path,
        );
        spi::set_search_path(
            spi::SAFE_SEARCH_PATH,
            pgrx::pg_sys::GucAction::GUC_ACTION_SET,
        );
    }
}

/// The resume-point key of the invalid indexes that existed on the index's
/// tables before the job's first REINDEX (not the job's to drop).
const INVALID_BEFORE: &str = "invalid_before";

/// index_rebuild / index_optimize: `REINDEX INDEX CONCURRENTLY` (for ivfpq this
/// retrains the centroids and codebooks on the table's current rows and swaps the
/// new index in without blocking reads or writes).
fn index(ctx: &Ctx, rel: Rel) -> Outcome {
    if let Some(o) = ctx.stop() {
        return o;
    }
    let optimize = ctx.job.kind == JobKind::IndexOptimize;
    let before = if optimize {
        ivfpq_stats(ctx, &rel.qname)
    } else {
        None
    };
    drop_leftover_indexes(ctx);
    // A cancel committed while the job was being claimed reaches no worker by
    // signal; the request is in the table.
    let cancelled = spi::xact(|| {
        if ctx.cancel_requested() {
            return true;
        }
        let oid = identity::index_still_named(ctx, &rel);
        // Before the first REINDEX: the invalid indexes already on the tables
        // (which drop_leftover_indexes leaves alone), and that a REINDEX started.
        let checkpoint = if ctx.checkpoint().text(REINDEX_STARTED).is_some() {
            None
        } else {
            spi::one(
                "SELECT pg_catalog.jsonb_build_object($2, true, $3, \
                        (SELECT coalesce(pg_catalog.jsonb_agg(i.indexrelid::pg_catalog.text), '[]') \
                         FROM (SELECT p.relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.oid::pg_catalog.regclass) p \
                               UNION SELECT $1::pg_catalog.oid::pg_catalog.regclass) t \
                         JOIN pg_catalog.pg_index x ON x.indexrelid OPERATOR(pg_catalog.=) t.relid \
                         JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) x.indrelid \
                         WHERE NOT i.indisvalid))",
                &[Some(&oid), Some(REINDEX_STARTED), Some(INVALID_BEFORE)],
            )
        };
        ctx.progress(0.05, checkpoint.as_deref());
        false
    });
    if cancelled {
        return Outcome::Cancelled;
    }
    IN_LONG_STATEMENT.store(true, Ordering::SeqCst);
    spi::toplevel_utility(
        &format!("REINDEX INDEX CONCURRENTLY {}", rel.qname),
        ctx.job.owner,
        &ctx.job.search_path,
    );
    IN_LONG_STATEMENT.store(false, Ordering::SeqCst);
    spi::set_search_path(
        spi::SAFE_SEARCH_PATH,
        pgrx::pg_sys::GucAction::GUC_ACTION_SET,
    );
    // The REINDEX looked the name up again after waiting for the table's
    // lock: a session that held the lock meanwhile could give the name to an
    // index of another table, which was then rebuilt in its place, and the
    // job reported success for an index it never touched (hunt-80). The name
    // must still name an index of the job's table, or the job fails (55000).
    spi::xact(|| {
        identity::index_still_named(ctx, &rel);
    });
    let after = if optimize {
        ivfpq_stats(ctx, &rel.qname)
    } else {
        None
    };
    let result = spi::xact(|| {
        spi::one(
            "SELECT jsonb_strip_nulls(jsonb_build_object('index', $1, 'before', $2::jsonb, 'after', $3::jsonb, \
                    'index_oid', to_regclass($1)::oid))",
            &[Some(&rel.qname), before.as_deref(), after.as_deref()],
        )
    });
    Outcome::Succeeded(result)
}

/// bulk_export: `COPY (query) TO file`, run as the owner. The file appears under
/// its final name only once complete (written as `<path>.arrw-<id>.tmp`, renamed).
fn export(ctx: &Ctx, query: &str, path: &str, copy: &CopyOpts) -> Outcome {
    if let Some(o) = ctx.stop() {
        return o;
    }
    let tmp = export_tmp(path, ctx.job.id);
    // COPY TO opens the file for writing without O_NONBLOCK: a FIFO at that name
    // would block the worker in open() until some reader appeared. A regular file
    // there is what an earlier attempt left and is overwritten.
    if let Ok(m) = std::fs::symlink_metadata(&tmp) {
        if !m.file_type().is_file() {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{tmp}\" exists and is not a regular file")
            );
        }
    }
    let sql = format!(
        "COPY (\n{query}\n) TO {} WITH ({})",
        spi::literal(&tmp),
        copy.sql(true)
    );
    // Whatever ends this attempt short of the rename (an error, a cancel, a
    // shutdown) leaves no temporary file behind.
    let tmp_file = RemoveOnDrop(Some(tmp.clone()));
    IN_LONG_STATEMENT.store(true, Ordering::SeqCst);
    let rows = spi::xact(|| {
        if ctx.cancel_requested() {
            return None;
        }
        // An export reads. A query that writes (`INSERT ... RETURNING`, or a
        // function with side effects) would commit its writes once per attempt,
        // and an attempt is retried when, say, the rename below fails: refused
        // (25006) instead. Set after the first query took the transaction's
        // snapshot, so the job's SQL cannot set it back.
        spi::exec("SET LOCAL transaction_read_only = on", &[]);
        Some(ctx.run_as_owner(&sql))
    });
    IN_LONG_STATEMENT.store(false, Ordering::SeqCst);
    let Some(rows) = rows else {
        return Outcome::Cancelled;
    };
    // The COPY runs to its end whatever happened meanwhile: a worker whose
    // postmaster died during it renamed the file into place with no server
    // running (hunt-119); it exits here instead, and the attempt is redone.
    super::job::exit_if_postmaster_died();
    // The file reaches the disk before the rename, and the rename before the
    // job is recorded `succeeded` (a commit, which is durable): after an OS
    // crash or a power loss a job that says it succeeded had a file that
    // could be empty or cut short (COPY TO writes without fsync; hunt-139).
    // As PostgreSQL's own files, not with `fsync = off`.
    // SAFETY: reading a backend global (the `fsync` setting).
    let durable = unsafe { pg_sys::enableFsync };
    if durable {
        if let Err(e) = fsync(&tmp) {
            crate::errors::error(
                crate::errors::file_error_code(&e),
                format!("could not fsync \"{tmp}\": {e}"),
            );
        }
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        // A directory at `path` (42809) fails the job at once; an I/O error is
        // retried (worker::permanent).
        crate::errors::error(
            crate::errors::file_error_code(&e),
            format!("could not rename \"{tmp}\" to \"{path}\": {e}"),
        );
    }
    tmp_file.disarm();
    if durable {
        // The file is in place now: a directory the server may write but not
        // read (mode 0300) cannot be opened to be synced, and failing the job
        // then (after the rename had replaced the old file) told the user the
        // export had not happened (hunt-145). A WARNING says what is not sure.
        let dir = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| ".".to_string(), |d| d.to_string_lossy().into_owned());
        if let Err(e) = fsync(&dir) {
            pgrx::warning!(
                "could not fsync directory \"{dir}\" after renaming the export into it: {e}; \
                 the file is complete, but its new name may not survive an operating system crash"
            );
        }
    }
    let result = spi::xact(|| {
        ctx.progress(0.99, None);
        spi::one(
            "SELECT jsonb_build_object('rows', $1::bigint, 'path', $2)",
            &[Some(&rows.to_string()), Some(path)],
        )
    });
    Outcome::Succeeded(result)
}

/// fsync of the file or directory at `path`.
fn fsync(path: &str) -> std::io::Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all())
}

/// The temporary file an attempt of bulk_export job `id` writes before
/// renaming it to `path` (one name per job: a retry overwrites it).
pub(super) fn export_tmp(path: &str, id: impl std::fmt::Display) -> String {
    format!("{path}.arrw-{id}.tmp")
}

/// Removes what an attempt of job `id` of `kind` left behind when its
/// worker died (a crash, `kill -9`) and the job ends without another
/// attempt (failed, or cancelled): an export's temporary file. A retry
/// overwrites it instead.
/// `path` is the job's `args->>'path'`.
pub(super) fn remove_leftovers(kind: &str, id: &str, path: Option<&str>) {
    if kind != "bulk_export" {
        return;
    }
    if let Some(path) = path {
        let tmp = export_tmp(path, id);
        // Only a regular file of that name (never a directory or a FIFO).
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_file()) {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The largest range of heap blocks one batch may scan.
const MAX_BLOCKS_PER_BATCH: i64 = 16_384;

/// This transaction's counts of row versions of table `oid` updated, updated
/// HOT, and inserted so far (PostgreSQL's `pg_stat_get_xact_*`: with
/// `track_counts` off they stay 0, and then no update counts as HOT).
struct UpdateCounts {
    updated: i64,
    hot: i64,
    inserted: i64,
}

fn update_counts(oid: &str) -> UpdateCounts {
    let r = spi::query(
        "SELECT pg_catalog.pg_stat_get_xact_tuples_updated($1::pg_catalog.oid), \
                pg_catalog.pg_stat_get_xact_tuples_hot_updated($1::pg_catalog.oid), \
                pg_catalog.pg_stat_get_xact_tuples_inserted($1::pg_catalog.oid)",
        &[Some(oid)],
    );
    let v = |i: usize| r.first(i).and_then(|s| s.parse().ok()).unwrap_or(0);
    UpdateCounts {
        updated: v(0),
        hot: v(1),
        inserted: v(2),
    }
}

/// PostgreSQL's `MaxHeapTuplesPerPage`: the most tuples a heap page can hold
/// (each takes at least an aligned tuple header and a line pointer).
pub(crate) fn max_heap_tuples_per_page() -> i64 {
    use pgrx::pg_sys::{HeapTupleHeaderData, ItemIdData, PageHeaderData, BLCKSZ};
    let page_header = std::mem::offset_of!(PageHeaderData, pd_linp) as i64;
    let tuple_header = (std::mem::offset_of!(HeapTupleHeaderData, t_bits) as i64 + 7) / 8 * 8;
    (i64::from(BLCKSZ) - page_header) / (tuple_header + std::mem::size_of::<ItemIdData>() as i64)
}

/// batch_delete / batch_update: walk the table's heap in ranges of blocks (a TID
/// range scan each), one committed transaction per range, the next range recorded
/// in the same transaction. Covers the blocks the table had when the job first
/// started. An update's new row versions carry the xid of the batch that wrote
/// them; those xids are excluded from later ranges, so no row is updated twice.
///
/// Block numbers mean something only in the table's storage as it was when the
/// job started: a rewrite (CLUSTER, VACUUM FULL, TRUNCATE, a table dropped and
/// created again under the name) moves every row, and a resumed walk then
/// skipped rows or updated some twice. The storage's file node is kept in the
/// resume point and checked in every batch, after its statement (which holds
/// the table's lock until commit, so no rewrite can come between the check and
/// the commit); a rewrite fails the job (55000), undoing that batch.
fn batch(ctx: &Ctx, rel: Rel, set: Option<&str>, where_: Option<&str>, batch_rows: i64) -> Outcome {
    let filenode = || {
        spi::one(
            "SELECT pg_catalog.pg_relation_filenode($1::pg_catalog.oid)::pg_catalog.text",
            &[Some(&rel.oid)],
        )
        .unwrap_or_default()
    };
    // Resume point: next block, end block, rows done, the batches whose row
    // versions lie ahead of the walk (xid, last block they may be in), and the
    // file node the blocks belong to.
    let (mut block, end, mut done, mut kept, node) = spi::xact(|| {
        let saved = ctx.checkpoint();
        let node = match saved.text("node") {
            Some(n) => n.to_string(),
            None => filenode(),
        };
        let end = match saved.number::<i64>("end") {
            Some(e) => e,
            None => ctx.as_owner(|| {
                spi::one(
                    "SELECT (pg_catalog.pg_relation_size($1::pg_catalog.oid) \
                             OPERATOR(pg_catalog./) pg_catalog.current_setting('block_size')::pg_catalog.int8)",
                    &[Some(&rel.oid)],
                )
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
            }),
        };
        (
            saved.number::<i64>("block").unwrap_or(0),
            end,
            saved.number::<i64>("rows").unwrap_or(0),
            Remembered::from_lists(
                saved.text("xids").unwrap_or_default(),
                saved.text("until").unwrap_or_default(),
                end,
            ),
            node,
        )
    });
    let rows_per_block = if rel.relpages > 0.0 && rel.reltuples > 0.0 {
        rel.reltuples / rel.relpages
    } else {
        50.0
    };
    let base_step =
        ((batch_rows as f64 / rows_per_block).ceil() as i64).clamp(1, MAX_BLOCKS_PER_BATCH);
    let mut step = base_step;
    // The longest range that cannot hold more than 2 × batch_rows rows,
    // whatever they are: a page holds at most MaxHeapTuplesPerPage (291 at
    // 8 kB) tuples. A longer range is counted before it is changed. Nothing
    // else tells how many rows a range holds: the table's statistics may be
    // stale (a table analyzed at one wide row a page and since filled with
    // narrow ones got a first range of 500 blocks for batch_rows 1,000, and
    // the whole table, 100,000 rows, changed in one transaction; hunt-128),
    // and the rows of the last batch say nothing of the next range's (a
    // range sized on 31 rows a block reached blocks of 226 and changed 4,892).
    let uncounted = (batch_rows.saturating_mul(2) / max_heap_tuples_per_page()).max(1);
    let filter = where_
        .map(|w| format!(" AND (\n{w}\n)"))
        .unwrap_or_default();
    let range_of = |lo: i64, hi: i64| {
        // pg_catalog's operators by name: this runs as the job's owner with
        // the owner's saved path, on which another role's schema may come
        // before pg_catalog (hunt-92: its `>=` ran as the owner on every row,
        // and the TID range scan was lost).
        format!(
            "ctid OPERATOR(pg_catalog.>=) '({lo},0)'::pg_catalog.tid \
             AND ctid OPERATOR(pg_catalog.<) '({hi},0)'::pg_catalog.tid"
        )
    };
    while block < end {
        if let Some(o) = ctx.stop() {
            return o;
        }
        let not_ours = if set.is_none() || kept.is_empty() {
            String::new()
        } else {
            format!(
                " AND NOT (xmin OPERATOR(pg_catalog.=) ANY ('{{{}}}'::pg_catalog.xid[]))",
                kept.xid_list()
            )
        };
        let mut hi = (block + step).min(end);
        // A range that could hold more than 2 × batch_rows rows (see
        // `uncounted`; also one grown over rows the filter left alone: the
        // step doubles after every batch that changed nothing, up to
        // MAX_BLOCKS_PER_BATCH, and one batch once changed all 10,000 rows
        // left of a table after an empty stretch, with batch_rows 100, in one
        // long transaction) is counted first (a read of the range, whose
        // pages the batch then finds in shared buffers) and shrunk to about
        // batch_rows.
        while hi - block > uncounted {
            let sql = format!(
                "SELECT pg_catalog.count(*) FROM ONLY {} WHERE {}{filter}{not_ours}",
                rel.qname,
                range_of(block, hi)
            );
            // The name is checked first here too: the count reads whatever
            // now has it (a rename mid-run failed with 42P01 from this read,
            // not the 55000 the batch's own check gives).
            let n: i64 = spi::xact(|| {
                identity::check_still_named(ctx, &rel);
                ctx.as_owner(|| spi::one(&sql, &[]))
            })
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
            if n <= batch_rows.saturating_mul(2) {
                break;
            }
            let len = ((hi - block) as f64 * batch_rows as f64 / n as f64) as i64;
            hi = block + len.clamp(1, hi - block - 1);
        }
        let range = range_of(block, hi);
        let stmt = match set {
            None => format!("DELETE FROM ONLY {} WHERE {range}{filter}", rel.qname),
            Some(set) => format!(
                "UPDATE ONLY {} SET {set}\n WHERE {range}{filter}{not_ours}",
                rel.qname
            ),
        };
        let n = spi::xact(|| {
            spi::async_commit();
            if ctx.cancel_requested() {
                return None;
            }
            identity::check_still_named(ctx, &rel);
            // Where an update's new row versions went, when the statement can
            // say (`RETURNING ctid`; a table with rules refuses it in a WITH,
            // and under row-level security it would hold the new rows to the
            // SELECT policies too): the versions ahead of the walk, in blocks
            // it has yet to read, are all that matter.
            let returning = set.is_some()
                && !spi::flag(
                    "SELECT c.relhasrules OR c.relrowsecurity FROM pg_catalog.pg_class c \
                     WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
                    &[Some(&rel.oid)],
                );
            let before = set.is_some().then(|| update_counts(&rel.oid));
            // With RETURNING: rows changed, and the last block of the
            // versions ahead of the walk (None when there are none).
            let (n, last_ahead) = if returning {
                let sql = format!(
                    "WITH u AS (\n{stmt}\n RETURNING ctid) \
                     SELECT pg_catalog.count(*), pg_catalog.max(b) FILTER (WHERE ahead) \
                     FROM (SELECT b, b OPERATOR(pg_catalog.>=) {hi} AND b OPERATOR(pg_catalog.<) {end} AS ahead \
                           FROM (SELECT (u.ctid::pg_catalog.text::pg_catalog.point)[0] AS b FROM u) t) s"
                );
                let r = ctx.as_owner(|| {
                    spi::exec("SET CONSTRAINTS ALL IMMEDIATE", &[]);
                    spi::query(&sql, &[])
                });
                let v = |i: usize| r.first(i).and_then(|x| x.parse::<i64>().ok());
                (v(0).unwrap_or(0), v(1))
            } else {
                (ctx.run_as_owner(&stmt) as i64, None)
            };
            identity::check_still_named(ctx, &rel);
            if filenode() != node {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "table {} was rewritten or replaced while the job ran (CLUSTER, VACUUM FULL, \
                         TRUNCATE, or dropped and created again), so its rows are no longer where \
                         the job left off; {done} rows were done: submit the job again",
                        rel.qname
                    )
                );
            }
            // Only an update that may have left a row version ahead of the
            // walk needs its xid kept. The list is in every later batch's
            // statement and checkpoint: kept whole, it made a job of 8,572
            // one-row batches take 133 s and write 166 MB of WAL (hunt-133).
            // None is when the update changed exactly its n rows and inserted
            // nothing into the table (no trigger wrote rows elsewhere; with
            // `track_counts` off the counts stay 0 and this never holds), and
            // either RETURNING counted no version ahead (one behind the walk,
            // or past its end, is never read again) or, without RETURNING,
            // every update was HOT (each new version on its old version's
            // page, inside this range).
            let (known, all_hot) = before.map_or((false, false), |b| {
                let a = update_counts(&rel.oid);
                (
                    a.updated - b.updated == n && a.inserted == b.inserted,
                    a.hot - b.hot == n,
                )
            });
            let none_ahead = known
                && if returning {
                    last_ahead.is_none()
                } else {
                    all_hot
                };
            // A batch the walk has now passed every version of is dropped:
            // the blocks they are in will not be read again. Versions ahead
            // only in VACUUM-freed space kept every batch to the end, and the
            // list grew quadratically with the batches (hunt-133's second
            // case).
            kept.passed(hi);
            if set.is_some() && n > 0 && !none_ahead {
                // SAFETY: reading this transaction's xid (assigned by the UPDATE).
                let xid = unsafe { pgrx::pg_sys::GetCurrentTransactionIdIfAny() };
                if xid != pgrx::pg_sys::InvalidTransactionId {
                    // Where its versions are known to be (counts that agree,
                    // RETURNING's blocks), the last of them; else anywhere up
                    // to the walk's end (a trigger's rows, no RETURNING).
                    let last = match last_ahead {
                        Some(last) if known => last,
                        _ => end - 1,
                    };
                    kept.push(xid.into_inner(), last);
                }
            }
            let (xids, until) = kept.to_lists();
            let checkpoint = spi::one(
                "SELECT jsonb_build_object('block', $1::bigint, 'end', $2::bigint, 'rows', $3::bigint, \
                        'xids', to_jsonb(string_to_array(nullif($4, ''), ',')), \
                        'until', to_jsonb(string_to_array(nullif($6, ''), ',')), 'node', $5)",
                &[
                    Some(&hi.to_string()),
                    Some(&end.to_string()),
                    Some(&(done + n).to_string()),
                    Some(&xids),
                    Some(&node),
                    Some(&until),
                ],
            );
            ctx.progress(hi as f64 / end.max(1) as f64, checkpoint.as_deref());
            Some(n)
        });
        let Some(n) = n else {
            return Outcome::Cancelled;
        };
        done += n;
        step = hi - block;
        block = hi;
        // Aim the next range at batch_rows affected rows.
        step = if n == 0 {
            step.saturating_mul(2)
        } else {
            ((step as f64 * batch_rows as f64 / n as f64).round() as i64)
                .clamp(step / 4, step.saturating_mul(4))
        }
        .clamp(1, MAX_BLOCKS_PER_BATCH);
    }
    let result = spi::xact(|| {
        spi::one(
            "SELECT jsonb_build_object('rows', $1::bigint)",
            &[Some(&done.to_string())],
        )
    });
    Outcome::Succeeded(result)
}
