"""Microsoft's azure-core service client `azure-iot-deviceprovisioning` 1.0.0b1 (PyPI, unmodified; JSON in and out)
against a running `dps serve`: enrollments and groups of each attestation with etags, paged queries, attestation
mechanisms, registration records and bulk operations for both kinds, each read back."""

import datetime
import unittest

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.iot.deviceprovisioning import DeviceProvisioningClient

import certs
import common as c


def utc(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def symmetric(primary, secondary=None):
    keys = {"primaryKey": primary, **({"secondaryKey": secondary} if secondary else {})}
    return {"type": "symmetricKey", "symmetricKey": keys}


class Base(unittest.TestCase):
    def setUp(self):
        self.client = DeviceProvisioningClient.from_connection_string(c.CONNECTION_STRING, connection_verify=c.CA)
        self.addCleanup(self.client.close)

    def assertInfo(self, info, cert):
        want = cert.expected_info()
        self.assertEqual(info["sha1Thumbprint"], want["sha1Thumbprint"])
        self.assertEqual(info["sha256Thumbprint"], want["sha256Thumbprint"])
        self.assertEqual(utc(info["notBeforeUtc"]), want["notBeforeUtc"])
        self.assertEqual(utc(info["notAfterUtc"]), want["notAfterUtc"])
        self.assertEqual((info["serialNumber"], info["version"]), (want["serialNumber"], 3))
        self.assertEqual((info["subjectName"], info["issuerName"]), (want["subjectName"], want["issuerName"]))


class Enrollments(Base):
    def test_symmetric_key_enrollment_with_etags(self):
        primary = c.new_key()
        created = self.client.enrollment.create_or_update(
            "pyb-sym-1", {"registrationId": "pyb-sym-1", "attestation": symmetric(primary), "deviceId": "pyb-dev"})
        got = self.client.enrollment.get("pyb-sym-1")
        self.assertEqual((got["deviceId"], got["etag"]), ("pyb-dev", created["etag"]))
        self.assertEqual(self.client.enrollment.get_attestation_mechanism("pyb-sym-1")["symmetricKey"]["primaryKey"], primary)

        got["provisioningStatus"] = "disabled"
        updated = self.client.enrollment.create_or_update("pyb-sym-1", got, if_match=got["etag"])
        self.assertNotEqual(updated["etag"], created["etag"])
        with self.assertRaises(HttpResponseError) as caught:
            self.client.enrollment.create_or_update("pyb-sym-1", {**got, "deviceId": "other"}, if_match=created["etag"])
        self.assertEqual(caught.exception.status_code, 412)
        self.assertEqual(self.client.enrollment.get("pyb-sym-1")["provisioningStatus"], "disabled")

        self.client.enrollment.delete("pyb-sym-1", if_match=updated["etag"])
        with self.assertRaises(ResourceNotFoundError):
            self.client.enrollment.get("pyb-sym-1")

    def test_x509_enrollment_reads_back_certificate_info(self):
        primary, secondary = certs.make("pyb-x509-1", rsa_key=True), certs.make("pyb-x509-1")
        self.client.enrollment.create_or_update("pyb-x509-1", {
            "registrationId": "pyb-x509-1",
            "attestation": {"type": "x509", "x509": {"clientCertificates": {
                "primary": {"certificate": primary.pem}, "secondary": {"certificate": secondary.pem}}}},
        })
        got = self.client.enrollment.get("pyb-x509-1")
        self.assertInfo(got["attestation"]["x509"]["clientCertificates"]["primary"]["info"], primary)
        self.assertInfo(got["attestation"]["x509"]["clientCertificates"]["secondary"]["info"], secondary)
        mechanism = self.client.enrollment.get_attestation_mechanism("pyb-x509-1")
        self.assertInfo(mechanism["x509"]["clientCertificates"]["primary"]["info"], primary)
        self.client.enrollment.delete("pyb-x509-1")

    def test_tpm_enrollment(self):
        ek = c.fixture("ek-rsa2048.b64")
        self.client.enrollment.create_or_update(
            "pyb-tpm-1", {"registrationId": "pyb-tpm-1", "attestation": {"type": "tpm", "tpm": {"endorsementKey": ek}}})
        self.assertEqual(self.client.enrollment.get("pyb-tpm-1")["attestation"]["tpm"]["endorsementKey"], ek)
        self.assertEqual(self.client.enrollment.get_attestation_mechanism("pyb-tpm-1"), {"type": "tpm", "tpm": {"endorsementKey": ek}})
        listed = [e for e in self.client.enrollment.query({"query": "*"}) if e["registrationId"] == "pyb-tpm-1"]
        self.assertEqual([e["attestation"]["type"] for e in listed], ["tpm"])
        self.client.enrollment.delete("pyb-tpm-1")
        with self.assertRaises(ResourceNotFoundError):
            self.client.enrollment.get_attestation_mechanism("pyb-tpm-1")

    def test_query_pages_with_top(self):
        ids = [f"pyb-page-{i}" for i in range(5)]
        for i in ids:
            self.client.enrollment.create_or_update(i, {"registrationId": i, "attestation": symmetric(c.new_key())})
        pages = [list(page) for page in self.client.enrollment.query({"query": "*"}, top=2).by_page()]
        listed = [e["registrationId"] for page in pages for e in page]
        self.assertTrue(all(len(page) <= 2 for page in pages), [len(page) for page in pages])
        self.assertGreaterEqual(len(pages), 3, "five enrollments in pages of two")
        self.assertEqual(len(listed), len(set(listed)), "no enrollment listed twice")
        self.assertTrue(set(ids) <= set(listed))
        for i in ids:
            self.client.enrollment.delete(i)

    def test_bulk_create_and_delete(self):
        items = [{"registrationId": f"pyb-bulk-{i}", "attestation": symmetric(c.new_key())} for i in range(3)]
        result = self.client.enrollment.run_bulk_operation({"mode": "create", "enrollments": items})
        self.assertEqual((result["isSuccessful"], result["errors"]), (True, []))
        self.assertEqual(self.client.enrollment.get("pyb-bulk-2")["registrationId"], "pyb-bulk-2")
        result = self.client.enrollment.run_bulk_operation({"mode": "create", "enrollments": items[:1]})
        self.assertFalse(result["isSuccessful"])
        self.assertEqual([e["registrationId"] for e in result["errors"]], ["pyb-bulk-0"])
        result = self.client.enrollment.run_bulk_operation({"mode": "delete", "enrollments": items})
        self.assertTrue(result["isSuccessful"], result)
        with self.assertRaises(ResourceNotFoundError):
            self.client.enrollment.get("pyb-bulk-0")


class Groups(Base):
    def test_symmetric_key_group_records_query_and_delete(self):
        group_key = c.new_key()
        created = self.client.enrollment_group.create_or_update(
            "pyb-group", {"enrollmentGroupId": "pyb-group", "attestation": symmetric(group_key)})
        got = self.client.enrollment_group.get("pyb-group")
        got["iotHubHostName"] = c.HUB
        updated = self.client.enrollment_group.create_or_update("pyb-group", got, if_match=created["etag"])
        with self.assertRaises(HttpResponseError) as caught:
            self.client.enrollment_group.delete("pyb-group", if_match=created["etag"])
        self.assertEqual(caught.exception.status_code, 412)
        self.assertEqual(self.client.enrollment_group.get_attestation_mechanism("pyb-group")["symmetricKey"]["primaryKey"], group_key)
        self.assertIn("pyb-group", [g["enrollmentGroupId"] for g in self.client.enrollment_group.query({"query": "*"})])

        devices = [f"pyb-group-dev-{i}" for i in range(3)]
        for d in devices:
            answer = c.register(d, key=c.derive_key(group_key, d))
            self.assertEqual((answer.status_code, answer.json()["status"]), (202, "assigned"), answer.text)
        records = list(self.client.device_registration_state.query("pyb-group", top=2))
        self.assertEqual(sorted(r["registrationId"] for r in records), devices)
        self.assertEqual({r["assignedHub"] for r in records}, {c.HUB})
        record = self.client.device_registration_state.get(devices[0])
        self.assertEqual((record["status"], record["deviceId"]), ("assigned", devices[0]))
        self.client.device_registration_state.delete(devices[0], if_match=record["etag"])
        with self.assertRaises(ResourceNotFoundError):
            self.client.device_registration_state.get(devices[0])
        self.client.enrollment_group.delete("pyb-group", if_match=updated["etag"])

    def test_x509_groups_signing_certificate_and_ca_reference(self):
        root = certs.make("pyb-root", ca=True)
        self.client.enrollment_group.create_or_update("pyb-signing", {
            "enrollmentGroupId": "pyb-signing",
            "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": root.pem}}}},
        })
        got = self.client.enrollment_group.get("pyb-signing")
        self.assertInfo(got["attestation"]["x509"]["signingCertificates"]["primary"]["info"], root)

        ca = certs.make("pyb-fleet-ca", ca=True, rsa_key=True)
        c.upload_verified_ca("pyb-fleet", ca, certs.make)
        self.client.enrollment_group.create_or_update("pyb-ca", {
            "enrollmentGroupId": "pyb-ca", "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "pyb-fleet"}}}})
        mechanism = self.client.enrollment_group.get_attestation_mechanism("pyb-ca")
        self.assertEqual(mechanism["x509"]["caReferences"], {"primary": "pyb-fleet"})
        answer = c.register("pyb-ca-dev", cert=certs.make("pyb-ca-dev", issuer=ca).files())
        self.assertEqual(answer.json()["registrationState"]["x509"]["enrollmentGroupId"], "pyb-ca", answer.text)

    def test_bulk_groups(self):
        items = [{"enrollmentGroupId": f"pyb-bulk-group-{i}", "attestation": symmetric(c.new_key())} for i in range(2)]
        result = self.client.enrollment_group.run_bulk_operation({"mode": "create", "enrollmentGroups": items})
        self.assertTrue(result["isSuccessful"], result)
        self.assertEqual(self.client.enrollment_group.get("pyb-bulk-group-1")["enrollmentGroupId"], "pyb-bulk-group-1")
        result = self.client.enrollment_group.run_bulk_operation({"mode": "delete", "enrollmentGroups": items})
        self.assertTrue(result["isSuccessful"], result)
        with self.assertRaises(ResourceNotFoundError):
            self.client.enrollment_group.get("pyb-bulk-group-0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
