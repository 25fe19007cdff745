#!/usr/bin/env bash
# TPM attestation against a software TPM (picked up by scripts/test.sh):
#   1. oracle.py: the server's TPM crypto (dps-attestation, through its `tpm-challenge` example) against swtpm:
#      ActivateCredential + Import + HMAC must give back the key the server issued;
#   2. e2e.py: a device over HTTPS against the real `dps` binary on 127.0.0.1 (a free port, its own data dir):
#      EK/SRK, the 401 challenge, ActivateCredential, Import, a TPM-signed SAS, assigned; and the refusals.
# Every swtpm and dps process started here is stopped on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash "$root/scripts/setup/tpm.sh"

. "$root/scripts/lib/build.sh"
build_workspace
target="${CARGO_TARGET_DIR:-$root/target}/debug"
export TPM_CHALLENGE_BIN="$target/examples/tpm-challenge"
export DPS_BIN="${DPS_BIN:-$target/dps}"
export PYTHONPATH="$root/tests/tpm${PYTHONPATH:+:$PYTHONPATH}"

# Debian's python3: tpm2-pytss is installed for it (a pyenv or venv python would not see it).
/usr/bin/python3 "$root/tests/tpm/oracle.py"
if [[ -f "$root/tests/tpm/e2e.py" ]]; then
    /usr/bin/python3 "$root/tests/tpm/e2e.py"
fi
