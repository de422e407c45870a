#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a running systemd:
#   - docker-compose.yml with `docker compose config` or `docker-compose config` (skipped if neither exists)
#   - deploy/systemd/*.service with `systemd-analyze verify` (skipped if it is not installed)
# Exits non-zero on a real validation failure. Usage: deploy/check.sh
set -euo pipefail

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
    echo "skip: compose (neither 'docker compose' nor 'docker-compose' is installed)"
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
    echo "skip: systemd units (systemd-analyze is not installed)"
fi

exit "$status"
