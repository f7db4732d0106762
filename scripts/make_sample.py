#!/usr/bin/env python3
"""Makes the small SIFT sample shipped in data/sample-sift (what scripts/demo loads
when no larger set is given) from the dev-sift set: the first N base rows, the first
Q queries, and their exact top-K ground truth over those N rows by brute force.

dev-sift's base rows are a random draw (in random order) from the descriptors of
all its photographs, so its first N rows are a uniform sample of them.

Standard library only. Distances are computed exactly in integers (the values are
uint8), ties broken by the lower row number, as an exact flat index does.
usage: make_sample.py SRC_DIR OUT_DIR [--rows N] [--queries Q] [--k K]
"""
import heapq
import operator
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from npy2copy import read_rows, write_npy  # noqa: E402


def option(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def main():
    src, out = sys.argv[1], sys.argv[2]
    n, nq, k = option("--rows", 20000), option("--queries", 1000), option("--k", 100)
    base = read_rows(os.path.join(src, "base.u8.npy"), n)
    queries = read_rows(os.path.join(src, "query.u8.npy"), nq)
    if len(base) < n or len(queries) < nq or k > n:
        sys.exit(f"{src} has {len(base)} base rows and {len(queries)} queries; asked for {n}, {nq}, k={k}")
    # |q - b|^2 = |b|^2 - 2 q.b + |q|^2; |q|^2 is the same for every b of a query.
    norms = [sum(map(operator.mul, b, b)) for b in base]
    gt = []
    start = time.time()
    for q in queries:
        dist = [nb - 2 * sum(map(operator.mul, q, b)) for nb, b in zip(norms, base)]
        gt.append(heapq.nsmallest(k, range(n), key=lambda i: (dist[i], i)))
    os.makedirs(out, exist_ok=True)
    write_npy(os.path.join(out, "base.u8.npy"), base, "B")
    write_npy(os.path.join(out, "query.u8.npy"), queries, "B")
    write_npy(os.path.join(out, "groundtruth.i32.npy"), gt, "i")
    print(f"{out}: {n} base rows, {nq} queries, exact top-{k} ground truth "
          f"({time.time() - start:.0f} s of brute force)")


if __name__ == "__main__":
    main()
