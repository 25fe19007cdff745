"""Graceful shutdown drains MQTT connections: a registration in flight when the server gets SIGTERM is still
answered on its connection, then the server exits (run.sh checks the exit status)."""

import os
import signal
import sys
import threading

import common as c
from suite import EchoWebhook, allow_private_webhooks


def main():
    pid = int(os.environ["DPS_PID"])
    allow_private_webhooks()
    hook = EchoWebhook(delay=1.5)
    key = c.new_key()
    c.enroll("drain-1", key, allocationPolicy="custom",
             customAllocationDefinition={"webhookUrl": hook.url, "apiVersion": "2021-10-01"})
    d = c.Device("drain-1", c.device_token("drain-1", key))
    assert d.connect() == 0
    # SIGTERM once the webhook holds the registration: it is in flight.
    threading.Timer(0.7, lambda: os.kill(pid, signal.SIGTERM)).start()
    status, _, body = d.register(1)
    assert status == 202 and body["status"] == "assigned", (status, body)
    assert d.disconnected.get(timeout=15) is not None, "the server closes the connection after the answer"
    hook.close()
    print("shutdown: the in-flight MQTT registration was answered, then the connection closed")


if __name__ == "__main__":
    sys.exit(main())
