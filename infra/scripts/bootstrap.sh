#!/usr/bin/env bash
# Create a provisioning service instance in a deployed stack, with the caller's AWS credentials (environment,
# profile or SSO; the permissions are in infra/iam/operator-policy.json), and optionally link hubs to it.
#
#   infra/scripts/bootstrap.sh [--stack dps] [--region eu-west-1] [--name default] [--hub HOST[@LOCATION]]...
#
# Reads the stack outputs (table, service and device host names) with `sam list stack-outputs`, builds
# dps-admin (release) if needed, creates the instance with the service function URL's host as its service host
# name, and prints what devices and service clients need: the device endpoint host, the ID scope and the owner
# connection string. Keep the connection string secret: it holds the all-rights key.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stack=dps
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
name=default
hubs=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --stack) stack="$2"; shift 2 ;;
        --region) region="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        --hub) hubs+=("$2"); shift 2 ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "bootstrap.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
region_args=()
[[ -n "$region" ]] && region_args=(--region "$region")

sam="$(command -v sam || echo "$root/.venv/bin/sam")"
outputs="$(SAM_CLI_TELEMETRY=0 "$sam" list stack-outputs --stack-name "$stack" --output json "${region_args[@]}")"
output() {
    python3 -c 'import json, sys
for o in json.loads(sys.argv[1]):
    if o["OutputKey"] == sys.argv[2]:
        print(o["OutputValue"]); break
else:
    sys.exit("stack output %s not found" % sys.argv[2])' "$outputs" "$1"
}
table="$(output TableName)"
service_host="$(output ServiceHostName)"
device_host="$(output DeviceHostName)"

# DPS_ADMIN: a dps-admin binary to use instead of building the release one (the local test passes its debug build).
admin="${DPS_ADMIN:-$root/target/release/dps-admin}"
if [[ ! -x "$admin" ]]; then
    (cd "$root" && cargo build --release --quiet -p dps-admin)
fi
run_admin() { "$admin" --table "$table" "${region_args[@]}" "$@"; }

created="$(run_admin --json instance create --name "$name" --host "$service_host")"
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$created" "$1"; }
id_scope="$(field idScope)"
for hub in "${hubs[@]}"; do
    host="${hub%@*}"
    location_args=()
    [[ "$hub" == *@* ]] && location_args=(--location "${hub#*@}")
    run_admin hub link --id-scope "$id_scope" --hub "$host" "${location_args[@]}" >/dev/null
    echo "linked hub $host"
done

cat <<OUT
instance:            $name
ID scope:            $id_scope
device endpoint:     $device_host   (the provisioning host for device SDKs)
service endpoint:    $service_host
connection string:   $(field connectionString)
OUT
