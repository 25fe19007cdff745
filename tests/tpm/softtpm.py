"""A device's TPM for the tests: swtpm on loopback, driven through tpm2-pytss (ESAPI over the swtpm TCTI).

What a TPM device does with Azure DPS TPM attestation: read its EK and SRK public areas, run
ActivateCredential(SRK, EK) on the `authenticationKey` blob, TPM2_Import the duplicated HMAC key under the SRK
with the activated inner key, load it and sign with TPM2_HMAC. The HMAC key never leaves the TPM.
"""

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time

# The TSS logs every refused command at WARNING; the tests report refusals themselves.
os.environ.setdefault("TSS2_LOG", "all+none")

from tpm2_pytss import ESAPI, TCTILdr
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE, TPMA_OBJECT
from tpm2_pytss.types import (
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
)
from tpm2_pytss.utils import NoSuchIndex, create_ek_template


def free_port_pair():
    """Two consecutive free loopback ports (swtpm's server and control channels)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair on 127.0.0.1")


def srk_template(unique_zeros=True):
    """The TCG SRK template (RSA 2048, AES-128-CFB, restricted decrypt), with 256 zero bytes of `unique` as
    tpm2-tools and iot-identity-service make it, or an empty `unique` as the C and Node SDKs do."""
    public = TPM2B_PUBLIC.parse(
        "rsa2048:aes128cfb",
        objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT,
    )
    if unique_zeros:
        public.publicArea.unique.rsa = b"\0" * 256
    return public


class SoftTpm:
    """One swtpm process with its own state directory; a context manager that always stops it."""

    def __init__(self, srk_unique_zeros=True):
        self.dir = tempfile.mkdtemp(prefix="dps-swtpm-")
        self.port = free_port_pair()
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2",
             "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
             "--tpmstate", f"dir={self.dir}", "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("swtpm did not start: " + self.proc.stderr.read().decode(errors="replace"))
                time.sleep(0.05)
        self.esys = ESAPI(TCTILdr("swtpm", f"host=127.0.0.1,port={self.port}"))
        def no_nv_template(index):
            raise NoSuchIndex(index)

        _, ek_template = create_ek_template("EK-RSA2048", no_nv_template)
        self.ek, self.ek_public, _, _, _ = self.esys.create_primary(
            None, ek_template, primary_handle=ESYS_TR.ENDORSEMENT)
        self.srk, self.srk_public, _, _, _ = self.esys.create_primary(
            TPM2B_SENSITIVE_CREATE(), srk_template(srk_unique_zeros), primary_handle=ESYS_TR.OWNER)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.esys.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ek_b64(self):
        """The EK's TPM2B_PUBLIC, base64, as a device sends it."""
        return base64.b64encode(self.ek_public.marshal()).decode()

    def srk_b64(self):
        return base64.b64encode(self.srk_public.marshal()).decode()

    def import_key(self, authentication_key_b64):
        """ActivateCredential + Import + Load of an `authenticationKey` blob; returns the loaded key's handle."""
        blob = base64.b64decode(authentication_key_b64)
        id_object, at = TPM2B_ID_OBJECT.unmarshal(blob)
        credential_secret, n = TPM2B_ENCRYPTED_SECRET.unmarshal(blob[at:])
        at += n
        duplicate, n = TPM2B_PRIVATE.unmarshal(blob[at:])
        at += n
        seed, n = TPM2B_ENCRYPTED_SECRET.unmarshal(blob[at:])
        at += n
        public, n = TPM2B_PUBLIC.unmarshal(blob[at:])
        at += n
        # The EK's policy: PolicySecret(TPM_RH_ENDORSEMENT), in a fresh policy session.
        session = self.esys.start_auth_session(
            ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY, TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
        try:
            self.esys.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
            inner_key = self.esys.activate_credential(
                self.srk, self.ek, id_object, credential_secret, session1=ESYS_TR.PASSWORD, session2=session)
        finally:
            try:
                self.esys.flush_context(session)
            except Exception:
                pass
        symmetric = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES)
        symmetric.keyBits.aes = 128
        symmetric.mode.aes = TPM2_ALG.CFB
        private = self.esys.import_(self.srk, bytes(inner_key), public, duplicate, seed, symmetric)
        return self.esys.load(self.srk, private, public)

    def hmac(self, handle, data: bytes) -> bytes:
        return bytes(self.esys.hmac(handle, data, TPM2_ALG.SHA256))

    def flush(self, handle):
        self.esys.flush_context(handle)


def sas_token(tpm, key_handle, scope, registration_id, lifetime=3600, expiry=None):
    """A device SAS token signed inside the TPM (sr URL-encoded as the Node TPM client sends it)."""
    from urllib.parse import quote
    sr = quote(f"{scope}/registrations/{registration_id}", safe="")
    se = expiry if expiry is not None else int(time.time()) + lifetime
    sig = base64.b64encode(tpm.hmac(key_handle, f"{sr}\n{se}".encode())).decode()
    return f"SharedAccessSignature sr={sr}&sig={quote(sig, safe='')}&se={se}&skn=registration"


if os.environ.get("SOFTTPM_SELFTEST"):
    with SoftTpm() as t:
        print(t.ek_b64()[:40], t.srk_b64()[:40])
