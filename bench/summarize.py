#!/usr/bin/env python3
"""Re-reads a benchmark's CSV (bench/run's .bench/results/<dataset>.csv) and prints its
summary again: the best q/s at recall@10 >= 0.95 per engine, the q/s interpolated at
exactly 0.95 and 0.99 on each engine's frontier (bench.interpolated_at), and the
targets. For runs made before the interpolated lines existed, and to compare runs.

    .bench/venv/bin/python bench/summarize.py .bench/results/text.csv [more.csv ...]
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def num(v: str) -> float:
    return float(v) if v not in ("", None) else float("nan")


def rows_of(path: Path) -> list[bench.Row]:
    out = []
    with path.open() as f:
        for r in csv.DictReader(f):
            out.append(bench.Row(dataset=r["dataset"], engine=r["engine"], params=r["index_params"],
                                 knob=r["query_params"], recall=num(r["recall_at_10"]), qps=num(r["qps"]),
                                 build_s=num(r["build_s"]), index_mb=num(r["index_mb"]), plan=r["plan"],
                                 load=num(r["loadavg_1min"]), note=r["note"], clients=int(r["clients"] or 1),
                                 p50_ms=num(r["p50_ms"]), p99_ms=num(r["p99_ms"])))
    return out


def main() -> None:
    for p in sys.argv[1:]:
        rows = rows_of(Path(p))
        print(f"== {p}")
        for e in dict.fromkeys(r.engine for r in rows):
            b = bench.best_at(rows).get(e)
            first = f"{b.qps:8.1f} q/s at recall {b.recall:.3f}" if b else "    n/a"
            cells = []
            for level in (0.95, 0.99):
                got = bench.interpolated_at(rows, e, level)
                cells.append(f"{level}: " + ("n/a" if got is None else f"{got[0]:8.1f}"))
            print(f"  {e:34s} first point >= 0.95: {first}   interpolated " + "   ".join(cells))
        print(bench.targets(rows, []))


if __name__ == "__main__":
    main()
