//! Feeds arbitrary bytes to the `vector` text parser.
//!
//! Invariants: the parser never panics; anything it accepts has 1..=16000
//! finite elements; formatting an accepted vector and parsing the result
//! gives back exactly the same bits, and formatting is stable on the second
//! round.

#![no_main]

use arrw_core::text::{format_vector_text, parse_vector_text, VECTOR_MAX_DIM};
use libfuzzer_sys::fuzz_target;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse_vector_text(data) else {
        return;
    };
    assert!((1..=VECTOR_MAX_DIM).contains(&v.len()), "dim {}", v.len());
    assert!(v.iter().all(|x| x.is_finite()), "non-finite element accepted");

    let mut text = String::new();
    format_vector_text(&v, &mut text);
    let again = parse_vector_text(&text)
        .unwrap_or_else(|e| panic!("re-parse of {text:?} failed: {e}"));
    assert_eq!(bits(&again), bits(&v), "bits changed through {text:?}");

    let mut text2 = String::new();
    format_vector_text(&again, &mut text2);
    assert_eq!(text, text2);
});
