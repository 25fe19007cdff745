#!/usr/bin/env bash
# The MQTT front door, end to end (picked up by scripts/test.sh): one `dps serve` with a temporary data dir,
# HTTPS on 127.0.0.1:8444 and MQTT on 127.0.0.1:8883 (the port the Azure SDKs always use), then
#   1. suite.py: the official Python device SDK (azure-iot-device 2.14) and raw paho clients (client differences,
#      bad input, cross-talk between 50 devices, timeouts, packet size, the connection limit shared with HTTPS);
#   2. node.test.js: the official Node.js provisioning client over its MQTT transport;
#   3. bench.py: registrations per second over HTTPS and over MQTT (printed, never asserted);
#   4. shutdown.py: SIGTERM while a registration is in flight over MQTT; it is answered, and dps exits 0.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/mqtt"
cd "$root"
say() { echo "mqtt/run.sh: $*"; }

bash "$root/scripts/setup/mqtt.sh"
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
        sleep 1
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$work/dps.log" ]]; then
        echo "---- dps.log (last 40 lines)"
        tail -n 40 "$work/dps.log"
    fi
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT

export HTTPS_PORT=8444 MQTT_PORT=8883 HUB_A=hub-a.mqtt.test HUB_B=hub-b.mqtt.test
data="$work/data"
"$dps" hub link --data-dir "$data" --host "$HUB_A" >/dev/null
"$dps" hub link --data-dir "$data" --host "$HUB_B" >/dev/null
# 60 connections per address: the shared-limit test fills it with MQTT connections and expects HTTPS refused.
"$dps" serve --data-dir "$data" --listen "127.0.0.1:$HTTPS_PORT" --mqtt-listen "127.0.0.1:$MQTT_PORT" \
    --mqtt-connect-timeout 2 --max-connections-per-address 60 --allow-private-webhook-targets \
    --print-json --log-format json >"$work/info.json" 2>"$work/dps.log" &
pid=$!
for _ in $(seq 100); do
    [[ -s "$work/info.json" ]] && break
    kill -0 "$pid" 2>/dev/null || { say "dps exited before serving"; exit 1; }
    sleep 0.1
done
field() { "$python" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/info.json" "$1"; }
ID_SCOPE="$(field idScope)" CA_FILE="$(field caCertificate)" CONNECTION_STRING="$(field connectionString)"
export ID_SCOPE CA_FILE CONNECTION_STRING DPS_PID="$pid"
[[ "$(field mqttListen)" == "127.0.0.1:$MQTT_PORT" ]] || { say "dps does not report the MQTT listener"; exit 1; }

say "Python SDK and raw MQTT clients (suite.py)"
(cd "$here" && "$python" suite.py)
say "Node.js SDK over MQTT (node.test.js)"
NODE_EXTRA_CA_CERTS="$CA_FILE" node --test --test-concurrency=1 "$here/node.test.js"
say "throughput"
(cd "$here" && "$python" bench.py 200 8)
say "graceful shutdown"
(cd "$here" && "$python" shutdown.py)
status=0
wait "$pid" || status=$?
pid=""
[[ $status -eq 0 ]] || { say "dps exited with $status after SIGTERM"; exit 1; }
grep -q '"stopped"' "$work/dps.log" || { say "dps did not log a clean stop"; exit 1; }
say "ok"
