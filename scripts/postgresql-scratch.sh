#!/usr/bin/env bash
# A throwaway PostgreSQL server from Debian's packages, for tests and benchmarks: its own data
# directory under DIR, its own port, listening on loopback and on a Unix socket in DIR.
#
#   scripts/postgresql-scratch.sh start DIR   prints a libpq connection string for database "scep"
#   scripts/postgresql-scratch.sh stop DIR
#
# Authentication is "trust" for the socket and md5 for TCP (user scep, password in DIR/password),
# so the tests can exercise a DSN file with a password. Run as root, the server runs as postgres.
set -euo pipefail
command=$1
dir=$(realpath -m "$2")
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$command" in
start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir/password"
    as_postgres "$bin/initdb" -D "$dir/data" -U scep --auth-local=trust --auth-host=md5 --pwfile="$dir/password" --no-sync >"$dir/initdb.log" 2>&1
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 20000))
        if as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null 2>&1; then
            break
        fi
    done
    echo "$port" > "$dir/port"
    as_postgres "$bin/createdb" -h "$dir" -p "$port" -U scep scep
    echo "host=$dir port=$port user=scep dbname=scep"
    ;;
stop)
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
