//! In-process cost of a first-time registration through `Dps::register` (group device, derived key, unique
//! registration IDs), on the embedded store in a temporary directory and on its in-memory backend, and how it
//! scales with the number of enrollment groups in the instance (1, 100, 1000; the device's group sorts last, so
//! this is the worst case of the group search), and 10,000 groups that declare registration ID prefixes. The core's `MemoryStore` gives the service's own share.
//!
//! `register_x509_first_time` compares a first-time registration of an X.509 group device (RSA-2048 and ECDSA
//! P-256 chains of length 1 to 3, validated to the group's signing certificate) with a symmetric-key group device,
//! both on the memory store: what certificate attestation adds to the service's own work.
//!
//! `cargo bench -p dps-core --bench register`. Token signing and certificate generation by the "device" happen
//! outside the timed part.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use dps_attestation::testing::{self as certs, KeyKind, TestCert};
use dps_core::model::{EnrollmentGroup, RegistrationStatus};
use dps_core::store::{EnrollmentStore, Precondition, Store};
use dps_core::testing;
use dps_core::usecases::{DeviceCaller, RegisterRequest};
use dps_core::{Dps, Settings, sas};
use dps_store_embedded::EmbeddedStore;
use tokio::runtime::Runtime;

struct Bench {
    runtime: Runtime,
    dps: Dps,
    scope: String,
    group_key: String,
    next: AtomicU64,
    _dir: Option<tempfile::TempDir>,
}

/// A symmetric-key group; `prefix`: the registration IDs it declares (the extension that shortlists groups).
fn group(id: &str, prefix: Option<&str>) -> EnrollmentGroup {
    serde_json::from_value(serde_json::json!({
        "enrollmentGroupId": id,
        "registrationIdPrefix": prefix,
        "attestation": { "type": "symmetricKey", "symmetricKey": {
            "primaryKey": sas::generate_key(), "secondaryKey": sas::generate_key() } }
    }))
    .unwrap()
}

impl Bench {
    fn new(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>, groups: usize) -> Self {
        Self::with_prefixes(store, dir, groups, false)
    }

    /// `prefixed`: every group declares a registration ID prefix of its own (tenant-like `t00042-`), the
    /// device's group `device-`.
    fn with_prefixes(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>, groups: usize, prefixed: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let dps = Dps::new(store.clone(), Settings::default());
        let (scope, group_key) = runtime.block_on(async {
            let hubs = (1..=3).map(|n| testing::hub(&format!("hub-{n}.example.net"))).collect();
            let instance = testing::instance(&dps, "bench", "bench.example.net", hubs).await;
            for n in 0..groups.saturating_sub(1) {
                let prefix = prefixed.then(|| format!("t{n:05}-"));
                let other = group(&format!("group-{n:05}"), prefix.as_deref());
                store.save(&instance.id_scope, other, Precondition::None).await.unwrap();
            }
            let target = group("zz-target", prefixed.then_some("device-"));
            let target = store.save(&instance.id_scope, target, Precondition::None).await.unwrap();
            (instance.id_scope, target.spec.attestation.symmetric_key.unwrap().primary_key.unwrap())
        });
        Self { runtime, dps, scope, group_key, next: AtomicU64::new(0), _dir: dir }
    }

    fn file(groups: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        Self::new(store, Some(dir), groups)
    }

    /// The core's in-memory store: the service's own cost, with no database behind it.
    fn memory_store(groups: usize) -> Self {
        Self::new(Arc::new(dps_core::memory::MemoryStore::new()), None, groups)
    }

    /// A register request of a device never seen before (signed outside the measurement).
    fn request(&self) -> RegisterRequest {
        let id = format!("device-{:08}", self.next.fetch_add(1, Ordering::Relaxed));
        let key = sas::derive_device_key(&self.group_key, &id).unwrap();
        let token = testing::device_token(&self.scope, &id, &key, testing::in_an_hour());
        RegisterRequest {
            caller: DeviceCaller::sas(&self.scope, id.clone(), token),
            payload: None,
            api_version: "2021-06-01".into(),
            tpm: None,
            csr: None,
        }
    }

    fn register(&self, req: RegisterRequest) {
        let record = self.runtime.block_on(self.dps.register(req)).unwrap();
        assert_eq!(record.status, RegistrationStatus::Assigned);
    }
}

fn first_time_registration(c: &mut Criterion) {
    let mut g = c.benchmark_group("register_first_time");
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    let benches = [("embedded_file", Bench::file(1)), ("memory_store", Bench::memory_store(1))];
    for (name, bench) in benches {
        g.bench_function(name, |b| {
            b.iter_batched(|| bench.request(), |req| bench.register(req), BatchSize::SmallInput)
        });
    }
    g.finish();
}

fn group_count_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("register_by_group_count");
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    for groups in [1, 100, 1000] {
        let benches = [("embedded_file", Bench::file(groups)), ("memory_store", Bench::memory_store(groups))];
        for (backend, bench) in benches {
            g.bench_with_input(BenchmarkId::new(backend, groups), &groups, |b, _| {
                b.iter_batched(|| bench.request(), |req| bench.register(req), BatchSize::SmallInput)
            });
        }
    }
    // The extension: 10,000 groups that each declare a registration ID prefix (the goal: at most 1.2x one group).
    let groups = 10_000;
    let bench = Bench::with_prefixes(Arc::new(dps_core::memory::MemoryStore::new()), None, groups, true);
    g.bench_with_input(BenchmarkId::new("memory_store_prefixed", groups), &groups, |b, _| {
        b.iter_batched(|| bench.request(), |req| bench.register(req), BatchSize::SmallInput)
    });
    g.finish();
}

/// The two store calls a first-time registration makes, alone: where the embedded store's share goes.
fn store_calls(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_calls");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    let record: dps_core::model::RegistrationRecord = serde_json::from_value(serde_json::json!({
        "registrationId": "x", "status": "assigned", "assignedHub": "hub-1.example.net",
        "createdDateTimeUtc": "2024-05-01T12:00:00Z", "lastUpdatedDateTimeUtc": "2024-05-01T12:00:00Z",
        "enrollmentGroupId": "zz-target", "attestationType": "symmetricKey", "operationId": "op"
    }))
    .unwrap();
    let (name, bench) = ("embedded_file", Bench::file(1));
    let store = bench.dps.store().clone();
    let next = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("device_context", name), |b| {
        b.iter(|| bench.runtime.block_on(store.device_context(&bench.scope, "nobody")).unwrap())
    });
    g.bench_function(BenchmarkId::new("put_registration", name), |b| {
        b.iter_batched(
            || {
                let id = format!("r-{}", next.fetch_add(1, Ordering::Relaxed));
                dps_core::model::RegistrationRecord { registration_id: id, ..record.clone() }
            },
            |r| {
                bench.runtime.block_on(store.put_registration(&bench.scope, r, Precondition::NotExists.into())).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// An X.509 group device's chain as it presents it, for a chain of `len` (1: a leaf the group's root signed; 2: a
/// leaf and the intermediate that signed it; 3: the root too), and the group's signing certificate (the root).
struct X509Case {
    root: TestCert,
    intermediate: TestCert,
    kind: KeyKind,
    len: usize,
}

impl X509Case {
    fn new(kind: KeyKind, len: usize) -> Self {
        let root = certs::root("bench root", kind);
        let intermediate = root.intermediate("bench intermediate", kind);
        Self { root, intermediate, kind, len }
    }

    fn chain(&self, registration_id: &str) -> Vec<Vec<u8>> {
        match self.len {
            1 => vec![self.root.device(registration_id, self.kind).der],
            2 => vec![self.intermediate.device(registration_id, self.kind).der, self.intermediate.der.clone()],
            _ => vec![
                self.intermediate.device(registration_id, self.kind).der,
                self.intermediate.der.clone(),
                self.root.der.clone(),
            ],
        }
    }
}

fn x509_registration(c: &mut Criterion) {
    let mut g = c.benchmark_group("register_x509_first_time");
    g.sample_size(10).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    let symmetric = Bench::memory_store(1);
    g.bench_function("symmetric_key_group", |b| {
        b.iter_batched(|| symmetric.request(), |req| symmetric.register(req), BatchSize::SmallInput)
    });
    for (name, kind) in [("p256", KeyKind::EcdsaP256), ("rsa2048", KeyKind::Rsa2048(0))] {
        for len in 1..=3 {
            let case = X509Case::new(kind, len);
            let bench = Bench::memory_store(1);
            let group: EnrollmentGroup = serde_json::from_value(serde_json::json!({
                "enrollmentGroupId": "x509-group",
                "attestation": { "type": "x509", "x509": {
                    "signingCertificates": { "primary": { "certificate": case.root.pem } } } }
            }))
            .unwrap();
            bench.runtime.block_on(bench.dps.store().save(&bench.scope, group, Precondition::None)).unwrap();
            // The leaves are made before the clock starts (`iters` new devices per sample).
            g.bench_function(BenchmarkId::new(name, format!("len{len}")), |b| {
                b.iter_custom(|iters| {
                    let requests: Vec<RegisterRequest> = (0..iters)
                        .map(|_| {
                            let id = format!("x509-device-{:08}", bench.next.fetch_add(1, Ordering::Relaxed));
                            RegisterRequest {
                                caller: DeviceCaller {
                                    id_scope: bench.scope.clone(),
                                    registration_id: id.clone(),
                                    body_registration_id: Some(id.clone()),
                                    client_certificates: case.chain(&id),
                                    ..Default::default()
                                },
                                api_version: "2021-06-01".into(),
                                ..Default::default()
                            }
                        })
                        .collect();
                    let started = std::time::Instant::now();
                    for req in requests {
                        bench.register(req);
                    }
                    started.elapsed()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, first_time_registration, group_count_scaling, store_calls, x509_registration);
criterion_main!(benches);
