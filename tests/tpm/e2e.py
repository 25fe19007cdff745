"""A TPM device over HTTPS against the real `dps` binary: what Azure DPS TPM attestation asks of a device, done with
a software TPM (swtpm through tpm2-pytss), and the refusals a hostile or broken device meets.

The server runs on a free 127.0.0.1 port with its own data dir and a short TPM challenge lifetime (so that the
expiry case takes seconds). Every refusal is checked for its status and message, and for leaving nothing stored.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from urllib.parse import quote

from softtpm import SoftTpm, free_port_pair, sas_token

DPS = os.environ["DPS_BIN"]
TTL = 4  # seconds a TPM challenge lives in this run
failures = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def dps(data_dir, *args):
    out = subprocess.run([DPS, *args, "--data-dir", data_dir], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"dps {' '.join(args)}: {out.stderr}")
    return out.stdout


class Server:
    def __init__(self, data_dir, port):
        self.port = port
        self.proc = subprocess.Popen(
            [DPS, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}", "--print-json",
             "--log-format", "json", "--tpm-challenge-ttl", str(TTL)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("dps did not start: " + self.proc.stderr.read())
        self.info = json.loads(line)
        self.ctx = ssl.create_default_context(cafile=self.info["caCertificate"])

    def request(self, method, path, body=None, headers=None, host="localhost"):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        try:
            all_headers = {"Host": host, "Content-Type": "application/json; charset=utf-8",
                           "Accept": "application/json", **(headers or {})}
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return response.status, parsed
        finally:
            conn.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, logs = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, logs = self.proc.communicate()
        return self.proc.returncode, logs


def service_auth(connection_string):
    parts = dict(p.split("=", 1) for p in connection_string.split(";"))
    sr = quote(parts["HostName"], safe="")
    se = int(time.time()) + 3600
    sig = base64.b64encode(hmac.new(base64.b64decode(parts["SharedAccessKey"]), f"{sr}\n{se}".encode(),
                                    hashlib.sha256).digest()).decode()
    token = f"SharedAccessSignature sr={sr}&sig={quote(sig, safe='')}&se={se}&skn={parts['SharedAccessKeyName']}"
    return parts["HostName"], {"Authorization": token}


def main():
    started = time.monotonic()
    data_dir = tempfile.mkdtemp(prefix="dps-tpm-e2e-")
    dps(data_dir, "hub", "link", "--instance", "default", "--host", "hub-a.example.net")
    dps(data_dir, "instance", "create", "--name", "other", "--host", "other.example.net")
    other = json.loads(dps(data_dir, "instance", "show", "other", "--json"))
    server = Server(data_dir, free_port_pair())
    scope = server.info["idScope"]
    host, auth = service_auth(server.info["connectionString"])
    other_host, other_auth = service_auth(other["connectionString"])
    api = "api-version=2021-06-01"
    signatures = []

    def register(tpm_body, registration_id, authorization=None, id_scope=scope):
        headers = {"Authorization": authorization} if authorization else {}
        body = {"registrationId": registration_id, "tpm": tpm_body}
        return server.request("PUT", f"/{id_scope}/registrations/{registration_id}/register?{api}", body, headers)

    def record(registration_id, on=(None, None)):
        h, a = on if on[0] else (host, auth)
        return server.request("GET", f"/registrations/{registration_id}?api-version=2021-10-01", headers=a, host=h)

    def enroll(registration_id, ek, srk=None):
        tpm = {"endorsementKey": ek, **({"storageRootKey": srk} if srk else {})}
        body = {"registrationId": registration_id, "attestation": {"type": "tpm", "tpm": tpm}}
        return server.request("PUT", f"/enrollments/{registration_id}?api-version=2021-10-01", body, auth, host)

    def signed(tpm, handle, registration_id, id_scope=scope, **kw):
        token = sas_token(tpm, handle, id_scope, registration_id, **kw)
        signatures.append(token.split("sig=")[1].split("&")[0])
        return token

    try:
        with SoftTpm() as a, SoftTpm(srk_unique_zeros=False) as b:
            body_a = {"endorsementKey": a.ek_b64(), "storageRootKey": a.srk_b64()}
            body_b = {"endorsementKey": b.ek_b64(), "storageRootKey": b.srk_b64()}
            status, e = enroll("tpm-device-a", a.ek_b64())
            check("service API creates a TPM enrollment", status == 200 and e["attestation"]["type"] == "tpm", e)
            status, e = enroll("tpm-device-b", b.ek_b64(), b.srk_b64())
            check("service API creates a TPM enrollment naming its SRK", status == 200, e)
            status, e = enroll("tpm-bad", a.srk_b64())
            check("an enrollment whose EK is an SRK is refused", status == 400 and "not an endorsement key"
                  in e["message"], e)
            status, m = server.request("POST", "/enrollments/tpm-device-a/attestationmechanism?api-version=2021-10-01",
                                       None, auth, host)
            check("attestationmechanism returns the EK", status == 200 and m["tpm"]["endorsementKey"] == a.ek_b64(), m)

            # The device's flow: challenge, ActivateCredential + Import, SAS signed in the TPM, register again.
            status, challenge = register(body_a, "tpm-device-a")
            check("register without Authorization answers 401 with authenticationKey",
                  status == 401 and "authenticationKey" in challenge and challenge.get("keyName") == "registration",
                  (status, challenge))
            handle = a.import_key(challenge["authenticationKey"])
            token = signed(a, handle, "tpm-device-a")
            status, answer = register(body_a, "tpm-device-a", token)
            state = answer.get("registrationState", {}) if isinstance(answer, dict) else {}
            check("the TPM-signed register is assigned", status == 202 and answer.get("status") == "assigned"
                  and state.get("assignedHub") == "hub-a.example.net" and state.get("deviceId") == "tpm-device-a",
                  (status, answer))
            hub_blob = state.get("tpm", {}).get("authenticationKey")
            check("registrationState.tpm.authenticationKey is given", bool(hub_blob), state)
            msg = b"hub-a.example.net%2Fdevices%2Ftpm-device-a\n1700000000"
            expected = a.hmac(handle, msg)
            a.flush(handle)  # swtpm holds three transient objects: EK, SRK and one key
            if hub_blob:
                again = a.import_key(hub_blob)
                check("the assigned authenticationKey imports into the device's TPM", a.hmac(again, msg) == expected)
                a.flush(again)
            status, op = server.request("GET", f"/{scope}/registrations/tpm-device-a/operations/"
                                        f"{answer.get('operationId')}?{api}", headers={"Authorization": token})
            check("operation status with the TPM-signed SAS", status == 200 and op["status"] == "assigned", op)
            _, stored = record("tpm-device-a")
            check("the service API shows the record", stored.get("status") == "assigned", stored)

            # Replays and other keys.
            status, e = register(body_a, "tpm-device-a", token)
            check("a replayed challenge is refused", status == 401 and "already used" in e["message"], e)
            status, _ = register(body_a, "tpm-device-a")
            forged = "SharedAccessSignature " + token.split(" ", 1)[1].split("sig=")[0] + "sig=" + quote(
                base64.b64encode(hmac.new(secrets.token_bytes(32), b"x", hashlib.sha256).digest()).decode(), safe="") \
                + "&se=" + token.split("se=")[1]
            status, e = register(body_a, "tpm-device-a", forged)
            check("a SAS signed with another key is refused", status == 401 and "not signed with the key"
                  in e["message"], e)
            _, after = record("tpm-device-a")
            check("refusals leave the record as it was", after.get("etag") == stored.get("etag"), after)

            # Bad keys.
            status, e = register({"endorsementKey": a.srk_b64(), "storageRootKey": a.srk_b64()}, "tpm-device-a")
            check("an EK that is not an EK template is refused", status == 400 and "not an endorsement key"
                  in e["message"], e)
            status, e = register({"endorsementKey": "not/base64!", "storageRootKey": a.srk_b64()}, "tpm-device-a")
            check("a malformed EK is refused", status == 400 and "base64" in e["message"], e)
            raw = base64.b64decode(a.ek_b64())
            status, e = register({"endorsementKey": base64.b64encode(raw[:-7]).decode(),
                                  "storageRootKey": a.srk_b64()}, "tpm-device-a")
            check("a truncated EK is refused", status == 400 and "truncated" in e["message"], e)
            status, e = register({"endorsementKey": "A" * 20000, "storageRootKey": a.srk_b64()}, "tpm-device-a")
            check("an oversized EK is refused", status == 400 and "larger than" in e["message"], e)
            status, e = register(body_b, "tpm-device-a")
            check("another TPM's EK gets no challenge", status == 401 and "endorsement key" in e["message"], e)
            status, e = register({**body_b, "storageRootKey": a.srk_b64()}, "tpm-device-b")
            check("an SRK other than the enrolled one is refused", status == 401 and "storage root key"
                  in e["message"], e)
            # Without an enrolled SRK the server cannot tell: the key goes to the SRK named, and the TPM refuses it.
            status, c = register({**body_a, "storageRootKey": b.srk_b64()}, "tpm-device-a")
            try:
                a.import_key(c["authenticationKey"])
                check("a key wrapped for a wrong SRK cannot be activated", False, "it imported")
            except Exception:
                check("a key wrapped for a wrong SRK cannot be activated", status == 401)

            # Device B registers with its enrolled SRK (the C/Node SDK SRK template).
            status, c = register(body_b, "tpm-device-b")
            hb = b.import_key(c["authenticationKey"])
            status, answer = register(body_b, "tpm-device-b", signed(b, hb, "tpm-device-b"))
            check("a device with an enrolled SRK is assigned", status == 202 and answer["status"] == "assigned", answer)
            b.flush(hb)

            # Expiry: a challenge answered too late.
            _, c = register(body_a, "tpm-device-a")
            ha = a.import_key(c["authenticationKey"])
            time.sleep(TTL + 1)
            status, e = register(body_a, "tpm-device-a", signed(a, ha, "tpm-device-a"))
            check("an expired challenge is refused", status == 401 and "expired" in e["message"], e)
            a.flush(ha)

            # Another instance's ID scope knows nothing of these enrollments or keys.
            status, e = register(body_a, "tpm-device-a", id_scope=other["idScope"])
            check("a TPM enrollment does not admit in another instance", status == 401, e)
            status, _ = record("tpm-device-a", (other_host, other_auth))
            check("nothing is stored in the other instance", status == 404)
            status, _ = record("tpm-bad")
            check("no record for refused devices", status == 404)
    finally:
        code, logs = server.stop()
    check("dps exits cleanly", code == 0, code)
    leaked = [s for s in signatures if s in logs]
    check("no SAS signature appears in the logs", not leaked)
    print(f"e2e: {len(failures)} failure(s) in {time.monotonic() - started:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
