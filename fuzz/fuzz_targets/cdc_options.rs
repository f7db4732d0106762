//! Feeds arbitrary bytes to the change feed's option parser
//! (`arrw_core::cdc_options`), as a slot consumer can.
//!
//! Input: the first byte picks the option name (one of the four, or an unknown
//! one); the rest is the value (a missing value when the input is one byte).
//! Invariants: never a panic; an error always has a message naming the option;
//! an accepted `tables` value has at least one entry, no empty name, and
//! formatting it and parsing the result gives back the same patterns.

#![no_main]

use arrw_core::cdc_options::{format_tables, parse_tables, Options};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = [
    "include-transaction",
    "include-vectors",
    "include-row",
    "tables",
    "no-such-option",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let name = NAMES[pick as usize % NAMES.len()];
    let value = (data.len() > 1).then_some(rest);
    let mut o = Options::default();
    match o.set(name, value) {
        Ok(()) => assert_ne!(name, "no-such-option"),
        Err(e) => assert!(e.message.contains(name), "{e:?}"),
    }

    if let Ok(t) = parse_tables(rest) {
        assert!(!t.is_empty());
        assert!(t
            .iter()
            .all(|p| !p.schema.is_empty() && p.table.as_ref().is_none_or(|n| !n.is_empty())));
        let again = parse_tables(&format_tables(&t))
            .unwrap_or_else(|e| panic!("re-parse of {t:?} failed: {e:?}"));
        assert_eq!(again, t);
    }
});
