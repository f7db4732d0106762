//! bulk_import: a server-side file loaded in batches, each batch its own committed
//! transaction that also records the byte offset the next batch starts at. A killed
//! import resumes at the last committed offset, so every row lands exactly once.
//!
//! The worker reads the file itself (Rust std::fs), splits it on row boundaries
//! (csv with RFC 4180 quoting and COPY's ESCAPE rule, text with backslash escapes,
//! binary on tuple boundaries), writes each batch to a temporary file under
//! `base/pgsql_tmp` (removed by PostgreSQL at restart if a crash leaves it) and loads
//! it with `COPY table FROM 'tmpfile'` run as the job's owner, so every check COPY
//! makes (INSERT privilege, pg_read_server_files, row-level security, triggers,
//! constraints) applies unchanged.

use super::args::{CopyOpts, Format, Rel, Spec};
use super::spi;
use super::worker::{Ctx, Outcome};
use pgrx::prelude::*;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// A batch never holds more than this many bytes (whatever batch_rows says).
const MAX_BATCH_BYTES: usize = 64 << 20;

const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

fn io_error(what: &str, path: &str, e: &std::io::Error) -> ! {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
        std::io::ErrorKind::PermissionDenied => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        _ => PgSqlErrorCode::ERRCODE_IO_ERROR,
    };
    ereport!(
        ERROR,
        code,
        format!("could not {what} file \"{path}\": {e}")
    );
}

fn bad_data(msg: String) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_BAD_COPY_FILE_FORMAT, msg);
}

/// A buffered reader with one byte of look-ahead.
pub struct Bytes<R: Read> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl<R: Read> Bytes<R> {
    pub fn new(inner: R) -> Self {
        Bytes {
            inner,
            buf: vec![0; 1 << 20],
            pos: 0,
            len: 0,
        }
    }

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

    #[inline]
    pub fn next_byte(&mut self) -> std::io::Result<Option<u8>> {
        if self.pos >= self.len && !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(b))
    }

    #[inline]
    pub fn peek(&mut self) -> std::io::Result<Option<u8>> {
        if self.pos >= self.len && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.pos]))
    }

    /// Appends bytes to `out` up to (not including) the first one for which `stop`
    /// is true, or to the end of the input.
    #[inline]
    pub fn copy_until(
        &mut self,
        out: &mut Vec<u8>,
        stop: impl Fn(u8) -> bool,
    ) -> std::io::Result<()> {
        loop {
            if self.pos >= self.len && !self.fill()? {
                return Ok(());
            }
            let s = &self.buf[self.pos..self.len];
            match s.iter().position(|&b| stop(b)) {
                Some(i) => {
                    out.extend_from_slice(&s[..i]);
                    self.pos += i;
                    return Ok(());
                }
                None => {
                    out.extend_from_slice(s);
                    self.pos = self.len;
                }
            }
        }
    }

    /// Reads exactly `n` bytes into `out`; false if the input ended first.
    pub fn take(&mut self, n: usize, out: &mut Vec<u8>) -> std::io::Result<bool> {
        let mut left = n;
        while left > 0 {
            if self.pos >= self.len && !self.fill()? {
                return Ok(false);
            }
            let k = left.min(self.len - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
            left -= k;
        }
        Ok(true)
    }
}

/// How rows are delimited in a csv or text file.
#[derive(Clone, Copy)]
pub enum Rows {
    Csv { quote: u8, escape: u8 },
    Text,
}

/// What reading one row found.
#[derive(PartialEq, Eq, Debug)]
pub enum RowEnd {
    /// A row (appended to the output, with its line ending).
    Row,
    /// The end of the input (nothing appended).
    Eof,
    /// The end-of-data marker `\.` (nothing appended).
    EndMarker,
}

/// Reads one row (with its line ending) onto `out`, as COPY would delimit it.
pub fn read_row<R: Read>(
    input: &mut Bytes<R>,
    rows: Rows,
    out: &mut Vec<u8>,
) -> std::io::Result<RowEnd> {
    let start = out.len();
    let mut in_quotes = false;
    loop {
        // Copy ordinary bytes in bulk; stop at the next one that matters.
        match rows {
            Rows::Text => input.copy_until(out, |b| b == b'\\' || b == b'\n' || b == b'\r')?,
            Rows::Csv { quote, escape } if in_quotes => {
                input.copy_until(out, |b| b == quote || b == escape)?
            }
            Rows::Csv { quote, .. } => {
                input.copy_until(out, |b| b == quote || b == b'\n' || b == b'\r')?
            }
        }
        let Some(b) = input.next_byte()? else {
            return Ok(if out.len() == start {
                RowEnd::Eof
            } else {
                RowEnd::Row
            });
        };
        out.push(b);
        match rows {
            Rows::Text => {
                if b == b'\\' {
                    if let Some(c) = input.next_byte()? {
                        out.push(c);
                    }
                    continue;
                }
            }
            Rows::Csv { quote, escape } => {
                if in_quotes {
                    if b == escape && escape != quote {
                        if let Some(c) = input.peek()? {
                            if c == quote || c == escape {
                                out.push(c);
                                input.next_byte()?;
                            }
                        }
                    } else if b == quote {
                        in_quotes = false;
                    }
                    continue;
                }
                if b == quote {
                    in_quotes = true;
                    continue;
                }
            }
        }
        if b == b'\n' || b == b'\r' {
            if b == b'\r' && input.peek()? == Some(b'\n') {
                out.push(b'\n');
                input.next_byte()?;
            }
            let row = &out[start..];
            let body = row
                .strip_suffix(b"\r\n")
                .or_else(|| row.strip_suffix(b"\n"))
                .or_else(|| row.strip_suffix(b"\r"));
            if body == Some(b"\\.") {
                out.truncate(start);
                return Ok(RowEnd::EndMarker);
            }
            return Ok(RowEnd::Row);
        }
    }
}

/// Reads the header of a binary COPY file (signature, flags, extension area).
pub fn read_binary_header<R: Read>(input: &mut Bytes<R>) -> std::io::Result<Vec<u8>> {
    let mut h = Vec::new();
    if !input.take(19, &mut h)? || &h[..11] != BINARY_SIGNATURE {
        bad_data("not a binary COPY file (signature missing)".into());
    }
    let ext = u32::from_be_bytes([h[15], h[16], h[17], h[18]]) as usize;
    if !input.take(ext, &mut h)? {
        bad_data("binary COPY file header is truncated".into());
    }
    Ok(h)
}

/// Reads one tuple of a binary COPY file onto `out`.
pub fn read_binary_tuple<R: Read>(
    input: &mut Bytes<R>,
    out: &mut Vec<u8>,
) -> std::io::Result<RowEnd> {
    let start = out.len();
    if !input.take(2, out)? {
        if out.len() == start {
            return Ok(RowEnd::Eof);
        }
        bad_data("binary COPY file is truncated".into());
    }
    let fields = i16::from_be_bytes([out[start], out[start + 1]]);
    if fields == -1 {
        out.truncate(start);
        return Ok(RowEnd::EndMarker);
    }
    for _ in 0..fields.max(0) {
        let at = out.len();
        if !input.take(4, out)? {
            bad_data("binary COPY file is truncated".into());
        }
        let len = i32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
        if len > 0 && !input.take(len as usize, out)? {
            bad_data("binary COPY file is truncated".into());
        }
    }
    Ok(RowEnd::Row)
}

/// One batch read from the file.
pub struct Batch {
    pub data: Vec<u8>,
    pub rows: u64,
    /// Bytes of the input the batch covers.
    pub consumed: u64,
    /// No more rows follow.
    pub last: bool,
}

/// Reads up to `max_rows` rows.
pub fn read_batch<R: Read>(
    input: &mut Bytes<R>,
    format: Format,
    rows: Rows,
    max_rows: u64,
    prefix: &[u8],
) -> std::io::Result<Batch> {
    let mut data = Vec::with_capacity(prefix.len() + (4 << 20).min(MAX_BATCH_BYTES));
    data.extend_from_slice(prefix);
    let mut n = 0;
    let mut consumed = 0u64;
    let mut last = false;
    while n < max_rows && data.len() < MAX_BATCH_BYTES {
        let before = data.len();
        let end = match format {
            Format::Binary => read_binary_tuple(input, &mut data)?,
            _ => read_row(input, rows, &mut data)?,
        };
        match end {
            RowEnd::Row => {
                n += 1;
                consumed += (data.len() - before) as u64;
            }
            RowEnd::Eof | RowEnd::EndMarker => {
                last = true;
                break;
            }
        }
    }
    if !last && input.peek()?.is_none() {
        last = true;
    }
    if format == Format::Binary {
        data.extend_from_slice(&(-1i16).to_be_bytes());
    }
    Ok(Batch {
        data,
        rows: n,
        consumed,
        last,
    })
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
    let (mut offset, mut done) = spi::xact(|| {
        (
            ctx.checkpoint_field("offset")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0),
            ctx.checkpoint_field("rows")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0),
        )
    });
    let mut file = File::open(path).unwrap_or_else(|e| io_error("open", path, &e));
    let size = file
        .metadata()
        .map(|m| m.len())
        .unwrap_or_else(|e| io_error("stat", path, &e));
    if offset > size {
        bad_data(format!(
            "file \"{path}\" is shorter ({size} bytes) than the {offset} bytes already imported"
        ));
    }
    let rows = match copy.format {
        Format::Csv => Rows::Csv {
            quote: copy.quote_byte(),
            escape: copy.escape_byte(),
        },
        _ => Rows::Text,
    };
    // The header (skipped for csv/text, repeated at the top of every binary batch).
    let mut prefix = Vec::new();
    {
        let mut head = Bytes::new(&mut file);
        match copy.format {
            Format::Binary => {
                prefix =
                    read_binary_header(&mut head).unwrap_or_else(|e| io_error("read", path, &e));
                offset = offset.max(prefix.len() as u64);
            }
            _ if copy.header && offset == 0 => {
                let mut skipped = Vec::new();
                read_row(&mut head, rows, &mut skipped)
                    .unwrap_or_else(|e| io_error("read", path, &e));
                offset = skipped.len() as u64;
            }
            _ => {}
        }
    }
    file.seek(SeekFrom::Start(offset))
        .unwrap_or_else(|e| io_error("seek in", path, &e));
    let mut input = Bytes::new(file);

    // SAFETY: DataDir is the server's data directory (set at startup, never freed).
    let data_dir = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) }
        .to_string_lossy()
        .into_owned();
    let tmp_dir = format!("{data_dir}/base/pgsql_tmp");
    let _ = std::fs::create_dir_all(&tmp_dir);
    // SAFETY: reading a backend global.
    let tmp = format!("{tmp_dir}/pgsql_tmp_arrw_job_{}_{}", ctx.job.id, unsafe {
        pgrx::pg_sys::MyProcPid
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
    let copy_sql = format!(
        "COPY {}{cols} FROM {} WITH ({})",
        rel.qname,
        spi::literal(&tmp),
        copy_options(copy)
    );

    let outcome = loop {
        if let Some(o) = ctx.stop() {
            break o;
        }
        let batch = read_batch(&mut input, copy.format, rows, *batch_rows as u64, &prefix)
            .unwrap_or_else(|e| io_error("read", path, &e));
        if batch.rows > 0 {
            let mut f = File::create(&tmp).unwrap_or_else(|e| io_error("create", &tmp, &e));
            f.write_all(&batch.data)
                .unwrap_or_else(|e| io_error("write", &tmp, &e));
            drop(f);
        }
        let next = offset + batch.consumed;
        let committed = spi::xact(|| {
            spi::async_commit();
            if ctx.cancel_requested() {
                return None;
            }
            let n = if batch.rows > 0 {
                ctx.as_owner(|| spi::exec(&copy_sql, &[]))
            } else {
                0
            };
            let checkpoint = format!(
                "{{\"offset\": {next}, \"rows\": {}, \"size\": {size}}}",
                done + n
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
        if batch.last {
            let result = format!("{{\"rows\": {done}, \"bytes\": {offset}}}");
            break Outcome::Succeeded(Some(result));
        }
    };
    let _ = std::fs::remove_file(&tmp);
    outcome
}

/// COPY options for one batch (the header was skipped when the batches were cut).
fn copy_options(copy: &CopyOpts) -> String {
    copy.sql(false)
}
