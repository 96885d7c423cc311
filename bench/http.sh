#!/usr/bin/env bash
# HTTP benchmark of Gatehouse with wrk, validated on the server side.
# Starts PostgreSQL, nats-server and `gatehouse serve` on free ports in a
# throwaway directory, runs wrk against each route and against /-/liveness
# (the HTTP stack's own ceiling), checks every run against the server's JSON
# access log, and prints a table. See bench/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/http.sh [options]

Routes (the per-route options apply to the last --route; before any --route,
to the default GET:/api/v4/internal/check):
  --route [METHOD:]PATH   a route to measure; repeatable (METHOD defaults to GET)
  --body FILE             request body (sent through a generated wrk Lua script)
  --bodies FILE           one request body per line, taken in turn (each wrk
                          thread starts elsewhere in the file)
  --queries FILE          one query string (?a=b...) per line, appended to the
                          path in turn
  --content-type TYPE     Content-Type of the body (default application/json)
  --caller NAME           JWT header to mint per run: shell (default), workhorse,
                          kas, pages, or none
  --header 'Name: value'  an extra request header; repeatable
  --status CODE           the status every response must have (default 200)
/-/liveness is always measured too, with the same wrk settings.

wrk and server:
  -t, --threads N         wrk threads           (BENCH_THREADS, default 2)
  -c, --connections N     wrk connections       (BENCH_CONNECTIONS, default 16)
  --close                 send Connection: close on every request, liveness
                          included: a connection per request, as gitlab-shell
                          and Gitaly call (BENCH_CLOSE=1)
  -d, --duration T        each measured run     (BENCH_DURATION, default 10s)
  --timeout T             wrk request timeout   (BENCH_TIMEOUT, default 5s)
  --warmup T              unmeasured run before each measured one
                          (BENCH_WARMUP, default 2s; 0 for none)
  --server-threads N      GATEHOUSE_HTTP_THREADS (BENCH_SERVER_THREADS,
                          default: the server's own default)
  --seed FILE             load it with `gatehouse seed FILE` before serving
                          (BENCH_SEED)
  --database-url URL      serve from this database (BENCH_DATABASE_URL)
                          instead of starting PostgreSQL; it is migrated,
                          and seeded only with --seed
  --no-build              use the existing $BUILD_DIR/gatehouse
  --keep                  keep the work directory even when every run passed
  -h, --help

Environment: BUILD_DIR (default build/), BENCH_WORK (work directory, default a
new /tmp/gatehouse-bench.XXXXXX), GH_PG_EXTRA_OPTS (extra postgres -c options).
Exit status: 0 when every run passed its checks, 1 otherwise, 2 on bad usage.
EOF
}

die_usage() { printf 'bench/http.sh: %s (see --help)\n' "$*" >&2; exit 2; }

# shellcheck source=../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/lib.sh"
BENCH_DIR="$GH_ROOT/bench"
REPORT=(python3 "$BENCH_DIR/wrk_report.py")

# -- options -------------------------------------------------------------------

THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
CLOSE=${BENCH_CLOSE:-0}
DURATION=${BENCH_DURATION:-10s}
TIMEOUT=${BENCH_TIMEOUT:-5s}
WARMUP=${BENCH_WARMUP:-2s}
SERVER_THREADS=${BENCH_SERVER_THREADS:-}
SEED=${BENCH_SEED:-}
DATABASE_URL=${BENCH_DATABASE_URL:-}
BUILD_DIR=${BUILD_DIR:-$GH_ROOT/build}
DO_BUILD=1
KEEP=0

# One entry per route, index-aligned.
R_METHOD=() R_PATH=() R_BODY=() R_CTYPE=() R_CALLER=() R_STATUS=() R_HEADERS=()
R_BODIES=() R_QUERIES=()

add_route() {
  local spec=$1 method=GET path=$1
  if [[ $spec =~ ^([A-Za-z]+):(/.*)$ ]]; then
    method=${BASH_REMATCH[1]^^}
    path=${BASH_REMATCH[2]}
  fi
  [[ $path == /* ]] || die_usage "route '$spec' must be [METHOD:]/path"
  R_METHOD+=("$method") R_PATH+=("$path") R_BODY+=("") R_CTYPE+=("application/json")
  R_CALLER+=("shell") R_STATUS+=(200) R_HEADERS+=("") R_BODIES+=("") R_QUERIES+=("")
}

# The absolute path of readable file $2, for option $1.
readable_file() {
  [ -r "$2" ] || die_usage "$1: cannot read '$2'"
  echo "$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
}

# The index of the route per-route options apply to (creates the default).
last_route() {
  [ ${#R_PATH[@]} -gt 0 ] || add_route "GET:/api/v4/internal/check"
  LAST=$((${#R_PATH[@]} - 1))
}

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die_usage "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case $1 in
    --route) need_arg "$@"; add_route "$2"; shift 2 ;;
    --body)
      need_arg "$@"; last_route
      [ -r "$2" ] || die_usage "cannot read body file '$2'"
      R_BODY[LAST]=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    --bodies) need_arg "$@"; last_route; R_BODIES[LAST]=$(readable_file "$1" "$2"); shift 2 ;;
    --queries) need_arg "$@"; last_route; R_QUERIES[LAST]=$(readable_file "$1" "$2"); shift 2 ;;
    --content-type) need_arg "$@"; last_route; R_CTYPE[LAST]=$2; shift 2 ;;
    --caller)
      need_arg "$@"; last_route
      case $2 in shell|workhorse|kas|pages|none) ;; *) die_usage "unknown caller '$2'" ;; esac
      R_CALLER[LAST]=$2; shift 2 ;;
    --header)
      need_arg "$@"; last_route
      [[ $2 == *:* ]] || die_usage "header '$2' must be 'Name: value'"
      R_HEADERS[LAST]+="$2"$'\n'; shift 2 ;;
    --status)
      need_arg "$@"; last_route
      [[ $2 =~ ^[1-5][0-9][0-9]$ ]] || die_usage "status '$2' is not an HTTP status"
      R_STATUS[LAST]=$2; shift 2 ;;
    -t|--threads) need_arg "$@"; THREADS=$2; shift 2 ;;
    -c|--connections) need_arg "$@"; CONNECTIONS=$2; shift 2 ;;
    --close) CLOSE=1; shift ;;
    -d|--duration) need_arg "$@"; DURATION=$2; shift 2 ;;
    --timeout) need_arg "$@"; TIMEOUT=$2; shift 2 ;;
    --warmup) need_arg "$@"; WARMUP=$2; shift 2 ;;
    --server-threads) need_arg "$@"; SERVER_THREADS=$2; shift 2 ;;
    --seed) need_arg "$@"; SEED=$2; shift 2 ;;
    --database-url) need_arg "$@"; DATABASE_URL=$2; shift 2 ;;
    --no-build) DO_BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
last_route  # the default route when none was given

# wrk time arguments: N with s, m or h (or none: seconds). Prints seconds.
seconds_of() {
  local t=$1
  [[ $t =~ ^([0-9]+)(s|m|h)?$ ]] || die_usage "duration '$t' is not N, Ns, Nm or Nh"
  case ${BASH_REMATCH[2]} in
    m) echo $((BASH_REMATCH[1] * 60)) ;;
    h) echo $((BASH_REMATCH[1] * 3600)) ;;
    *) echo "${BASH_REMATCH[1]}" ;;
  esac
}

for n in "$THREADS" "$CONNECTIONS"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die_usage "threads and connections must be positive integers"
done
[ "$THREADS" -le "$CONNECTIONS" ] || die_usage "wrk needs connections >= threads"
# Unset: the server's default. Idle keep-alive connections wait in the
# edge's epoll set, not on a thread, so any count serves any connections.
[ -z "$SERVER_THREADS" ] || [[ $SERVER_THREADS =~ ^[1-9][0-9]*$ ]] \
  || die_usage "--server-threads must be a positive integer"
DURATION_S=$(seconds_of "$DURATION")
seconds_of "$TIMEOUT" >/dev/null
[ "$WARMUP" = 0 ] || seconds_of "$WARMUP" >/dev/null
[ -z "$SEED" ] || [ -r "$SEED" ] || die_usage "cannot read seed file '$SEED'"
[ -z "$SEED" ] || SEED=$(cd "$(dirname "$SEED")" && pwd)/$(basename "$SEED")

# A token is minted right before each run and must outlive it. Lifetimes as the
# callers issue them (shared/contract/other-callers.md §1.1), minus a margin.
jwt_header() {
  case $1 in
    shell) echo Gitlab-Shell-Api-Request ;;
    workhorse) echo Gitlab-Workhorse-Api-Request ;;
    kas) echo Gitlab-Kas-Api-Request ;;
    pages) echo Gitlab-Pages-Api-Request ;;
  esac
}
jwt_max_seconds() {
  case $1 in shell) echo 100 ;; workhorse) echo 80 ;; kas|pages) echo 25 ;; *) echo 0 ;; esac
}
for i in "${!R_PATH[@]}"; do
  caller=${R_CALLER[i]}
  [ "$caller" = none ] && continue
  max=$(jwt_max_seconds "$caller")
  [ "$DURATION_S" -le "$max" ] \
    || die_usage "a $caller JWT lives about ${max}s; --duration $DURATION would outlive it"
done

# -- stack ---------------------------------------------------------------------

gh_install_packages
BIN=$BUILD_DIR/gatehouse
if [ "$DO_BUILD" = 1 ]; then
  gh_log "building $BUILD_DIR (Release)"
  gh_build "$BUILD_DIR" Release >/dev/null
fi
[ -x "$BIN" ] || { gh_log "no executable $BIN (build it, or drop --no-build)"; exit 1; }

if [ -n "${BENCH_WORK:-}" ]; then
  WORK=$BENCH_WORK
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
fi
chmod 755 "$WORK"
FAILED=0

cleanup() {
  local rc=$?
  trap - EXIT
  gh_stop_all
  if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
    gh_log "work directory kept: $WORK (gatehouse.log, runs/)"
  elif [ -z "${BENCH_WORK:-}" ]; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

NATS_PORT=$(gh_free_port)
NATS_MON_PORT=$(gh_free_port)
HTTP_PORT=$(gh_free_port)
if [ -z "$DATABASE_URL" ]; then
  PG_PORT=$(gh_free_port)
  gh_start_postgres "$WORK/pg" "$PG_PORT"
  gh_create_database "$PG_PORT" gatehouse_bench
  DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/gatehouse_bench"
fi
gh_log "nats :$NATS_PORT, gatehouse :$HTTP_PORT; work dir $WORK"
gh_start_nats "$WORK/nats" "$NATS_PORT" "$NATS_MON_PORT"

# Secrets in the formats Rails writes: 32 hex chars for Shell, base64 of 32
# bytes for the others.
mkdir -p "$WORK/secrets"
(
  umask 077
  python3 - "$WORK/secrets" <<'PY'
import base64, os, secrets, sys
d = sys.argv[1]
with open(os.path.join(d, "gitlab_shell_secret"), "w") as f:
    f.write(secrets.token_hex(16) + "\n")
for who in ("workhorse", "kas", "pages"):
    with open(os.path.join(d, "gitlab_%s_secret" % who), "w") as f:
        f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
PY
)

export GATEHOUSE_DATABASE_URL="$DATABASE_URL"
export GATEHOUSE_NATS_URL="nats://127.0.0.1:$NATS_PORT"
export GATEHOUSE_HTTP_LISTEN="127.0.0.1:$HTTP_PORT"
if [ -n "$SERVER_THREADS" ]; then export GATEHOUSE_HTTP_THREADS="$SERVER_THREADS"; fi
export GATEHOUSE_LOG_FORMAT=json
export GATEHOUSE_SHELL_SECRET_FILE="$WORK/secrets/gitlab_shell_secret"
export GATEHOUSE_WORKHORSE_SECRET_FILE="$WORK/secrets/gitlab_workhorse_secret"
export GATEHOUSE_KAS_SECRET_FILE="$WORK/secrets/gitlab_kas_secret"
export GATEHOUSE_PAGES_SECRET_FILE="$WORK/secrets/gitlab_pages_secret"

"$BIN" migrate >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; gh_log "gatehouse migrate failed"; exit 1; }
if [ -n "$SEED" ]; then
  "$BIN" seed "$SEED" >"$WORK/seed.log" 2>&1 \
    || { cat "$WORK/seed.log" >&2; gh_log "gatehouse seed $SEED failed"; exit 1; }
fi

LOG=$WORK/gatehouse.log
# stdbuf: line-buffered stdout, so each run's access lines are in the file
# when the run is checked.
stdbuf -oL "$BIN" serve >"$LOG" 2>"$WORK/gatehouse.err" &
gh_track_pid $!
SERVER_PID=$!
BASE_URL="http://127.0.0.1:$HTTP_PORT"
if ! gh_wait_http "$BASE_URL/-/readiness" 400; then
  tail -n 20 "$WORK/gatehouse.err" "$LOG" >&2 || true
  gh_log "gatehouse did not become ready on $BASE_URL"
  exit 1
fi
gh_log "gatehouse ready (GATEHOUSE_HTTP_THREADS=${SERVER_THREADS:-default})"

# -- runs ----------------------------------------------------------------------

mkdir -p "$WORK/runs"
RESULTS=()

# Writes the wrk Lua script for route $1 when it needs one (a body, bodies
# or queries taken in turn, or a method other than GET) and prints its path.
lua_for() {
  local i=$1 lua="$WORK/runs/route-$1.lua"
  if [ -z "${R_BODY[i]}${R_BODIES[i]}${R_QUERIES[i]}" ] && [ "${R_METHOD[i]}" = GET ]; then
    return 0
  fi
  {
    printf 'wrk.method = "%s"\n' "${R_METHOD[i]}"
    if [ -n "${R_BODY[i]}" ]; then
      printf 'local f = assert(io.open([==[%s]==], "rb"))\n' "${R_BODY[i]}"
      printf 'wrk.body = f:read("*a")\nf:close()\n'
    fi
    if [ -n "${R_BODY[i]}${R_BODIES[i]}" ]; then
      printf 'wrk.headers["Content-Type"] = [==[%s]==]\n' "${R_CTYPE[i]}"
    fi
    if [ -n "${R_BODIES[i]}${R_QUERIES[i]}" ]; then
      # Each wrk thread has its own Lua state; setup() numbers them so that
      # each starts at its own place in the lists.
      printf 'local function lines(name)\n  local t = {}\n'
      printf '  if name ~= "" then for l in io.lines(name) do if l ~= "" then t[#t + 1] = l end end end\n'
      printf '  return t\nend\n'
      printf 'local bodies = lines([==[%s]==])\n' "${R_BODIES[i]}"
      printf 'local queries = lines([==[%s]==])\n' "${R_QUERIES[i]}"
      printf 'local threads, n = 0, 0\n'
      printf 'function setup(thread) thread:set("index", threads); threads = threads + 1 end\n'
      printf 'function init(args) n = (index or 0) * 7919 end\n'
      printf 'function request()\n  n = n + 1\n'
      printf '  local body = #bodies > 0 and bodies[n %% #bodies + 1] or wrk.body\n'
      printf '  local path = wrk.path\n'
      printf '  if #queries > 0 then path = path .. queries[n %% #queries + 1] end\n'
      printf '  return wrk.format(nil, path, nil, body)\nend\n'
    fi
  } >"$lua"
  echo "$lua"
}

# run_wrk INDEX NAME DURATION: one wrk run of route INDEX, checked against the
# access log lines written during it; writes runs/NAME.json (and .wrk).
run_wrk() {
  local i=$1 name=$2 duration=$3
  local label="${R_METHOD[i]} ${R_PATH[i]}${WARM:-}"
  local out="$WORK/runs/$name.wrk" result="$WORK/runs/$name.json"
  local args=(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$duration" --timeout "$TIMEOUT" --latency)
  if [ "$CLOSE" = 1 ]; then args+=(-H "Connection: close"); fi
  local caller=${R_CALLER[i]} token lua header
  if [ "$caller" != none ]; then
    token=$("$BIN" jwt "$caller") || { gh_log "gatehouse jwt $caller failed"; return 1; }
    args+=(-H "$(jwt_header "$caller"): $token")
  fi
  while IFS= read -r header; do
    if [ -n "$header" ]; then args+=(-H "$header"); fi
  done <<<"${R_HEADERS[i]}"
  lua=$(lua_for "$i")
  if [ -n "$lua" ]; then args+=(-s "$lua"); fi
  args+=("$BASE_URL${R_PATH[i]}")

  kill -0 "$SERVER_PID" 2>/dev/null || { gh_log "gatehouse is not running"; return 1; }
  local offset overflows rc=0
  offset=$(stat -c %s "$LOG")
  overflows=$("${REPORT[@]}" overflows)
  "${args[@]}" >"$out" 2>&1 || rc=$?
  local check=("${REPORT[@]}" check --label "$label" --wrk "$out" --wrk-rc "$rc"
               --log "$LOG" --offset "$offset" --path "${R_PATH[i]}"
               --status "${R_STATUS[i]}" --connections "$CONNECTIONS" --out "$result")
  if [ -n "$overflows" ]; then check+=(--overflows-before "$overflows"); fi
  "${check[@]}" >&2 || return 1
  echo "$result"
}

# bench_route INDEX NAME: warm-up (checked, not reported), then the measured run.
bench_route() {
  local i=$1 name=$2 result
  if [ "$WARMUP" != 0 ]; then
    WARM=" (warm-up)" run_wrk "$i" "$name.warmup" "$WARMUP" >/dev/null || FAILED=1
  fi
  # The result file is written even when the checks fail, for the table.
  run_wrk "$i" "$name" "$DURATION" >/dev/null || FAILED=1
  result="$WORK/runs/$name.json"
  if [ -f "$result" ]; then RESULTS+=("$result"); fi
}

gh_log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION per run (warm-up $WARMUP)$([ "$CLOSE" = 1 ] && echo ", Connection: close")"
# The HTTP stack's ceiling first, with the same settings as the routes.
add_route "GET:/-/liveness"
LIVE=$((${#R_PATH[@]} - 1))
R_CALLER[LIVE]=none
bench_route "$LIVE" liveness
for i in "${!R_PATH[@]}"; do
  if [ "$i" = "$LIVE" ]; then continue; fi
  bench_route "$i" "route-$i"
done

echo
if [ ${#RESULTS[@]} -gt 0 ]; then
  "${REPORT[@]}" table "${RESULTS[@]}" || FAILED=1
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  gh_log "gatehouse exited during the benchmark; see $WORK/gatehouse.err"
  FAILED=1
fi
if [ "$FAILED" -ne 0 ]; then
  gh_log "FAILED: at least one run did not pass its server-side checks (see above)"
  exit 1
fi
gh_log "all runs passed their server-side checks"
