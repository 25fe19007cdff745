//! A `Dps` over an instrumented `DynamoStore`, with one instance, a linked hub, and helpers to enroll and
//! register devices with real SAS tokens.

use std::sync::Arc;
use std::time::Duration;

use dps_core::model::{Enrollment, EnrollmentGroup, IndividualEnrollment, OperationKind, RegistrationRecord};
use dps_core::store::Store;
use dps_core::testing;
use dps_core::usecases::{DeviceCaller, RegisterRequest, StatusRequest};
use dps_core::{Caller, Dps, Result, Settings, sas};
use dps_store_dynamodb::DynamoStore;
use serde_json::json;

use super::{CallLog, FaultPlan, instrumented_store};

/// The service over an instrumented store.
pub struct DpsEnv {
    pub dps: Dps,
    pub store: Arc<DynamoStore>,
    pub log: CallLog,
    pub faults: FaultPlan,
    pub scope: String,
    pub caller: Caller,
}

impl DpsEnv {
    /// A fresh table, an instance with one linked hub, and an authenticated service caller.
    pub async fn new() -> Self {
        let (store, log, faults) = instrumented_store().await;
        let store = Arc::new(store);
        // A long cache TTL: the round-trip budget is about warm functions.
        let settings = Settings { serving_region: None, cache_ttl: Duration::from_secs(600), ..Settings::default() };
        let dps = Dps::new(store.clone(), settings);
        let suffix = uuid_suffix();
        let host = format!("dps-{suffix}.example.net");
        let hubs = vec![testing::hub("hub-1.example.net")];
        let instance = testing::instance(&dps, &format!("dps-{suffix}"), &host, hubs).await;
        let caller = testing::owner(&dps, &instance).await;
        log.reset();
        Self { dps, store, log, faults, scope: instance.id_scope, caller }
    }

    /// Enroll a device with its own symmetric key; returns the key.
    pub async fn enroll(&self, registration_id: &str) -> String {
        self.enroll_symmetric::<IndividualEnrollment>(registration_id).await
    }

    /// Create a symmetric-key group; returns the group key.
    pub async fn enroll_group(&self, group_id: &str) -> String {
        self.enroll_symmetric::<EnrollmentGroup>(group_id).await
    }

    async fn enroll_symmetric<E: Enrollment>(&self, id: &str) -> String {
        let key = sas::generate_key();
        let enrollment: E = serde_json::from_value(json!({
            (E::KIND.id_field()): id,
            "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": key, "secondaryKey": sas::generate_key() } },
        }))
        .unwrap();
        self.dps.put_enrollment(&self.caller, id, enrollment, None).await.expect("enroll");
        key
    }

    fn token(&self, registration_id: &str, key: &str) -> String {
        testing::device_token(&self.scope, registration_id, key, testing::in_an_hour())
    }

    /// A device's register call.
    pub async fn register(&self, registration_id: &str, key: &str) -> Result<RegistrationRecord> {
        self.dps
            .register(RegisterRequest {
                caller: DeviceCaller::sas(&self.scope, registration_id, self.token(registration_id, key)),
                payload: None,
                api_version: "2021-06-01".into(),
                tpm: None,
                csr: None,
            })
            .await
    }

    /// A group device's register call (key derived from the group key).
    pub async fn register_in_group(&self, registration_id: &str, group_key: &str) -> Result<RegistrationRecord> {
        self.register(registration_id, &sas::derive_device_key(group_key, registration_id).unwrap()).await
    }

    /// A device's status poll (operation status when `operation_id` is given).
    pub async fn status(
        &self,
        registration_id: &str,
        key: &str,
        operation_id: Option<&str>,
    ) -> Result<RegistrationRecord> {
        let request = StatusRequest {
            caller: DeviceCaller::sas(&self.scope, registration_id, self.token(registration_id, key)),
            operation_id: operation_id.map(str::to_string),
        };
        match operation_id {
            Some(_) => self.dps.operation_status(request).await,
            None => self.dps.registration_status(request).await,
        }
    }

    /// Registrations and re-registrations counted today.
    pub async fn counted(&self) -> (u64, u64) {
        let today = dps_core::usecases::today();
        let counts = self.store.operations(&self.scope, &today, &today).await.expect("operations");
        let sum = |kind| counts.iter().filter(|c| c.kind == kind).map(|c| c.count).sum();
        (sum(OperationKind::Registration), sum(OperationKind::ReRegistration))
    }
}

fn uuid_suffix() -> String {
    format!("{:012x}", rand_u64() & 0xffff_ffff_ffff)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish()
}
