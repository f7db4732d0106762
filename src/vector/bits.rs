//! pgvector's functions of `bit` strings: `binary_quantize(vector)` (and of
//! `halfvec`, in halfvec.rs, through [`quantized`]), `hamming_distance` and
//! `jaccard_distance` with their operators `<~>` and `<%>`. The arithmetic is
//! `arrw_core::bits`; this file owns the raw pointers into `varbit` datums.
//!
//! A `varbit` (utils/varbit.h): a 4-byte varlena header, the bit length as an
//! int32, then the bits, most significant first, the last byte's unused bits
//! zero.

use super::VectorArg;
use crate::fmgr;
use arrw_core::bits;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

/// Header bytes before a `varbit`'s bits: varlena header and bit length.
const VARBIT_HEADER: usize = pg_sys::VARHDRSZ + 4;

/// A new `varbit` of `nbits` bits, each set for a `true` of `positive` (in the
/// current memory context).
pub fn quantized(nbits: usize, positive: impl IntoIterator<Item = bool>) -> pg_sys::Datum {
    let nbytes = nbits.div_ceil(8);
    let total = VARBIT_HEADER + nbytes;
    // nbits fits an int32: it is a vector's dimension count (at most 16,000).
    // SAFETY: palloc0 returns `total` zeroed, MAXALIGNed bytes or raises an
    // ERROR; the int32 bit length at offset 4 and `nbytes` after it fit in it.
    unsafe {
        let p = pg_sys::palloc0(total) as *mut u8;
        pgrx::varlena::set_varsize_4b(p.cast(), total as i32);
        *p.add(pg_sys::VARHDRSZ).cast::<i32>() = nbits as i32;
        bits::quantize(
            positive,
            std::slice::from_raw_parts_mut(p.add(VARBIT_HEADER), nbytes),
        );
        pg_sys::Datum::from(p)
    }
}

/// Argument `n` as its bit length and data bytes, detoasted.
///
/// # Safety
/// `fcinfo` must be live and argument `n` a non-null `bit`/`varbit` datum
/// (the functions are STRICT).
unsafe fn varbit_arg<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> (u32, &'a [u8]) {
    // SAFETY: forwarded contract; pg_detoast_datum returns the datum itself or
    // a palloc'd copy with a 4-byte header, valid for the call.
    unsafe {
        let p = pg_sys::pg_detoast_datum(fmgr::arg(fcinfo, n).cast_mut_ptr()) as *const u8;
        let total = pgrx::varlena::varsize_any(p.cast());
        let len = *p.add(pg_sys::VARHDRSZ).cast::<i32>();
        // PostgreSQL built it: its bytes hold the bit length's bits.
        let bytes = total.saturating_sub(VARBIT_HEADER);
        (
            len as u32,
            std::slice::from_raw_parts(p.add(VARBIT_HEADER), bytes),
        )
    }
}

/// Both `bit` arguments, of one length (22000 otherwise, pgvector's message).
///
/// # Safety
/// The function must be declared `(bit, bit)` and STRICT.
unsafe fn two<'a>(fcinfo: pg_sys::FunctionCallInfo) -> (&'a [u8], &'a [u8]) {
    // SAFETY: forwarded contract.
    let ((la, a), (lb, b)) = unsafe { (varbit_arg(fcinfo, 0), varbit_arg(fcinfo, 1)) };
    if la != lb || a.len() != b.len() {
        crate::errors::error(
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("different bit lengths {la} and {lb}"),
        );
    }
    (a, b)
}

crate::v1! {
    /// `binary_quantize(vector) -> bit`: bit i (most significant first) is set
    /// when element i is positive, as pgvector quantizes.
    fn arrw_binary_quantize(fcinfo) {
        // SAFETY: declared (vector), STRICT.
        let a = unsafe { VectorArg::from_arg(fcinfo, 0) };
        quantized(a.x.len(), a.x.iter().map(|&v| v > 0.0))
    }
}

crate::v1! {
    /// `hamming_distance(bit, bit) -> float8` and operator `<~>`: the number of
    /// bits in which the two strings differ.
    fn arrw_hamming_distance(fcinfo) {
        // SAFETY: declared (bit, bit), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        fmgr::float8(bits::hamming(a, b) as f64)
    }
}

crate::v1! {
    /// `jaccard_distance(bit, bit) -> float8` and operator `<%>`.
    fn arrw_jaccard_distance(fcinfo) {
        // SAFETY: declared (bit, bit), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        fmgr::float8(bits::jaccard(a, b))
    }
}
