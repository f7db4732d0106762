// In-server tests of the order in which ivfpq scans return rows (included into
// the pg_test schema by src/lib.rs). Each runs in a transaction rolled back.

/// With every list probed, rows of an index scan come in exact distance order
/// across re-rank batches: a WHERE clause that keeps one row in seven, or a
/// LIMIT far above `rerank`, returns what an exact sort returns. (Batch-by-batch
/// order returned the second batch's rows after the first's, however close.)
#[pg_test]
fn ivfpq_rows_come_in_exact_order_across_rerank_batches() {
    ivfpq_blobs("ord_t");
    Spi::run(
        "CREATE INDEX ord_t_l2 ON public.ord_t USING ivfpq (v vector_l2_ops)
           WITH (lists = 4, m = 4, nbits = 4);
         SET LOCAL ivfpq.probes = 4; SET LOCAL ivfpq.rerank = 10",
    )
    .unwrap();
    let q = "[3,1,4,1,5,9,2,6]";
    for (filter, k) in [("id % 7 = 0", 20), ("true", 120), ("id % 3 = 1", 40)] {
        let sql = format!(
            "SELECT array_agg(id)::text FROM (SELECT id FROM public.ord_t WHERE {filter} \
             ORDER BY v <-> '{q}' LIMIT {k}) s"
        );
        Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on").unwrap();
        let plan = ivfpq_explain(&format!(
            "SELECT id FROM public.ord_t WHERE {filter} ORDER BY v <-> '{q}' LIMIT {k}"
        ));
        assert!(plan.contains("Index Scan using ord_t_l2"), "{plan}");
        let via_index = Spi::get_one::<String>(&sql).unwrap().unwrap_or_default();
        Spi::run("SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off").unwrap();
        let exact = Spi::get_one::<String>(&sql).unwrap().unwrap_or_default();
        assert_eq!(via_index, exact, "WHERE {filter} LIMIT {k}");
    }
}
