//! The device path's DynamoDB calls do not grow with the stored data: the calls of a first-time registration
//! (individual and group device), a re-registration and both status polls are counted in a table holding a few
//! devices, and again after hundreds more devices (individual enrollments with their records, and records of one
//! group's devices) were stored; the two counts must be the same, and within the budget (2, 2, 1).
//! Calls are counted, not keys: this holds whatever the item layout.
//!
//! It also prints the sizes of the items a registration writes and reads, by DynamoDB's item size rules
//! (`--nocapture`), the inputs of the capacity figures in docs/PERFORMANCE.md.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use dps_core::model::{EnrollmentGroup, IndividualEnrollment, RegistrationRecord, RegistrationStatus};
use dps_core::usecases::{BulkMode, DeviceCaller, MAX_BULK_ITEMS, RegisterRequest, StatusRequest};
use dps_core::{Caller, Dps, Result, Settings, sas, testing};
use dps_store_dynamodb::{DynamoStore, create_table};
use futures::StreamExt;
use serde_json::json;
use support::CallLog;

/// Stored devices added between the two counts: individually enrolled and registered, and registered in a group.
const MORE_INDIVIDUAL: usize = 60;
const MORE_IN_GROUP: usize = 60;

struct Env {
    dps: Dps,
    client: aws_sdk_dynamodb::Client,
    table: String,
    log: CallLog,
    scope: String,
    caller: Caller,
    group_key: String,
}

impl Env {
    async fn new() -> Self {
        let log = CallLog::default();
        let client = aws_sdk_dynamodb::Client::from_conf(support::sdk_config().interceptor(log.clone()).build());
        let table = format!("dps-scale-{}", std::process::id());
        create_table(&client, &table).await.expect("create the test table on moto");
        let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
        // A long cache TTL: the budget is about warm functions.
        let dps = Dps::new(store, Settings { cache_ttl: Duration::from_secs(600), ..Settings::default() });
        let host = format!("scale-{}.example.net", std::process::id());
        let instance = testing::instance(&dps, "scale", &host, vec![testing::hub("hub-1.example.net")]).await;
        let caller = testing::owner(&dps, &instance).await;
        let group_key = sas::generate_key();
        let group: EnrollmentGroup = serde_json::from_value(json!({
            "enrollmentGroupId": "line-1",
            "attestation": { "type": "symmetricKey",
                "symmetricKey": { "primaryKey": group_key, "secondaryKey": sas::generate_key() } },
        }))
        .unwrap();
        dps.put_enrollment(&caller, "line-1", group, None).await.expect("group");
        Self { dps, client, table, log, scope: instance.id_scope, caller, group_key }
    }

    /// Each device's key: derived from the group key, so that any ID has a key without keeping one.
    fn key(&self, id: &str) -> String {
        sas::derive_device_key(&self.group_key, id).unwrap()
    }

    /// Enroll `ids` individually, through the service's bulk path (10 per call), each with the key [`Env::key`]
    /// gives it.
    async fn enroll(&self, ids: &[String]) {
        for chunk in ids.chunks(MAX_BULK_ITEMS) {
            let items: Vec<IndividualEnrollment> = chunk
                .iter()
                .map(|id| {
                    serde_json::from_value(json!({
                        "registrationId": id,
                        "attestation": { "type": "symmetricKey",
                            "symmetricKey": { "primaryKey": self.key(id), "secondaryKey": sas::generate_key() } },
                        "initialTwin": { "tags": { "line": "factory-1" } }
                    }))
                    .unwrap()
                })
                .collect();
            let outcome = self.dps.bulk_enrollments(&self.caller, BulkMode::Create, items).await.expect("bulk");
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        }
    }

    async fn register(&self, id: &str) -> Result<RegistrationRecord> {
        let token = testing::device_token(&self.scope, id, &self.key(id), testing::in_an_hour());
        self.dps
            .register(RegisterRequest {
                caller: DeviceCaller::sas(&self.scope, id, token),
                api_version: "2021-06-01".into(),
                ..Default::default()
            })
            .await
    }

    async fn status(&self, id: &str, operation_id: Option<&str>) -> Result<RegistrationRecord> {
        let request = StatusRequest {
            caller: DeviceCaller::sas(
                &self.scope,
                id,
                testing::device_token(&self.scope, id, &self.key(id), testing::in_an_hour()),
            ),
            operation_id: operation_id.map(str::to_string),
        };
        match operation_id {
            Some(_) => self.dps.operation_status(request).await,
            None => self.dps.registration_status(request).await,
        }
    }

    /// Register `ids`, 8 at a time.
    async fn register_all(&self, ids: &[String]) {
        let results: Vec<_> =
            futures::stream::iter(ids).map(|id| self.register(id)).buffer_unordered(8).collect().await;
        for result in results {
            assert_eq!(result.expect("registered").status, RegistrationStatus::Assigned);
        }
    }

    /// The calls of each device operation, for the devices `individual` (enrolled, not yet registered) and
    /// `grouped` (in the group, not yet registered).
    async fn device_calls(&self, individual: &str, grouped: &str) -> Vec<(&'static str, Vec<String>)> {
        let mut calls = Vec::new();
        self.log.reset();
        let first = self.register(individual).await.expect("first registration");
        assert_eq!(first.enrollment_group_id, None, "{individual} registered through its own enrollment");
        calls.push(("first-time registration", self.log.operations()));
        self.log.reset();
        let in_group = self.register(grouped).await.expect("first group registration");
        assert_eq!(in_group.enrollment_group_id.as_deref(), Some("line-1"));
        calls.push(("first-time group registration", self.log.operations()));
        self.log.reset();
        let again = self.register(individual).await.expect("re-registration");
        calls.push(("re-registration", self.log.operations()));
        self.log.reset();
        assert_eq!(self.status(individual, None).await.expect("status"), again);
        calls.push(("registration status poll", self.log.operations()));
        self.log.reset();
        self.status(individual, Some(&again.operation_id)).await.expect("operation status");
        calls.push(("operation status poll", self.log.operations()));
        self.log.reset();
        calls
    }

    /// Every item of the table, as (its `type` attribute, its DynamoDB item size).
    async fn item_sizes(&self) -> Vec<(String, usize)> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self.client.scan().table_name(&self.table).set_exclusive_start_key(start).send().await;
            let page = page.expect("scan");
            for item in page.items() {
                let kind = match item.get("type") {
                    Some(AttributeValue::S(kind)) => kind.clone(),
                    _ => "(no type: counter shards)".to_string(),
                };
                items.push((kind, item_size(item)));
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        items
    }
}

/// An item's size by DynamoDB's rules: each attribute's name plus its value (strings and binaries their length,
/// numbers about one byte per two digits plus one, maps and lists 3 bytes plus their elements).
fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.trim_start_matches('-').replace('.', "").len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| k.len() + 1 + value_size(v)).sum::<usize>(),
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

#[tokio::test]
async fn device_calls_do_not_grow_with_stored_devices() {
    let env = Env::new().await;
    env.enroll(&["warm-up".to_string(), "small-1".to_string(), "large-1".to_string()]).await;
    env.register("warm-up").await.expect("warm-up loads the instance into the cache");
    env.register("sensor-warm-up").await.expect("a group device's registration loads the groups into the cache");
    let records = |items: &[(String, usize)]| items.iter().filter(|(kind, _)| kind.as_str() == "registration").count();
    let few = records(&env.item_sizes().await);
    let small = env.device_calls("small-1", "sensor-small").await;

    let individual = ids("device", MORE_INDIVIDUAL);
    env.enroll(&individual).await;
    env.register_all(&individual).await;
    env.register_all(&ids("sensor", MORE_IN_GROUP)).await;
    let stored = env.item_sizes().await;
    let many = records(&stored);
    assert!(many > MORE_INDIVIDUAL + MORE_IN_GROUP, "the table holds the stored devices' records ({many})");

    let large = env.device_calls("large-1", "sensor-large").await;
    println!("\n| device operation | calls, {few} records stored | calls, {many} records stored |");
    println!("|---|---|---|");
    for ((name, few), (_, many)) in small.iter().zip(&large) {
        println!("| {name} | {} | {} |", few.join(", "), many.join(", "));
    }
    assert_eq!(small, large, "calls per device operation with few and with many stored devices");
    let budget = [
        ("first-time registration", 2),
        ("first-time group registration", 2),
        ("re-registration", 2),
        ("registration status poll", 1),
        ("operation status poll", 1),
    ];
    for ((name, calls), (budget_name, most)) in large.iter().zip(budget) {
        assert_eq!(*name, budget_name);
        assert!(calls.len() <= most, "{name}: {calls:?}, budget {most}");
    }

    // The sizes behind the capacity units: what the registration path reads and writes per device.
    let mut kinds: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    for (kind, size) in stored {
        let entry = kinds.entry(kind).or_insert((0, 0, usize::MAX));
        *entry = (entry.0 + 1, entry.1.max(size), entry.2.min(size));
    }
    println!("\n| item type | items | smallest | largest (bytes, DynamoDB item size) |\n|---|---:|---:|---:|");
    for (kind, (count, largest, smallest)) in kinds {
        println!("| {kind} | {count} | {smallest} | {largest} |");
    }
}
