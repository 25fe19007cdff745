//! Where a first-time registration's CPU goes, in-process, with many registrations in flight (as a busy server
//! has them): `Dps::register` for N new devices of one symmetric-key group with C concurrent callers, on
//!
//! 1. the core's `MemoryStore` (the service's own work: SAS check, key derivation, allocation, record building),
//! 2. the embedded store (fjall) in a temporary folder (plus the batches, JSON and durable commits, shared by the
//!    group commit),
//!
//! and the bare store write (`put_registration` of a ready record on a file) for comparison. Reports process CPU
//! time (user + system, /proc/self/stat) per registration, the rate, and writes per durable commit. A
//! measurement, not a test. See docs/PERFORMANCE.md.
//!
//! `cargo run --release -p dps-store-embedded --example breakdown -- [DEVICES] [CONCURRENCY]`

mod common;

use common::{measure, process_cpu};
use std::sync::Arc;
use std::time::Instant;

use dps_core::memory::MemoryStore;
use dps_core::model::{EnrollmentGroup, OperationCount, OperationKind, RegistrationRecord};
use dps_core::store::{EnrollmentStore, Precondition, Store};
use dps_core::testing;
use dps_core::usecases::{DeviceCaller, RegisterRequest};
use dps_core::{Dps, Settings, sas};
use dps_store_embedded::EmbeddedStore;

/// An instance with one linked hub and one group; the tokens of `devices` new devices of that group.
async fn prepare(store: Arc<dyn Store>, devices: usize) -> (Dps, Vec<RegisterRequest>) {
    let dps = Dps::new(store.clone(), Settings::default());
    let instance = testing::instance(&dps, "bench", "bench.example.net", vec![testing::hub("hub-1.example.net")]).await;
    let scope = instance.id_scope;
    let group: EnrollmentGroup = serde_json::from_value(serde_json::json!({
        "enrollmentGroupId": "group-1",
        "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": sas::generate_key() } }
    }))
    .unwrap();
    let group = store.save(&scope, group, Precondition::None).await.unwrap();
    let key = group.spec.attestation.symmetric_key.unwrap().primary_key.unwrap();
    let requests = (0..devices)
        .map(|i| {
            let id = format!("device-{i}");
            let device_key = sas::derive_device_key(&key, &id).unwrap();
            let token = testing::device_token(&scope, &id, &device_key, testing::in_an_hour());
            RegisterRequest {
                caller: DeviceCaller::sas(&scope, id, token),
                payload: None,
                api_version: "2021-06-01".into(),
                ..Default::default()
            }
        })
        .collect();
    (dps, requests)
}

async fn registrations(label: &str, store: Arc<dyn Store>, n: usize, concurrency: usize) {
    let (dps, requests) = prepare(store, n).await;
    let requests = Arc::new(requests);
    let cost = measure(n, concurrency, move |i| {
        let (dps, requests) = (dps.clone(), requests.clone());
        async move {
            let record = dps.register(requests[i].clone()).await.expect("registered");
            assert_eq!(record.status, dps_core::model::RegistrationStatus::Assigned);
        }
    })
    .await;
    let (cpu, rate) = cost.per_op();
    println!("{label:<48} {cpu:>8.1} µs CPU/registration {rate:>9.0}/s");
}

fn record(id: &str) -> RegistrationRecord {
    serde_json::from_value(serde_json::json!({
        "registrationId": id, "status": "assigned", "assignedHub": "hub-1.example.net", "deviceId": id,
        "createdDateTimeUtc": "2024-05-01T12:00:00Z", "lastUpdatedDateTimeUtc": "2024-05-01T12:00:00Z",
        "enrollmentGroupId": "group-1", "attestationType": "symmetricKey", "operationId": "op-1"
    }))
    .unwrap()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("numbers: DEVICES CONCURRENCY"));
    let n = args.next().unwrap_or(20_000);
    let concurrency = args.next().unwrap_or(32);
    println!("{n} first-time registrations, {concurrency} in flight, {} worker threads", num_threads());

    registrations("Dps::register on MemoryStore", Arc::new(MemoryStore::new()), n, concurrency).await;
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let before = file.commit_stats();
    registrations("Dps::register on embedded, file", file.clone(), n, concurrency).await;
    let after = file.commit_stats();
    let writes = (after.writes - before.writes) as f64;
    println!(
        "    {:.1} writes per durable commit ({} commits)",
        writes / (after.commits - before.commits).max(1) as f64,
        after.commits - before.commits
    );

    for (label, n, concurrency) in [
        ("put_registration on embedded, file", n, concurrency),
        ("put_registration, 1 in flight (a commit each)", n.min(2000), 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let cost = measure(n, concurrency, move |i| {
            let store = store.clone();
            async move {
                let meter = OperationCount { date: "2024-05-01".into(), kind: OperationKind::Registration, count: 1 };
                let record = record(&format!("device-{i}"));
                let put = store.put_registration("0ne00000001", record, Precondition::NotExists.counting(Some(meter)));
                put.await.expect("written");
            }
        })
        .await;
        let (cpu, rate) = cost.per_op();
        println!("{label:<48} {cpu:>8.1} µs CPU/write        {rate:>9.0}/s");
    }

    // The floor's keyed hashes: a group device's key derivation plus its token's signature check.
    let key = sas::generate_key();
    let rounds = 100_000;
    let (cpu, wall) = (process_cpu(), Instant::now());
    for i in 0..rounds {
        let device_key = sas::derive_device_key(&key, &format!("device-{i}")).unwrap();
        std::hint::black_box(
            sas::token("0ne00000001/registrations/device", &device_key, 1, Some("registration")).unwrap(),
        );
    }
    let (cpu, wall) = (process_cpu() - cpu, wall.elapsed());
    println!(
        "{:<48} {:>8.2} µs CPU/device ({:.2} µs wall)",
        "derive_device_key + sign a token (2 HMACs)",
        cpu.as_secs_f64() * 1e6 / rounds as f64,
        wall.as_secs_f64() * 1e6 / rounds as f64
    );
}

fn num_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
