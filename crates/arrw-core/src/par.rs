//! The one home of arrw-core's parallel loops: they run on a rayon pool only
//! when called from one, and on the calling thread otherwise.
//!
//! Only an index build computes on threads: the extension enters a private,
//! named pool (`arrw-compute-N`, src/parallel.rs) with `ThreadPool::install`
//! and calls arrw-core inside it. Everything else (a scan loading the model and
//! preparing its query, an insert encoding its rows, `ivfpq_info`, VACUUM)
//! calls the same functions on the backend's own thread. A rayon parallel
//! iterator run outside any pool starts rayon's *global* pool: one unnamed
//! thread per core, kept for the rest of the backend's life, which the
//! one-thread-per-backend server does not expect. So no code here calls
//! rayon's iterators directly: the loops are written with [`Par`], whose
//! terminal operations ([`Par::for_each`], [`Par::for_each_init`],
//! [`Par::collect`]) check [`rayon::current_thread_index`] (a thread-local
//! read that starts nothing) and, outside a pool, drive the same items in
//! index order on the calling thread. A test below fails if another file of
//! the crate names a rayon iterator.
//!
//! Results are the same either way: every loop here computes each item on its
//! own (writes to its own chunk, or its own slot of a collected `Vec`), and no
//! floating-point reduction is split by rayon, so the order items run in
//! changes nothing.

use rayon::iter::plumbing::{Producer, ProducerCallback};
use rayon::iter::{FromParallelIterator, IndexedParallelIterator};
use rayon::prelude::{IntoParallelIterator, ParallelSlice, ParallelSliceMut};
use std::marker::PhantomData;
use std::ops::Range;

/// An indexed loop that is run in parallel only inside a rayon pool.
#[must_use = "a loop does nothing until for_each or collect"]
pub(crate) struct Par<I>(I);

/// `s` in chunks of `n` elements (the last may be shorter).
pub(crate) fn chunks<T: Sync>(s: &[T], n: usize) -> Par<rayon::slice::Chunks<'_, T>> {
    Par(s.par_chunks(n))
}

/// `s` in mutable chunks of `n` elements (the last may be shorter).
pub(crate) fn chunks_mut<T: Send>(s: &mut [T], n: usize) -> Par<rayon::slice::ChunksMut<'_, T>> {
    Par(s.par_chunks_mut(n))
}

/// The elements of `s`.
pub(crate) fn iter<T: Sync>(s: &[T]) -> Par<rayon::slice::Iter<'_, T>> {
    Par(s.into_par_iter())
}

/// The integers of `r`.
pub(crate) fn range(r: Range<usize>) -> Par<rayon::range::Iter<usize>> {
    Par(r.into_par_iter())
}

/// True on a thread of a rayon pool: parallel loops then run on that pool.
/// Never starts a pool itself.
pub(crate) fn in_pool() -> bool {
    rayon::current_thread_index().is_some()
}

impl<I: IndexedParallelIterator> Par<I> {
    /// Pairs of this loop's and `other`'s items (as many as the shorter has).
    pub(crate) fn zip<J: IndexedParallelIterator>(
        self,
        other: Par<J>,
    ) -> Par<rayon::iter::Zip<I, J>> {
        Par(self.0.zip(other.0))
    }

    /// `(index, item)` pairs.
    pub(crate) fn enumerate(self) -> Par<rayon::iter::Enumerate<I>> {
        Par(self.0.enumerate())
    }

    /// `f` of every item.
    pub(crate) fn map<R, F>(self, f: F) -> Par<rayon::iter::Map<I, F>>
    where
        R: Send,
        F: Fn(I::Item) -> R + Sync + Send,
    {
        Par(self.0.map(f))
    }

    /// Calls `f` on every item.
    pub(crate) fn for_each<F>(self, f: F)
    where
        F: Fn(I::Item) + Sync + Send,
    {
        if in_pool() {
            self.0.for_each(f);
        } else {
            self.0.with_producer(Serially(f));
        }
    }

    /// Calls `f` on every item with a scratch value made by `init`: one per
    /// piece of work in a pool, one for all items on the calling thread (so
    /// `f` must not depend on what earlier items left in it).
    pub(crate) fn for_each_init<T, N, F>(self, init: N, f: F)
    where
        N: Fn() -> T + Sync + Send,
        F: Fn(&mut T, I::Item) + Sync + Send,
    {
        if in_pool() {
            self.0.for_each_init(init, f);
        } else {
            let mut scratch = init();
            self.0.with_producer(Serially(|item| f(&mut scratch, item)));
        }
    }

    /// The items, in index order, collected into `C` (a `Vec`, or a `Result`
    /// of one, which stops at an error).
    pub(crate) fn collect<C>(self) -> C
    where
        C: FromParallelIterator<I::Item> + FromIterator<I::Item>,
    {
        if in_pool() {
            self.0.collect()
        } else {
            self.0.with_producer(Collect(PhantomData))
        }
    }
}

/// Drives a producer's items through a closure on the calling thread: rayon's
/// producers are plain iterators once taken whole, and building them touches
/// no pool (only bridging them to consumers does).
struct Serially<F>(F);

impl<T, F: FnMut(T)> ProducerCallback<T> for Serially<F> {
    type Output = ();

    fn callback<P: Producer<Item = T>>(self, producer: P) {
        producer.into_iter().for_each(self.0);
    }
}

/// Collects a producer's items on the calling thread.
struct Collect<C>(PhantomData<C>);

impl<T, C: FromIterator<T>> ProducerCallback<T> for Collect<C> {
    type Output = C;

    fn callback<P: Producer<Item = T>>(self, producer: P) -> C {
        producer.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivf::{IvfPqModel, IvfPqParams, Metric};
    use crate::refine::ResidualSq;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn same_results_in_and_out_of_a_pool() {
        let data: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = || {
            let sums: Vec<f32> = chunks(&data, 7).map(|c| c.iter().sum::<f32>()).collect();
            let mut out = vec![0f32; data.len()];
            chunks_mut(&mut out, 7)
                .zip(chunks(&data, 7))
                .enumerate()
                .for_each_init(Vec::new, |tmp: &mut Vec<f32>, (i, (o, x))| {
                    tmp.clear();
                    tmp.extend(x.iter().map(|v| v * i as f32));
                    o.copy_from_slice(tmp);
                });
            let idx: Vec<usize> = range(3..40).zip(iter(&sums)).map(|(i, _)| i * 2).collect();
            let checked: Result<Vec<usize>, usize> = range(0..10)
                .map(|i| if i < 20 { Ok(i) } else { Err(i) })
                .collect();
            (sums, out, idx, checked)
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let inside = pool.install(|| {
            assert!(in_pool());
            run()
        });
        assert!(!in_pool());
        let outside = run();
        assert_eq!(inside, outside);
        assert_eq!(outside.2.len(), 37);
        assert_eq!(outside.3, Ok((0..10).collect()));
    }

    /// Threads of this process not named `arrw-test-*`.
    fn unnamed_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter(|t| {
                let comm = t.as_ref().unwrap().path().join("comm");
                !std::fs::read_to_string(comm)
                    .unwrap()
                    .starts_with("arrw-test-")
            })
            .count()
    }

    const CHILD: &str = "ARRW_PAR_CHILD";

    /// What a backend does with an index outside a build, for every metric and
    /// code width: load the model (from its bytes, as a scan, an insert and
    /// `ivfpq_info` do), prepare a query and its tables, encode inserted rows.
    /// None of it may start a thread. Runs in a child process of its own (the
    /// test binary again): rayon's global pool, once started, stays for the
    /// process's life, and other tests run beside this one.
    #[test]
    fn backend_paths_start_no_threads() {
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "par::tests::backend_paths_start_no_threads"])
                .args(["--test-threads=1", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
                "child failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let dim = 32;
        let mut rng = StdRng::seed_from_u64(5);
        let data: Vec<f32> = (0..3000 * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // The models are trained the way a build does, on a pool (named, so
        // its threads are told apart from rayon's global ones).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .thread_name(|i| format!("arrw-test-{i}"))
            .build()
            .unwrap();
        let mut stored = Vec::new();
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            for nbits in [4, 8] {
                let mut p = IvfPqParams::new(16, 8, nbits);
                p.refine_bits = 4;
                let m = pool.install(|| IvfPqModel::train(&data, dim, metric, &p));
                let fine = m.refine.as_ref().map(|sq| sq.to_bytes());
                stored.push((m.to_bytes(), fine));
            }
        }
        let before = unnamed_threads();
        for (bytes, fine) in &stored {
            let mut model = IvfPqModel::from_bytes(bytes).unwrap();
            if let Some(f) = fine {
                model
                    .set_refine(ResidualSq::from_bytes(f).unwrap())
                    .unwrap();
            }
            let q = &data[..dim];
            let _ = model.prepared_query(q);
            let _ = model.query_tables(q).into_parts();
            let _ = model.encode_batch_fine_serial(&data[..300 * dim]);
        }
        assert!(!in_pool());
        assert_eq!(
            unnamed_threads(),
            before,
            "a backend path started threads (rayon's global pool?)"
        );
    }

    /// Only this file calls rayon's iterators (see the module's comment): a
    /// `par_*` loop elsewhere would start rayon's global pool when a backend
    /// reaches it outside a build. Pools (`ThreadPoolBuilder`, in tests) are
    /// fine: entering one is how a build asks for threads.
    #[test]
    fn no_rayon_iterators_elsewhere() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let banned = [
            "rayon::prelude",
            "rayon::iter",
            "rayon::slice",
            "rayon::join",
            "rayon::scope",
            "rayon::spawn",
            "par_iter",
            "par_chunks",
            "into_par_iter",
            "par_bridge",
        ];
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("par.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if banned.iter().any(|b| code.contains(b)) {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "use crate::par instead:\n{}",
            found.join("\n")
        );
    }
}
