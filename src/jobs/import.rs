//! bulk_import: a server-side file loaded in batches, each batch its own committed
//! transaction that also records the byte offset the next batch starts at. A killed
//! import resumes at the last committed offset, so every row lands exactly once.
//!
//! The worker reads the file itself, cuts it on row boundaries exactly where COPY
//! would (`arrw_core::import::Splitter`: csv, text, binary, in the file's
//! encoding), streams each batch to a temporary file under `base/pgsql_tmp`
//! (removed by PostgreSQL at restart if a crash leaves it) and loads it with
//! `COPY table FROM 'tmpfile'` run as the job's owner, so every check COPY makes
//! (INSERT privilege, pg_read_server_files, row-level security, triggers,
//! constraints) applies unchanged.
//!
//! Reading never blocks and never grows with the data: only regular files are
//! opened (and with O_NONBLOCK, so a path swapped for a FIFO cannot hang the
//! open), bytes go through a fixed buffer to the batch file, a row longer than
//! `arrw.job_import_max_row_size` is an error, and before each buffer refill the
//! worker checks for interrupts and for a cancel or shutdown request.

use super::args::{self, CopyOpts, Format, Rel, Spec};
use super::job::{Ctx, Outcome, RemoveOnDrop, GOT_SIGTERM, IN_LONG_STATEMENT};
use super::spi;
use crate::errors::{
    bad_copy_file, file_io, import_batch_detail, import_row_detail, import_split, not_regular_file,
    report_of, reraise_as, sqlstate_class,
};
use arrw_core::import::{Encoding, Eol, Found, SplitError, Splitter};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;

/// A batch stops taking rows once it holds this many bytes (whatever batch_rows
/// says), so that one COPY transaction stays a reasonable size.
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// Bytes read from the file at a time: the most read between two checks for
/// cancellation.
pub const READ_CHUNK: usize = 1 << 20;

/// `O_NONBLOCK` of Linux (every architecture PostgreSQL 15 packages are built for
/// except alpha, mips, parisc and sparc).
const O_NONBLOCK: i32 = 0o4000;

/// Opens `path` for reading if it is a regular file. Checked before opening (so
/// that opening has no side effect on a device or FIFO) and again on the open
/// file (the path may have been replaced in between); O_NONBLOCK makes the open
/// of a FIFO that replaced the file return at once instead of waiting for a
/// writer. For regular files the flag changes nothing.
pub fn open_regular(path: &str) -> File {
    use std::os::unix::fs::OpenOptionsExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| file_io("stat", path, &e));
    if !m.is_file() {
        not_regular_file(path, &m);
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| file_io("open", path, &e));
    let m = f.metadata().unwrap_or_else(|e| file_io("stat", path, &e));
    if !m.is_file() {
        not_regular_file(path, &m);
    }
    f
}

/// A fixed read buffer over the file.
pub struct Input<R: Read> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
}

impl<R: Read> Input<R> {
    pub fn new(inner: R) -> Self {
        Self::with_capacity(inner, READ_CHUNK)
    }

    pub fn with_capacity(inner: R, cap: usize) -> Self {
        Input {
            inner,
            buf: vec![0; cap.max(1)].into_boxed_slice(),
            pos: 0,
            len: 0,
        }
    }

    /// Refills an empty buffer; false at the end of the input.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.pos < self.len {
            return Ok(true);
        }
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// One batch cut from the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    /// Rows written (for COPY).
    pub rows: u64,
    /// Bytes of the input the batch covers.
    pub consumed: u64,
    /// No more rows follow.
    pub last: bool,
    /// The data ended with the file's own end-of-data marker, which was written
    /// too (binary batches then need no trailer of their own).
    pub marker: bool,
    /// The batch's one row is a text row ended by `\.` and `\r\n`
    /// ([`Found::RowAtMarker`]) whose first `marker_row` bytes are the row:
    /// the batch file must hold those and `\r\n` instead (see `read_batch`).
    pub marker_row: Option<u64>,
    /// The batch's last row was ended by a text `\.` ([`Found::RowAtMarker`]).
    pub at_marker: bool,
}

/// Why a batch could not be cut.
#[derive(Debug)]
pub enum CutError {
    Io(std::io::Error),
    /// The rows cannot be cut; after this many whole rows of the batch.
    Split(SplitError, u64),
    /// `check` asked to stop.
    Stopped,
}

impl From<std::io::Error> for CutError {
    fn from(e: std::io::Error) -> Self {
        CutError::Io(e)
    }
}

/// Streams up to `max_rows` rows (and about `max_bytes` bytes) from `input` to
/// `out`, as cut by `splitter`. `check` runs before every read from the input and
/// stops the batch when it returns true.
pub fn read_batch<R: Read, W: Write>(
    input: &mut Input<R>,
    splitter: &mut Splitter,
    out: &mut W,
    max_rows: u64,
    max_bytes: u64,
    check: &mut dyn FnMut() -> bool,
) -> Result<Batch, CutError> {
    let mut b = Batch {
        rows: 0,
        consumed: 0,
        last: false,
        marker: false,
        marker_row: None,
        at_marker: false,
    };
    // Bytes of the row in progress (written, not yet counted in `consumed`).
    let mut pending = 0u64;
    while b.rows < max_rows && b.consumed < max_bytes {
        if input.pos == input.len {
            if check() {
                return Err(CutError::Stopped);
            }
            if !input.fill()? {
                match splitter.finish().map_err(|e| CutError::Split(e, b.rows))? {
                    Some(Found::Row) | Some(Found::RowAtMarker) => b.rows += 1,
                    Some(Found::End) => b.marker = true,
                    Some(Found::Header) | None => {}
                }
                b.consumed += pending;
                b.last = true;
                return Ok(b);
            }
        }
        let chunk = &input.buf[input.pos..input.len];
        let step = splitter
            .step(chunk)
            .map_err(|e| CutError::Split(e, b.rows))?;
        out.write_all(&chunk[..step.used])?;
        input.pos += step.used;
        pending += step.used as u64;
        match step.found {
            None | Some(Found::Header) => {}
            Some(Found::Row) => {
                b.rows += 1;
                b.consumed += pending;
                pending = 0;
                b.at_marker = false;
            }
            Some(Found::RowAtMarker) => {
                b.at_marker = true;
                b.rows += 1;
                b.consumed += pending;
                pending = 0;
                // A batch's COPY decides its line ending from its first line,
                // but a line ended by `\.` decides nothing, and with none
                // decided COPY ends `one\.\r\n` at the `\r`: the `\n` became
                // an empty row of its own. As the batch's first row it goes
                // alone, rewritten to `one\r\n` (the same row) by the caller.
                if b.rows == 1 && splitter.eol() == Eol::CrNl {
                    b.marker_row = Some(splitter.marker_row_len());
                    break;
                }
            }
            Some(Found::End) => {
                b.consumed += pending;
                b.marker = true;
                b.last = true;
                // A binary file's trailer ends it: two exports joined into
                // one file loaded the first and called the job a success
                // (hunt-118), where COPY refuses the file.
                if splitter.refuses_data_after_end() && input.fill()? {
                    return Err(CutError::Split(SplitError::DataAfterEnd, b.rows));
                }
                return Ok(b);
            }
        }
    }
    // A full batch: is there anything after it?
    if input.pos == input.len {
        if check() {
            return Err(CutError::Stopped);
        }
        if !input.fill()? {
            b.last = splitter
                .finish()
                .map_err(|e| CutError::Split(e, b.rows))?
                .is_none();
        }
    }
    Ok(b)
}

/// The encoding the worker's COPY will read the file in: the job's `encoding`, or
/// the worker's client encoding (what COPY uses without ENCODING).
fn file_encoding(copy: &CopyOpts) -> Encoding {
    let id = match &copy.encoding {
        Some(name) => args::encoding_id(name),
        // SAFETY: reads the backend's client encoding id.
        None => unsafe { pg_sys::pg_get_client_encoding() },
    };
    // SAFETY: pg_encoding_to_char returns a static string for any id ("" if
    // out of range).
    let name = unsafe { std::ffi::CStr::from_ptr(pg_sys::pg_encoding_to_char(id)) };
    Encoding::from_pg_name(&name.to_string_lossy())
}

/// The splitter format of the job's COPY options.
fn split_format(copy: &CopyOpts) -> arrw_core::import::Format {
    match copy.format {
        Format::Csv => arrw_core::import::Format::csv(copy.quote_byte(), copy.escape_byte()),
        Format::Text => arrw_core::import::Format::Text,
        Format::Binary => arrw_core::import::Format::Binary,
    }
}

/// Runs (or resumes) a bulk_import.
pub fn run(ctx: &Ctx, spec: &Spec, rel: Rel) -> Outcome {
    let Spec::Import {
        path,
        copy,
        batch_rows,
        columns,
        ..
    } = spec
    else {
        unreachable!()
    };
    // `done`: rows the committed batches inserted (COPY's count, the job's
    // result); `read`: rows of the file they held, which errors name. The two
    // differ when a BEFORE INSERT trigger skips rows (hunt-89: the job named
    // rows 5 to 6 for a bad row 9). A resume point saved before `read` was
    // kept has only `rows`.
    let (mut offset, mut done, mut read) = spi::xact(|| {
        let saved = ctx.checkpoint();
        let done = saved.number::<u64>("rows").unwrap_or(0);
        (
            saved.number::<u64>("offset").unwrap_or(0),
            done,
            saved.number::<u64>("read").unwrap_or(done),
        )
    });
    let max_row = super::max_row_bytes();
    let format = split_format(copy);
    let enc = file_encoding(copy);
    let mut file = open_regular(path);
    let size = file
        .metadata()
        .map(|m| m.len())
        .unwrap_or_else(|e| file_io("stat", path, &e));
    if offset > size {
        bad_copy_file(format!(
            "file \"{path}\" is shorter ({size} bytes) than the {offset} bytes already imported"
        ));
    }
    // Between two reads: interrupts (cancel_job's signal ends the attempt as
    // cancelled, see worker::run_one) and the job's cancel flag or a shutdown.
    let mut check = || {
        pg_sys::check_for_interrupts!();
        ctx.stop().is_some()
    };
    let stopped = || ctx.stop().unwrap_or(Outcome::Cancelled);
    // `loaded`: the rows before the batch (None: the header), for errors.
    let cut = |input: &mut Input<&mut File>,
               splitter: &mut Splitter,
               out: &mut dyn Write,
               max_rows: u64,
               loaded: Option<u64>,
               check: &mut dyn FnMut() -> bool|
     -> Option<Batch> {
        match read_batch(
            input,
            splitter,
            &mut WriteRef(out),
            max_rows,
            MAX_BATCH_BYTES,
            check,
        ) {
            Ok(b) => Some(b),
            Err(CutError::Stopped) => None,
            Err(CutError::Io(e)) => file_io("read", path, &e),
            Err(CutError::Split(e, rows)) => {
                import_split(path, &e, loaded.map(|n| (n + rows + 1, n)))
            }
        }
    };
    // The header: skipped for csv/text, repeated at the top of every binary batch
    // (without its extension area).
    let mut prefix = Vec::new();
    let mut splitter = Splitter::new(format, enc, max_row);
    match copy.format {
        Format::Binary => {
            let mut input = Input::new(&mut file);
            let mut header_len = 0u64;
            loop {
                if input.pos == input.len {
                    if check() {
                        return stopped();
                    }
                    if !input.fill().unwrap_or_else(|e| file_io("read", path, &e)) {
                        bad_copy_file(format!(
                            "file \"{path}\": not a binary COPY file (header missing)"
                        ));
                    }
                }
                let step = splitter
                    .step(&input.buf[input.pos..input.len])
                    .unwrap_or_else(|e| import_split(path, &e, None));
                input.pos += step.used;
                header_len += step.used as u64;
                if step.found == Some(Found::Header) {
                    break;
                }
            }
            prefix = splitter.binary_header().to_vec();
            offset = offset.max(header_len);
            splitter = Splitter::binary_after_header(max_row);
        }
        _ if copy.header && offset == 0 => {
            let mut input = Input::new(&mut file);
            let Some(h) = cut(
                &mut input,
                &mut splitter,
                &mut std::io::sink(),
                1,
                None,
                &mut check,
            ) else {
                return stopped();
            };
            // A file whose header line holds `\.` (alone, or after the header's
            // text: COPY then reads no further) has no rows.
            let eol = splitter.eol();
            offset = if h.marker || h.at_marker {
                size
            } else {
                h.consumed
            };
            splitter = Splitter::new(format, enc, max_row).with_eol(eol);
        }
        _ if offset > 0 => {
            // Resuming: the file's line ending is its first lines' (each
            // batch's COPY must not decide afresh, see Splitter::eol), so read
            // rows from the start until one decides it.
            let mut input = Input::new(&mut file);
            let mut at = 0u64;
            while splitter.eol() == Eol::Unknown && at < offset {
                let Some(b) = cut(
                    &mut input,
                    &mut splitter,
                    &mut std::io::sink(),
                    1,
                    None,
                    &mut check,
                ) else {
                    return stopped();
                };
                at += b.consumed;
                if b.last || b.consumed == 0 {
                    break;
                }
            }
            splitter = Splitter::new(format, enc, max_row).with_eol(splitter.eol());
            file.seek(SeekFrom::Start(0))
                .unwrap_or_else(|e| file_io("seek in", path, &e));
        }
        _ => {}
    }
    file.seek(SeekFrom::Start(offset))
        .unwrap_or_else(|e| file_io("seek in", path, &e));
    let mut input = Input::new(&mut file);

    // SAFETY: DataDir is the server's data directory (set at startup, never freed).
    let data_dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) }
        .to_string_lossy()
        .into_owned();
    let tmp_dir = format!("{data_dir}/base/pgsql_tmp");
    let _ = std::fs::create_dir_all(&tmp_dir);
    // SAFETY: reading a backend global.
    let tmp = format!("{tmp_dir}/pgsql_tmp_arrw_job_{}_{}", ctx.job.id, unsafe {
        pg_sys::MyProcPid
    });
    let cols = columns
        .as_ref()
        .map(|c| {
            format!(
                " ({})",
                c.iter()
                    .map(|c| spi::ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .unwrap_or_default();
    let copy_from = |file: &str| {
        format!(
            "COPY {}{cols} FROM {} WITH ({})",
            rel.qname,
            spi::literal(file),
            copy_options(copy)
        )
    };
    let copy_sql = copy_from(&tmp);
    let probe = format!("{tmp}_probe");
    let _probe_file = RemoveOnDrop(Some(probe.clone()));
    // Whatever ends the attempt (its end, an ERROR of a batch's COPY, a
    // cancel, a shutdown) removes the batch file: it was left, with a copy of
    // the batch's rows, until the server restarted.
    let _tmp_file = RemoveOnDrop(Some(tmp.clone()));

    let outcome = loop {
        if let Some(o) = ctx.stop() {
            break o;
        }
        let mut out = BufWriter::with_capacity(
            READ_CHUNK,
            File::create(&tmp).unwrap_or_else(|e| file_io("create", &tmp, &e)),
        );
        out.write_all(&prefix)
            .unwrap_or_else(|e| file_io("write", &tmp, &e));
        let Some(batch) = cut(
            &mut input,
            &mut splitter,
            &mut out,
            *batch_rows as u64,
            Some(read),
            &mut check,
        ) else {
            break stopped();
        };
        if copy.format == Format::Binary && !batch.marker {
            out.write_all(&(-1i16).to_be_bytes())
                .unwrap_or_else(|e| file_io("write", &tmp, &e));
        }
        out.flush().unwrap_or_else(|e| file_io("write", &tmp, &e));
        drop(out);
        let batch_eol = splitter.eol();
        if let Some(len) = batch.marker_row {
            // `one\.\r\n` alone: `one\r\n`, the row COPY reads in the file.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&tmp)
                .unwrap_or_else(|e| file_io("open", &tmp, &e));
            let end = prefix.len() as u64 + len;
            f.set_len(end)
                .and_then(|_| f.seek(SeekFrom::Start(end)))
                .and_then(|_| f.write_all(b"\r\n"))
                .unwrap_or_else(|e| file_io("write", &tmp, &e));
        }
        let next = offset + batch.consumed;
        let committed = spi::xact(|| {
            spi::async_commit();
            if ctx.cancel_requested() {
                return None;
            }
            // The table the job was submitted for, and no other that took its
            // name: checked before the COPY and after it (whose lock then keeps
            // the name on the table it loaded until the commit).
            super::identity::check_still_named(ctx, &rel);
            let n = if batch.rows > 0 {
                // In a subtransaction, so that a batch whose rows COPY refuses
                // can be searched for the row (COPY's own CONTEXT, which names
                // a line of the batch file, does not reach the job's error).
                match crate::subxact::subxact(true, || ctx.run_as_owner(&copy_sql)) {
                    Ok(n) => n,
                    Err(e) if rows_fault(&e) => {
                        let search = !stateful(&e) && !draws_on_state(&rel.oid, columns.as_deref());
                        let found = search.then(|| Probe {
                            ctx,
                            batch_file: &tmp,
                            probe_file: &probe,
                            copy_sql: copy_from(&probe),
                            splitter: if copy.format == Format::Binary {
                                Splitter::new(format, enc, max_row)
                            } else {
                                Splitter::new(format, enc, max_row).with_eol(batch_eol)
                            },
                            binary: copy.format == Format::Binary,
                        });
                        // A SIGTERM cancels the search's COPYs, as it cancels
                        // REINDEX and export: the job goes back to the queue
                        // and the search is worth nothing then, and it is up to
                        // ~2 log2(rows) COPYs of the batch's first rows (a
                        // 100,000-row batch kept a terminated worker ~20 s;
                        // hunt-65). Once the search is over, a SIGTERM waits for
                        // the end of the batch again.
                        let found = found.and_then(|p| {
                            IN_LONG_STATEMENT.store(true, Ordering::SeqCst);
                            let row = p.first_bad_row(batch.rows, &e);
                            IN_LONG_STATEMENT.store(false, Ordering::SeqCst);
                            row
                        });
                        // The batch's own error either way, never a probe's.
                        let detail = match found {
                            Some(k) => import_row_detail(read + k, read),
                            None => import_batch_detail(read + 1, read + batch.rows, read),
                        };
                        reraise_as(&e, row_error_code(&e), &detail, "bulk_import")
                    }
                    Err(e) => e.rethrow(),
                }
            } else {
                0
            };
            super::identity::check_still_named(ctx, &rel);
            let checkpoint = format!(
                "{{\"offset\": {next}, \"rows\": {}, \"read\": {}, \"size\": {size}}}",
                done + n,
                read + batch.rows
            );
            ctx.progress(
                if size == 0 {
                    1.0
                } else {
                    next as f64 / size as f64
                },
                Some(&checkpoint),
            );
            Some(n)
        });
        let Some(n) = committed else {
            break Outcome::Cancelled;
        };
        offset = next;
        done += n;
        read += batch.rows;
        if batch.last {
            let result = format!("{{\"rows\": {done}, \"bytes\": {offset}}}");
            break Outcome::Succeeded(Some(result));
        }
    };
    outcome
}

/// `&mut dyn Write` as a sized `Write`.
struct WriteRef<'a>(&'a mut dyn Write);

impl Write for WriteRef<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// COPY options for one batch (the header was skipped when the batches were cut).
fn copy_options(copy: &CopyOpts) -> String {
    copy.sql(false)
}

/// Whether an error of a batch's COPY is its rows' fault, worth finding the
/// row for: a data exception (class 22), an integrity constraint violation
/// (23), a limit a value passes (54: a vector of more than 16,000
/// dimensions, an index row over a page), or a binary field shorter than its
/// value (08P01, "insufficient data left in message", which a worker's COPY
/// from a file can get from nothing but its rows). A search that finds no
/// prefix failing alike names the batch instead (hunt-89: these named no row).
fn rows_fault(e: &CaughtError) -> bool {
    let code = report_of(e).sql_error_code();
    code == pgrx::PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION
        || matches!(&sqlstate_class(code), b"22" | b"23" | b"54")
}

/// The SQLSTATE a batch's rows' fault is raised with: its own, but a
/// protocol violation (08P01) as the bad binary data it is here (22P03, what
/// COPY gives a field its type leaves bytes of): class 08 names a broken
/// connection, which the job retried `max_attempts` times.
fn row_error_code(e: &CaughtError) -> pgrx::PgSqlErrorCode {
    match report_of(e).sql_error_code() {
        pgrx::PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION => {
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION
        }
        code => code,
    }
}

/// Whether an error comes from state a COPY changes and its rollback does not
/// undo: a sequence at its limit (2200H) fails every probe, from its first row.
fn stateful(e: &CaughtError) -> bool {
    report_of(e).sql_error_code() == pgrx::PgSqlErrorCode::ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED
}

/// Whether loading rows into the table can draw on state that rolling a probe
/// back does not reset, so that a probe could fail at another row than the
/// batch did with the same error (hunt-62: a domain CHECK on a `nextval`
/// default named row 3 where COPY failed at row 1): an enabled trigger of the
/// user's (it may call `nextval`), on the table or on any of its partitions
/// (hunt-89: a partition's trigger was missed, and the search named row 1 where
/// COPY failed at row 8; `pg_partition_tree` lists no plain table, hence the
/// table itself too), an identity column, a volatile CHECK (the table's, a
/// partition's, or a domain's of any column, through arrays, domains and
/// composites: hunt-92, a `nextval` in a domain CHECK named row 1 where COPY
/// failed at row 26), or a volatile default (a column's, or its domain's) of
/// a column the file does not fill. The search is then not made, and the
/// error names the batch's rows.
fn draws_on_state(rel_oid: &str, columns: Option<&[String]>) -> bool {
    if volatile_checks(rel_oid) {
        return true;
    }
    let triggers_or_identity = spi::flag(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger \
                         WHERE (tgrelid = $1::pg_catalog.oid \
                                OR tgrelid = ANY (ARRAY(SELECT relid FROM \
                                       pg_catalog.pg_partition_tree($1::pg_catalog.oid::pg_catalog.regclass)))) \
                           AND NOT tgisinternal AND tgenabled <> 'D') \
             OR EXISTS (SELECT FROM pg_catalog.pg_attribute \
                         WHERE attrelid = $1::pg_catalog.oid AND attnum > 0 AND NOT attisdropped \
                           AND attidentity <> '')",
        &[Some(rel_oid)],
    );
    // Without a column list the file fills every column: no default is used.
    let Some(columns) = columns else {
        return triggers_or_identity;
    };
    if triggers_or_identity {
        return true;
    }
    let defaults = spi::query(
        "SELECT a.attname::pg_catalog.text, \
                COALESCE(d.adbin, t.typdefaultbin)::pg_catalog.text \
           FROM pg_catalog.pg_attribute a \
           JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
           LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
          WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped \
            AND a.attgenerated = '' \
            AND COALESCE(d.adbin, t.typdefaultbin) IS NOT NULL",
        &[Some(rel_oid)],
    );
    defaults.rows.iter().any(|row| {
        let (Some(Some(name)), Some(Some(expr))) = (row.first(), row.get(1)) else {
            return false;
        };
        if columns.iter().any(|c| c == name) {
            return false;
        }
        stored_expr_is_volatile(expr)
    })
}

/// Whether an expression PostgreSQL stored as a node tree (`pg_attrdef.adbin`,
/// `pg_type.typdefaultbin`, `pg_constraint.conbin`) calls a volatile
/// function; one that cannot be read back counts as volatile.
fn stored_expr_is_volatile(expr: &str) -> bool {
    let Ok(expr) = std::ffi::CString::new(expr) else {
        return true;
    };
    // SAFETY: a node tree PostgreSQL stored, read back as stored; the walker
    // only reads it.
    unsafe { pg_sys::contain_volatile_functions(pg_sys::stringToNode(expr.as_ptr()).cast()) }
}

/// Whether a CHECK that loading a row of the table evaluates calls a volatile
/// function: the table's and its partitions' CHECK constraints, and those of
/// every domain a column's type is or holds (an array's elements, a domain's
/// base type, a composite's fields, a range's or multirange's subtype, to any depth).
fn volatile_checks(rel_oid: &str) -> bool {
    let checks = spi::query(
        "WITH RECURSIVE tree AS ( \
             SELECT $1::pg_catalog.oid AS rel \
             UNION SELECT relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.oid::pg_catalog.regclass)), \
           types(t) AS ( \
             SELECT a.atttypid FROM pg_catalog.pg_attribute a \
              WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped \
             UNION \
             SELECT n.t FROM types JOIN pg_catalog.pg_type ty ON ty.oid = types.t, \
                    LATERAL (SELECT ty.typbasetype WHERE ty.typtype = 'd' \
                             UNION ALL SELECT ty.typelem WHERE ty.typelem <> 0 \
                             UNION ALL SELECT f.atttypid FROM pg_catalog.pg_attribute f \
                                        WHERE ty.typtype = 'c' AND f.attrelid = ty.typrelid \
                                          AND f.attnum > 0 AND NOT f.attisdropped \
                             UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r \
                                        WHERE ty.typtype = 'r' AND r.rngtypid = ty.oid \
                             UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r \
                                        WHERE ty.typtype = 'm' AND r.rngmultitypid = ty.oid) n(t)) \
         SELECT c.conbin::pg_catalog.text FROM pg_catalog.pg_constraint c \
          WHERE c.contype = 'c' \
            AND (c.conrelid IN (SELECT rel FROM tree) OR c.contypid IN (SELECT t FROM types))",
        &[Some(rel_oid)],
    );
    checks.rows.iter().any(|row| {
        let Some(Some(expr)) = row.first() else {
            return false;
        };
        stored_expr_is_volatile(expr)
    })
}

/// Finds the row of a batch that its COPY refused: by bisection over prefixes
/// of the batch file (the smallest number of leading rows whose COPY fails
/// with the batch's own error), each prefix copied to `probe_file` and loaded
/// in a subtransaction that is rolled back at once. About log2(rows) + 1
/// COPYs and as many reads of the batch file, only after a failure; memory
/// stays fixed (a read buffer), whatever the batch's rows.
struct Probe<'a> {
    ctx: &'a Ctx<'a>,
    batch_file: &'a str,
    probe_file: &'a str,
    copy_sql: String,
    /// A splitter for the batch file from its start (binary: its header).
    splitter: Splitter,
    binary: bool,
}

/// What a probe's error must share with the batch's to name its row: a probe
/// runs column defaults and triggers again, and a sequence is not rolled
/// back, so a prefix can fail elsewhere or otherwise (a duplicate of another
/// key, a sequence at its end).
fn same_error(a: &CaughtError, b: &CaughtError) -> bool {
    let (a, b) = (report_of(a), report_of(b));
    a.sql_error_code() == b.sql_error_code()
        && a.message() == b.message()
        && a.detail() == b.detail()
}

impl Probe<'_> {
    /// The batch's first refused row (1-based); `None` if the batch file does
    /// not cut into `rows` rows again, or no prefix fails with `batch_error`
    /// (a fault that needs the whole batch, or that depends on state a probe
    /// changes: the caller then names the batch's rows).
    fn first_bad_row(&self, rows: u64, batch_error: &CaughtError) -> Option<u64> {
        if self.copy_rows(u64::MAX, false)? != rows {
            return None;
        }
        let (mut lo, mut hi) = (1u64, rows);
        let mut found = None;
        while lo < hi {
            // A SIGTERM that came before the search began (during the batch's
            // COPY) ends it too.
            if GOT_SIGTERM.load(Ordering::SeqCst) {
                return None;
            }
            let mid = lo + (hi - lo) / 2;
            match self.fails(mid) {
                Some(e) if same_error(&e, batch_error) => {
                    hi = mid;
                    found = Some(mid);
                }
                Some(_) => return None,
                None => lo = mid + 1,
            }
        }
        match found {
            Some(k) if k == lo => Some(k),
            _ => match self.fails(lo) {
                Some(e) if same_error(&e, batch_error) => Some(lo),
                _ => None,
            },
        }
    }

    /// Reads the batch file's rows from its start; with `write`, copies its
    /// first `k` rows (its header first, if binary, and an end marker after
    /// them) to the probe file. Returns the rows read (all of them when the
    /// file has fewer than `k`); `None` if the file cannot be read or cut.
    fn copy_rows(&self, k: u64, write: bool) -> Option<u64> {
        let mut splitter = self.splitter.clone();
        let mut from = File::open(self.batch_file).ok()?;
        let mut to = if write {
            Some(BufWriter::new(
                File::create(self.probe_file)
                    .unwrap_or_else(|e| file_io("create", self.probe_file, &e)),
            ))
        } else {
            None
        };
        let mut buf = vec![0u8; READ_CHUNK];
        let mut rows = 0u64;
        'read: while rows < k {
            pg_sys::check_for_interrupts!();
            let n = from.read(&mut buf).ok()?;
            if n == 0 {
                if let Some(Found::Row | Found::RowAtMarker) = splitter.finish().ok()? {
                    rows += 1;
                }
                break;
            }
            let mut at = 0;
            while at < n {
                let step = splitter.step(&buf[at..n]).ok()?;
                if let Some(to) = to.as_mut() {
                    to.write_all(&buf[at..at + step.used])
                        .unwrap_or_else(|e| file_io("write", self.probe_file, &e));
                }
                at += step.used;
                match step.found {
                    Some(Found::Row | Found::RowAtMarker) => {
                        rows += 1;
                        if rows == k {
                            break 'read;
                        }
                    }
                    Some(Found::End) => break 'read,
                    Some(Found::Header) | None => {}
                }
            }
        }
        if let Some(mut to) = to {
            if self.binary {
                to.write_all(&(-1i16).to_be_bytes())
                    .unwrap_or_else(|e| file_io("write", self.probe_file, &e));
            }
            to.flush()
                .unwrap_or_else(|e| file_io("write", self.probe_file, &e));
        }
        Some(rows)
    }

    /// The error of loading the batch's first `k` rows, if that fails on them;
    /// any other error (a cancel) is raised.
    fn fails(&self, k: u64) -> Option<Box<CaughtError>> {
        self.copy_rows(k, true)?;
        match crate::subxact::subxact(false, || self.ctx.run_as_owner(&self.copy_sql)) {
            Ok(_) => None,
            Err(e) if rows_fault(&e) => Some(e),
            Err(e) => e.rethrow(),
        }
    }
}
