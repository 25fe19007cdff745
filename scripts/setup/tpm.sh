#!/usr/bin/env bash
# Installs the software TPM the TPM suite uses as a device's TPM (tests/tpm): swtpm, its tools, tpm2-tools and
# tpm2-pytss for Debian's python3 (/usr/bin/python3). Idempotent and quiet: does nothing when all are there.
set -euo pipefail

have() {
    command -v swtpm >/dev/null 2>&1 && command -v tpm2_createek >/dev/null 2>&1 \
        && /usr/bin/python3 -c 'import tpm2_pytss' >/dev/null 2>&1
}

if have; then
    echo "tpm.sh: swtpm, tpm2-tools and python3-tpm2-pytss already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq swtpm swtpm-tools tpm2-tools python3-tpm2-pytss libtss2-tcti-swtpm0 >/dev/null
have || { echo "tpm.sh: installed, but swtpm, tpm2-tools or tpm2_pytss is still missing" >&2; exit 1; }
echo "tpm.sh: installed $(swtpm --version 2>&1 | head -n1), tpm2-pytss $(dpkg-query -W -f='${Version}' python3-tpm2-pytss)"
