"""What the Python client suite shares: the running server's coordinates (from run.sh), SAS tokens, and plain HTTPS
calls for what the official service clients do not cover (our /config/certificates extension, device
registrations)."""

import base64
import hashlib
import hmac
import os
import time
import urllib.parse

import requests

PORT = int(os.environ["DPS_PORT"])
CA = os.environ["CA_FILE"]
SCOPE = os.environ["ID_SCOPE"]
HUB = os.environ["HUB"]
# The SDKs build `https://{HostName}`: a HostName with the port reaches the ephemeral listener unchanged.
HOST = f"localhost:{PORT}"
CONNECTION_STRING = os.environ["CONNECTION_STRING"].replace("HostName=localhost;", f"HostName={HOST};")
SERVICE_API = "2021-10-01"
DEVICE_API = "2021-06-01"
# A software TPM's public EK and SRK (how they were made: the comments in each file).
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tpm")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return "".join(line.strip() for line in f if not line.startswith("#"))


def _parts():
    return dict(p.split("=", 1) for p in CONNECTION_STRING.split(";"))


def new_key():
    return base64.b64encode(os.urandom(32)).decode()


def derive_key(group_key, registration_id):
    return base64.b64encode(hmac.new(base64.b64decode(group_key), registration_id.encode(), hashlib.sha256).digest()).decode()


def _sas(resource, key, skn=None, ttl=3600):
    se = int(time.time()) + ttl
    sr = urllib.parse.quote(resource, safe="")
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    return token + (f"&skn={skn}" if skn else "")


def service(method, path, body=None):
    """A service API call signed with the owner connection string; returns the requests.Response."""
    p = _parts()
    sep = "&" if "?" in path else "?"
    return requests.request(method, f"https://{HOST}{path}{sep}api-version={SERVICE_API}", json=body, verify=CA,
                            headers={"Authorization": _sas(p["HostName"], p["SharedAccessKey"], p["SharedAccessKeyName"])},
                            timeout=10)


def register(registration_id, key=None, cert=None):
    """A device registration over HTTPS: with a SAS token from `key`, or presenting `cert` ((cert file, key file))
    in the TLS handshake. Returns the requests.Response."""
    headers = {"Authorization": _sas(f"{SCOPE}/registrations/{registration_id}", key, "registration")} if key else {}
    return requests.put(f"https://{HOST}/{SCOPE}/registrations/{registration_id}/register?api-version={DEVICE_API}",
                        json={"registrationId": registration_id}, headers=headers, cert=cert, verify=CA, timeout=10)


def upload_verified_ca(name, ca, make_cert):
    """Upload `ca` as the instance's CA certificate `name` and prove possession (our /config/certificates
    extension): a certificate signed by it whose CN is the verification code. Returns the verified record."""
    up = service("PUT", f"/config/certificates/{name}", {"certificate": ca.pem})
    assert up.status_code == 200, up.text
    assert up.json()["isVerified"] is False
    proof = make_cert(up.json()["verificationCode"], issuer=ca)
    verified = service("POST", f"/config/certificates/{name}/verify", {"certificate": proof.pem})
    assert verified.status_code == 200, verified.text
    assert verified.json()["isVerified"] is True
    return verified.json()
