#!/usr/bin/env bash
# Microsoft's Python service clients for Azure DPS, unmodified, against the real `dps` binary (picked up by
# scripts/test.sh): one `dps serve` on 127.0.0.1 (an ephemeral port: the clients build `https://{HostName}`, so
# the connection string's HostName carries the port) with a temporary data dir, then
#   1. test_provisioningserviceclient.py: azure-iothub-provisioningserviceclient 1.2.0 (the GA client);
#   2. test_deviceprovisioning.py: azure-iot-deviceprovisioning 1.0.0b1 (the azure-core client).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/python"
cd "$root"
say() { echo "python/run.sh: $*"; }

bash "$root/scripts/setup/python-clients.sh"
python="$here/.venv/bin/python"

. "$root/scripts/lib/build.sh"
build_workspace
dps="${DPS_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/dps}"

work="$(mktemp -d)"
pid=""
cleanup() {
    local status=$?
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$work/dps.log" ]]; then
        echo "---- dps.log (last 40 lines)"
        tail -n 40 "$work/dps.log"
    fi
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT

export HUB=hub.python.test
data="$work/data"
"$dps" hub link --data-dir "$data" --host "$HUB" >/dev/null
"$dps" serve --data-dir "$data" --listen 127.0.0.1:0 --print-json --log-format json \
    >"$work/info.json" 2>"$work/dps.log" &
pid=$!
for _ in $(seq 100); do
    [[ -s "$work/info.json" ]] && break
    kill -0 "$pid" 2>/dev/null || { say "dps exited before serving"; exit 1; }
    sleep 0.1
done
field() { "$python" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/info.json" "$1"; }
listen="$(field listen)"
DPS_PORT="${listen##*:}" ID_SCOPE="$(field idScope)" CA_FILE="$(field caCertificate)"
CONNECTION_STRING="$(field connectionString)"
# The service clients trust the local CA as any requests-based client does.
export DPS_PORT ID_SCOPE CA_FILE CONNECTION_STRING REQUESTS_CA_BUNDLE="$CA_FILE"

cd "$here"
"$python" -m unittest -v test_provisioningserviceclient test_deviceprovisioning
say "ok"
