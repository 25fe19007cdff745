//! The custom allocation port: one contract (Azure's) for WebAssembly policies and HTTP webhooks.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{AnyEnrollment, CustomAllocationDefinition, EnrollmentGroup, IndividualEnrollment, Instance};

/// Azure's AllocationRequest: what a webhook or a WebAssembly policy is asked (secrets stripped).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationRequest {
    /// The device's individual enrollment (when it attested with one).
    pub individual_enrollment: Option<IndividualEnrollment>,
    /// The group that admitted the device (when it attested with a group key).
    pub enrollment_group: Option<EnrollmentGroup>,
    /// What the device presented.
    pub device_runtime_context: DeviceRuntimeContext,
    /// The hubs the allocator may choose from.
    #[serde(default)]
    pub linked_hubs: Vec<String>,
}

/// The device's side of an [`AllocationRequest`].
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRuntimeContext {
    /// The registration ID.
    pub registration_id: String,
    /// Present (and empty) for symmetric-key devices, as Azure sends it.
    pub symmetric_key: Option<Value>,
    /// For X.509 devices, their certificates as the registration records them (`certificateInfo`,
    /// `enrollmentGroupId`, `signingCertificateInfo`).
    pub x509: Option<crate::model::X509RegistrationResult>,
    /// The TPM's `endorsementKey` and `storageRootKey`, for TPM devices.
    pub tpm: Option<Value>,
    /// The hub the device is assigned to now (re-registrations).
    pub current_iot_hub_host_name: Option<String>,
    /// The device ID in that hub.
    pub current_device_id: Option<String>,
    /// The device's registration payload.
    pub payload: Option<Value>,
}

impl AllocationRequest {
    /// The request for a device admitted by `enrollment`, its keys removed.
    pub fn new(enrollment: &AnyEnrollment, context: DeviceRuntimeContext, linked_hubs: Vec<String>) -> Self {
        use crate::model::Enrollment;
        let (individual_enrollment, enrollment_group) = match enrollment.clone() {
            AnyEnrollment::Individual(e) => (Some(e.without_secrets()), None),
            AnyEnrollment::Group(g) => (None, Some(g.without_secrets())),
        };
        Self { individual_enrollment, enrollment_group, device_runtime_context: context, linked_hubs }
    }

    /// Accept `response` only if its hub is one of the hubs offered (the one check, for every allocator).
    pub fn check_offered(&self, response: AllocationResponse) -> Result<AllocationResponse, AllocationFailure> {
        if self.linked_hubs.iter().any(|h| h.eq_ignore_ascii_case(&response.iot_hub_host_name)) {
            return Ok(response);
        }
        let hub: String = response.iot_hub_host_name.chars().filter(|c| !c.is_control()).take(253).collect();
        Err(AllocationFailure {
            code: codes::HUB_NOT_LINKED,
            message: format!("Custom allocation chose hub '{hub}', which is not one of the linked hubs offered"),
        })
    }
}

/// The error codes of failed allocations (Azure's 4002xx family; docs/custom-allocation.md): one code, one
/// situation. Azure documents 400207, 400208 and 400209; 40024x (WebAssembly policies), 40025x (custom
/// allocation in general) and 40026x (webhooks) are ours, in ranges Azure has not been seen to use.
pub mod codes {
    /// A webhook answered with a non-2xx status other than 401 (Azure's code, seen for 400).
    pub const WEBHOOK_STATUS: u32 = 400_207;
    /// No hub could be chosen: none linked or none left after the enrollment's `iotHubs` (Azure's code).
    pub const HUB_NOT_SPECIFIED: u32 = 400_208;
    /// A webhook answered 401 (Azure's code).
    pub const WEBHOOK_UNAUTHORIZED: u32 = 400_209;

    /// The definition names a policy that is not uploaded (never was, or was deleted).
    pub const POLICY_NOT_FOUND: u32 = 400_240;
    /// The policy refused the device (its message is the registration's error message).
    pub const POLICY_REJECTED: u32 = 400_241;
    /// The policy trapped (panic, `unreachable`, division by zero, stack overflow, out-of-bounds access...).
    pub const POLICY_TRAP: u32 = 400_242;
    /// The policy used up its fuel (instruction budget).
    pub const POLICY_FUEL: u32 = 400_243;
    /// The policy ran past its wall-clock deadline.
    pub const POLICY_DEADLINE: u32 = 400_244;
    /// The policy asked for more memory than a call may use.
    pub const POLICY_MEMORY: u32 = 400_245;
    /// The policy's answer is not valid JSON of the expected shape.
    pub const POLICY_BAD_OUTPUT: u32 = 400_246;
    /// The policy's answer is larger than the output bound.
    pub const POLICY_OUTPUT_TOO_LARGE: u32 = 400_247;
    /// The policy or webhook chose a hub that is not among the request's `linkedHubs`.
    pub const HUB_NOT_LINKED: u32 = 400_248;
    /// The policy could not be loaded or run for a reason of the host (storage, compilation); retry later.
    pub const POLICY_HOST: u32 = 400_249;

    /// This deployment runs without a custom allocator (the `custom` policy cannot be served).
    pub const CUSTOM_NOT_AVAILABLE: u32 = 400_250;
    /// Neither the enrollment nor the instance has a custom allocation definition (webhook or policy).
    pub const NO_DEFINITION: u32 = 400_251;

    /// The webhook did not answer within the connect or total timeout.
    pub const WEBHOOK_TIMEOUT: u32 = 400_260;
    /// The webhook could not be reached (DNS, connection, TLS).
    pub const WEBHOOK_UNREACHABLE: u32 = 400_261;
    /// The webhook's address is private, loopback or link-local and the instance does not allow that.
    pub const WEBHOOK_FORBIDDEN_TARGET: u32 = 400_262;
    /// The webhook's answer is not valid JSON of the expected shape.
    pub const WEBHOOK_BAD_RESPONSE: u32 = 400_263;
    /// The webhook's answer is larger than the response bound.
    pub const WEBHOOK_RESPONSE_TOO_LARGE: u32 = 400_264;
    /// The webhook URL is not acceptable (not https, has credentials, unparsable).
    pub const WEBHOOK_BAD_URL: u32 = 400_265;
}

impl AllocationFailure {
    /// A failure with `code` and `message`.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// What the allocator answers: Azure's AllocationResponse.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationResponse {
    /// The chosen hub; must be one of the request's `linkedHubs`.
    pub iot_hub_host_name: String,
    /// Initial twin to apply instead of the enrollment's.
    pub initial_twin: Option<Value>,
    /// Forwarded to the device as `registrationState.payload`.
    pub payload: Option<Value>,
}

/// Why custom allocation failed; becomes the registration's `errorCode` and `errorMessage`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AllocationFailure {
    /// Azure-style code (4002xx for allocation failures).
    pub code: u32,
    /// Message shown to the device and in the registration record.
    pub message: String,
}

/// What a custom allocation consumed besides time (for the metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocationCost {
    /// Fuel a WebAssembly policy consumed (none for webhooks, or when no module ran).
    pub fuel_consumed: Option<u64>,
}

/// Runs custom allocation for one registration.
#[async_trait]
pub trait CustomAllocator: Send + Sync + 'static {
    /// Check a definition when an enrollment or the instance default is written (e.g. the named policy exists,
    /// the webhook URL is acceptable). The default accepts anything.
    async fn check_definition(
        &self,
        _instance: &Instance,
        _definition: &CustomAllocationDefinition,
    ) -> Result<(), crate::error::Error> {
        Ok(())
    }

    /// Decide a hub for `request` (the core checks the answer against `request.linked_hubs`).
    async fn allocate(
        &self,
        instance: &Instance,
        definition: &CustomAllocationDefinition,
        request: &AllocationRequest,
    ) -> Result<AllocationResponse, AllocationFailure>;

    /// [`allocate`](Self::allocate) and what it consumed: an allocator that knows (a WebAssembly policy's fuel)
    /// overrides this; the default reports nothing. The core calls this one.
    async fn allocate_measured(
        &self,
        instance: &Instance,
        definition: &CustomAllocationDefinition,
        request: &AllocationRequest,
    ) -> (Result<AllocationResponse, AllocationFailure>, AllocationCost) {
        (self.allocate(instance, definition, request).await, AllocationCost::default())
    }
}
