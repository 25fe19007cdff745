#!/usr/bin/env python3
"""Least-privilege and hardening checks on template.yaml that linters do not make: each function's role grants
exactly the actions its code path calls (docs/dynamodb.md lists the calls), nothing is granted on `*`, and the
table and bucket keep their protections. Run with the venv's python (it uses cfn-lint's template decoder)."""

import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]

DEVICE_TABLE = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}
SERVICE_TABLE = DEVICE_TABLE | {"dynamodb:DeleteItem"}
NEVER = {"dynamodb:Scan", "dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:CreateTable", "s3:DeleteBucket"}


def statements(role):
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            resources = statement["Resource"]
            yield (
                set(actions if isinstance(actions, list) else [actions]),
                resources if isinstance(resources, list) else [resources],
            )


def grants(role, prefix):
    return {a for actions, _ in statements(role) for a in actions if a.startswith(prefix)}


def main():
    template, matches = decode(str(ROOT / "template.yaml"))
    if matches:
        sys.exit(f"template.yaml does not decode: {matches}")
    res = template["Resources"]
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    for name in ("DeviceFunctionRole", "ServiceFunctionRole"):
        for actions, resources in statements(res[name]):
            check(not any("*" in a for a in actions), f"{name}: wildcard action in {sorted(actions)}")
            check(not (actions & NEVER), f"{name}: grants {sorted(actions & NEVER)}")
            check(all(r != "*" for r in resources), f"{name}: grants {sorted(actions)} on *")

    device, service = res["DeviceFunctionRole"], res["ServiceFunctionRole"]
    check(grants(device, "dynamodb:") == DEVICE_TABLE, f"device table actions: {sorted(grants(device, 'dynamodb:'))}")
    check(grants(device, "s3:") == {"s3:GetObject", "s3:ListBucket"}, f"device s3 actions: {sorted(grants(device, 's3:'))}")
    check(grants(service, "dynamodb:") == SERVICE_TABLE, f"service table actions: {sorted(grants(service, 'dynamodb:'))}")
    check(grants(service, "s3:") <= {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}, "service s3")

    for fn, role in (("DeviceFunction", "DeviceFunctionRole"), ("ServiceFunction", "ServiceFunctionRole")):
        props = res[fn]["Properties"]
        check(props["Role"] == {"Fn::GetAtt": [role, "Arn"]}, f"{fn} must use {role}")
        check(props["FunctionUrlConfig"]["AuthType"] == "NONE", f"{fn}: function URL auth")
        check(res[fn]["Metadata"]["BuildMethod"] == "rust-cargolambda", f"{fn}: build method")

    table = res["Table"]["Properties"]
    check(table["BillingMode"] == "PAY_PER_REQUEST", "table: on-demand")
    check(table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, "table: PITR")
    check(table["SSESpecification"]["SSEEnabled"] is True, "table: SSE")
    check(table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}, "table: TTL on ttl")
    check([i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["gsi1"], "table: the gsi1 index")
    check(res["Table"].get("DeletionPolicy") == "Retain", "table: retained on stack deletion")

    bucket = res["PolicyBucket"]["Properties"]
    check(bucket["VersioningConfiguration"]["Status"] == "Enabled", "bucket: versioning")
    check(all(bucket["PublicAccessBlockConfiguration"].values()), "bucket: public access blocked")
    check("BucketEncryption" in bucket, "bucket: encryption")

    if failures:
        print("iam_check: FAILED\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("iam_check: roles are least-privilege; table and bucket protections in place")


if __name__ == "__main__":
    main()
