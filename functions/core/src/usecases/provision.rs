//! Writing a registration: decide, make the hubs match, write the record durably; retried when a concurrent
//! registration of the same device wins the write. Every attestation kind (SAS, X.509, TPM) ends here.

use super::device::{Attested, Credential, RegisterRequest, Registration, WRITE_ATTEMPTS};
use super::hubs::{owe, settle_owed, settling_lease};
use super::tpm::{DeviceTpm, enrolled};
use super::{Dps, today};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::model::{
    AnyEnrollment, AttestationType, HubDeviceRef, Instance, OperationCount, OperationKind, RegistrationRecord,
    TpmRegistrationResult,
};
use crate::store::Precondition;

/// How the device of a registration is admitted, checked again against each attempt's device context.
pub(super) enum Admission<'a> {
    /// A SAS token or a certificate chain.
    Credential(&'a Credential),
    /// A TPM device that signed with the key its challenge issued (the record carries the TPM result; the key
    /// is the device's symmetric key in hubs whose devices authenticate with one).
    Tpm(&'a DeviceTpm, &'a TpmRegistrationResult, &'a str),
}

impl Dps {
    /// Decide and write one registration of `req`'s device, admitted as `admission` says against the device
    /// context each attempt reads (its enrollment and record). The hubs are written before the record (the device is told `assigned` only
    /// once it exists in its hub with its initial twin); removals owed to other hubs are made after it.
    pub(super) async fn write_registration(
        &self,
        instance: &Instance,
        req: &RegisterRequest,
        admission: Admission<'_>,
    ) -> Result<RegistrationRecord> {
        // Hub devices earlier attempts created or changed: if the attempt that wins the write assigns the device
        // elsewhere, they are owed a removal.
        let mut touched: Vec<HubDeviceRef> = Vec::new();
        for _ in 0..WRITE_ATTEMPTS {
            let context = self.settled_context(&instance.id_scope, &req.caller.registration_id).await?;
            let attested = match admission {
                Admission::Credential(credential) => {
                    self.attest(instance, &context, credential, &req.caller.registration_id).await?
                }
                Admission::Tpm(device, _, key) => Attested {
                    enrollment: AnyEnrollment::Individual(enrolled(&context, device)?.clone()),
                    kind: AttestationType::Tpm,
                    x509: None,
                    device_key: Some(key.to_string()),
                },
            };
            let previous = context.record;
            let registration = Registration {
                instance,
                attested: &attested,
                previous: previous.as_ref(),
                current_hub: previous.as_ref().and_then(|p| p.assigned_hub.as_deref()),
                req,
            };
            let mut record = self.decide(&registration).await;
            if let Admission::Tpm(_, result, _) = admission {
                record.tpm = Some(result.clone());
            }
            if let Some(hub_device) = self.sync_hubs(&registration, &mut record).await {
                touched.push(hub_device);
            }
            for earlier in &touched {
                owe(&mut record, earlier.clone());
            }
            settle_owed(&mut record);
            record.settling_until = settling_lease(instance, &record);
            let precondition = match &previous {
                Some(p) => Precondition::Matches(p.etag.clone().unwrap_or_default()),
                None => Precondition::NotExists,
            };
            let kind = if previous.is_some() { OperationKind::ReRegistration } else { OperationKind::Registration };
            let meter = OperationCount { date: today(), kind, count: 1 };
            match self.store.put_registration(&instance.id_scope, record, precondition.counting(Some(meter))).await {
                Ok(written) => {
                    let policy = attested.enrollment.spec().allocation_policy.unwrap_or(instance.allocation_policy);
                    self.metrics.registration_written(&crate::metrics::Written::of(&written, policy));
                    tracing::info!(
                        scope = %instance.id_scope,
                        registration_id = %written.registration_id,
                        status = ?written.status,
                        hub = written.assigned_hub.as_deref().unwrap_or(""),
                        attestation = ?written.attestation_type,
                        error_code = written.error_code.unwrap_or(0),
                        "registration"
                    );
                    let written = self.settle_hub_removals(instance, written).await;
                    let previous_hub = previous.as_ref().and_then(|p| p.assigned_hub.as_deref());
                    self.emit(|| Event::registration_written(&instance.id_scope, &written, previous_hub)).await;
                    return Ok(written);
                }
                // A concurrent registration of the same device won: read its record and decide again (the hub
                // calls are idempotent, so making them again is harmless).
                Err(Error::Conflict(_) | Error::PreconditionFailed(_) | Error::NotFound(_)) => continue,
                Err(other) => {
                    if !touched.is_empty() {
                        tracing::warn!(registration_id = %req.caller.registration_id, hubs = ?touched, "record not written after hub calls: {other}");
                    }
                    return Err(other);
                }
            }
        }
        if !touched.is_empty() {
            tracing::warn!(registration_id = %req.caller.registration_id, hubs = ?touched, "record not written after hub calls: contention");
        }
        // Devices treat 4xx below 429 as fatal: contention is transient, so say when to come back.
        Err(Error::Throttled {
            message: "Too many concurrent registrations of this device; retry later".into(),
            retry_after_secs: 1,
        })
    }
}
