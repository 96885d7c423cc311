#!/usr/bin/env bash
# Zoekt heartbeats against /-/liveness in the same run (issue 13, indexer
# coordination): one node of a seeded namespace with a backlog of pending
# index tasks (--tasks, default 10000) calls
# POST /api/v4/internal/search/zoekt/:uuid/heartbeat with the Shell JWT, as
# the indexer does; every answer takes and renders a batch of 20 tasks (a
# taken task stays due until its callback, so the backlog never drains).
# Starts its own PostgreSQL, migrates, seeds and inserts the backlog, then
# measures through bench/http.sh (which validates every run against the
# server's access log); other options (-c, -d, --no-build, ...) pass through.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/lib.sh"
here="$GH_ROOT/bench"

TASKS=10000
PROJECTS=1000
pass=()
no_build=0
while [ $# -gt 0 ]; do
  case $1 in
    --tasks)
      [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "bench/zoekt.sh: --tasks needs a number" >&2; exit 2; }
      TASKS=$2; shift 2 ;;
    -h|--help)
      echo "Usage: bench/zoekt.sh [--tasks N] [bench/http.sh options]"; exit 0 ;;
    --no-build) no_build=1; pass+=("$1"); shift ;;
    *) pass+=("$1"); shift ;;
  esac
done

BUILD_DIR=${BUILD_DIR:-$GH_ROOT/build}
BIN=$BUILD_DIR/gatehouse
if [ "$no_build" -eq 0 ]; then
  gh_log "building $BUILD_DIR (Release)"
  gh_build "$BUILD_DIR" Release >/dev/null
  pass+=(--no-build)
fi
[ -x "$BIN" ] || { gh_log "no executable $BIN (build it, or drop --no-build)"; exit 1; }

WORK=$(mktemp -d /tmp/gatehouse-zoekt-bench.XXXXXX)
chmod 755 "$WORK"
trap 'gh_stop_all; rm -rf "$WORK"' EXIT
PG_PORT=$(gh_free_port)
gh_start_postgres "$WORK/pg" "$PG_PORT"
gh_create_database "$PG_PORT" gatehouse_zoekt_bench
DB="postgresql://postgres@127.0.0.1:$PG_PORT/gatehouse_zoekt_bench"
UUID=3869fe21-36d1-4612-9676-0b783ef2dcd7

python3 - "$WORK/seed.json" "$PROJECTS" "$UUID" <<'PY'
import json, sys
path, projects, uuid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
doc = {
  "storages": [{"name": "default", "gitaly_address": "unix:/var/opt/gitlab/gitaly/gitaly.socket",
                "gitaly_token": "secret"}],
  "namespaces": [{"id": 1, "path": "indexed", "name": "Indexed"}],
  "projects": [{"id": 1000 + i, "namespace_id": 1, "path": "p%d" % i, "name": "p%d" % i,
                "visibility": "private", "default_branch": "main", "storage": "default",
                "disk_path": "@hashed/be/nc/bench-%d" % i} for i in range(projects)],
  "zoekt_enabled_namespaces": [{"namespace_id": 1}],
  "zoekt_nodes": [{"id": 1, "uuid": uuid, "name": "zoekt-bench", "url": "http://127.0.0.1:6080"}],
}
json.dump(doc, open(path, "w"))
PY
GATEHOUSE_DATABASE_URL=$DB "$BIN" migrate >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }
GATEHOUSE_DATABASE_URL=$DB "$BIN" seed "$WORK/seed.json" >"$WORK/seed.log" 2>&1 \
  || { cat "$WORK/seed.log" >&2; exit 1; }
psql "$DB" -v ON_ERROR_STOP=1 -q <<SQL
INSERT INTO zoekt_repositories (project_id, node_id, state)
  SELECT 1000 + g, 1, 'pending' FROM generate_series(0, $PROJECTS - 1) g
  ON CONFLICT (project_id) DO NOTHING;
INSERT INTO zoekt_tasks (node_id, project_id, task_type, state)
  SELECT 1, 1000 + (g % $PROJECTS), 'index_repo', 'pending'
  FROM generate_series(1, $TASKS) g;
SQL
pending=$(psql "$DB" -qtAc "SELECT count(*) FROM zoekt_tasks WHERE state IN ('pending','processing')")
gh_log "node $UUID with $pending pending index tasks over $PROJECTS projects"

cat >"$WORK/heartbeat.json" <<JSON
{"node.url":"http://127.0.0.1:6080","node.name":"zoekt-bench","disk.all":1099511627776,"disk.used":109951162777,"disk.indexed":0,"node.schema_version":2531,"node.concurrency":20}
JSON

status=0
"$here/http.sh" --database-url "$DB" \
  --route "POST:/api/v4/internal/search/zoekt/$UUID/heartbeat" \
    --body "$WORK/heartbeat.json" \
  "${pass[@]}" || status=$?
left=$(psql "$DB" -qtAc "SELECT count(*) FROM zoekt_tasks WHERE state IN ('pending','processing')")
gh_log "after the runs: $left index tasks still due (the backlog the heartbeats met)"
exit "$status"
