"""Certificates made in the tests with `cryptography`: CA and device certificates (RSA-2048 or P-256), the Azure
`X509CertificateInfo` a reader should see for each, and files for clients that take paths. Shared by tests/python
and tests/mqtt (each puts this directory on sys.path)."""

import datetime
import hashlib
import os
import secrets
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DIR = tempfile.mkdtemp(prefix="dps-certs-")


class Cert:
    """A certificate and its private key."""

    def __init__(self, cert, key, issuer=None):
        self.cert = cert
        self.key = key
        self.issuer = issuer

    @property
    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self):
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()

    @property
    def der(self):
        return self.cert.public_bytes(serialization.Encoding.DER)

    def files(self, chain=()):
        """(certificate file, key file): this certificate, then `chain` (intermediates, leaf first)."""
        base = os.path.join(_DIR, secrets.token_hex(6))
        with open(base + ".cert.pem", "w") as f:
            f.write(self.pem + "".join(c.pem for c in chain))
        with open(base + ".key.pem", "w") as f:
            f.write(self.key_pem)
        return base + ".cert.pem", base + ".key.pem"

    @staticmethod
    def azure_name(name):
        """A distinguished name as Azure writes it: most specific attribute first (`CN=d, O=Contoso`)."""
        return ", ".join(f"{a.rfc4514_attribute_name}={a.value}" for rdn in reversed(name.rdns) for a in rdn)

    def expected_info(self):
        """What Azure's `X509CertificateInfo` says about this certificate (thumbprints, serial in upper-case hex)."""
        c = self.cert
        return {
            "sha1Thumbprint": hashlib.sha1(self.der).hexdigest().upper(),
            "sha256Thumbprint": hashlib.sha256(self.der).hexdigest().upper(),
            "notBeforeUtc": c.not_valid_before_utc,
            "notAfterUtc": c.not_valid_after_utc,
            "serialNumber": f"{c.serial_number:016X}",
            "version": 3,
            "subjectName": self.azure_name(c.subject),
            "issuerName": self.azure_name(c.issuer),
        }


def make(cn, issuer=None, ca=False, rsa_key=False, org="dps python e2e", valid_from=None, days=30, key=None):
    """A certificate with subject CN `cn`, signed by `issuer` (a Cert) or self-signed; a CA when `ca`, else a
    client-authentication end entity. `valid_from` defaults to an hour ago."""
    key = key or (rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key
                  else ec.generate_private_key(ec.SECP256R1()))
    # Encoded most general first, as CAs usually write names (Azure shows them the other way round).
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = valid_from or datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    start = start.replace(microsecond=0)
    # 8 bytes with the top bit clear: DER keeps them as they are (no leading zero byte), so the hex is stable.
    serial = secrets.randbits(62) | (1 << 62)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True).add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    signer = issuer.key if issuer else key
    return Cert(builder.sign(signer, hashes.SHA256()), key, issuer)
