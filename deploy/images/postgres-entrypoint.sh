#!/bin/sh
# The public postgres image's contract, in short: on an empty PGDATA, initdb with
# POSTGRES_USER and POSTGRES_PASSWORD (password authentication from the network), create
# POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql against it on a server that listens on
# its socket only; then `postgres ARGS` listens on every address.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"

# The socket directory: /var/run/postgresql if it can be written (a tmpfs), else /tmp.
PGHOST=/var/run/postgresql
[ -d "$PGHOST" ] && [ -w "$PGHOST" ] || PGHOST=/tmp
export PGHOST

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl --silent --wait -o "-c listen_addresses='' -c unix_socket_directories=$PGHOST" start
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for script in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$script" ] || continue
    echo "running $script"
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$script"
  done
  pg_ctl --silent --wait -m fast stop
fi

if [ "${1:-}" = postgres ]; then
  shift
  exec postgres -c listen_addresses='*' -c unix_socket_directories="$PGHOST" "$@"
fi
exec "$@"
