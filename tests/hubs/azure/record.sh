#!/bin/sh
# Re-records the Azure IoT Hub oracle: what the official service SDKs (npm azure-iothub, PyPI azure-iot-hub,
# versions pinned in package.json and requirements.txt) send for the registry calls the connector makes.
# Writes fixtures/node.json and fixtures/python.json; functions/hubs/tests/azure_oracle.rs compares the
# connector's requests with them. Needs Node 20, Python 3.11 and openssl; installs into node_modules and
# ../.venv (both git-ignored). Usage: tests/hubs/azure/record.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
[ -d node_modules ] || npm ci --no-audit --no-fund
[ -x ../.venv/bin/python ] || python3 -m venv ../.venv
../.venv/bin/pip install -q -r requirements.txt

work=$(mktemp -d)
trap 'kill "$recorder" 2>/dev/null || true; rm -rf "$work"' EXIT
host=$(python3 -c 'import json; print(json.load(open("inputs.json"))["hostName"])')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$host" \
  -addext "subjectAltName=DNS:$host" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

record() { # name, command...
  name=$1; shift
  : >"$work/$name.jsonl"
  python3 recorder.py "$port" "$work/cert.pem" "$work/key.pem" "$work/$name.jsonl" >"$work/recorder.log" 2>&1 &
  recorder=$!
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do sleep 0.2; done
  HUB_PORT=$port HUB_CA="$work/cert.pem" REQUESTS_CA_BUNDLE="$work/cert.pem" OPERATIONS_OUT="$work/$name.ops" "$@"
  kill "$recorder"; wait "$recorder" 2>/dev/null || true
  python3 - "$work/$name.ops" "$work/$name.jsonl" "fixtures/$name.json" "$@" <<'PY'
import json, sys
ops = json.load(open(sys.argv[1]))
requests = [json.loads(line) for line in open(sys.argv[2])]
assert len(ops) == len(requests), f"{len(ops)} operations but {len(requests)} requests"
for op, request in zip(ops, requests):
    request["headers"].pop("host", None)  # the redirect's 127.0.0.1:port, not the SDK's choice
    request["operation"] = op
json.dump(requests, open(sys.argv[3], "w"), indent=2, sort_keys=True)
open(sys.argv[3], "a").write("\n")
PY
}

mkdir -p fixtures
record node node record-node.js
record python ../.venv/bin/python record_python.py
echo "recorded fixtures/node.json and fixtures/python.json"
