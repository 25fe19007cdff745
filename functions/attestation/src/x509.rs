//! X.509: reading certificates as Azure describes them (`X509CertificateInfo`), and validating a device's chain
//! up to a trusted certificate with rustls-webpki (signatures, validity, basic constraints and path length, key
//! usage and the client-authentication extended key usage). Parsing is x509-parser's; nothing here checks a
//! signature itself.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// Most certificates a device may present (leaf, intermediates, root).
pub const MAX_CHAIN_CERTIFICATES: usize = 5;
/// Largest one certificate may be (DER).
pub const MAX_CERTIFICATE_BYTES: usize = 8 * 1024;
/// Largest a whole presented chain may be (DER, summed).
pub const MAX_CHAIN_BYTES: usize = 24 * 1024;

/// Why a certificate or chain was not accepted. Messages name the problem, never the certificate's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    /// Not a certificate we can read (bad PEM, base64 or DER).
    #[error("the certificate could not be read: {0}")]
    Malformed(&'static str),
    /// Over one of the size or length bounds.
    #[error("the certificate chain is too large: {0}")]
    TooLarge(&'static str),
    /// Outside its validity period.
    #[error("the certificate is expired or not yet valid")]
    NotValidNow,
    /// The chain does not lead to the trusted certificate (or breaks a rule on the way).
    #[error("the certificate chain is not valid: {0}")]
    Chain(String),
}

/// Azure's `X509CertificateInfo`: what a certificate says, shown on enrollments and registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject distinguished name, e.g. `CN=device-01, O=Contoso`.
    pub subject_name: String,
    /// SHA-1 of the DER, upper-case hex.
    pub sha1_thumbprint: String,
    /// SHA-256 of the DER, upper-case hex.
    pub sha256_thumbprint: String,
    /// Issuer distinguished name.
    pub issuer_name: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Serial number, upper-case hex.
    pub serial_number: String,
    /// X.509 version (1 to 3).
    pub version: u32,
}

/// One parsed certificate: its DER and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    info: CertificateInfo,
    common_name: Option<String>,
    is_ca: bool,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
}

impl Certificate {
    /// Read one DER certificate (within [`MAX_CERTIFICATE_BYTES`]).
    pub fn from_der(der: &[u8]) -> Result<Self, X509Error> {
        if der.len() > MAX_CERTIFICATE_BYTES {
            return Err(X509Error::TooLarge("a certificate is over 8 KiB"));
        }
        let (rest, cert) = X509Certificate::from_der(der).map_err(|_| X509Error::Malformed("not a DER certificate"))?;
        if !rest.is_empty() {
            return Err(X509Error::Malformed("bytes after the certificate"));
        }
        let validity = cert.validity();
        let time = |t: i64| OffsetDateTime::from_unix_timestamp(t).map_err(|_| X509Error::Malformed("bad time"));
        let info = CertificateInfo {
            subject_name: azure_name(cert.subject()),
            sha1_thumbprint: hex_upper(&Sha1::digest(der)),
            sha256_thumbprint: hex_upper(&Sha256::digest(der)),
            issuer_name: azure_name(cert.issuer()),
            not_before: time(validity.not_before.timestamp())?,
            not_after: time(validity.not_after.timestamp())?,
            serial_number: hex_upper(cert.raw_serial()),
            version: cert.version().0 + 1,
        };
        let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        Ok(Self {
            der: der.to_vec(),
            info,
            common_name,
            is_ca,
            subject_der: cert.subject().as_raw().to_vec(),
            issuer_der: cert.issuer().as_raw().to_vec(),
        })
    }

    /// Read a certificate as enrollments carry it: PEM text, base64 of PEM text (the C SDK's form), or base64
    /// of DER.
    pub fn from_text(text: &str) -> Result<Self, X509Error> {
        Self::from_der(&der_from_text(text)?)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// What the certificate says.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The subject's first common name, if it has one.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// Whether basic constraints mark it as a CA.
    pub fn is_ca(&self) -> bool {
        self.is_ca
    }

    /// Whether `other` names this certificate's subject as its issuer (byte-equal distinguished names).
    pub fn issued(&self, other: &Certificate) -> bool {
        other.issuer_der == self.subject_der
    }

    /// Whether `now` is within the validity period.
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.info.not_before <= now && now <= self.info.not_after
    }

    /// Whether `thumbprint` (SHA-1 or SHA-256, hex in any case, colons or spaces allowed) is this certificate's.
    pub fn has_thumbprint(&self, thumbprint: &str) -> bool {
        let given: String = thumbprint.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
        given.eq_ignore_ascii_case(&self.info.sha1_thumbprint)
            || given.eq_ignore_ascii_case(&self.info.sha256_thumbprint)
    }
}

/// A device's chain as presented, leaf first, within the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain(Vec<Certificate>);

impl Chain {
    /// Parse DER certificates, leaf first, checking [`MAX_CHAIN_CERTIFICATES`] and [`MAX_CHAIN_BYTES`].
    pub fn from_der<B: AsRef<[u8]>>(certificates: &[B]) -> Result<Self, X509Error> {
        if certificates.is_empty() {
            return Err(X509Error::Malformed("no certificate"));
        }
        if certificates.len() > MAX_CHAIN_CERTIFICATES {
            return Err(X509Error::TooLarge("more than 5 certificates"));
        }
        if certificates.iter().map(|c| c.as_ref().len()).sum::<usize>() > MAX_CHAIN_BYTES {
            return Err(X509Error::TooLarge("over 24 KiB"));
        }
        Ok(Self(certificates.iter().map(|c| Certificate::from_der(c.as_ref())).collect::<Result<_, _>>()?))
    }

    /// Parse a PEM chain (as proxies forward it), leaf first, within the same bounds.
    pub fn from_pem(pem: &[u8]) -> Result<Self, X509Error> {
        Self::from_der(&pem_to_der(pem)?)
    }

    /// The device's own certificate.
    pub fn leaf(&self) -> &Certificate {
        &self.0[0]
    }

    /// Every certificate, leaf first.
    pub fn certificates(&self) -> &[Certificate] {
        &self.0
    }

    /// Validate the chain up to `anchor` (a root or intermediate the verifier trusts), at `now`: the leaf is an
    /// end entity usable for client authentication, and the presented certificates between it and the anchor
    /// are the only intermediates considered.
    pub fn verify_to(&self, anchor: &Certificate, now: OffsetDateTime) -> Result<(), X509Error> {
        let anchor_der = CertificateDer::from(anchor.der());
        let anchor = webpki::anchor_from_trusted_cert(&anchor_der).map_err(|e| X509Error::Chain(e.to_string()))?;
        let leaf_der = CertificateDer::from(self.leaf().der());
        let leaf = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| X509Error::Chain(e.to_string()))?;
        let intermediates: Vec<CertificateDer<'_>> =
            self.0[1..].iter().map(|c| CertificateDer::from(c.der())).collect();
        let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(secs)),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => X509Error::NotValidNow,
            other => X509Error::Chain(chain_reason(&other)),
        })
    }
}

/// The DER certificates of a PEM chain (as proxies forward it), in order, within [`MAX_CHAIN_CERTIFICATES`]
/// and twice [`MAX_CHAIN_BYTES`] of text. Anything between the PEM sections is ignored; no section is an error.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    if pem.len() > 2 * MAX_CHAIN_BYTES {
        return Err(X509Error::TooLarge("over 24 KiB"));
    }
    let mut ders = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        let der = item.map_err(|_| X509Error::Malformed("bad PEM"))?;
        ders.push(der.to_vec());
        if ders.len() > MAX_CHAIN_CERTIFICATES {
            return Err(X509Error::TooLarge("more than 5 certificates"));
        }
    }
    if ders.is_empty() {
        return Err(X509Error::Malformed("no PEM certificate"));
    }
    Ok(ders)
}

/// DER from an enrollment's certificate text: PEM, base64 of PEM, or base64 of DER.
fn der_from_text(text: &str) -> Result<Vec<u8>, X509Error> {
    let text = text.trim();
    if text.len() > 2 * MAX_CERTIFICATE_BYTES {
        return Err(X509Error::TooLarge("a certificate is over 8 KiB"));
    }
    if text.starts_with("-----BEGIN") {
        return CertificateDer::from_pem_slice(text.as_bytes())
            .map(|der| der.to_vec())
            .map_err(|_| X509Error::Malformed("bad PEM"));
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = B64.decode(compact).map_err(|_| X509Error::Malformed("neither PEM nor base64"))?;
    if bytes.starts_with(b"-----BEGIN") {
        return CertificateDer::from_pem_slice(&bytes)
            .map(|der| der.to_vec())
            .map_err(|_| X509Error::Malformed("bad PEM inside base64"));
    }
    Ok(bytes)
}

/// webpki's reasons in words a device owner can act on.
fn chain_reason(error: &webpki::Error) -> String {
    use webpki::Error as E;
    match error {
        E::UnknownIssuer => "it does not chain to the enrollment's certificate".into(),
        E::CaUsedAsEndEntity => "the device certificate is a CA certificate".into(),
        E::EndEntityUsedAsCa => "a certificate in the chain is not a CA".into(),
        E::PathLenConstraintViolated => "the chain breaks a path length constraint".into(),
        E::RequiredEkuNotFoundContext(_) => "the device certificate is not for client authentication".into(),
        E::InvalidSignatureForPublicKey => "a signature is invalid".into(),
        E::UnsupportedSignatureAlgorithmContext(_) => "a signature algorithm is not supported".into(),
        E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => "a signature algorithm does not fit its key".into(),
        E::MaximumPathDepthExceeded | E::MaximumPathBuildCallsExceeded => "the chain is too long".into(),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}

/// A distinguished name as Azure (.NET) writes it: the most specific attribute first, `CN=device-01, O=Contoso,
/// C=US` for a name encoded C, O, CN (x509-parser prints the encoding order).
fn azure_name(name: &X509Name) -> String {
    let mut rdns: Vec<_> = name.iter_rdn().cloned().collect();
    rdns.reverse();
    X509Name::new(rdns, name.as_raw()).to_string()
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

#[cfg(test)]
#[path = "x509_tests.rs"]
mod tests;
