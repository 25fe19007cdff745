"""A recording stand-in for an Azure IoT Hub registry (HTTPS, stdlib only).

It answers each registry call plausibly (the device or twin JSON the REST API returns) so that the official
service SDKs proceed, and appends what they sent to a JSON-lines file: method, path, query, headers, body.
Usage: recorder.py PORT CERT KEY OUT. record.sh drives the SDKs against it.
"""

import json
import os
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from azure_reply import send_json  # noqa: E402  (tests/hubs/azure_reply.py, shared with azure_standin.py)

DEVICE_ETAG = "MTIzNDU2Nzg5"
TWIN_ETAG = "AAAAAAAAAAE="


def device(device_id, sent):
    auth = (sent or {}).get("authentication") or {"type": "sas"}
    return {
        "deviceId": device_id,
        "generationId": "638000000000000000",
        "etag": DEVICE_ETAG,
        "connectionState": "Disconnected",
        "status": "enabled",
        "statusReason": None,
        "connectionStateUpdatedTime": "0001-01-01T00:00:00Z",
        "statusUpdatedTime": "0001-01-01T00:00:00Z",
        "lastActivityTime": "0001-01-01T00:00:00Z",
        "cloudToDeviceMessageCount": 0,
        "authentication": auth,
        "capabilities": (sent or {}).get("capabilities") or {"iotEdge": False},
    }


def twin(device_id):
    return {
        "deviceId": device_id,
        "etag": TWIN_ETAG,
        "deviceEtag": DEVICE_ETAG,
        "status": "enabled",
        "version": 2,
        "tags": {"site": "lab"},
        "properties": {
            "desired": {"interval": 30, "$metadata": {"$lastUpdated": "2024-01-01T00:00:00Z"}, "$version": 1},
            "reported": {"$metadata": {"$lastUpdated": "2024-01-01T00:00:00Z"}, "$version": 1},
        },
        "capabilities": {"iotEdge": False},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = {
            "method": self.command,
            "path": url.path,
            "query": dict(urllib.parse.parse_qsl(url.query)),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        with open(self.server.out, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        status, answer = 404, {"Message": "ErrorCode:DeviceNotFound;not recorded"}
        if len(parts) == 2 and parts[0] == "devices":
            if self.command == "DELETE":
                status, answer = 204, None
            else:
                status, answer = 200, device(parts[1], body)
        elif len(parts) == 2 and parts[0] == "twins":
            status, answer = 200, twin(parts[1])
        send_json(self, status, answer)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = handle_any

    def log_message(self, *args):
        pass


def main():
    port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.out = out
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
