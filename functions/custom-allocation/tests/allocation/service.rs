//! Through the core service: `Dps::with_allocator` + `with_policies` over the in-memory store, a group with a
//! policy, and real device registrations (SAS with derived keys) whose records carry the decision.

use std::sync::Arc;

use dps_core::memory::MemoryStore;
use dps_core::model::{EnrollmentGroup, RegistrationStatus, Right};
use dps_core::testing;
use dps_core::usecases::{DeviceCaller, RegisterRequest};
use dps_core::{Caller, Dps, Error, Settings, sas};
use dps_custom_allocation::codes::*;
use serde_json::{Value, json};

use crate::support::*;

struct Service {
    dps: Dps,
    caller: Caller,
    scope: String,
    _harness: Harness,
}

async fn service() -> Service {
    service_measured(Arc::new(dps_core::metrics::NoMetrics)).await
}

async fn service_measured(metrics: Arc<dyn dps_core::metrics::Metrics>) -> Service {
    let harness = Harness::new();
    let allocator = harness.allocator.clone();
    let dps = Dps::new(Arc::new(MemoryStore::new()), Settings::default())
        .with_allocator(allocator.clone())
        .with_policies(allocator)
        .with_metrics(metrics);
    let created = testing::instance(&dps, "e2e", "e2e.example.net", linked_hubs()).await;
    let scope = created.id_scope.clone();
    let caller = testing::owner(&dps, &created).await;
    Service { dps, caller, scope, _harness: harness }
}

impl Service {
    async fn group(&self, id: &str, policy_name: &str) -> Result<EnrollmentGroup, Error> {
        let group: EnrollmentGroup = serde_json::from_value(json!({
            "enrollmentGroupId": id,
            "attestation": { "type": "symmetricKey" },
            "allocationPolicy": "custom",
            "customAllocationDefinition": { "policyName": policy_name },
        }))
        .unwrap();
        self.dps.put_enrollment(&self.caller, id, group, None).await
    }

    async fn register(
        &self,
        group: &str,
        registration_id: &str,
        payload: Option<Value>,
    ) -> dps_core::model::RegistrationRecord {
        let keys = self
            .dps
            .enrollment_attestation::<EnrollmentGroup>(&self.caller, group)
            .await
            .unwrap()
            .symmetric_key
            .unwrap();
        let device_key = sas::derive_device_key(&keys.primary_key.unwrap(), registration_id).unwrap();
        let token = testing::device_token(&self.scope, registration_id, &device_key, testing::in_an_hour());
        self.dps
            .register(RegisterRequest {
                caller: DeviceCaller::sas(&self.scope, registration_id, token),
                payload,
                api_version: "2021-06-01".into(),
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_allocated_by_the_uploaded_policy() {
    let s = service();
    let s = s.await;
    // An enrollment may only name an uploaded policy.
    assert_eq!(
        s.group("regional", "by-region").await.unwrap_err(),
        Error::invalid("No policy named 'by-region' is uploaded to this instance")
    );
    let info = s.dps.upload_policy(&s.caller, "by-region", example("route_by_payload")).await.unwrap();
    assert_eq!(s.dps.get_policy(&s.caller, "BY-REGION").await.unwrap(), info);
    s.group("regional", "by-region").await.unwrap();

    let record = s.register("regional", "dev-eu-1", Some(json!({ "region": "eu" }))).await;
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert_eq!(record.assigned_hub.as_deref(), Some("hub-eu.example.net"));
    assert_eq!(record.payload, Some(json!({ "routedBy": "region", "region": "eu" })));

    let refused = s.register("regional", "dev-x", None).await;
    assert_eq!(refused.status, RegistrationStatus::Failed);
    assert_eq!(refused.error_code, Some(POLICY_REJECTED));

    // Dry run through the service, with the instance's linked hubs filled in.
    let sample = json!({ "deviceRuntimeContext": { "registrationId": "probe", "payload": { "region": "us" } } });
    let run = s.dps.dry_run_policy(&s.caller, "by-region", sample).await.unwrap();
    assert_eq!(run.allocation.unwrap().iot_hub_host_name, "hub-us.example.net");

    // Deleting the policy fails later registrations of its enrollments with a clear error, until re-uploaded.
    s.dps.delete_policy(&s.caller, "by-region").await.unwrap();
    let orphan = s.register("regional", "dev-eu-2", Some(json!({ "region": "eu" }))).await;
    assert_eq!(orphan.status, RegistrationStatus::Failed);
    assert_eq!(orphan.error_code, Some(POLICY_NOT_FOUND));
    assert_eq!(
        orphan.error_message.as_deref(),
        Some("Custom allocation policy 'by-region' is not uploaded to this instance")
    );
    assert!(matches!(s.dps.get_policy(&s.caller, "by-region").await, Err(Error::NotFound(_))));
    s.dps.upload_policy(&s.caller, "by-region", example("route_by_payload")).await.unwrap();
    let back = s.register("regional", "dev-eu-2", Some(json!({ "region": "eu" }))).await;
    assert_eq!(back.status, RegistrationStatus::Assigned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adversarial_policy_fails_only_its_own_devices() {
    let s = service().await;
    s.dps.upload_policy(&s.caller, "tenants", example("tenant_prefix")).await.unwrap();
    s.dps.upload_policy(&s.caller, "spin", fixture("infinite-loop")).await.unwrap();
    s.group("tenants", "tenants").await.unwrap();
    s.group("spinning", "spin").await.unwrap();
    let (bad, good) = tokio::join!(s.register("spinning", "victim-1", None), async {
        let mut records = Vec::new();
        for i in 0..10 {
            records.push(s.register("tenants", &format!("acme-{i}"), None).await);
        }
        records
    });
    assert_eq!(bad.status, RegistrationStatus::Failed);
    assert_eq!(bad.error_code, Some(POLICY_FUEL));
    for r in good {
        assert_eq!(r.status, RegistrationStatus::Assigned, "{r:?}");
        assert_eq!(r.assigned_hub.as_deref(), Some("acme-hub.example.net"));
    }
}

#[tokio::test]
async fn policy_calls_need_the_service_config_right() {
    let s = service().await;
    let mut reader = s.caller.clone();
    reader.rights = vec![Right::EnrollmentRead];
    assert!(matches!(s.dps.upload_policy(&reader, "p", fixture("first-hub")).await, Err(Error::Unauthorized(_))));
    assert!(matches!(s.dps.list_policies(&reader).await, Err(Error::Unauthorized(_))));
    assert_eq!(
        s.dps.upload_policy(&s.caller, "bad name!", fixture("first-hub")).await.unwrap_err(),
        Error::invalid("Invalid policy name 'bad name!'")
    );
    assert!(s.dps.list_policies(&s.caller).await.unwrap().is_empty());
}

/// Keeps what the core reports.
#[derive(Default)]
struct Recorded {
    custom: std::sync::Mutex<Vec<dps_core::metrics::CustomAllocationRun>>,
    written: std::sync::Mutex<Vec<dps_core::metrics::Written>>,
}

impl dps_core::metrics::Metrics for Recorded {
    fn custom_allocation(&self, run: &dps_core::metrics::CustomAllocationRun) {
        self.custom.lock().unwrap().push(*run);
    }
    fn registration_written(&self, written: &dps_core::metrics::Written) {
        self.written.lock().unwrap().push(*written);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_allocation_reports_its_time_and_the_fuel_the_policy_used() {
    use dps_core::metrics::CustomMechanism;
    use dps_core::model::AllocationPolicy;
    let recorded = Arc::new(Recorded::default());
    let s = service_measured(recorded.clone()).await;
    s.dps.upload_policy(&s.caller, "tenants", example("tenant_prefix")).await.unwrap();
    s.dps.upload_policy(&s.caller, "spin", fixture("infinite-loop")).await.unwrap();
    s.group("tenants", "tenants").await.unwrap();
    s.group("spinning", "spin").await.unwrap();
    assert_eq!(s.register("tenants", "acme-1", None).await.status, RegistrationStatus::Assigned);
    assert_eq!(s.register("spinning", "victim-1", None).await.error_code, Some(POLICY_FUEL));

    let runs = recorded.custom.lock().unwrap().clone();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let (ok, spun) = (runs[0], runs[1]);
    assert_eq!((ok.mechanism, ok.error_code), (CustomMechanism::Policy, None));
    let limit = dps_custom_allocation::Limits::default().fuel;
    assert!(ok.fuel_consumed.is_some_and(|f| f > 0 && f < limit), "{ok:?}");
    assert!(!ok.duration.is_zero());
    // Out of fuel: all of it was consumed.
    assert_eq!((spun.error_code, spun.fuel_consumed), (Some(POLICY_FUEL), Some(limit)));
    let written = recorded.written.lock().unwrap().clone();
    assert!(written.iter().all(|w| w.allocation_policy == AllocationPolicy::Custom), "{written:?}");
    assert_eq!(
        written.iter().map(|w| w.status).collect::<Vec<_>>(),
        [RegistrationStatus::Assigned, RegistrationStatus::Failed]
    );
}
