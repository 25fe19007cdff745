//! Domain entities. Their serde form is the Azure DPS wire form (camelCase), which is also how adapters store them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

mod enrollment;
mod hub;
mod tpm;
mod x509;

pub use enrollment::{AnyEnrollment, Enrollment, EnrollmentKind};
pub use hub::{HubConnection, HubDeviceRef, HubKind};
pub use tpm::{TpmChallenge, TpmRegistration, TpmRegistrationResult};
pub use x509::{
    CaCertificate, X509Attestation, X509CaReferences, X509CertificateInfo, X509CertificateWithInfo, X509Certificates,
    X509RegistrationResult,
};

/// A timestamp, serialised as RFC 3339 in UTC.
pub type Timestamp = OffsetDateTime;

/// Enabled or disabled enrollment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProvisioningStatus {
    /// Devices may register.
    #[default]
    Enabled,
    /// Devices are refused with `status: disabled`.
    Disabled,
}

/// How a hub is picked for a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllocationPolicy {
    /// Weighted, stable hash of the registration ID over the candidate hubs.
    #[default]
    Hashed,
    /// Nearest hub to the serving region; ties hashed.
    GeoLatency,
    /// The enrollment names its hub.
    Static,
    /// A WebAssembly policy or an HTTP webhook decides.
    Custom,
}

/// What happens when a device registers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReprovisionPolicy {
    /// Re-run allocation on re-registration (may move the device).
    #[serde(default = "yes")]
    pub update_hub_assignment: bool,
    /// Carry device data to the new hub (else reset to the enrollment's initial twin).
    #[serde(default = "yes")]
    pub migrate_device_data: bool,
}

fn yes() -> bool {
    true
}

impl Default for ReprovisionPolicy {
    fn default() -> Self {
        Self { update_hub_assignment: true, migrate_device_data: true }
    }
}

/// Device capabilities recorded on the enrollment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// The device is an IoT Edge device.
    #[serde(default)]
    pub iot_edge: bool,
}

/// Custom allocation target: an Azure webhook, or (our extension) a named WebAssembly policy of the instance.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationDefinition {
    /// HTTPS URL the allocation request is POSTed to.
    pub webhook_url: Option<String>,
    /// Version of the request contract the webhook expects.
    pub api_version: Option<String>,
    /// Name of an uploaded WebAssembly policy (extension; see docs/custom-allocation.md).
    pub policy_name: Option<String>,
}

/// Kind of attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttestationType {
    /// No attestation (not usable for registration).
    None,
    /// TPM endorsement key.
    Tpm,
    /// X.509 certificates.
    X509,
    /// Symmetric keys (SAS tokens).
    SymmetricKey,
}

/// Symmetric key pair (base64). Absent keys are generated on create and kept on update.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    /// Primary key, base64 of 16 to 64 bytes.
    pub primary_key: Option<String>,
    /// Secondary key, base64 of 16 to 64 bytes.
    pub secondary_key: Option<String>,
}

/// TPM attestation (individual enrollments only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmAttestation {
    /// Base64 endorsement key (TPM2B_PUBLIC).
    pub endorsement_key: String,
    /// Base64 storage root key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root_key: Option<String>,
}

/// How devices of an enrollment prove who they are.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationMechanism {
    /// Which of the parts below is in force.
    #[serde(rename = "type")]
    pub kind: AttestationType,
    /// TPM part.
    pub tpm: Option<TpmAttestation>,
    /// X.509 part.
    pub x509: Option<X509Attestation>,
    /// Symmetric key part.
    pub symmetric_key: Option<SymmetricKeyAttestation>,
}

impl AttestationMechanism {
    /// A copy fit to show without the attestationmechanism call: symmetric keys removed.
    pub fn without_secrets(&self) -> Self {
        let mut copy = self.clone();
        if copy.symmetric_key.is_some() {
            copy.symmetric_key = Some(SymmetricKeyAttestation::default());
        }
        copy
    }
}

/// What individual enrollments and enrollment groups share.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentSpec {
    /// Attestation mechanism.
    pub attestation: AttestationMechanism,
    /// Capabilities.
    pub capabilities: Option<Capabilities>,
    /// Hub for the static policy.
    pub iot_hub_host_name: Option<String>,
    /// Initial device twin (`tags`, `properties.desired`).
    pub initial_twin: Option<Value>,
    /// Version tag, set by the store on every write.
    pub etag: Option<String>,
    /// Enabled or disabled.
    #[serde(default)]
    pub provisioning_status: ProvisioningStatus,
    /// Re-registration behaviour; absent means the default (migrate).
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// Set by the service.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<Timestamp>,
    /// Set by the service.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<Timestamp>,
    /// Overrides the instance default policy.
    pub allocation_policy: Option<AllocationPolicy>,
    /// Candidate hubs (must be linked hubs); empty means all linked hubs.
    pub iot_hubs: Option<Vec<String>>,
    /// Webhook or WebAssembly policy for the custom policy.
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
}

/// One device's enrollment.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    /// The device's registration ID (case-insensitive key).
    pub registration_id: String,
    /// Desired device ID in the hub; defaults to the registration ID.
    pub device_id: Option<String>,
    /// Free-form information about the device.
    pub optional_device_information: Option<Value>,
    /// Settings shared with groups.
    #[serde(flatten)]
    pub spec: EnrollmentSpec,
}

/// A group of devices sharing an attestation root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    /// The group's ID (case-insensitive key).
    pub enrollment_group_id: String,
    /// Extension: the registration IDs this group covers, by prefix (case-insensitive). A device whose ID does not
    /// start with it is never admitted by this group, and registrations shortlist groups by it before any key
    /// is tried (docs/service-api-extensions.md, "Groups that declare their devices").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id_prefix: Option<String>,
    /// Settings shared with individual enrollments.
    #[serde(flatten)]
    pub spec: EnrollmentSpec,
}

impl EnrollmentGroup {
    /// Whether this group covers `registration_id` (always, when it declares no prefix).
    pub fn covers(&self, registration_id: &str) -> bool {
        self.registration_id_prefix.as_deref().is_none_or(|prefix| {
            registration_id.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        })
    }
}

/// State of a device registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationStatus {
    /// Not assigned.
    Unassigned,
    /// Being assigned.
    Assigning,
    /// Assigned to a hub.
    Assigned,
    /// Assignment failed (see error code and message).
    Failed,
    /// The enrollment is disabled.
    Disabled,
}

/// Why the current assignment is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Substatus {
    /// First assignment.
    InitialAssignment,
    /// Moved to another hub with its data.
    DeviceDataMigrated,
    /// Reset to the enrollment's initial configuration.
    DeviceDataReset,
    /// Back on the hub of its first assignment.
    ReprovisionedToInitialAssignment,
}

/// The record a registration leaves: what the device was told, readable and deletable through the service API.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRecord {
    /// The device's registration ID as it last presented it.
    pub registration_id: String,
    /// Outcome.
    pub status: RegistrationStatus,
    /// Reason for the assignment.
    pub substatus: Option<Substatus>,
    /// Assigned hub host name.
    pub assigned_hub: Option<String>,
    /// Device ID in the hub.
    pub device_id: Option<String>,
    /// Azure-style error code when failed.
    pub error_code: Option<u32>,
    /// Error message when failed.
    pub error_message: Option<String>,
    /// Payload returned by custom allocation, forwarded to the device.
    pub payload: Option<Value>,
    /// First registration time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time_utc: Timestamp,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub last_updated_date_time_utc: Timestamp,
    /// Version tag, set by the store on every write.
    pub etag: Option<String>,
    /// Group that admitted the device (absent for individual enrollments).
    pub enrollment_group_id: Option<String>,
    /// How the device attested.
    pub attestation_type: AttestationType,
    /// The certificates that admitted an X.509 device.
    pub x509: Option<X509RegistrationResult>,
    /// ID of the last register operation, answered by the operation status lookup.
    pub operation_id: String,
    /// Hub of the first assignment (to recognise a return to it).
    pub initial_hub: Option<String>,
    /// The initial twin this registration gives the device in its hub, by Azure's rules (first assignment, or a
    /// move without data migration; the custom allocator's twin, else the enrollment's). `None` when the device
    /// keeps its data. Recorded for the hub registry connector, which is not built yet: no hub receives it today.
    pub initial_twin: Option<Value>,
    /// What a TPM device was given (`registrationState.tpm`): the key blob only its TPM can open.
    pub tpm: Option<TpmRegistrationResult>,
    /// Certificate chain a hub issued from the device's CSR (base64 DER, leaf first): the device answer's
    /// `registrationState.issuedCertificateChain`.
    pub issued_certificate_chain: Option<Vec<String>>,
    /// Hubs that may still hold this device although the record does not assign it there (a removal after a
    /// move that failed, or a partial create rolled back after a failure); the device's next registration
    /// retries their removal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_hub_removals: Vec<HubDeviceRef>,
    /// Until when (unix milliseconds) the registration that wrote this record may still be removing the device
    /// from the hubs of `pending_hub_removals`: no other registration of the device writes a record before then
    /// (it waits, or answers 429), so that a late removal cannot take the device out of a hub a newer record
    /// assigns. Cleared when the removals are settled. Store-internal: not on the wire.
    pub settling_until: Option<i64>,
}

/// A right granted by a shared access policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Right {
    /// Manage instance configuration (linked hubs, policies, access policies).
    ServiceConfig,
    /// Read enrollments and groups.
    EnrollmentRead,
    /// Write enrollments and groups.
    EnrollmentWrite,
    /// Read registration records.
    RegistrationStatusRead,
    /// Delete registration records.
    RegistrationStatusWrite,
}

impl Right {
    /// Every right.
    pub const ALL: [Right; 5] = [
        Right::ServiceConfig,
        Right::EnrollmentRead,
        Right::EnrollmentWrite,
        Right::RegistrationStatusRead,
        Right::RegistrationStatusWrite,
    ];
}

/// A named key pair with rights, used to sign service API tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    /// Policy name (`skn` in tokens).
    pub key_name: String,
    /// Primary key, base64. Left out when empty, which only a listing's copy is (stored keys are validated); a
    /// stored policy without its keys fails to read rather than reading as the empty key, which would verify any
    /// token signed with it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub primary_key: String,
    /// Secondary key, base64 (left out when empty, as the primary key).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secondary_key: String,
    /// Granted rights.
    pub rights: Vec<Right>,
}

/// A hub devices may be assigned to.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedHub {
    /// Hub host name, e.g. `myhub.azure-devices.net`.
    pub host_name: String,
    /// Relative weight for hashed allocation, 1..=1000.
    #[serde(default = "one")]
    pub allocation_weight: u32,
    /// False removes the hub from automatic allocation (an enrollment may still name it).
    #[serde(default = "yes")]
    pub apply_allocation_policy: bool,
    /// Region of the hub, for the lowest-latency policy (e.g. `eu-west-1`, `westeurope`).
    pub location: Option<String>,
    /// How the hub's device registry is written; absent: "record only" (the registration is recorded, the hub
    /// is not called).
    pub connector: Option<HubConnection>,
}

impl LinkedHub {
    /// The hub as answers and operator commands show it: its connector's credentials left out
    /// (`credentialsSet` instead).
    pub fn without_credentials(&self) -> LinkedHub {
        LinkedHub { connector: self.connector.as_ref().map(HubConnection::without_credentials), ..self.clone() }
    }
}

fn one() -> u32 {
    1
}

/// A provisioning service instance: a tenant.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Human name, unique per deployment.
    pub name: String,
    /// Routes device traffic (`0ne` + 8 hex digits); the instance's key.
    pub id_scope: String,
    /// Routes service API traffic (the `Host` header); immutable.
    pub service_host_name: String,
    /// Policy used when an enrollment names none (never `custom` without a definition).
    #[serde(default)]
    pub allocation_policy: AllocationPolicy,
    /// Default custom allocation target when the default policy is `custom`.
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    /// Hubs devices may be assigned to.
    #[serde(default)]
    pub linked_hubs: Vec<LinkedHub>,
    /// Keys for the service API.
    #[serde(default)]
    pub authorization_policies: Vec<AccessPolicy>,
    /// CA certificates that groups may reference (`caReferences`); only verified ones admit devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates: Vec<CaCertificate>,
    /// Let webhooks target private, loopback and link-local addresses.
    #[serde(default)]
    pub allow_private_webhook_targets: bool,
    /// Secret that signs webhook requests (base64), generated at creation.
    pub webhook_signing_key: Option<String>,
    /// Version tag, set by the store on every write.
    pub etag: Option<String>,
    /// Creation time.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<Timestamp>,
}

/// A billable operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OperationKind {
    /// First registration of a device.
    Registration,
    /// A registration of a device that had a record.
    ReRegistration,
    /// A billable service API call (writes, reads, queries, bulk).
    ServiceOperation,
}

impl OperationKind {
    /// Every kind.
    pub const ALL: [OperationKind; 3] =
        [OperationKind::Registration, OperationKind::ReRegistration, OperationKind::ServiceOperation];

    /// Stable short name used as a storage key.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Registration => "registration",
            OperationKind::ReRegistration => "reRegistration",
            OperationKind::ServiceOperation => "serviceOperation",
        }
    }
}

/// Operations counted for one instance, one day and one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationCount {
    /// UTC day, `YYYY-MM-DD`.
    pub date: String,
    /// Kind of operation.
    pub kind: OperationKind,
    /// Number counted.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_policies_without_keys_are_listed_without_them_and_never_read_back() {
        let listed = AccessPolicy {
            key_name: "ops".into(),
            primary_key: String::new(),
            secondary_key: String::new(),
            rights: vec![Right::ServiceConfig],
        };
        let text = serde_json::to_string(&listed).unwrap();
        assert_eq!(text, r#"{"keyName":"ops","rights":["ServiceConfig"]}"#);
        // A stored policy that lost its keys must not read as one whose key is empty.
        assert!(serde_json::from_str::<AccessPolicy>(&text).is_err());
    }
}
