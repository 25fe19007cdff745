//! Device API use cases: register, operation status, registration status.

use std::sync::Arc;

use serde_json::Value;

use super::Dps;
use super::sas_attestation::device_token;
use crate::error::{Error, Result};
use crate::ids::{printable, validate_id};
use crate::model::{AnyEnrollment, AttestationType, Instance, RegistrationRecord, TpmRegistration};
use crate::sas::SasToken;
use crate::store::DeviceContext;
use dps_attestation::x509::Chain;

use super::x509::device_chain;

/// The one answer to a device whose token does not get it in: wrong key, unknown enrollment, unknown scope.
pub(super) const DEVICE_DENIED: &str = "Unauthorized: the SAS token does not match any enrollment";

/// Attempts at writing a record before a registration gives up to concurrent writers.
pub(super) const WRITE_ATTEMPTS: usize = 4;

/// One registration being decided: everything `decide`, `allocate` and `custom` need.
pub(super) struct Registration<'a> {
    pub(super) instance: &'a Instance,
    /// The enrollment that admitted the device, how the device attested, and what its certificates say.
    pub(super) attested: &'a Attested,
    /// The device's record before this registration.
    pub(super) previous: Option<&'a RegistrationRecord>,
    /// The hub the device was last assigned to, even if a disabled or failed registration came since.
    pub(super) current_hub: Option<&'a str>,
    pub(super) req: &'a RegisterRequest,
}

/// A register call from a device.
#[derive(Debug, Clone, Default)]
pub struct RegisterRequest {
    /// The device: its IDs and what it presents.
    pub caller: DeviceCaller,
    /// The device's `payload`, passed to custom allocation.
    pub payload: Option<Value>,
    /// The `api-version` query parameter.
    pub api_version: String,
    /// The `tpm` part of the body: the device attests with its TPM (see `usecases/tpm.rs`).
    pub tpm: Option<TpmRegistration>,
    /// The body's `csr` (DER PKCS#10, decoded from base64): the device asks its hub for a certificate.
    pub csr: Option<Vec<u8>>,
}

/// A status lookup (operation status GET, or registration status POST) from a device.
#[derive(Debug, Clone, Default)]
pub struct StatusRequest {
    /// The device: its IDs and what it presents.
    pub caller: DeviceCaller,
    /// Operation ID from the path (operation status only).
    pub operation_id: Option<String>,
}

/// The device that makes a call: the IDs its path (and body) give, and what it presents besides.
#[derive(Debug, Clone, Default)]
pub struct DeviceCaller {
    /// ID scope from the path.
    pub id_scope: String,
    /// Registration ID from the path.
    pub registration_id: String,
    /// `registrationId` from the body, if sent (must equal the path's).
    pub body_registration_id: Option<String>,
    /// The `Authorization` header (a SAS token).
    pub authorization: Option<String>,
    /// The TLS client certificate chain the front door received (DER, leaf first; empty if none).
    pub client_certificates: Vec<Vec<u8>>,
    /// The client's address, when the front door knows it (failed attestations are limited per address).
    pub client_address: Option<std::net::IpAddr>,
}

impl DeviceCaller {
    /// Device `registration_id` of `id_scope` presenting the SAS token `token`, its body repeating the ID (as
    /// the SDKs send it).
    pub fn sas(id_scope: impl Into<String>, registration_id: impl Into<String>, token: impl Into<String>) -> Self {
        let registration_id = registration_id.into();
        Self {
            id_scope: id_scope.into(),
            body_registration_id: Some(registration_id.clone()),
            registration_id,
            authorization: Some(token.into()),
            ..Self::default()
        }
    }

    /// The path's registration ID is valid, and the body's, if sent, is the same (any case).
    pub(super) fn check_ids(&self) -> Result<()> {
        validate_id("registration ID", &self.registration_id)?;
        match &self.body_registration_id {
            Some(body_id) if !body_id.eq_ignore_ascii_case(&self.registration_id) => {
                Err(Error::invalid(format!("Body registrationId '{}' does not match the path", printable(body_id))))
            }
            _ => Ok(()),
        }
    }
}

/// What a device proves itself with: a SAS token (symmetric key), or a certificate chain (X.509).
pub(crate) enum Credential {
    Sas(SasToken),
    X509(Chain),
}

/// The outcome of attestation: the admitting enrollment, the attestation kind, and for X.509 devices what the
/// registration records about their certificates.
pub(super) struct Attested {
    /// TPM devices: the symmetric key their challenge issued (what a hub authenticates them with).
    pub(super) device_key: Option<String>,
    pub(super) enrollment: AnyEnrollment,
    pub(super) kind: AttestationType,
    pub(super) x509: Option<crate::model::X509RegistrationResult>,
}

impl Dps {
    /// Register a device: attest, allocate, record. Always returns the record written (its status may be
    /// `assigned`, `failed` or `disabled`); errors are for requests that could not be attested or processed.
    pub async fn register(&self, req: RegisterRequest) -> Result<RegistrationRecord> {
        let started = std::time::Instant::now();
        let result = match self.admitted(&req.caller) {
            Ok(()) => self.register_attested(&req).await,
            Err(refused) => Err(refused),
        };
        let result = self.counted(&req.caller, result);
        let outcome = crate::metrics::Outcome::of(&result, |record| record.status);
        self.metrics.registration_ended(outcome, started.elapsed());
        result
    }

    async fn register_attested(&self, req: &RegisterRequest) -> Result<RegistrationRecord> {
        if let Some(csr) = &req.csr {
            // Checked before any hub is asked: subject CN = registration ID, a strong enough key, a valid
            // self-signature (dps-attestation's CSR check; each refusal says which).
            dps_attestation::csr::check_csr(csr, &req.caller.registration_id)
                .map_err(|e| Error::invalid(e.to_string()))?;
        }
        // Both paths are boxed: their futures are large (the device context, the enrollment, the records, the
        // hub calls), and every level above them, up to the HTTP handler's own box, would copy them again.
        if let Some(tpm) = &req.tpm {
            return Box::pin(self.register_tpm(req, tpm)).await;
        }
        let (credential, instance) = self.device_caller(&req.caller).await?;
        let admission = super::provision::Admission::Credential(&credential);
        Box::pin(self.write_registration(&instance, req, admission)).await
    }

    /// Answer an operation status GET: the record of the registration the operation wrote.
    pub async fn operation_status(&self, req: StatusRequest) -> Result<RegistrationRecord> {
        let record = self.registration_status(req.clone()).await?;
        match &req.operation_id {
            Some(op) if *op == record.operation_id => Ok(record),
            _ => Err(Error::not_found("Unknown operation ID")),
        }
    }

    /// Answer a device's registration status lookup (POST): its current record.
    pub async fn registration_status(&self, req: StatusRequest) -> Result<RegistrationRecord> {
        self.admitted(&req.caller)?;
        let result = self.status_attested(&req).await;
        self.counted(&req.caller, result)
    }

    /// A device call runs under the failure budgets of its scope and address: refused at once (429) when one is
    /// spent. (Checked and counted around the call, not by a function that takes the call's future: that
    /// future would be stored twice in the caller's, once as the argument and once awaited.)
    fn admitted(&self, caller: &DeviceCaller) -> Result<()> {
        self.failures.check(&caller.id_scope, caller.client_address)
    }

    /// A refused token (401) counts against both budgets of the call's [`Self::admitted`].
    fn counted<T>(&self, caller: &DeviceCaller, result: Result<T>) -> Result<T> {
        if let Err(Error::Unauthorized(_)) = &result {
            self.failures.failed(&caller.id_scope, caller.client_address);
        }
        result
    }

    async fn status_attested(&self, req: &StatusRequest) -> Result<RegistrationRecord> {
        let (credential, instance) = self.device_caller(&req.caller).await?;
        let registration_id = &req.caller.registration_id;
        let context = self.store.device_context(&instance.id_scope, registration_id).await?;
        match (&credential, &context.enrollment) {
            // A TPM device signs with the key of its challenge (used or not) until it expires.
            (Credential::Sas(token), Some(e)) if e.spec.attestation.kind == AttestationType::Tpm => {
                self.signed_challenge(&instance.id_scope, registration_id, token).await?;
            }
            // Every other device attests as its registration does.
            _ => {
                self.attest(&instance, &context, &credential, registration_id).await?;
            }
        }
        context.record.ok_or_else(|| Error::not_found("The device has no registration"))
    }

    /// What both device calls check first: the IDs, the credential (before the instance is looked up: an
    /// unknown scope is refused as a bad signature is, so outsiders cannot tell which ID scopes exist), the
    /// instance. A SAS token in `Authorization` is the credential when sent; else the client certificate chain.
    async fn device_caller(&self, caller: &DeviceCaller) -> Result<(Credential, Arc<Instance>)> {
        caller.check_ids()?;
        let (scope, registration_id) = (caller.id_scope.as_str(), caller.registration_id.as_str());
        let credential = match caller.authorization.as_deref() {
            None if !caller.client_certificates.is_empty() => {
                Credential::X509(device_chain(&caller.client_certificates, registration_id)?)
            }
            authorization => {
                Credential::Sas(device_token(authorization, scope, registration_id, self.settings.max_token_secs())?)
            }
        };
        Ok((credential, self.device_instance(scope).await?))
    }

    pub(super) async fn device_instance(&self, scope: &str) -> Result<Arc<Instance>> {
        if !crate::ids::is_id_scope(scope) {
            return Err(Error::unauthorized(DEVICE_DENIED));
        }
        self.instance_by_scope(scope).await?.ok_or_else(|| Error::unauthorized(DEVICE_DENIED))
    }

    /// Find the enrollment the credential belongs to.
    pub(super) async fn attest(
        &self,
        instance: &Instance,
        context: &DeviceContext,
        credential: &Credential,
        registration_id: &str,
    ) -> Result<Attested> {
        match credential {
            Credential::Sas(token) => Ok(Attested {
                device_key: None,
                enrollment: self.attest_sas(instance, context, token, registration_id).await?,
                kind: AttestationType::SymmetricKey,
                x509: None,
            }),
            Credential::X509(chain) => {
                let admission = self.attest_x509(instance, context, chain).await?;
                Ok(Attested {
                    device_key: None,
                    enrollment: admission.enrollment,
                    kind: AttestationType::X509,
                    x509: Some(admission.result),
                })
            }
        }
    }
}
