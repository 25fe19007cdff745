"""Checks the service API's OpenAPI document against the OpenAPI 3.1 schema and against real answers.

    openapi_check.py DOCUMENT [SAMPLES]

1. DOCUMENT is valid OpenAPI 3.1 (openapi-spec-validator).
2. Every schema example validates against its schema.
3. SAMPLES (written by functions/api/tests/api/openapi.rs) is a JSON array of answers the router gave:
   {"method", "uri", "status", "headers": {name: value}, "body"}. Each is matched to its documented operation
   (literal segments in any case, as the router normalises them); its status must be documented (or fall to
   `default`), its required headers present, and its body valid against the documented schema. For this check
   object schemas are closed (`unevaluatedProperties: false` where the schema does not say otherwise), so a
   field the service sends but the document does not name fails it. A 405 on a documented path (a method it
   does not have) must be the error body with `Allow`. Operations no sample reached are listed, and fail the
   check.

Exit status 0 when everything holds; otherwise every problem is printed and the status is 1.
"""

import copy
import json
import sys
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
BASE = "urn:dps:openapi"


def close(schema):
    """Close the object schemas under `schema` (in place), recursing through the keywords that hold schemas."""
    if not isinstance(schema, dict):
        return
    for sub in schema.get("properties", {}).values():
        close(sub)
    for key in ("items", "additionalProperties", "not"):
        close(schema.get(key))
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        for sub in schema.get(key, []):
            close(sub)
    if "properties" in schema and "additionalProperties" not in schema and "unevaluatedProperties" not in schema:
        schema["unevaluatedProperties"] = False


def pointer(*parts):
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Checker:
    def __init__(self, doc):
        self.doc = doc
        closed = copy.deepcopy(doc)
        for schema in closed["components"]["schemas"].values():
            close(schema)
        resource = Resource.from_contents(closed, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(BASE, resource)
        self.problems = []

    def errors(self, schema_pointer, instance):
        validator = Draft202012Validator({"$ref": BASE + "#" + schema_pointer}, registry=self.registry)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(instance)]

    def resolve(self, location, node):
        """The node and its JSON pointer, following one `$ref`."""
        ref = node.get("$ref") if isinstance(node, dict) else None
        if ref:
            target = ref[1:]
            node = self.doc
            for part in target.strip("/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            return target, node
        return location, node

    def check_examples(self):
        for name, schema in self.doc["components"]["schemas"].items():
            for i, example in enumerate(schema.get("examples", [])):
                for e in self.errors(pointer("components", "schemas", name), example):
                    self.problems.append(f"example {i} of {name}: {e}")

    def match(self, method, path):
        """The documented path template for a concrete path, literal segments preferred over parameters."""
        segments = [s for s in path.split("/") if s]
        best = None
        for template, item in self.doc["paths"].items():
            if method is not None and method not in item:
                continue
            parts = [s for s in template.split("/") if s]
            if len(parts) != len(segments):
                continue
            params = 0
            for want, got in zip(parts, segments):
                if want.startswith("{"):
                    params += 1
                elif want.lower() != got.lower():
                    break
            else:
                if best is None or params < best[0]:
                    best = (params, template)
        return best and best[1]

    def check_sample(self, sample, reached):
        method = sample["method"].lower()
        path = urlsplit(sample["uri"]).path
        what = f"{sample['method']} {sample['uri']} -> {sample['status']}"
        template = self.match(method, path)
        if template is None and sample["status"] == 405 and self.match(None, path):
            # A documented path, an undocumented method: the error table's 405 with `Allow`.
            if "allow" not in {k.lower() for k in sample["headers"]}:
                self.problems.append(f"{what}: a 405 without Allow")
            for e in self.errors(pointer("components", "responses", "Error", "content", "application/json", "schema"),
                                 sample.get("body")):
                self.problems.append(f"{what}: {e}")
            return
        if template is None:
            self.problems.append(f"{what}: no documented operation")
            return
        reached.add((method, template))
        responses = self.doc["paths"][template][method]["responses"]
        status = str(sample["status"])
        key = status if status in responses else "default"
        if key not in responses:
            self.problems.append(f"{what}: status {status} is not documented for {method.upper()} {template}")
            return
        location, response = self.resolve(pointer("paths", template, method, "responses", key), responses[key])
        if key == "default" and sample["status"] < 400:
            self.problems.append(f"{what}: a success answer falls to `default` for {method.upper()} {template}")
        headers = {k.lower(): v for k, v in sample["headers"].items()}
        for name, header in response.get("headers", {}).items():
            _, header = self.resolve("", header)
            if header.get("required") and name.lower() not in headers:
                self.problems.append(f"{what}: required header {name} missing")
        content = response.get("content", {})
        body = sample.get("body")
        if not content:
            if body is not None:
                self.problems.append(f"{what}: a body where the document says none")
            return
        if body is None:
            self.problems.append(f"{what}: no body where the document says {sorted(content)}")
            return
        media = "application/json"
        if media not in content:
            self.problems.append(f"{what}: a JSON body where the document says {sorted(content)}")
            return
        for e in self.errors(location + pointer("content", media, "schema"), body):
            self.problems.append(f"{what}: {e}")


def main(argv):
    with open(argv[1]) as f:
        doc = json.load(f)
    validate(doc)
    checker = Checker(doc)
    checker.check_examples()
    if len(argv) > 2:
        with open(argv[2]) as f:
            samples = json.load(f)
        reached = set()
        for sample in samples:
            checker.check_sample(sample, reached)
        documented = {(m, p) for p, item in doc["paths"].items() for m in METHODS if m in item}
        for method, path in sorted(documented - reached):
            checker.problems.append(
                f"no sample reached {method.upper()} {path} (add a call to functions/api/tests/api/openapi.rs)"
            )
        print(f"openapi_check: {len(samples)} answers checked, {len(reached)} of {len(documented)} operations reached")
    for problem in checker.problems:
        print(problem)
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
