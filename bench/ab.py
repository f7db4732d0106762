#!/usr/bin/env python3
"""Interleaved A/B of arrw builds: is change B faster than A, on the same data, now?

  .bench/venv/bin/python bench/ab.py DATASET PKG_A PKG_B [PKG_C ...] \\
      [--probes 0,12] [--limits 10,100] [--rounds 20] [--batch 100] [--iter] [--filter 0.1]

Each PKG is a `cargo pgrx package` output. Every package gets its own private
server (.bench/pgroot-ab-N, .bench/pg-ab-N, port 54390 + N), the same rows and the
same index (`CREATE INDEX ... USING ivfpq` with `--opts`, default: none; with
`--storage S` the column's storage is set and the table rewritten first). Then
one client runs batches of `--batch` queries against each server in turn, the
order reversed every round, so that every package meets the same machine: on
a shared 2-core virtual machine q/s drifts by ±20% over minutes, far more
than most changes, and runs one after the other measure the drift. Only one
server works at a time.

Printed per LIMIT and probes: each package's q/s (median over its batches),
recall@LIMIT against the data set's ground truth (or the exact filtered top
100 with `--filter F`: a `cat` column, 1 on a fraction F of rows spread by a
hash of the id, and `WHERE cat = 1`), and its speed-up over the first package:
the median over rounds of the per-round ratio of batch times. `--reuse` keeps
the databases of a previous run with the same packages and data set.

Placements swap each server's library for another package's, over the tables,
indexes and extension objects the first one made: only for packages of one
extension script and index format. Between packages where either changed (an
index trained by one fails the other's checks as corrupt, a job worker of one
queries columns the other's script never made), pass per-package options,
even empty ones (`--opts ";"`): each package then keeps its own server, one
placement.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import psycopg  # noqa: E402

import bench  # noqa: E402
from bench import DATASETS, Vec, register_vector, vec_bytes  # noqa: E402


def exact_filtered(base, queries, ids, op, k=100):
    sub = base[ids]
    out = []
    for q in queries:
        if op == "<->":
            d = ((sub - q) ** 2).sum(1)
        else:  # cosine
            d = -(sub @ q) / (np.linalg.norm(sub, axis=1) * np.linalg.norm(q) + 1e-30)
        out.append(ids[np.argsort(d, kind="stable")[:k]])
    return np.array(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=list(DATASETS))
    ap.add_argument("pkgs", nargs="+", type=Path, help="`cargo pgrx package` outputs (the first is the baseline)")
    ap.add_argument("--probes", default="0", help="ivfpq.probes values (0: the index's default)")
    ap.add_argument("--limits", default="10")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--iter", action="store_true", help="SET ivfpq.iterative_scan = on")
    ap.add_argument("--filter", type=float, default=0.0, help="fraction of rows a WHERE clause keeps")
    ap.add_argument("--opts", default="",
                    help="index options, e.g. 'lists = 2000'; ';'-separated: one per package, "
                    "to compare index shapes (then no rotation: an index stays on its server)")
    ap.add_argument("--storage", default="",
                    help="the embedding column's storage (plain, main, external, extended) before the "
                         "index is built; \"external;plain\" gives each package's server its own, as --opts")
    ap.add_argument("--reuse", action="store_true", help="keep the previous run's databases")
    ap.add_argument("--port", type=int, default=54390)
    a = ap.parse_args()
    if len(a.pkgs) < 2:
        ap.error("give at least two packages")
    per_pkg = a.opts.split(";") if ";" in a.opts else [a.opts] * len(a.pkgs)
    if len(per_pkg) != len(a.pkgs):
        ap.error("--opts with ';' needs one option list per package")
    per_storage = a.storage.split(";") if ";" in a.storage else [a.storage] * len(a.pkgs)
    if len(per_storage) != len(a.pkgs):
        ap.error("--storage with ';' needs one storage per package")
    # Per-server shapes pin each package to its server (no rotation).
    fixed = ";" in a.opts or ";" in a.storage
    labels = [f"{p} [{o.strip()}{' ' + st.strip() if st.strip() else ''}]" if fixed else str(p)
              for p, o, st in zip(a.pkgs, per_pkg, per_storage)]
    spec = DATASETS[a.dataset]
    base, queries, _ = bench.load_dataset(a.dataset, None, a.queries)
    gt = np.load(bench.DATA / spec["dir"] / spec["gt"])[: len(queries)]
    servers, locks = [], []
    for i, pkg in enumerate(a.pkgs):
        bench.use_own_dirs(f"ab-{i}")
        lock, cluster, env = bench.private_server(f"ab-{i}.lock", "bench/ab.py", a.port + i, pkg, None)
        locks.append(lock)
        print(env[-1], flush=True)
        if not a.reuse:
            bench.setup_db(cluster, "ab", "arrw", base)
            with cluster.connect("ab") as c:
                if a.filter > 0:
                    c.execute("ALTER TABLE items ADD COLUMN cat int")
                    # hashint4 is signed: abs() keeps the buckets 0..999 (a plain
                    # % put every negative hash under the bound: 55% for 0.1).
                    c.execute("UPDATE items SET cat = CASE WHEN abs(hashint4(id) %% 1000) < %s THEN 1 ELSE 0 END",
                              (int(a.filter * 1000),))
                    c.execute("VACUUM ANALYZE items")
                    share = c.execute("SELECT avg(cat) FROM items").fetchone()[0]
                    print(f"filter keeps {float(share):.2%} of rows", flush=True)
                if per_storage[i].strip():
                    # VACUUM FULL rewrites every row under the new storage
                    # (a rewrite detoasts external values before storing them).
                    c.execute(f"ALTER TABLE items ALTER COLUMN embedding SET STORAGE {per_storage[i].strip()}")
                    c.execute("VACUUM FULL items")
                    heap, toast = c.execute(
                        "SELECT pg_relation_size(oid), coalesce(pg_relation_size(nullif(reltoastrelid, 0)), 0) "
                        "FROM pg_class WHERE relname = 'items'").fetchone()
                    print(f"storage {per_storage[i].strip()}: heap {heap / 2**20:.0f} MB, "
                          f"TOAST {toast / 2**20:.0f} MB", flush=True)
                c.execute("SET max_parallel_maintenance_workers = 1")
                t0 = time.perf_counter()
                opts = f" WITH ({per_pkg[i]})" if per_pkg[i].strip() else ""
                c.execute(f"CREATE INDEX ON items USING ivfpq (embedding {spec['opclass']}){opts}")
                print(f"{pkg}: index built in {time.perf_counter() - t0:.1f} s", flush=True)
                c.execute("CHECKPOINT")
        servers.append((str(pkg), str(bench.PGDIR), a.port + i, cluster))
    where = ""
    qs = [Vec(vec_bytes(q)) for q in queries]
    print(f"{a.dataset}: {len(base)} rows, {len(qs)} queries, batches of {a.batch}, {a.rounds} rounds "
          f"per placement, {1 if fixed else len(servers)} placement(s)"
          + (f", filter keeps {a.filter:.1%}" if a.filter else "") + (", iterative scan" if a.iter else ""))
    npkg = len(servers)
    limits = [int(x) for x in a.limits.split(",")]
    probes = [int(x) for x in a.probes.split(",")]
    # times[(lim, p)][pkg] = per-round batch times; hits likewise.
    times = {(lim, p): [[] for _ in range(npkg)] for lim in limits for p in probes}
    hits = {(lim, p): [0.0] * npkg for lim in limits for p in probes}
    counts = {(lim, p): [0] * npkg for lim in limits for p in probes}
    # Servers differ too (where their shared memory landed, what the kernel
    # did to them): an A/A run on two servers measured ±6%. So every package
    # runs on every server in turn (placement s: package (i + s) % n on
    # server i, arrw.so swapped and servers restarted), and each round's
    # ratios compare packages measured in the same round.
    for placement in range(1 if fixed else npkg):
        if placement > 0:
            for i, (_name, _host, _port, cluster) in enumerate(servers):
                bench.use_own_dirs(f"ab-{i}")
                cluster.stop()
                pkg = a.pkgs[(i + placement) % npkg]
                lib = bench.PG_BIN.parent / "lib" / "arrw.so"
                lib.unlink()
                import shutil
                shutil.copy2(next(pkg.rglob("arrw.so")), lib)
                cluster.start()
        conns = {}
        for i, (_name, host, port, _cluster) in enumerate(servers):
            c = psycopg.connect(host=host, port=port, user="postgres", dbname="ab", autocommit=True)
            register_vector(c)
            if a.iter:
                c.execute("SET ivfpq.iterative_scan = on")
            conns[(i + placement) % npkg] = c  # keyed by package
        if a.filter > 0 and not where:
            ids = np.array([r[0] for r in conns[0].execute("SELECT id FROM items WHERE cat = 1 ORDER BY id")])
            gt = exact_filtered(base, queries, ids, spec["op"])
            where = "WHERE cat = 1 "
        try:
            for lim in limits:
                sql = f"SELECT id FROM items {where}ORDER BY embedding {spec['op']} %s LIMIT {lim}"
                for p in probes:
                    for c in conns.values():
                        c.execute(f"SET ivfpq.probes = {p}" if p else "RESET ivfpq.probes")
                        for q in qs[:200]:  # warm-up
                            c.execute(sql, (q,), prepare=True).fetchall()
                    for r in range(a.rounds):
                        lo = (r * a.batch) % len(qs)
                        batch = range(lo, min(lo + a.batch, len(qs)))
                        order = range(npkg) if r % 2 == 0 else reversed(range(npkg))
                        for k in order:
                            t0 = time.perf_counter()
                            got = [[x[0] for x in conns[k].execute(sql, (qs[i],), prepare=True).fetchall()]
                                   for i in batch]
                            times[(lim, p)][k].append((time.perf_counter() - t0) / len(batch))
                            hits[(lim, p)][k] += sum(len(set(g) & set(gt[i][:lim].tolist())) / lim
                                                     for g, i in zip(got, batch))
                            counts[(lim, p)][k] += len(batch)
        finally:
            for c in conns.values():
                c.close()
    for (lim, p), ts in times.items():
        t0 = np.array(ts[0])
        print(f"LIMIT {lim}, probes {p or 'default'}:")
        for k, label in enumerate(labels):
            t = np.array(ts[k])
            print(f"  {label:40s} {1 / np.median(t):8.1f} q/s  recall {hits[(lim, p)][k] / counts[(lim, p)][k]:.4f}  "
                  f"speed-up {np.median(t0 / t):.3f}")
    print(f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
