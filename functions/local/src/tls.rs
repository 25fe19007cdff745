//! TLS: the generated local CA and server certificate, and the rustls server configuration.
//!
//! The CA (`ca.pem`, `ca-key.pem`) is made once per data dir, so clients trust it once. The server certificate is
//! issued again on every start, because its names follow the instances (each service host name is a SAN) and an
//! instance may have been created since the last start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// Paths of the PEM files the server uses.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA certificate clients should trust (absent when the operator supplied the server certificate).
    pub ca: Option<PathBuf>,
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
}

/// Names every generated server certificate carries, before the instances' host names.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Make sure `<tls_dir>` holds a CA and a server certificate for `names` (plus the loopback names).
pub fn ensure_local_pki(tls_dir: &Path, names: &[String]) -> anyhow::Result<TlsFiles> {
    crate::store::create_private_dir(tls_dir)?;
    let ca_path = tls_dir.join("ca.pem");
    let ca_key_path = tls_dir.join("ca-key.pem");
    let ca_key = if ca_path.is_file() && ca_key_path.is_file() {
        let pem =
            std::fs::read_to_string(&ca_key_path).with_context(|| format!("reading {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).with_context(|| format!("parsing {}", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params(OffsetDateTime::now_utc()).self_signed(&key)?;
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(path = %ca_path.display(), "generated a local certificate authority");
        key
    };
    // The issuer needs only the CA's name, key usages and key: rebuilt from the same parameters, its signatures
    // chain to the stored ca.pem.
    let issuer = Issuer::new(ca_params(OffsetDateTime::now_utc()), ca_key);

    let mut sans: Vec<String> = Vec::new();
    for name in LOOPBACK_NAMES.iter().map(|s| s.to_string()).chain(names.iter().map(|n| n.to_ascii_lowercase())) {
        if !name.is_empty() && !sans.contains(&name) {
            sans.push(name);
        }
    }
    let mut params = CertificateParams::new(sans.clone())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "dps local server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(397);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let cert_path = tls_dir.join("server.pem");
    let key_path = tls_dir.join("server-key.pem");
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(path = %cert_path.display(), names = ?sans, "issued the server certificate");
    Ok(TlsFiles { ca: Some(ca_path), cert: cert_path, key: key_path })
}

fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "dps");
    params.distinguished_name.push(DnType::CommonName, "dps local development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    params
}

/// Write through a temporary file and a rename, so a crash never leaves half a key; `mode` applies from creation.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN h2 and http/1.1) from PEM files. It asks
/// for a client certificate without requiring one (see [`DeviceCertificates`]). After a full handshake it sends
/// `tickets` stateless session tickets (none with 0): rustls' default is two, kept in a 256-entry cache that a
/// fleet outruns, so they cost every new connection work and rarely let a device resume.
pub fn server_config(files: &TlsFiles, tickets: u8) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(prefer_sha256_suites(rustls::crypto::ring::default_provider()));
    let verifier = Arc::new(DeviceCertificates { algorithms: provider.signature_verification_algorithms });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    config.send_tls13_tickets = usize::from(tickets);
    if tickets > 0 {
        config.ticketer = rustls::crypto::ring::Ticketer::new().context("making the TLS session ticket key")?;
    }
    Ok(Arc::new(config))
}

/// The provider's cipher suites with the SHA-256 ones first, for the server to choose by (`ignore_client_order`):
/// clients list AES-256-GCM-SHA384 first, and its handshake hashing (HKDF over SHA-384) runs in software, while
/// SHA-256 is far cheaper (0.2% of server CPU in the profile against SHA-512's 3.9%); AES-128-GCM is as safe
/// for this use. Every suite stays available.
fn prefer_sha256_suites(mut provider: rustls::crypto::CryptoProvider) -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS13_AES_256_GCM_SHA384,
    };
    provider.cipher_suites.sort_by_key(|suite| {
        matches!(
            suite.suite(),
            TLS13_AES_256_GCM_SHA384 | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        )
    });
    provider
}

/// The TLS side of X.509 attestation: ask every client for a certificate, take whichever it sends (self-signed
/// device certificates included) or none, and check only that the client holds the certificate's key (the
/// handshake signature). Whether the certificate admits a device is the application's decision, against the
/// enrollments; symmetric-key devices send none and carry on as before.
#[derive(Debug)]
struct DeviceCertificates {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for DeviceCertificates {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing {}", path.display()))?
        .with_context(|| format!("{} holds no PEM private key", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_files_make_a_server_config_and_keep_the_ca_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let first = ensure_local_pki(&tls, &["dps.example.net".into()]).unwrap();
        let ca_before = std::fs::read(first.ca.as_ref().unwrap()).unwrap();
        server_config(&first, 1).unwrap();
        for key in [&first.key, &tls.join("ca-key.pem")] {
            assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600, "{}", key.display());
        }

        let second = ensure_local_pki(&tls, &["other.example.net".into()]).unwrap();
        assert_eq!(std::fs::read(second.ca.as_ref().unwrap()).unwrap(), ca_before, "the CA must survive restarts");
        server_config(&second, 1).unwrap();
    }

    #[test]
    fn missing_or_empty_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let files = TlsFiles { ca: None, cert: empty.clone(), key: empty };
        let err = server_config(&files, 1).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
