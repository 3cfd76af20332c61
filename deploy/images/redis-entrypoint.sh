#!/bin/sh
# `redis-server ARGS` without protected mode, as the public image runs it; anything else as is.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
