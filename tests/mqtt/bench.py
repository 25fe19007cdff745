"""Throughput, informational only (never asserted): registrations per second over MQTT and over HTTPS against the
same server, each registration as a device makes it (a new TLS connection; MQTT: CONNECT, SUBSCRIBE, PUBLISH,
answer; HTTPS: one PUT). Devices of one symmetric-key group, so no enrollment per device is needed."""

import json
import sys
import threading
import time

import common as c


def run(kind, count, workers, group_key):
    ids = [f"bench-{kind}-{i}" for i in range(count)]
    lock = threading.Lock()
    failures = []

    def one(registration_id):
        key = c.derive_key(group_key, registration_id)
        if kind == "mqtt":
            d = c.Device(registration_id, c.device_token(registration_id, key))
            try:
                assert d.connect() == 0
                status, _, body = d.register(1)
            finally:
                d.close()
        else:
            status, _, body = c.https("PUT", f"/{c.SCOPE}/registrations/{registration_id}/register?api-version={c.API}",
                                      {"registrationId": registration_id}, {"Authorization": c.device_token(registration_id, key)})
        if status != 202 or body.get("status") != "assigned":
            with lock:
                failures.append((registration_id, status))

    def worker(chunk):
        for registration_id in chunk:
            one(registration_id)

    chunks = [ids[i::workers] for i in range(workers)]
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    return count / took, failures


def main():
    count, workers = int(sys.argv[1]), int(sys.argv[2])
    group_key = c.new_key()
    c.enroll_group("bench", group_key)
    results = {}
    for kind in ("https", "mqtt"):
        rate, failures = run(kind, count, workers, group_key)
        results[kind] = round(rate, 1)
        if failures:
            print(f"bench: {len(failures)} {kind} registrations failed: {failures[:3]}")
    print(f"throughput ({count} first registrations, {workers} concurrent devices, new TLS connection each, "
          f"Python clients, debug build): HTTPS {results['https']}/s, MQTT {results['mqtt']}/s")
    print(json.dumps({"throughput": results}))


if __name__ == "__main__":
    main()
