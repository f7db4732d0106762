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
//! User documentation: docs/cdc.md; who may write and read what: docs/security.md.

pub mod json;
pub mod options;
pub mod plugin;

/// Called from `_PG_init`. The output plugin needs no setup: PostgreSQL calls
/// `_PG_output_plugin_init` when a slot using it is decoded.
pub fn init() {}

/// The content of the change-feed message arrw's job code writes when job `id`
/// (of kind `kind`) enters `state`:
/// `{"kind": "job", "payload": {"id": 1, "kind": "bulk_import", "state": "queued"}}`
/// (byte for byte the text jsonb gives the same object, so it reads the same
/// as events built with `jsonb_build_object`).
///
/// Both sides use this one function: src/jobs/notify.rs writes it, and the plugin
/// marks a message `"origin":"arrw"` only when its bytes equal what this returns
/// for a row of `arrw.job` that the same transaction wrote (plugin.rs explains).
pub fn job_event_content(id: i64, kind: &[u8], state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"kind\": \"job\", \"payload\": {\"id\": ");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b", \"kind\": ");
    json::push_str(&mut out, kind);
    out.extend_from_slice(b", \"state\": ");
    json::push_str(&mut out, state);
    out.extend_from_slice(b"}}");
    out
}
