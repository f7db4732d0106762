//! Throughput of the distance kernels at every instruction-set level this CPU
//! supports, next to the machine's streaming memory bandwidth.
//!
//! Run with `cargo run --release -p arrw-core --example kernel_bench`.
//!
//! Two working sets per dimension:
//! - **L1**: a query and a few vectors totalling at most 16 KiB, so every load
//!   hits L1 and the figure shows the kernel's compute limit;
//! - **DRAM**: 256 MiB of vectors (far beyond the last-level cache), each
//!   compared once per pass against one query, which is what an exhaustive
//!   or IVF list scan does.
//!
//! GB/s counts the bytes of both operands of every call (2 × dim × 4), even
//! though in the DRAM case the query stays cached, so only half of those
//! bytes actually come from memory; `norm_squared_f64` has one operand.
//! Compare the DRAM column with the measured single-thread read bandwidth
//! divided by two to see whether a kernel is memory-bound.
//!
//! Then the ranking of lists (`IvfPqModel::list_distances`, every centroid
//! against one query) at the model sizes of 10M-row tables, from the `f32`
//! centroids and from their half-precision copy (`arrw_core::halfpanels`,
//! used from 1 MB of centroids). Its time does not depend on the values (no
//! branch looks at them), so the centroids are filler.

use arrw_core::distance::{Isa, Kernels};
use std::hint::black_box;
use std::time::{Duration, Instant};

const DIMS: [usize; 3] = [128, 384, 1536];
const L1_BYTES: usize = 16 << 10;
const DRAM_BYTES: usize = 256 << 20;
const BANDWIDTH_BYTES: usize = 1 << 30;
const MIN_TIME: Duration = Duration::from_millis(200);

/// Deterministic filler data in [-1, 1) without pulling in an RNG.
fn fill(v: &mut [f32], seed: u64) {
    let mut s = seed | 1;
    for x in v {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *x = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
    }
}

/// Runs `pass` (which returns the number of calls it made) until at least
/// `MIN_TIME` has elapsed, at least `min_passes` times, and returns the best
/// calls-per-second of any single pass.
fn best_rate(min_passes: usize, mut pass: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut best = 0.0f64;
    let mut passes = 0;
    while passes < min_passes || start.elapsed() < MIN_TIME {
        let t = Instant::now();
        let calls = pass();
        let secs = t.elapsed().as_secs_f64();
        best = best.max(calls as f64 / secs);
        passes += 1;
    }
    best
}

/// Single-threaded streaming read bandwidth: sum a 1 GiB buffer of u64 (the
/// integer sum vectorizes, so the loop is limited by memory, not adds).
fn memory_bandwidth() -> f64 {
    let mut buf = vec![0u64; BANDWIDTH_BYTES / 8];
    // Touch every page first so the timing excludes page faults.
    for (i, x) in buf.iter_mut().enumerate() {
        *x = i as u64;
    }
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let sum = black_box(&buf)
            .iter()
            .fold(0u64, |acc, &x| acc.wrapping_add(x));
        let secs = t.elapsed().as_secs_f64();
        black_box(sum);
        best = best.max(BANDWIDTH_BYTES as f64 / secs / 1e9);
    }
    best
}

fn main() {
    let levels: Vec<Kernels> = Isa::ALL.into_iter().filter_map(Kernels::for_isa).collect();
    println!(
        "ISA levels available: {}",
        levels
            .iter()
            .map(|k| k.isa.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "active (dispatched) level: {}",
        arrw_core::distance::active_isa().name()
    );

    let bw = memory_bandwidth();
    println!("memory read bandwidth (1 GiB streaming u64 sum, 1 thread): {bw:.1} GB/s\n");

    let mut big = vec![0f32; DRAM_BYTES / 4];
    fill(&mut big, 7);

    println!(
        "{:>5}  {:<21} {:<9} {:>9} {:>10} {:>11}",
        "dim", "kernel", "isa", "L1 GB/s", "DRAM GB/s", "L1 ns/call"
    );
    for dim in DIMS {
        let mut query = vec![0f32; dim];
        fill(&mut query, 1);
        let l1_vectors = (L1_BYTES / (dim * 4)).saturating_sub(1).max(1);
        let mut small = vec![0f32; l1_vectors * dim];
        fill(&mut small, 3);
        let data = Data {
            dim,
            query: &query,
            small: &small,
            big: &big[..(big.len() / dim) * dim],
        };

        for k in &levels {
            let isa = k.isa.name();
            let (l2, dot, l1, cos, norm) = (
                k.l2_squared,
                k.dot,
                k.l1,
                k.cosine_parts,
                k.norm_squared_f64,
            );
            data.row("l2_squared", isa, 2, l2);
            data.row("dot", isa, 2, dot);
            data.row("l1", isa, 2, l1);
            data.row("cosine_parts", isa, 2, |a, b| {
                let (x, y, z) = cos(a, b);
                x + y + z
            });
            data.row("norm_squared_f64", isa, 1, |_, b| norm(b) as f32);
        }
        // The public functions, through the cached dispatch: should match the
        // active level's rows above.
        let active = arrw_core::distance::active_isa().name();
        data.row(
            "l2_squared (dispatch)",
            active,
            2,
            arrw_core::distance::l2_squared,
        );
        println!();
    }
    rank_lists();
}

/// µs per `list_distances` call, f32 centroids against their half copy.
fn rank_lists() {
    use arrw_core::ivf::{IvfPqModel, Metric};
    use arrw_core::pq::ProductQuantizer;
    println!(
        "{:>6} {:>5} {:>9}  {:>8} {:>8}",
        "lists", "dim", "MB (f32)", "f32 µs", "half µs"
    );
    for (lists, dim) in [
        (1000, 384),
        (10_000, 128),
        (10_000, 384),
        (5_000, 768),
        (2_500, 1536),
    ] {
        let mut c = vec![0f32; lists * dim];
        fill(&mut c, 11);
        let m = dim / 2;
        let pq = ProductQuantizer::new(dim, m, 4, vec![0.0; m * 16 * 2]).expect("shape");
        let half = IvfPqModel::from_parts(Metric::L2, dim, c, pq).expect("shape");
        let mut full = half.clone();
        full.rank_lists_in_f32();
        let mut q = vec![0f32; dim];
        fill(&mut q, 5);
        let time = |m: &IvfPqModel| {
            let rate = best_rate(3, || {
                for _ in 0..200 {
                    black_box(m.list_distances(black_box(&q)));
                }
                200
            });
            1e6 / rate
        };
        println!(
            "{lists:>6} {dim:>5} {:>9.1}  {:>8.1} {:>8.1}",
            (lists * dim * 4) as f64 / 1e6,
            time(&full),
            time(&half)
        );
    }
}

/// The working sets for one dimension.
struct Data<'a> {
    dim: usize,
    query: &'a [f32],
    small: &'a [f32],
    big: &'a [f32],
}

impl Data<'_> {
    /// Times `f` on both working sets and prints one table row. Generic so
    /// each kernel is called exactly as the library calls it: one indirect
    /// call through a function pointer.
    fn row(&self, name: &str, isa: &str, operands: usize, f: impl Fn(&[f32], &[f32]) -> f32) {
        let dim = self.dim;
        let bytes_per_call = (operands * dim * 4) as f64;
        let l1_vectors = self.small.len() / dim;
        let reps = (200_000 / l1_vectors).max(1);
        let l1_rate = best_rate(3, || {
            let mut acc = 0.0f32;
            for _ in 0..reps {
                for v in self.small.chunks_exact(dim) {
                    acc += f(black_box(self.query), black_box(v));
                }
            }
            black_box(acc);
            reps * l1_vectors
        });
        let dram_rate = best_rate(2, || {
            let mut acc = 0.0f32;
            for v in self.big.chunks_exact(dim) {
                acc += f(black_box(self.query), black_box(v));
            }
            black_box(acc);
            self.big.len() / dim
        });
        println!(
            "{:>5}  {:<21} {:<9} {:>9.1} {:>10.1} {:>11.1}",
            dim,
            name,
            isa,
            l1_rate * bytes_per_call / 1e9,
            dram_rate * bytes_per_call / 1e9,
            1e9 / l1_rate
        );
    }
}
