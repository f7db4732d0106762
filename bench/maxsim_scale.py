#!/usr/bin/env python3
"""Does `vector_maxsim_ops` hold up with many vectors per row? (issue 13: "thousands of
rows that each carry tens to hundreds of vectors").

    .bench/venv/bin/python bench/maxsim_scale.py --docs 100000 --per-doc 32 [--pkg DIR]
    .bench/venv/bin/python bench/maxsim_scale.py --docs 4000 --per-doc 256 [--pkg DIR]

A check of scale, memory and errors, **not a quality benchmark**: the documents are
composed, not embedded. Each one is `--per-doc` vectors of `pydoc-minilm` (real
all-MiniLM-L6-v2 sentence embeddings, 75,000 × 384): a random row's nearest rows,
`--per-doc` of the nearest max(64, 2 × per-doc) at random, each with a little noise
(σ 0.02 per dimension, then unit length), so a document is a topical cluster as a
real document's paragraphs are, and no two vectors are equal. Queries are made the
same way (`--query-vecs` vectors). bench/run-maxsim measures quality on documents of
real paragraphs (bench/make-multivec); the corpus has too few paragraphs for 3.2M.

Steps, on a server of its own (`.bench/pg-mvscale`, port 54420, shared_buffers
`--shared-buffers`): load `docs(id int, chunks vector(384)[])` by binary COPY;
`CREATE INDEX ... USING ivfpq (chunks vector_maxsim_ops)` with no options, once per
`--mwm` value, sampling the building backend's private memory (`RssAnon`, every 0.2
s): a value too small for the model must fail at once with SQLSTATE 54000 saying what
it needs; then `ORDER BY chunks @# $1 LIMIT 10` for `--queries` queries at the index
defaults and each `--probes`, recall@10 against the exact order of a sequential scan
on the first 10 queries. Prints a table and writes `.bench/results/maxsim-scale-<docs>x<per-doc>.txt`.
"""
from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from scale import Sampler  # noqa: E402


def compose(base: np.ndarray, n: int, k: int, seed: int) -> np.ndarray:
    """n documents of k unit vectors each (see the module docs)."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, len(base), n)
    out = np.empty((n, k, base.shape[1]), np.float32)
    near = max(64, 2 * k)
    for s in range(0, n, 2000):
        c = centers[s:s + 2000]
        top = np.argpartition(-(base[c] @ base.T), near, axis=1)[:, :near]
        for j in range(len(c)):
            v = base[rng.choice(top[j], k, replace=False)]
            v = v + rng.normal(0, 0.02, v.shape).astype(np.float32)
            out[s + j] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def copy_docs(conn, base: np.ndarray, docs: int, per: int) -> None:
    """Binary COPY: a one-dimensional vector[] per row, elements in pgvector's binary form."""
    dim = base.shape[1]
    vec_oid = conn.execute("SELECT 'vector'::regtype::oid").fetchone()[0]
    elem_hdr = struct.pack(">ihh", 4 + 4 * dim, dim, 0)
    arr_hdr = struct.pack(">iiiii", 1, 0, vec_oid, per, 1)
    t0 = time.time()
    with conn.cursor() as cur, cur.copy("COPY docs FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        for s in range(0, docs, 10000):
            d = compose(base, min(10000, docs - s), per, 1000 + s).astype(">f4")
            for j in range(len(d)):
                payload = arr_hdr + b"".join(elem_hdr + d[j, e].tobytes() for e in range(per))
                cp.write(struct.pack(">hiii", 2, 4, s + j, len(payload)) + payload)
            bench.log(f"loaded {s + len(d)} of {docs} documents ({time.time() - t0:.0f} s)")
        cp.write(struct.pack(">h", -1))


def build(cluster, mwm: str) -> tuple[str, float, float, str]:
    """CREATE INDEX at maintenance_work_mem = mwm in a backend of its own (a backend
    keeps memory it freed), its private memory sampled by bench/scale.py's Sampler:
    (outcome, seconds, peak RssAnon MB, size)."""
    conn = cluster.connect("mvscale")
    sampler = Sampler(cluster, "mvscale", conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    sampler.start()
    conn.execute(f"SET maintenance_work_mem = '{mwm}'")
    conn.execute("DROP INDEX IF EXISTS docs_maxsim")
    t0 = time.time()
    try:
        conn.execute("CREATE INDEX docs_maxsim ON docs USING ivfpq (chunks vector_maxsim_ops)")
        outcome = "built"
        size = conn.execute("SELECT pg_size_pretty(pg_relation_size('docs_maxsim'))").fetchone()[0]
    except psycopg.Error as e:
        outcome = f"ERROR {e.sqlstate}: {e.diag.message_primary} ({e.diag.message_detail})"
        size = "-"
    secs = time.time() - t0
    sampler.stop.set()
    sampler.join()
    conn.close()
    return outcome, secs, sampler.peak_anon_kb / 1024, size


def literal(q: np.ndarray) -> str:
    return "{" + ",".join('"[' + ",".join(f"{x:.7g}" for x in v) + ']"' for v in q) + "}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100000)
    ap.add_argument("--per-doc", type=int, default=32, help="vectors per document (at most 8,192)")
    ap.add_argument("--query-vecs", type=int, default=16)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--probes", default="8,32", help="ivfpq.probes values besides the index defaults")
    ap.add_argument("--mwm", default="1GB,256MB,64MB",
                    help="maintenance_work_mem of each build; the last build that succeeds is queried")
    ap.add_argument("--shared-buffers", default="4GB")
    ap.add_argument("--pkg", type=Path, help="`cargo pgrx package` output (default: the system install)")
    ap.add_argument("--port", type=int, default=54420)
    a = ap.parse_args()

    bench.use_own_dirs("mvscale")
    bench.SERVER_CONF["shared_buffers"] = a.shared_buffers
    _lock, cluster, env = bench.private_server("mvscale.lock", "maxsim_scale.py", a.port, a.pkg, None)
    lines = env + [f"documents: {a.docs} x {a.per_doc} vectors composed from pydoc-minilm (not embedded: "
                   "a scale and memory check, see --help); queries: "
                   f"{a.queries} x {a.query_vecs} vectors; load {bench.loadavg():.1f}"]
    print("\n".join(lines), flush=True)
    base = np.load(bench.DATA / "pydoc-minilm" / "base.f16.npy").astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    try:
        c = cluster.connect("postgres")
        c.execute("DROP DATABASE IF EXISTS mvscale WITH (FORCE)")
        c.execute("CREATE DATABASE mvscale")
        c = cluster.connect("mvscale")
        c.execute("CREATE EXTENSION arrw")
        c.execute(f"CREATE TABLE docs (id int PRIMARY KEY, chunks vector({base.shape[1]})[])")
        t0 = time.time()
        copy_docs(c, base, a.docs, a.per_doc)
        c.execute("VACUUM ANALYZE docs")
        table = c.execute("SELECT pg_size_pretty(pg_total_relation_size('docs'))").fetchone()[0]
        lines.append(f"table: {table} with TOAST, loaded in {time.time() - t0:.0f} s")
        built = False
        for mwm in a.mwm.split(","):
            outcome, secs, peak, size = build(cluster, mwm)
            lines.append(f"build, maintenance_work_mem {mwm}: {outcome} in {secs:.1f} s, "
                         f"peak RssAnon {peak:.0f} MB, index {size}")
            print(lines[-1], flush=True)
            if outcome == "built":
                keep_mwm = mwm
                built = True
        if not built:
            return 1
        if outcome != "built":
            build(cluster, keep_mwm)
        info = bench.ivfpq_info(c, "docs_maxsim")
        lines.append(f"ivfpq_info: {info}")
        qs = [literal(q) for q in compose(base, a.queries, a.query_vecs, 99)]
        sql = "SELECT id FROM docs ORDER BY chunks @# %s::vector[] LIMIT 10"
        c.execute("SET enable_indexscan = off")
        exact = []
        t0 = time.time()
        for q in qs[:10]:
            exact.append([r[0] for r in c.execute(sql, (q,)).fetchall()])
        lines.append(f"exact MaxSim, sequential scan: {10 / (time.time() - t0):.2f} q/s (10 queries)")
        print(lines[-1], flush=True)
        c.execute("RESET enable_indexscan")
        lines.append("| setting | recall@10 (first 10 queries) | q/s | p50 / p99 ms |")
        lines.append("|---|---|---|---|")
        for probes in [None] + [int(p) for p in a.probes.split(",") if p]:
            c.execute("RESET ivfpq.probes" if probes is None else f"SET ivfpq.probes = {probes}")
            for q in qs[:3]:
                c.execute(sql, (q,)).fetchall()
            got, lat = [], []
            t0 = time.time()
            for q in qs:
                t1 = time.time()
                got.append([r[0] for r in c.execute(sql, (q,)).fetchall()])
                lat.append(time.time() - t1)
            qps = len(qs) / (time.time() - t0)
            rec = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)])
            lines.append(f"| {'index defaults' if probes is None else f'probes {probes}'} | {rec:.3f} | "
                         f"{qps:.1f} | {np.percentile(lat, 50) * 1e3:.1f} / {np.percentile(lat, 99) * 1e3:.1f} |")
            print(lines[-1], flush=True)
        lines.append(f"load after the run {bench.loadavg():.1f}")
    finally:
        cluster.stop()
    out = bench.RESULTS / f"maxsim-scale-{a.docs}x{a.per_doc}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\nwrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
