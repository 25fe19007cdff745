#!/usr/bin/env bash
# The Lambda path, end to end (picked up by scripts/test.sh; docs/aws.md explains each step):
#   1. template.yaml passes `sam validate --lint` and `cfn-lint`, and iam_check.py (least-privilege roles);
#   2. the Lambda binaries and dps-admin build (debug, native target);
#   3. moto (DynamoDB, S3, CloudFormation, EventBridge routed to SQS) stands in for AWS: dps-admin creates the table, and
#      infra/scripts/bootstrap.sh creates the instance and its hub from a stand-in stack's outputs, as an operator
#      does after `sam deploy`;
#   4. both Lambda binaries run under `cargo lambda watch --only-lambda-apis` (Lambda runtime API + function URL
#      emulator, from the cargo-lambda PyPI package); e2e.test.js drives the service function over HTTP, registers devices through
#      the device function with the official Azure IoT Node.js device SDK, and counts DynamoDB calls per device
#      operation; events_check.py then reads back the lifecycle events the run put on the bus;
#   5. checks the device function's Embedded Metric Format lines (emf_check.py);
#   6. the operator CLI (`dps enrollment`, `import`, `export`) against the service function;
#   7. prints each binary's cold-start init time (process start to first poll of the runtime API).
# Everything listens on free 127.0.0.1 ports; every process started here is stopped on exit.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/suite.sh" lambda

"$root/scripts/setup/aws-tools.sh"
"$root/scripts/setup/moto.sh"
venv="$root/.venv"
export PATH="$venv/bin:$PATH" # `cargo lambda` is the venv's cargo-lambda

# Dummy region and credentials: nothing here talks to AWS; moto accepts any key.
export SAM_CLI_TELEMETRY=0 AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
unset AWS_PROFILE

say "sam validate --lint (with infra/samconfig.toml)"
sam validate --lint --template "$root/template.yaml" --config-file "$root/infra/samconfig.toml"
say "cfn-lint"
cfn-lint "$root/template.yaml"
say "cfn-lint with the optional mutual TLS domain set"
cfn-lint "$root/template.yaml" --parameters MtlsDomainName=devices.example.com \
    MtlsCertificateArn=arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1234-5678-9abc-def012345678 \
    MtlsTruststoreUri=s3://example-truststore/devices-ca.pem
"$venv/bin/python" "$here/iam_check.py"

say "building (the workspace build scripts/test.sh has already made; seconds after it)"
suite_build
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
suite_begin

# Start a command in its own process group, so cleanup stops it and everything it spawned.
start() {
    local log="$1"
    shift
    setsid "$@" >"$work/$log" 2>&1 &
    suite_track "-$!"
}
wait_for() {
    local what="$1" url="$2" tries="$3" code
    for _ in $(seq "$tries"); do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$url" || true)"
        # 5xx is the emulator itself answering that the function is not running (yet, or any more).
        if [[ "$code" =~ ^[234] ]]; then return 0; fi
        sleep 1
    done
    say "$what did not come up at $url"
    return 1
}

moto_port="$(free_port)"
# The request recorder (DynamoDB call counting in e2e.test.js) writes its file here, not into the repository.
export MOTO_RECORDER_FILEPATH="$work/moto_recording"
start moto.log moto_server -H 127.0.0.1 -p "$moto_port"
wait_for moto "http://127.0.0.1:$moto_port/" 30
endpoint="http://127.0.0.1:$moto_port"

table="dps-lambda-e2e"
service_host="dps-service.lambda.test"
hub="hub-a.lambda.test"
admin=("$bin/dps-admin" --table "$table" --endpoint-url "$endpoint")
"${admin[@]}" table create
# The operator bootstrap exactly as documented (infra/scripts/bootstrap.sh), against a stand-in for the deployed
# stack: moto's CloudFormation holds a stack with the outputs template.yaml declares, pointing at this table and
# host. AWS_ENDPOINT_URL sends both `sam list stack-outputs` and dps-admin to moto.
bucket="dps-lambda-e2e-policies"
# Lifecycle events: the functions put them on this bus; a rule routes every `dps` event to a queue, read back
# after the end-to-end run (as an operator would route them; the stack itself adds no rules).
event_bus="dps-lambda-e2e-events"
events_queue="dps-lambda-e2e-events"
# The KMS key sealing hub credentials (template.yaml's HubSecretsKey); its ID is printed.
kms_key="$(AWS_ENDPOINT_URL="$endpoint" "$venv/bin/python" -c 'import boto3; print(boto3.client("kms").create_key()["KeyMetadata"]["KeyId"])')"
AWS_ENDPOINT_URL="$endpoint" "$venv/bin/python" - "$table" "$service_host" "$bucket" "$event_bus" "$events_queue" <<'PY'
import json, sys
import boto3
table, service_host, bucket, bus, queue = sys.argv[1:6]
boto3.client("s3").create_bucket(Bucket=bucket)
events, sqs = boto3.client("events"), boto3.client("sqs")
events.create_event_bus(Name=bus)
url = sqs.create_queue(QueueName=queue)["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
events.put_rule(Name="all-dps", EventBusName=bus, EventPattern=json.dumps({"source": ["dps"]}))
events.put_targets(Rule="all-dps", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
outputs = {"TableName": table, "ServiceHostName": service_host, "DeviceHostName": "127.0.0.1", "PolicyBucketName": bucket}
boto3.client("cloudformation").create_stack(
    StackName="dps-lambda-e2e",
    TemplateBody=json.dumps({
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }),
)
PY
boot="$(AWS_ENDPOINT_URL="$endpoint" DPS_ADMIN="$bin/dps-admin" "$root/infra/scripts/bootstrap.sh" \
    --stack dps-lambda-e2e --name lambda-e2e --hub "$hub@us-east-1")"
echo "$boot" | grep -v '^connection string'
id_scope="$(sed -n 's/^ID scope: *//p' <<<"$boot")"
connection_string="$(sed -n 's/^connection string: *//p' <<<"$boot")"
[[ -n "$id_scope" && "$connection_string" == HostName=* ]] || { say "bootstrap printed no instance"; exit 1; }
# A hub only a custom allocation policy picks (the tenant-prefix example routes acme-* devices to it).
tenant_hub="acme-hub.lambda.test"
"${admin[@]}" hub link --id-scope "$id_scope" --hub "$tenant_hub" --no-auto-allocation

# The two REST hub connectors' far ends, on loopback: the HTTP registry contract's example receiver and the
# Azure IoT Hub registry stand-in of tests/hubs (it checks the hub SAS tokens and etags).
random_b64() { "$venv/bin/python" -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'; }
registry_secret="registry-secret-$(random_b64)"
registry_port="$(free_port)"
start receiver.log env DPS_REGISTRY_SECRET="$registry_secret" "$venv/bin/python" \
    "$root/examples/hub-registry/receiver.py" --port "$registry_port"
azure_hub="azure-hub.lambda.test"
azure_key="$(random_b64)"
azure_port="$(free_port)"
start azure-standin.log "$venv/bin/python" "$root/tests/hubs/azure_standin.py" --port "$azure_port" \
    --host-name "$azure_hub" --policy registryReadWrite --key "$azure_key"
wait_port "$registry_port"
wait_port "$azure_port"

device_port="$(free_port)"
service_port="$(free_port)"
# As template.yaml sets them, plus the two endpoint overrides that point the functions at moto (DynamoDB, S3).
function_env="DPS_TABLE_NAME=$table,DPS_DYNAMODB_ENDPOINT=$endpoint,DPS_POLICY_BUCKET=$bucket"
function_env+=",DPS_S3_ENDPOINT=$endpoint,DPS_CACHE_TTL=5,DPS_LOG_LEVEL=info"
function_env+=",DPS_EVENT_BUS=$event_bus,DPS_EVENTS_ENDPOINT=$endpoint"
# The IoT Core hub of e2e.test.js is moto and the REST hubs are on loopback: let hubs name their endpoints and
# private URLs, and send Azure registry calls to the stand-in (none of these is ever set on AWS).
function_env+=",DPS_HUB_ENDPOINT_OVERRIDES=true,DPS_AZURE_HUB_ENDPOINT=http://127.0.0.1:$azure_port"
function_env+=",DPS_SECRETS_KMS_KEY=$kms_key,DPS_KMS_ENDPOINT=$endpoint"
metrics_namespace="DPS/dps-lambda-e2e"
function_env+=",DPS_METRICS_NAMESPACE=$metrics_namespace"
# One emulator per function, in `--only-lambda-apis` mode: it serves the Lambda runtime API and the function URL
# front (each HTTP request becomes a function URL event, payload format 2.0, handed to the binary through the
# runtime API, and the reply turned back), and the binary built above runs as that emulator's default function
# `_`, so a request path with no /lambda-url/NAME prefix reaches it unchanged, as on a real function URL: the SDK's
# own paths (/{idScope}/registrations/...) need no rewriting. Running the binary ourselves (rather than letting
# the emulator `cargo run -p` it) keeps the one workspace build: a per-package `cargo run` resolves features per
# package and recompiles.
watch() {
    local log="$1" port="$2" binary="$3"
    start "$log" cargo lambda watch --quiet --only-lambda-apis --disable-cors \
        --invoke-address 127.0.0.1 --invoke-port "$port"
    # The runtime client gives up if the runtime API is not there yet: start the function once the emulator's port
    # accepts connections (an HTTP request would wait for a function to answer it).
    wait_port "$port"
    # The function, with the variables the emulator names for it and the environment template.yaml sets.
    local vars=(AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024
        "AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:$port/.rt" AWS_LAMBDA_FUNCTION_NAME=_)
    IFS=, read -ra extra <<<"$function_env"
    start "fn-$log" env "${vars[@]}" "${extra[@]}" "$bin/$binary"
}
watch watch-device.log "$device_port" dps-provisioning
watch watch-service.log "$service_port" dps-service
# Wait until each answers through its emulator.
wait_for "device function" "http://127.0.0.1:$device_port/healthz" 30
wait_for "service function" "http://127.0.0.1:$service_port/healthz" 30

if [[ ! -d "$here/node_modules/azure-iot-provisioning-device" ]]; then
    say "installing the Azure device SDK (npm ci)"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

say "end-to-end through the Lambda functions"
DEVICE_URL="http://127.0.0.1:$device_port" SERVICE_URL="http://127.0.0.1:$service_port" \
    SERVICE_HOST="$service_host" ID_SCOPE="$id_scope" HUB="$hub" CONNECTION_STRING="$connection_string" MOTO_URL="$endpoint" TENANT_HUB="$tenant_hub" \
    REGISTRY_PORT="$registry_port" REGISTRY_SECRET="$registry_secret" AZURE_HUB="$azure_hub" AZURE_PORT="$azure_port" \
    AZURE_CONNECTION="HostName=$azure_hub;SharedAccessKeyName=registryReadWrite;SharedAccessKey=$azure_key" \
    node --test --test-concurrency=1 "$here/e2e.test.js"

say "the hub credentials never reached the functions' logs"
for secret in "$registry_secret" "$azure_key"; do
    if grep -qF -- "$secret" "$work"/fn-watch-*.log "$work"/watch-*.log; then
        say "a hub credential appears in a function's log"
        exit 1
    fi
done

say "lifecycle events the run made, read back from the queue the bus routes them to"
AWS_ENDPOINT_URL="$endpoint" "$venv/bin/python" "$here/events_check.py" "$events_queue" "$root/docs/events.schema.json"
say "Embedded Metric Format lines of the device function (docs/metrics.md)"
# The SDK devices of the individual, group and custom allocation tests were assigned; the last ran a wasm policy.
"$venv/bin/python" "$here/emf_check.py" "$work/fn-watch-device.log" "$metrics_namespace" 3 1
say "the operator CLI (dps) against the service function"
# The deployment options follow the command (they belong to `dps enrollment`, `dps import`, ...).
cli() { "$bin/dps" "$@" --connection-string "$connection_string" --endpoint "http://127.0.0.1:$service_port"; }
cli enrollment create cli-lambda-1 --tags '{"via":"cli"}' --json >"$work/cli-created.json"
cli enrollment show cli-lambda-1 --show-keys --json >"$work/cli-shown.json"
python3 - "$work" <<'PY'
import json, sys
for line in range(40):
    print(json.dumps({"registrationId": f"cli-bulk-{line:03}", "attestation": {"type": "symmetricKey", "symmetricKey": {}}}),
          file=open(f"{sys.argv[1]}/cli-in.jsonl", "a"))
shown = json.load(open(f"{sys.argv[1]}/cli-shown.json"))
assert shown["initialTwin"]["tags"]["via"] == "cli", shown
assert shown["attestation"]["symmetricKey"]["primaryKey"], "the service generated keys"
PY
cli import "$work/cli-in.jsonl" --json >"$work/cli-import.json"
cli export enrollments --page-size 7 --output "$work/cli-out.jsonl" 2>/dev/null
exported="$(grep -c '"cli-' "$work/cli-out.jsonl")"
[[ "$exported" == 41 ]] || { say "CLI export read back $exported of 41 enrollments"; exit 1; }
cli enrollment delete cli-lambda-1 >/dev/null
set +e; cli enrollment show cli-lambda-1 >/dev/null 2>&1; code=$?; set -e
[[ "$code" == 2 ]] || { say "dps enrollment show of a deleted enrollment exited $code, not 2"; exit 1; }

say "the record migration (docs/dynamodb.md, Upgrading) finds nothing to move in a table this release wrote"
migrated="$("${admin[@]}" --json table migrate-records)"
[[ "$migrated" == '{"moved":0,"superseded":0,"changed":0}' ]] || { say "migrate-records: $migrated"; exit 1; }

# Informational, never gating: init time of each binary, from process start to its first poll of the runtime
# API (a stand-in runtime API answers nothing, so the function sits ready); the functions log their own
# `init_micros` too.
python3 "$here/coldstart.py" --runs 5 --env "DPS_TABLE_NAME=$table" --env "DPS_DYNAMODB_ENDPOINT=$endpoint" \
    --env "DPS_POLICY_BUCKET=$bucket" --env "DPS_S3_ENDPOINT=$endpoint" \
    "$bin/dps-provisioning" "$bin/dps-service"
say "ok"
