//! bulk_import's file handling, without PostgreSQL: cutting a COPY file into rows
//! exactly where `COPY FROM` would, and the checks on a job's arguments that need no
//! server.
//!
//! [`Splitter`] is fed the file in chunks of any size and reports each row
//! boundary. It keeps a few bytes of state, never a row: the caller streams the
//! bytes on (bulk_import writes them to a batch file), so memory does not grow
//! with the length of a row. A row longer than the caller's limit is an error.
//!
//! Row boundaries follow PostgreSQL 15's `CopyReadLineText` and binary tuple
//! format:
//! - line endings: the first line's ending (`\n`, `\r\n` or `\r`) is the
//!   file's; a line ending another way is an error (22P04 "literal carriage
//!   return found in data" and the like, csv: "unquoted ..."), as COPY reads a
//!   whole file. (Each batch's COPY would decide afresh from its own first line:
//!   the splitter keeps the file's ending across batches, [`Splitter::eol`].)
//! - text: a backslash escapes the next character (so `\` + newline is data);
//!   `\.` followed by the line ending ends the line. At the start of a line it
//!   ends the data; after data (`one\.`) it ends that row, and COPY reading a
//!   file goes on with the next line ([`Found::RowAtMarker`]). `\.` followed by
//!   anything else (or nothing) is an error (22P04 "end-of-copy marker
//!   corrupt"), as is a line ending after it other than the file's;
//! - csv: a newline inside quotes is data; inside quotes an `ESCAPE` character
//!   (when it differs from `QUOTE`) makes a following quote data; `\.` alone on
//!   a line (and not inside quotes) ends the data, followed by anything else it
//!   is data;
//! - binary: a 19-byte header (signature, flags, extension length) and its
//!   extension area, then tuples (`int16` field count, each field an `int32`
//!   length and that many bytes, -1 for NULL) until a field count of -1.
//!
//! COPY cuts lines after converting the file to the database encoding, where no
//! byte of a multibyte character is ASCII. In a few client-only encodings (SJIS,
//! BIG5, GBK, UHC, GB18030, JOHAB) the second byte of a character can be a
//! backslash, a quote or `\r`/`\n`; there the splitter steps over whole
//! characters ([`Encoding`]), as COPY's conversion does.

use std::fmt;

/// The longest row COPY can hold: its line buffer is limited to PostgreSQL's
/// `MaxAllocSize` (1 GB - 1), including the terminating NUL.
pub const COPY_MAX_ROW_BYTES: u64 = 0x3fff_fffe;

/// The 11-byte signature that starts a binary COPY file.
pub const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Length of the fixed part of a binary COPY header.
pub const BINARY_HEADER_LEN: usize = 19;

/// How the characters of a file are delimited, as far as cutting rows is
/// concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// No byte of a multibyte character is ASCII (UTF8, every server encoding,
    /// single-byte encodings): bytes can be examined one by one.
    Plain,
    /// SJIS and SHIFT_JIS_2004: 0xA1..=0xDF are one-byte kana, other bytes with
    /// the high bit set start a two-byte character.
    Sjis,
    /// BIG5, GBK, UHC and GB18030: a byte with the high bit set starts a two-byte
    /// character (GB18030's four-byte characters are two such pairs, which is
    /// how PostgreSQL measures them from their first byte too).
    HighBitPairs,
    /// JOHAB (measured as EUC by PostgreSQL): 0x8E starts two bytes, 0x8F three,
    /// any other byte with the high bit set two.
    Johab,
}

impl Encoding {
    /// The encoding of PostgreSQL's canonical encoding name (what
    /// `pg_encoding_to_char` returns); unknown names are [`Encoding::Plain`].
    pub fn from_pg_name(name: &str) -> Encoding {
        match name.to_ascii_uppercase().as_str() {
            "SJIS" | "SHIFT_JIS_2004" => Encoding::Sjis,
            "BIG5" | "GBK" | "UHC" | "GB18030" => Encoding::HighBitPairs,
            "JOHAB" => Encoding::Johab,
            _ => Encoding::Plain,
        }
    }

    /// Length of the character starting with `lead` (1 for ASCII).
    #[inline]
    pub fn char_len(self, lead: u8) -> u32 {
        if lead < 0x80 {
            return 1;
        }
        match self {
            Encoding::Plain => 1,
            Encoding::Sjis if (0xa1..=0xdf).contains(&lead) => 1,
            Encoding::Sjis | Encoding::HighBitPairs => 2,
            Encoding::Johab if lead == 0x8f => 3,
            Encoding::Johab => 2,
        }
    }
}

/// The layout of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    /// `escape` is `None` when it is the quote character (COPY's default).
    Csv {
        quote: u8,
        escape: Option<u8>,
    },
    Binary,
}

impl Format {
    /// csv with COPY's QUOTE and ESCAPE (an escape equal to the quote is no escape).
    pub fn csv(quote: u8, escape: u8) -> Format {
        Format::Csv {
            quote,
            escape: (escape != quote).then_some(escape),
        }
    }
}

/// What [`Splitter::step`] found at the end of the bytes it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// A row ended (its line ending or last field included).
    Row,
    /// The end-of-data marker (a `\.` line, or a binary field count of -1)
    /// ended the data. Nothing after it is part of the data.
    End,
    /// text: a row ended by `\.` and a line ending (`one\.`). COPY loads the
    /// row (the bytes before `\.`, [`Splitter::marker_row_len`]) and, reading a
    /// file, goes on with the next line; on a header line it ends the data.
    RowAtMarker,
    /// The binary header and its extension area ended.
    Header,
}

/// The result of one [`Splitter::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input consumed, from its start.
    pub used: usize,
    /// What ends at `used`; `None` when the input ran out first (`used` is then
    /// the whole input).
    pub found: Option<Found>,
}

/// Why the input cannot be cut into rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// A row (or binary tuple) is longer than `limit` bytes.
    RowTooLong { limit: u64 },
    /// The binary COPY signature is missing.
    NotBinaryCopy,
    /// The input ends inside the binary header or a binary tuple.
    Truncated,
    /// A binary tuple's field count is negative (and not the -1 trailer).
    BadFieldCount(i16),
    /// A binary field's length is below -1.
    BadFieldSize(i32),
    /// text/csv: a line ends with `\r` (or a `\r` not followed by `\n`) in a
    /// file whose lines end otherwise; `csv` picks COPY's wording.
    StrayCr { csv: bool },
    /// text/csv: a line ends with `\n` in a file whose lines end with `\r` or
    /// `\r\n`.
    StrayNl { csv: bool },
    /// text: `\.` followed by something other than a line ending.
    MarkerCorrupt,
    /// `\.` followed by a line ending other than the file's.
    MarkerNewline,
    /// binary: bytes after the -1 trailer (two files joined, say), which COPY
    /// refuses; see [`Splitter::refuses_data_after_end`].
    DataAfterEnd,
}

impl SplitError {
    /// COPY's hint for the error, if it has one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SplitError::StrayCr { csv: false } => Some("Use \"\\r\" to represent carriage return."),
            SplitError::StrayCr { csv: true } => {
                Some("Use quoted CSV field to represent carriage return.")
            }
            SplitError::StrayNl { csv: false } => Some("Use \"\\n\" to represent newline."),
            SplitError::StrayNl { csv: true } => Some("Use quoted CSV field to represent newline."),
            _ => None,
        }
    }
}

/// A file's line ending, as COPY decides it from the first line that ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Eol {
    /// No line has ended yet (or only lines ended by `\.`, which decide nothing).
    #[default]
    Unknown,
    Nl,
    CrNl,
    Cr,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::RowTooLong { limit } => write!(f, "a row is longer than {limit} bytes"),
            SplitError::NotBinaryCopy => f.write_str("not a binary COPY file (signature missing)"),
            SplitError::Truncated => f.write_str("binary COPY file is truncated"),
            SplitError::BadFieldCount(n) => {
                write!(f, "invalid field count {n} in binary COPY file")
            }
            SplitError::BadFieldSize(n) => write!(f, "invalid field size {n} in binary COPY file"),
            SplitError::StrayCr { csv: false } => {
                f.write_str("literal carriage return found in data")
            }
            SplitError::StrayCr { csv: true } => {
                f.write_str("unquoted carriage return found in data")
            }
            SplitError::StrayNl { csv: false } => f.write_str("literal newline found in data"),
            SplitError::StrayNl { csv: true } => f.write_str("unquoted newline found in data"),
            SplitError::MarkerCorrupt => f.write_str("end-of-copy marker corrupt"),
            SplitError::MarkerNewline => {
                f.write_str("end-of-copy marker does not match previous newline style")
            }
            SplitError::DataAfterEnd => f.write_str("received copy data after EOF marker"),
        }
    }
}

impl std::error::Error for SplitError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Normal,
    /// A row ended with an unquoted `\r` while the line ending is unknown or
    /// `\r\n`: the next byte decides.
    AfterCr,
    /// text: after an unescaped backslash.
    TextEscape,
    /// text: after `\.`.
    TextMarker,
    /// text: after `\.\r` in a `\r\n` file.
    TextMarkerCr,
    /// csv: the row's first byte was a backslash.
    CsvBackslash,
    /// csv: the row began with `\.`.
    CsvDot,
    /// csv: the row is `\.\r` in a `\r\n` file.
    CsvMarkerCr,
    /// binary: `have` bytes of the fixed header read.
    BinHeader {
        have: usize,
    },
    /// binary: `left` bytes of the header's extension area to skip.
    BinExt {
        left: u64,
    },
    /// binary: `have` bytes of a tuple's field count read.
    BinCount {
        have: usize,
    },
    /// binary: `have` bytes of a field length read, `fields` fields left.
    BinLen {
        have: usize,
        fields: u16,
    },
    /// binary: `left` bytes of field data, then `fields` more fields.
    BinData {
        left: u64,
        fields: u16,
    },
    /// The end-of-data marker was seen.
    Done,
}

/// Cuts a COPY file into rows, incrementally. See the module documentation.
#[derive(Clone, Debug)]
pub struct Splitter {
    format: Format,
    enc: Encoding,
    max_row: u64,
    st: St,
    /// Bytes of the current row (or binary header) consumed so far.
    row_len: u64,
    /// Trailing bytes of a multibyte character still to pass over.
    skip: u32,
    in_quote: bool,
    last_was_esc: bool,
    /// text: bytes of the row before the backslash of a pending `\.`.
    before_marker: u64,
    /// The file's line ending, once a line decided it.
    eol: Eol,
    /// binary: the fixed header, then a small field-count/length buffer.
    header: [u8; BINARY_HEADER_LEN],
    small: [u8; 4],
}

impl Splitter {
    /// A splitter at the start of a file (binary: before the header) or, for
    /// text and csv, at the start of any row. Rows longer than `max_row` bytes
    /// are an error.
    pub fn new(format: Format, enc: Encoding, max_row: u64) -> Splitter {
        Splitter {
            format,
            enc,
            max_row,
            st: if format == Format::Binary {
                St::BinHeader { have: 0 }
            } else {
                St::Normal
            },
            row_len: 0,
            skip: 0,
            in_quote: false,
            last_was_esc: false,
            before_marker: 0,
            eol: Eol::Unknown,
            header: [0; BINARY_HEADER_LEN],
            small: [0; 4],
        }
    }

    /// A binary splitter positioned just after a header (at the first tuple).
    pub fn binary_after_header(max_row: u64) -> Splitter {
        let mut s = Splitter::new(Format::Binary, Encoding::Plain, max_row);
        s.st = St::BinCount { have: 0 };
        s
    }

    /// The binary header to put at the top of each batch: the file's signature and
    /// flags, with an empty extension area (COPY ignores the extension's content).
    /// Meaningful once [`Found::Header`] was reported.
    pub fn binary_header(&self) -> [u8; BINARY_HEADER_LEN] {
        let mut h = self.header;
        h[15..19].copy_from_slice(&0u32.to_be_bytes());
        h
    }

    /// Bytes of the row in progress consumed so far.
    pub fn row_len(&self) -> u64 {
        self.row_len
    }

    /// The file's line ending as decided so far (text and csv).
    pub fn eol(&self) -> Eol {
        self.eol
    }

    /// Continues a file whose line ending earlier lines decided: a splitter
    /// started in the middle of a file (after its header, or where an
    /// interrupted import resumes) holds its lines to it, as one COPY of the
    /// whole file would.
    pub fn with_eol(mut self, eol: Eol) -> Splitter {
        self.eol = eol;
        self
    }

    /// Whether bytes after [`Found::End`] are an error ([`SplitError::DataAfterEnd`]):
    /// in a binary file, as COPY says; a text or csv file's rest after its
    /// `\.` line is ignored, as COPY ignores it.
    pub fn refuses_data_after_end(&self) -> bool {
        self.format == Format::Binary
    }

    /// After [`Found::RowAtMarker`]: the bytes of the row before its `\.`,
    /// the row as COPY loads it.
    pub fn marker_row_len(&self) -> u64 {
        self.before_marker
    }

    /// Consumes `input` from its start up to and including the first boundary
    /// (row end, end marker, end of the binary header), or all of it.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, SplitError> {
        let mut i = 0;
        let r = if self.format == Format::Binary {
            self.step_binary(input, &mut i)
        } else {
            self.step_text(input, &mut i)
        };
        if self.row_len > self.max_row {
            return Err(SplitError::RowTooLong {
                limit: self.max_row,
            });
        }
        let found = r?;
        if found.is_some() {
            self.row_len = 0;
        }
        Ok(Step { used: i, found })
    }

    /// At the end of the input: what the bytes since the last boundary amount to
    /// (`None` if there are none).
    pub fn finish(&mut self) -> Result<Option<Found>, SplitError> {
        let pending = self.row_len > 0;
        let csv = self.format != Format::Text;
        let found = match self.st {
            St::Done => None,
            // COPY reads `\0` past the end: not a line ending.
            St::TextMarker | St::TextMarkerCr => return Err(SplitError::MarkerCorrupt),
            // csv: `\.` then `\r` at the end is data, and then a `\r` of a
            // `\r\n` file without its `\n`.
            St::CsvMarkerCr => return Err(SplitError::StrayCr { csv }),
            St::AfterCr if self.eol == Eol::CrNl => return Err(SplitError::StrayCr { csv }),
            St::AfterCr => {
                self.eol = Eol::Cr;
                Some(Found::Row)
            }
            St::BinHeader { .. } => return Err(SplitError::NotBinaryCopy),
            St::BinExt { .. } => return Err(SplitError::Truncated),
            // A file may end without its trailer, even one byte into the
            // next field count: COPY takes a count it cannot read whole for
            // the end of the data (CopyReadBinaryTuple), and so loads such a
            // file, which the job refused as truncated (hunt-118).
            St::BinCount { .. } => None,
            St::BinLen { .. } | St::BinData { .. } => return Err(SplitError::Truncated),
            _ if pending => Some(Found::Row),
            _ => None,
        };
        self.row_len = 0;
        self.st = St::Done;
        Ok(found)
    }

    /// Does byte `b` need the state machine (rather than being plain data) in
    /// state Normal with no character to skip?
    #[inline]
    fn special(&self, b: u8) -> bool {
        if b >= 0x80 {
            return self.enc != Encoding::Plain;
        }
        match self.format {
            Format::Text => b == b'\\' || b == b'\n' || b == b'\r',
            Format::Csv { quote, escape } => {
                if self.in_quote {
                    b == quote || Some(b) == escape
                } else {
                    b == quote || b == b'\n' || b == b'\r'
                }
            }
            Format::Binary => true,
        }
    }

    fn step_text(&mut self, input: &[u8], i: &mut usize) -> Result<Option<Found>, SplitError> {
        while *i < input.len() {
            // Runs of ordinary bytes in bulk (never a row's first byte, which may
            // start csv's `\.`).
            if self.st == St::Normal && self.skip == 0 && self.row_len > 0 {
                let rest = &input[*i..];
                let n = rest
                    .iter()
                    .position(|&b| self.special(b))
                    .unwrap_or(rest.len());
                if n > 0 {
                    *i += n;
                    self.row_len += n as u64;
                    // Ordinary bytes are never the escape character.
                    self.last_was_esc = false;
                    if self.row_len > self.max_row {
                        return Ok(None);
                    }
                    continue;
                }
            }
            let b = input[*i];
            *i += 1;
            self.row_len += 1;
            match self.text_byte(b)? {
                Act::More => {}
                Act::Ends(f) => return Ok(Some(f)),
                Act::EndsBefore(f) => {
                    *i -= 1;
                    self.row_len -= 1;
                    return Ok(Some(f));
                }
            }
            if self.row_len > self.max_row {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// One byte of a text or csv file: PostgreSQL 15's `CopyReadLineText`, a
    /// byte at a time (its look-ahead after `\r` and `\.` are states here).
    fn text_byte(&mut self, b: u8) -> Result<Act, SplitError> {
        let csv = self.format != Format::Text;
        Ok(match self.st {
            St::AfterCr => {
                self.st = St::Normal;
                if b == b'\n' {
                    self.eol = Eol::CrNl;
                    Act::Ends(Found::Row)
                } else if self.eol == Eol::CrNl {
                    return Err(SplitError::StrayCr { csv });
                } else {
                    self.eol = Eol::Cr;
                    Act::EndsBefore(Found::Row)
                }
            }
            St::TextEscape => {
                self.st = St::Normal;
                if b == b'.' {
                    self.st = St::TextMarker;
                } else {
                    // The escaped character is data, all of its bytes.
                    self.skip = self.enc.char_len(b) - 1;
                }
                Act::More
            }
            St::TextMarker => {
                if self.eol == Eol::CrNl {
                    match b {
                        b'\r' => {
                            self.st = St::TextMarkerCr;
                            return Ok(Act::More);
                        }
                        b'\n' => return Err(SplitError::MarkerNewline),
                        _ => return Err(SplitError::MarkerCorrupt),
                    }
                }
                if b != b'\r' && b != b'\n' {
                    return Err(SplitError::MarkerCorrupt);
                }
                if (self.eol == Eol::Nl && b != b'\n') || (self.eol == Eol::Cr && b != b'\r') {
                    return Err(SplitError::MarkerNewline);
                }
                // An unknown line ending stays unknown: after `\.\r` a `\n`
                // starts the next line.
                self.marker_ends()
            }
            St::TextMarkerCr => match b {
                b'\n' => self.marker_ends(),
                b'\r' => return Err(SplitError::MarkerNewline),
                _ => return Err(SplitError::MarkerCorrupt),
            },
            St::CsvBackslash => {
                self.st = St::Normal;
                if b == b'.' {
                    self.st = St::CsvDot;
                    Act::More
                } else {
                    self.normal_byte(b, false)?
                }
            }
            St::CsvDot => {
                let marker = if self.eol == Eol::CrNl {
                    if b == b'\r' {
                        self.st = St::CsvMarkerCr;
                        return Ok(Act::More);
                    }
                    false
                } else {
                    b == b'\r' || b == b'\n'
                };
                if marker {
                    if (self.eol == Eol::Nl && b != b'\n') || (self.eol == Eol::Cr && b != b'\r') {
                        return Err(SplitError::MarkerNewline);
                    }
                    self.st = St::Done;
                    Act::Ends(Found::End)
                } else {
                    // `\.` followed by more is data: look at the dot and this
                    // byte again as ordinary csv (as COPY does).
                    self.st = St::Normal;
                    match self.normal_byte(b'.', false)? {
                        Act::More => self.normal_byte(b, false)?,
                        other => other,
                    }
                }
            }
            St::CsvMarkerCr => match b {
                b'\n' => {
                    self.st = St::Done;
                    Act::Ends(Found::End)
                }
                b'\r' => return Err(SplitError::MarkerNewline),
                // Data after all: the dot, then this `\r` of a `\r\n` file
                // not followed by `\n`.
                _ => return Err(SplitError::StrayCr { csv }),
            },
            St::Normal => {
                let first = self.row_len == 1;
                self.normal_byte(b, first)?
            }
            St::Done => Act::More,
            St::BinHeader { .. }
            | St::BinExt { .. }
            | St::BinCount { .. }
            | St::BinLen { .. }
            | St::BinData { .. } => unreachable!("binary state in a text splitter"),
        })
    }

    /// The line ending after a text `\.` was consumed: the end of the data, or
    /// of a row if the line held one before the marker.
    fn marker_ends(&mut self) -> Act {
        if self.before_marker > 0 {
            self.st = St::Normal;
            Act::Ends(Found::RowAtMarker)
        } else {
            self.st = St::Done;
            Act::Ends(Found::End)
        }
    }

    /// An unquoted line-ending byte `b` in state Normal.
    fn line_end(&mut self, b: u8) -> Result<Act, SplitError> {
        let csv = self.format != Format::Text;
        if b == b'\n' {
            if matches!(self.eol, Eol::Cr | Eol::CrNl) {
                return Err(SplitError::StrayNl { csv });
            }
            self.eol = Eol::Nl;
            return Ok(Act::Ends(Found::Row));
        }
        match self.eol {
            Eol::Nl => Err(SplitError::StrayCr { csv }),
            Eol::Cr => Ok(Act::Ends(Found::Row)),
            Eol::Unknown | Eol::CrNl => {
                self.st = St::AfterCr;
                Ok(Act::More)
            }
        }
    }

    /// A byte in state Normal (`first`: the row's first byte).
    fn normal_byte(&mut self, b: u8, first: bool) -> Result<Act, SplitError> {
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(Act::More);
        }
        match self.format {
            Format::Text => match b {
                b'\\' => {
                    self.before_marker = self.row_len - 1;
                    self.st = St::TextEscape;
                }
                b'\n' | b'\r' => return self.line_end(b),
                _ => self.skip = self.enc.char_len(b) - 1,
            },
            Format::Csv { quote, escape } => {
                if self.in_quote && Some(b) == escape {
                    self.last_was_esc = !self.last_was_esc;
                }
                if b == quote && !self.last_was_esc {
                    self.in_quote = !self.in_quote;
                }
                if Some(b) != escape {
                    self.last_was_esc = false;
                }
                if !self.in_quote && (b == b'\r' || b == b'\n') {
                    return self.line_end(b);
                } else if b == b'\\' && first {
                    self.st = St::CsvBackslash;
                } else {
                    self.skip = self.enc.char_len(b) - 1;
                }
            }
            Format::Binary => unreachable!("binary byte in a text splitter"),
        }
        Ok(Act::More)
    }

    fn step_binary(&mut self, input: &[u8], i: &mut usize) -> Result<Option<Found>, SplitError> {
        while *i < input.len() {
            match self.st {
                St::BinHeader { have } => {
                    let n = (BINARY_HEADER_LEN - have).min(input.len() - *i);
                    self.header[have..have + n].copy_from_slice(&input[*i..*i + n]);
                    *i += n;
                    let have = have + n;
                    self.st = St::BinHeader { have };
                    let sig = have.min(BINARY_SIGNATURE.len());
                    if self.header[..sig] != BINARY_SIGNATURE[..sig] {
                        return Err(SplitError::NotBinaryCopy);
                    }
                    if have == BINARY_HEADER_LEN {
                        let ext = u32::from_be_bytes([
                            self.header[15],
                            self.header[16],
                            self.header[17],
                            self.header[18],
                        ]) as u64;
                        if ext == 0 {
                            self.st = St::BinCount { have: 0 };
                            return Ok(Some(Found::Header));
                        }
                        self.st = St::BinExt { left: ext };
                    }
                }
                St::BinExt { left } => {
                    let n = left.min((input.len() - *i) as u64);
                    *i += n as usize;
                    if n == left {
                        self.st = St::BinCount { have: 0 };
                        return Ok(Some(Found::Header));
                    }
                    self.st = St::BinExt { left: left - n };
                }
                St::BinCount { have } => {
                    self.small[have] = input[*i];
                    *i += 1;
                    self.row_len += 1;
                    if have == 0 {
                        self.st = St::BinCount { have: 1 };
                        continue;
                    }
                    let n = i16::from_be_bytes([self.small[0], self.small[1]]);
                    match n {
                        -1 => {
                            self.st = St::Done;
                            return Ok(Some(Found::End));
                        }
                        n if n < -1 => return Err(SplitError::BadFieldCount(n)),
                        0 => {
                            self.st = St::BinCount { have: 0 };
                            return Ok(Some(Found::Row));
                        }
                        n => {
                            self.st = St::BinLen {
                                have: 0,
                                fields: n as u16,
                            }
                        }
                    }
                }
                St::BinLen { have, fields } => {
                    self.small[have] = input[*i];
                    *i += 1;
                    self.row_len += 1;
                    if have < 3 {
                        self.st = St::BinLen {
                            have: have + 1,
                            fields,
                        };
                        continue;
                    }
                    let len = i32::from_be_bytes(self.small);
                    if len < -1 {
                        return Err(SplitError::BadFieldSize(len));
                    }
                    // A field announced longer than a row may be is that
                    // error at once, as COPY refuses it (54000) before it
                    // reads the data: not "truncated" when the file ends
                    // first (a length of 2 GB; hunt-139).
                    if self.row_len.saturating_add(len.max(0) as u64) > self.max_row {
                        return Err(SplitError::RowTooLong {
                            limit: self.max_row,
                        });
                    }
                    if let Some(f) = self.field_done(len.max(0) as u64, fields) {
                        return Ok(Some(f));
                    }
                }
                St::BinData { left, fields } => {
                    let n = left.min((input.len() - *i) as u64);
                    *i += n as usize;
                    self.row_len += n;
                    if self.row_len > self.max_row {
                        return Ok(None);
                    }
                    if let Some(f) = self.field_done(left - n, fields) {
                        return Ok(Some(f));
                    }
                }
                St::Done => return Ok(Some(Found::End)),
                _ => unreachable!("text state in a binary splitter"),
            }
            if self.row_len > self.max_row {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// After a field length was read (`left` data bytes to come) or data was
    /// consumed: the next state, and `Row` when the tuple is complete.
    fn field_done(&mut self, left: u64, fields: u16) -> Option<Found> {
        if left > 0 {
            self.st = St::BinData { left, fields };
            return None;
        }
        if fields <= 1 {
            self.st = St::BinCount { have: 0 };
            return Some(Found::Row);
        }
        self.st = St::BinLen {
            have: 0,
            fields: fields - 1,
        };
        None
    }
}

enum Act {
    More,
    /// A boundary after the byte just consumed.
    Ends(Found),
    /// A boundary before it (it belongs to what follows).
    EndsBefore(Found),
}

/// Cuts all of `data` into pieces, each ending at a boundary (the last one may
/// end at the end of the input): the reference the incremental use is tested
/// against, and handy in tests.
pub fn split_all(
    data: &[u8],
    format: Format,
    enc: Encoding,
    max_row: u64,
) -> Result<Vec<(Vec<u8>, Found)>, SplitError> {
    split_all_with(data, Splitter::new(format, enc, max_row))
}

/// [`split_all`] with a splitter of the caller's (one that continues a file
/// whose line ending is known, say).
pub fn split_all_with(data: &[u8], mut s: Splitter) -> Result<Vec<(Vec<u8>, Found)>, SplitError> {
    let mut out = Vec::new();
    let (mut at, mut start) = (0, 0);
    loop {
        let step = s.step(&data[at..])?;
        at += step.used;
        match step.found {
            Some(f) => {
                out.push((data[start..at].to_vec(), f));
                start = at;
                if f == Found::End {
                    return Ok(out);
                }
            }
            None => {
                if let Some(f) = s.finish()? {
                    out.push((data[start..at].to_vec(), f));
                }
                return Ok(out);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Job arguments
// ---------------------------------------------------------------------------

/// A job argument as decoded from the JSON object: its JSON type (`jsonb_typeof`)
/// and its text (`#>> '{}'`; `None` for JSON null).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgValue {
    pub json_type: String,
    pub text: Option<String>,
}

/// COPY options of a bulk_import or bulk_export job, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyArgs {
    /// `text`, `csv` or `binary`.
    pub format: String,
    pub header: bool,
    pub delimiter: Option<String>,
    pub null: Option<String>,
    pub quote: Option<String>,
    pub escape: Option<String>,
    pub encoding: Option<String>,
}

/// The argument keys of a bulk_import job; the first two are required.
pub const IMPORT_KEYS: &[&str] = &[
    "table",
    "path",
    "format",
    "batch_rows",
    "header",
    "delimiter",
    "null",
    "quote",
    "escape",
    "encoding",
    "columns",
];

/// The largest `batch_rows`.
pub const MAX_BATCH_ROWS: i64 = 100_000_000;

/// Checks the arguments `args` (key, value) of a job whose kind accepts the keys
/// `keys` and needs `required`: unknown keys, missing keys, JSON types. Values
/// that are JSON null count as absent. Returns the values by key, or the message
/// of the first problem (and, for an unknown key, that key).
pub fn check_keys<'a>(
    kind: &str,
    keys: &[&str],
    required: &[&str],
    args: &'a [(String, ArgValue)],
) -> Result<Vec<(&'a str, &'a ArgValue)>, ArgError> {
    let mut vals = Vec::new();
    for (k, v) in args {
        if !keys.contains(&k.as_str()) {
            return Err(ArgError::UnknownKey(k.clone()));
        }
        if v.json_type != "null" {
            vals.push((k.as_str(), v));
        }
    }
    for k in required {
        if !vals.iter().any(|(n, _)| n == k) {
            return Err(ArgError::Invalid(format!(
                "{} {kind} job needs the argument \"{k}\"",
                article(kind)
            )));
        }
    }
    Ok(vals)
}

/// "an" before a job kind that starts with a vowel ("an index_rebuild job"),
/// else "a".
pub fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A problem with a job's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    UnknownKey(String),
    Invalid(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::UnknownKey(k) => write!(f, "unknown argument \"{k}\""),
            ArgError::Invalid(m) => f.write_str(m),
        }
    }
}

fn get<'a>(vals: &[(&str, &'a ArgValue)], k: &str) -> Option<&'a ArgValue> {
    vals.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
}

/// A string argument (`None` if absent).
pub fn arg_string(vals: &[(&str, &ArgValue)], k: &str) -> Result<Option<String>, ArgError> {
    match get(vals, k) {
        None => Ok(None),
        Some(v) if v.json_type == "string" => Ok(Some(v.text.clone().unwrap_or_default())),
        Some(v) => Err(ArgError::Invalid(format!(
            "argument \"{k}\" must be a string, not {}",
            v.json_type
        ))),
    }
}

/// A string argument that must not be blank.
pub fn arg_nonempty(vals: &[(&str, &ArgValue)], k: &str) -> Result<Option<String>, ArgError> {
    let s = arg_string(vals, k)?;
    if s.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(ArgError::Invalid(format!(
            "argument \"{k}\" must not be empty"
        )));
    }
    Ok(s)
}

/// A boolean argument.
pub fn arg_bool(vals: &[(&str, &ArgValue)], k: &str) -> Result<Option<bool>, ArgError> {
    match get(vals, k) {
        None => Ok(None),
        Some(v) if v.json_type == "boolean" => Ok(Some(v.text.as_deref() == Some("true"))),
        Some(v) => Err(ArgError::Invalid(format!(
            "argument \"{k}\" must be a boolean, not {}",
            v.json_type
        ))),
    }
}

/// `batch_rows`: an integer in 1..=MAX_BATCH_ROWS (default `default`).
pub fn arg_batch_rows(vals: &[(&str, &ArgValue)], default: i64) -> Result<i64, ArgError> {
    let Some(v) = get(vals, "batch_rows") else {
        return Ok(default);
    };
    let n = if v.json_type == "number" {
        v.text.as_deref().and_then(|t| t.parse::<i64>().ok())
    } else {
        None
    };
    match n {
        Some(n) if (1..=MAX_BATCH_ROWS).contains(&n) => Ok(n),
        _ => Err(ArgError::Invalid(format!(
            "argument \"batch_rows\" must be an integer between 1 and {MAX_BATCH_ROWS}"
        ))),
    }
}

/// The COPY options among the arguments, checked as COPY would check them
/// (`encoding` is only checked for being non-empty: whether PostgreSQL knows the
/// name is the caller's to check).
pub fn copy_args(vals: &[(&str, &ArgValue)]) -> Result<CopyArgs, ArgError> {
    let format = match arg_string(vals, "format")?.as_deref() {
        None | Some("text") => "text",
        Some("csv") => "csv",
        Some("binary") => "binary",
        Some(f) => {
            return Err(ArgError::Invalid(format!(
                "argument \"format\" must be csv, text or binary, not \"{f}\""
            )))
        }
    };
    let single = |k: &str| -> Result<Option<String>, ArgError> {
        let s = arg_string(vals, k)?;
        if s.as_deref().is_some_and(|s| s.len() != 1) {
            return Err(ArgError::Invalid(format!(
                "argument \"{k}\" must be a single one-byte character"
            )));
        }
        Ok(s)
    };
    let o = CopyArgs {
        format: format.to_string(),
        header: arg_bool(vals, "header")?.unwrap_or(false),
        delimiter: single("delimiter")?,
        null: arg_string(vals, "null")?,
        quote: single("quote")?,
        escape: single("escape")?,
        encoding: arg_nonempty(vals, "encoding")?,
    };
    if format == "binary" {
        for (k, set) in [
            ("header", o.header),
            ("delimiter", o.delimiter.is_some()),
            ("null", o.null.is_some()),
            ("quote", o.quote.is_some()),
            ("escape", o.escape.is_some()),
        ] {
            if set {
                return Err(ArgError::Invalid(format!(
                    "argument \"{k}\" is not allowed with format binary"
                )));
            }
        }
    }
    if format != "csv" && (o.quote.is_some() || o.escape.is_some()) {
        return Err(ArgError::Invalid(
            "arguments \"quote\" and \"escape\" are only allowed with format csv".into(),
        ));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NO_LIMIT: u64 = u64::MAX;

    fn rows(data: &[u8], format: Format, enc: Encoding) -> Vec<(String, Found)> {
        split_all(data, format, enc, NO_LIMIT)
            .unwrap()
            .into_iter()
            .map(|(r, f)| (String::from_utf8_lossy(&r).into_owned(), f))
            .collect()
    }

    /// split_all from a splitter that continues a file with line ending `eol`.
    fn split_all_from(
        data: &[u8],
        format: Format,
        eol: Eol,
    ) -> Result<Vec<(Vec<u8>, Found)>, SplitError> {
        split_all_with(
            data,
            Splitter::new(format, Encoding::Plain, NO_LIMIT).with_eol(eol),
        )
    }

    fn texts(data: &[u8], format: Format) -> Vec<String> {
        rows(data, format, Encoding::Plain)
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    const CSV: Format = Format::Csv {
        quote: b'"',
        escape: None,
    };

    #[test]
    fn csv_rows_keep_quoted_newlines_together() {
        assert_eq!(
            texts(b"1,\"a\nb\"\n2,\"x\"\"\ny\"\n3,plain", CSV),
            vec!["1,\"a\nb\"\n", "2,\"x\"\"\ny\"\n", "3,plain"]
        );
        assert_eq!(
            texts(b"1,\"a\r\nb\"\r\n2,\"x\"\"\ny\"\r\n3", CSV),
            vec!["1,\"a\r\nb\"\r\n", "2,\"x\"\"\ny\"\r\n", "3"]
        );
        // Old Mac line ends.
        assert_eq!(texts(b"1\r2\r", CSV), vec!["1\r", "2\r"]);
        // A \r at the end of one chunk and \n at the start of the next.
        let mut s = Splitter::new(CSV, Encoding::Plain, NO_LIMIT);
        assert_eq!(
            s.step(b"1\r").unwrap(),
            Step {
                used: 2,
                found: None
            }
        );
        assert_eq!(
            s.step(b"\n2\n").unwrap(),
            Step {
                used: 1,
                found: Some(Found::Row)
            }
        );
    }

    #[test]
    fn csv_end_marker_only_alone_and_unquoted() {
        assert_eq!(
            rows(b"\"\\.\"\n1\n\\.\n2\n", CSV, Encoding::Plain),
            vec![
                ("\"\\.\"\n".into(), Found::Row),
                ("1\n".into(), Found::Row),
                ("\\.\n".into(), Found::End)
            ]
        );
        // `\.` followed by more data is data; so is `\.` at the very end.
        assert_eq!(texts(b"\\.x\n\\.", CSV), vec!["\\.x\n", "\\."]);
        // On a first line COPY reads `\.\r` as the marker (no line ending is
        // decided yet); in a `\r\n` file `\.\r\n`.
        assert_eq!(
            rows(b"\\.\r\nrest", CSV, Encoding::Plain),
            vec![("\\.\r".into(), Found::End)]
        );
        assert_eq!(
            rows(b"a\r\n\\.\r\nrest", CSV, Encoding::Plain),
            vec![("a\r\n".into(), Found::Row), ("\\.\r\n".into(), Found::End)]
        );
    }

    #[test]
    fn csv_escape_other_than_quote() {
        let csv = Format::csv(b'"', b'\\');
        assert_eq!(
            texts(b"1,\"a\\\"\nb\"\n2,c\n", csv),
            vec!["1,\"a\\\"\nb\"\n", "2,c\n"]
        );
        // An escape not followed by a quote is an ordinary character; two escapes
        // are an escaped escape, so the quote after them closes the field.
        assert_eq!(texts(b"1,\"a\\b\"\n2\n", csv), vec!["1,\"a\\b\"\n", "2\n"]);
        assert_eq!(
            texts(b"1,\"a\\\\\"\n2\n", csv),
            vec!["1,\"a\\\\\"\n", "2\n"]
        );
    }

    #[test]
    fn text_rows_escapes_and_end_marker() {
        assert_eq!(
            rows(
                b"1\ta\\\nb\n2\tc\n\\.\n3\td\n",
                Format::Text,
                Encoding::Plain
            ),
            vec![
                ("1\ta\\\nb\n".into(), Found::Row),
                ("2\tc\n".into(), Found::Row),
                ("\\.\n".into(), Found::End)
            ]
        );
        assert_eq!(
            texts(b"1\ta\\\\\n2\n", Format::Text),
            vec!["1\ta\\\\\n", "2\n"]
        );
        // `\.` after data on a text line ends that row; COPY reading a file goes
        // on with the next line (PostgreSQL 15 loads 1, 2 and 3).
        assert_eq!(
            rows(b"1\n2\\.\n3\n", Format::Text, Encoding::Plain),
            vec![
                ("1\n".into(), Found::Row),
                ("2\\.\n".into(), Found::RowAtMarker),
                ("3\n".into(), Found::Row)
            ]
        );
        let mut s = Splitter::new(Format::Text, Encoding::Plain, NO_LIMIT);
        assert_eq!(
            s.step(b"abc\\.\nx").unwrap().found,
            Some(Found::RowAtMarker)
        );
        assert_eq!(s.marker_row_len(), 3);
    }

    /// What PostgreSQL 15's `COPY t(a text) FROM 'file'` made of each file
    /// (run against a server): the rows it loaded, or its error (all 22P04).
    /// The splitter must agree row for row: rows are `Row` and `RowAtMarker`.
    #[test]
    fn lines_and_markers_as_copy_reads_a_file() {
        use SplitError::*;
        let text = Format::Text;
        let cases: &[(Format, &[u8], Result<usize, SplitError>)] = &[
            (text, b"one\\.\ntwo\nthree\n", Ok(3)),
            (text, b"a\n\\.x\nb\n", Err(MarkerCorrupt)),
            (text, b"x\\.y\nb\n", Err(MarkerCorrupt)),
            (text, b"a\n\\.", Err(MarkerCorrupt)),
            (text, b"a\nb\\.", Err(MarkerCorrupt)),
            (text, b"a\n\\.\nb\n", Ok(1)),
            (text, b"a\n\\.\r\nb\n", Err(MarkerNewline)),
            (text, b"a\r\n\\.\nb", Err(MarkerNewline)),
            (text, b"one\\.\r\ntwo\r\n", Err(StrayCr { csv: false })),
            (text, b"a\nb\r\nc\n", Err(StrayCr { csv: false })),
            (text, b"a\r\nb\nc", Err(StrayNl { csv: false })),
            (text, b"a\rb\r\nc", Err(StrayNl { csv: false })),
            (text, b"a\r\nb\r", Err(StrayCr { csv: false })),
            (text, b"a\r\nb\rc\r\n", Err(StrayCr { csv: false })),
            (text, b"\\.\r", Ok(0)),
            (text, b"\\.\r\nb\n", Ok(0)),
            (text, b"a\\\\.\n", Ok(1)),
            (text, b"a\\\\\\.\nb\n", Ok(2)),
            (text, b"a\\\n\\.\nb\n", Ok(2)),
            (text, b"a\rb\\.\rc\r", Ok(3)),
            (text, b"a\rb\\.\nc\r", Err(MarkerNewline)),
            (text, b"a\r\\.\r\nc\r", Ok(1)),
            (text, b"a\r\nb\\.\r\nc\r\n", Ok(3)),
            (text, b"a\r\nb\\.\rc\r\n", Err(MarkerCorrupt)),
            (text, b"a\r\n\\.\r", Err(MarkerCorrupt)),
            (text, b"a\nb\nc\n", Ok(3)),
            (text, b"a\r\nb\r\nc", Ok(3)),
            (text, b"a\rb\rc", Ok(3)),
            (CSV, b"a\n\\.\r\nb\n", Err(MarkerNewline)),
            (CSV, b"a\r\n\\.\nb", Err(StrayNl { csv: true })),
            (CSV, b"a\nb\r\nc\n", Err(StrayCr { csv: true })),
            (CSV, b"\"a\r\nb\"\nc\n", Ok(2)),
            (CSV, b"a\n\\.", Ok(2)),
            (CSV, b"a\n\\.x\nb", Ok(3)),
            (CSV, b"a\r\n\\.\rb\r\n", Err(StrayCr { csv: true })),
            (CSV, b"a\r\\.\r\nb\r", Ok(1)),
            (CSV, b"a\r\nb\r", Err(StrayCr { csv: true })),
        ];
        for (format, data, want) in cases {
            let got = split_all(data, *format, Encoding::Plain, NO_LIMIT).map(|rows| {
                rows.iter()
                    .filter(|(_, f)| matches!(f, Found::Row | Found::RowAtMarker))
                    .count()
            });
            assert_eq!(&got, want, "{format:?} {:?}", String::from_utf8_lossy(data));
        }
        assert_eq!(
            SplitError::StrayCr { csv: false }.to_string(),
            "literal carriage return found in data"
        );
    }

    #[test]
    fn line_ending_is_the_files_across_splitters() {
        // a LF, b CR LF, c LF: COPY of the whole file fails; a splitter that
        // starts after the first row (a batch, or a resumed import) holds the
        // file's line ending too.
        let data = b"a\nb\r\nc\n";
        let mut s = Splitter::new(Format::Text, Encoding::Plain, NO_LIMIT);
        assert_eq!(s.step(data).unwrap().used, 2);
        assert_eq!(s.eol(), Eol::Nl);
        let mut t = Splitter::new(Format::Text, Encoding::Plain, NO_LIMIT).with_eol(s.eol());
        assert_eq!(t.step(&data[2..]), Err(SplitError::StrayCr { csv: false }));
        // Without the file's ending the rest alone reads fine: what each
        // batch's own COPY did.
        let mut u = Splitter::new(Format::Text, Encoding::Plain, NO_LIMIT);
        assert_eq!(u.step(&data[2..]).unwrap().found, Some(Found::Row));
        // `\.` lines decide nothing.
        let mut m = Splitter::new(Format::Text, Encoding::Plain, NO_LIMIT);
        assert_eq!(m.step(b"x\\.\r\n").unwrap().found, Some(Found::RowAtMarker));
        assert_eq!(m.eol(), Eol::Unknown);
    }

    #[test]
    fn sjis_second_bytes_are_not_escapes() {
        // 表 is 0x95 0x5C in SJIS: its second byte is a backslash. COPY (which
        // converts before cutting) reads one row: 表, then an escaped newline, 2.
        let data = b"\x95\x5c\\\n2\n\x83\x5c\n";
        assert_eq!(
            split_all(data, Format::Text, Encoding::Sjis, NO_LIMIT)
                .unwrap()
                .into_iter()
                .map(|(r, _)| r)
                .collect::<Vec<_>>(),
            vec![b"\x95\x5c\\\n2\n".to_vec(), b"\x83\x5c\n".to_vec()]
        );
        // Read byte by byte the same file has a row more.
        assert_eq!(
            split_all(data, Format::Text, Encoding::Plain, NO_LIMIT)
                .unwrap()
                .len(),
            3
        );
        // Half-width kana (0xA1..=0xDF) are single bytes.
        assert_eq!(
            split_all(b"\xb1\\\n\n", Format::Text, Encoding::Sjis, NO_LIMIT)
                .unwrap()
                .len(),
            1
        );
        // csv with ESCAPE '\': the 0x5C inside ソ does not escape the quote.
        let csv = Format::csv(b'"', b'\\');
        assert_eq!(
            split_all(b"\"\x83\x5c\"\n2\n", csv, Encoding::Sjis, NO_LIMIT)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn other_ascii_embedding_encodings() {
        assert_eq!(Encoding::from_pg_name("SJIS"), Encoding::Sjis);
        assert_eq!(Encoding::from_pg_name("SHIFT_JIS_2004"), Encoding::Sjis);
        for e in ["BIG5", "GBK", "UHC", "GB18030"] {
            assert_eq!(Encoding::from_pg_name(e), Encoding::HighBitPairs);
        }
        assert_eq!(Encoding::from_pg_name("JOHAB"), Encoding::Johab);
        for e in ["UTF8", "LATIN1", "EUC_JP", "SQL_ASCII", "WIN1252"] {
            assert_eq!(Encoding::from_pg_name(e), Encoding::Plain);
        }
        // GB18030 four-byte characters: pairs of (high byte, digit).
        let data = b"\x81\x30\x81\x30\\\n\n";
        assert_eq!(
            split_all(data, Format::Text, Encoding::HighBitPairs, NO_LIMIT)
                .unwrap()
                .len(),
            1
        );
        // JOHAB: 0x8F starts three bytes.
        let data = b"\x8f\x41\\\n\x8f\x41\x5c\n";
        assert_eq!(
            split_all(data, Format::Text, Encoding::Johab, NO_LIMIT)
                .unwrap()
                .len(),
            2
        );
    }

    fn binary_file(tuples: &[&[Option<&[u8]>]], ext: &[u8], trailer: bool) -> Vec<u8> {
        let mut f = BINARY_SIGNATURE.to_vec();
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(&(ext.len() as u32).to_be_bytes());
        f.extend_from_slice(ext);
        for t in tuples {
            f.extend_from_slice(&(t.len() as i16).to_be_bytes());
            for field in *t {
                match field {
                    Some(d) => {
                        f.extend_from_slice(&(d.len() as i32).to_be_bytes());
                        f.extend_from_slice(d);
                    }
                    None => f.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        if trailer {
            f.extend_from_slice(&(-1i16).to_be_bytes());
        }
        f
    }

    #[test]
    fn binary_header_tuples_and_trailer() {
        let f = binary_file(
            &[&[Some(b"ab"), None], &[Some(b"")], &[]],
            b"extension",
            true,
        );
        let out = split_all(&f, Format::Binary, Encoding::Plain, NO_LIMIT).unwrap();
        let lens: Vec<(usize, Found)> = out.iter().map(|(r, f)| (r.len(), *f)).collect();
        assert_eq!(
            lens,
            vec![
                (19 + 9, Found::Header),
                (2 + 4 + 2 + 4, Found::Row),
                (2 + 4, Found::Row),
                (2, Found::Row),
                (2, Found::End)
            ]
        );
        // The header repeated in each batch has no extension area.
        let mut s = Splitter::new(Format::Binary, Encoding::Plain, NO_LIMIT);
        s.step(&f).unwrap();
        let h = s.binary_header();
        assert_eq!(&h[..11], BINARY_SIGNATURE);
        assert_eq!(&h[15..], &[0, 0, 0, 0]);
        // No trailer: the end of the file ends the data.
        let f = binary_file(&[&[Some(b"x")]], b"", false);
        assert_eq!(
            split_all(&f, Format::Binary, Encoding::Plain, NO_LIMIT)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn binary_errors() {
        let e = |d: &[u8]| split_all(d, Format::Binary, Encoding::Plain, NO_LIMIT).unwrap_err();
        assert_eq!(e(b"PGCOPY\nX"), SplitError::NotBinaryCopy);
        assert_eq!(e(b"PGCOPY"), SplitError::NotBinaryCopy);
        assert_eq!(e(b""), SplitError::NotBinaryCopy);
        let mut f = binary_file(&[], b"", false);
        f.extend_from_slice(&1i16.to_be_bytes());
        f.extend_from_slice(&10i32.to_be_bytes());
        f.extend_from_slice(b"short");
        assert_eq!(e(&f), SplitError::Truncated);
        let mut f = binary_file(&[], b"", false);
        f.extend_from_slice(&(-2i16).to_be_bytes());
        assert_eq!(e(&f), SplitError::BadFieldCount(-2));
        let mut f = binary_file(&[], b"", false);
        f.extend_from_slice(&1i16.to_be_bytes());
        f.extend_from_slice(&(-7i32).to_be_bytes());
        assert_eq!(e(&f), SplitError::BadFieldSize(-7));
        // One stray byte where the next field count would start: the end,
        // as COPY reads it (no error).
        let mut f = binary_file(&[], b"", false);
        f.push(0);
        assert!(split_all(&f, Format::Binary, Encoding::Plain, NO_LIMIT).is_ok());
        // An extension area longer than the file.
        let mut f = BINARY_SIGNATURE.to_vec();
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(e(&f), SplitError::Truncated);
    }

    #[test]
    fn rows_longer_than_the_limit_are_errors() {
        let limit = 10;
        let ok = split_all(b"123456789\nabc\n", Format::Text, Encoding::Plain, limit).unwrap();
        assert_eq!(ok.len(), 2);
        for format in [Format::Text, CSV] {
            assert_eq!(
                split_all(b"1\n1234567890\n", format, Encoding::Plain, limit).unwrap_err(),
                SplitError::RowTooLong { limit }
            );
            // Found while streaming, before the row ends.
            let mut s = Splitter::new(format, Encoding::Plain, limit);
            assert_eq!(
                s.step(&[b'x'; 64]).unwrap_err(),
                SplitError::RowTooLong { limit }
            );
        }
        let f = binary_file(&[&[Some(&[7u8; 100])]], b"", true);
        assert_eq!(
            split_all(&f, Format::Binary, Encoding::Plain, limit).unwrap_err(),
            SplitError::RowTooLong { limit }
        );
        // A field length past the limit, in a file that ends before its
        // data: too long, as COPY says, not truncated.
        let mut f = binary_file(&[], b"", false);
        f.extend_from_slice(&1i16.to_be_bytes());
        f.extend_from_slice(&i32::MAX.to_be_bytes());
        f.extend_from_slice(b"short");
        assert_eq!(
            split_all(&f, Format::Binary, Encoding::Plain, 1 << 30).unwrap_err(),
            SplitError::RowTooLong { limit: 1 << 30 }
        );
    }

    #[test]
    fn copy_arguments() {
        let v = |t: &str, s: Option<&str>| ArgValue {
            json_type: t.into(),
            text: s.map(str::to_string),
        };
        let args = vec![
            ("format".to_string(), v("string", Some("csv"))),
            ("quote".to_string(), v("string", Some("'"))),
            ("header".to_string(), v("boolean", Some("true"))),
            ("null".to_string(), v("null", None)),
        ];
        let keys = ["table", "path", "format", "quote", "header", "null"];
        let vals = check_keys("bulk_import", &keys, &[], &args).unwrap();
        let o = copy_args(&vals).unwrap();
        assert_eq!(
            (o.format.as_str(), o.header, o.quote.as_deref()),
            ("csv", true, Some("'"))
        );
        assert_eq!(o.null, None);
        assert_eq!(
            check_keys("bulk_import", &keys, &["path"], &args).unwrap_err(),
            ArgError::Invalid("a bulk_import job needs the argument \"path\"".into())
        );
        assert_eq!(
            check_keys("bulk_import", &["format"], &[], &args).unwrap_err(),
            ArgError::UnknownKey("quote".into())
        );
        let bad = vec![
            ("format".to_string(), v("string", Some("binary"))),
            ("quote".to_string(), v("string", Some("x"))),
        ];
        let vals = check_keys("bulk_import", &keys, &[], &bad).unwrap();
        assert!(copy_args(&vals).is_err());
        let rows = vec![("batch_rows".to_string(), v("number", Some("1.5")))];
        let vals = check_keys("x", &["batch_rows"], &[], &rows).unwrap();
        assert!(arg_batch_rows(&vals, 10).is_err());
    }

    /// Splits `data` feeding it in pieces at `cuts`, as bulk_import does with its
    /// read buffer: the rows must be the same as with the whole input at once.
    fn split_in_pieces(
        data: &[u8],
        cuts: &[usize],
        format: Format,
        enc: Encoding,
        max_row: u64,
    ) -> Result<Vec<(Vec<u8>, Found)>, SplitError> {
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        bounds.push(data.len());
        bounds.sort_unstable();
        let mut s = Splitter::new(format, enc, max_row);
        let mut out = Vec::new();
        let mut row = Vec::new();
        let mut at = 0;
        for end in bounds {
            while at < end {
                let step = s.step(&data[at..end])?;
                row.extend_from_slice(&data[at..at + step.used]);
                at += step.used;
                if let Some(f) = step.found {
                    out.push((std::mem::take(&mut row), f));
                    if f == Found::End {
                        return Ok(out);
                    }
                }
            }
        }
        if let Some(f) = s.finish()? {
            out.push((row, f));
        }
        Ok(out)
    }

    fn formats() -> impl Strategy<Value = Format> {
        prop_oneof![
            Just(Format::Text),
            Just(CSV),
            Just(Format::csv(b'"', b'\\')),
            Just(Format::csv(b'\'', b'\'')),
            Just(Format::Binary),
        ]
    }

    fn encodings() -> impl Strategy<Value = Encoding> {
        prop_oneof![
            Just(Encoding::Plain),
            Just(Encoding::Sjis),
            Just(Encoding::HighBitPairs),
            Just(Encoding::Johab),
        ]
    }

    /// Bytes rich in the characters that matter to the splitter.
    fn copy_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(b'\n'),
                Just(b'\r'),
                Just(b'\\'),
                Just(b'.'),
                Just(b'"'),
                Just(b'\''),
                Just(b'a'),
                Just(0x95u8),
                Just(0x8f),
                Just(0xff),
                any::<u8>(),
            ],
            0..200,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The rows do not depend on how the input is cut into chunks, and they
        /// are the input, in order, without a byte lost or added.
        #[test]
        fn chunking_does_not_change_rows(
            data in copy_bytes(),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
            format in formats(),
            enc in encodings(),
            limit in prop_oneof![Just(u64::MAX), 1u64..64],
        ) {
            let whole = split_all(&data, format, enc, limit);
            let pieces = split_in_pieces(&data, &cuts, format, enc, limit);
            prop_assert_eq!(&whole, &pieces);
            if let Ok(rows) = whole {
                let joined: Vec<u8> = rows.iter().flat_map(|(r, _)| r.clone()).collect();
                prop_assert!(data.starts_with(&joined));
                let ended = matches!(rows.last(), Some((_, Found::End)));
                if !ended {
                    prop_assert_eq!(joined.len(), data.len());
                }
                for (r, f) in &rows {
                    if *f != Found::Header {
                        prop_assert!(r.len() as u64 <= limit);
                    }
                    prop_assert!(!r.is_empty() || format == Format::Binary);
                }
            }
        }

        /// A splitter started at any row boundary with the line ending decided
        /// before it (a new batch, a resumed import) cuts the rest exactly as
        /// the splitter that read the file from its start.
        #[test]
        fn restarting_at_a_row_keeps_the_rows(
            data in copy_bytes(),
            format in prop_oneof![Just(Format::Text), Just(CSV), Just(Format::csv(b'"', b'\\'))],
            at in any::<usize>(),
        ) {
            let whole = split_all(&data, format, Encoding::Plain, u64::MAX);
            let mut s = Splitter::new(format, Encoding::Plain, u64::MAX);
            let mut pos = 0;
            let mut rows = Vec::new();
            // Row boundaries of the whole file, with the splitter's line ending there.
            while let Ok(step) = s.step(&data[pos..]) {
                pos += step.used;
                match step.found {
                    Some(Found::Row) | Some(Found::RowAtMarker) => rows.push((pos, s.eol())),
                    _ => break,
                }
            }
            if let (Ok(all), false) = (&whole, rows.is_empty()) {
                let (start, eol) = rows[at % rows.len()];
                let k = at % rows.len() + 1;
                let rest = split_all_from(&data[start..], format, eol);
                prop_assert_eq!(&rest.unwrap()[..], &all[k..]);
            } else if let (Err(e), false) = (&whole, rows.is_empty()) {
                let (start, eol) = rows[at % rows.len()];
                prop_assert_eq!(&split_all_from(&data[start..], format, eol).unwrap_err(), e);
            }
        }

        /// Rows of plain text data (no escapes, no markers) end exactly at each
        /// newline.
        #[test]
        fn text_rows_end_at_newlines(lines in prop::collection::vec("[a-z0-9\t ,]{0,20}", 0..20)) {
            let data: String = lines.iter().map(|l| format!("{l}\n")).collect();
            for format in [Format::Text, CSV] {
                let got = texts(data.as_bytes(), format);
                let want: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
                prop_assert_eq!(got, want);
            }
        }

        /// csv fields quoted by the rules of RFC 4180 stay in one row whatever
        /// they hold.
        #[test]
        fn quoted_csv_fields_stay_in_their_row(fields in prop::collection::vec("[a-z\n\r\",\\\\.]{0,12}", 1..6)) {
            let row: String = fields
                .iter()
                .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(",");
            for eol in ["\n", "\r\n", "\r"] {
                let data = format!("{row}{eol}{row}{eol}");
                let got = texts(data.as_bytes(), CSV);
                prop_assert_eq!(got, vec![format!("{row}{eol}"), format!("{row}{eol}")]);
            }
        }

        /// A binary file built from tuples splits into exactly those tuples.
        #[test]
        fn binary_tuples_round_trip(
            tuples in prop::collection::vec(prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..20)), 0..5), 0..10),
            ext in prop::collection::vec(any::<u8>(), 0..10),
            trailer in any::<bool>(),
        ) {
            let refs: Vec<Vec<Option<&[u8]>>> = tuples
                .iter()
                .map(|t| t.iter().map(|f| f.as_deref()).collect())
                .collect();
            let slices: Vec<&[Option<&[u8]>]> = refs.iter().map(|t| t.as_slice()).collect();
            let f = binary_file(&slices, &ext, trailer);
            let out = split_all(&f, Format::Binary, Encoding::Plain, u64::MAX).unwrap();
            let n_rows = out.iter().filter(|(_, f)| *f == Found::Row).count();
            prop_assert_eq!(n_rows, tuples.len());
            prop_assert_eq!(out.last().map(|(_, f)| *f == Found::End).unwrap_or(false), trailer);
        }
    }
}
