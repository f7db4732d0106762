//! Byte-level JSON escaping and validation for the change feed. The code is
//! plain Rust over bytes and lives in `arrw_core::cdc_json` (unit-, property-
//! and fuzz-tested there); the plugin hands it text read from PostgreSQL.

pub use arrw_core::cdc_json::*;
