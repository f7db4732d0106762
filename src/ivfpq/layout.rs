//! On-disk layout of an ivfpq index: the byte layouts and the checks applied to
//! every page read live in `arrw_core::layout` (plain Rust, unit- and
//! property-tested, fuzzed); this module re-exports them for `ivfpq/` and
//! checks at compile time that arrw-core's page geometry is PostgreSQL's.
//! The PostgreSQL side of reading pages (locks, the index's size, ERRORs) is in
//! page.rs.

pub use arrw_core::layout::*;

use pgrx::pg_sys;

const _: () = assert!(PAGE_SIZE == pg_sys::BLCKSZ as usize);
const _: () =
    assert!(contents_offset() == (std::mem::size_of::<pg_sys::PageHeaderData>() + 7) & !7);
