//! Job state changes are announced with `NOTIFY arrw_jobs, '{"id": .., "state": ..}'`
//! and, when the change feed provides it, `arrw.emit_event('job', ...)`. Both are
//! transactional: listeners hear of a change only if it commits.
//!
//! Called with arrw's bookkeeping rights (worker, or `spi::as_job_admin`).

use super::spi;

pub fn state_changed(id: &str, kind: &str, state: &str) {
    spi::exec(
        "SELECT pg_catalog.pg_notify('arrw_jobs', \
                pg_catalog.jsonb_build_object('id', $1::pg_catalog.int8, 'state', $2::pg_catalog.text)::pg_catalog.text)",
        &[Some(id), Some(state)],
    );
    if spi::flag(
        "SELECT pg_catalog.to_regprocedure('arrw.emit_event(text,jsonb)') IS NOT NULL",
        &[],
    ) {
        spi::exec(
            "SELECT arrw.emit_event('job', pg_catalog.jsonb_build_object('id', $1::pg_catalog.int8, \
                    'kind', $2::pg_catalog.text, 'state', $3::pg_catalog.text))",
            &[Some(id), Some(kind), Some(state)],
        );
    }
}
