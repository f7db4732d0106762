//! The `halfvec` type: a drop-in for pgvector's `halfvec` (its SQL is
//! `sql/halfvec.sql`).
//!
//! Layout, pgvector's byte for byte: `int32 vl_len_, int16 dim, int16 unused,
//! half x[dim]` (IEEE binary16, native byte order, all finite). Elements are
//! kept as bit patterns (`u16`); every computation widens them to `f32` (exact)
//! and uses the same kernels and result rules as `vector`, so a distance over
//! halfvecs equals the distance over the same values cast to `vector`. Results
//! are rounded back to half with `arrw_core::half` (nearest, ties to even), with
//! pgvector's range errors. Parsing and formatting live in `arrw_core::half`.

use super::io::{bytea_datum, cstring_datum};
use super::ops::{compare, subvector_range};
use super::{detoast, VectorArg, VECTOR_HEADER_BYTES};
use crate::errors::{check_vector, raise_vector};
use crate::fmgr;
use crate::handed::ValueId;
use arrw_core::distance::{self, cosine_from_parts};
use arrw_core::half::{self, f16_to_f32, f32_to_f16};
use arrw_core::ivf::{ExactParts, Metric};
use arrw_core::text::{self, VectorError};
use pgrx::pg_sys;

/// A detoasted halfvec argument, borrowed for the duration of the call (the
/// same lifetime argument as [`VectorArg`]).
pub struct HalfArg<'a> {
    pub x: &'a [u16],
}

impl<'a> HalfArg<'a> {
    /// Detoasts a halfvec datum and checks that its length agrees with its `dim`
    /// (a corrupt datum is ERROR XX001, never an out-of-bounds read).
    ///
    /// # Safety
    /// `datum` must be a non-null `halfvec` datum valid for `'a`.
    #[inline]
    pub unsafe fn from_datum(datum: pg_sys::Datum) -> HalfArg<'a> {
        // SAFETY: forwarded contract.
        let (p, total, dim) = unsafe { detoast(datum) };
        if dim < 0 || total != VECTOR_HEADER_BYTES + 2 * dim as usize {
            raise_vector(half::corrupt(total, dim));
        }
        // SAFETY: exactly `dim` halves follow the 8-byte header, 2-byte aligned,
        // in memory valid for 'a.
        let x = unsafe {
            std::slice::from_raw_parts(p.add(VECTOR_HEADER_BYTES).cast::<u16>(), dim as usize)
        };
        HalfArg { x }
    }

    /// Argument `n` of the current call.
    ///
    /// # Safety
    /// `fcinfo` must be live and argument `n` declared `halfvec` (non-null: every
    /// function taking one is STRICT).
    #[inline]
    pub unsafe fn from_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> HalfArg<'a> {
        // SAFETY: forwarded contract.
        unsafe { Self::from_datum(fmgr::arg(fcinfo, n)) }
    }

    /// The elements widened to `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.x.len()];
        half::widen(self.x, &mut out);
        out
    }
}

/// Allocates a halfvec of `dim` elements in the current memory context, lets
/// `fill` write them, and returns the datum. `dim` must have been checked.
pub fn build(dim: usize, fill: impl FnOnce(&mut [u16])) -> pg_sys::Datum {
    let total = VECTOR_HEADER_BYTES + 2 * dim;
    // SAFETY: palloc0 returns `total` zeroed, MAXALIGNed bytes or raises ERROR;
    // `unused` (bytes 6..8) stays 0.
    unsafe {
        let p = pg_sys::palloc0(total) as *mut u8;
        pgrx::varlena::set_varsize_4b(p.cast(), total as i32);
        *p.add(4).cast::<i16>() = dim as i16;
        let x = std::slice::from_raw_parts_mut(p.add(VECTOR_HEADER_BYTES).cast::<u16>(), dim);
        fill(x);
        pg_sys::Datum::from(p)
    }
}

// ---------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------

crate::v1! {
    /// `halfvec_in(cstring, oid, integer) -> halfvec`
    fn arrw_halfvec_in(fcinfo) {
        // SAFETY: argument 0 is a cstring; argument 2 the typmod (-1 for none).
        let (input, typmod) = unsafe {
            let p = fmgr::arg(fcinfo, 0).cast_mut_ptr::<std::ffi::c_char>();
            (std::ffi::CStr::from_ptr(p), fmgr::arg_i32(fcinfo, 2))
        };
        let values = check_vector(half::parse_halfvec_text(input.to_bytes()));
        check_vector(text::check_expected_dim(typmod, values.len()));
        build(values.len(), |x| x.copy_from_slice(&values))
    }
}

crate::v1! {
    /// `halfvec_out(halfvec) -> cstring`
    fn arrw_halfvec_out(fcinfo) {
        // SAFETY: declared (halfvec), STRICT.
        let v = unsafe { HalfArg::from_arg(fcinfo, 0) };
        let mut s = String::new();
        half::format_halfvec_text(v.x, &mut s);
        cstring_datum(&s)
    }
}

crate::v1! {
    /// `halfvec_typmod_in(cstring[]) -> integer`
    fn arrw_halfvec_typmod_in(fcinfo) {
        let mut n: std::ffi::c_int = 0;
        // SAFETY: argument 0 is a cstring[]; ArrayGetIntegerTypmods validates it
        // and returns a palloc'd array of n int32s.
        let mods = unsafe {
            let arr = pg_sys::pg_detoast_datum(fmgr::arg(fcinfo, 0).cast_mut_ptr()) as *mut pg_sys::ArrayType;
            let p = pg_sys::ArrayGetIntegerTypmods(arr, &mut n);
            std::slice::from_raw_parts(p, n as usize)
        };
        fmgr::int4(check_vector(half::typmod_in(mods)))
    }
}

crate::v1! {
    /// `halfvec_recv(internal, oid, integer) -> halfvec`: pgvector's binary format.
    fn arrw_halfvec_recv(fcinfo) {
        // SAFETY: argument 0 is the StringInfo being read; argument 2 the typmod.
        let (buf, typmod) = unsafe {
            (&mut *fmgr::arg(fcinfo, 0).cast_mut_ptr::<pg_sys::StringInfoData>(), fmgr::arg_i32(fcinfo, 2))
        };
        let unread = (buf.len - buf.cursor).max(0) as usize;
        // SAFETY: data[cursor..len] is the unread, initialised part of the message.
        let bytes = unsafe { std::slice::from_raw_parts((buf.data as *const u8).add(buf.cursor as usize), unread) };
        let (values, consumed) = check_vector(half::decode_halfvec_binary(bytes, typmod));
        buf.cursor += consumed as i32;
        build(values.len(), |x| x.copy_from_slice(&values))
    }
}

crate::v1! {
    /// `halfvec_send(halfvec) -> bytea`
    fn arrw_halfvec_send(fcinfo) {
        // SAFETY: declared (halfvec), STRICT.
        let v = unsafe { HalfArg::from_arg(fcinfo, 0) };
        let mut out = Vec::with_capacity(4 + 2 * v.x.len());
        half::encode_halfvec_binary(v.x, &mut out);
        bytea_datum(&out)
    }
}

// ---------------------------------------------------------------------------
// Casts
// ---------------------------------------------------------------------------

crate::v1! {
    /// `halfvec(halfvec, integer, boolean)`: the length-coercion cast enforcing `halfvec(n)`.
    fn arrw_halfvec(fcinfo) {
        // SAFETY: declared (halfvec, integer, boolean), STRICT.
        let (a, typmod) = unsafe { (HalfArg::from_arg(fcinfo, 0), fmgr::arg_i32(fcinfo, 1)) };
        check_vector(text::check_expected_dim(typmod, a.x.len()));
        // SAFETY: same live fcinfo; returning the argument unchanged is allowed.
        unsafe { fmgr::arg(fcinfo, 0) }
    }
}

crate::v1! {
    /// `halfvec_to_vector(halfvec, integer, boolean) -> vector` (exact).
    fn arrw_halfvec_to_vector(fcinfo) {
        // SAFETY: declared (halfvec, integer, boolean), STRICT.
        let (a, typmod) = unsafe { (HalfArg::from_arg(fcinfo, 0), fmgr::arg_i32(fcinfo, 1)) };
        check_vector(text::check_dim(a.x.len()));
        check_vector(text::check_expected_dim(typmod, a.x.len()));
        super::build(a.x.len(), |x| {
            for (o, &h) in x.iter_mut().zip(a.x) {
                *o = f16_to_f32(h);
            }
        })
    }
}

crate::v1! {
    /// `vector_to_halfvec(vector, integer, boolean) -> halfvec`: rounds each
    /// element; one beyond the half range is `"70000" is out of range for type halfvec`.
    fn arrw_vector_to_halfvec(fcinfo) {
        // SAFETY: declared (vector, integer, boolean), STRICT.
        let (a, typmod) = unsafe { (VectorArg::from_arg(fcinfo, 0), fmgr::arg_i32(fcinfo, 1)) };
        check_vector(half::check_dim(a.dim()));
        check_vector(text::check_expected_dim(typmod, a.dim()));
        build(a.dim(), |x| {
            for (o, &v) in x.iter_mut().zip(a.x) {
                *o = check_vector(half::to_half_checked(v));
            }
        })
    }
}

crate::v1! {
    /// `array_to_halfvec(integer[] | real[] | double precision[] | numeric[], integer, boolean)`
    fn arrw_array_to_halfvec(fcinfo) {
        // SAFETY: declared (<array>, integer, boolean), STRICT.
        let ((elemtype, elems), typmod) = unsafe { (super::casts::array_elements(fmgr::arg(fcinfo, 0)), fmgr::arg_i32(fcinfo, 1)) };
        check_vector(half::check_dim(elems.len()));
        check_vector(text::check_expected_dim(typmod, elems.len()));
        build(elems.len(), |x| {
            // pgvector converts (with range errors) element by element, then
            // rejects NaN and infinities.
            for (o, d) in x.iter_mut().zip(elems) {
                // SAFETY: `d` is a non-null element of type `elemtype`.
                let v = unsafe { super::casts::element_f32(elemtype, *d) };
                *o = check_vector(half::to_half_checked(v));
            }
            for &h in x.iter() {
                check_vector(half::check_element(h));
            }
        })
    }
}

crate::v1! {
    /// `halfvec_to_float4(halfvec, integer, boolean) -> real[]`
    fn arrw_halfvec_to_float4(fcinfo) {
        // SAFETY: declared (halfvec, integer, boolean), STRICT.
        let a = unsafe { HalfArg::from_arg(fcinfo, 0) };
        let datums: Vec<pg_sys::Datum> = a.x.iter().map(|&h| pg_sys::Datum::from(f16_to_f32(h).to_bits())).collect();
        // SAFETY: construct_array copies the by-value float4 datums into a new array.
        let arr = unsafe {
            pg_sys::construct_array(datums.as_ptr() as *mut pg_sys::Datum, datums.len() as i32, pg_sys::FLOAT4OID, 4, true, b'i' as std::ffi::c_char)
        };
        pg_sys::Datum::from(arr)
    }
}

// ---------------------------------------------------------------------------
// Distances and functions
// ---------------------------------------------------------------------------

/// Two halfvec arguments of equal dimensions, widened to `f32` (one buffer:
/// the first `dim` values are `a`, the rest `b`).
///
/// # Safety
/// The function must be declared `(halfvec, halfvec)` and STRICT.
unsafe fn two(fcinfo: pg_sys::FunctionCallInfo) -> (Vec<f32>, usize) {
    // SAFETY: forwarded contract.
    let (a, b) = unsafe { (HalfArg::from_arg(fcinfo, 0), HalfArg::from_arg(fcinfo, 1)) };
    check_vector(half::check_same_dims(a.x.len(), b.x.len()));
    let n = a.x.len();
    let mut buf = vec![0f32; 2 * n];
    let (x, y) = buf.split_at_mut(n);
    half::widen(a.x, x);
    half::widen(b.x, y);
    (buf, n)
}

macro_rules! distance_fn {
    ($($(#[$meta:meta])* $name:ident => |$a:ident, $b:ident| $body:expr;)*) => {$(
        crate::v1! {
            $(#[$meta])*
            fn $name(fcinfo) {
                // SAFETY: declared (halfvec, halfvec), STRICT.
                let (buf, dim) = unsafe { two(fcinfo) };
                let ($a, $b) = buf.split_at(dim);
                fmgr::float8($body)
            }
        }
    )*};
}

/// The sums an ivfpq scan of this statement computed for an out-of-line first
/// argument, as for `vector` (src/vector/ops.rs, src/handed.rs): the scan's
/// query and rows are halfvecs widened exactly as here.
///
/// # Safety
/// The function must be declared `(halfvec, halfvec)` and STRICT.
#[inline(always)]
unsafe fn handed(fcinfo: pg_sys::FunctionCallInfo, metric: Metric) -> Option<ExactParts> {
    // SAFETY: forwarded contract: argument 0 is a non-null halfvec datum.
    let id = unsafe { ValueId::of(crate::fmgr::arg(fcinfo, 0)) }?;
    let mut q = Vec::new();
    crate::handed::lookup(id, metric, || {
        // SAFETY: as above, argument 1 (detoasted in the call's context).
        let b = unsafe { HalfArg::from_arg(fcinfo, 1) };
        q.resize(b.x.len(), 0.0);
        half::widen(b.x, &mut q);
        &q
    })
}

/// A distance whose sums a scan may have handed out (`handed`): `$reuse`
/// finishes them, `$body` computes from the values otherwise.
macro_rules! reusing_distance_fn {
    ($($(#[$meta:meta])* $name:ident, $metric:expr, $parts:pat => $reuse:expr, |$a:ident, $b:ident| $body:expr;)*) => {$(
        crate::v1! {
            $(#[$meta])*
            fn $name(fcinfo) {
                // SAFETY: declared (halfvec, halfvec), STRICT (both calls).
                if let Some($parts) = unsafe { handed(fcinfo, $metric) } {
                    return fmgr::float8($reuse);
                }
                // SAFETY: as above.
                let (buf, dim) = unsafe { two(fcinfo) };
                let ($a, $b) = buf.split_at(dim);
                fmgr::float8($body)
            }
        }
    )*};
}

reusing_distance_fn! {
    /// `l2_distance(halfvec, halfvec)` and operator `<->`.
    arrw_halfvec_l2_distance, Metric::L2, ExactParts::L2Squared(d) => (d as f64).sqrt(),
        |a, b| (distance::l2_squared(a, b) as f64).sqrt();
    /// `halfvec_negative_inner_product(halfvec, halfvec)` and operator `<#>`.
    arrw_halfvec_negative_inner_product, Metric::InnerProduct, ExactParts::Dot(d) => -(d as f64),
        |a, b| -(distance::dot(a, b) as f64);
    /// `cosine_distance(halfvec, halfvec)` and operator `<=>`.
    arrw_halfvec_cosine_distance, Metric::Cosine, ExactParts::Cosine { ab, aa, bb } => cosine_from_parts(ab, aa, bb),
        |a, b| {
            let (ab, aa, bb) = distance::cosine_parts(a, b);
            cosine_from_parts(ab, aa, bb)
        };
}

distance_fn! {
    /// `halfvec_l2_squared_distance(halfvec, halfvec)`: ivfpq support function (L2).
    arrw_halfvec_l2_squared_distance => |a, b| distance::l2_squared(a, b) as f64;
    /// `inner_product(halfvec, halfvec)`
    arrw_halfvec_inner_product => |a, b| distance::dot(a, b) as f64;
    /// `halfvec_spherical_distance(halfvec, halfvec)`: angle / pi of unit vectors.
    arrw_halfvec_spherical_distance => |a, b| (distance::dot(a, b) as f64).clamp(-1.0, 1.0).acos() / std::f64::consts::PI;
    /// `l1_distance(halfvec, halfvec)` and operator `<+>`.
    arrw_halfvec_l1_distance => |a, b| distance::l1(a, b) as f64;
}

crate::v1! {
    /// `vector_dims(halfvec) -> integer`
    fn arrw_halfvec_vector_dims(fcinfo) {
        // SAFETY: declared (halfvec), STRICT.
        let a = unsafe { HalfArg::from_arg(fcinfo, 0) };
        fmgr::int4(a.x.len() as i32)
    }
}

crate::v1! {
    /// `l2_norm(halfvec) -> float8`, accumulated in float8 like pgvector.
    fn arrw_halfvec_l2_norm(fcinfo) {
        // SAFETY: declared (halfvec), STRICT.
        let a = unsafe { HalfArg::from_arg(fcinfo, 0) };
        fmgr::float8(distance::norm_squared_f64(&a.to_f32()).sqrt())
    }
}

crate::v1! {
    /// `l2_normalize(halfvec) -> halfvec`; the zero vector stays zero.
    fn arrw_halfvec_l2_normalize(fcinfo) {
        // SAFETY: declared (halfvec), STRICT.
        let a = unsafe { HalfArg::from_arg(fcinfo, 0) };
        let v = a.to_f32();
        let norm = distance::norm_squared_f64(&v).sqrt();
        build(v.len(), |x| {
            if norm > 0.0 {
                for (o, &e) in x.iter_mut().zip(&v) {
                    *o = f32_to_f16((e as f64 / norm) as f32);
                    if half::is_inf(*o) {
                        raise_vector(VectorError::overflow());
                    }
                }
            }
        })
    }
}

crate::v1! {
    /// `binary_quantize(halfvec) -> bit`: bit i (most significant first) is set
    /// when element i is positive, as pgvector quantizes.
    fn arrw_halfvec_binary_quantize(fcinfo) {
        // SAFETY: declared (halfvec), STRICT.
        let a = unsafe { HalfArg::from_arg(fcinfo, 0) };
        super::bits::quantized(a.x.len(), a.x.iter().map(|&h| f16_to_f32(h) > 0.0))
    }
}

/// Element-wise arithmetic in `f32`, rounded to half, with pgvector's overflow
/// (and, for `*`, underflow) errors.
///
/// # Safety
/// The function must be declared `(halfvec, halfvec)` and STRICT.
unsafe fn elementwise(
    fcinfo: pg_sys::FunctionCallInfo,
    op: fn(f32, f32) -> f32,
    check_underflow: bool,
) -> pg_sys::Datum {
    // SAFETY: forwarded contract.
    let (a, b) = unsafe { (HalfArg::from_arg(fcinfo, 0), HalfArg::from_arg(fcinfo, 1)) };
    check_vector(half::check_same_dims(a.x.len(), b.x.len()));
    build(a.x.len(), |x| {
        for ((o, &p), &q) in x.iter_mut().zip(a.x).zip(b.x) {
            *o = f32_to_f16(op(f16_to_f32(p), f16_to_f32(q)));
        }
        // pgvector computes every element, then checks them in order.
        for ((&r, &p), &q) in x.iter().zip(a.x).zip(b.x) {
            if half::is_inf(r) {
                raise_vector(VectorError::overflow());
            }
            if check_underflow && half::is_zero(r) && !(half::is_zero(p) || half::is_zero(q)) {
                raise_vector(VectorError::underflow());
            }
        }
    })
}

crate::v1! {
    /// `halfvec_add(halfvec, halfvec)` and operator `+` (also `sum`'s transition).
    fn arrw_halfvec_add(fcinfo) {
        // SAFETY: declared (halfvec, halfvec), STRICT.
        unsafe { elementwise(fcinfo, |x, y| x + y, false) }
    }
}

crate::v1! {
    /// `halfvec_sub(halfvec, halfvec)` and operator `-`.
    fn arrw_halfvec_sub(fcinfo) {
        // SAFETY: declared (halfvec, halfvec), STRICT.
        unsafe { elementwise(fcinfo, |x, y| x - y, false) }
    }
}

crate::v1! {
    /// `halfvec_mul(halfvec, halfvec)` and operator `*` (element-wise).
    fn arrw_halfvec_mul(fcinfo) {
        // SAFETY: declared (halfvec, halfvec), STRICT.
        unsafe { elementwise(fcinfo, |x, y| x * y, true) }
    }
}

crate::v1! {
    /// `halfvec_concat(halfvec, halfvec)` and operator `||`.
    fn arrw_halfvec_concat(fcinfo) {
        // SAFETY: declared (halfvec, halfvec), STRICT.
        let (a, b) = unsafe { (HalfArg::from_arg(fcinfo, 0), HalfArg::from_arg(fcinfo, 1)) };
        let dim = a.x.len() + b.x.len();
        check_vector(half::check_dim(dim));
        build(dim, |x| {
            x[..a.x.len()].copy_from_slice(a.x);
            x[a.x.len()..].copy_from_slice(b.x);
        })
    }
}

crate::v1! {
    /// `subvector(halfvec, start integer, count integer)`: 1-based, like `substring`.
    fn arrw_halfvec_subvector(fcinfo) {
        // SAFETY: declared (halfvec, integer, integer), STRICT.
        let (a, start, count) = unsafe {
            (HalfArg::from_arg(fcinfo, 0), fmgr::arg_i32(fcinfo, 1) as i64, fmgr::arg_i32(fcinfo, 2) as i64)
        };
        let Ok((lo, hi)) = subvector_range(a.x.len(), start, count) else {
            raise_vector(half::empty_error());
        };
        build(hi - lo, |x| x.copy_from_slice(&a.x[lo..hi]))
    }
}

/// pgvector's order of halfvecs: by widened value element-wise, then the
/// shorter first (so `-0 = 0`, as for `vector`).
fn compare_half(a: &[u16], b: &[u16]) -> std::cmp::Ordering {
    for (&x, &y) in a.iter().zip(b) {
        let o = compare(&[f16_to_f32(x)], &[f16_to_f32(y)]);
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

macro_rules! comparison {
    ($($name:ident => $test:expr;)*) => {$(
        crate::v1! {
            /// Btree comparison operator of `halfvec_ops`.
            fn $name(fcinfo) {
                // SAFETY: declared (halfvec, halfvec), STRICT.
                let (a, b) = unsafe { (HalfArg::from_arg(fcinfo, 0), HalfArg::from_arg(fcinfo, 1)) };
                let test: fn(std::cmp::Ordering) -> bool = $test;
                fmgr::boolean(test(compare_half(a.x, b.x)))
            }
        }
    )*};
}

comparison! {
    arrw_halfvec_lt => |o| o.is_lt();
    arrw_halfvec_le => |o| o.is_le();
    arrw_halfvec_eq => |o| o.is_eq();
    arrw_halfvec_ne => |o| o.is_ne();
    arrw_halfvec_ge => |o| o.is_ge();
    arrw_halfvec_gt => |o| o.is_gt();
}

crate::v1! {
    /// `halfvec_cmp(halfvec, halfvec) -> int4`: btree support function 1.
    fn arrw_halfvec_cmp(fcinfo) {
        // SAFETY: declared (halfvec, halfvec), STRICT.
        let (a, b) = unsafe { (HalfArg::from_arg(fcinfo, 0), HalfArg::from_arg(fcinfo, 1)) };
        fmgr::int4(compare_half(a.x, b.x) as i32)
    }
}

// ---------------------------------------------------------------------------
// Aggregates: avg's state is vector's (`[count, sums...]` as float8[]), so
// `halfvec_combine` is `vector_combine` (as in pgvector); sum is `halfvec_add`.
// ---------------------------------------------------------------------------

crate::v1! {
    /// `halfvec_accum(double precision[], halfvec)`: avg's transition function.
    fn arrw_halfvec_accum(fcinfo) {
        // SAFETY: declared (double precision[], halfvec), STRICT.
        let v = unsafe { HalfArg::from_arg(fcinfo, 1) }.to_f32();
        // SAFETY: argument 0 is the non-null state array.
        unsafe { super::agg::accum(fcinfo, &v, "halfvec_accum") }
    }
}

crate::v1! {
    /// `halfvec_avg(double precision[]) -> halfvec`: avg's final function; NULL for no rows.
    fn arrw_halfvec_avg(fcinfo) {
        // SAFETY: declared (double precision[]), STRICT.
        let (_, st) = unsafe { super::agg::state(fmgr::arg(fcinfo, 0), "halfvec_avg") };
        let n = st[0];
        if n == 0.0 {
            // SAFETY: our own fcinfo.
            return unsafe { fmgr::return_null(fcinfo) };
        }
        check_vector(half::check_dim(st.len() - 1));
        build(st.len() - 1, |x| {
            for (o, s) in x.iter_mut().zip(&st[1..]) {
                *o = check_vector(half::to_half_checked((s / n) as f32));
                check_vector(half::check_element(*o));
            }
        })
    }
}
