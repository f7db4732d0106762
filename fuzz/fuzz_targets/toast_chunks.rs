//! TOAST pointers and chunks (`arrw_core::toast`) from arbitrary bytes: what
//! the re-rank's TOAST reader parses from heap rows and TOAST pages.
//!
//! The input is read as a pointer, then as a stored value's size (2 bytes)
//! followed by chunks, each a sequence number (1 byte, signed) and a chunk
//! datum (1 length byte, then that many bytes). Invariants: nothing panics; a
//! plain size agrees with the raw size; a payload lies inside its datum; the
//! assembly never writes past its buffer, and succeeds exactly when the
//! accepted chunks, numbered 0, 1, 2, ..., each of the chunk size but the
//! last, fill it, in which case the buffer is their concatenation.

#![no_main]

use arrw_core::toast::{chunk_payload, external_pointer, Assembly};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(p) = external_pointer(data) {
        if let Some(n) = p.plain_size() {
            assert_eq!(n as i64 + 4, i64::from(p.rawsize));
        }
    }
    if data.len() < 2 {
        return;
    }
    let size = usize::from(u16::from_le_bytes([data[0], data[1]])) % 4096;
    // Chunks of 1 to 64 bytes (the table's chunk size; 1,996 at 8 kB pages),
    // from the size's top bits.
    let chunk = 1 + usize::from(data[1] >> 2);
    let mut out = vec![0u8; size];
    let mut expect = Vec::new();
    let mut rest = &data[2..];
    let mut asm = Assembly::new(&mut out, chunk);
    let mut failed = false;
    while rest.len() >= 2 && !failed {
        let seq = i32::from(rest[0] as i8);
        let len = usize::from(rest[1]).min(rest.len() - 2);
        let datum = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if let Some(payload) = chunk_payload(datum) {
            assert!(payload.len() < datum.len());
            match asm.push(seq, payload) {
                Ok(()) => expect.extend_from_slice(payload),
                Err(_) => failed = true,
            }
        }
    }
    assert!(expect.len() <= size);
    let done = asm.finish().is_ok();
    assert_eq!(done, expect.len() == size);
    if done {
        assert_eq!(out, expect);
    }
});
