//! The `vector` type: a drop-in for pgvector's `vector`.
//!
//! On-disk and in-memory layout is pgvector's, byte for byte:
//!
//! ```text
//! int32 vl_len_   varlena header (4-byte form once detoasted)
//! int16 dim       number of elements, 1..=16000
//! int16 unused    always 0
//! float4 x[dim]   the elements, native byte order, all finite
//! ```
//!
//! This module owns every raw pointer into a vector datum ([`VectorArg`] for
//! arguments, [`build`] for results); the other files of `vector/` work with plain
//! `&[f32]` and call `arrw_core` for parsing, formatting and distances.
//!
//! Submodules: [`io`] (text/binary I/O, typmod), [`ops`] (distances, arithmetic,
//! comparison, functions), [`casts`] (arrays <-> vector, typmod coercion),
//! [`agg`] (avg/sum), [`maxsim`] (MaxSim over `vector[]`, the `@#` operator),
//! [`halfvec`] (the half-precision `halfvec` type), [`bits`] (`binary_quantize`
//! and the distances of `bit` strings). [`key_values`] reads an
//! ivfpq key of either type as `f32`s.

pub mod agg;
pub mod bits;
pub mod casts;
pub mod halfvec;
pub mod io;
pub mod maxsim;
pub mod ops;

use crate::errors::{check_vector, raise_vector};
use arrw_core::text::{self, VectorError};
use pgrx::pg_sys;

/// Bytes before the first element: varlena header + dim + unused.
pub const VECTOR_HEADER_BYTES: usize = 8;

/// A detoasted vector argument, borrowed for the duration of the function call.
///
/// The slice lives in memory that PostgreSQL owns: either the tuple the executor
/// handed us, or a detoasted copy palloc'd in the current (per-call or per-tuple)
/// memory context. Neither is freed before the function returns.
pub struct VectorArg<'a> {
    pub x: &'a [f32],
}

impl<'a> VectorArg<'a> {
    /// Detoasts argument `n` of the current call and checks its header.
    ///
    /// # Safety
    /// `fcinfo` must be live and argument `n` must be declared as `vector` in SQL
    /// (so it is a non-null varlena datum: every function taking a vector is STRICT).
    #[inline]
    pub unsafe fn from_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> VectorArg<'a> {
        // SAFETY: forwarded from this function's contract.
        unsafe { Self::from_datum(crate::fmgr::arg(fcinfo, n)) }
    }

    /// Detoasts a vector datum and checks that its length agrees with its `dim`.
    ///
    /// # Safety
    /// `datum` must be a non-null datum of type `vector` that stays valid for `'a`.
    #[inline]
    pub unsafe fn from_datum(datum: pg_sys::Datum) -> VectorArg<'a> {
        // SAFETY: forwarded contract: a non-null varlena valid for 'a.
        let (p, total, dim) = unsafe { detoast(datum) };
        if dim < 0 || total != VECTOR_HEADER_BYTES + 4 * dim as usize {
            corrupt(total, dim);
        }
        // SAFETY: we just checked that exactly `dim` float4s follow the header, at a
        // 4-byte aligned address, in memory that outlives 'a (caller's contract).
        let x = unsafe {
            std::slice::from_raw_parts(p.add(VECTOR_HEADER_BYTES).cast::<f32>(), dim as usize)
        };
        VectorArg { x }
    }

    /// An ivfpq key (a `vector` or a `halfvec` datum) as `f32`s: see [`key_values`].
    ///
    /// # Safety
    /// `datum` must be a non-null `vector` or `halfvec` datum valid for `'a`.
    #[inline]
    pub unsafe fn from_key(datum: pg_sys::Datum) -> VectorArg<'a> {
        // SAFETY: forwarded contract.
        VectorArg {
            x: unsafe { key_values(datum) },
        }
    }

    #[inline]
    pub fn dim(&self) -> usize {
        self.x.len()
    }
}

/// Calls `f` with each vector of an ivfpq key: the key itself, or for a
/// `vector[]` key (`multi`, the `vector_maxsim_ops` class) each element in
/// order (none for an empty array; NULL elements, nested arrays and more than
/// `arrw_core::maxsim::MAX_VECTORS` elements are ERRORs). The one reader of
/// index keys for builds and inserts.
///
/// # Safety
/// `datum` must be a non-null key datum of the index's type, valid for the call.
pub unsafe fn each_key_vector(datum: pg_sys::Datum, multi: bool, mut f: impl FnMut(&[f32])) {
    if multi {
        // SAFETY: forwarded contract (a vector[] datum).
        for x in unsafe { maxsim::array_vectors(datum, arrw_core::maxsim::Side::Document) } {
            f(x);
        }
    } else {
        // SAFETY: forwarded contract (a vector or halfvec datum).
        f(unsafe { VectorArg::from_key(datum) }.x);
    }
}

/// Detoasts a `vector` or `halfvec` datum (their headers are the same) and
/// returns its address, total length and `dim` field; a datum shorter than the
/// header is an ERROR.
///
/// # Safety
/// `datum` must be a non-null varlena datum; the pointer returned is valid as
/// long as the datum is (or, for a detoasted copy, the current memory context).
#[inline]
pub(crate) unsafe fn detoast(datum: pg_sys::Datum) -> (*const u8, usize, i16) {
    let raw: *mut pg_sys::varlena = datum.cast_mut_ptr();
    // A plain (4-byte header, uncompressed, inline) varlena has the two low
    // bits of its first byte clear on little-endian machines; it is used in
    // place, as pg_detoast_datum would return it. Anything else (short header,
    // compressed, external) goes through pg_detoast_datum, which returns a
    // palloc'd 4-byte-header copy. The fast path matters: this runs for every
    // row of a sequential k-NN scan, and each FFI call costs a setjmp.
    // SAFETY: the caller guarantees a non-null varlena datum, so its first
    // byte is readable; both branches yield a 4-byte-header varlena.
    let p = unsafe {
        if cfg!(target_endian = "little") && *(raw as *const u8) & 0x03 == 0 {
            raw
        } else {
            pg_sys::pg_detoast_datum(raw)
        }
    };
    // SAFETY: a detoasted varlena always has a 4-byte header we can read.
    let total = unsafe { pgrx::varlena::varsize_4b(p) };
    if total < VECTOR_HEADER_BYTES {
        corrupt(total, 0);
    }
    // SAFETY: total >= 8, so bytes 4..8 (dim, unused) are inside the datum;
    // varlena data is at least 4-byte aligned (both types' typalign is 'i').
    let dim = unsafe { *(p as *const u8).add(4).cast::<i16>() };
    (p as *const u8, total, dim)
}

/// The `f32` values of an ivfpq key: a `vector` or a `halfvec` datum (arrw's or
/// pgvector's: the layouts are the same). This is the one conversion every
/// path of the index (build, insert, scan query, re-rank) reads keys through.
///
/// The two types are told apart by the datum's own header: for `dim` elements a
/// vector is `8 + 4 * dim` bytes and a halfvec `8 + 2 * dim`, never equal for
/// `dim >= 1`, and ivfpq's operator classes only admit these two types. That
/// costs nothing per row (no catalog lookup, no index argument at the call
/// sites) and works for pgvector's `halfvec` (another type OID) unchanged. Any
/// other length is a corrupt datum (ERROR XX001). A vector is read in place;
/// a halfvec is widened into a palloc'd copy in the current memory context,
/// which lives exactly as long as a detoasted copy would (callers run each row
/// in a per-row context).
///
/// # Safety
/// `datum` must be a non-null `vector` or `halfvec` datum valid for `'a`.
pub unsafe fn key_values<'a>(datum: pg_sys::Datum) -> &'a [f32] {
    // SAFETY: forwarded contract.
    let (p, total, dim) = unsafe { detoast(datum) };
    if dim < 0 {
        corrupt(total, dim);
    }
    let n = dim as usize;
    if total == VECTOR_HEADER_BYTES + 4 * n {
        // SAFETY: a vector: exactly n float4s follow the header, 4-byte aligned,
        // in memory valid for 'a.
        return unsafe { std::slice::from_raw_parts(p.add(VECTOR_HEADER_BYTES).cast::<f32>(), n) };
    }
    if total != VECTOR_HEADER_BYTES + 2 * n {
        corrupt(total, dim);
    }
    // SAFETY: a halfvec: exactly n halves follow the header (2-byte aligned).
    let h = unsafe { std::slice::from_raw_parts(p.add(VECTOR_HEADER_BYTES).cast::<u16>(), n) };
    // SAFETY: palloc0 returns 4 * n zeroed (so initialised), MAXALIGNed bytes or
    // raises an ERROR; they live in the current memory context for 'a.
    let out =
        unsafe { std::slice::from_raw_parts_mut(pg_sys::palloc0(4 * n.max(1)).cast::<f32>(), n) };
    arrw_core::half::widen(h, out);
    out
}

/// Whether a key datum that [`key_values`] accepted is a `halfvec` (its
/// elements take 2 bytes, not 4): for errors worded as its type's own.
///
/// # Safety
/// As [`key_values`].
pub unsafe fn key_is_half(datum: pg_sys::Datum) -> bool {
    // SAFETY: forwarded contract; a detoasted datum is returned as it is.
    let (_, total, dim) = unsafe { detoast(datum) };
    dim > 0 && total == VECTOR_HEADER_BYTES + 2 * dim as usize
}

#[cold]
fn corrupt(total: usize, dim: i16) -> ! {
    raise_vector(VectorError::corrupt(total, dim))
}

/// Allocates a vector of `dim` elements in the current memory context, lets `fill`
/// write the elements, and returns it as a datum.
///
/// `dim` must already have been checked with `check_dim` by the caller.
pub fn build(dim: usize, fill: impl FnOnce(&mut [f32])) -> pg_sys::Datum {
    let total = VECTOR_HEADER_BYTES + 4 * dim;
    // SAFETY: palloc0 either returns `total` zeroed bytes or raises an ERROR; the
    // allocation is MAXALIGNed, so the float4 area at offset 8 is aligned.
    unsafe {
        let p = pg_sys::palloc0(total) as *mut u8;
        pgrx::varlena::set_varsize_4b(p.cast(), total as i32);
        *p.add(4).cast::<i16>() = dim as i16;
        // `unused` (bytes 6..8) stays 0 from palloc0.
        let x = std::slice::from_raw_parts_mut(p.add(VECTOR_HEADER_BYTES).cast::<f32>(), dim);
        fill(x);
        pg_sys::Datum::from(p)
    }
}

/// A vector datum holding a copy of `values`.
pub fn from_slice(values: &[f32]) -> pg_sys::Datum {
    build(values.len(), |x| x.copy_from_slice(values))
}

/// `different vector dimensions 3 and 4`, as pgvector words it.
#[inline]
pub fn check_same_dims(a: &[f32], b: &[f32]) {
    check_vector(text::check_same_dims(a.len(), b.len()));
}

/// The elements of `arr` (no NULLs: callers check first), stored as `typlen`,
/// `byval`, `align` say, as datums palloc'd in the current memory context (the
/// one home of `deconstruct_array` for the vector code: array casts and MaxSim).
///
/// # Safety
/// `arr` is a detoasted array of `elemtype` without NULLs, and the storage
/// parameters are that type's.
pub(crate) unsafe fn array_datums<'a>(
    arr: *mut pg_sys::ArrayType,
    elemtype: pg_sys::Oid,
    typlen: i16,
    byval: bool,
    align: std::ffi::c_char,
) -> &'a [pg_sys::Datum] {
    let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
    let mut n: std::ffi::c_int = 0;
    // SAFETY: forwarded contract; deconstruct_array pallocs `n` datums (pointing
    // into `arr` for by-reference types) and sets `elems` to them.
    unsafe {
        pg_sys::deconstruct_array(
            arr,
            elemtype,
            typlen.into(),
            byval,
            align,
            &mut elems,
            std::ptr::null_mut(),
            &mut n,
        );
        std::slice::from_raw_parts(elems, n as usize)
    }
}
