# Shared shell helpers for arrw's scripts: idempotent machine set-up and
# throwaway PostgreSQL clusters run as the `postgres` OS user (PostgreSQL refuses
# to run as root, and these scripts usually run as root on CI machines).
# shellcheck shell=bash

ARRW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BIN}/pg_config"
PGRX_VERSION=0.18.1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Runs a command as the postgres OS user (or as ourselves when we are not root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Installs what arrw needs to build and test, skipping what is already there.
setup_machine() {
  local need=()
  # python3: the scripts' helpers (scripts/npy2copy.py, free_port) are Python
  # of the standard library only.
  for p in postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} libclang-dev sudo python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! cargo pgrx --version 2>/dev/null | grep -q "${PGRX_VERSION}"; then
    log "installing cargo-pgrx ${PGRX_VERSION} (about 5 minutes)"
    cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
  fi
  if ! grep -qs "pg${PG_MAJOR}" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    log "pointing pgrx at the system PostgreSQL ${PG_MAJOR}"
    cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}" >/dev/null
  fi
}

# Builds arrw and installs it into the system PostgreSQL (release build).
install_extension() {
  log "building and installing arrw into PostgreSQL ${PG_MAJOR}"
  local out; out=$(mktemp)
  if ! (cd "$ARRW_ROOT" && as_root cargo pgrx install --release --pg-config "${PG_CONFIG}") >"$out" 2>&1; then
    tail -50 "$out" >&2; rm -f "$out"; return 1
  fi
  rm -f "$out"
  ship_sql_extras "$(${PG_CONFIG} --sharedir)/extension"
}

# ship_sql_extras EXTDIR: copies into an extension directory what
# `cargo pgrx install/package` do not ship (they ship the current install script
# and the update scripts sql/arrw--*--*.sql): the frozen install scripts of
# released versions (sql/versions/; `CREATE EXTENSION arrw VERSION '<old>'`,
# tests/upgrade.rs) and the SQL-only companion extensions (extensions/*/).
ship_sql_extras() {
  as_root cp "$ARRW_ROOT"/sql/versions/arrw--*.sql "$ARRW_ROOT"/extensions/*/*.control \
    "$ARRW_ROOT"/extensions/*/*.sql "$1/"
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# tests/server.conf, less the settings this server does not know: a setting of one
# PostgreSQL build only stops every other build from starting (output_plugin_libraries
# is in the PostgreSQL 15.20 of some machines, not in the 15.18 Debian 12 installs
# on others). Such a line is kept as a comment that says so.
server_conf() {
  local known line name
  known=$("${PG_BIN}/postgres" --describe-config | cut -f1)
  while IFS= read -r line; do
    case "$line" in
      '' | '#'*) echo "$line" ;;
      *)
        name=${line%%=*}
        name=${name//[[:space:]]/}
        if grep -qx -- "$name" <<<"$known"; then
          echo "$line"
        else
          echo "# not a setting of this server: $line"
        fi
        ;;
    esac
  done <"$ARRW_ROOT/tests/server.conf"
}

# start_cluster DIR PORT: initdb (once) and start a cluster with the settings of
# every test server (tests/server.conf: arrw preloaded, logical decoding allowed,
# arrw accepted as an output plugin), sized for the demo's and tier 3's data.
start_cluster() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "${PG_BIN}/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = ${port}"
      echo "unix_socket_directories = '${dir}'"
      server_conf
      echo "shared_buffers = 256MB"
      echo "maintenance_work_mem = 256MB"
      echo "fsync = off"
    } >>"$dir/data/postgresql.conf"
  else
    sed -i "s/^port = .*/port = ${port}/" "$dir/data/postgresql.conf"
  fi
  # RUST_BACKTRACE would make pgrx append Rust backtraces to error DETAILs.
  only_std_fds as_pg env -u RUST_BACKTRACE "${PG_BIN}/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
}

# Runs a command with only stdin, stdout and stderr open. A server outlives the
# script that starts it (the demo's keeps running) and would otherwise hold open
# whatever its caller had open: under `flock FILE scripts/demo` the server would
# keep FILE's lock until it stops.
only_std_fds() {
  (
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    "$@"
  )
}

stop_cluster() {
  local dir="$1"
  [ -f "$dir/data/postmaster.pid" ] && as_pg "${PG_BIN}/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
}
