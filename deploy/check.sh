#!/usr/bin/env bash
# Validates the deployment files without a Docker engine, a cluster or a running systemd:
#   - docker-compose.yml with `docker compose config` or `docker-compose config`
#   - deploy/kubernetes/*.yaml against the Kubernetes schemas (kubernetes-validate --strict), KEDA objects
#     against the vendored schema, and every kustomization resource exists
#   - deploy/prometheus: `promtool check config` and `promtool check rules`
#   - deploy/grafana: dashboard JSON parses, every panel has a Prometheus query
#   - deploy/systemd/*.service with `systemd-analyze verify`
# A missing tool is a `skip:` line, or a failure with --strict (CI installs them: deploy/install-tools.sh).
# That the metrics used by the dashboard and the alerts exist is checked by worker/tests/observability.rs.
# Usage: deploy/check.sh [--strict]
set -euo pipefail
strict=0
[ "${1:-}" = "--strict" ] && strict=1
skip() { echo "skip: $*"; if [ "$strict" = 1 ]; then status=1; fi; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
status=0

# Compose: an empty --env-file so a developer's .env cannot hide a missing default.
compose_file="$root/docker-compose.yml"
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    compose=()
    skip "compose (neither 'docker compose' nor 'docker-compose' is installed)"
fi
if [ "${#compose[@]}" -gt 0 ]; then
    : >"$tmp/empty.env"
    if "${compose[@]}" --env-file "$tmp/empty.env" -f "$compose_file" config -q; then
        echo "ok:   $compose_file (${compose[*]})"
    else
        echo "FAIL: $compose_file (${compose[*]})"; status=1
    fi
fi

# systemd: verify copies whose ExecStart points at stand-in executables, since the real binaries are
# usually not installed where this runs. Any message (even a warning) counts as a failure.
if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir "$tmp/bin"
    for bin in ingest worker; do printf '#!/bin/sh\n' >"$tmp/bin/$bin"; chmod +x "$tmp/bin/$bin"; done
    for unit in "$root"/deploy/systemd/*.service; do
        sed "s#/usr/local/bin/#$tmp/bin/#g" "$unit" >"$tmp/$(basename "$unit")"
    done
    for unit in omnidm-ingest.service omnidm-worker@9090.service; do
        if out="$(systemd-analyze verify "$tmp/$unit" 2>&1)" && [ -z "$out" ]; then
            echo "ok:   deploy/systemd/${unit/@9090/@}"
        else
            echo "FAIL: deploy/systemd/${unit/@9090/@}"; echo "${out//$tmp\//}"; status=1
        fi
    done
else
    skip "systemd units (systemd-analyze is not installed)"
fi

# Kubernetes: built-in kinds against their schemas, KEDA's against the vendored one.
k8s="$root/deploy/kubernetes"
if command -v kubernetes-validate >/dev/null 2>&1; then
    builtin=()
    for file in "$k8s"/*.yaml; do
        case "$(basename "$file")" in kustomization.yaml|keda.yaml) ;; *) builtin+=("$file") ;; esac
    done
    if out="$(kubernetes-validate --strict --quiet "${builtin[@]}" 2>&1)" && ! grep -q "WARN\|ERROR" <<<"$out"; then
        echo "ok:   deploy/kubernetes (${#builtin[@]} files, strict schemas)"
    else
        echo "FAIL: deploy/kubernetes"; echo "$out"; status=1
    fi
    if python3 - "$k8s/keda.yaml" "$k8s/schemas/keda-v1alpha1.json" <<'PY'
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[2]))
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for doc in docs:
    jsonschema.validate(doc, schema)
assert {d["kind"] for d in docs} == {"ScaledObject", "TriggerAuthentication"}, "both KEDA objects"
PY
    then echo "ok:   deploy/kubernetes/keda.yaml (vendored KEDA schema)"; else echo "FAIL: deploy/kubernetes/keda.yaml"; status=1; fi
    if python3 - "$k8s" <<'PY'
import os, sys, yaml
root = sys.argv[1]
kustomization = yaml.safe_load(open(os.path.join(root, "kustomization.yaml")))
missing = [r for r in kustomization["resources"] if not os.path.exists(os.path.join(root, r))]
assert not missing, f"missing resources: {missing}"
assert "secret.example.yaml" not in kustomization["resources"], "the example Secret must not be applied"
PY
    then echo "ok:   deploy/kubernetes/kustomization.yaml"; else echo "FAIL: deploy/kubernetes/kustomization.yaml"; status=1; fi
else
    skip "kubernetes manifests (kubernetes-validate is not installed)"
fi

# Prometheus: the config (with the rules path pointed at the repository) and the rules.
prom="$root/deploy/prometheus"
if command -v promtool >/dev/null 2>&1; then
    sed "s#/etc/prometheus/alerts.yml#$prom/alerts.yml#" "$prom/prometheus.yml" >"$tmp/prometheus.yml"
    if promtool check config "$tmp/prometheus.yml" >/dev/null && promtool check rules "$prom/alerts.yml" >/dev/null; then
        echo "ok:   deploy/prometheus (config and $(grep -c '^      - alert:' "$prom/alerts.yml") alert rules)"
    else
        echo "FAIL: deploy/prometheus"; promtool check rules "$prom/alerts.yml" || true; status=1
    fi
else
    skip "prometheus config and rules (promtool is not installed)"
fi

# Grafana: every dashboard parses and every panel queries Prometheus.
if python3 - "$root/deploy/grafana/dashboards" <<'PY'
import glob, json, sys
files = glob.glob(sys.argv[1] + "/*.json")
assert files, "no dashboard"
for path in files:
    dashboard = json.load(open(path))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels, f"{path}: no panels"
    for panel in panels:
        assert panel.get("targets"), f"{path}: panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{path}: empty query in {panel['title']!r}"
PY
then echo "ok:   deploy/grafana/dashboards"; else echo "FAIL: deploy/grafana/dashboards"; status=1; fi

exit "$status"
