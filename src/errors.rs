//! The errors arrw raises from Rust: every helper that turns a problem into
//! `ereport(ERROR)` (or a WARNING) with its SQLSTATE lives here, so that a message,
//! its hint and its code are written once.
//!
//! Errors whose texts are pgvector's or otherwise pure (`vector` input and
//! arithmetic, job arguments, COPY row splitting) are worded in `arrw_core`, which
//! has no server; the functions here map them to PostgreSQL's SQLSTATE codes.
//! `ereport!` can say code, message and detail; the `*_hint` helpers add a hint.
//! `function` arguments name the SQL-level operation in the report's location
//! (what `\set VERBOSITY verbose` shows).

use arrw_core::import::{ArgError, SplitError};
use arrw_core::text::{SqlState, VectorError};
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::PgLogLevel;

/// Raises ERROR `code` with `message`.
#[cold]
pub fn error(code: PgSqlErrorCode, message: String) -> ! {
    ereport!(ERROR, code, message);
}

/// Raises ERROR `code` with `message` and `hint`.
#[cold]
pub fn error_hint(
    code: PgSqlErrorCode,
    message: impl Into<String>,
    hint: impl Into<String>,
    function: &'static str,
) -> ! {
    ErrorReport::new(code, message.into(), function)
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!()
}

/// Raises ERROR `code` with `message`, `detail` and `hint`.
#[cold]
pub fn error_detail_hint(
    code: PgSqlErrorCode,
    message: impl Into<String>,
    detail: impl Into<String>,
    hint: impl Into<String>,
    function: &'static str,
) -> ! {
    ErrorReport::new(code, message.into(), function)
        .set_detail(detail)
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!()
}

/// Sends a WARNING with `hint` to the client and the log.
pub fn warning_hint(
    code: PgSqlErrorCode,
    message: impl Into<String>,
    hint: impl Into<String>,
    function: &'static str,
) {
    ErrorReport::new(code, message.into(), function)
        .set_hint(hint)
        .report(PgLogLevel::WARNING);
}

/// Sends a NOTICE with `hint`: advice goes in the hint, as PostgreSQL's own
/// messages put it (a NOTICE's detail is for facts).
pub fn notice_hint(message: impl Into<String>, hint: impl Into<String>, function: &'static str) {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        message.into(),
        function,
    )
    .set_hint(hint)
    .report(PgLogLevel::NOTICE);
}

/// 22023: a bad argument or option value.
#[cold]
pub fn invalid_parameter(message: impl Into<String>) -> ! {
    error(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message.into(),
    )
}

/// 22023 with an optional hint: a bad option of the change feed's output plugin.
#[cold]
pub fn invalid_option(message: String, hint: Option<String>) -> ! {
    match hint {
        Some(hint) => error_hint(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message,
            hint,
            "arrw output plugin",
        ),
        None => invalid_parameter(message),
    }
}

/// 42501: the current role may not do this.
#[cold]
pub fn insufficient_privilege(message: impl Into<String>) -> ! {
    error(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message.into(),
    )
}

/// 42809: a relation of the wrong kind (not an index, not a table).
#[cold]
pub fn wrong_object_type(message: impl Into<String>) -> ! {
    error(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, message.into())
}

/// The report of a caught error, whatever raised it.
pub fn report_of(e: &CaughtError) -> &pgrx::pg_sys::panic::ErrorReportWithLevel {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    }
}

/// The message (with its detail in parentheses) and SQLSTATE of a caught error.
pub fn describe(e: &CaughtError) -> (String, PgSqlErrorCode) {
    let report = report_of(e);
    let mut msg = report.message().to_string();
    if let Some(d) = report.detail() {
        msg.push_str(&format!(" ({d})"));
    }
    (msg, report.sql_error_code())
}

/// The two-character class of a SQLSTATE (`22` for data exceptions).
pub fn sqlstate_class(code: PgSqlErrorCode) -> [u8; 2] {
    let t = sqlstate_chars(code);
    [t[0], t[1]]
}

/// A SQLSTATE's five characters (`XX002`).
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    String::from_utf8_lossy(&sqlstate_chars(code)).into_owned()
}

fn sqlstate_chars(code: PgSqlErrorCode) -> [u8; 5] {
    // MAKE_SQLSTATE packs each character as six bits, the first lowest.
    let c = code as i32;
    std::array::from_fn(|i| b'0' + ((c >> (6 * i)) & 0x3F) as u8)
}

/// Raises a caught error again, with `more` after its detail (a sentence of
/// where it happened); its SQLSTATE, message and hint stay.
#[cold]
pub fn reraise_with_detail(e: &CaughtError, more: &str, function: &'static str) -> ! {
    reraise_as(e, report_of(e).sql_error_code(), more, function)
}

/// [`reraise_with_detail`] under another SQLSTATE, `code`.
pub fn reraise_as(e: &CaughtError, code: PgSqlErrorCode, more: &str, function: &'static str) -> ! {
    let report = report_of(e);
    let detail = match report.detail() {
        Some(d) => format!("{d} {more}"),
        None => more.to_string(),
    };
    let mut r = ErrorReport::new(code, report.message().to_string(), function).set_detail(detail);
    if let Some(h) = report.hint() {
        r = r.set_hint(h.to_string());
    }
    r.report(PgLogLevel::ERROR);
    unreachable!()
}

// ---------------------------------------------------------------------------
// `vector`
// ---------------------------------------------------------------------------

/// The PostgreSQL error code of an `arrw_core` SQLSTATE.
fn sqlstate(s: SqlState) -> PgSqlErrorCode {
    match s {
        SqlState::InvalidTextRepresentation => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        SqlState::DataException => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        SqlState::ProgramLimitExceeded => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        SqlState::NumericValueOutOfRange => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        SqlState::ProtocolViolation => PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
        SqlState::InvalidParameterValue => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        SqlState::InvalidBinaryRepresentation => {
            PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION
        }
        SqlState::NullValueNotAllowed => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        SqlState::DataCorrupted => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
    }
}

/// Raises a `vector` error from `arrw_core` as a PostgreSQL ERROR.
#[cold]
pub fn raise_vector(err: VectorError) -> ! {
    let code = sqlstate(err.sqlstate);
    match err.detail {
        Some(detail) => {
            ereport!(ERROR, code, err.message, detail);
        }
        None => {
            ereport!(ERROR, code, err.message);
        }
    }
}

/// Unwraps a result from `arrw_core`, raising its `vector` error.
#[inline]
pub fn check_vector<T>(r: Result<T, VectorError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => raise_vector(e),
    }
}

// ---------------------------------------------------------------------------
// Background jobs
// ---------------------------------------------------------------------------

/// Raises a job-argument problem found by `arrw_core::import` as 22023; an
/// unknown key gets a hint listing the `keys` a job of kind `kind` accepts.
#[cold]
pub fn job_argument(e: ArgError, kind: &str, keys: &[&str]) -> ! {
    match e {
        ArgError::UnknownKey(key) => error_hint(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown argument \"{key}\" for a {kind} job"),
            format!("Arguments of {kind} are: {}.", keys.join(", ")),
            "arrw.submit_job",
        ),
        ArgError::Invalid(msg) => invalid_parameter(msg),
    }
}

/// The SQLSTATE PostgreSQL's `errcode_for_file_access` gives an errno: 58P01
/// if the file does not exist, 42501 if the server may not, 42809 for a
/// directory where a file belongs (or the reverse), 53100 for a full disk,
/// 58030 otherwise.
pub fn file_error_code(e: &std::io::Error) -> PgSqlErrorCode {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
        PermissionDenied | ReadOnlyFilesystem => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        AlreadyExists => PgSqlErrorCode::ERRCODE_DUPLICATE_FILE,
        IsADirectory | NotADirectory | TooManyLinks => PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
        StorageFull => PgSqlErrorCode::ERRCODE_DISK_FULL,
        _ => PgSqlErrorCode::ERRCODE_IO_ERROR,
    }
}

/// A failed file operation (`what`: "open", "read", ...) on `path`, with
/// [`file_error_code`]'s SQLSTATE.
#[cold]
pub fn file_io(what: &str, path: &str, e: &std::io::Error) -> ! {
    error(
        file_error_code(e),
        format!("could not {what} file \"{path}\": {e}"),
    )
}

/// 22P04: the file a bulk_import reads is not what its COPY options say.
#[cold]
pub fn bad_copy_file(message: impl Into<String>) -> ! {
    error(PgSqlErrorCode::ERRCODE_BAD_COPY_FILE_FORMAT, message.into())
}

/// Raises what cutting the rows of `path` found: a row over the length limit
/// (54000), or malformed data (22P04). `at` says where (see
/// [`import_row_detail`]); `None` inside a binary file's header.
#[cold]
pub fn import_split(path: &str, e: &SplitError, at: Option<(u64, u64)>) -> ! {
    let (code, message, hint) = match e {
        SplitError::RowTooLong { limit } => (
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("a row of file \"{path}\" is longer than {limit} bytes"),
            Some("arrw.job_import_max_row_size sets the limit (at most 1 GB, the longest row COPY can hold)."),
        ),
        e => (
            PgSqlErrorCode::ERRCODE_BAD_COPY_FILE_FORMAT,
            format!("file \"{path}\": {e}"),
            e.hint(),
        ),
    };
    let mut r = ErrorReport::new(code, message, "bulk_import");
    if let Some((row, loaded)) = at {
        r = r.set_detail(import_row_detail(row, loaded));
    }
    if let Some(h) = hint {
        r = r.set_hint(h);
    }
    r.report(PgLogLevel::ERROR);
    unreachable!()
}

/// Where a bulk_import failed: `row` of the file (1-based, a header not
/// counted), with the `loaded` rows before it that the job committed.
pub fn import_row_detail(row: u64, loaded: u64) -> String {
    format!("At row {row} of the file; {}", loaded_rows(loaded))
}

/// Where a bulk_import failed when the row is not known: the batch of rows
/// `first` to `last` of the file, with the `loaded` rows the job committed.
pub fn import_batch_detail(first: u64, last: u64, loaded: u64) -> String {
    format!(
        "In rows {first} to {last} of the file, loaded in one batch; {}",
        loaded_rows(loaded)
    )
}

/// The rows of its file a bulk_import committed, as a clause of a detail.
fn loaded_rows(loaded: u64) -> String {
    match loaded {
        0 => "the job loaded no row.".to_string(),
        1 => "the job loaded row 1.".to_string(),
        n => format!("the job loaded rows 1 to {n}."),
    }
}

/// 42809: bulk_import was given something other than a regular file.
#[cold]
pub fn not_regular_file(path: &str, m: &std::fs::Metadata) -> ! {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    error_hint(
        PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
        format!("\"{path}\" is not a regular file ({what})"),
        "bulk_import reads regular files only.",
        "bulk_import",
    )
}
