#!/usr/bin/env bash
# Installs the clients of the Python client suite (tests/python): a venv tests/python/.venv with the pinned
# tests/python/requirements.txt (Microsoft's two Python service clients for DPS, and `cryptography` for the test
# certificates). Idempotent: skipped when the venv already holds exactly those versions. Installs python3-venv
# with apt-get only when missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
suite="$root/tests/python"
venv="$suite/.venv"
requirements="$suite/requirements.txt"
stamp="$venv/.requirements.txt"
say() { echo "python-clients.sh: $*"; }

if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
    say "$venv already matches requirements.txt"
    exit 0
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    say "python3-venv missing, installing it with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
"$venv/bin/python" -c 'import provisioningserviceclient, azure.iot.deviceprovisioning, cryptography'
cp "$requirements" "$stamp"
say "installed $(grep -c '==' "$requirements") pinned packages into $venv"
