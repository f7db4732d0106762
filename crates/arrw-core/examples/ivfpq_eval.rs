//! Offline evaluation of the IVF-PQ algorithms on a real dataset (no PostgreSQL).
//!
//! ```text
//! cargo run --release -p arrw-core --example ivfpq_eval -- DATASET_DIR \
//!     [--lists N] [--m M] [--nbits B] [--rerank R[,R2...]] [--probes P1,P2,...]
//!     [--metric l2|cosine|ip] [--sample N] [--queries N] [--seed S]
//!     [--kmeans-iters N] [--kmeans-ppc N] [--kmeans-init-ppc N] [--kmeans-tol F]
//!     [--pq-ppc N] [--pq-iters N] [--pq-tol F]
//! ```
//!
//! `DATASET_DIR` holds `base.<dtype>.npy` (rows to index), `query.<dtype>.npy` and
//! `groundtruth.i32.npy` (ids of each query's exact nearest rows, best first), with
//! dtype `u8`, `f16`, `f32` or `i32`. Without `--metric`, unit-length base vectors
//! mean cosine, anything else L2. Defaults for lists/m/nbits come from
//! `ivf::default_params`.
//!
//! Prints training and encoding time (all cores), then for each probe count the
//! recall@10 against the first 10 ground-truth columns and single-threaded
//! queries/second of the search (list ranking, ADC scan, and the exact re-ranking
//! of in-memory vectors when re-ranking).

use arrw_core::ivf::{self, InvertedLists, IvfPqModel, IvfPqParams, Metric};
use std::path::PathBuf;
use std::time::Instant;

#[path = "common/npy.rs"]
mod npy;
use npy::{find, read_f32, read_i32};

fn list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad number {v:?}"))
        })
        .collect()
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let (mut lists, mut m, mut nbits) = (None, None, None);
    let mut reranks = vec![0usize, 100];
    let mut probes = vec![1usize, 2, 4, 8, 10, 16, 24, 32, 48, 64];
    let mut metric = None;
    let mut sample = None;
    let mut nq = None;
    let mut seed = None;
    let mut kiters = None;
    let mut kppc = None;
    let mut kinit = None;
    let mut ktol = None;
    let mut pq_ppc = None;
    let mut pq_iters = None;
    let mut pq_tol = None;
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--lists" => lists = Some(list::<usize>(&v)[0]),
            "--m" => m = Some(list::<usize>(&v)[0]),
            "--nbits" => nbits = Some(list::<u32>(&v)[0]),
            "--rerank" => {
                reranks = list(&v);
                if !reranks.contains(&0) {
                    reranks.insert(0, 0);
                }
            }
            "--probes" => probes = list(&v),
            "--sample" => sample = Some(list::<usize>(&v)[0]),
            "--queries" => nq = Some(list::<usize>(&v)[0]),
            "--seed" => seed = Some(list::<u64>(&v)[0]),
            "--kmeans-iters" => kiters = Some(list::<usize>(&v)[0]),
            "--kmeans-ppc" => kppc = Some(list::<usize>(&v)[0]),
            "--kmeans-init-ppc" => kinit = Some(list::<usize>(&v)[0]),
            "--kmeans-tol" => ktol = Some(list::<f64>(&v)[0]),
            "--pq-ppc" => pq_ppc = Some(list::<usize>(&v)[0]),
            "--pq-iters" => pq_iters = Some(list::<usize>(&v)[0]),
            "--pq-tol" => pq_tol = Some(list::<f64>(&v)[0]),
            "--metric" => {
                metric = Some(match v.as_str() {
                    "l2" => Metric::L2,
                    "cosine" => Metric::Cosine,
                    "ip" => Metric::InnerProduct,
                    _ => return Err(format!("unknown metric {v}")),
                })
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
    let dir = dir.ok_or(
        "usage: ivfpq_eval DATASET_DIR [--lists N --m M --nbits B --rerank R --probes P,..]",
    )?;

    let t = Instant::now();
    let base = read_f32(&find(&dir, "base.")?)?;
    let query = read_f32(&find(&dir, "query.")?)?;
    let gt = read_i32(&find(&dir, "groundtruth.")?)?;
    let dim = base.cols;
    assert_eq!(query.cols, dim, "query and base dimensions differ");
    let nq = nq.unwrap_or(query.rows).min(query.rows).min(gt.rows);
    let metric = metric.unwrap_or_else(|| {
        let unit = base
            .data
            .chunks_exact(dim)
            .take(1000)
            .all(|x| (x.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-2);
        if unit {
            Metric::Cosine
        } else {
            Metric::L2
        }
    });
    let (dl, dm, db) = ivf::default_params(base.rows, dim);
    let mut params = IvfPqParams::new(lists.unwrap_or(dl), m.unwrap_or(dm), nbits.unwrap_or(db));
    if let Some(s) = seed {
        params.seed = s;
    }
    if let Some(v) = kiters {
        params.kmeans.max_iters = v;
    }
    if let Some(v) = kppc {
        params.kmeans.max_points_per_centroid = v;
    }
    if let Some(v) = pq_ppc {
        params.pq.points_per_codeword = v;
    }
    if let Some(v) = pq_tol {
        params.pq.tolerance = v;
    }
    if let Some(v) = pq_iters {
        params.pq.iters = v;
    }
    if let Some(v) = ktol {
        params.kmeans.tolerance = v;
    }
    if let Some(v) = kinit {
        params.kmeans.init_points_per_centroid = v;
    }
    ivf::validate_params(base.rows, dim, params.lists, params.m, params.nbits)?;
    println!(
        "dataset {}: {} × {dim} base, {nq} queries, metric {metric:?}, loaded in {:.2}s; {} threads",
        dir.display(),
        base.rows,
        t.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );

    let train_rows = sample.unwrap_or(base.rows).min(base.rows);
    let t = Instant::now();
    // arrw-core's loops run in parallel only inside a pool (crate::par), as
    // a build's do in the server: train and encode in one of all cores.
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .map_err(|e| e.to_string())?;
    let model =
        pool.install(|| IvfPqModel::train(&base.data[..train_rows * dim], dim, metric, &params));
    let train_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let il = pool.install(|| InvertedLists::build(&model, &base.data));
    let encode_s = t.elapsed().as_secs_f64();
    let sizes: Vec<usize> = il.ids.iter().map(Vec::len).collect();
    let max = sizes.iter().max().copied().unwrap_or(0);
    let empty = sizes.iter().filter(|&&s| s == 0).count();
    println!(
        "lists={} m={} nbits={} → {} bytes/vector (raw {}); train {:.2}s on {train_rows} rows, encode {:.2}s; \
         list sizes: mean {:.0}, max {max}, empty {empty}",
        model.lists,
        model.pq.m,
        model.pq.nbits,
        model.code_size(),
        4 * dim,
        train_s,
        encode_s,
        base.rows as f64 / model.lists as f64,
    );

    println!(
        "{:>7} {:>7} {:>10} {:>10}",
        "rerank", "probes", "recall@10", "QPS(1 thr)"
    );
    for &rerank in &reranks {
        for &p in &probes {
            let t = Instant::now();
            let mut hits = 0usize;
            for qi in 0..nq {
                let q = &query.data[qi * dim..(qi + 1) * dim];
                let res = il.search(&model, q, 10, p, rerank, &base.data);
                let truth = &gt.data[qi * gt.cols..qi * gt.cols + 10];
                hits += res
                    .iter()
                    .filter(|(_, id)| truth.contains(&(*id as i32)))
                    .count();
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{:>7} {:>7} {:>10.4} {:>10.0}",
                rerank,
                p,
                hits as f64 / (nq * 10) as f64,
                nq as f64 / secs
            );
        }
    }
    Ok(())
}
