//! A bounded soak of one ivfpq-indexed table: concurrent single-row inserts,
//! deletes, k-NN queries, VACUUM and index_optimize jobs (REINDEX CONCURRENTLY),
//! with the server killed (`immediate`) at the end of every round and restarted.
//!
//! After every round, with every list probed, every candidate re-ranked and
//! `work_mem` large enough to hold every row as a candidate (the index then
//! answers exactly):
//! - every row whose INSERT committed and whose DELETE did not is in the table,
//!   and no row whose DELETE committed is;
//! - the index returns exactly the table's rows, each once;
//! - `arrw.ivfpq_check` passes;
//! - the server log shows no crash other than the kills, no PANIC, no assertion.
//!
//! It runs about a minute (ARRW_SOAK_SECONDS per round, default 15, 3 rounds).

use arrw_tests::{exec, msg, Cluster, Rng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const DIM: usize = 16;
const LISTS: usize = 16;

/// The error says the server is going away (the round's kill), not that a
/// statement failed: no server error at all, or operator intervention (57...)
/// such as "terminating connection due to immediate shutdown".
fn server_gone(e: &postgres::Error) -> bool {
    e.as_db_error()
        .is_none_or(|d| d.code().code().starts_with("57") || d.code().code().starts_with("08"))
}

/// A point near one of 8 fixed centres (so the lists mean something).
fn point(rng: &mut Rng) -> String {
    let centre = rng.below(8);
    let v: Vec<String> = (0..DIM)
        .map(|j| {
            let c = if j % 8 == centre { 10.0 } else { 0.0 };
            format!("{}", c + rng.unit() as f32)
        })
        .collect();
    format!("[{}]", v.join(","))
}

fn round_seconds() -> u64 {
    std::env::var("ARRW_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

#[derive(Default)]
struct Ledger {
    /// Ids whose INSERT committed.
    inserted: BTreeSet<i64>,
    /// Ids whose DELETE committed (and removed a row).
    deleted: BTreeSet<i64>,
    /// Ids whose DELETE was sent: a kill may have cut off its answer, so
    /// whether it committed is unknown until it is in `deleted`.
    deleting: BTreeSet<i64>,
    /// Committed, not yet picked for deletion.
    live: Vec<i64>,
}

/// One round of concurrent work until the server is killed under it.
fn round(cluster: &Cluster, ledger: &Mutex<Ledger>, round_no: u64) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Writers: single-row inserts, one transaction each.
        for w in 0..3u64 {
            let (stop, ledger) = (&stop, ledger);
            s.spawn(move || {
                let mut c = cluster.connect();
                let mut rng = Rng(round_no * 1000 + w);
                let mut id = ((round_no * 10 + w) as i64) * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let sql = format!("INSERT INTO soak VALUES ({id}, '{}')", point(&mut rng));
                    match c.batch_execute(&sql) {
                        Err(e) if !server_gone(&e) => panic!("{sql}: {}", msg(&e)),
                        Ok(()) => {
                            let mut l = ledger.lock().unwrap();
                            l.inserted.insert(id);
                            l.live.push(id);
                        }
                        Err(_) => return, // the server went away
                    }
                    id += 1;
                }
            });
        }
        // Deleter: removes rows that are known to be committed.
        {
            let (stop, ledger) = (&stop, ledger);
            s.spawn(move || {
                let mut c = cluster.connect();
                let mut rng = Rng(round_no * 1000 + 77);
                while !stop.load(Ordering::Relaxed) {
                    let pick = {
                        let mut l = ledger.lock().unwrap();
                        if l.live.is_empty() {
                            None
                        } else {
                            let i = rng.below(l.live.len());
                            let id = l.live.swap_remove(i);
                            l.deleting.insert(id);
                            Some(id)
                        }
                    };
                    let Some(id) = pick else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    match c.execute("DELETE FROM soak WHERE id = $1", &[&id]) {
                        Ok(1) => {
                            ledger.lock().unwrap().deleted.insert(id);
                        }
                        Ok(_) => {}
                        Err(e) if !server_gone(&e) => panic!("DELETE: {}", msg(&e)),
                        Err(_) => return,
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        // Reader: k-NN queries through the index must keep working.
        {
            let stop = &stop;
            s.spawn(move || {
                let mut c = cluster.connect();
                let mut rng = Rng(round_no * 1000 + 99);
                if c.batch_execute("SET enable_seqscan = off").is_err() {
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    let sql = format!(
                        "SELECT id FROM soak ORDER BY v <-> '{}' LIMIT 10",
                        point(&mut rng)
                    );
                    match c.query(&sql, &[]) {
                        Ok(rows) => assert!(!rows.is_empty(), "a k-NN query returned nothing"),
                        Err(e) if !server_gone(&e) => panic!("{sql}: {}", msg(&e)),
                        Err(_) => return,
                    }
                }
            });
        }
        // VACUUM now and then, and one index_optimize job per round.
        {
            let stop = &stop;
            s.spawn(move || {
                let mut c = cluster.connect();
                let _ = c.batch_execute(
                    "SELECT arrw.submit_job('index_optimize', '{\"index\": \"soak_v\"}')",
                );
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(700));
                    match c.batch_execute("VACUUM soak") {
                        Ok(()) => {}
                        Err(e) if !server_gone(&e) => panic!("VACUUM: {}", msg(&e)),
                        Err(_) => return,
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(round_seconds()));
        cluster.stop("immediate");
        stop.store(true, Ordering::Relaxed);
    });
    cluster.start_server();
}

/// Waits until no job is queued or running (jobs resume after a restart).
fn wait_for_jobs(cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut c = cluster.connect();
        let busy: i64 = c
            .query_one(
                "SELECT count(*) FROM arrw.jobs WHERE state IN ('queued', 'running')",
                &[],
            )
            .unwrap()
            .get(0);
        if busy == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "jobs did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check(cluster: &Cluster, ledger: &Ledger) {
    let mut c = cluster.connect();
    exec(
        &mut c,
        &format!(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET work_mem = '256MB'; \
             SET ivfpq.probes = {LISTS}; SET ivfpq.rerank = 100000; \
             SET ivfpq.iterative_scan = on; SET ivfpq.max_probes = 0"
        ),
    );
    let q = format!("[{}]", vec!["0"; DIM].join(","));
    let via_index: Vec<i64> = c
        .query(
            &format!("SELECT id FROM soak ORDER BY v <-> '{q}' LIMIT 100000000"),
            &[],
        )
        .unwrap_or_else(|e| panic!("index scan: {}", msg(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect();
    let index_ids: BTreeSet<i64> = via_index.iter().copied().collect();
    assert_eq!(
        index_ids.len(),
        via_index.len(),
        "the index returned a row twice"
    );
    exec(
        &mut c,
        "SET enable_seqscan = on; SET enable_indexscan = off",
    );
    let table_ids: BTreeSet<i64> = c
        .query("SELECT id FROM soak", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<_> = ledger
        .inserted
        .difference(&ledger.deleted)
        .filter(|id| !table_ids.contains(id) && !ledger.deleting.contains(id))
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "committed rows missing from the table: {lost:?}"
    );
    let undeleted: Vec<_> = ledger.deleted.intersection(&table_ids).take(10).collect();
    assert!(
        undeleted.is_empty(),
        "deleted rows still present: {undeleted:?}"
    );
    let missing: Vec<_> = table_ids.difference(&index_ids).take(10).collect();
    let extra: Vec<_> = index_ids.difference(&table_ids).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "index and table differ ({} vs {} rows): missing {missing:?}, extra {extra:?}",
        index_ids.len(),
        table_ids.len()
    );
    let ok: bool = c
        .query_one("SELECT arrw.ivfpq_check('soak_v')", &[])
        .unwrap_or_else(|e| panic!("ivfpq_check: {}", msg(&e)))
        .get(0);
    assert!(ok);
}

#[test]
fn soak_concurrent_writes_queries_vacuum_and_jobs_across_crashes() {
    let cluster = Cluster::start("soak", "fsync = off\nautovacuum = off");
    let mut c = cluster.connect();
    exec(&mut c, "CREATE EXTENSION arrw");
    exec(
        &mut c,
        &format!("CREATE TABLE soak (id bigint PRIMARY KEY, v vector({DIM}))"),
    );
    let ledger = Mutex::new(Ledger::default());
    {
        let mut rng = Rng(1);
        let mut l = ledger.lock().unwrap();
        for chunk in (0..4000i64).collect::<Vec<_>>().chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|id| format!("({id}, '{}')", point(&mut rng)))
                .collect();
            exec(
                &mut c,
                &format!("INSERT INTO soak VALUES {}", values.join(",")),
            );
            l.inserted.extend(chunk.iter().copied());
            l.live.extend(chunk.iter().copied());
        }
    }
    exec(
        &mut c,
        &format!("CREATE INDEX soak_v ON soak USING ivfpq (v) WITH (lists = {LISTS}, m = 8)"),
    );
    drop(c);
    for r in 1..=3 {
        round(&cluster, &ledger, r);
        wait_for_jobs(&cluster);
        let l = ledger.lock().unwrap();
        check(&cluster, &l);
        eprintln!(
            "round {r}: {} inserted, {} deleted",
            l.inserted.len(),
            l.deleted.len()
        );
    }
    let log = cluster.log();
    for bad in [
        "PANIC",
        "TRAP:",
        "terminated by signal 11",
        "terminated by signal 6",
    ] {
        assert!(!log.contains(bad), "server log contains {bad:?}");
    }
}
