//! Device API use cases: register, operation status, registration status.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Dps, now};
use crate::allocation;
use crate::allocator::{AllocationFailure, AllocationRequest, AllocationResponse, DeviceRuntimeContext, codes};
use crate::error::{Error, Result};
use crate::ids::{printable, validate_id};
use crate::model::{
    AllocationPolicy, AnyEnrollment, AttestationType, EnrollmentGroup, EnrollmentSpec, Instance, LinkedHub,
    ProvisioningStatus, RegistrationRecord, RegistrationStatus, ReprovisionPolicy, Substatus, TpmRegistration,
};
use crate::sas::{SasToken, derive_device_key};
use crate::store::DeviceContext;
use dps_attestation::x509::Chain;

use super::x509::device_chain;

/// The one answer to a device whose token does not get it in: wrong key, unknown enrollment, unknown scope.
const DEVICE_DENIED: &str = "Unauthorized: the SAS token does not match any enrollment";

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
    /// ID scope from the path.
    pub id_scope: String,
    /// Registration ID from the path.
    pub registration_id: String,
    /// `registrationId` from the body, if sent (must equal the path's).
    pub body_registration_id: Option<String>,
    /// The device's `payload`, passed to custom allocation.
    pub payload: Option<Value>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The TLS client certificate chain the front door received (DER, leaf first; empty if none).
    pub client_certificates: Vec<Vec<u8>>,
    /// The `api-version` query parameter.
    pub api_version: String,
    /// The client's address, when the front door knows it (failed attestations are limited per address).
    pub client_address: Option<std::net::IpAddr>,
    /// The `tpm` part of the body: the device attests with its TPM (see `service/tpm.rs`).
    pub tpm: Option<TpmRegistration>,
    /// The body's `csr` (DER PKCS#10, decoded from base64): the device asks its hub for a certificate.
    pub csr: Option<Vec<u8>>,
}

/// A status lookup (operation status GET, or registration status POST) from a device.
#[derive(Debug, Clone, Default)]
pub struct StatusRequest {
    /// ID scope from the path.
    pub id_scope: String,
    /// Registration ID from the path.
    pub registration_id: String,
    /// `registrationId` from the body, if sent (must equal the path's).
    pub body_registration_id: Option<String>,
    /// Operation ID from the path (operation status only).
    pub operation_id: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The TLS client certificate chain the front door received (DER, leaf first; empty if none).
    pub client_certificates: Vec<Vec<u8>>,
    /// The client's address, when the front door knows it.
    pub client_address: Option<std::net::IpAddr>,
}

/// What a device proves itself with: a SAS token (symmetric key), or a certificate chain (X.509).
pub(crate) enum Credential {
    Sas(SasToken),
    X509(Chain),
}

/// The outcome of attestation: the admitting enrollment, the attestation kind, and for X.509 devices what the
/// registration records about their certificates.
pub(super) struct Attested {
    pub(super) enrollment: AnyEnrollment,
    pub(super) kind: AttestationType,
    pub(super) x509: Option<crate::model::X509RegistrationResult>,
}

impl Dps {
    /// Register a device: attest, allocate, record. Always returns the record written (its status may be
    /// `assigned`, `failed` or `disabled`); errors are for requests that could not be attested or processed.
    pub async fn register(&self, req: RegisterRequest) -> Result<RegistrationRecord> {
        self.limited(&req.id_scope, req.client_address, self.register_attested(&req)).await
    }

    async fn register_attested(&self, req: &RegisterRequest) -> Result<RegistrationRecord> {
        if let Some(tpm) = &req.tpm {
            return self.register_tpm(req, tpm).await;
        }
        let (credential, instance) = self
            .device_caller(
                &req.id_scope,
                &req.registration_id,
                req.body_registration_id.as_deref(),
                req.authorization.as_deref(),
                &req.client_certificates,
            )
            .await?;

        self.write_registration(&instance, req, super::provision::Admission::Credential(&credential)).await
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
        self.limited(&req.id_scope, req.client_address, self.status_attested(&req)).await
    }

    /// Run a device call under the failure budgets of its scope and address: refused at once (429) when one is
    /// spent, and a refused token (401) counted against both.
    async fn limited<T>(
        &self,
        scope: &str,
        address: Option<std::net::IpAddr>,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.failures.check(scope, address)?;
        let result = call.await;
        if let Err(Error::Unauthorized(_)) = &result {
            self.failures.failed(scope, address);
        }
        result
    }

    async fn status_attested(&self, req: &StatusRequest) -> Result<RegistrationRecord> {
        let (credential, instance) = self
            .device_caller(
                &req.id_scope,
                &req.registration_id,
                req.body_registration_id.as_deref(),
                req.authorization.as_deref(),
                &req.client_certificates,
            )
            .await?;
        let context = self.store.device_context(&instance.id_scope, &req.registration_id).await?;
        match &credential {
            Credential::Sas(token) => {
                self.attest_status(&instance, &context, token, &req.registration_id).await?;
            }
            Credential::X509(_) => {
                self.attest(&instance, &context, &credential, &req.registration_id).await?;
            }
        }
        context.record.ok_or_else(|| Error::not_found("The device has no registration"))
    }

    /// What both device calls check first: the IDs, the credential (before the instance is looked up: an
    /// unknown scope is refused as a bad signature is, so outsiders cannot tell which ID scopes exist), the
    /// instance. A SAS token in `Authorization` is the credential when sent; else the client certificate chain.
    async fn device_caller(
        &self,
        scope: &str,
        registration_id: &str,
        body_registration_id: Option<&str>,
        authorization: Option<&str>,
        client_certificates: &[Vec<u8>],
    ) -> Result<(Credential, Arc<Instance>)> {
        check_ids(registration_id, body_registration_id)?;
        let credential = match authorization {
            None if !client_certificates.is_empty() => {
                Credential::X509(device_chain(client_certificates, registration_id)?)
            }
            _ => Credential::Sas(device_token(authorization, scope, registration_id, self.settings.max_token_secs())?),
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
                enrollment: self.attest_sas(instance, context, token, registration_id).await?,
                kind: AttestationType::SymmetricKey,
                x509: None,
            }),
            Credential::X509(chain) => {
                let admission = self.attest_x509(instance, context, chain).await?;
                Ok(Attested {
                    enrollment: admission.enrollment,
                    kind: AttestationType::X509,
                    x509: Some(admission.result),
                })
            }
        }
    }

    /// Find the enrollment whose key signed the token. An individual enrollment takes precedence over
    /// groups; a disabled individual enrollment also disables a device that signs with a group key.
    pub(super) async fn attest_sas(
        &self,
        instance: &Instance,
        context: &DeviceContext,
        token: &SasToken,
        registration_id: &str,
    ) -> Result<AnyEnrollment> {
        let denied = || Error::unauthorized(DEVICE_DENIED);
        if let Some(enrollment) = &context.enrollment {
            if signed_by_spec_keys(token, &enrollment.spec, None) {
                return Ok(AnyEnrollment::Individual(enrollment.clone()));
            }
            if enrollment.spec.provisioning_status == ProvisioningStatus::Disabled
                && self.group_that_signed(instance, token, registration_id).await?.is_some()
            {
                return Ok(AnyEnrollment::Individual(enrollment.clone()));
            }
            return Err(denied());
        }
        // A device already admitted by a group is checked against that group first.
        if let Some(group_id) = context.record.as_ref().and_then(|r| r.enrollment_group_id.as_deref()) {
            let groups = self.groups(&instance.id_scope).await?;
            if let Some(g) = groups.iter().find(|g| g.enrollment_group_id.eq_ignore_ascii_case(group_id))
                && signed_by_spec_keys(token, &g.spec, Some(registration_id))
            {
                return Ok(AnyEnrollment::Group(g.clone()));
            }
        }
        self.group_that_signed(instance, token, registration_id).await?.map(AnyEnrollment::Group).ok_or_else(denied)
    }

    async fn group_that_signed(
        &self,
        instance: &Instance,
        token: &SasToken,
        registration_id: &str,
    ) -> Result<Option<EnrollmentGroup>> {
        let groups = self.groups(&instance.id_scope).await?;
        let tried = groups.iter().take(self.settings.max_groups_tried);
        Ok(tried.into_iter().find(|g| signed_by_spec_keys(token, &g.spec, Some(registration_id))).cloned())
    }

    /// Compute the record this registration leaves (never fails: failures are recorded).
    pub(super) async fn decide(&self, r: &Registration<'_>) -> RegistrationRecord {
        let (instance, previous, req) = (r.instance, r.previous, r.req);
        let now = now();
        let spec = r.attested.enrollment.spec();
        // The device ID keeps one spelling whatever case the device sends its registration ID in: the
        // enrollment's (its deviceId, else its registrationId), or for a group's device the first one recorded.
        let (device_id, group_id) = match &r.attested.enrollment {
            AnyEnrollment::Individual(e) => (e.device_id.clone().unwrap_or_else(|| e.registration_id.clone()), None),
            AnyEnrollment::Group(g) => (
                previous.and_then(|p| p.device_id.clone()).unwrap_or_else(|| req.registration_id.clone()),
                Some(g.enrollment_group_id.clone()),
            ),
        };
        let mut record = RegistrationRecord {
            registration_id: req.registration_id.clone(),
            status: RegistrationStatus::Assigning,
            substatus: None,
            assigned_hub: None,
            device_id: Some(device_id),
            error_code: None,
            error_message: None,
            payload: None,
            created_date_time_utc: previous.map_or(now, |p| p.created_date_time_utc),
            last_updated_date_time_utc: now,
            etag: None,
            enrollment_group_id: group_id,
            attestation_type: r.attested.kind,
            x509: r.attested.x509.clone(),
            operation_id: new_operation_id(),
            initial_hub: previous.and_then(|p| p.initial_hub.clone()),
            initial_twin: None,
            tpm: None,
            issued_certificate_chain: None,
            pending_hub_removals: Vec::new(),
        };
        if spec.provisioning_status == ProvisioningStatus::Disabled {
            record.status = RegistrationStatus::Disabled;
            record.assigned_hub = previous.and_then(|p| p.assigned_hub.clone());
            record.substatus = previous.and_then(|p| p.substatus);
            return record;
        }
        let current_hub = r.current_hub;
        let policy = spec.reprovision_policy.unwrap_or_default();
        // A hub that is no longer linked is never kept: the device is allocated afresh.
        let still_linked =
            current_hub.is_some_and(|hub| instance.linked_hubs.iter().any(|h| h.host_name.eq_ignore_ascii_case(hub)));
        let sticky = still_linked
            && (!policy.update_hub_assignment || (spec.reprovision_policy.is_none() && legacy_api(&req.api_version)));
        match self.allocate(r, sticky).await {
            Ok(response) => {
                let hub = response.iot_hub_host_name;
                // Azure's rule: the initial twin (the allocator's, else the enrollment's) applies on the first
                // assignment, and on a move to another hub when device data is not migrated.
                let moved = current_hub.is_some_and(|c| !c.eq_ignore_ascii_case(&hub));
                if current_hub.is_none() || (moved && !policy.migrate_device_data) {
                    record.initial_twin = response.initial_twin.or_else(|| spec.initial_twin.clone());
                }
                record.status = RegistrationStatus::Assigned;
                record.substatus = Some(substatus(previous, current_hub, &hub, policy));
                record.initial_hub.get_or_insert_with(|| hub.clone());
                record.assigned_hub = Some(hub);
                record.payload = response.payload;
            }
            Err(failure) => {
                record.status = RegistrationStatus::Failed;
                record.error_code = Some(failure.code);
                record.error_message = Some(failure.message);
                record.assigned_hub = current_hub.map(str::to_string);
            }
        }
        record
    }

    async fn allocate(&self, r: &Registration<'_>, sticky: bool) -> Result<AllocationResponse, AllocationFailure> {
        let (instance, spec) = (r.instance, r.attested.enrollment.spec());
        let policy = spec.allocation_policy.unwrap_or(instance.allocation_policy);
        let fail = |message: &str| AllocationFailure::new(codes::HUB_NOT_SPECIFIED, message);
        if policy == AllocationPolicy::Custom {
            let candidates = match (sticky, r.current_hub) {
                (true, Some(hub)) => vec![hub.to_string()],
                _ => candidate_hubs(instance, spec).into_iter().map(|h| h.host_name).collect(),
            };
            return self.custom(r, candidates).await;
        }
        if let (true, Some(hub)) = (sticky, r.current_hub) {
            return Ok(hub_only(hub));
        }
        let registration_id = &r.req.registration_id;
        let hub = match policy {
            AllocationPolicy::Static => static_hub(instance, spec),
            AllocationPolicy::Hashed => {
                allocation::hashed(registration_id, &candidate_hubs(instance, spec)).map(|h| h.host_name.clone())
            }
            AllocationPolicy::GeoLatency => allocation::geo_latency(
                registration_id,
                &candidate_hubs(instance, spec),
                self.settings.serving_region.as_deref(),
            )
            .map(|h| h.host_name.clone()),
            AllocationPolicy::Custom => unreachable!("handled above"),
        };
        hub.map(|h| hub_only(&h)).ok_or_else(|| match policy {
            AllocationPolicy::Static => fail("Static allocation requires the enrollment to name one linked IoT hub"),
            _ => fail("No linked IoT hub is available for allocation"),
        })
    }

    /// Ask the custom allocator; its answer must name one of the hubs offered.
    async fn custom(
        &self,
        r: &Registration<'_>,
        linked_hubs: Vec<String>,
    ) -> Result<AllocationResponse, AllocationFailure> {
        let allocator = self.allocator.as_ref().ok_or_else(|| {
            AllocationFailure::new(codes::CUSTOM_NOT_AVAILABLE, "Custom allocation is not available in this deployment")
        })?;
        let definition = r
            .attested
            .enrollment
            .spec()
            .custom_allocation_definition
            .as_ref()
            .or(r.instance.custom_allocation_definition.as_ref())
            .ok_or_else(|| {
                AllocationFailure::new(codes::NO_DEFINITION, "Custom allocation has no definition (webhook or policy)")
            })?;
        if linked_hubs.is_empty() {
            return Err(AllocationFailure::new(
                codes::HUB_NOT_SPECIFIED,
                "No linked IoT hub is available for allocation",
            ));
        }
        let context = DeviceRuntimeContext {
            registration_id: r.req.registration_id.clone(),
            symmetric_key: (r.attested.kind == AttestationType::SymmetricKey).then(|| json!({})),
            x509: r.attested.x509.clone(),
            tpm: r.req.tpm.as_ref().filter(|_| r.attested.kind == AttestationType::Tpm).map(|t| json!(t)),
            current_iot_hub_host_name: r.current_hub.map(str::to_string),
            current_device_id: r.current_hub.and_then(|_| r.previous.and_then(|p| p.device_id.clone())),
            payload: r.req.payload.clone(),
        };
        let request = AllocationRequest::new(&r.attested.enrollment, context, linked_hubs);
        let response = allocator.allocate(r.instance, definition, &request).await?;
        request.check_offered(response)
    }
}

/// The path's registration ID is valid, and the body's, if sent, is the same (any case).
pub(super) fn check_ids(path_id: &str, body_id: Option<&str>) -> Result<()> {
    validate_id("registration ID", path_id)?;
    match body_id {
        Some(body_id) if !body_id.eq_ignore_ascii_case(path_id) => {
            Err(Error::invalid(format!("Body registrationId '{}' does not match the path", printable(body_id))))
        }
        _ => Ok(()),
    }
}

fn hub_only(hub: &str) -> AllocationResponse {
    AllocationResponse { iot_hub_host_name: hub.to_string(), initial_twin: None, payload: None }
}

/// Hubs automatic allocation may pick: the enrollment's `iotHubs` (those still linked), else every linked hub
/// that applies the allocation policy.
pub(crate) fn candidate_hubs(instance: &Instance, spec: &EnrollmentSpec) -> Vec<LinkedHub> {
    match spec.iot_hubs.as_deref() {
        Some(named) if !named.is_empty() => instance
            .linked_hubs
            .iter()
            .filter(|h| named.iter().any(|n| n.eq_ignore_ascii_case(&h.host_name)))
            .cloned()
            .collect(),
        _ => instance.linked_hubs.iter().filter(|h| h.apply_allocation_policy).cloned().collect(),
    }
}

fn static_hub(instance: &Instance, spec: &EnrollmentSpec) -> Option<String> {
    let named = spec.iot_hub_host_name.clone().or_else(|| match spec.iot_hubs.as_deref() {
        Some([only]) => Some(only.clone()),
        _ => None,
    })?;
    instance.linked_hubs.iter().find(|h| h.host_name.eq_ignore_ascii_case(&named)).map(|h| h.host_name.clone())
}

fn substatus(
    previous: Option<&RegistrationRecord>,
    current_hub: Option<&str>,
    new_hub: &str,
    policy: ReprovisionPolicy,
) -> Substatus {
    let Some(current) = current_hub else {
        return Substatus::InitialAssignment;
    };
    let initial = previous.and_then(|p| p.initial_hub.as_deref());
    if current.eq_ignore_ascii_case(new_hub) {
        if policy.update_hub_assignment && !policy.migrate_device_data {
            return Substatus::DeviceDataReset;
        }
        return previous.and_then(|p| p.substatus).unwrap_or(Substatus::InitialAssignment);
    }
    if initial.is_some_and(|i| i.eq_ignore_ascii_case(new_hub)) {
        Substatus::ReprovisionedToInitialAssignment
    } else if policy.migrate_device_data {
        Substatus::DeviceDataMigrated
    } else {
        Substatus::DeviceDataReset
    }
}

/// api-versions up to 2018-04-01 keep the pre-2018 sticky behaviour for enrollments without a reprovision policy.
fn legacy_api(api_version: &str) -> bool {
    api_version.get(..10).is_some_and(|date| date <= "2018-04-01")
}

fn new_operation_id() -> String {
    let id = uuid::Uuid::new_v4();
    format!("5.{:016x}.{}", rand::random::<u64>(), id)
}

/// Parse a device token and check its expiry and resource (`{scope}/registrations/{id}`, case-insensitive).
pub(super) fn device_token(
    authorization: Option<&str>,
    scope: &str,
    registration_id: &str,
    max_lifetime_secs: i64,
) -> Result<SasToken> {
    let header = authorization.ok_or_else(|| Error::unauthorized("Missing Authorization header"))?;
    let token = SasToken::parse(header)?;
    token.check_expiry(super::now().unix_timestamp(), max_lifetime_secs)?;
    let expected = format!("{scope}/registrations/{registration_id}");
    if !token.resource.eq_ignore_ascii_case(&expected) {
        return Err(Error::unauthorized("SAS token resource does not match this registration"));
    }
    Ok(token)
}

/// Whether `token` is signed with the enrollment's symmetric keys (group keys derived for `derive_for`).
fn signed_by_spec_keys(token: &SasToken, spec: &EnrollmentSpec, derive_for: Option<&str>) -> bool {
    let Some(keys) = spec.attestation.symmetric_key.as_ref() else {
        return false;
    };
    if spec.attestation.kind != AttestationType::SymmetricKey {
        return false;
    }
    let candidates = [keys.primary_key.as_deref(), keys.secondary_key.as_deref()];
    candidates.into_iter().flatten().any(|key| match derive_for {
        None => token.signed_with_any([key]),
        Some(id) => derive_device_key(key, id).is_ok_and(|derived| token.signed_with_any([derived.as_str()])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_versions() {
        assert!(legacy_api("2017-11-15"));
        assert!(legacy_api("2018-04-01"));
        assert!(!legacy_api("2019-03-31"));
        assert!(!legacy_api("x"));
    }

    #[test]
    fn substatus_rules() {
        let migrate = ReprovisionPolicy::default();
        let reset = ReprovisionPolicy { update_hub_assignment: true, migrate_device_data: false };
        assert_eq!(substatus(None, None, "a", migrate), Substatus::InitialAssignment);
        assert_eq!(substatus(None, Some("a"), "b", migrate), Substatus::DeviceDataMigrated);
        assert_eq!(substatus(None, Some("a"), "b", reset), Substatus::DeviceDataReset);
        assert_eq!(substatus(None, Some("a"), "a", reset), Substatus::DeviceDataReset);
    }
}
