#!/usr/bin/env bash
# Installs moto's server mode (local DynamoDB, IoT and IoT data API servers; `moto[server]` has them all) into .venv.
# Idempotent and quiet: does nothing when moto_server is already there. The DynamoDB store's tests start
# `moto_server` themselves (functions/test-support); nothing is left running. The version is pinned: the hub tests
# know moto 5.2.5's gaps (functions/hubs/tests/aws.rs: it certifies a key of its own for a CSR), and a new moto
# must be taken on purpose, not by a clean clone. jsonschema and openapi-spec-validator (which moto[server] brings
# along anyway) are named because tests use them: the events schema check and the OpenAPI check (dps-api).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"

if [[ -x "$venv/bin/moto_server" ]]; then
    echo "moto.sh: moto_server already installed in $venv"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "moto.sh: python3 or its venv module is missing, installing python3-venv with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    echo "moto.sh: created $venv"
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.5' jsonschema 'openapi-spec-validator==0.9.0'
echo "moto.sh: installed $("$venv/bin/python" -m pip show moto | awk '/^Version/ {print "moto " $2}') into $venv"
