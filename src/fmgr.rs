//! The function-manager (fmgr) glue shared by every SQL-callable function.
//!
//! arrw declares its SQL objects by hand in `sql/*.sql` (so that the `vector` type,
//! its functions and casts match pgvector's catalog definitions exactly) and
//! implements each function with PostgreSQL's "version 1" calling convention.
//! [`v1!`] writes the two symbols PostgreSQL looks up by name for such a function:
//! `pg_finfo_<name>` (the API-version record) and `<name>` itself, wrapped in
//! the same guard `#[pg_guard]` installs, so that a Rust panic or an `ereport(ERROR)` raised below it becomes
//! a normal PostgreSQL error instead of unwinding through C frames.
//!
//! The argument accessors here are the only place that reads `fcinfo` directly.

use pgrx::pg_sys;

/// Defines a V1 function callable from SQL as `AS 'MODULE_PATHNAME', '<name>'`.
///
/// The body receives `fcinfo` and returns a `Datum`. It runs under `#[pg_guard]`.
#[macro_export]
macro_rules! v1 {
    ($(#[$meta:meta])* fn $name:ident($fcinfo:ident) $body:block) => {
        paste::paste! {
            #[unsafe(no_mangle)]
            #[doc(hidden)]
            pub extern "C" fn [<pg_finfo_ $name>]() -> &'static pgrx::pg_sys::Pg_finfo_record {
                const V1_API: pgrx::pg_sys::Pg_finfo_record =
                    pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1_API
            }
        }

        $(#[$meta])*
        ///
        /// # Safety
        /// Only PostgreSQL's function manager calls this, with the call's own
        /// `fcinfo` and the argument types the SQL declaration gives.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name(
            $fcinfo: pgrx::pg_sys::FunctionCallInfo,
        ) -> pgrx::pg_sys::Datum {
            // `#[pg_guard]` itself cannot be applied to a macro_rules-generated fn
            // (its argument rewriting loses macro hygiene), so we call its guard.
            let body = move || -> pgrx::pg_sys::Datum { $body };
            // SAFETY: the body `#[pg_guard]` gives a function: it catches any Rust
            // panic (including pgrx's ereport) and re-raises it as a PostgreSQL ERROR
            // with longjmp once no Rust frame with destructors is left.
            unsafe { pgrx::pg_sys::submodules::panic::pgrx_extern_c_guard(body) }
        }
    };
}

/// The raw datum of argument `n`.
///
/// # Safety
/// `fcinfo` must be the call's own `FunctionCallInfo` and `n` less than its `nargs`
/// (guaranteed by the SQL declaration that binds the function).
#[inline(always)]
pub unsafe fn arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> pg_sys::Datum {
    // SAFETY: the caller guarantees fcinfo is live and has at least n+1 arguments.
    unsafe { pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, n) }
}

/// Argument `n` as an `int4`.
///
/// # Safety
/// As for [`arg`]; the SQL declaration must give argument `n` type `integer`.
#[inline(always)]
pub unsafe fn arg_i32(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> i32 {
    // SAFETY: as for `arg`; an int4 datum holds the value in its low 32 bits.
    unsafe { arg(fcinfo, n) }.value() as i32
}

/// Whether argument `n` is SQL NULL (only a non-STRICT function can see one).
///
/// # Safety
/// As for [`arg`].
#[inline(always)]
pub unsafe fn arg_is_null(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> bool {
    // SAFETY: the caller guarantees fcinfo is live and has at least n+1 arguments.
    unsafe { pgrx::fcinfo::pg_arg_is_null(fcinfo, n) }
}

/// Argument `n` as an `int8`.
///
/// # Safety
/// As for [`arg`]; the SQL declaration must give argument `n` type `bigint`
/// (pass-by-value on every 64-bit platform PostgreSQL 15 supports).
#[inline(always)]
pub unsafe fn arg_i64(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> i64 {
    // SAFETY: as for `arg`; a by-value int8 datum is the value itself.
    unsafe { arg(fcinfo, n) }.value() as i64
}

/// `text` argument `n` as a `String`, or `None` for SQL NULL.
///
/// # Safety
/// As for [`arg`]; the SQL declaration must give argument `n` type `text`.
pub unsafe fn arg_text(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<String> {
    // SAFETY: as for `arg`: the caller guarantees argument n exists.
    if unsafe { arg_is_null(fcinfo, n) } {
        return None;
    }
    // The caller guarantees argument n exists and is a non-NULL text.
    // SAFETY: pg_detoast_datum_packed returns it (or a palloc'd copy) as a
    // varlena whose VARSIZE_ANY_EXHDR bytes follow its header, copied here.
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(arg(fcinfo, n).cast_mut_ptr());
        let bytes = std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(v).cast::<u8>(),
            pgrx::varlena::varsize_any_exhdr(v),
        );
        Some(server_text(bytes, "its text arguments"))
    }
}

/// Text in the database's encoding as a Rust string. arrw passes such text
/// back to PostgreSQL byte for byte (SPI parameters, identifiers), so in a
/// database of another encoding it works on the bytes as they are, as long
/// as they also read as UTF-8 (ASCII always does); otherwise it is a clear
/// ERROR. pgrx's conversions panicked there (an internal error, XX000) on
/// any non-ASCII character of a LATIN1 database (hunt-46). `what` names the
/// text in the message ("its text arguments").
pub fn server_text(bytes: &[u8], what: &str) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            // SAFETY: reading the database's encoding name (a static string).
            let enc = unsafe { std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()) };
            crate::errors::error_hint(
                pgrx::PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
                format!(
                    "arrw reads {what} as UTF-8, and this one is not (the database's encoding \
                     is {})",
                    enc.to_string_lossy()
                ),
                "Use ASCII names and values, or a UTF-8 database.",
                "arrw",
            )
        }
    }
}

/// `jsonb` argument `n` as JSON text, or `None` for SQL NULL.
///
/// # Safety
/// As for [`arg`]; the SQL declaration must give argument `n` type `jsonb`.
///
/// PostgreSQL's own output function writes the text: pgrx's `JsonB` parses the
/// value with serde_json, whose numbers stop at `f64` and whose nesting stops
/// at 128 levels, and it panics (an internal error, XX000) on any valid
/// `jsonb` past either, such as `{"x": 1e400}` (hunt-46).
pub unsafe fn arg_jsonb_text(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<String> {
    // SAFETY: as for `arg`: the caller guarantees argument n exists.
    if unsafe { arg_is_null(fcinfo, n) } {
        return None;
    }
    // The caller guarantees argument n exists and is a non-NULL jsonb;
    // pg_detoast_datum returns it (or a palloc'd copy) as a 4-byte-header
    // varlena whose data is a JsonbContainer.
    // SAFETY: as said; JsonbToCString with a NULL StringInfo returns a
    // palloc'd NUL-terminated string, copied here.
    unsafe {
        let value = pg_sys::pg_detoast_datum(arg(fcinfo, n).cast_mut_ptr());
        let root = value
            .cast::<u8>()
            .add(pg_sys::VARHDRSZ)
            .cast::<pg_sys::JsonbContainer>();
        let text = pg_sys::JsonbToCString(std::ptr::null_mut(), root, -1);
        Some(server_text(
            std::ffi::CStr::from_ptr(text).to_bytes(),
            "its text arguments",
        ))
    }
}

/// `interval` argument `n`, borrowed for the call.
///
/// # Safety
/// As for [`arg`]; the SQL declaration must give argument `n` type `interval`
/// and it must not be NULL.
pub unsafe fn arg_interval<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> &'a pg_sys::Interval {
    // SAFETY: an interval datum points to a pg_sys::Interval that lives at least
    // as long as the call.
    unsafe { &*(arg(fcinfo, n).cast_mut_ptr::<pg_sys::Interval>()) }
}

/// Returns SQL NULL from a V1 function.
///
/// # Safety
/// `fcinfo` must be the call's own `FunctionCallInfo`.
#[inline]
pub unsafe fn return_null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the caller passes its own live fcinfo.
    unsafe { pgrx::fcinfo::pg_return_null(fcinfo) }
}

/// A `float8` result datum (pass-by-value on every 64-bit platform PostgreSQL 15 supports).
#[inline(always)]
pub fn float8(x: f64) -> pg_sys::Datum {
    pg_sys::Datum::from(x.to_bits())
}

/// An `int4` result datum.
#[inline(always)]
pub fn int4(x: i32) -> pg_sys::Datum {
    pg_sys::Datum::from(x)
}

/// A `boolean` result datum.
#[inline(always)]
pub fn boolean(x: bool) -> pg_sys::Datum {
    pg_sys::Datum::from(x)
}

/// A `text` result datum: `s` copied into a new palloc'd text.
pub fn text(s: &str) -> pg_sys::Datum {
    // SAFETY: cstring_to_text_with_len copies `s.len()` bytes from `s` (which
    // need not be NUL-terminated) into a new palloc'd text.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            s.as_ptr() as *const std::ffi::c_char,
            s.len() as i32,
        ))
    }
}
