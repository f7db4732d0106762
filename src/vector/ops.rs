//! Distances, arithmetic, comparison and the scalar functions of `vector`.
//!
//! Results follow pgvector bit for bit where the arithmetic allows: sums are
//! accumulated in `float4` (by the SIMD kernels of `arrw_core::distance`, whose
//! summation order differs from a scalar loop only in the last bits), and the
//! final square root or division is done in `float8`, as pgvector does.

use super::{build, check_same_dims, VectorArg};
use crate::errors::{check_vector, raise_vector};
use crate::fmgr;
use crate::handed::ValueId;
use arrw_core::distance::{self, cosine_from_parts};
use arrw_core::ivf::{ExactParts, Metric};
use arrw_core::text::{self, VectorError};
use pgrx::pg_sys;

/// Reads two vector arguments of equal dimensions.
///
/// # Safety
/// The function must be declared `(vector, vector)` and STRICT.
#[inline(always)]
unsafe fn two<'a>(fcinfo: pg_sys::FunctionCallInfo) -> (&'a [f32], &'a [f32]) {
    // SAFETY: forwarded from this function's contract.
    let (a, b) = unsafe {
        (
            VectorArg::from_arg(fcinfo, 0),
            VectorArg::from_arg(fcinfo, 1),
        )
    };
    check_same_dims(a.x, b.x);
    (a.x, b.x)
}

/// The sums an ivfpq scan of this statement computed for an out-of-line first
/// argument and this second argument, if it handed that row out (src/handed.rs):
/// the executor evaluates `embedding <op> $1` for every row such a scan returns,
/// and this spares it a second read of the value from the TOAST table. An
/// in-line first argument costs one byte read.
///
/// # Safety
/// The function must be declared `(vector, vector)` and STRICT.
#[inline(always)]
unsafe fn handed(fcinfo: pg_sys::FunctionCallInfo, metric: Metric) -> Option<ExactParts> {
    // SAFETY: forwarded contract: argument 0 is a non-null vector datum.
    let id = unsafe { ValueId::of(crate::fmgr::arg(fcinfo, 0)) }?;
    // SAFETY: as above, argument 1 (detoasted in the call's context).
    crate::handed::lookup(id, metric, || unsafe { VectorArg::from_arg(fcinfo, 1) }.x)
}

crate::v1! {
    /// `l2_distance(vector, vector)` and operator `<->`.
    fn arrw_l2_distance(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT (both calls).
        if let Some(ExactParts::L2Squared(d)) = unsafe { handed(fcinfo, Metric::L2) } {
            return fmgr::float8((d as f64).sqrt());
        }
        // SAFETY: as above.
        let (a, b) = unsafe { two(fcinfo) };
        fmgr::float8((distance::l2_squared(a, b) as f64).sqrt())
    }
}

crate::v1! {
    /// `vector_l2_squared_distance(vector, vector)`: index support function.
    fn arrw_vector_l2_squared_distance(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        fmgr::float8(distance::l2_squared(a, b) as f64)
    }
}

crate::v1! {
    /// `inner_product(vector, vector)`
    fn arrw_inner_product(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        fmgr::float8(distance::dot(a, b) as f64)
    }
}

crate::v1! {
    /// `vector_negative_inner_product(vector, vector)` and operator `<#>`.
    fn arrw_vector_negative_inner_product(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT (both calls).
        if let Some(ExactParts::Dot(d)) = unsafe { handed(fcinfo, Metric::InnerProduct) } {
            return fmgr::float8(-(d as f64));
        }
        // SAFETY: as above.
        let (a, b) = unsafe { two(fcinfo) };
        fmgr::float8(-(distance::dot(a, b) as f64))
    }
}

crate::v1! {
    /// `cosine_distance(vector, vector)` and operator `<=>`.
    fn arrw_cosine_distance(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT (both calls).
        if let Some(ExactParts::Cosine { ab, aa, bb }) = unsafe { handed(fcinfo, Metric::Cosine) } {
            return fmgr::float8(cosine_from_parts(ab, aa, bb));
        }
        // SAFETY: as above.
        let (a, b) = unsafe { two(fcinfo) };
        let (ab, aa, bb) = distance::cosine_parts(a, b);
        fmgr::float8(cosine_from_parts(ab, aa, bb))
    }
}

crate::v1! {
    /// `vector_spherical_distance(vector, vector)`: angle / pi of unit vectors.
    fn arrw_vector_spherical_distance(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        let d = (distance::dot(a, b) as f64).clamp(-1.0, 1.0);
        fmgr::float8(d.acos() / std::f64::consts::PI)
    }
}

crate::v1! {
    /// `l1_distance(vector, vector)` and operator `<+>`.
    fn arrw_l1_distance(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        fmgr::float8(distance::l1(a, b) as f64)
    }
}

crate::v1! {
    /// `vector_dims(vector) -> integer`
    fn arrw_vector_dims(fcinfo) {
        // SAFETY: declared (vector), STRICT.
        let a = unsafe { VectorArg::from_arg(fcinfo, 0) };
        fmgr::int4(a.dim() as i32)
    }
}

crate::v1! {
    /// `vector_norm(vector) -> float8`, accumulated in float8 like pgvector.
    fn arrw_vector_norm(fcinfo) {
        // SAFETY: declared (vector), STRICT.
        let a = unsafe { VectorArg::from_arg(fcinfo, 0) };
        fmgr::float8(distance::norm_squared_f64(a.x).sqrt())
    }
}

crate::v1! {
    /// `l2_normalize(vector) -> vector`; the zero vector stays zero.
    fn arrw_l2_normalize(fcinfo) {
        // SAFETY: declared (vector), STRICT.
        let a = unsafe { VectorArg::from_arg(fcinfo, 0) };
        let norm = distance::norm_squared_f64(a.x).sqrt();
        build(a.dim(), |x| {
            if norm > 0.0 {
                for (o, &v) in x.iter_mut().zip(a.x) {
                    *o = (v as f64 / norm) as f32;
                    if o.is_infinite() {
                        overflow();
                    }
                }
            }
        })
    }
}

#[cold]
fn overflow() -> ! {
    raise_vector(VectorError::overflow())
}

#[cold]
fn underflow() -> ! {
    raise_vector(VectorError::underflow())
}

/// Element-wise arithmetic with pgvector's overflow (and, for `*`, underflow) errors.
fn elementwise(
    a: &[f32],
    b: &[f32],
    op: fn(f32, f32) -> f32,
    check_underflow: bool,
) -> pg_sys::Datum {
    build(a.len(), |x| {
        for i in 0..a.len() {
            let r = op(a[i], b[i]);
            x[i] = r;
            if r.is_infinite() {
                overflow();
            }
            if check_underflow && r == 0.0 && a[i] != 0.0 && b[i] != 0.0 {
                underflow();
            }
        }
    })
}

crate::v1! {
    /// `vector_add(vector, vector)` and operator `+` (also `sum`'s transition).
    fn arrw_vector_add(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        elementwise(a, b, |x, y| x + y, false)
    }
}

crate::v1! {
    /// `vector_sub(vector, vector)` and operator `-`.
    fn arrw_vector_sub(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        elementwise(a, b, |x, y| x - y, false)
    }
}

crate::v1! {
    /// `vector_mul(vector, vector)` and operator `*` (element-wise).
    fn arrw_vector_mul(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { two(fcinfo) };
        elementwise(a, b, |x, y| x * y, true)
    }
}

crate::v1! {
    /// `vector_concat(vector, vector)` and operator `||`.
    fn arrw_vector_concat(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { (VectorArg::from_arg(fcinfo, 0), VectorArg::from_arg(fcinfo, 1)) };
        let dim = a.dim() + b.dim();
        check_vector(text::check_dim(dim));
        build(dim, |x| {
            x[..a.dim()].copy_from_slice(a.x);
            x[a.dim()..].copy_from_slice(b.x);
        })
    }
}

crate::v1! {
    /// `subvector(vector, start integer, count integer)`: 1-based, like `substring`.
    fn arrw_subvector(fcinfo) {
        // SAFETY: declared (vector, integer, integer), STRICT.
        let (a, start, count) = unsafe {
            (VectorArg::from_arg(fcinfo, 0), fmgr::arg_i32(fcinfo, 1) as i64, fmgr::arg_i32(fcinfo, 2) as i64)
        };
        let (lo, hi) = check_vector(subvector_range(a.dim(), start, count));
        build(hi - lo, |x| x.copy_from_slice(&a.x[lo..hi]))
    }
}

/// The 0-based half-open range `subvector(v, start, count)` selects, with
/// `substring`'s clamping of a start before 1 or a count past the end.
pub fn subvector_range(
    dim: usize,
    start: i64,
    count: i64,
) -> Result<(usize, usize), text::VectorError> {
    let end = start.saturating_add(count).min(dim as i64 + 1);
    let start = start.max(1);
    if count < 1 || start > dim as i64 || end <= start {
        return Err(text::check_dim(0).unwrap_err());
    }
    Ok(((start - 1) as usize, (end - 1) as usize))
}

/// pgvector's ordering: element-wise, then the shorter vector first.
pub fn compare(a: &[f32], b: &[f32]) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    for (x, y) in a.iter().zip(b) {
        if x < y {
            return Less;
        }
        if x > y {
            return Greater;
        }
    }
    a.len().cmp(&b.len())
}

macro_rules! comparison {
    ($($name:ident => $test:expr;)*) => {$(
        crate::v1! {
            /// Btree comparison operator of `vector_ops`.
            fn $name(fcinfo) {
                // SAFETY: declared (vector, vector), STRICT.
                let (a, b) = unsafe { (VectorArg::from_arg(fcinfo, 0), VectorArg::from_arg(fcinfo, 1)) };
                let test: fn(std::cmp::Ordering) -> bool = $test;
                fmgr::boolean(test(compare(a.x, b.x)))
            }
        }
    )*};
}

comparison! {
    arrw_vector_lt => |o| o.is_lt();
    arrw_vector_le => |o| o.is_le();
    arrw_vector_eq => |o| o.is_eq();
    arrw_vector_ne => |o| o.is_ne();
    arrw_vector_ge => |o| o.is_ge();
    arrw_vector_gt => |o| o.is_gt();
}

crate::v1! {
    /// `vector_cmp(vector, vector) -> int4`: btree support function 1.
    fn arrw_vector_cmp(fcinfo) {
        // SAFETY: declared (vector, vector), STRICT.
        let (a, b) = unsafe { (VectorArg::from_arg(fcinfo, 0), VectorArg::from_arg(fcinfo, 1)) };
        fmgr::int4(compare(a.x, b.x) as i32)
    }
}
