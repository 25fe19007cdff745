#!/usr/bin/env bash
# Installs openapi-spec-validator (and with it jsonschema) into .venv at the repository root, for the dps-api tests
# that check docs/openapi.json (functions/api/tests/openapi_check.py): valid OpenAPI 3.1, examples and real
# answers valid against the documented schemas. moto[server] brings it along today; this makes the need explicit.
# Idempotent: the venv is shared with scripts/setup/moto.sh, created only when missing, and nothing is installed
# when the module already imports.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
say() { echo "openapi.sh: $*"; }

if [[ ! -x "$venv/bin/python" ]]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        say "python3-venv missing, installing it with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    python3 -m venv "$venv"
    say "created $venv"
fi

if "$venv/bin/python" -c 'import openapi_spec_validator, jsonschema, referencing' >/dev/null 2>&1; then
    say "openapi-spec-validator already installed in $venv"
    exit 0
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator==0.9.0'
say "installed openapi-spec-validator $("$venv/bin/python" -m pip show openapi-spec-validator | awk '/^Version/ {print $2}') into $venv"
