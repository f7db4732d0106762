//! The ivfpq index against real servers: crash recovery, streaming replicas,
//! concurrent writers/readers/VACUUM, and unlogged tables.
//!
//! Every test makes its own small, deterministic data: Gaussian blobs around
//! random centres (a seeded SplitMix64 generator), so the k-means lists mean
//! something and lists fill unevenly, as with real embeddings.
//!
//! The invariant checked after every scenario: with every list probed and every
//! candidate re-ranked (`ivfpq.probes = lists`, `ivfpq.rerank = 100000`) the
//! index answers exactly, so
//! - an index scan with a LIMIT above the table size returns every row of the
//!   table once (no row lost, none duplicated), and
//! - a query for a row's own vector returns that row first.

use arrw_tests::{chown_postgres, exec, msg, Cluster, Rng};
use pgvector::Vector;
use postgres::Client;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Deterministic data

/// Gaussian blobs: `k` centres uniform in [-10, 10]^dim, points at N(0, 1) around them.
struct Blobs {
    centers: Vec<Vec<f32>>,
    rng: Rng,
}

impl Blobs {
    fn new(seed: u64, k: usize, dim: usize) -> Blobs {
        let mut rng = Rng(seed);
        let centers = (0..k)
            .map(|_| {
                (0..dim)
                    .map(|_| (rng.unit() * 20.0 - 10.0) as f32)
                    .collect()
            })
            .collect();
        Blobs { centers, rng }
    }

    /// A point of blob `b`.
    fn point_in(&mut self, b: usize) -> Vec<f32> {
        let c = self.centers[b].clone();
        c.iter().map(|&x| x + self.rng.gauss() as f32).collect()
    }

    /// A point of a random blob.
    fn point(&mut self) -> Vec<f32> {
        let b = self.rng.below(self.centers.len());
        self.point_in(b)
    }
}

/// The text form of a vector (Rust's shortest round-trip float formatting, so the
/// server stores exactly these f32 values).
fn lit(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

// ---------------------------------------------------------------------------
// SQL helpers

/// Progress lines (shown with `--nocapture`), with the time since the test began.
fn step(t0: Instant, what: &str) {
    eprintln!("[{:6.2}s] {what}", t0.elapsed().as_secs_f64());
}

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
        .get(0)
}

/// Inserts rows in multi-row INSERTs of 200.
fn insert_rows(c: &mut Client, table: &str, rows: &[(i32, Vec<f32>)]) {
    insert_values(c, table, rows, |v| format!("'{}'", lit(v)));
}

/// Inserts `(id, v)` rows, `v` written as SQL by `sql`, 200 to an INSERT.
fn insert_values<V>(c: &mut Client, table: &str, rows: &[(i32, V)], sql: impl Fn(&V) -> String) {
    for chunk in rows.chunks(200) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(id, v)| format!("({id},{})", sql(v)))
            .collect();
        exec(
            c,
            &format!("INSERT INTO {table} (id, v) VALUES {}", values.join(",")),
        );
    }
}

/// A connection to `cluster` with arrw and table `t (id int PRIMARY KEY, v
/// vector(dim))` holding rows `0..n`: points of `k` blobs drawn with `seed`,
/// returned with the blobs (to draw more points from the same stream).
fn blob_table(
    cluster: &Cluster,
    dim: usize,
    k: usize,
    seed: u64,
    n: i32,
) -> (Client, Blobs, Vec<(i32, Vec<f32>)>) {
    let mut c = cluster.connect();
    exec(
        &mut c,
        &format!("CREATE EXTENSION arrw; CREATE TABLE t (id int PRIMARY KEY, v vector({dim}))"),
    );
    let mut blobs = Blobs::new(seed, k, dim);
    let rows: Vec<(i32, Vec<f32>)> = (0..n).map(|i| (i, blobs.point())).collect();
    insert_rows(&mut c, "t", &rows);
    (c, blobs, rows)
}

/// Every id of `committed` is in the table after the crash.
fn assert_none_lost(in_table: &BTreeSet<i32>, committed: impl Iterator<Item = i32>) {
    let lost: Vec<i32> = committed
        .filter(|id| !in_table.contains(id))
        .take(20)
        .collect();
    assert!(
        lost.is_empty(),
        "committed rows lost in the crash: {lost:?}"
    );
}

/// Session settings under which the index answers exactly.
fn exact_settings(c: &mut Client, lists: usize) {
    exec(
        c,
        &format!(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; \
             SET ivfpq.probes = {lists}; SET ivfpq.rerank = 100000; \
             SET ivfpq.iterative_scan = on; SET ivfpq.max_probes = 0"
        ),
    );
}

/// Every id the index returns for a query with a LIMIT above the table size, in
/// the order returned; asserts the plan is an index scan on `index`.
fn ids_via_index(c: &mut Client, table: &str, index: &str, dim: usize) -> Vec<i32> {
    let q = lit(&vec![0.0; dim]);
    let sql = format!("SELECT id FROM {table} ORDER BY v <-> '{q}' LIMIT 10000000");
    let plan = explain(c, &sql);
    assert!(
        plan.contains(&format!("Index Scan using {index}")),
        "not an index scan:\n{plan}"
    );
    c.query(&sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn explain(c: &mut Client, sql: &str) -> String {
    c.query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {}", msg(&e)))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every id in the table (by a sequential scan).
fn ids_in_table(c: &mut Client, table: &str) -> BTreeSet<i32> {
    exec(c, "SET enable_seqscan = on; SET enable_indexscan = off");
    let ids = c
        .query(&format!("SELECT id FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    exec(c, "SET enable_seqscan = off; RESET enable_indexscan");
    ids
}

/// The index holds every row of the table exactly once (exact settings must be on).
fn assert_index_matches_table(c: &mut Client, table: &str, index: &str, dim: usize) -> usize {
    let via_index = ids_via_index(c, table, index, dim);
    let mut seen = BTreeSet::new();
    let dups: Vec<i32> = via_index
        .iter()
        .copied()
        .filter(|id| !seen.insert(*id))
        .collect();
    assert!(dups.is_empty(), "the index returns rows twice: {dups:?}");
    let in_table = ids_in_table(c, table);
    let missing: Vec<_> = in_table.difference(&seen).take(20).collect();
    let extra: Vec<_> = seen.difference(&in_table).take(20).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "index and table differ: {} rows in the table, {} via the index; \
         missing from the index (first 20): {missing:?}; extra: {extra:?}",
        in_table.len(),
        seen.len()
    );
    seen.len()
}

/// The first id returned by the index for each row's own vector is that row
/// (exact settings must be on).
fn assert_self_queries(c: &mut Client, table: &str, rows: &[(i32, Vec<f32>)]) {
    let sql = format!("SELECT id FROM {table} ORDER BY v <-> $1 LIMIT 1");
    let stmt = c.prepare(&sql).unwrap();
    for (id, v) in rows {
        let got: Vec<i32> = c
            .query(&stmt, &[&Vector::from(v.clone())])
            .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, vec![*id], "a query for row {id}'s own vector");
    }
}

/// `arrw.ivfpq_check`: walks every page of the index, ERROR on a broken invariant.
fn assert_index_check(c: &mut Client, index: &str) {
    let sql = format!("SELECT arrw.ivfpq_check('{index}')");
    let ok: bool = c
        .query_one(&sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
        .get(0);
    assert!(ok);
}

fn index_blocks(c: &mut Client, index: &str) -> i64 {
    count(
        c,
        &format!("SELECT pg_relation_size('{index}') / current_setting('block_size')::int"),
    )
}

/// Fails if the server log shows a crash or an assertion failure.
fn assert_log_clean(cluster: &Cluster) {
    let log = cluster.log();
    for bad in [
        "terminated by signal",
        "PANIC",
        "TRAP:",
        "was terminated by",
        "inconsistent page found",
    ] {
        assert!(
            !log.contains(bad),
            "server log contains {bad:?}:\n{}",
            log.lines()
                .filter(|l| l.contains(bad))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// What the crash test's writers insert: points of the same blobs as the table.
struct WriterData {
    centers_seed: u64,
    k: usize,
    dim: usize,
    points_seed: u64,
    first_id: i32,
}

/// Runs `n` threads that each insert single rows (one transaction each) into
/// `table`, kills the server (`immediate`) after `run_for`, and returns the rows
/// whose INSERT returned success, i.e. whose COMMIT completed.
fn crash_mid_stream(
    cluster: &Cluster,
    table: &str,
    n: usize,
    data: &WriterData,
    run_for: Duration,
) -> Vec<(i32, Vec<f32>)> {
    let committed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..n {
            let committed = &committed;
            s.spawn(move || {
                let mut c = cluster.connect();
                let mut blobs = Blobs::new(data.centers_seed, data.k, data.dim);
                // A distinct stream per (round, writer): equal vectors would
                // make "a row's own vector finds that row" ambiguous.
                blobs.rng = Rng(data.points_seed.wrapping_mul(0x2545_F491_4F6C_DD1D) + w as u64);
                let stmt = c
                    .prepare(&format!("INSERT INTO {table} (id, v) VALUES ($1, $2)"))
                    .unwrap();
                let mut mine = Vec::new();
                let mut id = data.first_id + (w as i32) * 1_000_000;
                // Until the server goes away under us.
                loop {
                    let v = blobs.point();
                    match c.execute(&stmt, &[&id, &Vector::from(v.clone())]) {
                        Ok(1) => mine.push((id, v)),
                        Ok(n) => panic!("INSERT returned {n}"),
                        Err(_) => break,
                    }
                    id += 1;
                }
                committed.lock().unwrap().extend(mine);
            });
        }
        std::thread::sleep(run_for);
        cluster.stop("immediate");
    });
    committed.into_inner().unwrap()
}

/// Settings of the servers whose WAL is replayed (crash recovery, replicas):
/// `wal_consistency_checking` makes every generic record carry the page as
/// the primary wrote it, and replay compare its own result with it (the
/// server stops with "inconsistent page found" on the first difference), so
/// the deltas `page::WriteSet` computes itself are checked byte for byte.
/// (Not for the MaxSim test: a page image per element's record made its
/// replica lag by minutes when tests share the cores; its records are the
/// same `WriteSet` ones.)
const WAL_CHECKED: &str = "fsync = off\nwal_consistency_checking = 'generic'";

// ---------------------------------------------------------------------------
// Crash recovery

#[test]
fn crash_recovery_keeps_every_committed_insert() {
    // Big codes (dim 256, m = 256, nbits = 4: 128-byte codes, 60 entries per
    // page) so that the lists grow new pages all the time while writers run.
    const DIM: usize = 256;
    const K: usize = 4;
    const LISTS: usize = 4;
    let t0 = Instant::now();
    let cluster = Cluster::start("ivfpq-crash", WAL_CHECKED);
    let (mut c, mut blobs, base) = blob_table(&cluster, DIM, K, 11, 400);
    step(t0, "rows loaded");
    exec(
        &mut c,
        &format!(
            "CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = {LISTS}, m = {DIM}, nbits = 4, refine = 4)"
        ),
    );
    step(t0, "index built");
    drop(c);

    // 1. Crash right after the build committed: the build's WAL alone must
    //    recreate the index.
    cluster.stop("immediate");
    cluster.start_server();
    let mut c = cluster.connect();
    exact_settings(&mut c, LISTS);
    assert_index_check(&mut c, "t_v");
    assert_eq!(assert_index_matches_table(&mut c, "t", "t_v", DIM), 400);
    assert_self_queries(&mut c, "t", &base[..50]);
    step(t0, "crash after the build: checked");
    drop(c);

    // 2. Writers commit single-row inserts; the server is killed in the middle
    //    of the stream, three times (1, 3, then 4 writers). With 60 entries per
    //    page one insert in ~15 extends a list, so the writers are splitting
    //    pages all the time and the kill can land inside a split. After each
    //    restart: the index passes arrw.ivfpq_check (chains, insert pages, no
    //    reachable garbage), returns every row of the table exactly once, and
    //    every committed row, in particular the last ones, is found by a query
    //    for its own vector.
    let mut committed_all: Vec<(i32, Vec<f32>)> = base.clone();
    for (round, (writers, run_ms)) in [(1usize, 700u64), (3, 800), (4, 800)]
        .into_iter()
        .enumerate()
    {
        let mut c = cluster.connect();
        let blocks_before = index_blocks(&mut c, "t_v");
        drop(c);
        let committed = crash_mid_stream(
            &cluster,
            "t",
            writers,
            &WriterData {
                centers_seed: 11,
                k: K,
                dim: DIM,
                points_seed: 100 + round as u64,
                first_id: 10_000_000 * (round as i32 + 1),
            },
            Duration::from_millis(run_ms),
        );
        assert!(
            committed.len() > 100,
            "round {round}: only {} inserts committed before the crash",
            committed.len()
        );
        step(
            t0,
            &format!("round {round}: crashed after {} commits", committed.len()),
        );
        cluster.start_server();
        step(t0, "restarted");
        let mut c = cluster.connect();
        exact_settings(&mut c, LISTS);
        assert_index_check(&mut c, "t_v");
        let n = assert_index_matches_table(&mut c, "t", "t_v", DIM);
        step(t0, "index matches table");
        let in_table = ids_in_table(&mut c, "t");
        exec(&mut c, "SET enable_seqscan = off");
        assert_none_lost(&in_table, committed.iter().map(|(id, _)| *id));
        // The rows committed last are the ones the crash could have hurt.
        let mut check: Vec<(i32, Vec<f32>)> = committed.iter().rev().take(30).cloned().collect();
        check.extend(
            committed
                .iter()
                .step_by((committed.len() / 30).max(1))
                .cloned(),
        );
        assert_self_queries(&mut c, "t", &check);
        let blocks_after = index_blocks(&mut c, "t_v");
        assert!(
            blocks_after > blocks_before,
            "round {round}: the lists grew no pages ({blocks_before} -> {blocks_after} blocks)"
        );
        committed_all.extend(committed);
        assert!(n >= committed_all.len());
        // The index keeps working after recovery: more inserts, then a query.
        let extra: Vec<(i32, Vec<f32>)> = (0..20)
            .map(|i| (90_000_000 + round as i32 * 1000 + i, blobs.point()))
            .collect();
        insert_rows(&mut c, "t", &extra);
        assert_self_queries(&mut c, "t", &extra);
        committed_all.extend(extra);
        step(t0, &format!("round {round}: checked"));
    }

    // 3. A crash in the middle of a VACUUM that is removing index entries; then
    //    new rows, which reuse the freed heap slots (a stale index entry would
    //    show up as a duplicate).
    let mut c = cluster.connect();
    exec(&mut c, "DELETE FROM t WHERE id % 3 = 0");
    committed_all.retain(|(id, _)| id % 3 != 0);
    let vacuum_pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let phase = std::thread::scope(|s| {
        let h = s.spawn(move || c.batch_execute("VACUUM t"));
        let mut m = cluster.connect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut phase = String::from("finished");
        while !h.is_finished() && Instant::now() < deadline {
            let p: Option<String> = m
                .query_opt(
                    "SELECT phase FROM pg_stat_progress_vacuum WHERE pid = $1",
                    &[&vacuum_pid],
                )
                .unwrap()
                .map(|r| r.get(0));
            if let Some(p) = p {
                if p == "vacuuming indexes" {
                    phase = p;
                    break;
                }
            }
        }
        drop(m);
        cluster.stop("immediate");
        let _ = h.join().unwrap();
        phase
    });
    step(t0, &format!("crashed during VACUUM (phase: {phase})"));
    cluster.start_server();
    let mut c = cluster.connect();
    exact_settings(&mut c, LISTS);
    assert_index_check(&mut c, "t_v");
    assert_index_matches_table(&mut c, "t", "t_v", DIM);
    exec(&mut c, "VACUUM t");
    let reuse: Vec<(i32, Vec<f32>)> = (0..300).map(|i| (95_000_000 + i, blobs.point())).collect();
    insert_rows(&mut c, "t", &reuse);
    exec(&mut c, "SET enable_seqscan = off");
    assert_index_check(&mut c, "t_v");
    assert_index_matches_table(&mut c, "t", "t_v", DIM);
    assert_self_queries(&mut c, "t", &reuse[..30]);
    committed_all.extend(reuse);
    drop(c);
    step(t0, "VACUUM crash checked");

    // 4. A crash in the middle of a CREATE INDEX: the index never existed, and
    //    the table can be indexed again.
    let mut c = cluster.connect();
    exec(&mut c, "DROP INDEX t_v");
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let builder = std::thread::scope(|s| {
        let h = s.spawn(move || {
            c.batch_execute(&format!(
                "SET maintenance_work_mem = '64MB'; \
                 CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = 16, m = {DIM}, nbits = 4, refine = 4)"
            ))
        });
        // Wait until the build is running, then crash.
        let mut m = cluster.connect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let active: i64 = m
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%CREATE INDEX%'",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            if active > 0 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(30));
        drop(m);
        cluster.stop("immediate");
        h.join().unwrap()
    });
    let _ = builder; // it either finished before the crash or lost its connection
    step(t0, "crashed during CREATE INDEX");
    cluster.start_server();
    let mut c = cluster.connect();
    let existing = count(
        &mut c,
        "SELECT count(*) FROM pg_class WHERE relname = 't_v'",
    );
    step(
        t0,
        if existing == 0 {
            "the crash interrupted the build: no index"
        } else {
            "the build had committed before the crash"
        },
    );
    if existing == 0 {
        exec(
            &mut c,
            &format!(
                "CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = 16, m = {DIM}, nbits = 4, refine = 4)"
            ),
        );
    }
    exact_settings(&mut c, 16);
    assert_index_check(&mut c, "t_v");
    let n = assert_index_matches_table(&mut c, "t", "t_v", DIM);
    assert!(n >= committed_all.len());
    let sample: Vec<(i32, Vec<f32>)> = committed_all
        .iter()
        .step_by((committed_all.len() / 60).max(1))
        .cloned()
        .collect();
    assert_self_queries(&mut c, "t", &sample);
    step(t0, "rebuilt index checked");
    assert_log_clean(&cluster);
}

// ---------------------------------------------------------------------------
// Streaming replica

/// Transactions of many rows keep their entries in the backend until they
/// commit (src/ivfpq/pending.rs), then write them a page at a time. Writers
/// commit transactions of 150 rows (in three statements, one of them in a
/// savepoint that is rolled back) while the server is killed, and one
/// transaction is left prepared across the crash: after recovery every
/// committed row is in the index exactly once, no rolled-back row is, and
/// the prepared one's rows are found once it is committed.
#[test]
fn crash_keeps_every_row_of_committed_and_prepared_batches() {
    const DIM: usize = 64;
    const K: usize = 4;
    const LISTS: usize = 4;
    let t0 = Instant::now();
    let cluster = Cluster::start(
        "ivfpq-batches",
        &format!("{WAL_CHECKED}\nmax_prepared_transactions = 4"),
    );
    let (mut c, mut blobs, _) = blob_table(&cluster, DIM, K, 17, 400);
    // m = 32 (16-byte codes) and a 4-bit refine code (32 bytes): a data page
    // takes ~300 rows and its refine codes fill several fine pages, so one
    // batch's rows span pages of both kinds.
    exec(
        &mut c,
        &format!(
            "CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = {LISTS}, m = 32, refine = 4)"
        ),
    );
    // Prepared before the writers start, committed after the crash.
    let prepared: Vec<(i32, Vec<f32>)> = (0..120).map(|i| (50_000 + i, blobs.point())).collect();
    exec(&mut c, "BEGIN");
    insert_rows(&mut c, "t", &prepared);
    exec(&mut c, "PREPARE TRANSACTION 'batch'");
    drop(c);
    step(t0, "built; one transaction prepared");

    let committed = Mutex::new(Vec::new());
    let rolled_back = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..2i32 {
            let (committed, rolled_back) = (&committed, &rolled_back);
            let cluster = &cluster;
            s.spawn(move || {
                let mut c = cluster.connect();
                let mut blobs = Blobs::new(17, K, DIM);
                blobs.rng = Rng(900 + w as u64);
                let mut id = 1_000_000 * (w + 1);
                let mut mine = Vec::new();
                let mut gone = Vec::new();
                let mut batch = |n: usize, id: &mut i32| -> Vec<(i32, Vec<f32>)> {
                    let rows: Vec<(i32, Vec<f32>)> =
                        (0..n).map(|i| (*id + i as i32, blobs.point())).collect();
                    *id += n as i32;
                    rows
                };
                let sql = |rows: &[(i32, Vec<f32>)]| {
                    let values: Vec<String> = rows
                        .iter()
                        .map(|(id, v)| format!("({id},'{}')", lit(v)))
                        .collect();
                    format!("INSERT INTO t (id, v) VALUES {}", values.join(","))
                };
                // Until the server goes away under us.
                loop {
                    let a = batch(100, &mut id);
                    let b = batch(30, &mut id);
                    let d = batch(50, &mut id);
                    let script = format!(
                        "BEGIN; {}; SAVEPOINT s; {}; ROLLBACK TO SAVEPOINT s; {}; COMMIT",
                        sql(&a),
                        sql(&b),
                        sql(&d)
                    );
                    if c.batch_execute(&script).is_err() {
                        break;
                    }
                    mine.extend(a);
                    mine.extend(d);
                    gone.extend(b.into_iter().map(|(id, _)| id));
                }
                committed.lock().unwrap().extend(mine);
                rolled_back.lock().unwrap().extend(gone);
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        cluster.stop("immediate");
    });
    let committed = committed.into_inner().unwrap();
    let rolled_back = rolled_back.into_inner().unwrap();
    assert!(
        committed.len() >= 300,
        "only {} rows committed before the crash",
        committed.len()
    );
    step(
        t0,
        &format!("crashed after {} committed rows", committed.len()),
    );
    cluster.start_server();
    let mut c = cluster.connect();
    exec(&mut c, "COMMIT PREPARED 'batch'");
    exact_settings(&mut c, LISTS);
    assert_index_check(&mut c, "t_v");
    let n = assert_index_matches_table(&mut c, "t", "t_v", DIM);
    let in_table = ids_in_table(&mut c, "t");
    assert_none_lost(
        &in_table,
        committed.iter().chain(&prepared).map(|(id, _)| *id),
    );
    let back: Vec<&i32> = rolled_back
        .iter()
        .filter(|id| in_table.contains(id))
        .take(20)
        .collect();
    assert!(back.is_empty(), "rolled-back rows in the table: {back:?}");
    // Every committed row counted once: the base, the prepared and the writers'.
    assert!(n >= 400 + prepared.len() + committed.len());
    exec(&mut c, "SET enable_seqscan = off");
    let mut check: Vec<(i32, Vec<f32>)> = committed.iter().rev().take(40).cloned().collect();
    check.extend(prepared.iter().take(20).cloned());
    assert_self_queries(&mut c, "t", &check);
    drop(c);
    assert_log_clean(&cluster);
    step(t0, "checked");
}

/// `(id, distance)` pairs a query returns.
fn knn(c: &mut Client, q: &[f32], k: i64) -> Vec<(i32, f64)> {
    c.query(
        "SELECT id, v <-> $1 FROM t ORDER BY v <-> $1 LIMIT $2",
        &[&Vector::from(q.to_vec()), &k],
    )
    .unwrap_or_else(|e| panic!("knn: {}", msg(&e)))
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn replica_answers_like_the_primary() {
    const DIM: usize = 32;
    const K: usize = 8;
    const LISTS: usize = 8;
    let t0 = Instant::now();
    let primary = Cluster::start("ivfpq-primary", WAL_CHECKED);
    let replica = primary.start_replica("ivfpq-standby");
    step(t0, "primary and standby up");
    let mut p = primary.connect();
    exec(
        &mut p,
        &format!("CREATE EXTENSION arrw; CREATE TABLE t (id int PRIMARY KEY, v vector({DIM}))"),
    );
    let mut blobs = Blobs::new(22, K, DIM);
    let mut next_id = 0;
    let mut batch = |blobs: &mut Blobs, n: usize| -> Vec<(i32, Vec<f32>)> {
        let rows = (0..n)
            .map(|i| (next_id + i as i32, blobs.point()))
            .collect();
        next_id += n as i32;
        rows
    };
    insert_rows(&mut p, "t", &batch(&mut blobs, 3000));
    // 16-byte codes: 370 entries per page, so each list already spans pages.
    exec(
        &mut p,
        &format!("CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = {LISTS}, m = 16, nbits = 8, refine = 4)"),
    );
    step(t0, "index built");
    let blocks_built = index_blocks(&mut p, "t_v");
    insert_rows(&mut p, "t", &batch(&mut blobs, 2000));
    exec(&mut p, "DELETE FROM t WHERE id % 3 = 0");
    exec(&mut p, "VACUUM t");
    insert_rows(&mut p, "t", &batch(&mut blobs, 3000));
    let blocks_now = index_blocks(&mut p, "t_v");
    assert!(
        blocks_now > blocks_built,
        "inserts added no pages ({blocks_built} -> {blocks_now})"
    );
    // An unlogged table's index: the standby has no file for it.
    exec(
        &mut p,
        "CREATE UNLOGGED TABLE ul (v vector(2)); INSERT INTO ul VALUES ('[1,2]');
         CREATE INDEX ul_v ON ul USING ivfpq (v)",
    );
    // An index built on an empty column of no declared dimensions: the first
    // row's dimensions go to its meta page in a WAL record of their own, and
    // hold queries to them once the row is gone (no row to compare with).
    exec(
        &mut p,
        "CREATE TABLE fr (v vector); CREATE INDEX fr_v ON fr USING ivfpq (v);
         INSERT INTO fr VALUES ('[1,2,3]'); DELETE FROM fr",
    );
    step(t0, "changes made");
    primary.wait_for_replay(&replica);
    step(t0, "replayed");

    let mut r = replica.connect();
    assert!(r
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get::<_, bool>(0));
    // The index functions refuse it as PostgreSQL refuses queries on it
    // (they read a missing file: 58P01).
    for sql in [
        "SELECT arrw.ivfpq_check('ul_v')",
        "SELECT * FROM arrw.ivfpq_info('ul_v')",
        "SELECT arrw.ivfpq_default_probes('ul_v')",
        "SELECT * FROM ul",
    ] {
        let e = r.batch_execute(sql).expect_err(sql);
        assert_eq!(
            msg(&e),
            "0A000: cannot access temporary or unlogged relations during recovery",
            "{sql}"
        );
    }
    let e = r
        .batch_execute("SET enable_seqscan = off; SELECT * FROM fr ORDER BY v <-> '[1,2]' LIMIT 1")
        .expect_err("a query of other dimensions than the replayed first row's");
    assert_eq!(msg(&e), "22000: different vector dimensions 3 and 2");
    r.batch_execute("RESET enable_seqscan").unwrap();
    let mut qrng = Blobs::new(22, K, DIM); // same centres, fresh points
    qrng.rng = Rng(0xfeed);
    let queries: Vec<Vec<f32>> = (0..50).map(|_| qrng.point()).collect();
    let check_same = |p: &mut Client, r: &mut Client, label: &str| {
        let plan = explain(
            r,
            &format!(
                "SELECT id FROM t ORDER BY v <-> '{}' LIMIT 10",
                lit(&queries[0])
            ),
        );
        assert!(
            plan.contains("Index Scan using t_v"),
            "{label}: standby plan:\n{plan}"
        );
        for (i, q) in queries.iter().enumerate() {
            let a = knn(p, q, 10);
            let b = knn(r, q, 10);
            assert_eq!(a.len(), 10, "{label}: query {i} on the primary");
            assert_eq!(a, b, "{label}: query {i}: primary and standby differ");
        }
    };
    // Approximate settings (a few lists, short re-rank): the same bytes must
    // give the same approximate answers.
    for c in [&mut p, &mut r] {
        exec(
            c,
            "SET ivfpq.probes = 2; SET ivfpq.rerank = 20; SET enable_seqscan = off",
        );
    }
    check_same(&mut p, &mut r, "probes=2");
    step(t0, "approximate answers compared");
    // Exact settings: the same, and equal to a sequential scan's answers.
    for c in [&mut p, &mut r] {
        exact_settings(c, LISTS);
    }
    check_same(&mut p, &mut r, "exact");
    step(t0, "exact answers compared");
    assert_index_matches_table(&mut r, "t", "t_v", DIM);
    assert_index_check(&mut r, "t_v");
    exec(
        &mut p,
        "SET enable_indexscan = off; SET enable_seqscan = on",
    );
    exec(&mut r, "SET ivfpq.probes = 8");
    for q in queries.iter().take(10) {
        let seq = knn(&mut p, q, 10);
        let idx = knn(&mut r, q, 10);
        assert_eq!(
            seq.iter().map(|x| x.0).collect::<Vec<_>>(),
            idx.iter().map(|x| x.0).collect::<Vec<_>>(),
            "standby index scan vs primary sequential scan"
        );
    }
    exact_settings(&mut p, LISTS);
    exec(&mut p, "RESET enable_indexscan");

    step(t0, "compared with sequential scans");

    // Standby queries while the standby replays inserts (new pages), deletes
    // and a VACUUM (page compaction): never an error, always a full sorted answer.
    let stop = AtomicBool::new(false);
    let reader_queries = std::thread::scope(|s| {
        let h = {
            let (stop, replica, queries) = (&stop, &replica, &queries);
            s.spawn(move || {
                let mut r = replica.connect();
                exact_settings(&mut r, LISTS);
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let got = knn(&mut r, &queries[n % queries.len()], 10);
                    assert_eq!(got.len(), 10, "standby query during replay");
                    assert!(
                        got.windows(2).all(|w| w[0].1 <= w[1].1),
                        "standby answer not sorted: {got:?}"
                    );
                    n += 1;
                }
                n
            })
        };
        for _ in 0..4 {
            insert_rows(&mut p, "t", &batch(&mut blobs, 500));
            exec(&mut p, "DELETE FROM t WHERE id % 7 = 0");
            exec(&mut p, "VACUUM t");
        }
        primary.wait_for_replay(&replica);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap()
    });
    step(
        t0,
        &format!("{reader_queries} standby queries during replay"),
    );
    check_same(&mut p, &mut r, "after concurrent replay");
    assert_index_matches_table(&mut r, "t", "t_v", DIM);

    // A REINDEX on the primary: the standby, which has the old model cached,
    // must use the new one.
    exec(&mut p, "REINDEX INDEX t_v");
    insert_rows(&mut p, "t", &batch(&mut blobs, 500));
    primary.wait_for_replay(&replica);
    check_same(&mut p, &mut r, "after REINDEX");
    step(t0, "answers after REINDEX compared");
    assert_index_matches_table(&mut r, "t", "t_v", DIM);
    assert_index_check(&mut r, "t_v");
    assert_index_check(&mut p, "t_v");
    assert_log_clean(&primary);
    assert_log_clean(&replica);
}

// ---------------------------------------------------------------------------
// Concurrency

#[test]
fn concurrent_writers_readers_and_vacuum() {
    const DIM: usize = 16;
    const K: usize = 4;
    const LISTS: usize = 4;
    let t0 = Instant::now();
    let cluster = Cluster::start("ivfpq-concurrency", "fsync = off\nautovacuum = off");
    let (mut c, _, stable) = blob_table(&cluster, DIM, K, 33, 2000);
    // 16-byte codes: 370 per page; the writers add pages to every list.
    exec(
        &mut c,
        &format!("CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = {LISTS}, m = 16, nbits = 8)"),
    );
    let blocks_before = index_blocks(&mut c, "t_v");
    step(t0, "index built");

    let stop = AtomicBool::new(false);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let stats: Mutex<HashMap<&'static str, usize>> = Mutex::new(HashMap::new());
    let run_for = Duration::from_secs(6);
    std::thread::scope(|s| {
        // 4 writers, all into the same lists (points of blobs 0 and 1 only).
        for w in 0..4i32 {
            let (stop, errors, stats, cluster) = (&stop, &errors, &stats, &cluster);
            s.spawn(move || {
                let mut c = cluster.connect();
                let mut b = Blobs::new(33, K, DIM);
                b.rng = Rng(1000 + w as u64);
                let stmt = c.prepare("INSERT INTO t (id, v) VALUES ($1, $2)").unwrap();
                let mut id = 1_000_000 * (w + 1);
                let mut n = 0;
                // At most ~3000 rows each (paced), so that the exact checks
                // afterwards, which re-rank every row, stay fast.
                while !stop.load(Ordering::Relaxed) && n < 3000 {
                    std::thread::sleep(Duration::from_micros(1500));
                    let v = b.point_in(id as usize % 2);
                    if let Err(e) = c.execute(&stmt, &[&id, &Vector::from(v)]) {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("writer {w}: {}", msg(&e)));
                        break;
                    }
                    id += 1;
                    n += 1;
                }
                *stats.lock().unwrap().entry("inserts").or_default() += n;
            });
        }
        // 2 readers: approximate k-NN queries (sorted, full LIMIT), and exact
        // queries for stable rows' own vectors (must find them every time).
        for rd in 0..2 {
            let (stop, errors, stats, cluster, stable) =
                (&stop, &errors, &stats, &cluster, &stable);
            s.spawn(move || {
                let mut c = cluster.connect();
                exec(&mut c, "SET enable_seqscan = off");
                let mut rng = Rng(2000 + rd);
                let mut qb = Blobs::new(33, K, DIM);
                qb.rng = Rng(3000 + rd);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let res: Result<(), String> = (|| {
                        exec(&mut c, "SET ivfpq.probes = 2; SET ivfpq.rerank = 50");
                        let q = qb.point_in(n % K);
                        let got = knn(&mut c, &q, 10);
                        if got.len() != 10 {
                            return Err(format!("k-NN returned {} rows", got.len()));
                        }
                        if got.windows(2).any(|w| w[0].1 > w[1].1) {
                            return Err(format!("k-NN not sorted: {got:?}"));
                        }
                        exact_settings(&mut c, LISTS);
                        let (id, v) = &stable[rng.below(stable.len())];
                        let got = knn(&mut c, v, 1);
                        if got.first().map(|x| x.0) != Some(*id) {
                            return Err(format!("stable row {id} not found: {got:?}"));
                        }
                        Ok(())
                    })();
                    if let Err(e) = res {
                        errors.lock().unwrap().push(format!("reader {rd}: {e}"));
                        break;
                    }
                    n += 1;
                }
                *stats.lock().unwrap().entry("queries").or_default() += n;
            });
        }
        // DELETE some of the writers' rows, then VACUUM, in a loop.
        {
            let (stop, errors, stats, cluster) = (&stop, &errors, &stats, &cluster);
            s.spawn(move || {
                let mut c = cluster.connect();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = c
                        .batch_execute(
                            "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE id >= 1000000 \
                             AND id % 3 = 0 LIMIT 200)",
                        )
                        .and_then(|_| c.batch_execute("VACUUM t"));
                    if let Err(e) = r {
                        errors.lock().unwrap().push(format!("vacuum: {}", msg(&e)));
                        break;
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                *stats.lock().unwrap().entry("vacuums").or_default() += n;
            });
        }
        std::thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
    });
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "errors while running concurrently: {errors:#?}"
    );
    let stats = stats.into_inner().unwrap();
    step(t0, &format!("concurrent phase done: {stats:?}"));
    assert!(stats["inserts"] > 500, "{stats:?}");
    assert!(stats["queries"] > 20, "{stats:?}");
    assert!(stats["vacuums"] > 3, "{stats:?}");

    // Afterwards: every surviving row, and only those, through the index.
    exec(&mut c, "VACUUM t");
    exact_settings(&mut c, LISTS);
    assert!(index_blocks(&mut c, "t_v") > blocks_before);
    assert_index_check(&mut c, "t_v");
    assert_index_matches_table(&mut c, "t", "t_v", DIM);
    step(t0, "index matches table");
    let rows: Vec<(i32, Vec<f32>)> = c
        .query(
            "SELECT id, v FROM (SELECT id, v, row_number() OVER (ORDER BY id) AS n FROM t) s \
             WHERE n % (SELECT count(*) / 100 FROM t) = 0",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get::<_, Vector>(1).to_vec()))
        .collect();
    assert!(rows.len() > 50);
    assert_self_queries(&mut c, "t", &rows);
    step(t0, "self queries done");
    assert_log_clean(&cluster);
}

// ---------------------------------------------------------------------------
// Unlogged tables

#[test]
fn unlogged_table_index_survives_a_crash_empty() {
    const DIM: usize = 8;
    let cluster = Cluster::start("ivfpq-unlogged", "fsync = off");
    let mut c = cluster.connect();
    exec(
        &mut c,
        &format!(
            "CREATE EXTENSION arrw; CREATE UNLOGGED TABLE u (id int PRIMARY KEY, v vector({DIM}))"
        ),
    );
    let mut blobs = Blobs::new(44, 3, DIM);
    let rows: Vec<(i32, Vec<f32>)> = (0..600).map(|i| (i, blobs.point())).collect();
    insert_rows(&mut c, "u", &rows[..300]);
    exec(
        &mut c,
        "CREATE INDEX u_v ON u USING ivfpq (v) WITH (lists = 3, m = 4, nbits = 8)",
    );
    insert_rows(&mut c, "u", &rows[300..]);
    exact_settings(&mut c, 3);
    assert_eq!(assert_index_matches_table(&mut c, "u", "u_v", DIM), 600);
    assert_self_queries(&mut c, "u", &rows[250..350]);
    // A checkpoint, so that the crash cannot lose the table's creation itself.
    exec(&mut c, "CHECKPOINT");
    drop(c);

    cluster.stop("immediate");
    cluster.start_server();
    let mut c = cluster.connect();
    assert_eq!(count(&mut c, "SELECT count(*) FROM u"), 0);
    exact_settings(&mut c, 3);
    assert_index_check(&mut c, "u_v");
    assert!(ids_via_index(&mut c, "u", "u_v", DIM).is_empty());
    // The index was reset to its init fork (an empty, untrained index): it
    // takes rows again and answers exactly.
    let fresh: Vec<(i32, Vec<f32>)> = (0..400).map(|i| (10_000 + i, blobs.point())).collect();
    insert_rows(&mut c, "u", &fresh);
    assert_eq!(assert_index_matches_table(&mut c, "u", "u_v", DIM), 400);
    assert_self_queries(&mut c, "u", &fresh[..100]);
    let top = knn_u(&mut c, &fresh[7].1);
    assert_eq!(top[0], fresh[7].0);
    // Rebuilt, it is trained again.
    exec(&mut c, "REINDEX INDEX u_v");
    assert_eq!(assert_index_matches_table(&mut c, "u", "u_v", DIM), 400);
    assert_self_queries(&mut c, "u", &fresh[100..200]);
    // A second crash after the REINDEX.
    drop(c);
    cluster.stop("immediate");
    cluster.start_server();
    let mut c = cluster.connect();
    exact_settings(&mut c, 3);
    assert_eq!(count(&mut c, "SELECT count(*) FROM u"), 0);
    assert_index_check(&mut c, "u_v");
    assert!(ids_via_index(&mut c, "u", "u_v", DIM).is_empty());
    insert_rows(&mut c, "u", &fresh[..50]);
    assert_eq!(assert_index_matches_table(&mut c, "u", "u_v", DIM), 50);
    assert_self_queries(&mut c, "u", &fresh[..50]);
    assert_log_clean(&cluster);
}

fn knn_u(c: &mut Client, q: &[f32]) -> Vec<i32> {
    c.query(
        "SELECT id FROM u ORDER BY v <-> $1 LIMIT 5",
        &[&Vector::from(q.to_vec())],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

// ---------------------------------------------------------------------------
// Damaged pages

/// Byte offsets in an ivfpq index file (see arrw_core::layout): 8 kB blocks,
/// the meta fields after a 24-byte page header, a data page's special space
/// (next u32, list u32, count u16, pad, kind u16) in its last 16 bytes.
const BLCKSZ: usize = 8192;
const META_DIR_START: usize = 24 + 10 * 4;
const DIR_ENTRIES: usize = 24;
const SPECIAL_NEXT: usize = BLCKSZ - 16;
const SPECIAL_LIST: usize = BLCKSZ - 12;
const SPECIAL_COUNT: usize = BLCKSZ - 8;
const SPECIAL_KIND: usize = BLCKSZ - 2;
/// A data page's fine link, and a fine page's owner (arrw_core::layout).
const SPECIAL_FINE: usize = BLCKSZ - 16 + 10;
const FINE_OWNER: usize = BLCKSZ - 8;
const KIND_DIR: u16 = 0xA3;
/// A page's contents start after its 24-byte header; a data page of 4-byte
/// codes (`m = 4`, 8 bits) keeps this many entries, codes first, then TIDs.
const CONTENTS: usize = 24;
const CODE_BYTES: usize = 4;
const ROW_CAPACITY: usize = (BLCKSZ - CONTENTS - 16) / (CODE_BYTES + 6);
/// Meta fields: metric (u32) and the model's first block (u32).
const META_CODE_SIZE: usize = 24 + 4 * 4;
const META_METRIC: usize = 24 + 5 * 4;
const META_MODEL_START: usize = 24 + 7 * 4;
/// Meta field: 1 when the index was built from no rows.
const META_UNTRAINED: usize = 24 + 6 * 4;

fn get_u32(f: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(f[off..off + 4].try_into().unwrap())
}

fn put_u32(f: &mut [u8], off: usize, v: u32) {
    f[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

/// An index file and the chain of its list 0 (head first), as the build left it.
struct IndexFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    dir_block: usize,
    chain: Vec<usize>,
}

impl IndexFile {
    fn read(path: std::path::PathBuf) -> IndexFile {
        let bytes = std::fs::read(&path).unwrap();
        let dir_block = get_u32(&bytes, META_DIR_START) as usize;
        let mut chain = vec![get_u32(&bytes, dir_block * BLCKSZ + DIR_ENTRIES) as usize];
        loop {
            let next = get_u32(&bytes, chain.last().unwrap() * BLCKSZ + SPECIAL_NEXT);
            if next == u32::MAX {
                break;
            }
            chain.push(next as usize);
        }
        IndexFile {
            path,
            bytes,
            dir_block,
            chain,
        }
    }

    fn blocks(&self) -> usize {
        self.bytes.len() / BLCKSZ
    }

    fn write(&self) {
        std::fs::write(&self.path, &self.bytes).unwrap();
    }
}

/// Runs `sql`, which must fail with index_corrupted (XX002) naming `index`,
/// with the REINDEX hint. A statement_timeout (57014) means it looped.
fn expect_corrupted(c: &mut Client, sql: &str, index: &str) -> String {
    let e = match c.batch_execute(sql) {
        Ok(()) => panic!("{sql}: succeeded on damaged index {index}"),
        Err(e) => e,
    };
    let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    assert_eq!(d.code().code(), "XX002", "{sql}: {}", msg(&e));
    assert!(
        d.message().contains(&format!("\"{index}\"")) && d.message().contains("block"),
        "{sql}: {}",
        d.message()
    );
    assert_eq!(
        d.hint(),
        Some(format!("REINDEX INDEX public.{index}").as_str()),
        "{sql}"
    );
    d.message().to_string()
}

/// Every way a damaged page used to mislead a read path, each on its own
/// index: the scan, INSERT, VACUUM and `ivfpq_info` paths answer with ERROR
/// XX002 naming the index and the block: no loop (statement_timeout would
/// give 57014), no wrong answer, no page added by a read, no lost row, no
/// panic. The damage is written into the index files of a stopped server.
#[test]
fn damaged_pages_are_index_corrupted_errors() {
    const DIM: usize = 4;
    let cluster = Cluster::start("ivfpq-damage", "");
    let mut c = cluster.connect();
    exec(&mut c, "CREATE EXTENSION arrw");
    let cases = [
        "self_link",
        "past_end",
        "off_chain",
        "count",
        "list_id",
        "kind",
        "fine_link",
        "fine_owner",
        "heap_tid",
        "heap_off",
        "meta_metric",
        "meta_code_size",
        "model_metric",
        "model_nan",
        "hole",
        "dup_tid",
        "dup_tid_pages",
        "format_garbled",
        "empty_file",
    ];
    let mut blobs = Blobs::new(91, 4, DIM);
    // 1,500 rows of 10-byte entries (4-byte codes, 6-byte TIDs) fill a list's
    // first page (813 entries) and part of a second.
    let rows: Vec<(i32, Vec<f32>)> = (0..1500).map(|i| (i, blobs.point())).collect();
    let mut paths = HashMap::new();
    for name in cases {
        let t = format!("d_{name}");
        exec(
            &mut c,
            &format!("CREATE TABLE {t} (id int, v vector({DIM})) WITH (autovacuum_enabled = off)"),
        );
        insert_rows(&mut c, &t, &rows);
        exec(
            &mut c,
            &format!(
                "CREATE INDEX {t}_v ON {t} USING ivfpq (v) WITH (lists = 1, m = {DIM}, nbits = 8{});
                 DELETE FROM {t} WHERE id % 10 = 0",
                // The fine cases keep a refine code: each data page is then
                // followed by its fine page.
                if name.starts_with("fine") { ", refine = 4" } else { "" }
            ),
        );
        let rel: String = c
            .query_one(&format!("SELECT pg_relation_filepath('{t}_v')"), &[])
            .unwrap()
            .get(0);
        paths.insert(name, cluster.dir.join("data").join(rel));
    }
    drop(c);
    cluster.stop("fast");

    let mut files: HashMap<&str, IndexFile> = HashMap::new();
    for name in cases {
        let mut f = IndexFile::read(paths[name].clone());
        assert_eq!(f.chain.len(), 2, "{name}: list 0 should have two pages");
        let (head, second) = (f.chain[0] * BLCKSZ, f.chain[1] * BLCKSZ);
        match name {
            // A page that links to itself.
            "self_link" => put_u32(&mut f.bytes, head + SPECIAL_NEXT, f.chain[0] as u32),
            // A link past the end of the index.
            "past_end" => {
                let past = f.blocks() as u32 + 10;
                put_u32(&mut f.bytes, head + SPECIAL_NEXT, past)
            }
            // The chain ends at the head: the directory's insert page (the
            // second page) is still list 0's, but no chain reaches it.
            "off_chain" => {
                assert_eq!(
                    get_u32(&f.bytes, f.dir_block * BLCKSZ + DIR_ENTRIES + 4) as usize,
                    f.chain[1]
                );
                put_u32(&mut f.bytes, head + SPECIAL_NEXT, u32::MAX);
            }
            "count" => f.bytes[head + SPECIAL_COUNT..head + SPECIAL_COUNT + 2]
                .copy_from_slice(&u16::MAX.to_ne_bytes()),
            "list_id" => put_u32(&mut f.bytes, head + SPECIAL_LIST, 7),
            "kind" => f.bytes[second + SPECIAL_KIND..second + SPECIAL_KIND + 2]
                .copy_from_slice(&KIND_DIR.to_ne_bytes()),
            // The head's fine link names a block that is not the next one.
            "fine_link" => {
                assert_eq!(
                    get_u32(&f.bytes, head + SPECIAL_FINE),
                    f.chain[0] as u32 + 1
                );
                put_u32(&mut f.bytes, head + SPECIAL_FINE, f.chain[1] as u32)
            }
            // The head's fine page claims another data page as its owner.
            "fine_owner" => put_u32(&mut f.bytes, head + BLCKSZ + FINE_OWNER, 77_777),
            // The head's first entry points far past the table's last block
            // (its TID: block hi, block lo, offset, after the page's codes).
            "heap_tid" => {
                let tid = head + CONTENTS + ROW_CAPACITY * CODE_BYTES;
                f.bytes[tid..tid + 4]
                    .copy_from_slice(&[0x00ffu16.to_ne_bytes(), 0xffffu16.to_ne_bytes()].concat());
            }
            // The head's first entry's line pointer 1 with a bit flipped: 513,
            // which no heap page has (MaxHeapTuplesPerPage is 291). Scans
            // lost the row without a word and ivfpq_check passed (hunt-55).
            "heap_off" => {
                let tid = head + CONTENTS + ROW_CAPACITY * CODE_BYTES;
                f.bytes[tid + 4..tid + 6].copy_from_slice(&513u16.to_ne_bytes());
            }
            // The metric (0: L2) in the meta page, or in the model itself
            // (byte 5 of the model blob): an L2 index ranked as inner product.
            "meta_metric" => put_u32(&mut f.bytes, META_METRIC, 1),
            // The meta page's code width (4 bytes here) halved: pages read
            // with it put entries' TIDs in their codes' bytes.
            "meta_code_size" => {
                assert_eq!(get_u32(&f.bytes, META_CODE_SIZE), CODE_BYTES as u32);
                put_u32(&mut f.bytes, META_CODE_SIZE, 2)
            }
            "model_metric" => {
                let model = get_u32(&f.bytes, META_MODEL_START) as usize * BLCKSZ;
                assert_eq!(f.bytes[model + CONTENTS + 5], 0);
                f.bytes[model + CONTENTS + 5] = 1;
            }
            // The first centroid value (after the model's 20-byte header)
            // made NaN: it parses, and ranked rows wrongly without an error.
            "model_nan" => {
                let model = get_u32(&f.bytes, META_MODEL_START) as usize * BLCKSZ;
                let at = model + CONTENTS + 20;
                f.bytes[at..at + 4].copy_from_slice(&f32::NAN.to_ne_bytes());
            }
            // The insert page's pd_lower (bytes 12..14) moved down over its
            // entries: an INSERT zeroed them as free space.
            "hole" => f.bytes[second + 12..second + 14].copy_from_slice(&24u16.to_ne_bytes()),
            // Entry 1 of the head holds entry 0's TID: a scan returned that
            // row twice.
            "dup_tid" => {
                let tid = head + CONTENTS + ROW_CAPACITY * CODE_BYTES;
                let first: Vec<u8> = f.bytes[tid..tid + 6].to_vec();
                f.bytes[tid + 6..tid + 12].copy_from_slice(&first);
            }
            // Entry 2 of the second page holds the TID of the head's entry 1
            // (a live row: entry 0's was deleted): the scan re-ranked both
            // from the same row and returned it twice, and ivfpq_check,
            // which compares a page's TIDs, saw nothing.
            "dup_tid_pages" => {
                let tid = head + CONTENTS + ROW_CAPACITY * CODE_BYTES + 6;
                let at = second + CONTENTS + ROW_CAPACITY * CODE_BYTES + 12;
                let live: Vec<u8> = f.bytes[tid..tid + 6].to_vec();
                f.bytes[at..at + 6].copy_from_slice(&live);
            }
            // The meta page's format number (after its magic) garbled into
            // one no arrw wrote: not "built by another arrw" (0A000) but damage.
            "format_garbled" => put_u32(&mut f.bytes, 24 + 4, 2_029_829_132),
            // The file truncated to nothing: PostgreSQL's read of block 0
            // said XX001 without naming the index.
            "empty_file" => f.bytes.clear(),
            _ => unreachable!(),
        }
        f.write();
        files.insert(name, f);
    }
    cluster.start_server();
    let mut c = cluster.connect();
    // Bounds a hang of the old code; the assertions are on the SQLSTATE.
    exec(
        &mut c,
        "SET statement_timeout = '20s'; SET enable_seqscan = off; \
         SET ivfpq.probes = 1; SET ivfpq.rerank = 100",
    );
    let scan = |t: &str| format!("SELECT id FROM {t} ORDER BY v <-> '[1,2,3,4]' LIMIT 5");
    let blocks = |c: &mut Client, t: &str| index_blocks(c, &format!("{t}_v"));

    // Scans, VACUUM and ivfpq_info stop at the self-link.
    expect_corrupted(&mut c, &scan("d_self_link"), "d_self_link_v");
    expect_corrupted(&mut c, "VACUUM d_self_link", "d_self_link_v");
    expect_corrupted(
        &mut c,
        "SELECT * FROM arrw.ivfpq_info('d_self_link_v')",
        "d_self_link_v",
    );

    // A read never extends the index.
    let before = blocks(&mut c, "d_past_end");
    assert_eq!(before as usize, files["past_end"].blocks());
    expect_corrupted(&mut c, &scan("d_past_end"), "d_past_end_v");
    expect_corrupted(
        &mut c,
        "SELECT * FROM arrw.ivfpq_info('d_past_end_v')",
        "d_past_end_v",
    );
    expect_corrupted(&mut c, "VACUUM d_past_end", "d_past_end_v");
    assert_eq!(blocks(&mut c, "d_past_end"), before);

    // An INSERT that would land on the unreachable page fails instead, and
    // takes neither a row nor a block with it.
    let rows_before = count(&mut c, "SELECT count(*) FROM d_off_chain");
    let before = blocks(&mut c, "d_off_chain");
    expect_corrupted(
        &mut c,
        "INSERT INTO d_off_chain VALUES (-1, '[1,2,3,4]')",
        "d_off_chain_v",
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM d_off_chain"),
        rows_before
    );
    assert_eq!(blocks(&mut c, "d_off_chain"), before);
    // Scans and VACUUM walk the chain to its end, and a chain that ends
    // before its insert page was cut: the rows past the cut went missing
    // from scans without a word, and VACUUM pointed the insert page back
    // at the cut chain, after which inserts succeeded too (hunt-72).
    expect_corrupted(&mut c, &scan("d_off_chain"), "d_off_chain_v");
    expect_corrupted(&mut c, "VACUUM d_off_chain", "d_off_chain_v");
    expect_corrupted(
        &mut c,
        "INSERT INTO d_off_chain VALUES (-1, '[1,2,3,4]')",
        "d_off_chain_v",
    );

    // A count beyond the page's capacity: scans and VACUUM refuse the page.
    expect_corrupted(&mut c, &scan("d_count"), "d_count_v");
    expect_corrupted(&mut c, "VACUUM d_count", "d_count_v");
    expect_corrupted(
        &mut c,
        "INSERT INTO d_count VALUES (-1, '[1,2,3,4]')",
        "d_count_v",
    );

    // A page of another list, a page of another kind on the chain.
    expect_corrupted(&mut c, &scan("d_list_id"), "d_list_id_v");
    expect_corrupted(&mut c, "VACUUM d_list_id", "d_list_id_v");
    expect_corrupted(&mut c, &scan("d_kind"), "d_kind_v");
    expect_corrupted(&mut c, "VACUUM d_kind", "d_kind_v");
    expect_corrupted(
        &mut c,
        "INSERT INTO d_kind VALUES (-1, '[1,2,3,4]')",
        "d_kind_v",
    );

    // A fine link that is not the next block, a fine page of another data
    // page: the scan (which refines from fine pages) refuses them, and so does
    // VACUUM, which moves fine entries.
    for t in ["d_fine_link", "d_fine_owner"] {
        let idx = format!("{t}_v");
        expect_corrupted(&mut c, &scan(t), &idx);
        expect_corrupted(&mut c, &format!("VACUUM {t}"), &idx);
    }

    // A TID past the table's end: not the storage manager's "could not open
    // file" (58P01) but the index's corruption, naming the index block that
    // holds the entry (the damaged head of list 0), not only the table's
    // block; a model or meta page whose metric disagrees with the operator
    // class: not wrong rows but an ERROR. (Every row of the table, so that
    // the damaged entry is re-ranked.)
    let at_head = |name: &str| format!(" at block {} (list 0) ", files[name].chain[0]);
    let m = expect_corrupted(
        &mut c,
        "SELECT id FROM d_heap_tid ORDER BY v <-> '[1,2,3,4]' LIMIT 2000",
        "d_heap_tid_v",
    );
    assert!(m.contains(&at_head("heap_tid")), "{m}");
    for name in ["meta_metric", "model_metric"] {
        let t = format!("d_{name}");
        expect_corrupted(&mut c, &scan(&t), &format!("{t}_v"));
    }
    let m = expect_corrupted(
        &mut c,
        "SET ivfpq.rerank = 0; SELECT id FROM d_heap_tid ORDER BY v <-> '[1,2,3,4]' LIMIT 2000",
        "d_heap_tid_v",
    );
    assert!(m.contains(&at_head("heap_tid")), "{m}");
    exec(&mut c, "SET ivfpq.rerank = 100");
    let m = expect_corrupted(
        &mut c,
        "SELECT id FROM d_heap_off ORDER BY v <-> '[1,2,3,4]' LIMIT 2000",
        "d_heap_off_v",
    );
    assert!(m.contains(&at_head("heap_off")), "{m}");
    let m = expect_corrupted(
        &mut c,
        "SET ivfpq.rerank = 0; SELECT id FROM d_heap_off ORDER BY v <-> '[1,2,3,4]' LIMIT 2000",
        "d_heap_off_v",
    );
    assert!(m.contains(&at_head("heap_off")), "{m}");
    exec(&mut c, "SET ivfpq.rerank = 100");
    expect_corrupted(
        &mut c,
        "INSERT INTO d_meta_metric VALUES (-1, '[1,2,3,4]')",
        "d_meta_metric_v",
    );

    // VACUUM, its first reader, reads no page with the meta page's damaged
    // code width: it unlinked the dead rows' line pointers while their
    // entries stayed (their TIDs read from code bytes matched none), and
    // removed live rows' entries (hunt-95).
    expect_corrupted(&mut c, "VACUUM d_meta_code_size", "d_meta_code_size_v");

    expect_corrupted(&mut c, &scan("d_empty_file"), "d_empty_file_v");
    expect_corrupted(
        &mut c,
        "INSERT INTO d_empty_file VALUES (-1, '[1,2,3,4]')",
        "d_empty_file_v",
    );
    // A model page whose bytes no longer match the build's seal.
    expect_corrupted(&mut c, &scan("d_model_nan"), "d_model_nan_v");
    // Bounds damaged over live entries: the INSERT refuses to write the
    // page, and takes no row with it; scans refuse the page too (its bounds
    // are not its layout's), rather than read entries a write would erase.
    let rows_before = count(&mut c, "SELECT count(*) FROM d_hole");
    expect_corrupted(
        &mut c,
        "INSERT INTO d_hole VALUES (-1, '[1,2,3,4]')",
        "d_hole_v",
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM d_hole"), rows_before);
    expect_corrupted(
        &mut c,
        "SELECT id FROM d_hole ORDER BY v <-> '[1,2,3,4]' LIMIT 5000",
        "d_hole_v",
    );

    expect_corrupted(&mut c, &scan("d_format_garbled"), "d_format_garbled_v");

    // One row named by two entries on two pages: a scan reaching both
    // stops instead of returning the row twice.
    expect_corrupted(
        &mut c,
        "SELECT id FROM d_dup_tid_pages ORDER BY v <-> '[1,2,3,4]' LIMIT 2000",
        "d_dup_tid_pages_v",
    );
    // With no LIMIT right above the scan (a cursor, a count) the two entries,
    // each with its own code, left far apart: the row came out twice without
    // an error (hunt-55). The scan now remembers the rows it hands out.
    expect_corrupted(
        &mut c,
        "SET enable_seqscan = off; SET enable_sort = off; \
         SELECT count(*) FROM (SELECT id FROM d_dup_tid_pages ORDER BY v <-> '[9,9,9,9]') s",
        "d_dup_tid_pages_v",
    );

    // ivfpq_check agrees (the duplicate TID on one page only it can see,
    // when its row was deleted; two pages' TIDs since hunt-142, which found
    // that a scan stopping before it meets both leaves the other entry's row
    // out without an error, and ivfpq_check passed), and REINDEX repairs
    // every one.
    for name in cases {
        let idx = format!("d_{name}_v");
        expect_corrupted(&mut c, &format!("SELECT arrw.ivfpq_check('{idx}')"), &idx);
        exec(&mut c, &format!("REINDEX INDEX {idx}"));
        assert_index_check(&mut c, &idx);
        assert_eq!(
            c.query(&scan(&format!("d_{name}")), &[]).unwrap().len(),
            5,
            "{name} after REINDEX"
        );
    }
    assert_log_clean(&cluster);
    let log = cluster.log();
    assert!(!log.contains("panicked"), "a Rust panic in the log");
}

/// A page header whose `pd_lower`/`pd_upper` disagree with the page's layout,
/// though all they call free space is zero bytes (hunt-121): an insert page's
/// `pd_lower` lowered to the end of its live TIDs, its `pd_upper` lowered onto
/// its TIDs and `pd_lower` to the end of its live codes, and a fine page's
/// `pd_lower` lowered to the end of its live entries. PostgreSQL's page
/// check, the page checks and `ivfpq_check` all passed, and the next INSERT
/// wrote its entry where the header said free space: the write zeroed it and
/// raised the count, the row committed without its entry, and every later
/// scan failed (or, the codes' or fine entries' case, read zeros silently).
/// Now `ivfpq_check` names the block, an INSERT into the list fails with
/// XX002 and takes its row with it, a scan fails, and REINDEX repairs it.
#[test]
fn page_bounds_that_disagree_with_the_layout_are_index_corrupted() {
    const DIM: usize = 4;
    // A fine entry: its TID, then the refine code (4 dimensions at 4 bits).
    const FINE_ENTRY: usize = 6 + 2;
    let cluster = Cluster::start("ivfpq-damage-bounds", "");
    let mut c = cluster.connect();
    exec(&mut c, "CREATE EXTENSION arrw");
    let cases = ["lower", "upper", "fine"];
    let mut blobs = Blobs::new(121, 4, DIM);
    // 1,500 rows fill list 0's first page (ROW_CAPACITY, 815 entries) and
    // part of a second, its insert page.
    let rows: Vec<(i32, Vec<f32>)> = (0..1500).map(|i| (i, blobs.point())).collect();
    let mut paths = HashMap::new();
    for name in cases {
        let t = format!("b_{name}");
        exec(
            &mut c,
            &format!("CREATE TABLE {t} (id int, v vector({DIM})) WITH (autovacuum_enabled = off)"),
        );
        insert_rows(&mut c, &t, &rows);
        exec(
            &mut c,
            &format!(
                "CREATE INDEX {t}_v ON {t} USING ivfpq (v) WITH (lists = 1, m = {DIM}, nbits = 8{})",
                if name == "fine" { ", refine = 4" } else { "" }
            ),
        );
        let rel: String = c
            .query_one(&format!("SELECT pg_relation_filepath('{t}_v')"), &[])
            .unwrap()
            .get(0);
        paths.insert(name, cluster.dir.join("data").join(rel));
    }
    drop(c);
    cluster.stop("fast");

    // The block each case damages.
    let mut damaged = HashMap::new();
    for name in cases {
        let mut f = IndexFile::read(paths[name].clone());
        assert_eq!(f.chain.len(), 2, "{name}: list 0 should have two pages");
        let insert = f.chain[1];
        assert_eq!(
            get_u32(&f.bytes, f.dir_block * BLCKSZ + DIR_ENTRIES + 4) as usize,
            insert,
            "{name}: the second page is the insert page"
        );
        let at = insert * BLCKSZ;
        let n = u16::from_ne_bytes(
            f.bytes[at + SPECIAL_COUNT..at + SPECIAL_COUNT + 2]
                .try_into()
                .unwrap(),
        ) as usize;
        assert_eq!(n, 1500 - ROW_CAPACITY, "{name}");
        let tids = CONTENTS + ROW_CAPACITY * CODE_BYTES;
        let (blk, lower, upper) = match name {
            // The repro: the end of the live TIDs.
            "lower" => (insert, tids + n * 6, BLCKSZ - 16),
            // The end of the live codes, and the start of the TIDs.
            "upper" => (insert, CONTENTS + n * CODE_BYTES, tids),
            // The insert page's fine page, the block after it: the end of
            // its live entries (fine entry i holds data entry i's TID, but
            // for a rare row whose refine code is not faithful).
            "fine" => {
                let fine = at + BLCKSZ;
                assert_eq!(get_u32(&f.bytes, at + SPECIAL_FINE) as usize, insert + 1);
                let same = |i: usize| {
                    let e = fine + CONTENTS + i * FINE_ENTRY;
                    f.bytes[e..e + 6] == f.bytes[at + tids + i * 6..at + tids + i * 6 + 6]
                };
                assert!((0..20).any(same), "fine entries are {FINE_ENTRY} bytes");
                (insert + 1, CONTENTS + n * FINE_ENTRY, BLCKSZ - 8)
            }
            _ => unreachable!(),
        };
        let p = blk * BLCKSZ;
        // All the new "free space" holds is zero bytes: nothing sees it.
        assert!(
            f.bytes[p + lower..p + upper].iter().all(|&b| b == 0),
            "{name}: what the moved bounds enclose is not all zero"
        );
        f.bytes[p + 12..p + 14].copy_from_slice(&(lower as u16).to_ne_bytes());
        f.bytes[p + 14..p + 16].copy_from_slice(&(upper as u16).to_ne_bytes());
        f.write();
        damaged.insert(name, blk);
    }
    cluster.start_server();
    let mut c = cluster.connect();
    exec(
        &mut c,
        "SET statement_timeout = '20s'; SET enable_seqscan = off; \
         SET ivfpq.probes = 1; SET ivfpq.rerank = 5000",
    );
    for name in cases {
        let (t, idx) = (format!("b_{name}"), format!("b_{name}_v"));
        let at_block = format!("is corrupted at block {}: ", damaged[name]);
        let m = expect_corrupted(&mut c, &format!("SELECT arrw.ivfpq_check('{idx}')"), &idx);
        assert!(m.contains(&at_block), "{name}: {m}");
        // The INSERT lands on the damaged page (or its fine page): refused,
        // and its row goes with it.
        let m = expect_corrupted(
            &mut c,
            &format!("INSERT INTO {t} VALUES (-1, '[1,2,3,4]')"),
            &idx,
        );
        assert!(m.contains(&at_block), "{name}: {m}");
        assert_eq!(
            count(&mut c, &format!("SELECT count(*) FROM {t}")),
            1500,
            "{name}"
        );
        assert_eq!(
            count(&mut c, &format!("SELECT count(*) FROM {t} WHERE id = -1")),
            0,
            "{name}"
        );
        // Every row (so that the damaged page's rows are refined from its
        // fine page).
        let scan = format!("SELECT id FROM {t} ORDER BY v <-> '[1,2,3,4]' LIMIT 5000");
        let m = expect_corrupted(&mut c, &scan, &idx);
        assert!(m.contains(&at_block), "{name}: {m}");
        exec(&mut c, &format!("REINDEX INDEX {idx}"));
        assert_index_check(&mut c, &idx);
        exec(&mut c, &format!("INSERT INTO {t} VALUES (-1, '[1,2,3,4]')"));
        assert_index_check(&mut c, &idx);
        assert_eq!(
            c.query(&scan, &[]).unwrap().len(),
            1501,
            "{name} after REINDEX"
        );
    }
    assert_log_clean(&cluster);
    assert!(
        !cluster.log().contains("panicked"),
        "a Rust panic in the log"
    );
}

/// Stops the server, rewrites meta page fields of index `u_v` (offset, the
/// value the test expects there, the damaged value), starts it again and
/// returns a session with a statement_timeout (a loop would show as 57014)
/// and sequential scans off.
fn damage_untrained_meta(cluster: &Cluster, mut c: Client, fields: &[(usize, u32, u32)]) -> Client {
    let rel: String = c
        .query_one("SELECT pg_relation_filepath('u_v')", &[])
        .unwrap()
        .get(0);
    drop(c);
    cluster.stop("fast");
    let path = cluster.dir.join("data").join(rel);
    let mut f = std::fs::read(&path).unwrap();
    for &(at, was, now) in fields {
        assert_eq!(get_u32(&f, at), was, "meta field at {at} before the damage");
        put_u32(&mut f, at, now);
    }
    std::fs::write(&path, &f).unwrap();
    cluster.start_server();
    let mut c = cluster.connect();
    exec(
        &mut c,
        "SET statement_timeout = '20s'; SET enable_seqscan = off",
    );
    c
}

/// The meta page's `untrained` flag of an index built from no rows, flipped
/// to "trained": the placeholder model of one list was read as the index's
/// model, and the first INSERT then failed blaming the row's dimensions (22000)
/// or, with `rerank = 0`, scans handed rows out in arbitrary order. The model's
/// seal says which kind it is, so the flag is checked against it (XX002).
#[test]
fn an_untrained_flag_that_disagrees_with_the_model_is_index_corrupted() {
    let cluster = Cluster::start("ivfpq-damage-flag", "");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "CREATE EXTENSION arrw;
         CREATE TABLE u (id int, v vector(4)) WITH (autovacuum_enabled = off);
         CREATE INDEX u_v ON u USING ivfpq (v) WITH (lists = 4)",
    );
    let mut c = damage_untrained_meta(&cluster, c, &[(META_UNTRAINED, 1, 0)]);
    expect_corrupted(&mut c, "INSERT INTO u VALUES (1, '[1,2,3,4]')", "u_v");
    expect_corrupted(
        &mut c,
        "SELECT id FROM u ORDER BY v <-> '[1,2,3,4]' LIMIT 5",
        "u_v",
    );
    exec(
        &mut c,
        "REINDEX INDEX u_v; INSERT INTO u VALUES (1, '[1,2,3,4]')",
    );
}

/// The meta page's record of the dimensions an index built from no rows holds
/// its rows to (the first row's), damaged into another count than the
/// column's declared one: every insert and query failed with a user error
/// (22000 "expected 2 dimensions", the column being `vector(4)`), and
/// `ivfpq_check` passed (hunt-55). A declared dimension change rebuilds the
/// index, so the mismatch is damage: XX002.
#[test]
fn a_recorded_dimension_that_contradicts_the_declared_one_is_index_corrupted() {
    const META_UNTRAINED_DIM: usize = 24 + 84;
    let cluster = Cluster::start("ivfpq-damage-udim", "");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "CREATE EXTENSION arrw;
         CREATE TABLE u (id int, v vector(4)) WITH (autovacuum_enabled = off);
         CREATE INDEX u_v ON u USING ivfpq (v) WITH (lists = 4);
         INSERT INTO u SELECT i, ARRAY[i, 1, 2, 3]::real[]::vector FROM generate_series(1, 5) i",
    );
    // Built from no rows (untrained 1), its first row of 4 dimensions recorded.
    let mut c = damage_untrained_meta(
        &cluster,
        c,
        &[(META_UNTRAINED, 1, 1), (META_UNTRAINED_DIM, 4, 2)],
    );
    expect_corrupted(&mut c, "INSERT INTO u VALUES (9, '[1,2,3,4]')", "u_v");
    expect_corrupted(
        &mut c,
        "SELECT id FROM u ORDER BY v <-> '[1,2,3,4]' LIMIT 5",
        "u_v",
    );
    expect_corrupted(&mut c, "SELECT arrw.ivfpq_check('u_v')", "u_v");
    exec(
        &mut c,
        "REINDEX INDEX u_v; INSERT INTO u VALUES (9, '[1,2,3,4]')",
    );
}

/// With a refine code, rows still come in exact order after the index has
/// changed the ways that move fine entries: inserts into pages with room and
/// into new pages (reserved with their fine pages), a VACUUM that compacts
/// pages (fine entries move with their rows), and inserts into the freed
/// slots. With every list probed and a small `rerank`, the index's order for
/// a deep LIMIT, a short one and under a filter equals an exact sort, `ivfpq_check`
/// passes, and the profile shows the scan refined candidates (the refine
/// stage, not only heap re-ranking, produced the order).
#[test]
fn refined_scans_keep_exact_order_through_inserts_and_vacuum() {
    const DIM: usize = 32;
    let cluster = Cluster::start("ivfpq-refine", "");
    let mut c = cluster.connect();
    exec(
        &mut c,
        &format!(
            "CREATE EXTENSION arrw; \
             CREATE TABLE r (id int PRIMARY KEY, v vector({DIM})) WITH (autovacuum_enabled = off)"
        ),
    );
    let mut blobs = Blobs::new(29, 6, DIM);
    let mut rows = |from: i32, n: i32| -> Vec<(i32, Vec<f32>)> {
        (from..from + n).map(|i| (i, blobs.point())).collect()
    };
    insert_rows(&mut c, "r", &rows(0, 1500));
    exec(
        &mut c,
        "CREATE INDEX r_v ON r USING ivfpq (v) WITH (lists = 4, m = 8, nbits = 4, refine = 4)",
    );
    insert_rows(&mut c, "r", &rows(1500, 1500));
    exec(&mut c, "DELETE FROM r WHERE id % 3 = 0");
    exec(&mut c, "VACUUM r");
    insert_rows(&mut c, "r", &rows(3000, 500));
    assert_index_check(&mut c, "r_v");
    let info: String = c
        .query_one("SELECT arrw._ivfpq_info_json('r_v')", &[])
        .unwrap()
        .get(0);
    assert!(info.contains("\"refine_bits\":4"), "{info}");

    exec(
        &mut c,
        "SET ivfpq.probes = 4; SET ivfpq.rerank = 10; SET ivfpq.profile = on; \
         SELECT arrw.ivfpq_profile_reset()",
    );
    let ids = |c: &mut Client, sql: &str, index: bool| -> Vec<i32> {
        exec(
            c,
            if index {
                "SET enable_seqscan = off; SET enable_indexscan = on"
            } else {
                "SET enable_seqscan = on; SET enable_indexscan = off"
            },
        );
        c.query(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    for i in 0..6 {
        let q = lit(&blobs.point());
        // LIMIT 10 without a filter takes the smaller candidate pool of a
        // short refined scan (CandidatePool::for_short_refined).
        for (filter, k) in [("true", 200), ("id % 7 = 1", 30), ("true", 10)] {
            let sql = format!("SELECT id FROM r WHERE {filter} ORDER BY v <-> '{q}' LIMIT {k}");
            let plan = explain(&mut c, &sql);
            let via_index = ids(&mut c, &sql, true);
            assert!(
                explain(&mut c, &sql).contains("Index Scan using r_v"),
                "{plan}"
            );
            let exact = ids(&mut c, &sql, false);
            assert_eq!(via_index, exact, "query {i}, WHERE {filter} LIMIT {k}");
        }
    }
    let refined: i64 = c
        .query_one("SELECT (arrw.ivfpq_profile()->>'refined')::bigint", &[])
        .unwrap()
        .get(0);
    assert!(refined > 0, "the scans refined no candidate");
    assert_log_clean(&cluster);
}

/// Where the meta page's `version` field is: after the page header and `magic`.
const META_VERSION: usize = 24 + 4;

/// An index whose meta page says another on-disk format (an older arrw's, or
/// a newer one's after a downgrade) is never read: every path that opens it
/// (planning, scan, INSERT, VACUUM, `ivfpq_info`, `ivfpq_check`) fails with
/// 0A000 naming both formats and hinting at the REINDEX that fixes it, and
/// that REINDEX does. The format is rewritten in the file of a stopped server.
#[test]
fn other_format_version_is_refused_with_reindex_hint() {
    const DIM: usize = 4;
    let cluster = Cluster::start("ivfpq-format", "");
    let mut c = cluster.connect();
    exec(&mut c, "CREATE EXTENSION arrw; CREATE SCHEMA s");
    let mut blobs = Blobs::new(17, 4, DIM);
    let rows: Vec<(i32, Vec<f32>)> = (0..600).map(|i| (i, blobs.point())).collect();
    let cases = [("s.f_old", 2u32), ("public.f_new", 4u32)];
    let mut paths = Vec::new();
    for (t, _) in cases {
        exec(
            &mut c,
            &format!("CREATE TABLE {t} (id int, v vector({DIM}))"),
        );
        insert_rows(&mut c, t, &rows);
        exec(
            &mut c,
            &format!(
                "CREATE INDEX {}_v ON {t} USING ivfpq (v) WITH (lists = 4, m = 2)",
                t.split('.').nth(1).unwrap()
            ),
        );
        let rel: String = c
            .query_one(&format!("SELECT pg_relation_filepath('{t}_v')"), &[])
            .unwrap()
            .get(0);
        paths.push(cluster.dir.join("data").join(rel));
    }
    drop(c);
    cluster.stop("fast");
    for ((_, version), path) in cases.iter().zip(&paths) {
        let mut bytes = std::fs::read(path).unwrap();
        assert_eq!(get_u32(&bytes, META_VERSION), 3, "the current format");
        put_u32(&mut bytes, META_VERSION, *version);
        std::fs::write(path, bytes).unwrap();
    }
    cluster.start_server();
    let mut c = cluster.connect();
    exec(&mut c, "SET enable_seqscan = off");
    for (t, version) in cases {
        let idx = format!("{t}_v");
        let expect = |c: &mut Client, sql: &str| {
            let e = c
                .batch_execute(sql)
                .err()
                .unwrap_or_else(|| panic!("{sql}: read an index of format {version}"));
            let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
            assert_eq!(d.code().code(), "0A000", "{sql}: {}", msg(&e));
            let name = idx.split('.').nth(1).unwrap();
            assert_eq!(
                d.message(),
                format!(
                    "ivfpq index \"{name}\" has on-disk format {version}, \
                     this arrw reads format 3; REINDEX it"
                ),
                "{sql}"
            );
            assert_eq!(
                d.hint(),
                Some(format!("REINDEX INDEX {idx}").as_str()),
                "{sql}"
            );
        };
        let scan = format!("SELECT id FROM {t} ORDER BY v <-> '[1,2,3,4]' LIMIT 5");
        expect(&mut c, &scan);
        expect(&mut c, &format!("INSERT INTO {t} VALUES (-1, '[1,2,3,4]')"));
        exec(&mut c, &format!("DELETE FROM {t} WHERE id < 10"));
        expect(&mut c, &format!("VACUUM {t}"));
        expect(&mut c, &format!("SELECT * FROM arrw.ivfpq_info('{idx}')"));
        expect(&mut c, &format!("SELECT arrw.ivfpq_check('{idx}')"));
        exec(&mut c, &format!("REINDEX INDEX {idx}"));
        assert_index_check(&mut c, &idx);
        assert_eq!(c.query(&scan, &[]).unwrap().len(), 5, "{t} after REINDEX");
    }
    let log = cluster.log();
    assert!(!log.contains("panicked"), "a Rust panic in the log");
}

// ---------------------------------------------------------------------------
// vector[] (vector_maxsim_ops)

/// A document: 1 to 5 points of one blob (a document's chunks are alike).
fn doc(blobs: &mut Blobs, id: i32) -> Vec<Vec<f32>> {
    let b = blobs.rng.below(blobs.centers.len());
    (0..1 + (id as usize % 5))
        .map(|_| blobs.point_in(b))
        .collect()
}

fn arr(d: &[Vec<f32>]) -> String {
    let items: Vec<String> = d.iter().map(|v| format!("'{}'", lit(v))).collect();
    format!("ARRAY[{}]::vector[]", items.join(","))
}

fn insert_docs(c: &mut Client, rows: &[(i32, Vec<Vec<f32>>)]) {
    insert_values(c, "docs", rows, |d| arr(d));
}

/// Ids of `ORDER BY v @# q LIMIT k` as the session plans it.
fn maxsim_ids(c: &mut Client, q: &[Vec<f32>], k: usize) -> Vec<i32> {
    let sql = format!("SELECT id FROM docs ORDER BY v @# {} LIMIT {k}", arr(q));
    c.query(&sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Exact settings for a MaxSim scan: every list probed, every entry kept (a
/// depth above the index's entries is cut to them; the work_mem fits up to a
/// million of them).
fn exact_maxsim_settings(c: &mut Client, lists: usize) {
    exact_settings(c, lists);
    exec(c, "SET work_mem = '1GB'; SET ivfpq.maxsim_depth = 1000000");
}

/// With exact settings, the index returns every row once, and the rows of a few
/// queries in the order of a sequential scan.
fn assert_maxsim_exact(c: &mut Client, queries: &[Vec<Vec<f32>>], label: &str) {
    let all = maxsim_ids(c, &queries[0], 1_000_000);
    let set: BTreeSet<i32> = all.iter().copied().collect();
    assert_eq!(
        set.len(),
        all.len(),
        "{label}: the index returns rows twice"
    );
    assert_eq!(
        set,
        ids_in_table(c, "docs"),
        "{label}: index and table differ"
    );
    for (i, q) in queries.iter().enumerate() {
        let via_index = maxsim_ids(c, q, 15);
        exec(c, "SET enable_indexscan = off; SET enable_seqscan = on");
        let exact = maxsim_ids(c, q, 15);
        exec(c, "RESET enable_indexscan; SET enable_seqscan = off");
        assert_eq!(
            via_index, exact,
            "{label}: query {i}: index vs sequential scan"
        );
    }
}

/// vector_maxsim_ops through a crash in the middle of inserts (each row's
/// elements are several WAL records) and on a streaming replica.
#[test]
fn maxsim_index_survives_a_crash_and_replays_on_a_replica() {
    const DIM: usize = 16;
    const LISTS: usize = 4;
    let t0 = Instant::now();
    let primary = Cluster::start("ivfpq-maxsim", "fsync = off");
    let replica = primary.start_replica("ivfpq-maxsim-standby");
    let mut c = primary.connect();
    exec(
        &mut c,
        &format!(
            "CREATE EXTENSION arrw; CREATE TABLE docs (id int PRIMARY KEY, v vector({DIM})[])"
        ),
    );
    let mut blobs = Blobs::new(31, 6, DIM);
    let base: Vec<(i32, Vec<Vec<f32>>)> = (0..400).map(|i| (i, doc(&mut blobs, i))).collect();
    insert_docs(&mut c, &base);
    // 8-byte codes: ~600 entries per page, so inserts soon add pages.
    exec(
        &mut c,
        &format!("CREATE INDEX docs_v ON docs USING ivfpq (v vector_maxsim_ops) WITH (lists = {LISTS}, m = 16, nbits = 4)"),
    );
    step(t0, "index built");
    let mut qb = Blobs::new(31, 6, DIM);
    qb.rng = Rng(0xabc);
    let queries: Vec<Vec<Vec<f32>>> = (0..8).map(|i| doc(&mut qb, i)).collect();
    drop(c);

    // Writers commit single-document inserts until the server is killed.
    let committed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..3 {
            let (committed, primary) = (&committed, &primary);
            s.spawn(move || {
                let mut c = primary.connect();
                let mut b = Blobs::new(31, 6, DIM);
                b.rng = Rng(0x77 + w as u64);
                let mut id = 100_000 * (w + 1);
                loop {
                    let d = doc(&mut b, id);
                    let sql = format!("INSERT INTO docs (id, v) VALUES ({id}, {})", arr(&d));
                    if c.batch_execute(&sql).is_err() {
                        break;
                    }
                    committed.lock().unwrap().push(id);
                    id += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(800));
        primary.stop("immediate");
    });
    let committed = committed.into_inner().unwrap();
    primary.start_server();
    step(
        t0,
        &format!(
            "crashed after {} committed inserts, restarted",
            committed.len()
        ),
    );
    let mut c = primary.connect();
    exact_maxsim_settings(&mut c, LISTS);
    assert_index_check(&mut c, "docs_v");
    let in_table = ids_in_table(&mut c, "docs");
    assert!(
        committed.iter().all(|id| in_table.contains(id)),
        "a committed row is lost"
    );
    assert_maxsim_exact(&mut c, &queries, "after the crash");
    let (rows, elements) = {
        let r = c
            .query_one(
                "SELECT (SELECT rows FROM arrw.ivfpq_info('docs_v')), \
                 (SELECT sum(array_length(v, 1))::bigint FROM docs)",
                &[],
            )
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1))
    };
    // A crash between two elements' records may leave entries of an
    // uncommitted row (VACUUM removes them), never fewer than the table's.
    assert!(rows >= elements, "{rows} entries for {elements} elements");
    step(t0, "crash: every committed row found, exact order");

    // Changes, replayed on the standby: same answers there.
    let more: Vec<(i32, Vec<Vec<f32>>)> = (400..900).map(|i| (i, doc(&mut blobs, i))).collect();
    insert_docs(&mut c, &more);
    exec(&mut c, "DELETE FROM docs WHERE id % 3 = 0");
    exec(&mut c, "VACUUM docs");
    primary.wait_for_replay(&replica);
    let mut r = replica.connect();
    exact_maxsim_settings(&mut r, LISTS);
    assert_maxsim_exact(&mut r, &queries, "standby");
    for q in &queries {
        assert_eq!(
            maxsim_ids(&mut c, q, 10),
            maxsim_ids(&mut r, q, 10),
            "primary vs standby"
        );
    }
    for s in [&mut c, &mut r] {
        exec(
            s,
            "SET ivfpq.probes = 1; SET ivfpq.maxsim_depth = 50; SET ivfpq.rerank = 5",
        );
    }
    for q in &queries {
        assert_eq!(
            maxsim_ids(&mut c, q, 10),
            maxsim_ids(&mut r, q, 10),
            "approximate: primary vs standby"
        );
    }
    assert_index_check(&mut r, "docs_v");
    step(t0, "standby answers like the primary");
    assert_log_clean(&primary);
    assert_log_clean(&replica);
}

/// The index functions on the unbuilt index `ub_v` say it is not built (55000).
fn expect_unbuilt(c: &mut Client) {
    for sql in [
        "SELECT arrw.ivfpq_check('ub_v')",
        "SELECT * FROM arrw.ivfpq_info('ub_v')",
        "SELECT arrw.ivfpq_default_probes('ub_v')",
    ] {
        let e = c.batch_execute(sql).expect_err(sql);
        assert_eq!(
            e.code().map(|s| s.code()),
            Some("55000"),
            "{sql}: {}",
            msg(&e)
        );
        assert!(msg(&e).contains("has not been built"), "{sql}: {}", msg(&e));
    }
}

/// A CREATE INDEX CONCURRENTLY cancelled while it waits for the table's older
/// writers leaves an index of no blocks (invalid, never built): arrw's
/// functions on it answer 55000, saying so, instead of a read past the end of
/// the index (XX001).
#[test]
fn functions_on_an_unbuilt_concurrent_index_say_so() {
    let cluster = Cluster::start("ivfpq-unbuilt", "fsync = off");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "CREATE EXTENSION arrw; CREATE TABLE ub (id int, v vector(2));
         INSERT INTO ub SELECT i, ARRAY[i, i] FROM generate_series(1, 100) i",
    );
    // An open writer: the concurrent build waits for it after creating the index.
    let mut writer = cluster.connect();
    exec(&mut writer, "BEGIN; INSERT INTO ub VALUES (0, '[0,0]')");
    exec(&mut c, "SET statement_timeout = '500ms'");
    let e = c
        .batch_execute("CREATE INDEX CONCURRENTLY ub_v ON ub USING ivfpq (v)")
        .expect_err("waits for the writer");
    assert_eq!(e.code().map(|s| s.code()), Some("57014"), "{}", msg(&e));
    exec(&mut writer, "ROLLBACK");
    exec(&mut c, "RESET statement_timeout");
    let (valid, size): (bool, i64) = {
        let r = c
            .query_one(
                "SELECT i.indisvalid, pg_relation_size('ub_v') FROM pg_index i \
                 WHERE i.indexrelid = 'ub_v'::regclass",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(!valid && size == 0, "valid {valid}, {size} bytes");
    expect_unbuilt(&mut c);

    // A crash during a concurrent build (or a REINDEX CONCURRENTLY's new index)
    // leaves blocks but no meta page, which the build writes last: unbuilt too,
    // not damaged (it was XX002 without block or hint). The same all-zero meta
    // page on a valid index is damage: XX002 naming block 0, with the hint.
    exec(
        &mut c,
        "CREATE TABLE okt (id int, v vector(2));
         INSERT INTO okt SELECT i, ARRAY[i, -i] FROM generate_series(1, 100) i;
         CREATE INDEX okt_v ON okt USING ivfpq (v)",
    );
    let path = |c: &mut Client, idx: &str| -> std::path::PathBuf {
        let rel: String = c
            .query_one(&format!("SELECT pg_relation_filepath('{idx}')"), &[])
            .unwrap()
            .get(0);
        cluster.dir.join("data").join(rel)
    };
    let (ub, okt) = (path(&mut c, "ub_v"), path(&mut c, "okt_v"));
    drop((c, writer));
    cluster.stop("fast");
    std::fs::write(&ub, vec![0u8; 3 * 8192]).unwrap();
    let mut bytes = std::fs::read(&okt).unwrap();
    bytes[..8192].fill(0);
    std::fs::write(&okt, bytes).unwrap();
    cluster.start_server();
    let mut c = cluster.connect();
    expect_unbuilt(&mut c);
    for sql in [
        "SELECT arrw.ivfpq_check('okt_v')",
        "SELECT * FROM arrw.ivfpq_info('okt_v')",
        "SET enable_seqscan = off; SELECT id FROM okt ORDER BY v <-> '[1,1]' LIMIT 3",
    ] {
        expect_corrupted(&mut c, sql, "okt_v");
    }
}

/// A write of pending entries that fails inside a subtransaction (a cancel
/// inside a savepoint) lost them, and the outer transaction committed rows
/// its index lacked (35,000 of 40,000 once). Now such a transaction cannot
/// commit (40000) and nothing is lost; when the cancel lands outside the
/// write, the commit succeeds with every row in the index.
/// `ALTER INDEX ... SET TABLESPACE` locks the index alone, and a writer's
/// lock on an index lasts only to the end of its statement: another session
/// copied the index's pages between two statements of a transaction holding
/// pending entries, whose next INSERT or COMMIT then failed with an internal
/// error (XX000, "was rewritten"), losing its rows (hunt-99). The copy is the
/// same build: the entries go into it.
#[test]
fn an_index_moved_to_another_tablespace_keeps_an_open_transactions_rows() {
    let cluster = Cluster::start("ivfpq-spc", "autovacuum = off");
    let spc = cluster.dir.join("spc");
    std::fs::create_dir_all(&spc).unwrap();
    chown_postgres(&spc);
    let mut a = cluster.connect();
    let mut b = cluster.connect();
    exec(
        &mut a,
        &format!("CREATE TABLESPACE spc LOCATION '{}'", spc.display()),
    );
    exec(
        &mut a,
        "CREATE EXTENSION arrw; CREATE TABLE mv (id int, v vector(8));
         INSERT INTO mv SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 8) WHERE i > 0)
           FROM generate_series(1, 3000) i;
         CREATE INDEX mv_v ON mv USING ivfpq (v) WITH (lists = 4, m = 4)",
    );
    for (round, to) in ["spc", "pg_default", "spc"].into_iter().enumerate() {
        let first = 10_000 * (round as i32 + 1);
        exec(
            &mut a,
            &format!(
                "BEGIN; INSERT INTO mv SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 8) WHERE i > 0)
                   FROM generate_series({first}, {first} + 99) i"
            ),
        );
        // Does not wait for `a`: its table lock does not conflict, and its
        // index lock went with its statement.
        exec(&mut b, &format!("ALTER INDEX mv_v SET TABLESPACE {to}"));
        // Round 2 inserts again after the move, then commits; the others
        // commit at once.
        if round == 1 {
            exec(
                &mut a,
                &format!("INSERT INTO mv VALUES ({first} + 100, '[1,2,3,4,5,6,7,8]')"),
            );
        }
        exec(&mut a, "COMMIT");
        let table = count(&mut a, "SELECT count(*) FROM mv");
        let indexed: i64 = a
            .query_one("SELECT rows FROM arrw.ivfpq_info('mv_v')", &[])
            .unwrap()
            .get(0);
        assert_eq!(
            indexed, table,
            "round {round}: the index lacks committed rows"
        );
        assert_index_check(&mut a, "mv_v");
    }
    assert_eq!(count(&mut a, "SELECT count(*) FROM mv"), 3000 + 3 * 100 + 1);
    // Every committed row is found by the index.
    exec(&mut a, "SET enable_seqscan = off; SET ivfpq.probes = 4");
    let found = count(
        &mut a,
        "SELECT count(*) FROM (SELECT id FROM mv ORDER BY v <-> '[0,0,0,0,0,0,0,0]' LIMIT 10000) s",
    );
    assert_eq!(found, 3301);
}

#[test]
fn a_failed_write_of_pending_entries_in_a_savepoint_dooms_the_transaction() {
    let cluster = Cluster::start("ivfpq-lost", "fsync = off\nautovacuum = off");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "CREATE EXTENSION arrw; CREATE TABLE lo (id int, v vector(384));
         INSERT INTO lo SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 384) WHERE i > 0)
           FROM generate_series(1, 2000) i;
         CREATE INDEX lo_v ON lo USING ivfpq (v) WITH (lists = 5)",
    );
    let mut doomed = 0;
    for (round, timeout_ms) in [1, 3, 10, 30].into_iter().enumerate() {
        let first = 100_000 * (round as i32 + 1);
        exec(
            &mut c,
            &format!(
                "SET work_mem = '64MB'; BEGIN;
                 INSERT INTO lo SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 384) WHERE i > 0)
                   FROM generate_series({first}, {first} + 29999) i;
                 SAVEPOINT s"
            ),
        );
        // A query (SET would write the entries itself), then one that writes them.
        exec(
            &mut c,
            &format!("SELECT set_config('statement_timeout', '{timeout_ms}ms', true)"),
        );
        let cancelled = c
            .batch_execute("SELECT rows FROM arrw.ivfpq_info('lo_v')")
            .is_err();
        exec(
            &mut c,
            "ROLLBACK TO SAVEPOINT s; SELECT set_config('statement_timeout', '0', true)",
        );
        if let Err(e) = c.batch_execute("COMMIT") {
            assert!(cancelled);
            assert_eq!(e.code().map(|s| s.code()), Some("40000"), "{}", msg(&e));
            doomed += 1;
        }
        exec(&mut c, "RESET work_mem");
        // Whatever happened, the index has every row of the table.
        let table = count(&mut c, "SELECT count(*) FROM lo");
        let indexed: i64 = c
            .query_one("SELECT rows FROM arrw.ivfpq_info('lo_v')", &[])
            .unwrap()
            .get(0);
        assert_eq!(
            indexed, table,
            "round {round}: the index lacks committed rows"
        );
        assert_index_check(&mut c, "lo_v");
    }
    assert!(
        doomed > 0,
        "no cancel landed inside a write: the test tested nothing"
    );
}

/// Rows this transaction just inserted wait in this backend's memory until a
/// scan needs them; a parallel worker's scan of the index (its own, empty,
/// registry) missed them: under force_parallel_mode a LIMIT 1 at the new row's
/// own vector returned another row.
#[test]
fn parallel_workers_see_the_transactions_new_rows() {
    let cluster = Cluster::start("ivfpq-parallel", "fsync = off\nautovacuum = off");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "CREATE EXTENSION arrw; CREATE TABLE pw (id int, v vector(4));
         INSERT INTO pw SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 5] FROM generate_series(1, 5000) i;
         CREATE INDEX pw_v ON pw USING ivfpq (v) WITH (lists = 4);
         SET ivfpq.probes = 4",
    );
    exec(&mut c, "BEGIN; SET LOCAL force_parallel_mode = on");
    exec(&mut c, "INSERT INTO pw VALUES (-3, '[40,40,40,40]')");
    let plan = c
        .query(
            "EXPLAIN (COSTS OFF) SELECT id FROM pw ORDER BY v <-> '[40,40,40,40]' LIMIT 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("Gather"), "{plan}");
    // EXPLAIN is a utility statement, which writes pending entries: another row.
    exec(&mut c, "INSERT INTO pw VALUES (-4, '[50,50,50,50]')");
    let id: i32 = c
        .query_one(
            "SELECT id FROM pw ORDER BY v <-> '[50,50,50,50]' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(id, -4, "the worker's scan missed this transaction's row");
    exec(&mut c, "COMMIT");
}

/// A logical replication apply worker runs a replicated TRUNCATE itself
/// (`ExecuteTruncateGuts`), past the utility hook that writes a transaction's
/// pending index entries before a rewrite: a transaction of INSERT, TRUNCATE,
/// INSERT into a table whose subscriber copy had a trained ivfpq index failed
/// at every retry ("was rewritten while it had entries not yet written"), the
/// subscriber kept its old rows and the publisher its WAL.
#[test]
fn a_subscriber_applies_a_truncate_between_inserts() {
    let publisher = Cluster::start("ivfpq-pub", "fsync = off");
    let subscriber = Cluster::start("ivfpq-sub", "fsync = off");
    let mut p = publisher.connect();
    let mut s = subscriber.connect();
    let table = "CREATE EXTENSION arrw;
         CREATE TABLE t (id int PRIMARY KEY, v vector(4));
         CREATE TABLE pt (id int, v vector(4)) PARTITION BY RANGE (id);
         CREATE TABLE pt0 PARTITION OF pt FOR VALUES FROM (MINVALUE) TO (MAXVALUE);";
    exec(&mut p, table);
    exec(
        &mut p,
        "INSERT INTO t SELECT g, array[g % 7, g % 11, g % 13, g % 17]::real[]::vector
           FROM generate_series(1, 2000) g;
         INSERT INTO pt SELECT * FROM t;
         CREATE PUBLICATION pub FOR TABLE t, pt",
    );
    exec(&mut s, table);
    exec(
        &mut s,
        &format!(
            "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub",
            publisher.conninfo("postgres")
        ),
    );
    let wait_for = |s: &mut Client, sql: &str, want: i64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = count(s, sql);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sql}: {got}, not {want}, after 60 s; subscriber's log:\n{}",
                subscriber.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for(&mut s, "SELECT count(*) FROM t", 2000);
    wait_for(&mut s, "SELECT count(*) FROM pt", 2000);
    exec(
        &mut s,
        "CREATE INDEX ti ON t USING ivfpq (v) WITH (lists = 4, m = 2);
         CREATE INDEX pti ON pt USING ivfpq (v) WITH (lists = 4, m = 2)",
    );
    for table in ["t", "pt"] {
        exec(
            &mut p,
            &format!(
                "BEGIN;
                 INSERT INTO {table} SELECT g, '[1,2,3,4]' FROM generate_series(3001, 3010) g;
                 TRUNCATE {table};
                 INSERT INTO {table} SELECT g, '[4,3,2,1]' FROM generate_series(4001, 4005) g;
                 COMMIT"
            ),
        );
    }
    wait_for(&mut s, "SELECT count(*) FROM t", 5);
    wait_for(&mut s, "SELECT count(*) FROM pt", 5);
    // Every row the subscriber has, its indexes have (and no other).
    exact_settings(&mut s, 4);
    for (table, index) in [("t", "ti"), ("pt", "pt0_v_idx")] {
        assert_index_matches_table(&mut s, table, index, 4);
        assert_index_check(&mut s, index);
    }
    assert!(
        !subscriber.log().contains("was rewritten"),
        "{}",
        subscriber.log()
    );
}

/// The same table in the same physical order trains the same model
/// (arrw_core::sample). A build's table scan was a synchronized scan: on a
/// table larger than a quarter of `shared_buffers` it started where another
/// scan of the table had stopped, the seeded sample saw the rows rotated, and
/// a REINDEX after an unrelated `LIMIT 1` scan trained another model
/// (`pg_restore -j` built indexes that differed from their source; hunt-101).
#[test]
fn a_rebuild_trains_the_same_model_whatever_scans_ran_before() {
    let cluster = Cluster::start("ivfpq-sync", "autovacuum = off");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "CREATE EXTENSION arrw; SELECT setseed(0.42);
         CREATE TABLE syn (id int, e vector(256));
         INSERT INTO syn SELECT g, (SELECT array_agg(random()::real) FROM generate_series(1, 256) x WHERE g > -x)
           FROM generate_series(1, 20000) g;
         CREATE INDEX syn_e ON syn USING ivfpq (e) WITH (lists = 40)",
    );
    let blocks = count(&mut c, "SELECT pg_relation_size('syn') / 8192");
    let quarter = count(
        &mut c,
        "SELECT setting::bigint / 4 FROM pg_settings WHERE name = 'shared_buffers'",
    );
    assert!(
        blocks > quarter,
        "{blocks} blocks: too small for a synchronized scan"
    );
    let model = |c: &mut Client| -> (i64, i64) {
        let r = c
            .query_one(
                "SELECT rows_max::int8, rows_min::int8 FROM arrw.ivfpq_info('syn_e')",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    exec(&mut c, "REINDEX INDEX syn_e");
    let first = model(&mut c);
    for stop in [7_000, 13_000] {
        // A sequential scan that stops part of the way through the table.
        exec(
            &mut c,
            &format!(
                "SET enable_indexscan = off; SET enable_bitmapscan = off;
                 SET max_parallel_workers_per_gather = 0;
                 SELECT id FROM syn WHERE id = {stop} LIMIT 1;
                 RESET enable_indexscan; RESET enable_bitmapscan;
                 RESET max_parallel_workers_per_gather"
            ),
        );
        exec(&mut c, "REINDEX INDEX syn_e");
        assert_eq!(model(&mut c), first, "after a scan stopped at row {stop}");
    }
}

/// On a server that does not preload arrw, each session loads it at its
/// first use, sometimes in the middle of the statement that needs one of its
/// hooks (hunt-78, hunt-158):
/// - `ALTER INDEX ... SET (...)` is checked against the index's dimensions
///   (the library comes with the index's opening, inside the statement, and
///   the check hung on a utility hook that load installed too late for it:
///   `m = 3` went onto a 4-d index and its next REINDEX, and every restore of
///   a dump, failed);
/// - and under the lock the options declare (PostgreSQL chose
///   ShareUpdateExclusiveLock, having none registered, so a concurrent first
///   row could give the index dimensions the check never saw);
/// - an `INSERT ... SELECT ... ON CONFLICT DO NOTHING` that loads the library
///   in its ExecutorStart writes its entries at once, as with preloading (they
///   were kept to commit, so a speculative row that lost its race and whose
///   TID VACUUM handed on left its entry on another row);
/// - `arrw.wait_job` on a job no worker will run is an error, not a wait
///   without end.
#[test]
fn a_session_loading_arrw_mid_statement_keeps_its_checks() {
    let cluster = Cluster::start("ivfpq-nopreload", "shared_preload_libraries = ''");
    let mut setup = cluster.connect();
    exec(
        &mut setup,
        "CREATE EXTENSION arrw;
         CREATE TABLE t (id int, v vector(4));
         INSERT INTO t SELECT i, ARRAY[i, i % 7, i % 5, 1]::real[]::vector
           FROM generate_series(1, 200) i;
         CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = 2);
         CREATE TABLE e (v vector);
         CREATE INDEX e_v ON e USING ivfpq (v);
         CREATE TABLE u (id int PRIMARY KEY, v vector(4));
         INSERT INTO u SELECT i, ARRAY[i % 17, i % 13, i % 7, 1]::real[]::vector
           FROM generate_series(1, 2000) i;
         CREATE INDEX u_v ON u USING ivfpq (v) WITH (lists = 8);
         CREATE TABLE staging AS SELECT i AS id, ARRAY[i % 5, i % 3, 1, 2]::real[]::vector AS v
           FROM generate_series(1901, 2100) i",
    );
    let opts = |c: &mut Client| -> String {
        c.query_one(
            "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 't_v'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    // Each statement is the first of a new session: the library is not loaded.
    for sql in [
        "ALTER INDEX t_v SET (m = 3)",
        "ALTER TABLE t_v SET (nbits = 8, m = 3)",
    ] {
        let mut c = cluster.connect();
        let e = c.batch_execute(sql).expect_err(sql);
        assert_eq!(
            e.code().map(|s| s.code()),
            Some("22023"),
            "{sql}: {}",
            msg(&e)
        );
        assert_eq!(opts(&mut c), "lists=2", "{sql}");
    }
    // Changes that fit, and changes of the row that are not options, go through.
    let mut c = cluster.connect();
    exec(&mut c, "ALTER INDEX t_v SET (m = 2, probes = 2)");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "ALTER INDEX t_v RENAME TO t_v2; ALTER INDEX t_v2 RENAME TO t_v",
    );
    assert_eq!(opts(&mut c), "lists=2,m=2,probes=2");
    exec(&mut c, "REINDEX INDEX t_v");

    let mode_on = |c: &mut Client, pid: i32, rel: &str| -> Vec<String> {
        c.query(
            "SELECT mode FROM pg_locks WHERE pid = $1 AND relation = $2::text::regclass ORDER BY mode",
            &[&pid, &rel],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    // An option that shapes the index takes AccessExclusiveLock, one that
    // does not only ShareUpdateExclusiveLock, as with preloading.
    for (sql, mode) in [
        ("ALTER INDEX e_v SET (m = 2)", "AccessExclusiveLock"),
        (
            "ALTER INDEX e_v SET (probes = 3)",
            "ShareUpdateExclusiveLock",
        ),
    ] {
        let mut x = cluster.connect();
        let pid: i32 = x.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        x.batch_execute(&format!("BEGIN; {sql}")).unwrap();
        let mut y = cluster.connect();
        let modes = mode_on(&mut y, pid, "e_v");
        assert!(modes.contains(&mode.to_string()), "{sql}: {modes:?}");
        if mode != "AccessExclusiveLock" {
            assert!(
                !modes.contains(&"AccessExclusiveLock".to_string()),
                "{sql}: {modes:?}"
            );
        }
        exec(&mut x, "ROLLBACK");
    }

    // The upsert that loads the library: its entries are on the pages while
    // its transaction is still open (2,100 rows, not the 2,000 before it).
    let mut a = cluster.connect();
    a.batch_execute(
        "BEGIN; INSERT INTO u (id, v) SELECT id, v FROM staging ON CONFLICT DO NOTHING",
    )
    .unwrap();
    let mut b = cluster.connect();
    let rows: i64 = b
        .query_one("SELECT rows::int8 FROM arrw.ivfpq_info('u_v')", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 2100,
        "entries on the pages while the upsert's transaction is open"
    );
    exec(&mut a, "COMMIT");

    let mut j = cluster.connect();
    let id: i64 = j
        .query_one(
            "SELECT arrw.submit_job('index_rebuild', '{\"index\": \"t_v\"}')",
            &[],
        )
        .unwrap()
        .get(0);
    let e = j
        .batch_execute(&format!(
            "SET statement_timeout = '20s'; SELECT arrw.wait_job({id})"
        ))
        .expect_err("wait_job without workers");
    assert_eq!(e.code().map(|s| s.code()), Some("55000"), "{}", msg(&e));
}

/// A build at PostgreSQL's smallest `shared_buffers` (128kB: 16 buffers). Its
/// end WAL-logged the index 32 pages at a time, each record's pages locked
/// together, and every build of more than ~16 pages failed with XX000 "no
/// unpinned buffers available" (hunt-162); CREATE INDEX, REINDEX and a crash
/// after it now work, and the index answers as a sequential scan does.
#[test]
fn a_build_fits_the_smallest_shared_buffers() {
    let cluster = Cluster::start("ivfpq-tiny-buffers", "shared_buffers = 128kB");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "CREATE EXTENSION arrw;
         CREATE TABLE t (id int, v vector(128));
         INSERT INTO t SELECT g, array(SELECT ((g * 7 + i * 13) % 256)::real
                                       FROM generate_series(1, 128) i)::vector
           FROM generate_series(1, 5000) g;
         CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = 10);
         REINDEX INDEX t_v",
    );
    assert!(count(&mut c, "SELECT pg_relation_size('t_v') / 8192") > 32);
    cluster.stop("immediate");
    cluster.start_server();
    let mut c = cluster.connect();
    let nearest = |c: &mut Client, seq: bool| -> i64 {
        let set = if seq { "off" } else { "on" };
        c.batch_execute(&format!(
            "SET enable_indexscan = {set}; SET enable_seqscan = {}",
            if seq { "on" } else { "off" }
        ))
        .unwrap();
        c.query_one(
            "SELECT id::int8 FROM t ORDER BY v <-> (SELECT v FROM t WHERE id = 77) LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(nearest(&mut c, false), nearest(&mut c, true));
}
