#!/usr/bin/env bash
# Installs what deploy/check.sh uses, idempotently: Debian's docker-compose (compose file validation,
# no engine needed), prometheus (promtool), systemd (systemd-analyze), and PyPI's kubernetes-validate
# (Kubernetes schemas; it brings jsonschema, used for the vendored KEDA schema).
set -euo pipefail
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
command -v kubernetes-validate >/dev/null 2>&1 || python3 -m pip install -q kubernetes-validate
