//! Feeds arbitrary bytes to the `halfvec` parsers: the first byte picks the
//! parser (even: text, odd: binary, with typmod `byte / 2` or none for 0/1),
//! the rest is the input.
//!
//! Invariants: neither parser panics; anything accepted has 1..=16000 finite
//! halves (and respects the typmod); text output parses back to the same bits
//! and is stable; binary input consumes exactly 4 + 2 * dim bytes and
//! re-encodes to them; every accepted half survives the f32 round trip.

#![no_main]

use arrw_core::half::{
    decode_halfvec_binary, encode_halfvec_binary, f16_to_f32, f32_to_f16, format_halfvec_text,
    is_inf, is_nan, parse_halfvec_text, HALFVEC_MAX_DIM,
};
use libfuzzer_sys::fuzz_target;

fn check(v: &[u16]) {
    assert!((1..=HALFVEC_MAX_DIM).contains(&v.len()), "dim {}", v.len());
    for &h in v {
        assert!(
            !is_nan(h) && !is_inf(h),
            "non-finite half {h:#06x} accepted"
        );
        assert_eq!(f32_to_f16(f16_to_f32(h)), h);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        let Ok(v) = parse_halfvec_text(input) else {
            return;
        };
        check(&v);
        let mut text = String::new();
        format_halfvec_text(&v, &mut text);
        let again = parse_halfvec_text(&text)
            .unwrap_or_else(|e| panic!("re-parse of {text:?} failed: {e}"));
        assert_eq!(again, v, "bits changed through {text:?}");
        let mut text2 = String::new();
        format_halfvec_text(&again, &mut text2);
        assert_eq!(text, text2);
    } else {
        let typmod = if selector < 2 {
            -1
        } else {
            i32::from(selector / 2)
        };
        let Ok((v, used)) = decode_halfvec_binary(input, typmod) else {
            return;
        };
        check(&v);
        assert!(typmod == -1 || typmod as usize == v.len(), "typmod ignored");
        assert_eq!(used, 4 + 2 * v.len());
        let mut out = Vec::new();
        encode_halfvec_binary(&v, &mut out);
        assert_eq!(&out[..], &input[..used], "re-encoding differs");
    }
});
