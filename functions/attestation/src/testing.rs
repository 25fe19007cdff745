//! Certificates for tests (feature `testing`): roots, intermediates and device certificates generated with rcgen,
//! with ECDSA P-256 keys made fresh or RSA-2048 keys from three fixed test-only keys (ring cannot generate RSA
//! keys). Used by this crate's tests and by the core, API and server tests.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// Test-only RSA-2048 keys (PKCS#8 PEM). Never use them for anything else.
const RSA_KEYS: [&str; 3] =
    [include_str!("testing/rsa-1.pem"), include_str!("testing/rsa-2.pem"), include_str!("testing/rsa-3.pem")];

/// Which key a certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A fresh ECDSA P-256 key, signed with SHA-256.
    EcdsaP256,
    /// One of the fixed RSA-2048 keys (by index, 0..3), signed with SHA-256.
    Rsa2048(usize),
}

fn key(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key"),
        KeyKind::Rsa2048(i) => {
            KeyPair::from_pem_and_sign_algo(RSA_KEYS[i % 3], &rcgen::PKCS_RSA_SHA256).expect("RSA key")
        }
    }
}

/// A generated certificate with its private key.
pub struct TestCert {
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl TestCert {
    /// Sign another certificate with this one (it should be a CA).
    pub fn issue(&self, common_name: &str, kind: KeyKind, shape: impl FnOnce(&mut CertificateParams)) -> TestCert {
        let mut params = base(common_name);
        shape(&mut params);
        let key = key(kind);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        TestCert { der: cert.der().to_vec(), pem: cert.pem(), key_pem: key.serialize_pem(), params, key }
    }

    /// An intermediate CA under this one.
    pub fn intermediate(&self, common_name: &str, kind: KeyKind) -> TestCert {
        self.issue(common_name, kind, ca)
    }

    /// A device certificate under this one (client authentication).
    pub fn device(&self, common_name: &str, kind: KeyKind) -> TestCert {
        self.issue(common_name, kind, device)
    }
}

/// A self-signed certificate shaped by `shape`.
pub fn self_signed(common_name: &str, kind: KeyKind, shape: impl FnOnce(&mut CertificateParams)) -> TestCert {
    let mut params = base(common_name);
    shape(&mut params);
    let key = key(kind);
    let cert = params.self_signed(&key).expect("self-sign");
    TestCert { der: cert.der().to_vec(), pem: cert.pem(), key_pem: key.serialize_pem(), params, key }
}

/// A self-signed root CA.
pub fn root(common_name: &str, kind: KeyKind) -> TestCert {
    self_signed(common_name, kind, ca)
}

/// A self-signed device certificate (for individual enrollments).
pub fn self_signed_device(common_name: &str, kind: KeyKind) -> TestCert {
    self_signed(common_name, kind, device)
}

/// Shape: a CA (any path length, may sign certificates).
pub fn ca(params: &mut CertificateParams) {
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
}

/// Shape: a device (end entity, client authentication).
pub fn device(params: &mut CertificateParams) {
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
}

/// Shape: valid from `from` to `to` days from now (negative is in the past).
pub fn valid_days(from: i64, to: i64) -> impl FnOnce(&mut CertificateParams) {
    move |params| {
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(from);
        params.not_after = now + Duration::days(to);
    }
}

fn base(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.distinguished_name.push(DnType::OrganizationName, "DPS tests");
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    params.serial_number = Some(rand_serial());
    params
}

fn rand_serial() -> rcgen::SerialNumber {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    rcgen::SerialNumber::from_slice(&[&[0x01], &nanos.to_be_bytes()[..], &n.to_be_bytes()[..]].concat())
}

/// A CSR (DER PKCS#10) with subject CN `common_name` and a key of `kind`, with that key (PKCS#8 PEM).
pub fn csr(common_name: &str, kind: KeyKind) -> (Vec<u8>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, common_name);
    let key = key(kind);
    let request = params.serialize_request(&key).expect("CSR");
    (request.der().to_vec(), key.serialize_pem())
}

/// A CSR with a 1024-bit RSA key (CN `weak-device`), made once with openssl: ring cannot make or use such keys.
pub const WEAK_RSA_CSR: &[u8] = include_bytes!("testing/csr-rsa-1024.der");
