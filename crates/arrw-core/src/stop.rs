//! Cooperative cancellation of long computations.
//!
//! Training and bulk encoding run on worker threads that must never call into
//! PostgreSQL, yet a cancel request (`pg_cancel_backend`, `statement_timeout`)
//! has to take effect within about 100 ms. The backend's own thread watches for
//! it and raises a [`Stop`] that the computing threads poll at points no more
//! than a few milliseconds of work apart (a block of rows in a k-means
//! assignment step, one k-means++ pick, one sub-quantizer); they then return
//! early, and the caller discards what they made and reports [`Stopped`].
//!
//! The same handle carries the computation's progress the other way: work
//! units planned ([`Stop::plan`]) and done ([`Stop::advance`]), which the
//! backend's thread reads ([`Stop::progress`]) and shows in
//! `pg_stat_progress_create_index` while it waits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Shared {
    requested: AtomicBool,
    planned: AtomicU64,
    done: AtomicU64,
}

/// A shared stop request. The default value can never be raised (no allocation),
/// so code without a canceller pays one branch per check.
#[derive(Clone, Debug, Default)]
pub struct Stop(Option<Arc<Shared>>);

impl Stop {
    /// A stop that can be raised with [`Stop::request`].
    pub fn new() -> Self {
        Stop(Some(Arc::new(Shared::default())))
    }

    /// Adds `units` to the work planned (a no-op on [`Stop::never`]).
    pub fn plan(&self, units: u64) {
        if let Some(f) = &self.0 {
            f.planned.fetch_add(units, Ordering::Relaxed);
        }
    }

    /// Adds `units` to the work done.
    #[inline]
    pub fn advance(&self, units: u64) {
        if let Some(f) = &self.0 {
            f.done.fetch_add(units, Ordering::Relaxed);
        }
    }

    /// (done, planned) so far, as counted (a caller that planned too little
    /// would see done above planned: the tests check it does not happen).
    pub fn progress(&self) -> (u64, u64) {
        match &self.0 {
            Some(f) => (
                f.done.load(Ordering::Relaxed),
                f.planned.load(Ordering::Relaxed),
            ),
            None => (0, 0),
        }
    }

    /// A stop that is never raised.
    pub fn never() -> Self {
        Stop(None)
    }

    /// Asks every computation holding a clone of this stop to return early.
    pub fn request(&self) {
        if let Some(f) = &self.0 {
            f.requested.store(true, Ordering::Relaxed);
        }
    }

    /// True once [`Stop::request`] was called on any clone.
    #[inline]
    pub fn requested(&self) -> bool {
        match &self.0 {
            Some(f) => f.requested.load(Ordering::Relaxed),
            None => false,
        }
    }

    /// `Err(Stopped)` once a stop was requested.
    #[inline]
    pub fn check(&self) -> Result<(), Stopped> {
        if self.requested() {
            Err(Stopped)
        } else {
            Ok(())
        }
    }
}

/// A computation returned early because its [`Stop`] was requested; its partial
/// result was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("computation stopped on request")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_is_never_requested() {
        let s = Stop::never();
        s.request();
        assert!(!s.requested());
        assert_eq!(s.check(), Ok(()));
    }

    #[test]
    fn a_request_reaches_every_clone() {
        let s = Stop::new();
        let c = s.clone();
        assert!(!c.requested());
        s.request();
        assert!(c.requested());
        assert_eq!(c.check(), Err(Stopped));
    }
}
