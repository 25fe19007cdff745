//! The policy registry port: WebAssembly allocation policies an instance uploads, lists, deletes and dry-runs.
//! Implemented by the `dps-custom-allocation` crate; the service API reaches it through [`crate::Dps`] methods.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::allocator::{AllocationRequest, AllocationResponse};
use crate::error::Result;
use crate::model::{Instance, Timestamp};

/// Metadata of an uploaded policy (the module itself is stored by content hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    /// Name enrollments use in `customAllocationDefinition.policyName` (case-insensitive).
    pub name: String,
    /// SHA-256 of the module, lowercase hex: the module's storage key.
    pub sha256: String,
    /// Module size in bytes.
    pub size: u64,
    /// ABI version the module declares (`dps_abi_version`).
    pub abi_version: u32,
    /// Names of the module's exports.
    pub exports: Vec<String>,
    /// Imports, as `module.name`.
    pub imports: Vec<String>,
    /// Upload time.
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_date_time_utc: Timestamp,
}

/// What one policy evaluation cost, and what it logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTrace {
    /// Fuel (roughly, wasm instructions) consumed.
    pub fuel_consumed: u64,
    /// Fuel the call was given.
    pub fuel_limit: u64,
    /// Wall-clock time of instantiation and the call, in microseconds.
    pub duration_micros: u64,
    /// Largest linear memory size reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Lines the policy logged (bounded).
    pub logs: Vec<String>,
    /// Whether log lines were dropped by the bound.
    pub logs_truncated: bool,
}

/// The outcome of a dry run: the decision a registration would get, and the trace.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// `assigned` or `failed`.
    pub status: String,
    /// The allocation when assigned.
    pub allocation: Option<AllocationResponse>,
    /// The registration's error code when failed.
    pub error_code: Option<u32>,
    /// The registration's error message when failed.
    pub error_message: Option<String>,
    /// Cost and logs.
    pub trace: PolicyTrace,
}

/// Storage and evaluation of an instance's WebAssembly policies.
#[async_trait]
pub trait PolicyRegistry: Send + Sync + 'static {
    /// Validate, compile and store `module` under `name` (replacing a policy of that name).
    async fn upload(&self, instance: &Instance, name: &str, module: Vec<u8>) -> Result<PolicyInfo>;
    /// Every policy of the instance, by name.
    async fn list(&self, instance: &Instance) -> Result<Vec<PolicyInfo>>;
    /// One policy, if uploaded.
    async fn get(&self, instance: &Instance, name: &str) -> Result<Option<PolicyInfo>>;
    /// Remove a policy's name; false if there was none. Registrations naming it fail until it is uploaded again.
    async fn delete(&self, instance: &Instance, name: &str) -> Result<bool>;
    /// Evaluate a policy on a sample AllocationRequest with the production limits.
    async fn dry_run(&self, instance: &Instance, name: &str, request: &AllocationRequest) -> Result<DryRun>;
}
