//! arrw: a PostgreSQL extension that turns Postgres into a real-time vector database.
//!
//! Layout (see ARCHITECTURE.md for how a query, an insert, a change event and a job
//! flow through it):
//! - [`fmgr`]: the calling-convention glue every SQL function uses.
//! - [`vector`]: the pgvector-compatible `vector` type; its SQL is `sql/vector.sql`.
//!
//! Algorithms that need no server (distance kernels, formats, k-means, PQ, IVF
//! search) live in the `arrw-core` crate under `crates/arrw-core`.

// Every unsafe operation needs its own `unsafe {}` block with a SAFETY comment,
// also inside `unsafe fn`.
#![deny(unsafe_op_in_unsafe_fn)]

::pgrx::pg_module_magic!();

pub mod cdc;
pub mod fmgr;
pub mod ivfpq;
pub mod jobs;
pub mod memctx;
pub mod parallel;
pub mod vector;

// The hand-written catalog definitions, in dependency order. `bootstrap` puts the
// type first in the generated install script.
pgrx::extension_sql_file!("../sql/vector.sql", name = "vector", bootstrap);
pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", requires = ["vector"]);
pgrx::extension_sql_file!("../sql/ivfpq.sql", name = "ivfpq", requires = ["schema"]);
pgrx::extension_sql_file!("../sql/cdc.sql", name = "cdc", requires = ["ivfpq"]);
pgrx::extension_sql_file!("../sql/jobs.sql", name = "jobs", requires = ["cdc"]);

/// Runs when a backend loads the library: registers settings and index options.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    ivfpq::init();
    cdc::init();
    jobs::init();
}

// In-server tests live in pgrx-tests/ (one file per area); `#[pg_schema]` needs
// an inline module, so the files are included into it.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    #[allow(unused_imports)]
    use pgrx::prelude::*;

    include!("../pgrx-tests/vector.rs");
    include!("../pgrx-tests/ivfpq.rs");
    include!("../pgrx-tests/cdc.rs");
    include!("../pgrx-tests/jobs.rs");
    include!("../pgrx-tests/resources.rs");
    include!("../pgrx-tests/ordering.rs");
}

/// Required by `cargo pgrx test`: settings for the throwaway test server.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The settings of every test server, from their one home, tests/server.conf.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        include_str!("../tests/server.conf")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }
}
