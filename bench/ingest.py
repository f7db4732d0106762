#!/usr/bin/env python3
"""Writes into an indexed table: streaming ingest, and drift then index_optimize.

    bench/ingest.py sift-1m [--kinds none,ivfpq,hnsw] [--clients 8] [--seconds 20]
                    [--copy-rows 50000] [--copy-rounds 3] [--drift 0.2] [--pkg DIR] [--rev REV]

BASE is one of bench.py's data sets (the sift-* sets come from bench/make-sift). New rows
come from the `sift` set (`dev-sift`: descriptors of other photographs than the
wallpapers of the sift-* sets), taken in turn (and again from the start when they run
out). The server is arrw's own (`.bench/pg-ingest`, port 54381, shared_buffers 1GB).

1. **Ingest**, for each kind of vector index (`none`: the table with only its primary
   key; `ivfpq` with no options; `hnsw`: pgvector's, m 16, ef_construction 64, in a
   pgvector database, only when pgvector is installed), on a freshly loaded table:
   query latency idle (one client, the queries once, after a warm-up pass); then
   `--clients` connections running single-row INSERTs for `--seconds` (rows/s);
   then the same again while one more client runs the queries (rows/s, and the
   queries' p50/p99 during ingest); then `--copy-rounds` COPYs of `--copy-rows` rows
   each (rows/s of the fastest).
   Every inserting client is a process of its own (Python threads would queue on
   one interpreter lock, and that wait would show as query latency). 9 busy
   connections share the machine's cores: on 2 cores each gets about 1/4.5 of one.
2. **Drift and optimize** (ivfpq only): on a fresh table, COPY `--drift` × the base's
   rows of new rows, recall@10 against the exact top 10 over all rows (brute force
   here), then `arrw.submit_job('index_optimize', ...)` while one client inserts
   single rows and another runs queries: the job's duration, both clients'
   statement counts, errors and slowest statement (the table must stay writable and
   readable), then recall@10 again.

Prints a table and writes `.bench/results/ingest-BASE.txt`; the load average is
printed beside every figure. Targets (issue 11) are not asserted here.
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import DATASETS, RESULTS, Vec, log, register_vector, vec_bytes  # noqa: E402
from bench import percentile_ms as pct  # noqa: E402

bench.use_own_dirs("ingest")


class Source:
    """New rows, taken in turn from a pool (cycling), each with a fresh id."""

    def __init__(self, pool: np.ndarray, first_id: int):
        self.pool = pool
        self.next = first_id

    def take(self) -> tuple[int, np.ndarray]:
        i = self.next
        self.next += 1
        return i, self.pool[i % len(self.pool)]

    def block(self, n: int) -> tuple[int, np.ndarray]:
        first = self.next
        self.next += n
        return first, self.pool[np.arange(first, first + n) % len(self.pool)]


def run_queries(conn, sql, qs, stop: threading.Event | None = None, out=None):
    """Runs qs (once, or in a loop until stop is set); returns latencies (s)."""
    lat = [] if out is None else out
    with conn.cursor(binary=True) as cur:
        for q in (itertools.cycle(qs) if stop else qs):
            if stop is not None and stop.is_set():
                break
            a = time.perf_counter()
            cur.execute(sql, (q,), prepare=True)
            cur.fetchall()
            lat.append(time.perf_counter() - a)
    return lat


def insert_rows(port: int, db: str, pool: np.ndarray, first_id: int, stop, out) -> None:
    """One inserting client (a process of its own, so that the Python clients do
    not queue on one interpreter lock and the querying client's latency is the
    server's): single-row INSERTs, autocommit, until `stop` is set; puts (rows,
    errors, slowest s, first error) on `out`."""
    bench.use_own_dirs("ingest")
    cluster = bench.Cluster(port, {})
    src = Source(pool, first_id)
    n, errors, slowest, first_error = 0, 0, 0.0, ""
    with cluster.connect(db) as c:
        c.autocommit = True
        register_vector(c)
        with c.cursor(binary=True) as cur:
            while not stop.is_set():
                i, v = src.take()
                a = time.perf_counter()
                try:
                    cur.execute("INSERT INTO items (id, embedding) VALUES (%s, %s)", (i, Vec(vec_bytes(v))),
                                prepare=True)
                    n += 1
                except psycopg.OperationalError as e:  # the server or connection is gone
                    errors += 1
                    first_error = first_error or str(e)[:200]
                    break
                except Exception as e:  # noqa: BLE001 - counted, reported
                    errors += 1
                    first_error = first_error or str(e)[:200]
                slowest = max(slowest, time.perf_counter() - a)
    out.put((n, errors, slowest, first_error))


def ingest(cluster, db: str, pool: np.ndarray, first_id: int, clients: int, seconds: float,
           query=None) -> tuple[int, int, float, str, list[float]]:
    """`clients` inserting processes for `seconds`, and meanwhile, if `query` is
    (sql, qs), this process runs the queries in a loop. Returns (rows, errors,
    slowest insert s, first error, query latencies)."""
    ctx = mp.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=insert_rows, args=(cluster.port, db, pool, first_id + k * 10_000_000, stop, out))
             for k in range(clients)]
    for p in procs:
        p.start()
    lat: list[float] = []
    qstop = threading.Event()
    qt = None
    if query is not None:
        qconn = cluster.connect(db)
        register_vector(qconn)
        qt = threading.Thread(target=run_queries, args=(qconn, query[0], query[1], qstop, lat))
        qt.start()
    time.sleep(seconds)
    stop.set()
    qstop.set()
    res = [out.get() for _ in procs]
    for p in procs:
        p.join()
    if qt is not None:
        qt.join()
        qconn.close()
    return (sum(r[0] for r in res), sum(r[1] for r in res), max((r[2] for r in res), default=0.0),
            next((r[3] for r in res if r[3]), ""), lat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=[d for d in DATASETS if d.startswith("sift")])
    ap.add_argument("--kinds", default="none,ivfpq,hnsw")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--copy-rows", type=int, default=50_000)
    ap.add_argument("--copy-rounds", type=int, default=3, help="COPYs of --copy-rows rows; the fastest is reported")
    ap.add_argument("--drift", type=float, default=0.2, help="share of the base's rows added before optimize")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--pkg", type=Path, help="`cargo pgrx package` output (default: the system install)")
    ap.add_argument("--rev", help="what --pkg was built from (printed)")
    ap.add_argument("--port", type=int, default=54381)
    args = ap.parse_args()
    bench.SERVER_CONF["shared_buffers"] = "1GB"
    lock, cluster, env = bench.private_server("ingest.lock", "bench/ingest.py", args.port, args.pkg, args.rev)
    lines = env + [f"{args.dataset}; {args.clients} inserting clients for {args.seconds:.0f} s and one querying; "
                   f"best of {args.copy_rounds} COPYs of {args.copy_rows:,} rows; new rows from dev-sift "
                   "(other photographs)"]
    print("\n".join(lines), flush=True)
    spec = DATASETS[args.dataset]
    base, queries, gt = bench.load_dataset(args.dataset, None, args.queries)
    pool = bench.load_dataset("sift", None, 1)[0]
    qs = [Vec(vec_bytes(q)) for q in queries]
    table = []
    try:
        have_pgv = False
        with cluster.connect("postgres") as c:
            have_pgv = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is not None
        for kind in args.kinds.split(","):
            if kind == "hnsw" and not have_pgv:
                print("    hnsw: pgvector is not installed: skipped", flush=True)
                continue
            db = "ingest_pgv" if kind == "hnsw" else "ingest"
            log(f"{kind}: loading {len(base):,} rows")
            bench.setup_db(cluster, db, "vector" if kind == "hnsw" else "arrw", base)
            sql = f"SELECT id FROM items ORDER BY embedding {spec['op']} %s LIMIT 10"
            with cluster.connect(db) as c:
                c.autocommit = True
                register_vector(c)
                build = float("nan")
                if kind != "none":
                    c.execute(f"SET max_parallel_maintenance_workers = {max((os.cpu_count() or 1) - 1, 0)}")
                    c.execute("SET maintenance_work_mem = '1GB'")
                    ddl = {"ivfpq": f"CREATE INDEX ix ON items USING ivfpq (embedding {spec['opclass']})",
                           "hnsw": f"CREATE INDEX ix ON items USING hnsw (embedding {spec['opclass']}) "
                                   "WITH (m = 16, ef_construction = 64)"}[kind]
                    t0 = time.perf_counter()
                    c.execute(ddl)
                    build = time.perf_counter() - t0
                    c.execute("ANALYZE items")
                    run_queries(c, sql, qs)
                    idle = run_queries(c, sql, qs)
                else:
                    idle = []
            alone = ingest(cluster, db, pool, 100_000_000, args.clients, args.seconds)
            busy = ingest(cluster, db, pool, 200_000_000, args.clients, args.seconds,
                          None if kind == "none" else (sql, qs))
            load = bench.loadavg()
            src = Source(pool, 900_000_000)
            # The best of --copy-rounds COPYs (each its own transaction): one
            # COPY of 50,000 rows lasts a fraction of a second, and a single
            # one moved by 2x with what else ran on the machine.
            copy_s = float("inf")
            with cluster.connect(db) as c:
                for _ in range(args.copy_rounds):
                    first, rows = src.block(args.copy_rows)
                    t0 = time.perf_counter()
                    bench.copy_items(c, rows, first)
                    c.commit()
                    copy_s = min(copy_s, time.perf_counter() - t0)
            lat = busy[4]
            row = dict(kind=kind, build=build, idle_p50=pct(idle, 50), idle_p99=pct(idle, 99),
                       ins_rate=alone[0] / args.seconds, ins_busy=busy[0] / args.seconds,
                       errors=alone[1] + busy[1], busy_p50=pct(lat, 50), busy_p99=pct(lat, 99),
                       copy_rate=args.copy_rows / copy_s, load=load)
            table.append(row)
            print(f"    {kind:6} build {build:6.1f} s; idle p50/p99 {row['idle_p50']:.2f}/{row['idle_p99']:.2f} ms; "
                  f"INSERT {row['ins_rate']:,.0f} rows/s alone, {row['ins_busy']:,.0f} with a querying client "
                  f"({row['errors']} errors), its queries p50/p99 {row['busy_p50']:.2f}/{row['busy_p99']:.2f} ms "
                  f"({len(lat)} queries); COPY {row['copy_rate']:,.0f} rows/s; load {load:.1f}", flush=True)
            if alone[3] or busy[3]:
                print(f"      first error: {alone[3] or busy[3]}", flush=True)
        drift = drift_and_optimize(cluster, args, spec, base, queries, pool, qs) if "ivfpq" in args.kinds else []
    finally:
        cluster.stop()
        lock.close()
    out = ["", f"| index | build s | idle p50 / p99 ms | INSERT rows/s, {args.clients} clients | same, with a "
               "querying client | its queries p50 / p99 ms | COPY rows/s | load |",
           "|---|---|---|---|---|---|---|---|"]
    for r in table:
        out.append(f"| {r['kind']} | {r['build']:.1f} | {r['idle_p50']:.2f} / {r['idle_p99']:.2f} | "
                   f"{r['ins_rate']:,.0f} | {r['ins_busy']:,.0f} | {r['busy_p50']:.2f} / {r['busy_p99']:.2f} | "
                   f"{r['copy_rate']:,.0f} | {r['load']:.1f} |")
    text = "\n".join(lines + out + [""] + drift)
    print("\n".join(out + [""] + drift), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"ingest-{args.dataset}.txt").write_text(text + "\n")
    log(f"wrote {RESULTS / f'ingest-{args.dataset}.txt'}")
    return 0


def recall(conn, sql, qs, gt) -> float:
    hits = 0
    with conn.cursor(binary=True) as cur:
        for i, q in enumerate(qs):
            cur.execute(sql, (q,), prepare=True)
            hits += len({r[0] for r in cur.fetchall()} & set(gt[i][:10].tolist()))
    return hits / (10 * len(qs))


def drift_and_optimize(cluster, args, spec, base, queries, pool, qs) -> list[str]:
    db = "ingest"
    n_new = int(len(base) * args.drift)
    log(f"drift: loading {len(base):,} rows, ivfpq, then {n_new:,} new rows")
    bench.setup_db(cluster, db, "arrw", base)
    sql = f"SELECT id FROM items ORDER BY embedding {spec['op']} %s LIMIT 10"
    new = pool[np.arange(n_new) % len(pool)]
    first_new = len(base)
    with cluster.connect(db) as c:
        c.autocommit = True
        register_vector(c)
        c.execute(f"SET max_parallel_maintenance_workers = {max((os.cpu_count() or 1) - 1, 0)}")
        c.execute("SET maintenance_work_mem = '1GB'")
        c.execute(f"CREATE INDEX ix ON items USING ivfpq (embedding {spec['opclass']})")
        r0 = recall(c, sql, qs, bench.brute_force(base, queries, spec["metric"]))
        bench.copy_items(c, new, first_new)
        c.execute("ANALYZE items")
        # Exact top 10 over base + new (ids are row numbers: base 0.., new after).
        gt = bench.brute_force(np.vstack([base, new]), queries, spec["metric"])
        r1 = recall(c, sql, qs, gt)
        job = c.execute("SELECT arrw.submit_job('index_optimize', '{\"index\": \"ix\"}')").fetchone()[0]
    # A writer and a reader while the job runs (ids after the drift rows; the
    # ground truth below counts the rows it added).
    ctx = mp.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    w = ctx.Process(target=insert_rows, args=(cluster.port, db, pool, 200_000_000, stop, out))
    busy: list[float] = []
    qstop = threading.Event()
    qconn = cluster.connect(db)
    register_vector(qconn)
    rq = threading.Thread(target=run_queries, args=(qconn, sql, qs, qstop, busy))
    t0 = time.perf_counter()
    w.start()
    rq.start()
    state = "?"
    with cluster.connect(db) as c:
        c.autocommit = True
        while True:
            state = c.execute("SELECT state FROM arrw.jobs WHERE id = %s", (job,)).fetchone()[0]
            if state not in ("queued", "running"):
                break
            time.sleep(0.2)
    job_s = time.perf_counter() - t0
    stop.set()
    qstop.set()
    ins = out.get()
    w.join()
    rq.join()
    qconn.close()
    with cluster.connect(db) as c:
        register_vector(c)
        extra = c.execute("SELECT id, embedding::text FROM items WHERE id >= 200000000 ORDER BY id").fetchall()
        added = np.array([[float(x) for x in t.strip("[]").split(",")] for _, t in extra], dtype=np.float32) \
            if extra else np.zeros((0, base.shape[1]), np.float32)
        ids = np.concatenate([np.arange(len(base) + n_new), np.array([i for i, _ in extra], dtype=np.int64)])
        allrows = np.vstack([base, new, added]) if len(added) else np.vstack([base, new])
        gt2 = ids[bench.brute_force(allrows, queries, spec["metric"])]
        r2 = recall(c, sql, qs, gt2)
    load = bench.loadavg()
    lines = [
        f"drift and optimize ({len(base):,} rows, ivfpq with no options): recall@10 {r0:.3f} after the build; "
        f"{r1:.3f} after {n_new:,} new rows from other photographs; index_optimize {state} in {job_s:.1f} s, "
        f"meanwhile {ins[0]:,} single-row INSERTs ({ins[1]} errors, slowest {ins[2] * 1000:.0f} ms) and "
        f"{len(busy):,} queries (p50 {pct(busy, 50):.2f} ms, p99 {pct(busy, 99):.2f} ms, slowest "
        f"{max(busy, default=0) * 1000:.0f} ms); recall@10 {r2:.3f} after (load {load:.1f})",
    ]
    if ins[3]:
        lines.append(f"  first error: {ins[3]}")
    print(lines[0], flush=True)
    return lines


if __name__ == "__main__":
    sys.exit(main())
