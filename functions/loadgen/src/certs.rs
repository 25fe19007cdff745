//! Device certificates for the X.509 attestations, made before the clock starts: a CA for the run's group (a
//! generated root, or the operator's CA certificate and key), and for every device a leaf whose subject CN is its
//! registration ID (signed by that CA, or self-signed for individual enrollments), with the key the device proves
//! itself with in the TLS handshake.
//!
//! ECDSA P-256 leaves get a fresh key each. RSA-2048 keys are made with the `rsa` crate (ring, which signs here,
//! cannot generate them) and take a fraction of a second each, so a run makes one for its CA and one that all
//! its leaves share: the server's work per device is the same (it checks each leaf's signature and each
//! handshake's signature, whichever key made them).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PublicKeyData, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::{CertifiedKey, SigningKey};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The key type of the run's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyType {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// RSA-2048 with SHA-256 (PKCS#1 v1.5).
    Rsa2048,
}

/// A new private key of `kind`, PKCS#8 DER.
fn generate(kind: KeyType) -> anyhow::Result<Vec<u8>> {
    Ok(match kind {
        KeyType::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?.serialize_der(),
        KeyType::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).context("generating an RSA key")?;
            key.to_pkcs8_der().context("encoding the RSA key")?.as_bytes().to_vec()
        }
    })
}

fn key_pair(pkcs8: &[u8], kind: KeyType) -> anyhow::Result<KeyPair> {
    let algorithm = match kind {
        KeyType::P256 => &PKCS_ECDSA_P256_SHA256,
        KeyType::Rsa2048 => &PKCS_RSA_SHA256,
    };
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), algorithm)?)
}

/// A leaf's key as rcgen (to put it in the certificate) and rustls (to sign the handshake) use it.
#[derive(Clone)]
struct Key {
    pair: Arc<KeyPair>,
    tls: Arc<dyn SigningKey>,
}

impl Key {
    fn generate(kind: KeyType) -> anyhow::Result<Self> {
        let pkcs8 = generate(kind)?;
        let pair = Arc::new(key_pair(&pkcs8, kind)?);
        let tls = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(pkcs8.into()))?;
        Ok(Self { pair, tls })
    }
}

/// Where leaves' keys come from.
pub struct Keys {
    kind: KeyType,
    /// The key RSA leaves share.
    shared: Option<Key>,
}

impl Keys {
    /// Keys of `kind` (for RSA-2048, the shared leaf key is made now).
    pub fn new(kind: KeyType) -> anyhow::Result<Self> {
        let shared = match kind {
            KeyType::P256 => None,
            KeyType::Rsa2048 => Some(Key::generate(kind)?),
        };
        Ok(Self { kind, shared })
    }

    /// The key type.
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    fn leaf_key(&self) -> anyhow::Result<Key> {
        match &self.shared {
            Some(key) => Ok(key.clone()),
            None => Key::generate(self.kind),
        }
    }
}

/// The CA that signs the devices of a run's group.
pub struct Ca {
    /// Its certificate (the group's signing certificate).
    pub pem: String,
    subject: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A device's certificate: the PEM an individual enrollment holds, and the chain and key it presents.
pub struct DeviceCertificate {
    /// The leaf, PEM.
    pub pem: String,
    /// The leaf and its key, as the TLS client presents them.
    pub tls: Arc<CertifiedKey>,
}

impl Ca {
    /// A self-signed root CA of `kind`, named after the run.
    pub fn generate(run: &str, kind: KeyType) -> anyhow::Result<Self> {
        let key = key_pair(&generate(kind)?, kind)?;
        let mut params = base(&format!("{run} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key)?;
        let subject = subject_of(cert.der())?;
        Ok(Self { pem: cert.pem(), subject, issuer: Issuer::new(params, key) })
    }

    /// The operator's CA: its certificate (PEM) and private key (PKCS#8 PEM). Leaves name its subject as their
    /// issuer exactly as the certificate spells it, so their chains validate to it.
    pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?;
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .with_context(|| format!("{} holds no PEM certificate", cert.display()))??;
        let key_pem = std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
        let pair =
            KeyPair::from_pem(&key_pem).with_context(|| format!("{}: not a PKCS#8 private key", key.display()))?;
        let (_, parsed) = X509Certificate::from_der(&der).map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
        if !matches!(parsed.basic_constraints(), Ok(Some(bc)) if bc.value.ca) {
            bail!("{} is not a CA certificate (basic constraints CA:TRUE)", cert.display());
        }
        if parsed.public_key().subject_public_key.data.as_ref() != pair.der_bytes() {
            bail!("{} is not the key of {}", key.display(), cert.display());
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&parsed)?;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let subject = parsed.subject().as_raw().to_vec();
        let ca = Self { pem, subject, issuer: Issuer::new(params, pair) };
        // rcgen re-encodes the name: make sure it came out byte for byte, or no chain would validate.
        let probe = ca.leaf("probe", &Keys::new(KeyType::P256)?)?;
        if issuer_of(&probe.tls.cert[0])? != ca.subject {
            bail!("{}: its subject name cannot be reproduced exactly in the devices' certificates", cert.display());
        }
        Ok(ca)
    }

    /// A device certificate for `registration_id`, signed by this CA.
    pub fn leaf(&self, registration_id: &str, keys: &Keys) -> anyhow::Result<DeviceCertificate> {
        let key = keys.leaf_key()?;
        let cert = device_params(registration_id)?.signed_by(key.pair.as_ref(), &self.issuer)?;
        Ok(DeviceCertificate { pem: cert.pem(), tls: Arc::new(CertifiedKey::new(vec![cert.der().clone()], key.tls)) })
    }

    /// The subject name (DER), as leaves name their issuer.
    pub fn subject(&self) -> &[u8] {
        &self.subject
    }
}

/// A self-signed device certificate for `registration_id` (an individual enrollment holds it).
pub fn self_signed(registration_id: &str, keys: &Keys) -> anyhow::Result<DeviceCertificate> {
    let key = keys.leaf_key()?;
    let cert = device_params(registration_id)?.self_signed(key.pair.as_ref())?;
    Ok(DeviceCertificate { pem: cert.pem(), tls: Arc::new(CertifiedKey::new(vec![cert.der().clone()], key.tls)) })
}

fn device_params(registration_id: &str) -> anyhow::Result<CertificateParams> {
    let mut params = base(registration_id);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// Subject CN `common_name`, valid from a day ago for 30 days, a random serial number.
fn base(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7f; // positive
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params
}

/// A parsed certificate's subject as rcgen builds names: each attribute with its string type kept.
fn distinguished_name(cert: &X509Certificate<'_>) -> anyhow::Result<DistinguishedName> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut name = DistinguishedName::new();
    for attribute in cert.subject().iter_attributes() {
        let oid: Vec<u64> = attribute.attr_type().iter().context("an attribute type too long to read")?.collect();
        let value = attribute.attr_value();
        let text = || std::str::from_utf8(value.data).map(str::to_string).context("an attribute that is not text");
        let value = match value.tag() {
            Tag::PrintableString => DnValue::PrintableString(text()?.try_into()?),
            Tag::Utf8String => DnValue::Utf8String(text()?),
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into()?),
            other => bail!("the CA's subject has an attribute of type {other:?}, which the devices cannot copy"),
        };
        name.push(DnType::from_oid(&oid), value);
    }
    Ok(name)
}

fn subject_of(der: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cert.subject().as_raw().to_vec())
}

fn issuer_of(der: &CertificateDer<'_>) -> anyhow::Result<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cert.issuer().as_raw().to_vec())
}
