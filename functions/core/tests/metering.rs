//! Service API writes are counted in the same atomic write as the change they make. The proof: a store whose
//! separate counter writes always fail (as a crash between two writes would leave them) still counts every
//! write exactly once, and calls that change nothing are counted on their own.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use dps_core::memory::MemoryStore;
use dps_core::model::{
    AnyEnrollment, EnrollmentKind, IndividualEnrollment, Instance, OperationCount, OperationKind, RegistrationRecord,
    TpmChallenge,
};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, Store, Write};
use dps_core::usecases::{BulkMode, today};
use dps_core::{Dps, Error, Result, Settings};
use serde_json::json;
use support::*;

/// The memory store, except that a count made on its own ([`Store::add_operations`]) is lost.
struct SeparateCountsLost(MemoryStore);

#[async_trait]
impl Store for SeparateCountsLost {
    async fn create_instance(&self, instance: Instance) -> Result<Instance> {
        self.0.create_instance(instance).await
    }
    async fn update_instance(&self, instance: Instance, precondition: Precondition) -> Result<Instance> {
        self.0.update_instance(instance, precondition).await
    }
    async fn instance_by_scope(&self, id_scope: &str) -> Result<Option<Instance>> {
        self.0.instance_by_scope(id_scope).await
    }
    async fn instance_by_host(&self, host_name: &str) -> Result<Option<Instance>> {
        self.0.instance_by_host(host_name).await
    }
    async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.0.list_instances().await
    }
    async fn get_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str) -> Result<Option<AnyEnrollment>> {
        self.0.get_enrollment(scope, kind, id).await
    }
    async fn put_enrollment(&self, scope: &str, enrollment: AnyEnrollment, write: Write) -> Result<AnyEnrollment> {
        self.0.put_enrollment(scope, enrollment, write).await
    }
    async fn delete_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str, write: Write) -> Result<()> {
        self.0.delete_enrollment(scope, kind, id, write).await
    }
    async fn query_enrollments(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        page: PageRequest,
    ) -> Result<Page<AnyEnrollment>> {
        self.0.query_enrollments(scope, kind, page).await
    }
    async fn device_context(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        self.0.device_context(scope, registration_id).await
    }
    async fn get_registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        self.0.get_registration(scope, registration_id).await
    }
    async fn put_registration(
        &self,
        scope: &str,
        record: RegistrationRecord,
        write: Write,
    ) -> Result<RegistrationRecord> {
        self.0.put_registration(scope, record, write).await
    }
    async fn delete_registration(&self, scope: &str, registration_id: &str, write: Write) -> Result<()> {
        self.0.delete_registration(scope, registration_id, write).await
    }
    async fn query_registrations(
        &self,
        scope: &str,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        self.0.query_registrations(scope, group_id, page).await
    }
    async fn add_operations(&self, _: &str, _: &str, _: OperationKind, _: u64) -> Result<()> {
        Err(Error::Unavailable("the separate counter write was lost".into()))
    }
    async fn operations(&self, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>> {
        self.0.operations(scope, from, to).await
    }
    async fn get_tpm_challenge(&self, scope: &str, registration_id: &str) -> Result<Option<TpmChallenge>> {
        self.0.get_tpm_challenge(scope, registration_id).await
    }
    async fn put_tpm_challenge(
        &self,
        scope: &str,
        challenge: TpmChallenge,
        precondition: Precondition,
    ) -> Result<TpmChallenge> {
        self.0.put_tpm_challenge(scope, challenge, precondition).await
    }
}

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
    let store: Arc<dyn Store> = Arc::new(SeparateCountsLost(MemoryStore::new()));
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
