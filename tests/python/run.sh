#!/usr/bin/env bash
# Microsoft's Python service clients for Azure DPS, unmodified, against the real `dps` binary (picked up by
# scripts/test.sh): one `dps serve` on 127.0.0.1 (an ephemeral port: the clients build `https://{HostName}`, so
# the connection string's HostName carries the port) with a temporary data dir, then
#   1. test_provisioningserviceclient.py: azure-iothub-provisioningserviceclient 1.2.0 (the GA client);
#   2. test_deviceprovisioning.py: azure-iot-deviceprovisioning 1.0.0b1 (the azure-core client).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/suite.sh" python

bash "$root/scripts/setup/python-clients.sh"
python="$here/.venv/bin/python"

suite_build
suite_begin

export HUB=hub.python.test
data="$work/data"
"$dps" hub link --data-dir "$data" --host "$HUB" >/dev/null
start_dps --data-dir "$data" --listen 127.0.0.1:0
listen="$(dps_field listen)"
DPS_PORT="${listen##*:}" ID_SCOPE="$(dps_field idScope)" CA_FILE="$(dps_field caCertificate)"
CONNECTION_STRING="$(dps_field connectionString)"
# The service clients trust the local CA as any requests-based client does.
export DPS_PORT ID_SCOPE CA_FILE CONNECTION_STRING REQUESTS_CA_BUNDLE="$CA_FILE"

cd "$here"
"$python" -m unittest -v test_provisioningserviceclient test_deviceprovisioning
say "ok"
