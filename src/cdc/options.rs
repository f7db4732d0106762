//! The output plugin's options. The parser is plain Rust over bytes and lives in
//! `arrw_core::cdc_options` (unit-tested and fuzzed there); the plugin turns an
//! `Err` into an ERROR with SQLSTATE 22023 (invalid_parameter_value).

pub use arrw_core::cdc_options::*;
