#!/usr/bin/env bash
# Workhorse's and Pages' busiest calls against /-/liveness in the same run
# (issue "Workhorse and Pages"): the git-over-HTTP pre-authorization of a
# clone with a personal access token, the same anonymously on a public
# project, and the Pages lookup of a namespace domain. A thin wrapper of
# bench/http.sh, which validates every run against the server's access log;
# extra options (-c, -d, --no-build, ...) pass through.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
basic=$(printf 'alice:glpat-benchbenchbenchbench' | base64 -w0)
exec "$here/http.sh" --seed "$here/workhorse-seed.json" \
  --route 'GET:/acme/widgets.git/info/refs?service=git-upload-pack' \
    --caller workhorse --header 'Gitlab-Workhorse: v18.6.0' \
    --header "Authorization: Basic $basic" \
  --route 'GET:/acme/docs.git/info/refs?service=git-upload-pack' \
    --caller workhorse --header 'Gitlab-Workhorse: v18.6.0' \
  --route 'GET:/api/v4/internal/pages?host=acme.pages.example.com' \
    --caller pages \
  "$@"
