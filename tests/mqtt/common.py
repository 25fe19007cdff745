"""What the MQTT suite's scripts share: the running server's coordinates (from run.sh), SAS tokens, the service
API over HTTPS, and a raw paho client for the cases the SDKs never produce."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import ssl
import time
import urllib.parse

import paho.mqtt.client as mqtt

SCOPE = os.environ["ID_SCOPE"]
CA = os.environ["CA_FILE"]
CONNECTION_STRING = os.environ["CONNECTION_STRING"]
HTTPS_PORT = int(os.environ["HTTPS_PORT"])
MQTT_PORT = int(os.environ["MQTT_PORT"])
HUB_A = os.environ["HUB_A"]
HUB_B = os.environ["HUB_B"]
API = "2019-03-31"
RESPONSE_FILTER = "$dps/registrations/res/#"


def ca_text():
    with open(CA) as f:
        return f.read()


def tls_context(cert=None):
    """A client TLS context trusting the server's CA, presenting `cert` ((certificate file, key file)) if given."""
    ctx = ssl.create_default_context(cafile=CA)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def _conn_parts():
    return dict(part.split("=", 1) for part in CONNECTION_STRING.split(";"))


def service_token(ttl=3600):
    parts = _conn_parts()
    se = int(time.time()) + ttl
    sr = urllib.parse.quote(parts["HostName"], safe="")
    sig = base64.b64encode(hmac.new(base64.b64decode(parts["SharedAccessKey"]), f"{sr}\n{se}".encode(), hashlib.sha256).digest())
    return f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}&skn={parts['SharedAccessKeyName']}"


def device_token(registration_id, key, skn=True, ttl=3600):
    se = int(time.time()) + ttl
    sr = urllib.parse.quote(f"{SCOPE}/registrations/{registration_id}", safe="")
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest())
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    return token + "&skn=registration" if skn else token


def derive_key(group_key, registration_id):
    return base64.b64encode(hmac.new(base64.b64decode(group_key), registration_id.encode(), hashlib.sha256).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(32)).decode()


def https(method, path, body=None, headers=None, timeout=10, cert=None):
    """One request to the HTTPS listener (Host: localhost), presenting `cert` if given; returns (status, headers,
    parsed body)."""
    conn = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, context=tls_context(cert), timeout=timeout)
    conn._context.check_hostname = False  # the certificate names localhost; the address is 127.0.0.1
    try:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        h = {"Host": "localhost", "Accept": "application/json", **(headers or {})}
        if data is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        res = conn.getresponse()
        raw = res.read()
        return res.status, dict(res.getheaders()), (json.loads(raw) if raw else None)
    finally:
        conn.close()


def service(method, path, body=None, headers=None):
    sep = "&" if "?" in path else "?"
    return https(method, f"{path}{sep}api-version=2021-10-01", body, {"Authorization": service_token(), **(headers or {})})


def enroll(registration_id, key, **extra):
    body = {"registrationId": registration_id, "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}, **extra}
    status, _, answer = service("PUT", f"/enrollments/{registration_id}", body)
    assert status == 200, (status, answer)


def enroll_group(group_id, key):
    body = {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}}
    status, _, answer = service("PUT", f"/enrollmentGroups/{group_id}", body)
    assert status == 200, (status, answer)


def enroll_x509(registration_id, certificate_pem):
    body = {"registrationId": registration_id,
            "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": certificate_pem}}}}}
    status, _, answer = service("PUT", f"/enrollments/{registration_id}", body)
    assert status == 200, (status, answer)


def enroll_x509_group(group_id, signing_pem):
    body = {"enrollmentGroupId": group_id,
            "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": signing_pem}}}}}
    status, _, answer = service("PUT", f"/enrollmentGroups/{group_id}", body)
    assert status == 200, (status, answer)


def record_status(registration_id):
    """HTTP status of the service API's registration record (404: none was stored)."""
    return service("GET", f"/registrations/{registration_id}")[0]


class Device:
    """A raw MQTT 3.1.1 client (paho) for one registration ID: what arrives is queued for the test to read."""

    def __init__(self, registration_id, password, user=None, client_id=None, api=API, protocol=mqtt.MQTTv311,
                 subscribe=True, keepalive=60, clean_session=True, cert=None):
        self.registration_id = registration_id
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.disconnected = queue.Queue()
        kwargs = {} if protocol == mqtt.MQTTv5 else {"clean_session": clean_session}
        self.client = mqtt.Client(client_id=client_id if client_id is not None else registration_id, protocol=protocol, **kwargs)
        user = user if user is not None else f"{SCOPE}/registrations/{registration_id}/api-version={api}&ClientVersion=raw-test"
        self.client.username_pw_set(user, password)
        ctx = tls_context(cert)
        ctx.check_hostname = False
        self.client.tls_set_context(ctx)
        self.client.on_connect = lambda c, u, flags, rc, *rest: self.connack.put(rc)
        self.client.on_message = lambda c, u, msg: self.messages.put((msg.topic, msg.payload))
        self.client.on_subscribe = lambda c, u, mid, granted, *rest: self.subacks.put(granted)
        self.client.on_disconnect = lambda c, u, rc, *rest: self.disconnected.put(rc)
        self.keepalive = keepalive
        self.subscribe_on_connect = subscribe

    def connect(self, timeout=10):
        """Connect and return the CONNACK code (and subscribe to the response topics when accepted)."""
        self.client.connect("127.0.0.1", MQTT_PORT, keepalive=self.keepalive)
        self.client.loop_start()
        rc = self.connack.get(timeout=timeout)
        if rc == 0 and self.subscribe_on_connect:
            self.client.subscribe(RESPONSE_FILTER, qos=1)
            self.subacks.get(timeout=timeout)
        return rc

    def ask(self, topic, payload, qos=1, timeout=15):
        """Publish and return the answer: (status, query parameters, JSON body)."""
        self.client.publish(topic, payload, qos=qos)
        return self.answer(timeout)

    def answer(self, timeout=15):
        topic, payload = self.messages.get(timeout=timeout)
        return parse_response(topic, payload)

    def register(self, rid, body=None, qos=1):
        body = body if body is not None else {"registrationId": self.registration_id}
        return self.ask(f"$dps/registrations/PUT/iotdps-register/?$rid={rid}", json.dumps(body), qos)

    def close(self):
        try:
            self.client.disconnect()
        except OSError:
            pass  # the server already closed it
        finally:
            self.client.loop_stop()


def parse_response(topic, payload):
    prefix = "$dps/registrations/res/"
    assert topic.startswith(prefix), topic
    status, _, query = topic[len(prefix):].partition("/?")
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    return int(status), params, json.loads(payload)
