//! Index scans of `vector_maxsim_ops`: `ORDER BY doc_vectors @# $1 LIMIT k`.
//!
//! Such an index holds one entry per element of each row's `vector[]`, every
//! entry under its row's TID, encoded for inner products. A scan:
//!
//! 1. **gathers** (first call): for each query vector, ranks the lists by its
//!    centroid inner products, scores the codes of its `probes` best lists
//!    (the same page walk as a single-vector scan, `scan::scan_list`) and keeps
//!    its best `ivfpq.maxsim_depth` entries (`arrw_core::maxsim::Gather`). Each
//!    row found gets an estimated MaxSim: per query vector, its best element's
//!    estimate, or the query vector's *fill* (its lowest kept estimate) when
//!    none of the row's elements was kept: an upper bound of the row's MaxSim
//!    over the probed lists, up to the PQ codes' error.
//! 2. **re-ranks** rows best estimate first, `rerank` at a time: their exact
//!    MaxSim from the table (the row's `vector[]`, fetched with the scan's
//!    snapshot, so dead and invisible rows drop out).
//! 3. **hands out** a re-ranked row once no row still waiting could beat it:
//!    its exact distance (`-MaxSim`) is at most the next waiting estimate less
//!    the margin by which estimates have been seen to overshoot
//!    (`arrw_core::rerank::OrderedRerank`, the single-vector rule: see
//!    [`ordered_rerank`]). So rows leave in exact MaxSim order over the rows found; a deep
//!    `LIMIT` or a `WHERE` re-ranks further batches instead of returning rows
//!    out of order. Rows none of whose elements were kept for any query vector
//!    score at most the sum of the fills (`Gather::floor`): while that could
//!    beat every row waiting, the scan gathers again, deeper ([`deepen`]).
//!    The query's filter (prefilter.rs) is checked on each re-ranked row, as
//!    single-vector scans check it on the rows they hold: a rejected row only
//!    teaches the margin, so the rows a `LIMIT` right above the scan holds
//!    (`scan::hold_limit_rows`) are the rows it will take.
//!
//! With `rerank = 0` rows come in estimated order without reading the table.
//! Memory: the gather is bounded by `work_mem` (the default depth is lowered
//! to fit, a depth the session SET that does not fit is an ERROR:
//! `Gather::bytes_for`); each re-ranked row's array lives in the scan's
//! per-row context, reset after its MaxSim is computed.

use super::layout::{self, DataGeom};
use super::options;
use super::page;
use super::profile::{self, Count, Phase};
use super::scan::{self, Cand, ScanState, NO_FINE};
use arrw_core::ivf::RankedLists;
use arrw_core::maxsim::{BestFirst, Gather};
use arrw_core::rerank::{Next, OrderedRerank, DEFAULT_LIST_RANK};
use pgrx::pg_sys;

/// The queue that hands re-ranked rows out in exact order: the single-vector
/// rule, with the margin at the 99th percentile of the amounts by which
/// estimates exceeded their rows' exact distances. Row estimates here are
/// upper bounds of MaxSim but for the codes' error, and that error grows with
/// the similarity: a row that nearly duplicates the query (its elements are
/// the query's vectors) comes out 0.8 below its exact MaxSim of 9 where other
/// rows err by hundredths, and as the margin (the largest error, single-vector
/// scans' default) it made a scan re-rank all 8,000 rows it had found (133
/// ms; 45 ms and 400 rows at the 99th percentile, same rows). A margin from
/// the errors' spread (mean + 4 sd, also tried) did the same, counting how
/// loose the bounds of partly found rows are.
///
/// But a quantile of every error is mostly far rows' (negative: loose
/// bounds), while the near rows, the ones handed out first, err the most
/// (the codes underestimate large inner products), and those re-ranked first
/// are the ones whose estimates erred least. On 4,000 documents of 1–8
/// vectors (16-d, every list probed, queries of 3–5 vectors), the 30 nearest
/// rows erred by up to 0.46 where the 99th percentile was 0.1, and the first
/// 30 rows of a scan without a `LIMIT` had a farther row before a nearer one
/// in 12 of 30 queries (a `LIMIT 30` hid the same misses by leaving the
/// nearer row out: 4 of 30). So the margin is also at least the mean + 4 sd
/// of the errors of the [`NEAR_ROWS`] nearest rows re-ranked so far
/// (`OrderedRerank::with_near_spread`; the single-vector floor, over the
/// rows that matter): 0 of 30 either way, at 2.8x the rows re-ranked (a
/// replay of the logged scans; 30 queries of LIMIT 10 took as long).
///
/// `ivfpq.maxsim_sigmas` (default [`arrw_core::rerank::FINE_SIGMAS`], 4) is
/// that number of standard deviations: a session trades exact order for
/// speed with fewer. On 14,942 documents of 2–8 sentence embeddings and
/// 60 queries of 3 unrelated ones (probes 20 of 75 lists, `LIMIT 10`; ad-hoc
/// script): 4 re-ranked 2,342 rows a query at recall@10 0.997 (32 ms), 3
/// re-ranked 931 at 0.993 (12.6 ms), 2 re-ranked 190 at 0.962 (5.4 ms); a
/// sequential scan took ~105 ms. The rows a scan re-ranks still leave in
/// exact order among themselves; fewer sigmas give up the near rows whose
/// estimates erred more.
fn ordered_rerank() -> OrderedRerank<Cand> {
    OrderedRerank::new(MARGIN_QUANTILE, DEFAULT_LIST_RANK)
        .with_near_spread_sigmas(NEAR_ROWS, options::MAXSIM_SIGMAS.get())
}

/// See [`ordered_rerank`].
const MARGIN_QUANTILE: f64 = 0.99;

/// See [`ordered_rerank`]: the rows whose errors' spread bounds the margin
/// from below (30 and 50 did as well in the measurement there).
const NEAR_ROWS: usize = 100;

/// Entries kept per query vector: `ivfpq.maxsim_depth`, else 10 × `rerank` (at
/// least 1,000), and never more than the index can hold (`max_entries`: its
/// data pages full). A shallow gather keeps the fills high, and a row's
/// estimate then bounds its MaxSim even when its best element for a query
/// vector lies in a list not probed; a deep one (most of what is scored)
/// estimates such rows below their MaxSim. On 25,000 documents of sentence
/// embeddings (bench/run-maxsim, probes 16, rerank 100): depth 500 recall@10
/// 0.961 at 113 q/s, 2,000 0.959 at 119, 8,000 0.952 at 55, 32,000 0.928 at
/// 49 (the errors of deep gathers also widen the margin, so more rows are
/// re-ranked).
///
/// Memory: the default depth is lowered until the gather fits `work_mem`, but
/// not below [`MIN_DEFAULT_DEPTH`]; a depth the session SET that does not fit,
/// or a default that does not fit even at that floor (thousands of query
/// vectors under a small `work_mem`), is an ERROR saying what it needs
/// (lowering a SET depth would quietly drop rows the caller asked the scan to
/// keep; the floor went past `work_mem` unsaid, up to ~11 MB, hunt-130).
fn gather_depth(rerank: usize, queries: usize, max_entries: usize) -> usize {
    let set = options::MAXSIM_DEPTH.get();
    let want = if set > 0 {
        set as usize
    } else {
        (rerank * 10).max(1000)
    }
    .min(max_entries.max(1));
    // SAFETY: reading this backend's GUC variable.
    let budget = unsafe { pg_sys::work_mem } as usize * 1024;
    let fits = |depth: usize| Gather::bytes_for(depth, queries, max_entries) <= budget;
    if set > 0 && !fits(want) {
        gather_too_big(want, queries, max_entries, budget, true);
    }
    let mut depth = want;
    while depth > MIN_DEFAULT_DEPTH && !fits(depth) {
        depth = (depth * 3 / 4).max(MIN_DEFAULT_DEPTH);
    }
    if !fits(depth) {
        gather_too_big(depth, queries, max_entries, budget, false);
    }
    depth
}

/// The shallowest gather the default depth is lowered to: fewer entries per
/// query vector make the fills (the scores of rows a query vector did not
/// reach) too low to bound anything.
const MIN_DEFAULT_DEPTH: usize = 16;

/// ERROR 54000: a gather of `depth` entries per query vector does not fit
/// `work_mem`. The hint names only remedies that can work: a lower
/// `ivfpq.maxsim_depth` when the depth was `set` and a lower one fits, the
/// default (0) when its floor fits, else fewer query vectors.
#[cold]
fn gather_too_big(depth: usize, queries: usize, entries: usize, budget: usize, set: bool) -> ! {
    // In kB, as work_mem itself is set (a budget below 1 MB is common in tests).
    let kb = |b: usize| b.div_ceil(1024);
    let needed = Gather::bytes_for(depth, queries, entries);
    let fits = |d: usize| Gather::bytes_for(d, queries, entries) <= budget;
    let other = if set && depth > MIN_DEFAULT_DEPTH && fits(MIN_DEFAULT_DEPTH) {
        ", or lower ivfpq.maxsim_depth (0 picks a depth that fits)"
    } else if set && depth > 1 && fits(1) {
        ", or lower ivfpq.maxsim_depth"
    } else {
        ", or query with fewer vectors"
    };
    pgrx::pg_sys::panic::ErrorReport::new(
        pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!(
            "ivfpq: a MaxSim scan keeping {depth} entries for each of {queries} query vectors needs {} kB of work_mem, which is {} kB",
            kb(needed),
            kb(budget)
        ),
        "amgettuple",
    )
    .set_hint(format!("SET work_mem = '{}kB'{other}.", kb(needed)))
    .report(pgrx::PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

/// ERROR unless `more` rows can join the rows the scan has taken
/// (`MultiScan::taken`) within `work_mem`. The scan remembers every row it
/// has handed out or re-ranked, so that its later gathers leave them out; a
/// scan that goes on for hundreds of thousands of rows (no `LIMIT`, or a huge
/// one, under `enable_seqscan = off`) remembered them all, ~10 bytes a row
/// beyond any budget. It stops instead, saying what it would need, as a
/// single-vector scan does when its candidates outgrow `work_mem`
/// (scan.rs, `refuse_loss`). At the default 4 MB that is ~230,000 rows.
///
/// The budget is at least [`TAKEN_FLOOR_BYTES`], as the candidate pool keeps
/// at least 1,000 candidates whatever `work_mem` says: a `LIMIT 10` re-ranks
/// thousands of documents on real data (3,500–9,500 of pydoc-minilm's
/// paragraphs grouped in threes), and at `work_mem = 64kB` (~3,500 rows) every
/// such query failed (hunt-54).
///
/// # Safety
/// `scan` must be live.
unsafe fn remember_taken(
    scan: pg_sys::IndexScanDesc,
    m: &super::maxsim_query::MultiScan,
    more: usize,
) {
    let rows = m.taken.len() + more;
    if rows <= m.taken.capacity() {
        return;
    }
    // SAFETY: reading this backend's GUC variable.
    let budget = (unsafe { pg_sys::work_mem } as usize * 1024).max(TAKEN_FLOOR_BYTES);
    let need = super::maxsim_query::taken_bytes(rows);
    if need <= budget {
        return;
    }
    // SAFETY: live scan (forwarded contract).
    let index = unsafe { (*scan).indexRelation };
    crate::errors::error_hint(
        pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!(
            "ivfpq: a MaxSim scan of index \"{}\" has taken {} rows, and remembering more needs {} kB, past its budget of {} kB (work_mem, and at least 1 MB)",
            super::page::rel_name(index),
            m.taken.len(),
            need.div_ceil(1024),
            budget.div_ceil(1024)
        ),
        "A MaxSim scan remembers every row it has re-ranked or handed out (about 10 bytes each): raise work_mem, or add a LIMIT if the query has none.",
        "amgettuple",
    );
}

/// The least a MaxSim scan's set of taken rows may use, whatever `work_mem`
/// (~57,000 rows; see [`remember_taken`]).
const TAKEN_FLOOR_BYTES: usize = 1024 * 1024;

/// `amgettuple` for a MaxSim scan of a trained index.
///
/// # Safety
/// `scan` must be live and started ([`scan::ambeginscan`]'s state in `st`).
pub(super) unsafe fn gettuple(scan: pg_sys::IndexScanDesc, st: &mut ScanState) -> bool {
    if !st.multi.as_ref().expect("a MaxSim scan").gathered {
        // SAFETY: forwarded contract.
        unsafe { begin(scan, st) };
    }
    let metric = st.meta.metric;
    loop {
        let m = st.multi.as_mut().expect("a MaxSim scan");
        if st.rerank == 0 {
            // Estimated order, without reading the table.
            let Some(&(est, tid)) = m.cands.take(1).first() else {
                if m.unfound.is_some() {
                    // SAFETY: forwarded contract.
                    unsafe { deepen(scan, st) };
                    continue;
                }
                if widen(st) {
                    // SAFETY: forwarded contract.
                    unsafe { gather(scan, st, st.multi.as_ref().expect("a MaxSim scan").depth) };
                    continue;
                }
                return false;
            };
            // SAFETY: scan is live.
            unsafe { remember_taken(scan, m, 1) };
            m.taken.insert(tid);
            // Not read from the table here, so its block is checked here.
            // SAFETY: scan is live.
            unsafe {
                super::fetch::check_heap_tid(scan, super::layout::u64_tid(tid), &st.heap_blocks);
                scan::hand_out(scan, metric, -est, tid)
            };
            return true;
        }
        let t = profile::start();
        // Estimates are MaxSims; the queue orders distances (-MaxSim). What
        // waits: the best row found and not yet re-ranked and, while a deeper
        // gather would find more, the most a row not found can score.
        let found = m.cands.peek();
        let unfound = m.unfound;
        let waiting = match (found, unfound) {
            (Some(f), Some(u)) => Some(f.max(u)),
            (f, u) => f.or(u),
        }
        .map(|e| -e);
        // Nothing waits in the probed lists: probe further before the queue
        // lets its held rows go (they wait for what further lists hold),
        // unless it already holds the rows the plan takes (see [`widen`]).
        let settled = st.hold_exact && st.order.holds_enough();
        if waiting.is_none() && !settled && widen(st) {
            profile::stop(t, Phase::Order);
            // SAFETY: forwarded contract.
            unsafe { gather(scan, st, st.multi.as_ref().expect("a MaxSim scan").depth) };
            continue;
        }
        let next = st.order.next(waiting, None);
        profile::stop(t, Phase::Order);
        match next {
            Next::Row(dist, c) => {
                profile::count(Count::Returned, 1);
                // SAFETY: scan is live.
                unsafe { scan::hand_out(scan, metric, dist, scan::untag(c.tag)) };
                return true;
            }
            // SAFETY: scan is live.
            Next::Rerank => unsafe {
                match (found, unfound) {
                    (Some(f), Some(u)) if u > f => deepen(scan, st),
                    (None, Some(_)) => deepen(scan, st),
                    _ => rerank(scan, st),
                }
            },
            Next::Done => return false,
            // This scan's queue has no refine stage and is never offered a list.
            Next::Refine | Next::Probe => unreachable!("a MaxSim scan neither refines nor probes"),
        }
    }
}

/// Every row the probed lists hold has been re-ranked and the plan asks for
/// more (a `WHERE` that rejected rows, a deep `LIMIT`): with
/// `ivfpq.iterative_scan` on, probe twice the lists per query vector (up to
/// `ivfpq.max_probes`, or every list), as a single-vector scan goes on to
/// further lists. The next gather leaves out the rows already taken, so it
/// finds the rows of the new lists. Returns false when there is nothing more
/// to probe. Without it a filtered `LIMIT 100` returned 87-95 rows on real
/// sentence embeddings where 100 passed the filter (hunt-49). It runs before
/// the queue lets go of the rows it holds for a `LIMIT` (widening only once
/// they had gone let nearer rows of the new lists out after them: 5 of 60
/// rows out of order; hunt-50); rows handed out before are final, so a row of
/// a list probed later can still follow a farther one (as "over the rows
/// found" says of every MaxSim scan).
///
/// It does not run when the queue already holds the rows the plan takes:
/// all the rows a `LIMIT` holds are re-ranked, or leaving
/// (`OrderedRerank::holds_enough`), and they are the `LIMIT`'s own rows,
/// nothing on the way dropping rows the scan does not check itself
/// (`ScanState::hold_exact`). Every row of the probed lists is then
/// re-ranked, those rows are the nearest of them, in exact order, and the
/// probed lists, as `probes` set them, decide the recall, as in a
/// single-vector scan. Widening there only settled rows already known: on
/// 15,000 documents sharing paragraphs (hunt-153), a `LIMIT 21` re-ranked
/// 217 rows, and a `LIMIT 30`, whose 30th row no gather could settle within
/// the margin, widened 20 → 40 → 80 → 104 lists and re-ranked all 15,000
/// (slower than a sequential scan).
///
/// Where the hold is a guess (a join or a subquery filter between the scan
/// and the `LIMIT`, or no `LIMIT` known), the executor may drop the held rows
/// and ask for more, and rows of lists probed only then would come after
/// farther ones: it widens first, as before (stopping there had 18 of 30
/// answers behind an `IN (subquery)` out of order, hunt-156).
fn widen(st: &mut ScanState) -> bool {
    let lists = st.meta.lists as usize;
    let most = if st.max_probes > 0 {
        st.max_probes.max(st.probes).min(lists)
    } else {
        lists
    };
    if !st.iterative || st.probes >= most {
        return false;
    }
    st.probes = (st.probes.max(1) * 2).min(most);
    true
}

/// The first call: the queue, the rows a `LIMIT` holds, the first gather.
///
/// # Safety
/// `scan` must be live and started.
unsafe fn begin(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    st.order = ordered_rerank();
    // Also when no LIMIT says how many rows the plan takes (a cursor, a LIMIT
    // from an outer row): 5 of 20 such scans over 4,000 random documents had
    // a farther row before a nearer one among their first 10 before.
    scan::hold_limit_rows(st);
    // SAFETY: live scan.
    let index = unsafe { (*scan).indexRelation };
    let nq = st.multi.as_ref().expect("a MaxSim scan").query.len();
    let depth = gather_depth(st.rerank, nq, max_entries(index, st));
    // SAFETY: forwarded contract.
    unsafe { gather(scan, st, depth) };
    st.multi.as_mut().expect("a MaxSim scan").gathered = true;
}

/// The most entries the index holds: its data pages full.
fn max_entries(index: pg_sys::Relation, st: &ScanState) -> usize {
    let geom = DataGeom::of(&st.meta);
    (page::nblocks(index) as usize)
        .saturating_sub(st.meta.first_data_block() as usize)
        .saturating_mul(geom.capacity)
}

/// Gathers again, keeping four times the entries per query vector (as many
/// as `work_mem` holds), when a row not found could beat every row found and
/// not yet re-ranked: rows already taken are left out. Without it a scan
/// returned fewer rows than its `LIMIT` asked while the table had more, with
/// every list probed: none at all when the rows whose entries filled the
/// gather had been deleted (not yet vacuumed), and 4 of a `LIMIT 10` over 100
/// documents of 300 copies of one vector each (a gather of 1,000 entries per
/// query vector held ~4 of them).
///
/// When `work_mem` holds no deeper gather, the scan gathers again at the same
/// depth if rows were taken since the last gather: their entries are left out
/// of the offer (`Gather::offer_distances_except`), so the places they held go
/// to the next rows, and every row found and not taken is found again. Each
/// such gather re-scores the probed lists, so a small `work_mem` costs time,
/// not rows (before, at `work_mem = 64kB` a `LIMIT 10` over documents of 300
/// copies returned 3 rows and the full scan 13 of 100).
///
/// # Safety
/// `scan` must be live and started.
unsafe fn deepen(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    // SAFETY: live scan.
    let index = unsafe { (*scan).indexRelation };
    let m = st.multi.as_ref().expect("a MaxSim scan");
    let (nq, was) = (m.query.len(), m.depth);
    let most = max_entries(index, st);
    // SAFETY: reading this backend's GUC variable.
    let budget = unsafe { pg_sys::work_mem } as usize * 1024;
    let mut depth = was.saturating_mul(4).min(most.max(1));
    while depth > was && Gather::bytes_for(depth, nq, most) > budget {
        depth = depth * 3 / 4;
    }
    if depth <= was {
        let m = st.multi.as_mut().expect("a MaxSim scan");
        if m.taken.len() == m.taken_at_gather {
            // Nothing taken since the last gather: the same gather again would
            // find the same rows. Re-rank the rows it found first (they wait
            // behind the floor until a gather without them lowers it); with
            // none left, rows not found stay unreturned (docs/multivector.md).
            if m.cands.peek().is_some() {
                // SAFETY: forwarded contract.
                unsafe { rerank(scan, st) };
            } else {
                m.unfound = None;
            }
            return;
        }
        depth = was;
    }
    profile::count(Count::Reoffers, 1);
    // SAFETY: forwarded contract.
    unsafe { gather(scan, st, depth) };
}

/// Scores the probed lists of every query vector into a [`Gather`] of
/// `depth` entries per query vector and orders the rows found by estimate
/// (the entries of rows already taken are left out of the offers).
///
/// # Safety
/// `scan` must be live and started.
unsafe fn gather(scan: pg_sys::IndexScanDesc, st: &mut ScanState, depth: usize) {
    // SAFETY: live scan.
    let index = unsafe { (*scan).indexRelation };
    let model = st.model.clone().expect("started");
    let geom = DataGeom::of(&st.meta);
    let nq = st.multi.as_ref().expect("a MaxSim scan").query.len();
    let probes = st.probes.min(st.meta.lists as usize).max(1);
    let mut g = Gather::new(depth);
    let mut scratch = scan::ScoreScratch::default();
    for qi in 0..nq {
        pg_sys::check_for_interrupts!();
        let m = st.multi.as_ref().expect("a MaxSim scan");
        let (q, taken) = (&m.query[qi], &m.taken);
        let t = profile::start();
        let mut ranked = RankedLists::new(model.list_distances(q));
        ranked.order_through(probes);
        profile::stop(t, Phase::Rank);
        let mut qt = profile::time(Phase::Tables, || model.query_tables(q));
        profile::count(Count::Lists, probes as u64);
        for i in 0..probes.min(ranked.len()) {
            let list = ranked.get(i).0;
            profile::time(Phase::Tables, || qt.set_list(list));
            scan::scan_list(
                index,
                &st.meta,
                &mut st.nblocks,
                &qt,
                list,
                None,
                &mut scratch,
                f32::INFINITY,
                // Inner-product estimates come as distances (-inner product);
                // every entry is asked for (the bound stays +inf).
                |page, _, scored| {
                    let scan::Scored::All(d) = scored else {
                        unreachable!("scan_list leaves entries out only below a finite bound")
                    };
                    g.offer_distances_except(
                        d,
                        |j| layout::tid_u64(geom.tid(page, j)),
                        |tid| !taken.is_empty() && taken.contains(&tid),
                    );
                    f32::INFINITY
                },
            );
        }
        profile::time(Phase::Select, || g.end_query());
    }
    let t = profile::start();
    let m = st.multi.as_mut().expect("a MaxSim scan");
    m.depth = g.depth();
    m.unfound = g.truncated().then(|| g.floor());
    m.taken_at_gather = m.taken.len();
    // Rows taken were left out of the offers, so none is among these.
    m.cands = BestFirst::new(g.finish_unordered());
    profile::stop(t, Phase::Select);
}

/// Re-ranks the next `rerank` rows by estimate: their exact MaxSim, read from
/// the table, goes to the ordered queue (rows no longer visible drop out, and
/// rows the query's filter rejects only teach the margin).
///
/// The filter (prefilter.rs) is checked here on every row re-ranked, not
/// left to the executor: under a `LIMIT` the scan holds its first rows
/// (`scan::hold_limit_rows`), and a hold that counted the rows the executor
/// then drops held too few of the rows the `LIMIT` takes (`WHERE id % 7 = 0
/// ... LIMIT 30`, every list probed: 7 of 30 answers had a farther row
/// before a nearer one). A row costs a MaxSim of its whole array, so the
/// check is cheap beside it.
///
/// # Safety
/// `scan` must be live and started.
unsafe fn rerank(scan: pg_sys::IndexScanDesc, st: &mut ScanState) {
    let m = st.multi.as_mut().expect("a MaxSim scan");
    let t = profile::start();
    let mut batch: Vec<(f32, u64)> = m.cands.take_batch(st.rerank.max(1)).to_vec();
    // SAFETY: scan is live (forwarded contract).
    unsafe { remember_taken(scan, m, batch.len()) };
    m.taken.extend(batch.iter().map(|&(_, tid)| tid));
    profile::stop(t, Phase::Select);
    // Fetch in TID order: consecutive TIDs of one heap page share its pin.
    batch.sort_unstable_by_key(|&(_, tid)| tid);
    profile::count(Count::Reranked, batch.len() as u64);
    let metric = st.model.as_ref().expect("started").metric;
    // SAFETY: live scan: its heap relation, snapshot and index are open.
    unsafe { scan::ensure_fetch(scan, st) };
    for &(sim, tid) in &batch {
        let est = -sim;
        pg_sys::check_for_interrupts!();
        // SAFETY: ensure_fetch ran for this live scan.
        if let Some((d, tie)) = unsafe { scan::exact_distance_tie_of(scan, st, metric, tid) } {
            // The slot was made by table_slot_create on the node's relation,
            // which prefilter.rs gave this scan.
            let kept = match st.filter.as_ref() {
                // SAFETY: the row's visible version is in the scan's slot
                // (exact_distance_tie_of), and the node's query is running.
                Some(f) => unsafe { f.passes(st.slot) },
                None => true,
            };
            if !kept {
                st.depth += 1;
                profile::count(Count::Filtered, 1);
                profile::time(Phase::Order, || st.order.learn(est, d, 0.0));
                continue;
            }
            let c = Cand {
                tag: tid,
                blk: NO_FINE,
                slot: 0,
            };
            profile::time(Phase::Order, || st.order.add_tied(est, d, tie, 0.0, c));
        }
    }
    // SAFETY: release the last row's pin.
    unsafe { pg_sys::ExecClearTuple(st.slot) };
}
