//! Job state changes are announced, transactionally (listeners hear of a change
//! only if it commits), three ways:
//!
//! - `NOTIFY arrw_jobs, '{"id": .., "state": ..}'`: a public hint. Any role can
//!   LISTEN, and any role can NOTIFY the same channel, so a consumer must treat
//!   it as "something may have changed" and read `arrw.jobs`.
//! - the same payload on the secret channel `arrw.job_channel()` (a name in
//!   `arrw.secret`, readable only by superusers and by roles granted EXECUTE on
//!   that function): what arrives there was sent by arrw, or by a role the
//!   operator trusted with the name.
//! - with `wal_level = logical`, a transactional logical decoding message with
//!   prefix `arrw` and the content of `crate::cdc::job_event_content`. It is
//!   written here directly, not through `arrw.emit_event` (which refuses the
//!   reserved kind `job` for everyone); the output plugin marks it
//!   `"origin":"arrw"` because this transaction also wrote the job's row.
//!
//! Called with arrw's bookkeeping rights (worker, or `spi::as_job_admin`), right
//! after the statement that wrote the job's new state, in the same transaction.

use super::job::State;
use super::spi;

/// Announces that job `id` (of kind `kind`) is now in `state`.
pub fn state_changed(id: &str, kind: &str, state: State) {
    let state = state.as_str();
    // trace_notify off: it would show the secret channel's name to the client
    // (spi::without_notify_trace).
    spi::without_notify_trace(|| {
        spi::exec(
            "SELECT pg_catalog.pg_notify(c.channel, p.payload) \
               FROM (SELECT pg_catalog.jsonb_build_object('id', $1::pg_catalog.int8, 'state', $2::pg_catalog.text)::pg_catalog.text) \
                    AS p(payload), \
                    (SELECT 'arrw_jobs' UNION ALL SELECT arrw.job_channel()) \
                    AS c(channel)",
            &[Some(id), Some(state)],
        )
    });
    let Ok(num) = id.parse::<i64>() else { return };
    let content = crate::cdc::job_event_content(num, kind.as_bytes(), state.as_bytes());
    let content = String::from_utf8_lossy(&content);
    spi::exec(
        "SELECT pg_catalog.pg_logical_emit_message(true, 'arrw', $1) \
          WHERE pg_catalog.current_setting('wal_level') = 'logical' AND NOT pg_catalog.pg_is_in_recovery()",
        &[Some(&content)],
    );
}
