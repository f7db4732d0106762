//! Text and binary input/output of `vector`, and its type modifier.
//!
//! The formats themselves (parsing, shortest float formatting, the big-endian
//! wire layout) live in `arrw_core::text`, where they are unit- and fuzz-tested;
//! these functions move bytes between PostgreSQL's structures and those routines.

use super::{from_slice, VectorArg};
use crate::errors::check_vector;
use crate::fmgr;
use arrw_core::text;
use pgrx::pg_sys;

crate::v1! {
    /// `vector_in(cstring, oid, integer) -> vector`
    fn arrw_vector_in(fcinfo) {
        // SAFETY: argument 0 is a cstring per the SQL declaration; PostgreSQL
        // passes typmod as argument 2 (-1 when there is none).
        let (input, typmod) = unsafe {
            let p = fmgr::arg(fcinfo, 0).cast_mut_ptr::<std::ffi::c_char>();
            (std::ffi::CStr::from_ptr(p), fmgr::arg_i32(fcinfo, 2))
        };
        let values = check_vector(text::parse_vector_text(input.to_bytes()));
        check_vector(text::check_expected_dim(typmod, values.len()));
        from_slice(&values)
    }
}

crate::v1! {
    /// `vector_out(vector) -> cstring`
    fn arrw_vector_out(fcinfo) {
        // SAFETY: argument 0 is a non-null vector (the function is STRICT).
        let v = unsafe { VectorArg::from_arg(fcinfo, 0) };
        let mut s = String::with_capacity(v.dim() * 10 + 2);
        text::format_vector_text(v.x, &mut s);
        cstring_datum(&s)
    }
}

/// Copies `s` into a palloc'd NUL-terminated C string.
pub(super) fn cstring_datum(s: &str) -> pg_sys::Datum {
    // SAFETY: palloc returns len+1 writable bytes or raises ERROR; we copy exactly
    // len bytes and terminate. `s` comes from our formatter and has no NUL bytes.
    unsafe {
        let p = pg_sys::palloc(s.len() + 1) as *mut u8;
        std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        *p.add(s.len()) = 0;
        pg_sys::Datum::from(p)
    }
}

crate::v1! {
    /// `vector_typmod_in(cstring[]) -> integer`: `vector(3)` stores 3.
    fn arrw_vector_typmod_in(fcinfo) {
        let mut n: std::ffi::c_int = 0;
        // SAFETY: argument 0 is a cstring[] (SQL declaration); ArrayGetIntegerTypmods
        // validates the array and returns a palloc'd int32 array of n elements.
        let mods = unsafe {
            let arr = pg_sys::pg_detoast_datum(fmgr::arg(fcinfo, 0).cast_mut_ptr()) as *mut pg_sys::ArrayType;
            let p = pg_sys::ArrayGetIntegerTypmods(arr, &mut n);
            std::slice::from_raw_parts(p, n as usize)
        };
        fmgr::int4(check_vector(text::typmod_in(mods)))
    }
}

crate::v1! {
    /// `vector_recv(internal, oid, integer) -> vector`: pgvector's binary format.
    fn arrw_vector_recv(fcinfo) {
        // SAFETY: argument 0 is the StringInfo PostgreSQL is reading from; its
        // bytes cursor..len are the unread part of the message.
        let (buf, typmod) = unsafe {
            (&mut *fmgr::arg(fcinfo, 0).cast_mut_ptr::<pg_sys::StringInfoData>(), fmgr::arg_i32(fcinfo, 2))
        };
        let unread = (buf.len - buf.cursor).max(0) as usize;
        // SAFETY: data[cursor..len] is initialised message memory owned by the caller.
        let bytes = unsafe { std::slice::from_raw_parts((buf.data as *const u8).add(buf.cursor as usize), unread) };
        let (values, consumed) = check_vector(text::decode_vector_binary(bytes, typmod));
        buf.cursor += consumed as i32;
        from_slice(&values)
    }
}

crate::v1! {
    /// `vector_send(vector) -> bytea`
    fn arrw_vector_send(fcinfo) {
        // SAFETY: argument 0 is a non-null vector.
        let v = unsafe { VectorArg::from_arg(fcinfo, 0) };
        let mut out = Vec::with_capacity(4 + 4 * v.dim());
        text::encode_vector_binary(v.x, &mut out);
        bytea_datum(&out)
    }
}

/// Copies `bytes` into a palloc'd `bytea`.
pub(super) fn bytea_datum(bytes: &[u8]) -> pg_sys::Datum {
    let total = pg_sys::VARHDRSZ + bytes.len();
    // SAFETY: palloc returns `total` bytes or raises ERROR; we set a 4-byte
    // varlena header and copy the payload right after it.
    unsafe {
        let p = pg_sys::palloc(total) as *mut u8;
        pgrx::varlena::set_varsize_4b(p.cast(), total as i32);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(pg_sys::VARHDRSZ), bytes.len());
        pg_sys::Datum::from(p)
    }
}
