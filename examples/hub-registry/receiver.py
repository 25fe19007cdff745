#!/usr/bin/env python3
"""A registry implementing the DPS HTTP registry contract (docs/hub-connectors.md), stdlib only.

Copy it and replace the in-memory dicts with your platform's registry. It verifies every request's signature,
refuses timestamps outside the replay window and nonces it has already seen within it.

    DPS_REGISTRY_SECRET=... python3 receiver.py --port 8443 [--cert cert.pem --key key.pem]

Without --cert it serves plain HTTP, which the provisioning service only uses to a loopback address.
"""

import argparse
import hashlib
import hmac
import json
import os
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WINDOW = 300  # seconds either way of our clock
SECRET = os.environ.get("DPS_REGISTRY_SECRET", "").encode()

devices = {}  # deviceId -> the device document the service sent
twins = {}  # deviceId -> {"tags": {...}, "properties": {"desired": {...}}}
seen_nonces = {}  # nonce -> timestamp, forgotten once outside the window
lock = threading.Lock()


def verify(method, path, headers, body):
    """None if the request is signed with our secret, fresh and not replayed; else why not."""
    try:
        timestamp = int(headers.get("X-Dps-Timestamp", ""))
    except ValueError:
        return "no timestamp"
    nonce = headers.get("X-Dps-Nonce", "")
    signature = headers.get("X-Dps-Signature", "")
    now = int(time.time())
    if abs(now - timestamp) > WINDOW:
        return "timestamp outside the replay window"
    to_sign = "\n".join(["v1", method, path, str(timestamp), nonce, hashlib.sha256(body).hexdigest()])
    expected = "v1=" + hmac.new(SECRET, to_sign.encode(), hashlib.sha256).hexdigest()
    if not nonce or not hmac.compare_digest(expected, signature):
        return "bad signature"
    with lock:
        for old in [n for n, t in seen_nonces.items() if abs(now - t) > WINDOW]:
            del seen_nonces[old]
        if nonce in seen_nonces:
            return "replayed"
        seen_nonces[nonce] = timestamp
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffer each answer and send it in one write: headers and body in two small writes on a kept-alive
    # connection stall about 40 ms each (Nagle's algorithm against delayed ACKs).
    wbufsize = -1

    def answer(self, status, document=None):
        data = json.dumps(document).encode() if document is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        refused = verify(self.command, self.path, self.headers, body)
        if refused:
            return self.answer(401, {"message": refused})
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.split("/")]
        # .../devices/{id} or .../devices/{id}/twin, under whatever base path the hub's url setting has
        if len(parts) >= 3 and parts[-2] == "devices":
            device_id, twin = parts[-1], False
        elif len(parts) >= 4 and parts[-3] == "devices" and parts[-1] == "twin":
            device_id, twin = parts[-2], True
        else:
            return self.answer(404, {"message": "no such resource"})
        with lock:
            if (self.command, twin) == ("PUT", False):
                devices[device_id] = json.loads(body)
                twins.setdefault(device_id, {"tags": {}, "properties": {"desired": {}}})
                return self.answer(200, devices[device_id])
            if (self.command, twin) == ("DELETE", False):
                devices.pop(device_id, None)
                twins.pop(device_id, None)
                return self.answer(204)
            if device_id not in devices:
                return self.answer(404, {"message": "no such device"})
            if (self.command, twin) == ("PUT", True):
                twins[device_id] = json.loads(body)
                return self.answer(200, twins[device_id])
            if (self.command, twin) == ("GET", True):
                return self.answer(200, twins[device_id])
        return self.answer(405, {"message": "method not allowed"})

    do_GET = do_PUT = do_DELETE = handle_any

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    if len(SECRET) < 32:
        raise SystemExit("set DPS_REGISTRY_SECRET to the hub's signing secret (32+ characters)")
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
