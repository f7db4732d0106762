//! The `arrw` logical decoding output plugin: one JSON object per row change.
//!
//! PostgreSQL finds it by loading the library named like the plugin (`arrw`)
//! and calling [`_PG_output_plugin_init`], which fills in the callbacks below.
//! Each callback runs inside the decoding machinery (a `pg_logical_slot_*`
//! call or a walsender), one committed transaction at a time, in commit order.
//!
//! Memory: the session state ([`State`]) is a Rust `Box` owned by the decoding
//! context; a reset callback on `ctx->context` frees it also when decoding ends
//! with an ERROR (when `shutdown_cb` is not called). Everything PostgreSQL
//! allocates for one event (output-function strings, detoasted values, names)
//! goes into a private memory context that is reset after the event, and the
//! JSON is built in one `Vec<u8>` reused across events.
//!
//! Who wrote a message: any role can write a logical decoding message with any
//! prefix (`pg_logical_emit_message` is executable by PUBLIC), so the prefix
//! proves nothing. What only arrw can write are the tables `arrw.job` and
//! `arrw.job_cancel`. A message is marked `"origin":"arrw"` only when its
//! content is, byte for byte, the job event (`super::job_event_content`) for
//! the latest version of an `arrw.job` row that the same transaction wrote
//! before the message, or the `cancelled` event of a job whose cancellation
//! request (an `arrw.job_cancel` row with `announced_kind`, which
//! `arrw.cancel_job` writes when it cancels a queued job its own transaction
//! submitted) the same transaction
//! inserted before the message; every other message is `"origin":"user"`. A
//! message marked "arrw" therefore always tells the truth about the
//! transaction that carries it, whoever sent it.

use super::json::{self, TextEncoding};
use super::options::{parse_options, Options, MAX_IDENTIFIER_BYTES};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write;

/// The plugin's per-session state, `ctx->output_plugin_private`.
struct State {
    opts: Options,
    /// The database's encoding as the JSON code needs it: in a UTF-8 database
    /// strings escape U+0085, U+2028 and U+2029 too (`cdc_json`).
    enc: TextEncoding,
    /// Per-event memory context (child of `ctx->context`), reset after each event.
    cxt: pg_sys::MemoryContext,
    /// The JSON of the event being built (kept for its capacity).
    buf: Vec<u8>,
    /// How each column type is rendered, by type OID.
    types: HashMap<pg_sys::Oid, TypeInfo>,
    /// Whether the `begin` event of the transaction being decoded has been
    /// written (it is written before the transaction's first event, so that
    /// transactions with nothing to report produce no output at all).
    begun: bool,
    /// The reset callback that frees this state; disarmed by `shutdown`.
    free_cb: *mut pg_sys::MemoryContextCallback,
    /// For each `arrw.job` row the transaction being decoded has inserted or
    /// updated so far (and each job whose cancellation it announced through
    /// `arrw.job_cancel`): the job id and the job event content its latest
    /// version stands for. Cleared at each transaction's begin and commit.
    jobs: Vec<(i64, Vec<u8>)>,
    /// Whether a relation named `arrw.job` or `arrw.job_cancel` is arrw's own
    /// (a member of extension arrw), by relation OID, once checked.
    job_rels: HashMap<pg_sys::Oid, bool>,
}

/// How values of one type become JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColumnKind {
    Int2,
    Int4,
    Oid,
    /// int8: a string, since many JSON readers hold numbers in doubles.
    Int8,
    /// float4/float8: a number when finite, else the string `"NaN"`, `"Infinity"`...
    Float,
    /// numeric: a string, to keep every digit.
    Numeric,
    Bool,
    /// json/jsonb: embedded as JSON.
    Json,
    /// bytea: `"\\x..."` whatever `bytea_output` says.
    Bytea,
    /// date, time, timetz, timestamp, timestamptz: ISO 8601 strings, whatever
    /// `DateStyle` says (the base type OID is what `JsonEncodeDateTime` needs).
    DateTime(pg_sys::Oid),
    /// arrw's `vector` and `halfvec` and pgvector's `vector`, `halfvec` and
    /// `sparsevec` (recognised by extension membership, not by name alone; see
    /// [`is_vector_type`]): omitted unless `include-vectors`; then a JSON array
    /// of numbers.
    Vector,
    /// An array of one of those (`vector[]`, a MaxSim column; the element type
    /// is given): omitted unless `include-vectors`, as a vector is; then JSON
    /// arrays nested as the array's dimensions, of the vectors as JSON arrays
    /// (`null` for a NULL element).
    VectorArray(ElemInfo),
    /// Everything else: the output function's text as a JSON string.
    Text,
}

#[derive(Clone, Copy, Debug)]
struct TypeInfo {
    kind: ColumnKind,
    output: pg_sys::Oid,
}

/// How to read and render the elements of an array column, looked up once per
/// type (with the rest of [`TypeInfo`]), not once per value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ElemInfo {
    typid: pg_sys::Oid,
    len: i16,
    byval: bool,
    align: c_char,
    output: pg_sys::Oid,
}

/// Names of types whose columns count as vectors, when they belong to
/// extension `arrw` or `vector` ([`is_vector_type`]).
const VECTOR_TYPES: [&[u8]; 3] = [b"vector", b"halfvec", b"sparsevec"];

/// Fills in the plugin's callbacks; PostgreSQL looks this symbol up by name in
/// the library named by the slot's plugin.
///
/// # Safety
/// Called by PostgreSQL with a valid, zeroed `OutputPluginCallbacks`.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn _PG_output_plugin_init(cb: *mut pg_sys::OutputPluginCallbacks) {
    // SAFETY: PostgreSQL passes the struct to fill (LoadOutputPlugin).
    let cb = unsafe { &mut *cb };
    cb.startup_cb = Some(startup);
    cb.begin_cb = Some(begin);
    cb.change_cb = Some(change);
    cb.truncate_cb = Some(truncate);
    cb.message_cb = Some(message);
    cb.commit_cb = Some(commit);
    cb.shutdown_cb = Some(shutdown);
}

/// The state stored by `startup`.
///
/// # Safety
/// `ctx` must be a decoding context whose `startup` callback has run.
unsafe fn state<'a>(ctx: *mut pg_sys::LogicalDecodingContext) -> &'a mut State {
    // SAFETY: startup stores a Box<State> there, and it stays until shutdown or
    // until ctx->context is deleted; callbacks only run in between.
    unsafe { &mut *((*ctx).output_plugin_private as *mut State) }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup(
    ctx: *mut pg_sys::LogicalDecodingContext,
    opt: *mut pg_sys::OutputPluginOptions,
    _is_init: bool,
) {
    // Options first: an ERROR here leaves nothing allocated behind.
    // SAFETY: ctx is the live decoding context; its option list is a List of
    // DefElem (possibly NIL) built by the SQL function or the walsender.
    let list = unsafe { (*ctx).output_plugin_options };
    let n = if list.is_null() {
        0
    } else {
        // SAFETY: a non-NIL List.
        unsafe { (*list).length as usize }
    };
    let mut given: Vec<(String, Option<&[u8]>)> = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: i < length, and each cell of this list points to a DefElem.
        let def = unsafe { &*((*(*list).elements.add(i)).ptr_value as *const pg_sys::DefElem) };
        // SAFETY: defname is a NUL-terminated option name.
        let name = unsafe { CStr::from_ptr(def.defname) }
            .to_string_lossy()
            .into_owned();
        let value: Option<&[u8]> = if def.arg.is_null() {
            None
        } else {
            // SAFETY: arg is a Node; option values are String nodes (makeString),
            // which live as long as the option list (the decoding context).
            unsafe {
                if (*def.arg).type_ != pg_sys::NodeTag::T_String {
                    crate::errors::invalid_option(
                        format!("option \"{name}\" must have a string value"),
                        None,
                    );
                }
                Some(CStr::from_ptr((*(def.arg as *const pg_sys::String)).sval).to_bytes())
            }
        };
        given.push((name, value));
    }
    // Table and schema names are truncated as SQL truncates identifiers
    // (truncate_identifier: NAMEDATALEN - 1 bytes, at a character boundary of
    // the database encoding).
    let clip = |name: &[u8]| -> usize {
        let max = MAX_IDENTIFIER_BYTES;
        if name.len() <= max {
            return name.len();
        }
        // SAFETY: name is name.len() readable bytes without NUL (from a C
        // string); pg_mbcliplen reads at most up to `max` bytes of them.
        let keep = unsafe {
            pg_sys::pg_mbcliplen(
                name.as_ptr() as *const c_char,
                c_int::try_from(name.len()).unwrap_or(c_int::MAX),
                max as c_int,
            )
        };
        (keep.max(0) as usize).min(max)
    };
    let opts = match parse_options(given.iter().map(|(n, v)| (n.as_str(), *v)), &clip) {
        Ok(o) => o,
        Err(e) => crate::errors::invalid_option(e.message, e.hint),
    };

    // SAFETY: opt is the options struct PostgreSQL passes for us to fill.
    unsafe {
        (*opt).output_type = pg_sys::OutputPluginOutputType::OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
        (*opt).receive_rewrites = false;
    }

    // SAFETY: ctx->context lives as long as the decoding session; the child
    // context and the callback struct allocated in it die with it.
    let (cxt, free_cb) = unsafe {
        let cxt = pg_sys::AllocSetContextCreateInternal(
            (*ctx).context,
            c"arrw change feed event".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let cb = pg_sys::MemoryContextAllocZero(
            (*ctx).context,
            std::mem::size_of::<pg_sys::MemoryContextCallback>(),
        ) as *mut pg_sys::MemoryContextCallback;
        (cxt, cb)
    };
    // SAFETY: reads the encoding of the database this backend is connected
    // to (decoding runs connected to the slot's database).
    let enc = if unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as c_int {
        TextEncoding::Utf8
    } else {
        TextEncoding::Other
    };
    let st = Box::into_raw(Box::new(State {
        opts,
        enc,
        cxt,
        buf: Vec::with_capacity(1024),
        types: HashMap::new(),
        begun: false,
        free_cb,
        jobs: Vec::new(),
        job_rels: HashMap::new(),
    }));
    // SAFETY: free_cb is a zeroed MemoryContextCallback in ctx->context; once
    // registered, deleting or resetting ctx->context calls free_state(st) once.
    unsafe {
        (*free_cb).func = Some(free_state);
        (*free_cb).arg = st.cast();
        pg_sys::MemoryContextRegisterResetCallback((*ctx).context, free_cb);
        (*ctx).output_plugin_private = st.cast();
    }
}

/// Frees the state when the decoding context's memory goes away.
#[pg_guard]
unsafe extern "C-unwind" fn free_state(arg: *mut c_void) {
    if !arg.is_null() {
        // SAFETY: arg is the pointer Box::into_raw returned in startup, and the
        // callback runs at most once (shutdown disarms it when it frees first).
        drop(unsafe { Box::from_raw(arg as *mut State) });
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shutdown(ctx: *mut pg_sys::LogicalDecodingContext) {
    // SAFETY: ctx is live; the private pointer is ours (or null if startup failed).
    unsafe {
        let st = (*ctx).output_plugin_private as *mut State;
        if st.is_null() {
            return;
        }
        (*ctx).output_plugin_private = std::ptr::null_mut();
        (*(*st).free_cb).arg = std::ptr::null_mut();
        drop(Box::from_raw(st));
    }
}

/// Switches into the per-event memory context; switching back and resetting it
/// happen on drop, also when an ERROR unwinds through the callback.
struct EventMemory {
    old: pg_sys::MemoryContext,
    cxt: pg_sys::MemoryContext,
}

impl EventMemory {
    fn enter(cxt: pg_sys::MemoryContext) -> EventMemory {
        // SAFETY: cxt is the live per-event context created in startup.
        let old = unsafe { pg_sys::MemoryContextSwitchTo(cxt) };
        EventMemory { old, cxt }
    }
}

impl Drop for EventMemory {
    fn drop(&mut self) {
        // SAFETY: both contexts are live (old is the caller's context, which
        // outlives this callback); nothing allocated in cxt is used after this.
        unsafe {
            pg_sys::MemoryContextSwitchTo(self.old);
            pg_sys::MemoryContextReset(self.cxt);
        }
    }
}

/// Pins `extra_float_digits` at its default (1: the shortest text that reads
/// back as the same value) while an event is rendered, and restores the
/// session's value on drop, also when an ERROR unwinds. `real` and `double
/// precision` values, and floats inside arrays, composites and ranges, are
/// rendered by their types' output functions, which read it: a reading session
/// with `extra_float_digits = -15` got `0.3` for `1/3` (docs/cdc.md, "Values").
struct DefaultFloatDigits(c_int);

impl DefaultFloatDigits {
    fn pin() -> DefaultFloatDigits {
        // SAFETY: a backend global, read and written on the backend's own
        // thread (the GUC's variable; float4out/float8out read it).
        unsafe {
            let saved = pg_sys::extra_float_digits;
            pg_sys::extra_float_digits = 1;
            DefaultFloatDigits(saved)
        }
    }
}

impl Drop for DefaultFloatDigits {
    fn drop(&mut self) {
        // SAFETY: as in `pin`: restores the value read there.
        unsafe { pg_sys::extra_float_digits = self.0 };
    }
}

/// Hands one finished event to PostgreSQL.
///
/// # Safety
/// `ctx` must be the live decoding context of the running callback.
unsafe fn emit(ctx: *mut pg_sys::LogicalDecodingContext, event: &[u8]) {
    let Ok(len) = c_int::try_from(event.len()) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("arrw change event of {} bytes is too large", event.len())
        );
    };
    // SAFETY: the documented output-plugin write protocol; ctx->out is the
    // StringInfo prepared by OutputPluginPrepareWrite, and appendBinaryStringInfo
    // copies exactly `len` bytes from `event`.
    unsafe {
        pg_sys::OutputPluginPrepareWrite(ctx, true);
        pg_sys::appendBinaryStringInfo((*ctx).out, event.as_ptr() as *const c_char, len);
        pg_sys::OutputPluginWrite(ctx, true);
    }
}

/// Builds one event with `build` in `buf` (the state's buffer, reused for its
/// capacity) and hands it to PostgreSQL.
///
/// # Safety
/// As for [`emit`].
unsafe fn emit_event(
    ctx: *mut pg_sys::LogicalDecodingContext,
    buf: &mut Vec<u8>,
    build: impl FnOnce(&mut Vec<u8>),
) {
    buf.clear();
    build(buf);
    // SAFETY: forwarded.
    unsafe { emit(ctx, buf) };
}

/// Appends `"commit_time":"..."` (ISO 8601, in the session's TimeZone).
///
/// # Safety
/// Must run in a memory context that is reset soon (the text is palloc'd).
unsafe fn push_commit_time(out: &mut Vec<u8>, txn: *mut pg_sys::ReorderBufferTXN) {
    // SAFETY: txn is live; outside prepared transactions xact_time holds the
    // commit time, known before any callback of the transaction runs.
    let ts = unsafe { (*txn).xact_time.commit_time };
    json::push_key(out, "commit_time");
    // SAFETY: JsonEncodeDateTime with a NULL buffer pallocs and returns a
    // NUL-terminated ISO 8601 string for a timestamptz datum.
    let s = unsafe {
        CStr::from_ptr(pg_sys::JsonEncodeDateTime(
            std::ptr::null_mut(),
            pg_sys::Datum::from(ts),
            pg_sys::TIMESTAMPTZOID,
            std::ptr::null(),
        ))
    };
    json::push_str(out, s.to_bytes());
}

/// Writes the transaction's `begin` event if `include-transaction` asks for it
/// and it has not been written yet.
///
/// # Safety
/// As for the callbacks: live `ctx` and `txn`, inside the event memory context.
unsafe fn ensure_begin(
    ctx: *mut pg_sys::LogicalDecodingContext,
    st: &mut State,
    txn: *mut pg_sys::ReorderBufferTXN,
) {
    if !st.opts.include_transaction || st.begun || txn.is_null() {
        return;
    }
    st.begun = true;
    // SAFETY: txn is live for the whole transaction's replay.
    let (first, fin) = unsafe { ((*txn).first_lsn, (*txn).final_lsn) };
    // SAFETY: forwarded.
    unsafe { emit_txn_event(ctx, st, txn, "begin", [("lsn", first), ("commit_lsn", fin)]) };
}

/// Writes a `begin` or `commit` event: `{"op":op,"xid":..,k1:lsn1,k2:lsn2,"commit_time":..}`.
///
/// # Safety
/// As for the callbacks: live `ctx` and `txn`, inside the event memory context.
unsafe fn emit_txn_event(
    ctx: *mut pg_sys::LogicalDecodingContext,
    st: &mut State,
    txn: *mut pg_sys::ReorderBufferTXN,
    op: &str,
    lsns: [(&str, pg_sys::XLogRecPtr); 2],
) {
    let event = |out: &mut Vec<u8>| {
        // SAFETY: txn is live (caller's contract).
        let xid = unsafe { (*txn).xid };
        let _ = write!(out, "{{\"op\":\"{op}\",\"xid\":{},", xid.into_inner());
        for (key, lsn) in lsns {
            json::push_key(out, key);
            json::push_lsn(out, lsn);
            out.push(b',');
        }
        // SAFETY: forwarded; we are inside the event memory context.
        unsafe { push_commit_time(out, txn) };
        out.push(b'}');
    };
    // SAFETY: live ctx (the running callback's).
    unsafe { emit_event(ctx, &mut st.buf, event) };
}

#[pg_guard]
unsafe extern "C-unwind" fn begin(
    ctx: *mut pg_sys::LogicalDecodingContext,
    _txn: *mut pg_sys::ReorderBufferTXN,
) {
    // SAFETY: startup has run.
    let st = unsafe { state(ctx) };
    st.begun = false;
    st.jobs.clear();
}

#[pg_guard]
unsafe extern "C-unwind" fn commit(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    commit_lsn: pg_sys::XLogRecPtr,
) {
    // SAFETY: startup has run.
    let st = unsafe { state(ctx) };
    st.jobs.clear();
    let begun = std::mem::replace(&mut st.begun, false);
    if !st.opts.include_transaction || !begun {
        return;
    }
    let _mem = EventMemory::enter(st.cxt);
    // SAFETY: txn is live during its commit callback.
    let end = unsafe { (*txn).end_lsn };
    // SAFETY: live ctx and txn, inside the event memory context.
    unsafe {
        emit_txn_event(
            ctx,
            st,
            txn,
            "commit",
            [("lsn", commit_lsn), ("end_lsn", end)],
        )
    };
}

/// The relation's schema and name (the schema name is palloc'd in the current
/// memory context).
///
/// # Safety
/// `rel` must be an open relation; the result lives until the event memory is reset.
unsafe fn rel_names<'a>(rel: pg_sys::Relation) -> (&'a [u8], &'a [u8]) {
    // SAFETY: rd_rel is the relation's pg_class row, valid while it is open;
    // get_namespace_name returns a palloc'd copy (or NULL if the schema is gone).
    unsafe {
        let class = &*(*rel).rd_rel;
        let nsp = pg_sys::get_namespace_name(class.relnamespace);
        let nsp: &[u8] = if nsp.is_null() {
            b""
        } else {
            CStr::from_ptr(nsp).to_bytes()
        };
        let name = CStr::from_ptr(class.relname.data.as_ptr()).to_bytes();
        (nsp, name)
    }
}

fn table_wanted(opts: &Options, nsp: &[u8], name: &[u8]) -> bool {
    match &opts.tables {
        None => true,
        Some(list) => list.iter().any(|p| p.matches(nsp, name)),
    }
}

/// `{"op":"<op>","table":"<nsp>.<name>","lsn":"...","xid":N`
fn push_header(
    out: &mut Vec<u8>,
    enc: TextEncoding,
    op: &str,
    nsp: &[u8],
    name: &[u8],
    lsn: u64,
    xid: u32,
) {
    out.extend_from_slice(b"{\"op\":\"");
    out.extend_from_slice(op.as_bytes());
    out.extend_from_slice(b"\",");
    json::push_key(out, "table");
    let mut qualified = Vec::with_capacity(nsp.len() + name.len() + 1);
    qualified.extend_from_slice(nsp);
    qualified.push(b'.');
    qualified.extend_from_slice(name);
    json::push_str_in(out, &qualified, enc);
    out.push(b',');
    json::push_key(out, "lsn");
    json::push_lsn(out, lsn);
    let _ = write!(out, ",\"xid\":{xid}");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Update,
    Delete,
}

/// The decoded columns of one tuple.
struct Deformed {
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
}

/// # Safety
/// `buf` must be a live tuple of `desc`'s relation; the datums point into it.
unsafe fn deform(desc: pg_sys::TupleDesc, buf: *mut pg_sys::ReorderBufferTupleBuf) -> Deformed {
    // SAFETY: desc is the relation's descriptor, buf a tuple decoded for it.
    unsafe {
        let natts = (*desc).natts as usize;
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![true; natts];
        pg_sys::heap_deform_tuple(
            &mut (*buf).tuple,
            desc,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        Deformed { values, nulls }
    }
}

/// Which columns of a tuple an object shows.
enum Pick {
    /// Every column (the row; a REPLICA IDENTITY FULL key).
    All,
    /// The columns of the replica identity index (`RelationGetIdentityKeyBitmap`).
    Key(*mut pg_sys::Bitmapset),
}

/// A column's name, as the bytes of its `NameData` (the one place the feed reads
/// `attname`).
fn att_name(att: &pg_sys::FormData_pg_attribute) -> &[u8] {
    // SAFETY: attname is a NameData the catalog keeps NUL-terminated within its
    // NAMEDATALEN bytes, and it lives as long as `att`.
    unsafe { CStr::from_ptr(att.attname.data.as_ptr()) }.to_bytes()
}

/// Appends `,"key":["col",...]`: the names of the columns `flags` marks, if
/// any.
fn push_names(
    out: &mut Vec<u8>,
    enc: TextEncoding,
    key: &str,
    attrs: &[pg_sys::FormData_pg_attribute],
    flags: &[bool],
) {
    if !flags.iter().any(|&f| f) {
        return;
    }
    json::push_key_after_comma(out, key);
    out.push(b'[');
    let mut first = true;
    for (att, _) in attrs.iter().zip(flags).filter(|(_, &f)| f) {
        if !first {
            out.push(b',');
        }
        first = false;
        json::push_str_in(out, att_name(att), enc);
    }
    out.push(b']');
}

/// Columns [`push_object`] flags, by attribute index: left out of the object
/// (`omitted`), or shown with the marker of a value decoding does not have
/// (`unchanged`).
struct Marks<'a> {
    omitted: &'a mut [bool],
    unchanged: &'a mut [bool],
}

/// How [`push_object`] writes values: with vector columns or not
/// (`include-vectors`), and for which database encoding.
#[derive(Clone, Copy)]
struct Render {
    include_vectors: bool,
    enc: TextEncoding,
}

/// Appends `{"col":value,...}`. Vector columns are skipped (and flagged in
/// `omitted`) unless `include-vectors` is on or they are part of an index key;
/// columns whose value decoding does not have (unchanged TOAST) are flagged in
/// `unchanged`.
///
/// # Safety
/// `desc` must describe `tuple`; inside the event memory context.
unsafe fn push_object(
    out: &mut Vec<u8>,
    types: &mut HashMap<pg_sys::Oid, TypeInfo>,
    render: Render,
    desc: pg_sys::TupleDesc,
    tuple: &Deformed,
    pick: &Pick,
    marks: Marks<'_>,
) {
    // SAFETY: desc has natts attributes.
    let attrs = unsafe { (*desc).attrs.as_slice((*desc).natts as usize) };
    out.push(b'{');
    let mut first = true;
    for (i, att) in attrs.iter().enumerate() {
        if att.attisdropped || att.attnum <= 0 {
            continue;
        }
        if let Pick::Key(bms) = pick {
            // SAFETY: bms is the identity bitmap (offset by
            // FirstLowInvalidHeapAttributeNumber, as relcache builds it).
            let member = unsafe {
                pg_sys::bms_is_member(
                    att.attnum as i32 - pg_sys::FirstLowInvalidHeapAttributeNumber,
                    *bms,
                )
            };
            if !member {
                continue;
            }
        }
        // SAFETY: a type of a live column.
        let info = unsafe { type_info(types, att.atttypid) };
        let vectors = matches!(info.kind, ColumnKind::Vector | ColumnKind::VectorArray(..));
        if vectors && !render.include_vectors && matches!(pick, Pick::All) {
            marks.omitted[i] = true;
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        json::push_str_in(out, att_name(att), render.enc);
        out.push(b':');
        // SAFETY: the datum belongs to this column of a live tuple.
        marks.unchanged[i] =
            unsafe { push_value(out, render.enc, info, att, tuple.values[i], tuple.nulls[i]) };
    }
    out.push(b'}');
}

/// Whether a varlena datum is an on-disk TOAST pointer (an unchanged toasted
/// value in the new tuple of an update: logical decoding does not have it).
///
/// # Safety
/// `p` must point to a varlena.
unsafe fn is_external_ondisk(p: *const pg_sys::varlena) -> bool {
    // SAFETY: reading the header byte(s) of a varlena.
    unsafe {
        pgrx::varlena::varatt_is_1b_e(p)
            && pgrx::varlena::vartag_external(p) == pg_sys::vartag_external::VARTAG_ONDISK as u8
    }
}

/// Appends one column value as JSON; true when it is the marker of an
/// unchanged out-of-line value (`{"unchanged_toast":true}`), which decoding
/// does not have.
///
/// # Safety
/// `datum` must be a value of `att`'s type (unless `isnull`); inside the event
/// memory context.
unsafe fn push_value(
    out: &mut Vec<u8>,
    enc: TextEncoding,
    info: TypeInfo,
    att: &pg_sys::FormData_pg_attribute,
    datum: pg_sys::Datum,
    isnull: bool,
) -> bool {
    if isnull {
        out.extend_from_slice(b"null");
        return false;
    }
    // SAFETY: attlen == -1 means a varlena datum pointer.
    if att.attlen == -1 && unsafe { is_external_ondisk(datum.cast_mut_ptr()) } {
        out.extend_from_slice(b"{\"unchanged_toast\":true}");
        return true;
    }
    let output_text = |datum: pg_sys::Datum| -> &[u8] {
        // SAFETY: `output` is the type's output function; it returns a palloc'd
        // NUL-terminated string that lives until the event memory is reset.
        unsafe { CStr::from_ptr(pg_sys::OidOutputFunctionCall(info.output, datum)).to_bytes() }
    };
    match info.kind {
        ColumnKind::Int2 => {
            let _ = write!(out, "{}", datum.value() as i16);
        }
        ColumnKind::Int4 => {
            let _ = write!(out, "{}", datum.value() as i32);
        }
        ColumnKind::Oid => {
            let _ = write!(out, "{}", datum.value() as u32);
        }
        ColumnKind::Int8 => {
            // int8 is pass-by-value on 64-bit builds (the only ones pgrx supports).
            let _ = write!(out, "\"{}\"", datum.value() as i64);
        }
        ColumnKind::Bool => {
            out.extend_from_slice(if datum.value() != 0 {
                b"true"
            } else {
                b"false"
            });
        }
        ColumnKind::Float => {
            let s = output_text(datum);
            if json::is_number(s) {
                out.extend_from_slice(s);
            } else {
                json::push_str_in(out, s, enc);
            }
        }
        ColumnKind::Json => json::push_raw_one_line_in(out, output_text(datum), enc),
        ColumnKind::Vector => push_vector_text(out, enc, output_text(datum)),
        // SAFETY: a non-null array datum of this column's type, whose elements
        // are of `elem`; inside the event memory context.
        ColumnKind::VectorArray(elem) => {
            // SAFETY: as above.
            if !unsafe { push_vector_array(out, enc, datum, elem) } {
                // Lower bounds other than 1 ('[0:1]={...}'), which nested JSON
                // arrays cannot say: the array's text, which keeps them (a
                // mirror writing the JSON back shifted every element; hunt-150).
                json::push_str_in(out, output_text(datum), enc)
            }
        }
        ColumnKind::Bytea => {
            // SAFETY: a bytea datum; detoasting (if needed) pallocs in the event
            // context, and the bytes stay valid until it is reset.
            let bytes = unsafe {
                let p = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                std::slice::from_raw_parts(
                    pgrx::varlena::vardata_any(p) as *const u8,
                    pgrx::varlena::varsize_any_exhdr(p),
                )
            };
            json::push_hex_bytes(out, bytes);
        }
        ColumnKind::DateTime(base) => {
            // SAFETY: JsonEncodeDateTime handles exactly these five types and
            // returns a palloc'd NUL-terminated ISO 8601 string.
            let s = unsafe {
                CStr::from_ptr(pg_sys::JsonEncodeDateTime(
                    std::ptr::null_mut(),
                    datum,
                    base,
                    std::ptr::null(),
                ))
            };
            json::push_str_in(out, s.to_bytes(), enc);
        }
        ColumnKind::Numeric | ColumnKind::Text => json::push_str_in(out, output_text(datum), enc),
    }
    false
}

/// How to render `typid`, cached for the session.
///
/// # Safety
/// Needs catalog access (the callbacks run inside a transaction with a
/// historic snapshot).
unsafe fn type_info(types: &mut HashMap<pg_sys::Oid, TypeInfo>, typid: pg_sys::Oid) -> TypeInfo {
    if let Some(t) = types.get(&typid) {
        return *t;
    }
    // SAFETY: plain catalog lookups of an existing type.
    let info = unsafe {
        let base = pg_sys::getBaseType(typid);
        let kind = match base {
            pg_sys::INT2OID => ColumnKind::Int2,
            pg_sys::INT4OID => ColumnKind::Int4,
            pg_sys::OIDOID => ColumnKind::Oid,
            pg_sys::INT8OID => ColumnKind::Int8,
            pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => ColumnKind::Float,
            pg_sys::NUMERICOID => ColumnKind::Numeric,
            pg_sys::BOOLOID => ColumnKind::Bool,
            pg_sys::JSONOID | pg_sys::JSONBOID => ColumnKind::Json,
            pg_sys::BYTEAOID => ColumnKind::Bytea,
            pg_sys::DATEOID
            | pg_sys::TIMEOID
            | pg_sys::TIMETZOID
            | pg_sys::TIMESTAMPOID
            | pg_sys::TIMESTAMPTZOID => ColumnKind::DateTime(base),
            _ if is_vector_type(base) => ColumnKind::Vector,
            _ if is_vector_array(base) => {
                let typid = pg_sys::get_element_type(base);
                let (mut len, mut byval, mut align) = (0i16, false, 0 as c_char);
                pg_sys::get_typlenbyvalalign(typid, &mut len, &mut byval, &mut align);
                let mut output = pg_sys::InvalidOid;
                let mut varlena = false;
                pg_sys::getTypeOutputInfo(typid, &mut output, &mut varlena);
                ColumnKind::VectorArray(ElemInfo {
                    typid,
                    len,
                    byval,
                    align,
                    output,
                })
            }
            _ => ColumnKind::Text,
        };
        let mut output = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(typid, &mut output, &mut varlena);
        TypeInfo { kind, output }
    };
    types.insert(typid, info);
    info
}

/// A vector's text output (`[1,2,3]`): raw JSON, on one line, as every
/// embedded text; a string if it is not JSON (a sparsevec's `{1:1.5}/5`).
fn push_vector_text(out: &mut Vec<u8>, enc: TextEncoding, s: &[u8]) {
    if json::is_valid(s) {
        json::push_raw_one_line_in(out, s, enc);
    } else {
        json::push_str_in(out, s, enc);
    }
}

/// Whether `typid` is an array whose elements are vectors ([`is_vector_type`],
/// through a domain over one).
///
/// # Safety
/// Needs catalog access.
unsafe fn is_vector_array(typid: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups by OID.
    unsafe {
        let elem = pg_sys::get_element_type(typid);
        elem != pg_sys::InvalidOid && is_vector_type(pg_sys::getBaseType(elem))
    }
}

/// Appends an array of vectors as JSON arrays nested as its dimensions
/// (`[[1,2],[3,4]]`; `[]` for an empty array; `null` for a NULL element).
/// False, with nothing appended, for an array whose lower bounds are not all 1.
///
/// # Safety
/// `datum` must be a non-null array whose elements are of type `elem.typid`;
/// inside the event memory context (the detoasted copy and the element texts
/// are palloc'd there).
unsafe fn push_vector_array(
    out: &mut Vec<u8>,
    enc: TextEncoding,
    datum: pg_sys::Datum,
    elem: ElemInfo,
) -> bool {
    // SAFETY: forwarded contract; an ArrayType header is followed by `ndim`
    // dimensions (ARR_DIMS), and deconstruct_array reads the array as its
    // element type's length, by-value flag and alignment say.
    let (dims, elems, nulls) = unsafe {
        let arr = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let ndim = usize::try_from((*arr).ndim).unwrap_or(0);
        let dims = std::slice::from_raw_parts(
            (arr as *const u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *const c_int,
            ndim,
        )
        .to_vec();
        // ARR_LBOUND: the lower bounds follow the dimensions.
        let lbounds = std::slice::from_raw_parts(
            (arr as *const u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *const c_int,
            2 * ndim,
        );
        if lbounds[ndim..].iter().any(|&b| b != 1) {
            return false;
        }
        let mut values: *mut pg_sys::Datum = std::ptr::null_mut();
        let mut isnull: *mut bool = std::ptr::null_mut();
        let mut n: c_int = 0;
        pg_sys::deconstruct_array(
            arr,
            elem.typid,
            elem.len.into(),
            elem.byval,
            elem.align,
            &mut values,
            &mut isnull,
            &mut n,
        );
        let n = usize::try_from(n).unwrap_or(0);
        let (elems, nulls) = if n == 0 {
            (Vec::new(), Vec::new())
        } else {
            (
                std::slice::from_raw_parts(values, n).to_vec(),
                std::slice::from_raw_parts(isnull, n).to_vec(),
            )
        };
        (dims, elems, nulls)
    };
    if dims.is_empty() || elems.is_empty() {
        out.extend_from_slice(b"[]");
        return true;
    }
    /// One dimension: its elements, or the arrays of the next dimension.
    fn level(
        out: &mut Vec<u8>,
        enc: TextEncoding,
        dims: &[c_int],
        elems: &[pg_sys::Datum],
        nulls: &[bool],
        output: pg_sys::Oid,
        next: &mut usize,
    ) {
        out.push(b'[');
        for i in 0..dims[0].max(0) {
            if i > 0 {
                out.push(b',');
            }
            if dims.len() > 1 {
                level(out, enc, &dims[1..], elems, nulls, output, next);
                continue;
            }
            let k = *next;
            *next += 1;
            match (elems.get(k), nulls.get(k)) {
                (Some(d), Some(false)) => {
                    // SAFETY: a non-null element of the array, of the type
                    // whose output function `output` is; the text is
                    // palloc'd in the event memory context.
                    let s = unsafe { CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, *d)) };
                    push_vector_text(out, enc, s.to_bytes());
                }
                _ => out.extend_from_slice(b"null"),
            }
        }
        out.push(b']');
    }
    level(out, enc, &dims, &elems, &nulls, elem.output, &mut 0);
    true
}

/// Whether the type is one of arrw's vector types, or one of pgvector's
/// (`vector`, `halfvec`, `sparsevec`): named like one of [`VECTOR_TYPES`] and a
/// member of extension `arrw` or `vector`. The name alone is not enough: any
/// role can create a type named `vector` in its own schema, and a vector's
/// text is embedded as JSON, not as a string. Membership in an extension is
/// what no other role can fake (ALTER EXTENSION ... ADD needs its owner).
///
/// # Safety
/// Needs catalog access.
unsafe fn is_vector_type(typid: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup by OID; the tuple is released before returning.
    let named = unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::TYPEOID as c_int,
            pg_sys::Datum::from(typid),
        );
        if tup.is_null() {
            return false;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_type>(tup);
        let name = CStr::from_ptr((*form).typname.data.as_ptr()).to_bytes();
        let hit = VECTOR_TYPES.contains(&name);
        pg_sys::ReleaseSysCache(tup);
        hit
    };
    if !named {
        return false;
    }
    // SAFETY: catalog lookups by name and OID (pg_extension, pg_depend).
    unsafe {
        let ext = pg_sys::getExtensionOfObject(pg_sys::TypeRelationId, typid);
        ext != pg_sys::InvalidOid
            && [c"arrw", c"vector"]
                .iter()
                .any(|name| pg_sys::get_extension_oid(name.as_ptr(), true) == ext)
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn change(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    relation: pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    // No CHECK_FOR_INTERRUPTS here: PostgreSQL's replay loop
    // (ReorderBufferProcessTXN) checks before it hands over each change,
    // truncate or message, so a cancel waits at most one event's rendering;
    // what hunt-122 measured beyond that (0.2-0.35 s for a spilled 100k-row
    // transaction, test_decoding as slow) is the replay's own abort.
    // SAFETY: startup has run.
    let st = unsafe { state(ctx) };
    // SAFETY: change is live during the callback.
    let (action, lsn) = unsafe { ((*change).action, (*change).lsn) };
    let op = match action {
        pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_INSERT => Op::Insert,
        pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_UPDATE => Op::Update,
        pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_DELETE => Op::Delete,
        _ => return,
    };
    let _mem = EventMemory::enter(st.cxt);
    let _digits = DefaultFloatDigits::pin();
    // SAFETY: relation is open for the callback.
    let (nsp, name) = unsafe { rel_names(relation) };
    // SAFETY: for insert/update/delete changes `tp` is the active union member;
    // the tuples (either may be NULL) live until the change is freed.
    let (old, new) = unsafe { ((*change).data.tp.oldtuple, (*change).data.tp.newtuple) };
    if nsp == b"arrw" && name == b"job" && op != Op::Delete && !new.is_null() {
        // SAFETY: relation is open and `new` is its live new tuple; inside the
        // event memory context.
        unsafe { note_job_row(st, relation, new) };
    }
    if nsp == b"arrw" && name == b"job_cancel" && op == Op::Insert && !new.is_null() {
        // SAFETY: as above.
        unsafe { note_job_cancel_row(st, relation, new) };
    }
    if !table_wanted(&st.opts, nsp, name) {
        return;
    }
    // SAFETY: live ctx/txn; inside the event memory context.
    unsafe { ensure_begin(ctx, st, txn) };

    // SAFETY: relation is open.
    let (desc, full) = unsafe {
        (
            (*relation).rd_att,
            (*(*relation).rd_rel).relreplident as u8 == pg_sys::REPLICA_IDENTITY_FULL,
        )
    };
    // SAFETY: txn is live.
    let xid = unsafe { (*txn).xid }.into_inner();
    let enc = st.enc;

    let event = |out: &mut Vec<u8>| {
        let op_name = match op {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        };
        push_header(out, enc, op_name, nsp, name, lsn, xid);
        // SAFETY: desc is the relation's descriptor.
        let natts = unsafe { (*desc).natts as usize };
        // SAFETY: desc has natts attributes.
        let attrs = unsafe { (*desc).attrs.as_slice(natts) };
        let mut omitted = vec![false; natts];
        // Columns of `row` whose value decoding does not have; the key's
        // (never: PostgreSQL logs an old key or a REPLICA IDENTITY FULL old
        // row flattened, and `new_key` takes such values from it) go to a
        // scratch list.
        let mut unchanged = vec![false; natts];
        let mut key_unchanged = vec![false; natts];

        // The key: the replica identity of the row before the change (of the new
        // row for inserts, and for updates that left an index key unchanged, which
        // PostgreSQL then does not log separately).
        let key_source = match op {
            Op::Insert => new,
            Op::Update => {
                if old.is_null() {
                    new
                } else {
                    old
                }
            }
            Op::Delete => old,
        };
        json::push_key_after_comma(out, "key");
        let pick = if full {
            Some(Pick::All)
        } else {
            // SAFETY: relation is open; the bitmap is palloc'd in the event context.
            let bms = unsafe { pg_sys::RelationGetIdentityKeyBitmap(relation) };
            (!bms.is_null()).then_some(Pick::Key(bms))
        };
        let render = Render {
            include_vectors: st.opts.include_vectors,
            enc,
        };
        // `key` and `new_key` alike: the identity columns of `t`, a tuple of
        // this relation deformed by `desc`.
        let mut push_key = |out: &mut Vec<u8>, t: &Deformed, pick: &Pick| {
            // SAFETY: callers pass values of this relation's columns, of live
            // tuples; inside the event memory context.
            unsafe {
                push_object(
                    out,
                    &mut st.types,
                    render,
                    desc,
                    t,
                    pick,
                    Marks {
                        omitted: &mut omitted,
                        unchanged: &mut key_unchanged,
                    },
                )
            }
        };
        let key_start = out.len();
        // The old key (or old row) PostgreSQL logged for an update, deformed.
        let mut logged_old = None;
        match (&pick, key_source.is_null()) {
            (Some(pick), false) => {
                // SAFETY: key_source is a live tuple of this relation.
                let t = unsafe { deform(desc, key_source) };
                push_key(out, &t, pick);
                if op == Op::Update && key_source == old {
                    logged_old = Some(t);
                }
            }
            _ => out.extend_from_slice(b"null"),
        }
        let key_end = out.len();

        // The key after an update, `new_key`, when it differs from `key` (as
        // rendered): the new row's identity columns (its whole row for
        // REPLICA IDENTITY FULL), rendered as `key` is, vector key columns
        // included, whatever `include-row` and `include-vectors` say: the new
        // key was only in `row`, and lost with include-row=false or when the
        // key is a vector (hunt-122). PostgreSQL logs the old key only when
        // the update changed a key column or a key column is stored out of
        // line, and the old row always with REPLICA IDENTITY FULL; without it
        // the key did not change. A value the update left unchanged out of
        // line is not in the new tuple (an on-disk TOAST pointer), but it is
        // the old one, which PostgreSQL logged flattened: it is taken from there.
        if let (Some(pick), Some(old_t), false) = (&pick, &logged_old, new.is_null()) {
            // SAFETY: new is a live tuple of this relation.
            let mut t = unsafe { deform(desc, new) };
            for (i, att) in attrs.iter().enumerate() {
                if att.attlen != -1 || t.nulls[i] || old_t.nulls[i] {
                    continue;
                }
                // SAFETY: attlen -1: a non-null value is a varlena pointer.
                if unsafe { is_external_ondisk(t.values[i].cast_mut_ptr()) } {
                    t.values[i] = old_t.values[i];
                }
            }
            json::push_key_after_comma(out, "new_key");
            let new_start = out.len();
            // t holds values of the new tuple, or of the old one, both live.
            push_key(out, &t, pick);
            if out[new_start..] == out[key_start..key_end] {
                out.truncate(key_end);
            }
        }

        if st.opts.include_row && op != Op::Delete {
            json::push_key_after_comma(out, "row");
            if new.is_null() {
                out.extend_from_slice(b"null");
            } else {
                // SAFETY: new is a live tuple of this relation.
                let t = unsafe { deform(desc, new) };
                // SAFETY: as above.
                unsafe {
                    push_object(
                        out,
                        &mut st.types,
                        render,
                        desc,
                        &t,
                        &Pick::All,
                        Marks {
                            omitted: &mut omitted,
                            unchanged: &mut unchanged,
                        },
                    )
                };
            }
        }

        push_names(out, enc, "omitted", attrs, &omitted);
        // Named beside `row` as well as marked in it: a json or jsonb column
        // can hold the marker's object itself, which a consumer then took for
        // an unchanged value and kept its old one (hunt-96).
        push_names(out, enc, "unchanged_toast", attrs, &unchanged);
        out.push(b'}');
    };
    // SAFETY: live ctx (the running callback's).
    unsafe { emit_event(ctx, &mut st.buf, event) };
}

#[pg_guard]
unsafe extern "C-unwind" fn truncate(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    nrelations: c_int,
    relations: *mut pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    // SAFETY: startup has run.
    let st = unsafe { state(ctx) };
    // SAFETY: live txn and change; relations has nrelations open relations.
    let (xid, lsn, rels) = unsafe {
        (
            (*txn).xid.into_inner(),
            (*change).lsn,
            std::slice::from_raw_parts(relations, nrelations.max(0) as usize),
        )
    };
    let _mem = EventMemory::enter(st.cxt);
    let enc = st.enc;
    for &rel in rels {
        // SAFETY: an open relation.
        let (nsp, name) = unsafe { rel_names(rel) };
        if !table_wanted(&st.opts, nsp, name) {
            continue;
        }
        // SAFETY: live ctx/txn; inside the event memory context.
        unsafe { ensure_begin(ctx, st, txn) };
        let event = |out: &mut Vec<u8>| {
            push_header(out, enc, "truncate", nsp, name, lsn, xid);
            out.push(b'}');
        };
        // SAFETY: live ctx (the running callback's).
        unsafe { emit_event(ctx, &mut st.buf, event) };
    }
}

/// Whether `relation` (named `arrw.job` or `arrw.job_cancel`) is arrw's own: a
/// member of extension arrw. Cached by relation OID.
///
/// # Safety
/// `relation` must be open; inside the event memory context.
unsafe fn is_arrw_rel(st: &mut State, relation: pg_sys::Relation) -> bool {
    // SAFETY: relation is open.
    let relid = unsafe { (*relation).rd_id };
    if let Some(&ours) = st.job_rels.get(&relid) {
        return ours;
    }
    // A schema named arrw is the extension's only while the extension is
    // installed; membership in the extension is what no other role can fake
    // (ALTER EXTENSION ... ADD needs the extension's owner).
    // SAFETY: catalog lookups by OID and name under the historic snapshot the
    // decoding callbacks run with.
    let ours = unsafe {
        let ext = pg_sys::get_extension_oid(c"arrw".as_ptr(), true);
        ext != pg_sys::InvalidOid
            && pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, relid) == ext
    };
    st.job_rels.insert(relid, ours);
    ours
}

/// Records the `cancelled` job event that `arrw.cancel_job` announces when it
/// cancels a queued job (see the module documentation): a new row of arrw's own
/// `arrw.job_cancel` with `job_id` and `announced_kind`.
///
/// # Safety
/// As for [`note_job_row`].
unsafe fn note_job_cancel_row(
    st: &mut State,
    relation: pg_sys::Relation,
    new: *mut pg_sys::ReorderBufferTupleBuf,
) {
    // SAFETY: forwarded contract.
    unsafe {
        note_job_event(
            st,
            relation,
            new,
            b"job_id",
            b"announced_kind",
            Some(b"cancelled"),
        )
    }
}

/// Records the job event a new version of an `arrw.job` row stands for (see the
/// module documentation), if `relation` is arrw's own `arrw.job`.
///
/// # Safety
/// `relation` must be open and `new` a live tuple of it; inside the event memory
/// context (catalog lookups and detoasted text are palloc'd there).
unsafe fn note_job_row(
    st: &mut State,
    relation: pg_sys::Relation,
    new: *mut pg_sys::ReorderBufferTupleBuf,
) {
    // SAFETY: forwarded contract.
    unsafe { note_job_event(st, relation, new, b"id", b"kind", None) }
}

/// The one reader of arrw's job rows for [`note_job_row`] and
/// [`note_job_cancel_row`]: if `relation` is one of arrw's own tables, the job
/// id (int8 column `id_col`), its kind (text column `kind_col`) and its state
/// (text column `state`, or `fixed_state` for a table whose rows all announce
/// one) make the job event kept for the transaction (the last one per job).
///
/// # Safety
/// As for [`note_job_row`].
unsafe fn note_job_event(
    st: &mut State,
    relation: pg_sys::Relation,
    new: *mut pg_sys::ReorderBufferTupleBuf,
    id_col: &[u8],
    kind_col: &[u8],
    fixed_state: Option<&'static [u8]>,
) {
    // SAFETY: relation is open; inside the event memory context.
    if !unsafe { is_arrw_rel(st, relation) } {
        return;
    }
    // SAFETY: relation is open.
    let desc = unsafe { (*relation).rd_att };
    // SAFETY: new is a live tuple of this relation.
    let t = unsafe { deform(desc, new) };
    // SAFETY: desc has natts attributes.
    let attrs = unsafe { (*desc).attrs.as_slice((*desc).natts as usize) };
    let mut id = None;
    let mut kind = None;
    let mut state = fixed_state;
    for (i, att) in attrs.iter().enumerate() {
        if att.attisdropped || t.nulls[i] {
            continue;
        }
        let col = att_name(att);
        let text = |d: pg_sys::Datum| -> Option<&[u8]> {
            if att.atttypid != pg_sys::TEXTOID {
                return None;
            }
            // SAFETY: a text datum of this tuple; an on-disk TOAST pointer (a
            // value an update left unchanged) cannot be read here and is skipped.
            unsafe {
                if is_external_ondisk(d.cast_mut_ptr()) {
                    return None;
                }
                Some(CStr::from_ptr(pg_sys::text_to_cstring(d.cast_mut_ptr())).to_bytes())
            }
        };
        if col == id_col && att.atttypid == pg_sys::INT8OID {
            // int8 is pass-by-value on 64-bit builds (the only ones pgrx supports).
            id = Some(t.values[i].value() as i64);
        } else if col == kind_col {
            kind = text(t.values[i]);
        } else if col == b"state" && fixed_state.is_none() {
            state = text(t.values[i]);
        }
    }
    let (Some(id), Some(kind), Some(state)) = (id, kind, state) else {
        return;
    };
    let content = super::job_event_content(id, kind, state);
    match st.jobs.iter_mut().find(|(j, _)| *j == id) {
        Some(entry) => entry.1 = content,
        None => st.jobs.push((id, content)),
    }
}

/// The prefix of the logical decoding messages the plugin passes on.
pub const MESSAGE_PREFIX: &CStr = c"arrw";

/// The largest message content an event carries (64 MB): escaped six bytes a
/// byte at worst, it stays well within PostgreSQL's 1 GB output limit.
/// Larger content is left out (`"content":null,"content_bytes":N`).
pub const MAX_MESSAGE_CONTENT: usize = 64 << 20;

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn message(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    message_lsn: pg_sys::XLogRecPtr,
    transactional: bool,
    prefix: *const c_char,
    message_size: pg_sys::Size,
    message: *const c_char,
) {
    // SAFETY: prefix is a NUL-terminated string from the WAL record.
    if unsafe { CStr::from_ptr(prefix) } != MESSAGE_PREFIX {
        return;
    }
    // SAFETY: startup has run.
    let st = unsafe { state(ctx) };
    let _mem = EventMemory::enter(st.cxt);
    if transactional {
        // SAFETY: live ctx/txn; inside the event memory context.
        unsafe { ensure_begin(ctx, st, txn) };
    }
    // SAFETY: message points to message_size bytes (not NUL-terminated).
    let content = unsafe { std::slice::from_raw_parts(message as *const u8, message_size) };
    // SAFETY: pg_verifymbstr only reads `len` bytes and reports (noError).
    let valid_text = c_int::try_from(content.len()).is_ok()
        && unsafe { pg_sys::pg_verifymbstr(message, content.len() as c_int, true) };
    // A non-transactional message outside any transaction has no xid.
    let xid = if txn.is_null() {
        0
    } else {
        // SAFETY: a live transaction.
        unsafe { (*txn).xid }.into_inner()
    };

    // arrw writes a job's event right after the row change it announces, in
    // the same transaction: the first message with those bytes is arrw's, and
    // it takes the entry, so that a copy the same transaction writes after it
    // (any role may write messages with our prefix) is the user's (hunt-57).
    let from_arrw = transactional
        && match st.jobs.iter().position(|(_, c)| c.as_slice() == content) {
            Some(i) => {
                st.jobs.swap_remove(i);
                true
            }
            None => false,
        };

    let event = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"{\"op\":\"message\",\"prefix\":\"arrw\",\"origin\":");
        out.extend_from_slice(if from_arrw {
            b"\"arrw\","
        } else {
            b"\"user\","
        });
        json::push_key(out, "lsn");
        json::push_lsn(out, message_lsn);
        if xid == 0 {
            out.extend_from_slice(b",\"xid\":null");
        } else {
            let _ = write!(out, ",\"xid\":{xid}");
        }
        let _ = write!(out, ",\"transactional\":{transactional}");
        json::push_key_after_comma(out, "content");
        if content.len() > MAX_MESSAGE_CONTENT {
            // Too large to render safely: escaping can take six bytes a byte,
            // and an event past PostgreSQL's 1 GB string limit made every
            // later read of the slot fail (54000) for good; any role may emit
            // a message. Its size says what was left out.
            let _ = write!(out, "null,\"content_bytes\":{}", content.len());
        } else if valid_text && json::is_valid(content) {
            json::push_raw_one_line_in(out, content, st.enc);
        } else if valid_text {
            json::push_str_in(out, content, st.enc);
        } else {
            json::push_hex_bytes(out, content);
        }
        out.push(b'}');
    };
    // SAFETY: live ctx (the running callback's).
    unsafe { emit_event(ctx, &mut st.buf, event) };
}
