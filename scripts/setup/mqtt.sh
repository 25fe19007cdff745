#!/usr/bin/env bash
# Installs the clients of the MQTT end-to-end suite (tests/mqtt):
#   tests/mqtt/.venv       Python venv with Microsoft's azure-iot-device 2.14.0 from PyPI (ProvisioningDeviceClient,
#                          MQTT only), which brings paho-mqtt 1.6 (the raw client of the hostile cases), and
#                          cryptography 50.0.2 for the X.509 devices' certificates (tests/python/certs.py);
#   tests/mqtt/node_modules  `npm ci` of tests/mqtt/package-lock.json (azure-iot-provisioning-device-mqtt).
# Idempotent: each part is skipped when already in place. Installs python3-venv with apt-get only when missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
suite="$root/tests/mqtt"
venv="$suite/.venv"
say() { echo "mqtt.sh: $*"; }

version() { "$venv/bin/python" -m pip show "$1" 2>/dev/null | awk '/^Version/ {print $2}'; }
if "$venv/bin/python" -c 'import azure.iot.device, paho.mqtt, cryptography' >/dev/null 2>&1 \
    && [[ "$(version azure-iot-device)" == "2.14.0" && "$(version cryptography)" == "50.0.2" ]]; then
    say "azure-iot-device 2.14.0 and cryptography 50.0.2 already installed in $venv"
else
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        say "python3-venv missing, installing it with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'azure-iot-device==2.14.0' 'cryptography==50.0.2'
    say "installed azure-iot-device 2.14.0, cryptography 50.0.2 and paho-mqtt $("$venv/bin/python" -m pip show paho-mqtt | awk '/^Version/ {print $2}') into $venv"
fi

stamp="$suite/node_modules/.package-lock.json"
if [ -f "$stamp" ] && [ "$stamp" -nt "$suite/package-lock.json" ]; then
    say "tests/mqtt/node_modules already matches package-lock.json"
else
    (cd "$suite" && npm ci --no-audit --no-fund --loglevel=error)
    say "installed tests/mqtt/node_modules"
fi
