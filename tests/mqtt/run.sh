#!/usr/bin/env bash
# The MQTT front door, end to end (picked up by scripts/test.sh): one `dps serve` with a temporary data dir,
# HTTPS on 127.0.0.1:8444 and MQTT on 127.0.0.1:8883 (the port the Azure SDKs always use), then
#   1. suite.py: the official Python device SDK (azure-iot-device 2.14) and raw paho clients (client differences,
#      bad input, cross-talk between 50 devices, timeouts, packet size, the connection limit shared with HTTPS);
#   2. node.test.js: the official Node.js provisioning client over its MQTT transport;
#   3. bench.py: registrations per second over HTTPS and over MQTT (printed, never asserted);
#   4. shutdown.py: SIGTERM while a registration is in flight over MQTT; it is answered, and dps exits 0.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/suite.sh" mqtt

bash "$root/scripts/setup/mqtt.sh"
python="$here/.venv/bin/python"

suite_build
suite_begin

export HTTPS_PORT=8444 MQTT_PORT=8883 HUB_A=hub-a.mqtt.test HUB_B=hub-b.mqtt.test
data="$work/data"
"$dps" hub link --data-dir "$data" --host "$HUB_A" >/dev/null
"$dps" hub link --data-dir "$data" --host "$HUB_B" >/dev/null
# 60 connections per address: the shared-limit test fills it with MQTT connections and expects HTTPS refused.
start_dps --data-dir "$data" --listen "127.0.0.1:$HTTPS_PORT" --mqtt-listen "127.0.0.1:$MQTT_PORT" \
    --mqtt-connect-timeout 2 --max-connections-per-address 60 --allow-private-webhook-targets
ID_SCOPE="$(dps_field idScope)" CA_FILE="$(dps_field caCertificate)" CONNECTION_STRING="$(dps_field connectionString)"
export ID_SCOPE CA_FILE CONNECTION_STRING DPS_PID="$dps_pid"
[[ "$(dps_field mqttListen)" == "127.0.0.1:$MQTT_PORT" ]] || { say "dps does not report the MQTT listener"; exit 1; }

say "Python SDK and raw MQTT clients (suite.py)"
(cd "$here" && "$python" suite.py)
say "Node.js SDK over MQTT (node.test.js)"
NODE_EXTRA_CA_CERTS="$CA_FILE" node --test --test-concurrency=1 "$here/node.test.js"
say "throughput"
(cd "$here" && "$python" bench.py 200 8)
say "graceful shutdown"
(cd "$here" && "$python" shutdown.py)
status=0
wait "$dps_pid" || status=$?
[[ $status -eq 0 ]] || { say "dps exited with $status after SIGTERM"; exit 1; }
grep -q '"stopped"' "$work/dps.log" || { say "dps did not log a clean stop"; exit 1; }
say "ok"
