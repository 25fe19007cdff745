#!/usr/bin/env python3
"""Read every lifecycle event the Lambda end-to-end run made from the SQS queue an EventBridge rule routes them
to, and fail unless each kind the run caused is there, each is valid against docs/events.schema.json, and none
carries a key. Usage: events_check.py QUEUE SCHEMA (AWS_ENDPOINT_URL points boto3 at moto)."""

import collections
import json
import sys

import boto3
from jsonschema import Draft202012Validator

queue_name, schema_path = sys.argv[1:3]
sqs = boto3.client("sqs")
url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
validator = Draft202012Validator(json.load(open(schema_path)), format_checker=Draft202012Validator.FORMAT_CHECKER)

messages, empty = [], 0
while empty < 3:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    empty = 0 if got else empty + 1
    for m in got:
        messages.append(json.loads(m["Body"]))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

failures = []
kinds = collections.Counter()
for m in messages:
    detail = m["detail"]
    kinds[detail["type"]] += 1
    if m["source"] != "dps" or m["detail-type"] != detail["type"]:
        failures.append(f"envelope: source {m['source']!r}, detail-type {m['detail-type']!r} for {detail['type']}")
    for error in validator.iter_errors(detail):
        failures.append(f"{detail['type']} {detail.get('subject')}: {error.json_path}: {error.message}")
    text = json.dumps(detail)
    if any(secret in text for secret in ("primaryKey", "secondaryKey", "SharedAccessSignature", "SharedAccessKey")):
        failures.append(f"{detail['type']} carries a key or token")

# What e2e.test.js does: individual and group enrollments, SDK registrations, a record deleted, a policy uploaded,
# and one registration that ends failed.
expected = ["dps.enrollment.created", "dps.enrollmentGroup.created", "dps.registration.assigned",
            "dps.registration.failed", "dps.registration.deleted", "dps.policy.uploaded"]
for kind in expected:
    if kinds[kind] == 0:
        failures.append(f"no {kind} event")

print("events_check: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
if failures:
    print("events_check: FAILED\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"events_check: {len(messages)} events, every one schema-valid and free of keys")
