//! Byte-level JSON building blocks for the change feed.
//!
//! Events are built in a reusable `Vec<u8>` and handed to PostgreSQL in one
//! `appendBinaryStringInfo` call. Text from PostgreSQL (type output functions,
//! names, message contents) is in the database encoding, which need not be
//! UTF-8, so everything here works on bytes: escaping touches only `"`, `\` and
//! control characters (all ASCII, which every server encoding leaves alone), and
//! passes other bytes through unchanged.

/// Appends `s` as a JSON string literal (with the quotes).
pub fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&s[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Appends `"key":` (the key is an ASCII literal of ours that needs no escaping).
#[inline]
pub fn push_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends a JSON text that is already valid, on one line: a raw newline or
/// carriage return can only be whitespace between tokens in valid JSON (inside
/// strings they must be escaped), so replacing them with spaces keeps it valid
/// and keeps one event per line for line-oriented consumers (`pg_recvlogical`).
pub fn push_raw_one_line(out: &mut Vec<u8>, json: &[u8]) {
    out.reserve(json.len());
    out.extend(
        json.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
}

/// Appends an LSN in PostgreSQL's `%X/%X` text form, as a JSON string.
pub fn push_lsn(out: &mut Vec<u8>, lsn: u64) {
    use std::io::Write;
    let _ = write!(out, "\"{:X}/{:X}\"", lsn >> 32, lsn & 0xffff_ffff);
}

/// Appends `bytes` as the JSON string `"\\x0a1b..."` (bytea's hex text form).
pub fn push_hex_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 * bytes.len() + 5);
    out.extend_from_slice(b"\"\\\\x");
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
    out.push(b'"');
}

/// Deepest nesting [`is_valid`] accepts (deeper texts are rendered as strings,
/// which also bounds the validator's recursion).
const MAX_DEPTH: usize = 128;

/// Whether `s` is exactly one JSON value (RFC 8259), surrounded by optional
/// whitespace. Bytes >= 0x80 inside strings are accepted as they are (their
/// encoding is checked separately against the database encoding).
pub fn is_valid(s: &[u8]) -> bool {
    let mut p = Parser { s, i: 0 };
    p.ws();
    if !p.value(0) {
        return false;
    }
    p.ws();
    p.i == s.len()
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &[u8]) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return true;
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') || !self.string() {
                        return false;
                    }
                    self.ws();
                    if self.peek() != Some(b':') {
                        return false;
                    }
                    self.i += 1;
                    self.ws();
                    if !self.value(depth + 1) {
                        return false;
                    }
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return true;
                        }
                        _ => return false,
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return true;
                }
                loop {
                    self.ws();
                    if !self.value(depth + 1) {
                        return false;
                    }
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return true;
                        }
                        _ => return false,
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b't') => self.lit(b"true"),
            Some(b'f') => self.lit(b"false"),
            Some(b'n') => self.lit(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> bool {
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => return true,
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                    Some(b'u') => {
                        self.i += 1;
                        for _ in 0..4 {
                            if !matches!(self.peek(), Some(c) if c.is_ascii_hexdigit()) {
                                return false;
                            }
                            self.i += 1;
                        }
                    }
                    _ => return false,
                },
                0x00..=0x1f => return false,
                _ => {}
            }
        }
        false
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> bool {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return false,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return false;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return false;
            }
        }
        true
    }
}

/// Whether `s` is the text of a finite JSON number as PostgreSQL's `float4out`/
/// `float8out` print it (not `NaN`, `Infinity` or `-Infinity`).
pub fn is_number(s: &[u8]) -> bool {
    let mut p = Parser { s, i: 0 };
    !s.is_empty() && p.number() && p.i == s.len()
}

/// Appends `,"key":`.
#[inline]
pub fn push_key_after_comma(out: &mut Vec<u8>, key: &str) {
    out.push(b',');
    push_key(out, key);
}
