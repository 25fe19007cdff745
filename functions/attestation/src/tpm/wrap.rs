//! The two protections a server applies for a TPM (TPM 2.0 Part 1, "Protected Storage" and "Credential
//! Protection"): MakeCredential to an EK, and duplication of an object to a new parent (the SRK). Both are
//! RSA-OAEP of a seed (labels `IDENTITY\0`, `DUPLICATE\0`), KDFa keys from that seed, AES-CFB and an HMAC:
//! compositions of the RustCrypto primitives, nothing home-made.

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use rsa::{BigUint, Oaep, RsaPublicKey};
use sha2::{Digest, Sha256};

use super::TpmError;
use super::marshal::{Writer, sized};
use super::public::{AesBits, RsaStorageKey};

type HmacSha256 = Hmac<Sha256>;

/// KDFa (Part 1, 11.4.10.2) with SHA-256: `HMAC(key, [i] || label || 0 || contextU || contextV || [bits])` for
/// i = 1, 2, ... until `bits` bits, truncated. `label` is given without its terminating zero.
pub(crate) fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// AES-CFB (full-block feedback, zero IV, as the TPM uses for these wraps) in place.
fn cfb_encrypt(bits: AesBits, key: &[u8], data: &mut [u8]) {
    let iv = [0u8; 16];
    match bits {
        AesBits::Aes128 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .expect("KDFa gives the AES key size")
            .encrypt(data),
        AesBits::Aes256 => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .expect("KDFa gives the AES key size")
            .encrypt(data),
    }
}

/// `HMAC-SHA256(key, parts...)`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A fresh seed, RSA-OAEP-SHA256 encrypted to `to` with `label`: (seed, `TPM2B_ENCRYPTED_SECRET`).
fn seed_for(
    rng: &mut impl CryptoRngCore,
    to: &RsaStorageKey,
    label: &'static str,
) -> Result<([u8; 32], Vec<u8>), TpmError> {
    let (modulus, exponent) = to.public_key();
    let key = RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(exponent))
        .map_err(|_| TpmError::Malformed("the RSA public key is not usable"))?;
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let encrypted = key
        .encrypt(rng, Oaep::new_with_label::<Sha256, _>(label), &seed)
        .map_err(|_| TpmError::Malformed("RSA-OAEP"))?;
    Ok((seed, sized(&encrypted)))
}

/// The outer wrap shared by both protections: `TPM2B_DIGEST(HMAC(KDFa(INTEGRITY), enc || name)) || enc`, with
/// `enc = AES-CFB(KDFa(STORAGE, name), plaintext)`.
fn outer_wrap(seed: &[u8], symmetric: AesBits, name: &[u8], mut plaintext: Vec<u8>) -> Vec<u8> {
    let sym_key = kdfa(seed, "STORAGE", name, &[], symmetric.bits());
    cfb_encrypt(symmetric, &sym_key, &mut plaintext);
    let hmac_key = kdfa(seed, "INTEGRITY", &[], &[], 256);
    let integrity = hmac(&hmac_key, &[&plaintext, name]);
    let mut w = Writer::default();
    w.sized(&integrity).raw(&plaintext);
    w.into_bytes()
}

/// TPM2_MakeCredential done in software: `credential` (at most 32 bytes) protected for `ek`, bound to the
/// object named `object_name` (ActivateCredential succeeds only with that object loaded).
/// Returns (`TPM2B_ID_OBJECT`, `TPM2B_ENCRYPTED_SECRET`).
pub fn make_credential(
    rng: &mut impl CryptoRngCore,
    ek: &RsaStorageKey,
    credential: &[u8],
    object_name: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
    if credential.len() > 32 {
        return Err(TpmError::TooLarge("credential"));
    }
    let (seed, secret) = seed_for(rng, ek, "IDENTITY\0")?;
    let id_object = outer_wrap(&seed, ek.symmetric(), object_name, sized(credential));
    Ok((sized(&id_object), secret))
}

/// A duplicated object, as TPM2_Import takes it.
pub struct Duplicate {
    /// `TPM2B_PUBLIC` of the object.
    pub public: Vec<u8>,
    /// `TPM2B_PRIVATE`: the doubly wrapped sensitive area.
    pub private: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET`: the outer wrap's seed, encrypted to the new parent.
    pub seed_secret: Vec<u8>,
}

/// A new HMAC-SHA256 keyed-hash object around `key`, duplicated to `parent` with an inner wrap (AES-128-CFB with
/// `inner_key`) and an outer wrap (a seed encrypted to `parent`), as TPM2_Import takes it.
pub fn duplicate_hmac_key(
    rng: &mut impl CryptoRngCore,
    parent: &RsaStorageKey,
    key: &[u8; 32],
    inner_key: &[u8; 16],
) -> Result<Duplicate, TpmError> {
    // TPMT_SENSITIVE: type, empty authValue, the obfuscation seed, the key; its public unique is H(seed || key).
    let mut obfuscation = [0u8; 32];
    rng.fill_bytes(&mut obfuscation);
    let unique: [u8; 32] = Sha256::new().chain_update(obfuscation).chain_update(key).finalize().into();
    let public = super::public::hmac_key_public(&unique);
    let name = super::public::name_sha256(&public);
    let mut sensitive = Writer::default();
    sensitive.u16(super::public::alg::KEYEDHASH).sized(&[]).sized(&obfuscation).sized(key);
    let sensitive = sized(&sensitive.into_bytes());

    // Inner wrap: AES-128-CFB(inner_key, TPM2B_DIGEST(H(sensitive || name)) || sensitive).
    let inner_integrity: [u8; 32] = Sha256::new().chain_update(&sensitive).chain_update(&name).finalize().into();
    let mut inner = sized(&inner_integrity);
    inner.extend_from_slice(&sensitive);
    cfb_encrypt(AesBits::Aes128, inner_key, &mut inner);

    let (seed, secret) = seed_for(rng, parent, "DUPLICATE\0")?;
    let private = outer_wrap(&seed, parent.symmetric(), &name, inner);
    Ok(Duplicate { public: sized(&public), private: sized(&private), seed_secret: secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_counts_blocks_and_truncates() {
        let long = kdfa(b"key", "STORAGE", b"u", b"", 512);
        assert_eq!(long.len(), 64);
        let short = kdfa(b"key", "STORAGE", b"u", b"", 128);
        assert_eq!(short.len(), 16);
        // The bit count is part of every block's input: a shorter output is not a prefix of a longer one.
        assert_ne!(short[..], long[..16]);
        assert_ne!(kdfa(b"key", "INTEGRITY", b"u", b"", 128), short);
    }
}
