#!/usr/bin/env python3
"""A stand-in Azure IoT Hub registry for tests/hubs/run.sh (plain HTTP on 127.0.0.1, Python stdlib only).

It answers the registry REST calls the azureIotHub connector makes (api-version 2021-04-12) as the REST API
documents them, and keeps what it was told:

    PUT    /devices/{id}   create (409 DeviceAlreadyExists when it exists and no If-Match is sent);
                           update with If-Match: "{etag}" or "*" (412 on a stale etag, 404 if absent)
    GET    /devices/{id}   the device with its etag (404 if absent)
    DELETE /devices/{id}   If-Match "*" or the etag; 204 (404 if absent)
    GET    /twins/{id}     the twin with etag, tags, desired (+ $metadata, $version) and reported
    PATCH  /twins/{id}     merge patch of tags and desired (null removes), If-Match checked (412)

Every call must carry `api-version=2021-04-12` and `Authorization: SharedAccessSignature sr=..&sig=..&se=..&skn=..`
for the hub's host name, signed with the policy's key (HMAC-SHA256 of "{sr}\\n{se}"), not expired; else 400/401.

Test-only, no authorization: `GET /_standin/state` (every device and twin held) and `GET /_standin/requests`
(method, path, status of each registry call, in order).

    azure_standin.py --port PORT --host-name HUB --policy registryReadWrite --key BASE64KEY
"""

import argparse
import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from azure_reply import send_json

API_VERSION = "2021-04-12"
lock = threading.Lock()
devices = {}  # deviceId -> device document (as the registry answers it)
twins = {}  # deviceId -> {"tags", "desired", "version"}
requests = []  # {"method", "path", "status"}
counter = itertools.count(1)


def new_etag():
    return base64.b64encode(f"etag-{next(counter)}".encode()).decode()


def error(code, message):
    return {"Message": f"ErrorCode:{code};{message}", "ExceptionMessage": ""}


def merge(target, patch):
    """A twin merge patch: objects merge, null removes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        elif isinstance(value, dict):
            target[key] = {}
            merge(target[key], value)
        else:
            target[key] = value


def twin_document(device_id):
    device, twin = devices[device_id], twins[device_id]
    desired = dict(twin["desired"])
    desired["$metadata"] = {"$lastUpdated": "2026-01-01T00:00:00Z"}
    desired["$version"] = twin["version"]
    return {
        "deviceId": device_id,
        "etag": twin["etag"],
        "deviceEtag": device["etag"],
        "status": device["status"],
        "version": twin["version"],
        "tags": twin["tags"],
        "properties": {"desired": desired, "reported": {"$metadata": {}, "$version": 1}},
        "capabilities": device["capabilities"],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per answer: headers and body in separate segments stall 40 ms (Nagle + delayed ACK)

    def answer(self, status, document=None):
        send_json(self, status, document)
        return status

    def authorized(self):
        """None when the Authorization header is a valid SAS token for this hub, else why not."""
        value = self.headers.get("Authorization", "")
        if not value.startswith("SharedAccessSignature "):
            return "not a SharedAccessSignature"
        fields = dict(part.split("=", 1) for part in value[len("SharedAccessSignature ") :].split("&") if "=" in part)
        if set(fields) != {"sr", "sig", "se", "skn"}:
            return "token fields are not sr, sig, se, skn"
        if urllib.parse.unquote(fields["sr"]).lower() != self.server.hub.lower():
            return "token is for another resource"
        if fields["skn"] != self.server.policy:
            return "unknown policy"
        if not fields["se"].isdigit() or int(fields["se"]) < time.time():
            return "token expired"
        mac = hmac.new(self.server.key, f"{fields['sr']}\n{fields['se']}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(mac).decode(), urllib.parse.unquote(fields["sig"])):
            return "bad signature"
        return None

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "GET" and url.path == "/_standin/state":
            with lock:
                state = {i: {"device": devices[i], "twin": twin_document(i)} for i in devices}
            return self.answer(200, state)
        if self.command == "GET" and url.path == "/_standin/requests":
            with lock:
                return self.answer(200, list(requests))
        status = self.registry(url, body)
        with lock:
            requests.append({"method": self.command, "path": url.path, "status": status})

    def registry(self, url, body):
        query = dict(urllib.parse.parse_qsl(url.query))
        if query.get("api-version") != API_VERSION:
            return self.answer(400, error("InvalidProtocolVersion", f"api-version must be {API_VERSION}"))
        refused = self.authorized()
        if refused:
            return self.answer(401, error("IotHubUnauthorizedAccess", refused))
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if len(parts) != 2 or parts[0] not in ("devices", "twins"):
            return self.answer(404, error("NotFound", "no such resource"))
        kind, device_id = parts
        if_match = self.headers.get("If-Match")
        with lock:
            exists = device_id in devices
            if kind == "devices" and self.command == "PUT":
                sent = json.loads(body or b"{}")
                if sent.get("deviceId") != device_id:
                    return self.answer(400, error("ArgumentInvalid", "deviceId differs from the path"))
                if exists and if_match is None:
                    return self.answer(409, error("DeviceAlreadyExists", f"A device with ID '{device_id}' exists"))
                if not exists and if_match is not None:
                    return self.answer(404, error("DeviceNotFound", device_id))
                if exists and if_match not in ('"*"', "*", f'"{devices[device_id]["etag"]}"'):
                    return self.answer(412, error("PreconditionFailed", "stale etag"))
                devices[device_id] = {
                    "deviceId": device_id,
                    "generationId": devices[device_id]["generationId"] if exists else str(next(counter)),
                    "etag": new_etag(),
                    "status": sent.get("status", "enabled"),
                    "authentication": sent.get("authentication"),
                    "capabilities": sent.get("capabilities") or {"iotEdge": False},
                    "connectionState": "Disconnected",
                }
                if not exists:
                    twins[device_id] = {"etag": new_etag(), "tags": {}, "desired": {}, "version": 1}
                return self.answer(200, devices[device_id])
            if not exists:
                return self.answer(404, error("DeviceNotFound", device_id))
            if kind == "devices" and self.command == "GET":
                return self.answer(200, devices[device_id])
            if kind == "devices" and self.command == "DELETE":
                if if_match not in ('"*"', "*", f'"{devices[device_id]["etag"]}"'):
                    return self.answer(412, error("PreconditionFailed", "stale etag"))
                del devices[device_id], twins[device_id]
                return self.answer(204)
            if kind == "twins" and self.command == "GET":
                return self.answer(200, twin_document(device_id))
            if kind == "twins" and self.command == "PATCH":
                twin = twins[device_id]
                if if_match not in (None, '"*"', "*", f'"{twin["etag"]}"'):
                    return self.answer(412, error("PreconditionFailed", "stale twin etag"))
                patch = json.loads(body or b"{}")
                merge(twin["tags"], patch.get("tags") or {})
                merge(twin["desired"], (patch.get("properties") or {}).get("desired") or {})
                twin["etag"], twin["version"] = new_etag(), twin["version"] + 1
                return self.answer(200, twin_document(device_id))
        return self.answer(405, error("MethodNotAllowed", self.command))

    do_GET = do_PUT = do_PATCH = do_DELETE = handle_any

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host-name", required=True, help="the hub's host name tokens must be signed for")
    parser.add_argument("--policy", default="registryReadWrite")
    parser.add_argument("--key", required=True, help="the policy's key, base64")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.hub, server.policy, server.key = args.host_name, args.policy, base64.b64decode(args.key)
    print(f"azure stand-in for {args.host_name} listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
