//! Service API use cases: authentication and rights, enrollments, groups, bulk, registration records, config.

mod support;

use dps_core::model::{
    AccessPolicy, AllocationPolicy, EnrollmentGroup, IndividualEnrollment, OperationKind, RegistrationStatus, Right,
};
use dps_core::store::{EnrollmentStore, PageRequest};
use dps_core::usecases::{BulkMode, InstanceConfig, today};
use dps_core::{Error, Settings, sas};
use serde_json::json;
use support::*;

fn enrollment(id: &str, extra: serde_json::Value) -> IndividualEnrollment {
    serde_json::from_value(individual(id, extra)).unwrap()
}

fn enrollment_group(id: &str, extra: serde_json::Value) -> EnrollmentGroup {
    serde_json::from_value(group(id, extra)).unwrap()
}

fn page(max_items: usize, continuation: Option<String>) -> PageRequest {
    PageRequest { max_items, continuation }
}

#[tokio::test]
async fn service_tokens_must_be_signed_by_a_policy_of_the_instance_for_its_host() {
    let f = Fixture::new(hubs(1)).await;
    let host = f.instance.service_host_name.clone();
    let owner = f.instance.authorization_policies[0].clone();
    let auth = |host: String, token: Option<String>| {
        let dps = f.dps.clone();
        async move { dps.authenticate_service(&host, "/", token.as_deref()).await }
    };

    let caller = auth(host.clone(), Some(service_token(&host, &owner.primary_key, OWNER))).await.unwrap();
    assert_eq!(caller.instance.id_scope, f.instance.id_scope);
    assert_eq!(caller.rights, Right::ALL.to_vec());
    auth(format!("{}:8443", host.to_uppercase()), Some(service_token(&host, &owner.secondary_key, OWNER)))
        .await
        .expect("secondary key, host with a port and another case");

    let refused = [
        ("expired", sas::token(&host, &owner.primary_key, dps_core::usecases::now().unix_timestamp() - 5, Some(OWNER))),
        ("forged", sas::token(&host, &random_key(), later(), Some(OWNER))),
        ("another host", sas::token("dps-two.example.net", &owner.primary_key, later(), Some(OWNER))),
        ("a longer host", sas::token(&format!("{host}.evil.net"), &owner.primary_key, later(), Some(OWNER))),
        ("unknown policy", sas::token(&host, &owner.primary_key, later(), Some("nobody"))),
        ("no policy name", sas::token(&host, &owner.primary_key, later(), None)),
    ];
    for (what, token) in refused {
        let result = auth(host.clone(), Some(token.unwrap())).await;
        assert!(matches!(result, Err(Error::Unauthorized(_))), "{what}: {result:?}");
    }
    assert!(matches!(auth(host.clone(), None).await, Err(Error::Unauthorized(_))), "no token");
    let unknown = auth("other.example.net".into(), Some(service_token(&host, &owner.primary_key, OWNER))).await;
    // An unknown host is refused as a bad token is: outsiders cannot enumerate service host names.
    assert!(matches!(unknown, Err(Error::Unauthorized(_))), "{unknown:?}");
}

#[tokio::test]
async fn rights_are_enforced_per_policy() {
    let f = Fixture::new(hubs(1)).await;
    let owner = f.owner().await;
    f.enroll(individual("dev-1", json!({}))).await;
    let reader = AccessPolicy {
        key_name: "reader".into(),
        primary_key: String::new(),
        secondary_key: String::new(),
        rights: vec![Right::EnrollmentRead],
    };
    let reader = f.dps.put_access_policy(&owner, reader).await.unwrap();
    assert!(sas::validate_key(&reader.primary_key).is_ok(), "missing keys are generated");
    let host = f.instance.service_host_name.clone();
    let token = service_token(&host, &reader.secondary_key, "reader");
    let caller = f.dps.authenticate_service(&host, "/", Some(&token)).await.unwrap();

    f.dps.get_enrollment::<IndividualEnrollment>(&caller, "dev-1").await.expect("EnrollmentRead allows reads");
    f.dps.query_enrollments::<IndividualEnrollment>(&caller, "*", page(10, None)).await.expect("and queries");
    let denied = |r: Result<(), Error>, what: &str| assert!(matches!(r, Err(Error::Unauthorized(_))), "{what}: {r:?}");
    denied(f.dps.put_enrollment(&caller, "dev-2", enrollment("dev-2", json!({})), None).await.map(drop), "put");
    denied(f.dps.delete_enrollment::<IndividualEnrollment>(&caller, "dev-1", None).await, "delete");
    denied(f.dps.put_enrollment(&caller, "g", enrollment_group("g", json!({})), None).await.map(drop), "put group");
    let bulk = f.dps.bulk_enrollments(&caller, BulkMode::Create, vec![enrollment("dev-3", json!({}))]).await;
    denied(bulk.map(drop), "bulk");
    denied(f.dps.get_config(&caller).await.map(drop), "config");
    denied(f.dps.get_registration(&caller, "dev-1").await.map(drop), "registration records");
    denied(f.dps.delete_registration(&caller, "dev-1", None).await, "registration delete");
    denied(f.dps.operations(&caller, &today(), &today()).await.map(drop), "operations");
    assert!(f.store.load::<IndividualEnrollment>(f.scope(), "dev-2").await.unwrap().is_none(), "nothing was written");
    assert!(f.store.load::<IndividualEnrollment>(f.scope(), "dev-1").await.unwrap().is_some(), "nothing was deleted");

    f.dps.delete_access_policy(&owner, "reader").await.unwrap();
    let revoked =
        f.dps.authenticate_service(&host, "/", Some(&service_token(&host, &reader.primary_key, "reader"))).await;
    assert!(matches!(revoked, Err(Error::Unauthorized(_))), "a deleted policy's tokens stop working: {revoked:?}");
    let last = f.dps.delete_access_policy(&owner, OWNER).await;
    assert!(matches!(last, Err(Error::Conflict(_))), "the last ServiceConfig policy stays: {last:?}");
}

#[tokio::test]
async fn enrollment_lifecycle_keeps_keys_and_honours_etags() {
    let f = Fixture::new(hubs(1)).await;
    let owner = f.owner().await;
    let (primary, secondary) = (random_key(), random_key());
    let body = json!({
        "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": primary, "secondaryKey": secondary } },
        "initialTwin": { "tags": { "floor": 3 } }
    });
    let created = f.dps.put_enrollment(&owner, "Dev-1", enrollment("Dev-1", body), None).await.unwrap();
    let etag1 = created.spec.etag.clone().expect("etag");
    let created_at = created.spec.created_date_time_utc.expect("creation time set");

    let read = f.dps.get_enrollment::<IndividualEnrollment>(&owner, "dev-1").await.unwrap();
    assert_eq!(read.registration_id, "Dev-1");
    assert_eq!(read.spec.initial_twin, Some(json!({ "tags": { "floor": 3 } })));
    let keys = read.spec.attestation.symmetric_key.clone().unwrap();
    assert_eq!((keys.primary_key, keys.secondary_key), (None, None), "reads never return keys");
    assert_eq!(f.keys("dev-1").await, (primary.clone(), secondary.clone()), "the attestation call does");

    // Write back what was read, with a change: keys are kept, creation time too.
    let mut change = read.clone();
    change.spec.initial_twin = Some(json!({ "tags": { "floor": 4 } }));
    let updated = f.dps.put_enrollment(&owner, "dev-1", change.clone(), Some(&etag1)).await.unwrap();
    assert_ne!(updated.spec.etag.as_deref(), Some(etag1.as_str()));
    assert_eq!(updated.spec.created_date_time_utc, Some(created_at));
    assert_eq!(f.keys("dev-1").await, (primary.clone(), secondary));
    assert_eq!(f.register("Dev-1", &primary).await.unwrap().status, RegistrationStatus::Assigned);

    let stale = f.dps.put_enrollment(&owner, "dev-1", change, Some(&etag1)).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed(_))), "{stale:?}");
    let mismatch = f.dps.put_enrollment(&owner, "dev-9", enrollment("dev-1", json!({})), None).await;
    assert!(matches!(mismatch, Err(Error::Invalid(_))), "body and path IDs differ: {mismatch:?}");
    let bad_key = json!({ "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": "short" } } });
    let bad_key = f.dps.put_enrollment(&owner, "dev-2", enrollment("dev-2", bad_key), None).await;
    assert!(matches!(bad_key, Err(Error::Invalid(_))), "{bad_key:?}");

    let stale_delete = f.dps.delete_enrollment::<IndividualEnrollment>(&owner, "dev-1", Some(&etag1)).await;
    assert!(matches!(stale_delete, Err(Error::PreconditionFailed(_))), "{stale_delete:?}");
    f.dps.delete_enrollment::<IndividualEnrollment>(&owner, "DEV-1", updated.spec.etag.as_deref()).await.unwrap();
    assert!(matches!(f.dps.get_enrollment::<IndividualEnrollment>(&owner, "dev-1").await, Err(Error::NotFound(_))));
    assert!(matches!(
        f.dps.delete_enrollment::<IndividualEnrollment>(&owner, "dev-1", None).await,
        Err(Error::NotFound(_))
    ));
    let gone = f.register("dev-1", &primary).await;
    assert!(matches!(gone, Err(Error::Unauthorized(_))), "a deleted enrollment admits nobody: {gone:?}");
}

#[tokio::test]
async fn group_update_without_keys_keeps_device_keys_working() {
    let f = Fixture::new(hubs(2)).await;
    let owner = f.owner().await;
    f.enroll_group(group("group-1", json!({}))).await;
    let (key, _) = f.group_keys("group-1").await;
    f.register_in_group("dev-1", &key).await.unwrap();

    let mut read = f.dps.get_enrollment::<EnrollmentGroup>(&owner, "group-1").await.unwrap();
    assert_eq!(read.spec.attestation.symmetric_key.as_ref().unwrap().primary_key, None, "reads never return keys");
    read.spec.iot_hubs = Some(vec!["hub-2.example.net".into()]);
    let etag = read.spec.etag.clone();
    f.dps.put_enrollment(&owner, "group-1", read, etag.as_deref()).await.unwrap();
    assert_eq!(f.group_keys("group-1").await.0, key);
    let device = f.register_in_group("dev-2", &key).await.unwrap();
    assert_eq!(device.assigned_hub.as_deref(), Some("hub-2.example.net"), "the update is seen at once");

    f.dps.delete_enrollment::<EnrollmentGroup>(&owner, "group-1", None).await.unwrap();
    let gone = f.register_in_group("dev-3", &key).await;
    assert!(matches!(gone, Err(Error::Unauthorized(_))), "a deleted group admits nobody: {gone:?}");
    let tpm = json!({ "attestation": { "type": "tpm", "tpm": { "endorsementKey": "AAAA" } } });
    let tpm = f.dps.put_enrollment(&owner, "group-2", enrollment_group("group-2", tpm), None).await;
    assert!(matches!(tpm, Err(Error::Invalid(_))), "TPM groups do not exist: {tpm:?}");
}

#[tokio::test]
async fn queries_page_through_everything_without_keys() {
    let f = Fixture::new(hubs(1)).await;
    let owner = f.owner().await;
    for id in ["e-3", "E-1", "e-5", "e-2", "e-4"] {
        f.enroll(individual(id, json!({}))).await;
    }
    let mut seen = Vec::new();
    let mut continuation = None;
    loop {
        let got = f
            .dps
            .query_enrollments::<IndividualEnrollment>(&owner, "SELECT * FROM enrollments", page(2, continuation))
            .await
            .unwrap();
        assert!(got.items.len() <= 2);
        for e in got.items {
            assert_eq!(e.spec.attestation.symmetric_key.unwrap().primary_key, None, "no keys in queries");
            seen.push(e.registration_id);
        }
        match got.continuation {
            Some(c) => continuation = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["E-1", "e-2", "e-3", "e-4", "e-5"]);
    let everything = f.dps.query_enrollments::<IndividualEnrollment>(&owner, "*", page(0, None)).await.unwrap();
    assert_eq!(everything.items.len(), 5, "page size 0 means the default");
    let unsupported = f
        .dps
        .query_enrollments::<IndividualEnrollment>(&owner, "SELECT * FROM enrollments WHERE x = 1", page(5, None))
        .await;
    assert!(matches!(unsupported, Err(Error::Invalid(_))), "{unsupported:?}");
    let groups = f.dps.query_enrollments::<EnrollmentGroup>(&owner, "*", page(5, None)).await.unwrap();
    assert!(groups.items.is_empty() && groups.continuation.is_none());
}

#[tokio::test]
async fn bulk_operations_commit_good_items_and_report_bad_ones() {
    let f = Fixture::new(hubs(1)).await;
    let owner = f.owner().await;
    let existing = f.enroll(individual("dev-2", json!({}))).await;

    let items = vec![enrollment("dev-1", json!({})), enrollment("dev-2", json!({})), enrollment("dev-3", json!({}))];
    let outcome = f.dps.bulk_enrollments(&owner, BulkMode::Create, items).await.unwrap();
    assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
    assert_eq!(outcome.errors[0].id, "dev-2");
    assert!(matches!(outcome.errors[0].error, Error::Conflict(_)), "{outcome:?}");
    for id in ["dev-1", "dev-3"] {
        assert!(f.store.load::<IndividualEnrollment>(f.scope(), id).await.unwrap().is_some(), "{id} created");
    }
    assert_eq!(
        f.store.load::<IndividualEnrollment>(f.scope(), "dev-2").await.unwrap(),
        Some(existing.clone()),
        "untouched"
    );

    let mut stale = enrollment("dev-2", json!({ "deviceId": "renamed" }));
    stale.spec.etag = Some("\"stale\"".into());
    let mut fresh = enrollment("dev-1", json!({ "deviceId": "renamed" }));
    fresh.spec.etag = f.store.load::<IndividualEnrollment>(f.scope(), "dev-1").await.unwrap().unwrap().spec.etag;
    let outcome = f.dps.bulk_enrollments(&owner, BulkMode::UpdateIfMatchEtag, vec![stale, fresh]).await.unwrap();
    assert_eq!(outcome.errors.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["dev-2"]);
    assert!(matches!(outcome.errors[0].error, Error::PreconditionFailed(_)));
    let renamed = f.store.load::<IndividualEnrollment>(f.scope(), "dev-1").await.unwrap().unwrap();
    assert_eq!(renamed.device_id.as_deref(), Some("renamed"));

    let upserts = vec![enrollment("dev-4", json!({})), enrollment("dev-2", json!({ "deviceId": "two" }))];
    assert!(f.dps.bulk_enrollments(&owner, BulkMode::Update, upserts).await.unwrap().errors.is_empty());
    assert_eq!(
        f.store.load::<IndividualEnrollment>(f.scope(), "dev-2").await.unwrap().unwrap().device_id.as_deref(),
        Some("two")
    );

    let deletes = vec![enrollment("dev-1", json!({})), enrollment("nobody", json!({}))];
    let outcome = f.dps.bulk_enrollments(&owner, BulkMode::Delete, deletes).await.unwrap();
    assert_eq!(outcome.errors.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["nobody"]);
    assert!(f.store.load::<IndividualEnrollment>(f.scope(), "dev-1").await.unwrap().is_none());

    let too_many: Vec<_> = (0..11).map(|i| enrollment(&format!("x{i}"), json!({}))).collect();
    let refused = f.dps.bulk_enrollments(&owner, BulkMode::Create, too_many).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    let twice = vec![enrollment("y", json!({})), enrollment("Y", json!({}))];
    assert!(matches!(f.dps.bulk_enrollments(&owner, BulkMode::Create, twice).await, Err(Error::Invalid(_))));
    assert!(
        f.store.load::<IndividualEnrollment>(f.scope(), "x0").await.unwrap().is_none(),
        "a refused batch writes nothing"
    );

    let groups = vec![enrollment_group("g1", json!({})), enrollment_group("g2", json!({}))];
    assert!(f.dps.bulk_enrollments(&owner, BulkMode::Create, groups).await.unwrap().errors.is_empty());
    let (key, _) = f.group_keys("g2").await;
    f.register_in_group("dev-g", &key).await.expect("a bulk-created group admits devices at once");
}

#[tokio::test]
async fn registration_records_are_read_queried_and_deleted_through_the_service() {
    let f = Fixture::new(hubs(1)).await;
    let owner = f.owner().await;
    f.enroll_group(group("group-1", json!({}))).await;
    f.enroll_group(group("group-2", json!({}))).await;
    let (k1, _) = f.group_keys("group-1").await;
    let (k2, _) = f.group_keys("group-2").await;
    for i in 0..5 {
        f.register_in_group(&format!("a-{i}"), &k1).await.unwrap();
    }
    f.register_in_group("b-0", &k2).await.unwrap();

    let mut ids = Vec::new();
    let mut continuation = None;
    loop {
        let got = f.dps.query_registrations(&owner, "GROUP-1", page(2, continuation)).await.unwrap();
        ids.extend(got.items.into_iter().map(|r| r.registration_id));
        match got.continuation {
            Some(c) => continuation = Some(c),
            None => break,
        }
    }
    assert_eq!(ids, ["a-0", "a-1", "a-2", "a-3", "a-4"]);

    let record = f.dps.get_registration(&owner, "A-3").await.unwrap();
    assert_eq!(record.enrollment_group_id.as_deref(), Some("group-1"));
    let stale = f.dps.delete_registration(&owner, "a-3", Some("\"stale\"")).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed(_))), "{stale:?}");
    f.dps.delete_registration(&owner, "a-3", record.etag.as_deref()).await.unwrap();
    assert!(matches!(f.dps.get_registration(&owner, "a-3").await, Err(Error::NotFound(_))));
    assert!(matches!(f.dps.delete_registration(&owner, "a-3", None).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn service_operations_are_counted_once_per_call() {
    let f = Fixture::new(hubs(1)).await;
    let owner = f.owner().await;
    f.dps.put_enrollment(&owner, "dev-1", enrollment("dev-1", json!({})), None).await.unwrap();
    f.dps.get_enrollment::<IndividualEnrollment>(&owner, "dev-1").await.unwrap();
    f.dps.query_enrollments::<IndividualEnrollment>(&owner, "*", page(10, None)).await.unwrap();
    let day = today();
    let counts = f.dps.operations(&owner, &day, &day).await.unwrap();
    let service: u64 = counts.iter().filter(|c| c.kind == OperationKind::ServiceOperation).map(|c| c.count).sum();
    assert_eq!(service, 3);
    let backwards = f.dps.operations(&owner, "2024-05-02", "2024-05-01").await;
    assert!(matches!(backwards, Err(Error::Invalid(_))), "{backwards:?}");
}

#[tokio::test]
async fn configuration_changes_are_validated_and_conditional() {
    let f = Fixture::new(hubs(1)).await;
    let owner = f.owner().await;
    let config = f.dps.get_config(&owner).await.unwrap();
    assert_eq!(config.id_scope, f.instance.id_scope);
    assert_eq!(config.linked_hubs, hubs(1));

    let wanted = InstanceConfig { allocation_policy: AllocationPolicy::Static, linked_hubs: hubs(3), ..config.clone() };
    let written = f.dps.put_config(&owner, wanted.clone(), config.etag.as_deref()).await.unwrap();
    assert_eq!(written.linked_hubs, hubs(3));
    assert_eq!(written.allocation_policy, AllocationPolicy::Static);
    assert_ne!(written.etag, config.etag);
    let stale = f.dps.put_config(&owner, wanted.clone(), config.etag.as_deref()).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed(_))), "{stale:?}");

    let custom = InstanceConfig { allocation_policy: AllocationPolicy::Custom, ..wanted.clone() };
    let custom = f.dps.put_config(&owner, custom, None).await;
    assert!(matches!(custom, Err(Error::Invalid(_))), "custom needs a definition and an allocator: {custom:?}");
    let heavy = hub("heavy.example.net", 1001, true, None);
    assert!(matches!(f.dps.put_linked_hub(&owner, heavy).await, Err(Error::Invalid(_))), "weight above 1000");
    let twice = InstanceConfig { linked_hubs: vec![hub("a.example.net", 1, true, None); 2], ..wanted };
    assert!(matches!(f.dps.put_config(&owner, twice, None).await, Err(Error::Invalid(_))), "a hub twice");

    f.dps.put_linked_hub(&owner, hub("hub-9.example.net", 5, false, Some("eu-west-1"))).await.unwrap();
    f.dps.delete_linked_hub(&owner, "HUB-1.example.net").await.unwrap();
    let missing = f.dps.delete_linked_hub(&owner, "hub-1.example.net").await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    let hosts: Vec<String> =
        f.dps.get_config(&owner).await.unwrap().linked_hubs.into_iter().map(|h| h.host_name).collect();
    assert_eq!(hosts, ["hub-2.example.net", "hub-3.example.net", "hub-9.example.net"]);

    let policies = f.dps.list_access_policies(&owner).await.unwrap();
    assert_eq!(policies.len(), 1);
    assert!(policies[0].primary_key.is_empty() && policies[0].secondary_key.is_empty(), "listing shows no keys");
}

#[tokio::test]
async fn duplicate_hubs_in_an_enrollment_are_refused() {
    let f = Fixture::new(hubs(2)).await;
    let owner = f.owner().await;
    let hub = f.instance.linked_hubs[0].host_name.clone();
    let e: IndividualEnrollment =
        serde_json::from_value(individual("dev-1", json!({ "iotHubs": vec![hub.clone(); 1000] }))).unwrap();
    let refused = f.dps.put_enrollment(&owner, "dev-1", e, None).await;
    assert!(matches!(refused, Err(Error::Invalid(ref m)) if m.contains("more than once")), "{refused:?}");
    let upper: IndividualEnrollment =
        serde_json::from_value(individual("dev-1", json!({ "iotHubs": [hub.clone(), hub.to_uppercase()] }))).unwrap();
    assert!(f.dps.put_enrollment(&owner, "dev-1", upper, None).await.is_err(), "case-insensitively");
    assert!(f.store.load::<IndividualEnrollment>(f.scope(), "dev-1").await.unwrap().is_none(), "nothing stored");
}

#[tokio::test]
async fn an_instance_takes_at_most_max_groups_enrollment_groups() {
    let settings = Settings { max_groups: 2, ..Settings::default() };
    let f = Fixture::with_settings(hubs(1), settings).await;
    f.enroll_group(group("g-1", json!({}))).await;
    f.enroll_group(group("g-2", json!({}))).await;
    let third: EnrollmentGroup = serde_json::from_value(group("g-3", json!({}))).unwrap();
    let refused = f.dps.put_enrollment(&f.owner().await, "g-3", third, None).await;
    assert!(matches!(refused, Err(Error::Invalid(ref m)) if m.contains("most enrollment groups")), "{refused:?}");
    assert!(f.store.load::<EnrollmentGroup>(f.scope(), "g-3").await.unwrap().is_none(), "nothing stored");
    // Existing groups can still be changed, and a deleted one makes room.
    let disabled: EnrollmentGroup =
        serde_json::from_value(group("g-2", json!({ "provisioningStatus": "disabled" }))).unwrap();
    f.dps.put_enrollment(&f.owner().await, "g-2", disabled, None).await.expect("an update is not a new group");
    f.dps.delete_enrollment::<EnrollmentGroup>(&f.owner().await, "g-1", None).await.unwrap();
    let third: EnrollmentGroup = serde_json::from_value(group("g-3", json!({}))).unwrap();
    f.dps.put_enrollment(&f.owner().await, "g-3", third, None).await.expect("room after a delete");
}
