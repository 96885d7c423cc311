# Shared shell functions for scripts/run, scripts/test, bench/ and .ci/run.
# Sourced, not executed. Every function that starts a process records it so
# that gh_stop_all (run from an EXIT trap) leaves nothing running.

GH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GH_PGBIN=${GH_PGBIN:-/usr/lib/postgresql/15/bin}
GH_PIDS=()          # processes we started directly (gatehouse, nats-server)
GH_PG_DIRS=()       # PostgreSQL data directories we started

# The Debian packages that building, running and testing need (clang and
# its sanitizer runtimes: the fuzz targets, scripts/fuzz).
GH_APT_PACKAGES=(
  build-essential cmake pkg-config ccache git ca-certificates curl openssl
  libcaf-dev libnats-dev nats-server libpqxx-dev libpq-dev libcpp-httplib-dev
  libprotobuf-dev protobuf-compiler libssl-dev catch2 nlohmann-json3-dev
  postgresql-15 python3 python3-yaml wrk openssh-server openssh-client
  clang-14 libclang-rt-14-dev
)

gh_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Installs missing packages only, so a second run costs nothing.
gh_install_packages() {
  local missing=()
  local p
  for p in "${GH_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
      || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  gh_log "installing: ${missing[*]}"
  $sudo apt-get update -qq
  # --no-upgrade: postgresql-15 would otherwise upgrade postgresql-common.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends --no-upgrade "${missing[@]}" >/dev/null
}

# gh_build BUILD_DIR [BUILD_TYPE [CMAKE_ARG...]]: GH_BUILD_TARGETS (space-
# separated) builds only those targets instead of all.
gh_build() {
  local dir=$1 type=${2:-Release}
  shift $(($# < 2 ? $# : 2))
  # Paths under the checkout become relative in ccache's keys, so a second
  # clone or worktree (CI's fresh clone among them) reuses the cache.
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$GH_ROOT}
  cmake -S "$GH_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  local targets=()
  # shellcheck disable=SC2206 # word splitting wanted
  [ -z "${GH_BUILD_TARGETS:-}" ] || targets=(--target $GH_BUILD_TARGETS)
  cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
}

# Prints a free TCP port on 127.0.0.1.
gh_free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# gh_start_postgres DIR PORT: a private cluster on 127.0.0.1:PORT owned by the
# postgres user (initdb refuses to run as root). Creates it on first use.
gh_start_postgres() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  chmod 755 "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    mkdir -p "$dir/data" "$dir/sock"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$dir"; fi
    gh_as_postgres "$GH_PGBIN/initdb" -D "$dir/data" -U postgres -A trust \
      -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; return 1; }
  fi
  # Every parent must be traversable by the postgres user.
  local d=$dir
  while [ "$d" != "/" ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
  gh_as_postgres "$GH_PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock ${GH_PG_EXTRA_OPTS:-}" \
    start >/dev/null || { tail -20 "$dir/server.log" >&2; return 1; }
  GH_PG_DIRS+=("$dir")
}

gh_as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# gh_create_database PORT NAME: an application role and database (idempotent).
gh_create_database() {
  local port=$1 name=$2
  psql -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qtAc \
    "SELECT 1 FROM pg_database WHERE datname='$name'" | grep -q 1 \
    || psql -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qc \
      "CREATE DATABASE $name" >/dev/null
}

gh_stop_postgres() {
  local dir=$1
  gh_as_postgres "$GH_PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# gh_start_nats DIR PORT MONITOR_PORT: nats-server with JetStream, file store
# under DIR, capped so that it never claims the machine's whole disk or RAM.
# A port of -1 lets nats-server pick a free one; either way the ports it
# listens on end up in GH_NATS_PORT and GH_NATS_MONITOR_PORT (read from the
# ports file it writes into DIR).
gh_start_nats() {
  local dir=$1 port=$2 mport=$3
  mkdir -p "$dir/js"
  cat >"$dir/nats.conf" <<CONF
listen: 127.0.0.1:$port
http: 127.0.0.1:$mport
ports_file_dir: "$dir"
jetstream {
  store_dir: "$dir/js"
  max_memory_store: 256MB
  max_file_store: 2GB
}
CONF
  nats-server -c "$dir/nats.conf" -P "$dir/nats.pid" -l "$dir/nats.log" &
  local pid=$!
  GH_PIDS+=("$pid")
  local i ports
  GH_NATS_PORT="" GH_NATS_MONITOR_PORT=""
  for i in $(seq 1 200); do
    if [ -z "$GH_NATS_MONITOR_PORT" ]; then
      # {"nats":["nats://127.0.0.1:P"],"monitoring":["http://127.0.0.1:M"]}
      ports=$(cat "$dir/nats-server_$pid.ports" 2>/dev/null || true)
      if [[ $ports =~ nats://[^\"]*:([0-9]+).*http://[^\"]*:([0-9]+) ]]; then
        GH_NATS_PORT=${BASH_REMATCH[1]}
        GH_NATS_MONITOR_PORT=${BASH_REMATCH[2]}
      fi
    fi
    if [ -n "$GH_NATS_MONITOR_PORT" ] \
       && curl -fsS "http://127.0.0.1:$GH_NATS_MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null 2>&1 \
       && (exec 3<>"/dev/tcp/127.0.0.1/$GH_NATS_PORT") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  gh_log "nats-server did not start; see $dir/nats.log"
  return 1
}

# gh_wait_http URL [TRIES]: until URL answers 2xx.
gh_wait_http() {
  local url=$1 tries=${2:-200} i
  for i in $(seq 1 "$tries"); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

gh_track_pid() { GH_PIDS+=("$1"); }

gh_stop_all() {
  local pid i
  for pid in "${GH_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${GH_PIDS[@]}"; do
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  GH_PIDS=()
  local dir
  for dir in "${GH_PG_DIRS[@]}"; do gh_stop_postgres "$dir"; done
  GH_PG_DIRS=()
}

# gh_make_secrets DIR: one secret file per caller, created once, mode 0600:
# 32 hex characters for Shell (what Rails writes), base64 of 32 random bytes
# for Workhorse, KAS and Pages (what their callers require).
gh_make_secrets() {
  local dir=$1
  mkdir -p "$dir"
  chmod 700 "$dir"
  (
    umask 077
    [ -s "$dir/gitlab_shell_secret" ] || openssl rand -hex 16 | tr -d '\n' >"$dir/gitlab_shell_secret"
    local c
    for c in workhorse kas pages; do
      [ -s "$dir/gitlab_${c}_secret" ] || openssl rand -base64 32 | tr -d '\n' >"$dir/gitlab_${c}_secret"
    done
  )
}

# gh_export_secret_vars DIR: point the GATEHOUSE_*_SECRET_FILE variables at DIR.
gh_export_secret_vars() {
  local dir=$1
  export GATEHOUSE_SHELL_SECRET_FILE="$dir/gitlab_shell_secret"
  export GATEHOUSE_WORKHORSE_SECRET_FILE="$dir/gitlab_workhorse_secret"
  export GATEHOUSE_KAS_SECRET_FILE="$dir/gitlab_kas_secret"
  export GATEHOUSE_PAGES_SECRET_FILE="$dir/gitlab_pages_secret"
}
