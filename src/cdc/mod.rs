//! Change data capture: the `arrw` logical decoding output plugin and the
//! `arrw.watch` LISTEN/NOTIFY change channels.
//!
//! - [`plugin`]: the output plugin (`pg_create_logical_replication_slot(slot,
//!   'arrw')`): a durable, replayable feed of one JSON object per row change,
//!   plus `arrw`-prefixed logical decoding messages (`arrw.emit_event`).
//! - [`options`]: the plugin's options (`include-transaction`,
//!   `include-vectors`, `include-row`, `tables`).
//! - [`json`]: byte-level JSON escaping and validation used by the plugin.
//! - `sql/cdc.sql`: `arrw.watch`/`arrw.unwatch` (statement-level triggers with
//!   transition tables that `pg_notify` one small payload per statement),
//!   the `arrw.watches` view and `arrw.emit_event`, all in SQL and PL/pgSQL.
//!
//! User documentation: docs/cdc.md.

pub mod json;
pub mod options;
pub mod plugin;

/// Called from `_PG_init`. The output plugin needs no setup: PostgreSQL calls
/// `_PG_output_plugin_init` when a slot using it is decoded.
pub fn init() {}
