#!/usr/bin/env python3
"""Real 128-d SIFT descriptors (L2) from the photographs in Debian's wallpaper packages,
at up to 10 million rows, with exact top-100 ground truth; run through bench/make-sift.

Follows /work/shared/datasets/photo_sift.py (how the texmex SIFT sets were made):
OpenCV SIFT descriptors of one set of images for the base, queries from other images
(held out by a stable hash of the image's name), ground truth by brute force (faiss
IndexFlatL2). Differences: full resolution and several scales per image (each scale a
separate SIFT pass), a per-image cache so a rerun resumes, the base shuffled with a
fixed seed so its first N rows are a uniform sample, prefix subsets with their own
ground truth, and the bench's file format (uint8 / int32 .npy, as bench/bench.py loads).

Writes OUT/sift-<size>/{base.u8.npy, query.u8.npy, groundtruth.i32.npy, info.txt} for
each subset size and for --rows. Everything downloaded or cached goes under --cache.
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import time

import cv2
import faiss
import numpy as np

PACKAGES = [
    "gnome-backgrounds", "mate-backgrounds", "plasma-workspace-wallpapers",
    "sway-backgrounds", "lomiri-wallpapers", "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04", "ukui-wallpapers", "desktop-base",
]
EXTS = (".jpg", ".jpeg", ".png", ".webp")
MIN_BYTES = 100_000          # thumbnails, icons and screenshots are smaller
SKIP_PATH = re.compile(r"/(plymouth|grub|previews)/|screenshot", re.I)  # boot splashes, previews
MAX_FLAT = 0.5               # drawings: more than half the pixels have a zero Laplacian
MIN_LEVELS = 64              # drawings: fewer grey levels than this
K = 100
T0 = time.time()


def say(msg):
    print(f"[{time.time() - T0:7.0f} s] {msg}", flush=True)


def hms(s):
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s"


def fetch_packages(cache):
    """apt-get download each package and unpack it with dpkg-deb -x (no root install)."""
    debs, pkgs = os.path.join(cache, "debs"), os.path.join(cache, "pkgs")
    os.makedirs(debs, exist_ok=True)
    roots = []
    for name in PACKAGES:
        dest = os.path.join(pkgs, name)
        if not os.path.exists(os.path.join(dest, ".unpacked")):
            have = [f for f in os.listdir(debs) if f.startswith(name + "_") and f.endswith(".deb")]
            if not have:
                say(f"apt-get download {name}")
                subprocess.run(["apt-get", "download", "-q", name], cwd=debs, check=True,
                               stdout=subprocess.DEVNULL)
                have = [f for f in os.listdir(debs) if f.startswith(name + "_") and f.endswith(".deb")]
            os.makedirs(dest, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", os.path.join(debs, sorted(have)[-1]), dest], check=True)
            open(os.path.join(dest, ".unpacked"), "w").close()
        roots.append(dest)
    return roots


def pixels(path):
    m = re.search(r"(\d{3,5})x(\d{3,5})", os.path.basename(path))
    return int(m[1]) * int(m[2]) if m else 0


def candidates(roots):
    """One file per wallpaper: the largest of the sizes a package ships of it."""
    best = {}
    for root in roots:
        for d, _, files in os.walk(root):
            for f in files:
                p = os.path.join(d, f)
                if not f.lower().endswith(EXTS) or SKIP_PATH.search(p) or os.path.getsize(p) < MIN_BYTES:
                    continue
                # plasma: <name>/contents/images/<W>x<H>.jpg; sway, mate: <name>_<W>x<H>.png
                stem = re.sub(r"[_-]?\d{3,5}x\d{3,5}(_Portrait)?$", "", os.path.splitext(f)[0])
                key = d if "/contents/" in d else os.path.join(d, stem)
                size = (pixels(p), os.path.getsize(p))
                if key not in best or size > best[key][0]:
                    best[key] = (size, p)
    return sorted(p for _, p in best.values())


def drawing_test(img):
    """Cheap test for flat-colour drawings on a <=512 px copy: share of zero-Laplacian
    pixels and number of grey levels."""
    h, w = img.shape
    s = 512 / max(h, w)
    small = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    flat = float((cv2.Laplacian(small, cv2.CV_16S) == 0).mean())
    return flat, len(np.unique(small))


def select(cache, paths):
    """Drop duplicate files and drawings; cached in cache/selection.tsv."""
    tsv = os.path.join(cache, "selection.tsv")
    known = {}
    if os.path.exists(tsv):
        for line in open(tsv):
            p, md5, w, h, flat, levels = line.rstrip("\n").split("\t")
            known[p] = (md5, int(w), int(h), float(flat), int(levels))
    for p in paths:
        if p not in known:
            img = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            md5 = hashlib.md5(open(p, "rb").read()).hexdigest()
            known[p] = (md5, img.shape[1], img.shape[0], *drawing_test(img))
    with open(tsv + ".tmp", "w") as f:
        for p, v in sorted(known.items()):
            f.write("\t".join(map(str, (p, *v))) + "\n")
    os.replace(tsv + ".tmp", tsv)
    keep, seen, skipped = [], set(), []
    for p in paths:
        if p not in known:
            skipped.append((p, "unreadable"))
            continue
        md5, w, h, flat, levels = known[p]
        if md5 in seen:
            skipped.append((p, "duplicate file"))
        elif flat > MAX_FLAT or levels < MIN_LEVELS:
            skipped.append((p, f"drawing (flat {flat:.2f}, {levels} grey levels)"))
        else:
            seen.add(md5)
            keep.append((p, w, h))
    return keep, skipped


def name(path):
    """Folder and file name; plasma's wallpaper name in front of contents/images/..."""
    n = os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path)
    if "/contents/" in path:
        n = path.split("/contents/")[0].rsplit("/", 1)[-1] + "/" + n
    return n


def held_out(path):
    # every 8th image, by a hash of its name (stable across runs and hosts)
    return int(hashlib.md5(name(path).encode()).hexdigest(), 16) % 8 == 0


def descriptors(cache, path, scale, contrast):
    """SIFT descriptors of one image at one scale, uint8, cached as one .npy file."""
    key = hashlib.sha1(path.encode()).hexdigest()[:16]
    f = os.path.join(cache, "desc", f"{key}-s{scale:g}-c{contrast:g}.npy")
    if os.path.exists(f):
        return np.load(f), True
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if scale != 1:
        h, w = img.shape
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    _, d = cv2.SIFT_create(contrastThreshold=contrast).detectAndCompute(img, None)
    # OpenCV's SIFT descriptors are already integers 0..255 stored as float
    d = np.zeros((0, 128), np.uint8) if d is None else np.clip(np.rint(d), 0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(f), exist_ok=True)
    np.save(f + ".tmp.npy", d)
    os.replace(f + ".tmp.npy", f)
    return d, False


def extract(cache, images, scales, contrast, what):
    """All descriptors of the images at all scales, with progress and ETA by pixel area."""
    jobs = [(p, w, h, s) for p, w, h in images for s in scales]
    total_px = sum(w * h * s * s for _, w, h, s in jobs)
    done_px = fresh_px = 0.0
    fresh_t = 0.0
    parts, n = [], 0
    for i, (p, w, h, s) in enumerate(jobs, 1):
        t = time.time()
        d, cached = descriptors(cache, p, s, contrast)
        px = w * h * s * s
        done_px += px
        if not cached:
            fresh_px += px
            fresh_t += time.time() - t
        parts.append(d)
        n += len(d)
        rate = fresh_t / fresh_px if fresh_px else 0
        eta = hms(rate * (total_px - done_px)) if fresh_px else "?"
        say(f"{what} {i}/{len(jobs)} {'cached' if cached else 'SIFT  '} "
            f"{name(p)} x{s:g} ({round(w * s)}x{round(h * s)}): {len(d)} "
            f"descriptors, {n:,} so far; ETA {eta}")
    return np.concatenate(parts) if parts else np.zeros((0, 128), np.uint8)


def ground_truth(base, queries, chunk=1_000_000):
    """Exact top-K by L2: faiss IndexFlatL2 over chunks of the base widened to float32,
    merged with a ResultHeap, so memory stays at one chunk (512 MB)."""
    q = queries.astype(np.float32)
    heap = faiss.ResultHeap(len(q), K)
    nchunks = (len(base) + chunk - 1) // chunk
    t = time.time()
    for c, s in enumerate(range(0, len(base), chunk), 1):
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(base[s:s + chunk].astype(np.float32))
        dist, ids = index.search(q, min(K, index.ntotal))
        if ids.shape[1] < K:
            pad = K - ids.shape[1]
            dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        heap.add_result(dist, np.where(ids >= 0, ids + s, -1))
        el = time.time() - t
        say(f"  ground truth over {len(base):,} rows: chunk {c}/{nchunks}, ETA {hms(el / c * (nchunks - c))}")
    heap.finalize()
    return heap.I.astype(np.int32)


def label(n):
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/work/data-cache/sift", help="output root (default %(default)s)")
    ap.add_argument("--cache", default="/work/data-cache", help="downloads and per-image descriptors (default %(default)s)")
    ap.add_argument("--rows", type=int, default=10_000_000, help="base rows of the full set (default %(default)s)")
    ap.add_argument("--scales", default="1,0.85,0.7,0.6,0.5,0.4,0.3", help="image scales, each a separate SIFT pass (default %(default)s)")
    ap.add_argument("--contrast", type=float, default=0.004,
                    help="SIFT contrastThreshold; lower finds more, weaker keypoints "
                         "(default %(default)s; OpenCV's is 0.04, too few for 10M rows from these images)")
    ap.add_argument("--subsets", default="100000,1000000", help="prefix subsets with their own ground truth")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="faiss threads (0: faiss's default)")
    a = ap.parse_args()
    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    cv2.setNumThreads(1)
    scales = [float(s) for s in a.scales.split(",")]

    roots = fetch_packages(a.cache)
    images, skipped = select(a.cache, candidates(roots))
    for p, why in skipped:
        say(f"skip {os.path.relpath(p, a.cache)}: {why}")
    qimgs = [im for im in images if held_out(im[0])]
    bimgs = [im for im in images if not held_out(im[0])]
    say(f"{len(images)} images ({len(bimgs)} base, {len(qimgs)} held out for queries), "
        f"scales {scales}, SIFT contrastThreshold {a.contrast}")

    queries_all = extract(a.cache, qimgs, scales, a.contrast, "query image")
    base_all = extract(a.cache, bimgs, scales, a.contrast, "base image")
    rng = np.random.default_rng(a.seed)
    # a seeded permutation of everything: the first N rows are a uniform sample
    n_all = len(base_all)
    order = rng.permutation(n_all)[:a.rows]
    base = base_all[order]
    del base_all
    qi = rng.choice(len(queries_all), min(a.queries, len(queries_all)), replace=False)
    queries = queries_all[qi]
    if len(base) < a.rows:
        say(f"WARNING: only {len(base):,} base descriptors, fewer than --rows {a.rows:,} "
            f"(add scales, or lower --contrast)")
    sizes = sorted({int(s) for s in a.subsets.split(",") if int(s) < len(base)} | {len(base)})
    for n in sizes:
        d = os.path.join(a.out, f"sift-{label(n)}")
        os.makedirs(d, exist_ok=True)
        say(f"{d}: {n:,} rows")
        gt = ground_truth(base[:n], queries)
        np.save(os.path.join(d, "base.u8.npy"), base[:n])
        np.save(os.path.join(d, "query.u8.npy"), queries)
        np.save(os.path.join(d, "groundtruth.i32.npy"), gt)
        with open(os.path.join(d, "info.txt"), "w") as f:
            f.write(f"sift-{label(n)}: {n} x 128 uint8 SIFT descriptors (OpenCV {cv2.__version__}, "
                    f"contrastThreshold {a.contrast}), the first {n} rows of a seeded (seed {a.seed}) "
                    f"shuffle of all {n_all} descriptors from "
                    f"{len(bimgs)} images at scales {a.scales}; {len(queries)} queries from "
                    f"{len(qimgs)} other images; exact top-{K} L2 ground truth (faiss IndexFlatL2)\n")
            f.write("base images:\n" + "".join(f"  {os.path.relpath(p, a.cache)} {w}x{h}\n" for p, w, h in bimgs))
            f.write("query images:\n" + "".join(f"  {os.path.relpath(p, a.cache)} {w}x{h}\n" for p, w, h in qimgs))
    say(f"done in {hms(time.time() - T0)}: " + ", ".join(f"sift-{label(n)}" for n in sizes) + f" under {a.out}")


if __name__ == "__main__":
    sys.exit(main())
