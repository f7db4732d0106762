#!/usr/bin/env python3
"""The peers' index builds on one data set, each within a time box.

    bench/peer_builds.py sift-10m [--box-min 45] [--engines ivfflat,hnsw,vchordrq] [--mwm 1GB] [--pkg DIR]

Issue 11 asks, at 10M rows, to build each peer once within a time box and to report
what finished and, for what did not, the progress it reached. This script loads the
set once into a pgvector database of its own server (`.bench/pg-peers`, port 54372,
`shared_buffers` 1GB as in bench/scale.py; pgvector, and VectorChord when it is
installed and preloadable) and builds, one after the other, pgvector's ivfflat (lists
as pgvector's README advises: rows / 1000 up to 1M rows, sqrt(rows) above), hnsw (m 16,
ef_construction 64) and VectorChord's vchordrq (lists = 4 × sqrt(rows), built as
bench/run builds it: `bench.vchordrq_ddl`), each with `maintenance_work_mem = --mwm`,
all cores and `statement_timeout` = the box. A
second connection samples `pg_stat_progress_create_index` and the building backend's
private memory (bench/scale.py's Sampler). A build that finishes is timed and sized
and, for the IVF peers, queried (`--queries`, one client, a few probes) for recall@10
and q/s; one that hits the box is cancelled by the timeout and reported with the last
phase and blocks/tuples done it reached; one that fails (pgvector's ivfflat refuses a
k-means that needs more than `maintenance_work_mem`) is reported with its error.
arrw's own build at this size is bench/scale.py's. Writes
`.bench/results/peer-builds-<set>.txt`.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import DATASETS, RESULTS, Vec, log, register_vector, vec_bytes  # noqa: E402
from scale import Sampler, queries_only  # noqa: E402

bench.use_own_dirs("peers")


def ddl_for(engine: str, spec: dict, n: int) -> tuple[str, str, list]:
    """(CREATE INDEX, index name, query points [(label, settings)])."""
    op = spec["opclass"]
    if engine == "ivfflat":
        # pgvector's README: lists = rows / 1000 up to 1M rows, sqrt(rows) above.
        lists = max(n // 1000, 1) if n <= 1_000_000 else round(math.sqrt(n))
        return (f"CREATE INDEX items_ivfflat ON items USING ivfflat (embedding {op}) WITH (lists = {lists})",
                "items_ivfflat",
                [(f"probes={p}", {"ivfflat.probes": p}) for p in (20, 50, 100) if p <= lists])
    if engine == "hnsw":
        return (f"CREATE INDEX items_hnsw ON items USING hnsw (embedding {op}) WITH (m = 16, ef_construction = 64)",
                "items_hnsw", [(f"ef_search={e}", {"hnsw.ef_search": e}) for e in (40, 100)])
    if engine == "vchordrq":
        return (bench.vchordrq_ddl(spec, max(1, round(4 * math.sqrt(n)))),
                "items_vchordrq", [(f"probes={p}", {"vchordrq.probes": f"'{p}'"}) for p in (32, 64)])
    raise ValueError(engine)


def query_points(conn, sql: str, queries: np.ndarray, gt: np.ndarray, points: list) -> list[str]:
    out = []
    qs = [Vec(vec_bytes(q)) for q in queries]
    for label, settings in points:
        bench.apply_settings(conn, settings)
        res, qps, lat = bench.run_queries(conn, sql, qs, warm=min(50, len(qs)))
        out.append(f"{label}: recall@10 {bench.recall_of(res, gt):.3f}, {qps:,.0f} q/s, "
                   f"p50 {bench.percentile_ms(lat, 50):.2f} / p99 {bench.percentile_ms(lat, 99):.2f} ms, "
                   f"load {bench.loadavg():.1f}")
        bench.reset_settings(conn, settings)
        print("    " + out[-1], flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=list(DATASETS))
    ap.add_argument("--engines", default="ivfflat,hnsw,vchordrq")
    ap.add_argument("--box-min", type=float, default=45.0, help="time box of each build, minutes (default 45)")
    ap.add_argument("--mwm", default="1GB", help="maintenance_work_mem of each build (default 1GB)")
    ap.add_argument("--queries", type=int, default=200, help="queries per point after a finished build")
    ap.add_argument("--pkg", type=Path, help="`cargo pgrx package` output for arrw (loaded, not measured)")
    ap.add_argument("--rev", help="what --pkg was built from (printed)")
    ap.add_argument("--port", type=int, default=54372)
    args = ap.parse_args()
    bench.SERVER_CONF["shared_buffers"] = "1GB"
    spec = DATASETS[args.dataset]
    lock, cluster, env = bench.private_server("peers.lock", "bench/peer_builds.py", args.port, args.pkg, args.rev)
    with cluster.connect("postgres") as c:
        have_pgv = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if not have_pgv:
        print("pgvector is not installed: nothing to build (skipped)", flush=True)
        cluster.stop()
        lock.close()
        return 0
    threads = os.cpu_count() or 1
    lines = env + [f"{args.dataset}; each build: maintenance_work_mem {args.mwm}, "
                   f"max_parallel_maintenance_workers {threads - 1}, statement_timeout {args.box_min:g} min; "
                   f"shared_buffers 1GB; preloaded: {', '.join(cluster.preload)}"]
    print("\n".join(lines), flush=True)
    db = "peers_" + args.dataset.replace("-", "_")
    try:
        base = np.load(bench.DATA / spec["dir"] / spec["base"], mmap_mode="r")
        n, dim = base.shape
        log(f"{args.dataset}: loading {n:,} rows")
        t = bench.setup_db(cluster, db, "vector", base)
        del base
        queries, gt = queries_only(args.dataset, args.queries)
        with cluster.connect(db) as c:
            table_mb = float(c.execute("SELECT pg_total_relation_size('items') / 1048576.0").fetchone()[0])
        lines.append(f"{args.dataset}: {n:,} rows x {dim} loaded in {t:.0f} s, table {table_mb:,.0f} MB")
        print(lines[-1], flush=True)
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            if engine == "vchordrq" and "vchord" not in cluster.preload:
                lines.append("vchordrq: VectorChord is not installed (or not preloadable): skipped")
                print(lines[-1], flush=True)
                continue
            ddl, name, points = ddl_for(engine, spec, n)
            conn = cluster.connect(db)
            conn.autocommit = True
            if engine == "vchordrq":
                conn.execute("CREATE EXTENSION IF NOT EXISTS vchord CASCADE")
            conn.execute("SET client_min_messages = warning")
            conn.execute(f"SET maintenance_work_mem = '{args.mwm}'")
            conn.execute(f"SET max_parallel_maintenance_workers = {threads - 1}")
            conn.execute(f"SET statement_timeout = '{args.box_min}min'")
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            s = Sampler(cluster, db, pid)
            s.start()
            log(f"{engine}: {ddl.splitlines()[0]} (box {args.box_min:g} min)")
            t0 = time.perf_counter()
            err = None
            try:
                conn.execute(ddl)
            except psycopg.Error as e:
                err = e
            finally:
                dt = time.perf_counter() - t0
                s.stop.set()
                s.join()
            conn.execute("RESET statement_timeout")
            mem = f"build backend peak RssAnon {s.peak_anon_kb / 1024:,.0f} MB"
            if err is not None and not isinstance(err, psycopg.errors.QueryCanceled):
                lines.append(f"{engine}: FAILED after {dt:,.1f} s: {str(err).strip()} ({type(err).__name__}, "
                             f"SQLSTATE {err.sqlstate})")
                print(lines[-1], flush=True)
            elif err is not None:
                ph = s.last
                where = (f"last progress seen: phase '{ph[0]}', blocks {ph[1]:,}/{ph[2]:,}, tuples {ph[3]:,}/{ph[4]:,}"
                         if ph else "no progress row seen")
                lines.append(f"{engine}: NOT FINISHED in {dt / 60:.1f} min (cancelled by statement_timeout); "
                             f"{where}; {mem}")
                print(lines[-1], flush=True)
            else:
                size = bench.index_size_mb(conn, name)
                lines.append(f"{engine}: built in {dt:,.1f} s ({dt / 60:.1f} min), {size:,.1f} MB "
                             f"({size / table_mb:.1%} of the table); {mem}")
                print(lines[-1], flush=True)
                register_vector(conn)
                conn.execute("ANALYZE items")
                sql = f"SELECT id FROM items ORDER BY embedding {spec['op']} %b LIMIT {bench.K}"
                lines += ["    " + ln for ln in query_points(conn, sql, queries, gt, points)]
                conn.execute(f"DROP INDEX {name}")
            conn.close()
        with cluster.connect("postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    finally:
        cluster.stop()
        lock.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"peer-builds-{args.dataset}.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
