//! Which relation a job acts on: the one its name resolved to at submit,
//! never another that took the name since (kinds.rs and import.rs check it
//! before each attempt and around each batch).

use super::args::Rel;
use super::job::Ctx;
use super::spi;
use pgrx::prelude::*;

/// A job acts on the relation it was submitted for, never on another that took
/// its name: the OID the name resolved to at submit is kept in the resume point
/// (`rel_oid`; jobs submitted before it was kept record it at their first
/// start), and each attempt checks that the name still resolves to it (55000
/// otherwise: the relation was renamed or dropped and another one now has its
/// name). Batched jobs check again in every batch (`check_still_named`).
///
/// An index job's relation is the index of that name on the table it had at
/// submit: every `REINDEX CONCURRENTLY` (this job's earlier attempt, another
/// index job queued before it, the user's own) swaps the rebuilt index in
/// under the old name with a new OID, so the name's OID may change while the
/// index stays the one the job was submitted for; the table may not. (By the
/// index's OID alone, the second of two queued jobs on one index failed:
/// the first had rebuilt it.)
pub fn same_relation_as_submitted(ctx: &Ctx, rel: &Rel) {
    let saved = ctx.checkpoint();
    let record = || {
        spi::exec(
            "UPDATE arrw.job SET checkpoint = coalesce(checkpoint, '{}') \
                    || jsonb_strip_nulls(jsonb_build_object('rel_oid', $2, 'table_oid', $3)) \
             WHERE id = $1::bigint",
            &[
                Some(&ctx.job.id_text),
                Some(&rel.oid),
                rel.table_oid.as_deref(),
            ],
        );
    };
    let Some(oid) = saved.text(REL_OID) else {
        record();
        return;
    };
    if oid == rel.oid {
        return;
    }
    let same_table_index = ctx.job.kind.reindexes_concurrently()
        && rel.table_oid.is_some()
        && saved.text("table_oid") == rel.table_oid.as_deref();
    if same_table_index {
        record();
        return;
    }
    not_same_relation(ctx, &rel.qname);
}

/// The resume-point key of the OID a job's table or index had at submit.
pub const REL_OID: &str = "rel_oid";

fn not_same_relation(ctx: &Ctx, qname: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "{qname} no longer names the relation job {} was submitted for (that one was \
             renamed or dropped, and another relation, or none, now has the name); submit the \
             job again",
            ctx.job.id
        )
    );
}

/// In an index job's transaction, before its `REINDEX CONCURRENTLY`: the OID
/// its index's name resolves to now. That may differ from `rel.oid`, read by
/// the attempt's `prepare`: another index job's (or the user's) `REINDEX
/// CONCURRENTLY` may have swapped a rebuilt index in under the name since, as
/// [`same_relation_as_submitted`] allows. The name must still name an index
/// of the same table (55000 otherwise, as [`check_still_named`]). Checking
/// for `rel.oid` itself failed one of two index jobs started on one index a
/// few milliseconds apart, for good (hunt-75).
pub fn index_still_named(ctx: &Ctx, rel: &Rel) -> String {
    let now = spi::one(
        "SELECT c.oid::pg_catalog.text FROM pg_catalog.pg_class c            JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) c.oid           WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)::pg_catalog.oid             AND i.indrelid::pg_catalog.text OPERATOR(pg_catalog.=) $2",
        &[Some(&rel.qname), rel.table_oid.as_deref()],
    );
    match now {
        Some(oid) if ctx.job.kind.reindexes_concurrently() => oid,
        Some(oid) if oid == rel.oid => oid,
        _ => not_same_relation(ctx, &rel.qname),
    }
}

/// In a batch's transaction: fails the job (55000, undoing the batch) unless
/// `rel.qname` still names the relation the attempt started on. Called before a
/// batch's statement (which would otherwise act on whatever now has the name)
/// and after it (the statement's lock then keeps the name on the table it
/// changed until the commit).
pub fn check_still_named(ctx: &Ctx, rel: &Rel) {
    let now = spi::one(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.text",
        &[Some(&rel.qname)],
    );
    if now.as_deref() != Some(rel.oid.as_str()) {
        not_same_relation(ctx, &rel.qname);
    }
}
