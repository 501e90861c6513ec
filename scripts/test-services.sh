#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL and Redis on loopback for the test suite.
#   scripts/test-services.sh start   -> writes .test-services/env (TACIT_TEST_POSTGRES_URL, TACIT_TEST_REDIS_URL)
#   scripts/test-services.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="$PWD/.test-services"
PG_PORT="${TACIT_TEST_PG_PORT:-55432}"
REDIS_PORT="${TACIT_TEST_REDIS_PORT:-56379}"
# PostgreSQL's files live outside the checkout: the postgres user must reach them even when the
# checkout sits in a private (0700) folder.
PGDIR="/tmp/tacit-test-pg-$PG_PORT"

pg_bin() {
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return; }; done
  dirname "$(command -v pg_ctl)"
}

as_pg() {
  # initdb and postgres refuse to run as root: run them as the postgres user when we are root.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    su postgres -s /bin/bash -c "$*"
  else
    bash -c "$*"
  fi
}

start() {
  mkdir -p "$DIR"
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
  fi
  local bin; bin="$(pg_bin)"
  rm -rf "$PGDIR"; mkdir -p "$PGDIR/data" "$PGDIR/sock"; chmod 755 "$PGDIR"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown -R postgres "$PGDIR"
  fi
  as_pg "'$bin/initdb' -D '$PGDIR/data' -U tacit --auth=trust -E UTF8 >/dev/null"
  as_pg "'$bin/pg_ctl' -D '$PGDIR/data' -l '$PGDIR/log' -w -o \"-h 127.0.0.1 -p $PG_PORT -k $PGDIR/sock -c fsync=off -c max_connections=200\" start >/dev/null"
  "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U tacit tacit_test
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
    --dir "$DIR" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  cat > "$DIR/env" <<ENV
export TACIT_TEST_POSTGRES_URL=postgresql+psycopg://tacit@127.0.0.1:$PG_PORT/tacit_test
export TACIT_TEST_PG_ADMIN_URL=postgresql+psycopg://tacit@127.0.0.1:$PG_PORT/postgres
export TACIT_TEST_PG_DATA=$PGDIR/data
export TACIT_TEST_PG_BIN=$bin
export TACIT_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export TACIT_TEST_REDIS_PORT=$REDIS_PORT
ENV
  echo "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT" >&2
}

stop() {
  local bin; bin="$(pg_bin)"
  if [ -d "$PGDIR/data" ]; then as_pg "'$bin/pg_ctl' -D '$PGDIR/data' -m fast -w stop >/dev/null 2>&1" || true; fi
  rm -rf "$PGDIR"
  if [ -f "$DIR/redis.pid" ]; then kill "$(cat "$DIR/redis.pid")" 2>/dev/null || true; fi
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$DIR"
}

case "${1:-}" in
  start) stop; start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
