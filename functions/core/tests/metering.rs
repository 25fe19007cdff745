//! Service API writes are counted in the same atomic write as the change they make. The proof: a store whose
//! separate counter writes always fail (as a crash between two writes would leave them) still counts every
//! write exactly once, and calls that change nothing are counted on their own.

mod support;

use std::sync::Arc;

use dps_core::memory::MemoryStore;
use dps_core::model::{IndividualEnrollment, OperationKind};
use dps_core::store::Store;
use dps_core::usecases::{BulkMode, today};
use dps_core::{Dps, Error, Settings};
use serde_json::json;
use support::*;

async fn service_operations(store: &dyn Store, scope: &str) -> u64 {
    let day = today();
    let counts = store.operations(scope, &day, &day).await.unwrap();
    counts.iter().filter(|c| c.kind == OperationKind::ServiceOperation).map(|c| c.count).sum()
}

fn enrollment(id: &str) -> IndividualEnrollment {
    serde_json::from_value(json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } })).unwrap()
}

#[tokio::test]
async fn every_service_write_is_counted_with_the_change_it_makes() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::losing_separate_counts());
    let lost = store.add_operations("0ne00000001", &today(), OperationKind::ServiceOperation, 1).await;
    assert!(matches!(lost, Err(Error::Unavailable(_))), "a count on its own is lost in this store: {lost:?}");
    let dps = Dps::new(store.clone(), Settings::default());
    let instance = add_instance(&dps, "dps-one", "dps-one.example.net", hubs(1)).await;
    let f = Fixture { dps, store: store.clone(), instance };
    let (owner, scope) = (f.owner().await, f.scope().to_string());

    let created = f.dps.put_enrollment(&owner, "dev-1", enrollment("dev-1"), None).await.unwrap();
    f.dps.put_enrollment(&owner, "dev-1", enrollment("dev-1"), created.spec.etag.as_deref()).await.unwrap();
    let outcome =
        f.dps.bulk_enrollments(&owner, BulkMode::Create, vec![enrollment("dev-2"), enrollment("dev-3")]).await.unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    f.register("dev-2", &f.keys("dev-2").await.0).await.unwrap();
    f.dps.delete_registration(&owner, "dev-2", None).await.unwrap();
    f.dps.delete_enrollment::<IndividualEnrollment>(&owner, "dev-3", None).await.unwrap();
    assert_eq!(
        service_operations(store.as_ref(), &scope).await,
        5,
        "two puts, one bulk call, one record delete and one enrollment delete: each counted with its write"
    );
}

#[tokio::test]
async fn a_write_that_changes_nothing_is_counted_once_on_its_own() {
    let f = Fixture::new(hubs(1)).await;
    let (owner, scope) = (f.owner().await, f.scope().to_string());
    f.dps.put_enrollment(&owner, "dev-1", enrollment("dev-1"), None).await.unwrap();
    let stale = f.dps.put_enrollment(&owner, "dev-1", enrollment("dev-1"), Some("\"stale\"")).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed(_))), "{stale:?}");
    let absent = f.dps.delete_enrollment::<IndividualEnrollment>(&owner, "nobody", None).await;
    assert!(matches!(absent, Err(Error::NotFound(_))), "{absent:?}");
    let none = f.dps.delete_registration(&owner, "nobody", None).await;
    assert!(matches!(none, Err(Error::NotFound(_))), "{none:?}");
    let bulk = f.dps.bulk_enrollments(&owner, BulkMode::Create, vec![enrollment("dev-1")]).await.unwrap();
    assert_eq!(bulk.errors.len(), 1, "the one item exists already");
    assert_eq!(service_operations(f.store.as_ref(), &scope).await, 5, "five calls, each counted once");
}
