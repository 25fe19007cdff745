//! Things and their certificates in the IoT registry (`iot` control plane).

use std::time::Duration;

use aws_sdk_iot::Client;
use aws_sdk_iot::types::{AttributePayload, CertificateStatus};
use dps_core::hubs::{HubFailure, HubFailureKind};
use sha2::{Digest, Sha256};

use super::errors::{code, failure, is_not_found};
use super::settings::AwsSettings;

/// Attempts at deleting a certificate whose thing detachment has not propagated yet (DetachThingPrincipal is
/// asynchronous in IoT Core).
const DELETE_ATTEMPTS: u32 = 3;
/// Wait between those attempts.
const DELETE_RETRY_WAIT: Duration = Duration::from_millis(500);

/// Create the thing with the hub's thing type, or make an existing one carry it; add it to the hub's group.
pub(crate) async fn upsert_thing(iot: &Client, thing: &str, settings: &AwsSettings) -> Result<(), HubFailure> {
    let created = iot.create_thing().thing_name(thing).set_thing_type_name(settings.thing_type.clone()).send().await;
    match created {
        Ok(_) => {}
        // The same name with another configuration (attributes, type): the thing exists; bring its type in line.
        Err(err) if code(&err) == Some("ResourceAlreadyExistsException") => {
            if let Some(thing_type) = &settings.thing_type {
                iot.update_thing()
                    .thing_name(thing)
                    .thing_type_name(thing_type)
                    .send()
                    .await
                    .map_err(|e| failure("UpdateThing", thing, e))?;
            }
        }
        Err(err) => return Err(failure("CreateThing", thing, err)),
    }
    if let Some(group) = &settings.thing_group {
        iot.add_thing_to_thing_group()
            .thing_name(thing)
            .thing_group_name(group)
            .send()
            .await
            .map_err(|e| failure("AddThingToThingGroup", thing, e))?;
    }
    Ok(())
}

/// Replace the thing's attributes (an empty map removes them all).
pub(crate) async fn set_attributes(
    iot: &Client,
    thing: &str,
    attributes: std::collections::HashMap<String, String>,
) -> Result<(), HubFailure> {
    let payload = AttributePayload::builder().set_attributes(Some(attributes)).merge(false).build();
    iot.update_thing()
        .thing_name(thing)
        .attribute_payload(payload)
        .send()
        .await
        .map_err(|e| failure("UpdateThing", thing, e))?;
    Ok(())
}

/// The thing's attributes, `None` when there is no such thing.
pub(crate) async fn attributes(
    iot: &Client,
    thing: &str,
) -> Result<Option<std::collections::HashMap<String, String>>, HubFailure> {
    match iot.describe_thing().thing_name(thing).send().await {
        Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
        Err(err) if is_not_found(&err) => Ok(None),
        Err(err) => Err(failure("DescribeThing", thing, err)),
    }
}

/// AWS's ID of a certificate: the SHA-256 of its DER, in lower-case hex.
pub fn certificate_id(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// Register the device's own certificate (no CA), active. One registered before is reused, and made active again
/// if it is inactive (e.g. left so by an earlier removal): the enrollment, not IoT Core, decides whether the
/// device may provision. A revoked certificate is refused. Returns its ARN.
pub(crate) async fn register_certificate(iot: &Client, thing: &str, der: &[u8]) -> Result<String, HubFailure> {
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der));
    let registered =
        iot.register_certificate_without_ca().certificate_pem(pem).status(CertificateStatus::Active).send().await;
    match registered {
        Ok(out) => {
            return out.certificate_arn.ok_or_else(|| missing("RegisterCertificateWithoutCA", thing, "certificateArn"));
        }
        Err(err) if code(&err) == Some("ResourceAlreadyExistsException") => {}
        Err(err) => return Err(failure("RegisterCertificateWithoutCA", thing, err)),
    }
    let id = certificate_id(der);
    let described = iot
        .describe_certificate()
        .certificate_id(&id)
        .send()
        .await
        .map_err(|e| failure("DescribeCertificate", thing, e))?
        .certificate_description
        .ok_or_else(|| missing("DescribeCertificate", thing, "certificateDescription"))?;
    let arn = described.certificate_arn.ok_or_else(|| missing("DescribeCertificate", thing, "certificateArn"))?;
    match described.status {
        Some(CertificateStatus::Active) => {}
        Some(CertificateStatus::Inactive) => {
            iot.update_certificate()
                .certificate_id(&id)
                .new_status(CertificateStatus::Active)
                .send()
                .await
                .map_err(|e| failure("UpdateCertificate", thing, e))?;
        }
        status => {
            let status = status.map_or_else(|| "unknown".to_string(), |s| s.as_str().to_string());
            return Err(HubFailure::new(
                HubFailureKind::Refused,
                format!("The certificate of thing '{thing}' is registered in AWS IoT Core with status {status}"),
            ));
        }
    }
    Ok(arn)
}

/// Issue a certificate from a CSR (DER), active. Returns its ARN and DER.
pub(crate) async fn issue_certificate(
    iot: &Client,
    thing: &str,
    csr_der: &[u8],
) -> Result<(String, Vec<u8>), HubFailure> {
    let csr_pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", csr_der));
    let issued = iot
        .create_certificate_from_csr()
        .certificate_signing_request(csr_pem)
        .set_as_active(true)
        .send()
        .await
        .map_err(|err| {
            let refused_csr = code(&err) == Some("InvalidRequestException");
            let mut f = failure("CreateCertificateFromCsr", thing, err);
            if refused_csr {
                f.kind = HubFailureKind::CertificateRefused;
            }
            f
        })?;
    let arn = issued.certificate_arn.ok_or_else(|| missing("CreateCertificateFromCsr", thing, "certificateArn"))?;
    let pem_text =
        issued.certificate_pem.ok_or_else(|| missing("CreateCertificateFromCsr", thing, "certificatePem"))?;
    let der = pem::parse(pem_text)
        .ok()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.contents().to_vec())
        .ok_or_else(|| missing("CreateCertificateFromCsr", thing, "a PEM certificate"))?;
    Ok((arn, der))
}

/// Attach a certificate to the thing, and to the hub's IoT policy if it has one.
pub(crate) async fn attach(
    iot: &Client,
    thing: &str,
    certificate_arn: &str,
    settings: &AwsSettings,
) -> Result<(), HubFailure> {
    iot.attach_thing_principal()
        .thing_name(thing)
        .principal(certificate_arn)
        .send()
        .await
        .map_err(|e| failure("AttachThingPrincipal", thing, e))?;
    if let Some(policy) = &settings.policy_name {
        iot.attach_policy()
            .policy_name(policy)
            .target(certificate_arn)
            .send()
            .await
            .map_err(|e| failure("AttachPolicy", thing, e))?;
    }
    Ok(())
}

/// Detach every principal from the thing and delete the certificates no other thing uses (detached from the
/// hub's policy first); then delete the thing. A thing already gone is not an error.
pub(crate) async fn remove_thing(iot: &Client, thing: &str, settings: &AwsSettings) -> Result<(), HubFailure> {
    let mut principals = Vec::new();
    let mut pages = iot.list_thing_principals().thing_name(thing).into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => principals.extend(page.principals.unwrap_or_default()),
            Err(err) if is_not_found(&err) => return Ok(()),
            Err(err) => return Err(failure("ListThingPrincipals", thing, err)),
        }
    }
    for principal in &principals {
        match iot.detach_thing_principal().thing_name(thing).principal(principal).send().await {
            Ok(_) => {}
            Err(err) if is_not_found(&err) => {}
            Err(err) => return Err(failure("DetachThingPrincipal", thing, err)),
        }
        if let Some(id) = principal.split_once(":cert/").map(|(_, id)| id) {
            delete_certificate_unless_shared(iot, thing, principal, id, settings).await?;
        }
    }
    match iot.delete_thing().thing_name(thing).send().await {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(failure("DeleteThing", thing, err)),
    }
}

/// Deactivate and delete a certificate detached from `thing`, unless another thing still uses it (a device
/// whose certificate is shared, or one that moved to another hub of the same registry).
async fn delete_certificate_unless_shared(
    iot: &Client,
    thing: &str,
    arn: &str,
    id: &str,
    settings: &AwsSettings,
) -> Result<(), HubFailure> {
    let things = iot
        .list_principal_things()
        .principal(arn)
        .send()
        .await
        .map_err(|e| failure("ListPrincipalThings", thing, e))?
        .things
        .unwrap_or_default();
    // The detachment may not show yet: only other things count.
    if things.iter().any(|t| t != thing) {
        tracing::info!(thing, certificate = id, "certificate kept: another thing uses it");
        return Ok(());
    }
    // The policy this connector attached; others are dropped by `forceDelete`.
    if let Some(policy) = &settings.policy_name {
        match iot.detach_policy().policy_name(policy).target(arn).send().await {
            Ok(_) => {}
            Err(err) if is_not_found(&err) => {}
            Err(err) => return Err(failure("DetachPolicy", thing, err)),
        }
    }
    deactivate_and_delete(iot, thing, id).await
}

/// Deactivate, then delete (`forceDelete`: policies still attached do not block it). A certificate already gone is not an error.
pub(crate) async fn deactivate_and_delete(iot: &Client, thing: &str, id: &str) -> Result<(), HubFailure> {
    match iot.update_certificate().certificate_id(id).new_status(CertificateStatus::Inactive).send().await {
        Ok(_) => {}
        Err(err) if is_not_found(&err) => return Ok(()),
        Err(err) => return Err(failure("UpdateCertificate", thing, err)),
    }
    for attempt in 1..=DELETE_ATTEMPTS {
        match iot.delete_certificate().certificate_id(id).force_delete(true).send().await {
            Ok(_) => return Ok(()),
            Err(err) if is_not_found(&err) => return Ok(()),
            Err(err) if code(&err) == Some("DeleteConflictException") && attempt < DELETE_ATTEMPTS => {
                tokio::time::sleep(DELETE_RETRY_WAIT).await;
            }
            Err(err) if code(&err) == Some("DeleteConflictException") => {
                // Inactive, it authenticates nothing; a later removal or an operator deletes it.
                tracing::warn!(thing, certificate = id, "certificate left inactive: its detachment has not propagated");
                return Ok(());
            }
            Err(err) => return Err(failure("DeleteCertificate", thing, err)),
        }
    }
    Ok(())
}

fn missing(op: &str, thing: &str, what: &str) -> HubFailure {
    HubFailure::new(HubFailureKind::Refused, format!("AWS IoT Core {op} for thing '{thing}' answered without {what}"))
}
