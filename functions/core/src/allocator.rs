//! The custom allocation port: one contract (Azure's) for WebAssembly policies and HTTP webhooks.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{CustomAllocationDefinition, Instance};

/// What the allocator answers: Azure's AllocationResponse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationResponse {
    /// The chosen hub; must be one of the request's `linkedHubs`.
    pub iot_hub_host_name: String,
    /// Initial twin to apply instead of the enrollment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<Value>,
    /// Forwarded to the device as `registrationState.payload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

    /// Decide a hub. `request` is Azure's AllocationRequest JSON (secrets stripped).
    async fn allocate(
        &self,
        instance: &Instance,
        definition: &CustomAllocationDefinition,
        request: &Value,
    ) -> Result<AllocationResponse, AllocationFailure>;
}
