//! The small server interface the job code is written against: text-in/text-out SPI,
//! transactions in the worker, running code as another role, and running a
//! utility statement (REINDEX CONCURRENTLY) as a top-level command.
//!
//! Everything here runs on the backend's main thread only.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// Rows of a query, every value in its text form (`None` for SQL NULL).
pub struct Rows {
    pub rows: Vec<Vec<Option<String>>>,
    pub processed: u64,
}

impl Rows {
    /// Column `c` of the first row, if there is a first row and the value is not NULL.
    pub fn first(&self, c: usize) -> Option<&str> {
        self.rows
            .first()
            .and_then(|r| r.get(c))
            .and_then(|v| v.as_deref())
    }
}

fn c_string(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(_) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "string contains a NUL byte"
            );
        }
    }
}

/// Runs one SQL statement with text parameters (`$1::bigint` etc. cast them) and
/// returns its rows as text. Always read-write, so every call takes a fresh snapshot
/// in READ COMMITTED (what a poll loop needs).
pub fn query(sql: &str, params: &[Option<&str>]) -> Rows {
    let csql = c_string(sql);
    let cparams: Vec<Option<CString>> = params.iter().map(|p| p.map(c_string)).collect();
    // SAFETY: SPI_connect has no preconditions beyond a valid backend; it either
    // returns a status or raises an ERROR (which pgrx turns into a panic).
    let rc = unsafe { pg_sys::SPI_connect() };
    if rc != pg_sys::SPI_OK_CONNECT as i32 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("SPI_connect failed: {rc}")
        );
    }
    let n = cparams.len();
    let mut types = vec![pg_sys::TEXTOID; n];
    let mut values = Vec::with_capacity(n);
    let mut nulls: Vec<std::os::raw::c_char> = Vec::with_capacity(n);
    for p in &cparams {
        match p {
            Some(c) => {
                // SAFETY: `c` is a valid NUL-terminated string; the text is palloc'd
                // in the SPI procedure context, which lives until SPI_finish.
                let text = unsafe { pg_sys::cstring_to_text(c.as_ptr()) };
                values.push(pg_sys::Datum::from(text));
                nulls.push(b' ' as std::os::raw::c_char);
            }
            None => {
                values.push(pg_sys::Datum::from(0usize));
                nulls.push(b'n' as std::os::raw::c_char);
            }
        }
    }
    // SAFETY: the three arrays have `n` elements each and outlive the call; the
    // statement text is NUL-terminated.
    let rc = unsafe {
        pg_sys::SPI_execute_with_args(
            csql.as_ptr(),
            n as i32,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            false,
            0,
        )
    };
    if rc < 0 {
        // SAFETY: we are connected to SPI (above).
        unsafe { pg_sys::SPI_finish() };
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("SPI_execute failed ({rc}) for: {sql}")
        );
    }
    let mut out = Rows {
        rows: Vec::new(),
        processed: 0,
    };
    // SAFETY: after a successful SPI_execute, SPI_processed and SPI_tuptable describe
    // its result (SPI_tuptable is NULL for statements returning no rows); each
    // SPI_getvalue result is a palloc'd C string or NULL for SQL NULL.
    unsafe {
        out.processed = pg_sys::SPI_processed;
        let tt = pg_sys::SPI_tuptable;
        if !tt.is_null() {
            let tupdesc = (*tt).tupdesc;
            let natts = (*tupdesc).natts;
            for i in 0..(*tt).numvals as usize {
                let tuple = *(*tt).vals.add(i);
                let mut row = Vec::with_capacity(natts as usize);
                for c in 1..=natts {
                    let v = pg_sys::SPI_getvalue(tuple, tupdesc, c);
                    row.push(if v.is_null() {
                        None
                    } else {
                        Some(CStr::from_ptr(v).to_string_lossy().into_owned())
                    });
                }
                out.rows.push(row);
            }
        }
        pg_sys::SPI_finish();
    }
    out
}

/// Runs a statement, returning the rows it processed.
pub fn exec(sql: &str, params: &[Option<&str>]) -> u64 {
    query(sql, params).processed
}

/// The first column of the first row of a query.
pub fn one(sql: &str, params: &[Option<&str>]) -> Option<String> {
    query(sql, params).first(0).map(str::to_owned)
}

/// `true` if the query's first column of the first row is the boolean true.
pub fn flag(sql: &str, params: &[Option<&str>]) -> bool {
    one(sql, params).as_deref() == Some("t")
}

/// Runs `f` in a transaction of its own (worker only: there is no outer one).
/// If `f` raises an ERROR the transaction is left open; the caller's error handler
/// aborts it (see `worker::guarded`).
pub fn xact<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: the worker calls this between transactions, as PostgreSQL's own
    // background workers do (worker_spi); a snapshot is made active for SPI.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let r = f();
    // SAFETY: pops the snapshot pushed above (if a callee popped it already there is
    // nothing to pop) and commits the transaction started above.
    unsafe {
        if pg_sys::ActiveSnapshotSet() {
            pg_sys::PopActiveSnapshot();
        }
        pg_sys::CommitTransactionCommand();
    }
    r
}

/// Commits the current transaction without waiting for its WAL to reach disk
/// (`SET LOCAL synchronous_commit = off`). For a batch whose resume point is
/// written in the same transaction this loses nothing: a crash can only undo the
/// latest batches together with their resume points (WAL is replayed in order), and
/// the next attempt redoes them. The job's final state is committed synchronously,
/// which also makes every earlier batch durable.
pub fn async_commit() {
    // A LOCAL setting ends with the transaction.
    set_setting(
        c"synchronous_commit",
        c"off",
        pg_sys::GucAction::GUC_ACTION_LOCAL,
    );
}

/// Sets the user-settable `name` to `value` with `action` (session SET, LOCAL,
/// or SAVE until the current GUC nesting level closes), as the session would;
/// an invalid value is an ERROR.
fn set_setting(name: &CStr, value: &CStr, action: pg_sys::GucAction::Type) {
    // SAFETY: both strings are NUL-terminated and outlive the call; elevel 0
    // raises an ERROR on failure.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
}

/// Runs `f` with `trace_notify` off, restored after it (a GUC nesting level
/// of its own; transaction abort restores it on ERROR). Any role may turn
/// `trace_notify` on, and with it every NOTIFY its backend sends names its
/// channel in a DEBUG message to the client: the secret job channel
/// (`arrw.job_channel()`), notified from the caller's backend by submit and
/// cancel, must not be.
pub fn without_notify_trace<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: a new GUC nesting level in the current transaction; paired with
    // AtEOXact_GUC below (or unwound by transaction abort).
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    // GUC_ACTION_SAVE lasts until the nesting level closes.
    set_setting(c"trace_notify", c"off", pg_sys::GucAction::GUC_ACTION_SAVE);
    let r = f();
    // SAFETY: closes the nesting level opened above, exactly once.
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    r
}

/// The current user and security context.
pub fn user_and_context() -> (pg_sys::Oid, i32) {
    let mut uid = pg_sys::InvalidOid;
    let mut ctx = 0;
    // SAFETY: both out-pointers are valid locals.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut uid, &mut ctx) };
    (uid, ctx)
}

/// Sets the current user and security context (undone by transaction abort to the
/// values in effect when the (sub)transaction started).
pub fn set_user_and_context(uid: pg_sys::Oid, ctx: i32) {
    // SAFETY: plain assignment of backend globals; `uid` is a role OID the caller
    // looked up in this database's catalogs.
    unsafe { pg_sys::SetUserIdAndSecContext(uid, ctx) };
}

/// Runs `f` as role `role`, inside a security-restricted operation, with
/// `search_path` set to `search_path` for its duration (within the current
/// transaction). This is how PostgreSQL itself runs code on another role's behalf
/// (REFRESH MATERIALIZED VIEW, autovacuum's index expressions): the code has only
/// `role`'s privileges and cannot `SET ROLE`/`SET SESSION AUTHORIZATION`, create
/// temporary objects or leave any setting changed behind it.
///
/// Only the current user changes (`session_user` stays the session's): for
/// arrw's bookkeeping from a user's session ([`as_job_admin`]). A job's SQL
/// runs with [`as_role_with`] and `session_user` true.
///
/// On ERROR nothing is restored here: transaction (or subtransaction) abort restores
/// the user, security context and settings.
pub fn as_role<R>(
    role: pg_sys::Oid,
    search_path: &str,
    restricted: bool,
    f: impl FnOnce() -> R,
) -> R {
    as_role_with(role, search_path, &[], restricted, false, f)
}

/// [`as_role`], with `settings` (name, value) also set for `f`'s duration: a
/// job's SQL runs with the submitter's settings that change what it means
/// ([`JOB_SETTINGS`]).
///
/// With `session_user`, `role` is also the session user for `f`'s duration
/// (as after `SET LOCAL SESSION AUTHORIZATION`: `session_user`, and
/// `is_superuser` as `role`'s), in a job worker only: the worker connected
/// as the bootstrap superuser, and with only the current user changed a
/// job's SQL saw that superuser as `session_user` and `is_superuser = on`,
/// so a row-level security policy on `session_user` let a role's
/// batch_update read and change the superuser's rows, which the role cannot
/// see, and a `DEFAULT session_user` recorded the superuser (hunt-120). Set
/// before the security-restricted operation begins (PostgreSQL refuses to
/// change it inside one), as a setting of the nesting level below, so it
/// reverts with the others, after `f` or at (sub)transaction abort, giving
/// the worker its own session user back ([`set_session_user`]).
pub fn as_role_with<R>(
    role: pg_sys::Oid,
    search_path: &str,
    settings: &[(String, String)],
    restricted: bool,
    session_user: bool,
    f: impl FnOnce() -> R,
) -> R {
    let (uid, ctx) = user_and_context();
    // SAFETY: reading a backend global.
    let outer_session = unsafe { pg_sys::GetSessionUserId() };
    // SAFETY: a new GUC nesting level in the current transaction; paired with
    // AtEOXact_GUC below (or unwound by transaction abort).
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    if session_user {
        // GUC_ACTION_SAVE lasts until the nesting level closes.
        set_session_user(role, pg_sys::GucAction::GUC_ACTION_SAVE);
    }
    let mut new_ctx = ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
    if restricted {
        new_ctx |= pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
    }
    set_user_and_context(role, new_ctx);
    set_search_path(search_path, pg_sys::GucAction::GUC_ACTION_SAVE);
    for (name, value) in settings {
        set_setting(
            &c_string(name),
            &c_string(value),
            pg_sys::GucAction::GUC_ACTION_SAVE,
        );
    }
    let r = f();
    if session_user {
        // Out of the security-restricted operation first: giving the session
        // user back (below) makes it the current user too, which PostgreSQL
        // does only outside one.
        set_user_and_context(uid, ctx);
    }
    // Rolls back every setting changed inside the nesting level, SET and SET LOCAL
    // alike (isCommit = false), as PostgreSQL does after running index expressions
    // or a materialized view's query: code run for one job cannot change the
    // worker's settings for arrw's bookkeeping or for the next job. The session
    // user set above is one of them.
    // SAFETY: closes the nesting level opened above, exactly once.
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    set_user_and_context(uid, ctx);
    if session_user {
        check_session_user(outer_session);
    }
    r
}

/// Makes `role` the session user, as `SET [LOCAL] SESSION AUTHORIZATION` does
/// (`action`): the setting `session_authorization`, whose change also makes
/// `role` the current user and sets `is_superuser` to whether `role` is a
/// superuser. Only a session whose login role is a superuser may (the job
/// worker), and not inside a security-restricted operation or a
/// security-definer context (ERROR).
///
/// The value it reverts to (at the end of a nesting level, a transaction
/// abort, or [`reset_session_user`]) is the worker's own login role, kept
/// here on first use: a background worker connected without a role name
/// starts with no value, and reverting to none leaves the session user as
/// it is (the job's owner).
pub fn set_session_user(role: pg_sys::Oid, action: pg_sys::GucAction::Type) {
    // SAFETY: GetConfigOption returns the setting's current string or NULL
    // (its value before anything set it); it is only compared with NULL.
    let unset = unsafe {
        pg_sys::GetConfigOption(c"session_authorization".as_ptr(), false, false).is_null()
    };
    if unset {
        // As PostgreSQL records a backend's login role at connection
        // (InitializeSessionUserId): the value, and the one RESET and every
        // revert go back to, not undone by transaction abort.
        // SAFETY: inside a transaction (the name is read from the catalog,
        // and the setting's check reads it back); the name is a palloc'd
        // NUL-terminated string (an ERROR if the role does not exist).
        unsafe {
            let own = pg_sys::GetUserNameFromId(pg_sys::GetSessionUserId(), false);
            pg_sys::SetConfigOption(
                c"session_authorization".as_ptr(),
                own,
                pg_sys::GucContext::PGC_BACKEND,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            );
        }
    }
    // PGC_SUSET and PGC_S_SESSION are what a superuser's `SET SESSION
    // AUTHORIZATION` passes.
    // SAFETY: inside a transaction; the name is a palloc'd NUL-terminated string
    // (ERROR if the role is gone); elevel 0 raises an ERROR if refused.
    unsafe {
        let name = pg_sys::GetUserNameFromId(role, false);
        pg_sys::set_config_option(
            c"session_authorization".as_ptr(),
            name,
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
    // The setting names a role by name: one renamed meanwhile, and another
    // given its name, would be some other role.
    // SAFETY: reading a backend global.
    if unsafe { pg_sys::GetSessionUserId() } != role {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "could not make role {} the session user: it was renamed meanwhile",
                role.to_u32()
            )
        );
    }
}

/// Makes the session's login role its session user again, as `RESET SESSION
/// AUTHORIZATION` does (a session-level change, kept at commit). Needs no
/// transaction: the value was checked when [`set_session_user`] first kept
/// it. A no-op before that.
pub fn reset_session_user() {
    // SAFETY: a NULL value resets the setting to its reset value (no catalog
    // access); elevel 0 raises an ERROR if the setting is refused (inside a
    // security-restricted operation, which the caller has left).
    unsafe {
        pg_sys::set_config_option(
            c"session_authorization".as_ptr(),
            std::ptr::null(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            0,
            false,
        );
    }
}

/// After the worker gave itself its own session user back: it must be `want`,
/// or the worker would go on with a job owner's identity (FATAL: the process
/// exits, and the next worker requeues its job as a crashed attempt).
pub fn check_session_user(want: pg_sys::Oid) {
    // SAFETY: reading a backend global.
    let now = unsafe { pg_sys::GetSessionUserId() };
    if now != want {
        ereport!(
            FATAL,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!(
                "arrw job worker: session user is role {}, not role {}",
                now.to_u32(),
                want.to_u32()
            )
        );
    }
}

/// The bootstrap superuser with the safe search path: for arrw's own bookkeeping on
/// `arrw.job` from a user's session (submit/cancel), which the user cannot write.
pub fn as_job_admin<R>(f: impl FnOnce() -> R) -> R {
    as_role(
        pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
        SAFE_SEARCH_PATH,
        false,
        f,
    )
}

/// The search path arrw's own SQL runs with when it runs with elevated rights.
pub const SAFE_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// Sets `search_path` with the given action (session SET, LOCAL or SAVE).
pub fn set_search_path(value: &str, action: pg_sys::GucAction::Type) {
    set_setting(c"search_path", &c_string(value), action);
}

/// Settings that change what a job's SQL fragments and files mean: how
/// string literals read backslashes, how dates, times (and time zone
/// abbreviations), intervals, floats, byte strings, XML, money and numbers
/// are read and written, how identifiers are quoted, which text search
/// configuration `to_tsvector(text)` uses, and whether `x = NULL` means
/// `x IS NULL`. `submit_job` saves the submitter's values
/// and the worker runs the job's SQL with them (as it does `search_path`): a
/// `where` written under `standard_conforming_strings = off` was run under
/// `on` (`v = 'x\' OR true --'` matched one row at submit and deleted every
/// row in the job), a date under `DateStyle = 'ISO, DMY'` read as MDY
/// (hunt-83).
pub const JOB_SETTINGS: [&str; 17] = [
    "standard_conforming_strings",
    "backslash_quote",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "timezone_abbreviations",
    "default_text_search_config",
    "quote_all_identifiers",
    "transform_null_equals",
    "extra_float_digits",
    "bytea_output",
    "array_nulls",
    "xmloption",
    "xmlbinary",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
];

/// Makes every later transaction of this worker READ COMMITTED, read-write
/// and not deferrable, whatever the database's defaults (`ALTER DATABASE ...
/// SET default_transaction_*`). arrw's claims re-read the queue after waiting
/// for a lock, which a REPEATABLE READ snapshot taken before the wait does not
/// see (two batch jobs on one table then ran at once, and rows took one job's
/// update twice), and under `default_transaction_read_only` no job could be
/// claimed at all: workers started every second and failed (hunt-84). A job's
/// own SQL runs in these transactions too (an export sets its own read-only).
pub fn pin_worker_transactions() {
    for (name, value) in [
        (c"default_transaction_isolation", c"read committed"),
        (c"default_transaction_read_only", c"off"),
        (c"default_transaction_deferrable", c"off"),
    ] {
        set_setting(name, value, pg_sys::GucAction::GUC_ACTION_SET);
    }
}

/// The session's current value of each of [`JOB_SETTINGS`], and of every
/// custom or extension setting (a name with a dot, such as `app.tenant` or
/// `pg_trgm.similarity_threshold`) that any user may set and that is not at
/// its default, but arrw's own (`ivfpq.*`: search settings are not kept), as
/// a JSON object. Such settings change what SQL means as much as core ones:
/// a row-level security policy on `current_setting('app.tenant')` made a job
/// delete another tenant's rows, and `%` matched other rows at pg_trgm's
/// default threshold (hunt-108).
pub fn job_settings_json() -> String {
    let names: Vec<(String, Option<String>)> = JOB_SETTINGS
        .iter()
        .map(|n| (n.to_string(), None))
        .chain(custom_settings())
        .collect();
    let mut out = vec![b'{'];
    for (i, (name, exact)) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        arrw_core::cdc_json::push_key(&mut out, name);
        if let Some(exact) = exact {
            arrw_core::cdc_json::push_str(&mut out, exact.as_bytes());
            continue;
        }
        let cname = c_string(name);
        // SAFETY: a NUL-terminated name of a setting that exists (a built-in
        // one, or one custom_settings just found).
        let p = unsafe { pg_sys::GetConfigOption(cname.as_ptr(), false, false) };
        // A string setting with no value is NULL here (a placeholder back at
        // its default after a RESET: a NULL read here crashed the backend);
        // `current_setting` shows it as ''.
        let value: &[u8] = if p.is_null() {
            b""
        } else {
            // SAFETY: `p` is the setting's current NUL-terminated string,
            // valid until the setting changes; its bytes are copied at once.
            unsafe { CStr::from_ptr(p) }.to_bytes()
        };
        arrw_core::cdc_json::push_str(&mut out, value);
    }
    out.push(b'}');
    // A job runs with these values: changed on the way (a lossy conversion
    // made a LATIN1 database's "sché" into another name; hunt-104) they
    // would run it otherwise, so text arrw cannot keep is an ERROR.
    crate::fmgr::server_text(&out, "the session's settings a job keeps")
}

/// The custom and extension settings [`job_settings_json`] keeps, sorted by
/// name, each with its value when `GetConfigOption`'s would not do: a real is
/// printed there with 6 significant digits (`%g`), and a job ran at
/// `pg_trgm.similarity_threshold` 0.333333 for the session's 0.3333334,
/// deleting rows the session's `where` did not match (hunt-109). Read from
/// PostgreSQL's table of settings, not `pg_settings`, which leaves out
/// placeholders (`app.tenant` before any extension defines it: the usual
/// case). A placeholder is kept even at its default: once set it exists, and
/// `current_setting('app.x', true)` is `''` after a `RESET`, not NULL as in a
/// worker that never saw it (hunt-109).
fn custom_settings() -> Vec<(String, Option<String>)> {
    let mut names = Vec::new();
    // Each entry's name is a NUL-terminated string PostgreSQL owns, and a
    // PGC_REAL entry is a config_real whose variable points at its value.
    // SAFETY: PostgreSQL's own array of settings and count, on its thread.
    unsafe {
        let vars = pg_sys::get_guc_variables();
        for i in 0..pg_sys::GetNumConfigOptions().max(0) as usize {
            let v = &**vars.add(i);
            let name = CStr::from_ptr(v.name).to_bytes();
            let placeholder = v.flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 != 0;
            if name.contains(&b'.')
                && v.context == pg_sys::GucContext::PGC_USERSET
                && (placeholder || v.source != pg_sys::GucSource::PGC_S_DEFAULT)
                && !name.starts_with(b"ivfpq.")
                && !name.starts_with(b"arrw.")
            {
                let exact = (v.vartype == pg_sys::config_type::PGC_REAL).then(|| {
                    let r = &*(v as *const pg_sys::config_generic as *const pg_sys::config_real);
                    // Shortest text that reads back as the same f64.
                    format!("{:?}", *r.variable)
                });
                names.push((String::from_utf8_lossy(name).into_owned(), exact));
            }
        }
    }
    names.sort();
    names
}

/// The session's current `search_path` setting, as text.
pub fn current_search_path() -> String {
    // SAFETY: GetConfigOption returns a pointer to the setting's current string
    // (never NULL for a built-in setting with missing_ok = false).
    let p = unsafe { pg_sys::GetConfigOption(c"search_path".as_ptr(), false, false) };
    // Kept byte for byte or refused (see job_settings_json): a lossy copy
    // left out a schema, and a job deleted rows of a table of that name in
    // the next schema of the path (hunt-104).
    // SAFETY: `p` is the setting's NUL-terminated string; copied at once.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    crate::fmgr::server_text(bytes, "the session's search_path")
}

/// Parses `sql` with the raw grammar (no catalog access, no side effects) and
/// returns its statements' parse trees, and whether a statement was ended by a `;` (its
/// `stmt_len` is then set; the last statement without one runs to the end of
/// the string, `stmt_len` 0). The grammar drops empty statements, so `x;`
/// parses as the one statement `x`.
pub fn raw_parse_terminated(sql: &str) -> (Vec<*mut pg_sys::Node>, bool) {
    let c = c_string(sql);
    // SAFETY: raw_parser only reads the NUL-terminated string; it returns a List of
    // RawStmt (NIL for an empty string) or raises a syntax ERROR.
    unsafe {
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let raw: Vec<*mut pg_sys::RawStmt> = list_ptrs(list)
            .into_iter()
            .map(|p| p as *mut pg_sys::RawStmt)
            .collect();
        let terminated = raw.iter().any(|r| (**r).stmt_len != 0);
        (raw.iter().map(|r| (**r).stmt).collect(), terminated)
    }
}

/// Parses and analyzes `sql` (names resolved, types checked, as the current
/// user on the current `search_path`), without planning or running it: no
/// function is called, not even to fold a constant expression (`EXPLAIN` did,
/// and `1/0` in a job's `where` failed at submit; hunt-136). The relations it
/// names are locked as the statement would lock them.
pub fn analyze(sql: &str) {
    let c = c_string(sql);
    // The Query each analysis makes is left to the current memory context.
    // SAFETY: raw_parser reads the NUL-terminated string, returning RawStmts;
    // each is analyzed with that text and no parameters (ERROR on refusal).
    unsafe {
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        for raw in list_ptrs(list) {
            pg_sys::parse_analyze_fixedparams(
                raw as *mut pg_sys::RawStmt,
                c.as_ptr(),
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
            );
        }
    }
}

/// The pointer elements of a PostgreSQL `List` (NIL gives an empty vector).
///
/// # Safety
/// `list` must be NIL or a valid pointer List.
pub unsafe fn list_ptrs(list: *mut pg_sys::List) -> Vec<*mut std::ffi::c_void> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees a valid List; `elements` has `length` cells.
    unsafe {
        (0..(*list).length as usize)
            .map(|i| (*(*list).elements.add(i)).ptr_value)
            .collect()
    }
}

/// Length of a PostgreSQL `List` (0 for NIL).
///
/// # Safety
/// `list` must be NIL or a valid List.
pub unsafe fn list_len(list: *mut pg_sys::List) -> usize {
    if list.is_null() {
        0
    } else {
        // SAFETY: the caller guarantees a valid List.
        unsafe { (*list).length as usize }
    }
}

/// Node tag of a parse node.
///
/// # Safety
/// `node` must point to a valid Node.
pub unsafe fn tag(node: *mut pg_sys::Node) -> pg_sys::NodeTag {
    // SAFETY: every Node starts with its tag.
    unsafe { (*node).type_ }
}

/// Runs one utility statement (e.g. `REINDEX INDEX CONCURRENTLY`, which commits and
/// starts transactions of its own) as a top-level command, the way a client's simple
/// query would, as role `role` inside a security-restricted operation. Must be called
/// outside any transaction; returns outside any transaction.
///
/// The parse trees live in a memory context of their own that survives the
/// command's internal commits.
///
/// `role` is the session user too (see [`as_role_with`]): index expressions
/// evaluated by a REINDEX see it as `session_user`, with its
/// `is_superuser`. Set for the session, not the transaction: REINDEX
/// CONCURRENTLY commits after its first step, a transaction-local value
/// would revert there, and with it the current user, for the build that
/// follows, to the worker's superuser. It is set back here when the command
/// returns; when it raises an ERROR, by the caller (`worker::guarded`, with
/// [`reset_session_user`]).
pub fn toplevel_utility(sql: &str, role: pg_sys::Oid, search_path: &str) {
    let csql = c_string(sql);
    let (uid, ctx) = user_and_context();
    // SAFETY: reading a backend global.
    let outer_session = unsafe { pg_sys::GetSessionUserId() };
    // SAFETY: a fresh long-lived context under TopMemoryContext, deleted below (or,
    // on ERROR, leaked once: the worker exits or the error path resets).
    let mcx = unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"arrw job utility".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    };
    // SAFETY: starts a transaction like exec_simple_query does; the session-level
    // search_path set here is reset by the caller afterwards.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
    }
    set_search_path(search_path, pg_sys::GucAction::GUC_ACTION_SET);
    // Before the security-restricted operation, which refuses it.
    set_session_user(role, pg_sys::GucAction::GUC_ACTION_SET);
    set_user_and_context(
        role,
        ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
            | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
    );
    // The sequence of exec_simple_query + PortalRunUtility for one utility
    // statement: parse, analyze, plan in `mcx`; push a snapshot; ProcessUtility as
    // PROCESS_UTILITY_TOPLEVEL; pop the snapshot if the command did not.
    // SAFETY: all pointers passed are valid for the duration of the calls.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(mcx);
        let raw = pg_sys::pg_parse_query(csql.as_ptr());
        if list_len(raw) != 1 {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
                "expected exactly one statement"
            );
        }
        let rs = list_ptrs(raw)[0] as *mut pg_sys::RawStmt;
        let q = pg_sys::pg_analyze_and_rewrite_fixedparams(
            rs,
            csql.as_ptr(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        let plans = pg_sys::pg_plan_queries(
            q,
            csql.as_ptr(),
            pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
            std::ptr::null_mut(),
        );
        let pstmt = list_ptrs(plans)[0] as *mut pg_sys::PlannedStmt;
        let mut qc = pg_sys::QueryCompletion::default();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::ProcessUtility(
            pstmt,
            csql.as_ptr(),
            false,
            pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            pg_sys::None_Receiver,
            &mut qc,
        );
        if pg_sys::ActiveSnapshotSet() {
            pg_sys::PopActiveSnapshot();
        }
        let _ = old; // the transaction `old` belonged to may be gone; commit switches.
    }
    // Out of the security-restricted operation, then the worker's own session
    // user back (which makes it the current user too), then the saved user.
    set_user_and_context(uid, ctx);
    reset_session_user();
    set_user_and_context(uid, ctx);
    check_session_user(outer_session);
    // SAFETY: commits the transaction the command left open (CommitTransactionCommand
    // switches to TopMemoryContext), then frees the parse trees.
    unsafe {
        pg_sys::CommitTransactionCommand();
        pg_sys::MemoryContextDelete(mcx);
    }
}

/// Quotes a string as an SQL literal.
pub fn literal(s: &str) -> String {
    pgrx::spi::quote_literal(s)
}

/// Quotes an SQL identifier.
pub fn ident(s: &str) -> String {
    pgrx::spi::quote_identifier(s)
}
