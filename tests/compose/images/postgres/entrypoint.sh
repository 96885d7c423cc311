#!/bin/bash
# Entry point of the test-only postgres:15 stand-in. Behaves like the
# official image's for the parts compose.yaml relies on:
#  - POSTGRES_USER (superuser), POSTGRES_DB, POSTGRES_PASSWORD or
#    POSTGRES_PASSWORD_FILE, read only when $PGDATA is still empty;
#  - TCP connections need the password (scram-sha-256), the socket does not;
#  - while initialising, the server listens on the socket only, so a TCP
#    pg_isready stays unhealthy until the real server runs;
#  - the server runs as "postgres" and is PID 1's exec target, so SIGINT or
#    SIGTERM from `stop` shuts it down cleanly.
set -euo pipefail

log() { printf 'stand-in entrypoint: %s\n' "$*" >&2; }

if [ "${1:-}" != "postgres" ]; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"

if [ "$(id -u)" = 0 ]; then
  # A fresh named volume is owned by root; hand it (and only what is not
  # already the server's) to postgres, then drop privileges for good.
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    password=$(cat "$POSTGRES_PASSWORD_FILE")
  else
    password=${POSTGRES_PASSWORD:-}
  fi
  if [ -z "$password" ]; then
    log "POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set on first start"
    exit 1
  fi
  log "initialising $PGDATA (user $user, database $db)"
  initdb -D "$PGDATA" -U "$user" --pwfile=<(printf '%s\n' "$password") \
    -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  # Every TCP peer (the compose network is not 127.0.0.1) needs the password.
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

  # Socket-only server for the set-up statements.
  pg_ctl -D "$PGDATA" -w -t 60 -o "-c listen_addresses=''" start
  if [ "$db" != postgres ]; then
    # Through stdin: psql quotes :"db" there, not in -c.
    printf 'CREATE DATABASE :"db";\n' \
      | psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -q -v db="$db"
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  log "initialised; starting the server"
fi

exec "$@"
