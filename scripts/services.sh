#!/usr/bin/env bash
# Makes sure Postgres and Redis answer on loopback, the `shop` database exists with the
# bootstrap extensions, and the `postgresql` and `redis-server` programs are installed (tests
# start private Redis servers). Uses what answers; else starts what is installed; else, on
# Debian as root, installs with apt-get; else says exactly what to do.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres PG_PASSWORD=postgres PG_DB=shop
REDIS_HOST=127.0.0.1 REDIS_PORT=6379
here=$(cd "$(dirname "$0")/.." && pwd)

say() { printf '==> %s\n' "$*"; }
fail() {
  cat >&2 <<MSG
error: $*

Start Postgres and Redis yourself, either:
  * with Docker:  docker compose -f docker-compose.yml -f docker-compose.dev.yml up -d postgres redis
  * or on Debian/Ubuntu as root:  apt-get install -y postgresql redis-server
    (then run 'make services' again)
Postgres must accept ${PG_USER}/${PG_PASSWORD} on ${PG_HOST}:${PG_PORT}; Redis must answer on ${REDIS_HOST}:${REDIS_PORT}.
MSG
  exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

redis_answers() {
  # Plain bash: no client needed.
  (exec 3<>"/dev/tcp/${REDIS_HOST}/${REDIS_PORT}" && printf 'PING\r\n' >&3 &&
    IFS= read -r -t 2 line <&3 && [[ "$line" == +PONG* ]]) 2>/dev/null
}
pg_answers() {
  (exec 3<>"/dev/tcp/${PG_HOST}/${PG_PORT}") 2>/dev/null
}
wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do "$check" && return 0; sleep 0.5; done
  fail "$what did not come up"
}

# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"

# Programs: the server binaries, also needed by the tests (private Redis servers).
missing=()
if [ -z "$(pg_bin)" ] || ! have psql; then missing+=(postgresql postgresql-client); fi
have redis-server || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  if pg_answers && redis_answers && have redis-server && have psql; then
    :
  elif is_root && have apt-get; then
    apt_install "${missing[@]}"
  else
    fail "${missing[*]} not installed, and this is not Debian as root"
  fi
fi

# Postgres.
if pg_answers; then
  say "postgres answers on ${PG_HOST}:${PG_PORT}"
else
  if have pg_ctlcluster && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting postgres cluster ${version}/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  elif have pg_createcluster && is_root; then
    version=$(basename "$(dirname "$(pg_bin)")")
    say "creating postgres cluster ${version}/main"
    pg_createcluster "$version" main --start
  else
    fail "postgres is installed but no cluster could be started"
  fi
  wait_for postgres pg_answers
fi

# Redis.
if redis_answers; then
  say "redis answers on ${REDIS_HOST}:${REDIS_PORT}"
else
  say "starting redis-server on ${REDIS_HOST}:${REDIS_PORT}"
  mkdir -p /tmp/shop-redis
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /tmp/shop-redis --logfile /tmp/shop-redis/redis.log
  wait_for redis redis_answers
fi

# The password the default DATABASE_URL uses (Debian's Postgres asks for one over TCP).
export PGPASSWORD=$PG_PASSWORD
psql_admin() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1 -qAt "$@"; }
if ! psql_admin -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
  if is_root && have runuser; then
    say "setting the password of role ${PG_USER} for TCP logins"
    runuser -u postgres -- psql -qc "ALTER ROLE ${PG_USER} WITH PASSWORD '${PG_PASSWORD}'" >/dev/null
  fi
  psql_admin -d postgres -c 'SELECT 1' >/dev/null || fail "cannot log in to postgres as ${PG_USER}"
fi

if [ "$(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'")" != 1 ]; then
  say "creating database ${PG_DB}"
  psql_admin -d postgres -c "CREATE DATABASE ${PG_DB}"
fi
psql_admin -d "$PG_DB" -f "$here/deploy/bootstrap.sql" >/dev/null
say "postgres database '${PG_DB}' and redis are ready"
