//! Feeds arbitrary job arguments to the checks `arrw.submit_job` makes on them
//! without a server (keys, JSON types, batch_rows, COPY options).
//!
//! The input is split on 0xFF into entries; in each, the first byte picks the
//! key and the JSON type, the rest is the value's text. Invariants: the checks
//! never panic; accepted arguments have every required key, a batch_rows in
//! range, one-byte delimiter/quote/escape, no text-only option with format
//! binary, and quote/escape only with csv.

#![no_main]

use arrw_core::import::{
    arg_batch_rows, check_keys, copy_args, ArgValue, IMPORT_KEYS, MAX_BATCH_ROWS,
};
use libfuzzer_sys::fuzz_target;

const TYPES: &[&str] = &["string", "number", "boolean", "null", "array", "object"];

fuzz_target!(|data: &[u8]| {
    let args: Vec<(String, ArgValue)> = data
        .split(|&b| b == 0xff)
        .filter_map(|e| {
            let (&sel, text) = e.split_first()?;
            // Every accepted key, plus one that is not.
            let i = usize::from(sel) % (IMPORT_KEYS.len() + 1);
            let key = IMPORT_KEYS.get(i).copied().unwrap_or("colour").to_string();
            let json_type = TYPES[usize::from(sel >> 4) % TYPES.len()].to_string();
            let text = (json_type != "null").then(|| String::from_utf8_lossy(text).into_owned());
            Some((key, ArgValue { json_type, text }))
        })
        .collect();
    let Ok(vals) = check_keys("bulk_import", IMPORT_KEYS, &["table", "path"], &args) else {
        return;
    };
    for k in ["table", "path"] {
        assert!(vals.iter().any(|(n, _)| *n == k));
    }
    if let Ok(n) = arg_batch_rows(&vals, 10_000) {
        assert!((1..=MAX_BATCH_ROWS).contains(&n));
    }
    let Ok(o) = copy_args(&vals) else {
        return;
    };
    assert!(["text", "csv", "binary"].contains(&o.format.as_str()));
    for c in [&o.delimiter, &o.quote, &o.escape].into_iter().flatten() {
        assert_eq!(c.len(), 1);
    }
    if o.format == "binary" {
        assert!(!o.header && o.delimiter.is_none() && o.null.is_none());
    }
    if o.format != "csv" {
        assert!(o.quote.is_none() && o.escape.is_none());
    }
    if let Some(e) = &o.encoding {
        assert!(!e.trim().is_empty());
    }
});
