//! What the device function's work costs in CPU per operation on the DynamoDB store: `Dps::register` (first
//! time, then again) and `Dps::registration_status` for DEVICES individually enrolled devices, one request at a
//! time (a Lambda instance serves one request at a time), against a local moto server started for the run. The
//! process CPU time (its threads' run time, /proc/self/task/*/schedstat) is the service plus the SDK's work (request building,
//! signing, HTTP, parsing); moto's runs in its own process and is not counted. Wall time is mostly moto's and says
//! nothing about DynamoDB's latency. A measurement, not a test. See docs/PERFORMANCE.md, "Cost per million
//! registrations on AWS".
//!
//! `scripts/setup/moto.sh; cargo run --release -p dps-store-dynamodb --example handler-cost -- [DEVICES]`

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use dps_core::model::{IndividualEnrollment, RegistrationStatus};
use dps_core::usecases::{BulkMode, DeviceCaller, MAX_BULK_ITEMS, RegisterRequest, StatusRequest};
use dps_core::{Dps, Settings, sas, testing};
use dps_store_dynamodb::{DynamoStore, create_table, http_client, retry_config};

/// CPU time of this process's live threads, in nanoseconds (/proc/self/task/*/schedstat): finer than the 10 ms
/// ticks of /proc/self/stat, which a few hundred requests of a few hundred µs each would not fill.
fn process_cpu() -> Duration {
    let tasks = std::fs::read_dir("/proc/self/task").map(|dir| dir.flatten().collect::<Vec<_>>()).unwrap_or_default();
    let ns = tasks
        .iter()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_nanos(ns)
}

fn report(label: &str, n: usize, cpu: Duration, wall: Duration) {
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("{label:<28} {n:>6} ops {:>8.0} µs CPU/op {:>8.0} µs wall/op (moto)", per(cpu), per(wall));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let devices: usize = std::env::args().nth(1).map(|a| a.parse().expect("usage: [DEVICES]")).unwrap_or(1000);
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "example"))
        .endpoint_url(dps_test_support::moto_endpoint())
        .http_client(http_client())
        .retry_config(retry_config(4))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    create_table(&client, "dps-cost").await.expect("create the table on moto");
    let store = std::sync::Arc::new(DynamoStore::new(client, "dps-cost"));
    let dps = Dps::new(store, Settings { cache_ttl: Duration::from_secs(600), ..Settings::default() });
    let instance = testing::instance(&dps, "cost", "cost.example.net", vec![testing::hub("hub-1.example.net")]).await;
    let owner = testing::owner(&dps, &instance).await;
    let scope = instance.id_scope.clone();
    let master = sas::generate_key();
    let id = |i: usize| format!("device-{i:06}");
    let key = |i: usize| sas::derive_device_key(&master, &id(i)).unwrap();
    for start in (0..devices + 1).step_by(MAX_BULK_ITEMS) {
        let items: Vec<IndividualEnrollment> = (start..(start + MAX_BULK_ITEMS).min(devices + 1))
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "registrationId": id(i),
                    "attestation": { "type": "symmetricKey",
                        "symmetricKey": { "primaryKey": key(i), "secondaryKey": sas::generate_key() } },
                    "initialTwin": { "tags": { "line": "factory-1" } }
                }))
                .unwrap()
            })
            .collect();
        let outcome = dps.bulk_enrollments(&owner, BulkMode::Create, items).await.expect("bulk");
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    }
    let token = |i: usize| testing::device_token(&scope, &id(i), &key(i), testing::in_an_hour());
    let register = |i: usize, token: String| RegisterRequest {
        caller: DeviceCaller::sas(&scope, id(i), token),
        api_version: "2021-06-01".into(),
        ..Default::default()
    };
    // Device `devices` warms the caches (instance, groups), as an earlier request of a warm function has.
    dps.register(register(devices, token(devices))).await.expect("warm-up");
    let tokens: Vec<String> = (0..devices).map(token).collect();
    println!("{devices} devices, one request at a time, warm caches");

    for label in ["first-time registration", "re-registration"] {
        let (cpu, wall) = (process_cpu(), Instant::now());
        for (i, token) in tokens.iter().enumerate() {
            let record = dps.register(register(i, token.clone())).await.expect("registered");
            assert_eq!(record.status, RegistrationStatus::Assigned);
        }
        report(label, devices, process_cpu() - cpu, wall.elapsed());
    }
    let (cpu, wall) = (process_cpu(), Instant::now());
    for (i, token) in tokens.iter().enumerate() {
        let request = StatusRequest { caller: DeviceCaller::sas(&scope, id(i), token.clone()), ..Default::default() };
        assert_eq!(dps.registration_status(request).await.expect("status").status, RegistrationStatus::Assigned);
    }
    report("registration status poll", devices, process_cpu() - cpu, wall.elapsed());
}
