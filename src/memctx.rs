//! Short-lived memory contexts for what is read per row.
//!
//! A value read from a row (a detoasted vector, an expression's result) is
//! palloc'd in whatever context is current, and most callers' contexts live as
//! long as the statement. A build, a re-rank or an `INSERT ... SELECT` that reads
//! millions of out-of-line vectors would then hold all of them at once. Code that
//! reads rows wraps each row in [`RowContext::scope`], which allocates in a
//! private context and frees it when the row is done.

use pgrx::pg_sys;
use std::ffi::CStr;

/// A child memory context, reset after each [`RowContext::scope`].
pub struct RowContext(pg_sys::MemoryContext);

/// Switches back to the caller's context when dropped, also while an ERROR
/// unwinds (the context we leave is then freed with its parent).
struct Restore(pg_sys::MemoryContext);

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: re-installs the context that was current before `scope`
        // switched; it is still alive (it is this context's parent or one of
        // its ancestors' descendants that outlives the call).
        unsafe {
            pg_sys::CurrentMemoryContext = self.0;
        }
    }
}

/// Runs `f` with `ctx` current and switches back afterwards (also while an
/// ERROR unwinds). For work whose allocations must outlive a
/// [`RowContext::scope`] it runs inside: an index scan kept across rows.
///
/// # Safety
/// `ctx` must be a live memory context that outlives the call.
pub unsafe fn in_context<R>(ctx: pg_sys::MemoryContext, f: impl FnOnce() -> R) -> R {
    // SAFETY: CurrentMemoryContext is this backend's global; `ctx` is live
    // (forwarded contract) and `Restore` swaps the caller's back.
    let restore = unsafe {
        let old = pg_sys::CurrentMemoryContext;
        pg_sys::CurrentMemoryContext = ctx;
        Restore(old)
    };
    let r = f();
    drop(restore);
    r
}

impl RowContext {
    /// A new context under the current one. It is freed by [`RowContext::delete`]
    /// or, at the latest, with its parent (also when an ERROR aborts the caller).
    pub fn new(name: &'static CStr) -> Self {
        // SAFETY: creates a child of the current memory context; `name` is static
        // as AllocSetContextCreate requires.
        let ctx = unsafe {
            pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                name.as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            )
        };
        RowContext(ctx)
    }

    /// Runs `f` with this context current, then switches back and frees
    /// everything `f` allocated here. Nothing `f` returns may point into it.
    ///
    /// When `f` allocated nothing (an in-line vector is read in place) no reset is
    /// needed: the check is a field read, not a call, because this runs for every
    /// re-ranked candidate.
    #[inline]
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: our context is live until `delete`, which consumes `self`.
        let r = unsafe { in_context(self.0, f) };
        // SAFETY: our context is live and no longer current; `isReset` is a plain
        // field that PostgreSQL clears on the first allocation after a reset.
        unsafe {
            if !(*self.0).isReset {
                pg_sys::MemoryContextReset(self.0);
            }
        }
        r
    }

    /// Frees the context now (it must not be current).
    pub fn delete(self) {
        // SAFETY: the context is ours, live, and not current (scope restored the
        // caller's); it is deleted exactly once since `self` is consumed.
        unsafe { pg_sys::MemoryContextDelete(self.0) }
    }
}
