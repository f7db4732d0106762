// In-server tests for ivfpq's memory bounds (included into the pg_test schema by
// src/lib.rs). Each runs in a transaction that is rolled back.

/// An index built on an empty table ranks every row exactly, in passes of at
/// most work_mem / 32 rows: with 64kB (2,048 rows a pass, since at least 1,000)
/// a query for all 5,000 rows takes three passes, and must still return every
/// row once, in exact order, ties included.
#[pg_test]
fn ivfpq_untrained_scan_is_exact_across_bounded_passes() {
    Spi::run(
        "CREATE TABLE public.res_u (id int PRIMARY KEY, v vector(3));
         CREATE INDEX res_u_idx ON public.res_u USING ivfpq (v);
         INSERT INTO public.res_u
           SELECT i, ARRAY[(i * 37) % 101, (i * 11) % 7, 0]::vector FROM generate_series(1, 5000) i;
         SET LOCAL work_mem = '64kB'",
    )
    .unwrap();
    let sql = "SELECT array_agg(id ORDER BY n)::text FROM (
                 SELECT id, row_number() OVER () AS n FROM (
                   SELECT id FROM public.res_u ORDER BY v <-> '[50,3,0]' LIMIT 5000) s) r";
    Spi::run("SET LOCAL enable_seqscan = off").unwrap();
    let via_index = Spi::get_one::<String>(sql).unwrap().unwrap();
    // The same order by exact distance, ties broken by TID like the index does.
    let exact = Spi::get_one::<String>(
        "SELECT array_agg(id ORDER BY v <-> '[50,3,0]', ctid)::text FROM public.res_u",
    )
    .unwrap()
    .unwrap();
    let plan = ivfpq_explain("SELECT id FROM public.res_u ORDER BY v <-> '[50,3,0]' LIMIT 5000");
    assert!(plan.contains("Index Scan"), "{plan}");
    assert_eq!(via_index, exact);
}

/// maintenance_work_mem too small for the model fails at once, saying how much
/// is needed, before the table is read. (125 MB: 2,000 × 1,536 centroids three
/// times over, plus their half-precision copy for ranking lists, one
/// training row per list, and the stand-in queries a build at that budget
/// keeps; arrw_core::buildmem.) The table's pages could hold
/// 2,000 rows (the check counts no more lists than that), here NULL ones.
#[pg_test(error = "ivfpq: building this index needs at least 125 MB of maintenance_work_mem, which is 1 MB")]
fn ivfpq_build_refuses_a_model_larger_than_maintenance_work_mem() {
    Spi::run(
        "CREATE TABLE public.res_m (id int, v vector(1536));
         INSERT INTO public.res_m SELECT i, NULL FROM generate_series(1, 3000) i;
         SET LOCAL maintenance_work_mem = '1MB';
         CREATE INDEX ON public.res_m USING ivfpq (v) WITH (lists = 2000)",
    )
    .unwrap();
}
