#!/usr/bin/env python3
"""arrw MaxSim benchmark: multi-vector documents (`vector[]`), `ORDER BY chunks @# $1
LIMIT 10`, exact (sequential scan) and arrw's ivfpq `vector_maxsim_ops`, against
pgvector's ColBERT pattern (one row per vector, hnsw, UNION ALL of per-query-vector
searches, exact MaxSim re-rank) and VectorChord's vchordrq `vector_maxsim_ops` when
installed.

Run it through `bench/run-maxsim` (which prepares the venv and builds arrw from the
work tree, or takes --pkg DIR); the data come from bench/make-multivec. See the
"MaxSim" section of bench/README.md.

It reuses bench.py's server handling (a private copy of the PostgreSQL tree with an
arrw snapshot, its own cluster as the postgres OS user) in its own directories
(.bench/pgroot-maxsim, .bench/pg-maxsim) and on its own port.
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench/bench.py: server, vector and report helpers)
import make_multivec  # noqa: E402  (the data set's MaxSim ground truth)
from bench import LogMark, Row, fmt, loadavg, log, percentile_ms  # noqa: E402

bench.use_own_dirs("maxsim")
RESULTS = bench.RESULTS
ARRW_DB = "arrw_maxsim"
PGV_DB = "pgv_maxsim"
K = 10
DATA = Path(os.environ.get("ARRW_TEXT_CACHE", "/work/data-cache/text")) / "datasets"

# pgvector-python's examples/colbert/approximate.py (ColBERT's section 3.6), with
# inner products (<#>, vector_ip_ops) instead of cosine distance: unit vectors.
PGV_MAX_SIM = """
CREATE FUNCTION max_sim(document vector[], query vector[]) RETURNS double precision AS $$
    WITH queries AS (
        SELECT row_number() OVER () AS query_number, * FROM (SELECT unnest(query) AS query) q
    ),
    documents AS (
        SELECT unnest(document) AS document
    ),
    similarities AS (
        SELECT query_number, -(document <#> query) AS similarity FROM queries CROSS JOIN documents
    ),
    max_similarities AS (
        SELECT MAX(similarity) AS max_similarity FROM similarities GROUP BY query_number
    )
    SELECT SUM(max_similarity) FROM max_similarities
$$ LANGUAGE SQL IMMUTABLE PARALLEL SAFE
"""


# --------------------------------------------------------------------------- data


def find_dataset(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    sets = sorted(DATA.glob("multivec-minilm-*"), key=lambda p: (p / "base-offsets.i64.npy").stat().st_size
                  if (p / "base-offsets.i64.npy").exists() else -1)
    if not sets or not (sets[-1] / "base-offsets.i64.npy").exists():
        raise SystemExit(f"no {DATA}/multivec-minilm-*: make one with bench/make-multivec (or pass --data)")
    return sets[-1]


def load(d: Path, docs: int | None, nq: int | None):
    """Base vectors (float32), their offsets, queries and offsets, ground truth ids and
    scores; with --docs the first N documents and the ground truth recomputed."""
    name = "base.f32.npy" if (d / "base.f32.npy").exists() else "base.f16.npy"
    base = np.load(d / name).astype(np.float32)
    boff = np.load(d / "base-offsets.i64.npy")
    q = np.load(d / "query.f32.npy").astype(np.float32)
    qoff = np.load(d / "query-offsets.i64.npy")
    gt = np.load(d / "groundtruth.i32.npy")
    gts = np.load(d / "groundtruth-scores.f64.npy")
    if nq is not None and nq < len(qoff) - 1:
        q, qoff, gt, gts = q[:qoff[nq]], qoff[:nq + 1], gt[:nq], gts[:nq]
    if docs is not None and docs < len(boff) - 1:
        boff = boff[:docs + 1]
        base = base[:boff[-1]]
        gt, gts = make_multivec.groundtruth(base, boff, q, qoff)
    return base, boff, q, qoff, gt, gts


def recall(results: list[list[int]], base, boff, q, qoff, gts) -> float:
    """Recall@10, tie-tolerant: a returned document counts when its exact (float64)
    MaxSim is at least the 10th best's (less 1e-6)."""
    hit = 0
    for i, r in enumerate(results):
        ids = np.unique(np.asarray(r[:K], dtype=np.int64))
        if len(ids):
            s = make_multivec.maxsim64(base, boff, ids, q[qoff[i]:qoff[i + 1]].astype(np.float64))
            hit += min(int((s >= gts[i, K - 1] - 1e-6).sum()), K)
    return hit / (K * len(results))


# --------------------------------------------------------------------------- binary formats


class Param:
    """A binary query parameter; one subclass per PostgreSQL type (dumpers go by class)."""
    __slots__ = ("b",)

    def __init__(self, b: bytes):
        self.b = b


class VecParam(Param):  # pgvector's vector
    pass


class PgvArrParam(Param):  # pgvector's vector[]
    pass


class ArrwArrParam(Param):  # arrw's vector[]
    pass


def type_oids(conn, typname: str) -> tuple[int, int]:
    """(oid, array type oid) of a type name as this connection resolves it."""
    return conn.execute("SELECT oid, typarray FROM pg_type WHERE oid = %s::regtype", (typname,)).fetchone()


def vec_records(v: np.ndarray) -> bytes:
    """Length-prefixed binary vectors (pgvector's and arrw's format: int16 dim, int16
    unused, float4[]), as array elements and COPY fields are written."""
    n, d = v.shape
    rec = np.empty(n, dtype=np.dtype([("len", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (d,))]))
    rec["len"], rec["dim"], rec["unused"], rec["v"] = 4 + 4 * d, d, 0, v
    return rec.tobytes()


def array_bytes(v: np.ndarray, elem_oid: int) -> bytes:
    """Binary one-dimensional array of vectors (array_recv's format)."""
    return struct.pack(">iiiii", 1, 0, elem_oid, len(v), 1) + vec_records(v)


def copy_docs(conn, base, boff, elem_oid: int, table: str = "docs") -> None:
    nd = len(boff) - 1
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, chunks) FROM STDIN (FORMAT binary)") as cp:
            cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
            buf = []
            for i in range(nd):
                a = array_bytes(base[boff[i]:boff[i + 1]], elem_oid)
                buf.append(struct.pack(">hiii", 2, 4, i, len(a)) + a)
                if len(buf) == 512:
                    cp.write(b"".join(buf))
                    buf = []
            cp.write(b"".join(buf) + struct.pack(">h", -1))


def copy_chunks(conn, base, boff) -> None:
    """pgvector's layout: one row (doc_id, emb) per vector."""
    n, d = base.shape
    doc = np.repeat(np.arange(len(boff) - 1), np.diff(boff))
    dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("doc", ">i4"), ("l2", ">i4"), ("dim", ">i2"),
                   ("unused", ">i2"), ("v", ">f4", (d,))])
    with conn.cursor() as cur:
        with cur.copy("COPY chunks (doc_id, emb) FROM STDIN (FORMAT binary)") as cp:
            cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
            for s in range(0, n, 8192):
                e = min(n, s + 8192)
                rec = np.empty(e - s, dtype=dt)
                rec["nf"], rec["l1"], rec["l2"] = 2, 4, 4 + 4 * d
                rec["doc"] = doc[s:e]
                rec["dim"], rec["unused"] = d, 0
                rec["v"] = base[s:e]
                cp.write(rec.tobytes())
            cp.write(struct.pack(">h", -1))


# --------------------------------------------------------------------------- measuring


def plan_of(conn, sql: str, params) -> str:
    return " / ".join(r[0].strip() for r in conn.execute("EXPLAIN (COSTS OFF) " + sql, params).fetchall())


def run(conn, items, warm: int | None = None, budget: float = float("inf")):
    """items: one (sql, params) per query. One warm-up pass (or the first `warm`
    queries), then bench.REPEAT timed passes, best kept: results, q/s, latencies (s).
    A warm-up pass that runs past `budget` seconds stops there, and the timed passes
    run only the queries it reached."""
    phase, i = "warm-up", 0
    best, best_lat, res = 0.0, [], []
    try:
        with conn.cursor(binary=True) as cur:
            t0 = time.perf_counter()
            for i, (sql, p) in enumerate(items if warm is None else items[:warm]):
                cur.execute(sql, p, prepare=True)
                cur.fetchall()
                if time.perf_counter() - t0 > budget and warm is None:
                    items = items[:i + 1]
                    break
            for rep in range(bench.REPEAT):
                phase = f"timed #{rep + 1}"
                out, lat = [], []
                t0 = time.perf_counter()
                for i, (sql, p) in enumerate(items):
                    t1 = time.perf_counter()
                    cur.execute(sql, p, prepare=True)
                    out.append([r[0] for r in cur.fetchall()])
                    lat.append(time.perf_counter() - t1)
                qps = len(items) / (time.perf_counter() - t0)
                if qps > best:
                    best, best_lat, res = qps, lat, out
    except psycopg.Error as e:
        e.add_note(f"at query #{i} (0-based) of the {phase} pass")
        raise
    return res, best, best_lat


class Runner:
    def __init__(self, cluster, args, ds):
        self.cluster = cluster
        self.args = args
        self.ds = ds
        self.rows: list[Row] = []
        self.errors: list[str] = []
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        print("    " + text, flush=True)
        self.notes.append(text)

    def fail(self, what: str, sql: str, err: Exception, mark: LogMark) -> None:
        lines = mark.new_lines()
        msg = [f"ERROR in {what}", f"  statement: {sql}", f"  error: {type(err).__name__}: {str(err).strip()}"]
        msg += [f"  {n}" for n in getattr(err, "__notes__", [])]
        if lines:
            msg += ["  server log:"] + ["    " + ln for ln in lines]
        text = "\n".join(msg)
        print(text, flush=True)
        self.errors.append(text)
        time.sleep(1)
        self.cluster.ensure_fresh()
        self.cluster.connect("postgres").close()  # waits out crash recovery

    def connect(self, db):
        conn = self.cluster.connect(db)
        if db == ARRW_DB:
            bench.register_binary(conn, ArrwArrParam, type_oids(conn, "vector")[1])
        else:
            vec, arr = type_oids(conn, "vector")
            bench.register_binary(conn, VecParam, vec)
            bench.register_binary(conn, PgvArrParam, arr)
            if self.has_arrw_ext(conn):
                bench.register_binary(conn, ArrwArrParam, type_oids(conn, "arrw_ext.vector")[1])
        return conn

    @staticmethod
    def has_arrw_ext(conn) -> bool:
        return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'arrw'").fetchone() is not None

    def has_ext(self, name: str) -> bool:
        with self.cluster.connect("postgres") as c:
            return c.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone() is not None

    def point(self, db, engine, params, knob, series, items, settings, want_index, build_s=float("nan"),
              index_mb=float("nan"), warm=None, note=""):
        """Measures one setting on a new connection; want_index: a substring the plan
        must contain (else enable_seqscan = off and the point is marked forced)."""
        mark = LogMark()
        conn = None
        try:
            conn = self.connect(db)
            bench.apply_settings(conn, settings)
            plan = plan_of(conn, *items[0])
            forced = False
            if want_index and want_index not in plan:
                conn.execute("SET enable_seqscan = off")
                forced, plan = True, plan_of(conn, *items[0])
                if want_index not in plan:
                    raise RuntimeError(f"the planner does not use {want_index}: {plan}")
            res, qps, lat = run(conn, items, warm, self.args.budget)
        except (psycopg.Error, RuntimeError) as e:
            self.fail(f"{engine} {params} {knob}", f"{items[0][0]}  -- with {settings}", e, mark)
            self.rows.append(Row(self.ds, engine, params, knob, build_s=build_s, index_mb=index_mb, plan="ERROR",
                                 series=series, note=str(e).strip().splitlines()[0][:100]))
            return None
        finally:
            if conn is not None:
                conn.close()
        rec = recall(res, self.base, self.boff, self.q, self.qoff, self.gts[:len(res)])
        kind = ("index" if want_index and want_index in plan else
                "parallel seq" if "Parallel Seq Scan" in plan else "seq" if "Seq Scan" in plan else plan[:40])
        row = Row(self.ds, engine, params, knob, rec, qps, build_s, index_mb, kind + (" (forced)" if forced else ""),
                  series, load=loadavg(), p50_ms=percentile_ms(lat, 50), p99_ms=percentile_ms(lat, 99),
                  note=note or f"{len(res)} queries" + ("" if len(res) == len(items) else
                                                        f" of {len(items)} (--budget)"))
        self.rows.append(row)
        print(f"    {engine:28s} {params:30s} {knob:26s} recall {rec:.3f} {qps:9.2f} q/s  "
              f"p50 {row.p50_ms:8.2f} ms p99 {row.p99_ms:8.2f} ms  [{row.plan}] load {row.load:.1f}", flush=True)
        return row

    # -- set-up ---------------------------------------------------------------

    def setup_arrw(self) -> None:
        with self.cluster.connect("postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {ARRW_DB} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {ARRW_DB}")
        with self.cluster.connect(ARRW_DB) as c:
            c.execute("CREATE EXTENSION arrw")
            c.execute(f"CREATE TABLE docs (id int PRIMARY KEY, chunks vector({self.dim})[])")
            t0 = time.perf_counter()
            copy_docs(c, self.base, self.boff, type_oids(c, "vector")[0])
            t = time.perf_counter() - t0
            c.execute("VACUUM (ANALYZE) docs")
            c.execute("CHECKPOINT")
            mb = c.execute("SELECT pg_total_relation_size('docs') / 1048576.0").fetchone()[0]
        self.note(f"arrw: docs(id int primary key, chunks vector({self.dim})[]): {len(self.boff) - 1:,} rows "
                  f"loaded with COPY (binary) in {t:.1f} s; table with TOAST and primary key {mb:.0f} MB")

    def setup_pgvector(self, with_docs: bool) -> None:
        with self.cluster.connect("postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {PGV_DB} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {PGV_DB}")
        with self.cluster.connect(PGV_DB) as c:
            c.execute("CREATE EXTENSION vector")
            c.execute(PGV_MAX_SIM)
            c.execute(f"CREATE TABLE chunks (doc_id int NOT NULL, emb vector({self.dim}))")
            t0 = time.perf_counter()
            copy_chunks(c, self.base, self.boff)
            t = time.perf_counter() - t0
            t1 = time.perf_counter()
            c.execute("CREATE INDEX chunks_doc_id ON chunks (doc_id)")
            tb = time.perf_counter() - t1
            c.execute("VACUUM (ANALYZE) chunks")
            mb = c.execute("SELECT pg_total_relation_size('chunks') / 1048576.0").fetchone()[0]
            self.note(f"pgvector: chunks(doc_id int, emb vector({self.dim})): {len(self.base):,} rows loaded with "
                      f"COPY (binary) in {t:.1f} s; btree on doc_id (for the re-rank) {tb:.1f} s; "
                      f"{mb:.0f} MB with it")
            if with_docs:
                # arrw beside pgvector (its own schema, as bench.py's pgvcol and
                # docs/pgvector.md do) for the arrw maxsim() re-rank variant
                c.execute("CREATE SCHEMA arrw_ext")
                c.execute("CREATE EXTENSION arrw SCHEMA arrw_ext")
                c.execute(f"CREATE TABLE docs (id int PRIMARY KEY, chunks arrw_ext.vector({self.dim})[])")
                t0 = time.perf_counter()
                copy_docs(c, self.base, self.boff, type_oids(c, "arrw_ext.vector")[0])
                c.execute("VACUUM (ANALYZE) docs")
                self.note(f"pgvector database: also docs(id, chunks arrw_ext.vector[]) with arrw in schema "
                          f"arrw_ext, for the arrw re-rank, loaded in {time.perf_counter() - t0:.1f} s")
            c.execute("CHECKPOINT")

    # -- engines --------------------------------------------------------------

    def arrw_items(self, sql):
        return [(sql, (ArrwArrParam(array_bytes(self.q[self.qoff[i]:self.qoff[i + 1]], self.arrw_vec_oid)),))
                for i in range(len(self.qoff) - 1)]

    def exact(self) -> None:
        a = self.args
        n = min(a.exact_queries, len(self.qoff) - 1)
        sql = f"SELECT id FROM docs ORDER BY chunks @# %b LIMIT {K}"
        items = self.arrw_items(sql)[:n]
        log(f"exact MaxSim by sequential scan, {n} queries")
        self.seq_scan_points(ARRW_DB, "exact (arrw seq scan)", items)

    def seq_scan_points(self, db, engine, items) -> None:
        """`items` by sequential scan, without and with parallel workers."""
        n = len(items)
        for workers, label in [(0, "workers_per_gather=0"), (None, "workers_per_gather default")]:
            st = {"enable_indexscan": "off"}
            if workers is not None:
                st["max_parallel_workers_per_gather"] = workers
            self.point(db, engine, "no index", label, engine, items, st, None, warm=min(2, n), note=f"{n} queries")

    def ivfpq(self) -> None:
        a = self.args
        with_ = f" WITH ({a.ivfpq_options})" if a.ivfpq_options else ""
        ddl = f"CREATE INDEX docs_ivfpq ON docs USING ivfpq (chunks vector_maxsim_ops){with_}"
        log(f"arrw: {ddl}")
        mark = LogMark()
        conn = self.cluster.connect(ARRW_DB)
        threads = a.build_threads or os.cpu_count() or 1
        conn.execute(f"SET max_parallel_maintenance_workers = {max(threads - 1, 0)}")
        try:
            t0 = time.perf_counter()
            conn.execute(ddl)
            build_s = time.perf_counter() - t0
            conn.execute("ANALYZE docs")
            mb = bench.index_size_mb(conn, "docs_ivfpq")
        except psycopg.Error as e:
            msg = str(e).strip().splitlines()[0]
            conn.close()
            if "operator class" in msg and "does not exist" in msg:
                self.note(f"arrw ivfpq vector_maxsim_ops: SKIPPED, not in this arrw build ({msg})")
                self.rows.append(Row(self.ds, "arrw ivfpq", "vector_maxsim_ops", "-", plan="SKIPPED",
                                     note="operator class does not exist in this build"))
                return
            self.fail("arrw ivfpq build", ddl, e, mark)
            self.rows.append(Row(self.ds, "arrw ivfpq", "vector_maxsim_ops", "-", plan="ERROR", note=msg[:100]))
            return
        info = bench.ivfpq_info(conn, "docs_ivfpq")
        conn.close()
        params = a.ivfpq_options or "defaults"
        self.note(f"arrw ivfpq (chunks vector_maxsim_ops) {params}: built in {build_s:.1f} s "
                  f"({threads} threads), {mb:.1f} MB; ivfpq_info: {info}")
        sql = f"SELECT id FROM docs ORDER BY chunks @# %b LIMIT {K}"
        items = self.arrw_items(sql)
        eng = "arrw ivfpq (default)"
        pts = [(f"{eng} rerank=100", f"probes={p} rerank=100", {"ivfpq.probes": p, "ivfpq.rerank": 100})
               for p in self.plan_probes]
        for rr in self.plan_reranks:
            pts += [(f"{eng} rerank={rr}", f"probes={p} rerank={rr}", {"ivfpq.probes": p, "ivfpq.rerank": rr})
                    for p in self.plan_extra_probes]
        with self.cluster.connect(ARRW_DB) as c:
            has_depth = c.execute("SELECT 1 FROM pg_settings WHERE name = 'ivfpq.maxsim_depth'").fetchone()
        if has_depth:
            # entries kept per query vector (its default, 0, meant 500 per probed list at f861d7d)
            pts += [(f"{eng} probes=16 rerank=100 maxsim_depth", f"probes=16 rerank=100 depth={dp}",
                     # a gather keeps dp entries per query vector, ~100 bytes each
                     # (the scan fails at once, saying so, past work_mem's default 4MB)
                     {"ivfpq.probes": 16, "ivfpq.rerank": 100, "ivfpq.maxsim_depth": dp,
                      "work_mem": "'64MB'"})
                    for dp in self.plan_depths_ivf]
        with self.cluster.connect(ARRW_DB) as c:
            has_sigmas = c.execute("SELECT 1 FROM pg_settings WHERE name = 'ivfpq.maxsim_sigmas'").fetchone()
        if has_sigmas:
            # a narrower margin than exact order over the rows found (docs/multivector.md):
            # fewer rows re-ranked, some near rows missed
            pts += [(f"{eng} maxsim_sigmas={sg}", f"probes={p} maxsim_sigmas={sg}",
                     {"ivfpq.probes": p, "ivfpq.maxsim_sigmas": sg})
                    for sg in (3, 2) for p in self.plan_extra_probes]
        pts.append((f"{eng} built-in defaults", "probes/rerank: index defaults", {}))
        for series, knob, st in pts:
            self.point(ARRW_DB, eng, f"vector_maxsim_ops {params}", knob, series, items, st, "docs_ivfpq",
                       build_s, mb)
        c = self.cluster.connect(ARRW_DB)
        c.execute("DROP INDEX docs_ivfpq")
        c.close()

    def pgvector(self, reranks: list[str]) -> None:
        ddl = "CREATE INDEX chunks_hnsw ON chunks USING hnsw (emb vector_ip_ops) WITH (m = 16, ef_construction = 64)"
        log(f"pgvector: {ddl} (one core, as bench.py builds pgvector's indexes)")
        mark = LogMark()
        conn = self.cluster.connect(PGV_DB)
        try:
            t0 = time.perf_counter()
            conn.execute(ddl)
            build_s = time.perf_counter() - t0
            conn.execute("ANALYZE chunks")
            mb = bench.index_size_mb(conn, "chunks_hnsw")
            vec_oid = type_oids(conn, "vector")[0]
            arrw_oid = type_oids(conn, "arrw_ext.vector")[0] if self.has_arrw_ext(conn) else None
        except psycopg.Error as e:
            self.fail("pgvector hnsw build", ddl, e, mark)
            conn.close()
            return
        conn.close()
        self.note(f"pgvector hnsw (emb vector_ip_ops) m=16 ef_construction=64 on {len(self.base):,} rows: "
                  f"built in {build_s:.1f} s (1 core), {mb:.1f} MB")

        def items(depth: int, rerank: str):
            out = []
            for i in range(len(self.qoff) - 1):
                qv = self.q[self.qoff[i]:self.qoff[i + 1]]
                union = "\n  UNION ALL\n".join(
                    f"  (SELECT doc_id FROM chunks ORDER BY emb <#> %b LIMIT {depth})" for _ in qv)
                params = [VecParam(struct.pack(">HH", len(v), 0) + v.astype(">f4").tobytes()) for v in qv]
                if rerank == "sql":
                    # as pgvector-python's colbert example: the candidates' vectors
                    # gathered from the chunks table, MaxSim by the SQL max_sim() above
                    sql = (f"WITH approximate_stage AS (\n{union}\n),\nembeddings AS (\n"
                           "  SELECT doc_id, array_agg(emb) AS embeddings FROM chunks\n"
                           "  WHERE doc_id IN (SELECT DISTINCT doc_id FROM approximate_stage)\n"
                           "  GROUP BY doc_id\n)\n"
                           f"SELECT doc_id FROM embeddings ORDER BY max_sim(embeddings, %b) DESC LIMIT {K}")
                    params.append(PgvArrParam(array_bytes(qv, vec_oid)))
                else:
                    sql = (f"WITH approximate_stage AS (\n{union}\n)\n"
                           "SELECT id FROM docs WHERE id IN (SELECT doc_id FROM approximate_stage)\n"
                           f"ORDER BY arrw_ext.maxsim(chunks, %b) DESC LIMIT {K}")
                    params.append(ArrwArrParam(array_bytes(qv, arrw_oid)))
                out.append((sql, tuple(params)))
            return out

        for rerank in reranks:
            if rerank == "arrw" and arrw_oid is None:
                continue
            eng = "pgvector hnsw + " + ("SQL max_sim" if rerank == "sql" else "arrw maxsim()")
            for depth in self.plan_depths:
                ef = max(40, depth)
                self.point(PGV_DB, eng, "m=16 ef_construction=64", f"depth={depth} ef_search={ef}", eng,
                           items(depth, rerank), {"hnsw.ef_search": ef}, "chunks_hnsw", build_s, mb)
        c = self.cluster.connect(PGV_DB)
        c.execute("DROP INDEX chunks_hnsw")
        c.close()

    def vchord(self) -> None:
        """VectorChord's vchordrq with vector_maxsim_ops on a pgvector vector[] column."""
        if not self.has_ext("vchord") or "vchord" not in self.cluster.preload:
            self.note("vchordrq (VectorChord): skipped: not installed")
            self.rows.append(Row(self.ds, "vchordrq", "vector_maxsim_ops", "-", plan="SKIPPED",
                                 note="not installed"))
            return
        # The pgvector engine makes PGV_DB; without it (--engines ...,vchord) make it here.
        with self.cluster.connect("postgres") as c:
            if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PGV_DB,)).fetchone() is None:
                c.execute(f"CREATE DATABASE {PGV_DB}")
        with self.cluster.connect(PGV_DB) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS vchord CASCADE")
            c.execute(f"CREATE TABLE IF NOT EXISTS mdocs (id int PRIMARY KEY, chunks vector({self.dim})[])")
            c.execute("DROP INDEX IF EXISTS mdocs_vchordrq")  # a previous run's, if its server was kept
            c.execute("TRUNCATE mdocs")
            vec_oid = type_oids(c, "vector")[0]
            copy_docs(c, self.base, self.boff, vec_oid, "mdocs")
            c.execute("VACUUM (ANALYZE) mdocs")
        sql = f"SELECT id FROM mdocs ORDER BY chunks @# %b LIMIT {K}"
        items = [(sql, (PgvArrParam(array_bytes(self.q[self.qoff[i]:self.qoff[i + 1]], vec_oid)),))
                 for i in range(len(self.qoff) - 1)]
        # VectorChord's @# without an index: the issue asks arrw's exact scan to be at
        # least as fast (the same queries and settings as exact()).
        self.seq_scan_points(PGV_DB, "exact (VectorChord @# seq scan)",
                             items[:min(self.args.exact_queries, len(items))])
        lists = max(1, round(4 * math.sqrt(len(self.base))))
        ddl = (f"CREATE INDEX mdocs_vchordrq ON mdocs USING vchordrq (chunks vector_maxsim_ops) WITH (options = $$\n"
               f"[build.internal]\nlists = [{lists}]\nbuild_threads = {os.cpu_count() or 1}\n$$)")
        log(f"vchordrq: {ddl}")
        mark = LogMark()
        conn = self.cluster.connect(PGV_DB)
        try:
            conn.execute("SET client_min_messages = warning")
            t0 = time.perf_counter()
            conn.execute(ddl)
            build_s = time.perf_counter() - t0
            mb = bench.index_size_mb(conn, "mdocs_vchordrq")
        except psycopg.Error as e:
            self.fail("vchordrq build", ddl, e, mark)
            conn.close()
            return
        conn.close()
        for p in (1, 4, 16, 64, 128):
            if p <= lists:
                self.point(PGV_DB, "vchordrq", f"lists={lists}", f"probes={p}", "vchordrq", items,
                           {"vchordrq.probes": f"'{p}'"}, "mdocs_vchordrq", build_s, mb)
        # VectorChord's two MaxSim knobs (both 0 by default): how many documents are
        # re-ranked exactly, and how many vectors' estimates feed a document's score;
        # the report tried them up to 1,000 and 8,000.
        for p, refine, threshold in ((64, 1000, 0), (64, 1000, 8000), (128, 1000, 8000)):
            if p <= lists:
                self.point(PGV_DB, "vchordrq", f"lists={lists}",
                           f"probes={p} maxsim_refine={refine} maxsim_threshold={threshold}", "vchordrq", items,
                           {"vchordrq.probes": f"'{p}'", "vchordrq.maxsim_refine": refine,
                            "vchordrq.maxsim_threshold": threshold}, "mdocs_vchordrq", build_s, mb)


# --------------------------------------------------------------------------- report


def table(rows: list[Row]) -> list[str]:
    w = (29, 30, 30, 9, 9, 9, 9, 8, 8, 4)
    hdr = ("method", "index", "settings", "recall@10", "q/s", "p50 ms", "p99 ms", "build s", "index MB", "load")
    out = ["  ".join(h.ljust(x) for h, x in zip(hdr, w)) + "  plan / note", "-" * 175]
    for r in rows:
        out.append("  ".join([r.engine.ljust(w[0]), r.params.ljust(w[1]), r.knob.ljust(w[2]),
                              fmt(r.recall, ".3f").rjust(w[3]), fmt(r.qps, ".2f").rjust(w[4]),
                              fmt(r.p50_ms, ".2f").rjust(w[5]), fmt(r.p99_ms, ".2f").rjust(w[6]),
                              fmt(r.build_s, ".1f").rjust(w[7]), fmt(r.index_mb, ".1f").rjust(w[8]),
                              fmt(r.load, ".1f").rjust(w[9])])
                   + "  " + r.plan + ("; " + r.note if r.note else ""))
    return out


def best_lines(rows: list[Row]) -> list[str]:
    out = []
    for target in (0.9, 0.95):
        out.append(f"Best q/s at recall@10 >= {target}, per method:")
        for e in dict.fromkeys(r.engine for r in rows):
            ok = [r for r in rows if r.engine == e and r.recall >= target and not math.isnan(r.qps)]
            if ok:
                b = max(ok, key=lambda r: r.qps)
                out.append(f"  {e:30s} {b.qps:9.2f} q/s  recall {b.recall:.3f}  p50 {b.p50_ms:.2f} ms  "
                           f"p99 {b.p99_ms:.2f} ms  at {b.knob}")
            else:
                mx = max((r.recall for r in rows if r.engine == e and not math.isnan(r.recall)), default=float("nan"))
                out.append(f"  {e:30s}       n/a  (best recall {fmt(mx, '.3f')})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="a bench/make-multivec directory (default: the largest "
                                               f"{DATA}/multivec-minilm-*)")
    ap.add_argument("--docs", type=int, help="only the first N documents (ground truth recomputed)")
    ap.add_argument("--queries", type=int, help="only the first N queries (default all; --quick 100)")
    ap.add_argument("--exact-queries", type=int, default=10, help="queries of the sequential scan (default 10)")
    ap.add_argument("--quick", action="store_true", help="5,000 documents, 100 queries, short sweeps")
    ap.add_argument("--engines", default="exact,ivfpq,pgvector,vchord",
                    help="from exact, ivfpq, pgvector, vchord (default: %(default)s)")
    ap.add_argument("--pgv-rerank", default="sql,arrw",
                    help="pgvector re-rank variants: sql (the SQL max_sim() of pgvector-python's ColBERT "
                         "example), arrw (arrw's maxsim() on a docs table beside it) (default: %(default)s)")
    ap.add_argument("--ivfpq-options", default="", help="WITH (...) options of the ivfpq index, e.g. 'lists = 500'")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="seconds: a point whose warm-up pass runs longer is timed on the queries "
                         "that pass reached (default 60)")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes per point after a warm-up pass (best kept)")
    ap.add_argument("--build-threads", type=int, help="threads of arrw's index build (default: all cores)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("ARRW_MAXSIM_PORT", "54391")))
    ap.add_argument("--arrw-pkg", type=Path, help="arrw from this `cargo pgrx package` output")
    ap.add_argument("--arrw-rev", help="(set by bench/run-maxsim) what --arrw-pkg was built from")
    ap.add_argument("--keep-running", action="store_true", help="leave the server running at the end")
    a = ap.parse_args()
    bench.REPEAT = a.repeat
    engines = set(a.engines.split(","))
    d = find_dataset(a.data)
    docs = a.docs or (5000 if a.quick else None)
    nq = a.queries or (100 if a.quick else None)
    log(f"{d}: loading")
    t_start = time.time()
    base, boff, q, qoff, gt, gts = load(d, docs, nq)
    ds = d.name + (f"-docs{docs}" if docs else "") + ("-quick" if a.quick else "")

    lock, cluster, env = bench.private_server("maxsim.lock", "maxsim.py", a.port, a.arrw_pkg, a.arrw_rev)
    r = Runner(cluster, a, ds)
    r.base, r.boff, r.q, r.qoff, r.gts = base, boff, q, qoff, gts
    r.dim = base.shape[1]
    r.plan_probes = [1, 4, 16] if a.quick else [1, 2, 4, 8, 16, 32, 64]
    r.plan_reranks = [400] if a.quick else [40, 400]
    r.plan_extra_probes = [4, 16] if a.quick else [4, 16, 64]
    r.plan_depths = [10, 40] if a.quick else [5, 10, 20, 40, 100]
    r.plan_depths_ivf = [1000, 16000] if a.quick else [500, 2000, 8000, 32000]
    nv, qv = np.diff(boff), np.diff(qoff)
    ties = int(np.sum(np.isclose(gts[:, K - 1], gts[:, K], rtol=0, atol=1e-6))) if gts.shape[1] > K else 0
    head = [f"data: {d} ({ds})",
            f"  {len(boff) - 1:,} documents, {len(base):,} x {base.shape[1]} vectors (per document min {nv.min()}, "
            f"median {int(np.median(nv))}, mean {nv.mean():.1f}, max {nv.max()}); {len(qoff) - 1} queries, "
            f"{len(q):,} vectors (per query min {qv.min()}, median {int(np.median(qv))}, mean {qv.mean():.1f}, "
            f"max {qv.max()}); {ties} queries tie at rank 10",
            "  recall@10 against the exact MaxSim top 10, tie-tolerant (a returned document counts when its "
            "exact MaxSim >= the 10th best's - 1e-6)",
            f"  one client, one query at a time, prepared, binary parameters; a warm-up pass then the best of "
            f"{bench.REPEAT} timed pass(es)"]
    print("\n".join(env + head), flush=True)
    try:
        cluster.ensure_fresh()
        r.setup_arrw()
        with cluster.connect(ARRW_DB) as c:
            r.arrw_vec_oid = type_oids(c, "vector")[0]
        if "exact" in engines:
            r.exact()
        if "ivfpq" in engines:
            r.ivfpq()
        if "pgvector" in engines:
            if r.has_ext("vector"):
                reranks = a.pgv_rerank.split(",")
                r.setup_pgvector("arrw" in reranks)
                r.pgvector(reranks)
            else:
                r.note("pgvector: skipped: extension 'vector' is not installed")
        if "vchord" in engines:
            r.vchord()
    finally:
        if not a.keep_running:
            log("stopping the benchmark server")
            cluster.stop()
    text = "\n".join(env + head + [""] + [f"note: {n}" for n in r.notes] + [""]
                     + table(r.rows) + [""] + best_lines(r.rows)
                     + ["", f"run time {(time.time() - t_start) / 60:.0f} min"])
    if r.errors:
        text += "\n\nErrors during the run:\n" + "\n\n".join(r.errors)
    print("\n" + text, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"maxsim-{ds}"
    Path(f"{out}.txt").write_text(text + "\n")
    holder = SimpleNamespace(rows=r.rows)
    bench.write_csv(holder, ds, Path(f"{out}.csv"))
    bench.plot(holder, ds, f"{ds}: MaxSim recall@10 vs q/s (1 client)", Path(f"{out}.png"))
    print(f"\nwrote {out}.txt, {out}.csv, {out}.png", flush=True)
    lock.close()
    return 1 if r.errors else 0


if __name__ == "__main__":
    sys.exit(main())
