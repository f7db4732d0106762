//! Byte-level JSON building blocks for the change feed (src/cdc/plugin.rs).
//!
//! Events are built in a reusable `Vec<u8>` and handed to PostgreSQL in one
//! `appendBinaryStringInfo` call. Text from PostgreSQL (type output functions,
//! names, message contents) is in the database encoding, which need not be
//! UTF-8, so everything here works on bytes: escaping touches `"`, `\` and
//! control characters (all ASCII, which every server encoding leaves alone),
//! and passes other bytes through unchanged; only for text known to be UTF-8
//! ([`TextEncoding::Utf8`]) does it also escape the Unicode line terminators
//! U+0085, U+2028 and U+2029, which JSON allows raw inside strings but which
//! line-splitting readers (Python's `str.splitlines`, Java's `\R`, JavaScript
//! tools) take for line breaks: one event must stay one line for them too.

/// The encoding of the text handed to [`push_str_in`] and
/// [`push_raw_one_line_in`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8 (a `UTF8` database): the Unicode line terminators U+0085,
    /// U+2028 and U+2029 are escaped (`\u0085`, `\u2028`, `\u2029`).
    Utf8,
    /// Any other encoding: the bytes of those characters in UTF-8 may be
    /// (parts of) other characters there, so bytes >= 0x80 pass unchanged.
    Other,
}

/// `\u00XX` for each control character without a short escape.
static CONTROL_ESCAPES: [[u8; 6]; 32] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 6]; 32];
    let mut i = 0;
    while i < 32 {
        t[i] = [b'\\', b'u', b'0', b'0', HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};

/// The escape of the Unicode line terminator (other than `\n` and `\r`) that
/// `s` starts with in UTF-8, and its length in bytes: U+0085 NEL (`C2 85`),
/// U+2028 LINE SEPARATOR (`E2 80 A8`), U+2029 PARAGRAPH SEPARATOR (`E2 80 A9`).
#[inline]
fn utf8_line_terminator(s: &[u8]) -> Option<(&'static [u8], usize)> {
    match s {
        [0xc2, 0x85, ..] => Some((b"\\u0085", 2)),
        [0xe2, 0x80, 0xa8, ..] => Some((b"\\u2028", 3)),
        [0xe2, 0x80, 0xa9, ..] => Some((b"\\u2029", 3)),
        _ => None,
    }
}

/// Appends `s` as a JSON string literal (with the quotes), escaping only `"`,
/// `\` and control characters: every other byte passes unchanged, whatever
/// the encoding, as PostgreSQL's own `json`/`jsonb` text output escapes
/// strings (arrw's job events are compared byte for byte with jsonb's text).
/// The change feed's events use [`push_str_in`].
pub fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    push_str_in(out, s, TextEncoding::Other);
}

/// Appends `s`, text in encoding `enc`, as a JSON string literal (with the
/// quotes): `"`, `\` and control characters escaped, and with
/// [`TextEncoding::Utf8`] also U+0085, U+2028 and U+2029, so that the literal
/// holds no character any reader takes for a line break.
pub fn push_str_in(out: &mut Vec<u8>, s: &[u8], enc: TextEncoding) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let utf8 = enc == TextEncoding::Utf8;
    push_replacing(out, s, |tail| {
        let b = tail[0];
        Some(match b {
            b'"' => (b"\\\"", 1),
            b'\\' => (b"\\\\", 1),
            b'\n' => (b"\\n", 1),
            b'\r' => (b"\\r", 1),
            b'\t' => (b"\\t", 1),
            0x08 => (b"\\b", 1),
            0x0c => (b"\\f", 1),
            0x00..=0x1f => (&CONTROL_ESCAPES[b as usize], 1),
            0xc2 | 0xe2 if utf8 => return utf8_line_terminator(tail),
            _ => return None,
        })
    });
    out.push(b'"');
}

/// Appends `s` with the runs `replace` names replaced: at each byte,
/// `replace(rest of s)` gives what to write instead of how many bytes, or
/// None to copy the byte. Unreplaced runs are copied whole.
#[inline]
fn push_replacing<'a>(
    out: &mut Vec<u8>,
    s: &[u8],
    replace: impl Fn(&[u8]) -> Option<(&'a [u8], usize)>,
) {
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        match replace(&s[i..]) {
            Some((rep, len)) => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(rep);
                i += len;
                start = i;
            }
            None => i += 1,
        }
    }
    out.extend_from_slice(&s[start..]);
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
/// Other bytes pass unchanged (see [`push_raw_one_line_in`]).
pub fn push_raw_one_line(out: &mut Vec<u8>, json: &[u8]) {
    push_raw_one_line_in(out, json, TextEncoding::Other);
}

/// [`push_raw_one_line`] for a JSON text in encoding `enc`; with
/// [`TextEncoding::Utf8`] it also escapes U+0085, U+2028 and U+2029. Raw, they
/// can only be inside strings in valid JSON (outside strings only ASCII is
/// allowed), where `\u2028` and so on are valid escapes of the same
/// characters: the text stays valid and means the same.
pub fn push_raw_one_line_in(out: &mut Vec<u8>, json: &[u8], enc: TextEncoding) {
    out.reserve(json.len());
    let utf8 = enc == TextEncoding::Utf8;
    push_replacing(out, json, |tail| match tail[0] {
        b'\n' | b'\r' => Some((b" ", 1)),
        0xc2 | 0xe2 if utf8 => utf8_line_terminator(tail),
        _ => None,
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn str_lit(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_str(&mut out, s);
        out
    }

    #[test]
    fn escapes() {
        assert_eq!(str_lit(b""), b"\"\"");
        assert_eq!(str_lit(b"a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(str_lit(b"\n\r\t\x08\x0c"), b"\"\\n\\r\\t\\b\\f\"");
        assert_eq!(str_lit(b"\x00\x1f\x7f"), b"\"\\u0000\\u001f\x7f\"");
        // Bytes of other encodings pass through unchanged.
        assert_eq!(str_lit(b"\xe9\xff"), b"\"\xe9\xff\"");
    }

    #[test]
    fn escapes_unicode_line_terminators_in_utf8() {
        let utf8 = |s: &[u8]| {
            let mut out = Vec::new();
            push_str_in(&mut out, s, TextEncoding::Utf8);
            out
        };
        let s = "a\u{2028}b\u{2029}c\u{85}d\n".as_bytes();
        assert_eq!(utf8(s), b"\"a\\u2028b\\u2029c\\u0085d\\n\"");
        // Only those three: neighbours, other characters and lone or cut
        // sequences pass unchanged.
        for keep in [
            "\u{2027}\u{202a}\u{84}\u{86}\u{e9}\u{1F600}".as_bytes(),
            b"\xe2\x80",
            b"\xe2",
            b"\xc2",
            b"\xe2\x80\xa7",
            b"\xc2\xa8",
        ] {
            let mut want = vec![b'"'];
            want.extend_from_slice(keep);
            want.push(b'"');
            assert_eq!(utf8(keep), want, "{keep:?}");
        }
        // Back to back, and after cut sequences.
        assert_eq!(
            utf8(b"\xe2\x80\xe2\x80\xa8\xc2\xc2\x85\xe2\x80\xa9"),
            b"\"\xe2\x80\\u2028\xc2\\u0085\\u2029\""
        );
        // Other encodings: unchanged (in LATIN1 "\xc2\x85" is two characters,
        // in GBK one; neither is U+0085).
        let mut out = Vec::new();
        push_str_in(&mut out, s, TextEncoding::Other);
        assert_eq!(out, b"\"a\xe2\x80\xa8b\xe2\x80\xa9c\xc2\x85d\\n\"");
        let mut plain = Vec::new();
        push_str(&mut plain, s);
        assert_eq!(plain, out);
        // Round trip through a parser that is not ours.
        let back: String = serde_json::from_slice(&utf8(s)).unwrap();
        assert_eq!(back.as_bytes(), s);
    }

    #[test]
    fn raw_one_line_escapes_unicode_line_terminators_in_utf8() {
        let text = "{\"a\u{2028}\":\r\n [\"\u{85}\", \"x\u{2029}y\\u2028\"]}".as_bytes();
        let mut out = Vec::new();
        push_raw_one_line_in(&mut out, text, TextEncoding::Utf8);
        assert_eq!(
            out,
            b"{\"a\\u2028\":   [\"\\u0085\", \"x\\u2029y\\u2028\"]}"
        );
        assert!(is_valid(&out));
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let orig: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(back, orig);
        let mut other = Vec::new();
        push_raw_one_line_in(&mut other, text, TextEncoding::Other);
        let mut plain = Vec::new();
        push_raw_one_line(&mut plain, text);
        assert_eq!(other, plain);
        assert_eq!(other.len(), text.len());
        assert!(other.windows(3).any(|w| w == b"\xe2\x80\xa8"));
    }

    #[test]
    fn keys_lsn_hex() {
        let mut out = Vec::new();
        push_key(&mut out, "a");
        push_lsn(&mut out, 0x1_0000_00ab);
        push_key_after_comma(&mut out, "b");
        push_hex_bytes(&mut out, &[0x0a, 0xff]);
        assert_eq!(out, b"\"a\":\"1/AB\",\"b\":\"\\\\x0aff\"");
        let mut out = Vec::new();
        push_lsn(&mut out, 0);
        assert_eq!(out, b"\"0/0\"");
    }

    #[test]
    fn raw_one_line() {
        let mut out = Vec::new();
        push_raw_one_line(&mut out, b"{\"a\":\r\n [1,\n2]}");
        assert_eq!(out, b"{\"a\":   [1, 2]}");
        assert!(is_valid(&out));
    }

    #[test]
    fn validator_cases() {
        for ok in [
            &b"0"[..],
            b" -0.5e+10 ",
            b"\"\\u00e9\\/\"",
            b"{}",
            b"[]",
            b"{\"a\": [true, false, null, {\"b\": \"c\"}]}",
            b"\t\n\r 1",
            b"\"\xff\"",
        ] {
            assert!(is_valid(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b" ",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"+1",
            b"-",
            b"NaN",
            b"Infinity",
            b"tru",
            b"nul",
            b"[1,]",
            b"{\"a\"}",
            b"{\"a\":1,}",
            b"{1:2}",
            b"[1 2]",
            b"\"a",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"\n\"",
            b"1 2",
            b"[",
            b"{",
        ] {
            assert!(!is_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn depth_is_bounded() {
        let nest = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
        assert!(is_valid(&nest(MAX_DEPTH)));
        assert!(!is_valid(&nest(MAX_DEPTH + 2)));
        // Far deeper input fails without exhausting the stack.
        assert!(!is_valid(&nest(1 << 20)));
    }

    #[test]
    fn numbers() {
        for ok in ["0", "-0", "1.5", "-1e-7", "3.4028235e+38", "1E5"] {
            assert!(is_number(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "NaN",
            "Infinity",
            "-Infinity",
            " 1",
            "1 ",
            "\"1\"",
            "0x1",
        ] {
            assert!(!is_number(bad.as_bytes()), "{bad}");
        }
    }

    /// Arbitrary JSON values, as serde_json builds them.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        json_value_with(any::<String>())
    }

    /// Arbitrary JSON values whose strings (keys included) come from `text`.
    fn json_value_with(
        text: impl Strategy<Value = String> + Clone + 'static,
    ) -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(text.clone(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every character Unicode counts as a line break (`\n`, `\r`, VT, FF,
    /// FS, GS, RS, NEL, LS, PS: Python's `str.splitlines` splits on all of them).
    const UNICODE_LINE_BREAKS: &[char] = &[
        '\n', '\r', '\u{b}', '\u{c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}',
        '\u{2029}',
    ];

    /// Text with many line breaks of every kind among other characters.
    fn line_breaking_text() -> impl Strategy<Value = String> + Clone {
        prop::collection::vec(
            prop_oneof![
                any::<char>(),
                prop::sample::select(UNICODE_LINE_BREAKS.to_vec()),
                prop::sample::select(vec!['\u{84}', '\u{2027}', '\u{202a}', '\u{e2}', '"', '\\']),
            ],
            0..24,
        )
        .prop_map(String::from_iter)
    }

    /// Whether `b` holds a raw `\n`, `\r`, or U+0085, U+2028 or U+2029 in UTF-8.
    fn has_raw_line_break(b: &[u8]) -> bool {
        b.iter().any(|&c| c == b'\n' || c == b'\r')
            || b.windows(2).any(|w| w == [0xc2, 0x85])
            || b.windows(3)
                .any(|w| w == [0xe2, 0x80, 0xa8] || w == [0xe2, 0x80, 0xa9])
    }

    proptest! {
        /// Escaped text parses back (with a JSON parser that is not ours) to
        /// exactly the bytes escaped.
        #[test]
        fn push_str_round_trips(s in any::<String>()) {
            let lit = str_lit(s.as_bytes());
            prop_assert!(is_valid(&lit));
            let back: String = serde_json::from_slice(&lit).unwrap();
            prop_assert_eq!(back, s);
        }

        /// Escaping any bytes (not only UTF-8) gives valid JSON per our validator,
        /// and the escaped text holds no control characters.
        #[test]
        fn push_str_is_valid_for_any_bytes(s in prop::collection::vec(any::<u8>(), 0..64)) {
            let lit = str_lit(&s);
            prop_assert!(is_valid(&lit));
            prop_assert!(lit.iter().all(|&b| b >= 0x20));
        }

        /// In UTF-8, escaped text also parses back to exactly what was
        /// escaped, and no character of it is a line break by Unicode's rules
        /// (what `str::lines` misses, `splitlines`-style readers split on).
        #[test]
        fn push_str_utf8_round_trips_on_one_line(s in line_breaking_text()) {
            let mut lit = Vec::new();
            push_str_in(&mut lit, s.as_bytes(), TextEncoding::Utf8);
            prop_assert!(is_valid(&lit));
            let text = std::str::from_utf8(&lit).unwrap();
            prop_assert!(!text.contains(UNICODE_LINE_BREAKS), "{text:?}");
            let back: String = serde_json::from_slice(&lit).unwrap();
            prop_assert_eq!(back, s);
        }

        /// Any bytes, escaped as UTF-8: valid, and none of the three
        /// sequences is left raw, also around cut or invalid sequences.
        #[test]
        fn push_str_utf8_is_valid_for_any_bytes(s in prop::collection::vec(
            prop::sample::select(vec![0xc2u8, 0xe2, 0x80, 0x85, 0xa8, 0xa9, b'a', b'"', 0x0a]),
            0..32,
        )) {
            let mut lit = Vec::new();
            push_str_in(&mut lit, &s, TextEncoding::Utf8);
            prop_assert!(is_valid(&lit));
            prop_assert!(!has_raw_line_break(&lit));
        }

        #[test]
        fn hex_bytes_round_trip(s in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            push_hex_bytes(&mut out, &s);
            let text: String = serde_json::from_slice(&out).unwrap();
            let hex = text.strip_prefix("\\x").unwrap();
            let back: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn lsn_matches_postgres_text(lsn in any::<u64>()) {
            let mut out = Vec::new();
            push_lsn(&mut out, lsn);
            let text: String = serde_json::from_slice(&out).unwrap();
            let (hi, lo) = text.split_once('/').unwrap();
            prop_assert_eq!(
                (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap(),
                lsn
            );
        }

        /// Every JSON text serde_json writes (compact or pretty) is valid for us,
        /// and stays valid, and the same value, when put on one line.
        #[test]
        fn validator_accepts_serde_output(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            prop_assert!(is_valid(&text));
            let mut line = Vec::new();
            push_raw_one_line(&mut line, &text);
            prop_assert!(is_valid(&line));
            prop_assert!(!line.contains(&b'\n'));
            // (Compared as parsed by the same parser: serde_json's float parsing
            // is not exact without its float_roundtrip feature.)
            let back: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let orig: serde_json::Value = serde_json::from_slice(&text).unwrap();
            prop_assert_eq!(back, orig);
        }

        /// With line-breaking characters in its strings (serde_json writes
        /// U+2028 and friends raw), a JSON text put on one line as UTF-8 keeps
        /// no line break of any kind, stays valid and means the same.
        #[test]
        fn raw_one_line_utf8_keeps_the_value(v in json_value_with(line_breaking_text()), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            let mut line = Vec::new();
            push_raw_one_line_in(&mut line, &text, TextEncoding::Utf8);
            prop_assert!(is_valid(&line));
            prop_assert!(!has_raw_line_break(&line));
            let s = std::str::from_utf8(&line).unwrap();
            prop_assert!(!s.contains(UNICODE_LINE_BREAKS));
            let back: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let orig: serde_json::Value = serde_json::from_slice(&text).unwrap();
            prop_assert_eq!(back, orig);
        }

        /// What serde_json accepts, we accept (serde_json checks more: UTF-8 and
        /// surrogate pairs, which the plugin checks separately or leaves to the
        /// consumer); ours never panics.
        #[test]
        fn validator_agrees_with_serde(s in prop::collection::vec(
            prop::sample::select(b" \t\n[]{}:,\"\\-+.0123456789eEtrufalsn/xbu".to_vec()),
            0..24,
        )) {
            let ours = is_valid(&s);
            if serde_json::from_slice::<serde_json::Value>(&s).is_ok() {
                prop_assert!(ours, "{}", String::from_utf8_lossy(&s));
            }
            if is_number(&s) {
                prop_assert!(ours);
            }
        }
    }
}
