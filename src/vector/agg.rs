//! Aggregates `avg(vector)` and `sum(vector)` (the latter is `vector_add`).
//!
//! `avg`'s transition state is pgvector's: a `double precision[]` holding
//! `[count, sum_1, ..., sum_dim]`, starting as `'{0}'`. Keeping that format means
//! partial aggregates (parallel plans) combine exactly as pgvector's do; the
//! rules of adding a row and merging states (`arrw_core::avg`) are pgvector's
//! too, for states built by hand as well.

use super::{build, VectorArg};
use crate::errors::{check_vector, raise_vector};
use crate::fmgr;
use arrw_core::avg;
use arrw_core::text::{self, VectorError};
use pgrx::pg_sys;

/// The float8 elements of a detoasted one-dimensional, null-free float8 array.
///
/// # Safety
/// `arr` must point to a detoasted `double precision[]` without nulls that
/// outlives `'a`, with no other live reference to its elements.
unsafe fn float8_elems<'a>(arr: *mut pg_sys::ArrayType, fname: &str) -> &'a mut [f64] {
    // SAFETY: header fields of a valid array; for ndim = 1 the length is dims[0],
    // stored right after the fixed header; without nulls the data starts at the
    // MAXALIGNed end of the header and dims/lbound arrays.
    unsafe {
        let ndim = (*arr).ndim as usize;
        if ndim != 1 || (*arr).elemtype != pg_sys::FLOAT8OID || (*arr).dataoffset != 0 {
            raise_vector(VectorError::expected_state_array(fname));
        }
        let header = std::mem::size_of::<pg_sys::ArrayType>();
        let dims = (arr as *mut u8).add(header).cast::<i32>();
        let n = *dims as usize;
        let data_off = (header + 2 * std::mem::size_of::<i32>() * ndim).next_multiple_of(8);
        std::slice::from_raw_parts_mut((arr as *mut u8).add(data_off).cast::<f64>(), n)
    }
}

/// A new `double precision[]` holding `values`, in the current memory context.
fn float8_array(values: &[f64]) -> pg_sys::Datum {
    let datums: Vec<pg_sys::Datum> = values
        .iter()
        .map(|v| pg_sys::Datum::from(v.to_bits()))
        .collect();
    // SAFETY: construct_array copies the by-value float8 datums into a new array.
    let arr = unsafe {
        pg_sys::construct_array(
            datums.as_ptr() as *mut pg_sys::Datum,
            datums.len() as i32,
            pg_sys::FLOAT8OID,
            8,
            true,
            b'd' as std::ffi::c_char,
        )
    };
    pg_sys::Datum::from(arr)
}

/// Reads a transition state (detoasted; a copy if it was toasted).
///
/// # Safety
/// `d` must be a non-null `double precision[]` datum.
pub(super) unsafe fn state<'a>(
    d: pg_sys::Datum,
    fname: &str,
) -> (*mut pg_sys::ArrayType, &'a mut [f64]) {
    // SAFETY: forwarded contract; pg_detoast_datum returns a plain array.
    unsafe {
        let arr = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        (arr, float8_elems(arr, fname))
    }
}

crate::v1! {
    /// `vector_accum(double precision[], vector)`: avg's transition function.
    fn arrw_vector_accum(fcinfo) {
        // SAFETY: declared (double precision[], vector), STRICT.
        let v = unsafe { VectorArg::from_arg(fcinfo, 1) };
        // SAFETY: as above; argument 0 is the state array.
        unsafe { accum(fcinfo, v.x, "vector_accum") }
    }
}

/// avg's transition for `vector` and `halfvec`: adds `x` to the state in
/// argument 0 (`[count, sum_1, ..., sum_dim]`).
///
/// # Safety
/// `fcinfo` must be the call's own, argument 0 a non-null `double precision[]`.
pub(super) unsafe fn accum(
    fcinfo: pg_sys::FunctionCallInfo,
    x: &[f32],
    fname: &str,
) -> pg_sys::Datum {
    // SAFETY: forwarded contract.
    let (arr, st) = unsafe { state(fmgr::arg(fcinfo, 0), fname) };
    let in_agg = {
        // SAFETY: AggCheckCallContext only inspects fcinfo->context.
        unsafe { pg_sys::AggCheckCallContext(fcinfo, std::ptr::null_mut()) != 0 }
    };
    // SAFETY: argument 0 exists (forwarded contract).
    let detoasted_copy = arr.cast::<u8>() != unsafe { fmgr::arg(fcinfo, 0) }.cast_mut_ptr::<u8>();
    if in_agg || detoasted_copy {
        // Called as an aggregate, the state belongs to the aggregate and may be
        // updated in place (as PostgreSQL's own int8 avg does); a detoasted copy
        // is ours anyway. Either way we avoid a palloc per row.
        return match check_vector(avg::accum(st, x)) {
            Some(()) => pg_sys::Datum::from(arr),
            None => float8_array(&avg::first(st[0], x)),
        };
    }
    let mut next = st.to_vec();
    match check_vector(avg::accum(&mut next, x)) {
        Some(()) => float8_array(&next),
        None => float8_array(&avg::first(st[0], x)),
    }
}

crate::v1! {
    /// `vector_combine(double precision[], double precision[])`: merges partial states.
    fn arrw_vector_combine(fcinfo) {
        // SAFETY: declared (double precision[], double precision[]), STRICT.
        let ((_, a), (_, b)) = unsafe { (state(fmgr::arg(fcinfo, 0), "vector_combine"), state(fmgr::arg(fcinfo, 1), "vector_combine")) };
        float8_array(&check_vector(avg::combine(a, b)))
    }
}

crate::v1! {
    /// `vector_avg(double precision[]) -> vector`: avg's final function; NULL for no rows.
    fn arrw_vector_avg(fcinfo) {
        // SAFETY: declared (double precision[]), STRICT.
        let (_, st) = unsafe { state(fmgr::arg(fcinfo, 0), "vector_avg") };
        let n = st[0];
        if n == 0.0 {
            // SAFETY: our own fcinfo.
            return unsafe { fmgr::return_null(fcinfo) };
        }
        check_vector(text::check_dim(st.len() - 1));
        build(st.len() - 1, |x| {
            for (o, s) in x.iter_mut().zip(&st[1..]) {
                *o = (s / n) as f32;
                check_vector(text::check_element(*o));
            }
        })
    }
}
