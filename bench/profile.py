#!/usr/bin/env python3
"""Where an ivfpq query's time goes (run through bench/run-profile).

Loads a data set into its own cluster (.bench/pg-profile, from a private copy of the
PostgreSQL tree with a snapshot of arrw, as bench.py does), builds an ivfpq index with
no options, and for each query shape (LIMIT 10 at the index's defaults, LIMIT 10 at
the fewest probes reaching recall@10 0.95, LIMIT 100 with iterative scan) runs every
query once to warm up, then once more with `ivfpq.profile = on`: the scan's own
counters (arrw.ivfpq_profile(), see src/ivfpq/profile.rs) split the time into
setup, centroid ranking, lookup tables, list pages, code scoring, candidate
selection, heap fetches, exact distances and the exact-order queue; what the client
measured beyond their sum is split with EXPLAIN ANALYZE's execution time into the
rest of the executor and the protocol, parse/bind and client. Prints µs per query and shares, and writes
.bench/results/profile-<dataset>.txt.

The timers themselves cost about 50 ns per timed step (2 clock readings); the
table says how many steps were timed so their weight can be judged.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench/bench.py: server, data set and vector helpers)
from bench import DATASETS, Vec, log, register_vector, vec_bytes  # noqa: E402

bench.K = 100  # ground truth depth: LIMIT 100 is profiled too
bench.use_own_dirs("profile")

PHASES = ["setup", "rank", "tables", "pages", "codes", "select", "refine", "fetch", "exact", "order"]
LABELS = {
    "setup": "setup (meta page, model, query)",
    "rank": "ranking centroids",
    "tables": "lookup tables",
    "pages": "list pages (pin, lock, check)",
    "codes": "scoring codes",
    "select": "selecting candidates",
    "refine": "refining (fine pages, fine codes)",
    "fetch": "heap fetches",
    "exact": "exact distances",
    "order": "exact-order queue",
}


def profiled_pass(conn, sql, qs, gt, k):
    """Warm-up pass, then a profiled pass, then a pass under EXPLAIN ANALYZE for the
    server's own execution time; returns (recall, wall s, profile dict, execution s)."""
    with conn.cursor(binary=True) as cur:
        for q in qs:
            cur.execute(sql, (q,), prepare=True)
            cur.fetchall()
        conn.execute("SET ivfpq.profile = on")
        conn.execute("SELECT arrw.ivfpq_profile_reset()")
        hits = 0
        t0 = time.perf_counter()
        for i, q in enumerate(qs):
            cur.execute(sql, (q,), prepare=True)
            ids = [r[0] for r in cur.fetchall()]
            hits += len(set(ids) & set(gt[i][:k].tolist()))
        wall = time.perf_counter() - t0
        conn.execute("SET ivfpq.profile = off")
        prof = conn.execute("SELECT arrw.ivfpq_profile()").fetchone()[0]
        # The executor's own time (no protocol, no client): EXPLAIN ANALYZE with
        # TIMING OFF (no per-node clock readings) reports it per query.
        execution = 0.0
        for q in qs:
            cur.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, (q,))
            plan = cur.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            execution += plan[0]["Execution Time"] / 1000.0
    if isinstance(prof, str):
        prof = json.loads(prof)
    return hits / (len(qs) * k), wall, prof, execution


def report(name, recall, wall, prof, nq, execution):
    us = lambda s: s * 1e6 / nq  # noqa: E731
    scan = sum(prof.get(f"{p}_s", 0.0) for p in PHASES)
    lines = [f"{name}: recall {recall:.4f}, {nq / wall:.0f} q/s ({us(wall):.0f} µs per query); "
             f"per query: {prof['lists'] / nq:.1f} lists, {prof['pages'] / nq:.0f} pages, "
             f"{prof['candidates'] / nq:.0f} codes scored, {prof.get('refined', 0) / nq:.0f} refined, "
             f"{prof['reranked'] / nq:.0f} rows re-ranked, "
             f"{prof['returned'] / nq:.0f} returned, "
             f"{prof.get('reoffers', 0) / nq:.2f} re-offers"]
    for p in PHASES:
        s = prof.get(f"{p}_s", 0.0)
        lines.append(f"    {LABELS[p]:<34} {us(s):>8.1f} µs  {100 * s / wall:>5.1f}%")
    executor = max(execution - scan, 0.0)
    client = max(wall - max(execution, scan), 0.0)
    lines.append(f"    {'executor (rest of the plan)':<34} {us(executor):>8.1f} µs  {100 * executor / wall:>5.1f}%")
    lines.append(f"    {'protocol, parse/bind, client':<34} {us(client):>8.1f} µs  {100 * client / wall:>5.1f}%")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", default="all", choices=["sift", "minilm", "all"])
    ap.add_argument("--rows", type=int, help="use only the first N base rows")
    ap.add_argument("--queries", type=int, default=500, help="queries per pass (default 500)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("ARRW_PROFILE_PORT", "54349")))
    ap.add_argument("--arrw-pkg", type=Path, help="`cargo pgrx package` output to take arrw from")
    ap.add_argument("--arrw-rev", help="(set by bench/run-profile) what --arrw-pkg was built from")
    ap.add_argument("--keep-running", action="store_true", help="leave the server up")
    args = ap.parse_args()

    lock, cluster, env = bench.private_server("profile.lock", "bench/run-profile", args.port, args.arrw_pkg,
                                              args.arrw_rev)
    env.append("NOTE: one client, one query at a time, prepared statement, vector sent as a binary parameter; "
               "a warm-up pass, then one profiled pass. Phases are timed inside the scan; "
               "The executor's share is EXPLAIN ANALYZE's execution time (TIMING OFF) minus the scan's phases; "
               "the rest of the client's wall time is protocol, parse/bind and the Python client.")
    print("\n".join(env), flush=True)
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        for ds in (["sift", "minilm"] if args.dataset == "all" else [args.dataset]):
            spec = DATASETS[ds]
            base, queries, gt = bench.load_dataset(ds, args.rows, args.queries)
            k = 10
            db = f"profile_{ds}"
            log(f"{ds}: loading {len(base)} rows")
            bench.setup_db(cluster, db, "arrw", base)
            with cluster.connect(db) as c:
                register_vector(c)
                bt, mb = bench.build_index(
                    c, f"CREATE INDEX items_ivfpq ON items USING ivfpq (embedding {spec['opclass']})", "items_ivfpq")
                info = bench.ivfpq_info(c, "items_ivfpq")
                qs = [Vec(vec_bytes(q)) for q in queries]
                sql = f"SELECT id FROM items ORDER BY embedding {spec['op']} %s LIMIT {{}}"
                out = env + ["", f"=== {ds}: {len(base)} rows x {base.shape[1]} dims, {len(qs)} queries; "
                             f"ivfpq (no options) built in {bt:.1f} s, {mb:.1f} MB, {info} ===",
                             f"load average {bench.loadavg():.1f} (2 cores; > 1 means competition)", ""]
                rec, wall, prof, ex = profiled_pass(c, sql.format(k), qs, gt, k)
                out += report("LIMIT 10, defaults", rec, wall, prof, len(qs), ex) + [""]
                # The fewest probes reaching recall 0.95 (the operating point).
                for p in (2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64):
                    c.execute(f"SET ivfpq.probes = {p}")
                    rec, wall, prof, ex = profiled_pass(c, sql.format(k), qs, gt, k)
                    if rec >= 0.95:
                        out += report(f"LIMIT 10, probes {p} (fewest with recall >= 0.95)",
                                      rec, wall, prof, len(qs), ex) + [""]
                        break
                c.execute("RESET ivfpq.probes")
                c.execute("SET ivfpq.iterative_scan = on")
                rec, wall, prof, ex = profiled_pass(c, sql.format(100), qs, gt, 100)
                out += report("LIMIT 100, defaults, iterative scan (recall@100)", rec, wall, prof, len(qs), ex)
            text = "\n".join(out)
            print(text, flush=True)
            (bench.RESULTS / f"profile-{ds}.txt").write_text(text + "\n")
            log(f"wrote {bench.RESULTS / f'profile-{ds}.txt'}")
    finally:
        if not args.keep_running:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
