//! Lifecycle events: what changed in an instance, told to the operator's own systems once the change is durable.
//!
//! Events are CloudEvents 1.0 in the structured JSON form (docs/events.md, docs/events.schema.json). The service
//! builds one after each write it describes has committed and hands it to the [`EventSink`] the deployment
//! configured; a sink failure is logged and never undoes or fails the change. No event carries a key, a token or
//! a certificate body.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::model::{
    AttestationType, CaCertificate, Enrollment, EnrollmentKind, ProvisioningStatus, RegistrationRecord,
    RegistrationStatus, Timestamp,
};
use crate::policy::PolicyInfo;

/// The CloudEvents version the events follow.
pub const SPEC_VERSION: &str = "1.0";

/// What happened. The wire names ([`EventType::name`]: `dps.registration.assigned`, …) are the CloudEvents
/// `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A device was assigned to a hub for the first time, or again to the same hub.
    RegistrationAssigned,
    /// A device was assigned to another hub than its record named (`data.previousHub`).
    RegistrationReassigned,
    /// A registration ended failed (`data.errorCode`) or disabled (its enrollment is disabled).
    RegistrationFailed,
    /// A registration record was deleted through the service API.
    RegistrationDeleted,
    /// An individual enrollment was created.
    EnrollmentCreated,
    /// An individual enrollment was replaced.
    EnrollmentUpdated,
    /// An individual enrollment was deleted.
    EnrollmentDeleted,
    /// An enrollment group was created.
    GroupCreated,
    /// An enrollment group was replaced.
    GroupUpdated,
    /// An enrollment group was deleted.
    GroupDeleted,
    /// A WebAssembly allocation policy was uploaded (created or replaced).
    PolicyUploaded,
    /// A WebAssembly allocation policy was deleted.
    PolicyDeleted,
    /// A CA certificate passed its proof of possession: its groups now admit devices.
    CaCertificateVerified,
}

impl EventType {
    /// Every type, in the order docs/events.md lists them.
    pub const ALL: [EventType; 13] = [
        EventType::RegistrationAssigned,
        EventType::RegistrationReassigned,
        EventType::RegistrationFailed,
        EventType::RegistrationDeleted,
        EventType::EnrollmentCreated,
        EventType::EnrollmentUpdated,
        EventType::EnrollmentDeleted,
        EventType::GroupCreated,
        EventType::GroupUpdated,
        EventType::GroupDeleted,
        EventType::PolicyUploaded,
        EventType::PolicyDeleted,
        EventType::CaCertificateVerified,
    ];

    /// The CloudEvents `type` string.
    pub fn name(self) -> &'static str {
        match self {
            EventType::RegistrationAssigned => "dps.registration.assigned",
            EventType::RegistrationReassigned => "dps.registration.reassigned",
            EventType::RegistrationFailed => "dps.registration.failed",
            EventType::RegistrationDeleted => "dps.registration.deleted",
            EventType::EnrollmentCreated => "dps.enrollment.created",
            EventType::EnrollmentUpdated => "dps.enrollment.updated",
            EventType::EnrollmentDeleted => "dps.enrollment.deleted",
            EventType::GroupCreated => "dps.enrollmentGroup.created",
            EventType::GroupUpdated => "dps.enrollmentGroup.updated",
            EventType::GroupDeleted => "dps.enrollmentGroup.deleted",
            EventType::PolicyUploaded => "dps.policy.uploaded",
            EventType::PolicyDeleted => "dps.policy.deleted",
            EventType::CaCertificateVerified => "dps.caCertificate.verified",
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One lifecycle event, as every sink delivers it (one JSON object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// CloudEvents version, [`SPEC_VERSION`].
    pub specversion: &'static str,
    /// Unique per event (a UUID): consumers drop duplicates by it.
    pub id: String,
    /// `/instances/{idScope}`: the instance the change belongs to.
    pub source: String,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The changed thing, as its service API path: `registrations/{id}`, `enrollments/{id}`,
    /// `enrollmentGroups/{id}`, `policies/{name}`, `certificates/{name}`.
    pub subject: String,
    /// When the change was made (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub time: Timestamp,
    /// Always `application/json`.
    pub datacontenttype: &'static str,
    /// The instance's ID scope (a CloudEvents extension attribute, for routing without parsing `source`).
    pub idscope: String,
    /// What changed, by family (docs/events.schema.json).
    pub data: Value,
}

impl Event {
    fn new(event_type: EventType, id_scope: &str, subject: String, data: impl Serialize) -> Self {
        Self {
            specversion: SPEC_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            source: format!("/instances/{id_scope}"),
            event_type,
            subject,
            time: crate::usecases::now(),
            datacontenttype: "application/json",
            idscope: id_scope.to_string(),
            data: serde_json::to_value(data).unwrap_or(Value::Null),
        }
    }

    /// A registration record was written: assigned, re-assigned (the hub changed from `previous_hub`) or failed.
    pub fn registration_written(id_scope: &str, record: &RegistrationRecord, previous_hub: Option<&str>) -> Self {
        let event_type = match record.status {
            RegistrationStatus::Assigned => match (previous_hub, record.assigned_hub.as_deref()) {
                (Some(before), Some(now)) if !before.eq_ignore_ascii_case(now) => EventType::RegistrationReassigned,
                _ => EventType::RegistrationAssigned,
            },
            _ => EventType::RegistrationFailed,
        };
        let data = RegistrationData {
            registration_id: &record.registration_id,
            status: Some(record.status),
            device_id: record.device_id.as_deref(),
            assigned_hub: record.assigned_hub.as_deref(),
            previous_hub: previous_hub.filter(|_| event_type == EventType::RegistrationReassigned),
            attestation_type: Some(record.attestation_type),
            enrollment_group_id: record.enrollment_group_id.as_deref(),
            error_code: record.error_code,
            error_message: record.error_message.as_deref(),
            etag: record.etag.as_deref(),
        };
        Self::new(event_type, id_scope, format!("registrations/{}", record.registration_id), data)
    }

    /// A registration record was deleted through the service API.
    pub fn registration_deleted(id_scope: &str, registration_id: &str) -> Self {
        let data = RegistrationData { registration_id, ..RegistrationData::default() };
        Self::new(EventType::RegistrationDeleted, id_scope, format!("registrations/{registration_id}"), data)
    }

    /// An enrollment of either kind was created (no earlier version) or replaced.
    pub fn enrollment_written<E: Enrollment>(id_scope: &str, enrollment: &E, created: bool) -> Self {
        let event_type = match (E::KIND, created) {
            (EnrollmentKind::Individual, true) => EventType::EnrollmentCreated,
            (EnrollmentKind::Individual, false) => EventType::EnrollmentUpdated,
            (EnrollmentKind::Group, true) => EventType::GroupCreated,
            (EnrollmentKind::Group, false) => EventType::GroupUpdated,
        };
        let spec = enrollment.spec();
        let data = EnrollmentData::of::<E>(enrollment.id()).with_state(
            spec.attestation.kind,
            spec.provisioning_status,
            spec.etag.as_deref(),
        );
        Self::new(event_type, id_scope, subject::<E>(enrollment.id()), data)
    }

    /// An enrollment of kind `E` was deleted.
    pub fn enrollment_deleted<E: Enrollment>(id_scope: &str, id: &str) -> Self {
        let event_type = match E::KIND {
            EnrollmentKind::Individual => EventType::EnrollmentDeleted,
            EnrollmentKind::Group => EventType::GroupDeleted,
        };
        Self::new(event_type, id_scope, subject::<E>(id), EnrollmentData::of::<E>(id))
    }

    /// A policy module was uploaded.
    pub fn policy_uploaded(id_scope: &str, info: &PolicyInfo) -> Self {
        let data = PolicyData { name: &info.name, sha256: Some(&info.sha256), size: Some(info.size) };
        Self::new(EventType::PolicyUploaded, id_scope, format!("policies/{}", info.name), data)
    }

    /// A policy module was deleted.
    pub fn policy_deleted(id_scope: &str, name: &str) -> Self {
        let data = PolicyData { name, sha256: None, size: None };
        Self::new(EventType::PolicyDeleted, id_scope, format!("policies/{name}"), data)
    }

    /// A CA certificate was verified.
    pub fn ca_verified(id_scope: &str, ca: &CaCertificate) -> Self {
        let data = CertificateData {
            name: &ca.name,
            subject: ca.info.subject_name.as_deref(),
            sha256_thumbprint: ca.info.sha256_thumbprint.as_deref(),
        };
        Self::new(EventType::CaCertificateVerified, id_scope, format!("certificates/{}", ca.name), data)
    }
}

fn subject<E: Enrollment>(id: &str) -> String {
    format!("{}/{id}", E::KIND.collection())
}

/// `data` of the `dps.registration.*` events.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationData<'a> {
    registration_id: &'a str,
    status: Option<RegistrationStatus>,
    device_id: Option<&'a str>,
    assigned_hub: Option<&'a str>,
    previous_hub: Option<&'a str>,
    attestation_type: Option<AttestationType>,
    enrollment_group_id: Option<&'a str>,
    error_code: Option<u32>,
    error_message: Option<&'a str>,
    etag: Option<&'a str>,
}

/// `data` of the `dps.enrollment.*` and `dps.enrollmentGroup.*` events.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnrollmentData<'a> {
    registration_id: Option<&'a str>,
    enrollment_group_id: Option<&'a str>,
    attestation_type: Option<AttestationType>,
    provisioning_status: Option<ProvisioningStatus>,
    etag: Option<&'a str>,
}

impl<'a> EnrollmentData<'a> {
    fn of<E: Enrollment>(id: &'a str) -> Self {
        match E::KIND {
            EnrollmentKind::Individual => Self { registration_id: Some(id), ..Self::default() },
            EnrollmentKind::Group => Self { enrollment_group_id: Some(id), ..Self::default() },
        }
    }

    fn with_state(self, kind: AttestationType, status: ProvisioningStatus, etag: Option<&'a str>) -> Self {
        Self { attestation_type: Some(kind), provisioning_status: Some(status), etag, ..self }
    }
}

/// `data` of the `dps.policy.*` events.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyData<'a> {
    name: &'a str,
    sha256: Option<&'a str>,
    size: Option<u64>,
}

/// `data` of the `dps.caCertificate.*` events.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CertificateData<'a> {
    name: &'a str,
    subject: Option<&'a str>,
    sha256_thumbprint: Option<&'a str>,
}

/// Where events go: a file, a webhook, an event bus. Called once per change, after it is durable, with the
/// change's events in order (usually one).
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Deliver (or queue for delivery) `events`. An error is logged by the caller; the change stands.
    async fn publish(&self, events: &[Event]) -> Result<()>;
}
