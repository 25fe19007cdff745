//! Device API use cases through `Dps::register`, `registration_status` and `operation_status`, with real SAS
//! tokens over the in-memory store.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use dps_core::model::{EnrollmentGroup, IndividualEnrollment, OperationKind, RegistrationStatus, Substatus};
use dps_core::store::EnrollmentStore;
use dps_core::usecases::today;
use dps_core::{Error, Settings, sas};
use serde_json::json;
use support::*;

#[tokio::test]
async fn individual_enrollment_registers_with_primary_and_secondary_keys() {
    let f = Fixture::new(hubs(1)).await;
    f.enroll(individual("dev-1", json!({ "deviceId": "my-device" }))).await;
    let (primary, secondary) = f.keys("dev-1").await;

    let first = f.register("dev-1", &primary).await.expect("primary key");
    assert_eq!(first.status, RegistrationStatus::Assigned);
    assert_eq!(first.assigned_hub.as_deref(), Some("hub-1.example.net"));
    assert_eq!(first.device_id.as_deref(), Some("my-device"));
    assert_eq!(first.substatus, Some(Substatus::InitialAssignment));
    assert_eq!(first.enrollment_group_id, None);

    let again = f.register("dev-1", &secondary).await.expect("secondary key");
    assert_eq!(again.assigned_hub, first.assigned_hub);

    let status = f.dps.registration_status(f.status("dev-1", &secondary, None)).await.unwrap();
    assert_eq!(status, again, "the status lookup answers the latest record");
    let op = f.dps.operation_status(f.status("dev-1", &primary, Some(&again.operation_id))).await.unwrap();
    assert_eq!(op, again);
    let stale_op = f.dps.operation_status(f.status("dev-1", &primary, Some(&first.operation_id))).await;
    assert!(matches!(stale_op, Err(Error::NotFound(_))), "{stale_op:?}");
    let other_key = f.dps.registration_status(f.status("dev-1", &random_key(), None)).await;
    assert!(matches!(other_key, Err(Error::Unauthorized(_))), "status needs the device's key: {other_key:?}");
}

#[tokio::test]
async fn group_devices_register_with_derived_keys_but_not_the_group_key() {
    let f = Fixture::new(hubs(2)).await;
    f.enroll_group(group("group-1", json!({}))).await;
    let (primary, secondary) = f.group_keys("group-1").await;

    let record = f.register_in_group("sensor-7", &primary).await.expect("derived from the primary key");
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert_eq!(record.enrollment_group_id.as_deref(), Some("group-1"));
    assert_eq!(record.device_id.as_deref(), Some("sensor-7"));
    f.register_in_group("sensor-8", &secondary).await.expect("derived from the secondary key");

    let with_group_key = f.register("sensor-9", &primary).await;
    assert!(matches!(with_group_key, Err(Error::Unauthorized(_))), "the group key itself: {with_group_key:?}");
    let derived_for_other = sas::derive_device_key(&primary, "sensor-7").unwrap();
    let stolen = f.register("sensor-9", &derived_for_other).await;
    assert!(matches!(stolen, Err(Error::Unauthorized(_))), "another device's derived key: {stolen:?}");
    assert!(f.store.get_registration(f.scope(), "sensor-9").await.unwrap().is_none(), "no record for refusals");
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let f = Fixture::new(hubs(1)).await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    let scope = f.scope().to_string();
    let unauthorized = |r: &dps_core::Result<_>| matches!(r, Err(Error::Unauthorized(_)));

    let mut expired = register_request(&scope, "dev-1", &key);
    expired.caller.authorization =
        Some(device_token(&scope, "dev-1", &key, dps_core::usecases::now().unix_timestamp() - 1));
    assert!(unauthorized(&f.dps.register(expired).await), "expired");

    let forged = register_request(&scope, "dev-1", &random_key());
    assert!(unauthorized(&f.dps.register(forged).await), "signed with a key nobody enrolled");

    let mut tampered = register_request(&scope, "dev-1", &key);
    let header = tampered.caller.authorization.take().unwrap();
    let moved_expiry: Vec<String> = header
        .split('&')
        .map(|part| match part.strip_prefix("se=") {
            Some(se) => format!("se={}", se.parse::<i64>().unwrap() + 10),
            None => part.to_string(),
        })
        .collect();
    assert_ne!(moved_expiry.join("&"), header);
    tampered.caller.authorization = Some(moved_expiry.join("&"));
    assert!(unauthorized(&f.dps.register(tampered).await), "expiry changed after signing");

    let mut wrong_resource = register_request(&scope, "dev-1", &key);
    wrong_resource.caller.authorization = Some(device_token(&scope, "dev-2", &key, later()));
    assert!(unauthorized(&f.dps.register(wrong_resource).await), "token for another registration");

    let mut wrong_scope = register_request(&scope, "dev-1", &key);
    wrong_scope.caller.authorization = Some(device_token("0ne99999999", "dev-1", &key, later()));
    assert!(unauthorized(&f.dps.register(wrong_scope).await), "token for another scope");

    let mut missing = register_request(&scope, "dev-1", &key);
    missing.caller.authorization = None;
    assert!(unauthorized(&f.dps.register(missing).await), "no token");

    let unknown_scope = f.dps.register(register_request("0ne99999999", "dev-1", &key)).await;
    // An unknown scope is answered as a bad token is: nobody learns which scopes exist.
    assert!(unauthorized(&unknown_scope), "{unknown_scope:?}");
    let bad_key = f.dps.register(register_request(f.scope(), "dev-1", &sas::generate_key())).await;
    assert_eq!(unknown_scope.unwrap_err(), bad_key.unwrap_err(), "the same answer for both");

    // The same registration ID enrolled in a second instance: each instance only accepts its own key.
    let other = add_instance(&f.dps, "dps-two", "dps-two.example.net", hubs(1)).await;
    let other_token = service_token(&other.service_host_name, &other.authorization_policies[0].primary_key, OWNER);
    let other_caller = f.dps.authenticate_service(&other.service_host_name, "/", Some(&other_token)).await.unwrap();
    let e: IndividualEnrollment = serde_json::from_value(individual("dev-1", json!({}))).unwrap();
    f.dps.put_enrollment(&other_caller, "dev-1", e, None).await.unwrap();
    let cross = f.dps.register(register_request(&other.id_scope, "dev-1", &key)).await;
    assert!(unauthorized(&cross), "instance one's key at instance two: {cross:?}");

    assert!(f.store.get_registration(&scope, "dev-1").await.unwrap().is_none(), "nothing was recorded");
    f.register("dev-1", &key).await.expect("and the right token still works");
}

#[tokio::test]
async fn disabled_individual_enrollment_overrides_an_enabled_group() {
    let f = Fixture::new(hubs(1)).await;
    f.enroll_group(group("group-1", json!({}))).await;
    f.enroll(individual("dev-1", json!({ "provisioningStatus": "disabled" }))).await;
    let (group_key, _) = f.group_keys("group-1").await;

    let record = f.register_in_group("dev-1", &group_key).await.expect("answered with a record");
    assert_eq!(record.status, RegistrationStatus::Disabled);
    assert_eq!(record.assigned_hub, None);
    let neighbour = f.register_in_group("dev-2", &group_key).await.unwrap();
    assert_eq!(neighbour.status, RegistrationStatus::Assigned, "the rest of the group is unaffected");
}

#[tokio::test]
async fn disabled_group_refuses_its_devices() {
    let f = Fixture::new(hubs(1)).await;
    f.enroll_group(group("group-1", json!({ "provisioningStatus": "disabled" }))).await;
    let (group_key, _) = f.group_keys("group-1").await;
    let record = f.register_in_group("dev-1", &group_key).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Disabled);
    assert_eq!(record.assigned_hub, None);
}

#[tokio::test]
async fn hashed_allocation_is_stable_and_metered() {
    let f = Fixture::new(hubs(5)).await;
    f.enroll_group(group("group-1", json!({}))).await;
    let (key, _) = f.group_keys("group-1").await;
    let mut used = HashSet::new();
    for i in 0..30 {
        let id = format!("dev-{i}");
        let first = f.register_in_group(&id, &key).await.unwrap().assigned_hub.unwrap();
        for _ in 0..2 {
            let again = f.register_in_group(&id, &key).await.unwrap();
            assert_eq!(again.assigned_hub.as_deref(), Some(first.as_str()), "same device, same hub");
            assert_eq!(again.substatus, Some(Substatus::InitialAssignment));
        }
        used.insert(first);
    }
    assert!(used.len() >= 3, "30 devices spread over 5 hubs: {used:?}");

    let day = today();
    let counts: BTreeMap<OperationKind, u64> =
        f.dps.operations(&f.owner().await, &day, &day).await.unwrap().into_iter().map(|c| (c.kind, c.count)).collect();
    assert_eq!(counts.get(&OperationKind::Registration), Some(&30));
    assert_eq!(counts.get(&OperationKind::ReRegistration), Some(&60));
}

#[tokio::test]
async fn allocation_weights_shape_the_spread() {
    let f = Fixture::new(vec![hub("light.example.net", 1, true, None), hub("heavy.example.net", 9, true, None)]).await;
    f.enroll_group(group("group-1", json!({}))).await;
    let (key, _) = f.group_keys("group-1").await;
    let mut heavy = 0;
    for i in 0..300 {
        if f.register_in_group(&format!("d{i}"), &key).await.unwrap().assigned_hub.unwrap() == "heavy.example.net" {
            heavy += 1;
        }
    }
    assert!((240..=290).contains(&heavy), "about 90% of 300 on the weight-9 hub, got {heavy}");
}

#[tokio::test]
async fn static_policy_uses_the_named_hub() {
    let f = Fixture::new(hubs(3)).await;
    let body = json!({ "allocationPolicy": "static", "iotHubHostName": "hub-2.example.net" });
    f.enroll(individual("dev-1", body)).await;
    let (key, _) = f.keys("dev-1").await;
    for _ in 0..2 {
        assert_eq!(f.register("dev-1", &key).await.unwrap().assigned_hub.as_deref(), Some("hub-2.example.net"));
    }
    let unnamed: dps_core::model::IndividualEnrollment =
        serde_json::from_value(individual("dev-2", json!({ "allocationPolicy": "static" }))).unwrap();
    let refused = f.dps.put_enrollment(&f.owner().await, "dev-2", unnamed, None).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "static needs a hub: {refused:?}");
}

#[tokio::test]
async fn geo_latency_picks_the_hub_nearest_the_serving_region() {
    let linked = vec![
        hub("us.example.net", 1, true, Some("us-east-1")),
        hub("eu.example.net", 1, true, Some("eu-west-1")),
        hub("ap.example.net", 1, true, Some("ap-southeast-1")),
    ];
    let settings = Settings { serving_region: Some("eu-west-2".into()), ..Settings::default() };
    let f = Fixture::with_settings(linked, settings).await;
    f.enroll_group(group("group-1", json!({ "allocationPolicy": "geoLatency" }))).await;
    let (key, _) = f.group_keys("group-1").await;
    for i in 0..20 {
        let hub = f.register_in_group(&format!("d{i}"), &key).await.unwrap().assigned_hub.unwrap();
        assert_eq!(hub, "eu.example.net");
    }
    // The same data served from Virginia.
    let us = dps_core::Dps::new(
        f.store.clone(),
        Settings { serving_region: Some("us-east-1".into()), ..Settings::default() },
    );
    let record = us.register(register_request(f.scope(), "d-us", &sas::derive_device_key(&key, "d-us").unwrap()));
    assert_eq!(record.await.unwrap().assigned_hub.as_deref(), Some("us.example.net"));
}

#[tokio::test]
async fn enrollment_hub_list_limits_the_candidates() {
    let f = Fixture::new(hubs(4)).await;
    let subset = json!({ "iotHubs": ["hub-2.example.net", "HUB-3.example.net"] });
    f.enroll_group(group("group-1", subset)).await;
    let (key, _) = f.group_keys("group-1").await;
    let mut used = HashSet::new();
    for i in 0..40 {
        used.insert(f.register_in_group(&format!("d{i}"), &key).await.unwrap().assigned_hub.unwrap());
    }
    let want: HashSet<String> = ["hub-2.example.net".to_string(), "hub-3.example.net".into()].into();
    assert_eq!(used, want, "only, and both of, the named hubs");

    let unlinked: EnrollmentGroup =
        serde_json::from_value(group("group-2", json!({ "iotHubs": ["nowhere.example.net"] }))).unwrap();
    let refused = f.dps.put_enrollment(&f.owner().await, "group-2", unlinked, None).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "hubs must be linked: {refused:?}");
}

#[tokio::test]
async fn hubs_outside_the_allocation_policy_are_used_only_when_named() {
    let mut linked = hubs(2);
    linked.push(hub("reserved.example.net", 1000, false, None));
    let f = Fixture::new(linked).await;
    f.enroll_group(group("group-1", json!({}))).await;
    f.enroll_group(group("group-2", json!({ "iotHubs": ["reserved.example.net"] }))).await;
    let (key1, _) = f.group_keys("group-1").await;
    let (key2, _) = f.group_keys("group-2").await;
    for i in 0..40 {
        let hub = f.register_in_group(&format!("a{i}"), &key1).await.unwrap().assigned_hub.unwrap();
        assert_ne!(hub, "reserved.example.net", "not picked automatically, whatever its weight");
    }
    let named = f.register_in_group("b1", &key2).await.unwrap();
    assert_eq!(named.assigned_hub.as_deref(), Some("reserved.example.net"));
}

/// Register `dev-1` (group `group-1` with `reprovision`) on hub-1, then make hub-2 the only automatic choice.
async fn moved_hub_set(reprovision: serde_json::Value) -> (Fixture, String) {
    let f = Fixture::new(vec![hub("hub-1.example.net", 1, true, None)]).await;
    f.enroll_group(group("group-1", json!({ "reprovisionPolicy": reprovision }))).await;
    let (key, _) = f.group_keys("group-1").await;
    let first = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(first.assigned_hub.as_deref(), Some("hub-1.example.net"));
    f.link(vec![hub("hub-1.example.net", 1, false, None), hub("hub-2.example.net", 1, true, None)]).await;
    (f, key)
}

#[tokio::test]
async fn reprovision_without_hub_update_keeps_the_hub() {
    let (f, key) = moved_hub_set(json!({ "updateHubAssignment": false, "migrateDeviceData": true })).await;
    let again = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(again.assigned_hub.as_deref(), Some("hub-1.example.net"));
    assert_eq!(again.substatus, Some(Substatus::InitialAssignment));
    let newcomer = f.register_in_group("dev-2", &key).await.unwrap();
    assert_eq!(newcomer.assigned_hub.as_deref(), Some("hub-2.example.net"), "new devices see the new hub set");
}

/// With migration the device moves with its data; with reset, without it.
#[tokio::test]
async fn reprovision_with_hub_update_moves_the_device_with_or_without_its_data() {
    for (migrate, substatus) in [(true, Substatus::DeviceDataMigrated), (false, Substatus::DeviceDataReset)] {
        let (f, key) = moved_hub_set(json!({ "updateHubAssignment": true, "migrateDeviceData": migrate })).await;
        let again = f.register_in_group("dev-1", &key).await.unwrap();
        assert_eq!(again.assigned_hub.as_deref(), Some("hub-2.example.net"), "migrateDeviceData {migrate}");
        assert_eq!(again.substatus, Some(substatus));
    }
}

#[tokio::test]
async fn custom_policy_is_refused_without_an_allocator() {
    let f = Fixture::new(hubs(1)).await;
    let body = individual(
        "dev-1",
        json!({
            "allocationPolicy": "custom",
            "customAllocationDefinition": { "webhookUrl": "https://alloc.example.net/api", "apiVersion": "2021-10-01" }
        }),
    );
    let e: IndividualEnrollment = serde_json::from_value(body).unwrap();
    let refused = f.dps.put_enrollment(&f.owner().await, "dev-1", e, None).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    assert!(f.store.load::<IndividualEnrollment>(f.scope(), "dev-1").await.unwrap().is_none(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_device_leave_one_consistent_record() {
    let f = Arc::new(Fixture::new(hubs(3)).await);
    f.enroll_group(group("group-1", json!({}))).await;
    let (key, _) = f.group_keys("group-1").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (f, key) = (f.clone(), key.clone());
        tasks.push(tokio::spawn(async move { f.register_in_group("busy-device", &key).await }));
    }
    let mut written = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(record) => written.push(record),
            Err(e) => assert!(
                matches!(e, Error::Throttled { .. }),
                "only contention may fail a registration, as a 429: {e:?}"
            ),
        }
    }
    assert!(!written.is_empty(), "at least one registration completes");
    let stored = f.store.get_registration(f.scope(), "busy-device").await.unwrap().unwrap();
    let last = written.iter().find(|r| r.etag == stored.etag).expect("the stored etag is one a caller was given");
    assert_eq!(last, &stored, "that caller was answered with exactly the stored record");
    let hubs: HashSet<_> = written.iter().map(|r| r.assigned_hub.clone()).collect();
    assert_eq!(hubs.len(), 1, "every answer names the same hub");

    let day = today();
    let counts: BTreeMap<OperationKind, u64> =
        f.store.operations(f.scope(), &day, &day).await.unwrap().into_iter().map(|c| (c.kind, c.count)).collect();
    assert_eq!(counts.get(&OperationKind::Registration), Some(&1), "one first registration");
    let re = counts.get(&OperationKind::ReRegistration).copied().unwrap_or(0);
    assert_eq!(re, written.len() as u64 - 1, "one re-registration per other completed write");
}

#[tokio::test]
async fn a_deleted_record_makes_the_next_registration_a_first_one() {
    let f = Fixture::new(hubs(1)).await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    f.register("dev-1", &key).await.unwrap();
    f.dps.delete_registration(&f.owner().await, "DEV-1", None).await.unwrap();
    let again = f.register("dev-1", &key).await.unwrap();
    assert_eq!(again.substatus, Some(Substatus::InitialAssignment));
    let day = today();
    let registrations: u64 = f
        .store
        .operations(f.scope(), &day, &day)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.kind == OperationKind::Registration)
        .map(|c| c.count)
        .sum();
    assert_eq!(registrations, 2);
}

#[tokio::test]
async fn request_shape_is_checked_before_anything_is_written() {
    let f = Fixture::new(hubs(1)).await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    let mut mismatch = register_request(f.scope(), "dev-1", &key);
    mismatch.caller.body_registration_id = Some("dev-2".into());
    assert!(matches!(f.dps.register(mismatch).await, Err(Error::Invalid(_))));
    let bad_id = register_request(f.scope(), "dev 1", &key);
    assert!(matches!(f.dps.register(bad_id).await, Err(Error::Invalid(_))));
    assert!(f.store.get_registration(f.scope(), "dev-1").await.unwrap().is_none());

    let mut lower_scope = register_request(&f.scope().to_ascii_lowercase(), "DEV-1", &key);
    lower_scope.caller.authorization = Some(device_token(&f.scope().to_ascii_lowercase(), "DEV-1", &key, later()));
    let record = f.dps.register(lower_scope).await.expect("scope and registration ID in another case");
    assert_eq!(record.registration_id, "DEV-1");
    assert!(f.store.get_registration(f.scope(), "dev-1").await.unwrap().is_some());
}

#[tokio::test]
async fn another_process_without_a_cache_sees_group_changes_at_once() {
    let f = Fixture::new(hubs(1)).await;
    let other =
        dps_core::Dps::new(f.store.clone(), Settings { cache_ttl: std::time::Duration::ZERO, ..Settings::default() });
    let device = |key: &str| register_request(f.scope(), "dev-1", &sas::derive_device_key(key, "dev-1").unwrap());
    f.enroll_group(group("group-1", json!({}))).await;
    let (key, _) = f.group_keys("group-1").await;
    other.register(device(&key)).await.expect("a group written elsewhere admits the device");
    f.dps.delete_enrollment::<EnrollmentGroup>(&f.owner().await, "group-1", None).await.unwrap();
    let gone = other.register(device(&key)).await;
    assert!(matches!(gone, Err(Error::Unauthorized(_))), "and its deletion refuses it: {gone:?}");
}

#[tokio::test]
async fn a_sticky_device_leaves_a_hub_that_was_unlinked() {
    let (f, key) = moved_hub_set(json!({ "updateHubAssignment": false })).await;
    f.link(vec![hub("hub-2.example.net", 1, true, None)]).await;
    let again = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(again.status, RegistrationStatus::Assigned);
    assert_eq!(again.assigned_hub.as_deref(), Some("hub-2.example.net"), "never a hub that is no longer linked");
    assert_eq!(again.substatus, Some(Substatus::DeviceDataMigrated));
}

#[tokio::test]
async fn a_sticky_device_keeps_its_hub_across_a_disabled_registration() {
    let (f, key) = moved_hub_set(json!({ "updateHubAssignment": false, "migrateDeviceData": true })).await;
    let owner = f.owner().await;
    let mut g = f.dps.get_enrollment::<EnrollmentGroup>(&owner, "group-1").await.unwrap();
    g.spec.provisioning_status = dps_core::model::ProvisioningStatus::Disabled;
    let g = f.dps.put_enrollment(&owner, "group-1", g, None).await.unwrap();
    let disabled = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(disabled.status, RegistrationStatus::Disabled);
    let mut g = g;
    g.spec.provisioning_status = dps_core::model::ProvisioningStatus::Enabled;
    f.dps.put_enrollment(&owner, "group-1", g, None).await.unwrap();
    let again = f.register_in_group("dev-1", &key).await.unwrap();
    assert_eq!(again.status, RegistrationStatus::Assigned);
    assert_eq!(again.assigned_hub.as_deref(), Some("hub-1.example.net"), "never reprovision means never moved");
}

#[tokio::test]
async fn if_match_on_a_missing_enrollment_is_a_failed_precondition() {
    let f = Fixture::new(hubs(1)).await;
    let e: IndividualEnrollment = serde_json::from_value(individual("ghost-1", json!({}))).unwrap();
    let put = f.dps.put_enrollment(&f.owner().await, "ghost-1", e, Some("\"some-etag\"")).await;
    assert!(matches!(put, Err(Error::PreconditionFailed(_))), "{put:?}");
    assert!(f.store.load::<IndividualEnrollment>(f.scope(), "ghost-1").await.unwrap().is_none(), "nothing written");
}

#[tokio::test]
async fn a_token_for_one_path_does_not_open_the_others() {
    let f = Fixture::new(hubs(1)).await;
    let host = f.instance.service_host_name.clone();
    let narrow = dps_core::sas::token(
        &format!("{host}/registrations"),
        &f.owner_key(),
        later(),
        Some("provisioningserviceowner"),
    )
    .unwrap();
    let inside = f.dps.authenticate_service(&host, "/registrations/dev-1", Some(&narrow)).await;
    assert!(inside.is_ok(), "{inside:?}");
    for path in ["/enrollments/dev-1", "/config/authorizationPolicies", "/registrationsx/a"] {
        let outside = f.dps.authenticate_service(&host, path, Some(&narrow)).await;
        assert!(matches!(outside, Err(Error::Unauthorized(_))), "{path}: {outside:?}");
    }
}

#[tokio::test]
async fn the_device_id_keeps_its_first_spelling_whatever_case_the_device_uses() {
    let f = Fixture::new(hubs(1)).await;
    f.enroll(individual("Dev-Case", json!({}))).await;
    let (key, _) = f.keys("Dev-Case").await;
    let record = f.register("dev-case", &key).await.unwrap();
    assert_eq!(record.device_id.as_deref(), Some("Dev-Case"), "the enrollment's spelling");
    let record = f.register("DEV-CASE", &key).await.unwrap();
    assert_eq!(record.device_id.as_deref(), Some("Dev-Case"));

    f.enroll_group(group("group-1", json!({}))).await;
    let (group_key, _) = f.group_keys("group-1").await;
    let first = f.register_in_group("Sensor-9", &group_key).await.unwrap();
    assert_eq!(first.device_id.as_deref(), Some("Sensor-9"));
    let again = f.register_in_group("SENSOR-9", &group_key).await.unwrap();
    assert_eq!(again.device_id.as_deref(), Some("Sensor-9"), "the first recorded spelling");
}

#[tokio::test]
async fn a_registration_tries_at_most_max_groups_tried_groups() {
    let settings = Settings { max_groups_tried: 1, ..Settings::default() };
    let f = Fixture::with_settings(hubs(1), settings).await;
    f.enroll_group(group("group-a", json!({}))).await;
    f.enroll_group(group("group-b", json!({}))).await;
    let (key_a, _) = f.group_keys("group-a").await;
    let (key_b, _) = f.group_keys("group-b").await;
    let first = f.register_in_group("dev-a", &key_a).await.expect("the first group (ID order) is tried");
    assert_eq!(first.enrollment_group_id.as_deref(), Some("group-a"));
    let beyond = f.register_in_group("dev-b", &key_b).await;
    assert!(matches!(beyond, Err(Error::Unauthorized(_))), "a group past the bound is never tried: {beyond:?}");
}

#[tokio::test]
async fn failed_attestations_are_limited_per_address_and_per_scope() {
    use dps_core::usecases::FailureBudget;
    let settings = Settings {
        failed_attestations_per_address: FailureBudget { burst: 3.0, per_second: 0.01 },
        failed_attestations_per_scope: FailureBudget { burst: 5.0, per_second: 0.01 },
        ..Settings::default()
    };
    let f = Fixture::with_settings(hubs(1), settings).await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    let from = |ip: &str, key: &str| {
        let mut req = register_request(f.scope(), "dev-1", key);
        req.caller.client_address = Some(ip.parse().unwrap());
        req
    };
    let junk = sas::generate_key();
    for _ in 0..3 {
        let refused = f.dps.register(from("192.0.2.1", &junk)).await;
        assert!(matches!(refused, Err(Error::Unauthorized(_))), "{refused:?}");
    }
    let limited = f.dps.register(from("192.0.2.1", &junk)).await;
    assert!(matches!(limited, Err(Error::Throttled { retry_after_secs, .. }) if retry_after_secs >= 1), "{limited:?}");
    // Another address still gets in with the right key; the scope's budget (5) is not spent yet.
    f.dps.register(from("192.0.2.2", &key)).await.expect("another address is not limited");
    for _ in 0..2 {
        let _ = f.dps.register(from("192.0.2.3", &junk)).await;
    }
    let scope_limited = f.dps.register(from("192.0.2.4", &junk)).await;
    assert!(matches!(scope_limited, Err(Error::Throttled { .. })), "the scope's budget is spent: {scope_limited:?}");
}

#[tokio::test]
async fn a_group_that_declares_a_registration_id_prefix_admits_only_those_devices() {
    let f = Fixture::new(hubs(1)).await;
    f.enroll_group(group("acme", json!({ "registrationIdPrefix": "ACME-" }))).await;
    f.enroll_group(group("open", json!({}))).await;
    let (acme_key, _) = f.group_keys("acme").await;
    let (open_key, _) = f.group_keys("open").await;
    let record = f.register_in_group("acme-sensor-1", &acme_key).await.unwrap();
    assert_eq!(record.enrollment_group_id.as_deref(), Some("acme"));
    // The right derived key, but an ID outside the prefix: the group does not cover it.
    let err = f.register_in_group("other-sensor-1", &acme_key).await.unwrap_err();
    assert!(matches!(err, dps_core::Error::Unauthorized(_)), "{err}");
    // Groups without a prefix still admit any ID (also those a prefixed group covers).
    assert_eq!(
        f.register_in_group("acme-sensor-2", &open_key).await.unwrap().enrollment_group_id.as_deref(),
        Some("open")
    );
    // A prefix must be made of registration ID characters.
    let owner = f.owner().await;
    let bad: dps_core::model::EnrollmentGroup =
        serde_json::from_value(group("bad", json!({ "registrationIdPrefix": "a b" }))).unwrap();
    assert!(f.dps.put_enrollment(&owner, "bad", bad, None).await.is_err());
}
