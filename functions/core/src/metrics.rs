//! The measurements port: what the use cases report as they finish (registrations, custom allocations) and
//! what the front doors report per request. Adapters turn them into Prometheus series (the `dps` binary) or
//! CloudWatch Embedded Metric Format lines (the Lambda functions). Every method has a no-op default, so a sink
//! implements only what it records; [`NoMetrics`] records nothing and is what a `Dps` starts with.
//!
//! Labels are closed sets (no registration IDs, no scopes, no hub names): a sink can use them all as
//! dimensions without growing its series with the number of devices.

use std::time::Duration;

use crate::error::Error;
use crate::model::{AllocationPolicy, AttestationType, RegistrationRecord, RegistrationStatus};

/// Receives the measurements. Calls are made on the request path: keep them cheap and never blocking.
pub trait Metrics: Send + Sync + 'static {
    /// A registration record was written (once per register call that got that far).
    fn registration_written(&self, _written: &Written) {}
    /// A register call ended, however it ended, after `latency`.
    fn registration_ended(&self, _outcome: Outcome, _latency: Duration) {}
    /// A custom allocation (WebAssembly policy or webhook) ran.
    fn custom_allocation(&self, _run: &CustomAllocationRun) {}
    /// A front door answered a request with `status` after `latency`.
    fn request(&self, _front_door: FrontDoor, _status: u16, _latency: Duration) {}
}

/// Records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {}

/// A written registration record: how the device attested, the policy that allocated it, and what came of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The attestation the device registered with.
    pub attestation: AttestationType,
    /// The allocation policy in force (the enrollment's, else the instance's).
    pub allocation_policy: AllocationPolicy,
    /// `assigned`, `failed` or `disabled`.
    pub status: RegistrationStatus,
    /// The record's error code (failed registrations).
    pub error_code: Option<u32>,
}

impl Written {
    /// What `record` (just written) says, allocated under `allocation_policy`.
    pub fn of(record: &RegistrationRecord, allocation_policy: AllocationPolicy) -> Self {
        Self {
            attestation: record.attestation_type,
            allocation_policy,
            status: record.status,
            error_code: record.error_code,
        }
    }

    /// The failure was the hub's (its connector's call failed: the `hubs::codes` table).
    pub fn hub_failed(&self) -> bool {
        use crate::hubs::codes::*;
        matches!(
            self.error_code,
            Some(HUB_UNREACHABLE | HUB_THROTTLED | HUB_REFUSED | HUB_NOT_CONFIGURED | CERTIFICATE_REFUSED)
        )
    }
}

/// How a register call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A record with `status: assigned`.
    Assigned,
    /// A record with `status: failed` (allocation or hub failure).
    Failed,
    /// A record with `status: disabled`.
    Disabled,
    /// The 401 of the TPM challenge (the first half of a TPM registration, not a refusal).
    Challenged,
    /// Refused with a 4xx other than 429 (bad credential, bad request, unknown device).
    Refused,
    /// Refused with 429 (failed-attestation budget spent, or contention).
    Throttled,
    /// A 5xx: the store or another dependency failed.
    Error,
}

impl Outcome {
    /// The outcome of a register call's result.
    pub fn of<T>(result: &Result<T, Error>, status: impl FnOnce(&T) -> RegistrationStatus) -> Self {
        match result {
            Ok(record) => match status(record) {
                RegistrationStatus::Assigned => Self::Assigned,
                RegistrationStatus::Disabled => Self::Disabled,
                _ => Self::Failed,
            },
            Err(Error::TpmChallenge { .. }) => Self::Challenged,
            Err(Error::Throttled { .. }) => Self::Throttled,
            Err(Error::Unavailable(_) | Error::Internal(_)) => Self::Error,
            Err(_) => Self::Refused,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assigned => "assigned",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
            Self::Challenged => "challenged",
            Self::Refused => "refused",
            Self::Throttled => "throttled",
            Self::Error => "error",
        }
    }
}

/// One custom allocation call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomAllocationRun {
    /// A WebAssembly policy or a webhook.
    pub mechanism: CustomMechanism,
    /// Wall-clock time of the call.
    pub duration: Duration,
    /// Fuel the WebAssembly policy consumed (none for webhooks, or when the module never ran).
    pub fuel_consumed: Option<u64>,
    /// The allocation failure code, if it failed (the answer's hub check included).
    pub error_code: Option<u32>,
}

/// What ran a custom allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomMechanism {
    /// An uploaded WebAssembly policy.
    Policy,
    /// An HTTP webhook.
    Webhook,
}

impl CustomMechanism {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Webhook => "webhook",
        }
    }
}

/// The front door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontDoor {
    /// The device API over HTTPS.
    Device,
    /// The service API over HTTPS.
    Service,
    /// The device API over MQTT (each publish is one request).
    Mqtt,
}

impl FrontDoor {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Service => "service",
            Self::Mqtt => "mqtt",
        }
    }
}

/// `2xx`, `4xx`, ...: the status class label of an HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The label value of an attestation type, as the wire names it.
pub fn attestation_label(attestation: AttestationType) -> &'static str {
    match attestation {
        AttestationType::None => "none",
        AttestationType::Tpm => "tpm",
        AttestationType::X509 => "x509",
        AttestationType::SymmetricKey => "symmetricKey",
    }
}

/// The label value of an allocation policy, as the wire names it.
pub fn allocation_policy_label(policy: AllocationPolicy) -> &'static str {
    match policy {
        AllocationPolicy::Hashed => "hashed",
        AllocationPolicy::GeoLatency => "geoLatency",
        AllocationPolicy::Static => "static",
        AllocationPolicy::Custom => "custom",
    }
}

/// The label value of a written record's status.
pub fn status_label(status: RegistrationStatus) -> &'static str {
    match status {
        RegistrationStatus::Unassigned => "unassigned",
        RegistrationStatus::Assigning => "assigning",
        RegistrationStatus::Assigned => "assigned",
        RegistrationStatus::Failed => "failed",
        RegistrationStatus::Disabled => "disabled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hubs::codes as hub;

    #[test]
    fn hub_codes_are_hub_failures_and_allocation_codes_are_not() {
        let written = |code| Written {
            attestation: AttestationType::SymmetricKey,
            allocation_policy: AllocationPolicy::Hashed,
            status: RegistrationStatus::Failed,
            error_code: Some(code),
        };
        for code in [hub::HUB_UNREACHABLE, hub::HUB_THROTTLED, hub::HUB_REFUSED, hub::HUB_NOT_CONFIGURED] {
            assert!(written(code).hub_failed(), "{code}");
        }
        assert!(written(hub::CERTIFICATE_REFUSED).hub_failed());
        for code in [400_208, 400_243, 400_263] {
            assert!(!written(code).hub_failed(), "{code}");
        }
    }

    #[test]
    fn outcomes_of_results() {
        let status = |s: &RegistrationStatus| *s;
        assert_eq!(Outcome::of(&Ok(RegistrationStatus::Assigned), status), Outcome::Assigned);
        assert_eq!(Outcome::of(&Ok(RegistrationStatus::Failed), status), Outcome::Failed);
        let throttled = Error::Throttled { message: String::new(), retry_after_secs: 1 };
        assert_eq!(Outcome::of(&Err(throttled), status), Outcome::Throttled);
        assert_eq!(Outcome::of(&Err(Error::unauthorized("no")), status), Outcome::Refused);
        assert_eq!(Outcome::of(&Err(Error::Unavailable("store".into())), status), Outcome::Error);
    }
}
