//! Pure attestation checks: no domain types, no I/O. The core calls these with bytes it was given and decides
//! what they mean for an enrollment.
//!
//! - `x509`: certificate parsing (the Azure `X509CertificateInfo`), thumbprints, chain validation (rustls-webpki).
//! - [`csr`]: certificate signing requests devices send to get a hub certificate (PKCS#10, checked).
//! - [`tpm`]: the TPM endorsement-key challenge (MakeCredential, duplication of a keyed-hash key, TPM structures).

pub mod csr;
pub mod tpm;
pub mod x509;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
