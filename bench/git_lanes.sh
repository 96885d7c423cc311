#!/usr/bin/env bash
# bench/git_lanes.sh [--changes N] [--heavy N] [--seconds S] [--no-build]
#
# Issue 9's "one git check holds back the rest": times an ordinary push check
# (a developer's /allowed for an unprotected branch, one git question) alone,
# then while N (default 4) of the heaviest /allowed calls run over and over:
# an admin's push of N (default 10000) protected-branch updates,
#   unknown:  of objects the repository does not have (the issue's case);
#   known:    of real commits, each needing its own `git merge-base`.
# Prints, per scenario, the ordinary check's p50/p99/max and the heavy calls'
# answers and durations. Exit status 0 when every ordinary check was answered
# 200 within 0.5 s and every heavy call got GitLab's answer (401 for unknown
# objects, 200 or 503 "Push operation timed out" for known ones).
#
# Starts its own PostgreSQL, nats-server and `gatehouse serve` on free
# loopback ports in a throwaway directory; stops them on exit.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/lib.sh"

CHANGES=10000 HEAVY=4 SECONDS_EACH=20 DO_BUILD=1
while [ $# -gt 0 ]; do
  case $1 in
    --changes) CHANGES=$2; shift 2 ;;
    --heavy) HEAVY=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --no-build) DO_BUILD=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench/git_lanes.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for v in "$CHANGES" "$HEAVY" "$SECONDS_EACH"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench/git_lanes.sh: counts must be positive integers" >&2; exit 2; }
done

BUILD_DIR=${BUILD_DIR:-$GH_ROOT/build}
gh_install_packages
if [ "$DO_BUILD" -eq 1 ]; then
  GH_BUILD_TARGETS=gatehouse gh_build "$BUILD_DIR" Release
fi
BIN=$BUILD_DIR/gatehouse
[ -x "$BIN" ] || { gh_log "no executable $BIN"; exit 1; }

WORK=$(mktemp -d /tmp/gatehouse-lanes.XXXXXX)
chmod 755 "$WORK"
RESULT=1
cleanup() {
  trap - EXIT
  gh_stop_all
  if [ "$RESULT" -eq 0 ]; then rm -rf "$WORK"; else gh_log "work directory kept: $WORK"; fi
  exit "$RESULT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PG_PORT=$(gh_free_port)
HTTP_PORT=$(gh_free_port)
gh_start_postgres "$WORK/pg" "$PG_PORT"
gh_create_database "$PG_PORT" gatehouse_lanes
gh_start_nats "$WORK/nats" -1 -1
gh_make_secrets "$WORK/secrets"
gh_export_secret_vars "$WORK/secrets"
export GATEHOUSE_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/gatehouse_lanes"
export GATEHOUSE_NATS_URL="nats://127.0.0.1:$GH_NATS_PORT"
export GATEHOUSE_HTTP_LISTEN="127.0.0.1:$HTTP_PORT"

# The repository of acme/widgets: a line of CHANGES + 1 commits, made in one
# fast-import; branch main at the first.
python3 - "$GH_ROOT/bench/allowed-seed.json" "$WORK" "$CHANGES" <<'PY'
import json, os, subprocess, sys
seed_in, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
doc = json.load(open(seed_in))
storage = os.path.join(work, "repositories")
doc["storages"][0]["path"] = storage
doc["protected_branches"].append({"id": 2, "project_id": 10, "name": "b*",
                                  "push_access_level": 40, "merge_access_level": 40,
                                  "allow_force_push": False})
project = doc["projects"][0]
repo = os.path.join(storage, project["disk_path"] + ".git")
os.makedirs(repo)
env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")
subprocess.run(["git", "init", "-q", "--bare", repo], check=True, env=env)
stream = []
for i in range(n + 1):
    msg = f"commit {i}\n".encode()
    stream.append(b"commit refs/heads/main\n")
    stream.append(f"mark :{i + 1}\n".encode())
    stream.append(f"committer Bench <bench@example.com> {1767261600 + i} +0000\n".encode())
    stream.append(f"data {len(msg)}\n".encode() + msg)
    if i == 0:
        stream.append(b"M 644 inline a.txt\ndata 2\n0\n")
    stream.append(b"\n")
for i in range(n + 1):
    stream.append(f"get-mark :{i + 1}\n".encode())
stream.append(b"reset refs/heads/main\nfrom :1\n\n")
out = subprocess.run(["git", "--git-dir", repo, "fast-import", "--quiet",
                      "--cat-blob-fd=1"], input=b"".join(stream),
                     stdout=subprocess.PIPE, check=True, env=env).stdout
ids = out.decode().split()
assert len(ids) == n + 1, len(ids)
with open(os.path.join(work, "commits.txt"), "w") as f:
    f.write("\n".join(ids) + "\n")
json.dump(doc, open(os.path.join(work, "seed.json"), "w"))
PY

"$BIN" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; exit 1; }
"$BIN" seed "$WORK/seed.json" >"$WORK/seed.log" 2>&1 || { cat "$WORK/seed.log" >&2; exit 1; }
"$BIN" serve >"$WORK/gatehouse.log" 2>"$WORK/gatehouse.err" &
SERVER_PID=$!
gh_track_pid "$SERVER_PID"
gh_wait_http "http://127.0.0.1:$HTTP_PORT/-/readiness" 400 \
  || { gh_log "gatehouse did not become ready"; cat "$WORK/gatehouse.err" >&2; exit 1; }

set +e
python3 "$GH_ROOT/bench/git_lanes.py" --port "$HTTP_PORT" --binary "$BIN" \
  --commits "$WORK/commits.txt" --heavy "$HEAVY" --seconds "$SECONDS_EACH"
RESULT=$?
set -e
kill -0 "$SERVER_PID" 2>/dev/null || { gh_log "gatehouse serve died"; RESULT=1; }
