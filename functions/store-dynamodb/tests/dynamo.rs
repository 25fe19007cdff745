//! What is particular to the DynamoDB adapter, against moto: the table definition, the item layout, paging
//! across index shards, instance immutability, counter TTL, oversized items, and configuration from a lookup.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{KeyType, ProjectionType, TimeToLiveStatus};
use dps_core::model::{IndividualEnrollment, OperationCount, OperationKind, RegistrationRecord};
use dps_core::store::{EnrollmentStore, PageRequest, Precondition, Store};
use dps_core::{Error, Result};
use dps_store_dynamodb::layout::{GSI1, GSI1PK, GSI1SK, PK, SK, TTL};
use dps_store_dynamodb::{DynamoConfig, DynamoStore, create_table};
use serde_json::json;

fn enrollment(id: &str) -> IndividualEnrollment {
    serde_json::from_value(json!({
        "registrationId": id,
        "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": "cHJpbWFyeS1rZXktMTIzNDU2" } },
    }))
    .unwrap()
}

fn record(id: &str, group: Option<&str>) -> RegistrationRecord {
    serde_json::from_value(json!({
        "registrationId": id,
        "status": "assigned",
        "assignedHub": "hub-1.example.net",
        "createdDateTimeUtc": "2024-05-01T12:00:00Z",
        "lastUpdatedDateTimeUtc": "2024-05-01T12:00:00Z",
        "enrollmentGroupId": group,
        "attestationType": "symmetricKey",
        "operationId": format!("op-{id}"),
    }))
    .unwrap()
}

fn scope() -> String {
    dps_core::ids::new_id_scope()
}

/// Every item of the table, as (pk, sk) → attribute names.
async fn raw_items(store: &DynamoStore) -> HashMap<(String, String), HashMap<String, String>> {
    let out = store.client().scan().table_name(store.table_name()).send().await.unwrap();
    let text = |v: &aws_sdk_dynamodb::types::AttributeValue| {
        v.as_s().cloned().or_else(|_| v.as_n().cloned()).unwrap_or_else(|_| format!("{v:?}"))
    };
    out.items()
        .iter()
        .map(|item| {
            let key = (text(&item[PK]), text(&item[SK]));
            (key, item.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        })
        .collect()
}

#[tokio::test]
async fn table_has_the_documented_keys_index_and_ttl() {
    let store = support::store().await;
    create_table(store.client(), store.table_name()).await.expect("creating an existing table is a no-op");
    let described = store.client().describe_table().table_name(store.table_name()).send().await.unwrap();
    let table = described.table().unwrap();
    let keys: Vec<(&str, KeyType)> =
        table.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().clone())).collect();
    assert_eq!(keys, [(PK, KeyType::Hash), (SK, KeyType::Range)]);
    let mut attributes: Vec<&str> = table.attribute_definitions().iter().map(|a| a.attribute_name()).collect();
    attributes.sort();
    assert_eq!(attributes, ["gsi1pk", "gsi1sk", "pk", "sk"]);
    let indexes = table.global_secondary_indexes();
    assert_eq!(indexes.len(), 1);
    assert_eq!(indexes[0].index_name(), Some(GSI1));
    let index_keys: Vec<(&str, KeyType)> =
        indexes[0].key_schema().iter().map(|k| (k.attribute_name(), k.key_type().clone())).collect();
    assert_eq!(index_keys, [(GSI1PK, KeyType::Hash), (GSI1SK, KeyType::Range)]);
    assert_eq!(indexes[0].projection().and_then(|p| p.projection_type()), Some(&ProjectionType::All));
    let ttl = store.client().describe_time_to_live().table_name(store.table_name()).send().await.unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some(TTL));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

/// The layout of docs/dynamodb.md, item by item: one partition per device, group and instance; sparse index
/// keys; reservations for instance names and host names.
#[tokio::test]
async fn items_follow_the_documented_layout() {
    let store = support::store().await;
    let s = scope();
    let sl = s.to_ascii_lowercase();
    let instance: dps_core::model::Instance = serde_json::from_value(json!({
        "name": "Plant-1", "idScope": s, "serviceHostName": "Plant-1.Example.net",
    }))
    .unwrap();
    store.create_instance(instance).await.unwrap();
    store.save(&s, enrollment("Dev-A"), Precondition::NotExists).await.unwrap();
    store.put_registration(&s, record("Dev-A", None), Precondition::NotExists.into()).await.unwrap();
    let group: dps_core::model::EnrollmentGroup = serde_json::from_value(json!({
        "enrollmentGroupId": "Line-1",
        "attestation": { "type": "symmetricKey", "symmetricKey": {} },
    }))
    .unwrap();
    store.save(&s, group, Precondition::NotExists).await.unwrap();
    let meter = OperationCount { date: "2024-05-01".into(), kind: OperationKind::Registration, count: 1 };
    store
        .put_registration(&s, record("Sensor-1", Some("Line-1")), Precondition::NotExists.counting(Some(meter)))
        .await
        .unwrap();

    let items = raw_items(&store).await;
    let get = |pk: &str, sk: &str| {
        items
            .get(&(pk.to_string(), sk.to_string()))
            .unwrap_or_else(|| panic!("no item {pk} / {sk}: {:?}", items.keys()))
    };
    let inst = get(&format!("inst#{sl}"), "instance");
    assert_eq!((inst["gsi1pk"].as_str(), inst["gsi1sk"].as_str()), ("instances", sl.as_str()));
    assert_eq!(get("iname#plant-1", "instanceName")["scope"], sl);
    let host = get("ihost#plant-1.example.net", "instanceHost");
    assert_eq!((host["scope"].as_str(), host["etag"].as_str()), (sl.as_str(), inst["etag"].as_str()), "a copy");
    assert!(!host.contains_key("gsi1pk"), "host copies are not listed");

    let enrolled = get(&format!("{sl}#dev#dev-a"), "enrollment");
    assert!(enrolled["gsi1pk"].starts_with(&format!("{sl}#enrollments#")));
    assert_eq!(enrolled["gsi1sk"], "dev-a");
    let solo = get(&format!("{sl}#rec#dev-a"), "registration");
    assert!(!solo.contains_key("gsi1pk"), "records of individual enrollments are not indexed");
    assert!(!items.contains_key(&(format!("{sl}#dev#dev-a"), "registration".into())), "not with the enrollment");
    let grouped = get(&format!("{sl}#rec#sensor-1"), "registration");
    assert!(grouped["gsi1pk"].starts_with(&format!("{sl}#grp#line-1#registrations#")));
    let group_item = get(&format!("{sl}#grp#line-1"), "group");
    assert_eq!(
        (group_item["gsi1pk"].as_str(), group_item["gsi1sk"].as_str()),
        (format!("{sl}#groups").as_str(), "line-1")
    );
    let counters: Vec<_> = items.keys().filter(|(pk, _)| pk.starts_with(&format!("{sl}#ops#"))).collect();
    assert_eq!(counters.len(), 1);
    assert_eq!(counters[0].1, "2024-05-01#registration");
    assert!(items.values().all(|i| !i.contains_key(TTL)), "nothing expires by default");
}

#[tokio::test]
async fn paging_across_index_shards_is_ordered_and_complete() {
    let store = Arc::new(support::store().await);
    let s = scope();
    let mut expected = BTreeSet::new();
    let mut writes = Vec::new();
    for i in 0..57 {
        let id = format!("Sensor-{i:03}");
        expected.insert(id.to_ascii_lowercase());
        let (store, s) = (store.clone(), s.clone());
        writes.push(tokio::spawn(async move {
            store.put_registration(&s, record(&id, Some("line-1")), Precondition::NotExists.into()).await
        }));
    }
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let expected: Vec<String> = expected.into_iter().collect();
    for max_items in [1, 5, 8, 56, 57, 1000] {
        let mut seen = Vec::new();
        let mut page = PageRequest { max_items, continuation: None };
        let mut pages = 0;
        loop {
            let got = store.query_registrations(&s, "line-1", page.clone()).await.unwrap();
            pages += 1;
            assert!(got.items.len() <= max_items);
            seen.extend(got.items.iter().map(|r| r.registration_id.to_ascii_lowercase()));
            match got.continuation {
                Some(next) => page.continuation = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "pages of {max_items}");
        assert_eq!(pages, expected.len().div_ceil(max_items).max(1), "no empty trailing page for {max_items}");
    }
    let bad = store
        .query_registrations(&s, "line-1", PageRequest { max_items: 5, continuation: Some("%%not-a-token".into()) })
        .await;
    assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
}

#[tokio::test]
async fn instance_name_and_host_name_cannot_change() {
    let store = support::store().await;
    let s = scope();
    let instance: dps_core::model::Instance = serde_json::from_value(json!({
        "name": format!("n-{s}"), "idScope": s, "serviceHostName": format!("{s}.example.net"),
    }))
    .unwrap();
    let created = store.create_instance(instance).await.unwrap();
    let renamed = dps_core::model::Instance { name: "other".into(), ..created.clone() };
    let result: Result<_> = store.update_instance(renamed, Precondition::None).await;
    assert!(matches!(result, Err(Error::Invalid(_))), "{result:?}");
    let moved = dps_core::model::Instance { service_host_name: "elsewhere.example.net".into(), ..created.clone() };
    let result = store.update_instance(moved, Precondition::Matches(created.etag.clone().unwrap())).await;
    assert!(matches!(result, Err(Error::Invalid(_))), "{result:?}");
    assert_eq!(store.instance_by_host("elsewhere.example.net").await.unwrap(), None);
    assert_eq!(store.instance_by_scope(&s).await.unwrap(), Some(created.clone()), "unchanged");
    let updated = store.update_instance(created.clone(), Precondition::None).await.unwrap();
    assert_ne!(updated.etag, created.etag);
}

/// The device function reads instances without the service API's keys (its role may read only `doc` and
/// `etag` of an instance item; template.yaml): the keys live in their own attribute, and such a store has
/// the rest of the instance but no keys, and refuses to write an instance back.
#[tokio::test]
async fn the_device_side_reads_instances_without_their_access_keys() {
    let store = support::store().await;
    let s = scope();
    let sl = s.to_ascii_lowercase();
    let key = "c2VjcmV0LWFjY2Vzcy1rZXktMDAwMDAwMDAwMDAwMDA=";
    let instance: dps_core::model::Instance = serde_json::from_value(json!({
        "name": format!("n-{s}"), "idScope": s, "serviceHostName": format!("{s}.example.net"),
        "linkedHubs": [{ "hostName": "hub-1.example.net" }],
        "authorizationPolicies": [{
            "keyName": "provisioningserviceowner", "primaryKey": key, "secondaryKey": key,
            "rights": ["ServiceConfig", "EnrollmentRead", "EnrollmentWrite"],
        }],
    }))
    .unwrap();
    let created = store.create_instance(instance).await.unwrap();

    let items = raw_items(&store).await;
    let item = &items[&(format!("inst#{sl}"), "instance".to_string())];
    assert!(!item["doc"].contains(key), "the keys are not in doc");
    assert!(item["accessKeys"].contains(key), "the keys are in accessKeys");

    let service = store.instance_by_scope(&s).await.unwrap().unwrap();
    assert_eq!(service, created, "the service side reads the whole instance");
    assert_eq!(store.instance_by_host(&format!("{s}.example.net")).await.unwrap(), Some(created.clone()));

    let device = DynamoStore::new(store.client().clone(), store.table_name()).without_access_keys();
    let seen = device.instance_by_scope(&s).await.unwrap().unwrap();
    assert!(seen.authorization_policies.is_empty(), "no access policies on the device side");
    assert_eq!(seen.linked_hubs, created.linked_hubs);
    assert_eq!(seen.etag, created.etag);
    assert_eq!(
        dps_core::model::Instance { authorization_policies: created.authorization_policies.clone(), ..seen.clone() },
        created
    );
    let write = device.update_instance(seen, Precondition::None).await;
    assert!(matches!(write, Err(Error::Internal(_))), "{write:?}");
    assert_eq!(store.instance_by_scope(&s).await.unwrap(), Some(created), "keys intact");
}

/// Move an item written by today's layout back to where layout 1 kept it (the device partition), as a table
/// written by an older release holds it.
async fn make_legacy(store: &DynamoStore, pk: &str, sk: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let key =
        HashMap::from([(PK.to_string(), AttributeValue::S(pk.into())), (SK.to_string(), AttributeValue::S(sk.into()))]);
    let c = store.client();
    let found = c.get_item().table_name(store.table_name()).set_key(Some(key.clone())).send().await.unwrap();
    let mut item = found.item.expect("the item to move back");
    item.insert(PK.into(), AttributeValue::S(pk.replace("#rec#", "#dev#")));
    c.put_item().table_name(store.table_name()).set_item(Some(item)).send().await.unwrap();
    c.delete_item().table_name(store.table_name()).set_key(Some(key)).send().await.unwrap();
}

/// A table written by layout 1 (records and TPM challenges in the device partition, with the enrollment):
/// today's store does not see those records until `migrate_records` has moved them; the move keeps every
/// attribute (index keys, TTL), lets a record written since the upgrade win, and a second run has nothing to do.
#[tokio::test]
async fn migrate_records_moves_layout_1_records_to_their_own_partition() {
    let store = support::store().await;
    let s = scope();
    let sl = s.to_ascii_lowercase();
    store.save(&s, enrollment("Dev-A"), Precondition::NotExists).await.unwrap();
    let old_a = store.put_registration(&s, record("Dev-A", None), Precondition::NotExists.into()).await.unwrap();
    let old_g =
        store.put_registration(&s, record("Sensor-1", Some("Line-1")), Precondition::NotExists.into()).await.unwrap();
    let challenge = dps_core::model::TpmChallenge {
        registration_id: "tpm-1".into(),
        key: "aXNzdWVkLWtleS0xMjM0NTY3ODkwMTIzNDU2Nzg5MDEy".into(),
        endorsement_key_sha256: "ab".repeat(32),
        storage_root_key_sha256: "cd".repeat(32),
        authentication_key: "AAAA".repeat(10),
        expires_at: dps_core::store::unix_now() + 600,
        consumed: false,
        etag: None,
    };
    let challenge = store.put_tpm_challenge(&s, challenge, Precondition::None).await.unwrap();
    let old_b = store.put_registration(&s, record("Dev-B", None), Precondition::NotExists.into()).await.unwrap();
    for (id, sk) in
        [("dev-a", "registration"), ("sensor-1", "registration"), ("tpm-1", "tpmChallenge"), ("dev-b", "registration")]
    {
        make_legacy(&store, &format!("{sl}#rec#{id}"), sk).await;
    }
    // Dev-B registered again after the upgrade, before the migration ran: its new record is the newer one.
    let new_b =
        store.put_registration(&s, record("Dev-B", Some("Line-1")), Precondition::NotExists.into()).await.unwrap();

    assert_eq!(store.get_registration(&s, "dev-a").await.unwrap(), None, "layout 1 records are not seen before");
    let context = store.device_context(&s, "dev-a").await.unwrap();
    assert!(context.enrollment.is_some() && context.record.is_none());

    let report = store.migrate_records().await.unwrap();
    assert_eq!(report, dps_store_dynamodb::Migration { moved: 3, superseded: 1, changed: 0 });
    assert_eq!(store.get_registration(&s, "DEV-A").await.unwrap(), Some(old_a.clone()));
    let context = store.device_context(&s, "dev-a").await.unwrap();
    assert_eq!((context.enrollment.map(|e| e.registration_id), context.record), (Some("Dev-A".into()), Some(old_a)));
    assert_eq!(store.get_registration(&s, "sensor-1").await.unwrap(), Some(old_g));
    assert_eq!(store.get_registration(&s, "dev-b").await.unwrap(), Some(new_b), "the newer record won");
    assert_ne!(Some(old_b), store.get_registration(&s, "dev-b").await.unwrap());
    assert_eq!(store.get_tpm_challenge(&s, "tpm-1").await.unwrap(), Some(challenge.clone()), "TTL and all moved");

    let items = raw_items(&store).await;
    let left: Vec<_> = items.keys().filter(|(pk, sk)| pk.contains("#dev#") && sk != "enrollment").collect();
    assert!(left.is_empty(), "nothing but enrollments in device partitions: {left:?}");
    let moved_challenge = &items[&(format!("{sl}#rec#tpm-1"), "tpmChallenge".to_string())];
    assert_eq!(moved_challenge.get(TTL), Some(&challenge.expires_at.to_string()), "still expires");
    let listed =
        store.query_registrations(&s, "line-1", PageRequest { max_items: 10, continuation: None }).await.unwrap();
    let ids: Vec<_> = listed.items.iter().map(|r| r.registration_id.as_str()).collect();
    assert_eq!(ids, ["Dev-B", "Sensor-1"], "index entries moved with their records, none twice");

    let again = store.migrate_records().await.unwrap();
    assert_eq!(again, dps_store_dynamodb::Migration::default(), "nothing left to move");
}

/// The device function's role may write only in record partitions, but it chooses an item's attributes, index
/// keys included. An item written there that claims a place in another listing (the scope's groups, its
/// enrollments, another scope's registrations, the instances) is not listed: a listing returns only items kept
/// where their entity is.
#[tokio::test]
async fn items_forged_into_a_record_partition_stay_out_of_other_listings() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use dps_core::model::{EnrollmentGroup, Instance};
    let store = support::store().await;
    let (s, other) = (scope(), scope());
    let (sl, ol) = (s.to_ascii_lowercase(), other.to_ascii_lowercase());
    let group: EnrollmentGroup = serde_json::from_value(json!({
        "enrollmentGroupId": "line-1", "attestation": { "type": "symmetricKey", "symmetricKey": {} },
    }))
    .unwrap();
    store.save(&s, group, Precondition::NotExists).await.unwrap();
    store.save(&s, enrollment("dev-a"), Precondition::NotExists).await.unwrap();
    store.put_registration(&other, record("dev-b", Some("line-9")), Precondition::NotExists.into()).await.unwrap();
    let instance: Instance = serde_json::from_value(json!({
        "name": format!("n-{s}"), "idScope": s, "serviceHostName": format!("{s}.example.net"),
    }))
    .unwrap();
    store.create_instance(instance).await.unwrap();

    let forged_group =
        json!({ "enrollmentGroupId": "evil", "attestation": { "type": "symmetricKey", "symmetricKey": {} } });
    let forged_instance = json!({ "name": "evil", "idScope": "evil", "serviceHostName": "evil.example.net" });
    let enrollment_shards = dps_store_dynamodb::layout::ENROLLMENT_SHARDS;
    let registration_shards = dps_store_dynamodb::layout::REGISTRATION_SHARDS;
    let mut forgeries = vec![(format!("{sl}#groups"), "evil".to_string(), forged_group.clone())];
    forgeries.extend(
        (0..enrollment_shards).map(|n| (format!("{sl}#enrollments#{n}"), "evil".into(), json!(enrollment("evil")))),
    );
    forgeries.extend(
        (0..registration_shards).map(|n| {
            (format!("{ol}#grp#line-9#registrations#{n}"), "evil".into(), json!(record("evil", Some("line-9"))))
        }),
    );
    forgeries.push(("instances".into(), "evil".into(), forged_instance));
    for (n, (gsi1pk, gsi1sk, doc)) in forgeries.into_iter().enumerate() {
        let item = HashMap::from([
            (PK.to_string(), AttributeValue::S(format!("{sl}#rec#forged-{n}"))),
            (SK.to_string(), AttributeValue::S("registration".into())),
            (GSI1PK.to_string(), AttributeValue::S(gsi1pk)),
            (GSI1SK.to_string(), AttributeValue::S(gsi1sk)),
            ("etag".to_string(), AttributeValue::S("\"x\"".into())),
            ("doc".to_string(), AttributeValue::S(doc.to_string())),
        ]);
        store.client().put_item().table_name(store.table_name()).set_item(Some(item)).send().await.unwrap();
    }

    let page = || PageRequest { max_items: 100, continuation: None };
    let groups = store.page::<EnrollmentGroup>(&s, page()).await.unwrap();
    assert_eq!(groups.items.iter().map(|g| g.enrollment_group_id.as_str()).collect::<Vec<_>>(), ["line-1"]);
    let enrollments = store.page::<IndividualEnrollment>(&s, page()).await.unwrap();
    assert_eq!(enrollments.items.iter().map(|e| e.registration_id.as_str()).collect::<Vec<_>>(), ["dev-a"]);
    let records = store.query_registrations(&other, "line-9", page()).await.unwrap();
    assert_eq!(records.items.iter().map(|r| r.registration_id.as_str()).collect::<Vec<_>>(), ["dev-b"]);
    let instances = store.list_instances().await.unwrap();
    assert!(instances.iter().all(|i| i.id_scope != "evil"), "{instances:?}");
    assert!(instances.iter().any(|i| i.id_scope == s));
}

#[tokio::test]
async fn counters_expire_when_a_retention_is_set() {
    let store = support::store().await.with_counter_retention(Some(Duration::from_secs(400 * 86_400)));
    let s = scope();
    store.add_operations(&s, "2030-01-01", OperationKind::ServiceOperation, 2).await.unwrap();
    let meter = OperationCount { date: "2030-01-01".into(), kind: OperationKind::Registration, count: 1 };
    store.put_registration(&s, record("dev-1", None), Precondition::NotExists.counting(Some(meter))).await.unwrap();
    let items = raw_items(&store).await;
    let counters: Vec<_> = items.iter().filter(|((pk, _), _)| pk.contains("#ops#")).collect();
    assert_eq!(counters.len(), 2);
    // End of 2030-01-01 UTC plus 400 days.
    let expected = (1_893_542_400u64 + 400 * 86_400).to_string();
    assert!(counters.iter().all(|(_, item)| item.get(TTL) == Some(&expected)), "{counters:?}");
    assert!(items.iter().filter(|((pk, _), _)| !pk.contains("#ops#")).all(|(_, i)| !i.contains_key(TTL)));
}

#[tokio::test]
async fn oversized_entities_are_refused_as_too_large() {
    let store = support::store().await;
    let mut big = enrollment("dev-1");
    big.spec.initial_twin = Some(json!({ "tags": { "blob": "x".repeat(420_000) } }));
    let result = store.save(&scope(), big, Precondition::None).await;
    assert!(matches!(result, Err(Error::PayloadTooLarge(_))), "{result:?}");
}

#[tokio::test]
async fn config_from_a_lookup_reaches_the_table() {
    let table = format!("dps-config-{}", std::process::id());
    let vars = HashMap::from([
        ("DPS_TABLE_NAME", table.clone()),
        ("DPS_DYNAMODB_ENDPOINT", support::moto_endpoint()),
        ("AWS_REGION", "eu-west-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ]);
    let config = DynamoConfig::from_env(|k| vars.get(k).cloned()).unwrap();
    let store = config.connect().await;
    assert_eq!(store.table_name(), table);
    create_table(store.client(), &table).await.unwrap();
    let s = scope();
    let written = store.save(&s, enrollment("dev-1"), Precondition::NotExists).await.unwrap();
    assert_eq!(store.load::<IndividualEnrollment>(&s, "DEV-1").await.unwrap(), Some(written));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_after_retries() {
    // A port nobody listens on: every attempt is refused, the SDK retries, then the domain sees Unavailable.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = support::CallLog::default();
    let config = support::sdk_config().endpoint_url(format!("http://127.0.0.1:{port}")).interceptor(log.clone());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config.build()), "nowhere");
    let result = store.load::<IndividualEnrollment>(&scope(), "dev-1").await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert_eq!(log.attempts().len(), support::MAX_ATTEMPTS as usize, "retried before giving up");
}
