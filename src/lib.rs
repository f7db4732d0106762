//! arrw: a PostgreSQL extension that turns Postgres into a real-time vector database.
//!
//! Layout (see ARCHITECTURE.md for how a query, an insert, a change event and a job
//! flow through it):
//! - [`vector`]: the pgvector-compatible `vector` and `halfvec` types; their SQL is
//!   `sql/vector.sql` and `sql/halfvec.sql`.
//! - [`ivfpq`]: the `ivfpq` index access method (build, scan, insert, VACUUM,
//!   options and the `ivfpq.*` settings, `arrw.ivfpq_info`/`ivfpq_check`).
//! - [`cdc`]: change data capture: the `arrw` logical decoding output plugin
//!   and the `arrw.watch` change channels.
//! - [`jobs`]: the background job queue, its launcher and workers.
//! - [`fmgr`]: the calling-convention glue every SQL function uses.
//! - [`memctx`]: per-row memory contexts, reset when a row is done.
//! - [`parallel`]: the build's pool of computing threads.
//!
//! Algorithms and parsers that need no server (distance kernels, formats,
//! k-means, PQ, IVF search, page checks, the change feed's options and JSON,
//! bulk_import's row splitter) live in the `arrw-core` crate under `crates/arrw-core`.

// Every unsafe operation needs its own `unsafe {}` block with a SAFETY comment,
// also inside `unsafe fn`.
#![deny(unsafe_op_in_unsafe_fn)]

::pgrx::pg_module_magic!();

pub mod cdc;
pub mod errors;
pub mod fmgr;
pub mod handed;
pub mod ivfpq;
pub mod jobs;
pub mod memctx;
pub mod parallel;
pub mod subxact;
pub mod vector;

// The hand-written catalog definitions, in dependency order. `bootstrap` puts the
// type first in the generated install script.
pgrx::extension_sql_file!("../sql/vector.sql", name = "vector", bootstrap);
pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", requires = ["vector"]);
pgrx::extension_sql_file!("../sql/ivfpq.sql", name = "ivfpq", requires = ["schema"]);
pgrx::extension_sql_file!(
    "../sql/multivector.sql",
    name = "multivector",
    requires = ["ivfpq"]
);
pgrx::extension_sql_file!("../sql/fusion.sql", name = "fusion", requires = ["schema"]);
pgrx::extension_sql_file!("../sql/halfvec.sql", name = "halfvec", requires = ["ivfpq"]);
pgrx::extension_sql_file!("../sql/cdc.sql", name = "cdc", requires = ["ivfpq"]);
pgrx::extension_sql_file!("../sql/jobs.sql", name = "jobs", requires = ["cdc"]);

/// Runs when a backend loads the library: registers settings and index options.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    ivfpq::init();
    cdc::init();
    jobs::init();
    // Every setting of ours is defined now: a misspelt one under our prefixes
    // (`SET ivfpq.probez = 3`) is an error, and a placeholder already set in
    // the configuration is removed with a WARNING, instead of silently doing
    // nothing.
    for prefix in [c"ivfpq", c"arrw"] {
        // SAFETY: called from _PG_init on the backend's thread with a static
        // NUL-terminated name (PostgreSQL copies it).
        unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) };
    }
}

// In-server tests live in pgrx-tests/ (one file per area); `#[pg_schema]` needs
// an inline module, so the files are included into it.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    #[allow(unused_imports)]
    use pgrx::prelude::*;

    include!("../pgrx-tests/vector.rs");
    include!("../pgrx-tests/halfvec.rs");
    include!("../pgrx-tests/ivfpq.rs");
    include!("../pgrx-tests/cdc.rs");
    include!("../pgrx-tests/jobs.rs");
    include!("../pgrx-tests/resources.rs");
    include!("../pgrx-tests/ordering.rs");
    include!("../pgrx-tests/pending.rs");
}

/// Required by `cargo pgrx test`: settings for the throwaway test server.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The settings of every test server, from their one home, tests/server.conf,
    /// less those the test server's PostgreSQL does not know: a setting of one
    /// build only stops every other build from starting (`output_plugin_libraries`
    /// is in the PostgreSQL 15.20 of some machines, not in the 15.18 Debian 12
    /// installs on others; tests/harness.rs and scripts/lib.sh filter alike).
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        let known = known_settings();
        include_str!("../tests/server.conf")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|l| {
                let name = l.split('=').next().unwrap_or("").trim();
                known.as_ref().is_none_or(|k| k.contains(name))
            })
            .collect()
    }

    /// The setting names `postgres --describe-config` lists for the PostgreSQL
    /// `cargo pgrx test` runs, or `None` when it cannot be asked (then every
    /// setting is written, as before).
    fn known_settings() -> Option<std::collections::HashSet<String>> {
        let label = format!("pg{}", pgrx::pg_sys::get_pg_major_version_num());
        let pg = pgrx_pg_config::Pgrx::from_config().ok()?.get(&label).ok()?;
        let out = std::process::Command::new(pg.postmaster_path().ok()?)
            .arg("--describe-config")
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Some(
            text.lines()
                .filter_map(|l| l.split('\t').next())
                .map(String::from)
                .collect(),
        )
    }
}
