//! Embedded storage adapter for the single-machine server: one [redb] database file, `dps.redb`, in the data
//! directory. It passes the storage conformance suite of `dps-core` (see `tests/conformance.rs`).
//!
//! Reads run on tokio's blocking pool, each on its own read snapshot. Writes go to one writer thread that commits
//! them in groups (`writer.rs`): the writes that arrive while a commit is in flight share the next redb write
//! transaction, where each, in order, reads the current version, checks its [`Precondition`] and writes the entity
//! together with its indexes (and, for a registration, its operation counter). One durable commit then covers the
//! whole group, and each caller is answered after it. redb commits atomically and durably, so concurrent writers
//! cannot both win and a crash leaves no half-written state; a write is acknowledged only once it is on disk.
//!
//! # Table layout
//!
//! Scopes and IDs in keys are [`dps_core::store::key`] forms (lower case); entities are stored as their JSON
//! (the Azure wire form), with their original case and etag inside.
//!
//! | table                    | key                                   | value                        |
//! |--------------------------|---------------------------------------|------------------------------|
//! | `instances`              | scope                                 | instance JSON                |
//! | `instance_hosts`         | service host name                     | scope                        |
//! | `instance_names`         | instance name (as given)              | scope                        |
//! | `enrollments`            | (scope, registration ID)              | individual enrollment JSON   |
//! | `groups`                 | (scope, group ID)                     | enrollment group JSON        |
//! | `registrations`          | (scope, registration ID)              | registration record JSON     |
//! | `registrations_by_group` | (scope, group ID, registration ID)    | `()` (index, kept in step)   |
//! | `operations`             | (scope, `YYYY-MM-DD`, kind name)      | count (`u64`)                |
//! | `tpm_challenges`         | (scope, registration ID)              | TPM challenge JSON (expiring) |
//!
//! Tuple keys order element by element, so one scope's items are a contiguous range in ascending ID order.
//! A page continuation is the key of the last ID returned.

mod enrollments;
mod instances;
mod journal;
mod operations;
mod registrations;
mod tables;
mod tpm_challenges;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use dps_core::error::Result;
use dps_core::model::{
    AnyEnrollment, EnrollmentKind, Instance, OperationCount, OperationKind, RegistrationRecord, TpmChallenge,
};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, Store, Write, key};
use redb::{Database, WriteTransaction};

use crate::tables::internal;
pub use crate::journal::{DIR_NAME, JournalStore};
pub use crate::writer::CommitStats;
use crate::writer::Writer;

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "dps.redb";

/// A [`Store`] in one redb database file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Arc<Writer<Database>>,
}

impl EmbeddedStore {
    /// Open (or create) the store in the data directory `dir`, creating the directory if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        Self::init(Database::create(dir.join(FILE_NAME)).map_err(internal)?)
    }

    /// A store on redb's in-memory backend: the same transactions without a file (benchmarks, tests).
    pub fn in_memory() -> Result<Self> {
        let backend = redb::backends::InMemoryBackend::new();
        Self::init(Database::builder().create_with_backend(backend).map_err(internal)?)
    }

    /// Durable commits so far and the writes they carried (writes per commit shows the group commit at work).
    pub fn commit_stats(&self) -> CommitStats {
        self.writer.stats()
    }

    fn init(db: Database) -> Result<Self> {
        tables::create_all(&db)?;
        let db = Arc::new(db);
        Ok(Self { writer: Arc::new(Writer::start(db.clone())?), db })
    }

    /// [`EmbeddedStore::write`] under `write`: its meter (if any) is counted in the same transaction, if and
    /// only if `f` writes. `f` gets the scope in its key form and the write's precondition.
    async fn write_counted<T, F>(&self, scope: &str, write: Write, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction, &str, Precondition) -> Result<T> + Send + 'static,
    {
        let scope = key(scope);
        self.write(move |txn| {
            let written = f(txn, &scope, write.precondition)?;
            operations::count(txn, &scope, write.meter.as_ref())?;
            Ok(written)
        })
        .await
    }
}

// Each call picks its transaction (a point read here, a scan on the blocking pool, a write in the next group
// commit) and hands the per-entity module the keys in their stored form.
#[async_trait]
impl Store for EmbeddedStore {
    async fn create_instance(&self, instance: Instance) -> Result<Instance> {
        self.write(move |txn| instances::create(txn, instance)).await
    }

    async fn update_instance(&self, instance: Instance, precondition: Precondition) -> Result<Instance> {
        self.write(move |txn| instances::update(txn, instance, precondition)).await
    }

    async fn instance_by_scope(&self, id_scope: &str) -> Result<Option<Instance>> {
        self.read_now(|txn| instances::by_scope(txn, &key(id_scope)))
    }

    async fn instance_by_host(&self, host_name: &str) -> Result<Option<Instance>> {
        self.read_now(|txn| instances::by_host(txn, &key(host_name)))
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.read(instances::all).await
    }

    async fn get_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str) -> Result<Option<AnyEnrollment>> {
        self.read_now(|txn| enrollments::get(txn, kind, &key(scope), &key(id)))
    }

    async fn put_enrollment(&self, scope: &str, enrollment: AnyEnrollment, write: Write) -> Result<AnyEnrollment> {
        self.write_counted(scope, write, move |txn, scope, pre| enrollments::put(txn, scope, enrollment, pre)).await
    }

    async fn delete_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str, write: Write) -> Result<()> {
        let id = key(id);
        self.write_counted(scope, write, move |txn, scope, pre| enrollments::delete(txn, scope, kind, &id, pre)).await
    }

    async fn query_enrollments(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        page: PageRequest,
    ) -> Result<Page<AnyEnrollment>> {
        let scope = key(scope);
        self.read(move |txn| enrollments::page(txn, &scope, kind, page)).await
    }

    async fn device_context(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        self.read_now(|txn| registrations::device_context(txn, &key(scope), &key(registration_id)))
    }

    async fn get_registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        self.read_now(|txn| registrations::get(txn, &key(scope), &key(registration_id)))
    }

    async fn put_registration(
        &self,
        scope: &str,
        record: RegistrationRecord,
        write: Write,
    ) -> Result<RegistrationRecord> {
        self.write_counted(scope, write, move |txn, scope, pre| registrations::put(txn, scope, record, pre)).await
    }

    async fn delete_registration(&self, scope: &str, registration_id: &str, write: Write) -> Result<()> {
        let id = key(registration_id);
        self.write_counted(scope, write, move |txn, scope, pre| registrations::delete(txn, scope, &id, pre)).await
    }

    async fn query_registrations(
        &self,
        scope: &str,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        let (scope, group) = (key(scope), key(group_id));
        self.read(move |txn| registrations::page(txn, &scope, &group, page)).await
    }

    async fn add_operations(&self, scope: &str, date: &str, kind: OperationKind, count: u64) -> Result<()> {
        let (scope, date) = (key(scope), date.to_string());
        self.write(move |txn| operations::add_count(txn, &scope, &date, kind, count)).await
    }

    async fn operations(&self, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>> {
        let (scope, from, to) = (key(scope), from.to_string(), to.to_string());
        self.read(move |txn| operations::read(txn, &scope, &from, &to)).await
    }

    async fn get_tpm_challenge(&self, scope: &str, registration_id: &str) -> Result<Option<TpmChallenge>> {
        let (scope, id) = (key(scope), key(registration_id));
        self.read(move |txn| tpm_challenges::get(txn, &scope, &id)).await
    }

    async fn put_tpm_challenge(
        &self,
        scope: &str,
        challenge: TpmChallenge,
        precondition: Precondition,
    ) -> Result<TpmChallenge> {
        let scope = key(scope);
        self.write(move |txn| tpm_challenges::put(txn, &scope, challenge, precondition)).await
    }
}
