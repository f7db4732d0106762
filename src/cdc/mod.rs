//! Change data capture: the `arrw` logical decoding output plugin and the
//! `arrw.watch` LISTEN/NOTIFY change channels.

/// Called from `_PG_init`.
pub fn init() {}
