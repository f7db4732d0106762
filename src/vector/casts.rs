//! Casts: the typmod coercion `vector -> vector(n)`, arrays -> `vector`, and
//! `vector -> real[]`, with pgvector's checks and error messages.

use super::{build, VectorArg};
use crate::errors::{check_vector, raise_vector};
use crate::fmgr;
use arrw_core::text::{self, VectorError};
use pgrx::pg_sys;

crate::v1! {
    /// `vector(vector, integer, boolean)`: the length-coercion cast that enforces
    /// `vector(n)` on every path (assignment, INSERT ... SELECT, COPY, explicit cast).
    fn arrw_vector(fcinfo) {
        // SAFETY: declared (vector, integer, boolean), STRICT.
        let (a, typmod) = unsafe { (VectorArg::from_arg(fcinfo, 0), fmgr::arg_i32(fcinfo, 1)) };
        check_vector(text::check_expected_dim(typmod, a.dim()));
        // SAFETY: same live fcinfo; returning the argument unchanged is allowed.
        unsafe { fmgr::arg(fcinfo, 0) }
    }
}

/// The elements of a cast's array argument (`integer[]`, `real[]`, `double
/// precision[]` or `numeric[]`) with their type, after pgvector's checks: one
/// dimension (`array must be 1-D`), no NULLs, a supported element type.
///
/// # Safety
/// `datum` must be a non-null array datum; the slice lives as long as the call.
pub(super) unsafe fn array_elements<'a>(
    datum: pg_sys::Datum,
) -> (pg_sys::Oid, &'a [pg_sys::Datum]) {
    // SAFETY: forwarded contract; the array is detoasted before PostgreSQL's
    // array routines read it.
    let arr = unsafe { pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType };
    // SAFETY: `arr` is a detoasted array; we read its header fields only.
    let (ndim, elemtype) = unsafe { ((*arr).ndim, (*arr).elemtype) };
    if ndim > 1 {
        raise_vector(VectorError::array_not_1d());
    }
    // SAFETY: array_contains_nulls only reads the array's null bitmap.
    if unsafe { pg_sys::array_contains_nulls(arr) } {
        raise_vector(VectorError::array_has_nulls());
    }
    let (typlen, byval, align) = match elemtype {
        pg_sys::INT4OID | pg_sys::FLOAT4OID => (4i16, true, b'i' as std::ffi::c_char),
        pg_sys::FLOAT8OID => (8, true, b'd' as std::ffi::c_char),
        pg_sys::NUMERICOID => (-1, false, b'i' as std::ffi::c_char),
        _ => raise_vector(VectorError::unsupported_array_type()),
    };
    // SAFETY: the storage parameters match `elemtype` (built-in types above);
    // there are no nulls (checked).
    let elems = unsafe { super::array_datums(arr, elemtype, typlen, byval, align) };
    (elemtype, elems)
}

/// One element of [`array_elements`] as a `float4`, converted as PostgreSQL's
/// casts to `real` do (numeric with its own rounding and range errors).
///
/// # Safety
/// `d` must be a non-null datum of type `elemtype`, one [`array_elements`] allows.
pub(super) unsafe fn element_f32(elemtype: pg_sys::Oid, d: pg_sys::Datum) -> f32 {
    match elemtype {
        pg_sys::INT4OID => d.value() as i32 as f32,
        pg_sys::FLOAT4OID => f32::from_bits(d.value() as u32),
        pg_sys::FLOAT8OID => f64::from_bits(d.value() as u64) as f32,
        // SAFETY: numeric_float4 takes one non-null numeric datum (contract).
        _ => f32::from_bits(
            unsafe {
                pg_sys::OidFunctionCall1Coll(
                    pg_sys::Oid::from(pg_sys::F_FLOAT4_NUMERIC),
                    pg_sys::InvalidOid,
                    d,
                )
            }
            .value() as u32,
        ),
    }
}

crate::v1! {
    /// `array_to_vector(integer[] | real[] | double precision[] | numeric[], integer, boolean)`
    fn arrw_array_to_vector(fcinfo) {
        // SAFETY: declared (<array>, integer, boolean), STRICT.
        let ((elemtype, elems), typmod) = unsafe { (array_elements(fmgr::arg(fcinfo, 0)), fmgr::arg_i32(fcinfo, 1)) };
        check_vector(text::check_dim(elems.len()));
        check_vector(text::check_expected_dim(typmod, elems.len()));
        build(elems.len(), |x| {
            for (o, d) in x.iter_mut().zip(elems) {
                // SAFETY: `d` is a non-null element of type `elemtype`.
                *o = unsafe { element_f32(elemtype, *d) };
            }
            // pgvector converts every element before checking any, so a range
            // error from a later numeric wins over a NaN earlier in the array.
            for v in x.iter() {
                check_vector(text::check_element(*v));
            }
        })
    }
}

crate::v1! {
    /// `vector_to_float4(vector, integer, boolean) -> real[]`
    fn arrw_vector_to_float4(fcinfo) {
        // SAFETY: declared (vector, integer, boolean), STRICT.
        let a = unsafe { VectorArg::from_arg(fcinfo, 0) };
        let datums: Vec<pg_sys::Datum> = a.x.iter().map(|v| pg_sys::Datum::from(v.to_bits())).collect();
        // SAFETY: construct_array copies `datums` (float4: 4 bytes, by value, int
        // alignment) into a new palloc'd array in the current memory context.
        let arr = unsafe {
            pg_sys::construct_array(
                datums.as_ptr() as *mut pg_sys::Datum,
                datums.len() as i32,
                pg_sys::FLOAT4OID,
                4,
                true,
                b'i' as std::ffi::c_char,
            )
        };
        pg_sys::Datum::from(arr)
    }
}
