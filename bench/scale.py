#!/usr/bin/env python3
"""ivfpq as the table grows: build, memory, size and queries at each size given.

    bench/scale.py sift-100k sift-1m sift-10m [--mwm 1GB] [--probes 4,8,16,32] [--pkg DIR]

For each data set (bench.py's names; the sift-* sets come from bench/make-sift): load
it into a fresh table of arrw's own server (`.bench/pg-scale`, port 54371, its own tree
copy), `CREATE INDEX ... USING ivfpq` with no options on all cores and
`maintenance_work_mem = --mwm`, while a second connection samples every 0.2 s the
building backend's private memory (`RssAnon` in /proc/<pid>/status; its peak is
printed, beside `VmHWM`, which also counts the shared buffers it touched) and
`pg_stat_progress_create_index` (phase, tuples done/total). Then one client runs the
queries at each `ivfpq.probes` (and once with nothing set): recall@10, q/s, p50/p99,
warm (one untimed pass of every query at the most probes, then 50 queries before
each setting). `shared_buffers` is 1GB unless --shared-buffers.
Prints a table and writes `.bench/results/scale.txt`. Peers are not built here
(bench/run does that at 100k and 1M); this is the growth curve of arrw alone.

Each set gets its own database (`scale_<set>`), dropped at the end unless `--keep`
or `--reuse`.
`--cold` adds one pass at the index defaults after a restart with the OS page cache
dropped (root only; otherwise a restart alone, and the table says so).
`--reuse` measures the queries again on a kept database without loading or building
(10M rows take ~7 minutes to load and index): the server is restarted on the
package given, so a change to the scan can be measured on the same index; the
build's figures are then not measured ("reused" in the table).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import DATASETS, RESULTS, Vec, log, register_vector, vec_bytes  # noqa: E402
from bench import percentile_ms as pct  # noqa: E402

bench.use_own_dirs("scale")


def db_name(ds: str) -> str:
    return "scale_" + ds.replace("-", "_")


def kept(cluster, db: str) -> bool:
    """Whether `db` exists with the table and index a previous `--keep` left."""
    with cluster.connect("postgres") as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            return False
    with cluster.connect(db) as c:
        return c.execute("SELECT to_regclass('items_ivfpq') IS NOT NULL").fetchone()[0]


def queries_only(ds: str, nq: int):
    """The queries and ground truth of `ds` without reading its base rows (a 10M
    base widened to float32 is 5 GB, which would push the table out of the OS cache)."""
    spec = DATASETS[ds]
    d = bench.DATA / spec["dir"]
    queries = np.load(d / spec["query"]).astype(np.float32)[:nq]
    gt = np.load(d / spec["gt"])[:nq, :bench.K].astype(np.int64)
    return queries, gt


def proc_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Samples the building backend's memory and the build's progress."""

    def __init__(self, cluster, db: str, pid: int):
        super().__init__(daemon=True)
        self.cluster, self.db, self.pid = cluster, db, pid
        self.stop = threading.Event()
        self.peak_anon_kb = 0
        self.hwm_kb = 0
        self.phases: dict[str, tuple[int, int]] = {}  # phase -> last (done, total)
        # the last progress row: (phase, blocks done, blocks total, tuples done, tuples total)
        self.last: tuple | None = None

    def run(self):
        with self.cluster.connect(self.db) as c:
            c.autocommit = True
            while not self.stop.is_set():
                self.peak_anon_kb = max(self.peak_anon_kb, proc_kb(self.pid, "RssAnon"))
                self.hwm_kb = max(self.hwm_kb, proc_kb(self.pid, "VmHWM"))
                row = c.execute("SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                                "FROM pg_stat_progress_create_index WHERE pid = %s", (self.pid,)).fetchone()
                if row:
                    self.phases[row[0]] = (row[3], row[4])
                    self.last = tuple(row)
                time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="+", choices=list(DATASETS))
    ap.add_argument("--mwm", default="1GB", help="maintenance_work_mem of the build (default 1GB)")
    ap.add_argument("--probes", default="4,8,16,32,64")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--pkg", type=Path, help="`cargo pgrx package` output (default: the system install)")
    ap.add_argument("--rev", help="what --pkg was built from (printed)")
    ap.add_argument("--port", type=int, default=54371)
    ap.add_argument("--shared-buffers", default="1GB",
                    help="the server's shared_buffers (default 1GB: smaller than the 10M table)")
    ap.add_argument("--cold", action="store_true",
                    help="after the warm runs, restart the server, drop the OS page cache (when this user "
                         "may write /proc/sys/vm/drop_caches) and time one pass at the index defaults")
    ap.add_argument("--keep", action="store_true",
                    help="keep each set's database (table and index) for a later --reuse")
    ap.add_argument("--reuse", action="store_true",
                    help="measure the queries on the databases a --keep run left, without loading or "
                         "building (and keep them)")
    args = ap.parse_args()
    bench.SERVER_CONF["shared_buffers"] = args.shared_buffers
    probes = [int(p) for p in args.probes.split(",")]
    lock, cluster, env = bench.private_server("scale.lock", "bench/scale.py", args.port, args.pkg, args.rev)
    lines = env + [f"maintenance_work_mem {args.mwm}, shared_buffers {bench.SERVER_CONF['shared_buffers']}, "
                   f"one client, {args.queries} queries, warm cache"]
    print("\n".join(lines), flush=True)
    table = []
    try:
        for ds in args.datasets:
            DB = db_name(ds)
            if args.reuse and kept(cluster, DB):
                queries, gt = queries_only(ds, args.queries)
                with cluster.connect(DB) as c:
                    n = c.execute("SELECT count(*) FROM items").fetchone()[0]
                    table_mb = float(c.execute("SELECT (pg_total_relation_size('items') - pg_indexes_size('items'))"
                                               " / 1048576.0").fetchone()[0])
                    index_mb = bench.index_size_mb(c, "items_ivfpq")
                head = (f"{ds}: {n:,} rows, reused (loaded and built by an earlier --keep run); table "
                        f"{table_mb:,.0f} MB, index {index_mb:,.1f} MB ({index_mb / table_mb:.1%} of the table)")
                print(head, flush=True)
                lines.append(head)
            else:
                if args.reuse:
                    log(f"{ds}: nothing kept to reuse; loading and building")
                queries, gt = load_and_build(cluster, ds, DB, args, lines)
            run_queries(cluster, ds, DB, queries, gt, probes, table)
            if args.cold:
                cold_pass(cluster, ds, DB, queries, gt, table)
            if not (args.keep or args.reuse):
                with cluster.connect("postgres") as c:
                    c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    finally:
        cluster.stop()
        lock.close()
    out = ["", "| data set | setting | recall@10 | q/s | p50 ms | p99 ms | load |", "|---|---|---|---|---|---|---|"]
    out += [f"| {d} | {k} | {r:.3f} | {q:,.0f} | {a:.2f} | {b:.2f} | {ld:.1f} |" for d, k, r, q, a, b, ld in table]
    text = "\n".join(lines + out)
    print("\n".join(out), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.txt").write_text(text + "\n")
    print(f"\nwrote {RESULTS / 'scale.txt'}", flush=True)
    return 0


def load_and_build(cluster, ds: str, DB: str, args, lines: list[str]):
    """Loads `ds` into a fresh database, builds ivfpq while sampling the build;
    prints and records the build's line; returns the queries and ground truth."""
    spec = DATASETS[ds]
    log(f"{ds}: loading")
    # The base stays in its file's dtype, mapped: COPY widens it 8,192 rows at a
    # time (bench.copy_items), where load_dataset would hold all of it as float32
    # (5 GB at 10M rows) in this process while the server loads and builds.
    base = np.load(bench.DATA / spec["dir"] / spec["base"], mmap_mode="r")
    queries, gt = queries_only(ds, args.queries)
    n, dim = base.shape
    t = bench.setup_db(cluster, DB, "arrw", base)
    del base
    with cluster.connect(DB) as c:
        table_mb = c.execute("SELECT pg_total_relation_size('items') / 1048576.0").fetchone()[0]
        table_mb = float(table_mb)
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        threads = os.cpu_count() or 1
        c.execute(f"SET maintenance_work_mem = '{args.mwm}'")
        c.execute(f"SET max_parallel_maintenance_workers = {max(threads - 1, 0)}")
        s = Sampler(cluster, DB, pid)
        s.start()
        ddl = f"CREATE INDEX items_ivfpq ON items USING ivfpq (embedding {spec['opclass']})"
        log(f"{ds}: {ddl}")
        t0 = time.perf_counter()
        c.execute(ddl)
        build_s = time.perf_counter() - t0
        s.stop.set()
        s.join()
        index_mb = bench.index_size_mb(c, "items_ivfpq")
        info = bench.ivfpq_info(c, "items_ivfpq") or {}
        c.execute("ANALYZE items")
    phases = ", ".join(f"{p} {d:,}/{tt:,}" for p, (d, tt) in s.phases.items())
    head = (f"{ds}: {n:,} rows x {dim}, loaded in {t:.0f} s; table {table_mb:,.0f} MB; build {build_s:.1f} s, "
            f"index {index_mb:,.1f} MB ({index_mb / table_mb:.1%} of the table); build backend peak "
            f"RssAnon {s.peak_anon_kb / 1024:,.0f} MB (VmHWM {s.hwm_kb / 1024:,.0f} MB, with shared buffers); "
            f"lists {info.get('lists')} m {info.get('m')} nbits {info.get('nbits')}; progress seen: {phases}")
    print(head, flush=True)
    lines.append(head)
    return queries, gt


def timed_pass(cur, sql: str, qs, gt):
    """Runs every query once: (recall@10, wall seconds, latencies)."""
    lat, hits = [], 0
    t0 = time.perf_counter()
    for i, q in enumerate(qs):
        a = time.perf_counter()
        cur.execute(sql, (q,), prepare=True)
        ids = [r[0] for r in cur.fetchall()]
        lat.append(time.perf_counter() - a)
        hits += len(set(ids) & set(gt[i][:10].tolist()))
    return hits / (len(qs) * 10), time.perf_counter() - t0, lat


def drop_os_cache() -> bool:
    """Writes back and drops the OS page cache; False when this user may not."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def cold_pass(cluster, ds: str, DB: str, queries, gt, table: list):
    """One pass of the queries at the index defaults right after a restart (empty
    shared buffers) with the OS page cache dropped where allowed: every index and
    table page a query needs comes from the disk the first time."""
    cluster.stop()
    dropped = drop_os_cache()
    cluster.start()
    spec = DATASETS[ds]
    sql = f"SELECT id FROM items ORDER BY embedding {spec['op']} %s LIMIT 10"
    qs = [Vec(vec_bytes(q)) for q in queries]
    with cluster.connect(DB) as c:
        register_vector(c)
        with c.cursor(binary=True) as cur:
            recall, wall, lat = timed_pass(cur, sql, qs, gt)
    what = "cold: restart, OS cache dropped" if dropped else "cold: restart only (OS cache not droppable)"
    row = (ds, what, recall, len(qs) / wall, pct(lat, 50), pct(lat, 99), bench.loadavg())
    table.append(row)
    print(f"    {row[1]}: recall {row[2]:.3f} {row[3]:8.1f} q/s  p50 {row[4]:.2f} ms p99 {row[5]:.2f} ms  "
          f"first query {lat[0] * 1000:.1f} ms  load {row[6]:.1f}", flush=True)


def run_queries(cluster, ds: str, DB: str, queries, gt, probes: list[int], table: list):
    """Runs the queries at the index defaults and at each `probes`; appends the rows to `table`."""
    spec = DATASETS[ds]
    qs = [Vec(vec_bytes(q)) for q in queries]
    sql = f"SELECT id FROM items ORDER BY embedding {spec['op']} %s LIMIT 10"
    with cluster.connect(DB) as c:
        register_vector(c)
        # One untimed pass of every query at the most probes first: the
        # first timed setting would otherwise pay for warming the index
        # and the table's pages (it read 0.6-0.7x the q/s of its neighbours).
        c.execute(f"SET ivfpq.probes = {max(probes, default=0)}")
        with c.cursor(binary=True) as cur:
            for q in qs:
                cur.execute(sql, (q,), prepare=True)
                cur.fetchall()
        for p in [None, *probes]:
            c.execute("RESET ivfpq.probes" if p is None else f"SET ivfpq.probes = {p}")
            with c.cursor(binary=True) as cur:
                for q in qs[:50]:
                    cur.execute(sql, (q,), prepare=True)
                    cur.fetchall()
                recall, wall, lat = timed_pass(cur, sql, qs, gt)
            row = (ds, "index defaults" if p is None else f"probes={p}", recall,
                   len(qs) / wall, pct(lat, 50), pct(lat, 99), bench.loadavg())
            table.append(row)
            print(f"    {row[1]:15} recall {row[2]:.3f} {row[3]:8.1f} q/s  p50 {row[4]:.2f} ms "
                  f"p99 {row[5]:.2f} ms  load {row[6]:.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
