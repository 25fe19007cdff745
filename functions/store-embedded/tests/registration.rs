//! The provisioning use case end to end over the embedded store: concurrent registrations of one device through
//! `Dps::register` leave one record, counted once as a registration and once per later write as a
//! re-registration, and the record survives a restart.

use std::sync::Arc;

use dps_core::model::{EnrollmentGroup, LinkedHub, OperationKind, RegistrationStatus};
use dps_core::service::{NewInstance, RegisterRequest, now, today};
use dps_core::store::Store;
use dps_core::{Dps, Error, Settings, sas};
use dps_store_embedded::EmbeddedStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_over_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let dps = Dps::new(store.clone(), Settings::default());
    let instance = dps
        .create_instance(NewInstance {
            name: "one".into(),
            service_host_name: "one.example.net".into(),
            id_scope: None,
        })
        .await
        .unwrap();
    let scope = instance.id_scope.clone();
    dps.update_instance_as_operator(&scope, |i| {
        i.linked_hubs = vec![LinkedHub {
            host_name: "hub-1.example.net".into(),
            allocation_weight: 1,
            apply_allocation_policy: true,
            location: None,
            connector: None,
        }];
        Ok(())
    })
    .await
    .unwrap();
    let owner = &instance.authorization_policies[0];
    let token = sas::token("one.example.net", &owner.primary_key, now().unix_timestamp() + 600, Some(&owner.key_name));
    let caller = dps.authenticate_service("one.example.net", "/", Some(&token.unwrap())).await.unwrap();
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
    let resource = format!("{scope}/registrations/busy-device");
    let authorization = sas::token(&resource, &device_key, now().unix_timestamp() + 600, Some("registration")).unwrap();

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let dps = dps.clone();
        let req = RegisterRequest {
            id_scope: scope.clone(),
            registration_id: "busy-device".into(),
            body_registration_id: None,
            payload: None,
            authorization: Some(authorization.clone()),
            api_version: "2021-06-01".into(),
            client_address: None,
            client_certificates: Vec::new(),
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
