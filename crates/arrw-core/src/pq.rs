//! Product quantization (PQ): codebook training, encoding, and the lookup tables of
//! asymmetric distance computation (ADC).
//!
//! A `dim`-dimensional vector is cut into `m` sub-vectors of `dsub = dim / m`
//! coordinates; each is replaced by the index of the nearest of `2^nbits` codewords
//! of its subspace. A code is `m` bytes for 8-bit codes, or `ceil(m / 2)` bytes for
//! 4-bit codes (two per byte: sub-quantizer `2i` in the low nibble of byte `i`,
//! `2i + 1` in the high nibble).
//!
//! Distances between an exact query and a code are sums of per-subspace terms, so a
//! query precomputes them once into an [`AdcTable`] and scoring a code is `code_size`
//! table lookups and additions ([`adc_scan`]). The table is always kept **per code
//! byte** (`[code_size][256]`): for 8-bit codes that is the per-subspace table itself,
//! for 4-bit codes entry `[i][b]` is the sum of the two nibbles' terms, so the hot loop
//! is the same and a 4-bit code costs half the lookups of an 8-bit one of the same `m`.
//!
//! Codebook layout: [`ProductQuantizer::codebooks`] is `[m][2^nbits][dsub]` row-major.
//!
//! The scan ([`adc_scan`]) is scalar: measured at ~0.23 ns per lookup (about one per
//! cycle, the limit of two loads per lookup) while the table fits the L1 cache (up to
//! ~32 code bytes × 1 kB), ~0.26 ns at 48 bytes and ~0.41 ns at 96 bytes, where the
//! table spills to L2. Interleaving the rows of one code instead of four codes, or
//! two codes × two rows, measured the same or slower.

use crate::kmeans::{self, Bias, KMeansParams, Panels, LANES};
use crate::par;
use crate::stop::Stop;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Training uses at most this many sample vectors per codeword (a seeded random
/// subsample beyond that): 64 × 256 = 16,384 residuals for 8-bit codes. Measured
/// (6 seeds, MiniLM, 64 sub-quantizers): 128 or 256 points per codeword changed
/// recall@10 by < 0.001 at the same iteration count, for 1.5× / 2.6× the training
/// CPU time; with re-ranking no difference at all.
pub const PQ_POINTS_PER_CODEWORD: usize = 64;

/// Lloyd iterations for each sub-codebook (stopping earlier when an iteration
/// improves inertia by less than 0.01%). 25 iterations on 16k points measured
/// slightly *worse* without re-ranking (over-fitting), 25 on 65k points (FAISS's
/// defaults) +0.002 recall@10 without re-ranking, nothing with it, for 4× the time.
pub const PQ_KMEANS_ITERS: usize = 12;

/// Training settings of [`ProductQuantizer::train_with`].
#[derive(Clone, Debug)]
pub struct PqTrainParams {
    /// Seed of all random choices.
    pub seed: u64,
    /// At most `2^nbits * points_per_codeword` training vectors are used.
    pub points_per_codeword: usize,
    /// Lloyd iterations per sub-codebook.
    pub iters: usize,
    /// Early stop when an iteration improves a sub-codebook's inertia by less than
    /// this fraction.
    pub tolerance: f64,
    /// Checked per sub-quantizer and inside its k-means: once requested, training
    /// returns early with meaningless codebooks, which the caller must discard.
    pub stop: Stop,
}

/// The k-means of sub-quantizer `j`: all of its training vectors, `iters`
/// iterations, its own seed.
fn sub_kmeans(params: &PqTrainParams, j: usize) -> KMeansParams {
    KMeansParams {
        max_iters: params.iters,
        max_points_per_centroid: 0,
        max_sample: 0,
        min_points_per_centroid: 0,
        seed: params
            .seed
            .wrapping_add(j as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
        init: kmeans::Init::KMeansPlusPlus,
        init_points_per_centroid: 16,
        tolerance: params.tolerance,
        stop: params.stop.clone(),
        spherical: false,
    }
}

impl Default for PqTrainParams {
    fn default() -> Self {
        PqTrainParams {
            seed: 0x7071,
            points_per_codeword: PQ_POINTS_PER_CODEWORD,
            iters: PQ_KMEANS_ITERS,
            tolerance: 1e-4,
            stop: Stop::never(),
        }
    }
}

/// A trained product quantizer. Construct with [`ProductQuantizer::train`] or
/// [`ProductQuantizer::new`]; the public fields are read-only in spirit (derived,
/// private lookup structures are built from them at construction).
#[derive(Clone, Debug)]
pub struct ProductQuantizer {
    /// Dimensions of the vectors encoded.
    pub dim: usize,
    /// Number of sub-quantizers; divides `dim`.
    pub m: usize,
    /// Bits per sub-quantizer code: 4 or 8.
    pub nbits: u32,
    /// `[m][2^nbits][dim / m]` codewords, row-major.
    pub codebooks: Vec<f32>,
    /// Each sub-codebook laid out for the blocked nearest-codeword kernel.
    panels: Vec<Panels>,
}

/// Per-query lookup table for ADC: `rows[i][b]` is the contribution of byte value
/// `b` at code byte `i`, and `bias` is added to every distance.
#[derive(Clone, Debug)]
pub struct AdcTable {
    /// One 256-entry row per code byte.
    pub rows: Vec<[f32; 256]>,
    /// Constant added to every estimated distance (e.g. `-q·c` of an inner-product
    /// list; 0 for L2).
    pub bias: f32,
}

impl AdcTable {
    /// A zero table for codes of `code_size` bytes.
    pub fn new(code_size: usize) -> Self {
        AdcTable {
            rows: vec![[0.0; 256]; code_size],
            bias: 0.0,
        }
    }

    /// Bytes per code this table scores.
    pub fn code_size(&self) -> usize {
        self.rows.len()
    }
}

impl ProductQuantizer {
    /// Wraps existing codebooks (`[m][2^nbits][dim/m]`).
    pub fn new(dim: usize, m: usize, nbits: u32, codebooks: Vec<f32>) -> Result<Self, String> {
        check_shape(dim, m, nbits)?;
        let ksub = 1usize << nbits;
        let dsub = dim / m;
        if codebooks.len() != m * ksub * dsub {
            return Err(format!(
                "codebooks have {} values, expected {} (m={m} × 2^{nbits} × {dsub})",
                codebooks.len(),
                m * ksub * dsub
            ));
        }
        let panels = codebooks
            .chunks_exact(ksub * dsub)
            .map(|cb| Panels::new(cb, dsub, Bias::HalfSquaredNorm))
            .collect();
        Ok(ProductQuantizer {
            dim,
            m,
            nbits,
            codebooks,
            panels,
        })
    }

    /// Trains `m` codebooks of `2^nbits` codewords on `data` (`n × dim`, row-major;
    /// in IVF-PQ these are residuals `x - centroid`). Sub-codebooks are trained in
    /// parallel, each by k-means on (a subsample of) its sub-vectors, and are
    /// deterministic for a fixed `seed`.
    ///
    /// With fewer than `2^nbits` distinct training vectors a sub-codebook has fewer
    /// real codewords; the remaining slots repeat real ones (encoding picks the lowest
    /// index on ties, so they are never used). With no data at all the codebooks are
    /// zero, and every code decodes to the zero residual.
    ///
    /// Panics if `m` does not divide `dim` or `nbits` is not 4 or 8 (see
    /// [`crate::ivf::validate_params`] for user-facing checks).
    pub fn train(data: &[f32], dim: usize, m: usize, nbits: u32, seed: u64) -> Self {
        Self::train_with(
            data,
            dim,
            m,
            nbits,
            &PqTrainParams {
                seed,
                ..PqTrainParams::default()
            },
        )
    }

    /// [`ProductQuantizer::train`] with explicit training settings.
    pub fn train_with(
        data: &[f32],
        dim: usize,
        m: usize,
        nbits: u32,
        params: &PqTrainParams,
    ) -> Self {
        let seed = params.seed;
        if let Err(e) = check_shape(dim, m, nbits) {
            panic!("{e}");
        }
        assert_eq!(data.len() % dim, 0);
        let n = data.len() / dim;
        let ksub = 1usize << nbits;
        let dsub = dim / m;

        // Subsample once for all subspaces.
        let limit = ksub.saturating_mul(params.points_per_codeword.max(1));
        let idx: Vec<usize> = if n > limit {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x7071_7375_6273_616d);
            let mut v = rand::seq::index::sample(&mut rng, n, limit).into_vec();
            v.sort_unstable();
            v
        } else {
            (0..n).collect()
        };

        let books: Vec<Vec<f32>> = par::range(0..m)
            .map(|j| {
                if params.stop.requested() {
                    return vec![0.0; ksub * dsub];
                }
                let mut sub = Vec::with_capacity(idx.len() * dsub);
                for &i in &idx {
                    sub.extend_from_slice(&data[i * dim + j * dsub..i * dim + (j + 1) * dsub]);
                }
                let mut cb = kmeans::train(&sub, dsub, ksub, &sub_kmeans(params, j));
                if cb.is_empty() {
                    cb = vec![0.0; dsub];
                }
                let real = cb.len() / dsub;
                for r in real..ksub {
                    let src = (r % real) * dsub;
                    cb.extend_from_within(src..src + dsub);
                }
                cb
            })
            .collect();
        let codebooks = books.concat();
        ProductQuantizer::new(dim, m, nbits, codebooks).expect("shape checked above")
    }

    /// The progress units [`ProductQuantizer::train_with`] reports through
    /// `params.stop` for `n` training vectors (see [`kmeans::planned_work`]).
    pub fn planned_work(n: usize, m: usize, nbits: u32, params: &PqTrainParams) -> u64 {
        let ksub = 1usize << nbits;
        let used = n.min(ksub.saturating_mul(params.points_per_codeword.max(1)));
        (0..m)
            .map(|j| kmeans::planned_work(used, ksub, &sub_kmeans(params, j)))
            .sum()
    }

    /// Coordinates per sub-quantizer.
    pub fn dsub(&self) -> usize {
        self.dim / self.m
    }

    /// Codewords per sub-quantizer (`2^nbits`).
    pub fn ksub(&self) -> usize {
        1 << self.nbits
    }

    /// Bytes per encoded vector.
    pub fn code_size(&self) -> usize {
        code_size(self.m, self.nbits)
    }

    /// Codeword `k` of sub-quantizer `j`.
    pub fn codeword(&self, j: usize, k: usize) -> &[f32] {
        let dsub = self.dsub();
        let start = (j * self.ksub() + k) * dsub;
        &self.codebooks[start..start + dsub]
    }

    /// Encodes one vector into `out` (`code_size()` bytes).
    pub fn encode(&self, x: &[f32], out: &mut [u8]) {
        assert_eq!(x.len(), self.dim);
        self.encode_many(x, out);
    }

    /// Encodes `n` contiguous vectors into `n` contiguous codes (single-threaded; see
    /// [`ProductQuantizer::encode_batch`] for the parallel version).
    pub fn encode_many(&self, xs: &[f32], out: &mut [u8]) {
        let cs = self.code_size();
        assert_eq!(xs.len() % self.dim, 0);
        let n = xs.len() / self.dim;
        assert_eq!(out.len(), n * cs);
        let dsub = self.dsub();
        out.fill(0);
        // Sub-quantizers of at most 16 codewords: a row at a time through
        // `encode_one`, which scores them all in one AVX2 loop: 0.35 µs a
        // row at m = 64 (128-d) against 0.92 for a batch through each panel's
        // `nearest` in turn, 0.60 against 1.77 at m = 128 (an ad-hoc timing
        // on 20,000 rows, same codes).
        let mut rows = xs.chunks_exact(self.dim).zip(out.chunks_exact_mut(cs));
        if let Some((x, o)) = rows.next() {
            if self.encode_one(x, o) {
                rows.for_each(|(x, o)| {
                    self.encode_one(x, o);
                });
                return;
            }
        }
        let mut idx = vec![0u32; n];
        let mut score = vec![0f32; n];
        for (j, pn) in self.panels.iter().enumerate() {
            pn.nearest(xs, self.dim, j * dsub, &mut idx, &mut score);
            for (code, &k) in out.chunks_exact_mut(cs).zip(&idx) {
                if self.nbits == 8 {
                    code[j] = k as u8;
                } else {
                    code[j / 2] |= (k as u8) << (4 * (j % 2));
                }
            }
        }
    }

    /// One vector (an insert) with sub-quantizers of at most 16 codewords
    /// (`kmeans::nearest_per_panel`). Writes into the zeroed `out` and returns
    /// true, or false (nothing written) for wider sub-quantizers.
    fn encode_one(&self, x: &[f32], out: &mut [u8]) -> bool {
        let eight = self.nbits == 8;
        kmeans::nearest_per_panel(&self.panels, x, self.dsub(), |j, k| {
            if eight {
                out[j] = k as u8;
            } else {
                out[j / 2] |= (k as u8) << (4 * (j % 2));
            }
        })
    }

    /// Encodes contiguous vectors, in parallel inside a pool (`crate::par`).
    pub fn encode_batch(&self, xs: &[f32]) -> Vec<u8> {
        let cs = self.code_size();
        let n = xs.len() / self.dim;
        let mut out = vec![0u8; n * cs];
        const CHUNK: usize = 256;
        par::chunks(xs, CHUNK * self.dim)
            .zip(par::chunks_mut(&mut out, CHUNK * cs))
            .for_each(|(x, o)| self.encode_many(x, o));
        out
    }

    /// Sub-quantizer `j`'s codeword index in `code`.
    #[inline]
    pub fn code_index(&self, code: &[u8], j: usize) -> usize {
        if self.nbits == 8 {
            code[j] as usize
        } else {
            ((code[j / 2] >> (4 * (j % 2))) & 0x0f) as usize
        }
    }

    /// Reconstructs the vector a code stands for.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        assert_eq!(out.len(), self.dim);
        let dsub = self.dsub();
        for j in 0..self.m {
            let k = self.code_index(code, j);
            out[j * dsub..(j + 1) * dsub].copy_from_slice(self.codeword(j, k));
        }
    }

    /// Fills `table` so that `adc_distance(table, code) = ||y - decode(code)||²`
    /// (plus `table.bias`, left unchanged).
    pub fn l2_table(&self, y: &[f32], table: &mut AdcTable) {
        self.fill_table(y, table, false);
    }

    /// Fills `table` so that `adc_distance(table, code) = -(y · decode(code))`
    /// (plus `table.bias`, left unchanged): negated so that smaller is better, as
    /// for L2.
    pub fn neg_ip_table(&self, y: &[f32], table: &mut AdcTable) {
        self.fill_table(y, table, true);
    }

    fn fill_table(&self, y: &[f32], table: &mut AdcTable, ip: bool) {
        assert_eq!(y.len(), self.dim);
        assert_eq!(table.rows.len(), self.code_size());
        let dsub = self.dsub();
        let ksub = self.ksub();
        let padded = ksub.div_ceil(LANES) * LANES;
        let mut sub = vec![0f32; padded.max(256)];
        let mut prev_low = [0f32; 16];
        for (j, pn) in self.panels.iter().enumerate() {
            let yj = &y[j * dsub..(j + 1) * dsub];
            let t = &mut sub[..padded];
            if ip {
                pn.dots(yj, t);
                t.iter_mut().for_each(|v| *v = -*v);
            } else {
                pn.squared_distances(yj, t);
            }
            if self.nbits == 8 {
                table.rows[j].copy_from_slice(&sub[..256]);
            } else if j % 2 == 0 {
                prev_low.copy_from_slice(&sub[..16]);
                if j + 1 == self.m {
                    // Odd m: the high nibble of the last byte is always 0 and unused.
                    let row = &mut table.rows[j / 2];
                    for (b, v) in row.iter_mut().enumerate() {
                        *v = prev_low[b & 15];
                    }
                }
            } else {
                let row = &mut table.rows[j / 2];
                for (b, v) in row.iter_mut().enumerate() {
                    *v = prev_low[b & 15] + sub[b >> 4];
                }
            }
        }
    }
}

/// Bytes of a code with `m` sub-quantizers of `nbits` bits.
pub fn code_size(m: usize, nbits: u32) -> usize {
    if nbits == 4 {
        m.div_ceil(2)
    } else {
        m
    }
}

fn check_shape(dim: usize, m: usize, nbits: u32) -> Result<(), String> {
    if dim == 0 {
        return Err("dimension must be positive".into());
    }
    if m == 0 || !dim.is_multiple_of(m) {
        return Err(format!(
            "m must divide the number of dimensions ({dim}); {m} does not"
        ));
    }
    if nbits != 4 && nbits != 8 {
        return Err(format!("nbits must be 4 or 8, not {nbits}"));
    }
    Ok(())
}

/// Estimated distance of one code: `table.bias + Σ_i table.rows[i][code[i]]`.
/// Summation order is the same as [`adc_scan`]'s, so both return identical values.
#[inline]
pub fn adc_distance(table: &AdcTable, code: &[u8]) -> f32 {
    let rows = &table.rows[..];
    assert_eq!(code.len(), rows.len());
    let mut s = table.bias;
    for (row, &b) in rows.iter().zip(code) {
        s += row[b as usize];
    }
    s
}

/// Estimated distances of `out.len()` contiguous codes of `code_size` bytes each.
///
/// The hot loop of every query. Four codes are scored at once: their sums are
/// independent dependency chains, so the CPU overlaps the lookups (a single chain is
/// bound by the latency of the float add). Indexing a `[f32; 256]` row with a byte
/// needs no bounds check.
pub fn adc_scan(table: &AdcTable, codes: &[u8], code_size: usize, out: &mut [f32]) {
    let rows = &table.rows[..];
    assert_eq!(code_size, rows.len(), "table is for another code size");
    assert_eq!(
        codes.len(),
        out.len() * code_size,
        "codes/out length mismatch"
    );
    if code_size == 0 {
        out.fill(table.bias);
        return;
    }
    let mut c4 = codes.chunks_exact(4 * code_size);
    let mut o4 = out.chunks_exact_mut(4);
    for (c, o) in (&mut c4).zip(&mut o4) {
        let (a, rest) = c.split_at(code_size);
        let (b, rest) = rest.split_at(code_size);
        let (cc, d) = rest.split_at(code_size);
        let (mut s0, mut s1, mut s2, mut s3) = (table.bias, table.bias, table.bias, table.bias);
        for ((((row, &x0), &x1), &x2), &x3) in rows.iter().zip(a).zip(b).zip(cc).zip(d) {
            s0 += row[x0 as usize];
            s1 += row[x1 as usize];
            s2 += row[x2 as usize];
            s3 += row[x3 as usize];
        }
        o[0] = s0;
        o[1] = s1;
        o[2] = s2;
        o[3] = s3;
    }
    for (c, o) in c4
        .remainder()
        .chunks_exact(code_size)
        .zip(o4.into_remainder())
    {
        *o = adc_distance(table, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance;
    use proptest::prelude::*;
    use rand::Rng;

    /// Structured data: a few Gaussian blobs in `dim` dimensions with correlated
    /// coordinates (low intrinsic dimension), like real embeddings.
    fn structured(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let latent = 4;
        let basis: Vec<f32> = (0..latent * dim)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        let mut v = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let z: Vec<f32> = (0..latent).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            for t in 0..dim {
                let mut s = 0.0;
                for (l, &zl) in z.iter().enumerate() {
                    s += zl * basis[l * dim + t];
                }
                v.push(s + 0.01 * rng.gen_range(-1.0f32..1.0));
            }
        }
        v
    }

    fn mse(pq: &ProductQuantizer, data: &[f32]) -> (f64, f64) {
        let dim = pq.dim;
        let codes = pq.encode_batch(data);
        let mut rec = vec![0f32; dim];
        let (mut err, mut energy) = (0f64, 0f64);
        for (x, c) in data
            .chunks_exact(dim)
            .zip(codes.chunks_exact(pq.code_size()))
        {
            pq.decode(c, &mut rec);
            err += f64::from(distance::l2_squared(x, &rec));
            energy += f64::from(distance::dot(x, x));
        }
        (err, energy)
    }

    #[test]
    fn encode_decode_error_is_small_on_structured_data() {
        let dim = 32;
        let data = structured(2500, dim, 5);
        // Measured: 0.032, 0.077, 0.18 (the sub-vectors live in a 4-d subspace, so
        // 256 codewords leave ~(1/256)^(2/4) of the variance).
        let mut prev = 0.0;
        for (m, nbits, max_rel) in [(8, 8, 0.05), (16, 4, 0.12), (8, 4, 0.25)] {
            let pq = ProductQuantizer::train(&data, dim, m, nbits, 1);
            let (err, energy) = mse(&pq, &data);
            let rel = err / energy;
            assert!(rel < max_rel, "m={m} nbits={nbits}: relative error {rel}");
            // Fewer bits per vector, more error.
            assert!(rel > prev);
            prev = rel;
        }
    }

    #[test]
    fn encoding_picks_the_nearest_codeword() {
        let dim = 12;
        let data = structured(600, dim, 9);
        let pq = ProductQuantizer::train(&data, dim, 3, 4, 2);
        let mut code = vec![0u8; pq.code_size()];
        for x in data.chunks_exact(dim).take(50) {
            pq.encode(x, &mut code);
            for j in 0..pq.m {
                let xj = &x[j * 4..(j + 1) * 4];
                let got = distance::l2_squared(xj, pq.codeword(j, pq.code_index(&code, j)));
                for k in 0..pq.ksub() {
                    assert!(got <= distance::l2_squared(xj, pq.codeword(j, k)) + 1e-5);
                }
            }
        }
    }

    #[test]
    fn one_row_encodes_as_a_batch_does() {
        // The insert path (one row: `encode_one` for 4-bit codes) against the
        // build's (blocks of rows); they may differ only on a near tie.
        for (dim, m, nbits) in [(12, 6, 4), (16, 16, 4), (12, 3, 8), (7, 7, 4)] {
            let data = structured(400, dim, 4);
            let pq = ProductQuantizer::train(&data, dim, m, nbits, 3);
            let cs = pq.code_size();
            let mut batch = vec![0u8; 400 * cs];
            pq.encode_many(&data, &mut batch);
            let mut one = vec![0u8; cs];
            let dsub = dim / m;
            for (x, want) in data.chunks_exact(dim).zip(batch.chunks_exact(cs)) {
                pq.encode(x, &mut one);
                for j in 0..m {
                    let (a, b) = (pq.code_index(&one, j), pq.code_index(want, j));
                    if a != b {
                        let xj = &x[j * dsub..(j + 1) * dsub];
                        let (da, db) = (
                            distance::l2_squared(xj, pq.codeword(j, a)),
                            distance::l2_squared(xj, pq.codeword(j, b)),
                        );
                        assert!(
                            (da - db).abs() <= 1e-4 * (1.0 + db),
                            "dim {dim} m {m}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tiny_and_empty_training_sets() {
        let pq = ProductQuantizer::train(&[], 8, 4, 8, 0);
        assert_eq!(pq.codebooks.len(), 4 * 256 * 2);
        assert!(pq.codebooks.iter().all(|&v| v == 0.0));
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let pq = ProductQuantizer::train(&data, 8, 4, 8, 0);
        let mut code = [0u8; 4];
        pq.encode(&data, &mut code);
        let mut rec = [0f32; 8];
        pq.decode(&code, &mut rec);
        assert_eq!(rec, data);
        assert_eq!(code, [0, 0, 0, 0]);
    }

    #[test]
    fn new_rejects_bad_shapes() {
        assert!(ProductQuantizer::new(10, 3, 8, vec![]).is_err());
        assert!(ProductQuantizer::new(12, 3, 6, vec![]).is_err());
        assert!(ProductQuantizer::new(12, 3, 8, vec![0.0; 5]).is_err());
        let e = ProductQuantizer::new(384, 5, 8, vec![]).unwrap_err();
        assert_eq!(
            e,
            "m must divide the number of dimensions (384); 5 does not"
        );
        assert!(ProductQuantizer::new(12, 3, 4, vec![0.0; 3 * 16 * 4]).is_ok());
    }

    fn trained(dim: usize, m: usize, nbits: u32, seed: u64) -> (ProductQuantizer, Vec<f32>) {
        let data = structured(700, dim, seed);
        (ProductQuantizer::train(&data, dim, m, nbits, seed), data)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// ADC equals the exact distance to the reconstructed vector, for both tables,
        /// both code widths, even and odd m.
        #[test]
        fn adc_equals_exact_distance_to_reconstruction(
            seed in 0u64..1000,
            shape in prop::sample::select(vec![(8usize, 4usize, 8u32), (8, 4, 4), (9, 3, 4), (6, 6, 8), (10, 5, 4)]),
            qs in prop::collection::vec(-2.0f32..2.0, 10),
        ) {
            let (dim, m, nbits) = shape;
            let (pq, data) = trained(dim, m, nbits, seed);
            let q = &qs[..dim];
            let mut l2 = AdcTable::new(pq.code_size());
            pq.l2_table(q, &mut l2);
            let mut ip = AdcTable::new(pq.code_size());
            pq.neg_ip_table(q, &mut ip);
            ip.bias = 0.5;
            let mut code = vec![0u8; pq.code_size()];
            let mut rec = vec![0f32; dim];
            for x in data.chunks_exact(dim).take(20) {
                pq.encode(x, &mut code);
                pq.decode(&code, &mut rec);
                let e = distance::l2_squared(q, &rec);
                let a = adc_distance(&l2, &code);
                prop_assert!((a - e).abs() <= 1e-4 * (1.0 + e), "l2 {} vs {}", a, e);
                let e = 0.5 - distance::dot(q, &rec);
                let a = adc_distance(&ip, &code);
                prop_assert!((a - e).abs() <= 1e-4 * (1.0 + e.abs()), "ip {} vs {}", a, e);
            }
        }

        /// The batch scan returns exactly the per-code values, for any count (so the
        /// 4-way unrolled body and the remainder both get exercised).
        #[test]
        fn adc_scan_equals_adc_distance(
            code_size in 1usize..40,
            n in 0usize..23,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut t = AdcTable::new(code_size);
            for row in &mut t.rows {
                for v in row.iter_mut() {
                    *v = rng.gen_range(-1.0..1.0);
                }
            }
            t.bias = rng.gen_range(-1.0..1.0);
            let codes: Vec<u8> = (0..n * code_size).map(|_| rng.gen()).collect();
            let mut out = vec![0f32; n];
            adc_scan(&t, &codes, code_size, &mut out);
            for (i, c) in codes.chunks_exact(code_size).enumerate() {
                prop_assert_eq!(out[i].to_bits(), adc_distance(&t, c).to_bits());
            }
        }
    }

    #[test]
    fn training_is_deterministic() {
        let data = structured(1000, 16, 4);
        let a = ProductQuantizer::train(&data, 16, 4, 8, 42);
        let b = ProductQuantizer::train(&data, 16, 4, 8, 42);
        assert_eq!(a.codebooks, b.codebooks);
        let c = ProductQuantizer::train(&data, 16, 4, 8, 43);
        assert_ne!(a.codebooks, c.codebooks);
        assert_eq!(a.encode_batch(&data), {
            let mut o = vec![0u8; 1000 * 4];
            a.encode_many(&data, &mut o);
            o
        });
    }
}
