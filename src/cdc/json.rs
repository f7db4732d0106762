//! Byte-level JSON escaping and validation for the change feed. The code is
//! plain Rust over bytes and lives in `arrw_core::cdc_json` (unit-, property-
//! and fuzz-tested there); the plugin hands it text read from PostgreSQL, with
//! the database's encoding (`TextEncoding::Utf8` in a UTF-8 database, where
//! strings also escape U+0085, U+2028 and U+2029).

pub use arrw_core::cdc_json::*;
