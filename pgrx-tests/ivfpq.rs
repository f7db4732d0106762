// In-server tests for ivfpq (included into the pg_test schema by src/lib.rs).
// Each runs in a transaction that is rolled back; tables go to `public`.

/// 4 well separated blobs of 100 rows in 8 dimensions (blob = id % 4).
fn ivfpq_blobs(table: &str) {
    Spi::run(&format!(
        "CREATE TABLE public.{table} (id int PRIMARY KEY, v vector(8));
         INSERT INTO public.{table}
         SELECT i, (SELECT array_agg(CASE WHEN j = i % 4 THEN 50 ELSE 0 END
                                     + ((i * 7 + j * 13) % 11) * 0.37 + (i / 4) * 0.001)
                    FROM generate_series(0, 7) j)::vector
         FROM generate_series(0, 399) i"
    ))
    .unwrap();
}

/// Ids the index and a sequential scan return for a query, as text arrays.
fn ivfpq_index_and_seq(table: &str, op: &str, q: &str, k: i32) -> (String, String) {
    let sql = format!(
        "SELECT array_agg(id)::text FROM (SELECT id FROM public.{table} ORDER BY v {op} '{q}' LIMIT {k}) s"
    );
    Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on").unwrap();
    let via_index = Spi::get_one::<String>(&sql).unwrap().unwrap_or_default();
    Spi::run("SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off").unwrap();
    let via_seq = Spi::get_one::<String>(&sql).unwrap().unwrap_or_default();
    Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on").unwrap();
    (via_index, via_seq)
}

/// The text of `EXPLAIN (COSTS OFF) sql`.
fn ivfpq_explain(sql: &str) -> String {
    Spi::connect(|client| {
        client
            .select(&format!("EXPLAIN (COSTS OFF) {sql}"), None, &[])
            .unwrap()
            .map(|row| row.get::<String>(1).unwrap().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[pg_test]
fn ivfpq_exact_with_every_list_probed() {
    ivfpq_blobs("ivfpq_t1");
    Spi::run(
        "CREATE INDEX ivfpq_t1_l2 ON public.ivfpq_t1 USING ivfpq (v vector_l2_ops)
           WITH (lists = 4, m = 4, nbits = 4);
         CREATE INDEX ivfpq_t1_ip ON public.ivfpq_t1 USING ivfpq (v vector_ip_ops)
           WITH (lists = 4, m = 2, nbits = 8);
         CREATE INDEX ivfpq_t1_cos ON public.ivfpq_t1 USING ivfpq (v vector_cosine_ops)
           WITH (lists = 4, m = 8, nbits = 4);
         SET LOCAL enable_seqscan = off; SET LOCAL ivfpq.probes = 4; SET LOCAL ivfpq.rerank = 100000",
    )
    .unwrap();
    let plan = ivfpq_explain("SELECT id FROM public.ivfpq_t1 ORDER BY v <-> '[1,2,3,4,5,6,7,8]' LIMIT 5");
    assert!(plan.contains("Index Scan using ivfpq_t1_l2"), "{plan}");
    let plan = ivfpq_explain("SELECT id FROM public.ivfpq_t1 ORDER BY v <#> '[1,2,3,4,5,6,7,8]' LIMIT 5");
    assert!(plan.contains("Index Scan using ivfpq_t1_ip"), "{plan}");
    let plan = ivfpq_explain("SELECT id FROM public.ivfpq_t1 ORDER BY v <=> '[1,2,3,4,5,6,7,8]' LIMIT 5");
    assert!(plan.contains("Index Scan using ivfpq_t1_cos"), "{plan}");
    for q in [
        "[50.1,0.3,1.7,2.2,0.9,3.1,1.3,0.2]",
        "[0.5,1.1,49.2,0.7,2.9,1.4,0.1,3.3]",
        "[25.3,24.9,1.1,0.4,2.6,1.9,0.8,1.2]",
    ] {
        for op in ["<->", "<#>", "<=>"] {
            let (idx, seq) = ivfpq_index_and_seq("ivfpq_t1", op, q, 10);
            assert_eq!(idx, seq, "{op} {q}");
            assert!(idx.matches(',').count() == 9, "{op} {q}: {idx}");
        }
    }
}

#[pg_test]
fn ivfpq_inserts_and_deletes_after_the_build() {
    ivfpq_blobs("ivfpq_t2");
    Spi::run(
        "CREATE INDEX ivfpq_t2_v ON public.ivfpq_t2 USING ivfpq (v) WITH (lists = 4, m = 4);
         SET LOCAL enable_seqscan = off; SET LOCAL ivfpq.probes = 4; SET LOCAL ivfpq.rerank = 100000;
         INSERT INTO public.ivfpq_t2 SELECT 1000 + i, ('[' || i || ',0,0,0,0,0,0,7.5]')::vector
           FROM generate_series(1, 1500) i;
         DELETE FROM public.ivfpq_t2 WHERE id % 3 = 0",
    )
    .unwrap();
    let n = Spi::get_one::<i64>(
        "SELECT count(*) FROM (SELECT id FROM public.ivfpq_t2 ORDER BY v <-> '[0,0,0,0,0,0,0,0]' LIMIT 100000) s",
    )
    .unwrap();
    let rows = Spi::get_one::<i64>("SELECT count(*) FROM public.ivfpq_t2").unwrap();
    assert_eq!(n, rows);
    let top = Spi::get_one::<String>(
        "SELECT array_agg(id)::text FROM (SELECT id FROM public.ivfpq_t2
           ORDER BY v <-> '[700.2,0,0,0,0,0,0,7.5]' LIMIT 3) s",
    )
    .unwrap();
    // 701 and 698 (ids 1701, 1698) are deleted.
    assert_eq!(top.as_deref(), Some("{1700,1699,1702}"));
    let ok = Spi::get_one::<bool>("SELECT arrw.ivfpq_check('public.ivfpq_t2_v')").unwrap();
    assert_eq!(ok, Some(true));
}

#[pg_test]
fn ivfpq_iterative_scan_fills_the_limit() {
    ivfpq_blobs("ivfpq_t3");
    Spi::run(
        "CREATE INDEX ON public.ivfpq_t3 USING ivfpq (v) WITH (lists = 4, m = 4);
         SET LOCAL enable_seqscan = off; SET LOCAL ivfpq.probes = 1",
    )
    .unwrap();
    // The query is in blob 0; only rows of blob 3 pass the filter.
    let sql = "SELECT count(*) FROM (SELECT id FROM public.ivfpq_t3 WHERE id % 4 = 3
                 ORDER BY v <-> '[50,0,0,0,0,0,0,0]' LIMIT 7) s";
    assert_eq!(Spi::get_one::<i64>(sql).unwrap(), Some(7));
    Spi::run("SET LOCAL ivfpq.iterative_scan = off").unwrap();
    assert_eq!(Spi::get_one::<i64>(sql).unwrap(), Some(0));
}

#[pg_test]
fn ivfpq_expression_index_reranks_from_the_expression() {
    // Re-ranking evaluates the index expression on each candidate row.
    Spi::run(
        "CREATE TABLE public.ivfpq_t4 (id int, v vector(2));
         INSERT INTO public.ivfpq_t4 SELECT i, ARRAY[i, 100 - i] FROM generate_series(1, 99) i;
         CREATE INDEX ON public.ivfpq_t4 USING ivfpq (l2_normalize(v) vector_ip_ops) WITH (lists = 3, m = 1);
         SET LOCAL enable_seqscan = off; SET LOCAL ivfpq.probes = 3",
    )
    .unwrap();
    let plan = ivfpq_explain("SELECT id FROM public.ivfpq_t4 ORDER BY l2_normalize(v) <#> '[1,0]' LIMIT 3");
    assert!(plan.contains("Index Scan using"), "{plan}");
    let top = Spi::get_one::<String>(
        "SELECT array_agg(id)::text FROM (SELECT id FROM public.ivfpq_t4
           ORDER BY l2_normalize(v) <#> '[1,0]' LIMIT 3) s",
    )
    .unwrap();
    assert_eq!(top.as_deref(), Some("{99,98,97}"));
}

#[pg_test]
fn ivfpq_empty_build_without_declared_dimension() {
    // Built on an empty table whose column has no declared dimension, the index
    // is untrained and must serve any dimension the rows then have.
    Spi::run(
        "CREATE TABLE public.ivfpq_t5 (id int, v vector);
         CREATE INDEX ivfpq_t5_v ON public.ivfpq_t5 USING ivfpq (v);
         INSERT INTO public.ivfpq_t5 VALUES (1, '[1,2,3]'), (2, '[4,5,6]'), (3, '[7,8,9]');
         SET LOCAL enable_seqscan = off",
    )
    .unwrap();
    let top = Spi::get_one::<String>(
        "SELECT array_agg(id)::text FROM (SELECT id FROM public.ivfpq_t5 ORDER BY v <-> '[4,5,7]' LIMIT 2) s",
    )
    .unwrap();
    assert_eq!(top.as_deref(), Some("{2,3}"));
    let trained = Spi::get_one::<bool>("SELECT trained FROM arrw.ivfpq_info('public.ivfpq_t5_v')").unwrap();
    assert_eq!(trained, Some(false));
}

#[pg_test]
fn ivfpq_null_vectors_are_not_indexed() {
    Spi::run(
        "CREATE TABLE public.ivfpq_t6 (id int, v vector(2));
         INSERT INTO public.ivfpq_t6 SELECT i, CASE WHEN i % 2 = 0 THEN NULL ELSE ARRAY[i, i]::vector END
           FROM generate_series(1, 40) i;
         CREATE INDEX ivfpq_t6_v ON public.ivfpq_t6 USING ivfpq (v) WITH (lists = 2, m = 1);
         INSERT INTO public.ivfpq_t6 VALUES (41, NULL), (43, '[43,43]');
         SET LOCAL enable_seqscan = off; SET LOCAL ivfpq.probes = 2",
    )
    .unwrap();
    let n = Spi::get_one::<i64>(
        "SELECT count(*) FROM (SELECT id FROM public.ivfpq_t6 ORDER BY v <-> '[0,0]' LIMIT 1000) s",
    )
    .unwrap();
    assert_eq!(n, Some(21));
    let rows = Spi::get_one::<i64>("SELECT rows FROM arrw.ivfpq_info('public.ivfpq_t6_v')").unwrap();
    assert_eq!(rows, Some(21));
}

#[pg_test(error = "nbits must be 4 or 8, not 5")]
fn ivfpq_rejects_nbits_5() {
    Spi::run(
        "CREATE TABLE public.ivfpq_t7 (v vector(4));
         CREATE INDEX ON public.ivfpq_t7 USING ivfpq (v) WITH (nbits = 5)",
    )
    .unwrap();
}

#[pg_test(error = "m must divide the number of dimensions (4); 3 does not (try 2)")]
fn ivfpq_rejects_m_not_dividing_dims() {
    Spi::run(
        "CREATE TABLE public.ivfpq_t8 (v vector(4));
         INSERT INTO public.ivfpq_t8 VALUES ('[1,2,3,4]');
         CREATE INDEX ON public.ivfpq_t8 USING ivfpq (v) WITH (m = 3)",
    )
    .unwrap();
}

#[pg_test(error = "different vector dimensions 4 and 3")]
fn ivfpq_rejects_query_of_other_dimension() {
    ivfpq_blobs_4d();
    Spi::run("SET LOCAL enable_seqscan = off").unwrap();
    Spi::run("SELECT id FROM public.ivfpq_t9 ORDER BY v <-> '[1,2,3]' LIMIT 1").unwrap();
}

fn ivfpq_blobs_4d() {
    Spi::run(
        "CREATE TABLE public.ivfpq_t9 (id int, v vector(4));
         INSERT INTO public.ivfpq_t9 SELECT i, ARRAY[i % 5, i % 7, i % 3, 1] FROM generate_series(1, 50) i;
         CREATE INDEX ON public.ivfpq_t9 USING ivfpq (v) WITH (lists = 2, m = 2)",
    )
    .unwrap();
}

/// The lists are trained on a random sample of the table, not on the rows it
/// happens to store first: with two clusters loaded one after the other, each
/// gets its own list. (Training on the reservoir's first rows put both centroids
/// in the first cluster: measured, lists of 1,659 and 2,341 rows.)
#[pg_test]
fn ivfpq_trains_on_a_random_sample_not_the_first_rows() {
    Spi::run(
        "CREATE TABLE public.ivfpq_t10 (id int, v vector(4));
         INSERT INTO public.ivfpq_t10
         SELECT i, ARRAY[CASE WHEN i < 2000 THEN 0 ELSE 100 END + (i % 7) * 0.1,
                         (i % 11) * 0.1, (i % 13) * 0.1, (i % 17) * 0.1]::vector
         FROM generate_series(0, 3999) i;
         SET LOCAL maintenance_work_mem = '256MB';
         CREATE INDEX ivfpq_t10_v ON public.ivfpq_t10 USING ivfpq (v) WITH (lists = 2)",
    )
    .unwrap();
    let (min, max) = Spi::get_two::<i64, i64>(
        "SELECT rows_min::int8, rows_max::int8 FROM arrw.ivfpq_info('public.ivfpq_t10_v')",
    )
    .unwrap();
    assert_eq!((min, max), (Some(2000), Some(2000)));
}

/// vector_maxsim_ops: documents of 1 to 4 rows of the blobs above; with every
/// list probed and every entry kept, `ORDER BY v @# q` through the index equals
/// the sequential scan's order, also for rows inserted in the same
/// transaction after the build (they are visible to the scan's snapshot).
#[pg_test]
fn ivfpq_maxsim_index_answers_like_a_sequential_scan() {
    ivfpq_blobs("ivfpq_ms_rows");
    Spi::run(
        "CREATE TABLE public.ivfpq_ms (id int PRIMARY KEY, v vector(8)[]);
         INSERT INTO public.ivfpq_ms
         SELECT d, array_agg(r.v ORDER BY r.id) FROM public.ivfpq_ms_rows r,
                LATERAL (SELECT r.id / 3 AS d) g
         WHERE r.id < 300 GROUP BY d;
         CREATE INDEX ivfpq_ms_v ON public.ivfpq_ms USING ivfpq (v vector_maxsim_ops)
           WITH (lists = 4, m = 8, nbits = 4);
         SET LOCAL enable_seqscan = off; SET LOCAL ivfpq.probes = 4;
         SET LOCAL ivfpq.maxsim_depth = 100000; SET LOCAL ivfpq.rerank = 100000",
    )
    .unwrap();
    let q = r#"{"[50,1,2,0,0,3,1,0]","[0,0,50,2,1,0,0,3]"}"#;
    let plan = ivfpq_explain(&format!(
        "SELECT id FROM public.ivfpq_ms ORDER BY v @# '{q}' LIMIT 5"
    ));
    assert!(plan.contains("Index Scan using ivfpq_ms_v"), "{plan}");
    let (via_index, via_seq) = ivfpq_index_and_seq("ivfpq_ms", "@#", q, 20);
    assert_eq!(via_index, via_seq);
    // Rows added after the build, in this transaction.
    Spi::run(
        "INSERT INTO public.ivfpq_ms
         SELECT 1000 + r.id, ARRAY[r.v] FROM public.ivfpq_ms_rows r WHERE r.id >= 300",
    )
    .unwrap();
    let (via_index, via_seq) = ivfpq_index_and_seq("ivfpq_ms", "@#", q, 30);
    assert_eq!(via_index, via_seq);
}

/// The TOAST reader's chunk size (arrw_core::toast::max_chunk_size, which the
/// re-rank's reader checks every chunk against) is PostgreSQL's: the first
/// chunk of a 768-d vector stored out of line holds exactly that many bytes.
#[pg_test]
fn ivfpq_toast_chunk_size_is_postgresql_s() {
    Spi::run(
        "CREATE TABLE public.toasty (v vector(768));
         ALTER TABLE public.toasty ALTER COLUMN v SET STORAGE EXTERNAL;
         INSERT INTO public.toasty SELECT array_fill(1.5::real, ARRAY[768])::vector",
    )
    .unwrap();
    let toast = Spi::get_one::<String>(
        "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'public.toasty'::regclass",
    )
    .unwrap()
    .unwrap();
    let first = Spi::get_one::<i32>(&format!(
        "SELECT octet_length(chunk_data) FROM {toast} WHERE chunk_seq = 0"
    ))
    .unwrap()
    .unwrap();
    assert_eq!(
        first as usize,
        arrw_core::toast::max_chunk_size(pgrx::pg_sys::BLCKSZ as usize)
    );
}
