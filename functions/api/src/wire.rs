//! Azure wire shapes that differ from the core's entities: what devices and service clients read about a
//! registration, and the bulk operation envelope.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dps_core::model::{AttestationType, RegistrationRecord, RegistrationStatus, Substatus, Timestamp, TpmRegistration};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Timestamps as Azure writes them: UTC with seven fractional digits (`2019-12-27T19:51:41.6630592Z`), which
/// every client parses (some .NET and Python parsers stop at seven digits).
mod azure_time {
    use serde::Serializer;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::azure_timestamp(*at))
    }
}

/// A timestamp in Azure's form (UTC, seven fractional digits).
pub fn azure_timestamp(at: Timestamp) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");
    at.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

/// The body a device sends to register or look up its status (`DeviceRegistration`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistration {
    /// Must equal the path's registration ID when present.
    #[serde(default)]
    pub registration_id: Option<String>,
    /// TPM attestation: the device's EK and SRK (see the core's `usecases/tpm.rs`).
    #[serde(default)]
    pub tpm: Option<TpmRegistration>,
    /// Passed to custom allocation.
    #[serde(default)]
    pub payload: Option<Value>,
    /// Certificate signing request (2025-07-01-preview+): base64 DER PKCS#10.
    #[serde(default)]
    pub csr: Option<String>,
}

/// `DeviceRegistrationResult`: what a device reads about its registration: the service view plus the attestation
/// part, with the etag shown as Azure shows it to devices.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationResult {
    #[serde(flatten)]
    state: DeviceRegistrationState,
    symmetric_key: Option<Value>,
    x509: Option<Value>,
    tpm: Option<Value>,
    /// The certificate a hub issued from the device's `csr` (base64 DER, leaf first).
    issued_certificate_chain: Option<Vec<String>>,
}

impl From<&RegistrationRecord> for DeviceRegistrationResult {
    fn from(r: &RegistrationRecord) -> Self {
        // The attestation part names the admitting group, if any; nothing else of the record's internals.
        let part = match &r.enrollment_group_id {
            Some(group) => json!({ "enrollmentGroupId": group }),
            None => json!({}),
        };
        let (mut symmetric_key, mut x509, mut tpm) = (None, None, None);
        match r.attestation_type {
            AttestationType::SymmetricKey => symmetric_key = Some(part),
            AttestationType::X509 => x509 = Some(r.x509.as_ref().map_or(part, |x| json!(x))),
            AttestationType::Tpm => tpm = Some(r.tpm.as_ref().map_or_else(|| json!({}), |t| json!(t))),
            AttestationType::None => {}
        }
        let mut state = DeviceRegistrationState::from(r.clone());
        // Devices see base64 of the quoted etag.
        state.etag = state.etag.map(|e| B64.encode(e.as_bytes()));
        Self { state, symmetric_key, x509, tpm, issued_certificate_chain: r.issued_certificate_chain.clone() }
    }
}

/// `RegistrationOperationStatus`: the answer to register and to the operation status lookup.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperationStatus {
    operation_id: String,
    status: RegistrationStatus,
    registration_state: DeviceRegistrationResult,
}

impl From<&RegistrationRecord> for RegistrationOperationStatus {
    fn from(r: &RegistrationRecord) -> Self {
        Self { operation_id: r.operation_id.clone(), status: r.status, registration_state: r.into() }
    }
}

/// `DeviceRegistrationState`: the service API's view of a registration record (etag as stored, usable as
/// `If-Match`; no attestation part).
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationState {
    registration_id: String,
    #[serde(with = "azure_time")]
    created_date_time_utc: Timestamp,
    assigned_hub: Option<String>,
    device_id: Option<String>,
    status: RegistrationStatus,
    substatus: Option<Substatus>,
    error_code: Option<u32>,
    error_message: Option<String>,
    #[serde(with = "azure_time")]
    last_updated_date_time_utc: Timestamp,
    etag: Option<String>,
    payload: Option<Value>,
    /// Extension: hubs that may still hold the device although it is not assigned there (a removal is owed;
    /// the device's next registration retries it). Absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pending_hub_removals: Vec<dps_core::model::HubDeviceRef>,
}

impl From<RegistrationRecord> for DeviceRegistrationState {
    fn from(r: RegistrationRecord) -> Self {
        Self {
            registration_id: r.registration_id,
            created_date_time_utc: r.created_date_time_utc,
            assigned_hub: r.assigned_hub,
            device_id: r.device_id,
            status: r.status,
            substatus: r.substatus,
            error_code: r.error_code,
            error_message: r.error_message,
            last_updated_date_time_utc: r.last_updated_date_time_utc,
            etag: r.etag,
            payload: r.payload,
            pending_hub_removals: r.pending_hub_removals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_seven_fractional_digits_in_utc() {
        let at = time::macros::datetime!(2019-12-27 20:51:41.663059234 +01:00);
        let mut out = Vec::new();
        azure_time::serialize(&at, &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "\"2019-12-27T19:51:41.6630592Z\"");
    }
}

/// `BulkEnrollmentOperation`: the mode and the items under their kind's collection name (`enrollments`,
/// `enrollmentGroups`); items are parsed per kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    /// create, update, updateIfMatchETag or delete.
    pub mode: dps_core::usecases::BulkMode,
    /// The item arrays, by field name.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

impl BulkRequest {
    /// The items of `kind`, if the request has an array of them.
    pub fn items_of(mut self, kind: dps_core::model::EnrollmentKind) -> Option<Vec<Value>> {
        match self.fields.remove(kind.collection()) {
            Some(Value::Array(items)) => Some(items),
            _ => None,
        }
    }
}

/// `BulkEnrollmentOperationResult`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    /// True when no item failed.
    pub is_successful: bool,
    /// The failed items.
    pub errors: Vec<Value>,
}
