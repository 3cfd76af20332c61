#!/usr/bin/env bash
# Contract test: schemathesis (from PyPI) against the live system through the gateway, driven
# by the merged public document the gateway serves. The system runs on free ports with its own
# database (dropped afterwards) and its own Redis key prefix; schemathesis runs anonymously,
# with a user's token and with an admin's token. It fails on any 5xx and on any answer the
# document does not allow (status, content type, headers, body schema).
#
#   CONTRACT_EXAMPLES  cases per operation and phase (default 25)
#   CONTRACT_SEED      generation seed (default 1, so CI runs are repeatable)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
examples=${CONTRACT_EXAMPLES:-25}
seed=${CONTRACT_SEED:-1}
out=$root/target/contract
venv=$root/target/contract-venv
mkdir -p "$out"

# schemathesis in a virtualenv of its own, pinned.
scripts/pyvenv.sh "$venv" "schemathesis==$SCHEMATHESIS_VERSION"

cargo build -q --locked --bin shop-dev

read -r gw user catalog order payment < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
db="shop_contract_$$"
prefix="contract-$$:"
admin_url="postgres://postgres:postgres@127.0.0.1:5432"
pid=""

cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  if [ -n "${CONTRACT_KEEP:-}" ]; then
    echo "contract: kept database $db and Redis prefix $prefix" >&2
    return
  fi
  psql -q "$admin_url/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -h 127.0.0.1 --scan --pattern "${prefix}*" 2>/dev/null \
    | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql -q "$admin_url/postgres" -c "CREATE DATABASE $db" >/dev/null
psql -q "$admin_url/$db" -f deploy/bootstrap.sql >/dev/null

export APP_ENV=development RUST_LOG=warn LOG_FORMAT=json
export DATABASE_URL="$admin_url/$db" REDIS_KEY_PREFIX="$prefix"
export GATEWAY_ADDR="127.0.0.1:$gw" USER_ADDR="127.0.0.1:$user" CATALOG_ADDR="127.0.0.1:$catalog"
export ORDER_ADDR="127.0.0.1:$order" PAYMENT_ADDR="127.0.0.1:$payment"
export USER_SERVICE_URL="http://$USER_ADDR" CATALOG_SERVICE_URL="http://$CATALOG_ADDR"
export ORDER_SERVICE_URL="http://$ORDER_ADDR" PAYMENT_SERVICE_URL="http://$PAYMENT_ADDR"
export ADMIN_EMAIL=admin@contract.test ADMIN_PASSWORD=contract-admin-password
export BCRYPT_COST=4 PAYMENT_DURATION=10 DATABASE_POOL_SIZE=5
# Limits stay on, far above what the run sends: every answer still carries RateLimit-*.
export THROTTLER_LIMIT=10000000 THROTTLER_AUTH_LIMIT=10000000

target/debug/shop-dev seed >"$out/seed.log" 2>&1
target/debug/shop-dev >"$out/shop-dev.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$gw"

# Ready, then one user's and one admin's access tokens.
read -r user_token admin_token < <(BASE=$base python3 - <<'PY'
import json, os, time, urllib.request, urllib.error
base = os.environ["BASE"]
deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(base + "/readyz", timeout=2)
        break
    except Exception:
        if time.time() > deadline:
            raise SystemExit("the system did not become ready")
        time.sleep(0.3)

def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)

user = {"email": "contract-user@contract.test", "password": "contract-user-password"}
post("/register", {**user, "name": "Contract User"})
tokens = [post("/login", user)["accessToken"],
          post("/login", {"email": os.environ["ADMIN_EMAIL"],
                          "password": os.environ["ADMIN_PASSWORD"]})["accessToken"]]
print(" ".join(tokens))
PY
)

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
failed=0
run() {
  local name=$1; shift
  echo "--- schemathesis: $name"
  # Access tokens live 15 minutes; each pass fits well within that.
  local status=0
  "$venv/bin/schemathesis" run "$base/api/openapi.json" \
    --checks "$checks" --phases examples,coverage,fuzzing \
    --max-examples "$examples" --seed "$seed" --workers 2 \
    --request-timeout 15 --no-color --suppress-health-check all \
    --report junit --report-junit-path "$out/$name.xml" \
    "$@" >"$out/$name.log" 2>&1 || status=$?
  grep -v '^\s*$' "$out/$name.log" | sed -n '/^=* SUMMARY/,$p'
  if [ "$status" != 0 ]; then
    echo "contract: the $name pass found problems (full output: $out/$name.log)" >&2
    failed=1
  fi
}
token_works() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$base/me")" = 200 ]
}
run anonymous
for role in user admin; do
  token_var="${role}_token"
  token=${!token_var}
  token_works "$token" || { echo "contract: the $role token no longer works before its pass" >&2; failed=1; }
  # Logging out would end the session the pass runs with.
  run "$role" -H "Authorization: Bearer $token" --exclude-path /logout
  # Nothing else a client can send may end it: a pass that lost its session tested little.
  token_works "$token" || { echo "contract: the $role pass ended its own session" >&2; failed=1; }
done

# Errors the system logged, except actix's own note of a request it could not parse (the
# fuzzer sends malformed headers on purpose; the client got a 400).
errors=$(grep '"level":"ERROR"' "$out/shop-dev.log" | grep -v '"target":"actix_http::h1::dispatcher"' || true)
if [ -n "$errors" ]; then
  echo "contract: the system logged errors (see $out/shop-dev.log)" >&2
  echo "$errors" | head -n 5 >&2
  failed=1
fi
exit $failed
