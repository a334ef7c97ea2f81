#!/usr/bin/env bash
# Starts, once, a throwaway PostgreSQL server on 127.0.0.1 for the tests and prints its URL.
# Idempotent: a server already running from an earlier call is reused. Installs Debian's
# postgresql package if the machine has no server binaries.
#   scripts/setup-postgres.sh          start (or reuse); print the URL
#   scripts/setup-postgres.sh stop     stop it
set -euo pipefail
port="${FERROFLOW_PG_PORT:-54329}"
# Under /tmp: the server runs as the unprivileged postgres user, which must reach it.
dir="${FERROFLOW_PG_DIR:-/tmp/ferroflow-postgres-$port}"

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ]; then
  echo "installing PostgreSQL from Debian's packages..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = "stop" ]; then
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  fi
  exit 0
fi

mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
if [ ! -f "$dir/data/PG_VERSION" ]; then
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
fi
if ! as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null \
    || { echo "PostgreSQL did not start; the end of its log:" >&2; tail -n 30 "$dir/server.log" >&2; exit 1; }
fi
echo "postgres://postgres@127.0.0.1:$port/postgres"
