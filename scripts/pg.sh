#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for development, tests and the native local stack.
#
#   scripts/pg.sh start   # initialise (first time) and start; prints the admin URL
#   scripts/pg.sh stop
#   scripts/pg.sh url     # the admin URL (database "postgres")
#   scripts/pg.sh status  # exit 0 while it runs
#
# Data lives in .local/pg (git-ignored); it listens on 127.0.0.1:${FRAUDCTL_PG_PORT:-55432} with
# trust authentication for loopback only: a throwaway cluster, never a production database.
# Memory and WAL settings give bulk loads room (BENCHMARKS.md); docker-compose.yml uses the same.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${FRAUDCTL_PG_PORT:-55432}
data="$root/.local/pg/data"
log="$root/.local/pg/postgres.log"
bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

if [[ ! -x "$bindir/pg_ctl" ]]; then
    echo "pg.sh: no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin)." >&2
    echo "pg.sh: install them with 'apt-get install postgresql' or set PG_BINDIR." >&2
    exit 1
fi

# PostgreSQL refuses to run as root: run its programs as the 'postgres' user then.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

url() { echo "postgres://postgres@127.0.0.1:$port/postgres"; }

start() {
    mkdir -p "$root/.local/pg"
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$root/.local/pg"; fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >/dev/null
    fi
    if as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        url
        return
    fi
    as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$root/.local/pg -c max_connections=200 -c shared_buffers=1GB -c max_wal_size=8GB -c wal_buffers=64MB -c fsync=${FRAUDCTL_PG_FSYNC:-on}" \
        start >/dev/null || { echo "pg.sh: PostgreSQL failed to start; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
    url
}

stop() {
    if [[ -f "$data/PG_VERSION" ]]; then
        as_owner "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    status) [[ -f "$data/PG_VERSION" ]] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null ;;
    *) echo "usage: scripts/pg.sh start|stop|url|status" >&2; exit 2 ;;
esac
