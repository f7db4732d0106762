//! Feeds arbitrary bytes to the change feed's JSON code (`arrw_core::cdc_json`):
//! message contents and `json` column values reach the validator as any bytes a
//! writer chose.
//!
//! Invariants: never a panic (deep nesting included); escaping any bytes gives a
//! text the validator accepts, free of control characters; a valid text stays
//! valid, with no line break, when put on one line; a number is a valid text;
//! escaped and hex forms are valid texts.

#![no_main]

use arrw_core::cdc_json::{is_number, is_valid, push_hex_bytes, push_raw_one_line, push_str};
use libfuzzer_sys::fuzz_target;

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
    }
    let mut lit = Vec::new();
    push_str(&mut lit, data);
    assert!(is_valid(&lit));
    assert!(lit.iter().all(|&b| b >= 0x20));
    let mut hex = Vec::new();
    push_hex_bytes(&mut hex, data);
    assert!(is_valid(&hex));
    assert_eq!(hex.len(), 2 * data.len() + 5);
});
