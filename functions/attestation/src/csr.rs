//! Certificate signing requests (PKCS#10) a device sends to get a certificate for its hub (Azure's
//! 2025-07-01-preview `csr`): decoded, bounded, self-signature verified, subject and key checked. Pure.
//!
//! The subject's common name must be the registration ID, compared ignoring ASCII case: DPS registration IDs
//! are case-insensitive (Azure stores them lower-case), so a device that writes its ID in capitals in its CSR
//! is the same device. Keys: EC P-256 or P-384, or RSA of at least 2048 bits (what AWS IoT Core and Azure
//! accept); ring verifies the signature.

use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

/// Largest CSR accepted, DER or PEM (a P-384 CSR is ~400 bytes, an RSA-4096 one ~1.6 KB).
pub const MAX_CSR_BYTES: usize = 8 * 1024;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// What a good CSR says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrInfo {
    /// The CSR, DER (decoded from PEM if it came as PEM).
    pub der: Vec<u8>,
    /// The subject's common name.
    pub common_name: String,
    /// The key.
    pub key: CsrKey,
    /// The DER SubjectPublicKeyInfo (to match the issued certificate's key against).
    pub public_key_info: Vec<u8>,
}

/// A CSR's key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrKey {
    /// ECDSA over P-256.
    EcP256,
    /// ECDSA over P-384.
    EcP384,
    /// RSA with a modulus of this many bits.
    Rsa(usize),
}

/// Why a CSR is refused; each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Larger than [`MAX_CSR_BYTES`].
    #[error("The CSR is {0} bytes; at most {MAX_CSR_BYTES} are accepted")]
    TooLarge(usize),
    /// Not a DER (or PEM) PKCS#10 request.
    #[error("The CSR is not a PKCS#10 certificate request (base64 DER)")]
    Malformed,
    /// Bytes after the request.
    #[error("The CSR has trailing bytes after the certificate request")]
    TrailingBytes,
    /// The subject has no common name.
    #[error("The CSR's subject has no common name (CN); it must be the registration ID")]
    NoCommonName,
    /// The subject's common name is another registration ID.
    #[error("The CSR's subject common name '{found}' is not the registration ID '{expected}'")]
    WrongCommonName {
        /// The CN in the CSR.
        found: String,
        /// The registration ID.
        expected: String,
    },
    /// RSA key shorter than [`MIN_RSA_BITS`].
    #[error("The CSR's RSA key has {0} bits; at least {MIN_RSA_BITS} are required")]
    WeakRsaKey(usize),
    /// A key type or curve we do not accept.
    #[error("The CSR's key is {0}; only EC P-256, EC P-384 and RSA (2048 bits or more) are accepted")]
    UnsupportedKey(String),
    /// The self-signature does not verify (or uses an algorithm we do not accept).
    #[error("The CSR's signature does not verify with its own key")]
    BadSignature,
}

/// Check a device's CSR (DER, or PEM `CERTIFICATE REQUEST`) for `registration_id`.
pub fn check_csr(bytes: &[u8], registration_id: &str) -> Result<CsrInfo, CsrError> {
    if bytes.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(bytes.len()));
    }
    let der = if bytes.starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(bytes).map_err(|_| CsrError::Malformed)?;
        if !matches!(pem.label.as_str(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST") {
            return Err(CsrError::Malformed);
        }
        pem.contents
    } else {
        bytes.to_vec()
    };
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|_| CsrError::Malformed)?;
    if !rest.is_empty() {
        return Err(CsrError::TrailingBytes);
    }
    let info = &csr.certification_request_info;
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(CsrError::NoCommonName)?
        .to_string();
    if !common_name.eq_ignore_ascii_case(registration_id) {
        return Err(CsrError::WrongCommonName { found: common_name, expected: registration_id.to_string() });
    }
    // The key before the signature: ring refuses to verify with short RSA keys, and "weak key" is the answer.
    let key = key_kind(&csr)?;
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    Ok(CsrInfo { public_key_info: info.subject_pki.raw.to_vec(), der: der.clone(), common_name, key })
}

fn key_kind(csr: &X509CertificationRequest<'_>) -> Result<CsrKey, CsrError> {
    let spki = &csr.certification_request_info.subject_pki;
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok(CsrKey::EcP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(CsrKey::EcP384),
            Some(c) => Err(CsrError::UnsupportedKey(format!("EC on curve {c}"))),
            None => Err(CsrError::UnsupportedKey("EC without a named curve".into())),
        };
    }
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(CsrError::Malformed);
        };
        let bits = bit_length(rsa.modulus);
        return if bits >= MIN_RSA_BITS { Ok(CsrKey::Rsa(bits)) } else { Err(CsrError::WeakRsaKey(bits)) };
    }
    if *algorithm == OID_SIG_ED25519 {
        return Err(CsrError::UnsupportedKey("Ed25519".into()));
    }
    Err(CsrError::UnsupportedKey(format!("of algorithm {algorithm}")))
}

/// Bits of a big-endian unsigned integer (DER may carry a leading zero byte).
fn bit_length(be: &[u8]) -> usize {
    let significant: &[u8] = match be.iter().position(|&b| b != 0) {
        Some(first) => &be[first..],
        None => return 0,
    };
    significant.len() * 8 - significant[0].leading_zeros() as usize
}

#[cfg(test)]
#[path = "csr_tests.rs"]
mod tests;
