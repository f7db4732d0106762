// In-server tests of the halfvec type and ivfpq on halfvec (included into the
// pg_test schema by src/lib.rs). Each runs in a rolled-back transaction.

#[pg_test]
fn halfvec_text_round_trip_rounds_to_half() {
    let s = Spi::get_one::<String>("SELECT '[1, 0.1 ,-3e-5, 65504]'::halfvec::text")
        .unwrap()
        .unwrap();
    assert_eq!(s, "[1,0.099975586,-2.9981136e-05,65504]");
}

#[pg_test]
fn halfvec_binary_is_pgvectors() {
    let b = Spi::get_one::<Vec<u8>>("SELECT halfvec_send('[1,-2]')")
        .unwrap()
        .unwrap();
    assert_eq!(b, vec![0, 2, 0, 0, 0x3c, 0, 0xc0, 0]);
}

#[pg_test]
#[should_panic(expected = "is out of range for type halfvec")]
fn halfvec_rejects_values_beyond_half_range() {
    Spi::run("SELECT '[65520]'::halfvec").unwrap();
}

#[pg_test]
fn halfvec_distances_equal_vector_distances() {
    let same = Spi::get_one::<bool>(
        "SELECT bool_and(a <-> b = a::vector <-> b::vector AND a <#> b = a::vector <#> b::vector
                     AND a <=> b = a::vector <=> b::vector AND a <+> b = a::vector <+> b::vector)
         FROM (SELECT (SELECT array_agg(sin(i * 7 + j) * 10) FROM generate_series(1, 37) j)::halfvec AS a,
                      (SELECT array_agg(cos(i * 3 + j) * 10) FROM generate_series(1, 37) j)::halfvec AS b
               FROM generate_series(1, 50) i) s",
    )
    .unwrap()
    .unwrap();
    assert!(same);
}

#[pg_test]
fn ivfpq_halfvec_exact_with_every_list_probed() {
    // Values exact in half precision (multiples of 1/32 below 64), distinct per
    // row (the (i / 4) term), so exact answers have no ties.
    Spi::run(
        "CREATE TABLE public.ivfpq_h1 (id int PRIMARY KEY, v vector(8), h halfvec(8));
         INSERT INTO public.ivfpq_h1 (id, v)
         SELECT i, (SELECT array_agg(CASE WHEN j = i % 4 THEN 50 ELSE 0 END + ((i * 7 + j * 13) % 11)
                                     + (i / 4) * 0.03125)
                    FROM generate_series(0, 7) j)::vector
         FROM generate_series(0, 399) i;
         UPDATE public.ivfpq_h1 SET h = v;
         CREATE INDEX ivfpq_h1_vl2 ON public.ivfpq_h1 USING ivfpq (v vector_l2_ops) WITH (lists = 4, m = 4, nbits = 4);
         CREATE INDEX ivfpq_h1_hl2 ON public.ivfpq_h1 USING ivfpq (h halfvec_l2_ops) WITH (lists = 4, m = 4, nbits = 4);
         CREATE INDEX ivfpq_h1_hip ON public.ivfpq_h1 USING ivfpq (h halfvec_ip_ops) WITH (lists = 4, m = 2, nbits = 8);
         CREATE INDEX ivfpq_h1_hcos ON public.ivfpq_h1 USING ivfpq (h halfvec_cosine_ops) WITH (lists = 4, m = 8, nbits = 4);
         SET LOCAL ivfpq.probes = 4; SET LOCAL ivfpq.rerank = 100000",
    )
    .unwrap();
    for (op, idx) in [("<->", "ivfpq_h1_hl2"), ("<#>", "ivfpq_h1_hip"), ("<=>", "ivfpq_h1_hcos")] {
        let q = "[50.5,0.25,1.75,2.125,0.875,3.125,1.25,0.125]";
        let sql = format!(
            "SELECT array_agg(id)::text FROM (SELECT id FROM public.ivfpq_h1 ORDER BY h {op} '{q}' LIMIT 10) s"
        );
        Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on").unwrap();
        let plan = Spi::connect(|c| {
            c.select(&format!("EXPLAIN (COSTS OFF) {sql}"), None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        });
        assert!(plan.contains(&format!("Index Scan using {idx}")), "{plan}");
        let via_index = Spi::get_one::<String>(&sql).unwrap().unwrap();
        Spi::run("SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off").unwrap();
        let via_seq = Spi::get_one::<String>(&sql).unwrap().unwrap();
        assert_eq!(via_index, via_seq, "{op}");
        assert_eq!(via_index.matches(',').count(), 9, "{op}: {via_index}");
    }
}
