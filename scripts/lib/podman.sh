# Sourced by scripts/images.sh and scripts/containers.sh: podman with the project's own
# configuration (deploy/podman/containers.conf; nothing under /etc changes), installed from
# Debian's packages when missing.
#   podman_ready             installs podman (and runc, which this kind of machine needs)
#   podman_health_loop PROJ LOG
#                            runs the health checks of PROJ's containers every 2 s, in the
#                            background (no systemd here to run them), appending each
#                            container's status after its check to LOG; prints its pid

# shellcheck source=apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

export CONTAINERS_CONF
CONTAINERS_CONF="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/deploy/podman/containers.conf"

podman_ready() {
  need_command podman podman
  need_command runc runc
}

podman_health_loop() {
  local project=$1 log=$2
  (
    while sleep 2; do
      podman ps -q --filter "label=com.docker.compose.project=$project" 2>/dev/null \
        | while read -r id; do
            # (stdin closed: the loop reads the ids from it)
            if [ "$(podman inspect -f '{{if .Config.Healthcheck}}yes{{end}}' "$id" </dev/null)" = yes ]; then
              podman healthcheck run "$id" </dev/null || true
              podman inspect -f '{{.Name}} {{.State.Health.Status}}' "$id" </dev/null >>"$log"
            fi
          done
    done
  ) >/dev/null 2>&1 &
  echo $!
}
