//! The provisioning use case end to end over the embedded store: concurrent registrations of one device through
//! `Dps::register` leave one record, counted once as a registration and once per later write as a
//! re-registration, and the record survives a restart.

use std::sync::Arc;

use dps_core::model::{EnrollmentGroup, OperationKind, RegistrationStatus};
use dps_core::store::Store;
use dps_core::testing;
use dps_core::usecases::{DeviceCaller, RegisterRequest, today};
use dps_core::{Dps, Error, Settings, sas};
use dps_store_embedded::EmbeddedStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_over_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let dps = Dps::new(store.clone(), Settings::default());
    let instance = testing::instance(&dps, "one", "one.example.net", vec![testing::hub("hub-1.example.net")]).await;
    let scope = instance.id_scope.clone();
    let caller = testing::owner(&dps, &instance).await;
    let group: EnrollmentGroup = serde_json::from_value(serde_json::json!({
        "enrollmentGroupId": "group-1", "attestation": { "type": "symmetricKey" }
    }))
    .unwrap();
    dps.put_enrollment(&caller, "group-1", group, None).await.unwrap();
    let group_key = dps
        .enrollment_attestation::<EnrollmentGroup>(&caller, "group-1")
        .await
        .unwrap()
        .symmetric_key
        .unwrap()
        .primary_key
        .unwrap();
    let device_key = sas::derive_device_key(&group_key, "busy-device").unwrap();
    let authorization = testing::device_token(&scope, "busy-device", &device_key, testing::in_an_hour());

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let dps = dps.clone();
        let req = RegisterRequest {
            caller: DeviceCaller::sas(&scope, "busy-device", authorization.clone()),
            payload: None,
            api_version: "2021-06-01".into(),
            tpm: None,
            csr: None,
        };
        tasks.push(tokio::spawn(async move { dps.register(req).await }));
    }
    let mut written = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(record) => written.push(record),
            Err(e) => assert!(matches!(e, Error::Throttled { .. }), "only contention may fail, as a 429: {e:?}"),
        }
    }
    assert!(!written.is_empty());
    let stored = store.get_registration(&scope, "busy-device").await.unwrap().unwrap();
    assert_eq!(stored.status, RegistrationStatus::Assigned);
    assert!(written.contains(&stored), "the stored record is the answer one caller got");
    let day = today();
    let count = |kind| {
        let store = store.clone();
        let (scope, day) = (scope.clone(), day.clone());
        async move {
            let counts = store.operations(&scope, &day, &day).await.unwrap();
            counts.into_iter().filter(|c| c.kind == kind).map(|c| c.count).sum::<u64>()
        }
    };
    assert_eq!(count(OperationKind::Registration).await, 1);
    assert_eq!(count(OperationKind::ReRegistration).await, written.len() as u64 - 1);

    drop((dps, store));
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(reopened.get_registration(&scope, "BUSY-DEVICE").await.unwrap(), Some(stored));
}
