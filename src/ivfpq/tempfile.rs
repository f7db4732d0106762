//! The temporary file a scan writes the rows it holds beyond `work_mem` to
//! (`arrw_core::spill`, through `OrderedRerank::spill_to`).
//!
//! A PostgreSQL `BufFile`: in `temp_tablespaces`, counted against
//! `temp_file_limit` (going past it is PostgreSQL's own ERROR), owned by the
//! resource owner current at the first write (a cursor's portal, or the
//! transaction), so an aborted transaction deletes it. Made only when a scan
//! first holds more rows than its cap: deep scans, and shallow ones where
//! that many rows wait (thousands of near-copies of the query, a selective
//! filter at a small `work_mem`).
//!
//! The `BufFile` struct lives in the scan's memory context. On the normal
//! path (`amendscan`, a rescan making a new queue) dropping the store closes
//! and deletes the file; when a scan's state is freed by its context's reset
//! callback instead (an ERROR or cancel ended the query), the aborting
//! transaction's resource owner has closed the file already, so the store is
//! abandoned first ([`arrw_core::spill::Store::abandon`]) and never touches it.

use arrw_core::spill::Store;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// PostgreSQL's `MAX_PHYSICAL_FILESIZE`: a `BufFile` is made of segments of
/// 1 GB, and a position is a segment number and an offset in it.
const SEGMENT: u64 = 0x4000_0000;

pub(super) struct TempRuns {
    /// Null until the first append, and once abandoned.
    file: *mut pg_sys::BufFile,
    /// The scan's memory context: where the `BufFile` is made.
    ctx: pg_sys::MemoryContext,
    /// Bytes written.
    end: u64,
}

impl TempRuns {
    /// A store whose file will be made in `ctx` (a scan's memory context,
    /// which lives as long as the scan).
    pub(super) fn new(ctx: pg_sys::MemoryContext) -> Self {
        TempRuns {
            file: std::ptr::null_mut(),
            ctx,
            end: 0,
        }
    }

    fn seek(&mut self, at: u64) {
        // SAFETY: `file` is a live BufFile of this backend (made by append,
        // not yet closed); the position is at most its end.
        let r = unsafe {
            pg_sys::BufFileSeek(
                self.file,
                (at / SEGMENT) as i32,
                (at % SEGMENT) as pg_sys::off_t,
                0, /* SEEK_SET */
            )
        };
        if r != 0 {
            file_error("could not seek in an ivfpq scan's temporary file");
        }
    }
}

#[cold]
fn file_error(msg: &str) -> ! {
    crate::errors::error(PgSqlErrorCode::ERRCODE_IO_ERROR, msg.to_string())
}

impl Store for TempRuns {
    fn append(&mut self, b: &[u8]) -> u64 {
        if self.file.is_null() {
            // The BufFile is allocated in the scan's context and registered
            // with the current resource owner (an ERROR in between leaves the
            // context to the abort, which resets it).
            // SAFETY: plain calls; ctx is the scan's live memory context.
            unsafe {
                pg_sys::PrepareTempTablespaces();
                let old = pg_sys::MemoryContextSwitchTo(self.ctx);
                let f = pg_sys::BufFileCreateTemp(false);
                pg_sys::MemoryContextSwitchTo(old);
                self.file = f;
            }
        }
        let at = self.end;
        self.seek(at);
        // SAFETY: the file is live (above); `b` is readable for its length
        // (BufFileWrite only reads through the pointer, and raises an ERROR
        // itself when the write fails).
        unsafe { pg_sys::BufFileWrite(self.file, b.as_ptr() as *mut std::ffi::c_void, b.len()) };
        self.end += b.len() as u64;
        at
    }

    fn read_at(&mut self, offset: u64, b: &mut [u8]) {
        if self.file.is_null() || offset + b.len() as u64 > self.end {
            file_error("an ivfpq scan read past what it wrote to its temporary file");
        }
        self.seek(offset);
        // SAFETY: the file is live; `b` is writable for its length.
        let n = unsafe {
            pg_sys::BufFileRead(self.file, b.as_mut_ptr() as *mut std::ffi::c_void, b.len())
        };
        if n != b.len() {
            file_error("could not read an ivfpq scan's temporary file");
        }
    }

    fn abandon(&mut self) {
        self.file = std::ptr::null_mut();
    }
}

impl Drop for TempRuns {
    fn drop(&mut self) {
        // While an ERROR unwinds (a write past `temp_file_limit`, a cancel),
        // closing would flush the file's buffer, which can fail the same way:
        // a second ERROR inside the unwinding aborted the whole server (an
        // `ivfpq_check` past `temp_file_limit`; hunt-145). The transaction's
        // abort closes and deletes the file through its resource owner.
        if std::thread::panicking() {
            self.file = std::ptr::null_mut();
        }
        if !self.file.is_null() {
            // SAFETY: the file was made by append and neither closed nor
            // abandoned: the scan ended normally and its transaction is live.
            unsafe { pg_sys::BufFileClose(self.file) };
            self.file = std::ptr::null_mut();
        }
    }
}
