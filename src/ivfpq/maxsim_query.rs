//! The query of a MaxSim (`@#`) scan of a `vector_maxsim_ops` index, kept in
//! the scan's state (scan.rs reads it; maxsim_scan.rs runs the scan): the
//! query's vectors, and the rows found once gathered.

use arrw_core::maxsim::{BestFirst, MaxSimError, Side};
use pgrx::pg_sys;

/// The state of a MaxSim scan beyond what every ivfpq scan keeps.
pub(super) struct MultiScan {
    /// The query's vectors.
    pub(super) query: Vec<Vec<f32>>,
    /// Rows found, as (estimated MaxSim, TID), taken best first.
    pub(super) cands: BestFirst,
    pub(super) gathered: bool,
    /// Entries the last gather kept per query vector.
    pub(super) depth: usize,
    /// While a deeper gather would find rows the last one did not
    /// (`Gather::truncated`): the most such a row can score, up to the codes'
    /// error (`Gather::floor`). None once every entry of the probed lists was
    /// kept, or `work_mem` holds no deeper gather.
    pub(super) unfound: Option<f32>,
    /// Rows taken from `cands` so far (re-ranked, or handed out in estimated
    /// order): a later gather leaves their entries out.
    pub(super) taken: std::collections::HashSet<u64, arrw_core::maxsim::BuildRowHasher>,
    /// `taken.len()` when the last gather ran: a gather no deeper than it
    /// finds new rows only if rows were taken since.
    pub(super) taken_at_gather: usize,
}

/// Bytes a `taken` set of `rows` rows allocates: the standard library's
/// hash set keeps a power of two of 8-byte slots (one control byte each) at
/// most 7/8 full, and at least 4.
pub(super) fn taken_bytes(rows: usize) -> usize {
    let slots = if rows < 8 {
        if rows < 4 {
            4
        } else {
            8
        }
    } else {
        (rows.saturating_mul(8) / 7 + 1).next_power_of_two()
    };
    slots.saturating_mul(9)
}

impl MultiScan {
    /// Reads the query array (empty, NULL elements, nested or too long: ERROR).
    ///
    /// # Safety
    /// `datum` must be a non-null `vector[]` datum.
    pub(super) unsafe fn new(datum: pg_sys::Datum) -> Self {
        // SAFETY: forwarded contract.
        let v = unsafe { crate::vector::maxsim::array_vectors(datum, Side::Query) };
        if v.is_empty() {
            crate::vector::maxsim::raise(MaxSimError::Empty(Side::Query));
        }
        MultiScan {
            query: v.iter().map(|x| x.to_vec()).collect(),
            cands: BestFirst::default(),
            gathered: false,
            depth: 0,
            unfound: None,
            taken: Default::default(),
            taken_at_gather: 0,
        }
    }

    /// ERROR unless every query vector has the index's `dim` dimensions.
    pub(super) fn check_dim(&self, dim: usize) {
        if let Some(x) = self.query.iter().find(|x| x.len() != dim) {
            crate::vector::maxsim::raise(MaxSimError::DifferentDims(dim, x.len()));
        }
    }

    /// `doc @# query` for a row's vectors (ERROR on mixed dimensions), as an
    /// `f32`, and what rounding the `f64` that `@#` returns to `f32` dropped: rows of one `f32` MaxSim leave in the order of their
    /// `f64`s (`OrderedRerank::add_tied`; 24 adjacent pairs of a full-probe
    /// scan over 20k documents came out reversed before).
    pub(super) fn exact_distance_tie(&self, doc: &[&[f32]]) -> (f32, i32) {
        let q: Vec<&[f32]> = self.query.iter().map(|x| x.as_slice()).collect();
        arrw_core::ivf::f32_and_tie(-crate::vector::maxsim::similarity_of(doc, &q))
    }
}
