#!/usr/bin/env bash
# KAS's busiest calls against /-/liveness in the same run (issue 12, the
# agent registry): `agent_info`, which agentk's every connection asks for
# through KAS, and `project_info` of the agent's own configuration project.
# Both carry a KAS JWT (`gatehouse jwt kas`: iss gitlab-kas, aud gitlab) and
# the agent's token in Gitlab-Agentk-Api-Request, the header newest KAS
# sends. A thin wrapper of bench/http.sh, which validates every run against
# the server's access log; extra options (-c, -d, --no-build, ...) pass
# through. A KAS JWT lives 30 s, so -d is at most 25s.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The token of agent 1 (project 10) in agents-seed.json.
token=glagent-benchbenchbenchbenchbenchbenchbenchbench
exec "$here/http.sh" --seed "$here/agents-seed.json" \
  --route 'GET:/api/v4/internal/agents/agentk/agent_info' \
    --caller kas --header "Gitlab-Agentk-Api-Request: $token" \
  --route 'GET:/api/v4/internal/kubernetes/project_info?id=10' \
    --caller kas --header "Gitlab-Agentk-Api-Request: $token" \
  "$@"
