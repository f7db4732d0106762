//! MaxSim over `vector[]` (`maxsim(doc, query)` and the operator `doc @# query`):
//! reads both arrays' vectors and calls `arrw_core::maxsim`.

use super::VectorArg;
use crate::fmgr;
use arrw_core::maxsim::{self, MaxSimError};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// The vectors of a `vector[]` argument, in order. NULL elements and arrays of
/// more than one dimension are ERRORs; an empty array gives no vectors (the
/// caller reports it, naming the side).
///
/// # Safety
/// `fcinfo` must be live, with argument `n` a non-null `vector[]` datum.
unsafe fn vectors<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Vec<&'a [f32]> {
    let side = if n == 0 {
        maxsim::Side::Document
    } else {
        maxsim::Side::Query
    };
    // SAFETY: forwarded contract.
    unsafe { array_vectors(fmgr::arg(fcinfo, n), side) }
}

/// The vectors of a non-null `vector[]` datum, in order (see [`vectors`]):
/// also how ivfpq reads the keys and queries of `vector_maxsim_ops`. The
/// slices point into the datum, or into a detoasted copy in the current
/// memory context.
///
/// # Safety
/// `datum` must be a non-null `vector[]` datum valid for `'a`.
pub unsafe fn array_vectors<'a>(datum: pg_sys::Datum, side: maxsim::Side) -> Vec<&'a [f32]> {
    // The detoasted copy, if any, lives in the current memory context.
    // SAFETY: a non-null array datum; detoasted before the array routines read it.
    let arr = unsafe { pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) } as *mut pg_sys::ArrayType;
    // SAFETY: `arr` is a detoasted array; we read its header fields only.
    let (ndim, elemtype) = unsafe { ((*arr).ndim, (*arr).elemtype) };
    if ndim > 1 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "MaxSim arrays must be one-dimensional"
        );
    }
    if ndim == 0 {
        return Vec::new();
    }
    // SAFETY: array_contains_nulls only reads the array's null bitmap.
    if unsafe { pg_sys::array_contains_nulls(arr) } {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "MaxSim arrays must not contain NULL vectors"
        );
    }
    let (mut typlen, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
    // SAFETY: elemtype is the array's element type (vector); the call fills the
    // three out-parameters from the type's catalog entry.
    unsafe { pg_sys::get_typlenbyvalalign(elemtype, &mut typlen, &mut byval, &mut align) };
    // SAFETY: the storage parameters are the element type's own; no nulls
    // (checked).
    let elems = unsafe { super::array_datums(arr, elemtype, typlen, byval, align) };
    if elems.len() > maxsim::MAX_VECTORS {
        // Checked here too, before reading every element of a huge array.
        raise(MaxSimError::TooMany(side, elems.len()));
    }
    elems
        .iter()
        // SAFETY: every element is a non-null `vector` datum of a live array.
        .map(|&d| unsafe { VectorArg::from_datum(d) }.x)
        .collect()
}

/// MaxSim similarity of two checked sides (ERROR on bad input). Cancellable
/// between query vectors: one call can be billions of multiply-adds.
pub fn similarity_of(doc: &[&[f32]], query: &[&[f32]]) -> f64 {
    match maxsim::similarity_with(doc, query, || {
        pg_sys::check_for_interrupts!();
    }) {
        Ok(s) => s,
        Err(e) => raise(e),
    }
}

#[cold]
pub fn raise(e: MaxSimError) -> ! {
    let code = match e {
        MaxSimError::Empty(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        MaxSimError::TooMany(..) => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        MaxSimError::DifferentDims(..) => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
    };
    ereport!(ERROR, code, e.message());
}

/// MaxSim similarity of the call's two `vector[]` arguments.
///
/// # Safety
/// `fcinfo` must be live with two non-null `vector[]` arguments.
unsafe fn similarity(fcinfo: pg_sys::FunctionCallInfo) -> f64 {
    // SAFETY: forwarded contract.
    let (doc, query) = unsafe { (vectors(fcinfo, 0), vectors(fcinfo, 1)) };
    similarity_of(&doc, &query)
}

crate::v1! {
    /// `maxsim(vector[], vector[]) -> float8`: Σ over query vectors of the largest
    /// inner product with a document vector.
    fn arrw_vector_maxsim(fcinfo) {
        // SAFETY: declared (vector[], vector[]), STRICT.
        fmgr::float8(unsafe { similarity(fcinfo) })
    }
}

crate::v1! {
    /// `maxsim_distance(vector[], vector[]) -> float8` and operator `@#`: the
    /// negated MaxSim (lower is nearer).
    fn arrw_vector_maxsim_distance(fcinfo) {
        // SAFETY: declared (vector[], vector[]), STRICT.
        fmgr::float8(-unsafe { similarity(fcinfo) })
    }
}
