//! Resource bounds of ivfpq against a real server: memory that does not grow with
//! the table, cancellation of long builds, and the build's thread budget.
//!
//! Memory is the backend's anonymous resident memory (`RssAnon` in
//! /proc/<pid>/status: private allocations, not shared buffers), sampled every
//! few milliseconds from this process while a statement runs. Each check runs the
//! same statement at two table sizes and compares the peaks: before the fixes they
//! grew by the size of the vectors read (a build of 1536-d rows kept every
//! detoasted vector until the statement ended).

use arrw_tests::{exec, msg, Cluster};
use postgres::Client;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn backend_pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// A field of /proc/<pid>/status in kB (0 once the process is gone).
fn status_kb(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `sql` on `c` while sampling the backend's anonymous memory; returns the
/// peak in MB above what it held before the statement.
fn peak_growth_mb(c: &mut Client, sql: &str) -> f64 {
    let pid = backend_pid(c);
    let before = status_kb(pid, "RssAnon:");
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(status_kb(pid, "RssAnon:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    exec(c, sql);
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (peak.load(Ordering::Relaxed).saturating_sub(before)) as f64 / 1024.0
}

/// `rows` random vectors of `dim` dimensions in table `name` (1536 dimensions are
/// stored out of line, as TOAST).
fn make_table(c: &mut Client, name: &str, rows: usize, dim: usize) {
    exec(
        c,
        &format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (id int, v vector({dim}));
             ALTER TABLE {name} ALTER v SET STORAGE EXTERNAL;
             INSERT INTO {name}
               SELECT i, ARRAY(SELECT random() FROM generate_series(1, {dim}) WHERE i > 0)::real[]::vector
               FROM generate_series(1, {rows}) i;"
        ),
    );
}

/// A fresh cluster named `name` (no fsync, no autovacuum) with arrw created,
/// and a connection to it.
fn arrw_cluster(name: &str) -> (Cluster, Client) {
    let cluster = Cluster::start(name, "fsync = off\nautovacuum = off");
    let mut c = cluster.connect();
    exec(&mut c, "CREATE EXTENSION arrw");
    (cluster, c)
}

/// `err` is a cancel (57014) and no relation named `index` was left behind.
fn assert_cancelled_leaving_nothing(c: &mut Client, err: &postgres::Error, index: &str) {
    assert_eq!(
        err.as_db_error().map(|d| d.code().code()),
        Some("57014"),
        "{}",
        msg(err)
    );
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = $1",
            &[&index],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "{index} was left behind");
}

/// Runs `ddl` (a build) on a new connection while `c` polls the build's row of
/// `pg_stat_progress_create_index`, calling `seen(c, pid, phase, done, total)`
/// on each, until the build ends or `seen` returns true. Returns the build's
/// result and its connection.
fn poll_build(
    cluster: &Cluster,
    c: &mut Client,
    ddl: &str,
    mut seen: impl FnMut(&mut Client, i32, &str, i64, i64) -> bool,
) -> (Result<(), postgres::Error>, Client) {
    let mut b = cluster.connect();
    let pid = backend_pid(&mut b);
    std::thread::scope(|s| {
        let h = s.spawn(move || (b.batch_execute(ddl), b));
        while !h.is_finished() {
            let row = c
                .query_opt(
                    "SELECT phase, tuples_done, tuples_total FROM pg_stat_progress_create_index \
                     WHERE pid = $1",
                    &[&pid],
                )
                .unwrap();
            if let Some(r) = row {
                let phase: String = r.get(0);
                if seen(c, pid, &phase, r.get(1), r.get(2)) {
                    break;
                }
            }
        }
        h.join().unwrap()
    })
}

#[test]
fn build_and_update_memory_do_not_grow_with_the_table() {
    let (cluster, mut c) = arrw_cluster("res-memory");
    let dim = 1536;
    let (small, large) = (2_000, 8_000); // 12 MB and 49 MB of vectors
    let mut build = Vec::new();
    let mut update = Vec::new();
    for (name, rows) in [("small", small), ("large", large)] {
        make_table(&mut c, name, rows, dim);
        let mut s = cluster.connect();
        exec(&mut s, "SET maintenance_work_mem = '16MB'");
        build.push(peak_growth_mb(
            &mut s,
            &format!("CREATE INDEX {name}_idx ON {name} USING ivfpq (v) WITH (lists = 4)"),
        ));
        let mut s = cluster.connect();
        // Every new row version gets an index entry (the table's pages are
        // full, so no update is HOT), and aminsert detoasts its vector.
        update.push(peak_growth_mb(
            &mut s,
            &format!("UPDATE {name} SET id = id + 1"),
        ));
    }
    eprintln!("build peak growth MB {build:?}, update {update:?}");
    // Four times the rows: the peaks may differ by noise, never by the 37 MB of
    // extra vectors (or twice that: the build reads every row twice).
    assert!(
        build[1] < build[0] + 16.0,
        "build memory grew with the table: {build:?} MB"
    );
    assert!(
        update[1] < update[0] + 16.0,
        "update memory grew with the table: {update:?} MB"
    );
    // The build stayed near maintenance_work_mem (16 MB) plus allocator slack.
    assert!(build[1] < 48.0, "build took {} MB", build[1]);
}

#[test]
fn a_query_on_an_index_built_empty_stays_within_work_mem() {
    let cluster = Cluster::start("res-untrained", "fsync = off\nautovacuum = off");
    let mut c = cluster.connect();
    exec(
        &mut c,
        "CREATE EXTENSION arrw;
         CREATE TABLE t (id int, v vector(4));
         CREATE INDEX t_idx ON t USING ivfpq (v);",
    );
    let mut peaks = Vec::new();
    let mut total = 0;
    for rows in [40_000, 200_000] {
        exec(
            &mut c,
            &format!(
                "INSERT INTO t SELECT i, ARRAY[random(), random(), random(), random()]::vector
                 FROM generate_series({}, {}) i",
                total + 1,
                rows
            ),
        );
        total = rows;
        let mut s = cluster.connect();
        exec(&mut s, "SET work_mem = '64kB'; SET enable_seqscan = off");
        peaks.push(peak_growth_mb(
            &mut s,
            "SELECT id FROM t ORDER BY v <-> '[0.5,0.5,0.5,0.5]' LIMIT 1",
        ));
    }
    eprintln!("untrained scan peak growth MB {peaks:?}");
    assert!(
        peaks[1] < peaks[0] + 6.0,
        "scan memory grew with the table: {peaks:?} MB"
    );
}

/// A slow build: 2,000 lists over 60,000 rows of 128 dimensions.
fn slow_build_table(c: &mut Client) {
    make_table(c, "slow", 60_000, 128);
    exec(c, "ALTER TABLE slow ALTER v SET STORAGE PLAIN");
}

#[test]
fn a_cancelled_build_stops_within_a_moment_and_leaves_no_index() {
    let (_cluster, mut c) = arrw_cluster("res-cancel");
    slow_build_table(&mut c);
    exec(
        &mut c,
        "SET maintenance_work_mem = '512MB'; SET statement_timeout = '1500ms'",
    );
    let t0 = Instant::now();
    let err = c
        .batch_execute("CREATE INDEX slow_idx ON slow USING ivfpq (v) WITH (lists = 2000)")
        .expect_err("the build should take far longer than the timeout");
    let took = t0.elapsed();
    // Training alone takes tens of seconds here; before the fix the timeout took
    // effect only when a training phase ended (seconds late).
    assert!(
        took < Duration::from_millis(1500 + 1000),
        "cancelled after {took:?}"
    );
    exec(&mut c, "RESET statement_timeout");
    assert_cancelled_leaving_nothing(&mut c, &err, "slow_idx");
    // The backend is healthy afterwards and can build again.
    exec(
        &mut c,
        "CREATE INDEX small_idx ON slow USING ivfpq (v) WITH (lists = 4)",
    );
}

/// `maxsim` is `query × document` inner products, up to 8,192 × 8,192 vectors
/// of up to 16,000 dimensions in one call: it must stop at a cancel between
/// query vectors, not when the whole sum is done (8,192 × 8,192 × 1,024 here,
/// tens of seconds on this machine before the fix).
#[test]
fn a_long_maxsim_call_is_cancelled_within_a_moment() {
    let (_cluster, mut c) = arrw_cluster("res-maxsim");
    exec(&mut c, "SET statement_timeout = '300ms'");
    let t0 = Instant::now();
    let err = c
        .batch_execute(
            "SELECT maxsim(a, a) FROM (SELECT array_fill(v, ARRAY[8192]) AS a \
             FROM (SELECT array_fill(0.5::real, ARRAY[1024])::vector AS v) s) t",
        )
        .expect_err("the call should take far longer than the timeout");
    let took = t0.elapsed();
    assert!(
        msg(&err).contains("statement timeout"),
        "unexpected error: {}",
        msg(&err)
    );
    assert!(
        took < Duration::from_millis(300 + 1000),
        "cancelled after {took:?}"
    );
}

/// A cancel that arrives while the build encodes rows (the table scan on the
/// backend's thread, a batch on the compute threads, see `encode_table`)
/// stops the build at once: the batch in flight is stopped and waited for,
/// nothing is left behind, and the backend builds again.
/// Builds `ddl(attempt)` (up to 5 attempts) while polling its progress, and
/// cancels it as soon as `when(phase, tuples_done)` holds. Returns the build's
/// result, the time from the cancel to its end, the build's connection and
/// the attempt; None if no attempt was caught.
fn cancel_build_when(
    cluster: &Cluster,
    c: &mut Client,
    ddl: impl Fn(usize) -> String,
    when: impl Fn(&str, i64) -> bool,
) -> Option<(Result<(), postgres::Error>, Duration, Client, usize)> {
    for attempt in 0..5 {
        let mut sent = None;
        let (r, b) = poll_build(cluster, c, &ddl(attempt), |c, pid, phase, done, _| {
            if when(phase, done) {
                c.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
                sent = Some(Instant::now());
            }
            sent.is_some()
        });
        if let Some(at) = sent {
            return Some((r, at.elapsed(), b, attempt));
        }
    }
    None
}

#[test]
fn a_build_cancelled_while_it_encodes_stops_and_leaves_no_index() {
    let (cluster, mut c) = arrw_cluster("res-cancel-encode");
    // Few lists train in a moment; 300,000 rows take a while to encode.
    make_table(&mut c, "enc", 300_000, 64);
    let (r, after, mut b, attempt) = cancel_build_when(
        &cluster,
        &mut c,
        |attempt| format!("CREATE INDEX enc_{attempt} ON enc USING ivfpq (v) WITH (lists = 16)"),
        |phase, done| phase == "building index: encoding rows" && done > 0,
    )
    .expect("never caught the build encoding rows");
    let err = r.expect_err("the build went on after its cancel");
    assert!(
        after < Duration::from_millis(500),
        "cancelled after {after:?}"
    );
    assert_cancelled_leaving_nothing(&mut c, &err, &format!("enc_{attempt}"));
    exec(
        &mut b,
        "CREATE INDEX enc_again ON enc USING ivfpq (v) WITH (lists = 16)",
    );
    let ok: bool = b
        .query_one("SELECT arrw.ivfpq_check('enc_again')", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{}", msg(&e)));
    assert!(ok);
    // Every batch was written, the last ones too.
    let r = b
        .query_one(
            "SELECT rows, built_rows FROM arrw.ivfpq_info('enc_again')",
            &[],
        )
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (300_000, 300_000));
}

/// The threads of process `pid`: (thread id, name).
fn threads(pid: i32) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((
                e.file_name().to_string_lossy().to_string(),
                name.trim().to_string(),
            ))
        })
        .collect()
}

#[test]
fn a_build_computes_on_the_threads_max_parallel_maintenance_workers_allows() {
    let (_cluster, mut c) = arrw_cluster("res-threads");
    slow_build_table(&mut c);
    exec(
        &mut c,
        "SET max_parallel_maintenance_workers = 0; SET statement_timeout = '4s'",
    );
    let pid = backend_pid(&mut c);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            // Each thread's last name: a new thread carries its parent's name
            // until it names itself, so one sample may catch it unnamed.
            let mut last = std::collections::HashMap::new();
            let mut most_compute = 0;
            while !done.load(Ordering::Relaxed) {
                let now = threads(pid);
                let compute = now
                    .iter()
                    .filter(|t| t.1.starts_with("arrw-compute"))
                    .count();
                most_compute = most_compute.max(compute);
                last.extend(now);
                std::thread::sleep(Duration::from_millis(5));
            }
            let other: Vec<String> = last
                .into_values()
                .filter(|n| !n.starts_with("arrw-"))
                .collect();
            (most_compute, other)
        })
    };
    let _ = c.batch_execute("CREATE INDEX slow_idx ON slow USING ivfpq (v) WITH (lists = 2000)");
    done.store(true, Ordering::Relaxed);
    let (compute, other) = sampler.join().unwrap();
    // The leader only: one computing thread, and no unnamed helper threads
    // beside the backend's own (rayon's global pool would add one per core).
    assert_eq!(compute, 1, "computing threads");
    assert_eq!(other.len(), 1, "threads other than arrw's: {other:?}");
}

/// Outside a build, a backend computes on its own thread only: a scan (which
/// loads the model and prepares its query), an insert (which encodes its row),
/// `ivfpq_info` and VACUUM of every kind of ivfpq index leave the backend with
/// no thread beside its own. Before, each of them started rayon's global pool
/// (arrw-core's parallel loops run outside a build's pool): one unnamed thread
/// per core, kept until the backend exited.
#[test]
fn scans_inserts_and_info_start_no_threads() {
    let (cluster, mut c) = arrw_cluster("res-nothreads");
    let point = |i: usize| {
        let v: Vec<String> = (0..8)
            .map(|j| format!("{}", (i * 7 + j * 3) % 11))
            .collect();
        format!("[{}]", v.join(","))
    };
    exec(
        &mut c,
        "CREATE TABLE l2 (id int, v vector(8));
         INSERT INTO l2 SELECT i, ARRAY(SELECT random() FROM generate_series(1, 8) WHERE i > 0)::real[]::vector
           FROM generate_series(1, 5000) i;
         CREATE TABLE cos (LIKE l2);
         INSERT INTO cos SELECT * FROM l2;
         CREATE TABLE h (id int, v halfvec(8));
         INSERT INTO h SELECT id, v::halfvec FROM l2;
         CREATE TABLE mv (id int, vs vector(8)[]);
         INSERT INTO mv SELECT i, ARRAY(SELECT v FROM l2 WHERE l2.id BETWEEN i * 4 AND i * 4 + 3)
           FROM generate_series(1, 1000) i;
         CREATE INDEX l2_v ON l2 USING ivfpq (v) WITH (lists = 10);
         CREATE INDEX cos_v ON cos USING ivfpq (v vector_cosine_ops) WITH (lists = 10, nbits = 8);
         CREATE INDEX h_v ON h USING ivfpq (v halfvec_cosine_ops) WITH (lists = 10);
         CREATE INDEX mv_vs ON mv USING ivfpq (vs vector_maxsim_ops) WITH (lists = 10);",
    );
    let (q, q2) = (point(1), point(2));
    let steps = [
        format!("SELECT id FROM l2 ORDER BY v <-> '{q}' LIMIT 3"),
        format!("SELECT id FROM cos ORDER BY v <=> '{q}' LIMIT 3"),
        format!("SELECT id FROM h ORDER BY v <=> '{q}'::halfvec LIMIT 3"),
        format!("SELECT id FROM mv ORDER BY vs @# ARRAY['{q}', '{q2}']::vector[] LIMIT 3"),
        format!("INSERT INTO l2 VALUES (0, '{q}')"),
        format!("INSERT INTO cos VALUES (0, '{q}')"),
        format!("INSERT INTO h VALUES (0, '{q}')"),
        format!("INSERT INTO mv VALUES (0, ARRAY['{q}', '{q2}']::vector[])"),
        "UPDATE cos SET v = v WHERE id < 50".to_string(),
        "SELECT * FROM arrw.ivfpq_info('l2_v')".to_string(),
        "SELECT * FROM arrw.ivfpq_info('cos_v')".to_string(),
        // Dead entries for VACUUM: deleted below, before the first step.
        "VACUUM l2".to_string(),
    ];
    exec(&mut c, "DELETE FROM l2 WHERE id < 100");
    let mut grew = Vec::new();
    for sql in &steps {
        let mut s = cluster.connect();
        exec(&mut s, "SET enable_seqscan = off");
        let pid = backend_pid(&mut s);
        let before = threads(pid);
        assert_eq!(before.len(), 1, "a new backend's threads: {before:?}");
        if sql.contains("ORDER BY") {
            let plan: Vec<String> = s
                .query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(plan.join("\n").contains("Index Scan"), "{plan:?}");
        }
        exec(&mut s, sql);
        let after = threads(pid);
        if after.len() != 1 {
            grew.push(format!("{sql}: {after:?}"));
        }
    }
    assert!(
        grew.is_empty(),
        "backends left with threads beside their own:\n{}",
        grew.join("\n")
    );
}

/// `pg_stat_progress_create_index` while a build samples and trains: during
/// the sampling pass tuples_total is the table's estimated row count and
/// tuples_done the rows seen so far; while the model trains, tuples are k-means
/// work (rows assigned per Lloyd iteration), planned up front, done never above
/// planned. Both showed 0 of 0 before.
#[test]
fn sampling_and_training_report_tuples_done_of_total() {
    let (cluster, mut c) = arrw_cluster("res-progress");
    make_table(&mut c, "p", 400_000, 8);
    exec(&mut c, "ANALYZE p");
    let estimate: f32 = c
        .query_one("SELECT reltuples FROM pg_class WHERE relname = 'p'", &[])
        .unwrap()
        .get(0);
    assert!(estimate > 300_000.0, "{estimate}");
    // Each phase takes a few hundred ms here; poll them (a few tries, in case
    // a build slips through between two polls).
    let mut sampling: Vec<(i64, i64)> = Vec::new();
    let mut training: Vec<(i64, i64)> = Vec::new();
    for attempt in 0..5 {
        let ddl = format!("CREATE INDEX p_v_{attempt} ON p USING ivfpq (v) WITH (lists = 256)");
        let (r, _) = poll_build(&cluster, &mut c, &ddl, |_, _, phase, done, total| {
            if phase == "building index: sampling rows" {
                sampling.push((done, total));
            } else if phase == "building index: training model" {
                training.push((done, total));
            }
            false
        });
        r.unwrap_or_else(|e| panic!("{}", msg(&e)));
        if sampling.iter().any(|&(done, _)| done > 0) && training.iter().any(|&(done, _)| done > 0)
        {
            break;
        }
    }
    for &(done, total) in &sampling {
        assert_eq!(
            total, estimate as i64,
            "sampling: tuples_total is the estimate"
        );
        assert!(done <= 400_000, "{done}");
    }
    for &(done, total) in &training {
        assert!(done <= total, "training: {done} of {total}");
    }
    assert!(
        sampling.iter().any(|&(done, _)| done > 0),
        "sampling: tuples_done never moved: {sampling:?}"
    );
    assert!(
        training.iter().any(|&(done, total)| done > 0 && total > 0),
        "training: no work counted: {training:?}"
    );
}

/// While a build encodes, tuples_done and tuples_total count table rows, done
/// never above total, also for a `vector[]` index, whose rows give an entry
/// per element: done counted entries (4 a row here, up to 4× the total)
/// against a total that was the entries or the rows by turns (hunt-154).
#[test]
fn encoding_reports_table_rows_done_of_total() {
    let (cluster, mut c) = arrw_cluster("res-progress-encode");
    exec(
        &mut c,
        "CREATE TABLE d (id int, v vector(8)[]);
         INSERT INTO d SELECT i, ARRAY(SELECT ARRAY(SELECT random() FROM generate_series(1, 8)
             WHERE i > 0 AND e > 0)::real[]::vector FROM generate_series(1, 4) e)
           FROM generate_series(1, 150000) i;
         ANALYZE d",
    );
    let mut encoding: Vec<(i64, i64)> = Vec::new();
    for attempt in 0..5 {
        let ddl = format!(
            "SET maintenance_work_mem = '64MB';
             CREATE INDEX d_v_{attempt} ON d USING ivfpq (v vector_maxsim_ops) WITH (lists = 64)"
        );
        let (r, _) = poll_build(&cluster, &mut c, &ddl, |_, _, phase, done, total| {
            if phase == "building index: encoding rows" {
                encoding.push((done, total));
            }
            false
        });
        r.unwrap_or_else(|e| panic!("{}", msg(&e)));
        if encoding.iter().any(|&(done, _)| done > 0) {
            break;
        }
    }
    assert!(
        encoding.iter().any(|&(done, _)| done > 0),
        "encoding: tuples_done never moved: {encoding:?}"
    );
    for &(done, total) in &encoding {
        assert_eq!(total, 150_000, "encoding: tuples_total is the table's rows");
        assert!(done <= total, "encoding: {done} of {total}");
    }
}

/// `CREATE INDEX CONCURRENTLY`'s validation phase ("index validation:
/// scanning index", PostgreSQL's bulk delete of the new index with a callback
/// that collects its TIDs) shows blocks done of the index's blocks, as btree
/// does: it showed 0 of 0. With a refine code, whose fine pages are most of
/// the index and which the pass does not read, the count goes past half the
/// total (it sat at a quarter, counting data pages alone: hunt-157).
#[test]
fn concurrent_build_validation_reports_blocks() {
    let (cluster, mut c) = arrw_cluster("res-progress-validate");
    exec(
        &mut c,
        "CREATE TABLE d (id int, v vector(16));
         INSERT INTO d SELECT i, ARRAY(SELECT random() FROM generate_series(1, 16)
             WHERE i > 0)::real[]::vector FROM generate_series(1, 400000) i;
         ANALYZE d",
    );
    let mut seen: Vec<(i64, i64)> = Vec::new();
    for attempt in 0..5 {
        let ddl = format!(
            "CREATE INDEX CONCURRENTLY d_v_{attempt} ON d USING ivfpq (v) WITH (lists = 16, refine = 4)"
        );
        let (r, _) = poll_build(&cluster, &mut c, &ddl, |c, pid, phase, _, _| {
            if phase == "index validation: scanning index" {
                let r = c
                    .query_one(
                        "SELECT blocks_done, blocks_total FROM pg_stat_progress_create_index \
                         WHERE pid = $1",
                        &[&pid],
                    )
                    .unwrap();
                seen.push((r.get(0), r.get(1)));
            }
            false
        });
        r.unwrap_or_else(|e| panic!("{}", msg(&e)));
        if seen
            .iter()
            .any(|&(done, total)| total > 0 && done > total / 2)
        {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|&(done, total)| total > 0 && done > total / 2),
        "validation never showed more than half the blocks done: {seen:?}"
    );
    for &(done, total) in &seen {
        assert!(done <= total, "validation: {done} of {total} blocks");
    }
}

/// A transaction's pending index entries (and their codes while written)
/// stay within `work_mem`: the vectors grew by doubling, past the cap, and an
/// `INSERT ... SELECT` of 100,000 384-d rows took ~40 MB more than without the
/// index at `work_mem` 32MB.
#[test]
fn pending_entries_stay_within_work_mem() {
    let (cluster, mut c) = arrw_cluster("res-pending");
    let dim = 384;
    make_table(&mut c, "src", 50_000, dim); // 77 MB of vectors
    exec(
        &mut c,
        &format!(
            "CREATE TABLE with_idx (id int, v vector({dim})); CREATE TABLE no_idx (LIKE with_idx);
             INSERT INTO with_idx SELECT * FROM src LIMIT 2000;
             CREATE INDEX ON with_idx USING ivfpq (v) WITH (lists = 4)"
        ),
    );
    let mut growth = Vec::new();
    for t in ["no_idx", "with_idx"] {
        let mut s = cluster.connect();
        exec(&mut s, "SET work_mem = '32MB'");
        growth.push(peak_growth_mb(
            &mut s,
            &format!("INSERT INTO {t} SELECT * FROM src"),
        ));
    }
    eprintln!("INSERT ... SELECT peak growth MB (no index, ivfpq): {growth:?}");
    assert!(
        growth[1] - growth[0] < 36.0,
        "pending entries took {} MB more than the table alone at work_mem 32MB",
        growth[1] - growth[0]
    );
}

/// The cap holds for all of a transaction's indexes together: an `INSERT ...
/// SELECT` into 32 partitions, each with its own ivfpq index, kept up to
/// `work_mem` of entries for every one of them (64 partitions of 1536-d rows
/// grew the backend by 236 MB at the default 4MB; hunt-133).
#[test]
fn pending_entries_of_many_partitions_stay_within_work_mem_together() {
    let (cluster, mut c) = arrw_cluster("res-pending-parts");
    let dim = 384;
    make_table(&mut c, "src", 40_000, dim); // 61 MB of vectors
    exec(
        &mut c,
        &format!(
            "CREATE TABLE parts (id int, v vector({dim})) PARTITION BY HASH (id);
             CREATE TABLE no_idx (LIKE parts);"
        ),
    );
    for r in 0..32 {
        exec(
            &mut c,
            &format!("CREATE TABLE parts_{r} PARTITION OF parts FOR VALUES WITH (MODULUS 32, REMAINDER {r})"),
        );
    }
    exec(
        &mut c,
        "INSERT INTO parts SELECT * FROM src LIMIT 3200;
         CREATE INDEX ON parts USING ivfpq (v) WITH (lists = 2)",
    );
    let mut growth = Vec::new();
    for t in ["no_idx", "parts"] {
        let mut s = cluster.connect();
        exec(&mut s, "SET work_mem = '4MB'");
        growth.push(peak_growth_mb(
            &mut s,
            &format!("INSERT INTO {t} SELECT * FROM src OFFSET 3200"),
        ));
    }
    eprintln!("INSERT ... SELECT into 32 partitions, peak growth MB (no index, ivfpq): {growth:?}");
    assert!(
        growth[1] - growth[0] < 16.0,
        "pending entries of 32 indexes took {} MB more than the table alone at work_mem 4MB",
        growth[1] - growth[0]
    );
    let ok: bool = c
        .query_one(
            "SELECT bool_and(arrw.ivfpq_check(i.indexrelid)) FROM pg_index i \
             JOIN pg_inherits h ON h.inhrelid = i.indrelid WHERE h.inhparent = 'parts'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ok);
}

/// A build of 16,000-dimensional rows with one extra compute thread stays
/// within `maintenance_work_mem` (plus allocator slack): the stand-in queries
/// that measure the default probes were held three to four times (the build's
/// copy, the calibration's, a normalised copy and its panels) where the budget
/// counted one, and such a build peaked at 56–58 MB at 48MB.
#[test]
fn a_wide_build_with_threads_stays_within_maintenance_work_mem() {
    let (cluster, mut c) = arrw_cluster("res-wide");
    let dim = 16_000;
    exec(
        &mut c,
        &format!(
            "CREATE TABLE wide (id int, v vector({dim}));
             ALTER TABLE wide ALTER v SET STORAGE EXTERNAL;
             INSERT INTO wide
               SELECT i, ARRAY(SELECT random() FROM generate_series(1, {dim}) WHERE i > 0)::real[]::vector
               FROM generate_series(1, 1000) i;"
        ),
    );
    let mut peaks = Vec::new();
    for round in 0..3 {
        let mut s = cluster.connect();
        exec(
            &mut s,
            "SET maintenance_work_mem = '48MB'; SET max_parallel_maintenance_workers = 1",
        );
        peaks.push(peak_growth_mb(
            &mut s,
            &format!("CREATE INDEX wide_idx{round} ON wide USING ivfpq (v) WITH (lists = 10)"),
        ));
    }
    eprintln!("16,000-d build peak growth MB at 48MB: {peaks:?}");
    // 48 MB and 12% of allocator slack (50–52 MB measured) for the least of
    // three builds: the compute thread's allocator arena makes a single
    // build's peak vary (48.6 and 54.8 MB in one CI run), while the copies
    // this guards against raised every build (56–58 MB). No build may go
    // far past that either.
    let least = peaks.iter().cloned().fold(f64::INFINITY, f64::min);
    let most = peaks.iter().cloned().fold(0.0, f64::max);
    assert!(
        least < 54.0 && most < 58.0,
        "the builds took {peaks:?} MB at maintenance_work_mem 48MB"
    );
}

/// Rows a deep scan has re-ranked and not yet handed out wait in memory only
/// up to a share of `work_mem`; the rest go to a temporary file. On random
/// vectors most of what a scan reads lies within the margin of the nearest
/// waiting row, so a cursor through the table held nearly every row it had
/// re-ranked: ~5 MB at 300,000 rows and `work_mem = 64kB`, growing with the
/// table.
#[test]
fn rows_a_deep_scan_holds_beyond_work_mem_go_to_a_temporary_file() {
    let cluster = Cluster::start("res-spill", "fsync = off\nautovacuum = off\njit = off");
    let mut c = cluster.connect();
    exec(&mut c, "CREATE EXTENSION arrw");
    let mut peaks = Vec::new();
    for rows in [20_000, 200_000] {
        exec(
            &mut c,
            &format!(
                "DROP TABLE IF EXISTS t;
                 CREATE TABLE t (id int, v vector(32));
                 INSERT INTO t SELECT i, ARRAY(SELECT random() FROM generate_series(1, 32) WHERE i > 0)::real[]::vector
                 FROM generate_series(1, {rows}) i;
                 CREATE INDEX t_v ON t USING ivfpq (v) WITH (lists = 50);
                 ANALYZE t;"
            ),
        );
        let mut s = cluster.connect();
        exec(
            &mut s,
            "SET work_mem = '64kB'; SET enable_seqscan = off; SET enable_sort = off;
             SELECT id FROM t ORDER BY v <-> (SELECT v FROM t WHERE id = 1) LIMIT 1;",
        );
        let n: i64 = s
            .query_one(
                "SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> (SELECT v FROM t WHERE id = 1)) s",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, rows as i64, "every row comes back");
        peaks.push(peak_growth_mb(
            &mut s,
            "BEGIN; DECLARE c CURSOR FOR SELECT id FROM t ORDER BY v <-> (SELECT v FROM t WHERE id = 1);
             MOVE ALL IN c; CLOSE c; COMMIT;",
        ));
    }
    eprintln!("deep scan peak growth MB {peaks:?}");
    assert!(
        peaks[1] < peaks[0] + 1.5,
        "a deep scan's memory grew with the table: {peaks:?} MB"
    );
}

/// A build of many lists lays out one page a list before it reads a row:
/// 32,768 lists took 0.3–1.8 s there, and a cancel waited for all of them
/// (hunt-114). It now stops within a moment of the cancel.
#[test]
fn a_build_of_many_lists_is_cancelled_while_it_lays_out_its_lists() {
    let (cluster, mut c) = arrw_cluster("res-cancel-layout");
    make_table(&mut c, "many", 40_000, 4);
    let (r, after, _, attempt) = cancel_build_when(
        &cluster,
        &mut c,
        |attempt| {
            format!(
                "SET maintenance_work_mem = '512MB'; \
                 CREATE INDEX many_{attempt} ON many USING ivfpq (v) WITH (lists = 32768)"
            )
        },
        |phase, _| phase == "building index: encoding rows",
    )
    .expect("never caught the build laying out its lists");
    let err = r.expect_err("the build went on after its cancel");
    assert!(
        after < Duration::from_millis(500),
        "cancelled after {after:?}"
    );
    assert_cancelled_leaving_nothing(&mut c, &err, &format!("many_{attempt}"));
}

/// A transaction's pending index entries are encoded when it commits; against
/// 32,768 lists 150,000 rows take seconds, and a cancel then went unnoticed:
/// the COMMIT succeeded seconds later with every row (hunt-114). Now the
/// COMMIT fails with 57014 within a moment, and no row is kept.
#[test]
fn a_commit_encoding_pending_entries_is_cancelled_within_a_moment() {
    let (cluster, mut c) = arrw_cluster("res-cancel-commit");
    make_table(&mut c, "many", 40_000, 4);
    exec(
        &mut c,
        "SET maintenance_work_mem = '512MB';
         CREATE INDEX many_v ON many USING ivfpq (v) WITH (lists = 32768)",
    );
    let mut w = cluster.connect();
    let pid = backend_pid(&mut w);
    // All 150,000 entries stay pending (within work_mem) until the COMMIT.
    exec(
        &mut w,
        "SET work_mem = '64MB'; BEGIN;
         INSERT INTO many SELECT i, ARRAY[random(), random(), random(), random()]::real[]::vector
         FROM generate_series(1, 150000) i",
    );
    let (r, after) = std::thread::scope(|s| {
        let h = s.spawn(move || w.batch_execute("COMMIT"));
        std::thread::sleep(Duration::from_millis(300));
        c.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
        let sent = Instant::now();
        let r = h.join().unwrap();
        (r, sent.elapsed())
    });
    let err = r.expect_err("the COMMIT went on after its cancel");
    assert_eq!(
        err.as_db_error().map(|d| d.code().code()),
        Some("57014"),
        "{}",
        msg(&err)
    );
    assert!(
        after < Duration::from_millis(500),
        "cancelled after {after:?}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM many", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 40_000);
}

/// A `vector[]` build's sampling counts rows, as its total does: it counted
/// each row's every element against the table's row count (`60384 of 20000`),
/// and the encoding phase began with training's count (hunt-114).
#[test]
fn a_maxsim_build_reports_rows_done_of_rows() {
    let (cluster, mut c) = arrw_cluster("res-progress-multi");
    exec(
        &mut c,
        "CREATE TABLE mv (id int, vs vector(8)[]);
         INSERT INTO mv SELECT i, ARRAY(SELECT ARRAY(SELECT random() FROM generate_series(1, 8)
                                                      WHERE j > 0)::real[]::vector
                                        FROM generate_series(1, 6) j WHERE i > 0)
         FROM generate_series(1, 150000) i;
         ANALYZE mv;",
    );
    let mut phases: Vec<(String, i64, i64)> = Vec::new();
    let (r, _) = poll_build(
        &cluster,
        &mut c,
        "CREATE INDEX mv_vs ON mv USING ivfpq (vs vector_maxsim_ops) WITH (lists = 64)",
        |_, _, phase, done, total| {
            phases.push((phase.to_string(), done, total));
            false
        },
    );
    r.unwrap_or_else(|e| panic!("{}", msg(&e)));
    for (phase, done, total) in &phases {
        if phase.contains("sampling") || phase.contains("encoding") {
            assert!(done <= total, "{phase}: {done} of {total}");
        }
    }
    assert!(
        phases
            .iter()
            .any(|(p, d, _)| p.contains("sampling") && *d > 0),
        "sampling never counted: {phases:?}"
    );
}

/// Sampling's tuples_done stays within its tuples_total on a table never
/// analyzed (reltuples -1: the total was 0) and on one analyzed while small
/// (a stale reltuples of 100): done climbed past the total (hunt-117).
#[test]
fn sampling_stays_within_its_total_without_fresh_statistics() {
    let (cluster, mut c) = arrw_cluster("res-progress-stale");
    make_table(&mut c, "never", 300_000, 8);
    make_table(&mut c, "stale", 100, 8);
    exec(
        &mut c,
        "ANALYZE stale;
         INSERT INTO stale SELECT i, ARRAY(SELECT random() FROM generate_series(1, 8) WHERE i > 0)::real[]::vector
         FROM generate_series(101, 300000) i",
    );
    for table in ["never", "stale"] {
        let mut seen: Vec<(i64, i64)> = Vec::new();
        for attempt in 0..5 {
            let ddl = format!(
                "CREATE INDEX {table}_{attempt} ON {table} USING ivfpq (v) WITH (lists = 64)"
            );
            let (r, _) = poll_build(&cluster, &mut c, &ddl, |_, _, phase, done, total| {
                if phase == "building index: sampling rows" {
                    seen.push((done, total));
                }
                false
            });
            r.unwrap_or_else(|e| panic!("{}", msg(&e)));
            if seen.iter().any(|&(done, _)| done > 0) {
                break;
            }
        }
        assert!(
            seen.iter().any(|&(done, _)| done > 0),
            "{table}: sampling never counted"
        );
        for &(done, total) in &seen {
            assert!(done <= total, "{table}: {done} of {total}");
        }
    }
}
