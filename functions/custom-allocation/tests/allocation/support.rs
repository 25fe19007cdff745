//! Shared helpers: fixtures, example modules, an instance, an allocator over a temporary data directory.

use std::path::PathBuf;
use std::sync::Arc;

use dps_core::allocator::{AllocationFailure, AllocationResponse, CustomAllocator};
use dps_core::model::{CustomAllocationDefinition, Instance, LinkedHub};
use dps_core::policy::PolicyRegistry;
use dps_custom_allocation::{DirStorage, Limits, PolicyAllocator, PolicySettings};
use serde_json::{Value, json};

/// The policies workspace.
pub fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// A hand-written fixture, assembled from `policies/fixtures/{name}.wat`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = policies_dir().join("fixtures").join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// An example policy built by scripts/setup/wasm.sh. Missing modules fail the test: never skipped.
pub fn example(name: &str) -> Vec<u8> {
    let path = policies_dir().join("target/wasm32-unknown-unknown/release").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("example policy {} is missing ({e}): run scripts/setup/wasm.sh to build the policies", path.display())
    })
}

/// Linked hubs every test instance has.
pub const HUBS: [&str; 7] = [
    "hub-a.example.net",
    "hub-eu.example.net",
    "hub-us.example.net",
    "acme-hub.example.net",
    "globex-hub.example.net",
    "big-large.example.net",
    "tiny-small.example.net",
];

/// A test instance; `allow_private` lets webhooks reach 127.0.0.1.
pub fn instance(allow_private: bool) -> Instance {
    serde_json::from_value::<Instance>(json!({
        "name": "test",
        "idScope": "0ne00000001",
        "serviceHostName": "test.example.net",
        "allowPrivateWebhookTargets": allow_private,
        "webhookSigningKey": "c2lnbmluZy1rZXktZm9yLXRlc3Rz",
    }))
    .map(|mut i| {
        i.linked_hubs = linked_hubs();
        i
    })
    .expect("instance")
}

/// Azure's AllocationRequest for a group device.
/// The typed form of an AllocationRequest written as JSON.
pub fn typed(request: &Value) -> dps_core::allocator::AllocationRequest {
    serde_json::from_value(request.clone()).expect("an AllocationRequest")
}

pub fn request(registration_id: &str, payload: Option<Value>, hubs: &[&str]) -> Value {
    let mut context = json!({ "registrationId": registration_id, "symmetricKey": {} });
    if let Some(p) = payload {
        context["payload"] = p;
    }
    json!({
        "enrollmentGroup": { "enrollmentGroupId": "group-1", "attestation": { "type": "symmetricKey", "symmetricKey": {} } },
        "deviceRuntimeContext": context,
        "linkedHubs": hubs,
    })
}

/// A definition naming a policy.
pub fn policy(name: &str) -> CustomAllocationDefinition {
    CustomAllocationDefinition { policy_name: Some(name.into()), ..Default::default() }
}

/// A definition naming a webhook.
pub fn webhook(url: &str) -> CustomAllocationDefinition {
    CustomAllocationDefinition {
        webhook_url: Some(url.into()),
        api_version: Some("2021-10-01".into()),
        policy_name: None,
    }
}

/// An allocator over a fresh data directory.
pub struct Harness {
    pub allocator: Arc<PolicyAllocator>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A deployment that permits private webhook targets (the local webhook server of these tests); each
    /// instance still decides for itself.
    pub fn new() -> Self {
        let mut settings = PolicySettings::default();
        settings.webhooks.permit_private_targets = true;
        Self::with(settings)
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self::with(PolicySettings { limits, ..PolicySettings::default() })
    }

    pub fn with(settings: PolicySettings) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(DirStorage::new(dir.path().join("policies")));
        Self { allocator: Arc::new(PolicyAllocator::new(storage, settings).expect("allocator")), dir }
    }

    /// Upload a module under `name`, failing the test on refusal.
    pub async fn upload(&self, name: &str, module: Vec<u8>) {
        self.allocator.upload(&instance(false), name, module).await.unwrap_or_else(|e| panic!("upload {name}: {e}"));
    }

    /// Allocate with the named policy.
    pub async fn run(&self, name: &str, request: &Value) -> Result<AllocationResponse, AllocationFailure> {
        self.allocator.allocate(&instance(false), &policy(name), &typed(request)).await
    }

    /// Allocate for device `registration_id` (no payload, [`HUBS`]) with the named policy, on a task of its own.
    pub fn spawn_run(
        &self,
        name: &str,
        registration_id: String,
    ) -> tokio::task::JoinHandle<Result<AllocationResponse, AllocationFailure>> {
        let (allocator, name) = (self.allocator.clone(), name.to_string());
        tokio::spawn(async move {
            allocator.allocate(&instance(false), &policy(&name), &typed(&request(&registration_id, None, &HUBS))).await
        })
    }
}

/// Assert a failure's exact code and message.
#[track_caller]
pub fn assert_failure(result: Result<AllocationResponse, AllocationFailure>, code: u32, message: &str) {
    match result {
        Ok(r) => panic!("expected failure {code} '{message}', got {r:?}"),
        Err(f) => {
            assert_eq!((f.code, f.message.as_str()), (code, message));
        }
    }
}

/// The test hubs as linked hubs (weight 1, automatic allocation on).
pub fn linked_hubs() -> Vec<LinkedHub> {
    HUBS.iter().map(|h| dps_core::testing::hub(h)).collect()
}
