#!/usr/bin/env bash
# Hub connectors end to end (picked up by scripts/test.sh): one `dps serve` (its own data dir, HTTPS on a free
# 127.0.0.1 port, --aws-hubs, --azure-hub-endpoint to a local stand-in) and the official Azure Node device SDK
# (HTTP transport, symmetric key) as the device, against local registries:
#   - examples/hub-registry/receiver.py, the HTTP registry contract's example receiver (httpRegistry hubs);
#   - azure_standin.py, a stand-in Azure IoT Hub registry REST API that checks SAS tokens and etags (azureIotHub);
#   - moto's IoT and IoT data APIs (awsIotCore).
# hubs.test.js: a registration into each, with the initial twin arriving; a move Azure -> AWS with migration;
# a hub that is down (failed 503301, then assigned on the device's retry); credentials never in answers or logs;
# added latency per registration per connector vs a record-only hub (printed, never asserted).
# Every process started here is stopped on exit (SUITE_KEEP=1 keeps the work directory).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/suite.sh" hubs

# The Azure device SDK (tests/node's pinned install) and moto (.venv); both scripts are idempotent.
bash "$root/scripts/setup/node.sh" >/dev/null
bash "$root/scripts/setup/moto.sh" >/dev/null
python="$root/.venv/bin/python"

[[ -n "${DPS_BIN:-}" ]] || suite_build
suite_begin

random_b64() { "$python" -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'; }

# Dummy AWS credentials: nothing talks to AWS; moto accepts any key.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

MOTO_PORT=$(free_port)
"$python" -c '
import sys
import moto.server as server
run_simple = server.run_simple
def serial(*args, **kwargs):  # one request at a time, as the Rust tests run it (moto does not lock its tables)
    kwargs["threaded"] = False
    return run_simple(*args, **kwargs)
server.run_simple = serial
server.main(sys.argv[1:])
' -H 127.0.0.1 -p "$MOTO_PORT" >"$work/moto.log" 2>&1 &
moto_pid=$!
suite_track "$moto_pid"

export AZURE_HUB=azure-hub.hubs-e2e.test AZURE_KEY AZURE_PORT
AZURE_KEY="$(random_b64)"
AZURE_PORT=$(free_port)
"$python" "$here/azure_standin.py" --port "$AZURE_PORT" --host-name "$AZURE_HUB" --policy registryReadWrite \
    --key "$AZURE_KEY" >"$work/azure-standin.log" 2>&1 &
azure_pid=$!
suite_track "$azure_pid"

export REGISTRY_SECRET REGISTRY_PORT
REGISTRY_SECRET="registry-secret-$(random_b64)"
REGISTRY_PORT=$(free_port)
DPS_REGISTRY_SECRET="$REGISTRY_SECRET" "$python" "$root/examples/hub-registry/receiver.py" --port "$REGISTRY_PORT" \
    >"$work/receiver.log" 2>&1 &
receiver_pid=$!
suite_track "$receiver_pid"

wait_port "$MOTO_PORT" "$moto_pid" moto
wait_port "$AZURE_PORT" "$azure_pid" "azure stand-in"
wait_port "$REGISTRY_PORT" "$receiver_pid" receiver

DPS_PORT=$(free_port)
RUST_LOG="${RUST_LOG:-info,dps_hubs=debug,dps_core=debug}" start_dps --data-dir "$work/data" \
    --listen "127.0.0.1:$DPS_PORT" --aws-hubs --azure-hub-endpoint "http://127.0.0.1:$AZURE_PORT" --allow-private-hub-targets
export DPS_PORT ID_SCOPE CONNECTION_STRING SERVICE_HOST MOTO="http://127.0.0.1:$MOTO_PORT" WORK="$work"
export RECEIVER="$root/examples/hub-registry/receiver.py" PYTHON="$python" DPS_LOGS="$work/dps.out:$work/dps.log"
ID_SCOPE="$(dps_field idScope)" CONNECTION_STRING="$(dps_field connectionString)" SERVICE_HOST="$(dps_field serviceHostName)"
ca="$(dps_field caCertificate)"

say "dps on 127.0.0.1:$DPS_PORT, moto :$MOTO_PORT, azure stand-in :$AZURE_PORT, receiver :$REGISTRY_PORT"
NODE_EXTRA_CA_CERTS="$ca" \
    node --test --test-concurrency=1 --test-reporter=spec "$here/hubs.test.js"

# Once more after the test, over everything dps wrote: no hub credential in its output or logs.
for secret in "$REGISTRY_SECRET" "$AZURE_KEY"; do
    if grep -qF -- "$secret" "$work/dps.out" "$work/dps.log"; then
        say "a hub credential appears in dps's output or log"
        exit 1
    fi
done
say "ok"
