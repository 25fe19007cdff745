#!/usr/bin/env python3
"""Cold-start init time of Lambda binaries, measured locally: from process start (spawn) to the binary's first
poll of the Lambda runtime API (`GET /2018-06-01/runtime/invocation/next`), which is the moment it is ready to
serve. A stand-in runtime API on 127.0.0.1 records that moment and never hands out an event.

Each binary also logs its own view (`init_micros` on its "ready" line: from the top of main to just before the
runtime loop); both are printed. Usage: coldstart.py [--runs N] [--env K=V ...] BINARY...
"""

import argparse
import http.server
import json
import os
import statistics
import subprocess
import threading
import time

NEXT = "/2018-06-01/runtime/invocation/next"


class RuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.polled = threading.Event()
        self.polled_at = None
        self.release = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == NEXT and not self.server.polled.is_set():
            self.server.polled_at = time.perf_counter()
            self.server.polled.set()
        # Hold the long poll, as the real runtime API does while no event is waiting.
        self.server.release.wait(30)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def measure(binary, extra_env):
    api = RuntimeApi()
    thread = threading.Thread(target=api.serve_forever, daemon=True)
    thread.start()
    env = dict(os.environ)
    env.update(extra_env)
    env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{api.server_address[1]}"
    env.setdefault("AWS_LAMBDA_FUNCTION_NAME", os.path.basename(binary))
    env.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    env.setdefault("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    started = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if not api.polled.wait(30):
            raise SystemExit(f"{binary} never polled the runtime API")
        init_ms = (api.polled_at - started) * 1000
    finally:
        api.release.set()
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        api.shutdown()
        api.server_close()
    own = None
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "ready":
            own = record.get("init_micros", 0) / 1000
    return init_ms, own


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the function")
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.env)
    extra.setdefault("DPS_TABLE_NAME", "coldstart")
    extra.setdefault("AWS_REGION", "us-east-1")
    for binary in args.binaries:
        runs = [measure(binary, extra) for _ in range(args.runs)]
        total = [r[0] for r in runs]
        own = [r[1] for r in runs if r[1] is not None]
        size = os.path.getsize(binary) / 1e6
        print(
            f"coldstart: {os.path.basename(binary)} ({size:.1f} MB): process start -> first runtime poll "
            f"median {statistics.median(total):.1f} ms (min {min(total):.1f}, max {max(total):.1f}, {len(total)} runs); "
            f"main -> ready median {statistics.median(own) if own else float('nan'):.1f} ms"
        )


if __name__ == "__main__":
    main()
