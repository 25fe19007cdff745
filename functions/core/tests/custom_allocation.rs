//! The custom policy through the allocator port: what the allocator is asked, and how its answers and failures
//! become registration records.

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dps_core::allocator::{AllocationFailure, AllocationRequest, AllocationResponse, CustomAllocator, codes};
use dps_core::memory::MemoryStore;
use dps_core::model::{CustomAllocationDefinition, EnrollmentGroup, Instance, RegistrationStatus};
use dps_core::{Dps, Settings};
use serde_json::{Value, json};
use support::*;

/// Answers with a scripted response and remembers the requests.
#[derive(Default)]
struct Scripted {
    answer: Mutex<Option<Result<AllocationResponse, AllocationFailure>>>,
    requests: Mutex<Vec<Value>>,
    /// Refuse every definition, as the policy allocator does once the named policy is deleted.
    refuse_definitions: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl CustomAllocator for Scripted {
    async fn check_definition(
        &self,
        _instance: &Instance,
        _definition: &CustomAllocationDefinition,
    ) -> Result<(), dps_core::Error> {
        if self.refuse_definitions.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(dps_core::Error::invalid("No policy named 'p' is uploaded"));
        }
        Ok(())
    }

    async fn allocate(
        &self,
        _instance: &Instance,
        _definition: &CustomAllocationDefinition,
        request: &AllocationRequest,
    ) -> Result<AllocationResponse, AllocationFailure> {
        // Kept in the wire form a webhook receives.
        self.requests.lock().unwrap().push(serde_json::to_value(request).unwrap());
        self.answer.lock().unwrap().clone().expect("a scripted answer")
    }
}

impl Scripted {
    fn answer(&self, answer: Result<AllocationResponse, AllocationFailure>) {
        *self.answer.lock().unwrap() = Some(answer);
    }
    fn last_request(&self) -> Value {
        self.requests.lock().unwrap().last().cloned().expect("the allocator was called")
    }
}

fn hub_answer(hub: &str, payload: Option<Value>) -> Result<AllocationResponse, AllocationFailure> {
    Ok(AllocationResponse { iot_hub_host_name: hub.into(), initial_twin: None, payload })
}

async fn fixture(reprovision: Value) -> (Fixture, Arc<Scripted>, String) {
    let allocator = Arc::new(Scripted::default());
    let store: Arc<dyn dps_core::store::Store> = Arc::new(MemoryStore::new());
    let dps = Dps::new(store.clone(), Settings::default()).with_allocator(allocator.clone());
    let instance = add_instance(&dps, "dps-custom", "dps-custom.example.net", hubs(3)).await;
    let f = Fixture { dps, store, instance };
    f.enroll_group(group(
        "group-1",
        json!({
            "allocationPolicy": "custom",
            "customAllocationDefinition": { "webhookUrl": "https://alloc.example.net/api", "apiVersion": "2021-10-01" },
            "iotHubs": ["hub-1.example.net", "hub-2.example.net"],
            "reprovisionPolicy": reprovision
        }),
    ))
    .await;
    let (key, _) = f.group_keys("group-1").await;
    (f, allocator, key)
}

#[tokio::test]
async fn the_allocator_decides_and_its_payload_reaches_the_device() {
    let (f, allocator, key) = fixture(json!({})).await;
    allocator.answer(hub_answer("hub-2.example.net", Some(json!({ "firmware": "2.1" }))));
    let mut req = register_request(f.scope(), "dev-1", &dps_core::sas::derive_device_key(&key, "dev-1").unwrap());
    req.payload = Some(json!({ "model": "thermostat" }));
    let record = f.dps.register(req).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert_eq!(record.assigned_hub.as_deref(), Some("hub-2.example.net"));
    assert_eq!(record.payload, Some(json!({ "firmware": "2.1" })));

    let request = allocator.last_request();
    assert_eq!(request["deviceRuntimeContext"]["registrationId"], "dev-1");
    assert_eq!(request["deviceRuntimeContext"]["payload"], json!({ "model": "thermostat" }));
    assert_eq!(request["linkedHubs"], json!(["hub-1.example.net", "hub-2.example.net"]), "only the candidates");
    assert_eq!(request["enrollmentGroup"]["enrollmentGroupId"], "group-1");
    let text = request.to_string();
    assert!(!text.contains(&key), "the group key is never sent to the allocator");
    assert_eq!(request["enrollmentGroup"]["attestation"]["symmetricKey"], json!({}));
}

#[tokio::test]
async fn an_allocator_answer_outside_the_offer_fails_the_registration() {
    let (f, allocator, key) = fixture(json!({})).await;
    allocator.answer(hub_answer("hub-3.example.net", None));
    let record = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Failed);
    // One check, one code: a hub outside the offer is HUB_NOT_LINKED for every allocator (was 400207 here).
    assert_eq!(record.error_code, Some(codes::HUB_NOT_LINKED));
    assert_eq!(record.assigned_hub, None);

    allocator.answer(Err(AllocationFailure { code: 400_240, message: "no capacity".into() }));
    let record = f.register_in_group("dev-2", &key).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Failed);
    assert_eq!((record.error_code, record.error_message.as_deref()), (Some(400_240), Some("no capacity")));
}

#[tokio::test]
async fn a_sticky_device_is_offered_only_its_current_hub() {
    let (f, allocator, key) = fixture(json!({ "updateHubAssignment": false })).await;
    allocator.answer(hub_answer("hub-1.example.net", None));
    f.register_in_group("dev-1", &key).await.unwrap();
    allocator.answer(hub_answer("hub-1.example.net", None));
    let again = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(again.assigned_hub.as_deref(), Some("hub-1.example.net"));
    let request = allocator.last_request();
    assert_eq!(request["linkedHubs"], json!(["hub-1.example.net"]));
    assert_eq!(request["deviceRuntimeContext"]["currentIotHubHostName"], "hub-1.example.net");
}

#[tokio::test]
async fn a_deleted_policy_never_blocks_unrelated_changes() {
    let (f, allocator, _) = fixture(json!({})).await;
    let owner = f.owner().await;
    let mut config = f.dps.get_config(&owner).await.unwrap();
    config.allocation_policy = dps_core::model::AllocationPolicy::Custom;
    config.custom_allocation_definition = Some(CustomAllocationDefinition {
        webhook_url: Some("https://alloc.example.net/api".into()),
        api_version: Some("2021-10-01".into()),
        policy_name: None,
    });
    f.dps.put_config(&owner, config, None).await.unwrap();
    // The definitions now name something that is gone.
    allocator.refuse_definitions.store(true, std::sync::atomic::Ordering::SeqCst);

    // Disabling the group that names it still works...
    let mut g = f.dps.get_enrollment::<EnrollmentGroup>(&owner, "group-1").await.unwrap();
    g.spec.provisioning_status = dps_core::model::ProvisioningStatus::Disabled;
    let written = f.dps.put_enrollment(&owner, "group-1", g, None).await.unwrap();
    assert_eq!(written.spec.provisioning_status, dps_core::model::ProvisioningStatus::Disabled);
    // ...and so do key rotation and hub changes on the instance whose default names it.
    let policy = dps_core::model::AccessPolicy {
        key_name: "reader".into(),
        primary_key: String::new(),
        secondary_key: String::new(),
        rights: vec![dps_core::model::Right::EnrollmentRead],
    };
    f.dps.put_access_policy(&owner, policy).await.unwrap();
    f.dps.delete_access_policy(&owner, "reader").await.unwrap();
    f.dps.put_linked_hub(&owner, hub("hub-9.example.net", 1, true, None)).await.unwrap();

    // A change that names the missing definition anew is still refused.
    let mut g = f.dps.get_enrollment::<EnrollmentGroup>(&owner, "group-1").await.unwrap();
    g.spec.custom_allocation_definition.as_mut().unwrap().webhook_url = Some("https://other.example.net/api".into());
    let refused = f.dps.put_enrollment(&owner, "group-1", g, None).await;
    assert!(matches!(refused, Err(dps_core::Error::Invalid(_))), "{refused:?}");
}

#[tokio::test]
async fn the_initial_twin_follows_azure_rules() {
    let (f, allocator, key) = fixture(json!({ "updateHubAssignment": true, "migrateDeviceData": true })).await;
    let owner = f.owner().await;
    let mut g = f.dps.get_enrollment::<EnrollmentGroup>(&owner, "group-1").await.unwrap();
    g.spec.initial_twin = Some(json!({ "tags": { "from": "enrollment" } }));
    f.dps.put_enrollment(&owner, "group-1", g, None).await.unwrap();

    // First assignment: the allocator's twin wins over the enrollment's.
    let twin = json!({ "tags": { "from": "allocator" }, "properties": { "desired": { "rate": 5 } } });
    allocator.answer(Ok(AllocationResponse {
        iot_hub_host_name: "hub-1.example.net".into(),
        initial_twin: Some(twin.clone()),
        payload: None,
    }));
    assert_eq!(f.register_in_group("dev-1", &key).await.unwrap().initial_twin, Some(twin));
    // No twin from the allocator: the enrollment's.
    allocator.answer(hub_answer("hub-1.example.net", None));
    let other = f.register_in_group("dev-2", &key).await.unwrap();
    assert_eq!(other.initial_twin, Some(json!({ "tags": { "from": "enrollment" } })));
    // Re-registration that migrates the device's data (here, even to another hub): no initial twin.
    allocator.answer(Ok(AllocationResponse {
        iot_hub_host_name: "hub-2.example.net".into(),
        initial_twin: Some(json!({ "tags": { "ignored": true } })),
        payload: None,
    }));
    let moved = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(moved.assigned_hub.as_deref(), Some("hub-2.example.net"));
    assert_eq!(moved.initial_twin, None, "migrated data is kept, the initial twin is ignored");
}

#[tokio::test]
async fn a_reset_move_applies_the_initial_twin_again() {
    let (f, allocator, key) = fixture(json!({ "updateHubAssignment": true, "migrateDeviceData": false })).await;
    allocator.answer(hub_answer("hub-1.example.net", None));
    f.register_in_group("dev-1", &key).await.unwrap();
    let twin = json!({ "tags": { "reset": true } });
    allocator.answer(Ok(AllocationResponse {
        iot_hub_host_name: "hub-2.example.net".into(),
        initial_twin: Some(twin.clone()),
        payload: None,
    }));
    let moved = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(moved.substatus, Some(dps_core::model::Substatus::DeviceDataReset));
    assert_eq!(moved.initial_twin, Some(twin));
}
