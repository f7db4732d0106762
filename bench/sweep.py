#!/usr/bin/env python3
"""Index shapes side by side: for each set of ivfpq options (`;`-separated, e.g.
"refine=0;refine=4" or "lists=200,m=64"), builds the index on DATASET and runs the
queries (LIMIT 10) at each of PROBES with ivfpq.iterative_scan off and on, printing
recall@10, q/s, and per query the lists, pages, codes scored, rows refined and rows
re-ranked, then µs per scan phase (arrw.ivfpq_profile()).

  .bench/venv/bin/python bench/sweep.py "refine=0;refine=4" text --probes 4,8,16 --pkg DIR

DIR is a `cargo pgrx package` output (as for bench/run-profile --pkg); the server is
private (.bench/pg-sweep, port 54361), copied from the system PostgreSQL tree, so
pgvector/VectorChord are not involved. q/s is one client and as noisy as the
machine's load (printed); the counts are not.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import profile as prof_mod  # noqa: E402  (bench/profile.py: profiled_pass)
from bench import DATASETS, Vec, register_vector, vec_bytes  # noqa: E402

bench.use_own_dirs("sweep")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", help='";"-separated ivfpq option lists ("" = defaults)')
    ap.add_argument("dataset", choices=list(DATASETS))
    ap.add_argument("--probes", default="4,8,16")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--pkg", type=Path, required=True, help="`cargo pgrx package` output")
    ap.add_argument("--port", type=int, default=54361)
    ap.add_argument("--type", choices=["vector", "halfvec"], default="vector", help="column type (bench.py --type)")
    ap.add_argument("--ip", action="store_true",
                    help="index and query by inner product (vector_ip_ops, <#>) instead of the data set's "
                         "metric: for unit-length sets, whose ground truth is the same")
    args = ap.parse_args()
    bench.COLUMN_TYPE = args.type
    probes = [int(p) for p in args.probes.split(",")]
    lock, cluster, env = bench.private_server("sweep.lock", "bench/sweep.py", args.port, args.pkg, None)
    print("\n".join(env), flush=True)
    try:
        spec = dict(DATASETS[args.dataset])
        if args.ip:
            spec["opclass"], spec["op"] = "vector_ip_ops", "<#>"
        if args.type == "halfvec":
            spec["opclass"] = spec["opclass"].replace("vector_", "halfvec_")
        base, queries, gt = bench.load_dataset(args.dataset, None, args.queries)
        bench.setup_db(cluster, "sweep", "arrw", base)
        print(f"{args.dataset}: {len(base)} rows x {base.shape[1]} dims, {len(queries)} queries", flush=True)
        with cluster.connect("sweep") as c:
            register_vector(c)
            qs = [Vec(vec_bytes(q)) for q in queries]
            sql = f"SELECT id FROM items ORDER BY embedding {spec['op']} %s LIMIT 10"
            # Builds on all cores, as bench.py's (the server-wide setting is 0).
            c.execute(f"SET max_parallel_maintenance_workers = {max((os.cpu_count() or 1) - 1, 0)}")
            for cfg in args.configs.split(";"):
                c.execute("DROP INDEX IF EXISTS ix")
                w = f" WITH ({cfg})" if cfg else ""
                bt, mb = bench.build_index(
                    c, f"CREATE INDEX ix ON items USING ivfpq (embedding {spec['opclass']}){w}", "ix")
                print(f"--- {cfg or 'defaults'}: built in {bt:.1f} s, {mb:.1f} MB, load {bench.loadavg():.1f}",
                      flush=True)
                for it in ("off", "on"):
                    c.execute(f"SET ivfpq.iterative_scan = {it}")
                    for p in probes:
                        c.execute(f"SET ivfpq.probes = {p}")
                        rec, wall, pr, _ = prof_mod.profiled_pass(c, sql, qs, gt, 10)
                        n = len(qs)
                        print(f"  iterative {it:3} probes {p:3d}: recall {rec:.4f} {n / wall:6.0f} q/s; per query "
                              f"{pr['lists'] / n:5.1f} lists {pr['pages'] / n:5.0f} pages {pr['candidates'] / n:6.0f} "
                              f"codes {pr.get('refined', 0) / n:5.0f} refined {pr['reranked'] / n:5.0f} re-ranked",
                              flush=True)
                        print("      µs: " + " ".join(f"{k[:-2]} {pr[k] * 1e6 / n:.0f}"
                                                      for k in pr if k.endswith("_s")), flush=True)
    finally:
        cluster.stop()
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
