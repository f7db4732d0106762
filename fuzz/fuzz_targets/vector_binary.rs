//! Feeds arbitrary bytes to the `vector` binary (recv) decoder.
//!
//! The first byte picks the typmod to enforce (0 means none, i.e. -1), the
//! rest is the message. Invariants: the decoder never panics; anything it
//! accepts has 1..=16000 finite elements and respects the typmod; the
//! consumed byte count is exactly the encoded size; re-encoding reproduces
//! the consumed bytes exactly.

#![no_main]

use arrw_core::text::{decode_vector_binary, encode_vector_binary, VECTOR_MAX_DIM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, msg)) = data.split_first() else {
        return;
    };
    let typmod = if selector == 0 { -1 } else { i32::from(selector) };
    let Ok((v, used)) = decode_vector_binary(msg, typmod) else {
        return;
    };
    assert!((1..=VECTOR_MAX_DIM).contains(&v.len()), "dim {}", v.len());
    assert!(v.iter().all(|x| x.is_finite()), "non-finite element accepted");
    assert!(typmod == -1 || typmod as usize == v.len(), "typmod ignored");
    assert_eq!(used, 4 + 4 * v.len());
    assert!(used <= msg.len());

    let mut out = Vec::new();
    encode_vector_binary(&v, &mut out);
    assert_eq!(&out[..], &msg[..used], "re-encoding differs");
});
