//! X.509 attestation in the Azure wire form: enrollment certificates, CA references, the CA certificates an
//! instance holds (our extension), and what a registration records about the certificates that admitted it.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// `X509Attestation`: exactly one of the three parts. Individual enrollments use `clientCertificates`; groups
/// use `signingCertificates` or `caReferences`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    /// The device's own certificates (individual enrollments).
    pub client_certificates: Option<X509Certificates>,
    /// Root or intermediate certificates that sign the group's devices.
    pub signing_certificates: Option<X509Certificates>,
    /// Names of verified CA certificates of the instance that sign the group's devices.
    pub ca_references: Option<X509CaReferences>,
}

/// A primary and an optional secondary certificate.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificates {
    /// Primary certificate.
    pub primary: Option<X509CertificateWithInfo>,
    /// Secondary certificate (for rollover).
    pub secondary: Option<X509CertificateWithInfo>,
}

impl X509Certificates {
    /// The certificates present, primary first.
    pub fn iter(&self) -> impl Iterator<Item = &X509CertificateWithInfo> {
        self.primary.iter().chain(self.secondary.iter())
    }
}

/// A certificate as sent (PEM, base64 of PEM, base64 of DER; or, for client certificates, a SHA-1 or SHA-256
/// thumbprint in hex) and what the service read from it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateWithInfo {
    /// The certificate (or thumbprint) as sent.
    pub certificate: Option<String>,
    /// Computed by the service at write time (read-only; a thumbprint-only entry has only the thumbprints).
    pub info: Option<X509CertificateInfo>,
}

/// `X509CertificateInfo`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateInfo {
    /// Subject distinguished name.
    pub subject_name: Option<String>,
    /// SHA-1 thumbprint, upper-case hex.
    pub sha1_thumbprint: Option<String>,
    /// SHA-256 thumbprint, upper-case hex.
    pub sha256_thumbprint: Option<String>,
    /// Issuer distinguished name.
    pub issuer_name: Option<String>,
    /// Start of validity.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub not_before_utc: Option<Timestamp>,
    /// End of validity.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub not_after_utc: Option<Timestamp>,
    /// Serial number, upper-case hex.
    pub serial_number: Option<String>,
    /// X.509 version.
    pub version: Option<u32>,
}

impl X509CertificateInfo {
    /// Whether this is the certificate with the given SHA-256 thumbprint (or, for a thumbprint-only entry, SHA-1).
    pub fn is(&self, sha1: &str, sha256: &str) -> bool {
        let eq = |mine: &Option<String>, theirs: &str| mine.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(theirs));
        eq(&self.sha256_thumbprint, sha256) || eq(&self.sha1_thumbprint, sha1)
    }
}

/// Names of CA certificates of the instance.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CaReferences {
    /// Primary CA name.
    pub primary: Option<String>,
    /// Secondary CA name.
    pub secondary: Option<String>,
}

impl X509CaReferences {
    /// The names present, primary first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.primary.iter().chain(self.secondary.iter()).map(String::as_str)
    }
}

/// A CA certificate held by an instance (our extension, like Azure's DPS certificates): usable by groups'
/// `caReferences` once its owner has proven possession of its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificate {
    /// Name, unique in the instance (case-insensitive).
    pub name: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// What the certificate says.
    pub info: X509CertificateInfo,
    /// True once a certificate signed by this CA with the verification code as its CN has been presented.
    #[serde(default)]
    pub is_verified: bool,
    /// The code the proof-of-possession certificate's CN must carry (absent once verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_code: Option<String>,
    /// Upload time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time_utc: Timestamp,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub last_updated_date_time_utc: Timestamp,
}

/// `X509RegistrationResult`: the certificates that admitted a device, as its registration reports them.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509RegistrationResult {
    /// The device's certificate.
    pub certificate_info: Option<X509CertificateInfo>,
    /// The group that admitted the device.
    pub enrollment_group_id: Option<String>,
    /// The group's certificate the chain was validated to.
    pub signing_certificate_info: Option<X509CertificateInfo>,
}
