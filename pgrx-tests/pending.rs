// In-server tests of a transaction's pending index entries (src/ivfpq/pending.rs),
// included into the pg_test schema by src/lib.rs. Each test runs in one
// transaction that is rolled back, so what they show is what that
// transaction itself sees; commits, prepares and crashes are tested with real
// servers in tests/ivfpq.rs.

/// Entries the index holds (every list walked), as `arrw.ivfpq_info` reports.
fn pending_index_rows(index: &str) -> i64 {
    Spi::get_one::<i64>(&format!("SELECT rows FROM arrw.ivfpq_info('{index}')"))
        .unwrap()
        .unwrap()
}

/// `INSERT` of rows `first + 1 ..= first + n` into `public.table`: 8-d vectors
/// `[i,0,0,0,0,0,0,first/1000]`.
fn pending_insert(table: &str, first: i32, n: i32) -> String {
    format!(
        "INSERT INTO public.{table} SELECT {first} + i, ('[' || i || ',0,0,0,0,0,0,{}]')::vector
           FROM generate_series(1, {n}) i",
        first / 1000
    )
}

/// Rows an index scan over every list returns.
fn pending_scan_rows(table: &str) -> i64 {
    Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL ivfpq.probes = 4; SET LOCAL ivfpq.rerank = 100000")
        .unwrap();
    Spi::get_one::<i64>(&format!(
        "SELECT count(*) FROM (SELECT id FROM public.{table} ORDER BY v <-> '[0,0,0,0,0,0,0,0]' LIMIT 1000000) s"
    ))
    .unwrap()
    .unwrap()
}

/// Rows inserted after the build are found by the same transaction's later
/// scans and counted by `ivfpq_info`, whether their entries waited for the
/// scan or were written when they filled `work_mem` mid-statement.
#[pg_test]
fn ivfpq_pending_rows_are_seen_by_their_own_transaction() {
    ivfpq_blobs("pend_t1");
    Spi::run(
        "CREATE INDEX pend_t1_v ON public.pend_t1 USING ivfpq (v) WITH (lists = 4, m = 4);
         SET LOCAL work_mem = '64kB';
         INSERT INTO public.pend_t1 SELECT 1000 + i, ('[' || i % 97 || ',1,2,3,4,5,6,' || i % 13 || ']')::vector
           FROM generate_series(1, 5000) i;
         RESET work_mem",
    )
    .unwrap();
    assert_eq!(pending_scan_rows("pend_t1"), 5400);
    Spi::run(&pending_insert("pend_t1", 9000, 7))
    .unwrap();
    assert_eq!(pending_index_rows("public.pend_t1_v"), 5407);
    assert_eq!(pending_scan_rows("pend_t1"), 5407);
    let ok = Spi::get_one::<bool>("SELECT arrw.ivfpq_check('public.pend_t1_v')").unwrap();
    assert_eq!(ok, Some(true));
}

/// A rolled-back subtransaction's entries are dropped before they reach the
/// pages (VACUUM could hand its rows' TIDs to new rows); a committed one's
/// stay, even when a later sibling rolls back, and so do the entries made
/// before the subtransaction began.
#[pg_test]
fn ivfpq_pending_entries_of_a_rolled_back_subtransaction_are_dropped() {
    ivfpq_blobs("pend_t2");
    Spi::run(&format!(
        "CREATE INDEX pend_t2_v ON public.pend_t2 USING ivfpq (v) WITH (lists = 4, m = 4);
         {};
         DO $$
         BEGIN
           BEGIN
             {};
           EXCEPTION WHEN others THEN NULL;
           END;
           BEGIN
             {};
             RAISE EXCEPTION 'roll back the 3000s';
           EXCEPTION WHEN raise_exception THEN NULL;
           END;
         END $$",
        pending_insert("pend_t2", 1000, 100),
        pending_insert("pend_t2", 2000, 10),
        pending_insert("pend_t2", 3000, 50)
    ))
    .unwrap();
    assert_eq!(pending_index_rows("public.pend_t2_v"), 510);
    assert_eq!(pending_scan_rows("pend_t2"), 510);
}

/// TRUNCATE and REINDEX in the transaction that has pending entries: the
/// entries reach the old pages first (the utility hook), so the new index
/// holds exactly the table's rows, no entry lost and none twice.
#[pg_test]
fn ivfpq_pending_entries_survive_truncate_and_reindex() {
    ivfpq_blobs("pend_t3");
    Spi::run(&format!(
        "CREATE INDEX pend_t3_v ON public.pend_t3 USING ivfpq (v) WITH (lists = 4, m = 4);
         {};
         REINDEX INDEX public.pend_t3_v",
        pending_insert("pend_t3", 1000, 100)
    ))
    .unwrap();
    assert_eq!(pending_index_rows("public.pend_t3_v"), 500);
    Spi::run(&format!(
        "{};
         TRUNCATE public.pend_t3;
         {}",
        pending_insert("pend_t3", 2000, 30),
        pending_insert("pend_t3", 3000, 20)
    ))
    .unwrap();
    assert_eq!(pending_index_rows("public.pend_t3_v"), 20);
    assert_eq!(pending_scan_rows("pend_t3"), 20);
}

/// From a statement with `ON CONFLICT` on (directly, or in a `WITH`), the
/// transaction writes each entry as it comes: a speculative row that met a
/// conflict is dead to everyone at once, and VACUUM may free its TID before
/// the transaction ends (src/ivfpq/pending.rs). Before it, entries wait.
#[pg_test]
fn ivfpq_entries_are_written_at_once_after_on_conflict() {
    ivfpq_blobs("pend_t4");
    Spi::run(&format!(
        "CREATE INDEX pend_t4_v ON public.pend_t4 USING ivfpq (v) WITH (lists = 4, m = 4);
         {}",
        pending_insert("pend_t4", 1000, 10)
    ))
    .unwrap();
    assert!(crate::ivfpq::pending::any(), "a plain INSERT's entries wait");
    Spi::run(&format!(
        "WITH n AS ({} ON CONFLICT (id) DO NOTHING RETURNING id)
         SELECT count(*) FROM n",
        pending_insert("pend_t4", 2000, 10)
    ))
    .unwrap();
    assert!(!crate::ivfpq::pending::any(), "written with the ON CONFLICT rows");
    Spi::run(&pending_insert("pend_t4", 3000, 10))
    .unwrap();
    assert!(!crate::ivfpq::pending::any(), "and every later one in the transaction");
    assert_eq!(pending_index_rows("public.pend_t4_v"), 430);
}
