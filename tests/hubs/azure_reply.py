"""The JSON answer of the Azure IoT Hub registry stand-ins (stdlib only), shared by azure_standin.py (next to
it) and azure/recorder.py (which puts this directory on sys.path)."""

import json


def send_json(handler, status, document=None):
    """Answer the request of `handler` (a BaseHTTPRequestHandler) with `status` and `document` as the registry's
    JSON, or no body when `document` is None."""
    data = json.dumps(document).encode() if document is not None else b""
    handler.send_response(status)
    if data:
        handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
