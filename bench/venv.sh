# Sourced by bench/run, bench/run-filtered (and run-profile) and bench/make-sift: makes sure $ROOT/.bench/venv exists and
# has the benchmark's Python packages (from PyPI).
VENV="$ROOT/.bench/venv"
PY_PACKAGES=(numpy "psycopg[binary]" matplotlib faiss-cpu opencv-python-headless)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_venv() {
  mkdir -p "$ROOT/.bench"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating the Python venv in $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import numpy, psycopg, matplotlib, faiss, cv2' 2>/dev/null; then
    log "installing ${PY_PACKAGES[*]} into the venv"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "${PY_PACKAGES[@]}"
  fi
}
