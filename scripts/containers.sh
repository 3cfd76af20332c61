#!/usr/bin/env bash
# `make containers` (a CI stage): the compose stack as ops run it, with podman. The images are
# built for this run (scripts/images.sh, tagged ci-<pid>), docker-compose.yml is started by
# Debian's docker-compose against podman's API socket — Postgres, both Redis, the four
# migration steps, the services and the gateway, each after its dependencies are healthy —
# and shop-smoke runs through the published gateway port: register, log in, a product, an
# order paid as seen on the socket, the stock and the invariants in the database; the order
# mail must reach the compose file's mail server. Then every
# service's /metrics is scraped and the Grafana dashboard and alert rules must name only
# series that are exported. The stage fails on a container that restarted, was unhealthy at
# any health check of the run, runs as root or has a writable root filesystem. Everything of
# the run is removed at the end: containers, volumes, network and its images.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib/podman.sh
. scripts/lib/podman.sh
podman_ready
need_command docker-compose docker-compose
need_command curl curl

project="shopci$$"
tag="ci-$$"
out=$root/target/containers
rm -rf "$out" && mkdir -p "$out/metrics"
socket="$out/podman.sock"
service_pid=""
health_pid=""
compose=(docker-compose --project-name "$project" -f docker-compose.yml)
services=(user catalog order payment gateway)
binaries=(gateway user-service catalog-service order-service payment-service)

export SHOP_IMAGE_TAG=$tag POSTGRES_IMAGE=shop/postgres-debian:15 REDIS_IMAGE=shop/redis-debian:7 \
  MAIL_IMAGE=shop/mail-debian:bookworm
GATEWAY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export GATEWAY_PORT DOCKER_HOST="unix://$socket" COMPOSE_HTTP_TIMEOUT=300
# The compose file's throwaway defaults, which the smoke run logs in with.
export ADMIN_EMAIL=admin@shop.example ADMIN_PASSWORD=compose-admin-password
postgres_password=compose-postgres-password

cleanup() {
  local status=$?
  if [ -n "$service_pid" ]; then
    "${compose[@]}" logs --no-color >"$out/compose.log" 2>&1 || true
    "${compose[@]}" down --volumes --remove-orphans --timeout 10 >>"$out/down.log" 2>&1 || true
  fi
  [ -z "$health_pid" ] || kill "$health_pid" 2>/dev/null || true
  [ -z "$service_pid" ] || kill "$service_pid" 2>/dev/null || true
  for binary in "${binaries[@]}"; do podman rmi --force "shop/$binary:$tag" >/dev/null 2>&1 || true; done
  # The run's untagged build stages (the prebuilt binaries' layers).
  podman image prune --force >/dev/null 2>&1 || true
  left=$(podman ps -aq --filter "label=com.docker.compose.project=$project"; \
    podman volume ls -q --filter "label=com.docker.compose.project=$project"; \
    podman network ls -q --filter "label=com.docker.compose.project=$project")
  if [ -n "$left" ]; then
    echo "containers: left behind: $left" >&2
    status=1
  fi
  [ $status = 0 ] || echo "containers: FAILED; logs in $out/compose.log" >&2
  exit $status
}
trap cleanup EXIT
trap 'exit 143' INT TERM

IMAGE_TAG=$tag scripts/images.sh
cargo build -q --locked -p shop-proof --bin shop-smoke

podman system service --time=0 "unix://$socket" >"$out/podman-service.log" 2>&1 &
service_pid=$!
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
health_pid=$(podman_health_loop "$project" "$out/health.log")

echo "containers: up (project $project, gateway on 127.0.0.1:$GATEWAY_PORT)"
start=$(date +%s%N)
seconds_up() { echo $(( ($(date +%s%N) - start) / 1000000000 )); }
say_up() {
  local ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf 'containers: up to %s in %d.%03ds\n' "$1" $((ms / 1000)) $((ms % 1000))
}
"${compose[@]}" up --detach --no-build >"$out/up.log" 2>&1 || { cat "$out/up.log" >&2; exit 1; }
container() { echo "${project}_$1_1"; }
until [ "$(podman inspect -f '{{.State.Health.Status}}' "$(container gateway)")" = healthy ]; do
  if (( $(seconds_up) > 300 )); then
    echo "containers: the gateway is not healthy after 300s" >&2
    exit 1
  fi
  sleep 0.5
done
say_up "a healthy gateway"

ip() { podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container "$1")"; }

# The image's HEALTHCHECK is liveness (/healthz); before the smoke run every service must
# also be ready (/readyz: its database and Redis answer), as a load balancer would wait.
declare -A ports=([user]=8081 [catalog]=8082 [order]=8083 [payment]=8084 [gateway]=8080)
for service in "${services[@]}"; do
  until curl -fsS -o /dev/null --max-time 5 "http://$(ip "$service"):${ports[$service]}/readyz"; do
    if (( $(seconds_up) > 300 )); then
      echo "containers: $service is not ready after 300s" >&2
      exit 1
    fi
    sleep 0.5
  done
done
say_up "every service ready"
target/debug/shop-smoke "http://127.0.0.1:$GATEWAY_PORT" \
  "postgres://shop:$postgres_password@$(ip postgres):5432/shop"

# The user service mailed the order's owner through the compose file's mail server.
until podman logs "$(container mail)" 2>&1 | grep -q '^Subject: Your order is paid'; do
  if (( $(seconds_up) > 420 )); then
    echo "containers: no order mail reached the mail server" >&2
    exit 1
  fi
  sleep 0.5
done
echo "containers: mail server received: $(podman logs "$(container mail)" 2>&1 \
  | sed -n 's/^Subject: //p' | sort | uniq -c | sed 's/^ *//' | paste -sd, -)"

for service in "${services[@]}"; do
  curl -fsS "http://$(ip "$service"):9464/metrics" >"$out/metrics/$service.prom"
done
scripts/pyvenv.sh target/containers-venv pyyaml==6.0.3
target/containers-venv/bin/python scripts/lib/series_check.py deploy/grafana/shop.json \
  deploy/prometheus/alerts.yml -- "$out"/metrics/*.prom

# Every container as it should be: no restart, healthy, not root, a read-only root filesystem.
bad=0
for service in postgres redis redis-cache mail "${services[@]}"; do
  read -r restarts health user readonly < <(podman inspect -f \
    '{{.RestartCount}} {{.State.Health.Status}} {{.Config.User}}. {{.HostConfig.ReadonlyRootfs}}' \
    "$(container "$service")")
  echo "containers: $service restarts=$restarts health=$health user=${user%.} read-only=$readonly"
  if [ "$restarts" != 0 ] || [ "$health" != healthy ] || [ "${user%.}" = "" ] \
    || [ "${user%%:*}" = root ] || [ "${user%%:*}" = 0 ] || [ "$readonly" != true ]; then
    bad=1
  fi
done
for step in migrate-user migrate-catalog migrate-order migrate-payment; do
  read -r code user < <(podman inspect -f '{{.State.ExitCode}} {{.Config.User}}.' "$(container "$step")")
  echo "containers: $step exit=$code user=${user%.}"
  [ "$code" = 0 ] && [ "${user%%:*}" = 65532 ] || bad=1
done
# Unhealthy at any check of the run (retries exhausted), even if it recovered since.
if grep ' unhealthy$' "$out/health.log" | sort -u | sed 's/^/containers: was /' | grep .; then
  bad=1
fi
[ $bad = 1 ] || echo "containers: $(wc -l <"$out/health.log") health checks run, none unhealthy"
[ $bad = 0 ] || { echo "containers: a container is not as it should be" >&2; exit 1; }
