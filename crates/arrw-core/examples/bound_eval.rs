//! How many rows must a scan re-rank to hand out its top k in exact order, under
//! different lower bounds on a row's distance from its PQ estimate (no PostgreSQL).
//!
//! ```text
//! cargo run --release -p arrw-core --example bound_eval -- DATASET_DIR [--queries N] [--probes P]
//!     [--calib R] [--sq-bits B] [--clip C] [--of-list] [--batch N]
//! ```
//!
//! A row can be handed out once every candidate whose lower bound lies below its
//! exact distance has been re-ranked, so the k-th row costs every row with a bound
//! below the k-th exact distance `T_k` among the probed lists. A bound that is
//! wrong for a true top-k row (above `T_k`) loses it. Each bound's scale is
//! learnt per query from its `R` best estimates (what the scan has re-ranked after
//! its first batch), as the scan does. Bounds, in squared L2 (of normalized vectors
//! under cosine), with `e` the row's PQ reconstruction error `x - x̂`:
//! - `global`: `est - M`, `M` the largest `est - exact` seen (arrw today);
//! - `bias`: `est + |e|² - M'`, same with the estimate's bias removed;
//! - `scaled`: `est + |e|² - z · 2 sqrt(est) |e|`, `z` the largest normalized
//!   error seen (the error is `-2 <q - x̂, e>`, which scales with both norms);
//! - `triangle`: `(sqrt(est) - |e|)²`, a guarantee up to the estimate's own
//!   rounding (fast-scan tables are 8-bit);
//! - `refined`: `fine - M''`, where `fine` is the distance to the row rebuilt from
//!   its PQ code plus a second code, the PQ residual `e` scalar-quantized to `B`
//!   (4 or 8) bits per dimension (default 4, see `arrw_core::refine`) over each dimension's range clipped at the
//!   `C` and `1 - C` quantiles (default 0.001), and `M''` its largest error seen.
//!   The count is the rows re-ranked exactly; each costs a refined estimate first
//!   only if its coarse bound (`global`) lets it through.

#[path = "common/npy.rs"]
mod npy;

use arrw_core::ivf::{self, InvertedLists, IvfPqModel, IvfPqParams, Metric};
use arrw_core::refine::ResidualSq;
use std::path::PathBuf;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let (mut nq, mut probes, mut calib) = (200usize, 0usize, 100usize);
    let (mut bits, mut clip, mut batch) = (4u32, 0.001f64, 16usize);
    let mut of_list = false;
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        let num = || v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match args[i].as_str() {
            "--queries" => nq = num()?,
            "--probes" => probes = num()?,
            "--calib" => calib = num()?,
            "--batch" => batch = num()?.max(1),
            "--sq-bits" => bits = if num()? == 8 { 8 } else { 4 },
            "--clip" => clip = v.parse().map_err(|e| format!("{v}: {e}"))?,
            "--of-list" => {
                of_list = true;
                i += 1;
                continue;
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
    let dir = dir.ok_or("usage: bound_eval DATASET_DIR")?;
    let (base, query, metric) = npy::load_set(&dir)?;
    let dim = base.cols;
    let (lists, m, nbits) = ivf::default_params(base.rows, dim);
    if probes == 0 {
        probes = ivf::DEFAULT_PROBES;
    }
    let model = IvfPqModel::train(&base.data, dim, metric, &IvfPqParams::new(lists, m, nbits));
    let il = InvertedLists::build(&model, &base.data);
    // Rows in the model's space (normalized under cosine), and |e| per row.
    let prep = |x: &[f32]| {
        let mut v = x.to_vec();
        if metric == Metric::Cosine {
            ivf::normalize(&mut v);
        }
        v
    };
    let cs = model.code_size();
    let mut enorm = vec![0f32; base.rows];
    let mut code = vec![0u8; cs];
    let mut rec = vec![0f32; dim];
    for (id, x) in base.data.chunks_exact(dim).enumerate() {
        let x = prep(x);
        let l = model.encode(&x, &mut code);
        model.pq.decode(&code, &mut rec);
        let c = model.centroid(l);
        enorm[id] = x
            .iter()
            .zip(&rec)
            .zip(c)
            .map(|((a, r), c)| (a - r - c).powi(2))
            .sum::<f32>()
            .sqrt();
    }
    // A second, finer code (`arrw_core::refine`): the PQ residual `x - c - p̂`
    // (or with `--of-list` the list residual `x - c`, which a refined estimate
    // can score without the PQ code) scalar-quantized per dimension. Trained on
    // every row here (an index would train it on its sample).
    let mut resid = vec![0f32; base.rows * dim];
    let mut recon = vec![0f32; base.rows * dim];
    for (id, x) in base.data.chunks_exact(dim).enumerate() {
        let x = prep(x);
        let l = model.encode(&x, &mut code);
        model.pq.decode(&code, &mut rec);
        if of_list {
            rec.fill(0.0);
        }
        let c = model.centroid(l);
        for d in 0..dim {
            recon[id * dim + d] = c[d] + rec[d];
            resid[id * dim + d] = x[d] - recon[id * dim + d];
        }
    }
    let sq = ResidualSq::train(&resid, dim, bits, clip);
    let mut fine = vec![0u8; sq.code_size()];
    for (r, out) in resid.chunks_exact(dim).zip(recon.chunks_exact_mut(dim)) {
        let _ = sq.encode(r, &mut fine);
        sq.decode_add(&fine, out);
    }
    println!(
        "{}: {} × {dim} {metric:?}, lists={lists} m={m} nbits={nbits}; probes {probes}, calibrated on the best {calib} estimates",
        dir.display(),
        base.rows
    );
    const RULES: [&str; 5] = ["global", "bias", "scaled", "triangle", "refined"];
    for k in [10usize, 100] {
        let mut need = [0usize; 5];
        let mut miss = [0usize; 5];
        let mut cand_total = 0usize;
        let (mut adaptive_fetch, mut adaptive_miss) = (0usize, 0usize);
        let nq = nq.min(query.rows);
        for qi in 0..nq {
            let q = prep(&query.data[qi * dim..(qi + 1) * dim]);
            let mut qt = model.query_tables(&q);
            // (est, exact, |e|) in squared L2 of the model's space.
            let mut rows: Vec<(f32, f32, f32)> = Vec::new();
            let mut fl: Vec<(f32, f32)> = Vec::new();
            let mut est = Vec::new();
            for (l, _) in qt.rank_lists(probes) {
                qt.set_list(l);
                let ids = &il.ids[l as usize];
                est.resize(ids.len(), 0.0);
                qt.scan_blocks(&il.blocks[l as usize], ids.len(), &mut est);
                for (&e, &id) in est.iter().zip(ids) {
                    let x = prep(&base.data[id as usize * dim..(id as usize + 1) * dim]);
                    let exact: f32 = q.iter().zip(&x).map(|(a, b)| (a - b).powi(2)).sum();
                    rows.push((e, exact, enorm[id as usize]));
                    let r = &recon[id as usize * dim..(id as usize + 1) * dim];
                    let fine: f32 = q.iter().zip(r).map(|(a, b)| (a - b).powi(2)).sum();
                    fl.push((fine, exact));
                }
            }
            cand_total += rows.len();
            rows.sort_by(|a, b| a.0.total_cmp(&b.0));
            let seen = &rows[..calib.min(rows.len())];
            let mg = seen.iter().map(|r| r.0 - r.1).fold(0f32, f32::max);
            let mb = seen
                .iter()
                .map(|r| r.0 + r.2 * r.2 - r.1)
                .fold(0f32, f32::max);
            let z = seen
                .iter()
                .map(|r| (r.0 + r.2 * r.2 - r.1) / (2.0 * r.0.max(0.0).sqrt() * r.2).max(1e-12))
                .fold(0f32, f32::max);
            let lb = |rule: usize, r: &(f32, f32, f32)| -> f32 {
                match rule {
                    0 => r.0 - mg,
                    1 => r.0 + r.2 * r.2 - mb,
                    2 => r.0 + r.2 * r.2 - z * 2.0 * r.0.max(0.0).sqrt() * r.2,
                    _ => (r.0.max(0.0).sqrt() - r.2).max(0.0).powi(2),
                }
            };
            let mut exact: Vec<f32> = rows.iter().map(|r| r.1).collect();
            exact.sort_by(|a, b| a.total_cmp(b));
            let tk = exact[k.min(exact.len()) - 1];
            // Adaptive depth: re-rank `batch` candidates at a time (coarse order)
            // until k re-ranked rows lie below the next estimate minus the margin.
            {
                let (mut done, mut margin) = (0usize, 0f32);
                let mut ex: Vec<f32> = Vec::new();
                loop {
                    let to = (done + batch).min(rows.len());
                    for r in &rows[done..to] {
                        margin = margin.max(r.0 - r.1);
                        ex.push(r.1);
                    }
                    done = to;
                    let next = rows.get(done).map_or(f32::INFINITY, |r| r.0 - margin);
                    if done == rows.len() || ex.iter().filter(|&&e| e <= next).count() >= k {
                        break;
                    }
                }
                ex.sort_by(|a, b| a.total_cmp(b));
                adaptive_fetch += done;
                adaptive_miss += ex.iter().take(k).filter(|&&e| e > tk).count();
            }
            fl.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mf = fl[..calib.min(fl.len())]
                .iter()
                .map(|r| r.0 - r.1)
                .fold(0f32, f32::max);
            need[4] += fl.iter().filter(|r| r.0 - mf <= tk).count();
            miss[4] += fl.iter().filter(|r| r.1 <= tk && r.0 - mf > tk).count();
            for rule in 0..4 {
                need[rule] += rows.iter().filter(|r| lb(rule, r) <= tk).count();
                miss[rule] += rows
                    .iter()
                    .filter(|r| r.1 <= tk && lb(rule, r) > tk)
                    .count();
            }
        }
        println!(
            "k={k}: candidates/query {:.0}",
            cand_total as f64 / nq as f64
        );
        println!(
            "  adaptive  re-rank/query {:>8.1}   lost top-k rows/query {:.3}  (batches of {batch})",
            adaptive_fetch as f64 / nq as f64,
            adaptive_miss as f64 / nq as f64
        );
        for rule in 0..5 {
            println!(
                "  {:<9} re-rank/query {:>8.1}   lost top-k rows/query {:.3}",
                RULES[rule],
                need[rule] as f64 / nq as f64,
                miss[rule] as f64 / nq as f64
            );
        }
    }
    Ok(())
}
