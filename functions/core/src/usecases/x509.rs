//! X.509 attestation: reading enrollment certificates at write time, and finding the enrollment a device's
//! certificate chain belongs to at registration (Azure's rule: walk the chain from the leaf towards the root;
//! the first enrollment found decides, and a disabled one refuses the device).

use dps_attestation::x509::{Certificate, CertificateInfo, Chain, X509Error};

use super::{Dps, now};
use crate::error::{Error, Result};
use crate::ids::validate_id;
use crate::model::{
    AnyEnrollment, AttestationMechanism, AttestationType, EnrollmentGroup, EnrollmentKind, EnrollmentSpec, Instance,
    ProvisioningStatus, X509CertificateInfo, X509CertificateWithInfo, X509Certificates, X509RegistrationResult,
};
use crate::store::DeviceContext;

/// The one answer to a certificate no enrollment accepts (as Azure words it).
const NO_MATCH: &str = "Invalid certificate: no enrollment of this ID scope accepts it";

/// The Azure form of what a certificate says.
pub(crate) fn info_of(cert: &Certificate) -> X509CertificateInfo {
    let CertificateInfo {
        subject_name,
        sha1_thumbprint,
        sha256_thumbprint,
        issuer_name,
        not_before,
        not_after,
        serial_number,
        version,
    } = cert.info().clone();
    X509CertificateInfo {
        subject_name: Some(subject_name),
        sha1_thumbprint: Some(sha1_thumbprint),
        sha256_thumbprint: Some(sha256_thumbprint),
        issuer_name: Some(issuer_name),
        not_before_utc: Some(not_before),
        not_after_utc: Some(not_after),
        serial_number: Some(serial_number),
        version: Some(version),
    }
}

/// Errors about a certificate sent to the service API (400, naming the field).
fn invalid_certificate(field: &str, e: X509Error) -> Error {
    Error::invalid(format!("{field}: {e}"))
}

/// Whether `text` is a bare thumbprint: 40 (SHA-1) or 64 (SHA-256) hex digits, colons allowed.
fn as_thumbprint(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    (matches!(hex.len(), 40 | 64) && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| hex.to_ascii_uppercase())
}

/// Check an enrollment's X.509 part and compute each certificate's `info` (anything the client sent as `info`
/// is replaced). Individual enrollments take client certificates (or thumbprints); groups take signing
/// certificates (CAs) or references to the instance's CA certificates.
pub(super) fn fill_x509(
    attestation: &mut AttestationMechanism,
    kind: EnrollmentKind,
    instance: &Instance,
) -> Result<()> {
    if attestation.kind != AttestationType::X509 {
        return Ok(());
    }
    let x509 = attestation.x509.as_mut().ok_or_else(|| Error::invalid("X.509 attestation requires certificates"))?;
    let parts = [x509.client_certificates.is_some(), x509.signing_certificates.is_some(), x509.ca_references.is_some()];
    if parts.iter().filter(|p| **p).count() != 1 {
        return Err(Error::invalid(
            "X.509 attestation takes exactly one of clientCertificates, signingCertificates and caReferences",
        ));
    }
    match kind {
        EnrollmentKind::Individual => {
            let certs = x509.client_certificates.as_mut().ok_or_else(|| {
                Error::invalid("An individual enrollment's X.509 attestation takes clientCertificates")
            })?;
            fill_certificates(certs, "clientCertificates", false)
        }
        EnrollmentKind::Group => {
            if x509.client_certificates.is_some() {
                return Err(Error::invalid(
                    "An enrollment group's X.509 attestation takes signingCertificates or caReferences",
                ));
            }
            if let Some(certs) = x509.signing_certificates.as_mut() {
                return fill_certificates(certs, "signingCertificates", true);
            }
            let refs = x509.ca_references.as_ref().expect("one part is present");
            if refs.primary.is_none() {
                return Err(Error::invalid("caReferences.primary is required"));
            }
            for name in refs.iter() {
                if !instance.ca_certificates.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
                    return Err(Error::invalid(format!(
                        "caReferences: no CA certificate named '{}' in this provisioning service",
                        crate::ids::printable(name)
                    )));
                }
            }
            Ok(())
        }
    }
}

fn fill_certificates(certs: &mut X509Certificates, field: &str, signing: bool) -> Result<()> {
    if certs.primary.is_none() {
        return Err(Error::invalid(format!("{field}.primary is required")));
    }
    for (slot, entry) in [("primary", certs.primary.as_mut()), ("secondary", certs.secondary.as_mut())] {
        let Some(entry) = entry else { continue };
        let name = format!("{field}.{slot}.certificate");
        entry.info = Some(entry_info(entry, &name, signing)?);
    }
    Ok(())
}

fn entry_info(entry: &X509CertificateWithInfo, field: &str, signing: bool) -> Result<X509CertificateInfo> {
    let text = entry.certificate.as_deref().ok_or_else(|| Error::invalid(format!("{field} is required")))?;
    if !signing && let Some(thumbprint) = as_thumbprint(text) {
        let (sha1, sha256) = if thumbprint.len() == 40 { (Some(thumbprint), None) } else { (None, Some(thumbprint)) };
        return Ok(X509CertificateInfo { sha1_thumbprint: sha1, sha256_thumbprint: sha256, ..Default::default() });
    }
    let cert = Certificate::from_text(text).map_err(|e| invalid_certificate(field, e))?;
    if signing && !cert.is_ca() {
        return Err(Error::invalid(format!("{field}: a signing certificate must be a CA certificate")));
    }
    Ok(info_of(&cert))
}

/// Read a device's presented chain (DER, leaf first) and check its leaf names the registration: its subject CN
/// is the registration ID (a valid one), as in the request path.
pub(super) fn device_chain(certificates: &[Vec<u8>], registration_id: &str) -> Result<Chain> {
    let chain = Chain::from_der(certificates).map_err(|e| Error::unauthorized(format!("Invalid certificate: {e}")))?;
    let cn = chain
        .leaf()
        .common_name()
        .ok_or_else(|| Error::unauthorized("Invalid certificate: the device certificate has no subject CN"))?;
    if validate_id("registration ID", cn).is_err() {
        return Err(Error::unauthorized("Invalid certificate: the subject CN is not a valid registration ID"));
    }
    if !cn.eq_ignore_ascii_case(registration_id) {
        return Err(Error::unauthorized("Invalid certificate: the subject CN does not match the registration ID"));
    }
    Ok(chain)
}

/// The enrollment a chain admits, and what the registration records about the certificates.
pub(super) struct X509Admission {
    pub enrollment: AnyEnrollment,
    pub result: X509RegistrationResult,
}

/// A group certificate the chain could be validated to, and how far up the chain it sits.
struct Candidate<'g> {
    depth: usize,
    group: &'g EnrollmentGroup,
    anchor: Certificate,
}

impl Dps {
    /// Find the enrollment `chain` belongs to. The individual enrollment of the registration ID comes first: its
    /// certificate must be the leaf (a disabled one refuses the device even when a group would accept it).
    /// Then groups, nearest to the leaf first; the group that admitted the device before is not given
    /// precedence, since the chain itself says which certificate comes first.
    pub(super) async fn attest_x509(
        &self,
        instance: &Instance,
        context: &DeviceContext,
        chain: &Chain,
    ) -> Result<X509Admission> {
        let now = now();
        let leaf = chain.leaf();
        if !leaf.valid_at(now) {
            return Err(Error::unauthorized("Invalid certificate: the device certificate is expired or not yet valid"));
        }
        let leaf_info = info_of(leaf);
        if let Some(enrollment) = &context.enrollment {
            let matches = client_certificate_matches(&enrollment.spec, leaf);
            let disabled = enrollment.spec.provisioning_status == ProvisioningStatus::Disabled;
            if matches || (disabled && self.group_for_chain(instance, chain).await?.is_some()) {
                return Ok(X509Admission {
                    enrollment: AnyEnrollment::Individual(enrollment.clone()),
                    result: X509RegistrationResult { certificate_info: Some(leaf_info), ..Default::default() },
                });
            }
            return Err(Error::unauthorized(NO_MATCH));
        }
        let (group, anchor) =
            self.group_for_chain(instance, chain).await?.ok_or_else(|| Error::unauthorized(NO_MATCH))?;
        Ok(X509Admission {
            result: X509RegistrationResult {
                certificate_info: Some(leaf_info),
                enrollment_group_id: Some(group.enrollment_group_id.clone()),
                signing_certificate_info: Some(info_of(&anchor)),
            },
            enrollment: AnyEnrollment::Group(group),
        })
    }

    /// The first group (nearest the leaf) whose certificate the chain validates to. A group whose certificate
    /// appears in the chain but does not validate refuses the device with the reason.
    async fn group_for_chain(
        &self,
        instance: &Instance,
        chain: &Chain,
    ) -> Result<Option<(EnrollmentGroup, Certificate)>> {
        let groups = self.groups(&instance.id_scope).await?;
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        // The leaf's CN is the registration ID (checked when the chain was read): a group that declares the IDs it
        // covers is a candidate only for those.
        let registration_id = chain.leaf().common_name().unwrap_or_default();
        let eligible =
            |g: &&EnrollmentGroup| g.spec.attestation.kind == AttestationType::X509 && g.covers(registration_id);
        for group in groups.iter().filter(eligible) {
            for anchor in group_anchors(instance, &group.spec) {
                if let Some(depth) = depth_in(chain, &anchor) {
                    candidates.push(Candidate { depth, group, anchor });
                }
            }
        }
        candidates.sort_by_key(|c| c.depth);
        let mut refusal = None;
        for candidate in candidates {
            match chain.verify_to(&candidate.anchor, now()) {
                Ok(()) => return Ok(Some((candidate.group.clone(), candidate.anchor))),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        match refusal {
            Some(e) => Err(Error::unauthorized(format!("Invalid certificate: {e}"))),
            None => Ok(None),
        }
    }
}

/// Whether the leaf is one of the enrollment's client certificates (by thumbprint).
fn client_certificate_matches(spec: &EnrollmentSpec, leaf: &Certificate) -> bool {
    if spec.attestation.kind != AttestationType::X509 {
        return false;
    }
    let Some(certs) = spec.attestation.x509.as_ref().and_then(|x| x.client_certificates.as_ref()) else {
        return false;
    };
    let (sha1, sha256) = (&leaf.info().sha1_thumbprint, &leaf.info().sha256_thumbprint);
    certs.iter().filter_map(|c| c.info.as_ref()).any(|info| info.is(sha1, sha256))
}

/// The certificates a group trusts: its signing certificates, or its referenced CA certificates that are
/// verified.
fn group_anchors(instance: &Instance, spec: &EnrollmentSpec) -> Vec<Certificate> {
    let Some(x509) = spec.attestation.x509.as_ref() else {
        return Vec::new();
    };
    let texts: Vec<&str> = match (&x509.signing_certificates, &x509.ca_references) {
        (Some(certs), _) => certs.iter().filter_map(|c| c.certificate.as_deref()).collect(),
        (None, Some(refs)) => refs
            .iter()
            .filter_map(|name| instance.ca_certificates.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
            .filter(|ca| ca.is_verified)
            .map(|ca| ca.certificate.as_str())
            .collect(),
        (None, None) => Vec::new(),
    };
    texts.into_iter().filter_map(parsed_anchor).collect()
}

/// Most parsed group certificates kept in memory (the cache starts over when full).
const PARSED_ANCHORS: usize = 4096;

/// A group certificate's text, parsed once per process: groups and instances are cached as their stored text,
/// and every X.509 registration looks at every X.509 group's certificates. Keyed by the text's SHA-256, so a
/// changed certificate is a different entry and nothing is ever stale.
fn parsed_anchor(text: &str) -> Option<Certificate> {
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static PARSED: LazyLock<Mutex<HashMap<[u8; 32], Certificate>>> = LazyLock::new(Default::default);
    let key: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    if let Some(hit) = PARSED.lock().expect("anchor cache").get(&key) {
        return Some(hit.clone());
    }
    let parsed = Certificate::from_text(text).ok()?;
    let mut cache = PARSED.lock().expect("anchor cache");
    if cache.len() >= PARSED_ANCHORS {
        cache.clear();
    }
    cache.insert(key, parsed.clone());
    Some(parsed)
}

/// Where `anchor` sits above the leaf: the position of the same certificate in the chain (1 = the leaf's
/// issuer), or one past the top when it issued the chain's last certificate. `None` if it is not in this chain.
fn depth_in(chain: &Chain, anchor: &Certificate) -> Option<usize> {
    let certs = chain.certificates();
    let sha256 = &anchor.info().sha256_thumbprint;
    if let Some(at) = certs.iter().skip(1).position(|c| &c.info().sha256_thumbprint == sha256) {
        return Some(at + 1);
    }
    let top = certs.last().expect("a chain has a leaf");
    anchor.issued(top).then_some(certs.len())
}
