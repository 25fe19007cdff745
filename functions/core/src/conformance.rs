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
            enrollment_preconditions,
            enrollment_keys_are_case_insensitive,
            enrollment_delete,
            enrollment_paging,
            group_preconditions,
            group_keys_are_case_insensitive,
            group_delete,
            group_paging,
            scopes_are_isolated,
            registration_put_get_delete,
            registration_query_by_group,
            device_context_reads_both,
            operations_count_and_range,
            registration_meter_counts_iff_written,
            race_not_exists_one_winner,
            race_matches_one_winner,
            race_group_create_one_winner,
            concurrent_operation_counts_are_exact,
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
        }],
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
        operation_id: unique("op"),
        initial_hub: Some("hub-1.example.net".into()),
        initial_twin: Some(json!({ "tags": { "stored": true } })),
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
/// to make sample entities of each kind.
trait Sample: Enrollment + PartialEq {
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
        EnrollmentGroup { enrollment_group_id: id.into(), spec: sample_spec(note) }
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

// ---------------------------------------------------------------------------------------------------------------
// Instances

/// An instance is created with an etag and found by scope and by host, whatever their case.
pub async fn instance_create_and_lookup(store: Arc<dyn Store>) {
    let scope = scope();
    let input = sample_instance(&scope);
    let created = store.create_instance(input.clone()).await.expect("create");
    fresh_etag(created.etag.as_deref(), &mut HashSet::new());
    assert_eq!(Instance { etag: None, ..created.clone() }, input, "create stores what it was given");

    let by_scope = store.instance_by_scope(&scope).await.unwrap().expect("found by scope");
    assert_eq!(by_scope, created);
    let by_lower_scope = store.instance_by_scope(&scope.to_ascii_lowercase()).await.unwrap();
    assert_eq!(by_lower_scope.as_ref(), Some(&created), "scopes are case-insensitive");
    let by_host = store.instance_by_host(&input.service_host_name.to_ascii_uppercase()).await.unwrap();
    assert_eq!(by_host.as_ref(), Some(&created), "host names are case-insensitive");

    assert_eq!(store.instance_by_scope(&crate::ids::new_id_scope()).await.unwrap(), None);
    assert_eq!(store.instance_by_host("nobody.example.net").await.unwrap(), None);
}

/// A taken scope, name or host name is a conflict, and a refused create leaves nothing findable.
pub async fn instance_conflicts_leave_nothing_behind(store: Arc<dyn Store>) {
    let first = store.create_instance(sample_instance(&scope())).await.expect("create");

    let same_scope = Instance { id_scope: first.id_scope.to_ascii_lowercase(), ..sample_instance("x") };
    expect_err(store.create_instance(same_scope.clone()).await, "duplicate scope", is_conflict);
    assert_eq!(store.instance_by_host(&same_scope.service_host_name).await.unwrap(), None, "no half-written host");

    let other_scope = scope();
    let same_name = Instance { name: first.name.clone(), ..sample_instance(&other_scope) };
    expect_err(store.create_instance(same_name.clone()).await, "duplicate name", is_conflict);
    assert_eq!(store.instance_by_scope(&other_scope).await.unwrap(), None, "no half-written instance");
    assert_eq!(store.instance_by_host(&same_name.service_host_name).await.unwrap(), None);

    let same_host =
        Instance { service_host_name: first.service_host_name.to_ascii_uppercase(), ..sample_instance(&other_scope) };
    expect_err(store.create_instance(same_host).await, "duplicate host name", is_conflict);
    assert_eq!(store.instance_by_scope(&other_scope).await.unwrap(), None, "no half-written instance");

    assert_eq!(store.instance_by_scope(&first.id_scope).await.unwrap(), Some(first.clone()), "first is intact");
    assert_eq!(store.instance_by_host(&first.service_host_name).await.unwrap(), Some(first));

    // The refused names are still free for a well-formed instance.
    store.create_instance(sample_instance(&other_scope)).await.expect("create after refusals");
}

/// Updates are conditional on the etag, return a fresh one, and are visible through both lookups.
pub async fn instance_update_with_etag(store: Arc<dyn Store>) {
    let mut seen = HashSet::new();
    let created = store.create_instance(sample_instance(&scope())).await.unwrap();
    let first_etag = fresh_etag(created.etag.as_deref(), &mut seen);

    let mut change = created.clone();
    change.allocation_policy = AllocationPolicy::GeoLatency;
    change.linked_hubs.push(LinkedHub {
        host_name: "hub-2.example.net".into(),
        allocation_weight: 1,
        apply_allocation_policy: false,
        location: None,
    });
    let updated = store.update_instance(change.clone(), Precondition::Matches(first_etag.clone())).await.unwrap();
    fresh_etag(updated.etag.as_deref(), &mut seen);
    assert_eq!(Instance { etag: None, ..updated.clone() }, Instance { etag: None, ..change.clone() });
    assert_eq!(store.instance_by_scope(&created.id_scope).await.unwrap(), Some(updated.clone()));
    assert_eq!(store.instance_by_host(&created.service_host_name).await.unwrap(), Some(updated.clone()));

    let stale = store.update_instance(created.clone(), Precondition::Matches(first_etag)).await;
    expect_err(stale, "update with a stale etag", is_precondition_failed);
    assert_eq!(store.instance_by_scope(&created.id_scope).await.unwrap(), Some(updated.clone()), "not applied");

    let missing = Instance { id_scope: scope(), ..created.clone() };
    expect_err(
        store.update_instance(missing, Precondition::Matches("\"x\"".into())).await,
        "update of an unknown instance",
        is_not_found,
    );
}

/// Every instance is listed, by ID scope.
pub async fn instance_list(store: Arc<dyn Store>) {
    let mut mine = Vec::new();
    for _ in 0..4 {
        mine.push(store.create_instance(sample_instance(&scope())).await.unwrap());
    }
    let listed = store.list_instances().await.unwrap();
    let listed_mine: Vec<&Instance> = listed.iter().filter(|i| mine.iter().any(|m| m.id_scope == i.id_scope)).collect();
    mine.sort_by_key(|i| key(&i.id_scope));
    assert_eq!(listed_mine, mine.iter().collect::<Vec<_>>(), "all of them, in scope order");
    let keys: Vec<String> = listed.iter().map(|i| key(&i.id_scope)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "listed in ascending scope order: {keys:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Enrollments and groups

async fn item_preconditions<T: Sample>(store: Arc<dyn Store>) {
    let (store, scope, mut seen) = (store.as_ref(), scope(), HashSet::new());

    let created = store.save(&scope, T::make("dev-1", "a"), Precondition::NotExists).await.expect("create");
    let etag1 = fresh_etag(created.etag(), &mut seen);
    assert_eq!(without_etag(created.clone()), T::make("dev-1", "a"), "stored as given");
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), Some(created.clone()), "read back whole");

    let again = store.save(&scope, T::make("dev-1", "b"), Precondition::NotExists).await;
    expect_err(again, "create over an existing item", is_conflict);

    let replaced = store.save(&scope, T::make("dev-1", "c"), Precondition::Matches(etag1.clone())).await.unwrap();
    let etag2 = fresh_etag(replaced.etag(), &mut seen);
    assert_eq!(without_etag(replaced.clone()), T::make("dev-1", "c"));

    let stale = store.save(&scope, T::make("dev-1", "d"), Precondition::Matches(etag1)).await;
    expect_err(stale, "write with a stale etag", is_precondition_failed);
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), Some(replaced), "a refused write changes nothing");

    let bare = etag2.trim_matches('"').to_string();
    let unquoted = store.save(&scope, T::make("dev-1", "e"), Precondition::Matches(bare)).await.unwrap();
    fresh_etag(unquoted.etag(), &mut seen);

    let any = store.save(&scope, T::make("dev-1", "f"), Precondition::Matches("*".into())).await.unwrap();
    fresh_etag(any.etag(), &mut seen);

    let upsert = store.save(&scope, T::make("dev-1", "g"), Precondition::None).await.unwrap();
    fresh_etag(upsert.etag(), &mut seen);
    let upsert_new = store.save(&scope, T::make("dev-2", "h"), Precondition::None).await.unwrap();
    fresh_etag(upsert_new.etag(), &mut seen);
    assert_eq!(store.load::<T>(&scope, "dev-2").await.unwrap(), Some(upsert_new));

    let absent = store.save(&scope, T::make("dev-3", "i"), Precondition::Matches("*".into())).await;
    expect_err(absent, "conditional write of an absent item", is_not_found);
    assert_eq!(store.load::<T>(&scope, "dev-3").await.unwrap(), None, "nothing created");

    // An etag the caller echoes back in the entity body is ignored: the store sets its own.
    let mut with_body_etag = T::make("dev-1", "j");
    with_body_etag.spec_mut().etag = Some("\"caller-chosen\"".into());
    let written = store.save(&scope, with_body_etag, Precondition::None).await.unwrap();
    fresh_etag(written.etag(), &mut seen);
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), Some(written));
}

async fn item_keys_are_case_insensitive<T: Sample>(store: Arc<dyn Store>) {
    let (store, scope) = (store.as_ref(), scope());
    let created = store.save(&scope, T::make("Dev-MiXed.1", "a"), Precondition::NotExists).await.unwrap();
    for spelling in ["dev-mixed.1", "DEV-MIXED.1", "Dev-MiXed.1"] {
        let got = store.load::<T>(&scope, spelling).await.unwrap().expect("found whatever the case");
        assert_eq!(got.id(), "Dev-MiXed.1", "the original case is kept");
        assert_eq!(got, created);
    }
    let dup = store.save(&scope, T::make("DEV-mixed.1", "b"), Precondition::NotExists).await;
    expect_err(dup, "create with another case", is_conflict);

    let etag = created.etag().unwrap().to_string();
    let renamed = store.save(&scope, T::make("dev-MIXED.1", "c"), Precondition::Matches(etag)).await.unwrap();
    assert_eq!(renamed.id(), "dev-MIXED.1", "an update may change the case it is shown in");
    let (all, _) = query_all::<T>(store, &scope, 10).await;
    assert_eq!(ids(&all), vec!["dev-MIXED.1".to_string()], "still one item");

    store.remove::<T>(&scope, "DEV-mixed.1", Precondition::None).await.expect("delete whatever the case");
    assert_eq!(store.load::<T>(&scope, "dev-mixed.1").await.unwrap(), None);
}

async fn item_delete<T: Sample>(store: Arc<dyn Store>) {
    let (store, scope) = (store.as_ref(), scope());
    expect_err(store.remove::<T>(&scope, "nobody", Precondition::None).await, "delete absent", is_not_found);
    expect_err(
        store.remove::<T>(&scope, "nobody", Precondition::Matches("*".into())).await,
        "conditional delete absent",
        is_not_found,
    );

    let first = store.save(&scope, T::make("dev-1", "a"), Precondition::NotExists).await.unwrap();
    let second = store.save(&scope, T::make("dev-1", "b"), Precondition::None).await.unwrap();
    let stale = store.remove::<T>(&scope, "dev-1", Precondition::Matches(first.etag().unwrap().into())).await;
    expect_err(stale, "delete with a stale etag", is_precondition_failed);
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), Some(second.clone()), "still there");

    store.remove::<T>(&scope, "dev-1", Precondition::Matches(second.etag().unwrap().into())).await.unwrap();
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), None);
    expect_err(store.remove::<T>(&scope, "dev-1", Precondition::None).await, "delete twice", is_not_found);
    let (all, _) = query_all::<T>(store, &scope, 10).await;
    assert!(all.is_empty(), "gone from queries too");

    store.save(&scope, T::make("dev-2", "c"), Precondition::NotExists).await.unwrap();
    store.remove::<T>(&scope, "dev-2", Precondition::None).await.expect("unconditional delete");
    assert_eq!(store.load::<T>(&scope, "dev-2").await.unwrap(), None);
    store.save(&scope, T::make("dev-2", "d"), Precondition::NotExists).await.expect("create again after delete");
}

async fn item_paging<T: Sample>(store: Arc<dyn Store>) {
    let (store, scope) = (store.as_ref(), scope());
    let (empty, pages) = query_all::<T>(store, &scope, 5).await;
    assert!(empty.is_empty() && pages == 1, "an empty scope is one empty page");

    let names = ["m-7", "B-2", "a-1", "Z-9", "c.3", "b-10", "x:5"];
    for (i, name) in names.iter().enumerate() {
        store.save(&scope, T::make(name, &i.to_string()), Precondition::NotExists).await.unwrap();
    }
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort_by_key(|s| key(s));

    let (all, pages) = query_all::<T>(store, &scope, 1).await;
    assert_eq!(ids(&all), expected, "page size 1: ascending key order, nothing repeated or lost");
    assert!(pages == 7 || pages == 8, "page size 1 takes one page per item (and maybe an empty last): {pages}");

    let (all, pages) = query_all::<T>(store, &scope, 3).await;
    assert_eq!(ids(&all), expected, "page size 3");
    assert!((3..=4).contains(&pages), "page size 3 over 7 items: {pages} pages");

    let page = store.page::<T>(&scope, PageRequest { max_items: 100, continuation: None }).await.unwrap();
    assert_eq!(ids(&page.items), expected, "one page larger than the set");
    assert_eq!(page.continuation, None, "a page that holds the rest is the last");

    let first = store.page::<T>(&scope, PageRequest { max_items: 2, continuation: None }).await.unwrap();
    assert_eq!(ids(&first.items), expected[..2].to_vec());
    assert!(first.continuation.is_some(), "more to come");
    for item in &first.items {
        assert_eq!(
            store.load::<T>(&scope, item.id()).await.unwrap().as_ref(),
            Some(item),
            "queries return whole items"
        );
    }
}

/// See [`item_preconditions`]: NotExists / Matches / None, fresh etags, refused writes change nothing.
pub async fn enrollment_preconditions(store: Arc<dyn Store>) {
    item_preconditions::<IndividualEnrollment>(store).await;
}
/// Registration IDs are case-insensitive keys; the entity keeps its case.
pub async fn enrollment_keys_are_case_insensitive(store: Arc<dyn Store>) {
    item_keys_are_case_insensitive::<IndividualEnrollment>(store).await;
}
/// Deletes: NotFound when absent, PreconditionFailed on a stale etag.
pub async fn enrollment_delete(store: Arc<dyn Store>) {
    item_delete::<IndividualEnrollment>(store).await;
}
/// Paging in ascending key order until the continuation is None.
pub async fn enrollment_paging(store: Arc<dyn Store>) {
    item_paging::<IndividualEnrollment>(store).await;
}
/// As [`enrollment_preconditions`], for groups.
pub async fn group_preconditions(store: Arc<dyn Store>) {
    item_preconditions::<EnrollmentGroup>(store).await;
}
/// As [`enrollment_keys_are_case_insensitive`], for groups.
pub async fn group_keys_are_case_insensitive(store: Arc<dyn Store>) {
    item_keys_are_case_insensitive::<EnrollmentGroup>(store).await;
}
/// As [`enrollment_delete`], for groups.
pub async fn group_delete(store: Arc<dyn Store>) {
    item_delete::<EnrollmentGroup>(store).await;
}
/// As [`enrollment_paging`], for groups.
pub async fn group_paging(store: Arc<dyn Store>) {
    item_paging::<EnrollmentGroup>(store).await;
}

// ---------------------------------------------------------------------------------------------------------------
// Isolation

/// Two scopes holding the same IDs never see each other's data.
pub async fn scopes_are_isolated(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (a, b) = (scope(), scope());
    for (scope, note) in [(&a, "a"), (&b, "b")] {
        s.save(scope, IndividualEnrollment::make("dev-1", note), Precondition::NotExists)
            .await
            .expect("the same registration ID in another scope is a different enrollment");
        s.save(scope, EnrollmentGroup::make("group-1", note), Precondition::NotExists).await.unwrap();
        let mut record = sample_record("dev-1", Some("group-1"));
        record.device_id = Some(format!("device-{note}"));
        s.put_registration(scope, record, Precondition::NotExists, None).await.unwrap();
    }
    s.save(&a, IndividualEnrollment::make("only-a", "a"), Precondition::NotExists).await.unwrap();
    s.add_operations(&a, "2024-05-01", OperationKind::ServiceOperation, 7).await.unwrap();

    assert_eq!(s.load::<IndividualEnrollment>(&b, "only-a").await.unwrap(), None);
    assert_eq!(
        s.load::<IndividualEnrollment>(&a, "dev-1").await.unwrap().unwrap().device_id.as_deref(),
        Some("device-a")
    );
    assert_eq!(
        s.load::<IndividualEnrollment>(&b, "dev-1").await.unwrap().unwrap().device_id.as_deref(),
        Some("device-b")
    );
    let b_context = s.device_context(&b, "dev-1").await.unwrap();
    assert_eq!(b_context.record.unwrap().device_id.as_deref(), Some("device-b"));
    let (b_all, _) = query_all::<IndividualEnrollment>(s, &b, 10).await;
    assert_eq!(ids(&b_all), vec!["dev-1".to_string()]);
    assert!(s.operations(&b, "2024-01-01", "2024-12-31").await.unwrap().iter().all(|c| c.count == 0));

    s.remove::<IndividualEnrollment>(&a, "dev-1", Precondition::None).await.unwrap();
    s.remove::<EnrollmentGroup>(&a, "group-1", Precondition::None).await.unwrap();
    s.delete_registration(&a, "dev-1", Precondition::None).await.unwrap();
    assert!(s.load::<IndividualEnrollment>(&b, "dev-1").await.unwrap().is_some(), "deleting in A leaves B alone");
    assert!(s.load::<EnrollmentGroup>(&b, "group-1").await.unwrap().is_some());
    assert!(s.get_registration(&b, "dev-1").await.unwrap().is_some());
    let b_records = s.query_registrations(&b, "group-1", PageRequest { max_items: 10, continuation: None });
    assert_eq!(b_records.await.unwrap().items.len(), 1);
    let a_records = s.query_registrations(&a, "group-1", PageRequest { max_items: 10, continuation: None });
    assert!(a_records.await.unwrap().items.is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// Registration records

/// Records follow the same conditional-write and case rules as enrollments.
pub async fn registration_put_get_delete(store: Arc<dyn Store>) {
    let (s, scope, mut seen) = (store.as_ref(), scope(), HashSet::new());
    let input = sample_record("Dev-Rec", None);
    let written = s.put_registration(&scope, input.clone(), Precondition::NotExists, None).await.unwrap();
    let etag1 = fresh_etag(written.etag.as_deref(), &mut seen);
    assert_eq!(RegistrationRecord { etag: None, ..written.clone() }, input, "stored as given");
    assert_eq!(s.get_registration(&scope, "dev-rec").await.unwrap(), Some(written.clone()));
    assert_eq!(s.get_registration(&scope, "other").await.unwrap(), None);

    let dup = s.put_registration(&scope, sample_record("DEV-REC", None), Precondition::NotExists, None).await;
    expect_err(dup, "second record for a device", is_conflict);

    let mut next = input.clone();
    next.status = RegistrationStatus::Failed;
    next.error_code = Some(400_207);
    let updated = s.put_registration(&scope, next.clone(), Precondition::Matches(etag1.clone()), None).await.unwrap();
    fresh_etag(updated.etag.as_deref(), &mut seen);
    let stale = s.put_registration(&scope, input.clone(), Precondition::Matches(etag1.clone()), None).await;
    expect_err(stale, "stale record write", is_precondition_failed);
    assert_eq!(s.get_registration(&scope, "Dev-Rec").await.unwrap(), Some(updated.clone()));

    let stale_delete = s.delete_registration(&scope, "dev-rec", Precondition::Matches(etag1)).await;
    expect_err(stale_delete, "stale record delete", is_precondition_failed);
    s.delete_registration(&scope, "DEV-rec", Precondition::Matches(updated.etag.clone().unwrap())).await.unwrap();
    assert_eq!(s.get_registration(&scope, "dev-rec").await.unwrap(), None);
    expect_err(s.delete_registration(&scope, "dev-rec", Precondition::None).await, "delete twice", is_not_found);
    let again = s.put_registration(&scope, input, Precondition::NotExists, None).await.unwrap();
    fresh_etag(again.etag.as_deref(), &mut seen);
}

/// Querying by group returns only that group's records, paged in key order, and follows moves and deletes.
pub async fn registration_query_by_group(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    let mut expected = Vec::new();
    for i in [4, 0, 3, 1, 2] {
        let id = format!("G1-Dev-{i}");
        s.put_registration(&scope, sample_record(&id, Some("Group-1")), Precondition::NotExists, None).await.unwrap();
        expected.push(id);
    }
    for i in 0..3 {
        let id = format!("g2-dev-{i}");
        s.put_registration(&scope, sample_record(&id, Some("group-2")), Precondition::NotExists, None).await.unwrap();
    }
    for i in 0..2 {
        let id = format!("solo-{i}");
        s.put_registration(&scope, sample_record(&id, None), Precondition::NotExists, None).await.unwrap();
    }
    expected.sort_by_key(|s| key(s));

    let all = |group: &'static str, max_items: usize| {
        let store = store.clone();
        let scope = scope.clone();
        async move {
            let mut out = Vec::new();
            let mut page = PageRequest { max_items, continuation: None };
            loop {
                let got = store.query_registrations(&scope, group, page.clone()).await.unwrap();
                assert!(got.items.len() <= max_items);
                out.extend(got.items.into_iter().map(|r| r.registration_id));
                match got.continuation {
                    Some(c) => page.continuation = Some(c),
                    None => return out,
                }
            }
        }
    };
    assert_eq!(all("Group-1", 2).await, expected, "group 1, pages of 2");
    assert_eq!(all("group-1", 1).await, expected, "group IDs are case-insensitive, pages of 1");
    assert_eq!(all("GROUP-1", 50).await, expected, "one big page");
    assert_eq!(all("group-2", 50).await.len(), 3);
    assert!(all("group-3", 50).await.is_empty(), "an unknown group has no records");

    // A record that moves to another group, or is deleted, leaves the first group's listing.
    let moved = s.get_registration(&scope, "g1-dev-0").await.unwrap().unwrap();
    let etag = moved.etag.clone().unwrap();
    let moved = RegistrationRecord { enrollment_group_id: Some("group-2".into()), ..moved };
    s.put_registration(&scope, moved, Precondition::Matches(etag), None).await.unwrap();
    s.delete_registration(&scope, "G1-DEV-1", Precondition::None).await.unwrap();
    let individual = s.get_registration(&scope, "g1-dev-2").await.unwrap().unwrap();
    let individual = RegistrationRecord { enrollment_group_id: None, ..individual };
    s.put_registration(&scope, individual, Precondition::None, None).await.unwrap();
    assert_eq!(all("group-1", 2).await, vec!["G1-Dev-3".to_string(), "G1-Dev-4".into()]);
    assert_eq!(all("group-2", 2).await.len(), 4);
}

/// `device_context` returns the enrollment and the record of one device, each when present.
pub async fn device_context_reads_both(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    let empty = s.device_context(&scope, "dev-1").await.unwrap();
    assert_eq!((empty.enrollment, empty.record), (None, None));

    let enrollment = s.save(&scope, IndividualEnrollment::make("Dev-1", "a"), Precondition::NotExists).await.unwrap();
    let only_enrollment = s.device_context(&scope, "dev-1").await.unwrap();
    assert_eq!((only_enrollment.enrollment.as_ref(), only_enrollment.record), (Some(&enrollment), None));

    let record = s.put_registration(&scope, sample_record("DEV-1", None), Precondition::NotExists, None).await;
    let record = record.unwrap();
    let both = s.device_context(&scope, "dev-1").await.unwrap();
    assert_eq!(both.enrollment, Some(enrollment));
    assert_eq!(both.record, Some(record.clone()));

    s.remove::<IndividualEnrollment>(&scope, "dev-1", Precondition::None).await.unwrap();
    let only_record = s.device_context(&scope, "DEV-1").await.unwrap();
    assert_eq!((only_record.enrollment, only_record.record), (None, Some(record)));
}

// ---------------------------------------------------------------------------------------------------------------
// Operation counting

fn nonzero(counts: Vec<OperationCount>) -> Vec<(String, OperationKind, u64)> {
    counts.into_iter().filter(|c| c.count > 0).map(|c| (c.date, c.kind, c.count)).collect()
}

/// Counts add up per day and kind, and ranges are inclusive and ordered by date then kind.
pub async fn operations_count_and_range(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    use OperationKind::*;
    let adds = [
        ("2024-05-02", ServiceOperation, 3),
        ("2024-05-01", Registration, 2),
        ("2024-05-02", Registration, 1),
        ("2024-05-01", Registration, 5),
        ("2024-05-03", ReRegistration, 4),
        ("2024-04-30", Registration, 9),
        ("2024-05-02", ReRegistration, 6),
    ];
    for (date, kind, count) in adds {
        s.add_operations(&scope, date, kind, count).await.unwrap();
    }
    let got = nonzero(s.operations(&scope, "2024-05-01", "2024-05-02").await.unwrap());
    let want = vec![
        ("2024-05-01".to_string(), Registration, 7),
        ("2024-05-02".to_string(), Registration, 1),
        ("2024-05-02".to_string(), ReRegistration, 6),
        ("2024-05-02".to_string(), ServiceOperation, 3),
    ];
    assert_eq!(got, want, "inclusive range, summed, by date then kind");
    let one_day = nonzero(s.operations(&scope, "2024-05-03", "2024-05-03").await.unwrap());
    assert_eq!(one_day, vec![("2024-05-03".to_string(), ReRegistration, 4)]);
    assert!(nonzero(s.operations(&scope, "2024-06-01", "2024-06-30").await.unwrap()).is_empty());
    let all = nonzero(s.operations(&scope, "2024-01-01", "2024-12-31").await.unwrap());
    assert_eq!(all.iter().map(|c| c.2).sum::<u64>(), 30);
}

async fn registrations_counted(store: &dyn Store, scope: &str) -> BTreeMap<OperationKind, u64> {
    let mut out = BTreeMap::new();
    for c in store.operations(scope, "2024-05-01", "2024-05-01").await.unwrap() {
        *out.entry(c.kind).or_default() += c.count;
    }
    out.retain(|_, v| *v > 0);
    out
}

/// `put_registration` with a meter counts the operation if and only if the record is written.
pub async fn registration_meter_counts_iff_written(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    let first =
        s.put_registration(&scope, sample_record("dev-1", None), Precondition::NotExists, Some(registrations(1)));
    let first = first.await.unwrap();
    assert_eq!(registrations_counted(s, &scope).await, BTreeMap::from([(OperationKind::Registration, 1)]));

    let dup =
        s.put_registration(&scope, sample_record("dev-1", None), Precondition::NotExists, Some(registrations(1))).await;
    expect_err(dup, "duplicate create", is_conflict);
    let stale = s
        .put_registration(
            &scope,
            sample_record("dev-1", None),
            Precondition::Matches("\"stale\"".into()),
            Some(registrations(1)),
        )
        .await;
    expect_err(stale, "stale update", is_precondition_failed);
    let absent = s
        .put_registration(
            &scope,
            sample_record("dev-2", None),
            Precondition::Matches("*".into()),
            Some(registrations(1)),
        )
        .await;
    expect_err(absent, "update of an absent record", is_not_found);
    assert_eq!(
        registrations_counted(s, &scope).await,
        BTreeMap::from([(OperationKind::Registration, 1)]),
        "failed writes count nothing"
    );

    let re = OperationCount { date: "2024-05-01".into(), kind: OperationKind::ReRegistration, count: 1 };
    s.put_registration(&scope, sample_record("dev-1", None), Precondition::Matches(first.etag.unwrap()), Some(re))
        .await
        .unwrap();
    s.put_registration(&scope, sample_record("dev-3", None), Precondition::None, None).await.unwrap();
    assert_eq!(
        registrations_counted(s, &scope).await,
        BTreeMap::from([(OperationKind::Registration, 1), (OperationKind::ReRegistration, 1)]),
        "a successful write counts its meter; no meter, no count"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Concurrency

const RACERS: usize = 16;

fn tally(results: &[Result<RegistrationRecord>], loser: fn(&Error) -> bool) -> RegistrationRecord {
    let winners: Vec<&RegistrationRecord> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(loser(r), "losers fail with the contract's error, got {r:?}");
    }
    winners[0].clone()
}

/// 16 concurrent creates of one record: exactly one wins, the others get Conflict, one operation is counted.
pub async fn race_not_exists_one_winner(store: Arc<dyn Store>) {
    let scope = scope();
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.push(tokio::spawn(async move {
            let mut record = sample_record("racer", None);
            record.operation_id = format!("op-{i}");
            store.put_registration(&scope, record, Precondition::NotExists, Some(registrations(1))).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    let winner = tally(&results, is_conflict);
    assert_eq!(store.get_registration(&scope, "racer").await.unwrap(), Some(winner), "the winner's write is stored");
    assert_eq!(registrations_counted(store.as_ref(), &scope).await, BTreeMap::from([(OperationKind::Registration, 1)]));
}

/// 16 concurrent updates conditional on the same etag: exactly one wins, the others get PreconditionFailed.
pub async fn race_matches_one_winner(store: Arc<dyn Store>) {
    let scope = scope();
    let base = store.put_registration(&scope, sample_record("racer", None), Precondition::NotExists, None).await;
    let etag = base.unwrap().etag.unwrap();
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let (store, scope, etag) = (store.clone(), scope.clone(), etag.clone());
        tasks.push(tokio::spawn(async move {
            let mut record = sample_record("racer", None);
            record.operation_id = format!("op-{i}");
            let re = OperationCount { date: "2024-05-01".into(), kind: OperationKind::ReRegistration, count: 1 };
            store.put_registration(&scope, record, Precondition::Matches(etag), Some(re)).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    let winner = tally(&results, is_precondition_failed);
    let stored = store.get_registration(&scope, "racer").await.unwrap().unwrap();
    assert_eq!(stored.operation_id, winner.operation_id, "the winner's write is the one stored");
    assert_eq!(stored.etag, winner.etag, "with the etag the winner was given");
    assert_eq!(
        registrations_counted(store.as_ref(), &scope).await,
        BTreeMap::from([(OperationKind::ReRegistration, 1)])
    );
}

/// 16 concurrent creates of one group: exactly one wins, the others get Conflict.
pub async fn race_group_create_one_winner(store: Arc<dyn Store>) {
    let scope = scope();
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.push(tokio::spawn(async move {
            let group = EnrollmentGroup::make(if i % 2 == 0 { "Racers" } else { "racers" }, &i.to_string());
            store.save(&scope, group, Precondition::NotExists).await
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(group) => ok.push(group),
            Err(e) => assert!(is_conflict(&e), "losers get Conflict, got {e:?}"),
        }
    }
    assert_eq!(ok.len(), 1, "exactly one create wins");
    assert_eq!(store.load::<EnrollmentGroup>(&scope, "RACERS").await.unwrap(), Some(ok.remove(0)));
}

/// 50 concurrent increments add up exactly.
pub async fn concurrent_operation_counts_are_exact(store: Arc<dyn Store>) {
    let scope = scope();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.push(tokio::spawn(async move {
            store.add_operations(&scope, "2024-05-01", OperationKind::ServiceOperation, i + 1).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("add_operations");
    }
    let counts = nonzero(store.operations(&scope, "2024-05-01", "2024-05-01").await.unwrap());
    assert_eq!(counts, vec![("2024-05-01".to_string(), OperationKind::ServiceOperation, 50 * 51 / 2)]);
}
