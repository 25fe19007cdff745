"""End-to-end tests of the MQTT front door of a running `dps serve --mqtt-listen` (started by run.sh): the official
Python device SDK (azure-iot-device 2.14, ProvisioningDeviceClient, unmodified), and raw paho clients for the
client differences and the hostile cases."""

import http.client
import http.server
import json
import os
import socket
import ssl
import sys
import threading
import time
import unittest
import uuid

from azure.iot.device import X509, ProvisioningDeviceClient

import common as c

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import certs  # noqa: E402  (tests/python/certs.py: the test certificates, shared with the Python client suite)


def sdk_register(registration_id, key, payload=None):
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=c.SCOPE,
        symmetric_key=key,
        server_verification_cert=c.ca_text(),
    )
    if payload is not None:
        client.provisioning_payload = payload
    return client.register()


def sdk_register_x509(registration_id, cert_file, key_file):
    client = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=c.SCOPE,
        x509=X509(cert_file=cert_file, key_file=key_file),
        server_verification_cert=c.ca_text(),
    )
    return client.register()


class EchoWebhook:
    """An Azure-style custom allocation webhook: assigns HUB_B and echoes the device's payload."""

    def __init__(self, delay=0.0):
        hook = self
        self.requests = []
        self.delay = delay

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.requests.append(body)
                time.sleep(hook.delay)
                answer = json.dumps({"iotHubHostName": c.HUB_B, "payload": {"echo": body["deviceRuntimeContext"].get("payload")}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/allocate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def allow_private_webhooks():
    status, headers, config = c.service("GET", "/config")
    assert status == 200, config
    if config.get("allowPrivateWebhookTargets"):
        return
    status, _, answer = c.service("PUT", "/config", {**config, "allowPrivateWebhookTargets": True}, {"If-Match": config["etag"]})
    assert status == 200, answer


class PythonSdk(unittest.TestCase):
    def test_individual_enrollment(self):
        key = c.new_key()
        c.enroll("py-individual", key)
        result = sdk_register("py-individual", key)
        self.assertEqual(result.status, "assigned")
        self.assertIn(result.registration_state.assigned_hub, (c.HUB_A, c.HUB_B))
        self.assertEqual(result.registration_state.device_id, "py-individual")
        status, _, record = c.service("GET", "/registrations/py-individual")
        self.assertEqual((status, record["status"]), (200, "assigned"))

    def test_group_derived_key(self):
        group_key = c.new_key()
        c.enroll_group("py-group", group_key)
        result = sdk_register("py-group-dev-1", c.derive_key(group_key, "py-group-dev-1"))
        self.assertEqual(result.status, "assigned")
        self.assertEqual(result.registration_state.device_id, "py-group-dev-1")

    def test_payload_reaches_custom_allocation_and_comes_back(self):
        allow_private_webhooks()
        hook = EchoWebhook()
        try:
            key = c.new_key()
            c.enroll("py-payload", key, allocationPolicy="custom",
                     customAllocationDefinition={"webhookUrl": hook.url, "apiVersion": "2021-10-01"})
            result = sdk_register("py-payload", key, payload={"model": "pump", "fw": 7})
            self.assertEqual(result.status, "assigned")
            self.assertEqual(result.registration_state.assigned_hub, c.HUB_B, "the webhook chose the hub")
            # The SDK hands the payload over as JSON text.
            self.assertEqual(json.loads(result.registration_state.response_payload), {"echo": {"model": "pump", "fw": 7}})
        finally:
            hook.close()

    def test_a_wrong_key_fails_and_stores_nothing(self):
        c.enroll("py-wrong-key", c.new_key())
        with self.assertRaises(Exception) as caught:
            sdk_register("py-wrong-key", c.new_key())
        self.assertIn("401", str(caught.exception.__cause__ or caught.exception) + repr(caught.exception))
        self.assertEqual(c.record_status("py-wrong-key"), 404)


class PythonSdkX509(unittest.TestCase):
    """X.509 devices over MQTT with the official SDK: the certificate chain in the TLS handshake, no password."""

    def assertRecordedX509(self, result, files, leaf, group=None, signing=None):
        """The stored registration, as the device reads it back over MQTT (its operation status, presenting its
        certificate), carries `registrationState.x509` for `leaf` (and the group and the certificate validated to);
        the service API's record says assigned."""
        registration_id = result.registration_state.device_id
        d = c.Device(registration_id, None, cert=files)
        self.addCleanup(d.close)
        self.assertEqual(d.connect(), 0)
        topic = f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId={result.operation_id}"
        status, _, answer = d.ask(topic, " ")
        self.assertEqual((status, answer["status"]), (200, "assigned"), answer)
        x509 = answer["registrationState"]["x509"]
        self.assertEqual(x509["certificateInfo"]["sha256Thumbprint"], leaf.expected_info()["sha256Thumbprint"])
        self.assertEqual(x509.get("enrollmentGroupId"), group)
        if signing:
            self.assertEqual(x509["signingCertificateInfo"]["sha256Thumbprint"], signing.expected_info()["sha256Thumbprint"])
        status, _, record = c.service("GET", f"/registrations/{registration_id}")
        self.assertEqual((status, record["status"], record["deviceId"]), (200, "assigned", registration_id), record)

    def test_self_signed_individual_enrollment(self):
        device = certs.make("py-mqtt-x509-self")
        c.enroll_x509("py-mqtt-x509-self", device.pem)
        files = device.files()
        result = sdk_register_x509("py-mqtt-x509-self", *files)
        self.assertEqual(result.status, "assigned")
        self.assertEqual(result.registration_state.device_id, "py-mqtt-x509-self")
        self.assertIn(result.registration_state.assigned_hub, (c.HUB_A, c.HUB_B))
        self.assertRecordedX509(result, files, device)

    def test_group_chain_leaf_and_intermediate_under_a_root_signing_certificate(self):
        root = certs.make("py-mqtt-root", ca=True, rsa_key=True)
        inter = certs.make("py-mqtt-inter", ca=True, issuer=root)
        c.enroll_x509_group("py-mqtt-x509-group", root.pem)
        leaf = certs.make("py-mqtt-chain-dev", issuer=inter)
        files = leaf.files(chain=[inter])
        result = sdk_register_x509("py-mqtt-chain-dev", *files)
        self.assertEqual(result.status, "assigned")
        self.assertEqual(result.registration_state.device_id, "py-mqtt-chain-dev")
        self.assertRecordedX509(result, files, leaf, group="py-mqtt-x509-group", signing=root)

    def test_an_impostor_with_the_enrolled_name_but_another_key_is_refused(self):
        c.enroll_x509("py-mqtt-x509-victim", certs.make("py-mqtt-x509-victim").pem)
        impostor = certs.make("py-mqtt-x509-victim")
        with self.assertRaises(Exception) as caught:
            sdk_register_x509("py-mqtt-x509-victim", *impostor.files())
        self.assertIn("401", str(caught.exception.__cause__ or caught.exception) + repr(caught.exception))
        self.assertEqual(c.record_status("py-mqtt-x509-victim"), 404)

    def test_an_unknown_ca_gets_the_https_refusal_and_nothing_is_recorded(self):
        root = certs.make("py-mqtt-root-2", ca=True)
        c.enroll_x509_group("py-mqtt-x509-group-2", root.pem)
        stranger = certs.make("py-mqtt-stranger", issuer=certs.make("py-mqtt-unknown-ca", ca=True))
        files = stranger.files()
        with self.assertRaises(Exception):
            sdk_register_x509("py-mqtt-stranger", *files)
        d = c.Device("py-mqtt-stranger", None, cert=files)
        self.addCleanup(d.close)
        self.assertEqual(d.connect(), 0, "CONNACK accepts: the certificate is judged per request, as over HTTPS")
        status, _, body = d.register(1)
        https = c.https("PUT", f"/{c.SCOPE}/registrations/py-mqtt-stranger/register?api-version={c.API}",
                        {"registrationId": "py-mqtt-stranger"}, cert=files)
        self.assertEqual((status, body["errorCode"]), (401, 401002))
        self.assertEqual((status, body["errorCode"], body["message"]), (https[0], https[2]["errorCode"], https[2]["message"]))
        self.assertEqual(c.record_status("py-mqtt-stranger"), 404)


class RawClients(unittest.TestCase):
    """The other clients' differences and the hostile cases, each compared with what HTTPS answers."""

    def device(self, registration_id, password, **kwargs):
        d = c.Device(registration_id, password, **kwargs)
        self.addCleanup(d.close)
        return d

    def test_c_sdk_style_api_2021_qos0_integer_rid_full_json_poll_no_skn(self):
        key = c.new_key()
        c.enroll("raw-c-style", key)
        d = self.device("raw-c-style", c.device_token("raw-c-style", key, skn=False), api="2021-06-01")
        self.assertEqual(d.connect(), 0)
        body = {"registrationId": "raw-c-style"}
        status, params, answer = d.register(17, body, qos=0)
        self.assertEqual((status, params["$rid"], answer["status"]), (202, "17", "assigned"))
        topic = f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=18&operationId={answer['operationId']}"
        status, params, polled = d.ask(topic, json.dumps(body), qos=0)
        self.assertEqual((status, params["$rid"]), (200, "18"))
        https = c.https("GET", f"/{c.SCOPE}/registrations/raw-c-style/operations/{answer['operationId']}?api-version=2021-06-01",
                        headers={"Authorization": c.device_token("raw-c-style", key)})
        self.assertEqual((status, polled), (https[0], https[2]), "the same answer as over HTTPS")

    def test_persistent_session_uuid_rid_and_python_poll_body(self):
        key = c.new_key()
        c.enroll("raw-persistent", key)
        d = self.device("raw-persistent", c.device_token("raw-persistent", key), clean_session=False)
        self.assertEqual(d.connect(), 0)
        rid = str(uuid.uuid4())
        status, params, answer = d.register(rid)
        self.assertEqual((status, params["$rid"]), (202, rid))
        status, _, polled = d.ask(f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=p&operationId={answer['operationId']}", " ")
        self.assertEqual((status, polled["status"]), (200, "assigned"))

    def test_bad_sas_wrong_topic_malformed_body_get_the_https_status_and_store_nothing(self):
        c.enroll("raw-bad", c.new_key())
        wrong = c.device_token("raw-bad", c.new_key())
        d = self.device("raw-bad", wrong)
        self.assertEqual(d.connect(), 0)
        status, _, body = d.register(1)
        https = c.https("PUT", f"/{c.SCOPE}/registrations/raw-bad/register?api-version={c.API}",
                        {"registrationId": "raw-bad"}, {"Authorization": wrong})
        self.assertEqual((status, body["errorCode"]), (401, 401002))
        self.assertEqual((status, body["errorCode"], body["message"]), (https[0], https[2]["errorCode"], https[2]["message"]))
        self.assertEqual(c.record_status("raw-bad"), 404)

        key = c.new_key()
        c.enroll("raw-bad-2", key)
        d = self.device("raw-bad-2", c.device_token("raw-bad-2", key))
        self.assertEqual(d.connect(), 0)
        status, _, body = d.ask("$dps/registrations/PUT/iotdps-register/?$rid=2", "{not json")
        self.assertEqual((status, body["errorCode"]), (400, 400002))
        status, params, body = d.ask("$dps/registrations/PATCH/iotdps-register/?$rid=3", "{}")
        self.assertEqual((status, params["$rid"], body["errorCode"]), (404, "3", 404000))
        self.assertEqual(c.record_status("raw-bad-2"), 404)

    def test_requests_past_the_in_flight_limit_are_answered_429_and_every_request_once(self):
        # The server's default --mqtt-max-in-flight is 8; a slow webhook keeps the first 8 in flight.
        allow_private_webhooks()
        hook = EchoWebhook(delay=0.5)
        self.addCleanup(hook.close)
        key = c.new_key()
        c.enroll("raw-in-flight", key, allocationPolicy="custom",
                 customAllocationDefinition={"webhookUrl": hook.url, "apiVersion": "2021-10-01"})
        d = self.device("raw-in-flight", c.device_token("raw-in-flight", key))
        self.assertEqual(d.connect(), 0)
        body = json.dumps({"registrationId": "raw-in-flight"})
        for rid in range(1, 11):
            d.client.publish(f"$dps/registrations/PUT/iotdps-register/?$rid={rid}", body, qos=0)
        answers = {}
        for _ in range(10):
            status, params, answer = d.answer(timeout=30)
            self.assertNotIn(params["$rid"], answers, "a request answered twice")
            answers[params["$rid"]] = (status, params, answer)
        time.sleep(0.5)
        self.assertTrue(d.messages.empty(), "more answers than requests")
        # The bound refuses the 9th and 10th at once. (Of the 8 in flight, the ones that wait too long behind the
        # same device's registration get the per-device 429; that is not the in-flight bound.)
        bound = "At most 8 requests may be in flight on one connection"
        refused = sorted(int(rid) for rid, (_, _, answer) in answers.items() if answer.get("message") == bound)
        self.assertEqual(refused, [9, 10], {rid: (a[0], a[2].get("message")) for rid, a in answers.items()})
        for rid in ("9", "10"):
            status, params, answer = answers[rid]
            self.assertEqual((status, answer["errorCode"], params.get("retry-after")), (429, 429001, "1"))
        self.assertIn(202, [answers[str(rid)][0] for rid in range(1, 9)])
        # Once they are answered the connection takes requests again.
        status, _, answer = d.register(11)
        self.assertEqual((status, answer["status"]), (202, "assigned"))

    def test_connects_are_refused_with_connack_codes(self):
        cases = [
            (dict(user=f"{c.SCOPE}/devices/raw-r/api-version={c.API}"), 4),  # not a DPS user name
            (dict(client_id="someone-else"), 2),  # client ID is not the registration ID
        ]
        for kwargs, code in cases:
            d = self.device("raw-r", "SharedAccessSignature sr=x&sig=y&se=1", subscribe=False, **kwargs)
            self.assertEqual(d.connect(), code, kwargs)
        d = self.device("raw-r", "x", protocol=c.mqtt.MQTTv31, subscribe=False)
        self.assertEqual(d.connect(), 1, "MQTT 3.1 is refused: unacceptable protocol version")

    def test_subscriptions_outside_the_response_topics_are_refused(self):
        d = self.device("raw-sub", "x", subscribe=False)
        self.assertEqual(d.connect(), 0)
        d.client.subscribe("#", qos=1)
        self.assertEqual(d.subacks.get(timeout=5), (128,))

    def test_many_devices_at_once_hear_only_their_own_answers(self):
        group_key = c.new_key()
        c.enroll_group("crowd", group_key)
        ids = [f"crowd-{i:02}" for i in range(50)]
        devices = [self.device(i, c.device_token(i, c.derive_key(group_key, i))) for i in ids]
        for d in devices:
            self.assertEqual(d.connect(), 0)
        # All publish at once, all with the same constant rid (as the embedded C SDK does).
        for d in devices:
            d.client.publish("$dps/registrations/PUT/iotdps-register/?$rid=1", json.dumps({"registrationId": d.registration_id}), qos=1)
        for d in devices:
            status, params, body = d.answer()
            self.assertEqual((status, params["$rid"]), (202, "1"))
            self.assertEqual(body["registrationState"]["registrationId"], d.registration_id, "another device's answer")
        time.sleep(0.5)
        self.assertTrue(all(d.messages.empty() for d in devices), "a device received more than its own answer")

    def test_a_silent_client_is_closed_after_its_keep_alive(self):
        d = self.device("raw-silent", "x", subscribe=False, keepalive=1)
        d.client.connect("127.0.0.1", c.MQTT_PORT, keepalive=1)  # no loop: no PINGREQ is ever sent
        sock = d.client.socket()
        sock.settimeout(10)
        started = time.monotonic()
        while sock.recv(1024):  # the CONNACK, then the end of the stream
            pass
        self.assertGreaterEqual(time.monotonic() - started, 1.4)

    def test_no_connect_is_closed_after_the_connect_timeout(self):
        ctx = c.tls_context()
        ctx.check_hostname = False
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", c.MQTT_PORT)) as raw, ctx.wrap_socket(raw) as tls:
            tls.settimeout(15)
            self.assertEqual(tls.recv(1), b"")
        self.assertGreaterEqual(time.monotonic() - started, 1.9)

    def test_an_oversized_packet_closes_the_connection(self):
        key = c.new_key()
        c.enroll("raw-big", key)
        d = self.device("raw-big", c.device_token("raw-big", key))
        self.assertEqual(d.connect(), 0)
        d.client.loop_stop()  # read the socket here: paho's loop thread dies on the write the server cuts off
        try:
            d.client.publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b" " * (200 * 1024), qos=0)
        except OSError:
            pass
        sock = d.client.socket()
        sock.settimeout(10)
        try:
            while sock.recv(4096):
                pass
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            pass
        self.assertEqual(c.record_status("raw-big"), 404)

    def test_mqtt_connections_count_against_the_limit_shared_with_https(self):
        # run.sh starts the server with --max-connections-per-address 60: fill it with MQTT connections.
        held = []
        for i in range(70):
            d = self.device(f"hold-{i}", "x", subscribe=False)
            try:
                if d.connect(timeout=5) != 0:
                    break
            except (ConnectionError, ssl.SSLError, OSError):
                break
            held.append(d)
        self.assertGreaterEqual(len(held), 40, "MQTT connections up to the cap are served")
        self.assertLessEqual(len(held), 60, "the per-address cap holds for MQTT")
        with self.assertRaises((ConnectionError, ssl.SSLError, http.client.HTTPException, OSError)):
            c.https("GET", "/config?api-version=2021-10-01", headers={"Authorization": c.service_token()}, timeout=5)
        for d in held:
            d.close()
        for _ in range(50):
            try:
                if c.https("GET", "/config?api-version=2021-10-01", headers={"Authorization": c.service_token()})[0] == 200:
                    break
            except (ConnectionError, ssl.SSLError, OSError):
                time.sleep(0.1)
        else:
            self.fail("HTTPS did not come back once the MQTT connections closed")

if __name__ == "__main__":
    unittest.main(verbosity=2)
