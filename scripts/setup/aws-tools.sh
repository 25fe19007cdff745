#!/usr/bin/env bash
# Installs the AWS deployment tools into .venv at the repository root, from PyPI:
#   aws-sam-cli   `sam validate --lint`, `sam build`, `sam deploy`
#   cfn-lint      CloudFormation linter (also used by `sam validate --lint`)
#   cargo-lambda  builds Lambda binaries (`cargo lambda build`) and emulates the Lambda runtime and function
#                 URLs locally (`cargo lambda watch`); the wheel ships the native binary, and pulls in ziglang
#                 for cross-compiling to arm64.
# Idempotent: the venv is shared with scripts/setup/moto.sh, so it is created only when missing and only
# packages are added to it; a tool already present is left alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
say() { echo "aws-tools.sh: $*"; }

if [[ ! -x "$venv/bin/python" ]]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        say "python3-venv missing, installing it with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    python3 -m venv "$venv"
    say "created $venv"
fi

want=()
[[ -x "$venv/bin/sam" ]] || want+=("aws-sam-cli")
[[ -x "$venv/bin/cfn-lint" ]] || want+=("cfn-lint")
[[ -x "$venv/bin/cargo-lambda" ]] || want+=("cargo-lambda")

if [[ ${#want[@]} -eq 0 ]]; then
    say "sam, cfn-lint and cargo-lambda already installed in $venv"
    exit 0
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${want[@]}"
for pkg in "${want[@]}"; do
    say "installed $("$venv/bin/python" -m pip show "$pkg" | awk '/^Version/ {print $2}') of $pkg into $venv"
done
