//! Background jobs: the queue, the worker pool and the job kinds.

/// Called from `_PG_init`.
pub fn init() {}
