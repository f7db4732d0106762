#!/usr/bin/env python3
"""arrw fusion benchmark: arrw.fused_search over a table of paragraphs with a chunk
vector, a document vector and a tsvector (hybrid search), indexed (ivfpq, GIN)
against the same call run exactly (sequential scans and sorts).

Run it through `bench/run-fusion` (which builds arrw, or takes --pkg DIR); the data
come from `bench/make-fusion`. See "Fusion and hybrid search" in bench/README.md.

What it measures, one client, one query at a time:
- the exact fused query: the same arrw.fused_search(...) call with
  enable_indexscan = off and enable_bitmapscan = off (every input a sequential scan
  and an exact sort; checked with EXPLAIN of arrw.fused_search_sql): the ground truth
  and the baseline q/s;
- the indexed call with default settings and a sweep of ivfpq.probes (and the
  fusion depth), for 'rrf' and 'weighted', with two inputs (chunk and document
  vectors) and three (+ full text), and with a filter;
- recall@10: the fused top 10 against the exact call's top 10, by id;
- brute-force checks in numpy: each vector input's exact ranking (the exact call's
  ranks agree with numpy's distances), the whole fusion recomputed from numpy
  rankings (and the text input's ranking from SQL), and how much the top 10 of an
  exact fusion moves with the order of tied rows alone (rows of one document share
  its vector, so the document input ranks them in an arbitrary order).

It reuses bench.py's server handling in its own directories (.bench/pgroot-fusion,
.bench/pg-fusion) and port, so it can run next to the other benchmarks.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench/bench.py: server and helpers)
from bench import LogMark, fmt, loadavg, log, percentile_ms  # noqa: E402

bench.use_own_dirs("fusion")
RESULTS = bench.RESULTS
DB = "arrw_fusion"
K = 10
DEPTH = 100  # fused_search's default depth for k = 10: max(10 k, 100)
RRF_K = 60
DATA = Path(os.environ.get("ARRW_FUSION_DATA", "/work/data-cache/text/datasets/fusion-minilm-100000"))
EXACT = {"enable_indexscan": "off", "enable_bitmapscan": "off"}
TEXT_WORDS = 3  # words of a query paragraph in its full-text query


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    chunk: np.ndarray  # rows x dim
    doc: np.ndarray  # rows x dim (each row's document vector)
    row_doc: np.ndarray
    source: np.ndarray  # rows, 'deb' / 'man' / 'py'
    body: list[str]
    queries: np.ndarray
    qtext: list[str]
    qdoc: list[str]
    readme: str


def load_data(d: Path, nq: int | None) -> Data:
    chunk = np.load(d / "chunk.f32.npy")
    docs = np.load(d / "doc.f32.npy")
    row_doc = np.load(d / "row-doc.i32.npy")
    with gzip.open(d / "docs.jsonl.gz", "rt") as f:
        dsrc = np.array([json.loads(ln)["source"] for ln in f])
    with gzip.open(d / "rows.jsonl.gz", "rt") as f:
        body = [json.loads(ln)["text"] for ln in f]
    with gzip.open(d / "queries.jsonl.gz", "rt") as f:
        qrows = [json.loads(ln) for ln in f]
    queries = np.load(d / "query.f32.npy")
    if nq:
        queries, qrows = queries[:nq], qrows[:nq]
    return Data(chunk, docs[row_doc], row_doc, dsrc[row_doc], body, queries,
                [q["text"] for q in qrows], [q["doc"] for q in qrows],
                (d / "README.md").read_text().splitlines()[0])


def copy_rows(conn, data: Data) -> None:
    """Binary COPY of (id, doc, source, body, chunk_emb, doc_emb); body_tsv is generated."""
    n, dim = data.chunk.shape
    ch = data.chunk.astype(">f4")
    dc = data.doc.astype(">f4")
    vhead = struct.pack(">iHH", 4 + 4 * dim, dim, 0)
    with conn.cursor() as cur:
        with cur.copy("COPY items (id, doc, source, body, chunk_emb, doc_emb) FROM STDIN (FORMAT binary)") as cp:
            cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
            buf = []
            for i in range(n):
                src = str(data.source[i]).encode()
                body = data.body[i].encode()
                buf.append(struct.pack(">hiiiii", 6, 4, i, 4, int(data.row_doc[i]), len(src)) + src
                           + struct.pack(">i", len(body)) + body
                           + vhead + ch[i].tobytes() + vhead + dc[i].tobytes())
                if len(buf) == 2000:
                    cp.write(b"".join(buf))
                    buf = []
            cp.write(b"".join(buf) + struct.pack(">h", -1))


def vec_text(v: np.ndarray) -> str:
    # %.9g round-trips a float32
    return "[" + ",".join(f"{x:.9g}" for x in v.tolist()) + "]"


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    cols: tuple[str, ...]  # chunk_emb, doc_emb, body_tsv
    method: str
    filter: str | None = None
    depth: int | None = None  # None: fused_search's default
    mask: np.ndarray | None = None

    @property
    def d(self) -> int:
        return self.depth or DEPTH


def inputs_json(case: Case, qvec: str, qtext: str, cols=None, depth=None) -> str:
    out = []
    for c in cols or case.cols:
        inp = {"column": c, "query": qtext if c == "body_tsv" else qvec}
        if c == "body_tsv":
            inp["config"] = "english"
        if depth or case.depth:
            inp["depth"] = depth or case.depth
        out.append(inp)
    return json.dumps(out)


SQL = "SELECT id::int FROM arrw.fused_search('items', 'id', %s::jsonb, %s, %s, %s)"
SQL_RANKS = "SELECT id::int, score, ranks FROM arrw.fused_search('items', 'id', %s::jsonb, %s, %s, %s)"


def plan_of(conn, case: Case, params) -> str:
    """Each input's scans, from EXPLAIN of arrw.fused_search_sql's query, e.g.
    'chunk_emb: Index Scan (items_chunk_emb_idx) | body_tsv: Bitmap Heap Scan <
    Bitmap Index Scan (items_body_tsv_idx)'."""
    sql = conn.execute("SELECT arrw.fused_search_sql('items', 'id', %s::jsonb, %s, %s, %s)",
                       params).fetchone()[0]
    lines = [r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + sql).fetchall()]
    cols = [inp["column"] for inp in json.loads(params[0])]
    per: dict[str, list[str]] = {}
    cur = None
    for ln in lines:
        m = re.match(r"^\s*CTE i(\d+)$", ln)
        if m:
            cur = cols[int(m.group(1)) - 1]
            per[cur] = []
            continue
        if cur is None:
            continue
        m = re.search(r"(Parallel Seq Scan|Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan|"
                      r"Bitmap Index Scan|Gather Merge|Gather)(?: using (\S+))?(?: on (\S+))?", ln)
        if m:
            node = m.group(1)
            if m.group(2):
                node += f" ({m.group(2)})"
            elif node == "Bitmap Index Scan" and m.group(3):
                node += f" ({m.group(3)})"
            per[cur].append(node)
    return " | ".join(f"{c}: {' < '.join(v) or '?'}" for c, v in per.items())


def plan_is_exact(plan: str) -> bool:
    return "Index" not in plan and "Bitmap" not in plan


def plan_uses_indexes(plan: str) -> bool:
    return all(("Index Scan" in part) for part in plan.split(" | "))


# --------------------------------------------------------------------------- brute force


def distances(data: Data, col: str) -> np.ndarray:
    """Exact cosine distances, queries x rows, float64."""
    base = data.chunk if col == "chunk_emb" else data.doc
    return 1.0 - data.queries.astype(np.float64) @ base.T.astype(np.float64)


def vector_ranking(dist: np.ndarray, mask, depth: int, ties: str):
    """Top `depth` rows of one query by distance, equal distances by id (asc/desc):
    (ids, weighted-fusion scores s)."""
    ids = np.arange(len(dist)) if mask is None else np.flatnonzero(mask)
    d = dist[ids]
    key2 = ids if ties == "asc" else -ids
    order = np.lexsort((key2, d))[:depth]
    top, dt = ids[order], d[order]
    lo, hi = dt.min(), dt.max()
    s = 1 - (dt - lo) / (hi - lo) if hi > lo else np.ones(len(dt))
    return top, s


def text_ranking(rows, depth: int, ties: str):
    """rows: [(id, score s)] of the text input's exact ranking, from SQL (deeper than
    `depth`); re-ordered with equal scores by id (asc/desc), cut at depth."""
    if not rows:
        return np.empty(0, np.int64), np.empty(0)
    ids = np.array([r[0] for r in rows], np.int64)
    s = np.array([r[1] for r in rows], np.float64)
    key2 = ids if ties == "asc" else -ids
    order = np.lexsort((key2, -s))[:depth]
    # s was rank / best rank over the deeper list: the best is the same row
    return ids[order], s[order]


def fuse(rankings, method: str, k: int = K) -> list[int]:
    score: dict[int, float] = {}
    for ids, s in rankings:
        for r, (i, si) in enumerate(zip(ids.tolist(), s.tolist()), 1):
            score[i] = score.get(i, 0.0) + (1.0 / (RRF_K + r) if method == "rrf" else si)
    return [i for i, _ in sorted(score.items(), key=lambda t: (-t[1], t[0]))[:k]]


def tie_tolerant_recall(res, bounds) -> float:
    """Share of the returned top 10 that is in the exact top 10 under some order of
    tied rows (not ruled out by Runner.tie_bounds)."""
    out = []
    for r, (hi, t, ncand) in zip(res, bounds):
        want = min(K, ncand)
        ok = sum(hi.get(i, 0.0) >= t - 1e-12 for i in r[:K])
        out.append(min(ok, want) / want if want else 1.0)
    return float(np.mean(out))


def overlap(a, b, k=K) -> float:
    want = min(k, len(b))
    return len(set(a[:k]) & set(b[:k])) / want if want else 1.0


# --------------------------------------------------------------------------- measuring


@dataclass
class Point:
    case: str
    method: str
    setting: str
    exact: bool
    recall: float = float("nan")
    recall_tt: float = float("nan")  # tie-tolerant, see Runner.tie_bounds
    qps: float = float("nan")
    p50: float = float("nan")
    p99: float = float("nan")
    speedup: float = float("nan")
    plan: str = ""
    load: float = float("nan")
    note: str = ""
    queries: int = 0
    res: list = field(default_factory=list, repr=False)


class Runner:
    def __init__(self, cluster, args, data: Data):
        self.cluster = cluster
        self.args = args
        self.data = data
        self.points: list[Point] = []
        self.notes: list[str] = []
        self.checks: list[str] = []
        self.errors: list[str] = []
        self.qvec = [vec_text(q) for q in data.queries]
        self.qtext: list[str] = []
        self.dist = {}
        self.conn = None

    # -- setup

    def setup(self):
        d = self.data
        n, dim = d.chunk.shape
        with self.cluster.connect("postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {DB}")
        c = self.cluster.connect(DB)
        c.execute("CREATE EXTENSION arrw")
        c.execute(f"""CREATE TABLE items (
            id int PRIMARY KEY, doc int NOT NULL, source text NOT NULL, body text NOT NULL,
            body_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
            chunk_emb vector({dim}), doc_emb vector({dim}))""")
        if self.args.storage == "plain":
            c.execute("ALTER TABLE items ALTER COLUMN chunk_emb SET STORAGE PLAIN, "
                      "ALTER COLUMN doc_emb SET STORAGE PLAIN")
        t0 = time.perf_counter()
        copy_rows(c, d)
        t_load = time.perf_counter() - t0
        c.execute("VACUUM (ANALYZE) items")
        threads = os.cpu_count() or 1
        built = []
        for ddl, name, sets in [
            ("CREATE INDEX items_chunk_emb_idx ON items USING ivfpq (chunk_emb vector_cosine_ops)",
             "items_chunk_emb_idx", {"max_parallel_maintenance_workers": max(threads - 1, 0)}),
            ("CREATE INDEX items_doc_emb_idx ON items USING ivfpq (doc_emb vector_cosine_ops)",
             "items_doc_emb_idx", {"max_parallel_maintenance_workers": max(threads - 1, 0)}),
            ("CREATE INDEX items_body_tsv_idx ON items USING gin (body_tsv)", "items_body_tsv_idx", {}),
        ]:
            log(ddl)
            for k, v in sets.items():
                c.execute(f"SET {k} = {v}")
            t0 = time.perf_counter()
            c.execute(ddl)
            dt = time.perf_counter() - t0
            for k in sets:
                c.execute(f"RESET {k}")
            mb = c.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()[0] / 2**20
            info = bench.ivfpq_info(c, name) if "ivfpq" in ddl else None
            built.append(f"{name}: {dt:.1f} s, {mb:.1f} MB" + (f", ivfpq_info {info}" if info else ""))
        c.execute("VACUUM (ANALYZE) items")
        c.execute("CHECKPOINT")
        tb, heap, toast = c.execute(
            "SELECT pg_table_size('items'), pg_relation_size('items'), pg_relation_size(reltoastrelid) "
            "FROM pg_class WHERE oid = 'items'::regclass").fetchone()
        tb, heap, toast = tb / 2**20, heap / 2**20, toast / 2**20
        ndocs = len(np.unique(d.row_doc))
        per_doc = np.bincount(d.row_doc)
        self.notes += [
            f"data: {DATA} ({d.readme.lstrip('# ')})",
            f"table items: {n:,} rows (paragraphs) of {ndocs:,} documents (rows per document: median "
            f"{int(np.median(per_doc))}, mean {per_doc.mean():.1f}, max {per_doc.max()}), {tb:.0f} MB (heap "
            f"{heap:.0f} MB, TOAST {toast:.0f} MB; vector columns' storage: "
            f"{'PLAIN (in the row)' if self.args.storage == 'plain' else 'the type default, EXTERNAL'}); "
            f"binary COPY {t_load:.1f} s (body_tsv generated: to_tsvector('english', body))",
            "columns: chunk_emb = the paragraph's all-MiniLM-L6-v2 vector; doc_emb = its document's vector (mean "
            "of the document's rows' chunk vectors, unit length: rows of one document share it); body_tsv",
            *built,
        ]
        self.conn = c

    def text_queries(self):
        """A full-text query per query paragraph: its TEXT_WORDS words whose lexemes
        occur in the fewest rows (but in 2 at least), joined by ' or '
        (websearch_to_tsquery: any of them; ts_rank ranks rows by how many and how often)."""
        c = self.conn
        ndoc = dict(c.execute("SELECT word, ndoc FROM ts_stat('SELECT body_tsv FROM items')").fetchall())
        out, matches = [], []
        for t in self.data.qtext:
            words = {}
            for alias, token, lexemes in c.execute(
                    "SELECT alias, token, lexemes FROM ts_debug('english', %s)", (t,)).fetchall():
                if alias not in ("asciiword", "word") or not lexemes or len(token) < 3:
                    continue
                lx = lexemes[0]
                if ndoc.get(lx, 0) >= 2 and lx not in words:
                    words[lx] = token.lower()
            best = sorted(words, key=lambda lx: (ndoc[lx], lx))[:TEXT_WORDS]
            q = " or ".join(words[lx] for lx in best)
            out.append(q)
            matches.append(c.execute("SELECT count(*) FROM items WHERE body_tsv @@ "
                                     "websearch_to_tsquery('english', %s)", (q,)).fetchone()[0])
        self.qtext = out
        m = np.array(matches)
        self.notes.append(
            f"full-text queries: the {TEXT_WORDS} words of the query paragraph whose lexemes are in the fewest "
            f"rows (at least 2), joined by ' or ' for websearch_to_tsquery('english', ...), e.g. "
            f"{out[0]!r}, {out[1]!r}; rows matching: median {int(np.median(m))}, min {m.min()}, max {m.max()}; "
            f"{int((m >= DEPTH).sum())} of {len(m)} queries match {DEPTH} rows or more, {int((m == 0).sum())} none")
        (RESULTS / "fusion-text-queries.txt").write_text(
            "".join(f"{i}\t{m[i]}\t{q}\t{t}\n" for i, (q, t) in enumerate(zip(out, self.data.qtext))))

    # -- running

    def run(self, case: Case, setting: str, settings: dict, exact: bool, truth=None, repeat=None,
            nq=None, bounds=None) -> Point:
        c = self.conn
        nq = nq or len(self.qvec)
        params = [(inputs_json(case, self.qvec[i], self.qtext[i] if self.qtext else ""), K, case.method,
                   case.filter) for i in range(nq)]
        pt = Point(case.name, case.method, setting, exact, queries=nq)
        mark = LogMark()
        try:
            for k, v in settings.items():
                c.execute(f"SET {k} = {v}")
            pt.plan = plan_of(c, case, params[0])
            best, lat_best, res = 0.0, [], []
            reps = repeat or (1 if exact else self.args.repeat)
            with c.cursor() as cur:
                warm = params[:5] if exact else params
                for p in warm:
                    cur.execute(SQL, p, prepare=True)
                    cur.fetchall()
                for _ in range(reps):
                    res, lat = [], []
                    t0 = time.perf_counter()
                    for p in params:
                        t1 = time.perf_counter()
                        cur.execute(SQL, p, prepare=True)
                        res.append([r[0] for r in cur.fetchall()])
                        lat.append(time.perf_counter() - t1)
                    qps = len(params) / (time.perf_counter() - t0)
                    if qps > best:
                        best, lat_best = qps, lat
        except psycopg.Error as e:
            lines = mark.new_lines()
            text = "\n".join([f"ERROR in {case.name} {case.method} {setting}", f"  settings: {settings}",
                              f"  error: {type(e).__name__}: {str(e).strip()}"]
                             + (["  server log:"] + ["    " + ln for ln in lines] if lines else []))
            print(text, flush=True)
            self.errors.append(text)
            pt.plan, pt.note = "ERROR", str(e).strip().splitlines()[0][:80]
            self.points.append(pt)
            self.cluster.ensure_fresh()
            self.conn = self.cluster.connect(DB)
            return pt
        finally:
            if self.conn is c and not c.broken:
                for k in settings:
                    c.execute(f"RESET {k}")
        pt.res = res
        pt.qps, pt.p50, pt.p99 = best, percentile_ms(lat_best, 50), percentile_ms(lat_best, 99)
        pt.load = loadavg()
        if truth is not None:
            pt.recall = float(np.mean([overlap(r, t) for r, t in zip(res, truth.res)]))
            pt.speedup = pt.qps / truth.qps
        elif exact:
            pt.recall = 1.0
            pt.speedup = 1.0
        if bounds is not None:
            pt.recall_tt = tie_tolerant_recall(res, bounds)
        if exact and not plan_is_exact(pt.plan):
            pt.note = "NOT EXACT: an input used an index"
        if not exact and not plan_uses_indexes(pt.plan):
            pt.note = "an input did not use its index"
        self.points.append(pt)
        print(f"  {case.name:34s} {case.method:8s} {setting:28s} recall {fmt(pt.recall, '.3f')} "
              f"(ties {fmt(pt.recall_tt, '.3f')}) {pt.qps:8.1f} q/s  p50 {pt.p50:7.2f} ms  p99 {pt.p99:7.2f} ms  x{fmt(pt.speedup, '.1f')}  "
              f"load {pt.load:.1f}  [{pt.plan}]" + (f"  {pt.note}" if pt.note else ""), flush=True)
        return pt

    def single(self, col: str, depth: int, settings: dict, method="weighted", filt=None, nq=None):
        """One input alone, k = depth: its ranking (id, s) per query, as fused_search reads it."""
        c = self.conn
        nq = nq or len(self.qvec)
        case = Case(col, (col,), method, filt, depth)
        out = []
        for k, v in settings.items():
            c.execute(f"SET {k} = {v}")
        try:
            with c.cursor() as cur:
                for i in range(nq):
                    cur.execute(SQL_RANKS, (inputs_json(case, self.qvec[i], self.qtext[i] if self.qtext else ""),
                                            depth, method, filt))
                    out.append([(r[0], r[1], r[2][col]) for r in cur.fetchall()])
        finally:
            for k in settings:
                c.execute(f"RESET {k}")
        return out

    # -- checks against numpy

    def check_vector_inputs(self, nq: int):
        """The exact call's ranking of each vector input (alone, k = depth = 100) against
        numpy's distances: every returned row no farther than the exact 100th, and each
        row's rank within the ranks its distance allows (ties)."""
        for col in ("chunk_emb", "doc_emb"):
            dist = self.dist[col]
            rows = self.single(col, DEPTH, EXACT, nq=nq)
            bad_set, bad_rank, ties = 0, 0, 0
            for qi, r in enumerate(rows):
                d = dist[qi]
                kth = np.partition(d, DEPTH - 1)[DEPTH - 1]
                eps = 1e-6
                ds = np.sort(d)
                for (i, _, rank) in r:
                    lo = int(np.searchsorted(ds, d[i] - eps, "left")) + 1
                    hi = int(np.searchsorted(ds, d[i] + eps, "right"))
                    bad_rank += not (lo <= rank <= hi)
                    ties += hi > lo
                bad_set += sum(d[i] > kth + 1e-6 for i, _, _ in r) + (DEPTH - len(r))
            self.checks.append(
                f"{col}: exact call alone (k = depth = {DEPTH}) vs numpy, {nq} queries: {bad_set} returned rows "
                f"farther than numpy's {DEPTH}th (or missing), {bad_rank} ranks outside the ranks their distance "
                f"allows (within 1e-6); {ties} of {nq * DEPTH} returned rows tie with another row")

    def tie_bounds(self, case: Case, text_rows=None, nq=None):
        """Per query, what the order of tied rows can make of each row's fused score.

        A row whose distance (or ts_rank) equals others' occupies, in an input's exact
        ranking, one of the positions a..b its tie group spans; fused_search numbers
        rows with row_number(), so any of them is its rank there, and a group that
        straddles the depth may leave it out. Its contribution is therefore at most
        w / (rrf_k + a) (weighted: s, when a <= depth) and at least w / (rrf_k + b)
        (s when b <= depth; 0 when b > depth). Summed: lo(x) <= score(x) <= hi(x)
        whatever the order of ties. With T the 10th largest lo, a row with hi(x) < T
        is outside the exact top 10 under every order of tied rows: it is a true
        miss. Returns [(hi by id, T)] per query."""
        nq = nq or len(self.qvec)
        depth = case.d
        eps = 1e-6  # distances closer than this count as ties (float32 in the server)
        out = []
        ids_all = np.arange(len(self.data.chunk)) if case.mask is None else np.flatnonzero(case.mask)
        for qi in range(nq):
            parts_id, parts_lo, parts_hi = [], [], []
            for col in case.cols:
                if col == "body_tsv":
                    rows = text_rows[qi]
                    if not rows:
                        continue
                    ids = np.array([r[0] for r in rows], np.int64)
                    sv = np.array([r[1] for r in rows], np.float64)
                    key = np.sort(-sv)
                    a = np.searchsorted(key, -sv - 1e-12, "left") + 1
                    b = np.searchsorted(key, -sv + 1e-12, "right")
                else:
                    dm = self.dist[col][qi][ids_all]
                    kk = min(depth, len(dm)) - 1
                    kth = np.partition(dm, kk)[kk]
                    srt = np.sort(dm[dm <= kth + 2 * eps])
                    sel = dm <= kth + eps
                    ids, dc = ids_all[sel], dm[sel]
                    a = np.searchsorted(srt, dc - eps, "left") + 1
                    b = np.searchsorted(srt, dc + eps, "right")
                    lo_d = srt[0]
                    sv = 1 - (dc - lo_d) / (kth - lo_d) if kth > lo_d else np.ones(len(dc))
                if case.method == "rrf":
                    hi = np.where(a <= depth, 1.0 / (RRF_K + a), 0.0)
                    lo = np.where(b <= depth, 1.0 / (RRF_K + b), 0.0)
                else:
                    hi = np.where(a <= depth, sv, 0.0)
                    lo = np.where(b <= depth, sv, 0.0)
                parts_id.append(ids)
                parts_lo.append(lo)
                parts_hi.append(hi)
            ids = np.concatenate(parts_id)
            uid, inv = np.unique(ids, return_inverse=True)
            lo = np.zeros(len(uid))
            hi = np.zeros(len(uid))
            np.add.at(lo, inv, np.concatenate(parts_lo))
            np.add.at(hi, inv, np.concatenate(parts_hi))
            t = np.sort(lo)[::-1][K - 1] if len(lo) >= K else 0.0
            out.append((dict(zip(uid.tolist(), hi.tolist())), float(t), int((hi > 0).sum())))
        return out

    def numpy_fusion(self, case: Case, ties: str, text_rows=None, nq=None) -> list[list[int]]:
        nq = nq or len(self.qvec)
        out = []
        for qi in range(nq):
            rk = []
            for col in case.cols:
                if col == "body_tsv":
                    rk.append(text_ranking([(i, s) for i, s, _ in text_rows[qi]], case.d, ties))
                else:
                    rk.append(vector_ranking(self.dist[col][qi], case.mask, case.d, ties))
            out.append(fuse(rk, case.method))
        return out

    def check_fusion(self, case: Case, exact_pt: Point, text_rows, bounds):
        """The exact call's top 10 against the fusion recomputed in numpy (the text
        input's ranking from SQL, 1,000 deep), equal distances / ranks by id ascending
        and descending: (numpy asc vs SQL, numpy desc vs SQL, numpy asc vs desc)."""
        nq = len(exact_pt.res)
        asc = self.numpy_fusion(case, "asc", text_rows, nq)
        desc = self.numpy_fusion(case, "desc", text_rows, nq)
        a = np.mean([overlap(x, t) for x, t in zip(exact_pt.res, asc)])
        b = np.mean([overlap(x, t) for x, t in zip(exact_pt.res, desc)])
        ab = np.mean([overlap(x, t) for x, t in zip(asc, desc)])
        best = np.mean([max(overlap(x, s), overlap(x, t)) for x, s, t in zip(exact_pt.res, asc, desc)])
        tt = [tie_tolerant_recall(x, bounds[:nq]) for x in (asc, desc, exact_pt.res)]
        self.checks.append(
            f"{case.name} {case.method}: exact call vs numpy fusion: recall@10 {a:.3f} (ties by id asc), "
            f"{b:.3f} (desc), {best:.3f} (the better per query); numpy asc vs desc: {ab:.3f} "
            f"(what the order of tied rows alone moves); tie-tolerant recall of numpy asc, desc and the exact "
            f"call: {tt[0]:.3f}, {tt[1]:.3f}, {tt[2]:.3f} (1.000: none is a true miss)")
        return ab

    # -- the sweep

    def sweep(self):
        d = self.data
        a = self.args
        nq = len(self.qvec)
        log(f"numpy: exact distances ({nq} x {len(d.chunk):,}, two columns)")
        self.dist = {c: distances(d, c) for c in ("chunk_emb", "doc_emb")}
        self.check_vector_inputs(min(nq, a.check_queries))
        for ln in self.checks:
            print("  check: " + ln, flush=True)
        V2 = ("chunk_emb", "doc_emb")
        V3 = ("chunk_emb", "doc_emb", "body_tsv")
        filt10 = "doc % 10 = 0"
        filt_deb = "source = 'deb'"
        cases = [
            Case("chunk only", ("chunk_emb",), "rrf"),
            Case("text only", ("body_tsv",), "rrf"),
            Case("chunk + doc", V2, "rrf"),
            Case("chunk + doc", V2, "weighted"),
            Case("chunk + doc + text", V3, "rrf"),
            Case("chunk + doc + text", V3, "weighted"),
            Case("chunk + doc + text, depth 200", V3, "rrf", depth=200),
            Case(f"chunk + doc + text, {filt10}", V3, "rrf", filt10, mask=(d.row_doc % 10 == 0)),
            Case(f"chunk + doc + text, {filt_deb}", V3, "rrf", filt_deb, mask=(d.source == "deb")),
        ]
        if a.quick:
            cases = [c for c in cases if c.name in ("chunk + doc", "chunk + doc + text") and c.method == "rrf"]
        if a.cases:
            want = [w.strip() for w in a.cases.split(",")]
            cases = [c for c in cases if any(w in f"{c.name} {c.method}" for w in want)]
        probes = [int(p) for p in a.probes.split(",")] if a.probes else []
        for case in cases:
            log(f"{case.name} ({case.method}): exact")
            # the text input's ranking (exact with or without its index), 1,000 deep
            text_rows = (self.single("body_tsv", 1000, {}, "weighted", case.filter)
                         if "body_tsv" in case.cols else None)
            bounds = self.tie_bounds(case, text_rows)
            ex = self.run(case, "exact (seq scans)", EXACT, True, bounds=bounds)
            if ex.plan == "ERROR":
                continue
            if case.name == "chunk + doc + text" and case.method == "rrf" and not a.quick:
                self.run(case, "exact, no parallel workers", {**EXACT, "max_parallel_workers_per_gather": 0},
                         True, truth=ex, bounds=bounds)
            if len(case.cols) > 1:
                self.check_fusion(case, ex, text_rows, bounds)
                print("  check: " + self.checks[-1], flush=True)
            sets = [("defaults", {})]
            if case.filter:
                # the planner's choice, then the vector indexes forced (enable_seqscan = off)
                force = {"enable_seqscan": "off"}
                sets += [("iterative_scan on", {"ivfpq.iterative_scan": "on"})]
                sets += [(f"probes={p}", {"ivfpq.probes": p}) for p in probes]
                sets += [("forced, iterative off", {**force, "ivfpq.iterative_scan": "off"}),
                         ("forced, iterative on", {**force, "ivfpq.iterative_scan": "on"})]
                sets += [(f"forced, iterative, probes={p}", {**force, "ivfpq.probes": p,
                                                             "ivfpq.iterative_scan": "on"})
                         for p in probes if p > 20]
            elif case.cols != ("body_tsv",):
                sets += [(f"probes={p}", {"ivfpq.probes": p}) for p in probes]
            for label, s in sets:
                self.run(case, label, s, False, truth=ex, bounds=bounds)
        # how well each vector input alone finds its exact top 100 (tie-tolerant: a row
        # counts when no farther than the exact 100th), to separate the index's error
        # from the fusion's
        for label, s in [("defaults", {})] + [(f"probes={p}", {"ivfpq.probes": p}) for p in probes]:
            parts = []
            for col in ("chunk_emb", "doc_emb"):
                rows = self.single(col, DEPTH, s, nq=min(nq, a.check_queries))
                rec = []
                for qi, r in enumerate(rows):
                    dd = self.dist[col][qi]
                    kth = np.partition(dd, DEPTH - 1)[DEPTH - 1]
                    rec.append(sum(dd[i] <= kth + 1e-6 for i, _, _ in r) / DEPTH)
                parts.append(f"{col} {np.mean(rec):.3f}")
            self.checks.append(f"index alone, recall@{DEPTH} (tie-tolerant), {label}: " + ", ".join(parts))
            print("  check: " + self.checks[-1], flush=True)


# --------------------------------------------------------------------------- report

HEAD = ("case", "method", "setting", "recall@10", "tie-tol.", "q/s", "p50 ms", "p99 ms", "x exact", "load")
WIDTH = (40, 8, 28, 9, 8, 8, 8, 8, 7, 5)


def report(r: Runner, env: list[str]) -> str:
    out = list(env) + [""] + ["## " + n for n in r.notes] + [""]
    out.append("  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(HEAD, WIDTH)))
               + "  plan (each input's scans)")
    out.append("-" * 180)
    for p in r.points:
        out.append("  ".join([p.case.ljust(WIDTH[0]), p.method.ljust(WIDTH[1]), p.setting.ljust(WIDTH[2]),
                              fmt(p.recall, ".3f").rjust(WIDTH[3]), fmt(p.recall_tt, ".3f").rjust(WIDTH[4]),
                              fmt(p.qps, ".1f").rjust(WIDTH[5]),
                              fmt(p.p50, ".2f").rjust(WIDTH[6]), fmt(p.p99, ".2f").rjust(WIDTH[7]),
                              fmt(p.speedup, ".1f").rjust(WIDTH[8]), fmt(p.load, ".1f").rjust(WIDTH[9])])
                   + "  " + p.plan + (f"  [{p.note}]" if p.note else ""))
    out += ["", "recall@10: the returned top 10 against the exact call's top 10, by id. tie-tol.: the share of the "
                "returned top 10 that is in the exact top 10 under some order of tied rows (equal distances: the "
                "rows of one document share doc_emb; equal ts_rank), i.e. 1 - the true misses (see tie_bounds).",
            "", "Checks (numpy brute force):"] + ["  " + c for c in r.checks]
    out += ["", "Target (issue): recall@10 >= 0.95 against the exact fused ranking at >= 20x the exact "
                "fused query's q/s (100k rows). Best indexed point per case:"]
    cases = list(dict.fromkeys((p.case, p.method) for p in r.points))
    for cname, m in cases:
        pts = [p for p in r.points if p.case == cname and p.method == m and not p.exact
               and not math.isnan(p.recall)]
        ok = [p for p in pts if p.recall >= 0.95]
        if not pts:
            continue
        if ok:
            b = max(ok, key=lambda p: p.qps)
            verdict = "MET" if b.speedup >= 20 else "NOT MET"
            out.append(f"  {cname + ' ' + m:50s} {b.setting:26s} recall {b.recall:.3f}  {b.qps:7.1f} q/s  "
                       f"{b.speedup:5.1f}x exact -> {verdict}")
        else:
            b = max(pts, key=lambda p: p.recall)
            out.append(f"  {cname + ' ' + m:50s} never reaches 0.95 (best {b.recall:.3f} at {b.setting}, "
                       f"{b.speedup:.1f}x exact) -> NOT MET")
    if r.errors:
        out += ["", "Errors:"] + r.errors
    return "\n".join(out)


def write_csv(r: Runner, path: Path):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "method", "setting", "exact", "queries", "recall_at_10", "recall_tie_tolerant", "qps",
                    "p50_ms", "p99_ms",
                    "speedup_vs_exact", "loadavg_1min", "plan", "note"])
        for p in r.points:
            w.writerow([p.case, p.method, p.setting, p.exact, p.queries, f"{p.recall:.4f}", f"{p.recall_tt:.4f}",
                        f"{p.qps:.2f}",
                        f"{p.p50:.3f}", f"{p.p99:.3f}", f"{p.speedup:.2f}", f"{p.load:.2f}", p.plan, p.note])


def plot(r: Runner, path: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(20, 6.5))
    cases = list(dict.fromkeys((p.case, p.method) for p in r.points))
    cmap = plt.get_cmap("tab10")
    for i, (cname, m) in enumerate(cases):
        pts = [p for p in r.points if p.case == cname and p.method == m and not math.isnan(p.qps)]
        idx = sorted((p for p in pts if not p.exact), key=lambda p: p.recall)
        ex = [p for p in pts if p.exact and p.setting.startswith("exact (")]
        color = cmap(i % 10)
        for ax, key, rk in ((axes[0], "qps", "recall"), (axes[1], "speedup", "recall"),
                            (axes[2], "speedup", "recall_tt")):
            if idx:
                ax.plot([getattr(p, rk) for p in idx], [getattr(p, key) for p in idx], "-o", color=color,
                        label=f"{cname} ({m})", alpha=0.85)
            if ex and key == "qps":
                ax.scatter([1.0], [ex[0].qps], marker="s", s=60, color=color, edgecolors="black", zorder=3)
    axes[0].set_ylabel("queries per second (1 client, log); squares: the exact call")
    axes[1].set_ylabel("q/s / exact call's q/s (log)")
    axes[2].set_ylabel("q/s / exact call's q/s (log)")
    for ax, xl in zip(axes, ["recall@10 against the exact fused top 10"] * 2
                      + ["tie-tolerant recall@10 (1 - true misses)"]):
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        if ax is not axes[0]:
            ax.axhline(20, color="grey", linestyle=":", linewidth=1)
        ax.axvline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    global DATA
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="a bench/make-fusion directory (default %(default)s)")
    ap.add_argument("--queries", type=int, help="use only the first N queries (default: all)")
    ap.add_argument("--check-queries", type=int, default=100,
                    help="queries of the per-input numpy checks (default %(default)s)")
    ap.add_argument("--probes", default="5,10,40,80",
                    help="ivfpq.probes values besides the defaults (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=2, help="timed passes per indexed point, best kept")
    ap.add_argument("--quick", action="store_true", help="50 queries, two cases")
    ap.add_argument("--cases", help="only the cases whose 'name method' contains one of these comma-separated "
                                    "strings, e.g. \"doc %% 10,weighted\"")
    ap.add_argument("--port", type=int, default=int(os.environ.get("ARRW_FUSION_PORT", "54401")))
    ap.add_argument("--arrw-pkg", type=Path, help="a `cargo pgrx package` output directory")
    ap.add_argument("--arrw-rev", help="(set by bench/run-fusion) what --arrw-pkg was built from")
    ap.add_argument("--storage", choices=["default", "plain"], default="default",
                    help="storage of the vector columns: the type's (external: out of line in TOAST when a row "
                         "is over 2 kB, as two 384-d vectors make it) or plain (in the row); results get a suffix")
    ap.add_argument("--keep-running", action="store_true", help="leave the server running at the end")
    args = ap.parse_args()
    DATA = args.data
    if args.quick and not args.queries:
        args.queries = 50
    data = load_data(DATA, args.queries)
    lock, cluster, env = bench.private_server("fusion.lock", "fusion.py", args.port, args.arrw_pkg, args.arrw_rev)
    head = subprocess.run(["git", "-C", str(bench.ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    env += [f"work tree: {head} (bench scripts)",
            "NOTE: fsync=off etc. (benchmark settings); one client, one query at a time; indexed points: a warm-up "
            f"pass then the best of {args.repeat}; exact points: 5 warm-up queries, one timed pass (it is also the "
            "ground truth). 'load': 1-minute load average after the point (2 cores, shared machine)."]
    print("\n".join(env), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runner = Runner(cluster, args, data)
    t0 = time.time()
    try:
        log("loading the table and building the indexes")
        runner.setup()
        runner.text_queries()
        print("\n".join("## " + n for n in runner.notes), flush=True)
        runner.sweep()
    finally:
        if not args.keep_running:
            log("stopping the benchmark server")
            cluster.stop()
    text = report(runner, env) + f"\n\n({(time.time() - t0) / 60:.1f} min)"
    print("\n" + text, flush=True)
    base = RESULTS / ("fusion" + ("-plain" if args.storage == "plain" else "") + ("-quick" if args.quick else "")
                      + ("-subset" if args.cases else ""))
    Path(f"{base}.txt").write_text(text + "\n")
    write_csv(runner, Path(f"{base}.csv"))
    plot(runner, Path(f"{base}.png"),
         f"arrw.fused_search on {len(data.chunk):,} paragraphs: indexed vs exact (1 client, {len(runner.qvec)} queries)")
    print(f"\nwrote {base}.txt, {base}.csv, {base}.png", flush=True)
    lock.close()
    return 1 if runner.errors else 0


if __name__ == "__main__":
    sys.exit(main())
