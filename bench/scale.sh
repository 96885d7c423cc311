#!/usr/bin/env bash
# Gatehouse at a large installation's size: generates the seed (500k users,
# 1M keys, 100k projects, 1M memberships by default), loads it with
# `gatehouse seed` into a PostgreSQL with production durability, starts
# `gatehouse serve` cold, puts mixed load on it, then runs bench/http.sh's
# ratio table against the same database. Prints one table of figures, each
# with the target issue 10 sets. See bench/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/scale.sh [options]

  --users N --keys N --projects N --memberships N
                      the installation's size (default 500000, 1000000,
                      100000, 1000000)
  --data DIR          where the generated seed and bodies live; reused when
                      DIR/pairs.txt says the same size (default
                      /tmp/gatehouse-scale-<keys>)
  --mixed T           seconds of mixed load before RSS is read (default 300)
  --no-http           skip bench/http.sh's table
  --no-build          use the existing $BUILD_DIR/gatehouse
  --keep              keep the work directory
  -h, --help

Environment: BUILD_DIR (default build/), BENCH_WORK (work directory).
Exit status: 0 when every figure meets its target, 1 otherwise, 2 on bad usage.
EOF
}

die_usage() { printf 'bench/scale.sh: %s (see --help)\n' "$*" >&2; exit 2; }

# shellcheck source=../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/lib.sh"
BENCH_DIR="$GH_ROOT/bench"

USERS=500000 KEYS=1000000 PROJECTS=100000 MEMBERSHIPS=1000000
DATA="" MIXED=300 HTTP=1 DO_BUILD=1 KEEP=0
BUILD_DIR=${BUILD_DIR:-$GH_ROOT/build}

need_arg() { [ $# -ge 2 ] || die_usage "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case $1 in
    --users) need_arg "$@"; USERS=$2; shift 2 ;;
    --keys) need_arg "$@"; KEYS=$2; shift 2 ;;
    --projects) need_arg "$@"; PROJECTS=$2; shift 2 ;;
    --memberships) need_arg "$@"; MEMBERSHIPS=$2; shift 2 ;;
    --data) need_arg "$@"; DATA=$2; shift 2 ;;
    --mixed) need_arg "$@"; MIXED=$2; shift 2 ;;
    --no-http) HTTP=0; shift ;;
    --no-build) DO_BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown option $1" ;;
  esac
done
for n in "$USERS" "$KEYS" "$PROJECTS" "$MEMBERSHIPS" "$MIXED"; do
  [[ $n =~ ^[0-9]+$ ]] || die_usage "'$n' is not a number"
done
DATA=${DATA:-/tmp/gatehouse-scale-$KEYS}

gh_install_packages
command -v wrk >/dev/null || { gh_log "wrk is missing"; exit 1; }
BIN=$BUILD_DIR/gatehouse
if [ "$DO_BUILD" = 1 ]; then
  gh_log "building $BUILD_DIR (Release)"
  gh_build "$BUILD_DIR" Release >/dev/null
fi
[ -x "$BIN" ] || { gh_log "no executable $BIN"; exit 1; }

# -- the seed ------------------------------------------------------------------

SIZE="users $USERS keys $KEYS projects $PROJECTS memberships $MEMBERSHIPS"
if [ -f "$DATA/pairs.txt" ] && grep -q "^$SIZE " "$DATA/pairs.txt"; then
  gh_log "reusing $DATA"
else
  gh_log "generating $SIZE into $DATA"
  rm -rf "$DATA"
  mkdir -p "$DATA"
  python3 "$BENCH_DIR/scale_seed.py" --users "$USERS" --keys "$KEYS" \
    --projects "$PROJECTS" --memberships "$MEMBERSHIPS" --out "$DATA" >&2
fi
SEED_MB=$(( $(stat -c %s "$DATA/seed.json") / 1000000 ))

# -- stack ---------------------------------------------------------------------

if [ -n "${BENCH_WORK:-}" ]; then WORK=$BENCH_WORK; mkdir -p "$WORK"; else
  WORK=$(mktemp -d /tmp/gatehouse-scale.XXXXXX); fi
chmod 755 "$WORK"
cleanup() {
  local rc=$?
  trap - EXIT
  gh_stop_all
  if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
    gh_log "work directory kept: $WORK"
  elif [ -z "${BENCH_WORK:-}" ]; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PG_PORT=$(gh_free_port)
# PostgreSQL's own defaults: fsync and synchronous_commit on.
gh_start_postgres "$WORK/pg" "$PG_PORT"
gh_create_database "$PG_PORT" gatehouse_scale
gh_start_nats "$WORK/nats" -1 -1
DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/gatehouse_scale"
gh_log "postgres :$PG_PORT, nats :$GH_NATS_PORT; work dir $WORK"

mkdir -p "$WORK/secrets"
( umask 077; python3 -c 'import secrets; print(secrets.token_hex(16))' \
    >"$WORK/secrets/gitlab_shell_secret" )
export GATEHOUSE_DATABASE_URL="$DATABASE_URL"
export GATEHOUSE_NATS_URL="nats://127.0.0.1:$GH_NATS_PORT"
export GATEHOUSE_SHELL_SECRET_FILE="$WORK/secrets/gitlab_shell_secret"
export GATEHOUSE_LOG_FORMAT=json
"$BIN" migrate >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }

ROWS=()   # "figure|measured|target|PASS/FAIL"
FAILED=0
row() {
  local verdict=PASS
  [ "$4" = 1 ] || { verdict=FAIL; FAILED=1; }
  ROWS+=("$1|$2|$3|$verdict")
}
# ok A OP B: a float comparison for row().
ok() { python3 -c "import sys; a,op,b=float(sys.argv[1]),sys.argv[2],float(sys.argv[3]); print(int(a<=b if op=='<=' else a>=b))" "$@"; }

gh_log "gatehouse seed of $SEED_MB MB"
/usr/bin/time -f '%e %M' -o "$WORK/seed.time" "$BIN" seed "$DATA/seed.json" \
  >"$WORK/seed.log" 2>&1 || { tail -5 "$WORK/seed.log" >&2; exit 1; }
read -r SEED_S SEED_KB <"$WORK/seed.time"
SEED_MIB=$(( SEED_KB / 1024 ))
row "seed of $SEED_MB MB, one transaction: time" "${SEED_S} s" "<= 120 s" "$(ok "$SEED_S" '<=' 120)"
row "seed: peak RSS of gatehouse seed" "$SEED_MIB MiB" "< 2048 MiB" "$(ok "$SEED_MIB" '<=' 2047)"

# -- cold start and mixed load ---------------------------------------------------

HTTP_PORT=$(gh_free_port)
BASE="http://127.0.0.1:$HTTP_PORT"
export GATEHOUSE_HTTP_LISTEN="127.0.0.1:$HTTP_PORT"
PULL=$(head -n 1 "$DATA/allowed-pull.jsonl")
TOKEN=$("$BIN" jwt shell 2>/dev/null)
START=$(date +%s.%N)
"$BIN" serve >"$WORK/serve.log" 2>"$WORK/serve.err" &
SERVER_PID=$!
gh_track_pid "$SERVER_PID"
COLD=""
for _ in $(seq 1 6000); do
  if curl -s -o "$WORK/first.json" -w '%{http_code}' -H "Gitlab-Shell-Api-Request: $TOKEN" \
      -H 'Content-Type: application/json' -d "$PULL" "$BASE/api/v4/internal/allowed" \
      2>/dev/null | grep -q '^200$' && grep -q '"status":true' "$WORK/first.json"; then
    COLD=$(python3 -c "import time,sys; print('%.2f' % (time.time() - float(sys.argv[1])))" "$START")
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { tail "$WORK/serve.err" >&2; exit 1; }
  sleep 0.01
done
[ -n "$COLD" ] || { gh_log "no correct /allowed answer within 60 s"; exit 1; }
row "cold start to the first correct /allowed" "$COLD s" "<= 5 s" "$(ok "$COLD" '<=' 5)"
rss_mib() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$SERVER_PID/status"; }
RSS_START=$(rss_mib)

# The server's own count of answers other than 200, by route and status,
# leaving out /allowed's 404 (the denials, one in four, are expected).
unexpected_answers() {
  curl -s "$BASE/metrics" | python3 -c '
import re, sys
bad = 0
for line in sys.stdin:
    m = re.match(r"gatehouse_http_requests_total\{route=\"([^\"]*)\",status=\"(\d+)\"\} (\d+)", line)
    if m and m.group(2) != "200" and not (m.group(1).endswith("/allowed") and m.group(2) == "404"):
        bad += int(m.group(3))
print(bad)'
}
# The cold start's polls were answered 503 until the model loaded.
UNEXPECTED_BEFORE=$(unexpected_answers)

# One request of each kind in turn: pull, push, denial, authorized_keys.
cat >"$WORK/mixed.lua" <<EOF
local function lines(name)
  local t = {}
  for l in io.lines(name) do if l ~= "" then t[#t + 1] = l end end
  return t
end
local pull = lines("$DATA/allowed-pull.jsonl")
local push = lines("$DATA/allowed-push.jsonl")
local deny = lines("$DATA/allowed-deny.jsonl")
local keys = lines("$DATA/authorized-keys.txt")
local n, bad = 0, 0
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local i = math.floor(n / 4) % #pull + 1
  local k = n % 4
  if k == 0 then return wrk.format("POST", "/api/v4/internal/allowed", nil, pull[i]) end
  if k == 1 then return wrk.format("POST", "/api/v4/internal/allowed", nil, push[i]) end
  if k == 2 then return wrk.format("POST", "/api/v4/internal/allowed", nil, deny[i]) end
  return wrk.format("GET", "/api/v4/internal/authorized_keys" .. keys[i])
end
EOF
gh_log "mixed load for $MIXED s (pull, push, denial, authorized_keys in turn)"
LEFT=$MIXED REQUESTS=0
while [ "$LEFT" -gt 0 ]; do
  # A shell JWT lives about 100 s: a fresh one per minute.
  STEP=$(( LEFT < 60 ? LEFT : 60 ))
  TOKEN=$("$BIN" jwt shell 2>/dev/null)
  wrk -t2 -c16 -d"${STEP}s" -s "$WORK/mixed.lua" \
    -H "Gitlab-Shell-Api-Request: $TOKEN" "$BASE" >"$WORK/mixed.out" 2>&1
  REQUESTS=$(( REQUESTS + $(awk '/requests in/ {print $1}' "$WORK/mixed.out") ))
  # Denials answer 404 by design; wrk counts them as non-2xx.
  LEFT=$(( LEFT - STEP ))
done
RSS_END=$(rss_mib)
UNEXPECTED=$(( $(unexpected_answers) - UNEXPECTED_BEFORE ))
row "RSS after start" "$RSS_START MiB" "-" 1
row "RSS after ${MIXED} s of mixed load ($REQUESTS requests)" "$RSS_END MiB" "<= 1024 MiB" "$(ok "$RSS_END" '<=' 1024)"
# Only the denials (one in four per wrk thread) may be non-2xx.
row "mixed load: answers other than 200 and the denials' 404" "$UNEXPECTED" "0" "$([ "$UNEXPECTED" = 0 ] && echo 1 || echo 0)"

# post_receive: a one-branch push each, its event published through the
# outbox. Events on the stream must equal the pushes the server answered
# 200 (its own count, which includes requests wrk gave up on at the end).
metric() {  # metric NAME LABEL-SUBSTRING: the sum of the matching series
  curl -s "$BASE/metrics" | awk -v n="$1" -v l="$2" \
    'index($0, n) == 1 && index($0, l) { s += $NF } END { printf "%d\n", s }'
}
stream_messages() {
  curl -s "http://127.0.0.1:$GH_NATS_MONITOR_PORT/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(s["state"]["messages"] for a in d.get("account_details", [])
          for s in a.get("stream_detail", []) if s["name"] == "GATEHOUSE_EVENTS"))'
}
cat >"$WORK/post_receive.lua" <<LUA
local t = {}
for l in io.lines("$DATA/post-receive.jsonl") do if l ~= "" then t[#t + 1] = l end end
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, "/api/v4/internal/post_receive", nil, t[n % #t + 1])
end
LUA
EVENTS_BEFORE=$(stream_messages)
ANSWERED_BEFORE=$(metric gatehouse_http_requests_total 'post_receive",status="200"')
TOKEN=$("$BIN" jwt shell 2>/dev/null)
# A warm-up first, as bench/http.sh does for every run: on a fresh cluster
# the first pushes also create WAL segments (zero-filled, fsynced), which a
# running installation recycles. Its pushes count in the events check too.
gh_log "post_receive: 5 s warm-up, then 20 s at 16 connections"
wrk -t2 -c16 -d5s -s "$WORK/post_receive.lua" \
  -H "Gitlab-Shell-Api-Request: $TOKEN" "$BASE" >"$WORK/post_receive.warmup" 2>&1
wrk -t2 -c16 -d20s --latency -s "$WORK/post_receive.lua" \
  -H "Gitlab-Shell-Api-Request: $TOKEN" "$BASE" >"$WORK/post_receive.out" 2>&1
PR_RATE=$(awk '/Requests\/sec/ {printf "%d", $2}' "$WORK/post_receive.out")
PR_P99=$(awk '$1 == "99%" {print $2}' "$WORK/post_receive.out")
PR_P99_MS=$(python3 -c "
import sys
v = sys.argv[1]
for unit, f in (('us', 0.001), ('ms', 1.0), ('s', 1000.0)):
    if v.endswith(unit):
        print('%.1f' % (float(v[:-len(unit)]) * f)); break" "$PR_P99")
PR_NON2XX=$(awk '/Non-2xx/ {print $NF}' "$WORK/post_receive.out")
# Let the outbox drain, then count.
for _ in $(seq 1 600); do
  [ "$(metric gatehouse_outbox_pending '')" = 0 ] && break
  sleep 0.1
done
ANSWERED=$(( $(metric gatehouse_http_requests_total 'post_receive",status="200"') - ANSWERED_BEFORE ))
EVENTS=$(( $(stream_messages) - EVENTS_BEFORE ))
row "post_receive at 16 connections (fsync on)" "$PR_RATE/s" ">= 2000/s" "$(ok "$PR_RATE" '>=' 2000)"
row "post_receive p99" "$PR_P99_MS ms" "<= 20 ms" "$(ok "$PR_P99_MS" '<=' 20)"
row "post_receive: non-2xx" "${PR_NON2XX:-0}" "0" "$([ -z "$PR_NON2XX" ] && echo 1 || echo 0)"
row "events on the stream = pushes answered 200" "$EVENTS = $ANSWERED" "equal" "$([ "$EVENTS" = "$ANSWERED" ] && [ "$ANSWERED" -gt 0 ] && echo 1 || echo 0)"

# -- incremental updates -----------------------------------------------------------

# A second replica on the same database, then one change of each kind (and
# its undo) timed until both replicas answer by it. Neither may load the
# model in full meanwhile, nor grow by a second model.
loads() { grep -c '"read model loaded"' "$1"; }
HTTP_PORT2=$(gh_free_port)
BASE2="http://127.0.0.1:$HTTP_PORT2"
GATEHOUSE_HTTP_LISTEN="127.0.0.1:$HTTP_PORT2" "$BIN" serve \
  >"$WORK/serve2.log" 2>"$WORK/serve2.err" &
SERVER2_PID=$!
gh_track_pid "$SERVER2_PID"
for _ in $(seq 1 6000); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE2/-/readiness")" = 200 ] \
    && [ "$(loads "$WORK/serve2.log")" -ge 1 ] && break
  kill -0 "$SERVER2_PID" 2>/dev/null || { tail "$WORK/serve2.err" >&2; exit 1; }
  sleep 0.05
done
LOADS_BEFORE="$(loads "$WORK/serve.log") $(loads "$WORK/serve2.log")"
RSS_BEFORE_CHANGES=$(rss_mib)
TOKEN=$("$BIN" jwt shell 2>/dev/null)
gh_log "incremental updates: a key, a user, a membership, a project, on two replicas"
python3 "$BENCH_DIR/change_latency.py" --database-url "$DATABASE_URL" \
  --token "$TOKEN" --data "$DATA" "$BASE" "$BASE2" >"$WORK/changes.out" \
  || { cat "$WORK/changes.out" >&2; exit 1; }
CHANGE_S=$(awk '{printf "%s%s", sep, $2; sep=" / "}' "$WORK/changes.out")
CHANGE_MAX=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$WORK/changes.out")
LOADS_AFTER="$(loads "$WORK/serve.log") $(loads "$WORK/serve2.log")"
RSS_GROWTH=$(( $(rss_mib) - RSS_BEFORE_CHANGES ))
row "change reaches both replicas: key / user / membership / project" "$CHANGE_S s" "<= 1 s each" "$(ok "$CHANGE_MAX" '<=' 1)"
row "full loads during the changes (two replicas)" "$(( ${LOADS_AFTER% *} - ${LOADS_BEFORE% *} + ${LOADS_AFTER#* } - ${LOADS_BEFORE#* } ))" "0" "$([ "$LOADS_BEFORE" = "$LOADS_AFTER" ] && echo 1 || echo 0)"
row "RSS growth over the changes (no second model)" "$RSS_GROWTH MiB" "<= 64 MiB" "$(ok "$RSS_GROWTH" '<=' 64)"
kill "$SERVER2_PID"; wait "$SERVER2_PID" 2>/dev/null || true
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

# -- the table -------------------------------------------------------------------

{
  printf '\n%s; seed.json %s MB\n' "$SIZE" "$SEED_MB"
  printf '%-62s %-14s %-14s %s\n' figure measured target verdict
  for r in "${ROWS[@]}"; do
    IFS='|' read -r a b c d <<<"$r"
    printf '%-62s %-14s %-14s %s\n' "$a" "$b" "$c" "$d"
  done
}

if [ "$HTTP" = 1 ]; then
  gh_log "bench/http.sh against the same database"
  BUILD_DIR=$BUILD_DIR "$BENCH_DIR/http.sh" --no-build --database-url "$DATABASE_URL" \
    -d 10s \
    --route POST:/api/v4/internal/allowed --bodies "$DATA/allowed-pull.jsonl" \
    --route POST:/api/v4/internal/allowed --bodies "$DATA/allowed-push.jsonl" \
    --route POST:/api/v4/internal/allowed --bodies "$DATA/allowed-deny.jsonl" --status 404 \
    --route GET:/api/v4/internal/authorized_keys --queries "$DATA/authorized-keys.txt" \
    || FAILED=1
fi
exit "$FAILED"
