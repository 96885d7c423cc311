#!/usr/bin/env bash
# How long a revoked agent token takes to be refused on every replica (issue
# 12: "refused on every replica within a second"). Starts its own PostgreSQL
# and nats-server on free ports, two `gatehouse serve` replicas on that one
# database and NATS, seeds N agents with a token each (and a bulk of users,
# SSH keys, projects, memberships), then, with bench/agent_revocation.py,
# revokes a token R times with `gatehouse seed --prune` and times it from
# just before the seed command starts until both replicas answer agent_info
# 401, then restores it and times the 200 again. See bench/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/agent_revocation.sh [options]

  --agents N        cluster agents, one token each (default 1000)
  --keys K          SSH keys in the bulk, made as bench/scale_seed.py makes
                    them (default 1000; users are K/2, at least 10)
  --trials R        revocations, each followed by a restore (default 5)
  --mode MODE       remove: the revoked token is left out of the document,
                    so --prune deletes it (default); revoke: it stays,
                    marked "revoked": true
  --document D      full: each seed --prune loads the whole document, bulk
                    included (default); agents: a document of only the
                    cluster_agents, which --prune limits to that kind
  --limit S         seconds a revocation may take on the slower replica
                    (default 1.0)
  --timeout S       give up on a replica S seconds after the seed command
                    ended (default 10)
  --no-build        use the existing $BUILD_DIR/gatehouse
  --keep            keep the work directory
  -h, --help

Environment: BUILD_DIR (default build/), BENCH_WORK (work directory),
GH_PG_EXTRA_OPTS (extra postgres -c options; default durability otherwise).
Prints one line per trial and, last, `revocation max=<s> p50=<s>
limit=<S> PASS|FAIL`. Exit status: 0 on PASS, 1 on FAIL or error, 2 on bad
usage.
EOF
}

die_usage() { printf 'bench/agent_revocation.sh: %s (see --help)\n' "$*" >&2; exit 2; }

# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/lib.sh"
BENCH_DIR="$GH_ROOT/bench"
HELPER=(python3 "$BENCH_DIR/agent_revocation.py")

AGENTS=1000 KEYS=1000 TRIALS=5 MODE=remove DOCUMENT=full LIMIT=1.0 TIMEOUT=10
DO_BUILD=1 KEEP=0
BUILD_DIR=${BUILD_DIR:-$GH_ROOT/build}

need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then die_usage "$1 needs a value"; fi; }
while [ $# -gt 0 ]; do
  case $1 in
    --agents) need_arg "$@"; AGENTS=$2; shift 2 ;;
    --keys) need_arg "$@"; KEYS=$2; shift 2 ;;
    --trials) need_arg "$@"; TRIALS=$2; shift 2 ;;
    --mode) need_arg "$@"; MODE=$2; shift 2 ;;
    --document) need_arg "$@"; DOCUMENT=$2; shift 2 ;;
    --limit) need_arg "$@"; LIMIT=$2; shift 2 ;;
    --timeout) need_arg "$@"; TIMEOUT=$2; shift 2 ;;
    --no-build) DO_BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
if ! [[ $AGENTS =~ ^[0-9]+$ ]] || [ "$AGENTS" -lt 2 ]; then
  die_usage "--agents must be a number >= 2"
fi
[[ $KEYS =~ ^[0-9]+$ ]] || die_usage "--keys must be a number"
if ! [[ $TRIALS =~ ^[0-9]+$ ]] || [ "$TRIALS" -lt 1 ]; then
  die_usage "--trials must be a number >= 1"
fi
case $MODE in remove|revoke) ;; *) die_usage "--mode is remove or revoke" ;; esac
case $DOCUMENT in full|agents) ;; *) die_usage "--document is full or agents" ;; esac
[[ $LIMIT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die_usage "--limit must be seconds"
[[ $TIMEOUT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die_usage "--timeout must be seconds"
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$TIMEOUT" \
  || die_usage "--timeout must be more than 0"

# -- build -------------------------------------------------------------------------

gh_install_packages
BIN=$BUILD_DIR/gatehouse
if [ "$DO_BUILD" = 1 ]; then
  gh_log "building $BUILD_DIR (Release, target gatehouse)"
  GH_BUILD_TARGETS=${GH_BUILD_TARGETS:-gatehouse} gh_build "$BUILD_DIR" Release >/dev/null
fi
[ -x "$BIN" ] || { gh_log "no executable $BIN (build it, or drop --no-build)"; exit 1; }

# -- stack ---------------------------------------------------------------------------

if [ -n "${BENCH_WORK:-}" ]; then WORK=$BENCH_WORK; mkdir -p "$WORK"; else
  WORK=$(mktemp -d /tmp/gatehouse-revocation.XXXXXX); fi
chmod 755 "$WORK"
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT
  gh_stop_all
  if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
    gh_log "work directory kept: $WORK (serve-1.log, serve-2.log, seed.log, pg/, nats/)"
  elif [ -z "${BENCH_WORK:-}" ]; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PG_PORT=$(gh_free_port)
gh_start_postgres "$WORK/pg" "$PG_PORT"
gh_create_database "$PG_PORT" gatehouse_revocation
gh_start_nats "$WORK/nats" -1 -1
DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/gatehouse_revocation"
gh_log "postgres :$PG_PORT, nats :$GH_NATS_PORT; work dir $WORK"

gh_make_secrets "$WORK/secrets"
gh_export_secret_vars "$WORK/secrets"
export GATEHOUSE_DATABASE_URL="$DATABASE_URL"
export GATEHOUSE_NATS_URL="nats://127.0.0.1:$GH_NATS_PORT"
export GATEHOUSE_LOG_FORMAT=json
"$BIN" migrate >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; gh_log "gatehouse migrate failed"; exit 1; }

gh_log "generating $AGENTS agents and $KEYS keys"
"${HELPER[@]}" seed --agents "$AGENTS" --keys "$KEYS" --out "$WORK/data" >&2
/usr/bin/time -f '%e' -o "$WORK/seed.time" "$BIN" seed "$WORK/data/seed.json" \
  >"$WORK/seed.log" 2>&1 || { tail -20 "$WORK/seed.log" >&2; gh_log "gatehouse seed failed"; exit 1; }
gh_log "first seed took $(cat "$WORK/seed.time") s"

# Two replicas on the same database and NATS.
BASES=() SERVER_PIDS=()
for n in 1 2; do
  port=$(gh_free_port)
  GATEHOUSE_HTTP_LISTEN="127.0.0.1:$port" "$BIN" serve \
    >"$WORK/serve-$n.log" 2>"$WORK/serve-$n.err" &
  SERVER_PIDS+=($!)
  gh_track_pid $!
  BASES+=("http://127.0.0.1:$port")
done
for n in 0 1; do
  if ! gh_wait_http "${BASES[n]}/-/readiness" 600; then
    tail -n 20 "$WORK/serve-$((n + 1)).err" "$WORK/serve-$((n + 1)).log" >&2 || true
    gh_log "replica $((n + 1)) did not become ready on ${BASES[n]}"
    exit 1
  fi
done
gh_log "replicas ready: ${BASES[*]}"

# -- trials --------------------------------------------------------------------------

gh_log "$TRIALS trials: gatehouse seed --prune ($MODE, $DOCUMENT document), polling agent_info every 5 ms"
RC=0
"${HELPER[@]}" run --bin "$BIN" --data "$WORK/data" --agents "$AGENTS" \
  --trials "$TRIALS" --mode "$MODE" --document "$DOCUMENT" --limit "$LIMIT" --timeout "$TIMEOUT" \
  "${BASES[@]}" || RC=$?

for n in 0 1; do
  if ! kill -0 "${SERVER_PIDS[n]}" 2>/dev/null; then
    gh_log "replica $((n + 1)) exited during the benchmark; see $WORK/serve-$((n + 1)).err"
    RC=1
  fi
done
# Full reloads per replica (each seed writes '*' to the change log).
for n in 1 2; do
  gh_log "replica $n: $(grep -c '"read model loaded"' "$WORK/serve-$n.log" || true) read model loads logged"
done
exit "$RC"
