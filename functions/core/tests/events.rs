//! Lifecycle events: one per durable change, none for a refused one, never a key, and every one valid against
//! the documented schema (docs/events.schema.json).

mod support;

use std::path::PathBuf;

use dps_core::events::EventType;
use dps_core::model::{EnrollmentGroup, IndividualEnrollment, RegistrationStatus};
use dps_core::usecases::BulkMode;
use serde_json::{Value, json};
use support::*;

fn schema() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.schema.json")
}

fn assert_valid(events: &[Value]) {
    let texts: Vec<String> = events.iter().map(Value::to_string).collect();
    dps_test_support::assert_valid_json(&schema(), &texts);
}

#[tokio::test]
async fn enrollment_and_group_changes_are_told_once_each_without_keys() {
    let (f, events) = Fixture::new(hubs(1)).await.recording();
    let owner = f.owner().await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (primary, secondary) = f.keys("dev-1").await;
    let stored = f.enroll(individual("dev-1", json!({ "provisioningStatus": "disabled" }))).await;
    // A refused write (stale If-Match) and a delete of nothing tell nothing.
    let body: IndividualEnrollment = serde_json::from_value(individual("dev-1", json!({}))).unwrap();
    assert!(f.dps.put_enrollment(&owner, "dev-1", body, Some("\"stale\"")).await.is_err());
    assert!(f.dps.delete_enrollment::<IndividualEnrollment>(&owner, "nobody", None).await.is_err());
    f.dps.delete_enrollment::<IndividualEnrollment>(&owner, "dev-1", None).await.unwrap();
    f.enroll_group(group("fleet", json!({}))).await;
    let (group_key, _) = f.group_keys("fleet").await;
    f.enroll_group(group("fleet", json!({ "provisioningStatus": "disabled" }))).await;
    f.dps.delete_enrollment::<EnrollmentGroup>(&owner, "fleet", None).await.unwrap();

    let got = events.take();
    let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "dps.enrollment.created",
            "dps.enrollment.updated",
            "dps.enrollment.deleted",
            "dps.enrollmentGroup.created",
            "dps.enrollmentGroup.updated",
            "dps.enrollmentGroup.deleted"
        ]
    );
    let updated = &got[1];
    assert_eq!(updated["subject"], "enrollments/dev-1");
    assert_eq!(updated["source"], format!("/instances/{}", f.scope()));
    assert_eq!(updated["idscope"], f.scope());
    assert_eq!(
        updated["data"],
        json!({ "registrationId": "dev-1", "attestationType": "symmetricKey", "provisioningStatus": "disabled",
                "etag": stored.spec.etag.unwrap() })
    );
    assert_eq!(got[5]["data"], json!({ "enrollmentGroupId": "fleet" }));
    assert_eq!(got[3]["subject"], "enrollmentGroups/fleet");
    let ids: std::collections::HashSet<&str> = got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "every event has its own id");
    let text = serde_json::to_string(&got).unwrap();
    for key in [&primary, &secondary, &group_key] {
        assert!(!text.contains(key.as_str()), "an event carries a key");
    }
    assert_valid(&got);
}

#[tokio::test]
async fn bulk_operations_tell_each_item_that_changed() {
    let (f, events) = Fixture::new(hubs(1)).await.recording();
    let owner = f.owner().await;
    f.enroll(individual("taken", json!({}))).await;
    events.take();
    let items: Vec<IndividualEnrollment> =
        ["a", "taken", "b"].iter().map(|id| serde_json::from_value(individual(id, json!({}))).unwrap()).collect();
    let outcome = f.dps.bulk_enrollments(&owner, BulkMode::Create, items).await.unwrap();
    assert_eq!(outcome.errors.len(), 1, "'taken' exists");
    let got = events.take();
    let subjects: Vec<&str> = got.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["enrollments/a", "enrollments/b"]);
    assert!(got.iter().all(|e| e["type"] == "dps.enrollment.created"));
}

#[tokio::test]
async fn registrations_tell_assigned_reassigned_failed_and_deleted() {
    let (f, events) = Fixture::new(vec![hub("hub-a.example.net", 1, true, None)]).await.recording();
    let owner = f.owner().await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    let first = f.register("dev-1", &key).await.unwrap();
    let again = f.register("dev-1", &key).await.unwrap();
    f.link(vec![hub("hub-b.example.net", 1, true, None), hub("hub-a.example.net", 1, false, None)]).await;
    let moved = f.register("dev-1", &key).await.unwrap();
    assert_eq!(moved.assigned_hub.as_deref(), Some("hub-b.example.net"));
    f.enroll(individual("dev-1", json!({ "provisioningStatus": "disabled" }))).await;
    let disabled = f.register("dev-1", &key).await;
    f.dps.delete_registration(&owner, "dev-1", None).await.unwrap();
    // A device with a bad signature changes nothing and tells nothing.
    assert!(f.register("dev-1", "AAAA").await.is_err());

    let got: Vec<Value> = events.take().into_iter().filter(|e| e["subject"] == "registrations/dev-1").collect();
    let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    // A disabled enrollment's device is answered `disabled` with a record, as Azure does: for the consumer, a
    // registration that failed.
    assert_eq!(disabled.unwrap().status, RegistrationStatus::Disabled);
    assert_eq!(
        types,
        [
            "dps.registration.assigned",
            "dps.registration.assigned",
            "dps.registration.reassigned",
            "dps.registration.failed",
            "dps.registration.deleted"
        ]
    );
    assert_eq!(got[3]["data"]["status"], "disabled");
    assert_eq!(got[0]["data"]["assignedHub"], "hub-a.example.net");
    assert_eq!(got[0]["data"]["etag"], first.etag.clone().unwrap());
    assert_eq!(got[1]["data"]["etag"], again.etag.clone().unwrap());
    assert_eq!(got[2]["data"]["previousHub"], "hub-a.example.net");
    assert_eq!(got[2]["data"]["assignedHub"], "hub-b.example.net");
    assert_eq!(got[0]["data"]["attestationType"], "symmetricKey");
    assert_eq!(got.last().unwrap()["data"], json!({ "registrationId": "dev-1" }));
    assert!(!serde_json::to_string(&got).unwrap().contains(&key));
    assert_valid(&got);
}

#[tokio::test]
async fn the_schema_names_every_event_type() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema()).unwrap()).unwrap();
    let documented: Vec<&str> =
        schema["properties"]["type"]["enum"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let emitted: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(documented, emitted);
    for t in EventType::ALL {
        assert_eq!(serde_json::to_value(t).unwrap(), t.name(), "wire name of {t:?}");
    }
}

/// A policy registry that keeps names only (the service's events are what is under test, not wasm).
#[derive(Default)]
struct Names(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl dps_core::policy::PolicyRegistry for Names {
    async fn upload(
        &self,
        _: &dps_core::model::Instance,
        name: &str,
        module: Vec<u8>,
    ) -> dps_core::Result<dps_core::policy::PolicyInfo> {
        if module.is_empty() {
            return Err(dps_core::Error::invalid("empty module"));
        }
        self.0.lock().unwrap().push(name.to_string());
        Ok(dps_core::policy::PolicyInfo {
            name: name.to_string(),
            sha256: "ab".repeat(32),
            size: module.len() as u64,
            abi_version: 1,
            exports: Vec::new(),
            imports: Vec::new(),
            uploaded_date_time_utc: dps_core::usecases::now(),
        })
    }
    async fn list(&self, _: &dps_core::model::Instance) -> dps_core::Result<Vec<dps_core::policy::PolicyInfo>> {
        Ok(Vec::new())
    }
    async fn get(
        &self,
        _: &dps_core::model::Instance,
        _: &str,
    ) -> dps_core::Result<Option<dps_core::policy::PolicyInfo>> {
        Ok(None)
    }
    async fn delete(&self, _: &dps_core::model::Instance, name: &str) -> dps_core::Result<bool> {
        let mut names = self.0.lock().unwrap();
        let before = names.len();
        names.retain(|n| n != name);
        Ok(names.len() < before)
    }
    async fn dry_run(
        &self,
        _: &dps_core::model::Instance,
        _: &str,
        _: &dps_core::allocator::AllocationRequest,
    ) -> dps_core::Result<dps_core::policy::DryRun> {
        Err(dps_core::Error::invalid("not here"))
    }
}

#[tokio::test]
async fn policy_uploads_and_deletes_are_told_and_refusals_are_not() {
    let (mut f, events) = Fixture::new(hubs(1)).await.recording();
    f.dps = f.dps.clone().with_policies(std::sync::Arc::new(Names::default()));
    let owner = f.owner().await;
    f.dps.upload_policy(&owner, "by-region", vec![0, 97, 115, 109]).await.unwrap();
    assert!(f.dps.upload_policy(&owner, "broken", Vec::new()).await.is_err());
    f.dps.delete_policy(&owner, "by-region").await.unwrap();
    assert!(f.dps.delete_policy(&owner, "by-region").await.is_err(), "already gone");
    let got = events.take();
    let told: Vec<(&str, &str)> =
        got.iter().map(|e| (e["type"].as_str().unwrap(), e["subject"].as_str().unwrap())).collect();
    assert_eq!(told, [("dps.policy.uploaded", "policies/by-region"), ("dps.policy.deleted", "policies/by-region")]);
    assert_eq!(got[0]["data"], json!({ "name": "by-region", "sha256": "ab".repeat(32), "size": 4 }));
    assert_valid(&got);
}
