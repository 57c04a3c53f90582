#!/usr/bin/env bash
# Validates the deployment files with the tools that run without a Docker engine or a
# Kubernetes cluster: the compose file (docker-compose config), the Kubernetes manifests
# (kubernetes-validate, strict, against the bundled API schemas), the Prometheus rules
# (promtool), the Grafana dashboard (JSON). Each validator is also shown a broken copy and
# must reject it, so a validator that accepts anything fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v docker-compose >/dev/null || ! command -v promtool >/dev/null; then
    sudo_if_needed apt-get update -q
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        docker-compose prometheus
fi
if ! command -v kubernetes-validate >/dev/null; then
    python3 -m pip install -q kubernetes-validate 2>/dev/null \
        || python3 -m pip install -q --break-system-packages kubernetes-validate
fi

broken=$(mktemp -d)
trap 'rm -rf "$broken"' EXIT

echo "compose: deploy/docker-compose.yml"
docker-compose -f deploy/docker-compose.yml config -q
sed 's/^  node6:$/  node6:\n    volumes: 5/' deploy/docker-compose.yml > "$broken/compose.yml"
if docker-compose -f "$broken/compose.yml" config -q 2>/dev/null; then
    echo "docker-compose accepted a broken file" >&2; exit 1
fi

echo "kubernetes: deploy/kubernetes/ringcache.yaml"
kubernetes-validate --strict --quiet deploy/kubernetes/ringcache.yaml
sed 's/containerPort: 6379/containerPort: six/' deploy/kubernetes/ringcache.yaml > "$broken/k8s.yaml"
if kubernetes-validate --strict --quiet "$broken/k8s.yaml" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted a broken file" >&2; exit 1
fi

echo "prometheus: deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml >/dev/null
sed 's/expr: up{job="ringcache"} == 0/expr: up{job="ringcache" == 0/' deploy/prometheus/alerts.yml > "$broken/alerts.yml"
if promtool check rules "$broken/alerts.yml" >/dev/null 2>&1; then
    echo "promtool accepted a broken file" >&2; exit 1
fi

echo "grafana: deploy/grafana/ringcache.json"
# The check, then the check shown a broken copy (a panel whose query is empty), which it must
# refuse (issue 14: it was never shown one).
grafana_check() {
python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["panels"], "no panels"
for p in d["panels"]:
    assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
PY
}
grafana_check deploy/grafana/ringcache.json
python3 - "$broken/ringcache.json" <<'PY'
import json, sys
d = json.load(open("deploy/grafana/ringcache.json"))
d["panels"][-1]["targets"][0]["expr"] = ""
json.dump(d, open(sys.argv[1], "w"))
PY
if grafana_check "$broken/ringcache.json" >/dev/null 2>&1; then
    echo "the Grafana check accepted a broken dashboard" >&2; exit 1
fi

echo "deploy files valid"
