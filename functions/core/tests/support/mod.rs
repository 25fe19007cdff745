//! Shared fixtures for the use-case tests: a service over the in-memory store, an instance with linked hubs,
//! and real SAS tokens for devices and service callers.
#![allow(dead_code)]

use std::sync::Arc;

use dps_core::memory::MemoryStore;
use dps_core::model::{Enrollment, EnrollmentGroup, IndividualEnrollment, Instance, LinkedHub, RegistrationRecord};
use dps_core::store::{EnrollmentStore, Store};
use dps_core::usecases::{DeviceCaller, RegisterRequest, StatusRequest};
use dps_core::{Caller, Dps, Result, Settings, sas};
use serde_json::{Value, json};

// Not every test binary uses every one.
#[allow(unused_imports)]
pub use dps_core::testing::{OWNER, device_token, in_an_hour as later, instance as add_instance, service_token};

/// A service, its store and one instance.
pub struct Fixture {
    pub dps: Dps,
    pub store: Arc<dyn Store>,
    pub instance: Instance,
}

/// A linked hub.
pub fn hub(host: &str, weight: u32, apply: bool, location: Option<&str>) -> LinkedHub {
    LinkedHub {
        host_name: host.into(),
        allocation_weight: weight,
        apply_allocation_policy: apply,
        location: location.map(Into::into),
        connector: None,
    }
}

/// Hubs `hub-1.example.net` .. `hub-n.example.net`, weight 1, all applying the policy.
pub fn hubs(n: usize) -> Vec<LinkedHub> {
    (1..=n).map(|i| hub(&format!("hub-{i}.example.net"), 1, true, None)).collect()
}

impl Fixture {
    /// A fresh store and service with one instance linked to `linked`.
    pub async fn new(linked: Vec<LinkedHub>) -> Self {
        Self::with_settings(linked, Settings::default()).await
    }

    /// As [`Fixture::new`], with deployment settings.
    pub async fn with_settings(linked: Vec<LinkedHub>, settings: Settings) -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let dps = Dps::new(store.clone(), settings);
        let instance = add_instance(&dps, "dps-one", "dps-one.example.net", linked).await;
        Self { dps, store, instance }
    }

    /// The instance's ID scope.
    pub fn scope(&self) -> &str {
        &self.instance.id_scope
    }

    /// The owner policy's primary key.
    pub fn owner_key(&self) -> String {
        dps_core::testing::owner_key(&self.instance)
    }

    /// A service caller authenticated with the owner policy.
    pub async fn owner(&self) -> Caller {
        dps_core::testing::owner(&self.dps, &self.instance).await
    }

    /// Replace the linked hubs as the operator.
    pub async fn link(&self, linked: Vec<LinkedHub>) {
        self.dps
            .update_instance_as_operator(self.scope(), move |i| {
                i.linked_hubs = linked;
                Ok(())
            })
            .await
            .expect("link hubs");
    }

    /// Create or replace an individual enrollment from its wire form.
    pub async fn enroll(&self, body: Value) -> IndividualEnrollment {
        self.put_and_read_back(body).await
    }

    /// Create or replace an enrollment group from its wire form.
    pub async fn enroll_group(&self, body: Value) -> EnrollmentGroup {
        self.put_and_read_back(body).await
    }

    /// Write an enrollment of either kind through the service API; returns it as stored (keys included: the
    /// service API's answer leaves them out).
    async fn put_and_read_back<E: Enrollment>(&self, body: Value) -> E {
        let e: E = serde_json::from_value(body).expect("enrollment JSON");
        let id = e.id().to_string();
        self.dps.put_enrollment(&self.owner().await, &id, e, None).await.expect("put enrollment");
        self.store.load::<E>(self.scope(), &id).await.unwrap().expect("stored")
    }

    /// The individual enrollment's (primary, secondary) keys, read through the attestation call.
    pub async fn keys(&self, registration_id: &str) -> (String, String) {
        let a = self
            .dps
            .enrollment_attestation::<IndividualEnrollment>(&self.owner().await, registration_id)
            .await
            .unwrap();
        let k = a.symmetric_key.unwrap();
        (k.primary_key.unwrap(), k.secondary_key.unwrap())
    }

    /// The group's (primary, secondary) keys.
    pub async fn group_keys(&self, group_id: &str) -> (String, String) {
        let a = self.dps.enrollment_attestation::<EnrollmentGroup>(&self.owner().await, group_id).await.unwrap();
        let k = a.symmetric_key.unwrap();
        (k.primary_key.unwrap(), k.secondary_key.unwrap())
    }

    /// Register `registration_id` signing with `key` (a device key, base64).
    pub async fn register(&self, registration_id: &str, key: &str) -> Result<RegistrationRecord> {
        self.dps.register(register_request(self.scope(), registration_id, key)).await
    }

    /// Register a group device with its derived key.
    pub async fn register_in_group(&self, registration_id: &str, group_key: &str) -> Result<RegistrationRecord> {
        self.register(registration_id, &sas::derive_device_key(group_key, registration_id).unwrap()).await
    }

    /// A status request signed with `key`.
    pub fn status(&self, registration_id: &str, key: &str, operation_id: Option<&str>) -> StatusRequest {
        StatusRequest {
            caller: DeviceCaller::sas(
                self.scope(),
                registration_id,
                device_token(self.scope(), registration_id, key, later()),
            ),
            operation_id: operation_id.map(str::to_string),
        }
    }
}

/// A register request as the device API builds it.
pub fn register_request(scope: &str, registration_id: &str, key: &str) -> RegisterRequest {
    RegisterRequest {
        caller: DeviceCaller::sas(scope, registration_id, device_token(scope, registration_id, key, later())),
        payload: None,
        api_version: "2021-06-01".into(),
        ..Default::default()
    }
}

/// A symmetric-key individual enrollment body with generated keys, plus `extra` fields.
pub fn individual(id: &str, extra: Value) -> Value {
    merge(json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } }), extra)
}

/// A symmetric-key group body with generated keys, plus `extra` fields.
pub fn group(id: &str, extra: Value) -> Value {
    merge(json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } }), extra)
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let Value::Object(fields) = extra {
        for (k, v) in fields {
            base[k] = v;
        }
    }
    base
}

/// A fresh base64 key.
pub fn random_key() -> String {
    sas::generate_key()
}

/// An event sink that keeps every event it is given, as the JSON a sink would deliver.
#[derive(Clone, Default)]
pub struct Recorded(Arc<std::sync::Mutex<Vec<Value>>>);

impl Recorded {
    /// The events since the last call, oldest first.
    pub fn take(&self) -> Vec<Value> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
    /// The `type` of each event since the last call.
    pub fn take_types(&self) -> Vec<String> {
        self.take().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
    }
}

#[async_trait::async_trait]
impl dps_core::events::EventSink for Recorded {
    async fn publish(&self, events: &[dps_core::events::Event]) -> Result<()> {
        let mut kept = self.0.lock().unwrap();
        kept.extend(events.iter().map(|e| serde_json::to_value(e).unwrap()));
        Ok(())
    }
}

impl Fixture {
    /// The same fixture, with its service telling `Recorded` about every change.
    pub fn recording(mut self) -> (Self, Recorded) {
        let sink = Recorded::default();
        self.dps = self.dps.clone().with_events(Arc::new(sink.clone()));
        (self, sink)
    }
}
