"""Oracle for the server's TPM crypto (dps-attestation): a real software TPM must accept what the server issues.

For each SRK form (TCG template with 256 zero bytes of unique, and the C/Node SDK form with an empty unique) the
Rust tool `tpm-challenge` wraps a random HMAC key for the TPM's EK and SRK; the TPM activates the credential,
imports and loads the key, and its TPM2_HMAC must equal HMAC-SHA256 with the key the server issued. The same
device code first runs on a blob made by tpm2-pytss's own make_credential()/wrap(), so that a failure points at
the server's crypto rather than at the device side. Then the refusals: a wrong SRK, a tampered blob.
"""

import base64
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
import time

from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import (
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE,
    TPMT_KEYEDHASH_SCHEME,
    TPMT_SENSITIVE,
    TPMT_SYM_DEF_OBJECT,
)
from tpm2_pytss.utils import make_credential, wrap

from softtpm import SoftTpm

TOOL = os.environ["TPM_CHALLENGE_BIN"]
failures = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(name)


def server_blob(ek_b64, srk_b64, key: bytes):
    out = subprocess.run([TOOL, ek_b64, srk_b64], input=key.hex(), capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout.strip(), out.stderr.strip()


def pytss_blob(tpm, key: bytes):
    """The same blob built by tpm2-pytss (its make_credential and wrap), as a reference."""
    scheme = TPMT_KEYEDHASH_SCHEME(scheme=TPM2_ALG.HMAC)
    scheme.details.hmac.hashAlg = TPM2_ALG.SHA256
    sensitive, public_area = TPMT_SENSITIVE.keyedhash_from_secret(
        key, objectAttributes=TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.SIGN_ENCRYPT, scheme=scheme)
    public = TPM2B_PUBLIC(publicArea=public_area)
    inner = secrets.token_bytes(16)
    symdef = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES)
    symdef.keyBits.aes = 128
    symdef.mode.aes = TPM2_ALG.CFB
    _, duplicate, outsymseed = wrap(tpm.srk_public.publicArea, public, TPM2B_SENSITIVE(sensitiveArea=sensitive),
                                    inner, symdef)
    _, srk_name, _ = tpm.esys.read_public(tpm.srk)
    id_object, secret = make_credential(tpm.ek_public, inner, srk_name)
    parts = [id_object, secret, duplicate, outsymseed, public]
    return base64.b64encode(b"".join(p.marshal() for p in parts) + b"\0\0").decode()


def signs_like(tpm, blob, key):
    handle = tpm.import_key(blob)
    try:
        message = b"0ne00000001%2Fregistrations%2Fdevice-1\n1700000000"
        return tpm.hmac(handle, message) == hmac.new(key, message, hashlib.sha256).digest()
    finally:
        tpm.flush(handle)


def main():
    started = time.monotonic()
    for zeros in (True, False):
        form = "TCG SRK template" if zeros else "empty-unique SRK (C/Node SDK)"
        with SoftTpm(srk_unique_zeros=zeros) as tpm:
            key = secrets.token_bytes(32)
            if zeros:
                check("tpm2-pytss reference blob imports and signs", signs_like(tpm, pytss_blob(tpm, key), key))
            rc, blob, err = server_blob(tpm.ek_b64(), tpm.srk_b64(), key)
            check(f"server wraps for {form}", rc == 0, err)
            if rc != 0:
                continue
            check(f"TPM activates, imports and signs with the issued key ({form})", signs_like(tpm, blob, key))
            # A second wrap of the same key is fresh randomness, and works as well.
            _, again, _ = server_blob(tpm.ek_b64(), tpm.srk_b64(), key)
            check(f"each wrap is fresh and valid ({form})", again != blob and signs_like(tpm, again, key))

    with SoftTpm() as tpm, SoftTpm() as other:
        key = secrets.token_bytes(32)
        # Bound to another TPM's SRK: ActivateCredential must refuse (the credential names that SRK).
        _, blob, _ = server_blob(tpm.ek_b64(), other.srk_b64(), key)
        try:
            tpm.import_key(blob)
            check("a blob for another SRK is refused by the TPM", False, "it imported")
        except TSS2_Exception as e:
            check("a blob for another SRK is refused by the TPM", True)
            print(f"     ({e})")
        # One flipped bit in the duplicate: the TPM's integrity check refuses it.
        _, blob, _ = server_blob(tpm.ek_b64(), tpm.srk_b64(), key)
        raw = bytearray(base64.b64decode(blob))
        at = 2 + int.from_bytes(raw[0:2], "big")  # past TPM2B_ID_OBJECT
        at += 2 + int.from_bytes(raw[at:at + 2], "big")  # past TPM2B_ENCRYPTED_SECRET
        raw[at + 2 + 2 + 32 + 5] ^= 1  # inside the duplicate's encrypted sensitive area
        try:
            tpm.import_key(base64.b64encode(bytes(raw)).decode())
            check("a tampered duplicate is refused by the TPM", False, "it imported")
        except TSS2_Exception:
            check("a tampered duplicate is refused by the TPM", True)
        # The tool refuses an SRK offered as the EK (not the EK template).
        rc, _, err = server_blob(tpm.srk_b64(), tpm.srk_b64(), key)
        check("an SRK is not accepted as an EK", rc == 2 and "not an endorsement key" in err, err)

    print(f"oracle: {len(failures)} failure(s) in {time.monotonic() - started:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
