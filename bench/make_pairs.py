#!/usr/bin/env python3
"""A text set of twice the width, from real vectors (see bench/make-pairs).

Row i is SRC's row i followed by its row i + 1 (the last pairs with the first),
rescaled to unit length; query j likewise from queries j and j + 1. Ground truth:
exact top 100 by cosine against the rows as stored (float16), by numpy.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def pair(x: np.ndarray) -> np.ndarray:
    y = np.concatenate([x, np.roll(x, -1, axis=0)], axis=1)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    data = Path(os.environ.get("ARRW_BENCH_DATA", ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--src", type=Path, default=data / "pydoc-minilm")
    ap.add_argument("--out", type=Path, help="default: /work/data-cache/text/datasets/<src name>-pairs")
    a = ap.parse_args()
    out = a.out or Path("/work/data-cache/text/datasets") / f"{a.src.name}-pairs"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    base = pair(np.load(a.src / "base.f16.npy").astype(np.float32))
    queries = pair(np.load(a.src / "query.f32.npy").astype(np.float32))
    print(f"{a.src}: {base.shape[0]} rows x {base.shape[1]} dims, {queries.shape[0]} queries", flush=True)
    stored = base.astype(np.float16)
    np.save(out / "base.f16.npy", stored)
    np.save(out / "query.f32.npy", queries.astype(np.float32))
    b = stored.astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    gt = []
    for i in range(0, len(queries), 100):
        s = queries[i:i + 100] @ b.T
        gt.append(np.argsort(-s, axis=1, kind="stable")[:, :100])
        print(f"ground truth: {min(i + 100, len(queries))}/{len(queries)} queries", end="\r", flush=True)
    np.save(out / "groundtruth.i32.npy", np.concatenate(gt).astype(np.int32))
    (out / "README.md").write_text(
        f"Made by bench/make-pairs from {a.src}: row i is row i followed by row i + 1, "
        "rescaled to unit length; queries likewise; exact top 100 by cosine. A width test "
        "on real vectors, not a model's embeddings of this width.\n")
    print(f"\nwrote {out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
