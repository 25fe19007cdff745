//! The server side of the TPM endorsement-key challenge (Azure DPS TPM attestation): parse the EK and SRK a
//! device sends, issue a fresh HMAC-SHA256 key that only that TPM can use, and marshal it as the Azure
//! `authenticationKey` blob.
//!
//! The blob is `TPM2B_ID_OBJECT || TPM2B_ENCRYPTED_SECRET` (MakeCredential to the EK of a random AES-128 key,
//! bound to the SRK's Name) `|| TPM2B_PRIVATE || TPM2B_ENCRYPTED_SECRET || TPM2B_PUBLIC` (the HMAC key
//! duplicated to the SRK, inner-wrapped with that AES key) `|| TPM2B_DATA` (the empty `encUriData` that some
//! SDKs read unconditionally). The device runs ActivateCredential(SRK, EK) to learn the AES key, TPM2_Import under
//! the SRK with it, and signs its SAS token with TPM2_HMAC.
//!
//! Supported: RSA EKs (TCG template L-1: RSA 2048, AES-128-CFB) and RSA SRKs (2048 to 4096 bits, AES-128 or
//! AES-256 CFB), nameAlg SHA-256. ECC EKs and SRKs are refused with [`TpmError::Unsupported`].

mod marshal;
mod public;
mod wrap;

use rand_core::CryptoRngCore;

pub use public::{AesBits, MAX_PUBLIC_SIZE, RsaStorageKey};
pub use wrap::{Duplicate, duplicate_hmac_key, make_credential};

/// Why a TPM structure was refused. Messages name the field and are safe to show to the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmError {
    /// The bytes end before the structure does.
    #[error("TPM structure truncated at {0}")]
    Truncated(&'static str),
    /// A size field is beyond what the structure may hold.
    #[error("TPM structure too large at {0}")]
    TooLarge(&'static str),
    /// Bytes left over after the structure.
    #[error("unexpected bytes after {0}")]
    TrailingBytes(&'static str),
    /// Well-formed but inconsistent.
    #[error("malformed TPM key: {0}")]
    Malformed(&'static str),
    /// Valid TPM, but not something this service handles.
    #[error("unsupported TPM {0}")]
    Unsupported(&'static str),
    /// Not an endorsement key (not the TCG EK template).
    #[error("not an endorsement key: {0}")]
    NotEndorsementKey(&'static str),
    /// Not a storage key usable as a parent.
    #[error("not a storage root key: {0}")]
    NotStorageKey(&'static str),
}

/// An HMAC-SHA256 key issued to one TPM: the secret the server keeps, and the blob the device imports.
pub struct IssuedKey {
    /// The HMAC key the device will sign with (secret: never log it).
    pub key: [u8; 32],
    /// The Azure `authenticationKey` blob (binary; base64 on the wire).
    pub authentication_key: Vec<u8>,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey").field("authentication_key", &self.authentication_key.len()).finish_non_exhaustive()
    }
}

/// Issue a new random HMAC key to the TPM with endorsement key `ek` and storage root key `srk`.
pub fn issue_key(rng: &mut impl CryptoRngCore, ek: &RsaStorageKey, srk: &RsaStorageKey) -> Result<IssuedKey, TpmError> {
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let authentication_key = wrap_key(rng, ek, srk, &key)?;
    Ok(IssuedKey { key, authentication_key })
}

/// [`issue_key`] with the operating system's random number generator.
pub fn issue(ek: &RsaStorageKey, srk: &RsaStorageKey) -> Result<IssuedKey, TpmError> {
    issue_key(&mut rand_core::OsRng, ek, srk)
}

/// The `authenticationKey` blob that gives `key` to the TPM with `ek` and `srk` (a fresh wrap every call).
pub fn wrap_key(
    rng: &mut impl CryptoRngCore,
    ek: &RsaStorageKey,
    srk: &RsaStorageKey,
    key: &[u8; 32],
) -> Result<Vec<u8>, TpmError> {
    let mut inner_key = [0u8; 16];
    rng.fill_bytes(&mut inner_key);
    let (id_object, credential_secret) = make_credential(rng, ek, &inner_key, &srk.name())?;
    let Duplicate { public, private, seed_secret } = duplicate_hmac_key(rng, srk, key, &inner_key)?;
    let mut blob = Vec::with_capacity(id_object.len() + credential_secret.len() + private.len() + 600);
    for part in [&id_object, &credential_secret, &private, &seed_secret, &public] {
        blob.extend_from_slice(part);
    }
    blob.extend_from_slice(&[0, 0]);
    Ok(blob)
}

/// The registration ID the Azure SDKs (Node, C) use by default for a TPM device: lower-case RFC 4648 base32,
/// without padding, of SHA-256 over the EK's `TPM2B_PUBLIC` bytes (size prefix included).
pub fn default_registration_id(ek_tpm2b: &[u8]) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = sha2::Sha256::digest(ek_tpm2b);
    let (mut out, mut buffer, mut bits) = (String::with_capacity(52), 0u32, 0u32);
    for byte in digest {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_registration_id() {
        // SHA-256("") = e3b0c442..., whose base32 (RFC 4648, lower case, unpadded) is well known.
        assert_eq!(default_registration_id(b""), "4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkq");
    }
}
