//! CA certificates of an instance (our extension, ServiceConfig right): upload, proof of possession, list, get,
//! delete. Groups reference them by name (`x509.caReferences`); only verified ones admit devices.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dps_attestation::x509::{Certificate, Chain};

use super::{Caller, Dps, now};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::{printable, validate_name};
use crate::model::{AttestationType, CaCertificate, Right};

/// Most CA certificates one instance holds (Azure's quota).
pub const MAX_CA_CERTIFICATES: usize = 25;

impl Dps {
    /// The instance's CA certificates.
    pub async fn list_ca_certificates(&self, caller: &Caller) -> Result<Vec<CaCertificate>> {
        caller.require(Right::ServiceConfig)?;
        Ok(self.fresh_instance(caller).await?.ca_certificates.clone())
    }

    /// One CA certificate by name.
    pub async fn get_ca_certificate(&self, caller: &Caller, name: &str) -> Result<CaCertificate> {
        caller.require(Right::ServiceConfig)?;
        let instance = self.fresh_instance(caller).await?;
        find(&instance.ca_certificates, name).cloned().ok_or_else(|| not_found(name))
    }

    /// Upload (or replace) a CA certificate. It starts unverified, with a fresh verification code; replacing
    /// one with a different certificate makes it unverified again.
    pub async fn put_ca_certificate(&self, caller: &Caller, name: &str, certificate: &str) -> Result<CaCertificate> {
        caller.require(Right::ServiceConfig)?;
        validate_name("certificate name", name)?;
        let cert = Certificate::from_text(certificate).map_err(|e| Error::invalid(format!("certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(Error::invalid("certificate: not a CA certificate (basic constraints must say CA)"));
        }
        let info = super::x509::info_of(&cert);
        let pem = to_pem(cert.der());
        let written = self
            .change_instance(caller, None, |i| {
                let now = now();
                match i.ca_certificates.iter_mut().find(|c| c.name.eq_ignore_ascii_case(name)) {
                    Some(same) if same.info.sha256_thumbprint == info.sha256_thumbprint => {}
                    Some(other) => {
                        *other = CaCertificate {
                            certificate: pem,
                            info,
                            is_verified: false,
                            verification_code: Some(verification_code()),
                            last_updated_date_time_utc: now,
                            ..other.clone()
                        }
                    }
                    None => {
                        if i.ca_certificates.len() >= MAX_CA_CERTIFICATES {
                            return Err(Error::invalid(format!(
                                "At most {MAX_CA_CERTIFICATES} CA certificates per provisioning service"
                            )));
                        }
                        i.ca_certificates.push(CaCertificate {
                            name: name.to_string(),
                            certificate: pem,
                            info,
                            is_verified: false,
                            verification_code: Some(verification_code()),
                            created_date_time_utc: now,
                            last_updated_date_time_utc: now,
                        });
                    }
                }
                Ok(())
            })
            .await?;
        find(&written.ca_certificates, name).cloned().ok_or_else(|| not_found(name))
    }

    /// Proof of possession: `proof` must be a certificate signed by the CA whose subject CN is the verification
    /// code. The CA is then verified and its groups admit devices.
    pub async fn verify_ca_certificate(&self, caller: &Caller, name: &str, proof: &str) -> Result<CaCertificate> {
        caller.require(Right::ServiceConfig)?;
        let proof = Certificate::from_text(proof).map_err(|e| Error::invalid(format!("certificate: {e}")))?;
        let mut verified_now = false;
        let written = self
            .change_instance(caller, None, |i| {
                let ca = i.ca_certificates.iter_mut().find(|c| c.name.eq_ignore_ascii_case(name));
                let ca = ca.ok_or_else(|| not_found(name))?;
                if ca.is_verified {
                    return Ok(());
                }
                let code = ca.verification_code.as_deref().unwrap_or_default();
                if !proof.common_name().is_some_and(|cn| cn.eq_ignore_ascii_case(code)) {
                    return Err(Error::invalid("The certificate's subject CN is not the verification code"));
                }
                let anchor = Certificate::from_text(&ca.certificate).map_err(|e| Error::Internal(e.to_string()))?;
                let chain = Chain::from_der(&[proof.der()]).map_err(|e| Error::invalid(format!("certificate: {e}")))?;
                chain
                    .verify_to(&anchor, now())
                    .map_err(|e| Error::invalid(format!("The certificate is not signed by this CA: {e}")))?;
                ca.is_verified = true;
                verified_now = true;
                ca.verification_code = None;
                ca.last_updated_date_time_utc = now();
                Ok(())
            })
            .await?;
        let ca = find(&written.ca_certificates, name).cloned().ok_or_else(|| not_found(name))?;
        if verified_now {
            self.emit(|| Event::ca_verified(caller.scope(), &ca)).await;
        }
        Ok(ca)
    }

    /// Delete a CA certificate. Refused (409, naming them) while enrollment groups reference it.
    pub async fn delete_ca_certificate(&self, caller: &Caller, name: &str) -> Result<()> {
        caller.require(Right::ServiceConfig)?;
        self.cache.forget_groups(caller.scope());
        let groups = self.groups(caller.scope()).await?;
        let users: Vec<&str> = groups
            .iter()
            .filter(|g| g.spec.attestation.kind == AttestationType::X509)
            .filter(|g| {
                let refs = g.spec.attestation.x509.as_ref().and_then(|x| x.ca_references.as_ref());
                refs.is_some_and(|r| r.iter().any(|n| n.eq_ignore_ascii_case(name)))
            })
            .map(|g| g.enrollment_group_id.as_str())
            .collect();
        if !users.is_empty() {
            let shown: Vec<&str> = users.iter().take(10).copied().collect();
            return Err(Error::Conflict(format!(
                "CA certificate '{}' is referenced by {} enrollment group(s) ({}{}); change or delete them first",
                printable(name),
                users.len(),
                shown.join(", "),
                if users.len() > shown.len() { ", ..." } else { "" }
            )));
        }
        let named = |c: &CaCertificate| c.name.eq_ignore_ascii_case(name);
        self.remove_entries(caller, |i| &mut i.ca_certificates, named, || not_found(name)).await
    }
}

fn find<'a>(all: &'a [CaCertificate], name: &str) -> Option<&'a CaCertificate> {
    all.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

fn not_found(name: &str) -> Error {
    Error::not_found(format!("CA certificate '{}' not found", printable(name)))
}

fn verification_code() -> String {
    format!("{:016X}{:016X}", rand::random::<u64>(), rand::random::<u64>())
}

fn to_pem(der: &[u8]) -> String {
    let body = B64.encode(der);
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}
