//! Job kinds, their arguments, and the checks made before a job may run.
//!
//! The same code runs twice: in `submit_job` (as the submitting role, so that a bad
//! or forbidden request fails at once with 22023 / 42501) and in the worker before
//! each attempt (as the job's owner, since privileges may have changed meanwhile).

use super::spi;
use crate::errors::{
    describe, error_hint, insufficient_privilege, invalid_parameter, job_argument,
    wrong_object_type,
};
use arrw_core::import::{arg_batch_rows, arg_nonempty, check_keys, copy_args, ArgError, ArgValue};
use pgrx::pg_sys;
use pgrx::prelude::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum JobKind {
    IndexRebuild,
    IndexOptimize,
    BulkImport,
    BulkExport,
    BatchDelete,
    BatchUpdate,
}

pub const KINDS: &[JobKind] = &[
    JobKind::IndexRebuild,
    JobKind::IndexOptimize,
    JobKind::BulkImport,
    JobKind::BulkExport,
    JobKind::BatchDelete,
    JobKind::BatchUpdate,
];

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::IndexRebuild => "index_rebuild",
            JobKind::IndexOptimize => "index_optimize",
            JobKind::BulkImport => "bulk_import",
            JobKind::BulkExport => "bulk_export",
            JobKind::BatchDelete => "batch_delete",
            JobKind::BatchUpdate => "batch_update",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        KINDS.iter().copied().find(|k| k.name() == s)
    }

    /// Walks its table's heap in block ranges (batch_delete, batch_update):
    /// one such job at a time per table (worker.rs `claimable`).
    pub fn walks_table(self) -> bool {
        matches!(self, JobKind::BatchDelete | JobKind::BatchUpdate)
    }

    /// The kind runs `REINDEX INDEX CONCURRENTLY`, which waits for every older
    /// snapshot in the database and can leave invalid `_ccnew`/`_ccold` indexes
    /// behind when interrupted.
    pub fn reindexes_concurrently(self) -> bool {
        matches!(self, JobKind::IndexRebuild | JobKind::IndexOptimize)
    }

    /// The argument keys the kind accepts (the first ones listed are required).
    fn keys(self) -> &'static [&'static str] {
        match self {
            JobKind::IndexRebuild | JobKind::IndexOptimize => &["index"],
            JobKind::BulkImport => arrw_core::import::IMPORT_KEYS,
            JobKind::BulkExport => &[
                "query",
                "path",
                "format",
                "header",
                "delimiter",
                "null",
                "quote",
                "escape",
                "encoding",
            ],
            JobKind::BatchDelete => &["table", "where", "batch_rows"],
            JobKind::BatchUpdate => &["table", "set", "where", "batch_rows"],
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            JobKind::IndexRebuild | JobKind::IndexOptimize => &["index"],
            JobKind::BulkImport => &["table", "path"],
            JobKind::BulkExport => &["query", "path"],
            JobKind::BatchDelete => &["table", "where"],
            JobKind::BatchUpdate => &["table", "set"],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Text,
    Csv,
    Binary,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Csv => "csv",
            Format::Binary => "binary",
        }
    }
}

/// COPY options shared by import and export.
#[derive(Clone, Debug)]
pub struct CopyOpts {
    pub format: Format,
    pub header: bool,
    pub delimiter: Option<String>,
    pub null: Option<String>,
    pub quote: Option<String>,
    pub escape: Option<String>,
    pub encoding: Option<String>,
}

impl CopyOpts {
    /// The `WITH (...)` option list for COPY (HEADER only when `with_header`).
    pub fn sql(&self, with_header: bool) -> String {
        let mut o = vec![format!("FORMAT {}", self.format.name())];
        if with_header && self.header {
            o.push("HEADER".into());
        }
        for (k, v) in [
            ("DELIMITER", &self.delimiter),
            ("NULL", &self.null),
            ("QUOTE", &self.quote),
            ("ESCAPE", &self.escape),
            ("ENCODING", &self.encoding),
        ] {
            if let Some(v) = v {
                o.push(format!("{k} {}", spi::literal(v)));
            }
        }
        o.join(", ")
    }

    /// The CSV quote byte (default `"`).
    pub fn quote_byte(&self) -> u8 {
        self.quote
            .as_deref()
            .and_then(|s| s.bytes().next())
            .unwrap_or(b'"')
    }

    /// The CSV escape byte (default: the quote byte).
    pub fn escape_byte(&self) -> u8 {
        self.escape
            .as_deref()
            .and_then(|s| s.bytes().next())
            .unwrap_or_else(|| self.quote_byte())
    }
}

#[derive(Clone, Debug)]
pub enum Spec {
    Index {
        index: String,
    },
    Import {
        table: String,
        path: String,
        copy: CopyOpts,
        batch_rows: i64,
        columns: Option<Vec<String>>,
    },
    Export {
        query: String,
        path: String,
        copy: CopyOpts,
    },
    Delete {
        table: String,
        where_: String,
        batch_rows: i64,
    },
    Update {
        table: String,
        set: String,
        where_: Option<String>,
        batch_rows: i64,
    },
}

pub const DEFAULT_BATCH_ROWS: i64 = 10_000;

/// The PostgreSQL encoding id of `name` (any spelling PostgreSQL accepts), or
/// 22023 if there is none, as COPY's ENCODING option would report it later.
pub fn encoding_id(name: &str) -> i32 {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: a NUL-terminated string; pg_char_to_encoding only reads it.
    let id = unsafe { pg_sys::pg_char_to_encoding(c.as_ptr()) };
    if id < 0 || name.is_empty() {
        invalid_parameter(format!(
            "argument \"encoding\" must be a valid encoding name, not \"{name}\""
        ));
    }
    id
}

/// Raises a checked argument's problem as 22023.
fn ok<T>(r: Result<T, ArgError>, kind: JobKind) -> T {
    r.unwrap_or_else(|e| job_argument(e, kind.name(), kind.keys()))
}

/// Parses and validates the arguments of a job of kind `kind` (JSON text). The
/// server decodes the JSON; `arrw_core::import` checks keys, types and COPY
/// options; SQL fragments are checked with PostgreSQL's parser.
pub fn parse(kind: JobKind, args: &str) -> Spec {
    let ty = spi::one(
        "SELECT pg_catalog.jsonb_typeof($1::pg_catalog.jsonb)",
        &[Some(args)],
    );
    if ty.as_deref() != Some("object") {
        invalid_parameter(format!(
            "arguments of {} {} job must be a JSON object",
            arrw_core::import::article(kind.name()),
            kind.name()
        ));
    }
    let rows = spi::query(
        "SELECT e.key, pg_catalog.jsonb_typeof(e.value), e.value OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[] \
         FROM pg_catalog.jsonb_each($1::pg_catalog.jsonb) e ORDER BY 1",
        &[Some(args)],
    );
    let decoded: Vec<(String, ArgValue)> = rows
        .rows
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                ArgValue {
                    json_type: r[1].clone().unwrap_or_default(),
                    text: r[2].clone(),
                },
            )
        })
        .collect();
    let vals = ok(
        check_keys(kind.name(), kind.keys(), kind.required(), &decoded),
        kind,
    );
    let get = |k: &str| vals.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let nonempty = |k: &str| ok(arg_nonempty(&vals, k), kind);
    let batch_rows = || ok(arg_batch_rows(&vals, DEFAULT_BATCH_ROWS), kind);
    let copy_opts = || -> CopyOpts {
        let c = ok(copy_args(&vals), kind);
        if let Some(e) = &c.encoding {
            encoding_id(e);
        }
        CopyOpts {
            format: match c.format.as_str() {
                "csv" => Format::Csv,
                "binary" => Format::Binary,
                _ => Format::Text,
            },
            header: c.header,
            delimiter: c.delimiter,
            null: c.null,
            quote: c.quote,
            escape: c.escape,
            encoding: c.encoding,
        }
    };

    match kind {
        JobKind::IndexRebuild | JobKind::IndexOptimize => Spec::Index {
            index: nonempty("index").unwrap(),
        },
        JobKind::BulkImport => {
            let columns = get("columns").map(|v| {
                if v.json_type != "array" {
                    invalid_parameter(format!("argument \"columns\" must be an array of strings, not {}", v.json_type));
                }
                let r = spi::query(
                    "SELECT pg_catalog.jsonb_typeof(e), e OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[] \
                     FROM pg_catalog.jsonb_array_elements(($1::pg_catalog.jsonb) OPERATOR(pg_catalog.->) 'columns'::pg_catalog.text) e",
                    &[Some(args)],
                );
                let cols: Vec<String> = r
                    .rows
                    .into_iter()
                    .map(|row| {
                        if row[0].as_deref() != Some("string") {
                            invalid_parameter("argument \"columns\" must be an array of strings");
                        }
                        row[1].clone().unwrap_or_default()
                    })
                    .collect();
                if cols.is_empty() {
                    invalid_parameter("argument \"columns\" must not be empty");
                }
                cols
            });
            // Its triggers, defaults and CHECKs run in the worker.
            refuse_hidden();
            Spec::Import {
                table: nonempty("table").unwrap(),
                path: nonempty("path").unwrap(),
                copy: copy_opts(),
                batch_rows: batch_rows(),
                columns,
            }
        }
        JobKind::BulkExport => {
            let query = nonempty("query").unwrap();
            validate_query(&query);
            Spec::Export {
                query,
                path: nonempty("path").unwrap(),
                copy: copy_opts(),
            }
        }
        JobKind::BatchDelete => {
            let where_ = nonempty("where").unwrap();
            validate_expr("where", &where_);
            Spec::Delete {
                table: nonempty("table").unwrap(),
                where_,
                batch_rows: batch_rows(),
            }
        }
        JobKind::BatchUpdate => {
            let set = nonempty("set").unwrap();
            validate_set(&set);
            let where_ = nonempty("where");
            if let Some(w) = &where_ {
                validate_expr("where", w);
            }
            Spec::Update {
                table: nonempty("table").unwrap(),
                set,
                where_,
                batch_rows: batch_rows(),
            }
        }
    }
}

/// Parses SQL built around argument `what`; a syntax error names the argument.
/// A `;` ending a statement is refused (22023, as `expected` says): the
/// fragment is placed inside a statement of arrw's, and `x;` or `x; ;` would
/// parse as the statement alone yet end the job's own statement early (42601
/// at run time, on every attempt).
fn parse_with(what: &str, sql: &str, expected: &str) -> Vec<*mut pg_sys::Node> {
    let (stmts, terminated) = parse_terminated(what, sql);
    if terminated {
        not_fragment(what, expected);
    }
    stmts
}

fn parse_terminated(what: &str, sql: &str) -> (Vec<*mut pg_sys::Node>, bool) {
    PgTryBuilder::new(|| spi::raw_parse_terminated(sql))
        .catch_when(PgSqlErrorCode::ERRCODE_SYNTAX_ERROR, |e| {
            let (msg, _) = describe(&e);
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
                format!("argument \"{what}\" is not valid SQL: {msg}")
            );
        })
        .execute()
}

/// ERROR (0A000) when a job's argument `what` (its raw parse tree `node`) could
/// read a temporary relation of this session: the job's worker cannot see
/// them, and resolved such a name to a permanent relation the temporary one
/// hid (a `where` of `id IN (SELECT id FROM ids)` deleted the rows a
/// permanent `ids` named, and an export wrote its rows; hunt-104), as a
/// temporary `table` is refused.
///
/// Two rules. A name in the SQL itself that resolves to a temporary relation
/// (not one a `WITH` of the statement defines) is refused. And since names
/// also reach a job where no parse tree shows them (a function's body,
/// `nextval('s')`, a `::regclass` string; hunt-106), so is any SQL at all
/// while a temporary relation or type of this session hides a relation or
/// type of the same name in a schema the path searches after `pg_temp`.
fn refuse_temp(what: &str, node: *mut pg_sys::Node) {
    let (mut temp, mut toast) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
    // SAFETY: writes the session's temporary schemas (InvalidOid: none yet)
    // through the two pointers.
    unsafe { pg_sys::GetTempNamespaceState(&mut temp, &mut toast) };
    if temp == pg_sys::InvalidOid {
        return;
    }
    let mut walk = TempWalk {
        ctes: Vec::new(),
        collecting: true,
        found: None,
    };
    // SAFETY: `node` is a raw parse tree of this transaction; the walker reads
    // it and writes only `walk`, which outlives both walks.
    unsafe {
        let ctx = (&mut walk as *mut TempWalk).cast();
        find_temp(node, ctx);
        walk.collecting = false;
        find_temp(node, ctx);
    }
    if let Some(name) = walk.found {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "argument \"{what}\" names temporary relation \"{name}\": a background worker \
                 cannot see it, and would read a relation of that name it finds instead"
            )
        );
    }
    refuse_hidden();
}

/// ERROR (0A000) while a temporary relation or type of this session hides one
/// of the same name in a schema the path searches after `pg_temp`: a job's
/// worker resolves that name to the other one, in the job's SQL and in the
/// code it runs (functions, triggers, defaults, CHECKs: an import's trigger
/// wrote its audit rows into the permanent table a temporary one hid;
/// hunt-109).
pub fn refuse_hidden() {
    let (mut temp, mut toast) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
    // SAFETY: writes the session's temporary schemas (InvalidOid: none yet)
    // through the two pointers.
    unsafe { pg_sys::GetTempNamespaceState(&mut temp, &mut toast) };
    if temp == pg_sys::InvalidOid {
        return;
    }
    // Relations and types (both looked up in pg_temp: a temporary enum of a
    // permanent one's name, its labels in another order, made a job delete
    // every row; hunt-107) of the session's temporary schema whose names
    // also name one of the same kind (a relation, or a type: a table's row
    // type is one) in a schema searched after it: pg_temp is searched first
    // unless the path lists it later (then it hides only what comes after).
    // Array types are left out only when a type made them (`_name`): a
    // domain over an array is a type of its own (hunt-108).
    let hidden = spi::query(
        "WITH path AS (SELECT n.oid, p.pos \
                         FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) \
                              WITH ORDINALITY p(nsp, pos) \
                         JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) p.nsp), \
              temp AS (SELECT coalesce((SELECT pos FROM path \
                                         WHERE oid OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()), \
                                       0) AS pos), \
              named AS (SELECT 'r' AS kind, relnamespace AS nsp, relname::pg_catalog.text AS name \
                          FROM pg_catalog.pg_class WHERE relkind NOT IN ('i', 'I') \
                        UNION ALL \
                        SELECT 't', typnamespace, typname::pg_catalog.text FROM pg_catalog.pg_type y \
                         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type b \
                                            WHERE b.typarray OPERATOR(pg_catalog.=) y.oid)) \
         SELECT t.name, n.nspname::pg_catalog.text \
           FROM named t \
           JOIN named o ON o.name OPERATOR(pg_catalog.=) t.name AND o.kind OPERATOR(pg_catalog.=) t.kind \
           JOIN path ON path.oid OPERATOR(pg_catalog.=) o.nsp \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.nsp, temp \
          WHERE t.nsp OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema() \
            AND o.nsp OPERATOR(pg_catalog.<>) t.nsp \
            AND path.pos OPERATOR(pg_catalog.>) temp.pos \
          ORDER BY path.pos, 1 LIMIT 1",
        &[],
    );
    if let Some(row) = hidden.rows.first() {
        let name = row[0].clone().unwrap_or_default();
        let nsp = row[1].clone().unwrap_or_default();
        error_hint(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "this session's temporary \"{name}\" hides \"{nsp}\".\"{name}\", which the job \
                 would use in its place"
            ),
            "A job runs in a background worker, which cannot see this session's temporary \
             relations and types. Drop or rename the temporary one, or submit the job from \
             another session.",
            "arrw.submit_job",
        );
    }
}

/// What [`find_temp`] walks with: first it collects the names `WITH` defines
/// anywhere in the statement, then it looks for a relation name (not one of
/// those) that resolves to a temporary relation.
struct TempWalk {
    ctes: Vec<String>,
    collecting: bool,
    found: Option<String>,
}

/// `raw_expression_tree_walker`'s callback for [`refuse_temp`].
#[pg_guard]
unsafe extern "C-unwind" fn find_temp(node: *mut pg_sys::Node, ctx: *mut std::ffi::c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // `node` is a node of the raw tree (the walker hands only those). The
    // lookup resolves the name as the executor would, without a lock, and
    // returns InvalidOid when it names nothing.
    // SAFETY: `ctx` is refuse_temp's TempWalk; tags checked before the casts.
    unsafe {
        let walk = &mut *(ctx as *mut TempWalk);
        let tag = spi::tag(node);
        if walk.collecting && tag == pg_sys::NodeTag::T_CommonTableExpr {
            let cte = node as *mut pg_sys::CommonTableExpr;
            let name = std::ffi::CStr::from_ptr((*cte).ctename)
                .to_string_lossy()
                .into_owned();
            walk.ctes.push(name);
        } else if !walk.collecting && tag == pg_sys::NodeTag::T_RangeVar {
            let rv = node as *mut pg_sys::RangeVar;
            let name = std::ffi::CStr::from_ptr((*rv).relname)
                .to_string_lossy()
                .into_owned();
            let a_cte = (*rv).schemaname.is_null() && walk.ctes.contains(&name);
            if !a_cte {
                let oid = pg_sys::RangeVarGetRelidExtended(
                    rv,
                    pg_sys::NoLock as i32,
                    pg_sys::RVROption::RVR_MISSING_OK,
                    None,
                    std::ptr::null_mut(),
                );
                if oid != pg_sys::InvalidOid
                    && pg_sys::get_rel_persistence(oid)
                        == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char
                {
                    walk.found = Some(name);
                    return true;
                }
            }
        }
        pg_sys::raw_expression_tree_walker(node, Some(find_temp), ctx)
    }
}

fn not_fragment(what: &str, expected: &str) -> ! {
    invalid_parameter(format!("argument \"{what}\" must be {expected}"))
}

/// `where` must be exactly one boolean-ish expression: `SELECT <frag>` must parse to
/// a single plain SELECT of one unnamed target. Then `(<frag>)` is that expression and
/// cannot close our parentheses, add clauses or append statements.
pub fn validate_expr(what: &str, frag: &str) {
    let expected = "a single SQL expression (the body of a WHERE clause)";
    let stmts = parse_with(what, &format!("SELECT {frag}\n"), expected);
    // SAFETY: raw_parse_terminated returns valid parse nodes; the tag is checked before the cast.
    let ok = unsafe {
        stmts.len() == 1 && spi::tag(stmts[0]) == pg_sys::NodeTag::T_SelectStmt && {
            let s = &*(stmts[0] as *mut pg_sys::SelectStmt);
            let targets = spi::list_ptrs(s.targetList);
            targets.len() == 1
                && (*(targets[0] as *mut pg_sys::ResTarget)).name.is_null()
                && s.distinctClause.is_null()
                && s.intoClause.is_null()
                && s.fromClause.is_null()
                && s.whereClause.is_null()
                && s.groupClause.is_null()
                && s.havingClause.is_null()
                && s.windowClause.is_null()
                && s.valuesLists.is_null()
                && s.sortClause.is_null()
                && s.limitOffset.is_null()
                && s.limitCount.is_null()
                && s.lockingClause.is_null()
                && s.withClause.is_null()
                && s.op == pg_sys::SetOperation::SETOP_NONE
        }
    };
    if !ok {
        not_fragment(what, expected);
    }
    // SAFETY: checked above: one SelectStmt.
    refuse_temp(what, unsafe {
        (*(stmts[0] as *mut pg_sys::SelectStmt)).targetList.cast()
    });
}

/// Analyzes, as the caller, the statement every batch of a batch job runs
/// (kinds.rs `batch`), without planning or running it (`spi::analyze`): an
/// unknown column, a `where` that is not boolean, an aggregate, are then
/// errors of `submit_job` with their own SQLSTATE, not of the job's first
/// attempt (they were accepted, and a non-boolean `where` failed in the worker
/// as "argument of AND must be type boolean", an AND the user never wrote;
/// hunt-128). `where` alone first, so that its error names the WHERE it is.
/// Privileges are the job's to meet when it runs (the table's were checked
/// above).
///
/// In a subtransaction that is rolled back, so the locks analysis takes (the
/// table's for writing, those of what `where` and `set` read) end with it, and
/// under a short `lock_timeout`: a submit never waits for a table another
/// session holds locked (the job waits, in the worker); when a lock is not to
/// be had at once, the check is left to the job's first attempt.
fn analyze_batch(rel: &Rel, set: Option<&str>, where_: Option<&str>) {
    let none = "ctid OPERATOR(pg_catalog.<) '(0,0)'::pg_catalog.tid";
    let filter = where_
        .map(|w| format!(" AND (\n{w}\n)"))
        .unwrap_or_default();
    let stmt = match set {
        None => format!("DELETE FROM ONLY {} WHERE {none}{filter}", rel.qname),
        Some(set) => format!("UPDATE ONLY {} SET {set}\n WHERE {none}{filter}", rel.qname),
    };
    let analyzed = crate::subxact::subxact(false, || {
        spi::exec("SET LOCAL lock_timeout = '50ms'", &[]);
        if let Some(w) = where_ {
            spi::analyze(&format!("SELECT FROM ONLY {} WHERE (\n{w}\n)", rel.qname));
        }
        spi::analyze(&stmt);
    });
    if let Err(e) = analyzed {
        if crate::errors::report_of(&e).sql_error_code()
            != PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
        {
            e.rethrow();
        }
    }
}

/// `set` must be a SET list only: `UPDATE t SET <frag>` must parse to one UPDATE with
/// no FROM, WHERE, RETURNING or WITH.
pub fn validate_set(frag: &str) {
    let expected = "a SET list (column = expression, ...)";
    let stmts = parse_with("set", &format!("UPDATE t SET {frag}\n"), expected);
    // SAFETY: as in validate_expr.
    let ok = unsafe {
        stmts.len() == 1 && spi::tag(stmts[0]) == pg_sys::NodeTag::T_UpdateStmt && {
            let s = &*(stmts[0] as *mut pg_sys::UpdateStmt);
            s.whereClause.is_null()
                && s.fromClause.is_null()
                && s.returningList.is_null()
                && s.withClause.is_null()
        }
    };
    if !ok {
        not_fragment("set", expected);
    }
    // The SET list alone (`t` is ours).
    // SAFETY: checked above: one UpdateStmt.
    refuse_temp("set", unsafe {
        (*(stmts[0] as *mut pg_sys::UpdateStmt)).targetList.cast()
    });
}

/// `query` must be a single query that `COPY (query) TO` accepts, and nothing else.
pub fn validate_query(q: &str) {
    let expected = "a single query (SELECT, VALUES, or DML with RETURNING)";
    let alone = parse_with("query", q, expected);
    let stmts = parse_with("query", &format!("COPY (\n{q}\n) TO STDOUT\n"), expected);
    // SAFETY: as in validate_expr.
    let copies_a_query = unsafe {
        stmts.len() == 1 && spi::tag(stmts[0]) == pg_sys::NodeTag::T_CopyStmt && {
            let s = &*(stmts[0] as *mut pg_sys::CopyStmt);
            !s.query.is_null() && s.filename.is_null() && s.options.is_null() && !s.is_from
        }
    };
    if alone.len() != 1 || !copies_a_query {
        not_fragment("query", expected);
    }
    refuse_temp("query", alone[0]);
}

/// A relation named in the arguments, resolved with the current search path.
#[derive(Clone, Debug)]
pub struct Rel {
    pub oid: String,
    pub relkind: String,
    /// Schema-qualified, quoted name.
    pub qname: String,
    pub amname: Option<String>,
    pub relname: String,
    pub is_owner: bool,
    pub table_oid: Option<String>,
    pub relpages: f64,
    pub reltuples: f64,
    pub temporary: bool,
}

/// Resolves `name` (as `regclass` input would) in the current user's context.
pub fn resolve(name: &str) -> Rel {
    let r = spi::query(
        "SELECT c.oid, c.relkind, pg_catalog.format('%I.%I', n.nspname, c.relname), am.amname, c.relname, \
                pg_catalog.pg_has_role(c.relowner, 'USAGE'), i.indrelid, c.relpages, c.reltuples, c.relpersistence \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         LEFT JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) c.relam \
         LEFT JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) c.oid \
         WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)",
        &[Some(name)],
    );
    let Some(row) = r.rows.into_iter().next() else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation \"{name}\" does not exist")
        );
    };
    let s = |i: usize| row[i].clone().unwrap_or_default();
    Rel {
        oid: s(0),
        relkind: s(1),
        qname: s(2),
        amname: row[3].clone(),
        relname: s(4),
        is_owner: s(5) == "t",
        table_oid: row[6].clone(),
        relpages: s(7).parse().unwrap_or(0.0),
        reltuples: s(8).parse().unwrap_or(0.0),
        temporary: s(9) == "t",
    }
}

fn has_role(role: &str) -> bool {
    spi::flag("SELECT pg_catalog.pg_has_role($1, 'USAGE')", &[Some(role)])
}

fn has_table_privilege(rel: &Rel, privilege: &str) -> bool {
    spi::flag(
        "SELECT pg_catalog.has_table_privilege($1::pg_catalog.oid, $2)",
        &[Some(&rel.oid), Some(privilege)],
    )
}

/// What a checked job acts on.
pub struct Checked {
    pub rel: Option<Rel>,
}

/// Checks that the current user may run the job described by `spec`, raising 42501
/// (privileges), 42P01 (no such relation) or 42809 (wrong kind of relation).
pub fn check(kind: JobKind, spec: &Spec) -> Checked {
    let checked = check_inner(kind, spec);
    if let Some(rel) = &checked.rel {
        if rel.temporary {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "{} cannot use temporary relation \"{}\": a background worker cannot see it",
                    kind.name(),
                    rel.relname
                )
            );
        }
    }
    checked
}

fn check_inner(kind: JobKind, spec: &Spec) -> Checked {
    match spec {
        Spec::Index { index } => {
            let rel = resolve(index);
            if rel.relkind != "i" && rel.relkind != "I" {
                wrong_object_type(format!("\"{index}\" is not an index"));
            }
            if !rel.is_owner {
                insufficient_privilege(format!("must be owner of index {}", rel.relname));
            }
            if kind == JobKind::IndexOptimize && rel.amname.as_deref() != Some("ivfpq") {
                wrong_object_type(format!(
                    "index_optimize retrains an ivfpq index; \"{index}\" uses {}",
                    rel.amname.as_deref().unwrap_or("no access method")
                ));
            }
            // The job records arrw.ivfpq_info of the index before and after,
            // which describes one ivfpq index, not a partitioned one (accepted,
            // such a job failed every time with 42809 after its REINDEX).
            if kind == JobKind::IndexOptimize && rel.relkind == "I" {
                error_hint(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!(
                        "index_optimize does not support partitioned index \"{index}\"; submit one job per partition's index"
                    ),
                    "index_rebuild rebuilds and retrains every partition's index in one job.",
                    "arrw.submit_job",
                );
            }
            Checked { rel: Some(rel) }
        }
        Spec::Import { table, columns, .. } => {
            let rel = resolve(table);
            if !["r", "p", "f"].contains(&rel.relkind.as_str()) {
                wrong_object_type(format!("\"{table}\" is not a table"));
            }
            let ok = has_table_privilege(&rel, "INSERT")
                || columns.as_ref().is_some_and(|cols| {
                    cols.iter().all(|c| {
                        spi::flag(
                        "SELECT pg_catalog.has_column_privilege($1::pg_catalog.oid, $2, 'INSERT')",
                        &[Some(&rel.oid), Some(c)],
                    )
                    })
                });
            if !ok {
                insufficient_privilege(format!("permission denied for table {}", rel.relname));
            }
            if !has_role("pg_read_server_files") {
                error_hint(
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    "must be superuser or have privileges of the pg_read_server_files role to import a server file",
                    "bulk_import reads a file on the database server, like COPY FROM 'file'.",
                    "arrw.submit_job",
                );
            }
            Checked { rel: Some(rel) }
        }
        Spec::Export { .. } => {
            if !has_role("pg_write_server_files") {
                error_hint(
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    "must be superuser or have privileges of the pg_write_server_files role to export to a server file",
                    "bulk_export writes a file on the database server, like COPY TO 'file'.",
                    "arrw.submit_job",
                );
            }
            Checked { rel: None }
        }
        Spec::Delete { table, .. } | Spec::Update { table, .. } => {
            let rel = resolve(table);
            if rel.relkind == "p" {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!(
                        "{} does not support partitioned tables; submit one job per partition",
                        kind.name()
                    )
                );
            }
            if rel.relkind != "r" {
                wrong_object_type(format!("\"{table}\" is not a table"));
            }
            let privilege = if kind == JobKind::BatchDelete {
                "DELETE"
            } else {
                "UPDATE"
            };
            // SELECT too: each batch selects its rows by a range of `ctid`s,
            // which PostgreSQL checks as a read of the table, so a role with
            // only DELETE or UPDATE had its job accepted and fail every batch.
            if !has_table_privilege(&rel, privilege) || !has_table_privilege(&rel, "SELECT") {
                insufficient_privilege(format!("permission denied for table {}", rel.relname));
            }
            match spec {
                Spec::Delete { where_, .. } => analyze_batch(&rel, None, Some(where_)),
                Spec::Update { set, where_, .. } => {
                    analyze_batch(&rel, Some(set), where_.as_deref())
                }
                _ => {}
            }
            Checked { rel: Some(rel) }
        }
    }
}
