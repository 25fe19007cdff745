"""End-to-end tests of the MQTT front door of a running `dps serve --mqtt-listen` (started by run.sh): the official
Python device SDK (azure-iot-device 2.14, ProvisioningDeviceClient, unmodified), and raw paho clients for the
client differences and the hostile cases."""

import http.client
import http.server
import json
import socket
import ssl
import threading
import time
import unittest
import uuid

from azure.iot.device import ProvisioningDeviceClient

import common as c


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
