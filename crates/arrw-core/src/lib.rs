//! arrw-core: the parts of arrw that need no PostgreSQL.
//!
//! Everything here is plain Rust over slices of `f32` and bytes, testable with
//! `cargo test -p arrw-core`. The extension crate (`arrw`, at the repository root)
//! is a thin layer that copies data out of Postgres pages and datums, calls into
//! this crate, and writes the results back.
//!
//! - [`distance`]: distance kernels (L2, inner product, cosine, L1) with runtime
//!   SIMD dispatch and a scalar reference they are tested against.
//! - [`text`]: pgvector-compatible text and binary formats of `vector`.
//! - [`half`]: half-precision floats and the text and binary formats of `halfvec`.
//! - [`kmeans`]: k-means for the coarse (inverted-list) quantizer.
//! - `halfpanels`: a half-precision copy of many centroids, for ranking lists.
//! - [`pq`]: product quantization: codebook training, encoding, lookup tables.
//! - `par`: parallel loops that use threads only inside a build's pool.
//! - [`fastscan`]: 4-bit codes in transposed blocks of 32, scored with byte shuffles.
//! - [`ivf`]: IVF-PQ search logic and parameter defaults.
//! - [`cdc_options`]: the change feed's plugin options (parser of untrusted text).
//! - [`cdc_json`]: the change feed's JSON escaping and validator (untrusted text).
//! - [`import`]: bulk_import's COPY row splitter and job-argument checks.
//! - [`sample`]: the build's reservoir sample and its training rows.
//! - [`buildmem`]: how an index build fits `maintenance_work_mem`.
//! - [`buildcache`]: a backend's cache of index models, one per index, least
//!   recently used dropped.
//! - [`calibrate`]: the index's default `probes`, measured while it is built.
//! - [`rerank`]: exact order across re-rank batches (filtered and deep scans).
//! - [`spill`]: a min-heap that keeps a bounded part in memory and the rest in
//!   sorted runs in a store (the rows a deep scan holds; the glue's store is a
//!   temporary file).
//! - [`stop`]: cooperative cancellation of training and encoding threads.
//! - [`layout`]: the ivfpq index's page layout and the checks applied to pages read.
//! - [`maxsim`]: MaxSim of multi-vector documents (`@#`).
//! - [`refine`]: a finer second code per row, kept on fine pages beside the data
//!   pages (format 3, docs/refine-design.md).
//! - [`bits`]: binary quantization and the Hamming and Jaccard distances of `bit`.
//! - [`walk`]: the batches a `batch_update` remembers while it walks a table.

pub mod avg;
pub mod bits;
pub mod buildcache;
pub mod buildmem;
pub mod calibrate;
pub mod cdc_json;
pub mod cdc_options;
pub mod distance;
pub mod fastscan;
pub mod half;
pub(crate) mod halfpanels;
pub mod import;
pub mod ivf;
pub mod kmeans;
pub mod layout;
pub mod maxsim;
pub mod page_delta;
pub(crate) mod par;
pub mod pq;
pub mod recent;
pub mod refine;
pub mod rerank;
pub mod sample;
pub mod spill;
pub mod stop;
pub mod text;
pub mod toast;
pub mod walk;
