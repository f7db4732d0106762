#!/usr/bin/env python3
"""Offline measurements of coarse-quantizer levers for ivfpq on one data set.

    .bench/venv/bin/python bench/levers.py DATASET_DIR [--lists N] [--queries 1000]
                                           [--opq] [--m M] [--opq-probes P]

Runs outside PostgreSQL, on numpy and FAISS (the benchmark venv, bench/venv.sh), to
answer "would this change to the index's design scan fewer codes for the same
recall?" before any of it is built. DATASET_DIR holds base.*.npy and query.f32.npy
(bench/make-text, ../shared/datasets); rows and queries are normalized (cosine).

1. **List ranking.** Spherical k-means with N lists (default rows / 1000, as the
   index), then for each query the lists in some order, and the share of all codes
   scanned before recall@10 reaches 0.90 / 0.95 / 0.99 (every row of a probed list
   counted, re-ranking assumed perfect: this measures the coarse quantizer alone).
   Orders: by centroid direction (what ivfpq does for cosine), by inner product with
   the list mean, by a Gaussian model of each list (`q·mean + sqrt(2 ln n) ·
   sqrt(qᵀ Σ q)`, Σ the list's full covariance; also with its top 16 eigenvectors
   only), by a per-list spread alone (no query dependence), and the oracle (lists in
   order of true neighbours per code: no ranking can beat it).
2. **Redundant assignment.** Each row also stored in its second-nearest list when
   its two nearest centroids are within a gap (spilling), or in the list chosen by
   SOAR's rule (Sun et al., 2023: the residual orthogonal to the first one's
   direction, lambda 1); codes scanned count the copies.
3. **OPQ** (with --opq; minutes at 384 dimensions): 4-bit PQ with M sub-quantizers on
   the list residuals with and without FAISS's OPQ rotation (and a PCA rotation),
   distortion, and the spread of `estimate − exact` over each query's 1,000 nearest
   rows of its first P lists, and the rows an "estimate − largest error of the best
   200" margin leaves to re-rank for k = 10 and 100.

Results recorded in ARCHITECTURE.md ("Levers measured offline").
"""
from __future__ import annotations

import argparse
import glob
import time

import faiss
import numpy as np


def load(d: str, nq: int):
    x = np.load(glob.glob(d + "/base.*.npy")[0]).astype(np.float32)
    q = np.load(d + "/query.f32.npy").astype(np.float32)[:nq]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def coverage(name, orders, lists_of_row_sets, size, gt, nrows):
    """Share of codes scanned, averaged over queries, to reach each recall."""
    nl = len(size)
    tc = np.zeros(nl + 1)
    tr = np.zeros(nl + 1)
    for i, o in enumerate(orders):
        g = set(gt[i].tolist())
        found: set[int] = set()
        codes, rec = [0], [0.0]
        for l in o:
            found |= lists_of_row_sets[l] & g
            codes.append(codes[-1] + size[l])
            rec.append(len(found) / len(g))
        tc += codes
        tr += rec
    tc /= len(orders)
    tr /= len(orders)
    cells = []
    for t in (0.90, 0.95, 0.99):
        k = int(np.argmax(tr >= t))
        cells.append(f"{t:.2f}: {k:3d} lists {tc[k] / nrows * 100:5.1f}%")
    stored = size.sum() / nrows
    print(f"  {name:34s} stored {stored:4.2f}x   " + "   ".join(cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--lists", type=int, default=0)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--opq", action="store_true")
    ap.add_argument("--m", type=int, default=0, help="sub-quantizers for --opq (default: dims / 3 at 384, /4 at 768)")
    ap.add_argument("--opq-probes", type=int, default=20)
    ap.add_argument("--opq-sample", type=int, default=50000)
    ap.add_argument("--opq-iter", type=int, default=25)
    a = ap.parse_args()

    x, q = load(a.dataset, a.queries)
    n, d = x.shape
    nlist = a.lists or max(1, n // 1000)
    print(f"{a.dataset}: {n} x {d}, {len(q)} queries, {nlist} lists (spherical k-means)", flush=True)
    km = faiss.Kmeans(d, nlist, niter=20, seed=1, spherical=True)
    km.train(x)
    cent = km.centroids
    _, nearest = km.index.search(x, 8)
    a1 = nearest[:, 0]
    size = np.bincount(a1, minlength=nlist)
    means = np.stack([x[a1 == l].mean(0) for l in range(nlist)]).astype(np.float32)
    gt = np.argsort(-(q @ x.T), axis=1)[:, :10]
    members = [set(np.nonzero(a1 == l)[0].tolist()) for l in range(nlist)]
    sims = q @ cent.T
    mip = q @ means.T

    print("1. list ranking: lists probed and share of all codes scanned for recall@10 (perfect re-rank)")
    coverage("centroid direction (ivfpq)", [np.argsort(-s) for s in sims], members, size, gt, n)
    coverage("inner product with the mean", [np.argsort(-s) for s in mip], members, size, gt, n)
    ev = np.sqrt(2 * np.log(np.maximum(size, 2)))
    full = np.zeros((len(q), nlist), np.float32)
    low = np.zeros((len(q), nlist), np.float32)
    spread = np.zeros(nlist)
    for l in range(nlist):
        r = x[a1 == l] - means[l]
        cov = (r.T @ r) / len(r)
        full[:, l] = np.sqrt(np.maximum(((q @ cov) * q).sum(1), 0))
        w, v = np.linalg.eigh(cov)
        w, v = w[::-1], v[:, ::-1]
        p = q @ v[:, :16]
        rest = w[16:].sum() / (d - 16)
        low[:, l] = np.sqrt((p**2 * w[:16]).sum(1) + rest * np.maximum(1 - (p**2).sum(1), 0))
        spread[l] = np.sqrt((r**2).sum(1).mean() / d)
    coverage("Gaussian, full covariance", [np.argsort(-(mip[i] + ev * full[i])) for i in range(len(q))],
             members, size, gt, n)
    coverage("Gaussian, top 16 directions", [np.argsort(-(mip[i] + ev * low[i])) for i in range(len(q))],
             members, size, gt, n)
    coverage("per-list spread (8 x rms)", [np.argsort(-(mip[i] + 8 * spread)) for i in range(len(q))],
             members, size, gt, n)

    def oracle(i):
        hit = np.zeros(nlist)
        for g in gt[i]:
            hit[a1[g]] += 1
        return np.lexsort((-sims[i], -hit / np.maximum(size, 1)))

    coverage("oracle (true neighbours per code)", [oracle(i) for i in range(len(q))], members, size, gt, n)

    print("2. redundant assignment (a row also stored in a second list)")
    cs1 = (x * cent[a1]).sum(1)
    cs2 = (x * cent[nearest[:, 1]]).sum(1)
    r1 = x - cent[a1]
    r1 /= np.maximum(np.linalg.norm(r1, axis=1, keepdims=True), 1e-12)
    soar = np.empty(n, int)
    cost = np.full(n, np.inf)
    for j in range(1, 8):
        rj = x - cent[nearest[:, j]]
        c = (rj**2).sum(1) + ((rj * r1).sum(1)) ** 2
        m = c < cost
        cost[m] = c[m]
        soar[m] = nearest[m, j]
    orders = [np.argsort(-s) for s in sims]
    for label, second, gap in [("spill, gap < 0.02", nearest[:, 1], 0.02), ("spill, gap < 0.05", nearest[:, 1], 0.05),
                               ("spill, every row", nearest[:, 1], 9.0), ("SOAR, gap < 0.05", soar, 0.05),
                               ("SOAR, every row", soar, 9.0)]:
        mem = [set(s) for s in members]
        for r in np.nonzero(cs1 - cs2 < gap)[0]:
            mem[second[r]].add(int(r))
        coverage(label, orders, mem, np.array([len(s) for s in mem]), gt, n)

    if not a.opq:
        return
    m = a.m or (d // 3 if d % 3 == 0 and d <= 384 else d // 4)
    print(f"3. OPQ: 4-bit PQ, m = {m}, on the residuals from the list means; {a.opq_probes} lists per query")
    resid = x - means[a1]
    rng = np.random.default_rng(0)
    samp = resid[rng.choice(n, min(n, a.opq_sample), replace=False)]

    def run(name, rot):
        rr = resid if rot is None else rot.apply_py(resid)
        s = samp if rot is None else rot.apply_py(samp)
        pq = faiss.ProductQuantizer(d, m, 4)
        pq.train(s)
        rh = pq.decode(pq.compute_codes(rr))
        mr = means if rot is None else rot.apply_py(means)
        xh = mr[a1] + rh
        errs, need10, need100 = [], [], []
        for qi, qq in enumerate(q[:200]):
            qr = qq[None] if rot is None else rot.apply_py(qq[None])
            idx = np.nonzero(np.isin(a1, np.argsort(-sims[qi])[: a.opq_probes]))[0]
            est = ((xh[idx] - qr) ** 2).sum(1)
            ex = ((x[idx] - qq) ** 2).sum(1)
            e = est - ex
            o = np.argsort(ex)
            errs.append(e[o[:1000]])
            margin = np.max(e[np.argsort(est)[:200]])
            need10.append(((est - margin) <= ex[o[9]]).sum())
            need100.append(((est - margin) <= ex[o[min(99, len(o) - 1)]]).sum())
        e = np.concatenate(errs)
        print(f"  {name:10s} distortion {((rr - rh) ** 2).sum(1).mean():.5f}   estimate - exact: mean {e.mean():+.4f} "
              f"sd {e.std():.4f}   rows to re-rank: k=10 {np.mean(need10):.0f}, k=100 {np.mean(need100):.0f}", flush=True)

    run("PQ", None)
    t = time.time()
    opq = faiss.OPQMatrix(d, m)
    opq.niter = a.opq_iter
    opq.train(samp)
    print(f"  (OPQ trained in {time.time() - t:.0f} s)")
    run("OPQ + PQ", opq)
    pca = faiss.PCAMatrix(d, d, 0, True)
    pca.train(samp)
    run("PCA + PQ", pca)


if __name__ == "__main__":
    main()
