//! arrw's k-means (`arrw_core::kmeans`, what an ivfpq build trains its lists with)
//! against linfa-clustering's `KMeans` on the same training sample of a real data
//! set: wall time and inertia at the same number of Lloyd iterations and seed.
//!
//! ```text
//! cargo run --release --manifest-path bench/kmeans-linfa/Cargo.toml -- DATASET_DIR K SAMPLE ITERS [--no-linfa] [--linfa-iters N]
//! ```
//!
//! `SAMPLE` rows are drawn uniformly (seeded) from the set's base rows, as the
//! build's reservoir sample is; both libraries get all of them (arrw's own
//! subsampling off) and run `ITERS` Lloyd iterations (tolerance 0; linfa refuses
//! 0, so 1e-30, which no step of real data falls below) from the same seeding:
//! arrw's greedy k-means++ (see the note at the linfa call for why) and, from
//! 2,048 centroids, arrw's two-level training, as a build does (linfa's run is
//! then flat, from arrw's two-level centroids after one iteration; pass
//! `--linfa-iters 1` there, a flat iteration is slow). Inertia is computed for both by the
//! same function (`arrw_core::kmeans::inertia`: squared L2 of every sample row
//! to its nearest centroid). Threads: both use rayon's pool (all cores).

#[path = "../../../crates/arrw-core/examples/common/npy.rs"]
mod npy;

use arrw_core::kmeans::{self, KMeansParams};
use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::{KMeans, KMeansInit};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: kmeans-linfa DATASET_DIR K SAMPLE ITERS [--no-linfa]");
        std::process::exit(2);
    }
    let dir = Path::new(&args[1]);
    let k: usize = args[2].parse().expect("K");
    let want: usize = args[3].parse().expect("SAMPLE");
    let iters: usize = args[4].parse().expect("ITERS");
    let linfa = !args.iter().any(|a| a == "--no-linfa");
    let seed = 0x6172_7277u64;

    let t = Instant::now();
    let base = npy::read_f32(&npy::find(dir, "base").expect("base")).expect("read base");
    let (n, dim) = (base.rows, base.cols);
    let take = want.min(n);
    let mut idx = sample(&mut StdRng::seed_from_u64(seed), n, take).into_vec();
    idx.sort_unstable();
    let mut data = Vec::with_capacity(take * dim);
    for i in idx {
        data.extend_from_slice(&base.data[i * dim..(i + 1) * dim]);
    }
    drop(base);
    println!(
        "{}: {take} of {n} rows x {dim} sampled in {:.1} s; k = {k}, {iters} iterations, {} threads",
        dir.display(),
        t.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );

    let params = KMeansParams {
        max_iters: iters,
        tolerance: 0.0,
        max_points_per_centroid: 0,
        max_sample: 0,
        seed,
        ..KMeansParams::default()
    };
    let t = Instant::now();
    let r = kmeans::train_detailed(&data, dim, k, &params);
    let secs = t.elapsed().as_secs_f64();
    let inertia = kmeans::inertia(&data, dim, &r.centroids);
    println!(
        "arrw   {:>8.1} s  inertia {:.6e}  ({} iterations{})",
        secs,
        inertia,
        r.iterations,
        if k >= kmeans::TWO_LEVEL_MIN {
            ", two-level"
        } else {
            ""
        }
    );

    if linfa {
        // linfa's own k-means++ (`KMeansInit::KMeansPlusPlus`) recomputes every
        // point's distance to every centroid chosen so far for each new one,
        // O(n k² d): at k = 1,000 on 65,536 rows it had not finished after 20
        // minutes. So linfa starts from arrw's centroids after one iteration
        // (same seed, same k-means++) and runs the remaining iterations: both
        // then did `ITERS` Lloyd steps from the same seeding.
        let linfa_iters = flag(&args, "--linfa-iters").unwrap_or(iters.saturating_sub(1).max(1));
        let one = kmeans::train_detailed(
            &data,
            dim,
            k,
            &KMeansParams {
                max_iters: 1,
                ..params.clone()
            },
        );
        let init =
            Array2::from_shape_vec((one.centroids.len() / dim, dim), one.centroids).expect("shape");
        let x = Array2::from_shape_vec((take, dim), data.clone()).expect("shape");
        let ds = DatasetBase::from(x);
        let t = Instant::now();
        let model = KMeans::params_with_rng(init.nrows(), Xoshiro256Plus::seed_from_u64(seed))
            .n_runs(1)
            .max_n_iterations(linfa_iters as u64)
            .tolerance(1e-30)
            .init_method(KMeansInit::Precomputed(init))
            .fit(&ds)
            .expect("linfa fit");
        let secs = t.elapsed().as_secs_f64();
        let c: Vec<f32> = model.centroids().iter().copied().collect();
        let inertia = kmeans::inertia(&data, dim, &c);
        println!(
            "linfa  {secs:>8.1} s  inertia {inertia:.6e}  ({linfa_iters} iterations, flat, from arrw's centroids after 1: {:.1} s an iteration)",
            secs / linfa_iters as f64
        );
    }
}

fn flag(args: &[String], name: &str) -> Option<usize> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}
