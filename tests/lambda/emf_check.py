#!/usr/bin/env python3
"""The CloudWatch Embedded Metric Format lines a Lambda function wrote on stdout (its log, mixed with the JSON
log lines), checked against the members the EMF specification requires, and the registrations they count:
`emf_check.py LOG NAMESPACE MIN_ASSIGNED MIN_FUEL` fails unless every `_aws` line is valid, at least MIN_ASSIGNED
records were written with Outcome=assigned and at least MIN_FUEL WebAssembly policy runs reported their fuel."""

import json
import sys


def check(line):
    aws = line["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000, aws
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives, aws
    for directive in directives:
        assert isinstance(directive["Namespace"], str) and 0 < len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(line.get(name), str), f"dimension {name} is a string member: {line}"
        metrics = directive["Metrics"]
        assert 0 < len(metrics) <= 100
        for metric in metrics:
            assert isinstance(line.get(metric["Name"]), (int, float)), f"metric {metric['Name']}: {line}"
    return directives[0]["Namespace"]


def main():
    log, namespace, min_assigned, min_fuel = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    lines = []
    with open(log, encoding="utf-8", errors="replace") as f:
        for text in f:
            text = text.strip()
            if not text.startswith("{"):
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                continue
            if "_aws" in value:
                lines.append(value)
    assert lines, f"no EMF line in {log}"
    for line in lines:
        assert check(line) == namespace, line
    assigned = sum(1 for l in lines if "Registrations" in l and l.get("Outcome") == "assigned")
    requests = sum(1 for l in lines if "Requests" in l)
    assert assigned >= min_assigned, f"{assigned} assigned registrations counted, expected at least {min_assigned}"
    assert requests >= assigned, f"{requests} requests counted for {assigned} registrations"
    fuel = [l["CustomAllocationFuel"] for l in lines if "CustomAllocationFuel" in l]
    assert len(fuel) >= min_fuel and all(f > 0 for f in fuel), f"fuel reported by {len(fuel)} policy runs: {fuel}"
    names = {key for l in lines for key in l if key in ("RegistrationId", "registrationId", "DeviceId")}
    assert not names, f"a device identifier became a member: {names}"
    print(f"emf_check: {len(lines)} EMF lines valid; {assigned} assigned registrations, {requests} requests, "
          f"{len(fuel)} policy runs with fuel")


if __name__ == "__main__":
    main()
