#!/usr/bin/env python3
"""Offline: would an error scale stored per row let a scan read fewer rows?

    .bench/venv/bin/python bench/rowscale.py DATASET_DIR {l2,cos,l2scaled} PROBES [K]

Runs outside PostgreSQL, on numpy and FAISS (the benchmark venv, bench/venv.sh).
Builds an IVF index with 4-bit PQ of the residuals (FAISS `IndexIVFPQ`, rows / 1000
lists, 2 dimensions a sub-quantizer up to 128 dimensions and 4 above, as ivfpq's
defaults), then for 300 held-out queries and the candidates of their PROBES nearest
lists asks how many rows a scan must read from the table to return an exact top K,
under four lower bounds on a candidate's exact distance (distances, not squares):

- `global_max`: its estimate less the largest `estimate − exact` of the query's
  first 100 rows by estimate (what a scan has re-ranked when it decides);
- `global_4s`: the same, or the mean plus 4 standard deviations if that is more
  (ivfpq's L2 margin, crates/arrw-core/src/rerank.rs);
- `row_4s`: the errors divided by each row's residual norm `||x − x̂||` (a number
  that would have to be stored beside its code), the same statistics, times the
  candidate's own norm;
- `row_det`: its estimate less its residual norm, a bound that cannot fail (the
  triangle inequality; 4-bit lookup tables would add their rounding).

A row is read when its bound is at or below the K-th exact distance; a *miss* is a
true top-K row whose bound lies above it. `l2scaled` multiplies every row by
10^U(−1.5, 1.5), rows whose lengths span three orders of magnitude. Figures:
ARCHITECTURE.md, "Levers measured offline" ("An error scale per row").
"""
import glob
import sys

import faiss
import numpy as np


def main() -> None:
    ds, metric, nprobe = sys.argv[1], sys.argv[2], int(sys.argv[3])
    k = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    b = np.load(glob.glob(f"{ds}/base.*.npy")[0]).astype(np.float32)
    q = np.load(glob.glob(f"{ds}/query.*.npy")[0]).astype(np.float32)[:300]
    if metric == "l2scaled":
        b *= (10.0 ** np.random.default_rng(1).uniform(-1.5, 1.5, len(b)))[:, None].astype(np.float32)
    if metric == "cos":
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    n, d = b.shape
    nlist = max(n // 1000, 1)
    m = d // 2 if d <= 128 else d // 4
    quant = faiss.IndexFlatL2(d)
    ivf = faiss.IndexIVFPQ(quant, d, nlist, m, 4)
    ivf.train(b[np.random.default_rng(0).choice(n, min(n, 50000), replace=False)])
    ivf.add(b)
    # Every row's reconstruction x̂ (centroid + decoded residual) and its list.
    inv = ivf.invlists
    lists = np.empty(n, np.int64)
    xr = np.empty_like(b)
    for li in range(nlist):
        sz = inv.list_size(li)
        if sz == 0:
            continue
        ids = faiss.rev_swig_ptr(inv.get_ids(li), sz).copy()
        codes = faiss.rev_swig_ptr(inv.get_codes(li), sz * ivf.code_size).copy().reshape(sz, -1)
        lists[ids] = li
        xr[ids] = ivf.pq.decode(codes) + quant.reconstruct(li)
    r = np.linalg.norm(b - xr, axis=1)
    print(f"{ds.rstrip('/').split('/')[-1]} ({metric}) n={n} d={d} lists={nlist} m={m} probes={nprobe} k={k}; "
          f"residual norm: mean {r.mean():.3f}, p99 / p50 {np.percentile(r, 99) / np.median(r):.2f}")
    _, probe = quant.search(q, nprobe)
    names = ("global_max", "global_4s", "row_4s", "row_det")
    read = dict.fromkeys(names, 0)
    miss = dict.fromkeys(names, 0)
    for qi in range(len(q)):
        cand = np.flatnonzero(np.isin(lists, probe[qi]))
        exact = np.linalg.norm(b[cand] - q[qi], axis=1)
        est = np.linalg.norm(xr[cand] - q[qi], axis=1)
        kth = np.partition(exact, k - 1)[k - 1]
        first = np.argsort(est)[:100]
        e = (est - exact)[first]
        en = e / r[cand][first]
        bounds = {
            "global_max": est - max(e.max(), 0),
            "global_4s": est - max(e.mean() + 4 * e.std(), e.max()),
            "row_4s": est - max(en.mean() + 4 * en.std(), en.max()) * r[cand],
            "row_det": est - r[cand],
        }
        top = exact <= kth
        for name, lb in bounds.items():
            read[name] += int((lb <= kth).sum())
            miss[name] += int((top & (lb > kth)).sum())
    for name in names:
        print(f"  {name:11s} rows read a query {read[name] / len(q):8.1f}   missed top-{k} rows "
              f"{miss[name]}/{len(q) * k}")


if __name__ == "__main__":
    main()
