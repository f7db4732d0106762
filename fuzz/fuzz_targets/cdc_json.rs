//! Feeds arbitrary bytes to the change feed's JSON code (`arrw_core::cdc_json`):
//! message contents and `json` column values reach the validator as any bytes a
//! writer chose.
//!
//! Invariants: never a panic (deep nesting included); escaping any bytes gives a
//! text the validator accepts, free of control characters; a valid text stays
//! valid, with no line break, when put on one line; a number is a valid text;
//! escaped and hex forms are valid texts. As UTF-8 ([`TextEncoding::Utf8`]),
//! escaping and putting on one line also leave no U+0085, U+2028 or U+2029 raw
//! (whatever the bytes around them), and change nothing else; in other
//! encodings they change no byte >= 0x80.

#![no_main]

use arrw_core::cdc_json::{
    is_number, is_valid, push_hex_bytes, push_raw_one_line, push_raw_one_line_in, push_str,
    push_str_in, TextEncoding,
};
use libfuzzer_sys::fuzz_target;

/// Whether `b` holds U+0085, U+2028 or U+2029 in UTF-8.
fn has_unicode_line_break(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == [0xc2, 0x85])
        || b.windows(3)
            .any(|w| w == [0xe2, 0x80, 0xa8] || w == [0xe2, 0x80, 0xa9])
}

/// `b` with the escapes of U+0085, U+2028 and U+2029 turned back into the
/// characters' UTF-8 bytes.
fn unescape_line_breaks(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let (rep, n): (&[u8], usize) = if rest.starts_with(b"\\u0085") {
            (&[0xc2, 0x85], 6)
        } else if rest.starts_with(b"\\u2028") {
            (&[0xe2, 0x80, 0xa8], 6)
        } else if rest.starts_with(b"\\u2029") {
            (&[0xe2, 0x80, 0xa9], 6)
        } else if rest.starts_with(b"\\\\") {
            (b"\\\\", 2)
        } else {
            (&rest[..1], 1)
        };
        out.extend_from_slice(rep);
        i += n;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let valid = is_valid(data);
    if is_number(data) {
        assert!(valid);
    }
    if valid {
        let mut line = Vec::new();
        push_raw_one_line(&mut line, data);
        assert!(is_valid(&line));
        assert!(!line.iter().any(|&b| b == b'\n' || b == b'\r'));
        let mut other = Vec::new();
        push_raw_one_line_in(&mut other, data, TextEncoding::Other);
        assert_eq!(other, line);
        let mut utf8 = Vec::new();
        push_raw_one_line_in(&mut utf8, data, TextEncoding::Utf8);
        assert!(is_valid(&utf8));
        assert!(!utf8.iter().any(|&b| b == b'\n' || b == b'\r'));
        assert!(!has_unicode_line_break(&utf8));
        assert_eq!(unescape_line_breaks(&utf8), unescape_line_breaks(&line));
    }
    let mut lit = Vec::new();
    push_str(&mut lit, data);
    assert!(is_valid(&lit));
    assert!(lit.iter().all(|&b| b >= 0x20));
    let mut other = Vec::new();
    push_str_in(&mut other, data, TextEncoding::Other);
    assert_eq!(other, lit);
    let mut utf8 = Vec::new();
    push_str_in(&mut utf8, data, TextEncoding::Utf8);
    assert!(is_valid(&utf8));
    assert!(utf8.iter().all(|&b| b >= 0x20));
    assert!(!has_unicode_line_break(&utf8));
    assert_eq!(unescape_line_breaks(&utf8), unescape_line_breaks(&lit));
    let mut hex = Vec::new();
    push_hex_bytes(&mut hex, data);
    assert!(is_valid(&hex));
    assert_eq!(hex.len(), 2 * data.len() + 5);
});
