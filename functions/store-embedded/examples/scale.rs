//! What a registration and a status poll cost as the stored data grows: one embedded store holding DEVICES individually
//! enrolled, registered devices, built through the service's bulk path, then, in-process (no HTTP, no TLS):
//!
//! - first-time registrations (`Dps::register` of a device with an enrollment and no record: the sample's records
//!   are deleted, untimed, before each round),
//! - re-registrations (the same devices, records present),
//! - registration status polls (`Dps::registration_status`),
//!
//! each OPS operations with CONCURRENCY in flight, on a sample spread evenly over the whole key range (not the
//! devices written last, which would sit in the cache). Reports process CPU time (user + system, /proc/self/stat)
//! per operation, the rate, and the store's size on disk. The build: the enrollments through
//! `Dps::bulk_enrollments` (10 per call, as the service API and `dps import` send them, 64 calls in flight, so their
//! writes share durable commits), then one first-time registration per device (the records a registered fleet
//! leaves). A measurement, not a test. See docs/PERFORMANCE.md, "Stored-data scale".
//!
//! `cargo run --release -p dps-store-embedded --example scale -- DEVICES [OPS] [CONCURRENCY] [DIR]`

mod common;

use common::{Cost, measure};
use std::sync::Arc;

use dps_core::model::{IndividualEnrollment, OperationKind, RegistrationStatus};
use dps_core::store::{Precondition, Store};
use dps_core::usecases::{BulkMode, DeviceCaller, MAX_BULK_ITEMS, RegisterRequest, StatusRequest};
use dps_core::{Dps, Settings, sas, testing};
use dps_store_embedded::{DIR_NAME, EmbeddedStore};

/// Bulk calls in flight while building (each writes its items one after another).
const BUILD_CALLS: usize = 64;
/// Registrations in flight while building the records.
const BUILD_REGISTRATIONS: usize = 64;

impl Cost {
    fn report(&self, label: &str) {
        let (us, rate) = self.per_op();
        println!("{label:<34} {:>9} ops {us:>8.1} µs CPU/op {rate:>9.0}/s", self.ops);
    }
}

/// One round of registrations of the sampled devices: first-time or again, as their records stand.
async fn register_sample(
    dps: &Dps,
    fleet: &Fleet,
    picks: &Arc<Vec<usize>>,
    tokens: &Arc<Vec<String>>,
    concurrency: usize,
) -> Cost {
    let (d, f, p, t) = (dps.clone(), fleet.clone(), picks.clone(), tokens.clone());
    measure(picks.len(), concurrency, move |k| {
        let (dps, request) = (d.clone(), f.register(p[k], t[k].clone()));
        async move {
            let record = dps.register(request).await.expect("registered");
            assert_eq!(record.status, RegistrationStatus::Assigned);
        }
    })
    .await
}

/// The devices: IDs in key order, each key derived from one master key so that nothing per device is kept in memory.
#[derive(Clone)]
struct Fleet {
    scope: String,
    primary: String,
    secondary: String,
}

impl Fleet {
    fn id(i: usize) -> String {
        format!("device-{i:08}")
    }

    fn key(&self, i: usize) -> String {
        sas::derive_device_key(&self.primary, &Self::id(i)).expect("device key")
    }

    fn enrollment(&self, i: usize) -> IndividualEnrollment {
        let id = Self::id(i);
        let secondary = sas::derive_device_key(&self.secondary, &id).expect("device key");
        serde_json::from_value(serde_json::json!({
            "registrationId": id,
            "attestation": { "type": "symmetricKey",
                "symmetricKey": { "primaryKey": self.key(i), "secondaryKey": secondary } },
            "initialTwin": { "tags": { "line": "factory-1" } }
        }))
        .expect("enrollment")
    }

    fn token(&self, i: usize) -> String {
        testing::device_token(&self.scope, &Self::id(i), &self.key(i), testing::in_an_hour() + 3600)
    }

    fn register(&self, i: usize, token: String) -> RegisterRequest {
        RegisterRequest {
            caller: DeviceCaller::sas(&self.scope, Self::id(i), token),
            api_version: "2021-06-01".into(),
            ..Default::default()
        }
    }

    fn status(&self, i: usize, token: String) -> StatusRequest {
        StatusRequest { caller: DeviceCaller::sas(&self.scope, Self::id(i), token), ..Default::default() }
    }
}

/// Bytes on disk under the store's folder (journals and tables).
fn file_size(dir: &std::path::Path) -> u64 {
    fn walk(path: &std::path::Path) -> u64 {
        match std::fs::read_dir(path) {
            Ok(entries) => entries.flatten().map(|e| walk(&e.path())).sum(),
            Err(_) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        }
    }
    walk(&dir.join(DIR_NAME))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

async fn counted(store: &EmbeddedStore, scope: &str, kind: OperationKind) -> u64 {
    let counts = store.operations(scope, "2000-01-01", "2999-12-31").await.expect("operation counts");
    counts.iter().filter(|c| c.kind == kind).map(|c| c.count).sum()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i).map(|a| a.parse::<usize>().expect("usage: DEVICES [OPS] [CONCURRENCY] [DIR]")).unwrap_or(default)
    };
    let devices = number(0, 100_000);
    let ops = number(1, 20_000);
    let concurrency = number(2, 32);
    let temp = tempfile::tempdir().expect("temporary dir");
    let dir = args.get(3).map(std::path::PathBuf::from).unwrap_or_else(|| temp.path().to_path_buf());
    println!(
        "{devices} stored devices, {ops} operations per measurement, {concurrency} in flight, dir {}",
        dir.display()
    );

    let store = Arc::new(EmbeddedStore::open(&dir).expect("open store"));
    let dps = Dps::new(store.clone(), Settings::default());
    let instance = testing::instance(&dps, "scale", "scale.example.net", vec![testing::hub("hub-1.example.net")]).await;
    let owner = Arc::new(testing::owner(&dps, &instance).await);
    let fleet =
        Fleet { scope: instance.id_scope.clone(), primary: sas::generate_key(), secondary: sas::generate_key() };

    // Build: the enrollments in bulk calls, then the records.
    let calls = devices.div_ceil(MAX_BULK_ITEMS);
    let (d, f, o) = (dps.clone(), fleet.clone(), owner.clone());
    let enrolled = measure(calls, BUILD_CALLS, move |call| {
        let (dps, fleet, owner) = (d.clone(), f.clone(), o.clone());
        async move {
            let items =
                (call * MAX_BULK_ITEMS..((call + 1) * MAX_BULK_ITEMS).min(devices)).map(|i| fleet.enrollment(i));
            let outcome = dps.bulk_enrollments(&owner, BulkMode::Create, items.collect()).await.expect("bulk call");
            assert!(outcome.errors.is_empty(), "bulk items failed: {:?}", outcome.errors);
        }
    })
    .await;
    Cost { ops: devices, ..enrolled }.report("build: enrollments (bulk)");
    let (d, f) = (dps.clone(), fleet.clone());
    let registered = measure(devices, BUILD_REGISTRATIONS, move |i| {
        let (dps, fleet) = (d.clone(), f.clone());
        async move {
            let record = dps.register(fleet.register(i, fleet.token(i))).await.expect("registered");
            assert_eq!(record.status, RegistrationStatus::Assigned);
        }
    })
    .await;
    registered.report("build: first registrations");
    let built = file_size(&dir);
    println!("file after the build: {} ({:.0} bytes per device)", mib(built), built as f64 / devices as f64);

    // The sample: evenly spread over the key range, tokens made before any clock starts.
    let sample = devices.div_ceil(2).min(ops).max(1);
    let stride = devices / sample;
    let picks: Arc<Vec<usize>> = Arc::new((0..sample).map(|k| k * stride).collect());
    let tokens: Arc<Vec<String>> = Arc::new(picks.iter().map(|&i| fleet.token(i)).collect());
    let rounds = ops.div_ceil(sample);
    println!("sample: {sample} devices, every {stride}th; {rounds} round(s) per measurement");

    let first_before = counted(&store, &fleet.scope, OperationKind::Registration).await;
    let mut first = Cost::default();
    for _ in 0..rounds {
        let (s, p) = (store.clone(), picks.clone());
        let scope = fleet.scope.clone();
        measure(sample, concurrency, move |k| {
            let (store, scope, id) = (s.clone(), scope.clone(), Fleet::id(p[k]));
            async move { store.delete_registration(&scope, &id, Precondition::None.into()).await.expect("deleted") }
        })
        .await;
        first += register_sample(&dps, &fleet, &picks, &tokens, concurrency).await;
    }
    let first_counted = counted(&store, &fleet.scope, OperationKind::Registration).await - first_before;
    assert_eq!(first_counted as usize, first.ops, "every measured first-time registration counted as one");
    first.report("first-time registration");

    let again_before = counted(&store, &fleet.scope, OperationKind::ReRegistration).await;
    let mut again = Cost::default();
    for _ in 0..rounds {
        again += register_sample(&dps, &fleet, &picks, &tokens, concurrency).await;
    }
    let again_counted = counted(&store, &fleet.scope, OperationKind::ReRegistration).await - again_before;
    assert_eq!(again_counted as usize, again.ops, "every measured re-registration counted as one");
    again.report("re-registration");

    let mut polls = Cost::default();
    for _ in 0..rounds {
        let (d, f, p, t) = (dps.clone(), fleet.clone(), picks.clone(), tokens.clone());
        polls += measure(sample, concurrency, move |k| {
            let (dps, request) = (d.clone(), f.status(p[k], t[k].clone()));
            async move {
                let record = dps.registration_status(request).await.expect("status");
                assert_eq!(record.status, RegistrationStatus::Assigned);
            }
        })
        .await;
    }
    polls.report("registration status poll");
    let stats = store.commit_stats();
    println!(
        "file at the end: {}; {:.1} writes per durable commit over the run",
        mib(file_size(&dir)),
        stats.writes as f64 / stats.commits.max(1) as f64
    );
}
