#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the test suite's PostgreSQL half.
#
#   url=$(scripts/test_postgres.sh start DIR)   # prints postgresql://... ; DIR holds it all
#   MODELWIRE_TEST_DATABASE_URL=$url make test
#   scripts/test_postgres.sh stop DIR
#
# Uses the machine's PostgreSQL; as root on Debian/Ubuntu without one, installs the
# `postgresql` package first. The server trusts loopback connections and skips fsync:
# it is for tests only.
set -euo pipefail

action=${1:?start or stop}
dir=${2:?a directory for the server}

as_owner() {
    # From /: the postgres user may not be allowed into the caller's folder.
    if [ "$(id -u)" = 0 ]; then (cd / && su postgres -s /bin/sh -c "$*"); else sh -c "$*"; fi
}

find_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

case "$action" in
start)
    bin=$(find_bin)
    if [ -z "$bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing PostgreSQL (Debian package postgresql)..." >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        bin=$(find_bin)
    fi
    if [ -z "$bin" ]; then
        echo "no PostgreSQL server on this machine" >&2
        exit 1
    fi
    mkdir -p "$dir"
    # As root the server runs as the postgres user, which must be able to reach DIR.
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "'$bin/initdb' -D '$dir/data' -U modelwire -A trust --no-sync" >/dev/null
    as_owner "'$bin/pg_ctl' -D '$dir/data' -l '$dir/log' -w -o \"-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c fsync=off -c max_connections=200\" start" >/dev/null
    echo "postgresql://modelwire@127.0.0.1:$port/postgres"
    ;;
stop)
    bin=$(find_bin)
    as_owner "'$bin/pg_ctl' -D '$dir/data' -m fast -w stop" >/dev/null
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
