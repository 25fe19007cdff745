#!/usr/bin/env python3
"""Least-privilege and hardening checks on template.yaml that linters do not make: each function's role grants
exactly the actions its code path calls (docs/dynamodb.md lists the calls), the device role only on the
partitions that path touches, nothing is granted on `*` (but the IoT actions IAM has no resource type for), the
AWS IoT Core hub connector's calls (docs/hub-aws-iot-core.md) on this account's things, thing groups and
certificates, roles assumed only as the HubRoleArnPattern parameter allows, lifecycle events put only on the
stack's event bus, and the table and bucket keep their protections. Run with the venv's python (it uses cfn-lint's template decoder)."""

import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]

DEVICE_TABLE = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}
SERVICE_TABLE = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
# The AWS IoT Core hub connector's calls (functions/hubs/src/aws), by the resources IAM lets them be scoped to.
IOT_THING_ACTIONS = {
    "iot:CreateThing", "iot:UpdateThing", "iot:DescribeThing", "iot:DeleteThing", "iot:ListThingPrincipals",
    "iot:GetThingShadow", "iot:UpdateThingShadow", "iot:DeleteThingShadow",
}
IOT_GROUP_ACTIONS = {"iot:AddThingToThingGroup"}
IOT_CERT_ACTIONS = {
    "iot:DescribeCertificate", "iot:UpdateCertificate", "iot:DeleteCertificate", "iot:AttachPolicy", "iot:DetachPolicy",
}
# No resource type in the Service Authorization Reference: only Resource "*" grants them.
IOT_UNSCOPED_ACTIONS = {
    "iot:RegisterCertificateWithoutCA", "iot:CreateCertificateFromCsr", "iot:AttachThingPrincipal",
    "iot:DetachThingPrincipal", "iot:ListPrincipalThings",
}
DEVICE_IOT = IOT_THING_ACTIONS | IOT_GROUP_ACTIONS | IOT_CERT_ACTIONS | IOT_UNSCOPED_ACTIONS
# IoT resources of this account, any region, by the ARN type an action may reach.
IOT_ARN = "arn:${AWS::Partition}:iot:*:${AWS::AccountId}:%s/*"
IOT_RESOURCES = {
    frozenset(IOT_THING_ACTIONS): {IOT_ARN % "thing", IOT_ARN % "thingtype"},
    frozenset(IOT_GROUP_ACTIONS): {IOT_ARN % "thing", IOT_ARN % "thinggroup"},
    frozenset(IOT_CERT_ACTIONS): {IOT_ARN % "cert"},
}
NEVER = {"dynamodb:Scan", "dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:CreateTable", "s3:DeleteBucket"}

# One partition key of each kind (docs/dynamodb.md, "Item types"; functions/store-dynamodb/src/layout.rs), as
# dynamodb:LeadingKeys sees it: the table's pk for item calls, the index's gsi1pk for a Query on gsi1.
TABLE_PARTITIONS = {
    "instance": "inst#0ne00a1b2c3",
    "instance name": "iname#contoso",
    "instance host": "ihost#dps.example.net",
    "device (individual enrollment)": "0ne00a1b2c3#dev#device-1",
    "record (registration record, TPM challenge)": "0ne00a1b2c3#rec#device-1",
    "group": "0ne00a1b2c3#grp#factory-line.2",
    "counter shard": "0ne00a1b2c3#ops#17",
}
INDEX_PARTITIONS = {
    "instances listing": "instances",
    "enrollments listing": "0ne00a1b2c3#enrollments#3",
    "groups listing": "0ne00a1b2c3#groups",
    "registrations by group": "0ne00a1b2c3#grp#factory-line.2#registrations#5",
}
# What the device function's registration path needs, per (action, resource): the partitions it reads or
# writes, and nothing else. A tenant's configuration (instance, name, host, groups) is never writable, and no
# listing but the groups of a scope is readable.
DEVICE_NEEDS = {
    ("dynamodb:GetItem", "table"): {"instance", "record (registration record, TPM challenge)"},
    ("dynamodb:BatchGetItem", "table"): {"device (individual enrollment)", "record (registration record, TPM challenge)"},
    ("dynamodb:PutItem", "table"): {"record (registration record, TPM challenge)"},
    ("dynamodb:UpdateItem", "table"): {"counter shard"},
    ("dynamodb:Query", "index/gsi1"): {"groups listing"},
}
# The only attributes of an instance item the device role may read: not `accessKeys`, which holds the service
# API's keys (functions/store-dynamodb/src/instances.rs reads with this projection).
INSTANCE_ATTRIBUTES = {"doc", "etag"}
ATTRIBUTE_CONDITIONS = {
    "ForAllValues:StringEquals": {"dynamodb:Attributes": sorted(INSTANCE_ATTRIBUTES)},
    "StringEqualsIfExists": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
}


def as_list(value):
    return value if isinstance(value, list) else [value]


def raw_statements(role):
    """Every statement; a policy or statement under `Fn::If` as it is when its condition holds (the grant at its
    widest)."""
    for policy in role["Properties"]["Policies"]:
        if set(policy) == {"Fn::If"}:
            _, policy, _ = policy["Fn::If"]
        for statement in policy["PolicyDocument"]["Statement"]:
            if set(statement) == {"Fn::If"}:
                _, statement, _ = statement["Fn::If"]
            yield statement


def statements(role):
    for statement in raw_statements(role):
        yield set(as_list(statement["Action"])), as_list(statement["Resource"])


def table_resource(resource):
    """'table', 'index/NAME' or None for a resource of the Table."""
    if resource == {"Fn::GetAtt": ["Table", "Arn"]}:
        return "table"
    sub = resource.get("Fn::Sub") if isinstance(resource, dict) else None
    if isinstance(sub, str) and sub.startswith("${Table.Arn}/"):
        return sub.removeprefix("${Table.Arn}/")
    return None


def string_like(pattern, value):
    """IAM StringLike: `*` any run of characters, `?` one character, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def device_table_grants(role, failures, readable):
    """(action, resource) -> set of the partition kinds the role lets that action reach; `readable` gets each
    action's attribute conditions, one entry per statement."""
    reach = {}
    for statement in raw_statements(role):
        actions = [a for a in as_list(statement["Action"]) if a.startswith("dynamodb:")]
        if not actions:
            continue
        sid = statement.get("Sid", "?")
        condition = statement.get("Condition") or {}
        patterns = None
        attributes = ATTRIBUTE_CONDITIONS
        if set(condition) - set(attributes) == {"ForAllValues:StringLike"}:
            keys = condition["ForAllValues:StringLike"]
            if set(keys) == {"dynamodb:LeadingKeys"}:
                patterns = as_list(keys["dynamodb:LeadingKeys"])
        limited = {k: condition.get(k) for k in attributes if k in condition}
        if patterns is None or any(string_like(p, TABLE_PARTITIONS["instance"]) for p in patterns):
            for action in actions:
                readable[action] = readable.get(action, []) + [limited]
        if patterns is None:
            failures.append(f"DeviceFunctionRole {sid}: {actions} not limited by ForAllValues:StringLike on dynamodb:LeadingKeys")
        for resource in as_list(statement["Resource"]):
            where = table_resource(resource)
            if where is None:
                failures.append(f"DeviceFunctionRole {sid}: {actions} on a resource other than the table or gsi1: {resource}")
                continue
            kinds = TABLE_PARTITIONS if where == "table" else INDEX_PARTITIONS
            if where not in ("table", "index/gsi1"):
                failures.append(f"DeviceFunctionRole {sid}: {actions} on {where}")
            for action in actions:
                reached = reach.setdefault((action, where), set())
                for kind, key in kinds.items():
                    if patterns is None or any(string_like(p, key) for p in patterns):
                        reached.add(kind)
    return reach


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
            unscoped_ok = name == "DeviceFunctionRole" and actions <= IOT_UNSCOPED_ACTIONS
            check(unscoped_ok or all(r != "*" for r in resources), f"{name}: grants {sorted(actions)} on *")

    device, service = res["DeviceFunctionRole"], res["ServiceFunctionRole"]
    readable = {}
    reach = device_table_grants(device, failures, readable)
    # Every statement that lets an item read reach instance items (the keys' partition) limits the attributes.
    for limits in readable.get("dynamodb:GetItem", []) + readable.get("dynamodb:BatchGetItem", []):
        got = {k: v for k, v in limits.items() if v is not None}
        normalized = {
            k: ({kk: sorted(as_list(vv)) if kk == "dynamodb:Attributes" else vv for kk, vv in v.items()})
            for k, v in got.items()
        }
        check(normalized == ATTRIBUTE_CONDITIONS,
              f"device role: GetItem not limited to the attributes {sorted(INSTANCE_ATTRIBUTES)} (access keys readable): {got}")
    for grant in sorted(set(reach) | set(DEVICE_NEEDS)):
        got, need = reach.get(grant, set()), DEVICE_NEEDS.get(grant, set())
        action, where = grant
        check(not (got - need), f"device role: {action} on {where} reaches {sorted(got - need)}")
        check(not (need - got), f"device role: {action} on {where} misses {sorted(need - got)} (the registration path needs it)")
    check(grants(device, "dynamodb:") == DEVICE_TABLE, f"device table actions: {sorted(grants(device, 'dynamodb:'))}")
    check(grants(device, "s3:") == {"s3:GetObject", "s3:ListBucket"}, f"device s3 actions: {sorted(grants(device, 's3:'))}")
    check(grants(device, "iot:") == DEVICE_IOT, f"device iot actions: {sorted(grants(device, 'iot:') ^ DEVICE_IOT)} differ")
    check(not grants(service, "iot:"), f"service iot actions: {sorted(grants(service, 'iot:'))}")
    for actions, resources in statements(device):
        iot = {a for a in actions if a.startswith("iot:")}
        if not iot or iot <= IOT_UNSCOPED_ACTIONS:
            continue
        subs = {r.get("Fn::Sub") if isinstance(r, dict) else r for r in resources}
        allowed = IOT_RESOURCES.get(frozenset(iot))
        check(allowed is not None, f"device role: IoT actions {sorted(iot)} not in one of the scoped statements")
        check(allowed is None or subs <= allowed, f"device role: {sorted(iot)} on {sorted(map(str, subs))}")
    assume = [(r, s) for s in raw_statements(device) if "sts:AssumeRole" in as_list(s["Action"]) for r in as_list(s["Resource"])]
    check(all(r == {"Ref": "HubRoleArnPattern"} for r, _ in assume), f"device role: sts:AssumeRole on {assume}")
    documents = [p for p in device["Properties"]["Policies"] if "PolicyDocument" in p]
    statements_if = [st for p in documents for st in p["PolicyDocument"]["Statement"] if "Fn::If" in st]
    check(all(st["Fn::If"][0] == "HasHubRoles" for st in statements_if), "device role: AssumeRole only when HubRoleArnPattern is set")
    check(grants(service, "sts:") == set(), "service role assumes no roles")
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

    # Hub connector credentials: sealed by the service function, opened by the device function, one key, one
    # encryption context (functions/lambda/common/src/secrets.rs).
    key_arn = {"Fn::GetAtt": ["HubSecretsKey", "Arn"]}
    context = {"StringEquals": {"kms:EncryptionContext:purpose": "dps-hub-credentials"}}
    for name, role, need in (("device", device, {"kms:Decrypt"}), ("service", service, {"kms:Encrypt"})):
        check(grants(role, "kms:") == need, f"{name} kms actions: {sorted(grants(role, 'kms:'))}, want {sorted(need)}")
        for statement in raw_statements(role):
            if any(a.startswith("kms:") for a in as_list(statement["Action"])):
                check(as_list(statement["Resource"]) == [key_arn], f"{name} role: kms only on HubSecretsKey")
                check(statement.get("Condition") == context, f"{name} role: kms only with the hub credentials context")
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    check(env.get("DPS_SECRETS_KMS_KEY") == key_arn, "both functions: DPS_SECRETS_KMS_KEY is HubSecretsKey")
    key = res["HubSecretsKey"]
    check(key["Properties"].get("EnableKeyRotation") is True, "hub secrets key: rotation")
    check(key.get("DeletionPolicy") == "Retain", "hub secrets key: retained on stack deletion")

    # Lifecycle events (functions/lambda/common/src/events.rs): PutEvents, only on the stack's bus (the one it
    # creates, or the one EventBusName names), never on every bus.
    bus = {"Fn::If": ["CreateEventBus", {"Fn::GetAtt": ["EventBus", "Arn"]},
                      {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"}]}
    for name, role in (("device", device), ("service", service)):
        check(grants(role, "events:") == {"events:PutEvents"}, f"{name} events actions: {sorted(grants(role, 'events:'))}")
        for statement in raw_statements(role):
            if any(a.startswith("events:") for a in as_list(statement["Action"])):
                check(as_list(statement["Resource"]) == [bus], f"{name} role: events:PutEvents only on the stack's bus")
    check(env.get("DPS_EVENT_BUS") == {"Fn::If": ["SendsEvents", {"Fn::If": ["CreateEventBus", {"Ref": "EventBus"},
          {"Ref": "EventBusName"}]}, ""]}, "both functions: DPS_EVENT_BUS is the stack's bus")

    if failures:
        print("iam_check: FAILED\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("iam_check: roles are least-privilege; table and bucket protections in place")


if __name__ == "__main__":
    main()
