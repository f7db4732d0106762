//! Offline model of an ivfpq index scan under a `WHERE` filter or a deep `LIMIT`
//! (no PostgreSQL): how re-ranked rows are handed to the executor decides recall.
//!
//! ```text
//! cargo run --release -p arrw-core --example filtered_eval -- DATASET_DIR \
//!     [--queries N] [--probes P] [--rerank R] [--k K] [--quantiles q1,q2,..]
//!     [--list-rank N]
//! ```
//!
//! For each filter (none with LIMIT 100; 10% and 1% of rows spread uniformly; 1%
//! of rows clustered in a few lists), every query is answered like the index scan
//! does, with the first `probes` lists, then `probes` more whenever the candidates
//! run out (iterative scan), by two hand-out rules:
//! - `batch`: re-rank `rerank` candidates at a time, return each batch in exact
//!   order (arrw up to this change);
//! - `ordered q`: `arrw_core::rerank::OrderedRerank` with its margin at quantile q.
//!
//! It prints recall@K against the exact filtered top K (brute force) and the rows
//! re-ranked per query (heap fetches, the dominant cost of a scan).

#[path = "common/npy.rs"]
mod npy;

use arrw_core::ivf::{
    self, estimate_as_distance, exact_distance, InvertedLists, IvfPqModel, IvfPqParams,
};
use arrw_core::rerank::{Next, OrderedRerank};
use std::path::PathBuf;
use std::time::Instant;

/// Which rows pass the filter.
#[derive(Clone, Copy)]
enum Filter {
    All,
    /// Rows whose hashed id falls in 1 / n of the range.
    Spread(u64),
    /// Rows of the lists whose number is 0 mod n (clustered in a few lists).
    Lists(u32),
}

fn hash(id: u32) -> u64 {
    let mut z = (id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Scan<'a> {
    model: &'a IvfPqModel,
    il: &'a InvertedLists,
    base: &'a [f32],
    list_of: &'a [u32],
    probes: usize,
    rerank: usize,
}

impl Scan<'_> {
    fn passes(&self, f: Filter, id: u32) -> bool {
        match f {
            Filter::All => true,
            Filter::Spread(n) => hash(id).is_multiple_of(n),
            Filter::Lists(n) => self.list_of[id as usize].is_multiple_of(n),
        }
    }

    /// Candidates of lists `ranked[from..to]` with their estimates, best first.
    fn candidates(&self, q: &[f32], ranked: &[u32], out: &mut Vec<(f32, u32)>) {
        let mut qt = self.model.query_tables(q);
        let mut est = Vec::new();
        for &l in ranked {
            qt.set_list(l);
            let n = self.il.ids[l as usize].len();
            est.resize(n, 0.0);
            qt.scan_blocks(&self.il.blocks[l as usize], n, &mut est);
            out.extend(
                est.iter()
                    .copied()
                    .zip(self.il.ids[l as usize].iter().copied()),
            );
        }
        out.sort_by(|a, b| b.0.total_cmp(&a.0)); // best last
    }

    /// Answers one query; returns (ids, rows re-ranked, lists probed).
    /// `quantile` None = batch rule; `lists` lets the ordered rule probe more
    /// lists one at a time when one could hold closer rows (iterative scan).
    fn run(
        &self,
        q: &[f32],
        f: Filter,
        k: usize,
        quantile: Option<f64>,
        lists: bool,
        list_rank: usize,
    ) -> (Vec<u32>, usize, usize) {
        let dim = self.model.dim;
        let metric = self.model.metric;
        let ranked: Vec<(u32, f32)> = self.model.rank_lists(q, self.model.lists);
        let mut list_dist = vec![0f32; self.model.lists];
        for &(l, d) in &ranked {
            list_dist[l as usize] = estimate_as_distance(metric, d);
        }
        let mut probed = 0;
        let mut pool: Vec<(f32, u32)> = Vec::new();
        let mut out = Vec::new();
        let mut fetched = 0;
        let exact = |id: u32| {
            exact_distance(
                metric,
                q,
                &self.base[id as usize * dim..(id as usize + 1) * dim],
            )
        };
        let probe = |probed: &mut usize, n: usize, pool: &mut Vec<(f32, u32)>| {
            let to = (*probed + n).min(ranked.len());
            let ids: Vec<u32> = ranked[*probed..to].iter().map(|x| x.0).collect();
            self.candidates(q, &ids, pool);
            *probed = to;
        };
        probe(&mut probed, self.probes, &mut pool);
        let Some(quantile) = quantile else {
            // Batch rule: each batch in exact order, batches in estimate order.
            let mut batch: Vec<(f32, u32)> = Vec::new();
            while out.len() < k {
                if let Some((_, id)) = batch.pop() {
                    if self.passes(f, id) {
                        out.push(id);
                    }
                    continue;
                }
                if pool.is_empty() {
                    if probed >= ranked.len() {
                        break;
                    }
                    probe(&mut probed, self.probes, &mut pool);
                    continue;
                }
                let start = pool.len() - self.rerank.min(pool.len());
                batch = pool.drain(start..).collect();
                fetched += batch.len();
                batch.iter_mut().for_each(|c| c.0 = exact(c.1));
                batch.sort_by(|a, c| c.0.total_cmp(&a.0));
            }
            return (out, fetched, probed);
        };
        let mut o = OrderedRerank::<u32>::new(quantile, list_rank);
        while out.len() < k {
            let cand = pool.last().map(|c| estimate_as_distance(metric, c.0));
            let next_list = if probed >= ranked.len() {
                None
            } else if lists {
                Some(list_dist[ranked[probed].0 as usize])
            } else if pool.is_empty() {
                Some(f32::NEG_INFINITY)
            } else {
                None
            };
            match o.next(cand, next_list) {
                Next::Row(_, id) => {
                    if self.passes(f, id) {
                        out.push(id);
                    }
                }
                Next::Rerank => {
                    let start = pool.len() - self.rerank.min(pool.len());
                    let b: Vec<(f32, u32)> = pool.drain(start..).collect();
                    fetched += b.len();
                    for (e, id) in b {
                        let l = self.list_of[id as usize] as usize;
                        o.add(estimate_as_distance(metric, e), exact(id), list_dist[l], id);
                    }
                }
                Next::Probe => probe(&mut probed, if lists { 1 } else { self.probes }, &mut pool),
                Next::Refine => unreachable!("no refine stage here"),
                Next::Done => break,
            }
        }
        (out, fetched, probed)
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let (mut nq, mut probes, mut rerank, mut k) = (200usize, 20usize, 100usize, 10usize);
    let mut quantiles = vec![0.99, 1.0];
    let mut list_rank = arrw_core::rerank::DEFAULT_LIST_RANK;
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        let num = || v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match args[i].as_str() {
            "--queries" => nq = num()?,
            "--probes" => probes = num()?,
            "--rerank" => rerank = num()?,
            "--k" => k = num()?,
            "--list-rank" => list_rank = num()?,
            "--quantiles" => {
                quantiles = v.split(',').map(|s| s.parse().unwrap()).collect();
            }
            a if !a.starts_with("--") && dir.is_none() => {
                dir = Some(PathBuf::from(a));
                i += 1;
                continue;
            }
            a => return Err(format!("unknown argument {a}")),
        }
        i += 2;
    }
    let dir = dir.ok_or("usage: filtered_eval DATASET_DIR [--queries N ...]")?;
    let (base, query, metric) = npy::load_set(&dir)?;
    let dim = base.cols;
    let (lists, m, nbits) = ivf::default_params(base.rows, dim);
    let t = Instant::now();
    let model = IvfPqModel::train(&base.data, dim, metric, &IvfPqParams::new(lists, m, nbits));
    let il = InvertedLists::build(&model, &base.data);
    let mut list_of = vec![0u32; base.rows];
    for (l, ids) in il.ids.iter().enumerate() {
        for &id in ids {
            list_of[id as usize] = l as u32;
        }
    }
    println!(
        "{}: {} × {dim} {metric:?}, lists={lists} m={m} nbits={nbits}, built in {:.1}s; probes {probes}, rerank {rerank}",
        dir.display(),
        base.rows,
        t.elapsed().as_secs_f64()
    );
    let scan = Scan {
        model: &model,
        il: &il,
        base: &base.data,
        list_of: &list_of,
        probes,
        rerank,
    };
    let nq = nq.min(query.rows);
    if std::env::var("ERRSTATS").is_ok() {
        for qi in 0..5 {
            error_stats(
                &model,
                &il,
                &base.data,
                &query.data[qi * dim..(qi + 1) * dim],
                probes,
            );
        }
        return Ok(());
    }
    let cases: Vec<(&str, Filter, usize)> = vec![
        ("no filter, LIMIT 100", Filter::All, 100),
        ("no filter", Filter::All, k),
        ("10% spread", Filter::Spread(10), k),
        ("1% spread", Filter::Spread(100), k),
        ("~1% in few lists", Filter::Lists(100), k),
    ];
    let mut rules: Vec<(Option<f64>, bool)> = vec![(None, false)];
    rules.extend(quantiles.iter().map(|&q| (Some(q), false)));
    rules.extend(quantiles.iter().map(|&q| (Some(q), true)));
    println!(
        "{:<22} {:<16} {:>9} {:>12} {:>12} {:>9}",
        "case", "rule", "recall", "fetch/query", "lists/query", "q/s(1t)"
    );
    for (name, f, kk) in cases {
        // Exact filtered top-k by brute force.
        let truth: Vec<Vec<u32>> = (0..nq)
            .map(|qi| {
                let q = &query.data[qi * dim..(qi + 1) * dim];
                let mut d: Vec<(f32, u32)> = (0..base.rows as u32)
                    .filter(|&id| scan.passes(f, id))
                    .map(|id| {
                        (
                            exact_distance(
                                metric,
                                q,
                                &base.data[id as usize * dim..(id as usize + 1) * dim],
                            ),
                            id,
                        )
                    })
                    .collect();
                d.sort_by(|a, b| a.0.total_cmp(&b.0));
                d.into_iter().take(kk).map(|x| x.1).collect()
            })
            .collect();
        for rule in &rules {
            let t = Instant::now();
            let (mut hits, mut total, mut fetched, mut probed) = (0, 0, 0, 0);
            for (qi, want) in truth.iter().enumerate() {
                let q = &query.data[qi * dim..(qi + 1) * dim];
                let (got, fe, pr) = scan.run(q, f, kk, rule.0, rule.1, list_rank);
                fetched += fe;
                probed += pr;
                total += want.len();
                hits += got.iter().filter(|id| want.contains(id)).count();
            }
            let secs = t.elapsed().as_secs_f64();
            let label = match rule {
                (None, _) => "batch".to_string(),
                (Some(q), false) => format!("ordered {q}"),
                (Some(q), true) => format!("ord+lists {q}"),
            };
            println!(
                "{name:<22} {label:<16} {:>9.4} {:>12.0} {:>12.1} {:>9.0}",
                hits as f64 / total.max(1) as f64,
                fetched as f64 / nq as f64,
                probed as f64 / nq as f64,
                nq as f64 / secs
            );
        }
    }
    Ok(())
}

/// Error statistics of estimates (diagnostic): signed `estimate - exact` (in the
/// exact space) over all candidates of the probed lists vs over the best 100.
#[allow(dead_code)]
pub fn error_stats(model: &IvfPqModel, il: &InvertedLists, base: &[f32], q: &[f32], probes: usize) {
    let dim = model.dim;
    let ranked: Vec<u32> = model
        .rank_lists(q, probes)
        .into_iter()
        .map(|x| x.0)
        .collect();
    let scan = Scan {
        model,
        il,
        base,
        list_of: &[],
        probes,
        rerank: 100,
    };
    let mut pool = Vec::new();
    scan.candidates(q, &ranked, &mut pool);
    let errs = |c: &[(f32, u32)]| {
        let mut e: Vec<f32> = c
            .iter()
            .map(|&(est, id)| {
                estimate_as_distance(model.metric, est)
                    - exact_distance(
                        model.metric,
                        q,
                        &base[id as usize * dim..(id as usize + 1) * dim],
                    )
            })
            .collect();
        e.sort_by(|a, b| a.total_cmp(b));
        let p = |f: f64| e[((e.len() - 1) as f64 * f) as usize];
        (p(0.05), p(0.5), p(0.95))
    };
    let n = pool.len();
    let all = errs(&pool);
    let best = errs(&pool[n - 100..]);
    let gap = {
        let d = |i: usize| estimate_as_distance(model.metric, pool[n - 1 - i].0);
        (d(0), d(99), d(999.min(n - 1)))
    };
    println!(
        "errors all p5/p50/p95 {all:.4?}  best100 {best:.4?}  est at rank 1/100/1000 {gap:.4?}"
    );
}
