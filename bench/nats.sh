#!/usr/bin/env bash
# /allowed over NATS against /allowed over HTTP, in the same run, against the
# same `gatehouse serve`: starts PostgreSQL, nats-server and Gatehouse on free
# ports in a throwaway directory (scripts/lib.sh, as bench/http.sh does),
# seeds bench/allowed-seed.json, then measures
#   HTTP: wrk POST /api/v4/internal/allowed with bench/allowed-body.json,
#         checked against the server's access log (bench/wrk_report.py);
#   NATS: gatehouse_nats_bench (nats.c, bench/nats_allowed.cpp) sending the
#         same body as an AllowedRequest to gatehouse.internal.v1.allowed,
#         with as many requests outstanding as wrk has connections;
# and prints both and their ratio. See bench/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/nats.sh [options]
  -c, --connections N   wrk connections = NATS requests outstanding
                        (BENCH_CONNECTIONS, default 16)
  -t, --threads N       wrk threads = NATS client connections, each with its
                        own threads (BENCH_THREADS, default 2)
  -d, --duration S      seconds per measured run (BENCH_DURATION, default 10)
  --warmup S            unmeasured seconds before each (BENCH_WARMUP, default 2)
  --request-ids         send a unique Gatehouse-Request-Id with every NATS
                        request (measures the retry bookkeeping too)
  --no-build            use the existing $BUILD_DIR binaries
  --keep                keep the work directory
Environment: BUILD_DIR (default build/), BENCH_WORK, GH_PG_EXTRA_OPTS.
Exit status: 0 when both runs passed their checks.
EOF
}

die_usage() { printf 'bench/nats.sh: %s (see --help)\n' "$*" >&2; exit 2; }

# shellcheck source=../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/lib.sh"
BENCH_DIR="$GH_ROOT/bench"
REPORT=(python3 "$BENCH_DIR/wrk_report.py")

CONNECTIONS=${BENCH_CONNECTIONS:-16}
THREADS=${BENCH_THREADS:-2}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
BUILD_DIR=${BUILD_DIR:-$GH_ROOT/build}
DO_BUILD=1
KEEP=0
REQUEST_IDS=()

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die_usage "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case $1 in
    -c|--connections) need_arg "$@"; CONNECTIONS=$2; shift 2 ;;
    -t|--threads) need_arg "$@"; THREADS=$2; shift 2 ;;
    -d|--duration) need_arg "$@"; DURATION=${2%s}; shift 2 ;;
    --warmup) need_arg "$@"; WARMUP=${2%s}; shift 2 ;;
    --request-ids) REQUEST_IDS=(--request-ids); shift ;;
    --no-build) DO_BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
for n in "$CONNECTIONS" "$THREADS" "$DURATION"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die_usage "connections, threads and duration must be positive integers"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die_usage "--warmup must be a whole number of seconds"
[ "$THREADS" -le "$CONNECTIONS" ] || die_usage "wrk needs connections >= threads"
# A Shell JWT lives about 100 s; it is minted right before each wrk run.
[ "$DURATION" -le 90 ] || die_usage "--duration above 90 s would outlive the Shell JWT"

BODY=$BENCH_DIR/allowed-body.json
SEED=$BENCH_DIR/allowed-seed.json
ROUTE=/api/v4/internal/allowed

gh_install_packages
BIN=$BUILD_DIR/gatehouse
CLIENT=$BUILD_DIR/bench/gatehouse_nats_bench
if [ "$DO_BUILD" = 1 ]; then
  gh_log "building $BUILD_DIR (Release): gatehouse, gatehouse_nats_bench"
  cmake -S "$GH_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target gatehouse gatehouse_nats_bench >/dev/null
fi
for f in "$BIN" "$CLIENT"; do
  [ -x "$f" ] || { gh_log "no executable $f (build it, or drop --no-build)"; exit 1; }
done

if [ -n "${BENCH_WORK:-}" ]; then
  WORK=$BENCH_WORK
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/gatehouse-nats-bench.XXXXXX)
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

PG_PORT=$(gh_free_port)
NATS_PORT=$(gh_free_port)
NATS_MON_PORT=$(gh_free_port)
HTTP_PORT=$(gh_free_port)
gh_log "postgres :$PG_PORT, nats :$NATS_PORT, gatehouse :$HTTP_PORT; work dir $WORK"
gh_start_postgres "$WORK/pg" "$PG_PORT"
gh_create_database "$PG_PORT" gatehouse_bench
gh_start_nats "$WORK/nats" "$NATS_PORT" "$NATS_MON_PORT"
gh_make_secrets "$WORK/secrets"
gh_export_secret_vars "$WORK/secrets"

export GATEHOUSE_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/gatehouse_bench"
export GATEHOUSE_NATS_URL="nats://127.0.0.1:$NATS_PORT"
export GATEHOUSE_HTTP_LISTEN="127.0.0.1:$HTTP_PORT"
export GATEHOUSE_HTTP_THREADS=$((CONNECTIONS + 8))
export GATEHOUSE_LOG_FORMAT=json

"$BIN" migrate >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; gh_log "gatehouse migrate failed"; exit 1; }
"$BIN" seed "$SEED" >"$WORK/seed.log" 2>&1 \
  || { cat "$WORK/seed.log" >&2; gh_log "gatehouse seed failed"; exit 1; }

LOG=$WORK/gatehouse.log
stdbuf -oL "$BIN" serve >"$LOG" 2>"$WORK/gatehouse.err" &
gh_track_pid $!
SERVER_PID=$!
BASE_URL="http://127.0.0.1:$HTTP_PORT"
if ! gh_wait_http "$BASE_URL/-/readiness" 400; then
  tail -n 20 "$WORK/gatehouse.err" "$LOG" >&2 || true
  gh_log "gatehouse did not become ready on $BASE_URL"
  exit 1
fi
mkdir -p "$WORK/runs"
# Both edges must decide (read model loaded) before anything is measured.
for i in $(seq 1 100); do
  if "$CLIENT" --url "$GATEHOUSE_NATS_URL" --body "$BODY" -c 1 -d 1 --warmup 0 \
       >/dev/null 2>&1; then break; fi
  sleep 0.1
done

# -- HTTP: wrk, checked against the access log ----------------------------------

LUA=$WORK/runs/allowed.lua
{
  printf 'wrk.method = "POST"\n'
  printf 'local f = assert(io.open([==[%s]==], "rb"))\n' "$BODY"
  printf 'wrk.body = f:read("*a")\nf:close()\n'
  printf 'wrk.headers["Content-Type"] = "application/json"\n'
} >"$LUA"

# run_wrk NAME SECONDS: writes runs/NAME.json; fails when the checks fail.
run_wrk() {
  local name=$1 seconds=$2 token offset overflows rc=0
  token=$("$BIN" jwt shell) || { gh_log "gatehouse jwt shell failed"; return 1; }
  offset=$(stat -c %s "$LOG")
  overflows=$("${REPORT[@]}" overflows)
  wrk -t "$THREADS" -c "$CONNECTIONS" -d "${seconds}s" --timeout 5s --latency \
    -H "Gitlab-Shell-Api-Request: $token" -s "$LUA" "$BASE_URL$ROUTE" \
    >"$WORK/runs/$name.wrk" 2>&1 || rc=$?
  local check=("${REPORT[@]}" check --label "HTTP POST $ROUTE" --wrk "$WORK/runs/$name.wrk"
               --wrk-rc "$rc" --log "$LOG" --offset "$offset" --path "$ROUTE"
               --status 200 --connections "$CONNECTIONS" --out "$WORK/runs/$name.json")
  if [ -n "$overflows" ]; then check+=(--overflows-before "$overflows"); fi
  "${check[@]}" >&2
}

gh_log "HTTP: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s (warm-up ${WARMUP}s)"
if [ "$WARMUP" != 0 ]; then run_wrk http-warmup "$WARMUP" || FAILED=1; fi
run_wrk http "$DURATION" || FAILED=1

# -- NATS: the nats.c client --------------------------------------------------------

gh_log "NATS: gatehouse_nats_bench -t$THREADS -c$CONNECTIONS -d${DURATION}s (warm-up ${WARMUP}s)"
NATS_RC=0
"$CLIENT" --url "$GATEHOUSE_NATS_URL" --body "$BODY" -c "$CONNECTIONS" \
  -t "$THREADS" -d "$DURATION" --warmup "$WARMUP" --json "${REQUEST_IDS[@]}" \
  >"$WORK/runs/nats.json" 2>"$WORK/runs/nats.err" || NATS_RC=$?
if [ "$NATS_RC" -ne 0 ]; then
  gh_log "NATS run failed: $(cat "$WORK/runs/nats.json" "$WORK/runs/nats.err")"
  FAILED=1
fi
kill -0 "$SERVER_PID" 2>/dev/null || { gh_log "gatehouse exited during the benchmark"; FAILED=1; }

# -- report ---------------------------------------------------------------------------

echo
python3 - "$WORK/runs/http.json" "$WORK/runs/nats.json" "$CONNECTIONS" <<'PY'
import json, sys
def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None
http, nats, conns = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
rows = []
if http and "rps" in http:
    rows.append(("HTTP  POST /api/v4/internal/allowed", http["rps"],
                 http["percentiles_ms"]["50"], http["percentiles_ms"]["99"],
                 "ok" if http.get("ok") else "FAILED"))
if nats and "rps" in nats:
    bad = nats["unexpected_status"] + nats["timeouts"]
    rows.append(("NATS  gatehouse.internal.v1.allowed", nats["rps"], nats["p50_ms"],
                 nats["p99_ms"], "ok" if bad == 0 and nats["requests"] > 0 else "FAILED"))
print("%-38s %9s %10s %10s  %s" % ("transport (%s outstanding)" % conns, "req/s", "p50", "p99", "ok"))
print("%-38s %9s %10s %10s  %s" % ("-" * 38, "-" * 9, "-" * 10, "-" * 10, "--"))
for label, rps, p50, p99, ok in rows:
    print("%-38s %9.0f %7.3f ms %7.3f ms  %s" % (label, rps, p50, p99, ok))
if len(rows) == 2:
    h, n = rows
    print()
    print("NATS / HTTP: throughput x%.2f, p50 x%.2f, p99 x%.2f"
          % (n[1] / h[1], n[2] / h[2] if h[2] else 0, n[3] / h[3] if h[3] else 0))
PY
if [ "$FAILED" -ne 0 ]; then
  gh_log "FAILED: a run did not pass its checks (see above)"
  exit 1
fi
gh_log "both runs passed their checks"
