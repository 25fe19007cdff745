//! Storage conformance suite: the contract of [`Store`] as executable cases, run by every adapter.
//!
//! An adapter's test file holds one line:
//!
//! ```ignore
//! dps_core::conformance_tests!(async { Arc::new(MyStore::connect().await) });
//! ```
//!
//! The argument is an expression evaluated afresh in every case, yielding a future of a [`Fixture`]: an
//! `Arc` of the store, or `(store, guard)` where the guard (a temporary directory, a table to drop) lives as long
//! as the case. Each case is a plain `#[test]` that builds its own multi-threaded tokio runtime, so the adapter's
//! test crate needs no tokio of its own. Cases use random ID scopes, instance names and host names, so a factory
//! may hand out stores that share one backing table.
//!
//! What the cases pin down, beyond the doc comment of [`crate::store`]:
//! - page continuations are opaque, pages come in ascending storage-key order ([`key`] of the ID);
//! - `operations` is ordered by date, then by [`OperationKind`]'s order;
//! - ID scopes are case-insensitive like the other keys, and so is the group ID of a registration query;
//! - pages are full up to `max_items` except the last, which may be empty; a page holding the rest ends the query;
//! - `put_registration` with a meter and `add_operations` count exactly, under any concurrency.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use serde_json::json;

use crate::error::{Error, Result};
use crate::model::{
    AccessPolicy, AllocationPolicy, AttestationMechanism, AttestationType, Enrollment, EnrollmentGroup, EnrollmentSpec,
    IndividualEnrollment, Instance, LinkedHub, OperationCount, OperationKind, ProvisioningStatus, RegistrationRecord,
    RegistrationStatus, Right, Substatus, SymmetricKeyAttestation, Timestamp,
};
use crate::store::{EnrollmentStore, PageRequest, Precondition, Store, key};

#[doc(hidden)]
pub use tokio;

/// What a conformance factory yields: the store under test, and whatever must live as long as it.
pub trait Fixture: Send + 'static {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
}

impl Fixture for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        self.clone()
    }
}

impl<S: Store> Fixture for Arc<S> {
    fn store(&self) -> Arc<dyn Store> {
        self.clone()
    }
}

impl<G: Send + 'static> Fixture for (Arc<dyn Store>, G) {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }
}

impl<S: Store, G: Send + 'static> Fixture for (Arc<S>, G) {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }
}

/// Run one case on a fresh store from `factory`, on a multi-threaded runtime (the races need real threads).
pub fn run<F, X, C, CF>(factory: F, case: C)
where
    F: Future<Output = X>,
    X: Fixture,
    C: FnOnce(Arc<dyn Store>) -> CF,
    CF: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance case");
    runtime.block_on(async move {
        let fixture = factory.await;
        case(fixture.store()).await;
        drop(fixture);
    });
}

/// Expand to one `#[test]` per conformance case, each on a fresh store from `$factory` (see the module docs).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::__conformance_cases!(
            $factory;
            instance_create_and_lookup,
            instance_conflicts_leave_nothing_behind,
            instance_update_with_etag,
            instance_list,
            scopes_are_isolated,
            registration_put_get_delete,
            registration_query_by_group,
            device_context_reads_both,
            operations_count_and_range,
            registration_meter_counts_iff_written,
            write_meters_count_iff_written,
            race_not_exists_one_winner,
            race_matches_one_winner,
            race_group_create_one_winner,
            concurrent_operation_counts_are_exact,
            tpm_challenge_put_get_consume,
            tpm_challenge_expires,
            tpm_challenge_scoped,
        );
        $crate::__conformance_cases!(
            $factory;
            enrollment_preconditions: item_preconditions<IndividualEnrollment>,
            enrollment_keys_are_case_insensitive: item_keys_are_case_insensitive<IndividualEnrollment>,
            enrollment_delete: item_delete<IndividualEnrollment>,
            enrollment_paging: item_paging<IndividualEnrollment>,
            group_preconditions: item_preconditions<EnrollmentGroup>,
            group_keys_are_case_insensitive: item_keys_are_case_insensitive<EnrollmentGroup>,
            group_delete: item_delete<EnrollmentGroup>,
            group_paging: item_paging<EnrollmentGroup>,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run($factory, $crate::conformance::$case);
            }
        )+
    };
    // Cases written once over both enrollment kinds (see `Sample`), named per kind.
    ($factory:expr; $($name:ident: $case:ident<$kind:ident>),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run($factory, $crate::conformance::$case::<$crate::model::$kind>);
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures

fn scope() -> String {
    crate::ids::new_id_scope()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn when() -> Timestamp {
    time::macros::datetime!(2024-05-01 12:30:45.123456789 UTC)
}

fn sample_instance(scope: &str) -> Instance {
    Instance {
        name: unique("dps"),
        id_scope: scope.to_string(),
        service_host_name: format!("{}.example.net", unique("svc")),
        allocation_policy: AllocationPolicy::Hashed,
        custom_allocation_definition: None,
        linked_hubs: vec![LinkedHub {
            host_name: "hub-1.example.net".into(),
            allocation_weight: 3,
            apply_allocation_policy: true,
            location: Some("eu-west-1".into()),
            connector: None,
        }],
        ca_certificates: Vec::new(),
        authorization_policies: vec![AccessPolicy {
            key_name: "owner".into(),
            primary_key: "cHJpbWFyeS1rZXktMTIzNDU2".into(),
            secondary_key: "c2Vjb25kYXJ5LWtleS0xMjM0".into(),
            rights: Right::ALL.to_vec(),
        }],
        allow_private_webhook_targets: false,
        webhook_signing_key: Some("c2lnbmluZy1rZXktMTIzNDU2".into()),
        etag: None,
        created_date_time_utc: Some(when()),
    }
}

fn sample_spec(note: &str) -> EnrollmentSpec {
    EnrollmentSpec {
        attestation: AttestationMechanism {
            kind: AttestationType::SymmetricKey,
            tpm: None,
            x509: None,
            symmetric_key: Some(SymmetricKeyAttestation {
                primary_key: Some("cHJpbWFyeS1rZXktMTIzNDU2".into()),
                secondary_key: Some("c2Vjb25kYXJ5LWtleS0xMjM0".into()),
            }),
        },
        capabilities: None,
        iot_hub_host_name: None,
        initial_twin: Some(json!({ "tags": { "note": note } })),
        etag: None,
        provisioning_status: ProvisioningStatus::Enabled,
        reprovision_policy: None,
        created_date_time_utc: Some(when()),
        last_updated_date_time_utc: Some(when()),
        allocation_policy: None,
        iot_hubs: Some(vec!["hub-1.example.net".into()]),
        custom_allocation_definition: None,
    }
}

fn sample_record(registration_id: &str, group: Option<&str>) -> RegistrationRecord {
    RegistrationRecord {
        registration_id: registration_id.to_string(),
        status: RegistrationStatus::Assigned,
        substatus: Some(Substatus::InitialAssignment),
        assigned_hub: Some("hub-1.example.net".into()),
        device_id: Some(registration_id.to_string()),
        error_code: None,
        error_message: None,
        payload: Some(json!({ "k": [1, 2] })),
        created_date_time_utc: when(),
        last_updated_date_time_utc: when(),
        etag: None,
        enrollment_group_id: group.map(str::to_string),
        attestation_type: AttestationType::SymmetricKey,
        x509: None,
        operation_id: unique("op"),
        initial_hub: Some("hub-1.example.net".into()),
        initial_twin: Some(json!({ "tags": { "stored": true } })),
        tpm: None,
        issued_certificate_chain: None,
        pending_hub_removals: Vec::new(),
        settling_until: None,
    }
}

fn registrations(count: u64) -> OperationCount {
    OperationCount { date: "2024-05-01".into(), kind: OperationKind::Registration, count }
}

/// The etag contract: present, quoted, and different from every etag seen before.
fn fresh_etag(etag: Option<&str>, seen: &mut HashSet<String>) -> String {
    let etag = etag.expect("a written entity carries an etag").to_string();
    assert!(etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'), "etag {etag} is a quoted string");
    assert!(seen.insert(etag.clone()), "etag {etag} was returned by an earlier write");
    etag
}

#[track_caller]
fn expect_err<T: Debug>(result: Result<T>, what: &str, want: fn(&Error) -> bool) {
    match result {
        Err(e) if want(&e) => {}
        other => panic!("{what}: unexpected outcome {other:?}"),
    }
}

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Conflict(_))
}
fn is_precondition_failed(e: &Error) -> bool {
    matches!(e, Error::PreconditionFailed(_))
}
fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound(_))
}

fn without_etag<T: Sample>(mut item: T) -> T {
    item.spec_mut().etag = None;
    item
}

/// Individual enrollments and groups behave alike; their cases are written once over [`Enrollment`], with this
/// to make sample entities of each kind, and run once per kind.
pub trait Sample: Enrollment + PartialEq {
    /// An entity with ID `id` whose fields carry `note`, so that two samples with different notes differ.
    fn make(id: &str, note: &str) -> Self;
}

impl Sample for IndividualEnrollment {
    fn make(id: &str, note: &str) -> Self {
        IndividualEnrollment {
            registration_id: id.into(),
            device_id: Some(format!("device-{note}")),
            optional_device_information: Some(json!({ "note": note })),
            spec: sample_spec(note),
        }
    }
}

impl Sample for EnrollmentGroup {
    fn make(id: &str, note: &str) -> Self {
        EnrollmentGroup { enrollment_group_id: id.into(), registration_id_prefix: None, spec: sample_spec(note) }
    }
}

/// Every item of a query, following continuations; also returns the number of pages.
async fn query_all<T: Sample>(store: &dyn Store, scope: &str, max_items: usize) -> (Vec<T>, usize) {
    let mut all = Vec::new();
    let mut page = PageRequest { max_items, continuation: None };
    for pages in 1..=10_000 {
        let got = store.page::<T>(scope, page.clone()).await.expect("query");
        assert!(got.items.len() <= max_items, "a page of {} items for max_items {max_items}", got.items.len());
        all.extend(got.items);
        match got.continuation {
            Some(next) => page.continuation = Some(next),
            None => return (all, pages),
        }
    }
    panic!("the query never ended");
}

fn ids<T: Sample>(items: &[T]) -> Vec<String> {
    items.iter().map(|i| i.id().to_string()).collect()
}

mod enrollments;
mod instances;
mod isolation;
mod operations;
mod registrations;
mod tpm_challenges;

async fn registrations_counted(store: &dyn Store, scope: &str) -> BTreeMap<OperationKind, u64> {
    let mut out = BTreeMap::new();
    for c in store.operations(scope, "2024-05-01", "2024-05-01").await.unwrap() {
        *out.entry(c.kind).or_default() += c.count;
    }
    out.retain(|_, v| *v > 0);
    out
}

fn nonzero(counts: Vec<OperationCount>) -> Vec<(String, OperationKind, u64)> {
    counts.into_iter().filter(|c| c.count > 0).map(|c| (c.date, c.kind, c.count)).collect()
}

mod concurrency;

pub use concurrency::*;
pub use enrollments::*;
pub use instances::*;
pub use isolation::*;
pub use operations::*;
pub use registrations::*;
pub use tpm_challenges::*;
